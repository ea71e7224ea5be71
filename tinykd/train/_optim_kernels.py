"""Numba kernels of Adam over the flat parameter buffer (see :mod:`tinykd.train.optim`)."""
from __future__ import annotations

import numpy as np
from numba import njit

from tinykd.nn import _jit  # noqa: F401  (Numba started the tinykd way, before njit)


@njit(cache=True, fastmath={"contract", "nsz"}, error_model="numpy")
def sq_norm(g):
    acc = 0.0  # float64 accumulator
    for k in range(g.shape[0]):
        gk = np.float64(g[k])
        acc += gk * gk
    return acc


@njit(cache=True, fastmath={"contract", "nsz"}, error_model="numpy")
def adam_kernel(theta, g, m, v, lr_t, b1, b2, eps, scale):
    # every scalar in the parameters' dtype: no float64 promotion of a float32 step
    dt = theta.dtype
    lr_t = dt.type(lr_t)
    b1 = dt.type(b1)
    b2 = dt.type(b2)
    eps = dt.type(eps)
    scale = dt.type(scale)
    c1 = dt.type(1) - b1
    c2 = dt.type(1) - b2
    tiny = dt.type(1e-30)
    zero = dt.type(0)
    for k in range(theta.shape[0]):
        gk = g[k] * scale
        mk = b1 * m[k] + c1 * gk
        vk = b2 * v[k] + c2 * gk * gk
        vk = vk if vk >= tiny else zero
        mk = mk if abs(mk) >= tiny else zero
        m[k] = mk
        v[k] = vk
        theta[k] -= lr_t * mk / (np.sqrt(vk) + eps)
