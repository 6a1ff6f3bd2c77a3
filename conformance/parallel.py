"""``xent run --jobs N``: the adapters split over N processes, their reports merged into one.

Every cell's cases depend only on the seed, its variant and dtype (the shared cases) and the cell
itself (its search seed), never on which other adapters run beside it; so a run split by adapter
gives the same cells, verdicts and divergences as the run in one process, only sooner. Adapters
are dealt to processes by weight (a ``slow`` adapter, which compiles every new shape, weighs 8,
others 1), heaviest first. Each process is ``xent run`` on its share, writing a report into a
folder ``OUT/jobs/job-K`` (journaled like any run, so ``--resume OUT`` resumes each job where
it stopped; removed once merged); its progress lines are passed on, prefixed. A process that fails does not lose
the others' work: the merged report says which adapters are missing and why.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import shutil
import threading
import time
from pathlib import Path


def partition(adapters: list, jobs: int) -> list[list]:
    """Adapter instances dealt into at most ``jobs`` groups of similar weight (deterministic)."""
    weight = {a.name: 8 if getattr(a, "slow", False) else 1 for a in adapters}
    groups: list[list] = [[] for _ in range(max(1, min(jobs, len(adapters))))]
    load = [0] * len(groups)
    for a in sorted(adapters, key=lambda a: -weight[a.name]):  # stable: ties keep the given order
        k = load.index(min(load))
        groups[k].append(a)
        load[k] += weight[a.name]
    order = {a.name: i for i, a in enumerate(adapters)}
    return [sorted(g, key=lambda a: order[a.name]) for g in groups if g]


def _die_with_parent() -> None:
    """In the child: the kernel sends SIGKILL when the parent dies (Linux), so a killed run leaves
    no job running on, holding its folder's lock."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
    except (OSError, AttributeError):
        pass


def _pump(stream, prefix: str, sink) -> None:
    for line in iter(stream.readline, ""):
        print(f"{prefix} {line.rstrip()}", file=sink, flush=True)


def _state(folder: Path) -> str:
    try:
        saved = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return "none"
    if not isinstance(saved, dict):
        return "none"
    return "finished" if saved.get("finished") is True else "unfinished"


def run(adapters: list, args, argv: list[str], progress=True, units=None) -> tuple[dict, list[str]]:
    """(the merged report document, errors): ``args`` is the parsed ``xent run`` namespace;
    ``units``: None, or the (adapter, variant) pairs to run (a shard): each job gets its adapters'."""
    from .shards import format_units

    groups = partition(adapters, args.jobs)
    sink = sys.stderr if progress else None
    t0 = time.perf_counter()
    jobs_dir = Path(args.out) / "jobs"  # inside the run's folder: a killed run resumes its jobs too
    procs, docs, errors = [], [], []
    for k, group in enumerate(groups, 1):
        out = jobs_dir / f"job-{k}"
        names = ",".join(a.name for a in group)
        state = _state(out)
        if args.resume and state == "finished":
            procs.append((k, group, out, None, None))
            continue
        where = ["--resume", str(out)] if args.resume and state == "unfinished" else ["--out", str(out), "--restart"]
        cmd = [sys.executable, "-m", "conformance", "run", "--jobs", "1", "--quiet" if sink is None else "--plain",
               "--adapters", names, "--variants", ",".join(args.variants),
               "--dtypes", ",".join(args.dtypes), "--examples", str(args.examples), "--search", str(args.search),
               "--shrink", str(args.shrink), "--seed", str(args.seed), *where, "--db", args.db, "--no-repro",
               *(["--units", format_units([u for u in units if u[0] in {a.name for a in group}])]
                 if units is not None else []),
               *(["--in-process"] if args.in_process else [])]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env,
                             preexec_fn=_die_with_parent)
        t = threading.Thread(target=_pump, args=(p.stderr, f"[job {k}: {names}]", sink or open(os.devnull, "w")),
                             daemon=True)
        t.start()
        procs.append((k, group, out, p, t))
    try:
        codes = [p.wait() if p is not None else 0 for _, _, _, p, _ in procs]
    except BaseException:  # interrupted: leave no orphan process behind
        for _, _, _, p, _ in procs:
            if p is not None:
                p.terminate()
        for _, _, _, p, _ in procs:
            if p is not None:
                p.wait()
        raise
    for (k, group, out, p, t), code in zip(procs, codes):
        if t is not None:
            t.join()
        report = out / "report.json"
        if report.is_file() and _state(out) == "finished":
            docs.append(json.loads(report.read_text(encoding="utf-8")))
        if code not in (0, 1) or not report.is_file():
            errors.append(f"job {k} ({', '.join(a.name for a in group)}) exited with status {code}"
                          + ("" if report.is_file() else " and wrote no report"))
    if not docs:
        raise RuntimeError("; ".join(errors) or "no job wrote a report")
    doc = merge(docs, [a.name for a in adapters], argv)
    if not errors:
        shutil.rmtree(jobs_dir, ignore_errors=True)  # merged: the parts are in the report
    doc["run"]["duration_s"] = round(time.perf_counter() - t0, 3)
    doc["run"]["jobs"] = len(groups)
    return doc, errors


