"""A second round of tinykd distill (tinykd.distill.warm), without a teacher: roles kept from the previous
round, labels reused only from the same teacher weights and the same copies, the keys of a warm chain."""
import csv
import json
import os

import pytest
from conftest import export_student

from tinykd.distill import warm as W
from tinykd.distill.job import ItemChain, TeacherOptions, student_options
from tinykd.distill.stages import rows_key
from tinykd.distill.teacher import FITTED, fit_job, label_copies


def _csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return str(path)


def test_answers_keep_the_role_they_had_and_new_answers_keep_this_rounds():
    ids = ["a", "b", "c", "d", "e", "f"]
    labels = [1, 0, 1, None, 2, 0, 1]
    roles = ["val", "train", "test", "unlabeled", "train", "val", "other"]
    previous = {"a": "train", "b": "val", "c": "train", "e": "test", "g": "train"}  # f is new; d unscored
    out, changed = W.keep_roles(ids + ["g"], labels, roles, previous)
    assert out == ["train", "val", "train", "unlabeled", "test", "val", "other"] and changed == 4


def _teacher(work, key, weights):
    """A fitted teacher folder as distill leaves it: <work>/teacher-<key>/teacher-teacher, its job naming the rows."""
    stage = work / f"teacher-{key}"
    (stage / FITTED).mkdir(parents=True)
    (stage / FITTED / "model.safetensors").write_bytes(weights)
    (stage / FITTED / "teacher.json").write_text("{}")
    (stage / "job.json").write_text(json.dumps({"command": "fit", "data": "/elsewhere/rows-r1/rows.csv"}))
    (work / "rows-r1").mkdir(exist_ok=True)
    _csv(work / "rows-r1" / "rows.csv", ["id", "text", "label", "role"],
         [["a", "x", "1", "train"], ["b", "y", "0", "val"]])
    return str(stage / FITTED)


def test_previous_roles_are_read_from_the_work_folder_that_holds_the_teacher(tmp_path):
    t = _teacher(tmp_path / "moved-work", "k1", b"w1")  # the job's path is stale: the folder was moved
    roles, sha = W.previous_roles([t, t])
    assert roles == {"a": "train", "b": "val"} and len(sha) == 64
    assert W.weights_sha(t) == W.weights_sha(_teacher(tmp_path / "w2", "k2", b"w1")) != W.weights_sha(
        _teacher(tmp_path / "w3", "k3", b"w2"))
    assert rows_key("ab" * 32, ("t", "l", "i", None, None, None), ("train", None, "test"), 0, None) != rows_key(
        "ab" * 32, ("t", "l", "i", None, None, None), ("train", None, "test"), 0, None, sha)


def _labels_stage(work, name, copies_rows, labels_rows, weights_sha, copies_dir="copies-c1"):
    (work / copies_dir).mkdir(parents=True, exist_ok=True)
    _csv(work / copies_dir / "copies.csv", ["id", "text", "context"], copies_rows)
    (work / name).mkdir()
    _csv(work / name / "labels.csv", ["id", "p_0", "p_1", "role"], labels_rows)
    (work / name / "labels.json").write_text('{"classes": ["0", "1"]}')
    (work / name / "done.json").write_text(json.dumps({"n": len(copies_rows), "teacher_weights": weights_sha,
                                                      "copies_dir": copies_dir}))


def test_labels_are_reused_only_for_the_same_teacher_and_the_same_copy(tmp_path, monkeypatch):
    work = tmp_path / "work"
    _labels_stage(work, "labels-old", [["a~0", "x y", ""], ["b~0", "y z", ""], ["c~0", "q", ""]],
                  [["a~0", "0.9", "0.1", "u"], ["b~0", "0.2", "0.8", "u"], ["c~0", "0.5", "0.5", "u"]], "S1")
    _labels_stage(work, "labels-other", [["d~0", "w", ""]], [["d~0", "0.3", "0.7", "u"]], "S2", "copies-c2")
    assert [os.path.basename(os.path.dirname(s[0])) for s in W.reusable_labels([work, work], "S1", "off")] == \
        ["labels-old"]
    assert W.reusable_labels([work], "S1", "on") == []  # another precision: another teacher's labels
    new = _csv(tmp_path / "copies.csv", ["id", "text", "context"],
               [["n~0", "new", ""], ["b~0", "y z", ""], ["a~0", "x CHANGED", ""], ["d~0", "w", ""]])
    reused, missing, _ = W.reuse_labels(new, W.reusable_labels([work], "S1", "off"))
    assert set(reused) == {"b~0"} and [m[0] for m in missing] == ["n~0", "a~0", "d~0"]

    # the labels stage: the teacher labels only the missing copies, the reused rows are merged in copy order
    teacher = _teacher(tmp_path / "tw", "k", b"weights")
    monkeypatch.setattr(W, "weights_sha", lambda t: "S1")
    jobs = []

    def fake_job(folder, job, log):
        jobs.append(job)
        with open(job["data"], newline="") as f:
            todo = [r["id"] for r in csv.DictReader(f)]
        _csv(os.path.join(folder, "labels.csv"), ["id", "p_0", "p_1", "role"], [[i, "0.6", "0.4", "u"] for i in todo])

    import tinykd.distill.teacher as T
    monkeypatch.setattr(T, "run_teacher_job", fake_job)
    out = tmp_path / "labels-new"
    out.mkdir()
    res = label_copies(str(out), teacher, new, 4, False, None, lambda m: None, "off", (str(work),))
    assert res == {"n": 4, "teacher_weights": "S1", "copies_dir": os.path.basename(tmp_path), "reused": 1}
    assert jobs[0]["data"].endswith("missing.csv")
    with open(out / "labels.csv", newline="") as f:
        got = [(r["id"], r["p_0"]) for r in csv.DictReader(f)]
    assert got == [("n~0", "0.6"), ("b~0", "0.2"), ("a~0", "0.6"), ("d~0", "0.6")]
    # without reuse roots (a first round): the whole copies file is labelled, nothing merged
    again = tmp_path / "labels-cold"
    again.mkdir()
    assert "reused" not in label_copies(str(again), teacher, new, 4, False, None, lambda m: None, "off", ())
    assert jobs[1]["data"] == new


