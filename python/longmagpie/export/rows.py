"""Packed rows as exporters read them: one schema, checked batch by batch, with running totals."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from longmagpie._metadata import METADATA_KEY

#: Columns every packed row must have.
REQUIRED = ("input_ids", "seq_lengths")
#: Optional per-token columns: one value per token of ``input_ids``.
PER_TOKEN = ("assistant_masks", "labels")
#: The optional per-token float column (``pack(..., loss_weights=...)``): one weight per token of ``input_ids``.
LOSS_WEIGHTS = "loss_weights"
#: The real tokens of each ``seq_lengths`` entry, written with ``pad_documents_to`` (0 for a ``pad_to`` segment).
SEQ_LENGTHS_UNPADDED = "seq_lengths_unpadded"
#: Optional per-document columns: one value per entry of ``seq_lengths``.
PER_DOCUMENT = ("source", "kind", SEQ_LENGTHS_UNPADDED)


@dataclass
class Totals:
    """What an export wrote, counted by the exporter itself."""

    rows: int = 0
    tokens: int = 0
    documents: int = 0
    trained_tokens: int = 0
    max_row_tokens: int = 0
    min_row_tokens: int | None = None
    per_row_documents_max: int = 0

    def as_dict(self) -> dict[str, int]:
        """Return the totals as a plain dict (``min_row_tokens`` 0 when there are no rows)."""
        return {
            "rows": self.rows,
            "tokens": self.tokens,
            "documents": self.documents,
            "trained_tokens": self.trained_tokens,
            "max_row_tokens": self.max_row_tokens,
            "min_row_tokens": self.min_row_tokens or 0,
            "max_documents_per_row": self.per_row_documents_max,
        }


def _is_list(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t)


def list_lengths(col: pa.Array) -> np.ndarray:
    """Entries per row of a list column (nulls count 0), as int64."""
    return pc.list_value_length(col).fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)


def list_sums(col: pa.Array) -> np.ndarray:
    """Sum of each row's integer list, as int64 (respects slicing)."""
    lengths = list_lengths(col)
    values = pc.list_flatten(col).to_numpy(zero_copy_only=False).astype(np.int64)
    cum = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum(values, out=cum[1:])
    ends = np.cumsum(lengths)
    return cum[ends] - cum[ends - lengths]


def trained(batch: pa.RecordBatch) -> np.ndarray:
    """Per token of the batch (flattened), whether it is trained on: ``assistant_masks`` = 1 and ``labels`` != -100."""
    names = batch.schema.names
    ids = batch.column("input_ids")
    keep = np.ones(int(list_lengths(ids).sum()), dtype=bool)
    if "assistant_masks" in names:
        keep &= pc.list_flatten(batch.column("assistant_masks")).to_numpy(zero_copy_only=False) != 0
    if "labels" in names:
        keep &= pc.list_flatten(batch.column("labels")).to_numpy(zero_copy_only=False) != -100
    return keep


def _describe(schema: pa.Schema, other: pa.Schema) -> str:
    """Name the fields in which ``other`` differs from ``schema``."""
    diffs = []
    for f in schema:
        if f.name not in other.names:
            diffs.append(f"'{f.name}' missing")
        elif not other.field(f.name).type.equals(f.type):
            diffs.append(f"'{f.name}' is {other.field(f.name).type}, expected {f.type}")
    diffs += [f"unexpected column '{n}'" for n in other.names if n not in schema.names]
    if not diffs and schema.names != other.names:
        diffs.append(f"columns in order {other.names}, expected {schema.names}")
    return "; ".join(diffs) or "field nullability or nested field names differ"


def check_schema(schema: pa.Schema) -> None:
    """Check that ``schema`` is that of packed rows.

    Raises:
        ValueError: a required column is missing, or a column has the wrong kind of type.

    """
    for name in REQUIRED:
        if name not in schema.names:
            raise ValueError(
                f"the rows have no '{name}' column (columns: {schema.names}); export takes the output of "
                "longmagpie.pack / pack_pmix / pack_stream / pack_pmix_stream"
            )
    for name in (*REQUIRED, *PER_TOKEN, SEQ_LENGTHS_UNPADDED):
        if name in schema.names:
            t = schema.field(name).type
            if not _is_list(t) or not pa.types.is_integer(t.value_type):
                raise ValueError(f"column '{name}' must be a list of integers, got {t}")
    if LOSS_WEIGHTS in schema.names:
        t = schema.field(LOSS_WEIGHTS).type
        if not _is_list(t) or not pa.types.is_floating(t.value_type):
            raise ValueError(f"column '{LOSS_WEIGHTS}' must be a list of floats, got {t}")


