"""Training one student: :func:`fit` (texts, labels, optional teacher probabilities → a
:class:`~tinykd.scoring.student.Student`), in three steps: prepare the rows, train, record.

The rules of one student's training, for every face (the command line, the scikit-learn
estimator, the demo, ``distill``, other Python tools; rows of a data file, per item:
:mod:`tinykd.train.items`):

* **Options** are one :class:`~tinykd.train.options.TrainOptions`, checked when it is made; a
  bad value is an :class:`~tinykd.errors.OptionError` naming the option.
* **Validation rows.** Given rows are used as they are; otherwise a seeded stratified
  ``validation_fraction`` (1/8) of the labelled training rows is held out — when there are
  at least :data:`~tinykd.train.splits.MIN_HOLDOUT_ROWS` of them; below that there is no
  validation set and training runs for all epochs (said). A class with fewer than 8 rows keeps
  them all in training (said): no class is ever held out whole (:mod:`tinykd.train.splits`).
* **Unseen labels.** Validation rows whose label no training row has cannot be scored by
  the model: they are dropped from validation, loudly (a note).
* **Failures.** Ctrl-C stops training and raises ``KeyboardInterrupt`` (nothing is
  returned, so nothing half-trained is saved); a loss that is not finite in the first
  epoch is an error suggesting a smaller ``lr``; later, the best weights are kept (a note).

Notes (warnings about the data) are printed to ``stream`` when ``verbose`` and always
kept in ``meta["notes"]``.
"""
from __future__ import annotations

import sys
import time
import warnings
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from tinykd.errors import OptionError
from tinykd.files.csvfiles import check_classes, shown
from tinykd.nn.embedding import pretrained_rows
from tinykd.nn.network import EMBED_SCALE, StudentNet
from tinykd.quality.metrics import scoring_metrics
from tinykd.scoring.student import Student
from tinykd.scoring.text import Vocabulary, as_list
from tinykd.settings import blas_threads
from tinykd.train.loop import TrainData, train
from tinykd.train.options import make_options
from tinykd.train.splits import MIN_HOLDOUT_ROWS, holdout, rare_classes

#: most validation rows whose predictions a model file keeps (for ``tinykd score --target-accuracy``)
STORED_VALIDATION_ROWS = 2000


class Notes(list):
    """Notes about the data: kept (a list) and printed to ``stream`` as they come when ``verbose``."""

    def __init__(self, verbose, stream):
        super().__init__()
        self.verbose, self.stream = verbose, stream

    def __call__(self, msg):
        self.append(msg)
        if self.verbose:
            print(msg, file=self.stream, flush=True)


def take(xs, idx):
    """``[xs[i] for i in idx]``; None stays None."""
    return None if xs is None else [xs[i] for i in idx]


