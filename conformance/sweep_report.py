"""The report of a sweep: ``sweep.json`` (schema ``xent-sweep/1``), ``summary.md``, the
single-element cases of the worst inputs (``worst/<case_id>.json``) and ``error.svg``, the largest
error per bin of inputs for each API and quantity."""
from __future__ import annotations

import datetime
import json
import math
from fractions import Fraction
from pathlib import Path

import numpy as np

from cases import FORMATS, Case
from . import budgets
from .files import write_atomic
from .numbers import hex_of, shortest
from .sweep import (CASES_PER_CLASS, MAX_CASE_FILES, SCHEMA, Plan, SweepResult, _options_text, nan_count,
                    pattern_of_key, probe_case, total_key, value_of_pattern)
from .sweep_judge import CONFORMS, PLOT_BINS, QStats
from .verdict import MEANING, SEVERITY

# -- the report -----------------------------------------------------------------------------------------

def _num(v: float | None, dtype: str) -> dict | None:
    if v is None:
        return None
    f = FORMATS.get(dtype, FORMATS["float64"])
    return {"hex": hex_of(v), "decimal": shortest(float(v), f)}


def _ulp_json(u):
    if u is None or not np.isfinite(u):
        return None if u is None or np.isnan(u) else "inf"
    return int(u) if u < 2 ** 53 else float(u)


def _worst_case(plan: Plan, key: int, z: float) -> Case:
    f = plan.format
    p = pattern_of_key(key, f)
    x = f.from_bits(np.array([p], dtype=f.uint_dtype))
    return probe_case(plan.variant, plan.dtype, plan.options, x=x, z=z)


def _qdoc(plan: Plan, q: QStats, z: float, api: str, quantity: str, files: dict) -> dict:
    f = plan.format
    worst = []
    for code in sorted(q.worst):
        verdict = SEVERITY[code]
        for n, (u, key, exp, got, allowance, cond) in enumerate(q.worst[code]):
            x = value_of_pattern(pattern_of_key(key, f), f)
            case = _worst_case(plan, key, z)
            entry = {"verdict": verdict, "input": _num(x, plan.dtype),
                     "pattern": f"{pattern_of_key(key, f):#0{f.bits // 4 + 2}x}", "ulp": _ulp_json(u),
                     "allowance": None if allowance is None else round(allowance, 3),
                     "expected": _num(exp, plan.dtype), "got": _num(got, "float64"),
                     "case_id": case.case_id}
            limit = 1 if verdict == "conforms" else CASES_PER_CLASS
            if n < limit and (verdict != "conforms" or (u or 0) > 0) and len(files) < MAX_CASE_FILES:
                files.setdefault(case.case_id, (case, f"{api} {quantity} {verdict}"))
            worst.append(entry)
    spans = {SEVERITY[c]: [_num(value_of_pattern(pattern_of_key(a, f), f), plan.dtype),
                           _num(value_of_pattern(pattern_of_key(b, f), f), plan.dtype)]
             for c, (a, b) in sorted(q.span.items())}
    return {
        "count": q.count,
        "max_ulp": _ulp_json(q.max_ulp),
        "max_bits": None if q.max_ulp is None else round(float(np.log2(1 + q.max_ulp)), 3),
        "verdicts": {SEVERITY[c]: int(n) for c, n in enumerate(q.verdicts) if n},
        "error_bits_histogram": [int(n) for n in q.hist], "no_number": int(q.no_number),
        "returned_dtypes": dict(sorted(q.dtypes.items())),
        "nan_inputs": {SEVERITY[c]: int(n) for c, n in enumerate(q.nan_inputs) if n},
        "spans": spans,
        "worst": worst,
    }


