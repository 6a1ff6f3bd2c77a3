"""The xent command line: list, oracle, run, and one-line errors with exit status 2."""
import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from conformance import report
from conformance.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_cli_list_names_adapters_variants_and_dtypes(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "numpy" in out and "[control]" in out
    assert "sigmoid_bce_logits" in out and "bfloat16" in out


def test_cli_oracle_json_gives_exact_and_rounded_values(capsys):
    assert main(["oracle", "sigmoid_bce_logits", "--logits", "1,-810,20", "--labels", "1,1,0", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["status"] == "ok" and doc["dtype"] == "float32"
    first, second, _ = doc["value"]
    # log(1 + e^-1) = 0.31326168751822283...; at x = -810, z = 1: 810 + log1p(e^-810)
    assert first["exact"].startswith("0.31326168751822283") and first["value"] == "0.3132617"
    assert second["value"] == "810" and second["hex"] == "0x1.95p+9"
    assert len(first["exact"].replace(".", "").lstrip("0")) >= 20
    assert set(doc["grads"]) == {"logits", "labels"}


def test_cli_oracle_says_when_rounding_changed_an_input(capsys):
    assert main(["oracle", "sigmoid_bce_logits", "--logits", "0.1", "--labels", "0", "--dtype", "bfloat16"]) == 0
    out = capsys.readouterr().out
    assert "logits[0] = 0.1 becomes 0x1.9ap-4" in out


def test_cli_oracle_accepts_json_lists_hex_and_options(capsys):
    args = ["oracle", "softmax_ce_sparse", "--logits", '[[0, "0x1p+1"], [1, 1]]', "--labels", "1,0",
            "--option", "reduction=mean", "--json"]
    assert main(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["case"]["options"]["reduction"] == "mean" and len(doc["value"]) == 1


def test_cli_oracle_invalid_case_is_an_answer(capsys):
    assert main(["oracle", "bce_probs", "--probs", "1.5", "--labels", "1"]) == 0
    assert "invalid:" in capsys.readouterr().out


def test_cli_run_writes_a_valid_report(tmp_path, capsys):
    out = tmp_path / "r"
    code = main(["run", "--adapters", "numpy,naive", "--variants", "sigmoid_bce_logits", "--dtypes", "float32",
                 "--examples", "3", "--seed", "1", "--out", str(out)])
    assert code == 0
    assert "summary:" in capsys.readouterr().out
    doc = json.loads((out / "report.json").read_text())
    jsonschema.validate(doc, json.loads(report.SCHEMA_FILE.read_text()))
    assert doc["run"]["adapters"] == ["numpy", "naive"] and (out / "summary.md").exists()


@pytest.mark.parametrize("argv", [
    [],
    ["frobnicate"],
    ["run", "--adapters", "nosuch"],
    ["run", "--variants", "hinge"],
    ["run", "--dtypes", "float8"],
    ["run", "--examples", "-1"],
    ["run", "--seed", "x"],
    ["oracle", "hinge", "--logits", "1"],
    ["oracle", "sigmoid_bce_logits", "--logits", "1,abc", "--labels", "0,0"],
    ["oracle", "sigmoid_bce_logits", "--logits", "1", "--labels", "0", "--option", "reduction"],
    ["oracle", "sigmoid_bce_logits", "--logits", "1", "--labels", "0", "--option", "reduction=median"],
    ["oracle", "sigmoid_bce_logits", "--logits", "1", "--labels", "0", "--option", "nosuch=1"],
    ["oracle", "sigmoid_bce_logits", "--logits", "1,2", "--labels", "0"],
    ["oracle", "sigmoid_bce_logits", "--logits", "[1, 2", "--labels", "0"],
    ["oracle", "softmax_ce_sparse", "--logits", "1,2", "--labels", "0.5"],
    ["oracle", "sigmoid_bce_logits", "--dtype", "float8", "--logits", "1", "--labels", "0"],
])
def test_cli_bad_arguments_exit_2_with_one_line(argv, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("xent: error: "), captured.err
    assert "Traceback" not in captured.err


def test_cli_module_entry_point_runs():
    done = subprocess.run([sys.executable, "-m", "conformance", "run", "--examples", "-3"], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