# ------------------------------------------------------------------------------ fit
def fit(texts, y, teacher_proba=None, *, options=None, contexts=None, validation=None, transfer=None,
        verbose=True, stream=None, settings=None, name="model", on_epoch=None, fidelity=None, word_vectors=None,
        word_aliases=None, **option_values):
    """Train one student on texts and labels, distilling ``teacher_proba`` if given.

    Parameters
    ----------
    texts, y : training answers and their human scores (any labels of one kind).
    teacher_proba : (n, K) teacher probabilities, columns in sorted label order
        (``np.unique(y)``); an all-NaN row means "no teacher row for this text".
    options : a :class:`~tinykd.train.options.TrainOptions` (None: the defaults) — the network
        (``preset``, ``config``), the loss (``lam``: default 4 with a teacher, 0 without = the plain
        NN; ``temperature``, ``soft_loss``, ``ordinal``), the optimiser and early stopping, ``seed``, ``offsets``
        (per-class decision offsets chosen on the validation rows, folded into the output bias:
        :mod:`tinykd.train.offsets`), ``average`` (Polyak averaging: :func:`tinykd.train.loop.train`).
    **option_values : the same options as keywords (``preset="7t", lam=1.0``), replacing those of
        ``options``; an unknown name is a ``TypeError`` naming it.
    contexts : optional per-text context (question / reference answer).
    validation : ``(texts, y[, contexts])`` for early stopping, ``False`` for none; default:
        a seeded stratified ``validation_fraction`` of the training rows (if at least
        :data:`~tinykd.train.splits.MIN_HOLDOUT_ROWS`). Labels no training row has are dropped from
        it (a note).
    transfer : ``(texts, teacher_proba[, contexts])`` unlabeled rows for the soft term.
    fidelity : ``(texts, teacher_proba[, contexts])`` rows not trained on, on which the student's
        fidelity to its teacher is measured: given, early stopping watches the mean KL(teacher ‖
        student) on them instead of the validation loss, and the decision offsets are chosen on them
        against the teacher's arg-max (docs/decisions/student-fidelity.md); ``meta["fidelity_metrics"]``.
    word_vectors : ``(words, vectors (n, H))``: the embedding rows of the vocabulary's words found there start
        from these vectors (:func:`tinykd.nn.embedding.pretrained_rows`; docs/decisions/student-teacher-vectors.md).
    word_aliases : ``(words, vectors (n, H))``: each of these words outside the fitted vocabulary reads as the
        vocabulary word of the nearest vector (:meth:`~tinykd.scoring.text.Vocabulary.alias`), in training and
        in scoring; no parameter is added (docs/decisions/student-aliases.md).
    verbose, stream : progress lines and notes (default ``sys.stderr``).
    settings : :class:`tinykd.settings.Settings` (cores, BLAS threads; no effect on results).
    name : how notes and errors name this student (e.g. ``"item 'Q1'"``).
    on_epoch : called with each epoch's record (``epoch``, ``loss``, ``val_loss``, ``val_acc``);
        a ``KeyboardInterrupt`` it raises stops training as Ctrl-C does.

    Returns a :class:`~tinykd.scoring.student.Student` with ``meta["training"]``,
    ``meta["validation_metrics"]``, ``meta["history"]`` and ``meta["notes"]``.
    Raises ``KeyboardInterrupt`` on Ctrl-C and :class:`OptionError` / ``ValueError`` on bad input.
    """
    t_start = time.time()
    options = make_options(options, **option_values)
    stream = sys.stderr if stream is None else stream
    note = Notes(verbose, stream)
    prep = _prepare(texts, y, teacher_proba, contexts, validation, transfer, options, name, note, fidelity,
                    word_aliases)
    prep.start = _pretrained(word_vectors, prep)
    net, history = _run(prep, options, settings=settings, verbose=verbose, stream=stream, name=name, note=note,
                        on_epoch=on_epoch)
    return _record(prep, net, history, options, name, note, time.time() - t_start)


class _Rows(NamedTuple):
    """Rows of one part: texts, contexts (or None), labels as class indices (−1: a transfer row),
    teacher probabilities (n, K) or None."""
    texts: list
    contexts: list | None
    y: np.ndarray
    teacher: np.ndarray | None

    def take(self, idx):
        return _Rows(take(self.texts, idx), take(self.contexts, idx), self.y[idx],
                     None if self.teacher is None else self.teacher[idx])


@dataclass
class Prepared:
    """One student's rows, ready to train: the ``classes`` (sorted), the training rows' class
    indices ``y``, how many transfer rows follow them, whether a teacher is given, whether a
    context goes before each answer, the network config, the fitted vocabulary, the encoded
    training (and validation, or None) rows, the fidelity rows and the embedding's pretrained start."""
    classes: np.ndarray
    y: np.ndarray
    n_transfer: int
    teacher: bool
    uses_context: bool
    config: dict
    vocab: Vocabulary
    data: TrainData
    val: TrainData | None
    fid: TrainData | None = None
    start: tuple | None = None  #: ``(ids, rows)`` of the embedding that start from word vectors


