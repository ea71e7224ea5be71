"""The model file, third pass (issue 32, defects 5, 10, 11 and the model side of 20): one validation
of the file, shared by every reader.

Each table row is a crafted model file that the loader, the Dask workers' loader (``load_bytes``) and
every command that reads a model — ``info``, ``info --json``, ``score``, ``evaluate``, ``report``,
``export --onnx``, ``export --web`` — refuse with the same one-line error (exit 2), writing nothing,
with the loader's peak memory bounded:

* ``TEMPERATURES``: a calibration temperature tinykd never fits (``score`` refused −1, ``export`` wrote
  a graph and a page with inverted probabilities);
* ``BLOCKS``: a ``calibration``, ``validation_predictions`` or ``decision_offsets`` block of the wrong
  type or shape (an ``AttributeError``, exit 1, or silently wrong review thresholds);
* ``TEXT``: text that is not text — lone surrogates, code points beyond U+10FFFF — and a vocabulary
  token twice (codec errors in ``score``, ``report`` and ``export``; the exported page crashed Chromium);
* ``SPELLINGS``: class labels that are one label spelt two ways (``1`` and ``"1"``: two ``p_1`` columns).

The functions after the tables hold the other side: the files tinykd writes (non-BMP text, text labels
that look like numbers, the bounds of the temperature) still load and score as before, and a student
built in Python is held to the same checks by ``save`` and both exports.
"""
import json

import numpy as np
import pytest

import tinykd
from tinykd.scoring.modelfile import ModelFileError
from tinykd.scoring.student import Student, load, load_bytes

from conftest import assert_user_error, write_csv
from conftest import run_cli as run
from test_bad_input import PEAK_LIMIT, TINY, craft, folder_state, meta_of, peak_of, rows_for, with_changes


class Base:
    """A calibrated 3-class student (classes 0, 1, 2; 32 validation rows stored), its file's members,
    and a 48-row CSV (id, text, label, item) to score."""

    def __init__(self, folder):
        rows = rows_for(256)
        self.student = tinykd.fit([r["text"] for r in rows], [int(r["label"]) for r in rows], config=TINY,
                                  epochs=1, verbose=False)
        self.student.meta["columns"] = {"text": "text", "label": "label"}
        assert self.student.meta["calibration"]["temperature"] is not None
        self.path = str(folder / "m.npz")
        self.student.save(self.path)
        with np.load(self.path) as z:
            self.members = {k: z[k] for k in z.files}
        self.data = write_csv(folder / "d.csv", [dict(id=r["id"], text=r["text"], label=r["label"],
                                                      item="ab"[i % 2]) for i, r in enumerate(rows[:48])])


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return Base(tmp_path_factory.mktemp("model"))


def _meta(m):
    return m["students"]["default"]["meta"]


def _student(m):
    return m["students"]["default"]


def crafted(change=None, **arrays):
    """A function of (base, folder) giving a model file: the base's members with the metadata changed by
    ``change`` and ``arrays`` (name → a function of the base's array) replaced."""
    def make(b, folder):
        m = meta_of(b.members)
        if change:
            change(m)
        new = {k: f(b.members[f"default/{k}"]) for k, f in arrays.items()}
        return craft(folder / "crafted.npz", with_changes(b.members, meta=m, **new))
    return make


def bundle(classes_b, change=None):
    """A two-item bundle (items 'a' and 'b') of the base student, item b's classes ``classes_b``."""
    def make(b, folder):
        m = meta_of(b.members)
        sm = m["students"].pop("default")
        m["students"] = {"item0": sm, "item1": dict(json.loads(json.dumps(sm)), classes=classes_b)}
        m.update(items={"item0": "a", "item1": "b"}, item_col="item")
        if change:
            change(m)
        members = [("meta.json", np.frombuffer(json.dumps(m).encode(), np.uint8))]
        for name in ("item0", "item1"):
            members += [(f"{name}/{k}", b.members[f"default/{k}"]) for k in ("params", "vocab")]
        return craft(folder / "bundle.npz", members)
    return make


