"""``tinykd distill`` with its default options on every public data set: student vs its own teacher.

    python benchmarks/distill_table.py [--data-dir ../shared/data] [--work-root runs/distill] [--rows asap-1,…]
    python benchmarks/distill_table.py --md-only      # rewrite the table from its .json; run nothing

One ``tinykd.distill.pipeline.distill`` run per row, with default options, exactly as the command line
``tinykd distill`` (the command of each row is in the table):

- ASAP-SAS items 1, 2, 5, 6, 10: ``--where item=N --split-col aera_split`` (train on the AERA
  training rows, validate on its validation rows, test on the official test rows);
- SciEntsBank 3-way: ``--label-col label3 --context-col reference_answer --test-split test_ua`` (a
  seeded 1/8 of the training rows validates; the answers are labelled against the reference answer, as
  the demo reads them).

Every row's work folder (``--work-root``/ROW; it holds ASAP-SAS text, so it lives outside the
repository's tracked files) caches its stages: a rerun resumes, and a row finished before costs
nothing. ``benchmarks/results/distill_table.json`` keeps each row's result as it finishes (so that
``--rows`` reruns some rows and keeps the others), and ``distill_table.md`` is rewritten from it after
each row: rows not run yet are listed as such. Each row records its CPU: a student is reproducible bit
for bit on the same kind of CPU only (docs/decisions/cpu-reproducibility.md).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tinykd.distill.pipeline import distill  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
ORDER = ["asap-1", "asap-2", "asap-5", "asap-6", "asap-10", "ela-4", "ela-7", "ela-9", "scientsbank-ua"]
HEADER = ("| data set | n test | teacher acc / QWK | TF-IDF+LR acc / QWK | plain NN acc / QWK | student acc / QWK "
          "| Δ acc | Δ QWK | preset, λ | copies | teacher epoch kept / run (stops on) | teacher s | labels s | students s "
          "| total min |")


def pair(v):
    """Accuracy / QWK of one metrics dict, as the tables print them."""
    return f"{v['accuracy']:.3f} / {v['qwk']:.3f}"


def student(metrics):
    """The kept student's metrics in a distill report (its name says its λ)."""
    return next(v for n, v in metrics.items() if n.startswith("student"))


def rows(data_dir):
    """{row: (name, data file, distill options, the command line)}."""
    asap = data_dir / "asap-sas-science" / "asap-sas-science.csv"
    out = {f"asap-{i}": (f"asap-sas-science item {i}", asap, {"where": [f"item={i}"], "split_col": "aera_split"},
                         f"tinykd distill asap-sas-science.csv --where item={i} --split-col aera_split")
           for i in ("1", "2", "5", "6", "10")}
    ela = data_dir / "asap-sas-ela" / "asap-sas-ela.csv"
    out.update({f"ela-{i}": (f"asap-sas-ela item {i}", ela, {"where": [f"item={i}"], "split_col": "aera_split"},
                             f"tinykd distill asap-sas-ela.csv --where item={i} --split-col aera_split")
                for i in ("4", "7", "9")})
    out["scientsbank-ua"] = ("scientsbank 3-way test_ua", data_dir / "scientsbank" / "scientsbank.csv",
                             {"label_col": "label3", "context_col": "reference_answer", "test_split": "test_ua"},
                             "tinykd distill scientsbank.csv --label-col label3 --context-col reference_answer "
                             "--test-split test_ua")
    return out


def row_line(r):
    """One row of the table."""
    m, sec = r["metrics"], r["seconds"]
    st, f = student(m), pair
    return (f"| {r['name']} | {m['n']} | {f(m['teacher'])} | {f(m['TF-IDF + LR'])} | {f(m['plain NN'])} | "
            f"{f(st)} | {st['accuracy'] - m['teacher']['accuracy']:+.3f} | "
            f"{st['qwk'] - m['teacher']['qwk']:+.3f} | {r.get('preset', '?')}, {r['lam']:g} | {r['copies']:,} | "
            f"{epochs(r)} | {sec.get('teacher', 0):.0f} | {sec.get('labels', 0):.0f} | {sec.get('students', 0):.0f} | "
            f"{sec['total'] / 60:.1f} |")


