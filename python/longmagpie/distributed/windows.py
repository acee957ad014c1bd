"""Packing windows over Parquet inputs, keyed by file and row ranges (what makes ``distributed.ray`` deterministic).

A window is a range of *global* input rows (rows numbered over the sorted list of files), cut at
row-group boundaries once it holds about ``window_bytes`` of uncompressed data (from the Parquet
footers, so planning reads no data). The plan depends on the files only: not on Ray's block
sizes, the cluster's size or the order tasks run in.
"""

from __future__ import annotations

import hashlib
import os
import re
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from longmagpie.io import storage
from longmagpie.options import INPUT_COLUMNS

#: Default window: 1 GiB of uncompressed Arrow data (about 2**27 tokens of int32 ids + int8 masks).
DEFAULT_WINDOW_BYTES = 2**30


def parquet_files(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[str]:
    """Expand files and directories (searched recursively for ``*.parquet``) into a sorted list of files.

    Raises:
        FileNotFoundError: a path does not exist, or no Parquet file was found.

    """
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    files: list[str] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            files.extend(str(f.local) for f in storage.list_files(p, (".parquet",)))
        elif p.exists():
            files.append(str(p))
        else:
            raise FileNotFoundError(f"input {p} does not exist")
    if not files:
        raise FileNotFoundError(f"no .parquet files under {', '.join(map(str, items))}")
    return files


@dataclass(frozen=True)
class ParquetSource:
    """Sorted Parquet files with their row-group layout, read from the footers only.

    Attributes:
        files: the files, in the order their rows are numbered.
        columns: the packing columns present (same in every file).
        file_starts: global index of each file's first row, plus the total at the end.
        groups: per file, ``(rows, uncompressed bytes)`` of each row group.

    """

    files: tuple[str, ...]
    columns: tuple[str, ...]
    file_starts: tuple[int, ...]
    groups: tuple[tuple[tuple[int, int], ...], ...]

    @property
    def num_rows(self) -> int:
        """Rows over all files."""
        return self.file_starts[-1]

    @classmethod
    def open(
        cls, paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], what: str = "input"
    ) -> ParquetSource:
        """Read the footers of ``paths``; ``what`` names the input in errors (e.g. ``"long"``).

        Raises:
            FileNotFoundError: a path does not exist or holds no Parquet file.
            ValueError: a file is not Parquet, has no ``input_ids`` column, or has other packing
                columns than the first file (the message names the file).

        """
        files = parquet_files(paths)
        starts = [0]
        groups = []
        columns: tuple[str, ...] | None = None
        for f in files:
            try:
                meta = pq.ParquetFile(f).metadata
                schema = meta.schema.to_arrow_schema()
            except (pa.ArrowInvalid, OSError) as e:
                raise ValueError(f"{what} file {f} cannot be read as Parquet: {e}") from e
            present = tuple(c for c in INPUT_COLUMNS if c in schema.names)
            if "input_ids" not in present:
                raise ValueError(
                    f"{what} file {f} has no 'input_ids' column (columns: {', '.join(schema.names)}); "
                    "tokenize the samples first or rename the token column to input_ids"
                )
            if columns is None:
                columns = present
            elif present != columns:
                raise ValueError(
                    f"{what} file {f} has packing columns {list(present)} but {files[0]} has {list(columns)}; "
                    "every file of one input must have the same columns"
                )
            rg = tuple(
                (meta.row_group(i).num_rows, meta.row_group(i).total_byte_size) for i in range(meta.num_row_groups)
            )
            groups.append(rg)
            starts.append(starts[-1] + meta.num_rows)
        assert columns is not None
        return cls(tuple(files), columns, tuple(starts), tuple(groups))

    def windows(self, window_bytes: int) -> list[tuple[int, int]]:
        """Cut the rows into ``(start, stop)`` global ranges at row-group ends, each about ``window_bytes``.

        A window closes after the row group that reaches the budget, so windows are at least one
        row group; the ranges cover every row once, in order.
        """
        out: list[tuple[int, int]] = []
        start = row = have = 0
        for rgs in self.groups:
            for rows, nbytes in rgs:
                row += rows
                have += nbytes
                if have >= window_bytes and row > start:
                    out.append((start, row))
                    start, have = row, 0
        if row > start:
            out.append((start, row))
        return out

    def locate(self, row: int) -> tuple[str, int]:
        """Return ``(file, row within the file)`` of global row ``row``."""
        k = min(bisect_right(self.file_starts, row) - 1, len(self.files) - 1)
        return self.files[k], row - self.file_starts[k]

    def read(self, start: int, stop: int) -> pa.Table:
        """Read global rows ``[start, stop)`` (only the row groups that hold them, only the packing columns)."""
        pieces: list[pa.Table] = []
        for k, f in enumerate(self.files):
            lo, hi = self.file_starts[k], self.file_starts[k + 1]
            if hi <= start or lo >= stop:
                continue
            first = max(start, lo) - lo
            last = min(stop, hi) - lo
            bounds = np.concatenate([[0], np.cumsum([r for r, _ in self.groups[k]])])
            idx = [i for i in range(len(self.groups[k])) if bounds[i] < last and bounds[i + 1] > first]
            table = pq.ParquetFile(f).read_row_groups(idx, columns=list(self.columns))
            offset = int(bounds[idx[0]]) if idx else 0
            pieces.append(table.slice(first - offset, last - first).replace_schema_metadata(None))
        if not pieces:
            return pq.ParquetFile(self.files[0]).schema_arrow.empty_table().select(list(self.columns))
        return pa.concat_tables(pieces) if len(pieces) > 1 else pieces[0]

    def name_row(self, error: ValueError, what: str, offset: int = 0) -> ValueError:
        """Rewrite a core error about ``row N`` (``offset + N`` globally) to name the file and its row."""
        message = str(error)
        match = re.search(r"\brow (\d+)", message)
        if not match:
            return ValueError(f"{what}: {message}")
        row = offset + int(match.group(1))
        path, local = self.locate(row)
        return ValueError(f"{what} file {path}, row {local} (input row {row}): {message}")


def window_seed(seed: int, index: int) -> int:
    """Seed of window ``index``: 64 bits of BLAKE2b over the global seed and the index (same on any machine)."""
    digest = hashlib.blake2b(f"longmagpie-window:{seed}:{index}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def paired_range(long_range: tuple[int, int], long_rows: int, short_rows: int) -> tuple[int, int]:
    """Return the short rows paired with a window of long rows: the same fraction of the short pool.

    Long window ``[a, b)`` of ``long_rows`` gets short rows ``[a * S // L, b * S // L)``: consecutive
    windows get consecutive, disjoint short ranges that cover the short pool once, and every window
    sees the pools in their global ratio.
    """
    a, b = long_range
    if long_rows == 0:
        return (0, 0)
    return (a * short_rows // long_rows, b * short_rows // long_rows)
