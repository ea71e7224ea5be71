"""Per-class decision offsets chosen on the validation rows (threshold moving).

A student trained on a few hundred answers per score under-predicts the rare scores: on
ASAP-SAS item 5 (27 of 1,436 training answers score 3) the distilled student never predicts
a 3 while its teacher does. Adding one offset per class to the logits before the arg-max,
``pred = argmax_k (z_k + b_k)``, moves the decision boundaries without retraining.

:func:`fit_offsets` chooses ``b`` (``b_0 = 0``: adding a constant to every logit changes
nothing) on the validation rows by coordinate ascent over :data:`GRID`: class by class, a
value replaces the current one only when it raises the validation accuracy or QWK and lowers
neither, values nearer 0 tried first, for at most :data:`PASSES` passes. ``b = 0`` (the plain
arg-max) is kept unless a change helps on these rows (the rule and its evidence:
``docs/decisions/decision-offsets.md``). :func:`tinykd.fit` folds ``b`` into the output layer's bias,
so a model file, the scorer and every export need nothing new. Fewer than :data:`MIN_ROWS`
validation rows: no offsets (they would fit the rows' noise).
"""
from __future__ import annotations

import numpy as np

#: offsets tried for each class's logit (0 first, then the nearest values)
GRID = tuple(sorted(np.round(np.arange(-1.5, 1.5001, 0.25), 2).tolist(), key=lambda v: (abs(v), v)))
#: coordinate-ascent passes over the classes (a pass that changes nothing ends the search)
PASSES = 3
#: fewer validation rows than this: no offsets
MIN_ROWS = 100
#: the rule, by name (a cache key of ``tinykd distill``'s students hashes it: a changed rule is a new name)
RULE = "offsets: accuracy and QWK, neither lowered"
#: bootstrap resamples of the validation rows whose offsets :func:`fit_offsets_bagged` averages
BAGS = 32


def accuracy_qwk(y, pred, n_classes):
    """Accuracy and quadratic weighted kappa of class indices ``pred`` against ``y`` over
    ``n_classes`` ordered classes (scikit-learn's ``cohen_kappa_score(weights="quadratic")``
    with ``labels=range(n_classes)``; 0 where it is undefined)::

        O = confusion counts,  E = outer(row sums, column sums) / n,
        W_ij = (i − j)² / (K − 1)²,  QWK = 1 − Σ W·O / Σ W·E
    """
    y = np.asarray(y, dtype=np.int64)
    pred = np.asarray(pred, dtype=np.int64)
    K = int(n_classes)
    n = len(y)
    if n == 0:
        return float("nan"), float("nan")
    O = np.bincount(y * K + pred, minlength=K * K).reshape(K, K).astype(np.float64)
    E = np.outer(O.sum(axis=1), O.sum(axis=0)) / n
    i = np.arange(K)
    W = (i[:, None] - i[None, :]) ** 2 / max(K - 1, 1) ** 2
    den = float((W * E).sum())
    qwk = 1.0 - float((W * O).sum()) / den if den > 0 else 0.0
    return float(np.trace(O)) / n, qwk


def _logits_and_labels(logits, y):
    """``(z (n, K) float64, y (n,) int64)``; anything else: ``ValueError``."""
    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if z.ndim != 2 or len(z) != len(y) or len(y) == 0:
        raise ValueError(f"need (n, K) logits and n labels with n > 0, got {z.shape} and {y.shape}")
    return z, y


def fit_offsets(logits, y, grid=GRID, passes=PASSES):
    """Offsets ``b`` (K,), ``b[0] = 0``, that raise the validation accuracy and QWK of
    ``argmax(logits + b)`` as far as coordinate ascent over ``grid`` finds, neither ever lowered
    (see the module docstring). ``logits`` (n, K), ``y`` (n,) class indices. Returns ``(b, before, after)``,
    the last two ``(accuracy, QWK)`` with no offsets and with ``b``."""
    z, y = _logits_and_labels(logits, y)
    K = z.shape[1]
    b = np.zeros(K)

    def score(off):
        a, q = accuracy_qwk(y, (z + off).argmax(axis=1), K)
        return round(a, 12), round(q, 12)

    before = best = score(b)
    for _ in range(passes):
        changed = False
        for k in range(1, K):
            for v in grid:
                if v == b[k]:
                    continue
                cand = b.copy()
                cand[k] = v
                s = score(cand)
                if s[0] >= best[0] and s[1] >= best[1] and s != best:  # better in one, worse in neither
                    best, b, changed = s, cand, True
        if not changed:
            break
    return b, before, best


def fit_offsets_bagged(logits, y, seed=0, bags=BAGS):
    """Offsets ``b`` (K,) averaged over :func:`fit_offsets` on ``bags`` bootstrap resamples of the rows (drawn with
    ``seed``): a value that a few rows' luck chose in one resample is outvoted by the others, so the offsets
    depend less on which few hundred answers validate (docs/decisions/offsets-bagged.md). Returns ``(b, before,
    after)`` as :func:`fit_offsets` does, both measured on all the rows."""
    z, y = _logits_and_labels(logits, y)
    if isinstance(bags, bool) or int(bags) != bags or bags < 1:
        raise ValueError(f"bags must be a whole number >= 1, got {bags!r}")
    rng = np.random.default_rng(seed)
    fits = [fit_offsets(z[pick], y[pick])[0] for pick in (rng.integers(0, len(y), len(y)) for _ in range(bags))]
    b = np.round(np.mean(fits, axis=0), 4)  # four decimals: what the model file records is what was added
    K = z.shape[1]
    return b, accuracy_qwk(y, z.argmax(axis=1), K), accuracy_qwk(y, (z + b).argmax(axis=1), K)
