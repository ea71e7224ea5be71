"""Issue 32's defects of ``tinykd score`` on Dask (``--jobs`` / ``--dask``, a folder, a glob or Parquet), as
tables of one kind each:

* ``PATHS``: inputs and ``--out`` that one process and Dask refuse alike, with one check
  (``tinykd.scoring.scorefile.check_score_paths``), in one line, exit 2, before any Dask work (a cluster
  that starts fails the row) and with the folder left as it was;
* ``BAD_PARTS``: a part that cannot be read or scored (a ragged CSV row, Parquet files of other columns or
  types, a damaged Parquet file): one line naming the file, nothing else on stderr (no worker traceback),
  no output and no temporary folder;
* ``SIGNALS``: SIGTERM / SIGHUP while the parts are scored: exit 128 + the signal, one line, no
  ``..tmp-<hex>`` folder of parts left;

and a CSV part is streamed: its worker's memory stays flat for any file size.

The cluster is one LocalCluster of this process's threads (tcp, so that a ``tinykd`` subprocess can use it).
"""
import csv
import logging
import os
import signal
import subprocess
import sys
import time
import tracemalloc

import pytest

pytest.importorskip("distributed")
pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

import tinykd  # noqa: E402
import tinykd.cli.commands  # noqa: E402
import tinykd.cluster.tasks as tkd  # noqa: E402
from conftest import assert_user_error, run_cli, scientsbank_rows, write_csv  # noqa: E402
from test_bad_input import folder_state  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADER = ["id", "text", "label"]


@pytest.fixture(scope="module")
def cluster():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp", dashboard_address=None) \
            as c, Client(c) as client:
        yield c, client


@pytest.fixture(scope="module")
def rows():
    return [{k: r[k] for k in HEADER} for r in scientsbank_rows()[:400]]


@pytest.fixture(scope="module")
def model(rows, tmp_path_factory):
    st = tinykd.fit([r["text"] for r in rows], [r["label"] for r in rows], config=dict(embed_dim=8, units=8,
                    dense_units=8), epochs=1, verbose=False, validation=False)
    st.meta["columns"] = {"text": "text", "label": "label"}
    path = tmp_path_factory.mktemp("rd") / "m.npz"
    st.save(path)
    return str(path)


class Ctx:
    """What a row builds in the test's folder: ``data/a.csv``, ``data/b.csv`` (rows of the bundled answers),
    the model's path ``m``."""

    def __init__(self, tmp, rows, model):
        self.tmp, self.m = tmp, model
        (tmp / "data").mkdir()
        self.a = write_csv(tmp / "data" / "a.csv", rows[:20])
        self.b = write_csv(tmp / "data" / "b.csv", rows[20:40])
        self.data = str(tmp / "data")

    def p(self, name):
        return str(self.tmp / name)

    def link(self, name, target):
        os.symlink(target, self.tmp / name)
        return self.p(name)

    def hard_link(self, name, target):
        os.link(target, self.tmp / name)
        return self.p(name)

    def folder(self, name, *files):
        (self.tmp / name).mkdir()
        for f in files:
            (self.tmp / name / f).write_text("keep me\n")
        return self.p(name)

    def file(self, name, mode=0o644):
        (self.tmp / name).write_text("keep me\n")
        os.chmod(self.tmp / name, mode)
        return self.p(name)

    def fifo(self, name):
        os.mkfifo(self.tmp / name)
        return self.p(name)

    def parquet(self, name):
        pd.read_csv(self.a, dtype=str).to_parquet(self.tmp / name)
        return self.p(name)


def _score(data, out, *more, jobs=True):
    return lambda c: ["score", c.m, data(c), "--out", out(c), *(["--jobs", "1"] if jobs else []), *more]


DASK = ["--dask", "tcp://127.0.0.1:9"]  # (never reached: the row is refused before any client starts)

