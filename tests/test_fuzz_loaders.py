"""Every loader of user input, fuzzed: nothing but the documented error escapes, nothing hangs.

The loaders are ``Case.from_dict`` / ``Case.from_json``, ``conformance.store.read_case_file`` and
``find`` (``xent replay``), ``cases.corpus.load_corpus``, ``gate.load_baseline`` and
``gate.load_report`` (``xent diff``, ``xent baseline``), and what the gate does with a report it
accepted (``diff``, ``refresh``, ``check``). Each is fed

- structured input: a valid case, baseline or report with 1 to 3 mutations (a value replaced by any
  JSON value, including huge integers, NaN, unicode with lone surrogates and deep nesting; a key
  deleted or added; a value wrapped in a list), written as JSON (and as JSON lines);
- raw bytes: arbitrary, and a valid document's JSON with bytes flipped, inserted or cut.

Only ``CaseError``, ``BaselineError``, ``ReportError`` and ``NotFound`` may escape a library function,
each with a one-line message; through the CLI every failure is exit status 2 and one stderr line
starting with ``xent: error:``. Each example has a hypothesis deadline, and an alarm turns a real hang
(which a deadline cannot interrupt) into a failure. Examples per test: 5 x the profile's
``max_examples`` (tests/conftest.py: 100 on "fast", 2500 on "thorough").
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from cases import Case, CaseError
from cases.corpus import load_corpus
from cases.model import show
from conformance import gate
from conformance.cli import main
from conformance.gate import BaselineError, ReportError
from conformance.store import CaseStore, NotFound, find, read_case_file

ROOT = Path(__file__).resolve().parents[1]
AUDIT = ROOT / "reports" / "audit" / "report.json"
ALLOWED = (CaseError, BaselineError, ReportError, NotFound)
HANG_S = 20  # an example this slow is a hang, whatever the machine

FUZZ = settings(max_examples=5 * settings.default.max_examples, deadline=timedelta(seconds=5),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


class Hang(Exception):
    pass


@contextlib.contextmanager
def no_hang(seconds: float = HANG_S):
    def alarm(*_):
        raise Hang(f"no answer within {seconds} s")
    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def check_error(e: BaseException) -> None:
    message = str(e)
    assert message and "\n" not in message and "\r" not in message and message.isprintable(), repr(message)
    assert len(message) <= 1200, len(message)


def call(fn, *args, **kwargs):
    """``fn(*args)``: its result, or the documented error it raised (checked to be one clean line)."""
    with no_hang():
        try:
            return fn(*args, **kwargs)
        except ALLOWED as e:
            check_error(e)
            return e


def cli(argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with no_hang(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as e:  # argparse's --help; never an error
            code = e.code
    return code, out.getvalue(), err.getvalue()


def assert_usage_error(code, err) -> None:
    assert code == 2, (code, err)
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("xent: error: "), repr(err)
    assert lines[0].isprintable() and "Traceback" not in err


# -- seeds: valid documents ------------------------------------------------------------------------

def _seed_cases() -> list[dict]:
    corpus = load_corpus()
    picked = {c.variant: c for c in corpus}  # one per variant
    extra = Case("softmax_ce_sparse", "float16", {"logits": np.zeros((2, 3), np.float16),
                                                  "labels": np.array([0, -100])},
                 {"ignore_index": -100, "reduction": "mean", "label_smoothing": 0.25}, note="x")
    return [c.to_dict() for c in [*picked.values(), extra]]


def _seed_baseline() -> dict:
    return {"schema": "xent-baseline/1", "entries": [
        {"adapter": "naive", "api": "textbook", "variant": "sigmoid_bce_logits", "dtype": "float32",
         "verdict": "nan", "reason": "known"},
        {"adapter": "torch", "api": "bce", "variant": "bce_probs", "dtype": "float16", "verdict": "overflow",
         "reason": "UNREVIEWED: x", "link": "https://example.invalid/1", "example": "0123456789abcdef",
         "count": 3}]}


def _seed_report() -> dict:
    """The committed audit, cut to a few divergences and cells (every field kept)."""
    doc = json.loads(AUDIT.read_text(encoding="utf-8"))
    doc["divergences"] = doc["divergences"][:3]
    doc["cells"] = doc["cells"][:4]
    doc["oracle"] = doc["oracle"][:2]
    doc["budgets"]["bases"] = doc["budgets"]["bases"][:2]
    doc["environment"]["adapters"] = doc["environment"]["adapters"][:3]
    return doc


CASES = _seed_cases()
BASELINE = _seed_baseline()
REPORT = _seed_report()


# -- strategies --------------------------------------------------------------------------------------

NASTY_TEXT = ['"""', "'''", "\\", "\n", "\r\n", "\x00", "\ud800", "\u2028", "é数", "{}", "%s", "",
              " ", "0x1p+0", "nan:0x7fc00001", "inf", "-0x1.8p+1", "1e999", "x" * 300]
scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(), st.integers(min_value=-2**70, max_value=2**70), st.sampled_from([2**63, -2**63 - 1, 10**400]),
    st.floats(), st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 5e-324]),
    st.text(st.characters(blacklist_categories=()), max_size=12), st.sampled_from(NASTY_TEXT),
)
json_values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=4)
                           | st.dictionaries(st.text(max_size=6), kids, max_size=4), max_leaves=10)


def _paths(doc, max_depth: int = 8):
    """Every path (tuple of keys and indices) into ``doc`` down to ``max_depth`` (no recursion: a
    mutation may have nested a value thousands deep)."""
    stack = [((), doc)]
    while stack:
        prefix, value = stack.pop()
        yield prefix
        if len(prefix) >= max_depth:
            continue
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        stack.extend((prefix + (k,), v) for k, v in items)


def _nested(value, depth: int):
    for _ in range(depth):
        value = [value]
    return value


@st.composite
def mutated(draw, seeds):
    """A valid document from ``seeds`` with 1 to 3 mutations."""
    doc = copy.deepcopy(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, 3))):
        paths = sorted(_paths(doc), key=repr)  # a stable order, for shrinking
        path = draw(st.sampled_from(paths))
        op = draw(st.sampled_from(["replace", "replace", "delete", "add", "wrap", "nest", "string"]))
        if not path:
            if op in ("replace", "string"):
                doc = draw(json_values)
            continue
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        key = path[-1]
        if op == "replace":
            parent[key] = draw(json_values)
        elif op == "delete":
            del parent[key]
        elif op == "add" and isinstance(parent, dict):
            parent[draw(st.one_of(st.text(max_size=8), st.sampled_from(NASTY_TEXT)))] = draw(json_values)
        elif op == "add":
            parent.insert(key, draw(json_values))
        elif op == "wrap":
            parent[key] = [parent[key]]
        elif op == "nest":
            parent[key] = _nested(parent[key], draw(st.sampled_from([40, 900, 5000])))
        else:  # the value as a string, or a number as a huge one
            parent[key] = draw(st.sampled_from([show(parent[key])[:50], 10**30, -1, 1.5, math.nan]))
    return doc


def _dumps(doc) -> str:
    try:
        return json.dumps(doc, ensure_ascii=False)
    except (RecursionError, ValueError):  # nested past json.dumps' own limit
        return "[" * 5000


@st.composite
def byte_mutated(draw, text: str):
    """A valid document's JSON with a few bytes flipped, inserted or cut."""
    data = bytearray(text.encode("utf-8"))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, max(len(data) - 1, 0)))
        op = draw(st.sampled_from(["flip", "insert", "cut", "truncate"]))
        if op == "flip" and data:
            data[i] = draw(st.integers(0, 255))
        elif op == "insert":
            data[i:i] = draw(st.sampled_from([b'"', b"\\", b"{", b"[", b"]", b",", b"\x00", b"\xff", b"1" * 5000,
                                              b"NaN", b"-Infinity", b"\n"]))
        elif op == "cut":
            del data[i:i + draw(st.integers(1, 20))]
        else:
            del data[i:]
    return bytes(data)


