"""The labelling pass over worker processes: each loads the saved teacher folder once, with its own
few torch threads, and computes whole batches of :func:`~teacher_export.finetune.label_batches`.

Why processes: much of a small BERT's forward pass is work torch does not spread well over threads.
On 2 cores, ASAP-SAS item 1's 21,408 copies took 185.7 s in one process of 2 torch threads and
163.7 s in two processes of one thread (1.13×; ``docs/decisions/labelling-workers.md``).

Why the probabilities do not change: the batches are the single-process pass's own (the same
answers, sorted by length, padded alike), only handed out to the workers, and a batch's logits do
not depend on how many threads torch used for it (checked bit for bit in
``tests/test_teacher_export.py``). Work is handed out a few batches at a time, the longest first, so
that the workers finish together.

A worker ignores Ctrl-C: the parent stops the workers and exits. A worker exits by itself when its
parent is gone (killed), so none is left behind; a worker that dies (killed, out of memory) is an
error that says to rerun with fewer workers.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool

import numpy as np
import torch

from .finetune import _collate, predict_progress
from .model import load_classifier
from .precision import autocast

#: fewer answers than this are labelled in the calling process: the workers' start (importing torch,
#: loading the teacher, both at once) costs several seconds. On 2 cores, 4,000 of item 1's copies took
#: 38.4 s in 2 workers against 34.6 s in-process (``teacher_labelling.md``), all 21,408 163.7 s
#: against 185.7 s: the gain, about a tenth, pays for the start from about 10,000 answers
MIN_ROWS = 10000
#: at most this many workers (measured on 2 cores only; more cores get more threads per worker)
MAX_WORKERS = 4
#: batches per piece of work handed to a worker
BATCHES_PER_TASK = 4


class WorkerError(RuntimeError):
    """A worker process died (killed, out of memory)."""


_model = None  # the worker process's own teacher (set by _start, in the worker only)
_bf16 = False  # whether the worker labels under bfloat16 autocast (set by _start)


def auto_workers(n_rows, threads, device):
    """How many worker processes label ``n_rows`` answers with ``threads`` CPU threads in all: 1 (the
    calling process) on a GPU, for fewer than :data:`MIN_ROWS` answers or a single thread; else one
    per thread, at most :data:`MAX_WORKERS`."""
    if getattr(device, "type", str(device)) != "cpu" or n_rows < MIN_ROWS or threads < 2:
        return 1
    return min(int(threads), MAX_WORKERS)


def _watch_parent(ppid):
    while os.getppid() == ppid:
        time.sleep(1.0)
    os._exit(1)  # the parent is gone: nothing waits for this worker's results


def _start(teacher, threads, ppid, bf16=False):
    global _model, _bf16
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(ppid,), daemon=True).start()
    torch.set_num_threads(threads)
    _model, _bf16 = load_classifier(teacher).eval(), bool(bf16)


def _run(batches, pad_id):
    """Logits of each batch of token-id rows (as the single-process pass computes them)."""
    out = []
    with torch.no_grad():
        for enc in batches:
            batch = _collate(enc, range(len(enc["input_ids"])), pad_id, "cpu")
            with autocast(_model, "cpu", _bf16):
                out.append(_model(**batch).logits.double().numpy())
    return out


def predict_logits_in_workers(teacher, enc, batches, n_labels, workers, threads, pad_id=0, log=None,
                              progress=50, bf16=False):
    """Logits (float64, one row per answer of ``enc``) of the teacher folder ``teacher`` computed in
    ``workers`` processes of ``threads`` torch threads each; ``batches`` are position arrays into
    ``enc`` (:func:`~teacher_export.finetune.label_batches`). ``log(msg)`` gets a progress line every
    ``progress`` batches; ``bf16``: under bfloat16 autocast, as in the single process. On an error or
    Ctrl-C the workers are stopped at once."""
    out = np.zeros((len(enc["input_ids"]), n_labels), dtype=np.float64)
    cost = np.array([sum(len(enc["input_ids"][i]) for i in b) for b in batches], dtype=np.float64)
    order = np.argsort(-cost, kind="stable")  # the longest batches first
    tasks = [order[s:s + BATCHES_PER_TASK] for s in range(0, len(order), BATCHES_PER_TASK)]

    def rows(t):  # the token ids of task t's batches
        return [{k: [v[i] for i in batches[bi]] for k, v in enc.items()} for bi in tasks[t]]

    ctx = multiprocessing.get_context("spawn")  # torch's threads do not survive a fork
    t0, done, shown, n_done = time.time(), 0.0, 0, 0
    ex = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_start,
                             initargs=(teacher, threads, os.getpid(), bf16))
    try:
        futs = {ex.submit(_run, rows(t), pad_id): t for t in range(len(tasks))}
        for f in as_completed(futs):
            t = futs[f]
            try:
                zs = f.result()
            except BrokenProcessPool:
                raise WorkerError(f"a labelling worker process died (out of memory?); rerun with --workers 1 "
                                   f"(or fewer than {workers})") from None
            for bi, z in zip(tasks[t], zs):
                out[batches[bi]] = z
            n_done += len(tasks[t])
            done += cost[tasks[t]].sum()
            if log and progress and n_done // progress > shown:
                shown = n_done // progress
                log(predict_progress(n_done, len(batches), time.time() - t0, done, cost.sum(), f" ({workers} workers)"))
    except BaseException:  # Ctrl-C or an error: stop the workers now, not after the work already queued
        _terminate(ex)
        raise
    ex.shutdown(wait=True)
    return out


def _terminate(ex):
    stop = getattr(ex, "terminate_workers", None)  # Python 3.14
    if stop is not None:
        stop()
        return
    for p in list((getattr(ex, "_processes", None) or {}).values()):
        p.terminate()
    ex.shutdown(wait=True, cancel_futures=True)
