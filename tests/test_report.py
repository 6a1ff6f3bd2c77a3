"""report.json follows its schema, and summary.md shows the matrix and explains each divergence.

A run of two small in-test adapters over hand-picked cases: one stable implementation, one
textbook control that overflows at x = -810; the oracle is the real one.
"""
import json

import jsonschema
import numpy as np
import pytest

from adapters.base import Adapter, Output
from cases import Case
from conformance import report, runner

F32 = np.float32


class Stable(Adapter):
    name, description = "stable", "softplus with log1p, in float64, rounded once"

    def available(self):
        return True, "test"

    def apis(self, case):
        ok = case.variant == "sigmoid_bce_logits" and case.options["reduction"] == "none"
        return ["stable"] if ok else []

    def evaluate(self, case, api, grads=True):
        x, z = case["logits"].astype(np.float64), case["labels"].astype(np.float64)
        loss = np.maximum(x, 0) - x * z + np.log1p(np.exp(-np.abs(x)))
        return Output(loss.astype(case["logits"].dtype))


class Textbook(Stable):
    name, description, control = "textbook", "x - x z + log(1 + exp(-x)): overflows for x << 0", True

    def apis(self, case):
        return ["textbook"] if super().apis(case) else []

    def evaluate(self, case, api, grads=True):
        x, z = case["logits"], case["labels"]
        with np.errstate(over="ignore"):
            return Output(x - x * z + np.log(F32(1) + np.exp(-x)))


def _case(logits, labels, variant="sigmoid_bce_logits", **options):
    return Case(variant, "float32", {"logits": np.array(logits, dtype=F32), "labels": np.array(labels, dtype=F32)},
                options)


CASES = {
    "sigmoid_bce_logits": [_case([1.0, -810.0, 20.0], [1.0, 0.0, 0.0]),
                           _case([0.5], [2.0]),  # labels outside [0, 1]: invalid
                           _case([0.25, -3.0], [0.0, 1.0], reduction="mean")],
    "softmax": [Case("softmax", "float32", {"logits": np.array([[0.0, 1.0]], dtype=F32)})],
}


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    result = runner.run([Stable(), Textbook()], list(CASES), ["float32"], examples=0, seed=7,
                        source=lambda v, d, n, s: CASES[v], progress=None)
    doc = report.build(result, ["run", "--seed", "7"])
    report.write(doc, out)
    return out


def test_report_json_validates_against_the_schema(written):
    schema = json.loads(report.SCHEMA_FILE.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    doc = json.loads((written / "report.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(doc)
    assert doc["schema"] == "xent-report/2" and doc["run"]["seed"] == 7


def test_report_cells_count_cases_and_verdicts(written):
    doc = json.loads((written / "report.json").read_text())
    cells = {c["adapter"]: c for c in doc["cells"]}
    # Neither adapter checks the domain: the invalid case is answered by both.
    assert cells["stable"]["cases"] == 2 and cells["stable"]["conforming"] == 1
    assert cells["textbook"]["verdicts"] == {"accepted-invalid": 1, "overflow": 1}
    assert {"adapter": "stable", "variant": "softmax", "dtype": "float32", "cases": 1} in doc["not_applicable"]


def test_report_divergence_is_hex_exact_and_reproducible(written):
    doc = json.loads((written / "report.json").read_text())
    div = next(d for d in doc["divergences"] if d["verdict"] == "overflow")
    # log1p(exp(-810)) is about 1.7e-352: 0 in float32
    assert div["index"] == [1] and div["expected"]["hex"] == "0x0p+0" and div["got"]["hex"] == "inf"
    case = Case.from_dict(div["case"])
    assert case.case_id == div["case_id"] and float(case["logits"][1]) == -810.0


def test_report_summary_has_the_matrix_and_one_line_per_divergence(written):
    text = (written / "summary.md").read_text()
    assert "## Conformance matrix" in text
    assert "| adapter | sigmoid_bce_logits | softmax |" in text
    assert "| stable | 50% of 2, max 0 ulp; accepted-invalid 1 |" in text
    assert "| textbook (control) | 0% of 2" in text
    assert ("`textbook/textbook` sigmoid_bce_logits float32: overflow at (1,) — returned inf where the loss is 0 "
            "(x=-810, z=0)") in text
    assert "### accepted-invalid (2 distinct, 2 answers)" in text


def test_report_summary_is_rebuilt_from_the_json_alone(written):
    doc = json.loads((written / "report.json").read_text())
    assert report.summary(doc) == (written / "summary.md").read_text()


def test_report_write_leaves_no_temporary_files(written):
    assert sorted(p.name for p in written.iterdir()) == ["index.html", "report.json", "summary.md"]


def test_report_run_is_deterministic_given_the_seed():
    from cases.strategies import generate

    def content(seed):
        result = runner.run(["numpy", "naive"], ["sigmoid_bce_logits", "softmax_ce_sparse"], ["float16"], 6, seed,
                            source=generate, progress=None)
        cells = [{k: v for k, v in c.to_dict().items() if k != "seconds"} for c in result.cells]
        return cells, result.divergences

    assert content(3) == content(3)


def test_report_oracle_errors_are_listed_not_judged(monkeypatch, tmp_path):
    real = runner.oracle.evaluate
    broken = CASES["sigmoid_bce_logits"][0]

    def evaluate(case, **kw):
        if case == broken:
            raise OverflowError("too many digits in integer")
        return real(case, **kw)

    monkeypatch.setattr(runner.oracle, "evaluate", evaluate)
    result = runner.run([Stable()], ["sigmoid_bce_logits"], ["float32"], examples=0, seed=0,
                        source=lambda v, d, n, s: CASES[v], progress=None)
    assert [e["case_id"] for e in result.oracle_errors] == [broken.case_id]
    assert sum(c.cases for c in result.cells) == 1  # the invalid case; the mean one is not applicable
    doc = report.build(result)
    jsonschema.validate(doc, json.loads(report.SCHEMA_FILE.read_text()))
    assert "## Oracle errors (1)" in report.summary(doc)