def commands(path, b, folder):
    """Every command that reads a model file, its outputs in ``folder``."""
    return [["info", path], ["info", path, "--json"], ["score", path, b.data, "--out", folder / "s.csv"],
            ["evaluate", path, b.data], ["report", path, b.data, "--out", folder / "r.html", "--no-plots"],
            ["export", path, "--onnx", folder / "x.onnx"], ["export", path, "--web", folder / "web"]]


def assert_refused_everywhere(capsys, b, folder, path, needles):
    before = folder_state(folder)
    out, peak = peak_of(load, path)
    assert isinstance(out, ModelFileError), repr(out)
    msg = str(out)
    assert "\n" not in msg and all(n in msg for n in needles), msg
    assert peak < PEAK_LIMIT, f"{peak / 2**20:.1f} MiB"
    with open(path, "rb") as f:
        data = f.read()
    with pytest.raises(ModelFileError) as e:  # the loader of `score --jobs` / --dask workers
        load_bytes(data, path)
    assert str(e.value) == msg
    for cmd in commands(path, b, folder):
        rc, _, err = run(capsys, *cmd)
        assert_user_error(rc, err, *needles)
        assert err.strip() == f"tinykd: error: {msg}", (cmd, err)
    assert folder_state(folder) == before


# ============================================================================ defect 5: the temperature
def _temperature(t):
    return crafted(lambda m: _meta(m)["calibration"].update(temperature=t))


T_FIELD = "meta['calibration']['temperature'] must be a number from 0.05 to 20"
#: (what, the temperature stored in the file)
TEMPERATURES = [("-1", -1), ("-0.5", -0.5), ("0", 0), ("-0.0", -0.0), ("1e-300", 1e-300), ("0.049", 0.049),
                ("20.01", 20.01), ("1e308", 1e308), ("NaN", float("nan")), ("Infinity", float("inf")),
                ("-Infinity", float("-inf")), ("text '2'", "2"), ("true", True), ("a list [2]", [2]),
                ("an object", {"value": 2})]


@pytest.mark.parametrize("what,t", TEMPERATURES, ids=[r[0] for r in TEMPERATURES])
def test_a_temperature_tinykd_never_fits_is_refused_by_every_reader(tmp_path, capsys, base, what, t):
    path = _temperature(t)(base, tmp_path)
    assert_refused_everywhere(capsys, base, tmp_path, path, ("malformed metadata", T_FIELD))


@pytest.mark.parametrize("t", [0.05, 1, 2.5, 20, None])
def test_the_temperatures_tinykd_fits_are_read_alike_by_scoring_and_both_exports(tmp_path, base, t):
    from tinykd.export.common import describe_student

    st_ = load(_temperature(t)(base, tmp_path))
    want = 1.0 if t is None else float(t)
    assert st_.temperature == st_.scorer.temperature == describe_student(st_)["temperature"] == want
    texts = ["acid rain dissolves marble", "water heat"]
    raw = st_.predict_proba(texts, calibrated=False).astype(np.float64)
    from tinykd.scoring.calibration import calibrated_proba
    np.testing.assert_allclose(st_.predict_proba(texts), calibrated_proba(np.log(raw), want), atol=1e-6)


# ============================================================================ defect 10: the blocks
def _cal(**kv):
    return crafted(lambda m: _meta(m)["calibration"].update(kv))


def _vp(f):
    return crafted(lambda m: f(_meta(m)["validation_predictions"]))


def _set(key, value):
    return crafted(lambda m: _meta(m).update({key: value}))


def _nan_logit(vp):
    vp["logits"][3][1] = float("nan")


