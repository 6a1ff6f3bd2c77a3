"""An independent reference for the oracle's tests: textbook formulas in plain mpmath.

Nothing here imports the oracle. The losses are written the way a textbook writes them,
``-(z log sigmoid(x) + (1-z) log(1 - sigmoid(x)))`` and ``-log(exp(x_y) / sum_j exp(x_j))``,
gradients as the derivatives of those forms, and evaluated at a few thousand bits. Two identities
keep the textbook forms exact enough without a max-shift: ``1 - sigmoid(x) = sigmoid(-x)`` and
``exp(x_c) / sum_j exp(x_j) = 1 / (1 + sum_{j != c} exp(x_j - x_c))``; ``log(1 + t)`` for tiny ``t``
is summed as its Taylor series so that a term far below the working precision is not absorbed.

The result is rounded into the case dtype by `round_to`, exact integer arithmetic on the mpf's
mantissa and exponent (round-to-nearest-even, subnormals, overflow to inf). An element whose
value lies so close to a rounding boundary that the working precision cannot tell the side is
recomputed at a higher precision, and reported as unknown past ``MAX_PREC``; so is a point whose
convention docs/variants.md leaves open (``None`` in `exact`). The reference never guesses either.

`small_cases` draws small valid cases of every variant for the property tests.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import ml_dtypes
import numpy as np
from hypothesis import strategies as st
from mpmath import mp, mpf

from cases import Case

# (significand bits with the implicit one, largest exponent, numpy dtype, unsigned view)
FORMATS = {
    "float16": (11, 15, np.dtype(np.float16), np.dtype(np.uint16)),
    "bfloat16": (8, 127, np.dtype(ml_dtypes.bfloat16), np.dtype(np.uint16)),
    "float32": (24, 127, np.dtype(np.float32), np.dtype(np.uint32)),
    "float64": (53, 1023, np.dtype(np.float64), np.dtype(np.uint64)),
}

# 2300 bits hold the exact difference of any two float64 values (exponents 2^1023 .. 2^-1074).
BASE_PREC = 2300
MAX_PREC = 10000
NAN, INF = mpf("nan"), mpf("inf")


# -- rounding ------------------------------------------------------------------------------------

def _rne_shift(m: int, s: int) -> int:
    """m / 2**s rounded to nearest, ties to even (m >= 0, s >= 0)."""
    if s == 0:
        return m
    if m.bit_length() < s:  # m / 2**s < 1/2 (and 2**s may be too large to build)
        return 0
    q, r = m >> s, m & ((1 << s) - 1)
    half = 1 << (s - 1)
    if r > half or (r == half and q & 1):
        q += 1
    return q


def _quantum(a: mpf, p: int, emax: int) -> int:
    """Exponent of the unit in the last place of the binade of |a| (subnormal range clamped)."""
    man, exp = a.man_exp  # the exact (unsigned) mantissa; abs() and unary minus would round
    e = exp + int(man).bit_length() - 1
    return max(e, 1 - emax) - p + 1


def round_to(v: mpf, dtype: str):
    """The value of ``v`` rounded to nearest-even into ``dtype``, as a numpy scalar."""
    p, emax, npdt, _ = FORMATS[dtype]
    if mp.isnan(v):
        return npdt.type(np.nan)
    if mp.isinf(v):
        return npdt.type(np.inf if v > 0 else -np.inf)
    if v == 0:
        return npdt.type(0.0)
    neg = v < 0
    man, exp = v.man_exp
    q = _quantum(v, p, emax)
    n = int(man) << (exp - q) if exp >= q else _rne_shift(int(man), q - exp)
    if n == 0:
        mag = 0.0
    elif n.bit_length() + q > emax + 1:  # the rounded value reaches 2**(emax+1): overflow
        mag = math.inf
    else:
        mag = math.ldexp(float(n), q)  # n <= 2**53 and q >= -1074: exact in float64
    return np.array(-mag if neg else mag, dtype=np.float64).astype(npdt)[()]


def near_boundary(v: mpf, dtype: str, rel: mpf) -> bool:
    """Whether a relative perturbation of ``rel`` could move ``v`` across a rounding midpoint."""
    if not mp.isfinite(v) or v == 0:
        return False
    p, emax, _, _ = FORMATS[dtype]
    with mp.workprec(int(v.man_exp[0]).bit_length() + 64):  # exact: the fraction keeps every bit
        scaled = mp.ldexp(abs(v), -_quantum(v, p, emax))  # |v| in ulps of its binade
        frac = scaled - mp.floor(scaled)
        return abs(frac - mpf(0.5)) <= scaled * rel


def bits(arr: np.ndarray, dtype: str) -> np.ndarray:
    """Bit patterns of ``arr`` with every NaN mapped to one pattern, for exact comparison."""
    _, _, npdt, udt = FORMATS[dtype]
    a = np.array(arr, dtype=npdt)  # a contiguous copy that keeps a 0-d shape
    b = a.view(udt)
    b[np.isnan(a.astype(np.float64))] = np.iinfo(udt).max
    return b


# -- elementary pieces (textbook forms) ------------------------------------------------------------

def _mp(a) -> np.ndarray:
    """A float array as an object array of exact mpf values."""
    a = np.asarray(a)
    out = np.empty(a.shape, dtype=object)
    for i in np.ndindex(a.shape):
        out[i] = mpf(float(a[i]))
    return out


def ln1p(t: mpf) -> mpf:
    """log(1 + t) for t >= 0; a Taylor sum when t is tiny so that t is not lost in 1 + t."""
    if t == 0 or mp.isinf(t):
        return t
    if t < mpf(2) ** -40:
        total, power, k = mpf(0), t, 1
        stop = t * mpf(2) ** -(mp.prec + 16)
        while power / k > stop:
            total += power / k if k % 2 else -power / k
            power *= t
            k += 1
        return total
    with mp.extraprec(64):
        return mp.log(1 + t)


def log_sigmoid(u: mpf) -> mpf:
    """log(1 / (1 + exp(-u)))."""
    return -ln1p(mp.exp(-u))


def sigmoid(u: mpf) -> mpf:
    return 1 / (1 + mp.exp(-u))


def _diff(u: mpf, v: mpf) -> mpf | None:
    """u - v, or None (unknown) when the two are equal but not zero: at a finite precision an exact
    cancellation cannot be told from a tiny term absorbed on one side, whose sign would matter."""
    if u == v and u != 0:
        return None
    return u - v


def _xlog(factor: mpf, log_value: mpf) -> mpf:
    """factor * log_value with the convention that a zero factor gives 0 (0 log 0 = 0)."""
    return mpf(0) if factor == 0 else factor * log_value


def _log_softmax_row(x: list) -> list:
    """log(exp(x_c) / sum_j exp(x_j)) for a row with finite maximum and no +inf, NaN."""
    out = []
    for c, xc in enumerate(x):
        if mp.isinf(xc):  # -inf: probability zero
            out.append(-INF)
            continue
        rest = mpf(0)
        for j, xj in enumerate(x):
            if j != c and not mp.isinf(xj):
                rest += mp.exp(xj - xc)
        out.append(-ln1p(rest))
    return out


def _row_kind(x: list) -> str | int:
    """'nan' (undefined row), 'finite' (some finite max), or the index of a single +inf."""
    if any(mp.isnan(v) for v in x):
        return "nan"
    pinf = [j for j, v in enumerate(x) if mp.isinf(v) and v > 0]
    if len(pinf) > 1 or (not pinf and all(mp.isinf(v) for v in x)):
        return "nan"
    return pinf[0] if pinf else "finite"


def log_probs_row(x: list) -> list:
    """log softmax of a row with the documented limits (one +inf: one-hot; else undefined)."""
    kind = _row_kind(x)
    if kind == "nan":
        return [NAN] * len(x)
    if kind != "finite":
        return [mpf(0) if j == kind else -INF for j in range(len(x))]
    return _log_softmax_row(x)


def probs_row(x: list) -> list:
    """exp(x_c) / sum_j exp(x_j), written as 1 / (1 + sum_{j != c} exp(x_j - x_c))."""
    kind = _row_kind(x)
    if kind == "nan":
        return [NAN] * len(x)
    if kind != "finite":
        return [mpf(1) if j == kind else mpf(0) for j in range(len(x))]
    out = []
    for c, xc in enumerate(x):
        if mp.isinf(xc):
            out.append(mpf(0))
            continue
        rest = sum((mp.exp(xj - xc) for j, xj in enumerate(x) if j != c and not mp.isinf(xj)), mpf(0))
        out.append(1 / (1 + rest))
    return out


# -- per-unit losses and gradients ---------------------------------------------------------------

def sigmoid_unit(x: mpf, z: mpf, q: mpf, e: mpf):
    """(loss, dloss/dx, dloss/dz) of -(q z' log s(x) + (1-z') log(1-s(x))), z' = z(1-e) + e/2."""
    zs = z * (1 - e) + e / 2
    if mp.isnan(x):
        return NAN, None, None
    if mp.isinf(x):
        if x > 0:
            return (mpf(0) if zs == 1 else INF), None, None
        return (mpf(0) if q * zs == 0 else INF), None, None
    ls_pos, ls_neg = log_sigmoid(x), log_sigmoid(-x)  # log s(x), log(1 - s(x)) = log s(-x)
    loss = -(_xlog(q * zs, ls_pos) + _xlog(1 - zs, ls_neg))
    # d/dx: -(q z' (1 - s(x)) - (1 - z') s(x))
    dx = _diff((1 - zs) * sigmoid(x), q * zs * sigmoid(-x))
    dz = _diff(ls_neg, q * ls_pos)
    dz = None if dz is None else (1 - e) * dz
    return loss, dx, dz


