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


#: a probability below this counts as this in :func:`log_loss`: one answer scored with certainty the wrong way
#: would otherwise weigh as much as all the others
LOG_LOSS_FLOOR = 1e-7


def log_loss(proba, y):
    """Mean cross-entropy −(1/n) Σ log p[i, y_i] of probabilities ``proba`` (n, K) against class indices ``y``
    (n,), each probability clipped to [:data:`LOG_LOSS_FLOOR`, 1]; NaN for no rows."""
    proba, y = np.asarray(proba, dtype=np.float64), np.asarray(y, dtype=np.int64)
    if len(y) == 0:
        return float("nan")
    return float(-np.mean(np.log(np.clip(proba[np.arange(len(y)), y], LOG_LOSS_FLOOR, 1.0))))


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


# ------------------------------------------------------------------ bootstrap intervals
#: the bootstrap of ``tinykd report``: draws, confidence level and seed (fixed: a report is reproducible)
BOOT_DRAWS, BOOT_LEVEL, BOOT_SEED = 1000, 0.95, 0


def resampled_counts(*codes, draws=BOOT_DRAWS, seed=BOOT_SEED):
    """A bootstrap of rows, done on their counts: ``codes`` are per-row integer arrays (score positions,
    a group flag); returns ``(cells, counts, drawn)``: the distinct rows ``cells`` (u, len(codes)), their
    counts (u,) and ``drawn`` (draws, u), each draw the counts of ``n`` rows drawn with replacement —
    one multinomial draw over the distinct rows, the same distribution as resampling the rows
    themselves, in O(draws × u) whatever the number of rows."""
    rows = np.stack([np.asarray(c, dtype=np.int64) for c in codes], axis=1)
    cells, counts = np.unique(rows, axis=0, return_counts=True)
    n = int(counts.sum())
    rng = np.random.default_rng(seed)
    drawn = rng.multinomial(n, counts / n, size=draws) if n else np.zeros((draws, 0), dtype=np.int64)
    return cells, counts, drawn


def pair_measures(T, hp, mp, hv, mv):
    """QWK, Pearson r, SMD, exact and adjacent agreement of count tables: ``T`` (draws, u) counts of the
    cells whose human / machine positions on the scale are ``hp`` / ``mp`` and values ``hv`` / ``mv``.
    QWK from the positions' moments (Σ (i−j)² outer(a, b) = n Σa i² + n Σb j² − 2 Σa i · Σb j);
    NaN where a measure is undefined (one score only, no spread)."""
    T = np.asarray(T, dtype=np.float64)
    hp, mp, hv, mv = (np.asarray(x, dtype=np.float64) for x in (hp, mp, hv, mv))
    with np.errstate(all="ignore"):
        n = T.sum(axis=1)
        obs = T @ (hp - mp) ** 2
        a1, a2, b1, b2 = T @ hp, T @ hp ** 2, T @ mp, T @ mp ** 2
        chance = n * a2 + n * b2 - 2 * a1 * b1
        qwk = np.where(chance > 0, 1 - n * obs / np.where(chance > 0, chance, 1), np.nan)
        sh, shh, sm, smm, shm = T @ hv, T @ hv ** 2, T @ mv, T @ mv ** 2, T @ (hv * mv)
        vh, vm = shh - sh * sh / n, smm - sm * sm / n  # n × the (population) variances
        vh, vm = np.maximum(vh, 0), np.maximum(vm, 0)
        tiny = 1e-12 * np.maximum(shh, 1)
        r = np.where((vh > tiny) & (vm > 1e-12 * np.maximum(smm, 1)), (shm - sh * sm / n) / np.sqrt(vh * vm), np.nan)
        sd = np.sqrt(vh / (n - 1))
        smd = np.where((vh > tiny) & (n > 1), (sm - sh) / n / np.where(sd > 0, sd, 1), np.nan)
        exact = T @ (hp == mp).astype(np.float64) / n
        adjacent = T @ (np.abs(hp - mp) <= 1).astype(np.float64) / n
    return {"qwk": qwk, "r": np.clip(r, -1, 1), "smd": smd, "exact": exact, "adjacent": adjacent}


