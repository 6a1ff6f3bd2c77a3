"""The scikit-learn adapter against values worked out from the math, its mappings and its contract.

Expected values are closed forms evaluated here in mpmath at 200 bits and rounded once into the
case dtype (never taken from sklearn, another framework or the adapter). sklearn computes the
losses in float64 (``sklearn._loss``) or in the input dtype (``log_loss``), so a value may be a
few ulps from the correctly rounded one: each comparison states its bound.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mpmath import mp

pytest.importorskip("sklearn")

import oracle  # noqa: E402
from adapters.sklearn_adapter import LOG_LOSS, SklearnAdapter  # noqa: E402
from cases import Case, fmt  # noqa: E402
from conformance.runner import _judge  # noqa: E402
from tests.helpers import make, rounded, ulps  # noqa: E402

SKLEARN = SklearnAdapter()
BINOMIAL, MULTINOMIAL = "HalfBinomialLoss", "HalfMultinomialLoss"








def exact(values, dtype):
    """The case's values as mpf (the binary values the dtype holds, not their decimal prints)."""
    return [mp.mpf(float(v)) for v in fmt(dtype).array(values).astype(np.float64).ravel()]


def verdict(case: Case, api: str) -> str:
    cv, _ = _judge(SKLEARN, api, case, oracle.evaluate(case), {})
    return cv.verdict


SEED = {"probs": [0.7, 0.2], "labels": [1.0, 0.0]}


# -- availability and imports ----------------------------------------------------------------------

def test_module_import_loads_no_sklearn():
    code = "import adapters, adapters.sklearn_adapter, sys; print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "False"


def test_available_names_the_sklearn_version():
    ok, version = SKLEARN.available()
    assert ok and version.startswith("scikit-learn ")


# -- metrics.log_loss ------------------------------------------------------------------------------

def test_log_loss_seed_example_mean_matches_mpmath():
    case = make("bce_probs", "float64", {"reduction": "mean"}, **SEED)
    with mp.workprec(200):
        p1, p2 = exact(SEED["probs"], "float64")
        want = rounded([-(mp.log(p1) + mp.log1p(-p2)) / 2], "float64")  # 0.28990924762...
    assert ulps(SKLEARN.evaluate(case, LOG_LOSS).value, want, "float64") <= 2


def test_log_loss_clip_gets_the_contract_verdict_at_p_zero_with_label_one():
    # the truth is +inf; sklearn clips p = 0 to eps and returns -log(eps)/2 as its documentation says
    case = make("bce_probs", "float64", {"reduction": "mean"}, probs=[0.0, 0.5], labels=[1.0, 1.0])
    assert verdict(case, LOG_LOSS) == "contract"


def test_log_loss_contract_clips_to_the_dtypes_epsilon():
    case = make("bce_probs", "float32", {"reduction": "mean"}, **SEED)
    eps = float(np.finfo(np.float32).eps)
    assert SKLEARN.contract(case, LOG_LOSS).params["clip"] == [eps, 1.0 - eps]


def test_log_loss_returns_a_python_float_whatever_the_dtype():
    out = SKLEARN.evaluate(make("bce_probs", "float32", {"reduction": "mean"}, **SEED), LOG_LOSS)
    assert out.value.dtype == np.float64


def test_log_loss_sum_with_weights_is_the_weighted_sum():
    case = make("bce_probs", "float64", {"reduction": "sum"}, weights=[3.0, 0.5], **SEED)
    with mp.workprec(200):
        p1, p2 = exact(SEED["probs"], "float64")
        want = rounded([-(3 * mp.log(p1) + mp.log1p(-p2) / 2)], "float64")
    assert ulps(SKLEARN.evaluate(case, LOG_LOSS).value, want, "float64") <= 2


def test_log_loss_normalize_with_weights_is_the_weighted_mean():
    case = make("bce_probs", "float64", {"reduction": "weighted_mean"}, weights=[3.0, 0.5], **SEED)
    with mp.workprec(200):
        p1, p2 = exact(SEED["probs"], "float64")
        want = rounded([-(3 * mp.log(p1) + mp.log1p(-p2) / 2) / mp.mpf(3.5)], "float64")
    assert ulps(SKLEARN.evaluate(case, LOG_LOSS).value, want, "float64") <= 2


def test_log_loss_plain_mean_with_weights_is_not_applicable():
    assert SKLEARN.apis(make("bce_probs", "float64", {"reduction": "mean"}, weights=[3.0, 0.5], **SEED)) == []


def test_log_loss_soft_labels_are_not_applicable():
    assert SKLEARN.apis(make("bce_probs", "float64", {"reduction": "mean"}, probs=[0.5], labels=[0.25])) == []


