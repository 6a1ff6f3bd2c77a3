"""Reproducer snippets (``Adapter.repro``) of the jax, jax-x64, sklearn, onnxruntime, onnx-reference
and naive adapters make exactly the call ``evaluate`` makes.

For generated cases (``cases.strategies.generate``, every variant and dtype; where few generated
cases fit an adapter's APIs, the same cases with what the API cannot express taken out: weights,
label smoothing, ignore_index, another reduction), every API the adapter offers for the case is run
both ways in this process: the reproducer script's ``call`` (``helpers.run_outputs``) and
``adapter.evaluate``; the two outputs must agree bit for bit, dtypes and shapes included (or both
raise the same exception type). One script per adapter is also run on its own (``python -I
script.py --json`` in an empty directory), and every script imports only numpy, the standard modules
the template uses and that framework.
"""
from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
import textwrap
from functools import lru_cache

import ml_dtypes
import numpy as np
import pytest

import adapters
from cases import Case, CaseError
from cases.dtypes import DTYPES
from cases.strategies import generate
from conformance import repro
from helpers import run_outputs

# adapter -> the modules its evaluate needs (skip when one is missing) and its scripts may import
FRAMEWORK = {
    "jax": ("jax", "optax"),
    "jax-x64": ("jax", "optax"),
    "sklearn": ("sklearn",),
    "onnxruntime": ("onnx", "onnxruntime"),
    "onnx-reference": ("onnx",),
    "naive": (),
}
TEMPLATE_IMPORTS = {"numpy", "json", "sys", "os"}
# the variants each adapter has APIs for (the others give no case, checked below)
VARIANTS = {
    "jax": ("sigmoid_bce_logits", "softmax_ce_dense", "softmax_ce_sparse", "log_softmax", "softmax"),
    "sklearn": ("sigmoid_bce_logits", "softmax_ce_sparse", "bce_probs", "categorical_ce_probs"),
    "onnxruntime": ("softmax_ce_sparse", "log_softmax", "softmax"),
    "naive": ("sigmoid_bce_logits", "softmax_ce_dense", "softmax_ce_sparse"),
}
VARIANTS["jax-x64"], VARIANTS["onnx-reference"] = VARIANTS["jax"], VARIANTS["onnxruntime"]
# every API each adapter has must be exercised by the selection
ALL_APIS = {
    "jax": {"optax.sigmoid_binary_cross_entropy", "optax.softmax_cross_entropy",
            "optax.smooth_labels+softmax_cross_entropy", "optax.safe_softmax_cross_entropy",
            "optax.softmax_cross_entropy_with_integer_labels", "jax.nn.log_softmax", "jax.nn.softmax"},
    "sklearn": {"sklearn.metrics.log_loss"} | {f"{cls}.{m}" for cls in ("HalfBinomialLoss", "HalfMultinomialLoss")
                                               for m in ("loss", "loss_gradient", "__call__")},
    "onnxruntime": {"SoftmaxCrossEntropyLoss", "LogSoftmax+NegativeLogLikelihoodLoss", "LogSoftmax", "Softmax"},
    "naive": {"textbook", "seed_unstable", "no_log1p", "no_max_shift"},
}
ALL_APIS["jax-x64"], ALL_APIS["onnx-reference"] = ALL_APIS["jax"], ALL_APIS["onnxruntime"]
# cases per variant and dtype (5 unless named; more where one case cannot cover every API): JAX
# compiles every operation once per new shape, dtype and configuration (seconds per case), so 1
PER_DTYPE = {"jax": 1, "jax-x64": 1}
GENERATED, SEED = 16, 7


def adapter(name):
    for module in FRAMEWORK[name]:
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed")
    a = adapters.get(name)
    ok, why = a.available()
    if not ok:
        pytest.skip(why)
    return a


@lru_cache(maxsize=None)
def _candidates(variant: str, dtype: str) -> tuple[Case, ...]:
    """The generated cases, then their projections (_projections), each case once."""
    generated = generate(variant, dtype, GENERATED, SEED)
    ordered = list(generated) + [p for case in generated for p in _projections(case)]
    first = {}
    for case in ordered:
        first.setdefault(case.case_id, case)
    return tuple(first.values())


def _projections(case: Case):
    """The case with what an API may not express taken out (weights, label smoothing, ignore_index)
    and other reductions, step by step."""
    opts, inputs = dict(case.options), dict(case.inputs)
    if "reduction" not in opts:
        return
    unit = {k: v for k, v in inputs.items() if k not in ("weights", "pos_weight")}
    bare = {k: v for k, v in unit.items() if k != "class_weights"}
    plain = {**opts, **({"label_smoothing": 0.0} if "label_smoothing" in opts else {}),
             **({"ignore_index": None} if "ignore_index" in opts else {})}
    yield from _cases(case, [(inputs, {**opts, "reduction": "none"}),
                             (unit, {**opts, "reduction": "none"}), (bare, {**opts, "reduction": "none"}),
                             (bare, {**plain, "reduction": "none"}), (bare, {**plain, "reduction": "mean"}),
                             (bare, {**plain, "reduction": "sum"}), (unit, {**plain, "reduction": "mean"}),
                             (unit, {**plain, "reduction": "sum"}), (inputs, {**opts, "reduction": "sum"})])


