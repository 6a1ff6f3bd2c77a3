"""ULP distance and spacing, against values derived from each format's IEEE parameters by hand."""
import math

import numpy as np
import pytest

from cases.dtypes import FORMATS
from conformance.ulp import bits_of_error, to_format, ulp_distance, ulp_of

DTYPES = list(FORMATS)


def dist(a, b, name):
    f = FORMATS[name]
    return float(ulp_distance(np.array([a], dtype=np.float64), np.array([b], dtype=np.float64), f)[0])


def positives_below_one(name) -> int:
    """How many non-negative values lie in [0, 1): the subnormal range plus one binade per exponent."""
    f = FORMATS[name]
    return (1 - f.emin) * 2 ** (f.precision - 1)


@pytest.mark.parametrize("name", DTYPES)
def test_ulp_adjacent_floats_are_one_apart(name):
    f = FORMATS[name]
    p = f.precision
    pairs = [
        (1.0, 1.0 + 2.0 ** (1 - p)),  # just above 1
        (1.0 - 2.0 ** -p, 1.0),  # just below 1: the binade below is twice as dense
        (0.0, f.min_subnormal),
        (f.min_normal - f.min_subnormal, f.min_normal),  # largest subnormal to smallest normal
        (f.max_finite - 2.0 ** (f.emax - p + 1), f.max_finite),
        (-1.0, -1.0 - 2.0 ** (1 - p)),
    ]
    for a, b in pairs:
        assert dist(a, b, name) == 1.0, (a, b)


@pytest.mark.parametrize("name", DTYPES)
def test_ulp_signed_zeros_are_zero_apart(name):
    assert dist(0.0, -0.0, name) == 0.0
    assert dist(-0.0, FORMATS[name].min_subnormal, name) == 1.0


@pytest.mark.parametrize("name", DTYPES)
def test_ulp_across_zero_is_the_sum_of_both_magnitudes(name):
    f = FORMATS[name]
    assert dist(3 * f.min_subnormal, -5 * f.min_subnormal, name) == 8.0
    assert dist(1.0, -1.0, name) == float(2 * positives_below_one(name))
    assert dist(-1.0, 2 * f.min_subnormal, name) == float(positives_below_one(name) + 2)


@pytest.mark.parametrize("name", DTYPES)
def test_ulp_max_finite_to_inf_is_one(name):
    f = FORMATS[name]
    assert dist(f.max_finite, math.inf, name) == 1.0
    assert dist(-f.max_finite, -math.inf, name) == 1.0


@pytest.mark.parametrize("name", DTYPES)
def test_ulp_nan_is_zero_from_nan_and_infinitely_far_from_numbers(name):
    assert dist(math.nan, math.nan, name) == 0.0
    assert dist(math.nan, 1.0, name) == math.inf
    assert dist(math.inf, math.nan, name) == math.inf


@pytest.mark.parametrize("name", DTYPES)
def test_ulp_distance_is_symmetric_and_vectorised(name):
    f = FORMATS[name]
    a = np.array([[1.0, -2.0], [0.5, 0.0]])
    b = np.array([[1.0 + 2.0 ** (1 - f.precision), 2.0], [0.25, -f.min_subnormal]])
    d = ulp_distance(a, b, f)
    assert d.shape == (2, 2)
    np.testing.assert_array_equal(d, ulp_distance(b, a, f))
    assert d[0, 0] == 1.0 and d[1, 0] == 2 ** (f.precision - 1) and d[1, 1] == 1.0


def test_ulp_distance_keeps_zero_dimensional_shape():
    f = FORMATS["float32"]
    assert ulp_distance(np.float32(1.0), np.float32(1.0), f).shape == ()


def test_ulp_float64_extremes_do_not_wrap():
    f = FORMATS["float64"]
    top = 0x7FEFFFFFFFFFFFFF  # bits of the largest finite float64, read as an integer
    assert dist(f.max_finite, -f.max_finite, "float64") == float(2 * top)


@pytest.mark.parametrize("name", DTYPES)
def test_ulp_of_is_the_spacing_at_a_value(name):
    f = FORMATS[name]
    p = f.precision
    np.testing.assert_array_equal(
        ulp_of([1.0, 1.5, -1.0, 0.0, f.min_subnormal, f.min_normal, f.max_finite, math.inf], f),
        [2.0 ** (1 - p), 2.0 ** (1 - p), 2.0 ** (1 - p), f.min_subnormal, f.min_subnormal,
         f.min_subnormal, 2.0 ** (f.emax - p + 1), math.inf])


def test_bits_of_error_is_log2_of_one_plus_ulp():
    np.testing.assert_array_equal(bits_of_error([0, 1, 3, 1023]), [0.0, 1.0, 2.0, 10.0])


def test_to_format_rounds_bfloat16_once():
    f = FORMATS["bfloat16"]
    # Above the midpoint between 1 and 1 + 2**-7 by 2**-40; via float32 it would land on the
    # midpoint and round to even (1.0).
    x = 1 + 2.0 ** -8 + 2.0 ** -40
    assert float(to_format(np.array([x]), f)[0]) == 1 + 2.0 ** -7
    assert float(to_format(np.array([1 + 2.0 ** -8]), f)[0]) == 1.0
    assert float(to_format(np.array([-(1 + 2.0 ** -8 + 2.0 ** -40)]), f)[0]) == -(1 + 2.0 ** -7)
