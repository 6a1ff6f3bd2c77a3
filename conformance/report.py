"""Writing a run down: ``report.json`` (schema ``xent-report/1``) and ``summary.md``.

``report.json`` is the complete record (environment, run parameters, budgets, cells, every
divergence with its hex-exact case); ``summary.md`` is what a person reads first: the conformance
matrix, then the divergences grouped by verdict class, one line each. The summary is rendered from
the JSON document alone, so it can be rebuilt from a saved report. Both are written atomically.
"""
from __future__ import annotations

import datetime
import json
import platform
import sys
from collections import defaultdict
from importlib import metadata
from pathlib import Path

import numpy as np

from cases import Case, FORMATS
from . import budgets
from .files import write_atomic
from .numbers import shortest
from .verdict import MEANING, SEVERITY

SCHEMA = "xent-report/2"
SCHEMA_FILE = Path(__file__).with_name("report.schema.json")
LINES_PER_VERDICT = 25  # summary.md lists this many divergences per class; report.json has all


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def environment(adapter_info: list[dict]) -> dict:
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "packages": {d: _version(d) for d in ("numpy", "mpmath", "python-flint", "gmpy2", "ml_dtypes",
                                               "xent-conformance")},
        "adapters": adapter_info,
    }


def canonical_order(doc: dict) -> dict:
    """Cells, divergences and not-applicable counts in one order whatever produced them (one
    process or merged jobs): variant, dtype, adapter as the run lists them, then API, verdict
    severity and regime; oracle errors by variant, dtype and case id."""
    run = doc["run"]
    vi = {v: i for i, v in enumerate(run["variants"])}
    di = {d: i for i, d in enumerate(run["dtypes"])}
    ai = {a["name"]: i for i, a in enumerate(doc["environment"]["adapters"])}
    si = {v: i for i, v in enumerate(SEVERITY)}

    def key(x):
        return (vi.get(x["variant"], len(vi)), di.get(x["dtype"], len(di)), ai.get(x["adapter"], len(ai)),
                x.get("api", ""), si.get(x.get("verdict"), len(si)), x.get("regime", ""))

    for k in ("cells", "divergences", "not_applicable"):
        doc[k] = sorted(doc[k], key=key)
    doc["oracle_errors"] = sorted(doc.get("oracle_errors", []), key=lambda e: (
        vi.get(e["variant"], len(vi)), di.get(e["dtype"], len(di)), e["case_id"]))
    return doc


def build(result, argv: list[str] | None = None) -> dict:
    """The report.json document of a ``runner.RunResult``."""
    return canonical_order({
        "schema": SCHEMA,
        "environment": environment(result.adapters),
        "run": {
            "seed": result.seed, "examples": result.examples, "search": result.search,
            "shrink": result.shrink, "answers": result.answers, "divergent_answers": result.divergent_answers,
            "duration_s": result.duration_s,
            "finished_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "adapters": [a["name"] for a in result.adapters if a["available"]],
            "variants": result.variants, "dtypes": result.dtypes,
            "argv": list(sys.argv[1:] if argv is None else argv),
        },
        "budgets": budgets.table(),
        "verdicts": {"severity": list(SEVERITY), "meaning": MEANING},
        "oracle": result.oracle,
        "cells": [c.to_dict() for c in result.cells],
        "not_applicable": result.not_applicable,
        "divergences": [_with_explanation(d) for d in result.divergences],
        "oracle_errors": result.oracle_errors,
    })


def minimal(div: dict) -> dict:
    """A divergence as its shrunk case shows it (the reproducer's case), or as it is."""
    if div.get("shrunk"):
        return {**div, **{k: v for k, v in div["shrunk"].items() if k not in ("steps", "calls")}}
    return div


def _with_explanation(d: dict) -> dict:
    d = dict(d)
    d.setdefault("repro", None)
    d["explanation"] = explain(minimal(d))
    return d


