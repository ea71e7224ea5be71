"""The options of the ``tinykd`` command (argparse): every subcommand, its help and its defaults.

:mod:`tinykd.cli.commands` runs the subcommand this parser names in ``args.cmd``.
"""
from __future__ import annotations

import argparse

from tinykd._version import __version__
from tinykd.distill.job import (ALIASES_DEFAULT, ALIASES_MODES, AUTO_PRESETS, BF16_VALUES, CHOOSE_ON, CHOOSE_ON_VALUES,
                                COMBINE_VALUES, LAMS, STOP_ON_VALUES, STUDENT_OPTIONS, TEACHER_DEFAULTS, TRUNCATE_VALUES)
from tinykd.scoring.scorefile import CHUNK_ROWS
from tinykd.scoring.scorer import REVIEW_BELOW
from tinykd.train.losses import SOFT_LOSSES
from tinykd.train.options import TrainOptions


class _Help(argparse.ArgumentDefaultsHelpFormatter):
    """Every default in the help, except unset ones (their help says what happens then)."""

    def _get_help_string(self, action):
        unset = action.default is None or action.default is False or action.default == []
        if unset or action.default is argparse.SUPPRESS or "%(default)" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse's usage block is noise here)
        self.exit(2, f"tinykd: error: {message} (see: {self.prog} --help)\n")


def build_parser():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show the traceback on errors")
    common.add_argument("--quiet", "-q", action="store_true", help="print only the summary")
    p = _Parser(prog="tinykd", description="Distil a fine-tuned BERT scorer of short answers into a tiny "
                "student that trains and scores on a plain CPU.", epilog="Start with: tinykd demo")
    p.add_argument("--version", action="version", version=f"tinykd {__version__}")
    p.add_argument("--debug", action="store_true", default=False, help="show the traceback on errors")
    sub = p.add_subparsers(dest="cmd", metavar="COMMAND", parser_class=_Parser)
    fmt = dict(parents=[common], formatter_class=_Help)
    for add in (_train, _score, _suggest, _evaluate, _report, _info, _export, _augment, _distill, _demo):
        add(sub, fmt)
    return p


def _train(sub, fmt):
    d = TrainOptions()  # every training default has its one home there
    t = sub.add_parser("train", help="train a student on a CSV (KD with --teacher)", **fmt,
                       description="Train a student scorer. With --teacher (a soft-label CSV keyed by id) and "
                       "λ > 0 it is a KD student; otherwise the plain NN.")
    t.add_argument("data", help="training CSV")
    _where(t)
    t.add_argument("--out", "-o", required=True, help="model file to write (.npz)")
    t.add_argument("--teacher", action="append", default=[], help="soft-label CSV: id, p_<label>… (docs/file-formats.md); "
                   "repeat it for one file per item (joined by id)")
    t.add_argument("--from-logits", action="store_true", help="the teacher file holds only logits; apply a softmax")
    t.add_argument("--allow-missing-teacher", action="store_true",
                   help="train labeled rows with no teacher row on the hard label only (else: refuse)")
    t.add_argument("--preset", default=d.preset, help="7t, falling_weights, gelatin, bathtub or wide")
    t.add_argument("--lam", type=float, default=d.lam,
                   help="λ of the soft term (unset: 4 with --teacher; 0 = plain NN)")
    t.add_argument("--temperature", type=float, default=d.temperature, help="distillation temperature T")
    t.add_argument("--soft-loss", choices=SOFT_LOSSES, default=d.soft_loss,
                   help="the soft term: ce (Eq. 4) or mse (the teacher's logits, centred; distill's default)")
    t.add_argument("--ordinal", type=float, default=d.ordinal, help="μ of the expected-score term: the student's "
                   "expected score against the teacher's, squared (numeric scores only; 0 = none)")
    t.add_argument("--no-offsets", action="store_true",
                   help="no per-class decision offsets chosen on the validation rows (tinykd.train.offsets)")
    _columns(t, text="answer column", label="human score column", id="id column joining --teacher rows")
    t.add_argument("--context-col", help="context column placed before the answer (e.g. the question)")
    _split_args(t)
    t.add_argument("--val-split", default=None,
                   help="split value of validation rows (unset: 'val' if present, else a seeded 1/8 holdout)")
    t.add_argument("--item-col", help="train one student per value of this column (a per-item bundle)")
    _label_names_arg(t)
    t.add_argument("--epochs", type=int, default=d.epochs, help="most epochs")
    t.add_argument("--patience", type=int, default=d.patience,
                   help="epochs without a better validation loss before stopping")
    t.add_argument("--batch-size", type=int, default=d.batch_size, help="rows per step")
    t.add_argument("--lr", type=float, default=d.lr, help="Adam's learning rate")
    t.add_argument("--seed", type=int, default=d.seed, help="every random choice (init, shuffling, dropout, holdout)")
    _dask_args(t, "train the items' students as Dask tasks (with --item-col)")


