"""Keras 3 on each backend, and tf_keras (Keras 2), through the loss classes users instantiate.

Keras fixes its backend when it is imported (``KERAS_BACKEND``), so every backend runs in a worker
process of its own (``adapters._worker``); tf_keras does too, to keep TensorFlow out of the engine.
``_KerasImpl`` and ``_TfKerasImpl`` are the in-process adapters the workers serve; the registered
adapters below only name a worker. Inside, a loss object is built and called as a user would,
``loss(y_true, y_pred, sample_weight=weights)``, on backend tensors of exactly the case dtype; the
gradient of the sum of what it returns comes from the backend's autodiff.

Translations, each exact:
- ``BinaryCrossentropy`` averages over its ``axis`` (the last): the case's arrays get a trailing
  axis of size 1, so that the average is the element itself and ``weights`` keeps its shape.
- Reductions: none and sum are Keras's own; ``mean`` is "sum_over_batch_size" (a sum divided by
  the number of loss values) unless a target is ignored; ``weighted_mean`` is Keras 3's
  "mean_with_sample_weight" (tf_keras: "sum_over_batch_size" without weights, which with
  ``ignore_class`` divides by the number of targets kept); ``sum_over_nonzero_weights`` is
  "sum_over_batch_size" when no kept target has weight zero.
- Not expressible: ``pos_weight``, ``class_weights``, label smoothing of integer labels, and
  (tf_keras) a class axis other than the last for integer labels.

The reproducers (``repro``, conformance/repro.py) are written in the parent, without the framework:
what the worker does, ``KERAS_BACKEND`` set before keras is imported.
"""
from __future__ import annotations

import numpy as np

from cases import Case

from ._worker import WorkerAdapter
from .base import Adapter, Contract, Output

_KERAS_DOC = "https://keras.io/api/losses/probabilistic_losses/"
_TF_KERAS_SRC = "https://github.com/keras-team/tf-keras/blob/master/tf_keras/src/backend.py"

# variant -> (loss class, from_logits)
_LOSSES = {
    "sigmoid_bce_logits": ("BinaryCrossentropy", True),
    "bce_probs": ("BinaryCrossentropy", False),
    "softmax_ce_dense": ("CategoricalCrossentropy", True),
    "categorical_ce_probs": ("CategoricalCrossentropy", False),
    "softmax_ce_sparse": ("SparseCategoricalCrossentropy", True),
}
_BINARY = ("sigmoid_bce_logits", "bce_probs")


def _api_name(variant: str) -> str:
    cls, from_logits = _LOSSES[variant]
    return f"{cls}(from_logits={from_logits})"


def _kept(case: Case) -> np.ndarray | None:
    """Which units count (integer labels not equal to ignore_index); None: all of them."""
    ignore = case.options.get("ignore_index")
    if case.variant != "softmax_ce_sparse" or ignore is None:
        return None
    return case["labels"] != ignore


class _Flavour:
    """What Keras 3's loss classes express and the arguments they get, framework-free: shared by the
    in-process adapter (in the worker) and the reproducers (written in the parent)."""

    #: the package that has the loss classes
    module = "keras"
    #: Keras 3's reduction that divides by the sum of the sample weights (None: it has none).
    weighted_mean_reduction: str | None = "mean_with_sample_weight"
    #: whether SparseCategoricalCrossentropy takes an ``axis``
    sparse_axis = True

    def apis(self, case: Case) -> list[str]:
        if case.variant not in _LOSSES or "pos_weight" in case.inputs or "class_weights" in case.inputs:
            return []
        if case.variant == "softmax_ce_sparse":
            if case.options["label_smoothing"] != 0:
                return []
            if not self.sparse_axis and case.class_axis != case["logits"].ndim - 1:
                return []
        return [] if self._reduction(case) is None else [_api_name(case.variant)]

    def _reduction(self, case: Case) -> str | None:
        r, w, kept = case.options["reduction"], case.get("weights"), _kept(case)
        ignored = kept is not None and not kept.all()
        if r in ("none", "sum"):
            return r
        if r == "mean":
            return None if ignored else "sum_over_batch_size"
        if r == "weighted_mean":
            return self.weighted_mean_reduction or ("sum_over_batch_size" if w is None else None)
        if r == "sum_over_nonzero_weights":
            all_nonzero = w is None or bool(np.all(w[kept] != 0 if kept is not None else w != 0))
            return "sum_over_batch_size" if all_nonzero else None
        return None

    def loss_arguments(self, case: Case) -> tuple[str, dict, str, list[str]]:
        """(the loss class's name, its keyword arguments, the prediction input, the inputs whose
        gradient is taken) for a case ``apis`` expresses."""
        cls, from_logits = _LOSSES[case.variant]
        kwargs = {"from_logits": from_logits, "reduction": self._reduction(case)}
        if case.variant == "softmax_ce_sparse":
            kwargs["ignore_class"] = case.options["ignore_index"]
            if self.sparse_axis:
                kwargs["axis"] = case.options["axis"]
        else:
            kwargs["label_smoothing"] = case.options["label_smoothing"]
            if case.variant not in _BINARY:
                kwargs["axis"] = case.options["axis"]
        pred = "probs" if "probs" in case.inputs else "logits"
        wrt = [pred] + (["labels"] if "labels" in case.spec.grad_wrt else [])
        return cls, kwargs, pred, wrt


