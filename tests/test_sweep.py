"""xent sweep: every representable input of an elementwise variant, judged element by element.

The expectations on the control adapter are derived from the formulas and the float16 format,
not read back from a sweep: float16 arithmetic rounds 1 + e to 1 once e < 2^-11, and exp(t)
overflows to inf once t > ln(65520).
"""
import json
import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import adapters
import oracle
from adapters.base import Output
from cases import FORMATS, Case
from conformance import budgets
from conformance import sweep as S
from conformance import sweep_judge as J
from conformance import sweep_report as R
from conformance.cli import main
from conformance.runner import histogram_bin
from conformance.verdict import RANK, SEVERITY, classify

F16 = FORMATS["float16"]


def all_values(f) -> tuple[np.ndarray, np.ndarray]:
    """(bit patterns, values as float64) of every pattern of a 16-bit format."""
    bits = np.arange(1 << f.bits, dtype=np.uint32).astype(f.uint_dtype)
    with np.errstate(invalid="ignore"):
        return bits, f.from_bits(bits).astype(np.float64)


def run_sweep(variant="sigmoid_bce_logits", adapter="naive", dtype="float16", range_text=None, labels=None,
              options=None, api=None, chunk=None, jobs=1, worst=10):
    plan = S.make_plan(variant, adapter, dtype, range_text, labels, options, api, chunk, worst, None, jobs, None,
                       "unused")
    result = S.sweep(plan)
    doc, _ = R.build(result, [])
    return plan, result, doc


def result_of(doc, api, label):
    return next(r for r in doc["results"] if r["api"] == api and r["label"]["decimal"] == label)


# -- the set of inputs ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("text", ["-1:1", "0:0", "-0:-0", "-inf:inf", "0.1:0.1", "1e-9:1e-8", "-0x1p-24:0x1p-24",
                                  "65504:inf", "-inf:-3.5", "2.5:1e5", "-1e-30:5", "0.099:0.101", "-inf:-inf"])
def test_range_is_exactly_the_values_in_it(dtype, text):
    f = FORMATS[dtype]
    bits, values = all_values(f)
    lo, hi = S.parse_range(text)
    want = set(bits[(values >= float(lo)) & (values <= float(hi))].tolist())  # NaN compares false
    got = set()
    for a, b in S.intervals(f, (lo, hi)):
        got.update(range(a, b))
    assert got == want
    assert len(S.intervals(f, (lo, hi))) <= 2


def test_no_range_is_every_pattern_nans_included():
    assert S.intervals(F16, None) == [(0, 1 << 16)]
    assert S.nan_count([(0, 1 << 16)], F16) == 2 * (2 ** 10 - 1)


def test_range_bounds_are_exact():
    # 0.1 is not a float16: the range [0.1, 0.1] holds nothing, [0.0999, 0.1] the float16 below 0.1
    assert S.intervals(F16, S.parse_range("0.1:0.1")) == []
    (a, b), = S.intervals(F16, S.parse_range("0.0999755859375:0.0999755859375"))  # exactly float16(0.1)
    assert b - a == 1 and F16.from_bits(np.array([a], dtype=np.uint16))[0] == np.float16(0.1)
    lo, hi = S.parse_range("-0x1.8p+1:inf")
    assert lo == -3 and hi == math.inf


@pytest.mark.parametrize("text", ["1:2:3", "a:b", ":", "1:", "nan:1", "2:1", "inf:-inf", "0x1p:2"])
def test_bad_ranges_are_refused(text):
    with pytest.raises(S.SweepError):
        S.parse_range(text)


