"""The teacher's opt-in bfloat16 (``--bf16 off|on|auto``, teacher_export.precision) on the tiny local BERT:
the detector, the choice and its record, and bfloat16's labels against float32's. The detector is
monkeypatched, so both branches run on any machine (torch emulates bfloat16 where the CPU lacks it)."""
import json
import os

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from teacher_export import cli, precision  # noqa: E402
from teacher_export.export import run_export, run_fit  # noqa: E402
from teacher_export.precision import BF16_CHOICES, PrecisionError, bf16_support, resolve_precision  # noqa: E402
from tinykd.files.softlabels import read_sidecar, read_soft_label_table  # noqa: E402

from test_teacher_export import FAST, _make_csv  # noqa: E402  (the toy answers and the fast fine-tuning)

CPU = torch.device("cpu")


def _supported(monkeypatch, ok):
    monkeypatch.setattr(precision, "bf16_support", lambda device: (ok, "CPU with AVX-512 BF16" if ok else
                                                                   "CPU without AVX-512 BF16 or AMX BF16"))


def test_the_detector_reads_torchs_capabilities_and_else_cpuinfo(monkeypatch, tmp_path):
    caps = {"avx512_bf16": False, "amx_bf16": True}
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: caps)
    assert bf16_support(CPU) == (True, "CPU with AMX BF16")
    caps["amx_bf16"] = False
    assert bf16_support(CPU) == (False, "CPU without AVX-512 BF16 or AMX BF16")
    monkeypatch.delattr(torch.cpu, "get_capabilities")  # an older torch: its private check, then the flags
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    (tmp_path / "cpuinfo").write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n")
    monkeypatch.setattr(precision, "CPUINFO", str(tmp_path / "cpuinfo"))
    assert bf16_support(CPU) == (True, "CPU with AVX-512 BF16")
    (tmp_path / "cpuinfo").write_text("flags\t\t: fpu sse2 avx2\n")
    assert bf16_support(CPU)[0] is False
    monkeypatch.setattr(precision, "CPUINFO", str(tmp_path / "none"))
    assert bf16_support(CPU)[0] is False
    assert bf16_support(torch.device("meta"))[0] is False


def test_fit_export_and_job_files_take_bf16(tmp_path):
    parse = cli.build_parser().parse_args
    for cmd, extra in (("fit", []), ("export", ["--teacher", "t"])):
        assert parse([cmd, "--data", "d", "--out", "o", *extra]).bf16 == "off"
        for value in BF16_CHOICES:
            assert parse([cmd, "--data", "d", "--out", "o", *extra, "--bf16", value]).bf16 == value
        with pytest.raises(SystemExit):
            parse([cmd, "--data", "d", "--out", "o", *extra, "--bf16", "yes"])
    (tmp_path / "job.json").write_text(json.dumps({"command": "export", "teacher": "t", "data": "d", "out": "o",
                                                    "bf16": "auto"}))
    assert cli.read_job(str(tmp_path / "job.json")).bf16 == "auto"
    (tmp_path / "job.json").write_text(json.dumps({"command": "fit", "data": "d", "out": "o", "bf16": True}))
    with pytest.raises(cli.JobError, match="bf16 cannot be True"):
        cli.read_job(str(tmp_path / "job.json"))


@pytest.mark.parametrize("ok", [True, False])
def test_off_on_and_auto_and_what_the_sidecar_says(monkeypatch, ok):
    _supported(monkeypatch, ok)
    off = resolve_precision("off", CPU)
    assert not off.bf16 and off.record() == {"precision": "float32", "precision_why": "asked", "bf16": "off"}
    auto = resolve_precision("auto", CPU)
    assert auto.bf16 is ok and auto.record()["precision"] == ("bfloat16" if ok else "float32")
    assert auto.record()["precision_why"] == ("detected" if ok else "not supported")
    if ok:
        assert resolve_precision("on", CPU).record()["precision_why"] == "asked"
    else:
        with pytest.raises(PrecisionError, match="--bf16 on: bfloat16 is not supported here"):
            resolve_precision("on", CPU)
    with pytest.raises(PrecisionError, match="--bf16 must be one of off, on, auto"):
        resolve_precision("yes", CPU)


def test_autocast_runs_the_encoder_in_bfloat16_and_the_head_in_float32(tiny_base):
    from teacher_export.model import load_classifier

    model = load_classifier(tiny_base, num_labels=3).eval()
    seen = {}
    model.bert.encoder.layer[0].output.dense.register_forward_hook(lambda m, i, o: seen.update(enc=o.dtype))
    model.classifier.register_forward_hook(lambda m, i, o: seen.update(head=o.dtype))
    ids = torch.tensor([[2, 10, 11, 3]])
    with precision.autocast(model, "cpu", True):
        z = model(input_ids=ids).logits
    assert seen == {"enc": torch.bfloat16, "head": torch.float32} and z.dtype == torch.float32
    assert "forward" not in vars(model.classifier)  # the head's own forward again
    with precision.autocast(model, "cpu", False):
        model(input_ids=ids)
    assert seen["enc"] == torch.float32
    assert all(p.dtype == torch.float32 for p in model.parameters())


