"""The four floating-point formats a case can be written in.

Each format is described by its IEEE-754 parameters, so the oracle can round into it exactly and
the engine can count ULPs in it; the numpy dtype object is only used to hold arrays.
"""
from __future__ import annotations

from dataclasses import dataclass

import ml_dtypes
import numpy as np


@dataclass(frozen=True)
class FloatFormat:
    name: str
    precision: int  # significand bits, the implicit leading bit included
    emax: int  # largest unbiased exponent of a finite value
    bits: int  # storage width
    np_dtype: np.dtype
    uint_dtype: np.dtype

    @property
    def emin(self) -> int:
        """Smallest exponent of a normal value."""
        return 1 - self.emax

    @property
    def unit_roundoff(self) -> float:
        return 2.0 ** -self.precision

    @property
    def max_finite(self) -> float:
        return (2.0 - 2.0 ** (1 - self.precision)) * 2.0 ** self.emax

    @property
    def min_subnormal(self) -> float:
        return 2.0 ** (self.emin - self.precision + 1)

    @property
    def min_normal(self) -> float:
        return 2.0 ** self.emin

    def array(self, values) -> np.ndarray:
        """Values rounded to nearest-even into this format (via float64 only when exact)."""
        return np.asarray(values, dtype=np.float64).astype(self.np_dtype)

    def to_bits(self, arr: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(arr, dtype=self.np_dtype).view(self.uint_dtype)

    def from_bits(self, bits: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(bits, dtype=self.uint_dtype).view(self.np_dtype)


FORMATS: dict[str, FloatFormat] = {
    "float16": FloatFormat("float16", 11, 15, 16, np.dtype(np.float16), np.dtype(np.uint16)),
    "bfloat16": FloatFormat("bfloat16", 8, 127, 16, np.dtype(ml_dtypes.bfloat16), np.dtype(np.uint16)),
    "float32": FloatFormat("float32", 24, 127, 32, np.dtype(np.float32), np.dtype(np.uint32)),
    "float64": FloatFormat("float64", 53, 1023, 64, np.dtype(np.float64), np.dtype(np.uint64)),
}

DTYPES: tuple[str, ...] = tuple(FORMATS)


def fmt(name: str) -> FloatFormat:
    try:
        return FORMATS[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; expected one of {', '.join(DTYPES)}") from None


def dtype_name(dt) -> str:
    """The format name of a numpy dtype (or dtype-like), e.g. 'bfloat16'."""
    dt = np.dtype(dt)
    for name, f in FORMATS.items():
        if f.np_dtype == dt:
            return name
    raise ValueError(f"dtype {dt} is not one of {', '.join(DTYPES)}")
