"""Training end to end: a learnable task, all presets, seeds, early stopping, save/load."""
import numpy as np
import pytest

import tinykd
from tinykd.nn.network import StudentNet, make_config
from tinykd.train.splits import split_712
from tinykd.train.loop import TrainData, train
from tinykd.train.options import TrainOptions

WORDS = [f"w{i}" for i in range(40)]


def make_task(n, seed):
    """Label 1 if the answer mentions 'alpha', 2 if 'beta', else 0 — somewhere among noise words."""
    rng = np.random.default_rng(seed)
    texts, y = [], []
    for _ in range(n):
        toks = list(rng.choice(WORDS, rng.integers(3, 15)))
        lab = int(rng.integers(0, 3))
        if lab:
            toks.insert(int(rng.integers(0, len(toks))), ["alpha", "beta"][lab - 1])
        texts.append(" ".join(toks))
        y.append(lab)
    return texts, np.array(y)


@pytest.fixture(scope="module")
def task():
    return make_task(600, 0), make_task(200, 1)


def test_learnable_task_reaches_high_accuracy(task):
    (X, y), (Xt, yt) = task
    st = tinykd.fit(X, y, preset="falling_weights", epochs=15, patience=3, seed=0, verbose=False)
    acc = np.mean(np.array(st.predict(Xt)) == yt)
    assert acc >= 0.95, acc
    assert st.classes == [0, 1, 2]


@pytest.mark.parametrize("preset", list(tinykd.PRESETS))
def test_every_preset_builds_trains_and_reports_its_size(task, preset):
    (X, y), _ = task
    st = tinykd.fit(X[:200], y[:200], preset=preset, epochs=2, verbose=False)
    assert st.n_params == st.net.params.size == tinykd.n_params(preset, len(st.vocab), 3)
    assert len(st.meta["history"]) == 2
    proba = st.predict_proba(X[:5])
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-5)


def test_distillation_uses_the_teacher(task):
    """With λ large and a teacher that says 'always class 2', the student follows the teacher."""
    (X, y), _ = task
    teacher = np.tile([0.0, 0.0, 1.0], (len(X), 1))
    st = tinykd.fit(X, y, teacher_proba=teacher, lam=20.0, preset="falling_weights", epochs=4,
                    validation=False, verbose=False)
    assert np.mean(np.array(st.predict(X[:100])) == 2) > 0.8
    assert st.meta["training"]["lam"] == 20.0 and st.meta["training"]["teacher"]


def test_the_ordinal_term_pulls_the_expected_score_to_the_teachers(task):
    """A teacher whose expected score is the middle one everywhere (half 0, half 2); the hard term alone
    (λ = 0) pulls the student to the labels, μ = 30 pulls its expected score to the middle."""
    (X, y), _ = task
    teacher = np.tile([0.5, 0.0, 0.5], (len(X), 1))
    gaps = {}
    for mu in (0.0, 30.0):
        st = tinykd.fit(X, y, teacher_proba=teacher, lam=0.0, ordinal=mu, preset="falling_weights", epochs=10,
                        validation=False, offsets=False, verbose=False)
        gaps[mu] = float(np.abs(st.predict_proba(X) @ np.array([0.0, 0.5, 1.0]) - 0.5).mean())
        assert st.meta["training"].get("ordinal", 0.0) == mu
    assert gaps[0.0] > 0.2 and gaps[30.0] < 0.25 * gaps[0.0], gaps  # (measured: 0.30 and 0.02)
    with pytest.raises(tinykd.OptionError, match="ordinal.*numeric"):
        tinykd.fit(["a b", "c d"] * 20, ["no", "yes"] * 20, teacher_proba=np.full((40, 2), 0.5), ordinal=1.0,
                   epochs=1, verbose=False)
    with pytest.raises(tinykd.OptionError, match="ordinal"):
        TrainOptions(ordinal=-1.0)


