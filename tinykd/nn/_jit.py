"""What the Numba kernels of tinykd share: Numba's start-up, the compile options, and the
small inlined building blocks (float32 tanh / sigmoid, the register-blocked row product,
the gate activations).

Imported lazily — by the first training step or the first Numba-scored batch — so
``import tinykd`` and a small first scoring job never pay Numba's start-up. Every kernel
is compiled once and cached on disk (``cache=True``); :func:`announce_compile` says so on
screen when a kernel is about to be compiled (the first run after an install).

Kernel modules: :mod:`tinykd.nn._lstm_kernels` (LSTM time loops, training),
:mod:`tinykd.nn._pool_kernels` (max over time), :mod:`tinykd.scoring._kernels`
(inference), :mod:`tinykd.train._optim_kernels` (Adam). They take plain arrays only.
"""
from __future__ import annotations

import sys

import numpy as np


def _start_numba():
    """Import Numba and set up its CPU target without importing SciPy.

    Numba's first compile/cache load imports ``numba.np.arraymath``, which
    imports all of ``scipy.linalg`` (~0.3 s, ~15 MB) only to learn whether
    ``np.dot`` inside jitted code may call BLAS. No tinykd kernel does, so the
    probe is answered "no BLAS" here — only when this is Numba's first use in
    the process and SciPy's linear algebra is not loaded already.
    """
    import numba  # noqa: F401  (Numba's own start-up)
    from numba.core.registry import cpu_target

    if "numba.np.arraymath" in sys.modules or "scipy.linalg" in sys.modules:
        return
    key = "scipy.linalg.cython_blas"
    had = key in sys.modules
    if not had:
        sys.modules[key] = None  # makes the probe's import fail fast
    try:
        cpu_target.target_context.refresh()
    finally:
        if not had and sys.modules.get(key, 0) is None:
            del sys.modules[key]


_start_numba()

from numba import njit, types  # noqa: E402
from numba.extending import overload  # noqa: E402

TINY = 1e-30  # carried gradients below this are flushed to 0 (no denormal slow-down)
_FM = {"contract", "nsz"}  # FMA contraction only: no reassociation, NaN/inf semantics kept
JIT = dict(cache=True, fastmath=_FM, error_model="numpy", nogil=True)


def _is_cached(dispatcher):
    """Whether Numba finds an on-disk cache index for ``dispatcher`` (a compile is then a load)."""
    try:
        return __import__("os").path.exists(dispatcher._cache._cache_file._index_path)
    except Exception:  # pragma: no cover - private Numba API moved: assume cached, say nothing
        return True


def announce_compile(dispatchers, what, seconds, stream=None):
    """Print one line when any of ``dispatchers`` has never been compiled on this machine
    (the first run after an install), so that a silent pause of ``seconds`` is explained."""
    todo = [d for d in dispatchers if not d.signatures and not _is_cached(d)]
    if todo:
        print(f"tinykd: compiling the {what} kernels (first run after an install only, about {seconds}; "
              "cached on disk afterwards) …", file=sys.stderr if stream is None else stream, flush=True)


# ---------------------------------------------------------------- activations
# float32: Eigen's rational approximation of tanh (clamped at ±7.9053, where it is 1 in float32)
_A1 = np.float32(4.89352455891786e-03)
_A3 = np.float32(6.37261928875436e-04)
_A5 = np.float32(1.48572235717979e-05)
_A7 = np.float32(5.12229709037114e-08)
_A9 = np.float32(-8.60467152213735e-11)
_A11 = np.float32(2.00018790482477e-13)
_A13 = np.float32(-2.76076847742355e-16)
_B0 = np.float32(4.89352518554385e-03)
_B2 = np.float32(2.26843463243900e-03)
_B4 = np.float32(1.18534705686654e-04)
_B6 = np.float32(1.19825839466702e-06)
_CLAMP = np.float32(7.90531110763549805)
_HALF32 = np.float32(0.5)


def _tanh(x):  # pragma: no cover - replaced by the overload inside Numba
    return np.tanh(x)


def _sigmoid(x):  # pragma: no cover
    return 1.0 / (1.0 + np.exp(-x))


@overload(_tanh, inline="always")
def _tanh_ov(x):
    if x == types.float32:
        def impl(x):
            x = min(max(x, -_CLAMP), _CLAMP)
            x2 = x * x
            p = ((((((x2 * _A13 + _A11) * x2 + _A9) * x2 + _A7) * x2 + _A5) * x2 + _A3) * x2 + _A1) * x
            q = ((x2 * _B6 + _B4) * x2 + _B2) * x2 + _B0
            return p / q
        return impl

    def impl64(x):
        return np.tanh(x)
    return impl64


@overload(_sigmoid, inline="always")
def _sigmoid_ov(x):
    if x == types.float32:
        def impl(x):
            return _HALF32 * _tanh(_HALF32 * x) + _HALF32
        return impl

    def impl64(x):
        if x >= 0:
            return 1.0 / (1.0 + np.exp(-x))
        e = np.exp(x)
        return e / (1.0 + e)
    return impl64


