"""TensorFlow's cross-entropy APIs, eager (``tensorflow``) and under XLA (``tensorflow-xla``).

Each API is called as a user calls it, on tensors of exactly the case dtype, and what it returns is
kept, dtype included. ``tensorflow-xla`` makes the same calls inside ``tf.function(jit_compile=True)``.
Gradients are those of ``tf.reduce_sum(output)`` taken by a ``tf.GradientTape``; where the API
stops the gradient into an input (the labels of ``tf.compat.v1.nn.softmax_cross_entropy_with_logits``
and of ``tf.compat.v1.losses.softmax_cross_entropy``) the tape gives None and no gradient is returned.

What the APIs express (anything else is not applicable):

- ``tf.nn.*`` losses take no weights and do not reduce: reduction ``none`` only, no label smoothing.
  ``weighted_cross_entropy_with_logits`` is the one with ``pos_weight``; the sparse loss has no
  ``axis`` (the class axis must be last) and no ``ignore_index`` (a case whose labels hit it is not
  applicable). ``sampled_softmax_loss`` and ``nce_loss`` always subtract log Q.
- ``tf.compat.v1.losses.*`` take per-unit ``weights`` and every reduction: ``sum`` -> SUM, ``mean`` ->
  SUM_OVER_BATCH_SIZE, ``weighted_mean`` -> MEAN (sum of weighted losses / sum of weights),
  ``sum_over_nonzero_weights`` -> SUM_BY_NONZERO_WEIGHTS. ``sigmoid_cross_entropy`` smooths labels
  towards 1/2 and ``softmax_cross_entropy`` towards 1/C, as the variants do. No class weights.

TensorFlow is imported on first use, once per process (the import takes seconds). ``repro`` writes
the call ``evaluate`` makes, tape and ``tf.function`` included, as a standalone snippet
(conformance/repro.py).
"""
from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from typing import Callable

import numpy as np

from cases import Case

from .base import Adapter, Contract, Output

_V1_REDUCTION = {
    "none": "NONE",
    "sum": "SUM",
    "mean": "SUM_OVER_BATCH_SIZE",
    "weighted_mean": "MEAN",
    "sum_over_nonzero_weights": "SUM_BY_NONZERO_WEIGHTS",
}

_LOG_LOSS_URL = "https://www.tensorflow.org/api_docs/python/tf/compat/v1/losses/log_loss"
# log_loss casts predictions to float32 before adding its epsilon, whatever the input dtype, so
# the offset is 1e-7 as float32 holds it (losses_impl.py).
_LOG_LOSS_EPSILON = float(np.float32(1e-7))


def _not_retracing_warning(record: logging.LogRecord) -> bool:
    return "triggered tf.function retracing" not in record.getMessage()


@functools.cache
def _tensorflow():
    """The tensorflow module, imported once; its C++ logs quieted unless the user chose a level."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    # tensorflow-xla traces its functions again for every new input shape, on purpose; TensorFlow
    # warns about that after five traces, and that one warning is dropped.
    tf.get_logger().addFilter(_not_retracing_warning)
    return tf


# -- what each API can express ---------------------------------------------------------------------

def _unweighted(case: Case) -> bool:
    return not any(n in case.inputs for n in ("weights", "class_weights", "pos_weight"))


def _no_smoothing(case: Case) -> bool:
    return case.options.get("label_smoothing", 0.0) == 0.0


def _plain(case: Case) -> bool:
    """What a tf.nn loss expresses: no weights of any kind, no smoothing, no reduction."""
    return _unweighted(case) and _no_smoothing(case) and case.options.get("reduction", "none") == "none"


def _last_axis(case: Case) -> bool:
    return case.class_axis == case["logits"].ndim - 1


def _nothing_ignored(case: Case) -> bool:
    ignore = case.options["ignore_index"]
    return ignore is None or not np.any(case["labels"] == ignore)


def _v1_weighted(case: Case) -> bool:
    """What a tf.compat.v1.losses loss expresses: per-unit weights only."""
    return "class_weights" not in case.inputs and "pos_weight" not in case.inputs


@dataclass(frozen=True)
class _Api:
    variant: str
    expresses: Callable[[Case], bool]
    call: Callable  # (tf, tensors by input name, the case's options) -> the output tensor


def _v1_kwargs(tf, t, o):
    reduction = getattr(tf.compat.v1.losses.Reduction, _V1_REDUCTION[o["reduction"]])
    return {"weights": t.get("weights", 1.0), "reduction": reduction}


def _sampled_kwargs(t, o):
    """The sampled candidates passed in explicitly; sizes from the tensors' static shapes."""
    return {
        "weights": t["embeddings"], "biases": t["biases"], "labels": t["labels"], "inputs": t["inputs"],
        "num_sampled": t["sampled"].shape[0], "num_classes": t["embeddings"].shape[0],
        "num_true": t["labels"].shape[1],
        "sampled_values": (t["sampled"], t["true_expected_count"], t["sampled_expected_count"]),
        "remove_accidental_hits": o["remove_accidental_hits"],
    }


