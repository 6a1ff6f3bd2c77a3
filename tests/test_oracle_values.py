"""The oracle's values against expectations derived without its code.

Three sources: closed forms (log 2, log C, the documented limits at +-inf and NaN), values printed
in the seed documents (TensorFlow, PyTorch, scikit-learn), and `tests/reference.py`, textbook
formulas evaluated in mpmath at thousands of bits and rounded by its own integer rounding, which
must agree with the oracle bit for bit on hypothesis-generated cases of every variant.
"""
from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mpmath import mp, mpf

import oracle
from cases import VARIANTS, Case
from tests import reference as ref

DTYPES = ref.DTYPES
NP = {name: f[2] for name, f in ref.FORMATS.items()}
# max_examples comes from the profile (tests/conftest.py): "fast" by default.
HYPOTHESIS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


def rounded(expr, dtype: str):
    """``expr()`` evaluated at 3000 bits and rounded into ``dtype`` by the reference's rounding."""
    with mp.workprec(3000):
        return ref.round_to(expr(), dtype)


def show(v, dtype: str) -> str:
    v = np.asarray(v, dtype=NP[dtype])[()]
    return f"{float(v)!r} ({int(ref.bits(v, dtype)):#x})"


def assert_matches_reference(got, want: ref.Rounded, dtype: str, what: str, case: Case) -> None:
    """Every element the reference decided is bit-identical in the oracle's quantity.

    An element the oracle leaves undecided is a failure unless the reference found it hard too.
    """
    assert got.value.shape == want.value.shape, f"{what}: shape {got.value.shape} != {want.value.shape}"
    gb, wb = ref.bits(got.value, dtype), ref.bits(want.value, dtype)
    bad = []
    for i in np.ndindex(want.value.shape):
        if not want.known[i]:
            continue
        if got.undecided[i]:
            if want.prec[i] <= ref.BASE_PREC:
                bad.append(f"  {what}{list(i)}: oracle undecided, reference {show(want.value[i], dtype)} "
                           f"decided at {want.prec[i]} bits")
            continue
        if gb[i] != wb[i]:
            bad.append(f"  {what}{list(i)}: oracle {show(got.value[i], dtype)} != reference "
                       f"{show(want.value[i], dtype)}, exact {mp.nstr(want.exact[i], 25)}")
    assert not bad, f"{len(bad)} of {want.value.size} differ\n" + "\n".join(bad) + f"\ncase: {case.to_json()}"


def evaluate_ok(case: Case, **kw):
    r = oracle.evaluate(case, **kw)
    assert r.status == "ok", f"{r.status}: {r.reason}"
    return r


def sigmoid_case(dtype, logits, labels, **opts):
    return Case("sigmoid_bce_logits", dtype, {"logits": np.asarray(logits, dtype=NP[dtype]),
                                              "labels": np.asarray(labels, dtype=NP[dtype])}, opts)


def sparse_case(dtype, logits, labels, **opts):
    return Case("softmax_ce_sparse", dtype, {"logits": np.asarray(logits, dtype=NP[dtype]),
                                             "labels": np.asarray(labels, dtype=np.int64)}, opts)


def dense_case(dtype, logits, labels, **opts):
    return Case("softmax_ce_dense", dtype, {"logits": np.asarray(logits, dtype=NP[dtype]),
                                            "labels": np.asarray(labels, dtype=NP[dtype])}, opts)


# -- the reference itself --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype, source", [("float32", np.float64), ("float16", np.float64),
                                           ("bfloat16", np.float32)])
