"""The fast paths give the reference results (float32 tolerance).

- float32 kernels (rational tanh, typed constants) vs the exact float64 kernels;
- parallel (prange over directions / batch halves) vs serial;
- token lookup: an LSTM fed the embedding table and ids (each distinct token projected once)
  vs one fed the gathered embeddings;
- row order: a permuted batch gives the permuted outputs and the same gradients;
- ragged (variable lengths) vs a fixed-length batch of the same rows;
- the scoring path (projection table, fused time loop + pooling + head, batch 1 and batched,
  serial and parallel, Numba and NumPy) vs ``net.forward`` + softmax (the NumPy path to 1e-6); a scorer's
  weights are read-only; ``jit="auto"`` decides from the scorer's own state.

(``tests/test_reference.py`` holds the training kernels to the plain NumPy LSTM of
``tinykd.nn.reference``.)
"""
import numpy as np
import pytest

import tinykd.nn.lstm as L
from tinykd.nn.network import PRESETS, StudentNet, make_config
from tinykd.nn.dense import softmax
from tinykd.scoring.scorer import Scorer
from tinykd.settings import Settings

ATOL = 2e-5


def proba(net, ids, lengths, **settings):
    """A fresh scorer's probabilities (Numba path unless jit= says otherwise)."""
    return Scorer(net.copy(), Settings(**{"jit": "always", **settings})).predict_proba(ids, lengths)


def params(rng, E, H, dtype):
    return tuple(a.astype(dtype) for a in (rng.normal(0, 0.4, (E, 4 * H)), rng.normal(0, 0.4, (H, 4 * H)),
                                           rng.normal(0, 0.4, 4 * H)))


def run(x, lengths, dirs, seq, dout, parallel=False, split_rows=L.SPLIT_ROWS):
    """Forward + backward of one LSTM or a BiLSTM; returns out, dx and all parameter gradients."""
    if len(dirs) == 1:
        out, cache = L.lstm_forward(x, lengths, *dirs[0], return_sequences=seq, parallel=parallel,
                                    split_rows=split_rows)
        grads = [[np.zeros_like(a) for a in dirs[0]]]
        dx = L.lstm_backward(dout(out), cache, *grads[0])
    else:
        out, cache = L.bilstm_forward(x, lengths, dirs[0], dirs[1], return_sequences=seq, parallel=parallel)
        grads = [[np.zeros_like(a) for a in d] for d in dirs]
        dx = L.bilstm_backward(dout(out), cache, *grads)
    return out, dx, [g for gs in grads for g in gs]


@pytest.mark.parametrize("bi", [False, True])
@pytest.mark.parametrize("seq", [False, True])
def test_float32_kernels_match_float64(rng, bi, seq):
    B, T, E, H = 20, 9, 6, 8
    x = rng.normal(size=(B, T, E))
    lengths = rng.integers(0, T + 1, B).astype(np.int32)
    dirs64 = [params(rng, E, H, np.float64) for _ in range(1 + bi)]
    R = rng.normal(size=(B, T, (1 + bi) * H) if seq else (B, (1 + bi) * H))
    o64, dx64, g64 = run(x, lengths, dirs64, seq, lambda o: R)
    o32, dx32, g32 = run(x.astype(np.float32), lengths, [tuple(a.astype(np.float32) for a in d) for d in dirs64],
                         seq, lambda o: R.astype(np.float32))
    assert o32.dtype == dx32.dtype == np.float32
    np.testing.assert_allclose(o32, o64, atol=ATOL)
    np.testing.assert_allclose(dx32, dx64, atol=1e-4)
    for a, b in zip(g32, g64):
        np.testing.assert_allclose(a, b, atol=5e-4, rtol=1e-4)


@pytest.mark.parametrize("bi", [False, True])
def test_parallel_equals_serial(rng, bi):
    B, T, E, H = 33, 7, 5, 4  # odd batch: uneven halves, an odd row in the two-row blocks
    x = rng.normal(size=(B, T, E)).astype(np.float32)
    lengths = rng.integers(0, T + 1, B).astype(np.int32)
    dirs = [params(rng, E, H, np.float32) for _ in range(1 + bi)]
    R = rng.normal(size=(B, T, (1 + bi) * H)).astype(np.float32)
    ref = run(x, lengths, dirs, True, lambda o: R, split_rows=2)
    got = run(x, lengths, dirs, True, lambda o: R, parallel=True, split_rows=2)
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])
    for a, b in zip(got[2], ref[2]):  # bit-identical: the weights trained must not depend on the load
        np.testing.assert_array_equal(a, b)
    whole = run(x, lengths, dirs, True, lambda o: R, split_rows=B + 1)  # one task: the same up to the sums' order
    for a, b in zip(whole[2], ref[2]):
        np.testing.assert_allclose(a, b, atol=1e-6)


