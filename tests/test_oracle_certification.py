"""Certification: the oracle's value is the correctly rounded truth where fixed precision is not.

Engineered cases where a fixed-precision evaluation rounds wrongly or collapses (double rounding
through a wider format, a tiny term lost next to a large one, a sum sitting just off a rounding
midpoint), the precision cap (undecided, never wrong), the signed zeros, subnormals and overflows
of the four formats, and the two backends agreeing bit for bit. The truth comes from
`tests/reference.py` (textbook formulas in mpmath, its own rounding), never from the oracle.
"""
from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mpmath import mp, mpf

import oracle
from cases import VARIANTS, Case
from tests import reference as ref

NP = {name: f[2] for name, f in ref.FORMATS.items()}
MIN_NORMAL = {"float16": 2.0 ** -14, "bfloat16": 2.0 ** -126, "float32": 2.0 ** -126, "float64": 2.0 ** -1022}
F32_2_24 = float(2 ** 24)


def sigmoid_case(dtype, logits, labels, **opts):
    return Case("sigmoid_bce_logits", dtype, {"logits": np.asarray(logits, dtype=NP[dtype]),
                                              "labels": np.asarray(labels, dtype=NP[dtype])}, opts)


def show(v, dtype) -> str:
    v = np.asarray(v, dtype=NP[dtype])[()]
    return f"{float(v)!r} ({int(ref.bits(v, dtype)):#x})"


def assert_certified(case: Case, **kw):
    """The oracle decides every output of ``case`` and each equals the reference bit for bit."""
    r = oracle.evaluate(case, **kw)
    want = ref.evaluate(case)
    assert r.status == "ok", f"{r.status}: {r.reason}; case {case.to_json()}"
    for name, q in want.outputs.items():
        got = r.value if name == "value" else r.grads[name]
        assert q.known.all(), f"the reference cannot decide {name}; choose another case"
        gb, wb = ref.bits(got.value, case.dtype), ref.bits(q.value, case.dtype)
        bad = [f"  {name}{list(i)}: oracle {show(got.value[i], case.dtype)} != {show(q.value[i], case.dtype)}"
               for i in np.ndindex(gb.shape) if gb[i] != wb[i]]
        assert not bad, "\n".join(bad) + f"\ncase: {case.to_json()}"
    return r


def assert_never_wrong(r, case: Case) -> None:
    """Every element the oracle decided equals the reference; undecided ones are NaN."""
    want = ref.evaluate(case)
    for name, q in want.outputs.items():
        got = r.value if name == "value" else r.grads[name]
        assert np.isnan(got.value[got.undecided].astype(np.float64)).all()
        for i in np.ndindex(q.value.shape):
            if q.known[i] and not got.undecided[i]:
                assert ref.bits(got.value[i], case.dtype) == ref.bits(q.value[i], case.dtype), (
                    f"{name}{list(i)}: {show(got.value[i], case.dtype)} != {show(q.value[i], case.dtype)}")


# -- values a fixed precision loses -----------------------------------------------------------------

def test_sigmoid_bce_tiny_normal_result_is_not_flushed():
    """x = -700, z = 0: log1p(exp(-700)) ~ 9.86e-305 is a normal float64; log(1 + exp(x)) gives 0."""
    with np.errstate(all="ignore"):
        assert np.log(1 + np.exp(np.float64(-700))) == 0.0
    r = assert_certified(sigmoid_case("float64", [-700.0], [0.0]))
    assert 9.8e-305 < float(r.value.value[0]) < 9.9e-305


@pytest.mark.parametrize("dtype, logit", [("float64", -740.0), ("float64", -745.0), ("float32", -100.0),
                                          ("float32", -103.0), ("float16", -16.0), ("float16", -17.0),
                                          ("bfloat16", -88.0), ("bfloat16", -92.0)])
def test_sigmoid_bce_subnormal_result_is_correctly_rounded(dtype, logit):
    r = assert_certified(sigmoid_case(dtype, [logit], [0.0]))
    assert 0 < float(r.value.value[0]) < MIN_NORMAL[dtype]


