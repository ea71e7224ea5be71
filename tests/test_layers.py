"""Every layer's backward against central finite differences (float64), and the LSTM against torch."""
import numpy as np
import pytest

from tinykd.nn.dense import (dense_backward, dense_forward, relu_backward, relu_forward, selu_backward,
                             selu_forward, softmax)
from tinykd.nn.dropout import dropout_backward, dropout_forward
from tinykd.nn.embedding import embedding_backward, embedding_forward
from tinykd.nn.lstm import bilstm_backward, bilstm_forward, lstm_backward, lstm_forward
from tinykd.nn.pooling import global_max_pool_backward, global_max_pool_forward
from tinykd.nn.regularizers import penalty_backward, penalty_forward

EPS = 1e-6

from conftest import numgrad  # noqa: E402


def assert_close(analytic, numeric, tol=1e-6):
    scale = max(1.0, np.abs(numeric).max())
    err = np.abs(analytic - numeric).max() / scale
    assert err < tol, f"gradient mismatch: relative error {err:.2e}"


@pytest.fixture
def rng():
    return np.random.default_rng(42)


def lstm_params(rng, E, H):
    return (rng.normal(0, 0.5, (E, 4 * H)), rng.normal(0, 0.5, (H, 4 * H)), rng.normal(0, 0.5, 4 * H))


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_lstm_gradients(rng, reverse, return_sequences):
    B, L, E, H = 3, 5, 4, 3
    x = rng.normal(size=(B, L, E))
    lengths = np.array([5, 2, 0], np.int32)  # a full row, a short row, an empty row
    W, U, b = lstm_params(rng, E, H)
    out, _ = lstm_forward(x, lengths, W, U, b, reverse, return_sequences)
    R = rng.normal(size=out.shape)

    def f():
        return float((lstm_forward(x, lengths, W, U, b, reverse, return_sequences)[0] * R).sum())

    out, cache = lstm_forward(x, lengths, W, U, b, reverse, return_sequences)
    dW, dU, db = np.zeros_like(W), np.zeros_like(U), np.zeros_like(b)
    dx = lstm_backward(R, cache, dW, dU, db)
    for analytic, param in [(dx, x), (dW, W), (dU, U), (db, b)]:
        assert_close(analytic, numgrad(f, param))
    # padded steps: no output, no gradient
    if return_sequences:
        assert np.all(out[1, 2:] == 0) and np.all(out[2] == 0)
    assert np.all(dx[1, 2:] == 0) and np.all(dx[2] == 0)


def test_lstm_gradients_accumulate(rng):
    """Backward adds into the gradient buffers (+=), it does not overwrite them."""
    x = rng.normal(size=(2, 3, 2))
    lengths = np.array([3, 2], np.int32)
    W, U, b = lstm_params(rng, 2, 2)
    out, cache = lstm_forward(x, lengths, W, U, b)
    R = rng.normal(size=out.shape)
    g1 = [np.zeros_like(W), np.zeros_like(U), np.zeros_like(b)]
    lstm_backward(R, cache, *g1)
    g2 = [np.ones_like(W), np.ones_like(U), np.ones_like(b)]
    lstm_backward(R, cache, *g2)
    for a, c in zip(g1, g2):
        np.testing.assert_allclose(c, a + 1.0)


@pytest.mark.parametrize("return_sequences", [False, True])
def test_bilstm_gradients(rng, return_sequences):
    B, L, E, H = 3, 4, 3, 2
    x = rng.normal(size=(B, L, E))
    lengths = np.array([4, 1, 3], np.int32)
    fwd, bwd = lstm_params(rng, E, H), lstm_params(rng, E, H)
    out, cache = bilstm_forward(x, lengths, fwd, bwd, return_sequences)
    assert out.shape[-1] == 2 * H
    R = rng.normal(size=out.shape)

    def f():
        return float((bilstm_forward(x, lengths, fwd, bwd, return_sequences)[0] * R).sum())

    dfwd = [np.zeros_like(a) for a in fwd]
    dbwd = [np.zeros_like(a) for a in bwd]
    dx = bilstm_backward(R, cache, dfwd, dbwd)
    assert_close(dx, numgrad(f, x))
    for analytic, param in list(zip(dfwd, fwd)) + list(zip(dbwd, bwd)):
        assert_close(analytic, numgrad(f, param))


