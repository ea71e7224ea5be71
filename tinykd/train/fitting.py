"""Training students: :func:`fit` (one student) and :func:`fit_items` (rows of a data file →
one student, or one per item in a :class:`~tinykd.scoring.student.Bundle`).

Every rule of training lives here, for every face (the command line, the scikit-learn
estimator, the demo, other Python tools):

* **Options** are checked once (:func:`check_options`); a bad value is an
  :class:`~tinykd.errors.OptionError` naming the option.
* **Validation rows.** Given rows are used as they are; otherwise a seeded stratified
  ``validation_fraction`` (1/8) of the labelled training rows is held out — when there are
  at least :data:`MIN_HOLDOUT_ROWS` of them; below that there is no validation set and
  training runs for all epochs (said). A class with fewer than 8 rows keeps them all in
  training (said): no class is ever held out whole (:mod:`tinykd.train.splits`).
* **Unseen labels.** Validation rows whose label no training row has cannot be scored by
  the model: they are dropped from validation, loudly (a note).
* **Labels** of a file: numbers in any spelling are one score, text stays text, and an
  empty / NaN / NA cell is *unlabeled* (:func:`tinykd.files.csvfiles.normalize_labels`).
* **Teacher join** (:func:`fit_items`): the teacher's probabilities are joined to the rows
  by id, never by position; unlabeled training rows that the teacher scored are transfer
  data (soft term only); each item's student takes the columns of its own classes,
  renormalised.
* **Failures.** Ctrl-C stops training and raises ``KeyboardInterrupt`` (nothing is
  returned, so nothing half-trained is saved); a loss that is not finite in the first
  epoch is an error suggesting a smaller ``lr``; later, the best weights are kept (a note).

Notes (warnings about the data) are printed to ``stream`` when ``verbose`` and always
kept in ``meta["notes"]``.
"""
from __future__ import annotations

import os
import sys
import time
import warnings

import numpy as np

from tinykd.errors import OptionError, check_average, check_seed
from tinykd.quality.metrics import scoring_metrics
from tinykd.nn.network import StudentNet, make_config
from tinykd.settings import blas_threads
from tinykd.train.options import DEFAULT_LAM, MAX_LAM, TEMPERATURES
from tinykd.train.splits import MIN_HOLDOUT_ROWS, VALIDATION_FRACTION, holdout, rare_classes
from tinykd.scoring.student import Bundle, Student
from tinykd.files.csvfiles import duplicated, label_key, label_sort_key, normalize_labels
from tinykd.scoring.text import Vocabulary, as_list
from tinykd.train.losses import SOFT_LOSSES
from tinykd.train.loop import TrainData, train

#: most validation rows whose predictions a model file keeps (for ``tinykd score --target-accuracy``)
STORED_VALIDATION_ROWS = 2000


class _Notes(list):
    def __init__(self, verbose, stream):
        super().__init__()
        self.verbose, self.stream = verbose, stream

    def __call__(self, msg):
        self.append(msg)
        if self.verbose:
            print(msg, file=self.stream, flush=True)


def check_options(*, preset="7t", config=None, lam=None, temperature=1.0, soft_loss="ce", epochs=40, batch_size=32,
                  lr=1e-3, patience=5, validation_fraction=VALIDATION_FRACTION, seed=0):
    """Check every training option; returns the network config. Raises :class:`OptionError`."""
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("patience", patience)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise OptionError(name, f"{{opt}} must be > 0 (a whole number), got {value!r}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float, np.number)) or not lr > 0 or not np.isfinite(lr):
        raise OptionError("lr", f"{{opt}} must be > 0, got {lr!r}")
    lo, hi = TEMPERATURES  # beyond these T² (or 1/T) overflows the loss: "diverged" would blame the lr
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.number)) \
            or not lo <= temperature <= hi:
        raise OptionError("temperature", f"{{opt}} must be between {lo:g} and {hi:g}, got {temperature!r}")
    if lam is not None and (isinstance(lam, bool) or not isinstance(lam, (int, float, np.number))
                            or not 0 <= lam <= MAX_LAM):
        raise OptionError("lam", f"{{opt}} must be >= 0 and at most {MAX_LAM:g}, got {lam!r}")
    if soft_loss not in SOFT_LOSSES:
        raise OptionError("soft_loss", f"{{opt}} must be one of {', '.join(SOFT_LOSSES)}, got {soft_loss!r}")
    if isinstance(validation_fraction, bool) or not isinstance(validation_fraction, (int, float, np.number)) \
            or not 0.0 < validation_fraction < 1.0:
        raise OptionError("validation_fraction", f"{{opt}} must be between 0 and 1, got {validation_fraction!r}")
    check_seed(seed)
    if config is not None and not isinstance(config, dict):
        raise OptionError("config", f"{{opt}} must be a dict of network settings, got {type(config).__name__}")
    return make_config(preset, **(config or {}))


