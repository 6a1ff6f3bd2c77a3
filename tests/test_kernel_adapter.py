"""``xent.kernel``: an adapter made from a plain function, declared by its signature."""
import json
import subprocess
import sys

import numpy as np
import pytest

import xent
from adapters.kernel import KernelAdapter
from conformance import repro
from tests.helpers import make


def bce(logits, labels):
    return np.maximum(logits, 0) - logits * labels + np.log1p(np.exp(-np.abs(logits)))


def bce_reduced(logits, labels, reduction):
    loss = bce(logits, labels)
    return loss if reduction == "none" else loss.sum() / (loss.size if reduction == "mean" else 1)


def sparse_ce(logits, labels):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    lse = np.log(np.exp(shifted).sum(axis=-1))
    return lse - np.take_along_axis(shifted, labels[..., None], -1)[..., 0]


def test_kernel_is_the_public_constructor():
    a = xent.kernel(bce, "sigmoid_bce_logits")
    assert isinstance(a, KernelAdapter) and isinstance(a, xent.Adapter)
    assert a.name == "bce" and a.variants == ("sigmoid_bce_logits",) and a.dtypes == ("float32", "float64")
    assert a.apis(make("sigmoid_bce_logits", "float32", logits=[1.0], labels=[1.0])) == [f"{__name__}.bce"]


def test_kernel_answers_only_its_declared_dtypes():
    a = xent.kernel(bce, "sigmoid_bce_logits", dtypes=["float64"])
    assert a.apis(make("sigmoid_bce_logits", "float32", logits=[1.0], labels=[1.0])) == []
    assert a.apis(make("sigmoid_bce_logits", "float64", logits=[1.0], labels=[1.0])) != []


def test_kernel_answers_only_what_its_signature_takes():
    plain, reduced = xent.kernel(bce, "sigmoid_bce_logits"), xent.kernel(bce_reduced, "sigmoid_bce_logits")
    mean = make("sigmoid_bce_logits", "float32", {"reduction": "mean"}, logits=[1.0, 2.0], labels=[1.0, 0.0])
    weighted = make("sigmoid_bce_logits", "float32", logits=[1.0], labels=[1.0], weights=[2.0])
    smoothed = make("sigmoid_bce_logits", "float32", {"label_smoothing": 0.25}, logits=[1.0], labels=[1.0])
    assert plain.apis(mean) == [] and reduced.apis(mean) != []
    assert plain.apis(weighted) == [] and reduced.apis(weighted) == []  # takes no weights
    assert reduced.apis(smoothed) == []  # takes no label_smoothing, and it is not its default


def test_kernel_options_narrow_the_values_an_option_takes():
    a = xent.kernel(bce_reduced, "sigmoid_bce_logits", options={"reduction": ["none", "sum"]})
    for reduction, expressible in (("none", True), ("sum", True), ("mean", False)):
        case = make("sigmoid_bce_logits", "float32", {"reduction": reduction}, logits=[1.0], labels=[1.0])
        assert bool(a.apis(case)) is expressible, reduction


def test_kernel_without_axis_takes_only_a_last_class_axis():
    a = xent.kernel(sparse_ce, "softmax_ce_sparse")
    logits = [[0.0, 1.0, 2.0], [1.0, 1.0, 1.0]]
    last = make("softmax_ce_sparse", "float32", {"axis": 1}, logits=logits, labels=[0, 2])
    first = make("softmax_ce_sparse", "float32", {"axis": 0}, logits=logits, labels=[0, 1, 1])
    assert a.apis(last) != [] and a.apis(first) == []


def test_kernel_evaluate_passes_case_arrays_and_keeps_the_returned_dtype():
    seen = {}

    def f(logits, labels, reduction):
        seen.update(logits=logits.dtype, labels=labels.dtype, reduction=reduction)
        return logits.astype(np.float64) * 0  # a float64 answer to a float32 case: left as returned

    case = make("sigmoid_bce_logits", "float32", logits=[1.0, -2.0], labels=[1.0, 0.0])
    a = xent.kernel(f, "sigmoid_bce_logits")
    out = a.evaluate(case, a.apis(case)[0])
    assert seen == {"logits": np.float32, "labels": np.float32, "reduction": "none"}
    assert out.value.dtype == np.float64 and out.value.tolist() == [0.0, 0.0] and out.grads == {}


def test_kernel_cannot_change_the_case_it_is_given():
    def f(logits, labels):
        logits[...] = 7.0
        return labels

    case = make("sigmoid_bce_logits", "float32", logits=[1.0], labels=[0.5])
    a = xent.kernel(f, "sigmoid_bce_logits")
    a.evaluate(case, a.apis(case)[0])
    assert case["logits"].tolist() == [1.0]


