#!/usr/bin/env python3
"""xent reproducer: tensorflow / tf.nn.sampled_softmax_loss: sampled_softmax float64, verdict underflow.

`tensorflow/tf.nn.sampled_softmax_loss` sampled_softmax float64: underflow at (2,) — returned 0
where the loss is 2.8559169361239742e-214 (1.41e+18 ulp, allowed 10.564; condition number 0.367)
(inputs=[-1, 0, 2.2250738585072014e-308, -1, … (9 values)], embeddings=[-0.0007951332960506076,
-0.007126650503038593, -1e-05, -3.0375e-320, … (30 values)], biases=[-0.5, 0.001310090641289275,
1, -8.8e-322, … (10 values)], z=[3, 7, 3], sampled=[9, 7],
true_expected_count=[0.48479039712883093, 7.051542582052409e-279, 9.282673717849294e-215],
sampled_expected_count=[1, 0.5], remove_accidental_hits=False) [case 7c7822d0fb0d615e]

Case 7c7822d0fb0d615e (regime:subnormal_logits; shrunk). Needs only numpy and the framework (tensorflow 2.21.0).
Run: python 7c7822d0fb0d615e.py        (exit 0: the divergence reproduced; 1: it did not)
     python 7c7822d0fb0d615e.py --json (every output element as hex)
"""
import json
import sys

import numpy as np

DTYPE = 'float64'
VERDICT = 'underflow'
QUANTITY = 'value'  # "value", or "grad:<input>" for the gradient of sum(value) w.r.t. an input
INDEX = (2,)  # the element xent reported (None: the whole output)
RECORDED = '0x0p+0'  # what xent saw the call return there (float.hex of the value; None: no number)
TRUTH = '0x1.89ce5dbc6fcdbp-710'  # the certified, correctly rounded value in float64 (float.hex)
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
        "-0x1.0000000000000p-1", "0x1.576eb1d626fd0p-10", "0x1.0000000000000p+0",
        "-0x0.00000000000b2p-1022", "-0x0.fffffffffffffp-1022", "0x1.0000000000000p+0",
        "-0x1.8000000000000p+2", "0x0.0p+0", "0x0.0p+0", "-0x0.0p+0"
    ], (10,), 'float64'),
    'embeddings': _array([
        "-0x1.a0e0fc051db20p-11", "-0x1.d30d5ad72fc5ep-8", "-0x1.4f8b588e368f1p-17",
        "-0x0.0000000001804p-1022", "-0x1.0000000000000p-1022", "0x1.04cca6ca95858p+3",
        "-0x1.0000000000000p-1022", "0x1.bb6f65b728547p-284", "-0x1.03cddc0a8d3dep+3",
        "-0x0.000005e37af7dp-1022", "0x1.e152c0eeb88ecp-7", "0x1.0000000000000p+0",
        "0x1.c7bbb69929dcfp-10", "0x0.0p+0", "-0x1.0000000000000p-1022", "0x1.0000000000000p+3",
        "-0x1.8000000000000p+1", "0x1.fffeb074a771dp-1", "-0x0.0p+0", "0x1.0000000000000p-1",
        "0x1.b3d099ae7c608p-7", "-0x1.0000000000000p+1", "0x0.00000000000b3p-1022",
        "0x1.6d35ef90b5f7cp+1", "-0x1.4000000000000p+2", "0x1.0000000000000p-1",
        "0x0.fffffffffffffp-1022", "0x1.bda356ad97d50p+2", "0x1.4f136425a8918p-568",
        "-0x1.0000000000000p-126"
    ], (10, 3), 'float64'),
    'inputs': _array([
        "-0x1.0000000000000p+0", "0x0.0p+0", "0x1.0000000000000p-1022", "-0x1.0000000000000p+0",
        "-0x0.0p+0", "-0x1.0000000000000p-7", "0x1.0000000000000p-861", "-0x1.0000000000000p+0",
        "-0x1.0000000000000p+0"
    ], (3, 3), 'float64'),
    'labels': _array([3, 7, 3], (3, 1), 'int64'),
    'sampled': _array([9, 7], (2,), 'int64'),
    'sampled_expected_count': _array(["0x1.0000000000000p+0", "0x1.0000000000000p-1"], (2,), 'float64'),
    'true_expected_count': _array(["0x1.f06ce4d4552d7p-2", "0x1.000004e16dbecp-924", "0x1.000000191f8f1p-711"], (3, 1), 'float64'),
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
        out = tf.nn.sampled_softmax_loss(weights=embeddings, biases=biases, labels=labels, inputs=inputs_, num_sampled=2, num_classes=10, num_true=1, sampled_values=(sampled, true_expected_count, sampled_expected_count), remove_accidental_hits=False)
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
