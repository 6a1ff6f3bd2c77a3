"""The run: every adapter and API against the oracle, over the cases of each variant and dtype.

For each variant x dtype, the curated corpus cases come first, then the generated ones. The oracle
evaluates each case once; every available adapter evaluates it through every API that can express
it; each answer gets a verdict (``verdict.classify``). The result is aggregated per cell
(adapter, api, variant, dtype), and every non-conforming answer is kept as a divergence with the
hex-exact case, so a person can reproduce it. Deterministic given the seed.

A case the oracle raises on is a bug in the oracle: it gets no verdict, and is listed with its
exception in ``oracle_errors`` so the run still covers everything else.

An adapter may declare a `Contract` for a case and API (``adapter.contract(case, api)``): a
documented behaviour that differs from the math, which the oracle evaluates exactly; an answer that
misses the truth but meets the contract's value is then ``contract`` rather than a divergence.
"""
from __future__ import annotations

import functools
import json
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

import adapters as registry
from adapters.base import AdapterCrashed, AdapterTimeout
import oracle
from cases import FORMATS, Case
from .numbers import hex_of, shortest
from .ulp import bits_of_error
from .verdict import CaseVerdict, classify


HISTOGRAM_BINS = 66  # 0: exact; k in 1..64: worst ulp in (2**(k-1), 2**k] (1 ulp in bin 1); 65: beyond
POINTS_PER_CELL = 200  # (max |input|, error bits, verdict) kept per cell for the error plot


def histogram_bin(ulp: float) -> int:
    if ulp <= 0:
        return 0
    if not np.isfinite(ulp) or ulp > 2.0 ** 64:
        return HISTOGRAM_BINS - 1
    return max(1, int(np.ceil(np.log2(ulp))))


def magnitude(case: Case) -> float | None:
    """The largest finite |value| of the case's main float input (logits, probs or inputs)."""
    for name in ("logits", "probs", "inputs"):
        if name in case.inputs:
            with np.errstate(invalid="ignore"):  # bfloat16 NaN into float64 warns
                a = np.asarray(case[name], dtype=np.float64)
            finite = a[np.isfinite(a)]
            return float(np.max(np.abs(finite))) if finite.size else None
    return None


@dataclass
class Cell:
    adapter: str
    api: str
    variant: str
    dtype: str
    cases: int = 0
    conforming: int = 0
    searched: int = 0  # of `cases`, how many the targeted search drew (the rest: corpus + shared)
    searched_conforming: int = 0  # of those, how many conform
    max_ulp: float | None = None
    undecided_elements: int = 0
    seconds: float = 0.0
    verdicts: Counter = field(default_factory=Counter)
    histogram: list = field(default_factory=lambda: [0] * HISTOGRAM_BINS)
    no_number: int = 0
    points: list = field(default_factory=list)

    def add(self, cv: CaseVerdict, seconds: float, case: Case | None = None, searched: bool = False) -> None:
        self.cases += 1
        self.searched += searched
        self.searched_conforming += searched and cv.verdict == "conforms"
        self.conforming += cv.verdict == "conforms"
        self.verdicts[cv.verdict] += 1
        self.undecided_elements += cv.undecided
        self.seconds += seconds
        if cv.max_ulp is not None:
            self.max_ulp = cv.max_ulp if self.max_ulp is None else max(self.max_ulp, cv.max_ulp)
        numeric = cv.max_ulp is not None and cv.verdict not in _NO_NUMBER
        if numeric:
            self.histogram[histogram_bin(cv.max_ulp)] += 1
        else:
            self.no_number += 1
        if case is not None and len(self.points) < POINTS_PER_CELL:
            bits = round(float(bits_of_error(cv.max_ulp)), 3) if numeric else None
            self.points.append([magnitude(case), bits, cv.verdict])

    def to_dict(self) -> dict:
        return {
            "adapter": self.adapter, "api": self.api, "variant": self.variant, "dtype": self.dtype,
            "cases": self.cases, "conforming": self.conforming, "searched": self.searched,
            "searched_conforming": self.searched_conforming,
            "max_ulp": _ulp_json(self.max_ulp),
            "max_bits": None if self.max_ulp is None else round(float(bits_of_error(self.max_ulp)), 3),
            "verdicts": dict(sorted(self.verdicts.items())),
            "undecided_elements": self.undecided_elements, "seconds": round(self.seconds, 4),
            "error_bits_histogram": list(self.histogram), "no_number": self.no_number,
            "points": [[None if m is None or not np.isfinite(m) else m, b, v] for m, b, v in self.points],
        }