@pytest.mark.slow  # fine-tunes a tiny BERT
def test_bf16_fit_and_labels_follow_float32_and_say_bfloat16(tiny_base, tmp_path, monkeypatch, capsys):
    """fit --bf16 on trains and labels under autocast (the weights saved in float32); export --bf16 on
    labels within a tolerance of float32's, and the sidecars say which precision ran and why."""
    _supported(monkeypatch, True)
    data, _ = _make_csv(tmp_path / "a.csv", n=72)
    res = run_fit(data=data, out=str(tmp_path / "t"), base=tiny_base, split_col="split", val_split="val", name="t",
                  bf16="on", **{**FAST, "epochs": 10, "patience": 10, "lr": 3e-3, "warmup": 0.0, "save_teacher": True})
    side = read_sidecar(res["path"])
    assert (side["precision"], side["precision_why"], side["bf16"]) == ("bfloat16", "asked", "on")
    assert side["hyperparameters"]["bf16"] == "on" and len(side["history"]) >= 1
    teacher = str(tmp_path / "t" / "t-teacher")
    with open(os.path.join(teacher, "teacher.json")) as f:
        assert json.load(f)["precision"] == "bfloat16"
    from safetensors import safe_open

    with safe_open(os.path.join(teacher, "model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float32}
    z, p = {}, {}
    for mode in ("off", "on"):
        out = run_export(teacher=teacher, data=data, out=str(tmp_path / mode), name="labels", threads=1, bf16=mode,
                         workers=1)
        ids, _, p[mode] = read_soft_label_table(out["path"])
        z[mode] = np.loadtxt(out["path"], delimiter=",", skiprows=1, usecols=(4, 5, 6))
        assert read_sidecar(out["path"])["precision"] == {"off": "float32", "on": "bfloat16"}[mode]
    dz, dp = np.abs(z["on"] - z["off"]).max(), np.abs(p["on"] - p["off"]).max()
    assert 0 < dz < 0.05 and dp < 0.01  # bfloat16 ran (not bit-equal) and stays close (here: 0.0016, 0.0001)
    assert (p["on"].argmax(1) == p["off"].argmax(1)).mean() >= 0.95
    assert z["on"].std() > 0.2  # a trained teacher, not an untrained head's near-zero logits
    # auto where it is not supported: float32, the same file as off, and the sidecar says why
    _supported(monkeypatch, False)
    out = run_export(teacher=teacher, data=data, out=str(tmp_path / "auto"), name="labels", threads=1, bf16="auto")
    assert open(out["path"], "rb").read() == open(tmp_path / "off" / "labels.csv", "rb").read()
    side = read_sidecar(out["path"])
    assert (side["precision"], side["precision_why"], side["bf16"]) == ("float32", "not supported", "auto")
    assert side["bf16_hardware"] == "CPU without AVX-512 BF16 or AMX BF16"
    # on where it is not supported: one line naming the option, exit 2, nothing written
    capsys.readouterr()
    no = str(tmp_path / "no")
    assert cli.main(["export", "--teacher", teacher, "--data", data, "--out", no, "--bf16", "on"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tinykd-teacher: error: --bf16 on: bfloat16 is not supported here") and err.count("\n") == 1
    assert not (tmp_path / "no" / "labels.csv").exists()


@pytest.mark.slow  # fine-tunes a tiny BERT, starts two worker processes
def test_labelling_workers_use_the_same_bfloat16(tiny_base, tmp_path, monkeypatch):
    """The worker processes label under the same autocast as the single process: the same logits."""
    from teacher_export.finetune import encode, label_batches, predict_logits
    from teacher_export.model import load_classifier, load_tokenizer
    from teacher_export.workers import predict_logits_in_workers

    data, rows = _make_csv(tmp_path / "a.csv", n=45)
    run_fit(data=data, out=str(tmp_path / "t"), base=tiny_base, split_col="split", val_split="val", name="t",
            **{**FAST, "epochs": 1, "save_teacher": True})
    teacher = str(tmp_path / "t" / "t-teacher")
    tok, model = load_tokenizer(teacher), load_classifier(teacher).eval()
    enc = encode(tok, [r["text"] for r in rows], None, 32)
    n0 = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = predict_logits(model, enc, None, batch_size=8, bf16=True)
        plain = predict_logits(model, enc, None, batch_size=8)
    finally:
        torch.set_num_threads(n0)
    two = predict_logits_in_workers(teacher, enc, label_batches(enc, np.arange(len(rows)), 8), 3, 2, 1, bf16=True)
    assert np.array_equal(one, two) and not np.array_equal(one, plain)


def test_this_machines_answer_agrees_with_its_cpu_flags(monkeypatch):
    """torch's check and /proc/cpuinfo's flags give the same answer here; auto follows it."""
    ok, found = bf16_support(CPU)
    rec = resolve_precision("auto", CPU).record()
    assert rec["precision"] == ("bfloat16" if ok else "float32") and rec["bf16_hardware"] == found
    if os.path.exists(precision.CPUINFO):
        monkeypatch.delattr(torch.cpu, "get_capabilities")
        monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported", raising=False)
        assert bf16_support(CPU) == (ok, found)
