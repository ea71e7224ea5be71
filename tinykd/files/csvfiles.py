"""CSV files in and out, with the standard library's :mod:`csv` only.

Reading is forgiving where the meaning is clear and loud where it is not:

* **Encoding.** UTF-8 (a byte-order mark is dropped). A UTF-16 file (Excel's
  "Unicode text") is recognised by its BOM. A file that is not valid UTF-8 is
  read as Windows-1252 (the usual Excel export on Windows), or as Latin-1 when
  it holds bytes Windows-1252 leaves undefined; :attr:`CsvReader.note` says so
  and where the first non-UTF-8 byte is, and the command line prints it.
* **Dialect.** Quoted fields (commas and line breaks inside quotes), CRLF or LF
  line ends; a header that only splits on ``;`` or a tab selects that delimiter; empty
  columns at the end of the header (a spreadsheet's) are dropped.
* **Pipes.** ``/dev/stdin``, ``<(…)`` or a FIFO are copied to a temporary file in blocks
  first (memory stays flat), then read like a file.
* **Selection.** ``where=["item=1"]`` keeps the rows whose columns hold those values (``--where``).
* **Errors** (:class:`DataFileError`, one line each): missing file, binary or
  spreadsheet file, empty file, a header only, duplicate column names, a missing
  column (naming the columns the file has), a row with a different number of
  fields than the header (with its line number), a quote that is never closed or
  text after a closing quote (naming the line where the row starts: quoting is
  read strictly, so a stray quote never swallows the rows after it).
* **Messages** quote the user's data through :func:`shown` and :func:`shown_list`: a few
  values, each cut short, so an error stays one short line whatever the file holds.

Writing goes to a temporary file in the target folder that is renamed into
place only when complete (:class:`AtomicCsvWriter`).
"""
from __future__ import annotations

import codecs
import csv
import hashlib
import io
import math
import os
import re
import shutil
import stat
import sys
import tempfile

from tinykd.files.atomic import AtomicFile

# a 100,000-character answer is a real row: the process-wide limit is raised, never lowered
csv.field_size_limit(max(csv.field_size_limit(), min(sys.maxsize, 2**31 - 1)))

MISSING_LABELS = frozenset({"", "nan", "na", "n/a", "none", "null"})
_BLOCK = 1 << 20
#: what an error message quotes of the user's data: at most this many values, each cut to this many characters
SHOWN_VALUES, SHOWN_CHARS = 8, 60


class DataFileError(ValueError):
    """A data file that cannot be used as it is (the message says why, and where)."""


# ----------------------------------------------------------------------------- messages
def shown(value, *, quote=True, limit=SHOWN_CHARS):
    """One value of the user's data as an error message quotes it: its ``repr`` (``quote=False``:
    its text), a longer one cut to ``limit`` characters and marked ``…`` with its length — every
    message that quotes a file's header, a cell, an id or a label goes through this (or
    :func:`shown_list`), so it stays one short line."""
    if hasattr(value, "dtype") and getattr(value, "shape", None) == ():
        value = value.item()  # a NumPy scalar reads as its value (1, '1'), not np.int64(1)
    text = str(value)
    if len(text) <= limit:
        return repr(value) if quote else text
    cut = text[:limit - 1] + "…"
    return f"{cut!r} ({len(text):,} characters)" if quote else f"{cut} ({len(text):,} characters)"


def shown_list(values, *, quote=True, n=SHOWN_VALUES, limit=SHOWN_CHARS):
    """Up to ``n`` values, each :func:`shown`, joined by ``", "``; then ``… (<count> in all)`` if there are more."""
    values = list(values)
    more = f", … ({len(values):,} in all)" if len(values) > n else ""
    return ", ".join(shown(v, quote=quote, limit=limit) for v in values[:n]) + more


# ----------------------------------------------------------------------------- encoding
_CP1252_UNDEFINED = (b"\x81", b"\x8d", b"\x8f", b"\x90", b"\x9d")