_NO_NUMBER = ("crash", "timeout", "raised", "shape", "nan", "accepted-invalid", "overflow")


def regime_of(case: Case) -> str:
    """The input regime a case came from (its note ``regime:<name>``), ``corpus`` otherwise."""
    note = case.note or ""
    if note.startswith("regime:"):
        return note[7:].split(";")[0].strip()
    return "corpus"


@dataclass
class Group:
    """One divergence: a cell, a verdict class and an input regime; the worst case kept."""

    adapter: str
    api: str
    variant: str
    dtype: str
    verdict: str
    regime: str
    count: int = 0
    case: Case | None = None
    truth: object = None
    cv: CaseVerdict | None = None
    shrunk: object = None  # shrink.Shrunk

    def offer(self, case: Case, truth, cv: CaseVerdict) -> None:
        self.count += 1
        if self.case is None or _worse(cv, self.cv):
            self.case, self.truth, self.cv = case, truth, cv


def _worse(a: CaseVerdict, b: CaseVerdict) -> bool:
    ua = a.worst.ulp if a.worst.ulp is not None else -1.0
    ub = b.worst.ulp if b.worst.ulp is not None else -1.0
    return ua > ub


@dataclass
class RunResult:
    seed: int
    examples: int
    variants: list[str]
    dtypes: list[str]
    adapters: list[dict]  # name, description, control, available, version or reason
    duration_s: float = 0.0
    search: int = 0
    shrink: int = 0
    cells: list[Cell] = field(default_factory=list)
    divergences: list[dict] = field(default_factory=list)  # one per Group
    oracle: list[dict] = field(default_factory=list)  # per variant x dtype: cases, statuses, seconds
    not_applicable: list[dict] = field(default_factory=list)  # adapter, variant, dtype, cases
    oracle_errors: list[dict] = field(default_factory=list)  # cases the oracle raised on: skipped
    answers: int = 0
    divergent_answers: int = 0


class OracleError(Exception):
    """The oracle raised on a case: a bug in the oracle, not a property of any adapter."""


@functools.lru_cache(maxsize=1)
def _corpus() -> tuple[Case, ...]:
    from cases.corpus import load_corpus

    return tuple(load_corpus())


def default_source(variant: str, dtype: str, examples: int, seed: int):
    """Corpus cases of this variant and dtype, then ``examples`` generated ones."""
    from cases.strategies import generate_stream

    yield from (c for c in _corpus() if c.variant == variant and c.dtype == dtype)
    yield from generate_stream(variant, dtype, examples, seed)  # streamed: flat memory on long runs


