"""The version matrix (tox.ini, reports/versions/) and the example CI workflow (docs/)."""
import configparser
import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from conformance import report

ROOT = Path(__file__).resolve().parents[1]
VERSIONS = ROOT / "reports" / "versions"


def tox_release_envs() -> list[str]:
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(ROOT / "tox.ini")
    envs = []
    for section in tox.sections():
        m = re.fullmatch(r"testenv:\{(.+)\}", section)
        if m:
            envs += [e.strip() for e in m.group(1).split(",")]
    return envs


def test_version_matrix_pins_two_releases_of_each_framework():
    envs = tox_release_envs()
    releases: dict = {}
    for env in envs:
        framework, _, version = env.partition("-")
        releases.setdefault(framework, set()).add(version)
    for framework in ("sklearn", "tensorflow", "jax"):
        assert len(releases.get(framework, ())) >= 2, framework
    text = (ROOT / "tox.ini").read_text()
    for env in envs:  # each pins its release and runs only that framework's adapters
        framework, _, version = env.partition("-")
        assert re.search(rf"^\s+{re.escape(env)}: \S+=={re.escape(version)}$", text, re.M), env
        assert re.search(rf"^\s+{framework}: XENT_VERSION_ADAPTERS = \S+$", text, re.M), env
    assert "--out {toxinidir}/reports/versions/{envname}" in text
    assert "[testenv:versions-diff]" in text and "reports/versions/compare.py" in text


def committed_pairs() -> list[tuple[Path, Path, Path]]:
    pairs = []
    for page in sorted(VERSIONS.glob("DIFF-*.md")):
        for old, new in re.findall(r"`xent diff (\S+) (\S+)`", page.read_text()):
            pairs.append((page, ROOT / old, ROOT / new))
    return pairs


def test_version_comparison_is_committed():
    pairs = committed_pairs()
    assert pairs, "no DIFF-<framework>.md in reports/versions"
    schema = json.loads(report.SCHEMA_FILE.read_text())
    for _, old, new in pairs:
        docs = [json.loads(p.read_text()) for p in (old, new)]
        for doc in docs:
            jsonschema.validate(doc, schema)
        versions = [{a["name"]: a.get("version") for a in d["environment"]["adapters"]} for d in docs]
        assert versions[0] != versions[1], "two reports of the same release"
        for setting in ("seed", "examples", "search", "shrink"):  # the same cases asked of both releases
            assert docs[0]["run"][setting] == docs[1]["run"][setting], setting


@pytest.mark.parametrize("page, old, new", committed_pairs(),
                         ids=[f"{old.parent.name}->{new.parent.name}" for _, old, new in committed_pairs()])
def test_version_diff_page_is_what_xent_diff_prints(page, old, new):
    done = subprocess.run([sys.executable, "-m", "conformance", "diff", str(old), str(new)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    rel_old, rel_new = old.relative_to(ROOT), new.relative_to(ROOT)
    section = page.read_text().split(f"`xent diff {rel_old} {rel_new}`", 1)[1]
    committed = re.search(r"```text\n(.*?)```", section, re.S).group(1)
    assert committed.rstrip("\n") == done.stdout.rstrip("\n")


def test_version_diff_names_the_release_change():
    text = (VERSIONS / "DIFF-sklearn.md").read_text()
    assert "sklearn: scikit-learn 1.8.0 -> scikit-learn 1.9.1" in text
    assert re.search(r"^appeared \([1-9]", text, re.M)  # the change shows as named divergences


def test_ci_workflow_example_runs_the_gate_and_uploads_the_page_always():
    yaml = pytest.importorskip("yaml")
    path = ROOT / "docs" / "github-actions-example.yml"
    flow = yaml.safe_load(path.read_text())
    steps = [s for job in flow["jobs"].values() for s in job["steps"]]
    runs = "\n".join(s.get("run", "") for s in steps)
    assert "pip install" in runs and re.search(r"^\s*xent run .*--baseline reports/baseline\.json", runs, re.M)
    upload = [s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert len(upload) == 1 and upload[0]["if"] == "always()"
    assert "reports/latest/index.html" in upload[0]["with"]["path"]