VP = "meta['validation_predictions']"
#: (what, the file, fragments of the refusal)
BLOCKS = [
    *[(f"calibration {what}", _set("calibration", v), ("meta['calibration'] must be an object",))
      for what, v in (("a list", [1]), ("text", "x"), ("a number", 2.0), ("true", True))],
    ("calibration n_val text", _cal(n_val="32"), ("meta['calibration']['n_val'] must be a whole number",)),
    ("calibration n_val -1", _cal(n_val=-1), ("meta['calibration']['n_val'] must be a whole number",)),
    ("calibration ECE a list", _cal(val_ece_before=[0.1]), ("['val_ece_before'] must be a number",)),
    ("calibration reason a number", _cal(reason=5), ("meta['calibration']['reason'] must be text",)),
    ("calibration method a number", _cal(method=1), ("meta['calibration']['method'] must be text",)),
    *[(f"validation_predictions {what}", _set("validation_predictions", v), (f"{VP} must be an object",))
      for what, v in (("a list", [1]), ("text", "x"), ("a number", 3))],
    ("y text", _vp(lambda vp: vp.update(y="abc")), (f"{VP}['y'] must be a list of class indices 0 to 2",)),
    ("y floats", _vp(lambda vp: vp.update(y=[float(v) for v in vp["y"]])), (f"{VP}['y'] must be",)),
    ("y beyond the classes", _vp(lambda vp: vp["y"].__setitem__(0, 3)), (f"{VP}['y'] must be",)),
    ("y -1", _vp(lambda vp: vp["y"].__setitem__(0, -1)), (f"{VP}['y'] must be",)),
    ("y missing", _vp(lambda vp: vp.pop("y")), (f"{VP}['y'] must be",)),
    ("logits text", _vp(lambda vp: vp.update(logits="abc")), (f"{VP}['logits'] must be a list of 32 rows",)),
    ("logits missing", _vp(lambda vp: vp.pop("logits")), (f"{VP}['logits'] must be a list of 32 rows",)),
    ("logits a row short", _vp(lambda vp: vp.update(logits=[r[:2] for r in vp["logits"]])),
     (f"{VP}['logits'] row 0 must be a list of 3 finite numbers",)),
    ("logits fewer rows than y", _vp(lambda vp: vp.update(logits=vp["logits"][:1])),
     (f"{VP}['logits'] must be a list of 32 rows",)),
    ("a NaN logit", _vp(_nan_logit), (f"{VP}['logits'] row 3 must be",)),
    ("a text logit", _vp(lambda vp: vp["logits"][0].__setitem__(0, "1")), (f"{VP}['logits'] row 0 must be",)),
    ("decision offsets one short", _set("decision_offsets", {"offsets": [0.5, 0.0], "reason": ""}),
     ("['decision_offsets']['offsets'] must be a list of 3 numbers",)),
]


@pytest.mark.parametrize("what,make,needles", BLOCKS, ids=[r[0] for r in BLOCKS])
def test_a_block_of_the_wrong_type_or_shape_is_refused_by_every_reader(tmp_path, capsys, base, what, make, needles):
    assert_refused_everywhere(capsys, base, tmp_path, make(base, tmp_path), ("malformed metadata", *needles))


def test_a_calibration_of_its_temperature_alone_is_read_by_every_command(tmp_path, capsys, base):
    """What a student built in Python stores (tests/conftest.export_student): the fit's counts are absent."""
    path = crafted(lambda m: _meta(m).update(calibration={"method": "temperature", "temperature": 2.0}))(
        base, tmp_path)
    rc, out, err = run(capsys, "info", path)
    assert rc == 0 and "calibration: temperature 2.000 fitted on ? validation rows (validation ECE ? → ?)" in out
    for cmd in commands(path, base, tmp_path)[1:]:
        rc, out, err = run(capsys, *cmd)
        assert rc == 0, (cmd, err)
    assert "temperature 2.000, fitted on ? validation rows" in open(tmp_path / "r.html", encoding="utf-8").read()


# ============================================================================ defect 11: text
def _vocab_with(k, token):
    def f(v):
        v = v.astype(f"<U{max(v.dtype.itemsize // 4, len(token))}")
        v[k] = token
        return v
    return f


def _beyond_unicode(v):
    raw = v.astype("<U8").view(np.uint32).copy()
    raw[5 * 8] = 0x110000
    return raw.view("<U8")