def test_reference_rounding_matches_numpy_casts(dtype, source):
    """numpy's float64 -> float32/float16 and ml_dtypes' float32 -> bfloat16 casts round to nearest-even."""
    rng = np.random.default_rng(20240611)
    with np.errstate(over="ignore"):
        mags = (rng.standard_normal(3000) * 2.0 ** rng.integers(-160, 140, 3000)).astype(source)
        mags = mags[mags != 0]  # mpf has no -0; signed zeros are tested on the oracle directly
        want = mags.astype(NP[dtype])
    got = np.array([ref.round_to(mpf(float(v)), dtype) for v in mags], dtype=NP[dtype])
    assert np.array_equal(ref.bits(got, dtype), ref.bits(want, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_reference_rounding_of_wide_values_is_nearest_even(dtype):
    """200-bit values across the whole range: no representable neighbour is nearer, ties are even."""
    p, emax, npdt, udt = ref.FORMATS[dtype]
    rng = np.random.default_rng(7)
    max_finite = Fraction(2 ** p - 1) * Fraction(2) ** (emax - p + 1)
    for _ in range(400):
        man = int(rng.integers(1, 2 ** 62)) << 138 | int(rng.integers(0, 2 ** 62))
        if rng.random() < 0.2:  # an exact tie at the format's precision, or just beside one
            man = (man >> 190 << 190) + (1 << 189) + int(rng.integers(-1, 2))
        exp = int(rng.integers(-emax - p - 200, emax - 195))
        sign = -1 if rng.random() < 0.5 else 1
        exact = sign * Fraction(man) * Fraction(2) ** exp
        with mp.workprec(300):  # constructing an mpf rounds to the working precision
            got = ref.round_to(mp.mpf((sign * man, exp)), dtype)
        if np.isinf(got.astype(np.float64)):
            assert abs(exact) >= max_finite + Fraction(2) ** (emax - p) and np.sign(got.astype(np.float64)) == sign
            continue
        b = int(ref.bits(got, dtype))
        magnitude_bits = b & ~(1 << (8 * udt.itemsize - 1))
        neighbours = [n for n in (b - 1, b + 1) if 0 <= (n & ~(1 << (8 * udt.itemsize - 1))) < magnitude_bits + 2
                      and n >> (8 * udt.itemsize - 1) == b >> (8 * udt.itemsize - 1)]
        value = Fraction(float(got.astype(np.float64)))
        for n in neighbours:
            other = np.array(n, dtype=udt).view(npdt).astype(np.float64)
            if not np.isfinite(other):
                continue
            d_got, d_other = abs(exact - value), abs(exact - Fraction(float(other)))
            assert d_got < d_other or (d_got == d_other and magnitude_bits % 2 == 0), (hex(b), hex(n), exact)
        if magnitude_bits == 0:  # a zero keeps the sign of the value it rounds
            assert (b >> (8 * udt.itemsize - 1)) == (sign < 0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_reference_rounding_overflows_at_the_midpoint_above_max(dtype):
    p, emax, _, _ = ref.FORMATS[dtype]
    with mp.workprec(200):
        big = mpf(2) ** emax * (2 - mpf(2) ** -p)  # halfway between max finite and 2**(emax+1)
        assert np.isinf(ref.round_to(big, dtype))
        max_finite = float(mpf(2) ** emax * (2 - mpf(2) ** (1 - p)))
        assert float(ref.round_to(big * (1 - mpf(2) ** -100), dtype)) == max_finite
        tiny = mpf(2) ** (2 - emax - p)  # the smallest subnormal
        assert float(ref.round_to(tiny / 2, dtype)) == 0.0
        assert float(ref.round_to(-tiny * (mpf(1) / 2 + mpf(2) ** -100), dtype)) == -float(tiny)


# -- closed forms ------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("label", [0.0, 0.25, 0.5, 1.0])
def test_sigmoid_bce_at_zero_logit_is_log2(dtype, label):
    r = evaluate_ok(sigmoid_case(dtype, [0.0], [label]))
    assert ref.bits(r.value.value, dtype) == ref.bits(rounded(lambda: mp.log(2), dtype), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_classes", [1, 2, 3, 5, 7])
def test_softmax_ce_sparse_of_equal_logits_is_log_c(dtype, n_classes):
    r = evaluate_ok(sparse_case(dtype, np.full((1, n_classes), 3.0), [n_classes - 1]))
    want = rounded(lambda: mp.log(n_classes), dtype)
    assert ref.bits(r.value.value, dtype).tolist() == [ref.bits(want, dtype)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_classes", [2, 3, 6])
def test_softmax_ce_dense_of_equal_logits_is_log_c(dtype, n_classes):
    labels = np.eye(n_classes)[:1]
    r = evaluate_ok(dense_case(dtype, np.full((1, n_classes), -1.5), labels))
    assert ref.bits(r.value.value, dtype).tolist() == [ref.bits(rounded(lambda: mp.log(n_classes), dtype), dtype)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_classes", [1, 2, 3, 10])
def test_log_softmax_of_equal_logits_is_minus_log_c(dtype, n_classes):
    case = Case("log_softmax", dtype, {"logits": np.full((2, n_classes), 7.0, dtype=NP[dtype])})
    r = evaluate_ok(case)
    want = rounded(lambda: -mp.log(n_classes), dtype)
    assert (ref.bits(r.value.value, dtype) == ref.bits(want, dtype)).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("label", [0.0, 0.5, 1.0])
def test_bce_probs_at_half_is_log2(dtype, label):
    case = Case("bce_probs", dtype, {"probs": np.array([0.5], dtype=NP[dtype]),
                                     "labels": np.array([label], dtype=NP[dtype])})
    r = evaluate_ok(case)
    assert ref.bits(r.value.value, dtype) == ref.bits(rounded(lambda: mp.log(2), dtype), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("logit, label, want", [(math.inf, 1.0, 0.0), (-math.inf, 0.0, 0.0),
                                                (math.inf, 0.0, math.inf), (-math.inf, 1.0, math.inf),
                                                (math.inf, 0.5, math.inf)])
def test_sigmoid_bce_infinite_logit_takes_the_limit(dtype, logit, label, want):
    r = evaluate_ok(sigmoid_case(dtype, [logit], [label]))
    assert ref.bits(r.value.value, dtype) == ref.bits(np.array([want]), dtype)
    assert not r.value.undefined.any()


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_ce_masked_logit_with_zero_label_contributes_nothing(dtype):
    masked = evaluate_ok(dense_case(dtype, [[1.0, 2.5, -math.inf]], [[0.25, 0.75, 0.0]]))
    plain = evaluate_ok(dense_case(dtype, [[1.0, 2.5]], [[0.25, 0.75]]))
    assert ref.bits(masked.value.value, dtype) == ref.bits(plain.value.value, dtype)
    sparse = evaluate_ok(sparse_case(dtype, [[1.0, 2.5, -math.inf]], [1]))
    sparse_plain = evaluate_ok(sparse_case(dtype, [[1.0, 2.5]], [1]))
    assert ref.bits(sparse.value.value, dtype) == ref.bits(sparse_plain.value.value, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_ce_masked_logit_with_positive_label_is_infinite(dtype):
    r = evaluate_ok(sparse_case(dtype, [[1.0, 2.5, -math.inf]], [2]))
    assert np.isposinf(r.value.value).all()


@pytest.mark.parametrize("variant", ["softmax_ce_sparse", "log_softmax", "softmax"])
@pytest.mark.parametrize("row", [[-math.inf, -math.inf, -math.inf], [math.inf, 0.0, math.inf]],
                         ids=["all -inf", "two +inf"])
def test_softmax_family_undefined_row_is_nan(variant, row):
    logits = np.array([row, [0.0, 1.0, 2.0]], dtype=np.float32)
    inputs = {"logits": logits}
    if variant == "softmax_ce_sparse":
        inputs["labels"] = np.array([0, 1])
    r = evaluate_ok(Case(variant, "float32", inputs))
    assert r.value.undefined[0].all() and np.isnan(r.value.value[0]).all()
    assert not r.value.undefined[1].any() and not np.isnan(r.value.value[1]).any()


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_single_positive_inf_logit_is_the_one_hot_limit(dtype):
    logits = np.array([[0.0, math.inf, -3.0]], dtype=NP[dtype])
    sm = evaluate_ok(Case("softmax", dtype, {"logits": logits}))
    assert sm.value.value.astype(np.float64).tolist() == [[0.0, 1.0, 0.0]]
    lsm = evaluate_ok(Case("log_softmax", dtype, {"logits": logits}))
    assert lsm.value.value.astype(np.float64).tolist() == [[-math.inf, 0.0, -math.inf]]
    assert evaluate_ok(sparse_case(dtype, logits, [1])).value.value.astype(np.float64).tolist() == [0.0]
    assert evaluate_ok(sparse_case(dtype, logits, [0])).value.value.astype(np.float64).tolist() == [math.inf]


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_nan_logit_makes_its_outputs_undefined(reduction):
    case = sigmoid_case("float32", [0.5, math.nan, -2.0], [1.0, 0.0, 0.5], reduction=reduction)
    r = evaluate_ok(case)
    want = [False, True, False] if reduction == "none" else True
    assert r.value.undefined.tolist() == want
    assert np.isnan(r.value.value).tolist() == want


def test_nan_logit_makes_its_softmax_row_undefined():
    logits = np.array([[0.5, math.nan], [1.0, 2.0]], dtype=np.float64)
    r = evaluate_ok(Case("log_softmax", "float64", {"logits": logits}))
    assert r.value.undefined.tolist() == [[True, True], [False, False]]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("label", [0.0, 0.25, 1.0])
def test_binary_label_smoothing_one_makes_the_target_half(dtype, label):
    logits = [-3.0, 0.0, 1.5, 40.0]
    smoothed = evaluate_ok(sigmoid_case(dtype, logits, [label] * 4, label_smoothing=1.0))
    half = evaluate_ok(sigmoid_case(dtype, logits, [0.5] * 4))
    assert (ref.bits(smoothed.value.value, dtype) == ref.bits(half.value.value, dtype)).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_categorical_label_smoothing_one_makes_the_target_uniform(dtype):
    logits = [[0.5, -1.0, 2.0, 3.0], [1.0, 1.0, -4.0, 0.0]]
    smoothed = evaluate_ok(dense_case(dtype, logits, [[1, 0, 0, 0], [0.5, 0.25, 0, 0.25]], label_smoothing=1.0))
    uniform = evaluate_ok(dense_case(dtype, logits, np.full((2, 4), 0.25)))
    assert (ref.bits(smoothed.value.value, dtype) == ref.bits(uniform.value.value, dtype)).all()
    sparse = evaluate_ok(sparse_case(dtype, logits, [3, 0], label_smoothing=1.0))
    assert (ref.bits(sparse.value.value, dtype) == ref.bits(uniform.value.value, dtype)).all()


INVALID = {
    "label 1.5": sigmoid_case("float32", [0.0], [1.5]),
    "label NaN": sigmoid_case("float32", [0.0], [math.nan]),
    "negative weight": Case("sigmoid_bce_logits", "float32", {
        "logits": np.zeros(2, np.float32), "labels": np.ones(2, np.float32),
        "weights": np.array([1.0, -0.5], np.float32)}),
    "negative pos_weight": Case("sigmoid_bce_logits", "float64", {
        "logits": np.zeros(2), "labels": np.ones(2), "pos_weight": np.array(-1.0)}),
    "negative class weight": Case("softmax_ce_sparse", "float32", {
        "logits": np.zeros((1, 3), np.float32), "labels": np.array([0]),
        "class_weights": np.array([1.0, -1.0, 1.0], np.float32)}),
    "class id out of range": sparse_case("float32", np.zeros((2, 3)), [0, 3]),
    "negative class id": sparse_case("float32", np.zeros((2, 3)), [-1, 0]),
    "label_smoothing 2": sigmoid_case("float32", [0.0], [1.0], label_smoothing=2.0),
    "categorical label_smoothing -0.5": dense_case("float32", np.zeros((1, 2)), [[1, 0]], label_smoothing=-0.5),
    "probability 1.25": Case("bce_probs", "float16", {"probs": np.array([1.25], np.float16),
                                                      "labels": np.array([1.0], np.float16)}),
    "negative probability": Case("categorical_ce_probs", "float64", {
        "probs": np.array([[-0.5, 1.5]]), "labels": np.array([[0.0, 1.0]])}),
    "dense label -1": dense_case("bfloat16", np.zeros((1, 2)), [[-1.0, 1.0]]),
}


@pytest.mark.parametrize("case", INVALID.values(), ids=INVALID.keys())
def test_out_of_domain_input_is_invalid_with_a_reason(case):
    r = oracle.evaluate(case)
    assert r.status == "invalid" and r.value is None
    assert isinstance(r.reason, str) and r.reason
    assert ref.evaluate(case).status == "invalid"


def test_ignore_index_is_not_an_out_of_range_id():
    r = evaluate_ok(sparse_case("float32", np.zeros((2, 3)), [-100, 1], ignore_index=-100, reduction="mean"))
    want = rounded(lambda: mp.log(3) / 2, "float32")  # n counts the ignored unit
    assert ref.bits(r.value.value, "float32") == ref.bits(want, "float32")


# -- published values (the seed documents) ----------------------------------------------------------

def test_tf_sigmoid_example_matches_printed_digits():
    """tf.nn.sigmoid_cross_entropy_with_logits, float64, printed with numpy's 9 significant digits."""
    logits = [[1.0, -810.0, 20.0], [11.0, 12.0, 14.0], [12.0, 21.0, 23.0]]
    printed = [["3.13261688e-01", "0.00000000e+00", "2.00000000e+01"],
               ["1.10000167e+01", "6.14419348e-06", "1.40000008e+01"],
               ["1.20000061e+01", "2.10000000e+01", "1.02618796e-10"]]
    r = evaluate_ok(sigmoid_case("float64", logits, np.eye(3)))
    assert [[f"{v:.8e}" for v in row] for row in r.value.value] == printed


def test_torch_log_softmax_example_matches_printed_digits():
    """F.log_softmax of the blog's first row of float32 logits, to the 4 printed decimals."""
    logits = np.array([[0.2870, 0.2232, 0.6423, 0.6035]], dtype=np.float32)
    r = evaluate_ok(Case("log_softmax", "float32", {"logits": logits}))
    assert [f"{v:.4f}" for v in r.value.value[0]] == ["-1.5554", "-1.6192", "-1.2001", "-1.2389"]


def test_torch_log_softmax_example_is_within_the_printing_of_its_inputs():
    """The blog prints torch.rand logits to 4 decimals, so each is known to 5e-5 only; a change of
    at most d in every logit moves log_softmax by at most 2d, and the output print adds 5e-5."""
    logits = np.array([[0.2870, 0.2232, 0.6423, 0.6035], [0.4180, 0.9434, 0.6034, 0.5521],
                       [0.0026, 0.4993, 0.7166, 0.2258]], dtype=np.float32)
    printed = np.array([[-1.5554, -1.6192, -1.2001, -1.2389], [-1.6171, -1.0916, -1.4317, -1.4830],
                        [-1.7810, -1.2842, -1.0669, -1.5578]])
    r = evaluate_ok(Case("log_softmax", "float32", {"logits": logits}))
    assert np.abs(r.value.value.astype(np.float64) - printed).max() <= 2 * 5e-5 + 5e-5 + 1e-7


def test_torch_nll_mean_example_matches_printed_digits():
    logits = np.array([[0.2870, 0.2232, 0.6423, 0.6035], [0.4180, 0.9434, 0.6034, 0.5521],
                       [0.0026, 0.4993, 0.7166, 0.2258]], dtype=np.float32)
    r = evaluate_ok(sparse_case("float32", logits, [0, 2, 1], reduction="mean"))
    assert f"{float(r.value.value):.4f}" == "1.4238"


def test_bce_probs_example_matches_printed_digits():
    """The blog's bank example: torch BCELoss / sklearn log_loss on probabilities 0.7 and 0.2."""
    inputs = {"probs": np.array([0.7, 0.2]), "labels": np.array([1.0, 0.0])}
    r = evaluate_ok(Case("bce_probs", "float64", inputs))
    assert [f"{v:.6f}" for v in r.value.value] == ["0.356675", "0.223144"]
    mean = evaluate_ok(Case("bce_probs", "float64", inputs, {"reduction": "mean"}))
    assert f"{float(mean.value.value):.6f}" == "0.289909"
    assert repr(float(mean.value.value)) == "0.2899092476264711"  # sklearn's printed float64


def test_categorical_probs_example_matches_printed_digits():
    """The blog's multi-class example: -log 0.4 (sklearn prints 0.916290731874155) and -log 0.78."""
    probs = np.array([[0.4, 0.4, 0.2], [0.1, 0.12, 0.78]])
    labels = np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    r = evaluate_ok(Case("categorical_ce_probs", "float64", {"probs": probs, "labels": labels}))
    assert [f"{v:.4f}" for v in r.value.value] == ["0.9163", "0.2485"]
    assert repr(float(r.value.value[0])) == "0.916290731874155"


def test_torch_cross_entropy_of_log_probs_example_matches_printed_digits():
    logits = np.array([[math.log(0.4), math.log(0.4), math.log(0.2)]], dtype=np.float32)
    r = evaluate_ok(sparse_case("float32", logits, [1], reduction="mean"))
    assert f"{float(r.value.value):.4f}" == "0.9163"


# -- the textbook reference, bit for bit -------------------------------------------------------------

@pytest.mark.parametrize("variant", list(VARIANTS))
@HYPOTHESIS
@given(data=st.data())
def test_value_matches_textbook_reference(variant, data):
    case = data.draw(ref.small_cases(variant), label="case")
    want = ref.evaluate(case, grads=False)
    r = oracle.evaluate(case, grads=False)
    assert r.status != "invalid" and want.status == "ok", r.reason
    assert_matches_reference(r.value, want.value, case.dtype, "value", case)


@pytest.mark.parametrize("variant", [v for v, spec in VARIANTS.items() if spec.grad_wrt])
@HYPOTHESIS
@given(data=st.data())
def test_gradients_match_textbook_reference(variant, data):
    case = data.draw(ref.small_cases(variant, grads=True), label="case")
    want = ref.evaluate(case, grads=True)
    r = oracle.evaluate(case, grads=True)
    assert r.status != "invalid", r.reason
    assert set(r.grads) == set(VARIANTS[variant].grad_wrt)
    for name, g in want.grads.items():
        assert_matches_reference(r.grads[name], g, case.dtype, f"d/d{name}", case)
