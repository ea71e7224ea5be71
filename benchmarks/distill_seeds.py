"""The kept student over student seeds, with and without the weights' averaging, on the rows of
``distill_table.py`` (their cached teachers and labels).

    python benchmarks/distill_seeds.py [--work-root runs/distill] [--seeds 0,1,2] [--rows asap-5,…]

``distill_table.py`` left one work folder per row (``--work-root``/ROW) with the rows, the teacher's
probabilities, the copies and the teacher's labels of the copies; this script reads them (one of each)
and retrains only the students' stage as ``tinykd distill``'s defaults do it — the KD student of each
preset of ``tinykd.distill.pipeline.AUTO_PRESETS`` (λ and soft loss of ``LAMS`` / ``SOFT_LOSS``, decision
offsets, 40 epochs, patience 5), side by side, the better on validation accuracy (then QWK) kept —
for each student seed (the seed of the students' initialisation and batch order; the teacher, the
copies and their labels stay those of seed 0), once with no averaging and once with Polyak averaging
over about the last epoch (``tinykd.fit(average=1)``). The plain NNs are not trained (distill keeps
one only when it beats every KD student on validation, which none did on these rows).

Seed 0 without averaging is the table's own student as distill trained it without averaging: its
validation metrics are checked against ``--table`` (default ``distill_table_before_average.json``, those
rows; the "= table" column), which shows this script trains what distill trains.

Rule, fixed before these runs, for making the averaging the default (``STUDENT_AVERAGE``): the
kept student's validation accuracy, averaged over all rows and seeds, rises by at least 0.3 points and
its validation QWK falls by no more than 0.005. The test columns are reported, not used.

Writes ``benchmarks/results/distill_seeds.md`` and ``.json`` (each (row, seed, averaging) kept as it
finishes: a rerun skips those done, and rewrites the table only when it trained something).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from distill_table import ORDER, RESULTS, cpu, pair  # noqa: E402

from tinykd.files.atomic import atomic_write_bytes  # noqa: E402
from tinykd.distill.pipeline import AUTO_PRESETS, LAMS, SOFT_LOSS, side_by_side  # noqa: E402
from tinykd.train.fitting import fit  # noqa: E402
from tinykd.quality.metrics import scoring_metrics  # noqa: E402
from tinykd.files.softlabels import read_soft_labels  # noqa: E402
from tinykd.files.csvfiles import label_key, label_sort_key, normalize_labels, read_table  # noqa: E402

AVERAGES = {"none": None, "averaged": 1.0}


def one(folder, stage, name):
    """The one ``stage-*/name`` file of a work folder."""
    found = sorted(glob.glob(os.path.join(folder, f"{stage}-*", name)))
    if len(found) != 1:
        raise SystemExit(f"{folder}: expected one {stage}-*/{name}, found {len(found)}; run distill_table.py first "
                         "(one work folder per row, default options)")
    return found[0]


def load_row(folder):
    """What distill's students' stage reads, from a row's work folder."""
    t = read_table(one(folder, "rows", "rows.csv"))
    ids, texts, roles = t.column("id"), t.column("text"), t.column("role")
    ctx = t.column("context") if t.has("context") else None
    raw = t.column("label")
    labels, kind = normalize_labels([v for v in raw if v != ""])
    it = iter(labels)
    labels = [next(it) if v != "" else None for v in raw]
    idx = range(len(ids))
    train = [i for i in idx if roles[i] == "train" and labels[i] is not None]
    val = [i for i in idx if roles[i] == "val"]
    test = [i for i in idx if roles[i] == "test"]
    classes = sorted({labels[i] for i in train}, key=label_sort_key)
    want = [label_key(c) for c in classes]
    part = (lambda rows: (None if ctx is None else [ctx[i] for i in rows]))
    crow = read_table(one(folder, "copies", "copies.csv")).rows
    p_tx = read_soft_labels(one(folder, "labels", "labels.csv"), [r[0] for r in crow], want)
    return {
        "texts": [texts[i] for i in train], "contexts": part(train),
        "y": np.asarray([labels[i] for i in train], dtype=object if kind == "str" else None),
        "p": read_soft_labels(one(folder, "teacher", "teacher.csv"), [ids[i] for i in train], want),
        "transfer": ([r[1] for r in crow], p_tx, [r[2] for r in crow] if ctx is not None else None),
        "validation": ([texts[i] for i in val], [labels[i] for i in val], part(val)),
        "test": ([texts[i] for i in test], [label_key(labels[i]) for i in test], part(test)), "want": want}


def kept_student(d, seed, average):
    """Train the KD students of every preset side by side; the kept one's name and metrics."""
    lam = LAMS[0]

    def train_one(pr, settings, stop):
        s = fit(d["texts"], d["y"], d["p"], contexts=d["contexts"], preset=pr, lam=lam, offsets=True,
                temperature=1.0, soft_loss=SOFT_LOSS, validation=d["validation"], transfer=d["transfer"],
                epochs=40, patience=5, seed=seed, verbose=False, settings=settings, on_epoch=stop,
                average=average)
        tt, ty, tc = d["test"]
        return {"validation": s.meta["validation_metrics"], "epochs": len(s.meta["history"]),
                "test": scoring_metrics(ty, [label_key(v) for v in s.predict(tt, tc)], labels=d["want"])}

    presets = list(AUTO_PRESETS)
    runs = dict(zip(presets, side_by_side(train_one, presets)))
    best = max(presets, key=lambda p: (runs[p]["validation"]["accuracy"], runs[p]["validation"]["qwk"],
                                       -presets.index(p)))
    return {"kept": best, **runs[best], "presets": runs}


