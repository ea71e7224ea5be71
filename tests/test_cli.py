"""The command line end to end on a small CSV: train → info → score → evaluate, with and
without a teacher, with an item column; and the demo in its reduced mode."""
import json
import os

import numpy as np
import pytest

import tinykd
from tinykd.scoring.student import Bundle
from tinykd.cli.commands import main

from conftest import read_csv, write_csv
from tinykd.files.softlabels import write_soft_labels

GOOD = "acid rain dissolves marble because it reacts with calcium carbonate".split()
BAD = "the rock gets wet and cold nothing happens maybe".split()


def make_rows(n_labeled=120, n_unlabeled=10, seed=0):
    """A learnable toy set: the score is how many 'good' words the answer has."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_labeled + n_unlabeled):
        y = int(rng.integers(0, 3))
        words = list(rng.choice(GOOD, 3 * y)) + list(rng.choice(BAD, 6 - y))
        rng.shuffle(words)
        split = "train" if (i < 80 or i >= n_labeled) else ("val" if i < 95 else "test")
        label = "" if i >= n_labeled else str(y)
        rows.append({"id": f"r{i}", "item": f"Q{i % 2 + 1}", "split": split, "text": " ".join(words),
                     "label": label, "question": "What does acid rain do to marble?"})
    return rows


def teacher_for(rows, path, sharp=0.7):
    """Test-fixture soft labels (not a real teacher): mass ``sharp`` on the true class, the rest
    spread; unlabeled rows get a flat-ish row."""
    ids, p = [], []
    for r in rows:
        q = np.full(3, (1 - sharp) / 2)
        if r["label"] != "":
            q[int(r["label"])] = sharp
        else:
            q = np.array([0.2, 0.3, 0.5])
        ids.append(r["id"])
        p.append(q)
    write_soft_labels(str(path), ids, [0, 1, 2], np.array(p))
    return str(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    rows = make_rows()
    return {"dir": d, "rows": rows, "data": write_csv(d / "data.csv", rows),
            "teacher": teacher_for(rows, d / "soft.csv")}


@pytest.fixture(scope="module")
def plain_model(files):
    out = str(files["dir"] / "plain.npz")
    assert main(["train", files["data"], "--out", out, "--epochs", "3", "--quiet"]) == 0
    return out


@pytest.fixture(scope="module")
def kd_model(files):
    out = str(files["dir"] / "kd.npz")
    assert main(["train", files["data"], "--out", out, "--teacher", files["teacher"], "--epochs", "3",
                 "--quiet", "--lam", "0.5", "--temperature", "2"]) == 0
    return out


def test_train_plain_uses_split_and_prints_summary(files, capsys):
    out = str(files["dir"] / "plain2.npz")
    assert main(["train", files["data"], "--out", out, "--epochs", "2", "--preset", "gelatin"]) == 0
    cap = capsys.readouterr()
    m = tinykd.load(out)
    tr = m.meta["training"]
    # 80 labeled 'train' rows train it, the 15 'val' rows validate, 'test' rows and unlabeled rows are unused
    assert (tr["n_train"], tr["n_val"], tr["n_transfer"], tr["lam"], tr["teacher"]) == (80, 15, 0, 0.0, False)
    assert m.classes == [0, 1, 2] and m.meta["preset"] == "gelatin"
    assert f"{m.n_params:,} parameters" in cap.out and "plain NN" in cap.out
    assert "validation: accuracy" in cap.out and "(15 rows)" in cap.out
    assert "epoch   1/2" in cap.err and "epoch   2/2" in cap.err  # live progress on stderr
    assert "not used: 25 rows" in cap.err and "test: 25" in cap.err
    assert "10 training rows have no label and there is no teacher" in cap.err
    vm = m.meta["validation_metrics"]
    assert vm["n"] == 15 and 0.0 <= vm["accuracy"] <= 1.0


def test_train_with_teacher_adds_transfer_rows(kd_model):
    tr = tinykd.load(kd_model).meta["training"]
    assert (tr["n_train"], tr["n_val"], tr["n_transfer"]) == (80, 15, 10)
    assert tr["teacher"] is True and tr["lam"] == 0.5 and tr["temperature"] == 2.0


def test_holdout_when_no_val_split(files, tmp_path):
    rows = [dict(r, split="train") for r in files["rows"] if r["label"] != ""]
    data = write_csv(tmp_path / "d.csv", rows)
    out = str(tmp_path / "m.npz")
    assert main(["train", data, "--out", out, "--epochs", "1", "-q"]) == 0
    tr = tinykd.load(out).meta["training"]
    assert tr["n_train"] + tr["n_val"] == 120 and tr["n_val"] == 15  # a stratified 1/8


def test_info(plain_model, capsys):
    assert main(["info", plain_model]) == 0
    out = capsys.readouterr().out
    m = tinykd.load(plain_model)
    assert f"{m.n_params:,} parameters" in out and "classes: 0, 1, 2" in out
    assert f"vocabulary {len(m.vocab):,} words" in out and "preset 7t" in out
    assert main(["info", plain_model, "--json"]) == 0
    j = json.loads(capsys.readouterr().out)
    assert j["n_params"] == m.n_params and j["size_bytes"] == os.path.getsize(plain_model)
    assert j["students"]["default"]["training"]["n_train"] == 80


def test_score_writes_every_row_back(files, kd_model, capsys):
    out = str(files["dir"] / "scored.csv")
    assert main(["score", kd_model, files["data"], "--out", out]) == 0
    assert "scored 130 rows" in capsys.readouterr().out
    got = read_csv(out)
    src = files["rows"]
    assert [r["id"] for r in got] == [r["id"] for r in src]  # every row, in order (unlabeled too)
    assert all(r["text"] == s["text"] and r["label"] == s["label"] for r, s in zip(got, src))
    assert list(got[0])[-6:] == ["pred", "p_0", "p_1", "p_2", "confidence", "needs_review"]
    p = np.array([[float(r[f"p_{k}"]) for k in range(3)] for r in got])
    assert np.allclose(p.sum(1), 1.0, atol=1e-3)
    assert [int(r["pred"]) for r in got] == p.argmax(1).tolist()
    conf = np.array([float(r["confidence"]) for r in got])
    assert np.allclose(conf, p.max(1), atol=1e-4)
    assert [r["needs_review"] for r in got] == ["1" if c < 0.6 else "0" for c in conf]
    # the same as the Python API
    m = tinykd.load(kd_model)
    api = m.predict_proba([r["text"] for r in src])
    assert np.allclose(api, p, atol=1e-4)


def test_score_chunks_and_review_threshold(files, plain_model):
    a, b = str(files["dir"] / "a.csv"), str(files["dir"] / "b.csv")
    assert main(["score", plain_model, files["data"], "--out", a, "-q"]) == 0
    assert main(["score", plain_model, files["data"], "--out", b, "--chunk-size", "7", "-q"]) == 0
    assert open(a, "rb").read() == open(b, "rb").read()  # streaming in chunks changes nothing
    assert main(["score", plain_model, files["data"], "--out", b, "--review-below", "0", "-q"]) == 0
    assert {r["needs_review"] for r in read_csv(b)} == {"0"}
    assert main(["score", plain_model, files["data"], "--out", b, "--review-below", "1", "-q"]) == 0
    assert {r["needs_review"] for r in read_csv(b)} == {"1"}


def test_evaluate_matches_scored_file(files, kd_model, capsys):
    out = str(files["dir"] / "scored_eval.csv")
    assert main(["score", kd_model, files["data"], "--out", out, "-q"]) == 0
    test_rows = [r for r in read_csv(out) if r["split"] == "test"]
    acc = np.mean([r["pred"] == r["label"] for r in test_rows])
    capsys.readouterr()
    assert main(["evaluate", kd_model, files["data"], "--split", "test", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["n"] == 25 and res["model_vs_human"]["accuracy"] == pytest.approx(acc)
    cm = np.array(res["confusion_matrix"])
    assert cm.shape == (3, 3) and cm.sum() == 25 and np.trace(cm) == round(acc * 25)
    assert set(res["per_class"]) == {"0", "1", "2"}
    assert main(["evaluate", kd_model, files["data"], "--split", "test"]) == 0
    text = capsys.readouterr().out
    assert "model vs human" in text and "confusion matrix" in text and "precision" in text


def test_evaluate_second_rater(files, plain_model, tmp_path, capsys):
    rows = [dict(r) for r in files["rows"] if r["label"] != ""]
    for k, r in enumerate(rows):  # rater 2 agrees on every other row
        r["rater2"] = r["label"] if k % 2 == 0 else str((int(r["label"]) + 1) % 3)
    data = write_csv(tmp_path / "r2.csv", rows)
    assert main(["evaluate", plain_model, data, "--rater2-col", "rater2", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["human_vs_human"]["accuracy"] == pytest.approx(0.5)
    assert res["human_vs_human"]["n"] == 120
    assert main(["evaluate", plain_model, data, "--rater2-col", "rater2"]) == 0
    assert "human vs rater2" in capsys.readouterr().out


def test_item_col_bundle_end_to_end(files, tmp_path, capsys):
    out = str(tmp_path / "items.npz")
    assert main(["train", files["data"], "--out", out, "--item-col", "item", "--context-col", "question",
                 "--teacher", files["teacher"], "--epochs", "1", "-q"]) == 0
    assert "2 items (item)" in capsys.readouterr().out
    b = tinykd.load(out)
    assert isinstance(b, Bundle) and sorted(b.items) == ["Q1", "Q2"] and b.item_col == "item"
    assert all(st.uses_context for st in b.students.values())
    assert sum(st.meta["training"]["n_train"] for st in b.students.values()) == 80
    scored = str(tmp_path / "s.csv")
    assert main(["score", out, files["data"], "--out", scored, "-q"]) == 0  # columns from the model
    got = read_csv(scored)
    assert len(got) == 130
    for item in ("Q1", "Q2"):
        rows = [r for r in got if r["item"] == item]
        p = b.students[item].predict_proba([r["text"] for r in rows], [r["question"] for r in rows])
        assert np.allclose(p, [[float(r[f"p_{k}"]) for k in range(3)] for r in rows], atol=1e-4)
    capsys.readouterr()
    assert main(["evaluate", out, files["data"], "--split", "test", "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert set(res["per_item"]) == {"Q1", "Q2"} and res["n"] == 25
    assert main(["info", out]) == 0
    assert "per-item bundle: 2 students" in capsys.readouterr().out


def test_unknown_item_is_an_error_and_writes_nothing(files, tmp_path, capsys):
    out = str(tmp_path / "items.npz")
    assert main(["train", files["data"], "--out", out, "--item-col", "item", "--epochs", "1", "-q"]) == 0
    rows = [dict(r) for r in files["rows"]] + [dict(files["rows"][0], id="new", item="Q9")]
    data = write_csv(tmp_path / "new.csv", rows)
    scored = str(tmp_path / "s.csv")
    capsys.readouterr()
    assert main(["score", out, data, "--out", scored, "--chunk-size", "50"]) == 2
    err = capsys.readouterr().err
    assert "no student for item(s) 'Q9'" in err and "the model knows Q1, Q2" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert sorted(os.listdir(tmp_path)) == ["items.npz", "new.csv"]  # no output, no temporary file


def test_string_labels_train_and_score(files, tmp_path, capsys):
    names = {"0": "incorrect", "1": "partial", "2": "correct"}
    rows = [dict(r, label=names.get(r["label"], "")) for r in files["rows"]]
    data = write_csv(tmp_path / "s.csv", rows)
    out = str(tmp_path / "m.npz")
    assert main(["train", data, "--out", out, "--epochs", "1", "-q"]) == 0
    assert tinykd.load(out).classes == ["correct", "incorrect", "partial"]
    scored = str(tmp_path / "scored.csv")
    assert main(["score", out, data, "--out", scored, "-q"]) == 0
    got = read_csv(scored)
    assert {"p_correct", "p_incorrect", "p_partial"} <= set(got[0])
    assert {r["pred"] for r in got} <= {"correct", "incorrect", "partial"}


def test_no_command_and_help(capsys):
    assert main([]) == 2
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    assert "train" in capsys.readouterr().out


def test_train_flags_default_to_the_training_options_and_are_checked_first(files, tmp_path, capsys):
    """tinykd train's defaults are TrainOptions' own (their one home); a bad value is one line naming
    the flag, before the data file is read."""
    from tinykd.cli.commands import _train_options
    from tinykd.cli.parser import build_parser
    from tinykd.train.options import TrainOptions

    args = build_parser().parse_args(["train", files["data"], "--out", "m.npz"])
    assert _train_options(args) == TrainOptions()
    args = build_parser().parse_args(["train", "d.csv", "--out", "m.npz", "--epochs", "7", "--lam", "2",
                                      "--soft-loss", "mse", "--no-offsets", "--seed", "3", "--ordinal", "2"])
    assert _train_options(args) == TrainOptions(epochs=7, lam=2.0, soft_loss="mse", offsets=False, seed=3, ordinal=2.0)
    out = tmp_path / "m.npz"
    assert main(["train", str(tmp_path / "missing.csv"), "--out", str(out), "--lr", "0"]) == 2
    err = capsys.readouterr().err
    assert "tinykd: error: --lr must be > 0, got 0.0" in err and not out.exists()


def test_distill_aliases_the_unseen_words_unless_told_none(tmp_path, monkeypatch):
    import tinykd.distill.pipeline as D

    given = []

    def fake(data, out, **kw):  # what the command gives distill, then stop
        given.append(kw["teacher_aliases"])
        raise D.TeacherError("stop here")

    monkeypatch.setattr(D, "teacher_available", lambda: True)
    monkeypatch.setattr(D, "distill", fake)
    for flag in ([], ["--teacher-aliases", "none"], ["--teacher-aliases", "train"]):
        assert main(["distill", "d.csv", "-o", str(tmp_path / "m.npz"), *flag]) == 2
    assert given == ["unseen", None, "train"]


def test_distill_reads_a_teacher_max_length_or_auto(capsys):
    from tinykd.cli.parser import build_parser

    for given, want in (("auto", "auto"), ("256", 256)):
        assert build_parser().parse_args(["distill", "d.csv", "-o", "m.npz", "--teacher-max-length", given]) \
            .teacher_max_length == want
    with pytest.raises(SystemExit) as e:
        main(["distill", "d.csv", "-o", "m.npz", "--teacher-max-length", "long"])
    assert e.value.code == 2
    assert "--teacher-max-length: must be auto or a whole number >= 1, got 'long'" in capsys.readouterr().err


def test_demo_quick(tmp_path, capsys):
    from tinykd.cli import demo

    teacher = os.path.join(demo.DATA_DIR, demo.TEACHER_FILE)
    if not os.path.exists(teacher):  # before the real teacher file is bundled: a test fixture
        rows = demo.load_data()
        teacher = teacher_for([dict(r) for r in rows], tmp_path / "fixture-teacher.csv", sharp=0.6)
    out = str(tmp_path / "demo.npz")
    assert main(["demo", "--quick", "--out", out, "--teacher-file", teacher, "-q"]) == 0
    text = capsys.readouterr().out
    assert "plain NN" in text and "KD student" in text and "teacher" in text
    assert "ms/response" in text and "examples: question" in text and "(blank answer)" in text
    m = tinykd.load(out)
    assert m.meta["training"]["teacher"] is True and m.classes == [0, 1, 2] and m.uses_context
    assert m.label_names == ["correct", "contradictory", "incorrect"] and "KD student vs its teacher" in text
    if os.path.exists(os.path.join(demo.DATA_DIR, demo.TRANSFER_FILE)):  # trained as distill trains
        tr = m.meta["training"]
        assert tr["lam"] == 4.0 and tr["soft_loss"] == "mse" and tr["n_transfer"] == 11 * tr["n_train"]
    if os.path.exists(os.path.join(demo.DATA_DIR, demo.ALIASES_FILE)):  # distill's "unseen" aliases, bundled
        pairs = {r["word"]: r["reads_as"] for r in demo._read_gz_csv(os.path.join(demo.DATA_DIR, demo.ALIASES_FILE))}
        got = {w: m.vocab.tokens[i] for w, i in m.vocab.aliases.items()}
        assert m.meta["training"]["aliases"] == len(got) > 100 and m.meta["training"]["aliases_after_training"]
        assert all(pairs[w] == t and w not in m.vocab for w, t in got.items())  # each read as its bundled word
        w = next(iter(got))
        np.testing.assert_array_equal(m.predict_proba([f"the {w}"], ["x"]), m.predict_proba([f"the {got[w]}"], ["x"]))


def test_split_col_can_be_switched_off_and_evaluate_warns(files, tmp_path, capsys):
    out = str(tmp_path / "all.npz")
    assert main(["train", files["data"], "--out", out, "--split-col", "", "--epochs", "1", "-q"]) == 0
    tr = tinykd.load(out).meta["training"]
    assert tr["n_train"] + tr["n_val"] == 120  # every labeled row, whatever its split
    capsys.readouterr()
    assert main(["evaluate", out, files["data"]]) == 0
    assert "evaluating on every row" in capsys.readouterr().err


def test_augment_then_train_with_the_copies_as_transfer(files, tmp_path, capsys):
    """tinykd augment: the input rows unchanged, then n copies of each labelled *training* answer (empty
    label, id <id>~aug<k>, other columns copied); trained with --teacher, the copies are transfer rows."""
    aug = str(tmp_path / "aug.csv")
    assert main(["augment", files["data"], "--out", aug, "--n", "3", "--item-col", "item", "--quiet"]) == 0
    assert "copies of 80 labelled training answers" in capsys.readouterr().out
    rows = read_csv(aug)
    src = {r["id"]: r for r in files["rows"]}
    assert rows[:len(src)] == [{k: str(v) for k, v in r.items()} for r in files["rows"]]
    copies = rows[len(src):]
    train = [r for r in files["rows"] if r["split"] == "train" and r["label"] != ""]
    assert [c["id"] for c in copies] == [f"{r['id']}~aug{k}" for q in ("Q1", "Q2")
                                         for r in train if r["item"] == q for k in range(3)]
    for c in copies:
        o = src[c["id"].split("~")[0]]
        assert c["label"] == "" and (c["split"], c["item"], c["question"]) == (o["split"], o["item"], o["question"])
        assert set(c["text"].split()) <= {w for r in train if r["item"] == o["item"] for w in r["text"].split()}
    assert any(c["text"] != src[c["id"].split("~")[0]]["text"] for c in copies)
    # a teacher labels everything; training then uses the 240 copies (+ the 10 unlabeled rows) as transfer
    soft = teacher_for(rows, tmp_path / "soft.csv")
    out = str(tmp_path / "m.npz")
    assert main(["train", aug, "--teacher", soft, "--out", out, "--epochs", "2", "--quiet"]) == 0
    assert tinykd.load(out).meta["training"]["n_transfer"] == 240 + 10
    # augmenting an augmented file is refused (ids would clash); nothing written
    again = str(tmp_path / "again.csv")
    assert main(["augment", aug, "--out", again, "--n", "3"]) == 2
    assert "already exist" in capsys.readouterr().err and not os.path.exists(again)
    assert main(["augment", files["data"], "--out", again, "--p-drop", "2"]) == 2
    assert "p_drop" in capsys.readouterr().err
    # --p-splice: the same copies as augment(p_splice=...) makes; off by default, the copies above
    spliced = str(tmp_path / "spliced.csv")
    assert main(["augment", files["data"], "--out", spliced, "--n", "3", "--item-col", "item", "--p-splice", "1",
                 "--quiet"]) == 0
    got = read_csv(spliced)[len(src):]
    from tinykd.distill.augment import augment_rows
    want = augment_rows([r["text"] for r in files["rows"]], [r["id"] for r in files["rows"]],
                        [r["label"] for r in files["rows"]], splits=[r["split"] for r in files["rows"]],
                        items=[r["item"] for r in files["rows"]], n=3, p_splice=1.0)
    assert [(c["id"], c["text"]) for c in got] == [(i, t) for _, i, t in want]
    assert [c["text"] for c in got] != [c["text"] for c in copies]
    assert main(["augment", files["data"], "--out", again, "--p-splice", "-1"]) == 2
    assert "p_splice" in capsys.readouterr().err
