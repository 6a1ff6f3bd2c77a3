"""Exact conversions between text and the values of a float format.

A decimal such as ``0.1`` is rounded once, from its exact rational value, into the target format
(going through float64 first would round twice for float16 and bfloat16). Printing goes the other
way: the shortest decimal that reads back as the same value of the format.
"""
from __future__ import annotations

import math
import re
from decimal import Decimal
from fractions import Fraction

from cases.dtypes import FloatFormat

_HEX = re.compile(r"0x([0-9a-f]*)(?:\.([0-9a-f]*))?(?:p([+-]?\d+))?")


# Beyond these powers of two every format rounds to inf, or to 0: the exact value is not needed (and
# building 2**(10**10) or 10**(10**9) would take minutes and gigabytes).
_HUGE, _TINY = Fraction(2) ** 20000, Fraction(1, 2 ** 20000)


def _exponent(text: str | None) -> int | None:
    """A decimal exponent, or None when it has more than 12 digits (leading zeros aside)."""
    digits = (text or "0").lstrip("+-").lstrip("0") or "0"
    if len(digits) > 12:
        return None
    return -int(digits) if (text or "").startswith("-") else int(digits)


def _exact(body: str) -> Fraction:
    m = _HEX.fullmatch(body)
    if body.startswith("0x"):
        if not m or not (m.group(1) or m.group(2)):
            raise ValueError(f"not a number: {body!r}")
        whole, frac = m.group(1) or "0", m.group(2) or ""
        mant, exp = int(whole + frac, 16), _exponent(m.group(3))
        if mant == 0:
            return Fraction(0)
        if exp is None:
            return _TINY if (m.group(3) or "").startswith("-") else _HUGE
        scale = exp - 4 * len(frac)
        if mant.bit_length() + scale > 20000:
            return _HUGE
        if mant.bit_length() + scale < -20000:
            return _TINY
        return Fraction(mant) * Fraction(2) ** scale
    m = re.fullmatch(r"(\d+)?(?:\.(\d*))?(?:e([+-]?\d+))?", body)
    if not m or not re.fullmatch(r"(\d+\.?\d*|\.\d+)(e[+-]?\d+)?", body):
        raise ValueError(f"not a number: {body!r}")
    digits = ((m.group(1) or "") + (m.group(2) or "")).lstrip("0")
    exp = _exponent(m.group(3))
    if not digits:
        return Fraction(0)
    if exp is None:
        return _TINY if (m.group(3) or "").startswith("-") else _HUGE
    scale = exp - len(m.group(2) or "") + len(digits) - len(digits.rstrip("0"))  # value = int(digits) * 10**scale
    digits = digits.rstrip("0")
    magnitude = len(digits) + scale  # 10**(magnitude-1) <= value < 10**magnitude
    if magnitude > 7000:  # 10**7000 > 2**20000
        return _HUGE
    if magnitude < -7000:
        return _TINY
    if len(digits) > 4000:  # int() refuses more than 4300 digits
        raise ValueError(f"more than 4000 significant digits: {body[:40]!r}…")
    return Fraction(int(digits)) * Fraction(10) ** scale


def round_fraction(q: Fraction, f: FloatFormat) -> float:
    """The non-negative rational ``q`` rounded to nearest-even into ``f`` (inf past the top)."""
    if q == 0:
        return 0.0
    e = q.numerator.bit_length() - q.denominator.bit_length()
    if Fraction(2) ** e > q:
        e -= 1
    shift = max(e, f.emin) - f.precision + 1  # the exponent of one ulp at q
    n = round(q / Fraction(2) ** shift)  # Fraction rounds halves to even
    if n * Fraction(2) ** shift >= Fraction(2) ** (f.emax + 1):
        return math.inf
    return math.ldexp(n, shift)


def parse_float(token: str, f: FloatFormat) -> tuple[float, bool]:
    """(value of ``token`` in ``f`` as a float64, whether rounding changed it).

    Accepts decimals (``-810``, ``1e-3``), hex floats (``-0x1.95p+9``), ``inf``, ``-inf``, ``nan``.
    """
    t = token.strip().lower()
    negative = t.startswith("-")
    body = t[1:] if t[:1] in "+-" else t
    if body in ("inf", "infinity"):
        return (-math.inf if negative else math.inf), False
    if body == "nan":
        return math.nan, False
    q = _exact(body)
    v = round_fraction(q, f)
    changed = math.isinf(v) or Fraction(v) != q
    return (-v if negative else v), changed


def shortest(v: float, f: FloatFormat | None) -> str:
    """The shortest decimal that reads back as ``v`` in format ``f`` (only inf and nan without one)."""
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    for digits in range(1, 18):
        s = f"{v:.{digits}g}"
        back, _ = parse_float(s, f)
        if back == v and math.copysign(1, back) == math.copysign(1, v):
            return format(Decimal(s), "f") if 1e-4 <= abs(v) < 1e16 else s
    return repr(v)


def hex_of(v: float) -> str:
    """Exact hex of a float without float.hex's trailing zeros: -0x1.95p+9, inf, nan."""
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    mantissa, exponent = float(v).hex().split("p")
    return mantissa.rstrip("0").rstrip(".") + "p" + exponent


def exact_decimal(v: float, digits: int = 25) -> str:
    """The exact decimal value of a float, cut to ``digits`` significant digits (marked with …)."""
    if not math.isfinite(v):
        return shortest(v, None)
    d = Decimal(v)
    if len(d.as_tuple().digits) <= digits:
        return format(d, "f") if 1e-4 <= abs(v) < 1e16 or v == 0 else format(d, "e")
    return format(d, f".{digits - 1}e") + "…"
