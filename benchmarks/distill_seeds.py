"""``tinykd distill``'s students over several seeds, the teacher fixed: what each way of choosing them gives.

    python benchmarks/distill_seeds.py [--rows asap-1,…] [--seeds 0,1,2] [--choose-on fidelity,validation]
    python benchmarks/distill_seeds.py --md-only      # rewrite the table from its .json; run nothing

Each row is a row of ``benchmarks/distill_table.py`` and uses its work folder (``--work-root``/ROW): the
teacher, the copies and their labels are those of its seed-0 run (made first when missing); only the
students' seed (``distill(student_seed=…)``) and what they stop on and are chosen by
(``distill(choose_on=…)``: docs/decisions/student-fidelity.md) change. Each (row, seed, choice) is one
``distill`` run whose students' stage is cached in the work folder, so a rerun costs nothing.

``benchmarks/results/distill_seeds.json`` keeps each run as it finishes; ``distill_seeds.md`` is rewritten
from it: per row and way of choosing, the kept student's test accuracy / QWK as the mean over seeds and
the worst seed, the seed spread (max − min test accuracy), the gap to the teacher and to the plain NN,
and the rule of docs/decisions/student-fidelity.md applied to the decision rows and to the confirmation
rows, each on its own.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import json
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from distill_table import ORDER, cpu, rows, student  # noqa: E402
from tinykd.distill.job import STUDENT_OPTIONS  # noqa: E402
from tinykd.distill.pipeline import distill  # noqa: E402
from tinykd.files.atomic import atomic_write_bytes  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
#: the network of a `pair` member: `bathtub` with half its embedding, so that two stay within the paper's 0.1M
HALF = {"embed_dim": 32}
#: the second member's students' seed: the first's + this
PAIR_SEED = 1000
#: variants of today's default (32 copies, unseen aliases) that change only the students' options: every student's
#: dropout (after the pooling and the hidden dense layer) 0.1 or 0.3, not the presets' 0.2 (docs/decisions/
#: student-dropout.md); its Adam learning rate halved or doubled, or its batch doubled or halved (student-step.md)
TODAY_OPTIONS = {"dropout-0.1": dict(config={"dropout": 0.1}), "dropout-0.3": dict(config={"dropout": 0.3}),
                 "lr-5e-4": dict(lr=5e-4), "lr-2e-3": dict(lr=2e-3), "batch-64": dict(batch_size=64),
                 "batch-16": dict(batch_size=16)}
#: the ways of stopping and choosing the students compared (distill's ``choose_on`` / ``stop_on``)
#: every variant before "validation" chose on validation accuracy (the default until docs/decisions/student-choice.md)
#: every variant but "validation" runs with no aliases (:func:`distill_run`), the default until student-aliases.md
VARIANTS = {"validation": dict(choose_on="validation"),
            "no-aliases": dict(choose_on="validation"),  # the default before docs/decisions/student-aliases.md
            "copies-16": dict(choose_on="validation"),
            "accuracy": dict(choose_on="accuracy"),
            "fidelity": dict(choose_on="fidelity"),
            "fidelity-stop": dict(choose_on="accuracy", stop_on="fidelity"),
            "unlabeled": dict(choose_on="accuracy"),  # + the row's unlabeled file (:func:`unlabeled_file`)
            "ensemble": dict(choose_on="accuracy", teacher_options={"members": 3}),  # --teacher-members 3
            **{f"ordinal-{m:g}": dict(choose_on="accuracy", options=STUDENT_OPTIONS.replace(ordinal=float(m)))
               for m in (4, 16)},  # the students' expected-score term, μ (docs/decisions/student-ordinal.md)
            "lam-16": dict(choose_on="accuracy", lams=(16.0,)),  # docs/decisions/student-lambda-average.md
            "average-3": dict(choose_on="accuracy", options=STUDENT_OPTIONS.replace(average=3.0)),
            "long-2": dict(choose_on="accuracy", options=STUDENT_OPTIONS.replace(long_weight=2)),
            "vectors": dict(choose_on="accuracy", teacher_vectors=True),  # docs/decisions/student-teacher-vectors.md
            # the mpnet teacher teacher_table.py fine-tuned (option mpnet-bf16), labelling under bfloat16: no rule
            "mpnet": dict(choose_on="accuracy", teacher_options={"bf16": "on"}),
            # the teacher of highest validation QWK of three seeds (docs/decisions/teacher-pick.md): no students' rule
            "pick": dict(choose_on="accuracy", teacher_options={"members": 3, "combine": "pick"}),
            # the row's test answers, unscored, as transfer data (:func:`scored_file`): reported apart, no rule
            "scored": dict(choose_on="accuracy"),
            # --other-items: the other items' training answers join the transfer set (docs/decisions/transfer-data.md)
            "others": dict(choose_on="accuracy"),
            # the copies made by word drops and swaps alone (docs/decisions/copies-span.md)
            "no-span": dict(choose_on="accuracy", augment_options={"p_span": 0.0}),
            "7t": dict(choose_on="accuracy", preset="7t"),  # one preset, no choice (docs/decisions/student-preset.md)
            # KD students of λ 4 and 16, the one of lower validation log-loss kept (docs/decisions/student-lambda-choice.md)
            "lams-4-16": dict(choose_on="validation", lams=(4.0, 16.0)),
            # the transfer rows weighted to the teacher's class mix on the answers (docs/decisions/transfer-balance.md)
            "balanced": dict(choose_on="validation", options=STUDENT_OPTIONS.replace(balance_transfer=True)),
            # 32 copies per training answer instead of 16 (docs/decisions/transfer-copies-32.md)
            "copies-32": dict(choose_on="validation", copies=32),
            # decision offsets for the plain NNs only (docs/decisions/student-offsets.md)
            "kd-no-offsets": dict(choose_on="validation", options=STUDENT_OPTIONS.replace(offsets="plain")),
            # a quarter of the copies spliced with another answer's end (docs/decisions/transfer-splice.md)
            "splice": dict(choose_on="validation", augment_options={"p_splice": 0.25}),
            # every student's offsets the mean over 32 bootstrap fits (docs/decisions/offsets-bagged.md)
            "offsets-bagged": dict(choose_on="validation", options=STUDENT_OPTIONS.replace(offsets="bagged")),
            # the learning rate halved after each 2 epochs without a better validation loss (student-lr-plateau.md)
            "lr-plateau": dict(choose_on="validation", options=STUDENT_OPTIONS.replace(lr_plateau=2)),
            # patience 10 epochs and at most 80, not 5 and 40 (docs/decisions/student-patience.md)
            "patience-10": dict(choose_on="validation", options=STUDENT_OPTIONS.replace(patience=10, epochs=80)),
            # the item's unscored answers as transfer data under today's default (docs/decisions/transfer-data.md)
            "unlabeled-32": dict(choose_on="validation"),
            # "auto" trains wide and 7t, wide in bathtub's place (docs/decisions/student-wide.md; :data:`AUTO`)
            "wide": dict(choose_on="validation"),
            # "auto" trains bathtub and wide, wide in 7t's place (docs/decisions/student-wide.md; :data:`AUTO`)
            "bathtub-wide": dict(choose_on="validation"),
            # one preset, `bathtub` with a 32-wide embedding (49.7k parameters): a member of `pair`, alone; no rule
            "bathtub-32": dict(choose_on="validation", preset="bathtub", options=STUDENT_OPTIONS.replace(config=HALF)),
            # two `bathtub-32` runs (seeds S and S + PAIR_SEED), their students' logits averaged; no distill run of
            # its own (:func:`pair_run`; docs/decisions/student-pair.md)
            "pair": {},
            # `bathtub` with a BiLSTM of 128 units each way: 266k parameters, beyond the paper's 0.1M; how much of a
            # row's gap is the budget's (a diagnostic: no rule, never a default)
            "bathtub-128": dict(choose_on="validation", preset="bathtub",
                                options=STUDENT_OPTIONS.replace(config={"units": 128})),
            # the KD students read a word outside their vocabulary as the nearest inside it by the teacher's word
            # vectors (docs/decisions/student-aliases.md)
            "aliases": dict(choose_on="validation", teacher_aliases="train"),
            # the kept KD student, trained as today, reads the words no training answer or copy holds as the nearest
            # of its vocabulary by the teacher's word vectors (docs/decisions/student-aliases.md)
            "unseen": dict(choose_on="validation", teacher_aliases="unseen"),
            # the kept KD student, trained as today, reads every word outside its vocabulary (read in training or
            # not) as the nearest of it by the teacher's word vectors (docs/decisions/student-aliases.md)
            "outside": dict(choose_on="validation", teacher_aliases="outside"),
            # today's default with other students' options (:data:`TODAY_OPTIONS`)
            **{how: dict(choose_on="validation", teacher_aliases="unseen", options=STUDENT_OPTIONS.replace(**kw))
               for how, kw in TODAY_OPTIONS.items()}}
#: the variants whose "auto" trains other presets than distill's (:data:`tinykd.distill.job.AUTO_PRESETS`)
AUTO = {"wide": ("wide", "7t"), "bathtub-wide": ("bathtub", "wide")}
#: distill's default (its targets are the issue's)
DEFAULT = "validation"
#: the variants whose rules were fixed against the default of 32 copies without aliases (``no-aliases``)
SINCE_32 = ("kd-no-offsets", "splice", "offsets-bagged", "lr-plateau", "patience-10", "unlabeled-32", "wide",
            "bathtub-wide", "pair", "aliases", "unseen")
#: the variants whose rules were fixed against today's default (:data:`DEFAULT`: 32 copies, unseen aliases)
SINCE_ALIASES = ("outside", *TODAY_OPTIONS)
#: the variants run with distill's copies of today; every other one was run, and runs, with at most 16 copies per
#: answer (:func:`variant_defaults`), the default until docs/decisions/transfer-copies-32.md: ``copies-16`` is that default
AT_32 = ("validation", "no-aliases", "copies-32", "bathtub-32", "bathtub-128", *SINCE_32, *SINCE_ALIASES)
#: what every rule of :data:`RULES` was fixed against: the default of its day, the choice on validation accuracy
BASE = "accuracy"
#: variants whose students have seen the test answers (their teacher's labels): reported apart, never in the targets
SEEN_TEST = ("scored",)
#: per variant: the rows it is decided on, those that confirm it, and its rule against :data:`BASE` — the
#: least mean Δ accuracy and Δ QWK (over rows, of each row's mean over seeds) and the most mean spread
#: above its (None: lower) — as fixed before its runs (docs/decisions/student-fidelity.md); :data:`STANDARD` is
#: the later changes' rule: decided on English 7 and science 2, confirmed on English 4, science 1 and 6, neither
#: mean lower, the mean spread at most 0.5 points higher
STANDARD = (("ela-7", "asap-2"), ("ela-4", "asap-1", "asap-6"), 0.0, 0.0, 0.005)
RULES = {"fidelity": (("asap-1", "asap-2", "asap-10"),
                      ("asap-5", "asap-6", "ela-4", "ela-7", "ela-9", "scientsbank-ua"), -0.005, -0.005, None),
         "fidelity-stop": (("asap-10", "asap-5", "asap-6"), ("ela-4", "ela-7", "ela-9", "scientsbank-ua"),
                           0.0, -0.005, 0.005),
         "unlabeled": (("asap-2", "ela-4"), ("asap-1", "ela-7", "asap-10", "ela-9"), 0.0, 0.0, 0.005),
         **{how: (("asap-2", "asap-6", "ela-4"), ("ela-7", "ela-9", "asap-1", "asap-5", "asap-10"), -0.005, 0.005,
                  0.005) for how in ("ordinal-4", "lam-16", "average-3")},
         "long-2": (("asap-1", "ela-4", "ela-9"), ("ela-7", "asap-2", "asap-6"), -0.005, 0.005, 0.005),
         "7t": (("asap-2", "asap-6", "ela-4"), ("asap-5", "asap-10", "ela-9", "scientsbank-ua"), -0.005, -0.005, 0.0),
         "vectors": (("asap-2", "asap-6", "ela-4"), ("ela-7", "ela-9", "asap-1"), -0.005, 0.005, 0.005),
         **{how: STANDARD for how in ("others", "no-span", "lams-4-16", "balanced", "copies-32")},
         "kd-no-offsets": (("asap-2", "ela-9"), STANDARD[1], *STANDARD[2:]),
         **{how: STANDARD for how in SINCE_32 if how not in ("kd-no-offsets", "unseen")},
         # decided on the rows its pilot never read, then checked over the eight (docs/decisions/student-aliases.md)
         "unseen": (("ela-9", "asap-5", "asap-10"), (), *STANDARD[2:]),
         **{how: STANDARD for how in SINCE_ALIASES}}
#: the rules fixed against today's default rather than :data:`BASE`
RULE_BASE = {"lams-4-16": "copies-16", "balanced": "copies-16", "copies-32": "copies-16",
             **{how: "no-aliases" for how in SINCE_32}, **{how: DEFAULT for how in SINCE_ALIASES}}


#: the rows chosen with ``--where``; a change that passed its rule is checked over all of them, by the same rule
#: (docs/decisions/transfer-data.md, copies-span.md: both passed their rows and failed this check)
WHERE_ROWS = tuple(r for r in ORDER if r != "scientsbank-ua")
CHECKED = ("others", "no-span", "lams-4-16", "balanced", "copies-32", *SINCE_32, *SINCE_ALIASES)


#: the seed spread (points) of the kept student when the issue "a student that keeps its teacher's accuracy"
#: was filed: distill_seeds.md at commit 2b07dec (three student seeds, weight averaging, family-26 EPYC)
SPREAD_BEFORE = {"asap-1": 3.9, "asap-2": 4.0, "asap-5": 0.5, "asap-6": 0.7, "asap-10": 1.6, "scientsbank-ua": 1.1}


def target_lines(s, how=DEFAULT):
    """The targets of the issue on the rows of ``how``: mean and worst Δ to the teacher, the plain NN, the spread."""
    got = {r: s[(r, how)] for r in ORDER if (r, how) in s and s[(r, how)]["n"] >= 3}
    if not got:
        return []
    da = sum(v["acc"] - v["t_acc"] for v in got.values()) / len(got)
    dq = sum(v["qwk"] - v["t_qwk"] for v in got.values()) / len(got)
    wa = min(got, key=lambda r: got[r]["acc"] - got[r]["t_acc"])
    wq = min(got, key=lambda r: got[r]["qwk"] - got[r]["t_qwk"])
    below = [r for r, v in got.items() if v["acc"] < v["plain"] - 0.005]
    both = [r for r in got if r in SPREAD_BEFORE]
    now = sum(100 * got[r]["spread"] for r in both) / max(len(both), 1)
    before = sum(SPREAD_BEFORE[r] for r in both) / max(len(both), 1)
    halved = [r for r in both if 100 * got[r]["spread"] <= SPREAD_BEFORE[r] / 2 + 1e-9]
    ok = lambda c: "met" if c else "**not met**"  # noqa: E731
    return ["", f"Targets ({how}, the {len(got)} row(s) with three seeds or more, each the mean over its seeds):",
            f"- mean student − teacher {100 * da:+.2f} points, {dq:+.4f} QWK (within 1 point and 0.015 QWK: "
            f"{ok(abs(da) <= 0.01 and abs(dq) <= 0.015 or (da > 0 and dq > 0))})",
            f"- worst row in accuracy {got[wa]['name']} {100 * (got[wa]['acc'] - got[wa]['t_acc']):+.2f} points; in QWK "
            f"{got[wq]['name']} {got[wq]['qwk'] - got[wq]['t_qwk']:+.4f} (within 2.5 points and 0.04 QWK: "
            f"{ok(got[wa]['acc'] - got[wa]['t_acc'] >= -0.025 and got[wq]['qwk'] - got[wq]['t_qwk'] >= -0.04)})",
            f"- below the plain NN by more than 0.5 points: {', '.join(below) or 'no row'} ({ok(not below)})",
            f"- seed spread on the {len(both)} row(s) also measured at commit 2b07dec: mean {now:.1f} points against "
            f"{before:.1f} then (at most half: {ok(now <= before / 2)}); halved on {len(halved)} of {len(both)} rows "
            f"({', '.join(halved)})"]


def variant_defaults(how):
    """distill's module defaults as variant ``how`` runs them (undone on exit): the copies per answer capped at 16
    unless it is one of :data:`AT_32`, and "auto"'s presets those of :data:`AUTO` where it names any."""
    import tinykd.distill.copies as copies
    import tinykd.distill.job as job

    stack = contextlib.ExitStack()
    if how not in AT_32:
        stack.enter_context(mock.patch.object(copies, "COPIES_MAX", 16))
    if how in AUTO:
        stack.enter_context(mock.patch.object(job, "AUTO_PRESETS", AUTO[how]))
    return stack


