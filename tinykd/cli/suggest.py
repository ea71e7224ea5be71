"""``tinykd suggest``: the unscored answers of a data file that a person should score next.

A thin face over :func:`tinykd.quality.suggest.suggest`: it reads the file, leaves out every row that has
a score in the label column, scores the rest with the student, joins the teacher's probabilities of a
``tinykd distill`` work folder (``--work``) by id where it has them, and writes the suggested rows,
highest priority first, with ``priority``, ``reason``, ``pred`` and ``confidence`` (atomically).
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np

from tinykd.distill.stages import MARKER
from tinykd.errors import OptionError, check_seed
from tinykd.files.atomic import check_output_path
from tinykd.files.csvfiles import (AtomicCsvWriter, DataFileError, class_keys, parse_label, read_table, shown,
                                   shown_list, spreadsheet_safe)
from tinykd.files.softlabels import read_soft_label_table
from tinykd.quality.suggest import suggest
from tinykd.scoring.student import Bundle, data_columns, load

#: the columns ``tinykd suggest`` adds to each suggested row
SUGGEST_COLUMNS = ["priority", "reason", "pred", "confidence"]


def _note(msg, quiet=False):
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def cmd_suggest(args):
    if args.n < 1:
        raise OptionError("n", f"{{opt}} must be >= 1, got {args.n}")
    check_seed(args.seed)
    check_output_path(args.out, [args.data, args.model])
    model = load(args.model)
    text_col, ctx_col, item_col = data_columns(model, args.text_col, args.context_col, args.item_col)
    cols = model.meta.get("columns") or {}
    label_col = args.label_col or cols.get("label") or "label"
    id_col = args.id_col or cols.get("id") or "id"
    need = [(text_col, "--text-col")] + [(c, f) for c, f in ((ctx_col, "--context-col"), (item_col, "--item-col"),
                                                              (args.label_col, "--label-col")) if c]
    table = read_table(args.data, need + ([(id_col, "--id-col")] if args.work else []), where=args.where)
    if table.note:
        _note(table.note)
    clash = [c for c in SUGGEST_COLUMNS if c in table.header]
    if clash:
        raise DataFileError(f"{args.data} already has column(s) {shown_list(clash, quote=False)}; rename them")
    rows = _unscored(table, label_col, args)
    col = lambda c: None if c is None else [table.rows[i][table.index[c]] for i in rows]  # noqa: E731
    texts, contexts = col(text_col), col(ctx_col)
    t0 = time.time()
    classes = model.classes
    if isinstance(model, Bundle):
        proba = model.predict_proba_matrix(texts, col(item_col), contexts, classes)
    else:
        proba = model.predict_proba(texts, contexts)
    teacher = None
    if args.work:
        teacher, note = work_teacher(args.work, col(id_col), classes)
        _note(note, args.quiet)
    picked = suggest(texts, proba, n=args.n, seed=args.seed, teacher_proba=teacher, contexts=contexts,
                     classes=classes)
    with AtomicCsvWriter(args.out, table.header + SUGGEST_COLUMNS) as w:
        for rank, (j, why) in enumerate(picked, 1):
            top = int(np.argmax(proba[j]))
            w.writerow(list(table.rows[rows[j]]) + [str(rank), why, spreadsheet_safe(classes[top]),
                                                    f"{proba[j, top]:.4f}"])
    print(f"suggested {len(picked):,} of {len(rows):,} unscored answers → {args.out} ({time.time() - t0:.1f} s)")
    return 0


def _unscored(table, label_col, args):
    """The positions of the rows without a score in ``label_col`` (empty, NA, NaN …: none, as everywhere in
    tinykd); every row when the file has no such column and ``--label-col`` was not given (a note says so)."""
    if not table.has(label_col):
        _note(f"note: {args.data} has no column {shown(label_col)}: every row counts as unscored", args.quiet)
        return list(range(len(table)))
    k = table.index[label_col]
    rows = [i for i, r in enumerate(table.rows) if parse_label(r[k]) is None]
    if not rows:
        raise DataFileError(f"{args.data}: no unscored rows: every one of the {len(table):,} rows has a score in "
                            f"column {shown(label_col)} (--label-col)")
    return rows


def work_teacher(work, ids, classes):
    """The teacher's probabilities for ``ids`` from the distill work folder ``work``: ``(proba, note)``, proba
    ``(len(ids), len(classes))`` with NaN rows for ids no teacher stage holds. Every finished teacher stage
    (``teacher-<key>/teacher.csv`` beside its marker, ``ensemble-<key>/`` and ``pick-<key>/`` of
    ``--teacher-members``) whose classes are the model's counts — one per item of a per-item model, one per
    round — and where several hold an id, the most recently finished gives it (the latest round's teacher; an
    ensemble or a pick, made after its members). One line when none holds any of them."""
    if not os.path.isdir(work):
        raise OptionError("work", f"{{opt}} {work}: no such folder")
    stages = []
    for name in sorted(os.listdir(work)):
        csv_path, marker = (os.path.join(work, name, f) for f in ("teacher.csv", MARKER))
        if name.startswith(("teacher-", "ensemble-", "pick-")) and os.path.isfile(csv_path) and os.path.isfile(marker):
            stages.append((os.path.getmtime(marker), csv_path))
    if not stages:
        raise OptionError("work", f"{{opt}} {work}: no finished teacher stage (teacher-*/teacher.csv beside its "
                          f"{MARKER}); is it a tinykd distill work folder?")
    where = {}
    for j, i in enumerate(ids):
        where.setdefault(str(i).strip(), []).append(j)
    col = {k: j for j, k in enumerate(class_keys(classes))}
    proba = np.full((len(ids), len(classes)), np.nan, np.float32)
    used = 0
    for _, csv_path in sorted(stages):  # oldest first: a later stage's row replaces an earlier one's
        file_ids, t_classes, p = read_soft_label_table(csv_path)
        keys = class_keys(t_classes)
        hits = [k for k, i in enumerate(file_ids) if i in where]
        if not hits or any(c not in col for c in keys):  # another data set's, or another model's teacher
            continue
        used += 1
        for k in hits:
            row = np.zeros(len(classes), np.float32)
            row[[col[c] for c in keys]] = p[k]
            proba[where[file_ids[k]]] = row
    covered = int((~np.isnan(proba).any(axis=1)).sum())
    if not covered:
        raise OptionError("work", f"{{opt}} {work}: no teacher stage with the model's classes holds any of the "
                          f"{len(where):,} unscored ids (e.g. {shown_list(sorted(where))}); is it the work folder "
                          "of this data and model?")
    return proba, (f"teacher: {used} of the {len(stages)} finished teacher stage(s) in {work} hold {covered:,} of "
                   f"the {len(ids):,} unscored answers (the latest stage where several do)")
