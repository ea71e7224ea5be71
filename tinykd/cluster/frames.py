"""Large jobs for ``tinykd score --dask / --jobs``: a folder or glob of CSV or Parquet files in, a
folder of scored parts (or one CSV) out, one Dask task per file (the ``[dask]`` extra).

* **In.** The files of :func:`tinykd.scoring.scorefile.data_files` (a file, a folder's files sorted by
  name, or a glob), checked on the client before any task: CSV files must share one header, Parquet
  files one schema (the same columns, in the same order, of the same types; each file's footer is read,
  so a file that is not Parquet is named), and they must hold the columns the model reads.
* **Out.** Each file is streamed by its task, so a worker's memory stays flat for any file size: a CSV
  file is scored by :func:`tinykd.scoring.scorefile.score_csv` itself (its part holds exactly the bytes
  ``tinykd score`` writes for that file), a Parquet file batch by batch into a Parquet part
  (:func:`tinykd.cluster.tasks.scored_frame`). The parts, ``part-00000.csv`` … in input order, are written
  to a temporary folder beside ``--out``, renamed into place (``--out`` ending in ``.csv``: joined into
  that one file) when every part is done; an error, Ctrl-C, SIGTERM or SIGHUP removes it, so nothing
  half-written is left. Every check is done before any work (:func:`plan_score`; ``--out`` by
  :func:`tinykd.scoring.scorefile.check_score_paths`, as for one process).
* **Errors.** A part that cannot be read or scored (a ragged row, a damaged Parquet file, a full disk)
  comes back from its task as its error, one line naming its file, and ends the job: no worker traceback.
"""
from __future__ import annotations

import dataclasses
import os
import secrets
import shutil
import time

import numpy as np

from tinykd.cluster.tasks import WORKER_SETTINGS, model_payload, scored_frame
from tinykd.files.atomic import AtomicFile, signals_raise
from tinykd.files.csvfiles import (SHOWN_VALUES, CsvReader, DataFileError, missing_column, parse_where, shown,
                                  shown_list)
from tinykd.scoring.scorefile import CHUNK_ROWS, check_score_paths, new_columns, score_csv
from tinykd.scoring.scorer import REVIEW_BELOW, decide
from tinykd.scoring.student import data_columns, load_bytes


#: the largest Parquet footer read (its schema and row groups: parsing takes about 20 times its size); a file of
#: answers has a few columns, so some KB
MAX_PARQUET_FOOTER = 4 << 20
#: the rows of a row group of a Parquet part (written as the scored batches reach it: memory stays bounded)
ROW_GROUP_ROWS = 1 << 17


# ------------------------------------------------------------------------------ the client's checks
def _csv_headers(files, required, where, on_note):
    header = None
    for f in files:
        with CsvReader(f, required, where=where) as r:
            if r.note and on_note:
                on_note(r.note)
            if header is None:
                header = r.header
            elif r.header != header:
                raise DataFileError(f"{f}: its columns differ from those of {files[0]} "
                                    f"({shown_list(r.header, quote=False)} vs {shown_list(header, quote=False)})")
    return header


