"""Time per answer of the exported scorers beside tinykd's own: tinykd (Numba), ONNX Runtime (the
``tinykd export --onnx`` graph) and the browser (the ``tinykd export --web`` page in headless Chromium).

    python benchmarks/export_speed.py [--out benchmarks/results/export_speed.md]     # ~1 min

For each preset, one student (the vocabulary fitted on the bundled SciEntsBank answers, the weights
randomly initialised: the speed does not depend on their values) scores 1,000 real answers:

* **one answer at a time, text → probabilities** (what an app does when a student submits): tinykd
  ``Student.predict_proba([text])`` (tokenizing included; Numba started beforehand), ONNX Runtime
  (tokenizing with the exported vocabulary, then ``session.run`` on one row), and the page's
  ``tinykd.score(model, text)`` in Chromium (measured with ``performance.now()`` in the page, after one
  warm-up pass over the answers);
* **a batch of 1,000 encoded answers** (ids → probabilities): tinykd's Scorer and ONNX Runtime.

ONNX Runtime runs on one thread (faster than two for a model this small); tinykd as it ships. The median
of 5 repeats; ratios are to tinykd (> 1: slower than tinykd).
"""
from __future__ import annotations

import argparse
import gzip
import csv
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from tinykd.export.onnx_graph import export_onnx  # noqa: E402
from tinykd.export.page import export_web  # noqa: E402
from tinykd.nn.network import PRESETS, StudentNet, make_config  # noqa: E402
from tinykd.scoring.student import Student  # noqa: E402
from tinykd.scoring.text import Vocabulary  # noqa: E402

N = 1000
REPS = 5
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def answers():
    with gzip.open(os.path.join(ROOT, "tinykd", "data", "scientsbank-demo.csv.gz"), "rt", encoding="utf-8") as f:
        texts = [r["text"] for r in csv.DictReader(f)]
    rng = np.random.default_rng(0)
    return texts, [texts[i] for i in rng.choice(len(texts), N, replace=False)]


def student(preset, texts):
    cfg = make_config(preset)
    vocab = Vocabulary(cfg["max_vocab"], max_len=cfg["max_len"]).fit(texts)
    return Student(vocab, StudentNet(cfg, len(vocab), 3, seed=1), [0, 1, 2])


def median_time(fn, reps=REPS):
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts))


def machine():
    try:
        cpu = re.search(r"model name\s*:\s*(.*)", open("/proc/cpuinfo").read()).group(1)
    except (OSError, AttributeError):
        cpu = platform.processor() or platform.machine()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return cpu, os.cpu_count(), load


def browser_ms(folder, texts, chromium):
    script = """<script>(function () {
  var texts = %s, m = tinykd.load(TINYKD_MODEL)[0], reps = %d, times = [];
  texts.forEach(function (t) { tinykd.score(m, t); });  // warm-up: fills each token's projection
  for (var r = 0; r < reps; r++) {
    var t0 = performance.now();
    texts.forEach(function (t) { tinykd.score(m, t); });
    times.push((performance.now() - t0) / texts.length);
  }
  times.sort(function (a, b) { return a - b; });
  var pre = document.createElement("pre"); pre.id = "bench"; pre.textContent = JSON.stringify(times[times.length >> 1]);
  document.body.appendChild(pre);
})();</script>""" % (json.dumps(texts, ensure_ascii=True).replace("</", "<\\/"), REPS)
    page = open(os.path.join(folder, "index.html"), encoding="utf-8").read().replace("</body>", script + "</body>")
    path = os.path.join(folder, "bench.html")
    with open(path, "w", encoding="utf-8") as f:
        f.write(page)
    with tempfile.TemporaryDirectory() as profile:
        r = subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", "--dump-dom", "file://" + path],
                           capture_output=True, text=True, timeout=300)
    m = re.search(r'<pre id="bench">(.*?)</pre>', r.stdout)
    if not m:
        raise RuntimeError(f"the page wrote no timing: {r.stderr[-1000:]}")
    return float(m.group(1))


