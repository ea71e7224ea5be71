"""The ``tinykd`` command line: train, score, evaluate, info, demo.

Every user error (a bad file, a missing column, a damaged model, a bad option)
ends the command with exit status 2 and one line on stderr, ``tinykd: error: …``;
``--debug`` (or ``TINYKD_DEBUG=1``) shows the traceback instead. Ctrl-C exits
with status 130 and writes nothing: models and scored files are written to a
temporary file and renamed into place only when complete.

``tinykd score`` imports NumPy and Numba only (never scikit-learn), so it starts fast.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

REVIEW_BELOW = 0.6   # default --review-below: flag answers whose top probability is under this
CHUNK_ROWS = 2000    # rows scored per chunk when streaming


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


def _err(msg):
    print(f"tinykd: {msg}", file=sys.stderr, flush=True)


def _note(msg, quiet=False):
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def _human_size(n):
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def _one_line(e):
    msg = str(e).strip() or type(e).__name__
    return " ".join(msg.split())


def _check_out_path(out, inputs=()):
    out_abs = os.path.abspath(out)
    folder = os.path.dirname(out_abs)
    if not os.path.isdir(folder):
        raise CLIError(f"cannot write {out}: the folder {folder} does not exist")
    if os.path.isdir(out_abs):
        raise CLIError(f"cannot write {out}: it is a folder; give a file name")
    if not os.access(folder, os.W_OK):
        raise CLIError(f"cannot write {out}: no permission to write in {folder}")
    for p in inputs:
        if p and os.path.exists(p) and os.path.exists(out_abs) and os.path.samefile(p, out_abs):
            raise CLIError(f"--out {out} is an input file; choose another name")


def _positive(name, value, allow_zero=False):
    if value is None:
        return
    if value != value or value < 0 or (value == 0 and not allow_zero):
        raise CLIError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")


# =============================================================================== train
def _select_rows(table, args):
    """Indices of training, validation and ignored rows, from the split column."""
    n = len(table)
    split_col = args.split_col
    if split_col is not None and not table.has(split_col):
        if args.split_col_given:
            table.require(split_col, "--split-col")
        split_col = None
    if split_col is None:
        return list(range(n)), [], {}, None
    splits = [s.strip() for s in table.column(split_col)]
    values = sorted(set(splits))
    train_idx = [i for i, s in enumerate(splits) if s == args.train_split]
    if not train_idx:
        raise CLIError(f"{table.path}: no rows with {split_col} == {args.train_split!r}; the column holds "
                       f"{', '.join(map(repr, values[:10]))}; set --train-split (or --split-col)")
    val_idx = [i for i, s in enumerate(splits) if args.val_split and s == args.val_split]
    if args.val_split_given and not val_idx:
        raise CLIError(f"{table.path}: no rows with {split_col} == {args.val_split!r}; the column holds "
                       f"{', '.join(map(repr, values[:10]))}")
    ignored = {}
    for s in splits:
        if s != args.train_split and not (val_idx and s == args.val_split):
            ignored[s] = ignored.get(s, 0) + 1
    return train_idx, val_idx, ignored, split_col


def _duplicates(values):
    seen, dups = set(), []
    for v in values:
        if v in seen and v not in dups:
            dups.append(v)
        seen.add(v)
    return dups


def _read_teacher(path, ids, classes, args, allow_missing):
    import numpy as np

    try:
        from .softlabels import read_soft_labels
    except ImportError:  # pragma: no cover - the soft-label reader ships with tinykd
        raise CLIError("this tinykd has no soft-label reader (tinykd.softlabels)") from None
    from .softlabels import SoftLabelError

    try:
        p = read_soft_labels(path, list(ids), [str(c) for c in classes], from_logits=args.from_logits,
                             allow_missing=allow_missing)
    except SoftLabelError as e:  # name the command-line flag, not the Python argument
        raise CLIError("--teacher " + str(e).replace("pass from_logits=True", "pass --from-logits")) from None
    return np.asarray(p, dtype=np.float64)


def _train_one(name, texts, y, ctx, teacher, v_texts, v_y, v_ctx, tx, args, quiet, prefix=""):
    """Fit one student; returns it with validation metrics in ``meta``."""
    import numpy as np

    from .student import fit

    if prefix:
        _note(prefix, quiet)
    n_lab = len(texts)
    if v_texts is None:  # hold out 1/8 of the labeled rows (stratified, seeded)
        if n_lab >= 10:
            from .splits import holdout

            tr, va = holdout(np.asarray([str(v) for v in y]), 0.125, args.seed)
            v_texts = [texts[i] for i in va]
            v_y = [y[i] for i in va]
            v_ctx = None if ctx is None else [ctx[i] for i in va]
            texts = [texts[i] for i in tr]
            y = [y[i] for i in tr]
            ctx = None if ctx is None else [ctx[i] for i in tr]
            teacher = None if teacher is None else teacher[tr]
        else:
            _note(f"{name}: only {n_lab} labeled rows, so no validation set; training for all epochs", quiet)
            v_texts = []
    if len(set(map(repr, y))) < 2:
        raise CLIError(f"{name}: the training rows have a single score ({y[0]!r}); need at least 2 classes")
    if v_texts:  # validation labels the training rows never show cannot be scored; drop them, loudly
        known = set(map(repr, y))
        keep = [i for i, v in enumerate(v_y) if repr(v) in known]
        if len(keep) < len(v_y):
            unseen = sorted({str(v) for v in v_y if repr(v) not in known})
            _note(f"{name}: {len(v_y) - len(keep)} validation rows have labels no training row has "
                  f"({', '.join(unseen)}); not used for validation")
            v_texts = [v_texts[i] for i in keep]
            v_y = [v_y[i] for i in keep]
            v_ctx = None if v_ctx is None else [v_ctx[i] for i in keep]
    validation = (v_texts, v_y, v_ctx) if v_texts else False
    if v_texts and v_ctx is None:
        validation = (v_texts, v_y)
    import warnings

    with warnings.catch_warnings():  # overflow warnings of a diverging run: reported below, in one line
        warnings.simplefilter("ignore", RuntimeWarning)
        student = _fit_quiet(fit, texts, y, teacher, ctx, validation, tx, args, quiet)
    return _after_fit(student, name, v_texts, v_y, v_ctx, quiet)


def _fit_quiet(fit, texts, y, teacher, ctx, validation, tx, args, quiet):
    import numpy as np

    return fit(texts, np.asarray(y, dtype=object if isinstance(y[0], str) else None), teacher,
                  contexts=ctx, preset=args.preset, lam=args.lam, temperature=args.temperature,
                  validation=validation, transfer=tx, epochs=args.epochs, batch_size=args.batch_size,
               lr=args.lr, patience=args.patience, seed=args.seed, verbose=not quiet, stream=sys.stderr)


def _after_fit(student, name, v_texts, v_y, v_ctx, quiet):
    from .metrics import scoring_metrics

    tr = student.meta["training"]
    if tr["stopped"] == "interrupted":
        raise KeyboardInterrupt
    if tr["stopped"] == "non-finite loss":
        if not tr["best_epoch"]:
            raise CLIError(f"{name}: training diverged in the first epoch (loss not finite); nothing saved — "
                           "try a smaller --lr")
        _note(f"{name}: the loss became non-finite; kept the weights of epoch {tr['best_epoch']}")
    if v_texts:
        pred = student.predict(v_texts, v_ctx)
        student.meta["validation_metrics"] = scoring_metrics([str(v) for v in v_y], [str(p) for p in pred],
                                                             labels=[str(c) for c in student.classes])
    return student


def cmd_train(args):
    import numpy as np

    from .data import normalize_labels, read_table

    quiet = args.quiet
    for name in ("epochs", "patience", "batch_size", "lr", "temperature"):
        _positive("--" + name.replace("_", "-"), getattr(args, name))
    _positive("--lam", args.lam, allow_zero=True)
    from .model import PRESETS

    if args.preset not in PRESETS:
        raise CLIError(f"unknown --preset {args.preset!r}; choose one of {', '.join(PRESETS)}")
    _check_out_path(args.out, [args.data, args.teacher])
    if args.teacher and not os.path.isfile(args.teacher):
        raise CLIError(f"--teacher {args.teacher}: no such file")
    required = [(args.text_col, "--text-col"), (args.label_col, "--label-col")]
    if args.teacher:
        required.append((args.id_col, "--id-col"))
    if args.context_col:
        required.append((args.context_col, "--context-col"))
    if args.item_col:
        required.append((args.item_col, "--item-col"))
    table = read_table(args.data, required)
    if table.note:
        _note(table.note)
    labels, kind = normalize_labels(table.column(args.label_col))
    if kind == "none":
        raise CLIError(f"{args.data}: the label column {args.label_col!r} is empty in every row")
    texts_all = table.column(args.text_col)
    ctx_all = table.column(args.context_col) if args.context_col else None
    items_all = [s.strip() for s in table.column(args.item_col)] if args.item_col else None
    ids_all = [s.strip() for s in table.column(args.id_col)] if table.has(args.id_col) else None
    train_idx, val_idx, ignored, split_col = _select_rows(table, args)
    if ignored:
        val = f" or {args.val_split!r}" if val_idx else ""
        _note(f"not used: {sum(ignored.values()):,} rows whose {split_col} is not {args.train_split!r}{val} "
              f"({', '.join(f'{k or repr(k)}: {v:,}' for k, v in sorted(ignored.items()))})", quiet)
    if split_col is not None:
        _note(f"training rows: {split_col} == {args.train_split!r}; validation: "
              + (f"{split_col} == {args.val_split!r}" if val_idx else "a seeded 1/8 of the training rows"), quiet)
    lab_idx = [i for i in train_idx if labels[i] is not None]
    unl_idx = [i for i in train_idx if labels[i] is None]
    val_idx = [i for i in val_idx if labels[i] is not None]
    if not lab_idx:
        raise CLIError(f"{args.data}: no training row has a label in {args.label_col!r}")
    used = lab_idx + unl_idx + val_idx
    if ids_all is not None:
        blank = [table.lines[i] for i in used if not ids_all[i]]
        dups = _duplicates([ids_all[i] for i in used])
        if args.teacher and blank:
            raise CLIError(f"{args.data}: {len(blank)} rows have an empty {args.id_col!r} (line {blank[0]}); "
                           "every row needs an id to join the teacher's probabilities")
        if dups:
            msg = (f"{args.data}: duplicate ids in {args.id_col!r}: {', '.join(map(repr, dups[:5]))}"
                   f"{' …' if len(dups) > 5 else ''}")
            if args.teacher:
                raise CLIError(msg + "; ids must be unique to join the teacher's probabilities")
            _note("warning: " + msg)

    # one group of rows per student
    if args.item_col:
        groups = {}
        for i in used:
            groups.setdefault(items_all[i], []).append(i)
        group_names = sorted(groups, key=lambda s: (len(s), s) if s.isdigit() else (10**9, s))
        if "" in groups:
            raise CLIError(f"{args.data}: {len(groups[''])} rows have an empty {args.item_col!r}")
    else:
        groups, group_names = {"default": used}, ["default"]
    lab_set, unl_set, val_set = set(lab_idx), set(unl_idx), set(val_idx)

    all_classes = sorted({labels[i] for i in lab_idx}, key=lambda v: (isinstance(v, str), v))
    teacher_all = {}
    if args.teacher:
        lab_ids = [ids_all[i] for i in lab_idx]
        p = _read_teacher(args.teacher, lab_ids, all_classes, args, allow_missing=args.allow_missing_teacher)
        teacher_all.update({i: p[k] for k, i in enumerate(lab_idx)})
        if args.allow_missing_teacher:
            miss = int(np.isnan(p).all(axis=1).sum())
            if miss:
                _note(f"{miss} training rows have no teacher row; they get the hard-label term only")
        if unl_idx:
            pu = _read_teacher(args.teacher, [ids_all[i] for i in unl_idx], all_classes, args, allow_missing=True)
            got = np.isfinite(pu).all(axis=1)
            teacher_all.update({i: pu[k] for k, i in enumerate(unl_idx) if got[k]})
            if (~got).any():
                _note(f"{int((~got).sum()):,} unlabeled training rows have no teacher row; not used")
    elif unl_idx:
        _note(f"{len(unl_idx):,} training rows have no label and there is no --teacher; not used")

    t0 = time.time()
    students = {}
    for gi, g in enumerate(group_names):
        rows = groups[g]
        L = [i for i in rows if i in lab_set]
        U = [i for i in rows if i in unl_set and i in teacher_all]
        V = [i for i in rows if i in val_set]
        name = "model" if g == "default" else f"item {g!r}"
        if len(L) < 2:
            raise CLIError(f"{name}: only {len(L)} labeled training row(s); need at least 2")
        classes = sorted({labels[i] for i in L}, key=lambda v: (isinstance(v, str), v))
        cols = [all_classes.index(c) for c in classes]
        teacher = tx = None
        if args.teacher:
            t = np.stack([teacher_all[i] for i in L])[:, cols]
            with np.errstate(invalid="ignore", divide="ignore"):
                teacher = t / t.sum(axis=1, keepdims=True)  # an item's own classes (renormalised)
            if U:
                tu = np.stack([teacher_all[i] for i in U])[:, cols]
                tx = ([texts_all[i] for i in U], tu / tu.sum(axis=1, keepdims=True),
                      *([[ctx_all[i] for i in U]] if ctx_all else []))
        prefix = f"[{gi + 1}/{len(group_names)}] item {g!r}: {len(L)} rows" if args.item_col else ""
        students[g] = _train_one(
            name, [texts_all[i] for i in L], [labels[i] for i in L],
            None if ctx_all is None else [ctx_all[i] for i in L], teacher,
            [texts_all[i] for i in V] if V else None, [labels[i] for i in V],
            None if ctx_all is None or not V else [ctx_all[i] for i in V], tx, args, quiet, prefix)
    columns = {"text": args.text_col, "label": args.label_col, "id": args.id_col,
               "context": args.context_col, "item": args.item_col}
    for st in students.values():
        st.meta["columns"] = columns
        st.meta["data_file"] = os.path.basename(args.data)
        st.meta["teacher_file"] = os.path.basename(args.teacher) if args.teacher else None
        st.meta["label_kind"] = kind
    if args.item_col:
        from .bundle import Bundle

        model = Bundle(students, item_col=args.item_col)
    else:
        model = students["default"]
    try:
        model.save(args.out)
    except OSError as e:
        raise CLIError(f"cannot write {args.out}: {e.strerror or e}; nothing was written "
                       "(an earlier file there is untouched)") from None
    _train_summary(args, model, students, time.time() - t0)
    return 0


def _fmt_metrics(m):
    if not m or not m.get("n"):
        return "no validation rows"
    return f"accuracy {m['accuracy']:.3f}  QWK {m['qwk']:.3f}  macro-F1 {m['macro_f1']:.3f}  ({m['n']:,} rows)"


def _train_summary(args, model, students, seconds):
    size = os.path.getsize(args.out)
    n_params = sum(s.n_params for s in students.values())
    first = next(iter(students.values()))
    lam = first.meta["training"]["lam"]
    kind = "KD student (λ = %g, T = %g)" % (lam, args.temperature) if lam > 0 else "plain NN (no teacher)"
    print(f"saved {args.out}: {kind}, preset {args.preset}, {n_params:,} parameters, {_human_size(size)}, "
          f"trained in {seconds:.1f} s")
    if len(students) == 1 and "default" in students:
        print(f"classes: {', '.join(map(str, first.classes))}")
        print(f"validation: {_fmt_metrics(first.meta.get('validation_metrics'))}")
    else:
        print(f"{len(students)} items ({args.item_col}):")
        for g, st in students.items():
            print(f"  {g}: {st.n_params:,} parameters, classes {', '.join(map(str, st.classes))}; "
                  f"validation {_fmt_metrics(st.meta.get('validation_metrics'))}")


# =============================================================================== score
def _model_columns(model, args):
    cols = dict(model.meta.get("columns") or {})
    text_col = args.text_col or cols.get("text") or "text"
    ctx_col = args.context_col or (cols.get("context") if model.uses_context else None)
    if model.uses_context and not ctx_col:
        raise CLIError("this model was trained with a context column; set --context-col")
    item_col = None
    from .bundle import Bundle

    if isinstance(model, Bundle):
        item_col = args.item_col or model.item_col or cols.get("item")
        if not item_col:
            raise CLIError("this model holds per-item students; set --item-col")
    return text_col, ctx_col, item_col


def _load_model(path):
    from .io import load

    return load(path)


def cmd_score(args):
    import numpy as np

    from .bundle import Bundle
    from .data import AtomicCsvWriter, CsvReader

    if not 0.0 <= args.review_below <= 1.0:
        raise CLIError(f"--review-below must be between 0 and 1, got {args.review_below}")
    if args.chunk_size < 1:
        raise CLIError(f"--chunk-size must be >= 1, got {args.chunk_size}")
    _check_out_path(args.out, [args.data, args.model])
    model = _load_model(args.model)
    text_col, ctx_col, item_col = _model_columns(model, args)
    classes = model.classes
    out_cols = ["pred"] + [f"p_{c}" for c in classes] + ["confidence", "needs_review"]
    t0 = time.time()
    n = flagged = 0
    pred_time = 0.0
    tty = sys.stderr.isatty()
    with CsvReader(args.data, [(text_col, "--text-col")]
                   + ([(ctx_col, "--context-col")] if ctx_col else [])
                   + ([(item_col, "--item-col")] if item_col else [])) as reader:
        if reader.note:
            _note(reader.note)
        clash = [c for c in out_cols if c in reader.index]
        if clash:
            raise CLIError(f"{args.data} already has column(s) {', '.join(clash)}; rename them (is it a scored file?)")
        ti = reader.index[text_col]
        ci = reader.index[ctx_col] if ctx_col else None
        ii = reader.index[item_col] if item_col else None
        try:
            w = AtomicCsvWriter(args.out, reader.header + out_cols)
        except OSError as e:
            raise CLIError(f"cannot write {args.out}: {e.strerror or e}") from None
        with _WriteErrors(args.out), w:
            for chunk in reader.chunks(args.chunk_size):
                texts = [r[ti] for r in chunk]
                ctx = None if ci is None else [r[ci] for r in chunk]
                t1 = time.perf_counter()
                if isinstance(model, Bundle):
                    proba = model.predict_proba_matrix(texts, [r[ii] for r in chunk], ctx, classes)
                else:
                    proba = model.predict_proba(texts, ctx)
                pred_time += time.perf_counter() - t1
                best = proba.argmax(axis=1)
                conf = proba[np.arange(len(chunk)), best]
                review = conf < args.review_below
                flagged += int(review.sum())
                for r, b, pr, c, rv in zip(chunk, best.tolist(), proba.tolist(), conf.tolist(), review.tolist()):
                    w.writerow(r + [classes[b]] + [f"{x:.4f}" for x in pr] + [f"{c:.4f}", "1" if rv else "0"])
                n += len(chunk)
                if tty and not args.quiet:
                    print(f"\rscored {n:,} rows …", end="", file=sys.stderr, flush=True)
            if n == 0:
                raise CLIError(f"{args.data}: has a header row but no data rows; nothing to score")
    if tty and not args.quiet:
        print("\r", end="", file=sys.stderr)
    print(f"scored {n:,} rows → {args.out} in {time.time() - t0:.1f} s "
          f"({1000 * pred_time / max(n, 1):.2f} ms per response); {flagged:,} need review "
          f"(confidence < {args.review_below:g})")
    return 0


class _WriteErrors:
    """Turn an OSError while writing (a full disk) into a one-line error; the writer inside
    has already removed its temporary file."""

    def __init__(self, out):
        self.out = out

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and issubclass(exc_type, OSError):
            raise CLIError(f"cannot write {self.out}: {exc.strerror or exc}; nothing was written "
                           "(an earlier file there is untouched)") from None
        return False


# ============================================================================ evaluate
def cmd_evaluate(args):
    from .bundle import Bundle
    from .data import coerce_labels, label_key, read_table
    from .metrics import classification_details, scoring_metrics

    model = _load_model(args.model)
    text_col, ctx_col, item_col = _model_columns(model, args)
    cols = dict(model.meta.get("columns") or {})
    label_col = args.label_col or cols.get("label") or "label"
    required = [(text_col, "--text-col"), (label_col, "--label-col")]
    required += [(ctx_col, "--context-col")] if ctx_col else []
    required += [(item_col, "--item-col")] if item_col else []
    if args.split is not None:
        required.append((args.split_col, "--split-col"))
    if args.rater2_col:
        required.append((args.rater2_col, "--rater2-col"))
    table = read_table(args.data, required)
    if table.note:
        _note(table.note)
    rows = list(range(len(table)))
    if args.split is None and table.has(args.split_col):
        _note(f"note: evaluating on every row of {args.data} (the training rows too); "
              f"use --split test for held-out rows")
    if args.split is not None:
        splits = [s.strip() for s in table.column(args.split_col)]
        rows = [i for i in rows if splits[i] == args.split]
        if not rows:
            raise CLIError(f"{args.data}: no rows with {args.split_col} == {args.split!r}; the column holds "
                           f"{', '.join(map(repr, sorted(set(splits))[:10]))}")
    classes = model.classes
    y_all = coerce_labels(table.column(label_col), classes)
    unlabeled = sum(1 for i in rows if y_all[i] is None)
    rows = [i for i in rows if y_all[i] is not None]
    if not rows:
        raise CLIError(f"{args.data}: no rows with a label in {label_col!r} to evaluate on")
    texts = [table.rows[i][table.index[text_col]] for i in rows]
    ctx = [table.rows[i][table.index[ctx_col]] for i in rows] if ctx_col else None
    if isinstance(model, Bundle):
        items = [table.rows[i][table.index[item_col]] for i in rows]
        pred = model.predict(texts, items, ctx)
    else:
        items = None
        pred = model.predict(texts, ctx)
    y = [label_key(y_all[i]) for i in rows]
    p = [label_key(v) for v in pred]
    known = [label_key(c) for c in classes]
    unseen = sorted(set(y) - set(known))
    labels = known + unseen
    res = {"model": args.model, "data": args.data, "split": args.split, "n": len(rows),
           "unlabeled_rows_skipped": unlabeled, "labels": labels,
           "model_vs_human": scoring_metrics(y, p, labels=labels),
           **classification_details(y, p, labels)}
    if unseen:
        res["unseen_labels"] = unseen
    if args.rater2_col:
        r2_all = coerce_labels(table.column(args.rater2_col), classes)
        both = [k for k, i in enumerate(rows) if r2_all[i] is not None]
        r2 = [label_key(r2_all[rows[k]]) for k in both]
        lab2 = labels + sorted(set(r2) - set(labels))
        res["human_vs_human"] = scoring_metrics([y[k] for k in both], r2, labels=lab2)
        res["model_vs_human_same_rows"] = scoring_metrics([y[k] for k in both], [p[k] for k in both], labels=lab2)
    if items is not None:
        per = {}
        for k, it in enumerate(items):
            per.setdefault(str(it).strip(), []).append(k)
        res["per_item"] = {it: scoring_metrics([y[k] for k in ks], [p[k] for k in ks], labels=labels)
                           for it, ks in sorted(per.items())}
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    _print_evaluation(res, args)
    return 0


def _print_evaluation(res, args):
    where = f"split {res['split']!r}, " if res["split"] is not None else ""
    print(f"{res['model']} on {res['data']} ({where}{res['n']:,} labeled rows"
          + (f"; {res['unlabeled_rows_skipped']:,} unlabeled rows skipped" if res["unlabeled_rows_skipped"] else "")
          + ")")
    if res.get("unseen_labels"):
        print(f"note: labels {', '.join(res['unseen_labels'])} are not among the model's classes; "
              "those rows always count as wrong")
    print(f"{'':22}{'rows':>7}{'accuracy':>10}{'QWK':>8}{'macro-F1':>10}")

    def line(name, m):
        print(f"{name:22}{m['n']:>7,}{m['accuracy']:>10.3f}{m['qwk']:>8.3f}{m['macro_f1']:>10.3f}")

    line("model vs human", res["model_vs_human"])
    if "human_vs_human" in res:
        line("  same rows", res["model_vs_human_same_rows"])
        line(f"human vs {args.rater2_col}", res["human_vs_human"])
    print()
    print(f"{'class':>10}{'precision':>11}{'recall':>8}{'F1':>7}{'support':>9}")
    for lab, m in res["per_class"].items():
        print(f"{lab:>10}{m['precision']:>11.3f}{m['recall']:>8.3f}{m['f1']:>7.3f}{m['support']:>9,}")
    print()
    print("confusion matrix (rows: human score, columns: model score)")
    labels = res["labels"]
    w = max(6, max(len(s) for s in labels) + 2)
    print(" " * w + "".join(f"{s:>{w}}" for s in labels))
    for s, row in zip(labels, res["confusion_matrix"]):
        print(f"{s:>{w}}" + "".join(f"{v:>{w},}" for v in row))
    if "per_item" in res:
        print()
        print(f"{'item':22}{'rows':>7}{'accuracy':>10}{'QWK':>8}{'macro-F1':>10}")
        for it, m in res["per_item"].items():
            line(str(it)[:21], m)


# ================================================================================ info
def cmd_info(args):
    from .bundle import Bundle
    from .io import read_file

    meta, _ = read_file(args.model)
    model = _load_model(args.model)
    size = os.path.getsize(args.model)
    students = model.students if isinstance(model, Bundle) else {"default": model}
    out = {"file": args.model, "size_bytes": size, "format_version": meta.get("version"),
           "written_by": next(iter(meta["students"].values())).get("tinykd_version"),
           "n_params": model.n_params, "kind": "bundle" if isinstance(model, Bundle) else "student",
           "item_col": getattr(model, "item_col", None), "students": {}}
    for name, st in students.items():
        out["students"][name] = {
            "preset": st.meta.get("preset"), "classes": st.classes, "n_params": st.n_params,
            "vocab_size": len(st.vocab), "max_len": st.vocab.max_len, "uses_context": st.uses_context,
            "config": st.net.config, "columns": st.meta.get("columns"), "training": st.meta.get("training"),
            "validation_metrics": st.meta.get("validation_metrics")}
    if args.json:
        print(json.dumps(out, indent=2, default=str))
        return 0
    print(f"{args.model}: {_human_size(size)}, tinykd model format {out['format_version']}, "
          f"written by tinykd {out['written_by']}")
    if isinstance(model, Bundle):
        print(f"per-item bundle: {len(students)} students for column {model.item_col!r}, "
              f"{model.n_params:,} parameters in all")
    for name, s in out["students"].items():
        tr = s["training"] or {}
        head = f"item {name}: " if isinstance(model, Bundle) else ""
        print(f"{head}preset {s['preset']}, {s['n_params']:,} parameters, vocabulary {s['vocab_size']:,} words, "
              f"max length {s['max_len']} tokens{', question/context before the answer' if s['uses_context'] else ''}")
        print(f"  classes: {', '.join(map(str, s['classes']))}")
        if tr:
            kind = f"KD (λ = {tr.get('lam'):g}, T = {tr.get('temperature'):g})" if tr.get("teacher") and tr.get("lam") \
                else "plain NN (no teacher)"
            print(f"  training: {kind}; {tr.get('n_train', 0):,} rows + {tr.get('n_transfer', 0):,} transfer, "
                  f"{tr.get('n_val', 0):,} validation; best epoch {tr.get('best_epoch')} of {tr.get('epochs')} "
                  f"(stopped: {tr.get('stopped')}); seed {tr.get('seed')}; {tr.get('seconds')} s")
        if s["validation_metrics"]:
            print(f"  validation: {_fmt_metrics(s['validation_metrics'])}")
        if s["columns"]:
            print("  columns: " + ", ".join(f"{k} = {v}" for k, v in s["columns"].items() if v))
    return 0


# ============================================================================= augment
def cmd_augment(args):
    """Write DATA's rows, then ``--n`` perturbed copies of every labelled training answer (label empty,
    id ``<id>~aug<k>``, other columns as the original's): transfer data for a teacher to label."""
    from .augment import augment
    from .data import AtomicCsvWriter, normalize_labels, read_table

    if args.n < 1:
        raise CLIError(f"--n must be >= 1, got {args.n}")
    _check_out_path(args.out, [args.data])
    required = [(args.text_col, "--text-col"), (args.label_col, "--label-col"), (args.id_col, "--id-col")]
    if args.item_col:
        required.append((args.item_col, "--item-col"))
    table = read_table(args.data, required)
    if table.note:
        _note(table.note, args.quiet)
    ids = [s.strip() for s in table.column(args.id_col)]
    dups = _duplicates(ids)
    if dups:
        raise CLIError(f"{args.data}: duplicated ids in {args.id_col!r}: {', '.join(dups[:5])}")
    labels, _ = normalize_labels(table.column(args.label_col))
    train_idx = _select_rows(table, args)[0]
    src = [i for i in train_idx if labels[i] is not None]
    if not src:
        raise CLIError(f"{args.data}: no labelled training rows to copy")
    groups = {}
    items = [s.strip() for s in table.column(args.item_col)] if args.item_col else None
    for i in src:
        groups.setdefault(items[i] if items else None, []).append(i)
    ti, li, ii = table.index[args.text_col], table.index[args.label_col], table.index[args.id_col]
    t0 = time.time()
    id_set = set(ids)
    w = AtomicCsvWriter(args.out, table.header)
    n_new = 0
    with _WriteErrors(args.out), w:
        w.writerows(table.rows)
        for rows in groups.values():  # one unigram table per item
            new_ids, new_texts, origin = augment([table.rows[i][ti] for i in rows], [ids[i] for i in rows],
                                                 n=args.n, p_drop=args.p_drop, p_swap=args.p_swap,
                                                 p_span=args.p_span, seed=args.seed)
            clash = id_set.intersection(new_ids)
            if clash:
                raise CLIError(f"{args.data}: ids like {sorted(clash)[0]!r} already exist; is it an augmented file?")
            for nid, text, j in zip(new_ids, new_texts, origin.tolist()):
                row = list(table.rows[rows[j]])
                row[ti], row[li], row[ii] = text, "", nid
                w.writerow(row)
                n_new += 1
    print(f"wrote {args.out}: the {len(table):,} rows of {args.data} + {n_new:,} copies of {len(src):,} "
          f"labelled training answers ({time.time() - t0:.1f} s). Next: label the file with the teacher "
          f"(tinykd-teacher export --teacher FOLDER --data {args.out} …), then tinykd train {args.out} --teacher …")
    return 0


