"""Standalone reproducers: ``repro/<case_id>.py``, one per divergence, needing only the framework
and numpy.

A script holds the case's inputs bit-exact (each value as the ``float.hex()`` of its value in the
case dtype), the adapter's exact API call (``Adapter.repro(case, api)``, a snippet of Python that
reads ``inputs`` and sets ``value`` and ``grads``), what xent recorded the call returning, and the
certified truth. Run on its own it prints both and says whether the divergence reproduced
(exit 0) or not (exit 1); ``--json`` prints every output element as hex instead (what the tests use
to check that a snippet makes exactly the call the adapter made).

The snippet contract, for adapter authors: the snippet is the body of a function; it may import the
framework (inside the body, so a missing framework is reported, not a traceback at import), reads
``inputs`` (name -> numpy array; floats in the case dtype, except bfloat16, which numpy lacks:
those arrive as float32 arrays holding the bfloat16 values exactly, with ``DTYPE == "bfloat16"``),
and must set ``value`` (the returned loss as a numpy array, any dtype) and ``grads`` (input name
-> numpy array of the gradient of ``sum(value)``; ``{}`` when none). Where numpy cannot hold what
the framework returned (bfloat16 without ml_dtypes), the snippet converts exactly to float32 and
sets ``dtypes`` (``{"value": "bfloat16", "logits": "bfloat16"}``: quantity -> the framework's
dtype name). Options are written into the call as literals, so a reader sees the call exactly as
made.
"""
from __future__ import annotations

import json
import textwrap

import numpy as np

from cases import Case
from cases.model import _float_token

_HEADER = '''\
#!/usr/bin/env python3
"""xent reproducer: {adapter} / {api}: {variant} {dtype}, verdict {verdict_doc}.

{explanation}

Case {case_id} ({note}). Needs only numpy and the framework ({versions}).
Run: python {case_id}.py        (exit 0: the divergence reproduced; 1: it did not)
     python {case_id}.py --json (every output element as hex)
"""
import json
import sys

import numpy as np

DTYPE = {dtype!r}
VERDICT = {verdict!r}
QUANTITY = {quantity!r}  # "value", or "grad:<input>" for the gradient of sum(value) w.r.t. an input
INDEX = {index!r}  # the element xent reported (None: the whole output)
RECORDED = {recorded!r}  # what xent saw the call return there (float.hex of the value; None: no number)
TRUTH = {truth!r}  # the certified, correctly rounded value in {dtype} (float.hex)
MESSAGE = {message!r}


def _array(tokens, shape, dtype):
    """Bit-exact inputs: float.hex strings (or ints) into an array of the case dtype; a NaN other
    than the canonical one is "nan:<its bit pattern in the dtype>"."""
    if dtype == "int64":
        return np.array(tokens, dtype=np.int64).reshape(shape)
    # bfloat16 has no numpy dtype: float32 holds every bfloat16 value exactly (its bits << 16).
    np_dtype = {{"float16": np.float16, "float32": np.float32, "bfloat16": np.float32,
                "float64": np.float64}}[dtype]
    uint = {{"float16": np.uint16, "float32": np.uint32, "bfloat16": np.uint32, "float64": np.uint64}}[dtype]
    out = np.empty(len(tokens), dtype=np_dtype)
    for k, t in enumerate(tokens):
        if t.startswith("nan:"):
            bits = int(t[4:], 16) << (16 if dtype == "bfloat16" else 0)
            out[k] = np.array([bits], dtype=uint).view(np_dtype)[0]
        else:
            out[k] = float.fromhex(t)
    return out.reshape(shape)


inputs = {{
{inputs}
}}


def call(inputs):
    dtypes = {{}}
{snippet}
    return value, grads, dtypes


def _hex(x):
    return float(np.asarray(x, dtype=np.float64)).hex()


def _same(a, b):
    """The same number (NaN matches NaN; -0.0 does not match 0.0)."""
    return (np.isnan(a) and np.isnan(b)) or (a == b and np.signbit(a) == np.signbit(b))


def main():
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="backslashreplace")  # any message prints, whatever it holds
    try:
        value, grads, dtypes = call(inputs)
    except Exception as e:  # the verdict "raised" is an exception where the truth is defined
        print(f"the call raised {{type(e).__name__}}: {{e}}")
        if "--json" in sys.argv:
            print(json.dumps({{"raised": type(e).__name__}}))
            return 0 if VERDICT == "raised" else 1
        ok = VERDICT == "raised"
        print(("REPRODUCED: " if ok else "NOT REPRODUCED: ") + VERDICT + (f" ({{MESSAGE}})" if MESSAGE else ""))
        return 0 if ok else 1
    if "--json" in sys.argv:
        out = {{"value": _dump(value, dtypes.get("value")),
               "grads": {{k: _dump(g, dtypes.get(k)) for k, g in grads.items()}}}}
        print(json.dumps(out))
        return 0
    got = value if QUANTITY == "value" else grads.get(QUANTITY[5:])
    if got is None:
        print(f"the call returned no {{QUANTITY}}")
        return 1
    got = np.asarray(got)
    got_dtype = dtypes.get("value" if QUANTITY == "value" else QUANTITY[5:], got.dtype.name)
    print(f"returned {{QUANTITY}}: dtype {{got_dtype}}, shape {{list(got.shape)}}")
    if VERDICT == "raised":
        print("expected an exception (" + MESSAGE + "), but the call returned")
        return 1
    if VERDICT in ("dtype", "shape"):
        print(MESSAGE)
        ok = (VERDICT == "dtype" and got_dtype != DTYPE) or (VERDICT == "shape" and MESSAGE.startswith(
            f"returned shape {{list(got.shape)}}"))
    else:
        element = got.reshape(-1)[0] if INDEX is None and got.size else got[tuple(INDEX or ())]
        here = _hex(element)
        where = "" if INDEX is None else f" at {{tuple(INDEX)}}"
        print(f"{{QUANTITY}}{{where}}: returned {{here}} ({{float.fromhex(here)!r}})")
        if TRUTH is not None:
            print(f"{{QUANTITY}}{{where}}: certified truth {{TRUTH}} ({{float.fromhex(TRUTH)!r}}) in {{DTYPE}}")
        ok = RECORDED is not None and _same(float.fromhex(here), float.fromhex(RECORDED))
    print(("REPRODUCED: " if ok else "NOT REPRODUCED: ") + VERDICT + (f" ({{MESSAGE}})" if MESSAGE else ""))
    return 0 if ok else 1


def _dump(a, dtype=None):
    a = np.asarray(a)
    return {{"dtype": dtype or a.dtype.name, "shape": list(a.shape),
            "hex": [float(x).hex() for x in np.asarray(a, dtype=np.float64).reshape(-1)]}}


if __name__ == "__main__":
    sys.exit(main())
'''