def bce_probs_unit(p: mpf, z: mpf, e: mpf):
    """(loss, dloss/dp, dloss/dz) of -(z' log p + (1-z') log(1-p))."""
    zs = z * (1 - e) + e / 2
    log_p = mp.log(p) if p > 0 else -INF
    log_q = mp.log(1 - p) if p < 1 else -INF
    loss = -(_xlog(zs, log_p) + _xlog(1 - zs, log_q))
    neg = mpf(0) if zs == 0 else (zs / p if p > 0 else INF)
    pos = mpf(0) if zs == 1 else ((1 - zs) / (1 - p) if p < 1 else INF)
    dp = _diff(pos, neg)
    dz = None if (e == 1 and not 0 < p < 1) else _diff(log_q, log_p)
    dz = None if dz is None else (1 - e) * dz
    return loss, dp, dz


def softmax_unit(x: list, a: list, with_label_grad: mpf | None, cw: list):
    """(loss, dloss/dx, dloss/dy) of -sum_c a_c log softmax(x)_c; a_c = cw_c y'_c."""
    logp = log_probs_row(x)
    if any(mp.isnan(v) for v in logp):
        return NAN, None, None
    loss = -sum((_xlog(ac, lp) for ac, lp in zip(a, logp)), mpf(0))
    if _row_kind(x) != "finite" or any(mp.isinf(v) for v in x):
        return loss, None, None
    p = probs_row(x)
    big_a = sum(a, mpf(0))
    # d/dx_j of -sum_c a_c log p_c = sum_c a_c p_j - a_j, written without 1 - p_j cancelling
    dx = []
    for j in range(len(x)):
        others = sum((p[k] for k in range(len(x)) if k != j), mpf(0))
        dx.append(_diff((big_a - a[j]) * p[j], a[j] * others))
    dy = None
    if with_label_grad is not None:
        dy = [-(with_label_grad * cw[c]) * logp[c] for c in range(len(x))]
    return loss, dx, dy