# ------------------------------------------------------------ small products
@njit(inline="always", **JIT)
def _rows_matmul_acc(A, Bm, C, n, K):
    """C[:n] += A[:n, :K] @ Bm[:K]. Four rows × four inner indices per pass (register-blocked:
    each loaded row of Bm feeds 16 FMAs), then pairs, then a single row."""
    N = Bm.shape[1]
    K4 = K - K % 4
    r = 0
    while r + 3 < n:
        for k in range(0, K4, 4):
            a0 = A[r, k]
            a1 = A[r, k + 1]
            a2 = A[r, k + 2]
            a3 = A[r, k + 3]
            b0 = A[r + 1, k]
            b1 = A[r + 1, k + 1]
            b2 = A[r + 1, k + 2]
            b3 = A[r + 1, k + 3]
            c0 = A[r + 2, k]
            c1 = A[r + 2, k + 1]
            c2 = A[r + 2, k + 2]
            c3 = A[r + 2, k + 3]
            d0 = A[r + 3, k]
            d1 = A[r + 3, k + 1]
            d2 = A[r + 3, k + 2]
            d3 = A[r + 3, k + 3]
            for j in range(N):
                u0 = Bm[k, j]
                u1 = Bm[k + 1, j]
                u2 = Bm[k + 2, j]
                u3 = Bm[k + 3, j]
                C[r, j] += a0 * u0 + a1 * u1 + a2 * u2 + a3 * u3
                C[r + 1, j] += b0 * u0 + b1 * u1 + b2 * u2 + b3 * u3
                C[r + 2, j] += c0 * u0 + c1 * u1 + c2 * u2 + c3 * u3
                C[r + 3, j] += d0 * u0 + d1 * u1 + d2 * u2 + d3 * u3
        for k in range(K4, K):
            for i in range(4):
                a0 = A[r + i, k]
                for j in range(N):
                    C[r + i, j] += a0 * Bm[k, j]
        r += 4
    while r + 1 < n:
        for k in range(0, K4, 4):
            a0 = A[r, k]
            a1 = A[r, k + 1]
            a2 = A[r, k + 2]
            a3 = A[r, k + 3]
            b0 = A[r + 1, k]
            b1 = A[r + 1, k + 1]
            b2 = A[r + 1, k + 2]
            b3 = A[r + 1, k + 3]
            for j in range(N):
                u0 = Bm[k, j]
                u1 = Bm[k + 1, j]
                u2 = Bm[k + 2, j]
                u3 = Bm[k + 3, j]
                C[r, j] += a0 * u0 + a1 * u1 + a2 * u2 + a3 * u3
                C[r + 1, j] += b0 * u0 + b1 * u1 + b2 * u2 + b3 * u3
        for k in range(K4, K):
            a0 = A[r, k]
            b0 = A[r + 1, k]
            for j in range(N):
                C[r, j] += a0 * Bm[k, j]
                C[r + 1, j] += b0 * Bm[k, j]
        r += 2
    if r < n:
        for k in range(0, K4, 4):
            a0 = A[r, k]
            a1 = A[r, k + 1]
            a2 = A[r, k + 2]
            a3 = A[r, k + 3]
            for j in range(N):
                C[r, j] += a0 * Bm[k, j] + a1 * Bm[k + 1, j] + a2 * Bm[k + 2, j] + a3 * Bm[k + 3, j]
        for k in range(K4, K):
            a0 = A[r, k]
            for j in range(N):
                C[r, j] += a0 * Bm[k, j]


@njit(inline="always", **JIT)
def _activate_gates(zr, H):
    """i, f, o = σ(z), g = tanh(z) in place on one row of pre-activations [i | f | g | o].

    Each gate block is a unit-stride loop from 0 over a view of its own: these vectorise
    (LLVM left a loop over ``range(3H, 4H)`` of the row scalar, which cost a third of the
    step; a loop mixing the four blocks does not vectorise either)."""
    for j in range(2 * H):
        zr[j] = _sigmoid(zr[j])
    zg = zr[2 * H:3 * H]
    for j in range(H):
        zg[j] = _tanh(zg[j])
    zo = zr[3 * H:4 * H]
    for j in range(H):
        zo[j] = _sigmoid(zo[j])


@njit(inline="always", **JIT)
def _cell_step(zr, cr, hr, H):
    """One LSTM step of one row, in place: the pre-activations ``zr`` = [i | f | g | o] become the
    gates, then c = f ⊙ c + i ⊙ g and h = o ⊙ tanh(c) (``cr``, ``hr``: the row's state)."""
    _activate_gates(zr, H)
    for j in range(H):
        cn = zr[H + j] * cr[j] + zr[j] * zr[2 * H + j]
        cr[j] = cn
        hr[j] = zr[3 * H + j] * _tanh(cn)
