"""tinykd distill's parts that need no teacher: the stage cache, the stage keys (pinned: a work folder
made by an earlier release stays valid), the typed job and the teacher's JSON job file."""
import hashlib
import json
import os

import pytest

import tinykd.distill.teacher as T
from teacher_export.cli import JobError, build_parser, read_job
from tinykd.distill.job import (ItemChain, ItemRows, STUDENT_OPTIONS, TEACHER_DEFAULTS, TeacherOptions,
                                presets_for, student_options)
from tinykd.distill.stages import (FILES, MARKER, StageCache, copies_key, labels_key, rows_key, students_key,
                                   teacher_key)
from tinykd.errors import OptionError
from tinykd.train.options import TrainOptions


def _write(folder, text, calls):
    calls.append(text)
    with open(os.path.join(folder, "out.txt"), "w") as f:
        f.write(text)
    return {"n": len(text)}


def _fail(folder):
    with open(os.path.join(folder, "half.txt"), "w") as f:
        f.write("half")
    raise KeyboardInterrupt


def test_stage_cache_marks_finished_stages_last_and_redoes_half_finished_ones(tmp_path):
    lines, calls = [], []
    cache = StageCache(tmp_path / "work", lines.append)
    with pytest.raises(KeyboardInterrupt):
        cache.run("copies", "k1", "item 1", _fail)
    half = tmp_path / "work" / "copies-k1"
    assert (half / "half.txt").exists() and not (half / MARKER).exists() and cache.ran == []
    made = cache.run("copies", "k1", "item 1", _write, "abc", calls)
    assert made["n"] == 3 and made["seconds"] >= 0 and calls == ["abc"]
    assert not (half / "half.txt").exists() and (half / "out.txt").read_text() == "abc"  # redone from scratch
    assert json.loads((half / MARKER).read_text()) == {**made, FILES: {"out.txt": hashlib.sha256(b"abc").hexdigest()}}
    assert cache.ran == ["copies:item 1"] and set(cache.seconds) == {"copies"}

    again = StageCache(tmp_path / "work", lines.append)
    assert again.run("copies", "k1", "item 1", _write, "xyz", calls) == made  # from done.json, not run
    assert calls == ["abc"] and again.cached == ["copies:item 1"] and again.ran == [] and again.seconds == {}
    assert lines[-1].startswith("[copies] item 1: done before (cached in ")
    other = again.run("copies", "k2", "item 1", _write, "xyz", calls)  # another key: another folder
    assert other["n"] == 3 and calls == ["abc", "xyz"] and again.folder("copies", "k2").endswith("copies-k2")
    cache.add(again.seconds, again.ran, again.cached)
    assert cache.ran == ["copies:item 1", "copies:item 1"] and cache.cached == ["copies:item 1"]


def test_stage_keys_are_those_of_earlier_work_folders():
    """Pinned: computed by the code before the restructuring (tinykd/distill/pipeline.py's inline keys)
    for the same inputs; a changed key would make every existing work folder recompute."""
    r = rows_key("ab" * 32, ("text", "label", "id", None, "item", "split"), ("train", None, "test"), 3, ["item=Q1"])
    assert r == "e704aaf930728c8d"
    teacher = TeacherOptions(epochs=4, lr=3e-3)
    t = teacher_key(r, "Q1", "/models/base", teacher.key_options(), None, ("0.0.0", "9.9.9"))
    assert t == "3a7e271b398dbdd5"
    t_loss = teacher_key(r, None, None, TeacherOptions(stop_on="loss").key_options(), "cd" * 32, ("0.0.0", "9.9.9"))
    assert t_loss == "77d6223a09179e73"
    c = copies_key(r, "Q1", 16, 3, None, {"p_mask": 0.1})
    assert c == "6c9e2f24b9ddf40a" and copies_key(r, "Q1", 16, 3, None, {}) == "232646bb4dced59a"
    lab = labels_key(t, c)
    assert lab == "ad1dafe3d3f6bed9"
    options = student_options(seed=3)
    # the students were chosen on validation accuracy then ("accuracy"); the log-loss choice is a new key
    acc = students_key(lab, "auto", ("bathtub", "7t"), (4.0,), options, "RULE", "0.0.0", "accuracy")
    assert acc == "c135f36e9985a867" != students_key(lab, "auto", ("bathtub", "7t"), (4.0,), options, "RULE", "0.0.0")
    ce = options.replace(temperature=2.0, soft_loss="ce", offsets=False, average=None)
    assert students_key(lab, "7t", ("7t",), (1.0, 4.0), ce, "RULE", "0.0.0", "accuracy") == "87fdbfe7a0f8ae3c"
    # an option the old keys did not hash is hashed once it differs from its default
    for changed in (options.replace(lr=2e-3), options.replace(ordinal=4.0)):
        assert students_key(lab, "auto", ("bathtub", "7t"), (4.0,), changed, "RULE", "0.0.0", "accuracy") != acc


