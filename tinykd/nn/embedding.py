"""Embedding lookup.

    forward:  x[b, t] = E[ids[b, t]]           E: (V, D), ids: (B, L) int32 → x: (B, L, D)
    backward: dE[v] += Σ_{b, t < len_b, ids[b,t] = v} dx[b, t]

Only real steps (``t < lengths[b]``) receive gradient; padded steps are
skipped, so padding never moves a weight. An optional L1 penalty on ``E`` is
added by :mod:`tinykd.nn.regularizers`.

When the next layer is an LSTM, the model hands it a :class:`Lookup` — the
table and the ids, not yet gathered — so that the LSTM projects each distinct
token of the batch once: ``(E[u] W)[inverse] = E[ids] W`` (u = the distinct
ids). Its gradient comes back per distinct token, ``dE[u] += dX_u``.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Lookup(NamedTuple):
    """An embedding output kept as (table ``E`` (V, D), ``ids`` (B, L)); rows ``E[ids]``."""

    E: np.ndarray
    ids: np.ndarray


def embedding_forward(E, ids):
    """Gather rows of ``E`` (V, D) for ``ids`` (B, L) → (B, L, D); the cache is ``ids``."""
    return E[ids], ids


def embedding_backward(dx, ids, lengths, dE):
    """Add the gradient of the lookup into ``dE`` (``+=``); real steps only.

    ``dx`` is (B, L, D), or ``(u, dX_u)`` — the gradient per distinct token
    that an LSTM fed with a :class:`Lookup` returns.
    """
    if isinstance(dx, tuple):
        u, du = dx
        dE[u] += du  # u holds distinct ids: no two rows collide
        return
    real = np.arange(ids.shape[1])[None, :] < np.asarray(lengths)[:, None]
    np.add.at(dE, ids[real], dx[real])


def pretrained_rows(tokens, words, vectors, dim, scale=0.05):
    """Starting rows of an embedding table ``(V, dim)`` from pretrained word vectors.

    ``tokens``: the vocabulary (row ``i`` is ``tokens[i]``); ``words`` / ``vectors`` (n, H): the pretrained
    vectors by word. The vectors of the tokens found are centred and reduced by PCA to
    ``k = min(dim, found − 1, H)`` components (scikit-learn), then scaled so that their standard deviation is
    that of uniform(−scale, scale), the random start they replace: ``s / std(P) · P``, ``s = scale / √3``.

    Returns ``(ids, rows)``: the rows' indices in the table and their first ``k`` columns (k, float64);
    ``(empty, (0, 0))`` when fewer than two tokens are found.
    """
    from sklearn.decomposition import PCA

    at = {str(w): j for j, w in enumerate(words)}
    pairs = [(i, at[t]) for i, t in enumerate(tokens) if t in at]
    vectors = np.asarray(vectors, dtype=np.float64)
    k = min(int(dim), len(pairs) - 1, vectors.shape[1] if vectors.ndim == 2 else 0)
    if k < 1:
        return np.zeros(0, np.int64), np.zeros((0, 0))
    ids = np.array([i for i, _ in pairs], dtype=np.int64)
    rows = PCA(n_components=k, svd_solver="full").fit_transform(vectors[[j for _, j in pairs]])
    std = rows.std()
    return ids, rows * (scale / np.sqrt(3.0) / std if std > 0 else 0.0)
