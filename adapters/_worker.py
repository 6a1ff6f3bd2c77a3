"""Worker processes: an adapter served by a subprocess of its own, and the parent's side of it.

An adapter evaluated in the engine's process can take the engine down with it: a segfault, an
abort, a call that never returns or memory allocated without end would end or stall the whole
run. Served by a worker, the same failure costs one case: the verdict ``crash`` (the worker died:
the signal or exit code, or the memory limit, is in the message; `AdapterCrashed`) or ``timeout``
(no answer within the per-call limit; `AdapterTimeout`), and the next request starts a new worker.
Some frameworks must live in a process of their own anyway: Keras fixes its backend when it is
imported (the Keras adapters are `WorkerAdapter`s); `IsolatedAdapter` serves any registered
adapter the same way (``adapters.get(name, isolated=True)``, what ``xent run`` uses).

``python -m adapters._worker MODULE:CLASS`` imports the adapter class once (or a third party's
``MODULE:ATTRIBUTE``, an adapter instance or class, as ``adapters.discovery`` loads it), in the environment
its parent chose, and answers one JSON request per line on stdin with one JSON response per line on
stdout; the framework is imported once per worker, not per case:

    {"op": "available"}                                -> {"result": [ok, detail]}
    {"op": "apis", "case": case.to_dict(), "key": k}   -> {"result": [api, ...]}
    {"op": "plan", "case": ...}                        -> {"result": {"apis": [api, ...],
                                                           "contracts": {api: null or CONTRACT}}}
    {"op": "contract", "case": ..., "api": ...}        -> {"result": null or CONTRACT}
    {"op": "repro", "case": ..., "api": ...}           -> {"result": null or the snippet}
    {"op": "evaluate", "case": ..., "api": ..., "grads": bool}
                                                       -> {"result": {"value": ARRAY, "grads": {input: ARRAY}}}
    a request the adapter (or the framework) raised on -> {"error": {"type", "message", "traceback"}}

Instead of ``"case"``, a request may carry ``"case_pickle"``: the `Case` pickled, in base64, which
is what `WorkerAdapter` sends (a worker trusts its parent; responses are JSON only). ``key`` is
optional: the worker keeps its last 64 cases under the keys they came with, and a later request
may send ``"key": k`` alone instead of the case (the parent does when it sent that case to this
same worker process, e.g. ``plan`` then ``evaluate``). A CONTRACT is ``{name, url, summary,
params}``. An ARRAY is ``{"dtype": numpy dtype name, "shape": [...], "data": base64 of its
little-endian C-order bytes}``, so it comes back bit for bit (bfloat16, NaN payloads and -0.0
included). Frameworks print to stdout; the worker points fd 1 at stderr before importing anything
and writes protocol lines to a duplicate of the original fd 1, so stdout carries protocol lines
only. ``faulthandler`` is on: a worker that dies of a signal leaves its Python stack in the stderr
tail the parent keeps (``AdapterCrashed.stderr``).

Limits, per worker (`WorkerClient`; the environment variables set the defaults):

- time: ``timeout_s`` for each ``evaluate`` (``XENT_WORKER_TIMEOUT_S``, default 60 s);
  ``startup_timeout_s`` for the other requests and for starting a worker, which imports the
  framework (``XENT_WORKER_STARTUP_TIMEOUT_S``, default 300 s); 0 for none. Past it, the worker's
  process group is killed (SIGKILL) and `AdapterTimeout` raised.
- memory: ``memory_limit`` bytes (``XENT_WORKER_MEMORY_GB``, default 8; 0 for none), enforced as
  the worker's RLIMIT_DATA, so an allocation past it fails inside the worker (a ``MemoryError``,
  answered as `AdapterCrashed` naming the limit, and the worker is replaced). RLIMIT_DATA counts
  the private writable memory a process maps, not the address space it merely reserves:
  RLIMIT_AS would fail JAX, TensorFlow and glibc's per-thread malloc arenas, which reserve
  gigabytes of address space they never touch. A watchdog in the parent also kills a worker whose
  resident anonymous memory (RssAnon + RssShmem) passes the limit while it computes (memory that
  RLIMIT_DATA does not see, e.g. shared mappings, or a platform without it).

A worker that dies mid-request raises `AdapterCrashed` (also known here as ``WorkerDied``: the
signal name or exit code, the stderr tail). An exception the adapter raises in the worker comes
back as a `WorkerError` named like the original, with its message: the verdict ``raised`` reads as
it does in-process. Workers still running when the interpreter exits are stopped (atexit), and a
worker whose parent is gone exits by itself, so none is left behind.
"""
from __future__ import annotations

