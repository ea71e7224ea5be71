"""A plain-NumPy reference LSTM: the oracle the fast kernels are tested against, and the NumPy
scoring path (:class:`tinykd.scoring.scorer.Scorer` runs :func:`lstm_scan` when it does not run Numba).

Written to be read top to bottom (in the style of numpy-ml / llm.c): no Numba,
no ragged layout, no imports from the rest of tinykd. One loop over time, and
inside it whole-batch NumPy operations on the rows that are still running.

Shapes::

    x (B, L, E)   lengths (B,) int   W (E, 4H)   U (H, 4H)   b (4H,)
    xw (B, L, 4H) = x W + b, the input projection of every step
    out (B, L, H) if return_sequences, else (B, H)

Forward (gate order i, f, g, o, as in Keras and PyTorch)::

    z_t = x_t W + b + h_{t-1} U                      z_t: (B, 4H) = [z_i | z_f | z_g | z_o]
    i = σ(z_i)   f = σ(z_f)   g = tanh(z_g)   o = σ(z_o)
    c_t = f ⊙ c_{t-1} + i ⊙ g
    h_t = o ⊙ tanh(c_t)                              h_0 = c_0 = 0

:func:`lstm_forward` computes ``xw = x W + b`` and hands it to :func:`lstm_scan`, the time loop
(the scorer hands it rows of its table ``E W + b`` instead).

Row ``b`` reads exactly ``lengths[b]`` steps: t = 0, 1, …, lengths[b]−1, or,
with ``reverse=True``, t = lengths[b]−1, …, 1, 0 (the backward half of a
bidirectional LSTM). Padded steps t ≥ lengths[b] are never read; their
outputs, and the gradients flowing into them, are zero. ``out[b, t]`` is the
state h after reading step t; the last state (``return_sequences=False``) is
the state after the last step read — step lengths[b]−1 forward, step 0
reversed — and zeros for an empty row. Below, "t+1" and "t−1" mean the next
and the previous step *in reading order*.

Backward (``dout_t`` = ∂loss/∂out_t; for the last state only, dout is added at
the last step read; dh and dc after the last step read are 0)::

    dh_t  = dout_t + dz_{t+1} Uᵀ
    dc_t  = dh_t ⊙ o_t ⊙ (1 − tanh² c_t) + dc_{t+1} ⊙ f_{t+1}
    dz_i  = dc_t ⊙ g ⊙ i (1 − i)
    dz_f  = dc_t ⊙ c_{t-1} ⊙ f (1 − f)
    dz_g  = dc_t ⊙ i ⊙ (1 − g²)
    dz_o  = dh_t ⊙ tanh(c_t) ⊙ o (1 − o)
    dx_t  = dz_t Wᵀ
    dW    = Σ_t x_tᵀ dz_t      dU = Σ_t h_{t-1}ᵀ dz_t      db = Σ_t dz_t

(the sums run over every real step of every row).

The dtype follows the inputs: float32 stays float32, float64 stays float64.
tanh is the exact ``np.tanh``; the sigmoid is σ(z) = ½ tanh(z/2) + ½, exact and free of
overflow.
"""
from __future__ import annotations

import numpy as np

__all__ = ["lstm_forward", "lstm_backward", "lstm_scan", "lstm_scan_backward"]

OUTPUTS = ("sequences", "last", "max")


def _sigmoid(z):
    """σ(z) = 1 / (1 + e^{−z}) = ½ tanh(z/2) + ½: tanh never overflows, and the dtype is kept."""
    half = z.dtype.type(0.5)
    return np.tanh(z * half) * half + half


def _real_steps(lengths, L):
    """(B, L) bool: True at the real steps t < lengths[b]."""
    return np.arange(L)[None, :] < lengths[:, None]


