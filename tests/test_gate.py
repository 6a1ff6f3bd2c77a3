"""The CI gate (baseline check and refresh) and report diffs, on the report of a real tiny run.

numpy (which conforms) and the naive controls (which diverge by design) over sigmoid BCE on logits in
float32 and float64: one run per module; variant documents are deep copies edited by hand.
"""
import copy
import json
import os
import stat

import pytest

from conformance import gate, report, runner
from conformance.gate import BaselineError, ReportError


@pytest.fixture(scope="module")
def doc():
    res = runner.run(["numpy", "naive"], ["sigmoid_bce_logits"], ["float32", "float64"], 3, 0, progress=None)
    d = report.build(res)
    assert d["divergences"], "the naive controls must diverge"
    return d


def keys(doc):
    return {gate.key_of(d) for d in doc["divergences"]}


def entry(adapter="naive", api="textbook", variant="sigmoid_bce_logits", dtype="float32", verdict="nan",
          reason="known", **extra):
    return {"adapter": adapter, "api": api, "variant": variant, "dtype": dtype, "verdict": verdict,
            "reason": reason, **extra}


def write_json(tmp_path, obj, name="baseline.json"):
    p = tmp_path / name
    p.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return p


# -- the gate ------------------------------------------------------------------------------------

def test_refresh_then_check_passes(doc, tmp_path):
    entries = gate.refresh(doc, [])
    assert {gate.key_of(e) for e in entries} == keys(doc)
    assert all(e["reason"].startswith("UNREVIEWED: ") for e in entries)
    assert all(e["example"] for e in entries)
    assert sum(e["count"] for e in entries) == sum(d.get("count", 1) for d in doc["divergences"])
    assert entries == sorted(entries, key=gate._sort_key)

    path = gate.write_baseline(tmp_path / "sub" / "baseline.json", entries)
    text = path.read_text()
    assert text.endswith("}\n") and text.startswith('{\n "schema": "xent-baseline/1"')
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert not [p for p in path.parent.iterdir() if p.name != "baseline.json"]  # no temp file left

    loaded = gate.load_baseline(path)
    assert loaded == entries
    result = gate.check(doc, loaded)
    assert result.ok and not result.new and not result.stale and not result.out_of_scope
    assert len(result.known) == len(entries)
    assert len(result.unreviewed) == len(entries)  # nobody has written a reason yet
    text = gate.format_gate(result)
    assert text.splitlines()[-1].startswith("gate passed")
    assert "UNREVIEWED" in text


def test_missing_entry_is_exactly_that_key_new(doc):
    entries = gate.refresh(doc, [])
    dropped = entries.pop(3)
    result = gate.check(doc, entries)
    assert not result.ok
    assert [d.key for d in result.new] == [gate.key_of(dropped)]
    new = result.new[0]
    assert new.count == dropped["count"]
    assert new.example["case_id"] == dropped["example"]
    assert gate.key_of(new.example) == new.key
    assert not result.stale
    text = gate.format_gate(result)
    line = next(l for l in text.splitlines() if l.startswith("NEW "))
    assert gate.key_of(dropped).text() in line and dropped["example"] in line
    assert f"{dropped['count']} case" in line
    assert text.splitlines()[-1].startswith("gate FAILED: 1 new divergence key")


def test_stale_and_out_of_scope(doc):
    entries = gate.refresh(doc, [])
    numpy_nan = entry(adapter="numpy", api="numpy", dtype="float64", reason="fixed long ago")  # numpy conforms
    other_dtype = entry(dtype="float16", reason="float16 was not run")
    other_adapter = entry(adapter="torch", api="binary_cross_entropy_with_logits", reason="torch was not run")
    other_variant = entry(variant="softmax", api="textbook", reason="softmax was not run")
    result = gate.check(doc, entries + [numpy_nan, other_dtype, other_adapter, other_variant])
    assert result.ok
    assert [gate.key_of(e) for e in result.stale] == [gate.key_of(numpy_nan)]
    assert {gate.key_of(e) for e in result.out_of_scope} == {gate.key_of(e) for e in
                                                             (other_dtype, other_adapter, other_variant)}
    assert len(result.known) == len(entries)
    text = gate.format_gate(result)
    assert "no longer occurs: numpy/numpy sigmoid_bce_logits float64 nan (fixed long ago)" in text
    assert "float16" not in text and "torch" not in text


