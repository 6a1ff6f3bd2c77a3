"""Each verdict class, produced by a hand-built answer against a hand-built truth.

The truth here is a stand-in with the oracle's fields (value, undefined, undecided, prec, sens), so
these tests pin the engine's classification independently of the oracle's arithmetic. The case is
a float32 sigmoid BCE of three elements, unreduced: the allowance is the base alone (4 ulps, see
conformance/budgets.py) wherever the sensitivity is 0.
"""
from dataclasses import dataclass, field

import numpy as np
import pytest

from adapters.base import Output
from cases import Case
from conformance import budgets
from conformance.verdict import RANK, SEVERITY, CaseVerdict, classify, worst

F32 = np.float32


@dataclass
class Q:
    value: np.ndarray
    undefined: np.ndarray
    undecided: np.ndarray
    prec: np.ndarray
    sens: np.ndarray
    decimal: list | None = None


@dataclass
class Truth:
    status: str
    reason: str | None = None
    value: Q | None = None
    grads: dict = field(default_factory=dict)


def q(values, undefined=None, undecided=None, sens=None) -> Q:
    v = np.array(values, dtype=F32)
    false = np.zeros(v.shape, dtype=bool)
    return Q(v, false if undefined is None else np.array(undefined),
             false if undecided is None else np.array(undecided), np.full(v.shape, 64),
             np.zeros(v.shape) if sens is None else np.array(sens, dtype=np.float64))


CASE = Case("sigmoid_bce_logits", "float32",
            {"logits": np.array([1, 2, 3], dtype=F32), "labels": np.array([0, 1, 0], dtype=F32)})
EXPECTED = [1.5, 0.25, 3.0]


def up(x, k):
    """k float32 steps above x."""
    v = F32(x)
    for _ in range(k):
        v = np.nextafter(v, F32(np.inf))
    return v


def judge(got, truth=None, grads=None, **kw) -> CaseVerdict:
    truth = truth or Truth("ok", value=q(EXPECTED))
    return classify(CASE, truth, Output(np.asarray(got), grads or {}), **kw)


def test_verdict_severity_lists_every_class_once():
    assert len(set(SEVERITY)) == len(SEVERITY) == 13
    assert SEVERITY[-1] == "conforms" and worst(["inaccurate", "nan", "dtype"]) == "nan"


def test_verdict_base_allowance_is_four_ulps_here():
    allow = budgets.allowance(CASE, "value", np.array(EXPECTED, dtype=F32), np.zeros(3))
    np.testing.assert_array_equal(allow.total, [4.0, 4.0, 4.0])


def test_verdict_conforms_within_budget():
    cv = judge(np.array([up(1.5, 4), 0.25, 3.0], dtype=F32))
    assert cv.verdict == "conforms" and cv.max_ulp == 4.0
    assert cv.worst.index == (0,) and cv.worst.ulp == 4.0


def test_verdict_inaccurate_beyond_budget():
    cv = judge(np.array([1.5, up(0.25, 5), 3.0], dtype=F32))
    w = cv.worst
    assert (cv.verdict, w.quantity, w.index, w.ulp, w.allowance) == ("inaccurate", "value", (1,), 5.0, 4.0)
    assert w.expected == 0.25 and w.got == float(up(0.25, 5))


def test_verdict_conditioning_widens_the_budget():
    # ulp(3) = 2**-22 in float32, so 2 u sens / ulp(3) = sens / 2 = 16 ulps
    truth = Truth("ok", value=q(EXPECTED, sens=[0.0, 0.0, 32.0]))
    assert judge(np.array([1.5, 0.25, up(3.0, 20)], dtype=F32), truth).verdict == "conforms"
    assert judge(np.array([1.5, 0.25, up(3.0, 21)], dtype=F32), truth).verdict == "inaccurate"


def test_verdict_nan_where_a_number_is_expected():
    cv = judge(np.array([1.5, np.nan, 3.0], dtype=F32))
    assert cv.verdict == "nan" and cv.worst.index == (1,) and cv.worst.ulp is None


def test_verdict_overflow_is_inf_where_finite():
    cv = judge(np.array([1.5, 0.25, np.inf], dtype=F32))
    assert cv.verdict == "overflow" and cv.worst.index == (2,)


def test_verdict_underflow_is_zero_where_nonzero_beyond_budget():
    assert judge(np.array([1.5, 0.0, 3.0], dtype=F32)).verdict == "underflow"
    tiny = Truth("ok", value=q([1.5, 2 * 1.4e-45, 3.0]))  # 2 subnormal steps: within 4 ulps
    assert judge(np.array([1.5, 0.0, 3.0], dtype=F32), tiny).verdict == "conforms"


def test_verdict_wrong_sign():
    cv = judge(np.array([1.5, -0.25, 3.0], dtype=F32))
    assert cv.verdict == "wrong-sign" and cv.worst.got == -0.25


def test_verdict_signed_zero_is_not_a_wrong_sign():
    truth = Truth("ok", value=q([0.0, 0.25, 3.0]))
    assert judge(np.array([-0.0, 0.25, 3.0], dtype=F32), truth).verdict == "conforms"


def test_verdict_raised_on_a_valid_case():
    cv = classify(CASE, Truth("ok", value=q(EXPECTED)), error=RuntimeError("boom\nsecond line"))
    assert cv.verdict == "raised" and cv.worst.message == "RuntimeError: boom"


def test_verdict_invalid_case_rejected_conforms():
    invalid = Truth("invalid", reason="labels outside [0, 1]")
    assert classify(CASE, invalid, error=ValueError("bad labels")).verdict == "conforms"
    assert judge(np.full(3, np.nan, dtype=F32), invalid).verdict == "conforms"