def test_long_weight_repeats_the_rows_at_least_as_long_as_the_scored_answers_upper_quartile(task, monkeypatch):
    """Scored and transfer rows of at least the scored answers' 75th-percentile length (in tokens) count
    ``long_weight`` times; the others once."""
    from tinykd.train import fitting

    (X, y), _ = task
    seen = []
    real = fitting.train
    monkeypatch.setattr(fitting, "train", lambda net, data, *a, **k: seen.append(data) or real(net, data, *a, **k))
    teacher = np.eye(3)[y] * 0.9 + 0.1 / 3
    st = tinykd.fit(X[:300], y[:300], teacher_proba=teacher[:300], transfer=(X[300:], teacher[300:]),
                    long_weight=3, preset="falling_weights", epochs=1, validation=False, verbose=False)
    lens = np.array([len(t.split()) for t in X])  # every answer here is under max_len
    cut = np.quantile(lens[:300], 0.75)
    n_long = int((lens >= cut).sum())
    assert 0 < n_long < 300 and len(seen[0]) == 600 + 2 * n_long
    assert sorted(seen[0].lengths.tolist()) == sorted(lens.tolist() + 2 * lens[lens >= cut].tolist())
    y_long = np.concatenate([y[:300], -np.ones(300, int)])[lens >= cut]
    assert (seen[0].y[600:] == np.tile(y_long, 2)).all()  # their labels (−1: transfer) travel with them
    assert st.meta["training"]["long_weight"] == 3
    assert "long_weight" not in tinykd.fit(X[:100], y[:100], epochs=1, verbose=False).meta["training"]
    with pytest.raises(tinykd.OptionError, match="long_weight"):
        TrainOptions(long_weight=0)


def test_word_vectors_start_the_embedding_rows_of_the_words_found_by_pca_at_the_random_starts_scale(task, monkeypatch):
    from sklearn.decomposition import PCA

    from tinykd.nn.embedding import pretrained_rows
    from tinykd.train import fitting

    (X, y), _ = task
    rng = np.random.default_rng(3)
    words = WORDS[:20] + ["alpha", "beta", "not-in-the-data"]
    vectors = rng.normal(size=(len(words), 12))
    starts = []
    real = fitting.train
    monkeypatch.setattr(fitting, "train",
                        lambda net, *a, **k: starts.append(net.p["emb.E"].copy()) or real(net, *a, **k))
    st = tinykd.fit(X, y, preset="falling_weights", epochs=1, verbose=False, word_vectors=(words, vectors))
    tokens = st.vocab.tokens
    found = [i for i, t in enumerate(tokens) if t in words]
    assert len(found) == 22 == st.meta["training"]["word_vectors"]  # every word of the task; not the unseen one
    want = PCA(n_components=12, svd_solver="full").fit_transform(vectors[[words.index(tokens[i]) for i in found]])
    E = starts[0]
    np.testing.assert_allclose(E[found, :12], want * (0.05 / np.sqrt(3) / want.std()), rtol=1e-5, atol=1e-7)
    assert np.abs(E[found, 12:]).max() <= 0.05 and np.abs(E[[0, 1]]).max() <= 0.05  # the rest: the random start
    ids, rows = pretrained_rows(["<pad>", "w0"], ["w0"], vectors[:1], 8)
    assert len(ids) == 0  # one word found: no components to take
    with pytest.raises(ValueError, match="word_vectors must be"):
        tinykd.fit(X, y, epochs=1, verbose=False, word_vectors=(words, vectors[:3]))


def test_transfer_rows_train_only_the_soft_term(task):
    (X, y), _ = task
    teacher = np.eye(3)[y] * 0.9 + 0.1 / 3
    st = tinykd.fit(X[:300], y[:300], teacher_proba=teacher[:300], transfer=(X[300:], teacher[300:]),
                    preset="falling_weights", epochs=2, verbose=False)
    assert st.meta["training"]["n_transfer"] == 300


