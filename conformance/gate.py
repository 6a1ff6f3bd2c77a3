"""The CI gate (a committed baseline of accepted divergences) and diffs between two reports.

Everything here is a pure function on report documents (the ``report.json`` dict, schema
``xent-report/1``) and baseline entries; only ``load_report``, ``load_baseline`` and
``write_baseline`` touch files.

A divergence's *key* is (adapter, api, variant, dtype, verdict); its *cell* is the first four.

Baseline file (``xent-baseline/1``)::

    {"schema": "xent-baseline/1",
     "entries": [{"adapter": "torch", "api": "binary_cross_entropy_with_logits",
                  "variant": "sigmoid_bce_logits", "dtype": "float32", "verdict": "nan",
                  "reason": "why this is known/accepted", "link": "https://... or null",
                  "example": "<case_id>", "count": 3}, ...]}

``reason`` must be a non-empty string; entries written by ``refresh`` for keys nobody has looked at
yet get ``"UNREVIEWED: <what diverged>"`` so they stay visibly unreviewed. ``link``, ``example`` and
``count`` are optional (null, null, 0 when absent); no other field is accepted, so a misspelt field
name is an error rather than silently ignored.

The gate (``check``) fails on any key of the report that the baseline does not list. A baseline entry
is *stale* when its key did not occur although its adapter, variant and dtype were all part of the
run; entries outside the run's scope are left alone (neither stale nor matched), so one baseline can
serve partial runs (``--adapters torch``) as well as full ones.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from cases.model import JSONError, loads_json, one_line, show
from .files import write_atomic
from .store import read_text_file
from .verdict import SEVERITY

BASELINE_SCHEMA = "xent-baseline/1"
REPORT_SCHEMA_PREFIX = "xent-report/"
UNREVIEWED = "UNREVIEWED"
KEY_FIELDS = ("adapter", "api", "variant", "dtype", "verdict")
ENTRY_FIELDS = KEY_FIELDS + ("reason", "link", "example", "count")
ULP_GROWTH = 2  # a cell whose max ulp grows by more than this factor got worse (see ``diff``)


class BaselineError(Exception):
    """A baseline file that cannot be used; the message names the file, entry and field (one line)."""

    def __init__(self, message):
        super().__init__(one_line(message))


class ReportError(Exception):
    """A file or document that is not an xent report; the message is one line."""

    def __init__(self, message):
        super().__init__(one_line(message))


def _short_json(v) -> str:
    """A value read from a file, for a message: JSON for a scalar (a long string cut), else its kind."""
    if isinstance(v, str):
        text = json.dumps(v if len(v) <= 80 else v[:79] + "…", ensure_ascii=False)
    elif v is None or isinstance(v, (bool, float)):
        text = json.dumps(v)
    elif isinstance(v, int):
        text = show(v)
    elif isinstance(v, list):
        text = f"an array of {len(v)}"
    elif isinstance(v, dict):
        text = "an object"
    else:
        text = show(v)
    return one_line(text, 120)


def _reason(e: OSError) -> str:
    return e.strerror or one_line(e, 200)


class Key(NamedTuple):
    adapter: str
    api: str
    variant: str
    dtype: str
    verdict: str

    @property
    def cell(self) -> tuple[str, str, str, str]:
        return self[:4]

    def text(self) -> str:
        return f"{self.adapter}/{self.api} {self.variant} {self.dtype} {self.verdict}"


def key_of(item: dict) -> Key:
    """The key of a divergence or of a baseline entry."""
    return Key(*(item[f] for f in KEY_FIELDS))


def _cell_text(cell) -> str:
    adapter, api, variant, dtype = cell
    return f"{adapter}/{api} {variant} {dtype}"


def _verdict_rank(verdict: str, severity=SEVERITY) -> int:
    """Index in ``severity`` (0 = most severe); a verdict it does not know sorts after all."""
    try:
        return list(severity).index(verdict)
    except ValueError:
        return len(severity)


def _sort_key(entry: dict):
    return (entry["adapter"], entry["api"], entry["variant"], entry["dtype"], _verdict_rank(entry["verdict"]),
            entry["verdict"])


# -- reports -------------------------------------------------------------------------------------

def _require_report(doc, what: str = "document") -> None:
    if not isinstance(doc, dict):
        raise ReportError(f"{what} is not an xent report: expected a JSON object, got {type(doc).__name__}")
    schema = doc.get("schema")
    if schema is None:
        raise ReportError(f"{what} is not an xent report: no \"schema\" field")
    if not isinstance(schema, str) or not schema.startswith(REPORT_SCHEMA_PREFIX):
        raise ReportError(f"{what} is not an xent report: schema {_short_json(schema)} does not start with "
                          f"{REPORT_SCHEMA_PREFIX!r}")
    _check_types(doc, what)


def _is_int(v, least: int = 0) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= least


def _is_number(v) -> bool:
    """A finite JSON number >= 0 (an ulp count: ints beyond float64 would not compare or print)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    return (v.bit_length() <= 1023 if isinstance(v, int) else math.isfinite(v)) and v >= 0


