"""Would the teacher's early stopping keep the same epoch with patience 1 as with patience 2?

    python benchmarks/teacher_patience.py [--work-root runs/distill ...]

Reads every teacher history recorded in the ``tinykd distill`` work folders under the roots
(``ROW/teacher-KEY/teacher.json``: each epoch's validation accuracy and loss), and replays
:class:`teacher_export.finetune.EarlyStopping` — distill's rule: best validation accuracy, accuracies
within 0.01 tied, the tied epoch of lowest validation loss kept — with patience 2 and with patience 1.
Replaying is exact: patience only decides when training stops, so a patience-1 run is the same run
cut short, and the weights of every epoch it reaches are those recorded. A history counts when the
patience-2 replay stops inside it (or at the epoch limit); one that ends earlier (it was recorded under
an older rule) says nothing and is listed as such. Identical histories (a rerun with nothing changed)
are counted once. Writes ``benchmarks/results/teacher_patience.md`` and ``.json`` (the histories:
epochs, validation accuracy and loss, seconds; no text).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from teacher_export.finetune import EarlyStopping  # noqa: E402 (torch-free)
from tinykd.distill import TEACHER_DEFAULTS  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def replay(history, patience, limit):
    """(kept epoch, epochs run, stopped) of distill's early stopping over a recorded history."""
    es = EarlyStopping(TEACHER_DEFAULTS["stop_on"], TEACHER_DEFAULTS["tolerance"], patience)
    for r in history:
        es.update(r)
        if es.stop:
            return es.kept, len(es.history), True
    return es.kept, len(es.history), len(history) >= limit


def histories(roots):
    """Distinct recorded histories: {row: [(teacher folder, sidecar), ...]}."""
    seen, out = set(), {}
    for root in roots:
        for f in sorted(Path(root).glob("*/teacher-*/teacher.json")):
            j = json.loads(f.read_text())
            h = [{k: r[k] for k in ("epoch", "val_acc", "val_loss", "seconds")} for r in j.get("history") or []]
            key = json.dumps(h)
            if not h or key in seen:
                continue
            seen.add(key)
            hp = j.get("hyperparameters", {})
            out.setdefault(f.parents[1].name, []).append({
                "folder": f.parent.name, "teacher_export": j.get("teacher_export"), "optimizer": hp.get("optimizer"),
                "recorded_patience": hp.get("patience"), "limit": hp.get("epochs"), "history": h})
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work-root", type=Path, nargs="+", default=[ROOT / "runs" / "distill"])
    ap.add_argument("--out", type=Path, default=RESULTS / "teacher_patience.md")
    args = ap.parse_args(argv)
    rows = histories(args.work_root)
    lines = ["# The teacher's early-stopping patience: 1 against 2, replayed on recorded histories", "",
             f"`python benchmarks/teacher_patience.py`: every distinct teacher history in the `tinykd distill` work "
             "folders of the benchmark rows (the teachers behind `distill_table.md`, its earlier versions and the "
             "recipe experiments; seed 0, at most 10 epochs, lr 8e-5), replayed through distill's early stopping "
             f"(validation accuracy, ties within {TEACHER_DEFAULTS['tolerance']:g} to the lower validation loss). "
             "Replaying is exact: a run with less patience is the same run stopped sooner. Seconds: the "
             "training time the recorded run spent after the patience-1 stop (as measured then, other work "
             "sometimes sharing the cores).", "",
             "| row | teacher folder | fine-tuning | validation accuracy per epoch | patience 2: kept / run | "
             "patience 1: kept / run | same epoch | seconds saved |", "|---|---|---|---|---|---|---|---:|"]
    same = counted = saved = 0
    paths = set()  # the distinct paths of validation accuracy (a rerun often retraces one)
    for row in sorted(rows, key=lambda r: (r.split("-")[0], int(r.split("-")[1]) if r.split("-")[-1].isdigit() else 0)):
        for t in rows[row]:
            h, limit = t["history"], t["limit"] or TEACHER_DEFAULTS["epochs"]
            k2, n2, ok2 = replay(h, 2, limit)
            k1, n1, _ = replay(h, 1, limit)
            accs = " ".join(f"{r['val_acc']:.3f}" for r in h)
            fine = f"teacher_export {t['teacher_export']}, {t['optimizer']}"
            if not ok2:
                lines.append(f"| {row} | {t['folder']} | {fine} | {accs} | ends before it stops | – | not counted | – |")
                continue
            counted += 1
            paths.add((row, tuple(round(r["val_acc"], 4) for r in h[:n2])))
            same += k1 == k2
            s = sum(r["seconds"] for r in h[n1:n2])
            saved += s
            t.update(p2=[k2, n2], p1=[k1, n1], seconds_saved=round(s, 1))
            lines.append(f"| {row} | {t['folder']} | {fine} | {accs} | {k2} / {n2} | {k1} / {n1} | "
                         f"{'yes' if k1 == k2 else '**no**'} | {s:.0f} |")
    lines += ["", f"Patience 1 keeps the epoch patience 2 keeps on **{same} of {counted}** histories ({len(paths)} "
              f"distinct paths of validation accuracy over {len({r for r, _ in paths})} data sets: the reruns of a row "
              f"mostly retrace its path), one epoch fewer each: {saved:.0f} s of training over them "
              f"({saved / max(counted, 1):.0f} s a teacher)."]
    text = "\n".join(lines) + "\n"
    args.out.write_text(text)
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n")
    print(text)


if __name__ == "__main__":
    main()