def test_tiny_loss_next_to_large_terms_is_not_lost():
    """x = 200, z = 1: (1-z)x + softplus(-x) = e^-200 ~ 1.38e-87, but (x + softplus(-x)) - xz at
    53 bits is exactly 0: the DESIGN's "a fixed precision can silently return 0.0"."""
    with mp.workprec(53):
        x = mpf(200)
        assert (x + mp.log1p(mp.exp(-x))) - x * 1 == 0
    r = assert_certified(sigmoid_case("float64", [200.0], [1.0]))
    assert float(r.value.value[0]) == pytest.approx(1.3838965267367376e-87, rel=1e-15)


def test_log_softmax_tiny_gap_is_not_lost():
    """log_softmax([0, 200])[1] = -log1p(e^-200) ~ -1.38e-87; x - logsumexp(x) at 53 bits is 0."""
    with mp.workprec(53):
        assert mpf(200) - mp.log(mp.exp(0) + mp.exp(200)) == 0
    r = assert_certified(Case("log_softmax", "float64", {"logits": np.array([[0.0, 200.0]])}))
    assert float(r.value.value[0, 1]) == pytest.approx(-1.3838965267367376e-87, rel=1e-15)


# Found by scanning every float32 logit with |x| < 128 (labels 0 and 1) for a loss whose correctly
# rounded float64 value rounds into float32 differently from the loss itself; likewise every float16
# logit through float32. Exactly evaluating in the wider format and casting is therefore wrong here.
DOUBLE_ROUNDING_TRAPS = [
    ("float32", "0x1.d483ap-12", 0.0, "float64"),
    ("float32", "-0x1.d483ap-12", 1.0, "float64"),
    ("float16", "-0x1.0cp-14", 0.0, "float32"),
    ("float16", "0x1.0cp-14", 1.0, "float32"),
]


@pytest.mark.parametrize("dtype, logit, label, wider", DOUBLE_ROUNDING_TRAPS)
def test_double_rounding_trap_is_rounded_once(dtype, logit, label, wider):
    case = sigmoid_case(dtype, [float.fromhex(logit)], [label])
    want = ref.evaluate(case).value
    via_wider = ref.round_to(want.exact[0], wider).astype(NP[dtype])  # the exact value rounded twice
    assert ref.bits(via_wider, dtype) != ref.bits(want.value[0], dtype)
    assert_certified(case)


def test_sum_just_above_a_midpoint_rounds_up():
    """float32 sum over x = [2^24, 29], z = 0: 2^24 + 29 + 2.5e-13 + e^-2^24, just above the
    midpoint of 2^24+28 and 2^24+30. In float64 the 2.5e-13 is lost and the tie goes to 2^24+28."""
    case = sigmoid_case("float32", [F32_2_24, 29.0], [0.0, 0.0], reduction="sum")
    x = np.array([F32_2_24, 29.0])
    float64_sum = np.sum(np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x))))
    assert np.float32(float64_sum) == np.float32(F32_2_24 + 28)
    r = assert_certified(case)
    assert float(r.value.value) == F32_2_24 + 30


def test_midpoint_plus_unreachable_tiny_is_never_rounded_to_even():
    """float32 sum over x = [2^25, 2^24+2], z = 0: 2^25 + 2^24 + 2 + e^-(2^24+2) + ..., a midpoint
    plus a term of relative size 2^-24000000, beyond any cap. The truth rounds up to 3*2^24 + 4; a
    value of 3*2^24 (the even neighbour of the midpoint) would be a guess."""
    case = sigmoid_case("float32", [2.0 ** 25, F32_2_24 + 2], [0.0, 0.0], reduction="sum")
    r = oracle.evaluate(case, grads=False)
    if r.value.undecided:
        assert r.status == "undecided"
    else:
        assert float(r.value.value) == 3 * F32_2_24 + 4


def test_exact_midpoint_ties_to_even():
    """d/dz with e = 1/4, q = 1 is (1-e)(-x): x = -1365/256 gives 4095/1024, exactly halfway
    between 4094/1024 and 4 in float16; ties go to the even 4.0."""
    case = sigmoid_case("float16", [-1365 / 256], [0.5], label_smoothing=0.25)
    r = oracle.evaluate(case)
    assert not r.grads["labels"].undecided.any()
    assert r.grads["labels"].value.astype(np.float64).tolist() == [4.0]


