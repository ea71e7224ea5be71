"""The students' stage of ``tinykd distill``: for each preset the plain NN (λ = 0) and the KD students
over the λ grid (the transfer set in their soft term), trained on the cores side by side.

Which is kept (``chain.choose_on``): "validation" (the default, docs/decisions/student-choice.md) — the
one of lower log-loss on the validation rows: every probability counts, not only the arg-max, so a few
answers' luck decides less; "accuracy" — the one of best validation accuracy (then QWK), the rule before;
"fidelity" (docs/decisions/student-fidelity.md) — the KD students stop on, and are chosen by, their
fidelity to the teacher on rows none of them trains on (the validation rows and the copies of a seeded 1/8
of the training answers, held out of the transfer set). Whichever, the plain NN is kept only when the
teacher itself is below it on the validation rows (docs/decisions/plain-nn-choice.md). The teacher is
checked against TF-IDF + logistic regression on the validation rows. Test rows never choose."""
from __future__ import annotations

import functools
import os
import threading
from typing import NamedTuple

import numpy as np

from tinykd.files.csvfiles import label_key, read_table


class StudentData(NamedTuple):
    """What every student of an item trains on: its labelled training rows (``texts``, ``y``,
    ``contexts``) with the teacher's probabilities ``p_train`` (n, K), the ``validation`` rows
    ``(texts, labels, contexts)`` (None: none), the ``transfer`` set ``(texts, p (m, K), contexts)``
    (None: empty), the ``fidelity`` rows ``(texts, p, contexts)`` (None: the students are chosen on
    the validation rows) and the teacher's word ``vectors`` (None: none)."""

    texts: list
    y: np.ndarray
    contexts: list | None
    p_train: np.ndarray
    validation: tuple | None
    transfer: tuple | None
    fidelity: tuple | None = None
    vectors: tuple | None = None  #: ``(words, vectors)``: the teacher's word vectors (the KD students' start, aliases)


def student_data(chain, teacher_csv, copies_csv, labels_csv, n_transfer, vectors_npz=None):
    """The :class:`StudentData` of ``chain`` from the teacher's files (classes in the students' order) and the
    vectors stage's ``vectors_npz`` (None: none)."""
    from tinykd.files.softlabels import read_soft_labels

    rows, train, val = chain.rows, chain.rows.where("train"), chain.rows.where("val")
    want = [label_key(c) for c in rows.classes]
    texts, labels, contexts = rows.take(train)
    p_train = read_soft_labels(teacher_csv, [rows.ids[i] for i in train], want)
    transfer, t_ids = None, []
    if n_transfer:
        crow = read_table(copies_csv).rows
        t_ids = [r[0] for r in crow]
        p_tx = read_soft_labels(labels_csv, t_ids, want)
        transfer = ([r[1] for r in crow], p_tx, [r[2] for r in crow] if rows.contexts is not None else None)
    y = np.asarray(labels, dtype=object if rows.kind == "str" else None)
    fidelity = None
    if chain.stops_on == "fidelity":
        p_val = read_soft_labels(teacher_csv, [rows.ids[i] for i in val], want) if val else None
        transfer, fidelity = fidelity_rows(transfer, t_ids, rows.take(val) if val else None, p_val, chain.seed)
    vectors = None
    if vectors_npz:
        with np.load(vectors_npz) as f:
            vectors = (f["words"].tolist(), f["vectors"])
    return StudentData(texts, y, contexts, p_train, rows.take(val) if val else None, transfer, fidelity, vectors)


