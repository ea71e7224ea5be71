"""(Maintainers) rebuild the files ``tinykd demo`` bundles under ``tinykd/data/``.

    W=runs/distill/scientsbank-ua   # benchmarks/distill_table.py's SciEntsBank row
    python benchmarks/build_demo_data.py ../shared/data/scientsbank/scientsbank.csv \
        --teacher $W/teacher-*/teacher.csv --transfer $W/labels-*/labels.csv --teacher-dir $W/teacher-*/teacher \
        --vectors $W/vectors-*/vectors.npz

Copies the SciEntsBank ``train`` and ``test_ua`` answers (CC BY-SA 3.0), the probabilities that
``tinykd distill``'s teacher gave them and its transfer set (the perturbed copies of the training
answers: ids and numbers only; ``tinykd demo`` makes the copies again); ``--teacher-dir`` adds the
teacher's parameter count, size and measured time per answer (in a separate process: tinykd never
imports torch); ``--vectors`` (the work folder's vectors stage: the teacher's word vectors) the aliases of
distill's "unseen" stage for the demo's KD student: each word of the vectors that none of its training answers,
reference answers or copies holds, and the word of its vocabulary whose vector is nearest (cosine). The demo's
vocabulary is the one ``fit`` gives its full run (:func:`tinykd.train.fitting.fit_vocabulary` on the demo's
own rows and copies), so only ``word, reads_as`` pairs are bundled. ``--crossfit``: out-of-fold probabilities
for the training rows instead. ``--vectors`` without ``--teacher``: the aliases alone, for the bundled files.
"""
from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import os
import subprocess
import sys
import tempfile

from tinykd.files.atomic import atomic_write_bytes
from tinykd.cli.demo import (ALIASES_FILE, COLUMNS, CONTEXT, DATA_DIR, DATA_FILE, FULL, TEACHER_FILE, TEACHER_META,
                             TEST_SPLIT, TRANSFER_FILE, _Data, _transfer, seen_words)
from tinykd.files.softlabels import read_sidecar, read_soft_label_table

from teacher_export.model import safetensors_params


def teacher_stats(teacher_dir, pairs, threads=2):
    """Parameters and size of a saved teacher folder, and its scoring time per response on
    ``pairs`` [(answer, context)], measured in a separate process (tinykd never imports torch)."""
    weights = os.path.join(teacher_dir, "model.safetensors")
    stats = {"n_params": safetensors_params(weights), "size_bytes": os.path.getsize(weights)}
    with tempfile.TemporaryDirectory() as tmp:
        pf = os.path.join(tmp, "pairs.json")
        with open(pf, "w", encoding="utf-8") as f:
            json.dump(pairs, f)
        r = subprocess.run([sys.executable, "-m", "teacher_export.timing", teacher_dir, pf, str(threads)],
                           capture_output=True, text=True, timeout=1800)
        if r.returncode != 0:
            raise RuntimeError(f"teacher timing failed: {r.stderr.strip().splitlines()[-1:]}")
        stats.update(json.loads(r.stdout.strip().splitlines()[-1]))
    stats["timing"] = (f"batches of 32, dynamic padding, {threads} CPU threads, on the project's build machine "
                       f"({len(pairs)} {TEST_SPLIT} answers)")
    return stats


def write_transfer(transfer, classes, data_dir):
    """The transfer set's probabilities (copies' ids ``<answer id>~aug<k>`` only) as the bundled file;
    its row count."""
    ids, t_classes, p = read_soft_label_table(transfer)
    if t_classes != classes:
        raise ValueError(f"transfer classes {t_classes} differ from teacher classes {classes}")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id"] + [f"p_{c}" for c in classes])
    n = 0
    for i, row in zip(ids, p):
        if "~aug" in i:
            w.writerow([i] + ["%.6g" % v for v in row])
            n += 1
    atomic_write_bytes(os.path.join(data_dir, TRANSFER_FILE), gzip.compress(buf.getvalue().encode("utf-8"), 9, mtime=0))
    return n


def write_aliases(vectors_npz, data_dir):
    """The demo's alias pairs (see the module's text) as the bundled file; their count."""
    from tinykd.distill.students import alias_unread
    from tinykd.train.fitting import fit_vocabulary

    data = _Data(data_dir, False, os.path.join(data_dir, TRANSFER_FILE))
    kd = _transfer(data, os.path.join(data_dir, TRANSFER_FILE), os.path.join(data_dir, TEACHER_FILE), FULL.seed)
    texts, _, contexts = kd["transfer"]
    vocab = fit_vocabulary(FULL.network(), data.texts + list(texts), data.contexts + list(contexts))
    alias_unread(vocab, vectors_npz, seen_words(data, kd))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["word", "reads_as"])
    w.writerows([word, vocab.tokens[i]] for word, i in sorted(vocab.aliases.items()))
    atomic_write_bytes(os.path.join(data_dir, ALIASES_FILE), gzip.compress(buf.getvalue().encode("utf-8"), 9, mtime=0))
    return len(vocab.aliases)