import atexit
import base64
import collections
import importlib
import importlib.util
import itertools
import json
import math
import os
import pickle
import re
import select
import signal as signals
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import weakref
from pathlib import Path

import numpy as np

from cases import Case

from .base import Adapter, AdapterCrashed, AdapterTimeout, Contract, Output

_ROOT = Path(__file__).resolve().parents[1]  # the directory that holds the adapters package
_STDERR_TAIL = 2000  # characters of a dead worker's stderr quoted in the error
_LIMIT_ENV = "_XENT_WORKER_MEMORY_LIMIT"  # the memory limit, in bytes, from the parent to its worker
_RLIMIT_ENV = "_XENT_WORKER_RLIMIT"  # "1": the worker applies it as RLIMIT_DATA; "0": the watchdog only
_SENT_CASES = 32  # recent cases the parent names by key (with their contracts)
_WATCH_S = 0.05  # how often the parent looks at a busy worker's memory
_MEMORY_HINTS = re.compile(r"MemoryError|std::bad_alloc|out of memory|Cannot allocate memory|can't allocate memory"
                           r"|ResourceExhausted", re.IGNORECASE)


def _env_number(name: str, default: float) -> float:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name}={text!r} is not a number") from None
    if value < 0 or value != value:
        raise ValueError(f"{name}={text!r} must be >= 0")
    return value


def default_timeout_s() -> float:
    return _env_number("XENT_WORKER_TIMEOUT_S", 60.0)


def default_startup_timeout_s() -> float:
    return _env_number("XENT_WORKER_STARTUP_TIMEOUT_S", 300.0)


def default_memory_limit() -> int | None:
    """Bytes, from ``XENT_WORKER_MEMORY_GB`` (GiB, default 8); None when it is 0."""
    gib = _env_number("XENT_WORKER_MEMORY_GB", 8.0)
    return int(gib * 2 ** 30) or None


def gib(n: int) -> str:
    """``n`` bytes in GiB, as the messages name a limit: "8 GiB", "0.5 GiB"."""
    return f"{n / 2 ** 30:.3g} GiB"


# -- arrays -----------------------------------------------------------------------------------------

def encode_array(arr) -> dict:
    a = np.asarray(arr)
    if a.dtype.kind not in "biuf" and a.dtype.name != "bfloat16":
        raise TypeError(f"cannot send an array of dtype {a.dtype} (numbers only)")
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    return {"dtype": a.dtype.name, "shape": list(a.shape),
            "data": base64.b64encode(a.tobytes(order="C")).decode("ascii")}


def decode_array(enc: dict) -> np.ndarray:
    dtype = np.dtype(enc["dtype"])  # "bfloat16" resolves once ml_dtypes is imported (cases imports it)
    return np.frombuffer(base64.b64decode(enc["data"]), dtype=dtype).reshape(enc["shape"]).copy()


def _pickled(case: Case) -> str:
    """The case as the parent sends it: pickled (decoding ``to_dict``'s exact decimals costs ~0.4 ms
    a case, unpickling ~0.02 ms), in base64. The parent pickles, the worker unpickles: it trusts
    what its own parent sends, and the parent never unpickles what a worker answers."""
    return base64.b64encode(pickle.dumps(case, protocol=pickle.HIGHEST_PROTOCOL)).decode("ascii")


def _contract_dict(c: Contract | None) -> dict | None:
    return None if c is None else {"name": c.name, "url": c.url, "summary": c.summary, "params": c.params}


# -- the worker -------------------------------------------------------------------------------------

_CASES: collections.OrderedDict = collections.OrderedDict()  # the worker's recent cases, by the parent's key
_KEPT_CASES = 64  # the parent keeps fewer (_SENT_CASES): what it names by key is almost always here


class _UnknownCase(Exception):
    """A key this worker no longer keeps: the parent sends the case whole."""


def _case(request: dict) -> Case:
    """The request's case: sent whole (and kept under its ``key``), or named by a key sent before."""
    key = request.get("key")
    if "case" in request or "case_pickle" in request:
        case = pickle.loads(base64.b64decode(request["case_pickle"])) if "case_pickle" in request else \
            Case.from_dict(request["case"])
        if key is not None:
            _CASES[key] = case
            while len(_CASES) > _KEPT_CASES:
                _CASES.popitem(last=False)
        return case
    if key not in _CASES:
        raise _UnknownCase(f"no case under key {key!r} in this worker")
    _CASES.move_to_end(key)
    return _CASES[key]


