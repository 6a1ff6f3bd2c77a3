"""The audit engine: targeted search, grouping, shrinking, condition numbers, the case store,
reproducers, replay, and the CI gate with a control adapter."""
import io
import json
import math
import subprocess
import sys
from pathlib import Path

import mpmath
import numpy as np
import pytest

from adapters.naive import NaiveAdapter
from adapters.numpy_ref import NumpyAdapter
from cases import Case
from conformance import gate, report, runner
from conformance import search as searching
from conformance.cli import main
from conformance.progress import Progress
from conformance.shrink import shrink
from conformance.store import CaseStore, find

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def control_run():
    return runner.run([NumpyAdapter(), NaiveAdapter()], ["sigmoid_bce_logits", "softmax_ce_dense"], ["float32"],
                      4, 3, progress=None, search=12, shrink=20)


def _keys(result):
    return [(d["adapter"], d["api"], d["variant"], d["dtype"], d["verdict"], d["regime"], d["count"], d["case_id"],
             (d["shrunk"] or {}).get("case_id")) for d in result.divergences]


def test_search_is_deterministic_given_the_seed(control_run):
    again = runner.run([NumpyAdapter(), NaiveAdapter()], ["sigmoid_bce_logits", "softmax_ce_dense"], ["float32"],
                       4, 3, progress=None, search=12, shrink=20)
    assert _keys(again) == _keys(control_run)
    untimed = lambda cells: [{k: v for k, v in c.to_dict().items() if k != "seconds"} for c in cells]  # noqa: E731
    assert untimed(again.cells) == untimed(control_run.cells)


def test_every_cell_searched_its_own_cases(control_run):
    cells = {(c.adapter, c.api): c for c in control_run.cells if c.variant == "sigmoid_bce_logits"}
    assert cells[("naive", "textbook")].searched == 12 and cells[("numpy", "numpy")].searched == 12
    # distinct seeds per cell: two cells of one variant and dtype do not draw the same stream
    seeds = {searching.cell_seed(3, a, api, "sigmoid_bce_logits", "float32") for a, api in cells}
    assert len(seeds) == len(cells)


def test_the_search_climbs_the_target():
    """With `target`, the worst error the search reaches on the no_log1p control beats the worst of
    as many plain random cases: the score drives it towards inputs where log(1 + e^-x) loses all."""
    from cases.strategies import generate

    a = NaiveAdapter()
    truths: dict = {}
    best = {"search": 0.0, "random": 0.0}

    def judge(case):
        truth = runner._truth(case, truths)
        return truth, runner._judge(a, "no_log1p", case, truth, truths)[0]

    def keep(case, truth, cv):
        best["search"] = max(best["search"], searching.score(cv))

    searching.search_cell(a, "no_log1p", "sigmoid_bce_logits", "float64", 60, 5, judge, keep)
    for case in generate("sigmoid_bce_logits", "float64", 60, 5):
        if "no_log1p" in a.apis(case):
            best["random"] = max(best["random"], searching.score(judge(case)[1]))
    assert best["search"] >= best["random"] and best["search"] > 30  # > 2**30 ulps: the flaw is found


def test_divergences_are_grouped_per_cell_verdict_and_regime(control_run):
    keys = [(d["adapter"], d["api"], d["variant"], d["dtype"], d["verdict"], d["regime"])
            for d in control_run.divergences]
    assert len(keys) == len(set(keys))
    assert sum(d["count"] for d in control_run.divergences) == control_run.divergent_answers
    total_bad = sum(c.cases - c.verdicts.get("conforms", 0) - c.verdicts.get("contract", 0) for c in control_run.cells)
    assert total_bad == control_run.divergent_answers > 0
    assert not [d for d in control_run.divergences if d["adapter"] == "numpy"]


def test_the_worst_case_of_a_group_is_kept(control_run):
    for d in control_run.divergences:
        if d["ulp"] is None:
            continue
        cell = next(c for c in control_run.cells if (c.adapter, c.api, c.variant, c.dtype) ==
                    (d["adapter"], d["api"], d["variant"], d["dtype"]))
        assert d["ulp"] <= cell.max_ulp


