"""The measures of ``tinykd report`` (tinykd.quality.metrics, tinykd.quality.evaluate.assess): each against a
case worked by hand and against scikit-learn / SciPy; the criteria and the verdict; subgroups
on synthetic data where one group is scored worse."""
import numpy as np
import pytest
from scipy.stats import pearsonr
from sklearn.metrics import cohen_kappa_score

from tinykd.quality.evaluate import GROUP_SMD_MAX, USE, assess, group_findings, human_human_on, verdict_summary
from tinykd.quality.metrics import (adjacent_agreement, exact_agreement, ordinal_agreement, pearson_r,
                            quadratic_weighted_kappa, standardized_mean_difference)

# worked by hand (see each test): five answers on the scale 0, 1, 2
HUMAN = [0, 1, 1, 2, 0]
MACHINE = [1, 1, 2, 2, 2]


def test_smd_by_hand_and_its_sign():
    # mean(machine) − mean(human) = 1.6 − 0.8 = 0.8; SD(human, ddof 1) = sqrt(2.8 / 4) = 0.83666
    assert standardized_mean_difference(HUMAN, MACHINE) == pytest.approx(0.8 / np.sqrt(0.7), abs=1e-12)
    assert standardized_mean_difference(HUMAN, MACHINE) > 0  # the machine scores higher: positive
    assert standardized_mean_difference(MACHINE, HUMAN) < 0
    h, m = np.array(HUMAN, float), np.array(MACHINE, float)
    assert standardized_mean_difference(h, m) == pytest.approx((m.mean() - h.mean()) / h.std(ddof=1))
    assert standardized_mean_difference(h, m, sd_human=2.0) == pytest.approx(0.4)  # a subgroup: a given SD
    assert np.isnan(standardized_mean_difference([1, 1, 1], [0, 1, 2]))  # no spread in the human scores


def test_exact_and_adjacent_agreement_by_hand():
    assert exact_agreement(HUMAN, MACHINE) == pytest.approx(2 / 5)  # (1, 1) and (2, 2)
    assert adjacent_agreement(HUMAN, MACHINE, [0, 1, 2]) == pytest.approx(4 / 5)  # all but (0, 2)
    # adjacency is one step on the scale, not one unit of value: on 0, 2, 4 a 0 and a 2 are adjacent
    assert adjacent_agreement([0, 4, 0], [2, 2, 4], [0, 2, 4]) == pytest.approx(2 / 3)


def test_qwk_by_hand_and_against_scikit_learn():
    # observed (rows human 0..2, columns machine): [[0,1,1],[0,1,1],[0,0,1]]; weights (i−j)²/4
    # Σ w·O = 0.25 + 1 + 0.25 = 1.5; expected E = outer([2,2,1], [0,2,3]) / 5, Σ w·E = 1.8
    assert quadratic_weighted_kappa(HUMAN, MACHINE, [0, 1, 2]) == pytest.approx(1 - 1.5 / 1.8, abs=1e-12)
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    assert quadratic_weighted_kappa(a, b, [0, 1, 2, 3]) == pytest.approx(
        cohen_kappa_score(a, b, weights="quadratic"), abs=1e-12)


def test_pearson_r_by_hand_and_against_scipy():
    # deviations h: −.8 .2 .2 1.2 −.8, m: −.6 −.6 .4 .4 .4; Σ dh·dm = 0.6, Σ dh² = 2.8, Σ dm² = 1.2
    assert pearson_r(HUMAN, MACHINE) == pytest.approx(0.6 / np.sqrt(2.8 * 1.2), abs=1e-12)
    rng = np.random.default_rng(4)
    a = rng.integers(0, 4, 100)
    b = np.clip(a + rng.integers(-1, 2, 100), 0, 3)
    assert pearson_r(a, b) == pytest.approx(pearsonr(a, b)[0], abs=1e-12)
    assert np.isnan(pearson_r([0, 1, 2], [1, 1, 1]))  # a constant side: undefined, not an error


