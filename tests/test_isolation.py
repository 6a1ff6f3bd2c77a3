"""Adapters in worker processes: a segfault, an abort, a hang or a memory blow-up on one case
becomes `AdapterCrashed` or `AdapterTimeout` for that case, the worker is replaced, and the next
case gets the in-process answer bit for bit; no worker outlives its parent.

The controls ``crashy``, ``hang`` and ``leak`` (adapters/controls.py) are the numpy reference
except on an input of magnitude >= 1e4. Limits are set small here (2 s, 1 GiB).
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import adapters
from adapters import AdapterCrashed, AdapterTimeout
from adapters._worker import IsolatedAdapter, WorkerAdapter, WorkerError
from adapters.numpy_ref import NumpyAdapter
from cases import Case
from cases.strategies import generate

ROOT = Path(__file__).resolve().parents[1]
API = "numpy"


def bce(*logits, dtype="float32") -> Case:
    x = np.array(logits, dtype=dtype)
    return Case("sigmoid_bce_logits", dtype, {"logits": x, "labels": np.ones_like(x)}, {"reduction": "none"})


ORDINARY, FINITE_HUGE, INFINITE = bce(3.0, -0.5), bce(1e5, 0.5), bce(np.inf, 0.5)


def bits(out):
    b = lambda a: (a.dtype.name, a.shape, np.ascontiguousarray(a).tobytes())  # noqa: E731
    return b(out.value), {k: b(v) for k, v in sorted(out.grads.items())}


def gone(pid: int) -> bool:
    """No such process, or only a zombie (exited, not yet reaped by its parent)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.fixture
def control(request):
    made = []

    def make(name, **settings):
        a = adapters.get(name)
        for k, v in settings.items():
            setattr(a.worker, k, v)
        made.append(a)
        return a

    yield make
    for a in made:
        a.close()


REFERENCE = NumpyAdapter()


def test_segfault_and_abort_are_crashes_naming_the_signal_and_the_next_case_is_answered(control):
    a = control("crashy")
    assert a.available()[0] and a.apis(FINITE_HUGE) == [API]
    pids = {a.worker.pid}
    with pytest.raises(AdapterCrashed) as info:
        a.evaluate(FINITE_HUGE, API)
    assert info.value.signal == "SIGSEGV" and str(info.value) == info.value.message == "worker died of SIGSEGV"
    assert "Segmentation fault" in info.value.stderr and "controls.py" in info.value.stderr  # faulthandler's stack
    assert bits(a.evaluate(ORDINARY, API)) == bits(REFERENCE.evaluate(ORDINARY, API))
    pids.add(a.worker.pid)
    with pytest.raises(AdapterCrashed) as info:
        a.evaluate(INFINITE, API)
    assert info.value.signal == "SIGABRT" and info.value.message == "worker died of SIGABRT"
    assert bits(a.evaluate(ORDINARY, API)) == bits(REFERENCE.evaluate(ORDINARY, API))
    pids.add(a.worker.pid)
    assert len(pids) == 3 and a.worker.starts == 3
    a.close()
    assert all(gone(p) for p in pids)


def test_hang_is_a_timeout_within_the_limit_and_the_worker_is_replaced(control):
    a = control("hang", timeout_s=2.0)
    assert a.available()[0]
    pid = a.worker.pid
    t0 = time.monotonic()
    with pytest.raises(AdapterTimeout) as info:
        a.evaluate(FINITE_HUGE, API)
    took = time.monotonic() - t0
    assert 2.0 <= took < 2.0 + 1.5, took
    assert info.value.limit_s == 2.0 and "2 s" in info.value.message
    assert gone(pid) and not a.worker.alive  # killed, not left sleeping
    assert bits(a.evaluate(ORDINARY, API)) == bits(REFERENCE.evaluate(ORDINARY, API))


