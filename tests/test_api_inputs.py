"""The Python API and the command line given careless arguments: a bare string where a list of
texts belongs, negative or zero settings, huge λ / T, bad seeds, bad layer widths — each a
one-line ValueError / TypeError naming the argument (``tinykd: error: …``, exit 2, on the
command line) — and classes too small for the validation hold-out, which stay in the model."""
import warnings

import numpy as np
import pytest

import tinykd
from tinykd.distill.pipeline import _roles
from tinykd.errors import OptionError
from tinykd.train.splits import holdout, rare_classes, split_712

from conftest import assert_user_error, write_csv
from conftest import run_cli as run

TINY = dict(config=dict(embed_dim=8, units=8, dense_units=8), epochs=1, verbose=False)
WORDS = "acid rain dissolves marble rock water heat energy light plant".split()


def _texts(n, seed=0):
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, 4)) for _ in range(n)]


@pytest.fixture(scope="module")
def student():
    return tinykd.fit(_texts(24), [i % 2 for i in range(24)], validation=False, **TINY)


@pytest.fixture
def train_csv(tmp_path):
    return write_csv(tmp_path / "d.csv", [{"id": f"r{i}", "text": t, "label": i % 3} for i, t in
                                          enumerate(_texts(30))])


# ============================================================================ a bare string
def test_a_bare_string_is_never_read_character_by_character(student):
    text = "acid rain dissolves marble"
    with pytest.raises(TypeError, match=r"^texts must be a sequence \(one value per answer\), not a single string"):
        tinykd.fit(text, [i % 2 for i in range(len(text))], **TINY)  # one label per character: was trained on
    with pytest.raises(TypeError, match="^y must be a sequence"):
        tinykd.fit(_texts(4), "0101", **TINY)
    with pytest.raises(TypeError, match="^texts must be a sequence"):
        tinykd.fit_items(text, ["1"] * len(text), **TINY)
    with pytest.raises(TypeError, match="^labels must be a sequence"):
        tinykd.fit_items(_texts(4), "0101", **TINY)
    with pytest.raises(TypeError, match="^items must be a sequence"):
        tinykd.fit_items(_texts(4), [0, 1, 0, 1], items="abab", **TINY)
    for call in (student.predict_proba, student.predict, lambda t: student.encode(t)):
        with pytest.raises(TypeError, match="^texts must be a sequence"):
            call("acid rain")  # was scored as 9 one-letter answers
    with pytest.raises(TypeError, match="^contexts must be a sequence"):
        student.vocab.encode(["acid"], "why")
    bundle = tinykd.Bundle({"1": student})
    with pytest.raises(TypeError, match="^texts must be a sequence"):
        bundle.predict_proba_matrix("ab", ["1", "1"])
    with pytest.raises(TypeError, match="^items must be a sequence"):
        bundle.predict(["acid", "rain"], "11")
    assert student.predict_proba(("acid rain", "rock")).shape == (2, 2)  # any other sequence is fine


# ==================================================================== settings out of range
@pytest.mark.parametrize("option,value,needle", [
    ("lr", -1e-3, "lr must be > 0"), ("lr", 0, "lr must be > 0"), ("patience", -1, "patience must be > 0"),
    ("patience", 0, "patience must be > 0"), ("epochs", -5, "epochs must be > 0"),
    ("batch_size", 0, "batch_size must be > 0"),
    ("validation_fraction", 0, "validation_fraction must be between 0 and 1"),
    ("validation_fraction", 1.0, "validation_fraction must be between 0 and 1"),
    ("validation_fraction", -0.1, "validation_fraction must be between 0 and 1"),
    ("lam", float("inf"), "lam must be >= 0 and at most 1000"), ("lam", 1e300, "lam must be >= 0 and at most 1000"),
    ("temperature", float("inf"), "temperature must be between 0.01 and 100"),
    ("temperature", 1e300, "temperature must be between 0.01 and 100"),
    ("temperature", 1e-300, "temperature must be between 0.01 and 100"),
    ("seed", -1, "seed must be a whole number from 0 to 4,294,967,295"),
    ("seed", 2**32, "seed must be a whole number from 0 to 4,294,967,295"),
    ("seed", 1.5, "seed must be a whole number"), ("config", [1], "config must be a dict"),
])
def test_bad_settings_are_value_errors_naming_the_argument(option, value, needle):
    for call in (lambda: tinykd.fit(_texts(24), [i % 2 for i in range(24)], **{**TINY, option: value}),
                 lambda: tinykd.fit_items(_texts(24), [i % 2 for i in range(24)], **{**TINY, option: value})):
        with pytest.raises(OptionError, match=needle) as e:
            call()
        assert e.value.option == option and "\n" not in str(e.value)
    if option != "config":
        kd = {"seed": "random_state"}.get(option, option)
        with pytest.raises(OptionError, match=needle):
            tinykd.KDClassifier(**{"epochs": 1, kd: value}).fit(_texts(24), [i % 2 for i in range(24)])


