"""The Numba kernels of tinykd (LSTM time loops, scoring, max pooling, embedding scatter, Adam).

Imported lazily — on the first training step or the first Numba-scored batch —
so ``import tinykd`` and a small first scoring job never pay Numba's start-up.
Every kernel is compiled once and cached on disk (``cache=True``); see
:mod:`tinykd.nn.lstm` for what they compute.
"""
from __future__ import annotations

import sys

import numpy as np


def _start_numba():
    """Import Numba and set up its CPU target without importing SciPy.

    Numba's first compile/cache load imports ``numba.np.arraymath``, which
    imports all of ``scipy.linalg`` (~0.3 s, ~15 MB) only to learn whether
    ``np.dot`` inside jitted code may call BLAS. No tinykd kernel does, so the
    probe is answered "no BLAS" here — only when this is Numba's first use in
    the process and SciPy's linear algebra is not loaded already.
    """
    import numba  # noqa: F401
    from numba.core.registry import cpu_target

    if "numba.np.arraymath" in sys.modules or "scipy.linalg" in sys.modules:
        return
    key = "scipy.linalg.cython_blas"
    had = key in sys.modules
    if not had:
        sys.modules[key] = None  # makes the probe's import fail fast
    try:
        cpu_target.target_context.refresh()
    finally:
        if not had and sys.modules.get(key, 0) is None:
            del sys.modules[key]


_start_numba()

from numba import njit, prange, types  # noqa: E402
from numba.extending import overload  # noqa: E402

_TINY = 1e-30  # carried gradients below this are flushed to 0 (no denormal slow-down)
_FM = {"contract", "nsz"}  # FMA contraction only: no reassociation, NaN/inf semantics kept
_JIT = dict(cache=True, fastmath=_FM, error_model="numpy", nogil=True)

# ---------------------------------------------------------------- activations
# float32: Eigen's rational approximation of tanh (clamped at ±7.9053, where it is 1 in float32)
_A1 = np.float32(4.89352455891786e-03)
_A3 = np.float32(6.37261928875436e-04)
_A5 = np.float32(1.48572235717979e-05)
_A7 = np.float32(5.12229709037114e-08)
_A9 = np.float32(-8.60467152213735e-11)
_A11 = np.float32(2.00018790482477e-13)
_A13 = np.float32(-2.76076847742355e-16)
_B0 = np.float32(4.89352518554385e-03)
_B2 = np.float32(2.26843463243900e-03)
_B4 = np.float32(1.18534705686654e-04)
_B6 = np.float32(1.19825839466702e-06)
_CLAMP = np.float32(7.90531110763549805)
_HALF32 = np.float32(0.5)


def _tanh(x):  # pragma: no cover - replaced by the overload inside Numba
    return np.tanh(x)


def _sigmoid(x):  # pragma: no cover
    return 1.0 / (1.0 + np.exp(-x))


@overload(_tanh, inline="always")
def _tanh_ov(x):
    if x == types.float32:
        def impl(x):
            x = min(max(x, -_CLAMP), _CLAMP)
            x2 = x * x
            p = ((((((x2 * _A13 + _A11) * x2 + _A9) * x2 + _A7) * x2 + _A5) * x2 + _A3) * x2 + _A1) * x
            q = ((x2 * _B6 + _B4) * x2 + _B2) * x2 + _B0
            return p / q
        return impl

    def impl64(x):
        return np.tanh(x)
    return impl64


@overload(_sigmoid, inline="always")
def _sigmoid_ov(x):
    if x == types.float32:
        def impl(x):
            return _HALF32 * _tanh(_HALF32 * x) + _HALF32
        return impl

    def impl64(x):
        if x >= 0:
            return 1.0 / (1.0 + np.exp(-x))
        e = np.exp(x)
        return e / (1.0 + e)
    return impl64


