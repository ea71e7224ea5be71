"""Fine-tune + export (``fit``) and export with a saved teacher (``export``)."""
from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass

import numpy as np
import torch

from tinykd.quality.metrics import scoring_metrics
from tinykd.nn.dense import softmax
from tinykd.files.softlabels import write_soft_labels
from tinykd.files.csvfiles import CsvReader, label_key, normalize_labels, read_table

from . import __version__
from .data import DataError, Dataset, length_value, load_dataset, second_rater, stratified_folds
from .finetune import (STOP_ON, TOLERANCE, auto_length, encode, fine_tune, label_batches, log,
                       pick_device, predict_logits, set_seed)
from .model import base_record, load_classifier, load_tokenizer, resolve_base
from .precision import resolve_precision
from .workers import auto_workers, predict_logits_in_workers

TEACHER_META = "teacher.json"


def metrics(y_true, y_pred, n_classes):
    """:func:`tinykd.quality.metrics.scoring_metrics` over class indices 0..n_classes-1, rounded for the sidecar."""
    m = scoring_metrics(y_true, y_pred, labels=list(range(n_classes)))
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in m.items()}


def split_metrics(ds: Dataset, proba):
    """Metrics of the teacher per role (train in-sample, val) and per test split value."""
    out = {}
    pred = proba.argmax(1)
    groups = {"train (in-sample)": ds.index("train"), "val": ds.index("val")}
    for v in dict.fromkeys(ds.split_values[i] for i in ds.index("test")):
        groups[v if v not in groups else f"test:{v}"] = [i for i in ds.index("test") if ds.split_values[i] == v]
    for name, idx in groups.items():
        if idx:
            out[name] = metrics(ds.y(idx), pred[idx], len(ds.classes))
    return out


def split_sizes(ds: Dataset):
    sizes = {}
    for r, s in zip(ds.roles, ds.split_values):
        key = f"{r}:{s}" if r != s else r
        sizes[key] = sizes.get(key, 0) + 1
    return dict(sorted(sizes.items()))


def _env(device):
    return {"device": str(device) + (f" ({torch.cuda.get_device_name(0)})" if device.type == "cuda" else
                                     f" ({torch.get_num_threads()} threads)"),
            "torch": torch.__version__, "transformers": __import__("transformers").__version__,
            "python": platform.python_version(), "teacher_export": __version__}


def _write(path, ds, proba, logits, folds, meta):
    """The soft-label file: columns ``p_<label_key(c)>`` (``p_1`` for a label spelt ``1.0``), as tinykd asks."""
    extra = {"split": ds.split_values, "role": ds.roles, "fold": [int(f) for f in folds]}
    write_soft_labels(path, ds.ids, ds.class_keys, proba, logits, extra=extra, meta=meta)
    log(f"wrote {path} ({len(ds.ids)} rows) and its .json sidecar")


