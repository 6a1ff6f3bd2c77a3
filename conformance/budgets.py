"""Error budgets: how many ULPs of the output dtype an implementation may be off, and why.

The allowance for one output element is a sum of terms, each a number with a reason:

    allowance = base(group, dtype, quantity, reduced?)            # the table BASES
              + reduction term (sum, mean, weighted_mean, ...)     # REDUCTION_TERMS, reduced outputs
              + ceil(log2 C) for rows of C classes                 # CLASS_TERM, softmax family
              + 2 u sens / ulp(expected)                           # CONDITIONING_TERM

``u = 2**-precision`` is the unit roundoff of the case dtype and ``sens`` the oracle's
sensitivity of the element to its inputs (docs/variants.md, "Sensitivity"). Nothing else widens
a budget: there is no relative tolerance anywhere in the engine.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from cases import Case, fmt
from .ulp import ulp_of

GROUPS: dict[str, tuple[str, ...]] = {
    "elementwise": ("sigmoid_bce_logits", "bce_probs"),
    "softmax": ("softmax_ce_dense", "softmax_ce_sparse", "categorical_ce_probs", "log_softmax", "softmax"),
    "sampled": ("sampled_softmax", "nce"),
}

HALF = ("float16", "bfloat16")
WIDE = ("float32", "float64")


@dataclass(frozen=True)
class Base:
    group: str  # a key of GROUPS, or a variant id (the more specific entry wins)
    dtypes: tuple[str, ...]
    quantity: str  # "value" or "grad"
    none: int  # ulps for an unreduced output element
    reduced: int  # ulps for a reduced output, before the reduction term
    reason: str


_IN_FLOAT32 = ("Frameworks evaluate half-precision losses in float32 (PyTorch's opmath, XLA and Eigen "
               "upcast per operation): one final rounding is 0.5 ulp, rounding after each of the few "
               "operations stays within 2 because the terms are non-negative and nothing cancels "
               "beyond what the conditioning term covers.")
_IN_DTYPE = ("Evaluated in the dtype itself (no wider type is customary for float32, none exists for "
             "float64): exp, log1p and log within 1 ulp each (glibc, SLEEF u10), plus the rounding of "
             "the product and of the sum of two non-negative terms: at most 3.5 ulps, so 4.")
_REDUCED = (" Reduced: each unit's error of b ulps is at most 2b ulps of a sum of non-negative units "
            "(the sum's ulp can be half its units' relative spacing), so the base doubles.")
_GRAD_HALF = ("Gradients chain more operations than the loss (sigmoid or softmax = exp, add, divide; then "
              "a multiply by the weight and the scale and a subtraction of the label), in float32 and "
              "rounded per operation: 4 ulps. Gradients are not sums over units, so no doubling.")
_GRAD_WIDE = ("The same five or so operations evaluated in the dtype itself, each within about 1 ulp: "
              "8 ulps. Gradients are not sums over units, so no doubling.")
_SAMPLED = ("The logits are dot products over D plus a bias minus log Q: the dot product's summation "
            "error is of the same size as the input perturbation the conditioning term allows, and "
            "log Q adds one libm call; twice the softmax base.")

BASES: tuple[Base, ...] = (
    Base("elementwise", HALF, "value", 2, 4, _IN_FLOAT32 + _REDUCED),
    Base("elementwise", WIDE, "value", 4, 8, _IN_DTYPE + _REDUCED),
    Base("softmax", HALF, "value", 2, 4, _IN_FLOAT32 + " The sum over classes is the class term." + _REDUCED),
    Base("softmax", WIDE, "value", 4, 8, _IN_DTYPE + " The sum over classes is the class term." + _REDUCED),
    Base("sampled", HALF, "value", 4, 8, _SAMPLED + _REDUCED),
    Base("sampled", WIDE, "value", 8, 16, _SAMPLED + _REDUCED),
    Base("elementwise", HALF, "grad", 4, 4, _GRAD_HALF),
    Base("elementwise", WIDE, "grad", 8, 8, _GRAD_WIDE),
    Base("softmax", HALF, "grad", 4, 4, _GRAD_HALF),
    Base("softmax", WIDE, "grad", 8, 8, _GRAD_WIDE),
    Base("sampled", HALF, "grad", 8, 8, _SAMPLED),
    Base("sampled", WIDE, "grad", 16, 16, _SAMPLED),
)


@dataclass(frozen=True)
class ReductionTerm:
    reduction: str
    value: tuple[int, int]  # (k, c): k * ceil(log2 n) + c ulps on the reduced loss
    grad: tuple[int, int]  # the same on each gradient element
    reason: str


_PAIRWISE = ("a pairwise (tree) sum of n non-negative terms is within ceil(log2 n) roundings of the "
             "exact sum, i.e. ceil(log2 n) ulps; a sequential sum can be worse and is then reported")
REDUCTION_TERMS: dict[str, ReductionTerm] = {t.reduction: t for t in (
    ReductionTerm("none", (0, 0), (0, 0), "no reduction: each output element is one unit"),
    ReductionTerm("sum", (1, 0), (0, 0), f"value: {_PAIRWISE}; gradient: the sum's derivative is the "
                  "weight, exact"),
    ReductionTerm("mean", (1, 1), (0, 1), f"value: {_PAIRWISE}, plus one rounding of the division by n; "
                  "gradient: one rounding of the scale w/n"),
    ReductionTerm("weighted_mean", (2, 1), (1, 1), "value: numerator and denominator are both pairwise sums "
                  "of n non-negative terms (ceil(log2 n) ulps each, their relative errors add in the "
                  "quotient), plus the division; gradient: the denominator sum plus the division"),
    ReductionTerm("sum_over_nonzero_weights", (1, 1), (0, 1), f"value: {_PAIRWISE}; the count of non-zero "
                  "weights is an exact integer; plus the division; gradient: the division"),
)}

CLASS_TERM = ("ceil(log2 C) ulps for outputs built from a row of C classes (softmax family; C = T + S "
              "columns for sampled softmax and NCE): the logsumexp sums C terms, pairwise.")
CONDITIONING_TERM = ("2 u sens / ulp(expected) ulps, u = 2**-precision of the dtype: a backward-stable "
                     "implementation is exact for inputs perturbed by about one rounding each, which moves "
                     "the output by up to u * sens; twice that covers the rounding of intermediate "
                     "results that are themselves inputs to later steps. Zero where the expected value "
                     "is infinite or NaN; infinite where the sensitivity is.")


def group_of(variant: str) -> str:
    for group, members in GROUPS.items():
        if variant in members:
            return group
    raise ValueError(f"variant {variant!r} is in no budget group")


def base_for(variant: str, dtype: str, quantity: str) -> Base:
    """The most specific BASES entry: one naming the variant beats one naming its group."""
    kind = "value" if quantity == "value" else "grad"
    for key in (variant, group_of(variant)):
        for b in BASES:
            if b.group == key and dtype in b.dtypes and b.quantity == kind:
                return b
    raise ValueError(f"no budget for {variant} {dtype} {kind}")


def _ceil_log2(n: int) -> int:
    return max(int(n) - 1, 0).bit_length()


def units(case: Case) -> int:
    """Number of units (elements, or rows along the class axis) that a reduction sums."""
    if case.variant in GROUPS["sampled"]:
        return int(case["inputs"].shape[0])
    main = case.get("logits", case.get("probs"))
    if case.spec.has_axis:
        return math.prod(s for i, s in enumerate(main.shape) if i != case.class_axis)
    return int(main.size)


def classes(case: Case) -> int | None:
    """Number of classes in a row, for variants built on a row; None for elementwise variants."""
    if case.variant in GROUPS["sampled"]:
        return int(case["labels"].shape[1] + case["sampled"].shape[0])
    if case.spec.has_axis:
        main = case.get("logits", case.get("probs"))
        return int(main.shape[case.class_axis])
    return None


@dataclass
class Allowance:
    """The terms of one quantity's allowance; ``conditioning`` and ``total`` are per element."""

    base: int
    reduction: int
    classes: int
    conditioning: np.ndarray

    @property
    def total(self) -> np.ndarray:
        return self.base + self.reduction + self.classes + self.conditioning

    def at(self, index) -> dict:
        cond = float(self.conditioning[index])
        return {"base": self.base, "reduction": self.reduction, "classes": self.classes,
                "conditioning": cond if np.isfinite(cond) else None}