def _is_text(v) -> bool:
    return isinstance(v, str) and bool(v.strip())


def _check_types(doc: dict, what: str) -> None:
    """Every field that the gate, ``refresh`` and ``diff`` read, where present, has the type the report
    schema gives it (absent ones are reported where they are needed): ``ReportError`` naming the field
    and its value, never a TypeError from deep inside a diff."""
    def need(ok: bool, where: str, expected: str, value) -> None:
        if not ok:
            raise ReportError(f"{what}: report field {where} must be {expected}, got {_short_json(value)}")

    def optional(d: dict, name: str, at: str, check, expected: str) -> None:
        if d.get(name) is not None:
            need(check(d[name]), f"{at}.{name}", expected, d[name])

    if "divergences" in doc:
        divs = doc["divergences"]
        need(isinstance(divs, list), "divergences", "a list", divs)
        for i, d in enumerate(divs):
            at = f"divergences[{i}]"
            need(isinstance(d, dict), at, "an object", d)
            for f in KEY_FIELDS:
                if f in d:
                    need(_is_text(d[f]), f"{at}.{f}", "a non-empty string", d[f])
            if "count" in d:
                need(_is_int(d["count"], 1), f"{at}.count", "an integer >= 1", d["count"])
            optional(d, "case_id", at, _is_text, "a non-empty string")
            optional(d, "ulp", at, _is_number, "a finite number >= 0")
            for f in ("message", "regime", "quantity"):
                optional(d, f, at, lambda v: isinstance(v, str), "a string")
            for f in ("got", "expected"):
                if d.get(f) is not None:
                    need(isinstance(d[f], dict), f"{at}.{f}", "an object or null", d[f])
                    for g in ("hex", "decimal", "dtype"):
                        optional(d[f], g, f"{at}.{f}", lambda v: isinstance(v, str), "a string")
    if "run" in doc:
        run = doc["run"]
        need(isinstance(run, dict), "run", "an object", run)
        for part in ("adapters", "variants", "dtypes"):
            if part in run:
                v = run[part]
                need(isinstance(v, list) and all(isinstance(x, str) for x in v), f"run.{part}",
                     "a list of strings", v)
    if "cells" in doc:
        cells = doc["cells"]
        need(isinstance(cells, list), "cells", "a list", cells)
        for i, c in enumerate(cells):
            at = f"cells[{i}]"
            need(isinstance(c, dict), at, "an object", c)
            for f in ("adapter", "api", "variant", "dtype"):
                if f in c:
                    need(isinstance(c[f], str), f"{at}.{f}", "a string", c[f])
            for f in ("cases", "conforming"):
                if f in c:
                    need(_is_int(c[f]), f"{at}.{f}", "an integer >= 0", c[f])
            optional(c, "max_ulp", at, _is_number, "a finite number >= 0 or null")
            if "verdicts" in c:
                v = c["verdicts"]
                need(isinstance(v, dict) and all(_is_int(n) for n in v.values()), f"{at}.verdicts",
                     "an object of counts (integers >= 0)", v)
    if "verdicts" in doc:
        v = doc["verdicts"]
        need(isinstance(v, dict), "verdicts", "an object", v)
        if "severity" in v:
            need(isinstance(v["severity"], list) and all(isinstance(x, str) for x in v["severity"]),
                 "verdicts.severity", "a list of strings", v["severity"])
        if "meaning" in v:
            need(isinstance(v["meaning"], dict) and all(isinstance(x, str) for x in v["meaning"].values()),
                 "verdicts.meaning", "an object of strings", v["meaning"])
    if "environment" in doc:
        env = doc["environment"]
        need(isinstance(env, dict), "environment", "an object", env)
        adapters = env.get("adapters")
        if isinstance(adapters, dict):
            for name, version in adapters.items():
                need(version is None or isinstance(version, str), f"environment.adapters.{name}",
                     "a string or null", version)
        elif adapters is not None:
            need(isinstance(adapters, list), "environment.adapters", "a list or an object", adapters)
            for i, a in enumerate(adapters):
                at = f"environment.adapters[{i}]"
                need(isinstance(a, dict), at, "an object", a)
                optional(a, "name", at, lambda v: isinstance(v, str), "a string")
                optional(a, "version", at, lambda v: isinstance(v, str), "a string or null")
                if "available" in a:
                    need(isinstance(a["available"], bool), f"{at}.available", "true or false", a["available"])


