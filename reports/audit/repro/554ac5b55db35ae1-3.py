#!/usr/bin/env python3
"""xent reproducer: keras-tensorflow / BinaryCrossentropy(from_logits=False): bce_probs bfloat16, verdict dtype.

`keras-tensorflow/BinaryCrossentropy(from_logits=False)` bce_probs bfloat16: dtype at (0, 0) —
returned float32 for a bfloat16 case (p=0, z=1) [case 554ac5b55db35ae1]

Case 554ac5b55db35ae1 (regime:edge_probs; shrunk). Needs only numpy and the framework (keras-tensorflow keras 3.15.1, tensorflow 2.21.0).
Run: python 554ac5b55db35ae1.py        (exit 0: the divergence reproduced; 1: it did not)
     python 554ac5b55db35ae1.py --json (every output element as hex)
"""
import json
import sys

import numpy as np

DTYPE = 'bfloat16'
VERDICT = 'dtype'
QUANTITY = 'value'  # "value", or "grad:<input>" for the gradient of sum(value) w.r.t. an input
INDEX = (0, 0)  # the element xent reported (None: the whole output)
RECORDED = '0x1.01e3b8p+4'  # what xent saw the call return there (float.hex of the value; None: no number)
TRUTH = 'inf'  # the certified, correctly rounded value in bfloat16 (float.hex)
MESSAGE = 'returned float32 for a bfloat16 case'


def _array(tokens, shape, dtype):
    """Bit-exact inputs: float.hex strings (or ints) into an array of the case dtype; a NaN other
    than the canonical one is "nan:<its bit pattern in the dtype>"."""
    if dtype == "int64":
        return np.array(tokens, dtype=np.int64).reshape(shape)
    # bfloat16 has no numpy dtype: float32 holds every bfloat16 value exactly (its bits << 16).
    np_dtype = {"float16": np.float16, "float32": np.float32, "bfloat16": np.float32,
                "float64": np.float64}[dtype]
    uint = {"float16": np.uint16, "float32": np.uint32, "bfloat16": np.uint32, "float64": np.uint64}[dtype]
    out = np.empty(len(tokens), dtype=np_dtype)
    for k, t in enumerate(tokens):
        if t.startswith("nan:"):
            bits = int(t[4:], 16) << (16 if dtype == "bfloat16" else 0)
            out[k] = np.array([bits], dtype=uint).view(np_dtype)[0]
        else:
            out[k] = float.fromhex(t)
    return out.reshape(shape)


inputs = {
    'labels': _array(["0x1.0000000000000p+0"], (1, 1), 'bfloat16'),
    'probs': _array(["0x0.0p+0"], (1, 1), 'bfloat16'),
}


def call(inputs):
    dtypes = {}
    import os

    os.environ["KERAS_BACKEND"] = "tensorflow"  # Keras fixes its backend when imported
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # logging only
    import keras
    import tensorflow as tf

    # numpy has no bfloat16: the float32 arrays' top 16 bits are the case's bfloat16 bits exactly
    bfloat16 = lambda a: (a.view(np.uint32) >> 16).astype(np.uint16).view(tf.bfloat16.as_numpy_dtype)
    loss = keras.losses.BinaryCrossentropy(from_logits=False, reduction='none', label_smoothing=0.0)
    # BinaryCrossentropy averages over the last axis: a trailing axis of size 1 makes it the element itself
    probs = tf.constant(bfloat16(inputs['probs'][..., None]))
    labels = tf.constant(bfloat16(inputs['labels'][..., None]))
    weights = None
    with tf.GradientTape() as tape:
        tape.watch(probs)
        tape.watch(labels)
        out = loss(labels, probs, sample_weight=weights)
        total = tf.reduce_sum(out)
    g = tape.gradient(total, [probs, labels])
    value = out.numpy()
    grads = {n: gi.numpy()[..., 0] for n, gi in zip(['probs', 'labels'], g) if gi is not None}
    return value, grads, dtypes


def _hex(x):
    return float(np.asarray(x, dtype=np.float64)).hex()


def _same(a, b):
    """The same number (NaN matches NaN; -0.0 does not match 0.0)."""
    return (np.isnan(a) and np.isnan(b)) or (a == b and np.signbit(a) == np.signbit(b))


def main():
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="backslashreplace")  # any message prints, whatever it holds
    try:
        value, grads, dtypes = call(inputs)
    except Exception as e:  # the verdict "raised" is an exception where the truth is defined
        print(f"the call raised {type(e).__name__}: {e}")
        if "--json" in sys.argv:
            print(json.dumps({"raised": type(e).__name__}))
            return 0 if VERDICT == "raised" else 1
        ok = VERDICT == "raised"
        print(("REPRODUCED: " if ok else "NOT REPRODUCED: ") + VERDICT + (f" ({MESSAGE})" if MESSAGE else ""))
        return 0 if ok else 1
    if "--json" in sys.argv:
        out = {"value": _dump(value, dtypes.get("value")),
               "grads": {k: _dump(g, dtypes.get(k)) for k, g in grads.items()}}
        print(json.dumps(out))
        return 0
    got = value if QUANTITY == "value" else grads.get(QUANTITY[5:])
    if got is None:
        print(f"the call returned no {QUANTITY}")
        return 1
    got = np.asarray(got)
    got_dtype = dtypes.get("value" if QUANTITY == "value" else QUANTITY[5:], got.dtype.name)
    print(f"returned {QUANTITY}: dtype {got_dtype}, shape {list(got.shape)}")
    if VERDICT == "raised":
        print("expected an exception (" + MESSAGE + "), but the call returned")
        return 1
    if VERDICT in ("dtype", "shape"):
        print(MESSAGE)
        ok = (VERDICT == "dtype" and got_dtype != DTYPE) or (VERDICT == "shape" and MESSAGE.startswith(
            f"returned shape {list(got.shape)}"))
    else:
        element = got.reshape(-1)[0] if INDEX is None and got.size else got[tuple(INDEX or ())]
        here = _hex(element)
        where = "" if INDEX is None else f" at {tuple(INDEX)}"
        print(f"{QUANTITY}{where}: returned {here} ({float.fromhex(here)!r})")
        if TRUTH is not None:
            print(f"{QUANTITY}{where}: certified truth {TRUTH} ({float.fromhex(TRUTH)!r}) in {DTYPE}")
        ok = RECORDED is not None and _same(float.fromhex(here), float.fromhex(RECORDED))
    print(("REPRODUCED: " if ok else "NOT REPRODUCED: ") + VERDICT + (f" ({MESSAGE})" if MESSAGE else ""))
    return 0 if ok else 1


def _dump(a, dtype=None):
    a = np.asarray(a)
    return {"dtype": dtype or a.dtype.name, "shape": list(a.shape),
            "hex": [float(x).hex() for x in np.asarray(a, dtype=np.float64).reshape(-1)]}


if __name__ == "__main__":
    sys.exit(main())
