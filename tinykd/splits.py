"""Seeded stratified splits (scikit-learn's ``train_test_split``).

A class with too few rows to have a share in every part (fewer than 5 for the 1/5 test part,
fewer than 8 for the 1/8 validation part) keeps all its rows in training: it is never held
out whole, so every class of the data is a class of the model (:func:`rare_classes` names
them, for a note).
"""
from __future__ import annotations

import numpy as np


def _parts(fraction):
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.number)) or not 0 < fraction < 1:
        raise ValueError(f"fraction must be between 0 and 1, got {fraction!r}")
    return int(round(1 / fraction))


def rare_classes(y, fraction=0.125):
    """The classes of ``y`` with fewer rows than a ``fraction`` hold-out needs (kept whole in training)."""
    classes, counts = np.unique(np.asarray(y), return_counts=True)
    return classes[counts < _parts(fraction)].tolist()


def _split(idx, y, fraction, seed):
    """``(train, held)`` positions of ``idx``: rare classes all in train, the rest stratified."""
    from sklearn.model_selection import train_test_split

    n_parts = _parts(fraction)
    classes, counts = np.unique(y, return_counts=True)
    rare = np.isin(y, classes[counts < n_parts])
    rest = idx[~rare]
    if len(rest) < 2:
        return np.sort(idx), idx[:0]
    train, held = train_test_split(rest, test_size=fraction, random_state=seed, stratify=y[~rare])
    return np.sort(np.concatenate([train, idx[rare]])), np.sort(held)


def split_712(y, seed=0):
    """The paper's 7:1:2 train / validation / test split, stratified by ``y``.

    Returns three sorted index arrays.
    """
    y = np.asarray(y)
    idx = np.arange(len(y))
    rest, test = _split(idx, y, 0.2, seed)
    train, val = _split(rest, y[rest], 0.125, seed)
    return train, val, test


def holdout(y, fraction=0.125, seed=0):
    """Stratified train / validation indices (default 1/8: the 7:1 part of 7:1:2)."""
    y = np.asarray(y)
    return _split(np.arange(len(y)), y, fraction, seed)
