"""A deliberately flawed sigmoid cross-entropy kernel: the textbook formula, as it is often first written.

    loss(x, z) = x - x z + log(1 + exp(-x))

exp(-x) overflows for x < -88.7 in float32 (the loss is finite: 810 at x = -810, z = 1), and
``log(1 + .)`` loses a small ``exp(-x)`` entirely (0 at x = 20, z = 1, where the loss is 2.06e-9).
The audit must catch it: examples/test_flawed_kernel.py fails, by design.
"""
import numpy as np


def bce_with_logits(logits, labels):
    x, z = logits, labels
    return x - x * z + np.log(1 + np.exp(-x))
