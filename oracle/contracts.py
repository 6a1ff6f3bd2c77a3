"""Contracts: documented behaviours that differ from the math, evaluated exactly.

An adapter declares, with a link to the documentation that states it, that an API computes
something other than the variant's mathematical definition, e.g. PyTorch's BCELoss "clamps its log
function outputs to be greater than or equal to -100", or Keras clipping probabilities to
``[epsilon, 1 - epsilon]``. The oracle evaluates the contract exactly, so an answer that misses the
math but matches the contract gets the verdict ``contract`` instead of a divergence.

A contract is a dict of parameters, applied to the probability variants (``bce_probs``,
``categorical_ce_probs``) in this order:

- ``"renormalize": true`` (categorical only): each row divided by its sum along the class axis; a
  row summing to 0 is undefined.
- ``"clip": [lo, hi]``: each probability replaced by ``min(max(p, lo), hi)``; ``lo`` and ``hi`` are
  exact floats (the framework's epsilon as the dtype holds it).
- ``"clip_first": true``: clip before renormalizing instead of after.
- ``"log_offset": c``: ``log p`` becomes ``log(p + c)`` and ``log(1-p)`` becomes ``log(1 - p + c)``.
- ``"log_floor": f``: every log term becomes ``max(log(.), f)``.

and to ``softmax_ce_sparse``:

- ``"wrap_negative_ids": true``: a class id ``-C <= y < 0`` (other than ``ignore_index``) means class
  ``y + C``, as NumPy-style indexing reads it. An otherwise invalid case then has a value.
- ``"nan_invalid_rows": true``: a row whose class id is out of range is NaN (loss and gradient),
  the other rows keep their values (TensorFlow's documented GPU/XLA behaviour).

Under a contract the gradient is the derivative of the contract's function: 0 where a clip or a
floor holds, the chain rule through the renormalisation. A framework whose backward pass is
something else again (PyTorch's BCELoss divides by max(p(1-p), 1e-12)) still diverges.
"""
from __future__ import annotations

import math
from fractions import Fraction as Q

from .units import INF, NAN, _sum, is_special

KEYS = {"renormalize": bool, "clip": list, "clip_first": bool, "log_offset": float, "log_floor": float,
        "wrap_negative_ids": bool, "nan_invalid_rows": bool}
ID_KEYS = {"wrap_negative_ids", "nan_invalid_rows"}  # the contracts on class ids of softmax_ce_sparse


def validate(contract: dict) -> dict:
    """The contract with its parameters checked; raises ValueError naming a bad one."""
    out = {}
    for key, value in contract.items():
        if key not in KEYS:
            raise ValueError(f"unknown contract parameter {key!r}; known: {', '.join(KEYS)}")
        if key == "clip":
            lo, hi = (float(v) for v in value)
            if not 0.0 <= lo <= hi <= 1.0:
                raise ValueError(f"contract clip {value!r} is not 0 <= lo <= hi <= 1")
            value = (lo, hi)
        elif KEYS[key] is float:
            value = float(value)
        else:
            value = bool(value)
        out[key] = value
    return out


def _exact(e) -> Q:
    s, m, x = e
    v = Q(m) * Q(2) ** x
    return -v if s else v


def _max_const(B, v, c: float):
    """An enclosure of max(v, c) for an enclosure v and an exact c."""
    b = B.bounds(v)
    if b is not None:
        lo, hi = (_exact(e) for e in b)
        if lo >= Q(c):
            return v
        if hi <= Q(c):
            return B.num(c)
    return B.union(v, B.num(c))


def _min_const(B, v, c: float):
    b = B.bounds(v)
    if b is not None:
        lo, hi = (_exact(e) for e in b)
        if hi <= Q(c):
            return v
        if lo >= Q(c):
            return B.num(c)
    return B.union(v, B.num(c))


def _clip_float(p: float, contract) -> tuple[float, bool]:
    """(clipped p, whether p was inside [lo, hi]) for an exact p: a clipped input has derivative 0."""
    if "clip" not in contract:
        return p, True
    lo, hi = contract["clip"]
    return min(max(p, lo), hi), lo <= p <= hi


def _clip_ball(B, q, contract):
    """(clipped q, d clip/dq) for an enclosure q: 1 inside, 0 outside, both while undecided."""
    if "clip" not in contract:
        return q, B.num(1.0)
    lo, hi = contract["clip"]
    c = _min_const(B, _max_const(B, q, lo), hi)
    b = B.bounds(q)
    if b is not None:
        qlo, qhi = (_exact(e) for e in b)
        if Q(lo) <= qlo and qhi <= Q(hi):
            return c, B.num(1.0)
        if qhi < Q(lo) or qlo > Q(hi):
            return c, B.num(0.0)
    return c, B.union(B.num(0.0), B.num(1.0))


def _log(B, t, contract, complement: bool = False):
    """``(LOG, dLOG/dt)`` with ``LOG(t) = max(log(t + c), f)`` (of ``1 - t + c`` when
    ``complement``), for a probability ``t`` that is an exact float or an enclosure. The derivative
    is 0 where the floor holds, and encloses both branches while that cannot yet be told."""
    offset = contract.get("log_offset", 0.0)
    one = B.num(1.0)
    T = B.num(t) if is_special(t) else t
    sign = -one if complement else one
    if not offset and is_special(t) and t == (1.0 if complement else 0.0):
        v, d = -INF, (-INF if complement else INF)
    else:
        arg = (one - T) if complement else T
        if offset:
            arg = arg + B.num(offset)
            v = B.log(arg)
        else:
            v = B.log1p(-T) if complement else B.log(T)
        d = sign / arg
    if "log_floor" not in contract:
        return v, d
    floor = contract["log_floor"]
    if is_special(v):
        return B.num(floor), B.num(0.0)
    b = B.bounds(v)
    if b is not None:
        lo, hi = (_exact(e) for e in b)
        if lo >= Q(floor):
            return v, d
        if hi <= Q(floor):
            return B.num(floor), B.num(0.0)
    return B.union(v, B.num(floor)), B.union(d, B.num(0.0))


