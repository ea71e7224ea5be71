"""Fidelity to the teacher (docs/decisions/student-fidelity.md): the KL and agreement a student is
measured by, early stopping on it, the decision offsets chosen against the teacher's arg-max, and the
rows distill holds out of the transfer set to measure it."""
import numpy as np
import pytest

import tinykd
from tinykd.distill.students import fidelity_rows
from tinykd.nn.network import StudentNet, make_config
from tinykd.train.loop import TrainData, evaluate_fidelity

WORDS = {0: ["sun", "light", "leaf"], 1: ["dirt", "rock", "sand"], 2: ["water", "rain", "river"]}
FILLER = ["the", "a", "plant", "it", "grows", "because", "of", "and"]


def _rows(n, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    texts = [" ".join(list(rng.choice(WORDS[int(k)], 2)) + list(rng.choice(FILLER, 3))) for k in y]
    p = np.full((n, 3), 0.1)
    p[np.arange(n), y] = 0.8
    return texts, y, p


def test_evaluate_fidelity_is_the_kl_and_the_agreement():
    net = StudentNet(make_config("7t", embed_dim=8, units=8, dense_units=8), 20, 3, seed=0)
    rng = np.random.default_rng(1)
    ids = rng.integers(1, 20, size=(12, 6)).astype(np.int32)
    lengths = np.full(12, 6, np.int32)
    z = net.predict_logits(ids, lengths).astype(np.float64)
    q = np.exp(z - z.max(1, keepdims=True))
    q /= q.sum(1, keepdims=True)
    kl, agree = evaluate_fidelity(net, TrainData(ids, lengths, q.argmax(1), q))
    assert kl == pytest.approx(0.0, abs=1e-6) and agree == 1.0  # the student against itself
    p = np.roll(q, 1, axis=1)
    kl, agree = evaluate_fidelity(net, TrainData(ids, lengths, p.argmax(1), p))
    want = float((p * (np.log(p) - np.log(q))).sum(1).mean())
    assert kl == pytest.approx(want, rel=1e-5) and agree == pytest.approx(float((p.argmax(1) == q.argmax(1)).mean()))


def test_fit_stops_on_fidelity_and_chooses_offsets_against_the_teacher():
    texts, y, p = _rows(240)
    ft, _, fp = _rows(120, seed=5)
    vt, vy, _ = _rows(60, seed=7)
    s = tinykd.fit(texts, y, p, preset="falling_weights", lam=4.0, epochs=6, patience=2, verbose=False,
                   validation=(vt, vy), fidelity=(ft, fp))
    h = s.meta["history"]
    assert all(r["fid_kl"] is not None for r in h)
    kls = [r["fid_kl"] for r in h]
    best = s.meta["training"]["best_epoch"]
    assert kls[best - 1] == min(kls)  # the epoch kept is the one of lowest KL to the teacher
    assert s.meta["decision_offsets"]["chosen_on"] == "fidelity" and s.meta["decision_offsets"]["n_val"] == 120
    f = s.meta["fidelity_metrics"]
    kl, agree = evaluate_fidelity(s.net, TrainData(*s.vocab.encode(ft), fp.argmax(1), fp))
    assert f["n"] == 120 and f["kl"] == pytest.approx(kl, rel=1e-6) and f["agreement"] == pytest.approx(agree)
    assert s.meta["validation_metrics"]["n"] == 60  # the human validation rows are still reported
    with pytest.raises(ValueError, match="fidelity proba"):
        tinykd.fit(texts, y, p, epochs=1, verbose=False, fidelity=(ft, fp[:, :2]))


def test_fidelity_rows_hold_out_whole_answers_seeded():
    ids = [f"a{i}~aug{k}" for i in range(40) for k in range(3)] + ["u1", "u2"]
    texts = [f"t {i}" for i in ids]
    p = np.tile([0.2, 0.8], (len(ids), 1))
    val = (["v1", "v2"], None, None)
    p_val = np.array([[0.6, 0.4], [0.3, 0.7]])
    tx, fid = fidelity_rows((texts, p, None), ids, val, p_val, seed=3)
    held = [t[2:] for t in fid[0][2:]]
    answers = {h.rsplit("~aug", 1)[0] for h in held}
    assert len(answers) == 5 and len(held) == 15  # 1/8 of 40 answers, all 3 copies of each
    assert fid[0][:2] == ["v1", "v2"] and np.allclose(fid[1][:2], p_val) and fid[2] is None
    assert len(tx[0]) == len(ids) - 15 and {"t u1", "t u2"} <= set(tx[0])  # unlabeled rows stay
    assert not answers & {t[2:].rsplit("~aug", 1)[0] for t in tx[0]}  # no copy of a held-out answer trains
    again = fidelity_rows((texts, p, None), ids, val, p_val, seed=3)[1]
    assert again[0] == fid[0]  # seeded
    assert fidelity_rows(None, [], None, None, 0) == (None, None)


def test_the_plain_nn_is_kept_only_when_the_teacher_is_below_it():
    """docs/decisions/plain-nn-choice.md: English item 4, seed 1's validation metrics — the plain NN three
    answers ahead of the KD students, the teacher above both — keep the best KD student."""
    from tinykd.distill.students import choose

    m = lambda a, q: (None, {"accuracy": a, "qwk": q})  # noqa: E731
    runs = {("bathtub", 4.0): m(0.795, 0.700), ("7t", 4.0): m(0.792, 0.706), ("bathtub", 0.0): m(0.804, 0.680),
            ("7t", 0.0): m(0.782, 0.658)}
    presets = ["bathtub", "7t"]
    assert choose(runs, presets, {"accuracy": 0.813}, on="accuracy") == (("bathtub", 4.0), ("bathtub", 0.0))
    assert choose(runs, presets, {"accuracy": 0.800}, on="accuracy") == (("bathtub", 0.0), ("bathtub", 0.0))
    assert choose(runs, presets, None, on="accuracy")[0] == ("bathtub", 4.0)  # no validation rows: no teacher bar
    assert choose(runs, presets, None, on="validation")[0] == ("bathtub", 4.0)  # no log-loss measured: accuracy
    runs_fid = {k: (None, {**v[1], "fidelity": {"agreement": 0.9 - 0.1 * (k[0] == "7t"), "kl": 0.1}}) if k[1] else v
                for k, v in runs.items()}
    assert choose(runs_fid, presets, {"accuracy": 0.813}, on="fidelity")[0] == ("bathtub", 4.0)
    assert choose(runs_fid, presets, {"accuracy": 0.790}, on="fidelity")[0] == ("bathtub", 0.0)


def test_the_kd_student_of_lower_validation_log_loss_is_kept():
    """docs/decisions/student-choice.md: science 1, seed 1 — bathtub one answer ahead on validation accuracy,
    7t of lower log-loss — keeps 7t; by accuracy, bathtub. The plain NN, when the teacher is below it, competes
    on the same log-loss; ties go to the larger λ, then the earlier preset."""
    from tinykd.distill.students import choose

    m = lambda a, q, ll: (None, {"accuracy": a, "qwk": q, "logloss": ll})  # noqa: E731
    runs = {("bathtub", 4.0): m(0.734, 0.830, 0.640), ("7t", 4.0): m(0.731, 0.834, 0.612),
            ("bathtub", 0.0): m(0.590, 0.760, 0.950), ("7t", 0.0): m(0.581, 0.756, 0.700)}
    presets = ["bathtub", "7t"]
    assert choose(runs, presets, {"accuracy": 0.760}, on="validation") == (("7t", 4.0), ("bathtub", 0.0))
    assert choose(runs, presets, {"accuracy": 0.760}, on="accuracy") == (("bathtub", 4.0), ("bathtub", 0.0))
    assert choose(runs, presets, {"accuracy": 0.580}, on="validation")[0] == ("7t", 4.0)  # the plain NN's 0.950
    runs[("bathtub", 0.0)] = m(0.590, 0.760, 0.600)
    assert choose(runs, presets, {"accuracy": 0.580}, on="validation")[0] == ("bathtub", 0.0)
    assert choose(runs, presets, {"accuracy": 0.760}, on="validation")[0] == ("7t", 4.0)  # teacher above: no plain
    runs[("bathtub", 4.0)] = m(0.734, 0.830, 0.612)
    assert choose(runs, presets, {"accuracy": 0.760}, on="validation")[0] == ("bathtub", 4.0)  # a tie: the earlier


def test_log_loss_is_scikit_learns_with_a_floor():
    from sklearn.metrics import log_loss as sk_log_loss

    from tinykd.quality.metrics import LOG_LOSS_FLOOR, log_loss

    rng = np.random.default_rng(0)
    p = rng.dirichlet([1.0, 1.0, 1.0], size=50)
    y = rng.integers(0, 3, size=50)
    assert log_loss(p, y) == pytest.approx(sk_log_loss(y, p, labels=[0, 1, 2]), rel=1e-12)
    assert log_loss([[1.0, 0.0], [0.5, 0.5]], [1, 0]) == pytest.approx((-np.log(LOG_LOSS_FLOOR) - np.log(0.5)) / 2)
    assert np.isnan(log_loss(np.zeros((0, 2)), []))


def test_validation_log_loss_reads_the_students_classes_and_calibration():
    """The labels matched to the student's own class order; its calibrated probabilities (the temperature);
    a label it has no class for scores the floor."""
    from tinykd.distill.students import validation_log_loss
    from tinykd.quality.metrics import LOG_LOSS_FLOOR

    class Fake:
        classes = [2, 0, 1]

        def predict_proba(self, texts, contexts=None):
            assert contexts == ["c"] * len(texts)
            return np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.3, 0.3, 0.4]], dtype=np.float32)[: len(texts)]

    got = validation_log_loss(Fake(), (["a", "b", "c"], [2, 1, 0], ["c"] * 3))
    assert got == pytest.approx(-np.mean(np.log([0.7, 0.8, 0.3])), rel=1e-6)
    assert validation_log_loss(Fake(), (["a"], [5], ["c"])) == pytest.approx(-np.log(LOG_LOSS_FLOOR))