def _classes(*cs):
    return crafted(lambda m: _student(m).update(classes=list(cs)))


SURROGATE = "U+D800, a lone surrogate"
#: (what, the file, fragments of the refusal)
TEXT = [
    ("a class label", _classes("\ud800", "b", "c"), ("students/default/classes/0", SURROGATE)),
    ("a low surrogate in a class label", _classes("a", "b\udfff", "c"),
     ("students/default/classes/1", "U+DFFF, a lone surrogate")),
    ("a reversed pair", _classes("a", "b", "\ude00\ud83d"), ("students/default/classes/2", "U+DE00")),
    ("a vocabulary token", crafted(vocab=_vocab_with(5, "\ud800")), ("student 'default' token 5", SURROGATE)),
    ("a token beyond U+10FFFF", crafted(vocab=_beyond_unicode), ("student 'default' token 5", "beyond U+10FFFF")),
    ("a token twice", crafted(vocab=lambda v: np.concatenate([v[:6], v[5:6], v[7:]])),
     ("student 'default' has the vocabulary token", "twice (ids 5 and 6)")),
    ("a special token twice", crafted(vocab=_vocab_with(6, "<pad>")), ("'<pad>' twice (ids 0 and 6)",)),
    ("the text column's name", crafted(lambda m: _meta(m)["columns"].update(text="te\ud800xt")),
     ("students/default/meta/columns/text", SURROGATE)),
    ("a note", crafted(lambda m: _meta(m)["notes"].append("\udbff")), ("students/default/meta/notes/", "U+DBFF")),
    ("a field tinykd does not read", crafted(lambda m: _meta(m).update(mine={"x": ["\udc80"]})),
     ("students/default/meta/mine/x/0", "U+DC80")),
    ("a key", crafted(lambda m: _meta(m).update({"\ud800": 1})), ("students/default/meta", SURROGATE)),
    ("an item name", bundle([0, 1, 2], lambda m: m["items"].update(item1="b\ud800")), ("items/item1", SURROGATE)),
    ("the item column", bundle([0, 1, 2], lambda m: m.update(item_col="\ud800")), ("item_col", SURROGATE)),
]


@pytest.mark.parametrize("what,make,needles", TEXT, ids=[r[0] for r in TEXT])
def test_text_that_is_not_text_is_refused_by_every_reader(tmp_path, capsys, base, what, make, needles):
    assert_refused_everywhere(capsys, base, tmp_path, make(base, tmp_path), needles)


def test_text_beyond_the_bmp_loads_scores_and_exports(tmp_path, capsys, base):
    """JSON writes U+1F600 as the pair \\ud83d\\ude00: a pair is one character, never refused."""
    path = crafted(lambda m: _student(m).update(classes=["\U0001F600", "b", "c"]),
                   vocab=_vocab_with(5, "\U0001D465"))(base, tmp_path)
    assert json.dumps("\U0001F600") == '"\\ud83d\\ude00"'  # how the metadata holds it
    st_ = load(path)
    assert st_.classes[0] == "\U0001F600" and st_.vocab.tokens[5] == "\U0001D465"
    for cmd in commands(path, base, tmp_path):
        rc, _, err = run(capsys, *cmd)
        assert rc == 0, (cmd, err)
    with open(tmp_path / "s.csv", encoding="utf-8") as f:
        assert f.readline().startswith("id,text,label,item,pred,p_\U0001F600,p_b,p_c,")