def test_shrunk_cases_keep_their_verdict_and_are_smaller(control_run):
    shrunk = [d for d in control_run.divergences if d["shrunk"]]
    assert shrunk
    a = NaiveAdapter()
    truths: dict = {}
    for d in shrunk:
        small, big = Case.from_dict(d["shrunk"]["case"]), Case.from_dict(d["case"])
        truth = runner._truth(small, truths)
        cv, _ = runner._judge(a, d["api"], small, truth, truths)
        assert cv.verdict == d["verdict"]
        size = lambda c: sum(v.size for v in c.inputs.values())  # noqa: E731
        assert size(small) <= size(big) and small.case_id != big.case_id


def test_shrinking_the_810_overflow_gives_one_element():
    """The max-shift-free softmax CE overflows at a big logit; shrinking a 5x6 case with one such
    row keeps a single row and turns the other logits into small integers."""
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 6)).astype(np.float32)
    logits[3, 2] = 810.0
    labels = np.eye(6, dtype=np.float32)[rng.integers(0, 6, size=5)]
    case = Case("softmax_ce_dense", "float32", {"logits": logits, "labels": labels}, {"reduction": "none"})
    a, truths = NaiveAdapter(), {}

    def judge(c):
        if "no_max_shift" not in a.apis(c):
            return None
        t = runner._truth(c, truths)
        return t, runner._judge(a, "no_max_shift", c, t, truths)[0]

    truth, cv = judge(case)
    assert cv.verdict == "nan"
    result = shrink(case, truth, cv, judge, budget=200)
    small = result.case
    assert small["logits"].shape[0] == 1 and result.verdict.verdict == "nan"
    assert 810.0 in small["logits"] or np.max(small["logits"]) >= 128  # the overflowing logit stays
    assert result.calls <= 200


def _condition_sigmoid(x: float, z: float) -> float:
    """sens / |L| for L = softplus(x) - x z, sens = |x| |dL/dx| + |z| |dL/dz|, by mpmath."""
    mpmath.mp.prec = 200
    x, z = mpmath.mpf(x), mpmath.mpf(z)
    loss = mpmath.log1p(mpmath.exp(x)) - x * z
    dx = 1 / (1 + mpmath.exp(-x)) - z
    return float((abs(x) * abs(dx) + abs(z) * abs(x)) / abs(loss))


def test_divergences_carry_the_condition_number():
    """A cancelling case: x = -20 with label 1e-9-ish gives a large condition number; the value
    in the divergence is sens/|truth| computed independently from the closed form."""
    x, z = np.float32(-20.0), np.float32(2.0 ** -30)
    case = Case("sigmoid_bce_logits", "float32", {"logits": np.array([x]), "labels": np.array([z])},
                {"reduction": "none"})
    truths: dict = {}
    truth = runner._truth(case, truths)

    class Off(NumpyAdapter):  # answers 3 ulps high: a divergence whose condition we can check
        name = "off"

        def evaluate(self, case, api, grads=True):
            out = super().evaluate(case, api, grads=False)
            return type(out)(np.nextafter(np.nextafter(np.nextafter(out.value, np.inf), np.inf), np.inf) * 1.5)

    cv, _ = runner._judge(Off(), "numpy", case, truth, truths)
    d = runner.divergence("off", "numpy", case, truth, cv)
    assert d["verdict"] == "inaccurate"
    assert d["condition"] == pytest.approx(_condition_sigmoid(float(x), float(z)), rel=1e-6)


