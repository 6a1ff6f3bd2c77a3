"""The numpy reference against values worked out independently with mpmath, and its conventions.

Expected values are computed here at 200 bits from the textbook formulas (never from the adapter
or the oracle) and rounded once, to nearest-even, into the case dtype. A loss may be 1 ulp off in
the narrow dtypes (float64 computation, then a second rounding) and 2 ulps off in float64.
"""
from __future__ import annotations

import subprocess
import sys

import ml_dtypes
import numpy as np
import pytest
from mpmath import mp

import adapters
from adapters._numerics import round_to
from adapters.numpy_ref import NumpyAdapter
from cases import Case, fmt
from tests.helpers import bit_ulps as ulps

DTYPES = ("float16", "bfloat16", "float32", "float64")
LOSS_ULPS = {"float16": 1, "bfloat16": 1, "float32": 1, "float64": 2}
NUMPY = NumpyAdapter()
INF = float("inf")


def run(variant, dtype, grads=True, options=None, **inputs):
    f = fmt(dtype)
    arrays = {k: (np.asarray(v, dtype=np.int64) if k in ("labels", "sampled") and np.asarray(v).dtype.kind == "i"
                  else f.array(v)) for k, v in inputs.items()}
    return NUMPY.evaluate(Case(variant, dtype, arrays, options or {}), "numpy", grads=grads)


def rounded(values, dtype) -> np.ndarray:
    """Finite mpmath values rounded once, to nearest-even, into ``dtype``."""
    f = fmt(dtype)

    def one(v):
        if abs(v) < f.min_normal:  # subnormal range: a multiple of the smallest subnormal
            return float(mp.nint(v / f.min_subnormal) * f.min_subnormal)
        with mp.workprec(f.precision):
            r = float(+v)
        return r if abs(r) <= f.max_finite else float(mp.sign(v)) * INF

    with mp.workprec(200):
        flat = [one(v) for v in np.ravel(np.array(values, dtype=object))]
    return np.array(flat).reshape(np.shape(values)).astype(f.np_dtype)




def exact(values, dtype):
    """Input values as mpf, after rounding them into the dtype (the case holds the rounded values)."""
    return [mp.mpf(float(v)) for v in fmt(dtype).array(values).astype(np.float64).ravel()]


def softplus(t):
    return mp.log1p(mp.exp(t))


def sigmoid_bce(x, z, q=1, e=0):
    zs = z * (1 - e) + mp.mpf(e) / 2
    return (1 - zs) * x + (1 + (q - 1) * zs) * softplus(-x)


# -- sigmoid BCE -----------------------------------------------------------------------------------

SEED_LOGITS = [[1, -810, 20], [11, 12, 14], [12, 21, 23]]
SEED_LABELS = np.eye(3).tolist()
SEED_TF_FLOAT64 = ["3.13261688e-01", "0.00000000e+00", "2.00000000e+01", "1.10000167e+01", "6.14419348e-06",
                   "1.40000008e+01", "1.20000061e+01", "2.10000000e+01", "1.02618796e-10"]


