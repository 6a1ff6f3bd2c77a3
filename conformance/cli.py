"""The ``xent`` command: ``list``, ``oracle`` (conformance/cli_oracle.py), ``run``, ``merge``, ``replay``,
``baseline``, ``diff`` and ``sweep`` (its options and command in conformance/sweep.py).

Bad arguments (an unknown adapter, variant or dtype, a malformed number or option, a negative
count) print one line on stderr and exit with status 2. ``xent oracle`` on an input outside the
variant's domain is an answer, not an error: it prints the oracle's reason and exits 0. ``xent
run`` exits 1 when the oracle raised on some case (a bug in the oracle; the report lists them).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from cases import DTYPES, FORMATS, VARIANTS
from cases.model import one_line
from . import options as audit_options

_FAST = audit_options.PROFILES[audit_options.DEFAULT_PROFILE]  # the budgets' single definition
DEFAULT_EXAMPLES = _FAST.examples  # shared generated cases per variant and dtype (every adapter answers them)
DEFAULT_SEARCH = _FAST.search  # targeted-search cases per cell (adapter, API, variant, dtype)
DEFAULT_SHRINK = _FAST.shrink  # adapter calls to shrink each distinct divergence
DEFAULT_OUT = "reports/latest"


class UsageError(Exception):
    """A bad command line; main prints it on one line and exits 2."""

    def __init__(self, message):
        super().__init__(one_line(message))  # a value or path holding a newline stays on the one line


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise UsageError(message)


def _csv(kind: str, known) -> callable:
    def parse(text: str) -> list[str]:
        items = [s.strip() for s in text.split(",") if s.strip()]
        unknown = [s for s in items if s not in known]
        if unknown or not items:
            raise argparse.ArgumentTypeError(f"unknown {kind} {', '.join(unknown) or '(empty)'}; "
                                             f"expected some of {', '.join(known)}")
        return items
    return parse


def _one(kind: str, known) -> callable:
    def parse(text: str) -> str:
        if text not in known:
            raise argparse.ArgumentTypeError(f"unknown {kind} {text!r}; expected one of {', '.join(known)}")
        return text
    return parse


def _writable(kind: str) -> callable:
    """An output path (``kind`` "folder" or "file"), refused up front when it, or the nearest folder
    that exists on the way to it, cannot be written: a run should not fail at its end."""
    def parse(text: str) -> str:
        if not text or "\0" in text:
            raise argparse.ArgumentTypeError(f"not a path: {text!r}")
        p = os.path.abspath(text)
        if kind == "folder" and os.path.exists(p) and not os.path.isdir(p):
            raise argparse.ArgumentTypeError(f"{text!r} exists and is not a folder")
        if kind == "file" and os.path.isdir(p):
            raise argparse.ArgumentTypeError(f"{text!r} is a folder, not a file")
        q = p if kind == "folder" else os.path.dirname(p)
        while not os.path.lexists(q):
            q = os.path.dirname(q)
        if not os.path.isdir(q):
            raise argparse.ArgumentTypeError(f"cannot write {text!r}: {q!r} is not a folder")
        if not os.access(q, os.W_OK | os.X_OK):
            raise argparse.ArgumentTypeError(f"cannot write {text!r}: no write permission in {q!r}")
        return text
    return parse


def _shard(text: str) -> str:
    from .shards import parse_shard

    try:
        parse_shard(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text.strip()


def _target(text: str) -> str:
    from adapters.discovery import check_target

    try:
        return check_target(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {n}")
    return n


def build_parser() -> argparse.ArgumentParser:
    import adapters

    p = _Parser(prog="xent", description="Cross-entropy conformance suite and certified oracle.")
    sub = p.add_subparsers(dest="command", metavar="{list,oracle,run,replay,baseline,diff,merge,sweep}")
    sub.add_parser("list", help="adapters, variants and dtypes")

    o = sub.add_parser("oracle", help="the certified value of one case")
    o.add_argument("variant", type=_one("variant", list(VARIANTS)))
    o.add_argument("--dtype", default="float32", choices=DTYPES)
    for name in ("logits", "labels", "probs", "weights", "class-weights", "pos-weight"):
        o.add_argument(f"--{name}", metavar="VALUES",
                       help="comma-separated decimal or hex floats, or JSON nested lists")
    o.add_argument("--input", action="append", default=[], metavar="NAME=VALUES",
                   help="any other input of the variant (e.g. embeddings for sampled_softmax)")
    o.add_argument("--option", action="append", default=[], metavar="K=V", help="an option, e.g. reduction=mean")
    o.add_argument("--shape", metavar="D1,D2,...", help="reshape the logits (or probs) and the inputs that follow them")
    o.add_argument("--json", action="store_true", help="print JSON")

    r = sub.add_parser("run", help="every adapter against the oracle; writes report.json and summary.md")
    r.add_argument("--adapters", type=_csv("adapter", adapters.names(include_opt_in=True)), help="default: every available one")
    r.add_argument("--adapter", action="append", default=[], type=_target, metavar="MODULE:ATTRIBUTE",
                   help="also run this third-party adapter (an Adapter instance or class; repeatable); alone, "
                        "without --adapters, only these run")
    r.add_argument("--variants", type=_csv("variant", list(VARIANTS)),
                   help="default: all (those the --adapter adapters declare, when they are all that run)")
    r.add_argument("--dtypes", type=_csv("dtype", list(DTYPES)),
                   help="default: all (those the --adapter adapters declare, when they are all that run)")
    audit_options.add_arguments(r)  # --profile, --examples, --search, --shrink, --seed: shared with pytest
    r.add_argument("--out", default=DEFAULT_OUT, type=_writable("folder"),
                   help=f"report folder (default {DEFAULT_OUT})")
    r.add_argument("--db", default=".xent", type=_writable("folder"),
                   help="case store for xent replay (default .xent)")
    r.add_argument("--baseline", metavar="FILE",
                   help="CI gate: exit 1 on any divergence not listed in FILE (see xent baseline)")
    r.add_argument("--jobs", type=_count, default=os.cpu_count() or 1,
                   help="processes to split the adapters over (default: the number of CPUs)")
    r.add_argument("--resume", metavar="DIR",
                   help="continue the run that was writing into DIR (killed or interrupted), with its parameters")
    r.add_argument("--restart", action="store_true",
                   help="start over in an --out folder that holds an unfinished run (its answers are discarded)")
    r.add_argument("--in-process", action="store_true",
                   help="evaluate in this process instead of one worker process per adapter (no crash or "
                        "timeout isolation; for debugging)")
    r.add_argument("--quiet", action="store_true", help="no progress display")
    r.add_argument("--plain", action="store_true", help=argparse.SUPPRESS)  # progress as lines even on a tty
    r.add_argument("--no-repro", action="store_true", help=argparse.SUPPRESS)  # a --jobs part: the parent writes them
    r.add_argument("--shard", metavar="K/N", type=_shard,
                   help="run only shard K of N (1-based) of the run's (adapter, variant) units; join the "
                        "shards' reports with xent merge")
    r.add_argument("--scheduler", metavar="ADDRESS",
                   help="distribute the run over the workers of this Dask scheduler (tcp://host:port); "
                        "needs dask[distributed]")
    r.add_argument("--units", help=argparse.SUPPRESS)  # a --jobs part of a shard: ADAPTER:VARIANT,...

    rp = sub.add_parser("replay", help="one case (a case id or a case file) on every adapter, as a table")
    rp.add_argument("case", metavar="CASE_ID|FILE")
    rp.add_argument("--adapters", type=_csv("adapter", adapters.names(include_opt_in=True)), help="default: every available one")
    rp.add_argument("--adapter", action="append", default=[], type=_target, metavar="MODULE:ATTRIBUTE",
                    help="also this third-party adapter (repeatable); alone, without --adapters, only these")
    rp.add_argument("--db", default=".xent", help="case store to look in (default .xent)")
    rp.add_argument("--reports", default="reports", help="folder of reports to look in (default reports)")
    rp.add_argument("--json", action="store_true", help="print JSON")

    b = sub.add_parser("baseline", help="write or refresh a baseline of known divergences from a report")
    b.add_argument("report", nargs="?", default=f"{DEFAULT_OUT}/report.json",
                   help=f"the report.json to take the divergences from (default {DEFAULT_OUT}/report.json)")
    b.add_argument("--out", default="reports/baseline.json", type=_writable("file"),
                   help="the baseline file (default reports/baseline.json); reasons already written in it are kept")

    mg = sub.add_parser("merge", help="join the reports of xent run --shard K/N into the report of the whole run")
    mg.add_argument("shards", nargs="+", metavar="SHARD_DIR", help="the shards' report folders, every K of N once")
    mg.add_argument("--out", default=DEFAULT_OUT, type=_writable("folder"),
                    help=f"report folder of the merged run (default {DEFAULT_OUT})")
    mg.add_argument("--baseline", metavar="FILE",
                    help="CI gate: exit 1 on any divergence not listed in FILE (see xent baseline)")

    d = sub.add_parser("diff", help="what appeared, was fixed, got worse or better between two reports")
    d.add_argument("old", metavar="OLD.json")
    d.add_argument("new", metavar="NEW.json")

    from . import sweep as _sweep  # xent sweep: its options live in conformance/sweep.py
    _sweep.add_parser(sub)
    return p


_WORKER_ENV = {"default_timeout_s": "XENT_WORKER_TIMEOUT_S",
               "default_startup_timeout_s": "XENT_WORKER_STARTUP_TIMEOUT_S",
               "default_memory_limit": "XENT_WORKER_MEMORY_GB"}


def _check_environment() -> None:
    """The environment variables the adapter workers read, checked before any work (one line, exit 2)
    instead of when the first worker starts in the middle of a run."""
    try:
        from adapters import _worker
    except ImportError:
        return
    for fn, var in _WORKER_ENV.items():
        try:
            getattr(_worker, fn, lambda: None)()
        except (ValueError, OverflowError) as e:
            text = str(e)
            raise UsageError(text if var in text else f"{var}={os.environ.get(var)!r}: {text}") from None


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's import chatter; logging only
    try:
        _check_third_party_environment()
        args = build_parser().parse_args(argv)
        if args.command is None:
            raise UsageError("a command is required: list, oracle, run, replay, baseline, diff, merge or sweep (see xent --help)")
        if args.command in ("list", "run", "replay"):  # the commands that may start adapter workers
            _check_environment()
        if args.command == "run":
            audit_options.resolve_namespace(args)  # the profile's budgets, where not given
        return {"list": cmd_list, "oracle": _cmd_oracle, "run": cmd_run, "replay": cmd_replay,
                "baseline": cmd_baseline, "diff": cmd_diff, "merge": cmd_merge, "sweep": _cmd_sweep}[args.command](args, argv)
    except UsageError as e:
        print(f"xent: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `xent list | head`: the reader left; not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _cmd_oracle(args, argv) -> int:
    from . import cli_oracle

    return cli_oracle.cmd_oracle(args, argv)


def _cmd_sweep(args, argv) -> int:
    from . import sweep

    return sweep.cmd_sweep(args, argv)


# -- list ----------------------------------------------------------------------------------------

def cmd_list(args, argv) -> int:
    import adapters

    print("adapters:")
    for name in adapters.names(include_opt_in=True):
        a = adapters.get(name)
        ok, detail = a.available()
        state = f"available {detail}".rstrip() if ok else f"unavailable: {detail}"
        opt_in = " [opt-in: only with --adapters]" if name in adapters.OPT_IN else ""
        opt_in += f" [third-party: {a.target}]" if getattr(a, "target", None) else ""
        print(f"  {name:<16} {'[control] ' if a.control else ''}{state}{opt_in} — {a.description}")
    print("variants:")
    for v in VARIANTS.values():
        print(f"  {v.id:<22} {v.summary}")
    print("dtypes:")
    for f in FORMATS.values():
        print(f"  {f.name:<9} {f.precision}-bit significand, max {f.max_finite!r}, "
              f"min subnormal {f.min_subnormal!r}")  # float64 reprs: 65504.0, not the format's own shortest "65500"
    return 0


# -- third-party adapters --------------------------------------------------------------------------

def _third_party(args) -> list:
    """The broken third-party adapters of a run, as (adapter, named on the command line). Each
    adapter ``--adapter`` names is loaded and registered (so the processes the run starts find it by
    its name) and joins ``--adapters``; alone, without ``--adapters``, only these run. The broken
    entry points are looked for when the default set runs. Unset ``--variants`` and ``--dtypes``
    become what the ``--adapter`` adapters declare when they are all that run, else all."""
    import adapters
    from adapters.discovery import Broken

    requested = [adapters.register(t) for t in (getattr(args, "adapter", None) or [])]
    extra = [a for a in requested if not isinstance(a, Broken)]
    broken = [(a, True) for a in requested if isinstance(a, Broken)]
    alone = args.adapters is None and bool(requested)
    if requested:
        named = [a.name for a in extra]
        args.adapters = [n for n in args.adapters or [] if n not in named] + named
    elif args.adapters is None:
        for name in adapters.third_party_targets():
            a = adapters.get(name)
            if isinstance(a, Broken):
                broken.append((a, False))
    for field, everything in (("variants", list(VARIANTS)), ("dtypes", list(DTYPES))):
        if getattr(args, field) is None:
            declared = [getattr(a, field, ()) for a in extra] if alone and extra else [()]
            union = {x for d in declared for x in d}
            setattr(args, field, [x for x in everything if x in union] if all(declared) else everything)
    return broken


def _check_third_party_environment() -> None:
    """``XENT_ADAPTERS`` (third-party adapters a parent run named), read when the parser lists the
    adapters: a malformed value is one line and exit status 2."""
    from adapters import discovery

    try:
        discovery.remembered()
    except ValueError as e:
        raise UsageError(str(e)) from None


def _report_broken(doc: dict, broken: list) -> list[str]:
    """List the broken third-party adapters in the report as unavailable (with the reason); the
    errors for those the command line named (a broken entry point is a warning, like a framework
    that is not installed)."""
    listed = {a["name"] for a in doc["environment"]["adapters"]}
    errors = []
    for a, requested in broken:
        reason = a.available()[1]
        if a.name not in listed:
            doc["environment"]["adapters"].append({"name": a.name, "description": a.description, "control": False,
                                                   "available": False, "reason": reason})
        if requested:
            errors.append(f"adapter {a.name} could not be loaded: {reason}")
        elif a.name not in listed:
            print(f"xent: warning: adapter {a.name} unavailable: {reason}", file=sys.stderr)
    return errors


# -- run -----------------------------------------------------------------------------------------

def _load_report(path: str) -> dict:
    from . import gate

    try:
        return gate.load_report(path)
    except gate.ReportError as e:
        raise UsageError(str(e)) from None


_RUN_PARAMS = ("adapters", "variants", "dtypes", "examples", "search", "shrink", "seed", "db", "jobs", "in_process")
_RUN_PARAMS_OPTIONAL = ("shard", "units", "scheduler", "adapter")  # absent from the run.json of older runs


def cmd_run(args, argv) -> int:
    """``xent run``: the folder is locked, the parameters saved, every answer journaled."""
    from .files import write_atomic
    from .journal import FolderLock, InUse, JOURNAL, PARAMS

    out = Path(args.resume or args.out)
    try:
        lock = FolderLock(out).acquire()
    except InUse as e:
        raise UsageError(str(e)) from None
    except OSError as e:  # cannot create or lock the folder: a bad --out
        raise UsageError(f"cannot write the report folder {out}: {e.strerror or e}") from None
    try:
        params_path = out / PARAMS
        if args.resume:
            try:
                saved = json.loads(params_path.read_text(encoding="utf-8"))
            except (OSError, ValueError, RecursionError):
                raise UsageError(f"--resume {out}: no resumable run there ({PARAMS} missing or unreadable)") from None
            if not (isinstance(saved, dict) and isinstance(saved.get("params"), dict)
                    and isinstance(saved.get("argv"), list) and all(k in saved["params"] for k in _RUN_PARAMS)):
                raise UsageError(f"--resume {out}: {PARAMS} is not the parameters of a run")
            if saved.get("finished"):
                raise UsageError(f"--resume {out}: that run finished; its report is {out / 'report.json'}")
            for k in _RUN_PARAMS:
                setattr(args, k, saved["params"][k])
            for k in _RUN_PARAMS_OPTIONAL:
                setattr(args, k, saved["params"].get(k))
            argv = saved["argv"]
        else:
            if (out / JOURNAL).exists() and not args.restart:
                raise UsageError(f"{out} holds an unfinished run ({JOURNAL}); continue it with --resume {out}, "
                                 f"or start over with --restart")
            params_path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(params_path, json.dumps(
                {"params": {k: getattr(args, k) for k in _RUN_PARAMS + _RUN_PARAMS_OPTIONAL}, "argv": argv,
                 "finished": False}, indent=1))
        args.out = str(out)
        code = _run(args, argv)
        saved = json.loads(params_path.read_text(encoding="utf-8"))
        saved["finished"] = True
        write_atomic(params_path, json.dumps(saved, indent=1))
        return code
    finally:
        lock.release()


def _run(args, argv) -> int:
    import adapters
    from . import gate, report, runner
    from .journal import Journal
    from .store import CaseStore

    baseline = None
    if args.baseline is not None:  # read it first: a bad baseline should not cost a whole run
        try:
            baseline = gate.load_baseline(args.baseline)
        except gate.BaselineError as e:
            raise UsageError(str(e)) from None
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so --jobs children are stopped too
    from . import shards

    broken = _third_party(args)  # --adapter MODULE:ATTRIBUTE joins --adapters; broken ones; --variants/--dtypes
    names = args.adapters
    try:
        units = None if args.units is None else shards.parse_units(args.units)  # a --jobs part of a shard
    except ValueError as e:
        raise UsageError(f"--units: {e}") from None
    parallel_run = args.jobs > 1 and (names is None or len(names) > 1) and not args.scheduler
    def get(name):  # every adapter evaluates in a worker process of its own (crash, hang, memory)
        return adapters.get(name, isolated=not args.in_process)

    if names is None and not parallel_run and not (args.shard or args.scheduler):
        # every installed adapter; instances are passed on, so workers start once
        names = [a for a in map(get, adapters.names()) if a.available()[0]]
    elif names is None:
        # each job asks its own adapters whether they are available (asking here would start
        # the worker processes twice); the report lists the unavailable ones
        names = [a for a in map(get, adapters.names()) if not isinstance(a, adapters.Unavailable)]
    instances = [get(a) if isinstance(a, str) else a for a in names]
    planned = [a.name for a in instances]
    if args.shard:  # the shard's units, from the adapter list alone (shards.py: the shard rule)
        units = shards.shard(instances, args.variants, *shards.parse_shard(args.shard))
    if units is not None:
        instances = [a for a in instances if any(u[0] == a.name for u in units)]
        parallel_run = parallel_run and len(instances) > 1
    errors: list[str] = []
    journal, repros = None, None
    if args.scheduler:
        from .distribute import DistributeError, TaskError

        try:
            doc, repros = shards.run_distributed(instances, units, args, argv, progress=not args.quiet)
        except TaskError as e:
            print(f"xent: error: {e}", file=sys.stderr)
            return 1
        except DistributeError as e:
            raise UsageError(str(e)) from None
    elif parallel_run:
        from . import parallel

        try:
            doc, errors = parallel.run(instances, args, argv, progress=not args.quiet, units=units)
        except RuntimeError as e:
            print(f"xent: error: {e}", file=sys.stderr)
            return 1
    else:
        stream = None if args.quiet else (_Lines(sys.stderr) if args.plain else True)
        journal = Journal(args.out, resume=bool(args.resume))
        result = runner.run(instances, args.variants, args.dtypes, args.examples, args.seed,
                            progress=stream, search=args.search, shrink=args.shrink, store=CaseStore(args.db),
                            journal=journal, units=None if units is None else set(units))
        if journal.replayed:
            print(f"resumed: {journal.replayed} answers read back from the journal", file=sys.stderr)
        doc = report.build(result, argv)
    for a in doc["environment"]["adapters"]:
        if not a["available"]:
            print(f"xent: warning: adapter {a['name']} unavailable: {a['reason']}", file=sys.stderr)
    errors = errors + _report_broken(doc, broken)
    if args.shard:
        doc["run"]["shard"] = shards.shard_info(*shards.parse_shard(args.shard), planned, units)
    if repros is None:
        repros = {} if args.no_repro else report.attach_repros(doc, {a.name: a for a in instances})
    json_path, md_path = report.write(doc, args.out, repros)
    if journal is not None:
        journal.close(remove=True)  # the report holds it all now
    run = doc["run"]
    print(f"{run['answers']} answers from {len(run['adapters'])} adapter(s) in {run['duration_s']:.1f} s"
          f"{' with ' + str(run['jobs']) + ' jobs' if run.get('jobs') else ''}; "
          f"{run['divergent_answers']} divergent, in {len(doc['divergences'])} distinct divergences "
          f"(cell x verdict x input regime)")
    for name in run["adapters"]:
        cells = [c for c in doc["cells"] if c["adapter"] == name]
        cases = sum(c["cases"] for c in cells)
        conforming = sum(c["conforming"] for c in cells)
        counts: dict[str, int] = {}
        for c in cells:
            for v, n in c["verdicts"].items():
                if v != "conforms":
                    counts[v] = counts.get(v, 0) + n
        detail = ", ".join(f"{v} {n}" for v, n in sorted(counts.items())) or "no divergences"
        print(f"  {name:<16} {conforming}/{cases} conform; {detail}")
    print(f"report: {json_path}\nsummary: {md_path}\npage: {json_path.parent / 'index.html'}\n"
          f"reproducers: {len(repros)} in {json_path.parent / 'repro'}")
    for e in errors:
        print(f"xent: error: {e}; the report holds the other adapters", file=sys.stderr)
    return _report_status(doc, baseline, 1 if errors else 0)


def _report_status(doc: dict, baseline, status: int) -> int:
    """The exit status of a written report: 1 when the oracle raised on a case or, with a baseline,
    when the gate fails (its verdict printed either way); else ``status``."""
    from . import gate

    if doc["oracle_errors"]:
        print(f"xent: error: the oracle raised on {len(doc['oracle_errors'])} case(s); they are listed in "
              f"the report", file=sys.stderr)
        status = 1
    if baseline is not None:
        g = gate.check(doc, baseline)
        print(gate.format_gate(g), file=sys.stdout if g.ok else sys.stderr)
        if not g.ok:
            status = 1
    return status


class _Lines:
    """A stream that is never a terminal: progress as one line per variant and dtype."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text):
        return self.stream.write(text)

    def flush(self):
        self.stream.flush()

    def isatty(self):
        return False