def _score(sub, fmt):
    s = sub.add_parser("score", help="score a CSV with a model, streaming", **fmt,
                       description="Write every row of DATA back with pred, p_<label> per class, confidence "
                       "(the top probability) and needs_review (1 when confidence < --review-below).")
    s.add_argument("model")
    s.add_argument("data")
    _where(s)
    s.add_argument("--out", "-o", required=True, help="scored CSV to write")
    _model_columns(s)
    s.add_argument("--review-below", type=float, default=None,
                   help=f"flag rows whose confidence is below this (unset: {REVIEW_BELOW:g}, or chosen by --target-accuracy)")
    s.add_argument("--target-accuracy", type=float, default=None, metavar="ACC",
                   help="choose --review-below on the model's validation rows: the lowest threshold at which the "
                   "rows not flagged reach this accuracy there (e.g. 0.9)")
    s.add_argument("--explain", action="store_true",
                   help="add a column explanation: the answer's words that moved its score most, strongest first, "
                   "+ towards the score given, \u2212 away from it (e.g. +photosynthesis \u2212dirt; up to 5 words)")
    s.add_argument("--human-col", metavar="COL",
                   help="the column of people's scores, which are final: add final (the person's score where COL "
                   "has one, else pred) and source (human, machine or 'machine, needs review'); every row is still "
                   "scored by the machine, and the summary counts how often it agrees (one CSV file only)")
    s.add_argument("--chunk-size", type=int, default=CHUNK_ROWS, help=argparse.SUPPRESS)
    _dask_args(s, "score as Dask tasks: DATA may then be a folder or glob of CSV or Parquet files, and --out a "
               "folder of scored parts (or one .csv)")


def _suggest(sub, fmt):
    s = sub.add_parser("suggest", help="the unscored answers a person should score next", **fmt,
                       description="Pick the --n rows of DATA without a score that are most worth a person's "
                       "scoring: the student is least sure of them, or (with --work) it and the teacher disagree; "
                       "never two with the same text (case, punctuation and spacing aside), and spread over the "
                       "kinds of answers (k-means of their TF-IDF). Writes those rows, highest priority first, "
                       "with priority, reason, pred and confidence.")
    s.add_argument("model")
    s.add_argument("data")
    _where(s)
    s.add_argument("--n", type=int, default=50, help="how many answers to suggest")
    s.add_argument("--out", "-o", required=True, help="CSV to write: the suggested rows")
    s.add_argument("--seed", type=int, default=0, help="seed of the clustering")
    s.add_argument("--work", metavar="FOLDER", help="a tinykd distill work folder: its teacher's probabilities "
                   "(joined by --id-col) add the student's disagreement with the teacher to the priority")
    s.add_argument("--label-col", help="human score column: rows with a score there are never suggested "
                   "(unset: the model's training column)")
    s.add_argument("--id-col", help="id column joining the teacher's rows of --work (unset: the model's, else id)")
    _model_columns(s)