def raw_bytes(texts):
    return st.one_of(st.binary(max_size=600), st.sampled_from(texts).flatmap(byte_mutated))


CASE_TEXTS = [json.dumps(c) for c in CASES] + ["\n".join(json.dumps(c) for c in CASES)]
BASELINE_TEXT = json.dumps(BASELINE, indent=1)
REPORT_TEXT = json.dumps(REPORT)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def _write(folder: Path, name: str, content) -> Path:
    p = folder / name
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_text(content, encoding="utf-8", errors="surrogatepass")  # a lone surrogate: invalid UTF-8
    return p


# -- cases -------------------------------------------------------------------------------------------

@FUZZ
@given(mutated(CASES))
def test_case_from_dict_raises_only_case_error(d):
    case = call(Case.from_dict, d)
    if isinstance(case, Case):  # accepted: it must serialise and read back as itself
        assert Case.from_dict(json.loads(case.to_json())) == case


@FUZZ
@given(st.lists(mutated(CASES), min_size=1, max_size=3), st.booleans())
def test_case_files_of_mutated_cases(folder, docs, as_lines):
    text = "\n".join(_dumps(d) for d in docs) if as_lines else _dumps(docs[0] if len(docs) == 1 else docs)
    path = _write(folder, "case.json", text)
    result = call(read_case_file, path)
    assert isinstance(result, (list, CaseError))
    if isinstance(result, CaseError):
        assert str(path) in str(result)
    call(load_corpus, path)


@FUZZ
@given(raw_bytes(CASE_TEXTS))
def test_case_files_of_raw_bytes(folder, data):
    path = _write(folder, "raw.json", data)
    assert isinstance(call(read_case_file, path), (list, CaseError))
    call(load_corpus, path)
    call(Case.from_json, data)


@FUZZ
@given(st.one_of(st.text(st.characters(blacklist_categories=("Cs",))), st.sampled_from(NASTY_TEXT),
                 st.text("0123456789abcdef", min_size=6, max_size=16)))
def test_find_raises_only_not_found_or_case_error(folder, ref):
    store = CaseStore(folder / "store")
    result = call(find, ref, store, folder / "no-reports")
    assert isinstance(result, (Case, NotFound, CaseError))


@FUZZ
@given(st.one_of(mutated([REPORT]).map(_dumps), raw_bytes([REPORT_TEXT])))
def test_find_skips_reports_it_cannot_read(folder, content):
    reports = folder / "reports" / "r"
    reports.mkdir(parents=True, exist_ok=True)
    _write(reports, "report.json", content)
    prefix = REPORT["divergences"][0]["case_id"][:8]
    result = call(find, prefix, CaseStore(folder / "store"), folder / "reports")
    assert isinstance(result, (Case, NotFound))


# -- baselines and reports -----------------------------------------------------------------------------

@FUZZ
@given(st.one_of(mutated([BASELINE]).map(_dumps), raw_bytes([BASELINE_TEXT])))
def test_load_baseline_raises_only_baseline_error(folder, content):
    path = _write(folder, "baseline.json", content)
    entries = call(gate.load_baseline, path)
    if isinstance(entries, list):  # accepted: writing it back and reading it again gives the same
        gate.write_baseline(folder / "again.json", entries)
        assert gate.load_baseline(folder / "again.json") == entries
    else:
        assert isinstance(entries, BaselineError)


@FUZZ
@given(st.one_of(mutated([REPORT]).map(_dumps), raw_bytes([REPORT_TEXT])))
def test_load_report_and_what_the_gate_does_with_it(folder, content):
    path = _write(folder, "report.json", content)
    doc = call(gate.load_report, path)
    if isinstance(doc, ReportError):
        return
    assert isinstance(doc, dict)
    result = call(gate.diff, REPORT, doc)
    if isinstance(result, gate.DiffResult):
        gate.format_diff(result)
    result = call(gate.diff, doc, doc)
    entries = call(gate.refresh, doc, gate.validate_entries(BASELINE["entries"]))
    if isinstance(entries, list):
        gate.write_baseline(folder / "refreshed.json", entries)
    result = call(gate.check, doc, BASELINE["entries"])
    if isinstance(result, gate.GateResult):
        gate.format_gate(result)