def _open_bytes(path):
    """A seekable binary file of ``path``: the file itself, or for a pipe, a FIFO or a terminal
    (``/dev/stdin``, ``<(…)``) a temporary copy on disk, made in 1 MiB blocks (removed on close)."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise DataFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataFileError(f"{path}: is a folder, not a CSV file") from None
    except OSError as e:
        raise DataFileError(f"{path}: cannot open ({e.strerror or e})") from None
    try:
        if stat.S_ISREG(os.fstat(f.fileno()).st_mode) and f.seekable():
            return f
        tmp = tempfile.TemporaryFile()
        try:
            shutil.copyfileobj(f, tmp, _BLOCK)
            tmp.seek(0)
        except BaseException:
            tmp.close()
            raise
        f.close()
        return tmp
    except OSError as e:
        f.close()
        raise DataFileError(f"{path}: cannot read ({e.strerror or e})") from None
    except BaseException:
        f.close()
        raise


def sniff_encoding(path):
    """``(encoding, note)`` for a text file: ``note`` is ``None`` for clean UTF-8, else a
    one-line explanation of the fallback. Reads the file in 1 MiB blocks (memory stays flat
    for any size)."""
    path = os.fspath(path)
    with _open_bytes(path) as f:
        return _sniff(f, path)


def _sniff(f, path):
    """:func:`sniff_encoding` of an open seekable binary file (read from its start, left anywhere)."""
    f.seek(0)
    head = f.read(4)
    if head[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        return "utf-16", f"{path}: read as UTF-16 (byte-order mark)"
    if head[:4] == b"PK\x03\x04":
        raise DataFileError(f"{path}: this is a zip or spreadsheet (.xlsx) file, not CSV; "
                            "save it as 'CSV UTF-8' first")
    f.seek(0)
    dec = codecs.getincrementaldecoder("utf-8-sig")()
    line = 1
    while True:
        block = f.read(_BLOCK)
        if b"\x00" in block:
            raise DataFileError(f"{path}: holds NUL bytes, so it is a binary file, not CSV text")
        try:
            dec.decode(block, final=not block)
        except UnicodeDecodeError as e:  # e.object: the bytes the decoder held + this block
            line += e.object[:e.start].count(b"\n")
            byte = e.object[e.start]
            break
        if not block:
            return "utf-8-sig", None
        line += block.count(b"\n")
    f.seek(0)  # Windows-1252, unless the file holds a byte it leaves undefined: one pass, in blocks
    enc, name = "cp1252", "Windows-1252"
    for block in iter(lambda: f.read(_BLOCK), b""):
        if any(u in block for u in _CP1252_UNDEFINED):
            enc, name = "latin-1", "Latin-1"
            break
    return enc, (f"{path}: not valid UTF-8 (byte 0x{byte:02x} at line {line}); "
                 f"read as {name} instead — check accented characters in the output")


# ----------------------------------------------------------------------------- reading
class CsvReader:
    """A CSV file with a header row, read lazily.

    ``required`` columns must exist (a :class:`DataFileError` names the missing
    ones and lists the file's columns); each may be a ``(name, option)`` pair,
    where ``option`` (e.g. ``"--text-col"``) is named in the message.
    Use as a context manager; :meth:`rows` yields ``(line_number, fields)``.
    """

    def __init__(self, path, required=(), *, encoding=None, where=None):
        self.path = os.fspath(path)
        self.where = parse_where(where)
        raw = _open_bytes(self.path)  # a pipe is copied to a temporary file: read once, then seekable
        try:
            if encoding is None:
                self.encoding, self.note = _sniff(raw, self.path)
            else:
                self.encoding, self.note = encoding, None
            raw.seek(0)
            if self.encoding in ("cp1252", "latin-1") and raw.read(3) != codecs.BOM_UTF8:
                raw.seek(0)  # (a UTF-8 byte-order mark before Windows-1252 text is dropped too)
            self._f = io.TextIOWrapper(raw, encoding=self.encoding, newline="")
        except BaseException:
            raw.close()
            raise
        try:
            self._init(required)
        except BaseException:
            self._f.close()
            raise

    def _init(self, required):
        first = self._f.readline()
        if not first.strip():
            rest = self._f.read(1)
            raise DataFileError(f"{self.path}: empty file (no header row)" if not rest and not first
                                else f"{self.path}: the first line is blank; it must be the header row")
        delimiter = ","
        if "," not in first:
            for d in (";", "\t"):
                if d in first:
                    delimiter = d
                    break
        self.delimiter = delimiter
        self._eof = False
        # strict: a quote never closed, or text after a closing quote, is an error, not rows swallowed into one cell
        self._reader = csv.reader(self._lines(first), delimiter=delimiter, strict=True)
        self._records = self._checked_records()
        header = next(self._records, None)
        if header is None:
            raise DataFileError(f"{self.path}: unreadable header row")
        self.header = [h.strip().lstrip("\ufeff") for h in header]
        while len(self.header) > 1 and not self.header[-1]:  # a spreadsheet's empty columns at the end
            self.header.pop()
        dups = duplicated(self.header)
        if dups:
            raise DataFileError(f"{self.path}: duplicate column name(s) {shown_list(dups)} in the header")
        self.index = {h: i for i, h in enumerate(self.header)}
        for col in required:
            name, option = col if isinstance(col, tuple) else (col, None)
            self.require(name, option)
        self._keep = [(self.require(c, "--where"), v) for c, v in self.where]

    def _lines(self, first):
        """The lines the csv reader parses (the header line first); notes when the file runs out."""
        yield first
        yield from self._f
        self._eof = True

    def _checked_records(self):
        """The csv reader's records; a csv.Error is one line naming the line where its row starts."""
        r = self._reader
        while True:
            start = r.line_num + 1
            try:
                fields = next(r)
            except StopIteration:
                return
            except csv.Error as e:
                raise DataFileError(quoting_error(self.path, start, r.line_num, self._eof, e)) from None
            yield fields

    def require(self, name, option=None):
        """The position of column ``name``, or a :class:`DataFileError` that lists the file's columns."""
        if name not in self.index:
            raise missing_column(self.path, name, option, self.header)
        return self.index[name]

    def has(self, name):
        return name is not None and name in self.index

    def rows(self):
        """Yield ``(line_number, fields)`` for each data row (that ``where`` keeps); blank lines are skipped."""
        n = len(self.header)
        try:
            for fields in self._records:
                if not fields or (len(fields) == 1 and not fields[0].strip() and n > 1):
                    continue
                if len(fields) != n:
                    if len(fields) > n and not any(f.strip() for f in fields[n:]):
                        fields = fields[:n]  # trailing empty cells from a spreadsheet
                    else:
                        raise DataFileError(
                            f"{self.path}: line {self._reader.line_num} has {len(fields)} fields, the header has "
                            f"{n} (an unquoted '{self.delimiter}' or line break in a field?)")
                if all(fields[k].strip() == v for k, v in self._keep):
                    yield self._reader.line_num, fields
        except UnicodeDecodeError as e:
            raise DataFileError(f"{self.path}: cannot decode as {self.encoding} ({e.reason})") from None

    def chunks(self, size=5000):
        """Yield lists of up to ``size`` rows (``fields`` only), for streaming."""
        chunk = []
        for _, fields in self.rows():
            chunk.append(fields)
            if len(chunk) >= size:
                yield chunk
                chunk = []
        if chunk:
            yield chunk

    def close(self):
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def quoting_error(path, start, line, at_end, error):
    """The one-line message of a csv.Error (``error``) in the row that starts at line ``start``, the
    reader at line ``line`` (``at_end``: the file ran out inside the row, i.e. a quote never closed)."""
    fix = 'close the quote, and write a quote inside a quoted field as two ("")'
    if at_end:
        return (f"{path}: line {start}: a quoted field opens in this row and is never closed (it runs to the end "
                f"of the file, line {line}); {fix}")
    if "expected after" in str(error):  # strict mode's "',' expected after '\"'"
        if line > start:
            return (f"{path}: line {start}: a quoted field opens in this row and runs on to line {line}, where there "
                    f"is text after its closing quote; {fix}")
        return f"{path}: line {line}: a quoted field has text after its closing quote; {fix}"
    return f"{path}: line {line}: {shown(str(error), quote=False)}"


def missing_column(path, name, option, header):
    """The :class:`DataFileError` of a column ``name`` the file lacks (``option`` sets it), naming its columns."""
    hint = f" (set {option})" if option else ""
    return DataFileError(f"{path}: no column {shown(name)}{hint}; the file has columns: "
                         f"{shown_list(header, quote=False) if any(header) else '(none)'}")


class Table:
    """A whole CSV file in memory: ``header``, ``rows`` (lists of strings), ``lines`` (line numbers)."""

    def __init__(self, path, header, rows, lines, note=None, index=None):
        self.path, self.header, self.rows, self.lines, self.note = path, header, rows, lines, note
        self.index = index or {h: i for i, h in enumerate(header)}

    def __len__(self):
        return len(self.rows)

    def has(self, name):
        return name is not None and name in self.index

    def require(self, name, option=None):
        if name not in self.index:
            raise missing_column(self.path, name, option, self.header)
        return self.index[name]

    def column(self, name, option=None):
        k = self.require(name, option)
        return [r[k] for r in self.rows]


def parse_where(where):
    """``["item=1", "grade=5"]`` → ``[("item", "1"), ("grade", "5")]`` (a row is kept when every
    column equals its value, both stripped); a ``(col, value)`` pair is taken as it is."""
    out = []
    for w in where or ():
        if isinstance(w, tuple):
            out.append((str(w[0]).strip(), str(w[1]).strip()))
            continue
        if "=" not in str(w):
            raise DataFileError(f"--where expects COL=VALUE, got {shown(w)}")
        k, v = str(w).split("=", 1)
        out.append((k.strip(), v.strip()))
    return out


def read_table(path, required=(), *, allow_empty=False, where=None):
    """Read a whole CSV (training and evaluation files); refuses a file with a header only, or with
    no row left after ``where`` (``["COL=VALUE", …]``: keep the rows whose columns hold these values)."""
    with CsvReader(path, required, where=where) as r:
        rows, lines = [], []
        for line, fields in r.rows():
            rows.append(fields)
            lines.append(line)
        if not rows and not allow_empty:
            if r.where:
                raise DataFileError(f"{r.path}: no rows with " + " and ".join(
                    f"{shown(c, quote=False)} == {shown(v)}" for c, v in r.where[:SHOWN_VALUES]) + " (--where)")
            raise DataFileError(f"{r.path}: has a header row but no data rows")
        return Table(r.path, r.header, rows, lines, r.note, r.index)


# ----------------------------------------------------------------------------- labels
def parse_label(s):
    """A label cell → ``None`` (missing: empty, NaN, NA, …), a number, or the stripped text."""
    if s is None:
        return None
    if isinstance(s, float):
        return None if math.isnan(s) else s
    s = str(s).strip()
    if s.lower() in MISSING_LABELS:
        return None
    return s


#: a number as a spreadsheet writes one: ASCII digits, an optional sign, point and exponent —
#: not ``1_0`` (Python's float() reads it as 10), ``٣`` or ``0x10``
NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)


