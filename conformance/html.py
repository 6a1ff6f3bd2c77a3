"""``index.html``: a report.json document as one self-contained page.

The page needs nothing but itself: inline CSS, inline SVG, no script, no font, no image, no link
to anything outside (a Content-Security-Policy meta tag forbids every fetch, so a page that tried
would show an error in the browser console, which the tests watch). It shows the run's
parameters, the conformance matrix as a heat map, per adapter a scatter plot of error against the
magnitude of the inputs and the ULP-error histogram of every cell, the divergences grouped by
verdict class with their reproducers, then the budgets and the oracle's statistics.

Everything that comes from a case, an adapter or a framework (names, messages, notes, versions,
argv, reproducer source) is HTML-escaped where it is written; nothing from the document ever
becomes a URL except a reproducer's relative path that passes ``_safe_href``.

The optional fields read where present (older reports lack them; each renders as "no data"):
cells' ``error_bits_histogram`` (66 counts: 0 ulp, then (2^(k-1), 2^k] ulp for k = 1..64, 1 ulp
in bin 1, then beyond 2^64 or infinite), ``no_number`` and ``points`` ([max |input|, error bits, verdict]);
divergences' ``regime``, ``count``, ``condition`` (a number or "inf"), ``explanation``, ``repro``,
``repro_source`` and ``shrunk`` (a divergence with a shrunk case is shown as that case, which is what
its explanation and reproducer describe).
"""
from __future__ import annotations

import html
import math
import re
from collections import defaultdict
from pathlib import Path

from .files import write_atomic
from .report import _ulp_text
from .report import aggregate as report_aggregate

SOURCE_LIMIT = 200  # divergences whose reproducer source is inlined; the rest are linked
HIST_BINS = 66

# One colour per verdict class (most severe first); unknown verdicts are drawn grey.
VERDICT_COLOUR = {
    "crash": "#4a148c", "timeout": "#7b1fa2", "raised": "#ad1457", "shape": "#c2185b",
    "nan": "#d50000", "accepted-invalid": "#e65100", "wrong-sign": "#ff6d00", "overflow": "#c79100",
    "underflow": "#1565c0", "inaccurate": "#00838f", "dtype": "#6d4c41", "contract": "#558b2f",
    "conforms": "#9ccc65",
}
OTHER_COLOUR = "#9e9e9e"
NO_NUMBER_COLOUR = "#7b1fa2"  # the histogram's last bar: answers with no finite ULP error

CSS = """
:root{--fg:#1b1b1b;--muted:#5f6368;--line:#d0d4d9;--bg:#fff;--na:#e2e4e7}
*{box-sizing:border-box}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg);
 margin:0 auto;padding:1rem 1.5rem 4rem;max-width:1700px}
h1{font-size:1.6rem;margin:.2rem 0 .6rem}h2{font-size:1.3rem;margin:2.2rem 0 .6rem;border-bottom:2px solid var(--line)}
h3{font-size:1.1rem;margin:1.6rem 0 .4rem}
code,pre,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
pre{background:#f6f8fa;border:1px solid var(--line);padding:.6rem;overflow:auto;max-height:32rem;white-space:pre}
table{border-collapse:collapse;margin:.4rem 0}
th,td{border:1px solid var(--line);padding:.25rem .45rem;vertical-align:top;text-align:left}
th{background:#f3f4f6}
nav a{margin-right:1rem}
.muted,.sub,small{color:var(--muted)}.small,small{font-size:12px}
dl.params{display:grid;grid-template-columns:max-content 1fr;gap:.15rem 1rem;margin:.4rem 0}
dl.params dt{font-weight:600}dl.params dd{margin:0}
.totals{font-size:1.05rem;margin:.6rem 0}
#matrix td{min-width:7.5rem;text-align:center}
#matrix td .pct{display:block;font-weight:700;font-size:1.05rem}
#matrix td .sub,#matrix td .vc{display:block;font-size:11.5px}
#matrix td.na{background:var(--na);color:var(--muted)}
#matrix th.row{white-space:nowrap}
.legend{display:flex;flex-wrap:wrap;gap:.3rem .9rem;align-items:center;margin:.3rem 0 .8rem;font-size:12px}
.sw{display:inline-block;width:1.6rem;height:.95rem;border:1px solid #0002;vertical-align:middle;margin-right:.25rem}
.dot{display:inline-block;width:.7rem;height:.7rem;border-radius:50%;vertical-align:middle;margin-right:.25rem}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:.6rem;margin:.5rem 0}
figure{margin:0}
.cell{border:1px solid var(--line);padding:.3rem .4rem}
.cell figcaption{font-size:12px;line-height:1.3}
.nodata{color:var(--muted);font-style:italic;font-size:12px;padding:.6rem 0}
details>summary{cursor:pointer;font-weight:600;margin:.3rem 0}
table.divs{table-layout:fixed;width:100%}
table.divs td{font-size:12.5px;overflow-wrap:anywhere}
table.divs tr.src>td{border-top:none;padding-top:0}
table.divs tr.src summary{font-weight:400}
.v{display:inline-block;padding:0 .35rem;border-radius:3px;color:#fff;font-size:12px;font-weight:600}
.reason{max-width:60rem;font-size:12px;color:var(--muted)}
svg text{font:10px system-ui,sans-serif;fill:#444}
svg .ax{stroke:#888;stroke-width:1;fill:none}
svg .gl{stroke:#e6e6e6;stroke-width:1}
"""


