"""Scoring: a :class:`Scorer` is built once from a trained network and scores encoded rows.

Its weight arrays are read-only (``writeable=False``), so nothing can change under it
and no call checks them. Built once, it holds:

* the input-projection table ``T[d, v] = E[v] W_d + b_d`` of every token and direction
  (scoring a token then costs a row copy instead of an (E × 4H) product), computed with one
  BLAS thread: a multi-threaded BLAS may sum in another order, and the table — so every score —
  would then depend on the machine's BLAS threads (a Dask worker runs with one);
* the arrays of the network in the order the kernels take them.

Two paths compute the same probabilities (``tests/test_fastpath.py`` holds them to
the network's own ``forward``):

* **Numba** (:mod:`tinykd.scoring._kernels`): rows sorted by length, the batch's time
  loop, pooling and the dense head fused in one call; large batches on two cores.
* **NumPy**: the reference LSTM's time loop and pooling (:func:`tinykd.nn.reference.lstm_scan`,
  fed the table's rows) and the dense head (:func:`tinykd.nn.dense.head_logits`) — about 1 ms
  for one 60-token answer. A scorer scores its first small jobs this way, so that a fresh
  process never waits for Numba to start (≈ 0.5 s) to score one answer; :class:`tinykd.settings.Settings` (``jit``) says
  when Numba takes over. A network that is not float32 (the gradient checks' float64
  networks) always takes this path: the kernels are float32.

Jobs of more than ``Settings.score_batch`` rows are scored in batches of rows of similar length.

Every path applies the same calibration temperature T (:mod:`tinykd.scoring.calibration`): the
probabilities are ``softmax(logits · (1 / T))``, the logits in float64.
"""
from __future__ import annotations

import math

import numpy as np

from tinykd.errors import OptionError
from tinykd.nn.network import check_weights
from tinykd.nn.dense import ACTIVATION_CODES, head_logits, softmax
from tinykd.nn.reference import lstm_scan
from tinykd.settings import DEFAULT, blas_threads

#: the default ``--review-below``: flag answers whose top probability is under this
REVIEW_BELOW = 0.6

_LENGTHS = "lengths must be within 0..{} (the ids' columns)"


def decide(proba, review_below=REVIEW_BELOW):
    """What ``tinykd score`` writes per row: ``(pred, confidence, needs_review)`` — the index of
    the most probable class, its probability, and whether that is below ``review_below``."""
    if not 0.0 <= review_below <= 1.0:
        raise OptionError("review_below", f"{{opt}} must be between 0 and 1, got {review_below}")
    pred = proba.argmax(axis=1)
    conf = proba[np.arange(len(proba)), pred]
    return pred, conf, conf < review_below


def _readonly(a):
    a = np.ascontiguousarray(a)
    if a.flags.writeable:
        a = a.copy()
        a.flags.writeable = False
    return a


