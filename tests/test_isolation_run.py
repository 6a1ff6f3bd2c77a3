"""The isolation controls through a whole run: a worker that segfaults or aborts, one that hangs
and one that exhausts memory each leave a completed report with the verdicts crash and timeout
(naming the signal or the limit), and the run goes on around them."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_crash_hang_and_leak_controls_leave_a_completed_report(tmp_path):
    env = dict(os.environ, XENT_WORKER_TIMEOUT_S="2", XENT_WORKER_MEMORY_GB="1")
    out = tmp_path / "r"
    proc = subprocess.run(
        [sys.executable, "-m", "conformance", "run", "--adapters", "numpy,crashy,hang,leak",
         "--variants", "sigmoid_bce_logits", "--dtypes", "float32", "--examples", "12", "--search", "0",
         "--shrink", "4", "--seed", "0", "--jobs", "1", "--quiet", "--out", str(out), "--db", str(tmp_path / "db")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {p.name for p in out.iterdir()} >= {"report.json", "summary.md", "index.html"}
    doc = json.loads((out / "report.json").read_text())
    cells = {c["adapter"]: c for c in doc["cells"]}
    assert cells["numpy"]["conforming"] == cells["numpy"]["cases"] > 0
    # every control answered every case: the triggering ones as crash/timeout, the rest conform
    for name in ("crashy", "hang", "leak"):
        assert cells[name]["cases"] == cells["numpy"]["cases"]
    assert cells["crashy"]["verdicts"].get("crash", 0) > 0
    assert cells["hang"]["verdicts"].get("timeout", 0) > 0
    assert cells["leak"]["verdicts"].get("crash", 0) > 0
    assert cells["crashy"]["verdicts"]["crash"] + cells["crashy"]["verdicts"].get("conforms", 0) == cells["crashy"]["cases"]
    messages = {(d["adapter"], d["verdict"]): d["message"] for d in doc["divergences"]}
    assert "SIGSEGV" in messages[("crashy", "crash")] or "SIGABRT" in messages[("crashy", "crash")]
    assert "2" in messages[("hang", "timeout")] and "s" in messages[("hang", "timeout")]
    assert "memory limit" in messages[("leak", "crash")]
    summary = (out / "summary.md").read_text()
    assert "### crash" in summary and "### timeout" in summary