def build(result: SweepResult, argv: list[str]) -> tuple[dict, dict]:
    """(sweep.json document, {case_id: (Case, note)} of the worst cases to write)."""
    from .report import environment

    plan = result.plan
    f = plan.format
    files: dict = {}
    results = []
    for z in plan.labels:
        for api in plan.apis:
            acc = result.accs[(api, z)]
            e = acc.element
            results.append({
                "api": api, "label": _num(z, plan.dtype), "inputs": e.count,
                "conforming": int(e.verdicts[CONFORMS]),
                "verdicts": {SEVERITY[c]: int(n) for c, n in enumerate(e.verdicts) if n},
                "nan_inputs": {SEVERITY[c]: int(n) for c, n in enumerate(e.nan_inputs) if n},
                "spans": {SEVERITY[c]: [_num(value_of_pattern(pattern_of_key(a, f), f), plan.dtype),
                                        _num(value_of_pattern(pattern_of_key(b, f), f), plan.dtype)]
                          for c, (a, b) in sorted(e.span.items())},
                "adapter_calls": acc.calls, "raised": acc.raised, "raised_unresolved": acc.unresolved,
                "exceptions": dict(sorted(acc.messages.items(), key=lambda kv: -kv[1])),
                "quantities": {name: _qdoc(plan, q, z, api, name, files)
                               for name, q in sorted(acc.quantities.items(), key=lambda kv: _qorder(kv[0]))},
            })
    bits = f.bits // 4 + 2
    ivs = [[f"{a:#0{bits}x}", f"{b - 1:#0{bits}x}"] for a, b in plan.intervals]
    patterns = sum(b - a for a, b in plan.chunks())
    covered = plan.chunks()
    doc = {
        "schema": SCHEMA,
        "environment": environment([{"name": plan.adapter, "available": True, "version": plan.adapter_version,
                                     "control": plan.control}]),
        "settings": {
            "variant": plan.variant, "dtype": plan.dtype, "input": plan.main,
            "adapter": plan.adapter, "adapter_version": plan.adapter_version, "apis": plan.apis,
            "labels": [_num(z, plan.dtype) for z in plan.labels], "options": plan.options,
            "range": None if plan.bounds is None else [_bound_text(b) for b in plan.bounds],
            "pattern_intervals": ivs, "patterns": patterns,
            "nan_patterns": nan_count([(a, b) for a, b in covered], f),
            "chunk": plan.chunk, "chunks": result.chunks, "max_chunks": plan.max_chunks,
            "jobs": plan.jobs, "scheduler": plan.scheduler, "worst_per_class": plan.worst,
            "argv": list(argv),
        },
        "run": {
            "finished_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "duration_s": round(result.seconds, 3),
            "inputs_judged": result.elements,
            "inputs_per_s": round(result.elements / result.seconds, 1) if result.seconds > 0 else None,
            "seconds_in_workers": {k: round(v, 3) for k, v in result.timing.items()},
            "oracle_fallbacks": result.fallbacks,
            "complete": not result.failed,
        },
        "budgets": {q: {"base_ulps": budgets.base_for(plan.variant, plan.dtype, q).none,
                        "reason": budgets.base_for(plan.variant, plan.dtype, q).reason}
                    for q in ("value", "grad")} | {"conditioning_term": budgets.CONDITIONING_TERM},
        "verdicts": {"severity": list(SEVERITY), "meaning": MEANING},
        "results": results,
        "failed_chunks": [{"chunk": d["chunk"], "patterns": [f"{d['start']:#0{bits}x}", f"{d['stop'] - 1:#0{bits}x}"],
                           "inputs": [_num(value_of_pattern(d["start"], f), plan.dtype),
                                      _num(value_of_pattern(d["stop"] - 1, f), plan.dtype)],
                           "reason": d["reason"]} for d in result.failed],
        "missing_inputs": sum(d["stop"] - d["start"] for d in result.failed) * len(plan.labels),
        "oracle_errors": result.oracle_errors,
        "worst_cases": sorted(files),
    }
    return doc, files


def _qorder(name: str):
    return (name != "value", name)


def _bound_text(b) -> str:
    if isinstance(b, float):
        return "inf" if b > 0 else "-inf"
    if b.denominator == 1:
        return str(b.numerator)
    v = float(b)
    return repr(v) if Fraction(v) == b else f"{b.numerator}/{b.denominator}"