def interval(values, point, level=BOOT_LEVEL):
    """The percentile interval ``[lo, hi]`` of the bootstrap ``values`` (at ``level``); ``[nan, nan]`` when
    the point estimate is undefined or most draws are (a measure undefined on most resamples)."""
    values = np.asarray(values, dtype=np.float64)
    ok = values[np.isfinite(values)]
    if not (point == point and abs(point) != np.inf) or len(ok) < 0.5 * len(values):
        return [float("nan"), float("nan")]
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(ok, [tail, 100 - tail])
    return [float(min(lo, point)), float(max(hi, point))]


def ordinal_intervals(human, machine, scale, *, draws=BOOT_DRAWS, seed=BOOT_SEED, level=BOOT_LEVEL):
    """95 % bootstrap intervals (resampling the answers; a fixed seed) of QWK, Pearson r, SMD, exact and
    adjacent agreement: ``{measure: [lo, hi]}``. QWK and adjacency on the positions of the scores on
    ``scale``, r and SMD on their values."""
    scale = np.asarray(scale, dtype=np.float64)
    h, m = np.asarray(human, dtype=np.float64), np.asarray(machine, dtype=np.float64)
    hp, mp = np.searchsorted(scale, h), np.searchsorted(scale, m)
    cells, counts, drawn = resampled_counts(hp, mp, draws=draws, seed=seed)
    args = (cells[:, 0], cells[:, 1], scale[cells[:, 0]], scale[cells[:, 1]])
    point = {k: float(v[0]) for k, v in pair_measures(counts[None, :], *args).items()}
    boot = pair_measures(drawn, *args)
    return {k: interval(boot[k], point[k], level) for k in boot}


def _positions(scale, *xs):
    scale = np.asarray(scale, dtype=np.float64)
    return scale, [np.searchsorted(scale, np.asarray(x, dtype=np.float64)) for x in xs]


def degradation_intervals(human, rater2, machine, scale, *, draws=BOOT_DRAWS, seed=BOOT_SEED, level=BOOT_LEVEL):
    """Bootstrap intervals of the degradation (machine–human minus human–human) of QWK and of Pearson r on
    the rows both humans scored: ``{"degradation_qwk": [lo, hi], "degradation_r": [lo, hi]}``; the same
    resampled rows give both agreements of a draw."""
    scale, (hp, rp, mp) = _positions(scale, human, rater2, machine)
    cells, counts, drawn = resampled_counts(hp, rp, mp, draws=draws, seed=seed)
    h, r, m = cells[:, 0], cells[:, 1], cells[:, 2]
    out = {}
    for T in (counts[None, :], drawn):
        hum = pair_measures(T, h, r, scale[h], scale[r])
        mac = pair_measures(T, h, m, scale[h], scale[m])
        out[len(out)] = {k: mac[k] - hum[k] for k in ("qwk", "r")}
    return {f"degradation_{k}": interval(out[1][k], float(out[0][k][0]), level) for k in ("qwk", "r")}


def group_smd_interval(human, machine, in_group, *, draws=BOOT_DRAWS, seed=BOOT_SEED, level=BOOT_LEVEL):
    """Bootstrap interval of a subgroup's SMD — (machine − human mean of the group) over the SD of all the
    human scores — resampling all the rows (the group's size varies as it would in another sample)."""
    h, m = np.asarray(human, dtype=np.float64), np.asarray(machine, dtype=np.float64)
    values, codes = np.unique(np.concatenate([h, m]), return_inverse=True)
    hp, mp = codes[:len(h)], codes[len(h):]
    cells, counts, drawn = resampled_counts(np.asarray(in_group, dtype=bool), hp, mp, draws=draws, seed=seed)
    g, hv, mv = cells[:, 0].astype(np.float64), values[cells[:, 1]], values[cells[:, 2]]

    def smd(T):
        T = np.asarray(T, dtype=np.float64)
        with np.errstate(all="ignore"):
            n, s, ss = T.sum(axis=1), T @ hv, T @ hv ** 2
            sd = np.sqrt(np.maximum(ss - s * s / n, 0) / (n - 1))
            ng = T @ g
            return np.where((sd > 0) & (ng > 0), (T @ (g * mv) - T @ (g * hv)) / ng / np.where(sd > 0, sd, 1),
                            np.nan)

    return interval(smd(drawn), float(smd(counts[None, :])[0]), level)