def merge(docs: list[dict], order: list[str], argv: list[str]) -> dict:
    """One report from the reports of disjoint units (adapters, or (adapter, variant) pairs: jobs,
    shards, chunks of a distributed run) of one run: the report that run would have written in
    one process, wall-clock fields aside (``conformance.shards.VOLATILE``). An adapter several
    parts ran is listed once; each oracle entry counts its variant and dtype's shared cases once
    (every part over that variant and dtype judged the same ones: its ``shared`` counters)."""
    rank = {name: i for i, name in enumerate(order)}
    first = docs[0]
    merged = json.loads(json.dumps(first))
    merged["run"]["argv"] = list(argv)
    infos = {}
    for d in docs:
        for a in d["environment"]["adapters"]:
            infos.setdefault(a["name"], a)
    merged["environment"]["adapters"] = sorted(infos.values(), key=lambda a: rank.get(a["name"], len(rank)))
    merged["run"]["adapters"] = sorted({n for d in docs for n in d["run"]["adapters"]},
                                       key=lambda n: rank.get(n, len(rank)))
    for key in ("answers", "divergent_answers"):
        merged["run"][key] = sum(d["run"].get(key, 0) for d in docs)
    by_pair: dict[tuple, dict] = {}
    for d in docs:
        for o in d["oracle"]:
            k = (o["variant"], o["dtype"])
            if k not in by_pair:
                by_pair[k] = json.loads(json.dumps(o))
                continue
            m = by_pair[k]
            shared = o.get("shared") if "shared" in m else None  # reports before it: summed
            for f in ("cases", "ok", "invalid", "undecided"):
                m[f] += o[f] - (shared[f] if shared else 0)
            if shared is None:
                m.pop("shared", None)
            m["seconds"] = round(m["seconds"] + o["seconds"], 3)
            m["max_prec"] = max(m["max_prec"], o["max_prec"])
    vi = {v: i for i, v in enumerate(merged["run"]["variants"])}
    di = {t: i for i, t in enumerate(merged["run"]["dtypes"])}
    merged["oracle"] = [by_pair[k] for k in sorted(by_pair, key=lambda k: (vi.get(k[0], len(vi)), di.get(k[1], len(di))))]
    for key in ("cells", "not_applicable", "divergences"):
        merged[key] = [x for d in docs for x in d[key]]
    seen, errors = set(), []
    for d in docs:
        for e in d["oracle_errors"]:
            if e["case_id"] not in seen:
                seen.add(e["case_id"])
                errors.append(e)
    merged["oracle_errors"] = errors
    from .report import canonical_order

    return canonical_order(merged)