JUST_BELOW_A_MIDPOINT = {
    # d sum(log_softmax) / dx_j = 1 - 2 p_j = +-tanh(d/2) for logits [0, d]: just below d/2, which
    # for d = 2^-1074 is half the smallest subnormal (so +-0) and for d = 3 * 2^-1074 the midpoint
    # of 2^-1074 and 2^-1073 (so +-2^-1074, not the even 2^-1073)
    "float64 d=2^-1074": (Case("log_softmax", "float64", {"logits": np.array([[0.0, 2.0 ** -1074]])}),
                          [[0.0, -0.0]]),
    "float64 d=3*2^-1074": (Case("log_softmax", "float64", {"logits": np.array([[0.0, 3 * 2.0 ** -1074]])}),
                            [[2.0 ** -1074, -2.0 ** -1074]]),
    "float32 d=2^-149": (Case("log_softmax", "float32", {"logits": np.array([[0.0, 2.0 ** -149]], np.float32)}),
                         [[0.0, -0.0]]),
    # logits [0, 0, 0, d], d = -298 * 2^-108: 1 - 4 p_3 = 3(1 - e^d)/(3 + e^d) = (3|d|/4)(1 - |d|/4 ...),
    # just below 223.5 * 2^-108, the midpoint of two bfloat16 values; the others are just above
    # -149 * 2^-109, which is representable
    "bfloat16 four classes": (Case("log_softmax", "bfloat16", {
        "logits": np.array([[0.0, 0.0, 0.0, -298 * 2.0 ** -108]], NP["bfloat16"])}),
        [[-149 * 2.0 ** -109] * 3 + [223 * 2.0 ** -108]]),
}


@pytest.mark.parametrize("backend", ["arb", "mpmath"])
@pytest.mark.parametrize("case, want", JUST_BELOW_A_MIDPOINT.values(), ids=JUST_BELOW_A_MIDPOINT.keys())
def test_tiny_remainder_below_a_midpoint_rounds_down(case, want, backend):
    r = assert_certified(case, backend=backend)
    assert ref.bits(r.grads["logits"].value, case.dtype).tolist() == ref.bits(np.array(want), case.dtype).tolist()


# -- the precision cap ---------------------------------------------------------------------------------

HARD = {
    "sum above a midpoint": sigmoid_case("float32", [F32_2_24, 29.0], [0.0, 0.0], reduction="sum"),
    "float32 double rounding": sigmoid_case("float32", [float.fromhex("0x1.d483ap-12")], [0.0]),
    "float16 double rounding": sigmoid_case("float16", [float.fromhex("-0x1.0cp-14")], [0.0]),
    "log_softmax tiny gap": Case("log_softmax", "float64", {"logits": np.array([[0.0, 200.0]])}),
}


# Transcendental values within 2^-57 and 2^-39 (relative) of a rounding midpoint: no enclosure
# of 20 bits can separate them from it, whatever the method.
NEAR_MIDPOINT = ["float32 double rounding", "float16 double rounding"]


@pytest.mark.parametrize("name", NEAR_MIDPOINT)
def test_low_cap_leaves_a_value_near_a_midpoint_undecided(name):
    case = HARD[name]
    r = oracle.evaluate(case, max_prec=20)
    assert r.status == "undecided" and r.value.undecided.any()
    assert np.isnan(r.value.value[r.value.undecided].astype(np.float64)).all()


@pytest.mark.parametrize("max_prec", [8, 20, 40, 64, 100])
@pytest.mark.parametrize("case", HARD.values(), ids=HARD.keys())
def test_any_cap_is_undecided_or_right(case, max_prec):
    assert_never_wrong(oracle.evaluate(case, max_prec=max_prec), case)


@pytest.mark.parametrize("case", HARD.values(), ids=HARD.keys())
def test_default_cap_decides_a_hard_value(case):
    assert_certified(case)


# -- signed zeros ---------------------------------------------------------------------------------------

def test_log_softmax_tiny_output_is_negative_zero():
    r = assert_certified(Case("log_softmax", "float16", {"logits": np.array([[0.0, 200.0]], np.float16)}))
    assert r.value.value.astype(np.float64).tolist() == [[-200.0, 0.0]]
    assert ref.bits(r.value.value, "float16")[0, 1] == 0x8000


