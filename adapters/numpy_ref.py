"""The project's own implementation of every variant, vectorised in numpy: what a careful kernel does.

float16, bfloat16 and float32 cases are computed in float64 and rounded once at the end. float64
cases use formulas whose loss terms are all non-negative (no cancellation), differences
``x_j - max(x)`` kept exact (``two_sum``) where ``exp`` would amplify their rounding, and exact sums
for reductions, so a loss is within a few ulps. Conventions are those of docs/variants.md:
``0 log 0 = 0``, a zero weight or label factor beats an infinite loss, one ``+inf`` logit in a
row is the one-hot limit, several ``+inf`` or an all ``-inf`` row is NaN, NaN logits propagate.
Out-of-domain inputs raise ValueError naming the problem.
"""
from __future__ import annotations

import numpy as np

from cases import Case
from cases.variants import FLOAT

from ._numerics import (exact_sum, exp_dd, log_dd, mul0, mul_div, prod_quot, ratio, round_to, scaled_exp, sum2, sum_last,
                        two_prod, two_sum)
from .base import Adapter, Output

_INF, _NAN = np.inf, np.nan
_TINY = 2.0 ** -900  # below this exp(d) may have lost digits to underflow
_PAIRWISE_MAX_CLASSES = 256  # the near form of the softmax gradient costs C^2 per row


class NumpyAdapter(Adapter):
    name = "numpy"
    description = "the project's vectorised reference: float64 with stable formulas, rounded once"

    def available(self) -> tuple[bool, str]:
        return True, np.__version__

    def apis(self, case: Case) -> list[str]:
        return ["numpy"]

    def evaluate(self, case: Case, api: str, grads: bool = True) -> Output:
        if api != "numpy":
            raise ValueError(f"the numpy adapter has one API, 'numpy', not {api!r}")
        _check_domain(case)
        with np.errstate(all="ignore"):  # inf and NaN arithmetic is expected; results are fixed up
            value, g = _VARIANTS[case.variant](case)
        f = case.format
        return Output(round_to(value, f), {k: round_to(v, f) for k, v in g.items()} if grads else {})


# -- domain ----------------------------------------------------------------------------------------

def _check_domain(case: Case) -> None:
    def bad(what: str):
        raise ValueError(f"{case.variant}: {what}")

    for name in ("labels", "probs"):
        a = case.get(name)
        if a is not None and case.spec.input(name).kind == FLOAT:
            a = a.astype(np.float64)
            if not np.all((a >= 0) & (a <= 1)):
                bad(f"{name} outside [0, 1] or NaN")
    for name in ("weights", "class_weights", "pos_weight"):
        a = case.get(name)
        if a is not None and not np.all((a.astype(np.float64) >= 0) & np.isfinite(a.astype(np.float64))):
            bad(f"{name} negative, infinite or NaN")
    e = case.options.get("label_smoothing")
    if e is not None and not 0 <= e <= 1:
        bad(f"label_smoothing {e!r} outside [0, 1]")
    if case.spec.has_axis and case[case.spec.inputs[0].name].shape[case.class_axis] == 0:
        bad("the class axis is empty")
    if case.variant == "softmax_ce_sparse":
        n_classes = case["logits"].shape[case.class_axis]
        labels, ignore = case["labels"], case.options["ignore_index"]
        if not np.all(((labels >= 0) & (labels < n_classes)) | (labels == ignore)):
            bad(f"a class id outside [0, {n_classes}) that is not ignore_index")
    if case.variant in ("sampled_softmax", "nce"):
        n_classes = case["embeddings"].shape[0]
        for name in ("labels", "sampled"):
            if not np.all((case[name] >= 0) & (case[name] < n_classes)):
                bad(f"{name}: a class id outside [0, {n_classes})")
        for name in ("true_expected_count", "sampled_expected_count"):
            q = case[name].astype(np.float64)
            if not np.all((q > 0) & np.isfinite(q)):
                bad(f"{name}: expected counts must be finite and > 0")
        for name in ("inputs", "embeddings", "biases"):
            if not np.isfinite(case[name].astype(np.float64)).all():
                bad(f"{name} must be finite")


# -- shared pieces ---------------------------------------------------------------------------------

def _f64(case: Case, name: str, default=None):
    a = case.get(name)
    return default if a is None else a.astype(np.float64)


