"""The rows stage of ``tinykd distill``: the data file read once (:mod:`tinykd.files.csvfiles`), every
row given its role by tinykd's one rule (:func:`tinykd.train.splits.assign_roles`: a seeded stratified
1/8 of an item's training rows validates when the file has no validation rows), and written with its
role for the teacher, who then sees the same roles as the students.

A file is hashed as it is read (:func:`read_hashed`): the stages are keyed by the bytes their rows came
from, even when the file is replaced or rewritten while distill reads it, or comes from a pipe."""
from __future__ import annotations

import hashlib
import os
import tempfile
from typing import NamedTuple

from tinykd.files.csvfiles import (AtomicCsvWriter, DataFileError, duplicated, label_key, normalize_labels,
                                   read_table)

_BLOCK = 1 << 20


class Columns(NamedTuple):
    """The data file's columns (None: not given) and the split values of its roles."""

    text: str
    label: str
    id: str
    context: str | None
    item: str | None
    split: str | None
    train_split: str
    val_split: str | None
    test_split: str

    def key_parts(self):
        """The columns, then the split values, as the rows' cache key hashes them."""
        return (self.text, self.label, self.id, self.context, self.item, self.split), \
            (self.train_split, self.val_split, self.test_split)


class Table(NamedTuple):
    """Every row of the data file (lists, one value per row; None columns not given)."""

    ids: list
    texts: list
    labels: list
    kind: str
    contexts: list | None
    items: list | None
    roles: list
    rater2: list | None = None  #: a second rater's cells (``rater2_col``): for the report alone, in no stage


#: why a data file cannot be opened, as tinykd.files.csvfiles says it
_OPEN_ERRORS = ((FileNotFoundError, "no such file"), (IsADirectoryError, "is a folder, not a CSV file"))


def read_hashed(path, read):
    """``(read(copy), SHA-256 of copy)``: ``copy`` a private copy of the file ``path`` made in one
    pass that hashes the bytes it copies, so that the rows read are exactly the bytes hashed, whatever
    happens to ``path`` meanwhile (a pipe can be read once only). Errors name ``path``."""
    path = os.fspath(path)
    try:
        src = open(path, "rb")
    except OSError as e:
        why = next((w for kind, w in _OPEN_ERRORS if isinstance(e, kind)), f"cannot open ({e.strerror or e})")
        raise DataFileError(f"{path}: {why}") from None
    with src:
        fd, copy = tempfile.mkstemp(prefix="tinykd-distill-", suffix=".csv")
        try:
            sha = hashlib.sha256()
            try:
                with os.fdopen(fd, "wb") as dst:
                    for block in iter(lambda: src.read(_BLOCK), b""):
                        sha.update(block)
                        dst.write(block)
            except OSError as e:
                raise DataFileError(f"{path}: cannot read it into a temporary copy ({e.strerror or e})") from None
            try:
                return read(copy), sha.hexdigest()
            except DataFileError as e:
                raise DataFileError(str(e).replace(copy, path)) from None
        finally:
            os.unlink(copy)


def read_rows(data, columns, where, seed, rater2_col=None):
    """The rows of ``data`` (filtered by ``where``) and their roles, the ``columns`` with the split
    column resolved (``split`` when the file has one and none was named), and the SHA-256 of the bytes
    read (:func:`read_hashed`). Ids must be unique. ``rater2_col``: a second rater's column, read in the same
    pass into ``Table.rater2`` (the rows stage does not write it, and no key hashes it)."""
    c = columns
    need = [(c.text, "--text-col"), (c.label, "--label-col"), (c.id, "--id-col")]
    need += [(col, flag) for col, flag in ((c.context, "--context-col"), (c.item, "--item-col")) if col]
    need += [(c.split, "--split-col")] if c.split else []
    need += [(rater2_col, "--rater2-col")] if rater2_col else []
    table, sha = read_hashed(data, lambda copy: read_table(copy, need, where=where))
    if c.split is None and table.has("split"):
        c = c._replace(split="split")
    ids = [s.strip() for s in table.column(c.id)]
    labels, kind = normalize_labels(table.column(c.label))
    items = [s.strip() for s in table.column(c.item)] if c.item else None
    dups = duplicated(ids)
    if dups or any(not i for i in ids):
        raise ValueError(f"{data}: ids must be unique and non-empty (duplicates: {dups[:5]})")
    roles = _roles(labels, table.column(c.split) if c.split else None, items, c.train_split, c.val_split,
                   c.test_split, seed)
    return Table(ids, table.column(c.text), labels, kind, table.column(c.context) if c.context else None,
                 items, roles, table.column(rater2_col) if rater2_col else None), c, sha