def _field(doc: dict, what: str, *path):
    value = doc
    for i, name in enumerate(path):
        if not isinstance(value, dict) or name not in value:
            raise ReportError(f"{what}: report has no {'.'.join(path[:i + 1])!r}")
        value = value[name]
    return value


def load_report(path) -> dict:
    """Read a ``report.json``; anything else raises ``ReportError`` with a one-line message naming the
    file (and the field, for a document of the wrong shape)."""
    try:
        text = read_text_file(path)
    except OSError as e:
        raise ReportError(f"cannot read report {path}: {_reason(e)}") from None
    except ValueError as e:  # a NUL byte in the path
        raise ReportError(f"cannot read report {path!r}: {e}") from None
    try:
        doc = loads_json(text, allow_constants=False)
    except JSONError as e:
        raise ReportError(f"{path} is not an xent report: {e}") from None
    _require_report(doc, str(path))
    return doc


class _Group:
    """The divergences of one key in one report: how many cases, and the first one as the example."""

    __slots__ = ("key", "count", "example", "case_ids")

    def __init__(self, key: Key, first: dict):
        self.key, self.count, self.example, self.case_ids = key, 0, first, set()


def _groups(doc: dict, what: str) -> dict[Key, _Group]:
    divs = _field(doc, what, "divergences")
    if not isinstance(divs, list):
        raise ReportError(f"{what}: report field 'divergences' is not a list")
    groups: dict[Key, _Group] = {}
    for i, d in enumerate(divs):
        try:
            key = key_of(d)
        except (KeyError, TypeError):
            raise ReportError(f"{what}: divergence {i} lacks one of {', '.join(KEY_FIELDS)}") from None
        g = groups.get(key)
        if g is None:
            g = groups[key] = _Group(key, d)
        count = d.get("count", 1)
        g.count += count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else 1
        if isinstance(d.get("case_id"), str) and d["case_id"]:
            g.case_ids.add(d["case_id"])
    return groups


def _scope(doc: dict, what: str) -> tuple[set, set, set]:
    return tuple(set(_field(doc, what, "run", part)) for part in ("adapters", "variants", "dtypes"))


def _in_scope(entry: dict, scope) -> bool:
    adapters, variants, dtypes = scope
    return entry["adapter"] in adapters and entry["variant"] in variants and entry["dtype"] in dtypes


def _one_line(text, limit: int = 160) -> str:
    text = re.sub(r"\s+", " ", str(text)).strip()
    return text if len(text) <= limit else text[:limit - 1] + "…"


def describe(div: dict) -> str:
    """One short line on what a divergence did: got, expected, ulps, message, regime."""
    parts = []
    got, expected = div.get("got"), div.get("expected")
    if isinstance(got, dict) and got.get("decimal") is not None:
        g = f"got {got['decimal']}"
        if expected is None or (isinstance(expected, dict) and got.get("dtype") != expected.get("dtype")):
            g += f" ({got.get('dtype')})" if got.get("dtype") else ""
        parts.append(g)
    if isinstance(expected, dict) and expected.get("decimal") is not None:
        parts.append(f"expected {expected['decimal']}")
    if div.get("ulp") is not None and div.get("verdict") in ("inaccurate", "underflow", "wrong-sign", "contract"):
        parts.append(f"{_num(div['ulp'])} ulp")
    if div.get("quantity") and str(div["quantity"]).startswith("grad:"):
        parts.append(f"in d/d{str(div['quantity'])[5:]}")
    text = ", ".join(parts)
    if div.get("message"):
        text = f"{text}: {div['message']}" if text else str(div["message"])
    if div.get("regime"):
        text += f" (regime {div['regime']})"
    return _one_line(text or div.get("verdict", ""))