def unlabeled_file(data):
    """The unscored answers beside a data file (``X.csv`` → ``X-unlabeled.csv``; docs/decisions/transfer-data.md)."""
    path = data.with_name(f"{data.stem}-unlabeled.csv")
    if not path.exists():
        raise SystemExit(f"--choose-on unlabeled: {data.name} has no {path.name}")
    return path


def scored_file(key, data, opts, work_root):
    """The row's test answers without their scores (ids ``scored-<id>``), written to ``work_root/KEY-scored.csv``
    for ``--unlabeled``: the answers a school is about to score, as transfer data (issue 30: reported apart)."""
    if "split_col" not in opts:
        raise SystemExit(f"--choose-on scored: row {key} has no split column to find its test answers")
    where = dict(w.split("=", 1) for w in opts.get("where", []))
    with open(data, newline="", encoding="utf-8") as fh:
        rd = csv.DictReader(fh)
        keep = [r for r in rd if r[opts["split_col"]] == opts.get("test_split", "test")
                and all(r[c] == v for c, v in where.items())]
    path = work_root / f"{key}-scored.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["id", *where, "text"])
        w.writerows([f"scored-{r['id']}", *where.values(), r["text"]] for r in keep)
    return path


def mpnet_teacher(key):
    """The mpnet teacher of row ``key`` that ``teacher_table.py --options mpnet-bf16`` fine-tuned."""
    folder = ROOT / "runs" / "teacher-table" / f"{key}-mpnet-bf16" / "teacher-teacher"
    if not (folder / "teacher.json").exists():
        raise SystemExit(f"--choose-on mpnet: run python benchmarks/teacher_table.py --options mpnet-bf16 --rows {key}")
    return str(folder)


