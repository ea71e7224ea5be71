"""L1 / L2 weight penalties, added to the loss.

    R(W) = l1 Σ|W| + l2 Σ W²        dR/dW = l1 sign(W) + 2 l2 W
"""
from __future__ import annotations

import numpy as np


def penalty_forward(W, l1=0.0, l2=0.0):
    """Value of the penalty on ``W`` (a float)."""
    r = 0.0
    if l1:
        r += l1 * float(np.abs(W).sum())
    if l2:
        r += l2 * float((W * W).sum())
    return r


def penalty_backward(W, dW, l1=0.0, l2=0.0):
    """Add the penalty's gradient into ``dW`` (``+=``)."""
    if l1:
        dW += W.dtype.type(l1) * np.sign(W)
    if l2:
        dW += W.dtype.type(2.0 * l2) * W
