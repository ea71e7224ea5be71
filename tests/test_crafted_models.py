"""Crafted model files: a file of a few kilobytes must not make the loader (or the scorer) use
more than some tens of megabytes, metadata of the wrong types is a one-line refusal, a FIFO
is refused without blocking, and finite but huge weights never become NaN scores.

The peak memory of the loader is measured with tracemalloc (NumPy reports its arrays to it)."""
import builtins
import json
import os
import subprocess
import sys
import tracemalloc
import warnings
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tinykd
from tinykd.cli.info import describe, format_description
from tinykd.nn.network import count_params, make_config
from tinykd.scoring.modelfile import ModelFileError
from tinykd.scoring.student import Student, load

from conftest import assert_user_error, write_csv
from conftest import run_cli as run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORDS = "acid rain dissolves marble rock water heat energy light plant".split()
#: what the loader may use on the files crafted here (a few KB to a few hundred KB: at most about 20 MiB
#: of arrays, the Python objects of at most 100,000 tokens and 50,000 metadata values)
PEAK_LIMIT = 40 * 2**20


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A real model file and its members (name → array), to craft from."""
    d = tmp_path_factory.mktemp("crafted")
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(WORDS, 4 + i % 3)) for i in range(48)]
    s = tinykd.fit(texts, [i % 3 for i in range(48)], config=dict(embed_dim=8, units=8, dense_units=8), epochs=1,
                   verbose=False, validation=False)
    s.meta["columns"] = {"text": "text", "label": "label"}
    p = d / "m.npz"
    s.save(p)
    with np.load(p) as z:
        members = {k: z[k] for k in z.files}
    data = write_csv(d / "d.csv", [{"id": i, "text": t} for i, t in enumerate(texts[:5])])
    return str(p), members, data


def meta_of(members):
    return json.loads(members["meta.json"].tobytes())


def meta_array(meta):
    return np.frombuffer((meta if isinstance(meta, bytes) else json.dumps(meta).encode()), np.uint8)


def craft(path, members):
    """A zip of ``.npy`` members, deflated; ``members`` is a list of (name, array): names may repeat."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, arr in members:
            with zf.open(name + ".npy", "w", force_zip64=True) as m:
                np.lib.format.write_array(m, np.asanyarray(arr), allow_pickle=False)
    return str(path)


def with_changes(base_members, **change):
    """The base members with some replaced (``meta=`` a dict or bytes, ``vocab=``, ``params=``)."""
    m = dict(base_members)
    if "meta" in change:
        m["meta.json"] = meta_array(change.pop("meta"))
    for k, v in change.items():
        m[f"default/{k}"] = v
    return list(m.items())


def peak_of(f, *a):
    """(result or the exception, tracemalloc peak in bytes)."""
    tracemalloc.start()
    try:
        try:
            out = f(*a)
        except Exception as e:  # noqa: BLE001 - the caller checks what it is
            out = e
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def refused(path, needle):
    out, peak = peak_of(load, path)
    assert isinstance(out, ModelFileError), out
    assert "\n" not in str(out) and needle in str(out), str(out)
    assert peak < PEAK_LIMIT, f"{peak / 2**20:.1f} MiB for a {os.path.getsize(path) / 1024:.1f} KiB file"
    return str(out), peak


# ============================================================================ memory
def test_metadata_bombs_are_refused_before_parsing(tmp_path, base):
    _, members, _ = base
    deep = b'{"format": "tinykd-model", "version": 1, "x": ' + b"[" * 20_000 + b"]" * 20_000 + b"}"
    wide = b'{"format": "tinykd-model", "version": 1, "x": [' + b"[]," * 300_000 + b"[]]}"
    huge = b'{"format": "tinykd-model", "version": 1, "x": "' + b"a" * (40 << 20) + b'"}'
    for name, raw, needle in (("deep", deep, "nested more than 32 deep"),
                              ("wide", wide, "values, more than a model file's"),
                              ("huge", huge, "refused, the file asks for")):
        p = craft(tmp_path / f"{name}.npz", with_changes(members, meta=raw))
        assert os.path.getsize(p) < 100_000
        refused(p, needle)
    big = b'{"format": "tinykd-model", "version": 1, "x": "' + b"a" * (4 << 20) + b'"}'
    refused(craft(tmp_path / "big.npz", with_changes(members, meta=big)), "the metadata is 4.0 MiB")


