"""Bad input, as a careless or hostile user gives it: every case of the README table "What tinykd
does with bad input".

Most cases are rows of four tables, one per kind of check:

* ``CLI``: a command line that must exit 2 with one line ``tinykd: error: …`` (no traceback) and
  leave the folder as it was (no output, no temporary file, links / FIFOs / read-only files untouched);
* ``API``: a Python call that must raise one exception of a given type, in one line, naming the
  argument (an :class:`~tinykd.errors.OptionError` names its option);
* ``MODEL_FILES``: a model file (damaged, from another program, crafted to exhaust memory, of the
  wrong types) that the loader, ``tinykd info`` and ``tinykd score`` refuse in one line, with the
  loader's peak memory bounded and nothing in it ever run;
* ``LABELS`` / ``CELLS``: label spellings and spreadsheet formulas, value → what tinykd makes of it.

The functions after the tables check what a table cannot: input that is read (pipes, encodings,
CSV dialects), writes interrupted by a full disk or a signal, training that diverges or is
stopped, and fuzzing with Hypothesis.
"""
import builtins
import csv
import errno
import json
import os
import pickle
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import tracemalloc
import warnings
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tinykd
from tinykd.cli.commands import main
from tinykd.cli.info import describe, format_description
from tinykd.errors import OptionError
from tinykd.files import csvfiles as kdata
from tinykd.files.atomic import AtomicFile, OutputPathError, atomic_write_bytes
from tinykd.files.csvfiles import CsvReader, coerce_labels, label_key, normalize_labels, spreadsheet_safe
from tinykd.files.softlabels import write_soft_labels
from tinykd.nn.network import count_params, make_config
from tinykd.scoring.modelfile import ModelFileError
from tinykd.scoring.scorefile import score_csv
from tinykd.scoring.student import Student, load
from tinykd.scoring.text import Vocabulary
from tinykd.train.splits import assign_roles, holdout, rare_classes, split_712

from conftest import assert_user_error, write_csv
from conftest import run_cli as run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORDS = "acid rain dissolves marble rock water heat energy light plant".split()
TINY = dict(embed_dim=8, units=8, dense_units=8)
FIT = dict(config=TINY, epochs=1, verbose=False)
#: what the loader may use on the files crafted here (a few KB to a few hundred KB: at most about 20 MiB
#: of arrays, the Python objects of at most 100,000 tokens and 50,000 metadata values)
PEAK_LIMIT = 40 * 2**20


def rows_for(n=48, seed=0, labels=("0", "1", "2")):
    """Rows id, split, text, label: row i has label ``labels[i % len(labels)]`` and 4 + i % 3 words."""
    rng = np.random.default_rng(seed)
    return [{"id": f"r{i}", "split": "train", "text": " ".join(rng.choice(WORDS, 4 + i % 3)),
             "label": labels[i % len(labels)]} for i in range(n)]


def _texts(n, seed=0):
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, 4)) for _ in range(n)]


def _fit_rows(rows, **kw):
    st_ = tinykd.fit([r["text"] for r in rows], [r["label"] for r in rows], validation=False, **{**FIT, **kw})
    st_.meta["columns"] = {"text": "text", "label": "label"}
    return st_


class Model:
    """The module's model: a 3-class student (``student``), its file (``path``) and members, a
    48-row CSV to score (``data``: id, text, label) and a 5-row one (``data5``: id, text)."""

    def __init__(self, folder):
        rows = rows_for()
        self.student = _fit_rows([dict(r, label=int(r["label"])) for r in rows], epochs=2)
        self.path = str(folder / "m.npz")
        self.student.save(self.path)
        with np.load(self.path) as z:
            self.members = {k: z[k] for k in z.files}
        self.data = write_csv(folder / "d.csv", [{k: r[k] for k in ("id", "text", "label")} for r in rows])
        self.data5 = write_csv(folder / "d5.csv", [{"id": i, "text": r["text"]} for i, r in enumerate(rows[:5])])


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return Model(tmp_path_factory.mktemp("bad-input"))


