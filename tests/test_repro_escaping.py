"""Generated reproducers embed every string so that it cannot break out of its literal.

A case's note, a divergence's message and explanation, the adapter versions, even the adapter and
API names end up in the script (the docstring and the constants). Whatever they hold (quotes, triple
quotes, backslashes, newlines, CR, NUL, lone surrogates, braces, ``%s``), the script must parse,
encode as UTF-8, read back the very same strings, and run.
"""
from __future__ import annotations

import ast
import json
import re
import subprocess
import sys

import numpy as np
import pytest

from cases import Case
from conformance import repro

NASTY = ["'", '"', "'''", '"""', '""""', "\\", "\\\\'", 'end"', "a\nb", "a\r\nb", "\r", "nul\x00byte", "tab\tx",
         "\u2028line sep", "é数 ✓", "{}", "{0}{x}", "%s %d", '"""); import os; os.system("x"); ("""',
         "'''\\n'''", "\\N{BULLET}", "\\x00", "\x0b\x0c\x1c", "trailing backslash\\"]
SURROGATE = "lone \ud800 surrogate"  # not in a note (a case's note must be valid text) but in a message
SNIPPET = "value = np.log1p(np.exp(inputs['logits']))\ngrads = {}"


def _case(note: str) -> Case:
    return Case("sigmoid_bce_logits", "float32", {"logits": np.array([1.0], np.float32),
                                                  "labels": np.array([0.0], np.float32)}, note=note)


def _constants(tree) -> dict:
    out = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if name.isupper():
                out[name] = ast.literal_eval(node.value)
    return out


def _ws(text: str) -> str:  # textwrap.fill reflows whitespace in the explanation
    return re.sub(r"[\t\n\x0b\x0c\r ]+", " ", text).strip()


def _check(src: str, *, note: str, message: str, explanation: str, versions: str, verdict: str) -> None:
    assert "\x00" not in src
    src.encode("utf-8")  # writable as a file (no lone surrogate left unescaped)
    tree = ast.parse(src)
    doc = ast.get_docstring(tree, clean=False)
    assert f"({note})" in doc
    assert f"the framework ({versions})" in doc
    assert _ws(explanation) in _ws(doc)
    consts = _constants(tree)
    assert consts["MESSAGE"] == message and consts["VERDICT"] == verdict
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert "os" not in names  # nothing from the strings became code


@pytest.mark.parametrize("text", NASTY)
def test_every_string_round_trips_through_the_script(text):
    src = repro.script(_case(text), SNIPPET, adapter="numpy", api="api", verdict="inaccurate", quantity="value",
                       index=(0,), recorded="0x1p+0", truth="0x1p+0", message=text, explanation=text,
                       versions=text)
    _check(src, note=text, message=text, explanation=text, versions=text, verdict="inaccurate")


def test_surrogates_and_everything_at_once_in_a_running_script(tmp_path):
    text = "".join(NASTY)
    message = text + SURROGATE
    src = repro.script(_case(text), SNIPPET, adapter='ad"""apter', api="a\\pi\n", verdict="inaccurate",
                       quantity="value", index=(0,), recorded="0x1p+0", truth="0x1p+0", message=message,
                       explanation=message, versions=message)
    _check(src, note=text, message=message, explanation=message, versions=message, verdict="inaccurate")
    path = tmp_path / "r.py"
    path.write_text(src, encoding="utf-8")
    done = subprocess.run([sys.executable, str(path), "--json"], capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    out = json.loads(done.stdout.decode().strip().splitlines()[-1])
    want = float(np.log1p(np.exp(np.float32(1.0))))
    assert out["value"]["dtype"] == "float32" and float.fromhex(out["value"]["hex"][0]) == pytest.approx(want)
    done = subprocess.run([sys.executable, str(path)], capture_output=True, timeout=120)
    assert done.returncode in (0, 1) and b"REPRODUCED" in done.stdout, done.stderr.decode(errors="replace")
    assert b"Traceback" not in done.stderr


def test_for_divergence_embeds_the_report_strings_safely(tmp_path):
    class Stub:
        def repro(self, case, api):
            return SNIPPET

    text = "".join(NASTY) + SURROGATE
    case = _case('note """ \\ \x00')
    div = {"adapter": "numpy", "api": "x'''y", "verdict": "raised", "quantity": None, "index": None,
           "got": None, "expected": None, "message": text, "case": case.to_dict()}
    src = repro.for_divergence(div, Stub(), explanation=text, versions=text)
    _check(src, note='note """ \\ \x00', message=text, explanation=text, versions=text, verdict="raised")
    path = tmp_path / "d.py"
    path.write_text(src, encoding="utf-8")
    done = subprocess.run([sys.executable, str(path)], capture_output=True, timeout=120)
    # the call returns, so a "raised" divergence does not reproduce: exit 1, and the message is printed
    assert done.returncode == 1 and b"expected an exception" in done.stdout, done.stderr.decode(errors="replace")
