"""Early-stopping patience, replayed on recorded histories: the teacher's (1 against 2) and the students' (1–4 against 5).

    python benchmarks/patience.py [--work-root runs/distill ...]

Reads every history recorded in the ``tinykd distill`` work folders under the roots — each teacher's
(``ROW/teacher-KEY/teacher.json``: validation accuracy and loss per epoch) and each saved student's
(``ROW/students-KEY/student.npz`` and ``plain.npz``: validation loss per epoch) — and replays the early
stopping with less patience. Replaying is exact: patience only decides when training stops, so a run
with less patience is the same run cut short, and the weights of every epoch it reaches are those
recorded. The teacher's rule is :class:`teacher_export.finetune.EarlyStopping` with distill's options
(best validation accuracy, accuracies within 0.01 tied, the tied epoch of lowest validation loss kept);
the students' is :func:`tinykd.train.loop.train`'s (lowest validation loss; patience 5). A history counts
when the longer patience's replay stops inside it (or at the epoch limit); one that ends earlier (run
with the shorter patience, or under an older rule) says nothing and is listed as such. Identical
histories (a rerun with nothing changed) are counted once. Writes ``benchmarks/results/patience.md`` and ``.json`` (the
teachers' histories: epochs, validation accuracy and loss, seconds; no text).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "benchmarks"))
from distill_table import ORDER, RESULTS  # noqa: E402
from teacher_export.finetune import EarlyStopping  # noqa: E402 (torch-free)
from tinykd.distill.pipeline import TEACHER_DEFAULTS  # noqa: E402
from tinykd.scoring.student import load  # noqa: E402

STUDENT_PATIENCE = 5  # tinykd.fit's default, which distill keeps


def replay(history, patience, limit):
    """(kept epoch, epochs run, stopped) of distill's teacher early stopping over a recorded history."""
    es = EarlyStopping(TEACHER_DEFAULTS["stop_on"], TEACHER_DEFAULTS["tolerance"], patience)
    for r in history:
        es.update(r)
        if es.stop:
            return es.kept, len(es.history), True
    return es.kept, len(es.history), len(history) >= limit


def replay_student(history, patience):
    """(kept epoch, epochs run) of :func:`tinykd.train.loop.train`'s early stopping (lowest validation loss)."""
    best, kept = float("inf"), 0
    for r in history:
        if r["val_loss"] < best - 1e-6:
            best, kept = r["val_loss"], r["epoch"]
        if r["epoch"] - kept >= patience:
            return kept, r["epoch"]
    return kept, len(history)


def row_order(row):
    """The rows in ``distill_table``'s order; others after them, by name."""
    return (ORDER.index(row), "") if row in ORDER else (len(ORDER), row)


def histories(roots):
    """Distinct recorded teacher histories: {row: [record, ...]}."""
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


def student_histories(roots):
    """Distinct recorded student histories trained with patience 5 and validation rows, which stopped
    on patience or ran to their epoch limit: [(row, kind, preset, history), ...]."""
    seen, out = set(), []
    for root in roots:
        for f in sorted(Path(root).glob("*/students-*/*.npz")):
            m = load(str(f)).meta
            t, h = m.get("training") or {}, m.get("history") or []
            if (not h or h[0].get("val_loss") is None or t.get("patience") != STUDENT_PATIENCE or t.get("average")
                    or (t.get("stopped") != "patience" and len(h) < t.get("epochs", 0))):
                continue
            h = [{"epoch": r["epoch"], "val_loss": r["val_loss"], "seconds": r.get("seconds", 0.0)} for r in h]
            key = json.dumps([round(r["val_loss"], 6) for r in h])
            if key in seen:
                continue
            seen.add(key)
            out.append((f.parents[1].name, "KD" if t.get("lam") else "plain NN", m.get("preset"), h))
    return out