# ================================================================================ demo
def cmd_demo(args):
    from .demo import run_demo

    return run_demo(out=args.out, quick=args.quick, teacher_file=args.teacher_file, seed=args.seed,
                    quiet=args.quiet)


# ============================================================================== parser
class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse's usage block is noise here)
        self.exit(2, f"tinykd: error: {message} (see: {self.prog} --help)\n")


def build_parser():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the traceback on errors")
    common.add_argument("--quiet", "-q", action="store_true", help="print only the summary")
    p = _Parser(prog="tinykd", description="Distil a fine-tuned BERT scorer of short answers into a tiny "
                "student that trains and scores on a plain CPU.",
                epilog="Start with: tinykd demo")
    p.add_argument("--version", action="version", version=f"tinykd {_version()}")
    p.add_argument("--debug", action="store_true", default=False, help="show the traceback on errors")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", parser_class=_Parser)

    t = sub.add_parser("train", parents=[common], help="train a student on a CSV (KD with --teacher)",
                       description="Train a student scorer. With --teacher (a soft-label CSV keyed by id) and "
                       "λ > 0 it is a KD student; otherwise the plain NN.")
    t.add_argument("data", help="training CSV")
    t.add_argument("--out", "-o", required=True, help="model file to write (.npz)")
    t.add_argument("--teacher", help="soft-label CSV: id, p_<label>… (see README, 'Soft-label file')")
    t.add_argument("--from-logits", action="store_true",
                   help="the teacher file holds only logits; convert them with a softmax")
    t.add_argument("--allow-missing-teacher", action="store_true",
                   help="train labeled rows with no teacher row on the hard label only (default: refuse)")
    t.add_argument("--preset", default="7t", help="7t (default), falling_weights, gelatin or bathtub")
    t.add_argument("--lam", type=float, default=None, help="λ of the soft term (default 1 with --teacher; 0 = plain NN)")
    t.add_argument("--temperature", type=float, default=1.0, help="distillation temperature T (default 1)")
    t.add_argument("--text-col", default="text", help="answer column (default text)")
    t.add_argument("--label-col", default="label", help="human score column (default label)")
    t.add_argument("--id-col", default="id", help="id column joining --teacher rows (default id)")
    t.add_argument("--context-col", help="context column placed before the answer (e.g. the question)")
    t.add_argument("--split-col", default=None,
                   help="split column (default: 'split' when the file has one; '' to train on every row)")
    t.add_argument("--train-split", default="train", help="split value of training rows (default train)")
    t.add_argument("--val-split", default=None,
                   help="split value of validation rows (default: 'val' if present, else a seeded 1/8 holdout)")
    t.add_argument("--item-col", help="train one student per value of this column (a per-item bundle)")
    t.add_argument("--epochs", type=int, default=40)
    t.add_argument("--patience", type=int, default=5)
    t.add_argument("--batch-size", type=int, default=32)
    t.add_argument("--lr", type=float, default=1e-3)
    t.add_argument("--seed", type=int, default=0)
    t.set_defaults(func=cmd_train)

    s = sub.add_parser("score", parents=[common], help="score a CSV with a model, streaming",
                       description="Write every row of DATA back with pred, p_<label> per class, confidence "
                       "(the top probability) and needs_review (1 when confidence < --review-below).")
    s.add_argument("model")
    s.add_argument("data")
    s.add_argument("--out", "-o", required=True, help="scored CSV to write")
    s.add_argument("--text-col", help="answer column (default: the model's training column)")
    s.add_argument("--context-col", help="context column (default: the model's)")
    s.add_argument("--item-col", help="item column for a per-item model (default: the model's)")
    s.add_argument("--review-below", type=float, default=REVIEW_BELOW,
                   help=f"flag rows whose confidence is below this (default {REVIEW_BELOW})")
    s.add_argument("--chunk-size", type=int, default=CHUNK_ROWS, help=argparse.SUPPRESS)
    s.set_defaults(func=cmd_score)

    e = sub.add_parser("evaluate", parents=[common], help="accuracy, QWK, macro-F1, per-class, confusion matrix")
    e.add_argument("model")
    e.add_argument("data")
    e.add_argument("--split", help="evaluate only rows whose --split-col has this value (e.g. test)")
    e.add_argument("--split-col", default="split")
    e.add_argument("--label-col", help="human score column (default: the model's training column)")
    e.add_argument("--rater2-col", help="a second human rater's column: adds human-human agreement")
    e.add_argument("--text-col")
    e.add_argument("--context-col")
    e.add_argument("--item-col")
    e.add_argument("--json", action="store_true", help="print the results as JSON")
    e.set_defaults(func=cmd_evaluate)

    i = sub.add_parser("info", parents=[common], help="what a model file holds")
    i.add_argument("model")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_info)

    a = sub.add_parser("augment", parents=[common], help="add perturbed copies of the training answers "
                       "(transfer data for the teacher to label)",
                       description="Copy DATA and append N perturbed copies of every labelled training answer "
                       "(words dropped / swapped / an answer cut short; see tinykd.augment) with an empty label "
                       "and id <id>~aug<k>. Label the result with the teacher, then train on it with --teacher: "
                       "the copies enter the soft term only.")
    a.add_argument("data", help="training CSV")
    a.add_argument("--out", "-o", required=True, help="CSV to write (the input rows + the copies)")
    a.add_argument("--n", type=int, default=8, help="copies per answer (default 8)")
    a.add_argument("--p-drop", type=float, default=0.1, help="probability of dropping each word (default 0.1)")
    a.add_argument("--p-swap", type=float, default=0.1,
                   help="probability of replacing each word by a random training word (default 0.1)")
    a.add_argument("--p-span", type=float, default=0.25,
                   help="probability of keeping only a span of 30-90%% of the words (default 0.25)")
    a.add_argument("--text-col", default="text")
    a.add_argument("--label-col", default="label")
    a.add_argument("--id-col", default="id")
    a.add_argument("--split-col", default=None, help="split column (default split, if the file has it)")
    a.add_argument("--train-split", default="train", help="split value of the rows to copy (default train)")
    a.add_argument("--item-col", help="one word table per item (swaps stay within an item's answers)")
    a.add_argument("--seed", type=int, default=0)
    a.set_defaults(func=cmd_augment)

    d = sub.add_parser("demo", parents=[common], help="teacher vs plain NN vs KD on bundled SciEntsBank data",
                       description="Train a plain NN and a KD student on bundled SciEntsBank answers with bundled "
                       "teacher probabilities, compare them with the teacher, save the KD model and score examples.")
    d.add_argument("--out", "-o", default="tinykd-demo.npz", help="where to save the KD model (default tinykd-demo.npz)")
    d.add_argument("--quick", action="store_true", help="a reduced run (small sample, 2 epochs) for CI")
    d.add_argument("--teacher-file", help=argparse.SUPPRESS)
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=cmd_demo)
    return p


