"""The pytest plugin: registered through pytest11, light to load, failing a flawed kernel with a
readable account and passing a careful one (the examples a team would write, in examples/).

Each session here is a pytest subprocess with ``-p xent.pytest_plugin`` and plugin autoloading off:
the project is not installed in the development environment (where its pytest11 entry point is
inactive) but is in CI (where it is active), and the sessions must be the same in both.
"""
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def pytest_session(*args, cwd=EXAMPLES, timeout=300):
    env = {**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "xent.pytest_plugin", "-p", "no:cacheprovider",
                           "-W", "ignore::RuntimeWarning", *map(str, args)], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_plugin_is_registered_through_pytest11():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert meta["project"]["entry-points"]["pytest11"] == {"xent": "xent.pytest_plugin"}
    assert "xent" in meta["tool"]["setuptools"]["packages"]


def test_plugin_loads_nothing_heavy():
    code = ("import sys; import xent.pytest_plugin; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'numpy', 'hypothesis', 'mpmath', 'jax', 'torch', "
            "'tensorflow', 'cases', 'oracle', 'adapters'}))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr


def test_plugin_passes_the_careful_numpy_kernel():
    done = pytest_session("test_numpy_kernel.py")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


def test_plugin_fails_the_flawed_kernel_with_verdict_minimal_case_and_reproducer(tmp_path):
    done = pytest_session("test_flawed_kernel.py", "--basetemp", tmp_path / "base")
    out = done.stdout
    assert done.returncode == 1 and "1 failed" in out, out + done.stderr
    assert "xent audit of flawed-bce: " in out and "distinct divergence(s) from the certified oracle" in out
    # x - x z + log(1 + exp(-x)) overflows for x < -88.7 in float32, where the loss is finite
    assert re.search(r"^\d+\. overflow \(", out, re.M)
    assert "— returned inf where the loss is " in out
    assert "minimal case (shrunk in " in out and '"variant": "sigmoid_bce_logits"' in out
    assert "     | def call(inputs):" in out and "_load('flawed_kernel'" in out  # the reproducer, in full
    assert "Traceback" not in out and "conformance/audit.py" not in out  # the account, not a stack
    scripts = re.findall(r"reproducer(?: \(|: )(\S+\.py)", out)
    assert scripts and all(Path(p).is_file() for p in scripts)
    run = subprocess.run([sys.executable, scripts[0]], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "REPRODUCED: " in run.stdout, run.stdout + run.stderr


def test_plugin_passes_the_jitted_jax_kernel():
    pytest.importorskip("jax")
    done = pytest_session("test_jax_kernel.py")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


SETTINGS_TEST = '''
import json
import os


def test_settings(xent_audit):
    result = xent_audit("numpy", variants="log_softmax", dtypes="float64", examples=1, search=0, shrink=5)
    with open(os.environ["XENT_TEST_SETTINGS"], "w") as f:
        json.dump(result.settings, f)
'''


@pytest.mark.parametrize("argv, expected", [
    ([], {"profile": "fast", "examples": 1, "search": 0, "shrink": 5, "seed": 0}),
    # a profile on the command line overrides the test's budgets; explicit options override all
    (["--xent-profile", "thorough", "--xent-examples", "1", "--xent-search", "0"],
     {"profile": "thorough", "examples": 1, "search": 0, "shrink": 96, "seed": 0}),
    (["--xent-shrink", "3", "--xent-seed", "11"], {"profile": "fast", "examples": 1, "search": 0, "shrink": 3,
                                                   "seed": 11}),
])
def test_plugin_options_reach_the_audit(tmp_path, monkeypatch, argv, expected):
    import json

    (tmp_path / "test_settings.py").write_text(SETTINGS_TEST)
    monkeypatch.setenv("XENT_TEST_SETTINGS", str(tmp_path / "settings.json"))
    done = pytest_session("test_settings.py", *argv, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads((tmp_path / "settings.json").read_text()) == expected


def test_plugin_bad_option_is_a_usage_error(tmp_path):
    (tmp_path / "test_nothing.py").write_text("def test_nothing():\n    pass\n")
    done = pytest_session("test_nothing.py", "--xent-profile", "quick", cwd=tmp_path)
    assert done.returncode == 4
    assert "unknown profile 'quick'; expected one of fast, thorough" in done.stderr


def test_plugin_registers_the_hypothesis_profiles_it_is_asked_for(tmp_path):
    (tmp_path / "test_profile.py").write_text(
        "from hypothesis import settings\n\n\ndef test_profile():\n    assert settings().max_examples == 500\n")
    done = pytest_session("test_profile.py", "-p", "hypothesispytest", "--hypothesis-profile", "xent-thorough",
                          cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