def fidelity_rows(transfer, ids, validation, p_val, seed):
    """``(transfer, fidelity)``: the copies of a seeded :data:`~tinykd.distill.job.FIDELITY_FRACTION`
    of the training answers (``ids``: the transfer rows'; a copy's is ``<answer id>~aug<k>``) moved out
    of ``transfer``, and with the
    ``validation`` rows (the teacher's probabilities ``p_val``) made the fidelity rows; fidelity None
    when there are none."""
    from tinykd.distill.job import FIDELITY_FRACTION

    parts = []
    if validation is not None:
        parts.append((validation[0], p_val, validation[2]))
    if transfer is not None:
        t_texts, p_tx, t_ctx = transfer
        src = [i.rsplit("~aug", 1)[0] if "~aug" in i else None for i in ids]
        answers = sorted({s for s in src if s is not None})
        n_out = int(round(len(answers) * FIDELITY_FRACTION))
        out = set(np.random.default_rng(seed).permutation(len(answers))[:n_out].tolist())
        out = {answers[k] for k in out}
        held = np.array([s in out for s in src], dtype=bool)
        if held.any():
            keep, gone = np.flatnonzero(~held), np.flatnonzero(held)
            parts.append(([t_texts[i] for i in gone], p_tx[gone], None if t_ctx is None else [t_ctx[i] for i in gone]))
            transfer = ([t_texts[i] for i in keep], p_tx[keep], None if t_ctx is None else [t_ctx[i] for i in keep])
    if not parts:
        return transfer, None
    ctx = None if any(c is None for _, _, c in parts) else [c for _, _, cs in parts for c in cs]
    return transfer, ([t for ts, _, _ in parts for t in ts], np.concatenate([p for _, p, _ in parts]), ctx)


class _Trainer:
    """Trains one student of an item, ``(preset, λ)``: the plain NN with λ = 0, else a KD student
    (:func:`side_by_side`'s ``train_one``). Returns ``(student, validation metrics)``."""

    def __init__(self, chain, data, log):
        self.chain, self.data, self.log = chain, data, log

    def __call__(self, pair, settings, stop):
        from tinykd.train import fitting  # looked up per call: a test may replace fit

        preset, lam = pair
        o = self.chain.options
        kd = (dict(temperature=o.temperature, soft_loss=o.soft_loss, ordinal=o.ordinal, long_weight=o.long_weight,
                   balance_transfer=o.balance_transfer) if lam else
              dict(temperature=1.0, soft_loss="ce", ordinal=0.0, long_weight=1, balance_transfer=False))
        options = o.replace(preset=preset, lam=lam, **kd)
        d = self.data
        s = fitting.fit(d.texts, d.y, d.p_train if lam else None, options=options, contexts=d.contexts,
                        validation=d.validation, transfer=d.transfer if lam else None, verbose=False,
                        name=self.chain.name, settings=settings, on_epoch=stop, fidelity=d.fidelity if lam else None,
                        word_vectors=d.vectors if lam and self.chain.vectors else None,
                        word_aliases=d.vectors if lam and self.chain.aliases == "train" else None)
        m = dict(s.meta.get("validation_metrics") or {"accuracy": 0.0, "qwk": 0.0})
        if d.validation is not None:
            m["logloss"] = validation_log_loss(s, d.validation)
        f = s.meta.get("fidelity_metrics")
        if f:
            m["fidelity"] = {"agreement": f["agreement"], "kl": f["kl"], "n": f["n"]}
        fid = f", agreement with the teacher {f['agreement']:.3f} (KL {f['kl']:.4f})" if f else ""
        ll = f", log-loss {m['logloss']:.3f}" if "logloss" in m else ""
        self.log(f"[students] {self.chain.name}: {preset}, λ = {lam:g}: validation accuracy {m['accuracy']:.3f}, "
                 f"QWK {m['qwk']:.3f}{ll}{fid} ({len(s.meta['history'])} epochs, {s.meta['training']['seconds']:.0f} s)")
        return s, m


def validation_log_loss(student, validation):
    """The student's :func:`~tinykd.quality.metrics.log_loss` on the ``validation`` rows ``(texts, labels,
    contexts)``, its probabilities calibrated as :meth:`~tinykd.scoring.student.Student.predict_proba` gives them;
    a label the student has no class for scores the floor."""
    from tinykd.quality.metrics import log_loss

    texts, labels, contexts = validation
    own = {label_key(c): k for k, c in enumerate(student.classes)}
    proba = np.asarray(student.predict_proba(texts, contexts), dtype=np.float64)
    proba = np.concatenate([proba, np.zeros((len(proba), 1))], axis=1)  # the column of a label not among its classes
    return log_loss(proba, [own.get(label_key(v), len(own)) for v in labels])


