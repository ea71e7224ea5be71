"""tinykd distill end to end on a tiny local BERT: single and per-item, resumable stages (an
interruption then a rerun that recomputes nothing finished), a changed option invalidating only
the stages after it, and one clear line without the teacher extra."""
import csv
import glob
import os
import json

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

pytestmark = pytest.mark.slow  # fine-tunes tiny BERTs in subprocesses

pytest.importorskip("torch")
pytest.importorskip("transformers")

import tinykd  # noqa: E402
import tinykd.distill.job as J  # noqa: E402
import tinykd.distill.pipeline as D  # noqa: E402
import tinykd.distill.teacher as T  # noqa: E402

from tinykd.quality.evaluate import verdict_summary  # noqa: E402

from conftest import FILLER, WORDS, assert_user_error, model_contents, run_cli  # noqa: E402

TEACHER = dict(epochs=4, patience=2, lr=3e-3, batch_size=8, max_length=32)
# the tests of other stages run without the default's aliases (its vectors stage): the alias tests below run them
STUDENT = dict(copies=2, lams=(1.0, 4.0), epochs=3, patience=2, preset="falling_weights", verbose=False,
               teacher_aliases=None)


def student(**kw):
    """:data:`STUDENT` with ``kw`` in place."""
    return {**STUDENT, **kw}


