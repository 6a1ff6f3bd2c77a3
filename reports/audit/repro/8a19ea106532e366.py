#!/usr/bin/env python3
"""xent reproducer: onnx-reference / LogSoftmax: log_softmax bfloat16, verdict overflow.

`onnx-reference/LogSoftmax` log_softmax bfloat16: overflow at (0, 0) — returned -inf where the
log-probability is -127 (x=[-128, -1], axis=0) [case 8a19ea106532e366]

Case 8a19ea106532e366 (regime:ordinary; shrunk). Needs only numpy and the framework (onnx-reference 1.23.2 (opset 22)).
Run: python 8a19ea106532e366.py        (exit 0: the divergence reproduced; 1: it did not)
     python 8a19ea106532e366.py --json (every output element as hex)
"""
import json
import sys

import numpy as np

DTYPE = 'bfloat16'
VERDICT = 'overflow'
QUANTITY = 'value'  # "value", or "grad:<input>" for the gradient of sum(value) w.r.t. an input
INDEX = (0, 0)  # the element xent reported (None: the whole output)
RECORDED = '-inf'  # what xent saw the call return there (float.hex of the value; None: no number)
TRUTH = '-0x1.fcp+6'  # the certified, correctly rounded value in bfloat16 (float.hex)
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
    'logits': _array(["-0x1.0000000000000p+7", "-0x1.0000000000000p+0"], (2, 1), 'bfloat16'),
}


def call(inputs):
    dtypes = {}
    import onnx
    from onnx import TensorProto, helper
    from onnx.reference import ReferenceEvaluator

    inputs_info = [helper.make_tensor_value_info('logits', TensorProto.BFLOAT16, ['d0', 'd1'])]
    nodes = [helper.make_node('LogSoftmax', ['logits'], ['out'], axis=0)]
    graph = helper.make_graph(nodes, 'xent', inputs_info, [helper.make_tensor_value_info('out', TensorProto.BFLOAT16, ['d0', 'd1'])])
    opsets = [helper.make_opsetid('', 22)]
    model = helper.make_model(graph, opset_imports=opsets, ir_version=helper.find_min_ir_version_for(opsets), producer_name='xent')
    onnx.checker.check_model(model, full_check=True)

    def bfloat16(a):  # float32 holding bfloat16 values -> onnx's numpy bfloat16 array
        bf16 = helper.tensor_dtype_to_np_dtype(TensorProto.BFLOAT16)
        return (a.view(np.uint32) >> 16).astype(np.uint16).view(bf16)

    feeds = {'logits': bfloat16(inputs['logits'])}
    with np.errstate(all='ignore'):  # numpy's warnings only
        value = np.asarray(ReferenceEvaluator(model).run(None, feeds)[0])
    grads = {}  # no gradients: inference only
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
