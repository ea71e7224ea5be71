"""``tinykd score --human-col COL`` (human scores are final): the ``final`` and ``source`` columns of every row of
a hand-made file, the counts and the machine's agreement in the summary, a human score that is no class of the
model, the refusals (a ``final`` column already there, a missing COL, Dask), and the output without the option
unchanged to the byte."""
import csv
import io

import numpy as np
import pytest

from tinykd.cli.commands import main
from tinykd.files.csvfiles import DataFileError
from tinykd.scoring.scorefile import FinalScores, score_csv
from tinykd.scoring.student import load

from conftest import read_csv, write_csv
from test_cli import BAD, GOOD, make_rows

#: (answer, human score cell): two people's 1 spelt two ways, a 2 with spaces, a 4 (no class of the model), a 0,
#: an empty cell, "NA" (no score, as for every label in tinykd) and two more rows nobody scored
ANSWERS = [("with rock the happens the happens acid with", "1"), (" ".join(GOOD[:6]), " 2 "),
           ("nothing gets dissolves wet because it happens the", "1.0"),
           (" ".join(BAD), "4"), (" ".join(BAD[:5]), "0"), (" ".join(GOOD[:3] + BAD[:3]), ""),
           (" ".join(BAD[:4] + GOOD[:1]), "NA"), (" ".join(GOOD[2:9]), ""), ("", "")]
#: each row's human score as ``final`` writes it (None: the machine's)
HUMAN_FINAL = ["1", "2", "1.0", "4", "0", None, None, None, None]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("human")
    model = str(d / "m.npz")
    assert main(["train", write_csv(d / "train.csv", make_rows()), "--out", model, "--epochs", "40", "--patience", "40",
                 "--quiet"]) == 0
    rows = [{"id": f"a{k}", "text": t, "human": h} for k, (t, h) in enumerate(ANSWERS)]
    data = write_csv(d / "data.csv", rows)
    assert main(["score", model, data, "--out", str(d / "plain.csv"), "--quiet"]) == 0
    conf = sorted(float(r["confidence"]) for r, h in zip(read_csv(d / "plain.csv"), HUMAN_FINAL) if h is None)
    assert conf[1] < conf[2]  # a threshold that flags two of the four rows nobody scored
    return {"dir": d, "model": model, "data": data, "review": f"{(conf[1] + conf[2]) / 2:.6f}"}


def test_final_source_counts_and_agreement(setup, capsys):
    d = setup["dir"]
    capsys.readouterr()
    args = ["score", setup["model"], setup["data"], "--review-below", setup["review"]]
    assert main(args + ["--out", str(d / "plain.csv")]) == 0
    assert main(args + ["--out", str(d / "final.csv"), "--human-col", "human"]) == 0
    out, err = capsys.readouterr()
    plain, scored = read_csv(d / "plain.csv"), read_csv(d / "final.csv")
    assert list(scored[0]) == list(plain[0]) + ["final", "source"]
    for p, s in zip(plain, scored):  # the machine scored every row as without the option
        assert {k: s[k] for k in p} == p
    machine = [(s["pred"], s["needs_review"]) for s, h in zip(scored, HUMAN_FINAL) if h is None]
    assert sorted(rv for _, rv in machine) == ["0", "0", "1", "1"]
    for s, h in zip(scored, HUMAN_FINAL):
        if h is None:
            assert (s["final"], s["source"]) == (s["pred"], "machine, needs review" if s["needs_review"] == "1"
                                                 else "machine")
        else:
            assert (s["final"], s["source"]) == (h, "human")
    preds = [s["pred"] for s in scored[:5]]
    agree = sum(p == h for p, h in zip(preds, ["1", "2", "1", "4", "0"]))  # "1.0" is the score 1; 4 is never pred
    assert f"final: 5 human, 2 machine, 2 machine (needs review); machine agrees with {agree} of 5 human " \
           f"scores ({agree / 5:.1%})" in out
    assert "note: 1 human score(s) are not classes of the model: 4 (final all the same" in err

    res = score_csv(load(setup["model"]), setup["data"], str(d / "api.csv"), human_col="human",
                    review_below=float(setup["review"]))
    assert res["final"] == {"human": 5, "machine": 2, "review": 2, "agree": agree, "both": 5}
    assert res["not_classes"] == {"4": 1}
    assert (d / "api.csv").read_bytes() == (d / "final.csv").read_bytes()