# -- through the command line --------------------------------------------------------------------------

@FUZZ
@given(st.one_of(raw_bytes(CASE_TEXTS), mutated(CASES).map(_dumps)))
def test_cli_replay_of_a_bad_case_file_is_one_line_and_exit_2(folder, content):
    path = _write(folder, "replay.json", content)
    try:
        read_case_file(path)
        return  # a valid case: replay would run it on every adapter (not this test's business)
    except CaseError:
        pass
    code, _, err = cli(["replay", str(path), "--db", str(folder / "store"), "--reports", str(folder / "none")])
    assert_usage_error(code, err)


@FUZZ
@given(st.one_of(raw_bytes([REPORT_TEXT]), mutated([REPORT]).map(_dumps)), st.booleans())
def test_cli_diff_and_baseline_of_any_report(folder, content, old_side):
    path = _write(folder, "fuzzed-report.json", content)
    good = _write(folder, "good-report.json", REPORT_TEXT)
    code, out, err = cli(["diff", str(path), str(good)] if old_side else ["diff", str(good), str(path)])
    if code != 0:
        assert_usage_error(code, err)
    else:
        assert "appeared (" in out and not err
    code, out, err = cli(["baseline", str(path), "--out", str(folder / "cli-baseline.json")])
    if code != 0:
        assert_usage_error(code, err)


@FUZZ
@given(st.one_of(raw_bytes([BASELINE_TEXT]), mutated([BASELINE]).map(_dumps)))
def test_cli_baseline_refreshing_any_baseline_file(folder, content):
    good = _write(folder, "good-report.json", REPORT_TEXT)
    path = _write(folder, "fuzzed-baseline.json", content)
    code, out, err = cli(["baseline", str(good), "--out", str(path)])
    if code != 0:
        assert_usage_error(code, err)
    else:
        assert gate.load_baseline(path)


OPTION_VALUES = st.one_of(st.text(max_size=12), st.sampled_from(
    ["2", "-1", "nan", "inf", "-inf", "1e999", "0x1p+99999", "1e99999999999", "0x1p-99999999999", "1_0", "", " ",
     "true", "none", "0x", "1" * 5000, "10" * 30, "0.5\n"]))


@FUZZ
@given(st.sampled_from([("sigmoid_bce_logits", "label_smoothing"), ("softmax_ce_sparse", "ignore_index"),
                        ("softmax_ce_sparse", "axis"), ("softmax_ce_sparse", "reduction"),
                        ("sampled_softmax", "remove_accidental_hits")]), OPTION_VALUES)
def test_cli_oracle_option_values(variant_option, value):
    variant, option = variant_option
    inputs = {"sigmoid_bce_logits": ["--logits", "1", "--labels", "0"],
              "softmax_ce_sparse": ["--logits", "[[1, 2]]", "--labels", "[0]"],
              "sampled_softmax": ["--input", "inputs=[[1]]", "--input", "embeddings=[[1], [2]]", "--input",
                                  "biases=0,0", "--labels", "[[0]]", "--input", "sampled=1",
                                  "--input", "true_expected_count=[[1]]", "--input", "sampled_expected_count=1"]}
    code, out, err = cli(["oracle", variant, *inputs[variant], "--option", f"{option}={value}"])
    if code != 0:
        assert_usage_error(code, err)
    else:
        assert out and not err


@FUZZ
@given(st.sampled_from(["--logits", "--labels", "--weights", "--shape"]),
       st.one_of(st.text(max_size=20), st.sampled_from(["[" * 3000, "[" * 40 + "1" + "]" * 40, "1e99999999999",
                                                        "99999999999999999999", "[[1], [1, 2]]", "[1, {}]"])))