def _version():
    try:
        from importlib.metadata import version

        return version("tinykd")
    except Exception:
        return "?"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False) or os.environ.get("TINYKD_DEBUG", "") not in ("", "0")
    if args.cmd is None:
        parser.print_help(sys.stderr)
        return 2
    if args.cmd in ("train", "augment"):
        args.split_col_given = args.split_col is not None
        args.split_col = "split" if args.split_col is None else (args.split_col or None)  # '' = no split
        args.val_split_given = getattr(args, "val_split", None) is not None
        args.val_split = getattr(args, "val_split", None) or "val"
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        if debug:
            raise
        _err("interrupted; nothing was written (any earlier file at --out is untouched)")
        return 130
    except BrokenPipeError:
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 1
    except Exception as e:
        if debug:
            raise
        if isinstance(e, (CLIError, ValueError, OSError, LookupError)):
            if isinstance(e, OSError) and e.filename:
                what = getattr(e, "strerror", None) or str(e)
                _err(f"error: {e.filename}: {what}")
            else:
                _err(f"error: {_one_line(e)}")
            return 2
        _err(f"internal error: {type(e).__name__}: {_one_line(e)} (run again with --debug for the traceback)")
        return 1


if __name__ == "__main__":  # python -m tinykd.cli
    sys.exit(main())
