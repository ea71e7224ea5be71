"""Two students' weights averaged: does it act as an ensemble within the parameter budget? (docs/decisions/student-pair.md)

    python benchmarks/weight_soup.py [--row ela-7] [--preset bathtub]

Uses the work folder of ``benchmarks/distill_table.py``'s row (its rows, teacher labels, copies and their labels:
run that first). Two ways, each two KD students (λ = 4, distill's student options, no decision offsets) whose
weights are averaged into one network of the same size:

* ``same start``: both start from the network's seed 0 and see the rows in their own orders (seeds 1 and 2);
* ``shared trunk``: one student trains 3 epochs from seed 0; two go on from its weights in their own orders.

Reported on the validation rows (accuracy, QWK, log-loss of the uncalibrated probabilities) with the weights'
distance relative to the first one's norm. ``benchmarks/results/weight_soup.md`` is rewritten.
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from unittest import mock

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from distill_table import cpu  # noqa: E402
import tinykd.train.fitting as fitting  # noqa: E402
from tinykd.distill.job import STUDENT_OPTIONS  # noqa: E402
from tinykd.files.atomic import atomic_write_bytes  # noqa: E402
from tinykd.files.csvfiles import label_key, read_table  # noqa: E402
from tinykd.files.softlabels import read_soft_labels  # noqa: E402
from tinykd.nn.network import StudentNet  # noqa: E402
from tinykd.quality.metrics import log_loss  # noqa: E402
from tinykd.scoring.student import Student  # noqa: E402
from tinykd.settings import Settings, blas_threads  # noqa: E402
from tinykd.train.offsets import accuracy_qwk  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
TRUNK_EPOCHS = 3
CHILD_SEEDS = (1, 2)


def one_file(folder, pattern):
    found = sorted(folder.glob(pattern))
    if len(found) != 1:
        raise SystemExit(f"{folder}: need one {pattern}, found {len(found)}; run benchmarks/distill_table.py first")
    return found[0]


def load_row(folder):
    """Training answers, labels and teacher probabilities, the validation rows and the transfer set."""
    with open(one_file(folder, "rows-*/rows.csv"), newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    classes = sorted({r["label"] for r in rows if r["label"] != ""}, key=float)
    want = [label_key(c) for c in classes]
    tr = [r for r in rows if r["role"] == "train" and r["label"] != ""]
    va = [r for r in rows if r["role"] == "val"]
    p_train = read_soft_labels(one_file(folder, "teacher-*/teacher.csv"), [r["id"] for r in tr], want)
    copies = read_table(one_file(folder, "copies-*/copies.csv")).rows
    p_tx = read_soft_labels(one_file(folder, "labels-*/labels.csv"), [r[0] for r in copies], want)
    return dict(texts=[r["text"] for r in tr], y=np.array([classes.index(r["label"]) for r in tr]), p=p_train,
                val=([r["text"] for r in va], [classes.index(r["label"]) for r in va], None),
                transfer=([r[1] for r in copies], p_tx, None), classes=classes)


def train(data, preset, seed, start=None, **changes):
    """One KD student of ``seed`` (order and dropout); its network starts from seed 0, or from ``start``."""
    class Start(StudentNet):  # fit draws the network from options.seed: here the start is fixed apart
        def __init__(self, *a, seed=0, **k):
            super().__init__(*a, seed=0, **k)
            if start is not None:
                self.params[:] = start

    o = STUDENT_OPTIONS.replace(preset=preset, lam=4.0, seed=seed, offsets=False, **changes)
    with mock.patch.object(fitting, "StudentNet", Start):
        return fitting.fit(data["texts"], data["y"], data["p"], options=o, validation=data["val"],
                           transfer=data["transfer"], verbose=False, settings=Settings(parallel=False))


def measure(student, data):
    texts, y, _ = data["val"]
    p = np.asarray(student.predict_proba(texts, calibrated=False), dtype=np.float64)
    acc, qwk = accuracy_qwk(y, p.argmax(1), len(data["classes"]))
    return {"accuracy": acc, "qwk": qwk, "logloss": log_loss(p, y)}


def averaged(students):
    a = students[0]
    net = StudentNet(a.net.config, a.net.vocab_size, a.net.n_classes,
                     params=np.mean([s.net.params for s in students], axis=0))
    return Student(a.vocab, net, a.classes, a.meta)


def way(data, preset, start):
    with blas_threads(1), ThreadPoolExecutor(len(CHILD_SEEDS)) as ex:
        kids = list(ex.map(lambda s: train(data, preset, s, start), CHILD_SEEDS))
    if any(k.vocab.tokens != kids[0].vocab.tokens for k in kids):
        raise SystemExit("the students' vocabularies differ")
    dist = float(np.linalg.norm(kids[0].net.params - kids[1].net.params) / np.linalg.norm(kids[0].net.params))
    return {"students": [{"seed": s, "epochs": len(k.meta["history"]), **measure(k, data)}
                         for s, k in zip(CHILD_SEEDS, kids)],
            "averaged": measure(averaged(kids), data), "distance": dist}


def write_md(res, path):
    lines = ["# Two students' weights averaged (one network of the same size)", "",
             f"Generated by `python benchmarks/weight_soup.py --row {res['row']} --preset {res['preset']}` "
             f"({res['cpu']}, 2 cores, {res['seconds']:.0f} s). KD students (λ = 4, distill's options, no decision "
             "offsets) on the row's training answers and transfer set; validation rows; uncalibrated probabilities. "
             f"`same start`: both from the network's seed 0, orders {CHILD_SEEDS}; `shared trunk`: both go on from "
             f"{TRUNK_EPOCHS} epochs of one run (seed 0). Distance: ‖w₁ − w₂‖ / ‖w₁‖. "
             "docs/decisions/student-pair.md reads it.", "",
             "| way | student | epochs | accuracy | QWK | log-loss |", "|---|---|---:|---:|---:|---:|"]
    for name, w in res["ways"].items():
        for s in w["students"]:
            lines.append(f"| {name} | seed {s['seed']} | {s['epochs']} | {s['accuracy']:.3f} | {s['qwk']:.3f} | "
                         f"{s['logloss']:.3f} |")
        a = w["averaged"]
        lines.append(f"| {name} | weights averaged (distance {w['distance']:.2f}) |  | {a['accuracy']:.3f} | "
                     f"{a['qwk']:.3f} | {a['logloss']:.3f} |")
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode("utf-8"))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--row", default="ela-7")
    ap.add_argument("--preset", default="bathtub")
    ap.add_argument("--work-root", type=Path, default=ROOT / "runs" / "distill")
    args = ap.parse_args(argv)
    t0 = time.time()
    data = load_row(args.work_root / args.row)
    ways = {"same start": way(data, args.preset, None)}
    trunk = train(data, args.preset, 0, epochs=TRUNK_EPOCHS, patience=TRUNK_EPOCHS)
    ways["shared trunk"] = way(data, args.preset, trunk.net.params.copy())
    res = {"row": args.row, "preset": args.preset, "cpu": cpu(), "seconds": time.time() - t0, "ways": ways}
    write_md(res, RESULTS / "weight_soup.md")
    print((RESULTS / "weight_soup.md").read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
