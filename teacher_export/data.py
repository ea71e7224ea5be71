"""Reading the response CSV and assigning train/val/test roles.

The CSV reading (:func:`tinykd.files.csvfiles.read_table`: encodings, separators, one-line
errors), the label spelling (:func:`tinykd.files.csvfiles.normalize_labels`: ``"1"``, ``"1.0"``
and ``"01"`` are one score, text stays text, empty / NaN / NA is unlabeled) and the
seeded stratified splits (:mod:`tinykd.train.splits`) are tinykd's, so that the teacher and
``tinykd train`` agree on what the rows and labels are."""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from tinykd.distill.job import TRUNCATE_VALUES
from tinykd.train.splits import holdout, split_712
from tinykd.files.csvfiles import (DataFileError, coerce_labels, duplicated, file_sha256, label_key, label_sort_key,
                           normalize_labels, parse_where, read_table, sniff_encoding)

ROLES = ("train", "val", "test")

#: teacher_export's user errors are tinykd's one-line data-file errors (the command line exits with 2)
DataError = DataFileError

#: ``max_length="auto"``: this quantile of the training rows' word pieces, rounded up to a multiple of
#: AUTO_STEP, at least AUTO_LEAST and at most AUTO_MOST (docs/decisions/teacher-length.md)
AUTO_QUANTILE, AUTO_STEP, AUTO_LEAST, AUTO_MOST = 0.99, 32, 128, 512
#: how an answer and its context over ``max_length`` are cut: "longest" (the longer one first, Hugging Face's
#: ``longest_first``) or "context" (the context first: :func:`teacher_export.finetune.encode`); defined once
TRUNCATE = TRUNCATE_VALUES


def length_value(value):
    """A ``max_length`` as given on a command line or in a job: "auto" or a whole number >= 1."""
    if value == "auto":
        return value
    n = int(value) if isinstance(value, str) and value.strip().isdigit() else value
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"max length must be auto or a whole number >= 1, got {value!r}")
    return n


def stratified_folds(labels, k, seed):
    """Fold number (0..k-1) per row: scikit-learn's ``StratifiedKFold`` (shuffled, ``random_state=seed``)."""
    from sklearn.model_selection import StratifiedKFold

    labels = np.asarray(labels)
    if k > len(labels):
        raise DataError(f"{k} cross-fit folds need at least {k} training rows; there are {len(labels)}")
    fold = np.full(len(labels), -1, dtype=int)
    skf = StratifiedKFold(n_splits=int(k), shuffle=True, random_state=int(seed))
    for f, (_, held) in enumerate(skf.split(np.zeros((len(labels), 1)), labels)):
        fold[held] = f
    return fold


@dataclass
class Dataset:
    ids: list
    texts: list
    contexts: list | None
    labels: list            # normalised label (tinykd.files.csvfiles.normalize_labels), or None for unlabeled rows
    split_values: list      # the split column's value per row ("unlabeled" for --unlabeled rows)
    roles: list             # train / val / test / unlabeled / other
    classes: list
    info: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)   # encoding notes of the files read (for the log)

    def index(self, role):
        return [i for i, r in enumerate(self.roles) if r == role]

    @property
    def class_keys(self):
        """The classes as the strings of the soft-label columns (``p_<key>``)."""
        return [label_key(c) for c in self.classes]

    def y(self, idx):
        pos = {label_key(c): j for j, c in enumerate(self.classes)}
        return np.array([pos[label_key(self.labels[i])] for i in idx], dtype=np.int64)


def _context_getter(header, context_col, context_file, base_dir, notes):
    """A function of a row (list of cells) giving its context, or None."""
    if context_col:
        k = header.index(context_col)
        return lambda row: row[k]
    if context_file:
        cache = {}

        def get(row):
            try:
                p = context_file.format(**dict(zip(header, row)))
            except KeyError as e:
                raise DataError(f"--context-file {context_file!r} names column {e} that the data lacks") from None
            if not os.path.isabs(p) and not os.path.exists(p) and base_dir:
                p2 = os.path.join(base_dir, p)
                p = p2 if os.path.exists(p2) else p
            if p not in cache:
                if not os.path.isfile(p):
                    raise DataError(f"context file not found: {p}")
                enc, note = sniff_encoding(p)
                if note:
                    notes.append(note)
                with open(p, encoding=enc) as fh:
                    cache[p] = " ".join(fh.read().split())
            return cache[p]

        return get
    return None


def _read(path, cols, cond, notes, *, allow_empty=False):
    """The table at ``path`` (``cols``: ``(column, option)`` pairs it must have, None skipped) and the
    rows that pass the ``--where`` conditions."""
    need = [(c, o) for c, o in cols if c] + [(k, "--where") for k, _ in cond]
    table = read_table(path, required=need, allow_empty=allow_empty)
    if table.note:
        notes.append(table.note)
    pos = [(table.index[k], v) for k, v in cond]
    keep = [i for i, r in enumerate(table.rows) if all(r[j].strip() == v for j, v in pos)]
    return table, keep


