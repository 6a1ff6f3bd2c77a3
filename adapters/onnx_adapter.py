"""ONNX's loss operators in a graph built with ``onnx.helper``, run by ONNX Runtime and by onnx's
reference evaluator: one graph builder, two adapters.

The graph (opset 22, the IR version that opset needs, every dimension symbolic) is one of:

- ``SoftmaxCrossEntropyLoss(scores, labels[, weights])`` for ``softmax_ce_sparse``; ``weights``
  is our ``class_weights``, ``ignore_index`` and ``reduction`` are attributes.
- ``LogSoftmax(axis=1) -> NegativeLogLikelihoodLoss``: the same case, in the two ops a model
  exported from ``nll_loss(log_softmax(x))`` contains.
- ``LogSoftmax(axis)`` and ``Softmax(axis)`` for ``log_softmax`` and ``softmax``, any axis
  (opset 13 semantics: along that one axis).

The loss ops take scores N x C or N x C x d1..dk: a case with fewer than two dimensions or its
classes on another axis than 1 is not applicable, as is one with per-unit ``weights`` or label
smoothing (ONNX has neither). Reductions: ``none`` and ``sum`` map to themselves. ONNX's ``mean``
is ``sum(L) / sum(W)`` with ``W_i = weights[labels_i]``, 0 where the label is ignored; without
``weights`` the spec's text says ``ReduceMean(L)``, but its function body, ORT and the reference
all divide by the number of labels not ignored (W_i = 1). So a case's ``mean``, ``weighted_mean`` or
``sum_over_nonzero_weights`` maps to ONNX's ``mean`` exactly when that denominator is the case's.

ONNX Runtime runs on the CPUExecutionProvider in its default configuration but for two settings
that do not change a value: one intra-op thread (each cached session would otherwise hold its own
pool of threads; on the generated cases the answers are bit for bit the default's), and no error log
(the error comes back as the exception). A dtype ORT has no kernel for cannot be called by a user
either, so it is not applicable; the version string lists those pairs. No gradients: ORT's
inference sessions have none, and the reference evaluator neither.
"""
from __future__ import annotations

import functools
from fractions import Fraction
from typing import NamedTuple

import numpy as np

from cases import Case

from .base import Adapter, Output

OPSET = 22  # NegativeLogLikelihoodLoss-22 is the first to allow bfloat16

SCE = "SoftmaxCrossEntropyLoss"
NLL = "LogSoftmax+NegativeLogLikelihoodLoss"
LOG_SOFTMAX = "LogSoftmax"
SOFTMAX = "Softmax"
APIS = (SCE, NLL, LOG_SOFTMAX, SOFTMAX)
_LOSS_APIS = (SCE, NLL)
_ELEMENT_TYPES = {"float16": "FLOAT16", "bfloat16": "BFLOAT16", "float32": "FLOAT", "float64": "DOUBLE"}


class Graph(NamedTuple):
    """Everything a graph depends on; equal keys build identical models."""

    api: str
    dtype: str
    rank: int
    axis: int  # the class axis; 1 for the loss ops
    reduction: str = "none"  # ONNX's: none, sum or mean
    ignore_index: int | None = None
    class_weights: bool = False


@functools.lru_cache(maxsize=1)
def _onnx():
    import onnx

    return onnx


@functools.lru_cache(maxsize=1)
def _ort():
    import onnxruntime

    return onnxruntime