def test_cli_oracle_input_values(flag, value):
    args = {"--logits": "1,2", "--labels": "0,1", "--weights": None, "--shape": None}
    args[flag] = value
    argv = ["oracle", "sigmoid_bce_logits"] + [x for k, v in args.items() if v is not None for x in (k, v)]
    code, out, err = cli(argv)
    if code != 0:
        assert_usage_error(code, err)


# -- targeted: the inputs that used to give a traceback or hang -------------------------------------------

def test_deep_nesting_and_huge_numbers_are_clean_errors(tmp_path):
    for name, content in [("deep.json", "[" * 100000), ("deep-closed.json", "[" * 950 + "]" * 950),
                          ("bigint.json", "1" * 5000), ("nan.json", '{"schema": NaN}'),
                          ("surrogate.json", b'{"schema": "\xed\xa0\x80"}')]:
        path = _write(tmp_path, name, content)
        for fn in (read_case_file, gate.load_report, gate.load_baseline):
            assert isinstance(call(fn, path), ALLOWED)
    for argv in (["replay", str(tmp_path / "deep.json")], ["diff", str(tmp_path / "bigint.json"), str(AUDIT)],
                 ["baseline", str(tmp_path / "deep.json"), "--out", str(tmp_path / "b.json")]):
        assert_usage_error(*cli(argv)[::2])


def test_devices_and_folders_are_refused_not_read(tmp_path):
    for path in ("/dev/zero", str(tmp_path)):
        assert isinstance(call(read_case_file, path), CaseError)
        assert isinstance(call(gate.load_report, path), ReportError)
        assert isinstance(call(gate.load_baseline, path), BaselineError)
    assert_usage_error(*cli(["replay", "/dev/zero"])[::2])
    assert_usage_error(*cli(["diff", "/dev/zero", "/dev/zero"])[::2])


@pytest.mark.parametrize("text", ["1e99999999999", "-1e99999999999", "0x1p+99999999999", "0x1p-99999999999",
                                  "1e-99999999999", "0x1p+" + "0" * 5000 + "1", "1" + "0" * 5000])
def test_cli_oracle_extreme_exponents_answer_quickly(text):
    code, out, err = cli(["oracle", "sigmoid_bce_logits", f"--logits={text}", "--labels", "0"])
    assert code == 0 and not err, (code, err)


def test_a_file_name_with_a_newline_stays_on_one_line(tmp_path):
    path = _write(tmp_path, "a\nb.json", "not json")
    code, _, err = cli(["replay", str(path)])
    assert_usage_error(code, err)
    assert "a\\nb.json" in err
    code, _, err = cli(["diff", str(path), str(path)])
    assert_usage_error(code, err)


def test_unwritable_outputs_are_refused_before_any_work(tmp_path):
    (tmp_path / "file").write_text("x")
    small = ["--adapters", "numpy", "--variants", "softmax", "--dtypes", "float64", "--examples", "0", "--search", "0",
             "--quiet"]  # (were the check to fail, the run it would start is a small one)
    assert_usage_error(*cli(["run", "--out", str(tmp_path / "file"), *small])[::2])
    assert_usage_error(*cli(["run", "--out", str(tmp_path / "r"), "--db", str(tmp_path / "file" / "db"), *small])[::2])
    assert_usage_error(*cli(["baseline", str(AUDIT), "--out", str(tmp_path)])[::2])


# -- option values: out of the domain is an answer, malformed is an error ----------------------------------

BCE = ["oracle", "sigmoid_bce_logits", "--logits", "1", "--labels", "0"]
SPARSE = ["oracle", "softmax_ce_sparse", "--logits", "[[1, 2]]", "--labels", "[0]"]


