"""Which of ``tinykd distill``'s students each way of choosing keeps, over student seeds.

    python benchmarks/student_choice.py [--rows asap-1,…] [--seeds 0,1,2]
    python benchmarks/student_choice.py --md-only      # rewrite the table from its .json; run nothing

Each (row, seed) is one ``distill`` run of ``distill_seeds.py``'s ``validation`` variant (the row's seed-0
teacher, copies and labels in its work folder): its students' stage trains every student as distill does
(both presets' KD students and plain NNs, bit for bit the same on the same kind of CPU), in a stage folder
of its own, and measures each on the validation and the test rows — accuracy, QWK, the mean cross-entropy of
its calibrated probabilities against the human scores (log-loss) and the mean KL(teacher ‖ student). Each way
of choosing then keeps one of them: ``accuracy`` (distill's rule: validation accuracy, then QWK), ``logloss``
and ``kl`` (the lower on the validation rows), and as diagnostics ``7t`` and ``bathtub`` always and ``oracle``
(the KD student better on the test rows: not a rule). The plain NN is a candidate only when the teacher is
below it on validation, as in distill. ``benchmarks/results/student_choice.json`` keeps each run;
``student_choice.md`` is rewritten from it. The rule: docs/decisions/student-choice.md.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from distill_seeds import VARIANTS, WHERE_ROWS, asked_rows, copies_max, seed_parser, summary, target_lines  # noqa: E402
from distill_table import ORDER, cpu  # noqa: E402
import tinykd.distill.pipeline as pipeline  # noqa: E402
import tinykd.distill.students as students  # noqa: E402
from tinykd.distill.students import choose  # noqa: E402
from tinykd.distill.pipeline import distill  # noqa: E402
from tinykd.distill.stages import stage_key  # noqa: E402
from tinykd.files.atomic import atomic_write_bytes  # noqa: E402
from tinykd.files.csvfiles import label_key  # noqa: E402
from tinykd.files.softlabels import read_soft_labels  # noqa: E402
from tinykd.quality.metrics import LOG_LOSS_FLOOR as EPS, log_loss, scoring_metrics  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
#: the ways of choosing compared; the first is distill's
RULES = ("accuracy", "logloss", "kl")
DIAGNOSTICS = ("7t", "bathtub", "oracle")
#: (decision rows, confirmation rows, the check): fixed before the runs (docs/decisions/student-choice.md)
GROUPS = (("decision", ("ela-7", "asap-2")), ("confirmation", ("ela-4", "asap-1", "asap-6")),
          ("the check over the eight `--where` rows", WHERE_ROWS))
#: the students' stage key gets this: its folder is not the default run's, which keeps only two students
MARK = "every student measured: benchmarks/student_choice.py"


def measure(chain, teacher_csv, student, role):
    """A student's metrics on the rows of ``role``, with its log-loss and KL(teacher ‖ student)."""
    rows_, idx = chain.rows, chain.rows.where(role)
    keys = [label_key(c) for c in rows_.classes]
    texts, labels, ctx = rows_.take(idx)
    own = [label_key(c) for c in student.classes]
    proba = np.asarray(student.predict_proba(texts, ctx), dtype=float)[:, [own.index(k) for k in keys]]
    y = np.array([keys.index(label_key(v)) for v in labels])
    q = read_soft_labels(teacher_csv, [rows_.ids[i] for i in idx], keys)
    m = scoring_metrics([keys[i] for i in y], [keys[i] for i in proba.argmax(1)], labels=keys)
    m["logloss"] = log_loss(proba, y)
    m["kl"] = float(np.mean(np.sum(q * (np.log(np.clip(q, EPS, 1.0)) - np.log(np.clip(proba, EPS, 1.0))), axis=1)))
    return m


def every_student(folder, chain, teacher_csv, *args):
    """distill's students' stage with every student measured: its result plus ``every`` and the teacher's test metrics."""
    caught, choose = {}, students.choose

    def recording(runs, presets, teacher_validation=None, on="fidelity"):
        caught["runs"] = runs
        return choose(runs, presets, teacher_validation, on)

    students.choose = recording
    try:
        result = _TRAIN(folder, chain, teacher_csv, *args)
    finally:
        students.choose = choose
    every = [{"preset": pr, "lam": lam, "val": {**measure(chain, teacher_csv, s, "val"), **{k: m[k] for k in
                                                                                           ("accuracy", "qwk")}},
              "test": measure(chain, teacher_csv, s, "test")} for (pr, lam), (s, m) in caught["runs"].items()]
    rows_, keys = chain.rows, [label_key(c) for c in chain.rows.classes]
    test = rows_.where("test")
    p = read_soft_labels(teacher_csv, [rows_.ids[i] for i in test], keys)
    teacher = scoring_metrics([label_key(v) for v in rows_.take(test)[1]], [keys[k] for k in p.argmax(1)], labels=keys)
    return {**result, "every": every, "presets_order": list(chain.presets), "teacher_test": teacher}