# ------------------------------------------------------------ small products
@njit(inline="always", **_JIT)
def _rows_matmul_acc(A, Bm, C, n, K):
    """C[:n] += A[:n, :K] @ Bm[:K]. Four rows × four inner indices per pass (register-blocked:
    each loaded row of Bm feeds 16 FMAs), then pairs, then a single row."""
    N = Bm.shape[1]
    K4 = K - K % 4
    r = 0
    while r + 3 < n:
        for k in range(0, K4, 4):
            a0 = A[r, k]
            a1 = A[r, k + 1]
            a2 = A[r, k + 2]
            a3 = A[r, k + 3]
            b0 = A[r + 1, k]
            b1 = A[r + 1, k + 1]
            b2 = A[r + 1, k + 2]
            b3 = A[r + 1, k + 3]
            c0 = A[r + 2, k]
            c1 = A[r + 2, k + 1]
            c2 = A[r + 2, k + 2]
            c3 = A[r + 2, k + 3]
            d0 = A[r + 3, k]
            d1 = A[r + 3, k + 1]
            d2 = A[r + 3, k + 2]
            d3 = A[r + 3, k + 3]
            for j in range(N):
                u0 = Bm[k, j]
                u1 = Bm[k + 1, j]
                u2 = Bm[k + 2, j]
                u3 = Bm[k + 3, j]
                C[r, j] += a0 * u0 + a1 * u1 + a2 * u2 + a3 * u3
                C[r + 1, j] += b0 * u0 + b1 * u1 + b2 * u2 + b3 * u3
                C[r + 2, j] += c0 * u0 + c1 * u1 + c2 * u2 + c3 * u3
                C[r + 3, j] += d0 * u0 + d1 * u1 + d2 * u2 + d3 * u3
        for k in range(K4, K):
            for i in range(4):
                a0 = A[r + i, k]
                for j in range(N):
                    C[r + i, j] += a0 * Bm[k, j]
        r += 4
    while r + 1 < n:
        for k in range(0, K4, 4):
            a0 = A[r, k]
            a1 = A[r, k + 1]
            a2 = A[r, k + 2]
            a3 = A[r, k + 3]
            b0 = A[r + 1, k]
            b1 = A[r + 1, k + 1]
            b2 = A[r + 1, k + 2]
            b3 = A[r + 1, k + 3]
            for j in range(N):
                u0 = Bm[k, j]
                u1 = Bm[k + 1, j]
                u2 = Bm[k + 2, j]
                u3 = Bm[k + 3, j]
                C[r, j] += a0 * u0 + a1 * u1 + a2 * u2 + a3 * u3
                C[r + 1, j] += b0 * u0 + b1 * u1 + b2 * u2 + b3 * u3
        for k in range(K4, K):
            a0 = A[r, k]
            b0 = A[r + 1, k]
            for j in range(N):
                C[r, j] += a0 * Bm[k, j]
                C[r + 1, j] += b0 * Bm[k, j]
        r += 2
    if r < n:
        for k in range(0, K4, 4):
            a0 = A[r, k]
            a1 = A[r, k + 1]
            a2 = A[r, k + 2]
            a3 = A[r, k + 3]
            for j in range(N):
                C[r, j] += a0 * Bm[k, j] + a1 * Bm[k + 1, j] + a2 * Bm[k + 2, j] + a3 * Bm[k + 3, j]
        for k in range(K4, K):
            a0 = A[r, k]
            for j in range(N):
                C[r, j] += a0 * Bm[k, j]


@njit(inline="always", **_JIT)
def _activate_gates(zr, H):
    """i, f, o = σ(z), g = tanh(z) in place on one row of pre-activations [i | f | g | o].

    Each gate block is a unit-stride loop from 0 over a view of its own: these vectorise
    (LLVM left a loop over ``range(3H, 4H)`` of the row scalar, which cost a third of the
    step; a loop mixing the four blocks does not vectorise either)."""
    for j in range(2 * H):
        zr[j] = _sigmoid(zr[j])
    zg = zr[2 * H:3 * H]
    for j in range(H):
        zg[j] = _tanh(zg[j])
    zo = zr[3 * H:4 * H]
    for j in range(H):
        zo[j] = _sigmoid(zo[j])


