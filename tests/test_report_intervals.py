"""Verdicts that know their sample (issue 33, part 2): the 95 % bootstrap intervals of ``tinykd report``
(tinykd.quality.metrics) against the measures on resampled rows and against the true QWK of a simulated
population; the met / not met / uncertain logic on hand-made intervals; units too small to judge; a one-score
student named as such; the majority-score baseline; the review table reaching the chosen threshold; the note
when calibration made the confidence worse; the reliability diagram leaving out bins of a few rows."""
import numpy as np
import pytest

from tinykd.quality.evaluate import (MIN_ANSWERS, REGIONS, _review, assess, calibration_worse, format_verdicts,
                                     judge)
from tinykd.quality.metrics import (degradation_intervals, group_smd_interval, ordinal_agreement, ordinal_intervals,
                                    pair_measures, resampled_counts, standardized_mean_difference)

SCALE = [0, 1, 2, 3]


def population(agree=0.6, shares=(0.2, 0.3, 0.3, 0.2)):
    """Joint probabilities of (human, machine) scores on 0–3: the machine agrees with probability ``agree``,
    else one point off (80 % of the misses) or further."""
    p = np.zeros((4, 4))
    for i in range(4):
        w = np.array([agree if i == j else (1 - agree) * (0.8 if abs(i - j) == 1 else 0.1) for j in range(4)])
        p[i] = shares[i] * w / w.sum()
    return p / p.sum()


def sample(p, n, seed):
    cell = np.random.default_rng(seed).choice(p.size, size=n, p=p.ravel())
    return cell // 4, cell % 4


def true_qwk(p):
    """QWK of the population itself: its cells weighted by their probabilities."""
    i, j = (x.ravel() for x in np.meshgrid(range(4), range(4), indexing="ij"))
    return float(pair_measures(p.ravel()[None, :], i, j, i * 1.0, j * 1.0)["qwk"][0])


def test_the_measures_of_a_count_table_are_those_of_its_rows():
    """The bootstrap draws counts of the distinct (human, machine) rows; each draw's measures must be the
    measures of the rows it stands for (checked on resamples of the rows themselves)."""
    rng = np.random.default_rng(0)
    h = rng.integers(0, 4, 150)
    m = np.clip(h + rng.integers(-1, 2, 150), 0, 3)
    scale = np.array([0.0, 1.0, 2.5, 4.0])  # values that are not the positions: r and SMD use the values
    hv, mv = scale[h], scale[m]
    for seed in range(5):
        idx = np.random.default_rng(seed).integers(0, 150, 150)
        cells, counts, _ = resampled_counts(h[idx], m[idx], draws=1)
        got = pair_measures(counts[None, :], cells[:, 0], cells[:, 1], scale[cells[:, 0]], scale[cells[:, 1]])
        want = ordinal_agreement(hv[idx], mv[idx], scale)
        for k in ("qwk", "r", "smd", "exact", "adjacent"):
            assert got[k][0] == pytest.approx(want[k], abs=1e-12), k


def test_a_draw_is_n_rows_and_the_seed_is_fixed():
    h, m = sample(population(), 120, 1)
    cells, counts, drawn = resampled_counts(h, m)
    assert drawn.shape == (1000, len(cells)) and (drawn.sum(axis=1) == 120).all()
    assert drawn.mean(axis=0) == pytest.approx(counts, rel=0.1)
    assert ordinal_intervals(h, m, SCALE) == ordinal_intervals(h, m, SCALE)  # a report is reproducible


def test_the_interval_covers_the_true_qwk():
    """200 samples of 200 answers from a population of known QWK: the 95 % interval covers it in at least
    90 % of them (a percentile bootstrap undercovers a little on small samples; a nominal 95 % may not drop
    below 90 %), and is not needlessly wide (it misses in some)."""
    p = population()
    truth = true_qwk(p)
    assert 0.6 < truth < 0.8
    hits, widths = 0, []
    for s in range(200):
        h, m = sample(p, 200, 1000 + s)
        lo, hi = ordinal_intervals(h, m, SCALE, seed=s)["qwk"]
        hits += lo <= truth <= hi
        widths.append(hi - lo)
    assert 0.90 <= hits / 200 < 1.0, hits
    assert 0.1 < np.median(widths) < 0.3


