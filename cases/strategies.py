"""Hypothesis strategies that produce `Case`s, grouped by input regime.

Cases are assembled here from the array strategies of `cases.values`, which draw every float as
a value of the case dtype (bit patterns, or float64 rounded into the dtype), so nothing is rounded
later by accident. Arrays stay small (up to 6 rows of up to 8 classes, now and then 64 classes,
N x C x H x W up to 2x4x3x3) so the oracle stays fast.

Entry points: `cases_for(variant, dtype)` mixes every regime that applies to a variant,
`regime_cases(regime, variant, dtype)` draws from one regime, and `generate(...)` turns either
into a deterministic list. Each case's `note` is `regime:<name>`, so reports can group by regime.
Only the `invalid_labels` regime produces out-of-domain cases.
"""
from __future__ import annotations

import math

import hypothesis
import numpy as np
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.internal.conjecture.choice import choice_constraints_key, choice_permitted
from hypothesis.internal.conjecture.providers import AVAILABLE_PROVIDERS, GLOBAL_CONSTANTS, HypothesisProvider

from . import values as v
from .dtypes import fmt
from .model import Case
from .variants import INT, VARIANTS, variant as variant_spec

_LOGIT = ("sigmoid_bce_logits", "softmax_ce_dense", "softmax_ce_sparse", "log_softmax", "softmax")
_ROWS = ("softmax_ce_dense", "softmax_ce_sparse", "log_softmax", "softmax")
_PROBS = ("bce_probs", "categorical_ce_probs")
_SAMPLED = ("sampled_softmax", "nce")
_FLOAT_LABELS = ("sigmoid_bce_logits", "bce_probs", "softmax_ce_dense", "categorical_ce_probs")
_WEIGHTED = _FLOAT_LABELS + ("softmax_ce_sparse",)

# regime -> (what it produces, the variants it applies to)
_REGIMES: dict[str, tuple[str, tuple[str, ...]]] = {
    "ordinary": ("|logits| <= 10, exact integers, values near 0 and -0.0; probabilities away from 0 "
                 "and 1", tuple(VARIANTS)),
    "extreme_logits": ("|logits| from 64 up to the dtype's largest finite value (log-uniform), "
                       "-810, 1e4, 1e30, mixed with ordinary ones", _LOGIT + _SAMPLED),
    "overflow_edge_logits": ("logits a few ulps around where exp or softplus overflow or underflow in "
                             "some dtype: log of the largest finite, smallest normal and smallest "
                             "subnormal value (±88.72, ±709.78, ±11.09, ...), p*ln 2, 20",
                             _LOGIT + _SAMPLED),
    "subnormal_logits": ("subnormal logits of the dtype, ±0 and the smallest normal, among ordinary "
                         "ones", _LOGIT + _SAMPLED),
    "nonfinite_logits": ("±inf and NaN (payloads and signs included) among ordinary logits", _LOGIT),
    "any_bits_logits": ("logits drawn from every bit pattern of the dtype", _LOGIT),
    "dominant_logit_rows": ("one logit per row far above the others, the row possibly shifted by a "
                            "huge offset; the label often on the dominant class", _ROWS),
    "masked_rows": ("-inf logits where the label is 0 (masked classes get label 0; a sigmoid unit "
                    "may instead get +inf and label 1), now and then a fully masked row; no label "
                    "smoothing", _LOGIT),
    "edge_probs": ("probabilities at 0, 1, subnormal, 1 - ulp, the smallest normal, and around the "
                   "clamps frameworks use (1e-7, exp(-100)); p equal to a hard label", _PROBS),
    "soft_labels": ("soft labels in [0, 1]; rows summing to 1 exactly, approximately or not at all",
                    _FLOAT_LABELS),
    "hard_labels": ("labels exactly 0 or 1 (one-hot rows) or class ids", _WEIGHTED),
    "ignored_targets": ("integer labels equal to ignore_index (-100, -1 or a class id), "
                        "all of a batch now and then", ("softmax_ce_sparse",)),
    "zero_weights": ("weights, class weights or pos_weight with zeros (and -0.0), all zero now and "
                     "then", _WEIGHTED),
    "accidental_hits": ("sampled ids that collide with true ids, with and without "
                        "remove_accidental_hits", _SAMPLED),
    "invalid_labels": ("one out-of-domain input: label or probability outside [0, 1] or NaN, class "
                       "id out of range, negative or NaN weight, label_smoothing outside [0, 1], "
                       "expected count <= 0, NaN sampled-softmax input", _WEIGHTED + _SAMPLED),
}
REGIMES: dict[str, str] = {name: desc for name, (desc, _) in _REGIMES.items()}

