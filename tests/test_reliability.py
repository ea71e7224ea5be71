"""Bad input: every case of the README table "What tinykd does with bad input", one test (or
more) each. The command line must exit 2 with one line on stderr (no traceback), never
mis-score silently, and never leave a half-written file behind."""
import csv
import errno
import json
import os
import pickle
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tinykd
from tinykd.files import csvfiles as kdata
from tinykd.cli.commands import main

from conftest import assert_user_error, write_csv
from conftest import run_cli as run
from tinykd.files.atomic import atomic_write_bytes
from tinykd.scoring.modelfile import ModelFileError
from tinykd.scoring.student import load
from tinykd.files.softlabels import write_soft_labels
from tinykd.scoring.text import Vocabulary

TINY = dict(embed_dim=8, units=8, dense_units=8)
WORDS = "acid rain dissolves marble rock water heat energy light plant".split()


def rows_for(n=48, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        y = i % 3
        out.append({"id": f"r{i}", "split": "train", "text": " ".join(rng.choice(WORDS, 4 + y)), "label": str(y)})
    return out


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    d = tmp_path_factory.mktemp("rel")
    rows = rows_for()
    st_ = tinykd.fit([r["text"] for r in rows], [int(r["label"]) for r in rows], config=TINY, epochs=2,
                     verbose=False, validation=False)
    st_.meta["columns"] = {"text": "text", "label": "label"}
    p = str(d / "m.npz")
    st_.save(p)
    return p


@pytest.fixture
def data(tmp_path):
    return write_csv(tmp_path / "d.csv", rows_for())


# =============================================================================== data files
def test_missing_column_names_it_and_lists_the_columns(tmp_path, capsys, model_path):
    p = write_csv(tmp_path / "d.csv", [{"id": 1, "answer": "x", "score": 1}])
    rc, _, err = run(capsys, "train", p, "--out", tmp_path / "m.npz")
    assert_user_error(rc, err, "no column 'text' (set --text-col)", "the file has columns: id, answer, score")
    rc, _, err = run(capsys, "score", model_path, p, "--out", tmp_path / "s.csv")
    assert_user_error(rc, err, "no column 'text'", "id, answer, score")
    assert not os.path.exists(tmp_path / "m.npz") and not os.path.exists(tmp_path / "s.csv")


def test_empty_file(tmp_path, capsys, model_path):
    p = tmp_path / "empty.csv"
    p.write_bytes(b"")
    rc, _, err = run(capsys, "train", p, "--out", tmp_path / "m.npz")
    assert_user_error(rc, err, "empty file")
    rc, _, err = run(capsys, "score", model_path, p, "--out", tmp_path / "s.csv")
    assert_user_error(rc, err, "empty file")


def test_header_only(tmp_path, capsys, model_path):
    p = tmp_path / "h.csv"
    p.write_text("id,text,label\n")
    rc, _, err = run(capsys, "train", p, "--out", tmp_path / "m.npz")
    assert_user_error(rc, err, "header row but no data rows")
    rc, _, err = run(capsys, "score", model_path, p, "--out", tmp_path / "s.csv")
    assert_user_error(rc, err, "no data rows")
    assert os.listdir(tmp_path) == ["h.csv"]  # no output, no temporary file


def test_blank_answers_are_scored_not_dropped(tmp_path, capsys, model_path):
    rows = [{"id": "a", "text": ""}, {"id": "b", "text": "   "}, {"id": "c", "text": "acid rain"},
            {"id": "d", "text": "\t\n"}]
    p = write_csv(tmp_path / "b.csv", rows)
    out = tmp_path / "s.csv"
    rc, _, err = run(capsys, "score", model_path, p, "--out", out)
    assert rc == 0, err
    got = list(csv.DictReader(open(out, newline="")))
    assert [r["id"] for r in got] == ["a", "b", "c", "d"] and all(r["pred"] != "" for r in got)
    m = load(model_path)
    assert got[0]["p_0"] == got[1]["p_0"] == got[3]["p_0"] == f"{m.predict_proba([''])[0, 0]:.4f}"


def test_very_long_answer_is_truncated(tmp_path, capsys, model_path):
    long = ("acid rain dissolves marble " * 30000)[:100_000]
    p = write_csv(tmp_path / "long.csv", [{"text": long}, {"text": "short"}])
    m = load(model_path)
    ids, lengths = m.vocab.encode([long])
    assert lengths[0] == m.vocab.max_len == ids.shape[1]  # cut to max_len tokens: the cost is bounded
    rc, _, err = run(capsys, "score", model_path, p, "--out", tmp_path / "s.csv")
    assert rc == 0, err
    got = list(csv.DictReader(open(tmp_path / "s.csv")))
    assert len(got) == 2
    cut = " ".join(long.split()[:m.vocab.max_len])  # the first max_len words score the same as the whole
    assert got[0]["p_0"] == f"{m.predict_proba([cut])[0, 0]:.4f}"


def test_non_utf8_falls_back_to_cp1252_and_says_so(tmp_path, capsys, model_path):
    p = tmp_path / "win.csv"
    p.write_bytes("id,text\n1,café crème\n2,naïve answer\n".encode("cp1252"))
    rc, _, err = run(capsys, "score", model_path, p, "--out", tmp_path / "s.csv")
    assert rc == 0
    assert "not valid UTF-8 (byte 0xe9 at line 2); read as Windows-1252" in err
    got = list(csv.DictReader(open(tmp_path / "s.csv", encoding="utf-8")))
    assert [r["text"] for r in got] == ["café crème", "naïve answer"]  # decoded, written back as UTF-8
    # a byte Windows-1252 leaves undefined: Latin-1
    q = tmp_path / "latin.csv"
    q.write_bytes(b"id,text\n1,abc\x81def\n")
    enc, note = kdata.sniff_encoding(q)
    assert enc == "latin-1" and "Latin-1" in note


def test_crlf_and_quoted_fields(tmp_path, capsys, model_path):
    p = tmp_path / "q.csv"
    p.write_bytes(b'id,text,label\r\n1,"rain, acid, and marble",0\r\n2,"line one\r\nline two",1\r\n'
                  b'3,"she said ""hi""",2\r\n')
    t = kdata.read_table(p, ["text"])
    assert t.column("text") == ["rain, acid, and marble", "line one\r\nline two", 'she said "hi"']
    rc, _, err = run(capsys, "score", model_path, p, "--out", tmp_path / "s.csv")
    assert rc == 0, err
    got = list(csv.DictReader(open(tmp_path / "s.csv", newline="", encoding="utf-8")))
    assert [r["text"] for r in got] == t.column("text")


def test_bom_is_dropped_from_the_header(tmp_path, capsys, model_path):
    p = tmp_path / "bom.csv"
    p.write_bytes(b"\xef\xbb\xbftext,label\nacid rain,1\n")
    assert kdata.read_table(p).header == ["text", "label"]
    rc, _, err = run(capsys, "score", model_path, p, "--out", tmp_path / "s.csv")
    assert rc == 0 and err == ""
    u16 = tmp_path / "u16.csv"
    u16.write_bytes("text,label\nacid rain,1\n".encode("utf-16"))
    assert kdata.read_table(u16).column("text") == ["acid rain"]


def test_labels_as_strings():
    assert kdata.normalize_labels(["0", "1.0", " 2 ", "1"]) == ([0, 1, 2, 1], "int")
    assert kdata.normalize_labels(["0.5", "1"]) == ([0.5, 1.0], "float")
    assert kdata.normalize_labels(["correct", "incorrect", "1"]) == (["correct", "incorrect", "1"], "str")
    assert kdata.normalize_labels(["", "NaN", "NA", "null", "2"]) == ([None, None, None, None, 2], "int")
    assert kdata.coerce_labels(["1.0", "2", "", "7"], [0, 1, 2]) == [1, 2, None, 7]


def test_unseen_labels_at_evaluation_count_as_wrong(tmp_path, capsys, model_path):
    rows = [{"text": "acid rain", "label": "7"}, {"text": "rock", "label": "1.0"}]
    p = write_csv(tmp_path / "u.csv", rows)
    rc, out, _ = run(capsys, "evaluate", model_path, p)
    assert rc == 0 and "labels 7 are not among the model's classes" in out
    rc, out, _ = run(capsys, "evaluate", model_path, p, "--json")
    res = json.loads(out)
    assert res["unseen_labels"] == ["7"] and res["labels"] == ["0", "1", "2", "7"]
    assert res["per_class"]["7"]["support"] == 1 and res["per_class"]["7"]["recall"] == 0.0


def test_unseen_validation_labels_are_dropped_loudly(tmp_path, capsys):
    rows = rows_for(30) + [{"id": "v1", "split": "val", "text": "rock", "label": "9"},
                           {"id": "v2", "split": "val", "text": "rock", "label": "1"}]
    p = write_csv(tmp_path / "d.csv", rows)
    rc, _, err = run(capsys, "train", p, "--out", tmp_path / "m.npz", "--epochs", "1", "-q")
    assert rc == 0 and "1 validation rows have labels no training row has (9)" in err
    assert load(tmp_path / "m.npz").meta["training"]["n_val"] == 1


def test_duplicate_ids(tmp_path, capsys):
    rows = rows_for(30)
    rows[5]["id"] = rows[3]["id"]
    p = write_csv(tmp_path / "d.csv", rows)
    soft = tmp_path / "soft.csv"
    write_soft_labels(str(soft), [f"r{i}" for i in range(30)], [0, 1, 2], np.full((30, 3), 1 / 3))
    rc, _, err = run(capsys, "train", p, "--out", tmp_path / "m.npz", "--teacher", soft)
    assert_user_error(rc, err, "duplicate ids in 'id': 'r3'", "must be unique")
    rc, _, err = run(capsys, "train", p, "--out", tmp_path / "m.npz", "--epochs", "1", "-q")
    assert rc == 0 and "warning: " in err and "'r3'" in err  # without a teacher: a warning only


def test_nan_labels(tmp_path, capsys):
    rows = rows_for(30)
    for k in (1, 4, 7):
        rows[k]["label"] = ["NaN", "NA", ""][k % 3]
    p = write_csv(tmp_path / "d.csv", rows)
    rc, _, err = run(capsys, "train", p, "--out", tmp_path / "m.npz", "--epochs", "1")
    assert rc == 0 and "3 training rows have no label" in err
    tr = load(tmp_path / "m.npz").meta["training"]
    assert tr["n_train"] + tr["n_val"] == 27
    with pytest.raises(ValueError, match=r"y has 2 missing labels \(NaN/None\), rows 1, 3"):
        tinykd.fit(["a", "b", "c", "d"], [0.0, np.nan, 1.0, np.nan], verbose=False)
    with pytest.raises(ValueError, match="missing labels"):
        tinykd.fit(["a", "b", "c"], ["x", None, "y"], verbose=False)


def test_ragged_row_names_the_line(tmp_path, capsys, model_path):
    p = tmp_path / "r.csv"
    p.write_text("id,text\n1,acid rain\n2,rock,extra,fields\n")
    rc, _, err = run(capsys, "score", model_path, p, "--out", tmp_path / "s.csv")
    assert_user_error(rc, err, "line 3 has 4 fields, the header has 2")
    assert not os.path.exists(tmp_path / "s.csv")


def test_spreadsheet_folder_and_missing_files(tmp_path, capsys, model_path):
    x = tmp_path / "book.xlsx"
    x.write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    rc, _, err = run(capsys, "score", model_path, x, "--out", tmp_path / "s.csv")
    assert_user_error(rc, err, "spreadsheet (.xlsx)", "CSV UTF-8")
    rc, _, err = run(capsys, "score", model_path, tmp_path / "nope.csv", "--out", tmp_path / "s.csv")
    assert_user_error(rc, err, "nope.csv: no such file")
    rc, _, err = run(capsys, "score", model_path, tmp_path, "--out", tmp_path / "s.csv")
    assert_user_error(rc, err, "is a folder")
    rc, _, err = run(capsys, "score", model_path, x, "--out", tmp_path / "no" / "s.csv")
    assert_user_error(rc, err, "does not exist")
    semi = tmp_path / "semi.csv"
    semi.write_text("id;text\n1;acid rain\n")  # a European Excel export
    assert kdata.read_table(semi).column("text") == ["acid rain"]


# =============================================================================== soft labels
@pytest.fixture
def train_csv(tmp_path):
    return write_csv(tmp_path / "d.csv", rows_for(30))


def soft_file(tmp_path, header, rows):
    p = tmp_path / "soft.csv"
    with open(p, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return p


def good_soft_rows(n=30):
    return [[f"r{i}", 0.2, 0.3, 0.5] for i in range(n)]


def test_soft_labels_missing_rows(tmp_path, capsys, train_csv):
    soft = soft_file(tmp_path, ["id", "p_0", "p_1", "p_2"], good_soft_rows(25))
    rc, _, err = run(capsys, "train", train_csv, "--out", tmp_path / "m.npz", "--teacher", soft)
    assert_user_error(rc, err, "5 of 30 requested ids are not in the file", "'r25'")
    rc, _, err = run(capsys, "train", train_csv, "--out", tmp_path / "m.npz", "--teacher", soft,
                     "--allow-missing-teacher", "--epochs", "1")
    assert rc == 0 and "5 training rows have no teacher row" in err


def test_soft_labels_extra_ids_are_ignored(tmp_path, capsys, train_csv):
    soft = soft_file(tmp_path, ["id", "p_0", "p_1", "p_2"], good_soft_rows(30) + [["zz9", 1, 0, 0]])
    rc, _, err = run(capsys, "train", train_csv, "--out", tmp_path / "m.npz", "--teacher", soft, "--epochs", "1")
    assert rc == 0, err
    assert load(tmp_path / "m.npz").meta["training"]["teacher"] is True


@pytest.mark.parametrize("header,rows,needle", [
    (["id", "p_0", "p_1", "p_3"], good_soft_rows(), "class columns do not match"),
    (["id", "p_0", "p_1", "p_2"], [[f"r{i}", 0.2, 0.3, 0.4] for i in range(30)], "do not sum to 1"),
    (["id", "p_0", "p_1", "p_2"], [[f"r{i}", "nan", 0.5, 0.5] for i in range(30)], "NaN or inf"),
    (["id", "p_0", "p_1", "p_2"], [[f"r{i}", -0.2, 0.7, 0.5] for i in range(30)], "negative"),
    (["id", "p_0", "p_1", "p_2"], good_soft_rows() + [["r0", 1, 0, 0]], "duplicated ids"),
    (["id", "logit_0", "logit_1", "logit_2"], [[f"r{i}", 1.5, -2, 0.3] for i in range(30)], "pass --from-logits"),
], ids=["wrong-classes", "sum", "nan", "negative", "duplicate-ids", "logits"])
def test_bad_soft_labels_are_refused(tmp_path, capsys, train_csv, header, rows, needle):
    soft = soft_file(tmp_path, header, rows)
    rc, _, err = run(capsys, "train", train_csv, "--out", tmp_path / "m.npz", "--teacher", soft)
    assert_user_error(rc, err, needle)
    assert not os.path.exists(tmp_path / "m.npz")


def test_logits_converted_only_when_told(tmp_path, capsys, train_csv):
    soft = soft_file(tmp_path, ["id", "logit_0", "logit_1", "logit_2"], [[f"r{i}", 1.5, -2, 0.3] for i in range(30)])
    rc, _, err = run(capsys, "train", train_csv, "--out", tmp_path / "m.npz", "--teacher", soft,
                     "--from-logits", "--epochs", "1")
    assert rc == 0, err


# =============================================================================== model files
def test_truncated_model(tmp_path, capsys, model_path, data):
    raw = open(model_path, "rb").read()
    for cut in (10, len(raw) // 2, len(raw) - 5):
        p = tmp_path / f"t{cut}.npz"
        p.write_bytes(raw[:cut])
        with pytest.raises(ModelFileError, match="truncated|damaged|not a tinykd model"):
            load(p)
    rc, _, err = run(capsys, "score", tmp_path / f"t{len(raw) // 2}.npz", data, "--out", tmp_path / "s.csv")
    assert_user_error(rc, err, "damaged or truncated model file")


def test_file_from_another_program(tmp_path, capsys, data):
    cases = {"text.npz": b"hello, I am a text file\n", "image.png": b"\x89PNG\r\n\x1a\n" + b"\x00" * 50}
    for name, raw in cases.items():
        (tmp_path / name).write_bytes(raw)
    np.savez(tmp_path / "other.npz", weights=np.ones(3))
    np.save(tmp_path / "bare.npy", np.ones(3))
    with zipfile.ZipFile(tmp_path / "docs.zip", "w") as z:
        z.writestr("readme.txt", "hi")
    for name in ["text.npz", "image.png", "other.npz", "bare.npy", "docs.zip"]:
        with pytest.raises(ModelFileError, match="not a tinykd model file"):
            load(tmp_path / name)
    rc, _, err = run(capsys, "info", tmp_path / "other.npz")
    assert_user_error(rc, err, "not a tinykd model file (no meta.json)")
    rc, _, err = run(capsys, "score", tmp_path / "missing.npz", data, "--out", tmp_path / "s.csv")
    assert_user_error(rc, err, "no such model file")


def _rewrite_meta(src, dst, change):
    with np.load(src, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays["meta.json"].tobytes())
    change(meta)
    arrays["meta.json"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(dst, **arrays)


def test_newer_format_version(tmp_path, capsys, model_path):
    p = tmp_path / "future.npz"
    _rewrite_meta(model_path, p, lambda m: m.update(version=99))
    rc, _, err = run(capsys, "info", p)
    assert_user_error(rc, err, "model format version 99 is newer than this tinykd reads (1); upgrade tinykd")


def test_tampered_shapes_are_refused(tmp_path, model_path):
    p = tmp_path / "bigger.npz"
    _rewrite_meta(model_path, p, lambda m: m["students"]["default"]["config"].update(units=64))
    with pytest.raises(ModelFileError, match="parameters, its config needs"):
        load(p)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_pickled_object_is_refused_and_never_run(tmp_path, capsys, model_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with np.load(model_path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    evil = np.empty(1, dtype=object)
    evil[0] = _Evil()
    np.savez(tmp_path / "evil.npz", **arrays, payload=evil)
    arrays["default/vocab"] = np.array([_Evil()], dtype=object)
    np.savez(tmp_path / "evil2.npz", **arrays)
    for name in ("evil.npz", "evil2.npz"):
        rc, _, err = run(capsys, "info", tmp_path / name)
        assert_user_error(rc, err, "refused, the file holds pickled objects (never loaded)")
    with open(tmp_path / "model.pkl", "wb") as f:
        pickle.dump(_Evil(), f)
    with pytest.raises(ModelFileError, match="refused"):
        load(tmp_path / "model.pkl")
    assert not os.path.exists(tmp_path / "PWNED")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=400))
def test_loader_on_random_bytes(tmp_path, raw):
    p = tmp_path / "random.npz"
    p.write_bytes(raw)
    with pytest.raises(ModelFileError):
        load(p)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_loader_on_damaged_model_files(tmp_path, model_path, data):
    raw = bytearray(open(model_path, "rb").read())
    n = data.draw(st.integers(1, 8))
    for _ in range(n):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    p = tmp_path / "damaged.npz"
    p.write_bytes(bytes(raw))
    try:
        m = load(p)  # a change the archive's checksums cannot see (e.g. in a zip comment) may load...
    except ModelFileError as e:
        assert "\n" not in str(e)
    else:
        assert m.predict_proba(["acid rain"]).shape == (1, 3)  # ...and then it must work


# =============================================================================== tokenizer / encoder
@settings(max_examples=60, deadline=None)
@given(texts=st.lists(st.text(max_size=300), min_size=1, max_size=6), max_len=st.integers(1, 40))
def test_encoder_any_unicode(texts, max_len):
    vocab = Vocabulary(max_size=50, max_len=max_len).fit(texts + ["acid rain"])
    ids, lengths = vocab.encode(texts)
    assert ids.dtype == np.int32 and ids.shape[0] == len(texts)
    assert ((lengths >= 0) & (lengths <= max_len)).all() and ids.shape[1] == max(1, int(lengths.max()))
    assert ((ids >= 0) & (ids < len(vocab))).all()
    for k, t in enumerate(texts):  # padding invariance: a row alone == the row in a batch
        one, n1 = vocab.encode([t])
        assert n1[0] == lengths[k] and (one[0, :n1[0]] == ids[k, :lengths[k]]).all()
        assert (ids[k, lengths[k]:] == 0).all()


@settings(max_examples=30, deadline=None)
@given(text=st.text(max_size=200), ctx=st.text(max_size=200))
def test_encoder_with_context_any_unicode(text, ctx):
    vocab = Vocabulary(max_size=40, max_len=16).fit([text], contexts=[ctx])
    ids, lengths = vocab.encode([text, "x"], [ctx, ctx])
    assert (lengths <= 16).all() and (lengths >= 1).all()  # the SEP token is always there
    assert (ids[:, :1] >= 0).all()


# =============================================================================== training
def test_exploding_loss_stops_cli_and_writes_nothing(tmp_path, capsys, train_csv):
    out = tmp_path / "m.npz"
    rc, _, err = run(capsys, "train", train_csv, "--out", out, "--lr", "1e30", "--epochs", "3")
    assert_user_error(rc, err, "training diverged in the first epoch", "--lr")
    assert not os.path.exists(out)


def test_nan_loss_keeps_best_weights(monkeypatch):
    import tinykd.train.loop as tr

    real, calls = tr.kd_loss, {"n": 0}

    def flaky(*a, **k):  # the loss turns NaN in the second epoch
        calls["n"] += 1
        loss, dz, extra = real(*a, **k)
        return (float("nan") if calls["n"] > 2 else loss), dz, extra

    monkeypatch.setattr(tr, "kd_loss", flaky)
    rows = rows_for(48)
    s = tinykd.fit([r["text"] for r in rows], [int(r["label"]) for r in rows], config=TINY, epochs=5,
                   batch_size=24, verbose=False, validation=False)
    t = s.meta["training"]
    assert t["stopped"] == "non-finite loss" and t["best_epoch"] == 1 and len(s.meta["history"]) == 1
    assert np.isfinite(s.net.params).all()


def test_ctrl_c_during_training_writes_nothing(tmp_path, capsys, train_csv, monkeypatch):
    import tinykd.train.loop as tr

    out = tmp_path / "m.npz"
    out.write_bytes(b"the previous model")
    real, calls = tr.evaluate_loss, {"n": 0}

    def interrupt(*a, **k):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(tr, "evaluate_loss", interrupt)
    rc, _, err = run(capsys, "train", train_csv, "--out", out, "--epochs", "5", "-q")
    assert rc == 130 and "interrupted; nothing was written" in err and "Traceback" not in err
    assert out.read_bytes() == b"the previous model"
    assert sorted(os.listdir(tmp_path)) == ["d.csv", "m.npz"]


# =============================================================================== writes
def test_model_write_is_atomic(tmp_path, capsys, train_csv, monkeypatch):
    out = tmp_path / "m.npz"
    out.write_bytes(b"the previous model")

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    rc, _, err = run(capsys, "train", train_csv, "--out", out, "--epochs", "1", "-q")
    assert_user_error(rc, err, "No space left on device", "nothing was written")
    assert out.read_bytes() == b"the previous model"
    assert sorted(os.listdir(tmp_path)) == ["d.csv", "m.npz"]  # no temporary file left
    with pytest.raises(OSError):
        atomic_write_bytes(out, b"new")
    assert out.read_bytes() == b"the previous model"


def test_scored_csv_write_is_atomic(tmp_path, capsys, model_path, data, monkeypatch):
    out = tmp_path / "s.csv"
    out.write_text("previous results\n")

    def disk_full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    rc, _, err = run(capsys, "score", model_path, data, "--out", out)
    assert_user_error(rc, err, "No space left on device")
    assert out.read_text() == "previous results\n"
    assert sorted(os.listdir(tmp_path)) == ["d.csv", "s.csv"]


def test_new_files_get_normal_permissions(tmp_path, model_path, data, capsys):
    out = tmp_path / "s.csv"
    assert main(["score", model_path, data, "--out", str(out), "-q"]) == 0
    mask = os.umask(0)
    os.umask(mask)
    assert (os.stat(out).st_mode & 0o777) == (0o666 & ~mask)
    assert (os.stat(model_path).st_mode & 0o777) == (0o666 & ~mask)


# =============================================================================== command line
def test_bad_options_are_one_line_errors(tmp_path, capsys, train_csv, model_path, data):
    out = tmp_path / "m.npz"
    for args, needle in [(["--epochs", "0"], "--epochs must be > 0"), (["--lam", "-1"], "--lam must be >= 0"),
                         (["--preset", "huge"], "unknown --preset 'huge'"),
                         (["--split-col", "fold"], "no column 'fold' (set --split-col)"),
                         (["--train-split", "training"], "no rows with split == 'training'")]:
        rc, _, err = run(capsys, "train", train_csv, "--out", out, *args)
        assert_user_error(rc, err, needle)
    rc, _, err = run(capsys, "score", model_path, data, "--out", tmp_path / "s.csv", "--review-below", "2")
    assert_user_error(rc, err, "--review-below must be between 0 and 1")
    rc, _, err = run(capsys, "score", model_path, data, "--out", data)
    assert_user_error(rc, err, "is an input file")
    with pytest.raises(SystemExit) as e:
        main(["train"])
    assert e.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_debug_shows_the_traceback(tmp_path, capsys):
    p = tmp_path / "empty.csv"
    p.write_bytes(b"")
    with pytest.raises(kdata.DataFileError, match="empty file"):
        main(["train", str(p), "--out", str(tmp_path / "m.npz"), "--debug"])
    with pytest.raises(kdata.DataFileError):
        main(["--debug", "train", str(p), "--out", str(tmp_path / "m.npz")])