@pytest.mark.parametrize("argv, reason", [
    (BCE + ["--option", "label_smoothing=2"], "label_smoothing must lie in [0, 1], got 2.0"),
    (BCE + ["--option", "label_smoothing=-0.5"], "label_smoothing must lie in [0, 1], got -0.5"),
    (BCE + ["--option", "label_smoothing=nan"], "label_smoothing must lie in [0, 1], got nan"),
    (BCE + ["--weights", "-1"], "weights must be finite and >= 0"),
    (BCE + ["--weights", "nan"], "weights must be finite and >= 0"),
    (BCE + ["--pos-weight", "-2"], "pos_weight must be finite and >= 0"),
    (["oracle", "bce_probs", "--probs", "0.5", "--labels", "1.5"], "labels must lie in [0, 1]"),
    (SPARSE + ["--class-weights", "1,-1"], "class_weights must be finite and >= 0"),
    (SPARSE[:-1] + ["[5]"], "class ids must lie in [0, 2)"),
])
def test_cli_oracle_outside_the_domain_is_an_answer(argv, reason):
    code, out, err = cli(argv)
    assert code == 0 and not err, err
    assert f"invalid: {reason}" in out


@pytest.mark.parametrize("argv, says", [
    (BCE + ["--option", "reduction=median"], "options.reduction: 'median' is not one of"),
    (BCE + ["--option", "label_smoothing=abc"], "--option 'label_smoothing=abc': 'abc' is not a float"),
    (BCE + ["--option", "label_smoothing"], "--option 'label_smoothing': expected K=V"),
    (BCE + ["--option", "axis=0"], "--option 'axis=0': expected K=V with K one of reduction, label_smoothing"),
    (SPARSE + ["--option", "axis=2"], "options.axis: axis 2 out of range for logits of shape [1, 2]"),
    (SPARSE + ["--option", "axis=x"], "--option 'axis=x': 'x' is not an int"),
    (SPARSE + ["--option", "ignore_index=" + "9" * 30], "options.ignore_index: " + "9" * 30 + " does not fit in int64"),
    (SPARSE[:-1] + ["[0.5]"], "--labels: '0.5' is not an integer"),
    (BCE + ["--dtype", "float8"], "argument --dtype: invalid choice: 'float8'"),
    (["oracle", "hinge", "--logits", "1"], "unknown variant 'hinge'"),
    (BCE + ["--weights", "1,2"], "inputs.weights: shape [2], expected [1]"),
    (BCE + ["--shape", "2,x"], "--shape '2,x': expected integers"),
    (BCE + ["--input", "logits=2"], "input 'logits' is given twice"),
])
def test_cli_oracle_malformed_is_one_line_naming_field_and_value(argv, says):
    code, _, err = cli(argv)
    assert_usage_error(code, err)
    assert says in err, err


# -- environment variables ----------------------------------------------------------------------------

@pytest.mark.parametrize("var, value", [("XENT_WORKER_TIMEOUT_S", "abc"), ("XENT_WORKER_TIMEOUT_S", "-1"),
                                        ("XENT_WORKER_STARTUP_TIMEOUT_S", "nan"), ("XENT_WORKER_MEMORY_GB", "inf")])
def test_bad_worker_environment_is_refused_up_front(monkeypatch, var, value):
    from adapters import _worker
    if not hasattr(_worker, "default_timeout_s"):
        pytest.skip("this adapters/_worker.py reads no XENT_WORKER_* variables")
    monkeypatch.setenv(var, value)
    for argv in (["replay", "0000000000000000"], ["list"]):
        code, _, err = cli(argv)
        assert_usage_error(code, err)
        assert var in err and value in err, err


def test_unknown_hypothesis_profile_is_one_line_not_a_traceback():
    env = {**os.environ, "XENT_HYPOTHESIS_PROFILE": "bogus"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                         str(ROOT / "tests" / "test_ulp.py")], cwd=ROOT, env=env,
                                        capture_output=True, text=True, timeout=300)
    assert done.returncode == 4, done.stdout + done.stderr
    assert "XENT_HYPOTHESIS_PROFILE='bogus'" in done.stderr and "Traceback" not in done.stdout + done.stderr
