"""Third-party adapters: the entry-point group ``xent.adapters`` and ``MODULE:ATTRIBUTE`` targets.

A target names an `Adapter` instance (such as ``xent.kernel(...)`` returns) or an `Adapter`
subclass, instantiated with no arguments; the attribute may be dotted (``pkg.mod:Class.ADAPTER``).
A package offers adapters to every run by declaring them in its metadata::

    [project.entry-points."xent.adapters"]
    my-bce = "my_kernels.xent_adapters:bce"

(the entry point's name is the adapter's name in reports), and a run names more with ``xent run
--adapter MODULE:ATTRIBUTE``. The processes a run starts (``--jobs``) learn the targets named on its
command line from ``XENT_ADAPTERS`` (a JSON object, name -> target), which `remember` sets.

Loading never raises: whatever goes wrong (the module does not import or raises while importing,
the attribute is missing, it is not an adapter, its constructor raises, its name is unusable) gives a
`Broken` adapter, unavailable with the reason on one line, which the run reports (``report.json``,
``summary.md``, stderr) while the other adapters run. A loaded one is `Guarded`: the engine trusts
built-in adapters, so an exception from a third party's ``available``, ``apis``, ``contract`` or
``repro`` costs that call (unavailable, not applicable, no contract, no reproducer; counted in
``problems``), and an ``evaluate`` that returns something other than an `Output` of numpy arrays
raises ``TypeError`` there, which is the case's verdict ``raised``.
"""
from __future__ import annotations

import importlib
import json
import os
import re
from collections import Counter

import numpy as np

from cases.model import one_line

from .base import Adapter, AdapterCrashed, AdapterTimeout, Contract, Output

GROUP = "xent.adapters"
ENV = "XENT_ADAPTERS"
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_TARGET = re.compile(rf"({_IDENT}(?:\.{_IDENT})*):({_IDENT}(?:\.{_IDENT})*)")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")  # usable in --adapters lists and file names


class LoadError(Exception):
    """A target that gives no adapter; the message is one line naming the target and the cause."""

    def __init__(self, message: str):
        super().__init__(one_line(message, 600))


def check_target(text: str) -> str:
    """``text`` if it reads ``module:attribute`` (dotted Python names), else ValueError."""
    if not isinstance(text, str) or not _TARGET.fullmatch(text.strip()):
        raise ValueError(f"{one_line(text, 120)!r} is not MODULE:ATTRIBUTE (e.g. my_kernels:adapter)")
    return text.strip()


def _error(e: BaseException) -> str:
    return one_line(f"{type(e).__name__}: {e}".strip(), 300)


def resolve(target: str) -> Adapter:
    """The adapter that ``target`` names (an instance, or a new instance of a class); LoadError if none."""
    try:
        target = check_target(target)
    except ValueError as e:
        raise LoadError(str(e)) from None
    module_name, attr = target.split(":")
    try:
        obj = importlib.import_module(module_name)
    except BaseException as e:  # ImportError, a SyntaxError, whatever its top level raised (even SystemExit)
        if isinstance(e, KeyboardInterrupt):
            raise
        raise LoadError(f"{target}: module {module_name} does not import ({_error(e)})") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except Exception:
            raise LoadError(f"{target}: {module_name} has no attribute {attr}") from None
    if isinstance(obj, type) and issubclass(obj, Adapter):
        try:
            obj = obj()
        except Exception as e:
            raise LoadError(f"{target}: {obj.__name__}() raised {_error(e)}") from None
    elif not isinstance(obj, Adapter):
        kind = "a function" if callable(obj) and not isinstance(obj, type) else f"a {type(obj).__name__}"
        hint = (": wrap a loss function with xent.kernel(fn, variant, dtypes=...)" if callable(obj) else "")
        raise LoadError(f"{target} is {kind}, not an adapter (an xent Adapter instance or subclass){hint}")
    return obj


def entry_points() -> dict[str, str]:
    """Name -> target of every entry point in the group ``xent.adapters``, in name order."""
    from importlib import metadata

    try:
        found = metadata.entry_points(group=GROUP)
    except Exception:  # unreadable metadata of some installed package: no third-party adapters from it
        return {}
    return {ep.name: ep.value for ep in sorted(found, key=lambda ep: ep.name)}


def remembered() -> dict[str, str]:
    """Name -> target of the adapters a parent process named (``XENT_ADAPTERS``); ValueError, one
    line naming the variable, when it is not a JSON object of names and targets."""
    text = os.environ.get(ENV, "").strip()
    if not text:
        return {}
    try:
        found = json.loads(text)
    except (ValueError, RecursionError):
        found = None
    if not (isinstance(found, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in found.items())):
        raise ValueError(f"{ENV}={one_line(text, 120)!r} is not a JSON object of adapter name -> MODULE:ATTRIBUTE "
                         f"(xent sets it for the processes it starts)")
    return found


