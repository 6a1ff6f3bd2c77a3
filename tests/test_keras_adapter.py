"""The worker protocol, and Keras 3 (every backend) and tf_keras against values worked from the math.

Each worker starts once per session (module-scoped fixtures, all started together so that their
framework imports overlap). Expected values come from closed forms evaluated in mpmath.
"""
from __future__ import annotations

import importlib.util
import os
import signal
import time
from pathlib import Path

import ml_dtypes
import mpmath
import numpy as np
import pytest

import oracle
from adapters import get
from adapters._worker import WorkerAdapter, WorkerClient, WorkerDied, WorkerError, decode_array, encode_array
from adapters.base import Adapter, Output
from cases import Case, fmt
from conformance import runner

KERAS = ["keras-tensorflow", "keras-jax", "keras-torch"]
ALL_KERAS = KERAS + ["tf_keras"]
F32 = np.float32
EPS32 = float(F32(1e-7))


def f32(expr) -> np.float32:
    """``expr()`` correctly rounded to float32: evaluated at 200 bits, then rounded once to 24."""
    with mpmath.workprec(200):
        v = expr()
    with mpmath.workprec(24):
        return F32(float(+v))


def case(variant, dtype="float32", options=None, **inputs):
    f = fmt(dtype)
    arrays = {k: np.asarray(v, dtype=np.int64) if np.asarray(v).dtype.kind == "i" else f.array(v)
              for k, v in inputs.items()}
    return Case(variant, dtype, arrays, options or {})


# -- the worker, with a framework-free adapter -----------------------------------------------------

class Echo(Adapter):
    """Served by a worker in these tests: gives its logits back, or misbehaves as the API says."""

    def available(self):
        return True, "echo"

    def apis(self, case):
        return ["echo", "print", "raise", "exit"]

    def evaluate(self, case, api, grads=True):
        if api == "print":
            print("a framework's chatter on stdout", flush=True)
        elif api == "raise":
            raise ZeroDivisionError("as asked")
        elif api == "exit":
            os._exit(3)
        return Output(case["logits"], {"logits": case["logits"][::-1]})


class EchoAdapter(WorkerAdapter):
    name = "echo"
    target = "test_keras_adapter:Echo"
    env = {"PYTHONPATH": str(Path(__file__).parent)}


@pytest.fixture(scope="module")
def echo():
    adapter = EchoAdapter()
    yield adapter
    adapter.worker.close()


def bits(a: np.ndarray) -> np.ndarray:
    return a.view({2: np.uint16, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize])


def odd_floats(dtype: str) -> Case:
    """-0.0, a NaN with a payload and its sign set, a subnormal, inf: what a lossy channel loses."""
    f = fmt(dtype)
    nan = f.from_bits(np.array([(1 << (f.bits - 1)) | f.to_bits(f.array([np.inf]))[0] | 5], dtype=f.uint_dtype))
    logits = np.concatenate([f.array([-0.0, f.min_subnormal, np.inf, 1.5]), nan])
    return Case("sigmoid_bce_logits", dtype, {"logits": logits, "labels": f.array([0.0] * 5)})


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float32", "float64"])
def test_worker_roundtrips_arrays_bit_for_bit(echo, dtype):
    c = odd_floats(dtype)
    out = echo.evaluate(c, "echo")
    assert out.value.dtype == c["logits"].dtype and out.grads["logits"].dtype == c["logits"].dtype
    np.testing.assert_array_equal(bits(out.value), bits(c["logits"]))
    np.testing.assert_array_equal(bits(out.grads["logits"]), bits(c["logits"][::-1]))


def test_array_encoding_keeps_dtype_shape_and_bits():
    for a in [np.array(-0.0), np.arange(6, dtype=np.int64).reshape(2, 3), np.array([True, False]),
              np.array([1.0, -0.0, np.nan], dtype=ml_dtypes.bfloat16).reshape(3, 1, 1)]:
        b = decode_array(encode_array(a))
        assert b.dtype == a.dtype and b.shape == a.shape and b.tobytes() == a.tobytes()


def test_worker_stdout_carries_protocol_lines_only(echo):
    c = odd_floats("float32")
    assert bits(echo.evaluate(c, "print").value).tolist() == bits(c["logits"]).tolist()


def test_worker_exception_is_reraised_with_its_type_and_message(echo):
    c = odd_floats("float32")
    with pytest.raises(WorkerError, match=r"^as asked$") as info:
        echo.evaluate(c, "raise")
    assert type(info.value).__name__ == "ZeroDivisionError" and info.value.type_name == "ZeroDivisionError"
    assert "ZeroDivisionError" in info.value.remote_traceback


