"""The certified oracle: the true value of every loss variant, correctly rounded.

``evaluate(case)`` returns, for the case's output and for the gradient of ``sum(output)`` with
respect to each differentiable input, the exact mathematical value rounded once to nearest-even
into the case's dtype. Each value is computed as a rigorous enclosure (Arb balls by default, mpmath
intervals as the independent second backend) whose working precision is raised until the
enclosure rounds to a single value; the precision used is recorded. A value still undecided at
``max_prec`` is reported as undecided, never guessed; a case outside the variant's domain is
reported as invalid, with the reason. The meaning of each variant: docs/variants.md and
``oracle/units.py``. This package imports no framework.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cases import Case

from . import certify, contracts
from .backends import BACKENDS, backend as _backend
from .certify import DEFAULT_MAX_PREC
from .problem import Invalid, build

__all__ = ["BACKENDS", "DEFAULT_MAX_PREC", "OracleResult", "Quantity", "evaluate", "evaluate_slow"]


@dataclass
class Quantity:
    """One certified output array (the loss, or one gradient).

    ``value``: correctly rounded, in the case dtype (NaN where ``undefined``). ``undecided``: the
    cap was reached before the enclosure rounded to one value (``value`` is NaN there).
    ``prec``: bits of working precision used. ``sens``: sum_u |u| |d out/d u| (a float estimate,
    see docs/variants.md). ``decimal``: the exact value to the requested digits (only with ``digits``).
    """

    value: np.ndarray
    undecided: np.ndarray
    undefined: np.ndarray
    prec: np.ndarray
    sens: np.ndarray
    decimal: list[str] | None = None


@dataclass
class OracleResult:
    status: str  # "ok", "invalid" or "undecided"
    reason: str | None = None
    value: Quantity | None = None
    grads: dict[str, Quantity] = field(default_factory=dict)
    backend: str = "arb"


def _quantity(slots, f, shape, digits) -> Quantity:
    value, undecided, undefined, prec, sens = certify.to_array(slots, f, shape)
    dec = [s.decimal if s.decided else "undecided" for s in slots] if digits is not None else None
    return Quantity(value, undecided, undefined, prec, sens, dec)


def evaluate(case: Case, grads: bool = True, backend: str = "arb", max_prec: int = DEFAULT_MAX_PREC,
             digits: int | None = None, contract: dict | None = None, fast: bool = True) -> OracleResult:
    """Certified value (and gradients) of ``case``; see the module docstring. Under a
    ``contract`` (oracle/contracts.py) the value and gradients are the contract's.

    With ``fast`` (the default) the plain forms of sigmoid and softmax cross-entropy go through
    the vectorised fast path (``oracle/fast.py``), which settles what its error bounds decide and
    hands every other element to this function's slow path; the answer is the same."""
    if fast and backend == "arb" and max_prec == DEFAULT_MAX_PREC and digits is None and not contract:
        from . import fast as _fast
        if _fast.eligible(case):
            return _fast.evaluate(case, grads)
    return evaluate_slow(case, grads, backend, max_prec, digits, contract)


def evaluate_slow(case: Case, grads: bool = True, backend: str = "arb", max_prec: int = DEFAULT_MAX_PREC,
                  digits: int | None = None, contract: dict | None = None) -> OracleResult:
    """`evaluate` without the fast path: every element through precision escalation."""
    B = _backend(backend)
    if contract:
        contract = contracts.validate(contract)
        if not contracts.applies_to(case.variant, contract):
            raise ValueError(f"contract {sorted(contract)} does not apply to {case.variant}: see oracle/contracts.py")
        if contract.pop("wrap_negative_ids", False):
            case = contracts.wrap_negative_ids(case)
    nan_rows = bool(contract and contract.pop("nan_invalid_rows", False))
    try:
        problem = build(case, contract or None, nan_invalid_rows=nan_rows)
    except Invalid as e:
        return OracleResult("invalid", str(e), backend=B.name)
    grads = grads and bool(case.spec.grad_wrt)
    outs = certify.run(problem, B, grads, max_prec=max_prec, digits=digits)
    f = case.format
    vshape = () if problem.reduction != "none" else problem.value_shape
    value = _quantity(outs.value, f, vshape if problem.reduction != "none" else
                      (problem.n_units * problem.unit_outputs,), digits)
    if problem.reduction == "none":
        for name in ("value", "undecided", "undefined", "prec", "sens"):
            setattr(value, name, problem.finish_value(getattr(value, name)).reshape(problem.value_shape))
    gq = {}
    for name, shape in (problem.grad_shapes().items() if grads else []):
        q = _quantity(outs.grads[name], f, shape, digits)
        for attr in ("value", "undecided", "undefined", "prec", "sens"):
            setattr(q, attr, problem.finish_grad(name, getattr(q, attr)))
        gq[name] = q
    undecided = bool(value.undecided.any()) or any(q.undecided.any() for q in gq.values())
    return OracleResult("undecided" if undecided else "ok", None, value, gq, B.name)
