"""A student scorer over raw texts: vocabulary + network + class labels.

:func:`fit` builds one from texts, hard labels and (optionally) teacher
probabilities; :class:`Student` predicts and saves; :func:`tinykd.io.load`
reads it back. Scoring needs only NumPy and Numba.
"""
from __future__ import annotations

import sys
import time

import numpy as np

from .model import StudentNet, count_params, make_config
from .nn.dense import softmax
from .text import Vocabulary
from .train import TrainData, train


class Student:
    """A fitted student: ``vocab`` (:class:`~tinykd.text.Vocabulary`), ``net``
    (:class:`~tinykd.model.StudentNet`), ``classes`` (labels, in the order of
    the probability columns) and ``meta`` (preset, training settings, metrics)."""

    def __init__(self, vocab, net, classes, meta=None):
        if len(classes) != net.n_classes:
            raise ValueError(f"{len(classes)} class labels for a network with {net.n_classes} outputs")
        if len(vocab) != net.vocab_size:
            raise ValueError(f"vocabulary has {len(vocab)} tokens, the network expects {net.vocab_size}")
        self.vocab, self.net, self.classes = vocab, net, list(classes)
        self.meta = dict(meta or {})

    @property
    def n_params(self):
        return self.net.size

    @property
    def uses_context(self):
        return bool(self.meta.get("uses_context", False))

    def encode(self, texts, contexts=None):
        if self.uses_context and contexts is None:
            raise ValueError("this model was trained with a context (e.g. the question); pass contexts=")
        if not self.uses_context:
            contexts = None
        return self.vocab.encode(texts, contexts)

    def predict_proba(self, texts, contexts=None, batch_size=256):
        """Class probabilities (n, K) float32, columns in the order of ``classes``."""
        ids, lengths = self.encode(texts, contexts)
        return predict_proba_ids(self.net, ids, lengths, batch_size)

    def predict(self, texts, contexts=None, batch_size=256):
        """The most probable class label of each text."""
        proba = self.predict_proba(texts, contexts, batch_size)
        return np.asarray(self.classes, dtype=object)[proba.argmax(axis=1)].tolist() if len(proba) else []

    def save(self, path):
        """Write the model file (atomically); see :mod:`tinykd.io`."""
        from .io import save

        save(self, path)


def predict_proba_ids(net, ids, lengths, batch_size=256):
    """Probabilities for encoded rows; rows are batched by length so short answers stay cheap.

    A float32 network is scored by the fused Numba inference path
    (:func:`tinykd.nn.lstm.score_rows`: table lookup of the input projection,
    batched time loop, pooling and head in one call, several cores for large
    batches) — except a fresh process's first small jobs, which a NumPy time
    loop scores without starting Numba (:func:`tinykd.nn.lstm.use_numba`);
    other dtypes go through the reference ``net.forward``.
    """
    n = len(lengths)
    out = np.empty((n, net.n_classes), dtype=np.float32)
    if n == 0:
        return out
    ids = np.ascontiguousarray(ids, dtype=np.int32)
    lengths = np.ascontiguousarray(lengths, dtype=np.int32)
    if net.dtype == np.float32:
        from .nn import lstm

        if "tinykd.nn._kernels" not in sys.modules and not lstm.use_numba(int(lengths.sum())):
            if int(lengths.max()) > ids.shape[1]:
                raise ValueError(f"lengths say {int(lengths.max())} tokens but ids have only {ids.shape[1]} columns")
            return lstm.score_rows_numpy(net, ids, lengths, out)
        score_rows = lstm.score_rows
        table = _table_for(net)
        if n <= batch_size:
            return score_rows(net, table, ids, lengths, out)
        order = np.argsort(lengths, kind="stable")
        for s in range(0, n, batch_size):
            idx = order[s:s + batch_size]
            lens = lengths[idx]
            part = np.empty((len(idx), net.n_classes), dtype=np.float32)
            out[idx] = score_rows(net, table, np.ascontiguousarray(ids[idx, :max(1, int(lens.max()))]),
                                  lens, part)
        return out
    order = np.argsort(lengths, kind="stable")
    for s in range(0, n, batch_size):
        idx = order[s:s + batch_size]
        lens = lengths[idx]
        z, _ = net.forward(ids[idx, :max(1, int(lens.max()))], lens)
        out[idx] = softmax(z.astype(np.float64))
    return out


_TABLES = None


