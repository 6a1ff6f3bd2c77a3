"""The same one-test audit of the deliberately flawed kernel: this test FAILS, by design.

Run it to see what a divergence looks like: each one's verdict, what came back against the
certified truth on a minimal case, that case hex-exact, and a standalone reproducer.
"""
import xent
from flawed_kernel import bce_with_logits

adapter = xent.kernel(bce_with_logits, "sigmoid_bce_logits", dtypes=["float32", "float64"], name="flawed-bce")


def test_bce_with_logits_conforms(xent_audit):
    xent_audit(adapter)
