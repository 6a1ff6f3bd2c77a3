"""The reproducer snippets of the TensorFlow and Keras adapters make exactly the adapter's call.

For generated cases (and the same inputs in the plain, unweighted call; see ``_derived``) the full
reproducer script (``conformance.repro.script``) must give, bit for bit, what the adapter's own
``evaluate`` gives (``conformance.repro.output_json``; the exception's type where it raises):

- ``tensorflow``: every API in every dtype, at least two cases per variant and dtype, the scripts run
  through ``helpers.run_outputs`` in this process;
- ``tensorflow-xla``: every API once, the dtypes taken in turn (each script compiles its call anew,
  a third of a second apiece), also in this process;
- Keras 3 on each backend and tf_keras: every API in every dtype, at least two cases per variant and
  dtype (one for keras-jax, whose every call compiles). A Keras snippet sets ``KERAS_BACKEND`` before it imports keras, so each adapter's scripts run
  in one fresh process of their own, while ``evaluate`` runs in the adapter's worker.

Standalone: the processes that run scripts (the Keras ones, and one for a TensorFlow and an XLA
script) have neither the project on their path nor anything imported but the standard library: each
script runs there as its own ``__main__`` with ``--json``, exactly as ``python script.py --json``
would (its printed JSON and exit status are what is compared). One script is also run literally as
``python script.py --json``. Every script imports only numpy, json, sys, os and its framework.

All subprocesses (script runners, Keras workers) start in one module fixture, before any test waits
on one, so that their framework imports overlap with each other and with this process's work.
"""
from __future__ import annotations

import ast
import functools
import importlib.util
import json
import linecache
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from adapters import get
from adapters._worker import WorkerError
from cases import Case
from cases.strategies import generate, invalid_labels, sample_cases
from conformance import repro
from helpers import run_outputs

DTYPES = ("float16", "bfloat16", "float32", "float64")
TF_VARIANTS = ("sigmoid_bce_logits", "bce_probs", "softmax_ce_dense", "softmax_ce_sparse", "log_softmax",
               "softmax", "sampled_softmax", "nce")
# variant -> the one Keras API that expresses it
KERAS_API = {
    "sigmoid_bce_logits": "BinaryCrossentropy(from_logits=True)",
    "bce_probs": "BinaryCrossentropy(from_logits=False)",
    "softmax_ce_dense": "CategoricalCrossentropy(from_logits=True)",
    "categorical_ce_probs": "CategoricalCrossentropy(from_logits=False)",
    "softmax_ce_sparse": "SparseCategoricalCrossentropy(from_logits=True)",
}
KERAS_APIS = tuple(KERAS_API.values())
KERAS = ("keras-tensorflow", "keras-jax", "keras-torch", "tf_keras")
# adapter -> the top-level modules its scripts may import besides numpy, json, sys and os
FRAMEWORK = {
    "tensorflow": {"tensorflow"},
    "tensorflow-xla": {"tensorflow"},
    "keras-tensorflow": {"keras", "tensorflow"},
    "keras-jax": {"keras", "jax"},
    "keras-torch": {"keras", "torch"},
    "tf_keras": {"tf_keras", "tensorflow"},
}
PER_CELL = 2  # cases per variant and dtype at least (tensorflow, Keras)
# keras-jax: one (JAX compiles every operation of every call for its shapes: a fifth of a second a case)
PER_CELL_OF = {"keras-jax": 1}
POOL, SEED = 8, 20261121  # generated cases per variant and dtype to choose from

# Runs reproducer scripts as `python script.py --json` runs each, one after another in one process:
# argv = [the JSON file to write, script paths...]; writes [{"exit": status, "stdout": its last line}].
RUNNER = """\
import contextlib
import io
import json
import runpy
import sys

out_path, paths = sys.argv[1], sys.argv[2:]
results = []
for path in paths:
    sys.argv = [path, "--json"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            runpy.run_path(path, run_name="__main__")
            status = 0
        except SystemExit as e:
            status = e.code
    lines = out.getvalue().strip().splitlines()
    results.append({"exit": status, "stdout": lines[-1] if lines else ""})
with open(out_path, "w") as f:
    json.dump(results, f)
"""


