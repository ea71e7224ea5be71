"""Reliability of tinykd distill's work folder and teacher process (issue 32, defects 4, 13–16, 19, 20's
``--work FILE``): tables of cases of one kind each, as in tests/test_bad_input.py.

Most tests run the real pipeline with a fake teacher: a ``teacher_export`` package put first on the
teacher process's ``PYTHONPATH`` (:func:`fake_teacher`), which answers ``python -m teacher_export job
FILE.json`` in milliseconds — it writes soft labels the way the real one does, or fails, sleeps or dies
as the test asks (``FAKE_TEACHER``). tinykd's own code is not patched. The cases that need the real
teacher (torch) are marked slow."""
import csv
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import tinykd
import tinykd.distill.pipeline as D
import tinykd.distill.rows as R
from tinykd.distill.stages import MARKER, StageCache

from conftest import FILLER, WORDS, assert_user_error, run_cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: the fake teacher: ``python -m teacher_export job FILE.json`` as the real one answers it, in milliseconds
FAKE_MAIN = textwrap.dedent(r'''
    import csv, errno, importlib.util, json, os, signal, sys, time

    spec = importlib.util.spec_from_file_location("real_teacher_cli", os.environ["REAL_TEACHER_CLI"])
    real = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(real)
    getattr(real, "end_with_parent", lambda: None)()  # what the real teacher does first
    from tinykd.files.softlabels import write_soft_labels

    mode = os.environ.get("FAKE_TEACHER", "ok")
    job_path = sys.argv[2]
    job = json.load(open(job_path, encoding="utf-8"))
    print(f"fake teacher: {job['command']} {job.get('teacher', '')}", file=sys.stderr, flush=True)
    if mode == "sleep":  # a long fine-tuning that writes nothing for a while
        with open(os.environ["FAKE_TEACHER_PID"], "w") as f:
            f.write(str(os.getpid()))
        time.sleep(120)
        sys.exit(0)
    if mode == "enospc":  # a full disk while saving, as torch raises it (a traceback, exit 1)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.path.join(job["out"], "model.safetensors"))
    if mode == "crash":
        raise RuntimeError("boom in the fine-tuning loop")
    if mode == "killed":  # the out-of-memory killer
        os.kill(os.getpid(), signal.SIGKILL)
    if mode == "error":
        print("tinykd-teacher: error: rows.csv: no column 'text'", file=sys.stderr)
        sys.exit(2)
    if mode == "huge":  # a 3 MB error line without a line break
        print("tinykd-teacher: error: " + "x" * 3_000_000, file=sys.stderr)
        sys.exit(2)

    rows = list(csv.DictReader(open(job["data"], encoding="utf-8", newline="")))
    for w in job.get("where", []):
        k, v = w.split("=", 1)
        rows = [r for r in rows if r[k] == v]
    if job["command"] == "fit":
        classes = sorted({r["label"] for r in rows if r["role"] == "train" and r["label"]})
        teacher = os.path.join(job["out"], job["name"] + "-teacher")
        os.makedirs(teacher, exist_ok=True)
        with open(os.path.join(teacher, "teacher.json"), "w") as f:
            json.dump({"classes": classes}, f)
        with open(os.path.join(teacher, "model.safetensors"), "wb") as f:
            f.write(b"weights" * 100)
    else:
        teacher = job["teacher"]
        if not os.path.exists(os.path.join(teacher, "teacher.json")):
            print(f"tinykd-teacher: error: {teacher} is not a teacher folder written by 'fit' (no teacher.json)",
                  file=sys.stderr)
            sys.exit(2)
        classes = json.load(open(os.path.join(teacher, "teacher.json")))["classes"]
    proba = []
    for r in rows:  # sure of the true label where there is one, else of a class the text's length picks
        k = classes.index(r["label"]) if r.get("label") in classes else len(r["text"]) % len(classes)
        proba.append([0.8 if j == k else 0.2 / (len(classes) - 1) for j in range(len(classes))])
    write_soft_labels(os.path.join(job["out"], job["name"] + ".csv"), [r["id"] for r in rows], classes, proba,
                      meta={"teacher": os.path.abspath(teacher)})
''')


