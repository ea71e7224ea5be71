"""A student's aliases (docs/decisions/student-aliases.md): a word outside its vocabulary reads as the id of the
vocabulary word of the nearest vector (cosine); training and scoring read it so; the model file keeps the
aliases and refuses bad ones; the teacher's whole words are the words of its tokenizer a student can read."""
import io

import numpy as np
import pytest

import tinykd
from tinykd.scoring.modelfile import ModelFileError, read_bytes
from tinykd.scoring.student import load_bytes
from tinykd.scoring.text import OOV, Vocabulary


def test_a_word_outside_the_vocabulary_reads_as_the_vocabulary_word_of_the_nearest_vector():
    vocab = Vocabulary(max_size=6).fit(["cat cat dog", "dog mat cat"])
    assert vocab.tokens == ["<pad>", "<oov>", "<sep>", "cat", "dog", "mat"]
    words = ["cat", "dog", "mat", "kitten", "puppy", "rug", "x" * 300, "two words"]
    vectors = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [5, 1, 0], [0.2, 3, 0.1], [0, 0.1, 0.2], [1, 1, 1], [1, 0, 0]])
    vocab.alias(words, vectors)
    # by cosine, not distance: "kitten" (5, 1, 0) is nearer "cat" in angle; too long and two-word entries are left out
    assert vocab.aliases == {"kitten": 3, "puppy": 4, "rug": 5}
    ids, _ = vocab.encode(["kitten on the rug", "puppy"])
    np.testing.assert_array_equal(ids, [[3, OOV, OOV, 5], [4, 0, 0, 0]])
    again = Vocabulary.from_tokens(vocab.tokens, vocab.to_config(), (list(vocab.aliases), list(vocab.aliases.values())))
    np.testing.assert_array_equal(again.encode(["kitten on the rug"])[0], ids[:1])
    assert vocab.fit(["cat"]).aliases == {}  # a new fit starts without aliases


def test_a_vocabulary_word_without_a_vector_is_never_chosen_and_bad_input_is_refused():
    vocab = Vocabulary(max_size=10).fit(["cat dog"])
    vocab.alias(["dog", "puppy"], [[0, 1], [1, 0]])  # "cat" has no vector: "puppy" can only read as "dog"
    assert vocab.aliases == {"puppy": 4}
    with pytest.raises(ValueError, match="one finite row per word"):
        vocab.alias(["dog", "puppy"], [[0, 1]])
    with pytest.raises(ValueError, match="one finite row per word"):
        vocab.alias(["dog"], [[np.nan, 1]])
    with pytest.raises(ValueError, match="is a vocabulary word"):
        Vocabulary.from_tokens(vocab.tokens, vocab.to_config(), (["dog"], [3]))
    with pytest.raises(ValueError, match="outside 3..4"):
        Vocabulary.from_tokens(vocab.tokens, vocab.to_config(), (["puppy"], [OOV]))


def _task(n=120, seed=0):
    rng = np.random.default_rng(seed)
    good, bad = ["acid", "rain", "dissolves", "marble"], ["water", "cup", "size", "lid"]
    texts, y = [], []
    for k in range(n):
        label = k % 2
        words = list(rng.choice(good if label else bad, 3)) + ["the", "is"]
        rng.shuffle(words)
        texts.append(" ".join(words))
        y.append(label)
    return texts, y


def _vectors():
    words = ["acid", "rain", "dissolves", "marble", "water", "cup", "size", "lid", "the", "is",
             "vinegar", "bowl"]
    rng = np.random.default_rng(3)
    good, bad = rng.normal(size=8), rng.normal(size=8)
    v = np.array([good + 0.1 * rng.normal(size=8) if w in ("acid", "rain", "dissolves", "marble", "vinegar")
                  else bad + 0.1 * rng.normal(size=8) for w in words])
    return words, v


@pytest.fixture(scope="module")
def aliased():
    texts, y = _task()
    return tinykd.fit(texts, y, preset="falling_weights", epochs=2, verbose=False, validation=False,
                      word_aliases=_vectors())


