"""The review loop on visible data: a person scores the answers ``tinykd suggest`` picks, or random ones.

    python benchmarks/review_loop.py [--rows asap-1,ela-4] [--seeds 0,1,2]   # the learning curves
    python benchmarks/review_loop.py --cost                                  # item 1: a second round's cost
    python benchmarks/review_loop.py --md-only                               # rewrite the table; run nothing

**Curves** (issue "the review loop", item 4). For each row and seed: the row's training answers (the
``aera_split`` train and val rows of the item) are the pool a school has; the "person" reveals a pool
answer's own score when asked. Round 0 scores 200 answers drawn at random (the seed's draw); each of three
rounds then adds 100, chosen either by ``tinykd suggest`` on the previous round's student (its core,
:func:`tinykd.quality.suggest.suggest`, seed as the run's) or at random. Each round is one ``tinykd distill``
with default options on the scored answers and the row's test answers, warm-started from the previous
round's model (``warm_start``; round 0 from scratch); distill holds out its validation answers from the
scored ones, and each answer keeps its role from round to round. The student's test accuracy and QWK after
each round, and each round's seconds, are kept; the unscored pool answers are not given to distill (their
copies would cost every round their labelling).

**Cost** (the issue's target: a second round after adding 100 scores costs at most 40 % of the first on
item 1). Round 1: item 1 as ``benchmarks/distill_table.py`` runs it (``aera_split``), less 100 training
answers drawn with seed 0; round 2: the whole file, ``warm_start`` from round 1. Wall clock of each, from an
empty work folder.

``benchmarks/results/review_loop.json`` keeps each run as it finishes; ``review_loop.md`` is rewritten from it.
The rule the curves are read by was written before the runs: docs/decisions/review-loop.md.
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
sys.path.insert(0, str(ROOT))

from distill_table import cpu, rows, student  # noqa: E402
from tinykd.distill.pipeline import distill  # noqa: E402
from tinykd.files.atomic import atomic_write_bytes  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
START, STEP, ROUNDS = 200, 100, 3
#: distill's default when the table was measured (before docs/decisions/student-aliases.md made aliases the
#: default): its rounds compare strategies of the loop, not students
AS_MEASURED = {"teacher_aliases": None}
STRATEGIES = ("suggest", "random")


def pool_and_test(data, item):
    """``(pool, test)``: the item's training answers (aera train + val) and its test answers, as dicts."""
    with open(data, newline="", encoding="utf-8") as f:
        got = [r for r in csv.DictReader(f) if r["item"] == item]
    return ([r for r in got if r["aera_split"] in ("train", "val")], [r for r in got if r["aera_split"] == "test"])


def write_round(path, scored, test):
    """The data file of one round: the scored pool answers (split train) and the test answers."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "text", "label", "split"])
        for r in scored:
            w.writerow([r["id"], r["text"], r["label"], "train"])
        for r in test:
            w.writerow([r["id"], r["text"], r["label"], "test"])


def warm_facts(model):
    """Whether the round's teacher was the previous one kept (teacher.json's ``warm``), or None (cold)."""
    folder = model.meta["distill"]["teacher"]
    with open(Path(folder) / "teacher.json", encoding="utf-8") as f:
        warm = json.load(f).get("warm")
    return None if not warm else bool(warm.get("kept_start"))


def one_round(data, out, work, seed, warm):
    """One ``distill`` round: its student's and teacher's test metrics and its seconds."""
    t0 = time.time()
    res = distill(data, out, work=work, seed=seed, warm_start=warm, verbose=False, **AS_MEASURED)
    m = res.report["all rows"]
    st = student(m)
    return {"acc": st["accuracy"], "qwk": st["qwk"], "t_acc": m["teacher"]["accuracy"], "t_qwk": m["teacher"]["qwk"],
            "seconds": res.seconds, "wall": round(time.time() - t0, 1), "kept_previous_teacher": warm_facts(res.model),
            "ran": res.ran}, res.model


def pick(strategy, model, unscored, n, seed, k):
    """The ``n`` pool answers the person scores next: ``suggest``'s, or a seeded random draw."""
    if strategy == "random":
        return list(np.random.default_rng([seed, k]).choice(len(unscored), size=n, replace=False))
    from tinykd.quality.suggest import suggest

    texts = [r["text"] for r in unscored]
    return [i for i, _ in suggest(texts, model.predict_proba(texts), n=n, seed=seed)]


