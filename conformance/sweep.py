"""``xent sweep``: an elementwise variant audited over every representable input of a dtype.

Every bit pattern of the dtype (NaNs included), or every one whose value lies in ``--range LO:HI``,
is taken as the logit (the probability for ``bce_probs``) with each label, evaluated by every API
of one adapter and judged element by element against the certified oracle, with the run's
verdict classes and budgets (``conformance/verdict.py``, ``conformance/budgets.py``).

The patterns of a range form one or two contiguous intervals of unsigned integers (the
non-negative values, and the negative ones, each ordered by magnitude). They are cut into chunks
of ``--chunk`` patterns; a chunk is one task: its inputs are generated with ``np.arange`` and
viewed as floats, the oracle (``oracle.fast.elementwise``) runs once per label, every API answers
the whole chunk (an API that raises is bisected, so that one bad element does not cost the chunk),
and the answers are reduced into fixed-size accumulators (verdict counts, the ULP histogram on the
run report's log2 bins, the largest ULP error, the K worst inputs per verdict class, the range of
inputs of each verdict class, and the largest error per bin of a fixed grid of inputs for the
plot). Nothing per element outlives its chunk, so memory is bounded by the chunk size.

Chunks run in ``--jobs`` worker processes or on a Dask scheduler (``conformance.distribute``);
each worker builds the adapter once. Their accumulators are merged in chunk order and every
merge is exact (sums, maxima, top K with ties broken by input order), so the result does not
depend on the number of jobs or the order in which chunks finish. A chunk whose worker died is
recorded with the reason, and the report lists the ranges that are missing.

Outputs, in the report folder: ``sweep.json`` (schema ``xent-sweep/1``), ``summary.md``,
``worst/<case_id>.json`` (single-element cases, hex-exact, for ``xent replay FILE``) and
``error.svg`` (error against input, per API and quantity).
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import re
import sys
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from cases import DTYPES, FORMATS, VARIANTS, Case, CaseError
from cases.model import one_line
from . import budgets
from .files import write_atomic
from .numbers import _exact, hex_of, parse_float, round_fraction, shortest
from .runner import _NO_NUMBER as _RUN_NO_NUMBER
from .verdict import MEANING, RANK, SEVERITY, _codes

SCHEMA = "xent-sweep/1"
SUPPORTED = ("sigmoid_bce_logits", "bce_probs")  # the elementwise variants
MAIN_INPUT = {"sigmoid_bce_logits": "logits", "bce_probs": "probs"}
DEFAULT_CHUNK = {"float16": 1 << 12, "bfloat16": 1 << 12, "float32": 1 << 20, "float64": 1 << 20}
DEFAULT_WORST = 10  # worst inputs kept per API x label x quantity x verdict class
CASES_PER_CLASS = 3  # of those, written as case files (non-conforming classes; 1 for conforms)
MAX_CASE_FILES = 500
PLOT_BINS = 512
MAX_CHUNKS = 1 << 16  # tasks of one sweep (float32's 2^32 patterns are 4096 chunks of 2^20)
BISECT_CALLS = 4096  # adapter calls per chunk, API and label spent on isolating raising elements
BISECT_CRASHES = 24  # of those, calls that may crash or time out (each costs a worker restart)
HIST_BINS = 66  # as the run report: 0 ulp, (2^(k-1), 2^k] for k = 1..64 (1 ulp in bin 1), beyond
NCODES = len(SEVERITY)
CONFORMS = RANK["conforms"]
_NO_NUMBER = np.zeros(NCODES, dtype=bool)  # the verdicts the run report's histograms count as "no number"
_NO_NUMBER[[RANK[_v] for _v in _RUN_NO_NUMBER]] = True


class SweepError(ValueError):
    """A bad sweep request; the command prints it on one line and exits 2."""


class SweepFailed(RuntimeError):
    """The sweep cannot go on (every worker process dies); the command says why and exits 1."""


# -- the set of inputs ------------------------------------------------------------------------------

def _inf_mag(f) -> int:
    return ((1 << (f.bits - 1 - (f.precision - 1))) - 1) << (f.precision - 1)


def _mag_of(v: float, f) -> int:
    return int(f.to_bits(np.array([abs(v)], dtype=np.float64).astype(f.np_dtype))[0])


def _mag_ge(q, f) -> int:
    """The smallest magnitude pattern whose value is >= q (a Fraction >= 0, or math.inf)."""
    if q == math.inf:
        return _inf_mag(f)
    v = round_fraction(q, f)
    m = _mag_of(v, f)
    return m + 1 if math.isfinite(v) and Fraction(v) < q else m


def _mag_le(q, f) -> int:
    """The largest magnitude pattern whose value is <= q (a Fraction >= 0, or math.inf)."""
    if q == math.inf:
        return _inf_mag(f)
    v = round_fraction(q, f)
    if math.isinf(v):
        return _inf_mag(f) - 1
    m = _mag_of(v, f)
    return m - 1 if Fraction(v) > q else m


def parse_bound(text: str):
    """A range end: a decimal, a hex float or +-inf, as an exact Fraction (or +-math.inf)."""
    t = text.strip().lower()
    negative = t.startswith("-")
    body = t[1:] if t[:1] in "+-" else t
    if body in ("inf", "infinity"):
        return -math.inf if negative else math.inf
    if body == "nan":
        raise SweepError(f"--range: {text!r} is not a number")
    try:
        q = _exact(body)
    except ValueError:
        raise SweepError(f"--range: {text[:80]!r} is not a number (decimal, hex float or inf)") from None
    return -q if negative else q


def parse_range(text: str | None):
    """``LO:HI`` as two bounds, or None for no range."""
    if text is None:
        return None
    parts = text.split(":")
    if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
        raise SweepError(f"--range {text[:80]!r}: expected LO:HI, e.g. -100:100 or -inf:0x1p-3")
    lo, hi = parse_bound(parts[0]), parse_bound(parts[1])
    if lo > hi:
        raise SweepError(f"--range {text[:80]!r}: LO is greater than HI")
    return lo, hi


def intervals(f, bounds=None) -> list[tuple[int, int]]:
    """Half-open intervals [start, stop) of bit patterns: every pattern of ``f`` (bounds None), or
    those whose value v satisfies lo <= v <= hi (NaNs never; +0 and -0 both when 0 is in range)."""
    if bounds is None:
        return [(0, 1 << f.bits)]
    lo, hi = bounds
    sign = 1 << (f.bits - 1)
    out = []
    if hi >= 0:  # non-negative values in [max(lo, 0), hi]
        a, b = _mag_ge(max(lo, 0), f), _mag_le(hi, f)
        if a <= b:
            out.append((a, b + 1))
    if lo <= 0:  # negative values (and -0): magnitudes in [max(-hi, 0), -lo]
        a, b = _mag_ge(max(-hi, 0), f), _mag_le(-lo, f)
        if a <= b:
            out.append((sign | a, (sign | b) + 1))
    return out


def total_key(bits: np.ndarray, f) -> np.ndarray:
    """A unique int64 per pattern, increasing with the value: -mag - 1 for negative patterns, mag
    otherwise (so -0 < +0, and NaNs lie beyond +-inf)."""
    b = bits.astype(np.uint64)
    mag = (b & np.uint64((1 << (f.bits - 1)) - 1)).astype(np.int64)
    neg = (b >> np.uint64(f.bits - 1)) == 1
    return np.where(neg, -mag - 1, mag)


def pattern_of_key(key: int, f) -> int:
    return ((1 << (f.bits - 1)) | (-key - 1)) if key < 0 else key


def value_of_pattern(p: int, f) -> float:
    with np.errstate(invalid="ignore"):
        return float(f.from_bits(np.array([p], dtype=f.uint_dtype))[0].astype(np.float64))


def nan_count(ivs, f) -> int:
    inf = _inf_mag(f)
    sign = 1 << (f.bits - 1)
    n = 0
    for start, stop in ivs:
        for base in (0, sign):
            lo, hi = max(start, base + inf + 1), min(stop, base + sign)
            n += max(0, hi - lo)
    return n


# -- the plan ---------------------------------------------------------------------------------------

@dataclass
class Plan:
    variant: str
    dtype: str
    adapter: str
    adapter_version: str
    apis: list[str]
    labels: list[float]
    options: dict
    bounds: tuple | None
    intervals: list[tuple[int, int]]
    chunk: int
    worst: int = DEFAULT_WORST
    max_chunks: int | None = None
    jobs: int = 1
    scheduler: str | None = None
    out: str = ""
    control: bool = False
    target: str | None = None  # MODULE:ATTRIBUTE of a third-party adapter

    @property
    def main(self) -> str:
        return MAIN_INPUT[self.variant]

    @property
    def format(self):
        return FORMATS[self.dtype]

    def n_chunks(self) -> int:
        n = sum(-(-(stop - start) // self.chunk) for start, stop in self.intervals)
        return n if self.max_chunks is None else min(n, self.max_chunks)

    def chunks(self) -> list[tuple[int, int]]:
        out, limit = [], self.n_chunks()
        for start, stop in self.intervals:
            for a in range(start, stop, self.chunk):
                if len(out) == limit:
                    return out
                out.append((a, min(stop, a + self.chunk)))
        return out

    def plot_span(self) -> tuple[int, int]:
        """(lowest, highest) total_key of the non-NaN inputs of the intervals."""
        f = self.format
        inf = _inf_mag(f)
        half = 1 << (f.bits - 1)
        keys = []
        for start, stop in self.intervals:
            for base, neg in ((0, False), (half, True)):  # each sign's part of the interval
                a, b = max(start, base) - base, min(stop, base + half) - base - 1
                b = min(b, inf)  # NaNs are plotted apart
                if a <= b:
                    keys += [-b - 1, -a - 1] if neg else [a, b]
        return (min(keys), max(keys)) if keys else (0, 0)

    def settings(self) -> dict:
        return {"variant": self.variant, "dtype": self.dtype, "adapter": self.adapter, "adapter_target": self.target,
                "apis": list(self.apis),
                "labels": list(self.labels), "options": dict(self.options), "worst": self.worst,
                "plot_span": self.plot_span()}


def _label(text: str, f) -> float:
    try:
        v, changed = parse_float(text, f)
    except ValueError:
        raise SweepError(f"--label {text[:80]!r} is not a number") from None
    if math.isnan(v) or not 0 <= v <= 1:
        raise SweepError(f"--label {text[:80]!r}: a label is in [0, 1]")
    if changed:
        raise SweepError(f"--label {text[:80]!r} is not exactly representable in {f.name} "
                         f"(the nearest is {hex_of(v)})")
    return v


def _options(variant: str, texts: list[str]) -> dict:
    from .cli import UsageError, _option

    spec = VARIANTS[variant]
    try:
        options = dict(_option(spec, t) for t in texts)
    except UsageError as e:
        raise SweepError(str(e)) from None
    if options.get("reduction", "none") != "none":
        raise SweepError(f"--option reduction={options['reduction']}: a sweep judges each element, so the "
                         f"reduction is always none")
    options["reduction"] = "none"
    return options


def probe_case(variant: str, dtype: str, options: dict, x=None, z=0.0) -> Case:
    f = FORMATS[dtype]
    x = np.zeros(1, dtype=f.np_dtype) if x is None else x
    z = np.full(x.shape, z, dtype=np.float64).astype(f.np_dtype)
    return Case(variant, dtype, {MAIN_INPUT[variant]: x, "labels": z}, options, note="xent sweep")


def make_plan(variant: str, adapter: str, dtype: str, range_text=None, labels=None, options=None, api=None,
              chunk=None, worst=DEFAULT_WORST, max_chunks=None, jobs=1, scheduler=None, out=None) -> Plan:
    """Everything checked up front; SweepError (one line) on a bad request."""
    import adapters

    if variant not in VARIANTS:
        raise SweepError(f"unknown variant {variant!r}; the sweep takes {', '.join(SUPPORTED)}")
    if variant not in SUPPORTED:
        raise SweepError(f"variant {variant} is not elementwise; the sweep takes {', '.join(SUPPORTED)}")
    if dtype not in FORMATS:
        raise SweepError(f"unknown dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
    f = FORMATS[dtype]
    opts = _options(variant, options or [])
    zs = [_label(t, f) for t in labels] if labels else [0.0, 1.0]
    zs = list(dict.fromkeys(zs))
    bounds = parse_range(range_text)
    if variant == "bce_probs":  # the domain: probabilities outside [0, 1] are invalid inputs, not a sweep
        lo, hi = bounds if bounds is not None else (Fraction(0), Fraction(1))
        bounds = (max(lo, Fraction(0)), min(hi, Fraction(1)))
        if bounds[0] > bounds[1]:
            raise SweepError(f"--range {range_text!r}: bce_probs takes probabilities, and no value of the range "
                             f"is in [0, 1]")
    ivs = intervals(f, bounds)
    if not ivs:
        raise SweepError(f"--range {range_text!r}: no {dtype} value lies in it")
    target = None
    if ":" in adapter:  # a third-party adapter, MODULE:ATTRIBUTE
        from adapters import discovery

        try:
            target = discovery.check_target(adapter)
        except ValueError as e:
            raise SweepError(f"--adapter: {e}") from None
        a = adapters.register(target)
        adapter = a.name
        _ADAPTERS.pop(adapter, None)
    else:
        try:
            a = adapters.get(adapter)
        except ValueError as e:
            raise SweepError(str(e)) from None
    ok, version = a.available()
    if not ok:
        raise SweepError(f"adapter {adapter} is unavailable: {version}")
    try:
        case = probe_case(variant, dtype, opts, z=zs[0])
    except CaseError as e:
        raise SweepError(str(e)) from None
    apis = a.apis(case)
    if not apis:
        raise SweepError(f"adapter {adapter} has no API for {variant} {dtype} with options "
                         f"{_options_text(opts)}")
    if api is not None:
        if api not in apis:
            raise SweepError(f"adapter {adapter} has no API {api!r} for this sweep; it has {', '.join(apis)}")
        apis = [api]
    _check_oracle(variant, dtype, opts, zs)
    if chunk is None:
        chunk = DEFAULT_CHUNK[dtype]
    if chunk < 1:
        raise SweepError(f"--chunk must be at least 1, got {chunk}")
    if worst < 1:
        raise SweepError(f"--worst must be at least 1, got {worst}")
    n = sum(-(-(b - a) // chunk) for a, b in ivs)
    if n > MAX_CHUNKS and (max_chunks is None or max_chunks > MAX_CHUNKS):
        raise SweepError(f"{sum(b - a for a, b in ivs):,} {dtype} bit patterns make {n:,} chunks of {chunk:,}; at most "
                         f"{MAX_CHUNKS:,} (narrow --range, or a larger --chunk, or --max-chunks)")
    if out is None:
        lab = f"-label{shortest(zs[0], f)}" if len(zs) == 1 else ""
        name = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{variant}-{adapter}-{dtype}{lab}")
        out = str(Path("reports") / "sweeps" / name)
    return Plan(variant, dtype, adapter, version, list(apis), zs, opts, bounds, ivs, int(chunk), int(worst),
                max_chunks, max(1, int(jobs)), scheduler, out, bool(a.control), target)


def _options_text(opts: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(opts.items())) or "none"


def _check_oracle(variant, dtype, options, labels) -> None:
    f = FORMATS[dtype]
    try:
        oracle_truths(variant, dtype, np.array([0.5], dtype=f.np_dtype), labels[0], options)
    except Exception as e:
        raise SweepError(f"the oracle's fast path cannot evaluate {variant} {dtype} with options "
                         f"{_options_text(options)}: {one_line(e, 200)}") from None


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


# -- one chunk (runs in a worker) ------------------------------------------------------------------

_ADAPTERS: dict = {}


def _adapter(name: str, target: str | None = None):
    """The adapter, built once per process (a third-party one from its MODULE:ATTRIBUTE target)."""
    if name not in _ADAPTERS:
        import adapters

        _ADAPTERS[name] = adapters.register(target) if target else adapters.get(name)
    return _ADAPTERS[name]


def run_chunk(task: dict) -> dict:
    """One chunk: every label through the oracle and every API; the accumulators. Never raises on
    the adapter's or the oracle's behalf (a failure is in the result, with the reason)."""
    try:
        return _run_chunk(task)
    except _OracleFailed as e:
        return {"chunk": task["index"], "failed": str(e), "oracle_error": True}
    except Exception as e:  # a bug: the chunk is recorded as missing, with the reason
        return {"chunk": task["index"], "failed": one_line(f"{type(e).__name__}: {e}", 300)}


class _OracleFailed(Exception):
    pass


def _run_chunk(task: dict) -> dict:
    s = task["settings"]
    variant, dtype, k = s["variant"], s["dtype"], s["worst"]
    f = FORMATS[dtype]
    main = MAIN_INPUT[variant]
    bits = np.arange(task["start"], task["stop"], dtype=np.uint64).astype(f.uint_dtype)
    x = f.from_bits(bits)
    keys = total_key(bits, f)
    nan_in = (bits.astype(np.uint64) & np.uint64((1 << (f.bits - 1)) - 1)) > np.uint64(_inf_mag(f))
    piece = Piece.of(keys, nan_in, plot_bins(keys, nan_in, tuple(s["plot_span"])))
    del bits
    adapter = _adapter(s["adapter"], s.get("adapter_target"))
    timing = {"oracle_s": 0.0, "adapter_s": 0.0, "judge_s": 0.0}
    fallbacks = 0
    results = {}
    t0 = time.perf_counter()
    try:
        by_label = oracle_truths_labels(variant, dtype, x, s["labels"], s["options"])
    except Exception as e:
        raise _OracleFailed(one_line(f"the oracle raised {type(e).__name__}: {e}", 300)) from None
    timing["oracle_s"] += time.perf_counter() - t0
    for z, (truths, n_slow) in zip(s["labels"], by_label):
        fallbacks += n_slow
        zf = np.full(x.shape, z, dtype=np.float64).astype(f.np_dtype)
        for api in s["apis"]:
            acc = Acc()
            _sweep_api(adapter, api, variant, dtype, main, x, zf, s["options"], truths, piece, k, acc, timing)
            results[f"{api}\0{z!r}"] = acc
    return {"chunk": task["index"], "results": results, "timing": timing, "fallbacks": fallbacks,
            "elements": int(x.size) * len(s["labels"])}


def oracle_truths(variant: str, dtype: str, x: np.ndarray, z: float, options: dict) -> tuple[dict, int]:
    """({quantity: Truth}, elements settled by the slow path) of ``oracle.fast.elementwise``."""
    return oracle_truths_labels(variant, dtype, x, [z], options)[0]


def oracle_truths_labels(variant: str, dtype: str, x: np.ndarray, labels: list, options: dict) -> list:
    """`oracle_truths` for each label; ``oracle.fast.elementwise_labels`` shares the work that
    depends on the inputs alone."""
    from oracle import fast

    if variant not in getattr(fast, "ELEMENTWISE", ("sigmoid_bce_logits",)):
        return [_slow_truths(variant, dtype, x, z, options) for z in labels]
    with np.errstate(invalid="ignore"):  # bfloat16 NaN into float64 warns; the NaN is kept
        if hasattr(fast, "elementwise_labels"):
            rs = fast.elementwise_labels(variant, dtype, x, list(labels), options, grads=True)
        else:
            rs = [fast.elementwise(variant, dtype, x, z, options, grads=True) for z in labels]
    return [_fast_truths(r) for r in rs]


def _fast_truths(r) -> tuple[dict, int]:
    value = np.asarray(r.value).reshape(-1)
    undecided = _undecided(getattr(r, "undecided", None), value.size)
    truths = {"value": Truth(value, np.asarray(r.undefined, dtype=bool).reshape(-1) | np.isnan(value) & ~undecided,
                             np.asarray(r.sens, dtype=np.float64).reshape(-1), undecided)}
    for name, gv in sorted((r.grads or {}).items()):
        gv = np.asarray(gv).reshape(-1)
        gu = _undecided((getattr(r, "grad_undecided", None) or {}).get(name), gv.size)
        truths[f"grad:{name}"] = Truth(gv, np.isnan(gv) & ~gu,
                                       np.asarray(r.grad_sens[name], dtype=np.float64).reshape(-1), gu)
    return truths, int(getattr(r, "fallbacks", 0) or 0)


def _slow_truths(variant: str, dtype: str, x: np.ndarray, z: float, options: dict) -> tuple[dict, int]:
    """The truths from ``oracle.evaluate`` (arbitrary precision, about 10^4 elements a second), for
    the variants the fast path does not take (bce_probs)."""
    import oracle

    case = probe_case(variant, dtype, options, x=x, z=z)
    r = oracle.evaluate(case, grads=True)
    if r.value is None:
        raise ValueError(f"the oracle says the inputs are invalid: {r.reason}")
    truths = {}
    for qname, qq in [("value", r.value)] + [(f"grad:{n}", g) for n, g in sorted(r.grads.items())]:
        v = np.asarray(qq.value).reshape(-1)
        und = np.asarray(qq.undecided, dtype=bool).reshape(-1)
        truths[qname] = Truth(v, np.asarray(qq.undefined, dtype=bool).reshape(-1) | np.isnan(_f64(v)) & ~und,
                              np.asarray(qq.sens, dtype=np.float64).reshape(-1), und)
    return truths, int(x.size)


def _undecided(mask, n: int) -> np.ndarray:
    return np.zeros(n, dtype=bool) if mask is None else np.asarray(mask, dtype=bool).reshape(-1)


def _sweep_api(adapter, api, variant, dtype, main, x, zf, options, truths, piece, k, acc, timing):
    def case(a, b):
        return Case(variant, dtype, {main: x[a:b], "labels": zf[a:b]}, options, note="xent sweep")

    declared = adapter.contract(case(0, 1), api)
    t0 = time.perf_counter()
    pieces = _answers(adapter, api, case, 0, x.size, acc)
    timing["adapter_s"] += time.perf_counter() - t0
    t0 = time.perf_counter()
    for a, b, out in pieces:
        p = piece if (a, b) == (0, x.size) else piece[a:b]
        if isinstance(out, BaseException):
            # raised: fine where the loss is undefined (the oracle says so), "raised" elsewhere;
            # an adapter served by a worker process may also crash or time out (classify() and
            # the runner say the same)
            from adapters.base import AdapterCrashed, AdapterTimeout

            if isinstance(out, (AdapterCrashed, AdapterTimeout)):
                code = RANK["crash"] if isinstance(out, AdapterCrashed) else RANK["timeout"]
                codes = np.full(b - a, code, dtype=np.uint8)
            else:
                codes = np.where(truths["value"].undefined[a:b], CONFORMS, RANK["raised"]).astype(np.uint8)
            ulp = np.where(codes == CONFORMS, 0.0, math.inf)
            acc.raised += int(b - a)
            msg = one_line(f"{type(out).__name__}: {out}", 200)
            acc.messages[msg] = acc.messages.get(msg, 0) + int(b - a)
            # (counted under the value: there is no answer, so no gradient either, as in the run)
            q = _stats(b - a, codes, None, None, np.arange(b - a), ulp, truths["value"][a:b], case(a, a + 1),
                       "value", p, k)
            acc.quantities.setdefault("value", QStats()).merge(q, k)
            acc.element.merge(element_stats(codes, p), k)
            continue
        c = case(a, b)
        elem = None
        quantities = [("value", out.value)] + [(f"grad:{n}", g) for n, g in sorted((out.grads or {}).items())
                                               if f"grad:{n}" in truths]
        for qname, got in quantities:
            ct = None
            if declared is not None:
                ct = _contract_fn(variant, dtype, main, x[a:b], zf[a:b], options, declared.params, qname)
            q, codes = judge(c, qname, truths[qname][a:b], got, p, k, ct)
            acc.quantities.setdefault(qname, QStats()).merge(q, k)
            elem = codes if elem is None else np.minimum(elem, codes)
        acc.element.merge(element_stats(elem, p), k)
    timing["judge_s"] += time.perf_counter() - t0


def _contract_fn(variant, dtype, main, x, z, options, params, qname):
    """contract_truth(indices) for judge(): the oracle under the adapter's contract, on those
    elements only (the slow path: contracts are declared for probability variants, where few
    elements miss the math)."""
    def truth(idx):
        import oracle

        c = Case(variant, dtype, {main: x[idx], "labels": z[idx]}, options, note="xent sweep contract")
        try:
            r = oracle.evaluate(c, grads=qname != "value", contract=dict(params))
        except Exception:
            return None
        if r.status == "invalid" or r.value is None:
            return None
        qq = r.value if qname == "value" else r.grads.get(qname.split(":", 1)[1])
        if qq is None:
            return None
        v = np.asarray(qq.value).reshape(-1)
        und = np.asarray(qq.undecided, dtype=bool).reshape(-1)
        return Truth(v, np.asarray(qq.undefined, dtype=bool).reshape(-1) | np.isnan(_f64(v)) & ~und,
                     np.asarray(qq.sens, dtype=np.float64).reshape(-1), und)
    return truth


def _answers(adapter, api, case, lo, hi, acc) -> list:
    """[(a, b, Output or the exception)] covering [lo, hi): the whole range in one call, or, when
    that raises, halves, down to single elements (at most BISECT_CALLS calls, BISECT_CRASHES of
    them ending in a crash or a timeout of an adapter served by a worker process; a piece still
    failing after that is recorded as a whole)."""
    from adapters.base import AdapterCrashed, AdapterTimeout

    out, stack, calls, crashes = [], [(lo, hi)], 0, 0
    while stack:
        a, b = stack.pop()
        calls += 1
        try:
            r = adapter.evaluate(case(a, b), api, grads=True)
            out.append((a, b, r))
        except Exception as e:
            crashes += isinstance(e, (AdapterCrashed, AdapterTimeout))
            if b - a == 1 or calls >= BISECT_CALLS or crashes >= BISECT_CRASHES:
                out.append((a, b, e))
                if b - a > 1:
                    acc.unresolved += b - a
                continue
            mid = (a + b) // 2
            stack.append((mid, b))
            stack.append((a, mid))
    acc.calls += calls
    out.sort(key=lambda p: p[0])
    return _coalesce(out)


def _coalesce(pieces: list) -> list:
    """Adjacent pieces joined, so that judging costs a few array operations, not one per piece:
    exceptions of the same type and message, and answers whose arrays join (1-d, same dtypes
    and gradients, of their piece's length)."""
    out = []
    for a, b, r in pieces:
        if out:
            pa, pb, pr = out[-1]
            if isinstance(r, BaseException) and isinstance(pr, BaseException):
                if type(r) is type(pr) and str(r) == str(pr):
                    out[-1] = (pa, b, pr)
                    continue
            elif not isinstance(r, BaseException) and not isinstance(pr, BaseException) and _joinable(pr, pb - pa, r, b - a):
                from adapters.base import Output

                grads = {k: np.concatenate((np.asarray(pr.grads[k]), np.asarray(r.grads[k]))) for k in pr.grads}
                out[-1] = (pa, b, Output(np.concatenate((np.asarray(pr.value), np.asarray(r.value))), grads))
                continue
        out.append((a, b, r))
    return out


def _joinable(p, np_, r, nr) -> bool:
    try:
        arrays = [(np.asarray(p.value), np.asarray(r.value))]
        if set(p.grads or {}) != set(r.grads or {}):
            return False
        arrays += [(np.asarray(p.grads[k]), np.asarray(r.grads[k])) for k in p.grads]
    except Exception:
        return False
    return all(x.shape == (np_,) and y.shape == (nr,) and x.dtype == y.dtype for x, y in arrays)


# -- running the chunks -------------------------------------------------------------------------------

def _map(fn, tasks, jobs: int, scheduler: str | None):
    """(index, result) of every task, as ``conformance.distribute.map_tasks`` yields them; but a
    worker that dies costs only its task. ``run_chunk`` turns every exception into a result, so
    `TaskError` means a process died (or a result did not pickle): with local processes the pool
    breaks and the task it names is only a suspect (another one in flight may have killed the
    worker), so the suspects are run again, each alone in a process of its own, after the rest;
    Dask reports the task whose worker died, so there the task is recorded as failed at once."""
    from .distribute import DistributeError, TaskError, map_tasks

    remaining, suspects = list(range(len(tasks))), []
    finished = breaks = 0
    while remaining:
        todo, done = remaining, set()
        if len(todo) == 1 and jobs > 1 and not scheduler:  # map_tasks would run it in this process
            suspects += todo
            break
        try:
            for j, res in map_tasks(fn, [tasks[i] for i in todo], jobs=jobs, scheduler=scheduler):
                done.add(todo[j])
                finished += 1
                yield todo[j], res
            remaining = []
        except TaskError as e:
            i = todo[e.index]
            done.add(i)
            remaining = [t for t in todo if t not in done]
            breaks += 1
            if breaks >= 3 and not finished:  # not one chunk: the workers cannot work at all
                raise SweepFailed(f"the worker processes die before finishing any chunk: {e}") from None
            if scheduler or jobs <= 1:
                yield i, {"chunk": tasks[i]["index"], "failed": one_line(f"{type(e.error).__name__}: {e.error}"
                                                                         if not isinstance(e.error, str) else e.error, 300)}
            else:
                suspects.append(i)
        except DistributeError as e:
            raise SweepError(str(e)) from None
    for i in suspects:
        yield i, _alone(fn, tasks[i])


def _child(fn, task, conn) -> None:
    try:
        conn.send(fn(task))
    finally:
        conn.close()


def _alone(fn, task) -> dict:
    """``fn(task)`` in a process of its own: its result, or the chunk failed with how it died."""
    import multiprocessing
    import signal

    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    recv, send = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_child, args=(fn, task, send), daemon=True)
    p.start()
    send.close()
    try:
        return recv.recv()
    except (EOFError, OSError):
        p.join(10)
        code = p.exitcode
        how = (f"died of {signal.Signals(-code).name}" if code is not None and code < 0 and
               -code in signal.valid_signals() else f"exited with status {code}")
        return {"chunk": task["index"], "failed": f"the worker process {how} (alone on this chunk)"}
    finally:
        recv.close()
        p.join(10)


THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _limit_threads(jobs: int) -> tuple[dict, list]:
    """With ``jobs`` local worker processes, each gets cpus / jobs threads for the numerical
    libraries (OpenMP, MKL, OpenBLAS: PyTorch's intra-op pool among them), unless the user set them:
    two processes of two threads each on two cores spend their time contending (measured: the torch
    adapter's share of a float32 sweep with --jobs 2 fell from 15.9 s to 4.8 s). The pool's
    processes read them when they start. Returns what to unset afterwards: the variables it set."""
    if jobs <= 1:
        return []
    threads = str(max(1, (os.cpu_count() or 1) // jobs))
    unset = [v for v in THREAD_VARIABLES if v not in os.environ]
    for v in unset:
        os.environ[v] = threads
    return unset


class SweepProgress:
    """One line on stderr, updated at most ten times a second on a terminal; a line every 10% of
    the work otherwise."""

    def __init__(self, stream, total: int, chunks: int):
        self.stream = stream
        self.total, self.chunks = total, chunks
        self.done = self.chunks_done = self.failed = 0
        self.t0 = time.perf_counter()
        self.last = 0.0
        self.tenth = 0
        self.tty = bool(stream is not None and getattr(stream, "isatty", lambda: False)())
        if self.tty:  # before the first chunk is in (worker processes take a while to start)
            self.stream.write("\r" + self._line(self.t0)[:118].ljust(118))
            self.stream.flush()

    def update(self, elements: int, failed: bool) -> None:
        self.done += elements
        self.chunks_done += 1
        self.failed += failed
        if self.stream is None:
            return
        now = time.perf_counter()
        tenth = int(10 * self.chunks_done / max(self.chunks, 1))
        if self.tty:
            if now - self.last < 0.1 and self.chunks_done < self.chunks:
                return
            self.last = now
            self.stream.write("\r" + self._line(now)[:118].ljust(118))
            self.stream.flush()
        elif tenth > self.tenth or self.chunks_done == self.chunks:
            self.tenth = tenth
            print(self._line(now), file=self.stream, flush=True)

    def _line(self, now) -> str:
        el = now - self.t0
        rate = self.done / el if el > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 else math.inf
        eta = f"~{left:.0f} s left" if math.isfinite(left) else "?"
        pct = 100.0 * self.done / self.total if self.total else 100.0
        return (f"[sweep] {self.done:,}/{self.total:,} inputs ({pct:.1f}%) | {_rate(rate)} | {el:.0f} s, {eta} | "
                f"chunk {self.chunks_done}/{self.chunks}" + (f", {self.failed} failed" if self.failed else ""))

    def close(self) -> None:
        if self.tty:
            self.stream.write("\r" + " " * 118 + "\r")
            self.stream.flush()


def _rate(r: float) -> str:
    return f"{r / 1e6:.2f} M/s" if r >= 1e5 else f"{r:,.0f} /s"


@dataclass
class SweepResult:
    plan: Plan
    accs: dict  # (api, label) -> Acc
    failed: list  # [{"chunk", "start", "stop", "reason"}]
    oracle_errors: int
    timing: dict
    fallbacks: int
    elements: int
    seconds: float
    chunks: int


def sweep(plan: Plan, progress=None) -> SweepResult:
    """Every chunk of the plan, merged in chunk order."""
    chunks = plan.chunks()
    settings = plan.settings()
    tasks = [{"settings": settings, "index": i, "start": a, "stop": b} for i, (a, b) in enumerate(chunks)]
    total = sum(b - a for a, b in chunks) * len(plan.labels)
    prog = SweepProgress(progress, total, len(chunks)) if progress is not None else None
    t0 = time.perf_counter()
    pending: dict = {}
    nxt = 0
    accs = {(api, z): Acc() for z in plan.labels for api in plan.apis}
    failed, oracle_errors, fallbacks = [], 0, 0
    timing = {"oracle_s": 0.0, "adapter_s": 0.0, "judge_s": 0.0}
    done_elements = 0

    def absorb(i, res):
        nonlocal oracle_errors, fallbacks, done_elements
        if "failed" in res:
            a, b = chunks[i]
            failed.append({"chunk": i, "start": a, "stop": b, "reason": res["failed"]})
            oracle_errors += bool(res.get("oracle_error"))
            return
        for key, acc in res["results"].items():
            api, z = key.split("\0")
            accs[(api, float(z))].merge(acc, plan.worst)
        for t, v in res["timing"].items():
            timing[t] += v
        fallbacks += res["fallbacks"]
        done_elements += res["elements"]

    set_here = _limit_threads(plan.jobs if not plan.scheduler and len(tasks) > 1 else 1)
    try:
        for i, res in _map(run_chunk, tasks, plan.jobs, plan.scheduler):
            if not isinstance(res, dict):  # distribute may hand back the exception of a lost task
                res = {"chunk": i, "failed": one_line(f"{type(res).__name__}: {res}", 300)}
            if prog is not None:
                prog.update((chunks[i][1] - chunks[i][0]) * len(plan.labels), "failed" in res)
            pending[i] = res
            while nxt in pending:  # merged in chunk order: the result does not depend on completion order
                absorb(nxt, pending.pop(nxt))
                nxt += 1
    finally:
        for name in set_here:
            os.environ.pop(name, None)
        if prog is not None:
            prog.close()
    for i in sorted(pending):
        absorb(i, pending[i])
    return SweepResult(plan, accs, sorted(failed, key=lambda d: d["chunk"]), oracle_errors, timing, fallbacks,
                       done_elements, time.perf_counter() - t0, len(chunks))


# -- the report -----------------------------------------------------------------------------------------

def _num(v: float | None, dtype: str) -> dict | None:
    if v is None:
        return None
    f = FORMATS.get(dtype, FORMATS["float64"])
    return {"hex": hex_of(v), "decimal": shortest(float(v), f)}


def _ulp_json(u):
    if u is None or not np.isfinite(u):
        return None if u is None or np.isnan(u) else "inf"
    return int(u) if u < 2 ** 53 else float(u)


def _worst_case(plan: Plan, key: int, z: float) -> Case:
    f = plan.format
    p = pattern_of_key(key, f)
    x = f.from_bits(np.array([p], dtype=f.uint_dtype))
    return probe_case(plan.variant, plan.dtype, plan.options, x=x, z=z)


def _qdoc(plan: Plan, q: QStats, z: float, api: str, quantity: str, files: dict) -> dict:
    f = plan.format
    worst = []
    for code in sorted(q.worst):
        verdict = SEVERITY[code]
        for n, (u, key, exp, got, allowance, cond) in enumerate(q.worst[code]):
            x = value_of_pattern(pattern_of_key(key, f), f)
            case = _worst_case(plan, key, z)
            entry = {"verdict": verdict, "input": _num(x, plan.dtype),
                     "pattern": f"{pattern_of_key(key, f):#0{f.bits // 4 + 2}x}", "ulp": _ulp_json(u),
                     "allowance": None if allowance is None else round(allowance, 3),
                     "expected": _num(exp, plan.dtype), "got": _num(got, "float64"),
                     "case_id": case.case_id}
            limit = 1 if verdict == "conforms" else CASES_PER_CLASS
            if n < limit and (verdict != "conforms" or (u or 0) > 0) and len(files) < MAX_CASE_FILES:
                files.setdefault(case.case_id, (case, f"{api} {quantity} {verdict}"))
            worst.append(entry)
    spans = {SEVERITY[c]: [_num(value_of_pattern(pattern_of_key(a, f), f), plan.dtype),
                           _num(value_of_pattern(pattern_of_key(b, f), f), plan.dtype)]
             for c, (a, b) in sorted(q.span.items())}
    return {
        "count": q.count,
        "max_ulp": _ulp_json(q.max_ulp),
        "max_bits": None if q.max_ulp is None else round(float(np.log2(1 + q.max_ulp)), 3),
        "verdicts": {SEVERITY[c]: int(n) for c, n in enumerate(q.verdicts) if n},
        "error_bits_histogram": [int(n) for n in q.hist], "no_number": int(q.no_number),
        "returned_dtypes": dict(sorted(q.dtypes.items())),
        "nan_inputs": {SEVERITY[c]: int(n) for c, n in enumerate(q.nan_inputs) if n},
        "spans": spans,
        "worst": worst,
    }


def build(result: SweepResult, argv: list[str]) -> tuple[dict, dict]:
    """(sweep.json document, {case_id: (Case, note)} of the worst cases to write)."""
    from .report import environment

    plan = result.plan
    f = plan.format
    files: dict = {}
    results = []
    for z in plan.labels:
        for api in plan.apis:
            acc = result.accs[(api, z)]
            e = acc.element
            results.append({
                "api": api, "label": _num(z, plan.dtype), "inputs": e.count,
                "conforming": int(e.verdicts[CONFORMS]),
                "verdicts": {SEVERITY[c]: int(n) for c, n in enumerate(e.verdicts) if n},
                "nan_inputs": {SEVERITY[c]: int(n) for c, n in enumerate(e.nan_inputs) if n},
                "spans": {SEVERITY[c]: [_num(value_of_pattern(pattern_of_key(a, f), f), plan.dtype),
                                        _num(value_of_pattern(pattern_of_key(b, f), f), plan.dtype)]
                          for c, (a, b) in sorted(e.span.items())},
                "adapter_calls": acc.calls, "raised": acc.raised, "raised_unresolved": acc.unresolved,
                "exceptions": dict(sorted(acc.messages.items(), key=lambda kv: -kv[1])),
                "quantities": {name: _qdoc(plan, q, z, api, name, files)
                               for name, q in sorted(acc.quantities.items(), key=lambda kv: _qorder(kv[0]))},
            })
    bits = f.bits // 4 + 2
    ivs = [[f"{a:#0{bits}x}", f"{b - 1:#0{bits}x}"] for a, b in plan.intervals]
    patterns = sum(b - a for a, b in plan.chunks())
    covered = plan.chunks()
    doc = {
        "schema": SCHEMA,
        "environment": environment([{"name": plan.adapter, "available": True, "version": plan.adapter_version,
                                     "control": plan.control}]),
        "settings": {
            "variant": plan.variant, "dtype": plan.dtype, "input": plan.main,
            "adapter": plan.adapter, "adapter_version": plan.adapter_version, "apis": plan.apis,
            "labels": [_num(z, plan.dtype) for z in plan.labels], "options": plan.options,
            "range": None if plan.bounds is None else [_bound_text(b) for b in plan.bounds],
            "pattern_intervals": ivs, "patterns": patterns,
            "nan_patterns": nan_count([(a, b) for a, b in covered], f),
            "chunk": plan.chunk, "chunks": result.chunks, "max_chunks": plan.max_chunks,
            "jobs": plan.jobs, "scheduler": plan.scheduler, "worst_per_class": plan.worst,
            "argv": list(argv),
        },
        "run": {
            "finished_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "duration_s": round(result.seconds, 3),
            "inputs_judged": result.elements,
            "inputs_per_s": round(result.elements / result.seconds, 1) if result.seconds > 0 else None,
            "seconds_in_workers": {k: round(v, 3) for k, v in result.timing.items()},
            "oracle_fallbacks": result.fallbacks,
            "complete": not result.failed,
        },
        "budgets": {q: {"base_ulps": budgets.base_for(plan.variant, plan.dtype, q).none,
                        "reason": budgets.base_for(plan.variant, plan.dtype, q).reason}
                    for q in ("value", "grad")} | {"conditioning_term": budgets.CONDITIONING_TERM},
        "verdicts": {"severity": list(SEVERITY), "meaning": MEANING},
        "results": results,
        "failed_chunks": [{"chunk": d["chunk"], "patterns": [f"{d['start']:#0{bits}x}", f"{d['stop'] - 1:#0{bits}x}"],
                           "inputs": [_num(value_of_pattern(d["start"], f), plan.dtype),
                                      _num(value_of_pattern(d["stop"] - 1, f), plan.dtype)],
                           "reason": d["reason"]} for d in result.failed],
        "missing_inputs": sum(d["stop"] - d["start"] for d in result.failed) * len(plan.labels),
        "oracle_errors": result.oracle_errors,
        "worst_cases": sorted(files),
    }
    return doc, files


def _qorder(name: str):
    return (name != "value", name)


def _bound_text(b) -> str:
    if isinstance(b, float):
        return "inf" if b > 0 else "-inf"
    if b.denominator == 1:
        return str(b.numerator)
    v = float(b)
    return repr(v) if Fraction(v) == b else f"{b.numerator}/{b.denominator}"


def write(result: SweepResult, argv: list[str]) -> tuple[dict, Path]:
    doc, files = build(result, argv)
    out = Path(result.plan.out)
    out.mkdir(parents=True, exist_ok=True)
    wdir = out / "worst"
    wdir.mkdir(exist_ok=True)
    for cid, (case, note) in sorted(files.items()):
        c = Case(case.variant, case.dtype, case.inputs, case.options, note=f"xent sweep {result.plan.adapter}: {note}")
        write_atomic(wdir / f"{cid}.json", c.to_json(indent=1) + "\n")
    for p in wdir.glob("*.json"):  # a previous sweep's cases
        if p.stem not in files:
            p.unlink()
    write_atomic(out / "sweep.json", json.dumps(doc, indent=1) + "\n")
    write_atomic(out / "summary.md", summary(doc))
    write_atomic(out / "error.svg", svg(result))
    return doc, out


def _pct(n: int, total: int) -> str:
    if total == 0:
        return "-"
    if n >= total:
        return "100%"
    if n <= 0:
        return "0%"
    share = 100.0 * n / total
    if share < 0.001:
        return "<0.001%"
    if share > 99.999:
        return ">99.999%"
    return f"{share:.3f}%"


def _ulp_text(u) -> str:
    if u is None:
        return "-"
    if u == "inf":
        return "inf"
    return f"{u:,}" if isinstance(u, int) and u < 10 ** 6 else f"{float(u):.3g}"


def _val(d) -> str:
    return "-" if d is None else d["decimal"]


def summary(doc: dict) -> str:
    s, run = doc["settings"], doc["run"]
    labels = ", ".join(_val(z) for z in s["labels"])
    noun = {"logits": "logit", "probs": "probability"}.get(s["input"], s["input"])
    where = (f"Every {s['dtype']} {noun}" if s["range"] is None else
             f"Every {s['dtype']} {noun} in [{s['range'][0]}, {s['range'][1]}]")
    lines = [f"# xent sweep: {s['variant']} {s['dtype']} through {s['adapter']}", "",
             f"{where}: {s['patterns']:,} bit patterns ({s['nan_patterns']:,} of them NaN) x labels {labels}, through "
             f"{s['adapter']} {s['adapter_version']} (APIs {', '.join(s['apis'])}), options "
             f"{_options_text(s['options'])}; each element judged against the certified oracle with the run's "
             f"verdicts and budgets (value: {doc['budgets']['value']['base_ulps']} ulp, gradients: "
             f"{doc['budgets']['grad']['base_ulps']} ulp, plus the conditioning term).", "",
             f"{run['inputs_judged']:,} inputs in {run['duration_s']:.1f} s ({s['chunks']} chunks of {s['chunk']:,}, "
             f"{s['jobs']} job(s){', scheduler ' + s['scheduler'] if s['scheduler'] else ''}); time in the workers: "
             + ", ".join(f"{k[:-2]} {v:.1f} s" for k, v in run["seconds_in_workers"].items())
             + f"; oracle slow-path fallbacks: {run['oracle_fallbacks']:,}.", ""]
    if s["max_chunks"] is not None:
        lines += [f"**Partial sweep**: only the first {s['max_chunks']} chunk(s) (--max-chunks).", ""]
    if doc["failed_chunks"]:
        lines += [f"**Incomplete**: {len(doc['failed_chunks'])} chunk(s) failed, {doc['missing_inputs']:,} inputs "
                  "missing (see below).", ""]
    qnames = []
    for r in doc["results"]:
        for q in r["quantities"]:
            if q not in qnames:
                qnames.append(q)
    lines += ["| api | label | inputs | conforming | " + " | ".join(f"max ulp {q}" for q in qnames)
              + " | verdicts (worst per input) |",
              "|---|---|---|---|" + "---|" * len(qnames) + "---|"]
    for r in doc["results"]:
        counts = ", ".join(f"{v} {n:,}" for v, n in sorted(r["verdicts"].items(), key=lambda vn: SEVERITY.index(vn[0]))
                           if v != "conforms") or "-"
        cells = [_ulp_text(r["quantities"][q]["max_ulp"]) if q in r["quantities"] else "-" for q in qnames]
        lines.append(f"| {r['api']} | {_val(r['label'])} | {r['inputs']:,} | {_pct(r['conforming'], r['inputs'])} | "
                     + " | ".join(cells) + f" | {counts} |")
    lines += ["", "## Findings", ""]
    any_finding = False
    for r in doc["results"]:
        head = f"### {r['api']}, label {_val(r['label'])}"
        body = []
        for qname, q in r["quantities"].items():
            dt = [d for d in q["returned_dtypes"] if d != s["dtype"]]
            for v in SEVERITY:
                n = q["verdicts"].get(v, 0)
                if v == "conforms" or not n:
                    continue
                lo, hi = q["spans"].get(v, [None, None])
                w = next((e for e in q["worst"] if e["verdict"] == v), None)
                line = (f"- {qname}: **{v}** on {n:,} input{'s' * (n != 1)} ({_pct(n, q['count'])}), {s['input']} from "
                        f"{_val(lo)} to {_val(hi)}")
                if v == "dtype" and dt:
                    line += f": returned {', '.join(dt)} for {s['dtype']} inputs (compared after rounding into it)"
                    w = w if w is not None and w["ulp"] not in (0, None) else None
                if w is not None and v in ("raised", "crash", "timeout"):
                    line += (f"; e.g. {s['input']} = {_val(w['input'])} ({w['pattern']})"
                             + (f", case `worst/{w['case_id']}.json`" if w["case_id"] in doc["worst_cases"] else ""))
                elif w is not None:
                    line += (f"; worst: {s['input']} = {_val(w['input'])} ({w['pattern']}): got {_val(w['got'])}, "
                             f"truth {_val(w['expected'])}, {_ulp_text(w['ulp'])} ulp"
                             + (f" (allowance {w['allowance']})" if w["allowance"] is not None else "")
                             + (f", case `worst/{w['case_id']}.json`" if w["case_id"] in doc["worst_cases"] else ""))
                body.append(line)
        if r["raised"]:
            body.append(f"- no answer (an exception, a crash or a timeout) for {r['raised']:,} inputs "
                        f"({r['raised_unresolved']:,} of them in pieces not isolated further, after "
                        f"{r['adapter_calls']:,} calls): " + "; ".join(f"{m} ({n:,})" for m, n in list(r["exceptions"].items())[:3]))
        if body:
            any_finding = True
            lines += [head, ""] + body + [""]
    if not any_finding:
        lines += ["Every input conforms, for every API, label and quantity.", ""]
    if doc["failed_chunks"]:
        lines += ["## Missing ranges (failed chunks)", "", "| chunk | patterns | inputs | reason |", "|---|---|---|---|"]
        for d in doc["failed_chunks"]:
            lines.append(f"| {d['chunk']} | {d['patterns'][0]}..{d['patterns'][1]} | {_val(d['inputs'][0])} .. "
                         f"{_val(d['inputs'][1])} | {d['reason'].replace('|', '/')} |")
        lines.append("")
    lines += ["## Files", "", "- `sweep.json`: everything above, with the ULP histograms (log2 bins as in the run "
              "report) and the worst inputs per verdict class", "- `error.svg`: the largest error per bin of inputs",
              f"- `worst/<case_id>.json`: {len(doc['worst_cases'])} single-element cases (`xent replay FILE`)", ""]
    return "\n".join(lines)


# -- the plot ---------------------------------------------------------------------------------------

LABEL_COLOURS = ("#1f5fbf", "#e07b00", "#2e7d32", "#8e24aa", "#c62828")


def _tick_text(v: float) -> str:
    if v == 0:
        return "0"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    e = int(round(math.log10(abs(v))))
    sign = "-" if v < 0 else ""
    return f"{sign}{10 ** e:g}" if -3 <= e <= 4 else f"{sign}1e{e}"


def svg(result: SweepResult) -> str:
    from .html import VERDICT_COLOUR, OTHER_COLOUR

    plan = result.plan
    f = plan.format
    lo, hi = plan.plot_span()
    qnames = []
    for acc in result.accs.values():
        for q in acc.quantities:
            if q not in qnames:
                qnames.append(q)
    qnames.sort(key=_qorder)
    has_nan = any(acc.quantities[q].plot_err is not None and acc.quantities[q].plot_err[PLOT_BINS] >= 0
                  for acc in result.accs.values() for q in acc.quantities)
    left, pw, ph, gap, top = 44, 420, 110, 34, 34
    strip = 5
    nlab = len(plan.labels)
    panel_h = ph + 8 + strip * nlab + 28
    nan_w = 16 if has_nan else 0
    width = len(qnames) * (left + pw + nan_w + gap) + 10
    height = top + len(plan.apis) * (panel_h + 22) + 40
    ymax = 4.0
    for acc in result.accs.values():
        for q in acc.quantities.values():
            if q.plot_err is not None and (q.plot_err >= 0).any():
                ymax = max(ymax, float(q.plot_err.max()))
    ystep = next(s for s in (1, 2, 4, 8, 16, 32, 64) if ymax / s <= 6)
    ymax = math.ceil(ymax / ystep) * ystep
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img">',
           "<style>text{font:10px system-ui,sans-serif;fill:#444}.ax{stroke:#888;fill:none}"
           ".gl{stroke:#e6e6e6}.t{font-size:12px;font-weight:600;fill:#222}</style>",
           f'<text class="t" x="8" y="16">{_xml(plan.variant)} {plan.dtype} through {_xml(plan.adapter)}: largest '
           f"error per bin of {_xml(plan.main)} (error bits = log2(1 + ulp)); strips: worst verdict per bin and label"
           "</text>"]
    # x ticks: 0 and powers of ten inside the swept values, at their place in the pattern order
    cands = [0.0] + [s * 10.0 ** e for e in range(-324, 309) for s in (1.0, -1.0)]
    span_w = float(hi) - float(lo) + 1.0

    def xpos(key: float) -> float:
        return pw * (key - lo) / span_w

    ticks = []
    for v in sorted(cands):
        with np.errstate(over="ignore"):
            fv = np.array([v], dtype=np.float64).astype(f.np_dtype)
        if not np.isfinite(fv[0]) or (v != 0 and abs(float(fv[0]) / v - 1) > 0.01):  # beyond the dtype's range
            continue
        key = int(total_key(f.to_bits(fv), f)[0])
        if lo <= key <= hi:
            ticks.append((xpos(key), v))
    chosen = []
    for x, v in sorted(ticks, key=lambda t: (abs(t[1]) != 0, -abs(math.log10(abs(t[1]))) if t[1] else 0)):
        if all(abs(x - c[0]) >= 44 for c in chosen):
            chosen.append((x, v))
    chosen.sort()
    for row, api in enumerate(plan.apis):
        y0 = top + row * (panel_h + 22)
        for col, qn in enumerate(qnames):
            x0 = 10 + col * (left + pw + nan_w + gap) + left
            out.append(f'<text class="t" x="{x0}" y="{y0 + 10}">{_xml(api)} · {_xml(qn)}</text>')
            py = y0 + 16

            def sy(b):
                return py + ph - ph * b / ymax

            yv = 0.0
            while yv <= ymax:
                out.append(f'<path class="gl" d="M{x0} {sy(yv):.1f}H{x0 + pw}"/>'
                           f'<text x="{x0 - 4}" y="{sy(yv) + 3:.1f}" text-anchor="end">{yv:g}</text>')
                yv += ystep
            base = budgets.base_for(plan.variant, plan.dtype, qn).none
            out.append(f'<path d="M{x0} {sy(math.log2(1 + base)):.1f}H{x0 + pw}" stroke="#9ccc65" '
                       f'stroke-dasharray="4 3"><title>base budget: {base} ulp</title></path>')
            for x, v in chosen:
                out.append(f'<path class="gl" d="M{x0 + x:.1f} {py}V{py + ph}"/>')
            out.append(f'<path class="ax" d="M{x0} {py}V{py + ph}H{x0 + pw}"/>')
            for li, z in enumerate(plan.labels):
                q = result.accs[(api, z)].quantities.get(qn)
                colour = LABEL_COLOURS[li % len(LABEL_COLOURS)]
                sy0 = py + ph + 6 + li * strip
                if q is None or q.plot_err is None:
                    continue
                d, pen = [], False
                for b in range(PLOT_BINS):
                    e = float(q.plot_err[b])
                    if e < 0:
                        pen = False
                        continue
                    X = x0 + pw * (b + 0.5) / PLOT_BINS
                    d.append(f"{'L' if pen else 'M'}{X:.1f} {sy(e):.1f}")
                    pen = True
                if d:
                    out.append(f'<path d="{"".join(d)}" stroke="{colour}" stroke-width="1.2" fill="none">'
                               f"<title>label {shortest(z, f)}</title></path>")
                # verdict strip: runs of bins with the same non-conforming worst verdict
                b = 0
                while b < PLOT_BINS:
                    c = int(q.plot_code[b])
                    e = b
                    while e + 1 < PLOT_BINS and int(q.plot_code[e + 1]) == c:
                        e += 1
                    if c != CONFORMS and q.plot_err[b] >= 0 or c != CONFORMS:
                        X = x0 + pw * b / PLOT_BINS
                        W = max(pw * (e - b + 1) / PLOT_BINS, 2.0)  # one bad input stays visible
                        out.append(f'<rect x="{X:.1f}" y="{sy0}" width="{W:.1f}" height="{strip - 1}" '
                                   f'fill="{VERDICT_COLOUR.get(SEVERITY[c], OTHER_COLOUR)}"><title>label '
                                   f"{shortest(z, f)}: {SEVERITY[c]}</title></rect>")
                    b = e + 1
                if has_nan and q.plot_err[PLOT_BINS] >= 0:
                    c = int(q.plot_code[PLOT_BINS])
                    nx = x0 + pw + 6
                    if q.plot_err[PLOT_BINS] > 0:
                        out.append(f'<circle cx="{nx + 4}" cy="{sy(float(q.plot_err[PLOT_BINS])):.1f}" r="2" '
                                   f'fill="{colour}"/>')
                    out.append(f'<rect x="{nx}" y="{sy0}" width="8" height="{strip - 1}" '
                               f'fill="{VERDICT_COLOUR.get(SEVERITY[c], OTHER_COLOUR)}"><title>NaN inputs, label '
                               f"{shortest(z, f)}: {SEVERITY[c]}</title></rect>")
            ly = py + ph + 6 + nlab * strip + 11
            for x, v in chosen:
                out.append(f'<text x="{x0 + x:.1f}" y="{ly}" text-anchor="middle">{_tick_text(v)}</text>')
            if has_nan:
                out.append(f'<text x="{x0 + pw + 10}" y="{ly}" text-anchor="middle">NaN</text>')
    ly = height - 14
    legend = [f'<rect x="{10 + 90 * i}" y="{ly - 8}" width="14" height="3" fill="{LABEL_COLOURS[i % len(LABEL_COLOURS)]}"/>'
              f'<text x="{28 + 90 * i}" y="{ly - 4}">label {shortest(z, f)}</text>' for i, z in enumerate(plan.labels)]
    out += legend
    seen = sorted({int(c) for acc in result.accs.values() for q in acc.quantities.values()
                   if q.plot_code is not None for c in np.unique(q.plot_code) if c != CONFORMS})
    x = 10 + 90 * len(plan.labels) + 20
    for c in seen:
        out.append(f'<rect x="{x}" y="{ly - 10}" width="10" height="8" fill="{VERDICT_COLOUR.get(SEVERITY[c], OTHER_COLOUR)}"/>'
                   f'<text x="{x + 13}" y="{ly - 3}">{SEVERITY[c]}</text>')
        x += 20 + 6 * len(SEVERITY[c])
    out.append(f'<text x="{x + 10}" y="{ly - 3}">x axis: the {_xml(plan.main)} in bit-pattern order (each binade '
               "equally wide); dashed: the base budget</text>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _xml(s) -> str:
    import html

    return html.escape(str(s), quote=True)


# -- the command --------------------------------------------------------------------------------------

def _count(text: str) -> int:
    try:
        n = int(text, 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {n}")
    return n


def add_parser(sub) -> argparse.ArgumentParser:
    from .cli import _writable

    p = sub.add_parser("sweep", help="an elementwise variant over every representable input of a dtype")
    # `--range -20:20`: a value starting with a minus sign and a number is an argument, not an option
    # (argparse only knows plain negative numbers; this parser has no option that looks like one)
    p._negative_number_matcher = re.compile(r"^-(\d|\.\d|inf|0x)", re.IGNORECASE)
    p.add_argument("variant", help=f"an elementwise variant: {', '.join(SUPPORTED)}")
    p.add_argument("--adapter", required=True, help="the adapter (see xent list), or MODULE:ATTRIBUTE of a third-party one")
    p.add_argument("--dtype", required=True, help=f"one of {', '.join(DTYPES)}")
    p.add_argument("--range", metavar="LO:HI", help="only inputs with LO <= value <= HI (decimals, hex floats, "
                   "inf); default: every bit pattern, NaNs included (bce_probs: [0, 1])")
    p.add_argument("--label", action="append", metavar="Z", help="a label in [0, 1], exact in the dtype; "
                   "repeat for several (default: 0 and 1)")
    p.add_argument("--option", action="append", default=[], metavar="K=V",
                   help="an option of the variant, e.g. label_smoothing=0.1 (the reduction is always none)")
    p.add_argument("--api", help="one API of the adapter (default: every API that expresses the variant)")
    p.add_argument("--out", type=_writable("folder"),
                   help="report folder (default reports/sweeps/<variant>-<adapter>-<dtype>[-label<z>])")
    p.add_argument("--jobs", type=_count, default=os.cpu_count() or 1,
                   help="worker processes for the chunks (default: the number of CPUs)")
    p.add_argument("--scheduler", metavar="ADDR", help="a Dask scheduler address: chunks go to its workers")
    p.add_argument("--chunk", type=_count, help="bit patterns per chunk (default 4096 for 16-bit dtypes, 2^20 "
                   "otherwise)")
    p.add_argument("--max-chunks", type=_count, help="stop after the first N chunks (a partial sweep)")
    p.add_argument("--worst", type=_count, default=DEFAULT_WORST,
                   help=f"worst inputs kept per API, label, quantity and verdict class (default {DEFAULT_WORST})")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    return p


def cmd_sweep(args, argv) -> int:
    from .cli import UsageError

    try:
        plan = make_plan(args.variant, args.adapter, args.dtype, args.range, args.label, args.option, args.api,
                         args.chunk, args.worst, args.max_chunks, args.jobs, args.scheduler, args.out)
    except SweepError as e:
        raise UsageError(str(e)) from None
    from oracle import fast

    total = sum(b - a for a, b in plan.chunks()) * len(plan.labels)
    if plan.variant not in getattr(fast, "ELEMENTWISE", ("sigmoid_bce_logits",)) and total > 2_000_000:
        print(f"xent: warning: the oracle has no fast path for {plan.variant} yet; its arbitrary-precision path "
              f"takes about 10^4 inputs a second, so these {total:,} inputs will take hours (narrow --range)",
              file=sys.stderr)
    try:
        result = sweep(plan, progress=None if args.quiet else sys.stderr)
    except SweepError as e:
        raise UsageError(str(e)) from None
    except SweepFailed as e:
        print(f"xent: error: {one_line(e, 600)}", file=sys.stderr)
        return 1
    doc, out = write(result, argv)
    run = doc["run"]
    print(f"{run['inputs_judged']:,} inputs judged in {run['duration_s']:.1f} s "
          f"({_rate(run['inputs_per_s'] or 0)}); worker time: "
          + ", ".join(f"{k[:-2]} {v:.1f} s" for k, v in run["seconds_in_workers"].items()))
    for r in doc["results"]:
        bad = ", ".join(f"{v} {n:,}" for v, n in sorted(r["verdicts"].items(), key=lambda vn: SEVERITY.index(vn[0]))
                        if v != "conforms") or "no divergences"
        mx = ", ".join(f"{q} {_ulp_text(d['max_ulp'])}" for q, d in r["quantities"].items())
        print(f"  {r['api']:<24} label {_val(r['label']):<4} {_pct(r['conforming'], r['inputs'])} conform; {bad}; "
              f"max ulp: {mx}")
    print(f"report: {out / 'sweep.json'}\nsummary: {out / 'summary.md'}\nplot: {out / 'error.svg'}\n"
          f"worst cases: {len(doc['worst_cases'])} in {out / 'worst'}")
    status = 0
    if doc["failed_chunks"]:
        print(f"xent: error: {len(doc['failed_chunks'])} chunk(s) failed; {doc['missing_inputs']:,} inputs are "
              f"missing (listed in the report)", file=sys.stderr)
        status = 1
    return status