TINY_GRADIENTS = {
    # d/dx = sigmoid(x) - 1 = -sigmoid(-x): negative, far below the smallest float16 subnormal
    "sigmoid x=20 z=1 float16": (sigmoid_case("float16", [20.0], [1.0]), "logits", [0x8000]),
    "sigmoid x=-20 z=0 float16": (sigmoid_case("float16", [-20.0], [0.0]), "logits", [0x0000]),
    "sigmoid x=65504 z=1 float16": (sigmoid_case("float16", [65504.0], [1.0]), "logits", [0x8000]),
    "sigmoid x=-3e4 z=0 bfloat16": (sigmoid_case("bfloat16", [-29952.0], [0.0]), "logits", [0x0000]),
    # d/dx_j = p_j - onehot_j: [e^-20000, -e^-20000]
    "sparse gap 20000 float64": (Case("softmax_ce_sparse", "float64", {
        "logits": np.array([[0.0, 20000.0]]), "labels": np.array([1])}), "logits", [[0, 1 << 63]]),
    "sparse gap 200 float32": (Case("softmax_ce_sparse", "float32", {
        "logits": np.array([[0.0, 200.0]], np.float32), "labels": np.array([1])}), "logits", [[0, 1 << 31]]),
}


@pytest.mark.parametrize("case, name, bit_patterns", TINY_GRADIENTS.values(), ids=TINY_GRADIENTS.keys())
def test_tiny_gradient_keeps_its_sign(case, name, bit_patterns):
    r = assert_certified(case)
    assert ref.bits(r.grads[name].value, case.dtype).tolist() == bit_patterns


EXACT_ZERO_GRADIENTS = {
    "sigmoid x=0 z=1/2": sigmoid_case("float32", [0.0], [0.5]),
    "log_softmax equal logits": Case("log_softmax", "float32", {"logits": np.full((1, 3), 0.5, np.float32)}),
    "dense equal logits, labels 1/4": Case("softmax_ce_dense", "float32", {
        "logits": np.full((1, 4), 0.5, np.float32), "labels": np.full((1, 4), 0.25, np.float32)}),
    "dense equal logits, smoothing 1/2 over 3": Case("softmax_ce_dense", "float32", {
        "logits": np.full((1, 3), 0.5, np.float32), "labels": np.zeros((1, 3), np.float32)},
        {"label_smoothing": 0.5}),
    "sparse equal logits, smoothing 1": Case("softmax_ce_sparse", "float64", {
        "logits": np.zeros((1, 3)), "labels": np.array([2])}, {"label_smoothing": 1.0}),
}


@pytest.mark.parametrize("case", EXACT_ZERO_GRADIENTS.values(), ids=EXACT_ZERO_GRADIENTS.keys())
def test_exactly_zero_gradient_is_decided(case):
    """Equal logits with equal label weights a_c give A p_j - a_j = 0 exactly (the sign of an exact
    zero is not documented, so only its value is checked)."""
    g = oracle.evaluate(case).grads["logits"]
    assert not g.undecided.any()
    assert (g.value.astype(np.float64) == 0).all()


# -- overflow ---------------------------------------------------------------------------------------------

F16_MAX, BF16_MAX = 65504.0, float(ml_dtypes.finfo(ml_dtypes.bfloat16).max)