def test_verdict_invalid_case_answered_is_accepted_invalid():
    cv = judge(np.array([np.nan, 0.5, np.nan], dtype=F32), Truth("invalid", reason="labels outside [0, 1]"))
    assert cv.verdict == "accepted-invalid" and cv.worst.index == (1,)
    assert cv.worst.message == "labels outside [0, 1]"


def test_verdict_undefined_element_answered_is_accepted_invalid():
    truth = Truth("ok", value=q([1.5, np.nan, 3.0], undefined=[False, True, False]))
    assert judge(np.array([1.5, np.nan, 3.0], dtype=F32), truth).verdict == "conforms"
    assert judge(np.array([1.5, 7.0, 3.0], dtype=F32), truth).verdict == "accepted-invalid"


def test_verdict_dtype_when_values_are_right():
    cv = judge(np.array(EXPECTED, dtype=np.float64))
    assert cv.verdict == "dtype" and "float64" in cv.worst.message


def test_verdict_dtype_yields_to_worse_value_classes():
    assert judge(np.array([1.5, 0.25, np.nan])).verdict == "nan"


def test_verdict_shape_mismatch():
    assert judge(np.array([1.5, 0.25], dtype=F32)).verdict == "shape"
    cv = judge(np.array([[1.5, 0.25, 3.0]], dtype=F32))  # same size: still compared
    assert cv.verdict == "shape" and cv.max_ulp == 0.0


def test_verdict_contract_when_the_documented_transform_explains_it():
    contract = Truth("ok", value=q([1.5, 100.0, 3.0]))
    got = np.array([1.5, 100.0, 3.0], dtype=F32)
    assert judge(got).verdict == "inaccurate"
    assert judge(got, contract=contract).verdict == "contract"


def test_verdict_undecided_elements_are_skipped_and_counted():
    truth = Truth("undecided", value=q([1.5, np.nan, 3.0], undecided=[False, True, False]))
    cv = judge(np.array([1.5, 123.0, 3.0], dtype=F32), truth)
    assert cv.verdict == "conforms" and cv.undecided == 1


def test_verdict_case_is_the_worst_of_its_quantities():
    truth = Truth("ok", value=q(EXPECTED), grads={"logits": q([0.5, -0.5, 1.0])})
    grads = {"logits": np.array([0.5, -0.5, np.inf], dtype=F32)}
    cv = judge(np.array([1.5, up(0.25, 9), 3.0], dtype=F32), truth, grads)
    assert cv.verdict == "overflow" and cv.worst.quantity == "grad:logits"
    assert [f.verdict for f in cv.findings] == ["inaccurate", "overflow"]


def test_verdict_missing_gradient_is_not_compared():
    truth = Truth("ok", value=q(EXPECTED), grads={"logits": q([0.5, -0.5, 1.0])})
    cv = judge(np.array(EXPECTED, dtype=F32), truth)
    assert cv.verdict == "conforms" and [f.quantity for f in cv.findings] == ["value"]


def test_verdict_reduced_output_is_zero_dimensional():
    case = Case("sigmoid_bce_logits", "float32", {"logits": np.ones(8, dtype=F32), "labels": np.zeros(8, dtype=F32)},
                {"reduction": "sum"})
    truth = Truth("ok", value=q(10.0))
    # reduced float32 value: 8 (base) + ceil(log2 8) = 11 ulps
    assert classify(case, truth, Output(np.array(up(10.0, 11)))).verdict == "conforms"
    cv = classify(case, truth, Output(np.array(up(10.0, 12))))
    assert cv.verdict == "inaccurate" and cv.worst.index == () and cv.worst.allowance == 11.0


@pytest.mark.parametrize("verdict", ["crash", "timeout"])
def test_verdict_process_failures_are_case_level(verdict):
    cv = CaseVerdict.single(verdict, "worker exited with signal 11")
    assert cv.verdict == verdict and RANK[verdict] < RANK["raised"]


def test_cancelled_value_below_its_conditioning_conforms_even_across_binades():
    # Truth 2**-60 that cancelled from terms of size 1 (sens = 1): any answer within 2 u sens =
    # 2**-23 of it is explained by the inputs' roundings, although 0 is billions of "ulps" away
    # in the integer order of float32 bit patterns.
    tiny = 2.0 ** -60
    assert judge(np.array([EXPECTED[0], 0.0, EXPECTED[2]], dtype=F32), truth=Truth(
        "ok", value=q([EXPECTED[0], tiny, EXPECTED[2]], sens=[0.0, 1.0, 0.0]))).verdict == "conforms"


def test_cancelled_value_beyond_its_conditioning_underflows():
    tiny = 2.0 ** -60
    assert judge(np.array([EXPECTED[0], 0.0, EXPECTED[2]], dtype=F32), truth=Truth(
        "ok", value=q([EXPECTED[0], tiny, EXPECTED[2]], sens=[0.0, 2.0 ** -40, 0.0]))).verdict == "underflow"


def test_number_for_an_invalid_case_with_a_reduced_output_is_accepted_invalid():
    invalid = Truth("invalid", reason="class_weights must be finite and >= 0")
    assert judge(np.array(1.7, dtype=F32), truth=invalid).verdict == "accepted-invalid"
    assert judge(np.array(np.nan, dtype=F32), truth=invalid).verdict == "conforms"


def test_raising_on_an_undefined_loss_conforms():
    undefined = Truth("ok", value=q([np.nan], undefined=[True]))
    assert judge(None, truth=undefined, error=ValueError("empty batch")).verdict == "conforms"
    assert judge(None, error=ValueError("boom")).verdict == "raised"