def test_case_store_and_replay_by_id_and_file(tmp_path, capsys):
    db, out = tmp_path / "db", tmp_path / "r"
    assert main(["run", "--adapters", "numpy,naive", "--variants", "sigmoid_bce_logits", "--dtypes", "float32",
                 "--examples", "3", "--search", "4", "--shrink", "10", "--seed", "2", "--out", str(out),
                 "--db", str(db), "--quiet"]) == 0
    doc = json.loads((out / "report.json").read_text())
    d = doc["divergences"][0]
    stored = {p.stem for p in (db / "cases").glob("*.json")}
    assert d["case_id"] in stored
    capsys.readouterr()
    assert main(["replay", d["case_id"], "--db", str(db), "--adapters", "numpy,naive"]) == 0
    table = capsys.readouterr().out
    assert f"case {d['case_id']}" in table and d["api"] in table and d["verdict"] in table
    assert "numpy" in table and "conforms" in table
    case_file = tmp_path / "one.json"
    case_file.write_text(json.dumps(d["case"]))
    assert main(["replay", str(case_file), "--adapters", "numpy", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert rows and all(r["verdict"] == "conforms" for r in rows)
    assert find(d["case_id"][:8], CaseStore(db)).case_id == d["case_id"]


def test_replay_of_an_unknown_case_is_a_one_line_error(tmp_path, capsys):
    assert main(["replay", "0123456789abcdef", "--db", str(tmp_path), "--reports", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xent: error: no case 0123456789abcdef") and err.count("\n") == 1
    bad = tmp_path / "bad.json"
    bad.write_text('{"variant": "nope"}')
    assert main(["replay", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.json: dtype: missing" in err and err.count("\n") == 1


def test_reproducers_run_standalone_and_reproduce(tmp_path):
    """Each reproducer of the naive control, run as its own process from an empty folder, prints
    REPRODUCED and exits 0; and it imports nothing of xent."""
    out = tmp_path / "r"
    assert main(["run", "--adapters", "naive", "--variants", "sigmoid_bce_logits,softmax_ce_dense", "--dtypes",
                 "float32,float64", "--examples", "4", "--search", "6", "--shrink", "10", "--seed", "4",
                 "--out", str(out), "--db", str(tmp_path / "db"), "--quiet"]) == 0
    doc = json.loads((out / "report.json").read_text())
    scripts = [d["repro"] for d in doc["divergences"] if d["repro"]]
    assert len(scripts) == len(doc["divergences"]) > 0
    for rel in scripts:
        text = (out / rel).read_text()
        assert "import adapters" not in text and "conformance" not in text.split('"""')[2]
        proc = subprocess.run([sys.executable, str(out / rel)], cwd=tmp_path, capture_output=True, text=True,
                              timeout=60, env={"PATH": "/usr/bin:/bin", "PYTHONNOUSERSITE": "1"})
        assert proc.returncode == 0, (rel, proc.stdout, proc.stderr)
        assert "REPRODUCED" in proc.stdout and "NOT REPRODUCED" not in proc.stdout


def test_a_reproducer_that_no_longer_reproduces_says_so(tmp_path):
    case = Case("sigmoid_bce_logits", "float32", {"logits": np.array([1.0], np.float32),
                                                  "labels": np.array([0.0], np.float32)}, {"reduction": "none"})
    from conformance import repro

    src = repro.script(case, "value = np.log1p(np.exp(inputs['logits']))\ngrads = {}", adapter="x", api="y",
                       verdict="inaccurate", quantity="value", index=(0,), recorded="0x1p+0", truth="0x1p+0")
    path = tmp_path / "r.py"
    path.write_text(src)
    proc = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "NOT REPRODUCED" in proc.stdout


# -- the CI gate ---------------------------------------------------------------------------------

def _run_cli(args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "conformance", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


def test_gate_fails_on_a_control_divergence_outside_the_baseline(tmp_path):
    """A baseline written from a run of the reference alone is empty; the same run with the naive
    control added exits 1 and names the control's divergences."""
    common = ["--variants", "sigmoid_bce_logits", "--dtypes", "float32", "--examples", "3", "--search", "3",
              "--shrink", "0", "--seed", "5", "--quiet", "--db", str(tmp_path / "db")]
    assert main(["run", "--adapters", "numpy", "--out", str(tmp_path / "a"), *common]) == 0
    base = tmp_path / "baseline.json"
    assert main(["baseline", str(tmp_path / "a" / "report.json"), "--out", str(base)]) == 0
    assert json.loads(base.read_text())["entries"] == []
    proc = _run_cli(["run", "--adapters", "numpy,naive", "--out", str(tmp_path / "b"), "--baseline", str(base),
                     *common])
    assert proc.returncode == 1, proc.stderr
    assert "NEW naive/" in proc.stderr and "gate FAILED" in proc.stderr
    # refreshed from that report, the same run passes
    assert main(["baseline", str(tmp_path / "b" / "report.json"), "--out", str(base)]) == 0
    proc = _run_cli(["run", "--adapters", "numpy,naive", "--out", str(tmp_path / "c"), "--baseline", str(base),
                     *common])
    assert proc.returncode == 0, proc.stderr
    assert "gate passed" in proc.stdout


def test_the_committed_baseline_passes_on_a_subset_of_the_default_run(tmp_path):
    """The committed baseline covers the default run; a subset with the default settings (the
    reference, the controls, PyTorch, scikit-learn, ONNX) finds nothing outside it."""
    pytest.importorskip("torch")
    base = ROOT / "reports" / "baseline.json"
    entries = gate.load_baseline(base)
    assert entries and all(not e["reason"].startswith("UNREVIEWED") for e in entries)
    proc = _run_cli(["run", "--adapters", "numpy,naive,torch", "--dtypes", "float32,float64",
                     "--variants", "sigmoid_bce_logits,bce_probs,softmax_ce_sparse,log_softmax",
                     "--out", str(tmp_path / "r"), "--db", str(tmp_path / "db"), "--baseline", str(base), "--quiet"])
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_diff_names_what_appeared_and_what_was_fixed(tmp_path, capsys):
    res = runner.run([NumpyAdapter(), NaiveAdapter()], ["sigmoid_bce_logits"], ["float32"], 3, 0, progress=None)
    old = report.build(res)
    new = json.loads(json.dumps(old))
    gone = new["divergences"].pop(0)
    (tmp_path / "old.json").write_text(json.dumps(old))
    (tmp_path / "new.json").write_text(json.dumps(new))
    assert main(["diff", str(tmp_path / "old.json"), str(tmp_path / "new.json")]) == 0
    out = capsys.readouterr().out
    assert "fixed" in out and gone["api"] in out
    (tmp_path / "junk.json").write_text("{}")
    assert main(["diff", str(tmp_path / "junk.json"), str(tmp_path / "new.json")]) == 2


def test_progress_updates_one_line_on_a_terminal():
    class Tty(io.StringIO):
        def isatty(self):
            return True

    s = Tty()
    p = Progress(s, 2)
    p.start("softmax", "float32")
    p.phase("search numpy/softmax")
    p.answer(True)
    p.done("softmax", "float32", 5, 0.1, 1, 0)
    p.close()
    text = s.getvalue()
    assert "\r[1/2] softmax float32" in text and "[1/2] softmax float32: 5 cases" in text
    plain = io.StringIO()
    p = Progress(plain, 1)
    p.start("softmax", "float32")
    p.answer(False)
    p.done("softmax", "float32", 5, 0.1, 0, 0)
    assert "\r" not in plain.getvalue() and plain.getvalue().count("\n") == 1


def test_jobs_split_by_adapter_give_the_same_report(tmp_path):
    """--jobs 2 deals the adapters over two processes; cells and divergences are those of one."""
    common = ["--adapters", "numpy,naive", "--variants", "sigmoid_bce_logits", "--dtypes", "float32",
              "--examples", "3", "--search", "4", "--shrink", "6", "--seed", "8", "--quiet", "--db", str(tmp_path / "db")]
    docs = []
    for jobs in ("1", "2"):
        proc = _run_cli(["run", "--jobs", jobs, "--out", str(tmp_path / jobs), *common])
        assert proc.returncode == 0, proc.stderr[-2000:]
        docs.append(json.loads((tmp_path / jobs / "report.json").read_text()))
    one, two = docs
    assert two["run"]["jobs"] == 2 and "jobs" not in one["run"]
    strip = lambda d: [{k: v for k, v in c.items() if k != "seconds"} for c in d["cells"]]  # noqa: E731
    assert strip(one) == strip(two)
    assert [d["explanation"] for d in one["divergences"]] == [d["explanation"] for d in two["divergences"]]
    assert sorted(p.name for p in (tmp_path / "2" / "repro").iterdir()) == \
        sorted(p.name for p in (tmp_path / "1" / "repro").iterdir())
