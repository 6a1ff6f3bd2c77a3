"""PyTorch through its public loss APIs, functional and module forms, at exactly the case dtype.

Each case runs in torch's default configuration (CPU, default threads) in float16, bfloat16,
float32 or float64 as the case says; what torch returns is handed back in its own dtype, and
gradients come from autograd on ``sum(output)``. torch is imported on first use, never at import.

How the variants map:

- ``sigmoid_bce_logits``: ``binary_cross_entropy_with_logits`` / ``BCEWithLogitsLoss`` with
  ``weight`` (our ``weights``) and ``pos_weight``; no label smoothing.
- ``bce_probs``: ``binary_cross_entropy`` / ``BCELoss`` with ``weight``; no label smoothing; the
  log terms are clamped at -100 (a documented contract).
- ``softmax_ce_sparse``: ``cross_entropy`` / ``CrossEntropyLoss`` and ``nll_loss(log_softmax)``
  (no label smoothing) with ``weight`` (our ``class_weights``) and ``ignore_index`` (torch's
  default, -100, when the case has none); no per-sample weights.
- ``softmax_ce_dense``: ``cross_entropy`` / ``CrossEntropyLoss`` with probability targets,
  ``weight`` and ``label_smoothing``; no per-sample weights.
- ``log_softmax``, ``softmax``: ``torch.nn.functional.log_softmax`` / ``softmax`` along the axis.

torch's losses take the class axis at dim 1 (dim 0 for an unbatched 1-D input); a case with its
classes on another axis is not applicable. Reductions: ``none`` and ``sum`` map to themselves; a
case's ``mean``, ``weighted_mean`` or ``sum_over_nonzero_weights`` maps to torch's ``mean`` when
torch's denominator is exactly the case's (torch divides by the number of units for the binary
losses and dense targets, and by the sum of the target classes' weights over targets not ignored
for integer targets), and is not applicable otherwise.
"""
from __future__ import annotations

import functools
import math
from fractions import Fraction

import numpy as np

from cases import Case

from .base import Adapter, Contract, Output

_BCE_CLAMP = Contract(
    "bce-log-clamp", "https://pytorch.org/docs/stable/generated/torch.nn.BCELoss.html",
    "BCELoss clamps its log function outputs to be greater than or equal to -100",
    {"log_floor": -100.0},
)

_APIS = {
    "sigmoid_bce_logits": ("binary_cross_entropy_with_logits", "BCEWithLogitsLoss"),
    "bce_probs": ("binary_cross_entropy", "BCELoss"),
    "softmax_ce_sparse": ("cross_entropy", "CrossEntropyLoss", "nll_loss(log_softmax)"),
    "softmax_ce_dense": ("cross_entropy", "CrossEntropyLoss"),
    "log_softmax": ("log_softmax",),
    "softmax": ("softmax",),
}

# Inputs torch can differentiate through, per variant (integer class ids cannot be).
_GRAD_INPUTS = {
    "sigmoid_bce_logits": ("logits", "labels"),
    "bce_probs": ("probs", "labels"),
    "softmax_ce_sparse": ("logits",),
    "softmax_ce_dense": ("logits", "labels"),
    "log_softmax": ("logits",),
    "softmax": (),
}


@functools.lru_cache(maxsize=1)
def _torch():
    import torch

    return torch


class TorchAdapter(Adapter):
    name = "torch"
    description = "PyTorch CPU: functional and module losses, log_softmax and softmax, autograd gradients"

    def available(self) -> tuple[bool, str]:
        try:
            torch = _torch()
        except ImportError as e:
            return False, f"torch is not installed ({e})"
        except Exception as e:  # a broken install (missing shared library, ABI mismatch)
            return False, f"torch does not import: {type(e).__name__}: {e}"
        return True, torch.__version__

    def apis(self, case: Case) -> list[str]:
        names = _APIS.get(case.variant, ())
        if not names:
            return []
        if case.variant in ("log_softmax", "softmax"):
            return list(names)
        if case.spec.has_axis and not _class_axis_is_torchs(case):
            return []
        if _torch_reduction(case) is None:
            return []
        e = case.options.get("label_smoothing", 0.0)
        if case.variant in ("sigmoid_bce_logits", "bce_probs"):
            return list(names) if e == 0.0 else []
        if "weights" in case.inputs:  # cross_entropy has class weights only
            return []
        if case.variant == "softmax_ce_sparse" and e != 0.0:  # nll_loss has no label smoothing
            return [n for n in names if n != "nll_loss(log_softmax)"]
        return list(names)

    def evaluate(self, case: Case, api: str, grads: bool = True) -> Output:
        if api not in self.apis(case):
            raise ValueError(f"torch API {api!r} cannot express this {case.variant} case")
        torch = _torch()
        t = {name: _to_tensor(torch, arr, case.dtype) for name, arr in case.inputs.items()}
        wrt = [n for n in case.spec.grad_wrt if n in _GRAD_INPUTS[case.variant]] if grads else []
        for name in wrt:
            t[name].requires_grad_(True)
        out = _CALLS[case.variant](torch, case, api, t)
        value = _to_numpy(torch, out.detach())
        if not wrt:
            return Output(value)
        g = torch.autograd.grad(out.sum(), [t[n] for n in wrt])
        return Output(value, {n: _to_numpy(torch, gi) for n, gi in zip(wrt, g)})

    def contract(self, case: Case, api: str) -> Contract | None:
        return _BCE_CLAMP if case.variant == "bce_probs" else None

    def repro(self, case: Case, api: str) -> str | None:
        return repro_source(case, api) if api in self.apis(case) else None


