"""The Case model and the curated corpus: exact JSON round trips, content-based ids, errors that
name the field, and a corpus that loads, is canonical and is reproduced by its build script."""
import builtins
import copy
import importlib.util
import json
import math
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from cases import DTYPES, VARIANTS, Case, CaseError, fmt
from cases.corpus import CORPUS_DIR, load_corpus

CASES_DIR = Path(__file__).resolve().parents[1] / "cases"


def special_bits(dtype: str) -> list[int]:
    """±0, the smallest and largest subnormal, the smallest normal, the largest finite, ±inf, and
    NaNs: quiet, negative, signalling and with the largest payload."""
    f = fmt(dtype)
    sign, top, inf = 1 << (f.bits - 1), 1 << (f.precision - 1), (2 * f.emax + 1) << (f.precision - 1)
    positive = [0, 1, top - 1, top, inf - 1, inf, inf | top, inf | 1, inf | (top - 1)]
    return positive + [sign | b for b in positive]


@st.composite
def bit_arrays(draw, min_size: int = 1):
    """(dtype, array) with any bit patterns of the dtype, the special ones often."""
    dtype = draw(st.sampled_from(DTYPES))
    f = fmt(dtype)
    element = st.one_of(st.integers(0, (1 << f.bits) - 1), st.sampled_from(special_bits(dtype)))
    bits = draw(st.lists(element, min_size=min_size, max_size=12))
    return dtype, f.from_bits(np.array(bits, dtype=f.uint_dtype))


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def sparse_case(**options) -> Case:
    logits = np.array([[1.0, -810.0, 20.0]], dtype=np.float32)
    return Case("softmax_ce_sparse", "float32", {"logits": logits, "labels": np.array([0])}, options)


# -- round trips -------------------------------------------------------------------------------------

@given(bit_arrays())
def test_case_json_round_trips_bit_for_bit(dtype_logits):
    dtype, logits = dtype_logits
    case = Case("log_softmax", dtype, {"logits": logits})
    back = Case.from_json(case.to_json())
    assert same_bits(back["logits"], logits)
    assert back.case_id == case.case_id


@given(bit_arrays(), st.data())
def test_case_json_round_trips_every_input_kind_and_option(dtype_x, data):
    dtype, x = dtype_x
    n = x.size
    same_shape = st.lists(st.integers(0, (1 << fmt(dtype).bits) - 1), min_size=n, max_size=n)
    labels, weights, pos_weight = (fmt(dtype).from_bits(np.array(data.draw(same_shape), dtype=fmt(dtype).uint_dtype))
                                   for _ in range(3))
    options = {"reduction": data.draw(st.sampled_from(["none", "sum", "mean"])),
               "label_smoothing": data.draw(st.floats(allow_nan=False))}
    case = Case("sigmoid_bce_logits", dtype, {"logits": x, "labels": labels, "weights": weights,
                                              "pos_weight": pos_weight}, options, note="a note")
    back = Case.from_json(case.to_json())
    for name, arr in case.inputs.items():
        assert same_bits(back[name], arr), name
    assert struct.pack("<d", back.opt("label_smoothing")) == struct.pack("<d", options["label_smoothing"])
    assert back.note == "a note"
    assert back.to_json() == case.to_json()


@given(st.lists(st.integers(-2**63, 2**63 - 1), min_size=1, max_size=6), st.integers(-2**63, 2**63 - 1))
def test_case_json_round_trips_int64_labels_and_ignore_index(labels, ignore_index):
    logits = np.zeros((len(labels), 2), dtype=np.float64)
    case = Case("softmax_ce_sparse", "float64", {"logits": logits, "labels": np.array(labels, dtype=np.int64)},
                {"ignore_index": ignore_index})
    back = Case.from_json(case.to_json())
    assert back["labels"].dtype == np.int64 and back["labels"].tolist() == labels
    assert back.opt("ignore_index") == ignore_index


# -- identity ------------------------------------------------------------------------------------------

def test_case_id_is_pinned_for_a_known_case():
    # The id is part of every report and baseline: changing the canonical form must be deliberate.
    assert sparse_case(reduction="mean").case_id == "bdf40cb52552b3b4"


def test_case_id_ignores_the_note_and_input_order():
    a = sparse_case()
    b = Case("softmax_ce_sparse", "float32", {"labels": a["labels"], "logits": a["logits"]}, note="elsewhere")
    assert a.case_id == b.case_id and a == b and hash(a) == hash(b)


def test_case_id_depends_on_options_and_dtype():
    assert sparse_case().case_id != sparse_case(reduction="sum").case_id
    as64 = Case("softmax_ce_sparse", "float64", {"logits": sparse_case()["logits"].astype(np.float64),
                                                 "labels": np.array([0])})
    assert as64.case_id != sparse_case().case_id