def _input_lines(case: Case) -> str:
    lines = []
    for name, arr in case.inputs.items():
        if arr.dtype.kind in "iu":
            values, dtype = [int(v) for v in arr.reshape(-1)], "int64"
        else:
            f = case.format
            bits = f.to_bits(arr.reshape(-1))
            with np.errstate(invalid="ignore"):  # bfloat16 NaN to float64 warns; the bits are kept
                wide = np.asarray(arr, dtype=np.float64).reshape(-1)
            values = [_float_token(int(b), float(x), f) for b, x in zip(bits, wide)]
            dtype = case.dtype
        body = json.dumps(values)
        if len(body) > 90:
            body = "[\n" + textwrap.indent(textwrap.fill(body[1:-1], 96), " " * 8) + "\n    ]"
        lines.append(f"    {name!r}: _array({body}, {tuple(arr.shape)!r}, {dtype!r}),")
    return "\n".join(lines)


def _doc(text, keep_newlines: bool = False) -> str:
    """``text`` for the script's docstring (a plain triple-quoted literal) so that it cannot end the
    literal or the source, and reads back as exactly ``text``: backslashes and double quotes escaped,
    every character that is not printable (NUL, CR, tabs, lone surrogates, ...; newlines too, unless
    ``keep_newlines``) written as its escape sequence."""
    out = []
    for c in str(text):
        if c == "\\":
            out.append("\\\\")
        elif c == '"':
            out.append('\\"')
        elif c.isprintable() or (keep_newlines and c == "\n"):
            out.append(c)
        else:
            out.append(repr(c)[1:-1])
    return "".join(out)


def script(case: Case, snippet: str, *, adapter: str, api: str, verdict: str = "conforms",
           quantity: str = "value", index=None, recorded: str | None = None, truth: str | None = None,
           message: str = "", explanation: str = "", versions: str = "") -> str:
    """The source of a standalone reproducer of ``case`` through ``snippet``.

    Every string is embedded so that nothing in it can break out of its literal: the constants
    (``VERDICT``, ``MESSAGE``, ...) as ``repr``, the docstring's texts through ``_doc``; the snippet is
    the adapter's own code."""
    return _HEADER.format(
        adapter=_doc(adapter), api=_doc(api), variant=_doc(case.variant), dtype=case.dtype, verdict=verdict,
        verdict_doc=_doc(verdict),
        explanation=_doc(textwrap.fill(str(explanation), 96), keep_newlines=True) or "(no explanation)",
        case_id=case.case_id, note=_doc(case.note or "no note"),
        versions=_doc(versions) or "any version",
        quantity=quantity, index=None if index is None else tuple(index), recorded=recorded, truth=truth,
        message=message, inputs=_input_lines(case),
        snippet=textwrap.indent(textwrap.dedent(snippet).strip("\n"), "    "),
    )


def for_divergence(div: dict, adapter, explanation: str = "", versions: str = "") -> str | None:
    """The reproducer of one report divergence (``runner.divergence`` dict), or None when the
    adapter offers no snippet for its API."""
    case = Case.from_dict(div["case"])
    snippet = adapter.repro(case, div["api"]) if hasattr(adapter, "repro") else None
    if snippet is None:
        return None
    return script(case, snippet, adapter=div["adapter"], api=div["api"], verdict=div["verdict"],
                  quantity=div["quantity"] or "value", index=div["index"],
                  recorded=div["got"]["hex"] if div.get("got") else None,
                  truth=div["expected"]["hex"] if div.get("expected") else None,
                  message=div.get("message") or "", explanation=explanation, versions=versions)


def output_json(output) -> dict:
    """An adapter ``Output`` in the form ``run_outputs`` returns, to compare the two bit for bit."""
    def dump(a):
        a = np.asarray(a)
        return {"dtype": a.dtype.name, "shape": list(a.shape),
                "hex": [float(x).hex() for x in np.asarray(a, dtype=np.float64).reshape(-1)]}

    return {"value": dump(output.value), "grads": {k: dump(g) for k, g in output.grads.items()}}
