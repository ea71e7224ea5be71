"""Embedding lookup.

    forward:  x[b, t] = E[ids[b, t]]           E: (V, D), ids: (B, L) int32 → x: (B, L, D)
    backward: dE[v] += Σ_{b, t < len_b, ids[b,t] = v} dx[b, t]

Only real steps (``t < lengths[b]``) receive gradient; padded steps are
skipped, so padding never moves a weight. An optional L1 penalty on ``E`` is
added by :mod:`tinykd.nn.regularizers`.
"""
from __future__ import annotations

import numpy as np


def embedding_forward(E, ids):
    """Gather rows of ``E`` (V, D) for ``ids`` (B, L) → (B, L, D); the cache is ``ids``."""
    return E[ids], ids


def embedding_backward(dx, ids, lengths, dE):
    """Add the gradient of the lookup into ``dE`` (``+=``); real steps only."""
    from ._kernels import scatter_add

    scatter_add(dE, ids, lengths, np.ascontiguousarray(dx))