def _table_for(net):
    """The (lazily filled, self-checking) input-projection table of ``net``, kept per network."""
    global _TABLES
    if _TABLES is None:
        import weakref

        _TABLES = weakref.WeakKeyDictionary()
    table = _TABLES.get(net)
    if table is None:
        from .nn.lstm import ProjectionTable

        E = net.p["emb.E"]
        W = net.p["rnn.fwd.W"]
        table = ProjectionTable(E.shape[0], E.shape[1], W.shape[1], 2 if net.config["rnn"] == "bilstm" else 1,
                                net.dtype)
        _TABLES[net] = table
    return table


def _missing_labels(y):
    """Boolean mask of missing labels: NaN in a float array; None or NaN in an object array."""
    if y.dtype.kind == "f":
        return np.isnan(y)
    if y.dtype.kind == "O":
        return np.array([v is None or (isinstance(v, float) and v != v) for v in y.tolist()], dtype=bool)
    return np.zeros(len(y), dtype=bool)


def _check_teacher(teacher, n, k, what):
    t = np.asarray(teacher, dtype=np.float64)
    if t.shape != (n, k):
        raise ValueError(f"{what} must have shape ({n}, {k}) — one row per text, one column per class "
                         f"in sorted label order — got {t.shape}")
    rows = ~np.isnan(t).all(axis=1)  # an all-NaN row means "no teacher row"
    bad = rows & ~np.isfinite(t).all(axis=1)
    if bad.any():
        raise ValueError(f"{what} has NaN/inf values in {int(bad.sum())} rows (first row {int(np.argmax(bad))})")
    if (t[rows] < 0).any():
        raise ValueError(f"{what} has negative values: pass probabilities, not logits")
    sums = t[rows].sum(axis=1)
    if len(sums) and np.abs(sums - 1.0).max() > 1e-3:
        r = int(np.flatnonzero(rows)[np.argmax(np.abs(sums - 1.0))])
        raise ValueError(f"{what} rows must sum to 1; row {r} sums to {t[r].sum():.4f}")
    return t


def _unpack(part, what):
    if len(part) == 2:
        return list(part[0]), part[1], None
    if len(part) == 3:
        return list(part[0]), part[1], part[2]
    raise ValueError(f"{what} must be a tuple (texts, {'y' if what == 'validation' else 'proba'}[, contexts])")


