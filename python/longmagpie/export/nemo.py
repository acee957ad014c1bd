"""Packed rows as Megatron-Bridge (NeMo) packed-SFT Parquet, with per-document padding for context parallelism.

What Megatron-Bridge's ``GPTSFTPackedParquetDataset`` reads (``src/megatron/bridge/data/packing/parquet.py``;
its ``collate_fn`` is ``GPTSFTPackedDataset``'s, ``src/megatron/bridge/data/packing/gpt_sft.py``, read at
NVIDIA-NeMo/Megatron-Bridge 067f987df03b8355b03192d88d70f1709fedf51a): Parquet files with the columns

| column | type | content |
|---|---|---|
| ``input_ids`` | list<int32> | the row's tokens, documents back to back |
| ``loss_mask`` | list<int8> | per token ``i``: 1 = train on predicting token ``i + 1`` (rolled left by one |
|  |  | within each document, 0 on a document's last token) |
| ``seq_start_id`` | list<int32> | where each document starts (``0`` first) |

plus a metadata JSON (a list of dicts with ``max_samples_per_bin``, ``dataset_max_seqlen``,
``min_packed_seqlen``, ...) that it reads only with ``pad_cu_seqlens=True`` (CUDA graphs). Its collate
turns each document of ``L`` stored tokens into ``L - 1`` model inputs (``input_ids[s:e-1]``, labels
``input_ids[s+1:e]``, loss mask ``loss_mask[s:e-1]``, positions restarting at 0), so ``cu_seqlens`` are
the cumulated ``L - 1``.

With ``pad_seq_to_mult`` > 1 (``2 * context_parallel_size`` for THD context parallelism) those document
boundaries become ``cu_seqlens_q_padded`` (every document's ``L - 1`` must then be a multiple), and the
unpadded ``cu_seqlens_q`` is derived per document as the position of its last input token that is not
the tokenizer's EOS id. So a CP-ready file pads each document with EOS ids (loss 0) to ``L - 1`` a
multiple of ``pad_seq_to_mult``, and records nothing else: the trainer needs no extra column. We add a
``seq_lengths`` column (each document's length before padding), which the trainer does not read, and,
when the rows carry them (``pack(..., loss_weights=...)``), ``loss_weights`` list<float32> rolled as
``loss_mask`` is. Megatron-Bridge's loss does not read it: it is there for a loss function of the user's.

Rows packed with ``pad_documents_to`` (whose documents carry padding of their own, counted by
``seq_lengths_unpadded``) are exported without that padding, then padded by the rule above: Megatron-Bridge pads
``L - 1``, not ``L``, with EOS ids, and finds the unpadded boundaries from them.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from longmagpie.export.card import export_params
from longmagpie.export.parquet import SHARD_BYTES, ExportResult, ShardLimits, ShardWriter
from longmagpie.export.rows import LOSS_WEIGHTS, PackedRows, list_lengths, strip_document_padding, trained
from longmagpie.export.staging import staged_directory
from longmagpie.io import storage

#: The columns Megatron-Bridge's GPTSFTPackedParquetDataset reads (its ``REQUIRED_COLUMNS``), and ours.
NEMO_SCHEMA = pa.schema(
    [
        pa.field("input_ids", pa.list_(pa.int32())),
        pa.field("loss_mask", pa.list_(pa.int8())),
        pa.field("seq_start_id", pa.list_(pa.int32())),
        pa.field("seq_lengths", pa.list_(pa.int32())),
    ]
)
#: Written after those when the rows carry ``loss_weights`` (rolled as ``loss_mask``; the trainer does not read it).
NEMO_WEIGHTS_FIELD = pa.field(LOSS_WEIGHTS, pa.list_(pa.float32()))
#: The metadata file ``packed_metadata_path`` points to (upstream's key order).
METADATA_FILE = "metadata.json"
#: What longmagpie wrote (version, parameters, totals, packing metadata); not read by the trainer.
PROVENANCE_FILE = "longmagpie.json"
#: Default row-group size, counted in memory. The trainer reads one whole row group per sample it fetches
#: (caching only the last), and samples are shuffled: small groups keep random access cheap (upstream
#: writes 500 rows per group).
ROW_GROUP_BYTES = 8 * 2**20


@dataclass
class _Acc:
    """Running totals of what was written, in the trainer's units where it has them."""

    rows: int = 0
    tokens: int = 0
    documents: int = 0
    trained_tokens: int = 0
    pad_tokens: int = 0
    runtime_tokens: int = 0
    max_samples_per_bin: int = 0
    dataset_max_seqlen: int = 0
    min_packed_seqlen: int | None = None


