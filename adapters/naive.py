"""Controls: textbook formulas with well-known numerical flaws, one API per flaw.

A run must catch every one of them. Each computes natively in the case dtype with numpy; numpy's
ufuncs do not compute in bfloat16, so bfloat16 cases are computed in float32 and the results cast
back to bfloat16. The flaws then show where they show in float32: the same overflows (the exponent
range is the same), but only float32's loss of digits, not bfloat16's earlier one.

- ``textbook``: sigmoid BCE as ``z -log(sigmoid(x)) + (1-z) -log(1 - sigmoid(x))``, sigmoid as
  ``1/(1+exp(-x))``: inf or NaN once sigmoid saturates to 0 or 1.
- ``seed_unstable``: ``x - x z + log(1 + exp(-x))``: ``exp(-x)`` overflows for x = -810.
- ``no_log1p``: ``max(x,0) - x z + log(1 + exp(-|x|))``: ``1 + exp(-|x|)`` rounds the small
  term away, e.g. 0 at x = 20, z = 1 in float32 where the truth is 2.06e-9.
- ``no_max_shift``: softmax CE as ``log(sum(exp(x))) - x_y`` without subtracting the max: inf or
  NaN for large logits.

Only reductions none, sum and mean, and no weights, pos_weight, class weights, ignore_index or
label smoothing. Gradients are the analytic derivatives of the same formulas, written as naively.
"""
from __future__ import annotations

import numpy as np

from cases import Case

from .base import Adapter, Output

_SIGMOID_APIS = ("textbook", "seed_unstable", "no_log1p")
_SOFTMAX_APIS = ("no_max_shift",)
_REDUCTIONS = ("none", "sum", "mean")
_OPTIONAL_INPUTS = ("weights", "pos_weight", "class_weights")


class NaiveAdapter(Adapter):
    name = "naive"
    description = "textbook formulas with known flaws (controls): overflow, no log1p, no max shift"
    control = True

    def available(self) -> tuple[bool, str]:
        return True, np.__version__

    def apis(self, case: Case) -> list[str]:
        opts = case.options
        if (opts.get("reduction") not in _REDUCTIONS or opts.get("label_smoothing", 0.0) != 0.0
                or opts.get("ignore_index") is not None or any(n in case.inputs for n in _OPTIONAL_INPUTS)):
            return []
        if case.variant == "sigmoid_bce_logits":
            return list(_SIGMOID_APIS)
        if case.variant in ("softmax_ce_sparse", "softmax_ce_dense"):
            return list(_SOFTMAX_APIS)
        return []

    def evaluate(self, case: Case, api: str, grads: bool = True) -> Output:
        if api not in self.apis(case):
            raise ValueError(f"naive API {api!r} cannot express this {case.variant} case")
        out_dtype = case.format.np_dtype
        work = np.float32 if case.dtype == "bfloat16" else out_dtype.type
        inputs = {k: v if v.dtype.kind in "iu" else v.astype(work) for k, v in case.inputs.items()}
        with np.errstate(all="ignore"):  # the flaw must show in the value, not as a warning
            if api in _SIGMOID_APIS:
                l, g = _SIGMOID[api](inputs["logits"], inputs["labels"])
            else:
                l, g = _no_max_shift(inputs["logits"], inputs["labels"], case.class_axis)
            reduction = case.options["reduction"]
            if reduction != "none":
                n = l.size
                l = l.sum() if reduction == "sum" else l.sum() / work(n)
                if reduction == "mean":
                    g = {k: v / work(n) for k, v in g.items()}
        value = np.asarray(l).astype(out_dtype)
        return Output(value, {k: v.astype(out_dtype) for k, v in g.items()} if grads else {})

    def repro(self, case: Case, api: str) -> str | None:
        return repro_source(case, api) if api in self.apis(case) else None


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _textbook(x, z):
    s = _sigmoid(x)
    l = z * -np.log(s) + (1 - z) * -np.log(1 - s)
    return l, {"logits": s - z, "labels": -np.log(s) + np.log(1 - s)}


def _seed_unstable(x, z):
    e = np.exp(-x)
    l = x - x * z + np.log(1 + e)
    return l, {"logits": 1 - z - e / (1 + e), "labels": -x}


def _no_log1p(x, z):
    e = np.exp(-np.abs(x))
    l = np.maximum(x, 0) - x * z + np.log(1 + e)
    return l, {"logits": (x > 0).astype(x.dtype) - z - np.sign(x) * e / (1 + e), "labels": -x}


_SIGMOID = {"textbook": _textbook, "seed_unstable": _seed_unstable, "no_log1p": _no_log1p}


