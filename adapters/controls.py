"""Controls that crash, hang and leak: the project's numpy reference, except on chosen inputs.

They show that a run survives an implementation that takes its process down: each is served by a
worker process (``adapters._worker``), and on its trigger the case gets the verdict ``crash`` (the
signal, or the memory limit, in the message) or ``timeout``, after which a new worker answers the
next case. Not in a plain ``xent run`` (``adapters.OPT_IN``): ``xent run --adapters crashy,hang,leak``.

The trigger is an extreme input, which the generated cases' ``extreme_logits`` regime draws
often: a value of the main input (``logits``, ``probs`` or ``inputs``) of magnitude 1e4 or more.

- ``crashy``: a real segmentation fault (it reads address 0) on a finite one; ``abort()``
  (SIGABRT) on an infinite one.
- ``hang``: sleeps forever on either.
- ``leak``: allocates 64 MiB blocks, touched and kept, until the worker's memory limit stops it
  (an allocation fails, or the parent's watchdog kills it); it refuses in a worker with no limit.

Everything else is answered by the numpy reference, bit for bit.
"""
from __future__ import annotations

import ctypes
import os
import time

import numpy as np

from cases import Case

from ._worker import WorkerAdapter
from .numpy_ref import NumpyAdapter

TRIGGER = 1e4  # |x| >= TRIGGER in the main input sets a control off


def extremes(case: Case) -> np.ndarray:
    """The values of the case's main input with |x| >= TRIGGER (infinities included)."""
    for name in ("logits", "probs", "inputs"):
        if name in case.inputs:
            with np.errstate(invalid="ignore"):
                a = np.asarray(case[name], dtype=np.float64).ravel()
            return a[np.abs(a) >= TRIGGER]
    return np.empty(0)


# -- what the workers run ---------------------------------------------------------------------------

class _Crashy(NumpyAdapter):
    def evaluate(self, case: Case, api: str, grads: bool = True):
        hit = extremes(case)
        if np.isinf(hit).any():
            os.abort()
        if hit.size:
            ctypes.string_at(0)  # reads address 0: SIGSEGV
        return super().evaluate(case, api, grads)


class _Hang(NumpyAdapter):
    def evaluate(self, case: Case, api: str, grads: bool = True):
        while extremes(case).size:
            time.sleep(3600)
        return super().evaluate(case, api, grads)


_HOARD: list[bytes] = []


class _Leak(NumpyAdapter):
    def evaluate(self, case: Case, api: str, grads: bool = True):
        if extremes(case).size:
            if not int(os.environ.get("_XENT_WORKER_MEMORY_LIMIT", "0") or 0):  # set by the worker's parent
                raise RuntimeError("the leak control allocates until a memory limit stops it, and this "
                                   "process has none (XENT_WORKER_MEMORY_GB=0?)")
            while True:
                _HOARD.append(b"\x01" * (64 << 20))  # filled: resident, not just reserved
        return super().evaluate(case, api, grads)


# -- the registered adapters ------------------------------------------------------------------------

class _Control(WorkerAdapter):
    control = True

    def repro(self, case: Case, api: str) -> str | None:
        return None  # what they do on a trigger is no framework's behaviour


class CrashyAdapter(_Control):
    name = "crashy"
    description = (f"control: the numpy reference, but dies of SIGSEGV on a finite input of magnitude >= {TRIGGER:g} "
                   "and of SIGABRT on an infinite one (in a worker)")
    target = "adapters.controls:_Crashy"


class HangAdapter(_Control):
    name = "hang"
    description = (f"control: the numpy reference, but never answers on an input of magnitude >= {TRIGGER:g} "
                   "(in a worker)")
    target = "adapters.controls:_Hang"


class LeakAdapter(_Control):
    name = "leak"
    description = (f"control: the numpy reference, but allocates until the memory limit on an input of magnitude "
                   f">= {TRIGGER:g} (in a worker)")
    target = "adapters.controls:_Leak"
