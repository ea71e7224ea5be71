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


#: hold out validation rows only when an item has at least this many labelled training rows
MIN_HOLDOUT_ROWS = 10
#: the share of an item's labelled training rows held out for validation when none are given
VALIDATION_FRACTION = 0.125
#: what a row can be for: trained on (labelled), transfer data (training split, no label), early stopping
#: and choices, the reported test, or not used
ROLES = ("train", "unlabeled", "val", "test", "other")


def assign_roles(labels, splits=None, items=None, *, train_split="train", val_split=None, test_split=None,
                 no_split="train", hold_out=False, key=str, fraction=VALIDATION_FRACTION, seed=0):
    """Each row's role (one of :data:`ROLES`) by tinykd's one rule, for ``fit_items`` and ``distill``.

    labels : per-row label, None where the row has none.
    splits : per-row split values; a row whose split is ``train_split`` trains ("unlabeled" without a
        label), ``val_split`` (None: "val") validates, one of the comma-separated ``test_split`` values
        is a test row; anything else, and validation or test rows without a label, is "other".
    no_split : without ``splits``: "train" (every row trains) or "paper" (the paper's seeded stratified
        7:1:2 split of each item's labelled rows; unlabeled rows are "other").
    hold_out : an item (``items``; None: one) with no validation row holds out a seeded stratified
        ``fraction`` of its labelled training rows, when it has at least :data:`MIN_HOLDOUT_ROWS`
        (stratified on ``key(label)``; a class too rare for a share stays in training).
    """
    n = len(labels)
    groups = {}
    for i in range(n):
        groups.setdefault(items[i] if items else None, []).append(i)
    if splits is None:
        if no_split == "train":
            return ["train" if labels[i] is not None else "unlabeled" for i in range(n)]
        if no_split != "paper":
            raise ValueError(f"no_split must be 'train' or 'paper', got {no_split!r}")
        roles = ["other"] * n
        for rows in groups.values():
            lab = [i for i in rows if labels[i] is not None]
            parts = split_712(np.asarray([key(labels[i]) for i in lab]), seed)
            for part, role in zip(parts, ("train", "val", "test")):
                for k in part:
                    roles[lab[k]] = role
        return roles
    tests = {t.strip() for t in str(test_split or "").split(",") if t.strip()}
    want_val = "val" if val_split is None else val_split
    roles = []
    for i, s in enumerate(splits):
        s = str(s).strip()
        role = ("train" if s == train_split else "val" if want_val and s == want_val else
                "test" if s in tests else "other")
        roles.append(("unlabeled" if role == "train" else "other") if labels[i] is None else role)
    if hold_out:
        for rows in groups.values():
            if any(roles[i] == "val" for i in rows):
                continue
            lab = [i for i in rows if roles[i] == "train"]
            if len(lab) >= MIN_HOLDOUT_ROWS:
                _, va = holdout(np.asarray([key(labels[i]) for i in lab]), fraction, seed)
                for k in va:
                    roles[lab[k]] = "val"
    return roles