def test_log_loss_categorical_one_hot_rows_along_the_class_axis():
    probs = [[0.25, 0.5], [0.125, 0.25], [0.625, 0.25]]  # classes along axis 0
    labels = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0]]
    case = make("categorical_ce_probs", "float64", {"reduction": "mean", "axis": 0}, probs=probs, labels=labels)
    with mp.workprec(200):
        want = rounded([-(mp.log(mp.mpf(0.625)) + mp.log(mp.mpf(0.25))) / 2], "float64")
    assert ulps(SKLEARN.evaluate(case, LOG_LOSS).value, want, "float64") <= 2


# -- sklearn._loss ---------------------------------------------------------------------------------

def test_half_binomial_loss_is_sigmoid_bce_without_factor_or_offset():
    xs, zs = [0.0, -1.5, 0.75, 3.0], [1.0, 0.0, 0.25, 1.0]
    case = make("sigmoid_bce_logits", "float64", logits=xs, labels=zs)
    with mp.workprec(200):
        want = [mp.log1p(mp.exp(x)) - z * x for x, z in zip(exact(xs, "float64"), exact(zs, "float64"))]
    assert ulps(SKLEARN.evaluate(case, f"{BINOMIAL}.loss").value, rounded(want, "float64"), "float64") <= 4


def test_half_binomial_gradient_is_sigmoid_minus_label():
    xs, zs = [0.0, -1.5, 0.75, 3.0], [1.0, 0.0, 0.25, 1.0]
    case = make("sigmoid_bce_logits", "float64", logits=xs, labels=zs)
    with mp.workprec(200):
        want = [1 / (1 + mp.exp(-x)) - z for x, z in zip(exact(xs, "float64"), exact(zs, "float64"))]
    for method in ("loss", "loss_gradient"):
        got = SKLEARN.evaluate(case, f"{BINOMIAL}.{method}").grads["logits"]
        assert ulps(got, rounded(want, "float64"), "float64") <= 4


def test_half_binomial_sample_weight_scales_each_element():
    case = make("sigmoid_bce_logits", "float32", logits=[0.0, 0.0], labels=[1.0, 0.0], weights=[2.0, 0.5])
    with mp.workprec(200):
        want = rounded([2 * mp.log(2), mp.log(2) / 2], "float32")
    assert ulps(SKLEARN.evaluate(case, f"{BINOMIAL}.loss").value, want, "float32") <= 1


def test_half_binomial_call_is_the_weighted_mean():
    case = make("sigmoid_bce_logits", "float64", {"reduction": "weighted_mean"}, logits=[0.0, 0.0],
                labels=[1.0, 0.0], weights=[2.0, 0.5])
    assert SKLEARN.apis(case) == [f"{BINOMIAL}.__call__"]
    with mp.workprec(200):
        want = rounded([mp.log(2)], "float64")
    assert ulps(SKLEARN.evaluate(case, f"{BINOMIAL}.__call__").value, want, "float64") <= 2


def test_half_multinomial_of_equal_logits_is_log_c_with_gradient_one_over_c_minus_one_hot():
    case = make("softmax_ce_sparse", "float32", logits=[[1.5] * 5, [-2.0] * 5], labels=[3, 0])
    out = SKLEARN.evaluate(case, f"{MULTINOMIAL}.loss")
    with mp.workprec(200):
        want = rounded([mp.log(5)] * 2, "float32")
        grad = rounded([[mp.mpf(1) / 5 - (j == k) for j in range(5)] for k in (3, 0)], "float32")
    assert ulps(out.value, want, "float32") <= 1
    assert ulps(out.grads["logits"], grad, "float32") <= 1


def test_half_multinomial_takes_the_class_axis_anywhere():
    logits = [[3.0, 0.0], [-1.0, 0.0], [0.5, 0.0]]  # classes along axis 0: rows (3, -1, .5), (0, 0, 0)
    case = make("softmax_ce_sparse", "float64", {"axis": 0}, logits=logits, labels=[1, 2])
    with mp.workprec(200):
        x = [mp.mpf(3), mp.mpf(-1), mp.mpf(0.5)]
        want = rounded([mp.log(mp.fsum(mp.exp(v) for v in x)) + 1, mp.log(3)], "float64")
    assert ulps(SKLEARN.evaluate(case, f"{MULTINOMIAL}.loss_gradient").value, want, "float64") <= 2


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_raw_losses_are_not_applicable_in_16_bit(dtype):
    assert SKLEARN.apis(make("sigmoid_bce_logits", dtype, logits=[0.0], labels=[1.0])) == []


def test_half_multinomial_out_of_range_class_is_not_applicable():
    # the kernel reads x[i, int(y_i)] with no bounds check
    assert SKLEARN.apis(make("softmax_ce_sparse", "float64", logits=[[0.0, 0.0]], labels=[2])) == []
