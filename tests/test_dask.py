"""tinykd.cluster.tasks on a real dask.distributed LocalCluster (a scheduler and two worker processes on this
machine, one thread each): scores equal the single-process scores exactly and in order, per-item
training gives the same bundle, a worker killed mid-job changes nothing in the output, and a damaged
model is one clear error (no worker dies)."""
import importlib
import os
import signal
import time

import numpy as np
import pytest

pytest.importorskip("distributed")
pd = pytest.importorskip("pandas")
dd = pytest.importorskip("dask.dataframe")

import tinykd  # noqa: E402
import tinykd.cluster.tasks as tkd  # noqa: E402
from conftest import model_contents, scientsbank_rows  # noqa: E402
from tinykd.scoring.modelfile import ModelFileError  # noqa: E402
from tinykd.scoring.scorefile import output_columns  # noqa: E402
from tinykd.settings import Settings  # noqa: E402
from tinykd.train.options import TrainOptions  # noqa: E402


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def rows():
    return scientsbank_rows()


@pytest.fixture(scope="module")
def items_rows(rows):
    keep = sorted({r["item"] for r in rows})[:4]
    return [r for r in rows if r["item"] in keep and r["split"] == "train"]


FIT = dict(preset="bathtub", epochs=2, seed=3, verbose=False)


def _fit_args(rows):
    return [r["text"] for r in rows], [r["label"] for r in rows]


def _fit_kwargs(rows):
    return dict(items=[r["item"] for r in rows], ids=[r["id"] for r in rows], splits=None, **FIT)


@pytest.fixture(scope="module")
def bundle(items_rows, tmp_path_factory):
    model = tinykd.fit_items(*_fit_args(items_rows), **_fit_kwargs(items_rows), columns={"item": "item"})
    path = tmp_path_factory.mktemp("dask") / "bundle.npz"
    model.save(path)
    return model, str(path)


def assert_same_bundle(a, b):
    (ma, aa), (mb, ab) = model_contents(a), model_contents(b)
    assert sorted(aa) == sorted(ab)
    for k in aa:
        np.testing.assert_array_equal(aa[k], ab[k], err_msg=k)
    assert ma == mb


def _reference(path, frame):
    """What the single-process scorer gives for these rows through the Numba kernels (as a worker
    scores, and any scorer after its first small jobs; those take the NumPy path, whose last bits may
    differ: tinykd.scoring.scorer)."""
    model = tinykd.load(path, settings=Settings(jit="always"))
    proba = model.predict_proba_matrix(frame["text"].tolist(), frame["item"].tolist(), classes=model.classes)
    return proba


def test_scores_equal_single_process_exactly_and_in_order(client, rows, bundle):
    model, path = bundle
    df = pd.DataFrame([r for r in rows if r["item"] in model.items])
    df.index = df.index * 10 + 3  # an index that is not 0..n-1 comes back as it was
    ref = _reference(path, df)
    thr = float(np.median(ref.max(1)))  # (a 2-epoch model is unsure of everything: flag half of the rows)
    scored = tkd.score(dd.from_pandas(df, npartitions=5), path, review_below=thr).compute()
    cols = output_columns(model.classes)
    assert list(scored.columns) == list(df.columns) + cols
    assert list(scored.index) == list(df.index) and scored["id"].tolist() == df["id"].tolist()
    np.testing.assert_array_equal(scored[cols[1:-2]].to_numpy(np.float32), ref)
    assert scored["pred"].tolist() == [model.classes[k] for k in ref.argmax(1)]
    np.testing.assert_array_equal(scored["confidence"].to_numpy(np.float32), ref.max(1))
    assert scored["needs_review"].tolist() == (ref.max(1) < thr).tolist()
    assert 0 < scored["needs_review"].sum() < len(df)  # the threshold separates rows: the test can fail


def test_a_student_scores_from_bytes_too(client, rows, tmp_path):
    st = tinykd.fit([r["text"] for r in rows[:300]], [int(r["label"]) for r in rows[:300]], **FIT)
    df = pd.DataFrame({"answer": [r["text"] for r in rows[:900]]})
    scored = tkd.score(dd.from_pandas(df, npartitions=3), st.to_bytes(), text_col="answer",
                       review_below=0.5).compute()
    importlib.import_module("tinykd.scoring._kernels")
    ref = st.predict_proba(df["answer"].tolist())
    np.testing.assert_array_equal(scored[[f"p_{c}" for c in st.classes]].to_numpy(np.float32), ref)
    assert scored["needs_review"].tolist() == (ref.max(1) < 0.5).tolist()