# -- merge -----------------------------------------------------------------------------------------

def cmd_merge(args, argv) -> int:
    """``xent merge``: the reports of ``xent run --shard K/N`` joined into the whole run's report."""
    from . import gate, report
    from .journal import FolderLock, InUse
    from .shards import ShardError, merge_shards

    baseline = None
    if args.baseline is not None:
        try:
            baseline = gate.load_baseline(args.baseline)
        except gate.BaselineError as e:
            raise UsageError(str(e)) from None
    out = Path(args.out)
    if any(Path(f).resolve() == out.resolve() for f in args.shards):
        raise UsageError(f"--out {args.out} is one of the shard folders; merge into another folder")
    try:
        doc, repros = merge_shards(args.shards, argv)
    except ShardError as e:
        raise UsageError(str(e)) from None
    try:
        lock = FolderLock(out).acquire()
    except InUse as e:
        raise UsageError(str(e)) from None
    except OSError as e:
        raise UsageError(f"cannot write the report folder {out}: {e.strerror or e}") from None
    try:
        json_path, md_path = report.write(doc, out, repros)
    finally:
        lock.release()
    run = doc["run"]
    print(f"{len(args.shards)} shards merged: {run['answers']} answers from {len(run['adapters'])} adapter(s); "
          f"{run['divergent_answers']} divergent, in {len(doc['divergences'])} distinct divergences\n"
          f"report: {json_path}\nsummary: {md_path}\npage: {json_path.parent / 'index.html'}\n"
          f"reproducers: {len(repros)} in {json_path.parent / 'repro'}")
    return _report_status(doc, baseline, 0)


