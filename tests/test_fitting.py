"""The library owns the training rules: tinykd.fit / tinykd.fit_items, and the command line
gives exactly what fit_items gives for the same rows and seed."""
import csv

import numpy as np
import pytest

import tinykd
from tinykd.cli.commands import main
from tinykd.errors import OptionError
from tinykd.files.softlabels import write_soft_labels
from tinykd.train.options import TrainOptions

from conftest import write_csv

GOOD = "acid rain dissolves marble because it reacts with calcium carbonate".split()
BAD = "the rock gets wet and cold nothing happens maybe".split()
SMALL = dict(config=dict(embed_dim=8, units=8, dense_units=8), epochs=2, verbose=False)


def rows_for(n=90, seed=0, items=("Q1", "Q2"), unlabeled=6):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n + unlabeled):
        y = i % 3
        words = list(rng.choice(GOOD, 2 * y + 1)) + list(rng.choice(BAD, 4 - y))
        split = "train" if i % 10 < 7 or i >= n else ("val" if i % 10 == 7 else "test")
        rows.append({"id": f"r{i}", "item": items[i % len(items)], "split": split, "text": " ".join(words),
                     "label": "" if i >= n else f"{y}.0"})  # labels spelt 0.0, 1.0, 2.0
    return rows


def teacher_file(rows, path, classes=(0, 1, 2)):
    p = []
    for r in rows:
        q = np.full(len(classes), 0.1 / (len(classes) - 1))
        q[int(float(r["label"] or 1))] = 0.9
        p.append(q)
    write_soft_labels(str(path), [r["id"] for r in rows], list(classes), np.array(p))
    return str(path)


def columns(rows, name):
    return [r[name] for r in rows]


def assert_same_model(a, b):
    sa = a.students if isinstance(a, tinykd.Bundle) else {"default": a}
    sb = b.students if isinstance(b, tinykd.Bundle) else {"default": b}
    assert list(sa) == list(sb)
    for k in sa:
        assert sa[k].classes == sb[k].classes and sa[k].vocab.tokens == sb[k].vocab.tokens
        np.testing.assert_array_equal(sa[k].net.params, sb[k].net.params)
        assert sa[k].meta["training"]["n_val"] == sb[k].meta["training"]["n_val"]


def test_cli_train_equals_fit_items(tmp_path, capsys):
    rows = rows_for()
    data = write_csv(tmp_path / "d.csv", rows)
    soft = teacher_file(rows, tmp_path / "soft.csv")
    out = tmp_path / "m.npz"
    assert main(["train", data, "--out", str(out), "--teacher", soft, "--item-col", "item", "--epochs", "2",
                 "--seed", "3", "--preset", "bathtub", "-q"]) == 0
    lib = tinykd.fit_items(columns(rows, "text"), columns(rows, "label"), items=columns(rows, "item"),
                           ids=columns(rows, "id"), splits=columns(rows, "split"), teacher=soft,
                           preset="bathtub", epochs=2, seed=3, verbose=False)
    assert isinstance(lib, tinykd.Bundle) and lib.items == ["Q1", "Q2"]
    assert_same_model(tinykd.load(out), lib)
    # the teacher as an (ids, classes, proba) triple joins by id the same way, whatever the row order
    ids, classes, p = tinykd.files.softlabels.read_soft_label_table(soft)
    order = np.random.default_rng(0).permutation(len(ids))
    triple = ([ids[i] for i in order], classes, p[order])
    again = tinykd.fit_items(columns(rows, "text"), columns(rows, "label"), items=columns(rows, "item"),
                             ids=columns(rows, "id"), splits=columns(rows, "split"), teacher=triple,
                             preset="bathtub", epochs=2, seed=3, verbose=False)
    assert_same_model(again, lib)


def test_fit_items_row_roles_and_transfer():
    rows = rows_for(items=("Q1",))
    model = tinykd.fit_items(columns(rows, "text"), columns(rows, "label"), ids=columns(rows, "id"),
                             splits=columns(rows, "split"), **SMALL)
    tr = model.meta["training"]
    # 63 labelled train rows, 9 val rows; 18 test rows and 6 unlabeled rows (no teacher) not used
    assert (tr["n_train"], tr["n_val"], tr["n_transfer"]) == (63, 9, 0)
    notes = " | ".join(model.meta["notes"])
    assert "not used: 18 rows whose split is not 'train' or 'val' (test: 18)" in notes
    assert "6 training rows have no label and there is no teacher" in notes
    assert model.classes == [0, 1, 2]