@pytest.mark.parametrize("bi", [False, True])
def test_row_order_does_not_matter(rng, bi):
    B, T, E, H = 12, 8, 4, 4
    x = rng.normal(size=(B, T, E)).astype(np.float32)
    lengths = rng.integers(1, T + 1, B).astype(np.int32)
    dirs = [params(rng, E, H, np.float32) for _ in range(1 + bi)]
    R = rng.normal(size=(B, T, (1 + bi) * H)).astype(np.float32)
    perm = rng.permutation(B)
    a = run(x, lengths, dirs, True, lambda o: R)
    b = run(x[perm], lengths[perm], dirs, True, lambda o: R[perm])
    np.testing.assert_allclose(b[0], a[0][perm], atol=1e-6)
    np.testing.assert_allclose(b[1], a[1][perm], atol=1e-6)
    for ga, gb in zip(a[2], b[2]):
        np.testing.assert_allclose(gb, ga, atol=1e-5)


def test_ragged_equals_fixed_length(rng):
    """Rows of length 5 inside a batch padded to 9 give what a batch of exactly 5 steps gives."""
    B, E, H = 6, 4, 4
    x = rng.normal(size=(B, 9, E)).astype(np.float32)
    x[:, 5:] = 99.0  # padding must never be read
    dirs = [params(rng, E, H, np.float32) for _ in range(2)]
    R = rng.normal(size=(B, 9, 2 * H)).astype(np.float32)
    R[:, 5:] = 0.0
    padded = run(x, np.full(B, 5, np.int32), dirs, True, lambda o: R)
    exact = run(np.ascontiguousarray(x[:, :5]), np.full(B, 5, np.int32), dirs, True,
                lambda o: np.ascontiguousarray(R[:, :5]))
    np.testing.assert_allclose(padded[0][:, :5], exact[0], atol=1e-6)
    assert np.all(padded[0][:, 5:] == 0) and np.all(padded[1][:, 5:] == 0)
    np.testing.assert_allclose(padded[1][:, :5], exact[1], atol=1e-6)
    for a, b in zip(padded[2], exact[2]):
        np.testing.assert_allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("bi", [False, True])
@pytest.mark.parametrize("par", [False, True])
def test_token_lookup_equals_gathered_input(rng, bi, par):
    from tinykd.nn.embedding import Lookup, embedding_backward

    B, T, V, E, H = 21, 9, 6, 5, 4  # 6 tokens over ~100 steps: every token repeats
    Et = rng.normal(size=(V, E)).astype(np.float32)
    ids = rng.integers(0, V, size=(B, T)).astype(np.int32)
    ids[:, 7:] = 0  # padding ids, never read beyond the lengths
    lengths = rng.integers(0, 8, B).astype(np.int32)
    lengths[:2] = [0, 7]
    dirs = [params(rng, E, H, np.float32) for _ in range(1 + bi)]
    R = rng.normal(size=(B, (1 + bi) * H)).astype(np.float32)
    ref_out, ref_dx, ref_g = run(Et[ids], lengths, dirs, False, lambda o: R, par, 2)
    got_out, got_dx, got_g = run(Lookup(Et, ids), lengths, dirs, False, lambda o: R, par, 2)
    np.testing.assert_allclose(got_out, ref_out, atol=1e-6)
    for a, b in zip(got_g, ref_g):
        np.testing.assert_allclose(a, b, atol=1e-5)
    dE_ref = np.zeros_like(Et)
    embedding_backward(ref_dx, ids, lengths, dE_ref)
    dE = np.zeros_like(Et)
    embedding_backward(got_dx, ids, lengths, dE)
    assert isinstance(got_dx, tuple)
    np.testing.assert_allclose(dE, dE_ref, atol=1e-5)


def reference_proba(net, ids, lengths):
    z, _ = net.forward(ids, lengths)
    return softmax(z.astype(np.float64))


@pytest.mark.parametrize("preset", list(PRESETS))
def test_scoring_path_matches_reference(rng, preset):
    V = 50
    net = StudentNet(make_config(preset), V, 3, seed=1)
    net.params[:] += rng.normal(0, 0.05, net.size).astype(np.float32)  # off the initial weights
    n, T = 70, 12
    ids = rng.integers(0, V, size=(n, T)).astype(np.int32)
    lengths = rng.integers(0, T + 1, n).astype(np.int32)
    lengths[:2] = [0, T]  # an empty answer and a full one
    ref = reference_proba(net, ids, lengths)
    for par in (False, True):
        got = proba(net, ids, lengths, parallel=par, parallel_score_rows=8)
        np.testing.assert_allclose(got, ref, atol=ATOL)
        small = proba(net, ids, lengths, parallel=par, score_batch=16)  # several batches, sorted by length
        np.testing.assert_allclose(small, ref, atol=ATOL)
    for i in (0, 1, 5):  # the one-response path
        np.testing.assert_allclose(proba(net, ids[i:i + 1], lengths[i:i + 1]), ref[i:i + 1], atol=ATOL)