def attach_repros(doc: dict, adapters_by_name: dict) -> dict[str, str]:
    """Write each divergence's reproducer source (of its shrunk case when it has one) into a dict
    ``relative path -> source`` and set the divergences' ``repro`` fields; adapters without a
    snippet for the API get ``repro: null``."""
    return place_repros(doc, repro_sources(doc, adapters_by_name))


def repro_sources(doc: dict, adapters_by_name: dict) -> list[str | None]:
    """The reproducer source of each divergence (None: no snippet for its API); a snippet that
    raises is noted in the divergence's message instead."""
    from . import repro

    versions = {a["name"]: a.get("version", "") for a in doc["environment"]["adapters"]}
    sources: list[str | None] = []
    for d in doc["divergences"]:
        a = adapters_by_name.get(d["adapter"])
        src = None
        if a is not None:
            try:
                src = repro.for_divergence(minimal(d), a, explanation=d["explanation"],
                                           versions=f"{d['adapter']} {versions.get(d['adapter'], '')}".strip())
            except Exception as e:  # a snippet bug must not lose the run's report
                src = None
                d["message"] = (d["message"] + f" [no reproducer: {type(e).__name__}: {e}]").strip()
        sources.append(src)
    return sources


def place_repros(doc: dict, sources: list[str | None]) -> dict[str, str]:
    """Paths for the divergences' reproducer sources (one per divergence, in the document's order):
    ``repro/<case_id>.py`` of the case it shows, ``-2``, ``-3``, ... for a case several cells
    diverge on. Sets each divergence's ``repro``; returns ``relative path -> source``."""
    placed: dict[str, str] = {}
    for d, src in zip(doc["divergences"], sources, strict=True):
        if src is None:
            d["repro"] = None
            continue
        case_id = minimal(d)["case_id"]
        path, k = f"repro/{case_id}.py", 1
        while path in placed:
            k += 1
            path = f"repro/{case_id}-{k}.py"
        placed[path] = src
        d["repro"] = path
    return placed


def write(doc: dict, out_dir, repros: dict[str, str] | None = None) -> tuple[Path, Path]:
    """Write ``report.json``, ``summary.md``, ``index.html`` and ``repro/<case_id>.py`` (from
    ``repros``, path -> source; reproducers of an earlier run in the folder are removed) into
    ``out_dir`` (created if needed). Returns the paths of report.json and summary.md."""
    from . import html

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "report.json", out / "summary.md"
    repros = repros or {}
    if repros:
        (out / "repro").mkdir(exist_ok=True)
    for rel, src in sorted(repros.items()):
        write_atomic(out / rel, src)
    if (out / "repro").is_dir():
        for old in (out / "repro").glob("*.py"):
            if f"repro/{old.name}" not in repros:
                old.unlink()
    write_atomic(json_path, json.dumps(doc, indent=1, sort_keys=False, allow_nan=False) + "\n")
    write_atomic(md_path, summary(doc))
    page = {**doc, "divergences": [dict(d, repro_source=repros.get(d.get("repro") or "")) for d in doc["divergences"]]}
    write_atomic(out / "index.html", html.render(page))
    return json_path, md_path


# -- summary.md ----------------------------------------------------------------------------------

def _ulp_text(u) -> str:
    if u is None:
        return "-"
    return f"{u:,}" if isinstance(u, int) and u < 10**6 else f"{float(u):.3g}"


def _verdict_counts(counts: dict) -> str:
    bad = [(v, n) for v, n in counts.items() if v != "conforms" and n]
    return ", ".join(f"{v} {n}" for v, n in sorted(bad, key=lambda vn: SEVERITY.index(vn[0])))