@given(bit_arrays(), st.data())
def test_case_id_changes_with_any_bit(dtype_logits, data):
    dtype, logits = dtype_logits
    f = fmt(dtype)
    bits = f.to_bits(logits).copy()
    i, k = data.draw(st.integers(0, bits.size - 1)), data.draw(st.integers(0, f.bits - 1))
    bits[i] ^= f.uint_dtype.type(1 << k)
    flipped = Case("log_softmax", dtype, {"logits": f.from_bits(bits)})
    assert flipped.case_id != Case("log_softmax", dtype, {"logits": logits}).case_id


# -- malformed cases -------------------------------------------------------------------------------------

BASE = sparse_case().to_dict()
SIGMOID = Case("sigmoid_bce_logits", "float32", {"logits": np.array([1.0, -1.0], dtype=np.float32),
                                                 "labels": np.array([1.0, 0.0], dtype=np.float32)}).to_dict()


def edit(base: dict, path: str, value=None, delete: bool = False) -> dict:
    d = copy.deepcopy(base)
    *parents, last = [int(k) if k.isdigit() else k for k in path.split("/")]
    node = d
    for key in parents:
        node = node[key]
    if delete:
        del node[last]
    else:
        node[last] = value
    return d


MALFORMED = {
    "unknown variant": (edit(BASE, "variant", "softmax_ce_fancy"), "variant"),
    "unknown dtype": (edit(BASE, "dtype", "float8"), "dtype"),
    "shape and data disagree": (edit(BASE, "inputs/labels/shape", [2]), "inputs.labels.data"),
    "shape mismatch": (edit(edit(BASE, "inputs/labels/shape", [2]), "inputs/labels/data", [0, 1]), "inputs.labels"),
    "float labels for sparse": (edit(BASE, "inputs/labels", {"dtype": "float32", "shape": [1], "data": ["0x0p+0"]}),
                                "inputs.labels.dtype"),
    "int labels where float expected": (
        edit(SIGMOID, "inputs/labels", {"dtype": "int64", "shape": [2], "data": [1, 0]}), "inputs.labels.dtype"),
    "option not taken": (edit(SIGMOID, "options/ignore_index", -100), "options.ignore_index"),
    "option of the wrong type": (edit(BASE, "options/axis", "1"), "options.axis"),
    "option value not allowed": (edit(BASE, "options/reduction", "average"), "options.reduction"),
    "decimal token": (edit(BASE, "inputs/logits/data/0", "1.5"), "inputs.logits.data[0]"),
    "exponent token": (edit(BASE, "inputs/logits/data/0", "1e3"), "inputs.logits.data[0]"),
    "number, not a string": (edit(BASE, "inputs/logits/data/0", 1.5), "inputs.logits.data[0]"),
    "trailing junk": (edit(BASE, "inputs/logits/data/0", "0x1.8p+0junk"), "inputs.logits.data[0]"),
    "more digits than float64": (edit(BASE, "inputs/logits/data/0", "0x1.00000000000001p+0"), "inputs.logits.data[0]"),
    "underflows float64": (edit(BASE, "inputs/logits/data/0", "0x1p-1080"), "inputs.logits.data[0]"),
    "not a float32": (edit(BASE, "inputs/logits/data/0", "0x1.000001p+0"), "inputs.logits.data[0]"),
    "overflow": (edit(BASE, "inputs/logits/data/0", "0x1p+1024"), "inputs.logits.data[0]"),
    "not a NaN pattern": (edit(BASE, "inputs/logits/data/0", "nan:0x3f800000"), "inputs.logits.data[0]"),
    "too few values": (edit(BASE, "inputs/logits/data", ["0x1p+0", "0x1p+0"]), "inputs.logits.data"),
    "too many values": (edit(BASE, "inputs/logits/data", ["0x1p+0"] * 4), "inputs.logits.data"),
    "missing input": (edit(BASE, "inputs/labels", delete=True), "inputs.labels"),
    "unknown input": (edit(BASE, "inputs/probs", BASE["inputs"]["logits"]), "inputs.probs"),
    "unknown field": (edit(BASE, "weights", 1), "weights"),
    "case_id mismatch": (edit(BASE, "case_id", "0000000000000000"), "case_id"),
    "option float not hex": (edit(SIGMOID, "options/label_smoothing", 0.1), "options.label_smoothing"),
}


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_case_raises_case_error_naming_the_field(name):
    d, field = MALFORMED[name]
    with pytest.raises(CaseError) as info:
        Case.from_json(json.dumps(d))
    assert info.value.field == field, str(info.value)


def test_malformed_json_raises_case_error():
    with pytest.raises(CaseError) as info:
        Case.from_json('{"variant": ')
    assert info.value.field == "case"


@pytest.mark.parametrize("variant, labels", [
    ("softmax_ce_sparse", np.array([0.0], dtype=np.float32)),  # class ids must be integers
    ("softmax_ce_dense", np.array([[1, 0, 0]])),  # labels must be in the case dtype
])
def test_constructor_rejects_labels_of_the_wrong_kind(variant, labels):
    with pytest.raises(CaseError) as info:
        Case(variant, "float32", {"logits": np.zeros((1, 3), dtype=np.float32), "labels": labels})
    assert info.value.field == "inputs.labels"