def _parquet_schema(path):
    """The columns ``[(name, type)]`` of a Parquet file's footer, but a pandas index (read as the index, not
    written back: as Dask did); a one-line error naming a file that is not Parquet."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with open(path, "rb") as f:  # the footer's length and the magic bytes end the file
            f.seek(max(f.seek(0, os.SEEK_END) - 8, 0))
            tail = f.read(8)
        if tail[4:] == b"PAR1" and int.from_bytes(tail[:4], "little") > MAX_PARQUET_FOOTER:
            raise DataFileError(f"{path}: its Parquet footer is {int.from_bytes(tail[:4], 'little') / 2**20:,.1f} "
                                f"MiB, over the {MAX_PARQUET_FOOTER >> 20} MiB tinykd reads (tens of thousands of "
                                "columns?); keep the columns scoring needs")
        schema = pq.read_schema(path)
    except (pa.ArrowException, OSError) as e:
        raise DataFileError(f"{path}: not a Parquet file, or a damaged one ({' '.join(str(e).split())})") from None
    index = {c for c in (schema.pandas_metadata or {}).get("index_columns", []) if isinstance(c, str)}
    return [(f.name, str(f.type)) for f in schema if f.name not in index]


def _difference(cols, first):
    """How the columns ``cols`` differ from ``first`` (name, type) lists, in a few words."""
    names, here, there = [c for c, _ in cols], dict(cols), dict(first)
    extra = [c for c in names if c not in there]
    missing = [c for c, _ in first if c not in here]
    if extra or missing:
        return "; ".join(s for s in (extra and f"it has {shown_list(extra)}",
                                     missing and f"it lacks {shown_list(missing)}") if s)
    types = [(c, t, there[c]) for c, t in cols if t != there[c]]
    if types:
        return "; ".join(f"{shown(c)} is {t} here, {t0} there" for c, t, t0 in types[:SHOWN_VALUES])
    return f"the same columns in another order: {shown_list(names, quote=False)}"


def _parquet_columns(files, required, where):
    first = _parquet_schema(files[0])
    for f in files[1:]:
        cols = _parquet_schema(f)
        if cols != first:
            raise DataFileError(f"{f}: its columns differ from those of {files[0]} ({_difference(cols, first)}); "
                                "Parquet parts must share one schema")
    header = [c for c, _ in first]
    for col, option in list(required) + [(c, "--where") for c, _ in where]:
        if col not in header:
            raise missing_column(files[0], col, option, header)
    return header


def check_files(files, fmt, required=(), where=None, classes=None, on_note=None):
    """Before any task: the files' one header (``required``: ``(column, option)`` pairs that must exist;
    ``on_note(msg)`` gets a CSV reader's notes), refused in one line naming the file that differs, is damaged
    or already holds the columns that scoring adds (those of ``classes``)."""
    where = parse_where(where)
    header = (_csv_headers(files, required, where, on_note) if fmt == "csv"
              else _parquet_columns(files, required, where))
    new_columns(header, classes or [], files[0])
    return header


# ------------------------------------------------------------------------------------ the tasks
def _keep(part, where):
    for col, value in where:
        part = part[part[col].astype(str).str.strip() == value]
    return part


def _pandas(arrow):
    """An Arrow table or batch as pandas, text as ``string[pyarrow]`` (as Dask reads it: the parts keep its types)."""
    import pandas as pd
    import pyarrow as pa

    text = {pa.string(): pd.StringDtype("pyarrow"), pa.large_string(): pd.StringDtype("pyarrow")}
    return arrow.to_pandas(types_mapper=text.get)


def _parquet_batches(path, size):
    """The file's rows as pandas frames of up to ``size`` rows; a read error names the file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with pq.ParquetFile(path) as f:
            for batch in f.iter_batches(batch_size=size):
                yield _pandas(batch)
    except (pa.ArrowException, OSError) as e:
        raise DataFileError(f"{path}: cannot read it as Parquet ({' '.join(str(e).split())})") from None