def _evaluate(sub, fmt):
    e = sub.add_parser("evaluate", help="accuracy, QWK, macro-F1, per-class, confusion matrix", **fmt)
    e.add_argument("model")
    e.add_argument("data")
    _where(e)
    e.add_argument("--split", help="evaluate only rows whose --split-col has this value (e.g. test)")
    e.add_argument("--split-col", default="split", help="split column")
    e.add_argument("--label-col", help="human score column (unset: the model's training column)")
    e.add_argument("--rater2-col", help="a second human rater's column: adds human-human agreement")
    _model_columns(e)
    e.add_argument("--json", action="store_true", help="print the results as JSON")


def _report(sub, fmt):
    r = sub.add_parser("report", help="may this scorer be used? criteria, verdicts, calibration, review trade-off "
                       "as one HTML page", **fmt,
                       description="Check a model against human scores by the criteria of Williamson, Xi & Breyer "
                       "(2012): QWK and Pearson r >= 0.70, |SMD| <= 0.15 (<= 0.10 in each subgroup), at most 0.10 "
                       "below human-human agreement; one verdict per item, the calibration of the confidence and "
                       "the share flagged for review against the accuracy on the rest. Writes one self-contained "
                       "HTML file (plots with the [report] extra).")
    r.add_argument("model")
    r.add_argument("data")
    _where(r)
    r.add_argument("--out", "-o", help="HTML file to write (unset: --json only)")
    r.add_argument("--split", help="report only rows whose --split-col has this value (e.g. test)")
    r.add_argument("--split-col", default="split", help="split column")
    r.add_argument("--label-col", help="human score column (unset: the model's training column)")
    r.add_argument("--rater2-col", help="a second human rater's column: human-human agreement and the degradation")
    r.add_argument("--group-col", action="append", default=[], metavar="COL",
                   help="a subgroup column (gender, language status, school ...); repeatable")
    _model_columns(r)
    r.add_argument("--nominal", action="store_true",
                   help="the scores are categories, not points on a scale (text labels always are)")
    r.add_argument("--target-accuracy", type=float, default=0.9, metavar="ACC",
                   help="the accuracy whose review threshold the report shows")
    r.add_argument("--no-plots", action="store_true", help="tables only")
    r.add_argument("--json", action="store_true", help="print the report as JSON")


def _info(sub, fmt):
    i = sub.add_parser("info", help="what a model file holds", **fmt)
    i.add_argument("model")
    i.add_argument("--json", action="store_true", help="print as JSON")


def _export(sub, fmt):
    xp = sub.add_parser("export", help="a student for an app or a browser: an ONNX graph, or an offline web page",
                        **fmt, description="Export MODEL as an ONNX graph with its vocabulary and settings in a JSON "
                        "file beside it (--onnx; the [export] extra), and/or as a web page that scores offline, "
                        "opened from file:// (--web). Both carry the classes, the calibration and the review "
                        "threshold. A per-item model gives one graph per item and an index, or a page with an "
                        "item selector.")
    xp.add_argument("model")
    xp.add_argument("--onnx", metavar="FILE.onnx", help="ONNX graph to write (a per-item model: FILE.item<k>.onnx), "
                    "and FILE.json beside it")
    xp.add_argument("--web", metavar="DIR", help="folder to write index.html, scorer.js and model.js into")
    xp.add_argument("--review-below", type=float, default=None,
                    help=f"the review threshold the exports carry (unset: {REVIEW_BELOW:g})")


