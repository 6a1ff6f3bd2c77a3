"""``xent oracle``: the certified answer for one case given on the command line.

Values are decimals, hex floats, ``inf``, ``nan`` or JSON nested lists, rounded once into the dtype
(the command says when that changed a value); options are parsed by the variant's spec; a shape and
axis place them. For each output element it prints the exact value, the correctly rounded value
(decimal and hex) and the working precision, then the same for each gradient. An input outside
the variant's domain is an answer (the oracle's reason, exit 0), not an error.
"""
from __future__ import annotations

import json
import sys

import numpy as np

from cases import FORMATS, VARIANTS, Case, CaseError
from cases.model import MAX_NDIM
from cases.variants import INT
from .cli import UsageError
from .numbers import exact_decimal, hex_of, parse_float, shortest


def _tokens(text: str):
    """Nested lists of number tokens from ``1,-810,0x1p-3`` or ``[[1, 2], ["0x1p-3", 4]]``."""
    text = text.strip()
    if text.startswith("["):
        try:
            return json.loads(text, parse_float=str, parse_int=str, parse_constant=str)
        except (ValueError, RecursionError) as e:
            raise UsageError(f"not a JSON list: {text[:80]!r} ({e})") from None
    return [t.strip() for t in text.split(",")]


def _array(name: str, text: str, kind: str, dtype: str, rounded: list[str]) -> np.ndarray:
    f = FORMATS[dtype]

    def convert(tok, where, depth=0):
        if isinstance(tok, list):
            if depth >= MAX_NDIM:
                raise UsageError(f"--{name}: lists nested more than {MAX_NDIM} deep")
            return [convert(t, f"{where}[{i}]", depth + 1) for i, t in enumerate(tok)]
        tok = str(tok)
        if kind == INT:
            try:
                v = int(tok)
            except ValueError:
                raise UsageError(f"--{name}: {tok[:80]!r} is not an integer") from None
            if not -2**63 <= v < 2**63:
                raise UsageError(f"--{name}: {tok[:80]} does not fit in int64")
            return v
        try:
            v, changed = parse_float(tok, f)
        except ValueError:
            raise UsageError(f"--{name}: {tok[:80]!r} is not a number") from None
        if changed:
            rounded.append(f"{where} = {tok} becomes {hex_of(v)} = {exact_decimal(v)} in {dtype}")
        return v

    values = convert(_tokens(text), name)
    try:
        arr = np.array(values, dtype=np.int64 if kind == INT else np.float64)
    except ValueError:
        raise UsageError(f"--{name}: ragged nested lists") from None
    return arr if kind == INT else arr.astype(f.np_dtype)


def _option(spec, text: str):
    key, sep, raw = text.partition("=")
    key = key.strip().replace("-", "_")
    o = spec.option(key)
    if not sep or o is None:
        known = ", ".join(x.name for x in spec.options) or "none"
        raise UsageError(f"--option {text!r}: expected K=V with K one of {known}")
    raw = raw.strip()
    try:
        if o.type is bool:
            if raw.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return key, raw.lower() in ("true", "1")
        if o.default is None and raw.lower() == "none":
            return key, None
        if o.type is int:
            return key, int(raw)
        if o.type is float:
            return key, parse_float(raw, FORMATS["float64"])[0]  # decimal, hex, inf, nan; no OverflowError
        return key, raw
    except ValueError:
        raise UsageError(f"--option {text[:80]!r}: {raw[:80]!r} is not a{'n' * (o.type is int)} "
                         f"{o.type.__name__}") from None


def _reshape(case_inputs: dict, spec, shape: tuple[int, ...], axis: int) -> None:
    main = "probs" if "probs" in case_inputs else "logits"
    n = int(np.prod(shape))
    unit = tuple(s for i, s in enumerate(shape) if i != axis % len(shape)) if spec.has_axis else shape
    for name, arr in case_inputs.items():
        if name == "class_weights":  # always (C,)
            continue
        if arr.size == n and (name == main or spec.input(name).kind != INT or not spec.has_axis):
            case_inputs[name] = arr.reshape(shape)
        elif arr.size == int(np.prod(unit)):
            case_inputs[name] = arr.reshape(unit)
        elif name == main:
            raise UsageError(f"--shape {list(shape)}: {main} has {arr.size} values")


