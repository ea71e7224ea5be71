"""LSTM and bidirectional LSTM over padded batches with true lengths.

Gate maths (Keras / PyTorch, gate order i, f, g, o)::

    z_t = x_t W + h_{t-1} U + b                 W: (E, 4H)  U: (H, 4H)  b: (4H,)
    i = σ(z_i)   f = σ(z_f)   g = tanh(z_g)   o = σ(z_o)
    c_t = f ⊙ c_{t-1} + i ⊙ g
    h_t = o ⊙ tanh(c_t)                          h_0 = c_0 = 0

(PyTorch's two biases ``b_ih + b_hh`` are the single ``b`` here.)

Each row ``b`` runs for exactly ``lengths[b]`` steps: padded steps are never
read, and their outputs and gradients are zero, so padding cannot change a
result. With ``reverse=True`` the row is read from its last real token back
to its first (the backward half of a bidirectional LSTM).

Shapes: ``x`` (B, L, E) → ``hs`` (B, L, H) (the whole sequence) or (B, H)
(the last state; zeros for an empty row).

How it runs (see ``benchmarks/cpu.py`` for the measurements):

* Only real steps are computed. The rows' real steps are stored "ragged"
  (row after row, ``N = Σ lengths`` rows, no padding), so the input
  projection ``x W + b`` of all steps — of both directions of a BiLSTM at
  once — and the weight gradients are single BLAS GEMMs over real steps only.
* The time loop runs in Numba over the whole batch at once: rows are sorted
  by length (longest first), so at step ``k`` the rows still running are a
  prefix, and ``h_{t-1} U`` is one (rows, H) × (H, 4H) product per step with a
  register-blocked loop (two rows × four inputs per pass) that LLVM turns
  into AVX/FMA code. No allocation inside the loop.
* Independent work runs on the cores in parallel (``prange``): the two
  directions of a BiLSTM, or the two halves of a large batch of an LSTM.
* Float32 kernels stay in float32 (typed constants; tanh is a vectorisable
  rational approximation, |error| < 3e-7, sigmoid(x) = ½ tanh(x/2) + ½);
  float64 arrays (the gradient checks) use the exact ``np.tanh``/``np.exp``.
* Carried gradients below 1e-30 are flushed to zero (no denormal slow-down).
* Inference (:func:`lstm_features`) skips the caches, can read the input
  projection of each token from a lookup table ``E W + b`` (see
  :class:`ProjectionTable`) and fuses the pooling.
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

_TINY = 1e-30  # carried gradients below this are flushed to 0 (no denormal slow-down)
_FM = {"contract", "nsz"}  # FMA contraction only: no reassociation, NaN/inf semantics kept
_JIT = dict(cache=True, fastmath=_FM, error_model="numpy", nogil=True)

#: run independent directions / batch halves on several cores (``prange``); tests flip it
PARALLEL = True
#: an LSTM batch with at least this many rows is split into two halves run in parallel
SPLIT_ROWS = 16

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
def _rows_matmul_acc(A, Bm, C, n):
    """C[:n] += A[:n] @ Bm. Two rows × four inner indices per pass (register-blocked)."""
    K = A.shape[1]
    N = Bm.shape[1]
    K4 = K - K % 4
    r = 0
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


# -------------------------------------------------------------- time loops
@njit(inline="always", **_JIT)
def _fwd_task(xz, col, start, lengths, rows, U, reverse, store, seq, gates, cs, hprev, out, ocol):
    """One direction over the rows ``rows`` (sorted longest first), all rows per step.

    xz (N, ·) ragged input projections (columns col:col+4H); writes the
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
            p = start[b] + t
            for j in range(G):
                z[r, j] = xz[p, col + j]
        if k > 0:
            _rows_matmul_acc(h, U, z, nact)
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
            # simple unit-stride loops over one row: these vectorise (a loop mixing the four
            # gate blocks does not)
            for j in range(2 * H):
                zr[j] = _sigmoid(zr[j])
            for j in range(2 * H, 3 * H):
                zr[j] = _tanh(zr[j])
            for j in range(3 * H, G):
                zr[j] = _sigmoid(zr[j])
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
def _bwd_task(dout, seq, gates, cs, start, lengths, rows, UT, reverse, col, ocol, dz):
    """Backward of :func:`_fwd_task`: writes dz = dLoss/dz_t (ragged, cols col:col+4H)."""
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
            dzp = dz[p]
            for j in range(G):
                dzp[col + j] = zr[j]
        if k > 0:
            for r in range(nact):
                for j in range(H):
                    dh_next[r, j] = zero
            _rows_matmul_acc(zb, UT, dh_next, nact)
            for r in range(nact):
                for j in range(H):
                    v = dh_next[r, j]
                    dh_next[r, j] = v if abs(v) > tiny else zero


