"""Global max pooling over time, over real steps only.

    forward:  y[b, d] = max_{t < len_b} x[b, t, d]     x: (B, L, D) → y: (B, D); 0 if len_b = 0
    backward: dx[b, argmax_t, d] = dy[b, d], zero elsewhere (padded steps never win)
"""
from __future__ import annotations

import numpy as np


def global_max_pool_forward(x, lengths):
    """Max over the first ``lengths[b]`` steps of each row; the cache holds the argmax."""
    B, L, D = x.shape
    pad = np.arange(L)[None, :] >= lengths[:, None]  # (B, L)
    masked = np.where(pad[:, :, None], -np.inf, x)
    arg = masked.argmax(axis=1)  # (B, D); 0 for an empty row
    y = np.take_along_axis(x, arg[:, None, :], axis=1)[:, 0, :].copy()
    empty = lengths == 0
    y[empty] = 0.0
    return y, (arg, empty, x.shape)


def global_max_pool_backward(dy, cache):
    arg, empty, shape = cache
    B, L, D = shape
    dx = np.zeros(shape, dtype=dy.dtype)
    dyz = np.where(empty[:, None], 0.0, dy).astype(dy.dtype, copy=False)
    np.put_along_axis(dx, arg[:, None, :], dyz[:, None, :], axis=1)
    return dx