def test_students_and_teacher_options_come_from_one_place():
    assert STUDENT_OPTIONS == TrainOptions(soft_loss="mse", average=1.0)
    o = student_options(epochs=3, seed=None, patience=None)
    assert (o.epochs, o.patience, o.seed, o.soft_loss, o.average) == (3, TrainOptions.patience, TrainOptions.seed,
                                                                       "mse", 1.0)
    assert student_options(TrainOptions(lr=0.01), soft_loss="ce").lr == 0.01
    with pytest.raises(OptionError, match="soft_loss"):
        student_options(soft_loss="kl")
    assert presets_for("auto") == ("bathtub", "7t") and presets_for("7t") == ("7t",)
    assert TeacherOptions.make(None) == TeacherOptions() and TeacherOptions().as_dict() == TEACHER_DEFAULTS
    assert TeacherOptions.make({"epochs": 3}).epochs == 3
    assert "tolerance" not in TeacherOptions(tolerance=0).key_options()
    for bad, opt in (({"epochs": 0}, "teacher_epochs"), ({"lr": -1.0}, "teacher_lr"),
                     ({"tolerance": 1.0}, "teacher_tolerance"), ({"stop_on": "f1"}, "teacher_stop_on"),
                     ({"epoch": 3}, "teacher_options")):
        with pytest.raises(OptionError, match=opt):
            TeacherOptions.make(bad)


def _chain(tmp_path, contexts=True, teacher_dir=None, item="Q1"):
    rows = ItemRows(ids=("a", "b"), texts=("x y", "z"), labels=(0, 1), contexts=("q", "q") if contexts else None,
                    roles=("train", "val"), kind="int")
    return ItemChain(work=str(tmp_path), item=item, name="item Q1", rows_key="r", rows_csv="/w/rows.csv", rows=rows,
                     unlabeled_rows=(), unlabeled_sha=None, teacher_dir=teacher_dir, teacher_sha=None,
                     base="/models/base", teacher=TeacherOptions(epochs=4, lr=3e-3), teacher_threads=None, copies=1,
                     augment={}, preset="auto", presets=presets_for("auto"), lams=(4.0,),
                     options=student_options(seed=3), seed=3)


#: the argv tinykd distill gave the teacher before its job files, for the chain of :func:`_chain`
OLD_FIT = ["fit", "--data", "/w/rows.csv", "--text-col", "text", "--label-col", "label", "--id-col", "id",
           "--context-col", "context", "--split-col", "role", "--train-split", "train", "--val-split", "val",
           "--test-split", "test", "--where", "item=Q1", "--out", "D", "--name", "teacher", "--seed", "3",
           "--threads", "2", "--base", "/models/base", "--epochs", "4", "--patience", "1", "--lr", "0.003",
           "--batch-size", "16", "--max-length", "128", "--stop-on", "accuracy", "--tolerance", "0.01",
           "--progress-every", "20"]
OLD_GIVEN = ["export", "--teacher", "/given", "--data", "/w/rows.csv", "--text-col", "text", "--label-col", "label",
             "--id-col", "id", "--split-col", "role", "--train-split", "train", "--val-split", "val",
             "--test-split", "test", "--out", "D", "--name", "teacher", "--seed", "3"]
OLD_LABELS = ["export", "--teacher", "/t", "--data", "/c.csv", "--text-col", "text", "--id-col", "id",
              "--context-col", "context", "--out", "D", "--name", "labels", "--threads", "2"]