def student_pairs(presets, lams):
    """The students to train, as ``(preset, λ)``: the KD students first — with the transfer set in their
    soft term they take several times as long as a plain NN, so the cores stay busy to the end when
    the plain NNs fill in after them."""
    return [(pr, lam) for lam in lams for pr in presets] + [(pr, 0.0) for pr in presets]


def _rank(runs, presets, pair):
    """Validation accuracy, then QWK; ties: the larger λ, then the earlier preset."""
    m = runs[pair][1]
    return m["accuracy"], m["qwk"], pair[1], -presets.index(pair[0])


def _loss_rank(runs, presets, pair):
    """The lower validation log-loss; ties: the larger λ, then the earlier preset."""
    return -runs[pair][1]["logloss"], pair[1], -presets.index(pair[0])


def _fidelity_rank(runs, presets, pair):
    """Agreement with the teacher on the fidelity rows, then the lower KL; ties: the larger λ, then the
    earlier preset."""
    f = runs[pair][1]["fidelity"]
    return f["agreement"], -f["kl"], pair[1], -presets.index(pair[0])


#: when the plain NN is kept instead of a KD student (docs/decisions/plain-nn-choice.md); the students'
#: cache key hashes it
PLAIN_RULE = "plain NN only when the teacher is below it on validation"


def choose(runs, presets, teacher_validation=None, on="fidelity"):
    """``(best, best plain NN)`` of ``runs`` ((preset, λ) → (student, validation metrics)); the best plain NN
    is the one of best validation accuracy, then QWK. The plain NN is a candidate only when
    ``teacher_validation`` (the teacher's validation metrics) is below its validation accuracy
    (:data:`PLAIN_RULE`): a few answers' lead on a few hundred validation rows is a draw, and a teacher
    above it has something to teach. The KD students measured on fidelity rows (``on`` "fidelity") are
    ranked by it; with ``on`` "validation" every candidate by its validation log-loss (``"logloss"``, the
    lower first) where all have one; otherwise by validation accuracy, then QWK."""
    rank = functools.partial(_rank, runs, list(presets))
    plain = max((k for k in runs if k[1] == 0.0), key=rank)
    kd = [k for k in runs if k[1] != 0.0]
    if not kd:
        return plain, plain
    teacher_below = teacher_validation is not None and teacher_validation["accuracy"] < runs[plain][1]["accuracy"]
    fid = [k for k in kd if "fidelity" in runs[k][1]]
    if on == "fidelity" and fid:
        return (plain if teacher_below else max(fid, key=functools.partial(_fidelity_rank, runs, list(presets)))), plain
    pool = kd + [plain] if teacher_below else kd
    if on == "validation" and all("logloss" in runs[k][1] for k in pool):
        rank = functools.partial(_loss_rank, runs, list(presets))
    return max(pool, key=rank), plain


