"""A run split into units: ``xent run --shard K/N``, ``xent run --scheduler ADDRESS``, ``xent merge``.

The unit of a split run is one adapter on one variant (every dtype): ``(adapter, variant)``. What a
unit finds depends only on the run's settings (seed, examples, search, shrink, dtypes) and on the
unit itself, never on which other units run beside it (every cell's search has a seed of its own,
``search.cell_seed``; the shared cases of a variant and dtype are a function of the seed). So the
reports of disjoint units merge (``parallel.merge``) into the report of the whole run, written in
one process, except for the fields that measure wall-clock time or how the run was executed
(`VOLATILE`).

**The shard rule.** The units are listed adapter-major: the adapters in the order of
``--adapters`` (without it: every registered default adapter, ``xent list``, installed or not; an
uninstalled one is reported unavailable), each with the variants in the order of ``--variants``.
Each unit weighs 8 when its adapter compiles every new shape (``slow``: jax, jax-x64, keras-jax,
tensorflow-xla) and 1 otherwise, as ``--jobs`` weighs them. Shard K of N (1-based) gets the units
whose weight midpoint falls in the K-th of N equal parts of the total weight: contiguous runs of
the list, of similar weight, a function of the ``--adapters`` list, the ``--variants`` list and
the code alone (not of what is installed where the shard runs). Every shard of one run must be
given the same ``--adapters``, ``--variants``, ``--dtypes``, ``--examples``, ``--search``,
``--shrink`` and ``--seed``; ``xent merge`` checks. A shard with no unit (N larger than the
units) writes an empty report, which merges like any other.

Each shard writes a normal report folder; its ``run.shard`` says which part it is
(``index``, ``count``, the ``adapters`` list the split was made from, its ``units``).
``xent merge SHARD_DIR... --out DIR`` checks that the shards are one run's (same settings,
environment and code, each K once, none missing, units covering the run exactly once), merges
them and writes report.json, summary.md, index.html and repro/ as the unsharded run would.

**Identity.** The merged report.json equals the unsharded run's (``xent run`` with the same
settings; any ``--jobs``) once `VOLATILE` fields are removed from both (`comparable`):
``run.duration_s``, ``run.finished_utc``, ``run.argv``, ``run.jobs``, ``run.shard``, and the
``seconds`` of every ``oracle`` entry and every cell. summary.md differs only in the duration in
its first paragraph and the seconds column of its oracle table; index.html only in the duration,
finish time, argv and oracle seconds it shows; repro/ holds the same files. The merged ``duration_s`` is the longest shard's,
``finished_utc`` the latest shard's; the environment is shard 1's (shards must agree on Python,
its implementation and the packages; the platform string may differ between CI machines).

**Dask.** ``xent run --scheduler ADDRESS`` splits the units (the shard's, with ``--shard``) into
contiguous chunks, about four per Dask worker thread, runs each chunk on the cluster
(`run_chunk`, through ``distribute.map_tasks``) and merges them. The workers need the project
importable at the same version, and the frameworks of the adapters; the reproducers are written on
the workers (where the frameworks are), the report and the case store (``--db``) here. Such a run
keeps no journal: ``--resume`` starts it over.
"""
from __future__ import annotations

import json
import re
import sys
import threading
import time
from pathlib import Path

SLOW_WEIGHT = 8

#: Fields that measure wall-clock time or how a run was executed, not what it found: removed
#: before comparing reports (`comparable`). ``"oracle[]"`` and ``"cells[]"``: in every entry.
VOLATILE = {"run": ("duration_s", "finished_utc", "argv", "jobs", "shard"),
            "oracle[]": ("seconds",), "cells[]": ("seconds",)}


class ShardError(Exception):
    """Shards that do not make one run (or a folder that is not a shard): one line."""


# -- units and the shard rule ---------------------------------------------------------------------

def weight(adapter) -> int:
    return SLOW_WEIGHT if getattr(adapter, "slow", False) else 1


def plan(adapters: list, variants: list[str]) -> list[tuple[str, str]]:
    """Every unit of a run, adapter-major: ``(adapter name, variant)``."""
    return [(a.name, v) for a in adapters for v in variants]


