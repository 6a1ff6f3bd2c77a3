"""Cross-check the fast path against the slow certified path on random and adversarial inputs.

Used by ``benchmarks/oracle_speed.py --cross-check`` (a million inputs and more) and, smaller, by
``tests/test_fast_oracle.py``. A *mismatch* is any element whose value (bit for bit, signed zeros
included), ``undefined`` or ``undecided`` flag differs between ``oracle.evaluate`` (fast path) and
``oracle.evaluate_slow`` on the same case; sensitivities are compared to a tolerance (they are
float estimates, see oracle/fast.py). The adversarial families:

- *near boundaries*: from a pool many times larger, the inputs whose value or gradient lies
  closest to a rounding boundary (a midpoint) of the target format, by the fast path's own
  approximation; these are the inputs an error bound that is too small would misround;
- *extremes*: logits at the ends of the format (largest finite, smallest subnormal, +-810, zeros);
- *cancellation*: soft labels equal to the rounded sigmoid of the logit (the gradient cancels),
  dense labels equal to the rounded softmax;
- *dominant logits*: rows with one logit far above the rest (gaps 10 to 800, across the exp
  underflow), and rows of equal logits.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cases import Case
from cases.dtypes import fmt

from . import evaluate, evaluate_slow


@dataclass
class Tally:
    inputs: int = 0
    elements: int = 0
    fallbacks: int = 0
    mismatches: list = field(default_factory=list)  # (family, dtype, variant, what, detail)
    sens_off: int = 0

    def add(self, other: "Tally") -> None:
        self.inputs += other.inputs
        self.elements += other.elements
        self.fallbacks += other.fallbacks
        self.mismatches += other.mismatches
        self.sens_off += other.sens_off


def _same(a, b) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return ((a == b) & (np.signbit(a) == np.signbit(b))) | (np.isnan(a) & np.isnan(b))


def compare(case: Case, family: str, sens_rtol: float = 1e-6) -> Tally:
    """One case through both paths."""
    fast, slow = evaluate(case), evaluate_slow(case)
    t = Tally(inputs=int(case["logits"].size), elements=0, fallbacks=getattr(fast, "fallbacks", 0))
    if fast.status != slow.status:
        t.mismatches.append((family, case.dtype, case.variant, "status", f"{fast.status} vs {slow.status}"))
        return t
    if slow.status == "invalid":
        return t
    pairs = [("value", fast.value, slow.value)] + [(k, fast.grads[k], slow.grads[k]) for k in slow.grads]
    for what, qa, qb in pairs:
        t.elements += qb.value.size
        for attr in ("value", "undefined", "undecided"):
            ok = _same(getattr(qa, attr), getattr(qb, attr))
            if not ok.all():
                i = int(np.flatnonzero(~ok.reshape(-1))[0])
                t.mismatches.append((family, case.dtype, case.variant, f"{what}.{attr}",
                                     f"element {i}: fast {getattr(qa, attr).reshape(-1)[i]!r} "
                                     f"slow {getattr(qb, attr).reshape(-1)[i]!r}; case {case.to_json()[:300]}"))
        sa, sb = qa.sens.reshape(-1), qb.sens.reshape(-1)
        # the slow path's own float formulas cancel (m + xbar - 2 m p with p near 1): compare
        # against the size of the terms, not the result
        x = np.abs(case["logits"].astype(np.float64))
        with np.errstate(over="ignore"):
            scale = np.abs(sb) + 1e-12 * (1.0 + np.max(x[np.isfinite(x)], initial=0.0))
        t.sens_off += int(np.sum(~((np.abs(sa - sb) <= sens_rtol * scale) | (sa == sb))))
    return t


# ------------------------------------------------------------------------------------------------
# input families
# ------------------------------------------------------------------------------------------------

def ordinary_logits(rng, n: int, dtype: str) -> np.ndarray:
    """Half normal(0, 4), a quarter uniform in [-120, 120], a quarter log-uniform magnitudes
    between 1e-30 and 1e30 (clipped into the format), random signs."""
    f = fmt(dtype)
    k = n // 4
    mags = 10.0 ** rng.uniform(-30, 30, n - 3 * k)
    x = np.concatenate([rng.normal(0, 4, 2 * k), rng.uniform(-120, 120, k),
                        np.where(rng.random(n - 3 * k) < 0.5, -1, 1) * np.minimum(mags, f.max_finite)])
    return rng.permutation(x).astype(f.np_dtype)


def extreme_logits(dtype: str) -> np.ndarray:
    f = fmt(dtype)
    v = [0.0, -0.0, f.min_subnormal, f.min_normal, f.max_finite, 1.0, 2.0, 0.5, 810.0, 88.0, 89.0, 104.0, 745.0,
         746.0, 709.0, 708.0, 36.7, 33.27, 17.0, 16.6, 1e4, 65504.0]
    v = [min(abs(x), f.max_finite) for x in v]
    v = np.array(v + [-x for x in v] + [np.inf, -np.inf, np.nan])
    return v.astype(f.np_dtype)


def near_boundary_logits(rng, n: int, dtype: str, pool: int, label: float) -> np.ndarray:
    """The ``n`` logits of a random pool whose loss or gradient lies closest to a rounding
    boundary of ``dtype``, judged from the fast path's own approximations."""
    from . import fast

    f = fmt(dtype)
    x = np.unique(ordinary_logits(rng, pool, dtype).astype(np.float64))
    x = x[np.isfinite(x)]
    z = np.full(x.shape, label)
    dist = np.full(x.shape, np.inf)
    for lo in range(0, x.size, fast.CHUNK):
        sl = slice(lo, lo + fast.CHUNK)
        with np.errstate(all="ignore"):
            if f.precision > 26:
                (lh, ll), _, (gh, gl), _, *_ = fast._sigmoid_dd(x[sl], z[sl])
            else:
                lh, _, gh, _, *_ = fast._sigmoid_f64(x[sl], z[sl])
                ll = gl = 0.0
            dist[sl] = np.minimum(_to_midpoint(lh, ll, f), _to_midpoint(gh, gl, f))
    order = np.argsort(dist, kind="stable")[:n]
    return x[order].astype(f.np_dtype)


