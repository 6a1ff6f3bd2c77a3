"""Judging the answers of one piece of a sweep, element by element, into fixed-size accumulators.

``judge`` compares an API's answers for one quantity with the oracle's truths (the run's verdict
classes and budgets, vectorised over the piece) and folds them into a `QStats`: verdict counts, the
ULP histogram on the run report's log2 bins, the largest error, the K worst inputs per verdict
class, the span of inputs of each class and the largest error per plot bin. `Acc` holds those of
one chunk; every merge is exact, so a sweep's result does not depend on how it was cut up.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from cases import Case
from . import budgets
from .runner import _NO_NUMBER as _RUN_NO_NUMBER
from .verdict import RANK, SEVERITY, _codes

HIST_BINS = 66  # as the run report: 0 ulp, (2^(k-1), 2^k] for k = 1..64 (1 ulp in bin 1), beyond
NCODES = len(SEVERITY)
CONFORMS = RANK["conforms"]
_NO_NUMBER = np.zeros(NCODES, dtype=bool)  # the verdicts the run report's histograms count as "no number"
_NO_NUMBER[[RANK[_v] for _v in _RUN_NO_NUMBER]] = True
PLOT_BINS = 512  # bins of the error plot over the inputs of a sweep


def _inf_mag(f) -> int:
    return ((1 << (f.bits - 1 - (f.precision - 1))) - 1) << (f.precision - 1)


# -- accumulators -----------------------------------------------------------------------------------

@dataclass
class QStats:
    """One quantity (``value``, ``grad:<input>``) of one API and label; or, as ``element``, the
    worst verdict of each input over its quantities."""

    count: int = 0
    verdicts: np.ndarray = field(default_factory=lambda: np.zeros(NCODES, dtype=np.int64))
    hist: np.ndarray = field(default_factory=lambda: np.zeros(HIST_BINS, dtype=np.int64))
    no_number: int = 0
    max_ulp: float | None = None
    worst: dict = field(default_factory=dict)  # code -> [(ulp, key, expected, got, allowance, cond)]
    span: dict = field(default_factory=dict)  # code -> [lowest key, highest key]
    plot_err: np.ndarray | None = None  # max error bits per input bin (-1: no input there); last: NaN inputs
    plot_code: np.ndarray | None = None  # worst code per input bin
    dtypes: dict = field(default_factory=dict)  # dtype name returned -> elements
    undecided: int = 0  # elements the oracle could not certify (skipped)
    nan_inputs: np.ndarray = field(default_factory=lambda: np.zeros(NCODES, dtype=np.int64))

    def merge(self, o: "QStats", k: int) -> None:
        self.count += o.count
        self.verdicts += o.verdicts
        self.hist += o.hist
        self.no_number += o.no_number
        self.undecided += o.undecided
        self.nan_inputs += o.nan_inputs
        if o.max_ulp is not None:
            self.max_ulp = o.max_ulp if self.max_ulp is None else max(self.max_ulp, o.max_ulp)
        for code, recs in o.worst.items():
            self.worst[code] = _top(self.worst.get(code, []) + recs, k)
        for code, (a, b) in o.span.items():
            s = self.span.get(code)
            self.span[code] = [a, b] if s is None else [min(s[0], a), max(s[1], b)]
        if o.plot_err is not None:
            if self.plot_err is None:
                self.plot_err, self.plot_code = o.plot_err.copy(), o.plot_code.copy()
            else:
                np.maximum(self.plot_err, o.plot_err, out=self.plot_err)
                np.minimum(self.plot_code, o.plot_code, out=self.plot_code)
        for d, n in o.dtypes.items():
            self.dtypes[d] = self.dtypes.get(d, 0) + n


def _sort_key(rec):
    u = rec[0]
    return (-(u if u == u else -1.0), rec[1])


def _top(recs: list, k: int) -> list:
    return sorted(recs, key=_sort_key)[:k]


def _new_plot() -> tuple[np.ndarray, np.ndarray]:
    return np.full(PLOT_BINS + 1, -1.0, dtype=np.float32), np.full(PLOT_BINS + 1, CONFORMS, dtype=np.uint8)


@dataclass
class Acc:
    """Everything one API and label gathered over some chunks."""

    quantities: dict = field(default_factory=dict)  # name -> QStats
    element: QStats = field(default_factory=QStats)
    calls: int = 0
    raised: int = 0  # elements whose answer was an exception
    unresolved: int = 0  # of those, in pieces bisection gave up on (the whole piece raised)
    messages: dict = field(default_factory=dict)  # one line per exception type seen -> elements

    def merge(self, o: "Acc", k: int) -> None:
        for name, q in o.quantities.items():
            self.quantities.setdefault(name, QStats()).merge(q, k)
        self.element.merge(o.element, k)
        self.calls += o.calls
        self.raised += o.raised
        self.unresolved += o.unresolved
        for m, n in o.messages.items():
            if m in self.messages or len(self.messages) < 20:
                self.messages[m] = self.messages.get(m, 0) + n


# -- judging one piece --------------------------------------------------------------------------------

def plot_bins(keys: np.ndarray, nan_in: np.ndarray, span: tuple[int, int]) -> np.ndarray:
    """The plot bin of each input: PLOT_BINS equal slices of [lowest, highest] swept key; NaNs last."""
    lo, hi = span
    width = float(hi) - float(lo) + 1.0
    b = np.floor((keys.astype(np.float64) - float(lo)) * (PLOT_BINS / width)).astype(np.int64)
    b = np.clip(b, 0, PLOT_BINS - 1)
    b[nan_in] = PLOT_BINS
    return b


def _runs(bins: np.ndarray) -> np.ndarray:
    """Start index of each run of equal values."""
    if bins.size == 0:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate(([0], np.flatnonzero(bins[1:] != bins[:-1]) + 1))


@dataclass
class Piece:
    """The inputs of a contiguous run of patterns: their keys (total_key), which are NaN, their
    plot bins, and the distinct bins they cover."""

    keys: np.ndarray
    nan_in: np.ndarray
    bins: np.ndarray
    cover: np.ndarray

    @classmethod
    def of(cls, keys, nan_in, bins) -> "Piece":
        return cls(keys, nan_in, bins, np.unique(bins[_runs(bins)]))

    def __getitem__(self, s: slice) -> "Piece":
        return Piece.of(self.keys[s], self.nan_in[s], self.bins[s])


def _hist_bins(ulp: np.ndarray) -> np.ndarray:
    """histogram_bin of runner.py, vectorised: 0 for 0, ceil(log2 ulp) (at least 1), 65 beyond 2^64."""
    out = np.full(ulp.shape, HIST_BINS - 1, dtype=np.int64)
    m, e = np.frexp(ulp)
    k = np.where(m == 0.5, e - 1, e)
    fin = np.isfinite(ulp) & (ulp <= 2.0 ** 64)
    out[fin] = np.maximum(k[fin], 1)
    out[ulp <= 0] = 0
    return out


def bit_distance(gb: np.ndarray, eb: np.ndarray, f):
    """(ulp distance as float64, NaN on either side, got is inf or NaN) from bit patterns, measured
    as conformance.ulp.ulp_distance measures it."""
    g, e = gb.astype(np.uint64), eb.astype(np.uint64)
    mask = np.uint64((1 << (f.bits - 1)) - 1)
    shift = np.uint64(f.bits - 1)
    mg, me = g & mask, e & mask
    ng, ne = (g >> shift) == 1, (e >> shift) == 1
    inf = np.uint64(_inf_mag(f))
    same = (ng == ne) | (mg == 0) | (me == 0)
    d = np.where(same, np.maximum(mg, me) - np.minimum(mg, me), mg + me).astype(np.float64)
    return d, (mg > inf) | (me > inf), mg >= inf


@dataclass
class Truth:
    """The oracle's answer for one quantity of some inputs, as judge() needs it."""

    value: np.ndarray  # in the dtype
    undefined: np.ndarray
    sens: np.ndarray
    undecided: np.ndarray  # the oracle could not certify these: skipped (conform, no ulp), as in the run

    def __getitem__(self, s) -> "Truth":
        return Truth(self.value[s], self.undefined[s], self.sens[s], self.undecided[s])