def run_one(key, table, work_root, seed, choose_on, teacher_seed=0):
    """One ``distill`` run of row ``key`` with the students' ``seed`` stopped and chosen as the variant
    ``choose_on`` says (:data:`VARIANTS`), the teacher's, the copies' and the split's ``teacher_seed`` (`pair`: two,
    :func:`pair_run`): its record."""
    if choose_on == "pair":
        return pair_run(key, table, work_root, seed, teacher_seed)
    return distill_run(key, table, work_root, seed, choose_on, teacher_seed)[0]


def distill_run(key, table, work_root, seed, choose_on, teacher_seed=0):
    """``(record, kept model)`` of the ``distill`` run :func:`run_one` describes."""
    name, data, opts, command = table[key]
    if choose_on in ("unlabeled", "unlabeled-32"):
        opts = {**opts, "unlabeled": unlabeled_file(data)}
    if choose_on == "scored":
        opts = {**opts, "unlabeled": scored_file(key, data, opts, work_root)}
    if choose_on == "mpnet":
        opts = {**opts, "teacher_dir": mpnet_teacher(key)}
    work = work_root / key
    t0 = time.time()
    kw = VARIANTS[choose_on] if choose_on == DEFAULT else {"teacher_aliases": None, **VARIANTS[choose_on]}
    with variant_defaults(choose_on):
        res = distill(data, work / f"seeds-{choose_on}-{seed}-{teacher_seed}.npz", work=work, student_seed=seed,
                      seed=teacher_seed, verbose=False, other_items=choose_on == "others", **kw, **opts)
    m, d = res.report["all rows"], res.model.meta["distill"]
    return {"row": key, "name": name, "seed": seed, "choose_on": choose_on, "student": student(m),
            "teacher": m["teacher"], "plain": m["plain NN"], "tfidf": m["TF-IDF + LR"], "preset": d["preset"],
            "lam": d["lam"], "students_seconds": res.made_seconds.get("students"), "teacher_seed": teacher_seed,
            "wall": round(time.time() - t0, 1), "cpu": cpu(), "command": command}, res.model


