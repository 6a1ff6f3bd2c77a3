"""Float64 building blocks for the numpy reference: error-free transformations, exact sums, rounding.

Double-double values are pairs ``(hi, lo)`` of float64 arrays whose unevaluated sum is the value;
they carry a logit where a rounding would be amplified (the argument of ``exp``). Functions here
assume non-finite values were handled by the caller unless they say otherwise.
"""
from __future__ import annotations

import math

import numpy as np

from cases import FloatFormat

_SPLITTER = 2.0 ** 27 + 1.0  # Veltkamp: splits a float64 into two 26-bit halves
_SPLIT_MAX = 2.0 ** 995  # above this the split overflows
LN2_HI = float.fromhex("0x1.62e42fefa39efp-1")  # ln 2 rounded to float64
LN2_LO = float.fromhex("0x1.abc9e3b39803fp-56")  # ln 2 - LN2_HI
_SQRT_HALF = 0.7071067811865476
_BIG_SUM = 2.0 ** 960  # sums of values this large are scaled so fsum cannot overflow


def two_sum(a, b):
    """(s, e) with s = fl(a + b) and s + e = a + b exactly (Knuth)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def fast_two_sum(a, b):
    """(s, e) with s + e = a + b exactly, assuming |a| >= |b| or a = 0."""
    s = a + b
    return s, b - (s - a)


def _split(a):
    c = _SPLITTER * a
    hi = c - (c - a)
    return hi, a - hi


def two_prod(a, b):
    """(p, e) with p = fl(a b) and p + e = a b exactly (Dekker), e = 0 where the split would overflow."""
    p = a * b
    safe = (np.abs(a) < _SPLIT_MAX) & (np.abs(b) < _SPLIT_MAX) & np.isfinite(p)
    a_s, b_s = np.where(safe, a, 0.0), np.where(safe, b, 0.0)
    ah, al = _split(a_s)
    bh, bl = _split(b_s)
    e = ((ah * bh - a_s * b_s) + ah * bl + al * bh) + al * bl
    return p, np.where(safe, e, 0.0)


def sum2(terms, errors=None):
    """Sum along the last axis as if in twice the working precision (Ogita-Rump-Oishi Sum2).

    ``errors`` (same leading shape) are small corrections added to the compensation; returns the
    double-double ``(hi, lo)``. Where the plain sum is not finite it is returned as is.
    """
    terms = np.asarray(terms, dtype=np.float64)
    s = np.zeros(terms.shape[:-1])
    c = np.zeros(terms.shape[:-1])
    for j in range(terms.shape[-1]):
        s, e = two_sum(s, terms[..., j])
        c = c + e
    if errors is not None:
        c = c + errors.sum(axis=-1)
    hi, lo = two_sum(s, c)  # c may exceed s after cancellation
    plain = terms.sum(axis=-1)
    finite = np.isfinite(plain) & np.isfinite(hi)
    return np.where(finite, hi, plain), np.where(finite, lo, 0.0)


def sum_last(terms):
    """Accurately rounded sum along the last axis (non-finite values propagate as in a plain sum)."""
    hi, lo = sum2(terms)
    return hi + lo


def log_dd(q):
    """log q as a double-double for finite q > 0: k ln2 + log(m), q = m 2^k, m in [1/sqrt2, sqrt2)."""
    m, k = np.frexp(q)
    low = m < _SQRT_HALF
    m = np.where(low, 2.0 * m, m)
    k = np.where(low, k - 1, k).astype(np.float64)
    kh, kl = two_prod(k, LN2_HI)  # k has at most 11 bits, so k * LN2_LO needs no compensation
    hi, lo = two_sum(kh, np.log(m))
    return fast_two_sum(hi, lo + (kl + k * LN2_LO))


def exp_dd(hi, lo):
    """exp(hi + lo) for |lo| <= ulp(hi): exp(hi) (1 + lo), the second-order term being below eps^2."""
    e = np.exp(hi)
    return e + e * lo


def scaled_exp(hi, lo, w, d):
    """(w / d) exp(hi + lo), exp formed at 2^k with k the exponent of w / d: a factor that does not
    underflow although exp(hi + lo) alone would (w, d >= 0)."""
    (mw, ew), (md, ed) = np.frexp(w), np.frexp(d)
    k = np.clip(ew - ed, 0, 1000)
    kf = k.astype(np.float64)
    kh, kl = two_prod(kf, LN2_HI)
    sh, sl = two_sum(hi, kh)
    e = exp_dd(sh, sl + (lo + (kl + kf * LN2_LO)))
    return np.ldexp((mw / md) * e, ew - ed - k)


def mul0(a, b):
    """a * b with 0 * inf = 0 (a zero factor wins over an infinite one; NaN still propagates)."""
    with np.errstate(invalid="ignore"):
        p = np.multiply(a, b)
    zero = ((a == 0) & np.isinf(b)) | ((b == 0) & np.isinf(a))
    return np.where(zero, 0.0, p)


def prod_quot(nums, dens=()):
    """prod(nums) / prod(dens), rounded almost once: mantissas are combined near 1 and the exponents
    added, so no intermediate underflows (to a subnormal, losing digits) or overflows. Non-finite
    operands follow `mul0` and IEEE division."""
    m, e, ok = 1.0, 0, True
    plain = None
    with np.errstate(all="ignore"):
        for a in nums:
            ma, ea = np.frexp(a)
            m, e, ok = m * ma, e + ea, ok & np.isfinite(a)
            plain = a if plain is None else mul0(plain, a)
        for c in dens:
            mc, ec = np.frexp(c)
            m, e, ok = m / mc, e - ec, ok & np.isfinite(c) & (c != 0)
            plain = plain / c
        scaled = np.ldexp(m, e)
    return np.where(ok, scaled, plain)


def mul_div(a, b, c=1.0):
    """a b / c, see `prod_quot`."""
    return prod_quot([a, b], [c])


def exact_sum(values) -> tuple[float, int]:
    """fsum of non-negative ``values`` as (s, k) with sum = s * 2**k, free of intermediate overflow."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        return 0.0, 0
    if np.isnan(v).any():
        return math.nan, 0
    if np.isinf(v).any():
        return math.inf, 0
    k = 64 if np.max(np.abs(v)) >= _BIG_SUM else 0
    return math.fsum(np.ldexp(v, -k).tolist()), k