@njit(parallel=True, **_JIT)
def _fwd_parallel(xz, start, lengths, task_rows, task_ptr, task_dir, Us, reverses, store, seq,
                  gates, cs, hprev, out):
    for ti in prange(task_dir.shape[0]):
        d = task_dir[ti]
        G = Us.shape[2]
        _fwd_task(xz, d * G, start, lengths, task_rows[task_ptr[ti]:task_ptr[ti + 1]], Us[d],
                  reverses[d], store, seq, gates, cs, hprev, out, d * (G // 4))


@njit(**_JIT)
def _fwd_serial(xz, start, lengths, task_rows, task_ptr, task_dir, Us, reverses, store, seq,
                gates, cs, hprev, out):
    for ti in range(task_dir.shape[0]):
        d = task_dir[ti]
        G = Us.shape[2]
        _fwd_task(xz, d * G, start, lengths, task_rows[task_ptr[ti]:task_ptr[ti + 1]], Us[d],
                  reverses[d], store, seq, gates, cs, hprev, out, d * (G // 4))


@njit(parallel=True, **_JIT)
def _bwd_parallel(dout, seq, gates, cs, start, lengths, task_rows, task_ptr, task_dir, UTs, reverses, dz):
    for ti in prange(task_dir.shape[0]):
        d = task_dir[ti]
        G = UTs.shape[1]
        _bwd_task(dout, seq, gates, cs, start, lengths, task_rows[task_ptr[ti]:task_ptr[ti + 1]], UTs[d],
                  reverses[d], d * G, d * (G // 4), dz)


@njit(**_JIT)
def _bwd_serial(dout, seq, gates, cs, start, lengths, task_rows, task_ptr, task_dir, UTs, reverses, dz):
    for ti in range(task_dir.shape[0]):
        d = task_dir[ti]
        G = UTs.shape[1]
        _bwd_task(dout, seq, gates, cs, start, lengths, task_rows[task_ptr[ti]:task_ptr[ti + 1]], UTs[d],
                  reverses[d], d * G, d * (G // 4), dz)


# ------------------------------------------------------------- ragged layout
def _plan(lengths, n_dirs, B):
    """Row order (longest first) split into tasks: one per direction, or two interleaved
    halves of a large one-direction batch. Returns (rows, ptr, dir) int arrays."""
    order = np.argsort(-lengths, kind="stable").astype(np.int32)
    order = order[lengths[order] > 0]
    if n_dirs == 1 and PARALLEL and B >= SPLIT_ROWS:
        parts = [order[0::2], order[1::2]]
        dirs = [0, 0]
    else:
        parts = [order] * n_dirs
        dirs = list(range(n_dirs))
    ptr = np.zeros(len(parts) + 1, np.int64)
    ptr[1:] = np.cumsum([len(q) for q in parts])
    return (np.concatenate(parts).astype(np.int32), ptr, np.asarray(dirs, np.int32))


def _ragged(x, lengths):
    """(N, E) real steps of x (B, L, E), row after row; ``start[b]`` = first index of row b."""
    B, L = x.shape[:2]
    start = np.zeros(B, np.int64)
    if B:
        np.cumsum(lengths[:-1], out=start[1:])
    if B and (lengths == L).all():
        return x.reshape(B * L, -1), start, None
    flat = (np.arange(L)[None, :] < lengths[:, None]).ravel()
    idx = np.flatnonzero(flat)
    return x.reshape(B * L, -1)[idx], start, idx


def _rnn_forward(x, lengths, dirs, return_sequences, store=True):
    """Shared forward of one or two directions: ``dirs`` = [(W, U, b, reverse), ...]."""
    x = np.ascontiguousarray(x)
    lengths = np.ascontiguousarray(lengths, dtype=np.int32)
    B, L, E = x.shape
    dt = x.dtype
    D = len(dirs)
    G = dirs[0][0].shape[1]
    H = G // 4
    xr, start, idx = _ragged(x, lengths)
    N = xr.shape[0]
    if D == 1:
        Wc, bc = dirs[0][0], dirs[0][2]
    else:
        Wc = np.concatenate([d[0] for d in dirs], axis=1)
        bc = np.concatenate([d[2] for d in dirs])
    xz = xr @ Wc
    xz += bc
    Us = np.stack([np.ascontiguousarray(d[1], dtype=dt) for d in dirs])
    reverses = np.array([bool(d[3]) for d in dirs])
    rows, ptr, tdir = _plan(lengths, D, B)
    if store:
        gates = np.empty((N, D * G), dt)
        cs = np.empty((N, D * H), dt)
        hprev = np.empty((N, D * H), dt)
    else:
        gates = cs = hprev = np.empty((0, 0), dt)
    out = np.zeros((B, L if return_sequences else 1, D * H), dt)
    kern = _fwd_parallel if PARALLEL and len(tdir) > 1 else _fwd_serial
    kern(xz, start, lengths, rows, ptr, tdir, Us, reverses, store, return_sequences, gates, cs, hprev, out)
    cache = dict(x_shape=x.shape, xr=xr, idx=idx, start=start, lengths=lengths, Wc=Wc, Us=Us,
                 reverses=reverses, rows=rows, ptr=ptr, tdir=tdir, gates=gates, cs=cs, hprev=hprev,
                 seq=return_sequences, D=D)
    return (out if return_sequences else out[:, 0]), cache


def _rnn_backward(dout, cache):
    """Returns (dx (B, L, E), dW (E, D·4H), dU list, db (D·4H,)) for the shared forward."""
    B, L, E = cache["x_shape"]
    D = cache["D"]
    Wc, Us, gates = cache["Wc"], cache["Us"], cache["gates"]
    dt = gates.dtype
    H = Us.shape[1]
    G = 4 * H
    N = gates.shape[0]
    seq = cache["seq"]
    dout = np.ascontiguousarray(dout, dtype=dt)
    dout3 = dout if seq else dout.reshape(B, 1, D * H)
    UTs = np.ascontiguousarray(Us.transpose(0, 2, 1))
    dz = np.empty((N, D * G), dt)
    tdir = cache["tdir"]
    kern = _bwd_parallel if PARALLEL and len(tdir) > 1 else _bwd_serial
    kern(dout3, seq, gates, cache["cs"], cache["start"], cache["lengths"], cache["rows"],
         cache["ptr"], tdir, UTs, cache["reverses"], dz)
    dW = cache["xr"].T @ dz
    hprev = cache["hprev"]
    dU = [hprev[:, d * H:(d + 1) * H].T @ dz[:, d * G:(d + 1) * G] for d in range(D)]
    db = dz.sum(axis=0)
    dxr = dz @ Wc.T
    idx = cache["idx"]
    if idx is None:
        dx = dxr.reshape(B, L, E)
    else:
        dx = np.zeros((B * L, E), dt)
        dx[idx] = dxr
        dx = dx.reshape(B, L, E)
    return dx, dW, dU, db


# ------------------------------------------------------------------- public
def lstm_forward(x, lengths, W, U, b, reverse=False, return_sequences=True):
    """One LSTM direction.

    x (B, L, E), lengths (B,) int32, W (E, 4H), U (H, 4H), b (4H,).
    Returns ``out`` — (B, L, H) if ``return_sequences`` else the last state
    (B, H) — and a cache for :func:`lstm_backward`.
    """
    return _rnn_forward(x, lengths, [(W, U, b, reverse)], return_sequences)


def last_state(hs, lengths, reverse):
    """Final state in reading order: step len-1 forward, step 0 reversed; 0 if empty."""
    B, L, H = hs.shape
    idx = np.zeros(B, dtype=np.intp) if reverse else np.maximum(lengths - 1, 0).astype(np.intp)
    out = hs[np.arange(B), idx].copy()
    out[lengths == 0] = 0.0
    return out


def lstm_backward(dout, cache, dW, dU, db):
    """Backward of :func:`lstm_forward`.

    ``dout`` has the shape of the forward output. Adds the parameter gradients
    into ``dW``, ``dU``, ``db`` (``+=``) and returns ``dx`` (B, L, E).
    """
    dx, gW, gU, gb = _rnn_backward(dout, cache)
    dW += gW
    dU += gU[0]
    db += gb
    return dx


def bilstm_forward(x, lengths, fwd, bwd, return_sequences=True):
    """Bidirectional LSTM: a forward and a reversed direction, concatenated.

    ``fwd`` and ``bwd`` are ``(W, U, b)`` triples. Output (B, L, 2H) or, for
    the last state, (B, 2H) = [forward state at len-1, backward state at 0].
    """
    return _rnn_forward(x, lengths, [(*fwd, False), (*bwd, True)], return_sequences)


def bilstm_backward(dout, cache, dfwd, dbwd):
    """Backward of :func:`bilstm_forward`; ``dfwd``/``dbwd`` are ``(dW, dU, db)``."""
    dx, gW, gU, gb = _rnn_backward(dout, cache)
    G = gb.shape[0] // 2
    for d, grads in enumerate((dfwd, dbwd)):
        grads[0] += gW[:, d * G:(d + 1) * G]
        grads[1] += gU[d]
        grads[2] += gb[d * G:(d + 1) * G]
    return dx


# ---------------------------------------------------------------- inference
class ProjectionTable:
    """Lookup table of the input projection ``T[d, v] = E[v] W_d + b_d`` for inference.

    Scoring one token then costs a row copy instead of an (E × 4H) product.
    Rows are filled lazily, the first time a token is scored, and are exact
    functions of the weights they were computed from: every call compares
    ``W_d``, ``b_d`` and the embedding row of each token it reads with the
    copies the table was built from, and recomputes what changed — so
    training a network further, or editing its weights, never gives a stale
    result.
    """

    def __init__(self, V, E, G, D, dtype):
        self.T = np.zeros((D, V, G), dtype)
        self.Ec = np.zeros((V, E), dtype)
        self.valid = np.zeros(V, np.uint8)
        self.Wc = np.full((D, E, G), np.nan, dtype)
        self.bc = np.full((D, G), np.nan, dtype)


@njit(inline="always", **_JIT)
def _sync_table(ids, lengths, E, W0, b0, W1, b1, D, T, Ec, valid, Wc, bc):
    """Bring the table rows of the tokens in ``ids`` up to date; -1 on an id out of range."""
    same = True
    for d in range(D):
        W = W0 if d == 0 else W1
        b = b0 if d == 0 else b1
        Wd = Wc[d]
        bd = bc[d]
        for e in range(W.shape[0]):
            for j in range(W.shape[1]):
                if W[e, j] != Wd[e, j]:
                    same = False
        for j in range(b.shape[0]):
            if b[j] != bd[j]:
                same = False
    if not same:
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
                for e in range(Ed):
                    if E[v, e] != Ec[v, e]:
                        ok = False
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
            _rows_matmul_acc(h, U, z, nact)
        for r in range(nact):
            zr = z[r]
            hr = h[r]
            cr = c[r]
            for j in range(2 * H):
                zr[j] = _sigmoid(zr[j])
            for j in range(2 * H, 3 * H):
                zr[j] = _tanh(zr[j])
            for j in range(3 * H, G):
                zr[j] = _sigmoid(zr[j])
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


#: batches with at least this many rows run on several cores at scoring time
PARALLEL_SCORE_ROWS = 64
_ACT_CODES = {None: 0, "linear": 0, "relu": 1, "selu": 2}


def score_rows(net, table, ids, lengths, out):
    """Class probabilities of encoded rows into ``out`` (B, K) float32 — the fast
    inference path of a float32 :class:`~tinykd.model.StudentNet` (no dropout, no caches)."""
    cfg, p = net.config, net.p
    bi = cfg["rnn"] == "bilstm"
    D = 2 if bi else 1
    B = lengths.shape[0]
    fw = ("rnn.fwd.W", "rnn.fwd.b", "rnn.fwd.U")
    bw = ("rnn.bwd.W", "rnn.bwd.b", "rnn.bwd.U") if bi else fw
    W0, b0, U0 = (p[k] for k in fw)
    W1, b1, U1 = (p[k] for k in bw)
    reverses = _REV[D]
    H = U0.shape[0]
    if B == 1:
        rows, ptr, tdir = (np.zeros(1, np.int32), _PTR1, _DIRS1) if D == 1 else \
            (np.zeros(2, np.int32), _PTR2, _DIRS2)
    else:
        order = np.argsort(-lengths, kind="stable").astype(np.int32)
        if D == 1 and B >= PARALLEL_SCORE_ROWS and PARALLEL:
            parts = (order[0::2], order[1::2])
            tdir = _DIRS11
        else:
            parts = (order,) * D
            tdir = _DIRS1 if D == 1 else _DIRS2
        rows = np.concatenate(parts)
        ptr = np.array([0, len(parts[0]), len(rows)], np.int64)[:len(parts) + 1]
    feat = np.zeros((B, D * H), table.T.dtype)
    if cfg["dense_units"]:
        HW1, Hb1 = p["hidden.W"], p["hidden.b"]
    else:
        HW1, Hb1 = _EMPTY_W, _EMPTY_B
    act = _ACT_CODES[cfg["dense_activation"]]
    pool_max = cfg["pooling"] == "max"
    if B < PARALLEL_SCORE_ROWS or not PARALLEL:
        rc = _score_serial(ids, lengths, rows, ptr, tdir, p["emb.E"], W0, b0, U0, W1, b1, U1, reverses, D,
                           table.T, table.Ec, table.valid, table.Wc, table.bc, pool_max, feat,
                           HW1, Hb1, act, p["out.W"], p["out.b"], out)
    else:
        rc = _sync_only(ids, lengths, p["emb.E"], W0, b0, W1, b1, D, table.T, table.Ec, table.valid,
                        table.Wc, table.bc)
        if rc == 0:
            _infer_parallel(ids, lengths, rows, ptr, tdir, table.T, U0, U1, reverses, pool_max, feat)
            _head_only(feat, HW1, Hb1, act, p["out.W"], p["out.b"], out)
    if rc < 0:
        raise IndexError(f"token ids out of range for a vocabulary of {p['emb.E'].shape[0]}")
    return out


_REV = {1: np.array([False]), 2: np.array([False, True])}
_PTR1 = np.array([0, 1], np.int64)
_PTR2 = np.array([0, 1, 2], np.int64)
_DIRS1 = np.array([0], np.int32)
_DIRS2 = np.array([0, 1], np.int32)
_DIRS11 = np.array([0, 0], np.int32)
_EMPTY_W = np.zeros((0, 0), np.float32)
_EMPTY_B = np.zeros(0, np.float32)
