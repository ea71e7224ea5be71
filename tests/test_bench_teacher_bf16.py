"""benchmarks/teacher_bf16.py end to end on a tiny `tinykd distill` work folder (the tiny local BERT):
the stage's labels job rerun in float32 and bfloat16 (--limit), the step timed, the table and JSON written,
the work folder untouched. bfloat16 is forced "supported" so that both runs happen on any CPU (torch
emulates it where the CPU lacks it)."""
import hashlib
import json
import os
import sys

import pytest

pytestmark = pytest.mark.slow  # a tiny distill run (its teacher in subprocesses), then the runner

pytest.importorskip("torch")
pytest.importorskip("transformers")

import tinykd.distill.pipeline as D  # noqa: E402
from teacher_export import precision  # noqa: E402

from test_distill import STUDENT, TEACHER, make_csv  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks"))
import teacher_bf16  # noqa: E402


def _digest(folder):
    return {p: hashlib.sha256(open(os.path.join(d, p), "rb").read()).hexdigest()
            for d, _, files in os.walk(folder) for p in files}


def test_the_runner_compares_bf16_with_float32_on_a_work_folder(tmp_path, tiny_base, monkeypatch):
    data = make_csv(tmp_path / "d.csv")
    work = tmp_path / "work"
    D.distill(data, tmp_path / "m.npz", base=tiny_base, teacher_options=TEACHER, work=str(work),
              **{**STUDENT, "lams": (1.0,), "epochs": 1})
    before = _digest(work)
    monkeypatch.setattr(precision, "bf16_support", lambda device: (True, "forced in the test"))
    out = tmp_path / "res" / "teacher_bf16.md"
    teacher_bf16.main(["--work", str(work), "--limit", "40", "--steps", "2", "--batch", "8", "--out", str(out)])
    res = json.loads(out.with_suffix(".json").read_text())
    (r,) = res["results"]
    assert r["n"] == 40 and r["bf16_supported"] and r["stage"].startswith("labels-")
    assert 0 <= r["bf16_vs_float32"]["agreement"] <= 1 and 0 <= r["bf16_vs_stage"]["agreement"] <= 1
    assert r["bf16_vs_float32"]["max_dp"] < 0.1
    assert r["float32_vs_stage"]["max_dp"] < 1e-6  # the same job in float32: the stage's labels
    assert r["seconds"]["float32"] > 0 and r["seconds"]["bfloat16"] > 0 and r["speedup"] > 0
    assert r["step"]["answers"] == 8 and r["step"]["float32_ms"] > 0 and r["step"]["bfloat16_ms"] > 0
    assert "avx512_bf16" in res["machine"]["flags"] and res["command"].startswith("python benchmarks/teacher_bf16.py")
    assert "| work `labels-" in out.read_text()
    assert _digest(work) == before  # the stage's files only read


def test_the_runner_says_where_bf16_is_not_supported(tmp_path, monkeypatch):
    monkeypatch.setattr(precision, "bf16_support", lambda device: (False, "CPU without AVX-512 BF16 or AMX BF16"))
    res = {"row": "x", "stage": "labels-0", "n": 3, "bf16_supported": False, "limit": None, "step": None,
           "bf16_hardware": "CPU without AVX-512 BF16 or AMX BF16", "seconds": {"float32": 1.0},
           "float32_vs_stage": {"max_dp": 0.0, "agreement": 1.0}}
    mach = {**teacher_bf16.machine(), "load_end": [0, 0, 0]}
    page = teacher_bf16.render([res, {"row": "y", "note": "no finished labels stage in y"}], mach, "cmd", "today")
    assert "| x `labels-0` | 3 | not supported |" in page and "**bfloat16 not supported here**" in page
    assert "| y | no finished labels stage in y |" in page
    assert teacher_bf16.labels_stages(str(tmp_path)) == []
