"""The curated corpus: hand-picked cases in cases/corpus/*.jsonl, one `Case.to_json()` per line.

The files are written by cases/corpus/build.py, whose docstring and each case's `note` give the
provenance. Loading parses JSON only.
"""
from __future__ import annotations

from pathlib import Path

from .model import Case, CaseError

CORPUS_DIR = Path(__file__).with_name("corpus")


def load_corpus(path: str | Path | None = None) -> list[Case]:
    """The cases of every .jsonl file in the corpus folder (files in name order), or of the given
    file or folder. A malformed line raises CaseError naming `file:line` and the field."""
    path = CORPUS_DIR if path is None else Path(path)
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    cases = []
    for file in files:
        with open(file, "rb") as fh:  # bytes: a line that is not UTF-8 is a CaseError like any other
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    cases.append(Case.from_json(line))
                except ValueError as e:
                    raise CaseError(f"{file}:{lineno}", str(e)) from e
    return cases
