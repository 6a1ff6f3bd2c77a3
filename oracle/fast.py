"""The oracle's fast path: vectorised enclosures with proven bounds, the slow path where they fail.

For the common cases (sigmoid cross-entropy on logits and softmax cross-entropy with dense or
integer labels, unweighted, no smoothing, ``reduction="none"``) the value and gradients of every
element are computed in numpy with the error-bounded functions of ``oracle/fastmath.py``: in
float64 for float32, float16 and bfloat16 results (about ``2**-47`` relative), in double-double for
float64 results (about ``2**-85``). Each result is an approximation and an absolute error bound; it
is *decided* when every point of ``[approx - bound, approx + bound]`` rounds to the same value of
the target format (the test of `round_check`), exactly the criterion of the arbitrary-precision
certifier (``oracle/certify.py``). Every element that is not decided, and every input outside the
fast formulas (infinite logits, rows holding one, huge magnitudes), goes to the slow path,
``oracle.evaluate`` on a case made of just those elements. So a result is never less certain than
the slow path's; it is only cheaper. ``tests/test_fast_oracle.py`` and
``benchmarks/oracle_speed.py --cross-check`` compare the two paths on random and adversarial inputs.

Sensitivities (``sens``, a float estimate that scales a tolerance, never certified) follow the
slow path's formulas from float64 approximations; they agree with it to about ``1e-12`` relative.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cases.dtypes import FloatFormat, fmt

from . import fastmath as F
from .fastmath import TINY, U

CHUNK = 1 << 14  # elements per numpy pass: small enough to stay in cache
_INFL = 1.0 + 2.0 ** -40  # inflation of every computed bound (covers the bound's own roundings)
_DD_ABS = 64 * TINY  # absolute floor of a double-double result (underflow in intermediate steps)
DD_MAX = 2.0 ** 900  # beyond this magnitude Dekker's splitting could overflow: slow path

ELEMENTWISE = ("sigmoid_bce_logits",)
ROWS = ("softmax_ce_sparse", "softmax_ce_dense")


# ------------------------------------------------------------------------------------------------
# the rounding test
# ------------------------------------------------------------------------------------------------

def round_check(hi, lo, err, f: FloatFormat, sign=0, nudged=None) -> tuple[np.ndarray, np.ndarray]:
    """``(value, decided)``: the value of format ``f`` (as float64) that every point of
    ``[hi + lo - err, hi + lo + err]`` rounds to (nearest-even), where ``decided``.

    With ``R`` the format's value nearest ``|hi|``, its rounding cell is ``(R - qd/2, R + qu/2)``
    (``qu`` the spacing above ``R``, ``qd`` below: half of it at a power of two). ``|hi| - R`` is
    exact (both are multiples of ``ulp(hi)``, and close); adding ``lo`` rounds once, which the
    bound absorbs. The test is strict (a touched tie is undecided), and an interval that straddles
    zero is undecided (its ends round to zeros of different signs), as in the slow certifier.
    """
    if f.name == "float32" and np.ndim(lo) == 0 and lo == 0 and nudged is None:
        return _round_check_native(np.asarray(hi, dtype=np.float64), np.asarray(err, dtype=np.float64), f,
                                   np.asarray(sign))
    hi = np.asarray(hi, dtype=np.float64)
    lo = np.asarray(lo, dtype=np.float64)
    sign = np.asarray(sign)
    neg = (sign < 0) | ((sign == 0) & np.signbit(hi))
    a = np.abs(hi)
    lo_m = lo * (1.0 - 2.0 * neg)
    exact_zero = (a == 0) & (lo == 0) & (err == 0)
    R, qu, qd = _nearest(a, f)
    finite = np.isfinite(R) & np.isfinite(err) & (R <= f.max_finite)
    R = np.where(finite, R, 0.0)
    with np.errstate(invalid="ignore", over="ignore"):
        D = np.where(finite, a - R, 0.0) + np.where(finite, lo_m, 0.0)
        bound = np.where(finite, err, 0.0) * _INFL + np.abs(D) * (4 * U) + (qu * 2.0 ** -50) + TINY
        up = D + bound < qu * 0.5
        agree = (np.signbit(hi) == neg) | (hi == 0)  # the approximation is on the known side
        down = np.where(R == 0, (a + lo_m - bound > 0) | (sign != 0), D - bound > -qd * 0.5)
    ok = (finite & up & down & agree) | exact_zero
    if nudged is not None and f.precision == 53:
        inside = np.where(R == 0, (lo == 0) & (sign != 0), (lo_m < qu * 0.5) & (lo_m > -qd * 0.5))
        ok = np.where(nudged, finite & inside & agree, ok)
    val = R * (1.0 - 2.0 * neg)
    val = np.where(exact_zero, 0.0, val)
    return val, ok


def _round_check_native(hi, err, f: FloatFormat, sign):
    """`round_check` for a float64 approximation (no low part) into float32 (float16 is slower so
    in numpy), with numpy's own correctly rounded casts: ``R`` = the cast of ``|hi|``, the cell's edges the exact
    float64 midpoints between ``R`` and its neighbours (``nextafter`` in the format)."""
    nt = f.np_dtype.type
    neg = np.signbit(hi) if sign.ndim == 0 and sign == 0 else (sign < 0) | ((sign == 0) & np.signbit(hi))
    a = np.abs(hi)
    with np.errstate(over="ignore", invalid="ignore"):
        r = a.astype(f.np_dtype)
        R = r.astype(np.float64)
        up = (R + np.nextafter(r, nt(np.inf)).astype(np.float64)) * 0.5
        dn = (R + np.nextafter(r, nt(0)).astype(np.float64)) * 0.5
        bound = err * _INFL + TINY
        ok = (a + bound < up) & (R <= f.max_finite) & np.isfinite(bound)
        if sign.ndim == 0 and sign == 0:
            ok &= a - bound > dn
        else:
            ok &= (a - bound > dn) | ((R == 0) & (sign != 0))
            ok &= (np.signbit(hi) == neg) | (hi == 0)
    return R * (1.0 - 2.0 * neg), ok


def _nearest(a, f: FloatFormat):
    """``(R, qu, qd)``: the value of ``f`` nearest the float64 ``a >= 0`` (ties to even), the
    spacing above it and the spacing below it. ``q = 2**(max(e, emin) - p + 1)`` for ``a`` in
    ``[2**e, 2**(e+1))``; ``a / q`` is exact, ``rint`` rounds it to nearest-even, ``* q`` is exact.
    ``R`` may round up to ``2**(e+1)``, whose spacing above is ``2q``; at a power of two in the
    normal range the spacing below is half the spacing above. Beyond the largest finite value,
    ``R`` is inf."""
    if f.precision == 53:
        R = a
        with np.errstate(over="ignore"):
            qu = np.spacing(a)
        m, e = np.frexp(a)
        qd = np.where((m == 0.5) & (a > f.min_normal), qu * 0.5, qu)
        return R, qu, qd
    # (masks select by exact arithmetic: np.where is slow on unpredictable masks)
    m, e = np.frexp(np.maximum(a, 0.5 * f.min_subnormal))  # a = m 2**e, m in [0.5, 1); 0 -> emin
    ex = np.maximum(e - 1, f.emin)
    q = np.ldexp(1.0, ex - (f.precision - 1))
    with np.errstate(over="ignore", invalid="ignore"):
        R = np.rint(a / q) * q
    top = R == np.ldexp(1.0, ex + 1)
    bottom = (R == np.ldexp(1.0, ex)) & (ex > f.emin)
    qu = q * (1.0 + top)
    qd = q * (1.0 - 0.5 * bottom)
    R = np.where(R > f.max_finite, np.inf, R)
    return R, qu, qd


def split_check(eh, el, sign, bound, f: FloatFormat) -> tuple[np.ndarray, np.ndarray]:
    """Decide ``E + r``: ``E = eh + el`` exact, ``r`` of sign ``sign`` (+1 or -1, nonzero) with
    ``0 < |r| <= bound``. The slow certifier's `Split` decision, vectorised.

    The half-open interval ``(E, E + sign bound]`` is decided when the closed one lies in one
    rounding cell, or when ``E`` is exactly a tie (a cell edge) and ``bound`` is below half the
    smaller neighbouring spacing: then the whole interval lies in the cell on ``sign``'s side.
    """
    half = 0.5 * bound * _INFL
    v1, ok1 = round_check(eh, el + sign * half, half + TINY, f, np.where((eh == 0) & (el == 0), sign, 0))
    # Is E exactly on a tie? |E| - R = +-q/2 exactly (TwoSum confirms no rounding in the sum).
    neg = np.signbit(eh)
    a = np.abs(eh)
    lo_m = np.where(neg, -el, el)
    R, qu, qd = _nearest(a, f)
    R = np.where(np.isfinite(R), R, np.nan)
    d, derr = two_sum_np(a - R, lo_m)
    tie = (derr == 0) & ((d == 0.5 * qu) | (d == -0.5 * qd)) & (eh != 0)
    small = np.minimum(qu, qd) * 0.25
    # a point a quarter-spacing beyond the tie, on sign's side, names the cell
    v2, ok2 = round_check(eh, el + sign * small, np.zeros_like(small), f, np.where(neg, -1, 1))
    ok2 = ok2 & tie & (bound * _INFL < 2 * small)
    return np.where(ok1, v1, v2), ok1 | ok2


def two_sum_np(a, b):
    return F.two_sum(a, b)


def _retry_split(val, ok, split, f, key=None):
    """Where `round_check` left a value undecided, try `split_check` on its exact part.
    ``split``: a tuple (exact hi, exact lo, sign, bound) of arrays, or a function of the
    undecided indices returning a dict of such tuples, of which ``key`` is taken."""
    if ok.all():
        return val, ok
    todo = np.flatnonzero(~ok)
    parts = split(todo)[key] if callable(split) else tuple(np.broadcast_to(v, ok.shape)[todo] for v in split)
    eh, el, sign, bound = (np.broadcast_to(v, todo.shape) for v in parts)
    keep = np.isfinite(bound)
    todo, eh, el, sign, bound = todo[keep], eh[keep], el[keep], sign[keep], bound[keep]
    if todo.size:
        v2, ok2 = split_check(eh, el, sign, bound, f)
        val, ok = val.copy(), ok.copy()
        val[todo] = np.where(ok2, v2, val[todo])
        ok[todo] = ok2
    return val, ok


# ------------------------------------------------------------------------------------------------
# sigmoid cross-entropy on logits
# ------------------------------------------------------------------------------------------------

def _sigmoid_f64_x(x):
    """The part of `_sigmoid_f64` that depends on the logits only (shared between labels)."""
    a = np.abs(x)
    pos = ~np.signbit(x) | (x == 0)
    E = F.exp_neg(-a)
    L = F.log1p_unit(E)
    D = 1.0 + E
    inv = 1.0 / D
    ed = E / D
    floor = (a > -F.EXP_MIN) * F.EXP_FLOOR_ABS
    # selections by multiplying with 1.0 and 0.0 (exact for finite values, and about twice as
    # fast as np.where on unpredictable masks)
    pf = pos.astype(np.float64)
    nf = 1.0 - pf
    s = inv * pf + ed * nf
    sn = ed * pf + inv * nf
    s_c = (1.0 - np.rint(sn * 2.0 ** 53) * 2.0 ** -53) * pf + s * nf
    return a, pos, L, floor, s, sn, s_c, pf


def _sigmoid_f64(x, z, xpart=None):
    """Float64 tier. Returns (loss, loss_err, g, g_err, s, sn) with s = sigmoid(x), sn = sigmoid(-x).

    ``loss = A + L``: ``A = (1-z) x`` for ``x >= 0`` (``x - z x``, ``z x`` exact for inputs of at
    most 26 bits: one rounding) or ``-z x`` (exact); ``L = log1p(E)``, ``E = exp(-|x|)``.
    ``|dL/L| <= LOG1P_REL + EXP_REL (1 + EXP_REL)`` (``log1p(t) >= t/(1+t)``); the sum rounds once.
    ``g = sigmoid(x) - z``: ``1/(1+E)`` or ``E/(1+E)``, relative error ``<= 2 EXP_REL + 3u``; the
    difference rounds once. Where ``|x| > 700`` ``E`` is 0 and every bound gets ``2**-1009``.
    """
    a, pos, L, floor, s, sn, s_c, pf = _sigmoid_f64_x(x) if xpart is None else xpart
    zx = z * x
    A = x * pf - zx  # x - z x for x >= 0 (one rounding), -z x exactly for x < 0
    loss = A + L
    eps_L = F.LOG1P_REL + F.EXP_REL * (1 + F.EXP_REL)
    loss_err = (A + loss) * U + eps_L * L + floor  # (the u A term is exact 0 for x < 0: kept, harmless)
    # s_c, for the sensitivities only: sigmoid(x) for x >= 0 lies in [1/2, 1], where doubles are
    # spaced 2**-53: 1 - rint(2**53 sigmoid(-x)) 2**-53 is (but for near-ties) the correctly
    # rounded double the slow path's float formulas start from; 1/(1+E) can be an ulp off
    # g = s - z, written (1 - z) - sigmoid(-x) for x >= 0 so that z = 1 keeps full relative accuracy
    oh, ol = F.two_sum(1.0 - 0.0 * z, -z)
    g = ((oh - sn) + ol) * pf + (s - z) * (1.0 - pf)
    g_err = np.minimum(s, sn) * (2 * F.EXP_REL + 3 * U) + 2 * U * np.abs(g) + floor  # min: sn if x >= 0

    def splits(i):
        """Exact part + perturbation of known sign, at indices i (for ties, see split_check)."""
        p = pos[i]
        zi, zxi, ohi, oli = (v if np.ndim(v) == 0 else v[i] for v in (z, zx, oh, ol))
        Ah, Al = F.two_sum(np.where(p, x[i], 0.0), -zxi)
        return {"loss": (Ah, Al, 1, L[i] * (1 + eps_L) + floor[i]),
                "grad": (np.where(p, ohi, -zi), np.where(p, oli, 0.0), np.where(p, -1, 1),
                         np.where(p, sn[i], s[i]) * (1 + 2 * F.EXP_REL + 3 * U) + floor[i])}
    return loss, loss_err, g, g_err, s_c, sn, splits


def _sigmoid_dd(x, z):
    """Double-double tier: the same formulas with `fastmath`'s double-word operations; ``z x`` by
    TwoProd (exact). Bounds: ``EXPDD_REL``, ``LOG1PDD_REL`` and ``DD_OP`` per operation, relative,
    plus `_DD_ABS`; where ``|x| > 708``, ``E`` is 0 with ``2**-1021``."""
    a = np.abs(x)
    pos = ~np.signbit(x) | (x == 0)
    Eh, El = F.exp_dd(-a, np.zeros_like(a))
    Lh, Ll = F.log1p_dd(Eh, El)
    ph, pl = F.two_prod(z, x)
    # A = x - z x (x >= 0) or -z x (x < 0)
    Ah, Al = F.dd_add_d(-ph, -pl, np.where(pos, x, 0.0))
    lh, ll = F.dd_add(Ah, Al, Lh, Ll)
    eps_E = F.EXPDD_REL
    eps_L = F.LOG1PDD_REL + eps_E * (1 + eps_E)
    floor = np.where(a > -F.EXPDD_MIN, F.EXPDD_FLOOR_ABS, 0.0) + _DD_ABS
    loss_err = F.DD_OP * np.abs(Ah) + eps_L * np.abs(Lh) + F.DD_OP * np.abs(lh) + floor
    Dh, Dl = F.dd_add_d(Eh, El, 1.0)
    one = np.ones_like(a)
    zero = np.zeros_like(a)
    ih, il = F.dd_div(one, zero, Dh, Dl)
    eh, el = F.dd_div(Eh, El, Dh, Dl)
    sh, sl = np.where(pos, ih, eh), np.where(pos, il, el)
    snh = np.where(pos, eh, ih)
    snl = np.where(pos, el, il)
    # g = s - z, written (1 - z) - sigmoid(-x) for x >= 0 (see _sigmoid_f64)
    oh, ol = F.two_sum(np.ones_like(z), -z)
    bh, bl = np.where(pos, oh, -z), np.where(pos, ol, 0.0)
    ch, cl = np.where(pos, -snh, sh), np.where(pos, -snl, sl)
    gh, gl = F.dd_add(bh, bl, ch, cl)
    g_err = np.abs(ch) * (2 * eps_E + 4 * F.DD_OP) + F.DD_OP * np.abs(gh) + floor
    # exact part + perturbation (see split_check); x - z x is not exact in double-word for x >= 0
    def splits(i):
        p = pos[i]
        phi, pli, bhi, bli = (np.broadcast_to(v, pos.shape)[i] for v in (ph, pl, bh, bl))
        return {"loss": (np.where(p, 0.0, -phi), np.where(p, 0.0, -pli), 1,
                         np.where(p, np.inf, np.abs(Lh[i]) * (1 + eps_L) + floor[i])),
                "grad": (bhi, bli, np.where(p, -1, 1), np.abs(ch[i]) * (1 + 2 * eps_E + 4 * F.DD_OP) + floor[i])}
    return (lh, ll), loss_err, (gh, gl), g_err, sh, snh, splits


@dataclass
class FastResult:
    value: np.ndarray  # in the case dtype's numpy type, NaN where undefined
    undefined: np.ndarray  # bool
    sens: np.ndarray  # float64
    grads: dict = field(default_factory=dict)  # input name -> array in the case dtype
    grad_sens: dict = field(default_factory=dict)  # input name -> float64 array
    fallbacks: int = 0  # elements settled by the slow (arbitrary-precision) path
    prec: np.ndarray | None = None  # bits of working precision behind each value
    grad_prec: dict = field(default_factory=dict)
    undecided: np.ndarray | None = None  # bool: the slow path's cap was reached (value NaN)
    grad_undecided: dict = field(default_factory=dict)


def _sigmoid_prepare(x, f: FloatFormat):
    """The label-independent part of a chunk: (nan, fin, xs, xpart or None)."""
    nan = np.isnan(x)
    fin = np.isfinite(x)
    dd = f.precision > 26
    if dd:
        fin &= np.abs(x) <= DD_MAX
    xs = x if fin.all() else np.where(fin, x, 0.0)
    return nan, fin, xs, (None if dd else _sigmoid_f64_x(xs))


def _sigmoid_chunk(x, z, f: FloatFormat, grads: bool, prepared=None):
    """Decided values for one chunk: (value, sens, gx, gx_sens, gz, gz_sens, decided, nan)."""
    nan, fin, xs, xpart = _sigmoid_prepare(x, f) if prepared is None else prepared
    dd = f.precision > 26
    nudged = None
    if dd:
        (lh, ll), le, (gh, gl), ge, s, sn, splits = _sigmoid_dd(xs, z)
        # |x| > 746: exp(-|x|) < 2**-1076, so loss and gradient are an exact double-word (x - z x,
        # 1 - z or -z) plus a perturbation below 2**-1076 of known sign
        nudged = np.abs(xs) > 746.0
    else:
        lh, le, gh, ge, s, sn, splits = _sigmoid_f64(xs, z, xpart)
        ll = gl = 0.0
    val, ok = round_check(lh, ll, le, f, 1, nudged)  # the loss of a finite logit is > 0
    val, ok = _retry_split(val, ok, splits, f, "loss")
    soft = (z != 0.0) & (z != 1.0)
    any_soft = bool(np.any(soft))
    mag = np.abs(xs) if xpart is None else xpart[0]
    sens = mag * np.abs(s - z)
    if any_soft:
        sens = sens + np.where(soft, np.abs(z) * mag, 0.0)
    out = {"value": val, "sens": sens}
    decided = fin & ok
    if grads:
        # sigmoid(x) - z: the perturbation is +s (x < 0) or -sigmoid(-x) (x >= 0)
        gsign = np.where(soft, 0.0, 1.0 - 2.0 * z) if any_soft else 1.0 - 2.0 * z
        if nudged is not None:
            gsign = np.where(nudged, np.where(np.signbit(xs), 1, -1), gsign)
            nz = nudged & ((gh != 0) | (gl != 0))  # the sign of a nonzero exact part wins
            gsign = np.where(nz, np.where(np.signbit(gh), -1, 1), gsign)
        gval, gok = round_check(gh, gl, ge, f, gsign, nudged)
        gval, gok = _retry_split(gval, gok, splits, f, "grad")
        decided &= gok
        out["gx"] = gval
        out["gx_sens"] = mag * s * sn + (np.where(soft, np.abs(z), 0.0) if any_soft else 0.0)
        out["gz"] = -xs + 0.0  # exact; + 0.0 turns -0 into +0 like the slow path's exact zero
        out["gz_sens"] = mag
    # NaN logits: undefined everywhere, sensitivities 0
    if nan.any():
        for k in out:
            out[k] = np.where(nan, 0.0 if k.endswith("sens") else np.nan, out[k])
    return out, decided | nan, nan


def elementwise(variant: str, dtype: str, logits, labels, options: dict | None = None,
                grads: bool = True) -> FastResult:
    """Certified value and gradients of an elementwise variant over 1-d ``logits`` (values
    representable in ``dtype``) with ``labels`` (an array of the same length or a scalar): what
    ``oracle.evaluate`` gives for that case with ``reduction="none"``, as flat arrays."""
    return elementwise_labels(variant, dtype, logits, [labels], options, grads)[0]


def elementwise_labels(variant: str, dtype: str, logits, labels: list, options: dict | None = None,
                       grads: bool = True) -> list[FastResult]:
    """`elementwise` for several labels (each a scalar or an array) over the same logits; what
    depends on the logits alone (exp, log1p, the sigmoid) is computed once for all of them."""
    f = fmt(dtype)
    x = np.asarray(logits).astype(f.np_dtype, copy=False).reshape(-1)
    zs = [np.broadcast_to(np.asarray(z).astype(f.np_dtype, copy=False), x.shape) for z in labels]
    # a scalar label stays a scalar in the arithmetic (numpy broadcasts it for free)
    scalar = [np.ndim(z) == 0 for z in labels]
    opts = {k: v for k, v in (options or {}).items() if k != "reduction"}
    fast = variant in ELEMENTWISE and not set(opts) - {"label_smoothing"} and not opts.get("label_smoothing")
    with np.errstate(invalid="ignore"):  # widening a signalling NaN warns; exact otherwise
        z64s = [z.astype(np.float64) for z in zs]
        x64 = x.astype(np.float64)
    if not fast or not all(np.all((z >= 0) & (z <= 1)) for z in z64s):
        return [_slow_elementwise(variant, dtype, x, z, opts, grads) for z in zs]
    n = x64.size
    parts = []
    for _ in zs:
        d = {"value": np.empty(n), "sens": np.empty(n), "ok": np.empty(n, dtype=bool),
             "nan": np.zeros(n, dtype=bool)}
        if grads:
            d.update({k: np.empty(n) for k in ("gx", "gx_sens", "gz", "gz_sens")})
        parts.append(d)
    for lo in range(0, n, CHUNK):
        sl = slice(lo, min(n, lo + CHUNK))
        with np.errstate(all="ignore"):
            prepared = _sigmoid_prepare(x64[sl], f)
            for d, z64, sc in zip(parts, z64s, scalar):
                out, ok, nan = _sigmoid_chunk(x64[sl], float(z64[0]) if sc and n else z64[sl], f, grads, prepared)
                d["ok"][sl], d["nan"][sl] = ok, nan
                for k, v in out.items():
                    d[k][sl] = v
    return [_finish_elementwise(variant, dtype, x, z, opts, grads, d) for z, d in zip(zs, parts)]


def _finish_elementwise(variant, dtype, x, z, opts, grads, d) -> FastResult:
    """A FastResult from the chunks' arrays, the undecided elements settled by the slow path."""
    f = fmt(dtype)
    n = x.size
    todo = np.flatnonzero(~d["ok"])
    # constant arrays are read-only broadcasts unless the slow path has to write into them
    const = (lambda v, dt: np.full(n, v, dtype=dt)) if todo.size else \
        (lambda v, dt: np.broadcast_to(np.array(v, dtype=dt), (n,)))
    prec_bits = 53 if f.precision <= 26 else 106
    res = FastResult(d["value"], d["nan"], d["sens"], prec=const(prec_bits, np.int64), undecided=const(False, bool))
    if grads:
        res.grads = {"logits": d["gx"], "labels": d["gz"]}
        res.grad_sens = {"logits": d["gx_sens"], "labels": d["gz_sens"]}
        res.grad_prec = {k: const(prec_bits, np.int64) for k in ("logits", "labels")}
        res.grad_undecided = {k: const(False, bool) for k in ("logits", "labels")}
    if todo.size:
        slow = _slow_elementwise(variant, dtype, x[todo], z[todo], opts, grads)
        res.value[todo], res.sens[todo], res.undefined[todo] = slow.value, slow.sens, slow.undefined
        res.prec[todo] = slow.prec
        res.undecided[todo] = slow.undecided
        for name in res.grads:
            res.grad_undecided[name][todo] = slow.grad_undecided[name]
            res.grads[name][todo] = slow.grads[name]
            res.grad_sens[name][todo] = slow.grad_sens[name]
            res.grad_prec[name][todo] = slow.grad_prec[name]
        res.fallbacks = int(todo.size)
    res.value = res.value.astype(f.np_dtype)
    for name in list(res.grads):
        res.grads[name] = res.grads[name].astype(f.np_dtype)
    return res