def _sampled_expresses(case: Case) -> bool:
    return case.options["subtract_log_q"] and case.options["reduction"] == "none"


APIS: dict[str, _Api] = {
    "tf.nn.sigmoid_cross_entropy_with_logits": _Api(
        "sigmoid_bce_logits", _plain,
        lambda tf, t, o: tf.nn.sigmoid_cross_entropy_with_logits(labels=t["labels"], logits=t["logits"])),
    "tf.nn.weighted_cross_entropy_with_logits": _Api(
        "sigmoid_bce_logits",
        lambda case: "pos_weight" in case.inputs and "weights" not in case.inputs and _no_smoothing(case)
        and case.options["reduction"] == "none",
        lambda tf, t, o: tf.nn.weighted_cross_entropy_with_logits(
            labels=t["labels"], logits=t["logits"], pos_weight=t["pos_weight"])),
    "tf.compat.v1.losses.sigmoid_cross_entropy": _Api(
        "sigmoid_bce_logits", _v1_weighted,
        lambda tf, t, o: tf.compat.v1.losses.sigmoid_cross_entropy(
            multi_class_labels=t["labels"], logits=t["logits"], label_smoothing=o["label_smoothing"],
            **_v1_kwargs(tf, t, o))),
    "tf.nn.softmax_cross_entropy_with_logits": _Api(
        "softmax_ce_dense", _plain,
        lambda tf, t, o: tf.nn.softmax_cross_entropy_with_logits(
            labels=t["labels"], logits=t["logits"], axis=o["axis"])),
    "tf.compat.v1.nn.softmax_cross_entropy_with_logits": _Api(
        "softmax_ce_dense", _plain,
        # dim, not its alias axis: passing axis raises "Cannot specify both 'dim' and 'axis'",
        # because dim defaults to -1 rather than None
        lambda tf, t, o: tf.compat.v1.nn.softmax_cross_entropy_with_logits(
            labels=t["labels"], logits=t["logits"], dim=o["axis"])),
    "tf.compat.v1.losses.softmax_cross_entropy": _Api(
        "softmax_ce_dense", lambda case: _v1_weighted(case) and _last_axis(case),
        lambda tf, t, o: tf.compat.v1.losses.softmax_cross_entropy(
            onehot_labels=t["labels"], logits=t["logits"], label_smoothing=o["label_smoothing"],
            **_v1_kwargs(tf, t, o))),
    "tf.nn.sparse_softmax_cross_entropy_with_logits": _Api(
        "softmax_ce_sparse", lambda case: _plain(case) and _last_axis(case) and _nothing_ignored(case),
        lambda tf, t, o: tf.nn.sparse_softmax_cross_entropy_with_logits(labels=t["labels"], logits=t["logits"])),
    "tf.compat.v1.losses.sparse_softmax_cross_entropy": _Api(
        "softmax_ce_sparse",
        lambda case: _v1_weighted(case) and _no_smoothing(case) and _last_axis(case) and _nothing_ignored(case),
        lambda tf, t, o: tf.compat.v1.losses.sparse_softmax_cross_entropy(
            labels=t["labels"], logits=t["logits"], **_v1_kwargs(tf, t, o))),
    "tf.compat.v1.losses.log_loss": _Api(
        "bce_probs", _no_smoothing,
        lambda tf, t, o: tf.compat.v1.losses.log_loss(
            labels=t["labels"], predictions=t["probs"], **_v1_kwargs(tf, t, o))),
    "tf.nn.log_softmax": _Api(
        "log_softmax", lambda case: True,
        lambda tf, t, o: tf.nn.log_softmax(t["logits"], axis=o["axis"])),
    "tf.nn.softmax": _Api(
        "softmax", lambda case: True,
        lambda tf, t, o: tf.nn.softmax(t["logits"], axis=o["axis"])),
    "tf.nn.sampled_softmax_loss": _Api(
        "sampled_softmax", _sampled_expresses,
        lambda tf, t, o: tf.nn.sampled_softmax_loss(**_sampled_kwargs(t, o))),
    "tf.nn.nce_loss": _Api(
        "nce", _sampled_expresses,
        lambda tf, t, o: tf.nn.nce_loss(**_sampled_kwargs(t, o))),
}


