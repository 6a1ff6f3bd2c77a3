"""The loss of one unit (an element, or a row along the class axis), as an enclosure.

Each function takes a backend ``B`` already set to a working precision and exact inputs (Python
floats and `Fraction`s, which are exact, or enclosures built from them) and returns a `Unit`: its
outputs and the partial derivatives of its loss, each an enclosure, a `Split`, or an exact special
float (``inf``, ``-inf``, ``nan``). Limits at infinite inputs and the ``0 log 0 = 0`` convention are
taken here, by branching on the exact inputs, before any enclosure is formed.

Many results are an exact rational plus a transcendental remainder that can be astronomically
small: ``log_softmax = (x_c - x_max) - log1p(T)`` with ``T ~ exp(-55504)``. When the exact part sits
on a rounding tie of the target format no affordable precision separates the two, so such results
are carried as a `Split` and the certifier decides the tie from the sign of the remainder.

Next to every output and derivative goes its *sensitivity* ``sum_u |u| |d out / d u|`` over the
inputs a rounding upstream could have perturbed (see docs/variants.md): a float estimate that
scales a tolerance and is never itself certified.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction as Q

INF, NAN = math.inf, math.nan
ZERO_Q, ONE_Q = Q(0), Q(1)


@dataclass
class Split:
    """``exact + rest``: an exact rational and an enclosure of the remainder. ``alt``, when given,
    is a second enclosure of the same value written so that it is exact when the value is."""

    exact: Q
    rest: object
    alt: object = None

    def ball(self, B):
        return self.rest if self.exact == 0 else B.frac(self.exact) + self.rest


@dataclass
class Unit:
    out: list  # the unit's outputs (one loss, or a row of log_softmax/softmax values)
    out_sens: list
    grads: dict = field(default_factory=dict)  # input name -> list over the unit's positions
    grad_sens: dict = field(default_factory=dict)


def is_special(v) -> bool:
    return isinstance(v, float)


def ball(B, v):
    return v.ball(B) if isinstance(v, Split) else v


def _f(B, v) -> float:
    """A float approximation (for sensitivities only)."""
    if is_special(v):
        return v
    if isinstance(v, Q):
        try:
            return float(v)
        except OverflowError:
            return math.copysign(INF, v)
    return B.to_float(ball(B, v))


def _safe(fn):
    try:
        v = fn()
    except (ZeroDivisionError, OverflowError, ValueError):  # a pole or log(0): infinitely sensitive
        return INF
    return INF if math.isnan(v) else abs(v)


# -- sigmoid binary cross-entropy ------------------------------------------------------------------

def sigmoid_bce(B, x, z: Q, z_soft: bool, q: float, eps: float, grads: bool,
                x_mag: float | None = None) -> Unit:
    """Binary cross-entropy on a logit.

    ``l = (1-z')x + c softplus(-x)``, ``z' = z(1-e) + e/2``, ``c = 1 + (q-1)z'``, ``softplus(t) =
    log1p(exp(t))``. Evaluated as ``(1-z')x + c log1p(exp(-x))`` for ``x >= 0`` and
    ``-q z' x + c log1p(exp(x))`` for ``x < 0``: both terms are non-negative, so the enclosure never
    suffers cancellation, and the first is exact. ``x`` is an exact float or an enclosure; ``z`` the
    exact label.

    Limits: ``x -> +inf``: ``l -> 0`` if ``z' = 1`` else ``+inf``; ``x -> -inf``: ``l -> 0`` if
    ``q z' = 0`` else ``+inf``. Derivatives: ``dl/dx = c sigmoid(x) - q z'``,
    ``dl/dz = (1-e)(-x + (q-1) softplus(-x))``.
    """
    one = B.num(1.0)
    e_q, q_q = Q(eps), Q(q)
    zs_q = z if eps == 0.0 else z * (1 - e_q) + e_q / 2
    c_q = 1 + (q_q - 1) * zs_q
    shrink_q = 1 - e_q  # dz'/dz
    zs, c, qb = B.frac(zs_q), B.frac(c_q), B.num(q)
    shrink = float(shrink_q)
    u = Unit([None], [0.0])

    if is_special(x) and math.isnan(x):
        u.out = [NAN]
        if grads:
            u.grads = {"logits": [NAN], "labels": [NAN]}
            u.grad_sens = {"logits": [0.0], "labels": [0.0]}
        return u
    if is_special(x) and math.isinf(x):
        zero = B.num(0.0)
        if x > 0:
            u.out = [zero if zs_q == 1 else INF]
            dx, dz = Split(1 - zs_q, zero), (zero if eps == 1.0 else -INF)
        else:
            u.out = [zero if q_q * zs_q == 0 else INF]
            dx, dz = Split(-q_q * zs_q, zero), (zero if (eps == 1.0 or q == 0.0) else INF)
        if grads:
            u.grads = {"logits": [dx], "labels": [dz]}
            u.grad_sens = {"logits": [0.0], "labels": [0.0]}
        return u

    exact_x = is_special(x)
    X = B.num(x) if exact_x else x
    xf = x if exact_x else B.to_float(x)
    xq = Q(x) if exact_x else None
    mag = abs(xf) if x_mag is None else x_mag
    if xf >= 0:
        E = B.exp(-X)
        L1 = B.log1p(E)  # softplus(-x)
        sig, sig_neg, sp_neg = one / (one + E), E / (one + E), L1
        loss = Split((1 - zs_q) * xq, c * L1) if exact_x else (one - zs) * X + c * L1
        dx = Split(1 - zs_q, -(c * sig_neg))
        dz_exact = -shrink_q * xq if exact_x else None
    else:
        E = B.exp(X)
        L1 = B.log1p(E)
        sig, sig_neg, sp_neg = E / (one + E), one / (one + E), L1 - X
        loss = Split(-q_q * zs_q * xq, c * L1) if exact_x else -(qb * zs * X) + c * L1
        dx = Split(-q_q * zs_q, c * sig)
        dz_exact = -shrink_q * q_q * xq if exact_x else None
    u.out = [loss]

    s, sn, spf, zf, cf = (_f(B, v) for v in (sig, sig_neg, sp_neg, z, c_q))
    zsf = _f(B, zs_q)
    dxf = cf * s - q * zsf
    dzf = shrink * (-xf + (q - 1.0) * spf)
    sens = mag * abs(dxf)
    if z_soft:
        sens += abs(zf) * abs(dzf)
    if q != 1.0:
        sens += abs(q) * abs(zsf * spf)
    u.out_sens = [sens]
    if grads:
        dx.alt = c * sig - qb * zs  # exact at x = 0 where the derivative can vanish
        rest = B.frac(shrink_q * (q_q - 1)) * L1 if q != 1.0 else B.num(0.0)
        if exact_x:
            dz = Split(dz_exact, rest)
        else:
            dz = B.frac(shrink_q) * ((-X if xf >= 0 else -(qb * X))) + rest
        gx = mag * cf * s * sn
        gz = mag * abs(shrink * (-1.0 - (q - 1.0) * sn))
        if z_soft:
            gx += abs(zf) * abs(shrink * ((q - 1.0) * s - q))
        if q != 1.0:
            gx += abs(q * zsf) * sn
            gz += abs(q) * shrink * spf
        u.grads = {"logits": [dx], "labels": [dz]}
        u.grad_sens = {"logits": [gx], "labels": [gz]}
    return u


# -- binary cross-entropy on probabilities ---------------------------------------------------------

def bce_probs(B, p: float, z: float, eps: float, grads: bool) -> Unit:
    """``l = -(z' log p + (1-z') log1p(-p))``, ``z' = z(1-e) + e/2``; a term whose label factor is
    exactly 0 is 0 (``0 log 0 = 0``), so ``p = 0`` costs ``+inf`` only when ``z' > 0``.
    ``dl/dp = -z'/p + (1-z')/(1-p)``; ``dl/dz = (1-e)(log1p(-p) - log p)``."""
    one, P = B.num(1.0), B.num(p)
    e_q = Q(eps)
    zs_q = Q(z) if eps == 0.0 else Q(z) * (1 - e_q) + e_q / 2
    zs = B.frac(zs_q)
    has_pos, has_neg = zs_q != 0, zs_q != 1
    terms = []
    if has_pos:
        terms.append(INF if p == 0.0 else -(zs * B.log(P)))
    if has_neg:
        terms.append(INF if p == 1.0 else -((one - zs) * B.log1p(-P)))
    loss = _sum(B, terms)
    if has_pos and p == 0.0:
        dp = -INF
    elif has_neg and p == 1.0:
        dp = INF
    elif has_pos and has_neg:
        dp = (P - zs) / (P * (one - P))  # one quotient: an exact zero at p = z'
    else:
        dp = -(one / P) if has_pos else one / (one - P)
    shrink = 1.0 - eps
    zsf = float(zs_q)
    z_soft = z not in (0.0, 1.0)
    dpf = _safe(lambda: (-zsf / p if has_pos else 0.0) + ((1 - zsf) / (1 - p) if has_neg else 0.0))
    dzf = _safe(lambda: shrink * (math.log1p(-p) - math.log(p)))
    sens = p * dpf + (z * dzf if z_soft else 0.0)
    u = Unit([loss], [sens])
    if grads:
        if eps == 1.0:
            dz = B.num(0.0)
        elif p == 0.0 or p == 1.0:
            dz = INF if p == 0.0 else -INF
        elif p == 0.5:
            dz = B.num(0.0)  # log((1-p)/p) vanishes only at p = 1/2
        else:
            dz = B.log1p(-P) - B.log(P)
            if eps != 0.0:
                dz = dz * B.frac(1 - e_q)
        gp = _safe(lambda: p * (zsf / p ** 2 + (1 - zsf) / (1 - p) ** 2)
                   + (z * shrink * (1 / p + 1 / (1 - p)) if z_soft else 0.0))
        gz = _safe(lambda: shrink * (p / (1 - p) + 1))
        u.grads = {"probs": [dp], "labels": [dz]}
        u.grad_sens = {"probs": [gp], "labels": [gz]}
    return u


# -- softmax rows ------------------------------------------------------------------------------------

def softmax_row(B, xs: list, a: list, kind: str, grads: bool, label_scale: list | None = None,
                label_soft: list | None = None, mags: list | None = None, has_cw: bool = False) -> Unit:
    """One row of the softmax family along the class axis.

    ``xs``: the row's logits, exact floats (``±inf``, NaN allowed) or enclosures. ``a``: exact label
    factors ``a_c = cw_c y'_c`` (`Fraction`, ``None`` where 0). ``kind`` is ``"ce"`` (the loss
    ``sum_c a_c (LSE - x_c)``), ``"log_softmax"`` or ``"softmax"``.

    With ``j0`` the index of a largest logit, ``d_c = x_c - x_j0`` (exact) and
    ``T = sum_{c != j0} exp(d_c)``: ``-log p_c = -d_c + log1p(T)`` (``LSE - x_c`` without
    cancellation: both terms are >= 0) and ``p_c = exp(d_c) / S``, ``S = 1 + T``.
    ``dl/dx_j = A p_j - a_j`` with ``A = sum a``, also written ``(A exp(d_j) - a_j S) / S`` so that it
    is an exact zero when it should be. ``label_scale[c]`` (``(1-e) cw_c``, exact, ``None`` where 0)
    gives ``dl/dy_c = label_scale[c] (-log p_c)``.

    Conventions: a ``-inf`` logit is a class of probability 0, contributing 0 when ``a_c = 0``
    and ``+inf`` otherwise; one ``+inf`` logit is the one-hot limit; several ``+inf`` or no finite
    logit (all ``-inf``) is undefined (NaN), as is any NaN logit.
    """
    C = len(xs)
    zero, one = B.num(0.0), B.num(1.0)
    n_out = 1 if kind == "ce" else C
    want_labels = grads and label_scale is not None

    def undefined():
        u = Unit([NAN] * n_out, [0.0] * n_out)
        if grads and kind != "softmax":
            u.grads = {"logits": [NAN] * C}
            u.grad_sens = {"logits": [0.0] * C}
            if want_labels:
                u.grads["labels"] = [NAN] * C
                u.grad_sens["labels"] = [0.0] * C
        return u

    if any(is_special(x) and math.isnan(x) for x in xs):
        return undefined()
    plus = [c for c, x in enumerate(xs) if is_special(x) and x == INF]
    finite = [c for c, x in enumerate(xs) if not (is_special(x) and math.isinf(x))]
    if len(plus) > 1 or (not plus and not finite):
        return undefined()
    A_q = sum((v for v in a if v is not None), ZERO_Q)
    Cq = Q(C)

    p_q = None  # p as exact rationals, when they are
    if plus:  # the one-hot limit at the +inf class
        k = plus[0]
        nlp = [Split(ZERO_Q, zero) if c == k else INF for c in range(C)]
        logp = [Split(ZERO_Q, zero) if c == k else -INF for c in range(C)]
        e = [one if c == k else zero for c in range(C)]
        S = one
        j0 = k
        dx_rest = [zero] * C
        sens_zero = True
    else:
        j0 = max(finite, key=lambda c: xs[c] if is_special(xs[c]) else B.to_float(xs[c]))
        exact = is_special(xs[j0]) and all(is_special(xs[c]) for c in finite)
        if exact:
            dq = {c: Q(xs[c]) - Q(xs[j0]) for c in finite}
            d = {c: (zero if dq[c] == 0 else B.frac(dq[c])) for c in finite}
        else:
            d = {c: (zero if c == j0 else xs[c] - xs[j0]) for c in finite}
        e = [zero] * C
        for c in finite:
            e[c] = one if c == j0 else B.exp(d[c])
        T = _sum(B, [e[c] for c in finite if c != j0])
        L1 = B.log1p(T)
        S = one + T
        if exact:
            nlp = [Split(-dq[c], L1) if c in d else INF for c in range(C)]
            logp = [Split(dq[c], -L1) if c in d else -INF for c in range(C)]
        else:
            nlp = [(L1 - d[c]) if c in d else INF for c in range(C)]
            logp = [(d[c] - L1) if c in d else -INF for c in range(C)]
        # p_j - [j == j0], the part of A p_j - a_j beyond its exact part
        dx_rest = [-(T / S) if j == j0 else e[j] / S for j in range(C)]
        sens_zero = False
        if exact and all(dq[c] == 0 for c in finite):
            # Equal finite logits: p is exactly 1/n on them, so every derivative is rational
            # (and exactly 0 when the labels are uniform too, e.g. smoothing 1 over 3 classes).
            p_q = [Q(1, len(finite)) if c in d else ZERO_Q for c in range(C)]

    # sensitivities, from float approximations
    Sf = _f(B, S)
    pf = [_f(B, e[c]) / Sf for c in range(C)]
    if mags is None:
        mags = [abs(x) if is_special(x) else abs(B.to_float(x)) for x in xs]
    mags = [0.0 if math.isinf(m) else m for m in mags]
    xbar = sum(m * p for m, p in zip(mags, pf))
    spread = [m + xbar - 2 * m * p for m, p in zip(mags, pf)]  # sum_k |x_k| |delta_ck - p_k|

    u = Unit([], [])
    if kind == "ce":
        if any(a[c] is not None and is_special(nlp[c]) for c in range(C)):
            loss = INF
        elif isinstance(nlp[j0], Split):
            used = [c for c in range(C) if a[c] is not None]
            loss = Split(sum((a[c] * nlp[c].exact for c in used), ZERO_Q),
                         _sum(B, [B.frac(A_q) * nlp[j0].rest]) if used else zero)
        else:
            loss = _sum(B, [B.frac(a[c]) * nlp[c] for c in range(C) if a[c] is not None])
        u.out = [loss]
        af = [0.0 if v is None else float(v) for v in a]
        Af = float(A_q)
        s = 0.0 if sens_zero else sum(m * abs(Af * p - ac) for m, p, ac in zip(mags, pf, af))
        if label_scale is not None and label_soft is not None:
            s += sum(_safe(lambda c=c: float(label_scale[c]) * _f(B, nlp[c])) * label_soft[c]
                     for c in range(C) if label_soft[c] and label_scale[c] is not None)
        if has_cw:
            s += abs(_f(B, loss))
        u.out_sens = [s]
        if grads:
            Ab = B.frac(A_q)
            gx, gs = [], []
            for j in range(C):
                aj = a[j] if a[j] is not None else ZERO_Q
                ex = (A_q if j == j0 else ZERO_Q) - aj
                v = Split(ex, Ab * dx_rest[j] if not sens_zero else zero)
                if p_q is not None:
                    v = Split(A_q * p_q[j] - aj, zero)
                elif not sens_zero:
                    v.alt = (Ab * e[j] - B.frac(aj) * S) / S if aj else Ab * e[j] / S
                gx.append(v)
                s = 0.0 if sens_zero else Af * pf[j] * spread[j]
                if has_cw or (label_soft and any(label_soft)):
                    s += pf[j] * (Af - af[j]) + af[j] * (1 - pf[j])
                gs.append(s)
            u.grads["logits"], u.grad_sens["logits"] = gx, gs
            if want_labels:
                gl, ls = [], []
                for c in range(C):
                    sc = label_scale[c]
                    if sc is None:
                        gl.append(zero)
                        ls.append(0.0)
                    elif is_special(nlp[c]):
                        gl.append(INF)
                        ls.append(0.0)
                    else:
                        gl.append(_scale_q(B, sc, nlp[c]))
                        ls.append(0.0 if sens_zero else float(sc) * spread[c])
                u.grads["labels"], u.grad_sens["labels"] = gl, ls
        return u

    if kind == "log_softmax":
        u.out = logp
        u.out_sens = [0.0 if sens_zero else s for s in spread]
        if grads:
            Cb = B.num(float(C))
            gx = []
            for j in range(C):
                v = Split((1 - Cq) if j == j0 else ONE_Q, -(Cb * dx_rest[j]) if not sens_zero else zero)
                if p_q is not None:
                    v = Split(1 - Cq * p_q[j], zero)
                elif not sens_zero:
                    v.alt = (S - Cb * e[j]) / S
                gx.append(v)
            u.grads["logits"] = gx
            u.grad_sens["logits"] = [0.0 if sens_zero else C * p * s for p, s in zip(pf, spread)]
        return u

    u.out = [e[c] / S for c in range(C)]  # softmax
    u.out_sens = [0.0 if sens_zero else p * s for p, s in zip(pf, spread)]
    return u


# -- categorical cross-entropy on probabilities ----------------------------------------------------

def categorical_probs(B, ps: list, a: list, grads: bool, label_scale: list, label_soft: list,
                      has_cw: bool) -> Unit:
    """``l = -sum_c a_c log p_c`` with exact ``a_c = cw_c y'_c`` (``None`` where 0, contributing 0
    even at ``p_c = 0``); no renormalisation, no clipping. ``dl/dp_c = -a_c / p_c``;
    ``dl/dy_c = -label_scale[c] log p_c``."""
    C = len(ps)
    zero = B.num(0.0)
    nlog = [INF if p == 0.0 else -B.log(B.num(p)) for p in ps]
    terms = [B.frac(a[c]) * nlog[c] if not is_special(nlog[c]) else INF for c in range(C) if a[c] is not None]
    loss = _sum(B, terms)
    af = [0.0 if v is None else float(v) for v in a]
    s = sum(af)
    s += sum(_safe(lambda c=c: float(label_scale[c]) * _f(B, nlog[c])) for c in range(C)
             if label_soft[c] and label_scale[c] is not None)
    if has_cw:
        s += abs(_f(B, loss))
    u = Unit([loss], [s])
    if grads:
        gp, gps, gl, gls = [], [], [], []
        for c, p in enumerate(ps):
            if a[c] is None:
                gp.append(zero)
                gps.append(0.0)
            else:
                gp.append(-INF if p == 0.0 else -(B.frac(a[c]) / B.num(p)))
                gps.append(_safe(lambda c=c, p=p: (3.0 if has_cw else 2.0) * af[c] / p))
            if label_scale[c] is None:
                gl.append(zero)
                gls.append(0.0)
            else:
                lsf = float(label_scale[c])
                gl.append(INF if is_special(nlog[c]) else B.frac(label_scale[c]) * nlog[c])
                gls.append(lsf + (_safe(lambda c=c: lsf * _f(B, nlog[c])) if has_cw else 0.0))
        u.grads = {"probs": gp, "labels": gl}
        u.grad_sens = {"probs": gps, "labels": gls}
    return u


# -- arithmetic on enclosures, splits and specials ---------------------------------------------------

def _scale_q(B, w: Q, v):
    """``w * v`` for an exact ``w``."""
    if isinstance(v, Split):
        return Split(w * v.exact, B.frac(w) * v.rest, None if v.alt is None else B.frac(w) * v.alt)
    return v if w == 1 else B.frac(w) * v


def _sum(B, terms: list):
    """Sum enclosures, splits and specials: NaN wins, then opposite infinities give NaN, then
    infinity; splits keep their exact parts exact."""
    specials = [t for t in terms if is_special(t)]
    if specials:
        if any(math.isnan(t) for t in specials):
            return NAN
        if INF in specials and -INF in specials:
            return NAN
        return specials[0]
    splits = [t for t in terms if isinstance(t, Split)]
    total = B.num(0.0)
    for t in terms:
        total = total + (t.rest if isinstance(t, Split) else t)
    if splits:
        return Split(sum((t.exact for t in splits), ZERO_Q), total)
    return total