# -- cases ------------------------------------------------------------------------------------------

_WEIGHTS = ("weights", "class_weights", "pos_weight")
_PLAIN = {"reduction": "none", "label_smoothing": 0.0, "ignore_index": None, "subtract_log_q": True}


def _derived(case: Case) -> list[Case]:
    """The case, then its inputs in the call the plain APIs express (no weights, no reduction, no
    smoothing, nothing ignored, log Q subtracted), and that call with the pos_weight alone."""
    options = {k: _PLAIN.get(k, v) for k, v in case.options.items()}
    plain = {k: a for k, a in case.inputs.items() if k not in _WEIGHTS}
    out = [case, Case(case.variant, case.dtype, plain, options, note=case.note + "+plain")]
    if "pos_weight" in case.inputs:
        out.append(Case(case.variant, case.dtype, {**plain, "pos_weight": case["pos_weight"]}, options,
                        note=case.note + "+pos_weight"))
    return out


@functools.cache
def _pool(variant: str, dtype: str) -> tuple[Case, ...]:
    return tuple(d for c in generate(variant, dtype, POOL, SEED) for d in _derived(c))


def select(variants, apis_of, per_cell: int, want=None) -> tuple[list[tuple[Case, str]], set]:
    """(case, API) pairs to check, and the (API, dtype) pairs they cover. Per variant and dtype, the
    first ``per_cell`` cases an API applies to, with every API it applies to; then every case that
    reaches a wanted (API, dtype) not yet covered (all of them when ``want`` is None), with those."""
    chosen, covered = [], set()
    for variant in variants:
        for dtype in DTYPES:
            n = 0
            for case in _pool(variant, dtype):
                apis = apis_of(case)
                new = [a for a in apis if (a, dtype) not in covered and (want is None or (a, dtype) in want)]
                if n < per_cell and apis:
                    new, n = apis, n + 1
                chosen += [(case, a) for a in new]
                covered |= {(a, dtype) for a in new}
    return chosen, covered


def out_of_domain(apis_of, n: int = 2) -> list[tuple[Case, str]]:
    """(case, API) pairs of the first ``n`` float32 integer-label cases with an out-of-domain input
    (mostly a class id out of range) that an API applies to: where a call raises, the script must
    raise the same exception."""
    cases = [d for c in sample_cases(invalid_labels("softmax_ce_sparse", "float32"), 4 * n, SEED)
             for d in _derived(c) if apis_of(d)][:n]
    return [(case, api) for case in cases for api in apis_of(case)]


def expected(adapter, case: Case, api: str) -> dict:
    """What the adapter's evaluate gives, in the form run_outputs returns."""
    try:
        return repro.output_json(adapter.evaluate(case, api))
    except WorkerError as e:  # raised in a worker: the original exception's type
        return {"raised": e.type_name.rpartition(".")[2]}
    except Exception as e:
        return {"raised": type(e).__name__}


def imported_modules(source: str) -> set[str]:
    """The top-level module of every import statement in the source ("." for a relative one)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {a.name.partition(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add("." if node.level else (node.module or "").partition(".")[0])
    return names


def _run_here(source: str) -> dict:
    """run_outputs, with the source where inspect finds it, as in a script file: tf.function's
    autograph reads the source of the function it converts."""
    linecache.cache["<repro>"] = (len(source), None, source.splitlines(True), "<repro>")
    try:
        return run_outputs(source)
    finally:
        linecache.cache.pop("<repro>", None)


# -- one fixture writes every script and starts every process ---------------------------------------

class Item:
    """One (case, API) of one adapter: its script, and what the snippet and evaluate gave."""

    def __init__(self, adapter, name: str, case: Case, api: str, directory: Path, k: int):
        self.case, self.api = case, api
        self.source = repro.script(case, adapter.repro(case, api), adapter=name, api=api)
        self.path = directory / f"{k:03d}_{case.case_id}.py"
        self.path.write_text(self.source)
        self.got = self.expected = self.standalone = None

    def __str__(self):
        return f"{self.path.name}: {self.api}, {self.case.variant} {self.case.dtype} ({self.case.note})"


class Plan:
    def __init__(self, name: str, adapter, pairs, covered: set, directory: Path):
        directory.mkdir(parents=True)
        self.name, self.adapter, self.covered = name, adapter, covered
        self.items = [Item(adapter, name, case, api, directory, k) for k, (case, api) in enumerate(pairs)]


class Runner:
    """A process running scripts as `python script.py --json` runs each, without the project: the
    working directory is a temporary one and PYTHONPATH is dropped (xent is not installed)."""

    def __init__(self, items: list[Item], out: Path):
        self.items, self.out = items, out
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        self.log = out.with_suffix(".log")  # a file, not a pipe: a full pipe would stop the process
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([sys.executable, "-c", RUNNER, str(out)] + [str(it.path) for it in items],
                                         cwd=out.parent, env=env, stdout=log, stderr=subprocess.STDOUT)

    def results(self) -> None:
        """Wait, then set each item's ``standalone`` ({"exit", "stdout"})."""
        self.proc.wait(timeout=300)
        assert self.proc.returncode == 0, self.log.read_text()[-3000:]
        for it, r in zip(self.items, json.loads(self.out.read_text()), strict=True):
            it.standalone = r

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _keras_apis(adapter, case: Case) -> list[str]:
    """The Keras APIs the adapter writes a snippet for (the test checks they are its apis)."""
    return [api for api in KERAS_APIS if adapter.repro(case, api)]