class PackedRows:
    """Iterate packed record batches, checking each one and counting what passes.

    ``source`` is a ``pyarrow.Table`` or ``RecordBatch``, a ``RecordBatchReader`` or Arrow stream,
    or an iterable of record batches/tables such as :func:`longmagpie.pack_stream`'s output.
    Every batch must have the first batch's schema; every row must hold at most ``seq_len``
    tokens, its ``seq_lengths`` must be positive and sum to its token count, and its per-token
    columns must have one value per token.
    """

    def __init__(self, source: Any, seq_len: int | None) -> None:
        """Open ``source``; ``seq_len`` (when not ``None``) caps the tokens per row."""
        from longmagpie.packing.stream import record_batches

        if isinstance(source, pa.RecordBatch):
            source = pa.Table.from_batches([source])
        self.source = source
        self.schema, self._batches = record_batches(source)
        check_schema(self.schema)
        self.seq_len = seq_len if seq_len is not None else declared_seq_len(self.schema)
        if self.seq_len is not None and (isinstance(self.seq_len, bool) or not isinstance(self.seq_len, int)):
            raise TypeError(f"seq_len must be an int, got {type(self.seq_len).__name__}")
        if self.seq_len is not None and self.seq_len < 1:
            raise ValueError(f"seq_len must be >= 1, got {self.seq_len}")
        self.totals = Totals()

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        """Yield each checked batch (with the first batch's schema metadata)."""
        for index, batch in enumerate(self._batches):
            if not batch.schema.equals(self.schema, check_metadata=False):
                raise ValueError(
                    f"input batch {index} (starting at row {self.totals.rows}) does not have the first batch's "
                    f"schema: {_describe(self.schema, batch.schema)}. Every batch must have the same columns and "
                    "types; cast it or export the parts separately"
                )
            if batch.num_rows:
                self._check(batch)
                yield batch

    def _check(self, batch: pa.RecordBatch) -> None:
        first = self.totals.rows

        def fail(i: int, what: str) -> None:
            raise ValueError(f"row {first + i}: {what}")

        ids = batch.column("input_ids")
        if ids.null_count:
            fail(int(np.flatnonzero(ids.is_null().to_numpy(zero_copy_only=False))[0]), "input_ids is null")
        n = list_lengths(ids)
        if self.seq_len is not None and (bad := np.flatnonzero(n > self.seq_len)).size:
            fail(
                int(bad[0]),
                f"has {n[bad[0]]} tokens, more than seq_len={self.seq_len}; pass the seq_len (or pad_to) the rows "
                "were packed with, or repack",
            )
        docs = batch.column("seq_lengths")
        if docs.null_count:
            fail(int(np.flatnonzero(docs.is_null().to_numpy(zero_copy_only=False))[0]), "seq_lengths is null")
        nd = list_lengths(docs)
        if (flat := pc.list_flatten(docs).to_numpy(zero_copy_only=False)).size and flat.min() <= 0:
            row = int(np.searchsorted(np.cumsum(nd), int(np.flatnonzero(flat <= 0)[0]), side="right"))
            fail(row, "seq_lengths has an entry <= 0; every document has at least one token")
        sums = list_sums(docs)
        if (bad := np.flatnonzero(sums != n)).size:
            fail(int(bad[0]), f"seq_lengths sums to {sums[bad[0]]} but the row has {n[bad[0]]} tokens")
        for name in (*PER_TOKEN, LOSS_WEIGHTS, "length"):
            if name not in batch.schema.names:
                continue
            col = batch.column(name)
            have = list_lengths(col) if _is_list(col.type) else pc.fill_null(col, -1).to_numpy().astype(np.int64)
            if (bad := np.flatnonzero(have != n)).size:
                fail(int(bad[0]), f"'{name}' says {have[bad[0]]} tokens but input_ids has {n[bad[0]]}")
        for name in PER_DOCUMENT:
            if name in batch.schema.names and _is_list(batch.schema.field(name).type):
                have = list_lengths(batch.column(name))
                if (bad := np.flatnonzero(have != nd)).size:
                    fail(int(bad[0]), f"'{name}' has {have[bad[0]]} entries but seq_lengths has {nd[bad[0]]}")
        if SEQ_LENGTHS_UNPADDED in batch.schema.names:
            real = pc.list_flatten(batch.column(SEQ_LENGTHS_UNPADDED)).to_numpy(zero_copy_only=False)
            if (bad := np.flatnonzero((real < 0) | (real > flat))).size:
                row = int(np.searchsorted(np.cumsum(nd), int(bad[0]), side="right"))
                fail(row, f"'{SEQ_LENGTHS_UNPADDED}' has an entry outside 0..its seq_lengths entry")
        t = self.totals
        t.rows += batch.num_rows
        t.tokens += int(n.sum())
        t.documents += int(nd.sum())
        t.max_row_tokens = max(t.max_row_tokens, int(n.max()))
        t.min_row_tokens = int(n.min()) if t.min_row_tokens is None else min(t.min_row_tokens, int(n.min()))
        t.per_row_documents_max = max(t.per_row_documents_max, int(nd.max()))
        t.trained_tokens += int(trained(batch).sum())

    def pack_metadata(self) -> dict[str, Any] | None:
        """Return what produced the rows: the table's recorded metadata, or a stream's final statistics."""
        raw = (self.schema.metadata or {}).get(METADATA_KEY)
        if raw is not None:
            return json.loads(raw)
        stats = getattr(self.source, "stats", None)
        if stats is not None and hasattr(stats, "as_dict"):
            from longmagpie.packing.pmix import PmixPackedStream

            op = "pack_pmix_stream" if isinstance(self.source, PmixPackedStream) else "pack_stream"
            return {"op": op, "params": {"seq_len": self.seq_len}, "stats": stats.as_dict()}
        return None