def run_fit(*, data, out, name=None, text_col="text", label_col="label", id_col="id", context_col=None,
            context_file=None, split_col=None, train_split="train", val_split=None, test_split=None,
            val_frac=0.1, where=None, unlabeled=None, base=None, epochs=6, patience=2, lr=5e-5,
            max_length=128, batch_size=16, warmup=0.1, weight_decay=0.01, seed=0, crossfit=0,
            crossfit_epochs=None, device=None, threads=None, save_teacher=True, progress_every=20,
            class_weight=False, freeze_embeddings=False, stop_on="accuracy", tolerance=TOLERANCE, bf16="off",
            warm_from=None, loss="ce", truncate="longest", second_label_col=None):
    """Fine-tune a teacher on ``data`` and write ``out/<name>.csv`` (+ ``.json``); with ``crossfit``
    K >= 2 also ``out/<name>-crossfit.csv``. ``bf16``: off / on / auto (:mod:`teacher_export.precision`),
    for the training steps and the labelling alike. ``warm_from``: a teacher folder ``fit`` wrote, to
    fine-tune on from (its weights, head and tokenizer; :class:`_Start`) instead of from ``base``; it is
    validated first as epoch 0 and may be kept unchanged. ``loss``: the training loss
    (:data:`~teacher_export.finetune.LOSSES`). ``max_length``: word pieces per row, or "auto"
    (:func:`~teacher_export.finetune.auto_length`); ``truncate``: what is cut first over it
    (:data:`~teacher_export.data.TRUNCATE`). ``second_label_col``: a column of a second rater's scores; each
    training row is taught the mean of its raters' scores (:func:`~teacher_export.finetune.rater_targets`),
    validation and test stay on ``label_col``. Returns a dict of results (paths, metrics, folds)."""
    t_all = time.time()
    if stop_on not in STOP_ON:
        raise ValueError(f"stop_on must be one of {STOP_ON}, not {stop_on!r}")
    if second_label_col and crossfit:
        raise DataError(f"--second-label-col {second_label_col} and --crossfit: the fold teachers learn the official "
                        "score alone; pass one of the two")
    if threads:
        torch.set_num_threads(int(threads))
    device = pick_device(device)
    prec = resolve_precision(bf16, device)
    name = name or os.path.splitext(os.path.basename(data))[0]
    teacher_dir = os.path.join(out, f"{name}-teacher") if save_teacher else None
    start = _Start.of(base, warm_from, crossfit, teacher_dir)
    base_path = start.base_path
    os.makedirs(out, exist_ok=True)
    ds = load_dataset(data, text_col=text_col, label_col=label_col, id_col=id_col, context_col=context_col,
                      context_file=context_file, split_col=split_col, train_split=train_split,
                      val_split=val_split, test_split=test_split, val_frac=val_frac, seed=seed,
                      where=where, unlabeled=unlabeled)
    set_seed(seed)  # the new head's initial weights
    model = start.model(ds)
    for note in ds.notes:
        log(note)
    log(f"data: {split_sizes(ds)}; classes {ds.class_keys}; base {base_path}; device {device}; {prec.describe()}"
        + (f"; fine-tuning on from {warm_from}" if start.prev else ""))
    tok = load_tokenizer(start.folder)
    auto = length_value(max_length) == "auto"
    if auto:
        tr = ds.index("train")
        max_length = auto_length(tok, [ds.texts[i] for i in tr], None if ds.contexts is None else
                                 [ds.contexts[i] for i in tr])
        log(f"max_length auto: {max_length} (the training rows' 99th percentile of word pieces, rounded up)")
    enc = _encode_and_log(tok, ds, max_length, truncate)
    pad_id = tok.pad_token_id or 0
    y = _label_vector(ds)
    tr, va = ds.index("train"), ds.index("val")
    cw = _class_weights(y[tr], len(ds.classes)) if class_weight else None
    y2 = second_rater(data, ds, second_label_col, id_col) if second_label_col else None
    raters = {} if y2 is None else {"second_label_col": second_label_col, "second_rater_rows": int((y2[tr] >= 0).sum()),
                                    "raters_differ": int(((y2[tr] >= 0) & (y2[tr] != y[tr])).sum())}
    if raters:
        log(f"second rater ({second_label_col}): {raters['second_rater_rows']} training rows, "
            f"{raters['raters_differ']} scored apart from {label_col}")
    hp = {"epochs": epochs, "patience": patience, "lr": lr, "max_length": max_length,
          **({"max_length_auto": True} if auto else {}), "truncate": truncate,
          "batch_size": batch_size, "warmup": warmup, "weight_decay": weight_decay, "seed": seed,
          "optimizer": "AdamW", "schedule": "linear warm-up then linear decay", "grad_clip": 1.0,
          "class_weight": cw, "freeze_embeddings": freeze_embeddings,
          "early_stopping": f"validation {stop_on}, best epoch restored", "stop_on": stop_on,
          **({"tolerance": tolerance} if stop_on == "accuracy" else {}), "bf16": bf16, "loss": loss,
          **raters}
    res = fine_tune(model, enc, y, tr, va, epochs=epochs, patience=patience, lr=lr, batch_size=batch_size,
                    warmup=warmup, weight_decay=weight_decay, seed=seed, device=device, pad_id=pad_id,
                    progress_every=progress_every, class_weight=cw, freeze_embeddings=freeze_embeddings,
                    stop_on=stop_on, tolerance=tolerance, bf16=prec.bf16, validate_start=bool(start.prev),
                    loss=loss, y2=y2)
    warm = {"warm": start.warm_record(res)} if start.prev else {}
    log(f"predicting {len(ds.ids)} rows")
    logits = predict_logits(model, enc, None, batch_size=64, device=device, pad_id=pad_id, progress=50,
                            bf16=prec.bf16)
    proba = softmax(logits)
    m = split_metrics(ds, proba)
    for k, v in m.items():
        log(f"  {k}: {v}")
    if teacher_dir:
        _save_teacher(teacher_dir, model, tok, {
            "classes": ds.class_keys, "max_length": max_length, "truncate": truncate, "base_model": base_path,
            "text_col": text_col,
            "context_col": context_col, "context_file": context_file, "id_col": id_col, "label_col": label_col,
            "precision": prec.dtype, "base": start.base_rec, **warm})
    meta = {**_fit_meta(ds, data, unlabeled, start, {**hp, "optimizer": res.optimizer}, res, m, device),
            **prec.record(), **warm}
    path = os.path.join(out, f"{name}.csv")
    meta["wall_seconds"] = round(time.time() - t_all, 1)
    _write(path, ds, proba, logits, [-1] * len(ds.ids), meta)
    result = {"path": path, "metrics": m, "best_epoch": res.best_epoch, "history": res.history,
              "teacher_dir": teacher_dir, "dataset": ds, "proba": proba}

    if crossfit and crossfit >= 2:
        result.update(_crossfit(ds, enc, y, logits, meta, k=int(crossfit),
                                n_ep=int(crossfit_epochs or max(1, res.best_epoch)), base_path=base_path,
                                lr=lr, batch_size=batch_size, warmup=warmup, weight_decay=weight_decay,
                                seed=seed, device=device, pad_id=pad_id, progress_every=progress_every,
                                class_weight=cw, freeze_embeddings=freeze_embeddings, out=out, name=name,
                                t_all=t_all, bf16=prec.bf16))
    return result


