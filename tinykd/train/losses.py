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
masked out of their term; the mean is always over the whole batch. Row weights ``w`` (B,), when given,
multiply each row's terms and its gradient row: ``L = 1/B Σ_b w_b [ … ]``, ``dL/dz_b = w_b [ … ] / B``.

``soft="mse"`` matches logits instead (Tang et al. 2019; Ba & Caruana 2014): with
``t = log p`` (the teacher's logits up to a constant per row), both centred over the K
classes (``z̄ = z − mean_k z``, ``t̄ = t − mean_k t``; the constant drops out)::

    soft term = λ/(B K) Σ_b ‖z̄_b − t̄_b‖²        d/dz_b = 2λ (z̄_b − t̄_b) / (B K)

(the centring is a symmetric idempotent projection, and ``z̄ − t̄`` is already centred); T
is not used.

``ordinal=μ > 0`` adds the squared distance between the student's and the teacher's expected score,
on the rows with a teacher row (``soft_mask``; λ may be 0), the ordered classes at ``s_k = k / (K − 1)``::

    e_q = Σ_k s_k q_k     e_p = Σ_k s_k p_k
    ordinal term = μ/B Σ_b (e_q,b − e_p,b)²      d/dz_bk = 2μ (e_q,b − e_p,b) q_bk (s_k − e_q,b) / B

(``d e_q / d z_k = q_k (s_k − e_q)``): a far-off score costs more than a near one, as in QWK.
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


def ordinal_term(z, p, weight, rows=None):
    """``weight`` · the summed squared gap between the expected scores of ``softmax(z)`` and ``p`` (rows
    (B, K), classes at ``k / (K − 1)``; see the module docstring), each row's times ``rows[b]`` when given,
    and its gradient d/dz (B, K)."""
    q = np.exp(log_softmax(z))
    s = np.linspace(0.0, 1.0, z.shape[1])
    e_q = q @ s
    gap = e_q - p @ s
    wgap = gap if rows is None else gap * rows
    return weight * float(wgap @ gap), 2.0 * weight * wgap[:, None] * q * (s[None, :] - e_q[:, None])


def kd_loss(z, y=None, teacher=None, lam=1.0, temperature=1.0, from_logits=False,
            hard_mask=None, soft_mask=None, soft="ce", ordinal=0.0, weights=None):
    """The distillation loss ``L`` above and its gradient ``dL/dz``.

    Parameters
    ----------
    z : (B, K) student logits.
    y : (B,) int hard labels, or None (no hard term).
    teacher : (B, K) teacher probabilities (or logits with ``from_logits``), or None.
    lam, temperature : λ and T.
    hard_mask, soft_mask : (B,) bool — which rows take part in each term.
    soft : "ce" (Eq. 4, the default) or "mse" (centred logits, see above).
    ordinal : μ of the expected-score term on the rows with a teacher row (0: none; see above).
    weights : (B,) non-negative row weights, or None (every row 1).

    Returns ``(loss, dz, parts)`` where ``parts`` holds the hard, soft and ordinal terms.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if lam < 0:
        raise ValueError(f"lam must be >= 0, got {lam}")
    if soft not in SOFT_LOSSES:
        raise ValueError(f"soft must be one of {SOFT_LOSSES}, got {soft!r}")
    if ordinal < 0:
        raise ValueError(f"ordinal must be >= 0, got {ordinal}")
    B, K = z.shape
    w = None if weights is None else np.asarray(weights, dtype=np.float64)
    if w is not None and (w.shape != (B,) or not (np.isfinite(w) & (w >= 0)).all()):
        raise ValueError(f"weights must be {B} finite values >= 0, one per row")
    zd = z.astype(np.float64)
    dz = np.zeros((B, K), dtype=np.float64)
    hard = soft_term = ord_term = 0.0
    if y is not None:
        hm = np.ones(B, bool) if hard_mask is None else np.asarray(hard_mask, bool)
        if hm.any():
            logq = log_softmax(zd[hm])
            yy = np.asarray(y)[hm]
            g = np.exp(logq)
            g[np.arange(len(yy)), yy] -= 1.0
            nll = -logq[np.arange(len(yy)), yy]
            if w is not None:
                nll, g = nll * w[hm], g * w[hm, None]
            hard = nll.sum() / B
            dz[hm] += g / B
    sm = None if teacher is None else np.ones(B, bool) if soft_mask is None else np.asarray(soft_mask, bool)
    # the teacher's rows as log-probabilities, once for every term that reads them
    t = teacher_log_probs(np.asarray(teacher)[sm], from_logits) if sm is not None and sm.any() and (
        lam > 0 or ordinal > 0) else None
    if t is not None and lam > 0:
        ws = None if w is None else w[sm, None]
        if soft == "mse":
            diff = (zd[sm] - zd[sm].mean(axis=1, keepdims=True)) - (t - t.mean(axis=1, keepdims=True))
            wdiff = diff if ws is None else diff * ws
            soft_term = lam * float((wdiff * diff).sum()) / (B * K)
            dz[sm] += 2.0 * lam * wdiff / (B * K)
        else:
            T = float(temperature)
            pT = np.exp(log_softmax(t / T))
            logqT = log_softmax(zd[sm] / T)
            g, ce = np.exp(logqT) - pT, pT * logqT
            if ws is not None:
                g, ce = g * ws, ce * ws
            dz[sm] += lam * T * g / B
            soft_term = -lam * T * T * ce.sum() / B
    if t is not None and ordinal > 0:
        p = np.exp(t)
        ord_term, g = ordinal_term(zd[sm], p / p.sum(axis=1, keepdims=True), ordinal,
                                   None if w is None else w[sm])
        ord_term /= B
        dz[sm] += g / B
    parts = {"hard": float(hard), "soft": float(soft_term), "ordinal": float(ord_term)}
    return float(hard + soft_term + ord_term), dz.astype(z.dtype, copy=False), parts