def pair_run(key, table, work_root, seed, teacher_seed=0):
    """Variant `pair`: the `bathtub-32` runs of students' seeds ``seed`` and ``seed + PAIR_SEED`` (each a ``distill``
    run, cached in the work folder), their kept students' logits averaged on the test rows (an ensemble of 99.5k
    parameters for 3 classes). Each member's own test metrics, computed here, must equal its distill report's."""
    from student_agreement import teacher_rows
    from tinykd.files.csvfiles import label_key
    from tinykd.quality.metrics import scoring_metrics

    t0 = time.time()
    members, found = zip(*(distill_run(key, table, work_root, s, "bathtub-32", teacher_seed)
                           for s in (seed, seed + PAIR_SEED)))
    test = [r for r in teacher_rows(found, f"pair: {key}'s members")[1] if r["role"] == "test"]
    texts, truth = [r["text"] for r in test], [label_key(r["label"]) for r in test]
    keys = [label_key(c) for c in found[0].classes]
    if [label_key(c) for c in found[1].classes] != keys:
        raise SystemExit(f"pair: {key}'s members have different classes")
    logp = [np.log(np.maximum(np.asarray(m.predict_proba(texts, calibrated=False), dtype=np.float64), 1e-300))
            for m in found]
    for m, lp in zip(members, logp):  # the members' own metrics, as distill reported them
        own = scoring_metrics(truth, [keys[k] for k in lp.argmax(1)], labels=keys)
        if abs(own["accuracy"] - m["student"]["accuracy"]) > 1e-12 or abs(own["qwk"] - m["student"]["qwk"]) > 1e-12:
            raise SystemExit(f"pair: {key} seed {m['seed']}: test metrics {own} differ from distill's {m['student']}")
    both = scoring_metrics(truth, [keys[k] for k in (logp[0] + logp[1]).argmax(1)], labels=keys)
    a = members[0]
    return {**a, "choose_on": "pair", "student": both, "preset": f"{a['preset']}+{members[1]['preset']}",
            "lam": a["lam"], "students_seconds": sum(m["students_seconds"] or 0 for m in members),
            "members": [{k: m[k] for k in ("seed", "student", "preset", "lam")} for m in members],
            "wall": round(time.time() - t0, 1)}


