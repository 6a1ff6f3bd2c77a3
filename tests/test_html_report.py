"""index.html: the report as one self-contained page, checked as text and in a headless browser.

The unit tests render a small synthetic document (with the optional per-cell histogram and points
and the optional divergence fields) and the document of a real tiny run; the browser tests load the
written page from a file:// URL in headless Chromium (through selenium and chromedriver, or, without
them, Chromium's own --dump-dom) and check that it renders with no console error, that the matrix
has one row per adapter, and that hostile strings from a case or a framework stay text.
"""
import html as stdlib_html
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from cases import Case
from conformance import html as html_report
from conformance import report, runner
from conformance.verdict import MEANING, SEVERITY

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
PAYLOADS = (SCRIPT, IMG)
AUDIT = Path(__file__).resolve().parent.parent / "reports" / "audit" / "report.json"


def _case_dict(note="") -> dict:
    return Case("sigmoid_bce_logits", "float32",
                {"logits": np.array([1.0, -810.0], dtype=np.float32), "labels": np.array([1.0, 0.0], dtype=np.float32)},
                note=note).to_dict()


def _hist(**bins) -> list:
    h = [0] * 66
    for k, n in bins.items():
        h[int(k[1:])] = n
    return h


def _divergence(**over) -> dict:
    d = {"adapter": "bad", "api": "textbook", "variant": "sigmoid_bce_logits", "dtype": "float32", "verdict": "nan",
         "quantity": "value", "index": [1], "ulp": None, "allowance": 2.0,
         "allowance_terms": {"base": 2, "reduction": 0, "classes": 0, "conditioning": 0.0},
         "expected": {"hex": "0x0p+0", "decimal": "0", "dtype": "float32"},
         "got": {"hex": "nan", "decimal": "nan", "dtype": "float32"}, "message": "", "case_id": "05484ecba161fe4b",
         "note": "x = -810", "case": _case_dict("x = -810"), "regime": "x << 0", "count": 3, "condition": 1.0,
         "explanation": "exp(-x) overflows", "repro": "repro/05484ecba161fe4b.py",
         "repro_source": "#!/usr/bin/env python3\nprint('reproduced' if 1 < 2 else \"no\")\n"}
    d.update(over)
    return d


def synthetic_doc() -> dict:
    """Two adapters (one a control) over two variants, one cell of each kind of data."""
    adapters = [
        {"name": "good", "description": "stable", "control": False, "available": True, "version": "1.0"},
        {"name": "bad", "description": "textbook", "control": True, "available": True, "version": "0.1"},
        {"name": "absent", "description": "not installed", "control": False, "available": False,
         "reason": "No module named 'absent'"},
    ]
    cells = [
        {"adapter": "good", "api": "good_api", "variant": "sigmoid_bce_logits", "dtype": "float32", "cases": 10,
         "conforming": 10, "max_ulp": 1, "max_bits": 1.0, "verdicts": {"conforms": 10},
         "error_bits_histogram": _hist(b0=8, b1=2), "no_number": 0,
         "points": [[1.0, 0.0, "conforms"], [20.0, 1.0, "conforms"]]},
        {"adapter": "good", "api": "good_api", "variant": "softmax", "dtype": "float32", "cases": 4,
         "conforming": 4, "max_ulp": 0, "max_bits": 0.0, "verdicts": {"conforms": 4}},  # no histogram, no points
        {"adapter": "bad", "api": "textbook", "variant": "sigmoid_bce_logits", "dtype": "float32", "cases": 4,
         "conforming": 0, "max_ulp": 2 ** 40, "max_bits": 40.0, "verdicts": {"nan": 2, "inaccurate": 2},
         "error_bits_histogram": _hist(b12=1, b40=1), "no_number": 2,
         "points": [[810.0, 12.0, "inaccurate"], [1e30, 40.0, "inaccurate"], [None, 3.0, "nan"], [5.0, None, "nan"]]},
    ]
    divergences = [
        _divergence(),
        _divergence(verdict="inaccurate", ulp=4097, got={"hex": "0x1p-20", "decimal": "9.536743e-07",
                                                         "dtype": "float32"},
                    repro="repro/aaaaaaaaaaaaaaaa.py", case_id="aaaaaaaaaaaaaaaa", condition="inf",
                    explanation=None),
        _divergence(verdict="raised", message="ValueError: bad input", count=None, regime=None,
                    explanation="`bad/textbook` raised `ValueError: bad input`",
                    repro=None, repro_source=None, case_id="bbbbbbbbbbbbbbbb",
                    case={"variant": "unknown", "dtype": "float32", "inputs": {}, "options": {}}),
    ]
    return {
        "schema": "xent-report/1",
        "environment": {"python": "3.11.7", "implementation": "CPython", "platform": "Linux-test",
                        "packages": {"numpy": "2.0", "mpmath": "1.3.0", "python-flint": None},
                        "adapters": adapters},
        "run": {"seed": 7, "examples": 2, "duration_s": 1.5, "finished_utc": "2026-01-01T00:00:00+00:00",
                "adapters": ["good", "bad"], "variants": ["sigmoid_bce_logits", "softmax"], "dtypes": ["float32"],
                "argv": ["run", "--seed", "7"]},
        "budgets": {"bases": [{"group": "elementwise", "variants": ["sigmoid_bce_logits"], "dtypes": ["float32"],
                               "quantity": "value", "none": 2, "reduced": 4, "reason": "one rounding"}],
                    "reduction_terms": [{"reduction": "mean", "value": {"per_log2_n": 1, "constant": 1},
                                         "grad": {"per_log2_n": 0, "constant": 1}, "reason": "the division"}],
                    "class_term": "ceil(log2 C)", "conditioning_term": "2 u sens / ulp"},
        "verdicts": {"severity": list(SEVERITY), "meaning": dict(MEANING)},
        "oracle": [{"variant": "sigmoid_bce_logits", "dtype": "float32", "cases": 14, "ok": 13, "invalid": 1,
                    "undecided": 0, "seconds": 0.05, "max_prec": 64}],
        "cells": cells,
        "not_applicable": [{"adapter": "bad", "variant": "softmax", "dtype": "float32", "cases": 4}],
        "divergences": divergences,
        "oracle_errors": [],
    }