def test_teacher_job_files_carry_the_arguments_the_argv_did(tmp_path, monkeypatch):
    ran = []
    monkeypatch.setattr(T, "run_teacher", lambda args, log: ran.append(args))
    cases = [(T.fit_teacher, (_chain(tmp_path), 2), OLD_FIT),
             (T.fit_teacher, (_chain(tmp_path, contexts=False, teacher_dir="/given", item=None), None), OLD_GIVEN),
             (T.label_copies, ("/t", "/c.csv", 5, True, 2), OLD_LABELS)]
    for k, (stage, args, old) in enumerate(cases):
        folder = tmp_path / f"stage{k}"
        folder.mkdir()
        stage(str(folder), *args, print)
        path = str(folder / T.JOB_FILE)
        assert ran[-1] == ["job", path]
        want = build_parser().parse_args([str(folder) if a == "D" else a for a in old])
        assert read_job(path) == want  # the same command and every option the same, typed as the flags give
    none = T.label_copies(str(tmp_path), "/t", "/c.csv", 0, True, 2, print)
    assert none == {"n": 0, "teacher_weights": None, "copies_dir": ""} and len(ran) == 3  # no weights at /t


def test_teacher_bf16_is_validated_keyed_only_when_set_and_reaches_every_teacher_job(tmp_path, monkeypatch):
    """``bf16`` "off" (the default) leaves the teacher's key — and so the labels' — as pinned above and the
    job files as they were; "on" / "auto" changes both keys and reaches the fit, the given teacher's export
    and the labels stage's export alike."""
    import dataclasses

    from tinykd.cli.parser import build_parser as tinykd_parser

    r, versions = "e704aaf930728c8d", ("0.0.0", "9.9.9")
    off = TeacherOptions(epochs=4, lr=3e-3, bf16="off")
    assert off.key_options() == TeacherOptions(epochs=4, lr=3e-3).key_options() and "bf16" not in off.key_options()
    t_off = teacher_key(r, "Q1", "/models/base", off.key_options(), None, versions)
    assert t_off == "3a7e271b398dbdd5" and labels_key(t_off, "6c9e2f24b9ddf40a") == "ad1dafe3d3f6bed9"
    keys = {t_off}
    for value in ("on", "auto"):
        opts = dataclasses.replace(off, bf16=value)
        assert opts.key_options()["bf16"] == value
        t = teacher_key(r, "Q1", "/models/base", opts.key_options(), None, versions)
        assert t not in keys and labels_key(t, "6c9e2f24b9ddf40a") != "ad1dafe3d3f6bed9"
        keys.add(t)
    for bad in ("yes", True, None, "ON"):
        with pytest.raises(OptionError, match="teacher_bf16"):
            TeacherOptions.make({"bf16": bad})
    ran = []
    monkeypatch.setattr(T, "run_teacher", lambda args, log: ran.append(read_job(args[1])))
    chain = dataclasses.replace(_chain(tmp_path), teacher=TeacherOptions(epochs=4, lr=3e-3, bf16="auto"))
    given = dataclasses.replace(chain, teacher_dir="/given")
    for k, run in enumerate((lambda f: T.fit_teacher(f, chain, 2, print), lambda f: T.fit_teacher(f, given, 2, print),
                             lambda f: T.label_copies(f, "/t", "/c.csv", 5, True, 2, print, "auto"))):
        (tmp_path / f"s{k}").mkdir()
        run(str(tmp_path / f"s{k}"))
    assert [(a.cmd, a.bf16) for a in ran] == [("fit", "auto"), ("export", "auto"), ("export", "auto")]
    assert "bf16" not in json.dumps(T.fit_job(_chain(tmp_path), "D", 2))  # off: the job file as before
    assert "bf16" not in json.dumps(T.labels_job("/t", "/c.csv", True, "D", 2))
    unsupported = T.TeacherError("--bf16 on: bfloat16 is not supported here (CPU without AVX-512 BF16 or AMX BF16)")
    assert "--teacher-bf16 auto" in T._what_to_do(unsupported, {"command": "fit"})
    parse = tinykd_parser().parse_args
    assert parse(["distill", "a.csv", "--out", "s.npz"]).teacher_bf16 is None  # unset: the default, off
    assert parse(["distill", "a.csv", "--out", "s.npz", "--teacher-bf16", "auto"]).teacher_bf16 == "auto"


