"""Why the student gave a score: each answer word's weight, by leaving it out (occlusion).

For an answer scored class c (the arg-max of its calibrated probabilities), the weight of its word j is

    weight_j = P_c(answer) − P_c(answer without word j)

in the **calibrated** probabilities (those ``tinykd score`` writes as ``p_<label>`` and ``confidence``):
+ means the word pushed the answer towards the score it got, − away from it. "Without word j" is the
encoded sequence with that one token removed, nothing else re-cut (a context is never left out: only
the answer's words are weighed). Why occlusion and not gradient × input:
docs/decisions/explanations.md (the measurements: ``benchmarks/explain_speed.py``).

The maths is the student's own forward — table ``E W + b`` per token, the LSTM time loop, pooling and the
dense head — computed in **float64** from the stored float32 weights, so that the page's JavaScript
(``explain`` in ``tinykd/export/web/scorer.js``, the same float64 maths) gives the same weights to 1e-6;
its probabilities differ from the float32 scorer's by about 1e-6, so in a near-tie of two classes the class
explained may differ from ``pred``.

Cost: an answer of n tokens needs n occluded runs. A run shares every state before the left-out word with
the full run (and, for the reversed half of a BiLSTM, every state after it), so each occluded run starts from
the full run's saved state and reads only the rest: about n²/2 LSTM steps per direction, batched over
many answers as whole-batch NumPy steps.
"""
from __future__ import annotations

import numpy as np

from tinykd.errors import OptionError
from tinykd.nn.dense import ACTIVATIONS, dense_backward, head_logits, softmax
from tinykd.nn.lstm import bilstm_backward, bilstm_forward, lstm_backward, lstm_forward
from tinykd.nn.pooling import global_max_pool_backward, global_max_pool_forward
from tinykd.scoring.text import SEP, as_list, tokenize
from tinykd.settings import blas_threads

#: occluded runs per NumPy batch (bounds the saved states: about this many × max_len × H floats)
BATCH_ROWS = 4096


def check_top(top):
    """``top``: None (every word) or a whole number >= 1."""
    if top is not None and (isinstance(top, bool) or not hasattr(top, "__index__") or int(top) < 1):
        raise OptionError("top", f"{{opt}} must be None or a whole number >= 1, got {top!r}")
    return None if top is None else int(top)


def explain(model, texts, contexts=None, top=None, items=None):
    """For each text, its words and their weights: ``[(word, weight), ...]`` in text order.

    ``model``: a :class:`~tinykd.scoring.student.Student`, or a :class:`~tinykd.scoring.student.Bundle`
    with ``items`` (each row explained by its item's student). ``word`` is the student's token (lower-cased,
    as :func:`tinykd.scoring.text.tokenize` cuts it; unknown words included), ``weight`` the calibrated
    probability of the predicted class with the word minus without it (+: the word pushed towards the score
    given). ``top=k``: only the k words of largest ``|weight|`` (the earlier word first in a tie), still in
    text order. An empty answer gives ``[]``; words past the model's ``max_len`` are not read, so not listed.
    """
    top = check_top(top)
    texts = as_list(texts, "texts")
    if contexts is not None and len(as_list(contexts, "contexts")) != len(texts):
        raise ValueError(f"got {len(texts)} texts but {len(as_list(contexts, 'contexts'))} contexts")
    if not hasattr(model, "students"):
        if items is not None:
            raise ValueError("items= is for a per-item bundle; this model is one student")
        return _explain_student(model, texts, contexts, top)
    if items is None:
        raise ValueError("this model holds per-item students; pass items= (one per text)")
    out = [None] * len(texts)
    for it, idx in model._groups(items).items():
        ctx = None if contexts is None else [contexts[i] for i in idx]
        for i, r in zip(idx, _explain_student(model.students[it], [texts[i] for i in idx], ctx, top)):
            out[i] = r
    return out


def _explain_student(st, texts, contexts, top):
    ids, lengths = st.encode(texts, contexts)
    scorer = st.scorer  # checks the weights (finite, bounded) and freezes them
    starts = np.zeros(len(texts), np.int64)
    if st.uses_context:  # the answer follows the first SEP (the context is cut before it ever is)
        starts[:] = np.argmax(ids == SEP, axis=1) + 1
    weights = [None] * len(texts)
    order = np.argsort(lengths, kind="stable")
    s = 0
    # small products: a second BLAS thread only waits, and fights a busy machine's cores (the switch costs 0.5 ms)
    with blas_threads(1 if len(texts) > 8 else None):
        while s < len(order):  # batches of about BATCH_ROWS occluded runs, answers of similar length together
            e, rows = s, 0
            while e < len(order) and (e == s or rows + lengths[order[e]] <= BATCH_ROWS):
                rows += int(lengths[order[e]])
                e += 1
            idx = order[s:e]
            for i, w in zip(idx, occlusion_weights(st, ids[idx], lengths[idx], starts[idx], scorer.temperature)):
                weights[i] = w
            s = e
    out = []
    for k, text in enumerate(texts):
        words = tokenize(text)[:len(weights[k])]
        pairs = list(zip(words, weights[k].tolist()))
        if top is not None and len(pairs) > top:
            keep = np.sort(np.argsort(-np.abs(weights[k]), kind="stable")[:top])
            pairs = [pairs[j] for j in keep]
        out.append(pairs)
    return out


