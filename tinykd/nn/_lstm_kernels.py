"""Numba time loops of the LSTM for training (forward with caches, backward); plain arrays in
and out, nothing of the student network. What they compute is written out, in plain NumPy,
in :mod:`tinykd.nn.reference` (the oracle the tests hold them to); how they lay the work out
is described in :mod:`tinykd.nn.lstm`, their only caller.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from tinykd.nn._jit import JIT, TINY, _cell_step, _rows_matmul_acc, _tanh



# -------------------------------------------------------------- time loops
@njit(inline="always", **JIT)
def _fwd_task(xz, xrow, col, start, lengths, rows, U, reverse, seq, gates, cs, hprev, out, ocol):
    """One direction over the rows ``rows`` (sorted longest first), all rows per step.

    xz (·, ·) input projections (columns col:col+4H); real step p reads row
    ``xrow[p]`` (p itself, or its token's row when each distinct token is projected once); writes the
    activated gates (cols col:col+4H), c and h_{t-1} (cols ocol:ocol+H) at each
    real step (the caches of the backward), and h to ``out`` — (B, L, ·) if ``seq``, else the
    state after the last real step to ``out[b, 0]``.
    """
    R = rows.shape[0]
    if R == 0:
        return
    G = U.shape[1]
    H = G // 4
    dt = xz.dtype
    h = np.zeros((R, H), dtype=dt)
    c = np.zeros((R, H), dtype=dt)
    z = np.empty((R, G), dtype=dt)
    kmax = lengths[rows[0]]
    nact = R
    for k in range(kmax):
        while nact > 0 and lengths[rows[nact - 1]] <= k:
            nact -= 1
        for r in range(nact):
            b = rows[r]
            t = lengths[b] - 1 - k if reverse else k
            q = xrow[start[b] + t]
            for j in range(G):
                z[r, j] = xz[q, col + j]
        if k > 0:
            _rows_matmul_acc(h, U, z, nact, H)
        for r in range(nact):
            b = rows[r]
            n = lengths[b]
            t = n - 1 - k if reverse else k
            p = start[b] + t
            zr = z[r]
            hr = h[r]
            cr = c[r]
            hp = hprev[p]
            for j in range(H):
                hp[ocol + j] = hr[j]
            _cell_step(zr, cr, hr, H)
            gp = gates[p]
            for j in range(G):
                gp[col + j] = zr[j]
            cp = cs[p]
            for j in range(H):
                cp[ocol + j] = cr[j]
            if seq:
                ob = out[b, t]
                for j in range(H):
                    ob[ocol + j] = hr[j]
            elif k == n - 1:
                ob = out[b, 0]
                for j in range(H):
                    ob[ocol + j] = hr[j]


@njit(inline="always", **JIT)
def _bwd_task(dout, seq, gates, cs, hprev, start, lengths, rows, UT, reverse, col, ocol, xrow, dzx, dU, db):
    """Backward of :func:`_fwd_task` over ``rows``. With dz_p = dLoss/dz at real step p, adds
    into this task's own buffers: ``dzx[xrow[p]] += dz_p`` (per input row: a step, or a
    distinct token), ``dU += h_{t-1}ᵀ dz`` and ``db += dz`` — no (steps × 4H) array is
    written, and two tasks never write the same memory."""
    R = rows.shape[0]
    if R == 0:
        return
    G = UT.shape[0]
    H = G // 4
    dt = gates.dtype
    one = dt.type(1)
    zero = dt.type(0)
    tiny = dt.type(TINY)
    dh_next = np.zeros((R, H), dtype=dt)
    dc_next = np.zeros((R, H), dtype=dt)
    zb = np.empty((R, G), dtype=dt)
    hbT = np.empty((H, R), dtype=dt)  # h_{t-1} of the active rows, transposed
    kmax = lengths[rows[0]]
    nact = 0
    for k in range(kmax - 1, -1, -1):
        while nact < R and lengths[rows[nact]] > k:
            nact += 1
        for r in range(nact):
            b = rows[r]
            n = lengths[b]
            t = n - 1 - k if reverse else k
            p = start[b] + t
            pp = p + 1 if reverse else p - 1  # the previous step in reading order
            if not seq and k == n - 1:
                for j in range(H):
                    dh_next[r, j] += dout[b, 0, ocol + j]
            gp = gates[p, col:col + G]
            cp = cs[p, ocol:ocol + H]
            zr = zb[r]
            dhr = dh_next[r]
            dcr = dc_next[r]
            if seq:
                dop = dout[b, t, ocol:ocol + H]
                for j in range(H):
                    dhr[j] += dop[j]
            if k > 0:
                cq = cs[pp, ocol:ocol + H]
                for j in range(H):
                    zr[H + j] = cq[j]
                hp = hprev[p, ocol:ocol + H]
                for j in range(H):
                    hbT[j, r] = hp[j]
            else:
                for j in range(H):
                    zr[H + j] = zero
            for j in range(H):
                ig = gp[j]
                fg = gp[H + j]
                gg = gp[2 * H + j]
                og = gp[3 * H + j]
                tc = _tanh(cp[j])
                dh = dhr[j]
                dc = dcr[j] + dh * og * (one - tc * tc)
                zr[j] = dc * gg * ig * (one - ig)
                zr[H + j] = dc * zr[H + j] * fg * (one - fg)
                zr[2 * H + j] = dc * ig * (one - gg * gg)
                zr[3 * H + j] = dh * tc * og * (one - og)
                dcn = dc * fg
                dcr[j] = dcn if abs(dcn) > tiny else zero
            dq = dzx[xrow[p]]
            for j in range(G):
                dq[j] += zr[j]
                db[j] += zr[j]
        if k > 0:
            _rows_matmul_acc(hbT, zb, dU, H, nact)  # dU += h_{t-1}ᵀ dz
            for r in range(nact):
                for j in range(H):
                    dh_next[r, j] = zero
            _rows_matmul_acc(zb, UT, dh_next, nact, G)
            for r in range(nact):
                for j in range(H):
                    v = dh_next[r, j]
                    dh_next[r, j] = v if abs(v) > tiny else zero


@njit(parallel=True, **JIT)
def _fwd_parallel(xz, xrow, start, lengths, task_rows, task_ptr, task_dir, Us, reverses, seq,
                  gates, cs, hprev, out):
    for ti in prange(task_dir.shape[0]):
        d = task_dir[ti]
        G = Us.shape[2]
        _fwd_task(xz, xrow, d * G, start, lengths, task_rows[task_ptr[ti]:task_ptr[ti + 1]], Us[d],
                  reverses[d], seq, gates, cs, hprev, out, d * (G // 4))


@njit(**JIT)
def _fwd_serial(xz, xrow, start, lengths, task_rows, task_ptr, task_dir, Us, reverses, seq,
                gates, cs, hprev, out):
    for ti in range(task_dir.shape[0]):
        d = task_dir[ti]
        G = Us.shape[2]
        _fwd_task(xz, xrow, d * G, start, lengths, task_rows[task_ptr[ti]:task_ptr[ti + 1]], Us[d],
                  reverses[d], seq, gates, cs, hprev, out, d * (G // 4))


@njit(parallel=True, **JIT)
def _bwd_parallel(dout, seq, gates, cs, hprev, start, lengths, task_rows, task_ptr, task_dir, UTs, reverses,
                  xrow, dzx, dU, db):
    for ti in prange(task_dir.shape[0]):
        d = task_dir[ti]
        G = UTs.shape[1]
        _bwd_task(dout, seq, gates, cs, hprev, start, lengths, task_rows[task_ptr[ti]:task_ptr[ti + 1]], UTs[d],
                  reverses[d], d * G, d * (G // 4), xrow, dzx[ti], dU[ti], db[ti])


@njit(**JIT)
def _bwd_serial(dout, seq, gates, cs, hprev, start, lengths, task_rows, task_ptr, task_dir, UTs, reverses,
                xrow, dzx, dU, db):
    for ti in range(task_dir.shape[0]):
        d = task_dir[ti]
        G = UTs.shape[1]
        _bwd_task(dout, seq, gates, cs, hprev, start, lengths, task_rows[task_ptr[ti]:task_ptr[ti + 1]], UTs[d],
                  reverses[d], d * G, d * (G // 4), xrow, dzx[ti], dU[ti], db[ti])


