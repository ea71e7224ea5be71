"""What a model file's metadata (``meta.json``) may hold: its size, nesting and types, checked
before anything is built from it.

:func:`check_json_shape` bounds the JSON text (nesting depth, number of values) before it is
parsed; :func:`check_meta` checks the parsed metadata against the layout
:func:`tinykd.scoring.modelfile.write_model` writes — every field tinykd reads has the type it needs,
so a crafted or damaged file is one :class:`ValueError` (the reader makes it a one-line
``ModelFileError``), never an internal error later. Fields tinykd does not read may hold any
JSON.
"""
from __future__ import annotations

import json
import math
import re

from tinykd.nn.network import make_config

#: deepest nesting of the metadata (a real file nests 5 deep)
MAX_DEPTH = 32
#: most students in one file (a per-item bundle)
MAX_STUDENTS = 10_000

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_BRACKET = re.compile(rb"[\[\]{}]")


def check_json_shape(raw: bytes, max_values: int):
    """Refuse JSON text with more than ``max_values`` values or nested deeper than :data:`MAX_DEPTH`,
    without parsing it (strings are blanked first, so brackets inside them do not count)."""
    bare = _STRING.sub(b'""', raw)
    values = bare.count(b",") + bare.count(b"[") + bare.count(b"{") + 1
    if values > max_values:
        raise ValueError(f"the metadata holds {values:,} values, more than a model file's {max_values:,}")
    depth = deepest = 0
    for m in _BRACKET.finditer(bare):
        depth += 1 if m.group() in (b"[", b"{") else -1
        if depth > deepest:
            deepest = depth
            if deepest > MAX_DEPTH:
                raise ValueError(f"the metadata is nested more than {MAX_DEPTH} deep")


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v):  # NaN included: a QWK of one-class validation rows is NaN, and is written so
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_num(v):
    return _is_real(v) and math.isfinite(v)


def _need(ok, where, what, v):
    if not ok:
        raise ValueError(f"{where} must be {what}, got {type(v).__name__} {_short(v)}")


def _short(v):
    s = repr(v)
    return s if len(s) <= 40 else s[:37] + "..."


_NUM_OR_NONE = (lambda v: v is None or _is_real(v), "a number or null")
_INT_OR_NONE = (lambda v: v is None or _is_int(v), "a whole number or null")
_STR_OR_NONE = (lambda v: v is None or isinstance(v, str), "text or null")
_BOOL_OR_NONE = (lambda v: v is None or isinstance(v, bool), "true, false or null")

#: the fields of ``meta["training"]`` that tinykd reads (``tinykd info`` prints them)
TRAINING = {**{k: _NUM_OR_NONE for k in ("lam", "temperature", "lr", "seconds", "best_val_loss", "best_val_acc")},
            **{k: _INT_OR_NONE for k in ("seed", "epochs", "batch_size", "patience", "n_train", "n_val",
                                         "n_transfer", "best_epoch")},
            **{k: _STR_OR_NONE for k in ("stopped", "soft_loss")}, "teacher": _BOOL_OR_NONE}
#: the fields of ``meta["validation_metrics"]`` that tinykd reads
METRICS = {"n": _INT_OR_NONE, "accuracy": _NUM_OR_NONE, "qwk": _NUM_OR_NONE, "macro_f1": _NUM_OR_NONE}


def _check_fields(d, spec, where):
    _need(isinstance(d, dict), where, "an object", d)
    for key, (ok, what) in spec.items():
        if key in d:
            _need(ok(d[key]), f"{where}[{key!r}]", what, d[key])


