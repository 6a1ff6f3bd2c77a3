"""Vectorised elementary functions with proven error bounds, for the oracle's fast path.

Nothing here calls the platform's ``exp`` or ``log``: every function is built from IEEE-754
float64 ``+ - * /`` (which numpy rounds correctly, and never contracts into fused operations), exact
scalings by powers of two, and tables computed once with mpmath at import. Each function's error
bound is derived in its docstring from those operations, so a result's enclosure does not rest on
how accurate a libm happens to be. ``u = 2**-53`` is the unit roundoff of float64.

Two tiers:

- *float64 tier* (``exp_neg``, ``log1p_unit``): one float64 per value, relative error a few dozen
  ``u`` (about ``2**-48``), enough to decide rounding into float32, float16 and bfloat16 for all but
  about one input in ``2**24``.
- *double-double tier* (``dd_*``, ``exp_dd``, ``log1p_dd``): a value is an unevaluated sum
  ``hi + lo`` of two float64s (about 106 bits); error about ``2**-95`` relative, enough to decide
  rounding into float64.

Bounds are stated as constants below; ``tests/test_fast_oracle.py`` measures each function against
Arb at high precision on adversarial and random inputs and checks the stated bound holds.
"""
from __future__ import annotations

import mpmath
import numpy as np

U = 2.0 ** -53  # unit roundoff of float64
TINY = 2.0 ** -1074  # the smallest positive float64: added to every absolute bound (underflow)
with mpmath.workprec(300):
    LN2 = mpmath.log(2)  # to 300 bits: the tables and split constants below are derived from it

# ------------------------------------------------------------------------------------------------
# float64 tier
# ------------------------------------------------------------------------------------------------

_N = 64  # table size for exp: 2**(j/64)
with mpmath.workprec(200):
    _EXP_TABLE = np.array([float(mpmath.power(2, mpmath.mpf(j) / _N)) for j in range(_N)])
    _K = float(_N / LN2)  # only used to pick n; any rounding of it is harmless
    _L = LN2 / _N
    # ln2/64 split: the high part has 32 significant bits, so n * _L_HI is exact for |n| < 2**21.
    _L_HI = float(mpmath.floor(_L * 2 ** 38) / 2 ** 38)
    _L_LO = float(_L - _L_HI)
    _L_REST = abs(float(_L - _L_HI - mpmath.mpf(_L_LO)))  # below 2**-90
    _LOG1P_TABLE = np.array([float(mpmath.log1p(mpmath.mpf(j) / 128)) for j in range(129)])

#: relative error bound of `exp_neg` for y in [-700, 0] (derivation in its docstring)
EXP_REL = 16 * U
#: relative error bound of `log1p_unit` on an exact argument
LOG1P_REL = 12 * U
EXP_MIN = -700.0  # below: exp(y) < 2**-1009, returned as 0 with that absolute error
EXP_FLOOR_ABS = 2.0 ** -1009


def two_sum(a, b):
    """s + e == a + b exactly (Knuth), s = fl(a + b)."""
    s = a + b
    bb = s - a
    e = (a - (s - bb)) + (b - bb)
    return s, e


def exp_neg(y: np.ndarray) -> np.ndarray:
    """``exp(y)`` for float64 ``y <= 0``, relative error below `EXP_REL` where ``y >= -700``, and 0
    (absolute error below `EXP_FLOOR_ABS`) where ``y < -700``.

    Derivation: ``n = rint(64 y / ln2)``, ``n = 64 m + j`` with ``0 <= j < 64``; ``r = y - n ln2/64``
    is formed as TwoSum(y, -n L_hi) (exact; ``n L_hi`` is exact since ``L_hi`` has 32 bits and
    ``|n| < 2**16``) plus ``-n L_lo``, so ``|dr| <= u|r| + 2**-70``, ``|r| <= ln2/128 + 2**-40``.
    ``exp(r)`` by Horner on the degree-5 Taylor polynomial: truncation ``|r|**6/720 e**|r| <
    2**-54.5 < 0.7u``; Horner's rounding ``<= gamma_10 e**(2|r|) < 10.2u``; coefficients 1/6, 1/24,
    1/120 rounded contribute below ``u |r|**3``. Table ``2**(j/64)`` correctly rounded: ``u/2``
    (``u`` allowing for a near-tie). Product: ``u``; ``ldexp`` by ``m >= -1011``: exact (the result
    is above 2**-1011, normal). Total below ``u (1 + 10.2 + 0.7 + 1) + |dr| < 13.1u < EXP_REL``.
    """
    y = np.asarray(y, dtype=np.float64)
    yc = np.maximum(y, EXP_MIN)
    n = np.rint(yc * _K)
    s, e = two_sum(yc, -n * _L_HI)
    r = s + (e - n * _L_LO)
    p = 1.0 / 120
    p = p * r + 1.0 / 24
    p = p * r + 1.0 / 6
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    ni = n.astype(np.int64)
    j = ni & (_N - 1)
    m = (ni - j) >> 6
    out = np.ldexp(_EXP_TABLE[j] * p, m.astype(np.int32))
    out[y < EXP_MIN] = 0.0
    return out


