"""The ``tinykd`` command line: train, score, evaluate, report, info, augment, distill, demo, export.

A thin face: it reads files, turns options into calls of the library
(:func:`tinykd.train.items.fit_items`, :func:`tinykd.scoring.scorefile.score_csv`,
:func:`tinykd.quality.evaluate.evaluation_report`, :func:`tinykd.quality.evaluate.fitness_report`,
:func:`tinykd.quality.report.render_html`, :func:`tinykd.distill.augment.augment_rows`) and prints.

Every user error (a bad file, a missing column, a damaged model, a bad option) ends the
command with exit status 2 and one line on stderr, ``tinykd: error: …``; ``--debug`` (or
``TINYKD_DEBUG=1``) shows the traceback instead. Ctrl-C exits with status 130 (SIGTERM or
SIGHUP while a file is written: 128 + the signal number) and writes nothing: models and scored
files are written to a temporary file and renamed into place only when complete. ``tinykd
score`` imports NumPy and Numba only (never scikit-learn).
"""
from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import os
import sys
import time

from tinykd.files.atomic import check_output_path as _check_out_path
from tinykd.cli.parser import build_parser
from tinykd.cli.suggest import cmd_suggest
from tinykd.errors import OptionError


class CLIError(Exception):
    """A user error: printed as one line, exit status 2."""


def _note(msg, quiet=False):
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


class _WriteErrors:
    """An OSError while writing (a full disk) → one line; the writer has removed its temporary file."""

    def __init__(self, out):
        self.out = out

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and issubclass(exc_type, OSError):
            raise CLIError(f"cannot write {self.out}: {exc.strerror or exc}; nothing was written "
                           "(an earlier file there is untouched)") from None
        return False


def _splits(table, args):
    """The split column's values (unset: every row trains), from --split-col."""
    if args.split_col == "":
        return None
    col = args.split_col or "split"
    if not table.has(col):
        if args.split_col:
            table.require(col, "--split-col")
        return None
    return table.column(col)


def _dask_client(stack, args):
    """The Dask client of ``--dask ADDRESS`` / ``--jobs N``, closed (with a local cluster) when ``stack``
    closes; one line without the extra, or when the scheduler cannot be reached."""
    from tinykd.cluster import tasks as tkd

    if not tkd.available():
        raise CLIError(tkd.INSTALL)
    if args.jobs is not None and args.jobs < 1:
        raise CLIError(f"--jobs must be >= 1, got {args.jobs}")
    try:
        return stack.enter_context(tkd.connect(args.dask, None if args.dask else (args.jobs or os.cpu_count() or 1)))
    except OSError as e:
        raise CLIError(f"--dask {args.dask}: cannot reach the scheduler ({' '.join(str(e).split())})") from None


# =============================================================================== train
def _train_options(args):
    """The :class:`~tinykd.train.options.TrainOptions` of ``tinykd train``'s flags (checked)."""
    from tinykd.train.options import TrainOptions

    return TrainOptions(preset=args.preset, lam=args.lam, temperature=args.temperature, soft_loss=args.soft_loss,
                        ordinal=args.ordinal, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                        patience=args.patience, seed=args.seed, offsets=not args.no_offsets)


