"""Adam on one flat parameter buffer, with optional global-norm gradient clipping.

    g ← g · min(1, clip / ‖g‖₂)                     (if clip is set)
    m ← β₁ m + (1 − β₁) g        v ← β₂ v + (1 − β₂) g²
    θ ← θ − lr · m̂ / (√v̂ + ε),   m̂ = m / (1 − β₁ᵗ),  v̂ = v / (1 − β₂ᵗ)

All parameters live in one float32 array, so a step is one fused loop.
Second moments below 1e-30 are flushed to zero so that they never turn
denormal (which makes every later step many times slower).
"""
from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def _adam_kernel(theta, g, m, v, lr_t, b1, b2, eps, scale):
    for k in range(theta.shape[0]):
        gk = g[k] * scale
        mk = b1 * m[k] + (1.0 - b1) * gk
        vk = b2 * v[k] + (1.0 - b2) * gk * gk
        if vk < 1e-30:
            vk = 0.0
        if abs(mk) < 1e-30:
            mk = 0.0
        m[k] = mk
        v[k] = vk
        theta[k] -= lr_t * mk / (np.sqrt(vk) + eps)


class Adam:
    """Adam over a flat buffer ``theta`` (updated in place by :meth:`step`)."""

    def __init__(self, theta, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-7, clip_norm=None):
        self.theta = theta
        self.lr, self.beta1, self.beta2, self.eps = lr, beta1, beta2, eps
        self.clip_norm = clip_norm
        self.m = np.zeros_like(theta)
        self.v = np.zeros_like(theta)
        self.t = 0

    def step(self, grad):
        """One update from the flat gradient ``grad``; returns the gradient's norm."""
        self.t += 1
        norm = float(np.sqrt(np.dot(grad.astype(np.float64), grad.astype(np.float64))))
        scale = 1.0
        if self.clip_norm is not None and norm > self.clip_norm:
            scale = self.clip_norm / norm
        lr_t = self.lr * np.sqrt(1.0 - self.beta2 ** self.t) / (1.0 - self.beta1 ** self.t)
        # folding the bias corrections into lr_t; ε·√(1−β₂ᵗ) keeps the update exactly the formula above
        _adam_kernel(self.theta, grad, self.m, self.v, lr_t, self.beta1, self.beta2,
                     self.eps * np.sqrt(1.0 - self.beta2 ** self.t), scale)
        return norm
