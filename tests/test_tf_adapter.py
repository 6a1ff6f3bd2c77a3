"""The TensorFlow adapters against values worked out by hand or in mpmath from closed forms.

Expected values never come from another framework, the oracle or the adapter: each is a closed
form evaluated here at 200 bits and rounded once into the case dtype (tests/reference.round_to).
TensorFlow is imported once for the module; tensorflow-xla compiles each call, so it is used sparingly.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mpmath import mp, mpf

tf = pytest.importorskip("tensorflow")

import oracle  # noqa: E402
from adapters.tf_adapter import TensorFlowAdapter, TensorFlowXLAAdapter  # noqa: E402
from cases import Case, fmt  # noqa: E402
from conformance.runner import _judge  # noqa: E402
from conformance.ulp import ulp_distance  # noqa: E402
from tests.reference import round_to  # noqa: E402

TF = TensorFlowAdapter()
XLA = TensorFlowXLAAdapter()

SEED_LOGITS = [[1.0, -810.0, 20.0], [11.0, 12.0, 14.0], [12.0, 21.0, 23.0]]
SEED_LABELS = np.eye(3).tolist()
# tf.nn.sigmoid_cross_entropy_with_logits on the seed's float64 inputs, as published (seed 001)
SEED_PUBLISHED = ["3.13261688e-01", "0.00000000e+00", "2.00000000e+01",
                  "1.10000167e+01", "6.14419348e-06", "1.40000008e+01",
                  "1.20000061e+01", "2.10000000e+01", "1.02618796e-10"]


def case(variant, dtype, options=None, **inputs):
    f = fmt(dtype)
    arrays = {k: np.asarray(v, dtype=np.int64) if k in ("labels", "sampled") and np.asarray(v).dtype.kind == "i"
              else f.array(v) for k, v in inputs.items()}
    return Case(variant, dtype, arrays, options or {})


def rounded(values, dtype) -> np.ndarray:
    """mpmath values rounded once, to nearest-even, into ``dtype``."""
    flat = [round_to(mpf(v), dtype) for v in np.ravel(np.array(values, dtype=object))]
    return np.array(flat, dtype=fmt(dtype).np_dtype).reshape(np.shape(values))


def ulps(got, want, dtype) -> np.ndarray:
    return ulp_distance(np.asarray(got), np.asarray(want), fmt(dtype))


def sigmoid_bce(x, z):
    """(1-z) x + log1p(exp(-x)) at 200 bits."""
    with mp.workprec(200):
        return (1 - mpf(z)) * mpf(x) + mp.log1p(mp.exp(-mpf(x)))


def seed_case():
    return case("sigmoid_bce_logits", "float64", logits=SEED_LOGITS, labels=SEED_LABELS)


def test_sigmoid_seed_example_is_within_one_ulp_of_the_truth():
    with mp.workprec(200):
        truth = rounded([[sigmoid_bce(x, z) for x, z in zip(xs, zs)] for xs, zs in zip(SEED_LOGITS, SEED_LABELS)],
                        "float64")
    got = TF.evaluate(seed_case(), "tf.nn.sigmoid_cross_entropy_with_logits").value
    # max(x,0) - x z + log1p(exp(-|x|)) rounds twice: one ulp; at x = -810 the truth, 1e-352, rounds to 0
    assert got.dtype == np.float64 and ulps(got, truth, "float64").max() <= 1 and got[0, 1] == 0.0


def test_sigmoid_seed_example_prints_the_published_values():
    got = TF.evaluate(seed_case(), "tf.nn.sigmoid_cross_entropy_with_logits").value
    assert [f"{v:.8e}" for v in got.ravel()] == SEED_PUBLISHED


def test_sigmoid_seed_example_under_xla_prints_the_published_values():
    got = XLA.evaluate(seed_case(), "tf.nn.sigmoid_cross_entropy_with_logits").value
    assert [f"{v:.8e}" for v in got.ravel()] == SEED_PUBLISHED


def test_sigmoid_logit_gradient_is_sigmoid_minus_label():
    xs, zs = [-3.0, -0.5, 0.25, 2.0, 10.0], [0.0, 1.0, 0.5, 1.0, 0.0]
    c = case("sigmoid_bce_logits", "float64", logits=xs, labels=zs)
    with mp.workprec(200):
        want = rounded([1 / (1 + mp.exp(-mpf(x))) - mpf(z) for x, z in zip(xs, zs)], "float64")
    got = TF.evaluate(c, "tf.nn.sigmoid_cross_entropy_with_logits").grads["logits"]
    # sigmoid(2) - 1 = -0.119 cancels from 0.88: a few ulps of the difference
    assert ulps(got, want, "float64").max() <= 4


def test_sigmoid_label_gradient_is_minus_the_logit():
    xs = [-3.0, -0.5, 0.25, 2.0, 10.0]
    c = case("sigmoid_bce_logits", "float32", logits=xs, labels=[0.0, 1.0, 0.5, 1.0, 0.0])
    got = TF.evaluate(c, "tf.nn.sigmoid_cross_entropy_with_logits").grads["labels"]
    assert got.dtype == np.float32 and np.array_equal(got, -np.array(xs, dtype=np.float32))


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_softmax_of_equal_logits_is_exactly_uniform(dtype):
    # exp(x - max) = 1 for every class, even at x = 1000 where a naive exp overflows
    c = case("softmax", dtype, logits=[[1000.0] * 4, [-3.0] * 4])
    got = TF.evaluate(c, "tf.nn.softmax").value
    assert got.dtype == fmt(dtype).np_dtype and np.all(got == 0.25)


def test_v1_sum_by_nonzero_weights_divides_by_the_nonzero_count():
    # a row [0, 0] costs ln 2, the row [0, 2] with label 1 costs log1p(exp(-2)); with weights
    # [1, 0, 2] the sum is ln 2 + 2 log1p(exp(-2)), over 2 non-zero weights (the zero one not counted)
    c = case("softmax_ce_sparse", "float32", {"reduction": "sum_over_nonzero_weights"},
             logits=[[0.0, 0.0], [0.0, 0.0], [0.0, 2.0]], labels=[0, 1, 1], weights=[1.0, 0.0, 2.0])
    with mp.workprec(200):
        want = rounded((mp.log(2) + 2 * mp.log1p(mp.exp(-2))) / 2, "float32")
    got = TF.evaluate(c, "tf.compat.v1.losses.sparse_softmax_cross_entropy").value
    assert got.dtype == np.float32 and ulps(got, want, "float32") <= 2


def test_v1_weighted_mean_divides_by_the_sum_of_weights():
    c = case("sigmoid_bce_logits", "float32", {"reduction": "weighted_mean"},
             logits=[0.0, 0.0, 0.0], labels=[1.0, 0.0, 1.0], weights=[1.0, 0.0, 3.0])
    # every unit costs ln 2: (1 + 3) ln 2 / (1 + 0 + 3) = ln 2
    with mp.workprec(200):
        want = rounded(mp.log(2), "float32")
    got = TF.evaluate(c, "tf.compat.v1.losses.sigmoid_cross_entropy").value
    assert ulps(got, want, "float32") <= 1


def test_v1_sigmoid_label_smoothing_pulls_labels_towards_one_half():
    c = case("sigmoid_bce_logits", "float32", {"label_smoothing": 0.5}, logits=[2.0], labels=[1.0])
    # z' = 1 * (1 - 0.5) + 0.5 / 2 = 0.75
    with mp.workprec(200):
        want = rounded([sigmoid_bce(2, mpf(3) / 4)], "float32")
    got = TF.evaluate(c, "tf.compat.v1.losses.sigmoid_cross_entropy").value
    assert ulps(got, want, "float32").max() <= 2


def test_sampled_softmax_removes_an_accidental_hit():
    # one row, D = 1: true class 0 has logit 1*1 + 0 - log 1 = 1; sampled class 0 is an accidental
    # hit (logit -inf); sampled class 2 has logit 1*0 + 0 - log(1/2) = ln 2.
    # loss = -log(e / (e + 2)) = log1p(2/e)
    c = case("sampled_softmax", "float64", {"remove_accidental_hits": True},
             inputs=[[1.0]], embeddings=[[1.0], [5.0], [0.0]], biases=[0.0, 0.0, 0.0], labels=[[0]],
             sampled=[0, 2], true_expected_count=[[1.0]], sampled_expected_count=[1.0, 0.5])
    with mp.workprec(200):
        want = rounded([mp.log1p(2 / mp.e)], "float64")
    got = TF.evaluate(c, "tf.nn.sampled_softmax_loss").value
    assert ulps(got, want, "float64").max() <= 4


def test_sampled_softmax_keeps_an_accidental_hit_when_asked():
    # the hit now counts with logit 1: loss = log(e + e + 2) - 1 = log(2 + 2/e)
    c = case("sampled_softmax", "float64", {"remove_accidental_hits": False},
             inputs=[[1.0]], embeddings=[[1.0], [5.0], [0.0]], biases=[0.0, 0.0, 0.0], labels=[[0]],
             sampled=[0, 2], true_expected_count=[[1.0]], sampled_expected_count=[1.0, 0.5])
    with mp.workprec(200):
        want = rounded([mp.log(2 + 2 / mp.e)], "float64")
    got = TF.evaluate(c, "tf.nn.sampled_softmax_loss").value
    assert ulps(got, want, "float64").max() <= 4


def test_log_loss_declares_the_float32_epsilon_contract():
    c = case("bce_probs", "float64", probs=[0.5], labels=[1.0])
    contract = TF.contract(c, "tf.compat.v1.losses.log_loss")
    assert contract.params == {"log_offset": float(np.float32(1e-7))} and contract.url.startswith("https://")


def test_log_loss_off_by_its_epsilon_gets_the_contract_verdict():
    # -log(1 - p + eps) at p = 3/16, z = 0 is 10 float32 ulps below -log(1 - p): beyond the budget
    # of the math, within that of the contract; the gradients stay within theirs.
    c = case("bce_probs", "float32", probs=[0.1875], labels=[0.0])
    verdict, _ = _judge(TF, "tf.compat.v1.losses.log_loss", c, oracle.evaluate(c), {})
    assert verdict.verdict == "contract"


def test_v1_softmax_apis_stop_the_label_gradient():
    c = case("softmax_ce_dense", "float32", logits=[[1.0, 2.0, 3.0]], labels=[[0.25, 0.25, 0.5]])
    v1 = TF.evaluate(c, "tf.compat.v1.nn.softmax_cross_entropy_with_logits").grads
    v2 = TF.evaluate(c, "tf.nn.softmax_cross_entropy_with_logits").grads
    assert set(v1) == {"logits"} and set(v2) == {"logits", "labels"}


def test_softmax_label_gradient_is_minus_log_softmax():
    c = case("softmax_ce_dense", "float64", logits=[[0.0, 0.0]], labels=[[0.5, 0.5]])
    got = TF.evaluate(c, "tf.nn.softmax_cross_entropy_with_logits").grads["labels"]
    with mp.workprec(200):
        want = rounded([[mp.log(2), mp.log(2)]], "float64")
    assert ulps(got, want, "float64").max() <= 1


def test_bfloat16_case_is_called_at_bfloat16():
    c = case("sigmoid_bce_logits", "bfloat16", logits=[0.0], labels=[1.0])
    out = TF.evaluate(c, "tf.nn.sigmoid_cross_entropy_with_logits")
    assert out.value.dtype.name == "bfloat16" and out.grads["logits"].dtype.name == "bfloat16"


def test_apis_map_weights_and_reductions_to_the_v1_losses_only():
    plain = case("sigmoid_bce_logits", "float32", logits=[0.0], labels=[1.0])
    weighted = case("sigmoid_bce_logits", "float32", {"reduction": "mean"}, logits=[0.0], labels=[1.0],
                    weights=[2.0])
    pos = case("sigmoid_bce_logits", "float32", logits=[0.0], labels=[1.0], pos_weight=[2.0])
    assert TF.apis(plain) == ["tf.nn.sigmoid_cross_entropy_with_logits", "tf.compat.v1.losses.sigmoid_cross_entropy"]
    assert TF.apis(weighted) == ["tf.compat.v1.losses.sigmoid_cross_entropy"]
    assert TF.apis(pos) == ["tf.nn.weighted_cross_entropy_with_logits"]


def test_sparse_apis_do_not_express_ignored_targets_or_other_axes():
    ignored = case("softmax_ce_sparse", "float32", {"ignore_index": -100}, logits=[[0.0, 1.0]], labels=[-100])
    unused = case("softmax_ce_sparse", "float32", {"ignore_index": -100}, logits=[[0.0, 1.0]], labels=[1])
    first_axis = case("softmax_ce_sparse", "float32", {"axis": 0}, logits=[[0.0, 1.0], [2.0, 3.0]], labels=[0, 1])
    assert TF.apis(ignored) == [] and TF.apis(first_axis) == [] and len(TF.apis(unused)) == 2


def test_sparse_out_of_range_label_is_rejected_eagerly():
    c = case("softmax_ce_sparse", "float32", logits=[[0.0, 1.0, 2.0]], labels=[3])
    verdict, _ = _judge(TF, "tf.nn.sparse_softmax_cross_entropy_with_logits", c, oracle.evaluate(c), {})
    assert verdict.verdict == "conforms" and verdict.worst.message.startswith("rejected")


def test_importing_the_adapter_does_not_import_tensorflow():
    code = "import sys, adapters.tf_adapter; assert 'tensorflow' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


def test_xla_nan_rows_for_invalid_labels_meet_the_documented_contract():
    # tf.nn.sparse_softmax_cross_entropy_with_logits: out-of-range labels raise on CPU (a rejection,
    # which conforms) and give NaN loss and gradient rows on GPU; XLA compiles the GPU behaviour
    c = case("softmax_ce_sparse", "float32", logits=[[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]], labels=[5, 1])
    api = "tf.nn.sparse_softmax_cross_entropy_with_logits"
    truth = oracle.evaluate(c)
    assert truth.status == "invalid"
    assert _judge(TF, api, c, truth, {})[0].verdict == "conforms"
    assert _judge(XLA, api, c, truth, {})[0].verdict == "contract"