def _missing_labels(y):
    """Boolean mask of missing labels: NaN in a float array; None or NaN in an object array."""
    if y.dtype.kind == "f":
        return np.isnan(y)
    if y.dtype.kind == "O":
        return np.array([v is None or (isinstance(v, float) and v != v) for v in y.tolist()], dtype=bool)
    return np.zeros(len(y), dtype=bool)


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
        return as_list(part[0], f"{what} texts"), part[1], None if part[2] is None else as_list(part[2],
                                                                                                f"{what} contexts")
    raise ValueError(f"{what} must be a tuple (texts, {'y' if what == 'validation' else 'proba'}[, contexts])")


def _take(xs, idx):
    return None if xs is None else [xs[i] for i in idx]


def fit(texts, y, teacher_proba=None, *, contexts=None, preset="7t", config=None, lam=None,
        temperature=1.0, soft_loss="ce", validation=None, validation_fraction=VALIDATION_FRACTION, transfer=None,
        epochs=40,
        batch_size=32, lr=1e-3, patience=5, clip_norm=5.0, seed=0, offsets=True, verbose=True, stream=None,
        settings=None, name="model", on_epoch=None, average=None):
    """Train one student on texts and labels, distilling ``teacher_proba`` if given.

    Parameters
    ----------
    texts, y : training answers and their human scores (any labels of one kind).
    teacher_proba : (n, K) teacher probabilities, columns in sorted label order
        (``np.unique(y)``); an all-NaN row means "no teacher row for this text".
    contexts : optional per-text context (question / reference answer).
    preset, config : a preset name and config overrides (see :mod:`tinykd.nn.network`).
    lam : λ of Eq. 4; default :data:`DEFAULT_LAM` (4) with a teacher, 0 without. 0 = plain NN.
    temperature : T (1 = Eq. 4 exactly).
    soft_loss : "ce" (Eq. 4) or "mse" (centred logits; :mod:`tinykd.train.losses`).
    validation : ``(texts, y[, contexts])`` for early stopping, ``False`` for none; default:
        a seeded stratified ``validation_fraction`` of the training rows (if at least
        :data:`MIN_HOLDOUT_ROWS`). Labels no training row has are dropped from it (a note).
    transfer : ``(texts, teacher_proba[, contexts])`` unlabeled rows for the soft term.
    epochs, batch_size, lr, patience, clip_norm, seed : training settings.
    offsets : choose per-class decision offsets on the validation rows and fold them into the
        output layer's bias (:mod:`tinykd.train.offsets`; at least :data:`tinykd.train.offsets.MIN_ROWS` rows);
        ``meta["decision_offsets"]`` records them.
    verbose, stream : progress lines and notes (default ``sys.stderr``).
    settings : :class:`tinykd.settings.Settings` (cores, BLAS threads; no effect on results).
    name : how notes and errors name this student (e.g. ``"item 'Q1'"``).
    average : None, or Polyak averaging of the weights over about the last ``average`` epochs
        (:func:`tinykd.train.loop.train`): the averaged weights are validated, kept and returned.
    on_epoch : called with each epoch's record (``epoch``, ``loss``, ``val_loss``, ``val_acc``);
        a ``KeyboardInterrupt`` it raises stops training as Ctrl-C does.

    Returns a :class:`~tinykd.scoring.student.Student` with ``meta["training"]``,
    ``meta["validation_metrics"]``, ``meta["history"]`` and ``meta["notes"]``.
    Raises ``KeyboardInterrupt`` on Ctrl-C and :class:`OptionError` / ``ValueError`` on bad input.
    """
    from sklearn.preprocessing import LabelEncoder

    t_start = time.time()
    stream = sys.stderr if stream is None else stream
    note = _Notes(verbose, stream)
    cfg = check_options(preset=preset, config=config, lam=lam, temperature=temperature, soft_loss=soft_loss,
                        epochs=epochs,
                        batch_size=batch_size, lr=lr, patience=patience,
                        validation_fraction=validation_fraction, seed=seed)
    if not isinstance(offsets, (bool, np.bool_)):
        raise OptionError("offsets", f"{{opt}} must be True or False, got {offsets!r}")
    check_average(average)
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
    try:
        enc = LabelEncoder().fit(y)
    except TypeError:
        raise ValueError("y mixes numbers and text labels (e.g. 1 and 'correct'); use one kind") from None
    classes = enc.classes_
    if len(classes) < 2:
        raise ValueError(f"{name}: the training rows have a single score ({classes[0]!r}); need at least 2 classes")
    yi = enc.transform(y)
    K = len(classes)
    teacher = None if teacher_proba is None else _check_teacher(teacher_proba, len(texts), K, "teacher_proba")
    if lam is None:
        lam = DEFAULT_LAM if teacher is not None else 0.0
    if teacher is None and transfer is not None:
        raise ValueError("transfer data needs teacher probabilities for the training rows too")

    # validation rows: the one rule
    v_texts, v_y, v_ctx = [], np.zeros(0, np.int64), None
    if validation is None:
        if len(texts) >= MIN_HOLDOUT_ROWS:
            tr, va = holdout(yi, validation_fraction, seed)
            rare = rare_classes(yi, validation_fraction)
            if rare:  # never held out whole: every training class stays a class of the model
                note(f"{name}: class{'es' if len(rare) > 1 else ''} {', '.join(str(classes[k]) for k in rare)} "
                     f"{'have' if len(rare) > 1 else 'has'} fewer than {round(1 / validation_fraction)} rows: "
                     f"all kept for training, none held out for validation")
            if not len(va):
                note(f"{name}: no class has enough rows to hold some out, so no validation set; "
                     "training for all epochs")
            v_texts, v_ctx, v_y = _take(texts, va), _take(contexts, va), yi[va]
            texts, contexts, yi = _take(texts, tr), _take(contexts, tr), yi[tr]
            teacher = None if teacher is None else teacher[tr]
        else:
            note(f"{name}: only {len(texts)} labeled rows, so no validation set; training for all epochs")
    elif validation is not False:
        v_texts, v_labels, v_ctx = _unpack(validation, "validation")
        v_labels = np.asarray(v_labels)
        if len(v_labels) != len(v_texts):
            raise ValueError(f"validation has {len(v_texts)} texts but {len(v_labels)} labels")
        known = set(classes.tolist())
        keep = [i for i, v in enumerate(v_labels.tolist()) if v in known]
        if len(keep) < len(v_texts):
            unseen = sorted({str(v) for v in v_labels.tolist() if v not in known})
            note(f"{name}: {len(v_texts) - len(keep)} validation rows have labels no training row has "
                 f"({', '.join(unseen)}); not used for validation")
            v_texts, v_ctx, v_labels = _take(v_texts, keep), _take(v_ctx, keep), v_labels[keep]
        v_y = enc.transform(v_labels) if len(keep) else np.zeros(0, np.int64)

    # transfer rows: label −1 (soft term only)
    tx_texts, tx_ctx, tx_teacher = [], None, None
    if transfer is not None:
        tx_texts, tx_p, tx_ctx = _unpack(transfer, "transfer")
        tx_teacher = _check_teacher(tx_p, len(tx_texts), K, "transfer proba")

    uses_context = contexts is not None
    vocab = Vocabulary(max_size=cfg["max_vocab"], max_len=cfg["max_len"])
    vocab.fit(texts + tx_texts, contexts=(contexts or []) + (tx_ctx or []) if uses_context else None)
    all_ctx = (contexts + (tx_ctx or [""] * len(tx_texts))) if uses_context else None
    ids, lengths = vocab.encode(texts + tx_texts, all_ctx)
    y_all = np.concatenate([yi, -np.ones(len(tx_texts), np.int64)])
    t_all = None
    if teacher is not None:
        t_all = teacher if tx_teacher is None else np.concatenate([teacher, tx_teacher])
    data = TrainData(ids, lengths, y_all, t_all)
    val = None
    if len(v_texts):
        v_ids, v_len = vocab.encode(v_texts, v_ctx if uses_context else None)
        val = TrainData(v_ids, v_len, v_y)

    net = StudentNet(cfg, len(vocab), K, seed=seed)
    lam_used = float(lam) if teacher is not None else 0.0
    if verbose:
        print(f"tinykd: training {preset or 'custom'} student ({net.size:,} parameters) on "
              f"{len(yi)} texts" + (f" + {len(tx_texts)} transfer texts" if tx_texts else "")
              + f", {len(v_y)} validation; λ={lam_used:g}, T={temperature:g}", file=stream, flush=True)
    with warnings.catch_warnings():  # overflow warnings of a diverging run: reported below, in one line
        warnings.simplefilter("ignore", RuntimeWarning)
        history = train(net, data, val, lam=lam_used, temperature=temperature, soft_loss=soft_loss,
                        epochs=epochs, batch_size=batch_size, lr=lr, patience=patience, clip_norm=clip_norm, seed=seed,
                        verbose=verbose, stream=stream, settings=settings, on_epoch=on_epoch, average=average)
    if history["stopped"] == "interrupted":
        raise KeyboardInterrupt
    if history["stopped"] == "non-finite loss":
        if not history["best_epoch"]:
            raise OptionError("lr", f"{name}: training diverged in the first epoch (loss not finite); "
                              "nothing saved — try a smaller {opt}")
        note(f"{name}: the loss became non-finite; kept the weights of epoch {history['best_epoch']}")
    labels = [c.item() if hasattr(c, "item") else c for c in classes]
    meta = {
        "preset": preset, "uses_context": uses_context,
        "training": {
            "lam": lam_used, "temperature": float(temperature), "soft_loss": soft_loss,
            "seed": int(seed), "epochs": int(epochs), "batch_size": int(batch_size), "lr": float(lr),
            "patience": int(patience), **({"average_epochs": float(average)} if average is not None else {}),
            "n_train": int(len(yi)), "n_val": int(len(v_y)),
            "n_transfer": int(len(tx_texts)), "teacher": teacher is not None,
            "best_epoch": history["best_epoch"], "stopped": history["stopped"],
            "best_val_loss": history["best_val_loss"],
            "best_val_acc": next((r["val_acc"] for r in history["epochs"]
                                  if r["epoch"] == history["best_epoch"]), None),
            "seconds": round(time.time() - t_start, 2),
        },
        "history": history["epochs"],
        "notes": list(note),
    }
    if val is not None:  # through the training forward: scoring kernels are not compiled for this
        with blas_threads(1):  # (the same bits in every process: the calibration is fitted on these)
            logits = net.predict_logits(val.ids, val.lengths)
        if offsets:
            meta["decision_offsets"] = _decision_offsets(net, val, logits, name, note)
            if any(meta["decision_offsets"]["offsets"]):
                with blas_threads(1):
                    logits = net.predict_logits(val.ids, val.lengths)
            meta["notes"] = list(note)
        pred = logits.argmax(axis=1)
        names = [str(c) for c in labels]
        meta["validation_metrics"] = scoring_metrics([names[k] for k in v_y], [names[k] for k in pred],
                                                     labels=names)
        meta["calibration"] = calibrate(logits, v_y)
        if meta["calibration"]["temperature"] is None:
            note(f"{name}: {meta['calibration']['reason']}")
            meta["notes"] = list(note)
        # what `tinykd score --target-accuracy` chooses its review threshold on (float32 exactly); at
        # most STORED_VALIDATION_ROWS of them (a seeded sample), so that the metadata stays within
        # what a model file may hold (tinykd.scoring.modelfile bounds it by the file's size)
        stored = np.arange(len(v_y))
        if len(stored) > STORED_VALIDATION_ROWS:
            stored = np.sort(np.random.default_rng(seed).choice(len(v_y), STORED_VALIDATION_ROWS, replace=False))
        meta["validation_predictions"] = {"y": [int(v_y[k]) for k in stored],
                                          "logits": [[float(str(v)) for v in logits[k]] for k in stored]}
    else:
        meta["calibration"] = {"method": None, "temperature": None, "n_val": 0,
                               "reason": "no validation rows: confidence is the raw softmax"}
    return Student(vocab, net, labels, meta)