def _lin(z, e, k, t):
    """(z (1-e) + e/k) t; e t is formed first so that a subnormal e/k cannot underflow."""
    return z * (1.0 - e) * t + (e * t) / k


def _reduce(case: Case, loss, w, kept=None, omega=None):
    """The case's reduction of the unit losses ``loss(0)`` with weights ``w``: (value, w', d) where
    d value / d l_i = w'_i / d (w' the kept weights, possibly rescaled; d = 1 for none and sum).

    ``loss(s)`` is the unit losses times 2^-s, computed without overflow; it is asked for s = 64
    only when the sum of w_i l_i overflows. ``omega``, for weighted_mean only, is a pair
    (w_i, cw_i) whose products are the normaliser weights (default: w_i).
    """
    l = loss(0)
    kept = np.ones(l.shape, dtype=bool) if kept is None else kept
    reduction = case.options["reduction"]
    if reduction == "weighted_mean":
        # The ratio is unchanged when every weight is scaled by 2^-k; scaled up so the largest is
        # near 1, tiny weights cannot make w_i l_i subnormal (never down: that could cost bits).
        k = min(int(np.frexp(np.max(w, initial=0.0, where=kept))[1]), 0)
        w = np.ldexp(w, -k)
        omega = (w, np.ones(w.shape)) if omega is None else (np.ldexp(omega[0], -k), omega[1])
    terms = np.where(kept, mul0(w, l), 0.0)
    w_kept = np.where(kept, w, 0.0)
    if reduction == "none":
        return terms, w_kept, 1.0
    if reduction == "sum":
        den = (1.0, 0)
    elif reduction == "mean":
        den = (float(l.size), 0)
    elif reduction == "weighted_mean":
        prod, err = two_prod(*omega)  # summed exactly
        den = exact_sum(np.where(kept, np.stack([prod, err]), 0.0))
    elif reduction == "sum_over_nonzero_weights":
        den = (float(np.count_nonzero(kept & (w != 0))), 0)
    else:
        raise ValueError(f"unknown reduction {reduction!r}")
    num = exact_sum(terms)
    if np.isinf(num[0]) and reduction != "sum":
        # an l_i or a w_i l_i overflowed, but their mean may not: sum them at scale 2^-128
        low = exact_sum(np.where(kept, mul_div(w, loss(64), 2.0 ** 64), 0.0))
        num = (low[0], low[1] + 128)
    d = den[0] * 2.0 ** den[1]
    return np.array(ratio(num, den)), w_kept, d if d != 0 else _NAN


def _scaled_grad(w, d, g, kept=None, den=None, factor=None):
    """w g / d for a unit gradient ``g`` (``g / den`` when a denominator is given, folded into one
    scaled quotient so that w g / (d p) neither overflows nor underflows on the way; a tuple is
    several denominators); units that are not kept get 0, and every position is NaN when the normaliser is 0 (an undefined mean has no gradient)."""
    if np.isnan(d):
        return np.full(np.broadcast_shapes(np.shape(g), np.shape(w)), _NAN)
    nums = [w, g] if factor is None else [w, factor, g]
    out = prod_quot(nums, [d] + ([] if den is None else list(den) if isinstance(den, tuple) else [den]))
    return out if kept is None else np.where(kept, out, 0.0)


# -- sigmoid and probabilities ---------------------------------------------------------------------

def _sigmoid_loss(hi, lo, z, q, e, shift=0):
    """Sigmoid BCE at the logit ``hi + lo``, times 2^-shift.

    l = (1-z') x + c softplus(-x), z' = z(1-e) + e/2, c = (1-z') + q z'; evaluated as
    (1-z') x + c log1p(exp(-x)) for x >= 0 and -q z' x + c log1p(exp(x)) for x < 0.
    Limits: x -> +inf costs nothing iff z' = 1; x -> -inf costs nothing iff q z' = 0.
    """
    zp = z * (1.0 - e) + e / 2
    zm = (1.0 - z) * (1.0 - e) + e / 2  # 1 - z' without cancelling when z' is near 1
    pos = hi >= 0
    log_term = np.log1p(exp_dd(-np.abs(hi), np.where(pos, -lo, lo)))  # softplus(-|x|)
    h, lw = np.ldexp(hi, -shift), np.ldexp(lo, -shift)
    linear = np.where(pos, _lin(1.0 - z, e, 2, h) + _lin(1.0 - z, e, 2, lw),
                      mul0(q, _lin(z, e, 2, -h) + _lin(z, e, 2, -lw)))
    l = linear + mul0(zm + mul0(q, zp), np.ldexp(log_term, -shift))
    l = np.where(hi == _INF, np.where((z == 1) & (e == 0), 0.0, _INF), l)
    return np.where(hi == -_INF, np.where((q == 0) | ((z == 0) & (e == 0)), 0.0, _INF), l)


