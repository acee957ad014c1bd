"""``pack_stream``: :func:`longmagpie.pack` over inputs larger than memory, one window at a time.

The input stream is cut into windows of ``window_tokens`` tokens at *sample* boundaries (a batch
that straddles two windows is sliced, zero-copy), so the output does not depend on how the input
is chunked into batches, and a window larger than the input gives exactly ``pack``'s output.
Memory holds one window of input plus its packed rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import fields
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from longmagpie import _core
from longmagpie._metadata import attach
from longmagpie.options import PackOptions, require_ints, resolve
from longmagpie.packing.pack import PackStats, to_pyarrow

#: Default window: 2**27 tokens (512 MiB of int32 ids), about 2,000 rows of 64k.
DEFAULT_WINDOW_TOKENS = 2**27

_SUMMED = ("input_samples", "input_tokens", "empty_samples", "rows", "documents", "output_tokens", "pad_tokens",
           "document_pad_tokens", "truncated_samples", "truncated_tokens", "dropped_samples", "dropped_tokens",
           "split_samples", "split_pieces")  # fmt: skip


def record_batches(source: Any) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """Return ``(schema, batches)`` for a stream-like input.

    Accepted: a ``pyarrow.RecordBatchReader`` or anything with ``__arrow_c_stream__`` (read lazily),
    a ``pyarrow.dataset.Dataset`` or ``Scanner`` (scanned lazily), a table, or an iterable of record
    batches or tables (the first one gives the schema).
    """
    if isinstance(source, pa.Table):
        return source.schema, iter(source.to_batches())
    if hasattr(source, "to_reader") and hasattr(source, "scan_batches"):  # pyarrow.dataset.Scanner
        source = source.to_reader()
    elif hasattr(source, "scanner") and hasattr(source, "schema") and hasattr(source, "files"):  # Dataset
        source = source.scanner().to_reader()
    if isinstance(source, pa.RecordBatchReader):
        return source.schema, iter(source)
    if hasattr(source, "__arrow_c_stream__"):
        reader = pa.RecordBatchReader.from_stream(source)
        return reader.schema, iter(reader)
    if isinstance(source, Iterable):
        it = iter(source)
        try:
            first = next(it)
        except StopIteration:
            raise ValueError("the input stream is empty and has no schema; pass a RecordBatchReader instead") from None

        def chain() -> Iterator[pa.RecordBatch]:
            yield from _as_batches(first)
            for item in it:
                yield from _as_batches(item)

        return first.schema, chain()
    raise TypeError(
        f"cannot stream {type(source).__name__}: pass a RecordBatchReader, a pyarrow dataset or scanner, "
        "or an iterable of record batches"
    )


def _as_batches(item: pa.RecordBatch | pa.Table) -> Iterator[pa.RecordBatch]:
    if isinstance(item, pa.RecordBatch):
        yield item
    elif isinstance(item, pa.Table):
        yield from item.to_batches()
    else:
        raise TypeError(f"a stream item is a {type(item).__name__}, not a pyarrow RecordBatch or Table")


def _token_counts(batch: pa.RecordBatch) -> np.ndarray | None:
    """Tokens per row of ``input_ids`` (None when the column is missing: the core reports it)."""
    if "input_ids" not in batch.schema.names:
        return None
    col = batch.column("input_ids")
    if not pa.types.is_list(col.type) and not pa.types.is_large_list(col.type):
        return None
    return pc.list_value_length(col).fill_null(0).to_numpy().astype(np.int64)


def windows(batches: Iterator[pa.RecordBatch], window_tokens: int) -> Iterator[list[pa.RecordBatch]]:
    """Group a batch stream into windows of at least ``window_tokens`` tokens.

    A window is cut right after the sample that reaches the budget, so windows do not depend on the
    input's batch sizes.
    """
    window: list[pa.RecordBatch] = []
    have = 0
    for batch in batches:
        while batch.num_rows:
            counts = _token_counts(batch)
            if counts is None:
                window.append(batch)
                break
            cumulative = np.cumsum(counts) + have
            if cumulative[-1] < window_tokens:
                window.append(batch)
                have = int(cumulative[-1])
                break
            cut = int(np.searchsorted(cumulative, window_tokens, side="left")) + 1
            window.append(batch.slice(0, cut))
            yield window
            window, have = [], 0
            batch = batch.slice(cut)
    if window:
        yield window


class PackedStream:
    """The output of :func:`pack_stream`: a one-shot stream of packed record batches.

    Iterate it, read it with :meth:`read_all`, or hand it to anything that takes an Arrow stream
    (``__arrow_c_stream__``, e.g. ``pyarrow.parquet.ParquetWriter.write_batch`` in a loop or
    ``pyarrow.dataset.write_dataset``). :attr:`stats` covers what has been read so far and is
    final once the stream is exhausted.
    """

    def __init__(self, schema: pa.Schema, batches: Iterator[pa.RecordBatch], seq_len: int) -> None:
        """Wrap the output ``batches`` (all with ``schema``)."""
        self.schema = schema
        self._batches = batches
        self._seq_len = seq_len
        self._totals: dict[str, Any] = {f.name: 0 for f in fields(PackStats)}
        self._totals["min_row_tokens"] = None
        self.windows = 0
        self.exhausted = False

    def _add(self, stats: dict[str, Any]) -> None:
        t = self._totals
        for k in _SUMMED:
            t[k] += stats[k]
        t["max_documents_per_row"] = max(t["max_documents_per_row"], stats["max_documents_per_row"])
        if stats["rows"]:
            m = t["min_row_tokens"]
            t["min_row_tokens"] = stats["min_row_tokens"] if m is None else min(m, stats["min_row_tokens"])
        self.windows += 1

    @property
    def stats(self) -> PackStats:
        """Statistics over the windows packed so far (fill rate over all rows)."""
        t = dict(self._totals)
        t["min_row_tokens"] = t["min_row_tokens"] or 0
        t["fill_rate"] = t["output_tokens"] / (t["rows"] * self._seq_len) if t["rows"] else 0.0
        return PackStats(**t)

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        """Yield the packed record batches, window by window."""
        yield from self._batches
        self.exhausted = True

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object:
        """Export the remaining batches as an Arrow C stream."""
        reader = pa.RecordBatchReader.from_batches(self.schema, iter(self))
        return reader.__arrow_c_stream__(requested_schema)

    def read_all(self) -> pa.Table:
        """Read every remaining batch into a table carrying the final statistics in its metadata."""
        table = pa.Table.from_batches(list(self), schema=self.schema)
        return attach(table, "pack", {"seq_len": self._seq_len, "streamed_windows": self.windows}, self.stats.as_dict())


def pack_stream(
    batches: Any,
    options: PackOptions | None = None,
    *,
    window_tokens: int = DEFAULT_WINDOW_TOKENS,
    **overrides: Any,
) -> PackedStream:
    """Pack a stream of tokenized samples window by window, in bounded memory.

    Each window of about ``window_tokens`` tokens is packed with :func:`longmagpie.pack` (same
    columns, options, output schema and errors; error rows are numbered over the whole stream).
    Rows never mix windows, so fill drops slightly against packing everything at once: the last
    rows of each window may be part-full (``benches/bench_stream.py`` measures the cost). A window
    at least as large as the input gives ``pack``'s output, byte for byte.

    Args:
        batches: a ``pyarrow.RecordBatchReader`` (or any ``__arrow_c_stream__`` producer), a
            ``pyarrow.dataset`` Dataset or Scanner (e.g. over Parquet shards), a table, or an
            iterable of record batches. Read lazily, one window ahead at most.
        options: the packing options, as for :func:`longmagpie.pack` (default ``PackOptions()``).
        window_tokens: tokens per window; memory grows with it, fill improves with it.
        **overrides: :class:`~longmagpie.options.PackOptions` fields by name (``seq_len=4096``,
            ``strategy=...``, ``overflow=...``, ``pad_to=...``, ``pad_id=...``, ``pad_documents_to=...``,
            ``num_threads=...``), applied
            over ``options``.

    Returns:
        A :class:`PackedStream` of packed record batches with ``pack``'s schema.

    """
    opts = resolve(PackOptions, options, overrides)
    require_ints(window_tokens=window_tokens)
    if window_tokens < 1:
        raise ValueError(f"window_tokens must be >= 1 (got {window_tokens})")
    schema, stream = record_batches(batches)
    # Packing no rows validates the arguments and the schema up front and gives the output schema.
    out_schema = to_pyarrow(_core.pack(schema.empty_table(), opts)[0]).schema

    def run(result: PackedStream) -> Iterator[pa.RecordBatch]:
        first_row = 0
        for window in windows(stream, window_tokens):
            table = pa.Table.from_batches(window, schema=schema)
            packed, stats = _core.pack(table, opts, first_row)
            first_row += table.num_rows
            result._add(stats)
            del table, window
            reader = pa.RecordBatchReader.from_stream(packed)
            del packed  # the reader owns the batches now; each is released once the caller drops it
            yield from reader
            del reader

    result = PackedStream(out_schema, iter(()), opts.seq_len)
    result._batches = run(result)
    return result
