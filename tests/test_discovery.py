"""Third-party adapters: ``--adapter MODULE:ATTRIBUTE``, the entry-point group ``xent.adapters``,
and a broken one reported with its reason while the others run.

Entry points are tested without installing anything: a folder holding a ``*.dist-info`` with an
``entry_points.txt`` is put on the path of a subprocess, which is what an installed package is to
``importlib.metadata``.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from adapters import discovery
from adapters.base import Adapter
from conformance import runner
from tests.helpers import make

ROOT = Path(__file__).resolve().parents[1]

TEAM_MODULE = '''
import numpy as np
import xent
from adapters.base import Adapter


def bce(logits, labels):
    return np.maximum(logits, 0) - logits * labels + np.log1p(np.exp(-np.abs(logits)))


adapter = xent.kernel(bce, "sigmoid_bce_logits", dtypes=["float32"], name="team-bce")
not_an_adapter = bce
number = 3


class Exploding(Adapter):
    name = "exploding"

    def __init__(self):
        raise RuntimeError("no licence server")


class BadAnswers(Adapter):
    name = "bad-answers"
    variants = ("sigmoid_bce_logits",)

    def apis(self, case):
        if case["logits"].size > 1:
            raise KeyError("rows")
        return ["bad"]

    def evaluate(self, case, api, grads=True):
        return [1.0]
'''


@pytest.fixture
def team(tmp_path, monkeypatch):
    """A folder with the module ``team_xent_mod`` (on this process's path and its children's)."""
    (tmp_path / "team_xent_mod.py").write_text(TEAM_MODULE)
    (tmp_path / "team_xent_broken.py").write_text("raise RuntimeError('half-installed')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.delenv(discovery.ENV, raising=False)
    return tmp_path


@pytest.mark.parametrize("target, says", [
    ("team_xent_nosuch:adapter", "team_xent_nosuch:adapter: module team_xent_nosuch does not import "
                                 "(ModuleNotFoundError: No module named 'team_xent_nosuch')"),
    ("team_xent_broken:adapter", "module team_xent_broken does not import (RuntimeError: half-installed)"),
    ("team_xent_mod:missing", "team_xent_mod:missing: team_xent_mod has no attribute missing"),
    ("team_xent_mod:not_an_adapter", "is a function, not an adapter (an xent Adapter instance or subclass): "
                                     "wrap a loss function with xent.kernel"),
    ("team_xent_mod:number", "team_xent_mod:number is a int, not an adapter"),
    ("team_xent_mod:Exploding", "team_xent_mod:Exploding: Exploding() raised RuntimeError: no licence server"),
    ("no colon", "is not MODULE:ATTRIBUTE"),
])
def test_discovery_broken_target_gives_its_reason_on_one_line(team, target, says):
    a = discovery.load(target)
    assert isinstance(a, discovery.Broken)
    ok, reason = a.available()
    assert not ok and says in reason and "\n" not in reason


def test_discovery_loads_an_instance_and_a_class(team):
    a = discovery.load("team_xent_mod:adapter")
    assert isinstance(a, discovery.Guarded) and a.name == "team-bce" and a.variants == ("sigmoid_bce_logits",)
    assert a.available()[0]
    assert discovery.load("team_xent_mod:BadAnswers").name == "bad-answers"


def test_discovery_guarded_failures_cost_a_call_not_the_run(team):
    a = discovery.load("team_xent_mod:BadAnswers")
    numpy = runner.registry.get("numpy")
    result = runner.run([a, numpy], ["sigmoid_bce_logits"], ["float32"], 2, 0, progress=None)
    verdicts = {(c.adapter, v) for c in result.cells for v in c.verdicts}
    assert ("bad-answers", "raised") in verdicts  # evaluate returned a list: the verdict names it
    assert any("evaluate() returned list, not an adapters.Output" in d["message"]
               for d in result.divergences if d["adapter"] == "bad-answers")
    assert any("apis() raised KeyError" in p for p in a.problems)  # multi-element cases: not applicable
    numpy_cells = [c for c in result.cells if c.adapter == "numpy"]
    assert numpy_cells and all(c.conforming == c.cases for c in numpy_cells)


def test_discovery_isolated_adapter_is_served_by_a_worker(team):
    a = discovery.load("team_xent_mod:adapter", isolated=True)
    try:
        case = make("sigmoid_bce_logits", "float32", logits=[0.0], labels=[1.0])
        out = a.evaluate(case, a.apis(case)[0])
        assert a.inner.worker.pid not in (None, os.getpid())
        assert out.value.dtype == np.float32 and out.value[0] == np.float32(np.log(2.0))  # log(1 + e^0)
    finally:
        a.close()


def _cli(argv, cwd, env=None, timeout=300):
    env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "conformance", *argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _dist_info(folder: Path, entry_points: dict) -> None:
    """A package's installed metadata, as pip writes it: what importlib.metadata reads."""
    info = folder / "team_xent_plugins-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: team-xent-plugins\nVersion: 1.0\n")
    lines = ["[xent.adapters]"] + [f"{name} = {target}" for name, target in entry_points.items()]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")