def train_students(folder, chain, teacher_csv, copies_csv, labels_csv, n_transfer, threads, log, vectors_npz=None):
    """The students stage: every student of ``chain`` trained (:func:`side_by_side` on ``threads``),
    the best on validation saved as ``folder/student.npz`` and the best plain NN as ``plain.npz``.
    Returns λ and the preset kept, every student's validation metrics, and the teacher's and TF-IDF +
    LR's (on the test rows too)."""
    data = student_data(chain, teacher_csv, copies_csv, labels_csv, n_transfer, vectors_npz)
    presets = list(chain.presets)
    pairs = student_pairs(presets, chain.lams)
    runs = dict(zip(pairs, side_by_side(_Trainer(chain, data, log), pairs, threads)))
    bars = _bars(chain, data, teacher_csv, log)
    best, plain = choose(runs, presets, bars["teacher_validation"], chain.choose_on)
    if best[1] == 0.0:
        log(f"[students] {chain.name}: the teacher is below the plain NN on validation; keeping the plain NN")
    by = ("lowest validation log-loss" if chain.choose_on == "validation" and "logloss" in runs[best][1] else
          "best agreement with the teacher" if chain.choose_on == "fidelity" and best[1] else "best validation accuracy")
    log(f"[students] {chain.name}: kept {best[0]}, λ = {best[1]:g} ({by})")
    runs[best][0].save(os.path.join(folder, "student.npz"))
    runs[plain][0].save(os.path.join(folder, "plain.npz"))
    return {"lam": best[1], "preset": best[0], "plain_preset": plain[0],
            "validation": {str(lam): m for (pr, lam), (_, m) in runs.items() if pr == best[0]},
            "presets": {pr: {str(lam): m for (p_, lam), (_, m) in runs.items() if p_ == pr} for pr in presets},
            **bars}


def words_read(texts, contexts=None):
    """The words a student read in training: those of its ``texts`` (training answers and their copies) and of
    their ``contexts``, as its tokenizer reads them."""
    from tinykd.scoring.text import tokenize

    return {w for t in list(texts) + list(contexts or []) for w in tokenize(t)}


def alias_unread(vocab, vectors_npz, seen):
    """Give ``vocab`` an alias for each word of the teacher's ``vectors_npz`` outside ``seen`` (the words the student
    read in training; empty: every word outside the vocabulary): the vocabulary word of the nearest vector. The
    vocabulary's own words stay among the vectors, as the targets. Returns the number of aliases."""
    with np.load(vectors_npz) as f:
        words, vectors = f["words"].tolist(), f["vectors"]
    keep = [k for k, w in enumerate(words) if w not in seen or w in vocab]
    vocab.alias([words[k] for k in keep], vectors[keep])
    return len(vocab.aliases)


def alias_unseen(folder, students_dir, vectors_npz, chain, copies_csv, log, outside=False):
    """The "unseen" stage (:data:`~tinykd.distill.job.UNSEEN_RULE`; docs/decisions/student-aliases.md): the students
    stage's kept student, when a KD student, with an alias for each word of the teacher's ``vectors_npz`` that none
    of its training answers, their contexts or the copies of ``copies_csv`` holds — the words it never read, so its
    training, stopping and choice stay as they were — saved with the plain NN in ``folder``; with ``outside``
    (:data:`~tinykd.distill.job.OUTSIDE_RULE`) every word of the vectors outside its vocabulary. ``{"aliases": n}``."""
    import shutil

    from tinykd.scoring.student import load

    student = load(os.path.join(students_dir, "student.npz"))
    n = 0
    if student.meta["training"].get("lam"):
        seen = set()  # "outside": every word outside the vocabulary, read or not
        if not outside:
            texts, _, contexts = chain.rows.take(chain.rows.where("train"))
            copies = [r[1] for r in read_table(copies_csv).rows] if os.path.exists(copies_csv) else []
            seen = words_read(list(texts) + copies, contexts)
        n = alias_unread(student.vocab, vectors_npz, seen)
        student.meta["training"].update(aliases=n, aliases_after_training=True)
        log(f"[unseen] {chain.name}: {n:,} words {'outside its vocabulary' if outside else 'no training answer holds'} "
            "read as the nearest of the student's")
    student.save(os.path.join(folder, "student.npz"))
    shutil.copyfile(os.path.join(students_dir, "plain.npz"), os.path.join(folder, "plain.npz"))
    return {"aliases": n}


