"""The exported page a teacher would use (issue 33, part 4), in headless Chromium: nothing scored before an answer
is typed; the context box named after the model's context column and filled in with an item's shared context; the
item picker showing the question, not the id; the score's name; the calibrated confidence with the review threshold
in words; the explanation's words highlighted — seen in the DOM and in the pixels of a screenshot (read with zlib)."""
import os
import struct
import zlib

import numpy as np
import pytest
from browser import chromium, dom_json, needs_chromium, script_json
from conftest import export_student, scientsbank_rows

from tinykd.export.page import export_web
from tinykd.scoring.student import Bundle, store_contexts

ROWS = scientsbank_rows()
REF = "The boat with 0 marbles is the standard in this experiment."
ANSWER = "The boat with no marbles in it is the standard"
#: the strong colours of index.html's explanation (.why .up2 and .why .down2)
TOWARD, AWAY = (0x6E, 0xC8, 0x6E), (0xF0, 0x8C, 0x8C)


def read_png(path):
    """An 8-bit RGB or RGBA PNG (what Chromium's --screenshot writes) as an (h, w, 3) uint8 array: the stdlib's
    zlib and struct, and the five PNG filters."""
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks, idat = 8, {}, b""
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IDAT":
            idat += body
        chunks.setdefault(kind, body)
        pos += 12 + n
    w, h, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunks[b"IHDR"])
    assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
    bpp = 3 if colour == 2 else 4
    raw = np.frombuffer(zlib.decompress(idat), np.uint8).reshape(h, 1 + w * bpp)
    out = np.zeros((h, w * bpp), np.int32)
    prev = np.zeros(w * bpp, np.int32)
    for y in range(h):
        f, line = raw[y, 0], raw[y, 1:].astype(np.int32)
        if f == 0:
            cur = line
        elif f == 2:
            cur = (line + prev) & 255
        else:  # 1 (sub), 3 (average), 4 (Paeth) depend on the pixel to the left: byte by byte
            cur = np.zeros_like(line)
            for i in range(len(line)):
                a = cur[i - bpp] if i >= bpp else 0
                b, c = prev[i], (prev[i - bpp] if i >= bpp else 0)
                if f == 1:
                    pred = a
                elif f == 3:
                    pred = (a + b) // 2
                else:
                    p = a + b - c
                    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                    pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                cur[i] = (line[i] + pred) & 255
        out[y], prev = cur, cur
    return out.reshape(h, w, bpp)[..., :3].astype(np.uint8)


def count_colour(px, rgb):
    return int(np.all(px == np.array(rgb, np.uint8), axis=2).sum())


