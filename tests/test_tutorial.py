"""docs/tutorial.md, run as written in a fresh environment.

Every ```python block whose first line is ``# file: NAME`` is written to NAME in an empty folder
outside the repository, and every ``$ command`` of a ```console block is run there with bash, in
order; a command ending in ``# exits N`` must exit N, the others 0.

The one substitution: ``pip install xent-conformance`` installs this working tree instead of the
release on the package index, with ``pip install --no-deps --target SITE`` from a copy of its
sources, and SITE first on PYTHONPATH and its bin/ first on PATH. That is an installation as pip
makes it (the ``xent`` command, the pytest11 entry point pytest loads the plugin through,
``import xent``), without a new virtual environment: the dependencies (numpy, hypothesis, ...) are
those of the environment running this test, as they would be after ``pip install``.
"""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TUTORIAL = ROOT / "docs" / "tutorial.md"
INSTALL = "pip install xent-conformance"
_BLOCK = re.compile(r"^```(\w+)\n(.*?)^```$", re.M | re.S)


def blocks() -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in _BLOCK.finditer(TUTORIAL.read_text(encoding="utf-8"))]


def steps() -> list[tuple[str, object]]:
    """("file", (name, text)) and ("run", (command, expected exit status)), in the tutorial's order."""
    out = []
    for lang, body in blocks():
        if lang == "python" and body.startswith("# file: "):
            name = body.splitlines()[0][len("# file: "):].strip()
            out.append(("file", (name, body)))
        elif lang == "console":
            for line in body.splitlines():
                if line.startswith("$ "):
                    command, _, note = line[2:].partition("  # exits ")
                    out.append(("run", (command.strip(), int(note) if note else 0)))
    return out


def install(site: Path, work: Path) -> None:
    src = work / "xent-src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    for package in ("cases", "oracle", "adapters", "conformance", "xent"):
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site),
                           str(src)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr


def test_tutorial_has_its_steps():
    kinds = [(kind, what[0]) for kind, what in steps()]
    assert ("run", INSTALL) in kinds and ("file", "test_my_loss.py") in kinds
    files = dict(what for kind, what in steps() if kind == "file")
    # "about fifteen lines": the kernel and its one-test audit
    lines = [line for name in ("my_loss.py", "test_my_loss.py") for line in files[name].splitlines()
             if line.strip() and not line.startswith("# file:")]
    assert len(lines) <= 18


def test_tutorial_steps_work_as_written_in_a_fresh_environment(tmp_path):
    work, site = tmp_path / "work", tmp_path / "site"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_DISABLE_PLUGIN_AUTOLOAD",
                                                            "PYTEST_ADDOPTS", "XENT_ADAPTERS")}
    env.update(PYTHONPATH=str(site), PATH=os.pathsep.join([str(site / "bin"), str(Path(sys.executable).parent),
                                                             env.get("PATH", "")]))
    outputs = {}
    for kind, what in steps():
        if kind == "file":
            (work / what[0]).write_text(what[1], encoding="utf-8")
            continue
        command, expected = what
        if command == INSTALL:
            install(site, tmp_path)
            continue
        done = subprocess.run(["bash", "-c", command], cwd=work, env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == expected, f"$ {command}\n{done.stdout}\n{done.stderr}"
        assert "Traceback" not in done.stdout + done.stderr, f"$ {command}\n{done.stdout}\n{done.stderr}"
        outputs[command] = done.stdout + done.stderr

    # the installed copy served the steps, not the checkout
    code = "import xent, conformance; print(xent.__file__, conformance.__file__)"
    where = subprocess.run([sys.executable, "-c", code], cwd=work, env=env, capture_output=True, text=True,
                           timeout=60).stdout.split()
    assert where and all(Path(p).is_relative_to(site) for p in where), where
    failing = next(v for c, v in outputs.items() if "test_textbook_loss.py" in c)
    excerpt = next(body for lang, body in blocks() if lang == "text")
    assert excerpt.splitlines()[0].split(":")[0] in failing  # "xent audit of textbook_bce"
    for verdict in re.findall(r"^\d+\. ([a-z-]+) \(", excerpt, re.M):  # the verdicts the excerpt shows
        assert re.search(rf"^\d+\. {verdict} \(", failing, re.M), verdict
    # x - x z + log(1 + exp(-x)) overflows for x < -88.7 in float32, where the loss is finite
    assert re.search(r"float32: overflow at .* — returned inf where the loss is ", failing)
    assert (work / "report" / "report.json").is_file() and (work / "compare" / "summary.md").is_file()
    summary = (work / "compare" / "summary.md").read_text()
    assert "`numpy`" in summary and "`bce_with_logits`" in summary


@pytest.mark.parametrize("block", [b for lang, b in blocks() if lang == "python" and b.startswith("# file: ")])
def test_tutorial_python_blocks_compile(block):
    compile(block, "<tutorial>", "exec")