def categorical_unit(p: list, a: list, one_minus_e: mpf, cw: list):
    """(loss, dloss/dp, dloss/dy) of -sum_c a_c log p_c."""
    logp = [mp.log(v) if v > 0 else -INF for v in p]
    loss = -sum((_xlog(ac, lp) for ac, lp in zip(a, logp)), mpf(0))
    dp = [mpf(0) if ac == 0 else (-ac / pc if pc > 0 else -INF) for ac, pc in zip(a, p)]
    dy = []
    for c in range(len(p)):
        factor = one_minus_e * cw[c]
        dy.append(None if (factor == 0 and p[c] == 0) else -factor * logp[c])
    return loss, dp, dy


# -- domain ----------------------------------------------------------------------------------------

def domain_error(case) -> str | None:
    """Why the case is out of the variant's domain, or None (the rules of docs/variants.md)."""
    f = {k: np.asarray(v, dtype=np.float64) for k, v in case.inputs.items() if v.dtype.kind not in "iu"}

    def outside_unit(name):
        return name in f and bool(np.any(~((f[name] >= 0) & (f[name] <= 1))))

    def negative(name):
        return name in f and bool(np.any(~(f[name] >= 0)))

    if case.variant in ("sampled_softmax", "nce"):
        for name in ("inputs", "embeddings", "biases", "true_expected_count", "sampled_expected_count"):
            if np.any(np.isnan(f[name])):
                return f"{name} holds NaN"
        for name in ("true_expected_count", "sampled_expected_count"):
            if np.any(~(f[name] > 0)):
                return f"{name} must be > 0"
        n_classes = case.inputs["embeddings"].shape[0]
        for name in ("labels", "sampled"):
            ids = case.inputs[name]
            if np.any((ids < 0) | (ids >= n_classes)):
                return f"{name} holds a class id outside [0, {n_classes})"
        return None
    for name in ("labels", "probs"):
        if outside_unit(name):
            return f"{name} outside [0, 1]"
    for name in ("weights", "class_weights", "pos_weight"):
        if negative(name):
            return f"{name} negative or NaN"
    e = case.options.get("label_smoothing", 0.0)
    if not 0 <= e <= 1:
        return "label_smoothing outside [0, 1]"
    if case.variant == "softmax_ce_sparse":
        ids = case.inputs["labels"]
        n_classes = case.inputs["logits"].shape[case.class_axis]
        ignore = case.options.get("ignore_index")
        bad = (ids < 0) | (ids >= n_classes)
        if ignore is not None:
            bad &= ids != ignore
        if np.any(bad):
            return f"a class id outside [0, {n_classes})"
    return None


