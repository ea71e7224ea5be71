"""The work folder of ``tinykd distill``: one folder per finished stage, reused by a rerun.

A stage writes its files into ``<work>/<stage>-<key>/`` and its result (a JSON-ready dict) into
``done.json`` there, last and atomically: a folder without it is a stage that stopped half-way (a
crash, Ctrl-C), removed and run again. The key hashes everything the stage's output depends on, so a
changed option makes a new folder and leaves the old one for a rerun with the old options.

Each stage is a plain function ``function(folder, *args) -> dict`` run by :meth:`StageCache.run`; the
key functions below say what each stage's key hashes. They hash exactly what earlier releases hashed,
in the same order, so work folders made before stay valid.

The marker records the SHA-256 of every file of its stage (:func:`stage_files`): a stage is reused
only when its files are those it wrote — a changed, missing or foreign file, or a marker that cannot be
read, means the stage runs again, with a note. A marker of an earlier release (no hashes) is trusted
once: the hashes of the files as they are then are recorded, and checked from then on. Paths in a
marker are relative to its stage's folder, so a work folder can be moved or copied.

One run at a time uses a work folder: :meth:`StageCache.lock` (``fcntl.flock`` on ``<work>/lock``)
refuses a second run while the first holds it.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import stat
import time

from tinykd.distill.job import FIDELITY_RULE, LOSS_RULE
from tinykd.errors import OptionError
from tinykd.files.atomic import atomic_write_bytes
from tinykd.files.csvfiles import file_sha256

#: the file whose presence marks a finished stage (its result, with the seconds it took)
MARKER = "done.json"
#: the marker's record of its stage's files: ``{path relative to the stage's folder: SHA-256}``
FILES = "files_sha256"
#: a marker bigger than this is not one (a stage's result is a few KB)
MARKER_MAX = 1 << 24
#: the lock file of a work folder, held by the run that uses it
LOCK = "lock"


def stage_key(*parts):
    """16 hex digits of the SHA-256 of ``parts`` as JSON (keys sorted, other objects as ``str``)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:16]


class StageCache:
    """The stages of one run in the work folder ``root``: which ran (``ran``, with their ``seconds``
    per stage) and which were found finished (``cached``), as ``"stage:what"`` strings; ``log``
    takes a progress line."""

    def __init__(self, root, log):
        self.root, self.log = os.path.abspath(root), log
        self.seconds, self.ran, self.cached = {}, [], []
        if os.path.lexists(self.root) and not os.path.isdir(self.root):
            kind = "is a file" if os.path.isfile(self.root) else "exists and is"
            raise OptionError("work", f"{{opt}} {self.root} {kind}, not a folder; give a folder for the stages")
        try:
            os.makedirs(self.root, exist_ok=True)
        except OSError as e:
            raise OptionError("work", f"{{opt}} {self.root}: cannot make the folder ({e.strerror or e})") from None

    @contextlib.contextmanager
    def lock(self):
        """Hold the work folder's lock for a run (``fcntl.flock`` on ``<root>/lock``, which records this
        process's id): while it is held, a second run on the folder is refused (an OptionError naming
        it). The lock goes when the block ends or the process dies; without fcntl (Windows), none."""
        try:
            import fcntl
        except ImportError:
            yield self
            return
        with open(os.path.join(self.root, LOCK), "a+", encoding="utf-8") as f:  # (a+: another's id kept)
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                f.seek(0)
                pid = f.read(20).strip()
                raise OptionError("work", f"{{opt}} {self.root} is in use by another tinykd distill run"
                                  + (f" (process {pid})" if pid.isdigit() else "")
                                  + "; wait for it to end, or give another {opt}") from None
            except OSError as e:  # a file system without locks: go on, and say so
                self.log(f"note: cannot lock {self.root} ({e.strerror or e}); run one distill at a time there")
            else:
                f.truncate(0)
                f.write(str(os.getpid()))
                f.flush()
            yield self

    def folder(self, stage, key):
        """Where the stage ``stage`` of key ``key`` keeps its files."""
        return os.path.join(self.root, f"{stage}-{key}")

    def run(self, stage, key, what, function, *args):
        """``function(folder, *args)``'s result, from ``done.json`` when that stage finished before
        and its files check out (``what`` names it in the log), else computed in a fresh folder and
        recorded there with its ``seconds`` and its files' hashes."""
        folder = self.folder(stage, key)
        result = self._finished(folder, f"[{stage}] {what}")
        if result is not None:
            self.cached.append(f"{stage}:{what}")
            self.log(f"[{stage}] {what}: done before (cached in {folder})")
            return result
        if os.path.isdir(folder):  # a stage that stopped half-way: its files cannot be trusted
            shutil.rmtree(folder)
        os.makedirs(folder)
        t0 = time.time()
        self.log(f"[{stage}] {what} …")
        result = {**function(folder, *args), "seconds": round(time.time() - t0, 1)}
        _write_marker(folder, result)
        self.seconds[stage] = self.seconds.get(stage, 0.0) + result["seconds"]
        self.ran.append(f"{stage}:{what}")
        self.log(f"[{stage}] {what}: {result['seconds']:.1f} s")
        return result

    def result(self, stage, key):
        """The result of stage ``stage`` of key ``key`` when it finished and its files check out; else None
        (nothing said, nothing removed)."""
        try:
            result, files, now = _marker_and_files(self.folder(stage, key))
        except (_NotFinished, OSError):
            return None
        return result if files is None or files == now else None

    def _finished(self, folder, name):
        """The result a finished stage's marker records, when its files are those it records; None to
        run the stage (again), with a note when a marker was there."""
        if not os.path.lexists(os.path.join(folder, MARKER)):
            return None
        try:
            result, files, now = _marker_and_files(folder)
        except _NotFinished as e:
            self.log(f"{name}: {folder}: {e}; running it again")
            return None
        if files is None:  # an earlier release's marker: trusted once, its files' hashes recorded now
            try:
                _write_marker(folder, result, now)
                self.log(f"{name}: recorded the hashes of its files (a work folder of an earlier tinykd)")
            except OSError:  # a read-only work folder: trusted as it is
                pass
        elif files != now:
            self.log(f"{name}: {folder}: {_difference(files, now)}; running it again")
            return None
        return result

    def add(self, seconds, ran, cached):
        """Count another cache's stages (an item's chain, run here or on a Dask worker) as this run's."""
        for stage, s in seconds.items():
            self.seconds[stage] = self.seconds.get(stage, 0.0) + s
        self.ran += ran
        self.cached += cached