def _e(x) -> str:
    """HTML-escape anything (None is empty), quotes included, for text and attribute values."""
    return html.escape("" if x is None else str(x), quote=True)


def _num(x) -> float | None:
    """A finite float, or None (for null, NaN, inf, and anything that is not a number)."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _pct_text(conforming: int, cases: int) -> str:
    """Never 100% unless every case conforms, never 0% unless none does."""
    if conforming >= cases:
        return "100%"
    if conforming <= 0:
        return "0%"
    pct = 100.0 * conforming / cases
    return f"{min(max(pct, 0.1), 99.9):.1f}%"


def _heat(conforming: int, cases: int) -> str:
    """Cell background: green when every case conforms, else from yellow (almost all) to red (none)."""
    if conforming >= cases:
        return "hsl(122,48%,70%)"
    hue = 68.0 * conforming / cases
    return f"hsl({hue:.0f},85%,{72 + 6 * conforming / cases:.0f}%)"


def _colour(verdict) -> str:
    return VERDICT_COLOUR.get(verdict, OTHER_COLOUR)


def _severity(doc: dict) -> list[str]:
    return list(doc.get("verdicts", {}).get("severity") or VERDICT_COLOUR)


def _ordered(keys, severity: list[str]) -> list:
    """Verdicts in severity order, unknown ones after them (in name order)."""
    rank = {v: i for i, v in enumerate(severity)}
    return sorted(keys, key=lambda v: (rank.get(v, len(rank)), str(v)))


def _counts_text(counts: dict, severity: list[str]) -> str:
    return ", ".join(f"{v} {n}" for v, n in ((v, counts[v]) for v in _ordered(counts, severity))
                     if v != "conforms" and n)


def _adapters(doc: dict) -> list[str]:
    """The run's adapters, then any that only appear in cells."""
    names = list(doc["run"]["adapters"])
    for c in doc["cells"]:
        if c["adapter"] not in names:
            names.append(c["adapter"])
    return names


def aggregate(doc: dict) -> dict:
    """``report.aggregate``, its cases and conforming counted over the corpus and shared cases:
    the search steers towards large errors, so its cases stay out of the share."""
    agg = report_aggregate(doc)
    for a in agg.values():
        a["cases"] -= a["searched"]
        a["conforming"] -= a["searched_conforming"]
    return agg


# -- header --------------------------------------------------------------------------------------

def _header(doc: dict) -> list[str]:
    run, env = doc["run"], doc["environment"]
    dur = _num(run.get("duration_s")) or 0.0
    packages = ", ".join(f"{k} {v}" for k, v in env.get("packages", {}).items() if v)
    python = f"{env.get('implementation', 'Python')} {env.get('python', '?')}"
    rows = [("seed", run.get("seed")), ("examples", f"{run.get('examples')} generated cases per variant and dtype, "
                                                     "plus the corpus"),
            *[(label, run[key]) for key, label in (("search", "targeted-search cases per cell"),
                                                   ("shrink", "shrink budget (calls)"),
                                                   ("answers", "answers"), ("divergent_answers", "divergent answers"))
              if key in run],
            ("duration", f"{dur:.1f} s"), ("finished", run.get("finished_utc", "-")),
            ("variants", ", ".join(run.get("variants", []))), ("dtypes", ", ".join(run.get("dtypes", []))),
            ("python", python), ("platform", env.get("platform")), ("packages", packages)]
    out = ['<dl class="params">']
    out += [f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in rows]
    out.append(f'<dt>argv</dt><dd><code>{_e(" ".join(["xent", *run.get("argv", [])]))}</code></dd>')
    out.append("</dl>")
    out += ["<table><thead><tr><th>adapter</th><th>version</th><th>description</th></tr></thead><tbody>"]
    for a in env.get("adapters", []):
        name = _e(a["name"]) + (' <span class="muted">(control)</span>' if a.get("control") else "")
        state = _e(a.get("version") or "available") if a.get("available") else \
            f'<span class="muted">unavailable: {_e(a.get("reason"))}</span>'
        out.append(f"<tr><td>{name}</td><td>{state}</td><td>{_e(a.get('description'))}</td></tr>")
    out.append("</tbody></table>")
    cases = sum(c["cases"] for c in doc["cells"])
    conf = sum(c["conforming"] for c in doc["cells"])
    divs = doc["divergences"]
    grouped = sum(int(d.get("count") or 1) for d in divs)
    out.append(f'<p class="totals"><b>{_e(_pct_text(conf, cases) if cases else "n/a")}</b> of {cases:,} answers '
               f"conform; {len(divs):,} divergences listed ({grouped:,} answers); "
               f"{len(doc.get('oracle_errors', [])):,} oracle errors.</p>")
    return out