def _positive_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")


def resolve_multiple(cp_size: int, pad_seq_to_mult: int | None) -> int:
    """Return the multiple each document's model-input length is padded to (Megatron-Bridge's ``pad_seq_to_mult``).

    ``2 * cp_size`` when ``cp_size`` > 1, else 1; an explicit ``pad_seq_to_mult`` (e.g. ``lcm(2 * CP, CP * TP)``
    with sequence parallelism) must be a multiple of it.

    Raises:
        ValueError: a value that is not a positive int, or a ``pad_seq_to_mult`` that ``2 * cp_size`` does not divide.

    """
    _positive_int("cp_size", cp_size)
    need = 2 * cp_size if cp_size > 1 else 1
    if pad_seq_to_mult is None:
        return need
    _positive_int("pad_seq_to_mult", pad_seq_to_mult)
    if pad_seq_to_mult % need:
        raise ValueError(
            f"pad_seq_to_mult={pad_seq_to_mult} is not a multiple of 2 * cp_size = {need}; context parallelism "
            "splits every document into 2 * cp_size chunks"
        )
    return pad_seq_to_mult


def _per_row_sum(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    cum = np.zeros(len(values) + 1, dtype=np.int64)
    np.cumsum(values, out=cum[1:])
    ends = np.cumsum(counts)
    return cum[ends] - cum[ends - counts]


def _list_array(values: np.ndarray, counts: np.ndarray, t: pa.DataType) -> pa.Array:
    offsets = np.zeros(len(counts) + 1, dtype=np.int32)
    np.cumsum(counts, out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), pa.array(values, t))