def _decision_offsets(net, val, logits, name, note):
    """Per-class offsets chosen on the validation rows (:func:`tinykd.train.offsets.fit_offsets`), added
    to the output layer's bias in place; what was chosen, as ``meta["decision_offsets"]`` records it."""
    from tinykd.train.offsets import MIN_ROWS, fit_offsets

    K = logits.shape[1]
    if len(val.y) < MIN_ROWS:
        return {"offsets": [0.0] * K, "n_val": int(len(val.y)),
                "reason": f"fewer than {MIN_ROWS} validation rows: no decision offsets"}
    b, before, after = fit_offsets(logits, val.y)
    if b.any():
        net.p["out.b"][...] += b.astype(net.p["out.b"].dtype)
        note(f"{name}: decision offsets {', '.join(f'{v:+g}' for v in b)} (validation accuracy "
             f"{before[0]:.3f} → {after[0]:.3f}, QWK {before[1]:.3f} → {after[1]:.3f}), folded into the output bias")
    return {"offsets": [float(v) for v in b], "n_val": int(len(val.y)),
            "validation_before": {"accuracy": before[0], "qwk": before[1]},
            "validation_after": {"accuracy": after[0], "qwk": after[1]}}


def calibrate(logits, y):
    """The calibration stored in a model file: one temperature fitted on the validation rows'
    ``logits`` and labels ``y`` (:func:`tinykd.scoring.calibration.fit_temperature`), with the
    validation ECE and NLL before and after; none (temperature None, and the reason) below
    :data:`~tinykd.scoring.calibration.MIN_CALIBRATION_ROWS` rows."""
    from tinykd.scoring.calibration import (MIN_CALIBRATION_ROWS, N_BINS, calibrated_proba, confidence_and_correct,
                              expected_calibration_error, fit_temperature, nll)

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