def test_bilstm_backward_direction_starts_at_last_real_token(rng):
    """The reversed direction of a padded row equals the forward LSTM run on the reversed real tokens."""
    E, H = 3, 4
    x = rng.normal(size=(1, 6, E))
    W, U, b = lstm_params(rng, E, H)
    lengths = np.array([4], np.int32)
    out_rev, _ = lstm_forward(x, lengths, W, U, b, reverse=True, return_sequences=True)
    flipped = x[:, :4][:, ::-1].copy()
    out_fwd, _ = lstm_forward(flipped, lengths, W, U, b, reverse=False, return_sequences=True)
    np.testing.assert_allclose(out_rev[:, :4], out_fwd[:, ::-1], atol=1e-12)
    assert np.all(out_rev[:, 4:] == 0)


def test_embedding_gradient(rng):
    E = rng.normal(size=(7, 3))
    ids = np.array([[1, 4, 4, 0], [6, 2, 0, 0]], np.int32)
    lengths = np.array([3, 2], np.int32)
    R = rng.normal(size=(2, 4, 3))
    R_masked = R * (np.arange(4)[None, :, None] < lengths[:, None, None])

    def f():
        return float((embedding_forward(E, ids)[0] * R_masked).sum())

    dE = np.zeros_like(E)
    embedding_backward(R, ids, lengths, dE)  # padded steps of R are ignored
    assert_close(dE, numgrad(f, E))
    assert np.all(dE[0] == 0)  # PAD never receives gradient


@pytest.mark.parametrize("act", ["relu", "selu"])
def test_dense_and_activation_gradients(rng, act):
    x = rng.normal(size=(4, 5))
    W, b = rng.normal(size=(5, 3)), rng.normal(size=3)
    fwd, bwd = {"relu": (relu_forward, relu_backward), "selu": (selu_forward, selu_backward)}[act]
    R = rng.normal(size=(4, 3))

    def f():
        return float((fwd(dense_forward(x, W, b)[0])[0] * R).sum())

    h, c1 = dense_forward(x, W, b)
    y, c2 = fwd(h)
    dW, db = np.zeros_like(W), np.zeros_like(b)
    dx = dense_backward(bwd(R, c2), c1, dW, db)
    for analytic, param in [(dx, x), (dW, W), (db, b)]:
        assert_close(analytic, numgrad(f, param))


def test_selu_known_values():
    y, _ = selu_forward(np.array([1.0, 0.0, -1.0]))
    np.testing.assert_allclose(y, [1.0507009873554805, 0.0, 1.0507009873554805 * 1.6732632423543772 * (np.exp(-1) - 1)])


def test_softmax_stable_and_normalised():
    q = softmax(np.array([[1000.0, 1000.0, -1000.0], [1.0, 2.0, 3.0]]))
    np.testing.assert_allclose(q[0], [0.5, 0.5, 0.0])
    np.testing.assert_allclose(q[1], np.exp([1, 2, 3]) / np.exp([1, 2, 3]).sum())


def test_max_pool_ignores_padding(rng):
    x = rng.normal(size=(3, 5, 2))
    x[0, 3:] = 100.0  # padded steps with huge values must not win
    lengths = np.array([3, 5, 0], np.int32)
    y, cache = global_max_pool_forward(x, lengths)
    np.testing.assert_allclose(y[0], x[0, :3].max(axis=0))
    np.testing.assert_allclose(y[1], x[1].max(axis=0))
    np.testing.assert_allclose(y[2], 0.0)
    R = rng.normal(size=y.shape)

    def f():
        return float((global_max_pool_forward(x, lengths)[0] * R).sum())

    assert_close(global_max_pool_backward(R, cache), numgrad(f, x))


def test_dropout_inverted_scaling_and_gradient(rng):
    x = np.ones((200, 50))
    y, mask = dropout_forward(x, 0.25, np.random.default_rng(0), training=True)
    kept = y != 0
    assert abs(kept.mean() - 0.75) < 0.02
    np.testing.assert_allclose(y[kept], 1 / 0.75)
    np.testing.assert_allclose(dropout_backward(np.ones_like(x), mask), y)
    y_eval, m = dropout_forward(x, 0.25, None, training=False)
    assert y_eval is x and m is None