def _to_midpoint(hi, lo, f) -> np.ndarray:
    """Distance from hi + lo to the nearest midpoint of format ``f``, in units of its spacing."""
    from conformance.ulp import to_format, ulp_of

    a = np.abs(np.asarray(hi, dtype=np.float64))
    lo = np.where(np.signbit(hi), -1.0, 1.0) * lo
    R = np.abs(to_format(a, f).astype(np.float64)) if f.precision < 53 else a
    q = ulp_of(R, f)
    with np.errstate(all="ignore"):
        pos = ((a - R) + lo) / q  # in (-1/2, 1/2]
        return np.where(np.isfinite(pos), 0.5 - np.abs(pos), np.inf)


def sigmoid_cases(rng, dtype: str, n: int, boundary_pool: int = 0, batch: int = 4096):
    """(family, case) pairs of sigmoid cross-entropy, about ``n`` logits in all."""
    f = fmt(dtype)
    fam = []
    m = max(1, n // 4)
    for label in (0.0, 1.0):
        fam.append(("ordinary", ordinary_logits(rng, m // 2, dtype), label))
    xs = ordinary_logits(rng, m, dtype)
    fam.append(("soft labels", xs, rng.random(xs.size)))
    # cancellation: z = sigmoid(x) rounded into the format
    xc = (rng.normal(0, 3, m)).astype(f.np_dtype)
    with np.errstate(over="ignore"):
        zc = (1.0 / (1.0 + np.exp(-xc.astype(np.float64)))).astype(f.np_dtype)
    fam.append(("cancellation", xc, zc))
    fam.append(("extremes", extreme_logits(dtype), 0.0))
    fam.append(("extremes", extreme_logits(dtype), 1.0))
    fam.append(("extremes", extreme_logits(dtype), 0.5))
    if boundary_pool:
        for label in (0.0, 1.0):
            fam.append(("near boundaries", near_boundary_logits(rng, m // 2, dtype, boundary_pool, label), label))
    for name, x, z in fam:
        x = np.asarray(x).astype(f.np_dtype)
        z = np.broadcast_to(np.asarray(z, dtype=np.float64), x.shape).astype(f.np_dtype)
        for lo in range(0, x.size, batch):
            yield name, Case("sigmoid_bce_logits", dtype, {"logits": x[lo:lo + batch], "labels": z[lo:lo + batch]},
                             {"reduction": "none"})


def row_cases(rng, dtype: str, n_rows: int, classes: int, batch_elems: int = 1 << 15):
    """(family, case) pairs of softmax cross-entropy rows, sparse and dense."""
    f = fmt(dtype)
    per = max(1, batch_elems // classes)
    k = max(1, n_rows // 4)
    fams = []
    fams.append(("ordinary", rng.normal(0, 3, (k, classes))))
    X = rng.normal(0, 2, (k, classes))
    X[np.arange(k), rng.integers(0, classes, k)] += rng.uniform(10, 800, k)
    fams.append(("dominant logits", X))
    fams.append(("wide rows", rng.normal(0, 1, (k, classes)) * rng.choice([1, 30, 300], (k, 1))))
    E = np.repeat(rng.normal(0, 5, (max(1, k // 8), 1)), classes, axis=1)
    fams.append(("equal logits", E))
    for name, X in fams:
        X = X.astype(f.np_dtype)
        X64 = X.astype(np.float64)
        with np.errstate(all="ignore"):
            P = np.exp(X64 - X64.max(axis=1, keepdims=True))
            P = (P / P.sum(axis=1, keepdims=True))
        y = np.where(rng.random(len(X)) < 0.5, np.argmax(X64, axis=1), rng.integers(0, classes, len(X)))
        onehot = np.eye(classes)[y] if classes <= 4096 else None
        for lo in range(0, len(X), per):
            sl = slice(lo, lo + per)
            yield name, Case("softmax_ce_sparse", dtype, {"logits": X[sl], "labels": y[sl]}, {"reduction": "none"})
            dense = P[sl] if name != "ordinary" or onehot is None else onehot[sl]
            yield (name if name != "ordinary" else "one-hot") + " (dense)", \
                Case("softmax_ce_dense", dtype, {"logits": X[sl], "labels": dense.astype(f.np_dtype)},
                     {"reduction": "none"})
            if name == "ordinary":  # cancellation: labels = the rounded softmax
                yield "cancellation (dense)", Case("softmax_ce_dense", dtype,
                                                   {"logits": X[sl], "labels": P[sl].astype(f.np_dtype)},
                                                   {"reduction": "none"})


def run(n_sigmoid: int, n_rows: int, seed: int = 0, dtypes=("float16", "bfloat16", "float32", "float64"),
        classes=(2, 10, 100), boundary_pool: int = 0, progress=None) -> tuple[Tally, dict]:
    """The whole cross-check: returns the total and a tally per family."""
    rng = np.random.default_rng(seed)
    total, per = Tally(), {}
    for dtype in dtypes:
        gens = [sigmoid_cases(rng, dtype, n_sigmoid, boundary_pool)]
        gens += [row_cases(rng, dtype, max(1, n_rows // len(classes)), c) for c in classes]
        for gen in gens:
            for family, case in gen:
                t = compare(case, family)
                total.add(t)
                per.setdefault(family, Tally()).add(t)
                if progress:
                    progress(total)
    return total, per
