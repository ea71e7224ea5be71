"""``tinykd distill`` with its default options on every public data set: student vs its own teacher.

    python benchmarks/distill_table.py [--data-dir ../shared/data] [--work-root runs/distill] [--rows asap-1,…]

One ``tinykd.distill.pipeline.distill`` run per row, with default options, exactly as the command line
``tinykd distill`` (the command of each row is in the table):

- ASAP-SAS items 1, 2, 5, 6, 10: ``--where item=N --split-col aera_split`` (train on the AERA
  training rows, validate on its validation rows, test on the official test rows);
- SciEntsBank 3-way: ``--label-col label3 --context-col reference_answer --test-split test_ua`` (a
  seeded 1/8 of the training rows validates; the answers are labelled against the reference answer, as
  the demo reads them; until 2026-12-01 the row read the question: 0.654 teacher, 0.661 TF-IDF + LR).

Every row's work folder (``--work-root``/ROW; it holds ASAP-SAS text, so it lives outside the
repository's tracked files) caches its stages: a rerun resumes, and a row finished before costs
nothing. Results are kept per row in ``benchmarks/results/distill_table.json`` as they finish, and
``distill_table.md`` is rewritten after each row: rows not run yet are listed as such.
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
ORDER = ["asap-1", "asap-2", "asap-5", "asap-6", "asap-10", "scientsbank-ua"]


def pair(v):
    """Accuracy / QWK of one metrics dict, as the tables print them."""
    return f"{v['accuracy']:.3f} / {v['qwk']:.3f}"


def student(metrics):
    """The kept student's metrics in a distill report (its name says its λ)."""
    return next(v for n, v in metrics.items() if n.startswith("student"))


def row_args(ap, out):
    """The options every script over these rows takes: data, work folders, rows, the table written."""
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--work-root", type=Path, default=ROOT / "runs" / "distill")
    ap.add_argument("--rows", default="", help="comma-separated subset of the rows (default: all)")
    ap.add_argument("--out", type=Path, default=RESULTS / out)


def rows(data_dir):
    asap = data_dir / "asap-sas-science" / "asap-sas-science.csv"
    out = {f"asap-{i}": (f"asap-sas-science item {i}", asap, {"where": [f"item={i}"], "split_col": "aera_split"},
                         f"tinykd distill asap-sas-science.csv --where item={i} --split-col aera_split")
           for i in ("1", "2", "5", "6", "10")}
    out["scientsbank-ua"] = ("scientsbank 3-way test_ua", data_dir / "scientsbank" / "scientsbank.csv",
                             {"label_col": "label3", "context_col": "reference_answer", "test_split": "test_ua"},
                             "tinykd distill scientsbank.csv --label-col label3 --context-col reference_answer "
                             "--test-split test_ua")
    return out


