"""tinykd.dask against one process (issue 18): rows per second scoring N answers, and items per minute
training one student per item, with 1 and 2 Dask workers (a LocalCluster of worker processes, one
thread each) against tinykd's own single-process scorer and ``fit_items``, measured in the same run.

    python benchmarks/dask_speed.py [--rows 1000000] [--items 8] [--epochs 3] [--note "..."]

Data: the bundled SciEntsBank demo answers (CC BY-SA), repeated to --rows. Prints a table and writes
benchmarks/results/dask_speed.md. Every scored row is checked to equal the single-process scores.
"""
from __future__ import annotations

import argparse
import gzip
import csv
import os
import platform
import sys
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

    import dask.dataframe as dd
    import pandas as pd

    import tinykd
    import tinykd.dask as tkd
    from tinykd.scorefile import score_rows

    rows = demo_rows()
    train = [r for r in rows if r["split"] == "train"]
    st = tinykd.fit([r["text"] for r in train], [int(r["label"]) for r in train], preset=a.preset, epochs=2,
                    verbose=False)
    model_bytes = st.to_bytes()
    texts = [rows[i % len(rows)]["text"] for i in range(a.rows)]
    frame = pd.DataFrame({"id": np.arange(a.rows).astype(str), "text": texts})

    # one process: tinykd's scorer over 2,000-row chunks (what `tinykd score` does, without the CSV)
    import tinykd._scoring_kernels  # noqa: F401  (Numba started, as on the workers)
    score_rows(st, texts[:2000])  # warm
    t0 = time.perf_counter()
    ref = np.concatenate([score_rows(st, texts[s:s + 2000])[0] for s in range(0, a.rows, 2000)])
    one = time.perf_counter() - t0
    score = [("one process (tinykd.scorefile.score_rows)", a.rows / one, 1.0, None)]

    items = sorted({r["item"] for r in train})[:a.items]
    irows = [r for r in train if r["item"] in items]
    fit_args = ([r["text"] for r in irows], [r["label"] for r in irows])
    fit_kw = dict(items=[r["item"] for r in irows], preset="bathtub", epochs=a.epochs, seed=0, verbose=False)
    tinykd.fit_items(*fit_args, **{**fit_kw, "epochs": 1})  # compile / warm
    t0 = time.perf_counter()
    ref_model = tinykd.fit_items(*fit_args, **fit_kw)
    one_fit = time.perf_counter() - t0
    fit = [("one process (tinykd.fit_items)", len(items) / one_fit * 60, 1.0, None)]

    for workers in (1, 2):
        with tkd.connect(jobs=workers) as client:
            ddf = dd.from_pandas(frame, npartitions=a.partitions)
            tkd.score(dd.from_pandas(frame.iloc[:4000], npartitions=workers), model_bytes).compute()  # warm
            t0 = time.perf_counter()
            out = tkd.score(ddf, model_bytes).compute()
            sec = time.perf_counter() - t0
            same = np.array_equal(out[[f"p_{c}" for c in st.classes]].to_numpy(np.float32), ref) and \
                out["id"].tolist() == frame["id"].tolist()
            score.append((f"tinykd.dask.score, {workers} worker{'s' if workers > 1 else ''}", a.rows / sec,
                          one / sec, same))
            tkd.fit_items(*fit_args, **{**fit_kw, "epochs": 1}, client=client)  # warm the workers
            t0 = time.perf_counter()
            got = tkd.fit_items(*fit_args, **fit_kw, client=client)
            sec = time.perf_counter() - t0
            same = all(np.array_equal(got.students[k].net.params, ref_model.students[k].net.params) for k in items)
            fit.append((f"tinykd.dask.fit_items, {workers} worker{'s' if workers > 1 else ''}", len(items) / sec * 60,
                        one_fit / sec, same))

    load = os.getloadavg()
    lines = [
        "# tinykd.dask against one process",
        "",
        f"Machine: {os.cpu_count()} cores ({cpu_name()}), no GPU; Python {platform.python_version()}; "
        f"load average at the end {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}." + (f" {a.note}" if a.note else ""),
        f"Command: `python benchmarks/dask_speed.py --rows {a.rows} --items {a.items} --epochs {a.epochs}`. Workers: a "
        "`LocalCluster` of worker processes, one thread each; times after one warm-up call (Numba compiled, workers "
        "started).",
        "",
        f"## Scoring {a.rows:,} answers ({a.preset} student, {a.partitions} partitions, in-memory frame)",
        "",
        "| run | rows / s | × one process | scores equal one process |",
        "|---|---:|---:|---|",
    ]
    lines += [f"| {n} | {r:,.0f} | {x:.2f} | {'—' if s is None else ('yes, every row' if s else 'NO')} |"
              for n, r, x, s in score]
    lines += ["", f"## Per-item training ({len(items)} SciEntsBank items, {len(irows)} rows, bathtub, "
              f"{a.epochs} epochs)", "",
              "| run | items / min | × one process | same weights as one process |", "|---|---:|---:|---|"]
    lines += [f"| {n} | {r:,.1f} | {x:.2f} | {'—' if s is None else ('yes' if s else 'NO')} |" for n, r, x, s in fit]
    text = "\n".join(lines) + "\n"
    print(text)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w", encoding="utf-8") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