def test_memory_blow_up_is_a_crash_naming_the_limit_not_raised(control):
    a = control("leak", memory_limit=1 << 30)
    assert a.available()[0]
    pid = a.worker.pid
    with open(f"/proc/{pid}/limits") as f:
        data = next(line for line in f if line.startswith("Max data size")).split()
    assert data[3] == str(1 << 30)  # RLIMIT_DATA, soft limit
    with pytest.raises(AdapterCrashed) as info:
        a.evaluate(FINITE_HUGE, API)
    assert not isinstance(info.value, WorkerError)
    assert info.value.message == "exceeded the memory limit of 1 GiB (MemoryError)"
    assert info.value.memory_limit == 1 << 30
    assert gone(pid)  # what it held is released with it
    assert bits(a.evaluate(ORDINARY, API)) == bits(REFERENCE.evaluate(ORDINARY, API))


def test_memory_watchdog_kills_a_worker_past_the_limit_where_rlimit_is_off(control):
    # as on a platform without RLIMIT_DATA, or for memory it does not count
    a = control("leak", memory_limit=1 << 30, rlimit=False)
    assert a.available()[0]
    with open(f"/proc/{a.worker.pid}/limits") as f:
        assert next(line for line in f if line.startswith("Max data size")).split()[3] == "unlimited"
    with pytest.raises(AdapterCrashed) as info:
        a.evaluate(FINITE_HUGE, API)
    assert info.value.signal == "SIGKILL" and info.value.memory_limit == 1 << 30
    assert info.value.message.startswith("exceeded the memory limit of 1 GiB (") and "resident" in info.value.message
    assert bits(a.evaluate(ORDINARY, API)) == bits(REFERENCE.evaluate(ORDINARY, API))


def test_leak_control_refuses_without_a_limit(control):
    a = control("leak", memory_limit=None)
    with pytest.raises(WorkerError, match="^the leak control allocates until a memory limit") as info:
        a.evaluate(FINITE_HUGE, API)
    assert type(info.value).__name__ == "RuntimeError"


def test_errors_of_the_adapter_stay_errors(control):
    a = control("crashy")
    with pytest.raises(WorkerError) as info:
        a.evaluate(ORDINARY, "no such api")
    assert type(info.value).__name__ == "ValueError" and isinstance(info.value, WorkerError)
    assert bits(a.evaluate(ORDINARY, API)) == bits(REFERENCE.evaluate(ORDINARY, API))
    assert a.worker.starts == 1  # an exception is an answer: the worker lives on


# -- the registry ----------------------------------------------------------------------------------

def test_opt_in_controls_are_not_in_the_default_set():
    assert not {"crashy", "hang", "leak"} & set(adapters.names())
    assert {"crashy", "hang", "leak"} <= set(adapters.names(include_opt_in=True))
    assert adapters.names(include_opt_in=True)[:len(adapters.names())] == adapters.names()
    for name in adapters.OPT_IN:
        a = adapters.get(name)
        assert a.control and isinstance(a, WorkerAdapter) and adapters.get(name, isolated=True).__class__ is type(a)


def test_get_isolated_wraps_in_process_adapters_and_keeps_worker_adapters():
    iso = adapters.get("numpy", isolated=True)
    assert isinstance(iso, IsolatedAdapter) and iso.name == "numpy" and not iso.worker.alive
    assert isinstance(adapters.get("numpy"), NumpyAdapter) and isinstance(adapters.get("numpy", isolated=False),
                                                                          NumpyAdapter)
    assert adapters.get("jax", isolated=True).slow and adapters.get("naive", isolated=True).control
    keras = adapters.get("keras-torch", isolated=True)
    assert type(keras).__name__ == "KerasTorchAdapter"  # a worker already: not wrapped twice