def cmd_train(args):
    from tinykd.train.items import fit_items
    from tinykd.files.softlabels import SoftLabelError
    from tinykd.files.csvfiles import read_table
    from tinykd.scoring.student import add_names

    options = _train_options(args)
    if (args.dask or args.jobs is not None) and not args.item_col:
        raise CLIError("--dask / --jobs train one student per item as tasks: give --item-col")
    _check_out_path(args.out, [args.data, *args.teacher])
    for t in args.teacher:
        if not os.path.exists(t):
            raise CLIError(f"--teacher {t}: no such file")
        if not os.path.isfile(t):  # it is read more than once
            raise CLIError(f"--teacher {t}: not a regular file (a folder or a pipe); save the soft labels to a file")
    cols = {k: getattr(args, f"{k}_col") for k in ("text", "label", "id", "context", "item")}
    need = ["text", "label"] + (["id"] if args.teacher else []) + [k for k in ("context", "item") if cols[k]]
    table = read_table(args.data, [(cols[k], f"--{k}-col") for k in need], where=args.where)
    if table.note:
        _note(table.note)
    label_names = _given_label_names(args, table)
    splits = _splits(table, args)
    if splits is not None:
        _note(f"training rows: {args.split_col or 'split'} == {args.train_split!r}; validation: "
              + (f"== {args.val_split or 'val'!r} where present, else a seeded 1/8 of the training rows"),
              args.quiet)
    get = lambda k: table.column(cols[k]) if cols[k] and table.has(cols[k]) else None  # noqa: E731
    t0 = time.time()
    with contextlib.ExitStack() as stack:
        fit = fit_items
        if args.dask or args.jobs is not None:
            from tinykd.cluster.tasks import fit_items as dask_fit_items

            fit = functools.partial(dask_fit_items, client=_dask_client(stack, args))
        try:
            model = fit(get("text"), get("label"), items=get("item"), ids=get("id"), contexts=get("context"),
                        splits=splits, train_split=args.train_split, val_split=args.val_split,
                        teacher=args.teacher or None, from_logits=args.from_logits,
                        allow_missing_teacher=args.allow_missing_teacher, columns=cols, options=options,
                        verbose=not args.quiet)
        except SoftLabelError as e:  # name the command-line flags, not the Python arguments
            raise CLIError("--teacher " + str(e).replace("pass from_logits=True", "pass --from-logits").replace(
                "pass allow_missing_teacher=True", "pass --allow-missing-teacher")) from None
    students = getattr(model, "students", {"default": model})
    if args.quiet:  # warnings about the data are shown even then
        for msg in dict.fromkeys(m for st in students.values() for m in st.meta.get("notes", [])):
            _note(msg)
    add_names(model, label_names, get("context"), get("item"))
    for st in students.values():
        st.meta["data_file"] = os.path.basename(args.data)
        st.meta["teacher_file"] = ", ".join(os.path.basename(t) for t in args.teacher) or None
    with _WriteErrors(args.out):
        model.save(args.out)
    _train_summary(args, options, students, time.time() - t0)
    return 0


def _given_label_names(args, table):
    """``--label-names`` checked against the data's scores before training (None when not given)."""
    from tinykd.files.csvfiles import normalize_labels
    from tinykd.scoring.modelmeta import label_names_for_data

    if args.label_names is None:
        return None
    return label_names_for_data(args.label_names, normalize_labels(table.column(args.label_col))[0])


def _train_summary(args, options, students, seconds):
    from tinykd.cli.info import classes_named
    from tinykd.quality.evaluate import format_metrics

    n_params = sum(s.n_params for s in students.values())
    first = next(iter(students.values()))
    lam = first.meta["training"]["lam"]
    kind = "KD student (λ = %g, T = %g)" % (lam, options.temperature) if lam > 0 else "plain NN (no teacher)"
    print(f"saved {args.out}: {kind}, preset {options.preset}, {n_params:,} parameters, "
          f"{os.path.getsize(args.out) / 1024:.1f} KB, trained in {seconds:.1f} s")
    if not args.item_col:
        print(f"classes: {classes_named(first.classes, first.label_names)}")
        print(f"validation: {format_metrics(first.meta.get('validation_metrics'))}")
        return
    print(f"{len(students)} items ({args.item_col}):")
    for g, st in students.items():
        print(f"  {g}: {st.n_params:,} parameters, classes {classes_named(st.classes, st.label_names)}; "
              f"validation {format_metrics(st.meta.get('validation_metrics'))}")


