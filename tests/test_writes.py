"""The writer (tinykd.files.atomic) as a careless or hostile user meets it: an output that is a link,
a device or a FIFO is refused and left as it is; an existing file keeps its mode; a read-only
file is refused; the umask is never touched; SIGTERM / SIGHUP while writing leave no
temporary file behind."""
import os
import signal
import stat
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import tinykd
from tinykd.files.atomic import AtomicFile, OutputPathError, atomic_write_bytes

from conftest import assert_user_error, write_csv
from conftest import run_cli as run

WORDS = "acid rain dissolves marble rock water heat energy light plant".split()


def _rows(n=60):
    rng = np.random.default_rng(0)
    return [{"id": f"r{i}", "text": " ".join(rng.choice(WORDS, 4 + i % 3)), "label": str(i % 3)} for i in range(n)]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp("writes")
    rows = _rows()
    st = tinykd.fit([r["text"] for r in rows], [int(r["label"]) for r in rows],
                    config=dict(embed_dim=8, units=8, dense_units=8), epochs=1, verbose=False, validation=False)
    st.meta["columns"] = {"text": "text", "label": "label"}
    p = d / "m.npz"
    st.save(p)
    return st, str(p), write_csv(d / "d.csv", rows)


def _umask():
    with open("/proc/self/status") as f:  # read, never set
        return int(next(line for line in f if line.startswith("Umask:")).split()[1], 8)


def test_symlink_output_is_refused_and_left_alone(tmp_path, capsys, model):
    st, m, data = model
    target = tmp_path / "target.csv"
    target.write_text("the old results\n")
    link = tmp_path / "link.csv"
    link.symlink_to(target)
    rc, _, err = run(capsys, "score", m, data, "--out", link)
    assert_user_error(rc, err, "is a symbolic link (to", "give the file's own path")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == "the old results\n"
    with pytest.raises(OutputPathError, match="symbolic link"):
        st.save(tmp_path / "link.csv")
    dangling = tmp_path / "dangling.npz"
    dangling.symlink_to(tmp_path / "nowhere.npz")
    with pytest.raises(OutputPathError, match="symbolic link"):
        st.save(dangling)
    assert not (tmp_path / "nowhere.npz").exists()
    assert sorted(os.listdir(tmp_path)) == ["dangling.npz", "link.csv", "target.csv"]


def test_fifo_and_device_outputs_are_refused(tmp_path, capsys, model):
    _, m, data = model
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    rc, _, err = run(capsys, "score", m, data, "--out", fifo)
    assert_user_error(rc, err, "is a FIFO (named pipe)", "only a regular file is replaced")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    rc, _, err = run(capsys, "score", m, data, "--out", "/dev/null")
    assert_user_error(rc, err, "cannot write /dev/null: it is a device")
    assert stat.S_ISCHR(os.lstat("/dev/null").st_mode)
    with pytest.raises(OutputPathError, match="it is a device"):
        atomic_write_bytes("/dev/null", b"x")
    assert sorted(os.listdir(tmp_path)) == ["fifo.csv"]


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o604], ids=oct)
def test_an_existing_file_keeps_its_mode(tmp_path, capsys, model, mode):
    st, m, data = model
    out = tmp_path / "s.csv"
    out.write_text("old\n")
    os.chmod(out, mode)
    rc, _, err = run(capsys, "score", m, data, "--out", out, "-q")
    assert rc == 0, err
    assert stat.S_IMODE(os.stat(out).st_mode) == mode and out.read_text().startswith("id,text,label,pred")
    model_out = tmp_path / "m.npz"
    model_out.write_bytes(b"old")
    os.chmod(model_out, mode)
    st.save(model_out)
    assert stat.S_IMODE(os.stat(model_out).st_mode) == mode and tinykd.load(model_out).classes == [0, 1, 2]


def test_a_read_only_file_is_refused(tmp_path, capsys, model):
    st, m, data = model
    out = tmp_path / "s.csv"
    out.write_text("keep me\n")
    os.chmod(out, 0o444)
    rc, _, err = run(capsys, "score", m, data, "--out", out)
    assert_user_error(rc, err, "the file is read-only")
    assert out.read_text() == "keep me\n" and stat.S_IMODE(os.stat(out).st_mode) == 0o444
    with pytest.raises(OutputPathError, match="read-only"):
        st.save(out)
    assert sorted(os.listdir(tmp_path)) == ["s.csv"]


def test_new_files_get_the_umask_mode_without_touching_the_umask(tmp_path, model, monkeypatch):
    st, _, _ = model
    mask = _umask()

    def no_umask(*a):
        raise AssertionError("os.umask called: other threads would create world-writable files meanwhile")

    monkeypatch.setattr(os, "umask", no_umask)
    st.save(tmp_path / "m.npz")
    with AtomicFile(tmp_path / "t.txt", "w") as f:
        f.write("x")
    for name in ("m.npz", "t.txt"):
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o666 & ~mask


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
    _, m, data = model
    out = tmp_path / "out.csv"
    out.write_text("the previous file\n")
    args = ["score", m, data] if cmd == "score" else ["augment", data, "--n", "2"]
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(_KILL_MID_WRITE.format(sig=sig)), *args,
                        "--out", str(out), "--chunk-size" if cmd == "score" else "--seed", "10" if cmd == "score"
                        else "0"], capture_output=True, text=True, timeout=300,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
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