def test_constructor_rejects_values_not_representable_in_the_dtype():
    with pytest.raises(CaseError) as info:
        Case("log_softmax", "float16", {"logits": np.array([0.1])})
    assert info.value.field == "inputs.logits"


def test_loading_never_uses_pickle_or_eval(monkeypatch):
    for path in [CASES_DIR / "model.py", CASES_DIR / "corpus.py"]:
        source = path.read_text()
        for word in ("pickle", "eval(", "exec(", "np.load", "allow_pickle"):
            assert word not in source, f"{path.name} mentions {word}"

    def forbidden(*args, **kwargs):
        raise AssertionError("loading a case must not execute or unpickle anything")
    for target, name in [(builtins, "eval"), (builtins, "exec"), (pickle, "loads"), (pickle, "load"), (np, "load")]:
        monkeypatch.setattr(target, name, forbidden)
    assert load_corpus()
    assert Case.from_json(sparse_case().to_json()) == sparse_case()


# -- the corpus ----------------------------------------------------------------------------------------

def test_corpus_loads_with_unique_ids_and_a_note_on_every_case():
    cases = load_corpus()
    assert len({c.case_id for c in cases}) == len(cases)
    assert all(c.note for c in cases)


def test_corpus_lines_are_canonical_json():
    for file in sorted(CORPUS_DIR.glob("*.jsonl")):
        for line in file.read_text(encoding="utf-8").splitlines():
            assert Case.from_json(line).to_json() == line


def test_corpus_is_what_its_build_script_writes():
    spec = importlib.util.spec_from_file_location("corpus_build", CORPUS_DIR / "build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    rendered = build.render()
    assert sorted(rendered) == sorted(p.name for p in CORPUS_DIR.glob("*.jsonl"))
    for name, text in rendered.items():
        assert (CORPUS_DIR / name).read_text(encoding="utf-8") == text, f"{name} is stale: run cases/corpus/build.py"


def test_corpus_holds_the_seed_examples_and_covers_every_variant_and_dtype():
    cases = load_corpus()
    keys = {(c.variant, c.dtype, tuple(np.asarray(c.get("logits", c.get("probs")), dtype=np.float64).ravel()))
            for c in cases}
    assert ("sigmoid_bce_logits", "float32", (1, -810, 20, 11, 12, 14, 12, 21, 23)) in keys
    assert ("sigmoid_bce_logits", "float64", (1, -810, 20, 11, 12, 14, 12, 21, 23)) in keys
    assert ("bce_probs", "float32", tuple(fmt("float32").array([0.7, 0.2]).astype(np.float64))) in keys
    nll = [c for c in cases if c.variant == "softmax_ce_sparse" and c["labels"].tolist() == [0, 2, 1]]
    assert any(c.opt("reduction") == "mean" and c["logits"].shape == (3, 4) for c in nll)
    assert {c.variant for c in cases} == set(VARIANTS)
    assert {c.dtype for c in cases} == set(DTYPES)
    assert any(c.spec.has_axis and c["logits" if "logits" in c.inputs else "probs"].ndim == 4
               and c.opt("axis") == 1 for c in cases)


def test_load_corpus_names_the_file_and_line_of_a_malformed_case(tmp_path):
    path = tmp_path / "bad.jsonl"
    good, bad = sparse_case().to_json(), json.dumps(edit(BASE, "inputs/logits/data/0", "1.5"))
    path.write_text(good + "\n\n" + bad + "\n")
    with pytest.raises(CaseError) as info:
        load_corpus(path)
    assert info.value.field == f"{path}:3"
    assert "inputs.logits.data[0]" in str(info.value)


def test_load_corpus_rejects_a_line_that_is_not_utf8(tmp_path):
    path = tmp_path / "bytes.jsonl"
    path.write_bytes(b'{"variant": "\xff"}\n')
    with pytest.raises(CaseError) as info:
        load_corpus(tmp_path)
    assert info.value.field == f"{path}:1"


def test_load_corpus_reads_a_folder_in_name_order(tmp_path):
    a, b = sparse_case(reduction="sum"), sparse_case(reduction="none")
    (tmp_path / "b.jsonl").write_text(a.to_json() + "\n")
    (tmp_path / "a.jsonl").write_text(b.to_json() + "\n")
    (tmp_path / "ignored.txt").write_text("not a case\n")
    assert load_corpus(tmp_path) == [b, a]


def test_nan_payloads_survive_a_corpus_round_trip(tmp_path):
    # math.nan written through a file keeps its payload bits only when the token carries them.
    f = fmt("float64")
    logits = f.from_bits(np.array([0x7FF0000000000001, 0xFFF8000000000000], dtype=f.uint_dtype))
    case = Case("softmax", "float64", {"logits": logits})
    (tmp_path / "nan.jsonl").write_text(case.to_json() + "\n")
    (back,) = load_corpus(tmp_path)
    assert same_bits(back["logits"], logits) and math.isnan(back["logits"][0])