def fit(texts, y, teacher_proba=None, *, contexts=None, preset="7t", config=None, lam=None,
        temperature=1.0, validation=None, validation_fraction=0.125, transfer=None, epochs=40,
        batch_size=32, lr=1e-3, patience=5, clip_norm=5.0, seed=0, verbose=True, stream=None):
    """Train a student on texts and labels, distilling ``teacher_proba`` if given.

    Parameters
    ----------
    texts, y : training answers and their human scores (any hashable labels).
    teacher_proba : (n, K) teacher probabilities, columns in sorted label order
        (``np.unique(y)``); an all-NaN row means "no teacher row for this text".
    contexts : optional per-text context (question / reference answer).
    preset, config : a preset name and config overrides (see :mod:`tinykd.model`).
    lam : λ of Eq. 4; default 1.0 with a teacher, 0 without. 0 = plain NN.
    temperature : T (1 = Eq. 4 exactly).
    validation : ``(texts, y[, contexts])`` for early stopping; default: a seeded
        stratified ``validation_fraction`` of the training rows.
    transfer : ``(texts, teacher_proba[, contexts])`` unlabeled rows for the soft term.
    """
    from sklearn.preprocessing import LabelEncoder

    t_start = time.time()
    stream = sys.stderr if stream is None else stream
    texts = list(texts)
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"y must be one label per text (1-D), got shape {y.shape}")
    if len(texts) != len(y):
        raise ValueError(f"got {len(texts)} texts but {len(y)} labels")
    missing = _missing_labels(y)
    if missing.any():
        rows = np.flatnonzero(missing)
        raise ValueError(f"y has {len(rows)} missing labels (NaN/None), rows {', '.join(map(str, rows[:5]))}"
                         f"{' …' if len(rows) > 5 else ''}; drop them, or pass them as transfer=(texts, "
                         "teacher_proba) if the teacher scored them")
    if len(texts) < 2:
        raise ValueError("need at least 2 training texts")
    if contexts is not None:
        contexts = list(contexts)
        if len(contexts) != len(texts):
            raise ValueError(f"got {len(texts)} texts but {len(contexts)} contexts")
    try:
        enc = LabelEncoder().fit(y)
    except TypeError:
        raise ValueError("y mixes numbers and text labels (e.g. 1 and 'correct'); use one kind") from None
    classes = enc.classes_
    if len(classes) < 2:
        raise ValueError(f"need at least 2 classes in y, found only {classes.tolist()}")
    yi = enc.transform(y)
    K = len(classes)
    teacher = None if teacher_proba is None else _check_teacher(teacher_proba, len(texts), K, "teacher_proba")
    if lam is None:
        lam = 1.0 if teacher is not None else 0.0
    if teacher is None and transfer is not None:
        raise ValueError("transfer data needs teacher probabilities for the training rows too")
    cfg = make_config(preset, **(config or {}))

    # validation rows
    if validation is None:
        from .splits import holdout

        tr, va = holdout(yi, validation_fraction, seed)
        v_texts = [texts[i] for i in va]
        v_ctx = None if contexts is None else [contexts[i] for i in va]
        v_y = yi[va]
        texts = [texts[i] for i in tr]
        contexts = None if contexts is None else [contexts[i] for i in tr]
        yi = yi[tr]
        teacher = None if teacher is None else teacher[tr]
    elif validation is False:
        v_texts, v_y, v_ctx = [], np.zeros(0, np.int64), None
    else:
        v_texts, v_labels, v_ctx = _unpack(validation, "validation")
        unseen = set(np.asarray(v_labels).tolist()) - set(classes.tolist())
        if unseen:
            raise ValueError(f"validation labels {sorted(map(str, unseen))} do not occur in the training labels")
        v_y = enc.transform(np.asarray(v_labels))

    # transfer rows: label −1 (soft term only)
    tx_texts, tx_ctx, tx_teacher = [], None, None
    if transfer is not None:
        tx_texts, tx_p, tx_ctx = _unpack(transfer, "transfer")
        tx_teacher = _check_teacher(tx_p, len(tx_texts), K, "transfer proba")

    uses_context = contexts is not None
    vocab = Vocabulary(max_size=cfg["max_vocab"], max_len=cfg["max_len"])
    vocab.fit(texts + tx_texts, contexts=(contexts or []) + (tx_ctx or []) if uses_context else None)
    ids, lengths = vocab.encode(texts + tx_texts, (contexts + (tx_ctx or [""] * len(tx_texts))) if uses_context else None)
    y_all = np.concatenate([yi, -np.ones(len(tx_texts), np.int64)])
    t_all = None
    if teacher is not None:
        t_all = teacher if tx_teacher is None else np.concatenate([teacher, tx_teacher])
    data = TrainData(ids, lengths, y_all, t_all)
    val = None
    if len(v_texts):
        v_ids, v_len = vocab.encode(v_texts, v_ctx if uses_context else None)
        val = TrainData(v_ids, v_len, v_y)

    net = StudentNet(cfg, len(vocab), K, seed=seed)
    if verbose:
        print(f"tinykd: training {preset or 'custom'} student ({net.size:,} parameters) on "
              f"{len(yi)} texts" + (f" + {len(tx_texts)} transfer texts" if tx_texts else "")
              + f", {len(v_y)} validation; λ={lam:g}, T={temperature:g}", file=stream, flush=True)
    history = train(net, data, val, lam=lam if teacher is not None else 0.0, temperature=temperature,
                    epochs=epochs, batch_size=batch_size, lr=lr, patience=patience, clip_norm=clip_norm,
                    seed=seed, verbose=verbose, stream=stream)
    meta = {
        "preset": preset, "uses_context": uses_context,
        "training": {
            "lam": float(lam if teacher is not None else 0.0), "temperature": float(temperature),
            "seed": int(seed), "epochs": int(epochs), "batch_size": int(batch_size), "lr": float(lr),
            "patience": int(patience), "n_train": int(len(yi)), "n_val": int(len(v_y)),
            "n_transfer": int(len(tx_texts)), "teacher": teacher is not None,
            "best_epoch": history["best_epoch"], "stopped": history["stopped"],
            "best_val_loss": history["best_val_loss"],
            "best_val_acc": next((r["val_acc"] for r in history["epochs"]
                                  if r["epoch"] == history["best_epoch"]), None),
            "seconds": round(time.time() - t_start, 2),
        },
        "history": history["epochs"],
    }
    return Student(vocab, net, [c.item() if hasattr(c, "item") else c for c in classes], meta)


def n_params(preset="7t", vocab_size=None, n_classes=4, **overrides):
    """Parameter count of a preset (vocabulary at its ``max_vocab`` unless given)."""
    cfg = make_config(preset, **overrides)
    return count_params(cfg, vocab_size or cfg["max_vocab"], n_classes)
