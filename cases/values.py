"""Hypothesis strategies for the arrays of a case: logits, probabilities, labels and weights.

Every strategy yields numpy arrays already in the case dtype. Elements are drawn as bit patterns
of the dtype, or as float64 values rounded into it (finite values clipped to its finite range
first, so rounding never makes an infinity), so each value is exactly representable.
Logit strategies share the signature `(dtype, shape, axis=None)`; `axis` is the class axis as a
non-negative index, used by row-wise strategies and ignored by element-wise ones.
"""
from __future__ import annotations

import math
from functools import lru_cache, partial

import numpy as np
from hypothesis import strategies as st

from .dtypes import FORMATS, FloatFormat, fmt

# Magnitudes where exp or softplus over- or underflows in some format: log of the largest finite,
# smallest normal and smallest subnormal value, p*ln 2 (exp(-x) drops below half an ulp of 1),
# and PyTorch's softplus threshold 20. A float16 case gets the float32 edges too: frameworks
# often compute float16 in float32.
_EDGES = sorted({abs(e) for g in FORMATS.values()
                 for e in (math.log(g.max_finite), math.log(g.min_normal), math.log(g.min_subnormal),
                           g.precision * math.log(2))} | {20.0})


# -- layouts and rows ----------------------------------------------------------------------------

@st.composite
def layouts(draw, has_axis: bool, nonempty: bool = False):
    """(shape, axis) of a logits or probs array; axis is None without a class axis.

    With a class axis: mostly (N, C) rows, also a single row, a wide row of 64 classes,
    N x C x H x W and N x C x L with axis=1, N x L x C, and classes first. An empty batch now
    and then unless `nonempty`.

    Sizes come from short menus (batches 1, 2, 4; classes 1, 2, 3, 5, 8) rather than every
    integer: the edge sizes (0, 1, one class, 64 classes) are all there, and JIT-compiling
    frameworks (JAX eagerly compiles each primitive per shape, XLA each function) see the same
    shapes again, which makes an audit several times faster.
    """
    batch = st.sampled_from([1, 2, 4]) if nonempty else st.sampled_from([1, 2, 4] * 4 + [0])
    if not has_axis:
        ndim = draw(st.sampled_from([1, 2, 2, 3]))
        if ndim == 1:
            return (draw(st.sampled_from([1, 3, 8])),), None
        if ndim == 2:
            return (draw(batch), draw(st.sampled_from([1, 3]))), None
        return (2, 1, 3), None
    classes = st.sampled_from([2, 3, 5, 8] * 3 + [1])
    kind = draw(st.sampled_from(["rows"] * 5 + ["vector", "wide", "nchw", "ncl", "nlc", "cn"]))
    if kind == "rows":
        return (draw(batch), draw(classes)), draw(st.sampled_from([-1, 1]))
    if kind == "vector":
        return (draw(classes),), draw(st.sampled_from([-1, 0]))
    if kind == "wide":
        return (draw(st.sampled_from([1, 2])), 64), -1
    if kind == "nchw":
        return (1, draw(st.sampled_from([2, 3])), 2, 2), 1
    if kind == "ncl":
        return (2, draw(classes), 3), 1
    if kind == "nlc":
        return (2, 3, draw(classes)), draw(st.sampled_from([-1, 2]))
    return (draw(classes), 2), 0


def to_rows(arr: np.ndarray, axis: int) -> np.ndarray:
    """A copy of the array as (units, classes), the class axis last."""
    return np.moveaxis(arr, axis, -1).reshape(-1, arr.shape[axis]).copy()


def from_rows(rows: np.ndarray, shape: tuple, axis: int) -> np.ndarray:
    """Inverse of `to_rows`."""
    moved = shape[:axis] + shape[axis + 1:] + (shape[axis],)
    return np.ascontiguousarray(np.moveaxis(rows.reshape(moved), -1, axis))


# -- elements, as bit patterns of the dtype ----------------------------------------------------------

def _sign(f: FloatFormat) -> int:
    return 1 << (f.bits - 1)


def _smallest_normal(f: FloatFormat) -> int:
    """Bits of the smallest normal value; the mantissa field is this minus one."""
    return 1 << (f.precision - 1)


def _inf(f: FloatFormat) -> int:
    return (2 * f.emax + 1) << (f.precision - 1)


def _bits_of(f: FloatFormat, x: float) -> int:
    if math.isfinite(x):
        x = min(max(x, -f.max_finite), f.max_finite)
    return int(f.to_bits(f.array([x]))[0])