def _prepare(texts, y, teacher_proba, contexts, validation, transfer, options, name, note, fidelity=None,
             aliases=None):
    """The checks, label encoding, validation and transfer rows, vocabulary and encoded arrays."""
    texts, y, contexts = _check_rows(texts, y, contexts, name)
    enc = _label_encoder(y, name)
    K = len(enc.classes_)
    if options.ordinal and enc.classes_.dtype.kind not in "iuf":
        raise OptionError("ordinal", f"{name}: {{opt}} needs numeric (ordered) scores; these are text labels")
    teacher = None if teacher_proba is None else _check_teacher(teacher_proba, len(texts), K, "teacher_proba")
    if teacher is None and transfer is not None:
        raise ValueError("transfer data needs teacher probabilities for the training rows too")
    rows = _Rows(texts, contexts, enc.transform(y), teacher)
    rows, val = _validation_rows(rows, validation, enc, options, name, note)
    tx = _transfer_rows(transfer, K)
    cfg = options.network()
    uses_context = rows.contexts is not None
    vocab = fit_vocabulary(cfg, rows.texts + tx.texts,
                           (rows.contexts or []) + (tx.contexts or []) if uses_context else None)
    if aliases is not None:
        vocab.alias(*aliases)
    all_ctx = (rows.contexts + (tx.contexts or [""] * len(tx.texts))) if uses_context else None
    ids, lengths = vocab.encode(rows.texts + tx.texts, all_ctx)
    t_all = rows.teacher if tx.teacher is None else np.concatenate([rows.teacher, tx.teacher])
    w = (np.concatenate([np.ones(len(rows.texts)), balance_weights(rows.teacher, tx.teacher)])
         if options.balance_transfer and len(tx.texts) else None)
    data = _long_repeated(TrainData(ids, lengths, np.concatenate([rows.y, tx.y]), t_all, w), len(rows.texts),
                          options.long_weight)
    val_data = None
    if len(val.texts):
        v_ids, v_len = vocab.encode(val.texts, val.contexts if uses_context else None)
        val_data = TrainData(v_ids, v_len, val.y)
    return Prepared(enc.classes_, rows.y, len(tx.texts), teacher is not None, uses_context, cfg, vocab, data,
                    val_data, _fidelity_rows(fidelity, K, vocab, uses_context))


#: the bounds of a transfer row's weight (:func:`balance_weights`)
BALANCE_CLIP = (0.2, 5.0)


def balance_weights(answers, transfer):
    """The transfer rows' weights that give them the teacher's class mix on the scored answers.

    ``answers`` (n, K) and ``transfer`` (m, K): the teacher's probabilities (rows with NaN are not counted).
    With ``a_c``, ``b_c`` the add-one shares of the arg-max class c among the answers and the transfer rows,
    a transfer row of arg-max c weighs ``clip(a_c / b_c, *BALANCE_CLIP)``, then all m are scaled to mean 1
    (docs/decisions/transfer-balance.md). Returns (m,)."""
    K = transfer.shape[1]

    def shares(p):
        p = p[np.isfinite(p).all(axis=1)]
        return (np.bincount(p.argmax(axis=1), minlength=K) + 1.0) / (len(p) + K)

    w = np.clip(shares(answers) / shares(transfer), *BALANCE_CLIP)
    cls = np.nan_to_num(transfer, nan=-1.0).argmax(axis=1)
    out = w[cls]
    return out * (len(out) / out.sum())


#: the share of the scored training answers shorter than a "long" row (:attr:`TrainOptions.long_weight`)
LONG_QUANTILE = 0.75


def _long_repeated(data, n_scored, weight):
    """``data`` with each row at least as long as the :data:`LONG_QUANTILE` of its first ``n_scored`` (the
    scored answers') lengths repeated to ``weight`` copies: the long answers are few and carry the high scores."""
    if weight == 1 or not n_scored:
        return data
    long_ = np.flatnonzero(data.lengths >= np.quantile(data.lengths[:n_scored], LONG_QUANTILE))
    idx = np.concatenate([np.arange(len(data))] + [long_] * (weight - 1))
    return TrainData(data.ids[idx], data.lengths[idx], data.y[idx], None if data.teacher is None else data.teacher[idx],
                     None if data.weights is None else data.weights[idx])


def _pretrained(word_vectors, prep):
    """``(ids, rows)`` of the embedding that start from ``word_vectors`` (None: none given)."""
    if word_vectors is None:
        return None
    words, vectors = word_vectors
    vectors = np.asarray(vectors, dtype=np.float64)
    if vectors.ndim != 2 or len(vectors) != len(words) or not np.isfinite(vectors).all():
        raise ValueError(f"word_vectors must be (words, vectors) with one finite row per word, got {len(words)} "
                         f"words and vectors of shape {vectors.shape}")
    return pretrained_rows(prep.vocab.tokens, words, vectors, prep.config["embed_dim"], EMBED_SCALE)