def _sigmoid_grads(x, z, q, e, w, d):
    """w/d times dl/dx and dl/dz of sigmoid BCE (the logit exact, limits at +-inf included)."""
    zp = z * (1.0 - e) + e / 2
    zm = (1.0 - z) * (1.0 - e) + e / 2
    pos = x >= 0
    small = np.exp(-np.abs(x))
    # dl/dx = c sigmoid(x) - q z' = (1-z') sigmoid(x) - q z' sigmoid(-x), over 1 + exp(-|x|):
    # (1-z') - q z' E for x >= 0 and (1-z') E - q z' for x < 0, E = exp(-|x|). Near x = 0 the
    # two parts nearly cancel, so there 1 - E = -expm1(-|x|) and (1-z') - q z' are formed first.
    qzp = mul0(q, zp)
    far = np.where(pos, zm - mul0(qzp, small), mul0(zm, small) - qzp)
    gap = (1.0 - e) * ((1.0 - z) - mul0(q, z)) + mul0(1.0 - q, e / 2)  # (1-z') - q z'
    m1 = np.expm1(-np.abs(x))
    near = np.where(pos, gap - qzp * m1, gap + zm * m1)
    gx = _scaled_grad(w, d, np.where(small > 0.5, near, far) / (1.0 + small))
    if not np.isnan(d):  # where exp(-|x|) underflowed, form its product with w/d at scale
        tail = np.where(pos, mul_div(w, zm, d) - mul0(qzp, scaled_exp(-x, 0.0, w, d)),
                        mul0(zm, scaled_exp(x, 0.0, w, d)) - mul_div(w, qzp, d))
        gx = np.where(np.isfinite(x) & (small < _TINY), tail, gx)
    # dl/dz = (1-e)(-x + (q-1) softplus(-x)), and for x < 0 softplus(-x) = -x + softplus(x):
    # exactly -x when q = 1, the softplus part only where it is small.
    gz = np.where(pos, -x, mul0(q, -x)) + mul0(q - 1.0, np.log1p(small))
    return gx, _scaled_grad(w, d, mul0(1.0 - e, gz))


def _sigmoid_bce_logits(case: Case):
    x, z, e = _f64(case, "logits"), _f64(case, "labels"), case.options["label_smoothing"]
    q = np.broadcast_to(_f64(case, "pos_weight", np.float64(1.0)), x.shape)
    w = _f64(case, "weights", np.ones(x.shape))
    value, w, d = _reduce(case, lambda shift: _sigmoid_loss(x, 0.0, z, q, e, shift), w)
    gx, gz = _sigmoid_grads(x, z, q, e, w, d)
    return value, {"logits": gx, "labels": gz}


def _bce_probs(case: Case):
    """l = -(z' log p + (1-z') log1p(-p)), a term with label factor 0 being 0."""
    p, z, e = _f64(case, "probs"), _f64(case, "labels"), case.options["label_smoothing"]
    w = _f64(case, "weights", np.ones(p.shape))
    nlp, nl1p = -np.log(p), -np.log1p(-p)  # both >= 0
    has_pos, has_neg = (z != 0) | (e != 0), (z != 1) | (e != 0)  # z' > 0, 1 - z' > 0
    t_pos = np.where(has_pos, np.where(p == 0, _INF, _lin(z, e, 2, nlp)), 0.0)
    t_neg = np.where(has_neg, np.where(p == 1, _INF, _lin(1.0 - z, e, 2, nl1p)), 0.0)
    value, w, d = _reduce(case, lambda shift: np.ldexp(t_pos + t_neg, -shift), w)
    # dl/dp = -z'/p + (1-z')/(1-p) = (p - z') / (p (1-p)), one quotient with an exact zero at
    # p = z'. 2(p - z') = 2(p - z) + e(2z - 1) is summed from exact parts: it cancels near p = z'.
    pz_hi, pz_lo = two_sum(p, -z)
    zz_hi, zz_lo = two_sum(2.0 * z, -1.0)
    ez_hi, ez_lo = two_prod(np.full(p.shape, e), zz_hi)
    parts = np.stack([2.0 * pz_hi, 2.0 * pz_lo, ez_hi, ez_lo, e * zz_lo], axis=-1)
    # gp = num / den with den = p divided last (see _scaled_grad)
    num = np.where(has_pos & has_neg, sum_last(parts) / (2.0 * (1.0 - p)), np.where(has_pos, -1.0, 1.0 / (1.0 - p)))
    den = np.where(has_pos, p, 1.0)
    special = (has_pos & (p == 0)) | (has_neg & (p == 1))
    num = np.where(has_pos & (p == 0), -_INF, np.where(has_neg & (p == 1), _INF, num))
    den = np.where(special, 1.0, den)
    gz = mul0(1.0 - e, nlp - nl1p)
    return value, {"probs": _scaled_grad(w, d, num, den=den), "labels": _scaled_grad(w, d, gz)}


