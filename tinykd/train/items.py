"""Training from the rows of a data file: :func:`fit_items` (one student, or one per item in a
:class:`~tinykd.scoring.student.Bundle`), planned by :func:`plan_items` as one :class:`ItemJob` per
student and run by :func:`fit_item` (here, or as Dask tasks: :mod:`tinykd.cluster.tasks`).

The rules of a data file's rows (one student's rules: :mod:`tinykd.train.fitting`):

* **Labels** of a file: numbers in any spelling are one score, text stays text, and an
  empty / NaN / NA cell is *unlabeled* (:func:`tinykd.files.csvfiles.normalize_labels`).
* **Splits**: each row's role by :func:`tinykd.train.splits.assign_roles` (every row trains without
  a split column; rows of neither the training nor the validation split are not used, a note).
* **Teacher join**: the teacher's probabilities are joined to the rows by id, never by position;
  unlabeled training rows that the teacher scored are transfer data (soft term only); each item's
  student takes the columns of its own classes, renormalised.
"""
from __future__ import annotations

import os
import sys
from collections import Counter
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from tinykd.errors import OptionError
from tinykd.files.csvfiles import duplicated, label_key, label_sort_key, normalize_labels, shown_list
from tinykd.scoring.student import Bundle
from tinykd.scoring.text import as_list
from tinykd.train.fitting import Notes, fit, take
from tinykd.train.options import TrainOptions, make_options
from tinykd.train.splits import assign_roles


def item_order(name):
    """Sort key of item names: numbers numerically ("2" before "10"), then text."""
    return (len(name), name) if name.isdigit() else (10 ** 9, name)


@dataclass(frozen=True, eq=False)
class ItemJob:
    """One student's training, as :func:`plan_items` planned it: :func:`fit_item` runs it (in this
    process, or as a Dask task: :mod:`tinykd.cluster.tasks`). Plain data only (texts, arrays, a
    :class:`~tinykd.train.options.TrainOptions`), so it pickles."""
    item: str | None
    name: str
    texts: list
    y: np.ndarray
    teacher_proba: np.ndarray | None
    contexts: list | None
    validation: tuple | None
    transfer: tuple | None
    options: TrainOptions
    notes: list
    columns: dict
    label_kind: str


class ItemPlan:
    """What :func:`plan_items` makes: ``jobs`` (one :class:`ItemJob` per student, in item order)
    and ``item_col`` (None: one student, no items)."""

    def __init__(self, jobs, item_col):
        self.jobs, self.item_col = jobs, item_col

    @property
    def per_item(self):
        return self.jobs[0].item is not None

    def model(self, students):
        """The model of the jobs' students (one per job, in order): a Student, or a Bundle."""
        if len(students) != len(self.jobs):
            raise ValueError(f"{len(students)} students for {len(self.jobs)} jobs")
        if not self.per_item:
            return students[0]
        return Bundle({j.item: st for j, st in zip(self.jobs, students)}, item_col=self.item_col)


def fit_item(job, verbose=False, stream=None, settings=None):
    """Train the student of one :class:`ItemJob` (:func:`~tinykd.train.fitting.fit` with the job's rows
    and options), its metadata completed as :func:`fit_items` stores it. The same in every process: a
    Dask worker running it gives the student this process would."""
    st = fit(job.texts, job.y, job.teacher_proba, options=job.options, contexts=job.contexts,
             validation=job.validation, transfer=job.transfer, verbose=verbose, stream=stream, settings=settings,
             name=job.name)
    st.meta["notes"] = list(job.notes) + st.meta["notes"]
    st.meta["columns"] = job.columns
    st.meta["label_kind"] = job.label_kind
    return st


