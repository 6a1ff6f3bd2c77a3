#!/usr/bin/env python3
"""xent reproducer: tensorflow / tf.nn.sampled_softmax_loss: sampled_softmax float64, verdict inaccurate.

`tensorflow/tf.nn.sampled_softmax_loss` sampled_softmax float64: inaccurate at (0,) — returned
696.4688803550895 where the loss is 0.20784606782024537 (5.27e+16 ulp, allowed 44.769; condition
number 20.3) (inputs=[1, -1, 0, -8, … (8 values)], embeddings=[-2.831539303176273,
0.0031899943433678184, -3, -0, … (20 values)], biases=[9, 1.175494351e-38,
-5.9604644775390625e-08, 1, … (5 values)], z=[4, 4], sampled=[1, 2, 0, 4, … (5 values)],
true_expected_count=[0.8658564834478764, 0.8100908028683342], sampled_expected_count=[3,
4.000000000000139, 1, 2.916448807825375e-303, … (5 values)]) [case 8ccea3a014771e87]

Case 8ccea3a014771e87 (regime:accidental_hits; shrunk). Needs only numpy and the framework (tensorflow 2.21.0).
Run: python 8ccea3a014771e87.py        (exit 0: the divergence reproduced; 1: it did not)
     python 8ccea3a014771e87.py --json (every output element as hex)
"""
import json
import sys

import numpy as np

DTYPE = 'float64'
VERDICT = 'inaccurate'
QUANTITY = 'value'  # "value", or "grad:<input>" for the gradient of sum(value) w.r.t. an input
INDEX = (0,)  # the element xent reported (None: the whole output)
RECORDED = '0x1.5c3c04457f6c5p+9'  # what xent saw the call return there (float.hex of the value; None: no number)
TRUTH = '0x1.a9ab32ff1f07fp-3'  # the certified, correctly rounded value in float64 (float.hex)
MESSAGE = ''


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
    'biases': _array([
        "0x1.2000000000000p+3", "0x1.00000000a639bp-126", "-0x1.0000000000000p-24",
        "0x1.0000000000000p+0", "0x1.0000000000000p+0"
    ], (5,), 'float64'),
    'embeddings': _array([
        "-0x1.6a6fe1403d884p+1", "0x1.a21e72c225298p-9", "-0x1.8000000000000p+1", "-0x0.0p+0",
        "-0x1.0000000000000p+0", "-0x1.da6709cc2f215p-155", "0x1.0000000000000p+0",
        "0x1.c000000000000p+2", "0x1.0000000000000p+0", "0x1.0000000000000p+2", "0x1.7610657cdc0b8p-7",
        "0x1.0000000000000p-1", "0x0.0p+0", "0x1.0000000000000p+0", "-0x1.0000000000000p+1",
        "0x1.000053e2d6239p+1", "-0x1.8093de37c9b55p-48", "0x1.8376b00b85378p+0",
        "-0x1.56aec1e3ebd15p-773", "-0x1.0000000000000p+0"
    ], (5, 4), 'float64'),
    'inputs': _array([
        "0x1.0000000000000p+0", "-0x1.0000000000000p+0", "0x0.0p+0", "-0x1.0000000000000p+3",
        "0x1.0000000000000p+3", "0x1.0000000000000p+3", "-0x1.0000000000000p+0", "-0x1.0000000000000p+0"
    ], (2, 4), 'float64'),
    'labels': _array([4, 4], (2, 1), 'int64'),
    'sampled': _array([1, 2, 0, 4, 4], (5,), 'int64'),
    'sampled_expected_count': _array([
        "0x1.8000000000000p+1", "0x1.000000000009dp+2", "0x1.0000000000000p+0",
        "0x1.00000000010fcp-1005", "0x1.0000000000000p-1"
    ], (5,), 'float64'),
    'true_expected_count': _array(["0x1.bb518a7ee05b0p-1", "0x1.9ec438c238420p-1"], (2, 1), 'float64'),
}


def call(inputs):
    dtypes = {}
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # as xent does: logging only
    import tensorflow as tf

    biases = tf.constant(inputs['biases'])
    embeddings = tf.constant(inputs['embeddings'])
    inputs_ = tf.constant(inputs['inputs'])
    labels = tf.constant(inputs['labels'])
    sampled = tf.constant(inputs['sampled'])
    sampled_expected_count = tf.constant(inputs['sampled_expected_count'])
    true_expected_count = tf.constant(inputs['true_expected_count'])
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        out = tf.nn.sampled_softmax_loss(weights=embeddings, biases=biases, labels=labels, inputs=inputs_, num_sampled=5, num_classes=5, num_true=1, sampled_values=(sampled, true_expected_count, sampled_expected_count), remove_accidental_hits=True)
        total = tf.reduce_sum(out)
    value = out.numpy()
    grads = {}
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
