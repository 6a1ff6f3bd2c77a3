"""Round an exact binary number once, to nearest-even, into a FloatFormat.

The number is given as ``(sign, mantissa, exponent)`` meaning ``(-1)**sign * mantissa * 2**exponent``
with an integer ``mantissa >= 0``. Subnormals, signed zero and overflow to infinity follow IEEE-754:
a value rounds to infinity when it is at least ``(2 - 2**-p) * 2**emax`` (halfway past the largest
finite number).
"""
from __future__ import annotations

import math
from fractions import Fraction

from cases.dtypes import FloatFormat


def round_exact(sign: int, man: int, exp: int, f: FloatFormat) -> float:
    """The float of format ``f`` nearest to ``(-1)**sign * man * 2**exp`` (ties to even)."""
    if man == 0:
        return -0.0 if sign else 0.0
    top = exp + man.bit_length() - 1  # floor(log2 |value|)
    if top > f.emax:
        return -math.inf if sign else math.inf
    quantum = max(top, f.emin) - f.precision + 1  # exponent of the last significand bit
    shift = quantum - exp
    if shift > man.bit_length():  # below half the smallest quantum, strictly: rounds to zero
        return -0.0 if sign else 0.0
    if shift <= 0:
        n = man << -shift
    else:
        n = man >> shift
        rem = man & ((1 << shift) - 1)
        half = 1 << (shift - 1)
        if rem > half or (rem == half and n & 1):
            n += 1
    if n and n.bit_length() - 1 + quantum > f.emax:
        return -math.inf if sign else math.inf
    value = math.ldexp(n, quantum)
    return -value if sign else value


def round_fraction(q: Fraction, f: FloatFormat) -> float:
    """The float of format ``f`` nearest to the rational ``q`` (ties to even)."""
    if q == 0:
        return 0.0
    sign = q < 0
    n, d = abs(q.numerator), q.denominator
    top = n.bit_length() - d.bit_length()
    if (n < d << top) if top >= 0 else (n << -top) < d:
        top -= 1  # now 2**top <= n/d < 2**(top+1)
    if top > f.emax:
        return -math.inf if sign else math.inf
    quantum = max(top, f.emin) - f.precision + 1
    num, den = (n, d << quantum) if quantum >= 0 else (n << -quantum, d)
    m, rem = divmod(num, den)
    if 2 * rem > den or (2 * rem == den and m & 1):
        m += 1
    if m and m.bit_length() - 1 + quantum > f.emax:
        return -math.inf if sign else math.inf
    value = math.ldexp(m, quantum)
    return -value if sign else value