def test_vocabulary_bombs_are_refused_before_building(tmp_path, base):
    _, members, _ = base
    meta = meta_of(members)
    meta["students"]["default"]["config"]["embed_dim"] = 1
    cfg = make_config(None, **meta["students"]["default"]["config"])

    def params_for(V):  # exactly what the config needs, so only the vocabulary's bounds can refuse
        return np.zeros(count_params(cfg, V, 3), np.float32)

    many = np.full(1_500_000, "w", dtype="<U1")  # 6 MB + 6 MB of zeros declared (within 16 MiB): 1.5 M strings
    p = craft(tmp_path / "many.npz", with_changes(members, meta=meta, vocab=many, params=params_for(len(many))))
    refused(p, "refused, the vocabularies hold 1,500,000 tokens, more than a file of")
    long_ = np.array(["<pad>", "<oov>", "<sep>", "x" * 5000], dtype=str)
    refused(craft(tmp_path / "long.npz", with_changes(members, meta=meta, vocab=long_, params=params_for(4))),
            "a vocabulary token longer than 256 characters")
    refused(craft(tmp_path / "zeros.npz", with_changes(members, params=np.zeros(100_000_000, np.float32))),
            "refused, the file asks for")


def test_a_scoring_table_bomb_is_refused(tmp_path, base):
    """100,000 one-letter tokens, a 1-wide embedding and 512 units: 5 MB of zeros that compress to a few KB,
    but scoring would build a 100,000 × 2,048 float32 table (819 MB)."""
    _, members, _ = base
    meta = meta_of(members)
    meta["students"]["default"]["config"].update(embed_dim=1, units=512, dense_units=0)
    V, H = 100_000, 512
    vocab = np.array(["<pad>", "<oov>", "<sep>"] + [f"{i}" for i in range(V - 3)])
    params = np.zeros(V + 4 * H + H * 4 * H + 4 * H + H * 3 + 3, np.float32)
    p = craft(tmp_path / "table.npz", with_changes(members, meta=meta, vocab=vocab, params=params))
    refused(p, "refused, scoring would build")


def test_duplicate_members_are_refused(tmp_path, base):
    _, members, _ = base
    items = list(members.items())
    with pytest.warns(UserWarning, match="Duplicate name"):
        p = craft(tmp_path / "dup.npz", items + [("meta.json", meta_array({"format": "other"}))])
    refused(p, "holds member 'meta.json.npy' twice")
    p = craft(tmp_path / "extra.npz", items + [("default/extra", np.zeros(3))])
    refused(p, "not a tinykd model file (member 'default/extra.npy')")


def test_info_opens_the_file_once(base, monkeypatch):
    path, _, _ = base
    opened = []
    real = builtins.open

    def counting(file, *a, **k):
        if os.fspath(file) == path if isinstance(file, (str, os.PathLike)) else False:
            opened.append(file)
        return real(file, *a, **k)

    monkeypatch.setattr(builtins, "open", counting)
    out = describe(path)
    assert out["students"]["default"]["classes"] == [0, 1, 2] and len(opened) == 1


