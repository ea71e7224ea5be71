"""The work folder of ``tinykd distill``: one folder per finished stage, reused by a rerun.

A stage writes its files into ``<work>/<stage>-<key>/`` and its result (a JSON-ready dict) into
``done.json`` there, last and atomically: a folder without it is a stage that stopped half-way (a
crash, Ctrl-C), removed and run again. The key hashes everything the stage's output depends on, so a
changed option makes a new folder and leaves the old one for a rerun with the old options.

Each stage is a plain function ``function(folder, *args) -> dict`` run by :meth:`StageCache.run`; the
key functions below say what each stage's key hashes. They hash exactly what earlier releases hashed,
in the same order, so work folders made before stay valid.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time

from tinykd.files.atomic import atomic_write_bytes

#: the file whose presence marks a finished stage (its result, with the seconds it took)
MARKER = "done.json"


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
        os.makedirs(self.root, exist_ok=True)

    def folder(self, stage, key):
        """Where the stage ``stage`` of key ``key`` keeps its files."""
        return os.path.join(self.root, f"{stage}-{key}")

    def run(self, stage, key, what, function, *args):
        """``function(folder, *args)``'s result, from ``done.json`` when that stage finished before
        (``what`` names it in the log), else computed in a fresh folder and recorded there with its
        ``seconds``."""
        folder = self.folder(stage, key)
        marker = os.path.join(folder, MARKER)
        if os.path.exists(marker):
            with open(marker, encoding="utf-8") as f:
                result = json.load(f)
            self.cached.append(f"{stage}:{what}")
            self.log(f"[{stage}] {what}: done before (cached in {folder})")
            return result
        if os.path.isdir(folder):  # a stage that stopped half-way: its files cannot be trusted
            shutil.rmtree(folder)
        os.makedirs(folder)
        t0 = time.time()
        self.log(f"[{stage}] {what} …")
        result = {**function(folder, *args), "seconds": round(time.time() - t0, 1)}
        atomic_write_bytes(marker, json.dumps(result, indent=1).encode("utf-8"))
        self.seconds[stage] = self.seconds.get(stage, 0.0) + result["seconds"]
        self.ran.append(f"{stage}:{what}")
        self.log(f"[{stage}] {what}: {result['seconds']:.1f} s")
        return result

    def add(self, seconds, ran, cached):
        """Count another cache's stages (an item's chain, run here or on a Dask worker) as this run's."""
        for stage, s in seconds.items():
            self.seconds[stage] = self.seconds.get(stage, 0.0) + s
        self.ran += ran
        self.cached += cached


# ---------------------------------------------------------------- what each stage's key hashes
def rows_key(data_sha, columns, splits, seed, where):
    """The rows and their roles: the data file's bytes, the columns ``(text, label, id, context, item,
    split)``, the split values ``(train, val, test)``, the seed and the ``where`` filters."""
    return stage_key(data_sha, *columns, *splits, seed, list(where or []))


def teacher_key(rows, item, base, options, given_sha, versions):
    """The teacher: the rows' key, the item, the base model, the fine-tuning options as
    :meth:`tinykd.distill.job.TeacherOptions.key_options` gives them, a given teacher's
    ``teacher.json`` hash, and the versions of tinykd and teacher_export."""
    return stage_key(rows, item, base, options, given_sha, *versions)


def copies_key(rows, item, n_copies, seed, unlabeled_sha, augment):
    """The transfer set: the rows' key, the item, the copies per answer, the seed, the unlabeled
    file's hash and the augmentation options that are set (none: not hashed)."""
    return stage_key(rows, item, n_copies, seed, unlabeled_sha, *([sorted(augment.items())] if augment else []))


def labels_key(teacher, copies):
    """The teacher's labels of the transfer set: the keys of the two."""
    return stage_key(teacher, copies)


#: the student options hashed only when they differ from TrainOptions' defaults (older keys lack them)
_IF_CHANGED = ("config", "batch_size", "lr", "clip_norm", "validation_fraction")


def students_key(labels, preset, presets, lams, options, offsets_rule, version):
    """The students: the labels' key, the preset (with the presets "auto" trains), the λ grid, the
    :class:`~tinykd.train.options.TrainOptions` of the students (T only with the cross-entropy soft
    term, the soft term only when not "ce", epochs, patience, seed, the offsets rule when on, the
    averaging when on, any other option changed from its default) and tinykd's version."""
    from tinykd.train.options import TrainOptions

    o, default = options, TrainOptions()
    changed = [(name, getattr(o, name)) for name in _IF_CHANGED if getattr(o, name) != getattr(default, name)]
    return stage_key(labels, preset, *([presets] if preset == "auto" else []), tuple(lams),
                     *([o.temperature] if o.soft_loss == "ce" else []), *([o.soft_loss] if o.soft_loss != "ce" else []),
                     o.epochs, o.patience, o.seed, *([offsets_rule] if o.offsets else []), version,
                     *([("average", o.average)] if o.average is not None else []), *changed)
