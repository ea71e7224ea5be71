"""``tinykd-teacher fit --warm-from``: fine-tuning on from a previous round's teacher, its epoch 0 kept where no
epoch beats it (tiny local BERTs, the ``tiny_base`` fixture; no network)."""
import csv
import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from teacher_export import cli  # noqa: E402
from teacher_export.bases import sha256_file  # noqa: E402
from teacher_export.export import run_fit  # noqa: E402
from teacher_export.finetune import EarlyStopping, kept_epoch  # noqa: E402

from test_teacher_export import FAST, _make_csv  # noqa: E402

DATA = dict(split_col="split", val_split="val", test_split="test", context_col="question")


@pytest.fixture(scope="module")
def previous(tiny_base, tmp_path_factory):
    """Two previous rounds' teachers of the same rows: ``strong`` (trained to a high validation accuracy) and
    ``weak`` (one step-sized epoch at a tiny learning rate: close to its random head)."""
    d = tmp_path_factory.mktemp("warm")
    data, _ = _make_csv(d / "answers.csv")
    kw = dict(data=data, base=tiny_base, seed=3, **DATA, **{**FAST, "save_teacher": True, "warmup": 0.0})
    strong = run_fit(out=str(d / "strong"), **{**kw, "epochs": 6, "patience": 2, "lr": 1e-2})
    weak = run_fit(out=str(d / "weak"), **{**kw, "epochs": 1, "lr": 1e-5})
    return data, strong, weak


def _warm(previous_run, data, out, **kw):
    return run_fit(data=data, out=str(out), warm_from=previous_run["teacher_dir"], seed=3, **DATA,
                   **{**FAST, "save_teacher": True, "warmup": 0.0, **kw})


def _teacher_json(res):
    with open(os.path.join(res["teacher_dir"], "teacher.json")) as fh:
        return json.load(fh)


def test_the_warm_start_is_the_previous_teacher_before_any_step(previous, tmp_path):
    """The model a warm start trains is the previous teacher itself (weights and head): its probabilities before
    any step are the previous teacher's, and epoch 0's validation is the previous teacher's kept epoch's."""
    from teacher_export.export import _Start
    from teacher_export.finetune import encode, predict_logits
    from teacher_export.model import load_tokenizer
    from tinykd.nn.dense import softmax

    data, strong, _ = previous
    ds = strong["dataset"]
    start = _Start.of(None, strong["teacher_dir"], 0, None)
    tok = load_tokenizer(start.folder)
    p0 = softmax(predict_logits(start.model(ds), encode(tok, ds.texts, ds.contexts, 32), None,
                                pad_id=tok.pad_token_id or 0))
    assert np.abs(p0 - strong["proba"]).max() < 1e-6
    assert np.abs(p0 - 1 / 3).max() > 0.3  # a trained teacher, not a fresh head's near-uniform guess
    res = _warm(strong, data, tmp_path, epochs=1, lr=1e-3)
    e0, prev_kept = res["history"][0], strong["history"][strong["best_epoch"] - 1]
    assert e0["epoch"] == 0 and e0["loss"] is None and e0["seconds"] >= 0
    assert abs(e0["val_loss"] - prev_kept["val_loss"]) < 1e-6 and e0["val_acc"] == prev_kept["val_acc"]
    tj, prev_tj = _teacher_json(res), _teacher_json(strong)
    assert tj["base"] == prev_tj["base"] and tj["base_model"] == prev_tj["base_model"] and tj["max_length"] == 32
    assert tj["warm"]["from"] == os.path.abspath(strong["teacher_dir"]) and tj["warm"]["epochs_run"] == 1


def test_epoch_0_is_kept_when_training_cannot_beat_it(previous, tmp_path, capsys):
    """A learning rate of 1 wrecks the strong teacher: early stopping keeps epoch 0, and the fitted teacher is
    the previous one, its weights file the same bytes and its soft labels the same numbers."""
    data, strong, _ = previous
    res = _warm(strong, data, tmp_path, epochs=4, patience=2, lr=1.0)
    h = res["history"]
    assert [r["epoch"] for r in h] == [0, 1, 2] and res["best_epoch"] == 0  # stopped 2 epochs after epoch 0
    assert h[0]["val_acc"] >= 0.9 and max(r["val_acc"] for r in h[1:]) < h[0]["val_acc"] - 0.01
    tj = _teacher_json(res)
    assert tj["warm"] == {"from": os.path.abspath(strong["teacher_dir"]), "kept_start": True, "epochs_run": 2}
    new_w, old_w = (os.path.join(r["teacher_dir"], "model.safetensors") for r in (res, strong))
    assert sha256_file(new_w) == sha256_file(old_w)
    assert np.abs(res["proba"] - strong["proba"]).max() < 1e-9
    err = capsys.readouterr().err
    assert "epoch 0 (the previous teacher)  val loss " in err and "restoring epoch 0" in err


def test_epoch_0_is_left_when_training_improves_validation(previous, tmp_path):
    data, _, weak = previous
    res = _warm(weak, data, tmp_path, epochs=5, patience=4, lr=3e-3)  # ties keep epoch 0: room to win
    h = res["history"]
    assert res["best_epoch"] >= 1 and h[res["best_epoch"]]["val_acc"] > h[0]["val_acc"] + 0.2, h
    tj = _teacher_json(res)
    assert tj["warm"]["kept_start"] is False and tj["warm"]["epochs_run"] == len(h) - 1
    assert sha256_file(os.path.join(res["teacher_dir"], "model.safetensors")) != \
        sha256_file(os.path.join(weak["teacher_dir"], "model.safetensors"))