@pytest.mark.parametrize("job, message", [
    ({"command": "crossfit"}, '"command" must be one of fit, export'),
    ({"command": "fit", "data": "d.csv"}, "fit needs out"),
    ({"command": "export", "data": "d.csv", "out": "o", "teacher": "t", "epochs": 3},
     "unknown option(s) of export: epochs"),
    ({"command": "fit", "data": "d.csv", "out": "o", "lr": "fast"}, "lr cannot be 'fast'"),
    ({"command": "fit", "data": "d.csv", "out": "o", "epochs": 2.5}, "epochs cannot be 2.5"),
    ({"command": "fit", "data": "d.csv", "out": "o", "stop_on": "f1"}, "stop_on cannot be 'f1'"),
    ({"command": "fit", "data": "d.csv", "out": "o", "where": "item=1"}, "where cannot be 'item=1'"),
    ({"command": "fit", "data": "d.csv", "out": "o", "max_length": "long"}, "max_length cannot be 'long'"),
    ({"command": "fit", "data": "d.csv", "out": "o", "max_length": 0}, "max_length cannot be 0"),
    ({"command": "fit", "data": "d.csv", "out": "o", "truncate": "answer"}, "truncate cannot be 'answer'"),
    ([1, 2], '"command" must be one of fit, export'),
])
def test_bad_job_files_are_one_line_errors(tmp_path, capsys, job, message):
    from teacher_export.cli import main

    path = tmp_path / "job.json"
    path.write_text(json.dumps(job))
    with pytest.raises(JobError, match="job file"):
        read_job(str(path))
    assert main(["job", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"tinykd-teacher: error: job file {path}: ") and message in err and err.count("\n") == 1


def test_a_job_file_left_out_options_take_the_commands_defaults(tmp_path):
    path = tmp_path / "job.json"
    path.write_text(json.dumps({"command": "fit", "data": "d.csv", "out": "o", "lr": 1, "class_weight": True}))
    args = read_job(str(path))
    assert vars(args) == {**vars(build_parser().parse_args(["fit", "--data", "d.csv", "--out", "o", "--lr", "1",
                                                             "--class-weight"]))}
    assert isinstance(args.lr, float) and args.epochs == 6 and args.where == []
    for length in ("auto", 256):  # a number, or "auto" (docs/decisions/teacher-length.md)
        path.write_text(json.dumps({"command": "fit", "data": "d.csv", "out": "o", "max_length": length}))
        assert read_job(str(path)).max_length == length
        assert build_parser().parse_args(["fit", "--data", "d.csv", "--out", "o", "--max-length",
                                          str(length)]).max_length == length
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(JobError, match="bad.json"):
        read_job(str(tmp_path / "bad.json"))


def test_unlabeled_answers_are_copied_and_the_training_copies_stay(tmp_path):
    import csv
    import dataclasses

    from tinykd.distill.copies import write_copies

    rows = ItemRows(ids=("a", "b", "c", "u0"), texts=("the cell wall holds water", "a membrane lets salt in",
                                                       "osmosis moves water", "water moves across the membrane"),
                    labels=(0, 1, 0, None), contexts=None, roles=("train", "train", "val", "unlabeled"), kind="int")
    chain = dataclasses.replace(_chain(tmp_path, contexts=False), rows=rows,
                                unlabeled_rows=(("u1", "salt pulls the water out of the cell", "", "Q1"),))
    no_unlabeled = dataclasses.replace(rows, roles=("train", "train", "val", "other"))
    plain = dataclasses.replace(chain, rows=no_unlabeled, unlabeled_rows=())
    got = {}
    for name, c in (("with", chain), ("without", plain)):
        folder = tmp_path / name
        folder.mkdir()
        res = write_copies(str(folder), c, 3)
        with open(folder / "copies.csv", newline="") as f:
            got[name] = (res, [r[:2] for r in list(csv.reader(f))[1:]])
    (res, rows_with), (res0, rows_without) = got["with"], got["without"]
    assert res0 == {"n": 6, "copies": 6, "unlabeled": 0}
    assert res == {"n": 14, "copies": 12, "unlabeled": 2}
    assert rows_with[:6] == rows_without  # the training answers' copies do not change
    ids = [i for i, _ in rows_with[6:]]
    assert ids == ["u0", "u0~aug0", "u0~aug1", "u0~aug2", "u1", "u1~aug0", "u1~aug1", "u1~aug2"]
    # the unlabeled answers' copies draw their swaps from the unlabeled answers' own words
    vocab = set("water moves across the membrane salt pulls the water out of the cell".split())
    assert all(set(t.split()) <= vocab for _, t in rows_with[6:])
    base = copies_key("r", "Q1", 3, 3, None, {})
    assert copies_key("r", "Q1", 3, 3, None, {}, unlabeled=False) == base != copies_key("r", "Q1", 3, 3, None, {},
                                                                                        unlabeled=True)


def test_a_students_folder_made_before_the_plain_nn_rule_is_used_when_it_kept_a_kd_student(tmp_path):
    import dataclasses

    from tinykd.distill.pipeline import _students_key
    from tinykd.distill.students import PLAIN_RULE
    from tinykd import __version__
    from tinykd.train.offsets import RULE

    chain = _chain(tmp_path)
    parts = ("L", chain.preset, chain.presets, chain.lams, chain.options, RULE, __version__, "validation", "validation")
    legacy, new = students_key(*parts), students_key(*parts, plain_rule=PLAIN_RULE)
    assert legacy != new

    class Cache:
        def __init__(self, done):
            self.done = done

        def result(self, stage, key):
            return self.done.get(key)

    assert _students_key(Cache({}), chain, "L") == new  # nothing made: the rule's own folder
    assert _students_key(Cache({legacy: {"lam": 4.0}}), chain, "L") == legacy  # a KD student kept: the same one
    assert _students_key(Cache({legacy: {"lam": 0.0}}), chain, "L") == new  # the plain NN kept: trained again
    assert _students_key(Cache({legacy: {"lam": 4.0}, new: {"lam": 4.0}}), chain, "L") == new
    fid = dataclasses.replace(chain, choose_on="fidelity")
    assert _students_key(Cache({}), fid, "L") == students_key(*parts[:7], "fidelity", "fidelity")


def test_the_choice_by_log_loss_has_a_key_of_its_own(tmp_path):
    """docs/decisions/student-choice.md: the default (log-loss) trains and chooses in a students' folder of its
    own; ``choose_on="accuracy"`` reads the folders made before (pinned in test_stage_keys_are_those_of_earlier_…)."""
    import dataclasses

    from tinykd.distill.pipeline import _students_key

    class Cache:
        def result(self, stage, key):
            return None

    chain = _chain(tmp_path)
    keys = {on: _students_key(Cache(), dataclasses.replace(chain, choose_on=on), "L")
            for on in ("validation", "accuracy", "fidelity")}
    assert len(set(keys.values())) == 3


def _items_csv(path, counts):
    """A data file of items ``{item: training rows}``, each with one validation and two test rows, its answers
    naming their item and row."""
    import csv

    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "item", "split", "text", "label"])
        for item, n in counts.items():
            for k in range(n + 3):
                role = "train" if k < n else "val" if k == n else "test"
                w.writerow([f"{item}{k}", item, role, f"answer {k} to {item}", k % 2])
    return str(path)


