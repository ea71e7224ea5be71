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
* Scoring (:func:`score_rows`) skips the caches, reads the input projection
  of each token from a lookup table ``E W + b`` (see
  :class:`ProjectionTable`) and fuses time loop, pooling and head in one
  Numba call.
* The Numba kernels live in :mod:`tinykd.nn._kernels`, imported on first use:
  ``import tinykd`` does not import Numba, and a fresh process scores its
  first small requests with a NumPy time loop (:func:`score_rows_numpy`)
  instead of paying Numba's ~0.5 s start-up for one answer.
"""
from __future__ import annotations

import sys

import numpy as np

from .embedding import Lookup

_TINY = 1e-30  # carried gradients below this are flushed to 0 (no denormal slow-down)

#: run independent directions / batch halves on several cores (``prange``): True, False, or
#: "auto" — only while the machine has a core to spare (1-minute load average below cores − ½,
#: re-read every second). On a busy machine the threads of a parallel loop wait for each other
#: and the serial loop is several times faster.
PARALLEL = "auto"
_load_seen = [-1e9, False]


def _parallel():
    if PARALLEL != "auto":
        return bool(PARALLEL)
    import time

    now = time.monotonic()
    if now - _load_seen[0] > 1.0:
        import os

        n = os.cpu_count() or 1
        try:
            free = os.getloadavg()[0] < n - 0.5
        except OSError:  # pragma: no cover - no load average on this platform
            free = True
        _load_seen[:] = [now, n >= 2 and free]
    return _load_seen[1]
#: an LSTM batch with at least this many rows is split into two halves run in parallel
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


_kernels_module = None


def _K():
    """The Numba kernels (imported, and Numba started, on first use)."""
    global _kernels_module
    if _kernels_module is None:
        from . import _kernels

        _kernels_module = _kernels
    return _kernels_module


# ------------------------------------------------------------- ragged layout
def _plan(lengths, n_dirs, B):
    """Row order (longest first) split into tasks: one per direction, or two interleaved
    halves of a large one-direction batch. Returns (rows, ptr, dir) int arrays."""
    order = np.argsort(-lengths, kind="stable").astype(np.int32)
    order = order[lengths[order] > 0]
    if n_dirs == 1 and B >= SPLIT_ROWS and _parallel():
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


def _rnn_forward(x, lengths, dirs, return_sequences, store=True):
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
    rows, ptr, tdir = _plan(lengths, D, B)
    if store:
        gates = _buffer((N, D * G), dt)
        cs = _buffer((N, D * H), dt)
        hprev = _buffer((N, D * H), dt)
    else:
        gates = cs = hprev = np.empty((0, 0), dt)
    out = _buffer((B, L if return_sequences else 1, D * H), dt, zero=True)
    K = _K()
    kern = K._fwd_parallel if len(tdir) > 1 and _parallel() else K._fwd_serial
    kern(xz, xrow, start, lengths, rows, ptr, tdir, Us, reverses, store, return_sequences, gates, cs, hprev, out)
    cache = dict(x_shape=(B, L, E), xr=xr, xrow=xrow, u=u, idx=idx, start=start, lengths=lengths, Wc=Wc, Us=Us,
                 reverses=reverses, rows=rows, ptr=ptr, tdir=tdir, gates=gates, cs=cs, hprev=hprev,
                 seq=return_sequences, D=D)
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
    K = _K()
    kern = K._bwd_parallel if nt > 1 and _parallel() else K._bwd_serial
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
def lstm_forward(x, lengths, W, U, b, reverse=False, return_sequences=True):
    """One LSTM direction.

    x (B, L, E) or a :class:`~tinykd.nn.embedding.Lookup`, lengths (B,) int32, W (E, 4H), U (H, 4H), b (4H,).
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
    into ``dW``, ``dU``, ``db`` (``+=``) and returns ``dx`` (B, L, E) — or, for a
    :class:`~tinykd.nn.embedding.Lookup` input, ``(u, dX_u)`` per distinct token,
    which :func:`~tinykd.nn.embedding.embedding_backward` takes as it is.
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
        self.prep = None


#: batches with at least this many rows run on several cores at scoring time
PARALLEL_SCORE_ROWS = 64
_ACT_CODES = {None: 0, "linear": 0, "relu": 1, "selu": 2}


#: a fresh process scores with NumPy until Numba is worth starting: at the first job with at
#: least this many tokens, or after this many small jobs (env ``TINYKD_JIT=always|never`` overrides)
NUMBA_MIN_TOKENS = 2000
NUMBA_AFTER_CALLS = 3
_small_jobs = 0


def use_numba(n_tokens):
    """Whether this scoring job runs the Numba kernels (see :data:`NUMBA_MIN_TOKENS`)."""
    global _small_jobs
    if "tinykd.nn._kernels" in sys.modules:
        return True
    import os

    mode = os.environ.get("TINYKD_JIT", "auto")
    if mode == "always":
        return True
    if mode == "never":
        return False
    if n_tokens >= NUMBA_MIN_TOKENS or _small_jobs >= NUMBA_AFTER_CALLS:
        return True
    _small_jobs += 1
    return False