def test_per_item_classes_and_renormalised_teacher(tmp_path):
    rows = rows_for(items=("Q1", "Q2"))
    for r in rows:  # item Q2 never scores 2: its student has classes 0, 1 only
        if r["item"] == "Q2" and r["label"] == "2.0":
            r["label"] = "1.0"
    soft = teacher_file(rows, tmp_path / "soft.csv")
    b = tinykd.fit_items(columns(rows, "text"), columns(rows, "label"), items=columns(rows, "item"),
                         ids=columns(rows, "id"), splits=columns(rows, "split"), teacher=soft, **SMALL)
    assert b.students["Q1"].classes == [0, 1, 2] and b.students["Q2"].classes == [0, 1]
    assert b.students["Q2"].meta["training"]["n_transfer"] == 3  # its unlabeled rows, with teacher rows
    p = b.predict_proba_matrix(["acid rain"] * 2, ["Q1", "Q2"])
    assert p[1, 2] == 0 and abs(p[1].sum() - 1) < 1e-5


def test_teacher_columns_for_scores_spelt_as_decimals(tmp_path):
    """Scores 0.5 / 1.0 / 1.5: the teacher's columns are p_0.5, p_1, p_1.5 (tinykd.files.csvfiles.label_key)."""
    rows = rows_for(items=("Q1",), unlabeled=0)
    spell = {"0.0": "0.5", "1.0": "1.0", "2.0": "1.5"}
    for r in rows:
        r["label"] = spell[r["label"]]
    p = np.tile([0.2, 0.5, 0.3], (len(rows), 1))
    soft = tmp_path / "soft.csv"
    write_soft_labels(str(soft), [r["id"] for r in rows], ["0.5", "1", "1.5"], p)
    m = tinykd.fit_items(columns(rows, "text"), columns(rows, "label"), ids=columns(rows, "id"),
                         splits=columns(rows, "split"), teacher=str(soft), **SMALL)
    assert m.classes == [0.5, 1, 1.5] and m.meta["training"]["teacher"]


def test_validation_rule_small_data_and_unseen_labels():
    texts = ["acid rain", "the rock", "acid", "wet rock", "marble acid", "cold", "acid marble", "rock"]
    y = [1, 0, 1, 0, 1, 0, 1, 0]
    small = tinykd.fit(texts, y, **SMALL)  # fewer than MIN_HOLDOUT_ROWS rows: no validation set, said
    assert small.meta["training"]["n_val"] == 0 and small.meta["training"]["n_train"] == 8
    assert any("no validation set" in n for n in small.meta["notes"])
    v = tinykd.fit(texts, y, validation=(["acid", "rock", "?"], [1, 0, 7]), **SMALL)
    assert v.meta["training"]["n_val"] == 2
    assert any("1 validation rows have labels no training row has (7)" in n for n in v.meta["notes"])
    big = tinykd.fit(texts * 3, y * 3, **SMALL)  # 24 rows: a stratified 1/8 held out
    assert (big.meta["training"]["n_train"], big.meta["training"]["n_val"]) == (21, 3)
    assert big.meta["validation_metrics"]["n"] == 3


@pytest.mark.parametrize("option, value, flag_text", [
    ("epochs", 0, "epochs must be > 0"), ("lr", -1.0, "lr must be > 0"), ("lam", -0.5, "lam must be >= 0"),
    ("temperature", 0.0, "temperature must be between 0.01 and 100"), ("batch_size", 2.5, "batch_size must be > 0"),
    ("preset", "huge", "unknown preset 'huge'")])
def test_bad_options_name_the_option(option, value, flag_text):
    with pytest.raises(OptionError, match=flag_text) as e:
        tinykd.fit(["a b", "c d"] * 6, [0, 1] * 6, verbose=False, **{option: value})
    assert e.value.option == option and e.value.for_cli().startswith(("--", "unknown --"))


