"""Adapters with chosen misbehaviours, for tests/test_sweep.py (loaded as ``MODULE:ATTRIBUTE``
targets, so the sweep's worker processes can load them too).

Each is the numpy reference except where said.
"""
from __future__ import annotations

import os

import numpy as np

from adapters.numpy_ref import NumpyAdapter

HUGE = 1000.0  # RaiseOnHuge raises on |x| > HUGE
ABORT = 1e4  # AbortOnHuge kills its process on |x| >= ABORT


def _main(case) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.asarray(case.get("logits", case.get("probs")), dtype=np.float64)


class RaiseOnHuge(NumpyAdapter):
    """Raises ValueError when any logit has |x| > 1000 or is NaN."""

    name = "raise-on-huge"

    def evaluate(self, case, api, grads=True):
        x = _main(case)
        if np.any(np.abs(x) > HUGE) or np.any(np.isnan(x)):
            raise ValueError("refuses |x| > 1000 and NaN")
        return super().evaluate(case, api, grads)


class Float32Out(NumpyAdapter):
    """Returns float32 arrays whatever the case's dtype (a dtype surprise), the values right."""

    name = "float32-out"

    def evaluate(self, case, api, grads=True):
        out = super().evaluate(case, api, grads)
        with np.errstate(invalid="ignore"):
            out.value = np.asarray(out.value).astype(np.float32)
            out.grads = {k: np.asarray(v).astype(np.float32) for k, v in out.grads.items()}
        return out


class AbortOnHuge(NumpyAdapter):
    """Kills its own process (SIGABRT) on |x| >= 1e4: in the sweep's chunk worker, in-process."""

    name = "abort-on-huge"

    def evaluate(self, case, api, grads=True):
        if np.any(np.abs(_main(case)) >= ABORT):
            os.abort()
        return super().evaluate(case, api, grads)
