"""CSV quoting, the length of error messages and class labels spelt two ways (issue 32: defects 2, 18
and 20's labels), in the style of ``tests/test_bad_input.py``: one table per kind of check.

* ``QUOTES``: a file whose quoting is broken (a quote that is never closed, text after a closing
  quote) — every reader refuses it in one line naming the line where the row with the open quote
  starts: ``tinykd score`` (exit 2, nothing written), ``read_table``, ``tinykd score --jobs 1``
  (Dask) and the soft-label reader. ``QUOTED``: quoting that is valid is read as before.
* ``LONG``: user data of any size quoted in an error (a header of 10^6 columns, a name of 10^6
  characters, long ids): the error is still one short line.
* ``CLASSES``: class labels that are one score spelt two ways (``1`` and ``"1"``, ``"1"`` and
  ``"1.0"``) — refused, naming them, when a student is trained and when a model is scored; labels
  that are different scores are kept.
"""
import os

import numpy as np
import pytest

import tinykd
from tinykd.files import csvfiles
from tinykd.files.csvfiles import DataFileError, read_table
from tinykd.files.softlabels import SoftLabelError, read_soft_labels, write_soft_labels
from tinykd.scoring.scorefile import score_csv
from tinykd.scoring.student import Bundle, save

from conftest import assert_user_error
from conftest import run_cli as run

WORDS = "acid rain dissolves marble rock water heat energy light plant".split()
TINY = dict(config=dict(embed_dim=8, units=8, dense_units=8), epochs=1, verbose=False, validation=False)
#: the longest error line any case may print (the paths here are short)
MAX_LINE = 1000


def _texts(n, seed=0):
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, 4)) for _ in range(n)]


def _student(labels, n=30):
    return tinykd.fit(_texts(n), [labels[i % len(labels)] for i in range(n)], **TINY)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("reliability-csv") / "m.npz")
    save(_student([0, 1, 2]), path)
    return path


def _listing(folder):
    return {name: open(os.path.join(folder, name), "rb").read() for name in sorted(os.listdir(folder))}


# ============================================================================ broken quoting
def _rows_after(n):
    return "".join(f"{i},rock water\n" for i in range(3, 3 + n))


#: (what, the file's text (or bytes), fragments of the one-line error)
QUOTES = [
    ("an unclosed quote in the last column, 1,000 rows after it", 'id,text\n1,rain\n2,"acid rain\n' + _rows_after(1000),
     ("line 3: a quoted field opens in this row and is never closed", "end of the file, line 1003")),
    ("an unclosed quote in the last row, no line end", 'id,text\n1,rain\n2,"acid rain',
     ("line 3: a quoted field opens in this row and is never closed",)),
    ("an unclosed quote in the header", 'id,"text\n1,rain\n2,acid\n',
     ("line 1: a quoted field opens in this row and is never closed",)),
    ("a quote bomb", 'id,text\n1,"' + "x,y\n" * 20000, ("line 2: a quoted field opens in this row", "line 20001")),
    ("CRLF line ends", 'id,text\r\n1,rain\r\n2,"acid rain\r\n3,rock\r\n',
     ("line 3: a quoted field opens in this row and is never closed",)),
    ("';' separated", 'id;text\n1;rain\n2;"acid rain\n3;rock\n',
     ("line 3: a quoted field opens in this row and is never closed",)),
    ("Windows-1252 bytes", 'id,text\n1,caf\xe9\n2,"acid rain\n3,rock\n'.encode("cp1252"),
     ("line 3: a quoted field opens in this row and is never closed",)),
    ("after a closed field of two lines", 'id,text\n1,"two\nlines"\n2,"acid rain\n3,rock\n',
     ("line 4: a quoted field opens in this row and is never closed",)),
    ("closed by a later quoted cell: the rows between would be swallowed",
     'id,text\n1,"acid rain\n2,plain\n3,"quoted"\n4,rock\n',
     ("line 2: a quoted field opens in this row and runs on to line 4", "text after its closing quote")),
    ("text after a closing quote", 'id,text\n1,"acid" rain\n2,rock\n',
     ("line 2: a quoted field has text after its closing quote",)),
]