def test_kernel_grads_come_from_the_grads_function_for_inputs_of_the_case():
    def grads(logits, labels):  # d/dx = sigmoid(x) - z, d/dz = -x; "probs" is not an input here
        return {"logits": 1 / (1 + np.exp(-logits)) - labels, "labels": -logits, "probs": logits}

    case = make("sigmoid_bce_logits", "float64", logits=[0.0, 2.0], labels=[1.0, 0.5])
    a = xent.kernel(bce, "sigmoid_bce_logits", grads=grads)
    out = a.evaluate(case, a.apis(case)[0])
    assert set(out.grads) == {"logits", "labels"}
    assert out.grads["logits"][0] == -0.5 and out.grads["labels"].tolist() == [-0.0, -2.0]
    assert a.evaluate(case, a.apis(case)[0], grads=False).grads == {}


@pytest.mark.parametrize("call, says", [
    (lambda: xent.kernel(bce, "sigmoid"), "unknown variant 'sigmoid'"),
    (lambda: xent.kernel(bce, "sigmoid_bce_logits", dtypes=["float8"]), "unknown dtype(s) 'float8'"),
    (lambda: xent.kernel(lambda x, z: x, "sigmoid_bce_logits"), "must take the input(s) logits, labels"),
    (lambda: xent.kernel(lambda logits, labels, eps: logits, "sigmoid_bce_logits"), "requires eps"),
    (lambda: xent.kernel(bce, "sigmoid_bce_logits", options={"axis": [-1]}), "takes no parameter 'axis'"),
    (lambda: xent.kernel(3, "sigmoid_bce_logits"), "expected a function, got int"),
])
def test_kernel_bad_declaration_is_one_line(call, says):
    with pytest.raises((TypeError, ValueError)) as e:
        call()
    assert says in str(e.value) and "\n" not in str(e.value)


KERNEL_MODULE = '''
import numpy as np


def textbook(logits, labels):
    return logits - logits * labels + np.log(1 + np.exp(-logits))


def identity(logits, labels, reduction):
    return logits + labels * 0
'''


@pytest.fixture
def kernel_module(tmp_path, monkeypatch):
    folder = tmp_path / "kernels"
    folder.mkdir()
    (folder / "team_kernels_xt.py").write_text(KERNEL_MODULE)
    monkeypatch.syspath_prepend(str(folder))
    import importlib

    return importlib.import_module("team_kernels_xt")


def _run_script(source, tmp_path, *args):
    path = tmp_path / "elsewhere" / "repro.py"
    path.parent.mkdir(exist_ok=True)
    path.write_text(source)
    return subprocess.run([sys.executable, str(path), *args], cwd=path.parent, capture_output=True, text=True,
                          timeout=120)


def test_kernel_reproducer_imports_the_kernel_and_reproduces(kernel_module, tmp_path):
    # x = -810, z = 1 in float32: exp(810) overflows, so the textbook formula returns inf; the loss
    # is 810 + log1p(exp(-810)), which rounds to 810 in float32.
    a = xent.kernel(kernel_module.textbook, "sigmoid_bce_logits", dtypes=["float32"])
    case = make("sigmoid_bce_logits", "float32", logits=[-810.0], labels=[1.0])
    api = a.apis(case)[0]
    assert api == "team_kernels_xt.textbook"
    source = repro.script(case, a.repro(case, api), adapter=a.name, api=api, verdict="overflow", index=(0,),
                          recorded=float("inf").hex(), truth=(810.0).hex())
    done = _run_script(source, tmp_path)  # from another folder: the module's folder is put on the path
    assert done.returncode == 0 and "REPRODUCED: overflow" in done.stdout, done.stdout + done.stderr


def test_kernel_reproducer_makes_the_same_call_in_bfloat16(kernel_module, tmp_path):
    a = xent.kernel(kernel_module.identity, "sigmoid_bce_logits", dtypes=["bfloat16"])
    case = make("sigmoid_bce_logits", "bfloat16", logits=[1.5, -0.25], labels=[1.0, 0.0])
    api = a.apis(case)[0]
    done = _run_script(repro.script(case, a.repro(case, api), adapter=a.name, api=api), tmp_path, "--json")
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["value"]["dtype"] == "bfloat16"
    assert [float.fromhex(h) for h in got["value"]["hex"]] == [1.5, -0.25]
    assert a.evaluate(case, api).value.astype(np.float64).tolist() == [1.5, -0.25]


def test_kernel_defined_inside_a_function_writes_no_reproducer():
    def local(logits, labels):
        return logits

    a = xent.kernel(local, "sigmoid_bce_logits")
    case = make("sigmoid_bce_logits", "float32", logits=[1.0], labels=[1.0])
    assert a.repro(case, a.apis(case)[0]) is None