def _fidelity_rows(fidelity, K, vocab, uses_context):
    """The fidelity rows encoded, their teacher probabilities in ``teacher`` (None: none given)."""
    if fidelity is None:
        return None
    texts, proba, contexts = _unpack(fidelity, "fidelity")
    p = _check_teacher(proba, len(texts), K, "fidelity proba")
    if not len(texts) or np.isnan(p).any():
        raise ValueError("fidelity needs at least one row, each with the teacher's probabilities")
    f_ids, f_len = vocab.encode(texts, (contexts or [""] * len(texts)) if uses_context else None)
    return TrainData(f_ids, f_len, p.argmax(axis=1), p)


def _check_rows(texts, y, contexts, name):
    """``(texts, y, contexts)`` as lists and an array, checked: one label per text, none missing."""
    texts = as_list(texts, "texts")
    y = np.asarray(as_list(y, "y") if isinstance(y, (str, bytes)) else y)
    if y.ndim != 1:
        raise ValueError(f"y must be one label per text (1-D), got shape {y.shape}")
    if len(texts) != len(y):
        raise ValueError(f"got {len(texts)} texts but {len(y)} labels")
    missing = _missing_labels(y)
    if missing.any():
        rows = np.flatnonzero(missing)
        raise ValueError(f"y has {len(rows)} missing labels (NaN/None), rows {', '.join(map(str, rows[:5]))}"
                         f"{' …' if len(rows) > 5 else ''}; drop them, or pass them as transfer=(texts, "
                         "teacher_proba) if the teacher scored them")
    if len(texts) < 2:
        raise ValueError(f"{name}: only {len(texts)} labeled training row(s); need at least 2")
    if contexts is not None:
        contexts = as_list(contexts, "contexts")
        if len(contexts) != len(texts):
            raise ValueError(f"got {len(texts)} texts but {len(contexts)} contexts")
    return texts, y, contexts


def _missing_labels(y):
    """Boolean mask of missing labels: NaN in a float array; None or NaN in an object array."""
    if y.dtype.kind == "f":
        return np.isnan(y)
    if y.dtype.kind == "O":
        return np.array([v is None or (isinstance(v, float) and v != v) for v in y.tolist()], dtype=bool)
    return np.zeros(len(y), dtype=bool)


def _label_encoder(y, name):
    """A ``LabelEncoder`` fitted on ``y``: its ``classes_`` are the model's classes, sorted."""
    from sklearn.preprocessing import LabelEncoder

    try:
        enc = LabelEncoder().fit(y)
    except TypeError:
        raise ValueError("y mixes numbers and text labels (e.g. 1 and 'correct'); use one kind") from None
    if len(enc.classes_) < 2:
        raise ValueError(f"{name}: the training rows have a single score ({shown(enc.classes_[0])}); "
                         "need at least 2 classes")
    check_classes(enc.classes_, f"{name}: labels")  # "1" and "1.0" are one score: never two classes
    return enc


def _check_teacher(teacher, n, k, what):
    t = np.asarray(teacher, dtype=np.float64)
    if t.shape != (n, k):
        raise ValueError(f"{what} must have shape ({n}, {k}) — one row per text, one column per class "
                         f"in sorted label order — got {t.shape}")
    rows = ~np.isnan(t).all(axis=1)  # an all-NaN row means "no teacher row"
    bad = rows & ~np.isfinite(t).all(axis=1)
    if bad.any():
        raise ValueError(f"{what} has NaN/inf values in {int(bad.sum())} rows (first row {int(np.argmax(bad))})")
    if (t[rows] < 0).any():
        raise ValueError(f"{what} has negative values: pass probabilities, not logits")
    sums = t[rows].sum(axis=1)
    if len(sums) and np.abs(sums - 1.0).max() > 1e-3:
        r = int(np.flatnonzero(rows)[np.argmax(np.abs(sums - 1.0))])
        raise ValueError(f"{what} rows must sum to 1; row {r} sums to {t[r].sum():.4f}")
    return t