def _write(tmp_path, content):
    p = tmp_path / "d.csv"
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    return str(p)


@pytest.mark.parametrize("what,content,needles", QUOTES, ids=[r[0] for r in QUOTES])
def test_broken_quoting_is_refused_by_every_reader_naming_its_line(tmp_path, capsys, model, what, content, needles):
    data = _write(tmp_path, content)
    before = _listing(tmp_path)
    rc, _, err = run(capsys, "score", model, data, "--out", tmp_path / "s.csv")
    assert_user_error(rc, err, "d.csv: ", *needles)
    assert _listing(tmp_path) == before  # nothing written, no temporary file
    with pytest.raises(DataFileError) as e:
        read_table(data, ["text"])
    assert "\n" not in str(e.value) and all(n in str(e.value) for n in needles), str(e.value)


def test_the_dask_path_refuses_an_unclosed_quote_naming_its_line(tmp_path, capsys, model):
    pytest.importorskip("distributed")  # its tasks read each CSV file with the same reader
    what, content, needles = QUOTES[0]
    data = _write(tmp_path, content)
    before = _listing(tmp_path)
    rc, _, err = run(capsys, "score", model, data, "--jobs", "1", "--out", tmp_path / "s.csv")
    assert_user_error(rc, err, "d.csv: ", *needles)
    assert _listing(tmp_path) == before


