"""The PyTorch adapter against values worked out from the math, and its mapping of options.

Expected values are closed forms evaluated here in mpmath at 200 bits and rounded once into the
case dtype (never taken from torch, another framework or the adapter). torch computes in the case
dtype, so a loss may be a few ulps from the correctly rounded value: each comparison states its
bound. Gradients are checked against closed forms and, through the engine, against the oracle's
certified gradients.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mpmath import mp

torch = pytest.importorskip("torch")

import oracle  # noqa: E402
from adapters.torch_adapter import TorchAdapter  # noqa: E402
from cases import Case, fmt  # noqa: E402
from conformance.runner import _judge  # noqa: E402
from tests.helpers import make, rounded, ulps  # noqa: E402

DTYPES = ("float16", "bfloat16", "float32", "float64")
TORCH = TorchAdapter()








def verdict(case: Case, api: str) -> str:
    cv, _ = _judge(TORCH, api, case, oracle.evaluate(case), {})
    return cv.verdict


# -- availability and imports ----------------------------------------------------------------------

def test_available_reports_the_torch_version():
    assert TORCH.available() == (True, torch.__version__)


def test_module_import_loads_no_torch():
    code = "import sys, adapters.torch_adapter; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=str(Path(__file__).resolve().parents[1]))
    assert out.stdout.strip() == "False"


# -- values ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("api", ["binary_cross_entropy_with_logits", "BCEWithLogitsLoss"])
def test_bce_with_logits_at_zero_is_log_2(api, dtype):
    case = make("sigmoid_bce_logits", dtype, logits=[0.0, 0.0, 0.0], labels=[0.0, 0.5, 1.0])
    out = TORCH.evaluate(case, api)
    with mp.workprec(200):
        want = rounded([mp.log(2)] * 3, dtype)
    assert out.value.dtype == fmt(dtype).np_dtype
    assert ulps(out.value, want, dtype) <= 1  # log 2 from one log_sigmoid in the dtype


@pytest.mark.parametrize("dtype", DTYPES)
def test_cross_entropy_of_equal_logits_is_log_c(dtype):
    n_classes = 5
    case = make("softmax_ce_sparse", dtype, logits=np.full((3, n_classes), 2.5), labels=[0, 3, 4])
    with mp.workprec(200):
        want = rounded([mp.log(n_classes)] * 3, dtype)
    for api in ("cross_entropy", "CrossEntropyLoss", "nll_loss(log_softmax)"):
        out = TORCH.evaluate(case, api)
        assert out.value.dtype == fmt(dtype).np_dtype
        assert ulps(out.value, want, dtype) <= 1, api  # log of a sum of C ones


@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_cross_entropy_of_equal_logits_is_log_c(dtype):
    case = make("softmax_ce_dense", dtype, logits=np.zeros((2, 4)), labels=[[1, 0, 0, 0], [0.25] * 4])
    with mp.workprec(200):
        want = rounded([mp.log(4)] * 2, dtype)
    assert ulps(TORCH.evaluate(case, "cross_entropy").value, want, dtype) <= 1


def test_cross_entropy_class_weighted_mean_with_ignore_index_by_hand():
    # Row 0 (class 0, weight 1) costs log 2, row 1 (class 1, weight 3) costs log(1 + e^20), row 2
    # is ignored (it would cost about 200): the mean is (log 2 + 3 log(1 + e^20)) / (1 + 3).
    case = make("softmax_ce_sparse", "float64", {"reduction": "weighted_mean", "ignore_index": -1},
                logits=[[0.0, 0.0], [20.0, 0.0], [100.0, -100.0]], labels=[0, 1, -1], class_weights=[1.0, 3.0])
    with mp.workprec(200):
        want = rounded((mp.log(2) + 3 * mp.log1p(mp.exp(20))) / 4, "float64")
    for api in ("cross_entropy", "nll_loss(log_softmax)"):
        assert ulps(TORCH.evaluate(case, api).value, want, "float64") <= 2, api


def test_cross_entropy_plain_mean_with_an_ignored_target_is_not_applicable():
    # torch's mean divides by the 2 targets kept; the case's mean divides by all 3 units.
    case = make("softmax_ce_sparse", "float64", {"reduction": "mean", "ignore_index": -1},
                logits=np.zeros((3, 2)), labels=[0, 1, -1])
    assert TORCH.apis(case) == []


def test_cross_entropy_takes_nchw_inputs():
    n_classes = 4
    case = make("softmax_ce_sparse", "float32", {"axis": 1},
                logits=np.zeros((2, n_classes, 3, 5)), labels=np.arange(30).reshape(2, 3, 5) % n_classes)
    out = TORCH.evaluate(case, "CrossEntropyLoss")
    with mp.workprec(200):
        want = rounded(np.full((2, 3, 5), mp.log(n_classes), dtype=object), "float32")
    assert out.value.shape == (2, 3, 5)
    assert ulps(out.value, want, "float32") <= 1


def test_cross_entropy_with_classes_last_in_4d_is_not_applicable():
    case = make("softmax_ce_sparse", "float32", logits=np.zeros((2, 3, 5, 4)), labels=np.zeros((2, 3, 5), dtype=int))
    assert TORCH.apis(case) == []


def test_cross_entropy_label_smoothing_by_hand():
    # C = 2, logits (0, 20), label 0: l = (1 - e/2) LSE + (e/2)(LSE - 20), LSE = log(1 + e^20).
    e = 0.25
    case = make("softmax_ce_sparse", "float64", {"label_smoothing": e}, logits=[[0.0, 20.0]], labels=[0])
    with mp.workprec(200):
        lse = mp.log1p(mp.exp(20))
        want = rounded([(1 - mp.mpf(e) / 2) * lse + mp.mpf(e) / 2 * (lse - 20)], "float64")
    assert TORCH.apis(case) == ["cross_entropy", "CrossEntropyLoss"]  # nll_loss has no smoothing
    assert ulps(TORCH.evaluate(case, "cross_entropy").value, want, "float64") <= 2


def test_bce_label_smoothing_is_not_applicable():
    case = make("sigmoid_bce_logits", "float32", {"label_smoothing": 0.1}, logits=[0.0], labels=[1.0])
    assert TORCH.apis(case) == []


def test_bce_weighted_mean_maps_to_torch_mean_only_when_the_weights_sum_to_n():
    def case(weights):
        return make("sigmoid_bce_logits", "float32", {"reduction": "weighted_mean"},
                    logits=[0.0, 1.0, 2.0], labels=[1.0, 0.0, 1.0], weights=weights)

    assert TORCH.apis(case([0.5, 1.5, 1.0])) == ["binary_cross_entropy_with_logits", "BCEWithLogitsLoss"]
    assert TORCH.apis(case([0.5, 1.0, 1.0])) == []


def test_bce_weights_scale_each_element():
    case = make("sigmoid_bce_logits", "float64", {"reduction": "sum"},
                logits=[0.0, 0.0], labels=[1.0, 0.0], weights=[2.0, 0.5], pos_weight=[3.0, 3.0])
    # l = (1 + (q-1) z) log 2 per element at x = 0: 3 log 2 and log 2, weighted 2 and 0.5.
    with mp.workprec(200):
        want = rounded(6.5 * mp.log(2), "float64")
    assert ulps(TORCH.evaluate(case, "BCEWithLogitsLoss").value, want, "float64") <= 2


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_log_softmax_of_equal_logits_is_minus_log_c(dtype):
    case = make("log_softmax", dtype, {"axis": 0}, logits=np.full((3, 2), -7.0))
    with mp.workprec(200):
        want = rounded(np.full((3, 2), -mp.log(3), dtype=object), dtype)
    out = TORCH.evaluate(case, "log_softmax")
    assert out.value.dtype == fmt(dtype).np_dtype
    assert ulps(out.value, want, dtype) <= 1


# -- the documented contract -----------------------------------------------------------------------

@pytest.mark.parametrize("api", ["binary_cross_entropy", "BCELoss"])
def test_bce_loss_at_zero_probability_is_the_contracts_100(api):
    case = make("bce_probs", "float32", probs=[0.0], labels=[1.0])
    assert TORCH.evaluate(case, api, grads=False).value.tolist() == [100.0]  # -max(log 0, -100); the math: inf
    cv, _ = _judge(TORCH, api, case, oracle.evaluate(case), {})
    assert {f.quantity: f.verdict for f in cv.findings}["value"] == "contract"


def test_bce_loss_gradient_at_zero_probability_is_clamped_beyond_the_contract():
    # torch divides by max(p (1 - p), 1e-12) in the backward: -1e12 where the math says -inf and the
    # clamped log's derivative is 0, so the case as a whole stays a divergence.
    case = make("bce_probs", "float32", probs=[0.0], labels=[1.0])
    assert TORCH.evaluate(case, "BCELoss").grads["probs"].tolist() == [np.float32(-1e12)]
    assert verdict(case, "BCELoss") == "inaccurate"


# -- gradients -------------------------------------------------------------------------------------

def test_bce_with_logits_gradients_are_sigmoid_minus_label_and_minus_logit():
    x, z = [-2.0, -0.5, 0.0, 1.0, 3.0], [0.0, 0.25, 0.5, 1.0, 0.25]
    case = make("sigmoid_bce_logits", "float64", logits=x, labels=z)
    out = TORCH.evaluate(case, "binary_cross_entropy_with_logits")
    with mp.workprec(200):
        want_x = rounded([1 / (1 + mp.exp(-xi)) - zi for xi, zi in zip(x, z)], "float64")
    # sigmoid(x) is rounded before z is subtracted; here |sigmoid(x) - z| >= sigmoid(x) / 4
    assert ulps(out.grads["logits"], want_x, "float64") <= 4
    assert out.grads["labels"].tolist() == [-v for v in x]  # d/dz = -x exactly


def test_cross_entropy_gradient_is_softmax_minus_one_hot():
    x = np.array([[1.0, 2.0, 3.0], [0.5, -0.5, 0.0]])
    case = make("softmax_ce_sparse", "float64", {"reduction": "sum"}, logits=x, labels=[2, 0])
    out = TORCH.evaluate(case, "cross_entropy")
    with mp.workprec(200):
        want = []
        for row, label in zip(x.tolist(), (2, 0)):
            total = mp.fsum(mp.exp(v) for v in row)
            want.append([mp.exp(v) / total - (c == label) for c, v in enumerate(row)])
        want = rounded(want, "float64")
    assert ulps(out.grads["logits"], want, "float64") <= 4


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dense_cross_entropy_gradients_conform_to_the_oracle(dtype):
    # Soft labels and class weights: d/dx = A p - a and d/dy = cw (LSE - x), certified by the oracle.
    case = make("softmax_ce_dense", dtype, {"reduction": "sum", "axis": 1},
                logits=[[0.5, -1.0, 2.0], [0.0, 0.25, -0.75]], labels=[[0.25, 0.25, 0.5], [1.0, 0.0, 0.0]],
                class_weights=[1.0, 2.0, 0.5])
    out = TORCH.evaluate(case, "cross_entropy")
    assert set(out.grads) == {"logits", "labels"}
    assert verdict(case, "cross_entropy") == "conforms"


def test_bce_loss_gradients_conform_to_the_oracle():
    case = make("bce_probs", "float64", {"reduction": "mean"}, probs=[0.25, 0.5, 0.875], labels=[1.0, 0.0, 0.5])
    assert set(TORCH.evaluate(case, "BCELoss").grads) == {"probs", "labels"}
    assert verdict(case, "BCELoss") == "conforms"


def test_log_softmax_gradient_is_one_minus_c_times_softmax():
    x = [0.0, 1.0, -2.0]
    case = make("log_softmax", "float64", logits=x)
    with mp.workprec(200):
        total = mp.fsum(mp.exp(v) for v in x)
        want = rounded([1 - 3 * mp.exp(v) / total for v in x], "float64")
    assert ulps(TORCH.evaluate(case, "log_softmax").grads["logits"], want, "float64") <= 4


def test_gradients_come_back_in_the_case_dtype():
    case = make("sigmoid_bce_logits", "bfloat16", logits=[0.5, -1.0], labels=[1.0, 0.0])
    out = TORCH.evaluate(case, "BCEWithLogitsLoss")
    assert {k: v.dtype for k, v in out.grads.items()} == {"logits": fmt("bfloat16").np_dtype,
                                                          "labels": fmt("bfloat16").np_dtype}
