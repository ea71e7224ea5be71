"""tinykd export --onnx: ONNX Runtime gives tinykd's probabilities (max |Δp| ≤ 1e-5) on real answers, for
every preset and for a per-item bundle; padding changes nothing; the JSON beside the graph is enough to
encode the answers; the [export] extra stays optional."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import assert_user_error, export_student, run_cli, scientsbank_rows

import tinykd
from tinykd.nn.network import PRESETS
from tinykd.scoring.text import Vocabulary

onnx = pytest.importorskip("onnx", reason="the [export] extra (onnx) is not installed")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (the [test] extra)")

ROWS = scientsbank_rows()
TEXTS = [r["text"] for r in ROWS]
N = 1000
TOL = 1e-5


def module(row):
    """The SciEntsBank module of a row (its item's prefix: ME_73 → ME)."""
    return row["item"].split("_")[0]


def _session(path):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def _run(sess, ids, lengths):
    return sess.run(["proba", "logits"], {"ids": ids.astype(np.int64), "lengths": lengths.astype(np.int32)})


def _vocab(entry):
    aliases = entry["aliases"]
    return Vocabulary.from_tokens(entry["tokens"], {"max_len": entry["tokenizer"]["max_len"]},
                                  (list(aliases), list(aliases.values())))


@pytest.fixture(scope="module")
def texts():
    rng = np.random.default_rng(17)
    pick = [TEXTS[i] for i in rng.choice(len(TEXTS), N - 3, replace=False)]
    return pick + ["", "zzzz qqqq", "İstanbul's café — 42 émigrés"]  # empty, all-OOV, odd characters


@pytest.mark.parametrize("preset", list(PRESETS))
def test_onnx_runtime_matches_tinykd(preset, texts, tmp_path):
    st = export_student(preset, TEXTS, temperature=0.7 if preset != "gelatin" else 1.9)
    if preset == "bathtub":  # aliases (docs/decisions/student-aliases.md): the JSON's consumer reads them too
        words = st.vocab.tokens[3:] + ["zzzz", "qqqq", "émigrés"]
        st.vocab.alias(words, np.random.default_rng(1).normal(size=(len(words), 5)))
        assert len(st.vocab.aliases) == 3
    path = tmp_path / "scorer.onnx"
    written = tinykd_export_onnx(st, path, review_below=0.55)
    assert written == [str(tmp_path / "scorer.json"), str(path)]
    meta = json.loads((tmp_path / "scorer.json").read_text(encoding="utf-8"))
    assert meta["classes"] == [0, 1, 2] and meta["temperature"] == st.temperature and meta["review_below"] == 0.55
    assert meta["graph"] == "scorer.onnx" and meta["config"]["rnn"] == PRESETS[preset]["rnn"]
    ids, lengths = _vocab(meta).encode(texts)  # the JSON alone encodes as the student does
    ids0, lengths0 = st.encode(texts)
    assert np.array_equal(ids, ids0) and np.array_equal(lengths, lengths0) and lengths.min() == 0
    assert (ids[-2, :2] > 2).all() == bool(st.vocab.aliases)  # "zzzz qqqq": aliases, else OOV
    want = st.predict_proba(texts)
    assert want.max() > 0.8 and want.min() < 0.1  # the probabilities spread: a real test of the network
    sess = _session(str(path))
    got, logits = _run(sess, ids, lengths)
    assert got.dtype == np.float32 and got.shape == want.shape
    print(f"{preset}: max |Δp| {float(np.abs(got - want).max()):.2e}")
    assert float(np.abs(got - want).max()) <= TOL, float(np.abs(got - want).max())
    raw = st.predict_proba(texts, calibrated=False)  # the logits are the raw ones: T is applied once, in the graph
    assert float(np.abs(tinykd.scoring.calibration.calibrated_proba(logits, 1.0) - raw).max()) <= TOL
    # padding: more PAD columns (and other ids beyond the lengths) change nothing
    wide = np.pad(ids, ((0, 0), (0, 9)), constant_values=0)
    wide[:, ids.shape[1]:] = 5
    assert float(np.abs(_run(sess, wide, lengths)[0] - got).max()) <= 1e-7
    empty = _run(sess, np.zeros((3, 1), np.int64), np.zeros(3, np.int32))[0]  # a batch of empty answers only
    assert float(np.abs(empty - st.predict_proba(["", " ", "!!"])).max()) <= TOL
    one = np.concatenate([_run(sess, ids[k:k + 1, :max(1, lengths[k])], lengths[k:k + 1])[0] for k in range(20)])
    assert float(np.abs(one - got[:20]).max()) <= 1e-6  # a batch of one, unpadded: the same
    # ... and the review flag is the one tinykd score writes
    from tinykd.scoring.scorer import decide

    assert np.array_equal(decide(got, meta["review_below"])[2], decide(want, 0.55)[2])


def test_the_comparison_can_fail(texts, tmp_path):
    """A graph with the gate order of ONNX ignored (tinykd's order as is) is caught."""
    from tinykd.export import onnx_graph as eo

    st = export_student("7t", TEXTS)
    path = tmp_path / "bad.onnx"
    old = eo._ONNX_GATES
    eo._ONNX_GATES = (0, 1, 2, 3)
    try:
        eo.export_onnx(st, path)
    finally:
        eo._ONNX_GATES = old
    ids, lengths = st.encode(texts[:200])
    got = _run(_session(str(path)), ids, lengths)[0]
    assert float(np.abs(got - st.predict_proba(texts[:200])).max()) > 1e-2


def tinykd_export_onnx(model, path, **kw):
    from tinykd.export.onnx_graph import export_onnx

    return export_onnx(model, path, **kw)


def test_bundle_exports_one_graph_per_item_and_an_index(tmp_path):
    # the bundle's items: three SciEntsBank modules (ME, MX, SE: 2,296 answers; its items have ~40 each)
    rows = [dict(r, module=module(r)) for r in ROWS if module(r) in ("ME", "MX", "SE")]
    items = ["ME", "MX", "SE"]
    students = {}
    for k, it in enumerate(items):
        mine = [r for r in rows if r["module"] == it]
        presets = ["bathtub", "7t", "falling_weights"]
        classes = [0, 1, 2] if k != 1 else ["low", "high"]
        students[it] = export_student(presets[k], [r["text"] for r in mine], classes=classes, seed=k + 3,
                                      temperature=0.6 + k, uses_context=k == 2,
                                      contexts=[r["question"] for r in mine])
    bundle = tinykd.Bundle(students, item_col="module")
    saved = tmp_path / "b.npz"
    bundle.save(saved)
    bundle = tinykd.load(saved)
    rc_paths = tinykd_export_onnx(bundle, tmp_path / "scorer.onnx")
    assert rc_paths == [str(tmp_path / "scorer.json")] + [str(tmp_path / f"scorer.item{k}.onnx") for k in range(3)]
    assert not (tmp_path / "scorer.onnx").exists()
    index = json.loads((tmp_path / "scorer.json").read_text(encoding="utf-8"))
    assert index["item_col"] == "module" and [e["item"] for e in index["items"]] == items
    rng = np.random.default_rng(3)
    pick = [rows[i] for i in rng.choice(len(rows), N, replace=False)]
    worst, n = 0.0, 0
    for entry in index["items"]:
        mine = [r for r in pick if r["module"] == entry["item"]]
        st = bundle.students[entry["item"]]
        assert entry["classes"] == st.classes and entry["uses_context"] == st.uses_context
        ctx = [r["question"] for r in mine] if entry["uses_context"] else None
        ids, lengths = _vocab(entry).encode([r["text"] for r in mine], ctx)
        got = _run(_session(str(tmp_path / entry["graph"])), ids, lengths)[0]
        want = st.predict_proba([r["text"] for r in mine], ctx)
        worst, n = max(worst, float(np.abs(got - want).max())), n + len(mine)
    print(f"bundle: max |Δp| {worst:.2e} over {n} answers")
    assert n == len(pick) and worst <= TOL, worst


def test_cli_export_onnx(tmp_path, capsys):
    st = export_student("falling_weights", TEXTS[:500])
    model = tmp_path / "m.npz"
    st.save(model)
    rc, out, err = run_cli(capsys, "export", model, "--onnx", tmp_path / "s.onnx", "--review-below", "0.7")
    assert rc == 0, err
    assert f"wrote {tmp_path / 's.onnx'} (" in out and f"wrote {tmp_path / 's.json'} (" in out
    assert json.loads((tmp_path / "s.json").read_text(encoding="utf-8"))["review_below"] == 0.7
    assert onnx.load(str(tmp_path / "s.onnx")).graph.node  # a readable graph


def test_cli_export_errors(tmp_path, capsys):
    st = export_student("7t", TEXTS[:300])
    model = tmp_path / "m.npz"
    st.save(model)
    rc, _, err = run_cli(capsys, "export", model)
    assert_user_error(rc, err, "--onnx", "--web")
    rc, _, err = run_cli(capsys, "export", model, "--onnx", tmp_path / "x.onnx", "--review-below", "1.5")
    assert_user_error(rc, err, "--review-below")
    os.symlink(tmp_path / "elsewhere.onnx", tmp_path / "link.onnx")
    rc, _, err = run_cli(capsys, "export", model, "--onnx", tmp_path / "link.onnx")
    assert_user_error(rc, err, "symbolic link")
    (tmp_path / "d.json").mkdir()  # the JSON beside the graph would replace a folder: refused, nothing written
    rc, _, err = run_cli(capsys, "export", model, "--onnx", tmp_path / "d.onnx")
    assert_user_error(rc, err, "d.json")
    assert not (tmp_path / "d.onnx").exists()
    rc, _, err = run_cli(capsys, "export", tmp_path / "missing.npz", "--onnx", tmp_path / "y.onnx")
    assert_user_error(rc, err, "missing.npz")


def test_without_onnx_the_cli_says_how_to_install_it(tmp_path):
    st = export_student("7t", TEXTS[:300])
    model = tmp_path / "m.npz"
    st.save(model)
    code = ("import sys; sys.modules['onnx'] = None\nfrom tinykd.cli.commands import main\n"
            f"sys.exit(main(['export', {str(model)!r}, '--onnx', {str(tmp_path / 'x.onnx')!r}]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.startswith("tinykd: error: ") and "tinykd[export]" in r.stderr, r.stderr
    assert not (tmp_path / "x.onnx").exists()