_TRAIN = pipeline.train_students
_KEY = pipeline._students_key
_FOLDER = {}


def _marked_key(cache, chain, l_key):
    key = stage_key(_KEY(cache, chain, l_key), MARK)
    _FOLDER["now"] = cache.folder("students", key)
    return key


def run_one(key, table, work_root, seed):
    """Row ``key``'s students of seed ``seed``, every one measured: one record per (row, seed)."""
    name, data, opts, command = table[key]
    pipeline.train_students, pipeline._students_key = every_student, _marked_key
    try:
        with copies_max("accuracy"):  # at most 16 copies, as when it ran
            distill(data, work_root / key / f"choice-{seed}.npz", work=work_root / key, student_seed=seed, seed=0,
                    verbose=False, teacher_aliases=None, **VARIANTS["accuracy"], **opts)  # as when it ran
    finally:
        pipeline.train_students, pipeline._students_key = _TRAIN, _KEY
    done = json.loads(Path(_FOLDER["now"], "done.json").read_text(encoding="utf-8"))
    return {"row": key, "name": name, "seed": seed, "cpu": cpu(), "command": command, "kept": done["preset"],
            "kept_lam": done["lam"], "teacher_val": done["teacher_validation"], "teacher": done["teacher_test"],
            "presets_order": done["presets_order"], "every": done["every"], "students_seconds": done["seconds"]}


def pick(run, how):
    """The student (an ``every`` entry) that the way of choosing ``how`` keeps in one run."""
    if how in DIAGNOSTICS:
        kd = [e for e in run["every"] if e["lam"]]
        return max(kd, key=lambda e: e["test"]["accuracy"]) if how == "oracle" else next(e for e in kd if e["preset"] == how)
    return kept(run, how)[0]


def kept(run, how):
    """``(student, plain NN)`` (``every`` entries) that the rule ``how`` keeps: distill's own
    :func:`~tinykd.distill.students.choose` (``kl``: its log-loss rule read on the KL column)."""
    by_pair = {(e["preset"], e["lam"]): e for e in run["every"]}
    column = "kl" if how == "kl" else "logloss"
    runs = {k: (None, {**e["val"], "logloss": e["val"][column]}) for k, e in by_pair.items()}
    best, plain = choose(runs, run["presets_order"], run["teacher_val"], on="accuracy" if how == "accuracy" else "validation")
    return by_pair[best], by_pair[plain]


def as_seed_runs(runs):
    """The runs as ``distill_seeds.py``'s records, one per (row, seed, way of choosing): its summary reads them."""
    out = []
    for r in runs:
        plain = kept(r, "accuracy")[1]
        for how in RULES + DIAGNOSTICS:
            e = pick(r, how)
            out.append({"row": r["row"], "name": r["name"], "seed": r["seed"], "choose_on": how, "student": e["test"],
                        "teacher": r["teacher"], "plain": plain["test"], "preset": e["preset"], "lam": e["lam"],
                        "students_seconds": r["students_seconds"], "cpu": r["cpu"]})
    return out


def verdict(s, group, how, base="accuracy"):
    """The rule of docs/decisions/student-choice.md on the rows ``group``: (text, passed or None)."""
    both = [r for r in group if (r, how) in s and (r, base) in s and s[(r, how)]["n"] >= 3]
    if not both:
        return "no row with three seeds", None
    k = len(both)
    da = sum(s[(r, how)]["acc"] - s[(r, base)]["acc"] for r in both) / k
    dq = sum(s[(r, how)]["qwk"] - s[(r, base)]["qwk"] for r in both) / k
    sh, sb = (sum(s[(r, h)]["spread"] for r in both) / k for h in (how, base))
    ok = da >= 0 and dq >= 0 and sh <= sb + 0.005
    return (f"{k} row(s) ({', '.join(both)}): {how} − {base}, mean over rows of the mean over seeds: accuracy "
            f"{100 * da:+.2f} points, QWK {dq:+.4f}; mean seed spread {100 * sh:.1f} points ({how}) vs {100 * sb:.1f} "
            f"→ {'passes' if ok else 'fails'}"), ok