def test_a_warm_chain_fits_from_the_previous_teacher_for_at_most_two_epochs_and_keys_it(tmp_path):
    from tinykd.distill.job import ItemRows

    rows = ItemRows(ids=("a",), texts=("x",), labels=(1,), contexts=None, roles=("train",), kind="int")
    chain = ItemChain(work=str(tmp_path), item=None, name="all rows", rows_key="r", rows_csv="rows.csv", rows=rows,
                      unlabeled_rows=(), unlabeled_sha=None, teacher_dir=None, teacher_sha=None, base=None,
                      teacher=TeacherOptions(), teacher_threads=None, copies=None, augment={}, preset="7t",
                      presets=("7t",), lams=(4.0,), options=student_options())
    cold = fit_job(chain, "out", None)
    assert cold["epochs"] == 10 and "warm_from" not in cold and chain.teacher_key_options() == \
        TeacherOptions().key_options()
    import dataclasses
    w = dataclasses.replace(chain, warm_from="/prev/teacher-teacher", warm_sha="S")
    job = fit_job(w, "out", None)
    assert job["warm_from"] == "/prev/teacher-teacher" and job["epochs"] == W.WARM_EPOCHS and "base" not in job
    assert w.teacher_key_options() == {**TeacherOptions().key_options(), "epochs": 2, "warm_from": "S"}


def test_warm_start_names_a_model_distill_made(tmp_path):
    from tinykd.distill.pipeline import _warm_teachers
    from tinykd.errors import OptionError

    assert _warm_teachers(None, None, None) == {}
    with pytest.raises(OptionError, match="warm_start"):
        _warm_teachers("m.npz", "teacher-folder", None)
    with pytest.raises(ValueError, match="no such model file"):
        _warm_teachers(str(tmp_path / "missing.npz"), None, None)
    st = export_student("7t", ["acid rain", "water cup"])
    st.save(tmp_path / "plain.npz")
    with pytest.raises(ValueError, match="not a model made by tinykd distill"):
        _warm_teachers(str(tmp_path / "plain.npz"), None, None)
    st.meta["distill"] = {"teacher": str(tmp_path / "gone")}
    st.save(tmp_path / "gone.npz")
    with pytest.raises(ValueError, match="is gone"):
        _warm_teachers(str(tmp_path / "gone.npz"), None, None)


def test_the_command_line_gives_warm_start_to_distill_and_a_bad_one_is_one_line(tmp_path, capsys):
    pytest.importorskip("torch")
    from conftest import assert_user_error, run_cli

    data = _csv(tmp_path / "d.csv", ["id", "text", "label"], [[f"r{i}", "acid rain", str(i % 2)] for i in range(20)])
    rc, _, err = run_cli(capsys, "distill", data, "--out", str(tmp_path / "m.npz"), "--warm-start",
                         str(tmp_path / "round1.npz"))
    assert_user_error(rc, err, "round1.npz: no such model file")
    assert not os.path.exists(tmp_path / "m.work" / "rows")  # refused before any stage


def test_a_warm_round_trains_the_preset_the_previous_round_kept(tmp_path):
    import dataclasses

    from tinykd.distill.pipeline import _item_chain
    from tinykd.distill.rows import Table

    t = _teacher(tmp_path / "w", "k", b"w")
    table = Table(ids=["a", "b"], texts=["x", "y"], labels=[1, 0], kind="int", contexts=None, items=None,
                  roles=["train", "val"])
    template = ItemChain(work=str(tmp_path), item=None, name="all rows", rows_key="r", rows_csv="rows.csv", rows=None,
                         unlabeled_rows=(), unlabeled_sha=None, teacher_dir=None, teacher_sha=None, base=None,
                         teacher=TeacherOptions(), teacher_threads=None, copies=None, augment={}, preset="auto",
                         presets=("bathtub", "7t"), lams=(4.0,), options=student_options())
    warm = _item_chain(template, table, None, None, (), {None: (t, "7t")})
    assert warm.presets == ("7t",) and warm.warm_from == t and warm.warm_sha == W.weights_sha(t)
    assert _item_chain(template, table, None, None, (), {}).presets == ("bathtub", "7t")  # a first round: both
    named = dataclasses.replace(template, preset="bathtub", presets=("bathtub",))
    assert _item_chain(named, table, None, None, (), {None: (t, "7t")}).presets == ("bathtub",)  # as asked