#: (what, the command line (a function of a Ctx), fragments of the one error line)
PATHS = [
    # --- defect 1: --out is an input (or the model), on the Dask path as on the single-process one
    ("--jobs 1 --out the input", _score(lambda c: c.a, lambda c: c.a), ("--out", "a.csv is an input file",)),
    ("--dask --out the input", _score(lambda c: c.a, lambda c: c.a, *DASK, jobs=False), ("is an input file",)),
    ("--jobs 1 --out the input spelt another way", _score(lambda c: c.a, lambda c: c.data + "/../data/./a.csv"),
     ("is an input file",)),
    ("--jobs 1 --out a hard link to the input", _score(lambda c: c.a, lambda c: c.hard_link("h.csv", c.a)),
     ("h.csv is an input file",)),
    ("one process: --out a hard link to the input", _score(lambda c: c.a, lambda c: c.hard_link("h.csv", c.a),
                                                           jobs=False), ("h.csv is an input file",)),
    ("a folder in, --out one of its files", _score(lambda c: c.data, lambda c: c.b, jobs=False),
     ("b.csv is an input file",)),
    ("a glob in, --out one of its files", _score(lambda c: c.data + "/*.csv", lambda c: c.a, jobs=False),
     ("a.csv is an input file",)),
    ("--jobs 1 --out the model", _score(lambda c: c.a, lambda c: c.m), ("m.npz is an input file",)),
    # --- defect 20: outputs checked before any work (was: after the whole job)
    ("--jobs 1 --out a symbolic link x.csv", _score(lambda c: c.a, lambda c: c.link("x.csv", c.b)),
     ("x.csv: it is a symbolic link (to",)),
    ("--jobs 1 --out a dangling link x.csv", _score(lambda c: c.a, lambda c: c.link("x.csv", c.p("nowhere.csv"))),
     ("it is a symbolic link",)),
    ("--jobs 1 --out a link to an empty folder", _score(lambda c: c.a, lambda c: c.link("o", c.folder("empty"))),
     ("it is a symbolic link",)),
    ("--jobs 1 --out a FIFO x.csv", _score(lambda c: c.a, lambda c: c.fifo("x.csv")), ("is a FIFO (named pipe)",)),
    ("--jobs 1 --out a device", _score(lambda c: c.a, lambda c: "/dev/null"), ("/dev/null", "is a device")),
    ("--jobs 1 --out a read-only x.csv", _score(lambda c: c.a, lambda c: c.file("x.csv", 0o444)), ("read-only",)),
    ("--jobs 1 --out a folder that is not empty", _score(lambda c: c.a, lambda c: c.folder("o", "old.csv")),
     ("exists and is not an empty folder",)),
    ("--jobs 1 --out a file not named .csv", _score(lambda c: c.a, lambda c: c.file("b.txt")),
     ("b.txt: exists and is not an empty folder",)),
    ("--jobs 1 --out in a missing folder", _score(lambda c: c.a, lambda c: c.p("no/parts")), ("does not exist",)),
    ("--jobs 1 --out x.csv for Parquet", _score(lambda c: c.parquet("a.parquet"), lambda c: c.p("x.csv")),
     ("Parquet input is written as a folder of Parquet parts",)),
    ("--jobs 1 a missing input", _score(lambda c: c.p("none.csv"), lambda c: c.p("o")), ("none.csv: no such file",)),
    ("--jobs 1 a folder with no data files", _score(lambda c: c.folder("e", "x.txt"), lambda c: c.p("o")),
     ("is a folder with no .csv or .parquet files",)),
]


@pytest.mark.parametrize("what,command,needles", PATHS, ids=[r[0] for r in PATHS])
def test_paths_are_refused_before_any_work_in_one_line(tmp_path, capsys, monkeypatch, rows, model, what, command,
                                                       needles):
    def no_cluster(*a, **k):
        raise AssertionError("a Dask client was started before the paths were checked")

    monkeypatch.setattr(tkd, "connect", no_cluster)
    args = command(Ctx(tmp_path, rows, model))
    before = folder_state(tmp_path)
    rc, _, err = run_cli(capsys, *args, "-q")
    assert_user_error(rc, err, *needles)
    assert err.count("\n") == 1, err
    assert folder_state(tmp_path) == before


# ============================================================================ bad parts (defects 3 and 17)
def _csvs(a_rows, b_text):
    """data/a.csv of ``a_rows``, and data/b.csv of the text ``b_text``."""
    def make(c):
        write_csv(c.tmp / "in" / "a.csv", a_rows(c))
        (c.tmp / "in" / "b.csv").write_bytes(b_text if isinstance(b_text, bytes) else b_text.encode())
        return str(c.tmp / "in")
    return make