def aggregate(doc: dict) -> dict:
    """(adapter, variant) -> cases, conforming, searched, searched_conforming, worst ULP and
    verdict counts, over every API and dtype (the matrix of summary.md and index.html)."""
    agg: dict = {}
    for c in doc["cells"]:
        a = agg.setdefault((c["adapter"], c["variant"]),
                           {"cases": 0, "conforming": 0, "searched": 0, "searched_conforming": 0,
                            "max_ulp": None, "verdicts": defaultdict(int)})
        a["cases"] += c["cases"]
        a["conforming"] += c["conforming"]
        a["searched"] += c.get("searched", 0)
        a["searched_conforming"] += c.get("searched_conforming", 0)
        if c.get("max_ulp") is not None:
            a["max_ulp"] = c["max_ulp"] if a["max_ulp"] is None else max(a["max_ulp"], c["max_ulp"])
        for v, n in c.get("verdicts", {}).items():
            a["verdicts"][v] += n
    return agg


def matrix(doc: dict) -> list[str]:
    """Adapters x variants: % conforming, worst ULP, verdict counts (all APIs and dtypes)."""
    variants = doc["run"]["variants"]
    controls = {a["name"] for a in doc["environment"]["adapters"] if a.get("control")}
    agg = aggregate(doc)
    lines = ["| adapter | " + " | ".join(variants) + " |", "|---" * (len(variants) + 1) + "|"]
    for name in doc["run"]["adapters"]:
        row = [f"{name} (control)" if name in controls else name]
        for v in variants:
            a = agg.get((name, v))
            if a is None or not a["cases"]:
                row.append("n/a")
                continue
            # The share over the corpus and shared cases only: the targeted search steers each cell
            # towards its own largest errors, so its cases are counted apart.
            shared = a["cases"] - a["searched"]
            shared_ok = a["conforming"] - a["searched_conforming"]
            if a["searched"] and shared:
                text = (f"{100.0 * shared_ok / shared:.4g}% of {shared} (+{a['searched']} searched, "
                        f"{a['searched_conforming']} conform), max {_ulp_text(a['max_ulp'])} ulp")
            else:
                pct = 100.0 * a["conforming"] / a["cases"]
                text = f"{pct:.4g}% of {a['cases']}, max {_ulp_text(a['max_ulp'])} ulp"
            counts = _verdict_counts(a["verdicts"])
            row.append(text + (f"; {counts}" if counts else ""))
        lines.append("| " + " | ".join(row) + " |")
    return lines


_SYMBOL = {"logits": "x", "probs": "p", "weights": "w", "pos_weight": "q", "class_weights": "cw"}


def _values(arr: np.ndarray, dtype: str, limit: int = 4) -> str:
    flat = arr.ravel()
    f = FORMATS[dtype]
    show = [str(int(v)) if arr.dtype.kind in "iu" else shortest(float(v), f) for v in flat[:limit]]
    if flat.size == 1 and arr.ndim <= 1:
        return show[0]
    more = f", … ({flat.size} values)" if flat.size > limit else ""
    return "[" + ", ".join(show) + more + "]"


def _selected(case: Case, name: str, quantity: str, index) -> np.ndarray:
    """The part of input ``name`` that the output element at ``index`` depends on."""
    arr = case[name]
    reduced_value = quantity == "value" and case.options.get("reduction", "none") != "none"
    if index is None or reduced_value or case.variant in budgets.GROUPS["sampled"]:
        return arr
    main = case.get("logits", case.get("probs"))
    if not case.spec.has_axis:
        return np.broadcast_to(arr, main.shape)[tuple(index)] if arr.ndim else arr
    axis = case.class_axis
    full_index = list(index)
    if len(full_index) == main.ndim - 1:  # a per-row output: put the class axis back
        full_index.insert(axis, slice(None))
    else:
        full_index[axis] = slice(None)
    if arr.shape == main.shape:
        return arr[tuple(full_index)]
    if name == "class_weights":
        return arr
    unit_index = tuple(i for k, i in enumerate(full_index) if k != axis)
    return arr[unit_index]


