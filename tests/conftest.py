"""Shared test helpers and fixtures.

Helpers are plain functions imported by the test modules (``from conftest import ...``);
``slow`` marks the long tests (``python -m pytest -m "not slow"`` skips them).
"""
import csv

import numpy as np
import pytest


def write_csv(path, rows, header=None):
    """Write dict rows to a UTF-8 CSV with a header; returns the path as a string."""
    header = header or list(rows[0])
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, header)
        w.writeheader()
        w.writerows(rows)
    return str(path)


def read_csv(path):
    """The dict rows of a UTF-8 CSV with a header."""
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def numgrad(f, a, eps=1e-6):
    """Central differences of scalar f() with respect to array a (modified in place, then restored)."""
    g = np.zeros_like(a)
    for i in np.ndindex(a.shape):
        old = a[i]
        a[i] = old + eps
        fp = f()
        a[i] = old - eps
        fm = f()
        a[i] = old
        g[i] = (fp - fm) / (2 * eps)
    return g


def run_cli(capsys, *args):
    """``tinykd`` with these arguments: (exit status, stdout, stderr)."""
    from tinykd.cli.commands import main

    rc = main([str(a) for a in args])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def assert_user_error(rc, err, *needles):
    """Exit status 2 and one line ``tinykd: error: …`` holding every needle."""
    assert rc == 2, err
    last = err.rstrip("\n").split("\n")[-1]  # progress notes may come first; the error is one line
    assert last.startswith("tinykd: error: ") and err.endswith(last + "\n"), err
    assert "Traceback" not in err
    for n in needles:
        assert n in last, (n, err)


@pytest.fixture
def rng():
    return np.random.default_rng(7)


# a tiny randomly initialised BERT built locally (no network, seconds), for the teacher's tests
WORDS = {"0": ["acid", "rain", "marble", "dissolves"], "1": ["water", "cup", "vinegar", "size"],
         "2": ["sun", "dog", "lid", "heat"]}
FILLER = ["the", "a", "is", "because", "it", "more", "less", "and"]


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    folder = tmp_path_factory.mktemp("tiny-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + FILLER + sorted(w for ws in WORDS.values() for w in ws) \
        + ["what", "happens", "explain", "why"]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = transformers.BertTokenizer.from_pretrained(str(folder))
    assert tok.convert_tokens_to_ids("marble") == vocab.index("marble")  # the file was read
    tok.save_pretrained(str(folder))
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=64, max_position_embeddings=64)
    transformers.BertModel(cfg).save_pretrained(str(folder))
    return str(folder)


# ---------------------------------------------------------------- exports (ONNX, web page)
def scientsbank_rows():
    """The bundled SciEntsBank demo rows (CC BY-SA): dicts with id, item, split, label, text, question."""
    import gzip
    import os

    import tinykd

    path = os.path.join(os.path.dirname(tinykd.__file__), "data", "scientsbank-demo.csv.gz")
    with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def export_student(preset, texts, classes=(0, 1, 2), temperature=0.7, seed=1, uses_context=False, contexts=None):
    """A student of ``preset`` for the export tests: the vocabulary fitted on real answers, the
    network randomly initialised and perturbed (so that its probabilities spread from 0 to 1), and a
    calibration temperature that is not 1."""
    from tinykd.nn.network import StudentNet, make_config
    from tinykd.scoring.student import Student
    from tinykd.scoring.text import Vocabulary

    cfg = make_config(preset)
    vocab = Vocabulary(cfg["max_vocab"], max_len=cfg["max_len"]).fit(texts, contexts if uses_context else None)
    net = StudentNet(cfg, len(vocab), len(classes), seed=seed)
    net.params[:] += np.random.default_rng(seed).normal(0, 0.3, net.size).astype(np.float32)
    return Student(vocab, net, list(classes), {"calibration": {"method": "temperature", "temperature": temperature},
                                               "uses_context": uses_context, "preset": preset})


def model_contents(model):
    """A model's file contents (metadata, arrays) less what differs between equal runs: the seconds
    training took and, for a distilled student, the work folder's path (its teacher folder's name kept)."""
    import os

    from tinykd.scoring.modelfile import read_bytes

    meta, arrays = read_bytes(model.to_bytes())
    for st in meta["students"].values():
        st["meta"]["training"].pop("seconds")
        for h in st["meta"]["history"]:
            h.pop("seconds")
        d = st["meta"].get("distill")
        if d:
            d["teacher"] = os.path.basename(os.path.dirname(d["teacher"]))
    return meta, arrays
