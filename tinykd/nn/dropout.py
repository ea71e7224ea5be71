"""Inverted dropout.

    training: y = x ⊙ m / (1 − p),  m ~ Bernoulli(1 − p)     (same shape as x)
    inference: y = x
    backward: dx = dy ⊙ m / (1 − p)

The expected activation is unchanged, so inference needs no rescaling.
"""
from __future__ import annotations


def dropout_forward(x, p, rng, training):
    """Drop each unit with probability ``p`` when ``training``; the cache is the scaled mask."""
    if not training or p <= 0.0:
        return x, None
    mask = (rng.random(x.shape) >= p).astype(x.dtype) / x.dtype.type(1.0 - p)
    return x * mask, mask


def dropout_backward(dy, mask):
    return dy if mask is None else dy * mask
