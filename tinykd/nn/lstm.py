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
(the last state; zeros for an empty row). The input projection ``x W + b`` of
all steps is one BLAS GEMM; the time loop runs in Numba, forward and backward.
"""
from __future__ import annotations

import numpy as np
from numba import njit

_TINY = 1e-30  # carried gradients below this are flushed to 0 (no denormal slow-down)


@njit(cache=True, inline="always")
def _sigmoid(x):
    if x >= 0:
        return 1.0 / (1.0 + np.exp(-x))
    e = np.exp(x)
    return e / (1.0 + e)


@njit(cache=True)
def _lstm_forward_kernel(xz, lengths, U, reverse, gates, cs, hs):
    """Time loop. xz (B,L,4H) = x W + b; writes gates (activated), cs, hs."""
    B, L, G = xz.shape
    H = G // 4
    h = np.zeros(H, dtype=xz.dtype)
    c = np.zeros(H, dtype=xz.dtype)
    z = np.empty(G, dtype=xz.dtype)
    for b in range(B):
        n = lengths[b]
        h[:] = 0.0
        c[:] = 0.0
        for k in range(n):
            t = n - 1 - k if reverse else k
            for j in range(G):
                z[j] = xz[b, t, j]
            for m in range(H):
                hm = h[m]
                if hm != 0.0:
                    for j in range(G):
                        z[j] += hm * U[m, j]
            for j in range(H):
                ig = _sigmoid(z[j])
                fg = _sigmoid(z[H + j])
                gg = np.tanh(z[2 * H + j])
                og = _sigmoid(z[3 * H + j])
                cn = fg * c[j] + ig * gg
                c[j] = cn
                h[j] = og * np.tanh(cn)
                gates[b, t, j] = ig
                gates[b, t, H + j] = fg
                gates[b, t, 2 * H + j] = gg
                gates[b, t, 3 * H + j] = og
                cs[b, t, j] = cn
                hs[b, t, j] = h[j]


@njit(cache=True)
def _lstm_backward_kernel(dhs, gates, cs, lengths, U, reverse, dz):
    """Backward time loop. dhs (B,L,H) = dLoss/dh_t; writes dz (B,L,4H) = dLoss/dz_t."""
    B, L, G = gates.shape
    H = G // 4
    dh_next = np.zeros(H, dtype=gates.dtype)
    dc_next = np.zeros(H, dtype=gates.dtype)
    dzt = np.empty(G, dtype=gates.dtype)
    for b in range(B):
        n = lengths[b]
        dh_next[:] = 0.0
        dc_next[:] = 0.0
        for k in range(n - 1, -1, -1):
            t = n - 1 - k if reverse else k
            tp = t + 1 if reverse else t - 1  # previous step in reading order
            for j in range(H):
                ig = gates[b, t, j]
                fg = gates[b, t, H + j]
                gg = gates[b, t, 2 * H + j]
                og = gates[b, t, 3 * H + j]
                c = cs[b, t, j]
                c_prev = cs[b, tp, j] if k > 0 else 0.0
                tc = np.tanh(c)
                dh = dhs[b, t, j] + dh_next[j]
                dc = dc_next[j] + dh * og * (1.0 - tc * tc)
                dzt[j] = dc * gg * ig * (1.0 - ig)
                dzt[H + j] = dc * c_prev * fg * (1.0 - fg)
                dzt[2 * H + j] = dc * ig * (1.0 - gg * gg)
                dzt[3 * H + j] = dh * tc * og * (1.0 - og)
                dcn = dc * fg
                dc_next[j] = dcn if abs(dcn) > _TINY else 0.0
            for m in range(H):
                acc = 0.0
                for j in range(G):
                    acc += U[m, j] * dzt[j]
                dh_next[m] = acc if abs(acc) > _TINY else 0.0
            for j in range(G):
                dz[b, t, j] = dzt[j]


def lstm_forward(x, lengths, W, U, b, reverse=False, return_sequences=True):
    """One LSTM direction.

    x (B, L, E), lengths (B,) int32, W (E, 4H), U (H, 4H), b (4H,).
    Returns ``out`` — (B, L, H) if ``return_sequences`` else the last state
    (B, H) — and a cache for :func:`lstm_backward`.
    """
    B, L, _ = x.shape
    G = W.shape[1]
    H = G // 4
    xz = (x.reshape(B * L, -1) @ W).reshape(B, L, G)
    xz += b
    gates = np.zeros((B, L, G), dtype=x.dtype)
    cs = np.zeros((B, L, H), dtype=x.dtype)
    hs = np.zeros((B, L, H), dtype=x.dtype)
    _lstm_forward_kernel(xz, lengths, U, reverse, gates, cs, hs)
    cache = (x, lengths, W, U, reverse, return_sequences, gates, cs, hs)
    if return_sequences:
        return hs, cache
    return last_state(hs, lengths, reverse), cache


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
    x, lengths, W, U, reverse, return_sequences, gates, cs, hs = cache
    B, L, E = x.shape
    G = W.shape[1]
    H = G // 4
    if return_sequences:
        dhs = np.ascontiguousarray(dout)
    else:
        dhs = np.zeros((B, L, H), dtype=x.dtype)
        idx = np.zeros(B, dtype=np.intp) if reverse else np.maximum(lengths - 1, 0).astype(np.intp)
        keep = lengths > 0
        dhs[np.arange(B)[keep], idx[keep]] = dout[keep]
    dz = np.zeros((B, L, G), dtype=x.dtype)
    _lstm_backward_kernel(dhs, gates, cs, lengths, U, reverse, dz)
    # h_{t-1} in reading order; padded steps have dz = 0 so what sits there is irrelevant
    hprev = np.zeros_like(hs)
    if reverse:
        hprev[:, :-1] = hs[:, 1:]
    else:
        hprev[:, 1:] = hs[:, :-1]
    dz2 = dz.reshape(B * L, G)
    dW += x.reshape(B * L, E).T @ dz2
    dU += hprev.reshape(B * L, H).T @ dz2
    db += dz2.sum(axis=0)
    return (dz2 @ W.T).reshape(B, L, E)


def bilstm_forward(x, lengths, fwd, bwd, return_sequences=True):
    """Bidirectional LSTM: a forward and a reversed direction, concatenated.

    ``fwd`` and ``bwd`` are ``(W, U, b)`` triples. Output (B, L, 2H) or, for
    the last state, (B, 2H) = [forward state at len-1, backward state at 0].
    """
    of, cf = lstm_forward(x, lengths, *fwd, reverse=False, return_sequences=return_sequences)
    ob, cb = lstm_forward(x, lengths, *bwd, reverse=True, return_sequences=return_sequences)
    return np.concatenate([of, ob], axis=-1), (cf, cb)


def bilstm_backward(dout, cache, dfwd, dbwd):
    """Backward of :func:`bilstm_forward`; ``dfwd``/``dbwd`` are ``(dW, dU, db)``."""
    cf, cb = cache
    H = dout.shape[-1] // 2
    dx = lstm_backward(np.ascontiguousarray(dout[..., :H]), cf, *dfwd)
    dx += lstm_backward(np.ascontiguousarray(dout[..., H:]), cb, *dbwd)
    return dx
