"""Scoring a saved model imports NumPy and Numba only: never scikit-learn (over a second and
~80 MB to import), matplotlib (the optional [report] extra), onnx (the [export] extra), the [dask] extra
(dask, distributed, pandas, pyarrow) or torch; training without --dask never imports Dask. (SciPy is not
checked: Numba itself imports it when it is installed.)"""
import csv
import json
import subprocess
import sys

import numpy as np
import pytest

import tinykd

DASK = ["dask", "distributed", "pandas", "pyarrow", "tinykd.cluster.tasks", "tinykd.cluster.frames"]
HEAVY = DASK + ["sklearn", "matplotlib", "torch", "transformers", "onnx", "onnxruntime", "tinykd.estimator",
         "tinykd.quality.metrics", "tinykd.quality.report", "tinykd.quality.plots", "tinykd.export.onnx_graph", "tinykd.export.page"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp("iw")
    texts = ["acid rain dissolves marble", "the rock is wet", "acid reacts", "nothing happens"] * 5
    st = tinykd.fit(texts * 2, np.arange(40) % 2, config=dict(embed_dim=8, units=8, dense_units=8), epochs=1,
                    verbose=False, validation=(texts * 2, np.arange(40) % 2))  # 40 rows: calibrated
    p = d / "m.npz"
    st.save(p)
    data = d / "d.csv"
    with open(data, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text"])
        w.writerows([["acid rain"], [""], ["rock"]])
    return str(p), str(data), str(d / "scored.csv")


def _loaded(code, heavy=HEAVY):
    code += f"\nimport sys, json; print(json.dumps([m for m in {heavy!r} if m in sys.modules]))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_import_tinykd_imports_no_heavy_module():
    assert _loaded("import tinykd") == []


def test_load_and_predict_import_no_heavy_module(model):
    path, _, _ = model
    assert _loaded(f"import tinykd\nm = tinykd.load({path!r})\nprint(m.predict(['acid rain', '']))") == []


def test_cli_score_imports_no_heavy_module(model):
    path, data, out = model
    code = f"from tinykd.cli.commands import main\nassert main(['score', {path!r}, {data!r}, '--out', {out!r}]) == 0"
    assert _loaded(code) == []
    with open(out) as f:
        assert len(list(csv.DictReader(f))) == 3


def test_cli_score_target_accuracy_imports_no_heavy_module(model):
    path, data, out = model
    assert tinykd.load(path).meta["calibration"]["method"] == "temperature"
    code = (f"from tinykd.cli.commands import main\n"
            f"assert main(['score', {path!r}, {data!r}, '--out', {out!r}, '--target-accuracy', '0.5']) == 0")
    assert _loaded(code) == []


def test_info_imports_no_heavy_module(model):
    path, _, _ = model
    assert _loaded(f"from tinykd.cli.commands import main\nassert main(['info', {path!r}]) == 0") == []


def test_cli_train_and_evaluate_import_no_dask(model, tmp_path):
    """(scikit-learn itself imports pandas, and through it pyarrow, when they are installed: only Dask is checked)"""
    data = tmp_path / "t.csv"
    with open(data, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "label", "item"])
        w.writerows([[f"acid rain {i}", i % 2, "ab"[i % 4 // 2]] for i in range(24)])
    out = str(tmp_path / "m.npz")
    code = (f"from tinykd.cli.commands import main\nassert main(['train', {str(data)!r}, '--item-col', 'item', '--epochs', '1', "
            f"'--out', {out!r}, '-q']) == 0\nassert main(['evaluate', {out!r}, {str(data)!r}]) == 0")
    assert _loaded(code, [m for m in DASK if m not in ("pandas", "pyarrow")]) == []
