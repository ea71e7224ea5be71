"""Calibrated confidence and the human-review trade-off.

* :func:`fit_temperature` — temperature scaling (Guo et al. 2017, "On Calibration of Modern
  Neural Networks"): one number T > 0 fitted on the validation rows so that
  ``softmax(logits / T)`` has the least negative log-likelihood there. Dividing every logit
  by one T never changes which class is most probable, so predictions (and accuracy) stay
  as they are; only the confidence moves. :func:`tinykd.fit` fits it at training time and
  stores it in the model file; the :class:`~tinykd.scoring.scorer.Scorer` applies it.
* :func:`reliability_bins` / :func:`expected_calibration_error` — top-label calibration:
  rows binned by their confidence into :data:`N_BINS` equal-width bins ``(lo, hi]``; ECE is
  ``Σ_b n_b / n · |accuracy_b − mean confidence_b|``.
* :func:`review_curve` / :func:`review_threshold` — flag a row for human review when its
  confidence is below a threshold; the curve gives, for every threshold, the share flagged
  and the accuracy on the rows left to the machine; :func:`review_threshold` picks the
  threshold that flags the fewest rows while the rest reach a target accuracy.

NumPy only at import (``tinykd score --target-accuracy`` uses it); SciPy's scalar minimiser is
imported when a temperature is fitted.
"""
from __future__ import annotations

import numpy as np

from tinykd.errors import OptionError
from tinykd.nn.dense import softmax

#: equal-width confidence bins of the reliability diagram and the ECE
N_BINS = 10
#: the search range of the temperature
T_BOUNDS = (0.05, 20.0)
#: fewer validation rows than this: no temperature is fitted (it would fit their noise)
MIN_CALIBRATION_ROWS = 30


def _nll(z, y):
    z = z - z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=1))
    return float(np.mean(lse - z[np.arange(len(y)), y]))


def nll(logits, y, temperature=1.0):
    """Mean negative log-likelihood of the labels ``y`` (class indices) under ``softmax(logits / T)``."""
    return _nll(np.asarray(logits, dtype=np.float64) / temperature, np.asarray(y, dtype=np.int64))


def fit_temperature(logits, y, bounds=T_BOUNDS):
    """The temperature T minimising :func:`nll` of ``(logits, y)`` over ``bounds``.

    The NLL is convex in 1/T, so a bounded scalar search over log T finds the optimum.
    Needs at least one row."""
    from scipy.optimize import minimize_scalar

    z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    if z.ndim != 2 or len(z) != len(y) or len(y) == 0:
        raise ValueError(f"need (n, K) logits and n labels with n > 0, got {z.shape} and {y.shape}")
    res = minimize_scalar(lambda lt: _nll(z / np.exp(lt), y), bounds=(np.log(bounds[0]), np.log(bounds[1])),
                          method="bounded", options={"xatol": 1e-6})
    return float(np.exp(res.x))


def calibrated_proba(logits, temperature=1.0):
    """``softmax(logits / T)`` in float64, then float32 — as the Scorer computes it."""
    return softmax(np.asarray(logits, dtype=np.float64) / temperature).astype(np.float32)


def stored_fit(cal):
    """``(rows, ECE before, ECE after)`` of a stored calibration block as text, ``?`` for a count the
    block lacks (a student built in Python records its temperature alone): what ``info``, ``evaluate``
    and ``report`` print beside the temperature."""
    n, before, after = (cal.get(k) for k in ("n_val", "val_ece_before", "val_ece_after"))
    return ("?" if n is None else f"{n:,}", "?" if before is None else f"{before:.3f}",
            "?" if after is None else f"{after:.3f}")


def confidence_and_correct(proba, y):
    """Top-class probability and whether the top class is ``y`` (class indices; −1 = never right)."""
    proba = np.asarray(proba)
    y = np.asarray(y, dtype=np.int64)
    pred = proba.argmax(axis=1)
    return proba[np.arange(len(proba)), pred].astype(np.float64), pred == y


def reliability_bins(confidence, correct, n_bins=N_BINS):
    """One dict per equal-width bin ``(lo, hi]`` (a confidence of 0 falls in the first):
    ``lo``, ``hi``, ``n``, mean ``confidence`` and ``accuracy`` (None in an empty bin)."""
    conf = np.asarray(confidence, dtype=np.float64)
    ok = np.asarray(correct, dtype=np.float64)
    idx = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    out = []
    for b in range(n_bins):
        m = idx == b
        n = int(m.sum())
        out.append({"lo": b / n_bins, "hi": (b + 1) / n_bins, "n": n,
                    "confidence": float(conf[m].mean()) if n else None,
                    "accuracy": float(ok[m].mean()) if n else None})
    return out


def expected_calibration_error(confidence, correct, n_bins=N_BINS):
    """ECE = Σ_b n_b / n · |accuracy_b − confidence_b| over :func:`reliability_bins`."""
    n = len(confidence)
    if n == 0:
        return float("nan")
    return float(sum(b["n"] / n * abs(b["accuracy"] - b["confidence"])
                     for b in reliability_bins(confidence, correct, n_bins) if b["n"]))


def review_curve(confidence, correct):
    """The trade-off of flagging rows whose confidence is below a threshold, one point per
    distinct confidence: arrays ``(threshold, flagged share, accuracy on the rest)``, from
    flagging nothing (threshold 0) to keeping only the most confident rows.

    A threshold sits halfway between two neighbouring distinct confidences, so a row scored
    again with a difference in the last float digits stays on its side."""
    conf = np.asarray(confidence, dtype=np.float64)
    ok = np.asarray(correct, dtype=np.float64)
    n = len(conf)
    if n == 0:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    order = np.argsort(-conf, kind="stable")
    c, k = conf[order], ok[order]
    ends = np.flatnonzero(np.r_[c[1:] != c[:-1], True])  # the last row of each group of equal confidences
    kept = ends + 1
    acc = np.cumsum(k)[ends] / kept
    below = np.r_[c[ends[:-1] + 1], 0.0]  # the next lower confidence (none after the last group)
    thr = np.where(kept == n, 0.0, (c[ends] + below) / 2)
    return thr[::-1], (1.0 - kept / n)[::-1], acc[::-1]


def check_target(target):
    if isinstance(target, bool) or not isinstance(target, (int, float, np.number)) or not 0 < target <= 1:
        raise OptionError("target_accuracy", f"{{opt}} must be in (0, 1], got {target!r}")
    return float(target)


def review_threshold(confidence, correct, target):
    """The review threshold that flags the fewest rows while the accuracy on the rest is at
    least ``target`` — on these rows. Returns ``{"threshold", "flagged", "accuracy", "n"}``
    (``flagged``: the share with confidence below the threshold; ``accuracy``: on the rest).
    Raises ``ValueError`` when no threshold reaches the target (not even the single most
    confident group of rows)."""
    target = check_target(target)
    thr, flagged, acc = review_curve(confidence, correct)
    if not len(thr):
        raise ValueError("no rows to choose a review threshold on")
    good = np.flatnonzero(acc >= target - 1e-12)
    if not len(good):
        raise ValueError(f"no review threshold reaches an accuracy of {target:g} on the {len(confidence):,} "
                         f"validation rows (the most confident rows alone are {acc[-1]:.3f} right)")
    i = int(good[0])  # the curve runs from flagging nothing to flagging the most
    return {"threshold": float(thr[i]), "flagged": float(flagged[i]), "accuracy": float(acc[i]),
            "n": int(len(confidence)), "target": target}