def judge(case: Case, quantity: str, truth: Truth, got_raw, piece: Piece, k: int, contract_truth=None,
          ulps: bool = False):
    """(QStats, per-element verdict codes as uint8) of one quantity of one answered piece.

    Elements whose answer has the truth's exact bit pattern conform with 0 ulp; so do those within
    the base budget (finite, the truth defined): the conditioning term only adds to it. Every
    other element goes through ``verdict._codes``, the per-case judge's own classification, with
    the allowance of ``budgets.allowance``; then, as ``verdict.compare`` does it, the contract
    (``contract_truth(indices)`` gives a `Truth` under the adapter's documented contract), and
    the dtype and shape problems, which apply to every element. ``ulps``: also return each
    element's ULP distance (inf where no number to compare, NaN where undecided).
    """
    f = case.format
    n = truth.value.size
    got_arr = np.asarray(got_raw)
    got_dtype = got_arr.dtype.name
    numeric = got_arr.dtype.kind != "c" and (got_arr.dtype.kind in "fiub" or got_dtype == "bfloat16")
    if not numeric or got_arr.size != n:  # nothing to compare: compare() says "dtype" or "shape"
        code = RANK["dtype"] if not numeric else RANK["shape"]
        codes = np.full(n, code, dtype=np.uint8)
        q = _stats(n, codes, None, None, np.arange(n), np.full(n, math.inf), truth, case, quantity, piece, k)
        q.dtypes[got_dtype] = n
        return (q, codes, np.full(n, math.inf)) if ulps else (q, codes)
    shape_problem = got_arr.shape != truth.value.shape
    got_arr = got_arr.reshape(-1)
    got64 = None
    if got_arr.dtype == f.np_dtype:
        got = got_arr
    else:
        from .ulp import to_format

        with np.errstate(invalid="ignore"):
            got64 = got_arr.astype(np.float64)
        got = to_format(got64, f)
    sub = np.flatnonzero((f.to_bits(got) != f.to_bits(truth.value)) | truth.undefined | truth.undecided)
    ulp_sub = np.zeros(sub.size, dtype=np.float64)
    code_sub = np.full(sub.size, CONFORMS, dtype=np.uint8)
    if sub.size:
        base = budgets.base_for(case.variant, case.dtype, quantity).none
        d, nan_side, g_special = bit_distance(f.to_bits(got[sub]), f.to_bits(truth.value[sub]), f)
        easy = (d <= base) & ~nan_side & ~g_special & ~truth.undefined[sub] & ~truth.undecided[sub]
        ulp_sub[easy] = d[easy]
        hard = np.flatnonzero(~easy)
        if hard.size:
            h = sub[hard]
            exp_h = truth.value[h]
            allow = budgets.allowance(case, quantity, exp_h, truth.sens[h])
            with np.errstate(invalid="ignore"):  # bfloat16 NaN into float64 warns; the NaN is kept
                c, u = _codes(got[h], exp_h, truth.undefined[h], truth.undecided[h], allow.total, f)
            if contract_truth is not None and (c != CONFORMS).any():
                miss = np.flatnonzero(c != CONFORMS)
                ct = contract_truth(h[miss])
                if ct is not None:
                    c_allow = budgets.allowance(case, quantity, ct.value, ct.sens)
                    with np.errstate(invalid="ignore"):
                        cc, _ = _codes(got[h[miss]], ct.value, ct.undefined, truth.undecided[h[miss]],
                                       c_allow.total, f)
                    c[miss] = np.where(cc == CONFORMS, RANK["contract"], c[miss])
            code_sub[hard] = c
            ulp_sub[hard] = u
    cap = None
    if got_dtype != f.np_dtype.name:
        cap = RANK["dtype"]
    if shape_problem:
        cap = RANK["shape"]
    if cap is None:
        codes = np.full(n, CONFORMS, dtype=np.uint8)
        codes[sub] = code_sub
        if sub.size:  # the elements within the base budget are summed up without the general path
            hard = np.flatnonzero(~easy)
            counts = np.bincount(code_sub, minlength=NCODES)
            counts[CONFORMS] += n - sub.size
            q = _stats(n, codes, got, got64, sub[hard], ulp_sub[hard], truth, case, quantity, piece, k,
                       counts=counts, bad=sub[code_sub != CONFORMS])
            _easy_stats(q, sub[easy], ulp_sub[easy], got, got64, truth, case, quantity, piece, k)
        else:
            q = _stats(n, codes, got, got64, sub, ulp_sub, truth, case, quantity, piece, k)
        q.hist[0] += n - sub.size
    else:  # every element is a candidate: the exact ones took the cap's code
        np.minimum(code_sub, cap, out=code_sub)
        codes = np.full(n, cap, dtype=np.uint8)
        codes[sub] = code_sub
        ulp_cand = np.zeros(n)
        ulp_cand[sub] = ulp_sub
        q = _stats(n, codes, got, got64, np.arange(n), ulp_cand, truth, case, quantity, piece, k)
    q.dtypes[got_dtype] = n
    if ulps:
        full = np.zeros(n)
        full[sub] = ulp_sub
        return q, codes, full
    return q, codes


