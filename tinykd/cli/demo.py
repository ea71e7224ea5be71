"""``tinykd demo``: teacher vs plain NN vs KD student on bundled SciEntsBank answers.

Bundled under ``tinykd/data/`` (package data, no downloads):

* ``scientsbank-demo.csv.gz`` — the SciEntsBank ``train`` and ``test_ua`` answers
  (SemEval-2013 Task 7; CC BY-SA 3.0, see ``SCIENTSBANK-README.txt`` and
  ``SCIENTSBANK-LICENSE.txt``): ``id, item, split, label, text, question,
  reference_answer`` with the official 3-way label (0 correct, 1 contradictory,
  2 incorrect).
* ``scientsbank-demo-teacher.csv.gz`` + ``.json`` — the class probabilities of the
  project's fine-tuned MiniLM teacher for those ids (cross-fitted for the training
  rows when the teacher run provides them), copied from
  ``benchmarks/teacher/scientsbank*.csv`` by ``python benchmarks/build_demo_data.py``.

The demo trains the plain NN (λ = 0) and the KD student (λ = 1) with the same
seed, split and settings, on the answer with the reference answer as context;
prints accuracy, QWK, macro-F1, parameters, size and milliseconds per response
for each on ``test_ua`` (unseen answers to the training questions) beside the
teacher's; saves the KD model and scores a few example answers. ``--quick`` is
a reduced run (a sample, 2 epochs, a small network) for CI.
"""
from __future__ import annotations

import csv
import gzip
import json
import os
import sys
import tempfile
import time

DATA_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")
DATA_FILE = "scientsbank-demo.csv.gz"
TEACHER_FILE = "scientsbank-demo-teacher.csv.gz"
TEACHER_META = "scientsbank-demo-teacher.json"
LABEL_NAMES = {0: "correct", 1: "contradictory", 2: "incorrect"}
COLUMNS = ["id", "item", "split", "label", "text", "question", "reference_answer"]
CONTEXT = "reference_answer"
TEST_SPLIT = "test_ua"

# full run: the paper's 7t student; early stopping with a short patience keeps it well under 2 minutes
FULL = dict(preset="7t", config=dict(max_len=64), epochs=10, patience=2)
QUICK = dict(preset="7t", config=dict(embed_dim=16, units=16, dense_units=16), epochs=2, patience=2)