def _parquets(change_b, damage=None, change_a=lambda d: d):
    """in/a.parquet and in/b.parquet of the bundled rows, ``change_a`` / ``change_b`` applied to their frames,
    then ``damage`` to b's bytes."""
    def make(c):
        df = pd.DataFrame(c.rows[:60])
        change_a(df.iloc[:30].copy()).to_parquet(c.tmp / "in" / "a.parquet")
        change_b(df.iloc[30:].copy()).to_parquet(c.tmp / "in" / "b.parquet")
        if damage:
            p = c.tmp / "in" / "b.parquet"
            p.write_bytes(damage(p.read_bytes()))
        return str(c.tmp / "in")
    return make


def _garble_pages(data):
    """Bytes 100 to 300 of the file flipped: the footer is intact, the data pages are not."""
    return data[:100] + bytes(b ^ 0x5A for b in data[100:300]) + data[300:]


def _no_text(df):
    return df.rename(columns={"text": "answer"})


def _wide(c):
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = 30_000
    table = pa.Table.from_arrays([pa.array(["acid rain"])] + [pa.array([1], pa.int8())] * n,
                                 names=["text"] + [f"c{i}" for i in range(n)])
    pq.write_table(table, c.tmp / "in" / "wide.parquet", compression="none", write_statistics=False)
    return str(c.tmp / "in")


_LINES = "id,text,label\n1,acid rain,1\n"