# -- a case, exactly -------------------------------------------------------------------------------

def _reduce(case, losses: np.ndarray, counted: np.ndarray, omega: np.ndarray):
    """(output object array, per-unit gradient scale or None) for the case's reduction."""
    reduction = case.options.get("reduction", "none")
    w = _mp(case.inputs["weights"]) if "weights" in case.inputs else np.full(losses.shape, mpf(1), dtype=object)
    contrib = np.empty(losses.shape, dtype=object)
    scale = np.empty(losses.shape, dtype=object)
    for i in np.ndindex(losses.shape):
        li = losses[i]
        if not counted[i] or w[i] == 0:
            contrib[i] = None if (li is None or mp.isnan(li)) and counted[i] else mpf(0)
            scale[i] = mpf(0)
        else:
            contrib[i] = None if li is None else w[i] * li
            scale[i] = w[i]
    if reduction == "none":
        return contrib, scale
    if any(c is None for c in contrib.flat):
        return np.array(None, dtype=object), None
    total = sum(contrib.flat, mpf(0))
    if reduction == "sum":
        denom = mpf(1)
    elif reduction == "mean":
        denom = mpf(losses.size)
    elif reduction == "weighted_mean":
        denom = sum((om for om, c in zip(omega.flat, counted.flat) if c), mpf(0))
    else:  # sum_over_nonzero_weights
        denom = mpf(sum(1 for wi, c in zip(w.flat, counted.flat) if c and wi != 0))
    out = np.empty((), dtype=object)
    if denom == 0:
        out[()] = NAN
        return out, None
    out[()] = total / denom
    return out, np.array([s / denom for s in scale.flat], dtype=object).reshape(scale.shape)


def _scaled(g, s):
    if g is None or s is None:
        return None
    if s == 0:
        return mpf(0)
    return g * s


