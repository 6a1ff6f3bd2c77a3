"""The JAX/optax adapters against values worked out from the math, and their two configurations.

Expected values are closed forms evaluated here in mpmath at 200 bits and rounded once into the
case dtype (never taken from JAX, another framework or the adapter). JAX computes in the case dtype,
so a loss may be an ulp or two from the correctly rounded value: each comparison states its bound.
Shapes are reused across tests: JAX compiles each eager operation once per shape.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mpmath import mp

pytest.importorskip("jax")
pytest.importorskip("optax")

import oracle  # noqa: E402
from adapters.jax_adapter import (DENSE, LOG_SOFTMAX, SAFE, SIGMOID, SMOOTHED, SOFTMAX, SPARSE,  # noqa: E402
                                  JaxAdapter, JaxX64Adapter)
from cases import Case, fmt  # noqa: E402
from conformance.runner import _judge  # noqa: E402
from tests.helpers import make, rounded, ulps  # noqa: E402

JAX, JAX64 = JaxAdapter(), JaxX64Adapter()








def verdict(adapter, case: Case, api: str) -> str:
    cv, _ = _judge(adapter, api, case, oracle.evaluate(case), {})
    return cv.verdict


# -- availability, imports and configurations ------------------------------------------------------

def test_module_import_loads_no_jax():
    code = "import adapters, adapters.jax_adapter, sys; print('jax' in sys.modules or 'optax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "False"


def test_available_names_jax_and_optax_versions():
    ok, version = JAX.available()
    assert ok and version.startswith("jax ") and "optax" in version


def test_float64_case_under_jax_comes_back_float32_with_verdict_dtype():
    case = make("softmax", "float64", logits=[[0.0, 0.0]])  # 1/2 is exact in float32: only the dtype is off
    assert JAX.evaluate(case, SOFTMAX).value.dtype == np.float32
    assert verdict(JAX, case, SOFTMAX) == "dtype"


def test_float64_case_under_jax_x64_stays_float64_and_conforms():
    case = make("softmax", "float64", logits=[[0.0, 0.0]])
    assert JAX64.evaluate(case, SOFTMAX).value.dtype == np.float64
    assert verdict(JAX64, case, SOFTMAX) == "conforms"


def test_x64_configuration_does_not_leak_into_the_default_one():
    case = make("softmax", "float64", logits=[[0.0, 0.0]])
    JAX64.evaluate(case, SOFTMAX)
    assert JAX.evaluate(case, SOFTMAX).value.dtype == np.float32


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_narrow_dtypes_come_back_in_the_case_dtype(dtype):
    out = JAX.evaluate(make("log_softmax", dtype, logits=[[0.0, 0.0]]), LOG_SOFTMAX)
    assert out.value.dtype == fmt(dtype).np_dtype and out.grads["logits"].dtype == fmt(dtype).np_dtype


# -- which APIs express which cases ----------------------------------------------------------------

def test_reductions_other_than_none_are_not_applicable():
    case = make("sigmoid_bce_logits", "float32", {"reduction": "mean"}, logits=[0.0], labels=[1.0])
    assert JAX.apis(case) == []


def test_weights_are_not_applicable():
    case = make("softmax_ce_sparse", "float32", logits=[[0.0, 0.0]], labels=[0], weights=[2.0])
    assert JAX.apis(case) == []


def test_safe_softmax_needs_the_class_axis_last():
    last = make("softmax_ce_dense", "float32", logits=[[0.0, 0.0]], labels=[[1.0, 0.0]])
    first = make("softmax_ce_dense", "float32", {"axis": 0}, logits=[[0.0, 0.0]], labels=[[1.0, 0.0]])
    assert JAX.apis(last) == [DENSE, SAFE] and JAX.apis(first) == [DENSE]


def test_label_smoothing_goes_through_optax_smooth_labels():
    case = make("softmax_ce_dense", "float32", {"label_smoothing": 0.25}, logits=[[0.0, 0.0]], labels=[[1.0, 0.0]])
    assert JAX.apis(case) == [SMOOTHED]


# -- values ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("label", [0.0, 0.5, 1.0])
def test_sigmoid_bce_at_zero_is_log_2(label):
    out = JAX.evaluate(make("sigmoid_bce_logits", "float32", logits=[0.0], labels=[label]), SIGMOID)
    with mp.workprec(200):
        want = rounded([mp.log(2)], "float32")
    assert ulps(out.value, want, "float32") <= 1


@pytest.mark.parametrize("api", [DENSE, SAFE])
def test_dense_softmax_ce_of_equal_logits_is_log_c(api):
    out = JAX.evaluate(make("softmax_ce_dense", "float32", logits=[[1.5] * 5], labels=[[0, 0, 1.0, 0, 0]]), api)
    with mp.workprec(200):
        want = rounded([mp.log(5)], "float32")
    assert ulps(out.value, want, "float32") <= 1


def test_sparse_softmax_ce_of_equal_logits_is_log_c():
    out = JAX.evaluate(make("softmax_ce_sparse", "float32", logits=[[1.5] * 5], labels=[3]), SPARSE)
    with mp.workprec(200):
        want = rounded([mp.log(5)], "float32")
    assert ulps(out.value, want, "float32") <= 1


def test_smoothed_labels_follow_the_categorical_convention():
    # y' = y (1 - e) + e / C: with equal logits every class costs log C, so the loss is still log C,
    # and the gradient into logits is p - y' = 1/C - y'
    case = make("softmax_ce_dense", "float64", {"label_smoothing": 0.25}, logits=[[0.0] * 4], labels=[[0, 1.0, 0, 0]])
    out = JAX64.evaluate(case, SMOOTHED)
    with mp.workprec(200):
        e = mp.mpf(0.25)
        dx = [mp.mpf(1) / 4 - (y * (1 - e) + e / 4) for y in (0, 1, 0, 0)]
        want = rounded([mp.log(4)], "float64")
    assert ulps(out.value, want, "float64") <= 1
    assert ulps(out.grads["logits"].ravel(), rounded(dx, "float64"), "float64") <= 2


def test_ignored_rows_are_zero_through_where():
    case = make("softmax_ce_sparse", "float32", {"ignore_index": -100}, logits=[[1.5] * 5, [1.5] * 5], labels=[-100, 2])
    out = JAX.evaluate(case, SPARSE)
    with mp.workprec(200):
        want = rounded([0, mp.log(5)], "float32")
    assert ulps(out.value, want, "float32") <= 1
    np.testing.assert_array_equal(out.grads["logits"][0], np.zeros(5, dtype=np.float32))


# -- gradients (float64 under jax-x64, against closed forms) ----------------------------------------

def test_sigmoid_bce_gradients_are_sigmoid_minus_label_and_minus_logit():
    xs, zs = [-3.0, -0.5, 0.25, 4.0], [0.0, 1.0, 0.5, 0.75]
    out = JAX64.evaluate(make("sigmoid_bce_logits", "float64", logits=xs, labels=zs), SIGMOID)
    with mp.workprec(200):
        dx = [1 / (1 + mp.exp(-mp.mpf(x))) - z for x, z in zip(xs, zs)]
        dz = [-mp.mpf(x) for x in xs]
    assert ulps(out.grads["logits"], rounded(dx, "float64"), "float64") <= 4
    assert ulps(out.grads["labels"], rounded(dz, "float64"), "float64") <= 4


def test_dense_softmax_ce_gradients_are_softmax_minus_labels_and_lse_minus_logit():
    x, y = [3.0, -2.0, 0.25, 1.5], [0.125, 0.25, 0.375, 0.25]
    out = JAX64.evaluate(make("softmax_ce_dense", "float64", logits=[x], labels=[y]), DENSE)
    with mp.workprec(200):
        big = mp.log(mp.fsum(mp.exp(v) for v in x))
        dx = [mp.exp(xj - big) - yj for xj, yj in zip(x, y)]  # sum(y) = 1
        dy = [big - xc for xc in x]
    assert ulps(out.grads["logits"].ravel(), rounded(dx, "float64"), "float64") <= 4
    assert ulps(out.grads["labels"].ravel(), rounded(dy, "float64"), "float64") <= 4


def test_sparse_softmax_ce_gradient_is_softmax_minus_one_hot():
    x = [3.0, -2.0, 0.25, 1.5]
    out = JAX64.evaluate(make("softmax_ce_sparse", "float64", logits=[x], labels=[2]), SPARSE)
    with mp.workprec(200):
        big = mp.log(mp.fsum(mp.exp(v) for v in x))
        dx = [mp.exp(xj - big) - (j == 2) for j, xj in enumerate(x)]
    assert ulps(out.grads["logits"].ravel(), rounded(dx, "float64"), "float64") <= 4


def test_log_softmax_gradient_is_one_minus_c_times_softmax():
    x = [3.0, -2.0, 0.25, 1.5]
    out = JAX64.evaluate(make("log_softmax", "float64", logits=[x]), LOG_SOFTMAX)
    with mp.workprec(200):
        big = mp.log(mp.fsum(mp.exp(v) for v in x))
        dx = [1 - 4 * mp.exp(xj - big) for xj in x]
    assert ulps(out.grads["logits"].ravel(), rounded(dx, "float64"), "float64") <= 8


def test_negative_class_id_meets_the_documented_indexing_contract():
    # optax reads label -1 as the last class (take_along_axis normalises negative indices):
    # invalid for the math, but what JAX documents, so the verdict is "contract"
    case = make("softmax_ce_sparse", "float32", logits=[[1.0, 2.0, 3.0]], labels=[-1])
    assert oracle.evaluate(case).status == "invalid"
    assert verdict(JAX, case, SPARSE) == "contract"


def test_out_of_range_positive_class_id_is_not_covered_by_the_contract():
    case = make("softmax_ce_sparse", "float32", logits=[[1.0, 2.0, 3.0]], labels=[3])
    assert JAX.contract(case, SPARSE) is None