def measure(preset, all_texts, texts, tmp, chromium):
    """One preset's student: its time per answer in tinykd, ONNX Runtime and the browser, and its sizes."""
    import onnxruntime as ort

    st = student(preset, all_texts)
    ids, lengths = st.encode(texts)
    st.scorer.predict_proba(ids, lengths)  # starts Numba: every later call runs its kernels
    one_kd = median_time(lambda: [st.predict_proba([t]) for t in texts]) / N
    batch_kd = median_time(lambda: st.scorer.predict_proba(ids, lengths)) / N
    path = os.path.join(tmp, f"{preset}.onnx")
    export_onnx(st, path)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    vocab = Vocabulary.from_tokens(json.load(open(os.path.join(tmp, f"{preset}.json")))["tokens"],
                                   {"max_len": st.vocab.max_len})

    def ort_one(t):
        i, n = vocab.encode([t])
        return sess.run(["proba"], {"ids": i.astype(np.int64), "lengths": n})[0]

    def ort_batch():
        return sess.run(["proba"], {"ids": ids.astype(np.int64), "lengths": lengths})[0]

    ort_batch()
    one_ort = median_time(lambda: [ort_one(t) for t in texts]) / N
    batch_ort = median_time(ort_batch) / N
    folder = os.path.join(tmp, f"{preset}-web")
    paths = export_web(st, folder)
    size = sum(os.path.getsize(p) for p in paths)
    one_web = browser_ms(folder, texts, chromium) / 1000 if chromium else float("nan")
    print(f"{preset}: tinykd {1e3 * one_kd:.3f} ms, ONNX Runtime {1e3 * one_ort:.3f} ms, "
          f"browser {1e3 * one_web:.3f} ms per answer", flush=True)
    return dict(preset=preset, params=st.n_params, onnx_kb=os.path.getsize(path) / 1024,
                web_kb=size / 1024, one_kd=one_kd, one_ort=one_ort, one_web=one_web,
                batch_kd=batch_kd, batch_ort=batch_ort)


def write_report(rows, chromium, out):
    import onnxruntime as ort

    cpu, cores, load = machine()
    chrome = subprocess.run([chromium, "--version"], capture_output=True, text=True).stdout.strip() if chromium else "—"
    ms = lambda s: f"{1e3 * s:.3f}"  # noqa: E731
    lines = [
        "# Export speed: tinykd vs ONNX Runtime vs the browser",
        "",
        f"Written by `python benchmarks/export_speed.py`. Machine: {cpu}, {cores} cores (load average "
        f"{load:.1f} when it ran: other jobs shared the cores, so the times are noisy), Python "
        f"{platform.python_version()}, NumPy {np.__version__}, ONNX Runtime {ort.__version__} (1 thread), {chrome} "
        f"(headless). {N:,} SciEntsBank answers; the median of {REPS} repeats; ratio = time / tinykd's.",
        "",
        "One answer at a time, text → probabilities (ms per answer):",
        "",
        "| preset | parameters | tinykd (Numba) | ONNX Runtime | ratio | browser (JS) | ratio | .onnx KB | page + scorer + weights KB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['preset']} | {r['params']:,} | {ms(r['one_kd'])} | {ms(r['one_ort'])} | "
                     f"{r['one_ort'] / r['one_kd']:.2f} | {ms(r['one_web'])} | {r['one_web'] / r['one_kd']:.2f} | "
                     f"{r['onnx_kb']:.0f} | {r['web_kb']:.0f} |")
    lines += ["", f"A batch of {N:,} encoded answers, ids → probabilities (ms per answer):", "",
              "| preset | tinykd (Numba) | ONNX Runtime | ratio |", "|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['preset']} | {ms(r['batch_kd'])} | {ms(r['batch_ort'])} | {r['batch_ort'] / r['batch_kd']:.2f} |")
    lines += ["", "The browser scores one answer per call (no batch path): its per-answer time is the one above.", ""]
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    print(f"wrote {out}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=os.path.join(HERE, "results", "export_speed.md"), help="the table written")
    args = ap.parse_args(argv)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    all_texts, texts = answers()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(preset, all_texts, texts, tmp, chromium) for preset in PRESETS]
    write_report(rows, chromium, args.out)


if __name__ == "__main__":
    main()