def fit_items(texts, labels, *, options=None, verbose=True, stream=None, settings=None, **arguments):
    """Train from the rows of a data file: one student, or (``items``) one per item in a
    :class:`~tinykd.scoring.student.Bundle`. What ``tinykd train`` does, for any Python tool.

    ``options`` and ``arguments`` are :func:`plan_items`'s (its rows' arguments, and training options
    as keywords); ``settings`` (:class:`tinykd.settings.Settings`) how this process trains. Each planned
    student is trained by :func:`fit_item` (:func:`tinykd.cluster.tasks.fit_items` runs the same jobs
    as Dask tasks, with the same result).
    Returns a :class:`~tinykd.scoring.student.Student` (no ``items``) or a :class:`~tinykd.scoring.student.Bundle`.
    """
    stream = sys.stderr if stream is None else stream
    plan = plan_items(texts, labels, options=options, verbose=verbose, stream=stream, **arguments)
    students = []
    for gi, job in enumerate(plan.jobs):
        if job.item is not None and verbose:
            print(f"[{gi + 1}/{len(plan.jobs)}] item {job.item!r}: {len(job.y)} rows", file=stream, flush=True)
        students.append(fit_item(job, verbose=verbose, stream=stream, settings=settings))
    return plan.model(students)


class _Table(NamedTuple):
    """A data file's columns, checked: labels normalised (None: unlabeled) and their kind."""
    texts: list
    labels: list
    kind: str
    items: list | None
    ids: list | None
    contexts: list | None
    splits: list | None


def plan_items(texts, labels, *, options=None, items=None, ids=None, contexts=None, splits=None,
               train_split="train", val_split=None, teacher=None, from_logits=False, allow_missing_teacher=False,
               columns=None, verbose=True, stream=None, **option_values):
    """Every rule of :func:`fit_items` up to training: the rows of a data file checked, split
    (training / validation / not used), grouped per item and joined to the teacher by id.
    Returns an :class:`ItemPlan`: one :class:`ItemJob` per student, for :func:`fit_item`.

    Parameters
    ----------
    texts : the answers, one per row.
    labels : the human scores as read (strings or values): numbers in any spelling are one
        score, text stays text; empty / NaN / NA is *unlabeled*.
    options, **option_values : the training options (a :class:`~tinykd.train.options.TrainOptions`,
        and/or its fields as keywords: :func:`~tinykd.train.fitting.fit`), the same for every item.
    items : per-row item (question); one student per distinct item. None: one student.
    ids : per-row ids; needed with ``teacher`` (the join is by id; ids must be unique).
    contexts : per-row context (question / reference answer) placed before the answer.
    splits : per-row split values, or None (every row trains). Rows whose split is
        ``train_split`` train; rows whose split is ``val_split`` (default ``"val"``, if
        present) drive early stopping; other rows are not used (a note says how many).
        Without validation rows an item holds out 1/8 of its rows (see :func:`~tinykd.train.fitting.fit`).
    teacher : a soft-label file (see :mod:`tinykd.files.softlabels`), a list of them (e.g. one per
        item: joined by id, a class a file lacks is 0), or an ``(ids, classes, proba)`` triple.
        Labelled rows need a teacher row (or ``allow_missing_teacher``: those train on the hard label
        alone); unlabeled training rows with one are transfer data.
    from_logits : read the file's ``logit_`` columns through a softmax.
    columns : the data file's column names (``text``, ``label``, ``id``, ``context``,
        ``item``), kept in the model's metadata and named in messages.

    Notes about the data are printed (``verbose``) as they are found.
    """
    options = make_options(options, **option_values)
    note = Notes(verbose, sys.stderr if stream is None else stream)
    cols = {"text": "text", "label": "label", "id": "id", "context": None, "item": None, **(columns or {})}
    table = _read_columns(texts, labels, items, ids, contexts, splits, teacher, cols)
    roles = _roles(table, train_split, val_split, note, cols)
    lab_idx = [i for i, r in enumerate(roles) if r == "train"]
    unl_idx = [i for i, r in enumerate(roles) if r == "unlabeled"]
    used = lab_idx + unl_idx + [i for i, r in enumerate(roles) if r == "val"]
    _check_ids(table.ids, used, teacher, cols, note)
    groups = _groups(table.items, used, cols)
    all_classes = sorted({table.labels[i] for i in lab_idx}, key=label_sort_key)
    teacher_row = {}
    if teacher is not None:
        teacher_row = _join_teacher(teacher, table.ids, lab_idx, unl_idx, all_classes, from_logits,
                                    allow_missing_teacher, note)
    elif unl_idx:
        note(f"{len(unl_idx):,} training rows have no label and there is no teacher; not used")
    jobs = [_item_job(g, rows, table, roles, teacher_row if teacher is not None else None, all_classes, options,
                      list(note), cols) for g, rows in groups.items()]
    return ItemPlan(jobs, None if items is None else cols["item"])


