"""The ONNX adapters (ONNX Runtime and onnx's reference evaluator) against values from the math.

Expected values are closed forms evaluated in mpmath at 100 digits and rounded once into the case
dtype (``tests.reference.round_to``), never another framework's answer. Both runtimes compute in
the case dtype (ORT's float16 graphs in float32), so a loss is allowed a few ulps.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mpmath import mp, mpf

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

import oracle  # noqa: E402
from adapters.onnx_adapter import (LOG_SOFTMAX, NLL, SCE, SOFTMAX, OnnxReferenceAdapter,  # noqa: E402
                                   OnnxRuntimeAdapter)
from cases import Case, fmt  # noqa: E402
from conformance.runner import _judge  # noqa: E402
from tests.reference import round_to  # noqa: E402
from tests.helpers import bit_ulps as ulps  # noqa: E402

ADAPTERS = {"onnxruntime": OnnxRuntimeAdapter(), "onnx-reference": OnnxReferenceAdapter()}
DTYPES = ("float16", "bfloat16", "float32", "float64")
LOSS_APIS = (SCE, NLL)


def loss_case(dtype, logits, labels, **options):
    class_weights = options.pop("class_weights", None)
    inputs = {"logits": fmt(dtype).array(logits), "labels": np.asarray(labels, dtype=np.int64)}
    if class_weights is not None:
        inputs["class_weights"] = fmt(dtype).array(class_weights)
    return Case("softmax_ce_sparse", dtype, inputs, options)




def lse_minus(row, c) -> mpf:
    """log sum_j exp(x_j) - x_c, the textbook softmax cross-entropy of one row."""
    return mp.log(mp.fsum(mp.exp(mpf(float(v))) for v in row)) - mpf(float(row[c]))


def run(adapter_name, api, case):
    adapter = ADAPTERS[adapter_name]
    if api not in adapter.apis(case):
        pytest.skip(f"{adapter_name} has no {api} for {case.dtype}: {adapter.available()[1]}")
    return adapter.evaluate(case, api).value


@pytest.fixture(autouse=True)
def _digits():
    with mp.workdps(100):
        yield


@pytest.mark.parametrize("adapter_name", ADAPTERS)
@pytest.mark.parametrize("api", LOSS_APIS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_classes", [3, 10])
def test_sce_equal_logits_is_log_c(adapter_name, api, dtype, n_classes):
    case = loss_case(dtype, np.full((2, n_classes), 1.5), [0, n_classes - 1], reduction="none")
    got = run(adapter_name, api, case)
    want = round_to(mp.log(n_classes), dtype)
    assert got.dtype == fmt(dtype).np_dtype
    assert ulps(got, np.full(2, want), dtype).max() <= 1, (got, want)


@pytest.mark.parametrize("adapter_name", ADAPTERS)
@pytest.mark.parametrize("api", LOSS_APIS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sce_class_weighted_mean_skips_ignored_rows(adapter_name, api, dtype):
    # Row 1 is ignored: neither its loss nor its class weight cw[2] = 8 is counted.
    # loss = (cw[1] log 4 + cw[3] (log(e^3 + e + e^0.5 + e^0.25) - 0.25)) / (cw[1] + cw[3])
    logits = [[0.0, 0.0, 0.0, 0.0], [5.0, 1.0, -2.0, 0.0], [3.0, 1.0, 0.5, 0.25]]
    cw = [1.0, 2.0, 8.0, 0.5]
    case = loss_case(dtype, logits, [1, -100, 3], class_weights=cw, ignore_index=-100,
                     reduction="weighted_mean")
    l2 = mp.log(mp.e ** 3 + mp.e + mp.e ** 0.5 + mp.e ** 0.25) - mpf(0.25)
    want = round_to((2 * mp.log(4) + mpf(0.5) * l2) / mpf(2.5), dtype)
    got = run(adapter_name, api, case)
    assert got.shape == () and ulps(got, want, dtype) <= 4, (got, want)


@pytest.mark.parametrize("adapter_name", ADAPTERS)
@pytest.mark.parametrize("api", LOSS_APIS)
def test_sce_nchw_input_is_per_pixel(adapter_name, api):
    rng = np.random.default_rng(7)
    logits = np.round(rng.normal(size=(2, 3, 2, 2)) * 8) / 8  # eighths: exact in float64
    labels = rng.integers(0, 3, size=(2, 2, 2))
    case = loss_case("float64", logits, labels, axis=1, reduction="none")
    want = np.empty(labels.shape)
    for n, h, w in np.ndindex(*labels.shape):
        want[n, h, w] = round_to(lse_minus(logits[n, :, h, w], labels[n, h, w]), "float64")
    got = run(adapter_name, api, case)
    assert got.shape == labels.shape
    assert ulps(got, want, "float64").max() <= 4, (got, want)


@pytest.mark.parametrize("adapter_name", ADAPTERS)
@pytest.mark.parametrize("api", LOSS_APIS)
def test_seed_pytorch_example_conforms(adapter_name, api):
    logits = [[0.2870, 0.2232, 0.6423, 0.6035], [0.4180, 0.9434, 0.6034, 0.5521],
              [0.0026, 0.4993, 0.7166, 0.2258]]
    case = loss_case("float32", logits, [0, 2, 1], reduction="mean")
    adapter = ADAPTERS[adapter_name]
    assert api in adapter.apis(case)
    verdict, _ = _judge(adapter, api, case, oracle.evaluate(case), {})
    assert verdict.verdict == "conforms", verdict.worst
    assert round(float(adapter.evaluate(case, api).value), 4) == 1.4238


@pytest.mark.parametrize("adapter_name", ADAPTERS)
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_log_softmax_and_softmax_follow_the_axis(adapter_name, axis):
    # No entry near 0: log(sum exp) has an absolute error of ~ulp(1), ruinous for a dominant class
    # whose log-probability is tiny; that accuracy is for the engine to judge, not this test.
    logits = np.array([[0.0, 0.5, 1.0], [0.25, 0.75, -0.25]])
    moved = np.moveaxis(logits, axis, -1)
    lse = [mp.log(mp.fsum(mp.exp(mpf(v)) for v in row)) for row in moved]
    want_log = np.moveaxis(np.array([[round_to(mpf(v) - s, "float64") for v in row]
                                     for row, s in zip(moved, lse)]), -1, axis)
    want_p = np.moveaxis(np.array([[round_to(mp.exp(mpf(v) - s), "float64") for v in row]
                                   for row, s in zip(moved, lse)]), -1, axis)
    for variant, api, want in (("log_softmax", LOG_SOFTMAX, want_log), ("softmax", SOFTMAX, want_p)):
        case = Case(variant, "float64", {"logits": logits}, {"axis": axis})
        got = run(adapter_name, api, case)
        assert ulps(got, want, "float64").max() <= 4, (variant, got, want)


def test_onnxruntime_bfloat16_not_applicable_and_listed():
    ort = ADAPTERS["onnxruntime"]
    case = loss_case("bfloat16", [[0.0, 1.0]], [1], reduction="sum")
    assert ort.apis(case) == []
    ok, version = ort.available()
    assert ok and "bfloat16" in version


@pytest.mark.parametrize("adapter_name", ADAPTERS)
def test_loss_apis_need_the_class_axis_at_1(adapter_name):
    adapter = ADAPTERS[adapter_name]
    nchw = np.zeros((2, 3, 2))
    assert adapter.apis(loss_case("float32", nchw, np.zeros((2, 2)), axis=1)) == list(LOSS_APIS)
    assert adapter.apis(loss_case("float32", nchw, np.zeros((2, 3)), axis=-1)) == []
    assert adapter.apis(loss_case("float32", [0.0, 1.0], 1)) == []  # no batch axis


@pytest.mark.parametrize("adapter_name", ADAPTERS)
def test_loss_apis_reject_options_onnx_lacks(adapter_name):
    adapter = ADAPTERS[adapter_name]
    logits, labels = np.zeros((2, 3)), [0, 2]
    assert adapter.apis(loss_case("float32", logits, labels, label_smoothing=0.25)) == []
    weighted = Case("softmax_ce_sparse", "float32",
                    {"logits": fmt("float32").array(logits), "labels": np.array(labels),
                     "weights": fmt("float32").array([1.0, 2.0])}, {})
    assert adapter.apis(weighted) == []


@pytest.mark.parametrize("adapter_name", ADAPTERS)
def test_mean_maps_only_when_onnx_divides_by_the_same(adapter_name):
    adapter = ADAPTERS[adapter_name]
    logits = np.zeros((3, 4))

    def applicable(labels, reduction, **options):
        return adapter.apis(loss_case("float32", logits, labels, reduction=reduction, **options)) != []

    assert applicable([0, 1, 2], "mean", ignore_index=-100)  # nothing ignored: n = 3 either way
    assert not applicable([0, -100, 2], "mean", ignore_index=-100)  # ONNX divides by 2, mean by 3
    assert applicable([0, -100, 2], "weighted_mean", ignore_index=-100)
    assert applicable([0, -100, 2], "sum_over_nonzero_weights", ignore_index=-100)
    assert not applicable([0, 1, 2], "mean", class_weights=[1.0, 2.0, 1.0, 1.0])
    assert applicable([0, 3, 2], "mean", class_weights=[1.0, 2.0, 1.0, 1.0])  # cw sum to 3


def test_import_loads_no_framework():
    code = ("import sys, adapters, adapters.onnx_adapter; "
            "sys.exit(int(any(m in sys.modules for m in ('onnx', 'onnxruntime'))))")
    assert subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[1]).returncode == 0
