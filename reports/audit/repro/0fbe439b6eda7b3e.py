#!/usr/bin/env python3
"""xent reproducer: tensorflow / tf.nn.softmax: softmax bfloat16, verdict accepted-invalid.

`tensorflow/tf.nn.softmax` softmax bfloat16: accepted-invalid at (0, 0) — returned 0 for an
input the oracle rejects () (x=[0, nan], axis=1) [case 0fbe439b6eda7b3e]

Case 0fbe439b6eda7b3e (regime:nonfinite_logits; shrunk). Needs only numpy and the framework (tensorflow 2.21.0).
Run: python 0fbe439b6eda7b3e.py        (exit 0: the divergence reproduced; 1: it did not)
     python 0fbe439b6eda7b3e.py --json (every output element as hex)
"""
import json
import sys

import numpy as np

DTYPE = 'bfloat16'
VERDICT = 'accepted-invalid'
QUANTITY = 'value'  # "value", or "grad:<input>" for the gradient of sum(value) w.r.t. an input
INDEX = (0, 0)  # the element xent reported (None: the whole output)
RECORDED = '0x0p+0'  # what xent saw the call return there (float.hex of the value; None: no number)
TRUTH = 'nan'  # the certified, correctly rounded value in bfloat16 (float.hex)
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
    'logits': _array(["0x0.0p+0", "nan:0x7f88"], (1, 2), 'bfloat16'),
}


def call(inputs):
    dtypes = {}
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # as xent does: logging only
    import tensorflow as tf

    # numpy has no bfloat16: the float32 arrays' top 16 bits are the case's bfloat16 bits exactly
    bfloat16 = lambda a: (a.view(np.uint32) >> 16).astype(np.uint16).view(tf.bfloat16.as_numpy_dtype)
    logits = tf.constant(bfloat16(inputs['logits']))
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        out = tf.nn.softmax(logits, axis=1)
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