def write(result: SweepResult, argv: list[str]) -> tuple[dict, Path]:
    doc, files = build(result, argv)
    out = Path(result.plan.out)
    out.mkdir(parents=True, exist_ok=True)
    wdir = out / "worst"
    wdir.mkdir(exist_ok=True)
    for cid, (case, note) in sorted(files.items()):
        c = Case(case.variant, case.dtype, case.inputs, case.options, note=f"xent sweep {result.plan.adapter}: {note}")
        write_atomic(wdir / f"{cid}.json", c.to_json(indent=1) + "\n")
    for p in wdir.glob("*.json"):  # a previous sweep's cases
        if p.stem not in files:
            p.unlink()
    write_atomic(out / "sweep.json", json.dumps(doc, indent=1) + "\n")
    write_atomic(out / "summary.md", summary(doc))
    write_atomic(out / "error.svg", svg(result))
    return doc, out


def _pct(n: int, total: int) -> str:
    if total == 0:
        return "-"
    if n >= total:
        return "100%"
    if n <= 0:
        return "0%"
    share = 100.0 * n / total
    if share < 0.001:
        return "<0.001%"
    if share > 99.999:
        return ">99.999%"
    return f"{share:.3f}%"


def _ulp_text(u) -> str:
    if u is None:
        return "-"
    if u == "inf":
        return "inf"
    return f"{u:,}" if isinstance(u, int) and u < 10 ** 6 else f"{float(u):.3g}"


def _val(d) -> str:
    return "-" if d is None else d["decimal"]