class _Bounded(dict):
    """A dict that forgets its oldest entries past ``limit``: caches that keep memory flat."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit = limit

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        if len(self) > self.limit:
            del self[next(iter(self))]


def run(adapters, variants, dtypes, examples: int, seed: int, source=default_source,
        progress=True, search: int = 0, shrink: int = 0, store=None, journal=None, units=None) -> RunResult:
    """Run every available adapter in ``adapters`` (instances or names) over the cases.

    Per variant and dtype: ``source(variant, dtype, examples, seed)`` gives the shared cases
    (default: the corpus, then ``examples`` generated ones), which every adapter answers; then each
    cell (adapter, API) that answered runs its own targeted search of ``search`` cases
    (``conformance.search``); divergences are grouped per cell, verdict and input regime, and the
    worst case of each new group is shrunk with at most ``shrink`` adapter calls. ``progress`` is a
    stream, True for stderr, or None; ``store`` (a ``CaseStore``) keeps every divergent case kept;
    ``journal`` (a ``journal.Journal``) records every answer and reads back those of a killed run.
    ``units``: None for every adapter on every variant, or the set of (adapter name, variant) pairs
    to run (a shard or a chunk of a distributed run, ``conformance.shards``): a variant no unit
    names is skipped, with no oracle entry. Each oracle entry counts the shared cases apart
    (``shared``), so the entries of runs over disjoint units merge into the single run's.
    """
    from .progress import Progress
    from . import search as searching
    from .shrink import shrink as shrink_case

    instances = [registry.get(a) if isinstance(a, str) else a for a in adapters]
    info, usable = [], []
    for a in instances:
        ok, detail = a.available()
        info.append({"name": a.name, "description": a.description, "control": bool(a.control),
                     "available": bool(ok), ("version" if ok else "reason"): detail})
        if ok:
            usable.append(a)
    result = RunResult(seed, examples, list(variants), list(dtypes), info, search=search, shrink=shrink)
    cells: dict[tuple, Cell] = {}
    groups: dict[tuple, Group] = {}
    not_applicable: Counter = Counter()
    truths: dict = _Bounded(4096)  # oracle results by case_id (contract results by (case_id, params))
    judged: dict = _Bounded(4096)  # (adapter, api, case_id) -> (truth, verdict) while shrinking
    start = time.perf_counter()
    names = {a.name for a in instances}
    pairs = [(v, d) for v in result.variants for d in result.dtypes
             if units is None or any((n, v) in units for n in names)]
    show = Progress(progress, len(pairs))

    def record(a, api, case, truth, cv, seconds, searched=False):
        cell = cells.setdefault((a.name, api, case.variant, case.dtype), Cell(a.name, api, case.variant, case.dtype))
        cell.add(cv, seconds, case, searched)
        result.answers += 1
        if cv.verdict not in ("conforms", "contract"):  # a documented deviation is not a divergence
            result.divergent_answers += 1
            key = (a.name, api, case.variant, case.dtype, cv.verdict, regime_of(case))
            groups.setdefault(key, Group(*key)).offer(case, truth, cv)
        show.answer(cv.verdict not in ("conforms", "contract"))

    for variant, dtype in pairs:
        stats = {"variant": variant, "dtype": dtype, "cases": 0, "ok": 0, "invalid": 0, "undecided": 0,
                 "seconds": 0.0, "max_prec": 0}
        show.start(variant, dtype)
        active = [a for a in usable if units is None or (a.name, variant) in units]
        seen = set()
        generated = 0
        for case in source(variant, dtype, examples, seed):
            if case.case_id in seen:
                continue
            seen.add(case.case_id)
            generated += regime_of(case) != "corpus"
            try:
                truth = _truth(case, truths, stats)
            except OracleError as e:
                _oracle_error(result, case, e)
                continue
            for a in active:
                if regime_of(case) != "corpus" and generated > _budget(a, examples):
                    continue  # a slow adapter answers the corpus and the first shared cases
                apis = _apis(a, case)
                if not apis:
                    not_applicable[(a.name, variant, dtype)] += 1
                for api in apis:
                    cv, seconds = _judge(a, api, case, truth, truths, journal)
                    record(a, api, case, truth, cv, seconds)
        # what the shared cases cost the oracle: the same in every run over this variant and dtype
        stats["shared"] = {k: stats[k] for k in ("cases", "ok", "invalid", "undecided")}
        if search > 0:
            for a in active:
                budget = _budget(a, search)
                for api in sorted({k[1] for k in cells if k[0] == a.name and k[2:] == (variant, dtype)}):
                    show.phase(f"search {a.name}/{api}")

                    def judge(case, a=a, api=api):
                        try:
                            truth = _truth(case, truths, stats)
                        except OracleError as e:
                            _oracle_error(result, case, e)
                            return None
                        cv, seconds = _judge(a, api, case, truth, truths, journal)
                        judge.seconds = seconds
                        return truth, cv

                    def keep(case, truth, cv, a=a, api=api, judge=judge):
                        record(a, api, case, truth, cv, judge.seconds, searched=True)

                    searching.search_cell(a, api, variant, dtype, budget, seed, judge, keep)
        by_name = {a.name: a for a in usable}
        for key, g in groups.items():
            if key[2:4] != (variant, dtype) or g.shrunk is not None:
                continue
            if shrink > 0 and g.verdict not in ("crash", "timeout"):
                show.phase(f"shrink {g.adapter}/{g.api} {g.verdict}")
                a = by_name[g.adapter]

                def judge_shrink(case, a=a, api=g.api):
                    key = (a.name, api, case.case_id)
                    if key not in judged:  # groups of one cell often try the same candidates
                        if api not in a.apis(case):
                            judged[key] = None
                        else:
                            try:
                                truth = _truth(case, truths)
                            except OracleError:
                                judged[key] = None
                            else:
                                judged[key] = truth, _judge(a, api, case, truth, truths, journal)[0]
                    return judged[key]

                g.shrunk = shrink_case(g.case, g.truth, g.cv, judge_shrink, _budget(a, shrink)) or False
            if store is not None:
                store.save(g.case)
                if g.shrunk:
                    store.save(g.shrunk.case)
        result.oracle.append({**stats, "seconds": round(stats["seconds"], 3)})
        show.done(variant, dtype, stats["cases"], stats["seconds"], len(groups), len(result.oracle_errors))
    show.close()
    result.cells = list(cells.values())
    result.divergences = [group_entry(g) for g in groups.values()]
    result.not_applicable = [{"adapter": a, "variant": v, "dtype": d, "cases": n}
                             for (a, v, d), n in not_applicable.items()]
    result.duration_s = round(time.perf_counter() - start, 3)
    return result


def _apis(adapter, case: Case) -> list[str]:
    """The adapter's APIs for the case; none when its worker dies or hangs while being asked (the
    worker restarts for the next case; evaluate is where such a case gets its verdict)."""
    try:
        return adapter.apis(case)
    except (AdapterCrashed, AdapterTimeout):
        return []


SLOW_FACTOR = 4


def _budget(adapter, n: int) -> int:
    """Shared-case, search and shrink budgets of an adapter: a quarter (at least 2) for those that
    declare themselves ``slow`` (they JIT-compile every new shape: ~0.2-0.8 s a call against
    ~5 ms), so the default audit of every framework stays within minutes. Fixed counts, so
    still deterministic."""
    if n <= 0 or not getattr(adapter, "slow", False):
        return n
    return max(2, n // SLOW_FACTOR)


def _oracle_error(result: RunResult, case: Case, e: Exception) -> None:
    if any(x["case_id"] == case.case_id for x in result.oracle_errors):
        return
    result.oracle_errors.append({"variant": case.variant, "dtype": case.dtype, "case_id": case.case_id,
                                 "error": repr(e.__cause__), "case": case.to_dict()})


def _truth(case: Case, truths: dict, stats: dict | None = None):
    if case.case_id not in truths:
        t0 = time.perf_counter()
        try:
            truths[case.case_id] = oracle.evaluate(case, grads=True)
        except Exception as e:  # an oracle bug: never a verdict, reported with the case
            raise OracleError(case.case_id) from e
        if stats is not None:
            stats["seconds"] += time.perf_counter() - t0
    truth = truths[case.case_id]
    if stats is not None:
        stats["cases"] += 1
        stats[truth.status] += 1
        if truth.value is not None and np.size(truth.value.prec):
            stats["max_prec"] = max(stats["max_prec"], int(np.max(truth.value.prec)))
    return truth


def _contract_truth(case: Case, declared, truths: dict):
    key = (case.case_id, json.dumps(declared.params, sort_keys=True))
    if key not in truths:
        try:
            truths[key] = oracle.evaluate(case, grads=True, contract=declared.params)
        except Exception as e:  # an oracle bug: never a verdict, reported with the case
            raise OracleError(case.case_id) from e
    return truths[key]


def _judge(adapter, api: str, case: Case, truth, truths: dict, journal=None) -> tuple[CaseVerdict, float]:
    key = (adapter.name, api, case.case_id)
    if journal is not None:
        hit = journal.get(key)
        if hit is not None:  # answered before the run was killed: read back, not asked again
            return hit
    cv, seconds = _judge_now(adapter, api, case, truth, truths)
    if journal is not None:
        journal.record(key, cv, seconds)
    return cv, seconds


def _judge_now(adapter, api: str, case: Case, truth, truths: dict) -> tuple[CaseVerdict, float]:
    contract = None
    declared = adapter.contract(case, api) if hasattr(adapter, "contract") else None
    if declared is not None:
        contract = _contract_truth(case, declared, truths)
    t0 = time.perf_counter()
    try:
        output = adapter.evaluate(case, api, grads=True)
    except AdapterCrashed as e:  # its worker died on the case: a signal, an exit code, the memory limit
        return CaseVerdict.single("crash", e.message), time.perf_counter() - t0
    except AdapterTimeout as e:  # no answer within the per-call limit; the worker was killed
        return CaseVerdict.single("timeout", e.message), time.perf_counter() - t0
    except Exception as e:  # the implementation's exception is the verdict "raised"
        return classify(case, truth, error=e), time.perf_counter() - t0
    seconds = time.perf_counter() - t0
    if contract is not None and contract.status == "invalid":
        contract = None
    cv = classify(case, truth, output, contract=contract)
    if cv.verdict == "contract":
        cv.worst.message = f"{declared.name}: {declared.summary} ({declared.url})"
    return cv, seconds


def _ulp_json(u):
    if u is None or not np.isfinite(u):
        return None
    return int(u) if u < 2 ** 53 else float(u)


def _number(v: float | None, dtype: str) -> dict | None:
    """A value as exact hex and as the shortest decimal of its dtype."""
    if v is None:
        return None
    f = FORMATS.get(dtype, FORMATS["float64"])
    return {"hex": hex_of(v), "decimal": shortest(float(v), f), "dtype": f.name}


def divergence(adapter: str, api: str, case: Case, truth, cv: CaseVerdict) -> dict:
    w = cv.worst
    cond = w.condition
    return {
        "adapter": adapter, "api": api, "variant": case.variant, "dtype": case.dtype,
        "verdict": cv.verdict, "quantity": w.quantity,
        "index": list(w.index) if w.index is not None else None,
        "ulp": _ulp_json(w.ulp), "allowance": None if w.allowance is None else round(w.allowance, 3),
        "allowance_terms": w.terms,
        "expected": _number(w.expected, case.dtype),
        "got": _number(w.got, w.got_dtype or case.dtype),
        "message": w.message or (truth.reason if truth.status == "invalid" else ""),
        "condition": None if cond is None else (float(cond) if np.isfinite(cond) else "inf"),
        "case_id": case.case_id, "note": case.note, "case": case.to_dict(),
    }


def group_entry(g: Group) -> dict:
    """The report entry of one divergence group: its worst case, the count, the shrunk case."""
    d = divergence(g.adapter, g.api, g.case, g.truth, g.cv)
    d["regime"] = g.regime
    d["count"] = g.count
    if g.shrunk:
        s = divergence(g.adapter, g.api, g.shrunk.case, g.shrunk.truth, g.shrunk.verdict)
        d["shrunk"] = {k: s[k] for k in ("quantity", "index", "ulp", "allowance", "allowance_terms", "expected",
                                          "got", "message", "condition", "case_id", "note", "case")}
        d["shrunk"]["steps"], d["shrunk"]["calls"] = g.shrunk.steps, g.shrunk.calls
    else:
        d["shrunk"] = None
    return d