def _unit_grads(raw: np.ndarray, scale, unit_shape) -> np.ndarray:
    """Element gradients (raw[i] is a scalar or a list per unit) times the unit scale."""
    out = np.empty(raw.shape, dtype=object)
    for i in np.ndindex(raw.shape):
        u = i[: len(unit_shape)]
        out[i] = _scaled(raw[i], None if scale is None else scale[u])
    return out


def _binary(case, grads: bool):
    probs = case.variant == "bce_probs"
    x = _mp(case.inputs["probs" if probs else "logits"])
    z = _mp(case.inputs["labels"])
    e = mpf(case.options.get("label_smoothing", 0.0))
    q = _mp(np.broadcast_to(case.inputs["pos_weight"], x.shape)) if "pos_weight" in case.inputs else None
    loss = np.empty(x.shape, dtype=object)
    dx = np.empty(x.shape, dtype=object)
    dz = np.empty(x.shape, dtype=object)
    for i in np.ndindex(x.shape):
        if probs:
            loss[i], dx[i], dz[i] = bce_probs_unit(x[i], z[i], e)
        else:
            loss[i], dx[i], dz[i] = sigmoid_unit(x[i], z[i], mpf(1) if q is None else q[i], e)
    counted = np.ones(x.shape, dtype=bool)
    omega = _mp(case.inputs["weights"]) if "weights" in case.inputs else np.full(x.shape, mpf(1), dtype=object)
    value, scale = _reduce(case, loss, counted, omega)
    out = {"value": value}
    if grads:
        out["probs" if probs else "logits"] = _unit_grads(dx, scale, x.shape)
        out["labels"] = _unit_grads(dz, scale, x.shape)
    return out


def _class_family(case, grads: bool):
    axis = case.class_axis
    main = "probs" if case.variant == "categorical_ce_probs" else "logits"
    x = np.moveaxis(_mp(case.inputs[main]), axis, -1)
    unit_shape, n_classes = x.shape[:-1], x.shape[-1]
    e = mpf(case.options.get("label_smoothing", 0.0))
    cw = list(_mp(case.inputs["class_weights"])) if "class_weights" in case.inputs else [mpf(1)] * n_classes
    sparse = case.variant == "softmax_ce_sparse"
    if sparse:
        ids = case.inputs["labels"]
        ignore = case.options.get("ignore_index")
    else:
        y = np.moveaxis(_mp(case.inputs["labels"]), axis, -1)
    loss = np.empty(unit_shape, dtype=object)
    counted = np.ones(unit_shape, dtype=bool)
    omega = np.empty(unit_shape, dtype=object)
    w = _mp(case.inputs["weights"]) if "weights" in case.inputs else np.full(unit_shape, mpf(1), dtype=object)
    dx = np.empty(x.shape, dtype=object)
    dy = np.empty(x.shape, dtype=object)
    for u in np.ndindex(unit_shape):
        row = list(x[u])
        if sparse:
            label = int(ids[u])
            if ignore is not None and label == ignore:
                counted[u], loss[u], omega[u] = False, mpf(0), mpf(0)
                for c in range(n_classes):
                    dx[u + (c,)] = mpf(0)
                continue
            yrow = [mpf(1) if c == label else mpf(0) for c in range(n_classes)]
            omega[u] = w[u] * cw[label]
        else:
            yrow = list(y[u])
            omega[u] = w[u]
        a = [cw[c] * (yrow[c] * (1 - e) + e / n_classes) for c in range(n_classes)]
        if main == "probs":
            loss[u], gx, gy = categorical_unit(row, a, 1 - e, cw)
        else:
            loss[u], gx, gy = softmax_unit(row, a, None if sparse else 1 - e, cw)
        for c in range(n_classes):
            dx[u + (c,)] = None if gx is None else gx[c]
            dy[u + (c,)] = None if gy is None else gy[c]
    value, scale = _reduce(case, loss, counted, omega)
    out = {"value": value}
    if grads:
        out[main] = np.moveaxis(_unit_grads(dx, scale, unit_shape), -1, axis)
        if not sparse:
            out["labels"] = np.moveaxis(_unit_grads(dy, scale, unit_shape), -1, axis)
    return out