@pytest.fixture(scope="session")
def fake_teacher_path(tmp_path_factory):
    """A folder holding the fake ``teacher_export`` package (put it first on the teacher's PYTHONPATH)."""
    folder = tmp_path_factory.mktemp("fake-teacher")
    pkg = folder / "teacher_export"
    pkg.mkdir()
    (pkg / "__init__.py").write_text('__version__ = "fake"\n')
    (pkg / "__main__.py").write_text(FAKE_MAIN)
    return str(folder)


def _fake_env(fake_teacher_path, mode="ok", **more):
    path = [fake_teacher_path] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {"PYTHONPATH": os.pathsep.join(path), "FAKE_TEACHER": mode,
            "REAL_TEACHER_CLI": os.path.join(REPO, "teacher_export", "cli.py"), **more}


@pytest.fixture
def fake_teacher(monkeypatch, tmp_path, fake_teacher_path):
    """``fake_teacher(mode)``: the teacher processes this test starts are the fake one, in ``mode``
    (run from ``tmp_path``: ``python -m`` looks in the current folder first)."""
    monkeypatch.chdir(tmp_path)

    def use(mode="ok", **more):
        for k, v in _fake_env(fake_teacher_path, mode, **more).items():
            monkeypatch.setenv(k, v)

    use()
    return use


