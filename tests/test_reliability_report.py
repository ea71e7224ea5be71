"""``tinykd report`` and ``tinykd evaluate`` on label sets, label text and the libraries' warnings (issue 32:
defects 7, 12 and 20's warnings), in the style of ``tests/test_bad_input.py``: one table per kind of check.

* ``LABEL_SETS``: a label column far beyond a scoring scale (a wrong ``--label-col`` or ``--rater2-col``:
  ids, answers; a model of 150 classes), a ``--group-col`` of ids — refused in one line naming the column,
  before the rows are scored, with nothing written;
  ``API_LABEL_SETS``: the same in Python, naming the argument. ``WITHIN``: label sets at the bound are
  reported, and their plots drawn at a bounded size (the heat map grew with the square of the labels).
* ``MARKUP``: labels that matplotlib would read as mathtext or TeX (``$\\foo$``) — a page with every plot,
  the label shown as the text it is.
* ``QUIET``: inputs that made NumPy or matplotlib warn, or scikit-learn fail in its own words — no warning
  reaches stderr, the numbers are right, and what matters is said on the page in tinykd's words.
"""
import base64
import csv
import html
import json
import os
import re
import struct
import subprocess
import sys
import warnings

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

import tinykd
from tinykd.quality.evaluate import evaluation_report, fitness_report
from tinykd.scoring.student import save

from conftest import assert_user_error
from conftest import run_cli as run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORDS = "acid rain dissolves marble rock water heat energy light plant".split()
TINY = dict(config=dict(embed_dim=8, units=8, dense_units=8), epochs=1, verbose=False, validation=False)
#: the largest plot a page may hold, in pixels a side (the heat map of 20 score points; 100 points drew 7,660)
MAX_SIDE = 1700


def _texts(n, seed=0):
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, 4 + i % 3)) for i in range(n)]


def _student(labels, n=60, path=None):
    st_ = tinykd.fit(_texts(n), [labels[i % len(labels)] for i in range(n)], **TINY)
    st_.meta["columns"] = {"text": "text", "label": "label"}
    if path:
        save(st_, path)
    return st_


def _write(path, labels, n=None):
    """A data file of ``n`` rows (default: one per label): id, text, label (``labels`` in turn), rater2."""
    n = n or len(labels)
    texts = _texts(n, seed=1)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "text", "label", "rater2"])
        for i in range(n):
            w.writerow([f"r{i}", texts[i], labels[i % len(labels)], i % 3])
    return str(path)


class Ctx:
    """The module's 3-class model (scores 0, 1, 2: ``model``, ``student``) and a 200-row data file ``data``
    (id r0…r199, text, label, rater2); ``tmp`` the test's own folder."""

    def __init__(self, folder):
        self.folder = folder
        self.model = str(folder / "m.npz")
        self.student = _student([0, 1, 2], path=self.model)
        self.data = _write(folder / "d.csv", [0, 1, 2], n=200)
        self.tmp = None

    def out(self, name):
        return str(self.tmp / name)

    def file(self, name, labels, n=None):
        return _write(self.tmp / name, labels, n)

    def model_of(self, k):
        """A model of ``k`` classes 0 … k-1, in the test's folder."""
        path = self.out(f"m{k}.npz")
        _student(list(range(k)), n=2 * k, path=path)
        return path


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    return Ctx(tmp_path_factory.mktemp("reliability-report"))


@pytest.fixture
def c(ctx, tmp_path):
    ctx.tmp = tmp_path
    return ctx


def _listing(folder):
    return {name: open(os.path.join(folder, name), "rb").read() for name in sorted(os.listdir(folder))}


def _pngs(page):
    return [base64.b64decode(b) for b in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]


