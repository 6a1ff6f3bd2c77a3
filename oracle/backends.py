"""Rigorous enclosures: the two interchangeable ball/interval backends.

The oracle's formulas are written once against this small interface; ``arb`` (python-flint, Arb
ball arithmetic) is the default, ``mpmath`` (mpmath's interval context) is the independent second
implementation the tests cross-check it against. Every operation returns an enclosure of the exact
result; ``bounds`` gives the enclosure's exact endpoints.
"""
from __future__ import annotations

import math
from contextlib import contextmanager

import mpmath
from flint import arb, ctx as flint_ctx, fmpq

Exact = tuple[int, int, int]  # (sign, mantissa >= 0, exponent)


class ArbBackend:
    name = "arb"

    def __init__(self):
        self.prec = 64

    @contextmanager
    def precision(self, prec: int):
        old, oldb = flint_ctx.prec, self.prec
        flint_ctx.prec, self.prec = prec, prec
        try:
            yield self
        finally:
            flint_ctx.prec, self.prec = old, oldb

    def num(self, x: float):
        return arb(x)  # exact: a float64 fits any precision's midpoint

    def frac(self, q):
        """An enclosure of the rational ``q`` (a `fractions.Fraction`)."""
        if q.denominator == 1:
            return arb(q.numerator)
        return arb(fmpq(q.numerator, q.denominator))

    def union(self, a, b):
        """An enclosure of both enclosures."""
        return a.union(b)

    def exp(self, a):
        return a.exp()

    def log(self, a):
        return a.log()

    def log1p(self, a):
        return a.log1p()

    def is_exact_zero(self, a) -> bool:
        return a.is_zero()

    def bounds(self, a) -> tuple[Exact, Exact] | None:
        if not a.is_finite():
            return None
        return _arb_exact(a.lower()), _arb_exact(a.upper())

    def to_float(self, a) -> float:
        if not a.is_finite():
            return math.inf
        try:
            return float(a.mid())
        except OverflowError:
            return math.copysign(math.inf, float(a.mid().sgn()))

    def rel_bits(self, a) -> int:
        return a.rel_accuracy_bits()

    def decimal(self, a, digits: int) -> str:
        return a.str(digits, radius=False)


def _arb_exact(a) -> Exact:
    if a.is_zero():
        return (0, 0, 0)
    m, e = a.man_exp()
    m, e = int(m), int(e)
    return (1 if m < 0 else 0, abs(m), e)


class MpmathBackend:
    name = "mpmath"

    def __init__(self):
        self.iv = mpmath.iv
        self.prec = 64

    @contextmanager
    def precision(self, prec: int):
        old, oldb = self.iv.prec, self.prec
        self.iv.prec, self.prec = prec, prec
        try:
            yield self
        finally:
            self.iv.prec, self.prec = old, oldb

    def num(self, x: float):
        return self.iv.mpf(x)  # exact while prec >= 53

    def union(self, a, b):
        (alo, ahi), (blo, bhi) = a._mpi_, b._mpi_
        lo = min(mpmath.mp.make_mpf(alo), mpmath.mp.make_mpf(blo))
        hi = max(mpmath.mp.make_mpf(ahi), mpmath.mp.make_mpf(bhi))
        return self.iv.mpf([lo, hi])

    def frac(self, q):
        if q.denominator == 1:
            return self.iv.mpf(q.numerator)
        return self.iv.mpf(q.numerator) / self.iv.mpf(q.denominator)

    # mpmath's interval functions are not always rigorous: iv.exp(-2**-1074) at 1360 bits is the
    # point [1 - 2**-1074, 1 - 2**-1074], below the true value. Each transcendental result is
    # therefore widened by a few ulps of the working precision, except at the exact points
    # exp(0) = 1, log(1) = 0 and log1p(0) = 0 where the exact value matters (an exact zero).
    def exp(self, a):
        return self.iv.mpf(1) if self._is_point(a, 0) else self._widen(self.iv.exp(a))

    def log(self, a):
        return self.iv.mpf(0) if self._is_point(a, 1) else self._widen(self.iv.log(a))

    def log1p(self, a):
        return self.iv.mpf(0) if self._is_point(a, 0) else self._widen(self.iv.log1p(a))

    def _is_point(self, a, value) -> bool:
        lo, hi = a._mpi_
        return lo == hi and mpmath.mp.make_mpf(lo) == value

    def _widen(self, a):
        lo, hi = (mpmath.mp.make_mpf(t) for t in a._mpi_)
        with mpmath.workprec(self.prec + 8):
            slack = mpmath.mpf(2) ** (4 - self.prec)
            return self.iv.mpf([lo - abs(lo) * slack, hi + abs(hi) * slack])

    def is_exact_zero(self, a) -> bool:
        lo, hi = a._mpi_
        return lo == hi == mpmath.libmp.fzero

    def bounds(self, a) -> tuple[Exact, Exact] | None:
        lo, hi = a._mpi_
        out = []
        for t in (lo, hi):
            sign, man, exp, _ = t
            if man == 0 and t != mpmath.libmp.fzero:
                return None  # an infinity or NaN endpoint
            out.append((sign, int(man), int(exp)))
        return out[0], out[1]

    def to_float(self, a) -> float:
        lo, hi = a._mpi_
        mid = mpmath.libmp.mpf_shift(mpmath.libmp.mpf_add(lo, hi, 64), -1)
        try:
            return mpmath.libmp.to_float(mid, strict=True)
        except OverflowError:
            return math.copysign(math.inf, -1 if mid[0] else 1)

    def rel_bits(self, a) -> int:
        lo, hi = (mpmath.mp.make_mpf(t) for t in a._mpi_)  # exact, no rounding
        if lo == hi:
            return 1 << 30
        mag = max(abs(lo), abs(hi))
        if mag == 0:
            return 1 << 30
        return int(mpmath.floor(-mpmath.log((hi - lo) / mag, 2)))

    def decimal(self, a, digits: int) -> str:
        lo, hi = a._mpi_
        with mpmath.workprec(self.prec + 10):
            return mpmath.nstr((mpmath.mpf(lo) + mpmath.mpf(hi)) / 2, digits, min_fixed=-4, max_fixed=8)


BACKENDS = {"arb": ArbBackend, "mpmath": MpmathBackend}


def backend(name: str):
    try:
        return BACKENDS[name]()
    except KeyError:
        raise ValueError(f"unknown oracle backend {name!r}; expected one of {', '.join(BACKENDS)}") from None