# -------------------------------------------------------------- time loops
@njit(inline="always", **_JIT)
def _fwd_task(xz, xrow, col, start, lengths, rows, U, reverse, store, seq, gates, cs, hprev, out, ocol):
    """One direction over the rows ``rows`` (sorted longest first), all rows per step.

    xz (·, ·) input projections (columns col:col+4H); real step p reads row
    ``xrow[p]`` (p itself, or its token's row when each distinct token is projected once); writes the
    activated gates (cols col:col+4H), c and h_{t-1} (cols ocol:ocol+H) at each
    real step if ``store``, and h to ``out`` — (B, L, ·) if ``seq``, else the
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
            if store:
                hp = hprev[p]
                for j in range(H):
                    hp[ocol + j] = hr[j]
            _activate_gates(zr, H)
            for j in range(H):
                cn = zr[H + j] * cr[j] + zr[j] * zr[2 * H + j]
                cr[j] = cn
                hr[j] = zr[3 * H + j] * _tanh(cn)
            if store:
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


@njit(inline="always", **_JIT)
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
    tiny = dt.type(_TINY)
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


@njit(parallel=True, **_JIT)
def _fwd_parallel(xz, xrow, start, lengths, task_rows, task_ptr, task_dir, Us, reverses, store, seq,
                  gates, cs, hprev, out):
    for ti in prange(task_dir.shape[0]):
        d = task_dir[ti]
        G = Us.shape[2]
        _fwd_task(xz, xrow, d * G, start, lengths, task_rows[task_ptr[ti]:task_ptr[ti + 1]], Us[d],
                  reverses[d], store, seq, gates, cs, hprev, out, d * (G // 4))


@njit(**_JIT)
def _fwd_serial(xz, xrow, start, lengths, task_rows, task_ptr, task_dir, Us, reverses, store, seq,
                gates, cs, hprev, out):
    for ti in range(task_dir.shape[0]):
        d = task_dir[ti]
        G = Us.shape[2]
        _fwd_task(xz, xrow, d * G, start, lengths, task_rows[task_ptr[ti]:task_ptr[ti + 1]], Us[d],
                  reverses[d], store, seq, gates, cs, hprev, out, d * (G // 4))


@njit(parallel=True, **_JIT)
def _bwd_parallel(dout, seq, gates, cs, hprev, start, lengths, task_rows, task_ptr, task_dir, UTs, reverses,
                  xrow, dzx, dU, db):
    for ti in prange(task_dir.shape[0]):
        d = task_dir[ti]
        G = UTs.shape[1]
        _bwd_task(dout, seq, gates, cs, hprev, start, lengths, task_rows[task_ptr[ti]:task_ptr[ti + 1]], UTs[d],
                  reverses[d], d * G, d * (G // 4), xrow, dzx[ti], dU[ti], db[ti])


@njit(**_JIT)
def _bwd_serial(dout, seq, gates, cs, hprev, start, lengths, task_rows, task_ptr, task_dir, UTs, reverses,
                xrow, dzx, dU, db):
    for ti in range(task_dir.shape[0]):
        d = task_dir[ti]
        G = UTs.shape[1]
        _bwd_task(dout, seq, gates, cs, hprev, start, lengths, task_rows[task_ptr[ti]:task_ptr[ti + 1]], UTs[d],
                  reverses[d], d * G, d * (G // 4), xrow, dzx[ti], dU[ti], db[ti])


@njit(inline="always", **_JIT)
def _sync_table(ids, lengths, E, W0, b0, W1, b1, D, T, Ec, valid, Wc, bc):
    """Bring the table rows of the tokens in ``ids`` up to date; -1 on an id out of range."""
    ndiff = 0  # bitwise equality (xor/or on the bits: branch-free, vectorises, NaN-safe)
    for d in range(D):
        W = (W0 if d == 0 else W1).ravel().view(np.int32)
        b = (b0 if d == 0 else b1).view(np.int32)
        Wd = Wc[d].ravel().view(np.int32)
        bd = bc[d].view(np.int32)
        for j in range(W.shape[0]):
            ndiff |= W[j] ^ Wd[j]
        for j in range(b.shape[0]):
            ndiff |= b[j] ^ bd[j]
    if ndiff:
        for d in range(D):
            Wc[d] = W0 if d == 0 else W1
            bc[d] = b0 if d == 0 else b1
        valid[:] = 0
    V, Ed = E.shape
    G = T.shape[2]
    for r in range(ids.shape[0]):
        for t in range(lengths[r]):
            v = ids[r, t]
            if v < 0 or v >= V:
                return -1
            ok = valid[v] == 1
            if ok:
                nd = 0
                Ev = E[v].view(np.int32)
                Ecv = Ec[v].view(np.int32)
                for e in range(Ed):
                    nd |= Ev[e] ^ Ecv[e]
                ok = nd == 0
            if not ok:
                for e in range(Ed):
                    Ec[v, e] = E[v, e]
                for d in range(D):
                    Wd = Wc[d]
                    Td = T[d, v]
                    for j in range(G):
                        Td[j] = bc[d, j]
                    for e in range(Ed):
                        xe = Ec[v, e]
                        for j in range(G):
                            Td[j] += xe * Wd[e, j]
                valid[v] = 1
    return 0


@njit(inline="always", **_JIT)
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
            _activate_gates(zr, H)
            for j in range(H):
                cn = zr[H + j] * cr[j] + zr[j] * zr[2 * H + j]
                cr[j] = cn
                hr[j] = zr[3 * H + j] * _tanh(cn)
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


@njit(parallel=True, **_JIT)
def _infer_parallel(ids, lengths, task_rows, task_ptr, task_dir, T, U0, U1, reverses, pool_max, feat):
    for ti in prange(task_dir.shape[0]):
        d = task_dir[ti]
        _infer_task(ids, lengths, task_rows[task_ptr[ti]:task_ptr[ti + 1]], T, d, U0 if d == 0 else U1,
                    reverses[d], pool_max, feat)


@njit(inline="always", **_JIT)
def _head(feat, W1, b1, act, W2, b2, out):
    """out = softmax(dense2(act(dense1(feat)))) in float64 (act: 0 none/linear, 1 relu, 2 selu;
    no hidden layer if W1 has no columns)."""
    B = feat.shape[0]
    K = W2.shape[1]
    hid = W1.shape[1]
    dt = feat.dtype
    zero = dt.type(0)
    lam = dt.type(1.0507009873554805)
    la = dt.type(1.0507009873554805 * 1.6732632423543772)
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
                if act == 1:
                    v = max(v, zero)
                elif act == 2:
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
        mx = zk.max()
        s = 0.0
        for k in range(K):
            zk[k] = np.exp(zk[k] - mx)
            s += zk[k]
        for k in range(K):
            out[r, k] = zk[k] / s


@njit(**_JIT)
def _score_serial(ids, lengths, task_rows, task_ptr, task_dir, E, W0, b0, U0, W1, b1, U1, reverses, D,
                  T, Ec, valid, Wc, bc, pool_max, feat, HW1, Hb1, act, HW2, Hb2, out):
    """Everything for a small batch in one call: table sync, time loops, head."""
    if _sync_table(ids, lengths, E, W0, b0, W1, b1, D, T, Ec, valid, Wc, bc) < 0:
        return -1
    for ti in range(task_dir.shape[0]):
        d = task_dir[ti]
        _infer_task(ids, lengths, task_rows[task_ptr[ti]:task_ptr[ti + 1]], T, d, U0 if d == 0 else U1,
                    reverses[d], pool_max, feat)
    _head(feat, HW1, Hb1, act, HW2, Hb2, out)
    return 0


@njit(**_JIT)
def _sync_only(ids, lengths, E, W0, b0, W1, b1, D, T, Ec, valid, Wc, bc):
    return _sync_table(ids, lengths, E, W0, b0, W1, b1, D, T, Ec, valid, Wc, bc)


@njit(**_JIT)
def _head_only(feat, W1, b1, act, W2, b2, out):
    _head(feat, W1, b1, act, W2, b2, out)




# ------------------------------------------------------------------- pooling
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


# ----------------------------------------------------------------- embedding
@njit(cache=True)
def scatter_add(dE, ids, lengths, dx):
    B = ids.shape[0]
    D = dE.shape[1]
    for b in range(B):
        for t in range(lengths[b]):
            v = ids[b, t]
            for d in range(D):
                dE[v, d] += dx[b, t, d]


# ---------------------------------------------------------------------- Adam
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