def build_case(args) -> tuple[Case, list[str]]:
    spec = VARIANTS[args.variant]
    rounded: list[str] = []
    texts = {k.replace("-", "_"): getattr(args, k.replace("-", "_"))
             for k in ("logits", "labels", "probs", "weights", "class-weights", "pos-weight")}
    for item in args.input:
        name, sep, text = item.partition("=")
        if not sep:
            raise UsageError(f"--input {item!r}: expected NAME=VALUES")
        if texts.get(name.strip()) is not None:
            raise UsageError(f"--input {item[:80]!r}: input {name.strip()!r} is given twice")
        texts[name.strip()] = text
    inputs = {}
    for name, text in texts.items():
        if text is None:
            continue
        ispec = spec.input(name)
        if ispec is None:
            raise UsageError(f"variant {spec.id} takes no input {name!r} "
                             f"(it takes {', '.join(i.name for i in spec.inputs)})")
        inputs[name] = _array(name.replace("_", "-"), text, ispec.kind, args.dtype, rounded)
    options = dict(_option(spec, t) for t in args.option)
    main_input = inputs.get("probs", inputs.get("logits"))
    shape = main_input.shape if main_input is not None and main_input.ndim else None
    if args.shape is not None:
        try:
            shape = tuple(int(s) for s in args.shape.split(","))
        except ValueError:
            raise UsageError(f"--shape {args.shape[:80]!r}: expected integers like 2,3") from None
        if len(shape) > MAX_NDIM or not all(0 <= s < 2**31 for s in shape):
            raise UsageError(f"--shape {args.shape[:80]!r}: expected at most {MAX_NDIM} dimensions, each "
                             f"from 0 to 2**31 - 1")
    if shape is not None:  # also fits a single label of a single row: `--labels 0` is shape ()
        try:
            _reshape(inputs, spec, shape, options.get("axis", spec.defaults().get("axis", -1)))
        except (ValueError, ZeroDivisionError) as e:  # an axis that does not fit the shape, ...
            raise UsageError(f"--shape {list(shape)}: {e}") from None
    try:
        return Case(spec.id, args.dtype, inputs, options, note="xent oracle"), rounded
    except CaseError as e:
        raise UsageError(str(e)) from None


def _elements(q, dtype: str) -> list[dict]:
    f = FORMATS[dtype]
    value = np.asarray(q.value, dtype=np.float64)
    out = []
    for k, idx in enumerate(np.ndindex(value.shape)):
        v = float(value[idx])
        out.append({
            "index": list(idx),
            "exact": q.decimal[k] if q.decimal is not None else None,
            "value": shortest(v, f), "hex": hex_of(v),
            "prec": int(np.asarray(q.prec)[idx]),
            "undefined": bool(np.asarray(q.undefined)[idx]),
            "undecided": bool(np.asarray(q.undecided)[idx]),
        })
    return out


def cmd_oracle(args, argv) -> int:
    import oracle

    case, rounded = build_case(args)
    try:
        r = oracle.evaluate(case, grads=True, digits=25)
    except Exception as e:  # a bug in the oracle, not in the arguments
        print(f"xent: error: the oracle raised {e!r} on case {case.to_json()}", file=sys.stderr)
        return 1
    doc = {"variant": case.variant, "dtype": case.dtype, "case_id": case.case_id, "case": case.to_dict(),
           "rounded_inputs": rounded, "status": r.status, "reason": r.reason,
           "value": None if r.value is None else _elements(r.value, case.dtype),
           "grads": {name: _elements(q, case.dtype) for name, q in sorted(r.grads.items())}}
    if args.json:
        print(json.dumps(doc, indent=1))
        return 0
    defaults = case.spec.defaults()
    opts = ", ".join(f"{k}={v}" for k, v in case.options.items() if v != defaults.get(k))
    print(f"{case.variant} {case.dtype}{' ' + opts if opts else ''}  [case {case.case_id}]")
    for line in rounded:
        print(f"note: rounded to the dtype: {line}")
    if r.status == "invalid":
        print(f"invalid: {r.reason}")
        return 0
    sections = [("value", doc["value"])] + [(f"gradient d/d{n}", els) for n, els in doc["grads"].items()]
    for title, elements in sections:
        print(f"{title}:")
        for e in elements:
            where = "[" + ",".join(map(str, e["index"])) + "]"
            if e["undecided"]:
                print(f"  {where:<8} undecided at {e['prec']} bits (the cap); not guessed")
            elif e["undefined"]:
                print(f"  {where:<8} undefined (nan)")
            else:
                exact = f"exact {e['exact']}  " if e["exact"] else ""
                print(f"  {where:<8} {exact}-> {case.dtype} {e['value']} ({e['hex']}), {e['prec']} bits")
    return 0