def describe_inputs(case: Case, quantity: str | None, index) -> str:
    binary = not case.spec.has_axis
    parts = []
    for name in (i.name for i in case.spec.inputs if i.name in case.inputs):
        symbol = _SYMBOL.get(name, ("z" if binary else "y") if name == "labels" else name)
        parts.append(f"{symbol}={_values(_selected(case, name, quantity, index), case.dtype)}")
    defaults = case.spec.defaults()
    parts += [f"{k}={v}" for k, v in case.options.items() if v != defaults.get(k)]
    return ", ".join(parts)


def _quantity_name(variant: str, quantity: str | None) -> str:
    if quantity and quantity.startswith("grad:"):
        return f"gradient d/d{quantity[5:]}"
    return {"log_softmax": "log-probability", "softmax": "probability"}.get(variant, "loss")


def explain(div: dict) -> str:
    """One line: who, what, and the inputs of the worst element, exact in the case dtype."""
    case = Case.from_dict(div["case"])
    what = _quantity_name(div["variant"], div["quantity"])
    exp = div["expected"]["decimal"] if div["expected"] else None
    got = div["got"]["decimal"] if div["got"] else None
    v = div["verdict"]
    if v == "raised":
        body = f"raised `{div['message']}` where the {what} is defined"
    elif v == "accepted-invalid":
        body = f"returned {got} for an input the oracle rejects ({div['message']})"
    elif v in ("dtype", "shape") or (got is None and div["message"]):
        body = div["message"]
    elif v in ("crash", "timeout"):
        body = div["message"] or MEANING[v]
    else:
        body = f"returned {got} where the {what} is {exp}"
        if div["ulp"] is not None and v in ("inaccurate", "underflow", "wrong-sign", "contract"):
            body += f" ({_ulp_text(div['ulp'])} ulp, allowed {div['allowance']:g}"
            cond = div.get("condition")
            if cond is not None:
                body += f"; condition number {cond if isinstance(cond, str) else f'{cond:.3g}'}"
            body += ")"
    where = f" at {tuple(div['index'])}" if div["index"] else ""
    return (f"`{div['adapter']}/{div['api']}` {div['variant']} {div['dtype']}: {v}{where} — {body} "
            f"({describe_inputs(case, div['quantity'], div['index'])}) [case {div['case_id']}]")


def _entry_line(d: dict) -> str:
    text = d.get("explanation") or explain(minimal(d))
    extra = [f"{d['count']} answer{'s' if d['count'] != 1 else ''}" if "count" in d else "",
             f"regime {d['regime']}" if d.get("regime") else "",
             f"reproducer `{d['repro']}`" if d.get("repro") else ""]
    extra = "; ".join(e for e in extra if e)
    return text + (f" ({extra})" if extra else "")


def _budget_lines(table: dict) -> list[str]:
    lines = ["| group | dtypes | quantity | unreduced | reduced | reason |", "|---|---|---|---|---|---|"]
    for b in table["bases"]:
        lines.append(f"| {b['group']} | {', '.join(b['dtypes'])} | {b['quantity']} | {b['none']} | "
                     f"{b['reduced']} | {b['reason']} |")
    lines += ["", "Reduction terms (k ceil(log2 n) + c ulps, n units):", ""]
    for t in table["reduction_terms"]:
        lines.append(f"- `{t['reduction']}`: value {t['value']['per_log2_n']} ceil(log2 n) + "
                     f"{t['value']['constant']}, gradient {t['grad']['per_log2_n']} ceil(log2 n) + "
                     f"{t['grad']['constant']}: {t['reason']}")
    lines += [f"- Classes: {table['class_term']}", f"- Conditioning: {table['conditioning_term']}"]
    return lines


