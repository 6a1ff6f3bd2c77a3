#!/usr/bin/env python3
"""xent reproducer: tensorflow / tf.nn.sampled_softmax_loss: sampled_softmax float64, verdict underflow.

`tensorflow/tf.nn.sampled_softmax_loss` sampled_softmax float64: underflow at (3,) — returned 0
where the loss is 1.4758132571081075e-198 (1.65e+18 ulp, allowed 652.015; condition number 363)
(inputs=[-1, -2.225073858507203e-309, 0, 4.723248956770255e-227, … (12 values)], embeddings=[2,
8, -8.059006244474881e-159, -8.629550015338915e-116, … (30 values)], biases=[20,
4.602548083397473, -5.545177444479565, 9.068468662987005, … (10 values)], z=[6, 6, 8, 4],
sampled=[7, 9, 2, 8, … (5 values)], true_expected_count=[0.6612975834975124, 0.693048935452276,
2, 0.5], sampled_expected_count=[0.6429252967465815, 2, 0.01835374888897979,
8.805254571732209e-134, … (5 values)], remove_accidental_hits=False) [case d8234195fa2ace48]

Case d8234195fa2ace48 (regime:overflow_edge_logits; shrunk). Needs only numpy and the framework (tensorflow 2.21.0).
Run: python d8234195fa2ace48.py        (exit 0: the divergence reproduced; 1: it did not)
     python d8234195fa2ace48.py --json (every output element as hex)
"""
import json
import sys

import numpy as np

DTYPE = 'float64'
VERDICT = 'underflow'
QUANTITY = 'value'  # "value", or "grad:<input>" for the gradient of sum(value) w.r.t. an input
INDEX = (3,)  # the element xent reported (None: the whole output)
RECORDED = '0x0p+0'  # what xent saw the call return there (float.hex of the value; None: no number)
TRUTH = '0x1.c3dd6415d7d96p-658'  # the certified, correctly rounded value in float64 (float.hex)
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
        "0x1.4000000000000p+4", "0x1.269025d61d6a8p+2", "-0x1.62e42fefa39f2p+2", "0x1.2230e5318a8fap+3",
        "0x1.74385446d71c4p+9", "-0x1.7fab4de3ba5b0p-7", "-0x1.80fc5bac75650p-10",
        "-0x1.62e02faf9e493p+3", "-0x1.194b3b5fdee18p+3", "0x1.0000000000000p-1"
    ], (10,), 'float64'),
    'embeddings': _array([
        "0x1.0000000000000p+1", "0x1.0000000000000p+3", "-0x1.c535ad8f03393p-526",
        "-0x1.b33a45ba62b87p-383", "0x1.0000000000000p+0", "-0x1.99c6406f42550p+1",
        "0x1.0000000000000p+0", "-0x1.0000000000000p+0", "-0x1.0000000000000p+1",
        "-0x1.e666666666666p+0", "-0x1.0000000000000p+0", "-0x1.e2f14cfd8f100p-7",
        "0x1.eadbf204e803cp-7", "-0x1.4000000000000p+2", "-0x1.0000000000000p+0",
        "0x1.0000000000000p+0", "0x1.fffffffffffffp-7", "0x1.0554b578f7b80p+0",
        "-0x1.0000000000000p-24", "0x1.6d98e06094370p-7", "-0x1.8000000000000p+2",
        "0x1.0000000000000p-1", "-0x1.c000000000000p+2", "0x1.704bb8fbe17bcp-7",
        "-0x1.00000000a639bp-126", "-0x1.8000000000000p+2", "-0x1.c000000000000p+2",
        "-0x1.0000000000000p+3", "0x1.0cfa8ef9712c0p-7", "0x1.dbd4f96475834p-8"
    ], (10, 3), 'float64'),
    'inputs': _array([
        "-0x1.0000000000000p+0", "-0x0.199999999999ap-1022", "0x0.0p+0", "0x1.1e714b6acaafcp-752",
        "0x1.0000000000000p+3", "0x1.0000000000000p+0", "-0x1.0000000000000p+0",
        "-0x1.0000000000000p+0", "-0x1.0000000000000p+0", "-0x1.0000000000000p+1",
        "0x1.0000000000000p+3", "-0x0.0000000000001p-1022"
    ], (4, 3), 'float64'),
    'labels': _array([6, 6, 8, 4], (4, 1), 'int64'),
    'sampled': _array([7, 9, 2, 8, 3], (5,), 'int64'),
    'sampled_expected_count': _array([
        "0x1.492d812698674p-1", "0x1.0000000000000p+1", "0x1.2cb533cf2db42p-6",
        "0x1.0000000002bb4p-442", "0x1.0000000000000p+1"
    ], (5,), 'float64'),
    'true_expected_count': _array([
        "0x1.529598cc175edp-1", "0x1.62d74f60971cap-1", "0x1.0000000000000p+1", "0x1.0000000000000p-1"
    ], (4, 1), 'float64'),
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
        out = tf.nn.sampled_softmax_loss(weights=embeddings, biases=biases, labels=labels, inputs=inputs_, num_sampled=5, num_classes=10, num_true=1, sampled_values=(sampled, true_expected_count, sampled_expected_count), remove_accidental_hits=False)
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
