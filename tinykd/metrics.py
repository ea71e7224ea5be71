"""Agreement measures for scoring: accuracy, quadratic weighted kappa, macro-F1.

Thin wrappers over scikit-learn (imported when called, never by the scoring
path). QWK treats the class indices as an ordinal scale, which is what
integer rubric scores are.
"""
from __future__ import annotations

import numpy as np


def scoring_metrics(y_true, y_pred, labels=None):
    """``{"n", "accuracy", "qwk", "macro_f1"}`` for two label arrays."""
    from sklearn.metrics import accuracy_score, cohen_kappa_score, f1_score

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if len(y_true) == 0:
        return {"n": 0, "accuracy": float("nan"), "qwk": float("nan"), "macro_f1": float("nan")}
    labels = np.unique(np.concatenate([y_true, y_pred])) if labels is None else np.asarray(labels)
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

    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    per_class = {str(lab): {"precision": float(p[k]), "recall": float(r[k]), "f1": float(f[k]),
                            "support": int(s[k])} for k, lab in enumerate(labels)}
    return {"per_class": per_class,
            "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist()}
