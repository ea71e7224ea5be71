"""The fast LSTM kernels against the plain-NumPy reference (tinykd.nn.reference).

- the reference itself against central finite differences (float64), so the oracle is proven;
- the reference is padding-invariant (garbage in padded steps of x and dout changes nothing);
- float64: the fast LSTM / BiLSTM forward output and every gradient (dx, dW, dU, db) equal the
  reference to ~1e-10, forward and reverse, sequences and last state;
- float32: the same comparisons to float32 tolerances (the fast float32 kernels use a rational tanh);
- an embedding Lookup as input: the gradient per distinct token equals the reference dE.
"""
import numpy as np
import pytest

import tinykd.nn.reference as ref

from conftest import numgrad
from tinykd.nn import lstm
from tinykd.nn.embedding import Lookup

B, L, E, H = 7, 6, 5, 8
TOL = {np.float64: dict(rtol=1e-9, atol=1e-10), np.float32: dict(rtol=1e-4, atol=1e-5)}


def make_lengths(rng, B, L):
    """Random lengths that always include an empty row and a full row."""
    lengths = rng.integers(0, L + 1, B)
    lengths[:2] = [0, L]
    return rng.permutation(lengths).astype(np.int32)


def make_params(rng, E, H, dtype):
    return tuple(a.astype(dtype) for a in (rng.normal(0, 0.5, (E, 4 * H)), rng.normal(0, 0.5, (H, 4 * H)),
                                           rng.normal(0, 0.5, 4 * H)))


def out_shape(seq, width):
    return (B, L, width) if seq else (B, width)


# ------------------------------------------------------------- reference compositions
def ref_bilstm(x, lengths, fwd, bwd, seq, dout):
    """A BiLSTM composed from two reference directions: out, dx, [dW, dU, db] fwd + bwd."""
    of, cf = ref.lstm_forward(x, lengths, *fwd, reverse=False, return_sequences=seq)
    ob, cb = ref.lstm_forward(x, lengths, *bwd, reverse=True, return_sequences=seq)
    h = fwd[1].shape[0]
    dxf, *gf = ref.lstm_backward(dout[..., :h], cf)
    dxb, *gb = ref.lstm_backward(dout[..., h:], cb)
    return np.concatenate([of, ob], axis=-1), dxf + dxb, gf + gb


def fast_lstm(x, lengths, p, reverse, seq, dout):
    out, cache = lstm.lstm_forward(x, lengths, *p, reverse=reverse, return_sequences=seq)
    grads = [np.zeros_like(a) for a in p]
    dx = lstm.lstm_backward(dout, cache, *grads)
    return out, dx, grads


def fast_bilstm(x, lengths, fwd, bwd, seq, dout):
    out, cache = lstm.bilstm_forward(x, lengths, fwd, bwd, return_sequences=seq)
    dfwd, dbwd = [np.zeros_like(a) for a in fwd], [np.zeros_like(a) for a in bwd]
    dx = lstm.bilstm_backward(dout, cache, dfwd, dbwd)
    return out, dx, dfwd + dbwd


def dE_from_dx(dx, ids, lengths, V):
    """dE accumulated from a (B, L, D) dx over the real steps."""
    real = np.arange(ids.shape[1])[None, :] < lengths[:, None]
    dE = np.zeros((V, dx.shape[-1]), dx.dtype)
    np.add.at(dE, ids[real], dx[real])
    return dE


def compare(name, got, want, tol):
    assert got.dtype == want.dtype, (name, got.dtype, want.dtype)
    assert got.shape == want.shape, (name, got.shape, want.shape)
    np.testing.assert_allclose(got, want, err_msg=name, **tol)


GRAD_NAMES = ["dW", "dU", "db"]


