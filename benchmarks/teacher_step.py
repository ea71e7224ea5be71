"""The teacher's fine-tuning step on a CPU: where its time goes, plain AdamW loop vs fused.

    python benchmarks/teacher_step.py DATA.csv [DATA2.csv …] [--text-col text] [--steps 24] [--rounds 3] [--threads 2]

For each data file: fine-tunes all-MiniLM-L6-v2 (a fresh 4-class head) on its first ``16 × steps`` answers in length-bucketed batches of 16 (as ``teacher_export.finetune.fine_tune`` does),
timing each part of a step: forward, backward, gradient clipping, the optimiser's step. The two
optimisers take turns, ``rounds`` times each (plain, fused, plain, fused, …: a machine whose speed
drifts slows both alike), each from the same initial weights; the first two steps of every run are
not timed (warm-up). Writes ``benchmarks/results/teacher_step.md``. Needs the ``[teacher]`` extra.
"""
from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

PARTS = ("forward", "backward", "clip", "optimiser")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="+")
    ap.add_argument("--text-col", default="text")
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "teacher_step.md"))
    args = ap.parse_args(argv)
    import torch
    import transformers

    from teacher_export.finetune import _collate, adamw, encode, fresh_copy, train_batches
    from teacher_export.model import load_classifier, load_tokenizer, resolve_base

    torch.set_num_threads(args.threads)
    base = resolve_base(None)
    tok = load_tokenizer(base)
    torch.manual_seed(0)
    model0 = load_classifier(base, num_labels=4)
    makers = {"plain AdamW loop": lambda g: torch.optim.AdamW(g, lr=5e-5, foreach=False),
              "fused AdamW (teacher_export.finetune.adamw)": lambda g: adamw(g, 5e-5)}
    lines = ["# The teacher's fine-tuning step on a CPU", "",
             f"`python benchmarks/teacher_step.py {' '.join(os.path.basename(d) for d in args.data)} --steps {args.steps} "
             f"--rounds {args.rounds} --threads {args.threads}` on {time.strftime('%Y-%m-%d', time.gmtime())}: "
             f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, transformers "
             f"{transformers.__version__}. all-MiniLM-L6-v2 (22.7M weights) with a 4-class head, batches of 16 "
             f"answers (length-bucketed), {args.steps - 2} timed steps per run, the two optimisers taking turns "
             f"{args.rounds} times. Seconds per step (mean).", "",
             "| answers | word pieces per batch | optimiser | forward | backward | clip | optimiser step | step | vs plain |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for path in args.data:
        with open(path, newline="", encoding="utf-8") as f:
            texts = [r[args.text_col] for _, r in zip(range(16 * args.steps), csv.DictReader(f))]
        enc = encode(tok, texts, None, 128)
        y = torch.as_tensor(np.arange(len(texts)) % 4)
        batches = train_batches([len(s) for s in enc["input_ids"]], 16, np.random.default_rng(0))
        tokens = float(np.mean([sum(len(enc["input_ids"][i]) for i in b) for b in batches]))
        times = {name: {p: [] for p in PARTS} for name in makers}
        for r in range(args.rounds):
            for name, make in makers.items():
                model = fresh_copy(model0).train()
                opt = make([{"params": list(model.parameters()), "weight_decay": 0.01}])
                for k, pos in enumerate(batches):
                    batch = _collate(enc, pos, tok.pad_token_id or 0, "cpu")
                    t0 = time.perf_counter()
                    loss = torch.nn.functional.cross_entropy(model(**batch).logits, y[pos])
                    t1 = time.perf_counter()
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    t2 = time.perf_counter()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                    t3 = time.perf_counter()
                    opt.step()
                    t4 = time.perf_counter()
                    if k >= 2:
                        for p, dt in zip(PARTS, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                            times[name][p].append(dt)
                print(f"{os.path.basename(path)} round {r + 1}: {name}: {np.mean(times[name]['optimiser']):.3f} s "
                      "per optimiser step so far", file=sys.stderr, flush=True)
        mean = {n: {p: float(np.mean(v)) for p, v in t.items()} for n, t in times.items()}
        plain = sum(mean["plain AdamW loop"].values())
        for n, m in mean.items():
            tot = sum(m.values())
            lines.append(f"| {os.path.basename(path)} | {tokens:.0f} | {n} | {m['forward']:.3f} | {m['backward']:.3f} | "
                         f"{m['clip']:.3f} | {m['optimiser']:.3f} | {tot:.3f} | {plain / tot:.2f}× |")
    with open(args.out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