# ====================================================================== wrong types
WRONG = [
    ("config units a list", lambda m: m["students"]["default"]["config"].update(units=[8]), "config['units']"),
    ("config units 8.5", lambda m: m["students"]["default"]["config"].update(units=8.5), "config['units']"),
    ("rnn a number", lambda m: m["students"]["default"]["config"].update(rnn=1), "config['rnn']"),
    ("dropout a string", lambda m: m["students"]["default"]["config"].update(dropout="0.2"), "config['dropout']"),
    ("classes nested", lambda m: m["students"]["default"].update(classes=[[0], [1], [2]]), "class label"),
    ("classes a dict", lambda m: m["students"]["default"].update(classes={"a": 1}), "classes must be a list"),
    ("vocab settings", lambda m: m["students"]["default"]["vocab"].update(max_len="100"), "vocab['max_len']"),
    ("lam a list", lambda m: m["students"]["default"]["meta"]["training"].update(lam=[4]), "['lam']"),
    ("n_train text", lambda m: m["students"]["default"]["meta"]["training"].update(n_train="48"), "['n_train']"),
    ("training a list", lambda m: m["students"]["default"]["meta"].update(training=[1]), "['training']"),
    ("columns a list", lambda m: m["students"]["default"]["meta"].update(columns=["text"]), "['columns']"),
    ("column a number", lambda m: m["students"]["default"]["meta"]["columns"].update(text=3), "['text']"),
    ("uses_context text", lambda m: m["students"]["default"]["meta"].update(uses_context="yes"), "uses_context"),
    ("notes a number", lambda m: m["students"]["default"]["meta"].update(notes=5), "['notes']"),
    ("metrics text", lambda m: m["students"]["default"]["meta"].update(validation_metrics={"n": 3, "accuracy": "x"}),
     "['accuracy']"),
    ("offsets text", lambda m: m["students"]["default"]["meta"].update(decision_offsets={"offsets": ["1", 0]}),
     "['offsets']"),
    ("offsets a list", lambda m: m["students"]["default"]["meta"].update(decision_offsets=[0.5]), "decision_offsets"),
    ("meta a list", lambda m: m["students"]["default"].update(meta=[]), "meta must be an object"),
    ("students a list", lambda m: m.update(students=[1]), "holds no students"),
    ("item map a list", lambda m: m.update(items=["a"]), "item map"),
    ("item_col a number", lambda m: m.update(item_col=3), "item_col"),
    ("a student a string", lambda m: m["students"].update(default="x"), "must be an object"),
]


@pytest.mark.parametrize("what,change,needle", WRONG, ids=[w[0] for w in WRONG])
def test_metadata_of_the_wrong_type_is_a_one_line_refusal(tmp_path, capsys, base, what, change, needle):
    _, members, data = base
    meta = meta_of(members)
    change(meta)
    p = craft(tmp_path / "bad.npz", with_changes(members, meta=meta))
    with pytest.raises(ModelFileError, match="malformed metadata") as e:
        load(p)
    assert needle in str(e.value) and "\n" not in str(e.value)
    for cmd in (["info", p], ["info", p, "--json"], ["score", p, data, "--out", tmp_path / "s.csv"]):
        rc, _, err = run(capsys, *cmd)
        assert_user_error(rc, err, "malformed metadata", needle)
    assert not (tmp_path / "s.csv").exists()


def test_a_fifo_model_path_is_refused_without_blocking(tmp_path, base):
    _, _, data = base
    fifo = tmp_path / "m.npz"
    os.mkfifo(fifo)
    for cmd in (["info", str(fifo)], ["score", str(fifo), data, "--out", str(tmp_path / "s.csv")]):
        r = subprocess.run([sys.executable, "-m", "tinykd.cli", *cmd], capture_output=True, text=True,
                           timeout=120, cwd=ROOT)
        assert r.returncode == 2, r.stderr
        assert r.stderr.strip() == (f"tinykd: error: {fifo}: not a regular file (a pipe, FIFO or device); "
                                    "give a model file")


# ================================================================= silent NaN scores
@pytest.mark.parametrize("scale", [1e5, 1e20, 3e38])
def test_finite_but_huge_weights_are_refused_not_scored_as_nan(tmp_path, capsys, base, scale):
    path, members, data = base
    rng = np.random.default_rng(0)
    params = members["default/params"].copy()
    params[:] = rng.choice([-1.0, 1.0], params.size) * scale
    p = craft(tmp_path / "huge.npz", with_changes(members, params=params.astype(np.float32)))
    refused(p, "beyond ±10000: they cannot come from training")
    rc, _, err = run(capsys, "score", p, data, "--out", tmp_path / "s.csv")
    assert_user_error(rc, err, "beyond ±10000")
    assert not (tmp_path / "s.csv").exists()
    good = load(path)  # the Python API: a network edited in memory is refused when scored
    net = good.net.copy()
    net.params[:] = params
    with pytest.raises(ValueError, match="beyond ±10000"):
        Student(good.vocab, net, good.classes).predict_proba(["acid rain"])
    with pytest.raises(ValueError, match="beyond ±10000"):
        Student(good.vocab, net, good.classes).save(tmp_path / "x.npz")
    assert not (tmp_path / "x.npz").exists()


