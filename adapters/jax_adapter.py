"""JAX and optax through the loss APIs users call, run eagerly (no ``jit``).

Gradients are those of ``sum(output)``: ``jax.vjp`` pulling back a cotangent of ones, which is what
``jax.grad`` of the summed loss computes. Two configurations of the same calls:

- ``jax``: JAX as installed, 64-bit types disabled. A float64 case silently becomes float32 on
  ``jnp.asarray`` and the answer comes back float32: verdict "dtype" where the float32 answer is
  exact, else "inaccurate" (in float64 ulps) with the message "returned float32 for a float64 case".
- ``jax-x64``: every call inside ``jax.enable_x64(True)`` (``jax.experimental.enable_x64()`` on
  older JAX), a context manager that changes the setting for the calling thread only, so both
  configurations run side by side in one process.

APIs (only what each one expresses itself: no weights, class weights or pos_weight, and
reduction ``none``, the only one they offer):

- ``optax.sigmoid_binary_cross_entropy``: ``sigmoid_bce_logits``; gradients into logits and labels.
- ``optax.softmax_cross_entropy``: ``softmax_ce_dense`` along ``axis``; gradients into both.
- ``optax.smooth_labels+softmax_cross_entropy``: the same with ``label_smoothing``, the labels
  smoothed by optax (``(1 - e) y + e / C``, the categorical convention).
- ``optax.safe_softmax_cross_entropy``: ``softmax_ce_dense`` with the class axis last (no ``axis``).
- ``optax.softmax_cross_entropy_with_integer_labels``: ``softmax_ce_sparse`` along ``axis``;
  ``ignore_index`` as ``where=labels != ignore_index``, which optax documents as the elements to
  include (an excluded row's loss is 0). Gradient into logits.
- ``jax.nn.log_softmax`` and ``jax.nn.softmax`` along ``axis``.

Nothing here imports JAX until a case is evaluated (or ``available`` is asked).
"""
from __future__ import annotations

import contextlib
import functools
import inspect

import numpy as np

from cases import Case

from .base import Adapter, Contract, Output

SIGMOID = "optax.sigmoid_binary_cross_entropy"
DENSE = "optax.softmax_cross_entropy"
SMOOTHED = "optax.smooth_labels+softmax_cross_entropy"
SAFE = "optax.safe_softmax_cross_entropy"
SPARSE = "optax.softmax_cross_entropy_with_integer_labels"
LOG_SOFTMAX = "jax.nn.log_softmax"
SOFTMAX = "jax.nn.softmax"

_UNSUPPORTED_INPUTS = ("weights", "class_weights", "pos_weight")


@functools.lru_cache(maxsize=1)
def _load():
    """(jax, jax.numpy, optax), imported once; ImportError when one is missing."""
    import jax
    import jax.numpy as jnp
    import optax

    return jax, jnp, optax


@functools.lru_cache(maxsize=None)
def _takes(fn_name: str, parameter: str) -> bool:
    """Whether the installed optax function ``fn_name`` has keyword ``parameter`` (axis, where)."""
    _, _, optax = _load()
    return parameter in inspect.signature(getattr(optax, fn_name)).parameters


def _has(fn_name: str) -> bool:
    _, _, optax = _load()
    return hasattr(optax, fn_name)


# optax gathers the label with jnp.take_along_axis, which normalises negative indices as NumPy does
_INDEXING_URL = "https://docs.jax.dev/en/latest/_autosummary/jax.numpy.take_along_axis.html"


