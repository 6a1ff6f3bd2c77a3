"""The suite proves it can fail: each control's flaw gets the verdict class it deserves.

Each case is chosen where the textbook formula is known to break (the seeds' -810 example, a
saturated sigmoid, a log term below the resolution of 1 + t, logits beyond exp's range), and the
verdict comes from the whole engine: oracle, the control adapter, classification.
"""
import numpy as np
import pytest

import adapters
import oracle
from cases import Case
from conformance import runner


def sigmoid(dtype, x, z):
    f = np.dtype(dtype)
    return Case("sigmoid_bce_logits", dtype, {"logits": np.array(x, dtype=f), "labels": np.array(z, dtype=f)})


def sparse(dtype, x, y):
    return Case("softmax_ce_sparse", dtype, {"logits": np.array(x, dtype=np.dtype(dtype)), "labels": np.array(y)})


def value_verdict(api, case) -> str:
    """The verdict on the loss itself (a broken gradient may rank worse for the case as a whole)."""
    cv, _ = runner._judge(adapters.get("naive"), api, case, oracle.evaluate(case), {})
    return next(f.verdict for f in cv.findings if f.quantity == "value")


@pytest.mark.parametrize("api, case, expected", [
    # x = -810: exp(810) overflows, so the loss is inf where the truth is 810 (z = 1) — the seed's example
    ("seed_unstable", sigmoid("float64", [-810.0], [1.0]), "overflow"),
    # 1 - sigmoid(40) rounds to 0 and 0 * log(0) = nan for z = 1
    ("textbook", sigmoid("float64", [40.0], [1.0]), "nan"),
    # log(1 + exp(-20)) loses exp(-20) ~ 2e-9 below float32's resolution of 1 + t: 0 for a 2.06e-9 truth
    ("no_log1p", sigmoid("float32", [20.0], [1.0]), "underflow"),
    # in float64 it keeps ~7 of 16 digits: inaccurate by ~2**29 ulps
    ("no_log1p", sigmoid("float64", [20.0], [1.0]), "inaccurate"),
    # exp(1000) = inf, so log(sum(exp(x))) - x_y = inf where the truth is log1p(exp(-1000)) ~ 0
    ("no_max_shift", sparse("float64", [[1000.0, 0.0]], [0]), "overflow"),
])
def test_control_flaw_gets_its_verdict(api, case, expected):
    assert value_verdict(api, case) == expected


@pytest.mark.parametrize("api", ["textbook", "seed_unstable", "no_log1p"])
def test_control_conforms_where_its_formula_is_fine(api):
    assert value_verdict(api, sigmoid("float64", [0.5, -0.25], [1.0, 0.0])) == "conforms"


def test_numpy_reference_conforms_on_the_same_traps():
    numpy = adapters.get("numpy")
    for case in (sigmoid("float64", [-810.0, 40.0, 20.0], [1.0, 1.0, 1.0]), sigmoid("float32", [20.0], [1.0]),
                 sparse("float64", [[1000.0, 0.0]], [0])):
        cv, _ = runner._judge(numpy, "numpy", case, oracle.evaluate(case), {})
        assert cv.verdict == "conforms", (case, cv.worst)