# How often cases_for picks each regime, relative to 2: invalid cases stay a modest share.
_WEIGHT = {"ordinary": 3, "invalid_labels": 1}


def regimes_for(variant: str) -> tuple[str, ...]:
    """The regimes that apply to a variant, in REGIMES order."""
    variant_spec(variant)
    return tuple(name for name, (_, applies) in _REGIMES.items() if variant in applies)


def regime_cases(regime: str, variant: str, dtype: str) -> st.SearchStrategy[Case]:
    """Cases of one variant and dtype in one regime, each noted `regime:<regime>`."""
    if regime not in _REGIMES:
        raise ValueError(f"unknown regime {regime!r}; expected one of {', '.join(_REGIMES)}")
    if regime not in regimes_for(variant):
        raise ValueError(f"regime {regime!r} does not apply to variant {variant!r}")
    fmt(dtype)
    build = _sampled_case if variant in _SAMPLED else _plain_case
    return build(variant, dtype, regime)


def cases_for(variant: str, dtype: str) -> st.SearchStrategy[Case]:
    """A mixture over every regime that applies to the variant."""
    by_name = {r: regime_cases(r, variant, dtype) for r in regimes_for(variant)}
    weighted = [r for r in by_name for _ in range(_WEIGHT.get(r, 2))]
    return st.sampled_from(weighted).flatmap(by_name.__getitem__)


def masked_rows(variant: str, dtype: str) -> st.SearchStrategy[Case]:
    return regime_cases("masked_rows", variant, dtype)


def ignored_targets(variant: str, dtype: str) -> st.SearchStrategy[Case]:
    return regime_cases("ignored_targets", variant, dtype)


def zero_weights(variant: str, dtype: str) -> st.SearchStrategy[Case]:
    return regime_cases("zero_weights", variant, dtype)


def accidental_hits(variant: str, dtype: str) -> st.SearchStrategy[Case]:
    return regime_cases("accidental_hits", variant, dtype)


def invalid_labels(variant: str, dtype: str) -> st.SearchStrategy[Case]:
    return regime_cases("invalid_labels", variant, dtype)


_BACKEND = "xent-seeded"


class SeedOnlyProvider(HypothesisProvider):
    """Hypothesis' own provider, minus the constants it harvests from the source of whatever local
    modules happen to be imported. Those made `generate` depend on the import history of the
    process (importing `adapters._numerics` changed the cases drawn for a seed) and on whether xent
    is installed editable; with them gone, a seed means the same cases everywhere.

    Hypothesis keeps the constants allowed under each set of constraints in one process-wide cache
    (``CONSTANTS_CACHE``), local ones included, filled by whichever provider asks first: after any
    ordinary ``@given`` test had drawn floats in the same process, this provider read that test's
    local constants back from the cache (the in-process run of the test suite then drew other cases
    than a fresh worker process for the same seed). So the pool is kept here, global constants
    only, and the random draws are the ones hypothesis makes when its local pool is empty: a seed
    draws the cases it drew in a fresh process before."""

    def _maybe_draw_constant(self, choice_type, constraints, *, p: float = 0.05):
        if self._random.random() > p:
            return None
        key = (choice_type, choice_constraints_key(choice_type, constraints))
        if key not in _GLOBAL_POOLS:
            _GLOBAL_POOLS[key] = tuple(c for c in GLOBAL_CONSTANTS.set_for_type(choice_type)
                                       if choice_permitted(c, constraints))
        pool = _GLOBAL_POOLS[key]
        if not pool:
            return None
        self._random.choice([pool])  # hypothesis first picks a pool among the non-empty ones
        return self._random.choice(pool)


_GLOBAL_POOLS: dict = {}  # (choice type, constraints key) -> the global constants they allow


def _register_backend() -> str:
    # The documented registration point for alternative backends; idempotent.
    AVAILABLE_PROVIDERS.setdefault(_BACKEND, f"{__name__}.SeedOnlyProvider")
    return _BACKEND


def sample_cases(strategy: st.SearchStrategy[Case], n: int, seed: int) -> list[Case]:
    """Up to n distinct cases (by case_id, the first draw keeping its note) drawn by a hypothesis
    run seeded with `seed`: the same list for the same seed, in any process."""
    found: dict[str, Case] = {}

    @hypothesis.seed(seed)
    @settings(max_examples=n, database=None, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck), derandomize=False, backend=_register_backend())
    @hypothesis.given(strategy)
    def collect(case):
        found.setdefault(case.case_id, case)

    collect()
    return list(found.values())


