"""tinykd.cluster.tasks against one process (issue 18): rows per second scoring N answers, and items per minute
training one student per item, with 1 and 2 Dask workers (a LocalCluster of worker processes, one
thread each) against tinykd's own single-process scorer and ``fit_items``, measured in the same run.

    python benchmarks/dask_speed.py [--rows 1000000] [--items 8] [--epochs 3] [--note "..."]

Data: the bundled SciEntsBank demo answers (CC BY-SA), repeated to --rows. Prints a table and writes
benchmarks/results/dask_speed.md. Every output is checked against the single-process one.
"""
from __future__ import annotations

import argparse
import gzip
import csv
import os
import platform
import shutil
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def demo_rows():
    import tinykd

    path = os.path.join(os.path.dirname(tinykd.__file__), "data", "scientsbank-demo.csv.gz")
    with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--partitions", type=int, default=20)
    ap.add_argument("--items", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--preset", default="7t")
    ap.add_argument("--note", default="")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "dask_speed.md"))
    a = ap.parse_args()

    import tinykd
    import tinykd.cluster.tasks as tkd
    from tinykd.cluster.frames import plan_score, score_files
    from tinykd.scoring.scorefile import score_csv

    rows = demo_rows()
    train = [r for r in rows if r["split"] == "train"]
    st = tinykd.fit([r["text"] for r in train], [int(r["label"]) for r in train], preset=a.preset, epochs=2,
                    verbose=False)
    model_bytes = st.to_bytes()
    tmp = tempfile.mkdtemp(prefix="tinykd-dask-speed-")
    per = -(-a.rows // a.partitions)
    files = []
    with open(os.path.join(tmp, "all.csv"), "w", newline="", encoding="utf-8") as whole:
        wall = csv.writer(whole, lineterminator="\n")
        wall.writerow(["id", "text"])
        for k in range(a.partitions):
            files.append(os.path.join(tmp, "in", f"f{k:03d}.csv"))
            os.makedirs(os.path.dirname(files[-1]), exist_ok=True)
            with open(files[-1], "w", newline="", encoding="utf-8") as f:
                w = csv.writer(f, lineterminator="\n")
                w.writerow(["id", "text"])
                for i in range(k * per, min(a.rows, (k + 1) * per)):
                    row = [str(i), rows[i % len(rows)]["text"]]
                    w.writerow(row)
                    wall.writerow(row)

    # one process: tinykd's own scorer, `tinykd score` (score_csv) on one CSV of every row
    import tinykd.scoring._kernels  # noqa: F401  (Numba started, as on the workers)
    score_csv(st, files[0], os.path.join(tmp, "warm.csv"))
    t0 = time.perf_counter()
    score_csv(st, os.path.join(tmp, "all.csv"), os.path.join(tmp, "one.csv"))
    one = time.perf_counter() - t0
    score = [("one process (`tinykd score`, tinykd.scoring.scorefile.score_csv)", a.rows / one, 1.0, None)]
    with open(os.path.join(tmp, "one.csv"), "rb") as f:
        ref = f.read()

    items = sorted({r["item"] for r in train})[:a.items]
    irows = [r for r in train if r["item"] in items]
    fit_args = ([r["text"] for r in irows], [r["label"] for r in irows])
    fit_kw = dict(items=[r["item"] for r in irows], preset="bathtub", epochs=a.epochs, seed=0, verbose=False)
    tinykd.fit_items(*fit_args, **{**fit_kw, "epochs": 1})  # compile / warm
    t0 = time.perf_counter()
    ref_model = tinykd.fit_items(*fit_args, **fit_kw)
    one_fit = time.perf_counter() - t0
    fit = [("one process (tinykd.fit_items)", len(items) / one_fit * 60, 1.0, None)]

    starts = []
    for workers in (1, 2):
        t0 = time.perf_counter()
        with tkd.connect(jobs=workers) as client:
            starts.append(time.perf_counter() - t0)
            outs = [os.path.join(tmp, f"warm{workers}.csv"), os.path.join(tmp, f"out{workers}.csv")]
            for fs, out in ((files[:workers], outs[0]), (files, outs[1])):  # warm-up, then the run
                t0 = time.perf_counter()
                score_files(client, plan_score(fs, "csv", model_bytes, out, text_col="text"))
                sec = time.perf_counter() - t0
            with open(outs[1], "rb") as f:
                same = f.read() == ref
            score.append((f"`tinykd score --jobs {workers}` (tinykd.cluster.tasks.score, {a.partitions} CSV files)",
                          a.rows / sec, one / sec, same))
            tkd.fit_items(*fit_args, **{**fit_kw, "epochs": 1}, client=client)  # warm the workers
            t0 = time.perf_counter()
            got = tkd.fit_items(*fit_args, **fit_kw, client=client)
            sec = time.perf_counter() - t0
            same = all(np.array_equal(got.students[k].net.params, ref_model.students[k].net.params) for k in items)
            fit.append((f"tinykd.cluster.tasks.fit_items, {workers} worker{'s' if workers > 1 else ''}", len(items) / sec * 60,
                        one_fit / sec, same))

    load = os.getloadavg()
    lines = [
        "# tinykd.cluster.tasks against one process",
        "",
        f"Machine: {os.cpu_count()} cores ({cpu_name()}), no GPU; Python {platform.python_version()}; "
        f"load average at the end {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}." + (f" {a.note}" if a.note else ""),
        f"Command: `python benchmarks/dask_speed.py --rows {a.rows} --items {a.items} --epochs {a.epochs}`. Workers: a "
        "`LocalCluster` of worker processes, one thread each; times after one warm-up call (Numba compiled, workers "
        f"started); starting a LocalCluster took {starts[0]:.1f} s (1 worker) and {starts[1]:.1f} s (2 workers), not "
        "counted.",
        "",
        f"## Scoring {a.rows:,} answers ({a.preset} student; CSV in, CSV out)",
        "",
        f"One process reads one CSV of all rows; the Dask runs read the same rows as {a.partitions} CSV files (one "
        "partition each) and write a folder of parts, joined into one CSV.",
        "",
        "| run | rows / s | × one process | output equal to one process |",
        "|---|---:|---:|---|",
    ]
    lines += [f"| {n} | {r:,.0f} | {x:.2f} | {'—' if s is None else ('yes, byte for byte' if s else 'NO')} |"
              for n, r, x, s in score]
    lines += ["", f"## Per-item training ({len(items)} SciEntsBank items, {len(irows)} rows, bathtub, "
              f"{a.epochs} epochs)", "",
              "| run | items / min | × one process | same weights as one process |", "|---|---:|---:|---|"]
    lines += [f"| {n} | {r:,.1f} | {x:.2f} | {'—' if s is None else ('yes' if s else 'NO')} |" for n, r, x, s in fit]
    shutil.rmtree(tmp, ignore_errors=True)
    text = "\n".join(lines) + "\n"
    print(text)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w", encoding="utf-8") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
