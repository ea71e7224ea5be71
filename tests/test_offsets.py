"""Per-class decision offsets (tinykd.train.offsets) and their folding into a student's output bias."""
import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from tinykd.train.offsets import GRID, MIN_ROWS, accuracy_qwk, fit_offsets, fit_offsets_bagged


def test_accuracy_qwk_equals_scikit_learn():
    rng = np.random.default_rng(0)
    for K in (2, 3, 5):
        y = rng.integers(0, K, 300)
        pred = np.where(rng.random(300) < 0.6, y, rng.integers(0, K, 300))
        a, q = accuracy_qwk(y, pred, K)
        assert a == pytest.approx(np.mean(y == pred), abs=1e-15)
        assert q == pytest.approx(cohen_kappa_score(y, pred, labels=list(range(K)), weights="quadratic"), abs=1e-12)
    assert accuracy_qwk([0, 0, 0], [0, 0, 0], 3) == (1.0, 0.0)  # one class only: QWK undefined, 0


def test_a_change_that_lowers_qwk_is_refused_though_it_raises_accuracy():
    y = np.array([0] * 40 + [1] * 40 + [2] * 20)
    z = np.zeros((100, 3))
    z[np.arange(100), y] = 2.0
    z[80:86] = [0.0, 1.0, 0.6]  # six 2s scored 1, near the 2 boundary
    z[0:4] = [1.0, 0.0, 0.6]    # four 0s near the 2 boundary
    before = accuracy_qwk(y, z.argmax(1), 3)
    moved = accuracy_qwk(y, (z + [0, 0, 0.5]).argmax(1), 3)
    # +0.5 on class 2: six 1 → 2 fixed, four 0 → 2 made: accuracy 0.94 → 0.96, QWK 0.942 → 0.861
    assert moved[0] == pytest.approx(0.96) and before[0] == pytest.approx(0.94) and moved[1] < before[1] - 0.05
    b, b_before, after = fit_offsets(z, y, grid=(0.0, 0.5))
    assert not b.any() and after == b_before


def test_fit_offsets_finds_the_rare_class_and_keeps_zero_when_nothing_helps():
    rng = np.random.default_rng(1)
    n = 600
    y = rng.choice(3, n, p=[0.7, 0.2, 0.1])
    z = rng.normal(0, 1, (n, 3))
    z[np.arange(n), y] += 2.0
    z[:, 2] -= 2.5  # class 2 under-predicted: its logit 2.5 too low
    b, before, after = fit_offsets(z, y)
    assert b[0] == 0 and b[2] >= 1.0 and after > before
    # the reported scores are those of argmax(z + b)
    assert after == tuple(round(v, 12) for v in accuracy_qwk(y, (z + b).argmax(1), 3))
    # neither measure is ever lowered, and no point of the whole grid beats the result in one measure
    # without losing in the other
    assert after[0] >= before[0] and after[1] >= before[1]
    for u in GRID:
        for v in GRID:
            a, q = (round(x, 12) for x in accuracy_qwk(y, (z + np.array([0, u, v])).argmax(1), 3))
            assert not (a >= after[0] and q >= after[1] and (a, q) != after)
    # well-calibrated logits: no offset helps on these rows, so none is chosen
    z2 = rng.normal(0, 1, (n, 3))
    z2[np.arange(n), y] += 6.0
    b2, before2, after2 = fit_offsets(z2, y)
    assert not b2.any() and before2 == after2 == (1.0, 1.0)


def _rare_class_rows():
    """480 answers of six words in three classes, class 2 (1 row in 12) sharing words with both others."""
    rng = np.random.default_rng(2)
    words = ["sun", "moon", "rain", "wind", "snow", "star", "cloud", "storm"]
    texts, y = [], []
    for i in range(480):
        k = 2 if i % 12 == 0 else i % 2
        texts.append(" ".join(rng.choice(words[:4] if k == 0 else words[4:] if k == 1 else words[2:6], 6)))
        y.append(k)
    return texts, y


def test_fit_folds_the_offsets_into_the_output_bias(tmp_path):
    from tinykd.train.fitting import fit

    texts, y = _rare_class_rows()
    val = (texts[:160], y[:160])
    on = fit(texts[160:], y[160:], validation=val, preset="falling_weights", epochs=3, seed=0, verbose=False)
    off = fit(texts[160:], y[160:], validation=val, preset="falling_weights", epochs=3, seed=0, verbose=False,
              offsets=False)
    d = on.meta["decision_offsets"]
    assert "decision_offsets" not in off.meta and d["n_val"] == 160 >= MIN_ROWS
    b = np.asarray(d["offsets"], dtype=np.float32)
    assert b.any()  # class 2 (1 in 12 rows) after 3 epochs: the arg-max misses it, an offset helps
    # the same training: the weights differ by the offsets on the output bias only
    assert np.array_equal(on.net.p["out.b"], off.net.p["out.b"] + b)
    rest = [k for k in on.net.p if k != "out.b"]
    assert all(np.array_equal(on.net.p[k], off.net.p[k]) for k in rest)
    # the validation metrics are those of the model as saved, and no worse than without offsets
    pred = on.predict(val[0])
    assert on.meta["validation_metrics"]["accuracy"] == pytest.approx(np.mean(np.asarray(pred) == np.asarray(val[1])))
    assert (d["validation_after"]["accuracy"], d["validation_after"]["qwk"]) >= \
           (d["validation_before"]["accuracy"], d["validation_before"]["qwk"])
    assert d["validation_before"]["accuracy"] == pytest.approx(off.meta["validation_metrics"]["accuracy"])
    # the model file keeps them (in the bias, and recorded), and tinykd info names them
    from tinykd.cli.info import describe, format_description

    import tinykd

    on.save(tmp_path / "m.npz")
    back = tinykd.load(tmp_path / "m.npz")
    assert np.array_equal(back.net.p["out.b"], on.net.p["out.b"])
    line = next(x for x in format_description(describe(tmp_path / "m.npz")) if "decision offsets" in x)
    want = ", ".join(f"{c} {v:+g}" for c, v in zip(on.classes, d["offsets"]) if v)
    assert line == f"  decision offsets: {want} (chosen on 160 validation rows, in the output bias)"
    # too few validation rows: no offsets, and the reason recorded
    few = fit(texts[160:], y[160:], validation=(texts[:60], y[:60]), preset="falling_weights", epochs=1, seed=0,
              verbose=False)
    assert not any(few.meta["decision_offsets"]["offsets"]) and "fewer than" in few.meta["decision_offsets"]["reason"]


