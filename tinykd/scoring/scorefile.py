"""Scoring a CSV file (``tinykd score``): every input row back, unchanged and in order, with the
model's columns added — streamed in chunks, so memory stays flat for any file size.

Added columns: ``pred`` (the most probable class), ``p_<label>`` per class, ``confidence`` (the
top probability) and ``needs_review`` (1 when the confidence is below ``review_below``); with
``explain``, ``explanation``: the answer's words that moved its score most (:func:`explanation_cell`); with
``human_col`` (``--human-col``), ``final`` and ``source``: the person's score where there is one, else the
machine's (:class:`FinalScores`). A class label that a spreadsheet would run as a formula (``=…``, ``+…``,
``-…``, ``@…``) is written with a leading ``'`` (:func:`tinykd.files.csvfiles.spreadsheet_safe`); plain
numbers, negative ones included, are written as they are. The input cells are written back as they were read.

The paths of ``tinykd score`` are checked here once, for one process and Dask alike, before any work:
:func:`data_files` (the data files a file, folder or glob names) and :func:`check_score_paths` (an
``--out`` that may be written and is none of the inputs).
"""
from __future__ import annotations

import glob
import os
import time

import numpy as np

from tinykd.scoring.scorer import REVIEW_BELOW, decide
from tinykd.scoring.student import Bundle, data_columns
from tinykd.files.atomic import OutputPathError, check_output_path
from tinykd.files.csvfiles import (AtomicCsvWriter, CsvReader, DataFileError, check_classes, label_key,
                                   normalize_labels, parse_label, shown_list, spreadsheet_safe)

#: rows scored per chunk when streaming
CHUNK_ROWS = 2000
#: ``--explain``: the most words an explanation cell names, and the smallest |weight| it names
EXPLAIN_WORDS, EXPLAIN_MIN_WEIGHT = 5, 0.01
#: the data files a folder or glob holds, by name ending
DATA_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
#: the columns ``--human-col`` adds after the model's
FINAL_COLUMNS = ["final", "source"]


def data_files(spec):
    """The sorted data files ``spec`` names (a file or pipe, a folder's ``*.csv`` / ``*.parquet`` files, or
    a glob) and their one format, ``"csv"`` or ``"parquet"``; a one-line :class:`DataFileError` if none."""
    spec = os.fspath(spec)
    if os.path.isdir(spec):
        files = sorted(os.path.join(spec, f) for f in os.listdir(spec)
                       if os.path.splitext(f)[1].lower() in DATA_FORMATS and os.path.isfile(os.path.join(spec, f)))
        where = spec
    elif os.path.exists(spec):
        files, where = [spec], spec
    else:
        files, where = sorted(f for f in glob.glob(spec) if os.path.isfile(f)), f"the pattern {spec!r}"
    if not files:
        if os.path.isdir(spec):
            raise DataFileError(f"{spec}: is a folder with no .csv or .parquet files in it; give a CSV file, or a "
                                "folder of CSV or Parquet files")
        raise DataFileError(f"{spec}: no such file" if not glob.has_magic(spec) else f"no .csv or .parquet files "
                            f"match {where}")
    kinds = {DATA_FORMATS.get(os.path.splitext(f)[1].lower(), "csv") for f in files}
    if len(kinds) > 1:
        raise DataFileError(f"{where} mixes CSV and Parquet files; score them separately")
    return files, kinds.pop()


