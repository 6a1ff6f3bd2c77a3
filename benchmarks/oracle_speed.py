"""The certified oracle's speed against a naive fixed-precision mpmath loop, on the same inputs.

    python benchmarks/oracle_speed.py                   # the benchmark (about two minutes)
    python benchmarks/oracle_speed.py --cross-check 1000000   # plus fast vs slow on 1e6 inputs

For each measurement both sides get the same inputs: the certified oracle (``oracle.evaluate``,
fast path with its fallbacks; the best of three runs, the first pays numpy's warm-up) on all
``--n`` of them, the naive loop once on the first ``--naive-n`` (it is too slow for more; its
throughput is per element either way). The naive loop is what one
writes without certification: mpmath at a fixed working precision (the dtype's precision + 32
bits, the slow certifier's starting precision), the textbook formulas, one float() per result,
no error bound. Ratios are certified throughput over naive throughput, measured in this run.

Sigmoid cross-entropy: logits drawn as in ``oracle.crosscheck.ordinary_logits`` (normal, uniform
in [-120, 120], log-uniform magnitudes up to 1e30: ordinary and extreme), labels 0 or 1, value
and both gradients. Softmax cross-entropy with integer labels: rows of normal(0, 3) logits with
10, 1,000 and 50,000 classes, value and gradient.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import mpmath  # noqa: E402

from cases import Case  # noqa: E402
from cases.dtypes import fmt  # noqa: E402
from oracle import crosscheck, evaluate  # noqa: E402
from oracle.fast import elementwise  # noqa: E402


def naive_sigmoid(x, z, prec):
    mpmath.mp.prec = prec
    out = []
    for xi, zi in zip(x.tolist(), z.tolist()):
        if not np.isfinite(xi):
            out.append((float("nan"), float("nan"), -xi))
            continue
        X, Z = mpmath.mpf(xi), mpmath.mpf(zi)
        loss = max(X, 0) - X * Z + mpmath.log1p(mpmath.exp(-abs(X)))
        sig = 1 / (1 + mpmath.exp(-X))
        out.append((float(loss), float(sig - Z), -xi))
    return out


def naive_rows(X, y, prec):
    mpmath.mp.prec = prec
    out = []
    for row, label in zip(X.tolist(), y.tolist()):
        xs = [mpmath.mpf(v) for v in row]
        m = max(xs)
        es = [mpmath.exp(v - m) for v in xs]
        s = mpmath.fsum(es)
        lse = m + mpmath.log(s)
        loss = lse - xs[label]
        grad = [float(e / s - (1 if c == label else 0)) for c, e in enumerate(es)]
        out.append((float(loss), grad))
    return out


def timed(fn, *args, repeat: int = 1):
    """The best of ``repeat`` wall times, and the result."""
    best, r = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        r = fn(*args)
        best = min(best, time.perf_counter() - t0)
    return best, r


def bench_sigmoid(dtype, n, naive_n, rng):
    f = fmt(dtype)
    x = crosscheck.ordinary_logits(rng, n, dtype)
    z = (rng.random(n) < 0.5).astype(f.np_dtype)
    t_fast, r = timed(elementwise, "sigmoid_bce_logits", dtype, x, z, repeat=3)
    k = min(naive_n, n)
    t_naive, _ = timed(naive_sigmoid, x[:k].astype(np.float64), z[:k].astype(np.float64), f.precision + 32)
    return n / t_fast, k / t_naive, r.fallbacks, n


def bench_rows(dtype, classes, rows, naive_rows_n, rng):
    f = fmt(dtype)
    X = rng.normal(0, 3, (rows, classes)).astype(f.np_dtype)
    y = rng.integers(0, classes, rows)
    case = Case("softmax_ce_sparse", dtype, {"logits": X, "labels": y}, {"reduction": "none"})
    t_fast, r = timed(evaluate, case, repeat=3)
    k = min(naive_rows_n, rows)
    t_naive, _ = timed(naive_rows, X[:k].astype(np.float64), y[:k], f.precision + 32)
    return rows / t_fast, k / t_naive, getattr(r, "fallbacks", 0), rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000, help="sigmoid elements per dtype (default 1e6)")
    ap.add_argument("--naive-n", type=int, default=20_000, help="elements the naive loop gets (default 2e4)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cross-check", type=int, default=0, metavar="N",
                    help="also compare fast and slow paths on about N inputs (random and adversarial)")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    print(f"mpmath backend: {mpmath.libmp.BACKEND}; numpy {np.__version__}")
    print(f"{'what':44} {'certified/s':>13} {'naive/s':>10} {'ratio':>8} {'fallbacks':>10}")

    def line(what, fast, naive, fb, n, unit):
        print(f"{what:44} {fast:13,.0f} {naive:10,.0f} {fast / naive:7.0f}x {fb:>10,} of {n:,} {unit}", flush=True)

    for dtype in ("float32", "float16", "bfloat16", "float64"):
        fast, naive, fb, n = bench_sigmoid(dtype, args.n, args.naive_n, rng)
        line(f"sigmoid CE {dtype}, value + 2 gradients", fast, naive, fb, n, "elements")
    for dtype in ("float32", "float64"):
        for classes, rows, nr in ((10, 20_000, 2_000), (1_000, 400, 40), (50_000, 8, 2)):
            fast, naive, fb, n = bench_rows(dtype, classes, rows, nr, rng)
            line(f"softmax CE {classes:,} classes {dtype}, value + grad", fast, naive, fb, n, "rows")
    if args.cross_check:
        n_sig = args.cross_check // 8  # per dtype: sigmoid and rows share the budget
        n_rows = max(1, args.cross_check // 8 // 40)
        print(f"\ncross-check, fast path against slow path, seed {args.seed}:", flush=True)
        t0 = time.perf_counter()
        total, per = crosscheck.run(n_sig, n_rows, seed=args.seed, classes=(2, 10, 100),
                                    boundary_pool=20 * n_sig // 4)
        print(f"{'family':28} {'inputs':>10} {'outputs':>10} {'fallbacks':>10} {'mismatches':>10} {'sens off':>9}")
        for fam, t in per.items():
            print(f"{fam:28} {t.inputs:10,} {t.elements:10,} {t.fallbacks:10,} {len(t.mismatches):10,} {t.sens_off:9,}")
        print(f"{'total':28} {total.inputs:10,} {total.elements:10,} {total.fallbacks:10,} "
              f"{len(total.mismatches):10,} {total.sens_off:9,}   ({time.perf_counter() - t0:.0f} s)")
        for m in total.mismatches[:20]:
            print("MISMATCH", *m)
        return 1 if total.mismatches else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
