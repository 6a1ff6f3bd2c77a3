"""Audits that scale out: ``xent run --shard K/N`` and ``xent merge``, ``xent run --scheduler`` on a
local Dask cluster, and ``conformance.distribute.map_tasks`` (in process, a process pool, Dask).

Done when sharded and merged reports equal the single run: report.json is compared whole, less the
documented wall-clock fields (``shards.VOLATILE``), summary.md less its duration and oracle seconds,
and repro/ file by file.
"""
import json
import re
import shutil
import time

import pytest

from conformance import distribute, shards
from conformance.cli import main

RUN = ["--adapters", "numpy,naive", "--variants", "sigmoid_bce_logits,softmax_ce_sparse", "--dtypes", "float32,float16",
       "--examples", "2", "--search", "2", "--shrink", "4", "--seed", "3", "--quiet"]


def _run(tmp_path, out, *extra) -> None:
    assert main(["run", *RUN, "--db", str(tmp_path / "db"), "--out", str(out), *extra]) == 0


def _summary(folder) -> str:
    """summary.md less what measures time: the duration and the oracle table's seconds column."""
    text = (folder / "summary.md").read_text()
    text = re.sub(r"; [0-9.]+ s, Python", "; <duration> s, Python", text)
    return re.sub(r"^(\|[^|]*\|[^|]*\|[^|]*\|[^|]*\|[^|]*\|[^|]*\|) [0-9.e+-]+ \|$", r"\1 <s> |", text, flags=re.M)


def _repros(folder) -> dict:
    return {p.name: p.read_text() for p in sorted((folder / "repro").glob("*.py"))}


def assert_same_report(one, other) -> None:
    a = json.loads((one / "report.json").read_text())
    b = json.loads((other / "report.json").read_text())
    assert shards.comparable(a) == shards.comparable(b)
    assert _summary(one) == _summary(other)
    assert _repros(one) == _repros(other)


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """The unsharded run, in one process."""
    tmp = tmp_path_factory.mktemp("whole")
    _run(tmp, tmp / "r", "--jobs", "1")
    doc = json.loads((tmp / "r" / "report.json").read_text())
    assert doc["divergences"] and len(doc["oracle"]) == 4  # the control's divergences; every variant x dtype
    return tmp / "r"


