/* tinykd scorer for the browser: hand-written, no dependencies, no network.
 *
 * The same maths as tinykd's Python scorer (tinykd/scoring/):
 *   text -> tokens (tinykd.scoring.text.tokenize: Python's str.lower, then the maximal runs of Python's \w,
 *           read from the Unicode tables tinykd export writes into this file: never the browser's own)
 *        -> ids (a word outside the vocabulary: its alias's id, else OOV = 1; with a context:
 *                context + [SEP = 2] + answer, cut to max_len)
 *        -> embedding -> LSTM | BiLSTM (gates i, f, g, o) -> last state | max over the real steps
 *        -> [dense + relu | selu] -> dense -> softmax(logits / T)
 * The weights are Float32Arrays decoded from model.js (var TINYKD_MODEL, written by
 * `tinykd export MODEL --web DIR`).
 *
 * API (window.tinykd): tokenize(text) (= words(lower(text))), lower(text), words(text), load(spec) -> models,
 * encode(model, text, context), probabilities(model, ids), score(model, text, context) -> {pred, label, proba, confidence,
 * needs_review}, explain(model, text, context) -> [[word, weight], ...] (tinykd.scoring.explain: each answer word,
 * in text order, with the calibrated probability of the predicted class with it minus without it; computed in
 * float64 as Python computes it, equal to 1e-6). The page itself (index.html) has its own script.
 */
