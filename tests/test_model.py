"""The whole student network: gradients with the KD loss, padding invariance, loss identities, Adam."""
import numpy as np
import pytest

from tinykd.train.losses import cross_entropy, kd_loss, log_softmax, soft_cross_entropy
from tinykd.nn.network import PRESETS, StudentNet, count_params, make_config
from tinykd.train.optim import Adam
from tinykd.scoring.text import OOV, PAD, SEP, Vocabulary, tokenize


def batch(rng, V=25, B=4, L=7, lengths=(7, 3, 1, 5)):
    lengths = np.array(lengths, np.int32)
    ids = rng.integers(3, V, size=(B, L)).astype(np.int32)
    for b in range(B):
        ids[b, lengths[b]:] = PAD
    return ids, lengths


@pytest.mark.parametrize("preset", list(PRESETS))
def test_network_gradient_with_kd_loss(preset):
    """Finite differences (float64) through the whole net with λ > 0 and T ≠ 1, penalties included."""
    rng = np.random.default_rng(3)
    cfg = make_config(preset, dropout=0.0, embed_dim=6, units=4,
                      dense_units=(5 if PRESETS[preset]["dense_units"] else 0))
    net = StudentNet(cfg, 25, 3, seed=1, dtype=np.float64)
    ids, lengths = batch(rng)
    y = np.array([0, 2, 1, 2])
    teacher = rng.dirichlet(np.ones(3), size=4)

    def loss():
        z, cache = net.forward(ids, lengths)
        value, dz, _ = kd_loss(z, y, teacher, lam=0.7, temperature=2.5)
        return value + net.penalty(), dz, cache

    _, dz, cache = loss()
    net.backward(dz, cache)
    analytic = net.grads.copy()
    idx = rng.choice(net.size, size=min(net.size, 250), replace=False)
    numeric = np.empty(len(idx))
    for j, k in enumerate(idx):
        old = net.params[k]
        net.params[k] = old + 1e-6
        lp = loss()[0]
        net.params[k] = old - 1e-6
        lm = loss()[0]
        net.params[k] = old
        numeric[j] = (lp - lm) / 2e-6
    err = np.abs(analytic[idx] - numeric).max() / max(1e-3, np.abs(numeric).max())
    assert err < 1e-5, f"{preset}: relative gradient error {err:.2e}"


@pytest.mark.parametrize("preset", ["7t", "bathtub"])
def test_padding_invariance(preset):
    """The same rows padded to different widths give the same logits and the same gradients."""
    rng = np.random.default_rng(0)
    net = StudentNet(make_config(preset, dropout=0.0), 30, 4, seed=2)
    ids, lengths = batch(rng, V=30)
    wide = np.zeros((4, 20), np.int32)
    wide[:, :7] = ids
    for b in range(4):  # junk (not PAD) after each row's end must not matter either
        wide[b, lengths[b]:] = rng.integers(3, 30, size=20 - lengths[b])
    y = np.array([0, 1, 2, 3])
    results = []
    for arr in (ids, wide):
        z, cache = net.forward(arr, lengths)
        _, dz, _ = kd_loss(z, y)
        net.backward(dz, cache)
        results.append((z.copy(), net.grads.copy()))
    np.testing.assert_allclose(results[0][0], results[1][0], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(results[0][1], results[1][1], rtol=1e-5, atol=1e-6)


def test_empty_answer_is_scored():
    net = StudentNet(make_config("bathtub"), 10, 3, seed=0)
    z, _ = net.forward(np.zeros((2, 1), np.int32), np.array([0, 0], np.int32))
    assert np.isfinite(z).all() and np.allclose(z[0], z[1])


def test_lambda_zero_is_plain_cross_entropy():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(6, 4))
    y = rng.integers(0, 4, 6)
    teacher = rng.dirichlet(np.ones(4), 6)
    l0, g0, _ = kd_loss(z, y, teacher, lam=0.0, temperature=3.0)
    lce, gce = cross_entropy(z, y)
    assert l0 == lce
    np.testing.assert_array_equal(g0, gce)


def test_temperature_one_is_eq4_exactly():
    """T = 1: L = CE(y, q) + λ CE(p, q), with gradient (q − y) + λ (q − p), over B."""
    rng = np.random.default_rng(2)
    z = rng.normal(size=(5, 3))
    y = rng.integers(0, 3, 5)
    p = rng.dirichlet(np.ones(3), 5)
    lam = 0.6
    loss, grad, parts = kd_loss(z, y, p, lam=lam, temperature=1.0)
    q = np.exp(log_softmax(z))
    expected = np.mean(-np.log(q[np.arange(5), y]) + lam * -(p * np.log(q)).sum(1))
    assert loss == pytest.approx(expected, rel=1e-12)
    onehot = np.eye(3)[y]
    np.testing.assert_allclose(grad, ((q - onehot) + lam * (q - p)) / 5, atol=1e-14)
    assert parts["soft"] == pytest.approx(lam * soft_cross_entropy(z, p)[0])


