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

Contracts are about values: what a framework's backward pass does under them is its own business,
so the oracle evaluates contract values only.
"""
from __future__ import annotations

from fractions import Fraction as Q

from .units import INF, NAN, _sum, is_special

KEYS = {"renormalize": bool, "clip": list, "clip_first": bool, "log_offset": float, "log_floor": float}


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


def _clip(B, p, contract):
    if "clip" not in contract:
        return p
    lo, hi = contract["clip"]
    if is_special(p):
        return B.num(min(max(p, lo), hi))
    return _min_const(B, _max_const(B, p, lo), hi)


def _log(B, p, contract, complement: bool = False):
    """log(p) (or log(1-p)) under the contract's offset and floor; -inf as a special."""
    offset = contract.get("log_offset", 0.0)
    one = B.num(1.0)
    P = B.num(p) if is_special(p) else p
    if offset:
        arg = (one - P + B.num(offset)) if complement else P + B.num(offset)
        v = B.log(arg)
    elif is_special(p) and p == (1.0 if complement else 0.0):
        v = -INF
    else:
        v = B.log1p(-P) if complement else B.log(P)
    if "log_floor" in contract:
        floor = contract["log_floor"]
        return B.num(floor) if is_special(v) else _max_const(B, v, floor)
    return v


def bce_probs_value(B, p: float, zs: Q, contract: dict):
    """``-(z' log p + (1-z') log(1-p))`` with p clipped and the logs changed as the contract says."""
    pc = _clip(B, p, contract) if "clip" in contract else p
    terms = []
    if zs != 0:
        lp = _log(B, pc, contract)
        terms.append(INF if is_special(lp) else -(B.frac(zs) * lp))
    if zs != 1:
        lq = _log(B, pc, contract, complement=True)
        terms.append(INF if is_special(lq) else -(B.frac(1 - zs) * lq))
    return _sum(B, terms)


def categorical_value(B, ps: list, a: list, contract: dict):
    """``-sum_c a_c log p_c`` with the row renormalized, clipped and logged as the contract says."""
    row = list(ps)
    if contract.get("clip_first"):
        row = [_clip(B, p, contract) for p in row]
    if contract.get("renormalize"):
        if all(is_special(p) and p == 0.0 for p in row):
            return NAN
        total = _sum(B, [B.num(p) if is_special(p) else p for p in row])
        row = [p if (is_special(p) and p == 0.0) else (B.num(p) if is_special(p) else p) / total for p in row]
    if not contract.get("clip_first"):
        row = [_clip(B, p, contract) for p in row]
    terms = []
    for c, p in enumerate(row):
        if a[c] is None:
            continue
        lp = _log(B, p, contract)
        terms.append(INF if is_special(lp) else -(B.frac(a[c]) * lp))
    return _sum(B, terms)


def applies_to(variant: str) -> bool:
    return variant in ("bce_probs", "categorical_ce_probs")