def _handle(adapter: Adapter, request: dict):
    op = request.get("op")
    if op == "available":
        return list(adapter.available())
    case = _case(request)
    if op == "apis":
        return list(adapter.apis(case))
    if op == "plan":
        apis = list(adapter.apis(case))
        return {"apis": apis, "contracts": {api: _contract_dict(adapter.contract(case, api)) for api in apis}}
    if op == "contract":
        return _contract_dict(adapter.contract(case, request["api"]))
    if op == "repro":
        return adapter.repro(case, request["api"])
    if op == "evaluate":
        out = adapter.evaluate(case, request["api"], grads=bool(request.get("grads", True)))
        return {"value": encode_array(out.value), "grads": {k: encode_array(v) for k, v in out.grads.items()}}
    raise ValueError(f"unknown op {op!r}")


def _error(e: BaseException) -> dict:
    t = type(e)
    return {"error": {"type": t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}",
                      "message": str(e), "traceback": traceback.format_exc()}}


def _limit_memory() -> None:
    """Apply the parent's memory limit to this process (RLIMIT_DATA), where the platform has it and
    the parent asks for it. The limit stays in the environment (``_XENT_WORKER_MEMORY_LIMIT``,
    bytes) for adapters to read."""
    limit = int(os.environ.get(_LIMIT_ENV, "0") or 0)
    if limit <= 0 or os.environ.pop(_RLIMIT_ENV, "1") != "1":
        return
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    except (ImportError, AttributeError, ValueError, OSError) as e:  # the parent's watchdog still applies
        print(f"xent worker: no RLIMIT_DATA ({e}); the parent's watchdog enforces the memory limit", file=sys.stderr)


def _exit_with_parent() -> None:
    """Exit when the parent is gone (killed without closing us): no worker outlives its run."""
    parent = os.getppid()

    def watch():
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch, name="xent-parent-watch", daemon=True).start()


def serve(target: str) -> None:
    """Answer requests for the adapter class ``target`` ("module:Class") until stdin closes."""
    import faulthandler

    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # whatever a framework prints from here on goes to stderr
    faulthandler.enable()  # a fatal signal prints the Python stack to stderr (quoted by the parent)
    _limit_memory()
    _exit_with_parent()
    try:
        module, attr = target.split(":")
        adapter = importlib.import_module(module)
        for part in attr.split("."):  # a third party's attribute may be dotted (adapters.discovery)
            adapter = getattr(adapter, part)
        adapter, failure = adapter() if isinstance(adapter, type) else adapter, None  # a class, or an instance
    except Exception as e:  # answered to every request, so the parent can say why
        adapter, failure = None, _error(e)
    reserve = bytearray(1 << 22)  # freed to answer a MemoryError when no memory is left
    for line in sys.stdin:
        try:
            response = json.dumps(failure or {"result": _handle(adapter, json.loads(line))})
        except MemoryError as e:
            reserve.clear()  # room to answer; the parent replaces this worker (what it holds may stay held)
            response = json.dumps(_error(e))
        except Exception as e:
            response = json.dumps(_error(e))
        protocol.write(response + "\n")
        protocol.flush()


# -- the parent's side ------------------------------------------------------------------------------

class WorkerError(Exception):
    """An exception raised inside the worker, raised here as a subclass named like the original
    (`remote_error`): ``type(e).__name__`` is the original's name and ``str(e)`` its message, so
    that ``f"{type(e).__name__}: {e}"`` (the verdict's message) reads as it does in-process.
    ``type_name`` is the original's dotted name; ``remote_traceback`` its traceback."""

    def __init__(self, type_name: str, message: str, remote_traceback: str = ""):
        super().__init__(message)
        self.type_name, self.message, self.remote_traceback = type_name, message, remote_traceback


_REMOTE_TYPES: dict[str, type] = {}


def remote_error(type_name: str, message: str, remote_traceback: str = "") -> WorkerError:
    """A `WorkerError` of the subclass named like ``type_name``'s last part (made once per name)."""
    cls = _REMOTE_TYPES.get(type_name)
    if cls is None:
        short = type_name.rpartition(".")[2]
        cls = _REMOTE_TYPES[type_name] = type(short, (WorkerError,), {"__qualname__": short, "__doc__": (
            f"{type_name}, raised in a worker process")})
    return cls(type_name, message, remote_traceback)