def teacher_lines(rows):
    lines = ["## The teacher: patience 1 against 2", "",
             "Every distinct teacher history (the teachers behind `distill_table.md`, its earlier versions and the "
             "recipe experiments; seed 0, at most 10 epochs, lr 8e-5), replayed through distill's early stopping "
             f"(validation accuracy, ties within {TEACHER_DEFAULTS['tolerance']:g} to the lower validation loss). "
             "Seconds: the training time the recorded run spent after the patience-1 stop (as measured then, other "
             "work sometimes sharing the cores).", "",
             "| row | teacher folder | fine-tuning | validation accuracy per epoch | patience 2: kept / run | "
             "patience 1: kept / run | same epoch | seconds saved |", "|---|---|---|---|---|---|---|---:|"]
    same = counted = saved = 0
    paths = set()  # the distinct paths of validation accuracy (a rerun often retraces one)
    for row in sorted(rows, key=row_order):
        for t in rows[row]:
            h, limit = t["history"], t["limit"] or TEACHER_DEFAULTS["epochs"]
            k2, n2, ok2 = replay(h, 2, limit)
            k1, n1, _ = replay(h, 1, limit)
            accs = " ".join(f"{r['val_acc']:.3f}" for r in h)
            fine = f"teacher_export {t['teacher_export']}, {t['optimizer']}"
            if not ok2:
                lines.append(f"| {row} | {t['folder']} | {fine} | {accs} | ends before patience 2 would stop (run with patience 1, or an older rule) | – | not counted | – |")
                continue
            counted += 1
            same += k1 == k2
            paths.add((row, tuple(round(r["val_acc"], 4) for r in h[:n2])))
            s = sum(r["seconds"] for r in h[n1:n2])
            saved += s
            t.update(p2=[k2, n2], p1=[k1, n1], seconds_saved=round(s, 1))
            lines.append(f"| {row} | {t['folder']} | {fine} | {accs} | {k2} / {n2} | {k1} / {n1} | "
                         f"{'yes' if k1 == k2 else '**no**'} | {s:.0f} |")
    lines += ["", f"Patience 1 keeps the epoch patience 2 keeps on **{same} of {counted}** histories ({len(paths)} "
              f"distinct paths of validation accuracy over {len({r for r, _ in paths})} data sets: the reruns of a row "
              f"mostly retrace its path), one epoch fewer each: {saved:.0f} s of training over them "
              f"({saved / max(counted, 1):.0f} s a teacher). Adopted: distill's teacher patience is 1."]
    return lines


def student_lines(students):
    lines = ["", f"## The students: patience 1–4 against {STUDENT_PATIENCE}", "",
             f"Every distinct saved student history trained with patience {STUDENT_PATIENCE} (the kept KD student and "
             "plain NN of every students stage in the work folders), replayed through `tinykd.train.loop`'s early "
             "stopping (lowest validation loss). Seconds: those the recorded runs spent after the shorter stop.", "",
             "| patience | same kept epoch | epochs saved | seconds saved |", "|---:|---|---:|---:|"]
    differ = {}
    for p in range(1, STUDENT_PATIENCE):
        same = ep = sec = 0
        for _, _, _, h in students:
            k5, n5 = replay_student(h, STUDENT_PATIENCE)
            k, n = replay_student(h, p)
            same += k == k5
            ep += n5 - n
            sec += sum(r["seconds"] for r in h[n:n5])
        differ[p] = len(students) - same
        lines.append(f"| {p} | {same} of {len(students)} | {ep} | {sec:.0f} |")
    lines += ["", "Where patience 3 keeps another epoch:", "",
              f"| row | student | preset | kept epoch, patience {STUDENT_PATIENCE} → 3 | validation loss |",
              "|---|---|---|---|---|"]
    for row, kind, preset, h in sorted(students, key=lambda s: row_order(s[0])):
        k5, _ = replay_student(h, STUDENT_PATIENCE)
        k3, _ = replay_student(h, 3)
        if k3 != k5:
            lines.append(f"| {row} | {kind} | {preset} | {k5} → {k3} | {h[k5 - 1]['val_loss']:.4f} → "
                         f"{h[k3 - 1]['val_loss']:.4f} |")
    p = STUDENT_PATIENCE - 1
    lines += ["", f"Not adopted: any shorter patience keeps an earlier epoch of higher validation loss for some "
              f"students (patience {p}: {differ[p]} of {len(students)}), so the students keep patience "
              f"{STUDENT_PATIENCE}."]
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work-root", type=Path, nargs="+", default=[ROOT / "runs" / "distill"])
    ap.add_argument("--out", type=Path, default=RESULTS / "patience.md")
    args = ap.parse_args(argv)
    rows = histories(args.work_root)
    students = student_histories(args.work_root)
    lines = ["# Early-stopping patience, replayed on recorded histories", "",
             "`python benchmarks/patience.py`: the histories recorded in the `tinykd distill` work folders of the "
             "benchmark rows. Replaying is exact: a run with less patience is the same run stopped sooner.", ""]
    lines += teacher_lines(rows) + student_lines(students)
    text = "\n".join(lines) + "\n"
    args.out.write_text(text, encoding="utf-8")
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