def test_other_items_are_as_many_training_answers_of_the_other_items(tmp_path):
    """distill's default with one --where COL=V: the other values' training answers (never their validation or test
    rows, never the chosen item's), as many as the chosen item's training answers, drawn by the seed, in file order;
    all of them where they are fewer; none without other items, with another --where or with --item-col."""
    from tinykd.distill.rows import Columns, other_items, read_rows

    data = _items_csv(tmp_path / "d.csv", {"a": 5, "b": 4, "c": 6, "z": 20})
    cols = Columns("text", "label", "id", None, None, "split", "train", None, "test")

    def others(where, seed=0, columns=cols):
        table, c, _ = read_rows(data, columns, where, seed)
        return other_items(data, c, where, table, seed)

    got, sha = others(["item=a"])
    picked = [r[0] for r in got]
    assert len(got) == 5 and len(set(picked)) == 5 and len(sha) == 64
    assert all(i.split("-")[1] in "bcz" and i.split("-")[2][0] == i.split("-")[1] for i in picked)
    order = {f"other-{it}-{it}{k}": n for n, (it, k) in enumerate((it, k) for it, m in (("b", 4), ("c", 6), ("z", 20))
                                                                   for k in range(m))}
    assert all(i in order for i in picked)  # training rows only: no validation or test row
    assert [order[i] for i in picked] == sorted(order[i] for i in picked)  # file order
    assert all(r[1] == f"answer {r[0].split('-')[2][1:]} to {r[0].split('-')[1]}" and r[2:] == ("", None) for r in got)
    assert others(["item=a"]) == (got, sha)  # the seed decides the draw
    assert [r[0] for r in others(["item=a"], seed=1)[0]] != picked
    many, _ = others(["item=z"])  # z has 20 training answers, the others 15 together: all of them
    assert [r[0] for r in many] == [f"other-{it}-{it}{k}" for it, m in (("a", 5), ("b", 4), ("c", 6)) for k in range(m)]
    single = _items_csv(tmp_path / "one.csv", {"a": 5})
    t, c, _ = read_rows(single, cols, ["item=a"], 0)
    assert other_items(single, c, ["item=a"], t, 0) == ([], None)  # no other item
    assert others(None) == ([], None) and others(["item=a", "label=1"]) == ([], None)
    assert others(None, columns=cols._replace(item="item")) == ([], None)  # --item-col: not measured, left out