def _float64_net(st):
    """The network's arrays as float64 (the maths of the page's JavaScript explanation)."""
    p, cfg = st.net.p, st.net.config
    dirs = ("fwd", "bwd") if cfg["rnn"] == "bilstm" else ("fwd",)
    f = {k: np.asarray(v, np.float64) for k, v in p.items() if not k.startswith("emb.")}
    return p["emb.E"], dirs, f


def occlusion_weights(st, ids, lengths, starts, temperature):
    """Per row a float64 array: for each answer token (positions ``starts[b]`` … ``lengths[b]``−1 of ``ids``)
    the calibrated probability of the row's predicted class with the token minus without it."""
    E, dirs, f = _float64_net(st)
    lengths = np.asarray(lengths, np.int64)
    B = len(lengths)
    u, local = np.unique(ids, return_inverse=True)
    local = local.reshape(ids.shape)
    E64 = np.asarray(E[u], np.float64)
    occ_row = np.repeat(np.arange(B), np.maximum(lengths - starts, 0))  # one occluded run per answer token
    occ_pos = np.concatenate([np.arange(starts[b], lengths[b]) for b in range(B)] + [np.zeros(0, np.int64)])
    full, occ = [], []
    for d, name in enumerate(dirs):
        X = E64 @ f[f"rnn.{name}.W"] + f[f"rnn.{name}.b"]  # the table rows of this batch's tokens
        seq = _reading_order(local, lengths, reverse=d == 1)
        k = lengths[occ_row] - 1 - occ_pos if d == 1 else occ_pos  # the left-out token's reading step
        fh, oh = _direction(X, seq, lengths, f[f"rnn.{name}.U"], st.net.config["pooling"] == "max", occ_row, k)
        full.append(fh)
        occ.append(oh)
    pf = _proba(st, f, np.concatenate(full, axis=1), temperature)
    po = _proba(st, f, np.concatenate(occ, axis=1), temperature)
    c = pf.argmax(axis=1)
    w = pf[occ_row, c[occ_row]] - po[np.arange(len(occ_row)), c[occ_row]]
    return np.split(w, np.cumsum(np.maximum(lengths - starts, 0))[:-1])


def _reading_order(local, lengths, reverse):
    """(B, L) local ids in the order a direction reads them (each row reversed within its length)."""
    if not reverse:
        return local
    out = np.zeros_like(local)
    for b, n in enumerate(lengths.tolist()):
        out[b, :n] = local[b, :n][::-1]
    return out


def _direction(X, seq, lengths, U, pool_max, occ_row, k):
    """One direction: the full runs' features (B, H), then those of the occluded runs (R, H), each started
    from the full run's state after its first ``k`` reading steps and reading the steps after step k."""
    B, H = len(lengths), U.shape[0]
    L = seq.shape[1]
    zero = np.zeros((B, H))
    hs, cs, ms = _scan(X, seq, lengths, U, zero, zero, np.full((B, H), -np.inf), keep=True)
    full = ms[np.arange(B), lengths] if pool_max else hs[np.arange(B), lengths]
    R = len(occ_row)
    rem = lengths[occ_row] - 1 - k
    cols = np.minimum(k[:, None] + 1 + np.arange(max(1, L - 1))[None, :], L - 1)
    rest = seq[occ_row[:, None], cols] if R else np.zeros((0, 1), np.int64)
    h, _, m = _scan(X, rest, rem, U, hs[occ_row, k], cs[occ_row, k], ms[occ_row, k], keep=False)
    occ = m if pool_max else h
    for a in (full, occ):  # max over no steps read (an empty row): zeros, as the scorer gives
        a[np.isneginf(a)] = 0.0
    return full, occ


