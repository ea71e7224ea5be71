"""KDClassifier honours the scikit-learn estimator contract: clone, get/set_params,
cross_val_score (teacher probabilities routed per fold), Pipeline."""
import numpy as np
import pytest
from sklearn.base import clone, is_classifier
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

import tinykd
from tinykd.estimator import KDClassifier
from tinykd.errors import OptionError
from tinykd.train.options import DEFAULT_LAM, TrainOptions

TINY = dict(embed_dim=8, units=8, dense_units=8)
GOOD = "acid rain dissolves marble because it reacts with calcium carbonate".split()
BAD = "the rock gets wet and cold nothing happens maybe".split()


def toy(n=60, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    X = [" ".join(list(rng.choice(GOOD, 3 * k)) + list(rng.choice(BAD, 6 - k))) for k in y]
    p = np.full((n, 3), 0.15)
    p[np.arange(n), y] = 0.7
    return X, y, p


def make(**kw):
    return KDClassifier(config=TINY, epochs=2, **kw)


def test_exposed_lazily_and_params_stored_as_given():
    assert tinykd.KDClassifier is KDClassifier
    cfg = dict(TINY)
    c = KDClassifier(preset="gelatin", lam=0.5, temperature=2.0, config=cfg, random_state=3)
    params = c.get_params()
    assert params["preset"] == "gelatin" and params["lam"] == 0.5 and params["config"] is cfg
    assert set(params) == {"preset", "lam", "temperature", "epochs", "batch_size", "lr", "patience",
                           "validation_fraction", "config", "offsets", "random_state", "verbose", "label_names"}
    assert c.set_params(lam=0.0, epochs=7) is c and c.lam == 0.0 and c.epochs == 7
    assert is_classifier(c)
    c2 = clone(c)
    assert c2 is not c and c2.get_params() == c.get_params()


def test_fit_predict_score_and_fitted_attributes():
    X, y, p = toy()
    c = make()
    with pytest.raises(NotFittedError):
        c.predict(X)
    assert c.fit(X, y, teacher_proba=p) is c
    assert list(c.classes_) == [0, 1, 2] and c.n_params_ == c.student_.n_params > 0
    assert len(c.history_) >= 1 and c.student_.meta["training"]["lam"] == DEFAULT_LAM  # λ unset, a teacher given
    proba = c.predict_proba(X)
    assert proba.shape == (60, 3) and proba.dtype == np.float64 and np.allclose(proba.sum(1), 1, atol=1e-5)
    pred = c.predict(X)
    assert (pred == c.classes_[proba.argmax(1)]).all()
    assert c.score(X, y) == pytest.approx(np.mean(pred == y))
    assert "student_" not in clone(c).__dict__  # a clone is unfitted


def test_same_seed_same_model_and_no_teacher_is_plain_nn():
    X, y, _ = toy()
    a, b = make(random_state=1).fit(X, y), make(random_state=1).fit(X, y)
    assert np.array_equal(a.predict_proba(X), b.predict_proba(X))
    assert a.student_.meta["training"]["lam"] == 0.0


def test_string_labels_pairs_and_missing_texts():
    X, y, _ = toy(30)
    names = np.array(["incorrect", "partial", "correct"])[y]
    pairs = np.array([[x, "what does acid rain do"] for x in X], dtype=object)
    c = make().fit(pairs, names)
    assert list(c.classes_) == ["correct", "incorrect", "partial"] and c.student_.uses_context and c.uses_context_
    assert set(c.predict(pairs[:5])) <= set(c.classes_)
    with pytest.raises(ValueError, match="pairs"):
        c.predict(X[:3])
    d = make().fit(np.array(X + [None, float("nan")], dtype=object), np.r_[y, 0, 1])
    assert d.predict_proba([None]).shape == (1, 3)  # a missing text is a blank answer


def test_bad_input_is_a_clear_error():
    X, y, p = toy(30)
    with pytest.raises(ValueError, match="shape"):
        make().fit(X, y, teacher_proba=p[:, :2])
    with pytest.raises(ValueError, match="not a single string"):
        make().fit("one answer", [1])
    with pytest.raises(ValueError, match="missing labels"):
        make().fit(X, np.r_[y[:-1], np.nan])


def test_cross_val_score_routes_teacher_probabilities():
    X, y, p = toy(60)
    scores = cross_val_score(make(), X, y, cv=3, params={"teacher_proba": p})
    assert scores.shape == (3,) and ((0 <= scores) & (scores <= 1)).all()
    plain = cross_val_score(make(), X, y, cv=3)
    assert plain.shape == (3,)


def test_in_a_pipeline():
    X, y, p = toy()
    pipe = Pipeline([("lower", FunctionTransformer(lambda t: [s.upper() for s in t])), ("kd", make())])
    pipe.fit(X, y, kd__teacher_proba=p)
    assert pipe.predict(X[:4]).shape == (4,) and list(pipe.classes_) == [0, 1, 2]
    assert 0.0 <= pipe.score(X, y) <= 1.0
    # the tokenizer lower-cases, so upper-casing first changes nothing
    direct = make().fit(X, y, teacher_proba=p)
    assert np.allclose(pipe.predict_proba(X), direct.predict_proba(X))


def test_sklearn_contract_checks():
    from sklearn.utils.estimator_checks import (check_get_params_invariance, check_no_attributes_set_in_init,
                                                check_parameters_default_constructible, check_set_params)

    for check in (check_no_attributes_set_in_init, check_parameters_default_constructible,
                  check_get_params_invariance, check_set_params):
        check("KDClassifier", KDClassifier())


def test_pickles_and_saves_a_model_file(tmp_path):
    import pickle

    X, y, p = toy(30)
    c = make().fit(X, y, teacher_proba=p)
    back = pickle.loads(pickle.dumps(c))  # joblib (n_jobs > 1) needs this
    assert np.array_equal(back.predict_proba(X), c.predict_proba(X))
    c.student_.save(tmp_path / "m.npz")
    assert np.allclose(tinykd.load(tmp_path / "m.npz").predict_proba(X), c.predict_proba(X), atol=1e-6)


def test_defaults_are_the_training_options_and_fit_builds_them():
    """The parameters' defaults are TrainOptions' own; fit checks them (not __init__) and keeps the
    TrainOptions it trained with in ``options_``."""
    d, params = TrainOptions(), KDClassifier().get_params()
    for name in ("preset", "lam", "temperature", "epochs", "batch_size", "lr", "patience", "validation_fraction",
                 "config", "offsets"):
        assert params[name] == getattr(d, name), name
    assert params["random_state"] == d.seed == 0
    X, y, p = toy(30)
    c = make(random_state=4, lam=0.5, patience=3).fit(X, y, teacher_proba=p)
    assert c.options_ == TrainOptions(config=TINY, epochs=2, lam=0.5, patience=3, seed=4)
    assert c.student_.meta["training"]["seed"] == 4 and c.student_.meta["training"]["lam"] == 0.5
    bad = make(lr=-1.0)  # stored as given ...
    assert bad.lr == -1.0
    with pytest.raises(OptionError, match="lr must be > 0") as e:  # ... refused by fit, naming it
        bad.fit(X, y)
    assert e.value.option == "lr" and not hasattr(bad, "student_")


def test_random_state_like_scikit_learn():
    """An int is the seed as it is; a RandomState or Generator gives one drawn seed (the same state,
    the same seed); None draws from NumPy's global generator; anything else names random_state."""
    X, y, _ = toy(30)
    seeds = []
    for rs in (np.random.RandomState(0), np.random.RandomState(0), np.random.default_rng(0),
               np.random.default_rng(0)):
        seeds.append(make(random_state=rs).fit(X, y).options_.seed)
    assert seeds[0] == seeds[1] == int(np.random.RandomState(0).randint(0, 2**32, dtype=np.int64))
    assert seeds[2] == seeds[3] == int(np.random.default_rng(0).integers(0, 2**32))
    np.random.seed(1)
    a = make(random_state=None).fit(X, y).options_.seed
    np.random.seed(1)
    assert make(random_state=None).fit(X, y).options_.seed == a
    assert make(random_state=np.int64(7)).fit(X, y).options_.seed == 7
    for bad in ("0", 1.5, -1, 2**32):
        with pytest.raises(OptionError, match="random_state must be a whole number") as e:
            make(random_state=bad).fit(X, y)
        assert e.value.option == "random_state"