def test_discovery_entry_points_join_xent_list(team, monkeypatch, capsys):
    import adapters
    from conformance.cli import main

    _dist_info(team, {"team-good": "team_xent_mod:adapter", "team-bad": "team_xent_nosuch:adapter"})
    monkeypatch.setattr(adapters, "ADAPTERS", {"numpy": adapters.ADAPTERS["numpy"]})  # no framework imports
    assert main(["list"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.startswith("  team-")}
    assert "available" in lines["team-good"] and "[third-party: team_xent_mod:adapter]" in lines["team-good"]
    assert "unavailable: team_xent_nosuch:adapter: module team_xent_nosuch does not import" in lines["team-bad"]


def test_discovery_broken_entry_point_is_reported_and_the_others_run(team):
    _dist_info(team, {"team-good": "team_xent_mod:adapter", "team-bad": "team_xent_broken:adapter"})
    out = team / "report"
    done = _cli(["run", "--adapters", "numpy,team-good,team-bad", "--variants", "sigmoid_bce_logits",
                 "--dtypes", "float32", "--examples", "2", "--search", "0", "--shrink", "0", "--jobs", "1",
                 "--out", str(out), "--quiet"], cwd=team)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert "xent: warning: adapter team-bad unavailable: team_xent_broken:adapter: module team_xent_broken " \
           "does not import (RuntimeError: half-installed)" in done.stderr
    doc = json.loads((out / "report.json").read_text())
    listed = {a["name"]: a for a in doc["environment"]["adapters"]}
    assert not listed["team-bad"]["available"] and "half-installed" in listed["team-bad"]["reason"]
    assert doc["run"]["adapters"] == ["numpy", "team-good"]
    assert "half-installed" in (out / "summary.md").read_text()


def test_discovery_adapter_option_runs_only_the_named_adapter_over_its_declarations(team):
    out = team / "report"
    done = _cli(["run", "--adapter", "team_xent_mod:adapter", "--examples", "2", "--search", "2", "--shrink", "0",
                 "--out", str(out), "--quiet"], cwd=team)
    assert done.returncode == 0, done.stderr
    doc = json.loads((out / "report.json").read_text())
    assert doc["run"]["adapters"] == ["team-bce"]
    assert doc["run"]["variants"] == ["sigmoid_bce_logits"] and doc["run"]["dtypes"] == ["float32"]
    assert {c["api"] for c in doc["cells"]} == {"team_xent_mod.bce"}


def test_discovery_jobs_find_the_adapter_option_by_name(team):
    # two jobs: numpy in one process, team-bce in another, which learns its target from XENT_ADAPTERS
    out = team / "report"
    done = _cli(["run", "--adapters", "numpy", "--adapter", "team_xent_mod:adapter", "--variants",
                 "sigmoid_bce_logits", "--dtypes", "float32", "--examples", "2", "--search", "0", "--shrink", "0",
                 "--jobs", "2", "--out", str(out), "--quiet"], cwd=team)
    assert done.returncode == 0, done.stderr
    doc = json.loads((out / "report.json").read_text())
    assert doc["run"]["jobs"] == 2 and doc["run"]["adapters"] == ["numpy", "team-bce"]
    assert {c["adapter"] for c in doc["cells"] if c["cases"]} == {"numpy", "team-bce"}


def test_discovery_broken_adapter_option_is_one_error_line_and_the_others_run(team):
    out = team / "report"
    done = _cli(["run", "--adapters", "numpy", "--adapter", "team_xent_nosuch:adapter", "--variants",
                 "sigmoid_bce_logits", "--dtypes", "float32", "--examples", "1", "--search", "0", "--shrink", "0",
                 "--out", str(out), "--quiet"], cwd=team)
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if line.startswith("xent: error:")]
    assert errors == ["xent: error: adapter team_xent_nosuch:adapter could not be loaded: team_xent_nosuch:adapter: "
                      "module team_xent_nosuch does not import (ModuleNotFoundError: No module named "
                      "'team_xent_nosuch'); the report holds the other adapters"]
    assert "Traceback" not in done.stderr
    doc = json.loads((out / "report.json").read_text())
    assert doc["run"]["adapters"] == ["numpy"]
    listed = {a["name"]: a for a in doc["environment"]["adapters"]}
    assert listed["team_xent_nosuch:adapter"]["available"] is False


