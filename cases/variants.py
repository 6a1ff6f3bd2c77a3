"""Framework-neutral variant ids: which inputs and options each one takes.

This is the single place that says what a well-formed case of a variant looks like; the case
loader validates against it, the oracle and the adapters read it. The meaning of each variant is
written in the oracle (``oracle/``), and summarised in ``docs/variants.md``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

REDUCTIONS = ("none", "sum", "mean", "weighted_mean", "sum_over_nonzero_weights")

# Input roles: "float" arrays are stored in the case dtype, "int" arrays as int64.
FLOAT, INT = "float", "int"


@dataclass(frozen=True)
class InputSpec:
    name: str
    kind: str  # FLOAT or INT
    required: bool = True
    doc: str = ""


@dataclass(frozen=True)
class OptionSpec:
    name: str
    type: type  # float, int, str or bool
    default: object
    doc: str = ""
    choices: tuple = ()


@dataclass(frozen=True)
class VariantSpec:
    id: str
    family: str
    summary: str
    inputs: tuple[InputSpec, ...]
    options: tuple[OptionSpec, ...]
    # Names of inputs the oracle differentiates with respect to.
    grad_wrt: tuple[str, ...] = ()
    # Whether the variant has a class axis (softmax family).
    has_axis: bool = False
    reductions: tuple[str, ...] = REDUCTIONS
    extra: dict = field(default_factory=dict)

    def input(self, name: str) -> InputSpec | None:
        return next((i for i in self.inputs if i.name == name), None)

    def option(self, name: str) -> OptionSpec | None:
        return next((o for o in self.options if o.name == name), None)

    def defaults(self) -> dict:
        return {o.name: o.default for o in self.options}


_REDUCTION = OptionSpec("reduction", str, "none", "how per-element losses are combined", REDUCTIONS)
_BINARY_LS = OptionSpec("label_smoothing", float, 0.0, "binary convention: z' = z(1-e) + e/2")
_CAT_LS = OptionSpec("label_smoothing", float, 0.0, "categorical convention: y' = y(1-e) + e/C")
_AXIS = OptionSpec("axis", int, -1, "the class axis")
_WEIGHTS = InputSpec("weights", FLOAT, False, "per-element (per-row) weights, >= 0, shape of the unreduced loss")
_CLASS_WEIGHTS = InputSpec("class_weights", FLOAT, False, "per-class weights, >= 0, shape (C,)")

_SAMPLED_INPUTS = (
    InputSpec("inputs", FLOAT, True, "activations, shape (N, D)"),
    InputSpec("embeddings", FLOAT, True, "class embeddings, shape (C, D)"),
    InputSpec("biases", FLOAT, True, "class biases, shape (C,)"),
    InputSpec("labels", INT, True, "true class ids, shape (N, T)"),
    InputSpec("sampled", INT, True, "sampled class ids, shape (S,)"),
    InputSpec("true_expected_count", FLOAT, True, "Q(true class), > 0, shape (N, T)"),
    InputSpec("sampled_expected_count", FLOAT, True, "Q(sampled class), > 0, shape (S,)"),
)

VARIANTS: dict[str, VariantSpec] = {
    v.id: v
    for v in [
        VariantSpec(
            "sigmoid_bce_logits", "sigmoid BCE on logits",
            "max(x,0) - x*z + log1p(exp(-|x|)), with pos_weight q: (1-z)x + (1+(q-1)z) softplus(-x)",
            (
                InputSpec("logits", FLOAT),
                InputSpec("labels", FLOAT, True, "targets in [0, 1], same shape as logits"),
                _WEIGHTS,
                InputSpec("pos_weight", FLOAT, False, ">= 0, broadcastable to logits"),
            ),
            (_REDUCTION, _BINARY_LS),
            grad_wrt=("logits", "labels"),
        ),
        VariantSpec(
            "bce_probs", "BCE on probabilities", "-(z log p + (1-z) log(1-p))",
            (
                InputSpec("probs", FLOAT, True, "probabilities in [0, 1]"),
                InputSpec("labels", FLOAT, True, "targets in [0, 1], same shape as probs"),
                _WEIGHTS,
            ),
            (_REDUCTION, _BINARY_LS),
            grad_wrt=("probs", "labels"),
        ),
        VariantSpec(
            "softmax_ce_dense", "softmax cross-entropy, dense labels",
            "-sum_c w_c y_c log_softmax(x)_c along the class axis; labels may be soft",
            (
                InputSpec("logits", FLOAT),
                InputSpec("labels", FLOAT, True, "class probabilities in [0, 1], same shape as logits"),
                _WEIGHTS,
                _CLASS_WEIGHTS,
            ),
            (_REDUCTION, _CAT_LS, _AXIS),
            grad_wrt=("logits", "labels"),
            has_axis=True,
        ),
        VariantSpec(
            "softmax_ce_sparse", "softmax cross-entropy, integer labels",
            "logsumexp(x) - x_y; class weights, ignore_index, label smoothing",
            (
                InputSpec("logits", FLOAT),
                InputSpec("labels", INT, True, "class indices, logits' shape without the class axis"),
                _WEIGHTS,
                _CLASS_WEIGHTS,
            ),
            (_REDUCTION, _CAT_LS, _AXIS,
             OptionSpec("ignore_index", int, None, "targets equal to this are ignored")),
            grad_wrt=("logits",),
            has_axis=True,
        ),
        VariantSpec(
            "categorical_ce_probs", "categorical CE on probabilities", "-sum_c w_c y_c log p_c (no renormalisation)",
            (
                InputSpec("probs", FLOAT, True, "probabilities in [0, 1]"),
                InputSpec("labels", FLOAT, True, "class probabilities in [0, 1], same shape as probs"),
                _WEIGHTS,
                _CLASS_WEIGHTS,
            ),
            (_REDUCTION, _CAT_LS, _AXIS),
            grad_wrt=("probs", "labels"),
            has_axis=True,
        ),
        VariantSpec(
            "log_softmax", "log_softmax", "x_c - logsumexp(x)",
            (InputSpec("logits", FLOAT),),
            (_AXIS,),
            grad_wrt=("logits",),
            has_axis=True,
            reductions=("none",),
        ),
        VariantSpec(
            "softmax", "softmax", "exp(x_c) / sum_j exp(x_j)",
            (InputSpec("logits", FLOAT),),
            (_AXIS,),
            has_axis=True,
            reductions=("none",),
        ),
        VariantSpec(
            "sampled_softmax", "sampled softmax",
            "softmax CE over [true, sampled] logits x.w_c + b_c - log Q(c), labels 1/T on true columns",
            _SAMPLED_INPUTS,
            (_REDUCTION,
             OptionSpec("remove_accidental_hits", bool, True, "sampled ids equal to a true id get logit -inf"),
             OptionSpec("subtract_log_q", bool, True, "subtract log of the expected counts")),
        ),
        VariantSpec(
            "nce", "noise-contrastive estimation",
            "sum over [true, sampled] columns of sigmoid BCE, labels 1/T on true columns, 0 on sampled",
            _SAMPLED_INPUTS,
            (_REDUCTION,
             OptionSpec("remove_accidental_hits", bool, False, "sampled ids equal to a true id get logit -inf"),
             OptionSpec("subtract_log_q", bool, True, "subtract log of the expected counts")),
        ),
    ]
}


def variant(name: str) -> VariantSpec:
    try:
        return VARIANTS[name]
    except KeyError:
        raise ValueError(f"unknown variant {name!r}; expected one of {', '.join(VARIANTS)}") from None