# ------------------------------------------------------------------------------ fit_items
def item_order(name):
    """Sort key of item names: numbers numerically ("2" before "10"), then text."""
    return (len(name), name) if name.isdigit() else (10 ** 9, name)


def _teacher_rows(teacher, ids, classes, from_logits, allow_missing):
    """(len(ids), K) float64 probabilities by id from a soft-label file or an ``(ids, classes, proba)``
    triple; NaN rows where the teacher has no row (only with ``allow_missing``)."""
    from tinykd.files.softlabels import join_by_id, read_soft_labels

    want = [label_key(c) for c in classes]  # p_1 for a score spelt 1, 1.0 or 01
    if isinstance(teacher, (list, tuple)) and teacher and all(isinstance(t, (str, os.PathLike)) for t in teacher):
        from tinykd.files.softlabels import merge_soft_label_tables

        teacher = teacher[0] if len(teacher) == 1 else merge_soft_label_tables(teacher, from_logits=from_logits)
    if isinstance(teacher, (str, os.PathLike)):
        p = read_soft_labels(teacher, ids, want, from_logits=from_logits, allow_missing=allow_missing)
    else:
        t_ids, t_classes, t_p = teacher
        t_classes = [label_key(c) for c in t_classes]
        if sorted(t_classes) != sorted(want):
            raise ValueError(f"teacher classes {t_classes} do not match the training labels {want}")
        p = np.asarray(t_p, dtype=np.float64)[:, [t_classes.index(c) for c in want]]
        p = join_by_id("teacher", [str(i).strip() for i in t_ids], p, ids, allow_missing)
    return np.asarray(p, dtype=np.float64)


