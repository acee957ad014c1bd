"""File reading and atomic writing for the command line (the Rust core does no I/O).

Paths may be local (``str``, ``os.PathLike``, ``file://``) or URIs of any filesystem pyarrow or fsspec
knows (``s3://``, ``gs://``, ``hf://``, ``memory://``, ...; see :mod:`longmagpie.storage`). Local paths
take the local code path (temp file + fsync + rename).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from longmagpie import storage


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
    paths = local  # type: ignore[assignment]
    for p in paths:
        if not Path(p).exists():
            raise FileNotFoundError(f"input {p} does not exist")
    try:
        return ds.dataset([str(p) for p in paths] if len(paths) > 1 else str(paths[0]), format="parquet")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise ValueError(f"cannot read {', '.join(map(str, paths))} as Parquet: {e}") from e


def read_parquet(paths: Sequence[storage.PathArg], columns: Sequence[str] | None = None) -> pa.Table:
    """Read Parquet files or directories of them (paths or URIs) as one table, loading only ``columns`` that exist.

    Raises:
        FileNotFoundError: a path does not exist.
        ValueError: no Parquet data was found, or the files' schemas disagree.

    """
    dataset = parquet_dataset(paths)
    wanted = None if columns is None else [c for c in columns if c in dataset.schema.names]
    return dataset.to_table(columns=wanted)


def _dataset_of_uris(paths: Sequence[storage.PathArg]) -> ds.Dataset:
    """Open inputs of which some are on non-local filesystems: one dataset per input, then their union."""
    datasets = []
    for p in paths:
        loc = storage.resolve(p)
        if not storage.exists(loc):
            raise FileNotFoundError(f"input {loc.uri} does not exist")
        try:
            datasets.append(ds.dataset(loc.path, filesystem=loc.filesystem, format="parquet"))
        except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
            raise ValueError(f"cannot read {loc.uri} as Parquet: {e}") from e
    try:
        return datasets[0] if len(datasets) == 1 else ds.dataset(datasets)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise ValueError(f"cannot read {', '.join(map(os.fspath, paths))} as one Parquet dataset: {e}") from e


def write_parquet_atomic(table: pa.Table, path: storage.PathArg, overwrite: bool = False) -> None:
    """Write ``table`` to ``path`` through a temporary file in the same directory, then rename.

    A reader never sees a half-written file, and a failure leaves any earlier file untouched. On an
    object store the temporary file is a hidden key beside ``path``, moved onto it once complete
    (see :func:`longmagpie.storage.atomic_output`).

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false.

    """
    local = storage.local_path(path)
    if local is None:
        with storage.atomic_output(path, overwrite) as out:
            pq.write_table(table, out, compression="zstd", row_group_size=256)
        return
    path = local
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp, compression="zstd", row_group_size=256)
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