def nemo_batch(
    batch: pa.RecordBatch, first_row: int, seq_len: int, multiple: int, pad_id: int | None
) -> pa.RecordBatch:
    """Turn a checked batch of packed rows into Megatron-Bridge rows (see the module docstring).

    ``first_row`` numbers the rows in error messages; ``multiple`` is the resolved ``pad_seq_to_mult``.

    Raises:
        ValueError: a row without documents, a token id outside int32, a row whose padded documents need more
            than ``seq_len`` model inputs, or a trained label the trainer would take for padding (the message
            names the row and the fix).

    """
    # Rows padded at pack time (pad_documents_to) lose that padding: Megatron-Bridge pads by its own rule below.
    batch = strip_document_padding(batch)
    n = list_lengths(batch.column("input_ids"))
    nd = list_lengths(batch.column("seq_lengths"))
    if (bad := np.flatnonzero(nd == 0)).size:
        raise ValueError(f"row {first_row + int(bad[0])}: no documents; Megatron-Bridge cannot read an empty row")
    ids = pc.list_flatten(batch.column("input_ids")).to_numpy(zero_copy_only=False).astype(np.int64)
    if ids.size and (ids.min() < 0 or ids.max() > np.iinfo(np.int32).max):
        at = int(np.flatnonzero((ids < 0) | (ids > np.iinfo(np.int32).max))[0])
        row = int(np.searchsorted(np.cumsum(n), at, side="right"))
        raise ValueError(f"row {first_row + row}: token id {ids[at]} does not fit the int32 input_ids")
    lengths = pc.list_flatten(batch.column("seq_lengths")).to_numpy(zero_copy_only=False).astype(np.int64)
    keep = trained(batch)
    doc_start = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1], out=doc_start[1:])
    # loss_mask[i] says whether the label of input i (token i + 1) is trained: rolled by one within each document.
    mask = np.zeros(len(ids), dtype=np.int8)
    mask[:-1] = keep[1:]
    mask[doc_start + lengths - 1] = 0
    weights = None
    if LOSS_WEIGHTS in batch.schema.names:
        w = pc.list_flatten(batch.column(LOSS_WEIGHTS)).to_numpy(zero_copy_only=False).astype(np.float32)
        weights = np.zeros(len(ids), dtype=np.float32)
        weights[:-1] = w[1:]
        weights[doc_start + lengths - 1] = 0
    out_weights = weights
    if multiple == 1:
        padded, out_ids, out_mask = lengths, ids, mask
    else:
        assert pad_id is not None
        padded = (lengths - 1 + multiple - 1) // multiple * multiple + 1
        new_start = np.zeros(len(padded), dtype=np.int64)
        np.cumsum(padded[:-1], out=new_start[1:])
        doc_of = np.repeat(np.arange(len(lengths)), lengths)
        where = np.arange(len(ids)) - doc_start[doc_of] + new_start[doc_of]
        out_ids = np.full(int(padded.sum()), pad_id, dtype=np.int64)
        out_ids[where] = ids
        out_mask = np.zeros(len(out_ids), dtype=np.int8)
        out_mask[where] = mask
        if weights is not None:
            out_weights = np.zeros(len(out_ids), dtype=np.float32)
            out_weights[where] = weights
        _check_logical_lengths(out_ids, out_mask, padded, new_start, nd, first_row, pad_id)
    runtime = _per_row_sum(padded - 1, nd)
    if (bad := np.flatnonzero(runtime > seq_len)).size:
        i = int(bad[0])
        raise ValueError(
            f"row {first_row + i}: its {nd[i]} documents padded to multiples of {multiple} (pad_seq_to_mult, "
            f"for context parallelism) make {runtime[i]} model inputs, more than seq_len={seq_len} (the "
            f"trainer's packed_sequence_size); each document may grow by up to {multiple - 1} tokens. Pack with "
            "a smaller seq_len to leave room for the padding (or pad the documents at pack time); no row is "
            "dropped"
        )
    row_tokens = _per_row_sum(padded, nd)
    doc_rel = np.zeros(len(padded), dtype=np.int64)
    np.cumsum(padded[:-1], out=doc_rel[1:])
    row_first = np.repeat(np.cumsum(row_tokens) - row_tokens, nd)
    columns = [
        _list_array(out_ids, row_tokens, pa.int32()),
        _list_array(out_mask, row_tokens, pa.int8()),
        _list_array(doc_rel - row_first, nd, pa.int32()),
        _list_array(lengths, nd, pa.int32()),
    ]
    schema = NEMO_SCHEMA
    if out_weights is not None:
        columns.append(_list_array(out_weights, row_tokens, pa.float32()))
        schema = schema.append(NEMO_WEIGHTS_FIELD)
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def _check_logical_lengths(
    ids: np.ndarray,
    mask: np.ndarray,
    padded: np.ndarray,
    start: np.ndarray,
    nd: np.ndarray,
    first_row: int,
    pad_id: int,
) -> None:
    """Refuse a document whose trained labels the trainer would take for padding.

    With ``pad_seq_to_mult`` > 1, Megatron-Bridge ends a document's unpadded span at its last model input
    that is not EOS; inputs after it are padding to the attention. A document ending in several EOS tokens
    (the pad id) with trained labels among them would be trained on padding.
    """
    doc_of = np.repeat(np.arange(len(padded)), padded)
    offset = np.arange(len(ids)) - start[doc_of]
    real = (ids != pad_id) & (offset < (padded - 1)[doc_of])
    logical = np.zeros(len(padded), dtype=np.int64)
    np.maximum.at(logical, doc_of[real], offset[real] + 1)
    lost = np.flatnonzero((mask != 0) & (offset >= logical[doc_of]))
    if lost.size:
        doc = int(doc_of[lost[0]])
        row = int(np.searchsorted(np.cumsum(nd), doc, side="right"))
        k = doc - int(np.cumsum(nd)[row] - nd[row])
        raise ValueError(
            f"row {first_row + row}, document {k}: ends in repeated pad_id={pad_id} (EOS) tokens whose labels are "
            "trained, but Megatron-Bridge's collate ends a document's real span at its last input that is not EOS, "
            "so those labels would be trained on padding. Remove the repeated EOS tokens from the sample, or "
            "export without cp_size/pad_seq_to_mult"
        )