def _num(u) -> str:
    if u is None:
        return "-"
    if isinstance(u, int) and abs(u) < 10**6:
        return f"{u:,}"
    return f"{float(u):.3g}"


# -- baselines -----------------------------------------------------------------------------------

def _no_duplicate_names(pairs):
    obj = {}
    for k, v in pairs:
        if k in obj:
            raise BaselineError(f"field {k!r} appears twice in one object")
        obj[k] = v
    return obj


def validate_entries(entries, where: str = "baseline") -> list[dict]:
    """Check a list of baseline entries; return them normalised (every field, in a fixed order)."""
    if not isinstance(entries, list):
        raise BaselineError(f"{where}: 'entries' must be a list, got {type(entries).__name__}")
    out, seen = [], {}
    for i, e in enumerate(entries):
        at = f"{where}: entry {i}"
        if not isinstance(e, dict):
            raise BaselineError(f"{at}: must be an object, got {type(e).__name__}")
        unknown = sorted(set(e) - set(ENTRY_FIELDS))
        if unknown:
            raise BaselineError(f"{at}: unknown field {', '.join(map(show, unknown[:5]))} "
                                f"(fields: {', '.join(ENTRY_FIELDS)})")
        for f in KEY_FIELDS + ("reason",):
            if f not in e:
                raise BaselineError(f"{at}: missing field {f!r}")
            if not isinstance(e[f], str) or not e[f].strip():
                raise BaselineError(f"{at}: field {f!r} must be a non-empty string, got {_short_json(e[f])}")
        if e["verdict"] not in SEVERITY or e["verdict"] == "conforms":
            raise BaselineError(f"{at}: field 'verdict': {show(e['verdict'])} is not a divergence verdict "
                                f"(one of {', '.join(v for v in SEVERITY if v != 'conforms')})")
        for f in ("link", "example"):
            if e.get(f) is not None and (not isinstance(e[f], str) or not e[f].strip()):
                raise BaselineError(f"{at}: field {f!r} must be a non-empty string or null, got {_short_json(e[f])}")
        count = e.get("count", 0)
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise BaselineError(f"{at}: field 'count' must be an integer >= 0, got {_short_json(count)}")
        key = key_of(e)
        if key in seen:
            raise BaselineError(f"{at}: duplicate key ({key.text()}), already entry {seen[key]}")
        seen[key] = i
        out.append({**{f: e[f] for f in KEY_FIELDS}, "reason": e["reason"], "link": e.get("link"),
                    "example": e.get("example"), "count": count})
    return out


def load_baseline(path, missing_ok: bool = False) -> list[dict]:
    """The entries of a baseline file, validated (``BaselineError`` names file, entry and field).

    With ``missing_ok``, a file that does not exist is an empty baseline.
    """
    try:
        text = read_text_file(path)
    except FileNotFoundError:
        if missing_ok:
            return []
        raise BaselineError(f"{path}: no such baseline file") from None
    except OSError as e:
        raise BaselineError(f"{path}: cannot read baseline: {_reason(e)}") from None
    except ValueError as e:  # a NUL byte in the path
        raise BaselineError(f"{path!r}: cannot read baseline: {e}") from None
    try:
        doc = loads_json(text, allow_constants=False, object_pairs_hook=_no_duplicate_names)
    except JSONError as e:
        raise BaselineError(f"{path}: {e}") from None
    except BaselineError as e:
        raise BaselineError(f"{path}: {e}") from None
    if not isinstance(doc, dict):
        raise BaselineError(f"{path}: a baseline is a JSON object, got {type(doc).__name__}")
    if doc.get("schema") != BASELINE_SCHEMA:
        raise BaselineError(f"{path}: field 'schema' must be {BASELINE_SCHEMA!r}, got {_short_json(doc.get('schema'))}")
    unknown = sorted(set(doc) - {"schema", "entries"})
    if unknown:
        raise BaselineError(f"{path}: unknown top-level field {', '.join(map(show, unknown[:5]))}")
    if "entries" not in doc:
        raise BaselineError(f"{path}: missing field 'entries'")
    return validate_entries(doc["entries"], str(path))


