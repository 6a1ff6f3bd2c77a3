"""scikit-learn: ``metrics.log_loss`` and the loss objects its estimators train with.

``sklearn.metrics.log_loss`` takes class labels, so it expresses ``bce_probs`` and
``categorical_ce_probs`` with hard labels only (0/1, one-hot rows; ``labels=range(C)`` passed
explicitly), at least two classes (documented: "only defined for two or more labels"), and the
reductions it has: ``normalize=True`` is ``np.average``, our ``mean`` (no weights) or
``weighted_mean`` (``sample_weight``); ``normalize=False`` is our ``sum``. It returns a Python
float whatever the input dtype; float16 is computed in float16, bfloat16 (unknown to sklearn)
is converted to float64 by ``check_array``.

Documented contract (``log_loss``): probabilities clipped to ``[eps, 1 - eps]``, ``eps`` the
machine epsilon of the dtype it computes in (since 1.3); before 1.5 rows were also renormalised,
after the clip. The binary form builds the column ``1 - p`` in that dtype and takes its log: not a
contract, so where ``fl(1 - p)`` has lost digits it shows as a divergence.

``sklearn._loss`` (private, so looked up defensively) holds the losses on raw predictions:
``HalfBinomialLoss`` is ``log(1 + exp(x)) - y x``, exactly our sigmoid BCE (the "half" deviance is
the negative log-likelihood itself, with no factor or offset); ``HalfMultinomialLoss`` is
``logsumexp(x) - x_y`` on rows of shape (n_samples, n_classes), labels as floats. Each has three
APIs: ``.loss`` (reduction none, ``sample_weight`` multiplies; gradient from ``.gradient``),
``.loss_gradient`` (the pair the estimators' solvers use, a different code path) and ``__call__``
(``np.average``: our mean or weighted_mean; no gradient). Their Cython kernels exist for float32
and float64 only (float16 raises "ambiguous argument types"): 16-bit cases are not applicable.
``HalfMultinomialLoss`` reads ``x[i, int(y_i)]`` without a bounds check, so a class id outside
``[0, C)`` is not applicable (it would read outside the array); so is C < 2, where ``.loss``
squeezes a single column away and then raises.
"""
from __future__ import annotations

import functools

import numpy as np

from cases import Case

from .base import Adapter, Contract, Output

LOG_LOSS = "sklearn.metrics.log_loss"
LOG_LOSS_URL = "https://scikit-learn.org/stable/modules/generated/sklearn.metrics.log_loss.html"
_LOSS_CLASSES = {"sigmoid_bce_logits": "HalfBinomialLoss", "softmax_ce_sparse": "HalfMultinomialLoss"}
_METHODS = ("loss", "loss_gradient", "__call__")
_NATIVE = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))  # what check_array keeps


@functools.lru_cache(maxsize=1)
def _load():
    """(sklearn, log_loss, sklearn._loss.loss or None), imported once."""
    import sklearn
    from sklearn.metrics import log_loss

    try:
        from sklearn._loss import loss as private_losses
    except ImportError:  # private module: moved or gone in this version
        private_losses = None
    return sklearn, log_loss, private_losses


@functools.lru_cache(maxsize=1)
def _version() -> tuple[int, int]:
    sklearn, _, _ = _load()
    major, minor = sklearn.__version__.split(".")[:2]
    return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)


def _loss_class(variant: str):
    _, _, private_losses = _load()
    name = _LOSS_CLASSES.get(variant)
    return getattr(private_losses, name, None) if private_losses and name else None


class SklearnAdapter(Adapter):
    name = "sklearn"
    description = "sklearn.metrics.log_loss and the sklearn._loss losses estimators train with"

    def available(self) -> tuple[bool, str]:
        try:
            sklearn, _, private_losses = _load()
        except ImportError as e:
            return False, f"not installed: {e}"
        note = "" if private_losses is not None else " (no sklearn._loss: log_loss only)"
        return True, f"scikit-learn {sklearn.__version__}{note}"

    def apis(self, case: Case) -> list[str]:
        if case.variant in ("bce_probs", "categorical_ce_probs"):
            return [LOG_LOSS] if _log_loss_expresses(case) else []
        cls = _loss_class(case.variant)
        if cls is None or not _raw_loss_expresses(case):
            return []
        reduction = case.options["reduction"]
        if reduction == "none":
            methods = ("loss", "loss_gradient")
        elif reduction == "weighted_mean" or (reduction == "mean" and "weights" not in case.inputs):
            methods = ("__call__",)
        else:
            return []
        return [f"{cls.__name__}.{m}" for m in methods]

    def evaluate(self, case: Case, api: str, grads: bool = True) -> Output:
        if api not in self.apis(case):
            raise ValueError(f"sklearn API {api!r} cannot express this {case.variant} case")
        if api == LOG_LOSS:
            return _log_loss(case)
        return _raw_loss(case, api.split(".", 1)[1], grads)

    def repro(self, case: Case, api: str) -> str | None:
        return repro_source(case, api) if api in self.apis(case) else None

    def contract(self, case: Case, api: str) -> Contract | None:
        if api != LOG_LOSS or _version() < (1, 3):  # before 1.3 eps was a fixed 1e-15: not declared
            return None
        eps = float(np.finfo(_log_loss_dtype(case)).eps)
        params = {"clip": [eps, 1.0 - eps]}  # 1 - eps is exact in the dtype that computes it
        if _version() < (1, 5) and case.variant == "categorical_ce_probs":
            params.update(renormalize=True, clip_first=True)  # removed in 1.5 (scikit-learn#28851)
        return Contract("log_loss clip", LOG_LOSS_URL,
                        f"probabilities clipped to [eps, 1 - eps], eps = {eps!r} (machine epsilon of "
                        f"{_log_loss_dtype(case).name})", params)