def test_temperature_scaling_and_logits_input():
    rng = np.random.default_rng(5)
    z = rng.normal(size=(4, 3))
    t_logits = rng.normal(size=(4, 3)) * 3
    p = np.exp(log_softmax(t_logits))
    T = 4.0
    l_logit, g_logit, _ = kd_loss(z, None, t_logits, lam=1.0, temperature=T, from_logits=True)
    l_prob, g_prob, _ = kd_loss(z, None, p, lam=1.0, temperature=T)
    assert l_logit == pytest.approx(l_prob, rel=1e-9)
    np.testing.assert_allclose(g_logit, g_prob, atol=1e-12)
    pT = np.exp(log_softmax(t_logits / T))
    expected = T * T * np.mean(-(pT * log_softmax(z / T)).sum(1))
    assert l_logit == pytest.approx(expected, rel=1e-12)


def test_ordinal_term_by_hand_and_by_finite_differences():
    """μ/B Σ (e_q − e_p)², classes at k/(K−1), on the soft rows only; its gradient against central
    differences."""
    rng = np.random.default_rng(8)
    z = rng.normal(size=(5, 4))
    y = rng.integers(0, 4, 5)
    p = rng.dirichlet(np.ones(4), 5)
    sm = np.array([True, True, False, True, True])
    mu = 0.8
    kw = dict(lam=2.0, soft="mse", soft_mask=sm)
    loss, grad, parts = kd_loss(z, y, p, ordinal=mu, **kw)
    base, grad0, parts0 = kd_loss(z, y, p, **kw)
    s = np.array([0.0, 1 / 3, 2 / 3, 1.0])
    gap = np.exp(log_softmax(z)) @ s - p @ s
    assert parts["ordinal"] == pytest.approx(mu * (gap[sm] ** 2).sum() / 5, rel=1e-12)
    assert parts0["ordinal"] == 0.0 and loss == pytest.approx(base + parts["ordinal"], rel=1e-12)
    assert (parts["hard"], parts["soft"]) == (parts0["hard"], parts0["soft"])
    numeric = np.zeros_like(z)
    for i in range(5):
        for k in range(4):
            d = np.zeros_like(z)
            d[i, k] = 1e-6
            up, down = (kd_loss(z + e, y, p, ordinal=mu, **kw)[0] for e in (d, -d))
            numeric[i, k] = (up - down) / 2e-6
    np.testing.assert_allclose(grad, numeric, atol=1e-8)
    np.testing.assert_allclose((grad - grad0)[~sm], 0.0, atol=1e-15)
    # a confident 0 where the teacher says the top score costs μ/B; one at the teacher's own score nothing
    far = kd_loss(np.array([[9.0, 0, 0, 0]]), None, np.array([[0, 0, 0, 1.0]]), lam=0.0, ordinal=mu)[2]["ordinal"]
    near = kd_loss(np.array([[0, 0, 0, 9.0]]), None, np.array([[0, 0, 0, 1.0]]), lam=0.0, ordinal=mu)[2]["ordinal"]
    assert far == pytest.approx(mu, rel=1e-3) and near < 1e-6
    with pytest.raises(ValueError, match="ordinal must be >= 0"):
        kd_loss(z, y, p, ordinal=-1.0)


def test_masks_drop_rows_from_each_term():
    rng = np.random.default_rng(6)
    z = rng.normal(size=(4, 3))
    y = np.array([0, 1, 2, 0])
    p = rng.dirichlet(np.ones(3), 4)
    hm = np.array([True, True, False, False])
    loss, _, parts = kd_loss(z, y, p, lam=0.5, hard_mask=hm)
    q = np.exp(log_softmax(z))
    assert parts["hard"] == pytest.approx(-np.log(q[[0, 1], [0, 1]]).sum() / 4)
    assert parts["soft"] == pytest.approx(0.5 * -(p * np.log(q)).sum() / 4)


def test_adam_matches_the_formula():
    theta = np.array([1.0, -2.0, 0.5], np.float32)
    opt = Adam(theta, lr=0.1, eps=1e-7)
    ref = theta.astype(np.float64).copy()
    m = np.zeros(3)
    v = np.zeros(3)
    for t, g in enumerate([np.array([0.3, -1.0, 2.0]), np.array([0.1, 0.2, -0.5])], start=1):
        opt.step(g.astype(np.float32))
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        ref -= 0.1 * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-7)
    np.testing.assert_allclose(theta, ref, rtol=1e-5)