def _roles(labels, splits, items, train_split, val_split, test_split, seed):
    """Each row's role by tinykd's rules (:func:`tinykd.train.splits.assign_roles`): train / val / test / other."""
    from tinykd.train.splits import assign_roles

    return assign_roles(labels, splits, items, train_split=train_split, val_split=val_split or None,
                        test_split=test_split, no_split="paper", hold_out=True, key=label_key, seed=seed)


def read_unlabeled(path, columns, where):
    """``(id, text, context, item)`` of each row of the unlabeled file ``path`` (context "" without one),
    and the SHA-256 of the bytes read (:func:`read_hashed`)."""
    c = columns
    need = [(c.text, "--text-col"), (c.id, "--id-col")] + ([(c.item, "--item-col")] if c.item else [])
    ut, sha = read_hashed(path, lambda copy: read_table(copy, need, where=where))
    return [(r[ut.index[c.id]].strip(), r[ut.index[c.text]],
             r[ut.index[c.context]] if c.context and ut.has(c.context) else "",
             r[ut.index[c.item]].strip() if c.item else None) for r in ut.rows], sha


def write_rows(folder, table):
    """The rows stage: ``folder/rows.csv`` (id, text, label, role[, context][, item]). Returns the
    folder's name (in the work folder) and the count of each role."""
    t = table
    header = ["id", "text", "label", "role"] + (["context"] if t.contexts is not None else []) \
        + (["item"] if t.items is not None else [])
    with AtomicCsvWriter(os.path.join(folder, "rows.csv"), header) as w:
        for i in range(len(t.ids)):
            row = [t.ids[i], t.texts[i], "" if t.labels[i] is None else label_key(t.labels[i]), t.roles[i]]
            row += [t.contexts[i]] if t.contexts is not None else []
            row += [t.items[i]] if t.items is not None else []
            w.writerow(row)
    counts = {r: t.roles.count(r) for r in ("train", "val", "test", "unlabeled", "other")}
    return {"dir": os.path.basename(folder), "roles": counts}


def other_items(data, columns, where, table, seed):
    """The training answers of the data set's other items, unscored, for the transfer set of rows chosen by one
    ``--where COL=V`` (docs/decisions/transfer-data.md): the file's rows with another value of ``COL`` whose role
    (the same rule, per value of ``COL``) is training, as many as the chosen rows' training answers (all where
    fewer), drawn with ``seed``, in file order. Returns ``(id, text, context, None)`` rows with ids
    ``other-<their COL>-<id>`` and their SHA-256, or ``([], None)``: no other items, another ``--where``, or
    ``--item-col`` (one chain per item; not measured). The whole file is read again (without ``where``); what
    cannot be read so raises as :func:`read_rows` does."""
    import numpy as np

    from tinykd.files.csvfiles import parse_where

    conds = parse_where(where)
    if table.items is not None or len(conds) != 1 or conds[0][0] == columns.split:
        return [], None
    col, value = conds[0]
    pool, _, _ = read_rows(data, columns._replace(item=col), None, seed)
    own = sum(1 for i, r in zip(pool.items, pool.roles) if i == value and r == "train")
    other = [k for k, (i, r) in enumerate(zip(pool.items, pool.roles)) if i != value and r == "train"]
    if not other or not own:
        return [], None
    pick = sorted(np.random.default_rng(seed).choice(len(other), min(own, len(other)), replace=False))
    out = [(f"other-{pool.items[other[k]]}-{pool.ids[other[k]]}", pool.texts[other[k]],
            pool.contexts[other[k]] if pool.contexts is not None else "", None) for k in pick]
    sha = hashlib.sha256("\x1e".join("\x1f".join(map(str, r)) for r in out).encode()).hexdigest()
    return out, sha
