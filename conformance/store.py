"""The project's case store: every case worth re-running, by case_id, as readable JSON.

A run writes the worst and the shrunk case of each divergence to ``<root>/cases/<case_id>.json``
(root: ``--db``, default ``.xent`` in the working directory, git-ignored), so ``xent replay
CASE_ID`` finds it later. Hex-exact case JSON rather than hypothesis' byte-stream database: a
byte stream replays only under the same strategy code, a case replays under any version.

``find(case_id)`` looks in the store, then the curated corpus, then the report.json files under
``reports/``; a path to a case file (one case as JSON, or a .jsonl of cases) is read directly.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

from cases import Case, CaseError

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
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=f".{path.name}.", suffix=".tmp")
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(case.to_json(indent=1) + "\n")
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
        return path

    def load(self, case_id: str) -> Case | None:
        path = self.dir / f"{case_id}.json"
        if not path.is_file():
            return None
        return read_case_file(path)[0]


def read_case_file(path) -> list[Case]:
    """The case(s) in a JSON file (one object), a JSON list, or JSON lines; CaseError naming the
    file and line on anything else."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CaseError(str(path), f"cannot read: {e}") from None
    try:
        doc = json.loads(text)
        items = doc if isinstance(doc, list) else [doc]
        where = [f"{path}[{k}]" for k in range(len(items))] if isinstance(doc, list) else [str(path)]
    except json.JSONDecodeError:
        items, where = [], []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    items.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise CaseError(f"{path}:{n}", f"not JSON: {e.msg}") from None
                where.append(f"{path}:{n}")
    cases = []
    for item, w in zip(items, where):
        if isinstance(item, dict) and "case" in item and "variant" not in item:
            item = item["case"]  # a divergence entry of a report
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
    if os.path.exists(ref):
        cases = read_case_file(ref)
        if len(cases) > 1:
            raise NotFound(f"{ref} holds {len(cases)} cases; give one case_id of them: "
                           + ", ".join(c.case_id for c in cases[:5]) + ("…" if len(cases) > 5 else ""))
        return cases[0]
    if not re.fullmatch(r"[0-9a-f]{6,16}", ref):
        raise NotFound(f"{ref!r} is neither a file nor a case id (16 hex digits, or a prefix of 6 or more)")
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
        for rp in sorted(Path(reports_dir).glob("**/report.json")):
            looked.append(str(rp))
            try:
                doc = json.loads(rp.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            for d in doc.get("divergences", []) if isinstance(doc, dict) else []:
                for entry in (d, d.get("shrunk") or {}):
                    cid = entry.get("case_id", "")
                    if isinstance(cid, str) and cid.startswith(ref) and "case" in entry:
                        try:
                            matches.setdefault(cid, Case.from_dict(entry["case"]))
                        except CaseError:
                            continue
            if matches:
                break
    if not matches:
        raise NotFound(f"no case {ref} in {', '.join(looked)}")
    if len(matches) > 1:
        raise NotFound(f"{ref} is ambiguous: " + ", ".join(sorted(matches)[:5]))
    return next(iter(matches.values()))
