"""Explanations from the student itself (issue 33): each answer word's weight, the calibrated probability of the
predicted class with the word minus without it (tinykd.scoring.explain).

On a synthetic data set whose label is decided by one key word, the top word is that word for >= 90 % of the
answers holding it (an LSTM and a BiLSTM with max pooling); the weights are those of scoring the answer with the
word left out; the page's JavaScript gives Python's weights to 1e-6 (headless Chromium); ``tinykd score
--explain`` writes the column; bad input is a one-line error."""
import csv
import os

import numpy as np
import pytest
from browser import chromium, dom_json, needs_chromium, page_with_script, script_json
from conftest import assert_user_error, export_student, run_cli, write_csv

import tinykd
from tinykd.errors import OptionError
from tinykd.export.page import export_web
from tinykd.scoring.explain import explain, gradient_times_input
from tinykd.scoring.scorefile import explanation_cell
from tinykd.scoring.student import UnknownItemError

KEY = "photosynthesis"
FILL = ("the a plant water sun soil grows makes food because it and is in of leaves light green energy roots air "
        "dirt").split()


def key_word_data(n, seed):
    """Answers of 4-12 filler words; label 1 exactly when the key word is among them (anywhere)."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for _ in range(n):
        words = list(rng.choice(FILL, int(rng.integers(4, 13))))
        label = int(rng.integers(0, 2))
        if label:
            words.insert(int(rng.integers(0, len(words) + 1)), KEY)
        texts.append(" ".join(words))
        labels.append(label)
    return texts, labels


@pytest.fixture(scope="module", params=["7t", "falling_weights"])
def keyed(request):
    texts, labels = key_word_data(600, seed=0)
    st = tinykd.fit(texts, labels, preset=request.param, epochs=6, seed=0, verbose=False)
    return st, *key_word_data(200, seed=1)


def test_the_top_word_is_the_key_word(keyed):
    st, texts, labels = keyed
    assert np.mean(np.array(st.predict(texts)) == np.array(labels)) >= 0.9  # the student learnt the rule
    ex = st.explain(texts)
    holding = [i for i, t in enumerate(texts) if KEY in t.split()]
    top = [max(ex[i], key=lambda p: abs(p[1]))[0] for i in holding]
    share = np.mean([w == KEY for w in top])
    print(f"{st.meta.get('preset')}: top word = {KEY!r} for {share:.1%} of {len(holding)} answers")
    assert len(holding) > 80 and share >= 0.9
    assert [[w for w, _ in e] for e in ex] == [t.split() for t in texts]  # every word, in text order
    # the key word pushed a correct answer towards its score (+); top=1 keeps just it
    assert all(dict(ex[i])[KEY] > 0.1 for i in holding if labels[i] == 1 and st.predict([texts[i]])[0] == 1)
    assert [e[0][0] for e in st.explain([texts[i] for i in holding], top=1)].count(KEY) == top.count(KEY)


def _left_out(st, text, context=None):
    """The weights by brute force: the float32 scorer on the answer with each word removed."""
    words = tinykd.scoring.text.tokenize(text)
    ctx = None if context is None else [context]
    p = st.predict_proba([text], ctx)[0].astype(np.float64)
    c = int(p.argmax())
    return [(w, p[c] - float(st.predict_proba([" ".join(words[:j] + words[j + 1:])], ctx)[0, c]))
            for j, w in enumerate(words)]


@pytest.mark.parametrize("preset", ["7t", "bathtub", "gelatin"])
def test_weights_are_the_scores_with_each_word_left_out(preset):
    texts = ["The acid rain reacted with the marble and it dissolved.", "water", "", "zzz qqq marble",
             "Sun heat makes the water evaporate into the air, then it rains again on the soil."]
    st = export_student(preset, texts * 3, temperature=0.7, uses_context=preset == "bathtub",
                        contexts=["why does the marble dissolve"] * 15)
    ctx = ["why does the marble dissolve"] * len(texts) if st.uses_context else None
    ex = st.explain(texts, ctx)
    assert ex[2] == [] and ex[1][0][0] == "water"
    for k, text in enumerate(texts):
        want = _left_out(st, text, None if ctx is None else ctx[k])
        assert [w for w, _ in ex[k]] == [w for w, _ in want]
        assert np.allclose([x for _, x in ex[k]], [x for _, x in want], atol=2e-5), (text, ex[k], want)
    assert max(abs(x) for e in ex for _, x in e) > 0.01  # the weights are not all nothing
    top = st.explain(texts, ctx, top=3)
    for full, part in zip(ex, top):
        assert len(part) == min(3, len(full)) and all(p in full for p in part)
        assert [full.index(p) for p in part] == sorted(full.index(p) for p in part)  # text order
        assert min([abs(x) for _, x in part], default=1) >= max(sorted(abs(x) for _, x in full)[:-3] or [0])


def test_a_bundle_explains_each_row_by_its_items_student():
    texts = ["acid rain marble", "water vinegar cup size", "the sun heats the lid"]
    a, b = export_student("7t", texts * 4, seed=1), export_student("falling_weights", texts * 4, seed=2)
    bundle = tinykd.Bundle({"Q1": a, "Q2": b})
    got = bundle.explain(texts, ["Q2", "Q1", "Q2"])
    want = [b.explain([texts[0]])[0], a.explain([texts[1]])[0], b.explain([texts[2]])[0]]
    assert [[w for w, _ in e] for e in got] == [[w for w, _ in e] for e in want]
    assert np.allclose([x for e in got for _, x in e], [x for e in want for _, x in e], rtol=0, atol=1e-12)
    with pytest.raises(UnknownItemError, match="Q9"):
        bundle.explain(texts, ["Q1", "Q9", "Q1"])
    with pytest.raises(ValueError, match="items="):
        explain(bundle, texts)


def test_bad_input_is_one_clear_error():
    st = export_student("7t", ["acid rain marble", "water cup"] * 5)
    for top in (0, -1, True, 2.5, "3"):
        with pytest.raises(OptionError, match="top must be None or a whole number >= 1"):
            st.explain(["acid rain"], top=top)
    with pytest.raises(TypeError, match="wrap it in a list"):
        st.explain("acid rain")
    with pytest.raises(ValueError, match="2 texts but 1 contexts"):
        st.explain(["a", "b"], ["q"])
    ctx_st = export_student("7t", ["acid rain marble", "water cup"] * 5, uses_context=True, contexts=["q"] * 10)
    with pytest.raises(ValueError, match="pass contexts="):
        ctx_st.explain(["acid rain"])
    with pytest.raises(ValueError, match="items= is for a per-item bundle"):
        explain(st, ["acid rain"], items=["Q1"])


@pytest.mark.parametrize("preset", ["7t", "bathtub", "gelatin"])
def test_gradient_times_input_is_a_gradient(preset):
    """The alternative measured against occlusion: x · ∂P_c/∂x of a word that occurs once is the rate of change
    of P_c when that word's embedding is scaled by (1 + ε) — checked by central differences."""
    texts = ["the acid rain reacted with marble", "water and a cup"]
    st = export_student(preset, texts * 5, temperature=0.9)
    g = gradient_times_input(st, texts)
    ids, lengths = st.encode(texts)
    eps, checked = 1e-3, 0
    for b, text in enumerate(texts):
        c = int(st.predict_proba([text])[0].argmax())
        for t in range(lengths[b]):
            v = int(ids[b, t])
            if (ids[b, :lengths[b]] == v).sum() != 1:
                continue
            p = []
            for sign in (1, -1):
                probe = st.net.copy()
                probe.p["emb.E"][v] *= 1 + sign * eps
                p.append(float(tinykd.Student(st.vocab, probe, st.classes, st.meta).predict_proba([text])[0, c]))
            assert abs((p[0] - p[1]) / (2 * eps) - g[b][t]) < 1e-3 + 0.02 * abs(g[b][t]), (text, t, p, g[b][t])
            checked += 1
    assert checked >= 8 and max(abs(x) for row in g for x in row) > 0.01


