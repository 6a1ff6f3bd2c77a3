"""Writes the curated corpus, cases/corpus/*.jsonl: `python cases/corpus/build.py`.

This script is the provenance of every committed case; each case's `note` says where it comes
from. Decimal numbers (0.2870, 0.7, ...) are rounded to nearest into the case dtype, as
`torch.tensor([...])` or `np.array(..., dtype)` would; every other value is exact and checked so.

- seeds.jsonl: the concrete examples of the seed documents (../shared/seeds/):
  - 001 (TF sigmoid_cross_entropy_with_logits, Japanese): logits [[1,-810,20],[11,12,14],[12,21,23]]
    with one-hot labels, where the textbook log(1+exp(-x)) overflows at x = -810; the same inputs
    under softmax CE (003: when to use sigmoid and when softmax).
  - 000 (TF cross-entropy ops, Chinese): weighted_cross_entropy_with_logits (pos_weight) on the
    001 inputs with q = 2 (chosen here), and a sparse label outside [0, num_classes).
  - 002 (PyTorch NLLLoss / CrossEntropyLoss, Chinese): the 3x4 torch.rand logits printed to four
    decimals with targets [0, 2, 1] (sparse CE mean 1.4238, per row 1.5553646 1.4316716
    1.2842305, log_softmax, one-hot dense CE), the soft label [0.9, 0.09, 0.01], and the
    segmentation example: 2x3x3x3 logits, axis=1, (2, 3, 3) targets.
  - 004 (BCE / CE on probabilities, Chinese): BCELoss on probs [0.7, 0.2] with labels [1, 0]
    (0.2899092476264711), sklearn log_loss examples, CrossEntropyLoss on log-probabilities.
- traps.jsonl: classic numerical traps: ±inf logits per label, -inf masked logits with label 0,
  rows of only -inf and rows with two +inf, subnormal logits, the exp overflow edges of float16
  (ln 65504 = 11.09), float32 (88.72) and float64 (709.78), results that overflow the dtype,
  bfloat16 rows, probabilities at 0 and 1, empty batches.
- options.jsonl: options that change the meaning: class-weighted mean with ignore_index, label
  smoothing in both conventions, pos_weight, zero and sum-over-non-zero weights, axis=1 layouts,
  sampled softmax with an accidental hit, NCE.
- invalid.jsonl: out-of-domain inputs a framework should reject rather than silently accept.
"""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))  # run as a script, from anywhere

from cases import Case, fmt, variant  # noqa: E402
from cases.variants import INT  # noqa: E402

F32_MAX = fmt("float32").max_finite
BF16_MAX = fmt("bfloat16").max_finite


def exact(dtype: str, values) -> np.ndarray:
    """Values that must be representable in the dtype as written."""
    a64 = np.asarray(values, dtype=np.float64)
    a = fmt(dtype).array(a64)
    finite = np.isfinite(a64)
    if not np.array_equal(a.astype(np.float64)[finite], a64[finite]):
        raise ValueError(f"not exactly representable in {dtype}: {values}")
    return a


def nearest(dtype: str, values) -> np.ndarray:
    """Decimal values rounded to nearest into the dtype."""
    return fmt(dtype).array(values)


def make(variant_id: str, dtype: str, note: str, options=None, **inputs) -> Case:
    """A case; float inputs given as lists are taken exactly, arrays as they are."""
    spec = variant(variant_id)
    arrays = {}
    for name, x in inputs.items():
        if spec.input(name).kind == INT:
            arrays[name] = np.asarray(x, dtype=np.int64)
        else:
            arrays[name] = x if isinstance(x, np.ndarray) else exact(dtype, x)
    return Case(variant_id, dtype, arrays, options or {}, note=note)


SEED_SIGMOID = [[1, -810, 20], [11, 12, 14], [12, 21, 23]]
EYE3 = np.eye(3).tolist()
SEED_NLL = [[0.2870, 0.2232, 0.6423, 0.6035], [0.4180, 0.9434, 0.6034, 0.5521], [0.0026, 0.4993, 0.7166, 0.2258]]
SEED_NCHW_TARGETS = [[[0, 2, 1]] * 3] * 2


