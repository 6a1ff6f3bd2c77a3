"""Nothing lost: a run killed at any moment (SIGKILL) and resumed writes the report of an
uninterrupted run; a folder in use is refused; an unfinished folder is not silently overwritten."""
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conformance.cli import main
from conformance.journal import FolderLock

ROOT = Path(__file__).resolve().parents[1]
PARAMS = ["--adapters", "numpy,naive", "--variants", "sigmoid_bce_logits,softmax_ce_dense", "--dtypes", "float32",
          "--examples", "4", "--search", "8", "--shrink", "8", "--seed", "9", "--quiet"]


def _xent(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "conformance", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kw)


def _comparable(path: Path) -> dict:
    """The report minus what measures wall-clock time."""
    doc = json.loads((path / "report.json").read_text())
    for k in ("duration_s", "finished_utc", "argv"):
        doc["run"].pop(k, None)
    for o in doc["oracle"]:
        o.pop("seconds")
    for c in doc["cells"]:
        c.pop("seconds")
    return doc


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("whole")
    p = _xent("run", *PARAMS, "--jobs", "1", "--out", str(out / "r"), "--db", str(out / "db"))
    assert p.wait(timeout=300) == 0, p.stderr.read()
    return _comparable(out / "r")


def _kill_after(p, journal: Path, lines: int, timeout=120) -> bool:
    """SIGKILL ``p`` once the journal holds ``lines`` answers; False if it finished first."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        if p.poll() is not None:
            return False
        try:
            n = journal.read_bytes().count(b"\n")
        except OSError:
            n = 0
        if n >= lines:
            p.send_signal(signal.SIGKILL)
            p.wait()
            return True
        time.sleep(0.01)
    raise AssertionError("the run neither finished nor reached the kill point")


@pytest.mark.parametrize("trial", range(3))
def test_killed_and_resumed_runs_write_the_uninterrupted_report(tmp_path, uninterrupted, trial):
    rng = random.Random(trial)
    out = tmp_path / "r"
    p = _xent("run", *PARAMS, "--jobs", "1", "--out", str(out), "--db", str(tmp_path / "db"))
    killed = _kill_after(p, out / "journal.jsonl", rng.randint(5, 150))
    assert killed, "the run finished before the kill point"
    assert not (out / "report.json").exists()
    # a plain rerun into the folder is refused (it would discard the killed run's answers)
    again = _xent("run", *PARAMS, "--jobs", "1", "--out", str(out), "--db", str(tmp_path / "db"))
    assert again.wait(timeout=60) == 2 and "--resume" in again.stderr.read()
    # resume, killed once more at a later point, then resumed to the end
    p = _xent("run", "--resume", str(out))
    _kill_after(p, out / "journal.jsonl", rng.randint(160, 260))
    p = _xent("run", "--resume", str(out))
    assert p.wait(timeout=300) == 0, p.stderr.read()
    assert _comparable(out) == uninterrupted
    assert not (out / "journal.jsonl").exists()  # folded into the report
    p = _xent("run", "--resume", str(out))
    assert p.wait(timeout=60) == 2 and "finished" in p.stderr.read()


def test_killed_parallel_run_resumes_its_jobs(tmp_path, uninterrupted):
    out = tmp_path / "r"
    p = _xent("run", *PARAMS, "--jobs", "2", "--out", str(out), "--db", str(tmp_path / "db"))
    journals = sorted((out / "jobs").glob("job-*/journal.jsonl")) if (out / "jobs").exists() else []
    t0 = time.time()
    while len(journals) < 2 and time.time() - t0 < 60:
        time.sleep(0.05)
        journals = sorted((out / "jobs").glob("job-*/journal.jsonl")) if (out / "jobs").exists() else []
    assert _kill_after(p, journals[0], 40)
    time.sleep(0.5)  # the jobs die with their parent (PR_SET_PDEATHSIG)
    p = _xent("run", "--resume", str(out))
    assert p.wait(timeout=300) == 0, p.stderr.read()
    doc = _comparable(out)
    doc["run"].pop("jobs")
    # the oracle's counters too: each job counts its variant and dtype's shared cases apart
    assert doc == uninterrupted
    assert not (out / "jobs").exists()


def test_a_folder_in_use_is_refused(tmp_path, capsys):
    lock = FolderLock(tmp_path / "busy").acquire()
    try:
        code = main(["run", "--adapters", "numpy", "--variants", "softmax", "--dtypes", "float32", "--examples", "1",
                     "--out", str(tmp_path / "busy"), "--quiet"])
    finally:
        lock.release()
    err = capsys.readouterr().err
    assert code == 2 and "in use by another xent run" in err and f"pid {os.getpid()}" in err
    assert err.count("\n") == 1


def test_resume_of_a_folder_without_a_run_is_a_usage_error(tmp_path, capsys):
    assert main(["run", "--resume", str(tmp_path)]) == 2
    assert "no resumable run" in capsys.readouterr().err


def test_a_torn_journal_line_is_dropped(tmp_path):
    from conformance.journal import Journal
    from conformance.verdict import CaseVerdict

    j = Journal(tmp_path)
    j.record(("numpy", "numpy", "0" * 16), CaseVerdict.single("conforms"), 0.25)
    j.close()
    with open(tmp_path / "journal.jsonl", "a") as fh:
        fh.write('{"k": ["numpy", "numpy", "1111')  # killed mid-write
    j = Journal(tmp_path, resume=True)
    assert j.get(("numpy", "numpy", "0" * 16))[1] == 0.25 and j.get(("numpy", "numpy", "1" * 16)) is None
    j.close()
    assert (tmp_path / "journal.jsonl").read_text().count("\n") == 1
