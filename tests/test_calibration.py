"""Calibrated confidence and the review threshold (tinykd.scoring.calibration, the Scorer's temperature,
what tinykd.fit stores): ECE and bins by hand, the fitted temperature is the NLL optimum, the
NumPy and Numba paths apply it alike, older files load uncalibrated, calibration lowers the
validation ECE on real data (the demo's SciEntsBank answers), and a threshold chosen for a
target accuracy reaches it on the rows it was chosen on."""
import json
import zipfile

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinykd
from tinykd.cli import demo
from tinykd.scoring.calibration import (MIN_CALIBRATION_ROWS, calibrated_proba, confidence_and_correct,
                                expected_calibration_error, fit_temperature, nll, reliability_bins, review_curve,
                                review_threshold)
from tinykd.nn.network import StudentNet, make_config
from tinykd.nn.dense import softmax
from tinykd.scoring.scorer import Scorer
from tinykd.settings import Settings

from conftest import assert_user_error, run_cli, write_csv


# ----------------------------------------------------------------------------- by hand
def test_reliability_bins_and_ece_by_hand():
    conf = [0.05, 0.1, 0.15, 0.55, 0.6, 0.95, 1.0]
    ok = [0, 1, 0, 1, 1, 1, 0]
    bins = reliability_bins(conf, ok, n_bins=2)  # (0, 0.5], (0.5, 1]; 0 falls in the first
    assert [b["n"] for b in bins] == [3, 4]
    assert bins[0]["confidence"] == pytest.approx(0.1) and bins[0]["accuracy"] == pytest.approx(1 / 3)
    assert bins[1]["confidence"] == pytest.approx(0.775) and bins[1]["accuracy"] == pytest.approx(0.75)
    # ECE = 3/7 · |1/3 − 0.1| + 4/7 · |0.75 − 0.775|
    assert expected_calibration_error(conf, ok, n_bins=2) == pytest.approx(3 / 7 * (1 / 3 - 0.1) + 4 / 7 * 0.025)
    assert reliability_bins([0.1], [1], n_bins=10)[0]["n"] == 1  # 0.1 is in (0, 0.1]
    assert reliability_bins([0.0], [1], n_bins=10)[0]["n"] == 1
    assert reliability_bins([1.0], [1], n_bins=10)[-1]["n"] == 1


def test_fitted_temperature_is_the_nll_optimum():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 400)
    z = rng.normal(0, 1, (400, 3))
    z[np.arange(400), y] += 1.0
    for scale in (0.3, 1.0, 4.0):  # under-, about- and over-confident logits
        t = fit_temperature(z * scale, y)
        grid = np.exp(np.linspace(np.log(0.05), np.log(20), 4001))
        best = grid[np.argmin([nll(z * scale, y, g) for g in grid])]
        assert t == pytest.approx(best, rel=0.01)
        assert nll(z * scale, y, t) <= min(nll(z * scale, y, 1.0), nll(z * scale, y, best)) + 1e-9
    assert fit_temperature(z * 4.0, y) > 2 > 0.5 > fit_temperature(z * 0.3, y)  # softens / sharpens
    # argmax never moves
    assert np.array_equal(calibrated_proba(z, 3.0).argmax(1), z.argmax(1))


def test_review_curve_and_threshold_by_hand():
    conf = [0.9, 0.8, 0.8, 0.6, 0.4]
    ok = [1, 1, 0, 1, 0]
    thr, flagged, acc = review_curve(conf, ok)
    # flag nothing (3/5 right), flag 0.4 (3/4), flag 0.6 and 0.4 (2/3), keep only 0.9 (1/1)
    np.testing.assert_allclose(flagged, [0, 0.2, 0.4, 0.8])
    np.testing.assert_allclose(acc, [0.6, 0.75, 2 / 3, 1.0])
    np.testing.assert_allclose(thr, [0.0, 0.5, 0.7, 0.85])  # halfway between neighbouring confidences
    assert review_threshold(conf, ok, 0.7) == pytest.approx(
        {"threshold": 0.5, "flagged": 0.2, "accuracy": 0.75, "n": 5, "target": 0.7})
    assert review_threshold(conf, ok, 0.8)["threshold"] == pytest.approx(0.85)  # 2/3 is not enough: the least flagging that is
    assert review_threshold(conf, ok, 0.5)["flagged"] == 0.0
    with pytest.raises(ValueError, match="no review threshold reaches"):
        review_threshold([0.9, 0.8], [0, 1], 0.9)
    with pytest.raises(tinykd.OptionError, match="target_accuracy"):
        review_threshold(conf, ok, 1.5)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 20), st.booleans()), min_size=1, max_size=60),
       st.floats(0.05, 1.0))