def test_same_seed_same_model_and_save_load_round_trip(task, tmp_path):
    (X, y), (Xt, _) = task
    kw = dict(preset="bathtub", epochs=2, seed=7, verbose=False)
    a = tinykd.fit(X[:200], y[:200], **kw)
    b = tinykd.fit(X[:200], y[:200], **kw)
    np.testing.assert_array_equal(a.net.params, b.net.params)
    np.testing.assert_array_equal(a.predict_proba(Xt), b.predict_proba(Xt))
    c = tinykd.fit(X[:200], y[:200], **{**kw, "seed": 8})
    assert not np.array_equal(a.net.params, c.net.params)

    path = tmp_path / "m.npz"
    a.save(path)
    loaded = tinykd.load(path)
    np.testing.assert_array_equal(loaded.predict_proba(Xt), a.predict_proba(Xt))
    assert loaded.classes == a.classes and loaded.meta["training"]["seed"] == 7
    assert loaded.vocab.tokens == a.vocab.tokens


@pytest.mark.parametrize("preset", ["7t", "bathtub"])
def test_the_weights_trained_do_not_depend_on_the_machines_load(task, preset):
    """Settings.parallel "auto" runs serially on a busy machine and in parallel on an idle one (it
    reads the load average each epoch): both must train the same weights, bit for bit (one
    direction: the batch's two halves sum their gradients separately either way)."""
    from tinykd.settings import Settings

    (X, y), _ = task
    kw = dict(preset=preset, epochs=2, seed=3, verbose=False)
    got = [tinykd.fit(X[:300], y[:300], settings=Settings(parallel=p), **kw).net.params for p in (False, True)]
    np.testing.assert_array_equal(got[0], got[1])


def test_string_labels_and_context(tmp_path):
    X = ["yes it dissolves", "no", "it dissolves fast", "nothing happens"] * 10
    y = ["correct", "incorrect", "correct", "incorrect"] * 10
    ctx = ["what happens to marble?"] * 40
    st = tinykd.fit(X, y, contexts=ctx, preset="falling_weights", epochs=3, verbose=False)
    assert st.classes == ["correct", "incorrect"]
    with pytest.raises(ValueError, match="context"):
        st.predict(["yes"])
    assert st.predict(["yes it dissolves"], contexts=["what happens to marble?"])[0] in st.classes
    st.save(tmp_path / "ctx.npz")
    assert tinykd.load(tmp_path / "ctx.npz").uses_context


def test_early_stopping_restores_the_best_weights():
    rng = np.random.default_rng(0)
    ids = rng.integers(3, 20, size=(64, 6)).astype(np.int32)
    lengths = np.full(64, 6, np.int32)
    data = TrainData(ids, lengths, rng.integers(0, 2, 64))  # random labels: validation loss soon rises
    val = TrainData(ids[:32], lengths[:32], rng.integers(0, 2, 32))
    net = StudentNet(make_config("falling_weights"), 20, 2, seed=0)
    hist = train(net, data, val, TrainOptions(epochs=30, patience=2, lr=0.05), verbose=False)
    assert hist["stopped"] == "patience"
    best = min(hist["epochs"], key=lambda r: r["val_loss"])
    assert hist["best_epoch"] == best["epoch"]
    from tinykd.train.loop import evaluate_loss

    assert evaluate_loss(net, val)[0] == pytest.approx(best["val_loss"], rel=1e-6)


