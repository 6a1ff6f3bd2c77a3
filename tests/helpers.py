"""Small helpers shared by the framework adapter tests: build a case, round mpmath values once
into a dtype (with the independent rounding of tests/reference.py), count ULPs."""
from __future__ import annotations

import numpy as np
from mpmath import mp

from cases import Case, fmt
from conformance.ulp import ulp_distance
from tests.reference import round_to


def make(variant, dtype, options=None, **inputs) -> Case:
    """A case from plain lists: integer lists stay int64 class ids, the rest is rounded into dtype."""
    f = fmt(dtype)
    arrays = {k: np.asarray(v, dtype=np.int64) if np.asarray(v).dtype.kind == "i" else f.array(v)
              for k, v in inputs.items()}
    return Case(variant, dtype, arrays, options or {})


def rounded(values, dtype) -> np.ndarray:
    """mpmath values rounded once, to nearest-even, into ``dtype``."""
    flat = [round_to(mp.mpf(v), dtype) for v in np.ravel(np.array(values, dtype=object))]
    return np.array(flat, dtype=fmt(dtype).np_dtype).reshape(np.shape(values))


def ulps(got, want, dtype) -> float:
    """The largest ULP distance in ``dtype`` (``got`` is first rounded into it, e.g. a Python float)."""
    return float(np.max(ulp_distance(np.asarray(got, dtype=fmt(dtype).np_dtype), want, fmt(dtype)), initial=0.0))


def bit_ulps(got, want, dtype) -> np.ndarray:
    """Sign-magnitude distance of the bit patterns in ``dtype`` (NaN vs NaN is 0), written here
    independently of conformance/ulp.py so adapter tests do not lean on the engine under test."""
    f = fmt(dtype)
    order = []
    for a in (got, want):
        bits = f.to_bits(np.asarray(a, dtype=f.np_dtype)).astype(np.int64)
        mag = bits & ((1 << (f.bits - 1)) - 1)
        order.append(np.where(bits >> (f.bits - 1) == 1, -mag, mag))
    both_nan = np.isnan(np.asarray(got, dtype=np.float64)) & np.isnan(np.asarray(want, dtype=np.float64))
    return np.where(both_nan, 0, np.abs(order[0] - order[1]))


# The package has no exec: running a generated reproducer in-process is a test's business.
def run_outputs(source: str) -> dict:
    """Execute a reproducer's ``call`` in this process and return its outputs as ``--json`` would
    (for tests that check a snippet against the adapter's own evaluate)."""
    namespace: dict = {"__name__": "xent_repro"}
    exec(compile(source, "<repro>", "exec"), namespace)
    try:
        value, grads, dtypes = namespace["call"](namespace["inputs"])
    except Exception as e:
        return {"raised": type(e).__name__}
    dump = namespace["_dump"]
    return {"value": dump(value, dtypes.get("value")),
            "grads": {k: dump(g, dtypes.get(k)) for k, g in grads.items()}}