def typed_page(folder, answer=None, item=None, name="typed.html"):
    """A copy of index.html that picks ``item`` and types ``answer`` as a user would (input events), then writes
    what the page shows into ``<pre id="ux">``."""
    script = """<script>(function () {
  var d = document, data = %s, sel = d.getElementById("item"), box = d.getElementById("answer");
  if (data.item !== null) { sel.value = String(data.item); sel.dispatchEvent(new Event("change")); }
  if (data.answer !== null) { box.value = data.answer; box.dispatchEvent(new Event("input")); }
  var why = Array.prototype.map.call(d.querySelectorAll(".why span"), function (s) { return [s.textContent, s.className]; });
  var opts = Array.prototype.map.call(sel.options, function (o) { return [o.textContent, o.title]; });
  var pre = d.createElement("pre"); pre.id = "ux";
  pre.textContent = JSON.stringify({result: d.getElementById("result").innerText, why: why, options: opts,
    context: d.getElementById("context").value, context_label: d.getElementById("context-label").textContent,
    context_shown: !d.getElementById("context-row").hidden, explain: typeof tinykd.explain === "function"});
  d.body.appendChild(pre);
})();</script>""" % script_json({"answer": answer, "item": item})
    page = open(os.path.join(folder, "index.html"), encoding="utf-8").read()
    path = os.path.join(folder, name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(page.replace("</body>", script + "\n</body>", 1))
    return "file://" + path


def shown(tmp_path, url):
    return dom_json(chromium(tmp_path, "--dump-dom", url), "ux")


def screenshot(tmp_path, url, name):
    shot = tmp_path / name
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=800,900", "--force-device-scale-factor=1", url)
    return read_png(shot)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    """A student trained with the reference answer as context (one shared text), its scores named."""
    texts = [r["text"] for r in ROWS]
    st = export_student("7t", texts, uses_context=True, contexts=[r["reference_answer"] for r in ROWS])
    st.label_names = "0=correct,1=contradictory,2=incorrect"
    st.meta["columns"] = {"text": "text", "context": "reference_answer"}
    store_contexts(st, [REF] * 3)
    folder = tmp_path_factory.mktemp("ux") / "page"
    export_web(st, folder, review_below=0.99)  # every answer below it: the review sentence is certain
    return st, str(folder)


@needs_chromium
def test_nothing_is_scored_before_an_answer_is_typed(page, tmp_path):
    _, folder = page
    ux = shown(tmp_path, typed_page(folder))
    assert "Score" not in ux["result"] and "Type or paste an answer" in ux["result"] and not ux["why"]
    assert ux["context_label"] == "Reference answer" and ux["context_shown"]  # not "Question (context)"
    assert ux["context"] == REF  # the one reference answer every row had, filled in
    ux = shown(tmp_path, typed_page(folder, answer="   "))
    assert "Score" not in ux["result"]  # blank is not typed


@needs_chromium
def test_typed_answer_shows_name_confidence_in_words_and_its_words(page, tmp_path):
    st, folder = page
    ux = shown(tmp_path, typed_page(folder, answer=ANSWER))
    proba = st.predict_proba([ANSWER], [REF])[0]
    name = st.label_names[int(proba.argmax())]
    assert f"Score: {name} ({st.classes[int(proba.argmax())]})" in ux["result"]
    assert f"Confidence {100 * proba.max():.0f} % (calibrated). Below 99 %: a person should check this one." \
        in ux["result"]
    assert all(n in ux["result"] for n in st.label_names)  # the table names every score
    assert ux["explain"], "scorer.js has no explain()"
    assert [w for w, _ in ux["why"]] == ["the", "boat", "with", "no", "marbles", "in", "it", "is", "the", "standard"]
    assert any(cls in ("up2", "down2") for _, cls in ux["why"])  # the strongest word is coloured fully


@needs_chromium
def test_screenshot_pixels_show_the_highlighted_words(page, tmp_path):
    _, folder = page
    ux = shown(tmp_path, typed_page(folder, answer=ANSWER))
    strong = {cls for _, cls in ux["why"]} & {"up2", "down2"}
    assert strong  # the strongest word is always coloured fully
    px = screenshot(tmp_path, typed_page(folder, answer=ANSWER, name="shot.html"), "typed.png")
    assert px.shape == (900, 800, 3)
    for cls, rgb in (("up2", TOWARD), ("down2", AWAY)):
        n = count_colour(px, rgb)
        assert (n >= 30) == (cls in strong), (cls, n, strong)  # a coloured word: dozens of pixels of its colour
    before = screenshot(tmp_path, typed_page(folder, name="empty.html"), "empty.png")
    assert count_colour(before, TOWARD) == count_colour(before, AWAY) == 0  # nothing typed: nothing coloured
    assert count_colour(before, (0xFF, 0xF1, 0xD6)) == 0 and count_colour(px, (0xFF, 0xF1, 0xD6)) > 500  # review


@needs_chromium
def test_bundle_picker_shows_the_question_and_fills_its_context(tmp_path):
    items = ["ME_10", "MX_16a"]
    students, item_rows = {}, []
    for k, it in enumerate(items):
        mine = [r for r in ROWS if r["item"] == it]
        assert len({r["reference_answer"] for r in mine}) == 1
        st = export_student("falling_weights", [r["text"] for r in ROWS[:500]], seed=k, uses_context=True,
                            contexts=[r["reference_answer"] for r in ROWS[:500]])
        st.meta["columns"] = {"text": "text", "context": "reference_answer", "item": "item"}
        students[it] = st
        item_rows += mine
    bundle = Bundle(students, item_col="item")
    bundle.label_names = {0: "correct", 1: "contradictory", 2: "incorrect"}
    assert store_contexts(bundle, [r["reference_answer"] for r in item_rows], [r["item"] for r in item_rows]) == 2
    export_web(bundle, tmp_path / "page")
    ux = shown(tmp_path, typed_page(str(tmp_path / "page"), answer="It sank", item=1))
    refs = [students[it].context_text for it in items]
    assert [t for _, t in ux["options"]] == [f"{it}: {ref}" for it, ref in zip(items, refs)]  # the id in its title
    assert [o for o, _ in ux["options"]] == [ref if len(ref) <= 90 else ref[:88].rsplit(" ", 1)[0] + "…"
                                             for ref in refs]
    assert ux["context"] == refs[1] and ux["context_label"] == "Reference answer"
    assert "Score: " in ux["result"] and any(n in ux["result"] for n in ("correct", "contradictory", "incorrect"))