def summary(runs):
    """Per (row, choice): mean and worst test accuracy / QWK over seeds, spread, teacher, plain NN."""
    out = {}
    for r in (r for r in runs if not r.get("teacher_seed")):
        out.setdefault((r["row"], r["choose_on"]), []).append(r)
    rows_ = {}
    for (row, how), rs in out.items():
        acc = [r["student"]["accuracy"] for r in rs]
        qwk = [r["student"]["qwk"] for r in rs]
        t = rs[0]["teacher"]
        rows_[(row, how)] = {
            "name": rs[0]["name"], "n": len(rs), "acc": sum(acc) / len(acc), "qwk": sum(qwk) / len(qwk),
            "worst_acc": min(acc), "worst_qwk": min(qwk), "spread": max(acc) - min(acc),
            "t_acc": t["accuracy"], "t_qwk": t["qwk"],
            "plain": sum(r["plain"]["accuracy"] for r in rs) / len(rs),
            "presets": ", ".join(f"{r['preset']} {r['lam']:g}" for r in sorted(rs, key=lambda r: r["seed"])),
            "seconds": max(r["students_seconds"] or 0 for r in rs),
            "cpu": rs[0]["cpu"] if len({r["cpu"] for r in rs}) == 1 else "mixed"}
    return rows_


def verdict(s, group, how):
    """The rule of variant ``how`` on the rows ``group`` run with it and with its base (:data:`RULE_BASE`, else
    :data:`BASE`) on one kind of CPU:
    (text, passed or None)."""
    base = RULE_BASE.get(how, BASE)
    run = [r for r in group if (r, how) in s and (r, base) in s]
    both = [r for r in run if s[(r, how)]["cpu"] == s[(r, base)]["cpu"] != "mixed"]  # a student is the CPU's
    left = [r for r in run if r not in both]
    apart = f" ({', '.join(left)}: not on one kind of CPU, left out)" if left else ""
    if not both:
        return "no row run with both on one kind of CPU" + apart, None
    _, _, min_acc, min_qwk, max_spread = RULES[how]
    k = len(both)
    da = sum(s[(r, how)]["acc"] - s[(r, base)]["acc"] for r in both) / k
    dq = sum(s[(r, how)]["qwk"] - s[(r, base)]["qwk"] for r in both) / k
    sf = sum(s[(r, how)]["spread"] for r in both) / k
    sv = sum(s[(r, base)]["spread"] for r in both) / k
    ok = da >= min_acc and dq >= min_qwk and (sf < sv if max_spread is None else sf <= sv + max_spread)
    return (f"{k} row(s) ({', '.join(both)}): {how} − {base}, mean over rows of the mean over seeds: accuracy "
            f"{100 * da:+.2f} points, QWK {dq:+.4f}; mean seed spread {100 * sf:.1f} points ({how}) vs {100 * sv:.1f} "
            f"({base}) → {'passes' if ok else 'fails'}{apart}"), ok


def names(hows):
    """``hows`` as prose: "`a`, `b` and `c`"."""
    quoted = [f"`{h}`" for h in hows]
    return ", ".join(quoted[:-1]) + f" and {quoted[-1]}" if len(quoted) > 1 else "".join(quoted)