def summary(doc: dict) -> str:
    run = doc["run"]
    env = doc["environment"]
    lines = ["# xent conformance report", "",
             f"Seed {run['seed']}, {run['examples']} shared generated cases per variant and dtype (plus the corpus), "
             f"{run.get('search', 0)} targeted-search cases per cell, shrink budget {run.get('shrink', 0)} calls; "
             f"{run.get('answers', 0)} answers, {run.get('divergent_answers', 0)} divergent, in "
             f"{len(doc['divergences'])} distinct divergences (cell x verdict x input regime); "
             f"{run['duration_s']:.1f} s, Python {env['python']} on {env['platform']}.", "",
             "Verdicts are condition-aware: each answer is allowed 2 u sens / ulp(truth) ulps on top of its "
             "base budget, so `inaccurate` means more error than the input's conditioning explains; "
             "each divergence gives the condition number (sens / |truth|) at its worst element.", ""]
    lines += ["## Adapters", ""]
    for a in env["adapters"]:
        state = (a.get("version") or "available") if a["available"] else f"unavailable: {a.get('reason')}"
        lines.append(f"- `{a['name']}`{' (control)' if a.get('control') else ''}: {state}")
    lines += ["", "## Conformance matrix", "",
              "Share of the corpus and shared generated cases conforming (the targeted-search cases, which "
              "each cell steers towards its own largest errors, are counted apart), worst ULP distance, and "
              "the count of each other verdict over all answers, every API and dtype.", ""]
    lines += matrix(doc)
    lines += ["", "## Cells", "", "| adapter | api | variant | dtype | cases | conforming | max ulp | verdicts |",
              "|---|---|---|---|---|---|---|---|"]
    for c in doc["cells"]:
        lines.append(f"| {c['adapter']} | {c['api']} | {c['variant']} | {c['dtype']} | {c['cases']} | "
                     f"{c['conforming']} | {_ulp_text(c['max_ulp'])} | {_verdict_counts(c['verdicts'])} |")
    lines += ["", "## Divergences", ""]
    by_verdict = defaultdict(list)
    for d in doc["divergences"]:
        by_verdict[d["verdict"]].append(d)
    if not by_verdict:
        lines.append("None: every answer conforms.")
    for v in SEVERITY:
        divs = by_verdict.get(v)
        if not divs:
            continue
        lines += [f"### {v} ({len(divs)} distinct, {sum(d.get('count', 1) for d in divs)} answers)", "",
                  f"{MEANING[v][0].upper()}{MEANING[v][1:]}.", ""]
        divs = sorted(divs, key=lambda d: -d.get("count", 1))
        lines += [f"- {_entry_line(d)}" for d in divs[:LINES_PER_VERDICT]]
        if len(divs) > LINES_PER_VERDICT:
            lines.append(f"- … and {len(divs) - LINES_PER_VERDICT} more in report.json")
        lines.append("")
    if doc["oracle_errors"]:
        lines += [f"## Oracle errors ({len(doc['oracle_errors'])})", "",
                  "The oracle raised on these cases; they got no verdict. Each is a bug in the oracle.", ""]
        lines += [f"- {e['variant']} {e['dtype']} [case {e['case_id']}]: `{e['error'][:200]}`"
                  for e in doc["oracle_errors"][:LINES_PER_VERDICT]]
        if len(doc["oracle_errors"]) > LINES_PER_VERDICT:
            lines.append(f"- … and {len(doc['oracle_errors']) - LINES_PER_VERDICT} more in report.json")
        lines.append("")
    lines += ["## Oracle", "", "| variant | dtype | cases | invalid | undecided | max precision (bits) | seconds |",
              "|---|---|---|---|---|---|---|"]
    for o in doc["oracle"]:
        lines.append(f"| {o['variant']} | {o['dtype']} | {o['cases']} | {o['invalid']} | {o['undecided']} | "
                     f"{o['max_prec']} | {o['seconds']} |")
    lines += ["", "## Budgets", ""] + _budget_lines(doc["budgets"])
    return "\n".join(lines) + "\n"