def write_baseline(path, entries) -> Path:
    """Write a baseline file atomically (indent 1, trailing newline, mode 0666 & ~umask)."""
    p = Path(path)
    entries = validate_entries(list(entries), str(p))
    doc = {"schema": BASELINE_SCHEMA, "entries": entries}
    text = json.dumps(doc, indent=1, ensure_ascii=False, allow_nan=False) + "\n"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (read from a "\udxxx" escape): keep it escaped
        text = json.dumps(doc, indent=1, ensure_ascii=True, allow_nan=False) + "\n"
    try:
        return write_atomic(p, text)
    except OSError as e:
        raise BaselineError(f"{path}: cannot write baseline: {_reason(e)}") from None
    except ValueError as e:  # a NUL byte in the path
        raise BaselineError(f"{path!r}: cannot write baseline: {e}") from None


def unreviewed_reason(example: dict, meaning: str | None = None) -> str:
    """``UNREVIEWED: <what the verdict means>: <the example's numbers>``, on one line."""
    what = f"{meaning}; e.g. " if meaning else ""
    return _one_line(f"{UNREVIEWED}: {what}{describe(example)}", 240)


def refresh(doc: dict, entries, what: str = "report") -> list[dict]:
    """The baseline rewritten from this report.

    Every key that occurs gets an entry, keeping the reason and link already written for it (new
    keys get an ``UNREVIEWED: ...`` reason); its count is this run's, and its example stays the same
    case when that case still diverges this way, else becomes this run's first. Entries of keys
    within the run's scope that no longer occur are dropped; entries outside its scope are kept
    unchanged. Sorted by key (verdicts by severity). ``what`` names the report in a ``ReportError``
    (e.g. its path).
    """
    _require_report(doc, what)
    entries = validate_entries(list(entries))
    groups = _groups(doc, what)
    for key in groups:
        if key.verdict not in SEVERITY or key.verdict == "conforms":
            raise ReportError(f"{what}: divergence verdict {_short_json(key.verdict)} ({key.text()}) is not one a "
                              f"baseline can list (one of {', '.join(v for v in SEVERITY if v != 'conforms')})")
    scope = _scope(doc, what)
    old = {key_of(e): e for e in entries}
    meaning = doc.get("verdicts", {}).get("meaning", {})
    out = [e for e in entries if key_of(e) not in groups and not _in_scope(e, scope)]
    for key, g in groups.items():
        prev = old.get(key)
        example = g.example.get("case_id")
        if prev is not None and prev["example"] in g.case_ids:
            example = prev["example"]
        out.append({**key._asdict(),
                    "reason": prev["reason"] if prev else unreviewed_reason(g.example, meaning.get(key.verdict)),
                    "link": prev["link"] if prev else None,
                    "example": example, "count": g.count})
    return sorted(out, key=_sort_key)


# -- the gate ------------------------------------------------------------------------------------

@dataclass
class Divergent:
    """One key of a report: how many cases diverged this way, a representative divergence, and the
    baseline entry that accepts it (None for a new key)."""

    key: Key
    count: int
    example: dict
    entry: dict | None = None


@dataclass
class GateResult:
    new: list[Divergent] = field(default_factory=list)  # keys not in the baseline: the gate fails
    known: list[Divergent] = field(default_factory=list)  # keys the baseline accepts
    stale: list[dict] = field(default_factory=list)  # entries in scope whose key did not occur
    unreviewed: list[dict] = field(default_factory=list)  # matched entries whose reason is UNREVIEWED
    out_of_scope: list[dict] = field(default_factory=list)  # entries this run could not check

    @property
    def ok(self) -> bool:
        return not self.new


def check(doc: dict, entries) -> GateResult:
    """The gate: this report against a baseline (entries as ``load_baseline`` returns them)."""
    _require_report(doc)
    entries = validate_entries(list(entries))
    groups = _groups(doc, "report")
    scope = _scope(doc, "report")
    by_key = {key_of(e): e for e in entries}
    result = GateResult()
    for key in sorted(groups, key=lambda k: _sort_key(k._asdict())):
        g = groups[key]
        item = Divergent(key, g.count, g.example, by_key.get(key))
        if item.entry is None:
            result.new.append(item)
        else:
            result.known.append(item)
            if item.entry["reason"].startswith(UNREVIEWED):
                result.unreviewed.append(item.entry)
    for e in sorted(entries, key=_sort_key):
        if key_of(e) in groups:
            continue
        (result.stale if _in_scope(e, scope) else result.out_of_scope).append(e)
    return result


