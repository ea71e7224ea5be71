"""Teacher soft labels: one CSV keyed by response id, plus a JSON sidecar.

File layout (written by ``teacher_export``, read here)::

    id,p_<c1>,...,p_<cK>,logit_<c1>,...,logit_<cK>[,split][,fold][,...]

``<c>`` is a class label as ``tinykd train`` reads the data's label column
(:func:`tinykd.files.csvfiles.class_keys`): numbers in any spelling are one score, so a label
spelt ``1``, ``1.0`` or ``01`` is written ``p_1``, and a file's ``p_1.0`` or ``p_01`` is read
as ``p_1``; text labels are written as they are. The sidecar ``<stem>.json`` next to the CSV records the base model,
the label order (``classes``), the temperature, the data file hash, the split
sizes and the teacher's own metrics.

Rows are joined **by id, never by row order**. :func:`read_soft_labels` refuses a
file with a one-line :class:`SoftLabelError` naming the problem: missing file,
no ``id`` column, duplicated ids, requested ids not in the file, class columns
that do not match the classes (or one score spelt twice), NaN/inf/negative values, rows not
summing to 1. The file is read by :class:`tinykd.files.csvfiles.CsvReader`, as data files are (a
byte-order mark, ``;`` or tab separators, Windows-1252 bytes, a pipe), and every error
names the file.

NumPy and the standard library only (no torch, no pandas, no scikit-learn).
"""
from __future__ import annotations

import csv
import io
import json
import math
import os

import numpy as np

from tinykd.files.atomic import atomic_write_bytes
from tinykd.nn.dense import softmax
from tinykd.files.csvfiles import CsvReader, DataFileError, check_classes, class_keys, duplicated, shown, shown_list

__all__ = ["SoftLabelError", "write_soft_labels", "read_soft_labels", "read_soft_label_table",
           "read_sidecar", "sidecar_path"]


class SoftLabelError(ValueError):
    """A soft-label file that cannot be used (with the reason)."""


def sidecar_path(path) -> str:
    path = os.fspath(path)
    root, ext = os.path.splitext(path)
    return (root if ext.lower() == ".csv" else path) + ".json"


def _atomic_write_text(path, text: str):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write_bytes(path, text.encode("utf-8"))


def write_soft_labels(path, ids, classes, proba, logits=None, extra=None, meta=None):
    """Write the soft-label CSV at ``path`` and its JSON sidecar (both atomically).

    ``proba``: (n, K) probabilities in the order of ``classes``; ``logits``: optional
    (n, K); ``extra``: optional ``{column: sequence of n values}`` (e.g. ``split``,
    ``fold``); ``meta``: dict for the sidecar (``classes`` is always recorded)."""
    path = os.fspath(path)
    ids = [str(i) for i in ids]
    try:
        classes = check_classes(classes)
    except ValueError as e:
        raise SoftLabelError(str(e)) from None
    proba = np.asarray(proba, dtype=np.float64)
    n, k = len(ids), len(classes)
    if proba.shape != (n, k):
        raise SoftLabelError(f"proba has shape {proba.shape}, expected ({n}, {k})")
    if len(set(ids)) != n:
        raise SoftLabelError(f"duplicated ids: {shown_list(duplicated(ids))}")
    if not np.all(np.isfinite(proba)) or np.any(proba < 0):
        raise SoftLabelError("proba holds NaN, inf or negative values")
    if logits is not None:
        logits = np.asarray(logits, dtype=np.float64)
        if logits.shape != (n, k):
            raise SoftLabelError(f"logits has shape {logits.shape}, expected ({n}, {k})")
    extra = dict(extra or {})
    for name, col in extra.items():
        if len(col) != n:
            raise SoftLabelError(f"extra column {name!r} has {len(col)} values, expected {n}")
    header = ["id"] + [f"p_{c}" for c in classes]
    if logits is not None:
        header += [f"logit_{c}" for c in classes]
    header += list(extra)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    cols = [list(v) for v in extra.values()]
    for r in range(n):
        row = [ids[r]] + ["%.8g" % v for v in proba[r]]
        if logits is not None:
            row += ["%.8g" % v for v in logits[r]]
        row += [c[r] for c in cols]
        w.writerow(row)
    side = dict(meta or {})
    side["classes"] = classes
    side.setdefault("temperature", 1.0)
    side["n_rows"] = n
    side["columns"] = header
    _atomic_write_text(path, buf.getvalue())
    _atomic_write_text(sidecar_path(path), json.dumps(side, indent=2, sort_keys=False) + "\n")
    return path