def lstm_scan(xw, lengths, U, reverse=False, output="sequences", keep_cache=True):
    """The LSTM time loop over pre-projected inputs ``xw = x W + b``.

    Args:
        xw: (B, L, 4H) float array; steps t ≥ lengths[b] are padding and never read.
        lengths: (B,) ints, 0 ≤ lengths[b] ≤ L.
        U: (H, 4H) — gate blocks in the order i, f, g, o.
        reverse: read each row from step lengths[b]−1 down to step 0.
        output: "sequences" — every state (B, L, H); "last" — the state after the last step
            read (B, H); "max" — global max pooling over time, ``max_t h_t`` over the steps
            read (B, H). Zeros for an empty row.
        keep_cache: keep what :func:`lstm_scan_backward` needs ("sequences" and "last" only;
            scoring keeps none).

    Rows are visited longest first, so at reading step k the rows still running are a prefix
    of that order and the state update is one (n, H) × (H, 4H) product on slices::

        z = xw_t + h_{t-1} U      (σ of all four blocks at once: the g block's σ is unused)

    Returns:
        ``(out, cache)``; ``cache`` is None without ``keep_cache``.
    """
    assert output in OUTPUTS and not (keep_cache and output == "max")
    lengths = np.asarray(lengths).astype(np.int64)
    B, L, G = xw.shape
    H = U.shape[0]
    dt = xw.dtype
    assert G == 4 * H and U.shape == (H, G) and U.dtype == dt
    assert lengths.shape == (B,) and ((lengths >= 0) & (lengths <= L)).all()
    order = np.argsort(-lengths, kind="stable")  # longest first: the running rows are a prefix
    slen = lengths[order]
    kmax = int(slen[0]) if B else 0
    running = np.count_nonzero(slen[:, None] > np.arange(kmax), axis=0)  # rows still running at step k
    h = np.zeros((B, H), dt)  # states, rows in the sorted order
    c = np.zeros((B, H), dt)
    seq = np.zeros((B, L, H), dt) if output == "sequences" else None
    m = np.full((B, H), -np.inf, dt) if output == "max" else None
    steps = [] if keep_cache else None
    for k in range(kmax):
        n = int(running[k])
        rows = order[:n]
        t = slen[:n] - 1 - k if reverse else k
        h_prev, c_prev = h[:n], c[:n]
        z = xw[rows, t] + h_prev @ U  # (n, 4H)
        s = _sigmoid(z)
        i, f, o = s[:, :H], s[:, H:2 * H], s[:, 3 * H:]
        g = np.tanh(z[:, 2 * H:3 * H])
        c_new = f * c_prev + i * g
        tc = np.tanh(c_new)
        h_new = o * tc
        if keep_cache:
            steps.append(dict(n=n, t=t, h_prev=h_prev.copy(), c_prev=c_prev.copy(), i=i, f=f, g=g, o=o, tc=tc))
        h[:n], c[:n] = h_new, c_new
        if seq is not None:
            seq[rows, t] = h_new
        elif m is not None:
            np.maximum(m[:n], h_new, out=m[:n])
    if seq is None:  # rows stop updating after their last step; empty rows stay 0
        out = np.empty_like(h)
        out[order] = h if m is None else np.where(slen[:, None] > 0, m, 0)
    cache = dict(steps=steps, order=order, shape=(B, L, G), U=U, seq=seq is not None) if keep_cache else None
    return (out if seq is None else seq), cache