def export_nemo(
    rows: Any,
    out_dir: str | os.PathLike[str],
    *,
    seq_len: int | None = None,
    cp_size: int = 1,
    pad_seq_to_mult: int | None = None,
    pad_id: int | None = None,
    rows_per_shard: int | None = None,
    shard_bytes: int = SHARD_BYTES,
    row_group_rows: int | None = None,
    row_group_bytes: int = ROW_GROUP_BYTES,
    compression_level: int | None = None,
    overwrite: bool = False,
) -> ExportResult:
    """Write packed rows as Megatron-Bridge (NeMo) packed-SFT Parquet, context-parallel ready with ``cp_size`` > 1.

    ``out_dir`` gets ``part-00000-of-000NN.idx.parquet`` shards (zstd) with the columns Megatron-Bridge's
    ``GPTSFTPackedParquetDataset`` reads, ``input_ids`` list<int32>, ``loss_mask`` list<int8> (rolled: 1 at
    input ``i`` trains the label ``i + 1``) and ``seq_start_id`` list<int32> (document starts), plus
    ``seq_lengths`` (unpadded document lengths, not read by the trainer); ``metadata.json``, the packing
    metadata upstream's packer writes (for ``packed_metadata_path``, read with ``pad_cu_seqlens=True``); and
    ``longmagpie.json`` (version, parameters, totals). Point ``packed_train_data_path`` at ``out_dir`` (or
    a glob of its shards) with ``packed_sequence_size`` and ``seq_length`` = ``seq_len``.

    With ``cp_size`` > 1 every document is padded with ``pad_id`` (loss 0) so that its model inputs (its
    length minus 1, as the trainer shifts labels) are a multiple of ``2 * cp_size``; set the trainer's
    ``pad_seq_to_mult`` to the same value, and it derives both the padded ``cu_seqlens_q_padded`` (from
    ``seq_start_id``) and the unpadded ``cu_seqlens_q`` (from the last non-EOS input of each document).
    ``pad_id`` must therefore be that tokenizer's EOS id. A row whose padded documents need more than
    ``seq_len`` model inputs is refused, never dropped.

    The directory is built in a temporary sibling and renamed into place (local paths only). Memory holds
    one row group.

    Args:
        rows: packed rows, as :func:`longmagpie.export_parquet` takes them (a table from ``pack`` /
            ``pack_pmix``, or a stream of record batches such as ``pack_stream``'s output), read once.
        out_dir: output directory (local); must be absent or empty unless ``overwrite``.
        seq_len: the row capacity, which becomes the trainer's ``packed_sequence_size`` (``None``: from the
            table's packing metadata, ``pad_to`` if rows were padded; required for a stream).
        cp_size: the trainer's ``context_parallel_size``; > 1 pads every document as above.
        pad_seq_to_mult: the multiple, when not ``2 * cp_size`` (e.g. ``lcm(2 * CP, CP * TP)`` with sequence
            parallelism, as Megatron-Bridge's docs give it); must be a multiple of ``2 * cp_size``.
        pad_id: the trainer tokenizer's EOS id (``tokenizer.eos_id``), used as padding; required when
            documents are padded.
        rows_per_shard: most rows per shard (``None``: limited by ``shard_bytes`` only).
        shard_bytes: most in-memory bytes per shard (a shard holds at least one row).
        row_group_rows: most rows per row group (``None``: limited by ``row_group_bytes`` only).
        row_group_bytes: most in-memory bytes per row group (default 8 MiB: the trainer reads a whole
            group per sample).
        compression_level: zstd level (``None``: Arrow's default).
        overwrite: replace a non-empty ``out_dir``.

    Returns:
        An :class:`~longmagpie.ExportResult` whose ``files`` are the shards then ``metadata.json``; ``tokens``
        count the padding; ``trained_tokens`` the labels with ``loss_mask`` 1 (a document's first token is
        never a label).

    Raises:
        FileExistsError: ``out_dir`` is not empty and ``overwrite`` is false.
        ValueError: the rows are not packed rows, ``seq_len`` is unknown or not a multiple of the padding
            multiple, ``pad_id`` is missing, ``out_dir`` is not local, or a row cannot be written (the
            message names the row: too long once padded, empty, or trained labels the trainer would take
            for padding).

    """
    multiple = resolve_multiple(cp_size, pad_seq_to_mult)
    if multiple > 1:
        if pad_id is None:
            raise ValueError(
                f"pad_id is required to pad documents to multiples of {multiple}: pass the EOS id of the tokenizer "
                "the trainer uses (Megatron-Bridge takes trailing EOS tokens of a document for its padding)"
            )
        if isinstance(pad_id, bool) or not isinstance(pad_id, int) or not 0 <= pad_id <= np.iinfo(np.int32).max:
            raise ValueError(f"pad_id must be an int in 0..2**31-1, got {pad_id!r}")
    limits = ShardLimits.resolve(rows_per_shard, shard_bytes, row_group_rows, row_group_bytes, compression_level)
    source = PackedRows(rows, seq_len)
    if source.seq_len is None:
        raise ValueError(
            "seq_len is unknown (the rows carry no packing metadata): pass seq_len, the row capacity the rows "
            "were packed with (the trainer's packed_sequence_size)"
        )
    if source.seq_len % multiple:
        raise ValueError(
            f"seq_len={source.seq_len} is not a multiple of {multiple} (2 * cp_size / pad_seq_to_mult): the trainer "
            "pads each row to seq_len, and every segment, that padding included, must split into 2 * cp_size chunks"
        )
    out = storage.require_local(out_dir, "a Megatron-Bridge packed dataset")
    acc = _Acc()
    schema = NEMO_SCHEMA.append(NEMO_WEIGHTS_FIELD) if LOSS_WEIGHTS in source.schema.names else NEMO_SCHEMA
    schema = schema.with_metadata(source.schema.metadata)
    with staged_directory(out, overwrite) as tmp:
        writer = ShardWriter(tmp, schema, *limits)
        try:
            for batch in source:
                converted = nemo_batch(batch, source.totals.rows - batch.num_rows, source.seq_len, multiple, pad_id)
                _count(acc, converted)
                writer.add(converted.replace_schema_metadata(schema.metadata))
            parts = writer.finish()
        except BaseException:
            writer.abort()
            raise
        names = [f"part-{k:05d}-of-{len(parts):05d}.idx.parquet" for k in range(len(parts))]
        for part, name in zip(parts, names, strict=True):
            os.replace(part, tmp / name)
        (tmp / METADATA_FILE).write_text(json.dumps([_trainer_metadata(acc, source.seq_len)]) + "\n", "utf-8")
        provenance = _provenance(source, acc, names, multiple, cp_size, pad_id, limits)
        (tmp / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2, sort_keys=True) + "\n", "utf-8")
    files = (*names, METADATA_FILE)
    return ExportResult(
        Path(out), files, acc.rows, acc.tokens, acc.documents, acc.trained_tokens, source.pack_metadata()
    )