#: The worker ended (or closed its stdout) before it answered: `AdapterCrashed` itself, under the
#: name this module used before adapters could crash anywhere else.
WorkerDied = AdapterCrashed


class _Expired(Exception):
    pass


class _Closed(Exception):
    pass


class _OverMemory(Exception):
    pass


_CLIENTS: "weakref.WeakSet[WorkerClient]" = weakref.WeakSet()


def close_all() -> None:
    """Stop every worker of this process (registered with atexit): all asked at once, then waited
    for, so that exiting costs the slowest worker's shutdown, not their sum."""
    clients = [c for c in list(_CLIENTS) if c._proc is not None]
    for c in clients:
        c._hang_up()
    for c in clients:
        c.close()


atexit.register(close_all)


class WorkerClient:
    """A worker for ``target`` ("module:Class") with ``env`` added to this process's environment.

    Started by the first request; a worker found dead is restarted by the next one, which for
    ``evaluate`` first asks ``available`` (the framework's import, under ``startup_timeout_s``),
    so that ``timeout_s`` times the evaluation alone. Its stderr goes to a temporary file whose
    tail is quoted when it dies. ``timeout_s``, ``startup_timeout_s`` (seconds) and
    ``memory_limit`` (bytes, None for none) default to the environment's settings (see the
    module's documentation); a new ``memory_limit`` (or ``rlimit``: False leaves it to the
    watchdog alone) applies from the next start.
    """

    def __init__(self, target: str, env: dict[str, str] | None = None, *, timeout_s: float | None = None,
                 startup_timeout_s: float | None = None, memory_limit: int | None | str = "default"):
        self.target, self.env = target, dict(env or {})
        self.timeout_s = default_timeout_s() if timeout_s is None else timeout_s
        self.startup_timeout_s = default_startup_timeout_s() if startup_timeout_s is None else startup_timeout_s
        self.memory_limit = default_memory_limit() if memory_limit == "default" else memory_limit
        self.rlimit = True  # False: the watchdog alone enforces memory_limit (as where RLIMIT_DATA is missing)
        self._proc: subprocess.Popen | None = None
        self._stderr = None
        self._buffer = bytearray()
        self._fresh = False  # started and not yet asked anything
        self.starts = 0  # how many worker processes this client has started
        _CLIENTS.add(self)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self.alive else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start the worker unless it is running; returns at once (it imports in the background)."""
        if self.alive:
            return
        self.close()
        env = {**os.environ, **self.env}
        # an idle worker's OpenMP threads sleep instead of spinning (GNU OpenMP spins ~0.3 s after each
        # parallel region, taking the CPU the parent and the other workers need); numerics unchanged
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_ROOT), env.get("PYTHONPATH")) if p)
        env.pop(_LIMIT_ENV, None)
        if self.memory_limit:
            env[_LIMIT_ENV] = str(int(self.memory_limit))
            env[_RLIMIT_ENV] = "1" if self.rlimit else "0"
        self._stderr = tempfile.TemporaryFile()
        self._proc = subprocess.Popen([sys.executable, "-m", "adapters._worker", self.target], env=env,
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                                      bufsize=0, start_new_session=True)  # its own group: killed whole
        os.set_blocking(self._proc.stdin.fileno(), False)
        self._buffer = bytearray()
        self._fresh = True
        self.starts += 1

    def request(self, op: str, **fields):
        """The worker's result for one request.

        Raises WorkerError (the adapter raised), `AdapterTimeout` (no answer in time: the worker is
        killed) or `AdapterCrashed` (it died, or ran out of memory: it is killed).
        """
        self.start()
        if self._fresh and op == "evaluate":
            try:  # the import, timed as a start: the evaluation's own limit starts after it
                self._exchange({"op": "available"}, self.startup_timeout_s)
            except WorkerError:
                pass  # the adapter failed to load: the request itself says so
        timeout = self.timeout_s if op == "evaluate" else self.startup_timeout_s
        return self._exchange({"op": op, **fields}, timeout)

    def _exchange(self, message: dict, timeout: float):
        self._fresh = False
        deadline = time.monotonic() + (timeout or math.inf)  # 0: no limit
        try:
            self._send((json.dumps(message) + "\n").encode("utf-8"), deadline)
            line = self._receive(deadline)
        except (KeyboardInterrupt, SystemExit):  # mid-request: its answer would answer the next one
            self.kill()
            raise
        except _Expired:
            self.kill()
            raise AdapterTimeout(timeout, f"no answer to {message['op']} within {timeout:g} s (the per-call "
                                          f"limit); worker killed") from None
        except _OverMemory as e:
            self.kill()
            raise AdapterCrashed(f"exceeded the memory limit of {gib(self.memory_limit)} ({e}; killed)",
                                 "SIGKILL", memory_limit=self.memory_limit) from None
        except _Closed:
            raise self._obituary() from None
        response = json.loads(line)
        if "error" in response:
            err = response["error"]
            short = err["type"].rpartition(".")[2]
            if short == "MemoryError" or _MEMORY_HINTS.search(f"{err['type']}: {err['message']}"):
                self.kill()  # what it holds may never be freed: a new worker serves the next request
                limit = f"exceeded the memory limit of {gib(self.memory_limit)}" if self.memory_limit else \
                    "ran out of memory"
                raise AdapterCrashed(f"{limit} ({short})", None, memory_limit=self.memory_limit)
            raise remote_error(err["type"], err["message"], err.get("traceback", ""))
        return response["result"]

    def _send(self, data: bytes, deadline: float) -> None:
        fd = self._proc.stdin.fileno()
        view = memoryview(data)
        while view:
            try:
                n = os.write(fd, view)
            except BlockingIOError:
                n = 0
            except (BrokenPipeError, OSError):
                raise _Closed() from None
            view = view[n:]
            if view:
                self._wait(fd, deadline, write=True)

    def _receive(self, deadline: float) -> bytes:
        fd = self._proc.stdout.fileno()
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[:end + 1]
                return line
            self._wait(fd, deadline)
            try:
                chunk = os.read(fd, 1 << 20)
            except OSError:
                chunk = b""
            if not chunk:
                raise _Closed()
            self._buffer += chunk

    def _wait(self, fd: int, deadline: float, write: bool = False) -> None:
        """Until ``fd`` is ready; watching the clock and the worker's memory meanwhile."""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise _Expired()
            poll = select.poll()
            poll.register(fd, select.POLLOUT if write else select.POLLIN)
            if poll.poll(min(left, _WATCH_S) * 1000):  # ready, or hung up (the read or write says which)
                return
            if self.memory_limit:
                used = self._resident()
                if used is not None and used > self.memory_limit:
                    raise _OverMemory(f"{gib(used)} resident")

    def _resident(self) -> int | None:
        """The worker's resident anonymous and shared memory, in bytes (Linux; None elsewhere)."""
        try:
            with open(f"/proc/{self._proc.pid}/status", "rb") as f:
                text = f.read()
        except OSError:
            return None
        total = 0
        for key in (b"RssAnon:", b"RssShmem:"):
            m = re.search(key + rb"\s+(\d+) kB", text)
            if m:
                total += int(m.group(1)) * 1024
        return total

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0, os.SEEK_END)
        self._stderr.seek(max(0, self._stderr.tell() - _STDERR_TAIL))
        return self._stderr.read().decode("utf-8", "replace").strip()

    def _obituary(self) -> AdapterCrashed:
        """The worker closed its stdout: wait for it to end, and say how it did."""
        try:
            code = self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # closed stdout but lingers: not a usable worker
            self.kill()
            code = -signals.SIGKILL
        tail = self._stderr_tail()
        self.close()
        if code < 0:
            try:
                sig: str | int = signals.Signals(-code).name
            except ValueError:
                sig = f"signal {-code}"
            what = f"worker died of {sig}"
        else:
            sig, what = code, f"worker exited with code {code}"
        if self.memory_limit and _MEMORY_HINTS.search(tail):
            return AdapterCrashed(f"exceeded the memory limit of {gib(self.memory_limit)} ({what})", sig, tail,
                                  memory_limit=self.memory_limit)
        return AdapterCrashed(what, sig, tail)

    def kill(self) -> None:
        """Kill the worker and whatever it started (SIGKILL to its process group), and forget it."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signals.SIGKILL)
            except (ProcessLookupError, PermissionError):
                proc.kill()
            proc.wait()
        self.close()

    def _hang_up(self) -> None:
        """Close the worker's stdin: it exits once it has answered what it was asked."""
        if self._proc is not None and self._proc.stdin is not None:
            try:
                self._proc.stdin.close()
            except OSError:
                pass

    def close(self) -> None:
        """Stop the worker (closing its stdin ends it; killed if it has not ended within 10 s) and
        forget it."""
        proc, self._proc = self._proc, None
        if proc is not None:
            for stream in (proc.stdin, proc.stdout):
                try:
                    stream.close()
                except OSError:
                    pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signals.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    proc.kill()
                proc.wait()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