class Session:
    def __init__(self):
        self.plans: dict[str, Plan] = {}  # adapter name -> its plan, for every installed adapter
        self.runners: dict[str, Runner] = {}  # adapter name -> the runner of (some of) its scripts

    def plan(self, name: str) -> Plan:
        if name not in self.plans:
            pytest.skip(f"{name}: its framework is not installed")
        return self.plans[name]


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """Every installed adapter's plan, and the runners, every process started."""
    tmp = tmp_path_factory.mktemp("repro")
    s = Session()
    plans, runners = s.plans, s.runners
    # Keras first: its scripts are written without the framework, so its processes start at once
    for name in KERAS:
        adapter = get(name)
        if not all(importlib.util.find_spec(m) for m in adapter.requires):
            continue
        apis_of = functools.partial(_keras_apis, adapter)
        pairs, covered = select(tuple(KERAS_API), apis_of, PER_CELL_OF.get(name, PER_CELL))
        pairs += out_of_domain(apis_of)
        plan = plans[name] = Plan(name, adapter, pairs, covered, tmp / name)
        runners[name] = Runner(plan.items, tmp / f"{name}.json")
        adapter.worker.start()
    if importlib.util.find_spec("tensorflow"):
        from adapters.tf_adapter import APIS  # imports no framework

        tf = get("tensorflow")
        pairs, covered = select(TF_VARIANTS, tf.apis, PER_CELL)
        pairs += out_of_domain(tf.apis)
        plans["tensorflow"] = Plan("tensorflow", tf, pairs, covered, tmp / "tensorflow")
        xla = get("tensorflow-xla")
        want = {(api, DTYPES[k % len(DTYPES)]) for k, api in enumerate(APIS)}
        pairs, covered = select(TF_VARIANTS, xla.apis, 0, want)
        pairs += out_of_domain(xla.apis, 1)
        plans["tensorflow-xla"] = Plan("tensorflow-xla", xla, pairs, covered, tmp / "tensorflow-xla")
        # one bfloat16 script of each (the dtype numpy lacks) run on its own
        picks = [next(it for it in plans[n].items if it.case.dtype == "bfloat16")
                 for n in ("tensorflow", "tensorflow-xla")]
        runners["tensorflow"] = runners["tensorflow-xla"] = Runner(picks, tmp / "tensorflow.json")
    try:
        yield s
    finally:
        for runner in runners.values():
            runner.close()
        with ThreadPoolExecutor() as pool:  # each worker takes a second to exit: all at once
            list(pool.map(lambda name: plans[name].adapter.worker.close(), [n for n in KERAS if n in plans]))


def _check(plan: Plan, items: list[Item]) -> None:
    bad = [f"{it}\n  snippet  {it.got}\n  evaluate {it.expected}" for it in items if it.got != it.expected]
    assert not bad, f"{len(bad)} of {len(items)} snippets differ:\n" + "\n".join(bad[:10])