def _number(v):
    """``float(v)`` for a number or a cell spelling one (:data:`NUMBER`); else ValueError."""
    if isinstance(v, str) and not NUMBER.fullmatch(v.strip()):
        raise ValueError(v)
    return float(v)


def normalize_labels(cells):
    """Normalise a label column: missing → ``None``; if every other cell is a finite
    number (:data:`NUMBER`), numbers (``"1"``, ``"1.0"``, ``"01"``, ``" 1 "`` are all ``1``;
    integral values become ``int``); otherwise the stripped strings, so ``"correct"`` stays
    ``"correct"`` and ``"1_0"`` stays ``"1_0"``.

    Returns ``(labels, kind)`` with ``kind`` in ``"int" | "float" | "str" | "none"``.
    """
    vals = [parse_label(c) for c in cells]
    present = [v for v in vals if v is not None]
    if not present:
        return vals, "none"
    nums = []
    for v in present:
        try:
            x = _number(v)
        except (TypeError, ValueError):
            nums = None
            break
        if not math.isfinite(x):
            nums = None
            break
        nums.append(x)
    if nums is None:
        return [None if v is None else str(v) for v in vals], "str"
    if all(x == int(x) for x in nums):
        return [None if v is None else int(_number(v)) for v in vals], "int"
    return [None if v is None else _number(v) for v in vals], "float"