def out_flag(path):
    """`` --out PATH`` (relative to the repository) when ``path`` is not the runner's own table, else ""."""
    path = Path(path).resolve()
    if path == (RESULTS / "distill_seeds.md").resolve():
        return ""
    return f" --out {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}"


def write_md(runs, path):
    s = summary(runs)
    cpus = sorted({r["cpu"] for r in runs})
    lines = ["# `tinykd distill`'s students over seeds: stopped and chosen on validation or on fidelity", "",
             f"Generated by `python benchmarks/distill_seeds.py{out_flag(path)}` ({' / '.join(cpus)}, 2 cores, no GPU). The "
             "teacher, copies and labels of each row are its `distill_table.py` run's (seed 0); only the students' "
             "seed (`--student-seed`) and the variant change: `validation` (the default: 32 copies per answer, the KD student "
             "of lower validation log-loss kept, which after training reads each word it never read as the nearest of "
             "its vocabulary by the teacher's word vectors; docs/decisions/transfer-copies-32.md, student-choice.md, "
             "student-aliases.md), `no-aliases` (`--teacher-aliases none`: the default before student-aliases.md; "
             "every variant below but `aliases` and `unseen` is run without aliases), `copies-16` "
             "(the default before transfer-copies-32.md: at most 16 copies per answer; every variant below but "
             f"{names(('copies-32', 'bathtub-32', 'bathtub-128', *SINCE_32, *SINCE_ALIASES))} was run so), `accuracy` (`--choose-on accuracy`: the one of higher "
             "validation accuracy, the default before; every variant below chooses so), `fidelity` (`--choose-on fidelity`), "
             "`fidelity-stop` (`--stop-on fidelity`), `unlabeled` (`--unlabeled` the item's unscored answers, "
             "copied like the training answers), `ordinal-4` / `ordinal-16` (`--ordinal 4` / `16`: the KD students' "
             "expected-score term), `lam-16` (`--lam 16`), `average-3` (weights averaged over 3 epochs), `long-2` (the long answers "
             "counted twice), `vectors` (`--teacher-vectors`: the KD students' embeddings start from the teacher's "
             "word vectors), `mpnet` (the all-mpnet-base-v2 teacher of `teacher_table.py`'s `mpnet-bf16`, given "
             "with `--teacher-dir`; no rule), `scored` (`--unlabeled` the row's test answers without their scores: the "
             "answers a school is about to score as transfer data; its students have seen the teacher's labels of "
             "their test answers, so it is reported apart and never counts towards a target), `others` "
             "(`--other-items`: as many training answers of the data set's other items, unscored, join the transfer "
             "set; distill's default on 2026-12-07 until the check of docs/decisions/transfer-data.md took it out), "
             "`no-span` (the copies made without the span operation: docs/decisions/copies-span.md), `ensemble` "
             "(`--teacher-members 3`), `lams-4-16` (`--lam 4 16`: KD students of both λ, the one of lower validation "
             "log-loss kept; docs/decisions/student-lambda-choice.md), `balanced` (`TrainOptions(balance_transfer=True)`: "
             "the KD students' transfer rows weighted to the teacher's class mix on the training answers; "
             "docs/decisions/transfer-balance.md), `copies-32` (`--copies 32`: docs/decisions/transfer-copies-32.md), "
             "`kd-no-offsets` (`TrainOptions(offsets=\"plain\")`: decision offsets for the plain NNs only; "
             "docs/decisions/student-offsets.md), `splice` (`augment_options={\"p_splice\": 0.25}`: a quarter of the "
             "copies end with another training answer's words; docs/decisions/transfer-splice.md), `offsets-bagged` (`TrainOptions(offsets=\"bagged\")`: every "
             "student's decision offsets the mean of 32 fits on bootstrap resamples of the validation rows; "
             "docs/decisions/offsets-bagged.md), `lr-plateau` (`TrainOptions(lr_plateau=2)`: every student's learning "
             "rate halved after each 2 epochs without a better validation loss; docs/decisions/student-lr-plateau.md), "
             "`patience-10` (the students' patience 10 epochs and at most 80, not 5 and 40; "
             "docs/decisions/student-patience.md), `unlabeled-32` (`unlabeled` under today's default: 32 copies, "
             "the choice on validation log-loss; docs/decisions/transfer-data.md), `wide` (distill's \"auto\" trains the "
             "presets `wide` and `7t`: `wide`, tinykd's Emb 32 → BiLSTM 48, in `bathtub`'s place; "
             "docs/decisions/student-wide.md), `bathtub-wide` (\"auto\" trains `bathtub` and `wide`: `wide` in `7t`'s "
             "place; the same page), `bathtub-32` (`--preset bathtub` with a 32-wide embedding, 49.7k parameters, alone: "
             "no rule), `pair` (two `bathtub-32` students, seeds S and S + 1000, their logits averaged: 99.5k "
             "parameters, no choice of preset; docs/decisions/student-pair.md), `bathtub-128` (`--preset bathtub` with a "
             "BiLSTM of 128 units each way: 266k parameters, beyond the paper's budget; how much of a row's gap is "
             "the budget's, never a default; the same page), `aliases` (`--teacher-aliases train`: the KD students read "
             "a word outside their vocabulary as the vocabulary word of the nearest teacher word vector; "
             "docs/decisions/student-aliases.md) and `unseen` (`--teacher-aliases unseen`: the kept KD student, "
             "trained as by `no-aliases`, reads so only the words no training answer or copy holds; the same page) and `outside` "
             "(`--teacher-aliases outside`: the kept KD student reads so every word outside its vocabulary; the same "
             "page), `dropout-0.1` and `dropout-0.3` (every student's dropout 0.1 or 0.3, not the presets' 0.2; "
             "docs/decisions/student-dropout.md), `lr-5e-4`, `lr-2e-3`, `batch-64` and `batch-16` (every "
             "student's learning rate 5e-4 or 2e-3, not 1e-3, or its batch 64 or 16 rows, not 32; "
             "docs/decisions/student-step.md). Test rows; mean over seeds and the worst seed; "
             "spread = max − min test accuracy over the seeds; Δ = student − teacher.", "",
             "| data set | variant | seeds | student acc / QWK (mean) | worst acc / QWK | spread (points) "
             "| teacher acc / QWK | Δ acc | Δ QWK | plain NN acc | kept (by seed) | students s |",
             "|---|---|---:|---|---|---:|---|---:|---:|---:|---|---:|"]
    for row in ORDER:
        for how in VARIANTS:
            v = s.get((row, how))
            if v:
                lines.append(f"| {v['name']} | {how} | {v['n']} | {v['acc']:.3f} / {v['qwk']:.3f} | "
                             f"{v['worst_acc']:.3f} / {v['worst_qwk']:.3f} | {100 * v['spread']:.1f} | "
                             f"{v['t_acc']:.3f} / {v['t_qwk']:.3f} | {v['acc'] - v['t_acc']:+.3f} | "
                             f"{v['qwk'] - v['t_qwk']:+.3f} | {v['plain']:.3f} | {v['presets']} | {v['seconds']:.0f} |")
    lines += ["", "The rules (docs/decisions/student-fidelity.md, each fixed before its runs): against `accuracy` "
              "(stopping on the validation rows and the KD student of higher validation accuracy kept: distill's default "
              "until docs/decisions/student-choice.md), on the decision rows and then on the confirmation rows, "
              "each on its own: `fidelity` (stop, offsets and choice on fidelity) passes when its mean accuracy is at "
              "most 0.5 points and its mean QWK at most 0.005 below and its mean seed spread is lower; "
              "`fidelity-stop` (stop and offsets on fidelity, choice on validation) when its mean accuracy is not "
              "lower, its mean QWK at most 0.005 lower and its mean seed spread at most 0.5 points higher; `unlabeled` "
              "(docs/decisions/transfer-data.md) when its mean accuracy and its mean QWK are not lower and its mean "
              "seed spread is at most 0.5 points higher, and so do `others` (the same page) and `no-span` "
              "(docs/decisions/copies-span.md), and `lams-4-16`, `balanced` and `copies-32` against `copies-16` (docs/decisions/student-lambda-choice.md, "
              f"transfer-balance.md, transfer-copies-32.md), {names(SINCE_32)} against `no-aliases` and "
              f"{names(SINCE_ALIASES)} against `validation` "
              "(docs/decisions/student-offsets.md, "
              "transfer-splice.md, offsets-bagged.md, student-lr-plateau.md, student-patience.md, transfer-data.md, "
              "student-wide.md, student-pair.md, student-aliases.md, student-dropout.md, student-step.md). `ensemble` "
              "(`--teacher-members 3`, the teacher an ensemble of "
              "three seeds: docs/decisions/teacher-ensemble.md) is a teacher option and has no students' rule; its Δ is "
              "to its own (ensemble) teacher, and so is `pick` (`--teacher-members 3 --teacher-combine pick`, the seed "
              "of highest validation QWK: docs/decisions/teacher-pick.md). `ordinal-4` (docs/decisions/student-ordinal.md) passes when its mean "
              "QWK is at least 0.005 higher, its mean accuracy at most 0.5 points lower and its mean seed spread at "
              "most 0.5 points higher, and so do `lam-16` and `average-3` (docs/decisions/student-lambda-average.md) and "
              "`long-2` (docs/decisions/student-long-answers.md) and `vectors` "
              "(docs/decisions/student-teacher-vectors.md); "
              "`ordinal-16` is the one-seed pilot that chose μ.", ""]
    for how, (decide, confirm, *_) in ((h, rule) for h, rule in RULES.items() if any(k[1] == h for k in s)):
        first = verdict(s, decide, how)
        lines.append(f"- `{how}`, decision rows: {first[0]}")
        second = verdict(s, confirm, how) if confirm else (None, None)  # no confirmation rows: the eight check it
        ran = any((r, how) in s for r in confirm)
        if confirm:
            lines.append(f"- `{how}`, confirmation rows: " + (second[0] if ran or first[1] is not False
                                                              else "not run (the decision rows failed)"))
        if how in CHECKED:
            done = all((r, how) in s for r in WHERE_ROWS)
            failed = first[1] is False or second[1] is False
            lines.append(f"- `{how}`, the check over the eight `--where` rows: "
                         + (verdict(s, WHERE_ROWS, how)[0] if done else
                            "not run (a group before it failed)" if failed else "not run yet"))
    for how in VARIANTS:
        got = [s[(r, how)] for r in ORDER if (r, how) in s]
        if got:
            da = sum(v["acc"] - v["t_acc"] for v in got) / len(got)
            dq = sum(v["qwk"] - v["t_qwk"] for v in got) / len(got)
            worst = min(got, key=lambda v: v["acc"] - v["t_acc"])
            seen = " (seen test answers: apart)" if how in SEEN_TEST else ""
            lines.append(f"- {how}{seen}, all {len(got)} row(s): mean Δ accuracy {da:+.3f}, Δ QWK {dq:+.3f}; worst row "
                         f"{worst['name']} {worst['acc'] - worst['t_acc']:+.3f} / {worst['qwk'] - worst['t_qwk']:+.3f}; "
                         f"below the plain NN by more than 0.5 points on "
                         f"{sum(v['acc'] < v['plain'] - 0.005 for v in got)} row(s)")
    lines += target_lines(s)
    lines += teacher_seed_lines(runs)
    lines += ["", "Commands: each row's `tinykd distill` command (benchmarks/results/distill_table.md) with "
              "`--student-seed S` and the variant's flag. The students' seconds are the slowest seed's, as measured "
              "by the run that trained them (other jobs shared the machine during this run)."]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def teacher_seed_lines(runs):
    """The rows run over several teacher seeds (the students' seed fixed at 0), by the default and by the defaults
    before aliases and before 32 copies."""
    by = {}
    for r in runs:
        if r["choose_on"] in (DEFAULT, "no-aliases", "copies-16") and r["seed"] == 0:
            by.setdefault((r["row"], r["choose_on"]), {})[r.get("teacher_seed", 0)] = r
    lines = []
    for (row, how), rs in by.items():
        if len(rs) < 2:
            continue
        ts = sorted(rs)
        t_acc = [rs[t]["teacher"]["accuracy"] for t in ts]
        s_acc = [rs[t]["student"]["accuracy"] for t in ts]
        lines += ["", f"Teacher seeds on {rs[ts[0]]['name']}, `{how}` (the split, teacher and copies of each seed; "
                  "students' seed 0): " + "; ".join(
                      f"seed {t}: teacher {rs[t]['teacher']['accuracy']:.3f} / {rs[t]['teacher']['qwk']:.3f}, student "
                      f"{rs[t]['student']['accuracy']:.3f} / {rs[t]['student']['qwk']:.3f}" for t in ts)
                  + f". Spread of test accuracy over the teacher seeds: teacher {100 * (max(t_acc) - min(t_acc)):.1f} "
                  f"points, student {100 * (max(s_acc) - min(s_acc)):.1f}."]
    return lines


