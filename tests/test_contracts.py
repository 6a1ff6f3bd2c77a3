"""Contracts: the oracle evaluates documented deviations exactly, and the engine names them.

Expected values come from the contract's own definition worked by hand: with the log clamped at
-100, a probability of 0 costs exactly 100; with probabilities clipped to [e, 1-e], a 0 costs -log e.
"""
import mpmath
import numpy as np
import pytest

import oracle
from adapters.base import Adapter, Contract, Output
from cases import Case
from conformance import runner

F32 = np.float32


def log_hp(x) -> float:
    """log x from mpmath at 200 bits, rounded once to float64 (to float32 the double rounding is
    harmless for the constants used here: none lies within 2**-29 relative of a float32 midpoint)."""
    with mpmath.workprec(200):
        return float(mpmath.log(x))


def bce(probs, labels, dtype="float32", **options):
    f = np.dtype(dtype)
    return Case("bce_probs", dtype, {"probs": np.array(probs, dtype=f), "labels": np.array(labels, dtype=f)},
                options)


@pytest.mark.parametrize("backend", ["arb", "mpmath"])
def test_log_floor_contract_costs_exactly_the_floor(backend):
    r = oracle.evaluate(bce([0.0, 1.0, 0.5], [1.0, 0.0, 1.0]), contract={"log_floor": -100.0}, backend=backend)
    np.testing.assert_array_equal(r.value.value, F32([100.0, 100.0, log_hp(2)]))


def test_log_floor_contract_leaves_values_above_the_floor_alone():
    case = bce([0.25, 1e-30], [1.0, 1.0])
    plain, floored = oracle.evaluate(case), oracle.evaluate(case, contract={"log_floor": -100.0})
    np.testing.assert_array_equal(plain.value.value, floored.value.value)


def test_clip_contract_costs_minus_log_epsilon_at_zero():
    eps = float(F32(1e-7))
    r = oracle.evaluate(bce([0.0], [1.0]), contract={"clip": [eps, float(F32(1 - eps))]})
    assert r.value.value[0] == F32(-log_hp(eps))


def test_renormalize_contract_divides_each_row_by_its_sum():
    case = Case("categorical_ce_probs", "float64", {"probs": np.array([[0.2, 0.2, 0.2]]),
                                                   "labels": np.array([[1.0, 0.0, 0.0]])})
    r = oracle.evaluate(case, contract={"renormalize": True})
    assert r.value.value[0] == log_hp(3)


def test_contract_on_a_logit_variant_is_refused():
    case = Case("sigmoid_bce_logits", "float32", {"logits": F32([1.0]), "labels": F32([1.0])})
    with pytest.raises(ValueError, match="does not apply"):
        oracle.evaluate(case, contract={"log_floor": -100.0})


def test_unknown_contract_parameter_is_refused():
    with pytest.raises(ValueError, match="unknown contract parameter"):
        oracle.evaluate(bce([0.5], [1.0]), contract={"log_ceiling": 1.0})


class ClampingBCE(Adapter):
    """A BCE on probabilities that clamps each log at -100, and says so."""

    name = "clamping"

    def apis(self, case):
        return ["clamped"] if case.variant == "bce_probs" else []

    def evaluate(self, case, api, grads=True):
        p, z = case["probs"].astype(np.float64), case["labels"].astype(np.float64)
        with np.errstate(divide="ignore"):
            loss = -(z * np.maximum(np.log(p), -100) + (1 - z) * np.maximum(np.log1p(-p), -100))
        return Output(loss.astype(case.format.np_dtype))

    def contract(self, case, api):
        return Contract("log-clamp", "https://example.invalid/bce", "log clamped at -100", {"log_floor": -100.0})


def test_answer_matching_only_the_contract_gets_the_contract_verdict():
    case = bce([0.0, 0.5], [1.0, 1.0])
    cv, _ = runner._judge(ClampingBCE(), "clamped", case, oracle.evaluate(case), {})
    assert cv.verdict == "contract" and cv.worst.message.startswith("log-clamp: log clamped at -100")


def test_answer_matching_the_math_conforms_despite_a_contract():
    case = bce([0.25, 0.5], [1.0, 1.0])
    cv, _ = runner._judge(ClampingBCE(), "clamped", case, oracle.evaluate(case), {})
    assert cv.verdict == "conforms"


def test_clip_contract_gradient_is_zero_where_the_clip_holds():
    eps = float(F32(1e-7))
    r = oracle.evaluate(bce([0.0, 0.25], [1.0, 1.0]), contract={"clip": [eps, float(F32(1 - eps))]})
    np.testing.assert_array_equal(r.grads["probs"].value, F32([0.0, -4.0]))  # d(-log p)/dp = -1/p inside


def test_renormalize_contract_gradient_follows_the_chain_rule():
    # l = -log(p0 / (p0 + p1)): dl/dp0 = -1/p0 + 1/S, dl/dp1 = 1/S; at p = (1/4, 1/4): (-2, 2)
    case = Case("categorical_ce_probs", "float64", {"probs": np.array([[0.25, 0.25]]),
                                                   "labels": np.array([[1.0, 0.0]])})
    r = oracle.evaluate(case, contract={"renormalize": True})
    np.testing.assert_array_equal(r.grads["probs"].value, [[-2.0, 2.0]])


def test_wrap_negative_ids_contract_reads_minus_one_as_the_last_class():
    logits = np.array([[1.0, 2.0, 3.0]])
    wrapped = Case("softmax_ce_sparse", "float64", {"logits": logits, "labels": np.array([-1])})
    direct = Case("softmax_ce_sparse", "float64", {"logits": logits, "labels": np.array([2])})
    assert oracle.evaluate(wrapped).status == "invalid"
    r = oracle.evaluate(wrapped, contract={"wrap_negative_ids": True})
    np.testing.assert_array_equal(r.value.value, oracle.evaluate(direct).value.value)
