"""From a `Case` to units: domain checks, the class axis, label factors and the reduction's weights.

A `Problem` knows, for its case, how many units there are, how to evaluate unit ``i`` at the
backend's current precision, where each unit's outputs and partial derivatives land, and the
weights and normaliser of the reduction (docs/variants.md, "Reductions").
"""
from __future__ import annotations

import math
from fractions import Fraction as Q

import numpy as np

from cases import Case

from . import contracts
from . import units as U


class Invalid(Exception):
    """The case lies outside the variant's domain; the message is the reason."""


def _f64(arr: np.ndarray) -> np.ndarray:
    """The exact float64 values (a signalling NaN stays a NaN, without numpy's cast warning)."""
    with np.errstate(invalid="ignore"):
        return np.asarray(arr).astype(np.float64)


def _first_bad(arr: np.ndarray, bad: np.ndarray) -> str:
    idx = np.unravel_index(int(np.flatnonzero(bad)[0]), arr.shape) if arr.ndim else ()
    where = "[" + ",".join(map(str, idx)) + "]" if arr.ndim else ""
    return f"{where} = {float(arr[idx]) if arr.dtype.kind == 'f' else int(arr[idx])!r}"


def _check_unit_interval(case: Case, name: str) -> None:
    a = case.get(name)
    if a is None:
        return
    a64 = _f64(a)
    bad = ~((a64 >= 0) & (a64 <= 1))
    if bad.any():
        raise Invalid(f"{name} must lie in [0, 1]: {name}{_first_bad(a64, bad)}")


def _check_nonneg(case: Case, name: str) -> None:
    """Weights are finite and >= 0 (an infinite weight has no meaningful weighted mean)."""
    a = case.get(name)
    if a is None:
        return
    a64 = _f64(a)
    bad = ~((a64 >= 0) & np.isfinite(a64))
    if bad.any():
        raise Invalid(f"{name} must be finite and >= 0: {name}{_first_bad(a64, bad)}")


def _check_smoothing(case: Case) -> float:
    e = case.options.get("label_smoothing", 0.0)
    if not 0.0 <= e <= 1.0:
        raise Invalid(f"label_smoothing must lie in [0, 1], got {e!r}")
    return e


class Problem:
    """Base: subclasses set ``n_units``, ``unit_outputs``, ``value_shape`` and implement ``unit``."""

    reduction = "none"
    weights: list | None = None  # w_i per unit, or None (all 1)
    omega: list | None = None  # normaliser weights for weighted_mean, per unit: (w_i, cw_i), product exact
    ignored: frozenset = frozenset()
    has_cw = False

    def __init__(self, case: Case, contract: dict | None = None):
        self.case = case
        self.fmt = case.format
        self.contract = contract

    def unit(self, B, i: int, grads: bool) -> U.Unit:
        raise NotImplementedError

    def grad_position(self, name: str, i: int, k: int) -> int:
        """Flat index, in the gradient array's working layout, of unit i's k-th position."""
        raise NotImplementedError

    def grad_shapes(self) -> dict[str, tuple]:
        return {}

    def finish_grad(self, name: str, arr: np.ndarray) -> np.ndarray:
        return arr

    def finish_value(self, arr: np.ndarray) -> np.ndarray:
        return arr


# -- sigmoid / BCE elementwise ---------------------------------------------------------------------

class ElementwiseProblem(Problem):
    unit_outputs = 1

    def __init__(self, case: Case, contract: dict | None = None):
        super().__init__(case, contract)
        main = "probs" if case.spec.input("probs") else "logits"
        x = case[main]
        _check_unit_interval(case, "labels")
        if main == "probs":
            _check_unit_interval(case, "probs")
        _check_nonneg(case, "weights")
        _check_nonneg(case, "pos_weight")
        self.eps = _check_smoothing(case)
        self.main = main
        self.x = _f64(x).ravel().tolist()
        self.z = _f64(case["labels"]).ravel().tolist()
        q = case.get("pos_weight")
        self.q = None if q is None else np.broadcast_to(_f64(q), x.shape).ravel().tolist()
        w = case.get("weights")
        self.weights = None if w is None else _f64(w).ravel().tolist()
        self.n_units = len(self.x)
        self.value_shape = x.shape
        self.reduction = case.options["reduction"]

    def unit(self, B, i, grads):
        z = self.z[i]
        if self.main == "probs":
            u = U.bce_probs(B, self.x[i], z, self.eps, grads)
            if self.contract:  # the contract's value and derivatives; sensitivities stay the math's
                e = Q(self.eps)
                v, dp, dz = contracts.bce_probs(B, self.x[i], Q(z) * (1 - e) + e / 2, 1 - e, self.contract, grads)
                u.out = [v]
                if grads:
                    u.grads = {"probs": [dp], "labels": [dz]}
                if contracts.is_flat(B, self.x[i], self.contract):  # no allowance from the math's pole
                    u.out_sens = [0.0]
                    u.grad_sens = {k: [0.0] for k in u.grad_sens}
            return u
        q = 1.0 if self.q is None else self.q[i]
        return U.sigmoid_bce(B, self.x[i], Q(z), z not in (0.0, 1.0), q, self.eps, grads)

    def grad_position(self, name, i, k):
        return i

    def grad_shapes(self):
        return {n: self.value_shape for n in self.case.spec.grad_wrt}