def run_curve(row, seed, work_root, results, path, rounds=ROUNDS):
    """Round 0, then each strategy's rounds, for one row and seed (finished runs are skipped)."""
    name, data, opts, _ = rows(ROOT.parent / "shared" / "data")[row]
    pool, test = pool_and_test(data, opts["where"][0].split("=")[1])
    work = work_root / row / f"s{seed}"
    order = np.random.default_rng(seed).permutation(len(pool))
    first = [pool[i] for i in order[:START]]
    key0 = f"{row}|{seed}|start|0"
    write_round(work / "r0.csv", first, test)
    if key0 not in results:
        results[key0], _ = one_round(work / "r0.csv", work / "r0.npz", work, seed, None)
        results[key0].update(n=START)
        save(results, path)
    for strategy in STRATEGIES:
        scored, prev = list(first), work / "r0.npz"
        for k in range(1, rounds + 1):
            from tinykd.scoring.student import load

            have = {r["id"] for r in scored}
            unscored = [r for r in pool if r["id"] not in have]
            scored += [unscored[i] for i in pick(strategy, load(prev), unscored, STEP, seed, k)]
            key, out = f"{row}|{seed}|{strategy}|{k}", work / f"{strategy}-r{k}.npz"
            write_round(work / f"{strategy}-r{k}.csv", scored, test)
            if key not in results:
                results[key], _ = one_round(work / f"{strategy}-r{k}.csv", out, work, seed, prev)
                results[key].update(n=len(scored))
                save(results, path)
                print(f"{key}: {results[key]['qwk']:.3f} QWK, {results[key]['wall']:.0f} s", flush=True)
            prev = out


