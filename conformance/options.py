"""The audit's options and profiles, defined once for ``xent run`` and for the pytest plugin.

``xent run --examples 4`` and ``pytest --xent-examples 4`` are the same option: both are built from
``OPTIONS`` (`add_arguments` for argparse, `add_pytest_options` for pytest, which prefixes
``--xent-``), so their names, types, checks and help cannot drift apart. A profile names a set of
budgets; an option given explicitly overrides its profile's value (`resolve`):

- ``fast`` (the default, what CI runs): 8 shared generated cases per variant and dtype, 8
  targeted-search cases per cell, 24 adapter calls to shrink each divergence.
- ``thorough``: 64, 64 and 96.

Each profile is also a hypothesis profile, ``xent-fast`` and ``xent-thorough``
(`register_hypothesis_profiles`), with the ``max_examples`` for property tests: the suite's own tests
load one (``XENT_HYPOTHESIS_PROFILE``), a team's tests may (``pytest --hypothesis-profile
xent-thorough``).

This module imports nothing but the standard library: the pytest plugin loads it at pytest's start.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass


@dataclass(frozen=True)
class Profile:
    name: str
    examples: int  # shared generated cases per variant and dtype
    search: int  # targeted-search cases per cell (adapter, API, variant, dtype)
    shrink: int  # adapter calls to shrink each distinct divergence
    property_examples: int  # hypothesis max_examples for property tests under this profile
    summary: str


PROFILES: dict[str, Profile] = {p.name: p for p in (
    Profile("fast", 8, 8, 24, 20, "the default and CI's: a run of every framework in minutes"),
    Profile("thorough", 64, 64, 96, 500, "eight times the cases, four times the shrinking: for nightly runs"),
)}
DEFAULT_PROFILE = "fast"
BUDGETS = ("examples", "search", "shrink")  # what a profile sets


def count(text: str) -> int:
    """A non-negative integer option value (argparse and pytest report the message on one line)."""
    try:
        n = int(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {n}")
    return n


def integer(text: str) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def profile_name(text: str) -> str:
    if text not in PROFILES:
        raise argparse.ArgumentTypeError(f"unknown profile {text!r}; expected one of {', '.join(PROFILES)}")
    return text


@dataclass(frozen=True)
class Option:
    """One option of an audit: ``--NAME`` for ``xent run``, ``--xent-NAME`` for pytest."""

    name: str
    type: object  # a callable from the command-line text; raises argparse.ArgumentTypeError
    metavar: str
    help: str
    default: object = None  # None: the profile's value (budgets) or unset


_fast = PROFILES[DEFAULT_PROFILE]
OPTIONS: tuple[Option, ...] = (
    Option("profile", profile_name, "NAME",
           "budgets: " + "; ".join(f"{p.name} ({p.examples} shared, {p.search} searched, shrink {p.shrink})"
                                   for p in PROFILES.values()) + f" (default {DEFAULT_PROFILE})"),
    Option("examples", count, "N",
           f"shared generated cases per variant and dtype, which every adapter answers (default: the "
           f"profile's, {_fast.examples} for {_fast.name})"),
    Option("search", count, "S",
           f"targeted-search cases per cell (adapter, API, variant, dtype); 0: no search (default: the "
           f"profile's, {_fast.search} for {_fast.name})"),
    Option("shrink", count, "K",
           f"adapter calls to shrink each divergence to a minimal case; 0: no shrinking (default: the "
           f"profile's, {_fast.shrink} for {_fast.name})"),
    Option("seed", integer, "SEED", "the seed every generated case derives from (default 0)", 0),
)
PYTEST_PREFIX = "xent"
PYTEST_UNSET = "unset, what the test passes to xent_audit applies"  # the pytest side's default


def add_arguments(parser) -> None:
    """``--profile``, ``--examples``, ``--search``, ``--shrink``, ``--seed`` on an argparse parser."""
    for o in OPTIONS:
        parser.add_argument(f"--{o.name}", type=o.type, metavar=o.metavar, default=o.default, help=o.help)


def add_pytest_options(parser) -> None:
    """The same options on pytest's parser, as ``--xent-NAME`` (dest ``xent_NAME``), in a group
    "xent". Unset options stay None, so a test's own budgets apply unless the command line says
    otherwise (`resolve`)."""
    group = parser.getgroup(PYTEST_PREFIX, "xent: audit loss implementations against the certified oracle")
    for o in OPTIONS:
        group.addoption(f"--{PYTEST_PREFIX}-{o.name}", dest=f"{PYTEST_PREFIX}_{o.name}", type=o.type,
                        metavar=o.metavar, default=None, help=f"{o.help}; {PYTEST_UNSET}")


def resolve(command_line: dict, given: dict | None = None) -> dict:
    """The run's ``profile``, ``examples``, ``search``, ``shrink`` and ``seed``.

    ``command_line``: the options as parsed (None where not given); ``given``: a caller's own
    choices (a test's ``xent_audit(..., search=4)``), which the command line overrides. Order, last
    wins: the profile's budgets (the command line's profile, else the caller's, else ``fast``); the
    caller's explicit values, unless the command line named a profile; the command line's explicit
    values.
    """
    given = {k: v for k, v in (given or {}).items() if v is not None}
    cl = {k: v for k, v in command_line.items() if v is not None}
    for source, values in (("the command line", cl), ("the call", given)):
        unknown = set(values) - {o.name for o in OPTIONS}
        if unknown:
            raise ValueError(f"unknown audit option(s) from {source}: {', '.join(sorted(unknown))}")
        if "profile" in values:
            if not isinstance(values["profile"], str) or values["profile"] not in PROFILES:
                raise ValueError(f"unknown profile {values['profile']!r}; expected one of {', '.join(PROFILES)}")
        for k in (*BUDGETS, "seed"):
            if k in values and (not isinstance(values[k], int) or isinstance(values[k], bool)
                                or (k != "seed" and values[k] < 0)):
                raise ValueError(f"{k} must be {'an integer' if k == 'seed' else 'an integer >= 0'}, "
                                 f"got {values[k]!r}")
    name = cl.get("profile") or given.get("profile") or DEFAULT_PROFILE
    p = PROFILES[name]
    out = {"profile": name, "examples": p.examples, "search": p.search, "shrink": p.shrink, "seed": 0}
    if "profile" not in cl:
        out.update({k: v for k, v in given.items() if k != "profile"})
    out.update({k: v for k, v in cl.items() if k != "profile"})
    return out


def resolve_namespace(args) -> None:
    """`resolve` an argparse namespace from `add_arguments` in place: every budget becomes a number."""
    values = resolve({o.name: getattr(args, o.name, None) for o in OPTIONS})
    for k, v in values.items():
        setattr(args, k, v)


def register_hypothesis_profiles() -> None:
    """Register ``xent-fast`` and ``xent-thorough`` with hypothesis (idempotent)."""
    from hypothesis import settings

    for p in PROFILES.values():
        settings.register_profile(f"xent-{p.name}", max_examples=p.property_examples, deadline=None)