def _cases(case, pairs):
    for inputs, options in pairs:
        try:
            yield Case(case.variant, case.dtype, inputs, options, note=case.note + " (projected)")
        except CaseError:
            pass


def _shape(case: Case) -> tuple:
    return tuple(case.inputs.get("logits", case.inputs.get("probs")).shape)


def selection(name: str, variant: str) -> tuple[tuple[Case, str], ...]:
    return _plan(name)[variant]


@lru_cache(maxsize=None)
def _plan(name: str) -> dict[str, tuple[tuple[Case, str], ...]]:
    """variant -> the (case, api) pairs to check: for each variant a case for each of its APIs
    first, then each dtype filled up to its quota; generated cases before projected ones, and
    shapes already chosen in the dtype (for any variant) first, which spares JAX compilations."""
    a = adapters.get(name)
    plan, pool = {}, {dtype: set() for dtype in DTYPES}

    def reused_first(cases, dtype):
        return sorted(cases, key=lambda case: _shape(case) not in pool[dtype])

    for variant in VARIANTS[name]:
        candidates = {dtype: [case for case in _candidates(variant, dtype) if a.apis(case)] for dtype in DTYPES}
        chosen, covered = {dtype: [] for dtype in DTYPES}, set()
        for dtype in DTYPES:
            for case in reused_first(candidates[dtype], dtype):
                if set(a.apis(case)) - covered:
                    chosen[dtype].append(case)
                    covered |= set(a.apis(case))
                    pool[dtype].add(_shape(case))
        for dtype in DTYPES:
            rest = [case for case in candidates[dtype] if all(case is not c for c in chosen[dtype])]
            for case in reused_first(rest, dtype)[:max(0, PER_DTYPE.get(name, 5) - len(chosen[dtype]))]:
                chosen[dtype].append(case)
                pool[dtype].add(_shape(case))
        plan[variant] = tuple((case, api) for dtype in DTYPES for case in chosen[dtype] for api in a.apis(case))
    return plan


def evaluated(a, case, api) -> dict:
    try:
        return repro.output_json(a.evaluate(case, api))
    except Exception as e:  # the engine's "raised": the snippet must raise the same
        return {"raised": type(e).__name__}


