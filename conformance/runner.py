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
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

import adapters as registry
import oracle
from cases import FORMATS, Case
from .numbers import hex_of, shortest
from .ulp import bits_of_error
from .verdict import CaseVerdict, classify


@dataclass
class Cell:
    adapter: str
    api: str
    variant: str
    dtype: str
    cases: int = 0
    conforming: int = 0
    max_ulp: float | None = None
    undecided_elements: int = 0
    seconds: float = 0.0
    verdicts: Counter = field(default_factory=Counter)

    def add(self, cv: CaseVerdict, seconds: float) -> None:
        self.cases += 1
        self.conforming += cv.verdict == "conforms"
        self.verdicts[cv.verdict] += 1
        self.undecided_elements += cv.undecided
        self.seconds += seconds
        if cv.max_ulp is not None:
            self.max_ulp = cv.max_ulp if self.max_ulp is None else max(self.max_ulp, cv.max_ulp)

    def to_dict(self) -> dict:
        return {
            "adapter": self.adapter, "api": self.api, "variant": self.variant, "dtype": self.dtype,
            "cases": self.cases, "conforming": self.conforming,
            "max_ulp": _ulp_json(self.max_ulp),
            "max_bits": None if self.max_ulp is None else round(float(bits_of_error(self.max_ulp)), 3),
            "verdicts": dict(sorted(self.verdicts.items())),
            "undecided_elements": self.undecided_elements, "seconds": round(self.seconds, 4),
        }


@dataclass
class RunResult:
    seed: int
    examples: int
    variants: list[str]
    dtypes: list[str]
    adapters: list[dict]  # name, description, control, available, version or reason
    duration_s: float = 0.0
    cells: list[Cell] = field(default_factory=list)
    divergences: list[dict] = field(default_factory=list)
    oracle: list[dict] = field(default_factory=list)  # per variant x dtype: cases, statuses, seconds
    not_applicable: list[dict] = field(default_factory=list)  # adapter, variant, dtype, cases
    oracle_errors: list[dict] = field(default_factory=list)  # cases the oracle raised on: skipped


class OracleError(Exception):
    """The oracle raised on a case: a bug in the oracle, not a property of any adapter."""


@functools.lru_cache(maxsize=1)
def _corpus() -> tuple[Case, ...]:
    from cases.corpus import load_corpus

    return tuple(load_corpus())


def default_source(variant: str, dtype: str, examples: int, seed: int) -> list[Case]:
    """Corpus cases of this variant and dtype, then ``examples`` generated ones."""
    from cases.strategies import generate

    corpus = [c for c in _corpus() if c.variant == variant and c.dtype == dtype]
    return corpus + list(generate(variant, dtype, examples, seed))


def run(adapters, variants, dtypes, examples: int, seed: int, source=default_source,
        progress=True) -> RunResult:
    """Run every available adapter in ``adapters`` (instances or names) over the cases.

    ``source(variant, dtype, examples, seed)`` gives the cases; ``progress`` is a stream for one
    line per variant and dtype, True for stderr, or None.
    """
    progress = sys.stderr if progress is True else progress
    instances = [registry.get(a) if isinstance(a, str) else a for a in adapters]
    info, usable = [], []
    for a in instances:
        ok, detail = a.available()
        info.append({"name": a.name, "description": a.description, "control": bool(a.control),
                     "available": bool(ok), ("version" if ok else "reason"): detail})
        if ok:
            usable.append(a)
    result = RunResult(seed, examples, list(variants), list(dtypes), info)
    cells: dict[tuple, Cell] = {}
    not_applicable: Counter = Counter()
    truths: dict[str, object] = {}
    start = time.perf_counter()
    total = len(result.variants) * len(result.dtypes)
    for k, (variant, dtype) in enumerate(((v, d) for v in result.variants for d in result.dtypes), 1):
        stats = {"variant": variant, "dtype": dtype, "cases": 0, "ok": 0, "invalid": 0, "undecided": 0,
                 "seconds": 0.0, "max_prec": 0}
        seen = set()
        for case in source(variant, dtype, examples, seed):
            if case.case_id in seen:
                continue
            seen.add(case.case_id)
            try:
                truth = _truth(case, truths, stats)
            except OracleError as e:
                result.oracle_errors.append({"variant": variant, "dtype": dtype, "case_id": case.case_id,
                                             "error": repr(e.__cause__), "case": case.to_dict()})
                continue
            for a in usable:
                apis = a.apis(case)
                if not apis:
                    not_applicable[(a.name, variant, dtype)] += 1
                for api in apis:
                    cell = cells.setdefault((a.name, api, variant, dtype), Cell(a.name, api, variant, dtype))
                    cv, seconds = _judge(a, api, case, truth, truths)
                    cell.add(cv, seconds)
                    if cv.verdict != "conforms":
                        result.divergences.append(divergence(a.name, api, case, truth, cv))
        result.oracle.append({**stats, "seconds": round(stats["seconds"], 3)})
        if progress is not None:
            print(f"[{k}/{total}] {variant} {dtype}: {stats['cases']} cases, oracle {stats['seconds']:.1f} s, "
                  f"{len(result.divergences)} divergences so far"
                  + (f", {len(result.oracle_errors)} oracle errors" if result.oracle_errors else ""),
                  file=progress, flush=True)
    result.cells = list(cells.values())
    result.not_applicable = [{"adapter": a, "variant": v, "dtype": d, "cases": n}
                             for (a, v, d), n in not_applicable.items()]
    result.duration_s = round(time.perf_counter() - start, 3)
    return result


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


def _judge(adapter, api: str, case: Case, truth, truths: dict) -> tuple[CaseVerdict, float]:
    contract = None
    declared = adapter.contract(case, api) if hasattr(adapter, "contract") else None
    if declared is not None:
        contract = _contract_truth(case, declared, truths)
    t0 = time.perf_counter()
    try:
        output = adapter.evaluate(case, api, grads=True)
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
    return {
        "adapter": adapter, "api": api, "variant": case.variant, "dtype": case.dtype,
        "verdict": cv.verdict, "quantity": w.quantity,
        "index": list(w.index) if w.index is not None else None,
        "ulp": _ulp_json(w.ulp), "allowance": None if w.allowance is None else round(w.allowance, 3),
        "allowance_terms": w.terms,
        "expected": _number(w.expected, case.dtype),
        "got": _number(w.got, w.got_dtype or case.dtype),
        "message": w.message or (truth.reason if truth.status == "invalid" else ""),
        "case_id": case.case_id, "note": case.note, "case": case.to_dict(),
    }
