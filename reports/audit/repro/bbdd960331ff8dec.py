#!/usr/bin/env python3
"""xent reproducer: tensorflow / tf.compat.v1.losses.softmax_cross_entropy: softmax_ce_dense float64, verdict inaccurate.

`tensorflow/tf.compat.v1.losses.softmax_cross_entropy` softmax_ce_dense float64: inaccurate at
(0, 47) — returned 0.2382462015973538 where the gradient d/dlogits is 0.08930979661500274
(6.65e+15 ulp, allowed 36.368; condition number 15.7) (x=[-inf, 1, -inf, -inf, … (56 values)],
y=[0, 7.04101555278083e-30, 0, 0, … (56 values)], reduction=sum) [case bbdd960331ff8dec]

Case bbdd960331ff8dec (regime:masked_rows; shrunk). Needs only numpy and the framework (tensorflow 2.21.0).
Run: python bbdd960331ff8dec.py        (exit 0: the divergence reproduced; 1: it did not)
     python bbdd960331ff8dec.py --json (every output element as hex)
"""
import json
import sys

import numpy as np

DTYPE = 'float64'
VERDICT = 'inaccurate'
QUANTITY = 'grad:logits'  # "value", or "grad:<input>" for the gradient of sum(value) w.r.t. an input
INDEX = (0, 47)  # the element xent reported (None: the whole output)
RECORDED = '0x1.e7ed9fe20e0b5p-3'  # what xent saw the call return there (float.hex of the value; None: no number)
TRUTH = '0x1.6dd01bfac8152p-4'  # the certified, correctly rounded value in float64 (float.hex)
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
    'labels': _array([
        "0x0.0p+0", "0x1.1d9e15fba7a11p-97", "0x0.0p+0", "0x0.0p+0", "0x0.0p+0", "0x0.0p+0",
        "0x1.7a7f3abcab24dp-7", "0x0.0p+0", "0x1.228c3b00e169fp-5", "0x1.16f61657998eap-7",
        "0x1.935513c1494ecp-349", "0x0.0p+0", "0x0.0p+0", "0x1.66c4cf6df4dd7p-28", "0x0.0p+0",
        "0x1.b68dacf86dbfdp-7", "0x1.9bab399522728p-19", "0x0.0p+0", "0x1.2ade333c2e0f7p-6",
        "0x1.5b6315c555e88p-5", "0x0.0p+0", "0x0.0p+0", "0x0.0p+0", "0x0.0p+0", "0x1.a14e8d3c187fcp-6",
        "0x0.0p+0", "0x1.e37e1c93841f3p-9", "0x0.0p+0", "0x0.0p+0", "0x1.29a1cae589622p-9",
        "0x1.4da9ca9a978b1p-5", "0x0.0p+0", "0x0.0p+0", "0x1.520644f42c178p-6", "0x1.9fab7d24ecc59p-10",
        "0x0.0p+0", "0x1.03c14f371e77dp-743", "0x1.66c4cf6b78a9cp-5", "0x1.40d4124593a3ep-189",
        "0x0.0p+0", "0x1.53cc63172acabp-439", "0x0.0p+0", "0x1.61e3e53ec6864p-6", "0x0.0p+0",
        "0x0.0p+0", "0x1.f619c2f2e28e0p-6", "0x0.0p+0", "0x1.bc45a5d00cab1p-7", "0x0.0p+0", "0x0.0p+0",
        "0x1.3d86aabdba90bp-5", "0x1.3d9f839ee3c45p-9", "0x0.0p+0", "0x0.0p+0", "0x1.14e06999dfd59p-5",
        "0x0.0p+0", "0x1.8f662039605d3p-28", "0x0.0p+0", "0x1.fbf3b17beddbfp-8", "0x0.0p+0",
        "0x1.48fc71efa80e3p-5", "0x1.8f6620369c1cep-19", "0x1.8f6620369c1cep-154", "0x0.0p+0",
        "0x1.8fc9d53b88a6fp-9", "0x0.0p+0", "0x0.0p+0", "0x0.0p+0", "0x1.1549cd6a8d076p-6", "0x0.0p+0",
        "0x0.0p+0", "0x1.cc98153cb2554p-10", "0x1.a95f182dea3dfp-6", "0x1.8fea622dc2116p-11",
        "0x1.9dea9d6c6af66p-7", "0x0.0p+0", "0x1.06a05f94384f3p-6", "0x0.0p+0", "0x0.0p+0",
        "0x0.000331f810d22p-1022", "0x1.8f6620369c1cep-5", "0x0.0p+0", "0x1.0699134c50e19p-6",
        "0x0.0p+0", "0x0.0p+0", "0x0.0p+0", "0x1.0c4c490383d75p-5", "0x1.8f6620369c1cep-57", "0x0.0p+0",
        "0x0.0p+0", "0x1.2f3fd952ed629p-6", "0x0.0p+0", "0x1.8f6620369c1cep-57",
        "0x0.063d9880da707p-1022", "0x1.32a05d64b82a2p-629", "0x1.ad4305a20d9c2p-610",
        "0x1.23c35727d7ab1p-6", "0x1.1d12b3e96b120p-5", "0x0.0p+0", "0x0.0p+0", "0x1.8f662039605d3p-28",
        "0x0.0p+0", "0x1.70d08b3844ac9p-5", "0x0.0p+0", "0x1.04a9dca583d58p-5", "0x0.0p+0",
        "0x1.36351b6cf69f2p-6", "0x1.35633c6287b48p-6", "0x0.0p+0", "0x0.0p+0", "0x0.0p+0", "0x0.0p+0"
    ], (2, 56), 'float64'),
    'logits': _array([
        "-inf", "0x1.0000000000000p+0", "-inf", "-inf", "-inf", "-inf", "0x0.0p+0", "-inf",
        "-0x1.ce82a51d51c55p-231", "0x1.cb783f4ec16e4p-7", "-0x1.4000000000000p+3", "-inf", "-inf",
        "0x1.78bba73c4174ep-984", "-inf", "-0x0.199999999999ap-1022", "0x1.0000000000000p+2", "-inf",
        "-0x0.0p+0", "-0x1.0000000000000p+0", "-inf", "-inf", "-inf", "-inf", "-0x1.95c1e1c057a28p-9",
        "-inf", "-0x1.0000000000000p+0", "-inf", "-inf", "-0x1.0000000000000p+0", "-0x0.0p+0", "-inf",
        "-inf", "-0x1.fffffffffffffp-7", "0x1.9c510d25cac44p+2", "-inf", "0x0.0p+0",
        "0x1.67b9d42636d8fp-597", "-0x1.0000000000000p+2", "-inf", "-0x1.095faa19a17d8p+2", "-inf",
        "-0x1.0000000000000p+0", "-inf", "-inf", "-0x1.fbd56c2b619bep-8", "-inf",
        "0x1.0000000000000p+3", "-inf", "-inf", "0x0.0000a7c5ac472p-1022", "0x1.2000000000000p+3",
        "-inf", "-inf", "0x1.0000000000000p+2", "-inf", "-inf", "-inf", "-inf", "-inf", "-inf", "-inf",
        "-inf", "-inf", "-inf", "-inf", "-inf", "-inf", "-inf", "-inf", "-inf", "-inf", "-inf", "-inf",
        "-inf", "-inf", "-inf", "-inf", "-inf", "-inf", "-inf", "-inf", "-inf", "-inf", "-inf", "-inf",
        "-inf", "-inf", "-inf", "-inf", "-inf", "-inf", "-inf", "-inf", "-inf", "-inf", "-inf", "-inf",
        "-inf", "-inf", "-inf", "-inf", "-inf", "-inf", "-inf", "-inf", "-inf", "-inf", "-inf", "-inf",
        "-inf", "-inf"
    ], (2, 56), 'float64'),
}


def call(inputs):
    dtypes = {}
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # as xent does: logging only
    import tensorflow as tf

    labels = tf.constant(inputs['labels'])
    logits = tf.constant(inputs['logits'])
    with tf.GradientTape(watch_accessed_variables=False) as tape:
        tape.watch(logits)
        tape.watch(labels)
        out = tf.compat.v1.losses.softmax_cross_entropy(onehot_labels=labels, logits=logits, label_smoothing=0.0, weights=1.0, reduction=tf.compat.v1.losses.Reduction.SUM)
        total = tf.reduce_sum(out)
    value = out.numpy()
    g = tape.gradient(total, [logits, labels])
    # None: the API stops the gradient into that input
    grads = {n: gi.numpy() for n, gi in zip(['logits', 'labels'], g) if gi is not None}
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