class _NotFinished(Exception):
    """A stage folder whose marker does not say that it finished (the message says why)."""


def stage_files(folder):
    """``{path relative to folder: SHA-256}`` of every file of a stage's folder but its marker, sorted;
    an entry that is neither a regular file nor a folder (a link, a FIFO) is recorded as such."""
    out = {}
    for top, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = os.path.join(top, name)
            mode = os.lstat(path).st_mode
            if not stat.S_ISDIR(mode):
                out[os.path.relpath(path, folder).replace(os.sep, "/")] = (
                    file_sha256(path) if stat.S_ISREG(mode) else "not a regular file")
    out.pop(MARKER, None)
    return dict(sorted(out.items()))


def _marker_and_files(folder):
    """``(result, files as recorded (None: an earlier release's marker), files as they are)`` of a stage
    folder; :class:`_NotFinished` when its marker does not record a finished stage."""
    result = _read_marker(folder)
    return result, result.pop(FILES, None), stage_files(folder)


def _write_marker(folder, result, files=None):
    """The marker of a finished stage: its ``result`` and its files' hashes (None: computed now), written last."""
    marker = {**result, FILES: stage_files(folder) if files is None else files}
    atomic_write_bytes(os.path.join(folder, MARKER), json.dumps(marker, indent=1).encode("utf-8"))


def _read_marker(folder):
    """A stage folder's marker, as a dict holding the stage's ``seconds``; else :class:`_NotFinished`."""
    try:
        with open(os.path.join(folder, MARKER), "rb") as f:
            data = f.read(MARKER_MAX + 1)
        if len(data) > MARKER_MAX:
            raise _NotFinished(f"its {MARKER} is over {MARKER_MAX >> 20} MB, so not a marker")
        marker = json.loads(data)
    except (OSError, ValueError, RecursionError) as e:  # (a JSON or UTF-8 error is a ValueError)
        raise _NotFinished(f"its {MARKER} cannot be read ({type(e).__name__})") from None
    if not isinstance(marker, dict) or "seconds" not in marker:
        raise _NotFinished(f"its {MARKER} is not the record of a finished stage")
    if not isinstance(marker.get(FILES, {}), dict):
        raise _NotFinished(f"its {MARKER} does not record its files")
    return marker