def run_cost(work_root, results, path):
    """Item 1: round 1 without 100 training answers, round 2 with them (warm), each from its own run."""
    _, data, opts, _ = rows(ROOT.parent / "shared" / "data")["asap-1"]
    with open(data, newline="", encoding="utf-8") as f:
        got = [r for r in csv.DictReader(f) if r["item"] == "1"]
    train = [i for i, r in enumerate(got) if r["aera_split"] == "train"]
    held = set(np.random.default_rng(0).choice(train, size=STEP, replace=False).tolist())
    work = work_root / "cost"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for k, keep in ((1, [r for i, r in enumerate(got) if i not in held]), (2, got)):
        with open(work / f"r{k}.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=list(got[0]))
            w.writeheader()
            w.writerows(keep)
        t0 = time.time()
        res = distill(work / f"r{k}.csv", work / f"r{k}.npz", work=work / "work", split_col="aera_split",
                      warm_start=work / "r1.npz" if k == 2 else None, verbose=False, **AS_MEASURED)
        st = student(res.report["all rows"])
        results[f"cost|{k}"] = {"wall": round(time.time() - t0, 1), "seconds": res.seconds, "acc": st["accuracy"],
                                "qwk": st["qwk"], "kept_previous_teacher": warm_facts(res.model), "cpu": cpu()}
        save(results, path)
        print(f"cost round {k}: {results[f'cost|{k}']['wall']:.0f} s", flush=True)


def save(results, path):
    atomic_write_bytes(path, json.dumps(results, indent=1, sort_keys=True).encode("utf-8"))
    write_md(results, path.with_suffix(".md"))


def _mean(xs):
    return sum(xs) / len(xs) if xs else float("nan")


def curve(results, row, strategy):
    """``[(n scored, mean QWK, worst QWK, mean acc, mean seconds, seeds)]`` per round of ``strategy``."""
    out = []
    for k in range(0, ROUNDS + 1):
        runs = [v for key, v in results.items() if key.startswith(f"{row}|")
                and key.split("|")[2:] == (["start", "0"] if k == 0 else [strategy, str(k)])]
        if runs:
            out.append((runs[0]["n"], _mean([r["qwk"] for r in runs]), min(r["qwk"] for r in runs),
                        _mean([r["acc"] for r in runs]), _mean([r["wall"] for r in runs]), len(runs)))
    return out


def scores_to_reach(points, target):
    """The human scores at which a curve first reaches ``target`` QWK (linear between rounds; None: never)."""
    for (n0, q0, *_), (n1, q1, *_) in zip(points, points[1:]):
        if q1 >= target:
            return n0 if q0 >= target else n0 + (n1 - n0) * (target - q0) / (q1 - q0)
    return points[0][0] if points and points[0][1] >= target else None


def write_md(results, path):
    lines = ["# The review loop: which answers a person scores next", "",
             f"Generated by `python benchmarks/review_loop.py` ({cpu()}; no GPU). Student test QWK after each "
             f"round (mean over seeds, worst seed), {START} answers scored at random first, then {ROUNDS} rounds "
             f"of {STEP} chosen by `tinykd suggest` or at random; each round a warm-started `tinykd distill` with "
             "default options. Rule: docs/decisions/review-loop.md.", ""]
    for row in sorted({k.split("|")[0] for k in results if not k.startswith("cost")}):
        cs = {s: curve(results, row, s) for s in STRATEGIES}
        lines += [f"## {row}", "", "| scored | " + " | ".join(f"{s} QWK mean (worst) | {s} acc | {s} s"
                                                            for s in STRATEGIES) + " | seeds |",
                  "|---|" + "---|---|---|" * len(STRATEGIES) + "---|"]
        for j in range(ROUNDS + 1):
            cells = []
            for s in STRATEGIES:
                p = cs[s][j] if j < len(cs[s]) else None
                cells.append("– | – | –" if p is None else f"{p[1]:.3f} ({p[2]:.3f}) | {p[3]:.3f} | {p[4]:.0f}")
            n = next((cs[s][j][0] for s in STRATEGIES if j < len(cs[s])), "–")
            seeds = min((cs[s][j][5] for s in STRATEGIES if j < len(cs[s])), default=0)
            lines.append(f"| {n} | " + " | ".join(cells) + f" | {seeds} |")
        if all(len(cs[s]) == ROUNDS + 1 for s in STRATEGIES):
            final = cs["random"][-1][1]
            need = scores_to_reach(cs["suggest"], final)
            worst = min(a[1] - b[1] for a, b in zip(cs["suggest"][1:], cs["random"][1:]))
            lines += ["", f"Random's final mean QWK {final:.3f} at {cs['random'][-1][0]} scores; suggest reaches it "
                      + (f"at {need:.0f} scores ({1 - need / cs['random'][-1][0]:.0%} fewer)" if need is not None
                         else "at no round") + f"; suggest − random, worst round: {worst:+.3f} QWK."]
        lines.append("")
    cost = {k: v for k, v in results.items() if k.startswith("cost|")}
    if len(cost) == 2:
        r1, r2 = cost["cost|1"], cost["cost|2"]
        stages = ", ".join(f"{s} {v:.0f}" for s, v in r2["seconds"].items() if s != "total")
        lines += ["## A second round's cost (ASAP-SAS item 1)", "",
                  f"Round 1 (item 1 less {STEP} training answers, from scratch): {r1['wall']:.0f} s, student "
                  f"{r1['acc']:.3f} / {r1['qwk']:.3f}. Round 2 (all answers, warm start): {r2['wall']:.0f} s "
                  f"({stages}), student {r2['acc']:.3f} / {r2['qwk']:.3f}; the previous teacher was "
                  f"{'kept' if r2['kept_previous_teacher'] else 'fine-tuned on'}. Round 2 / round 1: "
                  f"**{r2['wall'] / r1['wall']:.0%}** (target ≤ 40 %).", ""]
    path.write_text("\n".join(lines), encoding="utf-8")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="asap-1,ela-4", help="the rows of benchmarks/distill_table.py to run")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--rounds", type=int, default=ROUNDS, help="rounds after round 0 (0: round 0 only)")
    ap.add_argument("--cost", action="store_true", help="measure a second round's cost on item 1 instead")
    ap.add_argument("--md-only", action="store_true")
    ap.add_argument("--work-root", type=Path, default=ROOT / "runs" / "review")
    args = ap.parse_args(argv)
    path = RESULTS / "review_loop.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    if args.md_only:
        write_md(results, path.with_suffix(".md"))
        return 0
    if args.cost:
        run_cost(args.work_root, results, path)
        return 0
    for seed in [int(s) for s in args.seeds.split(",")]:
        for row in args.rows.split(","):
            run_curve(row, seed, args.work_root, results, path, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
