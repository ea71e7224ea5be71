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
  (row after row, ``N = Σ lengths`` rows, no padding).
* ``x`` may be a :class:`~tinykd.nn.embedding.Lookup` (the embedding table
  and the ids, as the model passes it): the input projection ``x W + b`` is
  then computed once per *distinct* token of the batch — of both directions of
  a BiLSTM at once — and its gradients ``dW`` and ``dE`` are single BLAS GEMMs
  over the distinct tokens, not over every step.
* The time loop runs in Numba over the whole batch at once: rows are sorted
  by length (longest first), so at step ``k`` the rows still running are a
  prefix, and ``h_{t-1} U`` is one (rows, H) × (H, 4H) product per step with a
  register-blocked loop (four rows × four inputs per pass) that LLVM turns
  into AVX/FMA code. No allocation inside the loop.
* The backward time loop also accumulates ``dU += h_{t-1}ᵀ dz``, ``db`` and
  the per-token sums of ``dz`` into buffers of its own, so no (steps × 4H)
  gradient array is ever written.
* Independent work runs on the cores in parallel (``prange``): the two
  directions of a BiLSTM, or the two halves of a large batch of an LSTM; the
  buffers they write start on cache lines of their own.
* Float32 kernels stay in float32 (typed constants; tanh is a vectorisable
  rational approximation, |error| < 3e-7, sigmoid(x) = ½ tanh(x/2) + ½);
  float64 arrays (the gradient checks) use the exact ``np.tanh``/``np.exp``.
* Carried gradients below 1e-30 are flushed to zero (no denormal slow-down).
* Which path runs where is the caller's choice, passed in explicitly
  (``parallel=``): :class:`tinykd.settings.Settings` decides it, no module state.
* The Numba kernels live in :mod:`tinykd.nn._lstm_kernels` (imported on first
  use, so ``import tinykd`` does not start Numba); the same maths in plain
  NumPy, one step at a time, is :mod:`tinykd.nn.reference`, which the tests
  hold the kernels to. Inference has its own fused kernels
  (:mod:`tinykd.scoring.scorer`).
"""
from __future__ import annotations

import numpy as np

from tinykd.nn.embedding import Lookup

#: a one-direction batch with at least this many rows is split into two halves (run in parallel when allowed)
SPLIT_ROWS = 16


def _buffer(shape, dt, zero=False):
    """A new array whose data starts on a 64-byte cache line, so that two threads writing
    neighbouring blocks of it (the two directions' columns, the two halves' rows, each task's
    partial sums) never write the same cache line."""
    dt = np.dtype(dt)
    nbytes = int(np.prod(shape)) * dt.itemsize
    raw = (np.zeros if zero else np.empty)(nbytes + 64, np.uint8)
    off = -raw.ctypes.data % 64
    return raw[off:off + nbytes].view(dt).reshape(shape)


def _kernels():
    from tinykd.nn import _lstm_kernels  # Numba starts here, on the first training step

    return _lstm_kernels


# ------------------------------------------------------------- ragged layout
def _plan(lengths, n_dirs, B, parallel, split_rows):
    """Row order (longest first) split into tasks: one per direction, or two interleaved halves
    of a one-direction batch of at least ``split_rows`` rows. The split does not depend on
    ``parallel`` (the tasks then run one after the other): each task sums its own gradients, so
    serial and parallel runs add the same numbers in the same order and train bit-identical
    weights whatever the machine's load. Returns (rows, ptr, dir) int arrays."""
    order = np.argsort(-lengths, kind="stable").astype(np.int32)
    order = order[lengths[order] > 0]
    if n_dirs == 1 and B >= split_rows:
        parts = [order[0::2], order[1::2]]
        dirs = [0, 0]
    else:
        parts = [order] * n_dirs
        dirs = list(range(n_dirs))
    ptr = np.zeros(len(parts) + 1, np.int64)
    ptr[1:] = np.cumsum([len(q) for q in parts])
    return (np.concatenate(parts).astype(np.int32), ptr, np.asarray(dirs, np.int32))