# -------------------------------------------------------------- the oracle is right
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("seq", [True, False])
def test_reference_matches_finite_differences(reverse, seq):
    rng = np.random.default_rng(0)
    b_, l_, e_, h_ = 3, 4, 3, 2
    x = rng.normal(size=(b_, l_, e_))
    lengths = np.array([4, 2, 0], np.int32)  # a full row, a short row, an empty row
    W, U, b = make_params(rng, e_, h_, np.float64)
    out, cache = ref.lstm_forward(x, lengths, W, U, b, reverse, seq)
    R = rng.normal(size=out.shape)

    def loss():
        return float((ref.lstm_forward(x, lengths, W, U, b, reverse, seq)[0] * R).sum())

    dx, dW, dU, db = ref.lstm_backward(R, cache)
    for name, analytic, a in [("dx", dx, x), ("dW", dW, W), ("dU", dU, U), ("db", db, b)]:
        numeric = numgrad(loss, a)
        assert np.abs(numeric).max() > 1e-3, name  # the check is not vacuous
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8, err_msg=name)
    assert not dx[1, 2:].any() and not dx[2].any()  # padded steps get no gradient


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_reference_keeps_dtype_and_zero_padding(dtype):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(B, L, E)).astype(dtype)
    lengths = make_lengths(rng, B, L)
    p = make_params(rng, E, H, dtype)
    out, cache = ref.lstm_forward(x, lengths, *p)
    grads = ref.lstm_backward(rng.normal(size=out.shape).astype(dtype), cache)
    assert out.dtype == dtype and all(g.dtype == dtype for g in grads)
    pad = np.arange(L)[None, :] >= lengths[:, None]
    assert not out[pad].any() and not grads[0][pad].any()
    last, _ = ref.lstm_forward(x, lengths, *p, return_sequences=False)
    at_last = out[np.arange(B), np.maximum(lengths - 1, 0)]
    np.testing.assert_array_equal(last, np.where(lengths[:, None] > 0, at_last, 0))
    first, _ = ref.lstm_forward(x, lengths, *p, reverse=True, return_sequences=False)
    rev, _ = ref.lstm_forward(x, lengths, *p, reverse=True)
    np.testing.assert_array_equal(first, rev[:, 0])


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("seq", [True, False])
def test_reference_padding_invariance(reverse, seq):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(B, L, E))
    lengths = make_lengths(rng, B, L)
    p = make_params(rng, E, H, np.float64)
    out, cache = ref.lstm_forward(x, lengths, *p, reverse, seq)
    dout = rng.normal(size=out.shape)
    grads = ref.lstm_backward(dout, cache)

    extra = 3  # three more padded columns, and garbage in every padded step of x and dout
    xp = np.concatenate([x, np.zeros((B, extra, E))], axis=1)
    pad = np.arange(L + extra)[None, :] >= lengths[:, None]
    xp[pad] = rng.choice([np.nan, np.inf, -np.inf, 1e30], size=(pad.sum(), E))
    outp, cachep = ref.lstm_forward(xp, lengths, *p, reverse, seq)
    if seq:
        doutp = np.concatenate([dout, np.zeros((B, extra, H))], axis=1)
        doutp[pad] = np.nan
    else:
        doutp = dout
    gradsp = ref.lstm_backward(doutp, cachep)

    if seq:
        np.testing.assert_array_equal(outp[:, :L], out)
        assert not outp[:, L:].any()
    else:
        np.testing.assert_array_equal(outp, out)
    np.testing.assert_array_equal(gradsp[0][:, :L], grads[0])
    assert not gradsp[0][:, L:].any()
    for g, gp in zip(grads[1:], gradsp[1:]):
        np.testing.assert_array_equal(gp, g)


# ------------------------------------------------------- fast kernels vs reference
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("seq", [True, False])
@pytest.mark.parametrize("seed", [3, 4])
def test_lstm_matches_reference(dtype, reverse, seq, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(B, L, E)).astype(dtype)
    lengths = make_lengths(rng, B, L)
    p = make_params(rng, E, H, dtype)
    dout = rng.normal(size=out_shape(seq, H)).astype(dtype)

    want_out, cache = ref.lstm_forward(x, lengths, *p, reverse=reverse, return_sequences=seq)
    want_dx, *want_g = ref.lstm_backward(dout, cache)
    out, dx, grads = fast_lstm(x, lengths, p, reverse, seq, dout)

    tol = TOL[dtype]
    compare("out", out, want_out, tol)
    compare("dx", dx, want_dx, tol)
    for name, g, w in zip(GRAD_NAMES, grads, want_g):
        compare(name, g, w, tol)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("seq", [True, False])
