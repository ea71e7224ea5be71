"""Reading the response CSV and assigning train/val/test roles."""
from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass, field

import numpy as np

ROLES = ("train", "val", "test")


class DataError(ValueError):
    pass


def sha256_file(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_csv(path):
    if not os.path.exists(path):
        raise DataError(f"data file not found: {path}")
    csv.field_size_limit(1 << 24)
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return rows


def sort_classes(labels):
    """Class order: numeric when every label is a number, otherwise by string."""
    uniq = sorted(set(labels))
    try:
        return sorted(uniq, key=lambda s: (float(s), s))
    except ValueError:
        return uniq


def parse_where(where):
    out = []
    for w in where or []:
        if "=" not in w:
            raise DataError(f"--where expects COL=VALUE, got {w!r}")
        k, v = w.split("=", 1)
        out.append((k.strip(), v.strip()))
    return out


def stratified_holdout(labels, frac, seed):
    """Boolean mask of a seeded, per-class ``frac`` hold-out (at least one per class of >= 2)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    mask = np.zeros(len(labels), bool)
    for c in sorted(set(labels.tolist())):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        k = int(round(frac * len(idx)))
        if len(idx) >= 2:
            k = max(k, 1)
        mask[idx[:k]] = True
    return mask


def stratified_folds(labels, k, seed):
    """Fold number (0..k-1) per row, stratified by label, seeded."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    fold = np.full(len(labels), -1, dtype=int)
    offset = 0
    for c in sorted(set(labels.tolist())):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        fold[idx] = (np.arange(len(idx)) + offset) % k
        offset += len(idx)
    return fold


@dataclass
class Dataset:
    ids: list
    texts: list
    contexts: list | None
    labels: list            # str label, or None for unlabeled rows
    split_values: list      # the split column's value per row ("unlabeled" for --unlabeled rows)
    roles: list             # train / val / test / unlabeled / other
    classes: list
    info: dict = field(default_factory=dict)

    def index(self, role):
        return [i for i, r in enumerate(self.roles) if r == role]

    def y(self, idx):
        pos = {c: j for j, c in enumerate(self.classes)}
        return np.array([pos[self.labels[i]] for i in idx], dtype=np.int64)


def _context_getter(rows_header, context_col, context_file, base_dir):
    if context_col and context_file:
        raise DataError("give --context-col or --context-file, not both")
    if context_col:
        if context_col not in rows_header:
            raise DataError(f"no column {context_col!r} in the data (columns: {rows_header})")
        return lambda row: row[context_col]
    if context_file:
        cache = {}

        def get(row):
            try:
                p = context_file.format(**row)
            except KeyError as e:
                raise DataError(f"--context-file {context_file!r} names column {e} that the data lacks")
            if not os.path.isabs(p) and not os.path.exists(p) and base_dir:
                p2 = os.path.join(base_dir, p)
                p = p2 if os.path.exists(p2) else p
            if p not in cache:
                if not os.path.exists(p):
                    raise DataError(f"context file not found: {p}")
                with open(p, encoding="utf-8") as fh:
                    cache[p] = " ".join(fh.read().split())
            return cache[p]

        return get
    return None


def load_dataset(path, *, text_col="text", label_col="label", id_col="id", context_col=None,
                 context_file=None, split_col=None, train_split="train", val_split=None,
                 test_split=None, val_frac=0.1, test_frac=0.2, seed=0, where=None, unlabeled=None):
    """Rows of ``path`` (and of ``unlabeled``) with roles.

    With ``split_col``: rows whose split value is ``train_split`` train, ``val_split`` validate
    (when not given, a seeded stratified ``val_frac`` of the training rows is held out), values
    in ``test_split`` (comma-separated) are test rows, anything else is ``other`` (predicted,
    not scored). Without ``split_col``: the paper's seeded stratified 7:1:2 split."""
    rows = read_csv(path)
    if not rows:
        raise DataError(f"{path}: no rows")
    header = list(rows[0].keys())
    for col in (text_col, label_col, id_col) + ((split_col,) if split_col else ()):
        if col not in header:
            raise DataError(f"no column {col!r} in {path} (columns: {header})")
    cond = parse_where(where)
    for k, _ in cond:
        if k not in header:
            raise DataError(f"--where names column {k!r} that {path} lacks")
    rows = [r for r in rows if all(r[k] == v for k, v in cond)]
    if not rows:
        raise DataError(f"{path}: no rows left after --where {where}")
    base_dir = os.path.dirname(os.path.abspath(path))
    ctx = _context_getter(header, context_col, context_file, base_dir)

    ids = [r[id_col].strip() for r in rows]
    texts = [r[text_col] or "" for r in rows]
    contexts = [ctx(r) for r in rows] if ctx else None
    labels = [r[label_col].strip() or None for r in rows]
    tests = [t.strip() for t in (test_split or "").split(",") if t.strip()]
    if split_col:
        splits = [r[split_col].strip() for r in rows]
        roles = []
        for s, lab in zip(splits, labels):
            if s == train_split:
                roles.append("train")
            elif val_split and s == val_split:
                roles.append("val")
            elif s in tests:
                roles.append("test")
            else:
                roles.append("other")
        for role in ("train", "val", "test"):
            bad = [ids[i] for i, r in enumerate(roles) if r == role and labels[i] is None]
            if bad:
                raise DataError(f"{len(bad)} {role} rows have no label, e.g. {bad[:5]}")
        tr = [i for i, r in enumerate(roles) if r == "train"]
        if not tr:
            raise DataError(f"no rows with {split_col} == {train_split!r}")
        if not val_split:
            hold = stratified_holdout([labels[i] for i in tr], val_frac, seed)
            for j, i in enumerate(tr):
                if hold[j]:
                    roles[i] = "val"
    else:
        lab_idx = [i for i, lab in enumerate(labels) if lab is not None]
        lab = [labels[i] for i in lab_idx]
        test_mask = stratified_holdout(lab, test_frac, seed)
        rest = [i for j, i in enumerate(lab_idx) if not test_mask[j]]
        val_mask = stratified_holdout([labels[i] for i in rest], (1 - 0.7 - test_frac) / (1 - test_frac)
                                      if test_frac < 0.3 else val_frac, seed + 1)
        roles = ["other"] * len(rows)
        for j, i in enumerate(lab_idx):
            roles[i] = "test" if test_mask[j] else "train"
        for j, i in enumerate(rest):
            if val_mask[j]:
                roles[i] = "val"
        splits = list(roles)

    classes = sort_classes([labels[i] for i, r in enumerate(roles) if r in ROLES])
    known = set(classes)
    for i, r in enumerate(roles):
        if r in ROLES and labels[i] not in known:  # pragma: no cover (classes come from these rows)
            raise DataError(f"row {ids[i]}: unknown label {labels[i]!r}")
    train_classes = set(labels[i] for i, r in enumerate(roles) if r == "train")
    if train_classes != known:
        raise DataError(f"classes {sorted(known - train_classes)} appear in val/test but not in train")

    if unlabeled:
        urows = read_csv(unlabeled)
        uhead = list(urows[0].keys()) if urows else []
        for col in (id_col, text_col):
            if urows and col not in uhead:
                raise DataError(f"no column {col!r} in {unlabeled} (columns: {uhead})")
        urows = [r for r in urows if all(r.get(k) == v for k, v in cond)]
        uctx = _context_getter(uhead, context_col, context_file,
                               os.path.dirname(os.path.abspath(unlabeled))) if ctx else None
        for r in urows:
            ids.append(r[id_col].strip())
            texts.append(r[text_col] or "")
            if contexts is not None:
                contexts.append(uctx(r))
            labels.append(None)
            splits.append("unlabeled")
            roles.append("unlabeled")

    seen, dups = set(), []
    for i in ids:
        if i in seen:
            dups.append(i)
        seen.add(i)
    if dups:
        raise DataError(f"duplicated ids: {dups[:5]} ({len(dups)} in all)")
    if any(i == "" for i in ids):
        raise DataError("some rows have an empty id")
    info = {"data": os.path.abspath(path), "data_sha256": sha256_file(path),
            "unlabeled": os.path.abspath(unlabeled) if unlabeled else None,
            "unlabeled_sha256": sha256_file(unlabeled) if unlabeled else None,
            "text_col": text_col, "label_col": label_col, "id_col": id_col,
            "context_col": context_col, "context_file": context_file, "split_col": split_col,
            "train_split": train_split, "val_split": val_split if split_col else None,
            "test_split": tests if split_col else None, "where": where or [],
            "validation": (f"{split_col} == {val_split!r}" if split_col and val_split else
                           f"seeded stratified {val_frac:g} of train (seed {seed})" if split_col else
                           "seeded stratified 7:1:2 split")}
    return Dataset(ids, texts, contexts, labels, splits, roles, classes, info)