def _elementwise_softmax(case, grads: bool):
    axis = case.class_axis
    x = np.moveaxis(_mp(case.inputs["logits"]), axis, -1)
    n_classes = x.shape[-1]
    value = np.empty(x.shape, dtype=object)
    dx = np.empty(x.shape, dtype=object)
    for u in np.ndindex(x.shape[:-1]):
        row = list(x[u])
        outs = log_probs_row(row) if case.variant == "log_softmax" else probs_row(row)
        finite = _row_kind(row) == "finite" and not any(mp.isinf(v) for v in row)
        p = probs_row(row) if finite else None
        for c in range(n_classes):
            value[u + (c,)] = outs[c]
            dx[u + (c,)] = _diff(mpf(1), n_classes * p[c]) if finite else None  # d sum_k log p_k / dx_c
    out = {"value": np.moveaxis(value, -1, axis)}
    if grads and case.variant == "log_softmax":
        out["logits"] = np.moveaxis(dx, -1, axis)
    return out


def sampled_logits(case) -> list:
    """Per row: the logits of the columns [labels_i (T), sampled (S)] and their labels."""
    inputs, emb = _mp(case.inputs["inputs"]), _mp(case.inputs["embeddings"])
    bias = _mp(case.inputs["biases"])
    true_q, samp_q = _mp(case.inputs["true_expected_count"]), _mp(case.inputs["sampled_expected_count"])
    labels, sampled = case.inputs["labels"], case.inputs["sampled"]
    sub = case.options["subtract_log_q"]
    rows = []
    for i in range(inputs.shape[0]):
        def logit(cid, count):
            t = sum((inputs[i, d] * emb[cid, d] for d in range(inputs.shape[1])), mpf(0)) + bias[cid]
            return t - mp.log(count) if sub else t

        t_true = [logit(int(cid), true_q[i, k]) for k, cid in enumerate(labels[i])]
        t_samp = [-INF if case.options["remove_accidental_hits"] and int(cid) in set(labels[i].tolist())
                  else logit(int(cid), samp_q[s]) for s, cid in enumerate(sampled)]
        n_true = len(t_true)
        rows.append((t_true + t_samp, [mpf(1) / n_true] * n_true + [mpf(0)] * len(t_samp)))
    return rows


def _sampled(case, grads: bool):
    rows = sampled_logits(case)
    loss = np.empty((len(rows),), dtype=object)
    for i, (t, z) in enumerate(rows):
        if case.variant == "sampled_softmax":
            loss[i] = softmax_unit(t, z, None, [mpf(1)] * len(t))[0]
        else:
            loss[i] = sum((sigmoid_unit(tk, zk, mpf(1), mpf(0))[0] for tk, zk in zip(t, z)), mpf(0))
    counted = np.ones(loss.shape, dtype=bool)
    value, _ = _reduce(case, loss, counted, np.full(loss.shape, mpf(1), dtype=object))
    return {"value": value}


def exact(case, grads: bool = True) -> dict:
    """Object arrays of mpf at the current precision: "value" and one entry per gradient input.

    ``None`` marks an element whose meaning the documentation leaves open (the tests skip it).
    """
    if case.variant in ("sigmoid_bce_logits", "bce_probs"):
        return _binary(case, grads)
    if case.variant in ("softmax_ce_dense", "softmax_ce_sparse", "categorical_ce_probs"):
        return _class_family(case, grads)
    if case.variant in ("log_softmax", "softmax"):
        return _elementwise_softmax(case, grads)
    return _sampled(case, grads)


# -- a case, rounded -------------------------------------------------------------------------------

def _agree(a: mpf, b: mpf, rel: mpf) -> bool:
    """Whether two evaluations agree to ``rel``: a value that cancels to (near) zero does not,
    since its error is absolute, so an exact zero is never mistaken for a signed tiny value."""
    if mp.isnan(a) or mp.isnan(b) or mp.isinf(a) or mp.isinf(b):
        return (mp.isnan(a) and mp.isnan(b)) or a == b
    return a == b or abs(a - b) <= rel * abs(b)


@dataclass
class Rounded:
    value: np.ndarray  # in the case dtype; meaningless where not known
    known: np.ndarray  # bool: the reference could decide this element
    exact: np.ndarray  # the mpf values of the last precision used
    prec: np.ndarray  # bits at which each known element was decided