def _stats(n, codes, got, got64, cand, ulp_cand, truth: Truth, case, quantity, piece: Piece, k, counts=None,
           bad=None) -> QStats:
    """The QStats of a piece: ``codes`` for every element; ``cand`` the elements that may not be
    exact (their ulp distances ``ulp_cand``); the others conform exactly (counted by the caller).
    ``counts`` (of each code) and ``bad`` (the elements that do not conform): when known already."""
    q = QStats(count=n)
    q.plot_err, q.plot_code = _new_plot()
    q.verdicts += np.bincount(codes, minlength=NCODES) if counts is None else counts
    code_c = codes[cand]
    numeric = np.isfinite(ulp_cand) & ~_NO_NUMBER[code_c]
    undecided = np.isnan(ulp_cand)
    q.undecided = int(undecided.sum())
    q.no_number = int(cand.size - numeric.sum() - q.undecided)
    if numeric.any():
        q.hist += np.bincount(_hist_bins(ulp_cand[numeric]), minlength=HIST_BINS)
    fin = np.isfinite(ulp_cand)
    if fin.any():
        q.max_ulp = float(ulp_cand[fin].max())
    if cand.size < n:
        q.max_ulp = max(q.max_ulp or 0.0, 0.0)
    # the plot: 0 in every bin with inputs, then the largest finite error, and the worst verdict
    q.plot_err[piece.cover] = 0.0
    if cand.size:
        sb = piece.bins[cand]
        st = _runs(sb)
        mx = np.maximum.reduceat(np.where(fin, ulp_cand, 0.0), st)
        np.maximum.at(q.plot_err, sb[st], np.log2(1.0 + mx).astype(np.float32))
    if bad is None:
        bad = np.flatnonzero(codes != CONFORMS)
    if bad.size:
        sb = piece.bins[bad]
        st = _runs(sb)
        np.minimum.at(q.plot_code, sb[st], np.minimum.reduceat(codes[bad], st))
    _spans(q, codes, bad, piece)
    # the worst inputs of each verdict class present
    for code in np.flatnonzero(np.bincount(code_c, minlength=NCODES)):
        j = np.flatnonzero(code_c == code)
        if code == CONFORMS:
            j = j[ulp_cand[j] > 0]
            if not j.size:
                continue
        keep = j[_select(ulp_cand[j], piece.keys[cand[j]], k)]
        recs = _records(cand[keep], ulp_cand[keep], got, got64, truth, case, quantity, piece)
        q.worst[int(code)] = _top(q.worst.get(int(code), []) + recs, k)
    return q


