"""The rubric's words (issue 33, part 3): score names stored in the model file (``Student.label_names``), given as
``--label-names`` on ``train`` (and ``distill``) or in Python, checked with one-line errors, round-tripped through
save / load, ``info``, the ONNX metadata and the page's model.js; an item's shared context stored for the page."""
import csv
import json
import os

import numpy as np
import pytest
from conftest import assert_user_error, export_student, run_cli, scientsbank_rows, write_csv
from test_cli import make_rows

import tinykd
from tinykd.cli.commands import main
from tinykd.export.page import export_web
from tinykd.scoring.modelfile import ModelFileError, read_bytes
from tinykd.scoring.modelmeta import label_names_for_data, parse_label_names
from tinykd.scoring.student import Bundle, load_bytes, store_contexts

ROWS = [r for r in scientsbank_rows() if r["item"].startswith(("ME", "MX"))]
NAMES = "0=correct,1=contradictory,2=incorrect"


def _student(classes=(0, 1, 2), seed=1, rows=ROWS[:400]):
    return export_student("falling_weights", [r["text"] for r in rows], classes=list(classes), seed=seed,
                          uses_context=True, contexts=[r["reference_answer"] for r in rows])


def _model_js(folder):
    text = open(os.path.join(folder, "model.js"), encoding="ascii").read()
    return json.loads(text[text.index("=") + 1:].strip().rstrip(";"))


def test_names_default_to_the_labels_and_round_trip_through_the_file():
    st = _student()
    assert st.label_names == ["0", "1", "2"] and "label_names" not in st.meta  # nothing stored unless given
    st.label_names = NAMES
    assert st.label_names == ["correct", "contradictory", "incorrect"]
    assert load_bytes(st.to_bytes()).label_names == ["correct", "contradictory", "incorrect"]
    st.label_names = {1.0: "partly", "2": "right"}  # any spelling of a score; classes left out keep their label
    assert load_bytes(st.to_bytes()).label_names == ["0", "partly", "right"]
    st.label_names = None
    assert load_bytes(st.to_bytes()).label_names == ["0", "1", "2"]
    text = _student(classes=("no", "yes"))
    assert text.label_names == ["no", "yes"]  # text labels name themselves


@pytest.mark.parametrize("names, needle", [
    ("0=a,1=a,2=b", "two classes are named 'a'"), ("3=x", "'3' is not among the classes"),
    ("0", "is not LABEL=NAME"), ("0=a,0=b", "named twice"), (["a", "b"], "a list of 3 names"),
    (["a", "b", "c\nd"], "no line break")])
def test_bad_names_are_one_line_errors(names, needle):
    st = _student()
    with pytest.raises(ValueError, match=needle) as e:
        st.label_names = names
    assert "\n" not in str(e.value)


