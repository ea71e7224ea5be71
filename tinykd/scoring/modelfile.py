"""The model file: one ``.npz`` (a zip of ``.npy`` arrays), never pickled.

Layout (format ``tinykd-model``, version 1)::

    meta.json              uint8  — UTF-8 JSON: format, version, students{name: {...}}
    <name>/params          float32 (P,) — the flat parameter buffer
    <name>/vocab           unicode (V,) — the tokens, id = position
    <name>/aliases         unicode (A,) — optional: words outside the vocabulary …
    <name>/alias_ids       int32 (A,)   — … and the id each reads as (3 ≤ id < V)

``meta.json`` holds, per student: the network config, vocabulary settings,
class labels, and training metadata (λ, T, seed, data sizes, metrics). A
file holds one student (name ``default``) or a bundle of per-item students.

Loading opens the file once, reads arrays with ``allow_pickle=False`` and
checks every shape against the layout the config implies, so a truncated,
foreign or tampered file is refused with a one-line :class:`ModelFileError`;
nothing in a file is ever executed. What a file may ask for is bounded before
anything is built (:func:`_read_archive`), so a crafted file of a few kilobytes
cannot make the reader use more than some tens of megabytes. Saving writes a
temporary file in the target folder and renames it into place, so a crash never
leaves a half-written model behind.

This module knows the format only: :mod:`tinykd.scoring.student` turns its contents
into a :class:`~tinykd.scoring.student.Student` or a :class:`~tinykd.scoring.student.Bundle`.
"""
from __future__ import annotations

import io as _io
import json
import os
import stat
import zipfile
from collections import Counter

import numpy as np

from tinykd._version import __version__
from tinykd.files.atomic import atomic_write_bytes
from tinykd.nn.network import check_weights, param_shapes
from tinykd.scoring.modelmeta import MAX_STUDENTS, check_json_shape, check_meta
from tinykd.scoring.text import MAX_TOKEN_CHARS, SPECIAL_TOKENS

FORMAT = "tinykd-model"
VERSION = 1


class ModelFileError(ValueError):
    """A model file that cannot be read (with the reason)."""


MAX_UNCOMPRESSED = 1 << 30  # a student is well under 10 MB; refuse archives claiming over 1 GiB


def write_model(path, students, extra=None):
    """Write a model file atomically.

    ``students``: ``{name: {"config", "vocab" (settings), "tokens", "classes", "params", "meta"}}``
    (see :meth:`tinykd.scoring.student.Student.to_entry`); ``extra``: top-level metadata (a
    bundle's item map)."""
    atomic_write_bytes(path, model_bytes(students, extra))


def model_bytes(students, extra=None):
    """The bytes of the model file :func:`write_model` writes (what travels to a Dask worker)."""
    arrays = {}
    meta = {"format": FORMAT, "version": VERSION, "students": {}, **(extra or {})}
    for name, st in students.items():
        if "/" in name or not name:
            raise ValueError(f"student name {name!r} must be non-empty without '/'")
        meta["students"][name] = {"config": st["config"], "vocab": st["vocab"], "classes": st["classes"],
                                  "n_params": int(len(st["params"])), "meta": st["meta"],
                                  "tinykd_version": __version__}
        arrays[f"{name}/params"] = np.ascontiguousarray(st["params"], dtype=np.float32)
        check_weights(arrays[f"{name}/params"], f"student {name!r}")  # what the reader would refuse
        arrays[f"{name}/vocab"] = np.array(st["tokens"], dtype=str)
        check_tokens(arrays[f"{name}/vocab"], f"student {name!r}")
        if st.get("aliases"):
            arrays[f"{name}/aliases"] = np.array(list(st["aliases"]), dtype=str)
            arrays[f"{name}/alias_ids"] = np.array(list(st["aliases"].values()), dtype=np.int32)
            check_aliases(arrays[f"{name}/vocab"], arrays[f"{name}/aliases"], arrays[f"{name}/alias_ids"],
                          f"student {name!r}")
    raw = json.dumps(meta, default=_json_default).encode("utf-8")
    check_meta(json.loads(raw))  # the metadata as the reader will see it: never write a file it refuses
    arrays["meta.json"] = np.frombuffer(raw, dtype=np.uint8)
    buf = _io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"cannot store {type(o).__name__} in model metadata")