def _score_parquet(path, part, model, cols, where, review_below, chunk_size):
    """A Parquet file scored batch by batch into the Parquet file ``part`` (atomically): ``(rows, flagged)``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = flagged = 0
    with AtomicFile(part, "wb") as f:
        writer, held = None, []  # held: scored batches not written yet, for row groups of ROW_GROUP_ROWS
        try:
            for batch in _parquet_batches(path, chunk_size):
                scored = scored_frame(_keep(batch, where), model, *cols, review_below)
                if len(scored):  # (an empty batch has no types to give the schema)
                    held.append(pa.Table.from_pandas(scored, preserve_index=False,
                                                     schema=None if writer is None else writer.schema))
                    writer = writer or pq.ParquetWriter(f, held[0].schema)
                    n, flagged = n + len(scored), flagged + int(scored["needs_review"].sum())
                if held and (sum(map(len, held)) >= ROW_GROUP_ROWS):
                    writer.write_table(pa.concat_tables(held))
                    held = []
            if held:
                writer.write_table(pa.concat_tables(held))
            if writer is None:  # no row kept: the columns alone
                empty = _pandas(pq.read_schema(path).empty_table())
                scored_frame(empty, model, *cols, review_below).to_parquet(f, index=False)
        finally:
            if writer is not None:
                writer.close()
    return n, flagged


def _part_task(fmt, path, part, model_bytes, cols, where, review_below, chunk_size):
    """A task: the file ``path`` scored into ``part``, streamed; ``{"rows", "flagged"}``, or ``{"error"}``: a
    user's error (a bad row, a damaged file, a full disk) comes back as a value, not as a worker's traceback."""
    try:
        model = load_bytes(model_bytes, settings=WORKER_SETTINGS)
        if fmt == "csv":
            res = score_csv(model, path, part, text_col=cols[0], context_col=cols[1], item_col=cols[2], where=where,
                            review_below=review_below, chunk_size=chunk_size, allow_empty=True)
            return {"rows": res["n"], "flagged": res["flagged"]}
        n, flagged = _score_parquet(path, part, model, cols, parse_where(where), review_below, chunk_size)
        return {"rows": n, "flagged": flagged}
    except (ValueError, OSError) as e:
        return {"error": e}


# ------------------------------------------------------------------------------------ the job
@dataclasses.dataclass(frozen=True)
class ScoreJob:
    """A checked scoring job (:func:`plan_score`): the files, their format, ``--out``, the model (its
    file's bytes and the loaded model), the columns it reads and the ``--where`` conditions."""

    files: list
    fmt: str
    out: str
    model_bytes: bytes
    model: object
    columns: tuple
    where: object
    model_file: str | None = None

    def check_out(self):
        _check_out(self.files, self.fmt, self.out, self.model_file)


def _check_out(files, fmt, out, model_file):
    check_score_paths([*files, model_file], out, parts=not out.lower().endswith(".csv"), fmt=fmt)


def plan_score(files, fmt, model, out, *, text_col=None, context_col=None, item_col=None, where=None, on_note=None):
    """Every check of a scoring job, before any work (no client is needed): ``--out``
    (:func:`tinykd.scoring.scorefile.check_score_paths`), the model (a file's path, or its bytes: one
    ``ModelFileError``) and the files' columns (:func:`check_files`). Columns not given are the ones the model
    was trained with. Returns the :class:`ScoreJob` that :func:`score_files` runs."""
    model_file = None if isinstance(model, (bytes, bytearray, memoryview)) else os.fspath(model)
    out = os.fspath(out)
    _check_out(files, fmt, out, model_file)
    data, m = model_payload(model)
    cols = data_columns(m, text_col, context_col, item_col)
    need = [(c, f) for c, f in zip(cols, ("--text-col", "--context-col", "--item-col")) if c]
    check_files(files, fmt, need, where, m.classes, on_note)
    return ScoreJob(list(files), fmt, out, data, m, tuple(cols), where, model_file)


def _remove(folder):
    """Remove the temporary folder of parts; a task still running may add a file as it goes, so try again
    for a while (its later writes fail: the folder is gone)."""
    for _ in range(40):
        shutil.rmtree(folder, ignore_errors=True)
        if not os.path.exists(folder):
            return
        time.sleep(0.05)


def _run_parts(client, job, tmp, review_below, chunk_size, on_progress):
    """One task per file, parts into ``tmp``: ``(rows, flagged, parts)``. The first error ends the job."""
    from distributed import as_completed

    blob = client.scatter(job.model_bytes, broadcast=False)
    parts = [os.path.join(tmp, f"part-{k:05d}.{job.fmt}") for k in range(len(job.files))]
    futures = client.map(_part_task, [job.fmt] * len(parts), job.files, parts, model_bytes=blob, cols=job.columns,
                         where=job.where, review_below=review_below, chunk_size=chunk_size, pure=False)
    n = flagged = 0
    try:
        for done, fut in enumerate(as_completed(futures), 1):
            res = fut.result()
            if "error" in res:
                raise res["error"]
            n, flagged = n + res["rows"], flagged + res["flagged"]
            if on_progress:
                on_progress(done, len(parts), n)
    except BaseException:
        client.cancel(futures)
        raise
    return n, flagged, parts


def score_files(client, job, review_below=REVIEW_BELOW, chunk_size=CHUNK_ROWS, on_progress=None):
    """Run a :class:`ScoreJob` on ``client``: one task per file, a folder of parts at ``job.out``, or one CSV
    when it ends in ``.csv``; each task scores ``chunk_size`` rows at a time. Returns ``{"n", "flagged",
    "parts"}``; ``on_progress(parts_done, parts, rows_done)`` after each part."""
    decide(np.zeros((0, 2)), review_below)  # the threshold is checked before any work
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a whole number >= 1, got {chunk_size!r}")
    tmp = os.path.join(os.path.dirname(os.path.abspath(job.out)),
                       f".{os.path.basename(job.out)}.tmp-{secrets.token_hex(4)}")
    with signals_raise():  # SIGTERM / SIGHUP clean up as Ctrl-C does
        os.makedirs(tmp)
        try:
            n, flagged, parts = _run_parts(client, job, tmp, float(review_below), chunk_size, on_progress)
            if n == 0:
                raise DataFileError("no data rows to score")
            job.check_out()  # still so at the last moment
            if job.out.lower().endswith(".csv"):
                _join_csv(parts, job.out)
                shutil.rmtree(tmp)
            else:
                if os.path.isdir(job.out):
                    os.rmdir(job.out)  # (empty: checked)
                os.replace(tmp, job.out)
        except BaseException:
            _remove(tmp)
            raise
    return {"n": n, "flagged": flagged, "parts": len(parts)}


def _join_csv(parts, out):
    """The CSV parts as one file (the header once), written atomically."""
    with AtomicFile(out, "wb") as f:
        for k, p in enumerate(parts):
            with open(p, "rb") as src:
                header = src.readline()
                if k == 0:
                    f.write(header)
                shutil.copyfileobj(src, f, 1 << 20)
