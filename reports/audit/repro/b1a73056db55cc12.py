#!/usr/bin/env python3
"""xent reproducer: torch / CrossEntropyLoss: softmax_ce_dense float64, verdict accepted-invalid.

`torch/CrossEntropyLoss` softmax_ce_dense float64: accepted-invalid at (0,) — returned
11.456716800414902 for an input the oracle rejects (labels must lie in [0, 1]: labels[0,19] =
-5e-324) (x=[-5e-324, 0, 0.004732028702870022, 2, … (41 values)], y=[0, 0, 0, 0, … (41 values)],
label_smoothing=1.0) [case b1a73056db55cc12]

Case b1a73056db55cc12 (regime:invalid_labels; shrunk). Needs only numpy and the framework (torch 2.13.0+cpu).
Run: python b1a73056db55cc12.py        (exit 0: the divergence reproduced; 1: it did not)
     python b1a73056db55cc12.py --json (every output element as hex)
"""
import json
import sys

import numpy as np

DTYPE = 'float64'
VERDICT = 'accepted-invalid'
QUANTITY = 'value'  # "value", or "grad:<input>" for the gradient of sum(value) w.r.t. an input
INDEX = (0,)  # the element xent reported (None: the whole output)
RECORDED = '0x1.6e9d6c8d2a1acp+3'  # what xent saw the call return there (float.hex of the value; None: no number)
TRUTH = None  # the certified, correctly rounded value in float64 (float.hex)
MESSAGE = 'labels must lie in [0, 1]: labels[0,19] = -5e-324'


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
        "0x0.0p+0", "0x0.0p+0", "0x0.0p+0", "0x0.0p+0", "0x0.0p+0", "0x0.0p+0", "0x0.0p+0", "0x0.0p+0",
        "0x0.0p+0", "0x0.0p+0", "0x0.0p+0", "0x0.0p+0", "0x0.0p+0", "0x0.0p+0", "0x0.0p+0", "0x0.0p+0",
        "0x0.0p+0", "0x0.0p+0", "0x0.0p+0", "-0x0.0000000000001p-1022", "0x0.0p+0", "0x0.0p+0",
        "0x0.0p+0", "0x0.0p+0", "0x0.0p+0", "0x0.0p+0", "0x0.0p+0", "0x0.0p+0", "0x0.0p+0", "0x0.0p+0",
        "0x0.0p+0", "0x0.0p+0", "0x0.0p+0", "0x0.0p+0", "0x1.0000000000000p+0", "0x0.0p+0", "0x0.0p+0",
        "0x0.0p+0", "0x0.0p+0", "0x0.0p+0", "0x0.0p+0"
    ], (1, 41), 'float64'),
    'logits': _array([
        "-0x0.0000000000001p-1022", "0x0.0p+0", "0x1.361e4485c67ecp-8", "0x1.0000000000000p+1",
        "-0x1.1187df43a008ep-8", "-0x1.077a8ee223c36p+2", "0x1.b4fa39d136398p-9",
        "-0x1.0000000000000p-14", "-0x1.0000000000000p+2", "0x1.16beca16c8f10p+2", "0x0.0p+0",
        "-0x1.8000000000000p+2", "0x1.0000000000000p-1", "-0x1.0000000000000p+2",
        "0x1.3ffffffffffffp+3", "0x1.0000000000000p-1", "0x1.b96cd19c450a0p+2", "-0x1.4000000000000p+2",
        "0x1.4000000000000p+3", "-0x1.4000000000000p+3", "0x1.0000000000000p-1", "0x1.0000000000000p-6",
        "-0x1.7d999ac150f4ep+2", "-0x1.936cb662428cap-331", "-0x1.0000000000000p+3",
        "0x1.6b73d02fef2d0p-7", "-0x0.199999999999ap-1022", "-0x1.1c2b8d5b83a1fp-7",
        "-0x1.0000000000000p+0", "-0x1.da96fc44db5ccp-273", "0x0.0p+0", "-0x1.2000000000000p+3",
        "0x1.c000000000000p+2", "-0x1.0000000000000p+2", "0x1.e846fe482da52p-43",
        "-0x1.4000000000000p+2", "-0x1.0000000000000p+0", "-0x1.bed3e832c5f5fp-566",
        "-0x1.005a9d332e4d7p+2", "-0x1.b684fd6783d73p-966", "-0x1.166a0b6309b08p-9"
    ], (1, 41), 'float64'),
}


def call(inputs):
    dtypes = {}
    import torch

    labels = torch.from_numpy(inputs['labels'].copy())
    labels.requires_grad_(True)
    logits = torch.from_numpy(inputs['logits'].copy())
    logits.requires_grad_(True)
    out = torch.nn.CrossEntropyLoss(weight=None, reduction='none', label_smoothing=1.0)(logits, labels)
    value = out.detach().numpy()
    g = torch.autograd.grad(out.sum(), [logits, labels])
    grads = {'logits': g[0].numpy(), 'labels': g[1].numpy()}
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