class _TfKerasFlavour(_Flavour):
    module = "tf_keras"
    weighted_mean_reduction = None
    sparse_axis = False


class _KerasImpl(_Flavour, Adapter):
    """Keras 3 on the backend this process imported it with."""

    def __init__(self):
        import keras

        self.keras = keras
        self.backend = keras.backend.backend()
        self._run = {"tensorflow": _run_tf, "jax": _run_jax, "torch": _run_torch}[self.backend]

    def available(self) -> tuple[bool, str]:
        backend = __import__(self.backend)
        return True, f"keras {self.keras.__version__}, {self.backend} {backend.__version__}"

    # -- documented deviations ------------------------------------------------------------------
    def epsilon(self) -> float:
        return self.keras.config.epsilon()

    def compute_dtype(self, case: Case) -> np.dtype:
        """The dtype the loss computes in: Keras 3 casts both inputs to the loss's dtype (floatx)."""
        return np.dtype(self.keras.config.floatx())

    def contract(self, case: Case, api: str) -> Contract | None:
        if case.variant not in ("bce_probs", "categorical_ce_probs"):
            return None
        dt, eps = self.compute_dtype(case), self.epsilon()
        # clip(p, epsilon, 1.0 - epsilon): both bounds Python floats, converted to the tensor dtype
        clip = [float(dt.type(eps)), float(dt.type(1.0 - eps))]
        if case.variant == "bce_probs":
            return Contract("keras-clip-epsilon", _KERAS_DOC,
                            f"probabilities clipped to [epsilon, 1 - epsilon], epsilon = {eps!r} in {dt}",
                            {"clip": clip})
        return Contract("keras-renormalize-clip-epsilon", _KERAS_DOC,
                        f"each row divided by its sum, then clipped to [epsilon, 1 - epsilon], "
                        f"epsilon = {eps!r} in {dt}", {"renormalize": True, "clip": clip})

    # -- evaluation -----------------------------------------------------------------------------
    def loss_class(self, name: str):
        return getattr(self.keras.losses, name)

    def evaluate(self, case: Case, api: str, grads: bool = True) -> Output:
        if api not in self.apis(case):
            raise ValueError(f"{api!r} cannot express {case!r}")
        cls, kwargs, pred, wrt = self.loss_arguments(case)
        y_pred, y_true = case[pred], case["labels"]
        binary = case.variant in _BINARY
        if binary:
            y_pred, y_true = y_pred[..., None], y_true[..., None]
        loss = self.loss_class(cls)(**kwargs)
        arrays = {pred: y_pred, "labels": y_true, "weights": case.get("weights")}
        value, g = self._run(loss, arrays, wrt if grads else [], pred)
        if binary:
            g = {k: v[..., 0] for k, v in g.items()}
        return Output(value, g)


class _TfKerasImpl(_TfKerasFlavour, _KerasImpl):
    """tf_keras (Keras 2): computes in the dtype of y_pred, and logs p + epsilon in BCE."""

    def __init__(self):
        import tf_keras

        self.keras = tf_keras
        self.backend = "tensorflow"
        self._run = _run_tf

    def available(self) -> tuple[bool, str]:
        import tensorflow as tf

        return True, f"tf_keras {self.keras.__version__}, tensorflow {tf.__version__}"

    def epsilon(self) -> float:
        return self.keras.backend.epsilon()

    def compute_dtype(self, case: Case) -> np.dtype:
        return case.format.np_dtype

    def contract(self, case: Case, api: str) -> Contract | None:
        if case.variant not in ("bce_probs", "categorical_ce_probs"):
            return None
        dt, eps = self.compute_dtype(case), self.epsilon()
        e = np.array(eps, dtype=dt)  # epsilon_ = _constant_to_tensor(epsilon(), dtype)
        clip = [float(e), float(np.array(1.0, dtype=dt) - e)]  # clip_by_value(p, epsilon_, 1.0 - epsilon_)
        if case.variant == "bce_probs":
            # -(z log(p + epsilon()) + (1 - z) log(1 - p + epsilon())) on the clipped p
            return Contract("tf_keras-clip-log-epsilon", _TF_KERAS_SRC,
                            f"binary_crossentropy: p clipped to [epsilon, 1 - epsilon], then log(p + epsilon) "
                            f"and log(1 - p + epsilon), epsilon = {eps!r} in {dt}",
                            {"clip": clip, "log_offset": float(e)})
        return Contract("tf_keras-renormalize-clip-epsilon", _TF_KERAS_SRC,
                        f"categorical_crossentropy: each row divided by its sum, then clipped to "
                        f"[epsilon, 1 - epsilon], epsilon = {eps!r} in {dt}", {"renormalize": True, "clip": clip})