def test_per_item_training_gives_the_same_bundle(client, items_rows, bundle):
    model, _ = bundle
    got = tkd.fit_items(*_fit_args(items_rows), **_fit_kwargs(items_rows), columns={"item": "item"}, client=client)
    assert isinstance(got, tinykd.Bundle) and got.items == model.items
    assert_same_bundle(got, model)
    kw = {k: v for k, v in _fit_kwargs(items_rows).items() if k not in ("preset", "epochs", "seed")}
    options = TrainOptions(preset="bathtub", epochs=2, seed=4)  # the jobs carry one TrainOptions to the workers
    other = tkd.fit_items(*_fit_args(items_rows), **kw, options=options, columns={"item": "item"}, client=client)
    assert not np.array_equal(other.students[model.items[0]].net.params, model.students[model.items[0]].net.params)
    assert {st.meta["training"]["seed"] for st in other.students.values()} == {4}


def _pids(client):
    return set(client.run(os.getpid).values())


def _wait_for_workers(client, n, timeout=120):
    t0 = time.monotonic()
    while len(client.scheduler_info()["workers"]) < n:
        if time.monotonic() - t0 > timeout:
            raise AssertionError("the nanny did not restart the killed worker")
        time.sleep(0.2)


def test_a_worker_killed_mid_job_changes_nothing(client, rows, bundle):
    from distributed import wait

    model, path = bundle
    df = pd.DataFrame([r for r in rows if r["item"] in model.items] * 4)
    frame = tkd.score(dd.from_pandas(df, npartitions=16), path)
    before = _pids(client)
    futures = client.compute(frame.to_delayed())
    # kill a worker while it is scoring: as soon as one partition is done, others are still running
    while not any(f.done() for f in futures):
        time.sleep(0.01)
    processing = client.processing()
    busy = [w for w, keys in processing.items() if keys] or list(processing)
    victim = client.run(os.getpid, workers=[busy[0]])[busy[0]]
    os.kill(victim, signal.SIGKILL)
    wait(futures)
    scored = pd.concat(client.gather(futures))
    _wait_for_workers(client, 2)
    after = _pids(client)
    assert victim in before and victim not in after  # a worker process really died
    ref = _reference(path, df)
    np.testing.assert_array_equal(scored[[f"p_{c}" for c in model.classes]].to_numpy(np.float32), ref)
    assert scored["id"].tolist() == df["id"].tolist()


