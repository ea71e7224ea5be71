"""Numba kernels of inference (see :mod:`tinykd.scoring.scorer`, their only caller): the time loop of
one direction reading each token's input projection from a precomputed table, pooling, and
the dense head — fused in one call for a small batch. Plain arrays in and out.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from tinykd.nn._jit import JIT, _cell_step, _rows_matmul_acc
from tinykd.nn.dense import ACTIVATION_CODES, SELU_ALPHA, SELU_LAMBDA

_RELU, _SELU = ACTIVATION_CODES["relu"], ACTIVATION_CODES["selu"]


@njit(inline="always", **JIT)
def _check(ids, lengths, V):
    """0 if every length fits the ids' columns and every real id the table; else -2 / -1."""
    L = ids.shape[1]
    for r in range(ids.shape[0]):
        n = lengths[r]
        if n < 0 or n > L:
            return -2
        for t in range(n):
            v = ids[r, t]
            if v < 0 or v >= V:
                return -1
    return 0


@njit(inline="always", **JIT)
def _infer_task(ids, lengths, rows, T, d, U, reverse, pool_max, feat):
    """Inference time loop of one direction over ``rows`` (longest first); pooled features
    (last state, or max over real steps) to ``feat[:, d*H:(d+1)*H]``."""
    R = rows.shape[0]
    if R == 0:
        return
    G = U.shape[1]
    H = G // 4
    dt = T.dtype
    h = np.zeros((R, H), dtype=dt)
    c = np.zeros((R, H), dtype=dt)
    z = np.empty((R, G), dtype=dt)
    m = np.empty((R, H), dtype=dt)
    if pool_max:
        m[:] = -np.inf
    Td = T[d]
    kmax = lengths[rows[0]]
    nact = R
    for k in range(kmax):
        while nact > 0 and lengths[rows[nact - 1]] <= k:
            nact -= 1
        for r in range(nact):
            b = rows[r]
            t = lengths[b] - 1 - k if reverse else k
            zr = z[r]
            tr = Td[ids[b, t]]
            for j in range(G):
                zr[j] = tr[j]
        if k > 0:
            _rows_matmul_acc(h, U, z, nact, H)
        for r in range(nact):
            zr = z[r]
            hr = h[r]
            cr = c[r]
            _cell_step(zr, cr, hr, H)
            if pool_max:
                mr = m[r]
                for j in range(H):
                    mr[j] = max(mr[j], hr[j])
    zero = dt.type(0)
    for r in range(R):
        b = rows[r]
        src = m[r] if pool_max else h[r]
        fb = feat[b]
        if lengths[b] == 0:
            for j in range(H):
                fb[d * H + j] = zero
        else:
            for j in range(H):
                fb[d * H + j] = src[j]


@njit(inline="always", **JIT)
def _head(feat, W1, b1, act, W2, b2, inv_t, out):
    """out = softmax(dense2(act(dense1(feat))) · inv_t), the logits in float64 — the maths of
    :mod:`tinykd.nn.dense` (act: 0 linear, 1 relu, 2 selu; no hidden layer if W1 has no columns);
    ``inv_t`` is 1 / the calibration temperature (:mod:`tinykd.scoring.calibration`)."""
    B = feat.shape[0]
    K = W2.shape[1]
    hid = W1.shape[1]
    dt = feat.dtype
    zero = dt.type(0)
    lam = dt.type(SELU_LAMBDA)
    la = dt.type(SELU_LAMBDA * SELU_ALPHA)
    a = np.empty(max(hid, 1), dtype=dt)
    zk = np.empty(K, dtype=np.float64)
    for r in range(B):
        x = feat[r]
        if hid > 0:
            for j in range(hid):
                a[j] = b1[j]
            for i in range(x.shape[0]):
                xi = x[i]
                for j in range(hid):
                    a[j] += xi * W1[i, j]
            for j in range(hid):
                v = a[j]
                if act == _RELU:
                    v = max(v, zero)
                elif act == _SELU:
                    v = lam * v if v > zero else la * np.expm1(v)
                a[j] = v
            src = a[:hid]
        else:
            src = x
        for k in range(K):
            zk[k] = b2[k]
        for i in range(src.shape[0]):
            si = src[i]
            for k in range(K):
                zk[k] += si * W2[i, k]
        for k in range(K):
            zk[k] *= inv_t
        mx = zk.max()
        s = 0.0
        for k in range(K):
            zk[k] = np.exp(zk[k] - mx)
            s += zk[k]
        for k in range(K):
            out[r, k] = zk[k] / s


@njit(**JIT)
def score_serial(ids, lengths, task_rows, task_ptr, task_dir, T, U0, U1, reverses, pool_max, feat,
                 HW1, Hb1, act, HW2, Hb2, inv_t, out):
    """Everything for a batch on one core in one call: time loops, pooling, head. Returns 0, or
    (nothing computed) -1 if an id is out of the table's range, -2 if a length is out of the ids'."""
    rc = _check(ids, lengths, T.shape[1])
    if rc < 0:
        return rc
    for ti in range(task_dir.shape[0]):
        d = task_dir[ti]
        _infer_task(ids, lengths, task_rows[task_ptr[ti]:task_ptr[ti + 1]], T, d, U0 if d == 0 else U1,
                    reverses[d], pool_max, feat)
    _head(feat, HW1, Hb1, act, HW2, Hb2, inv_t, out)
    return 0


@njit(parallel=True, **JIT)
def score_parallel(ids, lengths, task_rows, task_ptr, task_dir, T, U0, U1, reverses, pool_max, feat,
                   HW1, Hb1, act, HW2, Hb2, inv_t, out):
    """:func:`score_serial` with the tasks (directions, or halves of a batch) on the cores."""
    rc = _check(ids, lengths, T.shape[1])
    if rc < 0:
        return rc
    for ti in prange(task_dir.shape[0]):
        d = task_dir[ti]
        _infer_task(ids, lengths, task_rows[task_ptr[ti]:task_ptr[ti + 1]], T, d, U0 if d == 0 else U1,
                    reverses[d], pool_max, feat)
    _head(feat, HW1, Hb1, act, HW2, Hb2, inv_t, out)
    return 0