def _scan(X, seq, lengths, U, h0, c0, m0, keep):
    """The LSTM time loop (gates i, f, g, o) from states ``h0, c0`` (and running max ``m0``) over the local
    ids ``seq`` (rows read left to right, ``lengths`` steps each). ``keep``: also every state, (B, L+1, H)
    with index 0 the start; else the final ``(h, c, m)``."""
    B, H = len(lengths), U.shape[0]
    order = np.argsort(-lengths, kind="stable")  # longest first: the rows still running are a prefix
    slen = lengths[order]
    kmax = int(slen[0]) if B else 0
    h, c, m = h0[order].copy(), c0[order].copy(), m0[order].copy()
    if keep:
        hs, cs, ms = (np.zeros((B, seq.shape[1] + 1, H)) for _ in range(3))
        hs[order, 0], cs[order, 0], ms[order, 0] = h, c, m
    for t in range(kmax):
        n = int(np.count_nonzero(slen > t))
        rows = order[:n]
        z = X[seq[rows, t]] + h[:n] @ U
        s = 0.5 * np.tanh(0.5 * z) + 0.5
        c[:n] = s[:, H:2 * H] * c[:n] + s[:, :H] * np.tanh(z[:, 2 * H:3 * H])
        h[:n] = s[:, 3 * H:] * np.tanh(c[:n])
        np.maximum(m[:n], h[:n], out=m[:n])
        if keep:  # a finished row keeps its last state at every later index
            hs[order, t + 1], cs[order, t + 1], ms[order, t + 1] = h, c, m
    if keep:
        return hs, cs, ms
    out = [np.empty_like(a) for a in (h, c, m)]
    for o, a in zip(out, (h, c, m)):
        o[order] = a
    return out


def _proba(st, f, feat, temperature):
    """Calibrated probabilities (float64) of features through the dense head."""
    cfg = st.net.config
    hidden = (f["hidden.W"], f["hidden.b"]) if cfg["dense_units"] else None
    z = head_logits(feat, f["out.W"], f["out.b"], hidden=hidden, activation=cfg["dense_activation"])
    return softmax(z * (1.0 / temperature))


def gradient_times_input(st, texts, contexts=None):
    """The alternative measured against occlusion (docs/decisions/explanations.md): per text, each answer
    token's ``x_t · ∂P_c/∂x_t`` (x_t its embedding, P_c the calibrated probability of the predicted class)
    through the network's hand-written backward pass (:mod:`tinykd.nn.lstm`, float32). Not used for scoring."""
    ids, lengths = st.encode(texts, contexts)
    net, cfg, p = st.net, st.net.config, st.net.p
    inv_t = np.float32(1.0 / st.temperature)
    x = p["emb.E"][ids]
    seq = cfg["pooling"] == "max"
    rnn = [(p[f"rnn.{d}.W"], p[f"rnn.{d}.U"], p[f"rnn.{d}.b"]) for d in ("fwd", "bwd") if f"rnn.{d}.W" in p]
    if len(rnn) == 2:
        h, cache = bilstm_forward(x, lengths, *rnn, return_sequences=seq)
    else:
        h, cache = lstm_forward(x, lengths, *rnn[0], return_sequences=seq)
    if seq:
        h, pool = global_max_pool_forward(h, lengths)
    hidden = h
    if cfg["dense_units"]:
        a, act_cache = ACTIVATIONS[cfg["dense_activation"]][0](hidden @ p["hidden.W"] + p["hidden.b"])
        hidden = a
    z = hidden @ p["out.W"] + p["out.b"]
    q = softmax(z.astype(np.float64) * inv_t)
    c = q.argmax(axis=1)
    dz = (inv_t * q[np.arange(len(c)), c][:, None] * (np.eye(q.shape[1])[c] - q)).astype(np.float32)
    scratch = {k: np.zeros_like(v) for k, v in p.items()}
    dh = dense_backward(dz, (hidden, p["out.W"]), scratch["out.W"], scratch["out.b"])
    if cfg["dense_units"]:
        dh = ACTIVATIONS[cfg["dense_activation"]][1](dh, act_cache)
        dh = dense_backward(dh, (h, p["hidden.W"]), scratch["hidden.W"], scratch["hidden.b"])
    if seq:
        dh = global_max_pool_backward(dh, pool)
    if len(rnn) == 2:
        g = [[scratch[f"rnn.{d}.{w}"] for w in "WUb"] for d in ("fwd", "bwd")]
        dx = bilstm_backward(dh, cache, *g)
    else:
        dx = lstm_backward(dh, cache, *(scratch[f"rnn.fwd.{w}"] for w in "WUb"))
    gxi = (dx * x).sum(axis=2)
    starts = np.argmax(ids == SEP, axis=1) + 1 if st.uses_context else np.zeros(len(lengths), np.int64)
    return [gxi[b, starts[b]:lengths[b]].astype(np.float64) for b in range(len(lengths))]
