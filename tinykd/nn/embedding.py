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
