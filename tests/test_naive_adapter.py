"""The controls: each flaw shows concretely where the textbook says it does, and only there."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from mpmath import mp

from adapters.naive import NaiveAdapter
from cases import Case, fmt

NAIVE = NaiveAdapter()


def case(variant, dtype, options=None, **inputs):
    f = fmt(dtype)
    arrays = {k: np.asarray(v, dtype=np.int64) if np.asarray(v).dtype.kind == "i" else f.array(v)
              for k, v in inputs.items()}
    return Case(variant, dtype, arrays, options or {})


def value(api, c):
    return NAIVE.evaluate(c, api).value


def test_naive_adapter_is_a_control():
    assert NAIVE.control and NAIVE.name == "naive"


def test_textbook_gives_nan_and_inf_at_plus_minus_800():
    c = case("sigmoid_bce_logits", "float64", logits=[800.0, 800.0, -800.0], labels=[1.0, 0.0, 1.0])
    v = value("textbook", c)
    # truth: 0, 800, 800. sigmoid(800) rounds to 1, so 0 * -log(1 - 1) = 0 * inf = NaN and
    # -log(1 - 1) = inf; sigmoid(-800) = 1/(1 + inf) = 0, so -log(0) = inf
    assert np.isnan(v[0]) and v[1] == np.inf and v[2] == np.inf


def test_seed_unstable_overflows_at_minus_810():
    c = case("sigmoid_bce_logits", "float64", logits=[-810.0], labels=[0.0])
    # exp(810) = inf; the truth is log1p(exp(-810)), about 1e-352, which is 0 in float64
    assert value("seed_unstable", c)[0] == np.inf


def test_no_log1p_float32_collapses_to_zero_at_x_20_z_1():
    c = case("sigmoid_bce_logits", "float32", logits=[20.0], labels=[1.0])
    with mp.workprec(100):
        truth = float(mp.log1p(mp.exp(-20)))
    assert value("no_log1p", c)[0] == 0.0 and truth == pytest.approx(2.0611536e-9)


@pytest.mark.parametrize("variant, labels", [("softmax_ce_sparse", [0]), ("softmax_ce_dense", [[1.0, 0.0]])])
def test_no_max_shift_is_not_finite_for_logits_1000_0(variant, labels):
    c = case(variant, "float64", logits=[[1000.0, 0.0]], labels=labels)
    # exp(1000) = inf, so log(sum(exp)) - 1000 = inf where the truth is log1p(exp(-1000)) ~ 0
    assert not np.isfinite(value("no_max_shift", c)[0])


@pytest.mark.parametrize("api", ["textbook", "seed_unstable", "no_log1p"])
def test_sigmoid_controls_are_accurate_on_benign_inputs(api):
    c = case("sigmoid_bce_logits", "float64", logits=[0.5, -1.25, 2.0], labels=[0.25, 1.0, 0.0])
    with mp.workprec(100):
        truth = [float((1 - z) * x + mp.log1p(mp.exp(-x))) for x, z in
                 zip(map(mp.mpf, [0.5, -1.25, 2.0]), map(mp.mpf, [0.25, 1.0, 0.0]))]
    np.testing.assert_allclose(value(api, c), truth, rtol=1e-14)


def test_no_max_shift_is_accurate_on_benign_inputs():
    c = case("softmax_ce_sparse", "float32", logits=[[1.0, 2.0, 3.0]], labels=[2])
    with mp.workprec(100):
        truth = float(mp.log(mp.e ** 1 + mp.e ** 2 + mp.e ** 3) - 3)
    assert value("no_max_shift", c)[0] == pytest.approx(truth, rel=1e-6)


def test_naive_apis_only_express_plain_cases():
    plain = case("sigmoid_bce_logits", "float32", logits=[0.0], labels=[1.0])
    weighted = case("sigmoid_bce_logits", "float32", logits=[0.0], labels=[1.0], weights=[2.0])
    smoothed = case("softmax_ce_sparse", "float32", logits=[[0.0, 1.0]], labels=[0], options={"label_smoothing": 0.1})
    weighted_mean = case("softmax_ce_sparse", "float32", logits=[[0.0, 1.0]], labels=[0],
                         options={"reduction": "weighted_mean"})
    assert NAIVE.apis(plain) == ["textbook", "seed_unstable", "no_log1p"]
    assert NAIVE.apis(weighted) == NAIVE.apis(smoothed) == NAIVE.apis(weighted_mean) == []
    assert NAIVE.apis(case("log_softmax", "float32", logits=[[0.0, 1.0]])) == []


def test_naive_mean_divides_value_and_gradients_by_the_unit_count():
    c = case("softmax_ce_dense", "float64", logits=[[0.0, 0.0], [0.0, 0.0]], labels=[[1.0, 0.0], [0.0, 1.0]],
             options={"reduction": "mean"})
    out = NAIVE.evaluate(c, "no_max_shift")
    assert out.value == np.log(2)
    np.testing.assert_array_equal(out.grads["logits"], [[-0.25, 0.25], [0.25, -0.25]])


def test_naive_bfloat16_is_computed_in_float32_and_returned_in_bfloat16():
    c = case("sigmoid_bce_logits", "bfloat16", logits=[20.0], labels=[1.0])
    out = NAIVE.evaluate(c, "no_log1p")
    assert out.value.dtype == ml_dtypes.bfloat16 and out.grads["logits"].dtype == ml_dtypes.bfloat16
    assert float(out.value[0]) == 0.0  # the float32 flaw, carried into bfloat16