# -- matrix --------------------------------------------------------------------------------------

def _matrix(doc: dict) -> list[str]:
    variants = doc["run"]["variants"]
    severity = _severity(doc)
    controls = {a["name"] for a in doc["environment"].get("adapters", []) if a.get("control")}
    agg = aggregate(doc)
    na = defaultdict(int)
    for n in doc.get("not_applicable", []):
        na[(n["adapter"], n["variant"])] += n["cases"]
    out = ['<div class="legend"><span>share of cases conforming:</span>',
           f'<span><span class="sw" style="background:{_heat(1, 1)}"></span>100%</span>']
    for conf in (999, 90, 50, 10, 0):
        out.append(f'<span><span class="sw" style="background:{_heat(conf, 1000 if conf == 999 else 100)}">'
                   f'</span>{"99.9" if conf == 999 else conf}%</span>')
    out.append('<span><span class="sw" style="background:var(--na)"></span>n/a (no API expresses the case)</span>'
               "</div>")
    out.append('<table id="matrix"><thead><tr><th>adapter</th>')
    out += [f'<th data-variant="{_e(v)}">{_e(v)}</th>' for v in variants]
    out.append("</tr></thead><tbody>")
    for i, name in enumerate(_adapters(doc)):
        label = _e(name) + ('<br><span class="muted small">control</span>' if name in controls else "")
        out.append(f'<tr data-adapter="{_e(name)}"><th class="row"><a href="#adapter-{i}">{label}</a></th>')
        for v in variants:
            a = agg.get((name, v))
            attrs = f'data-adapter="{_e(name)}" data-variant="{_e(v)}"'
            skipped = na.get((name, v), 0)
            if a is None or not a["cases"]:
                title = f"{skipped} cases not applicable" if skipped else "no cases"
                out.append(f'<td class="na" {attrs} title="{_e(title)}">n/a</td>')
                continue
            pct = 100.0 * a["conforming"] / a["cases"]
            counts = _counts_text(a["verdicts"], severity)
            title = f"{name} / {v}: {a['conforming']} of {a['cases']} cases conform" + \
                (f"; {skipped} not applicable" if skipped else "")
            out.append(f'<td {attrs} data-pct="{pct:.6g}" style="background:{_heat(a["conforming"], a["cases"])}" '
                       f'title="{_e(title)}"><span class="pct">{_pct_text(a["conforming"], a["cases"])}</span>'
                       f'<span class="sub">of {a["cases"]:,} · max {_e(_ulp_text(a["max_ulp"]))} ulp</span>'
                       + (f'<span class="vc">{_e(counts)}</span>' if counts else "") + "</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return out


# -- per-cell ULP histograms -----------------------------------------------------------------------

def _bin_text(k: int) -> str:
    if k == 0:
        return "exact (0 ulp)"
    if k == HIST_BINS - 1:
        return "more than 2^64 ulp, or infinitely far"
    if k == 1:
        return "[1, 2] ulp"
    return f"({2 ** (k - 1):,}, {2 ** k:,}] ulp" if k <= 20 else f"(2^{k - 1}, 2^{k}] ulp"


def _histogram_svg(hist: list, no_number: int) -> str:
    """Bars for the 66 bins, on a log scale of counts, then one bar for the answers with no number."""
    left, bw, top, ph, gap = 30, 4, 6, 60, 14
    pw = HIST_BINS * bw
    width, height = int(left + pw + gap + 2 * bw + 6), top + ph + 16
    counts = [int(c) if isinstance(c, (int, float)) and not isinstance(c, bool) and c > 0 else 0 for c in hist]
    counts = (counts + [0] * HIST_BINS)[:HIST_BINS]
    peak = max(counts + [no_number, 1])
    scale = math.log1p(peak)

    def bar(x, n, fill, label):
        h = max(ph * math.log1p(n) / scale, 1.5)
        return (f'<rect x="{x:.1f}" y="{top + ph - h:.1f}" width="{bw - .5:.1f}" height="{h:.1f}" fill="{fill}">'
                f"<title>{n:,} {_e(label)}</title></rect>")

    out = [f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">',
           f'<path class="ax" d="M{left} {top}V{top + ph}H{left + pw}"/>',
           f'<text x="{left - 3}" y="{top + 8}" text-anchor="end">{peak:,}</text>',
           f'<text x="{left - 3}" y="{top + ph}" text-anchor="end">0</text>']
    for k, label in ((0, "0"), (8, "2⁸"), (16, "2¹⁶"), (24, "2²⁴"), (32, "2³²"), (53, "2⁵³"), (64, "2⁶⁴")):
        x = left + k * bw + bw / 2
        out.append(f'<text x="{x:.1f}" y="{top + ph + 12}" text-anchor="middle">{label}</text>')
    for k, n in enumerate(counts):
        if n:
            fill = "#43a047" if k == 0 else ("#b71c1c" if k == HIST_BINS - 1 else "#3f6fb5")
            out.append(bar(left + k * bw, n, fill, "answers: " + _bin_text(k)))
    nx = left + pw + gap
    out.append(f'<text x="{nx + bw:.1f}" y="{top + ph + 12}" text-anchor="middle">none</text>')
    if no_number:
        out.append(bar(nx, no_number, NO_NUMBER_COLOUR, "answers with no finite ULP error (NaN, raised, shape…)"))
    out.append("</svg>")
    return "".join(out)


def _cell_figure(c: dict, severity: list[str]) -> str:
    counts = _counts_text(c.get("verdicts", {}), severity)
    cap = (f'<b>{_e(c["api"])}</b> · {_e(c["variant"])} · {_e(c["dtype"])}<br>'
           f'<span class="sub">{c["conforming"]:,}/{c["cases"]:,} conform, max {_e(_ulp_text(c.get("max_ulp")))} ulp'
           + (f"; {_e(counts)}" if counts else "") + "</span>")
    hist = c.get("error_bits_histogram")
    if isinstance(hist, list) and hist:
        no_number = c.get("no_number")
        no_number = int(no_number) if isinstance(no_number, int) and no_number > 0 else 0
        body = _histogram_svg(hist, no_number)
    else:
        body = '<div class="nodata">no data</div>'
    return f'<figure class="cell" data-adapter="{_e(c["adapter"])}"><figcaption>{cap}</figcaption>{body}</figure>'


# -- scatter: error against magnitude ------------------------------------------------------------

# Where the x axis is labelled: float16's max is about 6.6e4, float32's 3.4e38, float64's 1.8e308.
X_TICKS = [(0.0, "0"), (1.0, "1"), (10.0, "10"), (100.0, "100"), (1e4, "1e4"), (1e8, "1e8"), (1e16, "1e16"),
           (1e38, "1e38"), (1e100, "1e100"), (1e200, "1e200"), (1.7976931348623157e308, "1.8e308")]


def _xscale(m: float) -> float:
    """log2(1 + log10(1 + |m|)): about as much room for 0..1e4 as for 1e4..1e38 and 1e38..1e308."""
    return math.log2(1.0 + math.log10(1.0 + abs(m)))


def _scatter(cells: list[dict], severity: list[str]) -> str:
    """Max |input| (on a log-log axis, ``_xscale``) against error bits, one colour per verdict;
    points with a null (or non-finite) coordinate are counted in the caption instead."""
    pts, no_x, no_y = [], 0, defaultdict(int)
    seen_any = False
    for c in cells:
        for p in c.get("points") or ():
            seen_any = True
            if not isinstance(p, (list, tuple)) or len(p) < 3:
                no_x += 1
                continue
            x, y, v = _num(p[0]), _num(p[1]), str(p[2])
            if x is None:
                no_x += 1
            elif y is None:
                no_y[v] += 1
            else:
                pts.append((_xscale(x), max(y, 0.0), v))
    if not seen_any:
        return '<div class="nodata">no data (this report has no per-case points)</div>'
    left, right, top, bottom, pw, ph = 46, 24, 10, 38, 680, 260
    width, height = left + pw + right, top + ph + bottom
    top_x = max([_xscale(10.0)] + [p[0] for p in pts])
    last = next((i for i, (t, _) in enumerate(X_TICKS) if _xscale(t) >= top_x), len(X_TICKS) - 1)
    ticks = X_TICKS[:last + 1]  # up to the first tick at or past the largest magnitude
    xmax = max(_xscale(ticks[-1][0]), top_x)
    ymax = max([4.0] + [p[1] for p in pts])
    ystep = next(s for s in (1, 2, 4, 8, 16, 32, 64, 128, 256) if ymax / s <= 8)
    ymax = float(math.ceil(ymax / ystep) * ystep)

    def sx(x):
        return left + pw * x / xmax

    def sy(y):
        return top + ph - ph * y / ymax

    out = [f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img">']
    for t, label in ticks:
        X = sx(_xscale(t))
        out.append(f'<path class="gl" d="M{X:.1f} {top}V{top + ph}"/>'
                   f'<text x="{X:.1f}" y="{top + ph + 13}" text-anchor="middle">{label}</text>')
    y = 0.0
    while y <= ymax:
        Y = sy(y)
        out.append(f'<path class="gl" d="M{left} {Y:.1f}H{left + pw}"/>'
                   f'<text x="{left - 4}" y="{Y + 3:.1f}" text-anchor="end">{y:g}</text>')
        y += ystep
    out.append(f'<path class="ax" d="M{left} {top}V{top + ph}H{left + pw}"/>')
    out.append(f'<text x="{left + pw / 2}" y="{height - 6}" text-anchor="middle">max |input| of the case '
               "(log-log axis: log2(1 + log10(1 + |x|)))</text>")
    out.append(f'<text transform="translate(11 {top + ph / 2}) rotate(-90)" text-anchor="middle">'
               "error bits = log2(1 + ulp)</text>")
    by_verdict = defaultdict(set)
    for x, y, v in pts:
        by_verdict[v].add((round(sx(x), 1), round(sy(y), 1)))
    totals = defaultdict(int)
    for _, _, v in pts:
        totals[v] += 1
    # Least severe first, so the divergences are drawn on top of the conforming answers.
    for v in reversed(_ordered(by_verdict, severity)):
        d = "".join(f"M{x:g} {y:g}h0" for x, y in sorted(by_verdict[v]))
        out.append(f'<path d="{d}" stroke="{_colour(v)}" stroke-width="5" stroke-linecap="round" '
                   f'stroke-opacity=".75" fill="none"><title>{_e(v)}: {totals[v]:,} answers</title></path>')
    out.append("</svg>")
    legend = ['<div class="legend">']
    legend += [f'<span><span class="dot" style="background:{_colour(v)}"></span>{_e(v)} {totals[v]:,}</span>'
               for v in _ordered(totals, severity)]
    legend.append("</div>")
    skipped = []
    if no_x:
        skipped.append(f"{no_x:,} without an input magnitude")
    if no_y:
        skipped.append(f"{sum(no_y.values()):,} without a finite error ("
                       + ", ".join(f"{v} {no_y[v]:,}" for v in _ordered(no_y, severity)) + ")")
    drawn = sum(len(s) for s in by_verdict.values())
    caption = (f"{len(pts):,} answers plotted ({drawn:,} distinct marks)"
               + (f"; not plotted: {'; '.join(skipped)}" if skipped else "") + ".")
    return (f'<figure class="scatter">{"".join(out)}{"".join(legend)}'
            f'<figcaption class="small">{_e(caption)}</figcaption></figure>')


def _per_adapter(doc: dict) -> list[str]:
    severity = _severity(doc)
    variants, dtypes = doc["run"].get("variants", []), doc["run"].get("dtypes", [])
    vrank = {v: i for i, v in enumerate(variants)}
    drank = {d: i for i, d in enumerate(dtypes)}
    by_adapter = defaultdict(list)
    for c in doc["cells"]:
        by_adapter[c["adapter"]].append(c)
    versions = {a["name"]: a.get("version") for a in doc["environment"].get("adapters", [])}
    out = []
    for i, name in enumerate(_adapters(doc)):
        cells = sorted(by_adapter.get(name, []), key=lambda c: (vrank.get(c["variant"], len(vrank)), c["variant"],
                                                                 drank.get(c["dtype"], len(drank)), c["api"]))
        version = f' <span class="muted small">{_e(versions.get(name))}</span>' if versions.get(name) else ""
        out.append(f'<section class="adapter" id="adapter-{i}" data-adapter="{_e(name)}"><h3>{_e(name)}{version}</h3>')
        if not cells:
            out.append('<p class="nodata">no cells: no API of this adapter expressed any case</p></section>')
            continue
        out.append("<h4>Error against input magnitude</h4>")
        out.append(_scatter(cells, severity))
        out.append(f"<details><summary>ULP-error histograms of its {len(cells)} cells (api · variant · dtype)"
                   '</summary><p class="small muted">Worst ULP error per answer, binned by powers of two '
                   "(bar heights on a log scale; hover a bar for its count); the last bar, 'none', counts the "
                   "answers with no finite error (NaN, raised, wrong shape, inf, a number for an invalid "
                   "input).</p><div class=\"grid\">")
        out += [_cell_figure(c, severity) for c in cells]
        out.append("</div></details></section>")
    return out


# -- divergences ---------------------------------------------------------------------------------

_SAFE_HREF = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-/]*\Z")


def _safe_href(path) -> str | None:
    """A relative path made of plain characters, without '..' or a scheme; None otherwise."""
    if not isinstance(path, str) or not _SAFE_HREF.match(path) or ".." in path.split("/"):
        return None
    return path


def _inputs(div: dict) -> str:
    """The inputs of the worst element (report.describe_inputs), or the case's shapes as a fallback."""
    try:
        from cases import Case
        from . import report
        return report.describe_inputs(Case.from_dict(div["case"]), div.get("quantity"), div.get("index"))
    except Exception:  # a report must render even from a case this version cannot read back
        inputs = (div.get("case") or {}).get("inputs") or {}
        return ", ".join(f"{k}: {(v or {}).get('dtype', '?')}{list((v or {}).get('shape', []))}"
                         if isinstance(v, dict) else str(k) for k, v in inputs.items())


def _number_html(n) -> str:
    if not isinstance(n, dict):
        return "-"
    return f'<span class="mono" title="{_e(n.get("hex"))}">{_e(n.get("decimal"))}</span>'


_NO_VALUE = ("crash", "timeout", "raised", "shape", "dtype", "accepted-invalid")
_CODE = re.compile(r"`([^`<>]*)`")  # applied to escaped text, so the group holds no markup


def _what(div: dict) -> str:
    explanation = div.get("explanation")
    message = div.get("message") or ""
    if not explanation:
        got = (div.get("got") or {}).get("decimal")
        exp = (div.get("expected") or {}).get("decimal")
        if got is not None and exp is not None and div.get("verdict") not in _NO_VALUE:
            explanation = f"returned {got} where the truth is {exp}"
        else:
            explanation = message or str(div.get("verdict", ""))
    parts = [_CODE.sub(r"<code>\1</code>", _e(explanation))]
    if message and message not in explanation:
        parts.append(f'<br>message: <code>{_e(message[:600])}</code>')
    if div.get("note"):
        parts.append(f'<br><small>case note: {_e(div["note"])}</small>')
    if not div.get("explanation"):  # report.explain's line already names the inputs
        parts.append(f'<br><small>inputs: {_e(_inputs(div))}</small>')
    return "".join(parts)


def _minimal(div: dict) -> dict:
    """The divergence as its shrunk case shows it (as report.minimal: what the explanation and the
    reproducer describe), or as it is."""
    shrunk = div.get("shrunk")
    if isinstance(shrunk, dict) and shrunk:
        return {**div, **{k: v for k, v in shrunk.items() if k not in ("steps", "calls")}}
    return div


def _shrunk_note(div: dict) -> str:
    shrunk = div.get("shrunk")
    if not isinstance(shrunk, dict) or not shrunk:
        return ""
    steps = shrunk.get("steps")
    how = f" in {_plural(steps, 'step')}" if isinstance(steps, int) else ""
    return f'<br><small>shrunk{how} from <code>{_e(div.get("case_id"))}</code></small>'


def _divergences(doc: dict, source_limit: int) -> list[str]:
    divs = doc["divergences"]
    if not divs:
        return ["<p>None: every answer conforms.</p>"]
    severity = _severity(doc)
    meaning = doc.get("verdicts", {}).get("meaning", {})
    groups = defaultdict(list)
    for d in divs:
        groups[d.get("verdict")].append(d)
    order = _ordered(groups, severity)
    out = ["<table><thead><tr><th>verdict</th><th>rows</th><th>answers</th><th>meaning</th></tr></thead><tbody>"]
    for k, v in enumerate(order):
        n = sum(int(d.get("count") or 1) for d in groups[v])
        out.append(f'<tr><td><a href="#div-{k}"><span class="v" style="background:{_colour(v)}">{_e(v)}</span></a>'
                   f"</td><td>{len(groups[v]):,}</td><td>{n:,}</td><td>{_e(meaning.get(v, ''))}</td></tr>")
    out.append("</tbody></table>")
    if len(divs) > source_limit:
        out.append(f'<p class="small muted">The reproducer source is shown inline for the first {source_limit} '
                   "divergences (in this order); the others link to their file.</p>")
    shown = 0
    for k, v in enumerate(order):
        n = sum(int(d.get("count") or 1) for d in groups[v])
        out.append(f'<section class="verdict" id="div-{k}" data-verdict="{_e(v)}">'
                   f'<h3><span class="v" style="background:{_colour(v)}">{_e(v)}</span> '
                   f"{_plural(len(groups[v]), 'row')}, {_plural(n, 'answer')}</h3>")
        if meaning.get(v):
            out.append(f'<p class="muted">{_e(meaning[v][:1].upper() + meaning[v][1:])}.</p>')
        out.append('<table class="divs"><colgroup><col style="width:13%"><col style="width:12%">'
                   '<col style="width:7%"><col style="width:7%"><col style="width:6%"><col style="width:8%">'
                   '<col style="width:8%"><col style="width:29%"><col style="width:10%"></colgroup>'
                   '<thead><tr><th>adapter / api</th><th>variant · dtype · where</th>'
                   "<th>regime · answers</th><th>ulp (allowed)</th><th>condition</th><th>expected</th><th>got</th>"
                   "<th>what</th><th>case</th></tr></thead><tbody>")
        for original in groups[v]:
            d = _minimal(original)
            where = d.get("quantity") or "-"
            if d.get("index"):
                where += " at (" + ", ".join(str(i) for i in d["index"]) + ")"
            count = d.get("count")
            regime = d.get("regime")
            rc = (_e(regime) if regime else "-") + \
                (f"<br>{_plural(count, 'answer')}" if isinstance(count, int) else "")
            ulp = _ulp_text(d.get("ulp"))
            allow = _num(d.get("allowance"))
            ulp_html = _e(ulp) + (f' <span class="muted">({allow:g})</span>' if allow is not None else "")
            cond = d.get("condition")
            cond_html = f"{cond:.3g}" if _num(cond) is not None else (_e(cond) if isinstance(cond, str) else "-")
            out.append(f'<tr class="div" data-adapter="{_e(d.get("adapter"))}"><td><b>{_e(d.get("adapter"))}</b><br>'
                       f'<code>{_e(d.get("api"))}</code></td><td>{_e(d.get("variant"))} · {_e(d.get("dtype"))}<br>'
                       f'{_e(where)}</td><td>{rc}</td><td>{ulp_html}</td>'
                       f"<td>{cond_html}</td><td>{_number_html(d.get('expected'))}</td>"
                       f"<td>{_number_html(d.get('got'))}</td><td class=\"what\">{_what(d)}</td>"
                       f'<td><code>{_e(d.get("case_id"))}</code>{_shrunk_note(original)}</td></tr>')
            href = _safe_href(d.get("repro"))
            link = f'<a href="{_e(href)}">{_e(href)}</a>' if href else ""
            source = d.get("repro_source")
            if isinstance(source, str) and source and shown < source_limit:
                shown += 1
                out.append(f'<tr class="src"><td colspan="9"><details><summary>reproducer {link or "(source)"}'
                           f"</summary><pre>{_e(source)}</pre></details></td></tr>")
            elif link:
                out.append(f'<tr class="src"><td colspan="9" class="small">reproducer: {link}</td></tr>')
        out.append("</tbody></table></section>")
    return out


# -- budgets, oracle -----------------------------------------------------------------------------

def _budgets(doc: dict) -> list[str]:
    table = doc.get("budgets") or {}
    out = ["<details><summary>The allowance of each element, in ULPs (base per group, dtype and quantity, "
           "plus the terms below)</summary>",
           "<table><thead><tr><th>group</th><th>dtypes</th><th>quantity</th><th>unreduced</th><th>reduced</th>"
           "<th>reason</th></tr></thead><tbody>"]
    for b in table.get("bases", []):
        out.append(f'<tr><td title="{_e(", ".join(b.get("variants", [])))}">{_e(b.get("group"))}</td>'
                   f'<td>{_e(", ".join(b.get("dtypes", [])))}</td><td>{_e(b.get("quantity"))}</td>'
                   f'<td>{_e(b.get("none"))}</td><td>{_e(b.get("reduced"))}</td>'
                   f'<td class="reason">{_e(b.get("reason"))}</td></tr>')
    out.append("</tbody></table><ul>")
    for t in table.get("reduction_terms", []):
        val, grad = t.get("value", {}), t.get("grad", {})
        out.append(f'<li><code>{_e(t.get("reduction"))}</code>: value {_e(val.get("per_log2_n"))} ceil(log2 n) + '
                   f'{_e(val.get("constant"))}, gradient {_e(grad.get("per_log2_n"))} ceil(log2 n) + '
                   f'{_e(grad.get("constant"))}: <span class="reason">{_e(t.get("reason"))}</span></li>')
    out.append(f'<li>Classes: {_e(table.get("class_term"))}</li>'
               f'<li>Conditioning: {_e(table.get("conditioning_term"))}</li></ul></details>')
    return out


def _oracle(doc: dict) -> list[str]:
    rows = doc.get("oracle", [])
    keys = ("cases", "ok", "invalid", "undecided")
    tot = {k: sum(int(o.get(k) or 0) for o in rows) for k in keys}
    secs = sum(_num(o.get("seconds")) or 0.0 for o in rows)
    prec = max([int(o.get("max_prec") or 0) for o in rows] + [0])
    out = [f"<p>{tot['cases']:,} cases, {tot['ok']:,} certified, {tot['invalid']:,} outside the domain, "
           f"<b>{tot['undecided']:,} undecided</b>; at most {prec} bits of working precision; {secs:.1f} s.</p>",
           "<details><summary>Per variant and dtype</summary><table><thead><tr><th>variant</th><th>dtype</th>"
           "<th>cases</th><th>ok</th><th>invalid</th><th>undecided</th><th>max precision (bits)</th>"
           "<th>seconds</th></tr></thead><tbody>"]
    for o in rows:
        out.append(f'<tr><td>{_e(o.get("variant"))}</td><td>{_e(o.get("dtype"))}</td>'
                   + "".join(f"<td>{_e(o.get(k))}</td>" for k in (*keys, "max_prec", "seconds")) + "</tr>")
    out.append("</tbody></table></details>")
    errors = doc.get("oracle_errors", [])
    if errors:
        out.append(f"<h3>Oracle errors ({len(errors):,})</h3><p>The oracle raised on these cases; they got no "
                   "verdict. Each is a bug in the oracle.</p><ul>")
        out += [f'<li>{_e(e.get("variant"))} {_e(e.get("dtype"))} [case <code>{_e(e.get("case_id"))}</code>]: '
                f'<code>{_e(str(e.get("error"))[:300])}</code></li>' for e in errors[:200]]
        if len(errors) > 200:
            out.append(f"<li>… and {len(errors) - 200:,} more in report.json</li>")
        out.append("</ul>")
    return out


# -- the page ------------------------------------------------------------------------------------

def render(doc: dict, source_limit: int = SOURCE_LIMIT) -> str:
    """The whole page, from a report.json document alone."""
    run = doc["run"]
    title = f"xent conformance report: seed {run.get('seed')}, {len(run.get('adapters', []))} adapters"
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             # No fetch of any kind: the page is self-contained, and an injected tag could not load.
             '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; style-src \'unsafe-inline\'; '
             "img-src data:\">",
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>{_e(title)}</title><style>{CSS}</style></head><body>",
             "<h1>xent conformance report</h1>",
             '<nav><a href="#run">Run</a><a href="#matrix-section">Matrix</a><a href="#adapters">Per adapter</a>'
             '<a href="#divergences">Divergences</a><a href="#budgets">Budgets</a><a href="#oracle">Oracle</a></nav>',
             '<section id="run"><h2>Run</h2>', *_header(doc), "</section>",
             '<section id="matrix-section"><h2>Conformance matrix</h2><p>Share of the corpus and shared '
             "generated cases conforming (targeted-search cases, which each cell steers towards its own largest "
             "errors, are left out of the share), worst ULP distance and the count of each other verdict over all answers, "
             "every API and dtype of an adapter. The adapter "
             "names link to their histograms and plots.</p>", *_matrix(doc), "</section>",
             '<section id="adapters"><h2>Per adapter</h2><p>For each adapter: every answer\'s error (in bits: '
             "log2(1 + ulp)) against the largest magnitude among the case's logits or probabilities, coloured by "
             "verdict; then the distribution of errors in each cell.</p>", *_per_adapter(doc), "</section>",
             '<section id="divergences"><h2>Divergences</h2>', *_divergences(doc, source_limit), "</section>",
             '<section id="budgets"><h2>Budgets</h2>', *_budgets(doc), "</section>",
             '<section id="oracle"><h2>Oracle</h2>', *_oracle(doc), "</section>",
             f'<p class="small muted">Rendered from report.json (schema {_e(doc.get("schema"))}).</p>',
             "</body></html>"]
    return "\n".join(parts) + "\n"


def write_html(doc: dict, out_dir) -> Path:
    """Write ``out_dir/index.html`` atomically (``out_dir`` created if needed); returns its path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "index.html"
    return write_atomic(path, render(doc))