def test_reasons_survive_refresh(doc):
    entries = gate.refresh(doc, [])
    entries[0] = {**entries[0], "reason": "the textbook formula, on purpose", "link": "https://example.org/1"}
    entries[1] = {**entries[1], "reason": "reviewed", "example": None}
    stale = entry(adapter="numpy", api="numpy", reason="fixed")
    outside = entry(adapter="torch", api="bce", dtype="bfloat16", reason="kept as is", link=None,
                    example="abc", count=7)
    again = gate.refresh(doc, entries + [stale, outside])
    by_key = {gate.key_of(e): e for e in again}
    assert by_key[gate.key_of(entries[0])]["reason"] == "the textbook formula, on purpose"
    assert by_key[gate.key_of(entries[0])]["link"] == "https://example.org/1"
    assert by_key[gate.key_of(entries[0])]["example"] == entries[0]["example"]
    assert by_key[gate.key_of(entries[1])]["reason"] == "reviewed"
    assert by_key[gate.key_of(entries[1])]["example"]  # filled in again from the run
    assert gate.key_of(stale) not in by_key  # in scope and gone: dropped
    assert by_key[gate.key_of(outside)] == {**outside}  # out of scope: unchanged
    assert gate.refresh(doc, again) == again  # idempotent
    assert gate.check(doc, again).ok


def test_count_field_of_grouped_divergences(doc):
    d = copy.deepcopy(doc)
    first = d["divergences"][0]
    same = [x for x in d["divergences"] if gate.key_of(x) == gate.key_of(first)]
    d["divergences"] = [x for x in d["divergences"] if gate.key_of(x) != gate.key_of(first)]
    d["divergences"].append({**first, "count": 11, "regime": "x = -810"})
    assert len(same) != 11
    entries = gate.refresh(d, [])
    assert {gate.key_of(e): e["count"] for e in entries}[gate.key_of(first)] == 11
    result = gate.check(d, [e for e in entries if gate.key_of(e) != gate.key_of(first)])
    assert result.new[0].count == 11 and "x = -810" in gate.format_gate(result)


@pytest.mark.parametrize("content, expected", [
    ('{"schema": "xent-baseline/1", "entries": [', "invalid JSON at line 1"),
    ('[]', "a baseline is a JSON object"),
    ({"entries": []}, "field 'schema' must be 'xent-baseline/1'"),
    ({"schema": "xent-baseline/2", "entries": []}, "field 'schema' must be 'xent-baseline/1'"),
    ({"schema": "xent-baseline/1"}, "missing field 'entries'"),
    ({"schema": "xent-baseline/1", "entries": {}}, "'entries' must be a list"),
    ({"schema": "xent-baseline/1", "entries": [], "extra": 1}, "unknown top-level field 'extra'"),
    ({"schema": "xent-baseline/1", "entries": [entry(), "x"]}, "entry 1: must be an object"),
    ({"schema": "xent-baseline/1", "entries": [entry(), {k: v for k, v in entry().items() if k != "api"}]},
     "entry 1: missing field 'api'"),
    ({"schema": "xent-baseline/1", "entries": [{k: v for k, v in entry().items() if k != "reason"}]},
     "entry 0: missing field 'reason'"),
    ({"schema": "xent-baseline/1", "entries": [entry(reason="")]}, "entry 0: field 'reason' must be a non-empty"),
    ({"schema": "xent-baseline/1", "entries": [entry(reason="  ")]}, "entry 0: field 'reason' must be a non-empty"),
    ({"schema": "xent-baseline/1", "entries": [entry(reason=None)]}, "entry 0: field 'reason' must be a non-empty"),
    ({"schema": "xent-baseline/1", "entries": [entry(dtype=32)]}, "entry 0: field 'dtype' must be a non-empty"),
    ({"schema": "xent-baseline/1", "entries": [entry(verdict="NaN")]}, "entry 0: field 'verdict': 'NaN' is not"),
    ({"schema": "xent-baseline/1", "entries": [entry(verdict="conforms")]}, "entry 0: field 'verdict'"),
    ({"schema": "xent-baseline/1", "entries": [entry(count=-1)]}, "entry 0: field 'count' must be an integer"),
    ({"schema": "xent-baseline/1", "entries": [entry(count=1.5)]}, "entry 0: field 'count' must be an integer"),
    ({"schema": "xent-baseline/1", "entries": [entry(link=3)]}, "entry 0: field 'link' must be a non-empty string"),
    ({"schema": "xent-baseline/1", "entries": [entry(resaon="typo")]}, "entry 0: unknown field 'resaon'"),
    ({"schema": "xent-baseline/1", "entries": [entry(), entry(dtype="float64"), entry(reason="again")]},
     "entry 2: duplicate key (naive/textbook sigmoid_bce_logits float32 nan), already entry 0"),
    ('{"schema": "xent-baseline/1", "entries": [{"reason": "a", "reason": "b"}]}', "field 'reason' appears twice"),
])
def test_malformed_baselines(tmp_path, content, expected):
    path = write_json(tmp_path, content)
    with pytest.raises(BaselineError) as e:
        gate.load_baseline(path)
    message = str(e.value)
    assert message.startswith(str(path)) and expected in message, message
    assert "\n" not in message
    assert e.value.__context__ is None or e.value.__suppress_context__  # no chained traceback