def _difference(recorded, now):
    """What differs between a stage's files as recorded and as they are, in words (the first file)."""
    changed = sorted(k for k in recorded.keys() & now.keys() if recorded[k] != now[k])
    for names, how in ((changed, "changed since the stage finished"), (sorted(recorded.keys() - now.keys()), "is gone"),
                       (sorted(now.keys() - recorded.keys()), "was not written by the stage")):
        if names:
            return f"{names[0]}" + (f" (and {len(names) - 1} more)" if len(names) > 1 else "") + f" {how}"
    return "its files changed"


# ---------------------------------------------------------------- what each stage's key hashes
def rows_key(data_sha, columns, splits, seed, where, warm_roles=None):
    """The rows and their roles: the data file's bytes, the columns ``(text, label, id, context, item,
    split)``, the split values ``(train, val, test)``, the seed, the ``where`` filters and, for a warm
    start, the hash of the previous round's rows whose roles the answers keep."""
    return stage_key(data_sha, *columns, *splits, seed, list(where or []),
                     *([("warm", warm_roles)] if warm_roles else []))


def teacher_key(rows, item, base, options, given_sha, versions):
    """The teacher: the rows' key, the item, the base model, the fine-tuning options as
    :meth:`tinykd.distill.job.TeacherOptions.key_options` gives them, a given teacher's
    ``teacher.json`` hash, and the versions of tinykd and teacher_export."""
    return stage_key(rows, item, base, options, given_sha, *versions)


def copies_key(rows, item, n_copies, seed, unlabeled_sha, augment, unlabeled=False, previous=None):
    """The transfer set: the rows' key, the item, the copies per answer, the seed, the unlabeled
    file's hash, the augmentation options that are set (none: not hashed), when there are
    ``unlabeled`` answers, that they are copied too and, for a warm start, the previous round's copies
    stage whose copies the unchanged answers keep."""
    return stage_key(rows, item, n_copies, seed, unlabeled_sha, *([sorted(augment.items())] if augment else []),
                     *([("unlabeled", "copied")] if unlabeled else []), *([("previous", previous)] if previous else []))


def labels_key(teacher, copies):
    """The teacher's labels of the transfer set: the keys of the two."""
    return stage_key(teacher, copies)


#: the student options hashed only when they differ from TrainOptions' defaults (older keys lack them)
_IF_CHANGED = ("config", "batch_size", "lr", "clip_norm", "validation_fraction", "ordinal",
               "long_weight", "balance_transfer", "lr_plateau")


def students_key(labels, preset, presets, lams, options, offsets_rule, version, choose_on="validation",
                 stop_on=None, plain_rule=None):
    """The students: the labels' key, the preset (with the presets "auto" trains), the λ grid, the
    :class:`~tinykd.train.options.TrainOptions` of the students (T only with the cross-entropy soft
    term, the soft term only when not "ce", epochs, patience, seed, the offsets rule when on, the
    averaging when on, any other option changed from its default), tinykd's version, what the
    students are chosen on when not the validation rows' accuracy (:data:`tinykd.distill.job.FIDELITY_RULE`,
    :data:`~tinykd.distill.job.LOSS_RULE`: a stage made before the loss rule keeps its key under "accuracy")
    and, given, the rule that keeps the plain NN (:data:`tinykd.distill.students.PLAIN_RULE`)."""
    from tinykd.train.options import TrainOptions

    o, default = options, TrainOptions()
    changed = [(name, getattr(o, name)) for name in _IF_CHANGED if getattr(o, name) != getattr(default, name)]
    return stage_key(labels, preset, *([presets] if preset == "auto" else []), tuple(lams),
                     *([o.temperature] if o.soft_loss == "ce" else []), *([o.soft_loss] if o.soft_loss != "ce" else []),
                     o.epochs, o.patience, o.seed, *([offsets_rule] if o.offsets else []),
                     *([("offsets", o.offsets)] if isinstance(o.offsets, str) else []), version,
                     *([("average", o.average)] if o.average is not None else []), *changed,
                     *([FIDELITY_RULE] if choose_on == "fidelity" else []),
                     *([("choice", LOSS_RULE)] if choose_on == "validation" else []),
                     *([("stop", FIDELITY_RULE)] if choose_on != "fidelity" and stop_on == "fidelity" else []),
                     *([("plain", plain_rule)] if plain_rule else []))