def test_polyak_averaging_keeps_the_debiased_average_of_the_steps(monkeypatch):
    """``TrainOptions(average=a)``: the weights returned are the debiased exponential moving average,
    β = 1 − 1/(a·S), of the live weights after every step up to the best epoch (recomputed here from
    a record of each step), validated as such; a horizon under one step is the plain run bit for bit."""
    from tinykd.train import optim
    from tinykd.train.loop import evaluate_loss

    rng = np.random.default_rng(0)
    ids = rng.integers(3, 20, size=(64, 6)).astype(np.int32)
    lengths = np.full(64, 6, np.int32)
    data = TrainData(ids, lengths, rng.integers(0, 2, 64))
    val = TrainData(ids[:32], lengths[:32], rng.integers(0, 2, 32))
    steps, plain_step = [], optim.Adam.step

    def step(self, grad):
        norm = plain_step(self, grad)
        steps.append(self.theta.astype(np.float64))
        return norm

    def run(average):
        net = StudentNet(make_config("falling_weights"), 20, 2, seed=0)
        return net, train(net, data, val, TrainOptions(epochs=12, patience=3, lr=0.05, batch_size=16,
                                                       average=average), verbose=False)

    plain, _ = run(None)
    tiny, _ = run(1e-9)
    np.testing.assert_array_equal(tiny.params, plain.params)
    monkeypatch.setattr(optim.Adam, "step", step)
    net, hist = run(0.5)  # S = 4 steps per epoch: β = 1 − 1/2
    beta, t = 0.5, 4 * hist["best_epoch"]
    avg = sum((1 - beta) * beta ** (t - 1 - i) * w for i, w in enumerate(steps[:t])) / (1 - beta ** t)
    np.testing.assert_allclose(net.params, avg.astype(np.float32), rtol=0, atol=1e-6)
    assert not np.allclose(net.params, steps[t - 1], atol=1e-4)  # not the live weights of that epoch
    best = next(r for r in hist["epochs"] if r["epoch"] == hist["best_epoch"])
    assert evaluate_loss(net, val)[0] == pytest.approx(best["val_loss"], rel=1e-6)
    with pytest.raises(ValueError, match="average"):
        run(0)


def test_lr_plateau_halves_the_rate_after_each_run_of_epochs_without_a_better_loss(monkeypatch):
    """``TrainOptions(lr_plateau=k)``: each epoch records the rate it trained with; the rate halves after k, 2k, …
    epochs without a better validation loss (counted from the best epoch, so it never rises again), the steps of
    Adam use it, and without the option the run is today's bit for bit."""
    from tinykd.errors import OptionError
    from tinykd.train import optim

    rng = np.random.default_rng(0)
    ids = rng.integers(3, 20, size=(64, 6)).astype(np.int32)
    lengths = np.full(64, 6, np.int32)
    data = TrainData(ids, lengths, rng.integers(0, 2, 64))  # random labels: validation loss soon rises
    val = TrainData(ids[:32], lengths[:32], rng.integers(0, 2, 32))
    rates, plain_step = [], optim.Adam.step

    def step(self, grad):
        rates.append(self.lr)
        return plain_step(self, grad)

    def run(plateau, patience=5):
        net = StudentNet(make_config("falling_weights"), 20, 2, seed=0)
        return net, train(net, data, val, TrainOptions(epochs=30, patience=patience, lr=0.05, batch_size=16,
                                                       lr_plateau=plateau), verbose=False)

    before, h0 = run(None)
    assert "lr" not in h0["epochs"][0]
    monkeypatch.setattr(optim.Adam, "step", step)
    net, hist = run(2)
    lr, best, want = 0.05, np.inf, []
    for k, r in enumerate(hist["epochs"]):  # the rule, replayed from the recorded losses
        want.append(lr)
        if r["val_loss"] < best - 1e-6:
            best, bad = r["val_loss"], 0
        else:
            bad += 1
            lr = lr / 2 if bad % 2 == 0 else lr
    assert [r["lr"] for r in hist["epochs"]] == want and min(want) < 0.05
    assert rates == [r["lr"] for r in hist["epochs"] for _ in range(4)]  # 4 steps per epoch, each at its rate
    assert hist["stopped"] == "patience" and len(hist["epochs"]) == hist["best_epoch"] + 5
    # the epochs before the first halving are those of the run without it
    first = next(k for k, r in enumerate(hist["epochs"]) if r["lr"] < 0.05)
    assert [r["val_loss"] for r in hist["epochs"][:first]] == [r["val_loss"] for r in h0["epochs"][:first]]
    monkeypatch.setattr(optim.Adam, "step", plain_step)
    again, _ = run(None)
    np.testing.assert_array_equal(again.params, before.params)
    for bad in (0, 1.5, True):
        with pytest.raises(OptionError, match="lr_plateau"):
            TrainOptions(lr_plateau=bad)
    from tinykd.distill.stages import students_key  # distill's cached students are told apart

    keys = {students_key("L", "auto", ("bathtub", "7t"), (4.0,), TrainOptions(lr_plateau=v), "rule", "v")
            for v in (None, 2, 3)}
    assert len(keys) == 3