def format_gate(result: GateResult) -> str:
    """The text the CLI prints: new keys, then warnings, then one final line."""
    lines = []
    for d in result.new:
        case = d.example.get("case_id", "?")
        lines.append(f"NEW {d.key.text()}: {d.count} case{'s' * (d.count != 1)}, e.g. case {case}: "
                     f"{describe(d.example)}")
    for e in result.stale:
        lines.append(f"warning: no longer occurs: {key_of(e).text()} ({_one_line(e['reason'], 120)})")
    if result.unreviewed:
        lines.append(f"warning: {len(result.unreviewed)} matched baseline "
                     f"entr{'ies' if len(result.unreviewed) != 1 else 'y'} still {UNREVIEWED}")
    n_cases = sum(d.count for d in result.new)
    tail = (f"{len(result.known)} known, {len(result.stale)} stale, {len(result.unreviewed)} unreviewed, "
            f"{len(result.out_of_scope)} out of scope")
    if result.ok:
        lines.append(f"gate passed: no new divergences ({tail})")
    else:
        lines.append(f"gate FAILED: {len(result.new)} new divergence key{'s' * (len(result.new) != 1)} "
                     f"({n_cases} case{'s' * (n_cases != 1)}) not in the baseline ({tail})")
    return "\n".join(lines) + "\n"


# -- diffs ---------------------------------------------------------------------------------------

@dataclass
class KeyChange:
    """A key present in one report only; ``count`` cases in the report that has it."""

    key: Key
    count: int
    example: dict


@dataclass
class CellChange:
    """A cell run by both reports whose numbers moved; ``reasons`` says which and how."""

    cell: tuple[str, str, str, str]
    reasons: list[str]
    old: dict
    new: dict


@dataclass
class DiffResult:
    appeared: list[KeyChange] = field(default_factory=list)  # in new, not in old (cell run by both)
    fixed: list[KeyChange] = field(default_factory=list)  # in old, not in new (cell run by both)
    worse: list[CellChange] = field(default_factory=list)
    better: list[CellChange] = field(default_factory=list)
    versions: list[tuple[str, str | None, str | None]] = field(default_factory=list)  # name, old, new
    only_old: list[tuple] = field(default_factory=list)  # cells the new report did not run: not compared
    only_new: list[tuple] = field(default_factory=list)  # cells the old report did not run: not compared

    @property
    def changed(self) -> bool:
        return bool(self.appeared or self.fixed or self.worse or self.better or self.versions)


def _cells(doc: dict, what: str) -> dict[tuple, dict]:
    cells = _field(doc, what, "cells")
    out = {}
    for i, c in enumerate(cells):
        try:
            out[(c["adapter"], c["api"], c["variant"], c["dtype"])] = c
        except (KeyError, TypeError):
            raise ReportError(f"{what}: cell {i} lacks one of adapter, api, variant, dtype") from None
    return out


def _versions(doc: dict) -> dict[str, str | None]:
    adapters = doc.get("environment", {}).get("adapters", [])
    if isinstance(adapters, dict):  # name -> version
        return dict(adapters)
    return {a["name"]: (a.get("version") if a.get("available", True) else None)
            for a in adapters if isinstance(a, dict) and "name" in a}


def _worst(cell: dict, severity) -> str:
    present = [v for v, n in cell.get("verdicts", {}).items() if n]
    return min(present, key=lambda v: _verdict_rank(v, severity)) if present else "conforms"


def _share(cell: dict) -> str:
    cases = cell.get("cases", 0)
    pct = 100.0 * cell.get("conforming", 0) / cases if cases else 0.0
    return f"{cell.get('conforming', 0)}/{cases} ({pct:.3g}%)"


def _compare_cells(old: dict, new: dict, severity) -> tuple[list[str], list[str]]:
    worse, better = [], []
    w_old, w_new = _worst(old, severity), _worst(new, severity)
    r_old, r_new = _verdict_rank(w_old, severity), _verdict_rank(w_new, severity)
    if r_new != r_old:
        (worse if r_new < r_old else better).append(f"worst verdict {w_old} -> {w_new}")
    u_old, u_new = old.get("max_ulp"), new.get("max_ulp")
    if u_old is not None and u_new is not None:
        # ulps below 1 are all "exact": 0 -> 2 ulp is noise, 0 -> 3 is not
        if u_new > ULP_GROWTH * max(u_old, 1):
            worse.append(f"max ulp {_num(u_old)} -> {_num(u_new)}")
        elif u_old > ULP_GROWTH * max(u_new, 1):
            better.append(f"max ulp {_num(u_old)} -> {_num(u_new)}")
    c_old, n_old = old.get("conforming", 0), old.get("cases", 0)
    c_new, n_new = new.get("conforming", 0), new.get("cases", 0)
    if n_old and n_new and c_new * n_old != c_old * n_new:  # compare c_new/n_new with c_old/n_old exactly
        (worse if c_new * n_old < c_old * n_new else better).append(
            f"conforming {_share(old)} -> {_share(new)}")
    return worse, better