class Scorer:
    """Class probabilities of encoded rows for one trained :class:`~tinykd.nn.network.StudentNet`.

    ``Scorer(net, settings=None, temperature=1.0)``; :meth:`predict_proba` ``(ids (n, L) int,
    lengths (n,) int)`` → ``(n, K)`` float32, calibrated by ``temperature`` (1: the raw softmax).
    The network's weights are frozen (made read-only) when the scorer is built; the scorer
    never changes them.
    """

    def __init__(self, net, settings=None, temperature=1.0):
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.number)) \
                or not 0 < temperature < np.inf:
            raise OptionError("temperature", f"the calibration {{opt}} must be > 0, got {temperature!r}")
        self.temperature = float(temperature)
        self._inv_t = 1.0 / self.temperature
        self.settings = DEFAULT if settings is None else settings
        check_weights(net.params)  # huge weights overflow float32: NaN scores, and the two paths disagree
        self.net = net.freeze()
        self.n_classes = net.n_classes
        self.vocab_size = net.vocab_size
        self._small_jobs = 0
        self._called = set()
        self.numba = net.dtype == np.float32  # the kernels are float32
        cfg, p = net.config, net.p
        dirs = ("fwd", "bwd") if cfg["rnn"] == "bilstm" else ("fwd",)
        self.D = len(dirs)
        self.H = p["rnn.fwd.U"].shape[0]
        E = p["emb.E"]
        T = np.empty((self.D, E.shape[0], 4 * self.H), net.dtype)
        with blas_threads(1):
            for d, name in enumerate(dirs):
                np.matmul(E, p[f"rnn.{name}.W"], out=T[d])
                T[d] += p[f"rnn.{name}.b"]
        T.flags.writeable = False
        self.T = T
        self.U = tuple(p[f"rnn.{name}.U"] for name in dirs)
        self.pool_max = cfg["pooling"] == "max"
        if cfg["dense_units"]:
            self.hidden = (p["hidden.W"], p["hidden.b"])
        else:
            self.hidden = (_readonly(np.zeros((0, 0), net.dtype)), _readonly(np.zeros(0, net.dtype)))
        self.activation = cfg["dense_activation"]
        self.act_code = ACTIVATION_CODES[self.activation]
        self.out = (p["out.W"], p["out.b"])
        self.reverses = _readonly(np.array([False, True][:self.D]))

    # ------------------------------------------------------------------- public
    def predict_proba(self, ids, lengths, calibrated=True):
        """Probabilities (n, K) float32 of encoded rows (ids right-padded, true ``lengths``);
        ``calibrated=False``: the raw softmax (temperature 1).

        Never returns a non-finite probability: a row that gives one (which the weight bound of
        :func:`tinykd.nn.network.check_weights` should make impossible) is a ``ValueError``."""
        out = self._predict(ids, lengths, self._inv_t if calibrated else 1.0)
        if not math.isfinite(float(out.sum())):  # (probabilities: the sum is finite unless one is not)
            bad = np.flatnonzero(~np.isfinite(out).all(axis=1))
            raise ValueError(f"the model gives non-finite probabilities for {len(bad):,} of {len(out):,} rows "
                             f"(first row {int(bad[0])}); refused rather than written as scores")
        return out

    def _predict(self, ids, lengths, inv_t):
        lengths = np.ascontiguousarray(lengths, dtype=np.int32)
        ids = np.ascontiguousarray(ids, dtype=np.int32)
        n = len(lengths)
        if ids.ndim != 2 or ids.shape[0] != n:
            raise ValueError(f"ids must be (n, L) with n = {n} rows, got shape {ids.shape}")
        out = np.empty((n, self.n_classes), dtype=np.float32)
        if n == 0:
            return out
        if self.numba and self._use_numba(lengths):
            path = self._numba  # (the kernels check lengths and ids themselves)
        else:
            if int(lengths.max()) > ids.shape[1] or int(lengths.min()) < 0:
                raise ValueError(_LENGTHS.format(ids.shape[1]))
            self._check_ids(ids, lengths)
            path = self._numpy
        batch = self.settings.score_batch
        if n <= batch:
            return path(ids, lengths, inv_t, out)
        order = np.argsort(lengths, kind="stable")
        for s in range(0, n, batch):
            idx = order[s:s + batch]
            lens = lengths[idx]
            part = np.empty((len(idx), self.n_classes), dtype=np.float32)
            out[idx] = path(np.ascontiguousarray(ids[idx, :max(1, int(lens.max()))]), lens, inv_t, part)
        return out

    # ------------------------------------------------------------------ choices
    def _use_numba(self, lengths):
        """Whether this job runs the Numba kernels: ``Settings.jit``, and for "auto" this scorer's
        own count of small jobs and the job's tokens (see :class:`~tinykd.settings.Settings`)."""
        mode = self.settings.jit
        if mode != "auto":
            return mode == "always"
        if (int(lengths.sum()) >= self.settings.numba_min_tokens
                or self._small_jobs >= self.settings.numba_after_calls):
            return True
        self._small_jobs += 1
        return False

    def _check_ids(self, ids, lengths):
        real = np.arange(ids.shape[1])[None, :] < lengths[:, None]
        v = ids[real]
        if len(v) and (int(v.min()) < 0 or int(v.max()) >= self.vocab_size):
            raise IndexError(f"token ids out of range for a vocabulary of {self.vocab_size}")

    # -------------------------------------------------------------------- paths
    def _numba(self, ids, lengths, inv_t, out):
        from tinykd.scoring import _kernels as K

        B = lengths.shape[0]
        par = B >= self.settings.parallel_score_rows and self.settings.use_parallel()
        kern = K.score_parallel if par else K.score_serial
        if kern not in self._called:  # this scorer's first call of it: say so if it must compile
            from tinykd.nn._jit import announce_compile

            announce_compile([kern], "scoring", "5-10 s")
            self._called.add(kern)
        if B == 1:  # one answer: the task layout is a constant
            rows, ptr, tdir = (_ROW0, _PTR1, _DIRS1) if self.D == 1 else (_ROW00, _PTR2, _DIRS2)
        else:
            order = np.argsort(-lengths, kind="stable").astype(np.int32)
            if self.D == 1 and par:
                parts, tdir = (order[0::2], order[1::2]), _DIRS11
            else:
                parts, tdir = (order,) * self.D, (_DIRS1 if self.D == 1 else _DIRS2)
            rows = np.concatenate(parts) if len(parts) > 1 else parts[0]
            ptr = np.array([0, len(parts[0]), len(rows)][:len(parts) + 1], np.int64)
        feat = np.empty((B, self.D * self.H), np.float32)
        U0 = self.U[0]
        U1 = self.U[-1]
        rc = kern(ids, lengths, rows, ptr, tdir, self.T, U0, U1, self.reverses, self.pool_max, feat,
                  self.hidden[0], self.hidden[1], self.act_code, self.out[0], self.out[1], inv_t, out)
        if rc == -2:
            raise ValueError(_LENGTHS.format(ids.shape[1]))
        if rc < 0:
            raise IndexError(f"token ids out of range for a vocabulary of {self.vocab_size}")
        return out

    def _numpy(self, ids, lengths, inv_t, out):
        """The NumPy forward (:mod:`tinykd.nn.reference`): table rows as ``xw``, the reference time
        loop, pooling and the dense head, all of the same maths as the kernels."""
        tok = ids[:, :max(1, int(lengths.max()))]
        pool = "max" if self.pool_max else "last"
        feat = [lstm_scan(self.T[d][tok], lengths, self.U[d], reverse=d == 1, output=pool, keep_cache=False)[0]
                for d in range(self.D)]
        f = feat[0] if self.D == 1 else np.concatenate(feat, axis=1)
        z = head_logits(f, *self.out, hidden=self.hidden if self.hidden[0].shape[1] else None,
                        activation=self.activation)
        out[:] = softmax(z.astype(np.float64) * inv_t)
        return out


_DIRS1 = np.array([0], np.int32)
_DIRS2 = np.array([0, 1], np.int32)
_DIRS11 = np.array([0, 0], np.int32)
_ROW0 = np.zeros(1, np.int32)
_ROW00 = np.zeros(2, np.int32)
_PTR1 = np.array([0, 1], np.int64)
_PTR2 = np.array([0, 1, 2], np.int64)
for _a in (_DIRS1, _DIRS2, _DIRS11, _ROW0, _ROW00, _PTR1, _PTR2):
    _a.flags.writeable = False
