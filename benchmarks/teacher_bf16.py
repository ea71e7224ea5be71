"""The teacher's bfloat16 against float32 on `tinykd distill` work folders: how closely its labels follow
float32's, and the seconds it saves (issue 31; teacher_export/precision.py, docs/teacher.md#bfloat16).

    python benchmarks/teacher_bf16.py [--rows ela-7,asap-1] [--work-root runs/distill] [--repeats 1]
    python benchmarks/teacher_bf16.py --work DIR --limit 200 --out /tmp/bf16.md     # a quick run (--quick)

For each work folder (``--work-root/ROW``; ``--work DIR``: any folder), every finished labels stage
(``labels-*/`` holding ``done.json``, ``job.json``, ``labels.csv`` and ``labels.json``; a work folder whose
options changed keeps several, and each is a table row) is relabelled twice in this run, by the stage's own
job file with ``bf16`` off and on, through ``tinykd-teacher job``'s function (``teacher_export.cli.main``,
in this process; its worker processes from 10,000 answers, as under ``tinykd distill``), into a temporary
folder: the stage's files are only read. ``--repeats R`` runs R pairs, alternating which goes first, and
keeps each precision's fastest; ``--limit N`` relabels only the first N answers of the stage's copies.

Compared: the share of answers whose most probable class is the same (bfloat16 vs this run's float32, and
vs the stage's own float32 ``labels.csv``), mean and max |Δp| over every (answer, class), and as a sanity
line max |Δp| between the two float32 labellings (the stage's and this run's: 0 up to the file's digits).
Also one training step of the stage's teacher (``teacher_export.finetune``'s own: forward, backward,
gradient clipping, AdamW) on the first 16 training answers of the work folder's rows (``--batch``), the
median of ``--steps`` (5) in float32 and under bfloat16 autocast, interleaved, after one warm-up each.

Writes ``--out`` (default benchmarks/results/teacher_bf16.md) and the .json beside it, and prints the
table, with the machine (CPU, cores, its bfloat16 flags, torch). Where bfloat16 is not supported (neither
AVX-512 BF16 / AMX BF16 nor a GPU with bfloat16) the table says so and only float32 runs.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import glob
import io
import json
import os
import platform
import shlex
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

from tinykd.files.softlabels import read_soft_label_table, read_soft_labels  # noqa: E402

DEFAULT_ROWS = "ela-7"
#: the CPU flags (/proc/cpuinfo) that run bfloat16 natively, and AMX's tiles
FLAGS = ("avx512_bf16", "amx_bf16", "amx_tile")


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default=DEFAULT_ROWS, help="work folders under --work-root, comma-separated")
    ap.add_argument("--work-root", default=os.path.join("runs", "distill"))
    ap.add_argument("--work", action="append", default=[], metavar="DIR",
                    help="a work folder by its path (repeatable; instead of --rows)")
    ap.add_argument("--limit", type=int, default=None, metavar="N", help="relabel only the first N copies")
    ap.add_argument("--quick", action="store_true", help="a smoke run: --limit 200 (unless given), 3 steps")
    ap.add_argument("--repeats", type=int, default=1, help="pairs of labelling runs (alternating order)")
    ap.add_argument("--steps", type=int, default=5, help="timed training steps per precision (the median)")
    ap.add_argument("--batch", type=int, default=16, help="training answers in the timed step")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "teacher_bf16.md"))
    args = ap.parse_args(argv)
    if args.quick:
        args.limit = args.limit or 200
        args.steps = min(args.steps, 3)
    if args.repeats < 1 or args.steps < 1 or args.batch < 1 or (args.limit is not None and args.limit < 1):
        ap.error("--repeats, --steps, --batch and --limit must be at least 1")
    return args


def work_folders(args):
    """``[(name, folder)]``: ``--work`` as given, else ``--rows`` under ``--work-root``."""
    if args.work:
        return [(os.path.basename(os.path.normpath(w)), w) for w in args.work]
    return [(r, os.path.join(args.work_root, r)) for r in args.rows.split(",") if r]


def labels_stages(work):
    """The finished labels stages of the work folder ``work``, sorted by name."""
    need = ("done.json", "job.json", "labels.csv", "labels.json")
    return [d for d in sorted(glob.glob(os.path.join(work, "labels-*")))
            if all(os.path.isfile(os.path.join(d, f)) for f in need)]


def machine():
    """The CPU (model, cores, bfloat16 flags), the GPU if any, torch, the load average."""
    import torch

    cpu, flags = platform.processor(), set()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name") and cpu == platform.processor():
                    cpu = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags |= set(line.split(":", 1)[1].split())
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu or "unknown CPU", "cores": os.cpu_count(), "flags": {k: k in flags for k in FLAGS},
            "gpu": gpu, "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "load": list(os.getloadavg())}


def support(job):
    """``(supported, what was found)``: bfloat16 on the device the job runs on (teacher_export's check)."""
    from teacher_export import precision
    from teacher_export.finetune import pick_device

    return precision.bf16_support(pick_device(job.get("device")))


def limited_copies(job, tmp, limit):
    """The job's data file, or its first ``limit`` rows written into ``tmp``."""
    if not limit:
        return job["data"]
    path = os.path.join(tmp, os.path.basename(job["data"]))
    with open(job["data"], encoding="utf-8", newline="") as f, open(path, "w", encoding="utf-8", newline="") as g:
        reader, writer = csv.reader(f), csv.writer(g)
        writer.writerow(next(reader))
        for k, row in enumerate(reader):
            if k >= limit:
                break
            writer.writerow(row)
    return path


def run_job(job, folder):
    """Run ``job`` as ``tinykd-teacher job FILE`` does (its function, in this process), the output in
    ``folder``: ``(wall seconds, the sidecar)``; a failure raises RuntimeError."""
    from teacher_export import cli

    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "job.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump({**job, "out": folder}, f, indent=1)
    t = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # its JSON result line; the progress goes to stderr
        rc = cli.main(["job", path])
    seconds = time.perf_counter() - t
    if rc != 0:
        raise RuntimeError(f"tinykd-teacher job {path} failed (exit {rc}; its error is above)")
    with open(os.path.join(folder, f"{job.get('name') or 'labels'}.json"), encoding="utf-8") as f:
        return seconds, json.load(f)


def relabel(stage, tmp, limit, repeats, bf16_ok):
    """Relabel the stage's copies in float32 and (``bf16_ok``) bfloat16, ``repeats`` pairs in alternating
    order: ``{precision: {"seconds": fastest, "all_seconds", "csv", "sidecar"}}``."""
    with open(os.path.join(stage, "job.json"), encoding="utf-8") as f:
        job = json.load(f)
    job = {**job, "data": limited_copies(job, tmp, limit), "name": job.get("name") or "labels"}
    kinds = ["float32", "bfloat16"] if bf16_ok else ["float32"]
    runs = {k: {"all_seconds": []} for k in kinds}
    for r in range(repeats):
        for kind in (kinds if r % 2 == 0 else kinds[::-1]):
            folder = os.path.join(tmp, f"{kind}-{r}")
            seconds, sidecar = run_job({**job, "bf16": "on" if kind == "bfloat16" else "off"}, folder)
            print(f"  {os.path.basename(stage)} {kind} run {r + 1}: {seconds:.1f} s", flush=True)
            runs[kind]["all_seconds"].append(round(seconds, 2))
            runs[kind].update(csv=os.path.join(folder, job["name"] + ".csv"), sidecar=sidecar)
    for kind, run in runs.items():
        run["seconds"] = min(run["all_seconds"])
        if run["sidecar"].get("precision", "float32") != kind:
            raise RuntimeError(f"the {kind} run wrote precision {run['sidecar'].get('precision')}")
    return job, runs


def compare(pa, pb):
    """Argmax agreement, mean and max |Δp| of two probability tables (rows the same answers)."""
    d = np.abs(pa.astype(np.float64) - pb.astype(np.float64))
    return {"agreement": float(np.mean(pa.argmax(1) == pb.argmax(1))), "mean_dp": float(d.mean()),
            "max_dp": float(d.max()), "n": int(len(pa))}


def agreement(stage, runs):
    """The comparisons: bfloat16 vs this run's float32 and vs the stage's, the two float32s."""
    ids, classes, p32 = read_soft_label_table(runs["float32"]["csv"])
    stage32 = read_soft_labels(os.path.join(stage, "labels.csv"), ids, classes)
    out = {"n": len(ids), "classes": list(classes), "float32_vs_stage": compare(p32, stage32)}
    if "bfloat16" in runs:
        p16 = read_soft_labels(runs["bfloat16"]["csv"], ids, classes)
        out["bf16_vs_float32"] = compare(p16, p32)
        out["bf16_vs_stage"] = compare(p16, stage32)
    return out


def training_rows(teacher, n):
    """The first ``n`` training answers of the teacher stage's rows file (its job.json's ``data``, with its
    ``where``): ``(texts, contexts or None, labels, freeze_embeddings)``; none found: None."""
    path = os.path.join(os.path.dirname(os.path.normpath(teacher)), "job.json")
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        job = json.load(f)
    where = [w.split("=", 1) for w in job.get("where") or []]
    text, context, label = job.get("text_col", "text"), job.get("context_col"), job.get("label_col", "label")
    split, train = job.get("split_col"), job.get("train_split", "train")
    picked = []
    with open(job["data"], encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            if all(row.get(c) == v for c, v in where) and (not split or row.get(split) == train):
                picked.append(row)
                if len(picked) == n:
                    break
    if not picked:
        return None
    return ([r[text] for r in picked], [r[context] or "" for r in picked] if context else None,
            [r.get(label) for r in picked], bool(job.get("freeze_embeddings")))


def step_ms(teacher, rows, steps, bf16_ok, device):
    """Median ms of one training step (``teacher_export.finetune._train_epoch`` on one batch: forward,
    loss, backward, clipping, AdamW; the embeddings frozen as the teacher's fit job froze them) of the
    teacher folder's model on ``rows``, per precision; the
    precisions interleaved after a warm-up step each (each its own copy of the model)."""
    import torch

    from teacher_export.finetune import _optimizer, _Step, _train_epoch, encode
    from teacher_export.model import load_classifier, load_tokenizer

    with open(os.path.join(teacher, "teacher.json"), encoding="utf-8") as f:
        tm = json.load(f)
    texts, contexts, labels, freeze = rows
    tok = load_tokenizer(teacher)
    enc = encode(tok, texts, contexts, tm.get("max_length", 128))
    index = {str(c): i for i, c in enumerate(tm["classes"])}
    y = torch.tensor([index.get(str(v), 0) for v in labels])  # the step's time does not depend on the labels
    idx = np.arange(len(texts))
    kinds = {"float32": False, **({"bfloat16": True} if bf16_ok else {})}
    made = {}
    for kind, on in kinds.items():
        model = load_classifier(teacher).to(device)
        opt, sched = _optimizer(model, 1e-5, 0.01, 0, 10 * (steps + 1), freeze)
        made[kind] = _Step(model, opt, sched, torch.nn.CrossEntropyLoss(), enc, tok.pad_token_id or 0, device, on)

    def one(kind):
        t = time.perf_counter()
        _train_epoch(made[kind], y, idx, len(idx), np.random.default_rng(0), 0, "")
        return 1000 * (time.perf_counter() - t)

    for kind in kinds:
        one(kind)  # warm-up
    times = {k: [] for k in kinds}
    for s in range(steps):
        for kind in (list(kinds) if s % 2 == 0 else list(kinds)[::-1]):
            times[kind].append(one(kind))
    lengths = [len(ids) for ids in enc["input_ids"]]
    return {"answers": len(texts), "word_pieces": int(sum(lengths)), "padded_length": max(lengths),
            **{f"{k}_ms": statistics.median(v) for k, v in times.items()},
            **{f"{k}_all_ms": [round(t, 1) for t in v] for k, v in times.items()}}


def measure_stage(name, stage, args, tmp):
    """One labels stage: its relabelling both ways, the comparisons and the teacher's step times."""
    import torch

    from teacher_export.finetune import pick_device

    with open(os.path.join(stage, "job.json"), encoding="utf-8") as f:
        job = json.load(f)
    ok, found = support(job)
    os.makedirs(tmp, exist_ok=True)
    res = {"row": name, "stage": os.path.basename(stage), "teacher": job["teacher"], "bf16_supported": ok,
           "bf16_hardware": found, "limit": args.limit}
    print(f"{name} {res['stage']}: bfloat16 {'supported' if ok else 'NOT supported'} ({found})", flush=True)
    if job.get("threads"):
        torch.set_num_threads(int(job["threads"]))  # as the job runs
    rows = training_rows(job["teacher"], args.batch)
    res["step"] = step_ms(job["teacher"], rows, args.steps, ok, pick_device(job.get("device"))) if rows else None
    _, runs = relabel(stage, tmp, args.limit, args.repeats, ok)
    res.update(agreement(stage, runs))
    res["seconds"] = {k: r["seconds"] for k, r in runs.items()}
    res["all_seconds"] = {k: r["all_seconds"] for k, r in runs.items()}
    res["sidecar_seconds"] = {k: r["sidecar"].get("wall_seconds") for k, r in runs.items()}
    res["workers"] = {k: r["sidecar"].get("workers") for k, r in runs.items()}
    with open(os.path.join(stage, "labels.json"), encoding="utf-8") as f:
        res["stage_seconds"] = json.load(f).get("wall_seconds")  # the stage's own run (all its copies)
    if ok:
        res["speedup"] = res["seconds"]["float32"] / res["seconds"]["bfloat16"]
    return res


def _f(v, fmt):
    return "—" if v is None else format(v, fmt)


def _s(v):
    """Seconds: one decimal, two below 10 s (a --limit run)."""
    return "—" if v is None else f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def table_line(r):
    """The table's line of one labels stage."""
    if "n" not in r:
        return f"| {r['row']} | {r.get('note', '—')} |" + " — |" * 9
    b, st, sec = r.get("bf16_vs_float32"), r.get("step") or {}, r["seconds"]
    bs = r.get("bf16_vs_stage")
    agree = f"{b['agreement']:.2%} / {bs['agreement']:.2%}" if b else "not supported"
    step = (st["float32_ms"] / st["bfloat16_ms"]) if "bfloat16_ms" in st else None
    return (f"| {r['row']} `{r['stage']}` | {r['n']:,} | {agree} | {_f(b and b['mean_dp'], '.2e')} | "
            f"{_f(b and b['max_dp'], '.2e')} | {_s(sec['float32'])} | {_s(sec.get('bfloat16'))} | "
            f"{_f(r.get('speedup'), '.2f')}{'×' if r.get('speedup') else ''} | {_f(st.get('float32_ms'), '.0f')} | "
            f"{_f(st.get('bfloat16_ms'), '.0f')} | {_f(step, '.2f')}{'×' if step else ''} |")


def render(results, mach, command, date):
    """The Markdown page."""
    flags = ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in mach["flags"].items())
    gpu = f"GPU {mach['gpu']}" if mach["gpu"] else "no GPU"
    lines = ["# The teacher in bfloat16 against float32", "",
             f"Written by `{command}` on {date}: {mach['cpu']}, {mach['cores']} cores ({flags}), {gpu}; torch "
             f"{mach['torch']} ({mach['torch_threads']} threads), Python {mach['python']}; load average "
             f"{mach['load'][0]:.1f} at the start, {mach['load_end'][0]:.1f} at the end.", "",
             "Each finished labels stage of the work folder relabelled by its own job file in this run, "
             "`bf16` off and on (the fastest of each, `--repeats` pairs in alternating order); agreement: "
             "answers whose most probable class is the same in bfloat16 as in this run's float32 / as in the "
             "stage's own `labels.csv`; |Δp| over every (answer, class), bfloat16 vs this run's float32. Step: "
             "one training step of the stage's teacher on the work folder's first training answers (median "
             "of the interleaved steps, ms).", "",
             "| row, labels stage | answers | argmax agreement (vs float32 / vs stage) | mean \\|Δp\\| | "
             "max \\|Δp\\| | float32 s | bfloat16 s | speed-up | step float32 ms | step bfloat16 ms | "
             "step speed-up |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [table_line(r) for r in results]
    lines.append("")
    for r in results:
        if "n" not in r:
            continue
        s, st = r["float32_vs_stage"], r.get("step")
        lines.append(f"* {r['row']} `{r['stage']}`: float32 rerun vs the stage's labels.csv: max |Δp| "
                     f"{s['max_dp']:.1e}, argmax agreement {s['agreement']:.2%}"
                     + (f"; first {r['limit']:,} copies only" if r["limit"] else "")
                     + (f"; step batch {st['answers']} answers, {st['word_pieces']:,} word pieces (padded to "
                        f"{st['padded_length']})" if st else "; no training rows found: no step timed")
                     + ("" if r["bf16_supported"] else f"; **bfloat16 not supported here** ({r['bf16_hardware']})")
                     + ".")
    return "\n".join(lines) + "\n"


def main(argv=None):
    args = parse_args(argv)
    argv = sys.argv[1:] if argv is None else list(argv)
    command = "python benchmarks/teacher_bf16.py" + ("" if not argv else " " + shlex.join(argv))
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    mach, results = machine(), []
    tmp = tempfile.mkdtemp(prefix="teacher-bf16-")  # never inside the work folders
    try:
        for name, work in work_folders(args):
            stages = labels_stages(work)
            if not stages:
                results.append({"row": name, "note": f"no finished labels stage in {work}"})
            for k, stage in enumerate(stages):
                results.append(measure_stage(name, stage, args, os.path.join(tmp, f"{name}-{k}")))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    mach["load_end"] = list(os.getloadavg())
    page = render(results, mach, command, date)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(page)
    with open(os.path.splitext(args.out)[0] + ".json", "w", encoding="utf-8") as f:
        json.dump({"date": date, "command": command, "machine": mach, "results": results}, f, indent=1)
    print(page)
    return results


if __name__ == "__main__":
    main()
