"""The bar a scorer must clear: TF-IDF (word 1–2 grams + character 2–5 grams) and logistic
regression, with C chosen on validation rows. ``benchmarks/paper_table.py`` reports it beside
the students; ``tinykd distill`` checks each teacher against it."""
from __future__ import annotations

import numpy as np


def _join(texts, contexts):
    return list(texts) if contexts is None else [f"{c} || {t}" for c, t in zip(contexts, texts)]


def tfidf_lr(texts, y, val_texts, val_y, *, contexts=None, val_contexts=None, Cs=(1.0, 10.0)):
    """Fit the baseline on the training rows; returns ``(predict, C, validation accuracy)``, where
    ``predict(texts, contexts=None)`` gives labels of the same kind as ``y``."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline, make_union

    best = None
    for C in Cs:
        pipe = make_pipeline(
            make_union(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=2),
                       TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, min_df=2)),
            LogisticRegression(C=C, max_iter=3000))
        pipe.fit(_join(texts, contexts), y)
        acc = float((pipe.predict(_join(val_texts, val_contexts)) == np.asarray(val_y)).mean())
        if best is None or acc > best[0]:
            best = (acc, C, pipe)
    acc, C, pipe = best
    return (lambda t, c=None: pipe.predict(_join(t, c))), C, acc