def _slow_elementwise(variant, dtype, x, z, opts, grads) -> FastResult:
    from cases import Case

    from . import evaluate_slow

    f = fmt(dtype)
    case = Case(variant, dtype, {"logits": np.asarray(x, f.np_dtype), "labels": np.asarray(z, f.np_dtype)},
                dict(opts, reduction="none"))
    r = evaluate_slow(case, grads=grads)
    if r.status == "invalid":
        raise ValueError(f"invalid input: {r.reason}")
    out = FastResult(r.value.value.reshape(-1).astype(np.float64), r.value.undefined.reshape(-1),
                     r.value.sens.reshape(-1), fallbacks=int(np.size(x)), prec=r.value.prec.reshape(-1),
                     undecided=r.value.undecided.reshape(-1))
    for name, q in r.grads.items():
        out.grad_undecided[name] = q.undecided.reshape(-1)
        out.grads[name] = q.value.reshape(-1).astype(np.float64)
        out.grad_sens[name] = q.sens.reshape(-1)
        out.grad_prec[name] = q.prec.reshape(-1)
    return out


# ------------------------------------------------------------------------------------------------
# softmax cross-entropy rows (double-double for every target format)
# ------------------------------------------------------------------------------------------------

def _dd_rowsum(h, l):
    """Pairwise double-word sums along axis 1: ``ceil(log2 C)`` levels of `dd_add`, each adding
    at most ``3u**2`` of the partial sums; for terms ``>= 0`` the error is below
    ``ceil(log2 C) DD_OP`` of the total."""
    while h.shape[1] > 1:
        if h.shape[1] % 2:
            h = np.concatenate([h, np.zeros_like(h[:, :1])], axis=1)
            l = np.concatenate([l, np.zeros_like(l[:, :1])], axis=1)
        h, l = F.dd_add(h[:, 0::2], l[:, 0::2], h[:, 1::2], l[:, 1::2])
    return h[:, 0], l[:, 0]