def check_student(name, sm):
    """One student's entry of ``meta["students"]``; returns its full network config."""
    where = f"student {name!r}"
    _need(isinstance(sm, dict), where, "an object", sm)
    for key in ("config", "vocab", "classes"):
        if key not in sm:
            raise ValueError(f"{where} has no {key!r}")
    _need(isinstance(sm["config"], dict), f"{where} config", "an object", sm["config"])
    cfg = make_config(None, **sm["config"])  # types and ranges of every config value
    vocab = sm["vocab"]
    _need(isinstance(vocab, dict), f"{where} vocab", "an object", vocab)
    unknown = set(vocab) - {"max_size", "min_count", "max_len"}
    if unknown:
        raise ValueError(f"{where} vocab has unknown settings {sorted(unknown)}")
    for key, lo in (("max_size", 4), ("min_count", 1), ("max_len", 1)):
        if key in vocab:
            _need(_is_int(vocab[key]) and lo <= vocab[key] <= 10**9, f"{where} vocab[{key!r}]",
                  f"a whole number >= {lo}", vocab[key])
    classes = sm["classes"]
    _need(isinstance(classes, list), f"{where} classes", "a list", classes)
    for c in classes:
        _need(isinstance(c, str) or _is_num(c), f"{where} class label", "text or a number", c)
    if len(classes) < 2 or len({json.dumps(c) for c in classes}) != len(classes):
        raise ValueError(f"student {name!r} needs at least 2 distinct class labels")
    for key, (ok, what) in (("n_params", _INT_OR_NONE), ("tinykd_version", _STR_OR_NONE)):
        if key in sm:
            _need(ok(sm[key]), f"{where} {key}", what, sm[key])
    meta = sm.get("meta")
    if meta is None:
        return cfg
    _need(isinstance(meta, dict), f"{where} meta", "an object", meta)
    for key, (ok, what) in {"preset": _STR_OR_NONE, "uses_context": _BOOL_OR_NONE, "label_kind": _STR_OR_NONE,
                            "data_file": _STR_OR_NONE, "teacher_file": _STR_OR_NONE}.items():
        if key in meta:
            _need(ok(meta[key]), f"{where} meta[{key!r}]", what, meta[key])
    if meta.get("columns") is not None:
        cols = meta["columns"]
        _need(isinstance(cols, dict), f"{where} meta['columns']", "an object", cols)
        for k, v in cols.items():
            _need(v is None or isinstance(v, str), f"{where} meta['columns'][{k!r}]", "text or null", v)
    if meta.get("training") is not None:
        _check_fields(meta["training"], TRAINING, f"{where} meta['training']")
    if meta.get("validation_metrics") is not None:
        _check_fields(meta["validation_metrics"], METRICS, f"{where} meta['validation_metrics']")
    if meta.get("decision_offsets") is not None:  # tinykd info prints them
        off = meta["decision_offsets"]
        _need(isinstance(off, dict), f"{where} meta['decision_offsets']", "an object", off)
        vals = off.get("offsets")
        _need(isinstance(vals, list) and all(_is_num(v) for v in vals), f"{where} meta['decision_offsets']['offsets']",
              "a list of numbers", vals)
        _need(isinstance(off.get("reason", ""), str), f"{where} meta['decision_offsets']['reason']", "text",
              off.get("reason"))
    for key in ("notes", "history"):
        if meta.get(key) is not None:
            _need(isinstance(meta[key], list), f"{where} meta[{key!r}]", "a list", meta[key])
    for note in meta.get("notes") or ():
        _need(isinstance(note, str), f"{where} note", "text", note)
    return cfg


def check_meta(meta):
    """The top level of the metadata (after the format and version checks): the students and a
    bundle's item map. Returns ``{name: full config}``."""
    students = meta.get("students")
    if not isinstance(students, dict) or not students:
        raise ValueError("the file holds no students")
    if len(students) > MAX_STUDENTS:
        raise ValueError(f"the file holds {len(students):,} students, more than {MAX_STUDENTS:,}")
    for name in students:
        if not name or "/" in name:
            raise ValueError(f"student name {name!r} must be non-empty without '/'")
    configs = {name: check_student(name, sm) for name, sm in students.items()}
    items = meta.get("items")
    if items is not None:
        _need(isinstance(items, dict), "the item map", "an object", items)
        if set(items) != set(students):
            raise ValueError("the item map does not name exactly the file's students")
        for k, v in items.items():
            _need(isinstance(v, str) and v.strip(), f"the item of student {k!r}", "non-empty text", v)
    elif len(students) != 1 or "default" not in students:
        raise ValueError("several students but no item map")
    item_col = meta.get("item_col")
    _need(item_col is None or isinstance(item_col, str), "item_col", "text or null", item_col)
    return configs