# -- metrics.log_loss ------------------------------------------------------------------------------

def _log_loss_dtype(case: Case) -> np.dtype:
    """The dtype log_loss computes in: check_array keeps float16/32/64 and converts others to float64."""
    dt = case.format.np_dtype
    return dt if dt in _NATIVE else np.dtype(np.float64)


def _log_loss_expresses(case: Case) -> bool:
    opts = case.options
    if opts["label_smoothing"] != 0.0 or "class_weights" in case.inputs:
        return False
    reduction = opts["reduction"]
    if not (reduction in ("sum", "weighted_mean") or (reduction == "mean" and "weights" not in case.inputs)):
        return False
    labels = case["labels"].astype(np.float64)
    if case.variant == "bce_probs":
        return labels.size > 0 and bool(np.all(np.isfinite(labels) & (labels == np.round(labels))))  # class ids
    rows = np.moveaxis(labels, case.class_axis, -1).reshape(-1, labels.shape[case.class_axis])
    one_hot = np.all((rows == 0) | (rows == 1), axis=1) & (rows.sum(axis=1) == 1)
    return rows.shape[1] >= 2 and rows.shape[0] > 0 and bool(one_hot.all())


def _log_loss(case: Case) -> Output:
    _, log_loss, _ = _load()
    probs, labels, w = case["probs"], case["labels"], case.get("weights")
    if case.variant == "bce_probs":
        y_proba, y_true, n_classes = probs.reshape(-1), labels.astype(np.float64).reshape(-1).astype(np.int64), 2
    else:
        n_classes = probs.shape[case.class_axis]
        y_proba = np.moveaxis(probs, case.class_axis, -1).reshape(-1, n_classes)
        y_true = np.argmax(np.moveaxis(labels, case.class_axis, -1).reshape(-1, n_classes), axis=1)
    value = log_loss(y_true, y_proba, normalize=case.options["reduction"] != "sum",
                     sample_weight=None if w is None else w.reshape(-1), labels=list(range(n_classes)))
    return Output(np.asarray(value))


# -- sklearn._loss ---------------------------------------------------------------------------------

def _raw_loss_expresses(case: Case) -> bool:
    if case.dtype not in ("float32", "float64"):
        return False
    if case.variant == "sigmoid_bce_logits":
        return case.options["label_smoothing"] == 0.0 and "pos_weight" not in case.inputs
    n_classes = case["logits"].shape[case.class_axis]
    labels, ignore = case["labels"], case.options["ignore_index"]
    return (case.options["label_smoothing"] == 0.0 and "class_weights" not in case.inputs and n_classes >= 2
            and bool(np.all((labels >= 0) & (labels < n_classes)))
            and (ignore is None or not np.any(labels == ignore)))


def _raw_loss(case: Case, method: str, grads: bool) -> Output:
    loss = _loss_class(case.variant)
    x = case["logits"]
    w = case.get("weights")
    sample_weight = None if w is None else np.ascontiguousarray(w.reshape(-1))
    if case.variant == "sigmoid_bce_logits":
        obj = loss()
        raw = np.ascontiguousarray(x.reshape(-1))
        y_true = np.ascontiguousarray(case["labels"].reshape(-1))

        def back(g):
            return g.reshape(x.shape)
    else:
        n_classes = x.shape[case.class_axis]
        obj = loss(n_classes=n_classes)
        moved = np.moveaxis(x, case.class_axis, -1)
        raw = np.ascontiguousarray(moved.reshape(-1, n_classes))
        y_true = np.ascontiguousarray(case["labels"].reshape(-1).astype(x.dtype))  # class ids as floats

        def back(g):
            return np.moveaxis(g.reshape(moved.shape), -1, case.class_axis)
    unit_shape = case["labels"].shape
    if method == "__call__":
        return Output(np.asarray(obj(y_true, raw, sample_weight=sample_weight)))
    if method == "loss":
        value = obj.loss(y_true, raw, sample_weight=sample_weight)
        g = obj.gradient(y_true, raw, sample_weight=sample_weight) if grads else None
    else:
        value, g = obj.loss_gradient(y_true, raw, sample_weight=sample_weight)
    out = {"logits": back(np.asarray(g))} if grads and g is not None else {}
    return Output(np.asarray(value).reshape(unit_shape), out)


