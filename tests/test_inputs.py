"""Data files as a careless or hostile user gives them: a big file that is not UTF-8 (memory stays
flat), input from a pipe, a spreadsheet's empty columns at the end of the header, labels that
only look like numbers (``1_0``), and class labels a spreadsheet would run as formulas."""
import csv
import os
import subprocess
import sys
import threading
import tracemalloc

import numpy as np
import pytest

import tinykd
from tinykd.scoring.scorefile import score_csv
from tinykd.files.csvfiles import CsvReader, normalize_labels, read_table, sniff_encoding, spreadsheet_safe

from conftest import write_csv
from conftest import run_cli as run

WORDS = "acid rain dissolves marble rock water heat energy light plant".split()
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _rows(n=48, labels=("0", "1", "2")):
    rng = np.random.default_rng(0)
    return [{"id": f"r{i}", "text": " ".join(rng.choice(WORDS, 4 + i % 3)), "label": labels[i % len(labels)]}
            for i in range(n)]


def _fit(rows):
    st = tinykd.fit([r["text"] for r in rows], [r["label"] for r in rows], config=dict(embed_dim=8, units=8,
                    dense_units=8), epochs=1, verbose=False, validation=False)
    st.meta["columns"] = {"text": "text", "label": "label"}
    return st


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    p = d / "m.npz"
    _fit(_rows()).save(p)
    return str(p)


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
    (enc, note), peak = _peak(sniff_encoding, p)
    assert enc == encoding and "(byte 0xe9 at line 2)" in note
    assert peak < 4 * 2**20, f"peak {peak / 2**20:.1f} MiB for a 24 MiB file"  # the old check read it all: ~72 MiB

    def first_rows():
        with CsvReader(p) as r:
            return [fields for _, (_, fields) in zip(range(2), r.rows())]

    rows, peak = _peak(first_rows)
    assert rows[0] == ["r0", "café" if encoding == "cp1252" else "café \x81", "0"] and peak < 6 * 2**20


def test_score_reads_from_a_pipe(tmp_path, model):
    data = write_csv(tmp_path / "d.csv", _rows(10))
    out = tmp_path / "s.csv"
    with open(data, "rb") as f:
        r = subprocess.run([sys.executable, "-m", "tinykd.cli", "score", model, "/dev/stdin", "--out", str(out)],
                           input=f.read(), capture_output=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    assert [row["id"] for row in csv.DictReader(open(out))] == [f"r{i}" for i in range(10)]


def test_a_fifo_is_read_like_a_file(tmp_path):
    fifo = tmp_path / "in.csv"
    os.mkfifo(fifo)
    body = "id,text,label\n" + "".join(f"r{i},acid rain,{i % 2}\n" for i in range(5000))
    t = threading.Thread(target=lambda: fifo.write_text(body))
    t.start()
    table = read_table(fifo, ["text", "label"])
    t.join()
    assert len(table) == 5000 and table.rows[-1] == ["r4999", "acid rain", "1"]
    assert os.listdir(tmp_path) == ["in.csv"]  # the temporary copy is gone


def test_empty_columns_at_the_end_of_the_header_are_dropped(tmp_path, capsys, model):
    p = tmp_path / "d.csv"
    p.write_text("id,text,label,,,\n" + "".join(f"r{i},acid rain,1,,,\n" for i in range(3)) + "r3,water,0\n")
    rc, _, err = run(capsys, "score", model, p, "--out", tmp_path / "s.csv", "-q")
    assert rc == 0, err
    rows = list(csv.reader(open(tmp_path / "s.csv")))
    assert rows[0] == ["id", "text", "label", "pred", "p_0", "p_1", "p_2", "confidence", "needs_review"]
    assert [r[:3] for r in rows[1:]] == [["r0", "acid rain", "1"], ["r1", "acid rain", "1"],
                                         ["r2", "acid rain", "1"], ["r3", "water", "0"]]
    p.write_text("id,text,label,,\nr0,acid rain,1,,oops\n")  # a cell under an unnamed column is still an error
    rc, _, err = run(capsys, "score", model, p, "--out", tmp_path / "s2.csv")
    assert rc == 2 and "line 2 has 5 fields, the header has 3" in err


def test_only_plain_numbers_are_numbers():
    assert normalize_labels(["1", "1.0", "01", " 1 ", "+1", "1e0", "2"]) == ([1, 1, 1, 1, 1, 1, 2], "int")
    assert normalize_labels(["1_0", "2"]) == (["1_0", "2"], "str")  # float("1_0") is 10
    assert normalize_labels(["\u0663", "1"]) == (["\u0663", "1"], "str")  # an Arabic-Indic three
    assert normalize_labels(["0x10", "1"])[1] == "str"
    assert normalize_labels(["0.5", "-1", ".5"]) == ([0.5, -1.0, 0.5], "float")


def test_spreadsheet_safe_follows_the_csv_injection_guidance():
    for cell in ("=1+2", "+cmd", "-2+3", "@SUM(A1)", "\tx", "\rx", "=HYPERLINK(\"http://x\")"):
        assert spreadsheet_safe(cell) == "'" + cell
    for cell in ("-1", "+2", "-0.5", "1e3", "correct", "0", "a=b", "p_1"):
        assert spreadsheet_safe(cell) == cell
    assert spreadsheet_safe(-1) == "-1" and spreadsheet_safe(2.5) == "2.5"


def test_formula_labels_are_escaped_in_the_scored_file_and_numbers_are_not(tmp_path, capsys):
    labels = ("=1+2", "@SUM(A1)", "-x", "+y", "ok")
    data = write_csv(tmp_path / "d.csv", _rows(50, labels))
    st = _fit(_rows(50, labels))
    res = score_csv(st, data, tmp_path / "s.csv")
    assert res["n"] == 50
    rows = list(csv.DictReader(open(tmp_path / "s.csv")))
    preds = {r["pred"] for r in rows}
    assert preds and preds <= {"'=1+2", "'@SUM(A1)", "'-x", "'+y", "ok"}
    assert {r["label"] for r in rows} == set(labels)  # the input cells are written back as they were
    st.save(tmp_path / "m.npz")
    rc, _, err = run(capsys, "score", tmp_path / "m.npz", data, "--out", tmp_path / "s2.csv", "-q")
    assert rc == 0, err
    assert {r["pred"] for r in csv.DictReader(open(tmp_path / "s2.csv"))} <= {"'=1+2", "'@SUM(A1)", "'-x", "'+y", "ok"}
    numeric = _rows(48, ("-1", "0", "1"))
    write_csv(tmp_path / "n.csv", numeric)
    score_csv(_fit(numeric), tmp_path / "n.csv", tmp_path / "sn.csv")
    rows = list(csv.DictReader(open(tmp_path / "sn.csv")))
    assert {r["pred"] for r in rows} <= {"-1", "0", "1"} and "p_-1" in rows[0]
