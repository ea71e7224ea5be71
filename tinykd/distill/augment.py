"""Transfer data made from the training answers, for the teacher to label (distillation by augmentation).

A student learns the teacher's function only where it sees the teacher's outputs. With ~1,000 training
answers that is little; Tang et al. (2019, "Distilling task-specific knowledge from BERT into simple neural
networks") label *perturbed copies* of the training texts with the teacher and train the student on them with
the soft term only. :func:`augment` makes such copies, deterministically, so that a teacher can label them
once (``teacher_export export`` on the CSV written from them) and anyone can rebuild the same texts later from
the same answers, ids and seed — the labels file need not (and for ASAP-SAS must not) carry the text.

Each copy of an answer (its tokens, :func:`tinykd.scoring.text.tokenize`) is made by these operations:

* **drop**: each token is removed with probability ``p_drop``;
* **mask**: each remaining token is replaced, with probability ``p_mask``, by :data:`MASK` (Tang et al.;
  the teacher reads it as its mask token, the student as a word it does not know) — off by default;
* **swap**: each remaining token is replaced, with probability ``p_swap``, by a word drawn from the
  unigram distribution of all the training tokens (Tang et al. draw a word of the same part of speech,
  which needs a tagger tinykd does not have);
* **span**: with probability ``p_span`` only a contiguous span of 30–90 % of the tokens is kept (an
  answer cut short; Tang et al. sample a 1–5-gram, which for multi-sentence answers is too little);
* **splice**: with probability ``p_splice`` (0 by default) the copy's words up to a random cut are followed by
  another answer's words from a random cut on (the partner drawn among the others, ordered by id): a new answer
  mixing two answers' points, for the teacher to say what the mix is worth (docs/decisions/transfer-splice.md).

The random stream of copy ``k`` of the answer with id ``i`` is seeded by ``(seed, crc32(i), k)``: a copy
depends only on its own answer, id and ``k`` (and on the unigram table of the whole training set and, for a
splice, on its partner), not on the order of the answers. The copy's id is ``f"{i}~aug{k}"``.
"""
from __future__ import annotations

import zlib
from collections import Counter

import numpy as np

from tinykd.errors import check_seed
from tinykd.files.csvfiles import duplicated, normalize_labels
from tinykd.scoring.text import tokenize

__all__ = ["augment", "augment_rows", "MASK"]

#: the mask token of the **mask** operation (BERT's; tinykd's tokenizer reads it as the word "mask")
MASK = "[MASK]"


