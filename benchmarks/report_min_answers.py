"""How many answers a unit of ``tinykd report`` needs before its QWK can be judged: the median half-width
of the 95 % bootstrap interval of QWK (tinykd.quality.metrics.ordinal_intervals) against the number of
answers, on simulated machine–human score tables near the 0.70 criterion (3- and 4-point scales, skewed and
even human score distributions). tinykd.quality.evaluate.MIN_ANSWERS is the smallest n at which every
table's median half-width is at most 0.10. Writes benchmarks/results/report_min_answers.md.

    python benchmarks/report_min_answers.py        (about a minute on 2 cores)
"""
import os

import numpy as np

from tinykd.quality.metrics import ordinal_intervals, pair_measures

SIZES = (40, 60, 80, 100, 125, 150, 175, 200, 250)
TABLES = [(3, (0.4, 0.3, 0.3), 0.75), (3, (0.6, 0.25, 0.15), 0.8), (4, (0.2, 0.3, 0.3, 0.2), 0.65),
          (4, (0.1, 0.2, 0.4, 0.3), 0.65)]


def population(k, human, agree):
    """Joint probabilities (human row, machine column): the machine agrees with probability ``agree``, else one
    point off (80 % of the misses) or further."""
    p = np.zeros((k, k))
    for i in range(k):
        w = np.array([agree if i == j else (1 - agree) * (0.8 if abs(i - j) == 1 else 0.2 / max(k - 2, 1))
                      for j in range(k)])
        p[i] = human[i] * w / w.sum()
    return p / p.sum()


def main(reps=100):
    rows = []
    for k, human, agree in TABLES:
        p = population(k, human, agree)
        ii, jj = (x.ravel() for x in np.meshgrid(range(k), range(k), indexing="ij"))
        true = pair_measures(p.ravel()[None] * 1e6, ii, jj, ii * 1.0, jj * 1.0)["qwk"][0]
        widths = []
        for n in SIZES:
            hw = []
            for s in range(reps):
                cell = np.random.default_rng(10_000 + s).choice(k * k, size=n, p=p.ravel())
                lo, hi = ordinal_intervals(ii[cell], jj[cell], list(range(k)), seed=s)["qwk"]
                hw.append((hi - lo) / 2)
            widths.append(float(np.nanmedian(hw)))
        rows.append((k, human, true, widths))
    need = max(next((n for n, w in zip(SIZES, ws) if w <= 0.10), SIZES[-1]) for *_, ws in rows)
    lines = ["# Answers needed to judge a unit (`tinykd report`)", "",
             f"Median half-width of the 95 % bootstrap interval of QWK ({reps} samples per cell; "
             "`python benchmarks/report_min_answers.py`).", "",
             "| scale | human score shares | true QWK | " + " | ".join(f"n={n}" for n in SIZES) + " |",
             "|---|---|---:|" + "---:|" * len(SIZES)]
    for k, human, true, ws in rows:
        lines.append(f"| 0–{k - 1} | {', '.join(f'{h:g}' for h in human)} | {true:.2f} | "
                     + " | ".join(f"{w:.3f}" for w in ws) + " |")
    lines += ["", f"Every table's half-width is at most 0.10 from n = {need}: units with fewer answers get "
              "\"too few answers to judge\"."]
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "report_min_answers.md")
    with open(out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