# -- one call and its gradient, per backend --------------------------------------------------------
# Each takes the loss object, the arrays by input name (``labels``, ``weights`` and the prediction
# ``pred``), the names to differentiate with respect to, and returns (value, {name: gradient}) as
# numpy arrays of the dtypes the backend produced.

def _call(loss, t: dict, pred: str):
    return loss(t["labels"], t[pred], sample_weight=t["weights"])


def _run_tf(loss, arrays: dict, wrt: list, pred: str):
    import tensorflow as tf

    t = {k: None if v is None else tf.constant(v) for k, v in arrays.items()}
    with tf.GradientTape() as tape:
        for k in wrt:
            tape.watch(t[k])
        out = _call(loss, t, pred)
        total = tf.reduce_sum(out)
    g = tape.gradient(total, [t[k] for k in wrt]) if wrt else []
    return out.numpy(), {k: v.numpy() for k, v in zip(wrt, g) if v is not None}


def _run_jax(loss, arrays: dict, wrt: list, pred: str):
    import jax
    import jax.numpy as jnp

    t = {k: None if v is None else jnp.asarray(v) for k, v in arrays.items()}

    def total(*xs):
        out = _call(loss, {**t, **dict(zip(wrt, xs))}, pred)
        return jnp.sum(out), out

    if not wrt:
        return np.asarray(total()[1]), {}
    (_, out), g = jax.value_and_grad(total, argnums=tuple(range(len(wrt))), has_aux=True)(*[t[k] for k in wrt])
    return np.asarray(out), {k: np.asarray(v) for k, v in zip(wrt, g)}


def _run_torch(loss, arrays: dict, wrt: list, pred: str):
    t = {k: None if v is None else _to_torch(v) for k, v in arrays.items()}
    for k in wrt:
        t[k].requires_grad_(True)
    out = _call(loss, t, pred)
    if wrt:
        out.sum().backward()
    return _from_torch(out), {k: _from_torch(t[k].grad) for k in wrt if t[k].grad is not None}


