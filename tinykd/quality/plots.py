"""The plots of ``tinykd report`` as PNG bytes: the confusion heat-map, the human and machine
score distributions, the reliability diagram and the review curve.

matplotlib is the optional extra ``[report]`` (``pip install "tinykd[report]"``); it is imported
only when a plot is drawn (never by ``import tinykd``, scoring or loading), through its
object-oriented API (``matplotlib.figure.Figure``, no pyplot, no GUI backend). Without it,
:func:`available` is False and :mod:`tinykd.quality.report` renders the same report with tables only.

Plots are drawn inside :func:`drawing`: matplotlib's default style whatever the user's matplotlibrc
says, labels as plain text (never mathtext or TeX: a label ``$\\foo$`` is those six characters), and
matplotlib's warnings and log lines kept off the terminal, the ones that matter said in tinykd's words.
A plot's size is bounded whatever the number of score points (the heat map grew with its square).
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import re
import warnings

import numpy as np

INSTALL = 'pip install "tinykd[report]"'
_BLUE, _ORANGE, _GREY = "#1f6fb2", "#e07b24", "#888888"
#: up to this many score points a plot grows with them and the heat map writes each count; beyond, the same size
FULL = 20
#: tick labels shown at most (every n-th beyond), and their length in characters
MAX_TICKS, TICK_CHARS = 25, 16
_PLAIN_TEXT = {"text.usetex": False, "text.parse_math": False}
#: reliability bins of fewer rows are not drawn (one answer makes a bin's accuracy 0 or 1, a point that misleads)
MIN_BIN_ROWS = 5
#: plots are drawn at twice the pixels they are shown at (sharp on any screen), a side at most this many pixels;
#: shown at this share of their drawn size in inches (at 96 CSS pixels an inch: about 0.9 of it)
SHARP, MAX_PIXELS, SHOWN = 2.0, 1650, 0.9
_GLYPH = re.compile(r"Glyph (\d+)\b.* missing from")


def available():
    """Whether matplotlib can be imported."""
    return importlib.util.find_spec("matplotlib") is not None


@contextlib.contextmanager
def drawing():
    """Where the plots are drawn: matplotlib's default style, text never read as mathtext or TeX, its
    warnings caught and its log quiet. Yields a list that gets, on leaving, one line per thing worth
    saying (characters the plots' font lacks)."""
    log = logging.getLogger("matplotlib")
    quiet = log.level == logging.NOTSET  # a level the user set is theirs
    if quiet:
        log.setLevel(logging.ERROR)  # e.g. "created a temporary cache directory": nothing for the reader to do
    said = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import matplotlib
            import matplotlib.style

            with matplotlib.style.context("default"), matplotlib.rc_context(_PLAIN_TEXT):
                yield said
        missing = sorted({int(m.group(1)) for w in caught for m in [_GLYPH.search(str(w.message))] if m})
        missing = [chr(c) if chr(c).isprintable() else f"U+{c:04X}" for c in missing]
        if missing:
            more = f" and {len(missing) - 20} more" if len(missing) > 20 else ""
            said.append(f"The plots' font has no glyph for {', '.join(missing[:20])}{more}: those characters show "
                        "as empty boxes in the plots; the tables show every label in full.")
    finally:
        if quiet:
            log.setLevel(logging.NOTSET)


def _tick_labels(labels):
    """``(positions, texts)``: at most :data:`MAX_TICKS` labels, each at most :data:`TICK_CHARS` characters."""
    step = -(-len(labels) // MAX_TICKS)
    pos = list(range(0, len(labels), step))
    return pos, [s if len(s) <= TICK_CHARS else s[:TICK_CHARS - 1] + "…" for s in (str(labels[i]) for i in pos)]


def _name(unit):
    s = str(unit["name"])
    return s if len(s) <= 60 else s[:59] + "…"


def _figure(w=5.2, h=3.6):
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), dpi=100, layout="constrained")


def _png(fig):
    """The figure as PNG bytes at up to :data:`SHARP` × its size in pixels (a side at most :data:`MAX_PIXELS`);
    the page shows it at its size (:func:`shown_width`)."""
    buf = io.BytesIO()
    side = max(fig.get_size_inches())
    fig.savefig(buf, format="png", dpi=fig.dpi * min(SHARP, MAX_PIXELS / (side * fig.dpi)))
    return buf.getvalue()


def shown_width(png):
    """The width in CSS pixels a plot is shown at: its pixels (from the PNG's IHDR) over :data:`SHARP`, times
    :data:`SHOWN`."""
    return int(round(int.from_bytes(png[16:20], "big") / SHARP * SHOWN))


