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

This module knows the format only: :mod:`tinykd.student` turns its contents
into a :class:`~tinykd.student.Student` or a :class:`~tinykd.student.Bundle`.
"""
from __future__ import annotations

import io as _io
import json
import os
import zipfile

import numpy as np

from ._version import __version__
from .atomic import atomic_write_bytes
from .model import param_shapes

FORMAT = "tinykd-model"
VERSION = 1


class ModelFileError(ValueError):
    """A model file that cannot be read (with the reason)."""


MAX_UNCOMPRESSED = 1 << 30  # a student is well under 10 MB; refuse archives claiming over 1 GiB


def write_model(path, students, extra=None):
    """Write a model file atomically.

    ``students``: ``{name: {"config", "vocab" (settings), "tokens", "classes", "params", "meta"}}``
    (see :meth:`tinykd.student.Student.to_entry`); ``extra``: top-level metadata (a
    bundle's item map)."""
    arrays = {}
    meta = {"format": FORMAT, "version": VERSION, "students": {}, **(extra or {})}
    for name, st in students.items():
        if "/" in name or not name:
            raise ValueError(f"student name {name!r} must be non-empty without '/'")
        meta["students"][name] = {"config": st["config"], "vocab": st["vocab"], "classes": st["classes"],
                                  "n_params": int(len(st["params"])), "meta": st["meta"],
                                  "tinykd_version": __version__}
        arrays[f"{name}/params"] = np.ascontiguousarray(st["params"], dtype=np.float32)
        arrays[f"{name}/vocab"] = np.array(st["tokens"], dtype=str)
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


def _check_members(path):
    """Refuse archives that are not plain ``.npy`` members of a sane size, before any is loaded."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if not infos:
                raise ModelFileError(f"{path}: not a tinykd model file (empty archive)")
            total = 0
            for info in infos:
                if not info.filename.endswith(".npy"):
                    raise ModelFileError(f"{path}: not a tinykd model file (member {info.filename!r})")
                total += info.file_size
                if total > MAX_UNCOMPRESSED:
                    raise ModelFileError(f"{path}: refused, the archive claims over {MAX_UNCOMPRESSED >> 20} MiB of data")
                with zf.open(info) as m:  # the .npy header alone: shape × itemsize must fit the member
                    version = np.lib.format.read_magic(m)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(m)
                    elif version == (2, 0):
                        shape, _, dtype = np.lib.format.read_array_header_2_0(m)
                    else:
                        raise ModelFileError(f"{path}: unsupported .npy version {version} in {info.filename!r}")
                    if dtype.hasobject:
                        raise ModelFileError(f"{path}: refused, the file holds pickled objects (never loaded)")
                    if int(np.prod(shape, dtype=np.float64)) * dtype.itemsize > info.file_size:
                        raise ModelFileError(f"{path}: damaged model file ({info.filename!r} is shorter than its shape)")
    except ModelFileError:
        raise
    except Exception as e:  # BadZipFile, EOFError, ValueError from a bad header, zlib.error, ...
        raise ModelFileError(f"{path}: damaged or truncated model file ({type(e).__name__}: {e})") from None


def read_file(path):
    """Checked contents of a model file: ``(meta, {key: array})``.

    Every failure is a :class:`ModelFileError` with a one-line reason; nothing in the
    file is executed (no pickle), and array sizes are checked before allocation."""
    path = os.fspath(path)
    try:
        return _read_file(path)
    except ModelFileError:
        raise
    except MemoryError:
        raise ModelFileError(f"{path}: refused, the file asks for more memory than a model needs") from None
    except RecursionError:
        raise ModelFileError(f"{path}: unreadable metadata (nested too deeply)") from None
    except Exception as e:  # a last line of defence: a damaged file must never give a traceback
        raise ModelFileError(f"{path}: damaged model file ({type(e).__name__}: {e})") from None


def _read_file(path):
    if not os.path.exists(path):
        raise ModelFileError(f"{path}: no such model file")
    if os.path.isdir(path):
        raise ModelFileError(f"{path}: is a folder, not a model file")
    try:
        is_zip = zipfile.is_zipfile(path)
    except OSError as e:
        raise ModelFileError(f"{path}: cannot read ({e.strerror or e})") from None
    if not is_zip:
        with open(path, "rb") as f:
            head = f.read(64)
        if head[:6] == b"\x93NUMPY" or head[:2] in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05"):
            raise ModelFileError(f"{path}: not a tinykd model file (a bare NumPy array or a pickle; refused)")
        if head.startswith(b"PK"):
            raise ModelFileError(f"{path}: damaged or truncated model file (the zip directory is missing)")
        raise ModelFileError(f"{path}: not a tinykd model file (not an .npz archive)")
    _check_members(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise ModelFileError(f"{path}: refused, the file holds pickled objects (never loaded)") from None
        raise ModelFileError(f"{path}: damaged model file ({e})") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError, RuntimeError) as e:
        raise ModelFileError(f"{path}: damaged or truncated model file ({type(e).__name__}: {e})") from None
    if any(not isinstance(a, np.ndarray) for a in arrays.values()):
        raise ModelFileError(f"{path}: not a tinykd model file (a member is not an array)")
    if "meta.json" not in arrays:
        raise ModelFileError(f"{path}: not a tinykd model file (no meta.json)")
    try:
        meta = json.loads(arrays.pop("meta.json").tobytes().decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise ModelFileError(f"{path}: unreadable metadata ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ModelFileError(f"{path}: not a tinykd model file (format {meta.get('format') if isinstance(meta, dict) else None!r})")
    version = meta.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ModelFileError(f"{path}: not a tinykd model file (format version {version!r})")
    if version > VERSION:
        raise ModelFileError(f"{path}: model format version {version!r} is newer than this tinykd reads "
                             f"({VERSION}); upgrade tinykd")
    students = meta.get("students")
    if not isinstance(students, dict) or not students:
        raise ModelFileError(f"{path}: the file holds no students")
    for name, sm in students.items():
        if not isinstance(sm, dict) or not isinstance(sm.get("config"), dict) or not isinstance(sm.get("classes"), list):
            raise ModelFileError(f"{path}: student {name!r} has malformed metadata")
        if len(sm["classes"]) < 2 or len({json.dumps(c) for c in sm["classes"]}) != len(sm["classes"]):
            raise ModelFileError(f"{path}: student {name!r} needs at least 2 distinct class labels")
        try:
            params, vocab = arrays[f"{name}/params"], arrays[f"{name}/vocab"]
            shapes = param_shapes(sm["config"], len(vocab), len(sm["classes"]))
        except (KeyError, TypeError) as e:
            raise ModelFileError(f"{path}: student {name!r} is incomplete (missing {e})") from None
        need = int(sum(np.prod(s, dtype=np.float64) for _, s in shapes))
        if params.dtype != np.float32 or params.shape != (need,):
            raise ModelFileError(f"{path}: student {name!r} has {params.shape} {params.dtype} parameters, "
                                 f"its config needs ({need},) float32")
        if vocab.dtype.kind != "U":
            raise ModelFileError(f"{path}: student {name!r} vocabulary is not text")
        if not np.isfinite(params).all():
            raise ModelFileError(f"{path}: student {name!r} has NaN or infinite weights")
    return meta, arrays
