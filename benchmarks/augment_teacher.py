"""Have the fine-tuned teachers label perturbed copies of the students' training answers.

    python benchmarks/augment_teacher.py [--tasks asap-1,scientsbank] [--teachers runs]

Needs the ``teacher`` extra and the fine-tuned teacher folders that ``benchmarks/teacher/run.sh`` leaves under
``runs/`` (they are not committed: 87 MB each). For every task of ``paper_table.py`` it

1. makes the copies with :func:`tinykd.distill.augment.augment` (settings ``paper_table.AUGMENT``) from the rows the
   student trains on, and writes them to ``runs/aug/<name>-augmented-input.csv`` (text stays out of git);
2. checks that the teacher folder reproduces the committed soft labels of the test answers (so the copies are
   labelled by the very teacher of the table);
3. labels the copies (``teacher_export export``) and writes ``benchmarks/teacher/<name>-augmented.csv`` +
   ``.json`` — ids and probabilities only; ``paper_table.py`` rebuilds the texts from the same rows and seed.
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))

import paper_table as pt  # noqa: E402
from tinykd.files.softlabels import read_soft_labels  # noqa: E402

TEACHERS = {"asap-1": "asap/asap-sas-science-item1-teacher", "asap-2": "asap/asap-sas-science-item2-teacher",
            "asap-5": "asap5b/asap-sas-science-item5-teacher", "asap-6": "asap6b/asap-sas-science-item6-teacher",
            "asap-10": "asap/asap-sas-science-item10-teacher", "scientsbank": "sb/scientsbank-teacher"}


def _write_csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--teachers", type=Path, default=ROOT / "runs", help="folder holding the teacher folders")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "aug")
    ap.add_argument("--tasks", default=",".join(TEACHERS))
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    from teacher_export.export import run_export

    tasks = pt.load_tasks(args.data_dir)
    args.work.mkdir(parents=True, exist_ok=True)
    sources = {}  # data file -> {id: row}, read once
    for k in args.tasks.split(","):
        t0 = time.time()
        task = tasks[k]
        name = "scientsbank" if k == "scientsbank" else f"asap-sas-science-item{task['item']}"
        teacher = args.teachers / TEACHERS[k]
        ctx_col = "reference_answer" if k == "scientsbank" else None  # the teacher's second segment
        classes = [str(c) for c in task["classes"]]
        # 2. the folder must be the committed teacher: re-label 48 test answers and compare
        tids = next(iter(task["tests"].values()))[3]
        data_file = args.data_dir / ("scientsbank/scientsbank.csv" if k == "scientsbank" else
                                     "asap-sas-science/asap-sas-science.csv")
        if data_file not in sources:
            sources[data_file] = {r["id"]: r for r in pt.read_csv(data_file)}
        src_rows = sources[data_file]
        check = args.work / f"{name}-check-input.csv"
        head = ["id", "text"] + ([ctx_col] if ctx_col else [])
        _write_csv(check, head, [[i, src_rows[i]["text"]] + ([src_rows[i][ctx_col]] if ctx_col else [])
                                 for i in tids[:48]])
        res = run_export(teacher=str(teacher), data=str(check), out=str(args.work), name=f"{name}-check",
                         threads=args.threads)
        got = read_soft_labels(res["path"], tids[:48], classes)
        want = read_soft_labels(pt.TEACHER_DIR / f"{name}.csv", tids[:48], classes)
        diff = float(np.abs(got - want).max())
        if diff > 2e-3:
            sys.exit(f"augment_teacher: {teacher} is not the teacher of {name}.csv (max |Δp| {diff:.4f})")
        # 1 + 3. the copies, labelled
        ids, texts, _, src = pt.augmented_texts(task["train_rows"])
        inp = args.work / f"{name}-augmented-input.csv"
        _write_csv(inp, head, [[i, t] + ([task["train_rows"][j][ctx_col]] if ctx_col else [])
                               for i, t, j in zip(ids, texts, src)])
        res = run_export(teacher=str(teacher), data=str(inp), out=str(args.work), name=f"{name}-augmented",
                         threads=args.threads)
        side_path = Path(res["path"]).with_suffix(".json")
        side = json.loads(side_path.read_text())
        side.update(teacher=TEACHERS[k], data_file=None, producer="benchmarks/augment_teacher.py",
                    augmentation={**pt.AUGMENT, "function": "tinykd.distill.augment.augment",
                                  "source_rows": "the student's training rows in benchmarks/paper_table.py",
                                  "ids": "<id>~aug<k>", "teacher_check_max_abs_diff": diff},
                    wall_seconds=round(time.time() - t0, 1))
        side_path.write_text(json.dumps(side, indent=2) + "\n")
        for ext in (".csv", ".json"):
            shutil.copyfile(Path(res["path"]).with_suffix(ext), pt.TEACHER_DIR / f"{name}-augmented{ext}")
        print(f"{k}: {len(ids)} copies labelled in {time.time() - t0:.0f} s (teacher check max |Δp| {diff:.1e})",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
