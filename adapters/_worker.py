"""A persistent subprocess that serves one in-process adapter, and the parent's side of it.

Some frameworks must live in a process of their own: Keras fixes its backend when it is imported,
and importing TensorFlow into the engine's process takes seconds. ``python -m adapters._worker
MODULE:CLASS`` imports the adapter class once, in the environment its parent chose, and answers
one JSON request per line on stdin with one JSON response per line on stdout:

    {"op": "available"}                                -> {"result": [ok, detail]}
    {"op": "apis", "case": case.to_dict()}             -> {"result": [api, ...]}
    {"op": "contract", "case": ..., "api": ...}        -> {"result": null or {name, url, summary, params}}
    {"op": "evaluate", "case": ..., "api": ..., "grads": bool}
                                                       -> {"result": {"value": ARRAY, "grads": {input: ARRAY}}}
    a request the adapter (or the framework) raised on -> {"error": {"type", "message", "traceback"}}

An ARRAY is ``{"dtype": numpy dtype name, "shape": [...], "data": base64 of its little-endian
C-order bytes}``, so it comes back bit for bit (bfloat16, NaN payloads and -0.0 included).
Frameworks print to stdout; the worker points fd 1 at stderr before importing anything and writes
protocol lines to a duplicate of the original fd 1, so stdout carries protocol lines only.
"""
from __future__ import annotations

import base64
import importlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

import numpy as np

from cases import Case

from .base import Adapter, Contract, Output

_ROOT = Path(__file__).resolve().parents[1]  # the directory that holds the adapters package
_STDERR_TAIL = 2000  # characters of a dead worker's stderr quoted in the error


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


# -- the worker -------------------------------------------------------------------------------------

def _handle(adapter: Adapter, request: dict):
    op = request.get("op")
    if op == "available":
        return list(adapter.available())
    case = Case.from_dict(request["case"])
    if op == "apis":
        return list(adapter.apis(case))
    if op == "contract":
        c = adapter.contract(case, request["api"])
        return None if c is None else {"name": c.name, "url": c.url, "summary": c.summary, "params": c.params}
    if op == "evaluate":
        out = adapter.evaluate(case, request["api"], grads=bool(request.get("grads", True)))
        return {"value": encode_array(out.value), "grads": {k: encode_array(v) for k, v in out.grads.items()}}
    raise ValueError(f"unknown op {op!r}")


def _error(e: BaseException) -> dict:
    t = type(e)
    return {"error": {"type": t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}",
                      "message": str(e), "traceback": traceback.format_exc()}}


def serve(target: str) -> None:
    """Answer requests for the adapter class ``target`` ("module:Class") until stdin closes."""
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # whatever a framework prints from here on goes to stderr
    try:
        module, cls = target.split(":")
        adapter, failure = getattr(importlib.import_module(module), cls)(), None
    except Exception as e:  # answered to every request, so the parent can say why
        adapter, failure = None, _error(e)
    for line in sys.stdin:
        try:
            response = json.dumps(failure or {"result": _handle(adapter, json.loads(line))})
        except Exception as e:
            response = json.dumps(_error(e))
        protocol.write(response + "\n")
        protocol.flush()


# -- the parent's side ------------------------------------------------------------------------------

class WorkerError(Exception):
    """An exception raised inside the worker: ``str()`` is "Type: message" of the original."""

    def __init__(self, type_name: str, message: str, remote_traceback: str = ""):
        super().__init__(f"{type_name.rpartition('.')[2]}: {message}")
        self.type_name, self.message, self.remote_traceback = type_name, message, remote_traceback


class WorkerDied(Exception):
    """The worker process ended (or closed its stdout) before it answered."""


class WorkerClient:
    """A worker for ``target`` ("module:Class") with ``env`` added to this process's environment.

    Started by the first request; a worker found dead is restarted by the next one. Its stderr goes
    to a temporary file whose tail is quoted when it dies.
    """

    def __init__(self, target: str, env: dict[str, str] | None = None):
        self.target, self.env = target, dict(env or {})
        self._proc: subprocess.Popen | None = None
        self._stderr = None

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
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_ROOT), env.get("PYTHONPATH")) if p)
        self._stderr = tempfile.TemporaryFile()
        self._proc = subprocess.Popen([sys.executable, "-m", "adapters._worker", self.target], env=env,
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                                      text=True, encoding="utf-8")

    def request(self, op: str, **fields):
        """The worker's result for one request; raises WorkerError or WorkerDied."""
        self.start()
        proc = self._proc
        try:
            proc.stdin.write(json.dumps({"op": op, **fields}) + "\n")
            proc.stdin.flush()
            line = proc.stdout.readline()
        except (BrokenPipeError, OSError):
            line = ""
        if not line:
            raise WorkerDied(self._obituary())
        response = json.loads(line)
        if "error" in response:
            err = response["error"]
            raise WorkerError(err["type"], err["message"], err.get("traceback", ""))
        return response["result"]

    def _obituary(self) -> str:
        try:
            code = self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # closed stdout but lingers: not a usable worker
            self._proc.kill()
            code = self._proc.wait()
        self._stderr.seek(0, os.SEEK_END)
        self._stderr.seek(max(0, self._stderr.tell() - _STDERR_TAIL))
        tail = self._stderr.read().decode("utf-8", "replace").strip()
        self.close()
        return f"worker {self.target} {self.env} exited with code {code}" + (f"; stderr ends:\n{tail}" if tail else "")

    def close(self) -> None:
        """Stop the worker (closing its stdin ends it) and forget it."""
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
                proc.kill()
                proc.wait()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


class WorkerAdapter(Adapter):
    """An adapter whose every call is served by a worker running the in-process adapter ``target``.

    ``requires``: top-level packages that must be installed; when one is not, the adapter is
    unavailable without starting anything (looked up with importlib.util.find_spec, not imported).
    """

    target: str = ""
    env: dict[str, str] = {}
    requires: tuple[str, ...] = ()

    def __init__(self):
        self.worker = WorkerClient(self.target, self.env)

    def available(self) -> tuple[bool, str]:
        missing = [m for m in self.requires if importlib.util.find_spec(m) is None]
        if missing:
            return False, f"not installed: {', '.join(missing)}"
        try:
            ok, detail = self.worker.request("available")
        except (WorkerError, WorkerDied) as e:
            return False, str(e)
        return bool(ok), detail

    def apis(self, case) -> list[str]:
        return self.worker.request("apis", case=case.to_dict())

    def contract(self, case, api: str) -> Contract | None:
        c = self.worker.request("contract", case=case.to_dict(), api=api)
        return None if c is None else Contract(**c)

    def evaluate(self, case, api: str, grads: bool = True) -> Output:
        r = self.worker.request("evaluate", case=case.to_dict(), api=api, grads=grads)
        return Output(decode_array(r["value"]), {k: decode_array(v) for k, v in r["grads"].items()})


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m adapters._worker MODULE:CLASS")
    serve(sys.argv[1])
