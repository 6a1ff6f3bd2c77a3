"""What an adapter is: a thin translator from a `Case` to one implementation's public API.

An adapter declares, per case, which of its APIs can express it (none: "not applicable"), and
evaluates the case through one API, returning exactly what the implementation returned (numpy
arrays, the implementation's dtype kept). It never decides a tolerance and never catches the
implementation's exceptions: the engine records those as the verdict "raised".

An adapter served by a worker process (``adapters._worker``) may also raise `AdapterCrashed` (the
worker died: a signal, an exit, or the memory limit) or `AdapterTimeout` (no answer within the
per-call limit): the engine records those as the verdicts "crash" and "timeout", never "raised".
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cases import Case


class AdapterCrashed(Exception):
    """The process evaluating a case died, or exceeded its memory limit, before it answered.

    ``signal``: the name of the signal that killed it (``"SIGSEGV"``, ``"SIGABRT"``, ``"SIGKILL"``
    when killed for memory), its exit code (an int), or None (a ``MemoryError`` raised under the
    memory limit). ``message`` (also ``str()``) is one line for the report, e.g. "worker died of
    SIGSEGV" or "exceeded the memory limit of 4 GiB (MemoryError)"; ``memory_limit`` (bytes) is set
    when the limit was the cause; ``stderr`` is the end of what the process wrote on stderr (a
    worker's Python stack, from faulthandler, when it died of a signal).
    """

    def __init__(self, message: str, signal: str | int | None = None, stderr: str = "",
                 memory_limit: int | None = None):
        super().__init__(message)
        self.message, self.signal, self.stderr, self.memory_limit = message, signal, stderr, memory_limit


class AdapterTimeout(Exception):
    """No answer within the per-call limit of ``limit_s`` seconds; the process was killed.

    ``message`` is one line for the report, e.g. "no answer within 60 s (the per-call limit)".
    """

    def __init__(self, limit_s: float, message: str | None = None):
        self.limit_s = limit_s
        self.message = message or f"no answer within {limit_s:g} s (the per-call limit); worker killed"
        super().__init__(self.message)


@dataclass(frozen=True)
class Contract:
    """A documented behaviour of an API that differs from the math (see oracle/contracts.py).

    ``params`` are the oracle's contract parameters, e.g. ``{"log_floor": -100.0}``; ``url`` is the
    documentation that states the behaviour. An answer that misses the math but matches the oracle's
    value under ``params`` gets the verdict "contract", named by ``name`` in the report.
    """

    name: str
    url: str
    summary: str
    params: dict


@dataclass
class Output:
    """What one API call returned.

    ``value`` is the loss (or log_softmax/softmax) exactly as returned, converted to numpy without
    changing its dtype. ``grads`` maps an input name (``logits``, ``probs``, ``labels``) to the
    gradient of ``sum(value)`` with respect to that input; absent when not computed.
    """

    value: np.ndarray
    grads: dict[str, np.ndarray] = field(default_factory=dict)


class Adapter:
    """Base class. Subclasses set ``name`` and ``description`` and implement the methods."""

    name: str = ""
    description: str = ""
    #: True for control implementations with deliberate, known flaws.
    control: bool = False
    #: True when every new shape costs a compilation (JAX eager, XLA): the run gives such an
    #: adapter a quarter of the targeted-search and shrink budgets.
    slow: bool = False
    #: The variants and dtypes this adapter can express at all; empty: any (``apis`` decides per
    #: case). A declaration only narrows what a run asks for by default (``xent run --adapter``,
    #: ``xent.audit``): the oracle then spends no time on cases the adapter could not take.
    variants: tuple[str, ...] = ()
    dtypes: tuple[str, ...] = ()

    def available(self) -> tuple[bool, str]:
        """(True, version) when usable, else (False, the reason)."""
        return True, ""

    def apis(self, case: Case) -> list[str]:
        """Names of this adapter's APIs that can express ``case``; empty means not applicable."""
        raise NotImplementedError

    def evaluate(self, case: Case, api: str, grads: bool = True) -> Output:
        """Run ``case`` through ``api``; gradients for every input in ``case.spec.grad_wrt`` the API supports."""
        raise NotImplementedError

    def contract(self, case: Case, api: str) -> Contract | None:
        """The documented contract under which ``api`` evaluates ``case``, if it has one."""
        return None

    def repro(self, case: Case, api: str) -> str | None:
        """Python source making exactly the call ``evaluate(case, api)`` makes, for a standalone
        reproducer (contract in ``conformance/repro.py``): reads ``inputs``, sets ``value`` and
        ``grads``; imports only the framework. None: this adapter writes no reproducers."""
        return None
