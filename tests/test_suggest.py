"""``tinykd suggest`` and :mod:`tinykd.quality.suggest`: the unscored answers to score next — never a scored
row, never two copies of one answer, the teacher's disagreement first, the same file for the same seed."""
import json
import os

import numpy as np
import pytest

import tinykd
from tinykd.cli.commands import main
from tinykd.files.softlabels import write_soft_labels
from tinykd.quality.suggest import normalised, priorities, suggest

from conftest import read_csv, write_csv
from test_cli import BAD, GOOD


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """120 scored answers (the score: how many 'good' words) and 60 unscored ones; a model trained on them."""
    d = tmp_path_factory.mktemp("suggest")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(180):
        y = int(rng.integers(0, 3))
        words = list(rng.choice(GOOD, 3 * y)) + list(rng.choice(BAD, 6 - y))
        rng.shuffle(words)
        rows.append({"id": f"r{i}", "split": "train" if i < 100 else "val", "text": " ".join(words),
                     "label": str(y) if i < 120 else ("NA" if i % 2 else "")})
    data = write_csv(d / "data.csv", rows)
    model = str(d / "m.npz")
    assert main(["train", data, "--out", model, "--epochs", "3", "--quiet"]) == 0
    return {"dir": d, "rows": rows, "data": data, "model": model}


# ------------------------------------------------------------------------------------------- the core
def test_normalised_text():
    assert normalised("  Acid  rain, DISSOLVES!\tmarble_ ") == "acid rain dissolves marble"
    assert normalised("Éclair?") == normalised("éclair") == "éclair"


def test_priority_is_uncertainty_plus_disagreement():
    p = np.array([[0.5, 0.3, 0.2], [0.9, 0.05, 0.05], [0.5, 0.3, 0.2], [0.5, 0.3, 0.2]])
    t = np.array([[0.1, 0.8, 0.1], [0.9, 0.05, 0.05], [np.nan] * 3, [0.5, 0.3, 0.2]])
    prio, unc, dis = priorities(p, t)
    np.testing.assert_allclose(unc, [0.8, 0.15, 0.8, 0.8])
    np.testing.assert_allclose(dis, [(0.5 + 1) / 2, 0, 0, 0])  # TV 0.5, top classes differ
    np.testing.assert_allclose(prio, unc + dis)


def test_teacher_disagreement_raises_a_rows_priority():
    texts = ["the marble dissolves", "the rock gets wet", "it reacts with calcium"]
    p = np.array([[0.45, 0.55], [0.42, 0.58], [0.40, 0.60]])  # row 0 is the student's least sure
    assert [i for i, _ in suggest(texts, p, n=3)] == [0, 1, 2]
    t = np.array([[np.nan, np.nan], [0.4, 0.6], [0.95, 0.05]])  # the teacher disagrees on row 2 only
    got = suggest(texts, p, n=3, teacher_proba=t, classes=["wrong", "right"])
    assert [i for i, _ in got] == [2, 0, 1]
    assert got[0][1] == "student says right (0.60), teacher says wrong (0.95)"
    assert got[1][1] == "student unsure: 0.55 for right, 0.45 for wrong"


def test_no_two_suggestions_share_a_normalised_text():
    texts = ["Acid rain!", "acid  rain", "ACID RAIN.", "the rock", "The rock?", "marble"]
    p = np.array([[0.5, 0.5], [0.51, 0.49], [0.52, 0.48], [0.7, 0.3], [0.6, 0.4], [0.9, 0.1]])
    got = suggest(texts, p, n=6)
    assert [i for i, _ in got] == [0, 4, 5]  # the most uncertain of each text, in priority order


def test_spread_over_kinds_of_answers():
    """The 6 most uncertain answers are one kind (the same sentence and a number); n=2 takes one of them and
    the most uncertain of the other kind, not the two most uncertain rows."""
    texts = [f"acid rain dissolves the marble statue slowly {k}" for k in range(6)]
    texts += ["the rock gets wet and cold", "nothing happens to the rock when wet"]
    p = np.array([[0.5 + 0.01 * k, 0.5 - 0.01 * k] for k in range(8)])
    got = [i for i, _ in suggest(texts, p, n=2, seed=0)]
    assert got == [0, 6]


def test_same_input_same_output_and_n_over_the_pool():
    rng = np.random.default_rng(1)
    texts = [" ".join(rng.choice(GOOD + BAD, 5)) for _ in range(300)]
    p = rng.dirichlet([1, 1, 1], 300)
    a, b = suggest(texts, p, n=20, seed=3), suggest(texts, p, n=20, seed=3)
    assert a == b and len(a) == 20 and len({normalised(texts[i]) for i, _ in a}) == 20
    every = suggest(texts, p, n=10_000)
    distinct = len({normalised(t) for t in texts})
    assert len(every) == distinct
    prio = priorities(p)[0]
    assert [prio[i] for i, _ in every] == sorted((prio[i] for i, _ in every), reverse=True)


def test_core_refuses_a_bad_n():
    with pytest.raises(ValueError, match="n must be a whole number >= 1"):
        suggest(["a"], np.array([[0.5, 0.5]]), n=0)


