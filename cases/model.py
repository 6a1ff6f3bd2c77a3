"""The `Case`: one variant, one dtype, named input arrays and explicit options.

A case is well-formed when its structure fits its variant (inputs present with the right kind and
shape, options known and of the right type). Whether its *values* lie in the variant's domain
(labels in [0, 1], weights >= 0, class ids in range) is the oracle's question, not the loader's:
an out-of-domain case is a legitimate probe of how a framework treats invalid input.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from .dtypes import FORMATS, fmt
from .variants import FLOAT, INT, VariantSpec, variant


class CaseError(ValueError):
    """A malformed case; the message names the offending field."""

    def __init__(self, field_name: str, message: str):
        self.field = field_name
        super().__init__(f"{field_name}: {message}")


@dataclass(frozen=True, eq=False)
class Case:
    variant: str
    dtype: str
    inputs: dict[str, np.ndarray]
    options: dict[str, object] = field(default_factory=dict)
    note: str = ""  # provenance; not part of the identity

    def __post_init__(self):
        spec = _spec(self.variant)
        if self.dtype not in FORMATS:
            raise CaseError("dtype", f"unknown dtype {self.dtype!r}; expected one of {', '.join(FORMATS)}")
        inputs = {}
        for name, arr in self.inputs.items():
            ispec = spec.input(name)
            if ispec is None:
                known = ", ".join(i.name for i in spec.inputs)
                raise CaseError(f"inputs.{name}", f"variant {spec.id} takes no input {name!r} (it takes {known})")
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
        unknown = set(d) - {"variant", "dtype", "inputs", "options", "note", "case_id"}
        if unknown:
            raise CaseError(sorted(unknown)[0], "unknown field in a case")
        for key in ("variant", "dtype", "inputs"):
            if key not in d:
                raise CaseError(key, "missing")
        vname, dtype = d["variant"], d["dtype"]
        if not isinstance(vname, str):
            raise CaseError("variant", "must be a string")
        spec = _spec(vname)
        if not isinstance(dtype, str) or dtype not in FORMATS:
            raise CaseError("dtype", f"unknown dtype {dtype!r}; expected one of {', '.join(FORMATS)}")
        if not isinstance(d["inputs"], dict):
            raise CaseError("inputs", "must be an object of named arrays")
        inputs = {}
        for name, enc in d["inputs"].items():
            ispec = spec.input(name)
            if ispec is None:
                raise CaseError(f"inputs.{name}", f"variant {spec.id} takes no input {name!r}")
            inputs[name] = decode_array(f"inputs.{name}", enc, ispec.kind, dtype)
        opts_raw = d.get("options", {})
        if not isinstance(opts_raw, dict):
            raise CaseError("options", "must be an object")
        options = {k: decode_option(f"options.{k}", v) for k, v in opts_raw.items()}
        case = cls(vname, dtype, inputs, options, note=str(d.get("note", "")))
        if "case_id" in d and d["case_id"] != case.case_id:
            raise CaseError("case_id", f"{d['case_id']!r} does not match the content ({case.case_id})")
        return case

    @classmethod
    def from_json(cls, text: str | bytes) -> "Case":
        try:
            d = json.loads(text)
        except (ValueError, UnicodeDecodeError) as e:
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
    try:
        return variant(name)
    except ValueError as e:
        raise CaseError("variant", str(e)) from None


# -- arrays -------------------------------------------------------------------------------------

def _coerce_array(where: str, arr, kind: str, dtype: str) -> np.ndarray:
    if kind == INT:
        a = np.asarray(arr)
        if a.dtype.kind not in "iu":
            raise CaseError(where, f"integer labels expected, got dtype {a.dtype}")
        return np.array(a, dtype=np.int64)
    f = fmt(dtype)
    a = np.asarray(arr)
    if a.dtype != f.np_dtype:
        if a.dtype.kind in "iu":
            raise CaseError(where, f"a {dtype} array expected, got integer dtype {a.dtype}")
        if a.dtype.kind != "f" and a.dtype != np.dtype("O"):
            raise CaseError(where, f"a {dtype} array expected, got dtype {a.dtype}")
        a64 = a.astype(np.float64)
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


def decode_array(where: str, enc, kind: str, dtype: str) -> np.ndarray:
    if not isinstance(enc, dict) or set(enc) - {"dtype", "shape", "data"} or "data" not in enc:
        raise CaseError(where, 'expected {"dtype": ..., "shape": [...], "data": [...]}')
    shape = enc.get("shape")
    if not isinstance(shape, list) or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                              for s in shape):
        raise CaseError(f"{where}.shape", "must be a list of non-negative integers")
    data = enc["data"]
    if not isinstance(data, list):
        raise CaseError(f"{where}.data", "must be a list")
    if len(data) != math.prod(shape):
        raise CaseError(f"{where}.data", f"has {len(data)} values but shape {shape} needs {math.prod(shape)}")
    if kind == INT:
        if enc.get("dtype") != "int64":
            raise CaseError(f"{where}.dtype", f"integer labels must be int64, got {enc.get('dtype')!r}")
        if not all(isinstance(v, int) and not isinstance(v, bool) and -2**63 <= v < 2**63 for v in data):
            raise CaseError(f"{where}.data", "must hold int64 integers")
        return np.array(data, dtype=np.int64).reshape(shape)
    if enc.get("dtype") != dtype:
        raise CaseError(f"{where}.dtype", f"must be the case dtype {dtype!r}, got {enc.get('dtype')!r}")
    f = fmt(dtype)
    bits = np.empty(len(data), dtype=f.uint_dtype)
    for i, tok in enumerate(data):
        bits[i] = _parse_float_token(f"{where}.data[{i}]", tok, f)
    return f.from_bits(bits).reshape(shape)


def _parse_float_token(where: str, tok, f) -> int:
    if not isinstance(tok, str):
        raise CaseError(where, f"floats are written as hex strings (e.g. '0x1.8p+0'), got {tok!r}")
    if tok in ("inf", "-inf", "nan"):
        return int(f.to_bits(np.array([float(tok)], dtype=f.np_dtype))[0])
    if tok.startswith("nan:"):
        try:
            b = int(tok[4:], 16)
        except ValueError:
            raise CaseError(where, f"bad NaN bit pattern {tok!r}") from None
        # A NaN has every exponent bit set and a non-zero mantissa (tested on the bits: isnan
        # warns on a signalling NaN).
        if b >> f.bits or (b & ((1 << (f.bits - 1)) - 1)) <= ((2 * f.emax + 1) << (f.precision - 1)):
            raise CaseError(where, f"{tok!r} is not a {f.name} NaN bit pattern")
        return b
    v = _parse_hex(where, tok)
    a = np.array([v], dtype=np.float64).astype(f.np_dtype)
    if float(a[0]) != v:
        raise CaseError(where, f"{tok} is not exactly representable in {f.name}")
    return int(f.to_bits(a)[0])


# float.fromhex also reads '1.5' (as 0x1.5) and '1e3' (as 0x1e3), and silently rounds digits beyond
# float64: accept only a 0x literal whose value is exactly a float64.
_HEX_FLOAT = re.compile(r"[+-]?0x([0-9a-f]+)(?:\.([0-9a-f]*))?(?:p([+-]?[0-9]+))?", re.IGNORECASE)


def _parse_hex(where: str, tok: str) -> float:
    m = _HEX_FLOAT.fullmatch(tok)
    if m is None:
        raise CaseError(where, f"not a hex float: {tok!r}")
    try:
        v = float.fromhex(tok)
    except OverflowError:
        raise CaseError(where, f"{tok!r} overflows; write 'inf' for infinity") from None
    frac = m[2] or ""
    mant = int(m[1] + frac, 16)
    if mant and (v == 0 or Fraction(abs(v)) != mant * Fraction(2) ** (int(m[3] or 0) - 4 * len(frac))):
        raise CaseError(where, f"{tok} is not exactly a float64 value")
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
        raise CaseError(where, f"floats are written as hex strings, got {v!r}")
    if v is None or isinstance(v, (bool, int, str)):
        return v
    raise CaseError(where, f"unsupported option value {v!r}")


def _normalise_options(spec: VariantSpec, options: dict) -> dict:
    out = spec.defaults()
    for name, value in options.items():
        ospec = spec.option(name)
        if ospec is None:
            known = ", ".join(o.name for o in spec.options) or "none"
            raise CaseError(f"options.{name}", f"variant {spec.id} takes no option {name!r} (it takes {known})")
        if value is not None or ospec.default is not None:
            value = _coerce_option(f"options.{name}", value, ospec.type)
        if ospec.choices and value not in ospec.choices:
            raise CaseError(f"options.{name}", f"{value!r} is not one of {', '.join(map(str, ospec.choices))}")
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
            return int(value)
    elif typ is float:
        if isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, (bool, np.bool_)):
            return float(value)
    elif typ is str:
        if isinstance(value, str):
            return value
    raise CaseError(where, f"expected {typ.__name__}, got {value!r}")


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