def diff(old_doc: dict, new_doc: dict) -> DiffResult:
    """What changed from ``old_doc`` to ``new_doc`` (e.g. two versions of a framework).

    Per key: ``appeared`` and ``fixed``, both only for cells that both reports ran (a key of a cell
    the other report did not run is not compared; those cells are listed in ``only_old`` /
    ``only_new``). Per cell run by both: ``worse`` when its worst verdict got more severe (order of
    ``verdicts.severity``), its max ulp grew by more than 2x (from at least 1 ulp), or its
    conforming share dropped; ``better`` the reverse (a cell can be both, for different reasons).
    ``versions``: adapters whose version differs (None: absent or unavailable).
    """
    _require_report(old_doc, "old report")
    _require_report(new_doc, "new report")
    severity = list(_field(new_doc, "new report", "verdicts", "severity"))
    severity += [v for v in old_doc.get("verdicts", {}).get("severity", []) if v not in severity]
    g_old, g_new = _groups(old_doc, "old report"), _groups(new_doc, "new report")
    c_old, c_new = _cells(old_doc, "old report"), _cells(new_doc, "new report")
    both = c_old.keys() & c_new.keys()
    result = DiffResult()
    order = lambda k: _sort_key(k._asdict())  # noqa: E731
    for key in sorted(g_new.keys() - g_old.keys(), key=order):
        if key.cell in both:
            result.appeared.append(KeyChange(key, g_new[key].count, g_new[key].example))
    for key in sorted(g_old.keys() - g_new.keys(), key=order):
        if key.cell in both:
            result.fixed.append(KeyChange(key, g_old[key].count, g_old[key].example))
    for cell in sorted(both):
        worse, better = _compare_cells(c_old[cell], c_new[cell], severity)
        if worse:
            result.worse.append(CellChange(cell, worse, c_old[cell], c_new[cell]))
        if better:
            result.better.append(CellChange(cell, better, c_old[cell], c_new[cell]))
    v_old, v_new = _versions(old_doc), _versions(new_doc)
    for name in sorted(v_old.keys() | v_new.keys()):
        if v_old.get(name) != v_new.get(name):
            result.versions.append((name, v_old.get(name), v_new.get(name)))
    result.only_old = sorted(c_old.keys() - c_new.keys())
    result.only_new = sorted(c_new.keys() - c_old.keys())
    return result


def format_diff(result: DiffResult) -> str:
    """Sections appeared, fixed, worse, better, versions (and not compared), one line per item."""
    def cases(n):
        return f"{n} case{'s' * (n != 1)}"

    sections = [
        ("appeared", [f"  {k.key.text()}: {cases(k.count)}, e.g. case {k.example.get('case_id', '?')}: "
                      f"{describe(k.example)}" for k in result.appeared]),
        ("fixed", [f"  {k.key.text()}: was {cases(k.count)}, e.g. case {k.example.get('case_id', '?')}"
                   for k in result.fixed]),
        ("worse", [f"  {_cell_text(c.cell)}: {'; '.join(c.reasons)}" for c in result.worse]),
        ("better", [f"  {_cell_text(c.cell)}: {'; '.join(c.reasons)}" for c in result.better]),
        ("versions", [f"  {name}: {old or '(absent)'} -> {new or '(absent)'}" for name, old, new in result.versions]),
    ]
    lines = []
    for title, items in sections:
        lines.append(f"{title} ({len(items)})")
        lines += items or ["  none"]
    if result.only_old or result.only_new:
        lines.append(f"not compared ({len(result.only_old) + len(result.only_new)} cells run by one report only)")
        lines += [f"  only in old: {_cell_text(c)}" for c in result.only_old]
        lines += [f"  only in new: {_cell_text(c)}" for c in result.only_new]
    return "\n".join(lines) + "\n"
