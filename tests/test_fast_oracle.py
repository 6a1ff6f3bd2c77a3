"""The fast oracle path: its error bounds hold, it agrees with the slow certified path, and the
cross-check would catch a misrounding.

Expected values come from mpmath at 300 bits (the bound tests) and from the slow certified path
(``oracle.evaluate_slow``, Arb with precision escalation), never from the code under test.
"""
from __future__ import annotations

import ml_dtypes
import mpmath
import numpy as np
import pytest

from cases import Case
from oracle import crosscheck, evaluate, evaluate_slow, fast, fastmath as F


def _rel_err(approx_hi, approx_lo, truth):
    a = mpmath.mpf(float(approx_hi)) + mpmath.mpf(float(approx_lo))
    return abs(a - truth)


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(20261121)


def test_float64_tier_bounds_hold(rng):
    """exp_neg and log1p_unit stay within EXP_REL and LOG1P_REL of the truth."""
    y = -np.concatenate([rng.uniform(0, 700, 1500), rng.exponential(1, 1500), 10.0 ** rng.uniform(-300, 0, 500),
                         [0.0, 5e-324, 700.0, 0.34657359027997264, np.log(2) / 128]])
    t = F.exp_neg(y)
    with mpmath.workprec(300):
        for yi, ti in zip(y, t):
            tr = mpmath.exp(mpmath.mpf(yi))
            assert _rel_err(ti, 0.0, tr) <= F.EXP_REL * tr, yi
    u = np.concatenate([rng.uniform(0, 1, 1500), 10.0 ** rng.uniform(-300, 0, 1500),
                        [0.0, 1.0, 1 / 128, 127 / 128, 1 - 2 ** -53, 5e-324]])
    L = F.log1p_unit(u)
    with mpmath.workprec(300):
        for ui, li in zip(u, L):
            tr = mpmath.log1p(mpmath.mpf(ui))
            assert _rel_err(li, 0.0, tr) <= F.LOG1P_REL * tr + F.TINY, ui


def test_double_double_tier_bounds_hold(rng):
    """exp_dd within EXPDD_REL (+ 2**-1074), log1p_dd within LOG1PDD_REL (+ 64 * 2**-1074)."""
    yh = -np.concatenate([rng.uniform(0, 745, 1000), rng.exponential(1, 1000), 10.0 ** rng.uniform(-300, 0, 400),
                          [0.0, 708.0, 744.9, 634.0]])
    yl = yh * 2.0 ** -60 * rng.uniform(-1, 1, yh.size)
    oh, ol = F.exp_dd(yh, yl)
    with mpmath.workprec(300):
        for a, b, c, d in zip(yh, yl, oh, ol):
            tr = mpmath.exp(mpmath.mpf(a) + mpmath.mpf(b))
            assert _rel_err(c, d, tr) <= F.EXPDD_REL * tr + F.TINY, (a, b)
    th = np.concatenate([rng.uniform(0, 1, 1000), 10.0 ** rng.uniform(-300, 5, 1000), [1.0, 1 / 256, 2.0, 1e300]])
    tl = th * 2.0 ** -60 * rng.uniform(-1, 1, th.size)
    oh, ol = F.log1p_dd(th, tl)
    with mpmath.workprec(300):
        for a, b, c, d in zip(th, tl, oh, ol):
            tr = mpmath.log1p(mpmath.mpf(a) + mpmath.mpf(b))
            assert _rel_err(c, d, tr) <= F.LOG1PDD_REL * tr + 64 * F.TINY, (a, b)


def test_round_check_against_exact_rounding(rng):
    """round_check's decided values are the correct roundings of every point of the interval:
    checked against mpmath's rounding of both ends, for values straddling midpoints."""
    from cases.dtypes import fmt
    from oracle.rounding import round_fraction
    from fractions import Fraction

    for dtype in ("float16", "bfloat16", "float32", "float64"):
        f = fmt(dtype)
        R = np.abs(crosscheck.ordinary_logits(rng, 400, dtype).astype(np.float64))
        R = R[np.isfinite(R)]
        q = np.spacing(R.astype(f.np_dtype)).astype(np.float64) if dtype != "bfloat16" else \
            np.ldexp(1.0, np.maximum(np.frexp(R)[1] - 1, f.emin) - 7)
        R, q = R[np.isfinite(q)], q[np.isfinite(q)]
        hi = R + q * rng.choice([0.5, 0.49, 0.51, 0.25, 0.0], R.size)
        lo = np.zeros_like(hi)
        err = q * rng.choice([0.0, 1e-3, 0.02, 0.3], R.size)
        val, ok = fast.round_check(hi, lo, err, f)
        for h, e, v, o in zip(hi, err, val, ok):
            if not o:
                continue
            ends = [round_fraction(Fraction(h) - Fraction(e), f), round_fraction(Fraction(h) + Fraction(e), f)]
            assert ends[0] == ends[1] == v, (dtype, h, e, v, ends)
        assert ok.mean() > 0.3  # the test exercises decided cases, not only refusals


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32", "float64"])
def test_cross_check_zero_mismatches(dtype):
    """A small version of `benchmarks/oracle_speed.py --cross-check`: random and adversarial
    inputs (near rounding boundaries, extremes, cancellation, dominant logits) through both
    paths; values, undefined and undecided flags must agree bit for bit."""
    total, per = crosscheck.run(600, 40, seed=11, dtypes=(dtype,), classes=(2, 7, 64), boundary_pool=6000)
    assert total.inputs > 2000 and total.elements > 3000
    assert not total.mismatches, total.mismatches[:5]
    assert total.sens_off <= total.elements // 1000, total.sens_off
    assert "near boundaries" in per and per["near boundaries"].elements > 0


