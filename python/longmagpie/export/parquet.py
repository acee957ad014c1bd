"""Packed rows as a Hugging Face Parquet dataset: ``data/<split>-00000-of-000NN.parquet`` + ``README.md``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from longmagpie.export.card import check_split, export_params, render_card
from longmagpie.export.rows import PackedRows, list_lengths
from longmagpie.export.staging import staged_directory
from longmagpie.io import storage

#: Default shard size, counted in memory (Arrow bytes): Hugging Face suggests shards of ~500 MB.
SHARD_BYTES = 512 * 2**20
#: Default row-group size, counted in memory: a streaming reader holds one row group at a time, and the
#: Hub's dataset viewer reads row groups of up to ~286 MiB (100–300 MB recommended).
ROW_GROUP_BYTES = 64 * 2**20


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote.

    Attributes:
        path: the output directory (a ``Path``; the URI as given, a ``str``, for a non-local one).
        files: the data files written, relative to ``path`` (shards, in order).
        rows: packed rows written.
        tokens: tokens written (padding included).
        documents: documents (``seq_lengths`` entries) written.
        trained_tokens: tokens with ``assistant_masks`` = 1 (all tokens when there is no mask).
        pack_metadata: what produced the rows (``op``, ``params``, ``stats``), when known.

    """

    path: Path | str
    files: tuple[str, ...]
    rows: int
    tokens: int
    documents: int
    trained_tokens: int
    pack_metadata: dict[str, Any] | None


def row_bytes(batch: pa.RecordBatch) -> np.ndarray:
    """In-memory size of each row, in bytes, computed from list lengths only.

    It depends on the rows, not on how they are batched, so shards and row groups are cut at the
    same rows however the input is chunked.
    """
    total = np.zeros(batch.num_rows, dtype=np.int64)
    for f, col in zip(batch.schema, batch.columns, strict=True):
        t = f.type
        if pa.types.is_list(t) or pa.types.is_large_list(t):
            width = t.value_type.bit_width // 8 if pa.types.is_primitive(t.value_type) else 16
            total += list_lengths(col) * max(width, 1) + 4
        else:
            total += t.bit_width // 8 if pa.types.is_primitive(t) else 16
    return total