@dataclass
class _Start:
    """What ``fit`` fine-tunes from: the pre-trained base, or (``prev``, ``fit --warm-from``) a teacher
    ``fit`` wrote, whose weights, head and tokenizer are loaded and whose base record is carried on."""
    folder: str  #: the folder of the starting weights and tokenizer
    base: str | None  #: the base as named (a warm start: the previous teacher's base's name, else its folder)
    base_path: str  #: the pre-trained base's folder (a warm start: as the previous teacher recorded it)
    base_rec: dict | None  #: :func:`base_record`'s
    prev: dict | None = None  #: the previous teacher's ``teacher.json`` (a warm start)

    @classmethod
    def of(cls, base, warm_from, crossfit, teacher_dir):
        """``teacher_dir``: the folder this fit saves its teacher in (False: none). A warm start's one-line
        DataErrors: with ``base`` too (the warm teacher's base is its own), with ``crossfit`` (the fold teachers
        would start from a teacher that trained on the rows they hold out), a folder that is not a fitted
        teacher, or the very folder this fit overwrites."""
        if not warm_from:
            base_path = resolve_base(base)
            return cls(base_path, base, base_path, base_record(base, base_path))
        if base is not None:
            raise DataError(f"--warm-from {warm_from} and --base {base}: a warm start keeps the base of the teacher "
                            "it starts from; pass one of the two")
        if crossfit:
            raise DataError(f"--warm-from {warm_from} and --crossfit: the fold teachers would start from a teacher "
                            "that trained on the rows they hold out; cross-fit a teacher fitted from its base")
        path = os.path.join(warm_from, TEACHER_META)
        if not os.path.isfile(path):
            raise DataError(f"--warm-from {warm_from}: not a teacher folder written by 'tinykd-teacher fit' "
                            f"(no {TEACHER_META})")
        if teacher_dir and os.path.abspath(teacher_dir) == os.path.abspath(warm_from):
            raise DataError(f"--warm-from {warm_from} is the teacher folder this fit writes; pass another --out "
                            "or --name")
        with open(path) as fh:
            prev = json.load(fh)
        rec = prev.get("base")
        return cls(warm_from, (rec or {}).get("name") or prev["base_model"], prev["base_model"], rec, prev)

    def model(self, ds):
        """The model to fine-tune for the rows ``ds``: the base with a new head of ``ds``'s classes, or the
        previous teacher as it is, whose classes must be ``ds``'s in the same order."""
        if self.prev is None:
            return load_classifier(self.folder, len(ds.classes), ds.class_keys)
        if self.prev["classes"] != ds.class_keys:
            raise DataError(f"--warm-from {self.folder}: its classes {','.join(self.prev['classes'])} differ from "
                            f"the data's {','.join(ds.class_keys)}; fit from the base instead")
        return load_classifier(self.folder)

    def warm_record(self, res):
        """teacher.json's ``warm`` of a warm start that :func:`fine_tune` ran as ``res``: ``kept_start`` true
        where early stopping kept epoch 0, the previous teacher unchanged (``save_pretrained`` then writes its
        ``model.safetensors`` byte for byte: ``tests/test_teacher_warm.py``)."""
        return {"from": os.path.abspath(self.folder), "kept_start": res.best_epoch == 0, "epochs_run": res.epochs_run}


