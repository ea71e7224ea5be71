"""The model file: one ``.npz`` (a zip of ``.npy`` arrays), never pickled.

Layout (format ``tinykd-model``, version 1)::

    meta.json              uint8  — UTF-8 JSON: format, version, students{name: {...}}
    <name>/params          float32 (P,) — the flat parameter buffer
    <name>/vocab           unicode (V,) — the tokens, id = position

``meta.json`` holds, per student: the network config, vocabulary settings,
class labels, and training metadata (λ, T, seed, data sizes, metrics). A
file holds one student (name ``default``) or a bundle of per-item students.

Loading uses ``np.load(allow_pickle=False)`` and checks every shape against
the layout the config implies, so a truncated, foreign or tampered file is
refused with a one-line :class:`ModelFileError`; nothing in a file is ever
executed. Saving writes a temporary file in the target folder and renames
it into place, so a crash never leaves a half-written model behind.
"""
from __future__ import annotations

import io as _io
import json
import os
import tempfile
import zipfile

import numpy as np

FORMAT = "tinykd-model"
VERSION = 1


class ModelFileError(ValueError):
    """A model file that cannot be read (with the reason)."""


def atomic_write_bytes(path, data: bytes):
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _student_meta(student):
    from . import __version__

    return {
        "config": student.net.config,
        "vocab": student.vocab.to_config(),
        "classes": student.classes,
        "n_params": student.net.size,
        "meta": student.meta,
        "tinykd_version": __version__,
    }


def save(model, path):
    """Save a :class:`~tinykd.student.Student` or a ``{name: Student}`` bundle to ``path``."""
    from .bundle import as_students

    students, extra = as_students(model)
    arrays = {}
    meta = {"format": FORMAT, "version": VERSION, "students": {}, **extra}
    for name, st in students.items():
        if "/" in name or not name:
            raise ValueError(f"student name {name!r} must be non-empty without '/'")
        meta["students"][name] = _student_meta(st)
        arrays[f"{name}/params"] = np.ascontiguousarray(st.net.params, dtype=np.float32)
        arrays[f"{name}/vocab"] = np.array(st.vocab.tokens, dtype=str)
    arrays["meta.json"] = np.frombuffer(json.dumps(meta, default=_json_default).encode("utf-8"), dtype=np.uint8)
    buf = _io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"cannot store {type(o).__name__} in model metadata")


def read_file(path):
    """Checked contents of a model file: ``(meta, {key: array})``."""
    from .model import param_shapes

    path = os.fspath(path)
    if not os.path.exists(path):
        raise ModelFileError(f"{path}: no such model file")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path}: not a tinykd model file (not an .npz archive)")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise ModelFileError(f"{path}: refused, the file holds pickled objects (never loaded)") from None
        raise ModelFileError(f"{path}: damaged model file ({e})") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError, RuntimeError) as e:
        raise ModelFileError(f"{path}: damaged or truncated model file ({type(e).__name__}: {e})") from None
    if "meta.json" not in arrays:
        raise ModelFileError(f"{path}: not a tinykd model file (no meta.json)")
    try:
        meta = json.loads(arrays.pop("meta.json").tobytes().decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise ModelFileError(f"{path}: unreadable metadata ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a tinykd model file (format {meta.get('format') if isinstance(meta, dict) else None!r})")
    version = meta.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise ModelFileError(f"{path}: model format version {version!r} is newer than this tinykd reads "
                             f"({VERSION}); upgrade tinykd")
    students = meta.get("students")
    if not isinstance(students, dict) or not students:
        raise ModelFileError(f"{path}: the file holds no students")
    for name, sm in students.items():
        try:
            params, vocab = arrays[f"{name}/params"], arrays[f"{name}/vocab"]
            shapes = param_shapes(sm["config"], len(vocab), len(sm["classes"]))
        except (KeyError, TypeError) as e:
            raise ModelFileError(f"{path}: student {name!r} is incomplete (missing {e})") from None
        need = int(sum(np.prod(s) for _, s in shapes))
        if params.dtype != np.float32 or params.shape != (need,):
            raise ModelFileError(f"{path}: student {name!r} has {params.shape} {params.dtype} parameters, "
                                 f"its config needs ({need},) float32")
        if vocab.dtype.kind != "U":
            raise ModelFileError(f"{path}: student {name!r} vocabulary is not text")
        if not np.isfinite(params).all():
            raise ModelFileError(f"{path}: student {name!r} has NaN or infinite weights")
    return meta, arrays


def _build_student(name, sm, arrays):
    from .model import StudentNet, make_config
    from .student import Student
    from .text import Vocabulary

    cfg = make_config(None, **sm["config"])
    vocab = Vocabulary.from_tokens(arrays[f"{name}/vocab"].tolist(), sm["vocab"])
    net = StudentNet(cfg, len(vocab), len(sm["classes"]), params=arrays[f"{name}/params"])
    return Student(vocab, net, sm["classes"], sm.get("meta"))


def load(path):
    """Load a model file: a :class:`~tinykd.student.Student`, or a
    :class:`~tinykd.bundle.Bundle` when the file holds per-item students."""
    meta, arrays = read_file(path)
    try:
        students = {name: _build_student(name, sm, arrays) for name, sm in meta["students"].items()}
    except (KeyError, TypeError, ValueError) as e:
        raise ModelFileError(f"{os.fspath(path)}: invalid model contents ({e})") from None
    items = meta.get("items")
    if items is None:
        if list(students) != ["default"]:
            raise ModelFileError(f"{os.fspath(path)}: several students but no item map")
        return students["default"]
    from .bundle import Bundle

    try:
        return Bundle({items[name]: st for name, st in students.items()}, item_col=meta.get("item_col"))
    except (KeyError, TypeError) as e:
        raise ModelFileError(f"{os.fspath(path)}: item map does not match the students ({e})") from None