# -- softmax family along an axis -------------------------------------------------------------------

class RowProblem(Problem):
    """softmax_ce_dense, softmax_ce_sparse, categorical_ce_probs, log_softmax, softmax."""

    def __init__(self, case: Case, contract: dict | None = None, nan_invalid_rows: bool = False):
        super().__init__(case, contract)
        self.nan_rows = frozenset()  # rows a contract makes NaN instead of the case invalid
        spec = case.spec
        self.kind = {"log_softmax": "log_softmax", "softmax": "softmax"}.get(case.variant, "ce")
        self.main = "probs" if spec.input("probs") else "logits"
        x = case[self.main]
        self.axis = case.class_axis
        moved = np.moveaxis(x, self.axis, -1)
        self.unit_shape = moved.shape[:-1]
        self.C = C = moved.shape[-1]
        if C == 0:
            raise Invalid("the class axis is empty: no class to take a softmax over")
        self.rows = _f64(moved.reshape(-1, C)).tolist()
        self.n_units = len(self.rows)
        self.reduction = case.options.get("reduction", "none")
        if self.kind != "ce":
            self.unit_outputs = C
            self.value_shape = x.shape
            return
        self.unit_outputs = 1
        self.value_shape = self.unit_shape
        if self.main == "probs":
            _check_unit_interval(case, "probs")
        _check_nonneg(case, "weights")
        _check_nonneg(case, "class_weights")
        self.eps = _check_smoothing(case)
        cw = case.get("class_weights")
        self.has_cw = cw is not None
        self.cw = [1.0] * C if cw is None else _f64(cw).tolist()
        w = case.get("weights")
        self.weights = None if w is None else _f64(w).ravel().tolist()
        self.sparse = case.variant == "softmax_ce_sparse"
        if self.sparse:
            labels = case["labels"].ravel()
            ii = case.options.get("ignore_index")
            ok = ((labels >= 0) & (labels < C)) | (labels == ii if ii is not None else False)
            if nan_invalid_rows:
                self.nan_rows = frozenset(int(i) for i in np.flatnonzero(~ok))
                ok = np.ones_like(ok)
            if not np.all(ok):
                raise Invalid(f"class ids must lie in [0, {C}) or equal ignore_index ({ii}): "
                              f"labels{_first_bad(case['labels'], ~ok.reshape(case['labels'].shape))}")
            self.ids = labels.tolist()
            self.ignored = frozenset(i for i, y in enumerate(self.ids) if ii is not None and y == ii)
            w_list = self.weights or [1.0] * self.n_units
            self.omega = [(0.0, 0.0) if i in self.ignored or i in self.nan_rows else (w_list[i], self.cw[y])
                          for i, y in enumerate(self.ids)]
        else:
            _check_unit_interval(case, "labels")
            self.ylab = _f64(np.moveaxis(case["labels"], self.axis, -1).reshape(-1, C)).tolist()

    def _label_row(self, i):
        if self.sparse:
            y = self.ids[i]
            return [1.0 if c == y else 0.0 for c in range(self.C)]
        return self.ylab[i]

    def _factors(self, y: list):
        """Exact a_c = cw_c y'_c with y' = y(1-e) + e/C, and (1-e) cw_c; None where exactly 0."""
        e, C = Q(self.eps), self.C
        a, scale = [], []
        for c in range(C):
            cw = Q(self.cw[c])
            ys = Q(y[c]) * (1 - e) + e / C
            a.append(None if cw * ys == 0 else cw * ys)
            scale.append(None if cw * (1 - e) == 0 else cw * (1 - e))
        return a, scale

    def unit(self, B, i, grads):
        row = self.rows[i]
        if i in self.nan_rows:
            return U.softmax_row(B, [math.nan] * self.C, [None] * self.C, "ce", grads)
        if self.kind != "ce":
            return U.softmax_row(B, row, [None] * self.C, self.kind, grads)
        y = self._label_row(i)
        a, scale = self._factors(y)
        soft = None if self.sparse else [v not in (0.0, 1.0) for v in y]
        if self.main == "probs":
            u = U.categorical_probs(B, row, a, grads, scale, soft, self.has_cw)
            if self.contract:  # the contract's value and derivatives; sensitivities stay the math's
                v, dp, dy = contracts.categorical(B, row, a, scale, self.contract, grads)
                u.out = [v]
                if grads:
                    u.grads = {"probs": dp, "labels": dy}
                if any(contracts.is_flat(B, p, self.contract) for p in row):  # see ElementwiseProblem
                    u.out_sens = [0.0]
                    u.grad_sens = {k: [0.0] * len(g) for k, g in u.grad_sens.items()}
            return u
        return U.softmax_row(B, row, a, "ce", grads, label_scale=None if self.sparse else scale,
                             label_soft=soft, has_cw=self.has_cw)

    def grad_position(self, name, i, k):
        return i * self.C + k

    def grad_shapes(self):
        shape = tuple(self.unit_shape) + (self.C,)
        names = [n for n in self.case.spec.grad_wrt]
        return {n: shape for n in names}

    def finish_grad(self, name, arr):
        return np.moveaxis(arr, -1, self.axis)

    def finish_value(self, arr):
        if self.kind == "ce":
            return arr
        return np.moveaxis(arr.reshape(tuple(self.unit_shape) + (self.C,)), -1, self.axis)


