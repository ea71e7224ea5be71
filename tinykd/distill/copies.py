"""The transfer set of ``tinykd distill``: perturbed copies of an item's training answers
(:func:`tinykd.distill.augment.augment_rows`) and the unlabeled answers given, for the teacher to label."""
from __future__ import annotations

import os

from tinykd.files.csvfiles import AtomicCsvWriter

#: copies per training answer: as many as keep the transfer set near TRANSFER_SIZE answers, between 2
#: and COPIES_MAX (docs/decisions/student-recipe.md; 32, not 16: docs/decisions/transfer-copies-32.md)
COPIES_MAX, TRANSFER_SIZE = 32, 48000


def auto_copies(n_train):
    """The default copy count for ``n_train`` training answers (32 up to 1,500 answers, 2 from 24,000)."""
    return min(COPIES_MAX, max(2, TRANSFER_SIZE // max(int(n_train), 1)))


def copy_count(chain):
    """The copies per training answer of ``chain`` (an :class:`~tinykd.distill.job.ItemChain`)."""
    return auto_copies(len(chain.rows.where("train"))) if chain.copies is None else int(chain.copies)


def unlabeled_answers(chain):
    """``(id, text, context, item)`` of the answers of ``chain`` nobody scored: the data file's unlabeled
    training rows, then the unlabeled file's rows."""
    rows = chain.rows
    return [(rows.ids[i], rows.texts[i], "" if rows.contexts is None else rows.contexts[i], None)
            for i, r in enumerate(rows.roles) if r == "unlabeled"] + list(chain.unlabeled_rows)


def write_copies(folder, chain, n, previous=None):
    """The copies stage: ``folder/copies.csv`` (id, text, context) holding ``n`` copies of every
    training answer of ``chain``, then the unlabeled answers (the data file's unlabeled training rows and
    the unlabeled file's rows), each followed by its own ``n`` copies: new answers weigh as much as
    scored ones in the soft term (docs/decisions/transfer-data.md). ``previous`` (a warm start: the previous
    round's ``(copies.csv, rows.csv)``): a training answer it held with the same text and context keeps its
    ``n`` copies from there (:func:`tinykd.distill.warm.copies_by_answer`). Returns ``{"n": rows, "copies":
    copies, "unlabeled": unlabeled rows}`` (and ``"kept"``: the answers whose copies were kept)."""
    from tinykd.distill.augment import augment, augment_rows

    rows = chain.rows
    train = [i for i, r in enumerate(rows.roles) if r == "train"]
    unlabeled = unlabeled_answers(chain)
    made = augment_rows([rows.texts[i] for i in train], [rows.ids[i] for i in train],
                        [rows.labels[i] for i in train], n=n, seed=chain.seed, **chain.augment) if n else []
    made, kept = _kept_copies(made, chain, train, n, previous)
    with AtomicCsvWriter(os.path.join(folder, "copies.csv"), ["id", "text", "context"]) as w:
        for j, nid, text in made:
            w.writerow([nid, text, "" if rows.contexts is None else rows.contexts[train[j]]])
        # a separate call: the training answers' copies stay as they are without unlabeled answers
        u_ids, u_texts, u_src = augment([u[1] for u in unlabeled], [u[0] for u in unlabeled], n=n, seed=chain.seed,
                                        **chain.augment) if n and unlabeled else ([], [], [])
        by_src = {}
        for nid, text, j in zip(u_ids, u_texts, list(u_src)):
            by_src.setdefault(int(j), []).append((nid, text))
        for j, (uid, text, ctx, _) in enumerate(unlabeled):
            w.writerow([uid, text, ctx])
            for nid, copy in by_src.get(j, ()):
                w.writerow([nid, copy, ctx])
    return {"n": len(made) + len(unlabeled) + len(u_ids), "copies": len(made) + len(u_ids),
            "unlabeled": len(unlabeled), **({"kept": kept} if previous else {})}


def _kept_copies(made, chain, train, n, previous):
    """``made`` (``(answer, id, text)`` per copy) with each answer the previous round held unchanged given its
    ``n`` copies from then; and how many answers kept theirs."""
    if not previous or not made:
        return made, 0
    from tinykd.distill.warm import copies_by_answer

    before, rows = copies_by_answer(*previous), chain.rows
    ctx = lambda i: "" if rows.contexts is None else rows.contexts[i]  # noqa: E731
    out, done, kept = [], set(), 0
    for j, nid, text in made:
        i = train[j]
        old = before.get(rows.ids[i])
        if not old or old[0] != (rows.texts[i], ctx(i)) or len(old[1]) != n:
            out.append((j, nid, text))
        elif j not in done:
            done.add(j)
            kept += 1
            out += [(j, cid, ctext) for cid, ctext in old[1]]
    return out, kept
