"""Global max pooling over time, over real steps only.

    forward:  y[b, d] = max_{t < len_b} x[b, t, d]     x: (B, L, D) → y: (B, D); 0 if len_b = 0
    backward: dx[b, argmax_t, d] = dy[b, d], zero elsewhere (padded steps never win)

Ties go to the earliest step (as ``np.argmax``). The loops are small Numba
kernels (:func:`tinykd.nn._pool_kernels.max_over_time`): one pass over the real steps.
"""
from __future__ import annotations

import numpy as np


def global_max_pool_forward(x, lengths):
    """Max over the first ``lengths[b]`` steps of each row; the cache holds the argmax."""
    from tinykd.nn._pool_kernels import max_over_time

    x = np.ascontiguousarray(x)
    B, L, D = x.shape
    y = np.empty((B, D), x.dtype)
    arg = np.empty((B, D), np.int32)  # 0 for an empty row
    max_over_time(x, np.ascontiguousarray(lengths, dtype=np.int32), y, arg)
    return y, (arg, lengths == 0, x.shape)


def global_max_pool_backward(dy, cache):
    from tinykd.nn._pool_kernels import max_over_time_backward

    arg, empty, shape = cache
    dx = np.zeros(shape, dtype=dy.dtype)
    max_over_time_backward(np.ascontiguousarray(dy), arg, empty, dx)
    return dx