def test_ordinal_agreement_gathers_the_measures():
    m = ordinal_agreement(HUMAN, MACHINE, [0, 1, 2])
    assert m["n"] == 5 and m["human_mean"] == pytest.approx(0.8) and m["machine_mean"] == pytest.approx(1.6)
    assert m["human_sd"] == pytest.approx(np.sqrt(0.7)) and m["machine_sd"] == pytest.approx(np.sqrt(0.3))
    assert (m["exact"], m["adjacent"]) == pytest.approx((0.4, 0.8))
    assert m["qwk"] == pytest.approx(1 / 6) and m["r"] == pytest.approx(0.6 / np.sqrt(3.36))


def test_assess_criteria_degradation_and_verdict():
    h = [0, 1, 2, 3] * 50
    good = assess(h, h, labels=[0, 1, 2, 3], rater2=h)
    assert good["qwk"] == pytest.approx(1.0) and good["smd"] == 0.0 and good["accuracy"] == 1.0
    assert good["human_human"]["degradation_qwk"] == pytest.approx(0.0)
    assert good["verdict"]["status"] == "met" and "MET — every criterion checked" in good["verdict"]["line"]
    assert {c["criterion"]: c["met"] for c in good["checks"]} == {
        "qwk": True, "r": True, "smd": True, "degradation_qwk": True, "degradation_r": True, "group_smd": None}

    off = [min(v + 1, 3) for v in h]  # one point too high: SMD ≈ +0.67, QWK 0.700 (its interval straddles 0.70)
    u = assess(h, off, labels=[0, 1, 2, 3], rater2=h)
    checks = {c["criterion"]: c for c in u["checks"]}
    assert checks["smd"]["met"] is False and checks["smd"]["interval"][0] > 0.15
    assert checks["qwk"]["value"] == pytest.approx(0.7) and checks["qwk"]["status"] == "uncertain"
    assert checks["qwk"]["met"] is None and checks["qwk"]["interval"][0] < 0.7 < checks["qwk"]["interval"][1]
    assert checks["r"]["status"] == "met" and checks["r"]["interval"][0] >= 0.7
    deg = u["human_human"]["degradation_qwk"]
    assert deg == pytest.approx(u["qwk"] - 1.0) and checks["degradation_qwk"]["status"] == "not met"
    assert checks["degradation_qwk"]["interval"][1] < -0.10
    assert u["verdict"]["status"] == "not met" and "SMD +" in u["verdict"]["line"].split("|")[0]
    assert "| uncertain: QWK 0.700 [" in u["verdict"]["line"] and "straddles 0.70" in u["verdict"]["line"]
    no_r2 = assess(h, off, labels=[0, 1, 2, 3])
    assert "not checked: degradation (no second rater)" in no_r2["verdict"]["line"]


def test_human_human_from_other_rows_stands_in_when_the_rows_judged_have_no_second_score():
    """ASAP-SAS has score2 on its training rows only: the human–human QWK of the item's other rows is the
    reference, and the degradation is the machine's QWK (and its interval) on the judged rows minus it."""
    rng = np.random.default_rng(0)
    h1 = rng.integers(0, 4, 300).tolist()
    h2 = [v if i % 5 else min(v + 1, 3) for i, v in enumerate(h1)]
    ref = human_human_on(h1 + [2], h2 + [None], [0, 1, 2, 3], "the other rows")  # the row without a 2nd score left out
    assert ref["n"] == 300 and ref["rows"] == "the other rows"
    assert ref["qwk"] == pytest.approx(cohen_kappa_score(h1, h2, weights="quadratic"), abs=1e-12)
    assert ref["r"] == pytest.approx(pearsonr(h1, h2)[0], abs=1e-12)
    assert human_human_on([1, 2], [None, None], [0, 1, 2, 3], "x") is None
    h = [0, 1, 2, 3] * 50
    off = [min(v + 1, 3) for v in h]
    for rater2 in (None, [None] * len(h)):  # no column, or a column empty on these rows
        u = assess(h, off, labels=[0, 1, 2, 3], rater2=rater2, human_human=ref, name="x")
        hh, c = u["human_human"], {k["criterion"]: k for k in u["checks"]}
        assert hh["degradation_qwk"] == pytest.approx(u["qwk"] - ref["qwk"], abs=1e-12)
        assert hh["degradation_r"] == pytest.approx(u["r"] - ref["r"], abs=1e-12)
        assert c["degradation_qwk"]["interval"] == pytest.approx([v - ref["qwk"] for v in u["intervals"]["qwk"]])
        assert "human–human on the other rows, 300 rows" in c["degradation_qwk"]["text"]
        assert f"human–human QWK {ref['qwk']:.3f} on the other rows (300 rows)" in verdict_summary(u)
    own = assess(h, off, labels=[0, 1, 2, 3], rater2=h, human_human=ref)  # the rows' own second scores win
    assert own["human_human"]["qwk"] == pytest.approx(1.0) and "rows" not in own["human_human"]