def mean(xs):
    return sum(xs) / len(xs) if xs else float("nan")


def write(out, results, table, seeds, command):
    lines = ["# The kept student over seeds: weight averaging or none", "",
             f"Generated by `{command}` on a 2-core {cpu()} (nothing else running), "
             f"last on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. The teachers, copies and labels are "
             "those of `distill_table.py`'s runs (seed 0); only the students' seed changes. Each cell: the kept KD "
             "student's accuracy / QWK (preset kept). Validation rows decide; test rows are reported.", "",
             "| data set | seed | val none | val averaged | Δ val acc | test none | test averaged | TF-IDF + LR test "
             "| = table |", "|---|---:|---|---|---:|---|---|---|---|"]
    def cell(r, part):
        return "" if r is None else f"{pair(r[part])} ({r['kept']})"

    dv, dq, dt, dtq, ahead = [], [], [], [], {"none": [], "averaged": []}
    for row in ORDER:
        if row not in table:
            continue
        tf = table[row]["metrics"]["TF-IDF + LR"]
        for seed in seeds:
            a, b = results.get(f"{row}/{seed}/none"), results.get(f"{row}/{seed}/averaged")
            if a is None and b is None:
                continue
            same = ""
            if a is not None and seed == 0:
                mt = table[row]["validation"][str(float(table[row]["lam"]))]
                same = "yes" if (a["kept"] == table[row]["preset"] and abs(a["validation"]["accuracy"] - mt["accuracy"])
                                 < 1e-9 and abs(a["validation"]["qwk"] - mt["qwk"]) < 1e-9) else "**no**"
            for k, r in (("none", a), ("averaged", b)):
                if r is not None:
                    ahead[k].append(r["test"]["accuracy"] > tf["accuracy"])
            if a is not None and b is not None:
                dv.append(b["validation"]["accuracy"] - a["validation"]["accuracy"])
                dq.append(b["validation"]["qwk"] - a["validation"]["qwk"])
                dt.append(b["test"]["accuracy"] - a["test"]["accuracy"])
                dtq.append(b["test"]["qwk"] - a["test"]["qwk"])
            d = f"{dv[-1] * 100:+.1f}" if a is not None and b is not None else ""
            lines.append(f"| {table[row]['name']} | {seed} | {cell(a, 'validation')} | {cell(b, 'validation')} | {d} | "
                         f"{cell(a, 'test')} | {cell(b, 'test')} | {pair(tf)} | {same} |")
    verdict = "—" if not dv else "adopted" if mean(dv) * 100 >= 0.3 and mean(dq) >= -0.005 else "not adopted"
    lines += ["", f"Paired runs: {len(dv)}. Mean averaged − none: validation {mean(dv) * 100:+.2f} points / "
              f"{mean(dq):+.4f} QWK; test {mean(dt) * 100:+.2f} points / {mean(dtq):+.4f} QWK. By the rule fixed before "
              f"the runs (validation ≥ +0.3 points, QWK ≥ −0.005): **{verdict}**.", "",
              "Kept student ahead of TF-IDF + LR in test accuracy: "
              + "; ".join(f"{k} {sum(v)} of {len(v)} runs" for k, v in ahead.items() if v) + "."]
    if out is not None:  # None: nothing ran, the file (and its date) stays as it is
        Path(out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work-root", type=Path, default=Path(__file__).resolve().parents[1] / "runs" / "distill")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--rows", default="", help="comma-separated subset of the rows (default: all in the table)")
    ap.add_argument("--table", type=Path, default=RESULTS / "distill_table_before_average.json",
                    help="distill_table.py's rows trained without averaging (the check of seed 0; TF-IDF + LR)")
    ap.add_argument("--out", type=Path, default=RESULTS / "distill_seeds.md")
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    table = json.loads(args.table.read_text(encoding="utf-8"))
    rows = [r for r in (args.rows.split(",") if args.rows else ORDER) if r in table]
    js = args.out.with_suffix(".json")
    results = json.loads(js.read_text(encoding="utf-8")) if js.exists() else {}
    command = "python benchmarks/distill_seeds.py" + (f" --seeds {args.seeds}" if args.seeds != "0,1,2" else "")
    for row in rows:
        d = None
        for seed in seeds:
            for name, average in AVERAGES.items():
                key = f"{row}/{seed}/{name}"
                if key in results:
                    continue
                d = d or load_row(args.work_root / row)
                t0 = time.time()
                r = kept_student(d, seed, average)
                r["seconds"] = round(time.time() - t0, 1)
                results[key] = r
                print(f"{key}: kept {r['kept']}, validation {r['validation']['accuracy']:.3f} / "
                      f"{r['validation']['qwk']:.3f}, test {r['test']['accuracy']:.3f} / {r['test']['qwk']:.3f} "
                      f"({r['seconds']:.0f} s)", flush=True)
                atomic_write_bytes(js, json.dumps(results, indent=1).encode("utf-8"))
                write(args.out, results, table, seeds, command)
    print("\n".join(write(None, results, table, seeds, command)))


if __name__ == "__main__":
    main()