def test_missing_and_unreadable_baseline(tmp_path):
    with pytest.raises(BaselineError, match="no such baseline file"):
        gate.load_baseline(tmp_path / "nope.json")
    assert gate.load_baseline(tmp_path / "nope.json", missing_ok=True) == []
    (tmp_path / "bad.json").write_bytes(b"\xff\xfe{")
    with pytest.raises(BaselineError, match="cannot read baseline"):
        gate.load_baseline(tmp_path / "bad.json")


def test_minimal_entry_is_normalised(tmp_path):
    path = write_json(tmp_path, {"schema": "xent-baseline/1", "entries": [entry()]})
    assert gate.load_baseline(path) == [{**entry(), "link": None, "example": None, "count": 0}]


# -- reports -------------------------------------------------------------------------------------

def test_load_report_rejects_non_reports(doc, tmp_path):
    good = write_json(tmp_path, doc, "report.json")
    assert gate.load_report(good)["schema"] == doc["schema"]
    for name, content, expected in [
        ("a.json", {"entries": []}, 'no "schema" field'),
        ("b.json", {"schema": "xent-baseline/1", "entries": []}, "does not start with 'xent-report/'"),
        ("c.json", "[1, 2]", "expected a JSON object"),
        ("d.json", "not json", "invalid JSON"),
    ]:
        with pytest.raises(ReportError) as e:
            gate.load_report(write_json(tmp_path, content, name))
        assert expected in str(e.value) and name in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ReportError, match="cannot read report"):
        gate.load_report(tmp_path / "missing.json")
    with pytest.raises(ReportError, match="not an xent report"):
        gate.check({"schema": "xent-baseline/1", "entries": []}, [])
    with pytest.raises(ReportError, match="not an xent report"):
        gate.diff(doc, {"entries": []})


# -- diffs ---------------------------------------------------------------------------------------

def _cell(doc, adapter, api, dtype):
    return next(c for c in doc["cells"] if (c["adapter"], c["api"], c["dtype"]) == (adapter, api, dtype))


def test_diff_of_a_report_with_itself_is_empty(doc):
    result = gate.diff(doc, copy.deepcopy(doc))
    assert not result.changed and not result.only_old and not result.only_new
    text = gate.format_diff(result)
    for section in ("appeared (0)", "fixed (0)", "worse (0)", "better (0)", "versions (0)"):
        assert section in text


