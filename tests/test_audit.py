"""``xent.audit``: one implementation against the oracle, failing with a readable account."""
import pytest

import xent
from adapters.base import Adapter
from tests.helpers import make

SMALL = {"examples": 2, "search": 0, "shrink": 8}


def test_audit_passes_the_reference_implementation():
    result = xent.audit("numpy", variants="sigmoid_bce_logits", dtypes="float32", **SMALL)
    assert result.ok and result.answers > 0 and not result.failures
    assert "answers conform" in result.message()


def test_audit_fails_the_naive_control_with_verdict_minimal_case_and_reproducer():
    with pytest.raises(xent.AuditFailed) as e:
        xent.audit("naive", variants="sigmoid_bce_logits", dtypes="float32", **SMALL)
    message, result = str(e.value), e.value.result
    assert isinstance(e.value, AssertionError) and not result.ok
    # every flawed formula of the control is caught (exp(-x) overflowing at x = -810, log(1 + .)
    # losing small terms, sigmoid saturating inside a log)
    assert {d["api"] for d in result.failures} == {"textbook", "seed_unstable", "no_log1p"}
    assert message.startswith("xent audit of naive: ")
    assert "\n1. " in message and "minimal case (shrunk in" in message and '"variant": "sigmoid_bce_logits"' in message
    assert "reproducer (" in message and "     | def call(inputs):" in message  # the first script, in full


def test_audit_allowed_verdicts_do_not_fail_but_are_counted():
    every = ("nan", "overflow", "underflow", "inaccurate", "accepted-invalid", "wrong-sign", "raised")
    result = xent.audit("naive", variants="sigmoid_bce_logits", dtypes="float32", allow=every, **SMALL)
    assert result.ok and result.allowed and not result.failures
    assert "allowed divergence(s)" in result.message()


def test_audit_of_a_plain_function_needs_its_variant():
    def bce(logits, labels):
        return logits  # not the loss; never called below

    with pytest.raises(ValueError, match="a plain function needs its one variant"):
        xent.audit(bce)


def test_audit_fails_when_no_case_can_be_expressed():
    class Nothing(Adapter):
        name, variants, dtypes = "nothing", ("log_softmax",), ("float64",)

        def apis(self, case):
            return []

    with pytest.raises(xent.AuditFailed, match="no case could be expressed"):
        xent.audit(Nothing(), **SMALL)


def test_audit_fails_on_an_unavailable_adapter_with_its_reason():
    class Missing(Adapter):
        name, variants, dtypes = "missing", ("log_softmax",), ("float64",)

        def available(self):
            return False, "not installed: mylib"

    with pytest.raises(xent.AuditFailed, match="the adapter is unavailable: not installed: mylib"):
        xent.audit(Missing(), **SMALL)


def test_audit_rejects_unknown_verdicts_and_variants():
    with pytest.raises(ValueError, match="allow: unknown verdict"):
        xent.audit("numpy", variants="log_softmax", allow=["slow"])
    with pytest.raises(ValueError, match="unknown variant"):
        xent.audit("numpy", variants="logsoftmax")


def test_audit_writes_the_report_when_asked(tmp_path):
    result = xent.audit("naive", variants="sigmoid_bce_logits", dtypes="float32", raise_on_failure=False,
                        out=tmp_path, **SMALL)
    assert (tmp_path / "report.json").is_file() and (tmp_path / "summary.md").is_file()
    assert all((tmp_path / d["repro"]).is_file() for d in result.failures if d["repro"])
    assert str(tmp_path / "summary.md") in result.message()


def test_audit_settings_come_from_the_profile_and_the_call():
    result = xent.audit("numpy", variants="log_softmax", dtypes="float64", profile="thorough", examples=1, search=0)
    assert result.settings == {"profile": "thorough", "examples": 1, "search": 0, "shrink": 96, "seed": 0}
    assert result.doc["run"]["examples"] == 1 and result.doc["run"]["shrink"] == 96


def test_audit_judges_a_kernel_on_the_math():
    # log_softmax(x)_c = x_c - log(sum exp x): without the max shift, exp(1000) overflows and the
    # kernel returns -inf where log_softmax([1000, 0]) is [0, -1000]
    import numpy as np

    def log_softmax(logits):
        return logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))

    a = xent.kernel(log_softmax, "log_softmax", dtypes=["float64"])
    case = make("log_softmax", "float64", logits=[[1000.0, 0.0]])
    with np.errstate(all="ignore"):
        assert a.evaluate(case, a.apis(case)[0]).value.tolist() == [[-np.inf, -np.inf]]
        result = xent.audit(a, raise_on_failure=False, **SMALL)
    assert not result.ok and "overflow" in {d["verdict"] for d in result.failures}