# -- sampled softmax and NCE --------------------------------------------------------------------------

class SampledProblem(Problem):
    unit_outputs = 1

    def __init__(self, case: Case):
        super().__init__(case)
        for name in ("inputs", "embeddings", "biases"):
            a = _f64(case[name])
            if not np.all(np.isfinite(a)):
                raise Invalid(f"{name} must be finite: {name}{_first_bad(a, ~np.isfinite(a))}")
        C = case["embeddings"].shape[0]
        for name in ("labels", "sampled"):
            ids = case[name]
            bad = (ids < 0) | (ids >= C)
            if bad.any():
                raise Invalid(f"class ids must lie in [0, {C}): {name}{_first_bad(ids, bad)}")
        for name in ("true_expected_count", "sampled_expected_count"):
            q = _f64(case[name])
            bad = ~((q > 0) & np.isfinite(q))
            if bad.any():
                raise Invalid(f"{name} must be finite and > 0: {name}{_first_bad(q, bad)}")
        self.nce = case.variant == "nce"
        self.inputs = _f64(case["inputs"]).tolist()
        self.emb = _f64(case["embeddings"]).tolist()
        self.bias = _f64(case["biases"]).tolist()
        self.labels = case["labels"].tolist()
        self.sampled = case["sampled"].tolist()
        self.tq = _f64(case["true_expected_count"]).tolist()
        self.sq = _f64(case["sampled_expected_count"]).tolist()
        self.n_units = len(self.inputs)
        self.value_shape = (self.n_units,)
        self.reduction = case.options["reduction"]
        self.remove_hits = case.options["remove_accidental_hits"]
        self.log_q = case.options["subtract_log_q"]

    def _logit(self, B, i, cid, q):
        """x_i . w_c + b_c - log Q, and the magnitude sum |x_i,d w_c,d| + |b_c| + |log Q|."""
        acc = B.num(self.bias[cid])
        mag = abs(self.bias[cid])
        for xv, wv in zip(self.inputs[i], self.emb[cid]):
            if xv != 0.0 and wv != 0.0:
                acc = acc + B.num(xv) * B.num(wv)
                mag += abs(xv * wv)
        if self.log_q:
            acc = acc - B.log(B.num(q))
            mag += abs(math.log(q))
        return acc, mag

    def unit(self, B, i, grads):
        T = len(self.labels[i])
        cols, mags, true_flags = [], [], []
        for t, cid in enumerate(self.labels[i]):
            v, m = self._logit(B, i, cid, self.tq[i][t])
            cols.append(v), mags.append(m), true_flags.append(True)
        for s, cid in enumerate(self.sampled):
            if self.remove_hits and cid in self.labels[i]:
                cols.append(-math.inf), mags.append(0.0)
            else:
                v, m = self._logit(B, i, cid, self.sq[s])
                cols.append(v), mags.append(m)
            true_flags.append(False)
        inv_t = Q(1, T)
        if not self.nce:
            a = [inv_t if f else None for f in true_flags]
            return U.softmax_row(B, cols, a, "ce", False, mags=mags)
        parts = [U.sigmoid_bce(B, x, inv_t if f else Q(0), f and T > 1, 1.0, 0.0, False, x_mag=m)
                 for x, m, f in zip(cols, mags, true_flags)]
        return U.Unit([U._sum(B, [p.out[0] for p in parts])], [sum(p.out_sens[0] for p in parts)])


def build(case: Case, contract: dict | None = None, nan_invalid_rows: bool = False) -> Problem:
    """The problem for ``case`` (under ``contract``, see oracle/contracts.py); raises `Invalid`
    with the reason when it is outside the domain."""
    if contract and not contracts.applies_to(case.variant, contract):
        raise ValueError(f"contract {sorted(contract)} does not apply to {case.variant}: see oracle/contracts.py")
    if case.variant in ("sigmoid_bce_logits", "bce_probs"):
        return ElementwiseProblem(case, contract)
    if case.variant in ("sampled_softmax", "nce"):
        return SampledProblem(case)
    return RowProblem(case, contract, nan_invalid_rows)
