"""Past one machine: scoring and per-item training as Dask tasks (the ``[dask]`` extra).

A thin face over the core, like the command line: Dask does the scheduling, the retrying (a
worker that dies has its tasks run again elsewhere) and the data movement; tinykd's rules stay
where they are.

* :func:`score` maps :func:`score_partition` over a Dask DataFrame's partitions. The model
  travels as its file's **bytes** (one graph key, sent once to each worker) and every task loads
  it with the pickle-free loader (:func:`tinykd.scoring.student.load_bytes`: the checks of
  :func:`tinykd.load`); the rows are scored by :func:`tinykd.scoring.scorefile.score_rows`, the
  function ``tinykd score`` scores its chunks with. Workers score through the Numba kernels, whose
  probabilities for a row do not depend on the rows scored with it, so every row's scores equal
  the single-process scores exactly and in order.
* :func:`fit_items` plans the students with :func:`tinykd.train.items.plan_items` (every rule:
  splits, validation rows, the teacher's join) and runs :func:`tinykd.train.items.fit_item` on each
  :class:`~tinykd.train.items.ItemJob` (its rows and its :class:`~tinykd.train.options.TrainOptions`) as a
  task; a student comes back as its model file's bytes. Same jobs, same function: the same bundle as
  :func:`tinykd.fit_items`.

Nothing here imports Dask until a function is called (``import tinykd`` never does); without the
extra, :func:`require` says ``pip install "tinykd[dask]"`` in one line.
"""
from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import sys
import uuid

import numpy as np

from tinykd.scoring.modelfile import file_bytes
from tinykd.scoring.scorefile import given_names, new_columns, output_columns, score_rows
from tinykd.scoring.scorer import REVIEW_BELOW, decide
from tinykd.scoring.student import data_columns, load_bytes
from tinykd.settings import DEFAULT

INSTALL = 'the Dask extra is not installed: pip install "tinykd[dask]"'
_NEEDS = ("dask", "distributed", "pandas")


class DaskMissing(RuntimeError):
    """The ``[dask]`` extra is not installed (the message says how to install it)."""


def available():
    """Whether the ``[dask]`` extra (dask, distributed, pandas) is installed; imports none of them."""
    try:
        return all(importlib.util.find_spec(m) is not None for m in _NEEDS)
    except (ImportError, ValueError):  # a module set to None in sys.modules (switched off)
        return False


def require():
    """Raise :class:`DaskMissing` unless the ``[dask]`` extra is installed."""
    if not available():
        raise DaskMissing(INSTALL)


# ------------------------------------------------------------------------------------ clients
@contextlib.contextmanager
def connect(address=None, jobs=None):
    """A ``distributed.Client``, as a context manager: of the scheduler at ``address``
    (``tcp://host:8786``, or a scheduler file), or of a new ``LocalCluster`` of ``jobs`` worker
    processes on this machine (one thread each), closed on leaving."""
    require()
    from distributed import Client, LocalCluster

    if address is not None and jobs is not None:
        raise ValueError("give a scheduler address or a number of local jobs, not both")
    if address is not None:
        client = Client(scheduler_file=address) if os.path.isfile(address) else Client(address)
        with client:
            yield client
        return
    jobs = 1 if jobs is None else jobs
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a whole number >= 1, got {jobs!r}")
    # no dashboard, and its HTTP server on a free port (not 8787: a warning when taken); workers log errors only
    with LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True, dashboard_address=None,
                      scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}, silence_logs=logging.ERROR) as cluster, \
            Client(cluster) as client:
        yield client


def _client(client):
    if client is not None:
        return client
    from distributed import default_client

    try:
        return default_client()
    except ValueError:
        raise ValueError("no Dask client: pass client=, or start one (distributed.Client(...))") from None


# ------------------------------------------------------------------------------------ scoring
#: a worker's partitions are large jobs, and a row's Numba scores do not depend on its batch: Numba from the first row
WORKER_SETTINGS = DEFAULT.replace(jit="always")

def model_payload(model):
    """``(bytes, model)`` of a model given as a path or as its file's bytes, checked here with the
    loader the workers use (a damaged file is one :class:`~tinykd.scoring.modelfile.ModelFileError`
    before any task runs)."""
    if isinstance(model, (bytes, bytearray, memoryview)):
        data = bytes(model)
        return data, load_bytes(data)
    path = os.fspath(model)
    data = file_bytes(path)
    return data, load_bytes(data, path)