def test_worker_exception_gets_the_verdict_raised_with_the_framework_message(echo):
    c = case("sigmoid_bce_logits", logits=[1.0], labels=[1.0])
    cv, _ = runner._judge(echo, "raise", c, oracle.evaluate(c), {})
    assert cv.verdict == "raised" and "ZeroDivisionError: as asked" in cv.worst.message


def test_killed_worker_is_restarted_by_the_next_call(echo):
    assert echo.available() == (True, "echo")
    pid = echo.worker.pid
    os.kill(pid, signal.SIGKILL)
    while echo.worker.alive:  # poll() reaps it
        time.sleep(0.01)
    assert echo.available() == (True, "echo") and echo.worker.pid != pid


def test_worker_dying_mid_call_raises_worker_died_then_recovers(echo):
    c = odd_floats("float32")
    with pytest.raises(WorkerDied, match="exited with code 3"):
        echo.evaluate(c, "exit")
    assert echo.apis(c)[0] == "echo"


def test_worker_that_cannot_import_its_adapter_reports_why():
    client = WorkerClient("adapters.no_such_module:Nothing")
    try:
        with pytest.raises(WorkerError, match="no_such_module") as info:
            client.request("available")
        assert type(info.value).__name__ == "ModuleNotFoundError"
    finally:
        client.close()


def test_adapter_with_a_missing_package_is_unavailable_without_a_worker():
    class Missing(EchoAdapter):
        requires = ("no_such_package_xent",)

    a = Missing()
    assert a.available() == (False, "not installed: no_such_package_xent") and not a.worker.alive


# -- Keras -----------------------------------------------------------------------------------------

needs_keras = pytest.mark.skipif(importlib.util.find_spec("keras") is None, reason="keras is not installed")


@pytest.fixture(scope="module")
def keras_adapters():
    """Every installed Keras adapter, its worker started (all at once: the imports overlap)."""
    adapters = {name: get(name) for name in ALL_KERAS}
    usable = {}
    for name, a in adapters.items():
        if all(importlib.util.find_spec(m) for m in a.requires):
            a.worker.start()
            usable[name] = a
    yield {name: (a, a.available()) for name, a in usable.items()}
    for a in usable.values():
        a.worker.close()


def adapter(keras_adapters, name):
    if name not in keras_adapters:
        pytest.skip(f"{name}: a package it needs is not installed")
    a, (ok, reason) = keras_adapters[name]
    if not ok:
        pytest.skip(f"{name} unavailable: {reason}")
    return a


def evaluate(a, c):
    (api,) = a.apis(c)
    return a.evaluate(c, api)


@needs_keras
@pytest.mark.parametrize("name", ALL_KERAS)
def test_keras_bce_from_logits_at_zero_is_log_2(keras_adapters, name):
    out = evaluate(adapter(keras_adapters, name), case("sigmoid_bce_logits", logits=[0.0, 0.0], labels=[1.0, 0.0]))
    np.testing.assert_array_max_ulp(out.value, np.full(2, f32(lambda: mpmath.log(2))), maxulp=1)


@needs_keras
@pytest.mark.parametrize("name", ALL_KERAS)
def test_keras_bce_from_logits_gradient_at_zero_is_one_half_minus_the_label(keras_adapters, name):
    out = evaluate(adapter(keras_adapters, name), case("sigmoid_bce_logits", logits=[0.0, 0.0], labels=[1.0, 0.0]))
    assert out.grads["logits"].tolist() == [-0.5, 0.5]  # sigmoid(0) - z


@needs_keras
@pytest.mark.parametrize("name", ALL_KERAS)
def test_keras_categorical_ce_of_equal_logits_is_log_c(keras_adapters, name):
    c = case("softmax_ce_dense", logits=np.zeros((2, 5)), labels=np.eye(5)[[0, 3]])
    out = evaluate(adapter(keras_adapters, name), c)
    np.testing.assert_array_max_ulp(out.value, np.full(2, f32(lambda: mpmath.log(5))), maxulp=1)


@needs_keras
@pytest.mark.parametrize("name", ALL_KERAS)
def test_keras_categorical_ce_gradient_of_equal_logits_is_one_fifth_minus_the_label(keras_adapters, name):
    c = case("softmax_ce_dense", logits=np.zeros((2, 5)), labels=np.eye(5)[[0, 3]])
    out = evaluate(adapter(keras_adapters, name), c)
    np.testing.assert_array_max_ulp(out.grads["logits"], F32(0.2) - np.eye(5, dtype=F32)[[0, 3]], maxulp=2)  # p - y