# -- the softmax family ----------------------------------------------------------------------------

class _Rows:
    """Softmax quantities of logit rows given as double-doubles ``(hi, lo)`` of shape (R, C >= 1).

    With k a row's argmax, d_j = x_j - x_k (exact), S = sum_{j != k} exp(d_j), D = 1 + S:
    LSE - x_c = -d_c + log1p(S) (two non-negative parts) and p_c = exp(d_c) / D. ``diff(k)``, when
    given, computes the differences d as double-doubles more accurately than ``hi + lo`` allows.
    """

    def __init__(self, hi, lo, diff=None):
        n_rows, n_classes = hi.shape
        nan = np.isnan(hi).any(axis=-1)
        n_pinf = (hi == _INF).sum(axis=-1)
        ninf = hi == -_INF
        self.undefined = nan | (n_pinf > 1) | ninf.all(axis=-1)
        self.onehot = ~nan & (n_pinf == 1)
        regular = ~self.undefined & ~self.onehot
        self.n_classes = n_classes
        k = np.argmax(np.where(np.isnan(hi), -_INF, hi), axis=-1)  # the +inf one in one-hot rows
        self.is_k = np.zeros(hi.shape, dtype=bool)
        self.is_k[np.arange(n_rows), k] = True
        fin = regular[:, None] & ~ninf
        h, lw = np.where(fin, hi, 0.0), np.where(fin, lo, 0.0)
        kh = np.where(regular, hi[np.arange(n_rows), k], 0.0)[:, None]
        kl = np.where(regular, lo[np.arange(n_rows), k], 0.0)[:, None]
        if diff is None:
            dh, dl = two_sum(h, -kh)
            dl = dl + (lw - kl)
        else:
            dh, dl = diff(k)
            dh, dl = np.where(fin, dh, 0.0), np.where(fin, dl, 0.0)
        # |x_j - x_k| beyond the float64 range (logits near +-max): exp is 0, and LSE - x_j is
        # kept at half scale so that a small label factor can still bring it back into range.
        self.ovf = fin & np.isinf(dh)
        dh, dl = two_sum(dh, np.where(self.ovf, 0.0, dl))  # renormalised: |dl| <= ulp(dh)
        dh = np.where(self.ovf, h - kh, dh)
        dl = np.where(self.ovf, 0.0, dl)
        self.x, self.fin, self._spread = np.where(regular[:, None], hi, 0.0), fin, None
        self.dh, self.dl = dh, dl
        self.ex = np.where(fin, exp_dd(dh, dl), 0.0)
        s_hi, s_lo = sum2(np.where(self.is_k, 0.0, self.ex))
        self.s = s_hi + s_lo
        self.d = 1.0 + self.s
        log1p_s = np.log1p(self.s)[:, None]
        L = (-dh + log1p_s) - dl
        L = np.where(ninf, _INF, L)
        L = np.where(self.onehot[:, None], np.where(self.is_k, 0.0, _INF), L)
        self.L = np.where(self.undefined[:, None], _NAN, L)
        self.L_half = np.where(self.ovf, (kh * 0.5 - h * 0.5) + log1p_s * 0.5, 0.0)

    def scaled(self, fn, shift=0):
        """fn(LSE - x_c) 2^-shift for fn linear in its argument, overflowing only if the result does."""
        return np.where(self.ovf, 2.0 * fn(np.ldexp(self.L_half, -shift)), fn(np.ldexp(self.L, -shift)))

    def loss(self, fn, shift=0):
        """sum_c fn(LSE - x_c) 2^-shift per row, NaN for an undefined row."""
        return np.where(self.undefined, _NAN, sum_last(self.scaled(fn, shift)))

    def probs(self):
        p = self.ex / self.d[:, None]
        p = np.where(self.onehot[:, None], self.is_k.astype(np.float64), p)
        return np.where(self.undefined[:, None], _NAN, p)

    def grad_ce(self, a):
        """d/dx_j of sum_c a_c (LSE - x_c) = A p_j - a_j with A = sum_c a_c, times D:

        far: A e_j - a_j D, and at the argmax (A - a_k) - a_k S (no 1 - p_k to cancel);
        near: e_j ((A - C a_j) - a_j sum_i expm1(x_i - x_j)), with A - C a_j formed exactly, for
        logits close together (it is exactly 0 for ties under uniform labels).
        Whichever has the smaller parts is used.
        """
        n = self.n_classes
        d, s = self.d[:, None], self.s[:, None]
        a_hi, a_lo = sum2(a)
        big_a = (a_hi + a_lo)[:, None]
        others = sum_last(np.where(self.is_k, 0.0, a))[:, None]  # A - a_k
        far = np.where(self.is_k, others - mul0(a, s), mul0(big_a, self.ex) - a * d)
        far_size = np.where(self.is_k, others + a * s, big_a * self.ex + a * d)
        g = far
        if n <= _PAIRWISE_MAX_CLASSES:
            ca_hi, ca_lo = two_prod(float(n), a)
            gap = (a_hi[:, None] - ca_hi) + (a_lo[:, None] - ca_lo)  # A - C a_j
            if self._spread is None:
                self._spread = self._expm1_spread()
            spread, spread_size = self._spread
            near = self.ex * (gap - a * spread)
            near_size = self.ex * np.abs(gap) + a * (self.ex * spread_size)
            usable = (self.ex > _TINY) & np.isfinite(spread_size)
            g = np.where(usable & (near_size < far_size), near, far)
        g = np.where(self.onehot[:, None], np.where(self.is_k, others, -a), g / d)
        return np.where(self.undefined[:, None], _NAN, g)

    def scaled_grad_ce(self, a, w, d, kept=None):
        """w (A p_j - a_j) / d per row; where exp(d_j) underflowed, w A p_j / d may still be a
        normal number, so there it is formed from exp(d_j) at the scale of w / d."""
        g = _scaled_grad(w, d, self.grad_ce(a), kept)
        if np.isnan(d):
            return g
        tail = self.fin & (self.ex < _TINY)
        big_a = sum_last(a)[:, None]
        t = mul0(big_a / self.d[:, None], scaled_exp(self.dh, self.dl, w, d)) - mul_div(w, a, d)
        return np.where(tail, t, g)

    def _expm1_spread(self):
        """sum_i expm1(x_i - x_j) and sum_i |expm1(x_i - x_j)| for every j, x_i - x_j exact."""
        x = self.x
        spread, size = np.empty(x.shape), np.empty(x.shape)
        for j in range(x.shape[1]):
            h, l = two_sum(x, -x[:, j:j + 1])
            t = np.where(x == -_INF, -1.0, np.expm1(h) + np.exp(h) * l)
            spread[:, j], size[:, j] = sum_last(t), np.abs(t).sum(axis=-1)
        return spread, size


