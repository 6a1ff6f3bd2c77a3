"""Verdicts: what one adapter's answer to one case is, measured against the oracle.

Each output element gets a class; a quantity (the value, or the gradient with respect to one
input) gets the class of its worst element; the case gets the worst of its quantities. "Worst"
follows ``SEVERITY``, most severe first:

1. ``crash``, ``timeout``: the process died or hung; nothing about the case is known.
2. ``raised``: an exception where the oracle defines a value; no answer at all.
3. ``shape``: an answer of the wrong shape; the elements can only be compared if sizes agree.
4. ``nan``, ``accepted-invalid``, ``wrong-sign``, ``overflow``, ``underflow``: a number came back
   but it is meaningless (NaN, a value for an input outside the domain, the wrong sign, inf where
   the truth is finite, zero where it is not), and nothing warns the caller.
5. ``inaccurate``: finite, right sign, but further from the truth than the budget allows.
6. ``dtype``: the values are right but in another dtype than the case's.
7. ``contract``: off from the math exactly as the adapter's documented contract says.
8. ``conforms``.

``not-applicable`` (no API of the adapter can express the case) and ``undecided`` (the oracle
could not certify an element, which is then skipped) are bookkeeping, never verdicts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from cases import Case, fmt
from . import budgets
from .ulp import to_format, ulp_distance, ulp_of

SEVERITY: tuple[str, ...] = ("crash", "timeout", "raised", "shape", "nan", "accepted-invalid",
                             "wrong-sign", "overflow", "underflow", "inaccurate", "dtype", "contract",
                             "conforms")
RANK = {v: i for i, v in enumerate(SEVERITY)}
NOT_APPLICABLE, UNDECIDED = "not-applicable", "undecided"

MEANING = {
    "crash": "the adapter's process died",
    "timeout": "the adapter's process did not answer in time",
    "raised": "raised an exception where the oracle defines a value",
    "shape": "returned an array of another shape than the truth's",
    "nan": "returned NaN where the truth is a number",
    "accepted-invalid": "returned a number for an input outside the variant's domain, or where the "
                        "loss is undefined",
    "wrong-sign": "returned a value of the opposite sign, beyond the budget",
    "overflow": "returned inf where the truth is finite",
    "underflow": "returned zero where the truth is a representable non-zero value, beyond the budget",
    "inaccurate": "finite, but more ULPs from the correctly rounded truth than the budget allows",
    "dtype": "returned another dtype than the case's (values compared after rounding into it)",
    "contract": "differs from the math exactly as the adapter's documented contract says",
    "conforms": "within the budget of the correctly rounded truth",
}


@dataclass
class Finding:
    """The worst element of one quantity (or the case-level event for raised/crash/timeout)."""

    verdict: str
    quantity: str | None = None  # "value" or "grad:<input>"
    index: tuple[int, ...] | None = None
    ulp: float | None = None
    allowance: float | None = None
    terms: dict | None = None  # the allowance's terms at that element
    expected: float | None = None  # the correctly rounded truth, as float64
    got: float | None = None  # what came back, as float64 (ULPs count it rounded into the case dtype)
    got_dtype: str | None = None
    message: str = ""
    #: The relative condition number at that element, sens / |truth| (sens = sum over inputs of
    #: |input| |d out / d input|): how much a relative perturbation of the inputs of size u moves
    #: the output, in units of u|out|. inf where the truth is 0 but not its sensitivity.
    condition: float | None = None


@dataclass
class CaseVerdict:
    verdict: str
    worst: Finding
    findings: list[Finding] = field(default_factory=list)  # one per quantity compared
    max_ulp: float | None = None  # largest finite ULP distance over compared elements
    undecided: int = 0  # elements the oracle could not certify, skipped

    @classmethod
    def single(cls, verdict: str, message: str = "") -> "CaseVerdict":
        f = Finding(verdict, message=message)
        return cls(verdict, f, [f])


def worst(verdicts) -> str:
    return min(verdicts, key=RANK.__getitem__, default="conforms")


def _one_line(error: BaseException) -> str:
    text = f"{type(error).__name__}: {error}".strip().splitlines()
    return (text[0] if text else type(error).__name__)[:300]


def classify(case: Case, truth, output=None, error: BaseException | None = None,
             contract=None) -> CaseVerdict:
    """The verdict of an adapter's ``output`` (or raised ``error``) against the oracle's ``truth``.

    ``contract`` is the oracle's result for the case as the adapter's documented contract
    transforms it (e.g. probabilities clipped to [eps, 1 - eps]); an element that misses the truth
    but meets the contract's truth is ``contract``.
    """
    if truth.status == "invalid":
        if contract is not None and contract.status == "ok" and error is None:
            # a documented reading of the invalid input (e.g. negative ids counting from the end)
            if classify(case, contract, output).verdict == "conforms":
                return CaseVerdict.single("contract", "meets the documented contract for this invalid input")
        return _classify_invalid(case, truth, output, error)
    if error is not None:
        if truth.value is not None and np.asarray(truth.value.undefined).all():
            # the loss itself is undefined (an empty mean, a row with two +inf): refusing is fine
            return CaseVerdict.single("conforms", f"rejected an undefined result: {_one_line(error)}")
        return CaseVerdict.single("raised", _one_line(error))
    quantities = [("value", truth.value, output.value, contract.value if contract else None)]
    for name, q in sorted(truth.grads.items()):
        if name in (output.grads or {}):
            cq = contract.grads.get(name) if contract else None
            quantities.append((f"grad:{name}", q, output.grads[name], cq))
    findings, max_ulp, undecided = [], None, 0
    for qname, expected, got, cq in quantities:
        finding, q_max, q_undecided = compare(case, qname, expected, got, cq)
        findings.append(finding)
        undecided += q_undecided
        if q_max is not None:
            max_ulp = q_max if max_ulp is None else max(max_ulp, q_max)
    top = min(findings, key=lambda fd: RANK[fd.verdict])
    return CaseVerdict(top.verdict, top, findings, max_ulp, undecided)


def _classify_invalid(case: Case, truth, output, error) -> CaseVerdict:
    if error is not None:
        return CaseVerdict.single("conforms", f"rejected: {_one_line(error)}")
    got = _as_float64(output.value)
    if got is None:
        return CaseVerdict.single("conforms", "rejected: returned no numbers")
    numbers = np.argwhere(~np.isnan(got))
    if len(numbers) == 0:  # (not .size: argwhere of a 0-d array has shape (1, 0))
        return CaseVerdict.single("conforms", "rejected: returned NaN")
    idx = tuple(int(i) for i in numbers[0])
    f = Finding("accepted-invalid", "value", idx, got=float(got[idx]),
                got_dtype=str(np.asarray(output.value).dtype), message=truth.reason or "")
    return CaseVerdict("accepted-invalid", f, [f])


def _as_float64(arr) -> np.ndarray | None:
    a = np.asarray(arr)
    if a.dtype.kind == "c" or not (a.dtype.kind in "fiub" or a.dtype.name == "bfloat16"):
        return None
    with np.errstate(invalid="ignore"):  # bfloat16 NaN into float64 warns; the value is kept
        return a.astype(np.float64)


def compare(case: Case, quantity: str, expected, got_raw, contract=None):
    """(worst Finding, max finite ULP or None, undecided count) for one quantity."""
    f = fmt(case.dtype)
    got_arr = np.asarray(got_raw)
    got_dtype = got_arr.dtype.name
    exp_value = np.asarray(expected.value)
    undecided_mask = np.asarray(expected.undecided, dtype=bool)
    n_undecided = int(undecided_mask.sum())
    got64 = _as_float64(got_arr)
    if got64 is None:
        return Finding("dtype", quantity, got_dtype=got_dtype,
                       message=f"returned non-numeric dtype {got_dtype}"), None, n_undecided
    shape_msg = ""
    if got64.shape != exp_value.shape:
        shape_msg = f"returned shape {list(got64.shape)}, expected {list(exp_value.shape)}"
        if got64.size != exp_value.size:
            return Finding("shape", quantity, got_dtype=got_dtype, message=shape_msg), None, n_undecided
        got64 = got64.reshape(exp_value.shape)
    got = to_format(got64, f)
    allow = budgets.allowance(case, quantity, exp_value, expected.sens)
    total = allow.total
    codes, ulp = _codes(got, exp_value, np.asarray(expected.undefined, dtype=bool), undecided_mask, total, f)
    if contract is not None:
        c_allow = budgets.allowance(case, quantity, contract.value, contract.sens)
        c_codes, _ = _codes(got, np.asarray(contract.value), np.asarray(contract.undefined, dtype=bool),
                            undecided_mask, c_allow.total, f)
        codes = np.where((codes != RANK["conforms"]) & (c_codes == RANK["conforms"]),
                         RANK["contract"], codes)
    compared = ~undecided_mask & np.isfinite(ulp)
    max_ulp = float(ulp[compared].max()) if compared.any() else None
    top = int(codes.min()) if codes.size else RANK["conforms"]
    # Among the elements of the worst class, the largest ULP distance (NaN: the first one).
    ranked = np.where(codes == top, np.where(np.isfinite(ulp), ulp, -1.0), -np.inf)
    finding = Finding(SEVERITY[top], quantity, got_dtype=got_dtype)
    if codes.size:
        idx = np.unravel_index(int(np.argmax(ranked)), codes.shape)
        finding.index = tuple(int(i) for i in idx)
        u = float(ulp[idx])
        finding.ulp = u if np.isfinite(u) else None
        finding.allowance = float(total[idx]) if np.isfinite(total[idx]) else None
        finding.terms = allow.at(idx)
        finding.expected = float(np.asarray(exp_value, dtype=np.float64)[idx])
        finding.got = float(got64[idx])
        finding.condition = _condition(expected.sens, idx, finding.expected)
    problems = [("shape", shape_msg)] if shape_msg else []
    if got_dtype != f.np_dtype.name:
        problems.append(("dtype", f"returned {got_dtype} for a {case.dtype} case"))
    for verdict, _ in problems:
        if RANK[verdict] < RANK[finding.verdict]:
            finding.verdict = verdict
    finding.message = "; ".join(message for _, message in problems)
    return finding, max_ulp, n_undecided


def _condition(sens, idx, expected: float) -> float | None:
    if sens is None:
        return None
    s = np.asarray(sens, dtype=np.float64)
    try:
        v = float(s[idx]) if s.ndim else float(s)
    except (IndexError, TypeError):
        return None
    if not math.isfinite(v) or not math.isfinite(expected):
        return None
    if expected == 0:
        return 0.0 if v == 0 else math.inf
    return v / abs(expected)


def _codes(got, expected, undefined, undecided, total, f):
    """Per element: the RANK of its class, and its ULP distance (NaN where undecided)."""
    e = np.asarray(expected, dtype=np.float64)
    g = got.astype(np.float64)
    with np.errstate(invalid="ignore"):
        ulp = ulp_distance(got, to_format(e, f), f)
    undefined = undefined | (np.isnan(e) & ~undecided)
    code = np.full(e.shape, RANK["inaccurate"], dtype=np.int64)
    opposite = (g != 0) & (e != 0) & (np.signbit(g) != np.signbit(e))
    # Later assignments win, so the order below is the order of precedence, lowest first.
    code[opposite] = RANK["wrong-sign"]
    code[(g == 0) & (e != 0)] = RANK["underflow"]
    # Compare the error with the allowance in ulps of the expected value. The integer distance
    # counts every float in between, so an answer a few hundred ulps below a 5e-17 gradient that
    # cancelled down from terms of size 1 is 4e18 "ulps" away although its absolute error is what
    # the conditioning term allows; |got - expected| / ulp(expected) measures it.
    with np.errstate(invalid="ignore", over="ignore"):
        spacing_err = np.abs(g - e) / ulp_of(e, f)
    code[np.fmin(ulp, spacing_err) <= total] = RANK["conforms"]
    code[np.isinf(g) & np.isfinite(e)] = RANK["overflow"]
    code[np.isnan(g)] = RANK["nan"]
    code[undefined] = np.where(np.isnan(g[undefined]), RANK["conforms"], RANK["accepted-invalid"])
    code[undecided] = RANK["conforms"]
    ulp = np.where(undefined, np.where(np.isnan(g), 0.0, np.inf), ulp)
    return code, np.where(undecided, np.nan, ulp)