def _check_standalone(items: list[Item]) -> None:
    """Each item run on its own printed the JSON its snippet gave, and exited as --json does."""
    for it in items:
        assert it.standalone["exit"] == (1 if "raised" in it.expected else 0), (str(it), it.standalone)
        assert json.loads(it.standalone["stdout"]) == it.expected, str(it)


# -- TensorFlow: snippets run in this process -------------------------------------------------------

@pytest.mark.parametrize("name", ["tensorflow", "tensorflow-xla"])
def test_tensorflow_snippets_make_exactly_the_adapters_call(session, name):
    from adapters.tf_adapter import APIS

    plan = session.plan(name)
    for it in plan.items:
        it.expected = expected(plan.adapter, it.case, it.api)
        it.got = _run_here(it.source)
    _check(plan, plan.items)
    if name == "tensorflow":  # out-of-range class ids raise on CPU (documented): that path is checked too
        assert any("raised" in it.expected for it in plan.items)
    # every API, in every dtype (tensorflow) or in one dtype each, every dtype taken (tensorflow-xla)
    wanted = {(a, d) for a in APIS for d in DTYPES} if name == "tensorflow" else \
        {(a, DTYPES[k % len(DTYPES)]) for k, a in enumerate(APIS)}
    assert plan.covered == wanted, sorted(wanted - plan.covered)
    # and no snippet for an API a case is not applicable to
    for case in {id(it.case): it.case for it in plan.items}.values():
        for api in set(APIS) - set(plan.adapter.apis(case)):
            assert plan.adapter.repro(case, api) is None, api


def test_tensorflow_scripts_run_on_their_own(session):
    """A tensorflow and a tensorflow-xla script, each run as `python script.py --json` runs it."""
    session.plan("tensorflow")
    runner = session.runners["tensorflow"]
    runner.results()
    for it in runner.items:
        if it.expected is None:  # this test was run without the ones above
            it.expected = expected(session.plan(it.path.parent.name).adapter, it.case, it.api)
    _check_standalone(runner.items)


# -- Keras: each adapter's scripts in one process, evaluate in the adapter's worker ----------------

@pytest.mark.parametrize("name", KERAS)
def test_keras_snippets_make_exactly_the_adapters_call(session, name):
    plan = session.plan(name)
    ok, detail = plan.adapter.available()
    if not ok:
        pytest.skip(f"{name} unavailable: {detail}")
    for it in plan.items:
        # the APIs written for are exactly the worker's: repro answers None for every other one
        assert plan.adapter.apis(it.case) == [a for a in KERAS_APIS if plan.adapter.repro(it.case, a)]
        it.expected = expected(plan.adapter, it.case, it.api)
    session.runners[name].results()
    for it in plan.items:
        it.got = json.loads(it.standalone["stdout"])
    _check(plan, plan.items)
    _check_standalone(plan.items)
    wanted = {(a, d) for a in KERAS_APIS for d in DTYPES}
    assert plan.covered == wanted, sorted(wanted - plan.covered)


# -- every script is standalone ---------------------------------------------------------------------

def test_a_script_runs_as_python_script_json(session):
    """One script, literally `python script.py --json`, in a fresh process without the project
    (keras-jax's: the quickest import)."""
    if not session.plans:
        pytest.skip("no framework installed")
    plan = session.plans.get("keras-jax") or next(iter(session.plans.values()))
    it = next((it for it in plan.items if it.case.dtype == "bfloat16"), plan.items[0])
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, it.path.name, "--json"], cwd=it.path.parent, env=env, capture_output=True,
                       text=True, timeout=300)
    want = expected(plan.adapter, it.case, it.api)
    assert r.returncode == (1 if "raised" in want else 0), r.stderr[-3000:]
    assert json.loads(r.stdout.strip().splitlines()[-1]) == want


@pytest.mark.parametrize("name", list(FRAMEWORK))
def test_scripts_import_only_numpy_and_the_framework(session, name):
    plan = session.plan(name)
    allowed = {"numpy", "json", "sys", "os"} | FRAMEWORK[name]
    for it in plan.items:
        assert imported_modules(it.source) <= allowed, (str(it), imported_modules(it.source) - allowed)