def test_a_tampered_file_is_refused_in_one_line():
    st = _student()
    st.label_names = NAMES
    meta, arrays = read_bytes(st.to_bytes())
    for bad in (["a", "b"], ["a", "a", "b"], [1, 2, 3], ["a", "", "b"]):
        meta["students"]["default"]["meta"]["label_names"] = bad
        arrays["meta.json"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
        import io

        buf = io.BytesIO()
        np.savez(buf, **arrays)
        with pytest.raises(ModelFileError, match="label_names") as e:
            load_bytes(buf.getvalue())
        assert "\n" not in str(e.value)


def test_bundle_names_and_contexts_per_item():
    a, b = _student(), _student(classes=("no", "yes"), seed=2)
    bundle = Bundle({"ME_1": a, "MX_2": b}, item_col="item")
    bundle.label_names = {"yes": "Yes, right", 2: "incorrect"}
    assert a.label_names == ["0", "1", "incorrect"] and b.label_names == ["no", "Yes, right"]
    assert bundle.label_names == ["0", "1", "incorrect", "no", "Yes, right"]  # aligned with bundle.classes
    with pytest.raises(ValueError, match="'maybe' is not among the classes"):
        bundle.label_names = {"maybe": "x"}
    items = ["ME_1", "ME_1", "MX_2", "MX_2", "MX_2"]
    assert store_contexts(bundle, ["Why?", " Why? ", "How?", "How?", "How?"], items) == 2
    assert a.context_text == "Why?" and b.context_text == "How?"
    assert store_contexts(bundle, ["Why?", "Why not?", "How?", "How?", ""], items) == 0  # not shared: none
    assert a.context_text is None and b.context_text is None
    store_contexts(bundle, ["Why?", "Why?", "How?", "How?", "How?"], items)
    back = load_bytes(bundle.to_bytes())
    assert back.students["MX_2"].label_names == ["no", "Yes, right"] and back.students["MX_2"].context_text == "How?"


def test_names_in_onnx_metadata_and_the_page(tmp_path):
    st = _student()
    st.label_names = NAMES
    store_contexts(st, ["The boat with 0 marbles is the standard."] * 3)
    st.meta["columns"] = {"text": "text", "context": "reference_answer"}
    export_web(st, tmp_path / "page")
    spec = _model_js(tmp_path / "page")
    assert spec["context_col"] == "reference_answer"
    assert spec["items"][0]["label_names"] == ["correct", "contradictory", "incorrect"]
    assert spec["items"][0]["context_text"] == "The boat with 0 marbles is the standard."
    onnx = pytest.importorskip("onnx", reason="the [export] extra (onnx) is not installed")
    from tinykd.export.onnx_graph import export_onnx

    index, graph = export_onnx(st, str(tmp_path / "s.onnx"))
    props = {p.key: json.loads(p.value) for p in onnx.load(graph).metadata_props}
    assert props["tinykd.label_names"] == ["correct", "contradictory", "incorrect"]
    assert props["tinykd.classes"] == [0, 1, 2] and props["tinykd.review_below"] == 0.6
    assert props["tinykd.context_col"] == "reference_answer"
    assert json.load(open(index, encoding="utf-8"))["label_names"] == ["correct", "contradictory", "incorrect"]


def test_label_names_for_data_checks_before_training():
    assert parse_label_names(" 0 = no , 1=partly right ,2=yes") == {"0": "no", "1": "partly right", "2": "yes"}
    assert label_names_for_data("0=no,2=yes", [0, 1, None, 2]) == {"0": "no", "2": "yes"}
    with pytest.raises(tinykd.errors.OptionError, match="'5' is not among") as e:
        label_names_for_data("5=no", [0, 1, 2])
    assert e.value.for_cli().startswith("--label-names: ")


def test_cli_train_label_names_info_and_item_context(tmp_path, capsys):
    rows = make_rows()
    for r in rows:
        r["question"] = f"What does acid rain do to marble ({r['item']})?"
    data = write_csv(tmp_path / "d.csv", rows)
    out = str(tmp_path / "m.npz")
    rc, _, err = run_cli(capsys, "train", data, "--out", out, "--label-names", "0=wrong,7=odd", "--epochs", "1")
    assert_user_error(rc, err, "--label-names", "'7' is not among")
    assert not os.path.exists(out)  # refused before training
    assert main(["train", data, "--out", out, "--item-col", "item", "--context-col", "question", "--label-names",
                 "0=wrong,1=partly right,2=right", "--epochs", "1", "-q"]) == 0
    assert "classes 0 = wrong, 1 = partly right, 2 = right" in capsys.readouterr().out
    model = tinykd.load(out)
    assert model.label_names == ["wrong", "partly right", "right"]
    assert model.students["Q1"].context_text == "What does acid rain do to marble (Q1)?"
    assert main(["info", out]) == 0
    text = capsys.readouterr().out
    assert "classes: 0 = wrong, 1 = partly right, 2 = right" in text
    assert "question (every row's): What does acid rain do to marble (Q2)?" in text
    assert main(["info", out, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["students"]["Q2"]["label_names"] == ["wrong", "partly right", "right"]


def test_kdclassifier_label_names():
    rows = make_rows(60, 0)
    texts, y = [r["text"] for r in rows], np.array([int(r["label"]) for r in rows])
    clf = tinykd.KDClassifier(preset="gelatin", epochs=1, label_names={0: "wrong", 2: "right"}).fit(texts, y)
    assert clf.student_.label_names == ["wrong", "1", "right"] and clf.get_params()["label_names"] == {0: "wrong",
                                                                                                     2: "right"}
    with pytest.raises(tinykd.errors.OptionError, match="label_names: '4' is not among"):
        tinykd.KDClassifier(preset="gelatin", epochs=1, label_names="4=four").fit(texts, y)


def test_distill_passes_label_names_and_item_contexts(tmp_path, capsys, monkeypatch):
    """``distill`` checks ``--label-names`` against the data before the teacher's minutes, and stores the names
    and each item's shared context on the model it saves (its stages replaced here by two ready students)."""
    import tinykd.distill.pipeline as D

    rows = make_rows(60, 0)
    for r in rows:
        r["question"] = f"Question of {r['item']}"
    data = write_csv(tmp_path / "d.csv", rows)
    monkeypatch.setattr(D, "teacher_available", lambda: True)
    rc, _, err = run_cli(capsys, "distill", data, "--out", tmp_path / "x.npz", "--label-names", "0=no,5=five")
    assert_user_error(rc, err, "--label-names: '5' is not among")
    assert not [f for f in os.listdir(tmp_path / "x.work") if f != "lock"]  # no stage begun
    made = Bundle({"Q1": _student(), "Q2": _student(seed=4)}, item_col="item")
    monkeypatch.setattr(D, "_run_chains", lambda chains, client, log, t0: [])
    monkeypatch.setattr(D, "_model_and_report", lambda chains, done, columns, item_col, rater2=None: (made, {}))
    res = D.distill(data, tmp_path / "b.npz", item_col="item", context_col="question", label_names="2=right",
                    verbose=False)
    back = tinykd.load(tmp_path / "b.npz")
    assert res.model is made and back.label_names == ["0", "1", "right"]
    assert [back.students[it].context_text for it in ("Q1", "Q2")] == ["Question of Q1", "Question of Q2"]


def test_score_writes_pred_name_only_for_given_names(tmp_path):
    from tinykd.scoring.scorefile import score_csv

    texts = [f"w{i % 3} x y" for i in range(60)]
    m = tinykd.fit(texts, [i % 3 for i in range(60)], epochs=1, verbose=False)
    data = tmp_path / "a.csv"
    data.write_text("text\n" + "\n".join(texts[:6]) + "\n", encoding="utf-8")
    score_csv(m, str(data), str(tmp_path / "plain.csv"))
    assert "pred_name" not in next(csv.reader(open(tmp_path / "plain.csv")))  # labels are their own names
    m.label_names = "0=wrong,1=partly,2=right"
    score_csv(m, str(data), str(tmp_path / "named.csv"))
    rows = list(csv.DictReader(open(tmp_path / "named.csv")))
    assert list(rows[0])[:3] == ["text", "pred", "pred_name"]
    assert all(r["pred_name"] == {"0": "wrong", "1": "partly", "2": "right"}[r["pred"]] for r in rows)
    pytest.importorskip("pandas")
    import pandas as pd

    from tinykd.cluster.tasks import scored_frame

    frame = scored_frame(pd.DataFrame({"text": texts[:6]}), m, "text", None, None, 0.6)
    assert frame["pred_name"].tolist() == [r["pred_name"] for r in rows]
    assert [str(v) for v in frame["pred"]] == [r["pred"] for r in rows]


def test_evaluate_prints_the_names_beside_the_classes():
    from tinykd.quality.evaluate import evaluation_report, format_report

    texts = [f"w{i % 3} x y" for i in range(60)]
    m = tinykd.fit(texts, [i % 3 for i in range(60)], epochs=1, verbose=False)
    res = evaluation_report(m, texts, [str(i % 3) for i in range(60)])
    assert res["label_names"] == {} and "name" not in format_report(res)[3]  # the labels are their own names
    m.label_names = "0=wrong,1=partly,2=right"
    lines = format_report(evaluation_report(m, texts, [str(i % 3) for i in range(60)]))
    head = next(k for k, s in enumerate(lines) if s.strip().startswith("class"))
    assert lines[head].endswith("  name") and [s.split()[-1] for s in lines[head + 1:head + 4]] == ["wrong", "partly",
                                                                                                     "right"]