def _side(png):
    """The larger side of a PNG, in pixels (its IHDR chunk)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return max(struct.unpack(">II", png[16:24]))


# ============================================================================ defect 7: label sets
NOT_A_SCALE = "is it the column of human scores?"

#: (what, the command line (a function of a Ctx), fragments of the error line)
LABEL_SETS = [
    ("report --label-col id", lambda c: ["report", c.model, c.data, "--label-col", "id", "--json"],
     ("column 'id' (--label-col) holds 200 values that are not among the model's 3 classes (0, 1, 2)",
      "e.g. 'r0', 'r1', 'r2'", NOT_A_SCALE)),
    ("report --label-col id --out page", lambda c: ["report", c.model, c.data, "--label-col", "id", "--out",
                                                    c.out("r.html")], ("column 'id' (--label-col) holds 200 values",)),
    ("evaluate --label-col id", lambda c: ["evaluate", c.model, c.data, "--label-col", "id"],
     ("column 'id' (--label-col) holds 200 values", NOT_A_SCALE)),
    ("report --label-col text: the answers as scores", lambda c: ["report", c.model, c.data, "--label-col", "text",
                                                                  "--json"], ("column 'text' (--label-col) holds",)),
    ("report --rater2-col id", lambda c: ["report", c.model, c.data, "--rater2-col", "id", "--json"],
     ("column 'id' (--rater2-col) holds 200 values", NOT_A_SCALE)),
    ("evaluate --rater2-col id", lambda c: ["evaluate", c.model, c.data, "--rater2-col", "id", "--json"],
     ("column 'id' (--rater2-col) holds 200 values",)),
    ("report: 27 values beyond 3 classes", lambda c: ["report", c.model, c.file("s.csv", list(range(30))), "--json"],
     ("column 'label' (--label-col) holds 27 values", "at most 20 may lie beyond the model's classes")),
    ("report: 21 values beyond 3 classes", lambda c: ["report", c.model, c.file("s.csv", list(range(24))), "--json"],
     ("column 'label' (--label-col) holds 21 values",)),
    ("report: a model of 150 classes", lambda c: ["report", c.model_of(150), c.data, "--json"],
     ("the model has 150 classes, more than the 100 score points", "was it trained on the wrong label column?")),
    ("evaluate: a model of 150 classes", lambda c: ["evaluate", c.model_of(150), c.data],
     ("the model has 150 classes",)),
    ("report --group-col id: 600 groups", lambda c: ["report", c.model, c.file("s.csv", [0, 1, 2], n=600),
                                                     "--group-col", "id", "--json"],
     ("group column 'id' holds 600 groups, more than the 500 a report compares", "e.g. 'r0', 'r1', 'r2'",
      "is it a column of subgroups")),
]


@pytest.mark.parametrize("what,command,needles", LABEL_SETS, ids=[r[0] for r in LABEL_SETS])
def test_a_label_set_far_beyond_a_scale_is_refused_naming_the_column(c, capsys, what, command, needles):
    args = command(c)
    before = _listing(c.tmp)
    rc, _, err = run(capsys, *args)
    assert_user_error(rc, err, *needles)
    assert len(err) < 600, err  # a few values quoted, each bounded
    assert _listing(c.tmp) == before


IDS, SCORES = [f"r{i}" for i in range(200)], [i % 3 for i in range(200)]
#: (what, the call (a function of a Ctx), the start of the message)
API_LABEL_SETS = [
    ("evaluation_report: ids as labels", lambda c: evaluation_report(c.student, _texts(200), IDS),
     "labels holds 200 values that are not among the model's 3 classes"),
    ("fitness_report: ids as labels", lambda c: fitness_report(c.student, _texts(200), IDS), "labels holds 200 values"),
    ("fitness_report: ids as rater2", lambda c: fitness_report(c.student, _texts(200), SCORES, rater2=IDS),
     "rater2 holds 200 values"),
    ("evaluation_report: ids as rater2", lambda c: evaluation_report(c.student, _texts(200), SCORES, rater2=IDS),
     "rater2 holds 200 values"),
    ("fitness_report: ids as groups", lambda c: fitness_report(c.student, _texts(600), SCORES * 3,
                                                               groups={"id": [f"r{i}" for i in range(600)]}),
     "group column 'id' holds 600 groups"),
]


@pytest.mark.parametrize("what,call,start", API_LABEL_SETS, ids=[r[0] for r in API_LABEL_SETS])
def test_the_api_refuses_a_label_set_far_beyond_a_scale(c, what, call, start):
    with pytest.raises(ValueError) as e:
        call(c)
    assert str(e.value).startswith(start) and "\n" not in str(e.value), str(e.value)


#: (what, the command line, labels in the JSON report, plots on the page): at the bound, a report with plots
WITHIN = [
    ("20 values beyond the model's 3 classes", lambda c: [c.model, c.file("s.csv", list(range(23)), n=92)], 23, 4),
    ("a model of 50 classes and 50 values more", lambda c: [c.model_of(50), c.file("s.csv", list(range(100)))], 100, 4),
    ("20 text values beyond the classes", lambda c: [c.model, c.file("s.csv", [0, 1, 2] + [f"x{i}" for i in range(20)],
                                                                     n=46)], 23, 4),
]


@pytest.mark.parametrize("what,command,n_labels,n_plots", WITHIN, ids=[r[0] for r in WITHIN])
def test_a_label_set_within_the_bound_is_reported_with_plots_of_bounded_size(c, capsys, what, command, n_labels,
                                                                             n_plots):
    page = c.out("r.html")
    rc, out, err = run(capsys, "report", *command(c), "--out", page, "--json")
    assert rc == 0, err
    assert len(json.loads(out)["labels"]) == n_labels
    pngs = _pngs(open(page, encoding="utf-8").read())
    assert len(pngs) == n_plots
    assert max(_side(p) for p in pngs) <= MAX_SIDE, [_side(p) for p in pngs]


# ============================================================================ defect 12: labels are text
#: (what, a label the humans gave): each a page with its four plots, the label on it as text
MARKUP = [
    ("mathtext: an unknown symbol", r"$\foo$"),
    ("mathtext: a superscript", "$x^2$"),
    ("mathtext: a fraction left open", r"$\frac{1}{$"),
    ("an escaped dollar", r"\$5"),
    ("three dollars", "a$b$c$"),
    ("two dollars around nothing", "$$"),
    ("TeX specials", r"50% & #1 _{x} ~\\"),
    ("HTML", "<b>&amp;</b><script>x</script>"),
]


@pytest.mark.parametrize("what,label", MARKUP, ids=[r[0] for r in MARKUP])
def test_a_label_is_text_in_the_plots_and_on_the_page(c, capsys, what, label):
    page = c.out("r.html")
    rc, out, err = run(capsys, "report", c.model, c.file("s.csv", [0, 1, label], n=30), "--out", page)
    assert rc == 0, err
    text = open(page, encoding="utf-8").read()
    assert len(_pngs(text)) == 4
    assert html.escape(label, quote=True) in text and "<script>x" not in text


def test_item_names_are_text_in_the_plots(c, capsys):
    items = [r"$\x$", "$y^2$"]
    n = 40
    fit = {k: v for k, v in TINY.items() if k != "validation"}
    bundle = tinykd.fit_items(_texts(n), [i % 3 for i in range(n)], items=[items[i % 2] for i in range(n)], **fit)
    save(bundle, c.out("b.npz"))
    data = c.out("b.csv")
    with open(data, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "text", "label", "item"])
        w.writerows([[i, t, i % 3, items[i % 2]] for i, t in enumerate(_texts(n))])
    rc, _, err = run(capsys, "report", c.out("b.npz"), data, "--item-col", "item", "--out", c.out("r.html"))
    assert rc == 0, err
    text = open(c.out("r.html"), encoding="utf-8").read()
    assert len(_pngs(text)) == 2 + 2 * 3 and html.escape(r"item $\x$") in text


def test_a_tex_setting_of_the_user_does_not_reach_the_plots(c, capsys, monkeypatch):
    matplotlib = pytest.importorskip("matplotlib")
    monkeypatch.setitem(matplotlib.rcParams, "text.usetex", True)  # as a matplotlibrc may say; no LaTeX here
    rc, _, err = run(capsys, "report", c.model, c.file("s.csv", [0, 1, r"$\foo$"], n=30), "--out", c.out("r.html"))
    assert rc == 0, err
    assert len(_pngs(open(c.out("r.html"), encoding="utf-8").read())) == 4
    assert matplotlib.rcParams["text.usetex"] is True  # the user's setting is left as it was


# ============================================================================ defect 20: warnings
def _qwk_on_positions(res):
    """scikit-learn's QWK of the report's human and machine scores as positions on its scale."""
    k = len(res["labels"])
    u = res["units"][-1]
    h = [i for i, row in enumerate(u["confusion_matrix"]) for _ in range(sum(row))]
    m = [j for row in u["confusion_matrix"] for j, n in enumerate(row) for _ in range(n)]
    return cohen_kappa_score(h, m, labels=list(range(k)), weights="quadratic")


#: (what, the labels of the data file, what the page says, a check of the JSON report)
QUIET = [
    ("labels in a script the plot font lacks", ["良い", "悪い", "0"], "no glyph for い, 悪, 良",
     lambda res: res["ordinal"] is False),
    ("a label of 300 characters", ["a" * 300, "0", "1"], "a" * 300, lambda res: len(res["labels"]) == 4),
    ("scores of ±1e308 (they overflow a mean)", ["1e308", "-1e308", "0"], "SMD undefined",
     lambda res: res["units"][0]["smd"] is None and res["units"][0]["verdict"]["status"] == "too few"),  # 30 rows
    ("half-point scores (scikit-learn: 'continuous')", ["0", "0.5", "1", "1.5", "2"], "QWK",
     lambda res: res["units"][0]["qwk"] == pytest.approx(_qwk_on_positions(res), abs=1e-12)),
]


@pytest.mark.parametrize("what,labels,on_page,check", QUIET, ids=[r[0] for r in QUIET])
def test_no_library_warning_reaches_stderr(c, capsys, what, labels, on_page, check):
    data, page = c.file("s.csv", labels, n=30), c.out("r.html")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rc, out, err = run(capsys, "report", c.model, data, "--out", page, "--json")
        rc2, out2, err2 = run(capsys, "evaluate", c.model, data, "--json")
    assert (rc, rc2) == (0, 0), err + err2
    assert [f"{w.category.__name__}: {w.message}" for w in caught] == []
    assert "Warning" not in err + err2 and "warn" not in err + err2
    assert on_page in html.unescape(open(page, encoding="utf-8").read())
    assert check(json.loads(out))
    assert json.loads(out2)["n"] == 30


def test_matplotlib_log_lines_do_not_reach_stderr(c, tmp_path):
    pytest.importorskip("matplotlib")
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    code = ("import sys; from tinykd.cli.commands import main\n"
            f"sys.exit(main(['report', {c.model!r}, {c.data!r}, '--out', {str(tmp_path / 'r.html')!r}]))")
    env = {**os.environ, "MPLCONFIGDIR": str(not_a_folder / "mpl")}  # a config folder matplotlib cannot make
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "", r.stderr