def _read_columns(texts, labels, items, ids, contexts, splits, teacher, cols):
    """The columns as lists of one length, labels normalised, ids / items / splits stripped."""
    texts = as_list(texts, "texts")
    n = len(texts)
    labels = as_list(labels, "labels")
    items, ids, contexts, splits = (None if xs is None else as_list(xs, what) for what, xs in (
        ("items", items), ("ids", ids), ("contexts", contexts), ("splits", splits)))
    for what, xs in (("labels", labels), ("items", items), ("ids", ids), ("contexts", contexts),
                     ("splits", splits)):
        if xs is not None and len(xs) != n:
            raise ValueError(f"got {n} texts but {len(xs)} {what}")
    if teacher is not None and ids is None:
        raise ValueError("teacher= needs ids= (the teacher's rows are joined by id)")
    labels, kind = normalize_labels(labels)
    if kind == "none":
        raise ValueError(f"the label column {cols['label']!r} is empty in every row")
    strip = lambda xs: None if xs is None else [str(v).strip() for v in xs]  # noqa: E731
    contexts = None if contexts is None else ["" if c is None else c for c in contexts]
    return _Table(texts, labels, kind, strip(items), strip(ids), contexts, strip(splits))


def _roles(table, train_split, val_split, note, cols):
    """Each row's role (:func:`tinykd.train.splits.assign_roles`: "train", "unlabeled", "val" or
    "other"); a note counts the rows whose split is neither ``train_split`` nor the validation split."""
    splits = table.splits
    want_val = "val" if val_split is None else val_split
    if splits is not None:
        present = sorted(set(splits))
        listed = f"the splits are {', '.join(map(repr, present[:10]))}; set {{opt}}"
        if train_split not in present:
            raise OptionError("train_split", f"no rows with split == {train_split!r}; {listed}")
        if val_split is not None and not (val_split and val_split in present):
            raise OptionError("val_split", f"no rows with split == {val_split!r}; {listed}")
        if val_split is not None and val_split == train_split:
            raise OptionError("val_split", f"{{opt}} {val_split!r} is the training split: validation rows "
                              "must be other rows")
    roles = assign_roles(table.labels, splits, train_split=train_split, val_split=val_split, no_split="train",
                         hold_out=False)
    if splits is not None:
        is_val = [bool(want_val) and s == want_val for s in splits]
        ignored = Counter(s for s, r, v in zip(splits, roles, is_val) if r == "other" and not v)
        if ignored:
            val = f" or {want_val!r}" if any(is_val) else ""
            note(f"not used: {sum(ignored.values()):,} rows whose split is not {train_split!r}{val} "
                 f"({', '.join(f'{k or repr(k)}: {v:,}' for k, v in sorted(ignored.items()))})")
    if "train" not in roles:
        raise ValueError(f"no training row has a label in {cols['label']!r}")
    return roles


def _check_ids(ids, used, teacher, cols, note):
    """Ids of the rows used: none empty and none twice with a teacher (its join is by id); a warning without."""
    if ids is None:
        return
    blank = [i for i in used if not ids[i]]
    if teacher is not None and blank:
        raise ValueError(f"{len(blank)} rows have an empty {cols['id']!r} (row {blank[0]}); "
                         "every row needs an id to join the teacher's probabilities")
    dups = duplicated([ids[i] for i in used if ids[i]])
    if dups:
        msg = f"duplicate ids in {cols['id']!r}: {shown_list(dups)}"
        if teacher is not None:
            raise ValueError(msg + "; ids must be unique to join the teacher's probabilities")
        note("warning: " + msg)


def _groups(items, used, cols):
    """``{item: rows}`` in item order (:func:`item_order`); ``{None: used}`` without items."""
    if items is None:
        return {None: used}
    groups = {}
    for i in used:
        groups.setdefault(items[i], []).append(i)
    if "" in groups:
        raise ValueError(f"{len(groups[''])} rows have an empty {cols['item']!r}")
    return {g: groups[g] for g in sorted(groups, key=item_order)}