def test_a_damaged_model_is_one_clear_error_and_no_worker_dies(client, bundle, tmp_path):
    _, path = bundle
    data = open(path, "rb").read()
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(data[: len(data) // 2])
    frame = dd.from_pandas(pd.DataFrame({"text": ["acid rain"] * 10, "item": ["x"] * 10}), npartitions=2)
    with pytest.raises(ModelFileError, match=r"damaged\.npz: damaged or truncated model file"):
        tkd.score(frame, damaged)  # refused before any task
    before = _pids(client)
    # the bytes reach a worker anyway (another client, a corrupted transfer): the task fails once, clearly
    fut = client.submit(tkd.score_partition, frame.partitions[0].compute(), data[:-100], "text", None, "item", 0.6)
    with pytest.raises(ModelFileError, match="model file bytes: damaged or truncated model file"):
        fut.result()
    assert _pids(client) == before  # no worker crashed or restarted
    assert fut.status == "error"


# ------------------------------------------------------------------------------ command line
def test_cli_score_folder_on_the_cluster_equals_single_process(client, rows, bundle, tmp_path, capsys):
    from conftest import run_cli, write_csv

    model, path = bundle
    importlib.import_module("tinykd.scoring._kernels")  # (the single-process run below: Numba, as the workers)
    keep = [r for r in rows if r["item"] in model.items]
    folder = tmp_path / "in"
    folder.mkdir()
    for k in range(3):
        write_csv(folder / f"f{k}.csv", keep[k::3])
    addr = client.scheduler.address
    rc, out, err = run_cli(capsys, "score", path, folder, "--dask", addr, "--out", tmp_path / "parts")
    assert rc == 0, err
    assert "scored 3 of 3 parts" in err and f"scored {len(keep):,} rows of 3 file(s)" in out
    for k in range(3):  # each part: the bytes `tinykd score` writes for that file
        rc, _, err = run_cli(capsys, "score", path, folder / f"f{k}.csv", "--out", tmp_path / f"single{k}.csv")
        assert rc == 0, err
        assert (tmp_path / "parts" / f"part-0000{k}.csv").read_bytes() == (tmp_path / f"single{k}.csv").read_bytes()
    rc, _, err = run_cli(capsys, "score", path, str(folder / "f*.csv"), "--dask", addr, "--out", tmp_path / "one.csv",
                         "--where", f"item={keep[0]['item']}")
    assert rc == 0, err
    rc, _, err = run_cli(capsys, "score", path, folder / "f0.csv", "--out", tmp_path / "ref.csv",
                         "--where", f"item={keep[0]['item']}")
    one = (tmp_path / "one.csv").read_text().splitlines()
    ref = (tmp_path / "ref.csv").read_text().splitlines()
    assert one[0] == ref[0] and len(one) > len(ref) > 1  # rows of the three files, the first file's first
    assert one[:len(ref)] == ref


def test_cli_score_parquet_folder(client, rows, bundle, tmp_path, capsys):
    from conftest import run_cli

    model, path = bundle
    keep = pd.DataFrame([r for r in rows if r["item"] in model.items])
    folder = tmp_path / "pq"
    folder.mkdir()
    keep.iloc[:200].to_parquet(folder / "a.parquet")
    keep.iloc[200:].to_parquet(folder / "b.parquet")
    rc, _, err = run_cli(capsys, "score", path, folder, "--dask", client.scheduler.address, "--out", tmp_path / "o")
    assert rc == 0, err
    got = pd.read_parquet(tmp_path / "o")
    ref = _reference(path, keep)
    assert got["id"].tolist() == keep["id"].tolist()
    np.testing.assert_array_equal(got[[f"p_{c}" for c in model.classes]].to_numpy(np.float32), ref)


def test_cli_train_items_on_the_cluster_equals_single_process(client, items_rows, tmp_path, capsys):
    from conftest import run_cli, write_csv

    data = write_csv(tmp_path / "d.csv", items_rows)
    args = ["train", data, "--item-col", "item", "--preset", "bathtub", "--epochs", "2", "--seed", "3", "-q"]
    rc, _, err = run_cli(capsys, *args, "--out", tmp_path / "a.npz")
    assert rc == 0, err
    rc, _, err = run_cli(capsys, *args, "--out", tmp_path / "b.npz", "--dask", client.scheduler.address)
    assert rc == 0, err
    a, b = tinykd.load(tmp_path / "a.npz"), tinykd.load(tmp_path / "b.npz")
    for m in (a, b):
        for st in m.students.values():
            st.meta.pop("data_file", None)
    assert_same_bundle(a, b)


def test_cli_dask_errors_are_one_line(bundle, tmp_path, capsys):
    from conftest import assert_user_error, run_cli, write_csv

    _, path = bundle
    data = write_csv(tmp_path / "d.csv", [{"text": "acid", "item": "x", "label": "1"}])
    assert_user_error(*run_cli(capsys, "train", data, "--out", tmp_path / "m.npz", "--jobs", "2")[::2], "--item-col")
    assert_user_error(*run_cli(capsys, "score", path, data, "--out", tmp_path / "o", "--jobs", "0")[::2], "--jobs")
    assert_user_error(*run_cli(capsys, "score", path, tmp_path / "none", "--out", tmp_path / "o", "--jobs", "1")[::2],
                      "no such file")
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04" + b"\0" * 100)
    bad = run_cli(capsys, "score", tmp_path / "bad.npz", data, "--out", tmp_path / "o", "--jobs", "1")
    assert_user_error(bad[0], bad[2], "bad.npz", "model file")
    assert not (tmp_path / "o").exists()


def test_cli_dask_without_the_extra_says_how_to_install(bundle, tmp_path):
    import subprocess
    import sys

    _, path = bundle
    code = ("import sys; sys.modules['distributed'] = None\nfrom tinykd.cli.commands import main\n"
            f"sys.exit(main(['score', {path!r}, {str(tmp_path)!r}, '--out', {str(tmp_path / 'o')!r}, '--jobs', '1']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip() == 'tinykd: error: the Dask extra is not installed: pip install ' \
                                                     '"tinykd[dask]"', r.stderr