def test_intervals_hold_the_point_estimate_and_shrink_with_n():
    p = population()
    small, big = sample(p, 60, 3), sample(p, 2000, 3)
    iv_s, iv_b = ordinal_intervals(*small, SCALE), ordinal_intervals(*big, SCALE)
    for k in ("qwk", "r", "smd", "exact", "adjacent"):
        point = ordinal_agreement(*big, SCALE)[k]
        assert iv_b[k][0] <= point <= iv_b[k][1], k
        assert iv_b[k][1] - iv_b[k][0] < iv_s[k][1] - iv_s[k][0], k
    assert np.isnan(ordinal_intervals([1] * 30, [1] * 30, SCALE)["qwk"]).all()  # one score: QWK undefined


@pytest.mark.parametrize("value,interval,region,status", [
    (0.80, [0.72, 0.88], REGIONS["qwk"], "met"),          # wholly above 0.70
    (0.70, [0.70, 0.75], REGIONS["qwk"], "met"),          # on the bound counts as clearing it (≥)
    (0.75, [0.66, 0.84], REGIONS["qwk"], "uncertain"),    # straddles 0.70
    (0.60, [0.52, 0.69], REGIONS["qwk"], "not met"),      # wholly below
    (0.02, [-0.10, 0.14], REGIONS["smd"], "met"),         # within ±0.15
    (0.10, [0.03, 0.17], REGIONS["smd"], "uncertain"),    # crosses +0.15
    (-0.12, [-0.30, 0.20], REGIONS["smd"], "uncertain"),  # crosses both bounds
    (0.30, [0.16, 0.44], REGIONS["smd"], "not met"),      # wholly beyond +0.15
    (-0.30, [-0.44, -0.16], REGIONS["smd"], "not met"),   # wholly beyond −0.15
    (-0.05, [-0.09, -0.01], REGIONS["degradation_qwk"], "met"),
    (-0.15, [-0.25, -0.11], REGIONS["degradation_qwk"], "not met"),
    (-0.05, [-0.12, 0.02], REGIONS["group_smd"], "uncertain"),
    (float("nan"), [float("nan")] * 2, REGIONS["qwk"], "undefined"),
    (0.80, [float("nan")] * 2, REGIONS["qwk"], "uncertain"),  # a value, no interval: cannot be judged met
])
def test_met_not_met_uncertain_on_hand_made_intervals(value, interval, region, status):
    assert judge(value, interval, region) == status


def test_a_unit_of_20_answers_is_never_met():
    """Even a perfect student: 20 answers cannot show that QWK ≥ 0.70, whatever they are."""
    h = [0, 1, 2, 3] * 5
    u = assess(h, h, labels=SCALE)
    assert u["qwk"] == pytest.approx(1.0) and u["verdict"]["status"] == "too few"
    assert u["verdict"]["line"].startswith(f"model (20 rows): TOO FEW ANSWERS TO JUDGE — fewer than {MIN_ANSWERS}")
    assert "MET —" not in u["verdict"]["line"]
    p = population(0.8)
    for s in range(20):
        h, m = sample(p, 20, s)
        assert assess(h.tolist(), m.tolist(), labels=SCALE)["verdict"]["status"] == "too few"
    # with the bound lowered to 20, the intervals alone still keep 20 answers of a good student from "met"
    statuses = {assess(*(x.tolist() for x in sample(p, 20, s)), labels=SCALE, min_answers=20)["verdict"]["status"]
                for s in range(20)}
    assert "met" not in statuses


def test_enough_answers_of_a_good_student_are_met():
    p = population(0.85)
    h, m = sample(p, 600, 7)
    u = assess(h.tolist(), m.tolist(), labels=SCALE)
    assert u["verdict"]["status"] == "met", u["verdict"]["line"]
    assert u["verdict"]["line"].startswith("model (600 rows): MET — every criterion checked, with its 95 % interval")


def test_a_one_score_student_is_named_as_such():
    h = [0, 1, 2, 2] * 60
    m = [2] * 237 + [1, 1, 0]  # 98.75 % one score
    u = assess(h, m, labels=[0, 1, 2], names={0: "incorrect", 1: "partly", 2: "correct"})
    assert u["one_score"] == {"score": "2", "share": pytest.approx(237 / 240)}
    assert "it gives one score, 2 (correct), to 99% of the answers: a one-score scorer" in u["verdict"]["line"]
    assert u["verdict"]["status"] == "not met"
    constant = assess(h, [2] * 240, labels=[0, 1, 2])
    assert "it gives one score, 2, to 100% of the answers" in constant["verdict"]["line"]
    assert "Pearson r undefined" in constant["verdict"]["line"]
    varied = assess(h, h[::-1], labels=[0, 1, 2])
    assert varied["one_score"] is None and "one-score" not in varied["verdict"]["line"]