def confusion(unit):
    """Heat-map of the confusion matrix (rows: human score, columns: machine score), counts written in
    up to :data:`FULL` score points."""
    cm = np.asarray(unit["confusion_matrix"], dtype=np.float64)
    labels = unit["labels"]
    k = len(labels)
    fig = _figure(1.6 + 0.75 * min(k, FULL), 1.3 + 0.7 * min(k, FULL))
    ax = fig.subplots()
    share = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(k if k <= FULL else 0):
        for j in range(k):
            ax.text(j, i, f"{int(cm[i, j]):,}", ha="center", va="center",
                    color="white" if share[i, j] > 0.55 else "black", fontsize=9)
    ax.set_xticks(*_tick_labels(labels))
    ax.set_yticks(*_tick_labels(labels))
    ax.set_xlabel("machine score")
    ax.set_ylabel("human score")
    ax.set_title(f"{_name(unit)}: confusion (share of each human score)", fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.8)
    return _png(fig)


def distributions(unit):
    """Bars of how often humans and the machine gave each score."""
    labels = unit["labels"]
    h = np.asarray(unit["score_counts"]["human"], dtype=np.float64)
    m = np.asarray(unit["score_counts"]["machine"], dtype=np.float64)
    x = np.arange(len(labels))
    fig = _figure(1.8 + 0.7 * min(len(labels), FULL), 3.0)
    ax = fig.subplots()
    ax.bar(x - 0.2, h / max(h.sum(), 1), 0.4, label="human", color=_BLUE)
    ax.bar(x + 0.2, m / max(m.sum(), 1), 0.4, label="machine", color=_ORANGE)
    ax.set_xticks(*_tick_labels(labels))
    ax.set_xlabel("score")
    ax.set_ylabel("share of the answers")
    ax.set_title(f"{_name(unit)}: score distributions", fontsize=9)
    ax.legend(frameon=False, fontsize=8)
    return _png(fig)


def drawn_bins(bins):
    """The reliability bins the diagram draws: those of at least :data:`MIN_BIN_ROWS` rows."""
    return [b for b in bins if b["n"] >= MIN_BIN_ROWS]


def reliability(cal):
    """Reliability diagram: accuracy against mean confidence per bin, before and after the
    temperature, with the diagonal of perfect calibration."""
    fig = _figure(4.4, 4.0)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], "--", color=_GREY, lw=1, label="perfect calibration")
    for key, color, marker in (("before", _GREY, "s"), ("after", _BLUE, "o")):
        bins = drawn_bins(cal[key]["bins"])
        if not bins:
            continue
        n = np.array([b["n"] for b in bins], dtype=np.float64)
        ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "-", color=color, lw=1.2,
                label=f"{'raw softmax' if key == 'before' else 'calibrated'} (ECE {cal[key]['ece']:.3f})")
        ax.scatter([b["confidence"] for b in bins], [b["accuracy"] for b in bins], s=12 + 200 * n / n.max(),
                   color=color, marker=marker, zorder=3)
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.03)
    ax.set_xlabel("confidence (top probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability (marker area: rows in the bin;\nbins of fewer than {MIN_BIN_ROWS} rows left out)",
                 fontsize=9)
    ax.legend(frameon=False, fontsize=8, loc="upper left")
    return _png(fig)


def review(rev):
    """Accuracy on the rows left to the machine against the share flagged for review."""
    fig = _figure(5.0, 3.6)
    ax = fig.subplots()
    c = rev["curve"]
    ax.plot(np.asarray(c["flagged"]) * 100, c["accuracy"], "-", color=_BLUE, lw=1.5)
    ax.axhline(rev["target"], color=_GREY, ls="--", lw=1, label=f"target accuracy {rev['target']:g}")
    v = rev.get("validation") or {}
    if "threshold" in v and v["here_accuracy"] == v["here_accuracy"]:
        ax.scatter([v["here_flagged"] * 100], [v["here_accuracy"]], color=_ORANGE, zorder=3,
                   label=f"--review-below {v['threshold']:.3f} (chosen on validation rows)")
    ax.set_xlim(0, 100)
    ax.set_xlabel("answers flagged for human review (%)")
    ax.set_ylabel("accuracy on the rest")
    ax.set_title("the human-review trade-off", fontsize=9)
    ax.legend(frameon=False, fontsize=8, loc="lower right")
    return _png(fig)