def _rows_of(case: Case, name: str):
    """The case's array as (R, C) float64 with the class axis last, its unit shape, and the inverse."""
    axis = case.class_axis
    a = np.moveaxis(case[name].astype(np.float64), axis, -1)
    unit_shape, n_classes = a.shape[:-1], a.shape[-1]

    def back(rows):
        return np.moveaxis(rows.reshape(unit_shape + (n_classes,)), -1, axis)

    return a.reshape(-1, n_classes), unit_shape, back


def _class_terms(cw, y, e, n_classes, t):
    """cw_c y'_c t_c with y' = y(1-e) + e/C; a zero label factor beats an infinite t, NaN stays."""
    has = (cw != 0) & ((y != 0) | (e != 0))
    finite = mul0(cw, _lin(y, e, n_classes, t))
    return np.where(has, np.where(t == _INF, _INF, finite), np.where(np.isnan(t), _NAN, 0.0))


def _smoothed_grad(rows, cw, y, e, w, d, kept=None):
    """w/d times the CE gradient for label factors cw y' = cw (y(1-e) + e/C): (1-e) times that
    for cw y plus e/C times that for cw, so that y' (inexact, or underflowing) is never formed."""
    g = rows.scaled_grad_ce(mul0(cw, y), w, d, kept)
    if e == 0:
        return g
    uniform = rows.scaled_grad_ce(np.broadcast_to(cw, y.shape), w, d, kept)
    return mul0(1.0 - e, g) + (e * uniform) / rows.n_classes