def test_verdict_summary_names_each_criterion_its_status_and_the_verdict():
    """``tinykd distill``'s compact verdict line: each criterion as the verdict line shows it, with its own
    status; those not checked and why; the verdict's status and what to do (the verdict's own words)."""
    h = [0, 1, 2, 3] * 50
    off = [min(v + 1, 3) for v in h]  # as above: SMD not met, QWK uncertain, r met
    u = assess(h, off, labels=[0, 1, 2, 3], name="item Q1: teacher")
    c = {k["criterion"]: k for k in u["checks"]}
    qwk_iv, r_iv = c["qwk"]["interval"], c["r"]["interval"]
    assert verdict_summary(u) == (
        f"item Q1: teacher (200 rows): NOT MET — QWK 0.700 [{qwk_iv[0]:.3f}, {qwk_iv[1]:.3f}] straddles 0.70: "
        f"uncertain; Pearson r {u['r']:.3f} [{r_iv[0]:.3f}, {r_iv[1]:.3f}] ≥ 0.70: met; "
        f"SMD {u['smd']:+.3f} [{c['smd']['interval'][0]:.3f}, {c['smd']['interval'][1]:.3f}] beyond ±0.15: "
        "not met; degradation not checked (no second rater); subgroups not checked (no groups) → do not let it "
        "score alone: keep a human rater (or review what it flags)")
    with_r2 = verdict_summary(assess(h, off, labels=[0, 1, 2, 3], rater2=h, name="x"))
    assert "QWK degradation -0.300 [" in with_r2 and "< -0.10: not met" in with_r2 and "no second rater" not in with_r2
    good = verdict_summary(assess(h, h, labels=[0, 1, 2, 3], rater2=h, name="x"))
    assert good.startswith("x (200 rows): MET — QWK 1.000") and good.endswith(" → " + USE["met"])
    few = verdict_summary(assess(h[:20], h[:20], labels=[0, 1, 2, 3], name="x"))
    assert few.startswith("x (20 rows): TOO FEW ANSWERS TO JUDGE — ") and few.endswith(USE["too few"])
    nominal = assess(["a", "b"] * 10, ["a", "a"] * 10, labels=["a", "b"], ordinal=False, name="x")
    assert verdict_summary(nominal) == "x (20 rows): NO VERDICT (nominal scores)"


def test_assess_nominal_labels_says_the_ordinal_measures_do_not_apply():
    h = ["correct", "wrong", "partial"] * 20
    u = assess(h, h[::-1], labels=["correct", "partial", "wrong"], ordinal=False)
    assert "qwk" not in u and "smd" not in u and u["checks"] == []
    assert u["verdict"]["status"] == "not applicable"
    assert "do not apply" in u["verdict"]["line"] and "nominal" in u["verdict"]["line"]
    assert u["kappa"] == pytest.approx(cohen_kappa_score(h, h[::-1]))