def _holdout_val(y, frac, seed, what):
    """Positions (into ``y``) of a seeded stratified ``frac`` hold-out (:func:`tinykd.train.splits.holdout`)."""
    if frac <= 0 or len(y) == 0:
        return []
    if len(y) < 2:
        raise DataError(f"cannot hold out validation rows from {len(y)} {what} row; give --val-split")
    try:
        return list(holdout([label_key(v) for v in y], frac, seed)[1])
    except ValueError as e:
        raise DataError(f"cannot hold out a {frac:g} validation part of {len(y)} {what} rows ({e})") from None


def load_dataset(path, *, text_col="text", label_col="label", id_col="id", context_col=None,
                 context_file=None, split_col=None, train_split="train", val_split=None,
                 test_split=None, val_frac=0.1, seed=0, where=None, unlabeled=None, classes=None):
    """Rows of ``path`` (and of ``unlabeled``) with roles.

    With ``split_col``: rows whose split value is ``train_split`` train, ``val_split`` validate
    (when not given, a seeded stratified ``val_frac`` of the training rows is held out), values
    in ``test_split`` (comma-separated) are test rows, anything else is ``other`` (predicted,
    not scored). Without ``split_col``: the paper's seeded stratified 7:1:2 split
    (:func:`tinykd.train.splits.split_712`).

    ``classes`` (a saved teacher's): the labels must be among them and become the dataset's
    classes; without ``split_col`` every labelled row is then a test row (split ``all``).
    ``label_col=None``: a file without labels, every row ``unlabeled``."""
    if context_col and context_file:
        raise DataError("give --context-col or --context-file, not both")
    cond = parse_where(where)
    notes = []
    cols = [(id_col, "--id-col"), (text_col, "--text-col"), (label_col, "--label-col"),
            (split_col if label_col else None, "--split-col"), (context_col, "--context-col")]
    table, keep = _read(path, cols, cond, notes)
    if not keep:
        raise DataError(f"{path}: no rows left after --where {' '.join(where)}")
    rows = [table.rows[i] for i in keep]
    col = table.index
    ctx = _context_getter(table.header, context_col, context_file, os.path.dirname(os.path.abspath(path)), notes)
    ids = [r[col[id_col]].strip() for r in rows]
    texts = [r[col[text_col]] for r in rows]
    contexts = [ctx(r) for r in rows] if ctx else None
    tests = [t.strip() for t in (test_split or "").split(",") if t.strip()]
    labels = [None] * len(rows)
    if label_col is not None:  # the whole column, as tinykd train reads it: numbers in any spelling are one score
        all_labels, _ = normalize_labels(table.column(label_col))
        labels = [all_labels[i] for i in keep]
    if label_col is None:
        splits, roles = ["unlabeled"] * len(rows), ["unlabeled"] * len(rows)
    elif split_col:
        splits = [r[col[split_col]].strip() for r in rows]
        roles = _roles_by_split(splits, ids, labels, split_col, train_split, val_split, tests, val_frac, seed)
    else:
        splits, roles = _roles_without_split(path, labels, label_col, classes, seed)
    saved_classes = classes is not None
    classes = _classes(labels, roles, classes)
    if unlabeled:
        uctx = dict(context_col=context_col, context_file=context_file) if ctx else None
        _add_unlabeled(unlabeled, (id_col, text_col, context_col), uctx, cond, notes,
                       (ids, texts, contexts, labels, splits, roles))
    dups = duplicated(ids)
    if dups:
        raise DataError(f"duplicated ids: {dups[:5]} ({len(dups)} in all)")
    if any(i == "" for i in ids):
        raise DataError("some rows have an empty id")
    info = _info(path, unlabeled, where, dict(text_col=text_col, label_col=label_col, id_col=id_col,
                 context_col=context_col, context_file=context_file, split_col=split_col, train_split=train_split,
                 val_split=val_split, tests=tests, val_frac=val_frac, seed=seed, saved_classes=saved_classes))
    return Dataset(ids, texts, contexts, labels, splits, roles, classes, info, notes)


def _roles_by_split(splits, ids, labels, split_col, train_split, val_split, tests, val_frac, seed):
    """Roles from the split column; every train / val / test row must have a label; without
    ``val_split`` a seeded stratified ``val_frac`` of the training rows validates."""
    roles = []
    for s in splits:
        if s == train_split:
            roles.append("train")
        elif val_split and s == val_split:
            roles.append("val")
        elif s in tests:
            roles.append("test")
        else:
            roles.append("other")
    for role in ROLES:
        bad = [ids[i] for i, r in enumerate(roles) if r == role and labels[i] is None]
        if bad:
            raise DataError(f"{len(bad)} {role} rows have no label, e.g. {bad[:5]}")
    tr = [i for i, r in enumerate(roles) if r == "train"]
    if not tr:
        raise DataError(f"no rows with {split_col} == {train_split!r}")
    if not val_split:
        for j in _holdout_val([labels[i] for i in tr], val_frac, seed, "training"):
            roles[tr[j]] = "val"
    return roles