def _augment(sub, fmt):
    a = sub.add_parser("augment", help="add perturbed copies of the training answers (transfer data for the "
                       "teacher to label)", **fmt,
                       description="Copy DATA and append N perturbed copies of every labelled training answer "
                       "(words dropped / swapped / an answer cut short; see tinykd.distill.augment) with an empty label "
                       "and id <id>~aug<k>. Label the result with the teacher, then train on it with --teacher: "
                       "the copies enter the soft term only.")
    a.add_argument("data", help="training CSV")
    _where(a)
    a.add_argument("--out", "-o", required=True, help="CSV to write (the input rows + the copies)")
    a.add_argument("--n", type=int, default=8, help="copies per answer")
    a.add_argument("--p-drop", type=float, default=0.1, help="probability of dropping each word")
    a.add_argument("--p-swap", type=float, default=0.1, help="probability of replacing each word by a training word")
    a.add_argument("--p-span", type=float, default=0.25, help="probability of keeping only a span of 30-90%% of the words")
    a.add_argument("--p-splice", type=float, default=0.0, help="probability of ending a copy with another answer's "
                   "words from a random cut on (docs/decisions/transfer-splice.md)")
    _columns(a, text="answer column", label="human score column", id="id column")
    _split_args(a)
    a.add_argument("--item-col", help="one word table per item (swaps stay within an item's answers)")
    a.add_argument("--seed", type=int, default=0, help="seed of the copies")


#: what the help of a --teacher-* flag adds to its default
_HINTS = {"max_length": "; auto: the training rows' 99th percentile of word pieces, from 128 to 512"}


def _length(value):
    """``--teacher-max-length``: "auto" or a whole number >= 1."""
    if value == "auto" or value.isdigit() and int(value) >= 1:
        return value if value == "auto" else int(value)
    raise argparse.ArgumentTypeError(f"must be auto or a whole number >= 1, got {value!r}")


def _distill(sub, fmt):
    d = STUDENT_OPTIONS  # the students' defaults: distill's recipe (tinykd.distill.job)
    lams = " ".join(f"{lam:g}" for lam in LAMS)
    x = sub.add_parser("distill", help="teacher → labelled copies → student, in one resumable command", **fmt,
                       description="Fine-tune a teacher on DATA (one per item with --item-col; the [teacher] "
                       "extra), label perturbed copies of the training answers with it, train students, choose "
                       "λ on validation rows, save the student and print teacher / plain NN / student on the "
                       "test rows. Every stage is cached in --work: a rerun resumes.")
    x.add_argument("data", help="CSV of human-scored answers")
    _where(x)
    x.add_argument("--out", "-o", required=True, help="model file to write (.npz)")
    x.add_argument("--work", help="work folder of the cached stages (unset: <out>.work)")
    x.add_argument("--teacher-dir", help="a fine-tuned teacher folder (tinykd-teacher fit), or one per item")
    x.add_argument("--warm-start", metavar="MODEL",
                   help="a second round: the model a previous distill saved on these answers; its teacher "
                   "fine-tunes on (the previous one kept unless it improves), each answer keeps its role, and "
                   "an unchanged teacher's labels are reused (docs/review-loop.md)")
    x.add_argument("--base", "--teacher-base", dest="base", metavar="NAME|FOLDER",
                   help="the teacher's pre-trained base: minilm (all-MiniLM-L6-v2, 22.7M parameters), mpnet "
                   "(all-mpnet-base-v2, 109.5M; installed with 'tinykd-teacher base mpnet') or a local model "
                   "folder (unset: minilm)")
    x.add_argument("--unlabeled", help="CSV of unscored answers (same id/text/item columns): the teacher "
                   "labels them and their copies for the transfer set")
    x.add_argument("--other-items", action=argparse.BooleanOptionalAction, default=False,
                   help="with one --where COL=V, as many of the other values' training answers as the chosen "
                   "rows' join the transfer set (default: no; docs/decisions/transfer-data.md)")
    _columns(x, text="answer column", label="human score column", id="id column")
    x.add_argument("--context-col", help="context column placed before the answer (e.g. the question)")
    x.add_argument("--item-col", help="one teacher and one student per value of this column")
    x.add_argument("--rater2-col", help="a second human rater's column: the report's verdicts then judge the "
                   "degradation from human-human agreement (read for the report alone)")
    _label_names_arg(x)
    _split_args(x)
    x.add_argument("--val-split", default=None, help="split value of validation rows (unset: 'val', else 1/8)")
    x.add_argument("--test-split", default="test", help="split value(s) of the reported test rows")
    x.add_argument("--copies", type=int, default=None,
                   help="perturbed copies of each training answer (unset: 32, fewer above 1,500 answers)")
    x.add_argument("--lam", type=float, nargs="+", default=None,
                   help=f"λ value(s) of the KD student, the best on validation kept (unset: {lams})")
    x.add_argument("--soft-loss", choices=SOFT_LOSSES, default=d.soft_loss,
                   help="the soft term: mse (the teacher's logits, centred) or ce (Eq. 4's cross-entropy)")
    x.add_argument("--temperature", type=float, default=d.temperature,
                   help="distillation temperature T (with --soft-loss ce)")
    x.add_argument("--ordinal", type=float, help=f"μ of the KD students' expected-score term (unset: {d.ordinal:g})")
    x.add_argument("--preset", default="auto", help=f"auto (default: {' and '.join(AUTO_PRESETS)} both trained, the "
                   "better on validation kept) or a preset")
    x.add_argument("--epochs", type=int, default=d.epochs, help="most epochs of a student")
    x.add_argument("--patience", type=int, default=d.patience, help="a student's early-stopping patience")
    x.add_argument("--seed", type=int, default=d.seed, help="every random choice")
    _teacher_args(x)
    x.add_argument("--no-offsets", action="store_true",
                   help="no per-class decision offsets chosen on validation rows (tinykd.train.offsets)")
    x.add_argument("--choose-on", choices=CHOOSE_ON_VALUES, default=CHOOSE_ON,
                   help="what the KD students stop on and are chosen by: their agreement with the teacher on rows "
                   "none trains on (fidelity), or the validation rows' human scores: the lower log-loss (validation; "
                   "docs/decisions/student-choice.md) or the higher accuracy (accuracy, the rule before it)")
    x.add_argument("--stop-on", choices=STOP_ON_VALUES,
                   help="what the KD students stop on (unset: as --choose-on); fidelity with --choose-on validation: "
                   "they stop on their fidelity to the teacher and the one kept is chosen on the validation rows")
    x.add_argument("--student-seed", type=int, metavar="S",
                   help="the students' seed alone (unset: --seed), so that students of several seeds learn from one "
                   "teacher and one transfer set")
    x.add_argument("--teacher-threads", type=int, metavar="N",
                   help="torch CPU threads of each teacher process (unset: torch's default; with --dask / --jobs, "
                   "the worker's threads)")
    _dask_args(x, "run each item's teacher, copies, labels and students as one Dask task (with --item-col; "
               "--work on a filesystem every worker sees)")