def strip_document_padding(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Return ``batch`` without the padding ``pad_documents_to`` put after each document (a checked batch).

    Each document keeps its real tokens (``seq_lengths_unpadded``) in every per-token column; a segment with no
    real token (a row's ``pad_to`` segment) is kept whole, as it is without document padding. ``seq_lengths``
    becomes the kept lengths and ``seq_lengths_unpadded`` is dropped. A batch without that column is returned as
    it is. For exporters that pad documents their own way (NeMo).
    """
    names = batch.schema.names
    if SEQ_LENGTHS_UNPADDED not in names:
        return batch
    padded = pc.list_flatten(batch.column("seq_lengths")).to_numpy(zero_copy_only=False).astype(np.int64)
    real = pc.list_flatten(batch.column(SEQ_LENGTHS_UNPADDED)).to_numpy(zero_copy_only=False).astype(np.int64)
    kept = np.where(real > 0, real, padded)
    nd = list_lengths(batch.column("seq_lengths"))
    starts = np.zeros(len(padded), dtype=np.int64)
    np.cumsum(padded[:-1], out=starts[1:])
    # Flat positions of the kept tokens: for each segment, its first `kept` positions.
    seg_of = np.repeat(np.arange(len(kept)), kept)
    first_kept = np.zeros(len(kept), dtype=np.int64)
    np.cumsum(kept[:-1], out=first_kept[1:])
    take = pa.array(starts[seg_of] + np.arange(int(kept.sum())) - first_kept[seg_of])
    rows_of = np.repeat(np.arange(len(nd)), nd)
    row_tokens = np.bincount(rows_of, weights=kept, minlength=len(nd)).astype(np.int64)

    def rebuild(values: pa.Array, counts: np.ndarray) -> pa.Array:
        offsets = np.zeros(len(counts) + 1, dtype=np.int32)
        np.cumsum(counts, out=offsets[1:])
        return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), values)

    columns, fields = [], []
    for field in batch.schema:
        if field.name == SEQ_LENGTHS_UNPADDED:
            continue
        col = batch.column(field.name)
        if field.name == "seq_lengths":
            col = rebuild(pa.array(kept, field.type.value_type), nd)
        elif field.name in (*REQUIRED, *PER_TOKEN, LOSS_WEIGHTS):
            col = rebuild(pc.list_flatten(col).take(take), row_tokens)
        elif field.name == "length":
            col = pa.array(row_tokens, field.type)
        columns.append(col.cast(field.type))
        fields.append(field)
    return pa.RecordBatch.from_arrays(columns, schema=pa.schema(fields, metadata=batch.schema.metadata))


def declared_seq_len(schema: pa.Schema) -> int | None:
    """Return the row capacity recorded by ``pack``/``pack_pmix`` (``pad_to`` when rows were padded), if any."""
    raw = (schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        return None
    params = json.loads(raw).get("params", {})
    cap = params.get("pad_to") or params.get("seq_len")
    return int(cap) if cap is not None else None
