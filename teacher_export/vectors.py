"""Word vectors of a fine-tuned teacher, for the students' embeddings (``tinykd-teacher vectors``).

Each distinct word of a file's answers (tinykd's tokenizer, :func:`tinykd.scoring.text.tokenize`: the words a
student's vocabulary holds) is read alone, ``[CLS] word [SEP]``, and its vector is the mean of the teacher's
last hidden state over the word's pieces. A student starts the rows of its embedding from them
(:func:`tinykd.nn.embedding.pretrained_rows`; docs/decisions/student-teacher-vectors.md).
"""
from __future__ import annotations

import io
import os

import numpy as np
import torch

from tinykd.files.atomic import atomic_write_bytes
from tinykd.files.csvfiles import read_table
from tinykd.scoring.text import tokenize

from .finetune import log, pick_device
from .model import load_classifier, load_tokenizer

#: words read per forward pass
BATCH = 512


def words_of(texts):
    """The distinct words of ``texts`` as a student's tokenizer reads them, sorted."""
    return sorted({w for t in texts for w in tokenize(t)})


def whole_words(tokenizer):
    """The whole words of a teacher's tokenizer: its entries of two or more letters that tinykd's tokenizer
    reads as one word (no ``##`` pieces, no ``[unused]`` marks, no numbers), sorted."""
    return sorted(w for w in tokenizer.get_vocab() if len(w) > 1 and w.isalpha() and tokenize(w) == [w])


def word_vectors(model, tokenizer, words, device=None):
    """(len(words), hidden) float32: per word the mean of ``model``'s last hidden state over its pieces."""
    device = device or torch.device("cpu")
    out = []
    with torch.no_grad():
        for i in range(0, len(words), BATCH):
            enc = tokenizer(list(words[i:i + BATCH]), padding=True, return_tensors="pt").to(device)
            h = model(**enc).last_hidden_state
            pieces = enc["attention_mask"].clone()
            pieces[:, 0] = 0  # [CLS]
            pieces[torch.arange(len(pieces)), enc["attention_mask"].sum(1) - 1] = 0  # [SEP]
            n = pieces.sum(1, keepdim=True).clamp(min=1)
            out.append(((h * pieces[..., None]).sum(1) / n).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, model.config.hidden_size), np.float32)


def run_vectors(*, teacher, data, out, text_col="text", name="vectors", device=None, threads=None,
                tokenizer_words=False):
    """``out/<name>.npz`` (``words``, ``vectors`` float32) for the words of ``data``'s ``text_col`` (and with
    ``tokenizer_words`` those of the teacher's tokenizer, :func:`whole_words`), from the fine-tuned
    ``teacher`` folder. Returns ``{"path", "words", "dim"}``."""
    if threads:
        torch.set_num_threads(int(threads))
    device = pick_device(device)
    words = words_of(read_table(data).column(text_col, "--text-col"))
    tokenizer = load_tokenizer(teacher)
    if tokenizer_words:
        words = sorted(set(words) | set(whole_words(tokenizer)))
    model = load_classifier(teacher).base_model.to(device).eval()
    vectors = word_vectors(model, tokenizer, words, device)
    buf = io.BytesIO()
    np.savez(buf, words=np.array(words, dtype=str), vectors=vectors.astype(np.float32))
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, f"{name}.npz")
    atomic_write_bytes(path, buf.getvalue())
    log(f"wrote {path}: {len(words):,} words × {vectors.shape[1]}")
    return {"path": path, "words": len(words), "dim": int(vectors.shape[1])}
