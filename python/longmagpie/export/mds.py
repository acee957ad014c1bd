"""Packed rows as MDS (mosaicml-streaming), with the columns the LongMagpie / ProLong trainers read.

One sample per packed row:

| column | MDS encoding | content |
|---|---|---|
| ``input_ids`` | ``ndarray:uint32`` | the row's tokens |
| ``indices`` | ``ndarray:int64`` (upstream: uint32), shape (documents, 2) | ``[start, end)`` of each document |
| ``mask`` | ``ndarray:uint8`` | 1 = train on the token (``assistant_masks``, and ``labels != -100`` when present) |
| ``length`` | ``int`` | tokens in the row |
| ``domain`` | ``str`` | a constant, or the row's sources |
| ``loss_weights`` | ``ndarray:float32`` | only when the rows have it (``pack(loss_weights=...)``); not upstream's |

Upstream LongMagpie's p-mix writes one span per row (``[[0, 65536]]``), so attention crosses the
packed conversations (its plain 64k set has one span per conversation); here every packed document
(every sample given to ``pack``/``pack_pmix``) gets its own span, which ProLong's collator turns into
per-document varlen attention with restarted positions.

Why ``indices`` is int64 and not upstream's uint32: ProLong's ``DataCollator`` (``training/dataset.py``)
does Python-int arithmetic on the decoded numpy scalars, ``b = a + min(b - a, available_tokens)`` and
``available_tokens -= b - a`` with ``available_tokens = 4_294_967_296`` by default. Under numpy 2
(NEP 50) a Python int takes the numpy scalar's type, and 2**32 does not fit uint32 (nor int32), so
uint32 spans raise ``OverflowError`` on the first row; numpy 1, which ProLong pins, promoted by value
and hid this. int64 spans give the same result on both numpy lines (exact below 2**63), and also keep
the length sort of its ``SortByLengthDataset`` (``-sum((end - start) ** 2)``) from wrapping, as it
can in uint32 under numpy 2 in rows of 65536 tokens or more. ``export_mds(..., indices_dtype="uint32")``
still writes upstream's exact encoding.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from longmagpie.export.parquet import ExportResult
from longmagpie.export.rows import LOSS_WEIGHTS, PackedRows, list_lengths, trained
from longmagpie.export.staging import staged_directory
from longmagpie.io import storage

#: The columns and encodings of upstream LongMagpie's ``build_sft_data*.py`` (and ProLong's SFT data).
UPSTREAM_MDS_COLUMNS = {
    "input_ids": "ndarray:uint32",
    "indices": "ndarray:uint32",
    "mask": "ndarray:uint8",
    "length": "int",
    "domain": "str",
}
#: What :func:`export_mds` writes by default: upstream's columns with ``indices`` as int64 (see the module docstring).
MDS_COLUMNS = {**UPSTREAM_MDS_COLUMNS, "indices": "ndarray:int64"}
#: The ``indices_dtype`` values :func:`export_mds` takes.
INDICES_DTYPES = ("int64", "uint32")
#: Upstream's shard size (``MDSWriter``'s default ``size_limit``, 64 MiB).
SIZE_LIMIT = 1 << 26


def _import_mds_writer() -> Any:
    try:
        from streaming import MDSWriter
    except ImportError as err:
        raise ImportError(
            "MDS export needs mosaicml-streaming: pip install 'longmagpie[mds]' (with transformers >= 5, "
            "which mosaicml-streaming 0.13 does not declare, install it with `pip install --no-deps "
            "mosaicml-streaming` plus its runtime dependencies; see the README)"
        ) from err
    return MDSWriter


def _flat(col: pa.Array, dtype: type[np.generic]) -> np.ndarray:
    return pc.list_flatten(col).to_numpy(zero_copy_only=False).astype(dtype, copy=False)


def mds_samples(batch: pa.RecordBatch, domain: str | None, indices_dtype: str = "int64") -> list[dict[str, Any]]:
    """Turn a checked batch of packed rows into MDS samples (see the module docstring)."""
    if indices_dtype not in INDICES_DTYPES:
        raise ValueError(f"indices_dtype must be one of {INDICES_DTYPES}, got {indices_dtype!r}")
    n = list_lengths(batch.column("input_ids"))
    starts = np.zeros(len(n) + 1, dtype=np.int64)
    np.cumsum(n, out=starts[1:])
    ids = _flat(batch.column("input_ids"), np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= 2**32):
        raise ValueError("input_ids holds a value outside uint32; MDS stores token ids as uint32")
    ids = ids.astype(np.uint32)
    names = batch.schema.names
    mask = trained(batch).astype(np.uint8)
    nd = list_lengths(batch.column("seq_lengths"))
    doc_lengths = _flat(batch.column("seq_lengths"), np.int64)
    sources = batch.column("source").to_pylist() if domain is None and "source" in names else None
    weights = _flat(batch.column(LOSS_WEIGHTS), np.float32) if LOSS_WEIGHTS in names else None
    out = []
    d = 0
    for r in range(batch.num_rows):
        lengths = doc_lengths[d : d + nd[r]]
        d += nd[r]
        ends = np.cumsum(lengths)
        indices = np.stack([ends - lengths, ends], axis=1).astype(indices_dtype)
        if domain is not None:
            dom = domain
        elif sources is not None:
            row_sources = sources[r] if isinstance(sources[r], list) else [sources[r]]
            dom = ",".join(dict.fromkeys(s for s in row_sources if s is not None))
        else:
            dom = ""
        a, b = starts[r], starts[r + 1]
        sample = {"input_ids": ids[a:b], "indices": indices, "mask": mask[a:b], "length": int(n[r]), "domain": dom}
        if weights is not None:
            sample[LOSS_WEIGHTS] = weights[a:b]
        out.append(sample)
    return out


def export_mds(
    rows: Any,
    out_dir: str | os.PathLike[str],
    *,
    seq_len: int | None = None,
    domain: str | None = None,
    compression: str | None = "zstd",
    size_limit: int = SIZE_LIMIT,
    overwrite: bool = False,
    indices_dtype: str = "int64",
) -> ExportResult:
    """Write packed rows as an MDS dataset that ``streaming.StreamingDataset(local=out_dir)`` reads.

    Columns are those of upstream LongMagpie / ProLong (``input_ids`` uint32, ``indices`` (n, 2),
    ``mask`` uint8, ``length`` int, ``domain`` str), so their training code reads the output
    unchanged; ``indices`` holds one ``[start, end)`` span per document (from ``seq_lengths``), not
    upstream p-mix's single span per row. ``indices`` is int64 by default, not upstream's uint32:
    ProLong's collator computes ``available_tokens -= b - a`` with a Python int of 2**32 on the
    decoded scalars, which numpy 2 (NEP 50) refuses for uint32 (``OverflowError``) and numpy 1
    accepted; int64 gives the same documents and trained tokens on both (see the module
    docstring). The directory is built in a temporary sibling and renamed into place (no partial
    shards on failure). Needs the ``mds`` extra.

    Args:
        rows: packed rows, in any form :func:`longmagpie.export_parquet` takes (a table or a stream).
        out_dir: output directory; must be absent or empty unless ``overwrite``.
        seq_len: the most tokens a row may hold (``None``: from the table's packing metadata).
        domain: the ``domain`` string of every sample; ``None`` writes each row's distinct sources
            joined by ``,`` (``""`` without a ``source`` column; upstream writes ``""``).
        compression: MDS shard compression (``"zstd"``, ``None`` as upstream, or any
            mosaicml-streaming codec).
        size_limit: shard size limit in bytes (upstream: 64 MiB).
        overwrite: replace a non-empty ``out_dir``.
        indices_dtype: the ``indices`` encoding: ``"int64"`` (``ndarray:int64``, read by ProLong's
            collator under numpy 1 and 2) or ``"uint32"`` (``ndarray:uint32``, upstream's exact
            encoding, which ProLong's collator reads only under numpy 1).

    Returns:
        An :class:`~longmagpie.export.parquet.ExportResult` (``files`` lists the shards and ``index.json``).

    Raises:
        FileExistsError: ``out_dir`` is not empty and ``overwrite`` is false.
        ValueError: as for :func:`longmagpie.export_parquet`, or ``indices_dtype`` is not in
            :data:`INDICES_DTYPES`.
        ImportError: mosaicml-streaming is not installed.

    """
    mds_writer = _import_mds_writer()
    if domain is not None and not isinstance(domain, str):
        raise TypeError(f"domain must be a str or None, got {type(domain).__name__}")
    if isinstance(size_limit, bool) or not isinstance(size_limit, int) or size_limit < 1:
        raise ValueError(f"size_limit must be a positive int, got {size_limit!r}")
    if indices_dtype not in INDICES_DTYPES:
        raise ValueError(f"indices_dtype must be one of {INDICES_DTYPES}, got {indices_dtype!r}")
    columns = {**MDS_COLUMNS, "indices": f"ndarray:{indices_dtype}"}
    source = PackedRows(rows, seq_len)
    if LOSS_WEIGHTS in source.schema.names:
        columns[LOSS_WEIGHTS] = "ndarray:float32"
    out = storage.require_local(out_dir, "MDS export")
    with staged_directory(out, overwrite) as tmp:
        with mds_writer(
            out=str(tmp), columns=columns, compression=compression, size_limit=size_limit, progress_bar=False
        ) as writer:
            for batch in source:
                for sample in mds_samples(batch, domain, indices_dtype):
                    writer.write(sample)
        files = tuple(sorted(p.name for p in tmp.iterdir()))
    t = source.totals
    return ExportResult(out, files, t.rows, t.tokens, t.documents, t.trained_tokens, source.pack_metadata())
