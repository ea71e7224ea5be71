"""Cross-entropy and the knowledge-distillation loss (paper Eq. 4).

For student logits ``z`` (B, K), hard labels ``y`` and teacher probabilities ``p``::

    q   = softmax(z)                 q_T = softmax(z / T)
    p_T = softmax(log p / T)         (= softmax(teacher_logits / T); p_1 = p)
    L   = 1/B Σ_b [ CE(y_b, q_b) + λ T² CE(p_T,b, q_T,b) ]
    CE(a, q) = −Σ_k a_k log q_k

With T = 1 this is exactly Eq. 4 of Latif et al., ``L_KD = CE(y, q) + λ CE(p, q)``;
λ = 0 is exactly plain cross-entropy (the paper's "Orig NN"). T² keeps the
soft term's gradient on the same scale as T varies (Hinton et al. 2015).
Note that the paper's Algorithm 1 writes the two weights the other way round
(λ on the hard term); tinykd follows Eq. 4.

Gradient::

    dL/dz_b = [ (q_b − y_b) + λ T (q_T,b − p_T,b) ] / B

Rows without a hard label (transfer data) or without a teacher row are
masked out of their term; the mean is always over the whole batch.

``soft="mse"`` matches logits instead (Tang et al. 2019; Ba & Caruana 2014): with
``t = log p`` (the teacher's logits up to a constant per row), both centred over the K
classes (``z̄ = z − mean_k z``, ``t̄ = t − mean_k t``; the constant drops out)::

    soft term = λ/(B K) Σ_b ‖z̄_b − t̄_b‖²        d/dz_b = 2λ (z̄_b − t̄_b) / (B K)

(the centring is a symmetric idempotent projection, and ``z̄ − t̄`` is already centred); T
is not used.
"""
from __future__ import annotations

import numpy as np

_EPS = 1e-12
#: the soft term's forms (see the module docstring)
SOFT_LOSSES = ("ce", "mse")


def log_softmax(z):
    """Stable log-softmax of rows of (B, K)."""
    m = z.max(axis=-1, keepdims=True)
    s = z - m
    return s - np.log(np.exp(s).sum(axis=-1, keepdims=True))


def teacher_log_probs(teacher, from_logits=False):
    """Teacher rows as log-probabilities (logits are normalised, probabilities logged)."""
    teacher = np.asarray(teacher, dtype=np.float64)
    if from_logits:
        return log_softmax(teacher)
    return np.log(np.clip(teacher, _EPS, None))


def cross_entropy(z, y):
    """Mean hard-label CE of logits ``z`` (B, K) against int labels ``y`` (B,), and dL/dz."""
    B = z.shape[0]
    logq = log_softmax(z)
    loss = -logq[np.arange(B), y].mean()
    dz = np.exp(logq)
    dz[np.arange(B), y] -= 1.0
    return float(loss), (dz / B).astype(z.dtype, copy=False)


def soft_cross_entropy(z, p):
    """Mean CE(p, softmax(z)) for target distributions ``p`` (B, K), and dL/dz."""
    B = z.shape[0]
    logq = log_softmax(z)
    loss = -(p * logq).sum(axis=1).mean()
    return float(loss), ((np.exp(logq) - p) / B).astype(z.dtype, copy=False)


def kd_loss(z, y=None, teacher=None, lam=1.0, temperature=1.0, from_logits=False,
            hard_mask=None, soft_mask=None, soft="ce"):
    """The distillation loss ``L`` above and its gradient ``dL/dz``.

    Parameters
    ----------
    z : (B, K) student logits.
    y : (B,) int hard labels, or None (no hard term).
    teacher : (B, K) teacher probabilities (or logits with ``from_logits``), or None.
    lam, temperature : λ and T.
    hard_mask, soft_mask : (B,) bool — which rows take part in each term.
    soft : "ce" (Eq. 4, the default) or "mse" (centred logits, see above).

    Returns ``(loss, dz, parts)`` where ``parts`` holds the hard and soft terms.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if lam < 0:
        raise ValueError(f"lam must be >= 0, got {lam}")
    if soft not in SOFT_LOSSES:
        raise ValueError(f"soft must be one of {SOFT_LOSSES}, got {soft!r}")
    B, K = z.shape
    zd = z.astype(np.float64)
    dz = np.zeros((B, K), dtype=np.float64)
    hard = soft_term = 0.0
    if y is not None:
        hm = np.ones(B, bool) if hard_mask is None else np.asarray(hard_mask, bool)
        if hm.any():
            logq = log_softmax(zd[hm])
            yy = np.asarray(y)[hm]
            hard = -logq[np.arange(len(yy)), yy].sum() / B
            g = np.exp(logq)
            g[np.arange(len(yy)), yy] -= 1.0
            dz[hm] += g / B
    if teacher is not None and lam > 0:
        sm = np.ones(B, bool) if soft_mask is None else np.asarray(soft_mask, bool)
        if sm.any() and soft == "mse":
            t = teacher_log_probs(np.asarray(teacher)[sm], from_logits)
            diff = (zd[sm] - zd[sm].mean(axis=1, keepdims=True)) - (t - t.mean(axis=1, keepdims=True))
            soft_term = lam * float((diff * diff).sum()) / (B * K)
            dz[sm] += 2.0 * lam * diff / (B * K)
        elif sm.any():
            T = float(temperature)
            pT = np.exp(log_softmax(teacher_log_probs(np.asarray(teacher)[sm], from_logits) / T))
            logqT = log_softmax(zd[sm] / T)
            dz[sm] += lam * T * (np.exp(logqT) - pT) / B
            soft_term = -lam * T * T * (pT * logqT).sum() / B
    return float(hard + soft_term), dz.astype(z.dtype, copy=False), {"hard": float(hard), "soft": float(soft_term)}