def _to_torch(a: np.ndarray):
    import torch

    if a.dtype.name == "bfloat16":  # torch.from_numpy does not know ml_dtypes' bfloat16: same bits
        return torch.from_numpy(np.array(a).view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(np.array(a))


def _from_torch(t) -> np.ndarray:
    import torch

    t = t.detach().cpu()
    if t.dtype == torch.bfloat16:
        import ml_dtypes

        return t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return t.numpy()


# -- reproducers -----------------------------------------------------------------------------------

def _literal(v) -> str:
    """``v`` as a Python literal that evaluates to exactly ``v``."""
    if isinstance(v, float) and not np.isfinite(v):
        return f"float({str(v)!r})"
    return repr(v)


def repro_source(case: Case, flavour: _Flavour, backend: str) -> str:
    """The snippet of a standalone reproducer (conformance/repro.py): what the worker's ``evaluate``
    does for ``case``, with ``flavour``'s package (keras or tf_keras) on ``backend``."""
    cls, kwargs, pred, wrt = flavour.loss_arguments(case)
    binary = case.variant in _BINARY
    bf16 = case.dtype == "bfloat16"
    module = flavour.module
    lines = ["import os", ""]
    if module == "keras":
        lines.append(f'os.environ["KERAS_BACKEND"] = "{backend}"  # Keras fixes its backend when imported')
    if backend == "tensorflow":
        lines.append('os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # logging only')
    lines.append(f"import {module}")
    lines += {"tensorflow": ["import tensorflow as tf"], "jax": ["import jax", "import jax.numpy as jnp"],
              "torch": ["import torch"]}[backend]
    lines.append("")
    if bf16:
        lines.append("# numpy has no bfloat16: the float32 arrays' top 16 bits are the case's bfloat16 bits exactly")
        bits = "(a.view(np.uint32) >> 16).astype(np.uint16)"
        lines.append("bfloat16 = lambda a: " + {
            "tensorflow": f"{bits}.view(tf.bfloat16.as_numpy_dtype)",
            "jax": f"{bits}.view(jnp.bfloat16)",
            "torch": f"torch.from_numpy({bits}.view(np.int16)).view(torch.bfloat16)",
        }[backend])
    args = ", ".join(f"{k}={_literal(v)}" for k, v in kwargs.items())
    lines.append(f"loss = {module}.losses.{cls}({args})")
    if binary:
        lines.append(f"# {cls} averages over the last axis: a trailing axis of size 1 makes it the element itself")
    names = [pred, "labels", "weights"]
    for n in names:
        if n not in case.inputs:
            lines.append(f"{n} = None")
            continue
        a = f"inputs[{n!r}]" + ("[..., None]" if binary and n != "weights" else "")
        float_bf16 = bf16 and case[n].dtype.kind not in "iu"
        if backend == "torch":
            lines.append(f"{n} = bfloat16({a})" if float_bf16 else f"{n} = torch.from_numpy({a}.copy())")
        else:
            a = f"bfloat16({a})" if float_bf16 else a
            lines.append(f"{n} = {'tf.constant' if backend == 'tensorflow' else 'jnp.asarray'}({a})")
    call = f"loss(labels, {pred}, sample_weight=weights)"
    trailing = "[..., 0]" if binary else ""
    wrt_list = ", ".join(wrt)
    if backend == "tensorflow":
        lines += ["with tf.GradientTape() as tape:"] + [f"    tape.watch({n})" for n in wrt]
        lines += [f"    out = {call}", "    total = tf.reduce_sum(out)",
                  f"g = tape.gradient(total, [{wrt_list}])", "value = out.numpy()",
                  f"grads = {{n: gi.numpy(){trailing} for n, gi in zip({wrt!r}, g) if gi is not None}}"]
    elif backend == "jax":
        lines += ["", f"def total({wrt_list}):", f"    out = {call}", "    return jnp.sum(out), out", "",
                  f"(_, out), g = jax.value_and_grad(total, argnums={tuple(range(len(wrt)))!r}, has_aux=True)"
                  f"({wrt_list})",
                  "value = np.asarray(out)",
                  "grads = {" + ", ".join(f"{n!r}: np.asarray(g[{k}]){trailing}" for k, n in enumerate(wrt)) + "}"]
    else:
        lines += [f"{n}.requires_grad_(True)" for n in wrt]
        lines += [f"out = {call}", "out.sum().backward()"]
        pairs = "[" + ", ".join(f"({n!r}, {n})" for n in wrt) + "]"
        if bf16:
            lines += ["", "", "def to_numpy(name, t):  # numpy has no bfloat16: exactly as float32, the dtype noted",
                      "    t = t.detach().cpu()", "    if t.dtype == torch.bfloat16:",
                      "        dtypes[name] = 'bfloat16'", "        return t.float().numpy()", "    return t.numpy()",
                      "", "", "value = to_numpy('value', out)",
                      f"grads = {{n: to_numpy(n, x.grad){trailing} for n, x in {pairs} if x.grad is not None}}"]
        else:
            lines += ["value = out.detach().cpu().numpy()",
                      f"grads = {{n: x.grad.detach().cpu().numpy(){trailing} for n, x in {pairs}"
                      " if x.grad is not None}"]
    return "\n".join(lines)


# -- the registered adapters: each a worker with its backend ---------------------------------------

class _KerasWorkerAdapter(WorkerAdapter):
    """A Keras adapter served by a worker; its reproducers are written here, without the framework."""

    flavour: _Flavour = _Flavour()
    backend = "tensorflow"

    def repro(self, case: Case, api: str) -> str | None:
        # flavour.apis is what the worker's apis answers (the same method), asked without a worker
        return repro_source(case, self.flavour, self.backend) if api in self.flavour.apis(case) else None


class KerasTensorFlowAdapter(_KerasWorkerAdapter):
    name = "keras-tensorflow"
    description = "Keras 3 loss classes on the TensorFlow backend, in a worker process"
    target = "adapters.keras_adapter:_KerasImpl"
    env = {"KERAS_BACKEND": "tensorflow"}
    requires = ("keras", "tensorflow")


class KerasJaxAdapter(_KerasWorkerAdapter):
    name = "keras-jax"
    slow = True  # JAX underneath: every new shape compiles
    description = "Keras 3 loss classes on the JAX backend (64-bit off, its default), in a worker process"
    target = "adapters.keras_adapter:_KerasImpl"
    env = {"KERAS_BACKEND": "jax"}
    requires = ("keras", "jax")
    backend = "jax"


class KerasTorchAdapter(_KerasWorkerAdapter):
    name = "keras-torch"
    description = "Keras 3 loss classes on the PyTorch backend, in a worker process"
    target = "adapters.keras_adapter:_KerasImpl"
    env = {"KERAS_BACKEND": "torch"}
    requires = ("keras", "torch")
    backend = "torch"


class TfKerasAdapter(_KerasWorkerAdapter):
    name = "tf_keras"
    description = "tf_keras (Keras 2) loss classes on TensorFlow, in a worker process"
    target = "adapters.keras_adapter:_TfKerasImpl"
    requires = ("tf_keras", "tensorflow")
    flavour = _TfKerasFlavour()