# =============================================================================== score
def cmd_score(args):
    import numpy as np

    from tinykd.scoring.scorefile import check_score_paths, data_files, score_csv
    from tinykd.scoring.scorer import REVIEW_BELOW, decide
    from tinykd.scoring.student import load

    if args.review_below is not None and args.target_accuracy is not None:
        raise CLIError("give --review-below or --target-accuracy, not both")
    review_below = REVIEW_BELOW if args.review_below is None else args.review_below
    decide(np.zeros((0, 2)), review_below)  # checks the threshold before any work
    if args.chunk_size < 1:
        raise CLIError(f"--chunk-size must be >= 1, got {args.chunk_size}")
    data = args.data
    many = os.path.isdir(data) or data.lower().endswith((".parquet", ".pq")) or (
        not os.path.exists(data) and any(ch in data for ch in "*?["))  # a folder, Parquet, a glob
    if args.dask or args.jobs is not None or many:
        if args.explain:
            raise CLIError("--explain scores one CSV file in this process; drop --dask / --jobs, or score the "
                           "files one at a time")
        if args.human_col is not None:
            raise CLIError("--human-col scores one CSV file in this process; drop --dask / --jobs, or score the "
                           "files one at a time")
        return _score_dask(args, review_below)
    files, _ = data_files(data)  # the checks of the Dask path, on one file
    check_score_paths([*files, args.model], args.out)
    model = load(args.model)
    if args.target_accuracy is not None:
        choice = _review_for_target(model, args.model, args.target_accuracy)
        review_below = choice["threshold"]
        print(f"--target-accuracy {choice['target']:g}: --review-below {review_below:.4f}; on the model's "
              f"{choice['n']:,} validation rows it flags {choice['flagged']:.1%}, and the rest are "
              f"{choice['accuracy']:.1%} right")
    t0 = time.time()
    tty = sys.stderr.isatty() and not args.quiet
    progress = (lambda n: print(f"\rscored {n:,} rows …", end="", file=sys.stderr, flush=True)) if tty else None
    with _WriteErrors(args.out):
        res = score_csv(model, args.data, args.out, text_col=args.text_col, context_col=args.context_col,
                        item_col=args.item_col, where=args.where, review_below=review_below,
                        chunk_size=args.chunk_size, on_note=_note, on_progress=progress, explain=args.explain,
                        human_col=args.human_col)
    if tty:
        print("\r", end="", file=sys.stderr)
    n = res["n"]
    print(f"scored {n:,} rows → {args.out} in {time.time() - t0:.1f} s "
          f"({1000 * res['predict_seconds'] / max(n, 1):.2f} ms per response); {res['flagged']:,} need review "
          f"(confidence < {review_below:.4g})")
    if args.explain:
        print(f"explanations: {1000 * res['explain_seconds'] / max(n, 1):.2f} ms per response (column explanation)")
    if args.human_col is not None:
        _final_summary(res["final"], res["not_classes"])
    return 0


def _final_summary(counts, not_classes):
    """``--human-col``: how many final scores are people's and machine's, how often the machine agrees with the
    people where both scored, and (a note) the people's scores that are not classes of the model."""
    both = counts["both"]
    agree = (f"machine agrees with {counts['agree']:,} of {both:,} human scores ({counts['agree'] / both:.1%})"
             if both else "no human scores to compare the machine with")
    print(f"final: {counts['human']:,} human, {counts['machine']:,} machine, {counts['review']:,} machine "
          f"(needs review); {agree}")
    if not_classes:
        from tinykd.files.csvfiles import shown_list

        _note(f"note: {sum(not_classes.values()):,} human score(s) are not classes of the model: "
              f"{shown_list(not_classes, quote=False)} (final all the same: the person decides)")


def _score_dask(args, review_below):
    """``tinykd score`` as Dask tasks, one per file (tinykd.cluster.frames), every check done before the client
    starts: the same input and output checks as one process (tinykd.scoring.scorefile)."""
    from tinykd.cluster import tasks as tkd

    if not tkd.available():
        raise CLIError(tkd.INSTALL)
    from tinykd.cluster.frames import plan_score, score_files
    from tinykd.files.atomic import signals_raise
    from tinykd.scoring.scorefile import data_files

    if args.dask is None and args.jobs is None:
        args.jobs = os.cpu_count() or 1
    files, fmt = data_files(args.data)
    if fmt == "parquet" and importlib.util.find_spec("pyarrow") is None:
        raise CLIError('Parquet files need pyarrow: pip install "tinykd[dask]"')
    t0 = time.time()
    job = plan_score(files, fmt, args.model, args.out, text_col=args.text_col, context_col=args.context_col,
                     item_col=args.item_col, where=args.where, on_note=_note)
    if args.target_accuracy is not None:
        choice = _review_for_target(job.model, args.model, args.target_accuracy)
        review_below = choice["threshold"]
        print(f"--target-accuracy {choice['target']:g}: --review-below {review_below:.4f}")

    def progress(done, parts, rows):
        if not args.quiet:
            print(f"scored {done:,} of {parts:,} parts ({rows:,} rows) …", file=sys.stderr, flush=True)

    with contextlib.ExitStack() as stack:
        stack.enter_context(signals_raise())  # SIGTERM / SIGHUP: the cluster closed, one line, as Ctrl-C
        client = _dask_client(stack, args)
        with _WriteErrors(args.out):
            res = score_files(client, job, review_below, args.chunk_size, on_progress=progress)
    where = f"--dask {args.dask}" if args.dask else f"{args.jobs} local worker process{'es' if args.jobs > 1 else ''}"
    print(f"scored {res['n']:,} rows of {len(files):,} file(s) → {args.out} ({res['parts']:,} part(s)) in "
          f"{time.time() - t0:.1f} s on {where}; {res['flagged']:,} need review (confidence < {review_below:.4g})")
    return 0