def test_isolated_adapter_imports_no_framework_in_the_parent():
    code = textwrap.dedent("""
        import sys, numpy as np, adapters
        from cases import Case
        a = adapters.get("numpy", isolated=True)
        x = np.array([1.0, -2.0], dtype="float32")
        c = Case("sigmoid_bce_logits", "float32", {"logits": x, "labels": np.ones_like(x)}, {"reduction": "none"})
        assert a.available()[0] and a.apis(c) == ["numpy"]
        a.evaluate(c, "numpy")
        t = adapters.get("torch", isolated=True)
        t.apis(c)
        print(a.worker.pid, sorted(m for m in ("torch", "tensorflow", "jax") if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    pid, frameworks = out.stdout.split(" ", 1)
    assert frameworks.strip() == "[]"
    deadline = time.monotonic() + 5
    while not gone(int(pid)) and time.monotonic() < deadline:  # closed at exit (atexit)
        time.sleep(0.05)
    assert gone(int(pid))


def test_a_worker_whose_parent_was_killed_exits_by_itself():
    code = textwrap.dedent("""
        import adapters, sys
        a = adapters.get("hang")
        a.available()
        print(a.worker.pid, flush=True)
        sys.stdin.read()
    """)
    parent = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              cwd=ROOT)
    try:
        pid = int(parent.stdout.readline())
        assert not gone(pid)
    finally:
        parent.kill()  # SIGKILL: no atexit, the worker is left to notice
        parent.wait()
    deadline = time.monotonic() + 5
    while not gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert gone(pid)


# -- a real framework: the same bits in a worker ---------------------------------------------------

@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")
def test_isolated_torch_returns_the_in_process_bits():
    local, iso = adapters.get("torch"), adapters.get("torch", isolated=True)
    try:
        assert iso.available() == local.available()
        n = 0
        for variant, dtype in [("softmax_ce_sparse", "float32"), ("bce_probs", "float64"), ("log_softmax", "bfloat16"),
                               ("softmax_ce_dense", "float16")]:
            for c in generate(variant, dtype, 4, 0):
                assert iso.apis(c) == local.apis(c)
                for api in local.apis(c):
                    assert iso.contract(c, api) == local.contract(c, api)
                    try:
                        want = bits(local.evaluate(c, api))
                    except Exception as e:  # noqa: BLE001 (raised in the worker: the same type and message)
                        with pytest.raises(WorkerError) as info:
                            iso.evaluate(c, api)
                        assert (type(info.value).__name__, str(info.value)) == (type(e).__name__, str(e))
                        continue
                    assert bits(iso.evaluate(c, api)) == want
                    n += 1
        assert n >= 8 and iso.worker.starts == 1
    finally:
        iso.close()


# -- the verdicts ----------------------------------------------------------------------------------

def test_the_run_gives_crash_and_timeout_verdicts_with_the_signal_and_the_limit(control):
    import oracle
    from conformance import runner

    crashy, hang, leak = control("crashy"), control("hang", timeout_s=1.0), control("leak", memory_limit=1 << 30)
    for a, case, verdict, message in [
            (crashy, FINITE_HUGE, "crash", "worker died of SIGSEGV"),
            (crashy, INFINITE, "crash", "worker died of SIGABRT"),
            (hang, FINITE_HUGE, "timeout", "no answer to evaluate within 1 s (the per-call limit); worker killed"),
            (leak, FINITE_HUGE, "crash", "exceeded the memory limit of 1 GiB (MemoryError)")]:
        cv, _ = runner._judge(a, API, case, oracle.evaluate(case, grads=True), {})
        assert (cv.verdict, cv.worst.message) == (verdict, message)
        cv, _ = runner._judge(a, API, ORDINARY, oracle.evaluate(ORDINARY, grads=True), {})
        assert cv.verdict == "conforms"


def test_an_exception_in_a_worker_reads_as_it_does_in_process():
    import oracle
    from conformance import runner

    local, iso = adapters.get("numpy"), adapters.get("numpy", isolated=True)
    try:
        for case in (bce(1.0, 2.0, dtype="float16"), Case("sigmoid_bce_logits", "float32", {
                "logits": np.array([1.0], "float32"), "labels": np.array([1.0], "float32")},
                {"reduction": "none", "label_smoothing": 1.5})):
            truth = oracle.evaluate(case, grads=True)
            for api in ("numpy", "no such api"):
                want, got = runner._judge(local, api, case, truth, {})[0], runner._judge(iso, api, case, truth, {})[0]
                assert (got.verdict, got.worst.message) == (want.verdict, want.worst.message)
    finally:
        iso.close()