def test_fast_path_is_actually_taken():
    """An ordinary float32 batch is settled by the fast path (few or no fallbacks)."""
    rng = np.random.default_rng(3)
    x = rng.normal(0, 4, 5000).astype(np.float32)
    r = fast.elementwise("sigmoid_bce_logits", "float32", x, 1.0)
    assert r.fallbacks <= 5
    assert set(np.unique(r.prec)) <= {53, 64, 128, 256}


def test_the_cross_check_catches_a_misrounding(monkeypatch):
    """Make the float64 tier's exp wrong by 2**-30 relative (far beyond its claimed 16u, far
    below a float32 ulp): a claimed bound that is too small must show up as mismatches, found by
    the near-boundary family even if random inputs miss it."""
    real = F.exp_neg
    monkeypatch.setattr(F, "exp_neg", lambda y: real(y) * (1 + 2.0 ** -30))
    total, per = crosscheck.run(600, 1, seed=11, dtypes=("float32",), classes=(2,), boundary_pool=20000)
    assert per["near boundaries"].mismatches, "a 2**-30 error in exp went unnoticed"


def test_evaluate_routes_and_matches_slow_path_on_shapes():
    """oracle.evaluate takes the fast path for eligible cases of any shape and class axis, and
    gives the slow path's answer."""
    rng = np.random.default_rng(5)
    X = rng.normal(0, 3, (3, 4, 5)).astype(np.float32)
    cases = [
        Case("softmax_ce_sparse", "float32", {"logits": X, "labels": rng.integers(0, 4, (3, 5))},
             {"reduction": "none", "axis": 1}),
        Case("softmax_ce_dense", "float64", {"logits": X.astype(np.float64),
                                             "labels": rng.dirichlet(np.ones(5), (3, 4))}, {"reduction": "none"}),
        Case("sigmoid_bce_logits", "bfloat16", {"logits": X.astype(ml_dtypes.bfloat16).reshape(6, 10),
                                                "labels": (rng.random((6, 10)) < 0.5).astype(np.float64)},
             {"reduction": "none"}),
    ]
    for case in cases:
        assert fast.eligible(case)
        a, b = evaluate(case), evaluate_slow(case)
        assert a.status == b.status == "ok"
        assert a.value.value.shape == b.value.value.shape
        assert np.array_equal(a.value.value.astype(np.float64), b.value.value.astype(np.float64))
        for k in b.grads:
            assert np.array_equal(a.grads[k].value.astype(np.float64), b.grads[k].value.astype(np.float64)), k


def test_ineligible_cases_use_the_slow_path():
    x = np.array([1.0, -2.0], dtype=np.float32)
    assert not fast.eligible(Case("sigmoid_bce_logits", "float32", {"logits": x, "labels": x * 0},
                                  {"reduction": "mean"}))
    assert not fast.eligible(Case("sigmoid_bce_logits", "float32", {"logits": x, "labels": x * 0 + 2},
                                  {"reduction": "none"}))  # invalid labels: the slow path says why
    r = evaluate(Case("sigmoid_bce_logits", "float32", {"logits": x, "labels": x * 0 + 2}, {"reduction": "none"}))
    assert r.status == "invalid" and "labels" in r.reason


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_signalling_nan_logits_are_answered_without_a_warning(dtype, recwarn):
    """Widening a signalling NaN raises IEEE invalid, which numpy reports as a RuntimeWarning on
    every `xent run` that draws one; the fast path answers it (undefined, as the slow path says)
    and stays quiet."""
    f = {"float32": (np.uint32, 0x7F800001, np.float32), "bfloat16": (np.uint16, 0x7F81, ml_dtypes.bfloat16)}
    uint, snan, np_dtype = f[dtype]
    x = np.array([snan, 0], dtype=uint).view(np_dtype)
    cases = [Case("sigmoid_bce_logits", dtype, {"logits": x, "labels": np.zeros(2, dtype=np_dtype)},
                  {"reduction": "none"}),
             Case("softmax_ce_sparse", dtype, {"logits": x.reshape(1, 2), "labels": np.array([1])},
                  {"reduction": "none"})]
    for case in cases:
        assert fast.eligible(case)
        a, b = evaluate(case), evaluate_slow(case)
        assert a.value.undefined.tolist() == b.value.undefined.tolist() and a.value.undefined.reshape(-1)[0]
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)], [str(w.message) for w in recwarn]