def log1p_unit(t: np.ndarray) -> np.ndarray:
    """``log1p(t)`` for float64 ``t`` in [0, 1], relative error below `LOG1P_REL`.

    Derivation: ``j = floor(128 t)``, ``c = 1 + j/128`` (exact), ``v = (t - j/128) / c``: the
    subtraction is exact (Sterbenz for ``j >= 1``, trivially for ``j = 0``), the division rounds
    once (``u``). ``log1p(t) = log(c) + log1p(v)``, ``0 <= v < 2**-7``. ``log1p(v) = 2 atanh(w)``,
    ``w = v / (2 + v)`` (two roundings, plus v's: ``|dw/w| <= 3u``, and ``|d log1p / log1p| <=
    |dw/w| / (1 - w**2)``), ``atanh(w)/w = 1 + w2/3 + w2**2/5 + w2**3/7 + ...``, ``w2 = w**2 <
    2**-16``: truncation ``< w2**4/9 / (1 - w2) < 2**-64``; the Horner steps and ``2 w P`` add
    ``< 3.1u``. ``log(c)`` from a correctly rounded table (``u``). Both terms are ``>= 0``; the sum
    rounds once: total ``< u + max(u, 6.2u) + ... < 8.3u < LOG1P_REL``.
    """
    t = np.asarray(t, dtype=np.float64)
    j = np.floor(t * 128.0)
    a = j * (1.0 / 128)
    v = (t - a) / (1.0 + a)
    w = v / (2.0 + v)
    w2 = w * w
    p = (1.0 / 7) * w2 + (1.0 / 5)
    p = p * w2 + (1.0 / 3)
    p = p * w2 + 1.0
    return _LOG1P_TABLE[j.astype(np.int64)] + (2.0 * w) * p


# ------------------------------------------------------------------------------------------------
# double-double tier
# ------------------------------------------------------------------------------------------------
# Algorithms of Joldes, Muller and Popescu, "Tight and rigorous error bounds for basic building
# blocks of double-word arithmetic" (ACM TOMS 44(2), 2017), with Dekker's product in place of FMA.
# Their relative error bounds are 3u**2 (DW + DW, accurate), 2u**2 (DW + FP), about 7u**2 (DW x DW),
# 2u**2 (DW x FP) and about 15u**2 (DW / DW); every use below counts a generous DD_OP per operation.

DD_OP = 2.0 ** -100  # >= 64 u**2: a per-operation relative bound with ample room
_SPLIT = 134217729.0  # 2**27 + 1


def fast_two_sum(a, b):
    """s + e == a + b exactly when |a| >= |b| (or a == 0)."""
    s = a + b
    return s, b - (s - a)


def _split(a):
    c = _SPLIT * a
    hi = c - (c - a)
    return hi, a - hi


def two_prod(a, b):
    """p + e == a * b exactly (Dekker; |a|, |b| < 2**995 and no underflow of the error)."""
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, e


def dd_add(xh, xl, yh, yl):
    """Accurate double-word addition (JMP 2017, Algorithm 6): relative error <= 3u**2 even under
    cancellation."""
    sh, sl = two_sum(xh, yh)
    th, tl = two_sum(xl, yl)
    c = sl + th
    vh, vl = fast_two_sum(sh, c)
    w = tl + vl
    return fast_two_sum(vh, w)


def dd_add_d(xh, xl, y):
    """Double-word plus double (JMP Algorithm 4): relative error <= 2u**2."""
    sh, sl = two_sum(xh, y)
    v = xl + sl
    return fast_two_sum(sh, v)


def dd_mul(xh, xl, yh, yl):
    """Double-word product (JMP Algorithm 10 shape, Dekker product): relative error < 8u**2."""
    ch, cl1 = two_prod(xh, yh)
    tl = xh * yl
    cl2 = tl + xl * yh
    cl3 = cl1 + cl2
    return fast_two_sum(ch, cl3)


def dd_mul_d(xh, xl, y):
    """Double-word times double (JMP Algorithm 9 shape): relative error < 3u**2."""
    ch, cl1 = two_prod(xh, y)
    cl2 = xl * y
    th, tl1 = fast_two_sum(ch, cl2)
    tl2 = tl1 + cl1
    return fast_two_sum(th, tl2)