def seed_parser(description, out):
    """The options of a runner over the rows and student seeds: the data and work folders, ``--rows``,
    ``--seeds``, its table ``--out`` and ``--md-only``."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--work-root", type=Path, default=ROOT / "runs" / "distill")
    ap.add_argument("--rows", default=",".join(ORDER))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", type=Path, default=out)
    ap.add_argument("--md-only", action="store_true", help="rewrite the table from the .json beside --out")
    return ap


def asked_rows(ap, args):
    """``(the rows' table, the rows --rows names)``; an unknown row is the parser's error."""
    table = rows(args.data_dir)
    pick = [r for r in args.rows.split(",") if r]
    unknown = [r for r in pick if r not in table]
    if unknown:
        ap.error(f"--rows: unknown row(s) {', '.join(unknown)}; the rows are {', '.join(ORDER)}")
    return table, pick


def main(argv=None):
    ap = seed_parser(__doc__.splitlines()[0], RESULTS / "distill_seeds.md")
    ap.add_argument("--choose-on", default="validation,fidelity-stop",
                    help=f"the variants, comma-separated: {', '.join(VARIANTS)}")
    ap.add_argument("--teacher-seeds", default="0", help="seeds of the split, teacher and copies (each a new "
                    "teacher); the rows' table uses seed 0, the others are reported apart")
    args = ap.parse_args(argv)
    table, pick = asked_rows(ap, args)
    js = args.out.with_suffix(".json")
    runs = json.loads(js.read_text(encoding="utf-8")) if js.exists() else []
    for key in () if args.md_only else pick:
        for ts, seed, how in [(t, s, h) for t in map(int, args.teacher_seeds.split(","))
                              for s in map(int, args.seeds.split(",")) for h in args.choose_on.split(",")]:
            r = run_one(key, table, args.work_root, seed, how, ts)
            print(f"{key} teacher seed {ts}, seed {seed} {how}: {r['student']['accuracy']:.3f} / "
                  f"{r['student']['qwk']:.3f} ({r['preset']}, {r['lam']:g}; teacher {r['teacher']['accuracy']:.3f}; "
                  f"{r['wall']:.0f} s)", flush=True)
            same = (key, seed, how, ts)
            at = [k for k, x in enumerate(runs)
                  if (x["row"], x["seed"], x["choose_on"], x.get("teacher_seed", 0)) == same]
            runs = runs[:at[0]] + [r] + runs[at[0] + 1:] if at else runs + [r]  # a rerun keeps its place: small diffs
            atomic_write_bytes(js, (json.dumps(runs, indent=1) + "\n").encode("utf-8"))
            write_md(runs, args.out)
    write_md(runs, args.out)
    print(args.out.read_text(encoding="utf-8"), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