def _ragged(lengths, L):
    """Where the real steps of a (B, L, ·) batch sit when stored row after row:
    ``start[b]`` = first index of row b; ``idx`` = their flat (b·L + t) indices, or None
    when every row is full (the flat layout is then already ragged)."""
    B = lengths.shape[0]
    start = np.zeros(B, np.int64)
    if B:
        np.cumsum(lengths[:-1], out=start[1:])
    if B and (lengths == L).all():
        return start, None
    return start, np.flatnonzero((np.arange(L)[None, :] < lengths[:, None]).ravel())


def _rnn_forward(x, lengths, dirs, return_sequences, parallel, split_rows):
    """Shared forward of one or two directions: ``dirs`` = [(W, U, b, reverse), ...]."""
    lengths = np.ascontiguousarray(lengths, dtype=np.int32)
    D = len(dirs)
    G = dirs[0][0].shape[1]
    H = G // 4
    if isinstance(x, Lookup):  # project each distinct token once: (E[u] W)[inverse] = E[ids] W
        B, L = x.ids.shape
        start, idx = _ragged(lengths, L)
        tok = x.ids.reshape(-1) if idx is None else x.ids.reshape(-1)[idx]
        u, inv = np.unique(tok, return_inverse=True)
        xr, xrow, E = x.E[u], inv.astype(np.int32), x.E.shape[1]
    else:
        x = np.ascontiguousarray(x)
        B, L, E = x.shape
        start, idx = _ragged(lengths, L)
        xr = x.reshape(B * L, E) if idx is None else x.reshape(B * L, E)[idx]
        u, xrow = None, np.arange(xr.shape[0], dtype=np.int32)
    dt = xr.dtype
    N = xrow.shape[0]
    if D == 1:
        Wc, bc = dirs[0][0], dirs[0][2]
    else:
        Wc = np.concatenate([d[0] for d in dirs], axis=1)
        bc = np.concatenate([d[2] for d in dirs])
    xz = xr @ Wc
    xz += bc
    Us = np.stack([np.ascontiguousarray(d[1], dtype=dt) for d in dirs])
    reverses = np.array([bool(d[3]) for d in dirs])
    rows, ptr, tdir = _plan(lengths, D, B, parallel, split_rows)
    gates = _buffer((N, D * G), dt)
    cs = _buffer((N, D * H), dt)
    hprev = _buffer((N, D * H), dt)
    out = _buffer((B, L if return_sequences else 1, D * H), dt, zero=True)
    K = _kernels()
    parallel = bool(parallel) and len(tdir) > 1
    kern = K._fwd_parallel if parallel else K._fwd_serial
    kern(xz, xrow, start, lengths, rows, ptr, tdir, Us, reverses, return_sequences, gates, cs, hprev, out)
    cache = dict(x_shape=(B, L, E), xr=xr, xrow=xrow, u=u, idx=idx, start=start, lengths=lengths, Wc=Wc, Us=Us,
                 reverses=reverses, rows=rows, ptr=ptr, tdir=tdir, gates=gates, cs=cs, hprev=hprev,
                 seq=return_sequences, D=D, parallel=parallel)
    return (out if return_sequences else out[:, 0]), cache