def split(units: list[tuple[str, str]], weights: dict[str, int], n: int) -> list[list[tuple[str, str]]]:
    """``units`` cut into ``n`` contiguous parts of similar weight (some empty when ``n`` is larger
    than the units): unit i goes to the part holding the midpoint of its weight."""
    total = sum(weights[a] for a, _ in units)
    parts: list[list] = [[] for _ in range(n)]
    before = 0
    for u in units:
        w = weights[u[0]]
        parts[min(n - 1, (2 * before + w) * n // (2 * total))].append(u)
        before += w
    return parts


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` -> (K, N), 1 <= K <= N; ValueError with the reason otherwise."""
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if not m:
        raise ValueError(f"expected K/N (shard K of N, e.g. 2/4), got {text!r}")
    k, n = int(m.group(1)), int(m.group(2))
    if not 1 <= k <= n:
        raise ValueError(f"expected K/N with 1 <= K <= N, got {text!r}")
    return k, n


def shard(adapters: list, variants: list[str], k: int, n: int) -> list[tuple[str, str]]:
    """The units of shard ``k`` of ``n`` (1-based) of a run over ``adapters`` (instances)."""
    return split(plan(adapters, variants), {a.name: weight(a) for a in adapters}, n)[k - 1]


def format_units(units) -> str:
    return ",".join(f"{a}:{v}" for a, v in units)


def parse_units(text: str) -> list[tuple[str, str]]:
    """``"numpy:softmax,naive:softmax"`` -> units (a variant never holds ``:``; an adapter may)."""
    units = []
    for item in (s.strip() for s in text.split(",")):
        a, sep, v = item.rpartition(":")
        if not item or not sep or not a or not v:
            raise ValueError(f"expected ADAPTER:VARIANT, got {item!r}")
        units.append((a, v))
    return units


def shard_info(k: int, n: int, adapters: list[str], units) -> dict:
    return {"index": k, "count": n, "adapters": list(adapters), "units": [list(u) for u in units]}


# -- running units on a Dask cluster ----------------------------------------------------------------

_INSTANCES: dict = {}  # in a worker process: adapters kept across tasks, so each framework loads once
_ONE_AT_A_TIME = threading.Lock()  # a Dask worker with several threads: chunks take turns (see run_chunk)


def _adapter(name: str, isolated: bool, target: str | None = None):
    """The adapter ``name``; a third-party one (``xent run --adapter MODULE:ATTRIBUTE``) is loaded
    from its ``target``, which must import on the worker."""
    import adapters

    key = (name, isolated)
    if key not in _INSTANCES:
        if target is not None and name not in adapters.third_party_targets():
            _INSTANCES[key] = adapters.register(target, isolated=isolated)  # Broken: reported unavailable
        else:
            _INSTANCES[key] = adapters.get(name, isolated=isolated)
    return _INSTANCES[key]


def run_chunk(task: dict) -> dict:
    """A task of a distributed run (on a worker): the report document of ``task["units"]``, each
    divergence with its reproducer's source in ``repro_source``.

    One chunk at a time per process: the adapters' worker connections kept here and hypothesis's
    search are not for concurrent threads, so a Dask worker with several threads runs its chunks in
    turn (start workers with ``--nthreads 1``, one per core, to use them all)."""
    from . import report, runner

    with _ONE_AT_A_TIME:
        targets = task.get("targets", {})
        instances = [_adapter(n, not task["in_process"], targets.get(n)) for n in task["adapters"]]
        result = runner.run(instances, task["variants"], task["dtypes"], task["examples"], task["seed"],
                            progress=None, search=task["search"], shrink=task["shrink"],
                            units={tuple(u) for u in task["units"]})
        doc = report.build(result, [])
        for d, src in zip(doc["divergences"], report.repro_sources(doc, {a.name: a for a in instances})):
            d["repro_source"] = src
    return doc


def run_distributed(instances: list, units, args, argv: list[str], progress=True) -> tuple[dict, dict[str, str]]:
    """``xent run --scheduler``: (the merged report document, its reproducers ``path -> source``)."""
    import adapters
    from cases import Case
    from . import distribute, parallel, report
    from .store import CaseStore

    t0 = time.perf_counter()
    names = [a.name for a in instances]
    units = plan(instances, args.variants) if units is None else list(units)
    workers = distribute.worker_count(args.scheduler)
    chunks = [c for c in split(units, {a.name: weight(a) for a in instances}, max(1, min(len(units), 4 * workers)))
              if c]
    tasks = [{"adapters": [n for n in names if any(u[0] == n for u in c)], "units": [list(u) for u in c],
              "variants": list(args.variants), "dtypes": list(args.dtypes), "examples": args.examples,
              "search": args.search, "shrink": args.shrink, "seed": args.seed, "in_process": bool(args.in_process)}
             for c in chunks]
    third_party = adapters.third_party_targets()
    for t in tasks:
        t["targets"] = {n: third_party[n] for n in t["adapters"] if n in third_party}

    def show(done, total):
        print(f"[scheduler {args.scheduler}] {done}/{total} chunks done", file=sys.stderr, flush=True)

    docs: list = [None] * len(tasks)
    for i, doc in distribute.map_tasks(run_chunk, tasks, scheduler=args.scheduler,
                                       progress=show if progress else None):
        docs[i] = doc
    if not docs:  # no unit at all (an empty shard): the report of nothing
        return _empty(instances, args, argv, t0), {}
    doc = parallel.merge(docs, names, argv)
    sources = [d.pop("repro_source", None) for d in doc["divergences"]]
    repros = {} if args.no_repro else report.place_repros(doc, sources)
    store = CaseStore(args.db)
    for d in doc["divergences"]:
        store.save(Case.from_dict(d["case"]))
        if d.get("shrunk"):
            store.save(Case.from_dict(d["shrunk"]["case"]))
    doc["run"]["duration_s"] = round(time.perf_counter() - t0, 3)
    doc["run"]["finished_utc"] = _now()
    return doc, repros


def _now() -> str:
    import datetime

    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _empty(instances, args, argv, t0) -> dict:
    from . import report, runner

    result = runner.run([], args.variants, args.dtypes, args.examples, args.seed, progress=None,
                        search=args.search, shrink=args.shrink, units=set())
    result.duration_s = round(time.perf_counter() - t0, 3)
    return report.build(result, argv)


# -- merging shard reports --------------------------------------------------------------------------

def comparable(doc: dict) -> dict:
    """A copy of a report without its `VOLATILE` fields: equal for a run and its merged shards."""
    doc = json.loads(json.dumps(doc))
    for k in VOLATILE["run"]:
        doc["run"].pop(k, None)
    for part in ("oracle", "cells"):
        for x in doc.get(part, []):
            for k in VOLATILE[f"{part}[]"]:
                x.pop(k, None)
    return doc


# Settings every shard of one run shares: a difference makes the merged report no run's.
_SAME = [("schema", lambda d: d["schema"]),
         *[(f"run.{k}", lambda d, k=k: d["run"].get(k)) for k in ("seed", "examples", "search", "shrink",
                                                                     "variants", "dtypes")],
         ("shard count (the N of K/N)", lambda d: d["run"]["shard"]["count"]),
         ("--adapters list", lambda d: d["run"]["shard"]["adapters"]),
         *[(f"environment.{k}", lambda d, k=k: d["environment"].get(k)) for k in ("python", "implementation",
                                                                                  "packages")],
         ("budgets (another xent version)", lambda d: d.get("budgets")),
         ("verdicts (another xent version)", lambda d: d.get("verdicts"))]


def _short(v, limit: int = 60) -> str:
    text = json.dumps(v, sort_keys=True)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def load_shard(folder) -> dict:
    """The report of a shard folder; `ShardError` when it is no finished shard's."""
    from . import gate

    folder = Path(folder)
    if not folder.is_dir():
        raise ShardError(f"{folder}: not a folder")
    path = folder / "report.json"
    if not path.is_file():
        raise ShardError(f"{folder}: not a report folder (no report.json)")
    try:
        doc = gate.load_report(path)
    except gate.ReportError as e:
        raise ShardError(str(e)) from None
    try:
        saved = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        saved = None
    if isinstance(saved, dict) and saved.get("finished") is False:
        raise ShardError(f"{folder}: its run did not finish (finish it with xent run --resume {folder})")
    info = doc.get("run", {}).get("shard")
    if not isinstance(info, dict):
        raise ShardError(f"{folder}: not a shard's report (xent run --shard K/N writes one)")
    try:
        ok = (isinstance(info["index"], int) and isinstance(info["count"], int) and 1 <= info["index"] <= info["count"]
              and all(isinstance(a, str) for a in info["adapters"])
              and all(isinstance(u, list) and len(u) == 2 and all(isinstance(x, str) for x in u)
                      for u in info["units"]))
    except (KeyError, TypeError):
        ok = False
    if not ok:
        raise ShardError(f"{folder}: run.shard is not index, count, adapters and units: {_short(info)}")
    return doc


def merge_shards(folders: list, argv: list[str]) -> tuple[dict, dict[str, str]]:
    """(the merged report document, its reproducers ``path -> source``) of the shard folders of one
    run; `ShardError` (one line) when they are not exactly the shards of one run."""
    from . import parallel

    shards = [(Path(f), load_shard(f)) for f in folders]
    (first_dir, first), n = shards[0], shards[0][1]["run"]["shard"]["count"]
    for what, get in _SAME:
        for folder, doc in shards[1:]:
            if get(doc) != get(first):
                raise ShardError(f"shards of different runs: {what} is {_short(get(first))} in {first_dir} but "
                                 f"{_short(get(doc))} in {folder}")
    by_k: dict[int, Path] = {}
    for folder, doc in shards:
        k = doc["run"]["shard"]["index"]
        if k in by_k:
            raise ShardError(f"shard {k}/{n} given twice: {by_k[k]} and {folder}")
        by_k[k] = folder
    missing = [k for k in range(1, n + 1) if k not in by_k]
    if missing:
        raise ShardError(f"missing shard{'s' if len(missing) > 1 else ''} {', '.join(map(str, missing))} of {n} "
                         f"(given: {', '.join(map(str, sorted(by_k))) or 'none'})")
    shards.sort(key=lambda fd: fd[1]["run"]["shard"]["index"])
    order = first["run"]["shard"]["adapters"]
    expected = {(a, v) for a in order for v in first["run"]["variants"]}
    got = [tuple(u) for _, d in shards for u in d["run"]["shard"]["units"]]
    if len(got) != len(set(got)) or set(got) != expected:
        raise ShardError("the shards' units do not cover the run exactly once (shards of different xent "
                         "versions?)")
    _check_parts_agree(shards)
    doc = parallel.merge([d for _, d in shards], order, argv)
    doc["run"].pop("shard", None)
    doc["run"].pop("jobs", None)
    doc["run"]["duration_s"] = max(d["run"]["duration_s"] for _, d in shards)
    finished = [d["run"].get("finished_utc") for _, d in shards if d["run"].get("finished_utc")]
    if finished:
        doc["run"]["finished_utc"] = max(finished)
    return doc, _repros(doc, shards)


def _check_parts_agree(shards) -> None:
    """An adapter, or the shared cases of a variant and dtype, seen by several shards must be the
    same in each (the same version; the same corpus and generator)."""
    adapters: dict[str, tuple] = {}
    shared: dict[tuple, tuple] = {}
    for folder, doc in shards:
        for a in doc["environment"]["adapters"]:
            if a["name"] in adapters and adapters[a["name"]][1] != a:
                raise ShardError(f"adapter {a['name']} differs between shards: {_short(adapters[a['name']][1])} in "
                                 f"{adapters[a['name']][0]}, {_short(a)} in {folder}")
            adapters.setdefault(a["name"], (folder, a))
        for o in doc["oracle"]:
            k = (o["variant"], o["dtype"])
            if k in shared and shared[k][1] != o.get("shared"):
                raise ShardError(f"the shared cases of {k[0]} {k[1]} differ between shards {shared[k][0]} and "
                                 f"{folder} (another corpus or xent version?)")
            shared.setdefault(k, (folder, o.get("shared")))


def _repros(doc: dict, shards) -> dict[str, str]:
    """Each merged divergence's reproducer, read from the shard that wrote it, placed as the
    unsharded run places it (``report.place_repros``)."""
    from . import report
    from .gate import key_of

    where: dict = {}
    for folder, d in shards:
        for div in d["divergences"]:
            where[(key_of(div), div.get("regime"))] = (folder, div.get("repro"))
    sources = []
    for div in doc["divergences"]:
        folder, rel = where[(key_of(div), div.get("regime"))]
        if not rel:
            sources.append(None)
            continue
        path = folder / rel
        if not (isinstance(rel, str) and re.fullmatch(r"repro/[0-9a-zA-Z._-]+\.py", rel) and path.is_file()):
            raise ShardError(f"{folder}: reproducer {rel!r} of a divergence is missing")
        sources.append(path.read_text(encoding="utf-8"))
    return report.place_repros(doc, sources)
