"""A student as a web page that scores offline (``tinykd export MODEL --web DIR``).

``DIR`` gets three files, opened from ``file://`` with no network, no CDN and no build step:

* ``index.html`` — a text box (the item's selector for a per-item bundle, the context's box
  when the model reads one), then the score, each class's probability and the review flag;
* ``scorer.js`` — the hand-written JavaScript scorer (package data, ``tinykd/web/scorer.js``):
  the tokenizer of :func:`tinykd.scoring.text.tokenize`, then embedding → LSTM / BiLSTM → pooling →
  dense → softmax over ``Float32Array`` weights;
* ``model.js`` — ``var TINYKD_MODEL = {…}``: per item the classes, calibration temperature,
  review threshold, tokenizer settings, vocabulary and the weights (float32, little-endian,
  base64). A script, not a JSON file the page fetches: browsers block ``fetch`` of ``file://``.

Every file is written atomically; nothing outside ``DIR`` is touched.
"""
from __future__ import annotations

import base64
import html
import json
import os

import numpy as np

from tinykd.files.atomic import atomic_write_bytes, existing_target
from tinykd.export.common import describe_student, header, model_items

WEB_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "web")
FILES = ("index.html", "scorer.js", "model.js")


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


def page(title="tinykd scorer"):
    with open(os.path.join(WEB_DIR, "index.html"), encoding="utf-8") as f:
        return f.read().replace("{{title}}", html.escape(title))


def export_web(model, folder, review_below=None, title=None):
    """Write ``index.html``, ``scorer.js`` and ``model.js`` into ``folder`` (made if absent); returns
    the three paths."""
    check_web_dir(folder)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(WEB_DIR, "scorer.js"), "rb") as f:
        scorer = f.read()
    name = title or (f"tinykd scorer: {len(model_items(model))} items" if model_items(model)[0][0] is not None
                     else "tinykd scorer")
    out = {"model.js": model_script(model, review_below).encode("ascii"), "scorer.js": scorer,
           "index.html": page(name).encode("utf-8")}
    paths = []
    for fname in FILES:
        p = os.path.join(folder, fname)
        atomic_write_bytes(p, out[fname])
        paths.append(p)
    return paths