def _roles_without_split(path, labels, label_col, classes, seed):
    """``(splits, roles)`` with no split column: every labelled row a test row for a saved teacher
    (``classes`` given; split ``all``), else the paper's seeded stratified 7:1:2 split."""
    lab_idx = [i for i, lab in enumerate(labels) if lab is not None]
    if not lab_idx:
        raise DataError(f"{path}: no row has a label in {label_col!r} (set --label-col)")
    roles = ["other"] * len(labels)
    if classes is not None:
        for i in lab_idx:
            roles[i] = "test"
        return ["all" if r == "test" else r for r in roles], roles
    try:
        parts = split_712([label_key(labels[i]) for i in lab_idx], seed)
    except ValueError as e:
        raise DataError(f"{path}: cannot make the 7:1:2 split of {len(lab_idx)} labelled rows ({e})") from None
    for role, part in zip(ROLES, parts):
        for j in part:
            roles[lab_idx[j]] = role
    return list(roles), roles


def _classes(labels, roles, classes):
    """The dataset's classes: a saved teacher's ``classes`` (every scored label among them), else the
    sorted labels of the train / val / test rows (every one of them among the training rows')."""
    scored = [labels[i] for i, r in enumerate(roles) if r in ROLES]
    if classes is not None:
        keys = {label_key(c) for c in classes}
        unknown = sorted({v for v in scored if label_key(v) not in keys}, key=label_sort_key)
        if unknown:
            raise DataError(f"labels {[label_key(v) for v in unknown]} are not among the teacher's classes "
                            f"{[label_key(c) for c in classes]}")
        return list(classes)
    classes = sorted(set(scored), key=label_sort_key)
    train_classes = {labels[i] for i, r in enumerate(roles) if r == "train"}
    if train_classes != set(classes):
        missing = sorted(set(classes) - train_classes, key=label_sort_key)
        raise DataError(f"classes {[label_key(c) for c in missing]} appear in val/test but not in train")
    return classes


def _add_unlabeled(path, id_text_context, context, cond, notes, columns):
    """Append the rows of the unlabeled file ``path`` that pass ``cond`` to ``columns`` (ids, texts,
    contexts, labels, splits, roles); ``context``: the context options when the data has contexts."""
    id_col, text_col, context_col = id_text_context
    ids, texts, contexts, labels, splits, roles = columns
    ucols = [(id_col, "--id-col"), (text_col, "--text-col"), (context_col, "--context-col")]
    utable, ukeep = _read(path, ucols, cond, notes, allow_empty=True)
    ucol = utable.index
    uctx = _context_getter(utable.header, context["context_col"], context["context_file"],
                           os.path.dirname(os.path.abspath(path)), notes) if context else None
    for k in ukeep:
        r = utable.rows[k]
        ids.append(r[ucol[id_col]].strip())
        texts.append(r[ucol[text_col]])
        if contexts is not None:
            contexts.append(uctx(r))
        labels.append(None)
        splits.append("unlabeled")
        roles.append("unlabeled")


def _info(path, unlabeled, where, o):
    """The dataset's provenance for the teacher's run record (files and their SHA-256, the options)."""
    base = {"data": os.path.abspath(path), "data_sha256": file_sha256(path),
            "unlabeled": os.path.abspath(unlabeled) if unlabeled else None,
            "unlabeled_sha256": file_sha256(unlabeled) if unlabeled else None}
    if o["label_col"] is None:
        return {**base, "text_col": o["text_col"], "id_col": o["id_col"], "context_col": o["context_col"],
                "context_file": o["context_file"], "where": where or []}
    split_col, val_split = o["split_col"], o["val_split"]
    validation = (f"{split_col} == {val_split!r}" if split_col and val_split else
                  f"seeded stratified {o['val_frac']:g} of train (seed {o['seed']})" if split_col else
                  "every labelled row scored as test" if o["saved_classes"] else
                  "seeded stratified 7:1:2 split")
    return {**base, "text_col": o["text_col"], "label_col": o["label_col"], "id_col": o["id_col"],
            "context_col": o["context_col"], "context_file": o["context_file"], "split_col": split_col,
            "train_split": o["train_split"], "val_split": val_split if split_col else None,
            "test_split": o["tests"] if split_col else None, "where": where or [], "validation": validation}


def second_rater(path, ds, col, id_col="id"):
    """Class index (n,) of a second rater's score of each training row of ``ds`` (read from column
    ``col`` of ``path`` by id), -1 where the cell is empty; a score outside the dataset's classes is
    refused in one line."""
    table = read_table(path, (col, id_col))
    by_id = dict(zip((i.strip() for i in table.column(id_col)), table.column(col)))
    labels = coerce_labels([by_id.get(ds.ids[i], "") if r == "train" else "" for i, r in enumerate(ds.roles)],
                           ds.classes)
    pos = {label_key(c): j for j, c in enumerate(ds.classes)}
    bad = sorted({label_key(v) for v in labels if v is not None and label_key(v) not in pos})
    if bad:
        raise DataError(f"--second-label-col {col}: score(s) {', '.join(bad)} are not among the classes "
                        f"{', '.join(ds.class_keys)}")
    return np.array([-1 if v is None else pos[label_key(v)] for v in labels], dtype=np.int64)