@functools.lru_cache(maxsize=256)
def build_model(g: Graph):
    """The ONNX model computing ``g``, checked by onnx's checker."""
    onnx = _onnx()
    helper, T = onnx.helper, onnx.TensorProto
    elem = getattr(T, _ELEMENT_TYPES[g.dtype])
    dims = [f"d{i}" for i in range(g.rank)]
    inputs = [helper.make_tensor_value_info("logits", elem, dims)]
    if g.api in (LOG_SOFTMAX, SOFTMAX):
        nodes = [helper.make_node(g.api, ["logits"], ["out"], axis=g.axis)]
        out_dims = dims
    else:
        inputs.append(helper.make_tensor_value_info("labels", T.INT64, dims[:1] + dims[2:]))
        loss_inputs = ["labels"]
        if g.class_weights:
            inputs.append(helper.make_tensor_value_info("class_weights", elem, dims[1:2]))
            loss_inputs.append("class_weights")
        attrs = {"reduction": g.reduction}
        if g.ignore_index is not None:
            attrs["ignore_index"] = g.ignore_index
        if g.api == SCE:
            nodes = [helper.make_node(SCE, ["logits"] + loss_inputs, ["out"], **attrs)]
        else:
            nodes = [helper.make_node(LOG_SOFTMAX, ["logits"], ["log_probs"], axis=1),
                     helper.make_node("NegativeLogLikelihoodLoss", ["log_probs"] + loss_inputs, ["out"], **attrs)]
        out_dims = dims[:1] + dims[2:] if g.reduction == "none" else []
    graph = helper.make_graph(nodes, "xent", inputs, [helper.make_tensor_value_info("out", elem, out_dims)])
    opsets = [helper.make_opsetid("", OPSET)]
    model = helper.make_model(graph, opset_imports=opsets, ir_version=helper.find_min_ir_version_for(opsets),
                              producer_name="xent")
    onnx.checker.check_model(model, full_check=True)
    return model


@functools.lru_cache(maxsize=256)
def _ort_session(g: Graph):
    ort = _ort()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # see the module docstring: no effect on values here
    options.log_severity_level = 4  # the error is the exception; the log line would repeat it
    return ort.InferenceSession(build_model(g).SerializeToString(), options, providers=["CPUExecutionProvider"])


@functools.lru_cache(maxsize=256)
def _reference_evaluator(g: Graph):
    from onnx.reference import ReferenceEvaluator

    return ReferenceEvaluator(build_model(g))


@functools.lru_cache(maxsize=None)
def _ort_missing_kernel(api: str, dtype: str) -> str | None:
    """ORT's NOT_IMPLEMENTED message for a minimal graph of ``api`` in ``dtype``, or None if it runs."""
    from onnxruntime.capi.onnxruntime_pybind11_state import NotImplemented as OrtNotImplemented

    try:
        _ort_session(Graph(api, dtype, 2, 1))
    except OrtNotImplemented as e:
        return str(e)
    return None


# -- mapping ---------------------------------------------------------------------------------------

def graph_of(case: Case, api: str) -> Graph | None:
    """The graph through which ``api`` computes ``case``, or None when it cannot."""
    if api in (LOG_SOFTMAX, SOFTMAX):
        wanted = LOG_SOFTMAX if case.variant == "log_softmax" else SOFTMAX if case.variant == "softmax" else None
        return Graph(api, case.dtype, case["logits"].ndim, case.class_axis) if api == wanted else None
    if api not in _LOSS_APIS or case.variant != "softmax_ce_sparse":
        return None
    if case["logits"].ndim < 2 or case.class_axis != 1:
        return None
    if "weights" in case.inputs or case.options["label_smoothing"] != 0.0:
        return None
    reduction = _onnx_reduction(case)
    if reduction is None:
        return None
    return Graph(api, case.dtype, case["logits"].ndim, 1, reduction, case.options["ignore_index"],
                 "class_weights" in case.inputs)


def _onnx_reduction(case: Case) -> str | None:
    """ONNX's reduction computing the case's, or None when none does."""
    reduction = case.options["reduction"]
    if reduction in ("none", "sum"):
        return reduction
    if reduction == "weighted_mean":  # ONNX's mean is this convention, by definition
        return "mean"
    labels, ignore = case["labels"], case.options["ignore_index"]
    kept = labels != ignore if ignore is not None else np.ones(labels.shape, dtype=bool)
    ids = labels[kept]
    if not np.all((ids >= 0) & (ids < case["logits"].shape[1])):  # invalid ids: ONNX's sum is unknown
        return None
    cw = case.get("class_weights")
    if cw is None:
        onnx_den = Fraction(ids.size)
    else:
        w = cw[ids].astype(np.float64)
        if not np.isfinite(w).all():
            return None
        onnx_den = sum(map(Fraction, w.tolist()), Fraction(0))
    case_den = Fraction(labels.size) if reduction == "mean" else Fraction(ids.size)
    return "mean" if onnx_den == case_den else None


