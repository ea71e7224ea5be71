"""``tinykd demo``: teacher vs plain NN vs KD student on bundled SciEntsBank answers.

Bundled under ``tinykd/data/`` (package data, no downloads):

* ``scientsbank-demo.csv.gz`` — the SciEntsBank ``train`` and ``test_ua`` answers
  (SemEval-2013 Task 7; CC BY-SA 3.0, see ``SCIENTSBANK-README.txt`` and
  ``SCIENTSBANK-LICENSE.txt``): ``id, item, split, label, text, question,
  reference_answer`` with the official 3-way label (0 correct, 1 contradictory,
  2 incorrect).
* ``scientsbank-demo-teacher.csv.gz`` + ``.json`` — the class probabilities of the
  MiniLM teacher that ``tinykd distill`` fine-tuned on these answers
  (``benchmarks/distill_table.py``'s SciEntsBank row) for those ids;
* ``scientsbank-demo-transfer.csv.gz`` — that teacher's probabilities for its transfer
  set: the perturbed copies of the training answers, ids and numbers only (the demo
  makes the copies again from the bundled answers with the same seed:
  :func:`tinykd.distill.augment.augment_rows`);
* ``scientsbank-demo-aliases.csv.gz`` — ``word, reads_as``: each word of that teacher's word vectors that
  no training answer, reference answer or copy holds, and the word of the full run's KD student vocabulary
  whose teacher vector is nearest (distill's default "unseen" aliases, docs/decisions/student-aliases.md:
  the vectors need the teacher, so the pairs are bundled). All three written by
  ``python benchmarks/build_demo_data.py``.

The demo trains as ``tinykd distill`` does with its defaults (the ``7t`` preset only): the
plain NN (λ = 0) on the human scores, and the KD student (the teacher's logits matched by
MSE, λ = 4, the copies in the soft term, weight averaging, then the aliases of the words it never read),
with distill's split (the copies' answers train, the other training answers validate). It prints
accuracy, QWK, macro-F1, parameters, size and milliseconds per response for each on
``test_ua`` (unseen answers to the training questions) beside the teacher's; saves the KD
model and its report page into one folder (``tinykd-demo/`` unless ``--out`` /
``--report`` say otherwise) and scores a few example answers. ``--quick`` is a reduced
run (a sample, 2 epochs, a small network) for CI.
"""
from __future__ import annotations

import csv
import gzip
import json
import os
import sys
import tempfile
import time

from tinykd.distill.job import CHOOSE_ON, LAMS, STUDENT_OPTIONS

DATA_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data")
DATA_FILE = "scientsbank-demo.csv.gz"
TEACHER_FILE = "scientsbank-demo-teacher.csv.gz"
TEACHER_META = "scientsbank-demo-teacher.json"
TRANSFER_FILE = "scientsbank-demo-transfer.csv.gz"
ALIASES_FILE = "scientsbank-demo-aliases.csv.gz"
LABEL_NAMES = {0: "correct", 1: "contradictory", 2: "incorrect"}
COLUMNS = ["id", "item", "split", "label", "text", "question", "reference_answer"]
CONTEXT = "reference_answer"
TEST_SPLIT = "test_ua"

#: where the demo writes its files when ``--out`` is not given (the folder is made; .gitignore covers it)
DEFAULT_DIR = "tinykd-demo"
DEFAULT_OUT = os.path.join(DEFAULT_DIR, "demo.npz")

# full run: distill's students (tinykd.distill.job.STUDENT_OPTIONS), the 7t preset
FULL = STUDENT_OPTIONS.replace(preset="7t")
QUICK = STUDENT_OPTIONS.replace(preset="7t", config=dict(embed_dim=16, units=16, dense_units=16), epochs=2,
                                patience=2)