def is_flat(B, p: float, contract: dict) -> bool:
    """Whether the contract holds p's loss terms constant here (a clip or a floor is active, or a
    log's argument is 0): the math's sensitivities, poles included, then say nothing about it."""
    pc, inside = _clip_float(p, contract)
    if not inside:
        return True
    for complement in (False, True):
        v, d = _log(B, pc, contract, complement)
        if is_special(d) or (not is_special(v) and B.is_exact_zero(d)):
            return True
    return False


def _mul(B, x, y):
    """x * y where either may be a special (an infinite factor times an enclosure keeps its sign)."""
    if is_special(x) or is_special(y):
        if (is_special(x) and math.isnan(x)) or (is_special(y) and math.isnan(y)):
            return NAN
        fx = x if is_special(x) else B.to_float(x)
        fy = y if is_special(y) else B.to_float(y)
        return NAN if fx * fy == 0 or math.isnan(fx * fy) else math.copysign(INF, fx * fy)
    return x * y


def _neg(v):
    return -v


def bce_probs(B, p: float, zs: Q, shrink: Q, contract: dict, grads: bool):
    """``-(z' LOG(p') + (1-z') LOG1(p'))`` with ``p' = clip(p)``: (value, dl/dp, dl/dz)."""
    pc, inside = _clip_float(p, contract)
    terms, dterms = [], []
    lp = lq = None
    if zs != 0:
        lp, dlp = _log(B, pc, contract)
        terms.append(_neg(_mul(B, B.frac(zs), lp)))
        dterms.append(_neg(_mul(B, B.frac(zs), dlp)))
    if zs != 1:
        lq, dlq = _log(B, pc, contract, complement=True)
        terms.append(_neg(_mul(B, B.frac(1 - zs), lq)))
        dterms.append(_neg(_mul(B, B.frac(1 - zs), dlq)))
    value = _sum(B, terms)
    if not grads:
        return value, None, None
    dp = _sum(B, dterms) if inside else B.num(0.0)
    if lp is None:
        lp = _log(B, pc, contract)[0]
    if lq is None:
        lq = _log(B, pc, contract, complement=True)[0]
    dz = B.num(0.0) if shrink == 0 else _mul(B, B.frac(shrink), _sum(B, [lq, _neg(lp)]))
    return value, dp, dz


def categorical(B, ps: list, a: list, scale: list, contract: dict, grads: bool):
    """``-sum_c a_c LOG(q_c)`` with the row renormalized and clipped as the contract says:
    (value, dl/dp per class, dl/dy per class)."""
    C = len(ps)
    zero, one = B.num(0.0), B.num(1.0)
    row, kept_first = list(ps), [True] * C
    if contract.get("clip_first"):
        pairs = [_clip_float(p, contract) for p in row]
        row, kept_first = [r for r, _ in pairs], [k for _, k in pairs]
    S = None
    if contract.get("renormalize"):
        if all(p == 0.0 for p in row):
            return NAN, [NAN] * C, [NAN] * C
        S = _sum(B, [B.num(p) for p in row])
        q = [0.0 if p == 0.0 else B.num(p) / S for p in row]
    else:
        q = list(row)
    dclip = [one] * C
    if not contract.get("clip_first"):
        if S is None:
            pairs = [_clip_float(p, contract) for p in q]
            q, dclip = [r for r, _ in pairs], [one if k else zero for _, k in pairs]
        else:
            pairs = [(_clip_float(v, contract)[0], one if _clip_float(v, contract)[1] else zero)
                     if is_special(v) else _clip_ball(B, v, contract) for v in q]
            q, dclip = [r for r, _ in pairs], [d for _, d in pairs]
    logs = [_log(B, v, contract) for v in q]
    value = _sum(B, [_neg(_mul(B, B.frac(a[c]), logs[c][0])) for c in range(C) if a[c] is not None])
    if not grads:
        return value, None, None
    dq = [zero if a[c] is None else _mul(B, _neg(_mul(B, B.frac(a[c]), logs[c][1])), dclip[c]) for c in range(C)]
    if any(is_special(g) for g in dq):
        dp = [NAN] * C  # an infinite derivative inside a renormalised row has no meaningful limit here
    elif S is not None:
        mean = _sum(B, [dq[c] * (B.num(row[c]) / S) for c in range(C)])
        dp = [(dq[j] - mean) / S for j in range(C)]
    else:
        dp = dq
    dp = [v if kept_first[j] else zero for j, v in enumerate(dp)]
    dy = [zero if scale[c] is None else _neg(_mul(B, B.frac(scale[c]), logs[c][0])) for c in range(C)]
    return value, dp, dy


def applies_to(variant: str, contract: dict) -> bool:
    if set(contract) & ID_KEYS:
        return variant == "softmax_ce_sparse" and set(contract) <= ID_KEYS
    return variant in ("bce_probs", "categorical_ce_probs")


def wrap_negative_ids(case):
    """The case with each class id -C <= y < 0 (not ignore_index) replaced by y + C."""
    import numpy as np

    from cases import Case

    labels = case["labels"].copy()
    n_classes = case["logits"].shape[case.class_axis]
    ignore = case.options.get("ignore_index")
    wrap = (labels < 0) & (labels >= -n_classes) & (labels != ignore if ignore is not None else True)
    labels[wrap] += n_classes
    return Case(case.variant, case.dtype, {**case.inputs, "labels": np.asarray(labels)}, case.options, case.note)


