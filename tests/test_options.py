"""The audit's options and profiles: one definition for ``xent run`` and the pytest plugin.

The budgets asserted here are the documented ones (README, docs/tutorial.md): fast 8 shared cases,
8 searched, shrink 24; thorough 64, 64, 96.
"""
import argparse

import pytest

from conformance import options
from conformance.cli import build_parser, main


class _Group:
    """What pytest's ``parser.getgroup(...)`` gives: records each ``addoption`` call."""

    def __init__(self):
        self.calls = []

    def addoption(self, *names, **kwargs):
        self.calls.append((names, kwargs))


class _PytestParser:
    def __init__(self):
        self.groups = {}

    def getgroup(self, name, description=""):
        return self.groups.setdefault(name, _Group())


def _run_actions():
    run = build_parser()._subparsers._group_actions[0].choices["run"]
    return {a.option_strings[0]: a for a in run._actions if a.option_strings}


def test_options_cli_and_pytest_share_names_types_and_help():
    pytest_parser = _PytestParser()
    options.add_pytest_options(pytest_parser)
    on_pytest = {names[0]: kwargs for names, kwargs in pytest_parser.groups["xent"].calls}
    on_cli = _run_actions()
    names = ("profile", "examples", "search", "shrink", "seed")
    assert set(on_pytest) == {f"--xent-{n}" for n in names}
    for n in names:
        cli, py = on_cli[f"--{n}"], on_pytest[f"--xent-{n}"]
        assert py["type"] is cli.type and py["metavar"] == cli.metavar
        assert py["help"] == f"{cli.help}; {options.PYTEST_UNSET}"
        assert py["default"] is None and py["dest"] == f"xent_{n}"


@pytest.mark.parametrize("name, text, says", [
    ("examples", "-1", "must be >= 0, got -1"),
    ("search", "many", "not an integer: 'many'"),
    ("profile", "quick", "unknown profile 'quick'; expected one of fast, thorough"),
])
def test_options_bad_value_reads_the_same_on_both_sides(name, text, says, capsys):
    assert main(["run", f"--{name}", text]) == 2
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1
    with pytest.raises(argparse.ArgumentTypeError, match=says.replace("(", r"\(")):
        next(o for o in options.OPTIONS if o.name == name).type(text)


def test_options_fast_is_the_default_profile():
    assert options.resolve({}) == {"profile": "fast", "examples": 8, "search": 8, "shrink": 24, "seed": 0}


def test_options_thorough_profile_budgets():
    got = options.resolve({"profile": "thorough"})
    assert (got["examples"], got["search"], got["shrink"]) == (64, 64, 96)


def test_options_explicit_budget_overrides_its_profile():
    got = options.resolve({"profile": "thorough", "search": 3})
    assert (got["examples"], got["search"], got["shrink"]) == (64, 3, 96)


def test_options_callers_budget_applies_unless_the_command_line_says_otherwise():
    assert options.resolve({}, {"search": 4, "seed": 7})["search"] == 4
    assert options.resolve({"profile": None, "examples": None}, {"search": 4})["search"] == 4  # unset: None
    # a profile on the command line replaces the caller's budgets; its explicit numbers replace all
    assert options.resolve({"profile": "thorough"}, {"search": 4, "seed": 7}) == {
        "profile": "thorough", "examples": 64, "search": 64, "shrink": 96, "seed": 0}
    assert options.resolve({"search": 2}, {"search": 4, "profile": "thorough"})["search"] == 2


@pytest.mark.parametrize("given, says", [
    ({"profile": "slow"}, "unknown profile 'slow'"),
    ({"examples": -2}, "examples must be an integer >= 0"),
    ({"shrink": 1.5}, "shrink must be an integer >= 0"),
    ({"budget": 3}, "unknown audit option(s) from the call: budget"),
])
def test_options_bad_call_values_are_refused(given, says):
    with pytest.raises(ValueError, match=says.replace("(", r"\(").replace(")", r"\)")):
        options.resolve({}, given)


def test_options_run_namespace_gets_numbers_from_the_profile():
    args = build_parser().parse_args(["run", "--profile", "thorough", "--shrink", "5"])
    options.resolve_namespace(args)
    assert (args.profile, args.examples, args.search, args.shrink, args.seed) == ("thorough", 64, 64, 5, 0)


def test_options_profiles_are_hypothesis_profiles():
    from hypothesis import settings

    options.register_hypothesis_profiles()
    assert settings.get_profile("xent-fast").max_examples == 20
    assert settings.get_profile("xent-thorough").max_examples == 500


def test_options_module_imports_only_the_standard_library():
    import subprocess
    import sys

    code = ("import sys; import conformance.options; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('numpy', 'hypothesis', 'cases', 'oracle', 'adapters', 'mpmath')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=options.__file__.rsplit("/conformance/", 1)[0]).stdout
    assert out.strip() == "[]"