# ============================================================================ defect 20: spellings
ONE_LABEL = "are one score spelt 2 ways"
#: (what, the file, fragments of the refusal)
SPELLINGS = [
    ("1 and '1'", _classes(0, 1, "1"), ("student 'default' class labels 1, '1'", ONE_LABEL, "the column p_1")),
    ("1 and 1.0", _classes(0, 1, 1.0), ("class labels 1, 1.0", ONE_LABEL)),
    ("0.0 and '0'", _classes(0.0, "0", 2), ("class labels 0.0, '0'", ONE_LABEL, "the column p_0")),
    ("'01' and 1", _classes("01", 1, 2), ("class labels '01', 1", ONE_LABEL)),
    ("'1.0' and 1", _classes("1.0", 1, 2), ("class labels '1.0', 1", ONE_LABEL)),
    ("'a' and ' a'", _classes("a", " a", "b"), ("class labels 'a', ' a'", ONE_LABEL, "the column p_a")),
    ("items: 0 1 2 and '0' '1' '2'", bundle(["0", "1", "2"]),
     ("the students of items 'a', 'b' have class labels 0, '0'", ONE_LABEL)),
    ("items: 0 1 2 and 0.0 1.0 2.0", bundle([0.0, 1.0, 2.0]),
     ("the students of items 'a', 'b' have class labels 0, 0.0", ONE_LABEL)),
]


@pytest.mark.parametrize("what,make,needles", SPELLINGS, ids=[r[0] for r in SPELLINGS])
def test_class_labels_spelt_two_ways_are_refused_by_every_reader(tmp_path, capsys, base, what, make, needles):
    assert_refused_everywhere(capsys, base, tmp_path, make(base, tmp_path), ("malformed metadata", *needles))


@pytest.mark.parametrize("what,make,columns", [
    ("text labels that look like numbers", _classes("1", "1.0", "x"), ["p_1", "p_1.0", "p_x"]),
    ("items of numbers and of text", bundle(["low", "mid", "high"]), ["p_0", "p_1", "p_2", "p_high", "p_low", "p_mid"]),
    ("items with the same numbers", bundle([0, 1, 2]), ["p_0", "p_1", "p_2"]),
])
def test_distinct_labels_load_and_score_one_column_each(tmp_path, capsys, base, what, make, columns):
    path = make(base, tmp_path)
    rc, _, err = run(capsys, "score", path, base.data, "--out", tmp_path / "s.csv")
    assert rc == 0, err
    with open(tmp_path / "s.csv", encoding="utf-8") as f:
        head = f.readline().strip().split(",")
    assert [c for c in head if c.startswith("p_")] == columns


# ============================================================================ students built in Python
def _in_memory(base, classes=None, calibration=None):
    st_ = base.student
    meta = dict(st_.meta, calibration=calibration or st_.meta["calibration"])
    return Student(st_.vocab, st_.net, classes or st_.classes, meta)


def _export_onnx(st_, folder):
    from tinykd.export.onnx_graph import export_onnx
    return export_onnx(st_, folder / "x.onnx")


def _export_web(st_, folder):
    from tinykd.export.page import export_web
    return export_web(st_, folder / "web")


#: (what, the student's classes, its calibration, fragments of the refusal)
IN_MEMORY = [
    ("temperature -1", None, {"method": "temperature", "temperature": -1}, (T_FIELD,)),
    ("temperature text", None, {"temperature": "2"}, (T_FIELD,)),
    ("classes 1 and '1'", [0, 1, "1"], None, ("class labels 1, '1'", ONE_LABEL)),
    ("a lone surrogate", ["\ud800", 1, 2], None, ("U+D800, a lone surrogate",)),
]
CALLS = [("save", lambda st_, folder: st_.save(folder / "m.npz")), ("to_bytes", lambda st_, folder: st_.to_bytes()),
         ("export --onnx", _export_onnx), ("export --web", _export_web)]


@pytest.mark.parametrize("call_name,call", CALLS, ids=[c[0] for c in CALLS])
@pytest.mark.parametrize("what,classes,cal,needles", IN_MEMORY, ids=[r[0] for r in IN_MEMORY])
def test_a_student_built_in_python_is_held_to_the_file_checks(tmp_path, base, what, classes, cal, needles, call_name,
                                                             call):
    st_ = _in_memory(base, classes, cal)
    before = folder_state(tmp_path)  # (export --web to a folder not made yet: a refused model leaves none)
    with pytest.raises(ValueError) as e:
        call(st_, tmp_path)
    assert "\n" not in str(e.value) and all(n in str(e.value) for n in needles), str(e.value)
    assert folder_state(tmp_path) == before