def _encode_and_log(tok, ds, max_length, truncate="longest"):
    """The tokenised rows (the answer, then the context as the second segment); logs the token counts."""
    enc = encode(tok, ds.texts, ds.contexts, max_length, truncate)
    lens = np.array([len(s) for s in enc["input_ids"]])
    log(f"tokens per row: median {int(np.median(lens))}, p95 {int(np.percentile(lens, 95))}, "
        f"max {lens.max()} (max_length {max_length}; {int((lens >= max_length).sum())} truncated)")
    return enc


def _label_vector(ds):
    """Class index (n,) of each row, -1 where the row is not scored (unlabeled or other)."""
    labelled = [i for i, r in enumerate(ds.roles) if r in ("train", "val", "test")]
    y = np.full(len(ds.ids), -1, dtype=np.int64)
    y[labelled] = ds.y(labelled)
    return y


def _class_weights(y_train, n_classes):
    """Balanced weights n / (K · count) per class (a class without rows counts as one)."""
    cnt = np.bincount(y_train, minlength=n_classes).astype(float)
    return (cnt.sum() / (len(cnt) * np.maximum(cnt, 1))).tolist()


def _save_teacher(folder, model, tok, teacher_meta):
    """The fine-tuned teacher, its tokenizer and :data:`TEACHER_META` (what ``export`` needs) in ``folder``."""
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    with open(os.path.join(folder, TEACHER_META), "w") as fh:
        json.dump(teacher_meta, fh, indent=2)


def _fit_meta(ds, data, unlabeled, start, hp, res, m, device):
    """The sidecar of ``fit``'s soft-label file (less ``wall_seconds``); ``start``: a :class:`_Start`."""
    base, base_path = start.base, start.base_path
    base_model = (os.path.basename(os.path.dirname(base_path)) + "/" + os.path.basename(base_path)
                  if base in (None, "minilm") else base)
    return {"format": "tinykd-soft-labels", "version": 1, "producer": "teacher_export fit",
            "base_model": base_model, "base_model_path": base_path, "base": start.base_rec,
            "temperature": 1.0,
            "classes": ds.class_keys, "probabilities": "softmax(logits / 1.0) of the best-epoch teacher",
            "data_file": os.path.basename(data), **{k: v for k, v in ds.info.items() if k not in ("data", "unlabeled")},
            "unlabeled_file": os.path.basename(unlabeled) if unlabeled else None,
            "splits": split_sizes(ds), "hyperparameters": hp, "history": res.history,
            "best_epoch": res.best_epoch, "epochs_run": res.epochs_run, "train_seconds": res.seconds,
            "metrics": m, "fold_column": "-1 everywhere: every row's probability comes from the one teacher "
            "(trained on role==train rows, early-stopped on role==val rows)", **_env(device)}