def _join_teacher(teacher, ids, lab_idx, unl_idx, all_classes, from_logits, allow_missing, note):
    """``{row: probabilities over all_classes}`` by id: every labelled training row (NaN where the
    teacher has none, with ``allow_missing``) and the unlabeled training rows the teacher scored."""
    p = _teacher_rows(teacher, [ids[i] for i in lab_idx], all_classes, from_logits, allow_missing)
    teacher_row = {i: p[k] for k, i in enumerate(lab_idx)}
    miss = int(np.isnan(p).all(axis=1).sum())
    if miss:
        note(f"{miss} training rows have no teacher row; they get the hard-label term only")
    if unl_idx:
        pu = _teacher_rows(teacher, [ids[i] for i in unl_idx], all_classes, from_logits, True)
        got = np.isfinite(pu).all(axis=1)
        teacher_row.update({i: pu[k] for k, i in enumerate(unl_idx) if got[k]})
        if (~got).any():
            note(f"{int((~got).sum()):,} unlabeled training rows have no teacher row; not used")
    return teacher_row


def _teacher_rows(teacher, ids, classes, from_logits, allow_missing):
    """(len(ids), K) float64 probabilities by id from a soft-label file or an ``(ids, classes, proba)``
    triple; NaN rows where the teacher has no row (only with ``allow_missing``)."""
    from tinykd.files.softlabels import join_by_id, read_soft_labels

    want = [label_key(c) for c in classes]  # p_1 for a score spelt 1, 1.0 or 01
    if isinstance(teacher, (list, tuple)) and teacher and all(isinstance(t, (str, os.PathLike)) for t in teacher):
        from tinykd.files.softlabels import merge_soft_label_tables

        teacher = teacher[0] if len(teacher) == 1 else merge_soft_label_tables(teacher, from_logits=from_logits)
    if isinstance(teacher, (str, os.PathLike)):
        p = read_soft_labels(teacher, ids, want, from_logits=from_logits, allow_missing=allow_missing)
    else:
        t_ids, t_classes, t_p = teacher
        t_classes = [label_key(c) for c in t_classes]
        if sorted(t_classes) != sorted(want):
            raise ValueError(f"teacher classes {t_classes} do not match the training labels {want}")
        p = np.asarray(t_p, dtype=np.float64)[:, [t_classes.index(c) for c in want]]
        p = join_by_id("teacher", [str(i).strip() for i in t_ids], p, ids, allow_missing)
    return np.asarray(p, dtype=np.float64)


def _item_job(g, rows, table, roles, teacher_row, all_classes, options, notes, cols):
    """The :class:`ItemJob` of item ``g`` (None: the one student) from its ``rows``: its labelled
    training rows, its teacher's columns of its own classes (renormalised), its transfer and
    validation rows."""
    L = [i for i in rows if roles[i] == "train"]
    U = [i for i in rows if roles[i] == "unlabeled" and teacher_row is not None and i in teacher_row]
    V = [i for i in rows if roles[i] == "val"]
    name = "model" if g is None else f"item {g!r}"
    if len(L) < 2:
        raise ValueError(f"{name}: only {len(L)} labeled training row(s); need at least 2")
    labels, texts, contexts = table.labels, table.texts, table.contexts
    classes = sorted({labels[i] for i in L}, key=label_sort_key)
    t_cols = [all_classes.index(c) for c in classes]
    t_l = transfer = None
    if teacher_row is not None:
        with np.errstate(invalid="ignore", divide="ignore"):  # an item's own classes, renormalised
            t = np.stack([teacher_row[i] for i in L])[:, t_cols]
            t_l = t / t.sum(axis=1, keepdims=True)
            if U:
                tu = np.stack([teacher_row[i] for i in U])[:, t_cols]
                transfer = (take(texts, U), tu / tu.sum(axis=1, keepdims=True), take(contexts, U))
    label_dtype = object if table.kind == "str" else None
    validation = None if not V else (take(texts, V), np.asarray([labels[i] for i in V], dtype=label_dtype),
                                     take(contexts, V))
    return ItemJob(item=g, name=name, texts=take(texts, L), y=np.asarray([labels[i] for i in L], dtype=label_dtype),
                   teacher_proba=t_l, contexts=take(contexts, L), validation=validation, transfer=transfer,
                   options=options, notes=notes, columns=cols, label_kind=table.kind)