def plan_items(texts, labels, *, items=None, ids=None, contexts=None, splits=None, train_split="train",
               val_split=None, teacher=None, from_logits=False, allow_missing_teacher=False, columns=None,
               verbose=True, stream=None, **options):
    """Every rule of :func:`fit_items` up to training: the rows of a data file checked, split
    (training / validation / not used), grouped per item and joined to the teacher by id.
    Returns an :class:`ItemPlan`: one :class:`ItemJob` per student, for :func:`fit_item`.

    Parameters
    ----------
    texts : the answers, one per row.
    labels : the human scores as read (strings or values): numbers in any spelling are one
        score, text stays text; empty / NaN / NA is *unlabeled*.
    items : per-row item (question); one student per distinct item. None: one student.
    ids : per-row ids; needed with ``teacher`` (the join is by id; ids must be unique).
    contexts : per-row context (question / reference answer) placed before the answer.
    splits : per-row split values, or None (every row trains). Rows whose split is
        ``train_split`` train; rows whose split is ``val_split`` (default ``"val"``, if
        present) drive early stopping; other rows are not used (a note says how many).
        Without validation rows an item holds out 1/8 of its rows (see :func:`fit`).
    teacher : a soft-label file (see :mod:`tinykd.files.softlabels`), a list of them (e.g. one per
        item: joined by id, a class a file lacks is 0), or an ``(ids, classes, proba)`` triple. Labelled rows need a teacher row (or ``allow_missing_teacher``:
        those train on the hard label alone); unlabeled training rows with one are
        transfer data.
    from_logits : read the file's ``logit_`` columns through a softmax.
    columns : the data file's column names (``text``, ``label``, ``id``, ``context``,
        ``item``), kept in the model's metadata and named in messages.
    options : :func:`fit`'s options (preset, config, lam, temperature, epochs, batch_size,
        lr, patience, seed, settings, …), the same for every item.

    Notes about the data are printed (``verbose``) as they are found.
    """
    stream = sys.stderr if stream is None else stream
    note = _Notes(verbose, stream)
    check_options(**{k: v for k, v in options.items() if k in (
        "preset", "config", "lam", "temperature", "soft_loss", "epochs", "batch_size", "lr", "patience",
        "validation_fraction", "seed")})
    cols = {"text": "text", "label": "label", "id": "id", "context": None, "item": None, **(columns or {})}
    texts = as_list(texts, "texts")
    n = len(texts)
    labels = as_list(labels, "labels")
    items, ids, contexts, splits = (None if xs is None else as_list(xs, what) for what, xs in (
        ("items", items), ("ids", ids), ("contexts", contexts), ("splits", splits)))
    for what, xs in (("labels", labels), ("items", items), ("ids", ids), ("contexts", contexts),
                     ("splits", splits)):
        if xs is not None and len(xs) != n:
            raise ValueError(f"got {n} texts but {len(xs)} {what}")
    if teacher is not None and ids is None:
        raise ValueError("teacher= needs ids= (the teacher's rows are joined by id)")
    labels, kind = normalize_labels(labels)
    if kind == "none":
        raise ValueError(f"the label column {cols['label']!r} is empty in every row")
    contexts = None if contexts is None else ["" if c is None else c for c in contexts]
    ids = None if ids is None else [str(i).strip() for i in ids]
    items = None if items is None else [str(i).strip() for i in items]

    # rows: training, validation, not used
    if splits is None:
        train_idx, val_idx = list(range(n)), []
    else:
        splits = [str(s).strip() for s in splits]
        present = sorted(set(splits))
        train_idx = [i for i, s in enumerate(splits) if s == train_split]
        if not train_idx:
            raise OptionError("train_split", f"no rows with split == {train_split!r}; the splits are "
                              f"{', '.join(map(repr, present[:10]))}; set {{opt}}")
        want_val = "val" if val_split is None else val_split
        val_idx = [i for i, s in enumerate(splits) if want_val and s == want_val]
        if val_split is not None and not val_idx:
            raise OptionError("val_split", f"no rows with split == {val_split!r}; the splits are "
                              f"{', '.join(map(repr, present[:10]))}; set {{opt}}")
        used = set(train_idx) | set(val_idx)
        ignored = {}
        for i, s in enumerate(splits):
            if i not in used:
                ignored[s] = ignored.get(s, 0) + 1
        if ignored:
            val = f" or {want_val!r}" if val_idx else ""
            note(f"not used: {sum(ignored.values()):,} rows whose split is not {train_split!r}{val} "
                 f"({', '.join(f'{k or repr(k)}: {v:,}' for k, v in sorted(ignored.items()))})")
    lab_idx = [i for i in train_idx if labels[i] is not None]
    unl_idx = [i for i in train_idx if labels[i] is None]
    val_idx = [i for i in val_idx if labels[i] is not None]
    if not lab_idx:
        raise ValueError(f"no training row has a label in {cols['label']!r}")
    used = lab_idx + unl_idx + val_idx
    if ids is not None:
        blank = [i for i in used if not ids[i]]
        if teacher is not None and blank:
            raise ValueError(f"{len(blank)} rows have an empty {cols['id']!r} (row {blank[0]}); "
                             "every row needs an id to join the teacher's probabilities")
        dups = duplicated([ids[i] for i in used if ids[i]])
        if dups:
            msg = (f"duplicate ids in {cols['id']!r}: {', '.join(map(repr, dups[:5]))}"
                   f"{' …' if len(dups) > 5 else ''}")
            if teacher is not None:
                raise ValueError(msg + "; ids must be unique to join the teacher's probabilities")
            note("warning: " + msg)

    # one group of rows per student
    if items is not None:
        groups = {}
        for i in used:
            groups.setdefault(items[i], []).append(i)
        if "" in groups:
            raise ValueError(f"{len(groups[''])} rows have an empty {cols['item']!r}")
        group_names = sorted(groups, key=item_order)
    else:
        groups, group_names = {None: used}, [None]

    # the teacher, joined by id
    all_classes = sorted({labels[i] for i in lab_idx}, key=label_sort_key)
    teacher_row = {}
    if teacher is not None:
        p = _teacher_rows(teacher, [ids[i] for i in lab_idx], all_classes, from_logits, allow_missing_teacher)
        teacher_row.update({i: p[k] for k, i in enumerate(lab_idx)})
        miss = int(np.isnan(p).all(axis=1).sum())
        if miss:
            note(f"{miss} training rows have no teacher row; they get the hard-label term only")
        if unl_idx:
            pu = _teacher_rows(teacher, [ids[i] for i in unl_idx], all_classes, from_logits, True)
            got = np.isfinite(pu).all(axis=1)
            teacher_row.update({i: pu[k] for k, i in enumerate(unl_idx) if got[k]})
            if (~got).any():
                note(f"{int((~got).sum()):,} unlabeled training rows have no teacher row; not used")
    elif unl_idx:
        note(f"{len(unl_idx):,} training rows have no label and there is no teacher; not used")

    lab_set, unl_set, val_set = set(lab_idx), set(unl_idx), set(val_idx)
    jobs = []
    for g in group_names:
        rows = groups[g]
        L = [i for i in rows if i in lab_set]
        U = [i for i in rows if i in unl_set and i in teacher_row]
        V = [i for i in rows if i in val_set]
        name = "model" if g is None else f"item {g!r}"
        if len(L) < 2:
            raise ValueError(f"{name}: only {len(L)} labeled training row(s); need at least 2")
        classes = sorted({labels[i] for i in L}, key=label_sort_key)
        t_cols = [all_classes.index(c) for c in classes]
        t_l = transfer = None
        if teacher is not None:
            with np.errstate(invalid="ignore", divide="ignore"):  # an item's own classes, renormalised
                t = np.stack([teacher_row[i] for i in L])[:, t_cols]
                t_l = t / t.sum(axis=1, keepdims=True)
                if U:
                    tu = np.stack([teacher_row[i] for i in U])[:, t_cols]
                    transfer = (_take(texts, U), tu / tu.sum(axis=1, keepdims=True), _take(contexts, U))
        label_dtype = object if kind == "str" else None
        validation = None if not V else (_take(texts, V), np.asarray([labels[i] for i in V], dtype=label_dtype),
                                         _take(contexts, V))
        jobs.append(ItemJob(item=g, name=name, texts=_take(texts, L),
                            y=np.asarray([labels[i] for i in L], dtype=label_dtype), teacher_proba=t_l,
                            contexts=_take(contexts, L), validation=validation, transfer=transfer,
                            options=dict(options), notes=list(note), columns=cols, label_kind=kind))
    return ItemPlan(jobs, None if items is None else cols["item"])