@pytest.mark.parametrize("seed", [5, 6])
def test_bilstm_matches_reference(dtype, seq, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(B, L, E)).astype(dtype)
    lengths = make_lengths(rng, B, L)
    fwd, bwd = make_params(rng, E, H, dtype), make_params(rng, E, H, dtype)
    dout = rng.normal(size=out_shape(seq, 2 * H)).astype(dtype)

    want_out, want_dx, want_g = ref_bilstm(x, lengths, fwd, bwd, seq, dout)
    out, dx, grads = fast_bilstm(x, lengths, fwd, bwd, seq, dout)

    tol = TOL[dtype]
    compare("out", out, want_out, tol)
    compare("dx", dx, want_dx, tol)
    for name, g, w in zip([f"{d}.{n}" for d in ("fwd", "bwd") for n in GRAD_NAMES], grads, want_g):
        compare(name, g, w, tol)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("bi", [False, True])
@pytest.mark.parametrize("seq", [True, False])
def test_lookup_input_matches_reference(dtype, bi, seq):
    """x = Lookup(E, ids): the fast gradient per distinct token equals the reference dE."""
    rng = np.random.default_rng(8)
    V = 12
    table = rng.normal(size=(V, E)).astype(dtype)
    lengths = make_lengths(rng, B, L)
    ids = rng.integers(0, V - 2, (B, L)).astype(np.int32)  # repeated tokens across rows and steps
    ids[np.arange(L)[None, :] >= lengths[:, None]] = V - 1  # a token that only pads: no gradient for it
    x = table[ids]
    width = (1 + bi) * H
    dout = rng.normal(size=out_shape(seq, width)).astype(dtype)

    if bi:
        fwd, bwd = make_params(rng, E, H, dtype), make_params(rng, E, H, dtype)
        want_out, want_dx, want_g = ref_bilstm(x, lengths, fwd, bwd, seq, dout)
        out, (u, du), grads = fast_bilstm(Lookup(table, ids), lengths, fwd, bwd, seq, dout)
    else:
        p = make_params(rng, E, H, dtype)
        want_out, cache = ref.lstm_forward(x, lengths, *p, reverse=False, return_sequences=seq)
        want_dx, *want_g = ref.lstm_backward(dout, cache)
        out, (u, du), grads = fast_lstm(Lookup(table, ids), lengths, p, False, seq, dout)

    real = np.arange(L)[None, :] < lengths[:, None]
    np.testing.assert_array_equal(u, np.unique(ids[real]))
    assert du.shape == (len(u), E)
    dE = np.zeros_like(table)
    dE[u] += du
    tol = TOL[dtype]
    compare("out", out, want_out, tol)
    compare("dE", dE, dE_from_dx(want_dx, ids, lengths, V), tol)
    for name, g, w in zip(GRAD_NAMES * 2, grads, want_g):
        compare(name, g, w, tol)


# ------------------------------------------------------------------ the scoring scan
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("reverse", [False, True])
def test_scan_outputs_agree(dtype, reverse):
    """lstm_scan on xw = x W + b (as the scorer feeds it table rows): "sequences" is lstm_forward's output,
    "last" its last state, "max" the max over each row's real steps (0 for an empty row); with or without
    a cache, the same numbers."""
    rng = np.random.default_rng(9)
    x = rng.normal(size=(B, L, E)).astype(dtype)
    lengths = make_lengths(rng, B, L)
    W, U, b = make_params(rng, E, H, dtype)
    xw = x @ W + b
    seq, _ = ref.lstm_forward(x, lengths, W, U, b, reverse=reverse)
    got = {out: ref.lstm_scan(xw, lengths, U, reverse, out, keep_cache=False)[0] for out in ref.OUTPUTS}
    np.testing.assert_allclose(got["sequences"], seq, **TOL[dtype])
    np.testing.assert_array_equal(got["sequences"], ref.lstm_scan(xw, lengths, U, reverse)[0])
    last, _ = ref.lstm_forward(x, lengths, W, U, b, reverse=reverse, return_sequences=False)
    np.testing.assert_allclose(got["last"], last, **TOL[dtype])
    real = np.arange(L)[None, :] < lengths[:, None]
    pooled = np.where(real[:, :, None], got["sequences"], -np.inf).max(axis=1)
    want = np.where(lengths[:, None] > 0, pooled, 0)
    assert (want < 0).any() and not want[lengths == 0].any()  # a negative max is kept, an empty row is 0
    np.testing.assert_array_equal(got["max"], want)
    assert all(v.dtype == dtype for v in got.values())