def test_non_finite_loss_stops_and_keeps_weights():
    rng = np.random.default_rng(0)
    ids = rng.integers(3, 20, size=(32, 5)).astype(np.int32)
    data = TrainData(ids, np.full(32, 5, np.int32), rng.integers(0, 2, 32))
    net = StudentNet(make_config("falling_weights"), 20, 2, seed=0)
    before = net.params.copy()
    hist = train(net, data, None, TrainOptions(epochs=3, lr=1e300), verbose=False)  # the first step overflows
    assert hist["stopped"] == "non-finite loss"
    np.testing.assert_array_equal(net.params, before)


def test_split_712_is_stratified_and_seeded():
    y = np.repeat([0, 1, 2, 3], [100, 200, 300, 400])
    tr, va, te = split_712(y, seed=3)
    assert (len(tr), len(va), len(te)) == (700, 100, 200)
    assert len(np.intersect1d(tr, te)) == 0 and len(np.union1d(np.union1d(tr, va), te)) == 1000
    np.testing.assert_array_equal(np.bincount(y[te]), [20, 40, 60, 80])
    np.testing.assert_array_equal(split_712(y, seed=3)[0], tr)


def test_bad_teacher_rows_are_refused(task):
    (X, y), _ = task
    with pytest.raises(ValueError, match="shape"):
        tinykd.fit(X, y, teacher_proba=np.ones((len(X), 2)) / 2, verbose=False)
    bad = np.tile([0.5, 0.5, 0.5], (len(X), 1))
    with pytest.raises(ValueError, match="sum to 1"):
        tinykd.fit(X, y, teacher_proba=bad, verbose=False)
    neg = np.tile([1.5, -0.5, 0.0], (len(X), 1))
    with pytest.raises(ValueError, match="negative"):
        tinykd.fit(X, y, teacher_proba=neg, verbose=False)


def test_students_side_by_side_train_the_same_weights_and_stop_together(task):
    """tinykd distill trains its students in threads (serial kernels, one core each), each started as
    a thread is free: the weights equal those trained one after the other, returned in the order of
    the jobs; an error in one stops the others at their next epoch."""
    from tinykd.distill.pipeline import side_by_side

    (X, y), _ = task

    def train_one(pr, settings, stop):
        return tinykd.fit(X[:300], y[:300], preset=pr, epochs=2, seed=5, verbose=False, settings=settings,
                          on_epoch=stop).net.params

    jobs = ["7t", "bathtub", "falling_weights"]  # three jobs on two threads: one waits for a free thread
    alone = side_by_side(train_one, jobs, threads=1)
    together = side_by_side(train_one, jobs, threads=2)
    assert [a.size for a in alone] == [tinykd.fit(X[:300], y[:300], preset=pr, epochs=1, verbose=False).n_params
                                       for pr in jobs]  # in the order of the jobs
    for a, b in zip(alone, together):
        np.testing.assert_array_equal(a, b)
    epochs = []

    def fails_or_trains(pr, settings, stop):
        if pr == "boom":
            raise ValueError("boom")

        def seen(rec):
            epochs.append((pr, rec["epoch"]))
            stop(rec)
        return tinykd.fit(X[:300], y[:300], preset=pr, epochs=40, patience=40, seed=5, verbose=False,
                          settings=settings, on_epoch=seen)

    with pytest.raises(ValueError, match="boom"):
        side_by_side(fails_or_trains, ["boom", "7t", "bathtub", "falling_weights"], threads=2)
    # the running job (7t, and bathtub if it took boom's thread first) stopped at its first epoch's end,
    # not after 40; the job still waiting never started
    assert {e for _, e in epochs} == {1} and "falling_weights" not in {p for p, _ in epochs}
