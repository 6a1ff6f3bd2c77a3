"""The `Case`: one variant, one dtype, named input arrays and explicit options.

A case is well-formed when its structure fits its variant (inputs present with the right kind and
shape, options known and of the right type). Whether its *values* lie in the variant's domain
(labels in [0, 1], weights >= 0, class ids in range) is the oracle's question, not the loader's:
an out-of-domain case is a legitimate probe of how a framework treats invalid input.

Anything malformed raises ``CaseError`` (a ``ValueError``) with one printable line naming the field
and, cut short, the value: wrong types, unknown names, shapes that do not fit, more than ``MAX_NDIM``
dimensions or a shape beyond ``MAX_UNITS`` elements, integers beyond int64, tokens that are not
exactly a value of the dtype. Nothing read is evaluated: JSON only (``loads_json``).
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import reprlib
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from .dtypes import FORMATS, fmt
from .variants import FLOAT, INT, VariantSpec, variant


class CaseError(ValueError):
    """A malformed case; the message names the offending field.

    The message is one printable line (see ``one_line``) whatever the field name and the value in it:
    a JSON key or a file name may hold a newline, a NUL or a lone surrogate.
    """

    def __init__(self, field_name: str, message: str):
        self.field = field_name
        super().__init__(one_line(f"{field_name}: {message}"))


# -- messages and JSON that cannot break ----------------------------------------------------------

MESSAGE_LIMIT = 1000  # characters of one error message; a value quoted in it is cut much shorter


def one_line(text, limit: int | None = MESSAGE_LIMIT) -> str:
    """``text`` as one printable line: every character that is not printable (newlines, tabs, NUL,
    lone surrogates, ...) written as its Python escape; cut to ``limit`` characters with an ellipsis."""
    text = str(text)
    if not text.isprintable():
        text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    if limit is not None and len(text) > limit:
        text = text[:limit - 1] + "…"
    return text


class _ShortRepr(reprlib.Repr):
    def __init__(self):
        super().__init__()
        self.maxlevel, self.maxstring, self.maxother = 3, 60, 60
        self.maxlist = self.maxtuple = self.maxdict = self.maxset = 4

    def repr_int(self, x, level):
        if abs(x).bit_length() > 200:  # repr of an int of more than 4300 digits raises ValueError
            return f"<an integer of {abs(x).bit_length()} bits>"
        return super().repr_int(x, level)


_SHORT = _ShortRepr()


def show(value) -> str:
    """A short, one-line repr of a value read from a file or given by a user, for an error message:
    long strings and lists are cut, nesting is shown 3 levels deep, huge integers are summarised."""
    return one_line(_SHORT.repr(value), 120)


class JSONError(ValueError):
    """Text that is not JSON a loader accepts; the message is one line and says where."""


def _no_constant(name):
    raise JSONError(f"{name} is not JSON (these files are written without NaN or Infinity)")


def loads_json(text: str | bytes, *, allow_constants: bool = True, object_pairs_hook=None):
    """``json.loads``, raising only ``JSONError`` on bad input (and whatever ``object_pairs_hook``
    raises): invalid JSON names line and column; nesting deeper than the interpreter's recursion
    limit, an integer of more than 4300 digits, and (without ``allow_constants``) NaN / Infinity are
    errors too, never a RecursionError or a stray ValueError."""
    try:
        return json.loads(text, object_pairs_hook=object_pairs_hook,
                          parse_constant=None if allow_constants else _no_constant)
    except json.JSONDecodeError as e:
        raise JSONError(f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except RecursionError:
        raise JSONError("invalid JSON: nested too deeply") from None
    except UnicodeDecodeError as e:
        raise JSONError(f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    except JSONError:
        raise
    except ValueError as e:  # an integer beyond sys.get_int_max_str_digits()
        msg = "an integer with too many digits" if "digits" in str(e) else one_line(e, 200)
        raise JSONError(f"invalid JSON: {msg}") from None


@dataclass(frozen=True, eq=False)
class Case:
    variant: str
    dtype: str
    inputs: dict[str, np.ndarray]
    options: dict[str, object] = field(default_factory=dict)
    note: str = ""  # provenance; not part of the identity

    def __post_init__(self):
        spec = _spec(self.variant)
        if not isinstance(self.dtype, str) or self.dtype not in FORMATS:
            raise CaseError("dtype", f"unknown dtype {show(self.dtype)}; expected one of {', '.join(FORMATS)}")
        if not isinstance(self.inputs, dict):
            raise CaseError("inputs", f"must be a dict of named arrays, got {type(self.inputs).__name__}")
        if not isinstance(self.options, dict):
            raise CaseError("options", f"must be a dict, got {type(self.options).__name__}")
        _check_note(self.note)
        inputs = {}
        for name, arr in self.inputs.items():
            ispec = spec.input(name) if isinstance(name, str) else None
            if ispec is None:
                known = ", ".join(i.name for i in spec.inputs)
                raise CaseError(f"inputs.{_key(name)}",
                                f"variant {spec.id} takes no input {show(name)} (it takes {known})")
            inputs[name] = _coerce_array(f"inputs.{name}", arr, ispec.kind, self.dtype)
        for ispec in spec.inputs:
            if ispec.required and ispec.name not in inputs:
                raise CaseError(f"inputs.{ispec.name}", f"required by variant {spec.id} but missing")
        object.__setattr__(self, "inputs", inputs)
        object.__setattr__(self, "options", _normalise_options(spec, self.options))
        _check_shapes(spec, inputs, self.options)

    # -- convenience -----------------------------------------------------------------------
    @property
    def spec(self) -> VariantSpec:
        return variant(self.variant)

    @property
    def format(self):
        return fmt(self.dtype)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.inputs[name]

    def get(self, name: str, default=None):
        return self.inputs.get(name, default)

    def opt(self, name: str):
        return self.options[name]

    @property
    def class_axis(self) -> int | None:
        """The class axis as a non-negative index, for variants that have one."""
        if not self.spec.has_axis:
            return None
        first = self.inputs.get("logits", self.inputs.get("probs"))
        return self.options["axis"] % first.ndim

    # -- identity and serialisation ----------------------------------------------------------
    def to_dict(self) -> dict:
        d = {
            "variant": self.variant,
            "dtype": self.dtype,
            "inputs": {k: encode_array(v, self.dtype) for k, v in sorted(self.inputs.items())},
            "options": {k: encode_option(v) for k, v in sorted(self.options.items())},
        }
        if self.note:
            d["note"] = self.note
        return d

    def to_json(self, indent: int | None = None) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, indent=indent)

    @property
    def case_id(self) -> str:
        d = self.to_dict()
        d.pop("note", None)
        canon = json.dumps(d, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canon.encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, d) -> "Case":
        if not isinstance(d, dict):
            raise CaseError("case", f"expected a JSON object, got {type(d).__name__}")
        unknown = [k for k in d if k not in ("variant", "dtype", "inputs", "options", "note", "case_id")]
        if unknown:
            raise CaseError(min(map(_key, unknown)), "unknown field in a case (fields: variant, dtype, inputs, "
                            "options, note, case_id)")
        for key in ("variant", "dtype", "inputs"):
            if key not in d:
                raise CaseError(key, "missing")
        vname, dtype = d["variant"], d["dtype"]
        if not isinstance(vname, str):
            raise CaseError("variant", f"must be a string, got {show(vname)}")
        spec = _spec(vname)
        if not isinstance(dtype, str) or dtype not in FORMATS:
            raise CaseError("dtype", f"unknown dtype {show(dtype)}; expected one of {', '.join(FORMATS)}")
        if not isinstance(d["inputs"], dict):
            raise CaseError("inputs", f"must be an object of named arrays, got {show(d['inputs'])}")
        inputs = {}
        for name, enc in d["inputs"].items():
            ispec = spec.input(name) if isinstance(name, str) else None
            if ispec is None:
                known = ", ".join(i.name for i in spec.inputs)
                raise CaseError(f"inputs.{_key(name)}",
                                f"variant {spec.id} takes no input {show(name)} (it takes {known})")
            inputs[name] = decode_array(f"inputs.{name}", enc, ispec.kind, dtype)
        opts_raw = d.get("options", {})
        if not isinstance(opts_raw, dict):
            raise CaseError("options", f"must be an object, got {show(opts_raw)}")
        options = {k: decode_option(f"options.{_key(k)}", v) for k, v in opts_raw.items()}
        note = d.get("note", "")
        _check_note(note)
        case = cls(vname, dtype, inputs, options, note=note)
        if "case_id" in d and d["case_id"] != case.case_id:
            raise CaseError("case_id", f"{show(d['case_id'])} does not match the content ({case.case_id})")
        return case

    @classmethod
    def from_json(cls, text: str | bytes) -> "Case":
        try:
            d = loads_json(text)
        except JSONError as e:
            raise CaseError("case", f"not valid JSON ({e})") from None
        return cls.from_dict(d)

    def __eq__(self, other):
        return isinstance(other, Case) and self.case_id == other.case_id

    def __hash__(self):
        return hash(self.case_id)

    def __repr__(self):
        shapes = ", ".join(f"{k}{list(v.shape)}" for k, v in self.inputs.items())
        return f"Case({self.variant}, {self.dtype}, {shapes}, {self.options}, id={self.case_id})"


def _spec(name) -> VariantSpec:
    if not isinstance(name, str):
        raise CaseError("variant", f"must be a string, got {show(name)}")
    try:
        return variant(name)
    except ValueError as e:
        raise CaseError("variant", str(e)) from None


def _key(name) -> str:
    """A JSON object key (or a dict key of any type) as it appears in a field path."""
    return name if isinstance(name, str) else show(name)


def _check_note(note) -> None:
    if not isinstance(note, str):
        raise CaseError("note", f"must be a string, got {show(note)}")
    try:
        note.encode("utf-8")
    except UnicodeEncodeError:
        raise CaseError("note", f"is not valid Unicode text (a lone surrogate): {show(note)}") from None


# -- arrays -------------------------------------------------------------------------------------

MAX_NDIM = 32  # numpy allows 64; no loss variant needs more than a few


def _as_array(where: str, arr) -> np.ndarray:
    try:
        a = np.asarray(arr)
    except (ValueError, TypeError, OverflowError, RecursionError) as e:  # ragged nested lists, ...
        raise CaseError(where, f"not an array of numbers ({one_line(e, 120)})") from None
    if a.ndim > MAX_NDIM:
        raise CaseError(where, f"{a.ndim} dimensions; at most {MAX_NDIM}")
    return a


def _coerce_array(where: str, arr, kind: str, dtype: str) -> np.ndarray:
    a = _as_array(where, arr)
    if kind == INT:
        if a.dtype == np.dtype("O"):  # Python ints beyond int64, or other objects
            for v in a.ravel():
                if not isinstance(v, (int, np.integer)) or isinstance(v, (bool, np.bool_)):
                    raise CaseError(where, f"integer labels expected, got the value {show(v)}")
                if not -2**63 <= int(v) < 2**63:
                    raise CaseError(where, f"class id {show(int(v))} does not fit in int64")
            return a.astype(np.int64)
        if a.dtype.kind not in "iu":
            raise CaseError(where, f"integer labels expected, got dtype {a.dtype}")
        if a.dtype == np.uint64 and a.size and a.max() >= 2**63:
            raise CaseError(where, f"class id {int(a.max())} does not fit in int64")
        return np.array(a, dtype=np.int64)
    f = fmt(dtype)
    if a.dtype != f.np_dtype:
        if a.dtype.kind in "iu":
            raise CaseError(where, f"a {dtype} array expected, got integer dtype {a.dtype}")
        if a.dtype.kind != "f" and a.dtype != np.dtype("O"):
            raise CaseError(where, f"a {dtype} array expected, got dtype {a.dtype}")
        with np.errstate(invalid="ignore", over="ignore"):
            try:
                a64 = a.astype(np.float64)
            except (TypeError, ValueError, OverflowError) as e:  # an object array of non-numbers
                raise CaseError(where, f"a {dtype} array expected, got values that are not numbers "
                                f"({one_line(e, 120)})") from None
            conv = a64.astype(f.np_dtype)
        finite = np.isfinite(a64)
        if not np.array_equal(conv.astype(np.float64)[finite], a64[finite]):
            raise CaseError(where, f"values are not exactly representable in {dtype}; round them first")
        a = conv
    return np.array(a, dtype=f.np_dtype)


def _float_token(bits: int, value: float, f) -> str:
    if math.isnan(value):
        canonical = int(f.to_bits(np.array([np.nan], dtype=f.np_dtype))[0])
        return "nan" if bits == canonical else f"nan:{bits:#x}"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return float(value).hex()


def encode_array(arr: np.ndarray, dtype: str) -> dict:
    if arr.dtype.kind in "iu":
        return {"dtype": "int64", "shape": list(arr.shape), "data": [int(v) for v in arr.ravel()]}
    f = fmt(dtype)
    flat = arr.ravel()
    bits = f.to_bits(flat)
    with np.errstate(invalid="ignore"):  # casting a signalling NaN warns; only its NaN-ness is used
        wide = flat.astype(np.float64)
    data = [_float_token(int(b), float(v), f) for b, v in zip(bits, wide)]
    return {"dtype": dtype, "shape": list(arr.shape), "data": data}


MAX_DIM = 2**31 - 1  # one dimension of an array in a case file
MAX_UNITS = 2**24  # product of the non-zero dimensions: an empty array's other dimensions stay small too


def decode_array(where: str, enc, kind: str, dtype: str) -> np.ndarray:
    if not isinstance(enc, dict) or set(enc) - {"dtype", "shape", "data"} or "data" not in enc:
        raise CaseError(where, f'expected {{"dtype": ..., "shape": [...], "data": [...]}}, got {show(enc)}')
    shape = enc.get("shape")
    if not isinstance(shape, list) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                              for s in shape):
        raise CaseError(f"{where}.shape", f"must be a list of non-negative integers, got {show(shape)}")
    if len(shape) > MAX_NDIM:
        raise CaseError(f"{where}.shape", f"{len(shape)} dimensions; at most {MAX_NDIM}")
    if any(s > MAX_DIM for s in shape) or math.prod(max(s, 1) for s in shape) > MAX_UNITS:
        raise CaseError(f"{where}.shape", f"{show(shape)} is too large (at most {MAX_UNITS} elements, "
                        f"counting the non-zero dimensions)")
    data = enc["data"]
    if not isinstance(data, list):
        raise CaseError(f"{where}.data", f"must be a list, got {show(data)}")
    if len(data) != math.prod(shape):
        raise CaseError(f"{where}.data", f"has {len(data)} values but shape {shape} needs {math.prod(shape)}")
    if kind == INT:
        if enc.get("dtype") != "int64":
            raise CaseError(f"{where}.dtype", f"integer labels must be int64, got {show(enc.get('dtype'))}")
        for i, v in enumerate(data):
            if not (isinstance(v, int) and not isinstance(v, bool) and -2**63 <= v < 2**63):
                raise CaseError(f"{where}.data[{i}]", f"must be an int64 integer, got {show(v)}")
        return np.array(data, dtype=np.int64).reshape(shape)
    if enc.get("dtype") != dtype:
        raise CaseError(f"{where}.dtype", f"must be the case dtype {dtype!r}, got {show(enc.get('dtype'))}")
    f = fmt(dtype)
    bits = np.empty(len(data), dtype=f.uint_dtype)
    for i, tok in enumerate(data):
        bits[i] = _parse_float_token(f"{where}.data[{i}]", tok, f)
    return f.from_bits(bits).reshape(shape)


_NAN_BITS = re.compile(r"nan:0x[0-9a-f]{1,16}")


def _parse_float_token(where: str, tok, f) -> int:
    if not isinstance(tok, str):
        raise CaseError(where, f"floats are written as hex strings (e.g. '0x1.8p+0'), got {show(tok)}")
    if tok in ("inf", "-inf", "nan"):
        return int(f.to_bits(np.array([float(tok)], dtype=f.np_dtype))[0])
    if tok.startswith("nan:"):
        if not _NAN_BITS.fullmatch(tok):
            raise CaseError(where, f"bad NaN bit pattern {show(tok)} (expected nan:0x<hex digits>)")
        b = int(tok[6:], 16)
        # A NaN has every exponent bit set and a non-zero mantissa (tested on the bits: isnan
        # warns on a signalling NaN).
        if b >> f.bits or (b & ((1 << (f.bits - 1)) - 1)) <= ((2 * f.emax + 1) << (f.precision - 1)):
            raise CaseError(where, f"{show(tok)} is not a {f.name} NaN bit pattern")
        return b
    v = _parse_hex(where, tok)
    a = np.array([v], dtype=np.float64).astype(f.np_dtype)
    if float(a[0]) != v:
        raise CaseError(where, f"{show(tok)} is not exactly representable in {f.name}")
    return int(f.to_bits(a)[0])


# float.fromhex also reads '1.5' (as 0x1.5) and '1e3' (as 0x1e3), and silently rounds digits beyond
# float64: accept only a 0x literal whose value is exactly a float64.
_HEX_FLOAT = re.compile(r"[+-]?0x([0-9a-f]+)(?:\.([0-9a-f]*))?(?:p([+-]?[0-9]+))?", re.IGNORECASE)


def _parse_hex(where: str, tok: str) -> float:
    m = _HEX_FLOAT.fullmatch(tok) if isinstance(tok, str) else None
    if m is None:
        raise CaseError(where, f"not a hex float: {show(tok)}")
    try:
        v = float.fromhex(tok)
    except OverflowError:
        raise CaseError(where, f"{show(tok)} overflows; write 'inf' for infinity") from None
    frac = m[2] or ""
    mant = int(m[1] + frac, 16)
    if mant:
        exp = m[3] or "0"
        digits = exp.lstrip("+-").lstrip("0") or "0"
        # a finite non-zero float64 has a small exponent (and int() of >4300 digits would raise)
        if v == 0 or len(digits) > 12 or Fraction(abs(v)) != mant * Fraction(2) ** (
                (-1 if exp.startswith("-") else 1) * int(digits) - 4 * len(frac)):
            raise CaseError(where, f"{show(tok)} is not exactly a float64 value")
    return v


# -- options -------------------------------------------------------------------------------------

def encode_option(v):
    if isinstance(v, float):
        return v.hex() if math.isfinite(v) else repr(v)
    return v


def decode_option(where: str, v):
    if isinstance(v, str) and (v.startswith(("0x", "-0x")) or v in ("inf", "-inf", "nan")):
        return _parse_hex(where, v) if "0x" in v else float(v)
    if isinstance(v, float):
        raise CaseError(where, f"floats are written as hex strings, got {show(v)}")
    if v is None or isinstance(v, (bool, int, str)):
        return v
    raise CaseError(where, f"unsupported option value {show(v)}")


def _normalise_options(spec: VariantSpec, options: dict) -> dict:
    out = spec.defaults()
    for name, value in options.items():
        ospec = spec.option(name) if isinstance(name, str) else None
        if ospec is None:
            known = ", ".join(o.name for o in spec.options) or "none"
            raise CaseError(f"options.{_key(name)}",
                            f"variant {spec.id} takes no option {show(name)} (it takes {known})")
        if value is not None or ospec.default is not None:
            value = _coerce_option(f"options.{name}", value, ospec.type)
        if ospec.choices and value not in ospec.choices:
            raise CaseError(f"options.{name}", f"{show(value)} is not one of {', '.join(map(str, ospec.choices))}")
        out[name] = value
    if spec.reductions and "reduction" in out and out["reduction"] not in spec.reductions:
        raise CaseError("options.reduction", f"variant {spec.id} only takes {', '.join(spec.reductions)}")
    return out


def _coerce_option(where: str, value, typ):
    if typ is bool:
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
    elif typ is int:
        if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
            if not -2**63 <= int(value) < 2**63:
                raise CaseError(where, f"{show(int(value))} does not fit in int64")
            return int(value)
    elif typ is float:
        if isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, (bool, np.bool_)):
            try:
                return float(value)
            except OverflowError:  # an int beyond float64
                raise CaseError(where, f"{show(value)} is beyond float64; write 'inf'") from None
    elif typ is str:
        if isinstance(value, str):
            return value
    raise CaseError(where, f"expected {typ.__name__}, got {show(value)}")


# -- shapes --------------------------------------------------------------------------------------

def _check_shapes(spec: VariantSpec, inputs: dict, options: dict) -> None:
    if spec.id in ("sampled_softmax", "nce"):
        _check_sampled_shapes(inputs)
        return
    main = "probs" if spec.input("probs") else "logits"
    x = inputs[main]
    if x.ndim == 0:
        raise CaseError(f"inputs.{main}", "must have at least one dimension")
    if spec.has_axis:
        axis = options["axis"]
        if not -x.ndim <= axis < x.ndim:
            raise CaseError("options.axis", f"axis {axis} out of range for {main} of shape {list(x.shape)}")
        unit_shape = tuple(s for i, s in enumerate(x.shape) if i != axis % x.ndim)
        n_classes = x.shape[axis]
    else:
        unit_shape, n_classes = x.shape, None
    labels = inputs.get("labels")
    if labels is not None:
        want = unit_shape if spec.input("labels").kind == INT else x.shape
        if labels.shape != tuple(want):
            raise CaseError("inputs.labels", f"shape {list(labels.shape)} does not fit {main} of shape "
                            f"{list(x.shape)} (expected {list(want)})")
    w = inputs.get("weights")
    if w is not None and w.shape != tuple(unit_shape):
        raise CaseError("inputs.weights", f"shape {list(w.shape)}, expected {list(unit_shape)}")
    cw = inputs.get("class_weights")
    if cw is not None and cw.shape != (n_classes,):
        raise CaseError("inputs.class_weights", f"shape {list(cw.shape)}, expected [{n_classes}]")
    q = inputs.get("pos_weight")
    if q is not None:
        try:
            if np.broadcast_shapes(q.shape, x.shape) != x.shape:
                raise ValueError
        except ValueError:
            raise CaseError("inputs.pos_weight", f"shape {list(q.shape)} does not broadcast to {list(x.shape)}") from None


def _check_sampled_shapes(inputs: dict) -> None:
    def need(name, ndim):
        a = inputs[name]
        if a.ndim != ndim:
            raise CaseError(f"inputs.{name}", f"must have {ndim} dimension(s), got shape {list(a.shape)}")
        return a.shape

    n, d = need("inputs", 2)
    c, d2 = need("embeddings", 2)
    if d2 != d:
        raise CaseError("inputs.embeddings", f"width {d2} differs from inputs' width {d}")
    if need("biases", 1) != (c,):
        raise CaseError("inputs.biases", f"shape {list(inputs['biases'].shape)}, expected [{c}]")
    n2, t = need("labels", 2)
    if n2 != n or t == 0:
        raise CaseError("inputs.labels", f"shape {list(inputs['labels'].shape)}, expected [{n}, T>=1]")
    (s,) = need("sampled", 1)
    if need("true_expected_count", 2) != (n, t):
        raise CaseError("inputs.true_expected_count", f"expected shape [{n}, {t}]")
    if need("sampled_expected_count", 1) != (s,):
        raise CaseError("inputs.sampled_expected_count", f"expected shape [{s}]")