def summary(doc: dict) -> str:
    s, run = doc["settings"], doc["run"]
    labels = ", ".join(_val(z) for z in s["labels"])
    noun = {"logits": "logit", "probs": "probability"}.get(s["input"], s["input"])
    where = (f"Every {s['dtype']} {noun}" if s["range"] is None else
             f"Every {s['dtype']} {noun} in [{s['range'][0]}, {s['range'][1]}]")
    lines = [f"# xent sweep: {s['variant']} {s['dtype']} through {s['adapter']}", "",
             f"{where}: {s['patterns']:,} bit patterns ({s['nan_patterns']:,} of them NaN) x labels {labels}, through "
             f"{s['adapter']} {s['adapter_version']} (APIs {', '.join(s['apis'])}), options "
             f"{_options_text(s['options'])}; each element judged against the certified oracle with the run's "
             f"verdicts and budgets (value: {doc['budgets']['value']['base_ulps']} ulp, gradients: "
             f"{doc['budgets']['grad']['base_ulps']} ulp, plus the conditioning term).", "",
             f"{run['inputs_judged']:,} inputs in {run['duration_s']:.1f} s ({s['chunks']} chunks of {s['chunk']:,}, "
             f"{s['jobs']} job(s){', scheduler ' + s['scheduler'] if s['scheduler'] else ''}); time in the workers: "
             + ", ".join(f"{k[:-2]} {v:.1f} s" for k, v in run["seconds_in_workers"].items())
             + f"; oracle slow-path fallbacks: {run['oracle_fallbacks']:,}.", ""]
    if s["max_chunks"] is not None:
        lines += [f"**Partial sweep**: only the first {s['max_chunks']} chunk(s) (--max-chunks).", ""]
    if doc["failed_chunks"]:
        lines += [f"**Incomplete**: {len(doc['failed_chunks'])} chunk(s) failed, {doc['missing_inputs']:,} inputs "
                  "missing (see below).", ""]
    qnames = []
    for r in doc["results"]:
        for q in r["quantities"]:
            if q not in qnames:
                qnames.append(q)
    lines += ["| api | label | inputs | conforming | " + " | ".join(f"max ulp {q}" for q in qnames)
              + " | verdicts (worst per input) |",
              "|---|---|---|---|" + "---|" * len(qnames) + "---|"]
    for r in doc["results"]:
        counts = ", ".join(f"{v} {n:,}" for v, n in sorted(r["verdicts"].items(), key=lambda vn: SEVERITY.index(vn[0]))
                           if v != "conforms") or "-"
        cells = [_ulp_text(r["quantities"][q]["max_ulp"]) if q in r["quantities"] else "-" for q in qnames]
        lines.append(f"| {r['api']} | {_val(r['label'])} | {r['inputs']:,} | {_pct(r['conforming'], r['inputs'])} | "
                     + " | ".join(cells) + f" | {counts} |")
    lines += ["", "## Findings", ""]
    any_finding = False
    for r in doc["results"]:
        head = f"### {r['api']}, label {_val(r['label'])}"
        body = []
        for qname, q in r["quantities"].items():
            dt = [d for d in q["returned_dtypes"] if d != s["dtype"]]
            for v in SEVERITY:
                n = q["verdicts"].get(v, 0)
                if v == "conforms" or not n:
                    continue
                lo, hi = q["spans"].get(v, [None, None])
                w = next((e for e in q["worst"] if e["verdict"] == v), None)
                line = (f"- {qname}: **{v}** on {n:,} input{'s' * (n != 1)} ({_pct(n, q['count'])}), {s['input']} from "
                        f"{_val(lo)} to {_val(hi)}")
                if v == "dtype" and dt:
                    line += f": returned {', '.join(dt)} for {s['dtype']} inputs (compared after rounding into it)"
                    w = w if w is not None and w["ulp"] not in (0, None) else None
                if w is not None and v in ("raised", "crash", "timeout"):
                    line += (f"; e.g. {s['input']} = {_val(w['input'])} ({w['pattern']})"
                             + (f", case `worst/{w['case_id']}.json`" if w["case_id"] in doc["worst_cases"] else ""))
                elif w is not None:
                    line += (f"; worst: {s['input']} = {_val(w['input'])} ({w['pattern']}): got {_val(w['got'])}, "
                             f"truth {_val(w['expected'])}, {_ulp_text(w['ulp'])} ulp"
                             + (f" (allowance {w['allowance']})" if w["allowance"] is not None else "")
                             + (f", case `worst/{w['case_id']}.json`" if w["case_id"] in doc["worst_cases"] else ""))
                body.append(line)
        if r["raised"]:
            body.append(f"- no answer (an exception, a crash or a timeout) for {r['raised']:,} inputs "
                        f"({r['raised_unresolved']:,} of them in pieces not isolated further, after "
                        f"{r['adapter_calls']:,} calls): " + "; ".join(f"{m} ({n:,})" for m, n in list(r["exceptions"].items())[:3]))
        if body:
            any_finding = True
            lines += [head, ""] + body + [""]
    if not any_finding:
        lines += ["Every input conforms, for every API, label and quantity.", ""]
    if doc["failed_chunks"]:
        lines += ["## Missing ranges (failed chunks)", "", "| chunk | patterns | inputs | reason |", "|---|---|---|---|"]
        for d in doc["failed_chunks"]:
            lines.append(f"| {d['chunk']} | {d['patterns'][0]}..{d['patterns'][1]} | {_val(d['inputs'][0])} .. "
                         f"{_val(d['inputs'][1])} | {d['reason'].replace('|', '/')} |")
        lines.append("")
    lines += ["## Files", "", "- `sweep.json`: everything above, with the ULP histograms (log2 bins as in the run "
              "report) and the worst inputs per verdict class", "- `error.svg`: the largest error per bin of inputs",
              f"- `worst/<case_id>.json`: {len(doc['worst_cases'])} single-element cases (`xent replay FILE`)", ""]
    return "\n".join(lines)


# -- the plot ---------------------------------------------------------------------------------------

LABEL_COLOURS = ("#1f5fbf", "#e07b00", "#2e7d32", "#8e24aa", "#c62828")


def _tick_text(v: float) -> str:
    if v == 0:
        return "0"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    e = int(round(math.log10(abs(v))))
    sign = "-" if v < 0 else ""
    return f"{sign}{10 ** e:g}" if -3 <= e <= 4 else f"{sign}1e{e}"