# -- reproducers -----------------------------------------------------------------------------------

def repro_source(case: Case, api: str) -> str:
    """The snippet of a standalone reproducer (conformance/repro.py): the call ``evaluate`` makes."""
    if api == LOG_LOSS:
        return _log_loss_source(case)
    return _raw_loss_source(case, api.split(".", 1)[1])


def _log_loss_source(case: Case) -> str:
    lines = ["from sklearn.metrics import log_loss"]
    names = list(case.inputs)
    if case.dtype == "bfloat16":
        # The adapter passes bfloat16 arrays (sklearn converts the probabilities to float64, and
        # rejects bfloat16 sample weights): only ml_dtypes gives numpy a bfloat16 to pass the same.
        lines += ["import ml_dtypes  # numpy's bfloat16: the arrays the adapter passed are bfloat16", "",
                  "def bfloat16(a):  # float32 holding bfloat16 values -> the bfloat16 array, bit for bit",
                  "    return (a.view(np.uint32) >> 16).astype(np.uint16).view(ml_dtypes.bfloat16)", ""]
        lines += [f"{name} = bfloat16(inputs[{name!r}])" for name in names]
    else:
        lines += ["", f"{', '.join(names)} = {', '.join(f'inputs[{n!r}]' for n in names)}"]
    if case.variant == "bce_probs":
        lines += ["y_proba = probs.reshape(-1)",
                  "y_true = labels.astype(np.float64).reshape(-1).astype(np.int64)  # class ids"]
        n_classes = 2
    else:
        n_classes, axis = case["probs"].shape[case.class_axis], case.class_axis
        lines += [f"y_proba = np.moveaxis(probs, {axis}, -1).reshape(-1, {n_classes})",
                  f"y_true = np.argmax(np.moveaxis(labels, {axis}, -1).reshape(-1, {n_classes}), axis=1)"
                  "  # one-hot rows -> class ids"]
    weight = "weights.reshape(-1)" if "weights" in case.inputs else "None"
    normalize = case.options["reduction"] != "sum"
    lines += [f"value = np.asarray(log_loss(y_true, y_proba, normalize={normalize}, sample_weight={weight}, "
              f"labels={list(range(n_classes))!r}))",
              "grads = {}"]
    return "\n".join(lines)


def _raw_loss_source(case: Case, method: str) -> str:
    cls = _LOSS_CLASSES[case.variant]
    x = case["logits"]
    lines = [f"from sklearn._loss.loss import {cls}  # private: the loss sklearn's estimators train with", ""]
    if case.variant == "sigmoid_bce_logits":
        lines += [f"obj = {cls}()",
                  "raw = np.ascontiguousarray(inputs['logits'].reshape(-1))",
                  "y_true = np.ascontiguousarray(inputs['labels'].reshape(-1))"]
        back = f".reshape({tuple(x.shape)!r})"
        moved_shape = None
    else:
        n_classes, axis = x.shape[case.class_axis], case.class_axis
        moved_shape = tuple(np.moveaxis(x, axis, -1).shape)
        lines += [f"obj = {cls}(n_classes={n_classes})",
                  f"raw = np.ascontiguousarray(np.moveaxis(inputs['logits'], {axis}, -1)"
                  f".reshape(-1, {n_classes}))",
                  "y_true = np.ascontiguousarray(inputs['labels'].reshape(-1).astype("
                  f"np.{x.dtype.name}))  # class ids as floats"]
    weight = "None"
    if "weights" in case.inputs:
        lines.append("sample_weight = np.ascontiguousarray(inputs['weights'].reshape(-1))")
        weight = "sample_weight"
    unit_shape = tuple(case["labels"].shape)
    if method == "__call__":
        lines += [f"value = np.asarray(obj(y_true, raw, sample_weight={weight}))", "grads = {}"]
        return "\n".join(lines)
    if method == "loss":
        lines += [f"value = obj.loss(y_true, raw, sample_weight={weight})",
                  f"g = obj.gradient(y_true, raw, sample_weight={weight})"]
    else:
        lines.append(f"value, g = obj.loss_gradient(y_true, raw, sample_weight={weight})")
    lines.append(f"value = np.asarray(value).reshape({unit_shape!r})")
    if moved_shape is None:
        lines.append(f"grads = {{'logits': np.asarray(g){back}}}")
    else:
        lines.append(f"grads = {{'logits': np.moveaxis(np.asarray(g).reshape({moved_shape!r}), -1, "
                     f"{case.class_axis})}}")
    return "\n".join(lines)