def test_adam_clips_the_global_norm():
    theta = np.zeros(2, np.float32)
    opt = Adam(theta, lr=0.1, clip_norm=1.0)
    norm = opt.step(np.array([30.0, 40.0], np.float32))
    assert norm == pytest.approx(50.0)
    np.testing.assert_allclose(opt.m, 0.1 * np.array([0.6, 0.8]), rtol=1e-6)


def test_parameter_counts_follow_the_layout():
    cfg = make_config("7t")
    # Emb 1000x64 + LSTM 4*64*(64+64+1) + Dense 64x32+32 + out 32x4+4
    assert count_params(cfg, 1000, 4) == 64000 + 33024 + 2080 + 132
    cfg = make_config("bathtub")
    assert count_params(cfg, 1000, 4) == 64000 + 2 * 4 * 32 * (64 + 32 + 1) + (64 * 16 + 16) + (16 * 4 + 4)
    for preset in PRESETS:
        n = count_params(make_config(preset), make_config(preset)["max_vocab"], 4)
        assert 20_000 <= n <= 110_000, (preset, n)


def test_flat_buffer_views_share_memory():
    net = StudentNet(make_config("falling_weights"), 20, 3)
    net.p["out.b"][:] = 7.0
    assert (net.params[-3:] == 7.0).all()
    assert sum(v.size for v in net.p.values()) == net.size == net.params.size


def test_unknown_preset_and_keys_are_refused():
    with pytest.raises(ValueError, match="unknown preset"):
        make_config("8t")
    with pytest.raises(ValueError, match="unknown config keys"):
        make_config("7t", hidden_units=4)


# ------------------------------------------------------------------------------ text
def test_tokenizer_and_vocabulary():
    assert tokenize("The Acid-rain, it's 2x!") == ["the", "acid", "rain", "it", "s", "2x"]
    assert tokenize(float("nan")) == [] and tokenize(None) == []
    vocab = Vocabulary(max_size=6, min_count=1).fit(["b a a", "c a b", "d"])
    assert vocab.tokens == ["<pad>", "<oov>", "<sep>", "a", "b", "c"]  # a:3 b:2 then c before d (tie, alphabetical)
    ids, lengths = vocab.encode(["a d c", "", "b"])
    np.testing.assert_array_equal(ids, [[3, OOV, 5], [PAD, PAD, PAD], [4, PAD, PAD]])
    np.testing.assert_array_equal(lengths, [3, 0, 1])
    assert ids.dtype == np.int32 and lengths.dtype == np.int32


def test_vocabulary_min_count_and_context():
    vocab = Vocabulary(max_size=100, min_count=2, max_len=6).fit(["x x y", "z"], contexts=["q q", "q q"])
    assert vocab.tokens == ["<pad>", "<oov>", "<sep>", "q", "x"]
    ids, lengths = vocab.encode(["x y"], contexts=["q q"])
    np.testing.assert_array_equal(ids[0], [3, 3, SEP, 4, OOV])
    long_ids, long_len = vocab.encode(["x " * 50], contexts=["q " * 20])
    assert long_len[0] == 6 and list(long_ids[0][:3]) == [3, 3, 3] and long_ids[0][3] == SEP


def test_vocabulary_round_trip():
    vocab = Vocabulary(max_size=50, max_len=9).fit(["alpha beta", "beta gamma"])
    again = Vocabulary.from_tokens(vocab.tokens, vocab.to_config())
    a = vocab.encode(["gamma alpha delta"])
    b = again.encode(["gamma alpha delta"])
    np.testing.assert_array_equal(a[0], b[0])
    assert again.max_len == 9