@pytest.fixture(scope="module")
def halves(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("halves")
    for k in (1, 2):
        _run(tmp, tmp / f"s{k}", "--jobs", "1", "--shard", f"{k}/2")
    return tmp / "s1", tmp / "s2"


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        yield c.scheduler_address


def test_two_shards_merged_equal_the_single_run(whole, halves, tmp_path, capsys):
    s1, s2 = halves
    info = [json.loads((s / "report.json").read_text())["run"]["shard"] for s in halves]
    assert [i["index"] for i in info] == [1, 2] and {i["count"] for i in info} == {2}
    assert info[0]["units"] + info[1]["units"] == [[a, v] for a in ("numpy", "naive")
                                                   for v in ("sigmoid_bce_logits", "softmax_ce_sparse")]
    assert main(["merge", str(s2), str(s1), "--out", str(tmp_path / "m")]) == 0  # any order
    assert "2 shards merged" in capsys.readouterr().out
    assert_same_report(whole, tmp_path / "m")
    merged = json.loads((tmp_path / "m" / "report.json").read_text())
    assert "shard" not in merged["run"] and merged["oracle"][0]["shared"]["cases"] > 0


def test_three_shards_split_a_variant_and_run_with_jobs(whole, tmp_path):
    """Shard 2/3 holds numpy on one variant and naive on the other: two --jobs processes, each
    given its units; the shared cases of a variant and dtype are counted once in the merge."""
    for k in (1, 2, 3):
        _run(tmp_path, tmp_path / f"s{k}", "--jobs", "2", "--shard", f"{k}/3")
    middle = json.loads((tmp_path / "s2" / "report.json").read_text())
    assert middle["run"]["shard"]["units"] == [["numpy", "softmax_ce_sparse"], ["naive", "sigmoid_bce_logits"]]
    assert middle["run"]["jobs"] == 2 and {c["variant"] for c in middle["cells"] if c["adapter"] == "numpy"} == \
        {"softmax_ce_sparse"}
    assert main(["merge", *(str(tmp_path / f"s{k}") for k in (3, 1, 2)), "--out", str(tmp_path / "m")]) == 0
    assert_same_report(whole, tmp_path / "m")


def test_scheduler_run_on_a_local_dask_cluster_equals_the_local_run(whole, cluster, tmp_path, capsys):
    _run(tmp_path, tmp_path / "d", "--scheduler", cluster)
    assert_same_report(whole, tmp_path / "d")
    # a shard of a distributed run is a shard like any other
    _run(tmp_path, tmp_path / "s1", "--scheduler", cluster, "--shard", "1/2")
    _run(tmp_path, tmp_path / "s2", "--jobs", "1", "--shard", "2/2")
    assert main(["merge", str(tmp_path / "s1"), str(tmp_path / "s2"), "--out", str(tmp_path / "m")]) == 0
    assert_same_report(whole, tmp_path / "m")


def test_unreachable_scheduler_is_one_line(tmp_path, capsys, monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.setattr(distribute, "CONNECT_TIMEOUT_S", 0.5)
    code = main(["run", *RUN, "--db", str(tmp_path / "db"), "--out", str(tmp_path / "r"), "--scheduler",
                 "tcp://127.0.0.1:9"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot reach the Dask scheduler at 'tcp://127.0.0.1:9'" in err and err.count("\n") == 1


# -- map_tasks ------------------------------------------------------------------------------------

def square(x):
    if x == "boom":
        raise ValueError("boom went the task")
    return x * x


def test_map_tasks_gives_the_same_results_in_process_in_a_pool_and_on_dask(cluster):
    tasks = list(range(30))
    seen = []
    local = list(distribute.map_tasks(square, tasks, progress=lambda done, total: seen.append((done, total))))
    assert local == [(i, i * i) for i in tasks] and seen[-1] == (30, 30)
    assert sorted(distribute.map_tasks(square, tasks, jobs=2)) == local
    assert sorted(distribute.map_tasks(square, tasks, scheduler=cluster)) == local
    assert list(distribute.map_tasks(square, [], jobs=2)) == []


@pytest.mark.parametrize("mode", ["in-process", "pool", "dask"])
def test_a_raising_task_is_named(mode, cluster):
    kw = {"in-process": {}, "pool": {"jobs": 2}, "dask": {"scheduler": cluster}}[mode]
    with pytest.raises(distribute.TaskError) as e:
        dict(distribute.map_tasks(square, [1, 2, "boom", 4], **kw))
    assert e.value.index == 2 and "task 2 ('boom')" in str(e.value) and "ValueError: boom went the task" in str(e.value)
    assert "\n" not in str(e.value)
    if mode != "in-process":
        assert "square" in e.value.traceback  # where it raised, from the worker


# -- the shard rule -------------------------------------------------------------------------------

class _A:
    def __init__(self, name, slow=False):
        self.name, self.slow = name, slow


def test_shard_rule_is_contiguous_weighted_and_complete():
    adapters = [_A("numpy"), _A("jax", slow=True), _A("torch")]
    variants = ["a", "b", "c"]
    units = shards.plan(adapters, variants)
    for n in (1, 2, 3, 4, 7, 12):
        parts = [shards.shard(adapters, variants, k, n) for k in range(1, n + 1)]
        assert [u for p in parts for u in p] == units  # contiguous, each unit once, in order
    weights = [sum(8 if a == "jax" else 1 for a, _ in shards.shard(adapters, variants, k, 3)) for k in (1, 2, 3)]
    assert max(weights) - min(weights) <= 8  # 30 in all: about 10 each
    # more shards than units: empty ones (the unit's weight midpoint, 1/2, is in the second third)
    assert [shards.shard([_A("numpy")], ["a"], k, 3) for k in (1, 2, 3)] == [[], [("numpy", "a")], []]
    assert shards.parse_shard("2/4") == (2, 4)
    for bad in ("0/2", "3/2", "2", "a/b", "1/0"):
        with pytest.raises(ValueError):
            shards.parse_shard(bad)


def test_empty_shards_merge_too(tmp_path):
    one = ["--adapters", "numpy", "--variants", "softmax", "--dtypes", "float32", "--examples", "1", "--search", "1",
           "--shrink", "0", "--quiet", "--jobs", "1", "--db", str(tmp_path / "db")]
    assert main(["run", *one, "--out", str(tmp_path / "whole")]) == 0
    for k in (1, 2, 3):
        assert main(["run", *one, "--shard", f"{k}/3", "--out", str(tmp_path / f"s{k}")]) == 0
    for k in (1, 3):  # empty: the one unit is shard 2's
        assert json.loads((tmp_path / f"s{k}" / "report.json").read_text())["cells"] == []
    assert main(["merge", *(str(tmp_path / f"s{k}") for k in (1, 2, 3)), "--out", str(tmp_path / "m")]) == 0
    assert_same_report(tmp_path / "whole", tmp_path / "m")


# -- merge refuses what is not one run's shards --------------------------------------------------

def _error(capsys, *argv) -> str:
    assert main(list(argv)) == 2
    err = capsys.readouterr().err
    assert err.startswith("xent: error: ") and err.count("\n") == 1, err
    return err


def test_merge_refuses_missing_duplicate_foreign_and_non_shard_folders(whole, halves, tmp_path, capsys):
    s1, s2 = map(str, halves)
    out = str(tmp_path / "m")
    assert "missing shard 2 of 2 (given: 1)" in _error(capsys, "merge", s1, "--out", out)
    assert f"shard 1/2 given twice: {s1} and {s1}" in _error(capsys, "merge", s1, s1, s2, "--out", out)
    # a shard of another run: another seed, other variants
    for field, value, what in (("seed", 4, "run.seed is 3"), ("dtypes", ["float32"], "run.dtypes")):
        other = tmp_path / f"other-{field}"
        shutil.copytree(s2, other)
        doc = json.loads((other / "report.json").read_text())
        doc["run"][field] = value
        (other / "report.json").write_text(json.dumps(doc))
        err = _error(capsys, "merge", s1, str(other), "--out", out)
        assert "shards of different runs" in err and what in err and str(other) in err
    # a folder that holds no report, an unsharded report, a report of another shard count
    (tmp_path / "empty").mkdir()
    assert "not a report folder (no report.json)" in _error(capsys, "merge", s1, str(tmp_path / "empty"), "--out", out)
    assert "not a folder" in _error(capsys, "merge", s1, str(tmp_path / "nowhere"), "--out", out)
    assert "not a shard's report" in _error(capsys, "merge", s1, str(whole), "--out", out)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "report.json").write_text("{}")
    assert "is not an xent report" in _error(capsys, "merge", s1, str(tmp_path / "junk"), "--out", out)
    assert "one of the shard folders" in _error(capsys, "merge", s1, s2, "--out", s2)
    assert not (tmp_path / "m").exists()


def test_bad_shard_arguments_are_one_line(tmp_path, capsys):
    for bad in ("3/2", "0/1", "1-2"):
        err = _error(capsys, "run", *RUN, "--shard", bad, "--out", str(tmp_path / "r"))
        assert "--shard" in err and bad in err


def test_ctrl_c_stops_the_pool():
    """KeyboardInterrupt while waiting: the workers are ended, none is left running."""
    import multiprocessing
    import os
    import signal
    import threading

    timer = threading.Timer(1.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    t0 = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        list(distribute.map_tasks(time.sleep, [60] * 4, jobs=2))
    assert time.perf_counter() - t0 < 20
    assert not [p for p in multiprocessing.active_children() if p.name.startswith("ForkServerProcess")]
