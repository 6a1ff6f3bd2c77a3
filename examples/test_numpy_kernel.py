"""The audit a team adds to its own test suite: xent's corpus and strategies against its kernel.

    pytest examples/test_numpy_kernel.py                        # the fast profile
    pytest examples/test_numpy_kernel.py --xent-profile thorough

The same adapter runs from the command line: ``xent run --adapter test_numpy_kernel:adapter``.
"""
import xent
from numpy_kernel import bce_with_logits

adapter = xent.kernel(bce_with_logits, "sigmoid_bce_logits", dtypes=["float32", "float64"], name="numpy-bce")


def test_bce_with_logits_conforms(xent_audit):
    xent_audit(adapter)
