"""``tinykd distill``: from human-scored answers to a student, in one command, resumable.

Stages, per item (one teacher and one student per item with ``item_col``)::

    rows ─ teacher (fine-tuned) ─┬─ its probabilities for the item's rows
         └ copies (perturbed training answers + given unlabeled rows) ─ labels (the teacher's) ─┐
                                                       students (preset and λ on validation) ┘

1. **rows** (:mod:`tinykd.distill.rows`) — the data file read once, every row given its role (train /
   val / test / other) by :func:`tinykd.train.splits.assign_roles`; the teacher and the students then
   see the same roles.
2. **teacher** (:mod:`tinykd.distill.teacher`) — ``tinykd-teacher fit`` run in its own process on a
   JSON job file (the ``[teacher]`` extra: tinykd never imports torch), early stopping on the
   validation rows; or a fine-tuned teacher folder given with ``teacher_dir``.
3. **copies** (:mod:`tinykd.distill.copies`) — perturbed copies of the training answers, and any
   unlabeled rows given: the transfer set.
4. **labels** — the teacher's probabilities for the transfer set (``tinykd-teacher export``).
5. **students** (:mod:`tinykd.distill.students`) — for each preset the plain NN and the KD students over
   the λ grid, side by side on the cores; the best on validation kept. Test rows never choose.

Every stage's output lives in the work folder under a key that hashes its inputs and options, with a
marker written last (:mod:`tinykd.distill.stages`): a crash or Ctrl-C leaves no marker, and a rerun
reuses every finished stage and recomputes only what is missing or what a changed option invalidates
(``DistillResult.ran`` / ``.cached`` say which). The data file is hashed as it is read, each marker
checks its stage's files on reuse, and one run at a time holds the work folder (a lock).

Each item's chain (stages 2–5) is :func:`distill_item` of an :class:`~tinykd.distill.job.ItemChain`
(plain values): one process runs it in a loop; with a Dask ``client`` it runs as one task per item
(:func:`tinykd.cluster.tasks.map_items`), the stages cached in the same work folder, which every
worker must then reach at the same path. The test report is :func:`tinykd.quality.evaluate.evaluation_report`'s,
with the teacher's and the kept student's verdict by ``tinykd report``'s criteria
(:func:`tinykd.quality.evaluate.assess`; with ``rater2_col`` the human–human ones too).
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from typing import NamedTuple

from tinykd._version import __version__
from tinykd.distill.copies import COPIES_MAX, TRANSFER_SIZE, auto_copies, copy_count, unlabeled_answers, write_copies
from tinykd.distill.job import (AFTER_TRAINING, ALIASES_DEFAULT, ALIASES_MODES, ALIASES_RULE, AUTO_PRESETS,
                                CHOOSE_ON, CHOOSE_ON_VALUES, LAMS, OUTSIDE_RULE, PICK_RULE, SOFT_LOSS, STOP_ON_VALUES,
                                STUDENT_AVERAGE, STUDENT_OPTIONS, TEACHER_DEFAULTS, UNSEEN_RULE, VECTORS_RULE,
                                ItemChain, ItemRows, TeacherOptions, presets_for, student_options)
from tinykd.distill.rows import Columns, other_items as read_other_items, read_rows, read_unlabeled, write_rows
from tinykd.distill.stages import StageCache, copies_key, labels_key, rows_key, stage_key, students_key, teacher_key
from tinykd.distill.students import alias_unseen, side_by_side, train_students
from tinykd.distill.teacher import (TEACHER_INSTALL, TeacherError, average_members, fit_teacher, label_copies,
                                    pick_member, teacher_available, teacher_base_option, teacher_base_record,
                                    teacher_folder, teacher_version, word_vectors)
from tinykd.errors import OptionError
from tinykd.files.csvfiles import DataFileError, file_sha256, label_key
from tinykd.train.offsets import RULE as OFFSETS_RULE

__all__ = ["distill", "distill_item", "format_report", "DistillResult", "side_by_side", "auto_copies",
           "teacher_available", "AUTO_PRESETS", "LAMS", "SOFT_LOSS", "STUDENT_AVERAGE", "COPIES_MAX",
           "TRANSFER_SIZE", "TEACHER_DEFAULTS", "TEACHER_INSTALL", "STUDENT_OPTIONS", "TeacherOptions", "ItemChain",
           "TeacherError"]

#: augment's options ``augment_options`` may set
AUGMENT_OPTIONS = ("p_drop", "p_mask", "p_swap", "p_span", "p_splice")


class DistillResult:
    """What :func:`distill` made: ``model`` (a Student or a Bundle, saved at ``out``), ``report``
    (test metrics of teacher / plain NN / student per item and overall, and under ``"verdicts"`` the
    teacher's and the student's :func:`~tinykd.quality.evaluate.assess`), ``seconds`` per stage
    of this run, ``made_seconds`` per stage as recorded by the run that computed it (a stage this
    run found cached counts the seconds it took then), and which stages ``ran`` and which were
    ``cached``."""

    def __init__(self, model, report, seconds, ran, cached, work, made_seconds=None):
        self.model, self.report, self.seconds, self.ran, self.cached, self.work = (
            model, report, seconds, ran, cached, work)
        self.made_seconds = made_seconds or {}


class _Log:
    """``tinykd distill: MSG`` lines on ``stream`` (default stderr) when ``verbose``."""

    def __init__(self, verbose, stream):
        self.verbose, self.stream = verbose, stream

    def __call__(self, msg):
        if self.verbose:
            print(f"tinykd distill: {msg}", file=sys.stderr if self.stream is None else self.stream, flush=True)


def distill(data, out, *, text_col="text", label_col="label", id_col="id", context_col=None, item_col=None,
            split_col=None, train_split="train", val_split=None, test_split="test", unlabeled=None, rater2_col=None,
            teacher_dir=None, base=None, teacher_options=None, work=None, preset="auto", lams=LAMS, options=None,
            temperature=None, soft_loss=None, ordinal=None, copies=None, augment_options=None, epochs=None,
            patience=None, seed=None, where=None, teacher_threads=None, offsets=None, client=None, verbose=True,
            stream=None, student_seed=None, choose_on=CHOOSE_ON, label_names=None, stop_on=None, warm_start=None,
            teacher_vectors=False, other_items=False, teacher_aliases=ALIASES_DEFAULT):
    """Fine-tune a teacher (one per item), label perturbed copies of the training answers with it,
    train the students and choose λ on validation rows; save the model at ``out``.

    ``split_col`` None: the column ``split`` when the file has one, else the paper's 7:1:2 split; ``teacher_dir``: a
    folder written by ``tinykd-teacher fit`` (one for all rows), or one holding a folder per item named as the item;
    ``base``: the teacher's pre-trained base, a name of :data:`teacher_export.bases.BASES` (``"minilm"``, the default
    all-MiniLM-L6-v2; ``"mpnet"``) or a folder; ``teacher_options``: a :class:`~tinykd.distill.job.TeacherOptions` or a
    dict of its fields (``epochs``, ``patience``, ``lr``, ``batch_size``, ``max_length``, ``stop_on``, ``tolerance``,
    ``bf16``); ``options``: the students' ``TrainOptions`` (default :data:`~tinykd.distill.job.STUDENT_OPTIONS`;
    ``preset`` and ``lams`` choose their preset and λ), which ``temperature``, ``soft_loss``, ``ordinal``, ``epochs``,
    ``patience``, ``seed`` and ``offsets`` replace where given (``seed``: every random choice, the teacher's and the
    copies' too; ``student_seed``: the students' alone, so that students of several seeds learn from one teacher and
    one transfer set); ``stop_on``: what the KD students stop on (None: ``choose_on``; "fidelity" with ``choose_on``
    "validation": they stop on fidelity and the kept one is chosen on the validation rows); ``choose_on``: what the KD
    students stop on and are chosen by (:data:`CHOOSE_ON_VALUES`: fidelity to the teacher, or the validation rows by
    log-loss or by accuracy); ``lams``: the KD students' λ grid; ``preset`` "auto": each of :data:`AUTO_PRESETS`
    trained (plain NN and KD), the one best on validation kept; ``work``: the work folder (default ``<out>.work``);
    ``copies``: perturbed copies per training answer (None: :func:`auto_copies`); ``augment_options``:
    :func:`tinykd.distill.augment.augment`'s ``p_drop``, ``p_mask``, ``p_swap``, ``p_span``, ``p_splice`` (unset: its
    defaults); ``where``: ``["COL=VALUE", …]`` keeps only those rows (of the data and the unlabeled file);
    ``teacher_threads``: torch CPU threads of the teacher's processes (None: torch's default in one process, the
    worker's thread count on a Dask worker); ``client``: a ``distributed.Client`` — each item's chain
    (:func:`distill_item`) then runs as a Dask task, the work folder shared by the workers; ``label_names``: the
    scores' names (``{label: name}`` or ``"0=incorrect,…"``, checked against the data's scores before any training);
    ``warm_start``: the model file of a previous round on these answers (:mod:`tinykd.distill.warm`); ``rater2_col``: a
    second rater's column, read with the rows for the report alone (no stage key hashes it); ``teacher_vectors`` /
    ``teacher_aliases``: the KD students' embeddings start from the teacher's word vectors / their words outside the
    vocabulary read as the nearest inside it by those vectors (student-aliases.md; "unseen", the default: the words
    the kept student never read, after training; None: none); ``other_items``: the other items' answers join the
    transfer set (:func:`_transfer_answers`). Contexts are stored per item. Returns a :class:`DistillResult`."""
    from tinykd.scoring.modelmeta import label_names_for_data
    from tinykd.scoring.student import add_names

    log = _Log(verbose, stream)
    if not teacher_available():
        raise RuntimeError(TEACHER_INSTALL)
    students = student_options(options, temperature=temperature, soft_loss=soft_loss, ordinal=ordinal, epochs=epochs,
                               patience=patience, seed=seed, offsets=None if offsets is None else bool(offsets))
    aug = _check_options(copies, teacher_threads, lams, augment_options, students, preset)
    _check_choice(choose_on, stop_on)
    base_seed, students = students.seed, students if student_seed is None else students.replace(seed=student_seed)
    teacher = _teacher_options(teacher_options, teacher_dir, warm_start)
    base = teacher_base_option(base, teacher_dir)
    warm = _warm_teachers(warm_start, teacher_dir, base)
    t_start = time.time()
    work = work or os.path.splitext(os.fspath(out))[0] + ".work"
    cache = StageCache(work, log)
    with cache.lock():  # one run at a time in a work folder
        columns = Columns(text_col, label_col, id_col, context_col, item_col, split_col, train_split, val_split,
                          test_split)
        table, columns, data_sha = read_rows(data, columns, where, base_seed, rater2_col)
        rater2 = None if table.rater2 is None else dict(zip(table.ids, table.rater2))
        label_names = label_names_for_data(label_names, table.labels)
        table, roles_sha = _warm_roles(table, warm, log)
        r_key = rows_key(data_sha, *columns.key_parts(), base_seed, where, roles_sha)
        rows_made = cache.run("rows", r_key, f"{len(table.texts):,} rows", write_rows, table)
        u_rows, u_sha = _transfer_answers(data, unlabeled, other_items, columns, where, table, base_seed, log)
        template = ItemChain(
            work=cache.root, item=None, name="all rows", rows_key=r_key, rows=None, unlabeled_rows=(),
            rows_csv=os.path.join(cache.folder("rows", r_key), "rows.csv"), unlabeled_sha=u_sha, teacher_dir=None,
            teacher_sha=None, base=base, teacher=teacher, teacher_threads=teacher_threads, copies=copies, augment=aug,
            preset=preset, presets=presets_for(preset), lams=tuple(lams), options=students, seed=base_seed,
            choose_on=choose_on, stop_on=None if (stop_on or choose_on) == choose_on else stop_on,
            vectors=bool(teacher_vectors), aliases=_aliases_mode(teacher_aliases))
        chains = [_item_chain(template, table, g, teacher_dir, u_rows, warm) for g in _items(table)]
        done = _run_chains(chains, client, log, t_start)
        for r in done:
            cache.add(r["seconds"], r["ran"], r["cached"])
        model, report = _model_and_report(chains, done, columns, item_col, rater2)
        add_names(model, label_names, table.contexts, table.items)
        model.save(out)
        seconds = {**cache.seconds, "total": round(time.time() - t_start, 1)}
    return DistillResult(model, report, seconds, cache.ran, cache.cached, work, _made_seconds(rows_made, done))


def _transfer_answers(data, unlabeled, other_items, columns, where, table, seed, log):
    """The unscored answers of the transfer set and their SHA-256 (None: none): those of the ``unlabeled`` file,
    then, with ``other_items`` and one ``where`` ``COL=V``, as many of the file's other values' training answers as
    the chosen rows' (:func:`tinykd.distill.rows.other_items`; docs/decisions/transfer-data.md). Other items whose
    rows cannot be read as the chosen ones were are left out, and the log says why."""
    u_rows, u_sha = read_unlabeled(unlabeled, columns, where) if unlabeled else ([], None)
    o_rows, o_sha = [], None
    if other_items:
        try:
            o_rows, o_sha = read_other_items(data, columns, where, table, seed)
        except (DataFileError, ValueError) as e:
            log(f"the other items' answers are left out of the transfer set: {e}")
    if o_sha is None:
        return u_rows, u_sha
    log(f"transfer set: {len(o_rows):,} training answers of the other items join it (--other-items)")
    return list(u_rows) + o_rows, f"{u_sha}+{o_sha}" if u_sha else o_sha


def _warm_teachers(warm_start, teacher_dir, base):
    """``{item: the previous round's teacher}`` of the model ``warm_start`` ({} without one)."""
    from tinykd.distill.warm import previous_teachers

    if warm_start is None:
        return {}
    if teacher_dir or base:
        raise OptionError("warm_start", "{opt} fine-tunes on from the previous round's teacher: give it without "
                          "teacher_dir or base")
    return previous_teachers(warm_start)


def _warm_roles(table, warm, log):
    """``(table, roles_sha)``: every answer back in the role it had in the previous round (a warm start),
    and the hash of the previous rows that set them (None: no warm start)."""
    from tinykd.distill.warm import KEPT_ROLES, keep_roles, previous_roles

    if not warm:
        return table, None
    previous, sha = previous_roles([folder for folder, _ in warm.values()])
    roles, changed = keep_roles(table.ids, table.labels, table.roles, previous)
    new = sum(1 for i, lab in zip(table.ids, table.labels) if lab is not None and previous.get(i) not in KEPT_ROLES)
    log(f"warm start: the answers of the previous round keep their roles ({changed:,} that this round's split would "
        f"have moved); {new:,} newly scored answers")
    return table._replace(roles=roles), sha


def _aliases_mode(value):
    """``teacher_aliases`` checked: None (no aliases) or one of :data:`ALIASES_MODES`."""
    if value is not None and value not in ALIASES_MODES:
        raise OptionError("teacher_aliases",
                          f"{{opt}} must be one of {', '.join(ALIASES_MODES)} (or None), got {value!r}")
    return value


def _check_choice(choose_on, stop_on):
    """``choose_on`` (:data:`CHOOSE_ON_VALUES`) and ``stop_on`` (:data:`STOP_ON_VALUES`; choosing on fidelity needs
    stopping on it)."""
    if choose_on not in CHOOSE_ON_VALUES:
        raise OptionError("choose_on", f"{{opt}} must be one of {', '.join(CHOOSE_ON_VALUES)}, got {choose_on!r}")
    if stop_on is not None and stop_on not in STOP_ON_VALUES:
        raise OptionError("stop_on", f"{{opt}} must be one of {', '.join(STOP_ON_VALUES)}, got {stop_on!r}")
    if choose_on == "fidelity" and stop_on == "validation":
        raise OptionError("stop_on", "{opt} validation cannot go with choose_on fidelity (the fidelity rows are "
                          "measured by the students that stop on them)")


def _check_options(copies, teacher_threads, lams, augment_options, students, preset):
    """The options no other object checks, and every student's options (before the teacher's minutes of
    work); returns the augmentation options as a dict."""
    if copies is not None and (int(copies) != copies or copies < 0):
        raise OptionError("copies", f"{{opt}} must be a whole number >= 0, got {copies}")
    if teacher_threads is not None and (isinstance(teacher_threads, bool) or int(teacher_threads) != teacher_threads
                                        or teacher_threads < 1):
        raise OptionError("teacher_threads", f"{{opt}} must be a whole number >= 1, got {teacher_threads}")
    if not lams or any(not lam > 0 for lam in lams):
        raise OptionError("lams", f"{{opt}} must be values > 0, got {lams!r}")
    for pr in presets_for(preset):
        for lam in lams:
            students.replace(preset=pr, lam=lam)
    aug = dict(augment_options or {})
    unknown = sorted(set(aug) - set(AUGMENT_OPTIONS))
    if unknown:
        raise OptionError("augment_options", f"unknown {{opt}} {unknown}; known: {', '.join(AUGMENT_OPTIONS)}")
    return aug


def _items(table):
    """The items in tinykd's order (numbers numerically); ``[None]`` without an item column."""
    from tinykd.train.items import item_order

    return sorted(set(table.items), key=item_order) if table.items else [None]


def _item_chain(template, table, item, teacher_dir, unlabeled_rows, warm):
    """``template`` (the options every item shares) with the rows of ``item`` (None: every row) and
    its previous round's teacher (``warm``: ``{item: folder}``; an item new to this round starts cold)."""
    from tinykd.distill.warm import weights_sha

    idx = [i for i in range(len(table.texts)) if item is None or table.items[i] == item]
    rows = ItemRows(ids=tuple(table.ids[i] for i in idx), texts=tuple(table.texts[i] for i in idx),
                    labels=tuple(table.labels[i] for i in idx),
                    contexts=None if table.contexts is None else tuple(table.contexts[i] for i in idx),
                    roles=tuple(table.roles[i] for i in idx), kind=table.kind)
    given = _given_teacher(teacher_dir, item)
    warm_from, kept = warm.get(item, (None, None))
    presets = (kept,) if warm_from and template.preset == "auto" and kept in template.presets else template.presets
    return dataclasses.replace(
        template, item=item, name="all rows" if item is None else f"item {item}", rows=rows,
        unlabeled_rows=tuple(u for u in unlabeled_rows if item is None or u[3] == item), teacher_dir=given,
        teacher_sha=given and file_sha256(os.path.join(given, "teacher.json")), warm_from=warm_from, presets=presets,
        warm_sha=warm_from and weights_sha(warm_from),
        options=template.options.replace(ordinal=0.0) if table.kind == "str" else template.options)  # text: no order


def _given_teacher(teacher_dir, item):
    """The given teacher folder of ``item``: ``teacher_dir`` itself, or its folder named as the item."""
    if not teacher_dir:
        return None
    given = teacher_dir if _is_teacher(teacher_dir) or item is None else os.path.join(teacher_dir, str(item))
    if not _is_teacher(given):
        raise ValueError(f"--teacher-dir {given}: not a teacher folder written by tinykd-teacher fit "
                         "(no teacher.json)")
    return given


def _is_teacher(folder):
    return os.path.exists(os.path.join(folder, "teacher.json"))


def _run_chains(chains, client, log, t_start):
    """Every item's chain: in turn here, or one Dask task each on ``client``."""
    if client is not None:
        from tinykd.cluster.tasks import map_items

        return map_items(distill_item, chains, client=client, names=[c.name for c in chains],
                         log=log if log.verbose else None, summary=_finished)
    done = []
    for k, chain in enumerate(chains):
        if len(chains) > 1:
            spent = time.time() - t_start
            eta = f", about {spent / k * (len(chains) - k) / 60:.0f} min left" if k else ""
            log(f"{chain.name} ({k + 1} of {len(chains)}{eta})")
        done.append(distill_item(chain, log))
    return done


def _finished(r):
    """A Dask task's summary line: its seconds and stages."""
    return (f"{sum(r['seconds'].values()):.1f} s ({len(r['ran'])} stage(s) run"
            + (f", {len(r['cached'])} cached)" if r["cached"] else ")"))


def distill_item(chain, log, worker_threads=None):
    """One item's chain — teacher → copies → labels → students — each stage cached in the work folder
    ``chain.work`` (:class:`~tinykd.distill.stages.StageCache`). ``chain`` is an
    :class:`~tinykd.distill.job.ItemChain` (plain values; :func:`distill` makes it), so the same function
    runs in a loop in one process or as a Dask task (:func:`tinykd.cluster.tasks.map_items`, which gives
    ``worker_threads``: the students' threads, and the teacher's torch threads unless
    ``chain.teacher_threads`` sets them). Returns the stages' results and folders, and which stages ran."""
    cache = StageCache(chain.work, log)
    threads = chain.teacher_threads or worker_threads
    n = copy_count(chain)
    prev = _previous_copies(chain)
    c_key = copies_key(chain.rows_key, chain.item, n, chain.seed, chain.unlabeled_sha, chain.augment,
                       bool(unlabeled_answers(chain)), prev and os.path.basename(os.path.dirname(prev[0])))
    if chain.teacher.members > 1 and chain.teacher.combine == "pick":  # docs/decisions/teacher-pick.md
        members = [_picked(cache, chain, threads, log, (c_key, n, prev))]
    else:
        members = []
        for k in range(chain.teacher.members):  # the copies stage runs once, after the first teacher
            members.append(_member(cache, chain, threads, log, k, (c_key, n, prev), members[0].copies if k else None))
    t, teacher, c, lab, l_key, t_csv, l_csv = members[0]
    c_csv = os.path.join(cache.folder("copies", c_key), "copies.csv")
    if len(members) > 1:  # an ensemble: the members' log-probabilities averaged (docs/decisions/teacher-ensemble.md)
        t, lab = ({**r, "seconds": round(sum(getattr(m, f)["seconds"] for m in members), 1)}
                  for f, r in (("teacher", t), ("labels", lab)))
        l_key = stage_key(*(m.labels_key for m in members))
        cache.run("ensemble", l_key, f"{chain.name}: {len(members)} teachers", average_members,
                  [m.teacher_csv for m in members], [m.labels_csv for m in members])
        t_csv, l_csv = (os.path.join(cache.folder("ensemble", l_key), f) for f in ("teacher.csv", "labels.csv"))
    v_npz = None
    if chain.vectors or chain.aliases:  # the (first) teacher's word vectors: the KD students' start, or aliases
        v_key = stage_key(members[0].labels_key, VECTORS_RULE, *([ALIASES_RULE] if chain.aliases else []))
        cache.run("vectors", v_key, chain.name, word_vectors, teacher, c_csv, threads, log, bool(chain.aliases))
        v_npz = os.path.join(cache.folder("vectors", v_key), "vectors.npz")
        if chain.vectors or chain.aliases == "train":  # the students read them; "unseen": only the stage after
            l_key = stage_key(l_key, v_key, *(["start"] if chain.vectors and chain.aliases else []))
    s_key = _students_key(cache, chain, l_key)
    s = cache.run("students", s_key, chain.name, train_students, chain, t_csv, c_csv, l_csv, c["n"], worker_threads,
                  log, v_npz)
    students_dir = cache.folder("students", s_key)
    if chain.aliases in AFTER_TRAINING:  # the kept KD student's aliases, given after its training and choice
        u_key = stage_key(s_key, v_key, UNSEEN_RULE if chain.aliases == "unseen" else OUTSIDE_RULE)
        u = cache.run("unseen", u_key, chain.name, alias_unseen, students_dir, v_npz, chain, c_csv, log,
                      chain.aliases == "outside")
        s = {**s, "aliases": u["aliases"]}  # the students' seconds stay theirs
        students_dir = cache.folder("unseen", u_key)
    return {"teacher": t, "teacher_dir": teacher, "teachers": chain.teacher.members, "copies": c, "labels": lab,
            "students": s, "combine": chain.teacher.combine if chain.teacher.members > 1 else None,
            "teacher_csv": t_csv,
            "students_dir": students_dir, "seconds": cache.seconds, "ran": cache.ran,
            "cached": cache.cached}


def _teacher_options(options, teacher_dir, warm_start):
    """:class:`TeacherOptions` of ``options``; an ensemble only of teachers fine-tuned here, from the base."""
    teacher = TeacherOptions.make(options)
    if teacher.members > 1 and (teacher_dir or warm_start):
        raise OptionError("teacher_members", f"{{opt}} {teacher.members}: an ensemble fine-tunes its teachers here; "
                          f"it cannot be combined with {'--teacher-dir' if teacher_dir else '--warm-start'}")
    return teacher


def _member(cache, chain, threads, log, k, copies, made=None, stage=None):
    """Teacher ``k`` of ``chain`` (k > 0: an ensemble's member, its seed the chain's + k, its key the
    teacher's with ``member`` k; member 0 is the single teacher's stage) and its labels of the copies
    (``copies``: the copies stage's key, copies per answer and previous round; made after the first teacher;
    ``made``: that stage's result, for the other members; ``stage``: its teacher stage when already run,
    :func:`_teacher_stage`'s). Returns a :class:`_Member`."""
    t_key, name, t = stage or _teacher_stage(cache, chain, threads, log, k)
    teacher = teacher_folder(chain, cache.folder("teacher", t_key))
    c_key, n, prev = copies
    c = made or cache.run("copies", c_key, f"{chain.name}: {n} per answer", write_copies, chain, n, prev)
    c_csv = os.path.join(cache.folder("copies", c_key), "copies.csv")
    l_key = labels_key(t_key, c_key)
    reuse = (chain.work, os.path.dirname(os.path.dirname(chain.warm_from))) if chain.warm_from else ()  # its work
    lab = cache.run("labels", l_key, f"{name}: {c['n']:,} answers", label_copies, teacher, c_csv, c["n"],
                    chain.rows.contexts is not None, threads, log, chain.teacher.bf16, reuse)
    return _Member(t, teacher, c, lab, l_key, os.path.join(cache.folder("teacher", t_key), "teacher.csv"),
                   os.path.join(cache.folder("labels", l_key), "labels.csv"))


def _teacher_stage(cache, chain, threads, log, k):
    """The teacher stage of member ``k`` of ``chain``: ``(its key, its name in the log, its result)``."""
    opts = {**chain.teacher_key_options(), **({"member": k} if k else {})}
    t_key = teacher_key(chain.rows_key, chain.item, chain.base, opts, chain.teacher_sha,
                        (__version__, teacher_version()))
    name = chain.name + (f" (teacher {k + 1} of {chain.teacher.members})" if chain.teacher.members > 1 else "")
    return t_key, name, cache.run("teacher", t_key, name, fit_teacher, chain, threads, log, k)


def _picked(cache, chain, threads, log, copies):
    """Every member's teacher stage, then the pick stage (:func:`~tinykd.distill.teacher.pick_member`), then the
    picked member's labels of the copies: a :class:`_Member` whose teacher result counts every member's
    seconds and records the pick, its teacher.csv the pick stage's."""
    stages = [_teacher_stage(cache, chain, threads, log, k) for k in range(chain.teacher.members)]
    p_key = stage_key(*(key for key, _, _ in stages), PICK_RULE)
    p = cache.run("pick", p_key, f"{chain.name}: the best of {len(stages)} teachers", pick_member,
                  [cache.folder("teacher", key) for key, _, _ in stages])
    log(f"{chain.name}: teacher {p['picked'] + 1} of {len(stages)} labels the copies (validation QWK "
        + ", ".join(f"{q:.3f}" for q in p["val_qwk"]) + ")")
    m = _member(cache, chain, threads, log, p["picked"], copies, stage=stages[p["picked"]])
    t = {**m.teacher, "seconds": round(sum(r["seconds"] for _, _, r in stages), 1), "picked": p["picked"],
         "val_qwk": p["val_qwk"]}
    return m._replace(teacher=t, teacher_csv=os.path.join(cache.folder("pick", p_key), "teacher.csv"))


class _Member(NamedTuple):
    """One teacher of an item's chain and its labels (:func:`_member`)."""

    teacher: dict  #: the teacher stage's result
    folder: str  #: the fine-tuned teacher
    copies: dict  #: the copies stage's result
    labels: dict  #: the labels stage's result
    labels_key: str
    teacher_csv: str
    labels_csv: str


def _previous_copies(chain):
    """A warm start's previous round: ``(its copies.csv, the rows its teacher trained on)``; else None."""
    from tinykd.distill.warm import previous_copies, rows_file

    if not chain.warm_from:
        return None
    copies, rows = previous_copies(chain.warm_from, chain.warm_sha), rows_file(chain.warm_from)
    return (copies, rows) if copies and rows else None


def _students_key(cache, chain, l_key):
    """The students' key. Choosing on validation it hashes :data:`~tinykd.distill.students.PLAIN_RULE`;
    a folder made before that rule whose kept student is a KD student is the one the rule keeps (the
    rule only takes the plain NN away as a candidate), so it is used as it is."""
    from tinykd.distill.students import PLAIN_RULE

    parts = (l_key, chain.preset, chain.presets, chain.lams, chain.options, OFFSETS_RULE, __version__, chain.choose_on,
             chain.stops_on)
    if chain.choose_on == "fidelity":
        return students_key(*parts)  # its plain NN's rule was already this one
    key = students_key(*parts, plain_rule=PLAIN_RULE)
    if cache.result("students", key) is None:
        before = cache.result("students", students_key(*parts))
        if before is not None and before.get("lam"):
            return students_key(*parts)
    return key


def _students(r, columns):
    """The kept student of a chain's result ``r`` (its choice and columns in its meta) and its plain NN."""
    from tinykd.scoring.student import load

    student, plain = (load(os.path.join(r["students_dir"], f)) for f in ("student.npz", "plain.npz"))
    c, s = r["copies"], r["students"]
    student.meta["distill"] = {"lam": s["lam"], "preset": s["preset"], "validation": s["validation"],
                               "presets": s.get("presets"), "plain_preset": s.get("plain_preset"),
                               "teacher_validation": s.get("teacher_validation"),
                               "copies": c["n"], "teacher": r["teacher_dir"], "teachers": r.get("teachers", 1),
                               "teacher_combine": r.get("combine"),
                               "teacher_base": teacher_base_record(r["teacher_dir"])}
    student.meta["columns"] = {"text": columns.text, "label": columns.label, "id": columns.id,
                               "context": columns.context, "item": columns.item}
    return student, plain


def _model_and_report(chains, done, columns, item_col, rater2=None):
    """The model (a Student, or a Bundle of one per item) and the test report of the chains' results ``done``
    (``rater2``: ``{id: the second rater's cell}``, or None)."""
    from tinykd.scoring.student import Bundle

    models, report = {}, {}
    for chain, r in zip(chains, done):
        student, plain = _students(r, columns)
        models[chain.item] = student
        rep = item_report(chain, r, student, plain, rater2)
        if rep is not None:
            report[chain.name] = rep
    return (models[None] if item_col is None else Bundle(models, item_col=item_col)), report


def item_report(chain, r, student, plain, rater2=None):
    """Test metrics of the teacher, the plain NN, the student (and TF-IDF + LR) on ``chain``'s test rows
    (:func:`tinykd.quality.evaluate.evaluation_report`'s, the teacher's on its labels), and ``verdicts``: the
    teacher's and the student's (:func:`_verdicts`); None without any test rows."""
    from tinykd.files.softlabels import read_soft_labels
    from tinykd.quality.evaluate import evaluation_report
    from tinykd.quality.metrics import scoring_metrics

    rows, test = chain.rows, chain.rows.where("test")
    if not test:
        return None
    texts, labels, contexts = rows.take(test)
    kept, nn = (evaluation_report(m, texts, labels, contexts=contexts) for m in (student, plain))
    want = [label_key(c) for c in rows.classes]
    p_t = read_soft_labels(r["teacher_csv"], [rows.ids[i] for i in test], want)
    s = r["students"]
    report = {"n": len(test),
              "teacher": scoring_metrics([label_key(v) for v in labels], [want[k] for k in p_t.argmax(1)],
                                         labels=kept["labels"]),
              "plain NN": nn["model_vs_human"], f"student ({s['preset']}, λ = {s['lam']:g})": kept["model_vs_human"]}
    if s.get("tfidf_test"):
        report["TF-IDF + LR"] = s["tfidf_test"]
    pred = student.predict_proba(texts, contexts).argmax(1)
    r2 = None if rater2 is None else [rater2.get(rows.ids[i]) for i in test]
    in_test = set(test)
    others = [i for i in range(len(rows.ids)) if i not in in_test]
    rest = None if rater2 is None else (rows.take(others)[1], [rater2.get(rows.ids[i]) for i in others])
    report["verdicts"] = _verdicts(chain.name, rows.classes, labels, {
        "teacher": [rows.classes[k] for k in p_t.argmax(1)], "student": [student.classes[k] for k in pred]}, r2, rest)
    return report


def _verdicts(name, classes, labels, machines, rater2, rest=None):
    """``{who: assess(...)}``: each machine's scores of the test rows (``machines``: ``{who: scores}``, among
    ``classes``) judged by ``tinykd report``'s criteria (:func:`tinykd.quality.evaluate.assess`, on the score
    points ``tinykd report`` compares) against the human ``labels``, and ``rater2``'s cells (None: no second
    rater) for the human–human ones. ``rest``: ``(labels, rater2 cells)`` of the item's training and validation
    rows, whose human–human agreement stands in when no test row has a second score (ASAP-SAS's ``score2``)."""
    from tinykd.files.csvfiles import coerce_labels
    from tinykd.quality.evaluate import assess, check_label_set, human_human_on, report_scale

    scale, _, ordinal = report_scale(classes, labels)
    hh = None
    if rater2 is not None:
        rater2 = coerce_labels(rater2, classes)
        check_label_set(classes, rater2, "the second rater's column (--rater2-col)")
        if ordinal and rest is not None and all(v is None for v in rater2):
            r2_rest = coerce_labels(rest[1], classes)
            check_label_set(classes, r2_rest, "the second rater's column (--rater2-col)")
            hh = human_human_on(coerce_labels(rest[0], classes), r2_rest, scale,
                                "the item's training and validation rows")
    return {who: assess(labels, m, labels=scale, ordinal=ordinal, rater2=rater2, name=f"{name}: {who}",
                        human_human=hh) for who, m in machines.items()}


def _made_seconds(rows_made, done):
    """Seconds per stage as recorded by the runs that computed them."""
    made = {"rows": rows_made.get("seconds", 0.0)}
    for r in done:
        for stage in ("teacher", "copies", "labels", "students"):
            made[stage] = round(made.get(stage, 0.0) + (r.get(stage) or {}).get("seconds", 0.0), 1)
    return made


def format_report(result):
    """The lines ``tinykd distill`` prints: test metrics per item, the teacher's and the student's verdict by
    ``tinykd report``'s criteria (:func:`~tinykd.quality.evaluate.verdict_summary`), and seconds per stage."""
    from tinykd.quality.evaluate import verdict_summary

    out = [f"{'test rows':40}{'rows':>7}{'accuracy':>10}{'QWK':>8}{'macro-F1':>10}"]
    for name, r in result.report.items():
        for who, m in r.items():
            if who not in ("n", "verdicts"):
                out.append(f"{(name + ': ' + who)[:39]:40}{m['n']:>7,}{m['accuracy']:>10.3f}{m['qwk']:>8.3f}"
                           f"{m['macro_f1']:>10.3f}")
    verdicts = [u for r in result.report.values() for u in r.get("verdicts", {}).values()]
    if verdicts:
        out.append("verdict on the test rows by tinykd report's criteria (docs/report.md):")
        out += ["  " + verdict_summary(u) for u in verdicts]
    out.append("seconds per stage: " + ", ".join(f"{k} {v:.1f}" for k, v in result.seconds.items()))
    if result.cached:
        out.append(f"reused {len(result.cached)} finished stage(s) from {result.work}")
    return out