def _crossfit(ds, enc, y, logits, meta, *, k, n_ep, base_path, lr, batch_size, warmup, weight_decay, seed,
              device, pad_id, progress_every, class_weight, freeze_embeddings, out, name, t_all, bf16=False):
    """Train K fold teachers on the role==train rows (each on K-1 folds, ``n_ep`` epochs, no early
    stopping) and write ``out/<name>-crossfit.csv``: out-of-fold probabilities for training rows, the full
    teacher's ``logits`` for every other row. ``bf16``: under bfloat16 autocast."""
    m = meta.get("metrics", {})
    tr_arr = np.asarray(ds.index("train"), dtype=int)
    fold_of_tr = stratified_folds(y[tr_arr], k, seed)
    folds = np.full(len(ds.ids), -1, dtype=int)
    folds[tr_arr] = fold_of_tr
    cf_logits = np.array(logits, dtype=np.float64, copy=True)
    fold_train = {}
    t_cf = time.time()
    for f in range(k):
        fit_idx = tr_arr[fold_of_tr != f]
        hold_idx = tr_arr[fold_of_tr == f]
        fold_train[f] = [ds.ids[i] for i in fit_idx]
        log(f"cross-fit fold {f + 1}/{k}: train {len(fit_idx)}, predict {len(hold_idx)}, {n_ep} epochs")
        set_seed(seed + 1 + f)
        fm = load_classifier(base_path, len(ds.classes), ds.class_keys)
        fine_tune(fm, enc, y, fit_idx, None, epochs=n_ep, lr=lr, batch_size=batch_size, warmup=warmup,
                  weight_decay=weight_decay, seed=seed + 1 + f, device=device, pad_id=pad_id,
                  progress_every=progress_every, class_weight=class_weight, tag=f"[fold {f}] ",
                  freeze_embeddings=freeze_embeddings, bf16=bf16)
        cf_logits[hold_idx] = predict_logits(fm, enc, hold_idx, batch_size=64, device=device, pad_id=pad_id,
                                             bf16=bf16)
        del fm
    cf_proba = softmax(cf_logits)
    oof = metrics(y[tr_arr], cf_proba[tr_arr].argmax(1), len(ds.classes))
    log(f"  train (out-of-fold): {oof}")
    cmeta = dict(meta)
    cmeta.update(producer="teacher_export crossfit", crossfit_k=k, crossfit_epochs=n_ep,
                 crossfit_seconds=round(time.time() - t_cf, 1),
                 metrics={**m, "train (out-of-fold)": oof},
                 fold_sizes={str(f): int((fold_of_tr == f).sum()) for f in range(k)},
                 fold_column="role==train rows: the fold f whose teacher (trained on the other K-1 folds "
                 "for crossfit_epochs epochs, without early stopping) did not see the row; -1: the full "
                 "teacher's probability (val/test/unlabeled rows, which no teacher trained on)",
                 probabilities="out-of-fold for role==train rows, full teacher otherwise")
    cmeta["wall_seconds"] = round(time.time() - t_all, 1)
    cpath = os.path.join(out, f"{name}-crossfit.csv")
    _write(cpath, ds, cf_proba, cf_logits, folds, cmeta)
    return {"crossfit_path": cpath, "folds": folds, "fold_train_ids": fold_train, "crossfit_proba": cf_proba}