def test_sigmoid_bce_seed_example_prints_as_published_tensorflow_values():
    out = run("sigmoid_bce_logits", "float64", logits=SEED_LOGITS, labels=SEED_LABELS)
    assert [f"{v:.8e}" for v in out.value.ravel()] == SEED_TF_FLOAT64


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_bce_seed_example_matches_mpmath(dtype):
    out = run("sigmoid_bce_logits", dtype, logits=SEED_LOGITS, labels=SEED_LABELS)
    with mp.workprec(200):
        want = [sigmoid_bce(x, z) for x, z in zip(exact(SEED_LOGITS, dtype), exact(SEED_LABELS, dtype))]
    # -810 gives log1p(e^-810) ~ 1e-352: 0 in every dtype
    assert out.value.dtype == fmt(dtype).np_dtype
    assert ulps(out.value.ravel(), rounded(want, dtype), dtype).max() <= LOSS_ULPS[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_bce_soft_labels_pos_weight_smoothing_match_mpmath(dtype):
    logits = [-30.0, -2.5, -0.001, 0.75, 9.0, 60.0]
    labels = [0.25, 1.0, 0.5, 0.0, 0.875, 0.125]
    out = run("sigmoid_bce_logits", dtype, logits=logits, labels=labels, pos_weight=[3.0],
              options={"label_smoothing": 0.1})
    with mp.workprec(200):
        e = mp.mpf(0.1)
        want = [sigmoid_bce(x, z, 3, e) for x, z in zip(exact(logits, dtype), exact(labels, dtype))]
    assert ulps(out.value, rounded(want, dtype), dtype).max() <= LOSS_ULPS[dtype]


def test_sigmoid_bce_gradients_match_mpmath():
    logits, labels = [-40.0, -3.0, -1e-3, 0.5, 7.0, 35.0], [0.3, 1.0, 0.5, 0.0, 0.9, 0.25]
    out = run("sigmoid_bce_logits", "float64", logits=logits, labels=labels, pos_weight=[2.0])
    with mp.workprec(200):
        xs, zs = exact(logits, "float64"), exact(labels, "float64")
        dx = [(1 + z) / (1 + mp.exp(-x)) - 2 * z for x, z in zip(xs, zs)]  # c sigmoid(x) - q z
        dz = [-x + softplus(-x) for x in xs]  # -x + (q - 1) softplus(-x)
    assert ulps(out.grads["logits"], rounded(dx, "float64"), "float64").max() <= 4
    assert ulps(out.grads["labels"], rounded(dz, "float64"), "float64").max() <= 4


def test_sigmoid_bce_infinite_logits_take_the_limits():
    out = run("sigmoid_bce_logits", "float32", logits=[INF, INF, -INF, -INF, -INF],
              labels=[1.0, 0.5, 0.0, 1.0, 1.0], pos_weight=[1.0, 1.0, 1.0, 1.0, 0.0])
    np.testing.assert_array_equal(out.value, [0.0, INF, 0.0, INF, 0.0])
    # dl/dx -> 1 - z' at +inf and -q z' at -inf
    np.testing.assert_array_equal(out.grads["logits"], [0.0, 0.5, 0.0, -1.0, 0.0])


def test_sigmoid_bce_nan_logit_is_nan_and_others_are_untouched():
    out = run("sigmoid_bce_logits", "float64", logits=[np.nan, 0.0], labels=[1.0, 1.0])
    assert np.isnan(out.value[0]) and out.value[1] == np.log(2)


def test_sigmoid_bce_zero_weight_beats_an_infinite_loss():
    out = run("sigmoid_bce_logits", "float64", logits=[-INF, 1.0], labels=[1.0, 1.0], weights=[0.0, 2.0],
              options={"reduction": "sum"})
    with mp.workprec(200):
        want = 2 * softplus(mp.mpf(-1))
    assert ulps(out.value, rounded(want, "float64"), "float64") <= 2


# -- BCE on probabilities --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_bce_probs_matches_mpmath(dtype):
    probs, labels = [1e-3, 0.25, 0.5, 0.75, 0.984375], [0.0, 0.3, 1.0, 0.6, 1.0]
    out = run("bce_probs", dtype, probs=probs, labels=labels)
    with mp.workprec(200):
        want = [-(z * mp.log(p) + (1 - z) * mp.log1p(-p)) for p, z in zip(exact(probs, dtype), exact(labels, dtype))]
    assert ulps(out.value, rounded(want, dtype), dtype).max() <= LOSS_ULPS[dtype]


def test_bce_probs_zero_label_factor_drops_the_log_zero_term():
    out = run("bce_probs", "float64", probs=[0.0, 1.0, 0.0, 1.0], labels=[0.0, 1.0, 0.5, 0.5])
    np.testing.assert_array_equal(out.value, [0.0, 0.0, INF, INF])
    np.testing.assert_array_equal(out.grads["probs"], [1.0, -1.0, -INF, INF])


def test_bce_probs_gradient_is_exactly_zero_at_p_equal_to_the_label():
    out = run("bce_probs", "float64", probs=[0.3, 0.9], labels=[0.3, 0.9])
    np.testing.assert_array_equal(out.grads["probs"], [0.0, 0.0])


# -- softmax family --------------------------------------------------------------------------------

def lse(xs):
    return mp.log(mp.fsum(mp.exp(x) for x in xs))


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_ce_dense_soft_labels_class_weights_smoothing_match_mpmath(dtype):
    logits = [[2.0, -1.0, 0.5, 8.0], [-30.0, 0.0, 1.0, 1.0]]
    labels = [[0.25, 0.25, 0.5, 0.0], [0.0, 1.0, 0.0, 0.0]]
    cw = [1.0, 2.0, 0.5, 3.0]
    out = run("softmax_ce_dense", dtype, logits=logits, labels=labels, class_weights=cw,
              options={"label_smoothing": 0.2})
    with mp.workprec(200):
        e, want = mp.mpf(0.2), []
        for x, y in zip(np.reshape(exact(logits, dtype), (2, 4)), np.reshape(exact(labels, dtype), (2, 4))):
            want.append(mp.fsum(w * (yc * (1 - e) + e / 4) * (lse(x) - xc) for w, yc, xc in zip(cw, y, x)))
    assert ulps(out.value, rounded(want, dtype), dtype).max() <= LOSS_ULPS[dtype]


def test_softmax_ce_dense_gradients_match_mpmath():
    logits, labels = [[3.0, -2.0, 0.25, 1.5]], [[0.1, 0.2, 0.3, 0.4]]
    out = run("softmax_ce_dense", "float64", logits=logits, labels=labels)
    with mp.workprec(200):
        x, y = exact(logits, "float64"), exact(labels, "float64")
        big = lse(x)
        dx = [mp.fsum(y) * mp.exp(xj - big) - yj for xj, yj in zip(x, y)]
        dy = [big - xc for xc in x]
    assert ulps(out.grads["logits"].ravel(), rounded(dx, "float64"), "float64").max() <= 4
    assert ulps(out.grads["labels"].ravel(), rounded(dy, "float64"), "float64").max() <= 4


def test_softmax_ce_sparse_dominant_logit_keeps_relative_accuracy():
    out = run("softmax_ce_sparse", "float64", logits=[[0.0, -50.0, -60.0]], labels=[0])
    with mp.workprec(200):
        want = mp.log1p(mp.exp(-50) + mp.exp(-60))  # 1.9e-22, which 1 + tiny would round away
    assert ulps(out.value, rounded([want], "float64"), "float64").max() <= LOSS_ULPS["float64"]


def test_softmax_ce_sparse_minus_810_costs_its_distance_to_the_max():
    out = run("softmax_ce_sparse", "float32", logits=[[1.0, -810.0, 20.0]], labels=[1])
    with mp.workprec(200):
        want = lse([mp.mpf(1), mp.mpf(-810), mp.mpf(20)]) + 810
    assert ulps(out.value, rounded([want], "float32"), "float32").max() <= 1


def test_softmax_ce_sparse_ignored_rows_are_zero_and_leave_the_weighted_mean():
    logits, labels = [[1.0, 2.0], [5.0, -5.0], [0.0, 0.0]], [1, -100, 0]
    options = {"ignore_index": -100}
    none = run("softmax_ce_sparse", "float64", logits=logits, labels=labels, options=options)
    wmean = run("softmax_ce_sparse", "float64", logits=logits, labels=labels,
                options={**options, "reduction": "weighted_mean"})
    mean = run("softmax_ce_sparse", "float64", logits=logits, labels=labels, options={**options, "reduction": "mean"})
    assert none.value[1] == 0.0 and not none.grads["logits"][1].any()
    assert wmean.value == (none.value[0] + none.value[2]) / 2
    assert mean.value == (none.value[0] + none.value[2]) / 3


def test_softmax_ce_sparse_weighted_mean_divides_by_weight_times_class_weight():
    out = run("softmax_ce_sparse", "float64", logits=[[0.0, 0.0], [0.0, 0.0]], labels=[0, 1],
              weights=[1.0, 3.0], class_weights=[2.0, 0.5], options={"reduction": "weighted_mean"})
    with mp.workprec(200):
        want = (1 * 2 * mp.log(2) + 3 * 0.5 * mp.log(2)) / (1 * 2 + 3 * 0.5)
    assert ulps(out.value, rounded(want, "float64"), "float64") <= 2


def test_softmax_ce_masked_minus_inf_class_with_zero_label_contributes_nothing():
    out = run("softmax_ce_dense", "float64", logits=[[-INF, 1.0, 1.0]], labels=[[0.0, 0.5, 0.5]])
    assert out.value[0] == np.log(2)
    np.testing.assert_array_equal(out.grads["logits"], [[0.0, 0.0, 0.0]])
    assert out.grads["labels"][0, 0] == INF


def test_softmax_ce_one_plus_inf_logit_is_the_one_hot_limit():
    out = run("softmax_ce_dense", "float64", logits=[[INF, 3.0, -INF]], labels=[[1.0, 0.0, 0.0]])
    assert out.value[0] == 0.0
    np.testing.assert_array_equal(out.grads["logits"], [[0.0, 0.0, 0.0]])


@pytest.mark.parametrize("row", [[INF, INF, 0.0], [-INF, -INF, -INF], [np.nan, 0.0, 1.0]],
                         ids=["two +inf", "all -inf", "NaN"])
def test_softmax_ce_undefined_row_is_nan(row):
    out = run("softmax_ce_sparse", "float32", logits=[row, [0.0, 0.0, 0.0]], labels=[0, 0])
    assert np.isnan(out.value[0]) and np.isnan(out.grads["logits"][0]).all()
    assert out.value[1] == np.float32(np.log(3))


def test_softmax_ce_dense_huge_logit_gap_with_a_small_label_stays_finite():
    big = np.finfo(np.float64).max
    out = run("softmax_ce_dense", "float64", logits=[[big, -big]], labels=[[0.875, 0.125]])
    # 0.125 (2 max) = max / 4, though LSE - x_1 = 2 max overflows
    assert out.value[0] == big / 4


def test_softmax_ce_dense_mean_is_finite_when_one_row_loss_overflows():
    big = np.finfo(np.float64).max
    out = run("softmax_ce_dense", "float64", logits=[[big, -big], [0.0, 0.0]], labels=[[0.0, 1.0], [1.0, 0.0]],
              options={"reduction": "mean"})
    assert out.value == big  # (2 max + log 2) / 2 rounds to max


def test_sigmoid_bce_mean_is_finite_when_one_weighted_loss_overflows():
    big = np.finfo(np.float64).max
    out = run("sigmoid_bce_logits", "float64", logits=[-big, 0.0, 0.0, 0.0], labels=[1.0, 0.0, 0.0, 0.0],
              pos_weight=[3.0], options={"reduction": "mean"})
    with mp.workprec(200):
        want = (3 * mp.mpf(big) + 3 * mp.log(2)) / 4
    assert ulps(out.value, rounded(want, "float64"), "float64") <= 2


@pytest.mark.parametrize("dtype", DTYPES)
def test_categorical_ce_probs_matches_mpmath(dtype):
    probs, labels = [[0.5, 0.25, 0.125, 0.125], [0.01, 0.02, 0.9, 0.07]], [[1.0, 0.0, 0.0, 0.0], [0.2, 0.3, 0.4, 0.1]]
    out = run("categorical_ce_probs", dtype, probs=probs, labels=labels, options={"label_smoothing": 0.05})
    with mp.workprec(200):
        e, want = mp.mpf(0.05), []
        for p, y in zip(np.reshape(exact(probs, dtype), (2, 4)), np.reshape(exact(labels, dtype), (2, 4))):
            want.append(-mp.fsum((yc * (1 - e) + e / 4) * mp.log(pc) for yc, pc in zip(y, p)))
    assert ulps(out.value, rounded(want, dtype), dtype).max() <= LOSS_ULPS[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
def test_log_softmax_matches_mpmath(dtype):
    logits = [[0.5, -3.0, 2.0, 10.0], [-20.0, -20.0, -19.0, 1.0]]
    out = run("log_softmax", dtype, logits=logits)
    with mp.workprec(200):
        want = [[xc - lse(x) for xc in x] for x in np.reshape(exact(logits, dtype), (2, 4))]
    assert ulps(out.value, rounded(want, dtype), dtype).max() <= LOSS_ULPS[dtype]


def test_log_softmax_gradient_matches_mpmath_and_is_exact_for_ties():
    logits = [[0.5, -3.0, 2.0, 10.0], [1.0, 1.0, 1.0, 1.0]]
    out = run("log_softmax", "float64", logits=logits)
    with mp.workprec(200):
        x = exact(logits[0], "float64")
        want = [1 - 4 * mp.exp(xj - lse(x)) for xj in x]
    assert ulps(out.grads["logits"][0], rounded(want, "float64"), "float64").max() <= 4
    np.testing.assert_array_equal(out.grads["logits"][1], [0.0, 0.0, 0.0, 0.0])


def test_log_softmax_along_axis_0_moves_the_class_axis():
    logits = np.array([[0.0, 1.0], [2.0, 5.0], [4.0, 3.0]])
    along0 = run("log_softmax", "float64", logits=logits, options={"axis": 0})
    last = run("log_softmax", "float64", logits=logits.T)
    np.testing.assert_array_equal(along0.value, last.value.T)


def test_log_softmax_extreme_float32_logits_saturate_to_minus_inf():
    big = float(np.finfo(np.float32).max)
    out = run("log_softmax", "float32", logits=[[big, -big, 0.0]])
    np.testing.assert_array_equal(out.value, np.array([[0.0, -INF, -big]], dtype=np.float32))


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_matches_mpmath(dtype):
    logits = [[0.5, -3.0, 2.0, 10.0]]
    out = run("softmax", dtype, logits=logits)
    with mp.workprec(200):
        x = exact(logits, dtype)
        want = [[mp.exp(xc - lse(x)) for xc in x]]
    assert ulps(out.value, rounded(want, dtype), dtype).max() <= LOSS_ULPS[dtype]
    assert out.grads == {}


# -- sampled softmax and NCE -----------------------------------------------------------------------

SAMPLED = dict(inputs=[[0.5, -1.0], [2.0, 0.25]], embeddings=[[1.0, 2.0], [-0.5, 0.75], [3.0, -1.0], [0.0, 1.0]],
               biases=[0.1, -0.2, 0.3, 0.0], labels=[[0], [2]], sampled=[1, 2, 3],
               true_expected_count=[[0.5], [0.25]], sampled_expected_count=[0.75, 0.25, 0.125])


def sampled_logits(dtype):
    """Row i: [inputs_i . emb[id] + b[id] - log Q] over [label_i, sampled], the hit of row 1 at -inf."""
    x, emb, b = (np.reshape(exact(SAMPLED[k], dtype), np.shape(SAMPLED[k])) for k in ("inputs", "embeddings", "biases"))
    tq, sq = exact(SAMPLED["true_expected_count"], dtype), exact(SAMPLED["sampled_expected_count"], dtype)
    rows = []
    for i, (label,) in enumerate(SAMPLED["labels"]):
        row = [mp.fsum(x[i] * emb[label]) + b[label] - mp.log(tq[i])]
        for j, cid in enumerate(SAMPLED["sampled"]):
            row.append(-mp.inf if cid == label else mp.fsum(x[i] * emb[cid]) + b[cid] - mp.log(sq[j]))
        rows.append(row)
    return rows


@pytest.mark.parametrize("dtype", DTYPES)
def test_sampled_softmax_removes_accidental_hits_and_matches_mpmath(dtype):
    out = run("sampled_softmax", dtype, **SAMPLED)
    with mp.workprec(200):
        want = [lse([t for t in row if t != -mp.inf]) - row[0] for row in sampled_logits(dtype)]
    assert ulps(out.value, rounded(want, dtype), dtype).max() <= LOSS_ULPS[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
def test_nce_sums_sigmoid_bce_over_true_and_sampled_columns(dtype):
    out = run("nce", dtype, options={"remove_accidental_hits": True}, **SAMPLED)
    with mp.workprec(200):
        want = [sigmoid_bce(row[0], 1) + mp.fsum(softplus(t) for t in row[1:] if t != -mp.inf)
                for row in sampled_logits(dtype)]
    assert ulps(out.value, rounded(want, dtype), dtype).max() <= LOSS_ULPS[dtype]


# -- reductions, domain, output --------------------------------------------------------------------

def test_sum_over_nonzero_weights_counts_only_nonzero_weights():
    out = run("sigmoid_bce_logits", "float64", logits=[0.0, 0.0, 0.0], labels=[0.0, 0.0, 0.0],
              weights=[0.0, 1.0, 3.0], options={"reduction": "sum_over_nonzero_weights"})
    assert out.value == 2 * np.log(2)


def test_weighted_mean_over_only_ignored_targets_is_nan_with_nan_gradients():
    out = run("softmax_ce_sparse", "float32", logits=[[1.0, 2.0]], labels=[-100],
              options={"ignore_index": -100, "reduction": "weighted_mean"})
    assert np.isnan(out.value) and np.isnan(out.grads["logits"]).all()


def test_mean_counts_ignored_targets_so_it_is_zero_not_nan():
    out = run("softmax_ce_sparse", "float32", logits=[[1.0, 2.0]], labels=[-100],
              options={"ignore_index": -100, "reduction": "mean"})
    assert out.value == 0.0


def test_mean_over_an_empty_batch_is_nan_and_sum_is_zero():
    empty = dict(logits=np.zeros((0, 3)), labels=np.zeros((0, 3)))
    assert np.isnan(run("softmax_ce_dense", "float64", options={"reduction": "mean"}, **empty).value)
    assert run("softmax_ce_dense", "float64", options={"reduction": "sum"}, **empty).value == 0.0


def test_reduced_value_is_a_0d_array_in_the_case_dtype():
    out = run("softmax_ce_dense", "bfloat16", logits=[[1.0, 2.0]], labels=[[0.5, 0.5]], options={"reduction": "sum"})
    assert out.value.shape == () and out.value.dtype == ml_dtypes.bfloat16
    assert out.grads["logits"].dtype == ml_dtypes.bfloat16


@pytest.mark.parametrize("variant, inputs, message", [
    ("sigmoid_bce_logits", dict(logits=[0.0], labels=[1.5]), "labels outside"),
    ("bce_probs", dict(probs=[np.nan], labels=[1.0]), "probs outside"),
    ("softmax_ce_sparse", dict(logits=[[0.0, 1.0]], labels=[2]), "class id"),
    ("softmax_ce_dense", dict(logits=[[0.0, 1.0]], labels=[[0.5, 0.5]], class_weights=[1.0, -1.0]), "class_weights"),
], ids=["label above 1", "NaN probability", "class id out of range", "negative class weight"])
def test_invalid_input_raises_value_error_naming_the_problem(variant, inputs, message):
    with pytest.raises(ValueError, match=message):
        run(variant, "float32", **inputs)


def test_round_to_bfloat16_rounds_once_not_through_float32():
    x = np.array([1 + 2.0 ** -8 + 2.0 ** -40])  # just above a bfloat16 tie: rounds up
    assert float(round_to(x, fmt("bfloat16"))[0]) == 1 + 2.0 ** -7


# -- registry --------------------------------------------------------------------------------------

def test_registry_gets_adapters_by_name():
    assert isinstance(adapters.get("numpy"), NumpyAdapter)
    assert adapters.names()[:2] == ["numpy", "naive"]


def test_registry_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="numpy, naive"):
        adapters.get("caffe")


def test_registry_import_loads_no_framework():
    code = "import sys, adapters; print(sorted(m for m in ('torch', 'tensorflow', 'jax') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=str(__import__("pathlib").Path(__file__).resolve().parents[1]))
    assert out.stdout.strip() == "[]"
