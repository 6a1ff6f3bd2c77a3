"""The run's journal: every answer, appended as it is judged, so a killed run loses nothing.

``DIR/journal.jsonl`` holds one JSON line per judged answer: the key (adapter, api, case_id) and
the verdict with its seconds. A line is written with one ``write`` and flushed at once, so a run
killed at any moment (SIGKILL included) leaves every answer before the kill on disk, and at
worst a torn last line, which resuming drops.

``xent run --resume DIR`` re-runs the same parameters (``DIR/run.json``). The run is a
deterministic function of its seed and of the answers it got: the shared cases and each cell's
search (hypothesis climbs on the recorded scores), the grouping and the shrinking all replay the
same way when every answer already journaled is read back instead of asked again. So the resumed
run reaches the point of the kill without calling an adapter, goes on from there, and writes the
report an uninterrupted run would have written (only wall-clock fields differ).

``DIR/.lock`` is held (``flock``) for the whole run: a second run pointed at the same folder is
refused instead of interleaving; the kernel releases the lock when the holder dies.
"""
from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from .verdict import CaseVerdict, Finding

JOURNAL = "journal.jsonl"
PARAMS = "run.json"
LOCK = ".lock"


class InUse(Exception):
    """The output folder is in use by another run."""


class FolderLock:
    def __init__(self, folder):
        self.path = Path(folder) / LOCK
        self.fd = None

    def acquire(self) -> "FolderLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            raise InUse(f"{self.path.parent} is in use by another xent run ({holder}); wait for it to "
                        f"finish or choose another --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()}".encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


def _finding_to(f: Finding) -> dict:
    return {"verdict": f.verdict, "quantity": f.quantity, "index": None if f.index is None else list(f.index),
            "ulp": f.ulp, "allowance": f.allowance, "terms": f.terms, "expected": f.expected, "got": f.got,
            "got_dtype": f.got_dtype, "message": f.message, "condition": f.condition}


def _finding_from(d: dict) -> Finding:
    d = dict(d)
    d["index"] = None if d["index"] is None else tuple(d["index"])
    return Finding(**d)


def encode_verdict(cv: CaseVerdict) -> dict:
    worst = cv.findings.index(cv.worst) if cv.worst in cv.findings else -1
    return {"verdict": cv.verdict, "findings": [_finding_to(f) for f in cv.findings], "worst": worst,
            "worst_finding": _finding_to(cv.worst) if worst < 0 else None,
            "max_ulp": cv.max_ulp, "undecided": cv.undecided}


def decode_verdict(d: dict) -> CaseVerdict:
    findings = [_finding_from(f) for f in d["findings"]]
    worst = findings[d["worst"]] if d["worst"] >= 0 else _finding_from(d["worst_finding"])
    return CaseVerdict(d["verdict"], worst, findings, d["max_ulp"], d["undecided"])


class Journal:
    """Append-only record of answers; ``get`` reads back what an earlier (killed) run recorded."""

    def __init__(self, folder, resume: bool = False):
        self.path = Path(folder) / JOURNAL
        self.known: dict[tuple, tuple[CaseVerdict, float]] = {}
        self.replayed = 0
        if resume and self.path.exists():
            self._load()
        elif self.path.exists():
            self.path.unlink()
        self.fh = open(self.path, "a", encoding="utf-8")

    def _load(self) -> None:
        raw = self.path.read_bytes()
        good = raw.rfind(b"\n") + 1  # a torn last line (killed mid-write) is dropped
        for line in raw[:good].splitlines():
            try:
                rec = json.loads(line)
                key, seconds = tuple(rec["k"]), rec["s"]
                if len(key) != 3 or not all(isinstance(k, str) for k in key) or not isinstance(seconds, float | int):
                    continue
                cv = decode_verdict(rec["v"])
                if not isinstance(cv.verdict, str) or not isinstance(cv.findings, list):
                    continue
                self.known[key] = (cv, float(seconds))
            except (ValueError, KeyError, TypeError, IndexError, AttributeError, RecursionError):
                continue  # a damaged line: that answer is simply asked again
        with open(self.path, "r+b") as fh:
            fh.truncate(good)

    def get(self, key: tuple):
        hit = self.known.get(key)
        if hit is not None:
            self.replayed += 1
        return hit

    def record(self, key: tuple, cv: CaseVerdict, seconds: float) -> None:
        # not kept in memory: a long run's journal is read back only when resuming
        self.fh.write(json.dumps({"k": list(key), "v": encode_verdict(cv), "s": seconds}) + "\n")
        self.fh.flush()

    def close(self, remove: bool = False) -> None:
        self.fh.close()
        if remove:
            self.path.unlink(missing_ok=True)