def seeds() -> list[Case]:
    out = []
    for dtype in ("float32", "float64", "float16"):
        out.append(make("sigmoid_bce_logits", dtype, f"seed 001: TF sigmoid_cross_entropy_with_logits example in "
                        f"{dtype}; x = -810 overflows exp(-x) in the textbook formula (TF prints 0 there)",
                        {"reduction": "none"}, logits=SEED_SIGMOID, labels=EYE3))
    out.append(make("sigmoid_bce_logits", "float32", "seed 001: the same example, mean over all elements",
                    {"reduction": "mean"}, logits=SEED_SIGMOID, labels=EYE3))
    out.append(make("softmax_ce_dense", "float32", "seed 001 inputs under softmax CE, rows (seed 003: sigmoid "
                    "treats classes as independent, softmax as exclusive)", {"reduction": "none"},
                    logits=SEED_SIGMOID, labels=EYE3))
    out.append(make("sigmoid_bce_logits", "float32", "seed 000: tf.nn.weighted_cross_entropy_with_logits, "
                    "l = (1-z)x + (1+(q-1)z) softplus(-x), on the seed 001 inputs with pos_weight q = 2 (chosen here)",
                    {"reduction": "none"}, logits=SEED_SIGMOID, labels=EYE3, pos_weight=[2.0]))
    nll = nearest("float32", SEED_NLL)
    out += [
        make("softmax_ce_sparse", "float32", "seed 002: PyTorch CrossEntropyLoss / NLLLoss(log_softmax), mean; the "
             "printed 4-decimal torch.rand logits rounded to float32; the seed reports 1.4238 (TF 1.4237556)",
             {"reduction": "mean"}, logits=nll, labels=[0, 2, 1]),
        make("softmax_ce_sparse", "float32", "seed 002: tf.compat.v1 sparse_softmax_cross_entropy_with_logits per "
             "row, reported [1.5553646, 1.4316716, 1.2842305]", {"reduction": "none"}, logits=nll, labels=[0, 2, 1]),
        make("log_softmax", "float32", "seed 002: F.log_softmax(dim=-1) of the same logits, printed "
             "[[-1.5554, -1.6192, -1.2001, -1.2389], [-1.6171, -1.0916, -1.4317, -1.4830], [-1.7810, -1.2842, "
             "-1.0669, -1.5578]]", {"axis": -1}, logits=nll),
        make("softmax_ce_dense", "float32", "seed 002: tf softmax_cross_entropy_with_logits_v2 + reduce_mean / keras "
             "CategoricalCrossentropy(from_logits=True) with one-hot targets, reported 1.4237556",
             {"reduction": "mean"}, logits=nll, labels=[[1, 0, 0, 0], [0, 0, 1, 0], [0, 1, 0, 0]]),
        make("softmax_ce_dense", "float32", "seed 002: the soft label [0.9, 0.09, 0.01] (rounded to float32); the "
             "logits, the first three of row 0, are chosen here", {"reduction": "none"},
             logits=nll[:1, :3], labels=nearest("float32", [[0.9, 0.09, 0.01]])),
    ]
    # The seed's torch.rand(2, 3, 3, 3) values were not printed; these are (37 i mod 100) / 100.
    nchw = nearest("float32", (np.arange(54) * 37 % 100 / 100).reshape(2, 3, 3, 3))
    for reduction in ("mean", "sum"):
        out.append(make("softmax_ce_sparse", "float32", f"seed 002: segmentation CrossEntropyLoss, N x C x H x W = "
                        f"2x3x3x3 logits, axis=1, (2, 3, 3) targets, {reduction} (logits made up: (37 i mod 100)/100)",
                        {"reduction": reduction, "axis": 1}, logits=nchw, labels=SEED_NCHW_TARGETS))
    out.append(make("log_softmax", "float32", "seed 002: F.log_softmax(prediction, dim=1) of the segmentation logits",
                    {"axis": 1}, logits=nchw))
    out.append(make("softmax_ce_sparse", "float32", "seed 000: a sparse label outside [0, num_classes) (4 with 4 "
                    "classes): TF raises on CPU and returns NaN on GPU; out of domain", {"reduction": "none"},
                    logits=nll, labels=[0, 4, 1]))
    for dtype, who in (("float32", "torch BCELoss(reduction='mean')"), ("float64", "sklearn log_loss")):
        out.append(make("bce_probs", dtype, f"seed 004: {who} on probs [0.7, 0.2] (rounded to {dtype}) with labels "
                        "[1, 0]; reported 0.2899092476264711", {"reduction": "mean"},
                        probs=nearest(dtype, [0.7, 0.2]), labels=[1, 0]))
    out += [
        make("categorical_ce_probs", "float64", "seed 004: sklearn log_loss(y_true=[[0,1],[1,0]], y_pred=[[0.3,0.7],"
             "[0.8,0.2]]) = 0.2899092476264711", {"reduction": "mean"},
             probs=nearest("float64", [[0.3, 0.7], [0.8, 0.2]]), labels=[[0, 1], [1, 0]]),
        make("categorical_ce_probs", "float64", "seed 004: sklearn log_loss([[0,1,0]], [[0.4,0.4,0.2]]) = "
             "0.916290731874155", {"reduction": "mean"}, probs=nearest("float64", [[0.4, 0.4, 0.2]]),
             labels=[[0, 1, 0]]),
        make("categorical_ce_probs", "float64", "seed 004: one-hot [0, 0, 1] against [0.1, 0.12, 0.78], reported "
             "0.2485", {"reduction": "none"}, probs=nearest("float64", [[0.1, 0.12, 0.78]]), labels=[[0, 0, 1]]),
        make("softmax_ce_sparse", "float32", "seed 004: torch CrossEntropyLoss on logits [log 0.4, log 0.4, log 0.2] "
             "(math.log in float64, then float32), target 1: 0.9163", {"reduction": "mean"},
             logits=nearest("float32", [[math.log(0.4), math.log(0.4), math.log(0.2)]]), labels=[1]),
    ]
    return out