def score_rows_numpy(net, ids, lengths, out):
    """The scoring path without Numba: the same maths as :func:`score_rows` with one NumPy
    time loop over the batch (about 1 ms for one 60-token answer) — what a fresh process
    uses for its first small jobs, so that it never waits for Numba to start for one answer."""
    from .dense import ACTIVATIONS, softmax

    cfg, p = net.config, net.p
    dirs = [("fwd", False)] + ([("bwd", True)] if cfg["rnn"] == "bilstm" else [])
    B = lengths.shape[0]
    dt = net.dtype
    order = np.argsort(-lengths, kind="stable")
    slen = lengths[order]
    kmax = int(slen[0]) if B else 0
    x = p["emb.E"][ids[order, :max(kmax, 1)]]
    H = p["rnn.fwd.U"].shape[0]
    feat = np.zeros((B, len(dirs) * H), dt)
    half = dt.type(0.5)
    pool_max = cfg["pooling"] == "max"
    for d, (name, reverse) in enumerate(dirs):
        W, U, b = p[f"rnn.{name}.W"], p[f"rnn.{name}.U"], p[f"rnn.{name}.b"]
        xz = x @ W
        xz += b
        h = np.zeros((B, H), dt)
        c = np.zeros((B, H), dt)
        m = np.full((B, H), -np.inf, dt)
        nact = B
        for k in range(kmax):
            while nact and slen[nact - 1] <= k:
                nact -= 1
            t = slen[:nact] - 1 - k if reverse else np.full(nact, k)
            z = xz[np.arange(nact), t] + h[:nact] @ U
            g = np.tanh(z[:, 2 * H:3 * H])
            sg = np.tanh(z * half) * half + half  # σ(z) = ½ tanh(z/2) + ½ (i, f, o used)
            cn = sg[:, H:2 * H] * c[:nact] + sg[:, :H] * g
            c[:nact] = cn
            h[:nact] = sg[:, 3 * H:] * np.tanh(cn)
            if pool_max:
                np.maximum(m[:nact], h[:nact], out=m[:nact])
        src = m if pool_max else h
        src[slen == 0] = 0.0
        feat[order, d * H:(d + 1) * H] = src
    f = feat
    if cfg["dense_units"]:
        f = f @ p["hidden.W"] + p["hidden.b"]
        f, _ = ACTIVATIONS[cfg["dense_activation"]][0](f)
    z = f @ p["out.W"] + p["out.b"]
    out[:] = softmax(z.astype(np.float64))
    return out


def _prepared(net, table):
    """The network's arrays in kernel order (views into ``net.params``, built once per table)."""
    prep = table.prep
    if prep is None or prep[0] is not net.p["emb.E"]:
        cfg, p = net.config, net.p
        bi = cfg["rnn"] == "bilstm"
        fw = ("rnn.fwd.W", "rnn.fwd.b", "rnn.fwd.U")
        bw = ("rnn.bwd.W", "rnn.bwd.b", "rnn.bwd.U") if bi else fw
        if cfg["dense_units"]:
            HW1, Hb1 = p["hidden.W"], p["hidden.b"]
        else:
            HW1, Hb1 = _EMPTY_W, _EMPTY_B
        prep = table.prep = (p["emb.E"], *(p[k] for k in fw), *(p[k] for k in bw), _REV[2 if bi else 1],
                             2 if bi else 1, cfg["pooling"] == "max", HW1, Hb1,
                             _ACT_CODES[cfg["dense_activation"]], p["out.W"], p["out.b"])
    return prep


def score_rows(net, table, ids, lengths, out):
    """Class probabilities of encoded rows into ``out`` (B, K) float32 — the fast
    inference path of a float32 :class:`~tinykd.model.StudentNet` (no dropout, no caches)."""
    E, W0, b0, U0, W1, b1, U1, reverses, D, pool_max, HW1, Hb1, act, oW, ob = _prepared(net, table)
    B = lengths.shape[0]
    H = U0.shape[0]
    par = B >= PARALLEL_SCORE_ROWS and _parallel()
    if B == 1:
        rows, ptr, tdir = (_ROW0, _PTR1, _DIRS1) if D == 1 else (_ROW00, _PTR2, _DIRS2)
    else:
        order = np.argsort(-lengths, kind="stable").astype(np.int32)
        if D == 1 and par:
            parts = (order[0::2], order[1::2])
            tdir = _DIRS11
        else:
            parts = (order,) * D
            tdir = _DIRS1 if D == 1 else _DIRS2
        rows = np.concatenate(parts)
        ptr = np.array([0, len(parts[0]), len(rows)], np.int64)[:len(parts) + 1]
    feat = np.empty((B, D * H), table.T.dtype)
    K = _K()
    if not par:
        rc = K._score_serial(ids, lengths, rows, ptr, tdir, E, W0, b0, U0, W1, b1, U1, reverses, D,
                             table.T, table.Ec, table.valid, table.Wc, table.bc, pool_max, feat,
                             HW1, Hb1, act, oW, ob, out)
    else:
        rc = K._sync_only(ids, lengths, E, W0, b0, W1, b1, D, table.T, table.Ec, table.valid,
                          table.Wc, table.bc)
        if rc == 0:
            K._infer_parallel(ids, lengths, rows, ptr, tdir, table.T, U0, U1, reverses, pool_max, feat)
            K._head_only(feat, HW1, Hb1, act, oW, ob, out)
    if rc < 0:
        raise IndexError(f"token ids out of range for a vocabulary of {E.shape[0]}")
    return out


_ROW0 = np.zeros(1, np.int32)
_ROW00 = np.zeros(2, np.int32)
_REV = {1: np.array([False]), 2: np.array([False, True])}
_PTR1 = np.array([0, 1], np.int64)
_PTR2 = np.array([0, 1, 2], np.int64)
_DIRS1 = np.array([0], np.int32)
_DIRS2 = np.array([0, 1], np.int32)
_DIRS11 = np.array([0, 0], np.int32)
_EMPTY_W = np.zeros((0, 0), np.float32)
_EMPTY_B = np.zeros(0, np.float32)