# -- mapping ---------------------------------------------------------------------------------------

def _class_axis_is_torchs(case: Case) -> bool:
    ndim = case.inputs.get("logits", case.inputs.get("probs")).ndim
    return case.class_axis == (0 if ndim == 1 else 1)


def _torch_reduction(case: Case) -> str | None:
    """torch's reduction computing the case's, or None when none does."""
    reduction = case.options["reduction"]
    if reduction in ("none", "sum"):
        return reduction
    case_den, torch_den = _denominators(case)
    return "mean" if case_den is not None and case_den == torch_den else None


def _exact_sum(values) -> Fraction | None:
    v = np.asarray(values, dtype=np.float64).ravel()
    return sum(map(Fraction, v.tolist()), Fraction(0)) if np.isfinite(v).all() else None


def _denominators(case: Case) -> tuple[Fraction | None, Fraction | None]:
    """(the case's mean denominator, torch's 'mean' denominator), exactly; None where unknown."""
    reduction = case.options["reduction"]
    if case.variant != "softmax_ce_sparse":
        main = case.inputs.get("logits", case.inputs.get("probs"))
        n = math.prod(s for i, s in enumerate(main.shape) if i != case.class_axis)  # units
        w = case.get("weights")
        if w is None or reduction == "mean":
            return Fraction(n), Fraction(n)
        if reduction == "weighted_mean":
            return _exact_sum(w), Fraction(n)
        return Fraction(int(np.count_nonzero(w))), Fraction(n)
    if reduction == "weighted_mean":  # torch's mean is this convention, by definition
        return Fraction(1), Fraction(1)
    labels, ignore = case["labels"], case.options["ignore_index"]
    n_classes = case["logits"].shape[case.class_axis]
    kept = labels != ignore if ignore is not None else np.ones(labels.shape, dtype=bool)
    ids = labels[kept]
    if not np.all((ids >= 0) & (ids < n_classes)):  # an invalid class id: torch's sum is unknown
        return None, None
    cw = case.get("class_weights")
    torch_den = Fraction(ids.size) if cw is None else _exact_sum(cw[ids].astype(np.float64))
    case_den = Fraction(labels.size) if reduction == "mean" else Fraction(ids.size)
    return case_den, torch_den


# -- tensors ---------------------------------------------------------------------------------------

def _to_tensor(torch, arr: np.ndarray, dtype: str):
    if arr.dtype.kind in "iu":
        return torch.from_numpy(np.array(arr, dtype=np.int64))
    if dtype == "bfloat16":  # numpy has no bfloat16 torch reads; widening to float32 is exact
        return torch.from_numpy(arr.astype(np.float32)).to(torch.bfloat16)
    return torch.from_numpy(arr.copy())


def _to_numpy(torch, t) -> np.ndarray:
    if t.dtype == torch.bfloat16:
        import ml_dtypes

        return t.float().numpy().astype(ml_dtypes.bfloat16)  # exact: every bfloat16 is a float32
    return t.numpy()


# -- calls -----------------------------------------------------------------------------------------

def _sigmoid_bce_logits(torch, case, api, t):
    kw = {"weight": t.get("weights"), "pos_weight": t.get("pos_weight"), "reduction": _torch_reduction(case)}
    if api == "BCEWithLogitsLoss":
        return torch.nn.BCEWithLogitsLoss(**kw)(t["logits"], t["labels"])
    return torch.nn.functional.binary_cross_entropy_with_logits(t["logits"], t["labels"], **kw)