def lstm_scan_backward(dout, cache):
    """Backward pass of :func:`lstm_scan`: ``dout`` (the shape of its output; entries at padded
    steps are never read) → ``(dxw (B, L, 4H) with zeros at padded steps, dU (H, 4H))``.

    Maths, going back over the reading steps (t+1 = the next step read)::

        dh_t = dout_t + dz_{t+1} Uᵀ
        dc_t = dh_t ⊙ o ⊙ (1 − tanh² c_t) + dc_{t+1} ⊙ f_{t+1}
        dz_t = [dz_i | dz_f | dz_g | dz_o]     (each as in the module docstring)
        dxw_t = dz_t     dU = Σ_t h_{t-1}ᵀ dz_t
    """
    B, L, G = cache["shape"]
    U, order, seq = cache["U"], cache["order"], cache["seq"]
    dt = U.dtype
    dout = np.asarray(dout, dtype=dt)
    assert dout.shape == ((B, L, G // 4) if seq else (B, G // 4))
    dxw = np.zeros((B, L, G), dt)
    dU = np.zeros_like(U)
    # gradients carried from step t+1 back to step t, rows in the sorted order
    dh_next = np.zeros((B, G // 4), dt) if seq else dout[order]  # last state: enters at the last step read
    dc_next = np.zeros((B, G // 4), dt)
    for s in reversed(cache["steps"]):
        n, t = s["n"], s["t"]
        rows = order[:n]
        i, f, g, o, tc = s["i"], s["f"], s["g"], s["o"], s["tc"]
        dh = dh_next[:n] + dout[rows, t] if seq else dh_next[:n]
        dc = dh * o * (1 - tc * tc) + dc_next[:n]
        dz = np.concatenate([
            dc * g * i * (1 - i),              # dz_i
            dc * s["c_prev"] * f * (1 - f),    # dz_f
            dc * i * (1 - g * g),              # dz_g
            dh * tc * o * (1 - o),             # dz_o
        ], axis=1)  # (n, 4H)
        dxw[rows, t] = dz
        dU += s["h_prev"].T @ dz
        dh_next[:n] = dz @ U.T
        dc_next[:n] = dc * f
    return dxw, dU


def lstm_forward(x, lengths, W, U, b, reverse=False, return_sequences=True):
    """Forward pass of one LSTM direction over a padded batch with true lengths.

    Args:
        x: (B, L, E) float array; steps t ≥ lengths[b] are padding and never read.
        lengths: (B,) ints, 0 ≤ lengths[b] ≤ L.
        W: (E, 4H), U: (H, 4H), b: (4H,) — gate blocks in the order i, f, g, o.
        reverse: read each row from step lengths[b]−1 down to step 0.
        return_sequences: return every state (B, L, H), else only the last one (B, H).

    Maths: ``xw_t = x_t W + b`` for every real step, then :func:`lstm_scan`.

    Returns:
        ``(out, cache)``: ``out`` (B, L, H) with ``out[b, t] = h`` after reading
        step t and zeros at padded steps, or (B, H) = the state after the last
        step read (zeros for an empty row); ``cache`` for :func:`lstm_backward`.
    """
    dt = np.result_type(x, W, U, b)
    x, W, U, b = (np.asarray(a, dtype=dt) for a in (x, W, U, b))
    lengths = np.asarray(lengths).astype(np.int64)
    B, L, E = x.shape
    H = U.shape[0]
    assert W.shape == (E, 4 * H) and U.shape == (H, 4 * H) and b.shape == (4 * H,)
    real = _real_steps(lengths, L)
    xw = np.zeros((B, L, 4 * H), dt)
    xw[real] = x[real] @ W + b  # only real steps are projected (padding may hold anything)
    out, cache = lstm_scan(xw, lengths, U, reverse, "sequences" if return_sequences else "last")
    cache.update(x_real=x[real], real=real, W=W, E=E)
    return out, cache


def lstm_backward(dout, cache):
    """Backward pass of :func:`lstm_forward`.

    Args:
        dout: ∂loss/∂out, the shape of the forward output — (B, L, H) or (B, H).
            Entries at padded steps are never read.
        cache: from :func:`lstm_forward`.

    Maths: :func:`lstm_scan_backward` gives dz_t (= dxw_t) and dU, then, over the real steps::

        dx_t = dz_t Wᵀ      dW = Σ_t x_tᵀ dz_t      db = Σ_t dz_t

    Returns:
        ``(dx, dW, dU, db)``, new arrays (nothing is accumulated): dx (B, L, E)
        with zeros at padded steps, dW (E, 4H), dU (H, 4H), db (4H,).
    """
    dxw, dU = lstm_scan_backward(dout, cache)
    B, L, G = cache["shape"]
    real, W = cache["real"], cache["W"]
    dz = dxw[real]  # (N, 4H): every real step of every row
    dx = np.zeros((B, L, cache["E"]), W.dtype)
    dx[real] = dz @ W.T
    return dx, cache["x_real"].T @ dz, dU, dz.sum(axis=0)