def _easy_stats(q: QStats, idx, u, got, got64, truth: Truth, case, quantity, piece: Piece, k) -> None:
    """Add to ``q`` the elements ``idx``: finite, conforming, 1 to base ulps ``u`` from the truth."""
    if not idx.size:
        return
    counts = np.bincount(u.astype(np.int64))
    for v in np.flatnonzero(counts):
        q.hist[_hist_bins(np.array([float(v)]))[0]] += counts[v]
    q.max_ulp = max(q.max_ulp or 0.0, float(u.max()))
    sb = piece.bins[idx]
    st = _runs(sb)
    np.maximum.at(q.plot_err, sb[st], np.log2(1.0 + np.maximum.reduceat(u, st)).astype(np.float32))
    keep = _select(u, piece.keys[idx], k)
    q.worst[CONFORMS] = _top(q.worst.get(CONFORMS, []) + _records(idx[keep], u[keep], got, got64, truth, case,
                                                                    quantity, piece), k)


def _records(idx, u, got, got64, truth: Truth, case, quantity, piece: Piece) -> list:
    """(ulp, key, expected, got, allowance, conditioning) of the elements ``idx``."""
    exp_h = truth.value[idx]
    allow = budgets.allowance(case, quantity, exp_h, truth.sens[idx])
    exp64 = _f64(exp_h)
    got_vals = np.full(idx.size, np.nan) if got is None else (got64[idx] if got64 is not None else _f64(got[idx]))
    recs = []
    for t, i in enumerate(idx):
        tot, cond = float(allow.total[t]), float(allow.conditioning[t])
        recs.append((float(u[t]), int(piece.keys[i]), float(exp64[t]), float(got_vals[t]),
                     tot if math.isfinite(tot) else None, cond if math.isfinite(cond) else None))
    return recs


