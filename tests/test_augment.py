"""tinykd.distill.augment: deterministic, order-independent perturbed copies of training answers."""
import numpy as np
import pytest

from tinykd.distill.augment import augment
from tinykd.scoring.text import tokenize

TEXTS = ["The acid rain dissolves the marble because the acid reacts with it",
         "", "Water boils at 100 degrees", "the plant needs light to grow and make food"]
IDS = ["a1", "b2", "c3", "d4"]


def test_copies_ids_sources_and_order_independence():
    ids, texts, src = augment(TEXTS, IDS, n=5, seed=3)
    assert ids == [f"{i}~aug{k}" for i in IDS for k in range(5)]
    assert src.tolist() == [j for j in range(4) for _ in range(5)]
    # same answers in another order: each copy is the same text (seeded by id and k, not by position)
    order = [2, 0, 3, 1]
    ids2, texts2, src2 = augment([TEXTS[j] for j in order], [IDS[j] for j in order], n=5, seed=3)
    assert dict(zip(ids2, texts2)) == dict(zip(ids, texts))
    # another seed gives other copies
    assert augment(TEXTS, IDS, n=5, seed=4)[1] != texts
    # an empty answer gives empty copies; every word comes from the training texts
    assert all(t == "" for i, t in zip(ids, texts) if i.startswith("b2"))
    vocab = {w for t in TEXTS for w in tokenize(t)}
    assert all(set(t.split()) <= vocab for t in texts)
    assert all(tokenize(t) == t.split() for t in texts)  # the students' tokenizer reads them back as written


def test_probabilities_do_what_they_say():
    long = [" ".join(f"w{i}" for i in range(50))] * 200
    ids = [str(i) for i in range(200)]
    # no perturbation: exact copies
    _, same, _ = augment(long[:3], ids[:3], n=2, p_drop=0, p_swap=0, p_span=0)
    assert same == [long[0]] * 6
    # drops only: about 10 % of the tokens go, order kept
    _, dropped, _ = augment(long, ids, n=1, p_drop=0.1, p_swap=0, p_span=0)
    kept = np.mean([len(t.split()) for t in dropped]) / 50
    assert 0.87 < kept < 0.93
    assert all(t.split() == sorted(t.split(), key=lambda w: int(w[1:])) for t in dropped)
    # spans only: a contiguous run of 30-90 % of the tokens, in about a quarter of the copies
    _, spans, _ = augment(long, ids, n=1, p_drop=0, p_swap=0, p_span=0.25)
    cut = [t for t in spans if t != long[0]]
    assert 0.17 < len(cut) / 200 < 0.33
    for t in cut:
        ws = [int(w[1:]) for w in t.split()]
        assert ws == list(range(ws[0], ws[0] + len(ws))) and 15 <= len(ws) <= 45


def test_mask_replaces_in_place_and_leaves_the_default_copies_unchanged():
    """p_mask: about that share of the tokens becomes [MASK], in place (length and the other words
    kept); p_mask = 0 (the default) draws nothing more, so the copies are those made without it."""
    from tinykd.distill.augment import MASK

    long = [" ".join(f"w{i}" for i in range(50))] * 200
    ids = [str(i) for i in range(200)]
    _, masked, _ = augment(long, ids, n=1, p_drop=0, p_mask=0.2, p_swap=0, p_span=0)
    toks = [t.split() for t in masked]
    assert all(len(t) == 50 for t in toks)
    assert 0.17 < np.mean([w == MASK for t in toks for w in t]) < 0.23
    assert all(w == f"w{k}" for t in toks for k, w in enumerate(t) if w != MASK)
    a, b = augment(TEXTS, IDS, n=4, seed=1, p_mask=0.0), augment(TEXTS, IDS, n=4, seed=1)
    assert a[1] == b[1]
    # masks and swaps share one draw per token and never overlap
    _, both, _ = augment(long, ids, n=1, p_drop=0, p_mask=0.5, p_swap=0.5, p_span=0)
    assert all(w == MASK or w.startswith("w") for t in both for w in t.split())
    assert 0.45 < np.mean([w == MASK for t in both for w in t.split()]) < 0.55
    with pytest.raises(ValueError, match="p_mask \\+ p_swap"):
        augment(TEXTS, IDS, p_mask=0.6, p_swap=0.5)


@pytest.mark.parametrize("kw, msg", [(dict(n=-1), "n must"), (dict(p_drop=1.5), "p_drop"),
                                     (dict(ids=["a", "a", "b", "c"]), "unique"), (dict(ids=["a"]), "ids")])
def test_bad_arguments(kw, msg):
    args = dict(texts=TEXTS, ids=IDS, n=2)
    args.update(kw)
    with pytest.raises(ValueError, match=msg):
        augment(**args)


def test_splice_joins_a_prefix_of_the_answer_and_a_suffix_of_another():
    texts = [" ".join(f"{c}{i}" for i in range(40)) for c in "pqrstu"]  # each answer's own words
    ids = [f"id{c}" for c in "pqrstu"]
    base = augment(texts, ids, n=6, seed=1)
    assert augment(texts, ids, n=6, seed=1, p_splice=0.0)[:2] == base[:2]  # off: nothing drawn, today's copies
    _, spliced, src = augment(texts, ids, n=200, seed=1, p_drop=0, p_swap=0, p_span=0, p_splice=1.0)
    partners = set()
    for t, j in zip(spliced, src.tolist()):
        ws = t.split()
        own = [w for w in ws if w[0] == "pqrstu"[j]]
        rest = ws[len(own):]
        assert own == texts[j].split()[:len(own)]  # a prefix of its own answer ...
        assert len({w[0] for w in rest}) <= 1  # ... then one other answer's words ...
        if rest:
            other = texts["pqrstu".index(rest[0][0])].split()
            assert rest == other[len(other) - len(rest):] and rest[0][0] != "pqrstu"[j]  # ... to its end
            partners.add(rest[0][0])
    assert partners == set("pqrstu")
    mean_len = np.mean([len(t.split()) for t in spliced])
    assert 36 < mean_len < 44  # two uniform cuts: about one answer long on average
    # the same copies whatever the order of the answers
    order = [3, 0, 5, 1, 4, 2]
    ids2, t2, _ = augment([texts[j] for j in order], [ids[j] for j in order], n=20, seed=1, p_splice=0.5)
    ids1, t1, _ = augment(texts, ids, n=20, seed=1, p_splice=0.5)
    assert dict(zip(ids2, t2)) == dict(zip(ids1, t1))
    with pytest.raises(ValueError, match="p_splice"):
        augment(texts, ids, n=1, p_splice=1.5)