def test_mse_soft_term_on_centred_logits_value_and_gradient():
    """soft="mse": λ/(B K) Σ ‖z̄ − t̄‖² with t = log p, invariant to a constant added to a row's
    logits, zero when the student's logits are the teacher's plus constants; gradient numerically."""
    from conftest import numgrad

    rng = np.random.default_rng(7)
    B, K, lam = 5, 4, 0.8
    z, t = rng.normal(size=(B, K)), rng.normal(size=(B, K)) * 2
    p = np.exp(log_softmax(t))
    sm = np.array([True, True, False, True, True])
    loss, grad, parts = kd_loss(z, None, p, lam=lam, soft="mse", soft_mask=sm)
    zc, tc = z - z.mean(1, keepdims=True), t - t.mean(1, keepdims=True)
    assert parts["soft"] == pytest.approx(lam * ((zc - tc)[sm] ** 2).sum() / (B * K), rel=1e-12)
    zz = z.copy()
    np.testing.assert_allclose(grad, numgrad(lambda: kd_loss(zz, None, p, lam=lam, soft="mse", soft_mask=sm)[0], zz),
                               atol=1e-7)
    assert grad[2].tolist() == [0.0] * K
    assert kd_loss(z + rng.normal(size=(B, 1)), None, p, lam=lam, soft="mse", soft_mask=sm)[0] == pytest.approx(loss)
    assert kd_loss(t + 3.0, None, p, lam=lam, soft="mse")[0] == pytest.approx(0.0, abs=1e-12)
    y = rng.integers(0, K, B)
    both = kd_loss(z, y, p, lam=lam, soft="mse")
    assert both[0] == pytest.approx(cross_entropy(z, y)[0] + kd_loss(z, None, p, lam=lam, soft="mse")[0])
    with pytest.raises(ValueError, match="soft must be one of"):
        kd_loss(z, y, p, soft="kl")


@pytest.mark.parametrize("soft", ["ce", "mse"])
def test_row_weights_scale_each_row_and_match_repeated_rows(soft):
    """weights: L = 1/B Σ w_b [row b's terms]; the gradient numerically; all ones is exactly no weights; a row of
    weight 2 in a batch of B is that row twice in a batch of B + 1, rescaled by (B + 1) / B."""
    from conftest import numgrad

    rng = np.random.default_rng(11)
    B, K = 5, 3
    z, p = rng.normal(size=(B, K)), np.exp(log_softmax(rng.normal(size=(B, K)) * 2))
    y, hm = rng.integers(0, K, B), np.array([True, False, True, False, False])
    w = np.array([2.0, 0.5, 1.0, 3.0, 0.0])
    kw = dict(lam=0.7, temperature=2.0, hard_mask=hm, soft=soft, ordinal=0.3)
    loss, grad, parts = kd_loss(z, y, p, weights=w, **kw)
    each = [kd_loss(z[b:b + 1], y[b:b + 1], p[b:b + 1], **{**kw, "hard_mask": hm[b:b + 1]}) for b in range(B)]
    assert loss == pytest.approx(sum(w[b] * each[b][0] for b in range(B)) / B, rel=1e-12)
    np.testing.assert_allclose(grad, np.stack([w[b] * each[b][1][0] for b in range(B)]) / B, rtol=1e-12, atol=1e-15)
    zz = z.copy()
    np.testing.assert_allclose(grad, numgrad(lambda: kd_loss(zz, y, p, weights=w, **kw)[0], zz), atol=1e-7)
    plain = kd_loss(z, y, p, **kw)
    ones = kd_loss(z, y, p, weights=np.ones(B), **kw)
    assert ones[0] == plain[0] and np.array_equal(ones[1], plain[1])
    w2 = np.array([2.0, 1, 1, 1, 1])
    r = [0, 0, 1, 2, 3, 4]
    rep = kd_loss(z[r], y[r], p[r], **{**kw, "hard_mask": hm[r]})[0]
    assert kd_loss(z, y, p, weights=w2, **kw)[0] == pytest.approx(rep * (B + 1) / B, rel=1e-12)
    with pytest.raises(ValueError, match="weights must be 5 finite values"):
        kd_loss(z, y, p, weights=-w, **kw)


@pytest.mark.parametrize("n_classes", [2, 4, 10])
def test_presets_within_the_papers_budget(n_classes):
    """Every preset, at its full vocabulary, has 0.02M–0.1M parameters (the paper's students); ``wide`` moves
    ``bathtub``'s parameters from the embedding to the BiLSTM (docs/decisions/student-wide.md)."""
    sizes = {pr: count_params(make_config(pr), PRESETS[pr]["max_vocab"], n_classes) for pr in PRESETS}
    assert all(20_000 <= n <= 100_000 for n in sizes.values()), sizes
    wide, bathtub = (StudentNet(make_config(pr), 1000, 4) for pr in ("wide", "bathtub"))
    part = {pr: {layer: sum(v.size for k, v in net.p.items() if k.startswith(layer)) for layer in ("emb.", "rnn.")}
            for pr, net in (("wide", wide), ("bathtub", bathtub))}
    assert part == {"wide": {"emb.": 32_000, "rnn.": 31_104}, "bathtub": {"emb.": 64_000, "rnn.": 24_832}}
    assert wide.size == 64_724 < bathtub.size == 89_940
