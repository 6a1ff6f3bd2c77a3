"""What evaluating in a worker process costs: in-process against isolated, per call.

For each adapter (default: numpy and torch), the same generated cases (``--cases``, spread over
every variant and dtype) are answered twice in one run, after a warm-up pass of each: by the
adapter in this process (``adapters.get(name)``) and by the same adapter in a worker
(``adapters.get(name, isolated=True)``). Two timings per path:

- ``evaluate``: the ``evaluate`` calls alone (one per case and API);
- ``judge``: what the run does per case: ``apis``, then ``contract`` and ``evaluate`` per API.

The in-process path gets the OpenMP wait policy the workers get (``OMP_WAIT_POLICY=PASSIVE``,
see adapters/_worker.py), so that the comparison measures isolation alone; ``--omp-default``
leaves OpenMP's default (spinning) in this process: on a busy machine in-process PyTorch is then
often slower than in a worker.

Printed, for wall-clock time and for CPU time (this process plus the worker, every thread): the
mean per ``evaluate`` call in ms (the fastest pass), the overhead in ms per call and the ratio, and
whether every answer came back bit for bit the same. CPU time is the steadier of the two on a busy
machine. Run: ``python benchmarks/isolation_overhead.py``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

if "--omp-default" not in sys.argv:  # before any framework starts its OpenMP runtime
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

import adapters  # noqa: E402
from cases import DTYPES, VARIANTS  # noqa: E402
from cases.strategies import generate  # noqa: E402


def cases(n: int, seed: int) -> list:
    pairs = [(v, d) for v in VARIANTS for d in DTYPES]
    per = -(-n // len(pairs))
    out = []
    for v, d in pairs:
        out += generate(v, d, per, seed)
    return out[:n]


def _answer(a, case, api):
    try:
        return a.evaluate(case, api)
    except Exception as e:  # noqa: BLE001 (a raised call is an answer too: in a worker, the same type and message)
        return f"{type(e).__name__}: {e}"


def _worker_cpu(a) -> float:
    """CPU seconds used so far by ``a``'s worker process, all its threads (Linux); 0 in-process."""
    pid = getattr(getattr(a, "worker", None), "pid", None)
    if pid is None:
        return 0.0
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total / 1e9


class _Clock:
    """Wall and CPU time (this process, plus the worker's when isolated) over a block."""

    def __init__(self, a):
        self.a = a

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time() + _worker_cpu(self.a)
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() + _worker_cpu(self.a) - self.cpu


def _evaluate_pass(a, work) -> tuple[_Clock, list]:
    got = []
    with _Clock(a) as clock:
        for case, api in work:
            got.append(_answer(a, case, api))
    return clock, got


def _judge_pass(a, cs) -> _Clock:
    with _Clock(a) as clock:
        for case in cs:
            for api in a.apis(case):
                a.contract(case, api)
                _answer(a, case, api)
    return clock


def _same(x, y) -> bool:
    if isinstance(x, str) or isinstance(y, str):
        return x == y
    b = lambda a: (a.dtype.name, a.shape, np.ascontiguousarray(a).tobytes())  # noqa: E731
    return b(x.value) == b(y.value) and {k: b(v) for k, v in x.grads.items()} == {k: b(v) for k, v in y.grads.items()}


def bench(name: str, cs: list, repeats: int) -> dict:
    local, isolated = adapters.get(name), adapters.get(name, isolated=True)
    for a in (local, isolated):
        ok, detail = a.available()
        if not ok:
            return {"adapter": name, "skipped": detail}
    work = [(c, api) for c in cs for api in local.apis(c)]
    for a in (local, isolated):  # warm-up: imports, first-call caches, the worker's start
        _evaluate_pass(a, work)
    timings = {path: {kind: [] for kind in ("evaluate", "judge")} for path in ("local", "isolated")}
    answers = {}
    for _ in range(repeats):  # interleaved, so drift in the machine's speed hits both alike
        for path, a in (("local", local), ("isolated", isolated)):
            clock, answers[path] = _evaluate_pass(a, work)
            timings[path]["evaluate"].append(clock)
            timings[path]["judge"].append(_judge_pass(a, cs))
    isolated.close()
    same = sum(_same(x, y) for x, y in zip(answers["local"], answers["isolated"]))
    row = {"adapter": name, "cases": len(cs), "calls": len(work), "identical": same}
    for kind in ("evaluate", "judge"):
        t = {}
        for measure in ("wall", "cpu"):
            lo = min(getattr(c, measure) for c in timings["local"][kind]) / len(work) * 1e3
            iso = min(getattr(c, measure) for c in timings["isolated"][kind]) / len(work) * 1e3
            t[measure] = {"local_ms": lo, "isolated_ms": iso, "overhead_ms": iso - lo, "ratio": iso / lo}
        row[kind] = t
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--adapters", default="numpy,torch")
    p.add_argument("--cases", type=int, default=300)
    p.add_argument("--repeats", type=int, default=5, help="timed passes of each path; the fastest counts")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--omp-default", action="store_true",
                   help="leave OMP_WAIT_POLICY unset in this process (the workers still get PASSIVE)")
    args = p.parse_args(argv)
    cs = cases(args.cases, args.seed)
    print(f"{len(cs)} generated cases over {len(VARIANTS)} variants x {len(DTYPES)} dtypes; fastest of "
          f"{args.repeats} passes; ms per evaluate call (cpu: this process plus the worker, all threads)")
    print(f"{'adapter':<8} {'calls':>5} {'timing':<9} {'clock':<5} {'in-process':>10} {'isolated':>9} {'overhead':>9} "
          f"{'ratio':>6}  bit-identical")
    for name in args.adapters.split(","):
        r = bench(name, cs, args.repeats)
        if "skipped" in r:
            print(f"{name:<8} skipped: {r['skipped']}")
            continue
        for kind in ("evaluate", "judge"):
            for measure in ("wall", "cpu"):
                t = r[kind][measure]
                print(f"{name:<8} {r['calls']:>5} {kind:<9} {measure:<5} {t['local_ms']:>10.3f} "
                      f"{t['isolated_ms']:>9.3f} {t['overhead_ms']:>+9.3f} {t['ratio']:>6.2f}  "
                      f"{r['identical']}/{r['calls']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
