"""tinykd export --web: the page opens from file:// in headless Chromium and its JavaScript scorer gives
Python's probabilities (max |Δp| ≤ 1e-4) on 200 real answers, for every preset (a student and a per-item
bundle); its tokenizer gives Python's tokens on tricky text; the page is not blank; for 7t the page, the
scorer and the weights fit in 1 MB; exporting a page never imports onnx."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from browser import chromium, dom_json, needs_chromium, page_with_script, script_json
from conftest import assert_user_error, export_student, run_cli, scientsbank_rows

import tinykd
from tinykd.export.page import FILES, export_web
from tinykd.scoring.text import tokenize

ROWS = scientsbank_rows()
TEXTS = [r["text"] for r in ROWS]
N = 200
TOL = 1e-4
TRICKY = [
    "Café naïve résumé ÉLAN Ångström",                 # accents, precomposed
    "cafe\u0301 nai\u0308ve Ame\u0301lie",               # combining marks (they split words in Python's \w)
    "水は100度で沸騰する。日本語のテキスト、中文字符",     # CJK
    "emoji 😀👍🏽 test🙂x ❤️heart 👩‍🔬",                    # emoji, skin tone, ZWJ sequence
    "don't it's the rock’s ‘quoted’ \"double\"",         # apostrophes, straight and curly
    "H2O 3.14 1,000 10^6 ²³ ½ Ⅻ ١٢٣ १२३",               # digits, superscripts, fractions, numerals
    "snake_case __init__ a_b _x_ 5_6",                   # underscores
    "İSTANBUL İi ıI İ",                                  # the dotted capital İ lower-cases to i + U+0307
    "ΟΔΟΣ ΣΑΣ Σ",                                        # Greek final sigma
    "Straße ǅemal ﬁne",                                  # ß, a title-case digraph, a ligature
    "tab\tnew\nline  nbsp\u00a0x zero\u200bwidth",       # whitespace, NBSP, zero-width space
    "नमस्ते दुनिया مرحبا بالعالم",                          # Devanagari (spacing marks), Arabic
    "e-mail co-operate 21st-century — dash…",            # hyphens, dashes, ellipsis
    "acid\U00031350rain marble Α\u0eceΣ",               # code points newer than Python's Unicode (issue 32)
    "", "   ", "!!!",
]


def _test_page(folder, texts, items=None, contexts=None, reps=1):
    """A copy of the exported index.html that scores ``texts`` with the page's own scorer and writes the
    probabilities, the tokens of :data:`TRICKY` and the time taken into ``<pre id="tinykd-test">``."""
    data = {"texts": texts, "items": items or [0] * len(texts), "contexts": contexts or [""] * len(texts),
            "tricky": TRICKY, "reps": reps}
    script = """<script>(function () {
  var data = %s, models = tinykd.load(TINYKD_MODEL), out = {proba: [], tokens: data.tricky.map(tinykd.tokenize)};
  function all() { return data.texts.map(function (t, k) {
    return tinykd.score(models[data.items[k]], t, data.contexts[k]).proba; }); }
  out.proba = all();                       // the first pass fills each token's projection
  var t0 = performance.now();
  for (var r = 0; r < data.reps; r++) all();
  out.ms_per_answer = (performance.now() - t0) / (data.reps * data.texts.length);
  out.review = data.texts.map(function (t, k) { return tinykd.score(models[data.items[k]], t, data.contexts[k]).needs_review; });
  var pre = document.createElement("pre"); pre.id = "tinykd-test"; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();</script>""" % script_json(data)
    return page_with_script(folder, "test.html", script)


def run_page(tmp_path, folder, texts, **kw):
    return dom_json(chromium(tmp_path, "--dump-dom", "file://" + _test_page(folder, texts, **kw)), "tinykd-test")


@pytest.fixture(scope="module")
def answers():
    rng = np.random.default_rng(5)
    return [TEXTS[i] for i in rng.choice(len(TEXTS), N - 2, replace=False)] + ["", "zzzz qqqq"]


@pytest.fixture(scope="module")
def web7t(tmp_path_factory):
    st = export_student("7t", TEXTS, temperature=0.8)
    folder = tmp_path_factory.mktemp("web7t") / "page"
    paths = export_web(st, folder, review_below=0.65)
    return st, str(folder), paths


def test_7t_page_scorer_and_weights_fit_in_1_mb(web7t):
    st, folder, paths = web7t
    assert [os.path.basename(p) for p in paths] == list(FILES) and len(st.vocab) == 1000  # a full 7t vocabulary
    assert sum(os.path.getsize(p) for p in paths) <= 1_000_000
    page = open(os.path.join(folder, "index.html"), encoding="utf-8").read()
    assert "http://" not in page and "https://" not in page and '<script src="model.js">' in page
    scorer = open(os.path.join(folder, "scorer.js"), encoding="utf-8").read()
    assert not [w for w in ("http:", "https:", "fetch(", "XMLHttpRequest", "import(") if w in scorer]


@needs_chromium
def test_page_scores_like_python_and_tokenizes_like_python(web7t, answers, tmp_path):
    st, folder, _ = web7t
    res = run_page(tmp_path, folder, answers)
    got = np.array(res["proba"])
    want = st.predict_proba(answers).astype(np.float64)
    assert want.max() > 0.9 and want.min() < 0.05
    print(f"7t page: max |Δp| {float(np.abs(got - want).max()):.2e}, {res['ms_per_answer']:.3f} ms per answer")
    assert got.shape == want.shape and float(np.abs(got - want).max()) <= TOL, float(np.abs(got - want).max())
    from tinykd.scoring.scorer import decide

    assert res["review"] == decide(want, 0.65)[2].tolist()
    assert res["tokens"] == [tokenize(t) for t in TRICKY]
    assert res["ms_per_answer"] > 0


@needs_chromium
def test_tokenizer_matches_python_on_every_character(web7t, tmp_path):
    """Each code point alone, tokenized by the page and by Python: the same tokens for every code point
    (lower-casing and the word class together), those assigned only in a later Unicode version than
    Python's included: the page reads Python's tables, not the browser's (issue 32, defect 6)."""
    _, folder, _ = web7t
    script = """<script>(function () {
  var out = [];
  for (var cp = 0; cp < 0x110000; cp++) {
    if (cp >= 0xD800 && cp <= 0xDFFF) continue;
    var t = tinykd.tokenize(String.fromCodePoint(cp));
    if (t.length) out.push([cp, t]);
  }
  var pre = document.createElement("pre"); pre.id = "chars"; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();</script>"""
    page = open(os.path.join(folder, "index.html"), encoding="utf-8").read()
    path = os.path.join(folder, "chars.html")
    with open(path, "w", encoding="utf-8") as f:
        f.write(page.replace("</body>", script + "</body>", 1))
    js = {cp: toks for cp, toks in dom_json(chromium(tmp_path, "--dump-dom", "file://" + path), "chars")}
    wrong = [(hex(cp), tokenize(chr(cp)), js.get(cp)) for cp in range(0x110000)
             if not 0xD800 <= cp <= 0xDFFF and js.get(cp, []) != tokenize(chr(cp))]
    assert len(js) > 130_000 and not wrong, (len(wrong), wrong[:10])


def test_python_tokens_of_the_tricky_text_are_tricky():
    """What the browser must reproduce (so the test above can fail in many ways)."""
    tok = dict(zip(TRICKY, map(tokenize, TRICKY)))
    assert tok[TRICKY[1]] == ["cafe", "nai", "ve", "ame", "lie"]
    assert tok[TRICKY[7]] == ["i", "stanbul", "i", "i", "ıi", "i"]
    assert tok[TRICKY[8]] == ["οδος", "σας", "σ"]
    assert tok[TRICKY[4]] == ["don", "t", "it", "s", "the", "rock", "s", "quoted", "double"]
    assert "²³" in tok[TRICKY[5]] and "½" in tok[TRICKY[5]]


@needs_chromium
def test_bundle_page_every_preset_and_a_context(answers, tmp_path):
    items = ["ME", "MX", "SE"]  # three SciEntsBank modules as the bundle's items
    rows = [dict(r, module=r["item"].split("_")[0]) for r in ROWS]
    rows = [r for r in rows if r["module"] in items]
    students, presets = {}, ["bathtub", "falling_weights", "gelatin"]
    for k, it in enumerate(items):
        mine = [r for r in rows if r["module"] == it]
        students[it] = export_student(presets[k], [r["text"] for r in mine], seed=k + 7, temperature=0.5 + k,
                                      classes=[0, 1, 2] if k else ["no", "yes"], uses_context=k == 1,
                                      contexts=[r["question"] for r in mine])
    bundle = tinykd.Bundle(students, item_col="module")
    folder = tmp_path / "page"
    export_web(bundle, folder)
    rows = [rows[i] for i in np.random.default_rng(2).choice(len(rows), N, replace=False)]
    idx = [items.index(r["module"]) for r in rows]
    ctx = [r["question"] for r in rows]
    res = run_page(tmp_path, str(folder), [r["text"] for r in rows], items=idx, contexts=ctx)
    worst = 0.0
    for k, it in enumerate(items):
        mine = [j for j in range(len(rows)) if idx[j] == k]
        st = bundle.students[it]
        want = st.predict_proba([rows[j]["text"] for j in mine], [ctx[j] for j in mine] if st.uses_context else None)
        got = np.array([res["proba"][j] for j in mine])
        worst = max(worst, float(np.abs(got - want).max()))
    print(f"bundle page: max |Δp| {worst:.2e} over {len(rows)} answers")
    assert len(set(idx)) == 3 and worst <= TOL, worst
    dom = chromium(tmp_path, "--dump-dom", "file://" + str(folder / "index.html"))
    assert all(f">{it}</option>" in dom for it in items)  # the item selector


@needs_chromium
def test_the_page_reads_aliases_as_python_does(answers, tmp_path):
    """A student with aliases (docs/decisions/student-aliases.md): the page reads each alias as the id Python
    reads it as; the aliases change the probabilities (they are not read as OOV)."""
    st = export_student("bathtub", TEXTS, seed=4)
    rng = np.random.default_rng(4)
    extra = ["zorblat", "quindle", "frabjous", "snark"]
    words = st.vocab.tokens[3:] + extra
    st.vocab.alias(words, rng.normal(size=(len(words), 6)))
    assert set(st.vocab.aliases) == set(extra)
    texts = [f"{a[:80]} {w}" for a, w in zip(answers[:40], extra * 10)]
    folder = tmp_path / "page"
    export_web(st, folder)
    got = np.array(run_page(tmp_path, str(folder), texts)["proba"])
    want = st.predict_proba(texts).astype(np.float64)
    assert float(np.abs(got - want).max()) <= TOL, float(np.abs(got - want).max())
    st.vocab.aliases = {}
    assert float(np.abs(st.predict_proba(texts) - want).max()) > 10 * TOL  # without them: other probabilities


@needs_chromium
def test_the_page_itself_opens_from_file_and_is_not_blank(web7t, tmp_path):
    from matplotlib.image import imread

    _, folder, _ = web7t
    dom = chromium(tmp_path, "--dump-dom", "file://" + os.path.join(folder, "index.html"))
    assert '<div id="result" aria-live="polite"><p class="hint">Type or paste an answer' in dom  # nothing scored yet
    assert 'id="item-row" hidden' in dom  # one student: no item selector
    shot = tmp_path / "shot.png"
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=800,700", "file://" + os.path.join(folder, "index.html"))
    px = imread(str(shot))[..., :3]
    assert px.shape[:2] == (700, 800) and px.std() > 0.05  # the typed page's pixels: tests/test_page_ux.py


def test_cli_export_web_never_imports_onnx(tmp_path):
    st = export_student("falling_weights", TEXTS[:400])
    model = tmp_path / "m.npz"
    st.save(model)
    code = ("import sys\nfrom tinykd.cli.commands import main\n"
            f"rc = main(['export', {str(model)!r}, '--web', {str(tmp_path / 'web')!r}])\n"
            "assert rc == 0 and 'onnx' not in sys.modules and 'sklearn' not in sys.modules, rc")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(tmp_path / "web")) == sorted(FILES)
    assert "open " in r.stdout and "index.html in a browser" in r.stdout
    spec = open(tmp_path / "web" / "model.js", encoding="ascii").read()
    spec = json.loads(spec[spec.index("=") + 1:].strip().rstrip(";"))
    assert spec["items"][0]["review_below"] == tinykd.scoring.scorer.REVIEW_BELOW and spec["items"][0]["classes"] == [0, 1, 2]


def test_cli_export_web_errors(tmp_path, capsys):
    st = export_student("7t", TEXTS[:300])
    model = tmp_path / "m.npz"
    st.save(model)
    (tmp_path / "file").write_text("x")
    rc, _, err = run_cli(capsys, "export", model, "--web", tmp_path / "file")
    assert_user_error(rc, err, "not a folder")
    rc, _, err = run_cli(capsys, "export", model, "--web", tmp_path / "no" / "such")
    assert_user_error(rc, err, "does not exist")
    (tmp_path / "w").mkdir()
    os.symlink("/dev/null", tmp_path / "w" / "model.js")
    rc, _, err = run_cli(capsys, "export", model, "--web", tmp_path / "w")
    assert_user_error(rc, err, "symbolic link")
    assert sorted(os.listdir(tmp_path / "w")) == ["model.js"]  # nothing written