def _rows_chunk(X, labels, sparse: bool, f: FloatFormat, grads: bool):
    """One block of finite rows. Returns (out dict, decided per row).

    ``d = x - max`` (exact, TwoSum), ``e = exp(d)`` (``EXPDD_REL``; the largest class exactly 1),
    ``T = sum_{c != j0} e_c`` and ``T_{-y}`` (pairwise, relative ``levels DD_OP``), ``L1 =
    log1p(T)`` (``LOG1PDD_REL`` + T's relative error: ``log1p(t) >= t/(1+t)``), ``-log p_c = L1 -
    d_c`` (two terms ``>= 0``), ``p_c = e_c / S``, ``S = 1 + T``. Sparse gradients have no
    cancellation: ``p_c`` for ``c != y``, ``-T/S`` at ``y = j0``, ``-(1 + T_{-y})/S`` otherwise.
    Dense gradients ``p_j (A - a_j) - a_j q_j`` with ``q_j = 1 - p_j`` (``T/S`` at ``j0``) get an
    absolute bound from both terms.
    """
    R, C = X.shape
    rows = np.arange(R)
    j0 = np.argmax(X, axis=1)
    m = X[rows, j0]
    dh, dl = F.two_sum(X, -m[:, None])
    eh, el = F.exp_dd(dh, dl)
    eh[rows, j0], el[rows, j0] = 1.0, 0.0
    levels = max(1, int(np.ceil(np.log2(max(C, 2)))))
    eps_e = F.EXPDD_REL
    mask = np.ones_like(eh)
    mask[rows, j0] = 0.0
    # per class: the absolute part of e's bound (the largest class is exactly 1)
    absfloor = (np.where(dh < F.EXPDD_MIN, F.EXPDD_FLOOR_ABS, 0.0) + _DD_ABS) * mask
    # exp(d) < 2**-1076 below d = -746: a probability there rounds to +0 in every format
    vanish = dh < -746.0
    dd_abs = _DD_ABS if C > 1 else 0.0  # a one-class row is exact: loss 0, gradient 0
    Th, Tl = _dd_rowsum(eh * mask, el * mask)
    T_abs = absfloor.sum(axis=1)
    eps_T = eps_e + levels * F.DD_OP
    T_err = eps_T * np.abs(Th) + T_abs
    Sh, Sl = F.dd_add_d(Th, Tl, 1.0)
    Lh, Ll = F.log1p_dd(Th, Tl)
    L_err = (F.LOG1PDD_REL + eps_T) * np.abs(Lh) + T_abs + dd_abs
    # -log p_c = L1 - d_c
    nh, nl = F.dd_add(np.broadcast_to(Lh[:, None], X.shape), np.broadcast_to(Ll[:, None], X.shape), -dh, -dl)
    n_err = L_err[:, None] + F.DD_OP * np.abs(nh) + dd_abs
    ph, pl = F.dd_div(eh, el, np.broadcast_to(Sh[:, None], X.shape), np.broadcast_to(Sl[:, None], X.shape))
    eps_p = eps_e + eps_T + 2 * F.DD_OP
    p_err = eps_p * np.abs(ph) + absfloor + dd_abs
    pf = eh / Sh[:, None]  # the slow path's float estimate: float(e_c) / float(S)
    mags = np.abs(X)
    xbar = (mags * pf).sum(axis=1)
    spread = mags + xbar[:, None] - 2 * mags * pf
    out = {}
    if sparse:
        y = labels
        lh, ll, le = nh[rows, y], nl[rows, y], n_err[rows, y]
        onehot = np.zeros_like(X)
        onehot[rows, y] = 1.0
        a = onehot
        A = np.ones(R)
        soft = None
    else:
        a = labels
        A = a.sum(axis=1)  # sensitivities only
        prod_h, prod_l = F.dd_mul(nh, nl, a, np.zeros_like(a))
        lh, ll = _dd_rowsum(prod_h, prod_l)
        le = (a * n_err).sum(axis=1) * _INFL + levels * F.DD_OP * np.abs(lh) + F.DD_OP * np.abs(lh) \
            + C * dd_abs
        soft = (a != 0.0) & (a != 1.0)
    val, ok = round_check(lh, ll, le, f, 1 if C > 1 else 0)  # > 0 when another class exists
    if sparse and C > 1:  # -d_y exact plus log1p(T) > 0: a tie of -d_y is decided by the rest
        val, ok = _retry_split(val, ok, (-dh[rows, y], -dl[rows, y], 1, np.abs(Lh) + L_err), f)
    sens = (mags * np.abs(A[:, None] * pf - a)).sum(axis=1)
    if soft is not None:
        sens = sens + np.where(soft, nh, 0.0).sum(axis=1)
    out["value"], out["sens"] = val, sens
    decided = ok
    if grads:
        if sparse:
            gh, gl = ph.copy(), pl.copy()
            ge = p_err.copy()
            # at y: -T/S if y == j0, else -(1 + T_{-y})/S
            m2 = mask.copy()
            m2[rows, y] = 0.0
            Uh, Ul = _dd_rowsum(eh * m2, el * m2)
            at_top = y == j0
            numh = np.where(at_top, Th, 0.0)
            numl = np.where(at_top, Tl, 0.0)
            oh, ol = F.dd_add_d(Uh, Ul, 1.0)
            numh, numl = np.where(at_top, numh, oh), np.where(at_top, numl, ol)
            qh, ql = F.dd_div(numh, numl, Sh, Sl)
            gh[rows, y], gl[rows, y] = -qh, -ql
            ge[rows, y] = (eps_T + eps_e + 2 * F.DD_OP) * np.abs(qh) + 2 * T_abs + dd_abs
            g_sens = A[:, None] * pf * spread
        else:
            Ah, Al = _dd_rowsum(a, np.zeros_like(a))  # exact enough: levels DD_OP relative
            bh, bl = F.dd_add(np.broadcast_to(Ah[:, None], X.shape), np.broadcast_to(Al[:, None], X.shape),
                              -a, np.zeros_like(a))
            t1h, t1l = F.dd_mul(ph, pl, bh, bl)
            qh, ql = F.dd_add_d(-ph, -pl, 1.0)
            q_err = p_err
            TSh, TSl = F.dd_div(Th, Tl, Sh, Sl)
            top = np.zeros(X.shape, dtype=bool)
            top[rows, j0] = True
            qh = np.where(top, TSh[:, None], qh)
            ql = np.where(top, TSl[:, None], ql)
            q_err = np.where(top, ((eps_T * 2 + 2 * F.DD_OP) * np.abs(TSh) + 2 * T_abs)[:, None], q_err)
            t2h, t2l = F.dd_mul(a, np.zeros_like(a), qh, ql)
            gh, gl = F.dd_add(t1h, t1l, -t2h, -t2l)
            ge = (np.abs(bh) * p_err + np.abs(t1h) * (levels + 2) * F.DD_OP + a * q_err
                  + np.abs(t2h) * 2 * F.DD_OP) * _INFL + F.DD_OP * np.abs(gh) + 4 * dd_abs
            g_sens = A[:, None] * pf * spread
            if soft is not None:
                anysoft = soft.any(axis=1)[:, None]
                g_sens = g_sens + np.where(anysoft, pf * (A[:, None] - a) + a * (1 - pf), 0.0)
        if sparse:  # p_c > 0 off the label, < 0 at it (for C > 1)
            gsign = np.ones(X.shape, dtype=np.int8)
            gsign[rows, y] = -1
            gsign = gsign if C > 1 else 0
        else:
            gsign = 0
        gv, gok = round_check(gh, gl, ge, f, gsign)
        if sparse:
            flat = vanish.copy()
            flat[rows, y] = False
        else:
            flat = vanish & (a == 0)
        gv, gok = np.where(flat, 0.0, gv), gok | flat
        decided &= gok.all(axis=1)
        out["gx"], out["gx_sens"] = gv, g_sens
        if not sparse:
            lv, lok = round_check(nh, nl, n_err, f, 1 if C > 1 else 0)
            decided &= lok.all(axis=1)
            out["gy"], out["gy_sens"] = lv, spread
    return out, decided


