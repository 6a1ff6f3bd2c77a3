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

This module holds the inputs, the plan, the chunks and the command; the judging and its
accumulators are ``conformance/sweep_judge.py``, the report, summary and plot
``conformance/sweep_report.py``.
"""
from __future__ import annotations

import argparse
import math
import os
import re
import sys
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from cases import DTYPES, FORMATS, VARIANTS, Case, CaseError
from cases.model import one_line
from .numbers import _exact, hex_of, parse_float, round_fraction, shortest
from .sweep_judge import (CONFORMS, Acc, Piece, QStats, Truth, _f64, _inf_mag, _stats, element_stats, judge,
                          plot_bins)
from .verdict import RANK, SEVERITY

SCHEMA = "xent-sweep/1"
SUPPORTED = ("sigmoid_bce_logits", "bce_probs")  # the elementwise variants
MAIN_INPUT = {"sigmoid_bce_logits": "logits", "bce_probs": "probs"}
DEFAULT_CHUNK = {"float16": 1 << 12, "bfloat16": 1 << 12, "float32": 1 << 20, "float64": 1 << 20}
DEFAULT_WORST = 10  # worst inputs kept per API x label x quantity x verdict class
CASES_PER_CLASS = 3  # of those, written as case files (non-conforming classes; 1 for conforms)
MAX_CASE_FILES = 500
MAX_CHUNKS = 1 << 16  # tasks of one sweep (float32's 2^32 patterns are 4096 chunks of 2^20)
BISECT_CALLS = 4096  # adapter calls per chunk, API and label spent on isolating raising elements
BISECT_CRASHES = 24  # of those, calls that may crash or time out (each costs a worker restart)


class SweepError(ValueError):
    """A bad sweep request; the command prints it on one line and exits 2."""


class SweepFailed(RuntimeError):
    """The sweep cannot go on (every worker process dies); the command says why and exits 1."""


# -- the set of inputs ------------------------------------------------------------------------------

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
    from .cli import UsageError
    from .cli_oracle import _option

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
    from .sweep_report import _pct, _ulp_text, _val, write

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
