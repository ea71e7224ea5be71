"""The student network, assembled from a config, the paper's four presets and one of tinykd's.

    ids (B, L) ─ embedding ─ (B, L, E) ─ LSTM | BiLSTM ─┬ last state  (B, R)
                                                        └ max over time (B, R)
      ─ dropout ─ [dense (hidden) + relu|selu ─ dropout] ─ dense (K) ─ logits (B, K) ─ softmax

R = H for an LSTM, 2H for a BiLSTM. All parameters live in one flat buffer
``params`` with named views in ``p``; gradients in ``grads`` with views in
``g`` (made on first use). A backward pass zeroes ``grads`` once, then every layer adds (``+=``).

Presets, after section 4.2.1 of Latif et al. (vocabulary sizes are ours; they
set the embedding's share of the 0.02M–0.1M parameters):

=================  =========================================================
``7t``             Emb 64 → LSTM 64 → Dense 32 ReLU → softmax
``falling_weights`` Emb 32 → BiLSTM 16 → global max pool → Dense → softmax
``gelatin``        Emb 128 (L1) → LSTM 64 → Dense 16 SELU (L1 + L2) → softmax
``bathtub``        Emb 64 → BiLSTM 32 → global max pool → Dense 16 SELU → softmax
``wide``           Emb 32 → BiLSTM 48 → global max pool → Dense 16 SELU → softmax
=================  =========================================================

``wide`` is tinykd's, not the paper's: ``bathtub`` with half its embedding and 1.5× its recurrent
units, at fewer parameters (docs/decisions/student-wide.md).
"""
from __future__ import annotations

import copy

import numpy as np

from tinykd.errors import OptionError
from tinykd.nn.dense import ACTIVATIONS, dense_backward, dense_forward
from tinykd.nn.dropout import dropout_backward, dropout_forward
from tinykd.nn.embedding import Lookup, embedding_backward
from tinykd.nn.lstm import bilstm_backward, bilstm_forward, lstm_backward, lstm_forward
from tinykd.nn.pooling import global_max_pool_backward, global_max_pool_forward
from tinykd.nn.regularizers import penalty_backward, penalty_forward

DEFAULT_CONFIG = {
    "embed_dim": 64,
    "embed_l1": 0.0,
    "rnn": "lstm",          # "lstm" | "bilstm"
    "units": 64,
    "pooling": "last",      # "last" | "max"
    "dense_units": 32,      # 0: no hidden dense layer
    "dense_activation": "relu",
    "dense_l1": 0.0,
    "dense_l2": 0.0,
    "dropout": 0.2,
    "max_vocab": 1000,
    "max_len": 100,
}

PRESETS = {
    "7t": dict(embed_dim=64, rnn="lstm", units=64, pooling="last",
               dense_units=32, dense_activation="relu", max_vocab=1000),
    "falling_weights": dict(embed_dim=32, rnn="bilstm", units=16, pooling="max",
                            dense_units=0, max_vocab=1000),
    "gelatin": dict(embed_dim=128, embed_l1=1e-5, rnn="lstm", units=64, pooling="last",
                    dense_units=16, dense_activation="selu", dense_l1=1e-5, dense_l2=1e-4,
                    max_vocab=350),
    "bathtub": dict(embed_dim=64, rnn="bilstm", units=32, pooling="max",
                    dense_units=16, dense_activation="selu", max_vocab=1000),
    # the parameters moved from the embedding (64k → 32k) to the BiLSTM (25k → 31k): student-wide.md
    "wide": dict(embed_dim=32, rnn="bilstm", units=48, pooling="max",
                 dense_units=16, dense_activation="selu", max_vocab=1000),
}


#: the embedding's random start: uniform(−EMBED_SCALE, EMBED_SCALE) (Keras's default)
EMBED_SCALE = 0.05

#: a trained student's weights stay within a few units (at most 1.6 on the ASAP students); a weight
#: beyond this cannot come from training, and could overflow float32 to NaN scores: such a
#: network is refused when saved, loaded or scored
MAX_ABS_WEIGHT = 1e4