def test_a_teacher_file_with_an_unclosed_quote_is_refused_naming_its_line(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text('id,p_0,p_1,note\na,0.5,0.5,"fine\nb,1,0,\nc,0,1,\n')
    with pytest.raises(SoftLabelError, match=r"t\.csv: line 2: a quoted field opens in this row and is never closed"):
        read_soft_labels(str(p), ["a", "b", "c"], [0, 1])


#: (what, the file's text, the rows read): quoting that is valid reads as it always did
QUOTED = [
    ("a field of two lines at the end, no line end", 'id,text\n1,"a\nb"', [["1", "a\nb"]]),
    ("doubled quotes", 'id,text\n1,"say ""hi"""\n', [["1", 'say "hi"']]),
    ("a quote inside an unquoted field", 'id,text\n1,he said "hi\n2,x\n', [["1", 'he said "hi'], ["2", "x"]]),
    ("an empty quoted field", 'id,text\n1,""\n2,x\n', [["1", ""], ["2", "x"]]),
    ("CRLF and a quoted line break", 'id,text\r\n1,"a, b"\r\n2,"c\r\nd"\r\n', [["1", "a, b"], ["2", "c\r\nd"]]),
    ("a quoted header", '"id","text"\n"1","x"\n', [["1", "x"]]),
]


@pytest.mark.parametrize("what,content,rows", QUOTED, ids=[r[0] for r in QUOTED])
def test_valid_quoting_is_read_as_before(tmp_path, what, content, rows):
    assert read_table(_write(tmp_path, content), ["text"]).rows == rows


# ============================================================================ long errors
def _long_header(n):
    return ",".join(f"c{i}" for i in range(n)) + "\n" + ",".join("x" * n) + "\n"


def _score(content, *args):
    return lambda t, m: ["score", m, _write(t, content), "--out", t / "s.csv", *args]


def _train(content, *args, teacher=None):
    def command(t, m):
        extra = []
        if teacher is not None:
            (t / "t.csv").write_text(teacher)
            extra = ["--teacher", t / "t.csv"]
        return ["train", _write(t, content), "--out", t / "m.npz", *extra, *args]
    return command


def _dask_parts(t, m):
    pytest.importorskip("distributed")
    (t / "parts").mkdir()
    for name, c in (("a.csv", "c"), ("b.csv", "d")):
        (t / "parts" / name).write_text("text," + ",".join(f"{c}{i}" for i in range(10**5)) + "\n")
    return ["score", m, t / "parts", "--jobs", "1", "--out", t / "s.csv"]


BIG = "x" * 1_000_000
LONG_ID = "i" * 100_000
DATA = "id,text,label\n" + "".join(f"r{i},{w} rock,{i % 2}\n" for i, w in enumerate(WORDS * 3))
GOOD_SOFT = "".join(f"r{i},0.5,0.5\n" for i in range(30))

#: (what, the command line (a function of the folder and the model), fragments of the one-line error)
LONG = [
    ("score: a header of 1,000,000 columns, none of them 'text'", _score(_long_header(10**6)),
     ("no column 'text'", "the file has columns: c0, c1,", "(1,000,000 in all)")),
    ("score: a column name of 1,000,000 characters", _score(f"id,{BIG}\n1,x\n"),
     ("no column 'text'", "(1,000,000 characters)")),
    ("score: 100,000 duplicated column names", _score(",".join(f"c{i // 2}" for i in range(10**5)) + "\n"),
     ("duplicate column name(s) 'c0', 'c1',", "(50,000 in all)")),
    ("score: a duplicated column name of 1,000,000 characters", _score(f"text,{BIG},{BIG}\n1,x,y\n"),
     ("duplicate column name(s) 'xxx", "(1,000,000 characters)")),
    ("score --text-col of 1,000,000 characters", _score("id,text\n1,x\n", "--text-col", BIG),
     ("no column 'xxx", "(set --text-col)")),
    ("train --where of 1,000,000 characters", _train(DATA, "--where", BIG), ("--where expects COL=VALUE, got 'xxx",)),
    ("train --where a value of 1,000,000 characters", _train(DATA, "--where", "text=" + BIG),
     ("no rows with text == 'xxx", "(--where)")),
    ("train --teacher: no id column, 8 columns of 100,000 characters",
     _train(DATA, teacher=",".join(c * 100_000 for c in "abcdefgh") + "\n"), ("no 'id' column (columns: ['aaa",)),
    ("train --teacher: 100,000 class columns",
     _train(DATA, teacher="id," + ",".join(f"p_{i}" for i in range(10**5)) + "\n"),
     ("class columns do not match the classes", "(100,000 in all)")),
    ("train --teacher: a class column spelt two ways, 100,000 characters long",
     _train(DATA, teacher=f"id,p_0,p_{'0' * 100_000}1,p_1\n" + GOOD_SOFT.replace(",0.5\n", ",0,0.5\n")),
     ("one score spelt two ways", "(100,003 characters)")),
    ("train --teacher: ids of 100,000 characters missing from the teacher file",
     _train("id,text,label\n" + "".join(f"{LONG_ID}{i},{w} rock,{i % 2}\n" for i, w in enumerate(WORDS * 3)),
            teacher="id,p_0,p_1\n" + GOOD_SOFT), ("30 of 30 requested ids are not in the file", "'iii")),
    ("train --teacher: duplicate ids of 100,000 characters",
     _train("id,text,label\n" + "".join(f"{LONG_ID}{i % 15},{w} rock,{i % 2}\n" for i, w in enumerate(WORDS * 3)),
            teacher="id,p_0,p_1\n" + GOOD_SOFT), ("duplicate ids in 'id': 'iii",)),
    ("score --jobs 1: two files whose 100,001 columns differ", _dask_parts,
     ("b.csv: its columns differ from those of", "(100,001 in all)")),
    ("train: one score of 1,000,000 characters", _train("id,text,label\n" + f"1,acid,{BIG}\n2,rain,{BIG}\n"),
     ("a single score ('xxx", "(1,000,000 characters)")),
]


@pytest.mark.parametrize("what,command,needles", LONG, ids=[r[0] for r in LONG])
def test_an_error_quoting_user_data_of_any_size_is_one_short_line(tmp_path, capsys, model, what, command, needles):
    rc, _, err = run(capsys, *command(tmp_path, model))
    assert_user_error(rc, err, *needles)
    assert len(err.rstrip("\n").split("\n")[-1]) <= MAX_LINE, (len(err), err[:300])
    assert not (tmp_path / "s.csv").exists() and not (tmp_path / "m.npz").exists()


def test_shown_cuts_long_values_and_lists():
    shown, shown_list = csvfiles.shown, csvfiles.shown_list
    assert shown("text") == "'text'" and shown("text", quote=False) == "text" and shown(3) == "3"
    assert shown("x" * 1000) == "'" + "x" * 59 + "…' (1,000 characters)"
    assert shown_list(["a", "b"]) == "'a', 'b'" and shown_list([1, 2], quote=False) == "1, 2"
    assert shown_list(range(100), quote=False) == "0, 1, 2, 3, 4, 5, 6, 7, … (100 in all)"


# ============================================================================ classes spelt two ways
def _bundle(a, b):
    return lambda t: score_csv(Bundle({"A": _student(a), "B": _student(b)}, item_col="item"),
                               _write(t, "id,item,text\n1,A,acid rain\n2,B,marble\n"), str(t / "s.csv"))


#: (what, the call (a function of the folder), the error (a regular expression) or None: it works)
CLASSES = [
    ("fit: '1' and '1.0'", lambda t: _student(["1", "1.0", "2"]), r"model: labels '1', '1\.0' are one score spelt 2 ways"),
    ("fit: '1', '01' and '1.0'", lambda t: _student(["01", "1", "1.0"]), r"labels '01', '1', '1\.0' are one score"),
    ("fit: 'a' and ' a'", lambda t: _student(["a", " a", "b"]), r"labels ' a', 'a' are one score"),
    ("KDClassifier: '2' and '2.0'",
     lambda t: tinykd.KDClassifier(config=TINY["config"], epochs=1).fit(_texts(30), ["2", "2.0", "3"] * 10),
     r"labels '2', '2\.0' are one score"),
    ("score a bundle: 1 and '1'", _bundle([1, 2, 3], ["1", "3", "x"]), r"classes 1, '1' are one score spelt 2 ways.*p_1"),
    ("score a bundle: 1 and '1.0'", _bundle([1, 2], ["1.0", "2.0"]), r"classes 1, '1\.0' are one score"),
    ("write_soft_labels: 1 and '1'", lambda t: write_soft_labels(t / "w.csv", ["a"], [1, "1"], [[0.5, 0.5]]),
     r"classes 1, '1' are one score"),
    ("read_soft_labels: 1 and '1.0'", lambda t: read_soft_labels(t / "w.csv", ["a"], [1, "1.0"]),
     r"classes 1, '1\.0' are one score"),
    # different scores stay different classes
    ("fit: '01', '1' and 'x' (text labels)", lambda t: _student(["01", "1", "x"]), None),
    ("fit: 1, 2, 3", lambda t: _student([1, 2, 3]), None),
    ("score a bundle: 1, 2 and 2, 3", _bundle([1, 2], [2, 3]), None),
]


@pytest.mark.parametrize("what,call,error", CLASSES, ids=[r[0] for r in CLASSES])
def test_class_labels_spelt_two_ways_are_refused_naming_them(tmp_path, what, call, error):
    if error is None:
        call(tmp_path)
        return
    with pytest.raises(ValueError, match=error) as e:
        call(tmp_path)
    assert "\n" not in str(e.value)
    assert not os.path.exists(tmp_path / "s.csv") and not os.path.exists(tmp_path / "w.csv")


def test_check_classes_returns_the_column_keys():
    check_classes = csvfiles.check_classes
    assert check_classes([1, 2.0, "3"]) == ["1", "2", "3"]
    assert check_classes(["01", "1", "x"]) == ["01", "1", "x"]
    with pytest.raises(ValueError, match=r"item 'q1': labels 1, '1' are one score spelt 2 ways"):
        check_classes([1, "1"], "item 'q1': labels")