@needs_keras
@pytest.mark.parametrize("name", ALL_KERAS)
def test_keras_bce_reduction_none_keeps_the_element_shape(keras_adapters, name):
    # BinaryCrossentropy averages over its last axis; the adapter adds one of size 1 for it
    c = case("sigmoid_bce_logits", logits=np.zeros((2, 3)), labels=np.ones((2, 3)))
    out = evaluate(adapter(keras_adapters, name), c)
    assert out.value.shape == (2, 3) and out.grads["logits"].shape == (2, 3) and out.grads["labels"].shape == (2, 3)


@needs_keras
@pytest.mark.parametrize("name", ALL_KERAS)
def test_keras_sparse_ignore_class_weighted_mean_counts_kept_targets_only(keras_adapters, name):
    c = case("softmax_ce_sparse", logits=np.zeros((3, 4)), labels=[1, -100, 2],
             options={"ignore_index": -100, "reduction": "weighted_mean"})
    out = evaluate(adapter(keras_adapters, name), c)
    assert out.value == f32(lambda: mpmath.log(4))  # (log 4 + log 4) / 2 kept targets


@needs_keras
@pytest.mark.parametrize("name", KERAS)
def test_keras_bce_probs_at_zero_meets_the_clip_contract(keras_adapters, name):
    a = adapter(keras_adapters, name)
    c = case("bce_probs", probs=[0.0, 0.5], labels=[1.0, 1.0])
    (api,) = a.apis(c)
    assert a.contract(c, api).params == {"clip": [EPS32, float(F32(1 - 1e-7))]}
    cv, _ = runner._judge(a, api, c, oracle.evaluate(c), {})
    # -log(clip(0)) = -log(eps), eps = 1e-7 in float32, where the math says +inf. (The case's verdict
    # is its gradients': the clip's gradient 0 against the unclipped -1/p = -inf.)
    value = cv.findings[0]
    assert value.quantity == "value" and value.verdict == "contract"
    assert value.got == f32(lambda: -mpmath.log(EPS32))


@needs_keras
@pytest.mark.parametrize("name", ALL_KERAS)
def test_keras_categorical_probs_meet_the_renormalize_contract(keras_adapters, name):
    a = adapter(keras_adapters, name)
    c = case("categorical_ce_probs", probs=[[0.25, 0.25, 0.25]], labels=[[1.0, 0.0, 0.0]])
    cv, _ = runner._judge(a, a.apis(c)[0], c, oracle.evaluate(c), {})
    # the row is divided by its sum 3/4 before the log: -log(1/3), where the math says -log(1/4)
    value = cv.findings[0]
    assert value.quantity == "value" and value.verdict == "contract"
    np.testing.assert_array_max_ulp(F32(value.got), f32(lambda: mpmath.log(3)), maxulp=1)


@needs_keras
def test_tf_keras_bce_probs_at_zero_meets_the_log_offset_contract(keras_adapters):
    a = adapter(keras_adapters, "tf_keras")
    c = case("bce_probs", probs=[0.0], labels=[1.0])
    cv, _ = runner._judge(a, a.apis(c)[0], c, oracle.evaluate(c), {})
    # tf_keras clips p to eps, then takes log(p + eps): -log(2 eps)
    value = cv.findings[0]
    assert value.quantity == "value" and value.verdict == "contract"
    assert value.got == f32(lambda: -mpmath.log(2 * EPS32))


@needs_keras
def test_keras_apis_do_not_express_pos_weight_or_class_weights(keras_adapters):
    a = adapter(keras_adapters, "keras-jax")
    assert a.apis(case("sigmoid_bce_logits", logits=[0.0], labels=[1.0], pos_weight=[2.0])) == []
    assert a.apis(case("softmax_ce_sparse", logits=[[0.0, 1.0]], labels=[0], class_weights=[1.0, 2.0])) == []


@needs_keras
def test_keras_mean_with_an_ignored_target_is_not_applicable(keras_adapters):
    # Keras's sum_over_batch_size divides by the targets kept, the variant's mean by all of them
    a = adapter(keras_adapters, "keras-tensorflow")
    c = case("softmax_ce_sparse", logits=np.zeros((2, 3)), labels=[1, -100], options={"ignore_index": -100})
    assert a.apis(Case(c.variant, c.dtype, c.inputs, {**c.options, "reduction": "mean"})) == []
    assert a.apis(Case(c.variant, c.dtype, c.inputs, {**c.options, "reduction": "weighted_mean"})) != []


@needs_keras
@pytest.mark.parametrize("name", ALL_KERAS)
def test_keras_availability_names_keras_and_backend_versions(keras_adapters, name):
    adapter(keras_adapters, name)
    ok, detail = keras_adapters[name][1]
    assert ok and detail.startswith("keras 3" if name != "tf_keras" else "tf_keras 2")