(function (global) {
  "use strict";
  var PAD = 0, OOV = 1, SEP = 2;
  var SELU_LAMBDA = 1.0507009873554805, SELU_ALPHA = 1.6732632423543772;
  // tinykd.export.page.unicode_tables(): how the exporting Python reads each code point (JSON, filled in by export)
  var UNICODE = /*{{unicode_tables}}*/null, T = null;

  function starts(runs) { // gaps and lengths -> sorted run boundaries (a code point is inside after an odd number)
    var b = new Int32Array(runs.length), at = 0;
    for (var i = 0; i < runs.length; i++) b[i] = at += runs[i];
    return b;
  }

  function tables() {
    if (T) return T;
    if (!UNICODE) throw new Error("scorer.js has no Unicode tables: write the page with tinykd export --web");
    var lower = new Map(), k;
    UNICODE.lower.forEach(function (r) { // [start, count, step, shift]
      for (k = 0; k < r[1]; k++) lower.set(r[0] + k * r[2], String.fromCodePoint(r[0] + k * r[2] + r[3]));
    });
    UNICODE.lower_long.forEach(function (r) { lower.set(r[0], r[1]); });
    T = {word: starts(UNICODE.word), ignorable: starts(UNICODE.ignorable), cased: starts(UNICODE.cased), lower: lower};
    return T;
  }

  function inside(bounds, cp) { // the number of boundaries <= cp is odd
    var lo = 0, hi = bounds.length;
    while (lo < hi) {
      var mid = (lo + hi) >> 1;
      if (bounds[mid] <= cp) lo = mid + 1; else hi = mid;
    }
    return (lo & 1) === 1;
  }

  // Python's str.lower: Σ is ς after a cased code point (ignorables skipped) unless one follows it
  function finalSigma(t, cps, i) {
    var j = i - 1;
    while (j >= 0 && inside(t.ignorable, cps[j])) j--;
    if (j < 0 || !inside(t.cased, cps[j])) return false;
    for (j = i + 1; j < cps.length && inside(t.ignorable, cps[j]); j++);
    return j === cps.length || !inside(t.cased, cps[j]);
  }

  function lower(text) {
    var t = tables(), cps = Array.from(String(text), function (ch) { return ch.codePointAt(0); });
    var out = new Array(cps.length);
    for (var i = 0; i < cps.length; i++) {
      var cp = cps[i], low = cp === 0x3A3 ? (finalSigma(t, cps, i) ? "\u03C2" : "\u03C3") : t.lower.get(cp);
      out[i] = low === undefined ? String.fromCodePoint(cp) : low;
    }
    return out.join("");
  }

  function words(text) { // the maximal runs of Python's \w (str.isalnum() or "_")
    var t = tables(), s = String(text), out = [], start = -1, i = 0;
    while (i < s.length) {
      var cp = s.codePointAt(i);
      if (inside(t.word, cp)) { if (start < 0) start = i; }
      else if (start >= 0) { out.push(s.slice(start, i)); start = -1; }
      i += cp > 0xFFFF ? 2 : 1;
    }
    if (start >= 0) out.push(s.slice(start));
    return out;
  }

  function tokenize(text) {
    if (text === null || text === undefined) return [];
    return words(lower(text));
  }

  function decode(w) {
    var bin = atob(w.b64), n = bin.length, bytes = new Uint8Array(n);
    for (var i = 0; i < n; i++) bytes[i] = bin.charCodeAt(i);
    var view = new DataView(bytes.buffer), out = new Float32Array(n / 4);
    for (var k = 0; k < out.length; k++) out[k] = view.getFloat32(4 * k, true);
    return out;
  }

  function loadOne(s) {
    var cfg = s.config, W = {}, name;
    for (name in s.weights) W[name] = decode(s.weights[name]);
    var index = new Map();
    for (var i = 0; i < s.tokens.length; i++) index.set(s.tokens[i], i);
    for (var a in s.aliases || {}) if (Object.prototype.hasOwnProperty.call(s.aliases, a)) index.set(a, s.aliases[a]);
    var dirs = cfg.rnn === "bilstm" ? ["fwd", "bwd"] : ["fwd"];
    var m = {
      item: s.item, classes: s.classes, temperature: s.temperature, review_below: s.review_below,
      uses_context: s.uses_context, max_len: s.tokenizer.max_len, index: index, V: s.tokens.length,
      Ed: cfg.embed_dim, H: cfg.units, pool_max: cfg.pooling === "max", dense: cfg.dense_units,
      act: cfg.dense_activation, E: W["emb.E"], dirs: [], hW: W["hidden.W"], hb: W["hidden.b"],
      oW: W["out.W"], ob: W["out.b"], K: s.classes.length
    };
    for (var d = 0; d < dirs.length; d++) {
      m.dirs.push({W: W["rnn." + dirs[d] + ".W"], U: W["rnn." + dirs[d] + ".U"], b: W["rnn." + dirs[d] + ".b"],
                   reverse: d === 1, table: new Float32Array(m.V * 4 * m.H), done: new Uint8Array(m.V)});
    }
    return m;
  }

  function load(spec) {
    return spec.items.map(loadOne);
  }

  function ids(m, text) {
    var toks = tokenize(text), out = new Array(toks.length);
    for (var i = 0; i < toks.length; i++) {
      var v = m.index.get(toks[i]);
      out[i] = v === undefined ? OOV : v;
    }
    return out;
  }

  function encode(m, text, context) {
    var ans = ids(m, text), L = m.max_len;
    if (!m.uses_context) return ans.slice(0, L);
    var ctx = ids(m, context);
    var room = Math.max(L - 1 - ans.length, Math.floor(L / 2));
    return ctx.slice(0, room).concat([SEP], ans).slice(0, L);
  }

  // x W + b of token v in direction dr (4H values), computed once per token (f64: the float64 table of explain)
  function projection(m, dr, v, f64) {
    var G = 4 * m.H, off = v * G;
    if (f64 && !dr.table64) { dr.table64 = new Float64Array(m.V * G); dr.done64 = new Uint8Array(m.V); }
    var T = f64 ? dr.table64 : dr.table, done = f64 ? dr.done64 : dr.done;
    if (!done[v]) {
      var E = m.E, Wm = dr.W, e0 = v * m.Ed;
      for (var j = 0; j < G; j++) T[off + j] = dr.b[j];
      for (var e = 0; e < m.Ed; e++) {
        var x = E[e0 + e], r = e * G;
        if (x === 0) continue;
        for (j = 0; j < G; j++) T[off + j] += x * Wm[r + j];
      }
      done[v] = 1;
    }
    return off;
  }

  function sigmoid(z) { return 1 / (1 + Math.exp(-z)); }

  function probabilities(m, seq) { return forward(m, seq, Float32Array); }

  // the network's probabilities with its states in Arr (Float32Array: as the Python scorer; Float64Array: explain)
  function forward(m, seq, Arr) {
    var D = m.dirs.length, feat = new Arr(D * m.H);
    for (var d = 0; d < D; d++) {
      var s = read(m, m.dirs[d], seq, readingOrder(seq.length, m.dirs[d].reverse), 0, fresh(m.H, Arr), Arr, null);
      pool(m, s, seq.length, feat, d);
    }
    return head(m, feat, Arr);
  }

  function readingOrder(n, reverse) {
    var order = new Array(n);
    for (var k = 0; k < n; k++) order[k] = reverse ? n - 1 - k : k;
    return order;
  }

  function fresh(H, Arr) {
    var s = {h: new Arr(H), c: new Arr(H), best: new Arr(H)};
    s.best.fill(-Infinity);
    return s;
  }

  function copyState(s, Arr) { return {h: new Arr(s.h), c: new Arr(s.c), best: new Arr(s.best)}; }

  // a direction's features from its state after reading n tokens: the last state, or the max over the steps (0 if none)
  function pool(m, s, n, feat, d) {
    for (var j = 0; j < m.H; j++) feat[d * m.H + j] = n === 0 ? 0 : (m.pool_max ? s.best[j] : s.h[j]);
  }

  // one direction reads seq[order[k]] for k = from ... order.length - 1 into the state s; keep: a copy after each step
  function read(m, dr, seq, order, from, s, Arr, keep) {
    var H = m.H, G = 4 * H, f64 = Arr === Float64Array, z = new Arr(G), h = s.h, c = s.c, best = s.best, U = dr.U;
    for (var k = from; k < order.length; k++) {
      var v = seq[order[k]];
      if (v < 0 || v >= m.V) throw new Error("token id " + v + " out of range");
      var off = projection(m, dr, v, f64), T = f64 ? dr.table64 : dr.table, j;
      for (j = 0; j < G; j++) z[j] = T[off + j];
      for (var i = 0; i < H; i++) {
        var hi = h[i], r = i * G;
        if (hi === 0) continue;
        for (j = 0; j < G; j++) z[j] += hi * U[r + j];
      }
      for (j = 0; j < H; j++) {
        var ig = sigmoid(z[j]), fg = sigmoid(z[H + j]), gg = Math.tanh(z[2 * H + j]), og = sigmoid(z[3 * H + j]);
        c[j] = fg * c[j] + ig * gg;
        h[j] = og * Math.tanh(c[j]);
        if (h[j] > best[j]) best[j] = h[j];
      }
      if (keep) keep.push(copyState(s, Arr));
    }
    return s;
  }

  // the dense head and the calibrated softmax (float64) of the features
  function head(m, feat, Arr) {
    var x = feat;
    if (m.dense) x = dense(x, m.hW, m.hb, m.dense, m.act, Arr);
    var logits = dense(x, m.oW, m.ob, m.K, null, Arr);
    var inv = 1 / m.temperature, mx = -Infinity, p = new Float64Array(m.K), s = 0, q;
    for (q = 0; q < m.K; q++) mx = Math.max(mx, logits[q] * inv);
    for (q = 0; q < m.K; q++) { p[q] = Math.exp(logits[q] * inv - mx); s += p[q]; }
    for (q = 0; q < m.K; q++) p[q] /= s;
    return p;
  }

  function dense(x, W, b, O, act, Arr) {
    var y = new Arr(O), I = x.length;
    for (var o = 0; o < O; o++) y[o] = b[o];
    for (var i = 0; i < I; i++) {
      var xi = x[i];
      if (xi === 0) continue;
      for (o = 0; o < O; o++) y[o] += xi * W[i * O + o];
    }
    if (act === "relu") for (o = 0; o < O; o++) y[o] = y[o] > 0 ? y[o] : 0;
    else if (act === "selu") for (o = 0; o < O; o++) y[o] = y[o] > 0 ? SELU_LAMBDA * y[o] : SELU_LAMBDA * SELU_ALPHA * Math.expm1(y[o]);
    return y;
  }

  function score(m, text, context) {
    var p = probabilities(m, encode(m, text, context)), pred = 0;
    for (var q = 1; q < p.length; q++) if (p[q] > p[pred]) pred = q;
    return {pred: pred, label: m.classes[pred], proba: Array.prototype.slice.call(p), confidence: p[pred],
            needs_review: p[pred] < m.review_below};
  }

  // each answer word and the calibrated probability of the predicted class with it minus without it, in float64
  // (tinykd.scoring.explain): with word j left out, each direction resumes from its state before j and reads on
  function explain(m, text, context) {
    var seq = encode(m, text, context), n = seq.length, start = m.uses_context ? seq.indexOf(SEP) + 1 : 0;
    var toks = tokenize(text), D = m.dirs.length, H = m.H, F = Float64Array;
    var orders = [], saved = [], feat = new F(D * H), d;
    for (d = 0; d < D; d++) {
      var s = fresh(H, F);
      orders.push(readingOrder(n, m.dirs[d].reverse));
      saved.push([copyState(s, F)]);  // saved[d][k]: the state after reading k tokens
      pool(m, read(m, m.dirs[d], seq, orders[d], 0, s, F, saved[d]), n, feat, d);
    }
    var p = head(m, feat, F), c = 0, out = [];
    for (var q = 1; q < p.length; q++) if (p[q] > p[c]) c = q;
    for (var j = start; j < n; j++) {
      var f = new F(D * H);
      for (d = 0; d < D; d++) {
        var k = m.dirs[d].reverse ? n - 1 - j : j;
        pool(m, read(m, m.dirs[d], seq, orders[d], k + 1, copyState(saved[d][k], F), F, null), n - 1, f, d);
      }
      out.push([toks[j - start], p[c] - head(m, f, F)[c]]);
    }
    return out;
  }

  global.tinykd = {tokenize: tokenize, lower: lower, words: words, load: load, encode: encode, probabilities: probabilities, score: score,
                   explain: explain};
})(typeof window !== "undefined" ? window : this);