@pytest.mark.parametrize("key,value", [("dense_units", -4), ("units", 0), ("embed_dim", 2.5), ("units", "8"),
                                       ("units", True), ("dropout", 1.0), ("dropout", -0.1), ("rnn", "gru"),
                                       ("max_vocab", 2), ("max_len", 0), ("dense_l2", float("nan"))])
def test_bad_layer_widths_and_config_values(key, value):
    with pytest.raises(ValueError, match=rf"^config\['{key}'\] must be") as e:
        tinykd.fit(_texts(24), [i % 2 for i in range(24)], **{**TINY, "config": {key: value}})
    assert "reshape" not in str(e.value)
    with pytest.raises(ValueError, match=rf"^config\['{key}'\] must be"):
        tinykd.make_config("7t", **{key: value})


def test_holdout_fraction_zero_is_a_value_error_not_a_division_by_zero():
    for bad in (0, 0.0, 1, -0.5, True):
        with pytest.raises(ValueError, match="fraction must be between 0 and 1"):
            holdout(np.arange(20) % 2, bad)


@pytest.mark.parametrize("args,needle", [
    (["--lam", "inf"], "--lam must be >= 0 and at most 1000, got inf"),
    (["--lam", "1e300"], "--lam must be >= 0 and at most 1000"),
    (["--temperature", "inf"], "--temperature must be between 0.01 and 100, got inf"),
    (["--temperature", "1e300"], "--temperature must be between 0.01 and 100"),
    (["--temperature", "1e-300"], "--temperature must be between 0.01 and 100"),
    (["--seed", "-1"], "--seed must be a whole number from 0 to 4,294,967,295, got -1"),
    (["--seed", "99999999999"], "--seed must be a whole number from 0 to 4,294,967,295"),
    (["--patience", "-1"], "--patience must be > 0"), (["--lr", "-1"], "--lr must be > 0"),
])
def test_command_line_names_the_option_not_the_lr_or_scikit_learn(tmp_path, capsys, train_csv, args, needle):
    rc, _, err = run(capsys, "train", train_csv, "--out", tmp_path / "m.npz", "--epochs", "1", *args)
    assert_user_error(rc, err, needle)
    assert "random_state" not in err and "smaller --lr" not in err
    if args[0] == "--seed":
        rc, _, err = run(capsys, "augment", train_csv, "--out", tmp_path / "a.csv", *args)
        assert_user_error(rc, err, needle)
        assert "non-negative" not in err and not (tmp_path / "a.csv").exists()


# ================================================================ classes too small to hold out
def test_a_rare_class_is_never_held_out_whole():
    y = np.array([0] * 999 + [1])
    for seed in range(20):
        tr, va = holdout(y, 0.125, seed)
        assert 999 in tr and 999 not in va and len(va) == 125  # 1/8 of the 999 rows of class 0
        tr, va, te = split_712(y, seed)
        assert 999 in tr
    y = np.array([0] * 40 + [1] * 7 + [2] * 2)
    tr, va = holdout(y, 0.125, 0)
    assert set(y[va]) == {0} and set(np.flatnonzero(y > 0)) <= set(tr) and rare_classes(y) == [1, 2]
    y = np.array([0] * 40 + [1] * 16)
    np.testing.assert_array_equal(holdout(y, 0.125, 3)[1], holdout(y, 0.125, 3)[1])  # seeded
    assert sorted(np.bincount(y[holdout(y, 0.125, 3)[1]])) == [2, 5]  # stratified as before


def test_a_999_to_1_imbalance_keeps_both_classes_in_the_model(tmp_path):
    texts = _texts(1000)
    y = [0] * 999 + [1]
    for seed in (0, 1, 2):
        with warnings.catch_warnings(record=True) as seen:  # validation rows of one class: QWK undefined, no warning
            warnings.simplefilter("always")
            s = tinykd.fit(texts, y, seed=seed, **TINY)
        assert [str(w.message) for w in seen] == [] and s.meta["validation_metrics"]["qwk"] == 0.0
        assert s.classes == [0, 1] and s.meta["training"]["n_train"] == 1000 - 125
        assert any("class 1 has fewer than 8 rows: all kept for training, none held out for validation" in n
                   for n in s.meta["notes"])
    s.save(tmp_path / "m.npz")  # and the model file, NaN QWK and all, loads
    assert tinykd.load(tmp_path / "m.npz").classes == [0, 1]
    labels = y
    for seed in range(20):  # tinykd distill's roles (its students get these validation rows)
        roles = _roles(labels, ["train"] * 1000, None, "train", None, "test", seed)
        assert roles[999] == "train" and roles.count("val") == 125