@pytest.mark.parametrize("jit", ["never", "always"])
def test_non_finite_outputs_are_never_written_as_scores(tmp_path, capsys, base, monkeypatch, jit):
    path, _, data = base
    from tinykd.scoring import scorer as scoring

    real = scoring.Scorer._predict

    def nan_row(self, ids, lengths, inv_t):
        out = real(self, ids, lengths, inv_t)
        out[1] = np.nan
        return out

    monkeypatch.setattr(scoring.Scorer, "_predict", nan_row)
    monkeypatch.setenv("TINYKD_JIT", jit)
    with pytest.raises(ValueError, match="non-finite probabilities for 1 of 5 rows"):
        load(path).predict_proba(["acid", "rain", "rock", "heat", "water"])
    out = tmp_path / "s.csv"
    rc, _, err = run(capsys, "score", path, data, "--out", out)
    assert_user_error(rc, err, "non-finite probabilities for 1 of 5 rows", "refused rather than written as scores")
    assert not out.exists() and os.listdir(tmp_path) == []


# ========================================================================= fuzzing
_json = st.recursive(st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=False)
                     | st.text(max_size=20),
                     lambda kids: st.lists(kids, max_size=5) | st.dictionaries(st.text(max_size=8), kids, max_size=5),
                     max_leaves=30)
_FIELDS = [("students", "default", "config", k) for k in ("embed_dim", "units", "dense_units", "rnn", "pooling",
                                                          "dropout", "max_len", "max_vocab")] + \
          [("students", "default", k) for k in ("classes", "vocab", "meta", "n_params", "config")] + \
          [("students", "default", "meta", k) for k in ("training", "columns", "validation_metrics", "notes",
                                                       "uses_context", "preset")] + \
          [("students", "default", "meta", "training", k) for k in ("lam", "temperature", "n_train", "best_epoch")] + \
          [("items",), ("item_col",), ("version",), ("students",)]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_model_files_load_or_refuse_in_one_line_with_bounded_memory(tmp_path, base, data):
    """Random values in the fields tinykd reads, random vocabulary counts and token lengths, a
    repeated member: the loader returns a working model or one ModelFileError line, and its peak
    memory stays under PEAK_LIMIT."""
    _, members, _ = base
    meta = meta_of(members)
    for _ in range(data.draw(st.integers(0, 3))):
        field = data.draw(st.sampled_from(_FIELDS))
        d = meta
        for k in field[:-1]:
            d = d.setdefault(k, {}) if isinstance(d, dict) else {}
        if isinstance(d, dict):
            d[field[-1]] = data.draw(_json)
    parts = with_changes(members, meta=meta)
    if data.draw(st.booleans()):
        n, width = data.draw(st.sampled_from([(3, 1), (10, 300), (1000, 5), (1000, 3000), (200_000, 1),
                                              (1_500_000, 1), (2000, 256)]))
        vocab = np.full(n, "x" * width)
        vocab[:3] = ["<pad>", "<oov>", "<sep>"]
        parts = [(k, vocab if k == "default/vocab" else v) for k, v in parts]
    if data.draw(st.booleans()):
        parts.append(data.draw(st.sampled_from(parts)))
    p = tmp_path / "fuzz.npz"
    with warnings.catch_warnings():  # a repeated member: "Duplicate name"
        warnings.simplefilter("ignore")
        craft(p, parts)
    out, peak = peak_of(load, p)
    if isinstance(out, Exception):
        assert isinstance(out, ModelFileError), repr(out)
        assert "\n" not in str(out)
    else:
        assert out.predict_proba(["acid rain"]).shape[0] == 1
        assert format_description(describe(p)) and json.dumps(describe(p), default=str)  # what tinykd info prints
    assert peak < PEAK_LIMIT, f"{peak / 2**20:.1f} MiB for a {os.path.getsize(p) / 1024:.1f} KiB file"