def test_fit_with_aliases_scores_an_alias_as_the_word_it_reads_as(aliased):
    st = aliased
    near = {w: st.vocab.tokens[i] for w, i in st.vocab.aliases.items()}
    assert set(near) == {"vinegar", "bowl"} and st.meta["training"]["aliases"] == 2
    assert near["vinegar"] in ("acid", "rain", "dissolves", "marble")
    assert near["bowl"] in ("water", "cup", "size", "lid")
    p = st.predict_proba(["vinegar the is", f"{near['vinegar']} the is", "zebra the is"])
    np.testing.assert_array_equal(p[0], p[1])  # the same ids, the same probabilities
    assert not np.allclose(p[0], p[2])  # an unknown word reads as OOV, not as the alias
    plain = tinykd.fit(*_task(), preset="falling_weights", epochs=1, verbose=False, validation=False)
    assert plain.vocab.aliases == {} and "aliases" not in plain.meta["training"]


def test_the_model_file_keeps_the_aliases(aliased, tmp_path):
    path = tmp_path / "m.npz"
    aliased.save(path)
    back = tinykd.load(path)
    assert back.vocab.aliases == aliased.vocab.aliases
    texts = ["vinegar bowl the", "bowl is vinegar"]
    np.testing.assert_array_equal(back.predict_proba(texts), aliased.predict_proba(texts))
    _, arrays = read_bytes(aliased.to_bytes())
    assert arrays["default/alias_ids"].dtype == np.int32 and sorted(arrays["default/aliases"]) == ["bowl", "vinegar"]
    from tinykd.export.common import describe_student

    assert describe_student(aliased)["aliases"] == aliased.vocab.aliases


def _rewritten(student, **change):
    """The student's model file bytes with members replaced (a value) or removed (None)."""
    with np.load(io.BytesIO(student.to_bytes()), allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    for k, v in change.items():
        key = "meta.json" if k == "meta" else f"default/{k}"
        if v is None:
            arrays.pop(key)
        else:
            arrays[key] = v
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


@pytest.mark.parametrize("change, needle", [
    (dict(alias_ids=None), "'default/aliases' without its pair"),
    (dict(aliases=None), "'default/alias_ids' without its pair"),
    (dict(alias_ids=np.array([1, 5], np.int32)), "reads as id 1, not a vocabulary word's"),
    (dict(alias_ids=np.array([5, 10_000], np.int32)), "reads as id 10000"),
    (dict(aliases=np.array(["the", "bowl"])), "'the' both as a vocabulary word and as an alias"),
    (dict(aliases=np.array(["bowl", "bowl"])), "'bowl' twice"),
    (dict(alias_ids=np.array([5, 5], np.int64)), "int64 alias ids"),
    (dict(alias_ids=np.array([5], np.int32)), "(1,) int32 alias ids for 2 aliases"),
    (dict(aliases=np.array([[b"a"], [b"b"]])), "aliases are not a list of words"),
])
def test_the_model_file_refuses_bad_aliases_in_one_line(aliased, change, needle):
    data = _rewritten(aliased, **change)
    with pytest.raises(ModelFileError) as e:
        load_bytes(data, "crafted.npz")
    assert needle in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_whole_words_are_the_tokenizers_words_a_student_reads_as_one():
    pytest.importorskip("torch")
    from teacher_export.vectors import whole_words

    class Tok:
        def get_vocab(self):
            return {w: k for k, w in enumerate(["the", "##ing", "[unused0]", "a", "rain", "2x", "café", "don't",
                                                "[CLS]", "acid"])}

    assert whole_words(Tok()) == ["acid", "café", "rain", "the"]


def test_info_says_how_many_words_read_as_the_vocabularys(aliased, tmp_path, capsys):
    import json

    from conftest import run_cli

    aliased.save(tmp_path / "m.npz")
    rc, out, _ = run_cli(capsys, "info", tmp_path / "m.npz")
    assert rc == 0 and f"vocabulary {len(aliased.vocab):,} words (and 2 words read as one of them)" in out
    rc, out, _ = run_cli(capsys, "info", tmp_path / "m.npz", "--json")
    assert rc == 0 and json.loads(out)["students"]["default"]["aliases"] == 2