def _read_gz_csv(path):
    with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def load_data(data_dir=DATA_DIR):
    path = os.path.join(data_dir, DATA_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(2, "the bundled demo data is missing from this install", path)
    return _read_gz_csv(path)


def _teacher(rows, classes, teacher_file):
    """Teacher probabilities (n, K) for ``rows`` (dicts with an ``id``, or ids) from a soft-label CSV
    (plain or .gz), via :func:`tinykd.files.softlabels.read_soft_labels` (all checks apply)."""
    from tinykd.files.softlabels import read_soft_labels

    ids = [r["id"] if isinstance(r, dict) else r for r in rows]
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


def _out_path(out):
    """``out``, or :data:`DEFAULT_OUT` with its folder made; a given ``out`` needs an existing folder."""
    if out is None:
        os.makedirs(DEFAULT_DIR, exist_ok=True)
        return DEFAULT_OUT
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        raise FileNotFoundError(2, "the folder for --out does not exist", folder)
    return out


class _Data:
    """The demo's rows: training, validation and test answers (a sample with ``quick``), labels (n,) and
    classes. With the transfer file, the answers whose copies it holds train and the other training
    answers validate (distill's split); without it, every training answer trains (fit's holdout)."""

    def __init__(self, data_dir, quick, transfer_file=None):
        import numpy as np

        rows = load_data(data_dir)
        self.train = [r for r in rows if r["split"] == "train"]
        self.test = [r for r in rows if r["split"] == TEST_SPLIT]
        self.val, self.copies = [], None
        if transfer_file and os.path.exists(transfer_file):
            ids = [r["id"] for r in _read_gz_csv(transfer_file)]
            sources = {i.rsplit("~aug", 1)[0] for i in ids}
            self.copies = 1 + max(int(i.rsplit("~aug", 1)[1]) for i in ids)
            self.val = [r for r in self.train if r["id"] not in sources]
            self.train = [r for r in self.train if r["id"] in sources]
        self.all_train = self.train  # the copies' swaps read the words of every training answer
        if quick:
            self.train, self.val, self.test = _sample(self.train, 16), _sample(self.val, 16), _sample(self.test, 6)
        self.y_train = np.array([int(r["label"]) for r in self.train])
        self.y_test = np.array([int(r["label"]) for r in self.test])
        self.classes = sorted(set(self.y_train.tolist()))
        self.texts = [r["text"] for r in self.train]
        self.contexts = [r[CONTEXT] for r in self.train]
        self.t_texts, self.t_ctx = [r["text"] for r in self.test], [r[CONTEXT] for r in self.test]


def _teacher_meta(data_dir):
    path = os.path.join(data_dir, TEACHER_META)
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _intro(say, data, quick, has_teacher):
    say(f"tinykd demo: SciEntsBank (SemEval-2013 Task 7, CC BY-SA 3.0), 3-way scores "
        f"({', '.join(f'{k} {v}' for k, v in LABEL_NAMES.items())}); the reference answer as context")
    say(f"training on {len(data.train):,} answers to {len({r['item'] for r in data.train})} questions, "
        f"testing on {len(data.test):,} unseen answers ({TEST_SPLIT})" + ("  [--quick: a reduced run]" if quick else ""))
    if not has_teacher:
        say("note: the bundled teacher probabilities are not in this install, so only the plain NN is "
            "trained (no KD student, no teacher row)")


def _student_row(name, lam, model, data, options):
    from tinykd.quality.metrics import scoring_metrics

    return dict(name=name, what=f"{options.preset}, λ = {lam:g}", model=model,
                m=scoring_metrics(data.y_test, model.predict(data.t_texts, data.t_ctx), labels=data.classes),
                params=model.n_params, size=_size_of(model), ms=_ms_per_response(model, data.t_texts, data.t_ctx))


def _transfer(data, transfer_file, teacher_file, seed):
    """The KD student's transfer rows as distill makes them: the copies of the training answers made again
    (same seed and perturbations as distill) with the teacher's bundled probabilities; with distill's
    default of stopping on fidelity (:data:`~tinykd.distill.job.CHOOSE_ON`), the fidelity rows too
    (validation rows + held-out copies: :func:`fidelity_rows`). Returns ``{"transfer": …[, "fidelity": …]}``."""
    from tinykd.distill.augment import augment_rows
    from tinykd.distill.students import fidelity_rows

    made = augment_rows([r["text"] for r in data.all_train], [r["id"] for r in data.all_train],
                        [r["label"] for r in data.all_train], n=data.copies, seed=0)
    keep = {r["id"] for r in data.train}
    made = [m for m in made if data.all_train[m[0]]["id"] in keep]
    ids = [nid for _, nid, _ in made]
    p = _teacher(ids, data.classes, transfer_file)
    transfer = ([t for _, _, t in made], p, [data.all_train[j][CONTEXT] for j, _, _ in made])
    if CHOOSE_ON != "fidelity":
        return {"transfer": transfer}
    val = ([r["text"] for r in data.val], None, [r[CONTEXT] for r in data.val]) if data.val else None
    p_val = _teacher(data.val, data.classes, teacher_file) if data.val else None
    return dict(zip(("transfer", "fidelity"), fidelity_rows(transfer, ids, val, p_val, seed)))


def _train_all(data, options, teacher_file, data_dir, quiet, log):
    """The teacher's row (when its file is there), then the plain NN's and the KD student's; returns
    ``(results, the model saved)``."""
    import numpy as np

    from tinykd.quality.metrics import scoring_metrics
    from tinykd.train.fitting import fit

    has_teacher = os.path.exists(teacher_file)
    val = ([r["text"] for r in data.val], [int(r["label"]) for r in data.val], [r[CONTEXT] for r in data.val])
    common = dict(contexts=data.contexts, verbose=not quiet, stream=log, validation=val if data.val else None)
    results, kd = [], {}
    if has_teacher:
        p_train = _teacher(data.train, data.classes, teacher_file)
        p_test = _teacher(data.test, data.classes, teacher_file)
        meta = _teacher_meta(data_dir)
        m = scoring_metrics(data.y_test, np.asarray(data.classes)[p_test.argmax(1)], labels=data.classes)
        results.append(dict(name="teacher", what=meta.get("base_model_name") or "(soft-label file)", m=m,
                            params=meta.get("n_params"), size=meta.get("size_bytes"), ms=meta.get("ms_per_response")))
        transfer_file = os.path.join(os.path.dirname(teacher_file), TRANSFER_FILE)
        if data.copies:
            kd = _transfer(data, transfer_file, teacher_file, options.seed)
    print("\n[1/2] plain NN (λ = 0): human scores only" if has_teacher else "\n[1/1] plain NN (λ = 0)",
          file=log, flush=True)
    plain = options.replace(lam=0.0, soft_loss="ce", temperature=1.0)
    final = fit(data.texts, data.y_train, None, **common, options=plain)
    results.append(_student_row("plain NN", 0, final, data, plain))
    if has_teacher:
        lam = LAMS[0]
        print(f"\n[2/2] KD student (λ = {lam:g}): human scores + the teacher's probabilities"
              + (f" on {len(kd['transfer'][0]):,} copies of the answers" if kd else ""), file=log, flush=True)
        final = fit(data.texts, data.y_train, p_train, **common, **kd, options=options.replace(lam=lam))
        if kd:
            _alias_unseen(final, data, kd, os.path.join(os.path.dirname(teacher_file), ALIASES_FILE), log)
        results.append(_student_row("KD student", lam, final, data, options))
    for st in (r["model"] for r in results if "model" in r):
        st.meta["columns"] = {"text": "text", "label": "label", "id": "id", "context": CONTEXT, "item": None}
        st.meta["data_file"] = DATA_FILE
        st.label_names = LABEL_NAMES  # the rubric's words: scored files, the report and the page say them
    return results, final


def seen_words(data, kd):
    """The words the KD student read in training: its training answers', their reference answers' and the
    copies' (distill's "unseen" stage: :func:`tinykd.distill.students.alias_unseen`)."""
    from tinykd.distill.students import words_read

    return words_read(data.texts + list(kd["transfer"][0]), set(data.contexts))


def _alias_unseen(student, data, kd, aliases_file, log):
    """distill's "unseen" aliases on the trained KD ``student``: each bundled word it never read reads as the id of
    its bundled vocabulary word (nearest by the teacher's vectors, for the full run's vocabulary; with --quick
    the pairs whose word stays outside and whose vocabulary word is inside the sample's vocabulary)."""
    if not os.path.exists(aliases_file):
        print("note: the bundled aliases are not in this install; the KD student has none", file=log, flush=True)
        return
    seen, index = seen_words(data, kd), {t: i for i, t in enumerate(student.vocab.tokens)}
    student.vocab.aliases = {r["word"]: index[r["reads_as"]] for r in _read_gz_csv(aliases_file)
                             if r["word"] not in seen and r["word"] not in index and r["reads_as"] in index}
    n = len(student.vocab.aliases)
    student.meta["training"].update(aliases=n, aliases_after_training=True)
    print(f"the KD student reads {n:,} words it never read as the nearest of its vocabulary by the teacher's "
          "vectors", file=log, flush=True)


def _table(say, results, n_test, has_teacher):
    say()
    say(f"{TEST_SPLIT}: {n_test:,} answers   accuracy    QWK  macro-F1   parameters      size  ms/response")
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
        kd, t = results[-1], results[0]
        fewer = f", with {t['params'] / kd['params']:,.0f}× fewer parameters" if t.get("params") else ""
        say(f"KD student vs its teacher: accuracy {kd['m']['accuracy'] - t['m']['accuracy']:+.3f}, QWK "
            f"{kd['m']['qwk'] - t['m']['qwk']:+.3f}{fewer}")
        kd_m, nn_m = results[-1]["m"], results[-2]["m"]
        say(f"KD vs plain NN: accuracy {kd_m['accuracy'] - nn_m['accuracy']:+.3f}, QWK {kd_m['qwk'] - nn_m['qwk']:+.3f}"
            f" (one seed; see benchmarks/ for the multi-seed table)")


def _review(say, final, data):
    """What ``--review-below`` (tinykd score's default) would flag on the test answers."""
    import numpy as np

    from tinykd.scoring.scorer import REVIEW_BELOW

    proba = final.predict_proba(data.t_texts, data.t_ctx)
    right = np.asarray(final.classes)[proba.argmax(1)] == data.y_test
    flag = proba.max(1) < REVIEW_BELOW
    if flag.any() and (~flag).any():
        say(f"needs_review (confidence < {REVIEW_BELOW:g}): {flag.mean():.0%} of the answers; accuracy "
            f"{right[~flag].mean():.3f} on the rest, {right[flag].mean():.3f} on the flagged ones")


def _examples(say, saved, test_rows):
    """A few test answers of the question with the most labels (one per label, up to 3) and a blank one."""
    by_item = {}
    for r in test_rows:
        by_item.setdefault(r["item"], []).append(r)
    item = max(by_item, key=lambda k: (len({x["label"] for x in by_item[k]}), len(by_item[k]), k))
    chosen, seen = [], set()
    for r in sorted(by_item[item], key=lambda r: r["label"]):
        if r["label"] not in seen:
            chosen.append(r)
            seen.add(r["label"])
    chosen = chosen[:3]
    rows = chosen + [dict(chosen[0], text="", label="")]
    say(f"\nexamples: question {item}: {chosen[0]['question']}")
    say(f"  reference answer: {chosen[0][CONTEXT]}")
    proba = saved.predict_proba([r["text"] for r in rows], [r[CONTEXT] for r in rows])
    for r, p in zip(rows, proba):
        k = int(p.argmax())
        human = LABEL_NAMES.get(int(r["label"]), r["label"]) if r["label"] != "" else "—"
        text = r["text"] if r["text"] else "(blank answer)"
        say(f"  {text[:70] + ('…' if len(text) > 70 else ''):<72} human: {human:<13} model: "
            f"{LABEL_NAMES.get(saved.classes[k], saved.classes[k])} ({p[k]:.2f})")


def _verdict(say, saved, who, data, out, report):
    """May it score alone? ``tinykd report``'s verdict on the test answers; its page goes to ``report``."""
    from tinykd.files.atomic import atomic_write_bytes
    from tinykd.quality.evaluate import fitness_report, format_verdicts
    from tinykd.quality.report import render_html

    res = fitness_report(saved, data.t_texts, [r["label"] for r in data.test], contexts=data.t_ctx, name=who)
    page = render_html({"model": out, **res}, model=out, data=f"{DATA_FILE} ({TEST_SPLIT})", split=TEST_SPLIT)
    atomic_write_bytes(report, page.encode("utf-8"))
    say(f"\nmay the {who} score alone? (the criteria of Williamson et al. 2012 on {TEST_SPLIT}; the page: {report})")
    for line in format_verdicts(res):
        say("  " + line)


def run_demo(out=None, quick=False, teacher_file=None, seed=0, quiet=False, data_dir=DATA_DIR,
             stream=None, report=None):
    """Run the demo; returns 0. Progress goes to stderr, the comparison to stdout. The saved model
    goes to ``out`` (default :data:`DEFAULT_OUT`, its folder made), its ``tinykd report`` page on the
    test answers to ``report`` (default: beside ``out``, ``<out>-report.html``)."""
    from tinykd.scoring.student import load

    out_stream = sys.stdout if stream is None else stream
    log = sys.stderr if stream is None else stream

    def say(msg=""):
        print(msg, file=out_stream, flush=True)

    t_start = time.time()
    out = _out_path(out)
    options = (QUICK if quick else FULL).replace(seed=seed)
    teacher_file = teacher_file or os.path.join(data_dir, TEACHER_FILE)
    has_teacher = os.path.exists(teacher_file)
    data = _Data(data_dir, quick, os.path.join(os.path.dirname(teacher_file), TRANSFER_FILE) if has_teacher else None)
    _intro(say, data, quick, has_teacher)
    results, final = _train_all(data, options, teacher_file, data_dir, quiet, log)
    final.save(out)
    _table(say, results, len(data.test), has_teacher)
    _review(say, final, data)
    who = "KD student" if has_teacher else "plain NN"
    say(f"\nsaved the {who} to {out} ({_fmt_size(os.path.getsize(out))}); score a CSV with:")
    say(f"  tinykd score {out} answers.csv --out scored.csv      (columns: text, {CONTEXT})")
    saved = load(out)
    _examples(say, saved, data.test)
    report = report or os.path.splitext(out)[0] + "-report.html"
    _verdict(say, saved, who, data, out, report)
    say(f"\ndemo finished in {time.time() - t_start:.0f} s; its files: {out} (the model), {report} (its report page)")
    return 0


def main(argv=None):  # python -m tinykd.cli.demo
    return run_demo()


if __name__ == "__main__":
    sys.exit(main())
