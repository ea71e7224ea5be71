"""Which unscored answers a person should score next (``tinykd suggest``): the ones the student is least
sure of, or where it and the teacher disagree, spread over the kinds of answers.

:func:`suggest` takes the candidate rows only (the caller leaves out the rows scored already):

1. **Priority.** ``uncertainty = 1 − (p₁ − p₂)``, one minus the margin between the student's two most
   probable classes (1: a coin toss, 0: certain). Where the teacher's probabilities are given (a NaN row:
   none for that row), ``disagreement = (TV + [the top classes differ]) / 2``, with ``TV`` the total
   variation distance ``½ Σ |p_student − p_teacher|``; 0 without a teacher row. ``priority = uncertainty +
   disagreement`` (0 … 2): a row the two models score differently comes before an equally unsure one they
   agree on. Ties go to the earlier row.
2. **No copies.** Answers are compared by :func:`normalised` text (lower case, punctuation dropped,
   whitespace collapsed); only the highest-priority row of each normalised text is a candidate.
3. **Spread.** The ``pool_factor × n`` highest-priority candidates are embedded with TF-IDF of character
   3–5 grams (the context, e.g. the question, before the answer) and split into ``n`` clusters by
   k-means (``random_state=seed``); the highest-priority row of each cluster is suggested, so that fifty
   suggestions are fifty kinds of answer rather than fifty spellings of one. Clusters left empty are filled
   with the next rows by priority. With ``n`` or fewer candidates, every candidate is returned.

The result is in priority order and the same for the same input and seed (byte for byte: ties are broken
by row, k-means is seeded). NumPy and scikit-learn only.
"""
from __future__ import annotations

import re
import warnings

import numpy as np

from tinykd.errors import OptionError, check_seed

#: candidates clustered per suggestion: the pool is the ``POOL_FACTOR × n`` highest-priority rows
POOL_FACTOR = 4
#: k-means restarts (each seeded from ``seed``)
N_INIT = 4
#: a total variation distance from which the reason names the teacher even when the top classes agree
TV_NOTED = 0.25

_PUNCT = re.compile(r"[^\w\s]|_")


def normalised(text):
    """``text`` as copies are compared: lower case (casefold), punctuation dropped, whitespace collapsed;
    ``"Acid  rain, dissolves!"`` → ``"acid rain dissolves"``."""
    return " ".join(_PUNCT.sub("", str(text).casefold()).split())


def priorities(proba, teacher_proba=None):
    """``(priority, uncertainty, disagreement)`` per row (see the module's docstring); ``teacher_proba``
    rows of NaN count as no teacher (disagreement 0)."""
    p = np.asarray(proba, dtype=np.float64)
    top2 = -np.sort(-p, axis=1)[:, :2] if p.shape[1] > 1 else np.hstack([p, np.zeros_like(p)])
    uncertainty = 1.0 - (top2[:, 0] - top2[:, 1])
    disagreement = np.zeros(len(p))
    if teacher_proba is not None:
        t = np.asarray(teacher_proba, dtype=np.float64)
        has = ~np.isnan(t).any(axis=1)
        tv = 0.5 * np.abs(p[has] - t[has]).sum(axis=1)
        differ = p[has].argmax(axis=1) != t[has].argmax(axis=1)
        disagreement[has] = (tv + differ) / 2.0
    return uncertainty + disagreement, uncertainty, disagreement


def _check(texts, proba, n, teacher_proba, contexts):
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise OptionError("n", f"{{opt}} must be a whole number >= 1, got {n!r}")
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim != 2 or len(proba) != len(texts) or not np.isfinite(proba).all():
        raise ValueError(f"proba must be a finite (n, K) array with one row per text ({len(texts)}), "
                         f"got shape {proba.shape}")
    if teacher_proba is not None and np.shape(teacher_proba) != proba.shape:
        raise ValueError(f"teacher_proba must have proba's shape {proba.shape}, got {np.shape(teacher_proba)}")
    if contexts is not None and len(contexts) != len(texts):
        raise ValueError(f"{len(contexts)} contexts for {len(texts)} texts")
    return proba


