"""The project's case store: every case worth re-running, by case_id, as readable JSON.

A run writes the worst and the shrunk case of each divergence to ``<root>/cases/<case_id>.json``
(root: ``--db``, default ``.xent`` in the working directory, git-ignored), so ``xent replay
CASE_ID`` finds it later. Hex-exact case JSON rather than hypothesis' byte-stream database: a
byte stream replays only under the same strategy code, a case replays under any version.

``find(case_id)`` looks in the store, then the curated corpus, then the report.json files under
``reports/``; a path to a case file (one case as JSON, or a .jsonl of cases) is read directly.
"""
from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from cases import Case, CaseError
from cases.model import JSONError, loads_json, one_line

from .files import write_atomic

DEFAULT_ROOT = ".xent"
_ID = re.compile(r"[0-9a-f]{16}")


class NotFound(LookupError):
    """No case with that id (or the file does not hold a case); the message says where it looked."""


class CaseStore:
    def __init__(self, root=DEFAULT_ROOT):
        self.root = Path(root)
        self.dir = self.root / "cases"

    def save(self, case: Case) -> Path:
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f"{case.case_id}.json"
        if path.exists():
            return path
        return write_atomic(path, case.to_json(indent=1) + "\n")

    def load(self, case_id: str) -> Case | None:
        path = self.dir / f"{case_id}.json"
        if not path.is_file():
            return None
        return read_case_file(path)[0]


def read_text_file(path) -> str:
    """The UTF-8 text of a regular file; ``OSError`` (with a plain ``strerror``) for anything else, so a
    device (``/dev/zero``), a FIFO or a folder is refused instead of read forever or half-read."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise OSError(0, kind)
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except UnicodeDecodeError as e:
        raise OSError(0, f"not UTF-8 text ({e.reason} at byte {e.start})") from None


def _reason(e: OSError) -> str:
    return e.strerror or one_line(e, 200)


def read_case_file(path) -> list[Case]:
    """The case(s) in a JSON file (one object), a JSON list, or JSON lines; CaseError naming the
    file and line on anything else."""
    path = Path(path)
    try:
        text = read_text_file(path)
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the path
        raise CaseError(str(path), f"cannot read: {_reason(e) if isinstance(e, OSError) else one_line(e)}") from None
    try:
        doc = loads_json(text)
        items = doc if isinstance(doc, list) else [doc]
        where = [f"{path}[{k}]" for k in range(len(items))] if isinstance(doc, list) else [str(path)]
    except JSONError as whole:
        items, where = [], []
        lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
        for k, (n, line) in enumerate(lines):
            try:
                items.append(loads_json(line))
            except JSONError as e:
                if k == 0:  # not JSON lines either: one document, whose own error says where
                    raise CaseError(str(path), f"not JSON: {whole}") from None
                raise CaseError(f"{path}:{n}", f"not JSON: {e}") from None
            where.append(f"{path}:{n}")
    cases = []
    for item, w in zip(items, where):
        if isinstance(item, dict) and "case" in item and "variant" not in item:
            item = item["case"]  # a divergence entry of a report (or a `xent replay --json` document)
        try:
            cases.append(Case.from_dict(item))
        except CaseError as e:
            raise CaseError(w, str(e)) from None
    if not cases:
        raise CaseError(str(path), "holds no case")
    return cases


def find(ref: str, store: CaseStore | None = None, reports_dir="reports") -> Case:
    """The case named by ``ref``: a case file path, or a case_id (or a unique prefix of >= 6 hex
    digits) in the store, the corpus, or a report under ``reports_dir``."""
    if not isinstance(ref, str) or not ref:
        raise NotFound(f"{one_line(repr(ref), 120)} is neither a file nor a case id")
    if os.path.exists(ref):
        cases = read_case_file(ref)
        if len(cases) > 1:
            raise NotFound(f"{ref} holds {len(cases)} cases; give one case_id of them: "
                           + ", ".join(c.case_id for c in cases[:5]) + ("…" if len(cases) > 5 else ""))
        return cases[0]
    if not re.fullmatch(r"[0-9a-f]{6,16}", ref):
        raise NotFound(one_line(f"{ref[:120]!r} is neither a file nor a case id (16 hex digits, or a prefix of 6 "
                                f"or more)"))
    store = store or CaseStore()
    looked = []
    if len(ref) == 16:
        case = store.load(ref)
        if case is not None:
            return case
    matches: dict[str, Case] = {}
    if store.dir.is_dir():
        for p in sorted(store.dir.glob(f"{ref}*.json")):
            matches.setdefault(p.stem, read_case_file(p)[0])
    looked.append(str(store.dir))
    from cases.corpus import load_corpus

    for c in load_corpus():
        if c.case_id.startswith(ref):
            matches.setdefault(c.case_id, c)
    looked.append("the corpus")
    if not matches:
        for rp in _report_files(reports_dir):
            looked.append(str(rp))
            for cid, case_doc in _report_cases(rp):
                if cid.startswith(ref):
                    try:
                        matches.setdefault(cid, Case.from_dict(case_doc))
                    except CaseError:
                        continue
            if matches:
                break
    if not matches:
        raise NotFound(one_line(f"no case {ref} in {', '.join(looked)}"))
    if len(matches) > 1:
        raise NotFound(f"{ref} is ambiguous: " + ", ".join(sorted(matches)[:5]))
    return next(iter(matches.values()))


def _report_files(reports_dir) -> list[Path]:
    try:
        return sorted(Path(reports_dir).glob("**/report.json"))
    except (OSError, ValueError):  # an unreadable folder, a NUL byte in the name
        return []


def _report_cases(path):
    """(case_id, case dict) of every divergence (and its shrunk case) of a report; nothing from a
    file that is not a readable report (looking a case up skips it, it does not fail on it)."""
    try:
        doc = loads_json(read_text_file(path))
    except (OSError, ValueError):
        return
    divergences = doc.get("divergences") if isinstance(doc, dict) else None
    for d in divergences if isinstance(divergences, list) else []:
        if not isinstance(d, dict):
            continue
        for entry in (d, d.get("shrunk")):
            if isinstance(entry, dict) and isinstance(entry.get("case_id"), str) and "case" in entry:
                yield entry["case_id"], entry["case"]