def _teacher_args(x):
    """distill's --teacher-* flags: the teacher's fine-tuning options (unset: :data:`TEACHER_DEFAULTS`)."""
    for k, t in (("epochs", int), ("patience", int), ("lr", float), ("batch_size", int), ("max_length", _length)):
        x.add_argument(f"--teacher-{k.replace('_', '-')}", type=t, help=f"the teacher's fine-tuning: "
                       f"{k.replace('_', ' ')} (unset: {TEACHER_DEFAULTS[k]:g}{_HINTS.get(k, '')})")
    x.add_argument("--teacher-stop-on", choices=("accuracy", "loss"),
                   help="the teacher's early stopping keeps the epoch of best validation accuracy (ties: lower "
                        f"loss) or of lowest validation loss (unset: {TEACHER_DEFAULTS['stop_on']})")
    x.add_argument("--teacher-tolerance", type=float, metavar="ACC",
                   help="validation accuracies within ACC of the teacher's best count as tied, the tied epoch of "
                        f"lowest validation loss kept (unset: {TEACHER_DEFAULTS['tolerance']:g}; 0: the best)")
    x.add_argument("--teacher-truncate", choices=TRUNCATE_VALUES, help="over the max length, cut the longer of answer "
                   "and context first (longest, unset) or the context first (context): docs/teacher.md#the-commands")
    x.add_argument("--teacher-bf16", choices=BF16_VALUES,
                   help="the teacher's fine-tuning and labelling under bfloat16 autocast (weights stay float32): "
                   "on; auto (on where the CPU has AVX-512 BF16 or AMX, or the GPU bfloat16; else float32); "
                   f"off (unset: {TEACHER_DEFAULTS['bf16']}; docs/teacher.md#bfloat16)")
    x.add_argument("--teacher-vectors", action="store_true",
                   help="the KD students' word embeddings start from the teacher's word vectors (a stage of their "
                   "own; docs/decisions/student-teacher-vectors.md)")
    x.add_argument("--teacher-aliases", choices=("none", *ALIASES_MODES), default=ALIASES_DEFAULT,
                   help="a KD student reads a word outside its vocabulary (a word of the transfer set or of the "
                   "teacher's tokenizer) as the vocabulary word whose teacher word vector is nearest: after training, "
                   "the words it never read (unseen) or every word outside it (outside), from the start of training "
                   "(train), or never (none: no "
                   f"vectors stage); no parameter is added (default: {ALIASES_DEFAULT}; "
                   "docs/decisions/student-aliases.md)")
    x.add_argument("--teacher-members", type=int, metavar="N",
                   help="an ensemble of N teachers (seeds --seed … --seed + N − 1), each labelling the transfer "
                   "set, their log-probabilities averaged: N times the teacher's time "
                   f"(unset: {TEACHER_DEFAULTS['members']})")
    x.add_argument("--teacher-combine", choices=COMBINE_VALUES,
                   help="how --teacher-members become one teacher: mean (their log-probabilities averaged, each "
                   "labelling the transfer set) or pick (the one of highest validation QWK labels it alone; "
                   f"docs/decisions/teacher-pick.md) (unset: {TEACHER_DEFAULTS['combine']})")