def traps() -> list[Case]:
    inf = math.inf
    out = []
    for dtype in ("float32", "float64"):
        out.append(make("sigmoid_bce_logits", dtype, f"trap: x = ±inf with labels 0, 1, 1/2 in {dtype}: the limits "
                        "are 0 or +inf; max(x,0) - x*z computes inf - inf = NaN", {"reduction": "none"},
                        logits=[inf, inf, inf, -inf, -inf, -inf], labels=[0, 1, 0.5, 0, 1, 0.5]))
    out += [
        make("sigmoid_bce_logits", "float32", "trap: x = ±0 and label 1/2: log 2 either way",
             {"reduction": "none"}, logits=[0.0, -0.0, 0.0, -0.0], labels=[0.5, 0.5, 0, 1]),
        make("sigmoid_bce_logits", "float32", "trap: huge |x| with label 1/2: (1-z)x term, no overflow in the truth",
             {"reduction": "none"}, logits=[1e4, -1e4, F32_MAX, -F32_MAX], labels=[0.5, 0.5, 0.5, 0.5]),
        make("softmax_ce_dense", "float32", "trap: -inf logits (masked classes) with label 0: the term is 0, not "
             "0 * inf = NaN; soft label over the unmasked classes in row 2", {"reduction": "none"},
             logits=[[0, -inf, 1, -inf], [2, -inf, -inf, -inf], [0.5, -inf, 1, -inf]],
             labels=[[1, 0, 0, 0], [1, 0, 0, 0], [0.5, 0, 0.5, 0]]),
        make("softmax_ce_sparse", "float32", "trap: -inf masked logits, the target unmasked", {"reduction": "none"},
             logits=[[2, -inf, -inf], [-inf, 0, 1]], labels=[0, 2]),
        make("softmax_ce_sparse", "float32", "trap: the target class is masked (-inf): the loss is +inf",
             {"reduction": "none"}, logits=[[2, -inf, 0]], labels=[1]),
        make("log_softmax", "float32", "trap: a row of only -inf (fully masked) is undefined (NaN); a row of zeros "
             "beside it", {"axis": -1}, logits=[[-inf, -inf, -inf], [0, 0, 0]]),
        make("softmax", "float32", "trap: a row of only -inf is undefined; a row with one -inf",
             {"axis": -1}, logits=[[-inf, -inf, -inf], [0, -inf, 0]]),
        make("softmax_ce_sparse", "float32", "trap: a fully masked row under sparse CE: undefined",
             {"reduction": "none"}, logits=[[-inf, -inf, -inf], [1, 2, 3]], labels=[0, 2]),
        make("softmax", "float32", "trap: two +inf in a row is undefined; one +inf is the one-hot limit",
             {"axis": -1}, logits=[[inf, inf, 0], [inf, 0, -inf]]),
        make("log_softmax", "float32", "trap: two +inf in a row is undefined; one +inf gives [0, -inf, -inf]",
             {"axis": -1}, logits=[[inf, inf, 0], [inf, 0, -inf]]),
        make("softmax_ce_dense", "float32", "trap: +inf logits: one +inf on the label gives 0, on another class +inf; "
             "two +inf undefined", {"reduction": "none"}, logits=[[inf, 0, 1], [inf, 0, 1], [inf, inf, 0]],
             labels=[[1, 0, 0], [0, 1, 0], [1, 0, 0]]),
        make("log_softmax", "float32", "trap: subnormal logits and signed zeros: log_softmax ~ -log 4",
             {"axis": -1}, logits=[[2.0 ** -149, -(2.0 ** -149), 0.0, -0.0], [2.0 ** -126, 2.0 ** -127, 1, -1]]),
        make("softmax", "float16", "trap: float16 subnormal logits (2^-24 is the smallest)",
             {"axis": -1}, logits=[[2.0 ** -24, 0.0, -(2.0 ** -24)], [2.0 ** -14, 2.0 ** -15, 0.0]]),
        make("sigmoid_bce_logits", "float32", "trap: subnormal logits: l = log 2 -/+ x/2, which rounds to log 2",
             {"reduction": "none"}, logits=[2.0 ** -149, -(2.0 ** -149), 2.0 ** -126], labels=[0, 1, 0.5]),
        make("sigmoid_bce_logits", "float16", "trap: float16 exp overflow edge ln 65504 = 11.0899 (11.0859375 and "
             "11.09375 bracket it), ±65504, and -ln of the smallest subnormal 16.64", {"reduction": "none"},
             logits=[11.0859375, 11.09375, -11.0859375, -11.09375, 65504, -65504, 16.625, -16.625],
             labels=[0, 1, 0, 1, 0, 1, 1, 0]),
        make("softmax_ce_sparse", "float16", "trap: the true loss 131008 exceeds float16's 65504: the correctly "
             "rounded result is +inf", {"reduction": "none"}, logits=[[65504, -65504]], labels=[1]),
        make("log_softmax", "float16", "trap: float16 rows at the overflow edge: exp(x) overflows in a naive "
             "log_softmax", {"axis": -1}, logits=[[65504, 65504], [11.09375, 0], [-65504, 0]]),
        make("softmax", "float16", "trap: float16 exp(11.09375) overflows in a naive softmax",
             {"axis": -1}, logits=[[11.09375, 11.09375, 0], [12, 11, 10]]),
        make("sigmoid_bce_logits", "float32", "trap: float32 exp overflow edge ln(FLT_MAX) = 88.7228391 "
             "(88.72283935546875 is the float32 above it, 88.72283172607422 the one below) and -ln of the "
             "smallest subnormal 103.97",
             {"reduction": "none"},
             logits=nearest("float32", [88.72283935546875, -88.72283935546875, 88.72283172607422,
                                        -88.72283172607422, 103.97208, -103.97208, 104, -104]),
             labels=[0, 1, 1, 0, 0, 1, 1, 0]),
        make("softmax_ce_sparse", "float32", "trap: float32 logits at the exp overflow edge 88.72283935546875",
             {"reduction": "none"}, logits=[[88.72283935546875, 0, -88.72283935546875], [88.72283935546875] * 3],
             labels=[2, 1]),
        make("sigmoid_bce_logits", "float64", "trap: float64 exp overflow edge ln(DBL_MAX) = 709.782712893384, "
             "-ln of the smallest subnormal 745.13, and 53 ln 2 = 36.74 (exp(-x) below half an ulp of 1)",
             {"reduction": "none"},
             logits=[709.782712893384, 709.7827128933841, -709.782712893384, 745.1332191019412, -745.1332191019412,
                     -746.0, 36.7368005696771, -36.7368005696771], labels=[0, 1, 1, 0, 1, 0, 0, 1]),
        make("log_softmax", "float64", "trap: float64 rows at the exp overflow edge",
             {"axis": -1}, logits=[[709.782712893384, 709.782712893384, 0], [-745.1332191019412, 0, 1]]),
        make("softmax_ce_sparse", "bfloat16", "trap: bfloat16 rows: ordinary, -808 (bfloat16 cannot hold -810), the "
             "bfloat16 max 3.39e38", {"reduction": "none"},
             logits=[[1, 2, 3, 4], [-808, 0, 20, 88.5], [BF16_MAX, 0, -1, 1]], labels=[3, 0, 1]),
        make("sigmoid_bce_logits", "bfloat16", "trap: the seed 001 example in bfloat16, -810 rounded to -808",
             {"reduction": "none"}, logits=[[1, -808, 20], [11, 12, 14], [12, 21, 23]], labels=EYE3),
        make("log_softmax", "bfloat16", "trap: bfloat16 keeps 8 significant bits: 256 and 258 are neighbours",
             {"axis": -1}, logits=[[256, 258, 0], [88.5, 89, -89]]),
        make("bce_probs", "float32", "trap: p in {0, 1}: 0 log 0 = 0, log 0 = -inf (PyTorch clamps log p at -100, "
             "Keras clips p to [1e-7, 1 - 1e-7])", {"reduction": "none"}, probs=[0, 1, 0, 1], labels=[0, 1, 1, 0]),
        make("bce_probs", "float32", "trap: tiny and near-1 probabilities: the smallest subnormal, 1 - 2^-24, "
             "1e-7 and exp(-100) rounded to float32", {"reduction": "none"},
             probs=nearest("float32", [2.0 ** -149, 1 - 2.0 ** -24, 1e-7, math.exp(-100)]), labels=[1, 0, 1, 1]),
        make("categorical_ce_probs", "float32", "trap: p = 0 where the label is 0 gives 0, where it is 1 gives +inf",
             {"reduction": "none"}, probs=[[0, 0.5, 0.5], [0, 0.5, 0.5]], labels=[[0, 1, 0], [1, 0, 0]]),
        make("softmax_ce_dense", "float32", "trap: labels that do not sum to 1 (1.5 and 0): no renormalisation",
             {"reduction": "none"}, logits=[[1, 2, 3], [1, 2, 3]], labels=[[0.5, 0.5, 0.5], [0, 0, 0]]),
        make("log_softmax", "float32", "trap: a row of +-1e4, a row of -810s, and a near tie 1 vs 1 + 2^-23",
             {"axis": -1}, logits=[[1e4, -1e4, 0], [-810, -810, -810], [1, 1 + 2.0 ** -23, 1]]),
        make("softmax_ce_sparse", "float32", "trap: softmax CE with a -810 logit on the target: loss 810",
             {"reduction": "none"}, logits=[[0, -810], [-810, 0]], labels=[1, 1]),
    ]
    for reduction in ("sum", "mean"):
        out.append(make("softmax_ce_sparse", "float32", f"trap: an empty batch, {reduction}: the sum is 0, the mean "
                        "is undefined", {"reduction": reduction}, logits=np.zeros((0, 3), np.float32),
                        labels=np.zeros(0, np.int64)))
    return out