#: whole-number config keys: (smallest, largest) value
_INT_KEYS = {"embed_dim": (1, 10_000), "units": (1, 10_000), "dense_units": (0, 10_000),
             "max_vocab": (4, 10_000_000), "max_len": (1, 1_000_000)}
_CHOICES = {"rnn": ("lstm", "bilstm"), "pooling": ("last", "max"), "dense_activation": tuple(ACTIVATIONS)}


def check_config(cfg):
    """Refuse a config value of the wrong type or out of range: a one-line ``ValueError`` naming
    ``config['key']``."""
    for key, (lo, hi) in _INT_KEYS.items():
        v = cfg[key]
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not lo <= v <= hi:
            raise ValueError(f"config[{key!r}] must be a whole number from {lo} to {hi:,}, got {v!r}")
    for key in ("embed_l1", "dense_l1", "dense_l2", "dropout"):
        v = cfg[key]
        if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not np.isfinite(v) or v < 0:
            raise ValueError(f"config[{key!r}] must be a number >= 0, got {v!r}")
    if not cfg["dropout"] < 1.0:
        raise ValueError(f"config['dropout'] must be in [0, 1), got {cfg['dropout']!r}")
    for key, choices in _CHOICES.items():
        if not isinstance(cfg[key], str) or cfg[key] not in choices:
            raise ValueError(f"config[{key!r}] must be one of {', '.join(choices)}, got {cfg[key]!r}")
    return cfg


def make_config(preset="7t", **overrides):
    """A full config: defaults, then the preset, then ``overrides`` (unknown keys, wrong types and
    values out of range refused: :func:`check_config`)."""
    if preset is not None and (not isinstance(preset, str) or preset not in PRESETS):
        raise OptionError("preset", f"unknown {{opt}} {preset!r}; choose one of {', '.join(PRESETS)}")
    cfg = dict(DEFAULT_CONFIG)
    if preset is not None:
        cfg.update(PRESETS[preset])
    unknown = set(overrides) - set(DEFAULT_CONFIG)
    if unknown:
        raise ValueError(f"unknown config keys {sorted(map(str, unknown))}; known: {sorted(DEFAULT_CONFIG)}")
    cfg.update({k: v for k, v in overrides.items() if v is not None})
    return check_config(cfg)


def check_weights(params, what="the network"):
    """Refuse NaN, infinite or huge (> :data:`MAX_ABS_WEIGHT`) weights: one-line ``ValueError``."""
    params = np.asarray(params)
    if not np.isfinite(params).all():
        raise ValueError(f"{what} has NaN or infinite weights")
    if params.size and float(np.abs(params).max()) > MAX_ABS_WEIGHT:
        raise ValueError(f"{what} has weights up to {float(np.abs(params).max()):.3g}, beyond ±{MAX_ABS_WEIGHT:g}: "
                         "they cannot come from training and would overflow to NaN scores")


def _directions(cfg):
    return ("fwd", "bwd") if cfg["rnn"] == "bilstm" else ("fwd",)


def param_shapes(cfg, vocab_size, n_classes):
    """Ordered ``[(name, shape)]`` of every parameter tensor."""
    E, H = cfg["embed_dim"], cfg["units"]
    shapes = [("emb.E", (vocab_size, E))]
    for d in _directions(cfg):
        shapes += [(f"rnn.{d}.W", (E, 4 * H)), (f"rnn.{d}.U", (H, 4 * H)), (f"rnn.{d}.b", (4 * H,))]
    feat = H * len(_directions(cfg))
    if cfg["dense_units"]:
        shapes += [("hidden.W", (feat, cfg["dense_units"])), ("hidden.b", (cfg["dense_units"],))]
        feat = cfg["dense_units"]
    shapes += [("out.W", (feat, n_classes)), ("out.b", (n_classes,))]
    return shapes


def count_params(cfg, vocab_size, n_classes):
    return int(sum(np.prod(s) for _, s in param_shapes(cfg, vocab_size, n_classes)))