def coerce_labels(cells, classes):
    """Labels from a file, matched to a model's ``classes`` (as their string forms):
    ``"1.0"`` matches class ``1``. Returns labels in the classes' own types where
    they match, else the normalised value (an unseen label)."""
    labels, _ = normalize_labels(cells)
    by_key = {label_key(c): c for c in classes}
    return [None if v is None else by_key.get(label_key(v), v) for v in labels]


def file_sha256(path):
    """The SHA-256 of a file's bytes (hex), read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def duplicated(values):
    """The values that occur more than once, each once, in the order of their first repeat."""
    seen, dups = set(), {}
    for v in values:
        if v in seen:
            dups.setdefault(v, None)
        seen.add(v)
    return list(dups)


def label_sort_key(v):
    """Sort key of normalised labels: numbers numerically, then text."""
    return (isinstance(v, str), v)


def label_key(v):
    """A canonical string for comparing labels across files and models."""
    if isinstance(v, float) and v == int(v):
        v = int(v)
    return str(v)


def class_keys(names):
    """The column names of a set of class labels (``p_<key>``): when every label is a number in
    some spelling (``1``, ``1.0``, ``01``), its :func:`label_key` (``1``), as ``tinykd train``
    reads a numeric label column; otherwise the stripped labels as they are."""
    labels, kind = normalize_labels(names)
    if kind in ("int", "float") and all(v is not None for v in labels):
        return [label_key(v) for v in labels]
    return [str(n).strip() for n in names]


def check_classes(classes, what="classes"):
    """The :func:`class_keys` of a model's class labels, refusing labels that are one score spelt two
    ways (``1`` and ``"1"``, ``"1"`` and ``"1.0"``, ``"a"`` and ``" a"``): their ``p_<label>``
    columns would collide in a scored file, and a teacher file could not tell them apart."""
    classes = list(classes)
    keys = class_keys(classes)
    twice = duplicated(keys)
    if twice:
        same = [c for c, k in zip(classes, keys) if k == twice[0]]
        raise ValueError(f"{what} {shown_list(same)} are one score spelt {len(same)} ways (each is the column "
                         f"p_{shown(twice[0], quote=False)}); give each score one spelling")
    return keys


# ----------------------------------------------------------------------------- writing
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(cell):
    """A cell tinykd writes from a label, safe to open in a spreadsheet (OWASP, "CSV injection"):
    text starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading ``'``
    so that it is not run as a formula; a plain number (``-1``, ``+0.5``) is left as it is."""
    s = str(cell)
    if s.startswith(_FORMULA_START) and not NUMBER.fullmatch(s):
        return "'" + s
    return s



class AtomicCsvWriter:
    """Write CSV rows to a temporary file beside ``path``; rename it into place on a clean
    exit, delete it on an exception, so ``path`` is either the old file or the whole new one
    (:class:`tinykd.files.atomic.AtomicFile`)."""

    def __init__(self, path, header, *, encoding="utf-8"):
        self.path = os.fspath(path)
        try:
            self._file = AtomicFile(self.path, "w", encoding=encoding, newline="")
        except FileNotFoundError:
            folder = os.path.dirname(os.path.abspath(self.path))
            raise DataFileError(f"{self.path}: the folder {folder} does not exist") from None
        except IsADirectoryError:
            raise DataFileError(f"{self.path}: is a folder; give a file name for the output") from None
        self._w = csv.writer(self._file.file, lineterminator="\n")
        self._w.writerow(header)

    def writerow(self, row):
        self._w.writerow(row)

    def writerows(self, rows):
        for r in rows:
            self.writerow(r)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        return self._file.__exit__(exc_type, exc, tb)