def allowance(case: Case, quantity: str, value: np.ndarray, sens) -> Allowance:
    """The allowance of each element of ``quantity`` ("value" or "grad:<input>") of ``case``.

    ``value`` is the correctly rounded expected value and ``sens`` the oracle's sensitivity, both
    of the quantity's shape.
    """
    f = fmt(case.dtype)
    reduction = case.options.get("reduction", "none")
    reduced = reduction != "none"
    b = base_for(case.variant, case.dtype, quantity)
    term = REDUCTION_TERMS[reduction]
    k, c = term.value if quantity == "value" else term.grad
    red = k * _ceil_log2(units(case)) + c if reduced else 0
    n_classes = classes(case)
    cls = _ceil_log2(n_classes) if n_classes else 0
    expected = np.asarray(value, dtype=np.float64)
    s = np.broadcast_to(np.asarray(sens if sens is not None else 0.0, dtype=np.float64), expected.shape)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        cond = 2.0 * f.unit_roundoff * np.abs(s) / ulp_of(expected, f)
    cond = np.where(np.isfinite(expected) & ~np.isnan(s), cond, 0.0)
    return Allowance(b.reduced if (reduced and quantity == "value") else b.none, red, cls, cond)


def table() -> dict:
    """Every number of the budget with its reason, for the report."""
    return {
        "bases": [{"group": b.group, "variants": list(GROUPS.get(b.group, (b.group,))),
                   "dtypes": list(b.dtypes), "quantity": b.quantity, "none": b.none,
                   "reduced": b.reduced, "reason": b.reason} for b in BASES],
        "reduction_terms": [{"reduction": t.reduction, "value": {"per_log2_n": t.value[0], "constant": t.value[1]},
                             "grad": {"per_log2_n": t.grad[0], "constant": t.grad[1]}, "reason": t.reason}
                            for t in REDUCTION_TERMS.values()],
        "class_term": CLASS_TERM,
        "conditioning_term": CONDITIONING_TERM,
    }
