"""File reading and atomic writing for the command line (the Rust core does no I/O).

Paths may be local (``str``, ``os.PathLike``, ``file://``) or URIs of any filesystem pyarrow or fsspec
knows (``s3://``, ``gs://``, ``hf://``, ``memory://``, ...; see :mod:`longmagpie.io.storage`). Local paths
take the local code path (temp file + fsync + rename).

Tables are Parquet, or JSON Lines for files named ``*.jsonl``/``*.json`` (:func:`read_table`,
:func:`write_table_atomic`): JSONL is for interchange and inspection; it keeps no schema metadata, so the
statistics a stage records travel only in Parquet.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from longmagpie._progress import progress_bar
from longmagpie.io import storage

#: File names read and written as JSON Lines instead of Parquet.
JSONL_SUFFIXES = (".jsonl", ".json")
#: Rows per Parquet row group in the files the command line writes.
ROW_GROUP_ROWS = 256


def parquet_dataset(paths: Sequence[storage.PathArg]) -> ds.Dataset:
    """Open Parquet files or directories of them (paths or URIs) as one lazily read ``pyarrow.dataset.Dataset``.

    Local paths open as one file-system dataset; with a URI among them, each input is opened on its
    own filesystem and the datasets are joined (their schemas must agree).

    Raises:
        FileNotFoundError: a path does not exist.
        ValueError: no Parquet data was found, or the files' schemas disagree.

    """
    if not paths:
        raise ValueError("no Parquet inputs given")
    local = [storage.local_path(p) for p in paths]
    if not all(p is not None for p in local):
        return _dataset_of_uris(paths)
    files: list[str] = []
    for p in local:
        assert p is not None
        if not p.exists():
            raise FileNotFoundError(f"input {p} does not exist")
        files += [str(f) for f in _parquet_files(p)] if p.is_dir() else [str(p)]
    try:
        return ds.dataset(files, format="parquet")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise ValueError(f"cannot read {', '.join(map(str, local))} as Parquet: {e}") from e


def _parquet_files(directory: Path) -> list[Path]:
    """Return the ``*.parquet`` files below ``directory``, sorted, hidden ones (staging, temp files) left out.

    Other files (a dataset card, logs) are ignored, so an exported dataset directory reads as its shards.

    Raises:
        ValueError: the directory holds no Parquet file.

    """
    found = [f.local for f in storage.list_files(directory, (".parquet",)) if f.local is not None]
    if not found:
        raise ValueError(f"no Parquet files (*.parquet) under {directory}")
    return found


def _read_parquet(
    paths: Sequence[storage.PathArg], columns: Sequence[str] | None, progress: bool, desc: str
) -> pa.Table:
    """Parquet files or directories of them (paths or URIs) as one table, only the ``columns`` that exist."""
    dataset = parquet_dataset(paths)
    wanted = None if columns is None else [c for c in columns if c in dataset.schema.names]
    if not progress:
        return dataset.to_table(columns=wanted)
    scanner = dataset.scanner(columns=wanted)
    batches = []
    tokens = 0
    ids = scanner.projected_schema.field("input_ids").type if "input_ids" in scanner.projected_schema.names else None
    # tokens from list offsets, values unread; another type is left to the stage's own named type error
    count = ids is not None and (pa.types.is_list(ids) or pa.types.is_large_list(ids))
    with progress_bar(dataset.count_rows(), desc, "row", True) as bar:
        for batch in scanner.to_batches():
            batches.append(batch)
            bar.update(batch.num_rows)
            if count and batch.num_rows:
                tokens += pc.sum(pc.list_value_length(batch.column("input_ids"))).as_py() or 0
                bar.set_postfix(tokens=f"{tokens:,}", refresh=False)
    return pa.Table.from_batches(batches, schema=scanner.projected_schema)


def is_jsonl(path: storage.PathArg) -> bool:
    """Whether ``path`` names a JSON Lines file (by its suffix)."""
    return os.fspath(path).lower().endswith(JSONL_SUFFIXES)


def read_table(
    paths: Sequence[storage.PathArg],
    columns: Sequence[str] | None = None,
    *,
    progress: bool = False,
    desc: str = "read",
) -> pa.Table:
    """Read Parquet files/directories and JSON Lines files (``*.jsonl``/``*.json``) as one table.

    Parquet files and directories (paths or URIs: hidden parts skipped, see :func:`parquet_dataset`) are read as
    one dataset; each JSONL file is read with pyarrow's JSON reader (one object per line, types inferred: integer
    lists become ``list<int64>``). Only ``columns`` that exist are kept; all inputs must agree on the columns'
    types. ``progress`` shows a bar over the rows read (labelled ``desc``).

    Raises:
        FileNotFoundError: a path does not exist.
        ValueError: no Parquet data was found, a JSONL line that is not a JSON object (the file and the reader's
            message are named), or inputs whose schemas disagree.

    """
    jsonl = [p for p in paths if is_jsonl(p)]
    if not jsonl:
        return _read_parquet(paths, columns, progress, desc)
    parquet = [p for p in paths if not is_jsonl(p)]
    parts = [_read_parquet(parquet, columns, progress, desc)] if parquet else []
    parts += [_read_jsonl(p, columns) for p in jsonl]
    try:
        return pa.concat_tables(parts, promote_options="permissive") if len(parts) > 1 else parts[0]
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        names = ", ".join(os.fspath(p) for p in paths)
        raise ValueError(f"the inputs {names} disagree on their columns' types: {e}") from e


def _read_jsonl(path: storage.PathArg, columns: Sequence[str] | None) -> pa.Table:
    import pyarrow.json as pajson

    loc = storage.resolve(path)
    if not storage.exists(loc):
        raise FileNotFoundError(f"input {loc.uri} does not exist")
    try:
        with storage.open_input(loc) as fh:
            table = pajson.read_json(fh)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise ValueError(f"cannot read {loc.uri} as JSON Lines (one JSON object per line): {e}") from e
    if columns is not None:
        table = table.select([c for c in columns if c in table.column_names])
    return table


def write_table_atomic(
    table: pa.Table, path: storage.PathArg, overwrite: bool = False, *, progress: bool = False
) -> None:
    """Write ``table`` atomically as Parquet, or as JSON Lines when ``path`` ends in ``.jsonl``/``.json``.

    ``progress`` shows a bar over the rows written. See :func:`write_parquet_atomic` for the atomicity.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false.

    """
    if is_jsonl(path):
        _write_atomic(path, overwrite, lambda out: _write_jsonl(table, out, progress))
    else:
        write_parquet_atomic(table, path, overwrite, progress=progress)


def _write_jsonl(table: pa.Table, out: Any, progress: bool) -> None:
    with progress_bar(table.num_rows, "write jsonl", "row", progress) as bar:
        for batch in table.to_batches(max_chunksize=ROW_GROUP_ROWS):
            lines = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in batch.to_pylist())
            out.write(lines.encode())
            bar.update(batch.num_rows)


def _write_parquet(table: pa.Table, out: Any, progress: bool) -> None:
    """Write ``table`` in row groups of :data:`ROW_GROUP_ROWS` (the same bytes as ``pq.write_table``)."""
    if not progress:
        pq.write_table(table, out, compression="zstd", row_group_size=ROW_GROUP_ROWS)
        return
    with (
        pq.ParquetWriter(out, table.schema, compression="zstd") as writer,
        progress_bar(table.num_rows, "write", "row", True) as bar,
    ):
        for start in range(0, table.num_rows, ROW_GROUP_ROWS):
            writer.write_table(table.slice(start, ROW_GROUP_ROWS), row_group_size=ROW_GROUP_ROWS)
            bar.update(min(ROW_GROUP_ROWS, table.num_rows - start))


def _dataset_of_uris(paths: Sequence[storage.PathArg]) -> ds.Dataset:
    """Open inputs of which some are on non-local filesystems: one dataset per input, then their union."""
    datasets = []
    for p in paths:
        loc = storage.resolve(p)
        if not storage.exists(loc):
            raise FileNotFoundError(f"input {loc.uri} does not exist")
        if storage.is_dir(loc):
            files = [f.path for f in storage.list_files(loc, (".parquet",))]
            if not files:
                raise ValueError(f"no Parquet files (*.parquet) under {loc.uri}")
        else:
            files = [loc.path]
        try:
            datasets.append(ds.dataset(files, filesystem=loc.filesystem, format="parquet"))
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise ValueError(f"cannot read {loc.uri} as Parquet: {e}") from e
    try:
        return datasets[0] if len(datasets) == 1 else ds.dataset(datasets)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise ValueError(f"cannot read {', '.join(map(os.fspath, paths))} as one Parquet dataset: {e}") from e


def write_parquet_atomic(
    table: pa.Table, path: storage.PathArg, overwrite: bool = False, *, progress: bool = False
) -> None:
    """Write ``table`` to ``path`` through a temporary file in the same directory, then rename.

    A reader never sees a half-written file, and a failure leaves any earlier file untouched. On an
    object store the temporary file is a hidden key beside ``path``, moved onto it once complete
    (see :func:`longmagpie.io.storage.atomic_output`). ``progress`` shows a bar over the rows written.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false.

    """
    _write_atomic(path, overwrite, lambda out: _write_parquet(table, out, progress))


def _write_atomic(path: storage.PathArg, overwrite: bool, write: Any) -> None:
    """Call ``write(file)`` on a temporary file (or key) beside ``path``, then move it onto ``path``."""
    local = storage.local_path(path)
    if local is None:
        with storage.atomic_output(path, overwrite) as out:
            write(out)
        return
    path = local
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: storage.PathArg, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync, then rename over it (object stores: see storage)."""
    local = storage.local_path(path)
    if local is None:
        storage.write_bytes(path, data)
        return
    path = local
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