def read_sidecar(path) -> dict:
    """The JSON sidecar of a soft-label CSV (``{}`` when there is none)."""
    sp = sidecar_path(path)
    if not os.path.exists(sp):
        return {}
    try:
        with open(sp, encoding="utf-8") as fh:
            side = json.load(fh)
    except (OSError, ValueError) as e:
        raise SoftLabelError(f"{sp}: unreadable sidecar ({type(e).__name__}: {' '.join(str(e).split())})") from None
    if not isinstance(side, dict):
        raise SoftLabelError(f"{sp}: the sidecar is not a JSON object")
    return side


def _read_rows(path):
    path = os.fspath(path)
    if not os.path.exists(path):
        raise SoftLabelError(f"soft-label file not found: {path}")
    try:
        with CsvReader(path) as r:
            if "id" not in r.index:
                raise SoftLabelError(f"{path}: no 'id' column (columns: [{shown_list(r.header)}])")
            return path, r.header, [fields for _, fields in r.rows()]
    except DataFileError as e:
        raise SoftLabelError(str(e)) from None


def _parse_block(path, header, body, prefix, classes, ids_col):
    cols = [(h[len(prefix):], k) for k, h in enumerate(header) if h.startswith(prefix)]
    found = class_keys([c for c, _ in cols])
    twice = duplicated(found)
    if twice:
        same = [prefix + c for (c, _), key in zip(cols, found) if key in twice]
        raise SoftLabelError(f"{path}: columns {shown_list(same, quote=False)} are one score spelt two ways; keep one")
    if sorted(found) != sorted(classes) or len(found) != len(classes):
        raise SoftLabelError(f"{path}: class columns do not match the classes: expected "
                             f"[{shown_list(prefix + c for c in classes)}], "
                             f"found [{shown_list(prefix + c for c, _ in cols)}]")
    idx = [cols[found.index(c)][1] for c in classes]
    out = np.empty((len(body), len(classes)), dtype=np.float64)
    bad = []
    for r, row in enumerate(body):
        for j, col in enumerate(idx):
            try:
                out[r, j] = float(row[col])
            except (ValueError, IndexError):
                out[r, j] = math.nan
                bad.append(ids_col[r])
    if bad:
        raise SoftLabelError(f"{path}: unreadable or missing numbers for ids {shown_list(dict.fromkeys(bad))}")
    return out


def _load(path, classes, from_logits, tol):
    path, header, body = _read_rows(path)
    body = [row for row in body if any(cell.strip() for cell in row)]
    id_col = header.index("id")
    file_ids = [row[id_col].strip() if len(row) > id_col else "" for row in body]
    dups = duplicated(file_ids)
    if dups:
        raise SoftLabelError(f"{path}: duplicated ids in the file: {shown_list(dups)}")
    has_p = any(h.startswith("p_") for h in header)
    has_logit = any(h.startswith("logit_") for h in header)
    if classes is None:
        pref = "logit_" if (from_logits or not has_p) and has_logit else "p_"
        classes = [h[len(pref):] for h in header if h.startswith(pref)]
    classes = class_keys(classes)
    if from_logits:
        if not has_logit:
            raise SoftLabelError(f"{path}: from_logits=True but the file holds no logit_ columns")
        z = _parse_block(path, header, body, "logit_", classes, file_ids)
        bad = [file_ids[r] for r in np.flatnonzero(~np.all(np.isfinite(z), axis=1))]
        if bad:
            raise SoftLabelError(f"{path}: NaN or inf logits for ids {shown_list(bad)}")
        p = softmax(z)
    else:
        if not has_p:
            if has_logit:
                raise SoftLabelError(f"{path}: this file holds logits; pass from_logits=True "
                                     "to convert with a softmax")
            raise SoftLabelError(f"{path}: no p_<label> columns (columns: [{shown_list(header)}])")
        p = _parse_block(path, header, body, "p_", classes, file_ids)
        bad = [file_ids[r] for r in np.flatnonzero(~np.all(np.isfinite(p), axis=1))]
        if bad:
            raise SoftLabelError(f"{path}: NaN or inf probabilities for ids {shown_list(bad)}")
        bad = [file_ids[r] for r in np.flatnonzero(np.any(p < 0, axis=1))]
        if bad:
            raise SoftLabelError(f"{path}: negative probabilities for ids {shown_list(bad)}")
        s = p.sum(axis=1)
        bad = [file_ids[r] for r in np.flatnonzero(np.abs(s - 1.0) > tol)]
        if bad:
            worst = float(s[np.argmax(np.abs(s - 1.0))])
            raise SoftLabelError(f"{path}: rows do not sum to 1 (tol {tol:g}; e.g. {worst:.6g}) "
                                 f"for ids {shown_list(bad)}")
    return path, file_ids, classes, p