def _unpack(part, what):
    if len(part) == 2:
        return as_list(part[0], f"{what} texts"), part[1], None
    if len(part) == 3:
        return (as_list(part[0], f"{what} texts"), part[1],
                None if part[2] is None else as_list(part[2], f"{what} contexts"))
    raise ValueError(f"{what} must be a tuple (texts, {'y' if what == 'validation' else 'proba'}[, contexts])")


def _validation_rows(rows, validation, enc, options, name, note):
    """``(training rows, validation rows)``: the given ones (labels no training row has dropped, a
    note), none (``False``), or a seeded stratified holdout of ``rows``."""
    none = _Rows([], None, np.zeros(0, np.int64), None)
    if validation is False:
        return rows, none
    if validation is None:
        if len(rows.texts) < MIN_HOLDOUT_ROWS:
            note(f"{name}: only {len(rows.texts)} labeled rows, so no validation set; training for all epochs")
            return rows, none
        fraction = options.validation_fraction
        tr, va = holdout(rows.y, fraction, options.seed)
        rare = rare_classes(rows.y, fraction)
        if rare:  # never held out whole: every training class stays a class of the model
            note(f"{name}: class{'es' if len(rare) > 1 else ''} {', '.join(str(enc.classes_[k]) for k in rare)} "
                 f"{'have' if len(rare) > 1 else 'has'} fewer than {round(1 / fraction)} rows: "
                 f"all kept for training, none held out for validation")
        if not len(va):
            note(f"{name}: no class has enough rows to hold some out, so no validation set; "
                 "training for all epochs")
        return rows.take(tr), rows.take(va)._replace(teacher=None)
    v_texts, v_labels, v_ctx = _unpack(validation, "validation")
    v_labels = np.asarray(v_labels)
    if len(v_labels) != len(v_texts):
        raise ValueError(f"validation has {len(v_texts)} texts but {len(v_labels)} labels")
    known = set(enc.classes_.tolist())
    keep = [i for i, v in enumerate(v_labels.tolist()) if v in known]
    if len(keep) < len(v_texts):
        unseen = sorted({str(v) for v in v_labels.tolist() if v not in known})
        note(f"{name}: {len(v_texts) - len(keep)} validation rows have labels no training row has "
             f"({', '.join(unseen)}); not used for validation")
        v_texts, v_ctx, v_labels = take(v_texts, keep), take(v_ctx, keep), v_labels[keep]
    v_y = enc.transform(v_labels) if len(keep) else np.zeros(0, np.int64)
    return rows, _Rows(v_texts, v_ctx, v_y, None)


def fit_vocabulary(config, texts, contexts=None):
    """The vocabulary :func:`fit` gives a network of ``config`` trained on ``texts`` (its training and transfer
    answers, in that order) and their ``contexts``: the ``max_vocab`` most frequent words."""
    return Vocabulary(max_size=config["max_vocab"], max_len=config["max_len"]).fit(texts, contexts=contexts)


def _transfer_rows(transfer, K):
    """The transfer rows (label −1: the soft term only), or none."""
    if transfer is None:
        return _Rows([], None, np.zeros(0, np.int64), None)
    texts, proba, contexts = _unpack(transfer, "transfer")
    return _Rows(texts, contexts, -np.ones(len(texts), np.int64), _check_teacher(proba, len(texts), K,
                                                                                 "transfer proba"))


def _run(prep, options, *, settings, verbose, stream, name, note, on_epoch):
    """The network, trained (:func:`tinykd.train.loop.train`); ``(net, history)``. Ctrl-C is a
    ``KeyboardInterrupt``; a loss not finite in the first epoch an :class:`OptionError` on ``lr``."""
    net = StudentNet(prep.config, len(prep.vocab), len(prep.classes), seed=options.seed)
    if prep.start is not None:
        ids, rows = prep.start
        net.p["emb.E"][ids, :rows.shape[1]] = rows
    if verbose:
        n_val = 0 if prep.val is None else len(prep.val)
        print(f"tinykd: training {options.preset or 'custom'} student ({net.size:,} parameters) on "
              f"{len(prep.y)} texts" + (f" + {prep.n_transfer} transfer texts" if prep.n_transfer else "")
              + f", {n_val} validation; λ={options.lam_for(prep.teacher):g}, T={options.temperature:g}",
              file=stream, flush=True)
    with warnings.catch_warnings():  # overflow warnings of a diverging run: reported below, in one line
        warnings.simplefilter("ignore", RuntimeWarning)
        history = train(net, prep.data, prep.val, options, settings=settings, verbose=verbose, stream=stream,
                        on_epoch=on_epoch, fidelity=prep.fid)
    if history["stopped"] == "interrupted":
        raise KeyboardInterrupt
    if history["stopped"] == "non-finite loss":
        if not history["best_epoch"]:
            raise OptionError("lr", f"{name}: training diverged in the first epoch (loss not finite); "
                              "nothing saved — try a smaller {opt}")
        note(f"{name}: the loss became non-finite; kept the weights of epoch {history['best_epoch']}")
    return net, history