# -- bad arguments: one line, status 2 ------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["nonsense", "--adapter", "naive", "--dtype", "float16"],
    ["softmax_ce_sparse", "--adapter", "naive", "--dtype", "float16"],
    ["sigmoid_bce_logits", "--adapter", "nope", "--dtype", "float16"],
    ["sigmoid_bce_logits", "--adapter", "naive", "--dtype", "float8"],
    ["sigmoid_bce_logits", "--adapter", "naive", "--dtype", "float16", "--range", "1:2:3"],
    ["sigmoid_bce_logits", "--adapter", "naive", "--dtype", "float16", "--range", "5:-5"],
    ["sigmoid_bce_logits", "--adapter", "naive", "--dtype", "float16", "--range", "0.1:0.1"],
    ["sigmoid_bce_logits", "--adapter", "naive", "--dtype", "float16", "--label", "2"],
    ["sigmoid_bce_logits", "--adapter", "naive", "--dtype", "float16", "--label", "-1"],
    ["sigmoid_bce_logits", "--adapter", "naive", "--dtype", "float16", "--label", "0.1"],
    ["sigmoid_bce_logits", "--adapter", "naive", "--dtype", "float16", "--label", "nan"],
    ["sigmoid_bce_logits", "--adapter", "naive", "--dtype", "float16", "--option", "reduction=mean"],
    ["sigmoid_bce_logits", "--adapter", "naive", "--dtype", "float16", "--option", "bogus=1"],
    ["sigmoid_bce_logits", "--adapter", "naive", "--dtype", "float16", "--option", "label_smoothing=0.5"],
    ["sigmoid_bce_logits", "--adapter", "naive", "--dtype", "float16", "--api", "nope"],
    ["sigmoid_bce_logits", "--adapter", "naive", "--dtype", "float16", "--chunk", "0"],
    ["sigmoid_bce_logits", "--adapter", "naive", "--dtype", "float16", "--jobs", "x"],
    ["sigmoid_bce_logits", "--adapter", "not.a.module:thing", "--dtype", "float16"],
    ["sigmoid_bce_logits", "--dtype", "float16"],
])
def test_bad_arguments_give_one_line_and_status_2(args, capsys, tmp_path):
    assert main(["sweep", *args, "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xent: error: ") and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


# -- the vectorised judge is the per-case judge ----------------------------------------------------

def _sample(f, n, seed, probs=False):
    rng = np.random.default_rng(seed)
    inf = J._inf_mag(f)
    one = int(f.to_bits(np.array([1.0], dtype=f.np_dtype))[0])
    top = one + 1 if probs else 1 << f.bits
    bits = rng.integers(0, top, size=n, dtype=np.uint64).astype(f.uint_dtype)
    special = [0, 1, one, one - 1, 1 << (f.bits - 1)] if probs else \
        [0, 1, inf - 1, inf, inf + 1, 1 << (f.bits - 1), (1 << (f.bits - 1)) | inf]
    return np.concatenate((np.array(special, dtype=f.uint_dtype), bits))


JUDGED = {"sigmoid_bce_logits": ["naive", "numpy", "tests.sweep_adapters:Float32Out", "torch"],
          "bce_probs": ["numpy", "torch"]}  # torch's BCELoss has a contract (the log clamp at -100)


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning")  # bfloat16 NaN to float64
@pytest.mark.parametrize("variant,dtype,n", [("sigmoid_bce_logits", "float16", 300),
                                             ("sigmoid_bce_logits", "bfloat16", 300),
                                             ("sigmoid_bce_logits", "float32", 120),
                                             ("bce_probs", "float16", 200)])
def test_vectorised_verdicts_equal_the_per_case_judge(variant, dtype, n):
    f = FORMATS[dtype]
    main_input = S.MAIN_INPUT[variant]
    bits = _sample(f, n, seed=len(dtype), probs=variant == "bce_probs")
    x = f.from_bits(bits)
    keys = S.total_key(bits, f)
    nan_in = S._f64(x) != S._f64(x)
    piece = J.Piece.of(keys, nan_in, J.plot_bins(keys, nan_in, (int(keys.min()), int(keys.max()))))
    options = {"reduction": "none"}
    compared = 0
    for z in (0.0, 1.0):
        truths, _ = S.oracle_truths(variant, dtype, x, z, options)
        zf = np.full(x.shape, z, dtype=np.float64).astype(f.np_dtype)
        case = Case(variant, dtype, {main_input: x, "labels": zf}, options)
        singles = [Case(variant, dtype, {main_input: x[i:i + 1], "labels": zf[i:i + 1]}, options)
                   for i in range(x.size)]
        per_case = [oracle.evaluate(c, grads=True) for c in singles]
        for name in JUDGED[variant]:
            a = adapters.register(name) if ":" in name else adapters.get(name)
            if not a.available()[0]:
                continue
            for api in a.apis(case):
                declared = a.contract(case, api)
                out = a.evaluate(case, api)
                codes, ulps, hists = {}, {}, {}
                for qname, got in [("value", out.value)] + [(f"grad:{k}", g) for k, g in out.grads.items()]:
                    ct = None if declared is None else S._contract_fn(variant, dtype, main_input, x, zf, options,
                                                                      declared.params, qname)
                    q, c, u = J.judge(case, qname, truths[qname], got, piece, 5, ct, ulps=True)
                    codes[qname], ulps[qname], hists[qname] = c, u, q.hist
                want_hist = {qn: np.zeros(J.HIST_BINS, dtype=np.int64) for qn in codes}
                for i, c1 in enumerate(singles):
                    o1 = Output(np.asarray(out.value)[i:i + 1], {k: np.asarray(g)[i:i + 1] for k, g in out.grads.items()})
                    contract = None
                    if declared is not None:
                        contract = oracle.evaluate(c1, grads=True, contract=dict(declared.params))
                        contract = None if contract.status == "invalid" else contract
                    cv = classify(c1, per_case[i], o1, contract=contract)
                    where = f"{name} {api} {dtype} z={z} x={float(x[i])!r} ({int(bits[i]):#x})"
                    for fd in cv.findings:
                        assert SEVERITY[codes[fd.quantity][i]] == fd.verdict, (where, fd)
                        u = ulps[fd.quantity][i]
                        if fd.ulp is None:
                            assert not np.isfinite(u) or fd.verdict in ("dtype", "shape") or u == 0, (where, fd, u)
                        else:
                            assert u == fd.ulp, (where, fd, u)
                        numeric = fd.ulp is not None and fd.verdict not in (
                            "crash", "timeout", "raised", "shape", "nan", "accepted-invalid", "overflow")
                        if numeric:
                            want_hist[fd.quantity][histogram_bin(fd.ulp)] += 1
                        compared += 1
                    assert SEVERITY[min(codes[q][i] for q in codes)] == cv.verdict, where
                for qn in codes:
                    assert np.array_equal(hists[qn], want_hist[qn]), (name, api, qn)
    assert compared > 1000


# -- the control's flaws, from the formulas ------------------------------------------------------

def test_naive_float16_shows_its_textbook_flaws():
    plan, result, doc = run_sweep(range_text="-20:20")
    bits, values = all_values(F16)
    x = values[(values >= -20) & (values <= 20)]

    def count(pred):
        return int(np.sum(pred(x)))

    # seed_unstable, x - x z + log(1 + exp(-x)): exp(-x) is inf in float16 once -x > ln(65520), so the loss
    # is inf (x finite, z in {0, 1}) where the truth is finite: overflow, for both labels
    big = lambda v: -v > math.log(65520)
    for z in ("0", "1"):
        q = result_of(doc, "seed_unstable", z)["quantities"]["value"]
        assert q["verdicts"].get("overflow", 0) == count(big)
        lo, hi = q["spans"]["overflow"]
        assert float(lo["decimal"]) == -20 and -11.2 < float(hi["decimal"]) < -11.0
    # no_log1p, max(x,0) - x z + log(1 + exp(-|x|)): 1 + e rounds to 1 once e < 2^-11, so with z = 1 and
    # x > 11 ln 2 the loss is 0 where the truth, about exp(-x), is thousands of ulps above 0 up to x = 12
    q = result_of(doc, "no_log1p", "1")["quantities"]["value"]
    assert q["max_ulp"] >= 2 ** 11
    lo, hi = q["spans"]["underflow"]
    assert float(lo["decimal"]) <= 11 * math.log(2) + 0.01 and float(hi["decimal"]) >= 12
    # ... and by symmetry with z = 0 for x < -11 ln 2 (the loss is log(1 + exp(x)) there)
    q0 = result_of(doc, "no_log1p", "0")["quantities"]["value"]
    lo0, hi0 = q0["spans"]["underflow"]
    assert float(hi0["decimal"]) >= -11 * math.log(2) - 0.01 and float(lo0["decimal"]) <= -12
    # textbook with z = 0: sigmoid rounds to 1 once exp(-x) < 2^-11, log(1 - 1) = -inf: inf for x > 11 ln 2
    sigmoid_is_1 = lambda v: v > 11 * math.log(2)
    q = result_of(doc, "textbook", "0")["quantities"]["value"]
    assert q["verdicts"].get("overflow", 0) == count(sigmoid_is_1)
    # ... and with z = 1 it is 1 * -log(1) + 0 * inf = NaN there
    q = result_of(doc, "textbook", "1")["quantities"]["value"]
    assert q["verdicts"].get("nan", 0) == count(sigmoid_is_1)
    # the worst inputs are reproducible cases
    assert doc["worst_cases"] and all(len(c) == 16 for c in doc["worst_cases"])


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_numpy_reference_conforms_on_every_input(dtype):
    plan, result, doc = run_sweep(adapter="numpy", dtype=dtype)
    nans = 2 * (2 ** (FORMATS[dtype].precision - 1) - 1)  # every exponent bit set, a non-zero fraction
    assert doc["settings"]["patterns"] == 1 << 16 and doc["settings"]["nan_patterns"] == nans
    for r in doc["results"]:
        assert r["inputs"] == 1 << 16
        assert r["verdicts"] == {"conforms": 1 << 16}, r["verdicts"]
        for qname, q in r["quantities"].items():
            assert q["verdicts"] == {"conforms": 1 << 16}
            base = budgets.base_for("sigmoid_bce_logits", dtype, qname).none
            assert q["max_ulp"] is not None and q["max_ulp"] <= base
            assert sum(q["error_bits_histogram"]) + q["no_number"] == 1 << 16
    assert not doc["failed_chunks"]


# -- the command: files, replay, determinism ---------------------------------------------------------

def test_cli_writes_the_report_and_the_worst_cases_replay(tmp_path, capsys):
    out = tmp_path / "sw"
    assert main(["sweep", "sigmoid_bce_logits", "--adapter", "naive", "--dtype", "bfloat16", "--range", "-100:100",
                 "--label", "1", "--jobs", "1", "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "seed_unstable" in printed and "sweep.json" in printed
    doc = json.loads((out / "sweep.json").read_text())
    assert doc["schema"] == S.SCHEMA and doc["settings"]["labels"] == [{"hex": "0x1p+0", "decimal": "1"}]
    assert doc["settings"]["adapter_version"] == np.__version__
    for r in doc["results"]:
        for q in r["quantities"].values():
            assert len(q["error_bits_histogram"]) == 66 and sum(q["error_bits_histogram"]) + q["no_number"] \
                + 0 == q["count"]
    summary = (out / "summary.md").read_text()
    assert "## Findings" in summary and "seed_unstable" in summary
    root = ET.parse(out / "error.svg").getroot()
    assert root.tag.endswith("svg") and (out / "error.svg").stat().st_size < 400_000
    files = sorted((out / "worst").glob("*.json"))
    assert {p.stem for p in files} == set(doc["worst_cases"])
    # seed_unstable overflows for x < -ln(65520) whatever bfloat16 does: its worst case replays as such
    r = result_of(doc, "seed_unstable", "1")
    entry = next(e for e in r["quantities"]["value"]["worst"] if e["verdict"] == "overflow")
    path = out / "worst" / f"{entry['case_id']}.json"
    case = Case.from_json(path.read_text())
    assert case.dtype == "bfloat16" and case["logits"].shape == (1,)
    assert float(case["logits"][0]) == float(entry["input"]["decimal"])
    assert main(["replay", str(path), "--adapters", "naive", "--json"]) == 0
    rows = {row["api"]: row for row in json.loads(capsys.readouterr().out)["rows"]}
    assert RANK[rows["seed_unstable"]["verdict"]] <= RANK["overflow"]


def test_jobs_2_gives_the_result_of_jobs_1():
    docs = []
    for jobs in (1, 2):
        plan, result, doc = run_sweep(range_text="-30:30", chunk=2048, jobs=jobs)
        docs.append((doc["results"], doc["failed_chunks"], doc["worst_cases"], R.svg(result)))
    assert docs[0] == docs[1]


def test_a_raising_adapter_costs_only_its_elements():
    plan, result, doc = run_sweep(adapter="tests.sweep_adapters:RaiseOnHuge", range_text="-2000:2000", chunk=1024)
    bits, values = all_values(F16)
    x = values[(values >= -2000) & (values <= 2000)]
    huge = int(np.sum(np.abs(x) > 1000))
    for r in doc["results"]:
        assert r["verdicts"] == {"raised": huge, "conforms": x.size - huge}
        assert r["raised"] == huge and r["adapter_calls"] < 4 * x.size
        assert "refuses" in next(iter(r["exceptions"]))
        lo, hi = r["spans"]["raised"]
        assert lo["decimal"] == "-2000" and hi["decimal"] == "2000"


def test_a_nan_input_that_raises_conforms():
    # the loss is undefined at a NaN logit: rejecting it conforms, as in the per-case judge
    plan, result, doc = run_sweep(adapter="tests.sweep_adapters:RaiseOnHuge", chunk=4096)
    for r in doc["results"]:
        assert r["nan_inputs"] == {"conforms": 2046}


def test_a_worker_that_dies_costs_its_chunk_only(tmp_path, capsys):
    out = tmp_path / "sw"
    code = main(["sweep", "sigmoid_bce_logits", "--adapter", "tests.sweep_adapters:AbortOnHuge", "--dtype", "float16",
                 "--range", "5000:20000", "--chunk", "256", "--jobs", "2", "--label", "0", "--out", str(out),
                 "--quiet"])
    assert code == 1
    assert "chunk(s) failed" in capsys.readouterr().err
    doc = json.loads((out / "sweep.json").read_text())
    bits, values = all_values(F16)
    inside = bits[(values >= 5000) & (values <= 20000)]
    chunks = [inside[i:i + 256] for i in range(0, inside.size, 256)]
    with np.errstate(invalid="ignore"):
        dying = [i for i, c in enumerate(chunks) if np.any(F16.from_bits(c).astype(np.float64) >= 1e4)]
    assert [d["chunk"] for d in doc["failed_chunks"]] == dying
    assert all("SIGABRT" in d["reason"] for d in doc["failed_chunks"])
    r = doc["results"][0]
    assert r["verdicts"] == {"conforms": sum(len(chunks[i]) for i in range(len(chunks)) if i not in dying)}
    assert doc["missing_inputs"] == sum(len(chunks[i]) for i in dying)
    assert "Missing ranges" in (out / "summary.md").read_text()


def test_a_dask_scheduler_gives_the_result_of_jobs_1():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cl:
        plan = S.make_plan("sigmoid_bce_logits", "naive", "float16", "-30:30", None, None, None, 2048, 10, None, 1,
                           cl.scheduler_address, "unused")
        result = S.sweep(plan)
        doc, _ = R.build(result, [])
    _, _, local = run_sweep(range_text="-30:30", chunk=2048)
    assert doc["results"] == local["results"] and doc["settings"]["scheduler"] == cl.scheduler_address