# -- replay ----------------------------------------------------------------------------------------

def cmd_replay(args, argv) -> int:
    import adapters
    from cases import CaseError
    from . import runner
    from .numbers import shortest as _short
    from .store import CaseStore, NotFound, find

    try:
        case = find(args.case, CaseStore(args.db), args.reports)
    except (NotFound, CaseError) as e:
        raise UsageError(str(e)) from None
    extra = [adapters.register(t, isolated=True) for t in args.adapter]
    names = args.adapters or ([] if extra else adapters.names())
    truths: dict = {}
    try:
        truth = runner._truth(case, truths)
    except runner.OracleError as e:
        print(f"xent: error: the oracle raised {e.__cause__!r} on case {case.case_id}", file=sys.stderr)
        return 1
    rows = []
    for a in [*(adapters.get(n, isolated=True) for n in names), *extra]:
        name = a.name
        ok, detail = a.available()
        if not ok:
            rows.append({"adapter": name, "api": "-", "verdict": "unavailable", "detail": detail})
            continue
        apis = a.apis(case)
        if not apis:
            rows.append({"adapter": name, "api": "-", "verdict": "not-applicable", "detail": ""})
        for api in apis:
            cv, seconds = runner._judge(a, api, case, truth, truths)
            w = cv.worst
            f = FORMATS[case.dtype]
            detail = w.message
            if w.got is not None and cv.verdict != "conforms":
                detail = (f"{w.quantity}{list(w.index) if w.index else ''}: got {_short(w.got, f)}, "
                          f"truth {_short(w.expected, f) if w.expected is not None else '-'}"
                          + (f"; {w.message}" if w.message else ""))
            rows.append({"adapter": name, "api": api, "verdict": cv.verdict,
                         "max_ulp": runner._ulp_json(cv.max_ulp), "detail": detail})
    if args.json:
        print(json.dumps({"case_id": case.case_id, "case": case.to_dict(), "oracle": truth.status,
                          "reason": truth.reason, "rows": rows}, indent=1))
        return 0
    print(f"case {case.case_id}: {case.variant} {case.dtype} ({case.note or 'no note'})")
    if truth.status == "invalid":
        print(f"oracle: invalid input: {truth.reason}")
    w1 = max(len(r["adapter"]) for r in rows) if rows else 8
    w2 = max(len(r["api"]) for r in rows) if rows else 8
    print(f"{'adapter':<{w1}}  {'api':<{w2}}  {'verdict':<16} {'max ulp':>10}  detail")
    for r in rows:
        u = r.get("max_ulp")
        print(f"{r['adapter']:<{w1}}  {r['api']:<{w2}}  {r['verdict']:<16} {'-' if u is None else u:>10}  "
              f"{r['detail'][:160]}")
    return 0


# -- baseline and diff -----------------------------------------------------------------------------

def cmd_baseline(args, argv) -> int:
    from . import gate

    doc = _load_report(args.report)
    entries = []
    if os.path.exists(args.out):
        try:
            entries = gate.load_baseline(args.out)
        except gate.BaselineError as e:
            raise UsageError(str(e)) from None
    try:
        fresh = gate.refresh(doc, entries, what=args.report)
        gate.write_baseline(args.out, fresh)
    except (gate.ReportError, gate.BaselineError) as e:
        raise UsageError(str(e)) from None
    unreviewed = sum(1 for e in fresh if e["reason"].startswith("UNREVIEWED"))
    print(f"{args.out}: {len(fresh)} entries ({unreviewed} unreviewed: give each a reason)")
    return 0


def cmd_diff(args, argv) -> int:
    from . import gate

    old, new = _load_report(args.old), _load_report(args.new)
    try:
        result = gate.diff(old, new)
    except gate.ReportError as e:
        raise UsageError(str(e)) from None
    print(gate.format_diff(result))
    return 0