def _cells(values):
    """A frame column's cells as text: a missing cell (None / NaN / NA) is empty, as in a CSV."""
    import pandas as pd

    return ["" if v is None or (not isinstance(v, str) and pd.isna(v)) else str(v) for v in values]


def score_partition(part, model_bytes, text_col, context_col, item_col, review_below):
    """One partition (a pandas DataFrame) with the scored columns added: ``pred`` (the class
    label), ``p_<label>`` per class (float32), ``confidence`` (float32) and ``needs_review``
    (bool). The model is loaded from ``model_bytes`` with every check of :func:`tinykd.load`."""
    model = load_bytes(model_bytes, settings=WORKER_SETTINGS)
    return scored_frame(part, model, text_col, context_col, item_col, review_below)


def scored_frame(part, model, text_col, context_col, item_col, review_below):
    """:func:`score_partition` with a loaded model (a Student or a Bundle)."""
    import pandas as pd

    classes = model.classes
    texts = _cells(part[text_col].tolist())
    ctx = None if context_col is None else _cells(part[context_col].tolist())
    items = None if item_col is None else _cells(part[item_col].tolist())
    if len(texts):
        proba, pred, conf, review = score_rows(model, texts, ctx, items, classes, review_below)
    else:
        proba, pred, conf, review = (np.zeros((0, len(classes)), np.float32), np.zeros(0, np.int64),
                                     np.zeros(0, np.float32), np.zeros(0, bool))
    names = given_names(model, classes)
    cols = output_columns(classes, names=names is not None)
    labels = np.empty(len(classes), dtype=object)
    labels[:] = classes
    added = {cols[0]: pd.Series(labels[pred], index=part.index, dtype=object)}
    if names is not None:
        labels[:] = names
        added["pred_name"] = pd.Series(labels[pred], index=part.index, dtype=object)
    for k, c in enumerate(cols[len(added):-2]):
        added[c] = pd.Series(proba[:, k], index=part.index, dtype=np.float32)
    added["confidence"] = pd.Series(conf, index=part.index, dtype=np.float32)
    added["needs_review"] = pd.Series(review, index=part.index, dtype=bool)
    out = part.copy(deep=False)
    for c, v in added.items():
        out[c] = v
    return out


def score(frame, model, *, text_col=None, context_col=None, item_col=None, review_below=REVIEW_BELOW):
    """Score every row of a Dask DataFrame with ``model`` (a model file's path, or its bytes):
    a lazy Dask DataFrame of the same rows in the same order, with ``pred``, ``p_<label>``,
    ``confidence`` and ``needs_review`` added (see :func:`score_partition`). Columns not given
    are the ones the model was trained with. Compute it with any Dask scheduler."""
    require()
    import dask
    import pandas as pd

    decide(np.zeros((0, 2)), review_below)  # the threshold is checked before any work
    data, m = model_payload(model)
    text_col, context_col, item_col = data_columns(m, text_col, context_col, item_col)
    have = list(frame.columns)
    for col, opt in ((text_col, "text_col"), (context_col, "context_col"), (item_col, "item_col")):
        if col is not None and col not in have:
            raise ValueError(f"the frame has no column {col!r} (set {opt}); it has {', '.join(map(str, have))}")
    names = given_names(m) is not None
    cols = new_columns(have, m.classes, "the frame", names=names)
    meta = frame._meta.copy(deep=False)
    meta[cols[0]] = pd.Series([], dtype=object)
    if names:
        meta["pred_name"] = pd.Series([], dtype=object)
    for c in cols[1 + names:-2] + ["confidence"]:
        meta[c] = pd.Series([], dtype=np.float32)
    meta["needs_review"] = pd.Series([], dtype=bool)
    blob = dask.delayed(data, pure=True, traverse=False)  # one key: each worker fetches the bytes once
    return frame.map_partitions(score_partition, blob, text_col, context_col, item_col, float(review_below),
                                meta=meta, align_dataframes=False)