def _record(prep, net, history, options, name, note, seconds):
    """The :class:`Student`: the trained net, its vocabulary and classes, and the metadata of its
    training (options, counts, history, notes) and of its validation rows (offsets, metrics,
    calibration, stored predictions)."""
    o = options
    labels = [c.item() if hasattr(c, "item") else c for c in prep.classes]
    best_acc = next((r["val_acc"] for r in history["epochs"] if r["epoch"] == history["best_epoch"]), None)
    meta = {
        "preset": o.preset, "uses_context": prep.uses_context,
        "training": {
            "lam": o.lam_for(prep.teacher), "temperature": float(o.temperature), "soft_loss": o.soft_loss,
            **({"ordinal": float(o.ordinal)} if o.ordinal and prep.teacher else {}),
            **({"long_weight": int(o.long_weight)} if o.long_weight != 1 else {}),
            **({"balance_transfer": True} if prep.data.weights is not None else {}),
            **({"word_vectors": int(len(prep.start[0]))} if prep.start is not None else {}),
            **({"aliases": len(prep.vocab.aliases)} if prep.vocab.aliases else {}),
            "seed": int(o.seed), "epochs": int(o.epochs), "batch_size": int(o.batch_size), "lr": float(o.lr),
            "patience": int(o.patience), **({"average_epochs": float(o.average)} if o.average is not None else {}),
            "n_train": int(len(prep.y)), "n_val": 0 if prep.val is None else int(len(prep.val)),
            "n_transfer": prep.n_transfer, "teacher": prep.teacher,
            "best_epoch": history["best_epoch"], "stopped": history["stopped"],
            "best_val_loss": history["best_val_loss"], "best_val_acc": best_acc, "seconds": round(seconds, 2),
        },
        "history": history["epochs"],
        "notes": list(note),
    }
    if prep.val is None:
        meta["calibration"] = {"method": None, "temperature": None, "n_val": 0,
                               "reason": "no validation rows: confidence is the raw softmax"}
    else:
        meta.update(_validation_meta(net, prep.val, labels, o.offsets_for(prep.teacher), o.seed, name, note, prep.fid))
        meta["notes"] = list(note)
    if prep.fid is not None:
        from tinykd.train.loop import evaluate_fidelity

        with blas_threads(1):
            kl, agree = evaluate_fidelity(net, prep.fid)
        meta["fidelity_metrics"] = {"kl": kl, "agreement": agree, "n": int(len(prep.fid))}
    return Student(prep.vocab, net, labels, meta)


def _validation_meta(net, val, labels, offsets, seed, name, note, fid=None):
    """What a model file keeps of its validation rows: decision offsets when ``offsets`` (folded into ``net``'s
    output bias; chosen on the fidelity rows ``fid`` against the teacher's arg-max when given),
    metrics, the calibration and the stored predictions (a sample drawn with ``seed``)."""
    meta = {}
    with blas_threads(1):  # the same bits in every process: the calibration is fitted on these
        logits = net.predict_logits(val.ids, val.lengths)  # the training forward: no scoring kernels compiled
    if offsets:
        on = val if fid is None else fid
        with blas_threads(1):
            on_logits = logits if fid is None else net.predict_logits(fid.ids, fid.lengths)
        meta["decision_offsets"] = _decision_offsets(net, on, on_logits, name, note, "validation" if fid is None
                                                     else "fidelity", bagged=offsets == "bagged", seed=seed)
        if any(meta["decision_offsets"]["offsets"]):
            with blas_threads(1):
                logits = net.predict_logits(val.ids, val.lengths)
    pred = logits.argmax(axis=1)
    names = [str(c) for c in labels]
    meta["validation_metrics"] = scoring_metrics([names[k] for k in val.y], [names[k] for k in pred], labels=names)
    meta["calibration"] = calibrate(logits, val.y)
    if meta["calibration"]["temperature"] is None:
        note(f"{name}: {meta['calibration']['reason']}")
    # what `tinykd score --target-accuracy` chooses its review threshold on (float32 exactly); a seeded
    # sample of at most STORED_VALIDATION_ROWS, so that the metadata stays within what a model file may hold
    stored = np.arange(len(val.y))
    if len(stored) > STORED_VALIDATION_ROWS:
        stored = np.sort(np.random.default_rng(seed).choice(len(val.y), STORED_VALIDATION_ROWS, replace=False))
    meta["validation_predictions"] = {"y": [int(val.y[k]) for k in stored],
                                      "logits": [[float(str(v)) for v in logits[k]] for k in stored]}
    return meta