class ShardWriter:
    """Write batches into numbered Parquet parts, cutting row groups and shards at row boundaries."""

    def __init__(
        self,
        folder: Path | str,
        schema: pa.Schema,
        rows_per_shard: int | None,
        shard_bytes: int,
        row_group_rows: int | None,
        row_group_bytes: int,
        compression_level: int | None,
        filesystem: pafs.FileSystem | None = None,
    ) -> None:
        """Write into ``folder`` (an existing local directory, or a path in ``filesystem``); limits: export_parquet."""
        self.folder = folder
        self.filesystem = filesystem
        self.schema = schema
        self.limits = (rows_per_shard, shard_bytes, row_group_rows, row_group_bytes)
        self.compression_level = compression_level
        self.parts: list[Path | str] = []
        self.writer: pq.ParquetWriter | None = None
        self.pending: list[pa.RecordBatch] = []
        self.group_rows = self.group_bytes = self.shard_rows = self.shard_bytes = 0

    def add(self, batch: pa.RecordBatch) -> None:
        """Queue ``batch``'s rows, writing row groups and closing shards as limits are reached."""
        rows_per_shard, shard_bytes, row_group_rows, row_group_bytes = self.limits
        run = 0
        for i, cost in enumerate(row_bytes(batch).tolist()):
            shard_full = self.shard_rows > 0 and (
                (rows_per_shard is not None and self.shard_rows >= rows_per_shard)
                or self.shard_bytes + cost > shard_bytes
            )
            group_full = self.group_rows > 0 and (
                (row_group_rows is not None and self.group_rows >= row_group_rows)
                or self.group_bytes + cost > row_group_bytes
            )
            if shard_full or group_full:
                if i > run:
                    self.pending.append(batch.slice(run, i - run))
                run = i
                self._write_group()
                if shard_full:
                    self._close_shard()
            self.group_rows += 1
            self.group_bytes += cost
            self.shard_rows += 1
            self.shard_bytes += cost
        if batch.num_rows > run:
            self.pending.append(batch.slice(run))

    def _write_group(self) -> None:
        if not self.pending:
            return
        if self.writer is None:
            path = self._part_path(len(self.parts))
            self.parts.append(path)
            self.writer = pq.ParquetWriter(
                path,
                self.schema,
                filesystem=self.filesystem,
                compression="zstd",
                compression_level=self.compression_level,
            )
        table = pa.Table.from_batches(self.pending, schema=self.schema)
        self.writer.write_table(table, row_group_size=table.num_rows)
        self.pending = []
        self.group_rows = self.group_bytes = 0

    def _close_shard(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        self.shard_rows = self.shard_bytes = 0

    def _part_path(self, k: int) -> Path | str:
        name = f"part-{k:05d}.parquet"
        return self.folder / name if isinstance(self.folder, Path) else f"{self.folder}/{name}"

    def finish(self) -> list[Path | str]:
        """Write what is queued and close; return the parts (one empty part when there were no rows)."""
        self._write_group()
        self._close_shard()
        if not self.parts:
            path = self._part_path(0)
            pq.write_table(self.schema.empty_table(), path, filesystem=self.filesystem, compression="zstd")
            self.parts.append(path)
        return self.parts

    def abort(self) -> None:
        """Close an open file after a failure (the staging directory is removed by the caller)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _positive(name: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{name} must be a positive int or None, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class ShardLimits:
    """How packed rows are cut into shards and row groups (:func:`export_parquet` and the Ray writers).

    Attributes:
        rows_per_shard: most rows per shard (``None``: limited by ``shard_bytes`` only).
        shard_bytes: most in-memory bytes per shard (a shard holds at least one row).
        row_group_rows: most rows per row group (``None``: limited by ``row_group_bytes`` only).
        row_group_bytes: most in-memory bytes per row group (at least one row per group).
        compression_level: zstd level (``None``: Arrow's default).

    Raises:
        ValueError: a limit that is not a positive int (the message names it).

    """

    rows_per_shard: int | None = None
    shard_bytes: int = SHARD_BYTES
    row_group_rows: int | None = None
    row_group_bytes: int = ROW_GROUP_BYTES
    compression_level: int | None = None

    def __post_init__(self) -> None:
        """Check every limit."""
        for name in ("rows_per_shard", "row_group_rows", "shard_bytes", "row_group_bytes"):
            _positive(name, getattr(self, name))

    @classmethod
    def resolve(
        cls,
        rows_per_shard: int | None,
        shard_bytes: int,
        row_group_rows: int | None,
        row_group_bytes: int,
        compression_level: int | None,
    ) -> tuple[int | None, int, int | None, int, int | None]:
        """Check an exporter's limit arguments; return them in :class:`ShardWriter`'s order."""
        return cls(
            rows_per_shard=rows_per_shard,
            shard_bytes=shard_bytes,
            row_group_rows=row_group_rows,
            row_group_bytes=row_group_bytes,
            compression_level=compression_level,
        ).as_tuple()

    def as_tuple(self) -> tuple[int | None, int, int | None, int, int | None]:
        """Return the limits in :class:`ShardWriter`'s argument order."""
        return (
            self.rows_per_shard,
            self.shard_bytes,
            self.row_group_rows,
            self.row_group_bytes,
            self.compression_level,
        )


def export_parquet(
    rows: Any,
    out_dir: str | os.PathLike[str],
    *,
    split: str = "train",
    seq_len: int | None = None,
    rows_per_shard: int | None = ShardLimits.rows_per_shard,
    shard_bytes: int = ShardLimits.shard_bytes,
    row_group_rows: int | None = ShardLimits.row_group_rows,
    row_group_bytes: int = ShardLimits.row_group_bytes,
    compression_level: int | None = ShardLimits.compression_level,
    overwrite: bool = False,
) -> ExportResult:
    """Write packed rows as a Hugging Face Parquet dataset directory.

    ``out_dir`` gets ``data/<split>-00000-of-000NN.parquet`` (zstd) and a ``README.md`` dataset card
    whose YAML header declares the split, so ``datasets.load_dataset(out_dir)`` and
    ``datasets.load_dataset("parquet", data_dir=out_dir)`` both load it. The card records the
    package version, the packing parameters and statistics, and the schema. Columns and types are
    written unchanged (``pack``'s schema: ``input_ids``, ``seq_lengths``, ``assistant_masks``, ...),
    and a table's schema metadata (its packing statistics) is kept in every shard.

    The directory is built in a temporary sibling and renamed into place: a failure leaves no
    partial shard and leaves an earlier ``out_dir`` as it was. Memory holds one row group. On an
    object store the shards are uploaded under a hidden sibling prefix, then moved into place with
    the card last (:func:`longmagpie.io.storage.staged_prefix`): a failure while writing leaves no
    object under ``out_dir``.

    Args:
        rows: packed rows: a ``pyarrow.Table``/``RecordBatch`` from :func:`longmagpie.pack` or
            :func:`longmagpie.pack_pmix`, or a stream of record batches (the output of
            :func:`longmagpie.pack_stream` / :func:`longmagpie.pack_pmix_stream`, a
            ``RecordBatchReader``, or any iterable of record batches), read once.
        out_dir: output directory, a local path or a URI (``s3://bucket/prefix``, ``gs://``, ``hf://``,
            ``memory://``, ...: see :mod:`longmagpie.io.storage`); must be absent or empty unless ``overwrite``.
        split: split name (files ``data/<split>-*.parquet``).
        seq_len: the most tokens a row may hold. ``None`` takes it from the table's packing
            metadata (``pad_to`` if rows were padded, else ``seq_len``); without metadata rows are
            not length-checked.
        rows_per_shard: most rows per shard (``None``: limited by ``shard_bytes`` only).
        shard_bytes: most in-memory bytes per shard (a shard holds at least one row).
        row_group_rows: most rows per row group (``None``: limited by ``row_group_bytes`` only).
        row_group_bytes: most in-memory bytes per row group (at least one row per group).
        compression_level: zstd level (``None``: Arrow's default).
        overwrite: replace a non-empty ``out_dir``.

    Returns:
        An :class:`ExportResult`.

    Raises:
        FileExistsError: ``out_dir`` is not empty and ``overwrite`` is false.
        ValueError: the rows are not packed rows, batches disagree on the schema, a row holds more
            than ``seq_len`` tokens, or its boundaries do not add up (the message names the row).

    """
    check_split(split)
    limits = ShardLimits.resolve(rows_per_shard, shard_bytes, row_group_rows, row_group_bytes, compression_level)
    source = PackedRows(rows, seq_len)
    out = storage.local_path(out_dir)
    if out is None:
        return _export_to_uri(source, str(out_dir), split, limits, overwrite)
    with staged_directory(out, overwrite) as tmp:
        data = tmp / "data"
        data.mkdir()
        parts = _write_shards(source, ShardWriter(data, source.schema, *limits))
        names = _shard_names(split, len(parts))
        for part, name in zip(parts, names, strict=True):
            os.replace(part, tmp / name)
        (tmp / "README.md").write_text(_card(source, split, names, limits), encoding="utf-8")
    return _result(out, source, names)


def _export_to_uri(source: PackedRows, uri: str, split: str, limits: tuple[Any, ...], overwrite: bool) -> ExportResult:
    """:func:`export_parquet` onto a non-local filesystem: shards staged under a hidden prefix, then published."""
    with storage.staged_prefix(uri, overwrite, marker="README.md") as stage:
        writer = ShardWriter(stage.path("data"), source.schema, *limits, filesystem=stage.filesystem)
        parts = _write_shards(source, writer)
        names = _shard_names(split, len(parts))
        for k, name in enumerate(names):
            stage.publish_as(f"data/part-{k:05d}.parquet", name)
        stage.write_bytes("README.md", _card(source, split, names, limits).encode("utf-8"))
    return _result(uri, source, names)


def _write_shards(source: PackedRows, writer: ShardWriter) -> list[Path | str]:
    try:
        for batch in source:
            writer.add(batch)
        return writer.finish()
    except BaseException:
        writer.abort()
        raise


def _shard_names(split: str, n: int) -> list[str]:
    return [f"data/{split}-{k:05d}-of-{n:05d}.parquet" for k in range(n)]


def _card(source: PackedRows, split: str, names: list[str], limits: tuple[Any, ...]) -> str:
    params = export_params(split, source.seq_len, limits)
    meta = source.pack_metadata()
    return render_card(split, f"data/{split}-*", names, source.schema, source.totals.as_dict(), meta, params)


def _result(path: Path | str, source: PackedRows, names: list[str]) -> ExportResult:
    t = source.totals
    return ExportResult(path, tuple(names), t.rows, t.tokens, t.documents, t.trained_tokens, source.pack_metadata())