def test_without_the_option_the_output_is_unchanged(setup):
    """The file scored without --human-col is, byte for byte, the one with it less its last two columns."""
    d = setup["dir"]
    assert main(["score", setup["model"], setup["data"], "--out", str(d / "a.csv"), "--quiet"]) == 0
    assert main(["score", setup["model"], setup["data"], "--out", str(d / "b.csv"), "--human-col", "human",
                 "--quiet"]) == 0
    with open(d / "b.csv", newline="", encoding="utf-8") as f:
        rows = [r[:-2] for r in csv.reader(f)]
    buf = io.StringIO(newline="")
    csv.writer(buf, lineterminator="\n").writerows(rows)
    assert rows[0][-1] == "needs_review" and len(rows) == len(ANSWERS) + 1
    assert (d / "a.csv").read_bytes() == buf.getvalue().encode("utf-8")
    assert "final" not in read_csv(d / "a.csv")[0]


def test_refusals(setup, capsys):
    d = setup["dir"]
    clash = write_csv(d / "clash.csv", [{"text": "acid rain", "human": "1", "final": "2"}])
    capsys.readouterr()
    assert main(["score", setup["model"], clash, "--out", str(d / "c.csv"), "--human-col", "human"]) == 2
    assert capsys.readouterr().err.strip() == (f"tinykd: error: {clash} already has column(s) final; rename them "
                                               "(was it scored already?)")
    assert main(["score", setup["model"], clash, "--out", str(d / "c.csv")]) == 0  # without it: an ordinary column
    assert main(["score", setup["model"], setup["data"], "--out", str(d / "c2.csv"), "--human-col", "grade"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"tinykd: error: {setup['data']}: no column 'grade' (set --human-col)") and "\n" not in err
    assert not (d / "c2.csv").exists()
    assert main(["score", setup["model"], setup["data"], "--out", str(d / "parts"), "--human-col", "human",
                 "--jobs", "1"]) == 2
    assert capsys.readouterr().err.strip() == ("tinykd: error: --human-col scores one CSV file in this process; "
                                               "drop --dask / --jobs, or score the files one at a time")
    with pytest.raises(DataFileError, match="no column 'grade'"):
        score_csv(load(setup["model"]), setup["data"], str(d / "c3.csv"), human_col="grade")


def test_final_cells_are_spreadsheet_safe_and_take_the_score_code():
    """A person's cell that a spreadsheet would run is written with a leading '; a model given score names
    (pred and pred_name) puts the code in final; text classes compare stripped."""
    f = FinalScores(["bad", "good"])
    cells = list(f.cells(["=HYPERLINK(1)", " good ", "", "-1", "n/a"], np.array([0, 1, 1, 0, 0]),
                         [["bad", "Bad"], ["good", "Good"], ["good", "Good"], "bad", "bad"],
                         np.array([False, False, True, False, False])))
    assert cells == [["'=HYPERLINK(1)", "human"], ["good", "human"], ["good", "machine, needs review"],
                     ["-1", "human"], ["bad", "machine"]]
    assert f.counts == {"human": 3, "machine": 1, "review": 1, "agree": 1, "both": 3}
    assert f.not_classes == {"=HYPERLINK(1)": 1, "-1": 1}


def test_numeric_scores_compare_as_evaluate_compares_them():
    """``1.0``, `` 01 `` and ``1`` are one score (label_key), written in final as the person wrote them, stripped."""
    f = FinalScores([0, 1, 2])
    cells = list(f.cells(["1.0", " 01 ", "2", "3.5"], np.array([1, 1, 1, 2]), ["1", "1", "1", "2"],
                         np.zeros(4, bool)))
    assert cells == [["1.0", "human"], ["01", "human"], ["2", "human"], ["3.5", "human"]]
    assert f.counts == {"human": 4, "machine": 0, "review": 0, "agree": 2, "both": 4}
    assert f.not_classes == {"3.5": 1}