def make_csv(path, n=90, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        lab = str(i % 3)
        words = list(rng.choice(WORDS[lab], 3)) + list(rng.choice(FILLER, 3))
        rng.shuffle(words)
        split = "train" if i % 10 < 6 else ("val" if i % 10 < 8 else "test")
        rows.append({"id": f"r{i:03d}", "item": f"Q{1 + i % 2}", "split": split, "text": " ".join(words),
                     "label": lab})
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return str(path)


def add_rater2(path):
    """A second rater's column ``rater2``: the first rater's score, one point off on every fourth row; and
    ``rater2_untested``, the same but blank on the test rows (as ASAP-SAS's score2)."""
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for i, r in enumerate(rows):
        r["rater2"] = str((int(r["label"]) + (i % 4 == 0)) % 3)
        r["rater2_untested"] = "" if r["split"] == "test" else r["rater2"]
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return [r for r in rows if r["split"] == "test"]


def expected_verdicts(work, model, test, rater2=False):
    """``tinykd report``'s assess() of the teacher's arg-max (its probabilities in the work folder) and the
    student's scores on the ``test`` rows, called directly."""
    from tinykd.files.softlabels import read_soft_labels
    from tinykd.quality.evaluate import assess

    p_t = read_soft_labels(str(next(work.glob("teacher-*/teacher.csv"))), [r["id"] for r in test], ["0", "1", "2"])
    human, r2 = [int(r["label"]) for r in test], [int(r["rater2"]) for r in test] if rater2 else None
    machines = {"teacher": [int(k) for k in p_t.argmax(1)], "student": model.predict([r["text"] for r in test])}
    return {who: assess(human, m, labels=[0, 1, 2], rater2=r2, name=f"all rows: {who}") for who, m in machines.items()}


@pytest.fixture
def teacher_calls(monkeypatch):
    calls = []
    real = T.run_teacher_job

    def counted(folder, job, log):
        calls.append(job["command"])
        return real(folder, job, log)

    monkeypatch.setattr(T, "run_teacher_job", counted)
    return calls


def test_distill_single_then_resume_and_invalidate(tmp_path, tiny_base, teacher_calls, monkeypatch):
    data = make_csv(tmp_path / "d.csv")
    test = add_rater2(data)
    out, work = tmp_path / "m.npz", tmp_path / "work"
    res = D.distill(data, out, base=tiny_base, teacher_options=TEACHER, work=str(work), **STUDENT)
    assert teacher_calls == ["fit", "export"]  # fine-tune, then label the copies
    assert [r.split(":")[0] for r in res.ran] == ["rows", "teacher", "copies", "labels", "students"]
    m = tinykd.load(out)
    d = m.meta["distill"]
    assert m.classes == [0, 1, 2] and d["lam"] in (0.0, 1.0, 4.0) and set(d["validation"]) == {"0.0", "1.0", "4.0"}
    assert d["copies"] == 54 * 2  # 54 training answers × 2 copies
    # the kept student is the one of lowest validation log-loss (docs/decisions/student-choice.md), never chosen
    # on test rows; the plain NN a candidate only when the teacher is below it there (plain-nn-choice.md)
    v = d["validation"]
    plain_in = d["teacher_validation"]["accuracy"] < v["0.0"]["accuracy"]
    best = min((m_ for lam, m_ in v.items() if plain_in or lam != "0.0"), key=lambda m_: m_["logloss"])
    assert v[str(d["lam"])]["logloss"] == best["logloss"]
    assert m.meta["training"]["n_transfer"] == (108 if d["lam"] else 0) and m.meta["training"]["n_val"] == 18
    rep = res.report["all rows"]
    assert rep["n"] == 18 and set(rep) >= {"teacher", "plain NN", "TF-IDF + LR"}
    assert all(0.0 <= v["accuracy"] <= 1.0 for k, v in rep.items() if k not in ("n", "verdicts"))
    # the teacher's and the student's verdict by tinykd report's criteria: assess() on the same rows, as it says
    verdicts = expected_verdicts(work, m, test)
    assert json.dumps(rep["verdicts"]) == json.dumps(verdicts)  # (NaN-safe equality)
    assert rep["verdicts"]["teacher"]["accuracy"] == rep["teacher"]["accuracy"]
    lines = D.format_report(res)
    assert [ln.strip() for ln in lines if ln.startswith("  all rows: ")] == [
        verdict_summary(verdicts["teacher"]), verdict_summary(verdicts["student"])]
    assert "degradation not checked (no second rater)" in lines[-3]
    assert set(res.seconds) >= {"teacher", "copies", "labels", "students", "total"}
    job = json.loads(next(work.glob("teacher-*/job.json")).read_text())  # the teacher's one job file
    assert job["command"] == "fit" and job["epochs"] == 4 and job["split_col"] == "role" and job["base"] == tiny_base

    again = D.distill(data, out, base=tiny_base, teacher_options=TEACHER, work=str(work), **STUDENT,
                      rater2_col="rater2")  # read for the report alone: every stage reused
    assert again.ran == [] and len(again.cached) == 5 and teacher_calls == ["fit", "export"]
    hh = again.report["all rows"]["verdicts"]
    assert json.dumps(hh) == json.dumps(expected_verdicts(work, m, test, rater2=True))
    assert hh["teacher"]["human_human"]["n"] == 18 and "human_human" not in rep["verdicts"]["teacher"]
    assert {c["criterion"] for c in hh["student"]["checks"]} >= {"degradation_qwk", "degradation_r"}
    assert "no second rater" not in " ".join(D.format_report(again))
    # no second score on the test rows: the human–human QWK of the training and validation rows stands in
    third = D.distill(data, out, base=tiny_base, teacher_options=TEACHER, work=str(work), **STUDENT,
                      rater2_col="rater2_untested")
    assert third.ran == []
    rows = list(csv.DictReader(open(data, newline="")))
    other = [r for r in rows if r["split"] != "test"]
    ref = cohen_kappa_score([int(r["label"]) for r in other], [int(r["rater2"]) for r in other], weights="quadratic")
    for who, u in third.report["all rows"]["verdicts"].items():
        assert u["human_human"]["n"] == len(other) and u["human_human"]["qwk"] == pytest.approx(ref, abs=1e-12)
        assert u["human_human"]["degradation_qwk"] == pytest.approx(u["qwk"] - ref, abs=1e-12)
    assert "on the item's training and validation rows" in " ".join(D.format_report(third))
    assert again.made_seconds == res.made_seconds and set(again.seconds) == {"total"}  # cached: the first run's
    assert all(res.made_seconds[k] == round(res.seconds[k], 1) for k in ("teacher", "labels", "students"))
    np.testing.assert_array_equal(tinykd.load(out).net.params, m.net.params)

    monkeypatch.setattr(J, "AUTO_PRESETS", ("falling_weights", "bathtub"))
    auto = D.distill(data, out, base=tiny_base, teacher_options=TEACHER, work=str(work), **{**STUDENT, "preset": "auto"})
    assert [r.split(":")[0] for r in auto.ran] == ["students"]  # only the students' stage depends on the preset
    d = tinykd.load(out).meta["distill"]
    pres = ["falling_weights", "bathtub"]
    runs = {(pr, float(lam)): v for pr in pres for lam, v in d["presets"][pr].items()}
    assert set(d["presets"]) == set(pres) and len(runs) == 6
    plain = max((k for k in runs if not k[1]), key=lambda k: (runs[k]["accuracy"], runs[k]["qwk"], -pres.index(k[0])))
    pool = [k for k in runs if k[1]] + ([plain] if d["teacher_validation"]["accuracy"] < runs[plain]["accuracy"] else [])
    best = min(pool, key=lambda k: (runs[k]["logloss"], -k[1], pres.index(k[0])))  # lowest validation log-loss
    assert best == (d["preset"], d["lam"])
    assert tinykd.load(out).meta["preset"] == d["preset"] and d["validation"] == d["presets"][d["preset"]]

    more = D.distill(data, out, base=tiny_base, teacher_options=TEACHER, work=str(work),
                     **{**STUDENT, "copies": 3})  # a later stage's option: the teacher is kept
    assert [r.split(":")[0] for r in more.ran] == ["copies", "labels", "students"]
    assert teacher_calls == ["fit", "export", "export"]
    assert tinykd.load(out).meta["distill"]["copies"] == 54 * 3

    masked = D.distill(data, out, base=tiny_base, teacher_options=TEACHER, work=str(work),
                       **{**STUDENT, "copies": 3, "augment_options": {"p_mask": 0.3}, "soft_loss": "mse"})
    assert [r.split(":")[0] for r in masked.ran] == ["copies", "labels", "students"]
    texts = [open(p, encoding="utf-8").read() for p in work.glob("copies-*/copies.csv")]
    assert sum("[MASK]" in t for t in texts) == 1  # only the masked transfer set has masks
    kept = tinykd.load(out).meta
    assert kept["training"]["soft_loss"] == ("mse" if kept["distill"]["lam"] else "ce")  # (the plain NN may win)
    for bad, opt in (({"soft_loss": "kl"}, "soft_loss"), ({"augment_options": {"p_mask": 0.1, "p_x": 1}},
                                                          "augment_options"), ({"copies": 1.5}, "copies")):
        with pytest.raises(tinykd.OptionError, match=opt):
            D.distill(data, out, base=tiny_base, teacher_options=TEACHER, work=str(work), **{**STUDENT, **bad})
    assert teacher_calls == ["fit", "export", "export", "export"]  # bad options: refused before any teacher run
    with pytest.raises(tinykd.OptionError, match="stop_on"):
        D.distill(data, out, base=tiny_base, work=str(work), **STUDENT, choose_on="fidelity", stop_on="validation")
    with pytest.raises(tinykd.OptionError, match="stop_on"):
        D.distill(data, out, base=tiny_base, work=str(work), **STUDENT, stop_on="accuracy")
    with pytest.raises(tinykd.OptionError, match="choose_on"):
        D.distill(data, out, base=tiny_base, work=str(work), **STUDENT, choose_on="qwk")


def test_distill_stops_and_chooses_on_fidelity(tmp_path, tiny_base, teacher_calls):
    """--choose-on fidelity and --stop-on fidelity: only the students' stage runs again, on fidelity rows
    (the 18 validation rows and the 2 copies of each of 7 answers, 1/8 of 54, held out of the transfer set)."""
    data = make_csv(tmp_path / "d.csv")
    out, work = tmp_path / "m.npz", str(tmp_path / "work")
    D.distill(data, out, base=tiny_base, teacher_options=TEACHER, work=work, **STUDENT)
    fid = D.distill(data, out, base=tiny_base, teacher_options=TEACHER, work=work, **STUDENT, choose_on="fidelity")
    assert [r.split(":")[0] for r in fid.ran] == ["students"] and teacher_calls == ["fit", "export"]
    m = tinykd.load(out)
    d = m.meta["distill"]
    kd = {lam: v for lam, v in d["validation"].items() if lam != "0.0"}
    assert all(v["fidelity"]["n"] == 18 + 14 for v in kd.values())
    if d["lam"]:  # the KD student of best agreement with the teacher (then KL)
        best = max(kd.values(), key=lambda v: (v["fidelity"]["agreement"], -v["fidelity"]["kl"]))
        assert kd[str(d["lam"])]["fidelity"] == best["fidelity"]
        assert m.meta["training"]["n_transfer"] == 108 - 14 and m.meta["fidelity_metrics"]["n"] == 32
    else:  # the plain NN only when the teacher is below it on the validation rows
        assert d["teacher_validation"]["accuracy"] < d["validation"]["0.0"]["accuracy"]
    stop = D.distill(data, out, base=tiny_base, teacher_options=TEACHER, work=work, **STUDENT, stop_on="fidelity")
    assert [r.split(":")[0] for r in stop.ran] == ["students"]
    d = tinykd.load(out).meta["distill"]
    plain_in = d["teacher_validation"]["accuracy"] < d["validation"]["0.0"]["accuracy"]
    best = min((v for lam, v in d["validation"].items() if plain_in or lam != "0.0"), key=lambda v: v["logloss"])
    assert d["validation"][str(d["lam"])]["logloss"] == best["logloss"]  # chosen on validation log-loss
    assert all(v["logloss"] > 0 for v in d["presets"][d["preset"]].values())
    assert all(v["fidelity"]["n"] == 32 for lam, v in d["validation"].items() if lam != "0.0")  # stopped on it


def test_the_ordinal_term_long_weight_and_balance_reach_the_kd_students_and_text_leaves_ordinal_out(tmp_path, tiny_base,
                                                                                          teacher_calls):
    data = make_csv(tmp_path / "d.csv")
    out, work = tmp_path / "m.npz", str(tmp_path / "work")
    D.distill(data, out, base=tiny_base, teacher_options=TEACHER, work=work, **STUDENT)
    before = tinykd.load(out).meta["distill"]["validation"]
    res = D.distill(data, out, base=tiny_base, teacher_options=TEACHER, work=work, **STUDENT, ordinal=4.0)
    assert [r.split(":")[0] for r in res.ran] == ["students"]
    m = tinykd.load(out).meta
    assert m["training"].get("ordinal") == (4.0 if m["distill"]["lam"] else None)
    assert m["distill"]["validation"]["0.0"] == before["0.0"]  # the plain NN has no teacher: the same
    long_ = D.distill(data, out, base=tiny_base, teacher_options=TEACHER, work=work, **STUDENT,
                      options=D.STUDENT_OPTIONS.replace(long_weight=2))
    assert [r.split(":")[0] for r in long_.ran] == ["students"]  # a new key: the students train again
    m = tinykd.load(out).meta
    assert m["training"].get("long_weight") == (2 if m["distill"]["lam"] else None)  # the KD students only
    assert m["distill"]["validation"]["0.0"] == before["0.0"]
    balanced = D.distill(data, out, base=tiny_base, teacher_options=TEACHER, work=work, **STUDENT,
                         options=D.STUDENT_OPTIONS.replace(balance_transfer=True))
    assert [r.split(":")[0] for r in balanced.ran] == ["students"]
    m = tinykd.load(out).meta
    assert m["training"].get("balance_transfer") == (True if m["distill"]["lam"] else None)
    assert m["distill"]["validation"]["0.0"] == before["0.0"]
    assert m["distill"]["validation"]["4.0"] != before["4.0"]  # weighted transfer rows: another KD student
    words = {"0": "none", "1": "partial", "2": "full"}
    with open(data, newline="") as fh:
        rows = [{**r, "label": words[r["label"]]} for r in csv.DictReader(fh)]
    with open(tmp_path / "t.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    text_work = str(tmp_path / "text-work")
    D.distill(str(tmp_path / "t.csv"), out, base=tiny_base, teacher_options=TEACHER, work=text_work, **STUDENT)
    again = D.distill(str(tmp_path / "t.csv"), out, base=tiny_base, teacher_options=TEACHER, work=text_work,
                      **STUDENT, ordinal=4.0)
    assert again.ran == [] and "ordinal" not in tinykd.load(out).meta["training"]  # no order: the same students


def test_teacher_vectors_start_the_kd_students_embeddings_in_a_stage_of_their_own(tmp_path, tiny_base, teacher_calls):
    from teacher_export.vectors import words_of
    from tinykd.files.csvfiles import read_table

    data = make_csv(tmp_path / "d.csv", seed=2)
    out, work = tmp_path / "m.npz", str(tmp_path / "work")
    D.distill(data, out, base=tiny_base, teacher_options=TEACHER, work=work, **STUDENT)
    before = tinykd.load(out).meta
    res = D.distill(data, out, base=tiny_base, teacher_options=TEACHER, work=work, **STUDENT, teacher_vectors=True)
    assert [r.split(":")[0] for r in res.ran] == ["vectors", "students"]  # the teacher, copies and labels stay
    m = tinykd.load(out).meta
    assert m["distill"]["validation"]["0.0"] == before["distill"]["validation"]["0.0"]  # the plain NN: unchanged
    assert m["training"].get("word_vectors", 0) > 0 if m["distill"]["lam"] else "word_vectors" not in m["training"]
    (folder,) = glob.glob(os.path.join(work, "vectors-*"))
    copies = read_table(glob.glob(os.path.join(work, "copies-*", "copies.csv"))[0])
    with np.load(os.path.join(folder, "vectors.npz")) as f:
        assert f["words"].tolist() == words_of(copies.column("text")) and f["vectors"].shape[1] == 32  # tiny hidden
        assert np.isfinite(f["vectors"]).all() and len({tuple(v) for v in f["vectors"].round(5)}) > 1
    again = D.distill(data, out, base=tiny_base, teacher_options=TEACHER, work=work, **STUDENT, teacher_vectors=True)
    assert again.ran == []


def test_teacher_aliases_let_the_kd_students_read_the_teachers_words_outside_their_vocabulary(tmp_path, tiny_base,
                                                                                              teacher_calls):
    from teacher_export.vectors import words_of
    from tinykd.files.csvfiles import read_table

    data = make_csv(tmp_path / "d.csv", seed=2)
    out, work = tmp_path / "m.npz", str(tmp_path / "work")
    D.distill(data, out, base=tiny_base, teacher_options=TEACHER, work=work, **STUDENT)
    before = tinykd.load(out).meta
    res = D.distill(data, out, base=tiny_base, teacher_options=TEACHER, work=work, **student(teacher_aliases="train"))
    assert [r.split(":")[0] for r in res.ran] == ["vectors", "students"]  # the teacher, copies and labels stay
    st = tinykd.load(out)
    assert st.meta["distill"]["validation"]["0.0"] == before["distill"]["validation"]["0.0"]  # the plain NN: unchanged
    copies = read_table(glob.glob(os.path.join(work, "copies-*", "copies.csv"))[0])
    (folder,) = glob.glob(os.path.join(work, "vectors-*"))
    with np.load(os.path.join(folder, "vectors.npz")) as f:
        extra = set(f["words"].tolist()) - set(words_of(copies.column("text")))
    assert extra == {"what", "happens", "explain", "why"}  # the tiny tokenizer's whole words no answer holds
    if st.meta["distill"]["lam"]:  # a KD student: the teacher's words read as its own
        assert extra <= set(st.vocab.aliases) and st.meta["training"]["aliases"] == len(st.vocab.aliases)
        p = st.predict_proba(["why", "what"])
        read_as = [st.vocab.tokens[st.vocab.aliases[w]] for w in ("why", "what")]
        np.testing.assert_array_equal(p, st.predict_proba(read_as))
    else:
        assert st.vocab.aliases == {}
    again = D.distill(data, out, base=tiny_base, teacher_options=TEACHER, work=work, **student(teacher_aliases="train"))
    assert again.ran == []
    both = D.distill(data, out, base=tiny_base, teacher_options=TEACHER, work=work, **student(teacher_aliases="train"),
                     teacher_vectors=True)
    assert [r.split(":")[0] for r in both.ran] == ["students"]  # the same vectors, students of their own


def test_unseen_aliases_are_the_default_and_come_after_the_students_who_stay_as_they_were(tmp_path, tiny_base,
                                                                                        teacher_calls):
    data = make_csv(tmp_path / "d.csv", seed=2)
    out, work = tmp_path / "m.npz", str(tmp_path / "work")
    first = D.distill(data, out, base=tiny_base, teacher_options=TEACHER, work=work, **STUDENT)  # no aliases
    before = tinykd.load(out)
    assert before.vocab.aliases == {} and J.ALIASES_DEFAULT == "unseen"
    default = {k: v for k, v in STUDENT.items() if k != "teacher_aliases"}
    res = D.distill(data, out, base=tiny_base, teacher_options=TEACHER, work=work, **default)
    assert [r.split(":")[0] for r in res.ran] == ["vectors", "unseen"]  # the students are the same, cached
    assert teacher_calls == ["fit", "export", "vectors"]
    assert res.made_seconds["students"] == first.made_seconds["students"] > 0  # and so are their seconds
    st = tinykd.load(out)
    assert st.meta["distill"]["lam"] and np.array_equal(st.net.params, before.net.params)
    assert set(st.vocab.aliases) == {"what", "happens", "explain", "why"}  # the words no answer or copy holds
    assert st.meta["training"]["aliases"] == 4 and st.meta["training"]["aliases_after_training"] is True
    texts = ["the acid rain dissolves the marble", "water in a cup"]
    np.testing.assert_array_equal(st.predict_proba(texts), before.predict_proba(texts))  # words it read: as before
    why = st.vocab.tokens[st.vocab.aliases["why"]]
    np.testing.assert_array_equal(st.predict_proba(["why"]), st.predict_proba([why]))
    assert not np.array_equal(st.predict_proba(["why"]), before.predict_proba(["why"]))  # before: an OOV
    with pytest.raises(tinykd.OptionError, match="teacher_aliases must be one of train, unseen, outside"):
        D.distill(data, out, base=tiny_base, teacher_options=TEACHER, work=work, **student(teacher_aliases="yes"))


def test_outside_aliases_also_read_the_training_words_outside_the_vocabulary(tmp_path, tiny_base, teacher_calls):
    from tinykd.scoring.text import tokenize

    data = make_csv(tmp_path / "d.csv", seed=2)
    out, work = tmp_path / "m.npz", str(tmp_path / "work")
    small = J.STUDENT_OPTIONS.replace(config={"max_vocab": 12})  # 9 words: most training words stay outside
    got = {}
    for mode in ("unseen", "outside"):
        res = D.distill(data, out, base=tiny_base, teacher_options=TEACHER, work=work, options=small,
                        **student(teacher_aliases=mode))
        got[mode] = tinykd.load(out)
    assert [r.split(":")[0] for r in res.ran] == ["unseen"]  # the same vectors and students: only the stage after
    unseen, outside = got["unseen"], got["outside"]
    assert outside.meta["distill"]["lam"] and np.array_equal(outside.net.params, unseen.net.params)
    with open(data, newline="") as fh:
        training = {w for r in csv.DictReader(fh) if r["split"] == "train" for w in tokenize(r["text"])}
    inside = set(outside.vocab.tokens)
    assert set(unseen.vocab.aliases) == {"what", "happens", "explain", "why"}  # unseen: the words never read
    assert set(outside.vocab.aliases) == set(unseen.vocab.aliases) | (training - inside)  # outside: every other
    w = sorted(training - inside)[0]
    np.testing.assert_array_equal(outside.predict_proba([w]), outside.predict_proba([outside.vocab.tokens[
        outside.vocab.aliases[w]]]))


def test_interrupted_run_resumes_without_recomputing(tmp_path, tiny_base, teacher_calls, monkeypatch):
    data = make_csv(tmp_path / "d.csv", seed=1)
    out, work = tmp_path / "m.npz", str(tmp_path / "w")
    import tinykd.train.fitting as F

    def ctrl_c(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(F, "fit", ctrl_c)  # Ctrl-C in the students' stage
    with pytest.raises(KeyboardInterrupt):
        D.distill(data, out, base=tiny_base, teacher_options=TEACHER, work=work, **STUDENT)
    assert not out.exists() and teacher_calls == ["fit", "export"]
    monkeypatch.undo()
    res = D.distill(data, out, base=tiny_base, teacher_options=TEACHER, work=work, **STUDENT)
    assert [r.split(":")[0] for r in res.ran] == ["students"]  # nothing finished is computed again
    assert teacher_calls == ["fit", "export"] and out.exists()


def test_per_item_from_the_command_line(tmp_path, tiny_base, capsys):
    data = make_csv(tmp_path / "d.csv", n=120)
    add_rater2(data)
    out = tmp_path / "b.npz"
    rc, so, err = run_cli(capsys, "distill", data, "--out", out, "--item-col", "item", "--rater2-col", "rater2",
                          "--base", tiny_base,
                          "--copies", "1", "--epochs", "2", "--preset", "falling_weights",
                          "--teacher-epochs", "3", "--teacher-lr", "3e-3", "--teacher-batch-size", "8",
                          "--teacher-max-length", "32")
    assert rc == 0, err
    b = tinykd.load(out)
    assert isinstance(b, tinykd.Bundle) and b.items == ["Q1", "Q2"]
    assert "item Q1: teacher" in so and "item Q2: plain NN" in so and "seconds per stage" in so
    verdicts = [ln for ln in so.splitlines() if ln.startswith("  item ")]  # per item, the second rater's too
    assert [v.split(" (")[0] for v in verdicts] == [f"  item Q{q}: {w}" for q in (1, 2) for w in ("teacher", "student")]
    assert all("(12 rows): TOO FEW ANSWERS TO JUDGE — " in v and "QWK degradation" in v for v in verdicts), verdicts
    assert "[teacher] item Q2" in err  # progress per stage and item
    kept = [ln for ln in err.splitlines() if "[students] item Q1: kept" in ln]
    assert len(kept) == 1 and "(lowest validation log-loss)" in kept[0], err  # why this student
    assert "[students] item Q1: falling_weights, λ = 4: validation accuracy" in err and ", log-loss " in err
    tb = b.students["Q1"].meta["distill"]["teacher_base"]  # the base its teacher was fine-tuned from
    assert tb["name"] is None and tb["model"] == tiny_base and tb["params"] > 0
    rc, so, err = run_cli(capsys, "info", out)
    assert rc == 0 and f"  teacher: {os.path.basename(tiny_base)} ({tb['params'] / 1e6:.1f}M)" in so, so


def test_without_the_teacher_extra_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(D, "teacher_available", lambda: False)
    data = make_csv(tmp_path / "d.csv")
    rc, _, err = run_cli(capsys, "distill", data, "--out", tmp_path / "m.npz")
    assert_user_error(rc, err, "needs the teacher extra", "pip install 'tinykd[teacher]'")


# ------------------------------------------------------------------------------ Dask (the [dask] extra)
def test_per_item_on_dask_equals_one_process_and_reuses_its_stages(tmp_path, tiny_base, capsys):
    pytest.importorskip("distributed")
    from distributed import Client, LocalCluster

    data = make_csv(tmp_path / "d.csv", n=120)
    opts = dict(item_col="item", base=tiny_base, teacher_options=TEACHER, teacher_threads=1, **STUDENT)
    one = D.distill(data, tmp_path / "one.npz", work=str(tmp_path / "w1"), **opts)
    assert [r.split(":")[0] for r in one.ran] == ["rows"] + ["teacher", "copies", "labels", "students"] * 2
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        on_dask = D.distill(data, tmp_path / "dask.npz", work=str(tmp_path / "w2"), client=client,
                            **{**opts, "verbose": True})
        err = capsys.readouterr().err
        assert on_dask.ran == one.ran and on_dask.cached == []  # every stage ran, on the workers
        again = D.distill(data, tmp_path / "again.npz", work=str(tmp_path / "w1"), client=client, **opts)
    assert again.ran == [] and again.cached == one.ran  # after one process: every stage reused, nothing recomputed
    assert "[teacher] item Q2 …" in err and "  teacher: " in err  # the workers' lines, forwarded live
    assert "[1/2] item Q" in err and "[2/2] item Q" in err and " done: " in err
    a, b = tinykd.load(tmp_path / "one.npz"), tinykd.load(tmp_path / "dask.npz")
    assert isinstance(b, tinykd.Bundle) and b.items == a.items == ["Q1", "Q2"]
    for m in (b, tinykd.load(tmp_path / "again.npz")):
        (ma, aa), (mb, ab) = model_contents(a), model_contents(m)
        assert sorted(aa) == sorted(ab) and ma == mb
        for k in aa:
            np.testing.assert_array_equal(aa[k], ab[k], err_msg=k)
    same = [json.dumps(r.report, sort_keys=True) for r in (on_dask, one, again)]  # (NaN != NaN: compared as text)
    assert same[0] == same[1] == same[2] and set(one.report) == {"item Q1", "item Q2"}
    for w in ("w1", "w2"):  # the teachers' probabilities, byte for byte (both on 1 torch thread)
        assert len(list((tmp_path / w).glob("teacher-*/teacher.csv"))) == 2
    assert sorted(p.read_bytes() for p in (tmp_path / "w1").glob("teacher-*/teacher.csv")) == \
        sorted(p.read_bytes() for p in (tmp_path / "w2").glob("teacher-*/teacher.csv"))


def test_cli_distill_jobs(tmp_path, tiny_base, capsys):
    pytest.importorskip("distributed")
    data = make_csv(tmp_path / "d.csv", n=120)
    args = ["distill", data, "--item-col", "item", "--base", tiny_base, "--copies", "1", "--epochs", "2",
            "--preset", "falling_weights", "--teacher-epochs", "2", "--teacher-lr", "3e-3", "--teacher-batch-size", "8",
            "--teacher-max-length", "32", "--teacher-threads", "1", "--work", tmp_path / "w"]
    rc, so, err = run_cli(capsys, *args, "--out", tmp_path / "one.npz")
    assert rc == 0, err
    rc, so2, err = run_cli(capsys, *args, "--out", tmp_path / "jobs.npz", "--jobs", "2")  # every stage cached
    assert rc == 0, err
    # rows, then per item: teacher, copies, labels, vectors, students and unseen (the default's aliases)
    assert "reused 13 finished stage(s)" in so2 and "[2/2] item Q" in err
    strip = lambda s: [ln for ln in s.splitlines() if not ln.startswith(("saved", "seconds", "reused"))]  # noqa: E731
    assert strip(so2) == strip(so)  # the same report
    np.testing.assert_array_equal(tinykd.load(tmp_path / "jobs.npz").students["Q1"].net.params,
                                  tinykd.load(tmp_path / "one.npz").students["Q1"].net.params)


def test_cli_distill_dask_errors_are_one_line(tmp_path, capsys):
    import subprocess
    import sys

    data = make_csv(tmp_path / "d.csv")
    assert_user_error(*run_cli(capsys, "distill", data, "--out", tmp_path / "m.npz", "--jobs", "2")[::2],
                      "--dask / --jobs", "--item-col")
    assert_user_error(*run_cli(capsys, "distill", data, "--out", tmp_path / "m.npz", "--item-col", "item",
                               "--teacher-threads", "0")[::2], "--teacher-threads")
    assert_user_error(*run_cli(capsys, "distill", data, "--out", tmp_path / "m.npz",
                               "--teacher-tolerance", "-0.1")[::2], "--teacher-tolerance", "below 1")
    code = ("import sys; sys.modules['distributed'] = None\nfrom tinykd.cli.commands import main\n"
            f"sys.exit(main(['distill', {data!r}, '--out', {str(tmp_path / 'm.npz')!r}, '--item-col', 'item', "
            "'--jobs', '1']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.strip() == 'tinykd: error: the Dask extra is not installed: pip install ' \
                                                     '"tinykd[dask]"', r.stderr
    assert not (tmp_path / "m.npz").exists()


def test_distill_with_unlabeled_answers_copies_and_labels_them(tmp_path, tiny_base, teacher_calls):
    """--unlabeled: the teacher is reused; the copies, labels and students stages run again, with each
    unscored answer and its copies (as many as a training answer's) in the transfer set."""
    data = make_csv(tmp_path / "d.csv")
    more = make_csv(tmp_path / "more.csv", n=20, seed=1)
    with open(more) as f:
        rows = list(csv.DictReader(f))
    with open(tmp_path / "u.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["id", "item", "text"])
        w.writeheader()
        w.writerows({"id": f"u{r['id']}", "item": r["item"], "text": r["text"]} for r in rows)
    out, work = tmp_path / "m.npz", str(tmp_path / "work")
    D.distill(data, out, base=tiny_base, teacher_options=TEACHER, work=work, **STUDENT)
    res = D.distill(data, out, base=tiny_base, teacher_options=TEACHER, work=work, **STUDENT,
                    unlabeled=str(tmp_path / "u.csv"))
    assert [r.split(":")[0] for r in res.ran] == ["copies", "labels", "students"]
    assert teacher_calls == ["fit", "export", "export"]  # the labels without, then with the unlabeled answers
    m = tinykd.load(out)
    assert m.meta["distill"]["copies"] == 54 * 2 + 20 * 3
    files = glob.glob(os.path.join(work, "labels-*", "labels.csv"))
    labelled = sorted(len(list(csv.reader(open(p)))) - 1 for p in files)
    assert labelled == [54 * 2, 54 * 2 + 20 * 3]
    if m.meta["distill"]["lam"]:
        assert m.meta["training"]["n_transfer"] == 54 * 2 + 20 * 3


def test_other_items_join_the_transfer_set_only_when_asked(tmp_path, tiny_base, teacher_calls):
    """``where`` item=Q1 on a file of items Q1 and Q2: by default the transfer set is Q1's copies alone;
    ``other_items=True`` reuses the teacher and labels as many of Q2's training answers as Q1's, each as it
    is and with as many copies as a training answer (docs/decisions/transfer-data.md)."""
    data = make_csv(tmp_path / "d.csv")
    out, work = tmp_path / "m.npz", str(tmp_path / "work")
    kw = dict(base=tiny_base, teacher_options=TEACHER, work=work, where=["item=Q1"], **STUDENT)
    D.distill(data, out, **kw)
    res = D.distill(data, out, other_items=True, **kw)
    assert [r.split(":")[0] for r in res.ran] == ["copies", "labels", "students"]
    assert teacher_calls == ["fit", "export", "export"]
    ids = {}
    for p in glob.glob(os.path.join(work, "labels-*", "labels.csv")):
        with open(p) as f:
            ids[len(ids)] = [r[0] for r in list(csv.reader(f))[1:]]
    without, with_others = sorted(ids.values(), key=len)
    assert not any(i.startswith("other-") for i in without)
    others = [i for i in with_others if i.startswith("other-Q2-")]
    own = {i.split("~")[0] for i in without}  # Q1's training answers, labelled through their 2 copies each
    assert len({i.split("~")[0] for i in others}) == len(own) == 27
    assert len(others) == 3 * len(own)  # each other answer as it is and its 2 copies
    assert len(with_others) == len(without) + len(others)


def test_distill_teacher_bf16_auto_reaches_the_fit_and_the_labels(tmp_path, tiny_base, teacher_calls):
    """teacher_options bf16="auto" (``--teacher-bf16 auto``): the teacher's fine-tuning, its labels of the
    item's rows and of the copies all run in the precision this machine supports, and every sidecar says it."""
    import torch

    from teacher_export.precision import bf16_support

    data, work = make_csv(tmp_path / "d.csv"), tmp_path / "work"
    D.distill(data, tmp_path / "m.npz", base=tiny_base, teacher_options={**TEACHER, "bf16": "auto"}, work=str(work),
              **STUDENT)
    assert teacher_calls == ["fit", "export"]
    ok, found = bf16_support(torch.device("cpu"))
    want = ("bfloat16", "detected") if ok else ("float32", "not supported")
    for stage in ("teacher", "labels"):  # the fit's job and sidecar, the labelling's
        folder = next(work.glob(f"{stage}-*"))
        assert json.loads((folder / T.JOB_FILE).read_text())["bf16"] == "auto"
        side = json.loads((folder / f"{stage}.json").read_text())
        assert (side["precision"], side["precision_why"], side["bf16_hardware"]) == (*want, found)
    assert json.loads(next(work.glob("teacher-*/teacher-teacher/teacher.json")).read_text())["precision"] == want[0]



def _roles(work):
    return {r["id"]: r["role"] for p in sorted(glob.glob(os.path.join(work, "rows-*", "rows.csv")))
            for r in csv.DictReader(open(p, newline=""))}, sorted(glob.glob(os.path.join(work, "rows-*")))


def test_a_second_round_warm_starts_keeps_roles_and_reuses_an_unchanged_teachers_labels(tmp_path, tiny_base,
                                                                                         teacher_calls):
    """Round 1 on 80 of 90 answers (no split column: the paper's 7:1:2 split); round 2 on all 90, warm-started
    from round 1's model: the teacher fits on from round 1's, every answer of round 1 keeps its role, and when
    the previous teacher is kept (a learning rate too small to move it) its labels of the same copies are
    reused and only the new answers' copies are labelled."""
    with open(make_csv(tmp_path / "all.csv"), newline="") as f:
        rows = [{k: v for k, v in r.items() if k not in ("split", "item")} for r in csv.DictReader(f)]
    for name, part in (("r1.csv", rows[:80]), ("r2.csv", rows)):
        with open(tmp_path / name, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(part[0]))
            w.writeheader()
            w.writerows(part)
    w1, w2 = str(tmp_path / "w1"), str(tmp_path / "w2")
    D.distill(str(tmp_path / "r1.csv"), tmp_path / "r1.npz", base=tiny_base, teacher_options=TEACHER, work=w1,
              **STUDENT)
    first, _ = _roles(w1)
    r2 = D.distill(str(tmp_path / "r2.csv"), tmp_path / "r2.npz", teacher_options={**TEACHER, "lr": 1e-12}, work=w2,
                   warm_start=str(tmp_path / "r1.npz"), **STUDENT)
    second, _ = _roles(w2)
    assert all(second[i] == first[i] for i in first) and len(second) == 90  # every old answer kept its role
    (t1,) = glob.glob(os.path.join(w1, "teacher-*", T.FITTED))
    (job,) = [json.load(open(p)) for p in glob.glob(os.path.join(w2, "teacher-*", T.JOB_FILE))]
    assert job["warm_from"] == t1 and job["epochs"] == 2 and "base" not in job
    teacher = json.load(open(os.path.join(r2.model.meta["distill"]["teacher"], "teacher.json")))
    assert teacher["warm"]["kept_start"] is True  # lr 1e-12 cannot move it: ties go to epoch 0, kept bit for bit
    (lab,) = [json.load(open(p)) for p in glob.glob(os.path.join(w2, "labels-*", "done.json"))]
    copies = [{tuple(r.values()) for r in csv.DictReader(open(p, newline=""))}
              for p in (glob.glob(os.path.join(w, "copies-*", "copies.csv"))[0] for w in (w1, w2))]
    same = copies[0] & copies[1]
    assert same == copies[0]  # every answer of round 1 kept its copies (a fresh draw would swap in other words)
    assert lab["n"] == len(copies[1]) and lab["reused"] == len(same)
    with open(glob.glob(os.path.join(w2, "labels-*", "missing.csv"))[0], newline="") as f:
        assert {tuple(r.values()) for r in csv.DictReader(f)} == copies[1] - same
    assert teacher_calls[-2:] == ["fit", "export"] and r2.report["all rows"]["n"] == sum(
        1 for v in second.values() if v == "test")


def test_an_ensemble_of_teachers_averages_their_log_probabilities(tmp_path, tiny_base, teacher_calls):
    """``teacher_options={"members": 2}``: teacher 1 is the single teacher's stage (reused), teacher 2 the same
    job with the next seed; each labels the copies; the students learn the mean of the two log-probabilities."""
    from tinykd.files.softlabels import read_soft_label_table

    data = make_csv(tmp_path / "d.csv")
    out, work = tmp_path / "m.npz", tmp_path / "work"
    D.distill(data, out, base=tiny_base, teacher_options=TEACHER, work=str(work), **STUDENT)
    assert teacher_calls == ["fit", "export"]
    res = D.distill(data, tmp_path / "e.npz", base=tiny_base, teacher_options={**TEACHER, "members": 2}, work=str(work),
                    **STUDENT)
    assert teacher_calls == ["fit", "export"] * 2  # only the second member is new
    assert [r.split(":")[0] for r in res.ran] == ["teacher", "labels", "ensemble", "students"]
    jobs = [json.loads(p.read_text()) for p in work.glob("teacher-*/job.json")]
    assert sorted(j["seed"] for j in jobs) == [0, 1] and all(j["command"] == "fit" for j in jobs)
    for name, stage in (("teacher.csv", "teacher-*"), ("labels.csv", "labels-*")):
        (ids, classes, ens), members = read_soft_label_table(next(work.glob(f"ensemble-*/{name}"))), []
        for f in work.glob(f"{stage}/{name}"):
            m_ids, m_classes, p = read_soft_label_table(f)
            members.append(np.log(p[[m_ids.index(i) for i in ids]]))
        assert len(members) == 2
        z = (members[0] + members[1]) / 2
        want = np.exp(z - z.max(1, keepdims=True))
        assert np.allclose(ens, want / want.sum(1, keepdims=True), atol=1e-5)
    m = tinykd.load(tmp_path / "e.npz")
    assert m.meta["distill"]["teachers"] == 2
    from tinykd.cli.info import teacher_of
    assert teacher_of(m.meta["distill"]).endswith("an ensemble of 2)")
    with pytest.raises(tinykd.OptionError, match="teacher_members"):
        D.distill(data, out, teacher_options={"members": 2}, teacher_dir=str(tmp_path), work=str(work), **STUDENT)


def test_a_pick_of_teachers_labels_with_the_one_of_best_validation_qwk(tmp_path, tiny_base, teacher_calls):
    """``teacher_options={"members": 3, "combine": "pick"}``: three teachers fine-tune, the one of highest validation
    QWK alone labels the copies and gives the pick stage's teacher.csv, bit for bit; the model records the pick."""
    data = make_csv(tmp_path / "d.csv")
    work = tmp_path / "work"
    res = D.distill(data, tmp_path / "p.npz", base=tiny_base, work=str(work), **STUDENT,
                    teacher_options={**TEACHER, "members": 3, "combine": "pick"})
    assert teacher_calls == ["fit"] * 3 + ["export"]  # three fine-tunes, one labelling
    assert [r.split(":")[0] for r in res.ran] == ["rows"] + ["teacher"] * 3 + ["pick", "copies", "labels", "students"]
    stages = sorted(work.glob("teacher-*"), key=lambda p: json.loads((p / "job.json").read_text())["seed"])
    qwks = [json.loads((p / "teacher.json").read_text())["metrics"]["val"]["qwk"] for p in stages]
    want = qwks.index(max(qwks))  # the first of the highest
    assert want == 2  # these data: the third teacher's is the highest, so a pick of the first would fail
    (pick,) = work.glob("pick-*")
    marker = json.loads((pick / "done.json").read_text())
    assert marker["picked"] == want and marker["val_qwk"] == qwks
    assert (pick / "teacher.csv").read_bytes() == (stages[want] / "teacher.csv").read_bytes()
    (labels_job,) = [json.loads(p.read_text()) for p in work.glob("labels-*/job.json")]
    assert labels_job["teacher"] == str(stages[want] / T.FITTED)
    m = tinykd.load(tmp_path / "p.npz")
    assert m.meta["distill"]["teachers"] == 3 and m.meta["distill"]["teacher_combine"] == "pick"
    assert m.meta["distill"]["teacher"] == str(stages[want] / T.FITTED)
    from tinykd.cli.info import teacher_of
    assert teacher_of(m.meta["distill"]).endswith("the best of 3 by validation QWK)")


@pytest.mark.parametrize("qwks, want", [((0.5, 0.7, 0.7), 1), ((0.9, 0.2), 0), ((0.3, 0.3), 0)])
def test_pick_member_takes_the_highest_validation_qwk_ties_to_the_first(tmp_path, qwks, want):
    folders = []
    for k, q in enumerate(qwks):
        f = tmp_path / f"t{k}"
        f.mkdir()
        (f / "teacher.json").write_text(json.dumps({"metrics": {"val": {"qwk": q}}}))
        (f / "teacher.csv").write_text(f"id,p_0\nteacher {k},1\n")
        folders.append(str(f))
    out = tmp_path / "pick"
    out.mkdir()
    assert T.pick_member(str(out), folders) == {"picked": want, "val_qwk": list(qwks)}
    assert (out / "teacher.csv").read_text() == f"id,p_0\nteacher {want},1\n"


@pytest.mark.parametrize("val", [{}, {"qwk": float("nan")}, {"qwk": None}])
def test_pick_member_refuses_a_teacher_without_validation_qwk(tmp_path, val):
    f = tmp_path / "t0"
    f.mkdir()
    (f / "teacher.json").write_text(json.dumps({"metrics": {"val": val}}))
    with pytest.raises(T.TeacherError, match="no validation QWK to pick by"):
        T.pick_member(str(tmp_path), [str(f)])


def test_teacher_combine_must_be_mean_or_pick_of_two_or_more():
    with pytest.raises(tinykd.OptionError, match="teacher_combine.*mean or pick.*'best'"):
        D.distill("x.csv", "x.npz", teacher_options={"combine": "best"})
    with pytest.raises(tinykd.OptionError, match="teacher_combine pick needs --teacher-members 2 or more, got 1"):
        D.distill("x.csv", "x.npz", teacher_options={"combine": "pick"})