def _bce_probs(torch, case, api, t):
    kw = {"weight": t.get("weights"), "reduction": _torch_reduction(case)}
    if api == "BCELoss":
        return torch.nn.BCELoss(**kw)(t["probs"], t["labels"])
    return torch.nn.functional.binary_cross_entropy(t["probs"], t["labels"], **kw)


def _cross_entropy(torch, case, api, t):
    F = torch.nn.functional
    kw = {"weight": t.get("class_weights"), "reduction": _torch_reduction(case)}
    if case.options.get("ignore_index") is not None:
        kw["ignore_index"] = case.options["ignore_index"]
    x, y = t["logits"], t["labels"]
    if api == "nll_loss(log_softmax)":
        return F.nll_loss(F.log_softmax(x, dim=case.class_axis), y, **kw)
    kw["label_smoothing"] = case.options["label_smoothing"]
    if api == "CrossEntropyLoss":
        return torch.nn.CrossEntropyLoss(**kw)(x, y)
    return F.cross_entropy(x, y, **kw)


def _log_softmax(torch, case, api, t):
    return torch.nn.functional.log_softmax(t["logits"], dim=case.class_axis)


def _softmax(torch, case, api, t):
    return torch.nn.functional.softmax(t["logits"], dim=case.class_axis)


_CALLS = {
    "sigmoid_bce_logits": _sigmoid_bce_logits,
    "bce_probs": _bce_probs,
    "softmax_ce_sparse": _cross_entropy,
    "softmax_ce_dense": _cross_entropy,
    "log_softmax": _log_softmax,
    "softmax": _softmax,
}


# -- reproducers -----------------------------------------------------------------------------------

def repro_source(case: Case, api: str) -> str:
    """The snippet of a standalone reproducer (conformance/repro.py): the call `evaluate` makes."""
    wrt = [n for n in case.spec.grad_wrt if n in _GRAD_INPUTS[case.variant]]
    lines = ["import torch", ""]
    for name, arr in case.inputs.items():
        if arr.dtype.kind in "iu":
            lines.append(f"{name} = torch.from_numpy(inputs[{name!r}])")
        elif case.dtype == "bfloat16":
            lines.append(f"{name} = torch.from_numpy(inputs[{name!r}]).to(torch.bfloat16)")
        else:
            lines.append(f"{name} = torch.from_numpy(inputs[{name!r}].copy())")
        if name in wrt:
            lines.append(f"{name}.requires_grad_(True)")
    get = lambda n: n if n in case.inputs else "None"  # noqa: E731
    F = "torch.nn.functional"
    v = case.variant
    red = _torch_reduction(case) if "reduction" in case.options else None
    if v in ("sigmoid_bce_logits", "bce_probs"):
        x = "logits" if v == "sigmoid_bce_logits" else "probs"
        kw = f"weight={get('weights')}" + (f", pos_weight={get('pos_weight')}" if x == "logits" else "")
        kw += f", reduction={red!r}"
        fn = {"binary_cross_entropy_with_logits": f"{F}.binary_cross_entropy_with_logits",
              "binary_cross_entropy": f"{F}.binary_cross_entropy"}.get(api)
        call = f"{fn}({x}, labels, {kw})" if fn else f"torch.nn.{api}({kw})({x}, labels)"
    elif v in ("softmax_ce_sparse", "softmax_ce_dense"):
        kw = f"weight={get('class_weights')}, reduction={red!r}"
        if case.options.get("ignore_index") is not None:
            kw += f", ignore_index={case.options['ignore_index']!r}"
        if api == "nll_loss(log_softmax)":
            call = f"{F}.nll_loss({F}.log_softmax(logits, dim={case.class_axis}), labels, {kw})"
        else:
            kw += f", label_smoothing={case.options['label_smoothing']!r}"
            call = (f"torch.nn.CrossEntropyLoss({kw})(logits, labels)" if api == "CrossEntropyLoss"
                    else f"{F}.cross_entropy(logits, labels, {kw})")
    else:
        call = f"{F}.{api}(logits, dim={case.class_axis})"
    lines.append(f"out = {call}")
    to_np = ".float().numpy()" if case.dtype == "bfloat16" else ".numpy()"
    lines.append(f"value = out.detach(){to_np}")
    if wrt:
        lines.append(f"g = torch.autograd.grad(out.sum(), [{', '.join(wrt)}])")
        lines.append("grads = {" + ", ".join(f"{n!r}: g[{k}]{to_np}" for k, n in enumerate(wrt)) + "}")
    else:
        lines.append("grads = {}")
    if case.dtype == "bfloat16":
        lines.append("dtypes = {" + ", ".join(f"{n!r}: 'bfloat16'" for n in ["value"] + wrt) + "}")
    return "\n".join(lines)