class _Collect(HTMLParser):
    """Start tags with their attributes, and the text inside each <pre> and <figcaption>."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags, self.pres, self.captions, self._in = [], [], [], None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag in ("pre", "figcaption"):
            self._in = (tag, [])

    def handle_endtag(self, tag):
        if self._in and tag == self._in[0]:
            (self.pres if tag == "pre" else self.captions).append("".join(self._in[1]))
            self._in = None

    def handle_data(self, data):
        if self._in:
            self._in[1].append(data)


def _parse(page: str) -> _Collect:
    p = _Collect()
    p.feed(page)
    p.close()
    return p


def _matrix_cells(parsed: _Collect) -> dict:
    return {(a["data-adapter"], a["data-variant"]): a for t, a in parsed.tags
            if t == "td" and "data-adapter" in a and "data-variant" in a}


# -- the page as text ----------------------------------------------------------------------------

def test_matrix_is_a_heat_map_with_a_cell_per_adapter_and_variant():
    doc = synthetic_doc()
    cells = _matrix_cells(_parse(html_report.render(doc)))
    assert set(cells) == {(a, v) for a in doc["run"]["adapters"] for v in doc["run"]["variants"]}
    assert cells[("bad", "softmax")]["class"] == "na" and "style" not in cells[("bad", "softmax")]
    assert "4 cases not applicable" in cells[("bad", "softmax")]["title"]
    assert cells[("good", "sigmoid_bce_logits")]["style"] == f"background:{html_report._heat(1, 1)}"
    assert float(cells[("good", "softmax")]["data-pct"]) == 100
    assert float(cells[("bad", "sigmoid_bce_logits")]["data-pct"]) == 0
    assert cells[("bad", "sigmoid_bce_logits")]["style"].startswith("background:hsl(0,")


def test_heat_and_percent_never_round_to_the_ends():
    assert html_report._pct_text(999_999, 1_000_000) == "99.9%"
    assert html_report._pct_text(1, 1_000_000) == "0.1%"
    assert html_report._pct_text(5, 5) == "100%" and html_report._pct_text(0, 5) == "0%"
    assert html_report._heat(999, 1000) != html_report._heat(1, 1)


def test_histograms_per_cell_and_no_data_when_absent():
    page = html_report.render(synthetic_doc())
    figures = re.findall(r'<figure class="cell" data-adapter="[^"]*"><figcaption><b>([^<]*)</b> · (\w+) · '
                         r"(.*?)</figure>", page, re.S)
    by_cell = {f"{api}/{variant}": body for api, variant, body in figures}
    assert len(figures) == 3 and len(by_cell) == 3
    assert "<svg" in by_cell["good_api/sigmoid_bce_logits"]
    assert "no data" in by_cell["good_api/softmax"] and "<svg" not in by_cell["good_api/softmax"]
    bad = by_cell["textbook/sigmoid_bce_logits"]
    assert bad.count("<rect") == 3  # bins 12 and 40, and the two answers with no number
    assert "2 answers with no finite ULP error" in bad
    # The histograms sit in one collapsed <details> per adapter.
    assert page.count("<details><summary>ULP-error histograms") == 2


def test_scatter_counts_what_it_cannot_plot():
    parsed = _parse(html_report.render(synthetic_doc()))
    captions = [c for c in parsed.captions if "answers plotted" in c]  # one scatter per adapter
    assert captions == ["2 answers plotted (2 distinct marks).",
                        "2 answers plotted (2 distinct marks); not plotted: 1 without an input magnitude; "
                        "1 without a finite error (nan 1)."]


def test_divergences_grouped_by_severity_with_reproducers():
    doc = synthetic_doc()
    page = html_report.render(doc)
    order = re.findall(r'<section class="verdict" id="div-\d+" data-verdict="([^"]+)"', page)
    assert order == ["raised", "nan", "inaccurate"]  # doc["verdicts"]["severity"] order
    parsed = _parse(page)
    assert parsed.pres == [doc["divergences"][0]["repro_source"], doc["divergences"][1]["repro_source"]]
    links = [a["href"] for t, a in parsed.tags if t == "a" and a.get("href", "").startswith("repro/")]
    assert links == ["repro/05484ecba161fe4b.py", "repro/aaaaaaaaaaaaaaaa.py"]
    assert "exp(-x) overflows" in page and "x &lt;&lt; 0" in page and "3 answers" in page
    # report.explain's `code` spans become <code>; a message already in the line is not repeated.
    assert "<code>bad/textbook</code> raised <code>ValueError: bad input</code>" in page
    assert page.count("ValueError: bad input") == 1
    # Without an explanation: the answer against the truth, and the worst element's inputs.
    assert "returned 9.536743e-07 where the truth is 0" in page and "inputs: x=-810, z=0" in page
    assert "<td>inf</td>" in page  # a condition number can be the string "inf"
    # Past the limit, the source is linked, not inlined.
    limited = _parse(html_report.render(doc, source_limit=1))
    assert len(limited.pres) == 1
    assert [a["href"] for t, a in limited.tags if t == "a" and a.get("href", "").startswith("repro/")] == links


def test_a_shrunk_divergence_is_shown_as_its_shrunk_case():
    doc = synthetic_doc()
    d = doc["divergences"][1]
    d["shrunk"] = {"case_id": "dddddddddddddddd", "index": [0], "steps": 3, "calls": 14,
                   "got": {"hex": "0x1p-10", "decimal": "0.0009765625", "dtype": "float32"},
                   "case": _case_dict("shrunk")}
    page = html_report.render(doc)
    row = re.search(r'<tr class="div"[^>]*>((?:(?!</tr>).)*dddddddddddddddd(?:(?!</tr>).)*)</tr>', page, re.S).group(1)
    assert "shrunk in 3 steps from <code>aaaaaaaaaaaaaaaa</code>" in row
    assert "value at (0)" in row and "returned 0.0009765625 where the truth is 0" in row
    assert "9.536743e-07" not in row


def test_a_reproducer_path_becomes_a_link_only_when_it_is_a_plain_relative_path():
    for bad in ("javascript:alert(1)", "/etc/passwd", "../x.py", "repro/../../x.py", "http://example.com/x.py",
                "repro/a b.py", 'repro/x".py', None, 7):
        assert html_report._safe_href(bad) is None, bad
    assert html_report._safe_href("repro/0123456789abcdef.py") == "repro/0123456789abcdef.py"
    doc = synthetic_doc()
    doc["divergences"][0]["repro"] = "javascript:alert(1)"
    page = html_report.render(doc)
    assert "javascript:" not in page


def _hostile_doc() -> dict:
    doc = synthetic_doc()
    evil = SCRIPT + IMG
    d = doc["divergences"][0]
    d.update(message=evil, note=evil, api=evil, repro_source=evil + "\n" + evil, explanation=evil, regime=evil)
    d["case"]["note"] = evil
    doc["divergences"][2]["message"] = evil
    doc["cells"][2]["api"] = evil
    doc["cells"][2]["points"].append([1.0, 2.0, evil])
    doc["environment"]["adapters"][0]["version"] = evil
    doc["environment"]["adapters"][2]["reason"] = evil
    doc["environment"]["platform"] = evil
    doc["run"]["argv"] = ["run", evil]
    doc["oracle_errors"] = [{"variant": "softmax", "dtype": "float32", "case_id": "cccccccccccccccc", "error": evil,
                             "case": {}}]
    return doc


def test_strings_from_cases_and_frameworks_are_escaped():
    page = html_report.render(_hostile_doc())
    for raw in PAYLOADS:
        assert raw not in page
        assert stdlib_html.escape(raw, quote=True) in page
    assert "<script" not in page.lower() and "<img" not in page.lower()
    # The source round-trips exactly through the escaping.
    assert SCRIPT + IMG + "\n" + SCRIPT + IMG in _parse(page).pres


def test_page_is_self_contained():
    page = html_report.render(synthetic_doc())
    assert page.startswith("<!DOCTYPE html>")
    assert "default-src 'none'" in page  # the CSP: no fetch of any kind
    for needle in ("<script", "<link", "@import", "url(", "src="):
        assert needle not in page.lower(), needle
    hrefs = [a["href"] for t, a in _parse(page).tags if "href" in a]
    assert all(h.startswith("#") or h.startswith("repro/") for h in hrefs), hrefs


def test_write_html_is_atomic_and_readable(tmp_path):
    doc = synthetic_doc()
    old = os.umask(0o022)
    try:
        path = html_report.write_html(doc, tmp_path / "out")
    finally:
        os.umask(old)
    assert path == tmp_path / "out" / "index.html"
    assert path.read_text(encoding="utf-8") == html_report.render(doc)
    assert path.stat().st_mode & 0o777 == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["index.html"]  # no temp file left


@pytest.fixture(scope="module")
def real_doc():
    res = runner.run(["numpy", "naive"], ["sigmoid_bce_logits", "softmax_ce_sparse"], ["float32"], 3, 0,
                     progress=None)
    return json.loads(json.dumps(report.build(res)))  # as read back from report.json


def test_real_run_renders(real_doc):
    page = html_report.render(real_doc)
    cells = _matrix_cells(_parse(page))
    assert set(cells) == {(a, v) for a in ("numpy", "naive") for v in ("sigmoid_bce_logits", "softmax_ce_sparse")}
    assert all(float(cells[("numpy", v)]["data-pct"]) == 100 for v in ("sigmoid_bce_logits", "softmax_ce_sparse"))
    assert float(cells[("naive", "sigmoid_bce_logits")]["data-pct"]) < 100  # the control is caught
    verdicts = {d["verdict"] for d in real_doc["divergences"]}
    assert verdicts and all(f'data-verdict="{v}"' in page for v in verdicts)


@pytest.mark.skipif(not AUDIT.exists(), reason="no committed audit report")
def test_committed_audit_renders_at_a_reasonable_size():
    doc = json.loads(AUDIT.read_text(encoding="utf-8"))
    page = html_report.render(doc)
    cells = _matrix_cells(_parse(page))
    assert {a for a, _ in cells} == set(doc["run"]["adapters"])
    assert len(page) < 4_000_000


# -- the page in a browser -----------------------------------------------------------------------

def _chromium() -> str | None:
    for name in (os.environ.get("XENT_CHROMIUM"), "chromium", "chromium-browser", "google-chrome",
                 "google-chrome-stable"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"]


class _Selenium:
    """Chromium driven by chromedriver: the DOM, the console, and scripts for the checks."""

    def __init__(self, binary: str, driver: str):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        options = webdriver.ChromeOptions()
        options.binary_location = binary
        for flag in FLAGS:
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        # An explicit chromedriver: selenium never looks for (or downloads) one itself.
        self.driver = webdriver.Chrome(options=options, service=Service(driver))
        self.driver.set_page_load_timeout(20)

    def load(self, path: Path) -> tuple[str, list[str]]:
        """The page's DOM after loading, and its SEVERE console entries."""
        self.driver.get(path.as_uri())
        errors = [e["message"] for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]
        return self.driver.page_source, errors

    def run(self, script: str):
        return self.driver.execute_script(script)

    def close(self):
        self.driver.quit()


