"""ULP distance in a floating-point format, by the sign-magnitude order of bit patterns.

Every value of a format sits on one integer line: a pattern's magnitude bits read as an unsigned
integer, negated when the sign bit is set. Adjacent values are 1 apart, +0 and -0 are the same point,
the largest finite value is 1 away from infinity, and the distance across zero is the sum of both
magnitudes. NaN is off the line: NaN vs NaN is distance 0, NaN vs a number is infinite.
"""
from __future__ import annotations

import numpy as np

from cases.dtypes import FloatFormat


def to_format(values, f: FloatFormat) -> np.ndarray:
    """``values`` rounded once, to nearest-even, into format ``f``.

    numpy rounds float64 correctly into float16 and float32, but ml_dtypes converts float64 to
    bfloat16 through float32, which rounds twice. Rounding to float32 *to odd* first keeps the
    second rounding correct: the sticky bit survives in the last place.
    """
    a = np.asarray(values)
    if a.dtype == f.np_dtype:
        return a
    x = a.astype(np.float64)
    with np.errstate(over="ignore"):  # overflow to inf is the correct rounding
        if f.name != "bfloat16":
            return x.astype(f.np_dtype)
        t = x.astype(np.float32)
    t64 = t.astype(np.float64)
    even = (t.view(np.uint32) & 1) == 0
    fix = (t64 != x) & even & np.isfinite(t) & np.isfinite(x)
    if np.any(fix):
        toward = np.where(x > t64, np.float32(np.inf), np.float32(-np.inf))
        t = np.where(fix, np.nextafter(t, toward), t)
    return t.astype(f.np_dtype)


def _sign_magnitude(arr, f: FloatFormat) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(negative, magnitude, is_nan) of each element's bit pattern, magnitudes as uint64."""
    values = to_format(arr, f)
    bits = f.to_bits(values).astype(np.uint64).reshape(values.shape)  # to_bits makes 0-d arrays 1-d
    sign_shift = np.uint64(f.bits - 1)
    magnitude = bits & np.uint64((1 << (f.bits - 1)) - 1)
    negative = (bits >> sign_shift) == 1
    inf_magnitude = np.uint64(int(f.to_bits(np.array([np.inf], dtype=f.np_dtype))[0]))
    return negative, magnitude, magnitude > inf_magnitude


def ulp_distance(a, b, f: FloatFormat) -> np.ndarray:
    """Elementwise ULP distance between ``a`` and ``b`` in format ``f``, as float64.

    Arrays in another dtype are first rounded into ``f``. The result is exact below 2**53, and
    ``inf`` where exactly one side is NaN.
    """
    na, ma, nan_a = _sign_magnitude(a, f)
    nb, mb, nan_b = _sign_magnitude(b, f)
    na, ma, nan_a, nb, mb, nan_b = np.broadcast_arrays(na, ma, nan_a, nb, mb, nan_b)
    # Zero magnitudes carry no sign: +0 and -0 are one point.
    same_side = (na == nb) | (ma == 0) | (mb == 0)
    # Computed in uint64: a sum of two magnitudes below 2**63 cannot wrap.
    dist = np.where(same_side, np.maximum(ma, mb) - np.minimum(ma, mb), ma + mb).astype(np.float64)
    dist = np.where(nan_a | nan_b, np.inf, dist)
    return np.where(nan_a & nan_b, 0.0, dist)


def bits_of_error(ulp) -> np.ndarray:
    """log2(1 + ulp): 0 for an exact result, about 1 per doubling of the error."""
    return np.log2(1.0 + np.asarray(ulp, dtype=np.float64))


def ulp_of(value, f: FloatFormat) -> np.ndarray:
    """The spacing of format ``f`` at ``value``: 2**(e - p + 1) for |value| in [2**e, 2**(e+1)).

    Below the smallest normal the spacing is the smallest subnormal; beyond the largest finite
    value it is the spacing at the top binade; at inf and NaN it is inf and NaN.
    """
    x = np.abs(np.asarray(value, dtype=np.float64))
    _, e = np.frexp(x)  # x = m * 2**e with m in [0.5, 1)
    exponent = np.where(x == 0, f.emin, np.clip(e.astype(np.int64) - 1, f.emin, f.emax))
    spacing = np.ldexp(1.0, (exponent - f.precision + 1).astype(np.int32))
    spacing = np.where(np.isinf(x), np.inf, spacing)
    return np.where(np.isnan(x), np.nan, spacing)