class ItemJob:
    """One student's training, as :func:`fit_items` planned it: :func:`fit_item` runs it (in this
    process, or as a Dask task: :mod:`tinykd.cluster.tasks`). Plain data only (texts, arrays, options)."""

    def __init__(self, *, item, name, texts, y, teacher_proba, contexts, validation, transfer, options, notes,
                 columns, label_kind):
        self.item, self.name, self.texts, self.y, self.teacher_proba = item, name, texts, y, teacher_proba
        self.contexts, self.validation, self.transfer, self.options = contexts, validation, transfer, options
        self.notes, self.columns, self.label_kind = notes, columns, label_kind


class ItemPlan:
    """What :func:`plan_items` makes: ``jobs`` (one :class:`ItemJob` per student, in item order)
    and ``item_col`` (None: one student, no items)."""

    def __init__(self, jobs, item_col):
        self.jobs, self.item_col = jobs, item_col

    @property
    def per_item(self):
        return self.jobs[0].item is not None

    def model(self, students):
        """The model of the jobs' students (one per job, in order): a Student, or a Bundle."""
        if len(students) != len(self.jobs):
            raise ValueError(f"{len(students)} students for {len(self.jobs)} jobs")
        if not self.per_item:
            return students[0]
        return Bundle({j.item: st for j, st in zip(self.jobs, students)}, item_col=self.item_col)