OVERFLOW = {
    # -x z + softplus(x) at x = -65504, z = 1 is 65504 + e^-65504: representable, rounds to max
    "float16 max loss": (sigmoid_case("float16", [-F16_MAX], [1.0]), [F16_MAX]),
    "float16 weighted past max": (Case("sigmoid_bce_logits", "float16", {
        "logits": np.array([-F16_MAX], np.float16), "labels": np.ones(1, np.float16),
        "weights": np.array([2.0], np.float16)}), [math.inf]),
    "float16 sum overflows": (sigmoid_case("float16", [-F16_MAX, -F16_MAX], [1.0, 1.0], reduction="sum"), math.inf),
    "float16 mean does not": (sigmoid_case("float16", [-F16_MAX, -F16_MAX], [1.0, 1.0], reduction="mean"), F16_MAX),
    # 65504 + 16 + tiny lies past the overflow threshold 65520; 65504 + 15.9921875 + tiny does not
    "float16 sum past 65520": (sigmoid_case("float16", [-F16_MAX, -16.0], [1.0, 1.0], reduction="sum"), math.inf),
    "float16 sum below 65520": (sigmoid_case("float16", [-F16_MAX, -15.9921875], [1.0, 1.0], reduction="sum"),
                                F16_MAX),
    "bfloat16 max loss": (sigmoid_case("bfloat16", [-BF16_MAX], [1.0]), [BF16_MAX]),
    "bfloat16 sum overflows": (sigmoid_case("bfloat16", [-BF16_MAX, -BF16_MAX], [1.0, 1.0], reduction="sum"),
                               math.inf),
    "float32 softmax ce of a max gap": (Case("softmax_ce_sparse", "float32", {
        "logits": np.array([[-3.0e38, 3.0e38]], np.float32), "labels": np.array([0])}), [math.inf]),
}


@pytest.mark.parametrize("case, want", OVERFLOW.values(), ids=OVERFLOW.keys())
def test_overflow_rounds_to_inf_only_past_the_threshold(case, want):
    r = oracle.evaluate(case, grads=False)
    assert r.status == "ok" and not r.value.undefined.any()
    assert r.value.value.astype(np.float64).tolist() == want
    assert ref.bits(r.value.value, case.dtype).tolist() == ref.bits(ref.evaluate(case, grads=False).value.value,
                                                                     case.dtype).tolist()


# -- extreme but valid inputs ---------------------------------------------------------------------------

EXTREME = {
    "sigmoid x=3e38 z=1": sigmoid_case("float32", [3.0e38], [1.0]),
    "sigmoid x=-3e38 z=0": sigmoid_case("float64", [-3.0e38], [0.0]),
    "log_softmax gap 3e38": Case("log_softmax", "float32", {"logits": np.array([[0.0, 3.0e38]], np.float32)}),
    "softmax gap 3e38": Case("softmax", "bfloat16", {"logits": np.array([[0.0, 3.0e38]], NP["bfloat16"])}),
}


@pytest.mark.parametrize("case", EXTREME.values(), ids=EXTREME.keys())
def test_extreme_logit_value_is_certified(case):
    """Outputs like e^-3e38 round to a signed zero; they must not crash or exhaust memory."""
    r = oracle.evaluate(case, grads=False)
    assert r.status == "ok"
    want = ref.evaluate(case, grads=False).value
    assert want.known.all()
    assert (ref.bits(r.value.value, case.dtype) == ref.bits(want.value, case.dtype)).all()


def test_weighted_mean_with_an_underflowing_denominator_is_certified():
    """sum(omega) = 2^-1074 * 2^-1074 is exact for the oracle (it is not a float64), and so are
    the gradients w_i dl/dx / sum(omega)."""
    case = Case("softmax_ce_sparse", "float64", {
        "logits": np.array([[0.0, 3.0, 1.0]]), "labels": np.array([0]), "weights": np.array([5e-324]),
        "class_weights": np.array([5e-324, 1.0, 1.0])}, {"reduction": "weighted_mean"})
    assert_certified(case)


# -- the two backends ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", list(VARIANTS))
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])  # examples: the profile
@given(data=st.data())
def test_backends_agree_bit_for_bit(variant, data):
    case = data.draw(ref.small_cases(variant, grads=data.draw(st.booleans(), label="finite")), label="case")
    a = oracle.evaluate(case, backend="arb")
    b = oracle.evaluate(case, backend="mpmath")
    assert (a.status, a.reason) == (b.status, b.reason)
    pairs = [("value", a.value, b.value)] + [(k, a.grads[k], b.grads[k]) for k in a.grads]
    assert set(a.grads) == set(b.grads)
    for name, qa, qb in pairs:
        assert np.array_equal(qa.undecided, qb.undecided), name
        assert np.array_equal(ref.bits(qa.value, case.dtype), ref.bits(qb.value, case.dtype)), (
            f"{name}: arb {qa.value.tolist()} != mpmath {qb.value.tolist()}\ncase: {case.to_json()}")