class WorkerAdapter(Adapter):
    """An adapter whose every call is served by a worker running the in-process adapter ``target``.

    ``requires``: top-level packages that must be installed; when one is not, the adapter is
    unavailable without starting anything (looked up with importlib.util.find_spec, not imported).
    ``apis`` brings the case's contracts back with it (one request, not one per API); ``repro`` is
    written in the worker too. An unavailable adapter's worker is stopped.
    """

    target: str = ""
    env: dict[str, str] = {}
    requires: tuple[str, ...] = ()

    def __init__(self):
        self.worker = WorkerClient(self.target, self.env)
        # id(case) -> [case, key, the worker start it was sent to, {api: Contract} or None]
        self._cases: collections.OrderedDict = collections.OrderedDict()
        self._keys = itertools.count()

    def available(self) -> tuple[bool, str]:
        missing = [m for m in self.requires if importlib.util.find_spec(m) is None]
        if missing:
            return False, f"not installed: {', '.join(missing)}"
        try:
            ok, detail = self.worker.request("available")
        except WorkerError as e:
            self.worker.close()
            return False, f"{type(e).__name__}: {e}"
        except AdapterTimeout as e:
            self.worker.close()
            return False, str(e)
        except AdapterCrashed as e:
            self.worker.close()
            where = self.target + (f" {self.env}" if self.env else "")
            return False, f"{e} ({where})" + (f"; stderr ends:\n{e.stderr}" if e.stderr else "")
        if not ok:
            self.worker.close()
        return bool(ok), detail

    def _entry(self, case) -> list:
        entry = self._cases.get(id(case))
        if entry is None or entry[0] is not case:
            entry = self._cases[id(case)] = [case, next(self._keys), None, None]
            while len(self._cases) > _SENT_CASES:
                self._cases.popitem(last=False)
        else:
            self._cases.move_to_end(id(case))
        return entry

    def _ask(self, op: str, case, **fields):
        """A request about ``case``: sent whole the first time this worker process sees it."""
        entry = self._entry(case)
        if entry[2] is not None and entry[2] == self.worker.starts and self.worker.alive:
            try:
                return self.worker.request(op, key=entry[1], **fields)
            except WorkerError as e:
                if e.type_name.rpartition(".")[2] != "_UnknownCase":
                    raise  # else the worker let it go: sent whole below
        result = self.worker.request(op, case_pickle=_pickled(case), key=entry[1], **fields)
        entry[2] = self.worker.starts
        return result

    def apis(self, case) -> list[str]:
        plan = self._ask("plan", case)
        self._entry(case)[3] = {api: None if c is None else Contract(**c) for api, c in plan["contracts"].items()}
        return plan["apis"]

    def contract(self, case, api: str) -> Contract | None:
        known = self._entry(case)[3] or {}
        if api in known:
            return known[api]
        c = self._ask("contract", case, api=api)
        return None if c is None else Contract(**c)

    def evaluate(self, case, api: str, grads: bool = True) -> Output:
        r = self._ask("evaluate", case, api=api, grads=grads)
        return Output(decode_array(r["value"]), {k: decode_array(v) for k, v in r["grads"].items()})

    def repro(self, case, api: str) -> str | None:
        return self._ask("repro", case, api=api)

    def close(self) -> None:
        """Stop the worker (the next call starts a new one)."""
        self.worker.close()


class IsolatedAdapter(WorkerAdapter):
    """The registered in-process adapter class ``target`` ("module:Class"), served by a worker.

    Its name, description, ``control`` and ``slow`` are the class's own (read from the class: its
    module imports no framework); everything else, ``available`` included, runs in the worker.
    """

    def __init__(self, target: str, cls: type[Adapter]):
        self.target = target
        self.name, self.description = cls.name, cls.description
        self.control, self.slow = cls.control, cls.slow
        super().__init__()

    def __repr__(self) -> str:
        return f"IsolatedAdapter({self.name!r}, worker pid {self.worker.pid})"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m adapters._worker MODULE:CLASS")
    serve(sys.argv[1])
