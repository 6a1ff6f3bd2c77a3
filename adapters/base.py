"""What an adapter is: a thin translator from a `Case` to one implementation's public API.

An adapter declares, per case, which of its APIs can express it (none: "not applicable"), and
evaluates the case through one API, returning exactly what the implementation returned (numpy
arrays, the implementation's dtype kept). It never decides a tolerance and never catches the
implementation's exceptions: the engine records those as the verdict "raised".
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cases import Case


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