def test_chosen_threshold_reaches_the_target_on_its_rows_and_flags_least(rows, target):
    conf = np.array([c / 20 for c, _ in rows])
    ok = np.array([k for _, k in rows])
    try:
        ch = review_threshold(conf, ok, target)
    except ValueError:  # then no set of the most confident rows reaches it
        for t in np.unique(conf):
            assert ok[conf >= t].mean() < target
        return
    kept = conf >= ch["threshold"]
    assert kept.any() and ok[kept].mean() >= target - 1e-12
    assert ch["flagged"] == pytest.approx(1 - kept.mean()) and ch["accuracy"] == pytest.approx(ok[kept].mean())
    for t in np.unique(conf):  # no threshold that flags fewer rows reaches the target
        if (conf >= t).mean() > kept.mean():
            assert ok[conf >= t].mean() < target


# ------------------------------------------------------------------------ the scorer
@pytest.mark.parametrize("preset", ["7t", "bathtub"])
def test_numpy_and_numba_paths_apply_the_same_temperature(rng, preset):
    V, n, L, T = 40, 50, 10, 2.5
    net = StudentNet(make_config(preset), V, 3, seed=1)
    net.params[:] += rng.normal(0, 0.3, net.size).astype(np.float32)
    ids = rng.integers(0, V, size=(n, L)).astype(np.int32)
    lengths = rng.integers(0, L + 1, n).astype(np.int32)
    z, _ = net.forward(ids, lengths)
    ref = softmax(z.astype(np.float64) / T)
    got = {}
    for jit in ("always", "never"):
        sc = Scorer(net.copy(), Settings(jit=jit), temperature=T)
        got[jit] = sc.predict_proba(ids, lengths)
        one = sc.predict_proba(ids[3:4], lengths[3:4])  # the one-answer path
        np.testing.assert_allclose(one, ref[3:4], atol=2e-5)
        raw = sc.predict_proba(ids, lengths, calibrated=False)
        np.testing.assert_array_equal(raw, Scorer(net.copy(), Settings(jit=jit)).predict_proba(ids, lengths))
        assert np.array_equal(raw.argmax(1), got[jit].argmax(1))
    np.testing.assert_allclose(got["always"], ref, atol=2e-5)
    np.testing.assert_allclose(got["never"], ref, atol=2e-5)
    np.testing.assert_allclose(got["always"], got["never"], atol=2e-5)
    assert np.abs(ref - softmax(z.astype(np.float64))).max() > 0.05  # the temperature did something
    with pytest.raises(tinykd.OptionError, match="temperature"):
        Scorer(net.copy(), temperature=0.0)


# ------------------------------------------------------------- what a model file holds
def _toy(n=200, seed=0):
    rng = np.random.default_rng(seed)
    good, bad = "acid rain dissolves marble calcium".split(), "rock wet cold nothing maybe".split()
    y = rng.integers(0, 2, n)
    texts = [" ".join(rng.choice(good if k else bad, 3).tolist() + rng.choice(good + bad, 3).tolist()) for k in y]
    return texts, y


