"""How fast can the teacher label the transfer set on a CPU, with its probabilities kept?

    python benchmarks/teacher_labelling.py TEACHER_DIR COPIES.csv [--n 3000] [--threads 2]

``TEACHER_DIR``: a folder written by ``tinykd-teacher fit`` (e.g. the ``teacher-*/teacher-teacher``
folder of a ``tinykd distill`` work folder); ``COPIES.csv``: answers with a ``text`` column (e.g. its
``copies-*/copies.csv``). Every path labels the same first ``n`` answers, length-sorted into batches
(dynamic padding); each is compared with full-precision PyTorch (the labels ``tinykd distill`` uses):
argmax agreement, mean |Δp| over all classes, and the share of answers whose logits are the
reference's bit for bit. Paths: PyTorch fp32 at batch sizes 16 / 64 / 128, the reference's batches in
``--threads`` worker processes of one torch thread each (:mod:`teacher_export.workers`, what
``tinykd-teacher export`` does on a CPU from 10,000 answers), PyTorch dynamic int8 (``torch.ao.quantization.quantize_dynamic`` on the encoder's Linear layers),
ONNX Runtime fp32 and ONNX Runtime dynamic int8 (per channel). Writes
``benchmarks/results/teacher_labelling.md``. Needs the ``[teacher]`` extra plus ``onnx onnxruntime``.
"""
from __future__ import annotations

import argparse
import copy
import csv
import os
import platform
import sys
import tempfile
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("teacher")
    ap.add_argument("copies")
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "teacher_labelling.md"))
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    import torch

    from teacher_export.finetune import _collate, encode, label_batches, predict_logits
    from teacher_export.workers import predict_logits_in_workers
    from teacher_export.model import load_classifier, load_tokenizer
    from tinykd.nn.dense import softmax

    torch.set_num_threads(args.threads)
    with open(args.copies, newline="", encoding="utf-8") as f:
        texts = [r["text"] for _, r in zip(range(args.n), csv.DictReader(f))]
    tok, model = load_tokenizer(args.teacher), load_classifier(args.teacher).eval()
    enc = encode(tok, texts, None, 128)
    pad = tok.pad_token_id or 0
    rows, ref, ref_z = [], None, None

    def record(name, fn):
        nonlocal ref, ref_z
        t = time.perf_counter()
        logits = fn()
        sec = time.perf_counter() - t
        p = softmax(logits)
        ref = p if ref is None else ref
        ref_z = logits if ref_z is None else ref_z
        rows.append((name, sec, len(texts) / sec, float(np.mean(p.argmax(1) == ref.argmax(1))),
                     float(np.abs(p - ref).mean()), float(np.mean((logits == ref_z).all(1)))))
        print(f"{name}: {sec:.1f} s", flush=True)

    record("PyTorch fp32, batch 64 (reference)", lambda: predict_logits(model, enc, None, batch_size=64, pad_id=pad))
    for bs in (16, 128):
        record(f"PyTorch fp32, batch {bs}", lambda bs=bs: predict_logits(model, enc, None, batch_size=bs, pad_id=pad))
    record(f"PyTorch fp32, batch 64, {args.threads} worker processes × 1 thread",
           lambda: predict_logits_in_workers(args.teacher, enc, label_batches(enc, np.arange(len(texts)), 64),
                                             model.config.num_labels, args.threads, 1, pad_id=pad))
    q = copy.deepcopy(model)
    q.bert.encoder = torch.ao.quantization.quantize_dynamic(q.bert.encoder, {torch.nn.Linear}, dtype=torch.qint8)
    record("PyTorch dynamic int8 (encoder Linear layers), batch 64",
           lambda: predict_logits(q, enc, None, batch_size=64, pad_id=pad))
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    names = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc or k == "attention_mask"]

    class Logits(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, *xs):
            return self.m(**dict(zip(names, xs))).logits

    order = np.argsort([len(x) for x in enc["input_ids"]], kind="stable")
    with tempfile.TemporaryDirectory() as d:
        sample = _collate(enc, list(range(4)), pad, "cpu")
        torch.onnx.export(Logits(model), tuple(sample[k] for k in names), os.path.join(d, "fp32.onnx"),
                          input_names=names, output_names=["logits"], opset_version=17, dynamo=False,
                          dynamic_axes={**{k: {0: "b", 1: "s"} for k in names}, "logits": {0: "b"}})
        quantize_dynamic(os.path.join(d, "fp32.onnx"), os.path.join(d, "int8.onnx"), weight_type=QuantType.QInt8,
                         per_channel=True)
        for f, label in (("fp32", "ONNX Runtime fp32"), ("int8", "ONNX Runtime dynamic int8 (per channel)")):
            so = ort.SessionOptions()
            so.intra_op_num_threads = args.threads
            sess = ort.InferenceSession(os.path.join(d, f + ".onnx"), so, providers=["CPUExecutionProvider"])

            def run(sess=sess):
                out = np.zeros((len(texts), model.config.num_labels))
                for s in range(0, len(order), 64):
                    pos = order[s:s + 64]
                    b = _collate(enc, pos, pad, "cpu")
                    out[pos] = sess.run(None, {k: b[k].numpy() for k in names})[0]
                return out
            record(label + ", batch 64", run)
    lines = ["# The teacher's labelling pass on a CPU", "",
             f"`python benchmarks/teacher_labelling.py TEACHER COPIES.csv --n {args.n} --threads {args.threads}` on "
             f"{time.strftime('%Y-%m-%d', time.gmtime())}: {platform.machine()}, {os.cpu_count()} cores, "
             f"torch {torch.__version__}, onnxruntime {ort.__version__}. {len(texts):,} perturbed copies of ASAP-SAS "
             f"item 1 answers (mean {np.mean([len(x) for x in enc['input_ids']]):.1f} word pieces), teacher fine-tuned "
             "from all-MiniLM-L6-v2 by `tinykd distill`; batches length-sorted with dynamic padding. "
             "Agreement and |Δp| against the first row (the labels distill uses).", "",
             "| path | seconds | answers / s | speed vs reference | argmax agreement | mean abs Δp | logits bit for bit |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, sec, rate, agree, dp, same in rows:
        lines.append(f"| {name} | {sec:.1f} | {rate:.0f} | {rows[0][1] / sec:.2f}× | {agree:.4f} | {dp:.4f} | "
                     f"{same:.4f} |")
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
