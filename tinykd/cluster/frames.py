"""Large jobs for ``tinykd score --dask / --jobs``: a folder or glob of CSV or Parquet files in, a
folder of scored parts (or one CSV) out, through :func:`tinykd.cluster.tasks.score` (the ``[dask]`` extra).

* **In.** A file, a folder (its ``*.csv`` or ``*.parquet`` files, sorted by name) or a glob.
  A CSV file is one partition, read by tinykd's own reader (:class:`tinykd.files.csvfiles.CsvReader`: the
  encoding, the delimiter, ``--where``), every cell as text; Parquet files are read by
  ``dask.dataframe.read_parquet`` (pyarrow; a partition per row group).
* **Out.** A folder of ``part-00000.csv`` … (the input's format; ``.parquet`` for Parquet), one
  per partition in input order, each written by its worker: a CSV part holds the rows and cells
  ``tinykd score`` writes for them (:func:`tinykd.scoring.scorefile.formatted_cells`). ``--out`` ending in
  ``.csv``: the parts joined into that one file. Parts are written to a temporary folder beside
  ``--out`` and renamed into place when every part is done, so nothing half-written is left.
"""
from __future__ import annotations

import glob
import os
import secrets
import shutil

import numpy as np

from tinykd.files.atomic import AtomicFile
from tinykd.scoring.scorefile import formatted_cells, output_columns
from tinykd.files.csvfiles import AtomicCsvWriter, CsvReader, DataFileError, parse_where, spreadsheet_safe

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}


def input_files(spec):
    """The sorted data files ``spec`` names (a file, a folder or a glob) and their format."""
    spec = os.fspath(spec)
    if os.path.isdir(spec):
        files = sorted(os.path.join(spec, f) for f in os.listdir(spec)
                       if os.path.splitext(f)[1].lower() in FORMATS and os.path.isfile(os.path.join(spec, f)))
        where = spec
    elif os.path.exists(spec):
        files, where = [spec], spec
    else:
        files, where = sorted(f for f in glob.glob(spec) if os.path.isfile(f)), f"the pattern {spec!r}"
    if not files:
        if os.path.isdir(spec):
            raise DataFileError(f"{spec}: is a folder with no .csv or .parquet files in it; give a CSV file, or a "
                                "folder of CSV or Parquet files")
        raise DataFileError(f"{spec}: no such file" if not glob.has_magic(spec) else f"no .csv or .parquet files "
                            f"match {where}")
    kinds = {FORMATS.get(os.path.splitext(f)[1].lower(), "csv") for f in files}
    if len(kinds) > 1:
        raise DataFileError(f"{where} mixes CSV and Parquet files; score them separately")
    return files, kinds.pop()


def _csv_header(path, required, where):
    with CsvReader(path, required, where=where) as r:
        return r.header, r.note


def _read_csv_part(path, where):
    import pandas as pd

    with CsvReader(path, where=where) as r:
        rows = [fields for _, fields in r.rows()]
        return pd.DataFrame(rows, columns=r.header, dtype=object)


def _keep(part, where):
    for col, value in where:
        part = part[part[col].astype(str).str.strip() == value]
    return part


def read_frame(files, fmt, required=(), where=None, on_note=None):
    """A Dask DataFrame of the files' rows (``required``: ``(column, option)`` pairs that must
    exist). CSV files must share one header; every CSV cell is text."""
    import dask.dataframe as dd
    import pandas as pd

    where = parse_where(where)
    if fmt == "csv":
        header = None
        for f in files:
            h, note = _csv_header(f, required, where)
            if note and on_note:
                on_note(note)
            if header is None:
                header = h
            elif h != header:
                raise DataFileError(f"{f}: its columns differ from those of {files[0]} "
                                    f"({', '.join(h)} vs {', '.join(header)})")
        meta = pd.DataFrame({c: pd.Series([], dtype=object) for c in header})
        return dd.from_map(_read_csv_part, files, where=where, meta=meta, enforce_metadata=False)
    frame = dd.read_parquet(files)
    for col, option in list(required) + [(c, "--where") for c, _ in where]:
        if col not in frame.columns:
            raise DataFileError(f"{files[0]}: no column {col!r} (set {option}); the file has columns: "
                                f"{', '.join(map(str, frame.columns))}")
    return frame.map_partitions(_keep, where, meta=frame._meta) if where else frame


def _write_part(part, folder, fmt, classes, partition_info=None):
    """A task: one scored partition written as ``part-<number>`` in ``folder`` (atomically); returns
    its row and flagged counts."""
    import pandas as pd

    k = 0 if partition_info is None else partition_info["number"]
    path = os.path.join(folder, f"part-{k:05d}.{fmt}")
    cols = output_columns(classes)
    if fmt == "csv":
        inputs = [c for c in part.columns if c not in cols]
        proba = part[cols[1:-2]].to_numpy(np.float32)
        pred = [spreadsheet_safe(v) for v in part["pred"].tolist()]
        cells = formatted_cells(pred, proba, part["confidence"].to_numpy(np.float32),
                                part["needs_review"].to_numpy(bool))
        with AtomicCsvWriter(path, [str(c) for c in part.columns]) as w:
            for row, added in zip(part[inputs].itertuples(index=False, name=None), cells):
                w.writerow(["" if v is None else v for v in row] + added)
    else:
        with AtomicFile(path, "wb") as f:
            part.to_parquet(f, index=False)
    return pd.DataFrame({"rows": [len(part)], "flagged": [int(part["needs_review"].sum())]})


def write_scored(client, scored, out, fmt, classes, on_progress=None):
    """Write the scored frame: a folder of parts at ``out`` (or one CSV when ``out`` ends in
    ``.csv``), through a temporary folder beside it. Returns ``{"n", "flagged", "parts"}``;
    ``on_progress(parts_done, parts, rows_done)`` after each part."""
    import pandas as pd
    from distributed import as_completed

    out = os.fspath(out)
    single = out.lower().endswith(".csv")
    if single and fmt != "csv":
        raise DataFileError(f"--out {out}: Parquet input is written as a folder of Parquet parts; give a folder")
    if not single and os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise DataFileError(f"--out {out}: exists and is not an empty folder; give a new folder "
                            "(or a name ending in .csv for one file)")
    parent = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(parent):
        raise DataFileError(f"cannot write {out}: the folder {parent} does not exist")
    tmp = os.path.join(parent, f".{os.path.basename(out)}.tmp-{secrets.token_hex(4)}")
    os.makedirs(tmp)
    try:
        meta = pd.DataFrame({"rows": pd.Series([], dtype=int), "flagged": pd.Series([], dtype=int)})
        counts = scored.map_partitions(_write_part, tmp, fmt, list(classes), meta=meta)
        futures = client.compute(counts.to_delayed())
        n = flagged = 0
        for done, fut in enumerate(as_completed(futures), 1):
            c = fut.result()
            n += int(c["rows"].sum())
            flagged += int(c["flagged"].sum())
            if on_progress:
                on_progress(done, len(futures), n)
        parts = sorted(os.listdir(tmp))
        if n == 0:
            raise DataFileError("no data rows to score")
        if single:
            _join_csv([os.path.join(tmp, p) for p in parts], out)
            shutil.rmtree(tmp)
        else:
            if os.path.isdir(out):
                os.rmdir(out)  # (empty: checked above)
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
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