def _forward_backward(api: str, options: tuple, names: tuple, wrt: tuple, *tensors):
    """The API's output and the gradients of its sum with respect to ``wrt`` (those not None)."""
    tf = _tensorflow()
    t = dict(zip(names, tensors))
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        for n in wrt:
            tape.watch(t[n])
        out = APIS[api].call(tf, t, dict(options))
        total = tf.reduce_sum(out)
    g = tape.gradient(total, [t[n] for n in wrt]) if wrt else []
    # None: the API stops the gradient into that input
    return out, {n: gi for n, gi in zip(wrt, g) if gi is not None}


@functools.lru_cache(maxsize=512)
def _compiled(api: str, options: tuple, names: tuple, wrt: tuple):
    """One XLA-compiled function per API and options; TensorFlow keeps one executable per input
    shape and dtype, so a case whose shapes were seen before is not compiled again."""
    return _tensorflow().function(functools.partial(_forward_backward, api, options, names, wrt),
                                  jit_compile=True)


_SPARSE_URL = "https://www.tensorflow.org/api_docs/python/tf/nn/sparse_softmax_cross_entropy_with_logits"


class TensorFlowAdapter(Adapter):
    name = "tensorflow"
    description = "TensorFlow tf.nn and tf.compat.v1.losses cross-entropy APIs, eager, default configuration"
    jit_compile = False

    def available(self) -> tuple[bool, str]:
        try:
            tf = _tensorflow()
        except ImportError as e:
            return False, f"tensorflow cannot be imported ({e})"
        return True, tf.__version__

    def apis(self, case: Case) -> list[str]:
        return [name for name, api in APIS.items() if api.variant == case.variant and api.expresses(case)]

    def evaluate(self, case: Case, api: str, grads: bool = True) -> Output:
        if api not in self.apis(case):
            raise ValueError(f"{self.name} API {api!r} cannot express this {case.variant} case")
        tf = _tensorflow()
        names = tuple(sorted(case.inputs))
        wrt = tuple(n for n in case.spec.grad_wrt if n in case.inputs) if grads else ()
        options = tuple(sorted(case.options.items()))
        run = _compiled(api, options, names, wrt) if self.jit_compile else \
            functools.partial(_forward_backward, api, options, names, wrt)
        out, g = run(*(tf.constant(case.inputs[n]) for n in names))
        return Output(out.numpy(), {n: gi.numpy() for n, gi in g.items()})

    def repro(self, case: Case, api: str) -> str | None:
        return repro_source(case, api, self.jit_compile) if api in self.apis(case) else None

    def contract(self, case: Case, api: str) -> Contract | None:
        if api != "tf.compat.v1.losses.log_loss":
            return None
        return Contract(
            "log-loss-epsilon", _LOG_LOSS_URL,
            "log_loss computes -z log(p + eps) - (1-z) log(1 - p + eps) with epsilon=1e-7, in float32",
            {"log_offset": _LOG_LOSS_EPSILON})


class TensorFlowXLAAdapter(TensorFlowAdapter):
    name = "tensorflow-xla"
    slow = True  # jit_compile: every new shape compiles
    description = "the same TensorFlow APIs inside tf.function(jit_compile=True), compiled by XLA"
    jit_compile = True

    def contract(self, case: Case, api: str) -> Contract | None:
        if api != "tf.nn.sparse_softmax_cross_entropy_with_logits":
            return super().contract(case, api)
        n_classes = case["logits"].shape[-1]
        if ((case["labels"] >= 0) & (case["labels"] < n_classes)).all():
            return None
        return Contract(
            "invalid-labels-give-nan-rows", _SPARSE_URL,
            "a class id outside [0, C) gives a NaN loss and gradient row instead of an error (documented for "
            "GPU; XLA compiles the same way on CPU)", {"nan_invalid_rows": True})


# -- reproducers -----------------------------------------------------------------------------------
# The call each API makes, as source: each input is in a variable of its name (`inputs_` for the
# input called "inputs", which would shadow the reproducer's `inputs`), options are literals.

def _var(name: str) -> str:
    return "inputs_" if name == "inputs" else name


def _literal(v) -> str:
    """``v`` as a Python literal that evaluates to exactly ``v``."""
    if isinstance(v, float) and not np.isfinite(v):
        return f"float({str(v)!r})"
    return repr(v)


def _v1_source(case: Case) -> str:
    weights = _var("weights") if "weights" in case.inputs else "1.0"
    return f"weights={weights}, reduction=tf.compat.v1.losses.Reduction.{_V1_REDUCTION[case.options['reduction']]}"


def _sampled_source(case: Case) -> str:
    v = {n: _var(n) for n in case.inputs}
    return (f"weights={v['embeddings']}, biases={v['biases']}, labels={v['labels']}, inputs={v['inputs']}, "
            f"num_sampled={case['sampled'].shape[0]}, num_classes={case['embeddings'].shape[0]}, "
            f"num_true={case['labels'].shape[1]}, "
            f"sampled_values=({v['sampled']}, {v['true_expected_count']}, {v['sampled_expected_count']}), "
            f"remove_accidental_hits={case.options['remove_accidental_hits']!r}")