def _distill_gets(monkeypatch, key, argvs):
    """What ``tinykd distill`` passes to distill as ``key`` for each argument list of ``argvs`` (distill
    itself replaced: nothing runs)."""
    import tinykd.cli.commands as C
    import tinykd.distill.pipeline as P
    from tinykd.cli.parser import build_parser

    seen = []

    def fake(data, out, **kw):
        seen.append(kw[key])
        raise SystemExit(0)

    monkeypatch.setattr(P, "teacher_available", lambda: True)
    monkeypatch.setattr(P, "distill", fake)
    monkeypatch.setattr(T, "teacher_base_option", lambda *a: None)
    for argv in argvs:
        with pytest.raises(SystemExit):
            C.cmd_distill(build_parser().parse_args(argv))
    return seen


def test_other_items_flag_reaches_distill(monkeypatch, tmp_path):
    """``tinykd distill --other-items`` passes ``other_items=True`` to distill; without it or with
    ``--no-other-items``, False (the default since the check of docs/decisions/transfer-data.md)."""
    data = _items_csv(tmp_path / "d.csv", {"a": 5, "b": 4})
    base = ["distill", data, "--out", str(tmp_path / "m.npz"), "--where", "item=a"]
    seen = _distill_gets(monkeypatch, "other_items", [base + x for x in ([], ["--other-items"], ["--no-other-items"])])
    assert seen == [False, True, False]


def test_choose_on_reaches_distill_and_stop_on_refuses_accuracy(monkeypatch, tmp_path, capsys):
    """``--choose-on`` validation (the default: log-loss), accuracy or fidelity reaches distill as given;
    ``--stop-on accuracy`` is refused by the parser (the students stop on validation or fidelity)."""
    from tinykd.cli.parser import build_parser

    data = _items_csv(tmp_path / "d.csv", {"a": 5})
    base = ["distill", data, "--out", str(tmp_path / "m.npz")]
    seen = _distill_gets(monkeypatch, "choose_on",
                         [base + x for x in ([], ["--choose-on", "accuracy"], ["--choose-on", "fidelity"])])
    assert seen == ["validation", "accuracy", "fidelity"]
    with pytest.raises(SystemExit):
        build_parser().parse_args(base + ["--stop-on", "accuracy"])
    assert "--stop-on: invalid choice: 'accuracy'" in capsys.readouterr().err