def generate(variant: str, dtype: str, n: int, seed: int) -> list[Case]:
    """Up to n distinct cases of a variant and dtype over all its regimes; deterministic in seed."""
    return sample_cases(cases_for(variant, dtype), n, seed)


def stream_cases(strategy: st.SearchStrategy[Case], n: int, seed: int, buffer: int = 64):
    """The cases of ``sample_cases(strategy, n, seed)``, in the same order, as a generator that
    holds at most ``buffer`` of them (plus the ids seen): for runs of 10^5 cases and more, memory
    stays flat. The hypothesis run draws in a thread and waits while the buffer is full."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=buffer)
    done = object()
    failure: list[BaseException] = []

    def produce():
        seen: set[str] = set()

        @hypothesis.seed(seed)
        @settings(max_examples=n, database=None, phases=[Phase.generate], deadline=None,
                  suppress_health_check=list(HealthCheck), derandomize=False, backend=_register_backend())
        @hypothesis.given(strategy)
        def collect(case):
            if case.case_id not in seen:
                seen.add(case.case_id)
                q.put(case)

        try:
            collect()
        except BaseException as e:  # handed to the consumer, raised there
            failure.append(e)
        q.put(done)

    threading.Thread(target=produce, daemon=True, name="xent-cases").start()
    while True:
        item = q.get()
        if item is done:
            break
        yield item
    if failure:
        raise failure[0]


def generate_stream(variant: str, dtype: str, n: int, seed: int):
    """``generate`` as a generator (same cases, same order) with flat memory."""
    return stream_cases(cases_for(variant, dtype), n, seed)


# -- plain variants (one logits or probs array along an optional class axis) ---------------------

@st.composite
def _plain_case(draw, variant: str, dtype: str, regime: str) -> Case:
    spec = VARIANTS[variant]
    invalid = regime == "invalid_labels"
    shape, axis = draw(v.layouts(spec.has_axis, nonempty=invalid))
    ax = None if axis is None else axis % len(shape)
    n_classes = None if ax is None else shape[ax]
    unit_shape = shape if ax is None else shape[:ax] + shape[ax + 1:]
    main = "probs" if spec.input("probs") else "logits"
    inputs = {main: draw(_main_values(regime, main, dtype, shape, ax))}

    label_spec = spec.input("labels")
    if label_spec is not None and label_spec.kind == INT:
        inputs["labels"] = draw(v.class_ids(unit_shape, n_classes))
    elif label_spec is not None:
        if regime in ("hard_labels", "soft_labels"):
            labels_of = v.hard_labels if regime == "hard_labels" else v.soft_labels
        else:
            labels_of = draw(st.sampled_from([v.hard_labels, v.hard_labels, v.soft_labels]))
        inputs["labels"] = draw(labels_of(dtype, shape, ax))

    options = {}
    if spec.option("reduction"):
        options["reduction"] = draw(st.sampled_from(spec.reductions))
    if spec.option("label_smoothing"):
        options["label_smoothing"] = 0.0 if regime == "masked_rows" else draw(v.label_smoothing(dtype))
    if spec.has_axis:
        options["axis"] = axis
    if spec.option("ignore_index"):
        options["ignore_index"] = draw(st.sampled_from([None, None, None, -100]))

    zeros = regime == "zero_weights"
    inputs.update(draw(_weight_inputs(spec, dtype, shape, unit_shape, n_classes, zeros)))

    if regime == "dominant_logit_rows" and "labels" in inputs and draw(st.booleans()):
        _put_labels_on_argmax(inputs, ax)
    elif regime == "masked_rows":
        _mask(draw, inputs, ax)
    elif regime == "edge_probs":
        _saturate(draw, inputs)
    elif regime == "ignored_targets":
        _ignore(draw, inputs, options, n_classes)
    elif invalid:
        _corrupt(draw, spec, dtype, inputs, options, unit_shape, n_classes)
    return Case(variant, dtype, inputs, options, note=f"regime:{regime}")


def _main_values(regime, main, dtype, shape, ax):
    if main == "probs":
        return (v.edge_probs if regime == "edge_probs" else v.probabilities)(dtype, shape, ax)
    special = {
        "extreme_logits": v.extreme_logits, "overflow_edge_logits": v.overflow_edge_logits,
        "subnormal_logits": v.subnormal_logits, "nonfinite_logits": v.nonfinite_logits,
        "any_bits_logits": v.any_bits_logits, "dominant_logit_rows": v.dominant_logit_rows,
    }.get(regime)
    if special is not None:
        return special(dtype, shape, ax)
    # Label, weight and mask regimes run over mostly ordinary logits, with some extreme ones.
    return st.one_of(v.ordinary_logits(dtype, shape), v.ordinary_logits(dtype, shape),
                     v.extreme_logits(dtype, shape))


@st.composite
def _weight_inputs(draw, spec, dtype, shape, unit_shape, n_classes, zeros: bool) -> dict:
    """The optional weights, class_weights and pos_weight; with `zeros`, at least one, with zeros."""
    present = [name for name in ("weights", "class_weights", "pos_weight") if spec.input(name)]
    chosen = [name for name in present if draw(st.integers(0, 2)) == 0 or (zeros and draw(st.booleans()))]
    if zeros and not chosen:
        chosen = [draw(st.sampled_from(present))]
    out = {}
    for name in chosen:
        if name == "weights":
            wshape = unit_shape
        elif name == "class_weights":
            wshape = (n_classes,)
        else:
            wshape = draw(st.sampled_from([(), (1,), shape[-1:]]))
        out[name] = draw(v.nonnegative_weights(dtype, wshape, zeros=zeros))
    return out


def _put_labels_on_argmax(inputs, ax) -> None:
    rows = v.to_rows(inputs["logits"], ax)
    target = np.argmax(rows, axis=1)
    labels = inputs["labels"]
    if labels.dtype.kind in "iu":
        inputs["labels"] = target.reshape(labels.shape).astype(np.int64)
    else:
        onehot = np.zeros(rows.shape, dtype=labels.dtype)
        onehot[np.arange(rows.shape[0]), target] = 1
        inputs["labels"] = v.from_rows(onehot, labels.shape, ax)


def _mask(draw, inputs, ax) -> None:
    """Mask some units: a sigmoid logit becomes -inf with label 0 or +inf with label 1; along a
    class axis a logit becomes -inf and its label 0, except the target (or top-label) class of each
    row. Now and then a whole row is -inf (undefined, but in the domain)."""
    logits, labels = inputs["logits"], inputs.get("labels")
    if ax is None:
        x, z = logits.copy().reshape(-1), labels.copy().reshape(-1)
        for i in _some(draw, np.arange(x.size)):
            z[i] = draw(st.sampled_from([0, 1]))
            x[i] = np.inf if z[i] else -np.inf
        inputs["logits"], inputs["labels"] = x.reshape(logits.shape), z.reshape(labels.shape)
        return
    rows = v.to_rows(logits, ax)
    n, c = rows.shape
    if labels is None:
        target = np.array(draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)), dtype=np.int64)
    elif labels.dtype.kind in "iu":
        target = labels.reshape(-1)
    else:
        label_rows = v.to_rows(labels, ax)
        target = np.argmax(label_rows, axis=1)
    keep = np.zeros(rows.shape, dtype=bool)
    keep[np.arange(n), target] = True
    masked = _some(draw, np.flatnonzero(~keep))
    rows.reshape(-1)[masked] = -np.inf
    if n and (not masked or draw(st.integers(0, 7)) == 0):
        rows[draw(st.integers(0, n - 1))] = -np.inf
    inputs["logits"] = v.from_rows(rows, logits.shape, ax)
    if labels is not None and labels.dtype.kind not in "iu":
        label_rows.reshape(-1)[masked] = 0
        inputs["labels"] = v.from_rows(label_rows, labels.shape, ax)


def _saturate(draw, inputs) -> None:
    """Probabilities equal to their label where the label is exactly 0 or 1 (a zero term)."""
    probs, z = inputs["probs"].copy().reshape(-1), inputs["labels"].reshape(-1)
    for i in _some(draw, np.flatnonzero((z == 0) | (z == 1))):
        probs[i] = z[i]
    inputs["probs"] = probs.reshape(inputs["probs"].shape)


def _ignore(draw, inputs, options, n_classes) -> None:
    ignore = draw(st.one_of(st.just(-100), st.just(-1), st.integers(0, n_classes - 1)))
    options["ignore_index"] = ignore
    labels = inputs["labels"].copy().reshape(-1)
    chosen = range(labels.size) if draw(st.integers(0, 5)) == 0 else _some(draw, np.arange(labels.size))
    for i in chosen:
        labels[i] = ignore
    inputs["labels"] = labels.reshape(inputs["labels"].shape)


def _some(draw, candidates: np.ndarray) -> list[int]:
    """A non-empty subset of the candidates (empty only when there are none)."""
    if candidates.size == 0:
        return []
    takes = draw(st.lists(st.booleans(), min_size=candidates.size, max_size=candidates.size))
    picked = [int(c) for c, take in zip(candidates, takes) if take]
    return picked or [int(candidates[draw(st.integers(0, candidates.size - 1))])]


def _corrupt(draw, spec, dtype, inputs, options, unit_shape, n_classes) -> None:
    """Make exactly one input or option out of domain."""
    f = fmt(dtype)
    label_kind = spec.input("labels").kind
    defects = ["labels", "labels", "labels"]
    defects += ["probs"] * 2 if spec.input("probs") else []
    defects += [name for name in ("weights", "class_weights", "pos_weight") if spec.input(name)]
    defects += ["label_smoothing"]
    defect = draw(st.sampled_from(defects))
    if defect == "labels" and label_kind == INT:
        bad = draw(st.sampled_from([n_classes, n_classes + 1, -1, -100, 2**31, -2**31 - 1]))
        if options.get("ignore_index") == bad:
            options["ignore_index"] = None
        _set_one(draw, inputs, "labels", bad)
    elif defect in ("labels", "probs"):
        _set_one(draw, inputs, defect, draw(v.outside_unit_interval(dtype)))
    elif defect == "label_smoothing":
        bad = draw(st.sampled_from([-0.1, 1.5, -f.min_subnormal, 1 + 2.0 ** (1 - f.precision), math.nan]))
        options["label_smoothing"] = float(f.array([bad])[0])
    else:
        if defect not in inputs:
            wshape = {"weights": unit_shape, "class_weights": (n_classes,), "pos_weight": ()}[defect]
            inputs[defect] = f.array(np.ones(wshape))
        _set_one(draw, inputs, defect, draw(v.negative_or_nan(dtype)))


def _set_one(draw, inputs, name, value) -> None:
    arr = inputs[name].copy()
    flat = arr.reshape(-1)
    flat[draw(st.integers(0, flat.size - 1))] = value
    inputs[name] = flat.reshape(arr.shape)


# -- sampled softmax and NCE ---------------------------------------------------------------------

@st.composite
def _sampled_case(draw, variant: str, dtype: str, regime: str) -> Case:
    f = fmt(dtype)
    n, d = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    c = draw(st.integers(2, 10))
    t, s = draw(st.integers(1, 2)), draw(st.integers(1, 5))
    dense, bias = {
        "extreme_logits": (v.ordinary_logits, v.extreme_logits),
        "overflow_edge_logits": (v.ordinary_logits, v.overflow_edge_logits),
        "subnormal_logits": (v.subnormal_logits, v.subnormal_logits),
    }.get(regime, (v.ordinary_logits, v.ordinary_logits))
    inputs = {
        "inputs": draw(dense(dtype, (n, d))),
        "embeddings": draw(dense(dtype, (c, d))),
        "biases": draw(bias(dtype, (c,))),
        "labels": np.array([draw(st.lists(st.integers(0, c - 1), min_size=t, max_size=t, unique=True))
                            for _ in range(n)], dtype=np.int64),
        "true_expected_count": draw(v.expected_counts(dtype, (n, t))),
        "sampled_expected_count": draw(v.expected_counts(dtype, (s,))),
    }
    if regime == "overflow_edge_logits" and draw(st.booleans()):
        inputs["inputs"] = f.array(np.zeros((n, d)))  # then a logit is the edge bias itself
    unique = s <= c and draw(st.integers(0, 3)) > 0
    inputs["sampled"] = np.array(draw(st.lists(st.integers(0, c - 1), min_size=s, max_size=s, unique=unique)),
                                 dtype=np.int64)
    if regime == "accidental_hits":
        row, col = draw(st.integers(0, n - 1)), draw(st.integers(0, s - 1))
        inputs["sampled"][col] = inputs["labels"][row, draw(st.integers(0, t - 1))]
    options = {
        "reduction": draw(st.sampled_from(VARIANTS[variant].reductions)),
        "remove_accidental_hits": draw(st.booleans()),
        "subtract_log_q": draw(st.booleans()),
    }
    if regime == "invalid_labels":
        defect = draw(st.sampled_from(["labels", "sampled", "true_expected_count",
                                       "sampled_expected_count", "inputs", "embeddings", "biases"]))
        if defect in ("labels", "sampled"):
            bad = draw(st.sampled_from([c, c + 1, -1, 2**31]))
        elif defect.endswith("expected_count"):
            bad = draw(st.sampled_from([0.0, -0.0, -0.5, -math.inf, math.nan]))
        else:
            bad = math.nan
        _set_one(draw, inputs, defect, bad)
    return Case(variant, dtype, inputs, options, note=f"regime:{regime}")