def read_soft_labels(path, ids, classes, *, from_logits=False, tol=1e-3, allow_missing=False):
    """Teacher probabilities for ``ids`` (compared as strings), columns in the order of
    ``classes``: float32 array of shape (len(ids), K).

    Ids in the file that are not asked for are ignored. With ``allow_missing`` the rows
    of ids absent from the file are NaN (``np.isnan(p[:, 0])`` is the mask); otherwise
    they are refused. ``from_logits=True`` reads the ``logit_`` columns and applies a
    (stable) softmax."""
    try:
        keys = check_classes(classes)
    except ValueError as e:
        raise SoftLabelError(str(e)) from None
    path, file_ids, classes, p = _load(path, keys, from_logits, tol)
    return join_by_id(path, file_ids, p, ids, allow_missing)


def join_by_id(source, file_ids, proba, ids, allow_missing=False):
    """Rows of ``proba`` (one per ``file_ids``) for ``ids``, compared as stripped strings:
    float32 (len(ids), K). Ids not asked for are ignored; ids without a row are refused
    (naming ``source``), or NaN rows with ``allow_missing``."""
    want = [str(i).strip() for i in ids]
    pos = {i: r for r, i in enumerate(file_ids)}
    if len(pos) != len(file_ids):
        raise SoftLabelError(f"{source}: duplicated ids: {shown_list(duplicated(file_ids))}")
    missing = [i for i in want if i not in pos]
    if missing and not allow_missing:
        raise SoftLabelError(f"{source}: {len(missing)} of {len(want)} requested ids are not in the "
                             f"file, e.g. {shown_list(missing)}; give every file that scores them (several teacher "
                             "files are joined by id), or pass allow_missing_teacher=True to train those rows "
                             "on their human score alone")
    out = np.full((len(want), proba.shape[1]), np.nan, dtype=np.float32)
    for r, i in enumerate(want):
        j = pos.get(i)
        if j is not None:
            out[r] = proba[j]
    return out


def merge_soft_label_tables(paths, *, from_logits=False, tol=1e-3):
    """Several soft-label files (e.g. one per item) as one table ``(ids, classes, proba)``, joined by
    id: the classes are the union of the files' (numbers sorted numerically), and a class a file
    does not have is 0 in its rows. An id in two files is refused."""
    from tinykd.files.csvfiles import label_key, label_sort_key, normalize_labels

    tables = [read_soft_label_table(p, from_logits=from_logits, tol=tol) for p in paths]
    values, file_keys = {}, []
    for _, classes, _ in tables:
        labels = [c if v is None else v for c, v in zip(classes, normalize_labels(classes)[0])]
        file_keys.append([label_key(v) for v in labels])
        for k, v in zip(file_keys[-1], labels):
            values.setdefault(k, v)
    union = sorted(values, key=lambda k: label_sort_key(values[k]))
    col = {k: j for j, k in enumerate(union)}
    ids, rows, where = [], [], {}
    for path, (t_ids, _, p), keys in zip(paths, tables, file_keys):
        block = np.zeros((len(t_ids), len(union)), np.float32)
        block[:, [col[k] for k in keys]] = p
        for i in t_ids:
            if i in where:
                raise SoftLabelError(f"id {shown(i)} is in two teacher files: {where[i]} and {path}")
            where[i] = path
        ids += t_ids
        rows.append(block)
    return ids, union, np.concatenate(rows) if rows else np.zeros((0, len(union)), np.float32)


def read_soft_label_table(path, *, from_logits=False, tol=1e-3):
    """The whole file: ``(ids, classes, proba)`` with classes in the file's column order."""
    path, file_ids, classes, p = _load(path, None, from_logits, tol)
    return file_ids, classes, p.astype(np.float32)
