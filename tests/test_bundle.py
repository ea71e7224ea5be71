"""Per-item bundles: routing, differing class sets, unknown items, save/load."""
import numpy as np
import pytest

import tinykd
from tinykd.scoring.student import Bundle, UnknownItemError

TINY = dict(embed_dim=8, units=8, dense_units=8)


@pytest.fixture(scope="module")
def bundle():
    rng = np.random.default_rng(0)
    words = "acid rain marble rock water heat light plant".split()
    texts = [" ".join(rng.choice(words, 5)) for _ in range(40)]
    a = tinykd.fit(texts, np.arange(40) % 3, config=TINY, epochs=1, verbose=False, validation=False)
    b = tinykd.fit(texts, np.arange(40) % 2 + 1, config=TINY, epochs=1, verbose=False, validation=False,
                   seed=1)  # item 2 only knows scores 1 and 2
    return Bundle({1: a, "2": b}, item_col="item")


def test_routes_each_row_to_its_item(bundle):
    texts = ["acid rain", "rock water", "marble", "heat"]
    items = ["1", 2, " 1 ", "2"]  # compared as stripped text
    proba = bundle.predict_proba_matrix(texts, items)
    assert bundle.items == ["1", "2"] and bundle.classes == [0, 1, 2]
    a, b = bundle.students["1"], bundle.students["2"]
    assert np.allclose(proba[[0, 2]], a.predict_proba([texts[0], texts[2]]))
    assert np.allclose(proba[[1, 3], 1:], b.predict_proba([texts[1], texts[3]]))
    assert (proba[[1, 3], 0] == 0).all()  # item 2 has no class 0
    assert bundle.predict(texts, items) == [a.predict([texts[0]])[0], b.predict([texts[1]])[0],
                                            a.predict([texts[2]])[0], b.predict([texts[3]])[0]]
    assert bundle.n_params == a.n_params + b.n_params


def test_unknown_items_are_named(bundle):
    with pytest.raises(UnknownItemError, match=r"no student for item\(s\) '3', 'x'; the model knows 1, 2"):
        bundle.predict(["a", "b", "c"], ["1", "3", "x"])


def test_save_load_roundtrip(bundle, tmp_path):
    p = tmp_path / "b.npz"
    bundle.save(p)
    back = tinykd.load(p)
    assert isinstance(back, Bundle) and back.items == ["1", "2"] and back.item_col == "item"
    texts, items = ["acid rain", "rock"], ["2", "1"]
    assert np.array_equal(back.predict_proba_matrix(texts, items), bundle.predict_proba_matrix(texts, items))
    assert back.students["2"].classes == [1, 2]


def test_construction_errors(bundle):
    with pytest.raises(ValueError, match="at least one"):
        Bundle({})
    st = bundle.students["1"]
    with pytest.raises(ValueError, match="distinct"):
        Bundle({1: st, "1": st})
