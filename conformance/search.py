"""Targeted search for one cell (adapter, API, variant, dtype) with hypothesis.

The cell's own hypothesis run draws cases from every input regime of the variant
(``cases.strategies.cases_for``), keeps those the API can express (``assume``), judges each
against the oracle, and reports the error to ``hypothesis.target``: after its generate phase,
hypothesis mutates the cases that scored highest, so the search climbs towards the worst input
of *this* implementation. The score is the case's worst error in bits (log2(1 + ulp)); an answer
with no meaningful number (NaN, raised, overflow, a value for an invalid input...) scores above
any finite error, more severe verdicts higher.

Every judged case is handed to ``record``; the test never fails, so hypothesis never shrinks
(xent shrinks divergences in the case domain instead, ``conformance.shrink``). No example database
is read or written: a run is a function of its seed, and the cases worth keeping are stored by
case_id in the project's case store (``conformance.store``).
"""
from __future__ import annotations

import hashlib
import math

import hypothesis
from hypothesis import HealthCheck, Phase, settings

from .verdict import RANK, SEVERITY

_NUMERIC = ("wrong-sign", "underflow", "inaccurate", "dtype", "contract", "conforms")


def cell_seed(seed: int, adapter: str, api: str, variant: str, dtype: str) -> int:
    """A seed per cell, so cells of one variant and dtype explore different inputs."""
    text = f"{seed}/{adapter}/{api}/{variant}/{dtype}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def score(cv) -> float:
    """What the search maximises for one judged case."""
    if cv.verdict in _NUMERIC:
        return 0.0 if cv.max_ulp is None else math.log2(1.0 + min(cv.max_ulp, 2.0 ** 1000))
    return 128.0 + (len(SEVERITY) - RANK[cv.verdict])


def search_cell(adapter, api: str, variant: str, dtype: str, examples: int, seed: int, judge, record) -> int:
    """Run ``examples`` judged cases of the cell; ``judge(case) -> (truth, cv) | None`` (None: the
    oracle failed on it), ``record(case, truth, cv)`` for each. Returns the number judged."""
    from cases.strategies import _register_backend, cases_for

    if examples <= 0:
        return 0
    judged = [0]

    @hypothesis.seed(cell_seed(seed, adapter.name, api, variant, dtype))
    @settings(max_examples=examples, database=None, phases=[Phase.generate, Phase.target], deadline=None,
              suppress_health_check=list(HealthCheck), derandomize=False, backend=_register_backend(),
              report_multiple_bugs=False)
    @hypothesis.given(cases_for(variant, dtype))
    def cell(case):
        hypothesis.assume(api in adapter.apis(case))
        got = judge(case)
        hypothesis.assume(got is not None)
        truth, cv = got
        judged[0] += 1
        record(case, truth, cv)
        hypothesis.target(score(cv), label="error")

    cell()
    return judged[0]