def _step(f: FloatFormat, bits: int, k: int) -> int:
    """k ulps away from zero (towards it for k < 0), the sign kept, staying finite."""
    magnitude = min(max((bits & (_sign(f) - 1)) + k, 0), _inf(f) - 1)
    return (bits & _sign(f)) | magnitude


def _rounded(dtype: str, values: st.SearchStrategy) -> st.SearchStrategy[int]:
    return values.map(partial(_bits_of, fmt(dtype)))


@lru_cache(maxsize=None)
def _ordinary_bits(dtype: str):
    return _rounded(dtype, st.one_of(
        st.floats(-10, 10), st.integers(-10, 10).map(float), st.floats(-2.0 ** -6, 2.0 ** -6),
        st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5])))


@lru_cache(maxsize=None)
def _extreme_bits(dtype: str):
    f = fmt(dtype)
    log_uniform = st.builds(  # sign | biased exponent of 2**6 .. largest | mantissa
        lambda s, e, m: s | e << (f.precision - 1) | m, st.sampled_from([0, _sign(f)]),
        st.integers(f.emax + 6, 2 * f.emax), st.integers(0, _smallest_normal(f) - 1))
    named = _rounded(dtype, st.sampled_from([-810.0, 810.0, -1e4, 1e4, -1e5, 1e5, -1e30, 1e30, -1e300]))
    return st.one_of(log_uniform, log_uniform, named)


@lru_cache(maxsize=None)
def _overflow_edge_bits(dtype: str):
    f = fmt(dtype)
    centres = [_bits_of(f, s * e) for e in _EDGES for s in (1.0, -1.0)]
    return st.builds(partial(_step, f), st.sampled_from(centres), st.integers(-4, 4))


@lru_cache(maxsize=None)
def _subnormal_bits(dtype: str):
    f = fmt(dtype)
    top = _smallest_normal(f)
    return st.builds(lambda s, m: s | m, st.sampled_from([0, _sign(f)]),
                     st.one_of(st.integers(0, top), st.sampled_from([1, 2, top - 1, top])))


@lru_cache(maxsize=None)
def _nonfinite_bits(dtype: str):
    f = fmt(dtype)
    payload_nan = st.builds(lambda s, m: s | _inf(f) | m, st.sampled_from([0, _sign(f)]),
                            st.integers(1, _smallest_normal(f) - 1))
    return st.one_of(st.sampled_from([_inf(f), _sign(f) | _inf(f), _bits_of(f, math.nan)]), payload_nan)


@lru_cache(maxsize=None)
def _prob_bits(dtype: str):
    return _rounded(dtype, st.one_of(st.floats(1e-3, 1 - 1e-3),
                                     st.sampled_from([0.5, 0.25, 0.75, 0.1, 0.9, 0.7, 0.2, 0.3, 0.8])))


@lru_cache(maxsize=None)
def _edge_prob_bits(dtype: str):
    f = fmt(dtype)
    one = _bits_of(f, 1.0)
    # Keras clips to [1e-7, 1 - 1e-7]; PyTorch's BCELoss clamps log p to >= -100.
    around = [_bits_of(f, x) for x in (1e-7, 1 - 1e-7, math.exp(-100), f.min_normal, 0.5)]
    return st.one_of(
        st.sampled_from([0, one]),
        st.integers(1, _smallest_normal(f)),
        st.integers(1, 4).map(lambda k: one - k),
        st.builds(partial(_step, f), st.sampled_from(around), st.integers(-2, 2)).map(lambda b: min(b, one)),
        st.builds(lambda e, m: e << (f.precision - 1) | m, st.integers(1, f.emax - 1),
                  st.integers(0, _smallest_normal(f) - 1)),  # log-uniform in [smallest normal, 1)
    )


@lru_cache(maxsize=None)
def _weight_bits(dtype: str):
    return _rounded(dtype, st.one_of(st.floats(0, 4), st.integers(0, 3).map(float),
                                     st.sampled_from([1.0, 0.5, 2.0])))


def _from_bits(f: FloatFormat, bits: list[int], shape: tuple) -> np.ndarray:
    return f.from_bits(np.array(bits, dtype=f.uint_dtype)).reshape(shape)


def _array(dtype: str, shape: tuple, elements: st.SearchStrategy[int]) -> st.SearchStrategy[np.ndarray]:
    n = math.prod(shape)
    return st.lists(elements, min_size=n, max_size=n).map(partial(_from_bits, fmt(dtype), shape=shape))