def test_scorer_weights_are_read_only_and_a_new_scorer_follows_new_weights(rng):
    V = 30
    net = StudentNet(make_config("bathtub"), V, 3, seed=0)
    ids = rng.integers(0, V, size=(4, 10)).astype(np.int32)
    lengths = np.array([10, 7, 3, 1], np.int32)
    scorer = Scorer(net)
    before = scorer.predict_proba(ids, lengths)
    for name in ("emb.E", "rnn.fwd.W", "rnn.bwd.U", "out.b"):
        with pytest.raises(ValueError, match="read-only"):
            net.p[name].flat[0] += 0.5
    with pytest.raises(ValueError, match="read-only"):
        net.params[0] = 1.0
    assert not scorer.T.flags.writeable
    np.testing.assert_array_equal(scorer.predict_proba(ids, lengths), before)
    edited = net.copy()  # a copy thaws: train or edit it, then score it with a scorer of its own
    for name, where in [("emb.E", (ids[0, 0], 0)), ("rnn.fwd.W", (1, 2)), ("rnn.bwd.b", (5,)),
                        ("rnn.bwd.U", (0, 0)), ("out.b", (1,))]:
        edited.p[name][where] += 0.5
    ref = reference_proba(edited, ids, lengths)
    assert np.abs(ref - before).max() > 1e-3
    np.testing.assert_allclose(proba(edited, ids, lengths), ref, atol=ATOL)
    np.testing.assert_allclose(proba(edited, ids, lengths, jit="never"), ref, atol=ATOL)


def test_scoring_refuses_out_of_range_ids_and_lengths():
    net = StudentNet(make_config("7t"), 10, 2)
    for jit in ("always", "never"):
        with pytest.raises(IndexError):
            proba(net, np.array([[3, 10]], np.int32), np.array([2], np.int32), jit=jit)
        for bad in (3, -1):
            with pytest.raises(ValueError, match="lengths must be within 0..2"):
                proba(net, np.array([[3, 4]], np.int32), np.array([bad], np.int32), jit=jit)


def test_float64_network_uses_the_numpy_path(rng):
    """The kernels are float32: a float64 network is scored by the NumPy path, whatever ``jit`` says
    (to the float32 rounding of the probabilities)."""
    net = StudentNet(make_config("falling_weights"), 20, 3, dtype=np.float64)
    ids = rng.integers(0, 20, size=(3, 6)).astype(np.int32)
    lengths = np.array([6, 2, 0], np.int32)
    assert not Scorer(net.copy()).numba
    np.testing.assert_allclose(proba(net, ids, lengths), reference_proba(net, ids, lengths), rtol=0, atol=1e-7)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_numpy_scoring_path_matches_reference(rng, preset):
    """The NumPy path (reference time loop fed the table's rows): a scorer's first small jobs, ``jit="never"``
    and float64 networks. It agrees with the network's forward to 1e-6 on 60-token answers, in one batch,
    in batches of ``score_batch`` rows and for one answer."""
    V = 300
    net = StudentNet(make_config(preset), V, 4, seed=2)
    net.params[:] += rng.normal(0, 0.05, net.size).astype(np.float32)
    ids = rng.integers(0, V, size=(19, 60)).astype(np.int32)
    lengths = rng.integers(0, 61, 19).astype(np.int32)
    lengths[:2] = [0, 60]
    ref = reference_proba(net, ids, lengths)
    assert np.abs(ref - 1 / 4).max() > 1e-3  # not a flat answer
    np.testing.assert_allclose(proba(net, ids, lengths, jit="never"), ref, rtol=0, atol=1e-6)
    np.testing.assert_allclose(proba(net, ids, lengths, jit="never", score_batch=4), ref, rtol=0, atol=1e-6)
    for i in (0, 1, 3):
        np.testing.assert_allclose(proba(net, ids[i:i + 1], lengths[i:i + 1], jit="never"), ref[i:i + 1],
                                   rtol=0, atol=1e-6)
    np.testing.assert_allclose(proba(net, ids, lengths, jit="never"), proba(net, ids, lengths), rtol=0, atol=1e-6)


def test_jit_auto_decides_from_the_scorers_own_state():
    """Small first jobs stay on NumPy; a large job, or the (numba_after_calls+1)-th small one, uses Numba.
    Whether Numba already runs in the process does not count (the kernels' module is imported here)."""
    import tinykd.scoring._kernels  # noqa: F401

    net = StudentNet(make_config("7t"), 10, 2)
    st = Settings()
    sc = Scorer(net, st)
    small, large = np.array([60], np.int32), np.array([st.numba_min_tokens], np.int32)
    assert [sc._use_numba(small) for _ in range(st.numba_after_calls)] == [False] * st.numba_after_calls
    assert sc._use_numba(small)
    assert not Scorer(net, st)._use_numba(small)  # a new scorer starts its own count
    assert Scorer(net, st)._use_numba(large)
    assert not Scorer(net, st)._use_numba(large - 1)
    assert not Scorer(net, Settings(jit="never"))._use_numba(large * 100)
    assert Scorer(net, Settings(jit="always"))._use_numba(small)


def test_settings_from_env_and_bad_values(monkeypatch):
    monkeypatch.setenv("TINYKD_JIT", "never")
    assert Settings.from_env().jit == "never"
    for bad in (dict(jit="sometimes"), dict(parallel="maybe"), dict(score_batch=0)):
        with pytest.raises(ValueError):
            Settings(**bad)