def test_the_majority_score_baseline_is_beside_the_student():
    h = [2] * 120 + [1] * 50 + [0] * 30  # 2 is the most frequent human score
    m = [2] * 100 + [1] * 40 + [0] * 60
    u = assess(h, m, labels=[0, 1, 2])
    b = u["baseline"]
    assert b["score"] == "2" and b["exact"] == pytest.approx(0.6) and b["qwk"] == 0.0
    assert b["adjacent"] == pytest.approx(170 / 200)
    assert b["smd"] == pytest.approx(standardized_mean_difference(h, [2] * 200))
    assert "majority-score baseline, always 2: exact agreement 0.600 against the student's" in u["verdict"]["line"]


def test_degradation_and_group_intervals_hold_their_point_values():
    rng = np.random.default_rng(5)
    h = rng.integers(0, 4, 300)
    r2 = np.where(rng.random(300) < 0.8, h, np.clip(h + rng.choice([-1, 1], 300), 0, 3))
    m = np.where(rng.random(300) < 0.6, h, np.clip(h + rng.choice([-1, 1], 300), 0, 3))
    g = np.arange(300) % 2 == 0
    u = assess(h.tolist(), m.tolist(), labels=SCALE, rater2=r2.tolist(),
               groups={"g": np.where(g, "a", "b").tolist()})
    hh = u["human_human"]
    assert hh["intervals"] == degradation_intervals(h, r2, m, SCALE)
    for key in ("degradation_qwk", "degradation_r"):
        lo, hi = hh["intervals"][key]
        assert lo <= hh[key] <= hi and hi - lo < 0.3
    row = u["groups"]["g"][0]
    lo, hi = row["smd_interval"]
    assert lo <= row["smd"] <= hi and row["smd_interval"] == group_smd_interval(h, m, g)


class _Validated:
    """A model whose stored validation rows make --target-accuracy 0.9 flag about 73 % of them."""

    def __init__(self, conf, ok):
        self.outcomes = (conf, ok)

    def validation_outcomes(self):
        return self.outcomes


def test_the_review_table_reaches_the_share_the_chosen_threshold_flags():
    rng = np.random.default_rng(2)
    conf = rng.uniform(0.34, 1.0, 600)
    ok = rng.random(600) < conf ** 3  # only the most confident are right often enough for 0.9
    p = np.stack([conf, 1 - conf], axis=1).astype(np.float32)
    yi = np.where(ok, 0, 1)
    rev = _review(_Validated(conf, ok), p, yi, 0.9)
    v = rev["validation"]
    assert v["here_flagged"] > 0.6  # the case of issue 33: the table stopped at 50 %
    shares = [s["flagged"] for s in rev["steps"]]
    assert max(shares) >= v["here_flagged"] and shares == sorted(shares)
    (chosen,) = [s for s in rev["steps"] if s.get("chosen")]
    assert chosen["threshold"] == v["threshold"] and chosen["flagged"] == v["here_flagged"]
    assert chosen["accuracy"] == pytest.approx(v["here_accuracy"])
    assert [round(s, 1) for s in shares if not s == chosen["flagged"]][:6] == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]


def test_calibration_that_raised_the_ece_is_said():
    def cal(before, after):
        return {"before": {"ece": before, "bins": []}, "after": {"ece": after, "bins": []},
                "temperature": {"model": 1.3}, "stored": {"model": None}}

    assert calibration_worse(cal(0.035, 0.056)) and not calibration_worse(cal(0.056, 0.035))
    assert not calibration_worse(cal(0.035, 0.037))  # within 0.005: no claim
    res = {"units": [], "calibration": cal(0.035, 0.056), "review": {}}
    (line,) = format_verdicts(res)
    assert line.endswith("ECE on these rows 0.035 → 0.056 — on these rows the temperature raised the ECE: the raw "
                         "softmax was the better-calibrated confidence here (these answers differ from the "
                         "validation rows it was fitted on)")
    (line,) = format_verdicts({**res, "calibration": cal(0.056, 0.035)})
    assert line.endswith("0.056 → 0.035")


def test_the_reliability_diagram_leaves_out_bins_of_a_few_rows():
    from tinykd.quality import plots

    bins = [{"lo": 0.3, "hi": 0.4, "n": 1, "confidence": 0.4, "accuracy": 0.0},
            {"lo": 0.6, "hi": 0.7, "n": 4, "confidence": 0.65, "accuracy": 1.0},
            {"lo": 0.8, "hi": 0.9, "n": 40, "confidence": 0.85, "accuracy": 0.8}]
    assert plots.drawn_bins(bins) == bins[2:]
    assert plots.MIN_BIN_ROWS == 5