def test_explanation_cell():
    assert explanation_cell([("photosynthesis", 0.4), ("the", 0.001), ("dirt", -0.2)]) == "'+photosynthesis \u2212dirt"
    assert explanation_cell([("dirt", -0.2), ("sun", 0.05)]) == "\u2212dirt +sun"
    assert explanation_cell([("a", 0.009), ("b", -0.005)]) == ""
    six = [(f"w{k}", 0.1 * (k + 1)) for k in range(6)]
    assert explanation_cell(six) == "'+w5 +w4 +w3 +w2 +w1"  # the five strongest, strongest first


def test_cli_score_explain_writes_the_column(keyed, tmp_path, capsys):
    st, texts, _ = keyed
    model = tmp_path / "m.npz"
    st.save(model)
    data = write_csv(tmp_path / "d.csv", [{"id": k, "text": t} for k, t in enumerate(texts[:40])])
    out = tmp_path / "s.csv"
    rc, printed, err = run_cli(capsys, "score", model, data, "--out", out, "--explain")
    assert rc == 0, err
    assert "explanations:" in printed and "ms per response" in printed
    with open(out, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[-1] == "explanation" and len(rows) == 40
    ex = st.explain(texts[:40], top=5)
    assert [r["explanation"] for r in rows] == [explanation_cell(e) for e in ex]
    key_rows = [r for r in rows if KEY in r["text"].split()]
    assert np.mean([r["explanation"].lstrip("'")[1:].split(" ")[0] == KEY for r in key_rows]) >= 0.9
    plain = tmp_path / "plain.csv"
    assert run_cli(capsys, "score", model, data, "--out", plain)[0] == 0
    assert "explanation" not in open(plain, encoding="utf-8").readline()


def test_cli_score_explain_errors(keyed, tmp_path, capsys):
    st, texts, _ = keyed
    model = tmp_path / "m.npz"
    st.save(model)
    clash = write_csv(tmp_path / "c.csv", [{"text": "a", "explanation": "x"}])
    rc, _, err = run_cli(capsys, "score", model, clash, "--out", tmp_path / "o.csv", "--explain")
    assert_user_error(rc, err, "explanation", "already has column")
    data = write_csv(tmp_path / "d.csv", [{"text": "a"}])
    rc, _, err = run_cli(capsys, "score", model, data, "--out", tmp_path / "o.csv", "--explain", "--jobs", "1")
    assert_user_error(rc, err, "--explain scores one CSV file")
    assert not os.path.exists(tmp_path / "o.csv")


# --------------------------------------------------------------------------------------- the page's JavaScript
def _explain_page(folder, texts, items, contexts):
    """A copy of the exported index.html that writes ``tinykd.explain`` of each text into ``<pre id=explain>``."""
    data = {"texts": texts, "items": items, "contexts": contexts}
    script = """<script>(function () {
  var data = %s, models = tinykd.load(TINYKD_MODEL);
  var out = data.texts.map(function (t, k) { return tinykd.explain(models[data.items[k]], t, data.contexts[k]); });
  var pre = document.createElement("pre"); pre.id = "explain"; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();</script>""" % script_json(data)
    return page_with_script(folder, "explain.html", script)


@needs_chromium
def test_the_pages_javascript_explains_as_python(keyed, tmp_path):
    st, texts, _ = keyed
    extra = ["Sun heat makes the water evaporate into the air, then it rains on the soil.", "water", "",
             "zzz qqq marble", "The acid rain reacted with the marble and it dissolved."]
    ctx_texts = [t for t in texts[:60]] + extra
    other = export_student("bathtub", ctx_texts * 2, temperature=0.7, uses_context=True,
                           contexts=["why does the marble dissolve"] * (2 * len(ctx_texts)))
    bundle = tinykd.Bundle({"keyed": st, "context": other})
    folder = tmp_path / "page"
    export_web(bundle, folder)
    rows = texts[:100] + extra
    items = [k % 2 for k in range(len(rows))]
    contexts = ["why does the marble dissolve"] * len(rows)
    names = ["keyed", "context"]
    js = dom_json(chromium(tmp_path, "--dump-dom", "file://" + _explain_page(str(folder), rows, items, contexts)),
                  "explain")
    want = bundle.explain(rows, [names[i] for i in items], contexts)
    worst = 0.0
    for got, exp in zip(js, want):
        assert [w for w, _ in got] == [w for w, _ in exp]
        if exp:
            worst = max(worst, float(np.abs(np.array([x for _, x in got]) - [x for _, x in exp]).max()))
    print(f"page explain: max |Δweight| {worst:.2e} over {len(rows)} answers")
    assert worst <= 1e-6 and max(abs(x) for e in want for _, x in e) > 0.1
    keyed_js = [js[k] for k in range(len(rows)) if items[k] == 0 and KEY in rows[k].split()]
    assert np.mean([max(e, key=lambda p: abs(p[1]))[0] == KEY for e in keyed_js]) >= 0.9
