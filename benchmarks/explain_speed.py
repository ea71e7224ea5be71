"""What an explanation costs next to a score, and how gradient × input agrees with occlusion (issue 33).

    python benchmarks/explain_speed.py [--out benchmarks/results/explain_speed.md] [--epochs 8]   # ~2 min

Students: for the presets 7t (LSTM, last state) and bathtub (BiLSTM, max pooling), a plain NN (λ = 0; seed 0)
trained on the bundled SciEntsBank training answers with the reference answer as context, as the demo trains
(its first 4,469 rows; the next 500 for early stopping), then run on the 540 test_ua answers; and the same
presets on a synthetic data set whose label is decided by one key word (tests/test_explain.py's).

Per answer, the best of 5 repeats (the least disturbed by other jobs) over the whole set in one call, NumPy's
BLAS on one thread for every method (as ``explain`` runs a batch):

* **score**: ``Student.predict_proba`` (Numba, started and warm) — what ``tinykd score`` computes;
* **occlusion**: :func:`tinykd.scoring.explain.explain` (float64 NumPy, every answer word left out in turn);
* **gradient × input**: :func:`tinykd.scoring.explain.gradient_times_input` (one forward and one backward
  pass through the network's hand-written layers, the float32 Numba LSTM kernels);
* **one answer**: ``Student.explain([text])`` one answer at a time (what a report asks for; the mean over 100
  answers of each one's best of 5);
* **page**: the page's JavaScript ``tinykd.explain`` in headless Chromium (when installed).

Agreement: the share of answers (of 2+ words) whose word of largest |weight| is the same by both methods;
on the key-word set also the share of answers holding the key word whose top word it is.
"""
from __future__ import annotations

import argparse
import gzip
import csv
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))

import tinykd  # noqa: E402
from tinykd.scoring.explain import explain, gradient_times_input  # noqa: E402
from tinykd.settings import blas_threads  # noqa: E402

KEY = "photosynthesis"


def rows():
    path = os.path.join(ROOT, "tinykd", "data", "scientsbank-demo.csv.gz")
    with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def key_word_data(n, seed):
    from test_explain import key_word_data as make

    return make(n, seed)


def best_us(fn, n, reps=5):
    """µs per answer of ``fn`` over n answers: the best of ``reps`` (the least disturbed by other jobs)."""
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1e6 * min(times) / n


def top_index(weights):
    return int(np.argmax(np.abs(weights))) if len(weights) else -1


def measure(st, texts, contexts, key=None):
    st.predict_proba(texts[:50], contexts and contexts[:50])  # Numba started, kernels compiled or read
    gradient_times_input(st, texts[:5], contexts and contexts[:5])
    occ = explain(st, texts, contexts)
    gxi = gradient_times_input(st, texts, contexts)
    many = [k for k, e in enumerate(occ) if len(e) >= 2]
    agree = np.mean([top_index([w for _, w in occ[k]]) == top_index(gxi[k]) for k in many])
    res = {"n": len(texts), "words": float(np.mean([len(e) for e in occ])), "agree": float(agree),
           "score_us": best_us(lambda: st.predict_proba(texts, contexts), len(texts)),
           "occlusion_us": best_us(lambda: explain(st, texts, contexts), len(texts)),
           "gxi_us": best_us(lambda: gradient_times_input(st, texts, contexts), len(texts))}
    res["one_us"] = float(np.mean([best_us(lambda: st.explain([t], contexts and [contexts[k]]), 1)
                                   for k, t in enumerate(texts[:100])]))
    if key is not None:
        holding = [k for k, t in enumerate(texts) if key in t.split()]
        res["key_occlusion"] = float(np.mean([occ[k][top_index([w for _, w in occ[k]])][0] == key for k in holding]))
        res["key_gxi"] = float(np.mean([occ[k][top_index(gxi[k])][0] == key for k in holding]))
    return res