def _read_gz_csv(path):
    with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def load_data(data_dir=DATA_DIR):
    path = os.path.join(data_dir, DATA_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(2, "the bundled demo data is missing from this install", path)
    return _read_gz_csv(path)


def _teacher(rows, classes, teacher_file):
    """Teacher probabilities (n, K) for ``rows`` from a soft-label CSV (plain or .gz), via
    :func:`tinykd.files.softlabels.read_soft_labels` (all checks apply)."""
    from tinykd.files.softlabels import read_soft_labels

    ids = [r["id"] for r in rows]
    if teacher_file.endswith(".gz"):
        with tempfile.TemporaryDirectory() as tmp:
            plain = os.path.join(tmp, "teacher.csv")
            with gzip.open(teacher_file, "rb") as src, open(plain, "wb") as dst:
                dst.write(src.read())
            return read_soft_labels(plain, ids, classes)
    return read_soft_labels(teacher_file, ids, classes)


def _sample(rows, every):
    return [r for k, r in enumerate(rows) if k % every == 0]


def _ms_per_response(model, texts, ctx, repeats=5):
    model.predict_proba(texts[:8], ctx[:8])  # warm-up (compiled kernels)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        model.predict_proba(texts, ctx)
        best = min(best, time.perf_counter() - t)
    return 1000.0 * best / max(len(texts), 1)


def _size_of(model):
    with tempfile.TemporaryDirectory() as tmp:
        p = os.path.join(tmp, "m.npz")
        model.save(p)
        return os.path.getsize(p)


def _fmt_size(n):
    return f"{n / 1024:.0f} KB" if n < 1024 ** 2 else f"{n / 1024 ** 2:.1f} MB"


def run_demo(out="tinykd-demo.npz", quick=False, teacher_file=None, seed=0, quiet=False, data_dir=DATA_DIR,
             stream=None, report=None):
    """Run the demo; returns 0. Progress goes to stderr, the comparison to stdout. The saved
    model's ``tinykd report`` page on the test answers goes to ``report`` (default: beside
    ``out``, ``<out>-report.html``)."""
    import numpy as np

    from tinykd.files.atomic import atomic_write_bytes
    from tinykd.quality.evaluate import fitness_report, format_verdicts
    from tinykd.train.fitting import fit
    from tinykd.quality.report import render_html
    from tinykd.quality.metrics import scoring_metrics
    from tinykd.scoring.scorer import REVIEW_BELOW
    from tinykd.scoring.student import load

    out_stream = sys.stdout if stream is None else stream
    log = sys.stderr if stream is None else stream

    def say(msg=""):
        print(msg, file=out_stream, flush=True)

    t_start = time.time()
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise FileNotFoundError(2, "the folder for --out does not exist", folder)
    rows = load_data(data_dir)
    train_rows = [r for r in rows if r["split"] == "train"]
    test_rows = [r for r in rows if r["split"] == TEST_SPLIT]
    settings = QUICK if quick else FULL
    if quick:
        train_rows, test_rows = _sample(train_rows, 16), _sample(test_rows, 6)
    y_train = np.array([int(r["label"]) for r in train_rows])
    y_test = np.array([int(r["label"]) for r in test_rows])
    classes = sorted(set(y_train.tolist()))

    teacher_file = teacher_file or os.path.join(data_dir, TEACHER_FILE)
    teacher_meta = {}
    meta_path = os.path.join(data_dir, TEACHER_META)
    if os.path.exists(meta_path):
        with open(meta_path, encoding="utf-8") as f:
            teacher_meta = json.load(f)
    has_teacher = os.path.exists(teacher_file)

    say(f"tinykd demo: SciEntsBank (SemEval-2013 Task 7, CC BY-SA 3.0), 3-way scores "
        f"({', '.join(f'{k} {v}' for k, v in LABEL_NAMES.items())}); the reference answer as context")
    say(f"training on {len(train_rows):,} answers to {len({r['item'] for r in train_rows})} questions, "
        f"testing on {len(test_rows):,} unseen answers ({TEST_SPLIT})" + ("  [--quick: a reduced run]" if quick else ""))
    if not has_teacher:
        say("note: the bundled teacher probabilities are not in this install, so only the plain NN is "
            "trained (no KD student, no teacher row)")

    texts = [r["text"] for r in train_rows]
    t_texts, t_ctx = [r["text"] for r in test_rows], [r[CONTEXT] for r in test_rows]
    # validation: tinykd.fit's rule (a seeded stratified 1/8 of the training answers)
    common = dict(contexts=[r[CONTEXT] for r in train_rows], preset=settings["preset"], config=settings["config"],
                  epochs=settings["epochs"], patience=settings["patience"], seed=seed, verbose=not quiet, stream=log)

    results = []
    if has_teacher:
        p_train = _teacher(train_rows, classes, teacher_file)
        p_test = _teacher(test_rows, classes, teacher_file)
        m = scoring_metrics(y_test, np.asarray(classes)[p_test.argmax(1)], labels=classes)
        base = teacher_meta.get("base_model_name") or "(soft-label file)"
        results.append(dict(name="teacher", what=base, m=m, params=teacher_meta.get("n_params"),
                            size=teacher_meta.get("size_bytes"), ms=teacher_meta.get("ms_per_response")))

    print("\n[1/2] plain NN (λ = 0): human scores only" if has_teacher else "\n[1/1] plain NN (λ = 0)",
          file=log, flush=True)
    nn = fit(texts, y_train, None, lam=0.0, **common)
    nn_pred = nn.predict(t_texts, t_ctx)
    results.append(dict(name="plain NN", what=f"{settings['preset']}, λ = 0", model=nn,
                        m=scoring_metrics(y_test, nn_pred, labels=classes), params=nn.n_params,
                        size=_size_of(nn), ms=_ms_per_response(nn, t_texts, t_ctx)))
    final = nn
    if has_teacher:
        print("\n[2/2] KD student (λ = 1): human scores + the teacher's probabilities", file=log, flush=True)
        kd = fit(texts, y_train, p_train, lam=1.0, **common)
        kd_pred = kd.predict(t_texts, t_ctx)
        results.append(dict(name="KD student", what=f"{settings['preset']}, λ = 1", model=kd,
                            m=scoring_metrics(y_test, kd_pred, labels=classes), params=kd.n_params,
                            size=_size_of(kd), ms=_ms_per_response(kd, t_texts, t_ctx)))
        final = kd
    for st in (r["model"] for r in results if "model" in r):
        st.meta["columns"] = {"text": "text", "label": "label", "id": "id", "context": CONTEXT, "item": None}
        st.meta["data_file"] = DATA_FILE
    final.save(out)

    say()
    say(f"{TEST_SPLIT}: {len(test_rows):,} answers   accuracy    QWK  macro-F1   parameters      size  ms/response")
    for r in results:
        m = r["m"]
        params = f"{r['params']:,}" if r.get("params") else "—"
        size = _fmt_size(r["size"]) if r.get("size") else "—"
        ms = f"{r['ms']:.3f}" if r.get("ms") is not None else "—"
        say(f"{r['name']:<14}{r['what'][:22]:<23}{m['accuracy']:>6.3f} {m['qwk']:>6.3f} {m['macro_f1']:>9.3f}"
            f" {params:>12} {size:>9} {ms:>12}")
    if has_teacher and not all(results[0].get(k) for k in ("params", "size", "ms")):
        say("(— : not recorded in the bundled teacher metadata)")
    if has_teacher:
        kd_m, nn_m = results[-1]["m"], results[-2]["m"]
        say(f"KD vs plain NN: accuracy {kd_m['accuracy'] - nn_m['accuracy']:+.3f}, QWK {kd_m['qwk'] - nn_m['qwk']:+.3f}"
            f" (one seed; see benchmarks/ for the multi-seed table)")
    # what --review-below 0.6 (tinykd score's default) would flag on these answers
    proba_t = final.predict_proba(t_texts, t_ctx)
    right = np.asarray(final.classes)[proba_t.argmax(1)] == y_test
    flag = proba_t.max(1) < REVIEW_BELOW
    if flag.any() and (~flag).any():
        say(f"needs_review (confidence < {REVIEW_BELOW:g}): {flag.mean():.0%} of the answers; accuracy "
            f"{right[~flag].mean():.3f} on the rest, {right[flag].mean():.3f} on the flagged ones")
    say(f"\nsaved the {'KD student' if final is not nn else 'plain NN'} to {out} "
        f"({_fmt_size(os.path.getsize(out))}); score a CSV with:")
    say(f"  tinykd score {out} answers.csv --out scored.csv      (columns: text, {CONTEXT})")

    # a few example answers, scored by the saved model
    saved = load(out)
    by_item = {}
    for r in test_rows:
        by_item.setdefault(r["item"], []).append(r)
    item = max(by_item, key=lambda k: (len({x["label"] for x in by_item[k]}), len(by_item[k]), k))
    ex = sorted(by_item[item], key=lambda r: r["label"])
    chosen, seen = [], set()
    for r in ex:
        if r["label"] not in seen:
            chosen.append(r)
            seen.add(r["label"])
    chosen = chosen[:3]
    ref = chosen[0][CONTEXT]
    blank = dict(chosen[0], text="", label="")
    say(f"\nexamples: question {item}: {chosen[0]['question']}")
    say(f"  reference answer: {ref}")
    proba = saved.predict_proba([r["text"] for r in chosen + [blank]], [r[CONTEXT] for r in chosen + [blank]])
    for r, p in zip(chosen + [blank], proba):
        k = int(p.argmax())
        human = LABEL_NAMES.get(int(r["label"]), r["label"]) if r["label"] != "" else "—"
        text = r["text"] if r["text"] else "(blank answer)"
        say(f"  {text[:70] + ('…' if len(text) > 70 else ''):<72} human: {human:<13} model: "
            f"{LABEL_NAMES.get(saved.classes[k], saved.classes[k])} ({p[k]:.2f})")

    # may it be used? the verdict of `tinykd report` on the test answers, and the calibration it reached
    who = "KD student" if final is not nn else "plain NN"
    res = fitness_report(saved, t_texts, [r["label"] for r in test_rows], contexts=t_ctx, name=who)
    report = report or os.path.splitext(out)[0] + "-report.html"
    atomic_write_bytes(report, render_html({"model": out, **res}, model=out, data=f"{DATA_FILE} ({TEST_SPLIT})",
                                           split=TEST_SPLIT).encode("utf-8"))
    say(f"\nmay the {who} score alone? (the criteria of Williamson et al. 2012 on {TEST_SPLIT}; the page: {report})")
    for line in format_verdicts(res):
        say("  " + line)
    say(f"\ndemo finished in {time.time() - t_start:.0f} s")
    return 0


def main(argv=None):  # python -m tinykd.cli.demo
    return run_demo()


if __name__ == "__main__":
    sys.exit(main())