def _review_for_target(model, path, target):
    """The review threshold reaching ``target`` on the validation rows stored in the model."""
    from tinykd.scoring.calibration import check_target, review_threshold

    check_target(target)
    outcomes = model.validation_outcomes()
    if outcomes is None:
        raise CLIError(f"{path} holds no validation predictions (trained without validation rows, or written "
                       "before tinykd stored them); set --review-below instead, or retrain")
    try:
        return review_threshold(*outcomes, target)
    except ValueError as e:
        raise CLIError(f"--target-accuracy: {e}; set a lower target") from None


# ============================================================================ evaluate
def _human_scored_rows(args, model, doing, groups=()):
    """The data file's columns that ``evaluate`` and ``report`` compare the model with: ``(col, text,
    label, context, item)``, where ``col(name)`` is a column's cells (None for no column)."""
    from tinykd.scoring.student import data_columns
    from tinykd.files.csvfiles import read_table

    text_col, ctx_col, item_col = data_columns(model, args.text_col, args.context_col, args.item_col)
    label_col = args.label_col or (model.meta.get("columns") or {}).get("label") or "label"
    need = [(text_col, "--text-col"), (label_col, "--label-col")] + [(g, "--group-col") for g in groups]
    need += [(c, f) for c, f in ((ctx_col, "--context-col"), (item_col, "--item-col"),
                                 (args.split_col if args.split is not None else None, "--split-col"),
                                 (args.rater2_col, "--rater2-col")) if c]
    table = read_table(args.data, need, where=args.where)
    if table.note:
        _note(table.note)
    if args.split is None and table.has(args.split_col):
        _note(f"note: {doing} on every row of {args.data} (the training rows too); use --split test for "
              "held-out rows")
    col = lambda c: table.column(c) if c else None  # noqa: E731
    return col, text_col, label_col, ctx_col, item_col


def _label_names(label_col, rater2_col):
    """How an error about the human scores names their columns."""
    return {"label_name": f"column {label_col!r} (--label-col)",
            "rater2_name": f"column {rater2_col!r} (--rater2-col)"}


def cmd_evaluate(args):
    from tinykd.quality.evaluate import evaluation_report, format_report
    from tinykd.scoring.student import load

    model = load(args.model)
    col, text_col, label_col, ctx_col, item_col = _human_scored_rows(args, model, "evaluating")
    try:
        res = evaluation_report(model, col(text_col), col(label_col), contexts=col(ctx_col), items=col(item_col),
                                rater2=col(args.rater2_col), splits=col(args.split_col) if args.split else None,
                                split=args.split, **_label_names(label_col, args.rater2_col))
    except ValueError as e:
        raise CLIError(f"{args.data}: {e}") from None
    res = {"model": args.model, "data": args.data, "split": args.split, **res}
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    where = f"split {res['split']!r}, " if res["split"] is not None else ""
    skipped = res["unlabeled_rows_skipped"]
    print(f"{res['model']} on {res['data']} ({where}{res['n']:,} labeled rows"
          + (f"; {skipped:,} unlabeled rows skipped" if skipped else "") + ")")
    print("\n".join(format_report(res, args.rater2_col)))
    return 0


# ============================================================================== report
def cmd_report(args):
    from tinykd.files.atomic import atomic_write_bytes
    from tinykd.quality.evaluate import fitness_report, format_verdicts
    from tinykd.scoring.student import load

    if not args.out and not args.json:
        raise CLIError("give --out REPORT.html (or --json)")
    if args.out:
        _check_out_path(args.out, [args.data, args.model])
    model = load(args.model)
    col, text_col, label_col, ctx_col, item_col = _human_scored_rows(args, model, "reporting", args.group_col)
    try:
        res = fitness_report(model, col(text_col), col(label_col), contexts=col(ctx_col), items=col(item_col),
                             rater2=col(args.rater2_col), groups={g: col(g) for g in args.group_col},
                             splits=col(args.split_col) if args.split else None, split=args.split,
                             nominal=args.nominal, target_accuracy=args.target_accuracy,
                             **_label_names(label_col, args.rater2_col))
    except ValueError as e:
        if isinstance(e, OptionError):
            raise
        raise CLIError(f"{args.data}: {e}") from None
    res = {"model": args.model, "data": args.data, "split": args.split, **res}
    if args.out:
        from tinykd.quality.report import render_html

        page = render_html(res, model=args.model, data=args.data, split=args.split, plots=not args.no_plots)
        with _WriteErrors(args.out):
            atomic_write_bytes(args.out, page.encode("utf-8"))
    if args.json:
        print(json.dumps(_json_ready(res), indent=2))
        return 0
    print("\n".join(format_verdicts(res)))
    from tinykd.quality.plots import INSTALL, available

    plots = "tables only (plots switched off)" if args.no_plots else (
        "with plots" if available() else f"tables only; for the plots: {INSTALL}")
    print(f"wrote {args.out} ({os.path.getsize(args.out) / 1024:.0f} KB, {plots})")
    return 0