def _decision_offsets(net, val, logits, name, note, rows="validation", bagged=False, seed=0):
    """Per-class offsets chosen on the ``rows`` ``val`` (validation rows and their labels, or the fidelity
    rows and the teacher's arg-max: :func:`tinykd.train.offsets.fit_offsets`, or with ``bagged`` their mean
    over bootstrap resamples drawn with ``seed``: :func:`~tinykd.train.offsets.fit_offsets_bagged`), added to
    the output layer's bias in place; what was chosen, as ``meta["decision_offsets"]`` records it."""
    from tinykd.train.offsets import BAGS, MIN_ROWS, fit_offsets, fit_offsets_bagged

    K = logits.shape[1]
    if len(val.y) < MIN_ROWS:
        return {"offsets": [0.0] * K, "n_val": int(len(val.y)),
                "reason": f"fewer than {MIN_ROWS} validation rows: no decision offsets"}
    b, before, after = fit_offsets_bagged(logits, val.y, seed) if bagged else fit_offsets(logits, val.y)
    what = "validation accuracy" if rows == "validation" else "agreement with the teacher"
    if b.any():
        net.p["out.b"][...] += b.astype(net.p["out.b"].dtype)
        note(f"{name}: decision offsets {', '.join(f'{v:+g}' for v in b)} ({what} "
             f"{before[0]:.3f} → {after[0]:.3f}, QWK {before[1]:.3f} → {after[1]:.3f}), folded into the output bias")
    return {"offsets": [float(v) for v in b], "n_val": int(len(val.y)), "chosen_on": rows,
            **({"bagged": BAGS} if bagged else {}),
            "validation_before": {"accuracy": before[0], "qwk": before[1]},
            "validation_after": {"accuracy": after[0], "qwk": after[1]}}


def calibrate(logits, y):
    """The calibration stored in a model file: one temperature fitted on the validation rows'
    ``logits`` and labels ``y`` (:func:`tinykd.scoring.calibration.fit_temperature`), with the
    validation ECE and NLL before and after; none (temperature None, and the reason) below
    :data:`~tinykd.scoring.calibration.MIN_CALIBRATION_ROWS` rows."""
    from tinykd.scoring.calibration import (MIN_CALIBRATION_ROWS, N_BINS, calibrated_proba,
                                            confidence_and_correct, expected_calibration_error,
                                            fit_temperature, nll)

    if len(y) < MIN_CALIBRATION_ROWS:
        return {"method": None, "temperature": None, "n_val": int(len(y)),
                "reason": f"only {len(y)} validation rows, fewer than the {MIN_CALIBRATION_ROWS} a temperature "
                          "needs: confidence is the raw softmax"}
    t = round(fit_temperature(logits, y), 6)  # the value stored is the value used
    ece = {}
    for name, temp in (("before", 1.0), ("after", t)):
        ece[name] = expected_calibration_error(*confidence_and_correct(calibrated_proba(logits, temp), y))
    return {"method": "temperature", "temperature": t, "n_val": int(len(y)), "bins": N_BINS,
            "val_ece_before": round(ece["before"], 6), "val_ece_after": round(ece["after"], 6),
            "val_nll_before": round(nll(logits, y), 6), "val_nll_after": round(nll(logits, y, t), 6)}