def _npy_header(m, name):
    """``(shape, dtype)`` from a member's ``.npy`` header (the header only is read)."""
    version = np.lib.format.read_magic(m)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(m)
    elif version == (2, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(m)
    else:
        raise ModelFileError(f"unsupported .npy version {version} in {name!r}")
    return shape, dtype


def _read_member(zf, info, kind):
    """The array of one member: read once, pickles refused; the member must end where the array does."""
    with zf.open(info) as m:
        a = np.lib.format.read_array(m, allow_pickle=False)
        if m.read(1):
            raise ModelFileError(f"damaged model file ({info.filename!r} holds more than its {kind})")
    return a


def read_file(path):
    """Checked contents of a model file: ``(meta, {key: array})``.

    Every failure is a :class:`ModelFileError` with a one-line reason; nothing in the file is
    executed (no pickle). The file is opened once, and what it asks for is bounded before
    anything is built (:func:`_read_file`)."""
    path = os.fspath(path)
    return _checked(path, _read_file, path)


def read_bytes(data, name="model file bytes"):
    """:func:`read_file` of a model file's contents (``bytes``), with every check of
    :func:`read_file`; ``name`` is how messages name it. What a Dask worker loads."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ModelFileError(f"{name}: expected the model file's bytes, got {type(data).__name__}")
    data = bytes(data)
    return _checked(name, lambda: _read_stream(_io.BytesIO(data), len(data)))


def file_bytes(path):
    """The bytes of the model file at ``path`` (a regular file), unchecked: :func:`read_bytes`
    checks them. A file that cannot be read is a one-line :class:`ModelFileError`."""
    path = os.fspath(path)

    def read():
        with _open(path) as f:
            return f.read()

    return _checked(path, read)


def _checked(path, fn, *args):
    """``fn(*args)``, every failure a one-line :class:`ModelFileError` naming ``path``."""
    try:
        return fn(*args)
    except ModelFileError as e:
        msg = str(e)
        raise ModelFileError(msg if msg.startswith(path + ": ") else f"{path}: {msg}") from None
    except MemoryError:
        raise ModelFileError(f"{path}: refused, the file asks for more memory than a model needs") from None
    except RecursionError:
        raise ModelFileError(f"{path}: unreadable metadata (nested too deeply)") from None
    except Exception as e:  # BadZipFile, EOFError, zlib.error, a bad .npy header, ...: never a traceback
        raise ModelFileError(f"{path}: damaged or truncated model file ({type(e).__name__}: "
                             f"{' '.join(str(e).split())})") from None


def _open(path):
    """The model file, opened once: a regular file (a FIFO would block, a device never ends)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ModelFileError(f"{path}: no such model file") from None
    except OSError as e:
        raise ModelFileError(f"{path}: cannot read ({e.strerror or e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ModelFileError(f"{path}: is a folder, not a model file")
    if not stat.S_ISREG(st.st_mode):
        raise ModelFileError(f"{path}: not a regular file (a pipe, FIFO or device); give a model file")
    try:
        return open(path, "rb")
    except OSError as e:
        raise ModelFileError(f"{path}: cannot read ({e.strerror or e})") from None


def _read_file(path):
    with _open(path) as f:
        return _read_stream(f, os.fstat(f.fileno()).st_size)


def _read_stream(f, size):
    """The checked contents of an open, seekable binary stream of ``size`` bytes."""
    head = f.read(64)
    f.seek(0)
    if not zipfile.is_zipfile(f):
        if head[:6] == b"\x93NUMPY" or head[:2] in (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05"):
            raise ModelFileError("not a tinykd model file (a bare NumPy array or a pickle; refused)")
        if head.startswith(b"PK"):
            raise ModelFileError("damaged or truncated model file (the zip directory is missing)")
        raise ModelFileError("not a tinykd model file (not an .npz archive)")
    f.seek(0)
    with zipfile.ZipFile(f) as zf:
        return _read_archive(zf, size)


def _read_archive(zf, size):
    """The bounds, in order, each before what it protects is read or built:

    1. the members: ``.npy`` files, each name once, at most 4 per student + 1; pickled
       object arrays refused from the ``.npy`` header alone (:func:`_member_headers`);
    2. what the arrays declare, with the projection tables scoring will build
       (:func:`budget`: 16 MiB + 32 × the file's size, and 1 GiB in all);
    3. the metadata: its size (1 MiB + a quarter of the file), its values
       (50,000 + the file's size / 16) and nesting (32 deep), before it is parsed; then its types
       (:mod:`tinykd.scoring.modelmeta`);
    4. each vocabulary: its count (100,000 tokens + a quarter of the file's size in all, aliases
       included) and its token length (:data:`tinykd.scoring.text.MAX_TOKEN_CHARS`), and each parameter
       buffer's size, against the config, from the headers (:func:`_check_students`);
    5. the weights, once read: finite and within ±:data:`tinykd.nn.network.MAX_ABS_WEIGHT`; the
       vocabularies, once read: text, each token once; the aliases: text, each once, none a vocabulary
       word, each id a word's (:func:`_read_students`, :func:`check_tokens`, :func:`check_aliases`).
    """
    declared, headers = _member_headers(zf)
    limit = budget(size)
    if declared > limit:
        raise ModelFileError(f"refused, the file asks for {declared / 2**20:.1f} MiB of arrays from "
                             f"{size / 2**10:.1f} KiB (a model file may ask for {limit / 2**20:.1f} MiB)")
    if "meta.json" not in headers:
        raise ModelFileError("not a tinykd model file (no meta.json)")
    meta = _read_meta(zf, headers["meta.json"], size)
    try:
        configs = check_meta(meta)
    except ValueError as e:
        raise ModelFileError(f"malformed metadata ({e})") from None
    want = {"meta.json"} | {f"{n}/{k}" for n in configs for k in ("params", "vocab", "aliases", "alias_ids")}
    extra = sorted(set(headers) - want)
    if extra:
        raise ModelFileError(f"not a tinykd model file (member {extra[0] + '.npy'!r})")
    tokens, tables = _check_students(meta, configs, headers)
    max_tokens = 100_000 + size // 4
    if tokens > max_tokens:
        raise ModelFileError(f"refused, the vocabularies hold {tokens:,} tokens, more than a file of "
                             f"{size / 2**10:.1f} KiB may ({max_tokens:,})")
    if declared + tables > limit:
        raise ModelFileError(f"refused, scoring would build {(declared + tables) / 2**20:.1f} MiB of arrays and "
                             f"tables from {size / 2**10:.1f} KiB (a model file may ask for {limit / 2**20:.1f} MiB)")
    return meta, _read_students(zf, configs, headers)


def _member_headers(zf):
    """Bound 1: ``(bytes the members declare, {key: (info, shape, dtype)})``, from the zip
    directory and each member's ``.npy`` header only."""
    infos = zf.infolist()
    if not infos:
        raise ModelFileError("not a tinykd model file (empty archive)")
    if len(infos) > 4 * MAX_STUDENTS + 1:
        raise ModelFileError(f"not a tinykd model file ({len(infos):,} members)")
    twice = sorted(n for n, k in Counter(i.filename for i in infos).items() if k > 1)
    if twice:
        raise ModelFileError(f"refused, the archive holds member {twice[0]!r} twice")
    declared, headers = 0, {}
    for info in infos:
        if not info.filename.endswith(".npy"):
            raise ModelFileError(f"not a tinykd model file (member {info.filename!r})")
        declared += info.file_size
        if declared > MAX_UNCOMPRESSED:
            raise ModelFileError(f"refused, the archive claims over {MAX_UNCOMPRESSED >> 20} MiB of data")
        with zf.open(info) as m:  # the .npy header alone: shape × itemsize must fit the member
            shape, dtype = _npy_header(m, info.filename)
        if dtype.hasobject:
            raise ModelFileError("refused, the file holds pickled objects (never loaded)")
        if int(np.prod(shape, dtype=np.float64)) * dtype.itemsize > info.file_size:
            raise ModelFileError(f"damaged model file ({info.filename!r} is shorter than its shape)")
        headers[info.filename[:-4]] = (info, shape, dtype)
    return declared, headers


def _check_students(meta, configs, headers):
    """Bound 4, from the headers: each student's vocabulary and parameter buffer against its
    config; returns ``(tokens in all vocabularies, bytes of the projection tables scoring builds)``."""
    tokens = tables = 0
    for name, cfg in configs.items():
        sm = meta["students"][name]
        missing = [k for k in ("params", "vocab") if f"{name}/{k}" not in headers]
        if missing:
            raise ModelFileError(f"student {name!r} is incomplete (missing '{name}/{missing[0]}')")
        _, v_shape, v_dtype = headers[f"{name}/vocab"]
        if v_dtype.kind != "U" or len(v_shape) != 1:
            raise ModelFileError(f"student {name!r} vocabulary is not a list of text")
        if v_dtype.itemsize > 4 * MAX_TOKEN_CHARS:
            raise ModelFileError(f"student {name!r} has a vocabulary token longer than {MAX_TOKEN_CHARS} characters")
        V = int(v_shape[0])
        tokens += V + _alias_count(name, headers)
        shapes = param_shapes(cfg, V, len(sm["classes"]))
        need = int(sum(np.prod(s, dtype=np.float64) for _, s in shapes))
        _, p_shape, p_dtype = headers[f"{name}/params"]
        if p_dtype != np.float32 or tuple(p_shape) != (need,):
            raise ModelFileError(f"student {name!r} has {tuple(p_shape)} {p_dtype} parameters, "
                                 f"its config needs ({need},) float32")
        tables += projection_table_bytes(cfg, V)
    return tokens, tables


def _read_students(zf, configs, headers):
    """Bound 5: ``{"<name>/params", "<name>/vocab": array}``, each buffer's weights checked once read."""
    arrays = {}
    for name in configs:
        params = _read_member(zf, headers[f"{name}/params"][0], "parameters")
        try:
            check_weights(params, f"student {name!r}")
        except ValueError as e:
            raise ModelFileError(str(e)) from None
        arrays[f"{name}/params"] = params
        arrays[f"{name}/vocab"] = _read_member(zf, headers[f"{name}/vocab"][0], "vocabulary")
        try:
            check_tokens(arrays[f"{name}/vocab"], f"student {name!r}")
            if f"{name}/aliases" in headers:
                for k, what in (("aliases", "aliases"), ("alias_ids", "alias ids")):
                    arrays[f"{name}/{k}"] = _read_member(zf, headers[f"{name}/{k}"][0], what)
                check_aliases(arrays[f"{name}/vocab"], arrays[f"{name}/aliases"], arrays[f"{name}/alias_ids"],
                              f"student {name!r}")
        except ValueError as e:
            raise ModelFileError(str(e)) from None
    return arrays


def _alias_count(name, headers):
    """Bound 4 for a student's aliases, from the headers: both members or neither, text and int32 of one
    length; returns that length (0: none)."""
    have = [k for k in ("aliases", "alias_ids") if f"{name}/{k}" in headers]
    if not have:
        return 0
    if len(have) == 1:
        raise ModelFileError(f"student {name!r} is incomplete ('{name}/{have[0]}' without its pair)")
    _, a_shape, a_dtype = headers[f"{name}/aliases"]
    _, i_shape, i_dtype = headers[f"{name}/alias_ids"]
    if a_dtype.kind != "U" or len(a_shape) != 1 or a_dtype.itemsize > 4 * MAX_TOKEN_CHARS:
        raise ModelFileError(f"student {name!r} aliases are not a list of words of at most {MAX_TOKEN_CHARS} "
                             "characters")
    if i_dtype != np.int32 or tuple(i_shape) != tuple(a_shape):
        raise ModelFileError(f"student {name!r} has {tuple(i_shape)} {i_dtype} alias ids for {a_shape[0]:,} aliases")
    return int(a_shape[0])


def check_aliases(tokens, aliases, ids, where):
    """A student's aliases: text, each word once and none a vocabulary word, each id a vocabulary word's
    (not a special id), so that every reader maps a word to the same one id."""
    check_tokens(aliases, f"{where} aliases")
    first = len(SPECIAL_TOKENS)
    bad = np.flatnonzero((ids < first) | (ids >= len(tokens)))
    if len(bad):
        raise ValueError(f"{where} alias {str(aliases[bad[0]])!r} reads as id {int(ids[bad[0]])}, not a vocabulary "
                         f"word's ({first}..{len(tokens) - 1})")
    both = np.intersect1d(tokens, aliases)
    if len(both):
        raise ValueError(f"{where} has {str(both[0])!r} both as a vocabulary word and as an alias")


def check_tokens(tokens, where):
    """A vocabulary array (``<U``): every code point a character (no lone surrogate, none beyond
    U+10FFFF) and each token once, so that scoring, the ONNX index and the web page map a word to one id."""
    tokens = np.ascontiguousarray(tokens)
    width = tokens.dtype.itemsize // 4
    cps = tokens.view(np.dtype(np.uint32).newbyteorder(tokens.dtype.byteorder)) if width else np.zeros(0, np.uint32)
    bad = np.flatnonzero(((cps >= 0xD800) & (cps <= 0xDFFF)) | (cps > 0x10FFFF))  # the view's UTF-32 code units
    if len(bad):
        k, cp = int(bad[0]) // width, int(cps[bad[0]])
        what = f"a code point beyond U+10FFFF (U+{cp:X})" if cp > 0x10FFFF else f"U+{cp:04X}, a lone surrogate"
        raise ValueError(f"{where} token {k} holds {what}: not text")
    uniq, counts = np.unique(tokens, return_counts=True)
    if (counts > 1).any():
        t = uniq[np.flatnonzero(counts > 1)[0]]
        ids = np.flatnonzero(tokens == t)[:2]
        raise ValueError(f"{where} has the vocabulary token {str(t)!r} twice (ids {ids[0]} and {ids[1]})")


def budget(size):
    """Bytes of arrays and scoring tables a model file of ``size`` bytes may ask for: 16 MiB + 32 × its
    size (and at most 1 GiB). A trained student's weights hardly compress, so a real file asks
    for under 6 × its size (any preset, any vocabulary); a crafted one of a few kilobytes can ask
    for no more than 16 MiB."""
    return min(MAX_UNCOMPRESSED, (16 << 20) + 32 * int(size))


def projection_table_bytes(cfg, vocab_size):
    """Bytes of the input-projection table a :class:`~tinykd.scoring.scorer.Scorer` builds (float32
    ``(directions, V, 4H)``)."""
    return (2 if cfg["rnn"] == "bilstm" else 1) * int(vocab_size) * 4 * int(cfg["units"]) * 4


def _read_meta(zf, header, size):
    info, shape, dtype = header
    if dtype != np.uint8 or len(shape) != 1:
        raise ModelFileError("not a tinykd model file (meta.json is not UTF-8 bytes)")
    max_bytes = (1 << 20) + size // 4
    if int(shape[0]) > max_bytes:
        raise ModelFileError(f"refused, the metadata is {int(shape[0]) / 2**20:.1f} MiB, more than a file of "
                             f"{size / 2**10:.1f} KiB holds ({max_bytes / 2**20:.1f} MiB)")
    raw = _read_member(zf, info, "metadata").tobytes()
    try:
        check_json_shape(raw, 50_000 + size // 16)
        meta = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise ModelFileError(f"unreadable metadata ({' '.join(str(e).split())})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        fmt = meta.get("format") if isinstance(meta, dict) else None
        raise ModelFileError(f"not a tinykd model file (format {fmt!r})")
    version = meta.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ModelFileError(f"not a tinykd model file (format version {version!r})")
    if version > VERSION:
        raise ModelFileError(f"model format version {version!r} is newer than this tinykd reads "
                             f"({VERSION}); upgrade tinykd")
    return meta
