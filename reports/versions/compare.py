"""Write `xent diff` between the releases of each framework in this folder: DIFF-<framework>.md.

The folders here are the reports of the version matrix (tox.ini: one environment per framework
release, ``<framework>-<version>/report.json``). For each framework with reports of two or more
releases, each release is compared with the next (oldest first, by version number) and the output
of ``xent diff OLD NEW`` is written, verbatim, into ``DIFF-<framework>.md`` under a line saying
how to reproduce it. Runs in a second; ``tox -e versions-diff`` runs it.

    python reports/versions/compare.py [FOLDER]
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))  # the project, when run from a checkout without installing it

from conformance import gate  # noqa: E402

_RELEASE = re.compile(r"(?P<framework>[a-z_]+)-(?P<version>\d+(?:\.\d+)*)")


def releases(folder: Path) -> dict[str, list[tuple[tuple[int, ...], Path]]]:
    """framework -> [(version, its report folder)], oldest first."""
    found: dict[str, list] = {}
    for sub in sorted(folder.iterdir()):
        m = _RELEASE.fullmatch(sub.name)
        if m and (sub / "report.json").is_file():
            version = tuple(int(p) for p in m["version"].split("."))
            found.setdefault(m["framework"], []).append((version, sub))
    return {k: sorted(v) for k, v in found.items()}


def diff_text(old: Path, new: Path) -> str:
    """What ``xent diff OLD NEW`` prints."""
    return gate.format_diff(gate.diff(gate.load_report(str(old)), gate.load_report(str(new))))


def page(framework: str, pairs: list[tuple[Path, Path]], folder: Path) -> str:
    lines = [f"# {framework}: what changed between releases", ""]
    for old, new in pairs:
        rel_old, rel_new = (p.relative_to(folder.parent.parent) if p.is_relative_to(folder.parent.parent) else p
                            for p in (old / "report.json", new / "report.json"))
        lines += [f"## {old.name} -> {new.name}", "",
                  f"`xent diff {rel_old} {rel_new}` (written by `python reports/versions/compare.py`):", "",
                  "```text", diff_text(old / "report.json", new / "report.json").rstrip("\n"), "```", ""]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    folder = Path(argv[0] if argv else Path(__file__).parent).resolve()
    written = 0
    for framework, found in releases(folder).items():
        if len(found) < 2:
            continue
        pairs = [(found[k][1], found[k + 1][1]) for k in range(len(found) - 1)]
        out = folder / f"DIFF-{framework}.md"
        out.write_text(page(framework, pairs, folder), encoding="utf-8")
        print(f"{out}: {', '.join(f'{a.name} -> {b.name}' for a, b in pairs)}")
        written += 1
    if not written:
        print(f"{folder}: no framework with reports of two releases", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