def _no_max_shift(x, labels, axis):
    """log(sum exp(x)) - x_y along ``axis``; dense labels give sum_c y_c (LSE - x_c)."""
    ex = np.exp(x)
    total = ex.sum(axis=axis, keepdims=True)
    lse = np.log(total)
    softmax = ex / total
    if labels.dtype.kind in "iu":
        y = np.expand_dims(labels, axis)
        onehot = (np.arange(x.shape[axis]).reshape([-1 if i == axis else 1 for i in range(x.ndim)]) == y)
        onehot = onehot.astype(x.dtype)
        l = np.squeeze(lse, axis) - (x * onehot).sum(axis=axis)
        return l, {"logits": softmax - onehot}
    mass = labels.sum(axis=axis, keepdims=True)
    l = (labels * (lse - x)).sum(axis=axis)
    return l, {"logits": mass * softmax - labels, "labels": lse - x}


# -- reproducers -----------------------------------------------------------------------------------

# The formulas above, as the snippet writes them out (x: logits, z: labels, in the working dtype).
_SIGMOID_SOURCE = {
    "textbook": ["s = 1 / (1 + np.exp(-x))",
                 "l = z * -np.log(s) + (1 - z) * -np.log(1 - s)",
                 "g = {'logits': s - z, 'labels': -np.log(s) + np.log(1 - s)}"],
    "seed_unstable": ["e = np.exp(-x)",
                      "l = x - x * z + np.log(1 + e)",
                      "g = {'logits': 1 - z - e / (1 + e), 'labels': -x}"],
    "no_log1p": ["e = np.exp(-np.abs(x))",
                 "l = np.maximum(x, 0) - x * z + np.log(1 + e)",
                 "g = {'logits': (x > 0).astype(x.dtype) - z - np.sign(x) * e / (1 + e), 'labels': -x}"],
}

# numpy has no bfloat16: the snippet rounds the float32 results to the nearest bfloat16 (ties to
# even, as ml_dtypes' cast does) and keeps them in float32, the dtype named in ``dtypes``.
_BF16_ROUND = '''\
def round_to_bfloat16(a):  # float32 -> the nearest bfloat16 (ties to even), held in float32
    a = np.asarray(a, dtype=np.float32)
    b = a.view(np.uint32).astype(np.uint64)
    r = ((b + 0x7FFF + ((b >> 16) & 1)) & 0xFFFF0000).astype(np.uint32).view(np.float32)
    return np.where(np.isnan(a), a, r)
'''


def repro_source(case: Case, api: str) -> str:
    """The snippet of a standalone reproducer (conformance/repro.py): the formula ``evaluate``
    computes, written out in numpy."""
    bf16 = case.dtype == "bfloat16"
    work = "float32" if bf16 else case.dtype
    lines = (_BF16_ROUND.splitlines() + [""]) if bf16 else []
    lines.append(f"x = inputs['logits'].astype(np.{work})"
                 + ("  # numpy's ufuncs have no bfloat16: computed in float32" if bf16 else ""))
    if case["labels"].dtype.kind in "iu":
        lines.append("labels = inputs['labels']")
    else:
        lines.append(f"{'z' if api in _SIGMOID_APIS else 'labels'} = inputs['labels'].astype(np.{work})")
    lines.append("with np.errstate(all='ignore'):  # the flaw shows in the value, not as a warning")
    if api in _SIGMOID_APIS:
        body = list(_SIGMOID_SOURCE[api])
    else:
        axis = case.class_axis
        body = ["ex = np.exp(x)  # no max shift",
                f"total = ex.sum(axis={axis}, keepdims=True)",
                "lse = np.log(total)",
                "softmax = ex / total"]
        if case["labels"].dtype.kind in "iu":
            ndim, n = case["logits"].ndim, case["logits"].shape[axis]
            shape = [-1 if i == axis else 1 for i in range(ndim)]
            body += [f"y = np.expand_dims(labels, {axis})",
                     f"onehot = (np.arange({n}).reshape({shape!r}) == y).astype(x.dtype)",
                     f"l = np.squeeze(lse, {axis}) - (x * onehot).sum(axis={axis})",
                     "g = {'logits': softmax - onehot}"]
        else:
            body += [f"mass = labels.sum(axis={axis}, keepdims=True)",
                     f"l = (labels * (lse - x)).sum(axis={axis})",
                     "g = {'logits': mass * softmax - labels, 'labels': lse - x}"]
    reduction = case.options["reduction"]
    if reduction == "sum":
        body.append("l = l.sum()")
    elif reduction == "mean":
        body += [f"n = np.{work}(l.size)", "l = l.sum() / n", "g = {k: v / n for k, v in g.items()}"]
    lines += ["    " + line for line in body]
    if bf16:
        lines += ["value = round_to_bfloat16(l)",
                  "grads = {k: round_to_bfloat16(v) for k, v in g.items()}",
                  "dtypes = {'value': 'bfloat16', **{k: 'bfloat16' for k in grads}}"]
    else:
        lines += [f"value = np.asarray(l).astype(np.{work})",
                  f"grads = {{k: v.astype(np.{work}) for k, v in g.items()}}"]
    return "\n".join(lines)
