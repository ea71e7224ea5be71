"""Atomic writing: a file is either left as it was or replaced by the complete new one.

:class:`AtomicFile` writes to a temporary file in the target folder and renames it into
place on a clean exit (``os.replace``); any exception (a full disk, Ctrl-C) removes the
temporary file and propagates. Every writer of tinykd (model files, scored CSVs, soft
labels, augmented copies) goes through it. What it refuses and keeps:

* **Only regular files are replaced.** An output path that is a symbolic link, a device
  (``/dev/null``), a FIFO or a socket is refused (:class:`OutputPathError`): renaming onto it
  would replace the link or the device itself. Give the real file's path instead.
* **Permissions.** A new file gets the usual mode (0666 less the umask: the temporary file
  is created with mode 0666 and the kernel applies the umask, which is never changed). An
  existing file keeps its mode (and, where allowed, its owner and group); a file the user
  cannot write, or one with no write permission at all (read-only on purpose, even for
  root), is refused.
* **Signals.** While a temporary file is open, SIGTERM and SIGHUP (when their handlers are
  the default ones, in the main thread) raise :class:`Terminated`, a ``KeyboardInterrupt``,
  so the temporary file is removed as on Ctrl-C; the command line then exits with 128 + the
  signal number.
"""
from __future__ import annotations

import os
import secrets
import signal
import stat
import threading


class OutputPathError(ValueError):
    """An output path that must not be written (a link, a device, a read-only file, ...)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived while a file was being written (``signum`` says which)."""

    def __init__(self, signum):
        self.signum = int(signum)
        super().__init__(f"stopped by {signal.Signals(self.signum).name}")


_SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s is not None)
_KINDS = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"),
          (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))


def _raise_terminated(signum, frame):
    raise Terminated(signum)


def _catch_signals():
    """Make SIGTERM / SIGHUP raise :class:`Terminated`; returns what to restore."""
    if threading.current_thread() is not threading.main_thread():
        return []
    old = []
    for s in _SIGNALS:
        try:
            if signal.getsignal(s) == signal.SIG_DFL:
                signal.signal(s, _raise_terminated)
                old.append(s)
        except (ValueError, OSError):  # not allowed here (an embedded interpreter)
            pass
    return old


def _restore_signals(sigs):
    for s in sigs:
        try:
            if signal.getsignal(s) is _raise_terminated:
                signal.signal(s, signal.SIG_DFL)
        except (ValueError, OSError):
            pass


class signals_raise:
    """``with signals_raise(): …``: SIGTERM / SIGHUP raise :class:`Terminated` in the block, as while a file
    is written, for a writer of many files (a folder of Dask parts) that must clean up as on Ctrl-C."""

    def __enter__(self):
        self._signals = _catch_signals()
        return self

    def __exit__(self, *exc):
        _restore_signals(self._signals)
        return False


def existing_target(path):
    """``os.lstat`` of an output path that may be replaced (None: a new path); raises
    :class:`OutputPathError` for anything but a regular file the user may write."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise OutputPathError(f"cannot write {path}: {e.strerror or e}") from None
    for test, kind in _KINDS:
        if test(st.st_mode):
            if kind == "a symbolic link":
                hint = f" (to {os.readlink(path)}); give the file's own path, or remove the link"
            elif kind == "a folder":
                hint = "; give a file name"
            else:
                hint = "; only a regular file is replaced, so give a file name"
            raise OutputPathError(f"cannot write {path}: it is {kind}{hint}")
    if not stat.S_ISREG(st.st_mode):
        raise OutputPathError(f"cannot write {path}: it is not a regular file")
    if not st.st_mode & 0o222 or not os.access(path, os.W_OK):
        raise OutputPathError(f"cannot write {path}: the file is read-only; make it writable "
                              "(chmod u+w) or choose another name")
    return st


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
        if os.path.isdir(self.path) and not os.path.islink(self.path):
            raise IsADirectoryError(21, "is a folder; give a file name", self.path)
        old = existing_target(self.path)
        self._tmp = None
        self._signals = _catch_signals()
        try:
            fd = self._create(folder, os.path.basename(self.path))
            if old is not None and hasattr(os, "fchown"):  # keep the mode (and, where allowed, the owner)
                os.fchmod(fd, stat.S_IMODE(old.st_mode) & 0o777)
                st = os.fstat(fd)
                if (st.st_uid, st.st_gid) != (old.st_uid, old.st_gid):
                    try:
                        os.fchown(fd, old.st_uid, old.st_gid)
                    except OSError:
                        pass
            self.file = os.fdopen(fd, mode, **open_kw)
        except BaseException:
            self.abort()
            raise

    def _create(self, folder, name):
        """A new temporary file beside the target, mode 0666 less the umask (set by the kernel)."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        while True:
            tmp = os.path.join(folder, f".{name[:40]}.{secrets.token_hex(6)}.part")
            try:
                fd = os.open(tmp, flags, 0o666)
            except FileExistsError:
                continue
            self._tmp = tmp
            return fd

    def commit(self):
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        existing_target(self.path)  # still a regular file (or still absent) at the last moment
        os.replace(self._tmp, self.path)
        self._tmp = None
        _restore_signals(self._signals)

    def abort(self):
        try:
            if self._tmp is None:
                return
            f = getattr(self, "file", None)
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass
            try:
                os.unlink(self._tmp)
            except OSError:
                pass
            self._tmp = None
        finally:
            _restore_signals(self._signals)

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
    existing_target(out)
    if not os.access(folder, os.W_OK):
        raise ValueError(f"cannot write {out}: no permission to write in {folder}")
    for p in inputs:
        if p and os.path.exists(p) and os.path.exists(out_abs) and os.path.samefile(p, out_abs):
            raise ValueError(f"--out {out} is an input file; choose another name")