class Ctx:
    """What a table row builds its input with, in the test's own folder ``tmp``."""

    def __init__(self, tmp, model):
        self.tmp, self.m, self.made = tmp, model, set()  # made: the names of the files built here

    def out(self, name):
        return str(self.tmp / name)

    def file(self, name, content):
        p = self.tmp / name
        p.write_bytes(content if isinstance(content, bytes) else content.encode())
        self.made.add(name)
        return str(p)

    def csv(self, name, rows):
        self.made.add(name)
        return write_csv(self.tmp / name, rows)

    def train_csv(self, rows=None):
        return self.csv("d.csv", rows or rows_for(30))

    def soft(self, header, rows):
        p = self.tmp / "soft.csv"
        self.made.add("soft.csv")
        with open(p, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(rows)
        return str(p)

    def link(self, name, target):
        (self.tmp / name).symlink_to(target)
        self.made.add(name)
        return self.out(name)

    def fifo(self, name):
        os.mkfifo(self.tmp / name)
        self.made.add(name)
        return self.out(name)

    def read_only(self, name):
        p = self.file(name, "keep me\n")
        os.chmod(p, 0o444)
        return p


def folder_state(folder):
    """Every entry under ``folder``: a link's target, a FIFO, or a file's mode and bytes (never read a FIFO)."""
    state = {}
    for dirpath, dirs, files in os.walk(folder):
        for name in dirs + files:
            p = os.path.join(dirpath, name)
            s = os.lstat(p)
            if stat.S_ISLNK(s.st_mode):
                state[p] = ("link", os.readlink(p))
            elif stat.S_ISFIFO(s.st_mode):
                state[p] = ("fifo",)
            elif stat.S_ISDIR(s.st_mode):
                state[p] = ("dir",)
            else:
                state[p] = ("file", stat.S_IMODE(s.st_mode), open(p, "rb").read())
    return state


def good_soft_rows(n=30):
    return [[f"r{i}", 0.2, 0.3, 0.5] for i in range(n)]


def _dup_ids(c):
    rows = rows_for(30)
    rows[5]["id"] = rows[3]["id"]
    soft = c.out("soft.csv")
    write_soft_labels(soft, [f"r{i}" for i in range(30)], [0, 1, 2], np.full((30, 3), 1 / 3))
    return ["train", c.csv("d.csv", rows), "--out", c.out("m.npz"), "--teacher", soft]


def _bad_soft(header, rows):
    return lambda c: ["train", c.train_csv(), "--out", c.out("m.npz"), "--teacher", c.soft(header, rows)]


def _train_with(*args):
    return lambda c: ["train", c.train_csv(), "--out", c.out("m.npz"), *args]


def _score_to(out):
    return lambda c: ["score", c.m.path, c.m.data, "--out", out(c)]


# ============================================================================ the command line
#: (what, the command line (a function of a Ctx), fragments of the error line[, strings the error must not hold])
CLI = [
    # --- data files
    ("train: missing column", lambda c: ["train", c.csv("d.csv", [{"id": 1, "answer": "x", "score": 1}]), "--out",
                                         c.out("m.npz")],
     ("no column 'text' (set --text-col)", "the file has columns: id, answer, score")),
    ("score: missing column", lambda c: ["score", c.m.path, c.csv("d.csv", [{"id": 1, "answer": "x", "score": 1}]),
                                         "--out", c.out("s.csv")], ("no column 'text'", "id, answer, score")),
    ("train: empty file", lambda c: ["train", c.file("empty.csv", b""), "--out", c.out("m.npz")], ("empty file",)),
    ("score: empty file", lambda c: ["score", c.m.path, c.file("empty.csv", b""), "--out", c.out("s.csv")],
     ("empty file",)),
    ("train: header only", lambda c: ["train", c.file("h.csv", "id,text,label\n"), "--out", c.out("m.npz")],
     ("header row but no data rows",)),
    ("score: header only", lambda c: ["score", c.m.path, c.file("h.csv", "id,text,label\n"), "--out", c.out("s.csv")],
     ("no data rows",)),
    ("score: ragged row", lambda c: ["score", c.m.path, c.file("r.csv", "id,text\n1,acid rain\n2,rock,extra,fields\n"),
                                     "--out", c.out("s.csv")], ("line 3 has 4 fields, the header has 2",)),
    ("score: a cell under an unnamed column", lambda c: ["score", c.m.path, c.file("d.csv", "id,text,label,,\n"
                                                         "r0,acid rain,1,,oops\n"), "--out", c.out("s2.csv")],
     ("line 2 has 5 fields, the header has 3",)),
    ("score: a spreadsheet", lambda c: ["score", c.m.path, c.file("book.xlsx", b"PK\x03\x04" + b"\x00" * 40), "--out",
                                        c.out("s.csv")], ("spreadsheet (.xlsx)", "CSV UTF-8")),
    ("score: no such file", lambda c: ["score", c.m.path, c.out("nope.csv"), "--out", c.out("s.csv")],
     ("nope.csv: no such file",)),
    ("score: a folder", lambda c: ["score", c.m.path, str(c.tmp), "--out", c.out("s.csv")], ("is a folder",)),
    ("score: --out in a missing folder", lambda c: ["score", c.m.path, c.file("book.xlsx", b"PK\x03\x04" + b"\x00" * 40),
                                                    "--out", c.out("no/s.csv")], ("does not exist",)),
    ("score: --out is the input", lambda c: ["score", c.m.path, c.m.data, "--out", c.m.data], ("is an input file",)),
    ("train: duplicate ids with a teacher", _dup_ids, ("duplicate ids in 'id': 'r3'", "must be unique")),
    # --- soft labels
    ("train: soft labels missing rows", _bad_soft(["id", "p_0", "p_1", "p_2"], good_soft_rows(25)),
     ("5 of 30 requested ids are not in the file", "'r25'")),
    ("soft labels: wrong classes", _bad_soft(["id", "p_0", "p_1", "p_3"], good_soft_rows()),
     ("class columns do not match",)),
    ("soft labels: sum", _bad_soft(["id", "p_0", "p_1", "p_2"], [[f"r{i}", 0.2, 0.3, 0.4] for i in range(30)]),
     ("do not sum to 1",)),
    ("soft labels: nan", _bad_soft(["id", "p_0", "p_1", "p_2"], [[f"r{i}", "nan", 0.5, 0.5] for i in range(30)]),
     ("NaN or inf",)),
    ("soft labels: negative", _bad_soft(["id", "p_0", "p_1", "p_2"], [[f"r{i}", -0.2, 0.7, 0.5] for i in range(30)]),
     ("negative",)),
    ("soft labels: duplicate ids", _bad_soft(["id", "p_0", "p_1", "p_2"], good_soft_rows() + [["r0", 1, 0, 0]]),
     ("duplicated ids",)),
    ("soft labels: logits", _bad_soft(["id", "logit_0", "logit_1", "logit_2"],
                                      [[f"r{i}", 1.5, -2, 0.3] for i in range(30)]), ("pass --from-logits",)),
    # --- options
    ("train --epochs 0", _train_with("--epochs", "0"), ("--epochs must be > 0",)),
    ("train --lam -1", _train_with("--lam", "-1"), ("--lam must be >= 0",)),
    ("train --preset huge", _train_with("--preset", "huge"), ("unknown --preset 'huge'",)),
    ("train --split-col fold", _train_with("--split-col", "fold"), ("no column 'fold' (set --split-col)",)),
    ("train --train-split training", _train_with("--train-split", "training"), ("no rows with split == 'training'",)),
    ("score --review-below 2", lambda c: ["score", c.m.path, c.m.data, "--out", c.out("s.csv"), "--review-below", "2"],
     ("--review-below must be between 0 and 1",)),
    ("train --lr 1e30: diverges", _train_with("--lr", "1e30", "--epochs", "3"),
     ("training diverged in the first epoch", "--lr")),
    *[(f"train {' '.join(args)}", _train_with("--epochs", "1", *args), (needle,), ("random_state", "smaller --lr"))
      for args, needle in [
          (["--lam", "inf"], "--lam must be >= 0 and at most 1000, got inf"),
          (["--lam", "1e300"], "--lam must be >= 0 and at most 1000"),
          (["--temperature", "inf"], "--temperature must be between 0.01 and 100, got inf"),
          (["--temperature", "1e300"], "--temperature must be between 0.01 and 100"),
          (["--temperature", "1e-300"], "--temperature must be between 0.01 and 100"),
          (["--seed", "-1"], "--seed must be a whole number from 0 to 4,294,967,295, got -1"),
          (["--seed", "99999999999"], "--seed must be a whole number from 0 to 4,294,967,295"),
          (["--patience", "-1"], "--patience must be > 0"), (["--lr", "-1"], "--lr must be > 0")]],
    *[(f"augment --seed {seed}", lambda c, seed=seed: ["augment", c.train_csv(), "--out", c.out("a.csv"), "--seed", seed],
       (needle,), ("random_state", "non-negative"))
      for seed, needle in [("-1", "--seed must be a whole number from 0 to 4,294,967,295, got -1"),
                           ("99999999999", "--seed must be a whole number from 0 to 4,294,967,295")]],
    # --- outputs (tinykd.files.atomic)
    ("score --out a symbolic link", _score_to(lambda c: c.link("link.csv", c.file("target.csv", "the old results\n"))),
     ("is a symbolic link (to", "give the file's own path")),
    ("score --out a FIFO", _score_to(lambda c: c.fifo("fifo.csv")),
     ("is a FIFO (named pipe)", "only a regular file is replaced")),
    ("score --out a device", _score_to(lambda c: "/dev/null"), ("cannot write /dev/null: it is a device",)),
    ("score --out a read-only file", _score_to(lambda c: c.read_only("s.csv")), ("the file is read-only",)),
]


@pytest.mark.parametrize("what,command,needles,absent", [(*r, ()) if len(r) == 3 else r for r in CLI],
                         ids=[r[0] for r in CLI])
def test_the_command_line_refuses_in_one_line_and_writes_nothing(tmp_path, capsys, model, what, command, needles,
                                                                  absent):
    args = command(Ctx(tmp_path, model))
    before = folder_state(tmp_path)
    rc, _, err = run(capsys, *args)
    assert_user_error(rc, err, *needles)
    for s in absent:
        assert s not in err, (s, err)
    assert folder_state(tmp_path) == before


# ============================================================================ the Python API
def _huge(c, scale):
    """The module's student with every weight ±``scale`` (finite), edited in memory."""
    net = c.m.student.net.copy()
    net.params[:] = np.random.default_rng(0).choice([-1.0, 1.0], net.size) * scale
    return Student(c.m.student.vocab, net, c.m.student.classes)


def _fit_with(option, value):
    return lambda c: tinykd.fit(_texts(24), [i % 2 for i in range(24)], **{**FIT, option: value})


def _fit_items_with(option, value):
    return lambda c: tinykd.fit_items(_texts(24), [i % 2 for i in range(24)], **{**FIT, option: value})


def _kd_with(option, value):
    return lambda c: tinykd.KDClassifier(**{"epochs": 1, {"seed": "random_state"}.get(option, option): value}).fit(
        _texts(24), [i % 2 for i in range(24)])


TEXT = "acid rain dissolves marble"
OPTIONS = [
    ("lr", -1e-3, "lr must be > 0"), ("lr", 0, "lr must be > 0"), ("patience", -1, "patience must be > 0"),
    ("patience", 0, "patience must be > 0"), ("epochs", -5, "epochs must be > 0"),
    ("batch_size", 0, "batch_size must be > 0"),
    ("validation_fraction", 0, "validation_fraction must be between 0 and 1"),
    ("validation_fraction", 1.0, "validation_fraction must be between 0 and 1"),
    ("validation_fraction", -0.1, "validation_fraction must be between 0 and 1"),
    ("lam", float("inf"), "lam must be >= 0 and at most 1000"), ("lam", 1e300, "lam must be >= 0 and at most 1000"),
    ("temperature", float("inf"), "temperature must be between 0.01 and 100"),
    ("temperature", 1e300, "temperature must be between 0.01 and 100"),
    ("temperature", 1e-300, "temperature must be between 0.01 and 100"),
    ("seed", -1, "seed must be a whole number from 0 to 4,294,967,295"),
    ("seed", 2**32, "seed must be a whole number from 0 to 4,294,967,295"),
    ("seed", 1.5, "seed must be a whole number"), ("config", [1], "config must be a dict"),
]
CONFIG = [("dense_units", -4), ("units", 0), ("embed_dim", 2.5), ("units", "8"), ("units", True), ("dropout", 1.0),
          ("dropout", -0.1), ("rnn", "gru"), ("max_vocab", 2), ("max_len", 0), ("dense_l2", float("nan"))]

#: (what, the call (a function of a Ctx), the exception, a regular expression its message matches[, its option])
API = [
    # --- a bare string where a sequence belongs (it was read character by character)
    ("fit: texts a string", lambda c: tinykd.fit(TEXT, [i % 2 for i in range(len(TEXT))], **FIT), TypeError,
     r"^texts must be a sequence \(one value per answer\), not a single string"),
    ("fit: y a string", lambda c: tinykd.fit(_texts(4), "0101", **FIT), TypeError, "^y must be a sequence"),
    ("fit_items: texts a string", lambda c: tinykd.fit_items(TEXT, ["1"] * len(TEXT), **FIT), TypeError,
     "^texts must be a sequence"),
    ("fit_items: labels a string", lambda c: tinykd.fit_items(_texts(4), "0101", **FIT), TypeError,
     "^labels must be a sequence"),
    ("fit_items: items a string", lambda c: tinykd.fit_items(_texts(4), [0, 1, 0, 1], items="abab", **FIT),
     TypeError, "^items must be a sequence"),
    ("predict_proba: a string", lambda c: c.m.student.predict_proba("acid rain"), TypeError,
     "^texts must be a sequence"),
    ("predict: a string", lambda c: c.m.student.predict("acid rain"), TypeError, "^texts must be a sequence"),
    ("encode: a string", lambda c: c.m.student.encode("acid rain"), TypeError, "^texts must be a sequence"),
    ("vocab.encode: contexts a string", lambda c: c.m.student.vocab.encode(["acid"], "why"), TypeError,
     "^contexts must be a sequence"),
    ("bundle: texts a string", lambda c: tinykd.Bundle({"1": c.m.student}).predict_proba_matrix("ab", ["1", "1"]),
     TypeError, "^texts must be a sequence"),
    ("bundle: items a string", lambda c: tinykd.Bundle({"1": c.m.student}).predict(["acid", "rain"], "11"),
     TypeError, "^items must be a sequence"),
    # --- labels
    ("fit: NaN labels", lambda c: tinykd.fit(["a", "b", "c", "d"], [0.0, np.nan, 1.0, np.nan], verbose=False),
     ValueError, r"y has 2 missing labels \(NaN/None\), rows 1, 3"),
    ("fit: None labels", lambda c: tinykd.fit(["a", "b", "c"], ["x", None, "y"], verbose=False), ValueError,
     "missing labels"),
    # --- settings out of range: fit, fit_items and KDClassifier name the option
    *[(f"fit {o}={v!r}", _fit_with(o, v), OptionError, n, o) for o, v, n in OPTIONS],
    *[(f"fit_items {o}={v!r}", _fit_items_with(o, v), OptionError, n, o) for o, v, n in OPTIONS],
    *[(f"KDClassifier {o}={v!r}", _kd_with(o, v), OptionError, n.replace("seed", "random_state"),
       {"seed": "random_state"}.get(o, o)) for o, v, n in OPTIONS if o != "config"],
    *[(f"fit config {k}={v!r}", _fit_with("config", {k: v}), ValueError, rf"^config\['{k}'\] must be")
      for k, v in CONFIG],
    *[(f"make_config {k}={v!r}", lambda c, k=k, v=v: tinykd.make_config("7t", **{k: v}), ValueError,
       rf"^config\['{k}'\] must be") for k, v in CONFIG],
    *[(f"holdout fraction {v!r}", lambda c, v=v: holdout(np.arange(20) % 2, v), ValueError,
       "fraction must be between 0 and 1") for v in (0, 0.0, 1, -0.5, True)],
    # --- outputs
    ("save to a symbolic link", lambda c: c.m.student.save(c.link("link.csv", c.file("target.csv", "old\n"))),
     OutputPathError, "symbolic link"),
    ("save to a dangling link", lambda c: c.m.student.save(c.link("dangling.npz", c.out("nowhere.npz"))),
     OutputPathError, "symbolic link"),
    ("write to a device", lambda c: atomic_write_bytes("/dev/null", b"x"), OutputPathError, "it is a device"),
    ("save to a read-only file", lambda c: c.m.student.save(c.read_only("s.csv")), OutputPathError, "read-only"),
    # --- weights beyond what training makes, edited in memory
    *[(f"{what} with weights ±{scale:g}", lambda c, s=scale, f=f: f(_huge(c, s), c), ValueError, "beyond ±10000")
      for scale in (1e5, 1e20, 3e38)
      for what, f in (("predict_proba", lambda s, c: s.predict_proba(["acid rain"])),
                      ("save", lambda s, c: s.save(c.out("x.npz"))))],
]


@pytest.mark.parametrize("what,call,exc,pattern,option", [(*r, None) if len(r) == 4 else r for r in API],
                         ids=[r[0] for r in API])
def test_the_api_refuses_in_one_line_naming_the_argument(tmp_path, model, what, call, exc, pattern, option):
    c = Ctx(tmp_path, model)
    with pytest.raises(exc, match=pattern) as e:
        call(c)
    assert "\n" not in str(e.value) and "reshape" not in str(e.value)
    if option:
        assert e.value.option == option
    assert set(os.listdir(tmp_path)) == c.made  # nothing written (no model, no temporary file)


def test_outputs_refused_by_the_api_are_left_as_they_were(tmp_path, model):
    st_ = model.student
    target = tmp_path / "target.csv"
    target.write_text("the old results\n")
    (tmp_path / "link.csv").symlink_to(target)
    (tmp_path / "dangling.npz").symlink_to(tmp_path / "nowhere.npz")
    ro = tmp_path / "s.csv"
    ro.write_text("keep me\n")
    os.chmod(ro, 0o444)
    before = folder_state(tmp_path)
    for name in ("link.csv", "dangling.npz", "s.csv"):
        with pytest.raises(OutputPathError):
            st_.save(tmp_path / name)
    assert folder_state(tmp_path) == before and not (tmp_path / "nowhere.npz").exists()
    assert stat.S_ISCHR(os.lstat("/dev/null").st_mode)


def test_any_other_sequence_of_texts_is_fine(model):
    assert model.student.predict_proba(("acid rain", "rock")).shape == (2, 3)


# ============================================================================ model files
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


def _rewrite_meta(src, dst, change):
    with np.load(src, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays["meta.json"].tobytes())
    change(meta)
    arrays["meta.json"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(dst, **arrays)
    return str(dst)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def _truncated(share):
    def make(c):
        raw = open(c.m.path, "rb").read()
        return c.file("t.npz", raw[:{"10 bytes": 10, "half": len(raw) // 2, "all but 5 bytes": len(raw) - 5}[share]])
    return make


def _from_another_program(name):
    def make(c):
        p = c.out(name)
        if name == "other.npz":
            np.savez(p, weights=np.ones(3))
        elif name == "bare.npy":
            np.save(p, np.ones(3))
        elif name == "docs.zip":
            with zipfile.ZipFile(p, "w") as z:
                z.writestr("readme.txt", "hi")
        else:
            c.file(name, {"text.npz": b"hello, I am a text file\n", "image.png": b"\x89PNG\r\n\x1a\n" + b"\x00" * 50}[name])
        return p
    return make


def _evil(where):
    def make(c):
        arrays = dict(c.m.members)
        if where == "a pickle":
            with open(c.out("model.pkl"), "wb") as f:
                pickle.dump(_Evil(), f)
            return c.out("model.pkl")
        evil = np.empty(1, dtype=object)
        evil[0] = _Evil()
        if where == "an extra member":
            arrays["payload"] = evil
        else:
            arrays["default/vocab"] = np.array([_Evil()], dtype=object)
        np.savez(c.out("evil.npz"), **arrays)
        return c.out("evil.npz")
    return make


def _crafted(meta=None, **change):
    """A model file from the module model's members with ``meta`` (bytes, or a function changing the
    metadata) and ``change`` (name → array, or a function of (metadata, members) giving one) replaced."""
    def make(c):
        members = c.m.members
        m = meta_of(members)
        if callable(meta):
            meta(m)
        arrays = {k: (v(m, members) if callable(v) else v) for k, v in change.items()}
        if meta is not None:
            arrays["meta"] = meta if isinstance(meta, bytes) else m
        return craft(c.tmp / "crafted.npz", with_changes(members, **arrays))
    return make


def _one_wide(m):
    m["students"]["default"]["config"]["embed_dim"] = 1


def _params_for(n_vocab):
    """Exactly the parameters a 1-wide embedding's config needs, so only the vocabulary's bounds can refuse."""
    def params(m, members):
        cfg = make_config(None, **m["students"]["default"]["config"])
        return np.zeros(count_params(cfg, n_vocab, 3), np.float32)
    return params


def _scoring_table_bomb(m):
    m["students"]["default"]["config"].update(embed_dim=1, units=512, dense_units=0)


V_BOMB, H_BOMB = 100_000, 512


def _members_plus(*extra, warns=None):
    def make(c):
        items = list(c.m.members.items()) + [(name, f(c) if callable(f) else f) for name, f in extra]
        if warns:
            with pytest.warns(UserWarning, match=warns):
                return craft(c.tmp / "crafted.npz", items)
        return craft(c.tmp / "crafted.npz", items)
    return make


def _deep():
    return b'{"format": "tinykd-model", "version": 1, "x": ' + b"[" * 20_000 + b"]" * 20_000 + b"}"


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

#: (what, the file (a function of a Ctx), fragments of the one-line refusal)
MODEL_FILES = [
    # --- damaged, or from another program
    *[(f"truncated: {share}", _truncated(share), ("damaged or truncated model file",))
      for share in ("10 bytes", "half", "all but 5 bytes")],
    ("missing", lambda c: c.out("missing.npz"), ("no such model file",)),
    *[(f"another program's {name}", _from_another_program(name), (f"not a tinykd model file ({why})",))
      for name, why in [("text.npz", "not an .npz archive"), ("image.png", "not an .npz archive"),
                        ("other.npz", "no meta.json"), ("bare.npy", "a bare NumPy array or a pickle; refused"),
                        ("docs.zip", "member 'readme.txt'")]],
    ("a newer format version", lambda c: _rewrite_meta(c.m.path, c.out("future.npz"), lambda m: m.update(version=99)),
     ("model format version 99 is newer than this tinykd reads (1); upgrade tinykd",)),
    ("tampered shapes", lambda c: _rewrite_meta(c.m.path, c.out("bigger.npz"), lambda m: m["students"]["default"][
        "config"].update(units=64)), ("parameters, its config needs",)),
    # --- pickles: refused, and never run (no PWNED file appears)
    ("a pickled extra member", _evil("an extra member"), ("refused, the file holds pickled objects (never loaded)",)),
    ("a pickled vocabulary", _evil("the vocabulary"), ("refused, the file holds pickled objects (never loaded)",)),
    ("a pickle", _evil("a pickle"), ("refused",)),
    # --- bombs: refused before they are parsed or built
    ("metadata nested 20,000 deep", _crafted(_deep()), ("nested more than 32 deep",)),
    ("metadata of 300,000 values", _crafted(b'{"format": "tinykd-model", "version": 1, "x": [' + b"[]," * 300_000
                                            + b"[]]}"), ("values, more than a model file's",)),
    ("metadata of 40 MiB", _crafted(b'{"format": "tinykd-model", "version": 1, "x": "' + b"a" * (40 << 20) + b'"}'),
     ("refused, the file asks for",)),
    ("metadata of 4 MiB", _crafted(b'{"format": "tinykd-model", "version": 1, "x": "' + b"a" * (4 << 20) + b'"}'),
     ("the metadata is 4.0 MiB",)),
    ("1,500,000 tokens", _crafted(_one_wide, vocab=np.full(1_500_000, "w", dtype="<U1"), params=_params_for(1_500_000)),
     ("refused, the vocabularies hold 1,500,000 tokens, more than a file of",)),
    ("a token of 5,000 characters", _crafted(_one_wide, vocab=np.array(["<pad>", "<oov>", "<sep>", "x" * 5000], dtype=str),
                                             params=_params_for(4)),
     ("a vocabulary token longer than 256 characters",)),
    ("100 M zero weights", _crafted(params=np.zeros(100_000_000, np.float32)), ("refused, the file asks for",)),
    # 100,000 one-letter tokens, a 1-wide embedding and 512 units: 5 MB of zeros that compress to a few KB,
    # but scoring would build a 100,000 × 2,048 float32 table (819 MB)
    ("a scoring table bomb", _crafted(_scoring_table_bomb, vocab=np.array(["<pad>", "<oov>", "<sep>"] + [
        f"{i}" for i in range(V_BOMB - 3)]), params=np.zeros(V_BOMB + 4 * H_BOMB + H_BOMB * 4 * H_BOMB + 4 * H_BOMB
                                                              + H_BOMB * 3 + 3, np.float32)),
     ("refused, scoring would build",)),
    ("a member twice", _members_plus(("meta.json", meta_array({"format": "other"})), warns="Duplicate name"),
     ("holds member 'meta.json.npy' twice",)),
    ("an extra member", _members_plus(("default/extra", np.zeros(3))),
     ("not a tinykd model file (member 'default/extra.npy')",)),
    # --- finite but huge weights would score as NaN
    *[(f"weights ±{scale:g}", _crafted(params=lambda m, members, s=scale: (np.random.default_rng(0).choice(
        [-1.0, 1.0], members["default/params"].size) * s).astype(np.float32)),
       ("beyond ±10000: they cannot come from training",)) for scale in (1e5, 1e20, 3e38)],
    # --- metadata of the wrong type
    *[(what, _crafted(change), ("malformed metadata", needle)) for what, change, needle in WRONG],
]


@pytest.mark.parametrize("what,make,needles", MODEL_FILES, ids=[r[0] for r in MODEL_FILES])
def test_a_bad_model_file_is_refused_in_one_line_with_bounded_memory(tmp_path, capsys, model, monkeypatch, what, make,
                                                                     needles):
    monkeypatch.chdir(tmp_path)  # where a pickle's payload would write PWNED
    path = make(Ctx(tmp_path, model))
    before = folder_state(tmp_path)
    out, peak = peak_of(load, path)
    assert isinstance(out, ModelFileError), repr(out)
    assert "\n" not in str(out) and all(n in str(out) for n in needles), str(out)
    size = os.path.getsize(path) if os.path.exists(path) else 0
    assert size < 2**20  # a small file: whatever memory it would take is the file's doing, not its size's
    assert peak < PEAK_LIMIT, f"{peak / 2**20:.1f} MiB for a {size / 1024:.1f} KiB file"
    for cmd in (["info", path], ["info", path, "--json"], ["score", path, model.data5, "--out", tmp_path / "s.csv"]):
        rc, _, err = run(capsys, *cmd)
        assert_user_error(rc, err, *needles)
    assert folder_state(tmp_path) == before and not os.path.exists("PWNED")


def test_info_opens_the_file_once(model, monkeypatch):
    opened = []
    real = builtins.open

    def counting(file, *a, **k):
        if os.fspath(file) == model.path if isinstance(file, (str, os.PathLike)) else False:
            opened.append(file)
        return real(file, *a, **k)

    monkeypatch.setattr(builtins, "open", counting)
    out = describe(model.path)
    assert out["students"]["default"]["classes"] == [0, 1, 2] and len(opened) == 1


def test_a_fifo_model_path_is_refused_without_blocking(tmp_path, model):
    fifo = tmp_path / "m.npz"
    os.mkfifo(fifo)
    for cmd in (["info", str(fifo)], ["score", str(fifo), model.data5, "--out", str(tmp_path / "s.csv")]):
        r = subprocess.run([sys.executable, "-m", "tinykd.cli", *cmd], capture_output=True, text=True,
                           timeout=120, cwd=ROOT)
        assert r.returncode == 2, r.stderr
        assert r.stderr.strip() == (f"tinykd: error: {fifo}: not a regular file (a pipe, FIFO or device); "
                                    "give a model file")


@pytest.mark.parametrize("jit", ["never", "always"])
def test_non_finite_outputs_are_never_written_as_scores(tmp_path, capsys, model, monkeypatch, jit):
    from tinykd.scoring import scorer as scoring

    real = scoring.Scorer._predict

    def nan_row(self, ids, lengths, inv_t):
        out = real(self, ids, lengths, inv_t)
        out[1] = np.nan
        return out

    monkeypatch.setattr(scoring.Scorer, "_predict", nan_row)
    monkeypatch.setenv("TINYKD_JIT", jit)
    with pytest.raises(ValueError, match="non-finite probabilities for 1 of 5 rows"):
        load(model.path).predict_proba(["acid", "rain", "rock", "heat", "water"])
    out = tmp_path / "s.csv"
    rc, _, err = run(capsys, "score", model.path, model.data5, "--out", out)
    assert_user_error(rc, err, "non-finite probabilities for 1 of 5 rows", "refused rather than written as scores")
    assert not out.exists() and os.listdir(tmp_path) == []


# ============================================================================ labels and cells
#: (what, the call, what it gives)
LABELS = [
    ("plain numbers in any spelling", lambda: normalize_labels(["1", "1.0", "01", " 1 ", "+1", "1e0", "2"]),
     ([1, 1, 1, 1, 1, 1, 2], "int")),
    ("integers spelt as floats", lambda: normalize_labels(["0", "1.0", " 2 ", "1"]), ([0, 1, 2, 1], "int")),
    ("1_0 is text, not 10", lambda: normalize_labels(["1_0", "2"]), (["1_0", "2"], "str")),
    ("an Arabic-Indic three is text", lambda: normalize_labels(["\u0663", "1"]), (["\u0663", "1"], "str")),
    ("hexadecimal is text", lambda: normalize_labels(["0x10", "1"]), (["0x10", "1"], "str")),
    ("fractions", lambda: normalize_labels(["0.5", "-1", ".5"]), ([0.5, -1.0, 0.5], "float")),
    ("a fraction makes every label a float", lambda: normalize_labels(["0.5", "1"]), ([0.5, 1.0], "float")),
    ("words", lambda: normalize_labels(["correct", "incorrect", "1"]), (["correct", "incorrect", "1"], "str")),
    ("missing in any spelling", lambda: normalize_labels(["", "NaN", "NA", "null", "2"]),
     ([None, None, None, None, 2], "int")),
    ("coerced to the model's classes", lambda: coerce_labels(["1.0", "2", "", "7"], [0, 1, 2]), [1, 2, None, 7]),
]


@pytest.mark.parametrize("what,call,expected", LABELS, ids=[r[0] for r in LABELS])
def test_labels_are_read_as_tinykd_train_reads_them(what, call, expected):
    assert call() == expected


CELLS = [*[(cell, "'" + cell) for cell in ("=1+2", "+cmd", "-2+3", "@SUM(A1)", "\tx", "\rx", "=HYPERLINK(\"http://x\")")],
         *[(cell, cell) for cell in ("-1", "+2", "-0.5", "1e3", "correct", "0", "a=b", "p_1")],
         (-1, "-1"), (2.5, "2.5")]


@pytest.mark.parametrize("cell,written", CELLS, ids=[repr(c) for c, _ in CELLS])
def test_spreadsheet_safe_follows_the_csv_injection_guidance(cell, written):
    assert spreadsheet_safe(cell) == written


def test_formula_labels_are_escaped_in_the_scored_file_and_numbers_are_not(tmp_path, capsys):
    labels = ("=1+2", "@SUM(A1)", "-x", "+y", "ok")
    rows = [{k: r[k] for k in ("id", "text", "label")} for r in rows_for(50, labels=labels)]
    data = write_csv(tmp_path / "d.csv", rows)
    st_ = _fit_rows(rows)
    res = score_csv(st_, data, tmp_path / "s.csv")
    assert res["n"] == 50
    rows = list(csv.DictReader(open(tmp_path / "s.csv")))
    preds = {r["pred"] for r in rows}
    assert preds and preds <= {"'=1+2", "'@SUM(A1)", "'-x", "'+y", "ok"}
    assert {r["label"] for r in rows} == set(labels)  # the input cells are written back as they were
    st_.save(tmp_path / "m.npz")
    rc, _, err = run(capsys, "score", tmp_path / "m.npz", data, "--out", tmp_path / "s2.csv", "-q")
    assert rc == 0, err
    assert {r["pred"] for r in csv.DictReader(open(tmp_path / "s2.csv"))} <= {"'=1+2", "'@SUM(A1)", "'-x", "'+y", "ok"}
    numeric = [{k: r[k] for k in ("id", "text", "label")} for r in rows_for(48, labels=("-1", "0", "1"))]
    write_csv(tmp_path / "n.csv", numeric)
    score_csv(_fit_rows(numeric), tmp_path / "n.csv", tmp_path / "sn.csv")
    rows = list(csv.DictReader(open(tmp_path / "sn.csv")))
    assert {r["pred"] for r in rows} <= {"-1", "0", "1"} and "p_-1" in rows[0]


# ============================================================================ input that is read
def _peak(f, *a):
    tracemalloc.start()
    try:
        out = f(*a)
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("bad,encoding", [(b"caf\xe9", "cp1252"), (b"caf\xe9 \x81", "latin-1")])
def test_encoding_check_of_a_big_non_utf8_file_keeps_memory_flat(tmp_path, bad, encoding):
    p = tmp_path / "big.csv"
    line = b"r1,acid rain dissolves the marble statue slowly over the years,1\n"
    with open(p, "wb") as f:
        f.write(b"id,text,label\nr0," + bad + b",0\n")
        f.write(line * (24 * 2**20 // len(line)))  # 24 MiB
    (enc, note), peak = _peak(kdata.sniff_encoding, p)
    assert enc == encoding and "(byte 0xe9 at line 2)" in note
    assert peak < 4 * 2**20, f"peak {peak / 2**20:.1f} MiB for a 24 MiB file"  # the old check read it all: ~72 MiB

    def first_rows():
        with CsvReader(p) as r:
            return [fields for _, (_, fields) in zip(range(2), r.rows())]

    rows, peak = _peak(first_rows)
    assert rows[0] == ["r0", "café" if encoding == "cp1252" else "café \x81", "0"] and peak < 6 * 2**20


def test_score_reads_from_a_pipe(tmp_path, model):
    data = write_csv(tmp_path / "d.csv", [{k: r[k] for k in ("id", "text", "label")} for r in rows_for(10)])
    out = tmp_path / "s.csv"
    with open(data, "rb") as f:
        r = subprocess.run([sys.executable, "-m", "tinykd.cli", "score", model.path, "/dev/stdin", "--out", str(out)],
                           input=f.read(), capture_output=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    assert [row["id"] for row in csv.DictReader(open(out))] == [f"r{i}" for i in range(10)]


def test_a_fifo_is_read_like_a_file(tmp_path):
    fifo = tmp_path / "in.csv"
    os.mkfifo(fifo)
    body = "id,text,label\n" + "".join(f"r{i},acid rain,{i % 2}\n" for i in range(5000))
    t = threading.Thread(target=lambda: fifo.write_text(body))
    t.start()
    table = kdata.read_table(fifo, ["text", "label"])
    t.join()
    assert len(table) == 5000 and table.rows[-1] == ["r4999", "acid rain", "1"]
    assert os.listdir(tmp_path) == ["in.csv"]  # the temporary copy is gone


def test_empty_columns_at_the_end_of_the_header_are_dropped(tmp_path, capsys, model):
    p = tmp_path / "d.csv"
    p.write_text("id,text,label,,,\n" + "".join(f"r{i},acid rain,1,,,\n" for i in range(3)) + "r3,water,0\n")
    rc, _, err = run(capsys, "score", model.path, p, "--out", tmp_path / "s.csv", "-q")
    assert rc == 0, err
    rows = list(csv.reader(open(tmp_path / "s.csv")))
    assert rows[0] == ["id", "text", "label", "pred", "p_0", "p_1", "p_2", "confidence", "needs_review"]
    assert [r[:3] for r in rows[1:]] == [["r0", "acid rain", "1"], ["r1", "acid rain", "1"],
                                         ["r2", "acid rain", "1"], ["r3", "water", "0"]]


def test_blank_answers_are_scored_not_dropped(tmp_path, capsys, model):
    rows = [{"id": "a", "text": ""}, {"id": "b", "text": "   "}, {"id": "c", "text": "acid rain"},
            {"id": "d", "text": "\t\n"}]
    p = write_csv(tmp_path / "b.csv", rows)
    out = tmp_path / "s.csv"
    rc, _, err = run(capsys, "score", model.path, p, "--out", out)
    assert rc == 0, err
    got = list(csv.DictReader(open(out, newline="")))
    assert [r["id"] for r in got] == ["a", "b", "c", "d"] and all(r["pred"] != "" for r in got)
    m = load(model.path)
    assert got[0]["p_0"] == got[1]["p_0"] == got[3]["p_0"] == f"{m.predict_proba([''])[0, 0]:.4f}"


def test_very_long_answer_is_truncated(tmp_path, capsys, model):
    long = ("acid rain dissolves marble " * 30000)[:100_000]
    p = write_csv(tmp_path / "long.csv", [{"text": long}, {"text": "short"}])
    m = load(model.path)
    ids, lengths = m.vocab.encode([long])
    assert lengths[0] == m.vocab.max_len == ids.shape[1]  # cut to max_len tokens: the cost is bounded
    rc, _, err = run(capsys, "score", model.path, p, "--out", tmp_path / "s.csv")
    assert rc == 0, err
    got = list(csv.DictReader(open(tmp_path / "s.csv")))
    assert len(got) == 2
    cut = " ".join(long.split()[:m.vocab.max_len])  # the first max_len words score the same as the whole
    assert got[0]["p_0"] == f"{m.predict_proba([cut])[0, 0]:.4f}"


def test_non_utf8_falls_back_to_cp1252_and_says_so(tmp_path, capsys, model):
    p = tmp_path / "win.csv"
    p.write_bytes("id,text\n1,café crème\n2,naïve answer\n".encode("cp1252"))
    rc, _, err = run(capsys, "score", model.path, p, "--out", tmp_path / "s.csv")
    assert rc == 0
    assert "not valid UTF-8 (byte 0xe9 at line 2); read as Windows-1252" in err
    got = list(csv.DictReader(open(tmp_path / "s.csv", encoding="utf-8")))
    assert [r["text"] for r in got] == ["café crème", "naïve answer"]  # decoded, written back as UTF-8
    # a byte Windows-1252 leaves undefined: Latin-1
    q = tmp_path / "latin.csv"
    q.write_bytes(b"id,text\n1,abc\x81def\n")
    enc, note = kdata.sniff_encoding(q)
    assert enc == "latin-1" and "Latin-1" in note


def test_crlf_and_quoted_fields(tmp_path, capsys, model):
    p = tmp_path / "q.csv"
    p.write_bytes(b'id,text,label\r\n1,"rain, acid, and marble",0\r\n2,"line one\r\nline two",1\r\n'
                  b'3,"she said ""hi""",2\r\n')
    t = kdata.read_table(p, ["text"])
    assert t.column("text") == ["rain, acid, and marble", "line one\r\nline two", 'she said "hi"']
    rc, _, err = run(capsys, "score", model.path, p, "--out", tmp_path / "s.csv")
    assert rc == 0, err
    got = list(csv.DictReader(open(tmp_path / "s.csv", newline="", encoding="utf-8")))
    assert [r["text"] for r in got] == t.column("text")


def test_bom_utf16_and_semicolons_are_read(tmp_path, capsys, model):
    p = tmp_path / "bom.csv"
    p.write_bytes(b"\xef\xbb\xbftext,label\nacid rain,1\n")
    assert kdata.read_table(p).header == ["text", "label"]
    rc, _, err = run(capsys, "score", model.path, p, "--out", tmp_path / "s.csv")
    assert rc == 0 and err == ""
    u16 = tmp_path / "u16.csv"
    u16.write_bytes("text,label\nacid rain,1\n".encode("utf-16"))
    assert kdata.read_table(u16).column("text") == ["acid rain"]
    semi = tmp_path / "semi.csv"
    semi.write_text("id;text\n1;acid rain\n")  # a European Excel export
    assert kdata.read_table(semi).column("text") == ["acid rain"]


def test_unseen_labels_at_evaluation_count_as_wrong(tmp_path, capsys, model):
    p = write_csv(tmp_path / "u.csv", [{"text": "acid rain", "label": "7"}, {"text": "rock", "label": "1.0"}])
    rc, out, _ = run(capsys, "evaluate", model.path, p)
    assert rc == 0 and "labels 7 are not among the model's classes" in out
    rc, out, _ = run(capsys, "evaluate", model.path, p, "--json")
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


def test_duplicate_ids_without_a_teacher_are_a_warning(tmp_path, capsys):
    rows = rows_for(30)
    rows[5]["id"] = rows[3]["id"]
    p = write_csv(tmp_path / "d.csv", rows)
    rc, _, err = run(capsys, "train", p, "--out", tmp_path / "m.npz", "--epochs", "1", "-q")
    assert rc == 0 and "warning: " in err and "'r3'" in err  # with a teacher: refused (the CLI table)


def test_rows_without_a_label_are_left_out_of_training(tmp_path, capsys):
    rows = rows_for(30)
    for k in (1, 4, 7):
        rows[k]["label"] = ["NaN", "NA", ""][k % 3]
    p = write_csv(tmp_path / "d.csv", rows)
    rc, _, err = run(capsys, "train", p, "--out", tmp_path / "m.npz", "--epochs", "1")
    assert rc == 0 and "3 training rows have no label" in err
    tr = load(tmp_path / "m.npz").meta["training"]
    assert tr["n_train"] + tr["n_val"] == 27


def test_soft_labels_missing_rows_are_allowed_when_told(tmp_path, capsys):
    c = Ctx(tmp_path, None)
    rc, _, err = run(capsys, "train", c.train_csv(), "--out", c.out("m.npz"), "--teacher",
                     c.soft(["id", "p_0", "p_1", "p_2"], good_soft_rows(25)), "--allow-missing-teacher", "--epochs", "1")
    assert rc == 0 and "5 training rows have no teacher row" in err


def test_soft_labels_extra_ids_are_ignored(tmp_path, capsys):
    c = Ctx(tmp_path, None)
    soft = c.soft(["id", "p_0", "p_1", "p_2"], good_soft_rows(30) + [["zz9", 1, 0, 0]])
    rc, _, err = run(capsys, "train", c.train_csv(), "--out", c.out("m.npz"), "--teacher", soft, "--epochs", "1")
    assert rc == 0, err
    assert load(tmp_path / "m.npz").meta["training"]["teacher"] is True


def test_logits_converted_only_when_told(tmp_path, capsys):
    c = Ctx(tmp_path, None)
    soft = c.soft(["id", "logit_0", "logit_1", "logit_2"], [[f"r{i}", 1.5, -2, 0.3] for i in range(30)])
    rc, _, err = run(capsys, "train", c.train_csv(), "--out", c.out("m.npz"), "--teacher", soft, "--from-logits",
                     "--epochs", "1")
    assert rc == 0, err  # without --from-logits: refused (the CLI table)


def test_a_missing_argument_is_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train"])
    assert e.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_debug_shows_the_traceback(tmp_path):
    p = tmp_path / "empty.csv"
    p.write_bytes(b"")
    with pytest.raises(kdata.DataFileError, match="empty file"):
        main(["train", str(p), "--out", str(tmp_path / "m.npz"), "--debug"])
    with pytest.raises(kdata.DataFileError):
        main(["--debug", "train", str(p), "--out", str(tmp_path / "m.npz")])


# ============================================================================ classes too small to hold out
def test_a_rare_class_is_never_held_out_whole():
    y = np.array([0] * 999 + [1])
    for seed in range(20):
        tr, va = holdout(y, 0.125, seed)
        assert 999 in tr and 999 not in va and len(va) == 125  # 1/8 of the 999 rows of class 0
        tr, va, te = split_712(y, seed)
        assert 999 in tr
    y = np.array([0] * 40 + [1] * 7 + [2] * 2)
    tr, va = holdout(y, 0.125, 0)
    assert set(y[va]) == {0} and set(np.flatnonzero(y > 0)) <= set(tr) and rare_classes(y) == [1, 2]
    y = np.array([0] * 40 + [1] * 16)
    np.testing.assert_array_equal(holdout(y, 0.125, 3)[1], holdout(y, 0.125, 3)[1])  # seeded
    assert sorted(np.bincount(y[holdout(y, 0.125, 3)[1]])) == [2, 5]  # stratified as before


def test_a_999_to_1_imbalance_keeps_both_classes_in_the_model(tmp_path):
    texts = _texts(1000)
    y = [0] * 999 + [1]
    for seed in (0, 1, 2):
        with warnings.catch_warnings(record=True) as seen:  # validation rows of one class: QWK undefined, no warning
            warnings.simplefilter("always")
            s = tinykd.fit(texts, y, seed=seed, **FIT)
        assert [str(w.message) for w in seen] == [] and s.meta["validation_metrics"]["qwk"] == 0.0
        assert s.classes == [0, 1] and s.meta["training"]["n_train"] == 1000 - 125
        assert any("class 1 has fewer than 8 rows: all kept for training, none held out for validation" in n
                   for n in s.meta["notes"])
    s.save(tmp_path / "m.npz")  # and the model file, NaN QWK and all, loads
    assert tinykd.load(tmp_path / "m.npz").classes == [0, 1]
    for seed in range(20):  # tinykd distill's rule (its students get these validation rows)
        roles = assign_roles(y, ["train"] * 1000, None, train_split="train", val_split=None, test_split="test",
                             no_split="paper", hold_out=True, key=label_key, seed=seed)
        assert roles[999] == "train" and roles.count("val") == 125


# ============================================================================ training
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


def test_ctrl_c_during_training_writes_nothing(tmp_path, capsys, monkeypatch):
    import tinykd.train.loop as tr

    train_csv = Ctx(tmp_path, None).train_csv()
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


# ============================================================================ writes (tinykd.files.atomic)
def _disk_full(fd):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_model_write_is_atomic(tmp_path, capsys, monkeypatch):
    train_csv = Ctx(tmp_path, None).train_csv()
    out = tmp_path / "m.npz"
    out.write_bytes(b"the previous model")
    monkeypatch.setattr(os, "fsync", _disk_full)
    rc, _, err = run(capsys, "train", train_csv, "--out", out, "--epochs", "1", "-q")
    assert_user_error(rc, err, "No space left on device", "nothing was written")
    assert out.read_bytes() == b"the previous model"
    assert sorted(os.listdir(tmp_path)) == ["d.csv", "m.npz"]  # no temporary file left
    with pytest.raises(OSError):
        atomic_write_bytes(out, b"new")
    assert out.read_bytes() == b"the previous model"


def test_scored_csv_write_is_atomic(tmp_path, capsys, model, monkeypatch):
    out = tmp_path / "s.csv"
    out.write_text("previous results\n")
    monkeypatch.setattr(os, "fsync", _disk_full)
    rc, _, err = run(capsys, "score", model.path, model.data, "--out", out)
    assert_user_error(rc, err, "No space left on device")
    assert out.read_text() == "previous results\n"
    assert os.listdir(tmp_path) == ["s.csv"]


def _umask():
    with open("/proc/self/status") as f:  # read, never set
        return int(next(line for line in f if line.startswith("Umask:")).split()[1], 8)


def test_new_files_get_the_umask_mode_without_touching_the_umask(tmp_path, capsys, model, monkeypatch):
    mask = _umask()

    def no_umask(*a):
        raise AssertionError("os.umask called: other threads would create world-writable files meanwhile")

    monkeypatch.setattr(os, "umask", no_umask)
    model.student.save(tmp_path / "m.npz")
    with AtomicFile(tmp_path / "t.txt", "w") as f:
        f.write("x")
    assert main(["score", model.path, model.data, "--out", str(tmp_path / "s.csv"), "-q"]) == 0
    for p in (tmp_path / "m.npz", tmp_path / "t.txt", tmp_path / "s.csv", model.path):
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o666 & ~mask, p


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o604], ids=oct)
def test_an_existing_file_keeps_its_mode(tmp_path, capsys, model, mode):
    out = tmp_path / "s.csv"
    out.write_text("old\n")
    os.chmod(out, mode)
    rc, _, err = run(capsys, "score", model.path, model.data, "--out", out, "-q")
    assert rc == 0, err
    assert stat.S_IMODE(os.stat(out).st_mode) == mode and out.read_text().startswith("id,text,label,pred")
    model_out = tmp_path / "m.npz"
    model_out.write_bytes(b"old")
    os.chmod(model_out, mode)
    model.student.save(model_out)
    assert stat.S_IMODE(os.stat(model_out).st_mode) == mode and tinykd.load(model_out).classes == [0, 1, 2]


_KILL_MID_WRITE = """
import os, signal, sys
import tinykd.files.csvfiles as tables
from tinykd.cli.commands import main
signal.signal(signal.{sig}, signal.SIG_DFL)  # as in a terminal: a runner under nohup would pass SIGHUP ignored
real, n = tables.AtomicCsvWriter.writerow, [0]
def writerow(self, row):  # the signal arrives with half of the rows written
    n[0] += 1
    if n[0] == 20:
        os.kill(os.getpid(), signal.{sig})
    return real(self, row)
tables.AtomicCsvWriter.writerow = writerow
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP"])
@pytest.mark.parametrize("cmd", ["score", "augment"])
def test_sigterm_and_sighup_while_writing_leave_no_temporary_file(tmp_path, model, sig, cmd):
    out = tmp_path / "out.csv"
    out.write_text("the previous file\n")
    args = ["score", model.path, model.data] if cmd == "score" else ["augment", model.data, "--n", "2"]
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(_KILL_MID_WRITE.format(sig=sig)), *args,
                        "--out", str(out), "--chunk-size" if cmd == "score" else "--seed", "10" if cmd == "score"
                        else "0"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    signum = getattr(signal, sig)
    assert r.returncode == 128 + signum, r.stderr
    assert r.stderr.strip().splitlines()[-1] == (f"tinykd: stopped by {sig}; nothing was written "
                                                 "(any earlier file at --out is untouched)")
    assert out.read_text() == "the previous file\n"
    assert os.listdir(tmp_path) == ["out.csv"]  # no .part file left


def test_signal_handlers_are_restored_after_a_write(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    atomic_write_bytes(tmp_path / "x", b"1")
    with pytest.raises(ZeroDivisionError):
        with AtomicFile(tmp_path / "y", "wb"):
            assert signal.getsignal(signal.SIGTERM) is not before  # ours while the file is open
            1 / 0
    assert signal.getsignal(signal.SIGTERM) == before
    assert sorted(os.listdir(tmp_path)) == ["x"]


# ============================================================================ fuzzing
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=400))
def test_loader_on_random_bytes(tmp_path, raw):
    p = tmp_path / "random.npz"
    p.write_bytes(raw)
    with pytest.raises(ModelFileError):
        load(p)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_loader_on_damaged_model_files(tmp_path, model, data):
    raw = bytearray(open(model.path, "rb").read())
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


def test_a_model_file_that_says_it_reads_a_context_is_scored_with_one(tmp_path, model):
    """The fuzzer's find (a valid ``uses_context`` set to true): the file loads; a score without a context is
    refused in one line, with one it works."""
    meta = meta_of(model.members)
    meta["students"]["default"]["meta"]["uses_context"] = True
    p = tmp_path / "ctx.npz"
    craft(p, with_changes(model.members, meta=meta))
    out = load(p)
    assert out.uses_context
    with pytest.raises(ValueError, match="pass contexts=") as e:
        out.predict_proba(["acid rain"])
    assert "\n" not in str(e.value)
    assert out.predict_proba(["acid rain"], ["why is it acid?"]).shape[0] == 1


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_model_files_load_or_refuse_in_one_line_with_bounded_memory(tmp_path, model, data):
    """Random values in the fields tinykd reads, random vocabulary counts and token lengths, a
    repeated member: the loader returns a working model or one ModelFileError line, and its peak
    memory stays under PEAK_LIMIT."""
    meta = meta_of(model.members)
    for _ in range(data.draw(st.integers(0, 3))):
        field = data.draw(st.sampled_from(_FIELDS))
        d = meta
        for k in field[:-1]:
            d = d.setdefault(k, {}) if isinstance(d, dict) else {}
        if isinstance(d, dict):
            d[field[-1]] = data.draw(_json)
    parts = with_changes(model.members, meta=meta)
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
    else:  # a file that says its model reads a context (a valid value) is scored with one
        assert out.predict_proba(["acid rain"], ["why is it acid?"] if out.uses_context else None).shape[0] == 1
        assert format_description(describe(p)) and json.dumps(describe(p), default=str)  # what tinykd info prints
    assert peak < PEAK_LIMIT, f"{peak / 2**20:.1f} MiB for a {os.path.getsize(p) / 1024:.1f} KiB file"