def rows(case, grads: bool = True):
    """The fast path for a softmax cross-entropy case (see `eligible`): an ``OracleResult``."""
    from . import OracleResult, Quantity, evaluate_slow

    f = case.format
    sparse = case.variant == "softmax_ce_sparse"
    axis = case.class_axis
    x = np.moveaxis(case["logits"], axis, -1)
    unit_shape = x.shape[:-1]
    C = x.shape[-1]
    with np.errstate(invalid="ignore"):  # widening a signalling NaN warns; exact otherwise
        X = x.reshape(-1, C).astype(np.float64)
        if sparse:
            lab = case["labels"].reshape(-1).astype(np.int64)
        else:
            lab = np.moveaxis(case["labels"], axis, -1).reshape(-1, C).astype(np.float64)
    Rn = X.shape[0]
    value = np.zeros(Rn)
    sens = np.zeros(Rn)
    decided = np.zeros(Rn, dtype=bool)
    undec = np.zeros(Rn, dtype=bool)
    gundec = {"logits": np.zeros((Rn, C), dtype=bool), "labels": np.zeros((Rn, C), dtype=bool)}
    prec = np.full(Rn, 106, dtype=np.int64)
    gx = np.zeros((Rn, C))
    gxs = np.zeros((Rn, C))
    gy = np.zeros((Rn, C))
    gys = np.zeros((Rn, C))
    fin = np.all(np.isfinite(X) & (np.abs(X) <= DD_MAX), axis=1)
    per = max(1, CHUNK // max(C, 1))
    idx = np.flatnonzero(fin)
    for lo in range(0, idx.size, per):
        sel = idx[lo:lo + per]
        with np.errstate(all="ignore"):
            out, ok = _rows_chunk(X[sel], lab[sel], sparse, f, grads)
        value[sel], sens[sel], decided[sel] = out["value"], out["sens"], ok
        if grads:
            gx[sel], gxs[sel] = out["gx"], out["gx_sens"]
            if not sparse:
                gy[sel], gys[sel] = out["gy"], out["gy_sens"]
    todo = np.flatnonzero(~decided)
    if todo.size:
        from cases import Case

        sub_in = {"logits": X[todo].astype(f.np_dtype),
                  "labels": lab[todo] if sparse else lab[todo].astype(f.np_dtype)}
        sub = Case(case.variant, case.dtype, sub_in, {"reduction": "none"})
        r = evaluate_slow(sub, grads=grads)
        if r.status == "invalid":
            return r
        value[todo], sens[todo], prec[todo] = r.value.value.astype(np.float64), r.value.sens, r.value.prec
        undec[todo] = r.value.undecided
        if grads:
            gx[todo], gxs[todo] = r.grads["logits"].value.astype(np.float64), r.grads["logits"].sens
            gundec["logits"][todo] = r.grads["logits"].undecided
            if not sparse:
                gy[todo], gys[todo] = r.grads["labels"].value.astype(np.float64), r.grads["labels"].sens
                gundec["labels"][todo] = r.grads["labels"].undecided
    undef = np.isnan(value) & ~undec
    vq = Quantity(value.astype(f.np_dtype).reshape(unit_shape), undec.reshape(unit_shape),
                  undef.reshape(unit_shape), prec.reshape(unit_shape), sens.reshape(unit_shape))
    status = "undecided" if undec.any() or any(u.any() for u in gundec.values()) else "ok"
    res = OracleResult(status, None, vq, {}, "arb")
    if grads:
        gprec = np.repeat(prec[:, None], C, axis=1)
        for name, g, s in (("logits", gx, gxs), ("labels", gy, gys)):
            if name not in case.spec.grad_wrt:
                continue
            shape = tuple(unit_shape) + (C,)
            qa = [g.astype(f.np_dtype).reshape(shape), gundec[name].reshape(shape),
                  (np.isnan(g) & ~gundec[name]).reshape(shape), gprec.reshape(shape), s.reshape(shape)]
            qa = [np.moveaxis(v, -1, axis) for v in qa]
            res.grads[name] = Quantity(*qa)
    res.fallbacks = int(todo.size)
    return res


# ------------------------------------------------------------------------------------------------
# dispatch from oracle.evaluate
# ------------------------------------------------------------------------------------------------

def eligible(case) -> bool:
    """Whether ``case`` has a fast path: the plain forms of the variants above."""
    if case.options.get("reduction", "none") != "none" or case.options.get("label_smoothing", 0.0):
        return False
    if case.variant in ELEMENTWISE:
        if set(case.inputs) != {"logits", "labels"}:
            return False
        z = case["labels"].astype(np.float64)
        return bool(np.all((z >= 0) & (z <= 1)))
    if case.variant in ROWS:
        if set(case.inputs) != {"logits", "labels"} or case.options.get("ignore_index") is not None:
            return False
        x = case["logits"]
        if x.ndim == 0 or x.shape[case.class_axis] == 0 or x.size == 0:
            return False
        lab = case["labels"]
        if case.variant == "softmax_ce_sparse":
            C = x.shape[case.class_axis]
            return bool(np.all((lab >= 0) & (lab < C)))
        z = lab.astype(np.float64)
        return bool(np.all((z >= 0) & (z <= 1)))
    return False


def evaluate(case, grads: bool = True):
    """The certified result of an `eligible` case (an ``OracleResult``, as ``oracle.evaluate``)."""
    from . import OracleResult, Quantity

    if case.variant in ROWS:
        return rows(case, grads)
    f = case.format
    shape = case["logits"].shape
    r = elementwise(case.variant, case.dtype, case["logits"].reshape(-1), case["labels"].reshape(-1),
                    {}, grads)
    vq = Quantity(r.value.reshape(shape), r.undecided.reshape(shape), r.undefined.reshape(shape),
                  r.prec.reshape(shape), r.sens.reshape(shape))
    undecided = bool(r.undecided.any())
    res = OracleResult("ok", None, vq, {}, "arb")
    for name in case.spec.grad_wrt if grads else ():
        g = r.grads[name].reshape(shape)
        u = r.grad_undecided[name].reshape(shape)
        undecided |= bool(u.any())
        res.grads[name] = Quantity(g, u, np.isnan(g.astype(np.float64)) & ~u, r.grad_prec[name].reshape(shape),
                                   r.grad_sens[name].reshape(shape))
    res.status = "undecided" if undecided else "ok"
    res.fallbacks = r.fallbacks
    return res