def test_diff(doc):
    new = copy.deepcopy(doc)
    # fixed: every float32 textbook overflow is gone, and the cell's share goes up
    gone = gate.Key("naive", "textbook", "sigmoid_bce_logits", "float32", "overflow")
    assert gone in keys(doc)
    new["divergences"] = [d for d in new["divergences"] if gate.key_of(d) != gone]
    tb = _cell(new, "naive", "textbook", "float32")
    tb["verdicts"]["conforms"] += tb["verdicts"].pop("overflow")
    tb["conforming"] += 1
    # appeared: numpy float64 now raises on one case, its worst verdict and share get worse
    example = copy.deepcopy(next(d for d in doc["divergences"] if d["dtype"] == "float64"))
    example.update(adapter="numpy", api="numpy", verdict="raised", message="ValueError: boom", got=None, count=1)
    new["divergences"].append(example)
    np64 = _cell(new, "numpy", "numpy", "float64")
    np64["verdicts"] = {"conforms": np64["cases"] - 1, "raised": 1}
    np64["conforming"] -= 1
    # worse by ulps only: no_log1p float32's max ulp triples (verdict counts unchanged)
    nl = _cell(new, "naive", "no_log1p", "float32")
    nl["max_ulp"] = 3 * nl["max_ulp"]
    # a cell only the old report ran, with its divergences: not compared, not "fixed"
    dropped_cell = ("naive", "seed_unstable", "sigmoid_bce_logits", "float64")
    new["cells"] = [c for c in new["cells"] if (c["adapter"], c["api"], c["variant"], c["dtype"]) != dropped_cell]
    new["divergences"] = [d for d in new["divergences"] if gate.key_of(d).cell != dropped_cell]
    # versions
    next(a for a in new["environment"]["adapters"] if a["name"] == "numpy")["version"] = "9.9.9"

    result = gate.diff(doc, new)
    assert [k.key for k in result.appeared] == [gate.Key("numpy", "numpy", "sigmoid_bce_logits", "float64", "raised")]
    assert result.appeared[0].count == 1
    assert [k.key for k in result.fixed] == [gone]
    assert result.fixed[0].count == sum(d.get("count", 1) for d in doc["divergences"] if gate.key_of(d) == gone)
    worse = {c.cell: c.reasons for c in result.worse}
    better = {c.cell: c.reasons for c in result.better}
    np_cell = ("numpy", "numpy", "sigmoid_bce_logits", "float64")
    nl_cell = ("naive", "no_log1p", "sigmoid_bce_logits", "float32")
    tb_cell = ("naive", "textbook", "sigmoid_bce_logits", "float32")
    assert set(worse) == {np_cell, nl_cell}
    assert worse[np_cell][0] == "worst verdict conforms -> raised"
    n = np64["cases"]
    assert f"conforming {n}/{n} (100%) -> {n - 1}/{n} ({100 * (n - 1) / n:.3g}%)" in worse[np_cell]
    assert len(worse[nl_cell]) == 1 and worse[nl_cell][0].startswith("max ulp")
    assert set(better) == {tb_cell}
    old_tb = _cell(doc, "naive", "textbook", "float32")
    share = f"conforming {old_tb['conforming']}/{old_tb['cases']} ({100 * old_tb['conforming'] / old_tb['cases']:.3g}%) -> " \
            f"{tb['conforming']}/{tb['cases']} ({100 * tb['conforming'] / tb['cases']:.3g}%)"
    assert better[tb_cell] == [share]  # the worst verdict stays nan
    assert result.versions == [("numpy", doc["environment"]["adapters"][0]["version"], "9.9.9")]
    assert result.only_old == [dropped_cell] and not result.only_new

    text = gate.format_diff(result)
    lines = text.splitlines()
    order = [next(i for i, l in enumerate(lines) if l.startswith(s)) for s in
             ("appeared", "fixed", "worse", "better", "versions", "not compared")]
    assert order == sorted(order)
    assert "  numpy/numpy sigmoid_bce_logits float64 raised: 1 case, e.g. case" in text
    assert "ValueError: boom" in text
    assert f"  {gone.text()}: was {result.fixed[0].count} case" in text
    assert f"  naive/textbook sigmoid_bce_logits float32: {share}" in text
    assert "  numpy: " in text and "-> 9.9.9" in text
    assert "only in old: naive/seed_unstable sigmoid_bce_logits float64" in text

    # the reverse direction swaps appeared/fixed and worse/better; the dropped cell is now new-only
    back = gate.diff(new, doc)
    assert [k.key for k in back.appeared] == [gone]
    assert [k.key for k in back.fixed] == [gate.Key("numpy", "numpy", "sigmoid_bce_logits", "float64", "raised")]
    assert {c.cell for c in back.worse} == {tb_cell} and {c.cell for c in back.better} == {np_cell, nl_cell}
    assert back.only_new == [dropped_cell] and not back.only_old


def test_diff_small_ulp_changes_are_not_worse(doc):
    new = copy.deepcopy(doc)
    np32 = _cell(new, "numpy", "numpy", "float32")
    assert _cell(doc, "numpy", "numpy", "float32")["max_ulp"] == 0
    np32["max_ulp"] = 2  # 0 -> 2 ulp: within 2x of 1 ulp
    assert not gate.diff(doc, new).worse
    np32["max_ulp"] = 3
    assert [c.cell for c in gate.diff(doc, new).worse] == [("numpy", "numpy", "sigmoid_bce_logits", "float32")]