def dd_div(xh, xl, yh, yl):
    """Double-word quotient (long division, two correction steps): relative error < 16u**2."""
    q1 = xh / yh
    rh, rl = dd_mul_d(yh, yl, q1)
    rh, rl = dd_add(xh, xl, -rh, -rl)
    q2 = rh / yh
    rh2, rl2 = dd_mul_d(yh, yl, q2)
    rh, rl = dd_add(rh, rl, -rh2, -rl2)
    q3 = rh / yh
    qh, ql = fast_two_sum(q1, q2)
    return dd_add_d(qh, ql, q3)


def _dd_const(x) -> tuple[float, float]:
    hi = float(x)
    return hi, float(x - mpmath.mpf(hi))


_DN = 1024
with mpmath.workprec(240):
    _EXPD_HI, _EXPD_LO = (np.array(v) for v in zip(*[_dd_const(mpmath.power(2, mpmath.mpf(j) / _DN))
                                                      for j in range(_DN)]))
    _LD = LN2 / _DN
    _LD1 = float(mpmath.floor(_LD * 2 ** 42) / 2 ** 42)  # 32 significant bits: n * _LD1 exact
    _LD2 = float(_LD - _LD1)
    _LD3 = float(_LD - _LD1 - mpmath.mpf(_LD2))
    _LOGD_HI, _LOGD_LO = (np.array(v) for v in zip(*[_dd_const(mpmath.log1p(mpmath.mpf(j) / 256))
                                                      for j in range(257)]))
    LN2_HI, LN2_LO = _dd_const(LN2)
    _THIRD_HI, _THIRD_LO = _dd_const(mpmath.mpf(1) / 3)

#: relative error bound of `exp_dd` for y in [-708, 0] (derivation in its docstring)
EXPDD_REL = 2.0 ** -86
EXPDD_MIN = -745.0  # below: exp(y) < 2**-1074.8, returned as 0, see exp_dd
EXPDD_FLOOR_ABS = TINY
#: relative error bound of `log1p_dd` for an exact double-word argument >= 0
LOG1PDD_REL = 2.0 ** -88


def exp_dd(yh, yl):
    """``exp(y)`` for a double-word ``y = yh + yl <= 0``: error below ``EXPDD_REL |exp(y)| + 2**-1074``
    where ``yh >= -745``; 0 (absolute error below `EXPDD_FLOOR_ABS` = ``2**-1074``) below.

    Derivation: ``n = rint(1024 y / ln2) = 1024 m + j``; ``r = y - n ln2/1024`` with ln2/1024 in
    three parts (``n L1`` exact: ``L1`` has 32 bits, ``|n| < 2**21``; ``n L2`` by TwoProd, exact;
    ``n L3`` rounded), the low part of ``y`` added to TwoSum's error with one rounding: ``|dr| <
    2**-96``, ``|r| < 3.4e-4``. ``exp(r) = 1 + r + r**2/2 + tail``: ``r**2/2`` and the sums in
    double-word (4 operations, ``4 DD_OP``); ``tail = r**3 (1/6 + r/24 + r**2/120 + r**3/720)`` in
    float64 from ``rh``: its value is below ``2**-37`` and its rounding (about ``6u`` of it) below
    ``2**-87``; ignoring ``rl`` in it costs ``< 2**-140``; truncation ``r**7/5040 < 2**-95``. Table
    ``2**(j/1024)`` as double-word (``2**-106``), the product (``DD_OP``). The final ``ldexp`` by
    ``m >= -1076`` is exact while the result is normal (``y >= -708``); below, each part rounds
    once into the subnormal range (``2**-1075`` each), and the low part can be subnormal from
    ``y = -634`` on (``2**-1075``): at most ``2**-1074`` in all. Total below ``2**-87 + 2**-95 + 6 DD_OP <
    2**-86.9``, stated as `EXPDD_REL` = ``2**-86``.
    """
    yh = np.asarray(yh, dtype=np.float64)
    yl = np.asarray(yl, dtype=np.float64)
    ych = np.maximum(yh, EXPDD_MIN)
    ycl = np.where(yh < EXPDD_MIN, 0.0, yl)
    n = np.rint(ych * (_DN / float(LN2)))
    s, e = two_sum(ych, -n * _LD1)
    ph, pl = two_prod(-n, _LD2)
    s, e = two_sum(s, e + ycl)
    rh, rl = dd_add(s, e, ph, pl)
    rh, rl = dd_add_d(rh, rl, -n * _LD3)
    t = (1.0 / 720) * rh + (1.0 / 120)
    t = t * rh + (1.0 / 24)
    t = t * rh + (1.0 / 6)
    t = t * (rh * rh * rh)
    qh, ql = dd_mul(rh, rl, rh, rl)
    qh, ql = qh * 0.5, ql * 0.5
    qh, ql = dd_add_d(qh, ql, t)
    qh, ql = dd_add(qh, ql, rh, rl)
    qh, ql = dd_add_d(qh, ql, 1.0)
    ni = n.astype(np.int64)
    j = ni & (_DN - 1)
    m = ((ni - j) >> 10).astype(np.int32)
    oh, ol = dd_mul(_EXPD_HI[j], _EXPD_LO[j], qh, ql)
    oh, ol = np.ldexp(oh, m), np.ldexp(ol, m)
    under = yh < EXPDD_MIN
    oh[under] = 0.0
    ol[under] = 0.0
    return oh, ol