def imported_modules(source: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "a relative import in a standalone script"
            names.add(node.module.split(".")[0])
    return names


def allowed_imports(name: str, case: Case, api: str) -> set[str]:
    allowed = TEMPLATE_IMPORTS | set(FRAMEWORK[name])
    if name == "sklearn" and api == "sklearn.metrics.log_loss" and case.dtype == "bfloat16":
        # the adapter passes bfloat16 arrays, which numpy holds only through ml_dtypes (sklearn
        # rejects bfloat16 sample weights with a TypeError: the exact call is needed to show it)
        allowed.add("ml_dtypes")
    return allowed


PAIRS = [(name, variant) for name in FRAMEWORK for variant in VARIANTS[name]]


@pytest.mark.parametrize("name,variant", PAIRS, ids=[f"{n}-{v}" for n, v in PAIRS])
def test_snippet_makes_exactly_the_adapters_call(name, variant):
    a = adapter(name)
    pairs = selection(name, variant)
    assert pairs, f"no generated {variant} case fits {name}"
    mismatches = []
    for case, api in pairs:
        snippet = a.repro(case, api)
        assert snippet is not None, (api, case)
        source = repro.script(case, snippet, adapter=name, api=api)
        assert imported_modules(source) <= allowed_imports(name, case, api), (api, case.dtype, snippet)
        got, want = run_outputs(source), evaluated(a, case, api)
        if json.dumps(got, sort_keys=True) != json.dumps(want, sort_keys=True):
            mismatches.append(f"{api} on {case!r}:\n{snippet}\nsnippet: {got}\nevaluate: {want}")
        if name in ("onnxruntime", "onnx-reference"):
            _check_same_model(case, api, source, snippet)
    assert not mismatches, f"{len(mismatches)} of {len(pairs)} differ:\n" + "\n\n".join(mismatches[:3])


def _check_same_model(case, api, source, snippet):
    """The snippet's onnx.helper code builds the adapter's model byte for byte."""
    from adapters.onnx_adapter import build_model, graph_of

    script_ns: dict = {"__name__": "xent_repro"}
    exec(compile(source, "<repro>", "exec"), script_ns)
    ns = {"np": np, "inputs": script_ns["inputs"], "dtypes": {}}
    try:
        exec(compile(textwrap.dedent(snippet), "<snippet>", "exec"), ns)
    except Exception:  # a run that raises (the same way, checked above) still built its model first
        pass
    assert ns["model"].SerializeToString() == build_model(graph_of(case, api)).SerializeToString()


@pytest.mark.parametrize("name", list(FRAMEWORK))
def test_selection_exercises_every_api(name):
    adapter(name)
    covered = {api for variant in VARIANTS[name] for _, api in selection(name, variant)}
    expected = set(ALL_APIS[name])
    if name in ("jax", "jax-x64"):  # optax functions older releases lack
        from adapters.jax_adapter import _has

        expected -= {api for api, fn in [("optax.safe_softmax_cross_entropy", "safe_softmax_cross_entropy"),
                                          ("optax.smooth_labels+softmax_cross_entropy", "smooth_labels")]
                     if not _has(fn)}
    assert covered == expected


@pytest.mark.parametrize("name", list(FRAMEWORK))
def test_repro_is_none_for_apis_the_case_does_not_have(name):
    a = adapter(name)
    case, _ = selection(name, VARIANTS[name][0])[0]
    assert a.repro(case, "no such api") is None
    for other in sorted(ALL_APIS[name] - set(a.apis(case))):
        assert a.repro(case, other) is None, other


def _standalone_pair(a):
    """One case per adapter for the subprocess run: bfloat16 where there is one (the path that needs
    the most care), else float32, ...; one with labels whose call returns, where there is one."""
    pairs = [p for variant in VARIANTS[a.name] for p in selection(a.name, variant)]
    rank = {dtype: k for k, dtype in enumerate(("bfloat16", "float32", "float64", "float16"))}
    pairs.sort(key=lambda p: (rank[p[0].dtype], "labels" not in p[0].inputs))
    return next((p for p in pairs if "raised" not in evaluated(a, *p)), pairs[0])


@pytest.mark.parametrize("name", list(FRAMEWORK))
def test_script_runs_standalone(name, tmp_path):
    a = adapter(name)
    case, api = _standalone_pair(a)
    want = evaluated(a, case, api)
    path = tmp_path / f"{case.case_id}.py"
    verdict = "raised" if "raised" in want else "conforms"  # a call that raises exits 0 only if "raised"
    path.write_text(repro.script(case, a.repro(case, api), adapter=name, api=api, verdict=verdict))
    # -I: no PYTHONPATH, no user site, not even the script's directory; the cwd is an empty directory
    out = subprocess.run([sys.executable, "-I", str(path), "--json"], capture_output=True, text=True,
                         cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert json.dumps(got, sort_keys=True) == json.dumps(want, sort_keys=True)


def test_naive_bfloat16_script_reproduces_on_its_own(tmp_path):
    """The plain run (no --json) of a bfloat16 naive script, whose snippet sets ``dtypes``: it finds
    the value xent recorded and says REPRODUCED."""
    a = adapter("naive")
    case, api = next((c, api) for variant in VARIANTS["naive"] for c, api in selection("naive", variant)
                     if c.dtype == "bfloat16")
    value = a.evaluate(case, api).value
    recorded = float(np.asarray(value, dtype=np.float64).reshape(-1)[0]).hex()
    path = tmp_path / "repro.py"
    path.write_text(repro.script(case, a.repro(case, api), adapter="naive", api=api, verdict="inaccurate",
                                 recorded=recorded))
    out = subprocess.run([sys.executable, "-I", str(path)], capture_output=True, text=True, cwd=tmp_path,
                         timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "dtype bfloat16" in out.stdout and "REPRODUCED: inaccurate" in out.stdout


def test_naive_bfloat16_rounding_is_ml_dtypes_cast():
    """The naive snippet rounds float32 results to bfloat16 without ml_dtypes: ties to even, as
    ml_dtypes' cast (what the adapter does), on every exponent and on the patterns near ties."""
    from adapters.naive import _BF16_ROUND

    ns = {"np": np}
    exec(_BF16_ROUND, ns)
    rng = np.random.default_rng(0)
    low = np.array([0, 1, 0x7FFF, 0x8000, 0x8001, 0xFFFF], dtype=np.uint32)
    high = rng.integers(0, 1 << 16, 4096, dtype=np.uint32) << 16
    edges = np.array([0x7F7FFFFF, 0xFF7FFFFF, 0x7F800000, 0xFF800000, 0x00000001, 0x807FFFFF], dtype=np.uint32)
    bits = np.concatenate([(high[:, None] | low[None, :]).ravel(),
                           rng.integers(0, 1 << 32, 1 << 16, dtype=np.uint32), edges])
    x = bits.view(np.float32)
    with np.errstate(invalid="ignore"):
        want = x.astype(ml_dtypes.bfloat16).astype(np.float32)
    got = ns["round_to_bfloat16"](x)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    keep = ~np.isnan(want)
    assert np.array_equal(got[keep].view(np.uint32), want[keep].view(np.uint32))