def _call_source(case: Case, api: str) -> str:
    """The source of ``APIS[api].call`` on ``case``, options written in as literals."""
    o = {k: _literal(v) for k, v in case.options.items()}
    if api == "tf.nn.sigmoid_cross_entropy_with_logits":
        args = "labels=labels, logits=logits"
    elif api == "tf.nn.weighted_cross_entropy_with_logits":
        args = "labels=labels, logits=logits, pos_weight=pos_weight"
    elif api == "tf.compat.v1.losses.sigmoid_cross_entropy":
        args = (f"multi_class_labels=labels, logits=logits, label_smoothing={o['label_smoothing']}, "
                f"{_v1_source(case)}")
    elif api == "tf.nn.softmax_cross_entropy_with_logits":
        args = f"labels=labels, logits=logits, axis={o['axis']}"
    elif api == "tf.compat.v1.nn.softmax_cross_entropy_with_logits":
        args = f"labels=labels, logits=logits, dim={o['axis']}"
    elif api == "tf.compat.v1.losses.softmax_cross_entropy":
        args = (f"onehot_labels=labels, logits=logits, label_smoothing={o['label_smoothing']}, "
                f"{_v1_source(case)}")
    elif api == "tf.nn.sparse_softmax_cross_entropy_with_logits":
        args = "labels=labels, logits=logits"
    elif api == "tf.compat.v1.losses.sparse_softmax_cross_entropy":
        args = f"labels=labels, logits=logits, {_v1_source(case)}"
    elif api == "tf.compat.v1.losses.log_loss":
        args = f"labels=labels, predictions=probs, {_v1_source(case)}"
    elif api in ("tf.nn.log_softmax", "tf.nn.softmax"):
        args = f"logits, axis={o['axis']}"
    elif api in ("tf.nn.sampled_softmax_loss", "tf.nn.nce_loss"):
        args = _sampled_source(case)
    else:
        raise ValueError(f"no reproducer for {api!r}")
    return f"{api}({args})"


def repro_source(case: Case, api: str, jit_compile: bool) -> str:
    """The snippet of a standalone reproducer (conformance/repro.py): the call ``evaluate`` makes,
    eager or inside ``tf.function(jit_compile=True)``, and its gradients from the same tape."""
    names = sorted(case.inputs)
    wrt = [n for n in case.spec.grad_wrt if n in case.inputs]
    lines = ['import os', '', 'os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # as xent does: logging only',
             'import tensorflow as tf', '']
    if case.dtype == "bfloat16":
        lines += ["# numpy has no bfloat16: the float32 arrays' top 16 bits are the case's bfloat16 bits exactly",
                  "bfloat16 = lambda a: (a.view(np.uint32) >> 16).astype(np.uint16).view(tf.bfloat16.as_numpy_dtype)"]
    for n in names:
        float_bf16 = case.dtype == "bfloat16" and case[n].dtype.kind not in "iu"
        lines.append(f"{_var(n)} = tf.constant({f'bfloat16(inputs[{n!r}])' if float_bf16 else f'inputs[{n!r}]'})")
    body = ["with tf.GradientTape(watch_accessed_variables=False) as tape:"]
    body += [f"    tape.watch({_var(n)})" for n in wrt]
    body += [f"    out = {_call_source(case, api)}", "    total = tf.reduce_sum(out)"]
    wrt_list = "[" + ", ".join(_var(n) for n in wrt) + "]"
    names_list = "[" + ", ".join(repr(n) for n in wrt) + "]"
    args = ", ".join(_var(n) for n in names)
    if jit_compile:
        lines += ["", "", "@tf.function(jit_compile=True)", f"def forward_backward({args}):"]
        lines += ["    " + line for line in body]
        if wrt:
            lines += [f"    g = tape.gradient(total, {wrt_list})",
                      "    # None: the API stops the gradient into that input",
                      f"    return out, {{n: gi for n, gi in zip({names_list}, g) if gi is not None}}"]
        else:
            lines.append("    return out, {}")
        lines += ["", "", f"out, g = forward_backward({args})",
                  "value = out.numpy()", "grads = {n: gi.numpy() for n, gi in g.items()}"]
    else:
        lines += body
        lines.append("value = out.numpy()")
        if wrt:
            lines += [f"g = tape.gradient(total, {wrt_list})",
                      "# None: the API stops the gradient into that input",
                      f"grads = {{n: gi.numpy() for n, gi in zip({names_list}, g) if gi is not None}}"]
        else:
            lines.append("grads = {}")
    return "\n".join(lines)