def make_csv(path, n=48, seed=0, extra="", prefix="r"):
    """Synthetic answers of three classes (train / val / test); ``extra`` changes every text, ``prefix``
    every id."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        lab = str(i % 3)
        words = list(rng.choice(WORDS[lab], 3)) + list(rng.choice(FILLER, 3))
        split = "train" if i % 10 < 6 else ("val" if i % 10 < 8 else "test")
        rows.append({"id": f"{prefix}{i:03d}", "split": split, "text": " ".join(words) + extra, "label": lab})
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return str(path)


#: the students' quickest recipe (the tests here are about the work folder, not the students)
QUICK = dict(copies=1, lams=(1.0,), epochs=1, patience=1, preset="falling_weights", verbose=False,
             teacher_aliases=None)
QUICK_CLI = ["--copies", "1", "--lam", "1", "--epochs", "1", "--patience", "1", "--preset", "falling_weights",
             "--teacher-aliases", "none"]  # no vectors stage: the fake teacher has none


def _rows_folders(work):
    """``{rows folder name: the ids and texts of its rows.csv}`` of a work folder."""
    out = {}
    for name in sorted(os.listdir(work)):
        if name.startswith("rows-"):
            with open(os.path.join(work, name, "rows.csv"), encoding="utf-8", newline="") as f:
                out[name] = [(r["id"], r["text"]) for r in csv.DictReader(f)]
    return out


# ------------------------------------------------------------ defect 4: hash what was read
def _replace(path, new):
    tmp = path + ".new"
    shutil.copyfile(new, tmp)
    os.replace(tmp, path)


def _rewrite(path, new):
    shutil.copyfile(new, path)  # in place: the same file, truncated and written again


def _append(path, new):
    more = make_csv(new + ".more", prefix="s")
    with open(path, "ab") as f, open(more, "rb") as g:
        f.write(g.read().split(b"\n", 1)[1])  # more rows, of new ids


#: (case, what happens to the data file while distill reads it)
CHANGED_DURING_THE_READ = [
    ("replaced by another file (rename)", _replace),
    ("rewritten in place (cp new.csv data.csv)", _rewrite),
    ("appended to", _append),
    ("removed", lambda path, new: os.remove(path)),
]


@pytest.mark.parametrize("case, change", CHANGED_DURING_THE_READ, ids=[c[0] for c in CHANGED_DURING_THE_READ])
def test_the_rows_stage_is_keyed_by_the_bytes_it_read(tmp_path, monkeypatch, fake_teacher, case, change):
    """The rows stage of a file changed while it is read is the stage of the bytes read (the same
    folder and rows as a run on those bytes alone), and a later run on the new file reads the new rows."""
    fake_teacher("error")  # the run stops at the teacher: the rows stage is what is checked
    old, new = make_csv(tmp_path / "old.csv"), make_csv(tmp_path / "new.csv", extra=" changed")
    data = str(tmp_path / "data.csv")
    shutil.copyfile(old, data)
    with pytest.raises(RuntimeError, match="teacher"):
        D.distill(old, tmp_path / "ref.npz", work=str(tmp_path / "ref"), **QUICK)
    real = R.read_table

    def read_then_change(*args, **kw):
        table = real(*args, **kw)
        change(data, new)
        return table

    monkeypatch.setattr(R, "read_table", read_then_change)
    with pytest.raises(RuntimeError, match="teacher"):
        D.distill(data, tmp_path / "m.npz", work=str(tmp_path / "w"), **QUICK)
    assert _rows_folders(tmp_path / "w") == _rows_folders(tmp_path / "ref")  # the old bytes' key and rows
    monkeypatch.setattr(R, "read_table", real)
    if os.path.exists(data):  # a later run reads the new rows, under the new bytes' key
        with pytest.raises(RuntimeError, match="teacher"):
            D.distill(data, tmp_path / "m.npz", work=str(tmp_path / "w"), **QUICK)
        shutil.copyfile(data, tmp_path / "now.csv")
        with pytest.raises(RuntimeError, match="teacher"):
            D.distill(str(tmp_path / "now.csv"), tmp_path / "m2.npz", work=str(tmp_path / "ref2"), **QUICK)
        assert _rows_folders(tmp_path / "w") == {**_rows_folders(tmp_path / "ref"), **_rows_folders(tmp_path / "ref2")}
        assert len(_rows_folders(tmp_path / "w")) == 2


def test_data_from_a_pipe_is_keyed_by_the_rows_piped(tmp_path, fake_teacher_path):
    """``tinykd distill /dev/stdin`` twice with different rows: two rows stages, each of its own rows
    (the second run does not reuse the first's rows)."""
    env = {**os.environ, **_fake_env(fake_teacher_path, "error")}
    code = "import sys; from tinykd.cli.commands import main; sys.exit(main(sys.argv[1:]))"
    errors = []
    for k, extra in enumerate(("", " piped again")):
        data = make_csv(tmp_path / f"d{k}.csv", extra=extra)
        with open(data, "rb") as f:  # a pipe, not the file: /dev/stdin cannot be opened again
            r = subprocess.run([sys.executable, "-c", code, "distill", "/dev/stdin", "--out", str(tmp_path / "m.npz"),
                                "--work", str(tmp_path / "w"), *QUICK_CLI], input=f.read(), capture_output=True,
                               env=env, timeout=120, cwd=tmp_path)
        errors.append((r.returncode, r.stderr.decode()))
    folders = _rows_folders(tmp_path / "w")
    piped_again = sorted(rows[0][1].endswith("piped again") for rows in folders.values())
    assert len(folders) == 2 and piped_again == [False, True]
    for rc, err in errors:  # each stopped at the (failing) teacher, after its rows stage
        assert_user_error(rc, err, "the teacher failed")


# ------------------------------------------------------------ defect 13: a failing teacher is one line
#: (case, the fake teacher's mode, what the one line says)
TEACHER_FAILURES = [
    ("disk full while the teacher saves (its traceback)", "enospc",
     ("the teacher failed", "No space left on device", "free disk space")),
    ("the teacher crashes (a traceback)", "crash", ("the teacher failed", "RuntimeError: boom", "--debug")),
    ("the teacher is killed (out of memory)", "killed", ("the teacher was stopped by SIGKILL", "out of memory")),
    ("the teacher's own one-line error", "error", ("the teacher failed", "rows.csv: no column 'text'")),
    ("a 3 MB error line", "huge", ("the teacher failed", "xxxxx…;")),
]


@pytest.mark.parametrize("case, mode, needles", TEACHER_FAILURES, ids=[c[0] for c in TEACHER_FAILURES])
def test_a_failing_teacher_is_one_line_exit_2(tmp_path, capsys, fake_teacher, case, mode, needles):
    """Exit 2 and one line saying what failed and what to do: never the teacher's traceback relayed,
    never an internal error; nothing at --out, the teacher's stage not marked finished."""
    fake_teacher(mode)
    data, out, work = make_csv(tmp_path / "d.csv"), tmp_path / "m.npz", tmp_path / "w"
    rc, _, err = run_cli(capsys, "distill", data, "--out", out, "--work", work, *QUICK_CLI)
    assert_user_error(rc, err, *needles)
    assert "Traceback" not in err and '  File "' not in err and len(err.splitlines()[-1]) < 1000
    assert not out.exists() and not list(work.glob(f"teacher-*/{MARKER}"))


@pytest.mark.slow  # the real teacher (torch)
def test_a_given_teacher_without_its_weights_is_one_line(tmp_path, capsys, tiny_base):
    """``--teacher-dir`` of a fine-tuned teacher whose weights were deleted: the real teacher fails,
    tinykd says so in one line naming the folder."""
    given = tmp_path / "teacher"
    shutil.copytree(tiny_base, given)
    (given / "teacher.json").write_text(json.dumps({"classes": ["0", "1", "2"], "max_length": 32}))
    for f in given.glob("*.safetensors"):
        f.unlink()
    data = make_csv(tmp_path / "d.csv")
    rc, _, err = run_cli(capsys, "distill", data, "--out", tmp_path / "m.npz", "--teacher-dir", given, *QUICK_CLI)
    assert_user_error(rc, err, "the teacher failed", str(given))
    assert "Traceback" not in err and not (tmp_path / "m.npz").exists()


# ------------------------------------------------------------ defect 15: the teacher ends with the run
def _alive(pid):
    """Whether process ``pid`` runs (a zombie, ended but not yet reaped, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _wait_for(test, seconds=30.0):
    end = time.monotonic() + seconds
    while not test() and time.monotonic() < end:
        time.sleep(0.05)
    return test()


RUN_CLI = "import sys; from tinykd.cli.commands import main; sys.exit(main(sys.argv[1:]))"


def _start_distill(tmp_path, fake_teacher_path, work, out):
    """A single-process ``tinykd distill`` whose (fake) teacher sleeps; returns it and its teacher's pid."""
    pid_file = tmp_path / f"teacher-{out.name}.pid"
    env = {**os.environ, **_fake_env(fake_teacher_path, "sleep", FAKE_TEACHER_PID=str(pid_file))}
    data = make_csv(tmp_path / "d.csv")
    p = subprocess.Popen([sys.executable, "-c", RUN_CLI, "distill", data, "--out", str(out), "--work", str(work),
                          *QUICK_CLI], env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if not _wait_for(lambda: pid_file.exists() and pid_file.read_text(), 60):
        p.kill()
        pytest.fail(f"the teacher did not start: {p.communicate()}")
    return p, int(pid_file.read_text())


#: (signal sent to a single-process distill while its teacher runs, its exit status, its last line)
SIGNALS = [
    ("SIGTERM", 143, "tinykd: stopped by SIGTERM; nothing was written"),
    ("SIGHUP", 129, "tinykd: stopped by SIGHUP; nothing was written"),
    ("SIGKILL", -9, None),
    ("SIGINT", 130, "tinykd: interrupted; nothing was written"),
]


@pytest.mark.parametrize("name, status, last", SIGNALS, ids=[s[0] for s in SIGNALS])
def test_the_teacher_ends_with_the_run_on_every_signal(tmp_path, fake_teacher_path, name, status, last):
    """The teacher process (and its process group) ends when the run ends, however it ends: at once,
    not at the teacher's next write; the run exits 128 + the signal with one line (SIGKILL: no line)."""
    out = tmp_path / "m.npz"
    p, teacher = _start_distill(tmp_path, fake_teacher_path, tmp_path / "w", out)
    try:
        assert _alive(teacher)
        os.kill(p.pid, getattr(signal, name))
        _, err = p.communicate(timeout=60)
        assert p.returncode == status, err
        if last:
            assert err.splitlines()[-1].startswith(last) and "Traceback" not in err, err
        assert _wait_for(lambda: not _alive(teacher), 10), f"the teacher {teacher} still runs after {name}"
        assert not out.exists()
    finally:
        for pid in (p.pid, teacher):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_the_real_teacher_ends_when_tinykds_run_is_gone(tmp_path):
    """``python -m teacher_export`` started for a run (``TINYKD_TEACHER_PARENT``) that is not its
    parent any more exits at once, before any work (here: before reading its job file)."""
    env = {**os.environ, "TINYKD_TEACHER_PARENT": "1"}  # a parent that is not this process's
    r = subprocess.run([sys.executable, "-m", "teacher_export", "job", str(tmp_path / "missing.json")], env=env,
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and r.stderr == "", r.stderr
    r = subprocess.run([sys.executable, "-m", "teacher_export", "job", str(tmp_path / "missing.json")],
                       env={**os.environ, "TINYKD_TEACHER_PARENT": str(os.getpid())}, cwd=REPO, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2 and "missing.json" in r.stderr  # its parent: the job runs (and fails: no file)


# ------------------------------------------------------------ defect 16 and 20: the work folder
def test_a_second_run_on_a_work_folder_in_use_is_refused(tmp_path, capsys, fake_teacher, fake_teacher_path):
    """While one run uses --work, a second is refused in one line naming the folder, and the first
    run's stage in progress (and its teacher) are left alone."""
    work = tmp_path / "w"
    p, teacher = _start_distill(tmp_path, fake_teacher_path, work, tmp_path / "first.npz")
    try:
        before = sorted(str(f.relative_to(work)) for f in work.rglob("*"))
        assert any(b.startswith("teacher-") for b in before)
        rc, _, err = run_cli(capsys, "distill", tmp_path / "d.csv", "--out", tmp_path / "second.npz", "--work", work,
                             *QUICK_CLI)
        assert_user_error(rc, err, "--work", str(work), "in use by another tinykd distill run")
        assert sorted(str(f.relative_to(work)) for f in work.rglob("*")) == before and _alive(teacher)
        assert not (tmp_path / "second.npz").exists()
    finally:
        p.kill()
        p.communicate()
        _wait_for(lambda: not _alive(teacher), 10)


def _lock(work):
    """Hold the lock of the work folder ``work``, as a run does (returns the open lock file)."""
    import fcntl

    work.mkdir()
    f = open(work / "lock", "w")
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return f


#: (case, make the --work path, what the one line says)
WORK_PATHS = [
    ("a file", lambda w: w.write_text("not a folder"), ("--work", "is a file, not a folder")),
    ("a dangling symbolic link", lambda w: w.symlink_to(w.parent / "gone"), ("--work", "not a folder")),
    ("a folder inside a file", lambda w: None, ("--work", "cannot make the folder")),
    ("a folder another run holds", _lock, ("--work", "in use by another tinykd distill run")),
]


@pytest.mark.parametrize("case, make, needles", WORK_PATHS, ids=[c[0] for c in WORK_PATHS])
def test_bad_work_folders_are_one_line(tmp_path, capsys, fake_teacher, case, make, needles):
    data, out = make_csv(tmp_path / "d.csv"), tmp_path / "m.npz"
    work = tmp_path / "w"
    if case == "a folder inside a file":
        (tmp_path / "f").write_text("a file")
        work = tmp_path / "f" / "w"
    held = make(work)
    rc, _, err = run_cli(capsys, "distill", data, "--out", out, "--work", work, *QUICK_CLI)
    assert_user_error(rc, err, *needles, str(work))
    assert not out.exists()
    if case == "a file":
        assert work.read_text() == "not a folder"
    if case == "a folder another run holds":
        assert sorted(os.listdir(work)) == ["lock"]  # nothing read or written in the folder of another run
        held.close()


# ------------------------------------------------------------ defect 14: a moved or copied work folder
#: (case, how the work folder of a finished run comes to its new place)
WORK_FOLDER_MOVES = [("moved", shutil.move), ("copied (the old one kept)", shutil.copytree)]


@pytest.mark.parametrize("case, move", WORK_FOLDER_MOVES, ids=[c[0] for c in WORK_FOLDER_MOVES])
def test_a_moved_work_folder_uses_its_own_teacher(tmp_path, fake_teacher, case, move):
    """A rerun in a moved or copied work folder reuses its teacher from there (not the old place), and
    a later stage that runs again (more copies) is labelled by that teacher."""
    data = make_csv(tmp_path / "d.csv")
    D.distill(data, tmp_path / "one.npz", work=str(tmp_path / "old"), **QUICK)
    first = set(os.listdir(tmp_path / "old"))
    move(str(tmp_path / "old"), str(tmp_path / "new"))
    res = D.distill(data, tmp_path / "two.npz", work=str(tmp_path / "new"), **{**QUICK, "copies": 2})
    assert [r.split(":")[0] for r in res.ran] == ["copies", "labels", "students"]  # the teacher reused
    labels = [f for f in os.listdir(tmp_path / "new") if f.startswith("labels-") and f not in first]
    used = json.loads((tmp_path / "new" / labels[0] / "job.json").read_text())["teacher"]
    new_teacher = next((tmp_path / "new").glob("teacher-*/teacher-teacher"))
    assert len(labels) == 1 and used == str(new_teacher)  # the teacher of the work folder it runs in
    assert tinykd.load(tmp_path / "two.npz").meta["distill"]["teacher"] == str(new_teacher)
    for marker in (tmp_path / "new").glob(f"*/{MARKER}"):  # what the markers record: places inside the folder
        assert str(tmp_path) not in marker.read_text()


# ------------------------------------------------------------ defect 19: the stage cache checks its files
def _stage(folder, calls, text):
    """A stage writing two files, one in a sub-folder (as the teacher's weights are)."""
    calls.append(text)
    with open(os.path.join(folder, "student.npz"), "w") as f:
        f.write(text)
    os.makedirs(os.path.join(folder, "teacher-teacher"))
    with open(os.path.join(folder, "teacher-teacher", "model.safetensors"), "wb") as f:
        f.write(text.encode() * 100)
    return {"n": len(text)}


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)


#: (case, what is done to a finished stage's folder)
TAMPERED_STAGES = [
    ("a foreign student.npz", lambda f: _write(f / "student.npz", b"a foreign model")),
    ("an output of the same size changed", lambda f: _write(f / "student.npz", b"ABC")),
    ("an output deleted", lambda f: os.remove(f / "student.npz")),
    ("the teacher's weights deleted (a sub-folder)", lambda f: os.remove(f / "teacher-teacher" / "model.safetensors")),
    ("a file added", lambda f: _write(f / "extra.csv", b"id,text\n")),
    ("an output replaced by a symbolic link", lambda f: (os.remove(f / "student.npz"),
                                                         os.symlink(f / "teacher-teacher", f / "student.npz"))),
    ("done.json garbage", lambda f: _write(f / MARKER, b"{garbage")),
    ("done.json empty", lambda f: _write(f / MARKER, b"")),
    ("done.json a JSON list", lambda f: _write(f / MARKER, b"[1, 2]")),
    ("done.json not UTF-8", lambda f: _write(f / MARKER, b'{"n": "\xff\xfe"}')),
    ("done.json of 20 MB (read no further than 16 MB)", lambda f: _write(f / MARKER, b" " * (20 << 20) + b"{}")),
    ("done.json nested 100,000 deep", lambda f: _write(f / MARKER, b"[" * 100_000 + b"]" * 100_000)),
    ("done.json with the hashes of other files", lambda f: _write(f / MARKER, json.dumps(
        {**json.loads((f / MARKER).read_text()), "files_sha256": {"student.npz": "0" * 64}}).encode())),
]


@pytest.mark.parametrize("case, tamper", TAMPERED_STAGES, ids=[c[0] for c in TAMPERED_STAGES])
def test_a_stage_whose_files_do_not_check_out_is_redone(tmp_path, case, tamper):
    """A finished stage is reused only when its files are those its marker records (their SHA-256); else
    it runs again from scratch, with a note naming the folder — never a foreign output, never an error."""
    lines, calls = [], []
    folder = tmp_path / "work" / "students-k1"
    made = StageCache(tmp_path / "work", lines.append).run("students", "k1", "item 1", _stage, calls, "abc")
    tamper(folder)
    again = StageCache(tmp_path / "work", lines.append)
    assert again.run("students", "k1", "item 1", _stage, calls, "xyz") == {**made, "n": 3, "seconds": made["seconds"]}
    assert calls == ["abc", "xyz"] and again.ran == ["students:item 1"] and again.cached == []
    assert (folder / "student.npz").read_text() == "xyz" and not (folder / "extra.csv").exists()
    note = [ln for ln in lines if "running it again" in ln]
    assert len(note) == 1 and str(folder) in note[0], lines
    third = StageCache(tmp_path / "work", lines.append)  # the stage redone is reused as it is
    assert third.run("students", "k1", "item 1", _stage, calls, "zzz")["n"] == 3 and calls == ["abc", "xyz"]


def test_a_marker_of_an_earlier_tinykd_is_trusted_once_and_upgraded(tmp_path):
    """A done.json written before the files' hashes were recorded is trusted (finished work folders stay
    valid), and gains the hashes of the files as they are: from then on they are checked."""
    lines, calls = [], []
    folder = tmp_path / "work" / "students-k1"
    made = StageCache(tmp_path / "work", lines.append).run("students", "k1", "item 1", _stage, calls, "abc")
    (folder / MARKER).write_text(json.dumps(made))  # as an earlier tinykd wrote it: the result, no hashes
    again = StageCache(tmp_path / "work", lines.append)
    assert again.run("students", "k1", "item 1", _stage, calls, "xyz") == made and calls == ["abc"]
    marker = json.loads((folder / MARKER).read_text())
    assert marker["files_sha256"] == {
        "student.npz": hashlib.sha256(b"abc").hexdigest(),
        "teacher-teacher/model.safetensors": hashlib.sha256(b"abc" * 100).hexdigest()}
    _write(folder / "student.npz", b"foreign")
    assert StageCache(tmp_path / "work", lines.append).run("students", "k1", "item 1", _stage, calls, "xyz") \
        and calls == ["abc", "xyz"]


#: (case, what is done to a finished distill's work folder, the stages the rerun runs again)
def _foreign_student(work):
    from conftest import export_student

    foreign = export_student("falling_weights", ["a foreign model", "of another task"])
    foreign.save(next(work.glob("students-*/student.npz")))


#: (case, what is done to a finished distill's work folder, the stages the rerun runs again: those after a
#: redone stage keep their keys, and their files check out)
TAMPERED_WORK = [
    ("a foreign student.npz", _foreign_student, ["students"]),
    ("the teacher's done.json garbage", lambda w: _write(next(w.glob(f"teacher-*/{MARKER}")), b"\x00garbage"),
     ["teacher"]),
    ("the teacher's weights deleted", lambda w: os.remove(next(w.glob("teacher-*/teacher-teacher/model.safetensors"))),
     ["teacher"]),
]


@pytest.mark.parametrize("case, tamper, again", TAMPERED_WORK, ids=[c[0] for c in TAMPERED_WORK])
def test_a_rerun_redoes_the_stages_whose_files_do_not_check_out(tmp_path, fake_teacher, case, tamper, again):
    """The stages whose files changed run again, and the model is the one a clean run makes."""
    data, work = make_csv(tmp_path / "d.csv"), tmp_path / "w"
    D.distill(data, tmp_path / "one.npz", work=str(work), **QUICK)
    tamper(work)
    res = D.distill(data, tmp_path / "two.npz", work=str(work), **QUICK)
    assert [r.split(":")[0] for r in res.ran] == again
    np.testing.assert_array_equal(tinykd.load(tmp_path / "two.npz").net.params,
                                  tinykd.load(tmp_path / "one.npz").net.params)