def test_warm_from_refusals_are_one_line_and_the_job_key_runs_it(previous, tiny_base, tmp_path, capsys):
    data, strong, _ = previous
    prev = strong["teacher_dir"]
    with open(data, newline="") as fh:  # a fourth class
        rows = list(csv.DictReader(fh))
    rows[0]["label"] = "3"
    four = tmp_path / "four.csv"
    with open(four, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    flags = ["--split-col", "split", "--val-split", "val", "--epochs", "1", "--max-length", "32", "--threads", "1",
             "--progress-every", "0", "--out", str(tmp_path / "o")]
    cases = [(["--data", str(four), "--warm-from", prev],
              f"--warm-from {prev}: its classes 0,1,2 differ from the data's 0,1,2,3; fit from the base instead"),
             (["--data", data, "--warm-from", prev, "--base", tiny_base],
              f"--warm-from {prev} and --base {tiny_base}: a warm start keeps the base of the teacher it starts "
              "from; pass one of the two"),
             (["--data", data, "--warm-from", str(tmp_path)],
              f"--warm-from {tmp_path}: not a teacher folder written by 'tinykd-teacher fit' (no teacher.json)")]
    for args, msg in cases:
        assert cli.main(["fit", *args, *flags]) == 2
        assert capsys.readouterr().err == f"tinykd-teacher: error: {msg}\n"
    job = {"command": "fit", "data": data, "warm_from": prev, "split_col": "split", "val_split": "val",
           "context_col": "question", "epochs": 1, "lr": 1.0, "batch_size": 8, "max_length": 32, "threads": 1,
           "progress_every": 0, "name": "toy", "out": str(tmp_path / "job")}
    (tmp_path / "job.json").write_text(json.dumps(job))
    assert cli.main(["job", str(tmp_path / "job.json")]) == 0
    with open(tmp_path / "job" / "toy-teacher" / "teacher.json") as fh:
        assert json.load(fh)["warm"]["kept_start"] is True
    assert sha256_file(tmp_path / "job" / "toy-teacher" / "model.safetensors") == \
        sha256_file(os.path.join(prev, "model.safetensors"))


def test_early_stopping_with_an_epoch_0_record():
    """Epoch 0 (the previous teacher) is the first record: kept while no epoch beats it, its weights held while it
    can still be kept, and the stop counted from it like from any improvement."""
    def run(accs, losses, stop_on="accuracy", patience=2):
        es, held = EarlyStopping(stop_on, 0.01, patience), []
        for ep, (a, l) in enumerate(zip(accs, losses)):
            held.append(sorted(es.update({"epoch": ep, "val_acc": a, "val_loss": l})))
            if es.stop:
                break
        return es.kept, ep, held

    # nothing beats the previous teacher: epoch 0 kept, the run stops 2 epochs after it
    assert run([0.80, 0.79, 0.75, 0.9], [0.50, 0.55, 0.70, 0.3]) == (0, 2, [[0], [0], [0]])
    # epoch 1 ties 0.80 within the tolerance with a lower loss: kept, epoch 0 still held (a later best may drop 1)
    kept, ran, held = run([0.80, 0.795, 0.70, 0.70], [0.50, 0.45, 0.9, 0.9])
    assert (kept, ran) == (1, 3) and held[1] == [0, 1]
    # a later epoch beats it by more than the tolerance: epoch 0's weights let go
    kept, ran, held = run([0.60, 0.70, 0.80, 0.70, 0.70], [0.9, 0.8, 0.6, 0.9, 0.9])
    assert (kept, ran) == (2, 4) and held[2] == [2]
    assert run([0.8, 0.9, 0.9], [0.40, 0.41, 0.42], stop_on="loss")[:2] == (0, 2)
    assert kept_epoch([{"epoch": 0, "val_acc": 0.5, "val_loss": 0.7}, {"epoch": 1, "val_acc": 0.5,
                                                                       "val_loss": 0.7 + 1e-8}]) == 0


def test_a_warm_start_keeps_the_previous_teacher_until_an_epoch_beats_it_by_more_than_the_tolerance():
    """keep_start (what fine_tune(validate_start=True) uses): a tie with a lower loss does not replace the previous
    teacher (it would cost a relabelled transfer set for a difference validation cannot see); a clear win does."""
    def run(accs, losses, patience=1):
        es, held = EarlyStopping("accuracy", 0.01, patience, keep_start=True), []
        for ep, (a, l) in enumerate(zip(accs, losses)):
            held.append(sorted(es.update({"epoch": ep, "val_acc": a, "val_loss": l})))
            if es.stop:
                break
        return es.kept, ep, held

    assert run([0.80, 0.805, 0.9], [0.50, 0.40, 0.1]) == (0, 1, [[0], [0, 1]])  # the tie: epoch 0 kept, stop
    assert run([0.80, 0.811, 0.7], [0.50, 0.60, 0.9]) == (1, 2, [[0], [1], [1]])  # beaten by 0.011: epoch 1
    # a near-tie then a win: the tied epoch is held while a later best may still make it the one kept
    kept, ran, held = run([0.80, 0.805, 0.812, 0.6], [0.50, 0.30, 0.45, 0.9], patience=2)
    assert kept == 1 and held[1] == [0, 1] and held[2] == [1, 2]
    # stop_on="loss" has no kept start: the usual rule
    es = EarlyStopping("loss", 0.01, 1, keep_start=True)
    es.update({"epoch": 0, "val_acc": 0.8, "val_loss": 0.5})
    es.update({"epoch": 1, "val_acc": 0.8, "val_loss": 0.4})
    assert es.kept == 1