def _spans(q: QStats, codes, bad, piece: Piece) -> None:
    """Lowest and highest input of each non-conforming class; verdict counts over NaN inputs."""
    if piece.nan_in.any():
        q.nan_inputs += np.bincount(codes[piece.nan_in], minlength=NCODES)
    if not bad.size:
        return
    c = codes[bad]
    kb = piece.keys[bad]
    for code in np.flatnonzero(np.bincount(c, minlength=NCODES)):
        kk = kb[c == code]
        q.span[int(code)] = [int(kk.min()), int(kk.max())]


def _f64(a) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.asarray(a).astype(np.float64)


def _select(u: np.ndarray, keys: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest ``u`` (NaN lowest), ties broken by the smallest key, in that
    order; exact whatever the size."""
    uu = np.where(np.isnan(u), -1.0, u)
    if uu.size > k:
        top = np.flatnonzero(uu == uu.max())
        if top.size >= k:  # (common: many elements at the largest error) the k smallest keys among them
            kt = keys[top]
            d = np.diff(kt)
            if (d > 0).all():
                return top[:k]
            if (d < 0).all():
                return top[::-1][:k]
            return top[np.argsort(kt, kind="stable")[:k]]
        t = np.partition(uu, uu.size - k)[uu.size - k]  # the k-th largest
        above = np.flatnonzero(uu > t)
        ties = np.flatnonzero(uu == t)
        need = k - above.size
        if ties.size > need:
            ties = ties[np.argpartition(keys[ties], need - 1)[:need]] if need > 0 else ties[:0]
        cand = np.concatenate((above, ties))
    else:
        cand = np.arange(uu.size)
    return cand[np.lexsort((keys[cand], -uu[cand]))]


def element_stats(codes: np.ndarray, piece: Piece) -> QStats:
    """Per input, the worst verdict over its quantities: counts and spans."""
    q = QStats(count=codes.size)
    q.verdicts += np.bincount(codes, minlength=NCODES)
    _spans(q, codes, np.flatnonzero(codes != CONFORMS), piece)
    return q