def table_lines(results, order=ORDER):
    """The table (and its mean and commands) as markdown lines; ``benchmarks/paper_table.py`` adds it too."""
    lines = [HEADER, "|---|---:|---|---|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
    lines += [row_line(results[k]) if k in results else f"| {k} | not run yet |" + " |" * 14 for k in order]
    done = [results[k] for k in order if k in results]
    if done:
        sts = [student(r["metrics"]) for r in done]
        da = sum(s["accuracy"] - r["metrics"]["teacher"]["accuracy"] for s, r in zip(sts, done)) / len(done)
        dq = sum(s["qwk"] - r["metrics"]["teacher"]["qwk"] for s, r in zip(sts, done)) / len(done)
        ahead = sum(s["accuracy"] > max(r["metrics"]["plain NN"]["accuracy"], r["metrics"]["TF-IDF + LR"]["accuracy"])
                    for s, r in zip(sts, done))
        lines += ["", f"Mean over the {len(done)} row(s) run: Δ accuracy {da:+.3f}, Δ QWK {dq:+.3f}; the student is "
                  f"ahead of both the plain NN and TF-IDF + LR in accuracy on {ahead} of {len(done)}. "
                  "Seconds per stage as measured by the run that computed the stage (a stage a rerun found "
                  "cached counts the seconds it took then: `DistillResult.made_seconds`); total = their sum."]
    lines += ["", "Commands:", ""] + [f"- {results[k]['name']}: `{results[k]['command']}`" for k in order if k in results]
    return lines


def teacher_facts(teacher_dir):
    """The fine-tuning record of a distill run's teacher: epoch kept, epochs run, stopping rule, optimiser
    (from the ``teacher.json`` sidecar beside its folder)."""
    side = Path(teacher_dir).parent / "teacher.json"
    if not side.exists():
        return {}
    d = json.loads(side.read_text(encoding="utf-8"))
    hp = d.get("hyperparameters", {})
    return {"best_epoch": d.get("best_epoch"), "epochs_run": d.get("epochs_run"),
            "stop_on": hp.get("stop_on", "loss"), "tolerance": hp.get("tolerance", 0.0),
            "optimizer": hp.get("optimizer", "AdamW")}


def epochs(r):
    """The teacher's epoch kept / epochs run (stopping rule), as the table prints it."""
    t = r.get("teacher") or {}
    if not t.get("best_epoch"):
        return "?"
    rule = t["stop_on"] + (f" ± {t['tolerance']:g}" if t["stop_on"] == "accuracy" and t.get("tolerance") else "")
    return f"{t['best_epoch']} / {t['epochs_run']} ({rule})"


def cpu():
    """The CPU's model name, family and model (its generation) and widest vector instructions, which
    decide the students' float rounding (docs/decisions/cpu-reproducibility.md)."""
    name, flags, fam = platform.processor() or platform.machine(), set(), {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                key, _, val = line.partition(":")
                key = key.strip()
                if key == "model name":
                    name = val.strip()
                elif key in ("cpu family", "model"):
                    fam[key] = val.strip()
                elif key == "flags":
                    flags = set(val.split())
                    break
    except OSError:
        pass
    isa = "AVX-512" if "avx512f" in flags else "AVX2 + FMA" if {"avx2", "fma"} <= flags else "no AVX2"
    gen = f" (family {fam['cpu family']}, model {fam['model']})" if len(fam) == 2 else ""
    return f"{name}{gen}, {isa}"


def write_md(results, order, path):
    cpus = sorted({r.get("cpu", "CPU not recorded") for r in results.values()})
    lines = ["# `tinykd distill` with default options: student vs its own teacher", "",
             "Generated by `python benchmarks/distill_table.py` "
             f"({platform.machine()}, {os.cpu_count()} cores, {' / '.join(cpus)}, no GPU; one seed; test rows of "
             "each data set). Δ = student − teacher. Each row is one `tinykd distill` run (its command below the "
             "table); the teacher is fine-tuned by that run.", ""] + table_lines(results, order)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def run_row(key, table, work_root):
    """One row through ``tinykd distill`` (its work folder resumes it): what the table and its json keep."""
    name, data, opts, command = table[key]
    work = work_root / key
    t0 = time.time()
    print(f"== {key}: {command}", flush=True)
    res = distill(data, work / "student.npz", work=work, **opts)
    d = res.model.meta["distill"]
    # every stage's seconds as measured by the run that computed it (this one, or the one a cached stage is from)
    seconds = {**res.made_seconds, "total": round(sum(res.made_seconds.values()), 1)}
    return {"name": name, "command": command, "metrics": res.report["all rows"], "seconds": seconds,
            "seconds_this_run": res.seconds, "teacher_dir": d["teacher"], "lam": d["lam"], "copies": d["copies"],
            "preset": d["preset"], "validation": d["validation"], "teacher": teacher_facts(d["teacher"]),
            "ran": res.ran, "cached": res.cached, "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "wall": round(time.time() - t0, 1), "cpu": cpu()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--work-root", type=Path, default=ROOT / "runs" / "distill")
    ap.add_argument("--rows", default="", help=f"comma-separated subset of the rows (default: all: {','.join(ORDER)})")
    ap.add_argument("--out", type=Path, default=RESULTS / "distill_table.md",
                    help="the table (its rows are kept in the .json beside it)")
    ap.add_argument("--md-only", action="store_true", help="rewrite the table from the .json beside --out; run nothing")
    args = ap.parse_args(argv)
    table = rows(args.data_dir)
    pick = [r for r in args.rows.split(",") if r] or ORDER
    unknown = [r for r in pick if r not in table]
    if unknown:
        ap.error(f"--rows: unknown row(s) {', '.join(unknown)}; the rows are {', '.join(ORDER)}")
    js = args.out.with_suffix(".json")
    results = json.loads(js.read_text(encoding="utf-8")) if js.exists() else {}
    for key in () if args.md_only else pick:
        results[key] = run_row(key, table, args.work_root)
        js.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
        write_md(results, ORDER, args.out)  # after each row: an interrupted run leaves a table of what it finished
    write_md(results, ORDER, args.out)
    print(args.out.read_text(encoding="utf-8"), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