def test_offsets_plain_gives_offsets_to_a_student_without_a_teacher_only():
    """offsets="plain" (docs/decisions/student-offsets.md): the plain NN's offsets as with True, bit for bit; a KD
    student none, its weights those of offsets=False; any other value refused naming the option; a students'
    stage key of its own."""
    from tinykd.distill.stages import students_key
    from tinykd.errors import OptionError
    from tinykd.train.fitting import fit
    from tinykd.train.options import TrainOptions

    texts, y = _rare_class_rows()
    val, kw = (texts[:160], y[:160]), dict(preset="falling_weights", epochs=3, seed=0, verbose=False)
    plain = fit(texts[160:], y[160:], validation=val, offsets="plain", **kw)
    on = fit(texts[160:], y[160:], validation=val, **kw)
    assert plain.meta["decision_offsets"] == on.meta["decision_offsets"] and any(on.meta["decision_offsets"]["offsets"])
    assert np.array_equal(plain.net.params, on.net.params)
    p = np.eye(3)[np.asarray(y[160:])] * 0.8 + 0.2 / 3
    kd = fit(texts[160:], y[160:], p, validation=val, offsets="plain", **kw)
    kd_off = fit(texts[160:], y[160:], p, validation=val, offsets=False, **kw)
    assert "decision_offsets" not in kd.meta and np.array_equal(kd.net.params, kd_off.net.params)
    assert kd.meta["validation_metrics"] == kd_off.meta["validation_metrics"]
    with pytest.raises(OptionError, match="offsets must be True, False, \"plain\" or \"bagged\""):
        TrainOptions(offsets="kd")
    keys = {v: students_key("L", "auto", ("bathtub", "7t"), (4.0,), TrainOptions(offsets=v), "rule", "v")
            for v in (True, False, "plain", "bagged")}
    assert len(set(keys.values())) == 4


def test_bagged_offsets_are_the_mean_of_the_bootstrap_fits():
    """fit_offsets_bagged: the mean of fit_offsets over resamples drawn with the seed (rebuilt here by hand),
    scores measured on all the rows; one class's shift found in every resample, a chance one shrunk."""
    rng = np.random.default_rng(1)
    n = 400
    y = rng.choice(3, n, p=[0.6, 0.3, 0.1])
    z = rng.normal(0, 1, (n, 3))
    z[np.arange(n), y] += 2.0
    z[:, 2] -= 2.5  # class 2 under-predicted
    b, before, after = fit_offsets_bagged(z, y, seed=7, bags=5)
    draw = np.random.default_rng(7)
    picks = [draw.integers(0, n, n) for _ in range(5)]
    want = np.round(np.mean([fit_offsets(z[p], y[p])[0] for p in picks], axis=0), 4)
    assert np.array_equal(b, want) and b[0] == 0 and b[2] >= 1.0
    assert before == accuracy_qwk(y, z.argmax(1), 3) and after == accuracy_qwk(y, (z + b).argmax(1), 3)
    assert np.array_equal(fit_offsets_bagged(z, y, seed=7, bags=5)[0], b)  # the seed fixes it
    # a single fit on pure noise picks some offset; the bags average such picks towards 0
    noise = rng.normal(0, 1, (n, 3))
    yn = rng.integers(0, 3, n)
    one, bag = fit_offsets(noise, yn)[0], fit_offsets_bagged(noise, yn, seed=0)[0]
    assert np.abs(bag).sum() < np.abs(one).sum() or not one.any()
    with pytest.raises(ValueError, match="bags"):
        fit_offsets_bagged(z, y, bags=0)


def test_offsets_bagged_reach_every_student_and_the_model_file():
    from tinykd.train.fitting import fit

    texts, y = _rare_class_rows()
    val, kw = (texts[:160], y[:160]), dict(preset="falling_weights", epochs=3, seed=0, verbose=False)
    on = fit(texts[160:], y[160:], validation=val, **kw)
    bag = fit(texts[160:], y[160:], validation=val, offsets="bagged", **kw)
    p = np.eye(3)[np.asarray(y[160:])] * 0.8 + 0.2 / 3
    kd = fit(texts[160:], y[160:], p, validation=val, offsets="bagged", **kw)
    for s in (bag, kd):
        d = s.meta["decision_offsets"]
        assert d["bagged"] == 32 and d["offsets"][0] == 0.0
    # the same training as with offsets=True: the output bias differs by the offsets' difference only
    diff = np.asarray(bag.meta["decision_offsets"]["offsets"]) - np.asarray(on.meta["decision_offsets"]["offsets"])
    got = bag.net.p["out.b"].astype(np.float64) - on.net.p["out.b"].astype(np.float64)
    assert np.allclose(got, diff, atol=1e-5)
