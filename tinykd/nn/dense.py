"""Fully connected layer and its activations.

Dense:    y = x W + b            x: (B, I), W: (I, O), b: (O,) → y: (B, O)
          dx = dy Wᵀ,  dW += xᵀ dy,  db += Σ_b dy
ReLU:     y = max(x, 0)                         dy/dx = 1[x > 0]
SELU:     y = λ x (x > 0),  λ α (eˣ − 1) (x ≤ 0) dy/dx = λ (x > 0),  λ α eˣ (x ≤ 0)
          λ = 1.0507009873554805, α = 1.6732632423543772 (Klambauer et al. 2017)
Softmax:  q_k = exp(z_k − max z) / Σ_j exp(z_j − max z)   (rows of (B, K))
Head:     logits = act(f W₁ + b₁) W₂ + b₂   (the student's dense head at inference, no dropout)
"""
from __future__ import annotations

import numpy as np

SELU_LAMBDA = 1.0507009873554805
SELU_ALPHA = 1.6732632423543772


def dense_forward(x, W, b):
    """(B, I) @ (I, O) + (O,) → (B, O); the cache is ``(x, W)``."""
    return x @ W + b, (x, W)


def dense_backward(dy, cache, dW, db):
    """Add ``xᵀ dy`` into ``dW`` and ``Σ dy`` into ``db``; return ``dx = dy Wᵀ``."""
    x, W = cache
    dW += x.T @ dy
    db += dy.sum(axis=0)
    return dy @ W.T


def relu_forward(x):
    """max(x, 0); the cache is the mask x > 0."""
    mask = x > 0
    return x * mask, mask


def relu_backward(dy, mask):
    return dy * mask


def selu_forward(x):
    """Scaled exponential linear unit; the cache is ``(x, y)``."""
    neg = SELU_LAMBDA * SELU_ALPHA * np.expm1(np.minimum(x, 0))
    y = np.where(x > 0, SELU_LAMBDA * x, neg).astype(x.dtype, copy=False)
    return y, (x, y)


def selu_backward(dy, cache):
    x, y = cache
    # for x ≤ 0: λα eˣ = y + λα
    return dy * np.where(x > 0, SELU_LAMBDA, y + SELU_LAMBDA * SELU_ALPHA).astype(dy.dtype, copy=False)


def head_logits(f, W, b, hidden=None, activation=None):
    """The dense head at inference: f (B, F) → logits (B, K) = act(f W₁ + b₁) W + b with
    ``hidden = (W₁ (F, U), b₁ (U,))``, or f W + b when ``hidden`` is None."""
    if hidden is not None:
        f, _ = ACTIVATIONS[activation][0](dense_forward(f, *hidden)[0])
    return dense_forward(f, W, b)[0]


def softmax(z):
    """Row-wise softmax of (B, K) logits, stable against overflow."""
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


ACTIVATIONS = {
    None: (lambda x: (x, None), lambda dy, cache: dy),
    "linear": (lambda x: (x, None), lambda dy, cache: dy),
    "relu": (relu_forward, relu_backward),
    "selu": (selu_forward, selu_backward),
}

#: the integer code of each activation in the Numba scoring head (:mod:`tinykd.scoring._kernels`)
ACTIVATION_CODES = {None: 0, "linear": 0, "relu": 1, "selu": 2}