def augment(texts, ids, n=8, *, p_drop=0.1, p_mask=0.0, p_swap=0.1, p_span=0.25, p_splice=0.0, seed=0):
    """``n`` perturbed copies of every text.

    Parameters
    ----------
    texts : sequence of str
        Training answers (the unigram table for swaps is built from all of them).
    ids : sequence
        One id per text (compared as strings); copies get ids ``"<id>~aug<k>"``, k = 0..n-1.
    n : int
        Copies per text (>= 0).
    p_drop, p_mask, p_swap, p_span, p_splice : float in [0, 1]
        Probabilities of the operations (see the module docstring); ``p_mask + p_swap <= 1``.
    seed : int

    Returns
    -------
    (new_ids, new_texts, source) : list[str], list[str], int ndarray
        ``source[j]`` is the index in ``texts`` of copy ``j``'s original. Texts are the lower-cased tokens
        joined by spaces (what the students' tokenizer reads back unchanged); an empty answer gives empty
        copies.
    """
    texts, ids = list(texts), [str(i).strip() for i in ids]
    if len(texts) != len(ids):
        raise ValueError(f"augment: {len(texts)} texts but {len(ids)} ids")
    if len(set(ids)) != len(ids):
        raise ValueError("augment: ids must be unique")
    if int(n) != n or n < 0:
        raise ValueError(f"augment: n must be a whole number >= 0, got {n!r}")
    seed = check_seed(seed)
    for name, p in (("p_drop", p_drop), ("p_mask", p_mask), ("p_swap", p_swap), ("p_span", p_span),
                    ("p_splice", p_splice)):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"augment: {name} must be within [0, 1], got {p!r}")
    if p_mask + p_swap > 1.0:
        raise ValueError(f"augment: p_mask + p_swap must be <= 1, got {p_mask + p_swap!r}")
    toks = [tokenize(t) for t in texts]
    counts = Counter(w for ws in toks for w in ws)
    words = sorted(counts)
    prob = np.array([counts[w] for w in words], dtype=np.float64)
    prob /= max(prob.sum(), 1.0)
    by_id = sorted(range(len(ids)), key=ids.__getitem__)  # splice partners: the same whatever the answers' order
    rank = {j: r for r, j in enumerate(by_id)}
    new_ids, new_texts, source = [], [], []
    for j, (i, ws) in enumerate(zip(ids, toks)):
        crc = zlib.crc32(i.encode("utf-8"))
        for k in range(int(n)):
            rng = np.random.default_rng([int(seed), crc, k])
            out = [w for w, keep in zip(ws, rng.random(len(ws)) >= p_drop) if keep]
            u = rng.random(len(out))
            swap = u < p_swap
            if p_mask:  # (p_mask = 0 draws nothing more: the copies of earlier versions stay the same)
                for pos in np.flatnonzero(u >= 1.0 - p_mask):
                    out[pos] = MASK
            if swap.any() and words:
                picks = rng.choice(len(words), size=int(swap.sum()), p=prob)
                for pos, w in zip(np.flatnonzero(swap), picks):
                    out[pos] = words[w]
            if len(out) > 1 and rng.random() < p_span:
                m = max(1, int(round(len(out) * rng.uniform(0.3, 0.9))))
                start = int(rng.integers(0, len(out) - m + 1))
                out = out[start:start + m]
            if p_splice and len(ids) > 1 and rng.random() < p_splice:  # (0 draws nothing: copies stay as before)
                other = toks[by_id[(rank[j] + 1 + int(rng.integers(len(ids) - 1))) % len(ids)]]
                cut = int(rng.integers(0, len(out) + 1))
                out = out[:cut] + other[int(rng.integers(0, len(other) + 1)):]
            new_ids.append(f"{i}~aug{k}")
            new_texts.append(" ".join(out))
            source.append(j)
    return new_ids, new_texts, np.asarray(source, dtype=np.int64)


def augment_rows(texts, ids, labels, *, splits=None, train_split="train", items=None, n=8, p_drop=0.1,
                 p_mask=0.0, p_swap=0.1, p_span=0.25, p_splice=0.0, seed=0):
    """The copies ``tinykd augment`` appends to a data file: ``n`` perturbed copies of every
    labelled training row, one unigram table per item (swaps stay within an item).

    ``labels`` are cells as read (empty / NaN / NA is unlabeled); ``splits``: per-row split
    values (None: every row is a training row). Returns ``[(source row, new id, new text)]``.
    Raises ``ValueError`` on duplicate ids, no labelled training row, or copies whose ids
    already exist (an augmented file augmented again)."""
    ids = [str(i).strip() for i in ids]
    dups = duplicated(ids)
    if dups:
        raise ValueError(f"duplicated ids: {', '.join(dups[:5])}")
    labels, _ = normalize_labels(labels)
    src = [i for i in range(len(ids)) if labels[i] is not None
           and (splits is None or str(splits[i]).strip() == train_split)]
    if not src:
        raise ValueError("no labelled training rows to copy")
    groups = {}
    for i in src:
        groups.setdefault(None if items is None else str(items[i]).strip(), []).append(i)
    out = []
    for rows in groups.values():
        new_ids, new_texts, origin = augment([texts[i] for i in rows], [ids[i] for i in rows], n=n,
                                             p_drop=p_drop, p_mask=p_mask, p_swap=p_swap, p_span=p_span,
                                             p_splice=p_splice, seed=seed)
        clash = set(ids).intersection(new_ids)
        if clash:
            raise ValueError(f"ids like {sorted(clash)[0]!r} already exist; is it an augmented file?")
        out += [(rows[j], nid, text) for nid, text, j in zip(new_ids, new_texts, origin.tolist())]
    return out
