"""Atomic writing: a file is either left as it was or replaced by the complete new one.

:class:`AtomicFile` writes to a temporary file in the target folder and renames it into
place on a clean exit (``os.replace``); any exception (a full disk, Ctrl-C) removes the
temporary file and propagates. The new file gets the usual permissions (0666 less the
umask). Every writer of tinykd (model files, scored CSVs, soft labels, augmented copies)
goes through it.
"""
from __future__ import annotations

import os
import tempfile


def _umask_mode():
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


class AtomicFile:
    """``with AtomicFile(path, "w", encoding=..., newline="") as f: f.write(...)``.

    ``mode`` is ``"w"`` (text) or ``"wb"`` (bytes). On a clean exit the data is flushed,
    fsynced and renamed onto ``path``; on an exception the temporary file is deleted."""

    def __init__(self, path, mode="wb", **open_kw):
        if mode not in ("w", "wb"):
            raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
        self.path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(folder):
            raise FileNotFoundError(2, f"the folder {folder} does not exist", self.path)
        if os.path.isdir(self.path):
            raise IsADirectoryError(21, "is a folder; give a file name", self.path)
        fd, self._tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=folder)
        try:
            os.chmod(self._tmp, _umask_mode())
        except OSError:
            pass
        self.file = os.fdopen(fd, mode, **open_kw)

    def commit(self):
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        os.replace(self._tmp, self.path)
        self._tmp = None

    def abort(self):
        if self._tmp is None:
            return
        try:
            self.file.close()
        except OSError:
            pass
        try:
            os.unlink(self._tmp)
        except OSError:
            pass
        self._tmp = None

    def __enter__(self):
        return self.file

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            try:
                self.commit()
            except BaseException:
                self.abort()
                raise
        else:
            self.abort()
        return False


def atomic_write_bytes(path, data: bytes):
    """Write ``data`` to ``path`` atomically (see :class:`AtomicFile`)."""
    with AtomicFile(path, "wb") as f:
        f.write(data)


def check_output_path(out, inputs=()):
    """Refuse an output path that cannot be written, or that is one of ``inputs``, before any
    work is done (one-line ``ValueError``)."""
    out_abs = os.path.abspath(out)
    folder = os.path.dirname(out_abs)
    if not os.path.isdir(folder):
        raise ValueError(f"cannot write {out}: the folder {folder} does not exist")
    if os.path.isdir(out_abs):
        raise ValueError(f"cannot write {out}: it is a folder; give a file name")
    if not os.access(folder, os.W_OK):
        raise ValueError(f"cannot write {out}: no permission to write in {folder}")
    for p in inputs:
        if p and os.path.exists(p) and os.path.exists(out_abs) and os.path.samefile(p, out_abs):
            raise ValueError(f"--out {out} is an input file; choose another name")