def test_a_group_scored_worse_is_named():
    """Synthetic: group B's answers get a machine score one point too low on 60% of its rows;
    group A is scored like the humans (up to noise). The report must flag B, and not A."""
    rng = np.random.default_rng(0)
    n = 600
    h = rng.integers(0, 4, n)
    g = np.where(np.arange(n) % 2 == 0, "A", "B")
    m = h.copy()
    noise = rng.random(n) < 0.1
    m[noise] = np.clip(h[noise] + rng.choice([-1, 1], noise.sum()), 0, 3)
    worse = (g == "B") & (rng.random(n) < 0.6)
    m[worse] = np.clip(m[worse] - 1, 0, 3)
    small = np.array(["s" if i < 5 else "big" for i in range(n)])  # a 5-row group: listed, not judged
    u = assess(h.tolist(), m.tolist(), labels=[0, 1, 2, 3], groups={"gender": g.tolist(), "size": small.tolist()})
    rows = {r["group"]: r for r in u["groups"]["gender"]}
    sd = np.std(h, ddof=1)
    for name in ("A", "B"):
        k = g == name
        assert rows[name]["smd"] == pytest.approx((m[k].mean() - h[k].mean()) / sd)  # the unit's SD
        assert rows[name]["n"] == k.sum() and rows[name]["accuracy"] == pytest.approx(np.mean(m[k] == h[k]))
        rest = ~k
        assert rows[name]["vs_rest"]["accuracy"] == pytest.approx(np.mean(m[k] == h[k]) - np.mean(m[rest] == h[rest]))
    assert rows["B"]["smd"] < -GROUP_SMD_MAX and abs(rows["A"]["smd"]) <= GROUP_SMD_MAX
    assert rows["B"]["vs_rest"]["accuracy"] < -0.2 and rows["B"]["vs_rest"]["qwk"] < 0
    group_checks = {tuple(c["group"]): c["met"] for c in u["checks"] if c["criterion"] == "group_smd"}
    assert group_checks[("gender", "B")] is False and group_checks[("gender", "A")] is True
    assert ("size", "s") not in group_checks and not {r["group"]: r for r in u["groups"]["size"]}["s"]["judged"]
    failed = u["verdict"]["line"].split("|")[0]
    assert u["verdict"]["status"] == "not met" and "gender = B" in failed and "gender = A" not in failed
    finds = [f for f in group_findings(u) if f.startswith("gender")]  # ("size = big" is ~all rows: fails too)
    assert len(finds) == 1 and finds[0].startswith("gender = B") and "lower than the humans" in finds[0]


def test_an_absent_class_gives_no_warning_and_the_same_numbers():
    """Truth and prediction all class 0 of the labels 0, 1: kappa is undefined (scikit-learn warns);
    tinykd's measures say so without a warning, with the numbers they always had."""
    import warnings

    from tinykd.quality.metrics import classification_details, cohen_kappa, scoring_metrics

    y, p = [0, 0, 0], [0, 0, 0]
    with warnings.catch_warnings(record=True) as raw:
        warnings.simplefilter("always")
        assert np.isnan(cohen_kappa_score(y, p, labels=[0, 1], weights="quadratic"))
    assert raw, "scikit-learn no longer warns here: this test checks nothing"
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        m = scoring_metrics(y, p, labels=[0, 1])
        d = classification_details(y, p, [0, 1])
        qwk, kappa = quadratic_weighted_kappa(y, p, [0, 1]), cohen_kappa(y, p, [0, 1])
        per_item = ordinal_agreement(y, p, [0, 1])
    assert [str(w.message) for w in seen] == []
    assert m == {"n": 3, "accuracy": 1.0, "qwk": 0.0, "macro_f1": 0.5}  # F1 of class 1 is 0 (zero_division)
    assert d["per_class"]["1"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert d["confusion_matrix"] == [[3, 0], [0, 0]]
    assert np.isnan(qwk) and np.isnan(kappa) and np.isnan(per_item["qwk"]) and per_item["exact"] == 1.0
    # a class absent from the truth only, kappa defined: the same value as scikit-learn's
    m = scoring_metrics([0, 0, 1, 1], [0, 1, 1, 2], labels=[0, 1, 2])
    assert m["qwk"] == pytest.approx(cohen_kappa_score([0, 0, 1, 1], [0, 1, 1, 2], weights="quadratic"), abs=1e-12)
    assert m["accuracy"] == 0.5
