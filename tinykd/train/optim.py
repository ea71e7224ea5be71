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
        from tinykd.train import _optim_kernels as K

        norm = float(np.sqrt(K.sq_norm(grad)))
        scale = 1.0
        if self.clip_norm is not None and norm > self.clip_norm:
            scale = self.clip_norm / norm
        lr_t = self.lr * np.sqrt(1.0 - self.beta2 ** self.t) / (1.0 - self.beta1 ** self.t)
        # folding the bias corrections into lr_t; ε·√(1−β₂ᵗ) keeps the update exactly the formula above
        K.adam_kernel(self.theta, grad, self.m, self.v, lr_t, self.beta1, self.beta2,
                     self.eps * np.sqrt(1.0 - self.beta2 ** self.t), scale)
        return norm
