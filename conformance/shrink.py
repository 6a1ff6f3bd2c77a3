"""Shrinking a divergence to a minimal case that still shows it.

Hypothesis shrinks the byte stream behind a draw, which makes small byte streams, not readable
cases; and it shrinks only failing tests, whereas an audit records every divergence and goes on.
So xent shrinks in the domain of the case, greedily, keeping each step that leaves the verdict
unchanged (same adapter, API, verdict class and quantity, and for an invalid input the same
broken rule; the oracle re-evaluates every candidate):

1. structure: keep one position of each batch axis (rows, sequence positions, pixels), drop
   classes (for integer labels only classes above every label), drop optional inputs (weights,
   class weights, pos_weight), set options to their plain values (reduction ``none`` where the
   variant has it, label smoothing 0, no ignore_index when no label uses it);
2. values: replace each float by 0, 1, -1, its integer part, or the power of two nearest it,
   largest-magnitude elements first, never touching ±inf or NaN (they are usually the point).

A step counts one adapter call; the budget bounds them, so a run's cost stays predictable and the
result is deterministic.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cases import Case, CaseError

_OPTIONAL = ("weights", "class_weights", "pos_weight")


@dataclass
class Shrunk:
    case: Case
    truth: object
    verdict: object  # CaseVerdict
    steps: int  # accepted steps
    calls: int  # adapter calls spent


def shrink(case: Case, truth, cv, judge, budget: int) -> Shrunk | None:
    """Greedy shrink of ``case`` keeping ``cv.verdict``; ``judge(case) -> (truth, cv) | None``
    (None: the candidate is not applicable or the oracle failed). None if nothing got smaller."""
    target = _signature(truth, cv)
    best = Shrunk(case, truth, cv, 0, 0)

    def attempt(candidate: Case | None) -> bool:
        if candidate is None or best.calls >= budget or candidate.case_id == best.case.case_id:
            return False
        best.calls += 1
        got = judge(candidate)
        if got is None or _signature(*got) != target:
            return False
        best.case, best.truth, best.verdict = candidate, got[0], got[1]
        best.steps += 1
        return True

    progress = True
    while progress and best.calls < budget:
        progress = False
        for make in _structural(best.case):
            if best.calls >= budget:
                break
            if attempt(make()):
                progress = True
                break  # restart from the smaller case
        if progress:
            continue
        for name, k, v in _values(best.case):
            if best.calls >= budget:
                break
            if attempt(_set(best.case, name, k, v)):  # on the current best: steps accumulate
                progress = True
    if best.steps == 0:
        return None
    return best


def _signature(truth, cv) -> tuple:
    """What a smaller case must keep: the verdict, the quantity it shows in, and for an invalid
    input the rule it breaks (the oracle's reason up to the offending value)."""
    reason = (truth.reason or "").split(":")[0] if truth.status == "invalid" else ""
    return cv.verdict, cv.worst.quantity, reason


def _rebuild(case: Case, inputs=None, options=None) -> Case | None:
    note = case.note if "shrunk" in case.note else (case.note + "; shrunk").lstrip("; ")
    try:
        return Case(case.variant, case.dtype, inputs if inputs is not None else dict(case.inputs),
                    dict(case.options, **(options or {})), note=note)
    except CaseError:
        return None


def _main(case: Case) -> str | None:
    for name in ("logits", "probs"):
        if name in case.inputs:
            return name
    return None


def _structural(case: Case):
    """Candidate makers, most reducing first."""
    main = _main(case)
    if main is not None:
        shape = case[main].shape
        ax = case.class_axis
        for a, n in enumerate(shape):
            if a == ax or n <= 1:
                continue
            for i in range(n):
                yield lambda a=a, i=i: _keep_position(case, main, a, i)
        if ax is not None and shape[ax] > 1:
            for c in range(shape[ax] - 1, -1, -1):
                yield lambda c=c: _drop_class(case, main, c)
    for name in _OPTIONAL:
        if name in case.inputs:
            yield lambda name=name: _rebuild(case, {k: v for k, v in case.inputs.items() if k != name})
    spec = case.spec
    plain = {"reduction": "none", "label_smoothing": 0.0}
    for key, value in plain.items():
        o = spec.option(key)
        if o is None or case.options.get(key) == value:
            continue
        if key == "reduction" and value not in spec.reductions:
            continue
        yield lambda key=key, value=value: _rebuild(case, options={key: value})
    if case.options.get("ignore_index") is not None and "labels" in case.inputs:
        if not np.any(case["labels"] == case.options["ignore_index"]):
            yield lambda: _rebuild(case, options={"ignore_index": None})


def _keep_position(case: Case, main: str, a: int, i: int) -> Case | None:
    shape = case[main].shape
    ax = case.class_axis
    unit = tuple(s for k, s in enumerate(shape) if k != ax) if ax is not None else shape
    ua = a if ax is None or a < ax else a - 1
    inputs = {}
    for name, arr in case.inputs.items():
        if arr.shape == shape:
            inputs[name] = np.take(arr, [i], axis=a)
        elif ax is not None and arr.shape == unit and name != "class_weights":
            inputs[name] = np.take(arr, [i], axis=ua)
        elif ax is None and arr.ndim == 1 and a == len(shape) - 1 and arr.shape == shape[-1:] and len(shape) > 1:
            inputs[name] = np.take(arr, [i], axis=0)  # broadcast weights along the last axis
        else:
            inputs[name] = arr
    return _rebuild(case, inputs)


def _drop_class(case: Case, main: str, c: int) -> Case | None:
    shape = case[main].shape
    ax = case.class_axis
    inputs = {}
    for name, arr in case.inputs.items():
        if arr.shape == shape:
            inputs[name] = np.delete(arr, c, axis=ax)
        elif name == "class_weights":
            inputs[name] = np.delete(arr, c)
        elif name == "labels" and arr.dtype.kind in "iu":
            ignore = case.options.get("ignore_index")
            used = arr[(arr != ignore) & (arr >= 0) & (arr < shape[ax])] if ignore is not None else \
                arr[(arr >= 0) & (arr < shape[ax])]
            if used.size and c <= int(used.max()):
                return None  # would change which class a label names
            inputs[name] = arr
        else:
            inputs[name] = arr
    return _rebuild(case, inputs)


def _simpler(x: float, f) -> list[float]:
    out = [0.0, 1.0, -1.0, float(math.trunc(x))]
    if x != 0:
        out.append(math.copysign(2.0 ** round(math.log2(abs(x))), x) if abs(x) < 2.0 ** 1000 else x)
    seen, keep = set(), []
    for v in out:
        try:
            r = float(f.array(np.array([v]))[0])
        except (CaseError, ValueError, OverflowError):
            continue
        if r != v or v == x or v in seen or (v == 0 and x == 0):
            continue
        seen.add(v)
        keep.append(v)
    return keep


def _values(case: Case):
    f = case.format
    names = [n for n in ("logits", "probs", "labels", "weights", "class_weights", "pos_weight", "inputs",
                         "embeddings", "biases") if n in case.inputs and case[n].dtype.kind == "f"
             or (n in case.inputs and case[n].dtype.name == "bfloat16")]
    for name in names:
        arr = case[name]
        with np.errstate(invalid="ignore"):
            flat = np.asarray(arr, dtype=np.float64).reshape(-1)
        order = sorted(range(flat.size), key=lambda k: -abs(flat[k]) if np.isfinite(flat[k]) else 0.0)
        for k in order:
            x = float(flat[k])
            if not math.isfinite(x):
                continue
            for v in _simpler(x, f):
                yield name, k, v


def _set(case: Case, name: str, k: int, v: float) -> Case | None:
    arr = case[name].copy()
    arr.reshape(-1)[k] = v
    return _rebuild(case, dict(case.inputs, **{name: arr}))