@st.composite
def _mixed(draw, dtype: str, shape: tuple, special, background=None, share: int = 1):
    """Special values among background ones (ordinary logits by default), at least one special
    value when the array is not empty; `share` background draws per special one."""
    background = _ordinary_bits(dtype) if background is None else background
    n = math.prod(shape)
    bits = draw(st.lists(st.one_of(special, *[background] * share), min_size=n, max_size=n))
    if n:
        bits[draw(st.integers(0, n - 1))] = draw(special)
    return _from_bits(fmt(dtype), bits, shape)


# -- logits ------------------------------------------------------------------------------------------

def ordinary_logits(dtype: str, shape: tuple, axis: int | None = None):
    """|x| <= 10, exact integers, values just around 0, ±0."""
    return _array(dtype, shape, _ordinary_bits(dtype))


def extreme_logits(dtype: str, shape: tuple, axis: int | None = None):
    """|x| from 64 to the largest finite value, log-uniform, plus -810, ±1e4, ±1e30 (clipped)."""
    return _mixed(dtype, shape, _extreme_bits(dtype))


def overflow_edge_logits(dtype: str, shape: tuple, axis: int | None = None):
    """Within 4 ulps of ±88.72, ±709.78, ±11.09, ±103.97, ... (see _EDGES), rounded into dtype."""
    return _mixed(dtype, shape, _overflow_edge_bits(dtype))


def subnormal_logits(dtype: str, shape: tuple, axis: int | None = None):
    """Subnormals of the dtype, ±0 and ± the smallest normal."""
    return _mixed(dtype, shape, _subnormal_bits(dtype))


def nonfinite_logits(dtype: str, shape: tuple, axis: int | None = None):
    """±inf and NaN (quiet, signalling, negative, with payloads), one value in three."""
    return _mixed(dtype, shape, _nonfinite_bits(dtype), share=2)


def any_bits_logits(dtype: str, shape: tuple, axis: int | None = None):
    """Any bit pattern of the dtype."""
    return _array(dtype, shape, st.integers(0, (1 << fmt(dtype).bits) - 1))


@st.composite
def dominant_logit_rows(draw, dtype: str, shape: tuple, axis: int):
    """Ordinary rows with one logit 16 to max-finite above the rest, the row shifted by an offset
    that is 0 or up to 1e30 in magnitude."""
    f = fmt(dtype)
    rows = to_rows(draw(ordinary_logits(dtype, shape)), axis).astype(np.float64)
    for row in rows:
        row += draw(st.one_of(st.just(0.0), st.just(0.0), st.floats(-1e4, 1e4),
                              st.sampled_from([-810.0, 1e4, -1e30, 1e30])))
        gap = draw(st.one_of(st.floats(16, 200), st.sampled_from([30.0, 100.0, 1e3, 1e4, 1e38, f.max_finite])))
        row[draw(st.integers(0, row.size - 1))] = row.max() + gap
    return from_rows(f.array(np.clip(rows, -f.max_finite, f.max_finite)), shape, axis)


# -- probabilities and labels ------------------------------------------------------------------------

@st.composite
def _dyadic_row(draw, c: int) -> np.ndarray:
    """k_i / 2**m with sum k_i = 2**m, m <= 6: sums to exactly 1 in every dtype."""
    total = 1 << draw(st.integers(0, 6))
    cuts = sorted(draw(st.lists(st.integers(0, total), min_size=c - 1, max_size=c - 1)))
    return np.diff([0, *cuts, total]) / total


def _normalised(w: list[float]) -> np.ndarray:
    w = np.array(w)
    return w / w.sum() if w.sum() > 0 else np.full(w.size, 1 / w.size)


def _softmax(x: list[float]) -> np.ndarray:
    e = np.exp(np.array(x) - max(x))
    return e / e.sum()


_ROWS = {
    "exact": _dyadic_row,  # sums to 1 exactly
    "rounded": lambda c: st.lists(st.floats(0, 1), min_size=c, max_size=c).map(_normalised),  # to about 1
    "free": lambda c: st.lists(st.floats(0, 1), min_size=c, max_size=c).map(np.array),  # to anything
    "softmax": lambda c: st.lists(st.floats(-10, 10), min_size=c, max_size=c).map(_softmax),
}