def test_ctrl_c_raises_and_divergence_names_lr(monkeypatch):
    import tinykd.train.loop as tr

    texts, y = ["acid rain", "the rock"] * 8, [1, 0] * 8

    def interrupt(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(tr, "evaluate_loss", interrupt)
    with pytest.raises(KeyboardInterrupt):
        tinykd.fit(texts, y, **SMALL)
    monkeypatch.undo()
    monkeypatch.setattr(tr, "kd_loss", lambda *a, **k: (float("nan"), None, {}))
    with pytest.raises(OptionError, match="diverged in the first epoch.*smaller lr") as e:
        tinykd.fit(texts, y, **SMALL)
    assert "smaller --lr" in e.value.for_cli()


def test_fit_items_input_errors():
    with pytest.raises(ValueError, match="needs ids"):
        tinykd.fit_items(["a", "b"], ["0", "1"], teacher="soft.csv")
    with pytest.raises(ValueError, match="empty in every row"):
        tinykd.fit_items(["a", "b"], ["", "NA"])
    with pytest.raises(OptionError, match="no rows with split == 'training'"):
        tinykd.fit_items(["a", "b"], ["0", "1"], splits=["train", "test"], train_split="training")
    with pytest.raises(ValueError, match="3 texts but 2 labels"):
        tinykd.fit_items(["a", "b", "c"], ["0", "1"])
    rows = rows_for(items=("Q1",), unlabeled=0)
    with pytest.raises(ValueError, match="duplicate ids in 'id': 'r1'"):
        tinykd.fit_items(columns(rows, "text"), columns(rows, "label"), ids=["r1"] * len(rows),
                         teacher=(["r1"], [0, 1, 2], [[0.2, 0.3, 0.5]]), **SMALL)


def test_scores_read_back_from_csv_equal_fit_items(tmp_path):
    """What the file holds is what trains: the CLI reads cells as strings, fit_items normalises them."""
    rows = rows_for(items=("Q1",))
    data = write_csv(tmp_path / "d.csv", rows)
    with open(data, newline="", encoding="utf-8") as f:
        back = list(csv.DictReader(f))
    a = tinykd.fit_items(columns(back, "text"), columns(back, "label"), splits=columns(back, "split"),
                         seed=1, **SMALL)
    b = tinykd.fit_items(columns(rows, "text"), [None if r["label"] == "" else float(r["label"]) for r in rows],
                         splits=columns(rows, "split"), seed=1, **SMALL)
    assert_same_model(a, b)


def test_where_selects_rows_in_every_command(tmp_path, capsys):
    from conftest import assert_user_error, run_cli

    rows = rows_for()
    data = write_csv(tmp_path / "d.csv", rows)
    out = tmp_path / "q1.npz"
    rc, _, err = run_cli(capsys, "train", data, "--out", out, "--where", "item=Q1", "--epochs", "1", "-q")
    assert rc == 0, err
    q1_train = sum(1 for r in rows if r["item"] == "Q1" and r["split"] == "train" and r["label"])
    tr = tinykd.load(out).meta["training"]  # Q1 has no 'val' rows: 1/8 of its training rows validate
    assert (tr["n_train"] + tr["n_val"], tr["n_val"]) == (q1_train, -(-q1_train // 8))  # scikit-learn rounds the test share up
    scored = tmp_path / "s.csv"
    assert run_cli(capsys, "score", out, data, "--out", scored, "--where", "item = Q2 ")[0] == 0
    with open(scored, newline="", encoding="utf-8") as f:
        got = list(csv.DictReader(f))
    assert len(got) == sum(r["item"] == "Q2" for r in rows) and {r["item"] for r in got} == {"Q2"}
    rc, so, _ = run_cli(capsys, "evaluate", out, data, "--where", "item=Q2", "--where", "split=test", "--json")
    assert rc == 0 and __import__("json").loads(so)["n"] == sum(
        r["item"] == "Q2" and r["split"] == "test" for r in rows)
    rc, _, err = run_cli(capsys, "train", data, "--out", out, "--where", "item=Q9")
    assert_user_error(rc, err, "no rows with item == 'Q9' (--where)")
    rc, _, err = run_cli(capsys, "train", data, "--out", out, "--where", "grade=5")
    assert_user_error(rc, err, "no column 'grade' (set --where)")


def test_one_teacher_file_per_item_joins_by_id(tmp_path, capsys):
    from conftest import assert_user_error, run_cli

    rows = rows_for()
    for r in rows:  # item Q2 scores 0-1 only: its teacher file has two columns
        if r["item"] == "Q2" and r["label"] == "2.0":
            r["label"] = "1.0"
    data = write_csv(tmp_path / "d.csv", rows)
    q1 = teacher_file([r for r in rows if r["item"] == "Q1"], tmp_path / "q1.csv")
    q2_rows = [r for r in rows if r["item"] == "Q2"]
    write_soft_labels(str(tmp_path / "q2.csv"), [r["id"] for r in q2_rows], [0, 1],
                      np.tile([0.3, 0.7], (len(q2_rows), 1)))
    out = tmp_path / "b.npz"
    rc, _, err = run_cli(capsys, "train", data, "--out", out, "--item-col", "item", "--teacher", q1,
                         "--teacher", tmp_path / "q2.csv", "--epochs", "1", "-q")
    assert rc == 0, err
    b = tinykd.load(out)
    assert b.students["Q2"].classes == [0, 1] and b.students["Q2"].meta["training"]["teacher"]
    ids, classes, p = tinykd.files.softlabels.merge_soft_label_tables([q1, str(tmp_path / "q2.csv")])
    k = ids.index(q2_rows[0]["id"])
    assert classes == ["0", "1", "2"] and p[k].tolist() == pytest.approx([0.3, 0.7, 0.0])
    rc, _, err = run_cli(capsys, "train", data, "--out", out, "--item-col", "item", "--teacher", q1)
    assert_user_error(rc, err, "requested ids are not in the file", "several teacher files",
                      "--allow-missing-teacher")
    with pytest.raises(tinykd.files.softlabels.SoftLabelError, match="in two teacher files"):
        tinykd.files.softlabels.merge_soft_label_tables([q1, q1])


def test_default_lambda_and_copy_count():
    """λ = 4 with a teacher (the same default in fit and distill), 0 without; distill's copies
    keep the transfer set near 48,000 answers, 32 at most and 2 at least."""
    import tinykd.distill.pipeline as D
    from tinykd.train.options import DEFAULT_LAM

    assert D.LAMS == (DEFAULT_LAM,) == (4.0,)
    assert [D.auto_copies(n) for n in (10, 1338, 1500, 1600, 4348, 12000, 50000)] == [32, 32, 32, 30, 11, 4, 2]


def test_options_object_or_keywords_train_the_same_student():
    """fit / fit_items take one TrainOptions, or its fields as keywords (replacing the object's); the
    same options give the same weights bit for bit; an unknown keyword is a TypeError naming it."""
    texts, y = ["acid rain dissolves", "the rock", "acid marble", "wet cold rock"] * 6, [1, 0, 1, 0] * 6
    small = dict(config=SMALL["config"], epochs=2)
    a = tinykd.fit(texts, y, preset="gelatin", lam=0.0, seed=4, verbose=False, **small)
    b = tinykd.fit(texts, y, options=TrainOptions(preset="gelatin", seed=4, **small), verbose=False)
    c = tinykd.fit(texts, y, options=TrainOptions(preset="gelatin", seed=9, epochs=5, config=small["config"]),
                   seed=4, epochs=2, verbose=False)
    np.testing.assert_array_equal(a.net.params, b.net.params)
    np.testing.assert_array_equal(a.net.params, c.net.params)
    assert c.meta["training"]["seed"] == 4 and c.meta["training"]["epochs"] == 2 and len(c.meta["history"]) == 2
    assert a.meta["preset"] == "gelatin" and a.meta["training"]["lam"] == 0.0
    d = tinykd.fit(texts, y, options=TrainOptions(preset="gelatin", seed=5, **small), verbose=False)
    assert not np.array_equal(a.net.params, d.net.params)
    with pytest.raises(TypeError, match=r"unknown training option\(s\) epoch;"):
        tinykd.fit(texts, y, epoch=3, verbose=False)
    with pytest.raises(TypeError, match="options must be a TrainOptions, got dict"):
        tinykd.fit(texts, y, options={"epochs": 3}, verbose=False)
    rows = rows_for(items=("Q1", "Q2"), unlabeled=0)
    args = (columns(rows, "text"), columns(rows, "label"))
    kw = dict(items=columns(rows, "item"), splits=columns(rows, "split"), verbose=False)
    by_kw = tinykd.fit_items(*args, **kw, preset="bathtub", seed=2, **small)
    by_obj = tinykd.fit_items(*args, **kw, options=TrainOptions(preset="bathtub", seed=2, **small))
    assert_same_model(by_kw, by_obj)
    with pytest.raises(TypeError, match="unknown training option.*colour"):
        tinykd.fit_items(*args, **kw, colour="red")


def test_item_jobs_carry_the_options_and_pickle():
    """plan_items makes one ItemJob per item carrying the one TrainOptions; a job pickled (as for a Dask
    worker) trains the same student; a bad option is refused before any row is read."""
    import pickle

    from tinykd.train.items import fit_item, plan_items

    rows = rows_for(items=("Q1", "Q2"), unlabeled=0)
    options = TrainOptions(preset="bathtub", seed=3, **{k: SMALL[k] for k in ("config", "epochs")})
    plan = plan_items(columns(rows, "text"), columns(rows, "label"), items=columns(rows, "item"),
                      splits=columns(rows, "split"), options=options, verbose=False)
    assert [j.item for j in plan.jobs] == ["Q1", "Q2"] and all(j.options is options for j in plan.jobs)
    # rows i % 10 < 7 train, 7 is val; items alternate: Q1 has 36 training rows and no val row, Q2 27 and 9
    assert [len(j.y) for j in plan.jobs] == [36, 27] and plan.jobs[0].validation is None
    assert len(plan.jobs[1].validation[0]) == 9
    job = plan.jobs[0]
    back = pickle.loads(pickle.dumps(job))
    assert back.options == options
    np.testing.assert_array_equal(fit_item(back).net.params, fit_item(job).net.params)
    with pytest.raises(OptionError, match="lr must be > 0") as e:
        plan_items(["a", "b"], ["0", "1"], lr=0.0)
    assert e.value.option == "lr"


def test_val_split_must_not_be_the_training_split():
    rows = rows_for(items=("Q1",), unlabeled=0)
    with pytest.raises(OptionError, match="val_split 'train' is the training split") as e:
        tinykd.fit_items(columns(rows, "text"), columns(rows, "label"), splits=columns(rows, "split"),
                         val_split="train", **SMALL)
    assert e.value.for_cli().startswith("--val-split")


def test_balance_weights_give_the_transfer_rows_the_answers_class_mix():
    """balance_weights: add-one shares a_c (answers) and b_c (transfer), w = clip(a_c / b_c, 0.2, 5) scaled to mean 1;
    the weighted arg-max mix of the transfer rows moves to the answers' mix."""
    from tinykd.train.fitting import balance_weights

    eye = np.eye(3)
    answers = eye[[0] * 5 + [1] * 3 + [2] * 2]          # a = (6, 4, 3) / 13
    transfer = eye[[0] * 11 + [1] * 5 + [2] * 1]         # b = (12, 6, 2) / 20
    w = balance_weights(answers, transfer)
    a, b = np.array([6, 4, 3]) / 13, np.array([12, 6, 2]) / 20
    raw = (a / b)[transfer.argmax(1)]
    np.testing.assert_allclose(w, raw * len(raw) / raw.sum(), rtol=1e-12)
    assert w.mean() == pytest.approx(1.0)
    mix = np.bincount(transfer.argmax(1), weights=w, minlength=3)
    v = np.array([11, 5, 1]) * a / b  # each class's count times its weight: near a when b is near the counts' shares
    np.testing.assert_allclose(mix / mix.sum(), v / v.sum(), rtol=1e-12)
    assert abs(mix / mix.sum() - a).max() < abs(np.array([11, 5, 1]) / 17 - a).max() / 2
    # a class the transfer rows almost lack: a / b = (51/102) / (2/102) = 25.5 is held at 5 (class 0: 0.51)
    w = balance_weights(eye[[2] * 50 + [0] * 50], eye[[0] * 99 + [2]])
    assert w[-1] / w[0] == pytest.approx(5.0 / (51 / 100), rel=1e-12)
    # rows without the teacher (NaN) are not counted among the answers
    nan_row = np.full((1, 3), np.nan)
    np.testing.assert_array_equal(balance_weights(np.vstack([answers, nan_row]), transfer), balance_weights(answers, transfer))


def test_balance_transfer_trains_on_weighted_rows_and_says_so(monkeypatch):
    """TrainOptions(balance_transfer=True): the transfer rows reach training with balance_weights, the scored rows
    with 1; the model file's training record says so; off (the default), no weights and no record."""
    import tinykd.train.fitting as fitting
    from tinykd.train.options import TrainOptions

    seen = {}
    real = fitting.train

    def spy(net, data, *a, **k):
        seen["w"] = data.weights
        return real(net, data, *a, **k)

    monkeypatch.setattr(fitting, "train", spy)
    rng = np.random.default_rng(0)
    texts = ["good answer"] * 6 + ["bad answer"] * 6
    y = [1] * 6 + [0] * 6
    p = np.where(np.array(y)[:, None] == 1, [0.2, 0.8], [0.9, 0.1])
    tx_p = np.array([[0.9, 0.1]] * 9 + [[0.3, 0.7]] * 3)
    tx = (["bad"] * 9 + ["good"] * 3, tx_p)
    opts = TrainOptions(epochs=1, seed=0, batch_size=4, offsets=False)
    s = fitting.fit(texts, y, p, options=opts.replace(balance_transfer=True), transfer=tx, verbose=False,
                    validation=(texts[:4], y[:4]))
    expect = fitting.balance_weights(p, tx_p)
    np.testing.assert_allclose(seen["w"], np.concatenate([np.ones(12), expect]))
    assert expect[-1] > expect[0] and s.meta["training"]["balance_transfer"] is True
    s = fitting.fit(texts, y, p, options=opts, transfer=tx, verbose=False, validation=(texts[:4], y[:4]))
    assert seen["w"] is None and "balance_transfer" not in s.meta["training"]
    with pytest.raises(Exception, match="balance_transfer"):
        TrainOptions(balance_transfer="yes")
    del rng
