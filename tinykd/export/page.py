"""A student as a web page that scores offline (``tinykd export MODEL --web DIR``).

``DIR`` gets three files, opened from ``file://`` with no network, no CDN and no build step:

* ``index.html`` — the page and its own script: the answer's box, the item's picker for a per-item bundle
  (listing an item by its stored context, :attr:`~tinykd.scoring.student.Student.context_text`, when it has
  one), the context's box named after the model's context column (filled in with that context); once an
  answer is typed (never before), the score's name (:attr:`~tinykd.scoring.student.Student.label_names`),
  the calibrated confidence with the review threshold in words, the answer's words coloured by
  ``tinykd.explain`` and each class's probability;
* ``scorer.js`` — the hand-written JavaScript scorer (package data, ``tinykd/export/web/scorer.js``):
  the tokenizer of :func:`tinykd.scoring.text.tokenize`, then embedding → LSTM / BiLSTM → pooling →
  dense → softmax over ``Float32Array`` weights; with this Python's Unicode tables
  (:func:`unicode_tables`, 9 KB), so that it splits and lower-cases every code point as Python
  does, not as the browser's own (newer or older) Unicode version would;
* ``model.js`` — ``var TINYKD_MODEL = {…}``: the context's column; per item the classes, their names, its
  shared context (if any), calibration temperature,
  review threshold, tokenizer settings, vocabulary and the weights (float32, little-endian,
  base64). A script, not a JSON file the page fetches: browsers block ``fetch`` of ``file://``.

Every file is written atomically; nothing outside ``DIR`` is touched.
"""
from __future__ import annotations

import base64
import functools
import html
import json
import os
import re
import unicodedata

import numpy as np

from tinykd.files.atomic import atomic_write_bytes, existing_target
from tinykd.export.common import describe_student, header, model_items
from tinykd.scoring.text import TOKEN_PATTERN

WEB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "web")
FILES = ("index.html", "scorer.js", "model.js")
#: where the exported scorer.js gets :func:`unicode_tables` (the package's copy has none)
TABLES_SLOT = b"/*{{unicode_tables}}*/null"
SIGMA, FINAL_SIGMA = "\u03a3", "\u03c2"


def check_web_dir(folder):
    """Refuse a ``--web`` folder that cannot be written (one-line ``ValueError``): a path that is a
    file, a link or a device, a missing parent folder, or an output file there that is not a regular file."""
    folder = os.fspath(folder)
    if os.path.lexists(folder) and (os.path.islink(folder) or not os.path.isdir(folder)):
        raise ValueError(f"cannot write into {folder}: it is not a folder")
    parent = os.path.dirname(os.path.abspath(folder))
    if not os.path.isdir(parent):
        raise ValueError(f"cannot write into {folder}: the folder {parent} does not exist")
    if os.path.isdir(folder):
        if not os.access(folder, os.W_OK):
            raise ValueError(f"cannot write into {folder}: no permission to write there")
        for name in FILES:
            existing_target(os.path.join(folder, name))
    return folder


def _array(a):
    a = np.ascontiguousarray(a, dtype="<f4")
    return {"shape": list(a.shape), "b64": base64.b64encode(a.tobytes()).decode("ascii")}


def model_script(model, review_below=None):
    """The text of ``model.js`` for a :class:`~tinykd.scoring.student.Student` or a :class:`~tinykd.scoring.student.Bundle`."""
    items = []
    for item, st in model_items(model):
        d = describe_student(st, review_below)
        d["item"] = item
        d["weights"] = {name: _array(st.net.p[name]) for name, _ in st.net.layout}
        items.append(d)
    spec = {"format": "tinykd-web/1", **header(model), "items": items}
    text = json.dumps(spec, ensure_ascii=True, separators=(",", ":"))
    return "/* tinykd model, written by tinykd export --web; read by scorer.js */\nvar TINYKD_MODEL = " + text + ";\n"


def _runs(inside):
    """The runs of True in ``inside`` (one bool per code point) as gaps and lengths: start, length, gap, length, …"""
    edges = np.flatnonzero(np.diff(np.concatenate(([False], inside, [False])).astype(np.int8)))
    return np.diff(edges, prepend=0).tolist()