def fit_item(job, verbose=False, stream=None):
    """Train the student of one :class:`ItemJob` (:func:`fit` with the job's rows and options), its
    metadata completed as :func:`fit_items` stores it. The same in every process: a Dask worker
    running it gives the student this process would."""
    st = fit(job.texts, job.y, job.teacher_proba, contexts=job.contexts, validation=job.validation,
             transfer=job.transfer, verbose=verbose, stream=stream, name=job.name, **job.options)
    st.meta["notes"] = list(job.notes) + st.meta["notes"]
    st.meta["columns"] = job.columns
    st.meta["label_kind"] = job.label_kind
    return st


def fit_items(texts, labels, *, verbose=True, stream=None, **kwargs):
    """Train from the rows of a data file: one student, or (``items``) one per item in a
    :class:`~tinykd.scoring.student.Bundle`. What ``tinykd train`` does, for any Python tool.

    The arguments are :func:`plan_items`'s; each planned student is trained by :func:`fit_item`
    (:func:`tinykd.cluster.tasks.fit_items` runs the same jobs as Dask tasks, with the same result).
    Returns a :class:`~tinykd.scoring.student.Student` (no ``items``) or a :class:`~tinykd.scoring.student.Bundle`.
    """
    stream = sys.stderr if stream is None else stream
    plan = plan_items(texts, labels, verbose=verbose, stream=stream, **kwargs)
    students = []
    for gi, job in enumerate(plan.jobs):
        if job.item is not None and verbose:
            print(f"[{gi + 1}/{len(plan.jobs)}] item {job.item!r}: {len(job.y)} rows", file=stream, flush=True)
        students.append(fit_item(job, verbose=verbose, stream=stream))
    return plan.model(students)
