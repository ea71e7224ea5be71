"""A plain-NumPy reference LSTM: the oracle the fast kernels are tested against.

Written to be read top to bottom (in the style of numpy-ml / llm.c): no Numba,
no ragged layout, no imports from the rest of tinykd. One loop over time, and
inside it whole-batch NumPy operations on the rows that are still running.

Shapes::

    x (B, L, E)   lengths (B,) int   W (E, 4H)   U (H, 4H)   b (4H,)
    out (B, L, H) if return_sequences, else (B, H)

Forward (gate order i, f, g, o, as in Keras and PyTorch)::

    z_t = x_t W + h_{t-1} U + b                      z_t: (B, 4H) = [z_i | z_f | z_g | z_o]
    i = σ(z_i)   f = σ(z_f)   g = tanh(z_g)   o = σ(z_o)
    c_t = f ⊙ c_{t-1} + i ⊙ g
    h_t = o ⊙ tanh(c_t)                              h_0 = c_0 = 0

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
tanh is the exact ``np.tanh``; the sigmoid is evaluated so that ``exp`` never
overflows.
"""
from __future__ import annotations

import numpy as np

__all__ = ["lstm_forward", "lstm_backward"]


def _sigmoid(z):
    """σ(z) = 1 / (1 + e^{−z}), numerically stable: exp is only taken of −|z| ≤ 0."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e))


def _steps(lengths, k, reverse):
    """The rows still running at reading step k, and the time index each of them reads."""
    rows = np.flatnonzero(lengths > k)
    t = lengths[rows] - 1 - k if reverse else np.full(rows.shape, k)
    return rows, t


def lstm_forward(x, lengths, W, U, b, reverse=False, return_sequences=True):
    """Forward pass of one LSTM direction over a padded batch with true lengths.

    Args:
        x: (B, L, E) float array; steps t ≥ lengths[b] are padding and never read.
        lengths: (B,) ints, 0 ≤ lengths[b] ≤ L.
        W: (E, 4H), U: (H, 4H), b: (4H,) — gate blocks in the order i, f, g, o.
        reverse: read each row from step lengths[b]−1 down to step 0.
        return_sequences: return every state (B, L, H), else only the last one (B, H).

    Maths, for each reading step (t−1 = the previous step read)::

        z_t = x_t W + h_{t-1} U + b
        i = σ(z_i)   f = σ(z_f)   g = tanh(z_g)   o = σ(z_o)
        c_t = f ⊙ c_{t-1} + i ⊙ g
        h_t = o ⊙ tanh(c_t)              h_0 = c_0 = 0

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
    assert lengths.shape == (B,) and ((lengths >= 0) & (lengths <= L)).all()

    h = np.zeros((B, H), dt)
    c = np.zeros((B, H), dt)
    out = np.zeros((B, L, H), dt) if return_sequences else None
    steps = []
    for k in range(int(lengths.max(initial=0))):
        rows, t = _steps(lengths, k, reverse)
        xt = x[rows, t]  # (n, E): only real steps are read
        h_prev, c_prev = h[rows], c[rows]
        z = xt @ W + h_prev @ U + b  # (n, 4H)
        i = _sigmoid(z[:, 0 * H:1 * H])
        f = _sigmoid(z[:, 1 * H:2 * H])
        g = np.tanh(z[:, 2 * H:3 * H])
        o = _sigmoid(z[:, 3 * H:4 * H])
        c_new = f * c_prev + i * g
        tc = np.tanh(c_new)
        h_new = o * tc
        h[rows], c[rows] = h_new, c_new
        if return_sequences:
            out[rows, t] = h_new
        steps.append(dict(rows=rows, t=t, x=xt, h_prev=h_prev, c_prev=c_prev, i=i, f=f, g=g, o=o, tc=tc))
    if not return_sequences:
        out = h  # rows stop updating after their last step; empty rows stay 0
    cache = dict(steps=steps, x_shape=(B, L, E), H=H, W=W, U=U, dtype=dt, seq=return_sequences)
    return out, cache


def lstm_backward(dout, cache):
    """Backward pass of :func:`lstm_forward`.

    Args:
        dout: ∂loss/∂out, the shape of the forward output — (B, L, H) or (B, H).
            Entries at padded steps are never read.
        cache: from :func:`lstm_forward`.

    Maths, going back over the reading steps (t+1 = the next step read; dh and
    dc after a row's last step read are 0; a last-state ``dout`` (B, H) enters
    as dout_t at that last step)::

        dh_t = dout_t + dz_{t+1} Uᵀ
        dc_t = dh_t ⊙ o ⊙ (1 − tanh² c_t) + dc_{t+1} ⊙ f_{t+1}
        dz_i = dc_t ⊙ g ⊙ i (1 − i)
        dz_f = dc_t ⊙ c_{t-1} ⊙ f (1 − f)
        dz_g = dc_t ⊙ i ⊙ (1 − g²)
        dz_o = dh_t ⊙ tanh(c_t) ⊙ o (1 − o)
        dx_t = dz_t Wᵀ
        dW = Σ_t x_tᵀ dz_t     dU = Σ_t h_{t-1}ᵀ dz_t     db = Σ_t dz_t

    Returns:
        ``(dx, dW, dU, db)``, new arrays (nothing is accumulated): dx (B, L, E)
        with zeros at padded steps, dW (E, 4H), dU (H, 4H), db (4H,).
    """
    B, L, E = cache["x_shape"]
    H, W, U, dt, seq = cache["H"], cache["W"], cache["U"], cache["dtype"], cache["seq"]
    dout = np.asarray(dout, dtype=dt)
    assert dout.shape == ((B, L, H) if seq else (B, H))

    dx = np.zeros((B, L, E), dt)
    dW = np.zeros((E, 4 * H), dt)
    dU = np.zeros((H, 4 * H), dt)
    db = np.zeros(4 * H, dt)
    # gradients carried from step t+1 back to step t, per row
    dh_next = np.zeros((B, H), dt) if seq else dout.copy()  # last state: enters at the last step read
    dc_next = np.zeros((B, H), dt)
    for s in reversed(cache["steps"]):
        rows, t = s["rows"], s["t"]
        i, f, g, o, tc = s["i"], s["f"], s["g"], s["o"], s["tc"]
        dh = dh_next[rows] + dout[rows, t] if seq else dh_next[rows]
        dc = dh * o * (1 - tc * tc) + dc_next[rows]
        dz = np.concatenate([
            dc * g * i * (1 - i),              # dz_i
            dc * s["c_prev"] * f * (1 - f),    # dz_f
            dc * i * (1 - g * g),              # dz_g
            dh * tc * o * (1 - o),             # dz_o
        ], axis=1)  # (n, 4H)
        dx[rows, t] = dz @ W.T
        dW += s["x"].T @ dz
        dU += s["h_prev"].T @ dz
        db += dz.sum(axis=0)
        dh_next[rows] = dz @ U.T
        dc_next[rows] = dc * f
    return dx, dW, dU, db