def svg(result: SweepResult) -> str:
    from .html import VERDICT_COLOUR, OTHER_COLOUR

    plan = result.plan
    f = plan.format
    lo, hi = plan.plot_span()
    qnames = []
    for acc in result.accs.values():
        for q in acc.quantities:
            if q not in qnames:
                qnames.append(q)
    qnames.sort(key=_qorder)
    has_nan = any(acc.quantities[q].plot_err is not None and acc.quantities[q].plot_err[PLOT_BINS] >= 0
                  for acc in result.accs.values() for q in acc.quantities)
    left, pw, ph, gap, top = 44, 420, 110, 34, 34
    strip = 5
    nlab = len(plan.labels)
    panel_h = ph + 8 + strip * nlab + 28
    nan_w = 16 if has_nan else 0
    width = len(qnames) * (left + pw + nan_w + gap) + 10
    height = top + len(plan.apis) * (panel_h + 22) + 40
    ymax = 4.0
    for acc in result.accs.values():
        for q in acc.quantities.values():
            if q.plot_err is not None and (q.plot_err >= 0).any():
                ymax = max(ymax, float(q.plot_err.max()))
    ystep = next(s for s in (1, 2, 4, 8, 16, 32, 64) if ymax / s <= 6)
    ymax = math.ceil(ymax / ystep) * ystep
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img">',
           "<style>text{font:10px system-ui,sans-serif;fill:#444}.ax{stroke:#888;fill:none}"
           ".gl{stroke:#e6e6e6}.t{font-size:12px;font-weight:600;fill:#222}</style>",
           f'<text class="t" x="8" y="16">{_xml(plan.variant)} {plan.dtype} through {_xml(plan.adapter)}: largest '
           f"error per bin of {_xml(plan.main)} (error bits = log2(1 + ulp)); strips: worst verdict per bin and label"
           "</text>"]
    # x ticks: 0 and powers of ten inside the swept values, at their place in the pattern order
    cands = [0.0] + [s * 10.0 ** e for e in range(-324, 309) for s in (1.0, -1.0)]
    span_w = float(hi) - float(lo) + 1.0

    def xpos(key: float) -> float:
        return pw * (key - lo) / span_w

    ticks = []
    for v in sorted(cands):
        with np.errstate(over="ignore"):
            fv = np.array([v], dtype=np.float64).astype(f.np_dtype)
        if not np.isfinite(fv[0]) or (v != 0 and abs(float(fv[0]) / v - 1) > 0.01):  # beyond the dtype's range
            continue
        key = int(total_key(f.to_bits(fv), f)[0])
        if lo <= key <= hi:
            ticks.append((xpos(key), v))
    chosen = []
    for x, v in sorted(ticks, key=lambda t: (abs(t[1]) != 0, -abs(math.log10(abs(t[1]))) if t[1] else 0)):
        if all(abs(x - c[0]) >= 44 for c in chosen):
            chosen.append((x, v))
    chosen.sort()
    for row, api in enumerate(plan.apis):
        y0 = top + row * (panel_h + 22)
        for col, qn in enumerate(qnames):
            x0 = 10 + col * (left + pw + nan_w + gap) + left
            out.append(f'<text class="t" x="{x0}" y="{y0 + 10}">{_xml(api)} · {_xml(qn)}</text>')
            py = y0 + 16

            def sy(b):
                return py + ph - ph * b / ymax

            yv = 0.0
            while yv <= ymax:
                out.append(f'<path class="gl" d="M{x0} {sy(yv):.1f}H{x0 + pw}"/>'
                           f'<text x="{x0 - 4}" y="{sy(yv) + 3:.1f}" text-anchor="end">{yv:g}</text>')
                yv += ystep
            base = budgets.base_for(plan.variant, plan.dtype, qn).none
            out.append(f'<path d="M{x0} {sy(math.log2(1 + base)):.1f}H{x0 + pw}" stroke="#9ccc65" '
                       f'stroke-dasharray="4 3"><title>base budget: {base} ulp</title></path>')
            for x, v in chosen:
                out.append(f'<path class="gl" d="M{x0 + x:.1f} {py}V{py + ph}"/>')
            out.append(f'<path class="ax" d="M{x0} {py}V{py + ph}H{x0 + pw}"/>')
            for li, z in enumerate(plan.labels):
                q = result.accs[(api, z)].quantities.get(qn)
                colour = LABEL_COLOURS[li % len(LABEL_COLOURS)]
                sy0 = py + ph + 6 + li * strip
                if q is None or q.plot_err is None:
                    continue
                d, pen = [], False
                for b in range(PLOT_BINS):
                    e = float(q.plot_err[b])
                    if e < 0:
                        pen = False
                        continue
                    X = x0 + pw * (b + 0.5) / PLOT_BINS
                    d.append(f"{'L' if pen else 'M'}{X:.1f} {sy(e):.1f}")
                    pen = True
                if d:
                    out.append(f'<path d="{"".join(d)}" stroke="{colour}" stroke-width="1.2" fill="none">'
                               f"<title>label {shortest(z, f)}</title></path>")
                # verdict strip: runs of bins with the same non-conforming worst verdict
                b = 0
                while b < PLOT_BINS:
                    c = int(q.plot_code[b])
                    e = b
                    while e + 1 < PLOT_BINS and int(q.plot_code[e + 1]) == c:
                        e += 1
                    if c != CONFORMS and q.plot_err[b] >= 0 or c != CONFORMS:
                        X = x0 + pw * b / PLOT_BINS
                        W = max(pw * (e - b + 1) / PLOT_BINS, 2.0)  # one bad input stays visible
                        out.append(f'<rect x="{X:.1f}" y="{sy0}" width="{W:.1f}" height="{strip - 1}" '
                                   f'fill="{VERDICT_COLOUR.get(SEVERITY[c], OTHER_COLOUR)}"><title>label '
                                   f"{shortest(z, f)}: {SEVERITY[c]}</title></rect>")
                    b = e + 1
                if has_nan and q.plot_err[PLOT_BINS] >= 0:
                    c = int(q.plot_code[PLOT_BINS])
                    nx = x0 + pw + 6
                    if q.plot_err[PLOT_BINS] > 0:
                        out.append(f'<circle cx="{nx + 4}" cy="{sy(float(q.plot_err[PLOT_BINS])):.1f}" r="2" '
                                   f'fill="{colour}"/>')
                    out.append(f'<rect x="{nx}" y="{sy0}" width="8" height="{strip - 1}" '
                               f'fill="{VERDICT_COLOUR.get(SEVERITY[c], OTHER_COLOUR)}"><title>NaN inputs, label '
                               f"{shortest(z, f)}: {SEVERITY[c]}</title></rect>")
            ly = py + ph + 6 + nlab * strip + 11
            for x, v in chosen:
                out.append(f'<text x="{x0 + x:.1f}" y="{ly}" text-anchor="middle">{_tick_text(v)}</text>')
            if has_nan:
                out.append(f'<text x="{x0 + pw + 10}" y="{ly}" text-anchor="middle">NaN</text>')
    ly = height - 14
    legend = [f'<rect x="{10 + 90 * i}" y="{ly - 8}" width="14" height="3" fill="{LABEL_COLOURS[i % len(LABEL_COLOURS)]}"/>'
              f'<text x="{28 + 90 * i}" y="{ly - 4}">label {shortest(z, f)}</text>' for i, z in enumerate(plan.labels)]
    out += legend
    seen = sorted({int(c) for acc in result.accs.values() for q in acc.quantities.values()
                   if q.plot_code is not None for c in np.unique(q.plot_code) if c != CONFORMS})
    x = 10 + 90 * len(plan.labels) + 20
    for c in seen:
        out.append(f'<rect x="{x}" y="{ly - 10}" width="10" height="8" fill="{VERDICT_COLOUR.get(SEVERITY[c], OTHER_COLOUR)}"/>'
                   f'<text x="{x + 13}" y="{ly - 3}">{SEVERITY[c]}</text>')
        x += 20 + 6 * len(SEVERITY[c])
    out.append(f'<text x="{x + 10}" y="{ly - 3}">x axis: the {_xml(plan.main)} in bit-pattern order (each binade '
               "equally wide); dashed: the base budget</text>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _xml(s) -> str:
    import html

    return html.escape(str(s), quote=True)
