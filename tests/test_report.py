"""``tinykd report`` end to end: the verdicts, a group the machine scores worse named on the page,
a second rater, per-item bundles, nominal labels, JSON, the page without matplotlib, and the
demo model's page opened from file:// in headless Chromium (a screenshot that is not blank,
no image that fails to load)."""
import base64
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import tinykd
from tinykd.cli.commands import main

from browser import chromium, needs_chromium
from conftest import assert_user_error, run_cli, write_csv

GOOD = "acid rain dissolves marble because it reacts with calcium carbonate".split()
BAD = "the rock gets wet and cold nothing happens maybe".split()
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_rows(seed=0, n_train=400, n_val=80, n_test=300):
    """Learnable toy answers (the score is how many 'good' words there are); in the test rows,
    group B's human scores are one point higher than the words say on 60% of its rows, so the
    machine scores group B lower than the humans do."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_train + n_val + n_test):
        y = int(rng.integers(0, 3))
        words = list(rng.choice(GOOD, 3 * y)) + list(rng.choice(BAD, 6 - y))
        rng.shuffle(words)
        split = "train" if i < n_train else "val" if i < n_train + n_val else "test"
        group = "B" if i % 2 else "A"
        human = y
        if split == "test" and group == "B" and rng.random() < 0.6:
            human = min(y + 1, 2)
        rater2 = human if rng.random() < 0.9 else int(np.clip(human + rng.choice([-1, 1]), 0, 2))
        rows.append({"id": f"r{i}", "item": f"Q{i % 2 + 1}", "split": split, "text": " ".join(words),
                     "label": str(human), "rater2": str(rater2), "group": group,
                     "word": ["none", "some", "all"][human], "school": f"s{i % 3}"})
    return rows


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("report")
    rows = make_rows()
    data = write_csv(d / "data.csv", rows)
    model = str(d / "m.npz")
    assert main(["train", data, "--out", model, "--epochs", "8", "--quiet"]) == 0
    return {"dir": d, "rows": rows, "data": data, "model": model}


def _imgs(page):
    return re.findall(r"<img\b[^>]*>", page)


def assert_self_contained(page):
    low = page.lower()
    assert "<script" not in low and "<link" not in low and "@import" not in low and "url(" not in low
    for attr in re.findall(r"""(?:src|href)\s*=\s*["']([^"']*)""", page, flags=re.I):
        assert attr.startswith("data:image/png;base64,"), attr[:60]
    for img in _imgs(page):
        b64 = re.search(r'src="data:image/png;base64,([^"]+)"', img).group(1)
        assert base64.b64decode(b64)[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_names_the_group_scored_worse(files, capsys):
    out = files["dir"] / "r.html"
    rc, text, err = run_cli(capsys, "report", files["model"], files["data"], "--split", "test", "--group-col",
                            "group", "--group-col", "school", "--rater2-col", "rater2", "--out", out)
    assert rc == 0, err
    lines = text.splitlines()
    assert lines[0].startswith("model (300 rows): NOT MET — ") and "SMD in group = B -" in lines[0].split("|")[0]
    assert "group = A" not in lines[0].split("|")[0]
    assert any(s.strip().startswith("group = B (150 rows): the machine scores this group lower than the humans do")
               for s in lines)
    assert any(s.startswith("calibration (temperature ") for s in lines)
    assert any(s.startswith("review: --target-accuracy 0.9 → --review-below ") for s in lines)
    assert lines[-1].startswith(f"wrote {out} (") and lines[-1].endswith("with plots)")
    page = out.read_text(encoding="utf-8")
    assert_self_contained(page)
    assert len(_imgs(page)) == 4  # distributions, confusion, reliability, review
    for needle in ("May this scorer be used?", "NOT MET", "by group", "by school", "Human–human agreement",
                   "group = B (150 rows): the machine scores this group lower", "Expected calibration error",
                   "--review-below", "degradation", "confusion"):
        assert needle in page, needle


def test_report_json_has_every_measure(files, capsys):
    rc, text, err = run_cli(capsys, "report", files["model"], files["data"], "--split", "test", "--rater2-col",
                            "rater2", "--group-col", "group", "--json")
    assert rc == 0, err
    res = json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in the JSON"))
    (u,) = res["units"]
    for key in ("n", "human_mean", "human_sd", "machine_mean", "machine_sd", "smd", "exact", "adjacent", "qwk", "r",
                "accuracy", "macro_f1", "confusion_matrix", "human_human", "groups", "checks", "verdict"):
        assert key in u, key
    assert u["n"] == 300 and res["split"] == "test" and res["ordinal"] is True
    assert {"qwk", "r", "exact", "degradation_qwk", "degradation_r"} <= set(u["human_human"])
    rows = [r for r in files["rows"] if r["split"] == "test"]
    pred = tinykd.load(files["model"]).predict([r["text"] for r in rows])
    h, m = np.array([int(r["label"]) for r in rows], float), np.array(pred, float)
    assert u["smd"] == pytest.approx((m.mean() - h.mean()) / h.std(ddof=1))
    assert u["accuracy"] == pytest.approx(np.mean(h == m))
    cal = res["calibration"]
    assert set(cal) >= {"before", "after", "temperature", "stored"} and len(cal["after"]["bins"]) == 10
    rev = res["review"]
    assert rev["curve"]["flagged"][0] == 0.0 and rev["curve"]["accuracy"][0] == pytest.approx(np.mean(h == m))
    assert rev["validation"]["target"] == 0.9


def test_report_per_item_bundle(files, tmp_path, capsys):
    model = str(tmp_path / "b.npz")
    assert main(["train", files["data"], "--out", model, "--item-col", "item", "--epochs", "4", "-q"]) == 0
    rc, text, err = run_cli(capsys, "report", model, files["data"], "--split", "test", "--out", tmp_path / "b.html")
    assert rc == 0, err
    verdicts = [s for s in text.splitlines() if " rows): " in s and not s.startswith(" ")]
    assert [v.split(" (")[0] for v in verdicts] == ["item Q1", "item Q2", "all items"]
    # 150 answers an item: too few to judge; the 300 of all items are judged
    assert [v.split(": ")[1].split(" —")[0] for v in verdicts][:2] == ["TOO FEW ANSWERS TO JUDGE"] * 2
    assert "TOO FEW" not in verdicts[2]
    page = (tmp_path / "b.html").read_text(encoding="utf-8")
    assert_self_contained(page)
    assert len(_imgs(page)) == 2 + 2 * 3
    # the per-item verdicts are rows of the verdict table, not lines of monospace text
    table = page[page.index("<h2>Verdict</h2>"):page.index("</table>", page.index("<h2>Verdict</h2>"))]
    assert table.count("too few answers to judge (&lt; 175)") == 2 and "majority-score baseline" in table
    assert "<div class='verdict'>" not in page and page.count("<p class='verdict'>") == 1
    assert "Units of fewer than 175 answers get no verdict" in page


def test_nominal_labels_get_no_ordinal_verdict(files, tmp_path, capsys):
    model = str(tmp_path / "w.npz")
    assert main(["train", files["data"], "--out", model, "--label-col", "word", "--epochs", "3", "-q"]) == 0
    rc, text, err = run_cli(capsys, "report", model, files["data"], "--split", "test", "--out", tmp_path / "w.html")
    assert rc == 0, err
    assert "NO VERDICT — the scores are nominal" in text and "do not apply" in text
    page = (tmp_path / "w.html").read_text(encoding="utf-8")
    assert "the ordinal measures (SMD, adjacent agreement, QWK, Pearson r)" in page and "no verdict" in page
    rc, text, _ = run_cli(capsys, "report", files["model"], files["data"], "--split", "test", "--nominal", "--json")
    assert rc == 0 and json.loads(text)["units"][0]["verdict"]["status"] == "not applicable"
    rc, text, _ = run_cli(capsys, "report", files["model"], files["data"], "--split", "test", "--no-plots", "--out",
                          tmp_path / "t.html")
    assert rc == 0 and text.rstrip().endswith("tables only (plots switched off))")
    assert not _imgs((tmp_path / "t.html").read_text(encoding="utf-8"))


def test_report_errors_are_one_line(files, tmp_path, capsys):
    rc, _, err = run_cli(capsys, "report", files["model"], files["data"])
    assert_user_error(rc, err, "--out")
    rc, _, err = run_cli(capsys, "report", files["model"], files["data"], "--group-col", "nope", "--json")
    assert_user_error(rc, err, "no column 'nope'", "--group-col")
    rc, _, err = run_cli(capsys, "report", files["model"], files["data"], "--split", "nope", "--json")
    assert_user_error(rc, err, "no rows with split == 'nope'")
    rc, _, err = run_cli(capsys, "report", files["model"], files["data"], "--json", "--target-accuracy", "2")
    assert_user_error(rc, err, "--target-accuracy must be in (0, 1]")


def test_without_matplotlib_the_same_report_has_tables_and_a_note(files, tmp_path):
    out = tmp_path / "plain.html"
    code = ("import sys; sys.modules['matplotlib'] = None\n"  # as if the [report] extra were not installed
            "from tinykd.cli.commands import main\n"
            f"rc = main(['report', {files['model']!r}, {files['data']!r}, '--split', 'test', '--out', {str(out)!r}])\n"
            "assert 'matplotlib' not in sys.modules or sys.modules['matplotlib'] is None\n"
            "sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert 'tables only; for the plots: pip install "tinykd[report]"' in r.stdout
    page = out.read_text(encoding="utf-8")
    assert_self_contained(page)
    assert not _imgs(page)
    assert "the plots need matplotlib" in page and "tinykd[report]" in page
    for needle in ("NOT MET", "Confusion matrix", "Expected calibration error", "accuracy on the rest"):
        assert needle in page


# ------------------------------------------------------------------------------ the demo
@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    from tinykd.cli import demo

    d = tmp_path_factory.mktemp("demo")
    out = str(d / "demo.npz")
    lines = []

    class Stream:
        def write(self, s):
            lines.append(s)

        def flush(self):
            pass

    assert demo.run_demo(out=out, quick=True, quiet=True, stream=Stream()) == 0
    return out, str(d / "demo-report.html"), "".join(lines)


def test_demo_ends_with_the_verdict_and_the_calibration(demo_run):
    out, report, text = demo_run
    lines = text.rstrip().splitlines()
    tail = lines[max(k for k, s in enumerate(lines) if s.startswith("may the ")):]
    assert tail[0].startswith("may the KD student score alone?") and report in tail[0]
    assert tail[1].startswith("  KD student (90 rows): TOO FEW ANSWERS TO JUDGE — fewer than 175 ")  # (--quick)
    assert tail[2].startswith("  calibration (temperature ") and "ECE on these rows" in tail[2]
    assert tail[-1].startswith("demo finished in ")
    assert os.path.exists(report) and tinykd.load(out).meta["calibration"]["method"] == "temperature"


def test_demo_writes_into_one_ignored_folder_and_says_where(tmp_path, monkeypatch):
    from tinykd.cli import demo

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    monkeypatch.chdir(tmp_path)
    lines = []
    stream = type("Stream", (), {"write": lambda self, s: lines.append(s), "flush": lambda self: None})()
    assert demo.run_demo(quick=True, quiet=True, stream=stream) == 0
    assert sorted(os.listdir(tmp_path)) == ["tinykd-demo"]
    assert sorted(os.listdir(tmp_path / "tinykd-demo")) == ["demo-report.html", "demo.npz"]
    last = "".join(lines).rstrip().splitlines()[-1]
    assert last.endswith("; its files: tinykd-demo/demo.npz (the model), tinykd-demo/demo-report.html "
                         "(its report page)"), last
    if os.path.isdir(os.path.join(root, ".git")):  # .gitignore covers the folder when the demo runs in a checkout
        ignored = subprocess.run(["git", "-C", root, "check-ignore", "-q", "tinykd-demo/demo.npz"])
        assert ignored.returncode == 0


CHECK_IMAGES = """<script>window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var bad = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); }).length;
  document.body.setAttribute('data-check', 'images=' + imgs.length + ';failed=' + bad);
});</script>"""


@needs_chromium
def test_demo_report_opens_in_headless_chromium(demo_run, tmp_path):
    from matplotlib.image import imread

    _, report, _ = demo_run
    page = open(report, encoding="utf-8").read()
    assert_self_contained(page)
    n_img = len(_imgs(page))
    assert n_img == 4
    shot = tmp_path / "shot.png"
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,2000", "file://" + report)
    px = imread(str(shot))[..., :3]
    assert px.shape[:2] == (2000, 1200)
    assert px.std() > 0.05  # not blank: text, tables and plots on a white page
    assert (px.std(axis=2) > 0.1).mean() > 0.001  # some colour (the met / not met cells, the plots)
    # every image loads: the page again, with a check run at the load event
    checked = tmp_path / "checked.html"
    checked.write_text(page.replace("</head>", CHECK_IMAGES + "</head>", 1), encoding="utf-8")
    dom = chromium(tmp_path, "--dump-dom", "file://" + str(checked))
    assert f'data-check="images={n_img};failed=0"' in dom
    broken = tmp_path / "broken.html"  # ...and the check can fail
    broken.write_text(checked.read_text(encoding="utf-8").replace("<h1>", '<img src="missing.png"><h1>', 1),
                      encoding="utf-8")
    assert f'data-check="images={n_img + 1};failed=1"' in chromium(tmp_path, "--dump-dom", "file://" + str(broken))


def test_report_page_shows_intervals_baseline_misjudged_and_the_chosen_threshold(files, capsys):
    """Issue 33: each criterion with its 95 % interval, the majority-score baseline, the misjudged answers of
    highest confidence with their words shaded by the student's explanation, the review table down to the
    chosen threshold, plots shown at under half their pixels (sharp, not wide)."""
    out = files["dir"] / "i.html"
    rc, text, err = run_cli(capsys, "report", files["model"], files["data"], "--split", "test", "--out", out)
    assert rc == 0, err
    rc, js, _ = run_cli(capsys, "report", files["model"], files["data"], "--split", "test", "--json")
    res = json.loads(js)
    (u,) = res["units"]
    assert {"qwk", "r", "smd", "exact", "adjacent"} <= set(u["intervals"])
    assert all(c["status"] in ("met", "not met", "uncertain", "undefined", "not checked") for c in u["checks"])
    page = out.read_text(encoding="utf-8")
    lo, hi = u["intervals"]["qwk"]
    assert f"<span class='ci'>[{lo:.3f}, {hi:.3f}]</span>" in page
    assert f"always {u['baseline']['score']}: exact {u['baseline']['exact']:.3f}" in page
    mis = res["misjudged"]
    assert mis["answers"] and mis["n_wrong"] == sum(r != str(c) for r, c in zip(
        [row["label"] for row in files["rows"] if row["split"] == "test"],
        tinykd.load(files["model"]).predict([row["text"] for row in files["rows"] if row["split"] == "test"])))
    confs = [a["confidence"] for a in mis["answers"]]
    assert confs == sorted(confs, reverse=True) and all(a["human"] != a["machine"] for a in mis["answers"])
    assert "Misjudged with the most confidence" in page
    if mis["explained"]:  # the student explains its scores: each word shaded by its weight's sign
        words = mis["answers"][0]["words"]
        assert [w for w, _ in words] and all(isinstance(v, float) for _, v in words)
        weights = [v for a in mis["answers"] for _, v in a["words"]]
        greens = re.findall(r"rgba\(40,160,60,[\d.]+\)' title='([^']+)'", page)
        reds = re.findall(r"rgba\(215,48,39,[\d.]+\)' title='([^']+)'", page)
        assert len(greens) == sum(v > 0 for v in weights) and all(float(w) > 0 for w in greens)
        assert len(reds) == sum(v < 0 for v in weights) and all(float(w) < 0 for w in reds)
    v = res["review"]["validation"]
    chosen = [s for s in res["review"]["steps"] if s.get("chosen")]
    assert len(chosen) == 1 and max(s["flagged"] for s in res["review"]["steps"]) >= v["here_flagged"]
    assert "the chosen threshold" in page
    for img in _imgs(page):
        b64 = re.search(r'src="data:image/png;base64,([^"]+)"', img).group(1)
        width = int(re.search(r'width="(\d+)"', img).group(1))
        pixels = int.from_bytes(base64.b64decode(b64)[16:20], "big")
        assert abs(pixels * 0.45 - width) <= 1 and width <= 600  # drawn at 2×, shown at 0.9 of the drawn inches