def run_crossfit(*, soft, data, out, name=None, k=3, epochs=None, base=None, text_col="text",
                 label_col="label", id_col="id", context_col=None, context_file=None, split_col=None,
                 train_split="train", val_split=None, test_split=None, val_frac=0.1, where=None, unlabeled=None,
                 seed=0, device=None, threads=None, progress_every=20, lr=None, bf16=None):
    """Cross-fitted file for a teacher that ``fit`` already trained: ``soft`` is its soft-label CSV (with
    the .json sidecar). The fold teachers reuse the sidecar's hyper-parameters and, by default, its best
    epoch (``epochs``, ``lr`` override them); rows other than role==train keep the full teacher's logits from ``soft``. The data arguments
    must select the same rows as the original run (checked: same data file hash, same training ids).
    ``bf16`` (None: the sidecar's, else off) is the fold teachers' precision."""
    from tinykd.files.softlabels import read_sidecar

    t_all = time.time()
    if threads:
        torch.set_num_threads(int(threads))
    device = pick_device(device)
    side = read_sidecar(soft)
    hp = side.get("hyperparameters") or {}
    prec = resolve_precision(bf16 or hp.get("bf16", "off"), device)
    if base is None and side.get("base_model_path") and os.path.isdir(side["base_model_path"]):
        base = side["base_model_path"]
    base_path = resolve_base(base)
    if os.path.exists(os.path.join(base_path, TEACHER_META)):
        raise DataError(f"{base_path} is a fine-tuned teacher (it has seen the training rows), not a pre-trained "
                        "base; pass --base the pre-trained folder the fold teachers should start from")
    ds = load_dataset(data, text_col=text_col, label_col=label_col, id_col=id_col, context_col=context_col,
                      context_file=context_file, split_col=split_col, train_split=train_split,
                      val_split=val_split, test_split=test_split, val_frac=val_frac, seed=seed,
                      where=where, unlabeled=unlabeled)
    if side.get("data_sha256") and side["data_sha256"] != ds.info.get("data_sha256"):
        raise DataError(f"{data} is not the data file {soft} was made from (sha256 differs)")
    if [label_key(c) for c in side.get("classes", ds.class_keys)] != ds.class_keys:
        raise DataError(f"classes differ: {soft} has {side.get('classes')}, {data} gives {ds.class_keys}")
    st = read_table(soft, required=[("id", None), ("role", None)] + [(f"logit_{c}", None) for c in ds.class_keys])
    rows = {r[st.index["id"]].strip(): r for r in st.rows}
    missing = [i for i in ds.ids if i not in rows]
    if missing:
        raise DataError(f"{soft}: {len(missing)} of the data's ids are missing, e.g. {missing[:3]}")
    train_soft = sorted(i for i, r in rows.items() if r[st.index["role"]] == "train")
    if train_soft != sorted(ds.ids[i] for i in ds.index("train")):
        raise DataError(f"the data arguments do not select the training rows {soft} was trained on")
    cols = [st.index[f"logit_{c}"] for c in ds.class_keys]
    try:
        logits = np.array([[float(rows[i][j]) for j in cols] for i in ds.ids])
    except ValueError as e:
        raise DataError(f"{soft}: unreadable logit ({e})") from None
    for note in ds.notes:
        log(note)
    log(f"data: {split_sizes(ds)}; classes {ds.class_keys}; base {base_path}; device {device}")
    name = name or os.path.splitext(os.path.basename(soft))[0]
    os.makedirs(out, exist_ok=True)
    tok = load_tokenizer(base_path)
    max_length = int(hp.get("max_length", 128))
    enc = encode(tok, ds.texts, ds.contexts, max_length, hp.get("truncate", "longest"))
    y = _label_vector(ds)
    meta = {**{k_: v for k_, v in side.items() if k_ != "wall_seconds"}, **prec.record()}
    return _crossfit(ds, enc, y, logits, meta, k=int(k), n_ep=int(epochs or side.get("best_epoch") or 1),
                     base_path=base_path, lr=float(lr or hp.get("lr", 5e-5)),
                     batch_size=int(hp.get("batch_size", 16)), warmup=float(hp.get("warmup", 0.1)),
                     weight_decay=float(hp.get("weight_decay", 0.01)), seed=int(hp.get("seed", seed)),
                     device=device, pad_id=tok.pad_token_id or 0, progress_every=progress_every,
                     class_weight=hp.get("class_weight"), freeze_embeddings=bool(hp.get("freeze_embeddings")),
                     out=out, name=name, t_all=t_all, bf16=prec.bf16)


