"""Precision escalation: evaluate, and raise the working precision until every output is decided.

An output is *decided* when both endpoints of its enclosure round (nearest-even, into the case's
format) to the same value, or when it is an exact special (an exact zero, an infinite limit, an
undefined NaN). Undecided outputs are re-evaluated at twice the precision, up to ``max_prec``;
what is still undecided there is reported as such, never guessed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .problem import Problem
from .rounding import round_exact
from .units import INF, NAN, _sum, is_special

DEFAULT_MAX_PREC = 1 << 14


@dataclass
class Slot:
    """The state of one output element during escalation."""

    value: float = NAN
    decided: bool = False
    prec: int = 0
    sens: float | None = None
    decimal: str | None = None


@dataclass
class Outputs:
    value: list[Slot]
    grads: dict[str, list[Slot]] = field(default_factory=dict)


def _decide(B, v, f, slot: Slot, prec: int, sens: float, digits: int | None) -> None:
    if slot.sens is None:
        slot.sens = sens
    if is_special(v):
        slot.value, slot.decided, slot.prec = v, True, prec
        slot.decimal = "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
        return
    if B.is_exact_zero(v):
        slot.value, slot.decided, slot.prec, slot.decimal = 0.0, True, prec, "0"
        return
    b = B.bounds(v)
    if b is None:
        return
    lo, hi = (round_exact(*e, f) for e in b)
    if lo != hi or math.copysign(1.0, lo) != math.copysign(1.0, hi):
        return
    if digits is not None and B.rel_bits(v) < digits * 3.33 + 4:
        return
    slot.value, slot.decided, slot.prec = lo, True, prec
    if digits is not None:
        slot.decimal = B.decimal(v, digits)


def _scale(B, w, v):
    """w * v for an exact weight w >= 0; 0 * inf = 0 (a unit of weight 0 contributes nothing)."""
    if is_special(v):
        if math.isnan(v):
            return NAN
        return B.num(0.0) if w == 0.0 else v
    return v if w == 1.0 else B.num(w) * v


def _div(B, v, d):
    return v if is_special(v) else v / d


def run(problem: Problem, B, grads: bool, max_prec: int = DEFAULT_MAX_PREC, digits: int | None = None) -> Outputs:
    f = problem.fmt
    p0 = min(max(64, f.precision + 32), max_prec)
    grad_names = list(problem.grad_shapes()) if grads else []
    n_grad = {n: math.prod(s) for n, s in problem.grad_shapes().items()} if grads else {}
    weights = problem.weights or [1.0] * problem.n_units
    reduced = problem.reduction != "none"
    n_value = 1 if reduced else problem.n_units * problem.unit_outputs
    out = Outputs([Slot() for _ in range(n_value)], {n: [Slot() for _ in range(n_grad[n])] for n in grad_names})

    # Ignored units and zero-filled gradient positions are exact zeros from the start.
    for name in grad_names:
        touched = set()
        for i in range(problem.n_units):
            if i not in problem.ignored:
                touched.update(problem.grad_position(name, i, k) for k in range(_positions(problem)))
        for pos, slot in enumerate(out.grads[name]):
            if pos not in touched:
                slot.value, slot.decided, slot.sens, slot.decimal = 0.0, True, 0.0, "0"
    if not reduced:
        for i in problem.ignored:
            for k in range(problem.unit_outputs):
                s = out.value[i * problem.unit_outputs + k]
                s.value, s.decided, s.sens, s.decimal = 0.0, True, 0.0, "0"

    if reduced and grad_names:
        with B.precision(p0):
            if _denominator(B, problem)[1]:  # an undefined mean has no gradient either
                for name in grad_names:
                    for slot in out.grads[name]:
                        slot.value, slot.decided, slot.sens, slot.decimal = NAN, True, 0.0, "nan"

    has_w = problem.weights is not None
    prec = p0
    while True:
        with B.precision(prec):
            denom, denom_undefined = _denominator(B, problem) if reduced else (None, False)
            need_total = reduced and not out.value[0].decided
            units = {}
            for i in range(problem.n_units):
                if i in problem.ignored:
                    continue
                mine = [] if reduced else out.value[i * problem.unit_outputs:(i + 1) * problem.unit_outputs]
                g_slots = [out.grads[n][problem.grad_position(n, i, k)] for n in grad_names
                           for k in range(_positions(problem))]
                if need_total or any(not s.decided for s in mine + g_slots):
                    units[i] = problem.unit(B, i, bool(grad_names))
            if reduced and need_total:
                if denom_undefined:
                    _decide(B, NAN, f, out.value[0], prec, 0.0, digits)
                else:
                    terms = [_scale(B, weights[i], u.out[0]) for i, u in units.items()]
                    total = _div(B, _sum(B, terms), denom)
                    df = _float(B, denom)
                    sens = sum(abs(weights[i]) * u.out_sens[0] for i, u in units.items())
                    if has_w:
                        sens += sum(abs(weights[i] * _float(B, u.out[0])) for i, u in units.items())
                    sens = sens / df if df else 0.0
                    if problem.reduction == "weighted_mean" and (has_w or problem.has_cw):
                        sens += abs(_float(B, total))
                    _decide(B, total, f, out.value[0], prec, _finite(sens), digits)
            for i, u in units.items():
                w = weights[i]
                if not reduced:
                    for k in range(problem.unit_outputs):
                        slot = out.value[i * problem.unit_outputs + k]
                        if not slot.decided:
                            v = _scale(B, w, u.out[k])
                            s = abs(w) * u.out_sens[k] + (abs(w * _float(B, u.out[k])) if has_w else 0.0)
                            _decide(B, v, f, slot, prec, _finite(s), digits)
                for name in grad_names:
                    for k, g in enumerate(u.grads.get(name, [])):
                        slot = out.grads[name][problem.grad_position(name, i, k)]
                        if slot.decided:
                            continue
                        if reduced and denom_undefined:
                            _decide(B, NAN, f, slot, prec, 0.0, digits)
                            continue
                        v = _scale(B, w, g)
                        if reduced and problem.reduction != "sum":
                            v = _div(B, v, denom)
                        sf = abs(w) * u.grad_sens[name][k] / (_float(B, denom) if reduced and problem.reduction != "sum" else 1.0)
                        gf = abs(_float(B, v))
                        sf += gf if has_w else 0.0
                        sf += gf if problem.reduction == "weighted_mean" and (has_w or problem.has_cw) else 0.0
                        _decide(B, v, f, slot, prec, _finite(sf), digits)
        pending = any(not s.decided for s in out.value) or any(
            not s.decided for n in grad_names for s in out.grads[n])
        if not pending or prec >= max_prec:
            break
        prec = min(prec * 2, max_prec)
    for slots in [out.value] + list(out.grads.values()):
        for s in slots:
            if not s.decided:
                s.prec = prec
    return out


def _positions(problem: Problem) -> int:
    return getattr(problem, "C", 1)


def _float(B, v) -> float:
    return v if is_special(v) else B.to_float(v)


def _finite(x: float) -> float:
    return x if math.isfinite(x) else INF


def _denominator(B, problem: Problem):
    """The reduction's normaliser as an enclosure, and whether it is zero (undefined mean)."""
    red = problem.reduction
    if red == "sum":
        return B.num(1.0), False
    if red == "mean":
        n = problem.n_units
        return B.num(float(n)), n == 0
    if red == "weighted_mean":
        omega = problem.omega if problem.omega is not None else [
            (0.0, 0.0) if i in problem.ignored else (w, 1.0)
            for i, w in enumerate(problem.weights or [1.0] * problem.n_units)]
        omega = [(w, c) for w, c in omega if w != 0.0 and c != 0.0]
        if not omega:
            return B.num(1.0), True
        total = B.num(0.0)
        for w, c in omega:
            total = total + (B.num(w) if c == 1.0 else B.num(w) * B.num(c))
        return total, False
    if red == "sum_over_nonzero_weights":
        w = problem.weights or [1.0] * problem.n_units
        count = sum(1 for i, wi in enumerate(w) if wi != 0.0 and i not in problem.ignored)
        return B.num(float(count)), count == 0
    raise ValueError(f"unknown reduction {red!r}")


def to_array(slots: list[Slot], f, shape) -> tuple[np.ndarray, ...]:
    vals = np.array([s.value if s.decided else NAN for s in slots], dtype=np.float64)
    value = vals.astype(f.np_dtype).reshape(shape)
    undecided = np.array([not s.decided for s in slots], dtype=bool).reshape(shape)
    undefined = np.array([s.decided and math.isnan(s.value) for s in slots], dtype=bool).reshape(shape)
    prec = np.array([s.prec for s in slots], dtype=np.int64).reshape(shape)
    sens = np.array([INF if s.sens is None else s.sens for s in slots], dtype=np.float64).reshape(shape)
    return value, undecided, undefined, prec, sens