def _without_calibration(src, dst):
    """A copy of a model file as tinykd wrote it before calibration (no calibration, no stored
    validation predictions)."""
    with np.load(src) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays["meta.json"].tobytes())
    for sm in meta["students"].values():
        sm["meta"].pop("calibration")
        sm["meta"].pop("validation_predictions")
    arrays["meta.json"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez_compressed(dst, **arrays)
    assert zipfile.is_zipfile(dst)


def test_older_files_load_uncalibrated_and_info_says_so(tmp_path, capsys):
    texts, y = _toy(n=320)
    st_ = tinykd.fit(texts, y, config=dict(embed_dim=8, units=8, dense_units=8), epochs=3, verbose=False)
    cal = st_.meta["calibration"]
    assert cal["method"] == "temperature" and cal["n_val"] == 40 and st_.temperature == cal["temperature"] != 1.0
    assert len(st_.meta["validation_predictions"]["y"]) == 40
    st_.save(tmp_path / "new.npz")
    _without_calibration(tmp_path / "new.npz", tmp_path / "old.npz")
    old, new = tinykd.load(tmp_path / "old.npz"), tinykd.load(tmp_path / "new.npz")
    assert old.temperature == 1.0 and old.validation_outcomes() is None
    np.testing.assert_array_equal(old.predict_proba(texts), new.predict_proba(texts, calibrated=False))
    assert not np.allclose(new.predict_proba(texts), new.predict_proba(texts, calibrated=False))
    rc, out, _ = run_cli(capsys, "info", tmp_path / "old.npz")
    assert rc == 0 and "calibration: none — this file was written before tinykd calibrated confidence" in out
    rc, out, _ = run_cli(capsys, "info", tmp_path / "new.npz")
    assert rc == 0 and f"calibration: temperature {cal['temperature']:.3f} fitted on 40 validation rows" in out
    data = write_csv(tmp_path / "d.csv", [{"text": t} for t in texts[:5]])
    rc, _, err = run_cli(capsys, "score", tmp_path / "old.npz", data, "--out", tmp_path / "s.csv",
                         "--target-accuracy", "0.9")
    assert_user_error(rc, err, "holds no validation predictions", "--review-below")


def test_too_few_validation_rows_fit_no_temperature():
    texts, y = _toy(n=8 * (MIN_CALIBRATION_ROWS - 1))  # a 1/8 holdout just under the minimum
    st_ = tinykd.fit(texts, y, config=dict(embed_dim=8, units=8, dense_units=8), epochs=1, verbose=False)
    assert st_.meta["calibration"]["temperature"] is None and st_.temperature == 1.0
    assert any("fewer than the 30 a temperature needs" in n for n in st_.meta["notes"])
    none = tinykd.fit(texts[:9], y[:9], config=dict(embed_dim=8, units=8, dense_units=8), epochs=1, verbose=False)
    assert none.meta["calibration"]["n_val"] == 0 and none.temperature == 1.0


def test_score_target_accuracy_picks_the_threshold_and_says_what_it_flags(tmp_path, capsys):
    texts, y = _toy(n=400, seed=1)
    st_ = tinykd.fit(texts, y, config=dict(embed_dim=8, units=8, dense_units=8), epochs=4, verbose=False)
    st_.save(tmp_path / "m.npz")
    conf, ok = st_.validation_outcomes()
    target = float(min(0.95, np.round(ok.mean() + 0.5 * (1 - ok.mean()), 2)))  # above the plain accuracy
    ch = review_threshold(conf, ok, target)
    data = write_csv(tmp_path / "d.csv", [{"text": t} for t in texts])
    rc, out, err = run_cli(capsys, "score", tmp_path / "m.npz", data, "--out", tmp_path / "s.csv",
                           "--target-accuracy", target)
    assert rc == 0, err
    assert f"--target-accuracy {target:g}: --review-below {ch['threshold']:.4f}" in out
    assert f"it flags {ch['flagged']:.1%}" in out and f"the rest are {ch['accuracy']:.1%} right" in out
    import csv
    with open(tmp_path / "s.csv") as f:
        got = list(csv.DictReader(f))
    flagged = np.array([r["needs_review"] == "1" for r in got])
    conf_col = np.array([float(r["confidence"]) for r in got])
    assert np.array_equal(flagged, conf_col < ch["threshold"]) or \
        np.abs(conf_col[flagged != (conf_col < ch["threshold"])] - ch["threshold"]).max() < 1e-4  # 4 decimals
    rc, _, err = run_cli(capsys, "score", tmp_path / "m.npz", data, "--out", tmp_path / "s.csv",
                         "--target-accuracy", "0.9", "--review-below", "0.5")
    assert_user_error(rc, err, "not both")
    rc, _, err = run_cli(capsys, "score", tmp_path / "m.npz", data, "--out", tmp_path / "s.csv",
                         "--target-accuracy", "1.5")
    assert_user_error(rc, err, "--target-accuracy must be in (0, 1]")


# ------------------------------------------------------------------ on real answers
@pytest.fixture(scope="module")
def scientsbank():
    """A small student on the demo's SciEntsBank training answers, with its validation rows
    given explicitly (a seeded stratified 1/8, as tinykd.fit would hold out)."""
    from tinykd.train.splits import holdout

    rows = [r for r in demo.load_data() if r["split"] == "train"]
    y = np.array([int(r["label"]) for r in rows])
    tr, va = holdout(y, 0.125, seed=0)
    take = lambda idx, k: [rows[i][k] for i in idx]  # noqa: E731
    val = (take(va, "text"), y[va], take(va, demo.CONTEXT))
    st_ = tinykd.fit(take(tr, "text"), y[tr], contexts=take(tr, demo.CONTEXT), validation=val,
                     config=dict(embed_dim=16, units=16, dense_units=16, max_len=64), epochs=8, patience=8,
                     verbose=False)  # a little past its best epoch, overconfident as trained students are
    return st_, val


def test_calibration_lowers_the_validation_ece_on_real_data(scientsbank):
    st_, (v_texts, v_y, v_ctx) = scientsbank
    cal = st_.meta["calibration"]
    assert cal["n_val"] == len(v_y) > 500
    assert cal["temperature"] > 1  # it softens
    assert cal["val_ece_after"] < cal["val_ece_before"] and cal["val_nll_after"] <= cal["val_nll_before"]
    # the same numbers from the live scorer on the validation rows
    before = expected_calibration_error(*confidence_and_correct(
        st_.predict_proba(v_texts, v_ctx, calibrated=False), v_y))
    after = expected_calibration_error(*confidence_and_correct(st_.predict_proba(v_texts, v_ctx), v_y))
    assert before == pytest.approx(cal["val_ece_before"], abs=2e-3)
    assert after == pytest.approx(cal["val_ece_after"], abs=2e-3)
    assert after < before


def test_the_threshold_for_a_target_reaches_it_on_the_validation_rows(scientsbank):
    st_, (v_texts, v_y, v_ctx) = scientsbank
    stored_conf, stored_ok = st_.validation_outcomes()
    assert len(stored_conf) == len(v_y)
    for target in (0.75, 0.8, 0.9):
        ch = review_threshold(stored_conf, stored_ok, target)
        assert 0 < ch["flagged"] < 1
        conf, ok = confidence_and_correct(st_.predict_proba(v_texts, v_ctx), v_y)  # scored again, live
        kept = conf >= ch["threshold"]
        assert ok[kept].mean() >= target
        assert kept.mean() == pytest.approx(1 - ch["flagged"], abs=1e-9)
