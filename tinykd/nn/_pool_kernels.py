"""Numba kernels of global max pooling over real steps (see :mod:`tinykd.nn.pooling`)."""
from __future__ import annotations

from numba import njit

from tinykd.nn import _jit  # noqa: F401  (Numba started the tinykd way)


@njit(cache=True, nogil=True)
def max_over_time(x, lengths, y, arg):
    """y[b] = max over the real steps of x[b] (0 for an empty row); arg = the first step that wins."""
    B, L, D = x.shape
    for b in range(B):
        yb = y[b]
        ab = arg[b]
        if lengths[b] == 0:
            yb[:] = 0
            ab[:] = 0
            continue
        x0 = x[b, 0]
        for d in range(D):
            yb[d] = x0[d]
            ab[d] = 0
        for t in range(1, lengths[b]):
            xt = x[b, t]
            for d in range(D):
                if xt[d] > yb[d]:
                    yb[d] = xt[d]
                    ab[d] = t


@njit(cache=True, nogil=True)
def max_over_time_backward(dy, arg, empty, dx):
    """dx[b, arg[b, d], d] = dy[b, d] (dx zero on entry; nothing for an empty row)."""
    B, D = dy.shape
    for b in range(B):
        if empty[b]:
            continue
        for d in range(D):
            dx[b, arg[b, d], d] = dy[b, d]