class StudentNet:
    """The network: a config, one flat parameter buffer, forward and backward."""

    def __init__(self, config, vocab_size, n_classes, seed=0, dtype=np.float32, params=None):
        if n_classes < 2:
            raise ValueError(f"need at least 2 classes, got {n_classes}")
        self.config = dict(config)
        self.vocab_size = int(vocab_size)
        self.n_classes = int(n_classes)
        self.dtype = np.dtype(dtype)
        self.layout = param_shapes(self.config, self.vocab_size, self.n_classes)
        self.size = int(sum(np.prod(s) for _, s in self.layout))
        self.params = np.zeros(self.size, dtype=self.dtype)
        self._grads = self._g = None  # made on first use: a loaded model that only scores never needs them
        self.p = self._views(self.params)
        if params is None:
            self._init(np.random.default_rng(seed))
        else:
            params = np.asarray(params)
            if params.shape != (self.size,):
                raise ValueError(f"parameter buffer has {params.size} values, the layout needs {self.size}")
            self.params[:] = params

    @property
    def grads(self):
        """The flat gradient buffer (made on first use)."""
        if self._grads is None:
            self._grads = np.zeros(self.size, dtype=self.dtype)
            self._g = self._views(self._grads)
        return self._grads

    @property
    def g(self):
        """Named views of :attr:`grads`."""
        self.grads
        return self._g

    def _views(self, flat):
        views, off = {}, 0
        for name, shape in self.layout:
            n = int(np.prod(shape))
            views[name] = flat[off:off + n].reshape(shape)
            off += n
        return views

    def _init(self, rng):
        """Keras defaults: uniform embedding, Glorot kernels, orthogonal recurrent, forget bias 1."""
        p, cfg = self.p, self.config
        H = cfg["units"]

        def glorot(shape):
            lim = np.sqrt(6.0 / (shape[0] + shape[1]))
            return rng.uniform(-lim, lim, size=shape)

        p["emb.E"][:] = rng.uniform(-EMBED_SCALE, EMBED_SCALE, size=p["emb.E"].shape)
        for d in _directions(cfg):
            p[f"rnn.{d}.W"][:] = glorot(p[f"rnn.{d}.W"].shape)
            q, r = np.linalg.qr(rng.normal(size=(4 * H, H)))
            p[f"rnn.{d}.U"][:] = (q * np.sign(np.diag(r))).T
            p[f"rnn.{d}.b"][:] = 0.0
            p[f"rnn.{d}.b"][H:2 * H] = 1.0
        if cfg["dense_units"]:
            W = p["hidden.W"]
            if cfg["dense_activation"] == "selu":
                W[:] = rng.normal(scale=np.sqrt(1.0 / W.shape[0]), size=W.shape)
            else:
                W[:] = glorot(W.shape)
        p["out.W"][:] = glorot(p["out.W"].shape)

    # ------------------------------------------------------------------ forward
    def forward(self, ids, lengths, training=False, rng=None, parallel=False):
        """Logits (B, K) for ``ids`` (B, L) int32 with true ``lengths`` (B,); and a cache.
        ``parallel``: the LSTM may run its independent parts on two cores."""
        cfg, p = self.config, self.p
        ids = np.ascontiguousarray(ids, dtype=np.int32)
        lengths = np.ascontiguousarray(lengths, dtype=np.int32)
        L = max(1, int(lengths.max())) if len(lengths) else 1
        ids = ids[:, :L]
        if ids.shape[1] < L:
            raise ValueError(f"lengths say {L} tokens but ids have only {ids.shape[1]} columns")
        cache = {"ids": ids, "lengths": lengths}
        x = Lookup(p["emb.E"], ids)  # the LSTM gathers: it projects each distinct token once
        seq = cfg["pooling"] == "max"
        if cfg["rnn"] == "bilstm":
            h, cache["rnn"] = bilstm_forward(x, lengths, self._rnn_params(p, "fwd"),
                                             self._rnn_params(p, "bwd"), return_sequences=seq, parallel=parallel)
        else:
            h, cache["rnn"] = lstm_forward(x, lengths, *self._rnn_params(p, "fwd"), return_sequences=seq,
                                           parallel=parallel)
        if seq:
            h, cache["pool"] = global_max_pool_forward(h, lengths)
        h, cache["drop1"] = dropout_forward(h, cfg["dropout"], rng, training)
        if cfg["dense_units"]:
            act_f, _ = ACTIVATIONS[cfg["dense_activation"]]
            h, cache["hidden"] = dense_forward(h, p["hidden.W"], p["hidden.b"])
            h, cache["act"] = act_f(h)
            h, cache["drop2"] = dropout_forward(h, cfg["dropout"], rng, training)
        z, cache["out"] = dense_forward(h, p["out.W"], p["out.b"])
        return z, cache

    @staticmethod
    def _rnn_params(p, d):
        return p[f"rnn.{d}.W"], p[f"rnn.{d}.U"], p[f"rnn.{d}.b"]

    # ----------------------------------------------------------------- backward
    def backward(self, dz, cache):
        """Gradients of the loss into ``grads`` (zeroed first) from ``dz`` = dL/dlogits."""
        cfg, g = self.config, self.g
        self.grads[:] = 0.0
        dz = dz.astype(self.dtype, copy=False)
        dh = dense_backward(dz, cache["out"], g["out.W"], g["out.b"])
        if cfg["dense_units"]:
            _, act_b = ACTIVATIONS[cfg["dense_activation"]]
            dh = dropout_backward(dh, cache["drop2"])
            dh = act_b(dh, cache["act"])
            dh = dense_backward(dh, cache["hidden"], g["hidden.W"], g["hidden.b"])
        dh = dropout_backward(dh, cache["drop1"])
        if cfg["pooling"] == "max":
            dh = global_max_pool_backward(dh, cache["pool"])
        if cfg["rnn"] == "bilstm":
            dx = bilstm_backward(dh, cache["rnn"], list(self._rnn_params(g, "fwd")), list(self._rnn_params(g, "bwd")))
        else:
            dx = lstm_backward(dh, cache["rnn"], *self._rnn_params(g, "fwd"))
        embedding_backward(dx, cache["ids"], cache["lengths"], g["emb.E"])
        self._penalty_grads()
        return self.grads

    # ---------------------------------------------------------------- penalties
    def _penalties(self):
        cfg = self.config
        out = []
        if cfg["embed_l1"]:
            out.append(("emb.E", cfg["embed_l1"], 0.0))
        if cfg["dense_units"] and (cfg["dense_l1"] or cfg["dense_l2"]):
            out.append(("hidden.W", cfg["dense_l1"], cfg["dense_l2"]))
        return out

    def penalty(self):
        """Value of the L1/L2 weight penalties (added to the loss)."""
        return sum(penalty_forward(self.p[n], l1, l2) for n, l1, l2 in self._penalties())

    def _penalty_grads(self):
        for n, l1, l2 in self._penalties():
            penalty_backward(self.p[n], self.g[n], l1, l2)

    # ----------------------------------------------------------------- helpers
    def predict_logits(self, ids, lengths, batch_size=256, parallel=False):
        """Inference logits, in batches (no dropout), through the training forward."""
        n = len(lengths)
        out = np.empty((n, self.n_classes), dtype=self.dtype)
        for s in range(0, n, batch_size):
            out[s:s + batch_size], _ = self.forward(ids[s:s + batch_size], lengths[s:s + batch_size],
                                                    parallel=parallel)
        return out

    def freeze(self):
        """Make the weights read-only (``writeable=False`` on the buffer and every view), as a
        :class:`~tinykd.scoring.scorer.Scorer` needs them; returns ``self``. :meth:`copy` thaws."""
        self.params.flags.writeable = False
        for v in self.p.values():
            v.flags.writeable = False
        return self

    def copy(self):
        return StudentNet(copy.deepcopy(self.config), self.vocab_size, self.n_classes,
                          dtype=self.dtype, params=self.params.copy())


def n_params(preset="7t", vocab_size=None, n_classes=4, **overrides):
    """Parameter count of a preset (vocabulary at its ``max_vocab`` unless given)."""
    cfg = make_config(preset, **overrides)
    return count_params(cfg, vocab_size or cfg["max_vocab"], n_classes)