def run_export(*, teacher, data, out, name=None, text_col=None, label_col=None, id_col=None,
               context_col=None, context_file=None, split_col=None, train_split="train", val_split=None,
               test_split=None, where=None, unlabeled=None, batch_size=64, device=None, threads=None,
               seed=0, val_frac=0.1, workers=None, bf16="off"):
    """Soft labels for every row of ``data`` (and ``unlabeled``) from a saved teacher folder; on a CPU in
    ``workers`` processes (None: :func:`teacher_export.workers.auto_workers`), the same probabilities.
    ``bf16``: off / on / auto (:mod:`teacher_export.precision`)."""
    t_all = time.time()
    if workers is not None and int(workers) < 1:
        raise DataError(f"--workers must be at least 1, got {workers}")
    if threads:
        torch.set_num_threads(int(threads))
    device = pick_device(device)
    prec = resolve_precision(bf16, device)
    mpath = os.path.join(teacher, TEACHER_META)
    if not os.path.exists(mpath):
        raise FileNotFoundError(f"{teacher} is not a teacher folder written by 'fit' (no {TEACHER_META})")
    with open(mpath) as fh:
        tm = json.load(fh)
    classes, _ = normalize_labels(tm["classes"])  # a teacher saved with classes "1.0", "2.0" writes p_1, p_2
    if any(c is None for c in classes) or len(set(map(label_key, classes))) != len(classes):
        classes = [str(c) for c in tm["classes"]]
    text_col = text_col or tm.get("text_col", "text")
    id_col = id_col or tm.get("id_col", "id")
    label_col = label_col or tm.get("label_col", "label")
    if context_col is None and context_file is None:
        context_col, context_file = tm.get("context_col"), tm.get("context_file")
    with CsvReader(data) as head:  # the header only: is there a label column?
        has_labels = head.has(label_col)
    ds = load_dataset(data, text_col=text_col, label_col=label_col if has_labels else None, id_col=id_col,
                      context_col=context_col, context_file=context_file, split_col=split_col,
                      train_split=train_split, val_split=val_split, test_split=test_split or "", seed=seed,
                      val_frac=val_frac, where=where, unlabeled=unlabeled, classes=classes)
    for note in ds.notes:
        log(note)
    set_seed(seed)
    log(prec.describe())
    tok = load_tokenizer(teacher)
    enc = encode(tok, ds.texts, ds.contexts, tm.get("max_length", 128), tm.get("truncate", "longest"))
    n_threads = torch.get_num_threads()
    workers = auto_workers(len(ds.ids), n_threads, device) if workers is None else int(workers)
    if workers > 1:
        if device.type != "cpu":
            raise DataError(f"workers={workers} labels on the CPU only; the device is {device}")
        batches = label_batches(enc, np.arange(len(ds.ids)), batch_size)
        log(f"labelling {len(ds.ids):,} answers in {workers} worker processes of {max(1, n_threads // workers)} "
            "torch thread(s)")
        logits = predict_logits_in_workers(teacher, enc, batches, len(classes), workers, max(1, n_threads // workers),
                                           pad_id=tok.pad_token_id or 0, log=log, bf16=prec.bf16)
    else:
        model = load_classifier(teacher).to(device)
        logits = predict_logits(model, enc, None, batch_size=batch_size, device=device,
                                pad_id=tok.pad_token_id or 0, progress=50, bf16=prec.bf16)
    proba = softmax(logits)
    m = split_metrics(ds, proba) if any(r in ("val", "test", "train") for r in ds.roles) else {}
    meta = {"format": "tinykd-soft-labels", "version": 1, "producer": "teacher_export export",
            "teacher": os.path.abspath(teacher), "base_model": tm.get("base_model"), "base": tm.get("base"),
            "temperature": 1.0,
            "classes": ds.class_keys, "data_file": os.path.basename(data),
            **{k: v for k, v in ds.info.items() if k not in ("data", "unlabeled")},
            "splits": split_sizes(ds), "metrics": m, **_env(device), "workers": workers, **prec.record()}
    meta["wall_seconds"] = round(time.time() - t_all, 1)
    name = name or os.path.splitext(os.path.basename(data))[0]
    path = os.path.join(out, f"{name}.csv")
    _write(path, ds, proba, logits, [-1] * len(ds.ids), meta)
    return {"path": path, "metrics": m, "dataset": ds, "proba": proba}