#: (what, the input folder (a function of a Ctx), fragments of the one error line)
BAD_PARTS = [
    ("CSV: a ragged row in the second file", _csvs(lambda c: c.rows[:30], _LINES + "2,rock,x,y,z\n"),
     ("b.csv: line 3 has 5 fields, the header has 3",)),
    ("CSV: another header", _csvs(lambda c: c.rows[:30], "id,text,score\n1,acid rain,1\n"),
     ("b.csv: its columns differ from those of", "a.csv")),
    ("CSV: a binary file", _csvs(lambda c: c.rows[:30], b"id,text\n\x00\x01\x02"), ("b.csv: holds NUL bytes",)),
    ("CSV: already scored", _csvs(lambda c: [dict(r, pred="1") for r in c.rows[:30]], "id,text,label,pred\n"),
     ("a.csv already has column(s) pred",)),
    ("Parquet: an extra column", _parquets(lambda d: d.assign(extra="x")),
     ("b.parquet: its columns differ from those of", "a.parquet", "it has 'extra'", "one schema")),
    ("Parquet: a column less", _parquets(lambda d: d.drop(columns=["label"])), ("b.parquet", "it lacks 'label'")),
    ("Parquet: a column of another type", _parquets(lambda d: d.assign(id=range(len(d)))),
     ("b.parquet", "'id' is int64 here")),
    ("Parquet: the columns in another order", _parquets(lambda d: d[["text", "id", "label"]]),
     ("b.parquet", "in another order")),
    ("Parquet: no text column", _parquets(_no_text, change_a=_no_text),
     ("a.parquet: no column 'text' (set --text-col)", "id, answer, label")),
    ("Parquet: a footer over 4 MiB (30,000 columns)", _wide, ("wide.parquet: its Parquet footer is",
                                                              "over the 4 MiB tinykd reads")),
    ("Parquet: not a Parquet file", _parquets(lambda d: d, lambda b: b"id,text\n1,acid\n"),
     ("b.parquet: not a Parquet file, or a damaged one",)),
    ("Parquet: truncated", _parquets(lambda d: d, lambda b: b[:len(b) // 2]),
     ("b.parquet: not a Parquet file, or a damaged one",)),
    ("Parquet: damaged data pages (the footer intact)", _parquets(lambda d: d, _garble_pages),
     ("b.parquet: cannot read it as Parquet",)),
]


class PartsCtx:
    def __init__(self, tmp, rows):
        self.tmp, self.rows = tmp, rows
        (tmp / "in").mkdir()


@pytest.mark.parametrize("what,data,needles", BAD_PARTS, ids=[r[0] for r in BAD_PARTS])
def test_a_bad_part_is_one_line_naming_its_file_and_nothing_else(tmp_path, capfd, caplog, cluster, rows, model, what,
                                                                 data, needles):
    folder = data(PartsCtx(tmp_path, rows))
    before = folder_state(tmp_path)
    for out in ("parts", "one.csv") if what.startswith("CSV") else ("parts",):
        caplog.clear()
        rc = tinykd.cli.commands.main(["score", model, folder, "--dask", cluster[0].scheduler_address, "--out",
                                       str(tmp_path / out), "-q"])
        err = capfd.readouterr().err
        assert_user_error(rc, err, *needles)
        assert err.count("\n") == 1, err  # nothing before it
        # no worker's error log ("Compute Failed" and its traceback: what a worker process prints to stderr)
        assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
        assert folder_state(tmp_path) == before  # no output, no temporary folder of parts


# ============================================================================ signals (defect 9)
def _wait_idle(client, timeout=60):
    """Until the cluster runs no task (a task of a stopped client runs to its end)."""
    t0 = time.monotonic()
    while any(client.processing().values()) and time.monotonic() - t0 < timeout:
        time.sleep(0.1)


#: (signal, --out, more options): a folder of parts or one CSV, on the module's cluster or a --jobs 1 one
SIGNALS = [("SIGTERM", "parts", ()), ("SIGHUP", "one.csv", ()), ("SIGTERM", "jobs.csv", ("--jobs", "1"))]


@pytest.mark.parametrize("name,out,more", SIGNALS, ids=[f"{s[0]} {s[1]}" for s in SIGNALS])
def test_a_signal_while_parts_are_scored_leaves_nothing_and_says_so(tmp_path, cluster, rows, model, name, out, more):
    folder = tmp_path / "in"
    folder.mkdir()
    for k in range(12):
        write_csv(folder / f"f{k:02d}.csv", rows * 12)
    where = list(more) or ["--dask", cluster[0].scheduler_address]
    before = folder_state(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "tinykd.cli", "score", model, str(folder), "--out",
                             str(tmp_path / out), *where], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = []
    for line in proc.stderr:  # the first part is done: the others are being scored
        lines.append(line)
        if line.startswith("scored 1 of 12 parts"):
            break
    signum = getattr(signal, name)
    proc.send_signal(signum)
    _, rest = proc.communicate(timeout=120)
    err = "".join(lines) + rest
    assert proc.returncode == 128 + signum, err
    last = err.rstrip("\n").split("\n")[-1]
    assert last == f"tinykd: stopped by {name}; nothing was written (any earlier file at --out is untouched)", err
    assert all(line.startswith("scored ") for line in err.rstrip("\n").split("\n")[:-1]), err  # no traceback, no log
    _wait_idle(cluster[1])
    assert folder_state(tmp_path) == before  # no ..tmp-<hex> folder of parts, no output


# ============================================================================ memory (defect 8)
def test_a_csv_part_is_streamed_with_flat_memory(tmp_path, cluster, rows, model):
    """A 10 MB CSV part scored on a worker (a thread of this process, so tracemalloc sees it) peaks at under half
    the file's size (it was read whole into a DataFrame: several times the file). Answers of 1 KB, in chunks of
    100 rows, keep the traced run short."""
    big = tmp_path / "big.csv"
    with open(big, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, HEADER)
        w.writeheader()
        while f.tell() < 10_000_000:
            w.writerows(dict(r, text=r["text"] + " " + "x" * 1000) for r in rows)
    small = write_csv(tmp_path / "small.csv", rows)
    addr = ["--dask", cluster[0].scheduler_address, "-q", "--chunk-size", "100"]
    assert tinykd.cli.commands.main(["score", model, small, "--out", str(tmp_path / "warm"), *addr]) == 0
    tracemalloc.start()
    try:
        rc = tinykd.cli.commands.main(["score", model, str(big), "--out", str(tmp_path / "parts"), *addr])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rc == 0
    with open(big, newline="", encoding="utf-8") as f:
        n = sum(1 for _ in csv.reader(f)) - 1
    with open(tmp_path / "parts" / "part-00000.csv", newline="", encoding="utf-8") as f:
        assert sum(1 for _ in csv.reader(f)) - 1 == n  # every row scored
    assert peak < os.path.getsize(big) / 2, (peak, os.path.getsize(big))