def _count(acc: _Acc, batch: pa.RecordBatch) -> None:
    n = list_lengths(batch.column("input_ids"))
    nd = list_lengths(batch.column("seq_start_id"))
    lengths = pc.list_flatten(batch.column("seq_lengths")).to_numpy(zero_copy_only=False).astype(np.int64)
    runtime = n - nd
    acc.rows += batch.num_rows
    acc.tokens += int(n.sum())
    acc.documents += int(nd.sum())
    acc.trained_tokens += int(pc.sum(pc.list_flatten(batch.column("loss_mask"))).as_py() or 0)
    acc.pad_tokens += int(n.sum() - lengths.sum())
    acc.runtime_tokens += int(runtime.sum())
    acc.max_samples_per_bin = max(acc.max_samples_per_bin, int(nd.max()))
    starts = pc.list_flatten(batch.column("seq_start_id")).to_numpy(zero_copy_only=False).astype(np.int64)
    ends = np.append(starts[1:], 0)
    last = np.cumsum(nd) - 1
    ends[last] = n
    acc.dataset_max_seqlen = max(acc.dataset_max_seqlen, int((ends - starts - 1).max()))
    low = int(runtime.min())
    acc.min_packed_seqlen = low if acc.min_packed_seqlen is None else min(acc.min_packed_seqlen, low)


def _trainer_metadata(acc: _Acc, seq_len: int) -> dict[str, Any]:
    """Build the dict upstream's ``create_packing_strategy`` records, in the model-input units it uses."""
    return {
        "dataset_max_seqlen": acc.dataset_max_seqlen,
        "max_samples_per_bin": acc.max_samples_per_bin,
        "packing_factor": round(acc.documents / acc.rows, 2) if acc.rows else 0.0,
        "packing_efficiency": round(acc.runtime_tokens / acc.rows / seq_len * 100, 2) if acc.rows else 0.0,
        "pack_size": seq_len,
        "min_packed_seqlen": acc.min_packed_seqlen or 0,
    }


def _provenance(
    source: PackedRows,
    acc: _Acc,
    names: list[str],
    multiple: int,
    cp_size: int,
    pad_id: int | None,
    limits: tuple[Any, ...],
) -> dict[str, Any]:
    return {
        "format": "megatron-bridge packed parquet (GPTSFTPackedParquetDataset)",
        "export": export_params(
            None,
            source.seq_len,
            limits,
            cp_size=cp_size,
            pad_seq_to_mult=multiple,
            pad_id=pad_id if multiple > 1 else None,
        ),
        "totals": {
            "rows": acc.rows,
            "tokens": acc.tokens,
            "documents": acc.documents,
            "trained_tokens": acc.trained_tokens,
            "pad_tokens": acc.pad_tokens,
            "model_input_tokens": acc.runtime_tokens,
        },
        "files": names,
        "pack_metadata": source.pack_metadata(),
    }