def _softmax_ce_dense(case: Case):
    x, unit_shape, back = _rows_of(case, "logits")
    y, _, _ = _rows_of(case, "labels")
    n_classes, e = x.shape[1], case.options["label_smoothing"]
    cw = _f64(case, "class_weights", np.ones(n_classes))[None, :]
    rows = _Rows(x, np.zeros_like(x))

    def loss(shift):
        return rows.loss(lambda t: _class_terms(cw, y, e, n_classes, t), shift).reshape(unit_shape)

    value, w, d = _reduce(case, loss, _f64(case, "weights", np.ones(unit_shape)))
    w = w.reshape(-1, 1)
    gx = _smoothed_grad(rows, cw, y, e, w, d)
    gy = rows.scaled(lambda t: mul0(1.0 - e, t))  # dl/dy_c = (1-e) cw_c (LSE - x_c), cw folded in below
    return value, {"logits": back(gx), "labels": back(_scaled_grad(w, d, gy, factor=np.broadcast_to(cw, gy.shape)))}


def _softmax_ce_sparse(case: Case):
    x, unit_shape, back = _rows_of(case, "logits")
    n_rows, n_classes = x.shape
    e, ignore = case.options["label_smoothing"], case.options["ignore_index"]
    labels = case["labels"].reshape(-1)
    kept = labels != ignore if ignore is not None else np.ones(n_rows, dtype=bool)
    cls = np.where(kept, labels, 0)
    y = np.zeros(x.shape)
    y[np.arange(n_rows), cls] = 1.0
    cw = _f64(case, "class_weights", np.ones(n_classes))
    if case.options["reduction"] == "weighted_mean":
        # Both sides of the ratio are linear in the class weights: with the largest near 1,
        # tiny class weights cannot make cw_y (LSE - x_y) subnormal.
        cw = np.ldexp(cw, -min(int(np.frexp(np.max(cw))[1]), 0))
    w = _f64(case, "weights", np.ones(unit_shape)).reshape(-1)
    rows = _Rows(x, np.zeros_like(x))

    def loss(shift):
        return rows.loss(lambda t: _class_terms(cw[None, :], y, e, n_classes, t), shift).reshape(unit_shape)

    value, w, d = _reduce(case, loss, w.reshape(unit_shape), kept.reshape(unit_shape),
                          omega=(w.reshape(unit_shape), cw[cls].reshape(unit_shape)))
    gx = _smoothed_grad(rows, cw[None, :], y, e, w.reshape(-1, 1), d, kept[:, None])
    return value, {"logits": back(gx)}


def _categorical_ce_probs(case: Case):
    """l = -sum_c cw_c y'_c log p_c, no renormalisation; a term with label factor 0 is 0."""
    p, unit_shape, back = _rows_of(case, "probs")
    y, _, _ = _rows_of(case, "labels")
    n_classes, e = p.shape[1], case.options["label_smoothing"]
    cw = _f64(case, "class_weights", np.ones(n_classes))[None, :]
    nlp = -np.log(p)

    def loss(shift):
        return sum_last(_class_terms(cw, y, e, n_classes, np.ldexp(nlp, -shift))).reshape(unit_shape)

    value, w, d = _reduce(case, loss, _f64(case, "weights", np.ones(unit_shape)))
    w = w.reshape(-1, 1)
    has = (cw != 0) & ((y != 0) | (e != 0))
    # C y' = C y (1-e) + e, so that a subnormal e/C is never formed; w cw y' / (d p) is formed in
    # one scaled quotient, and so is w cw (1-e) (-log p) / d
    ys_c = (y * (1.0 - e)) * n_classes + e
    num = np.where(has, np.where(p == 0, -_INF, -ys_c), 0.0)
    den = (np.where(has & (p != 0), p, 1.0), float(n_classes))
    cwb = np.broadcast_to(cw, num.shape)
    gp = _scaled_grad(w, d, num, den=den, factor=cwb)
    gy = _scaled_grad(w, d, mul0(1.0 - e, nlp), factor=cwb)
    return value, {"probs": back(gp), "labels": back(gy)}