def page_ms(models, data):
    """ms per answer of the page's ``tinykd.explain`` (after one warm-up pass), or None without Chromium."""
    chrome = shutil.which("chromium") or shutil.which("chromium-browser")
    if chrome is None:
        return None
    from browser import FLAGS, dom_json, script_json
    from tinykd.export.page import export_web

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (st, texts, contexts) in models.items():
            folder = os.path.join(tmp, name)
            export_web(st, folder)
            script = """<script>(function () {
  var d = %s, m = tinykd.load(TINYKD_MODEL)[0], run = function () {
    d.texts.forEach(function (t, k) { tinykd.explain(m, t, d.contexts[k]); }); };
  run(); var t0 = performance.now(); run(); run(); run();
  var pre = document.createElement("pre"); pre.id = "ms";
  pre.textContent = JSON.stringify((performance.now() - t0) / (3 * d.texts.length));
  document.body.appendChild(pre);
})();</script>""" % script_json({"texts": texts[:100], "contexts": (contexts or [""] * 100)[:100]})
            page = open(os.path.join(folder, "index.html"), encoding="utf-8").read()
            path = os.path.join(folder, "bench.html")
            with open(path, "w", encoding="utf-8") as f:
                f.write(page.replace("</body>", script + "</body>", 1))
            r = subprocess.run([chrome, *FLAGS, f"--user-data-dir={tmp}/profile-{name}", "--dump-dom",
                                "file://" + path], capture_output=True, text=True, timeout=600)
            out[name] = dom_json(r.stdout, "ms")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(HERE, "results", "explain_speed.md"))
    ap.add_argument("--epochs", type=int, default=8)
    args = ap.parse_args(argv)
    data = rows()
    train = [r for r in data if r["split"] == "train"]
    test = [r for r in data if r["split"] == "test_ua"]
    fit_rows, val_rows = train[:4469], train[4469:]
    load0 = os.getloadavg()
    results, models = [], {}
    kw_train, kw_test = key_word_data(600, 0), key_word_data(500, 1)
    for preset in ("7t", "bathtub"):
        t = time.time()
        st = tinykd.fit([r["text"] for r in fit_rows], [r["label"] for r in fit_rows], preset=preset, lam=0,
                        epochs=args.epochs, seed=0, verbose=False, contexts=[r["reference_answer"] for r in fit_rows],
                        validation=([r["text"] for r in val_rows], [r["label"] for r in val_rows],
                                    [r["reference_answer"] for r in val_rows]))
        texts, ctx = [r["text"] for r in test], [r["reference_answer"] for r in test]
        with blas_threads(1):  # as explain runs a batch: one BLAS thread for every method
            res = measure(st, texts, ctx)
        results.append((f"SciEntsBank test_ua, {preset}, reference answer as context", res))
        models[f"scientsbank-{preset}"] = (st, texts, ctx)
        print(preset, f"trained in {time.time() - t:.0f} s:", res, flush=True)
        kst = tinykd.fit(*kw_train, preset=preset, epochs=6, seed=0, verbose=False)
        with blas_threads(1):
            res = measure(kst, kw_test[0], None, key=KEY)
        results.append((f"key word (synthetic), {preset}", res))
        print(preset, "key word:", res, flush=True)
    page = page_ms(models, data)
    load1 = os.getloadavg()
    write(args.out, results, page, load0, load1, args)


def write(path, results, page, load0, load1, args):
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor())
    lines = ["# Explanations: cost per answer next to the score, and gradient × input against occlusion", "",
             f"Written by `python benchmarks/explain_speed.py --epochs {args.epochs}` on {cpu}, "
             f"{os.cpu_count()} cores, no GPU; Python {platform.python_version()}, NumPy {np.__version__}. "
             f"**The machine was shared with a background job** (a distillation run and its teacher processes; load "
             f"average {load0[0]:.1f} at the start, {load1[0]:.1f} at the end): read the times as upper bounds, "
             "their ratios as indicative.", "",
             "µs per answer, each set scored / explained in one call (best of 5); *one answer*: "
             "`Student.explain([text])` per answer (mean of each one's best of 5); agreement: answers (2+ words) "
             "whose top word (largest |weight|) is the same by gradient × input as by occlusion.", "",
             "| data set, student | answers | words per answer | score µs | occlusion µs | gradient × input µs | "
             "occlusion, one answer µs | top word agrees | key word on top: occlusion / gradient × input |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for name, r in results:
        key = f"{r['key_occlusion']:.1%} / {r['key_gxi']:.1%}" if "key_occlusion" in r else "—"
        lines.append(f"| {name} | {r['n']:,} | {r['words']:.1f} | {r['score_us']:.1f} | {r['occlusion_us']:.0f} | "
                     f"{r['gxi_us']:.0f} | {r['one_us']:.0f} | {r['agree']:.1%} | {key} |")
    if page:
        lines += ["", "The page's JavaScript `tinykd.explain` in headless Chromium (100 answers, after a warm-up "
                  "pass): " + "; ".join(f"{k}: {v:.2f} ms per answer" for k, v in page.items()) + "."]
    lines += ["", "The choice (docs/decisions/explanations.md): occlusion unless gradient × input agrees on the top "
              "word for ≥ 90 % of the answers and costs less.", ""]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    with open(os.path.splitext(path)[0] + ".json", "w", encoding="utf-8") as f:
        json.dump({"results": results, "page_ms": page, "load": [load0, load1]}, f, indent=1)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