def _json_ready(o):
    """Strict JSON: NaN / infinity (an undefined measure) become null."""
    if isinstance(o, dict):
        return {k: _json_ready(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_json_ready(v) for v in o]
    if isinstance(o, float) and not (o == o and abs(o) != float("inf")):
        return None
    return o


# ================================================================================ info
def cmd_info(args):
    from tinykd.cli.info import describe, format_description

    out = describe(args.model)
    print(json.dumps(out, indent=2, default=str) if args.json else "\n".join(format_description(out)))
    return 0


# ============================================================================= augment
def cmd_augment(args):
    """DATA's rows, then ``--n`` perturbed copies of every labelled training answer."""
    from tinykd.distill.augment import augment_rows
    from tinykd.files.csvfiles import AtomicCsvWriter, read_table

    _check_out_path(args.out, [args.data])
    need = [(args.text_col, "--text-col"), (args.label_col, "--label-col"), (args.id_col, "--id-col")]
    table = read_table(args.data, need + ([(args.item_col, "--item-col")] if args.item_col else []), where=args.where)
    if table.note:
        _note(table.note, args.quiet)
    t0 = time.time()
    try:
        copies = augment_rows(table.column(args.text_col), table.column(args.id_col), table.column(args.label_col),
                              splits=_splits(table, args), train_split=args.train_split,
                              items=table.column(args.item_col) if args.item_col else None, n=args.n,
                              p_drop=args.p_drop, p_swap=args.p_swap, p_span=args.p_span, p_splice=args.p_splice,
                              seed=args.seed)
    except OptionError:  # names the option (--seed), not the file
        raise
    except ValueError as e:
        raise CLIError(f"{args.data}: {e}") from None
    ti, li, ii = table.index[args.text_col], table.index[args.label_col], table.index[args.id_col]
    with _WriteErrors(args.out), AtomicCsvWriter(args.out, table.header) as w:
        w.writerows(table.rows)
        for j, nid, text in copies:
            row = list(table.rows[j])
            row[ti], row[li], row[ii] = text, "", nid
            w.writerow(row)
    n_src = len({j for j, _, _ in copies})
    print(f"wrote {args.out}: the {len(table):,} rows of {args.data} + {len(copies):,} copies of {n_src:,} "
          f"labelled training answers ({time.time() - t0:.1f} s). Next: label the file with the teacher "
          f"(tinykd-teacher export --teacher FOLDER --data {args.out} …), then tinykd train {args.out} --teacher …")
    return 0


def cmd_distill(args):
    from tinykd.distill.pipeline import (LAMS, TEACHER_DEFAULTS, TEACHER_INSTALL, TeacherError, distill,
                                         format_report, teacher_available)
    from tinykd.distill.teacher import teacher_base_option

    if not teacher_available():
        raise CLIError(TEACHER_INSTALL)
    if (args.dask or args.jobs is not None) and not args.item_col:
        raise CLIError("--dask / --jobs run one task per item: give --item-col")
    _check_out_path(args.out, [args.data, args.unlabeled])  # --warm-start may be --out: it is read first
    teacher_base_option(args.base, args.teacher_dir, "--base")  # a base not installed: one line, before any work
    topts = {k: getattr(args, f"teacher_{k}") for k in TEACHER_DEFAULTS}  # the --teacher-* flags given
    with contextlib.ExitStack() as stack:
        client = _dask_client(stack, args) if args.dask or args.jobs is not None else None
        try:
            res = distill(args.data, args.out, text_col=args.text_col, label_col=args.label_col, id_col=args.id_col,
                          context_col=args.context_col, item_col=args.item_col, split_col=args.split_col or None,
                          train_split=args.train_split, val_split=args.val_split, test_split=args.test_split,
                          unlabeled=args.unlabeled, teacher_dir=args.teacher_dir, base=args.base, work=args.work,
                          teacher_options={k: v for k, v in topts.items() if v is not None}, preset=args.preset,
                          copies=args.copies, lams=tuple(args.lam) if args.lam else LAMS,
                          temperature=args.temperature, soft_loss=args.soft_loss, ordinal=args.ordinal,
                          epochs=args.epochs, patience=args.patience, seed=args.seed, where=args.where,
                          teacher_threads=args.teacher_threads, offsets=not args.no_offsets, client=client,
                          student_seed=args.student_seed, choose_on=args.choose_on, stop_on=args.stop_on,
                          label_names=args.label_names, warm_start=args.warm_start, rater2_col=args.rater2_col,
                          teacher_vectors=args.teacher_vectors, other_items=args.other_items,
                          teacher_aliases=None if args.teacher_aliases == "none" else args.teacher_aliases,
                          verbose=not args.quiet)
        except TeacherError as e:  # the teacher's process failed: what failed and what to do, one line
            raise CLIError(str(e)) from e
    print(f"saved {args.out} ({os.path.getsize(args.out) / 1024:.1f} KB; work folder {res.work})")
    print("\n".join(format_report(res)))
    return 0


def cmd_export(args):
    from tinykd.export.common import check_review_below
    from tinykd.scoring.student import load

    if not args.onnx and not args.web:
        raise CLIError("give --onnx FILE.onnx and/or --web DIR")
    review_below = check_review_below(args.review_below)
    if args.onnx:
        from tinykd.export.onnx_graph import INSTALL, available

        if not available():
            raise CLIError(INSTALL)
        _check_out_path(args.onnx, [args.model])
    if args.web:
        from tinykd.export.page import check_web_dir

        check_web_dir(args.web)
    model = load(args.model)
    written = []
    if args.onnx:
        from tinykd.export.onnx_graph import export_onnx

        with _WriteErrors(args.onnx):
            written += export_onnx(model, args.onnx, review_below)
    if args.web:
        from tinykd.export.page import export_web

        with _WriteErrors(args.web):
            written += export_web(model, args.web, review_below)
    for p in written:
        print(f"wrote {p} ({os.path.getsize(p) / 1024:.1f} KB)")
    if args.web:
        print(f"open {os.path.join(os.path.abspath(args.web), 'index.html')} in a browser (no network needed)")
    return 0


def cmd_demo(args):
    from tinykd.cli.demo import run_demo

    if args.report:
        _check_out_path(args.report, [args.out])
    return run_demo(out=args.out, quick=args.quick, teacher_file=args.teacher_file, seed=args.seed, quiet=args.quiet,
                    report=args.report)


#: the longest error line printed: a message quoting user data is cut here whatever its source
MAX_ERROR_CHARS = 2000


def _bounded(msg):
    return msg if len(msg) <= MAX_ERROR_CHARS else f"{msg[:MAX_ERROR_CHARS - 1]}… ({len(msg):,} characters)"


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False) or os.environ.get("TINYKD_DEBUG", "") not in ("", "0")
    if args.cmd is None:
        parser.print_help(sys.stderr)
        return 2
    commands = {"train": cmd_train, "score": cmd_score, "evaluate": cmd_evaluate, "report": cmd_report,
                "info": cmd_info, "suggest": cmd_suggest,
                "augment": cmd_augment, "distill": cmd_distill, "demo": cmd_demo, "export": cmd_export}
    try:
        return commands[args.cmd](args) or 0
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM / SIGHUP while writing (atomic.Terminated)
        if debug:
            raise
        signum = getattr(e, "signum", None)
        what = str(e) if signum else "interrupted"
        print(f"tinykd: {what}; nothing was written (any earlier file at --out is untouched)",
              file=sys.stderr, flush=True)
        return 128 + signum if signum else 130
    except BrokenPipeError:
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 1
    except Exception as e:
        if debug:
            raise
        if isinstance(e, OptionError):
            msg = e.for_cli()
        elif isinstance(e, OSError) and e.filename:
            msg = f"{e.filename}: {getattr(e, 'strerror', None) or e}"
        elif isinstance(e, (CLIError, ValueError, OSError, LookupError)):
            msg = str(e).strip() or type(e).__name__
        else:
            print(f"tinykd: internal error: {type(e).__name__}: {_bounded(' '.join(str(e).split()))} "
                  "(run again with --debug for the traceback)", file=sys.stderr, flush=True)
            return 1
        print(f"tinykd: error: {_bounded(' '.join(msg.split()))}", file=sys.stderr, flush=True)
        return 2