def _feeds(case: Case, g: Graph) -> dict[str, np.ndarray]:
    names = ["logits"] if g.api in (LOG_SOFTMAX, SOFTMAX) else ["logits", "labels"]
    if g.class_weights:
        names.append("class_weights")
    return {name: case[name] for name in names}


# -- adapters --------------------------------------------------------------------------------------

class _OnnxAdapter(Adapter):
    def apis(self, case: Case) -> list[str]:
        return [api for api in APIS if graph_of(case, api) is not None and self._has_kernel(api, case.dtype)]

    def evaluate(self, case: Case, api: str, grads: bool = True) -> Output:
        g = graph_of(case, api)
        if g is None:
            raise ValueError(f"{self.name} API {api!r} cannot express this {case.variant} case")
        return Output(np.asarray(self._run(g, _feeds(case, g))))

    def repro(self, case: Case, api: str) -> str | None:
        return repro_source(case, graph_of(case, api), self.name) if api in self.apis(case) else None

    def _has_kernel(self, api: str, dtype: str) -> bool:
        return True

    def _run(self, g: Graph, feeds: dict) -> np.ndarray:
        raise NotImplementedError


class OnnxRuntimeAdapter(_OnnxAdapter):
    name = "onnxruntime"
    description = ("ONNX Runtime CPU: SoftmaxCrossEntropyLoss, LogSoftmax+NegativeLogLikelihoodLoss, "
                   "LogSoftmax, Softmax from an onnx.helper graph; no gradients")

    def available(self) -> tuple[bool, str]:
        try:
            ort, onnx = _ort(), _onnx()
        except ImportError as e:
            return False, f"onnxruntime or onnx is not installed ({e})"
        missing = {}
        for dtype in _ELEMENT_TYPES:
            apis = [api for api in APIS if not self._has_kernel(api, dtype)]
            if apis:
                missing[dtype] = apis
        version = f"{ort.__version__} (onnx {onnx.__version__}, opset {OPSET}, CPUExecutionProvider)"
        if missing:
            version += "; no CPU kernel, not applicable: " + "; ".join(
                f"{dtype} ({', '.join(apis)})" for dtype, apis in missing.items())
        return True, version

    def _has_kernel(self, api: str, dtype: str) -> bool:
        return _ort_missing_kernel(api, dtype) is None

    def _run(self, g: Graph, feeds: dict) -> np.ndarray:
        return _ort_session(g).run(None, feeds)[0]


class OnnxReferenceAdapter(_OnnxAdapter):
    name = "onnx-reference"
    description = ("onnx.reference.ReferenceEvaluator (numpy) on the onnxruntime adapter's graphs: "
                   "the ONNX spec's reference implementation; no gradients")

    def available(self) -> tuple[bool, str]:
        try:
            onnx = _onnx()
        except ImportError as e:
            return False, f"onnx is not installed ({e})"
        return True, f"{onnx.__version__} (opset {OPSET})"

    def _run(self, g: Graph, feeds: dict) -> np.ndarray:
        with np.errstate(all="ignore"):  # numpy's warnings only; every value comes back as computed
            return _reference_evaluator(g).run(None, feeds)[0]


# -- reproducers -----------------------------------------------------------------------------------