def write_md(runs, path, seeds_json):
    s = summary(as_seed_runs(runs))
    cpus = sorted({r["cpu"] for r in runs})
    lines = ["# Which of distill's students is kept: validation accuracy or a continuous score", "",
             f"Generated by `python benchmarks/student_choice.py` ({' / '.join(cpus)}, 2 cores, no GPU; "
             "docs/decisions/student-choice.md). Every student of each (row, student seed) — `bathtub` and `7t`, KD "
             "(λ = 4) and plain — trained as `tinykd distill` trains them (the row's seed-0 teacher, copies and labels) "
             "and measured on the validation and the test rows; each way of choosing keeps one: `accuracy` (distill's: "
             "validation accuracy, then QWK), `logloss` (the lower cross-entropy of the calibrated probabilities against "
             "the human scores of the validation rows), `kl` (the lower KL(teacher ‖ student) on the validation rows); "
             "diagnostics, not rules: `7t`, `bathtub` (that preset's KD student always) and `oracle` (the KD student "
             "better on the test rows). Test rows; mean over seeds and the worst seed; spread = max − min test "
             "accuracy over the seeds; Δ = student − teacher.", "",
             "| data set | choice | seeds | student acc / QWK (mean) | worst acc / QWK | spread (points) "
             "| teacher acc / QWK | Δ acc | Δ QWK | plain NN acc | kept (by seed) |",
             "|---|---|---:|---|---|---:|---|---:|---:|---:|---|"]
    for row in ORDER:
        for how in RULES + DIAGNOSTICS:
            v = s.get((row, how))
            if v:
                lines.append(f"| {v['name']} | {how} | {v['n']} | {v['acc']:.3f} / {v['qwk']:.3f} | {v['worst_acc']:.3f} / "
                             f"{v['worst_qwk']:.3f} | {100 * v['spread']:.1f} | {v['t_acc']:.3f} / {v['t_qwk']:.3f} | "
                             f"{v['acc'] - v['t_acc']:+.3f} | {v['qwk'] - v['t_qwk']:+.3f} | {v['plain']:.3f} | "
                             f"{v['presets']} |")
    lines += ["", "The rule (fixed before the runs): against `accuracy`, a way of choosing passes a group when its mean "
              "test accuracy and mean test QWK are not lower and its mean seed spread is at most 0.5 points higher; "
              "adopted only when it passes the decision rows, the confirmation rows and the eight `--where` rows.", ""]
    for how in RULES[1:]:
        lines += [f"- `{how}`, {name}: {verdict(s, group, how)[0]}" for name, group in GROUPS]
    lines += same_as_seeds(runs, seeds_json)
    for how in RULES + ("oracle",):
        lines += target_lines(s, how)
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode("utf-8"))


def same_as_seeds(runs, seeds_json):
    """Whether ``accuracy`` and ``logloss`` keep the students of ``distill_seeds.py``'s ``accuracy`` and ``validation``
    runs (distill's choice before and after docs/decisions/student-choice.md; same CPU)."""
    if not seeds_json.exists():
        return []
    seeds = json.loads(seeds_json.read_text(encoding="utf-8"))
    lines = []
    for how, variant in (("accuracy", "accuracy"), ("logloss", "validation")):
        old = {(r["row"], r["seed"]): r for r in seeds if r["choose_on"] == variant and not r.get("teacher_seed")}
        diff, same = [], 0
        for r in runs:
            o, e = old.get((r["row"], r["seed"])), pick(r, how)
            if o is None or o["cpu"] != r["cpu"]:
                continue
            if all(abs(o["student"][k] - e["test"][k]) < 1e-9 for k in ("accuracy", "qwk")):
                same += 1
            else:
                diff.append(f"{r['row']} seed {r['seed']}")
        lines += ["", f"`{how}` keeps the same student as `distill_seeds.md`'s `{variant}` run (same test accuracy and "
                  f"QWK, same CPU) in {same} of {same + len(diff)} runs" + (f"; not in {', '.join(diff)}" if diff else "")
                  + "."]
    return lines


def main(argv=None):
    ap = seed_parser(__doc__.splitlines()[0], RESULTS / "student_choice.md")
    args = ap.parse_args(argv)
    table, pick_rows = asked_rows(ap, args)
    js, seeds_json = args.out.with_suffix(".json"), RESULTS / "distill_seeds.json"
    runs = json.loads(js.read_text(encoding="utf-8")) if js.exists() else []
    for key in () if args.md_only else pick_rows:
        for seed in map(int, args.seeds.split(",")):
            r = run_one(key, table, args.work_root, seed)
            print(f"{key} seed {seed}: " + ", ".join(f"{how} {pick(r, how)['test']['accuracy']:.3f}"
                                                     for how in RULES + DIAGNOSTICS), flush=True)
            runs = [x for x in runs if (x["row"], x["seed"]) != (key, seed)] + [r]
            atomic_write_bytes(js, (json.dumps(runs, indent=1) + "\n").encode("utf-8"))
            write_md(runs, args.out, seeds_json)
    write_md(runs, args.out, seeds_json)
    print(args.out.read_text(encoding="utf-8"), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