def _label_names_arg(p):
    p.add_argument("--label-names", metavar="LABEL=NAME,…",
                   help='the scores\' names, stored in the model file and shown by info, score, report and the '
                   'exported page, e.g. "0=incorrect,1=partly correct,2=correct" (unset: each score as written)')


def _demo(sub, fmt):
    d = sub.add_parser("demo", help="teacher vs plain NN vs KD on bundled SciEntsBank data", **fmt,
                       description="Train a plain NN and a KD student on bundled SciEntsBank answers with bundled "
                       "teacher probabilities, compare them with the teacher, save the KD model and score examples.")
    d.add_argument("--out", "-o", help="where to save the KD model (unset: tinykd-demo/demo.npz, the folder made)")
    d.add_argument("--report", help="where to write its tinykd report page (unset: beside --out, <out>-report.html)")
    d.add_argument("--quick", action="store_true", help="a reduced run (small sample, 2 epochs) for CI")
    d.add_argument("--teacher-file", help=argparse.SUPPRESS)
    d.add_argument("--seed", type=int, default=0, help="seed of both students")

def _dask_args(p, what):
    g = p.add_mutually_exclusive_group()
    g.add_argument("--dask", metavar="ADDRESS", help=f"{what}, on the Dask scheduler at ADDRESS (tcp://host:8786, "
                   "or a scheduler file; the [dask] extra)")
    g.add_argument("--jobs", type=int, metavar="N", help=f"{what}, on N local worker processes (no cluster needed)")


def _model_columns(p):
    for name in ("text", "context", "item"):
        p.add_argument(f"--{name}-col", help=f"{name} column (unset: the one the model was trained with)")


def _columns(p, **helps):
    for name, help_ in helps.items():
        p.add_argument(f"--{name}-col", default=name, help=help_)


def _where(p):
    p.add_argument("--where", action="append", default=[], metavar="COL=VALUE",
                   help="keep only the rows with COL == VALUE (repeatable), e.g. --where item=1")


def _split_args(p):
    p.add_argument("--split-col", default=None,
                   help="split column (unset: 'split' when the file has one; '' to use every row for training)")
    p.add_argument("--train-split", default="train", help="split value of the training rows")
