"""What a model file's metadata (``meta.json``) may hold: its size, nesting and types, checked
before anything is built from it.

:func:`check_json_shape` bounds the JSON text (nesting depth, number of values) before it is
parsed; :func:`check_meta` checks the parsed metadata against the layout
:func:`tinykd.scoring.modelfile.write_model` writes — every field tinykd reads has the type it needs,
so a crafted or damaged file is one :class:`ValueError` (the reader makes it a one-line
``ModelFileError``), never an internal error later. Fields tinykd does not read may hold any
JSON of valid text (:func:`check_text`: no lone surrogates, anywhere).

The checks of a student's classes and calibration (:func:`check_classes`, :func:`check_calibration`)
are also what a student built in Python is held to by ``save`` and both exports.
"""
from __future__ import annotations

import json
import math
import re

from tinykd.files.csvfiles import check_classes as one_spelling_each
from tinykd.files.csvfiles import class_keys, duplicated, shown_list
from tinykd.errors import OptionError
from tinykd.nn.network import make_config
from tinykd.scoring.calibration import T_BOUNDS

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
TRAINING = {**{k: _NUM_OR_NONE for k in ("lam", "temperature", "lr", "seconds", "best_val_loss", "best_val_acc",
                                           "ordinal")},
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
    check_classes(sm["classes"], where)
    for key, (ok, what) in (("n_params", _INT_OR_NONE), ("tinykd_version", _STR_OR_NONE)):
        if key in sm:
            _need(ok(sm[key]), f"{where} {key}", what, sm[key])
    if sm.get("meta") is not None:
        _check_student_meta(sm["meta"], len(sm["classes"]), where)
    return cfg


def check_classes(classes, where):
    """A student's class labels: a list of at least 2 texts or finite numbers, valid text, each label
    in one spelling (:func:`tinykd.files.csvfiles.check_classes`: ``1``, ``1.0``, ``"1"`` and ``"01"``
    are one score, so they would make one ``p_1`` column)."""
    _need(isinstance(classes, list), f"{where} classes", "a list", classes)
    for c in classes:
        _need(isinstance(c, str) or _is_num(c), f"{where} class label", "text or a number", c)
    check_text(classes, f"{where} classes")
    if len(classes) < 2 or len({json.dumps(c) for c in classes}) != len(classes):
        raise ValueError(f"{where} needs at least 2 distinct class labels")
    one_spelling_each(classes, f"{where} class labels")


#: the longest score name (``--label-names``) and the longest stored item context, in characters
MAX_NAME_CHARS, MAX_CONTEXT_CHARS = 200, 20_000


def check_label_names(names, n_classes, where="label names"):
    """A student's score names (``meta["label_names"]``): one non-empty, distinct text of at most
    :data:`MAX_NAME_CHARS` characters and no line break per class, in the order of its classes."""
    _need(isinstance(names, list) and len(names) == n_classes, where, f"a list of {n_classes} names (one per class)",
          names)
    for name in names:
        _need(isinstance(name, str) and name.strip() and len(name) <= MAX_NAME_CHARS and name == name.strip()
              and not any(ch in name for ch in "\r\n\t"), f"{where}: a name",
              f"non-empty text of at most {MAX_NAME_CHARS} characters, no line break or outer space", name)
    check_text(names, where)
    twice = duplicated([n.casefold() for n in names])
    if twice:
        raise ValueError(f"{where}: two classes are named {twice[0]!r}; give each score its own name")
    return list(names)


def check_context_text(text, where="the item's context"):
    """The context text stored for an item (``meta["context_text"]``: its question or reference answer)."""
    _need(isinstance(text, str) and text.strip() and len(text) <= MAX_CONTEXT_CHARS, where,
          f"non-empty text of at most {MAX_CONTEXT_CHARS:,} characters", text)
    check_text(text, where)
    return text


def default_label_names(classes):
    """The names of classes that have none given: each label as a scored file writes it (``1`` for 1 and 1.0,
    a text label stripped)."""
    return class_keys(classes)


def parse_label_names(text):
    """``"0=incorrect,1=partly correct,2=correct"`` (``--label-names``) as ``{"0": "incorrect", …}``; a one-line
    ``ValueError`` for a part without ``=``, an empty label or name, or a label given twice."""
    out = {}
    for part in str(text).split(","):
        label, eq, name = part.partition("=")
        label, name = label.strip(), name.strip()
        if not eq or not label or not name:
            raise ValueError(f"{part.strip()!r} is not LABEL=NAME; write e.g. "
                             '"0=incorrect,1=partly correct,2=correct"')
        if label in out:
            raise ValueError(f"the label {label!r} is named twice")
        out[label] = name
    return out


def label_name_list(classes, names, where="label names", strict=True):
    """The score names of ``classes`` (a list aligned with them) from ``names``: None (each label itself,
    :func:`default_label_names`), a list of one name per class, a mapping ``{label: name}`` (a label may be
    given in any spelling of its score: ``1``, ``"1"``, ``1.0``; classes it leaves out keep their label) or
    the text of :func:`parse_label_names`. ``strict``: a mapping's label that is not a class is an error."""
    default = default_label_names(classes)
    if names is None:
        return default
    if isinstance(names, str):
        names = parse_label_names(names)
    if isinstance(names, dict):
        given = {key: str(name).strip() for key, name in zip(_label_keys(list(names)), names.values())}
        unknown = [k for k in given if k not in default]
        if unknown and strict:
            raise ValueError(f"{where}: {shown_list(unknown)} {'is' if len(unknown) == 1 else 'are'} not "
                             f"among the classes of this model; its classes are {shown_list(default)}")
        names = [given.get(k, k) for k in default]
    return check_label_names(list(names), len(default), where)


def label_names_for_data(names, labels):
    """``names`` (as :func:`label_name_list` takes them; None: None) checked against the scores of a data file's
    label column (``labels``, None for unlabelled rows) before any training, so that a misspelt label is an
    error at once: returns them as a mapping ``{label: name}``."""
    if names is None:
        return None
    try:
        if isinstance(names, str):
            names = parse_label_names(names)
        if not isinstance(names, dict):
            raise ValueError("give LABEL=NAME pairs (a mapping), not a list: a list's order is not the model's")
        label_name_list(list({str(v): v for v in labels if v is not None}.values()), names, "the data's")
    except ValueError as e:
        raise OptionError("label_names", f"{{opt}}: {e}".replace("the data's: ", "")
                          .replace("of this model", "of the data's label column")) from None
    return dict(names)


def _label_keys(labels):
    """Each label's :func:`default_label_names` key on its own (``1.0`` → ``1``, ``" a"`` → ``a``)."""
    return [class_keys([lab])[0] for lab in labels]


def _check_student_meta(meta, n_classes, where):
    """A student's ``meta``: every block tinykd reads, of the type and shape its readers need."""
    _need(isinstance(meta, dict), f"{where} meta", "an object", meta)
    for key, (ok, what) in {"preset": _STR_OR_NONE, "uses_context": _BOOL_OR_NONE, "label_kind": _STR_OR_NONE,
                            "data_file": _STR_OR_NONE, "teacher_file": _STR_OR_NONE}.items():
        if key in meta:
            _need(ok(meta[key]), f"{where} meta[{key!r}]", what, meta[key])
    if "label_names" in meta:
        check_label_names(meta["label_names"], n_classes, f"{where} meta['label_names']")
    if meta.get("context_text") is not None:
        check_context_text(meta["context_text"], f"{where} meta['context_text']")
    if meta.get("columns") is not None:
        cols = meta["columns"]
        _need(isinstance(cols, dict), f"{where} meta['columns']", "an object", cols)
        for k, v in cols.items():
            _need(v is None or isinstance(v, str), f"{where} meta['columns'][{k!r}]", "text or null", v)
    if meta.get("training") is not None:
        _check_fields(meta["training"], TRAINING, f"{where} meta['training']")
    if meta.get("validation_metrics") is not None:
        _check_fields(meta["validation_metrics"], METRICS, f"{where} meta['validation_metrics']")
    if meta.get("decision_offsets") is not None:  # tinykd info prints them beside the classes
        off = meta["decision_offsets"]
        _need(isinstance(off, dict), f"{where} meta['decision_offsets']", "an object", off)
        vals = off.get("offsets")
        _need(isinstance(vals, list) and len(vals) == n_classes and all(_is_num(v) for v in vals),
              f"{where} meta['decision_offsets']['offsets']", f"a list of {n_classes} numbers", vals)
        _need(isinstance(off.get("reason", ""), str), f"{where} meta['decision_offsets']['reason']", "text",
              off.get("reason"))
    if "calibration" in meta:
        check_calibration(meta["calibration"], f"{where} meta['calibration']")
    if "validation_predictions" in meta:
        _check_validation_predictions(meta["validation_predictions"], n_classes,
                                      f"{where} meta['validation_predictions']")
    for key in ("notes", "history"):
        if meta.get(key) is not None:
            _need(isinstance(meta[key], list), f"{where} meta[{key!r}]", "a list", meta[key])
    for note in meta.get("notes") or ():
        _need(isinstance(note, str), f"{where} note", "text", note)


#: the fields of ``meta["calibration"]`` (:func:`tinykd.train.fitting.calibrate` writes them; a student built
#: in Python may record its temperature alone)
CALIBRATION = {"method": _STR_OR_NONE, "reason": _STR_OR_NONE,  # (the temperature: check_calibration)
               "n_val": (lambda v: v is None or (_is_int(v) and v >= 0), "a whole number >= 0 or null"),
               "bins": _INT_OR_NONE, **{k: _NUM_OR_NONE for k in ("val_ece_before", "val_ece_after",
                                                                   "val_nll_before", "val_nll_after")}}


def check_calibration(cal, where="meta['calibration']"):
    """A stored calibration (None: a file written before tinykd calibrated); returns its temperature
    (1.0 when it has none). The temperature is one tinykd fits (:data:`~tinykd.scoring.calibration.T_BOUNDS`),
    so that scoring, ``info``, ``report`` and both exports read the same number."""
    if cal is None:
        return 1.0
    _check_fields(cal, CALIBRATION, where)
    t = cal.get("temperature")
    if t is None:
        return 1.0
    lo, hi = T_BOUNDS
    _need(_is_num(t) and lo <= t <= hi, f"{where}['temperature']", f"a number from {lo:g} to {hi:g} (what "
          "tinykd fits) or null", t)
    return float(t)


def _check_validation_predictions(vp, n_classes, where):
    """The stored validation rows ``--target-accuracy`` chooses on: ``y`` (class indices) and one row of
    ``n_classes`` finite logits per label."""
    _need(isinstance(vp, dict), where, "an object", vp)
    y, logits = vp.get("y"), vp.get("logits")
    _need(isinstance(y, list) and all(_is_int(v) and 0 <= v < n_classes for v in y), f"{where}['y']",
          f"a list of class indices 0 to {n_classes - 1}", y)
    _need(isinstance(logits, list) and len(logits) == len(y), f"{where}['logits']",
          f"a list of {len(y)} rows (one per label in ['y'])", logits)
    for k, row in enumerate(logits):
        _need(isinstance(row, list) and len(row) == n_classes and all(_is_num(v) for v in row),
              f"{where}['logits'] row {k}", f"a list of {n_classes} finite numbers", row)


def check_text(value, where):
    """Refuse a lone surrogate (U+D800–U+DFFF not in a pair: JSON's ``\\ud800`` escape) in any text of
    ``value`` (its keys too): no UTF-8 file, CSV or web page can hold one. ``where`` names the place."""
    if isinstance(value, str):
        if not value.isascii():
            bad = next((ch for ch in value if "\ud800" <= ch <= "\udfff"), None)
            if bad is not None:
                raise ValueError(f"{where} holds U+{ord(bad):04X}, a lone surrogate: not text")
    elif isinstance(value, (dict, list)):
        for k, v in (value.items() if isinstance(value, dict) else enumerate(value)):
            check_text(k, f"a key of {where or 'the metadata'}")  # checked before it names a place
            check_text(v, f"{where}/{k}" if where else str(k))


def check_meta(meta):
    """The top level of the metadata (after the format and version checks): the students and a
    bundle's item map. Returns ``{name: full config}``."""
    check_text(meta, "")
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
        _check_shared_classes(students, items)
    elif len(students) != 1 or "default" not in students:
        raise ValueError("several students but no item map")
    item_col = meta.get("item_col")
    _need(item_col is None or isinstance(item_col, str), "item_col", "text or null", item_col)
    return configs


def _check_shared_classes(students, items):
    """A bundle's classes: the union of its students' (as :attr:`tinykd.scoring.student.Bundle.classes`
    makes it, one ``p_<label>`` column each) holds each label in one spelling."""
    first = {}  # each label (as JSON) → (the label, the first item whose student has it)
    for name, sm in students.items():
        for c in sm["classes"]:
            first.setdefault(json.dumps(c), (c, items[name]))
    labels = [c for c, _ in first.values()]
    keys = class_keys(labels)
    twice = duplicated(keys)
    if twice:
        named = dict.fromkeys(it for (_, it), k in zip(first.values(), keys) if k == twice[0])
        one_spelling_each(labels, f"the students of items {shown_list(named)} have class labels")
