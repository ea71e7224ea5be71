"""Smoke test of benchmarks/paper_table.py on a tiny slice (the real run is not part of CI)."""
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


@pytest.mark.slow
@pytest.mark.skipif(not (DATA / "scientsbank" / "scientsbank.csv").exists(), reason="../shared/data not present")
def test_paper_table_quick(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import paper_table

    assert paper_table.main(["--quick", "--workers", "1", "--tasks", "asap-1,scientsbank",
                             "--out", str(tmp_path)]) == 0
    js = json.loads((tmp_path / "paper_table_quick.json").read_text())
    rows = js["rows"]
    assert [(r["task"], r["split"]) for r in rows] == [
        ("asap-1", "test"), ("scientsbank", "test_ua"), ("scientsbank", "test_uq"), ("scientsbank", "test_ud")]
    for r in rows:
        nn = r["variants"]["NN"]
        assert 0.0 <= nn["accuracy"][0] <= 1.0 and nn["n_params"] > 1000
        assert 0.0 <= r["tfidf_lr"]["accuracy"] <= 1.0
        teacher_file = ROOT / "benchmarks" / "teacher" / (
            "scientsbank.csv" if r["task"] == "scientsbank" else "asap-sas-science-item1.csv")
        if teacher_file.exists():  # with committed soft labels the KD rows and the teacher row must be there
            assert "KD" in r["variants"] and r["teacher"]["n"] == r["n_test"]
    md = (tmp_path / "paper_table_quick.md").read_text()
    assert "| asap-sas-science | 1 test |" in md and "TF-IDF+LR" in md
