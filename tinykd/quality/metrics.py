"""Agreement measures for scoring: accuracy, quadratic weighted kappa, macro-F1, and the measures
of an automated-scoring evaluation (SMD, exact / adjacent agreement, Pearson r).

Thin wrappers over scikit-learn (imported when called, never by the scoring
path). QWK treats the class indices as an ordinal scale, which is what
integer rubric scores are.

A class absent from a small item or split makes kappa undefined, and scores such as ±1e308
overflow a mean; scikit-learn's ``UndefinedMetricWarning`` and NumPy's floating-point warnings
about them are silenced here (the measure is NaN, or 0 where documented, and the report calls it
undefined), since they would otherwise reach the terminal once per item.
"""
from __future__ import annotations

import warnings
from contextlib import contextmanager

import numpy as np


@contextmanager
def _undefined_expected():
    """Silence scikit-learn's ``UndefinedMetricWarning`` and NumPy's floating-point warnings (0/0, older
    scikit-learn's way of saying the same; an overflow): an undefined measure is expected (see the module
    docstring). Also a decorator."""
    from sklearn.exceptions import UndefinedMetricWarning

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        yield


def scoring_metrics(y_true, y_pred, labels=None):
    """``{"n", "accuracy", "qwk", "macro_f1"}`` for two label arrays."""
    from sklearn.metrics import accuracy_score, cohen_kappa_score, f1_score

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if len(y_true) == 0:
        return {"n": 0, "accuracy": float("nan"), "qwk": float("nan"), "macro_f1": float("nan")}
    labels = np.unique(np.concatenate([y_true, y_pred])) if labels is None else np.asarray(labels)
    with _undefined_expected():
        qwk = cohen_kappa_score(y_true, y_pred, labels=labels, weights="quadratic")
    return {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "qwk": float(0.0 if np.isnan(qwk) else qwk),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
    }


def classification_details(y_true, y_pred, labels):
    """Per-class precision / recall / F1 / support and the confusion matrix (rows = truth)."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    with _undefined_expected():
        p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    per_class = {str(lab): {"precision": float(p[k]), "recall": float(r[k]), "f1": float(f[k]),
                            "support": int(s[k])} for k, lab in enumerate(labels)}
    return {"per_class": per_class,
            "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist()}


# ------------------------------------------------------------------ the scorer-evaluation measures
@_undefined_expected()
def standardized_mean_difference(human, machine, sd_human=None):
    """SMD = (mean(machine) − mean(human)) / SD(human): machine minus human, so a negative SMD
    means the machine scores lower than the humans do (Williamson, Xi & Breyer 2012; RSMTool's
    "unpooled" SMD). SD is the sample SD (``ddof=1``) of ``human`` unless ``sd_human`` is
    given (a subgroup is standardised by the SD of all the human scores, so that groups are on
    one scale). NaN when the SD is 0 or not finite, or there are fewer than 2 scores."""
    h, m = np.asarray(human, dtype=np.float64), np.asarray(machine, dtype=np.float64)
    if len(h) == 0:
        return float("nan")
    sd = (np.std(h, ddof=1) if len(h) > 1 else float("nan")) if sd_human is None else sd_human
    if not 0 < sd < np.inf:  # an infinite SD (scores of ±1e308) would make every SMD 0
        return float("nan")
    return float((m.mean() - h.mean()) / sd)


def exact_agreement(a, b):
    """Share of rows where the two scores are equal."""
    a, b = np.asarray(a), np.asarray(b)
    return float(np.mean(a == b)) if len(a) else float("nan")


def adjacent_agreement(a, b, scale):
    """Share of rows where the two scores are at most one step apart on ``scale`` (the ordered
    score points): for the scale 0, 1, 2 a 0 and a 1 agree, a 0 and a 2 do not."""
    scale = np.asarray(scale, dtype=np.float64)
    pa = np.searchsorted(scale, np.asarray(a, dtype=np.float64))
    pb = np.searchsorted(scale, np.asarray(b, dtype=np.float64))
    return float(np.mean(np.abs(pa - pb) <= 1)) if len(pa) else float("nan")


def quadratic_weighted_kappa(a, b, scale):
    """QWK of two score arrays over the ordered score points ``scale`` (scikit-learn's
    ``cohen_kappa_score(weights="quadratic")``, which weighs by position on the scale); NaN when it is
    undefined (one score only). It is given the positions, so half points (0.5) are scores too
    (scikit-learn calls non-whole values "continuous" and refuses them)."""
    from sklearn.metrics import cohen_kappa_score

    if len(a) == 0:
        return float("nan")
    scale = np.asarray(scale, dtype=np.float64)
    pa, pb = (np.searchsorted(scale, np.asarray(x, dtype=np.float64)) for x in (a, b))
    with _undefined_expected():
        k = cohen_kappa_score(pa, pb, labels=np.arange(len(scale)), weights="quadratic")
    return float(k)


def pearson_r(a, b):
    """Pearson's correlation (SciPy's ``pearsonr``); NaN when either side is constant."""
    from scipy.stats import pearsonr

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(pearsonr(a, b)[0])


@_undefined_expected()
def ordinal_agreement(human, machine, scale):
    """Every ordinal measure of one machine–human (or human–human) comparison, as a dict:
    ``n``, the means and SDs of both, ``smd``, ``exact``, ``adjacent``, ``qwk``, ``r``."""
    h, m = np.asarray(human, dtype=np.float64), np.asarray(machine, dtype=np.float64)
    n = len(h)
    sd = lambda x: float(np.std(x, ddof=1)) if len(x) > 1 else float("nan")  # noqa: E731
    return {"n": int(n),
            "human_mean": float(h.mean()) if n else float("nan"), "human_sd": sd(h),
            "machine_mean": float(m.mean()) if n else float("nan"), "machine_sd": sd(m),
            "smd": standardized_mean_difference(h, m), "exact": exact_agreement(h, m),
            "adjacent": adjacent_agreement(h, m, scale), "qwk": quadratic_weighted_kappa(h, m, scale),
            "r": pearson_r(h, m)}


def cohen_kappa(a, b, labels):
    """Unweighted Cohen's κ (scikit-learn), for nominal labels; NaN when undefined."""
    from sklearn.metrics import cohen_kappa_score

    if len(a) == 0:
        return float("nan")
    with _undefined_expected():
        return float(cohen_kappa_score(list(a), list(b), labels=list(labels)))