# --------------------------------------------------------------------------------------- the command
def test_suggest_never_returns_a_scored_row(files, capsys):
    out = str(files["dir"] / "all.csv")
    assert main(["suggest", files["model"], files["data"], "--n", "1000", "--out", out]) == 0
    unscored = [r for r in files["rows"] if r["label"] in ("", "NA")]
    assert f"suggested {len(unscored):,} of {len(unscored):,} unscored answers → {out}" in capsys.readouterr().out
    got = read_csv(out)
    assert {r["id"] for r in got} == {r["id"] for r in unscored}  # --n over the pool: the whole pool
    assert [int(r["priority"]) for r in got] == list(range(1, len(got) + 1))
    assert list(got[0]) == ["id", "split", "text", "label", "priority", "reason", "pred", "confidence"]
    m = tinykd.load(files["model"])
    p = m.predict_proba([r["text"] for r in got])
    assert [r["pred"] for r in got] == [str(m.classes[k]) for k in p.argmax(1)]
    np.testing.assert_allclose([float(r["confidence"]) for r in got], p.max(1), atol=1e-4)
    margin = 1 - np.diff(np.sort(p, axis=1)[:, -2:], axis=1)[:, 0]
    assert list(margin) == sorted(margin, reverse=True)  # no teacher: by the student's uncertainty
    assert all(r["reason"].startswith("student unsure: ") for r in got)


def test_suggest_is_deterministic_and_skips_near_copies(files, capsys):
    """40 near-copies of the most uncertain unscored answer: one of them is suggested, first."""
    m = tinykd.load(files["model"])
    rows = files["rows"]
    unscored = [r for r in rows if r["label"] in ("", "NA")]
    p = np.sort(m.predict_proba([r["text"] for r in unscored]), axis=1)
    worst = unscored[int(np.argmin(p[:, -1] - p[:, -2]))]["text"]
    copies = [{"id": f"c{k}", "split": "val", "text": (worst.upper() if k % 2 else worst) + "!" * (k % 3)
               + " " * k, "label": ""} for k in range(40)]
    data = write_csv(files["dir"] / "copies.csv", rows + copies)
    outs = [str(files["dir"] / f"copies-{k}.csv") for k in range(2)]
    for out in outs:
        assert main(["suggest", files["model"], data, "--n", "15", "--out", out, "--seed", "7", "-q"]) == 0
    assert "suggested 15 of 100 unscored answers" in capsys.readouterr().out
    with open(outs[0], "rb") as a, open(outs[1], "rb") as b:
        assert a.read() == b.read()
    got = read_csv(outs[0])
    keys = [normalised(r["text"]) for r in got]
    assert len(got) == 15 and len(set(keys)) == 15 and keys[0] == normalised(worst)


def _stage(work, key, rows, proba, mtime, stage="teacher"):
    folder = work / f"{stage}-{key}"
    folder.mkdir(parents=True)
    write_soft_labels(str(folder / "teacher.csv"), [r["id"] for r in rows], [0, 1, 2], np.asarray(proba))
    (folder / "done.json").write_text(json.dumps({"seconds": 1.0}))
    os.utime(folder / "done.json", (mtime, mtime))


@pytest.mark.parametrize("newest", ["teacher", "ensemble"])
def test_work_folders_teacher_raises_disagreement(files, tmp_path, capsys, newest):
    """Every finished teacher stage counts, the newest one where several hold an id (the latest round's
    teacher, or the ensemble of ``--teacher-members``, made after its members); where that teacher's top class differs from the student's, the row comes first and the reason
    says so — and a row only an older teacher disagreed on does not."""
    m = tinykd.load(files["model"])
    unscored = [r for r in files["rows"] if r["label"] in ("", "NA")]
    p = m.predict_proba([r["text"] for r in unscored])
    calm, other = (int(i) for i in np.argsort(-p.max(1), kind="stable")[:2])  # the student's two surest answers
    flip = lambda row: np.roll(np.eye(3)[row.argmax()], 1)  # noqa: E731  (a teacher sure of another class)
    t_old = p.copy()
    t_old[calm] = flip(p[calm])
    _stage(tmp_path, "old", unscored, t_old, 1_000_000)
    t_new = p[[calm, other]].copy()
    t_new[1] = flip(p[other])
    _stage(tmp_path, "new", [unscored[calm], unscored[other]], t_new, 2_000_000, newest)
    out = str(tmp_path / "s.csv")
    assert main(["suggest", files["model"], files["data"], "--n", "5", "--out", out, "--work", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert f"teacher: 2 of the 2 finished teacher stage(s) in {tmp_path} hold 60 of the 60 unscored answers" in err
    got = read_csv(out)
    assert got[0]["id"] == unscored[other]["id"] and unscored[calm]["id"] not in [r["id"] for r in got]
    assert got[0]["reason"].startswith(f"student says {m.classes[p[other].argmax()]} (")
    assert ", teacher says " in got[0]["reason"] and got[0]["reason"].endswith("(1.00)")


@pytest.mark.parametrize("argv, message", [
    (["--n", "0"], "--n must be >= 1, got 0"),
    (["--text-col", "answer"], "no column 'answer' (set --text-col)"),
    (["--label-col", "grade"], "no column 'grade' (set --label-col)"),
    (["--where", "split=train"], "no unscored rows: every one of the 100 rows has a score in column 'label'"),
    (["--work", "nowhere"], "--work nowhere: no such folder"),
])
def test_errors_are_one_line(files, capsys, argv, message):
    out = str(files["dir"] / "err.csv")
    assert main(["suggest", files["model"], files["data"], "--out", out, *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tinykd: error: ") and message in err and err.count("\n") == 1
    assert not os.path.exists(out)