def options() -> list[Case]:
    logits = [[1, 2, 3], [0.5, -1, 2], [3, 3, 3], [-2, 0, 2]]
    out = [
        make("softmax_ce_sparse", "float32", f"options: class-weighted {reduction} with ignore_index=-100 (PyTorch "
             "CrossEntropyLoss(weight, ignore_index) 'mean' is weighted_mean: it divides by the class weights of the "
             "targets not ignored)", {"reduction": reduction, "ignore_index": -100}, logits=logits,
             labels=[0, 2, -100, 1], class_weights=[1, 2, 0.5])
        for reduction in ("weighted_mean", "mean", "none")
    ]
    out += [
        make("softmax_ce_sparse", "float32", "options: ignore_index equal to a class id (2): targets of class 2 are "
             "ignored", {"reduction": "weighted_mean", "ignore_index": 2}, logits=logits, labels=[0, 2, 1, 2]),
        make("softmax_ce_sparse", "float32", "options: every target ignored: the weighted mean is 0/0, undefined "
             "(PyTorch returns NaN)", {"reduction": "weighted_mean", "ignore_index": -100}, logits=logits[:2],
             labels=[-100, -100]),
    ]
    e = float(nearest("float32", 0.1))
    out += [
        make("sigmoid_bce_logits", "float32", "options: binary label smoothing e = 0.1 (float32), z' = z(1-e) + e/2 "
             "(Keras BinaryCrossentropy, optax)", {"reduction": "none", "label_smoothing": e},
             logits=[[2, -1, 0.5]], labels=[[1, 0, 1]]),
        make("bce_probs", "float32", "options: binary label smoothing e = 0.1 (float32) on probabilities",
             {"reduction": "none", "label_smoothing": e}, probs=[0.75, 0.25, 0.5], labels=[1, 0, 1]),
        make("softmax_ce_dense", "float32", "options: categorical label smoothing e = 0.1 (float32), y' = y(1-e) + "
             "e/C (Keras CategoricalCrossentropy, PyTorch label_smoothing)",
             {"reduction": "none", "label_smoothing": e},
             logits=[[2, -1, 0.5]], labels=[[1, 0, 0]]),
        make("softmax_ce_sparse", "float32", "options: categorical label smoothing with class weights, weighted "
             "mean (PyTorch weights the smoothing term by class too)",
             {"reduction": "weighted_mean", "label_smoothing": e}, logits=logits, labels=[0, 2, 1, 1],
             class_weights=[1, 2, 0.5]),
        make("sigmoid_bce_logits", "float32", "options: per-class pos_weight vector (broadcast along the last axis)",
             {"reduction": "none"}, logits=[[1, -2, 3], [0, 0.5, -0.5]], labels=[[1, 0, 1], [0, 1, 1]],
             pos_weight=[1, 2, 0.5]),
        make("sigmoid_bce_logits", "float32", "options: scalar pos_weight 3 (shape ()), sum",
             {"reduction": "sum"}, logits=[[1, -2, 3], [0, 0.5, -0.5]], labels=[[1, 0, 1], [0, 1, 1]],
             pos_weight=np.float32(3).reshape(())),
        make("sigmoid_bce_logits", "float32", "options: 0 * inf = 0 for weights: a weight-0 unit with an infinite "
             "loss contributes nothing", {"reduction": "sum"}, logits=[math.inf, 1, -math.inf],
             labels=[0, 1, 1], weights=[0, 1, 0]),
        make("softmax_ce_sparse", "float32", "options: sum_over_nonzero_weights (TF v1 SUM_BY_NONZERO_WEIGHTS): "
             "divides by the 2 non-zero weights", {"reduction": "sum_over_nonzero_weights"}, logits=logits,
             labels=[0, 1, 2, 0], weights=[1, 0, 2, 0]),
        make("softmax_ce_sparse", "float32", "options: weighted_mean with per-row weights divides by their sum",
             {"reduction": "weighted_mean"}, logits=logits, labels=[0, 1, 2, 0], weights=[1, 0, 2, 0]),
        make("sigmoid_bce_logits", "float32", "options: every weight 0: weighted_mean undefined, sum 0",
             {"reduction": "weighted_mean"}, logits=[1, 2], labels=[0, 1], weights=[0, 0]),
        make("softmax_ce_dense", "float32", "options: class weights with soft labels",
             {"reduction": "none"}, logits=logits,
             labels=[[0.5, 0.25, 0.25], [0, 0.5, 0.5], [1, 0, 0], [0.25, 0.75, 0]],
             class_weights=[2, 1, 0]),
        make("categorical_ce_probs", "float32", "options: probabilities summing to 0.6: no renormalisation (Keras's "
             "categorical_crossentropy on probabilities divides by their sum first)", {"reduction": "none"},
             probs=nearest("float32", [[0.2, 0.2, 0.2]]), labels=[[0, 1, 0]]),
        make("softmax_ce_dense", "float32", "options: N x C x L logits with the class axis 1",
             {"reduction": "none", "axis": 1}, logits=[[[1, 2], [3, -1], [0, 0]]],
             labels=[[[1, 0], [0, 0.5], [0, 0.5]]]),
        make("softmax", "float64", "options: classes first (axis 0)", {"axis": 0}, logits=[[1, 2], [3, -1], [0, 0]]),
    ]
    sampled_inputs = dict(
        inputs=[[1, 0.5, -1], [0, 2, 1]],
        embeddings=[[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [-1, 0, 1]],
        biases=[0, 0.5, -0.5, 1, 0],
    )
    for remove in (True, False):
        out.append(make("sampled_softmax", "float32", "options: sampled_softmax with an accidental hit (sampled id 1 "
                        f"is row 0's true id), remove_accidental_hits={remove} (tf.nn.sampled_softmax_loss with "
                        "injected sampled_values)", {"reduction": "none", "remove_accidental_hits": remove,
                                                     "subtract_log_q": True},
                        labels=[[1], [3]], sampled=[1, 4, 2], true_expected_count=[[0.5], [0.25]],
                        sampled_expected_count=[0.5, 0.75, 0.25], **sampled_inputs))
    out += [
        make("nce", "float32", "options: tf.nn.nce_loss with num_true=2 (label 1/2 on each true column), sampled "
             "id 1 hits row 0", {"reduction": "none", "remove_accidental_hits": False, "subtract_log_q": True},
             labels=[[1, 3], [0, 2]], sampled=[4, 1], true_expected_count=[[0.5, 0.25], [0.5, 0.75]],
             sampled_expected_count=[0.25, 0.5], **sampled_inputs),
        make("nce", "float64", "options: nce without subtracting log Q, sum", {"reduction": "sum",
             "remove_accidental_hits": True, "subtract_log_q": False}, labels=[[2], [4]], sampled=[0, 1, 3],
             true_expected_count=[[1], [1]], sampled_expected_count=[1, 1, 1], **sampled_inputs),
    ]
    return out


def invalid() -> list[Case]:
    logits = [[1, 2, 3], [0.5, -1, 2]]
    return [
        make("softmax_ce_sparse", "float32", "invalid: label -100 without ignore_index (PyTorch ignores -100 by "
             "default, TF has no ignore_index)", {"reduction": "mean"}, logits=logits, labels=[0, -100]),
        make("softmax_ce_sparse", "float32", "invalid: label -1", {"reduction": "none"},
             logits=logits, labels=[-1, 0]),
        make("bce_probs", "float32", "invalid: labels outside [0, 1]", {"reduction": "none"},
             probs=[0.5, 0.5], labels=[1.5, -0.5]),
        make("bce_probs", "float32", "invalid: a probability just above 1 (1 + 2^-23)", {"reduction": "none"},
             probs=[1 + 2.0 ** -23, 0.5], labels=[1, 0]),
        make("bce_probs", "float32", "invalid: a NaN probability", {"reduction": "none"},
             probs=[math.nan, 0.5], labels=[1, 0]),
        make("categorical_ce_probs", "float32", "invalid: a negative probability", {"reduction": "none"},
             probs=[[-0.25, 0.75, 0.5]], labels=[[0, 1, 0]]),
        make("sigmoid_bce_logits", "float32", "invalid: negative pos_weight", {"reduction": "none"},
             logits=[1, -1], labels=[1, 0], pos_weight=[-1]),
        make("sigmoid_bce_logits", "float32", "invalid: a negative weight", {"reduction": "sum"},
             logits=[1, -1], labels=[1, 0], weights=[1, -1]),
        make("softmax_ce_sparse", "float32", "invalid: a negative class weight", {"reduction": "weighted_mean"},
             logits=logits, labels=[0, 1], class_weights=[1, -1, 1]),
        make("softmax_ce_dense", "float32", "invalid: label_smoothing 1.5", {"reduction": "none",
             "label_smoothing": 1.5}, logits=logits, labels=[[1, 0, 0], [0, 1, 0]]),
        make("softmax_ce_dense", "float32", "invalid: a NaN label", {"reduction": "none"},
             logits=logits, labels=[[math.nan, 0, 0], [0, 1, 0]]),
        make("sampled_softmax", "float32", "invalid: an expected count of 0", {"reduction": "none"},
             inputs=[[1, 0]], embeddings=[[1, 0], [0, 1], [1, 1]], biases=[0, 0, 0], labels=[[0]], sampled=[1, 2],
             true_expected_count=[[0]], sampled_expected_count=[0.5, 0.5]),
        make("nce", "float32", "invalid: a sampled id outside [0, num_classes)", {"reduction": "none"},
             inputs=[[1, 0]], embeddings=[[1, 0], [0, 1], [1, 1]], biases=[0, 0, 0], labels=[[0]], sampled=[1, 3],
             true_expected_count=[[0.5]], sampled_expected_count=[0.5, 0.5]),
    ]


FILES = {"seeds.jsonl": seeds, "traps.jsonl": traps, "options.jsonl": options, "invalid.jsonl": invalid}


def render() -> dict[str, str]:
    """File name -> text, one Case.to_json() per line; case ids are unique over the corpus."""
    seen: dict[str, str] = {}
    out = {}
    for name, build in FILES.items():
        lines = []
        for case in build():
            if case.case_id in seen:
                raise ValueError(f"{name}: duplicate of a case in {seen[case.case_id]}: {case.note}")
            seen[case.case_id] = name
            lines.append(case.to_json() + "\n")
        out[name] = "".join(lines)
    return out


def main() -> None:
    for name, text in render().items():
        (HERE / name).write_text(text, encoding="utf-8")
        print(f"{name}: {len(text.splitlines())} cases")


if __name__ == "__main__":
    main()