def test_penalty_gradient(rng):
    W = rng.normal(size=(4, 3))
    dW = np.zeros_like(W)
    penalty_backward(W, dW, l1=0.01, l2=0.1)
    assert_close(dW, numgrad(lambda: penalty_forward(W, 0.01, 0.1), W))
    assert penalty_forward(W, 0.01, 0.1) == pytest.approx(0.01 * np.abs(W).sum() + 0.1 * (W ** 2).sum())


def test_lstm_matches_torch(rng):
    torch = pytest.importorskip("torch")
    B, L, E, H = 3, 6, 5, 4
    x = rng.normal(size=(B, L, E)).astype(np.float32)
    lengths = np.array([6, 6, 6], np.int32)
    W, U, b = (a.astype(np.float32) for a in lstm_params(rng, E, H))
    lstm = torch.nn.LSTM(E, H, batch_first=True)
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(torch.from_numpy(W.T.copy()))
        lstm.weight_hh_l0.copy_(torch.from_numpy(U.T.copy()))
        lstm.bias_ih_l0.copy_(torch.from_numpy(b))
        lstm.bias_hh_l0.zero_()
    xt = torch.from_numpy(x).requires_grad_(True)
    out_t, _ = lstm(xt)
    R = rng.normal(size=(B, L, H)).astype(np.float32)
    (out_t * torch.from_numpy(R)).sum().backward()

    out, cache = lstm_forward(x, lengths, W, U, b, return_sequences=True)
    dW, dU, db = np.zeros_like(W), np.zeros_like(U), np.zeros_like(b)
    dx = lstm_backward(R, cache, dW, dU, db)
    np.testing.assert_allclose(out, out_t.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(dx, xt.grad.numpy(), atol=1e-4)
    np.testing.assert_allclose(dW, lstm.weight_ih_l0.grad.numpy().T, atol=1e-4)
    np.testing.assert_allclose(dU, lstm.weight_hh_l0.grad.numpy().T, atol=1e-4)
    np.testing.assert_allclose(db, lstm.bias_ih_l0.grad.numpy(), atol=1e-4)


def test_bilstm_matches_torch_packed(rng):
    """Variable lengths: our BiLSTM equals torch's bidirectional LSTM on packed sequences."""
    torch = pytest.importorskip("torch")
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    B, L, E, H = 3, 5, 3, 2
    x = rng.normal(size=(B, L, E)).astype(np.float32)
    lengths = np.array([5, 3, 1], np.int32)
    fwd = tuple(a.astype(np.float32) for a in lstm_params(rng, E, H))
    bwd = tuple(a.astype(np.float32) for a in lstm_params(rng, E, H))
    lstm = torch.nn.LSTM(E, H, batch_first=True, bidirectional=True)
    with torch.no_grad():
        for sfx, (W, U, b) in [("", fwd), ("_reverse", bwd)]:
            getattr(lstm, "weight_ih_l0" + sfx).copy_(torch.from_numpy(W.T.copy()))
            getattr(lstm, "weight_hh_l0" + sfx).copy_(torch.from_numpy(U.T.copy()))
            getattr(lstm, "bias_ih_l0" + sfx).copy_(torch.from_numpy(b))
            getattr(lstm, "bias_hh_l0" + sfx).zero_()
    xt = torch.from_numpy(x).requires_grad_(True)
    packed = pack_padded_sequence(xt, torch.from_numpy(lengths.astype(np.int64)), batch_first=True)
    out_p, _ = lstm(packed)
    out_t, _ = pad_packed_sequence(out_p, batch_first=True, total_length=L)
    R = rng.normal(size=(B, L, 2 * H)).astype(np.float32)
    (out_t * torch.from_numpy(R)).sum().backward()

    out, cache = bilstm_forward(x, lengths, fwd, bwd, return_sequences=True)
    dfwd = [np.zeros_like(a) for a in fwd]
    dbwd = [np.zeros_like(a) for a in bwd]
    dx = bilstm_backward(R, cache, dfwd, dbwd)
    np.testing.assert_allclose(out, out_t.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(dx, xt.grad.numpy(), atol=1e-4)
    np.testing.assert_allclose(dbwd[1], lstm.weight_hh_l0_reverse.grad.numpy().T, atol=1e-4)