class JaxAdapter(Adapter):
    name = "jax"
    slow = True  # eager JAX compiles every primitive for each new shape
    description = "optax losses and jax.nn, eager, JAX's default configuration (64-bit disabled)"
    _x64 = False  # whether _config enables 64-bit types (what a reproducer must do too)

    def available(self) -> tuple[bool, str]:
        try:
            jax, _, optax = _load()
        except ImportError as e:
            return False, f"not installed: {e}"
        return True, f"jax {jax.__version__}, optax {optax.__version__}"

    def _config(self):
        """The context the calls run in: JAX's default here, 64-bit enabled in ``jax-x64``."""
        return contextlib.nullcontext()

    def apis(self, case: Case) -> list[str]:
        v, opts = case.variant, case.options
        if v in ("log_softmax", "softmax"):
            return [LOG_SOFTMAX if v == "log_softmax" else SOFTMAX]
        if opts.get("reduction") != "none" or any(n in case.inputs for n in _UNSUPPORTED_INPUTS):
            return []
        smoothing = opts.get("label_smoothing", 0.0) != 0.0
        if v == "sigmoid_bce_logits":
            return [] if smoothing else [SIGMOID]
        if v not in ("softmax_ce_dense", "softmax_ce_sparse"):
            return []
        last = case.class_axis == case["logits"].ndim - 1
        if v == "softmax_ce_dense":
            if smoothing:
                ok = _has("smooth_labels") and (last or (_takes("smooth_labels", "axis")
                                                         and _takes("softmax_cross_entropy", "axis")))
                return [SMOOTHED] if ok else []
            out = [DENSE] if last or _takes("softmax_cross_entropy", "axis") else []
            return out + ([SAFE] if last and _has("safe_softmax_cross_entropy") else [])
        fn = "softmax_cross_entropy_with_integer_labels"
        if smoothing or not (last or _takes(fn, "axis")):
            return []
        if opts["ignore_index"] is not None and not _takes(fn, "where"):
            return []
        return [SPARSE]

    def contract(self, case: Case, api: str):
        """Integer labels are read by NumPy-style indexing: a negative id counts from the end."""
        if api != SPARSE or not (case["labels"] < 0).any():
            return None
        return Contract("negative-ids-count-from-the-end", _INDEXING_URL,
                        "a class id -C <= y < 0 selects class y + C (NumPy indexing), it is not rejected",
                        {"wrap_negative_ids": True})

    def evaluate(self, case: Case, api: str, grads: bool = True) -> Output:
        if api not in self.apis(case):
            raise ValueError(f"{self.name} API {api!r} cannot express this {case.variant} case")
        jax, jnp, optax = _load()
        with self._config():
            fn, names, args = _call(jnp, optax, jax, case, api)
            if not (grads and case.spec.grad_wrt):
                return Output(np.asarray(fn(*args)))
            # The gradient of sum(output), what jax.grad of the summed loss gives, is the pullback
            # of a cotangent of ones: jax.vjp gives it and the value from one forward pass.
            value, pullback = jax.vjp(fn, *args)
            g = pullback(jnp.ones_like(value))
            return Output(np.asarray(value), {name: np.asarray(gi) for name, gi in zip(names, g)})

    def repro(self, case: Case, api: str) -> str | None:
        return repro_source(case, api, x64=self._x64) if api in self.apis(case) else None


class JaxX64Adapter(JaxAdapter):
    name = "jax-x64"
    description = "optax losses and jax.nn, eager, with 64-bit types enabled (jax.enable_x64)"
    _x64 = True

    def _config(self):
        jax, _, _ = _load()
        if hasattr(jax, "enable_x64"):
            return jax.enable_x64(True)
        from jax.experimental import enable_x64  # JAX before the config context managers

        return enable_x64()


def _call(jnp, optax, jax, case: Case, api: str):
    """(fn, input names, arrays) for ``api`` on ``case``: ``fn(*arrays)`` is the API's answer, and
    every argument is an input the gradient is taken with respect to.

    Inputs go in at exactly the case dtype (``jnp.asarray`` keeps the 16-bit types; float64
    depends on the configuration); int64 class ids become JAX's default integer type.
    """
    axis = case.options.get("axis", -1)
    x = jnp.asarray(case["logits"])
    along = {} if case.class_axis is None or case.class_axis == x.ndim - 1 else {"axis": axis}
    if api == SIGMOID:
        return optax.sigmoid_binary_cross_entropy, ("logits", "labels"), (x, jnp.asarray(case["labels"]))
    if api in (LOG_SOFTMAX, SOFTMAX):
        fn = jax.nn.log_softmax if api == LOG_SOFTMAX else jax.nn.softmax
        return functools.partial(fn, axis=axis), ("logits",), (x,)
    if api in (DENSE, SAFE, SMOOTHED):
        y = jnp.asarray(case["labels"])
        if api == SAFE:
            return optax.safe_softmax_cross_entropy, ("logits", "labels"), (x, y)
        loss = functools.partial(optax.softmax_cross_entropy, **along)
        if api == DENSE:
            return loss, ("logits", "labels"), (x, y)
        e = case.options["label_smoothing"]

        def smoothed(logits, labels):
            return loss(logits, optax.smooth_labels(labels, e, **along))
        return smoothed, ("logits", "labels"), (x, y)
    if api == SPARSE:
        labels = jnp.asarray(case["labels"])
        ignore = case.options.get("ignore_index")
        where = {} if ignore is None else {"where": labels != ignore}
        fn = functools.partial(optax.softmax_cross_entropy_with_integer_labels, labels=labels, **along, **where)
        return fn, ("logits",), (x,)
    raise ValueError(f"unknown {api!r}")


