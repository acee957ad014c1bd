"""File reading and atomic writing for the command line (the Rust core does no I/O)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq


def read_parquet(paths: Sequence[Path], columns: Sequence[str] | None = None) -> pa.Table:
    """Read Parquet files or directories of them as one table, loading only ``columns`` that exist.

    Raises:
        FileNotFoundError: a path does not exist.
        ValueError: no Parquet data was found, or the files' schemas disagree.

    """
    for p in paths:
        if not Path(p).exists():
            raise FileNotFoundError(f"input {p} does not exist")
    try:
        dataset = ds.dataset([str(p) for p in paths] if len(paths) > 1 else str(paths[0]), format="parquet")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:
        raise ValueError(f"cannot read {', '.join(map(str, paths))} as Parquet: {e}") from e
    wanted = None if columns is None else [c for c in columns if c in dataset.schema.names]
    return dataset.to_table(columns=wanted)


def write_parquet_atomic(table: pa.Table, path: Path, overwrite: bool = False) -> None:
    """Write ``table`` to ``path`` through a temporary file in the same directory, then rename.

    A reader never sees a half-written file, and a failure leaves any earlier file untouched.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false.

    """
    path = Path(path)
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


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync, then rename over it."""
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