@st.composite
def _distribution_rows(draw, dtype: str, shape: tuple, axis: int, kinds: tuple[str, ...]):
    c = shape[axis]
    row = _ROWS[draw(st.sampled_from(kinds))](c)
    rows = np.array([draw(row) for _ in range(math.prod(shape) // c)], dtype=np.float64)
    return from_rows(fmt(dtype).array(rows.reshape(-1, c)), shape, axis)


def probabilities(dtype: str, shape: tuple, axis: int | None = None):
    """Element-wise: in [0.001, 0.999] (before rounding). Along a class axis: rows that are a
    softmax, sum to 1 exactly, about 1, or anything in [0, 1]."""
    if axis is None:
        return _array(dtype, shape, _prob_bits(dtype))
    return _distribution_rows(dtype, shape, axis, ("softmax", "softmax", "exact", "rounded", "free"))


def edge_probs(dtype: str, shape: tuple, axis: int | None = None):
    """0, 1, subnormals, 1 - k ulps, tiny normals, around 1e-7, 1 - 1e-7 and exp(-100)."""
    return _mixed(dtype, shape, _edge_prob_bits(dtype), background=_prob_bits(dtype))


def soft_labels(dtype: str, shape: tuple, axis: int | None = None):
    """Element-wise: anything in [0, 1]. Along a class axis: rows summing to 1 exactly, about 1,
    or anything in [0, 1]."""
    if axis is None:
        return _array(dtype, shape, _rounded(dtype, st.one_of(
            st.floats(0, 1), st.sampled_from([0.0, 1.0, 0.5, 0.1, 0.9]))))
    return _distribution_rows(dtype, shape, axis, ("exact", "rounded", "free"))


def class_ids(shape: tuple, n_classes: int):
    """int64 class ids in [0, n_classes)."""
    n = math.prod(shape)
    return st.lists(st.integers(0, n_classes - 1), min_size=n, max_size=n).map(
        lambda ids: np.array(ids, dtype=np.int64).reshape(shape))


def hard_labels(dtype: str, shape: tuple, axis: int | None = None):
    """Element-wise: 0 or 1. Along a class axis: one-hot rows."""
    f = fmt(dtype)
    if axis is None:
        return _array(dtype, shape, st.sampled_from([_bits_of(f, 0.0), _bits_of(f, 1.0)]))
    c = shape[axis]

    def onehot(ids):
        return from_rows(f.array(np.eye(c)[ids.reshape(-1)].reshape(-1, c)), shape, axis)
    return class_ids(shape[:axis] + shape[axis + 1:], c).map(onehot)


# -- weights, counts, options and out-of-domain values -----------------------------------------------

@st.composite
def nonnegative_weights(draw, dtype: str, shape: tuple, zeros: bool = False):
    """Weights in [0, 4]; with `zeros`, at least one 0 or -0.0, and all zero one time in five."""
    if not zeros:
        return draw(_array(dtype, shape, _weight_bits(dtype)))
    zero_bits = st.sampled_from([0, _sign(fmt(dtype))])
    if draw(st.integers(0, 4)) == 0:
        return draw(_array(dtype, shape, zero_bits))
    return draw(_mixed(dtype, shape, zero_bits, background=_weight_bits(dtype)))


def expected_counts(dtype: str, shape: tuple):
    """Expected counts Q > 0: ordinary ones and normal values down to the smallest normal."""
    f = fmt(dtype)
    tiny = st.builds(lambda e, m: e << (f.precision - 1) | m, st.integers(1, f.emax + 2),
                     st.integers(0, _smallest_normal(f) - 1))
    ordinary = _rounded(dtype, st.one_of(st.floats(1e-3, 1), st.sampled_from([1.0, 0.5, 2.0, 3.0])))
    return _array(dtype, shape, st.one_of(ordinary, ordinary, tiny))


def label_smoothing(dtype: str):
    """label_smoothing in [0, 1], mostly 0, as a value of the dtype (so a framework that casts it
    to the dtype computes with the same number)."""
    f = fmt(dtype)
    e = st.one_of(st.just(0.0), st.just(0.0), st.just(0.0), st.floats(0, 1),
                  st.sampled_from([0.1, 0.05, 0.2, 0.25, 0.5, 1.0]))
    return e.map(lambda x: float(f.array([x])[0]))


def outside_unit_interval(dtype: str):
    """A value of the dtype outside [0, 1], or NaN."""
    f = fmt(dtype)
    return st.sampled_from([-0.5, 1.5, -1.0, 2.0, -f.min_subnormal, 1 + 2.0 ** (1 - f.precision),
                            -math.inf, math.inf, math.nan])


def negative_or_nan(dtype: str):
    """A negative value of the dtype, or NaN."""
    return st.sampled_from([-1.0, -0.5, -fmt(dtype).min_subnormal, -math.inf, math.nan])