def suggest(texts, proba, *, n, seed=0, teacher_proba=None, contexts=None, classes=None,
            pool_factor=POOL_FACTOR):
    """The rows a person should score next: ``[(row index, reason), …]``, at most ``n``, highest priority
    first (the module's docstring says how they are chosen). ``texts`` are the candidate answers,
    ``proba`` the student's ``(len(texts), K)`` probabilities, ``teacher_proba`` the teacher's (same shape;
    NaN rows where it has none), ``contexts`` one per text (e.g. the question) or None; ``classes`` name
    the K columns in the reasons (unset: 0 … K−1)."""
    texts = [str(t) for t in texts]
    proba = _check(texts, proba, n, teacher_proba, contexts)
    seed = check_seed(seed)
    classes = [str(c) for c in (range(proba.shape[1]) if classes is None else classes)]
    priority, _, _ = priorities(proba, teacher_proba)
    order = np.argsort(-priority, kind="stable")
    seen, ranked = set(), []
    for i in order.tolist():
        key = normalised(texts[i])
        if key not in seen:
            seen.add(key)
            ranked.append(i)
    pool = ranked[:max(n, pool_factor * n)]
    if len(pool) > n:
        docs = [texts[i] if contexts is None else f"{contexts[i]} || {texts[i]}" for i in pool]
        pool = _spread(docs, pool, n, seed)
    t = None if teacher_proba is None else np.asarray(teacher_proba, dtype=np.float64)
    return [(i, reason(proba[i], None if t is None or np.isnan(t[i]).any() else t[i], classes)) for i in pool]


def _spread(docs, pool, n, seed):
    """``n`` of ``pool`` (row indices in priority order, ``docs`` their texts): the first of each of ``n``
    k-means clusters of the texts' TF-IDF, topped up in priority order; returned in priority order."""
    from sklearn.cluster import KMeans
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.feature_extraction.text import TfidfVectorizer

    try:
        x = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True).fit_transform(docs)
    except ValueError:  # no n-gram at all (every text empty): nothing to spread by
        return pool[:n]
    with warnings.catch_warnings():  # fewer distinct texts than clusters: topped up below
        warnings.simplefilter("ignore", ConvergenceWarning)
        labels = KMeans(n_clusters=n, random_state=seed, n_init=N_INIT).fit(x).labels_
    first = {}
    for k, lab in enumerate(labels.tolist()):
        first.setdefault(lab, k)
    chosen = sorted(first.values())
    taken = set(chosen)
    rest = [k for k in range(len(pool)) if k not in taken]
    chosen = sorted(chosen + rest[:n - len(chosen)])
    return [pool[k] for k in chosen]


def reason(p, t, classes):
    """Why a row is suggested, in words: ``"student unsure: 0.41 for 2, 0.38 for 1"``; with the teacher's
    probabilities ``t`` (None: none), ``"student says 1 (0.52), teacher says 2 (0.81)"`` when their top
    classes differ, or the two probabilities of the student's class when they are far apart."""
    top = np.argsort(-p, kind="stable")
    a = int(top[0])
    unsure = f"student unsure: {p[a]:.2f} for {classes[a]}"
    if len(top) > 1:
        unsure += f", {p[top[1]]:.2f} for {classes[int(top[1])]}"
    if t is None:
        return unsure
    b = int(np.argmax(t))
    if b != a:
        return f"student says {classes[a]} ({p[a]:.2f}), teacher says {classes[b]} ({t[b]:.2f})"
    if 0.5 * np.abs(p - t).sum() >= TV_NOTED:
        return f"{unsure}; teacher {t[a]:.2f} for {classes[a]}"
    return unsure
