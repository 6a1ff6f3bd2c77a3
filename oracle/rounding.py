"""Round an exact binary number once, to nearest-even, into a FloatFormat.

The number is given as ``(sign, mantissa, exponent)`` meaning ``(-1)**sign * mantissa * 2**exponent``
with an integer ``mantissa >= 0``. Subnormals, signed zero and overflow to infinity follow IEEE-754:
a value rounds to infinity when it is at least ``(2 - 2**-p) * 2**emax`` (halfway past the largest
finite number).
"""
from __future__ import annotations

import math

from cases.dtypes import FloatFormat


def round_exact(sign: int, man: int, exp: int, f: FloatFormat) -> float:
    """The float of format ``f`` nearest to ``(-1)**sign * man * 2**exp`` (ties to even)."""
    if man == 0:
        return -0.0 if sign else 0.0
    top = exp + man.bit_length() - 1  # floor(log2 |value|)
    quantum = max(top, f.emin) - f.precision + 1  # exponent of the last significand bit
    shift = quantum - exp
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