def repro_source(case: Case, g: Graph, runtime: str) -> str:
    """The snippet of a standalone reproducer (conformance/repro.py): ``build_model(g)`` written out
    with ``onnx.helper`` (the same model, byte for byte), run as ``runtime`` ("onnxruntime" or
    "onnx-reference") runs it."""
    elem = f"TensorProto.{_ELEMENT_TYPES[g.dtype]}"
    dims = [f"d{i}" for i in range(g.rank)]
    runner = "import onnxruntime" if runtime == "onnxruntime" else "from onnx.reference import ReferenceEvaluator"
    lines = ["import onnx", "from onnx import TensorProto, helper", runner, ""]
    lines.append(f"inputs_info = [helper.make_tensor_value_info('logits', {elem}, {dims!r})]")
    if g.api in (LOG_SOFTMAX, SOFTMAX):
        lines.append(f"nodes = [helper.make_node({g.api!r}, ['logits'], ['out'], axis={g.axis!r})]")
        out_dims = dims
    else:
        lines.append(f"inputs_info.append(helper.make_tensor_value_info('labels', TensorProto.INT64, "
                     f"{dims[:1] + dims[2:]!r}))")
        loss_inputs = ["labels"]
        if g.class_weights:
            lines.append("inputs_info.append(helper.make_tensor_value_info("
                         f"'class_weights', {elem}, {dims[1:2]!r}))")
            loss_inputs.append("class_weights")
        attrs = f"reduction={g.reduction!r}"
        if g.ignore_index is not None:
            attrs += f", ignore_index={g.ignore_index!r}"
        if g.api == SCE:
            lines.append(f"nodes = [helper.make_node({SCE!r}, {['logits'] + loss_inputs!r}, ['out'], {attrs})]")
        else:
            lines += [f"nodes = [helper.make_node({LOG_SOFTMAX!r}, ['logits'], ['log_probs'], axis=1),",
                      f"         helper.make_node('NegativeLogLikelihoodLoss', {['log_probs'] + loss_inputs!r}, "
                      f"['out'], {attrs})]"]
        out_dims = dims[:1] + dims[2:] if g.reduction == "none" else []
    lines += [f"graph = helper.make_graph(nodes, 'xent', inputs_info, "
              f"[helper.make_tensor_value_info('out', {elem}, {out_dims!r})])",
              f"opsets = [helper.make_opsetid('', {OPSET})]",
              "model = helper.make_model(graph, opset_imports=opsets, "
              "ir_version=helper.find_min_ir_version_for(opsets), producer_name='xent')",
              "onnx.checker.check_model(model, full_check=True)", ""]
    names = ["logits"] if g.api in (LOG_SOFTMAX, SOFTMAX) else ["logits", "labels"]
    if g.class_weights:
        names.append("class_weights")
    if g.dtype == "bfloat16":  # float32 holders -> the bfloat16 arrays the adapter feeds, bit for bit
        lines += ["def bfloat16(a):  # float32 holding bfloat16 values -> onnx's numpy bfloat16 array",
                  "    bf16 = helper.tensor_dtype_to_np_dtype(TensorProto.BFLOAT16)",
                  "    return (a.view(np.uint32) >> 16).astype(np.uint16).view(bf16)", ""]
    feed = {n: f"inputs[{n!r}]" if n == "labels" or g.dtype != "bfloat16" else f"bfloat16(inputs[{n!r}])"
            for n in names}
    lines.append("feeds = {" + ", ".join(f"{n!r}: {v}" for n, v in feed.items()) + "}")
    if runtime == "onnxruntime":
        lines += ["options = onnxruntime.SessionOptions()",
                  "options.intra_op_num_threads = 1  # as the adapter runs it; no effect on the values",
                  "options.log_severity_level = 4",
                  "session = onnxruntime.InferenceSession(model.SerializeToString(), options, "
                  "providers=['CPUExecutionProvider'])",
                  "value = np.asarray(session.run(None, feeds)[0])"]
    else:
        lines += ["with np.errstate(all='ignore'):  # numpy's warnings only",
                  "    value = np.asarray(ReferenceEvaluator(model).run(None, feeds)[0])"]
    lines.append("grads = {}  # no gradients: inference only")
    return "\n".join(lines)