# -- reproducers -----------------------------------------------------------------------------------

# bfloat16 inputs arrive in a reproducer as float32 arrays holding the values exactly (their bits
# << 16); taking the top 16 bits back gives the very array the adapter passed, NaN payloads included
# (a cast would round, and quiets signalling NaNs).
_BF16_HELPER = '''\
def bfloat16(a):  # float32 holding bfloat16 values -> the bfloat16 array, bit for bit
    return (a.view(np.uint32) >> 16).astype(np.uint16).view(jnp.bfloat16)
'''


def repro_source(case: Case, api: str, x64: bool = False) -> str:
    """The snippet of a standalone reproducer (conformance/repro.py): the call ``evaluate`` makes,
    the arrays made and the calls run inside the same x64 context when ``x64``."""
    axis = case.options.get("axis", -1)
    ndim = case["logits"].ndim
    along = "" if case.class_axis is None or case.class_axis == ndim - 1 else f", axis={axis!r}"
    head = ["import jax", "import jax.numpy as jnp"] + (["import optax"] if api.startswith("optax.") else [])
    head.append("")
    if case.dtype == "bfloat16":
        head += _BF16_HELPER.splitlines() + [""]
    body = []

    def array(name):
        src = f"inputs[{name!r}]"
        if case.dtype == "bfloat16" and case[name].dtype.kind not in "iu":
            src = f"bfloat16({src})"
        body.append(f"{name} = jnp.asarray({src})")

    array("logits")
    if api == SIGMOID:
        array("labels")
        body.append("fn = optax.sigmoid_binary_cross_entropy")
        names = ("logits", "labels")
    elif api in (LOG_SOFTMAX, SOFTMAX):
        fn = "jax.nn.log_softmax" if api == LOG_SOFTMAX else "jax.nn.softmax"
        body.append(f"fn = lambda logits: {fn}(logits, axis={axis!r})")
        names = ("logits",)
    elif api in (DENSE, SAFE, SMOOTHED):
        array("labels")
        names = ("logits", "labels")
        if api == SAFE:
            body.append("fn = optax.safe_softmax_cross_entropy")
        elif api == DENSE:
            body.append(f"fn = lambda logits, labels: optax.softmax_cross_entropy(logits, labels{along})")
        else:
            e = case.options["label_smoothing"]
            body.append("fn = lambda logits, labels: optax.softmax_cross_entropy("
                        f"logits, optax.smooth_labels(labels, {e!r}{along}){along})")
    elif api == SPARSE:
        array("labels")
        ignore = case.options.get("ignore_index")
        where = ""
        if ignore is not None:
            body.append(f"where = labels != {ignore!r}  # ignore_index, as the elements optax includes")
            where = ", where=where"
        body.append("fn = lambda logits: optax.softmax_cross_entropy_with_integer_labels("
                    f"logits, labels=labels{along}{where})")
        names = ("logits",)
    else:
        raise ValueError(f"unknown {api!r}")
    if case.spec.grad_wrt:
        body += [f"value, pullback = jax.vjp(fn, {', '.join(names)})",
                 "g = pullback(jnp.ones_like(value))  # the gradient of sum(value)",
                 "value = np.asarray(value)",
                 "grads = {" + ", ".join(f"{n!r}: np.asarray(g[{k}])" for k, n in enumerate(names)) + "}"]
    else:
        body += [f"value = np.asarray(fn({', '.join(names)}))", "grads = {}"]
    if not x64:
        return "\n".join(head + body)
    jax = _load()[0]  # the context manager the adapter uses, as this JAX spells it
    if hasattr(jax, "enable_x64"):
        ctx = "with jax.enable_x64(True):  # 64-bit types, for the calls in this block only"
    else:
        head.insert(2, "from jax.experimental import enable_x64")
        ctx = "with enable_x64():  # 64-bit types, for the calls in this block only"
    return "\n".join(head + [ctx] + ["    " + line for line in body])
