"""Precision escalation: evaluate, and raise the working precision until every output is decided.

An output is *decided* when both endpoints of its enclosure round (nearest-even, into the case's
format) to the same value, or when it is an exact special (an exact zero, an infinite limit, an
undefined NaN). Undecided outputs are re-evaluated at twice the precision, up to ``max_prec``;
what is still undecided there is reported as such, never guessed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction as Q

import numpy as np

from .problem import Problem
from .rounding import round_exact, round_fraction
from .units import INF, NAN, Split, _sum, ball, is_special

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


def _rounds_to(B, v, f) -> float | None:
    """The single value every point of the enclosure rounds to, or None."""
    if B.is_exact_zero(v):
        return 0.0
    b = B.bounds(v)
    if b is None:
        return None
    lo, hi = (round_exact(*e, f) for e in b)
    if lo != hi or math.copysign(1.0, lo) != math.copysign(1.0, hi):
        return None
    return lo


def _split_rounds_to(B, v: Split, f) -> float | None:
    """Decide ``exact + rest`` when ``rest`` excludes 0, however small it is.

    Rounding boundaries near ``E = exact = N/D`` are multiples of half a quantum, at least
    ``2**(log2|E| - p - 2)``, and a boundary other than ``E`` itself is at least that divided by ``D``
    away; every ``r`` with ``0 < |r| <= 2**t``, ``t = log2|E| - 2p - 64 - bits(D)``, therefore puts
    ``E + r`` in the same cell as ``E + sign(r) 2**t``. Larger ends of ``rest`` are used exactly.
    """
    E = v.exact
    if E == 0:
        return None
    b = B.bounds(v.rest)
    if b is None:
        return None
    (s1, m1, e1), (s2, m2, e2) = b
    if m1 == 0 or m2 == 0 or s1 != s2:
        return None
    t = abs(E.numerator).bit_length() - E.denominator.bit_length() - 2 * f.precision - 64 \
        - E.denominator.bit_length()

    def end(s, m, e):
        r = Q(2) ** t if m.bit_length() + e <= t else Q(m) * Q(2) ** e
        return -r if s else r

    lo, hi = round_fraction(E + end(s1, m1, e1), f), round_fraction(E + end(s2, m2, e2), f)
    if lo != hi or math.copysign(1.0, lo) != math.copysign(1.0, hi):
        return None
    return lo


def _decide(B, v, f, slot: Slot, prec: int, sens: float, digits: int | None) -> None:
    if slot.sens is None:
        slot.sens = sens
    if is_special(v):
        slot.value, slot.decided, slot.prec = v, True, prec
        slot.decimal = "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
        return
    enclosure = ball(B, v)
    value = None
    if isinstance(v, Split):
        if v.alt is not None:
            value = _rounds_to(B, v.alt, f)
            if value is not None:
                enclosure = v.alt
        if value is None:
            value = _rounds_to(B, enclosure, f)
        if value is None:
            value = _split_rounds_to(B, v, f)
    else:
        value = _rounds_to(B, v, f)
    if value is None:
        return
    if digits is not None and not B.is_exact_zero(enclosure) and B.rel_bits(enclosure) < digits * 3.33 + 4:
        return
    slot.value, slot.decided, slot.prec = value, True, prec
    if digits is not None:
        slot.decimal = "0" if B.is_exact_zero(enclosure) else B.decimal(enclosure, digits)


def _scale(B, w, v):
    """w * v for an exact weight w >= 0; 0 * inf = 0 (a unit of weight 0 contributes nothing)."""
    if is_special(v):
        if math.isnan(v):
            return NAN
        return B.num(0.0) if w == 0.0 else v
    if w == 1.0:
        return v
    if isinstance(v, Split):
        wb = B.num(w)
        return Split(Q(w) * v.exact, wb * v.rest, None if v.alt is None else wb * v.alt)
    return B.num(w) * v


def _div(B, v, d):
    """v / d for the exact denominator d = (Fraction, its enclosure)."""
    dq, db = d
    if is_special(v) or dq == 1:
        return v
    if isinstance(v, Split):
        return Split(v.exact / dq, v.rest / db, None if v.alt is None else v.alt / db)
    return v / db


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
                    sens = sum(abs(weights[i]) * u.out_sens[0] for i, u in units.items())
                    if has_w:
                        sens += sum(abs(weights[i] * _float(B, u.out[0])) for i, u in units.items())
                    sens = _ratio(sens, denom[0])
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
                        sf = _ratio(abs(w) * u.grad_sens[name][k], denom[0] if reduced else Q(1))
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
    if isinstance(v, tuple):  # a denominator
        v = v[1]
    return v if is_special(v) else B.to_float(ball(B, v))


def _ratio(x: float, d: Q) -> float:
    """x / d in floating point without underflowing d first (a normaliser can be below 1e-308)."""
    if not math.isfinite(x) or d == 1:
        return x
    try:
        return float(Q(x) / d)
    except OverflowError:
        return INF


def _finite(x: float) -> float:
    return x if math.isfinite(x) else INF


def _denominator(B, problem: Problem):
    """The reduction's normaliser, exact and as an enclosure, and whether it is zero (undefined)."""
    d, undefined = _denominator_q(problem)
    return (d, B.frac(d)), undefined


def _denominator_q(problem: Problem) -> tuple[Q, bool]:
    red = problem.reduction
    if red == "sum":
        return Q(1), False
    if red == "mean":
        n = problem.n_units
        return Q(max(n, 1)), n == 0
    if red == "weighted_mean":
        omega = problem.omega if problem.omega is not None else [
            (0.0, 0.0) if i in problem.ignored else (w, 1.0)
            for i, w in enumerate(problem.weights or [1.0] * problem.n_units)]
        total = sum((Q(w) * Q(c) for w, c in omega), Q(0))
        return (total, False) if total else (Q(1), True)
    if red == "sum_over_nonzero_weights":
        w = problem.weights or [1.0] * problem.n_units
        count = sum(1 for i, wi in enumerate(w) if wi != 0.0 and i not in problem.ignored)
        return Q(max(count, 1)), count == 0
    raise ValueError(f"unknown reduction {red!r}")


def to_array(slots: list[Slot], f, shape) -> tuple[np.ndarray, ...]:
    vals = np.array([s.value if s.decided else NAN for s in slots], dtype=np.float64)
    value = vals.astype(f.np_dtype).reshape(shape)
    undecided = np.array([not s.decided for s in slots], dtype=bool).reshape(shape)
    undefined = np.array([s.decided and math.isnan(s.value) for s in slots], dtype=bool).reshape(shape)
    prec = np.array([s.prec for s in slots], dtype=np.int64).reshape(shape)
    sens = np.array([INF if s.sens is None else s.sens for s in slots], dtype=np.float64).reshape(shape)
    return value, undecided, undefined, prec, sens