def remember(name: str, target: str) -> None:
    """Record ``name -> target`` in ``XENT_ADAPTERS``, so processes this one starts can load it."""
    found = remembered()
    found[name] = target
    os.environ[ENV] = json.dumps(found, sort_keys=True)


class Broken(Adapter):
    """A third-party adapter that could not be loaded: unavailable, with the reason."""

    def __init__(self, name: str, reason: str, target: str = ""):
        self.name, self.reason, self.target = name, reason, target
        self.description = f"third-party adapter {target or name} (could not be loaded)"

    def available(self) -> tuple[bool, str]:
        return False, self.reason

    def apis(self, case) -> list[str]:
        return []


class Guarded(Adapter):
    """A third-party adapter whose failures cost one call, not the run (see the module's documentation)."""

    def __init__(self, inner: Adapter, name: str, target: str, declared: Adapter | None = None):
        declared = declared if declared is not None else inner
        self.inner, self.name, self.target = inner, name, target
        self.description = _text(getattr(declared, "description", ""))
        self.control = bool(getattr(declared, "control", False))
        self.slow = bool(getattr(declared, "slow", False))
        self.variants = tuple(getattr(declared, "variants", ()) or ())
        self.dtypes = tuple(getattr(declared, "dtypes", ()) or ())
        self.problems: Counter = Counter()  # "method raised T: message" -> times

    def __repr__(self) -> str:
        return f"Guarded({self.inner!r}, {self.target})"

    def _problem(self, method: str, e: BaseException) -> str:
        text = f"{method} raised {_error(e)}"
        self.problems[text] += 1
        return text

    def available(self) -> tuple[bool, str]:
        try:
            got = self.inner.available()
        except (AdapterCrashed, AdapterTimeout) as e:
            return False, f"available(): {e}"
        except Exception as e:
            return False, self._problem("available()", e)
        if not (isinstance(got, (tuple, list)) and len(got) == 2):
            return False, f"available() returned {one_line(repr(got), 80)}, not (ok, version or reason)"
        return bool(got[0]), _text(got[1])

    def apis(self, case) -> list[str]:
        try:
            got = self.inner.apis(case)
        except (AdapterCrashed, AdapterTimeout):
            raise  # the engine's business: the worker restarts, the case is not applicable
        except Exception as e:
            self._problem("apis()", e)
            return []
        if not (isinstance(got, (list, tuple)) and all(isinstance(a, str) for a in got)):
            self.problems[f"apis() returned {type(got).__name__}, not a list of API names"] += 1
            return []
        return list(got)

    def contract(self, case, api: str) -> Contract | None:
        try:
            got = self.inner.contract(case, api)
        except (AdapterCrashed, AdapterTimeout):
            raise
        except Exception as e:
            self._problem("contract()", e)
            return None
        if got is not None and not isinstance(got, Contract):
            self.problems[f"contract() returned {type(got).__name__}, not a Contract or None"] += 1
            return None
        return got

    def evaluate(self, case, api: str, grads: bool = True) -> Output:
        out = self.inner.evaluate(case, api, grads=grads)
        if not isinstance(out, Output):
            raise TypeError(f"evaluate() returned {type(out).__name__}, not an adapters.Output")
        if not isinstance(out.value, (np.ndarray, np.generic)):
            raise TypeError(f"evaluate() returned Output.value of type {type(out.value).__name__}, not a numpy array")
        bad = [k for k, g in (out.grads or {}).items() if not isinstance(g, (np.ndarray, np.generic))]
        if not isinstance(out.grads, dict) or bad:
            raise TypeError(f"evaluate() returned Output.grads that is not a dict of numpy arrays "
                            f"({', '.join(map(str, bad)) or type(out.grads).__name__})")
        return out

    def repro(self, case, api: str) -> str | None:
        try:
            got = self.inner.repro(case, api)
        except Exception as e:
            self._problem("repro()", e)
            return None
        return got if isinstance(got, str) else None

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if callable(close):
            close()


def _text(value) -> str:
    return one_line(value if isinstance(value, str) else repr(value), 300)


def load(target: str, name: str | None = None, isolated: bool = False) -> Adapter:
    """The adapter ``target`` names, `Guarded` (served by a worker process when ``isolated``), or
    a `Broken` one saying why not. ``name``: what reports call it (an entry point's name);
    default, the adapter's own."""
    try:
        obj = resolve(target)
    except LoadError as e:
        return Broken(name or target, str(e), target)
    name = name or getattr(obj, "name", None)
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        return Broken(target, f"{target}: the adapter's name {one_line(repr(name), 80)} is not a usable name "
                              f"(letters, digits and _ . + -)", target)
    inner = obj
    if isolated:
        from ._worker import IsolatedAdapter, WorkerAdapter

        if not isinstance(obj, WorkerAdapter):
            inner = IsolatedAdapter(target, obj)
            inner.name = name
    return Guarded(inner, name, target, declared=obj)