def build(source, teacher=None, crossfit=None, data_dir=DATA_DIR, teacher_dir=None, transfer=None, vectors=None):
    """Write the bundled files from the SciEntsBank CSV and the teacher's soft-label files.

    ``teacher``: the teacher's soft-label CSV (``benchmarks/teacher/scientsbank.csv``);
    ``crossfit``: optional out-of-fold probabilities for the training rows. Only ids and
    probabilities are copied; the sidecar's metadata goes to ``scientsbank-demo-teacher.json``."""
    with open(source, encoding="utf-8", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] in ("train", TEST_SPLIT)]
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows:
        w.writerow([r["id"], r["item"], r["split"], r["label3"], r["text"], r["question"], r["reference_answer"]])
    atomic_write_bytes(os.path.join(data_dir, DATA_FILE), gzip.compress(buf.getvalue().encode("utf-8"), 9, mtime=0))
    if teacher is None:
        if vectors:  # the aliases alone, beside the bundled teacher files as they are
            path = os.path.join(data_dir, TEACHER_META)
            with open(path, encoding="utf-8") as f:
                meta = json.load(f)
            meta["aliases"] = write_aliases(vectors, data_dir)
            atomic_write_bytes(path, (json.dumps(meta, indent=2) + "\n").encode("utf-8"))
        return
    ids, classes, p = read_soft_label_table(teacher)
    pos = {i: k for k, i in enumerate(ids)}
    cf = None
    if crossfit:
        cids, cclasses, cp = read_soft_label_table(crossfit)
        if cclasses != classes:
            raise ValueError(f"crossfit classes {cclasses} differ from teacher classes {classes}")
        cf = {i: cp[k] for k, i in enumerate(cids)}
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id"] + [f"p_{c}" for c in classes])
    missing = []
    n_cf = 0
    for r in rows:
        if r["split"] == "train" and cf is not None and r["id"] in cf:
            row, n_cf = cf[r["id"]], n_cf + 1
        elif r["id"] in pos:
            row = p[pos[r["id"]]]
        else:
            missing.append(r["id"])
            continue
        w.writerow([r["id"]] + ["%.6g" % v for v in row])
    if missing:
        raise ValueError(f"the teacher file has no rows for {len(missing)} ids, e.g. {missing[:3]}")
    atomic_write_bytes(os.path.join(data_dir, TEACHER_FILE), gzip.compress(buf.getvalue().encode("utf-8"), 9, mtime=0))
    side = read_sidecar(teacher)
    meta = {"source": os.path.basename(teacher), "crossfit_source": os.path.basename(crossfit) if crossfit else None,
            "train_rows_crossfitted": n_cf, "classes": classes, "sidecar": side,
            "transfer_rows": write_transfer(transfer, classes, data_dir) if transfer else 0}
    meta["aliases"] = write_aliases(vectors, data_dir) if vectors else 0  # after the transfer file it reads
    meta["base_model_name"] = "MiniLM-L6, fine-tuned" if "minilm" in str(side.get("base_model", "")).lower() \
        else side.get("base_model")
    if teacher_dir:
        pairs = [[r["text"], r[CONTEXT]] for r in rows if r["split"] == TEST_SPLIT]
        meta.update(teacher_stats(teacher_dir, pairs))
    atomic_write_bytes(os.path.join(data_dir, TEACHER_META), (json.dumps(meta, indent=2) + "\n").encode("utf-8"))


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python benchmarks/build_demo_data.py", description=__doc__.splitlines()[0])
    ap.add_argument("source", help="shared/data/scientsbank/scientsbank.csv")
    ap.add_argument("--teacher", help="benchmarks/teacher/scientsbank.csv")
    ap.add_argument("--crossfit", help="benchmarks/teacher/scientsbank-crossfit.csv")
    ap.add_argument("--teacher-dir", help="the saved teacher folder: parameters, size and timing")
    ap.add_argument("--transfer", help="distill's labels.csv: the teacher's probabilities of the copies")
    ap.add_argument("--vectors", help="distill's vectors.npz: the teacher's word vectors, for the aliases")
    args = ap.parse_args(argv)
    build(args.source, args.teacher, args.crossfit, teacher_dir=args.teacher_dir, transfer=args.transfer,
          vectors=args.vectors)
    return 0


if __name__ == "__main__":
    sys.exit(main())