def check_score_paths(inputs, out, *, parts=False, fmt="csv"):
    """Refuse, before any work, an ``out`` that ``tinykd score`` must not write (one-line ``ValueError``):
    one of ``inputs`` (the data files and the model, however spelt or linked), or a path that cannot be
    written — a file (:func:`tinykd.files.atomic.check_output_path`: not a link, a device, a FIFO or a
    read-only file, in a folder that exists) or, with ``parts``, a folder of parts that is new or empty."""
    out = os.fspath(out)
    if fmt != "csv" and not parts:
        raise OutputPathError(f"--out {out}: Parquet input is written as a folder of Parquet parts; give a folder")
    if not parts or os.path.islink(out) or (os.path.exists(out) and not os.path.isdir(out)):
        check_output_path(out, inputs)  # a link, a device, an input: refused as for one file
        if not parts:
            return
        raise OutputPathError(f"--out {out}: exists and is not an empty folder; give a new folder (or a name "
                              "ending in .csv for one file)")
    if os.path.isdir(out) and os.listdir(out):
        raise OutputPathError(f"--out {out}: exists and is not an empty folder; give a new folder (or a name "
                              "ending in .csv for one file)")
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        raise OutputPathError(f"cannot write {out}: the folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise OutputPathError(f"cannot write {out}: no permission to write in {parent}")


def output_columns(classes, explain=False, names=False, human=False):
    """The columns ``tinykd score`` adds, in order (``names``: ``pred_name`` after ``pred``; ``explain``:
    and ``explanation``; ``human``: and :data:`FINAL_COLUMNS`); classes that are one score spelt two ways
    (``1`` and ``"1"``: two ``p_1`` columns) are refused (:func:`tinykd.files.csvfiles.check_classes`)."""
    check_classes(classes, "the model's classes")
    return (["pred"] + (["pred_name"] if names else []) + [f"p_{c}" for c in classes]
            + ["confidence", "needs_review"] + (["explanation"] if explain else [])
            + (FINAL_COLUMNS if human else []))


def given_names(model, classes=None):
    """The score names of ``classes`` (default: the model's) when the model was given names
    (``--label-names``: ``meta["label_names"]`` of a Student or of any item's), else None: a model
    trained on text labels has its names in ``pred`` already."""
    students = model.students.values() if isinstance(model, Bundle) else [model]
    if not any(s.meta.get("label_names") for s in students):
        return None
    names = dict(zip(model.classes, model.label_names))
    return [names.get(c, str(c)) for c in (model.classes if classes is None else classes)]


def new_columns(header, classes, where, explain=False, names=False, human=False):
    """:func:`output_columns`, refused in one line when ``header`` (the columns of ``where``: a file, a
    frame) holds any of them already — one check for every scoring path."""
    cols = output_columns(classes, explain, names, human)
    clash = [c for c in cols if c in header]
    if clash:
        raise DataFileError(f"{where} already has column(s) {shown_list(clash, quote=False)}; rename them "
                            "(was it scored already?)")
    return cols


def score_rows(model, texts, contexts=None, items=None, classes=None, review_below=REVIEW_BELOW):
    """One chunk of rows scored as ``tinykd score`` scores it: ``(proba, pred, confidence,
    needs_review)`` — proba ``(n, len(classes))`` float32 over ``classes`` (default: the model's),
    ``pred`` the index of the top class (:func:`tinykd.scoring.scorer.decide`). A Bundle routes each
    row by ``items``."""
    classes = model.classes if classes is None else classes
    if isinstance(model, Bundle):
        proba = model.predict_proba_matrix(texts, items, contexts, classes)
    else:
        proba = model.predict_proba(texts, contexts)
    return (proba, *decide(proba, review_below))


def explanation_cell(pairs, words=EXPLAIN_WORDS, min_weight=EXPLAIN_MIN_WEIGHT):
    """The ``explanation`` cell of one answer's ``(word, weight)`` pairs (:func:`tinykd.scoring.explain.explain`):
    the ``words`` of largest ``|weight|``, largest first, each as its sign (``+`` towards the score given,
    ``−`` away from it) and the word, those under ``min_weight`` left out — ``+photosynthesis −dirt``;
    empty when no word reaches it. A cell that starts with ``+`` is written with a leading ``'``, as every
    cell a spreadsheet would run as a formula (:func:`tinykd.files.csvfiles.spreadsheet_safe`)."""
    strong = sorted((p for p in pairs if abs(p[1]) >= min_weight), key=lambda p: -abs(p[1]))[:words]
    return spreadsheet_safe(" ".join(("+" if w > 0 else "\u2212") + word for word, w in strong))


def formatted_cells(pred_labels, proba, confidence, needs_review):
    """The cells :func:`score_csv` adds to each row (text): the predicted label as given
    (:func:`tinykd.files.csvfiles.spreadsheet_safe` of the class; a list: the label and its name), each
    probability and the confidence to 4 decimals, and ``1`` / ``0``."""
    for p, pr, c, rv in zip(pred_labels, proba.tolist(), confidence.tolist(), needs_review.tolist()):
        yield (p if isinstance(p, list) else [p]) + [f"{x:.4f}" for x in pr] + [f"{c:.4f}", "1" if rv else "0"]


class FinalScores:
    """``--human-col``: the ``final`` and ``source`` cells of each row, and their counts. A person's score
    (the cell stripped; empty, ``NA``, ``NaN`` … are none, as for every label in tinykd) is final, a class of
    the model or not — the person decides — with ``source`` ``human``; a row without one keeps the machine's
    ``pred``, ``machine`` or ``machine, needs review``. Every row is scored by the machine all the same.

    ``counts``: ``human``, ``machine``, ``review`` (machine, needs review), ``both`` (the rows both scored) and
    ``agree`` (those where the machine gave the person's score; labels compared by their
    :func:`tinykd.files.csvfiles.label_key`, as ``evaluate`` does: ``1`` and ``1.0`` are one score);
    ``not_classes``: each human score that is not a class of the model, with its count."""

    def __init__(self, classes):
        self.keys = [label_key(c) for c in classes]
        self.known = set(self.keys)
        self.counts = dict.fromkeys(("human", "machine", "review", "agree", "both"), 0)
        self.not_classes = {}

    def cells(self, human, best, pred_labels, review):
        """The ``[final, source]`` cells of a chunk's rows: ``human`` their cells of the human column, ``best``
        the index of each row's class, ``pred_labels`` its ``pred`` cell(s), ``review`` its needs_review flags."""
        for cell, b, p, rv in zip(human, best.tolist(), pred_labels, review.tolist()):
            value = parse_label(cell)
            if value is None:
                self.counts["review" if rv else "machine"] += 1
                yield [p[0] if isinstance(p, list) else p, "machine, needs review" if rv else "machine"]
                continue
            key = label_key(normalize_labels([value])[0][0])
            self.counts["human"] += 1
            self.counts["both"] += 1
            self.counts["agree"] += key == self.keys[b]
            if key not in self.known:
                self.not_classes[key] = self.not_classes.get(key, 0) + 1
            yield [spreadsheet_safe(value), "human"]


def score_csv(model, data, out, *, text_col=None, context_col=None, item_col=None, where=None,
              review_below=REVIEW_BELOW, chunk_size=CHUNK_ROWS, on_note=None, on_progress=None, allow_empty=False,
              explain=False, human_col=None):
    """Score every row of the CSV ``data`` with ``model`` (a Student or a Bundle) into ``out``
    (written atomically). Columns not given are the ones the model was trained with.
    ``on_note(msg)`` gets the reader's notes (an encoding fallback), ``on_progress(n)`` the rows
    scored so far; ``allow_empty``: a file with no data rows is written as its header (a Dask part), not
    refused; ``explain``: add the ``explanation`` column (:func:`explanation_cell`); ``human_col``: the column of
    people's scores, adding ``final`` and ``source`` (:class:`FinalScores`). Returns ``{"n", "flagged",
    "predict_seconds", "explain_seconds"}``, with ``human_col`` also ``"final"`` (``{"human", "machine", "review",
    "agree", "both"}``) and ``"not_classes"`` (``{score: rows}``): :attr:`FinalScores.counts` and
    :attr:`FinalScores.not_classes`."""
    decide(np.zeros((0, 2)), review_below)  # the threshold is checked before any work
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a whole number >= 1, got {chunk_size!r}")
    text_col, ctx_col, item_col = data_columns(model, text_col, context_col, item_col)
    classes = model.classes
    labels = [spreadsheet_safe(c) for c in classes]
    names = given_names(model)
    if names is not None:  # pred, then pred_name: the code and the rubric's words
        labels = [[code, spreadsheet_safe(name)] for code, name in zip(labels, names)]
    need = [(text_col, "--text-col")] + [(c, f) for c, f in ((ctx_col, "--context-col"), (item_col, "--item-col"))
                                         if c] + ([(human_col, "--human-col")] if human_col is not None else [])
    final = None if human_col is None else FinalScores(classes)
    n = flagged = 0
    pred_time = explain_time = 0.0
    with CsvReader(data, need, where=where) as reader:
        if reader.note and on_note:
            on_note(reader.note)
        out_cols = new_columns(reader.index, classes, data, explain, names is not None, final is not None)
        ti, ci, ii = (reader.index[c] if c else None for c in (text_col, ctx_col, item_col))
        hi = None if final is None else reader.index[human_col]
        with AtomicCsvWriter(out, reader.header + out_cols) as w:
            for chunk in reader.chunks(chunk_size):
                texts = [r[ti] for r in chunk]
                ctx = None if ci is None else [r[ci] for r in chunk]
                t1 = time.perf_counter()
                items = None if ii is None else [r[ii] for r in chunk]
                proba, best, conf, review = score_rows(model, texts, ctx, items, classes, review_below)
                pred_time += time.perf_counter() - t1
                t2 = time.perf_counter()
                why = _explanations(model, texts, ctx, items, explain)
                explain_time += time.perf_counter() - t2
                flagged += int(review.sum())
                pred_labels = [labels[b] for b in best.tolist()]
                cells = formatted_cells(pred_labels, proba, conf, review)
                ends = ([[]] * len(chunk) if final is None
                        else final.cells([r[hi] for r in chunk], best, pred_labels, review))
                for r, c, e, f in zip(chunk, cells, why, ends):
                    w.writerow(r + c + e + f)
                n += len(chunk)
                if on_progress:
                    on_progress(n)
            if n == 0 and not allow_empty:
                raise DataFileError(f"{data}: has a header row but no data rows; nothing to score")
    res = {"n": n, "flagged": flagged, "predict_seconds": pred_time, "explain_seconds": explain_time}
    if final is not None:
        res.update(final=final.counts, not_classes=final.not_classes)
    return res


def _explanations(model, texts, contexts, items, explain):
    """The ``explanation`` cell of each row, as a one-cell list (``[]`` per row without ``explain``)."""
    if not explain:
        return [[]] * len(texts)
    from tinykd.scoring.explain import explain as explain_rows

    pairs = explain_rows(model, texts, contexts, EXPLAIN_WORDS, items=items if isinstance(model, Bundle) else None)
    return [[explanation_cell(p)] for p in pairs]