def table_lines(results, order=ORDER):
    """The table (and its mean and commands) as markdown lines; ``benchmarks/paper_table.py`` adds it too."""
    lines = ["| data set | n test | teacher acc / QWK | TF-IDF+LR acc / QWK | plain NN acc / QWK | student acc / QWK "
             "| Δ acc | Δ QWK | preset, λ | copies | teacher epoch kept / run (stops on) | teacher s | labels s | students s "
             "| total min |",
             "|---|---:|---|---|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
    done = [results[k] for k in order if k in results]
    for k in order:
        r = results.get(k)
        if r is None:
            lines.append(f"| {k} | not run yet |" + " |" * 14)
            continue
        m = r["metrics"]
        st, f = student(m), pair
        sec = r["seconds"]
        lines.append(f"| {r['name']} | {m['n']} | {f(m['teacher'])} | {f(m['TF-IDF + LR'])} | {f(m['plain NN'])} | "
                     f"{f(st)} | {st['accuracy'] - m['teacher']['accuracy']:+.3f} | "
                     f"{st['qwk'] - m['teacher']['qwk']:+.3f} | {r.get('preset', '?')}, {r['lam']:g} | {r['copies']:,} | {epochs(r)} | "
                     f"{sec.get('teacher', 0):.0f} | {sec.get('labels', 0):.0f} | {sec.get('students', 0):.0f} | "
                     f"{sec['total'] / 60:.1f} |")
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
        plain_loop = [r["name"] for r in done if optimizer(r) != "AdamW (fused)"]
        if plain_loop:
            lines += ["", "Teacher fine-tuned with torch's plain AdamW loop (before the fused optimiser, "
                      f"`teacher_export` 0.1.0): {', '.join(plain_loop)}."]
        notes = [f"- {r['name']}: {r['note']}" for r in done if r.get("note")]
        if notes:
            lines += ["", "Notes:", ""] + notes
    lines += ["", "Commands:", ""] + [f"- {results[k]['name']}: `{results[k]['command']}`" for k in order if k in results]
    return lines


def teacher_facts(teacher_dir):
    """The fine-tuning record of a distill run's teacher: epoch kept, epochs run, stopping rule
    (from the ``teacher.json`` sidecar beside its folder; a teacher fine-tuned before ``stop_on``
    existed stopped on validation loss)."""
    side = Path(teacher_dir).parent / "teacher.json"
    if not side.exists():
        return {}
    d = json.loads(side.read_text(encoding="utf-8"))
    hp = d.get("hyperparameters", {})
    return {"best_epoch": d.get("best_epoch"), "epochs_run": d.get("epochs_run"),
            "stop_on": hp.get("stop_on", "loss"), "tolerance": hp.get("tolerance", 0.0),
            "optimizer": hp.get("optimizer", "AdamW")}


def optimizer(r):
    """The optimiser a row's teacher was fine-tuned with (``teacher_facts``; rows from before it
    recorded one: plain ``AdamW``)."""
    return (r.get("teacher") or {}).get("optimizer", "AdamW")


def epochs(r):
    t = r.get("teacher") or {}
    if not t.get("best_epoch"):
        return "?"
    rule = t["stop_on"] + (f" ± {t['tolerance']:g}" if t["stop_on"] == "accuracy" and t.get("tolerance") else "")
    return f"{t['best_epoch']} / {t['epochs_run']} ({rule})"


def cpu():
    """The CPU's model name, family and model (its generation) and widest vector instructions: Numba
    compiles the students' kernels for that CPU and NumPy picks its BLAS and vector loops by it, which
    decides the students' float rounding, and torch's for the teacher: a row is reproducible bit for bit
    on the same kind of CPU only (two AVX-512 EPYCs, the second of family 26, trained item 1's KD student
    to 0.757 and 0.743 validation accuracy, its plain NN identically)."""
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


def _load(path):
    """The rows of a results json beside the table ({} when it is not there)."""
    return json.loads(path.read_text()) if path.exists() else {}


def write_md(results, order, path):
    cpus = sorted({r.get("cpu", AVX2_CPU) for r in results.values()})
    lines = ["# `tinykd distill` with default options: student vs its own teacher", "",
             "Generated by `python benchmarks/distill_table.py` "
             f"({platform.machine()}, {os.cpu_count()} cores, {' / '.join(cpus)}, no GPU; one seed; test rows of "
             "each data set). Δ = student − teacher. Each row is one `tinykd distill` run (its command below the "
             "table); the teacher is fine-tuned by that run.", ""] + table_lines(results, order)
    for name, title, what, after in BEFORE:
        now = results if after is None else _load(path.with_name(after))
        against = "" if after is None else f"; compared with `{after}`, the rows of that machine"
        lines += before_lines(now, order, path.with_name(name), title, what + against)
    lines += stop_rule_lines(_load(path.with_name("distill_table_avx2.json")) or results, order,
                             path.with_name("distill_table_stop_on_loss.json"))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


#: the CPU of the rows that did not record one (the earlier stops' rows, ``distill_table_avx2.json``)
AVX2_CPU = "AMD EPYC, AVX2 + FMA"
#: earlier states of the table: (json beside the table, title, what differed, the json of the rows
#: they are compared with — None: the rows now)
BEFORE = [("distill_table_before_average.json", "Before / after the students' weight averaging",
           "the same commands on this machine an hour before, with no averaging of the students' weights (now over "
           "about the last epoch, `distill_seeds.md`): the same teachers, copies and labels (cached), every student "
           "trained again", None),
          ("distill_table_avx512_first.json", "Another AVX-512 machine: the same commands, no averaging",
           "the rows committed at a7982af, run on another 2-core AMD EPYC with AVX-512 (family and model not "
           "recorded then; its teacher's epochs took 60–66 s on item 1 against 40–43 s here) with the same code; "
           "every teacher kept the same epoch with the same test metrics, but the students differ: every KD student "
           "and some plain NNs (item 1's KD 7t student: 0.757 validation accuracy there, 0.743 here; its plain NN "
           "identical, the bathtub plain NNs of items 1 and 2 not), as between the AVX2 and AVX-512 machines; "
           "compared with `distill_table_before_average.json`, the rows of this machine with the same code",
           "distill_table_before_average.json"),
          ("distill_table_avx2.json", "Another CPU: the same commands on an AVX2 machine",
           "the rows committed at 0e701e0, run on a 2-core AMD EPYC with AVX2 + FMA (compared with the first AVX-512 "
           "machine's rows, the same code). The "
           "same code, data and seeds (the labelling's worker processes, new since, write the same labels byte for "
           "byte as one process on the same machine). The students' arithmetic is compiled or picked for the CPU it "
           "runs on (Numba's kernels, NumPy's BLAS and vector loops), so their float rounding, and with it every "
           "student, differs between the two (the plain NN too). PyTorch's kernels round differently too: "
           "five teachers kept the same epoch with the same test metrics, item 6's kept epoch 4 of 5 instead of 7 "
           "of 8. Read the two as two draws of the students", "distill_table_avx512_first.json"),
          ("distill_table_before_patience1.json", "Before / after the teacher's patience 1",
           "the rows committed at 3a3c1ec: the teacher stopped 2 epochs after its last improvement, now 1 "
           "(`patience.md`: on every recorded history the same epoch kept); its fine-tuning is "
           "deterministic on a CPU, so the same epoch kept is the same teacher, labels and students, an epoch "
           "sooner; SciEntsBank's row before was the plain AdamW loop's", "distill_table_avx2.json"),
          ("distill_table_before_fused.json", "Before / after the teacher's fused AdamW",
           "the rows committed at bec001d: the teacher's optimiser was torch's plain AdamW loop, now the fused "
           "kernel (a training step 1.1–1.3× faster, `teacher_step.md`; the same steps to float rounding, which "
           "grows over the epochs: item 6's teacher kept epoch 7 of 9 instead of 4 of 6), so every teacher, its "
           "labels and its students are new; SciEntsBank was not rerun", "distill_table_avx2.json"),
          ("distill_table_one_preset.json", "Before / after the preset choice",
           "the rows committed at 0b38169: one preset (`bathtub` below 2,000 training answers, else `7t`) where "
           "`--preset auto` now trains both and keeps the better on validation (its plain NN too); the same "
           "teachers, copies and labels (the labels' seconds are those of PyTorch, which computed them)", "distill_table_avx2.json"),
          ("distill_table_before_offsets.json", "Before / after the decision offsets (and the teacher's tolerance)",
           "the rows before the students' per-class decision offsets (tinykd.train.offsets) and the teacher's accuracy "
           "tolerance (committed with the table at c0622d5); the same data, roles and seeds", "distill_table_avx2.json")]


def before_lines(results, order, before_json, title, what):
    """The rows of an earlier state of the table (``before_json``) against the rows above."""
    if not before_json.exists():
        return []
    old, f = json.loads(before_json.read_text()), pair
    lines = ["", f"## {title}", "", f"`{before_json.name}`: {what}.", "",
             "| data set | teacher epoch kept / run, before → now | teacher s before → now | teacher test before → now "
             "| student test before → now | Δ acc before → now | Δ QWK before → now |", "|---|---|---:|---|---|---:|---:|"]
    means = [[0.0, 0.0], [0.0, 0.0]]
    for k in order:
        new = results.get(k)
        if k not in old or not new:
            continue
        sts = [student(r["metrics"]) for r in (old[k], new)]
        d = [(s["accuracy"] - r["metrics"]["teacher"]["accuracy"], s["qwk"] - r["metrics"]["teacher"]["qwk"])
             for s, r in zip(sts, (old[k], new))]
        for j in (0, 1):
            means[j][0] += d[j][0]
            means[j][1] += d[j][1]
        ts = [r["seconds"].get("teacher", 0) for r in (old[k], new)]
        lines.append(f"| {new['name']} | {epochs(old[k])} → {epochs(new)} | {ts[0]:.0f} → {ts[1]:.0f} | "
                     f"{f(old[k]['metrics']['teacher'])} → "
                     f"{f(new['metrics']['teacher'])} | {f(sts[0])} → {f(sts[1])} | {d[0][0]:+.3f} → {d[1][0]:+.3f} | "
                     f"{d[0][1]:+.3f} → {d[1][1]:+.3f} |")
    n = sum(1 for k in order if k in old and results.get(k))
    if n:
        lines.append(f"| **mean of {n}** | | | | | {means[0][0] / n:+.3f} → {means[1][0] / n:+.3f} | "
                     f"{means[0][1] / n:+.3f} → {means[1][1] / n:+.3f} |")
    return lines


def stop_rule_lines(results, order, loss_json):
    """Rows run under both teacher stopping rules (the rows of ``loss_json`` were run when the
    teacher stopped on validation loss, the default until the accuracy rule): validation and test."""
    if not loss_json.exists():
        return []
    old, f = json.loads(loss_json.read_text()), pair
    lines = ["", "## Teacher stopping rule: validation loss (913996d) vs accuracy", "",
             f"Rows of `{loss_json.name}` (the same command when the teacher stopped on validation loss, no decision "
             "offsets) against the AVX2 rows (`distill_table_avx2.json`, the same machine). Student val: the kept "
             "student's validation rows.", "",
             "| data set | rule | teacher epoch kept / run | teacher test | student val | student test |",
             "|---|---|---|---|---|---|"]
    for k in order:
        new = results.get(k)
        if k not in old or not new or (new.get("teacher") or {}).get("stop_on") != "accuracy":
            continue
        for rule, r in (("loss", old[k]), (epochs(new).split("(")[-1].rstrip(")"), new)):
            st = student(r["metrics"])
            val = r["validation"][max(r["validation"], key=lambda lam: (r["validation"][lam]["accuracy"],
                                                                         r["validation"][lam]["qwk"]))]
            t = r.get("teacher") or {}
            ep = f"{t['best_epoch']} / {t['epochs_run']}" if t.get("best_epoch") else "(sidecar)"
            lines.append(f"| {r['name']} | {rule} | {ep} | {f(r['metrics']['teacher'])} | {f(val)} | {f(st)} |")
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    row_args(ap, "distill_table.md")
    ap.add_argument("--md-only", action="store_true", help="rewrite the table from the .json beside --out; run nothing")
    ap.add_argument("--teacher-stop-on", choices=("accuracy", "loss"), help="as tinykd distill's (these rows)")
    ap.add_argument("--teacher-tolerance", type=float, help="as tinykd distill's (these rows)")
    args = ap.parse_args(argv)
    table = rows(args.data_dir)
    order = ORDER
    pick = [r for r in args.rows.split(",") if r] or order
    js = args.out.with_suffix(".json")
    results = json.loads(js.read_text()) if js.exists() else {}
    if args.md_only:
        write_md(results, order, args.out)
        print(args.out.read_text(), flush=True)
        return 0
    for key in pick:
        name, data, opts, command = table[key]
        topts = {k: v for k, v in (("stop_on", args.teacher_stop_on), ("tolerance", args.teacher_tolerance))
                 if v is not None}
        if topts:
            opts = {**opts, "teacher_options": topts}
            command += "".join(f" --teacher-{k.replace('_', '-')} {v:g}" if isinstance(v, float)
                               else f" --teacher-{k.replace('_', '-')} {v}" for k, v in topts.items())
        work = args.work_root / key
        t0 = time.time()
        print(f"== {key}: {command}", flush=True)
        res = distill(data, work / "student.npz", work=work, **opts)
        d = res.model.meta["distill"]
        # every stage's seconds as measured by the run that computed it (this one, or the one a cached stage is from)
        seconds = {**res.made_seconds, "total": round(sum(res.made_seconds.values()), 1)}
        results[key] = {"name": name, "command": command, "metrics": res.report["all rows"],
                        "seconds": seconds, "seconds_this_run": res.seconds, "teacher_dir": d["teacher"], "lam": d["lam"], "copies": d["copies"], "preset": d["preset"],
                        "validation": d["validation"], "teacher": teacher_facts(d["teacher"]), "ran": res.ran, "cached": res.cached,
                        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "wall": round(time.time() - t0, 1),
                        "cpu": cpu()}
        js.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
        write_md(results, order, args.out)
        print(args.out.read_text(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