def log1p_dd(th, tl):
    """``log1p(t)`` for a double-word ``t >= 0`` (finite): relative error below `LOG1PDD_REL`.

    Derivation: ``1 + t = 2**k g`` with ``g`` in [1, 2) (``k`` from ``frexp``; for ``t <= 1``,
    ``k = 0`` and ``g - 1 = t`` exactly, so small arguments keep full relative accuracy); ``f = g -
    1`` in double-word (exact: TwoSum and exact scalings); ``j = floor(256 f)``, ``c = 1 + j/256``,
    ``v = (f - j/256) / c`` in double-word (``16u**2``); ``log1p(f) = log(c) + 2 atanh(w)``, ``w =
    v / (2 + v)`` (``2 DD_OP``), ``|w| < 2**-9``: ``atanh(w)/w = 1 + w2 (1/3 + w2 Q)``, ``Q = 1/5 +
    w2/7 + w2**2/9 + w2**3/11`` in float64 (``w2 Q < 2**-20``, its rounding ``< 2**-71`` before the
    factor ``w2 < 2**-18``: ``< 2**-89`` of P), truncation ``< w2**6 / 13 < 2**-111``. ``log(c)``
    and ``ln2`` from double-word constants (``2**-106``). Terms ``k ln2``, ``log(c)``, ``2 w P``
    are ``>= 0`` (``2 w P`` can be a tiny negative only when ``1 + t`` rounds up to a power of two,
    beside a term ``>= ln2``): no cancellation, so the relative errors (``2**-89`` and about
    ``12 DD_OP``) add: below ``2**-88.9``, stated as `LOG1PDD_REL` = ``2**-88``.
    """
    th = np.asarray(th, dtype=np.float64)
    tl = np.asarray(tl, dtype=np.float64)
    sh, sl = dd_add_d(th, tl, 1.0)
    _, k = np.frexp(sh)
    k = (k - 1).astype(np.int32)  # sh in [2**k, 2**(k+1))
    gh, gl = np.ldexp(sh, -k), np.ldexp(sl, -k)
    # gh may be exactly 2 with gl < 0 after normalisation: then f = 1 + gl, still in [0, 1]
    big = k > 0
    fh, fl = np.where(big, 0.0, th), np.where(big, 0.0, tl)
    bh, bl = dd_add_d(gh, gl, -1.0)
    fh, fl = np.where(big, bh, fh), np.where(big, bl, fl)
    j = np.floor(fh * 256.0)
    j = np.clip(j, 0, 256)
    a = j * (1.0 / 256)
    nh, nl = dd_add_d(fh, fl, -a)
    vh, vl = dd_div(nh, nl, 1.0 + a, np.zeros_like(a))
    dh, dl = dd_add_d(vh, vl, 2.0)
    wh, wl = dd_div(vh, vl, dh, dl)
    w2h, w2l = dd_mul(wh, wl, wh, wl)
    q = (1.0 / 11) * w2h + (1.0 / 9)
    q = q * w2h + (1.0 / 7)
    q = q * w2h + (1.0 / 5)
    ph, pl = dd_add_d(_THIRD_HI, _THIRD_LO, w2h * q)
    ph, pl = dd_mul(ph, pl, w2h, w2l)
    ph, pl = dd_add_d(ph, pl, 1.0)
    ph, pl = dd_mul(ph, pl, 2.0 * wh, 2.0 * wl)
    ji = j.astype(np.int64)
    oh, ol = dd_add(_LOGD_HI[ji], _LOGD_LO[ji], ph, pl)
    kf = k.astype(np.float64)
    lh, ll = dd_mul_d(np.full_like(kf, LN2_HI), np.full_like(kf, LN2_LO), kf)
    return dd_add(lh, ll, oh, ol)