def _bars(chain, data, teacher_csv, log):
    """The teacher's validation metrics and TF-IDF + LR's (validation and test), trained once on the
    same rows: the bar every scorer must clear; a warning when the teacher does not clear it."""
    from tinykd.files.softlabels import read_soft_labels
    from tinykd.quality.metrics import scoring_metrics

    rows, val, test = chain.rows, chain.rows.where("val"), chain.rows.where("test")
    if not val:
        return {"teacher_validation": None, "tfidf_validation": None, "tfidf_test": None}
    keys = [label_key(c) for c in rows.classes]
    v_texts, v_labels, v_ctx = data.validation
    predict = _tfidf(data.texts, data.y, data.validation, data.contexts)
    base_m = scoring_metrics([label_key(v) for v in v_labels], list(predict(v_texts, v_ctx)),
                             labels=sorted({label_key(v) for v in data.y}))
    base_test = None
    if test:
        t_texts, t_labels, t_ctx = rows.take(test)
        base_test = scoring_metrics([label_key(v) for v in t_labels], list(predict(t_texts, t_ctx)), labels=keys)
    p_val = read_soft_labels(teacher_csv, [rows.ids[i] for i in val], keys)
    t_m = scoring_metrics([label_key(v) for v in v_labels], [keys[k] for k in p_val.argmax(1)], labels=keys)
    if t_m["accuracy"] <= base_m["accuracy"]:
        log(f"[students] {chain.name}: warning: the teacher (validation accuracy {t_m['accuracy']:.3f}) does not "
            f"beat TF-IDF + logistic regression ({base_m['accuracy']:.3f}); train it longer "
            "(--teacher-epochs) or give it more data")
    return {"teacher_validation": t_m, "tfidf_validation": base_m, "tfidf_test": base_test}


def _tfidf(texts, y, validation, contexts):
    """:func:`tinykd.quality.baseline.tfidf_lr` trained on the same rows (C chosen on validation); its predict."""
    from tinykd.quality.baseline import tfidf_lr

    v_texts, v_y, v_ctx = validation
    predict, _, _ = tfidf_lr(texts, [label_key(v) for v in y], v_texts, [label_key(v) for v in v_y],
                             contexts=contexts, val_contexts=v_ctx)
    return predict


class _SideBySide:
    """The shared stop of :func:`side_by_side`'s threads: after a Ctrl-C (or an error) in one, the
    others stop at their next epoch, and a job not yet started never starts."""

    def __init__(self, train_one):
        self.train_one, self.halt = train_one, threading.Event()

    def stop(self, record):
        if self.halt.is_set():
            raise KeyboardInterrupt

    def one(self, job):
        from tinykd.settings import Settings

        if self.halt.is_set():
            raise KeyboardInterrupt
        return self.train_one(job, Settings(parallel=False), self.stop)


def side_by_side(train_one, jobs, threads=None):
    """``train_one(job, settings, stop)`` for each of ``jobs`` (e.g. (preset, λ) pairs): one after
    the other, in that order, or (``threads`` — default: the machine's cores — at least 2 and several
    jobs) on that many threads, each job started, in the order given, as soon as a thread is free, and
    trained with serial kernels on one core (``Settings(parallel=False)``; NumPy's BLAS on one thread).
    That trains the same weights bit for bit (:func:`tinykd.nn.lstm._plan`) in less time than one
    after the other with both cores each (docs/decisions/side-by-side-students.md). ``stop`` is an
    ``on_epoch`` callback: after a Ctrl-C (or an error) in one, the others stop at their next epoch.
    Returns the results in the order of ``jobs``."""
    import warnings
    from concurrent.futures import ThreadPoolExecutor

    from tinykd.settings import blas_threads

    n = min(len(jobs), int(threads or os.cpu_count() or 1))
    if n < 2:
        return [train_one(job, None, None) for job in jobs]
    shared = _SideBySide(train_one)
    # fit's warning filters are the process's: restored here once, whatever order the threads left them in
    with warnings.catch_warnings(), blas_threads(1), ThreadPoolExecutor(n, thread_name_prefix="tinykd-student") as ex:
        futures = [ex.submit(shared.one, job) for job in jobs]
        try:
            return [f.result() for f in futures]
        except BaseException:
            shared.halt.set()  # the executor then waits for the running ones' current epoch
            for f in futures:
                f.cancel()  # and starts none of those still waiting
            raise