# ----------------------------------------------------------------------------------- training
def _fit_job(job, settings):
    """A task: the student of one :class:`~tinykd.train.items.ItemJob`, as its model file's bytes."""
    from tinykd.train.items import fit_item

    return fit_item(job, verbose=False, settings=settings).to_bytes()


def _map_in_order(client, task, arg_lists, prefix, on_done):
    """``client.map(task, *arg_lists)`` (one task per job, keys ``prefix-<run>-<k>``, never cached),
    results in the jobs' order; ``on_done(n_done, k, result)`` as each finishes; unfinished tasks are
    cancelled when this stops early (an error, Ctrl-C)."""
    from distributed import as_completed

    run = uuid.uuid4().hex[:8]
    n = len(arg_lists[0])
    futures = client.map(task, *arg_lists, key=[f"{prefix}-{run}-{k}" for k in range(n)], pure=False)
    index = {f.key: k for k, f in enumerate(futures)}
    results = [None] * n
    try:
        for n_done, fut in enumerate(as_completed(futures), 1):
            k = index[fut.key]
            results[k] = fut.result()
            on_done(n_done, k, results[k])
    finally:
        client.cancel([f for f in futures if not f.done()])
    return results


def fit_items(texts, labels, *, options=None, client=None, verbose=True, stream=None, settings=None, **arguments):
    """:func:`tinykd.fit_items` with one Dask task per student, on ``client`` (default: the current
    ``distributed`` client). The same arguments (``options``, a
    :class:`~tinykd.train.options.TrainOptions`, and/or its fields as keywords; the rows' arguments of
    :func:`tinykd.train.items.plan_items`; ``settings`` how the workers train), the same result: a
    Student or a Bundle whose students have the weights, vocabularies and metadata (but the seconds)
    that :func:`tinykd.fit_items` gives for the same seeds. Progress: one line per finished item."""
    require()
    from tinykd.train.items import plan_items

    stream = sys.stderr if stream is None else stream
    plan = plan_items(texts, labels, options=options, verbose=verbose, stream=stream, **arguments)
    client = _client(client)

    def progress(done, k, _):
        job = plan.jobs[k]
        if verbose and job.item is not None:
            print(f"[{done}/{len(plan.jobs)}] item {job.item!r}: {len(job.y)} rows, trained", file=stream, flush=True)

    blobs = _map_in_order(client, _fit_job, [plan.jobs, [settings] * len(plan.jobs)], "tinykd-fit", progress)
    students = [load_bytes(b, f"the student of {job.name}") for b, job in zip(blobs, plan.jobs)]
    return plan.model(students)


# ------------------------------------------------------------------------------- item chains
def _item_task(fn, job, topic):
    """A task: ``fn(job, log, worker_threads=…)`` on a worker, its log lines sent as events of
    ``topic`` (None: silent) and the worker's thread count given (for a teacher's torch threads)."""
    from distributed import get_worker

    worker = get_worker()

    def log(msg):
        if topic is not None:
            worker.log_event(topic, str(msg))

    return fn(job, log, worker_threads=worker.state.nthreads)


def map_items(fn, jobs, *, client=None, names=None, log=None, summary=None):
    """``[fn(job, log, worker_threads=…) for job in jobs]`` with one Dask task per job, on ``client``
    (default: the current ``distributed`` client), results in the jobs' order (``tinykd distill``'s
    per-item chains: :func:`tinykd.distill.pipeline.distill_item`). With ``log``, the tasks' log lines come back
    live (events of this run's own topic, for no other client) and one line per finished job,
    ``[k/n] NAME done: summary(result)``."""
    require()
    client = _client(client)
    topic = f"tinykd-items-{uuid.uuid4().hex[:8]}" if log is not None else None
    if topic is not None:
        client.subscribe_topic(topic, lambda event: log(event[1]))
    names = names or [f"job {k}" for k in range(len(jobs))]

    def progress(n_done, k, result):
        if log is not None:
            log(f"[{n_done}/{len(jobs)}] {names[k]} done" + (f": {summary(result)}" if summary else ""))

    try:
        return _map_in_order(client, _item_task, [[fn] * len(jobs), jobs, [topic] * len(jobs)], "tinykd-item",
                             progress)
    finally:
        if topic is not None:
            client.unsubscribe_topic(topic)