@dataclass
class Reference:
    status: str  # "ok" or "invalid"
    reason: str = ""
    outputs: dict[str, Rounded] = field(default_factory=dict)

    @property
    def value(self) -> Rounded:
        return self.outputs["value"]

    @property
    def grads(self) -> dict[str, Rounded]:
        return {k: v for k, v in self.outputs.items() if k != "value"}


def evaluate(case, grads: bool = True) -> Reference:
    """The case's outputs correctly rounded into its dtype, element by element where decidable.

    Each element is computed at two precisions; it is final when both round to the same value,
    agree to half the lower precision, and it is not that close to a rounding midpoint.
    Otherwise the precision rises. An exact zero reached by cancellation never settles: unknown.
    """
    reason = domain_error(case)
    if reason:
        return Reference("invalid", reason)
    dtype = case.dtype
    outputs: dict[str, Rounded] = {}
    pending: dict[str, set] = {}
    prec = BASE_PREC
    while prec <= MAX_PREC:
        with mp.workprec(prec):
            low = exact(case, grads)
        with mp.workprec(prec + prec // 2):
            high = exact(case, grads)
        rel = mpf(2) ** -(prec // 2)  # half the bits may cancel; a zero reached by cancellation has none
        for key, arr in high.items():
            if key not in outputs:
                npdt = FORMATS[dtype][2]
                outputs[key] = Rounded(np.zeros(arr.shape, dtype=npdt), np.zeros(arr.shape, dtype=bool), arr,
                                       np.zeros(arr.shape, dtype=np.int64))
                pending[key] = set(np.ndindex(arr.shape))
            r = outputs[key]
            r.exact = arr
            for i in list(pending[key]):
                a, b = low[key][i], arr[i]
                if a is None or b is None:
                    pending[key].discard(i)
                    continue
                ra, rb = round_to(a, dtype), round_to(b, dtype)
                if bits(ra, dtype) == bits(rb, dtype) and _agree(a, b, rel) and not near_boundary(b, dtype, rel):
                    r.value[i], r.known[i], r.prec[i] = rb, True, prec
                    pending[key].discard(i)
        if not any(pending.values()):
            break
        prec *= 4
    return Reference("ok", "", outputs)


# -- small cases of every variant, for hypothesis ---------------------------------------------------
# Magnitudes stay below ~1000 so that every value is decided at a few thousand bits; the extreme
# regimes (|x| near the format's max, midpoint traps) are engineered in test_oracle_certification.

DTYPES = tuple(FORMATS)
REDUCTIONS = ("none", "sum", "mean", "weighted_mean", "sum_over_nonzero_weights")
SMOOTHING = (0.0, 0.0, 0.1, 0.25, 1.0)


def _values(kind: str, special: bool):
    """Float64 values of one role, before rounding into the case dtype."""
    if kind == "logits":
        parts = [st.integers(-8, 8).map(float), st.floats(-40, 40), st.floats(-1000, 1000),
                 st.sampled_from([0.0, -0.0, 0.5, -810.0, 88.5, 300.0, 1e-30, -2.0 ** -1074, 6e-8])]
        if special:
            parts.append(st.sampled_from([math.inf, -math.inf, math.nan]))
        return st.one_of(*parts)
    if kind == "unit":  # labels and probabilities
        return st.one_of(st.sampled_from([0.0, 1.0, 0.5, 0.25, 1 - 2.0 ** -24, 2.0 ** -24]), st.floats(0, 1))
    if kind == "open_unit":
        return st.floats(1e-6, 1 - 1e-3)
    if kind == "weights":
        return st.one_of(st.sampled_from([0.0, 1.0, 2.0, 0.5]), st.floats(0, 4))
    if kind == "counts":
        return st.floats(0.25, 4)
    return st.floats(-3, 3)  # embeddings, activations, biases


def _array(draw, dtype: str, shape: tuple, kind: str, special: bool = False) -> np.ndarray:
    n = math.prod(shape)
    vals = draw(st.lists(_values(kind, special), min_size=n, max_size=n))
    with np.errstate(over="ignore"):
        return np.array(vals, dtype=np.float64).astype(FORMATS[dtype][2]).reshape(shape)


@st.composite
def small_cases(draw, variant: str, special: bool = True, grads: bool = False):
    """A small valid case of ``variant``; ``special`` allows +-inf and NaN logits.

    With ``grads`` the inputs avoid the points where a gradient's convention is not documented
    (infinite logits, probabilities 0 and 1).
    """
    dtype = draw(st.sampled_from(DTYPES))
    special = special and not grads
    unit = "open_unit" if grads else "unit"
    opts, inputs = {}, {}
    if variant in ("sampled_softmax", "nce"):
        n, d, c = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(2, 5))
        t, s = draw(st.integers(1, 2)), draw(st.integers(1, 3))
        inputs = {
            "inputs": _array(draw, dtype, (n, d), "small"),
            "embeddings": _array(draw, dtype, (c, d), "small"),
            "biases": _array(draw, dtype, (c,), "small"),
            "labels": np.array(draw(st.lists(st.integers(0, c - 1), min_size=n * t, max_size=n * t))).reshape(n, t),
            "sampled": np.array(draw(st.lists(st.integers(0, c - 1), min_size=s, max_size=s))),
            "true_expected_count": _array(draw, dtype, (n, t), "counts"),
            "sampled_expected_count": _array(draw, dtype, (s,), "counts"),
        }
        opts = {"reduction": draw(st.sampled_from(REDUCTIONS)),
                "remove_accidental_hits": draw(st.booleans()), "subtract_log_q": draw(st.booleans())}
        return Case(variant, dtype, inputs, opts)
    binary = variant in ("sigmoid_bce_logits", "bce_probs")
    main_kind = "logits" if variant not in ("bce_probs", "categorical_ce_probs") else unit
    main = "logits" if main_kind == "logits" else "probs"
    if binary:
        shape = draw(st.sampled_from([(1,), (2,), (3,), (4,), (2, 3)]))
        unit_shape, axis = shape, None
    else:
        shape = (draw(st.integers(1, 3)), draw(st.integers(1, 4)))
        axis = draw(st.sampled_from([-1, -1, 0, 1]))
        unit_shape = tuple(s for i, s in enumerate(shape) if i != axis % 2)
        opts["axis"] = axis
    inputs[main] = _array(draw, dtype, shape, main_kind, special=special and main == "logits")
    if variant in ("log_softmax", "softmax"):
        return Case(variant, dtype, inputs, opts)
    opts["reduction"] = draw(st.sampled_from(REDUCTIONS))
    opts["label_smoothing"] = draw(st.sampled_from(SMOOTHING))
    if variant == "softmax_ce_sparse":
        n_classes = shape[axis]
        ignore = draw(st.sampled_from([None, -100, 0]))
        pool = list(range(n_classes)) + ([ignore] if ignore is not None else [])
        n = math.prod(unit_shape)
        inputs["labels"] = np.array(draw(st.lists(st.sampled_from(pool), min_size=n, max_size=n)),
                                    dtype=np.int64).reshape(unit_shape)
        opts["ignore_index"] = ignore
    else:
        label_kind = draw(st.sampled_from(["unit", "hard"]))
        if label_kind == "hard":
            n = math.prod(shape)
            inputs["labels"] = np.array(draw(st.lists(st.sampled_from([0.0, 1.0]), min_size=n, max_size=n)),
                                        dtype=FORMATS[dtype][2]).reshape(shape)
        else:
            inputs["labels"] = _array(draw, dtype, shape, "unit")
    if draw(st.booleans()):
        inputs["weights"] = _array(draw, dtype, unit_shape, "weights")
    if not binary and draw(st.booleans()):
        inputs["class_weights"] = _array(draw, dtype, (shape[axis],), "weights")
    if variant == "sigmoid_bce_logits" and draw(st.booleans()):
        qshape = draw(st.sampled_from([(), shape]))
        inputs["pos_weight"] = _array(draw, dtype, qshape, "weights")
    return Case(variant, dtype, inputs, opts)