def _log_softmax(case: Case):
    x, _, back = _rows_of(case, "logits")
    rows = _Rows(x, np.zeros_like(x))
    # d sum_k o_k / dx_j = 1 - C p_j: the softmax CE gradient with every label factor 1, negated
    return back(-rows.L), {"logits": back(-rows.grad_ce(np.ones(x.shape)))}


def _softmax(case: Case):
    x, _, back = _rows_of(case, "logits")
    return back(_Rows(x, np.zeros_like(x)).probs()), {}


# -- sampled softmax and NCE -----------------------------------------------------------------------

def _sampled_logits(case: Case):
    """Row i's logits over [labels_i, sampled], shape (N, T + S): (hi, lo, diff, T).

    t = inputs_i . embeddings[id] + biases[id] - log Q is kept as its parts (exact products and
    their errors, the bias, log Q as a double-double), so that a difference t_j - t_k is summed
    part by part: a huge bias shared by two columns then cancels exactly. ``hi + lo`` is t summed
    as if in twice the precision.
    """
    labels, sampled = case["labels"], case["sampled"]
    n, n_true = labels.shape
    ids = np.concatenate([labels, np.broadcast_to(sampled, (n, sampled.size))], axis=1)
    emb, bias = _f64(case, "embeddings"), _f64(case, "biases")
    p, err = two_prod(_f64(case, "inputs")[:, None, :], emb[ids])
    parts = [p, err, bias[ids][..., None]]
    if case.options["subtract_log_q"]:
        q = np.concatenate([_f64(case, "true_expected_count"),
                            np.broadcast_to(_f64(case, "sampled_expected_count"), (n, sampled.size))], axis=1)
        lq_hi, lq_lo = log_dd(q)
        parts += [-lq_hi[..., None], -lq_lo[..., None]]
    parts = np.concatenate(parts, axis=-1)
    hi, lo = sum2(parts)
    if case.options["remove_accidental_hits"]:
        hit = np.zeros(hi.shape, dtype=bool)
        hit[:, n_true:] = (sampled[None, :, None] == labels[:, None, :]).any(axis=-1)
        hi, lo = np.where(hit, -_INF, hi), np.where(hit, 0.0, lo)

    def diff(k):
        d_hi, d_lo = two_sum(parts, -parts[np.arange(n), k][:, None, :])
        return sum2(d_hi, d_lo)

    return hi, lo, diff, n_true


def _sampled_softmax(case: Case):
    hi, lo, diff, n_true = _sampled_logits(case)
    true = np.arange(hi.shape[1]) < n_true
    rows = _Rows(hi, lo, diff)
    value, _, _ = _reduce(case, lambda shift: rows.loss(lambda t: np.where(true, t, 0.0) / n_true, shift),
                          np.ones(hi.shape[0]))
    return value, {}


def _nce(case: Case):
    hi, lo, _, n_true = _sampled_logits(case)
    z = np.where(np.arange(hi.shape[1]) < n_true, 1.0 / n_true, 0.0)[None, :]
    z, q = np.broadcast_to(z, hi.shape), np.ones(hi.shape)
    value, _, _ = _reduce(case, lambda shift: sum_last(_sigmoid_loss(hi, lo, z, q, 0.0, shift)),
                          np.ones(hi.shape[0]))
    return value, {}


_VARIANTS = {
    "sigmoid_bce_logits": _sigmoid_bce_logits,
    "bce_probs": _bce_probs,
    "softmax_ce_dense": _softmax_ce_dense,
    "softmax_ce_sparse": _softmax_ce_sparse,
    "categorical_ce_probs": _categorical_ce_probs,
    "log_softmax": _log_softmax,
    "softmax": _softmax,
    "sampled_softmax": _sampled_softmax,
    "nce": _nce,
}