def _rnn_backward(dout, cache):
    """Returns (dx, dW (E, D·4H), dU list, db (D·4H,)) for the shared forward; dx is (B, L, E),
    or ``(u, dX_u)`` per distinct token when the forward was fed a :class:`Lookup`."""
    B, L, E = cache["x_shape"]
    D = cache["D"]
    Wc, Us, gates = cache["Wc"], cache["Us"], cache["gates"]
    dt = gates.dtype
    H = Us.shape[1]
    G = 4 * H
    seq = cache["seq"]
    dout = np.ascontiguousarray(dout, dtype=dt)
    dout3 = dout if seq else dout.reshape(B, 1, D * H)
    UTs = np.ascontiguousarray(Us.transpose(0, 2, 1))
    tdir = cache["tdir"]
    nt = len(tdir)
    xr = cache["xr"]
    dzx = _buffer((nt, xr.shape[0], G), dt, zero=True)  # per task: dz summed per input row
    dUt = _buffer((nt, H, G), dt, zero=True)
    dbt = _buffer((nt, G), dt, zero=True)
    K = _kernels()
    kern = K._bwd_parallel if cache["parallel"] else K._bwd_serial
    kern(dout3, seq, gates, cache["cs"], cache["hprev"], cache["start"], cache["lengths"], cache["rows"],
         cache["ptr"], tdir, UTs, cache["reverses"], cache["xrow"], dzx, dUt, dbt)
    if D == 1 and nt == 2:  # two halves of one direction
        dzx[0] += dzx[1]
        dUt[0] += dUt[1]
        dbt[0] += dbt[1]
    dW = np.empty((E, D * G), dt)
    for d in range(D):
        dW[:, d * G:(d + 1) * G] = xr.T @ dzx[d]
    dxr = dzx[0] @ Wc[:, :G].T
    if D == 2:
        dxr += dzx[1] @ Wc[:, G:].T
    dU = [dUt[d] for d in range(D)]
    db = dbt[:D].reshape(-1)
    idx, u = cache["idx"], cache["u"]
    if u is not None:
        dx = (u, dxr)
    elif idx is None:
        dx = dxr.reshape(B, L, E)
    else:
        dx = np.zeros((B * L, E), dt)
        dx[idx] = dxr
        dx = dx.reshape(B, L, E)
    return dx, dW, dU, db


# ------------------------------------------------------------------- public
def lstm_forward(x, lengths, W, U, b, reverse=False, return_sequences=True, *, parallel=False,
                 split_rows=SPLIT_ROWS):
    """One LSTM direction.

    x (B, L, E) or a :class:`~tinykd.nn.embedding.Lookup`, lengths (B,) int32, W (E, 4H), U (H, 4H), b (4H,).
    Returns ``out`` — (B, L, H) if ``return_sequences`` else the last state
    (B, H) — and a cache for :func:`lstm_backward`. ``parallel``: run the two
    halves of a batch of at least ``split_rows`` rows on two cores.
    The maths, forward and backward, is :func:`tinykd.nn.reference.lstm_forward`.
    """
    return _rnn_forward(x, lengths, [(W, U, b, reverse)], return_sequences, parallel, split_rows)


def lstm_backward(dout, cache, dW, dU, db):
    """Backward of :func:`lstm_forward`.

    ``dout`` has the shape of the forward output. Adds the parameter gradients
    into ``dW``, ``dU``, ``db`` (``+=``) and returns ``dx`` (B, L, E) — or, for a
    :class:`~tinykd.nn.embedding.Lookup` input, ``(u, dX_u)`` per distinct token,
    which :func:`~tinykd.nn.embedding.embedding_backward` takes as it is.
    """
    dx, gW, gU, gb = _rnn_backward(dout, cache)
    dW += gW
    dU += gU[0]
    db += gb
    return dx


def bilstm_forward(x, lengths, fwd, bwd, return_sequences=True, *, parallel=False):
    """Bidirectional LSTM: a forward and a reversed direction, concatenated.

    ``fwd`` and ``bwd`` are ``(W, U, b)`` triples. Output (B, L, 2H) or, for
    the last state, (B, 2H) = [forward state at len-1, backward state at 0].
    ``parallel``: the two directions on two cores.
    """
    return _rnn_forward(x, lengths, [(*fwd, False), (*bwd, True)], return_sequences, parallel, SPLIT_ROWS)


def bilstm_backward(dout, cache, dfwd, dbwd):
    """Backward of :func:`bilstm_forward`; ``dfwd``/``dbwd`` are ``(dW, dU, db)``."""
    dx, gW, gU, gb = _rnn_backward(dout, cache)
    G = gb.shape[0] // 2
    for d, grads in enumerate((dfwd, dbwd)):
        grads[0] += gW[:, d * G:(d + 1) * G]
        grads[1] += gU[d]
        grads[2] += gb[d * G:(d + 1) * G]
    return dx
