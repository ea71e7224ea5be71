"""Seeded stratified splits (scikit-learn's ``train_test_split``)."""
from __future__ import annotations

import numpy as np


def _stratify(y, n_parts):
    # stratify only when every class can appear in every part
    _, counts = np.unique(y, return_counts=True)
    return y if counts.min() >= n_parts else None


def split_712(y, seed=0):
    """The paper's 7:1:2 train / validation / test split, stratified by ``y``.

    Returns three sorted index arrays.
    """
    from sklearn.model_selection import train_test_split

    y = np.asarray(y)
    idx = np.arange(len(y))
    rest, test = train_test_split(idx, test_size=0.2, random_state=seed, stratify=_stratify(y, 5))
    train, val = train_test_split(rest, test_size=0.125, random_state=seed, stratify=_stratify(y[rest], 8))
    return np.sort(train), np.sort(val), np.sort(test)


def holdout(y, fraction=0.125, seed=0):
    """Stratified train / validation indices (default 1/8: the 7:1 part of 7:1:2)."""
    from sklearn.model_selection import train_test_split

    y = np.asarray(y)
    idx = np.arange(len(y))
    train, val = train_test_split(idx, test_size=fraction, random_state=seed,
                                  stratify=_stratify(y, int(round(1 / fraction))))
    return np.sort(train), np.sort(val)
