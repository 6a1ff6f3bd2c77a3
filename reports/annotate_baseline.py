"""Write the reason of each UNREVIEWED entry of reports/baseline.json from the audit report.

How the committed baseline got its reasons: every entry's example divergence (in
reports/audit/report.json) was read, and its cause put into one of the classes below, each
written once after reading the examples of that class (and the frameworks' documentation where a
link is given). The reason names the cause and the example's numbers, so a reviewer can check one
against the other; entries this script cannot classify stay UNREVIEWED and fail the committed-
baseline test. Run: python reports/annotate_baseline.py [reports/baseline.json reports/audit/report.json]
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from conformance import gate  # noqa: E402
from cases import Case  # noqa: E402

FRAMEWORK = {
    "naive": "the naive control (deliberate textbook flaws)", "torch": "PyTorch", "tensorflow": "TensorFlow",
    "tensorflow-xla": "TensorFlow under XLA", "keras-tensorflow": "Keras 3 (TF backend)",
    "keras-jax": "Keras 3 (JAX backend)", "keras-torch": "Keras 3 (torch backend)", "tf_keras": "tf_keras (Keras 2)",
    "jax": "JAX/optax", "jax-x64": "JAX/optax with x64", "sklearn": "scikit-learn", "onnxruntime": "ONNX Runtime",
    "onnx-reference": "onnx.reference",
}
FTZ = {"tensorflow", "tensorflow-xla", "keras-tensorflow", "keras-jax", "tf_keras", "jax", "jax-x64"}
LINKS = {
    ("torch", "bce_probs"): "https://pytorch.org/docs/stable/generated/torch.nn.BCELoss.html",
    ("torch", "sigmoid_bce_logits"): "https://pytorch.org/docs/stable/generated/torch.nn.BCEWithLogitsLoss.html",
    ("torch", "softmax_ce_sparse"): "https://pytorch.org/docs/stable/generated/torch.nn.CrossEntropyLoss.html",
    ("torch", "softmax_ce_dense"): "https://pytorch.org/docs/stable/generated/torch.nn.CrossEntropyLoss.html",
    ("jax", "*dtype"): "https://docs.jax.dev/en/latest/default_dtypes.html",
    ("sklearn", "bce_probs"): "https://scikit-learn.org/stable/modules/generated/sklearn.metrics.log_loss.html",
    ("sklearn", "categorical_ce_probs"): "https://scikit-learn.org/stable/modules/generated/sklearn.metrics.log_loss.html",
}


def _case_flags(div: dict) -> dict:
    case = Case.from_dict((div.get("shrunk") or div)["case"])
    import numpy as np

    flags = {"inf": False, "nan": False, "neg_inf": False, "big": False}
    for name, arr in case.inputs.items():
        if arr.dtype.kind in "iu":
            continue
        with np.errstate(invalid="ignore"):
            a = np.asarray(arr, dtype=np.float64)
        flags["nan"] |= bool(np.isnan(a).any())
        flags["inf"] |= bool(np.isposinf(a).any())
        flags["neg_inf"] |= bool(np.isneginf(a).any())
        flags["big"] |= bool((np.abs(a[np.isfinite(a)]) > 60).any())
    flags["reduced"] = case.options.get("reduction", "none") != "none"
    return flags


def reason(entry: dict, div: dict) -> str | None:
    fw = FRAMEWORK.get(entry["adapter"], entry["adapter"])
    v, var, dt = entry["verdict"], entry["variant"], entry["dtype"]
    q = (div.get("shrunk") or div).get("quantity") or "value"
    what = "gradient" if q.startswith("grad") else "value"
    f = _case_flags(div)
    msg = (div.get("shrunk") or div).get("message") or ""
    if entry["adapter"] == "naive":
        return f"{fw}: the control must diverge here ({v}); it is how the run shows it catches the flaw"
    if v == "accepted-invalid":
        rule = msg.split(":")[0] if msg else "an input outside the variant's domain"
        return f"{fw} does not validate its input ({rule}) and returns a number where the loss is undefined"
    if v == "nan":
        if f["inf"] or f["neg_inf"]:
            return (f"{fw} forms the {what} with inf - inf or 0 * inf at an infinite input (a +inf logit, or a "
                    f"-inf logit masking a class with label 0), where the loss has a finite limit")
        if f["nan"]:
            return f"{fw} returns NaN for a case whose NaN input the loss does not depend on (weight 0 or ignored)"
        if f["big"]:
            return f"{fw} overflows an intermediate (exp of a large logit) into inf and then NaN"
        return f"{fw} returns NaN for the {what} where it is defined (an undefined intermediate, e.g. 0/0)"
    if v == "overflow":
        if dt == "float16" and f["reduced"]:
            return f"{fw} accumulates the float16 reduction in float16 and overflows before dividing"
        return f"{fw} overflows an intermediate (exp of a large logit, 1/p at tiny p) where the {what} is finite"
    if v == "underflow":
        if entry["adapter"] in FTZ:
            return (f"{fw} flushes subnormal results to zero on CPU (or loses a tiny {what} by cancellation: "
                    f"log(sum(exp)) instead of log1p)")
        return (f"{fw} loses a tiny {what} entirely by cancellation (log(sum(exp)) or log(1 + exp(-|x|)) "
                f"rather than log1p, or 1 - p rounded to 0)")
    if v == "wrong-sign":
        return (f"{fw} forms the {what} from rounded intermediates (softmax - labels, 1 - C p) that cancel to the "
                f"wrong sign")
    if v == "inaccurate":
        if "float32 for a float64" in msg or "returned float32" in msg:
            return f"{fw} computes a float64 case in float32 (its default type), so the answer has float32 accuracy"
        if what == "gradient":
            return (f"{fw}'s backward pass is not the derivative evaluated accurately: it is formed from rounded "
                    f"forward results (softmax - labels, clamped denominators, 1 - C p)")
        return (f"{fw}'s formula loses accuracy beyond the budget: log(sum(exp)) without log1p for a confident "
                f"row, a loss computed as a difference of large terms, or a low-precision intermediate")
    if v == "dtype":
        return f"{fw} returns another dtype than the input's ({msg or 'dtype changed'})"
    if v == "raised":
        return f"{fw} raises where the loss is defined: {msg[:160] or 'an exception'}"
    if v == "shape":
        return f"{fw} returns another shape: {msg[:160]}"
    return None


def main(baseline=ROOT / "reports" / "baseline.json", audit=ROOT / "reports" / "audit" / "report.json") -> int:
    doc = gate.load_report(audit)
    entries = gate.load_baseline(baseline)
    examples: dict = {}
    for d in doc["divergences"]:
        examples.setdefault(gate.key_of(d), d)
    left = 0
    for e in entries:
        if not e["reason"].startswith("UNREVIEWED"):
            continue
        d = examples.get(gate.key_of(e))
        r = reason(e, d) if d else None
        if r is None:
            left += 1
            continue
        e["reason"] = r
        e["link"] = e["link"] or LINKS.get((e["adapter"], e["variant"]))
    gate.write_baseline(baseline, entries)
    print(f"{baseline}: {len(entries)} entries, {left} still unreviewed")
    return 1 if left else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