def ratio(num: tuple[float, int], den: tuple[float, int]) -> float:
    """num / den for two ``exact_sum`` results, rounded once (NaN when den is 0)."""
    (sn, kn), (sd, kd) = num, den
    if sd == 0 or math.isnan(sd) or math.isnan(sn):
        return math.nan
    return (sn / sd) * 2.0 ** (kn - kd)


def round_to(x, f: FloatFormat) -> np.ndarray:
    """Float64 values rounded once, to nearest-even, into format ``f``.

    ml_dtypes converts float64 to bfloat16 through float32 (double rounding), so for the 16-bit
    formats we round to *odd* in float32 first: with 13 or more spare bits that makes the second,
    nearest-even rounding the correct one.
    """
    x = np.asarray(x, dtype=np.float64)
    if f.np_dtype == np.float64:
        return x.copy()
    with np.errstate(over="ignore"):
        y = x.astype(np.float32)
    if f.np_dtype == np.float32:
        return y
    y64 = y.astype(np.float64)
    inexact = (y64 != x) & np.isfinite(x)
    toward_zero = np.where(inexact & (np.abs(y64) > np.abs(x)), np.nextafter(y, np.float32(0)), y)
    odd = (toward_zero.view(np.uint32) | inexact.astype(np.uint32)).view(np.float32)
    with np.errstate(over="ignore"):  # overflow to inf is the correctly rounded answer there
        return odd.astype(f.np_dtype)