@pytest.mark.parametrize("target", ["nocolon", "a:b:c", "1mod:x", ":x"])
def test_discovery_malformed_adapter_option_is_a_usage_error(team, target, capsys):
    from conformance.cli import main

    assert main(["run", "--adapter", target]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xent: error: argument --adapter: ") and "is not MODULE:ATTRIBUTE" in err
    assert len(err.strip().splitlines()) == 1


def test_discovery_replay_takes_the_adapter_option(team):
    case = make("sigmoid_bce_logits", "float32", logits=[-810.0], labels=[1.0])
    path = team / "case.json"
    path.write_text(case.to_json())
    done = _cli(["replay", str(path), "--adapter", "team_xent_mod:adapter", "--adapter", "team_xent_mod:number",
                 "--json"], cwd=team)
    assert done.returncode == 0, done.stderr
    rows = {r["adapter"]: r for r in json.loads(done.stdout)["rows"]}
    assert rows["team-bce"]["verdict"] == "conforms"  # 810 + log1p(e^-810): 810 in float32, computed stably
    assert rows["team_xent_mod:number"]["verdict"] == "unavailable"
    assert "is a int, not an adapter" in rows["team_xent_mod:number"]["detail"]


def test_discovery_name_taken_by_a_builtin_adapter_is_broken(team):
    (team / "team_xent_clash.py").write_text(
        "import xent\nadapter = xent.kernel(lambda logits, labels: logits, 'sigmoid_bce_logits', name='numpy')\n")
    import adapters

    a = adapters.register("team_xent_clash:adapter")
    assert isinstance(a, discovery.Broken) and "is already that of the adapter adapters.numpy_ref" in a.available()[1]


def test_discovery_subclass_interface_is_the_documented_one():
    # what docs/adapters.md promises a subclass may declare
    for attr in ("name", "description", "control", "slow", "variants", "dtypes"):
        assert hasattr(Adapter, attr)
    for method in ("available", "apis", "evaluate", "contract", "repro"):
        assert callable(getattr(Adapter, method))


@pytest.mark.parametrize("value", ["[1", '["a:b"]', '{"x": 3}'])
def test_discovery_malformed_adapters_environment_is_a_usage_error(value, monkeypatch, capsys):
    from conformance.cli import main

    monkeypatch.setenv(discovery.ENV, value)
    assert main(["list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xent: error: XENT_ADAPTERS=") and len(err.strip().splitlines()) == 1