def _flags(test):
    """One bool per code point: ``test(chr(cp))`` (a generator: no list of 1.1 million strings is held)."""
    return np.fromiter((test(chr(cp)) for cp in range(0x110000)), dtype=bool, count=0x110000)


def _lower_runs():
    """``str.lower`` of each code point that it changes: runs ``[start, count, step, shift]`` of code points
    that lower-case to one code point ``shift`` away, and ``[code point, text]`` for longer lower cases."""
    runs, longer = [], []
    for cp in range(0x110000):
        low = chr(cp).lower()
        if low == chr(cp):
            continue
        if len(low) != 1:
            longer.append([cp, low])
            continue
        last = runs[-1] if runs else None
        if last and last[3] == ord(low) - cp and cp - (last[0] + (last[1] - 1) * last[2]) == last[2]:
            last[1] += 1
        elif last and last[3] == ord(low) - cp and last[1] == 1 and cp - last[0] <= 2:
            last[1:3] = [2, cp - last[0]]  # a second code point fixes the run's step (1, or 2 for Aa Bb …)
        else:
            runs.append([cp, 1, 1, ord(low) - cp])
    return runs, longer


@functools.lru_cache(maxsize=1)
def unicode_tables():
    """How this Python's :func:`~tinykd.scoring.text.tokenize` reads every code point, for ``scorer.js``.

    Read from Python itself (its ``re`` and ``str.lower``), so the page follows Python's Unicode version,
    not the browser's: ``word``, the code points :data:`TOKEN_PATTERN` matches alone (``\\w``);
    ``lower`` and ``lower_long``, :func:`_lower_runs`; ``ignorable`` and ``cased``, the case-ignorable code
    points and the cased ones among the rest — what decides, in ``str.lower``, whether a capital sigma is final
    (cased, ignorables, Σ, and no ignorables then a cased one after it). Each a list of runs (:func:`_runs`).
    """
    token = re.compile(TOKEN_PATTERN)
    word = _flags(lambda ch: token.fullmatch(ch) is not None)
    # Σ at the end of "A c Σ" is final when c is ignorable (A is cased) or cased; at "A Σ c" when c is
    # ignorable or not cased: both, only when c is ignorable; at "c Σ", when c is cased and not ignorable
    ignorable = _flags(lambda ch: ("A" + ch + SIGMA).lower()[-1] == FINAL_SIGMA == ("A" + SIGMA + ch).lower()[1])
    cased = _flags(lambda ch: (ch + SIGMA).lower()[-1] == FINAL_SIGMA)
    lower, lower_long = _lower_runs()
    return {"unicode": unicodedata.unidata_version, "word": _runs(word), "lower": lower, "lower_long": lower_long,
            "ignorable": _runs(ignorable), "cased": _runs(cased)}


def scorer_script():
    """The bytes of ``scorer.js``: the package's hand-written scorer with :func:`unicode_tables` in its slot."""
    with open(os.path.join(WEB_DIR, "scorer.js"), "rb") as f:
        scorer = f.read()
    tables = json.dumps(unicode_tables(), ensure_ascii=True, separators=(",", ":")).encode("ascii")
    assert scorer.count(TABLES_SLOT) == 1, "scorer.js has no slot for the Unicode tables"
    return scorer.replace(TABLES_SLOT, tables)


def page(title="tinykd scorer"):
    with open(os.path.join(WEB_DIR, "index.html"), encoding="utf-8") as f:
        return f.read().replace("{{title}}", html.escape(title))


def export_web(model, folder, review_below=None, title=None):
    """Write ``index.html``, ``scorer.js`` and ``model.js`` into ``folder`` (made if absent); returns
    the three paths."""
    check_web_dir(folder)
    name = title or (f"tinykd scorer: {len(model_items(model))} items" if model_items(model)[0][0] is not None
                     else "tinykd scorer")
    out = {"model.js": model_script(model, review_below).encode("ascii"), "scorer.js": scorer_script(),
           "index.html": page(name).encode("utf-8")}
    os.makedirs(folder, exist_ok=True)  # only once the model checks out: a refused model leaves no folder
    paths = []
    for fname in FILES:
        p = os.path.join(folder, fname)
        atomic_write_bytes(p, out[fname])
        paths.append(p)
    return paths