class _DumpDom:
    """No chromedriver or selenium: Chromium's --dump-dom, with console messages read from its log."""

    def __init__(self, binary: str, profile: Path):
        self.binary, self.profile = binary, profile

    def load(self, path: Path) -> tuple[str, list[str]]:
        proc = subprocess.run([self.binary, *FLAGS, "--enable-logging=stderr", "--v=0",
                               f"--user-data-dir={self.profile}", "--dump-dom", path.as_uri()],
                              capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stderr[-2000:]
        # The page has no script, so any console message at all is a failure (a blocked load, a CSP report).
        return proc.stdout, [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]

    run = None

    def close(self):
        pass


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    binary = _chromium()
    if binary is None:
        pytest.skip("no Chromium binary (chromium, chromium-browser, google-chrome) on PATH")
    driver = shutil.which("chromedriver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        driver = None
    b = _Selenium(binary, driver) if driver else _DumpDom(binary, tmp_path_factory.mktemp("profile"))
    yield b
    b.close()


def test_page_renders_in_a_browser(browser, real_doc, tmp_path):
    doc = synthetic_doc()
    for extra in real_doc["run"]["adapters"]:  # one page with both the synthetic and the real cells
        doc["run"]["adapters"].append(extra)
    doc["run"]["variants"].append("softmax_ce_sparse")
    doc["cells"] += real_doc["cells"]
    doc["divergences"] += real_doc["divergences"]
    doc["environment"]["adapters"] += real_doc["environment"]["adapters"]
    path = html_report.write_html(doc, tmp_path)
    dom, errors = browser.load(path)
    assert errors == []
    parsed = _parse(dom)
    rows = [a["data-adapter"] for t, a in parsed.tags if t == "tr" and "data-adapter" in a and "class" not in a]
    assert rows == doc["run"]["adapters"]
    cells = _matrix_cells(parsed)
    assert set(cells) == {(a, v) for a in doc["run"]["adapters"] for v in doc["run"]["variants"]}
    assert "<title>xent conformance report" in dom and "<h1>xent conformance report</h1>" in dom
    if browser.run:
        js = browser.run
        assert js("return document.title").startswith("xent conformance report")
        assert js("return document.querySelector('h1').innerText") == "xent conformance report"
        assert js("return document.querySelectorAll('#matrix tbody tr').length") == len(doc["run"]["adapters"])
        per_row = js("return [...document.querySelectorAll('#matrix tbody tr')].map("
                     "r => [...r.querySelectorAll('td')].map(td => td.dataset.adapter + '/' + td.dataset.variant))")
        assert per_row == [[f"{a}/{v}" for v in doc["run"]["variants"]] for a in doc["run"]["adapters"]]
        colours = js("return Object.fromEntries([...document.querySelectorAll('#matrix td')].map("
                     "td => [td.dataset.adapter + '/' + td.dataset.variant, getComputedStyle(td).backgroundColor]))")
        assert colours["numpy/softmax_ce_sparse"] == colours["good/sigmoid_bce_logits"]  # both 100%: green
        assert colours["bad/sigmoid_bce_logits"] != colours["good/sigmoid_bce_logits"]
        assert colours["bad/softmax"] != colours["bad/sigmoid_bce_logits"]  # n/a: grey
        assert js("return performance.getEntriesByType('resource').length") == 0  # nothing fetched
        assert js("return document.querySelectorAll('svg').length") > 0


def test_hostile_strings_stay_text_in_a_browser(browser, tmp_path):
    doc = _hostile_doc()
    path = html_report.write_html(doc, tmp_path)
    dom, errors = browser.load(path)
    assert errors == []  # a blocked <img src=x> or inline script would be reported here
    tags = [t for t, _ in _parse(dom).tags]
    assert "script" not in tags and "img" not in tags
    assert all(not any(k.startswith("on") for k in a) for _, a in _parse(dom).tags)
    if browser.run:
        js = browser.run
        from selenium.common.exceptions import NoAlertPresentException
        with pytest.raises(NoAlertPresentException):
            browser.driver.switch_to.alert.text  # noqa: B018
        assert SCRIPT in js("return document.body.innerText")
        js("document.querySelectorAll('details').forEach(d => d.open = true)")
        sources = js("return [...document.querySelectorAll('pre')].map(p => p.textContent)")
        assert doc["divergences"][0]["repro_source"] in sources
