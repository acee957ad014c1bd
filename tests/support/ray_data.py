"""Helpers for the Ray packing tests."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from support import make_samples, rng_lengths


def write_shards(folder: Path, table: pa.Table, files: int, row_group_rows: int, prefix: str = "part") -> list[Path]:
    """Split ``table`` into ``files`` Parquet files of row groups of ``row_group_rows`` rows."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    n = table.num_rows
    for k in range(files):
        lo, hi = k * n // files, (k + 1) * n // files
        path = folder / f"{prefix}-{k:03d}.parquet"
        pq.write_table(table.slice(lo, hi - lo), path, row_group_size=row_group_rows)
        paths.append(path)
    return paths


def samples(seed: int, n: int, lo: int, hi: int, offset: int = 0) -> pa.Table:
    """Samples with unique ids per (sample, position); ``offset`` shifts the sample numbers (a second pool)."""
    table = make_samples(rng_lengths(seed, n, lo, hi), source=True)
    if offset:
        ids = [[t + offset * 100_000 for t in row] for row in table.column("input_ids").to_pylist()]
        table = table.set_column(0, "input_ids", pa.array(ids, pa.list_(pa.int32())))
    return table


def input_documents(table: pa.Table) -> Counter[tuple[int, ...]]:
    """Multiset of the input samples' token sequences (empty samples are not documents)."""
    return Counter(tuple(ids) for ids in table.column("input_ids").to_pylist() if ids)


def packed_documents(table: pa.Table) -> Counter[tuple[int, ...]]:
    """Multiset of the documents in packed rows, cut by ``seq_lengths``."""
    out: Counter[tuple[int, ...]] = Counter()
    for row in table.select(["input_ids", "seq_lengths"]).to_pylist():
        pos = 0
        for n in row["seq_lengths"]:
            out[tuple(row["input_ids"][pos : pos + n])] += 1
            pos += n
    return out


def check_rows(table: pa.Table, seq_len: int) -> None:
    """Every row valid: length <= seq_len, seq_lengths positive and summing to length, per-token columns aligned."""
    assert table.num_rows > 0
    for row in table.to_pylist():
        n = len(row["input_ids"])
        assert 0 < n <= seq_len
        assert row["length"] == n
        assert all(s > 0 for s in row["seq_lengths"]) and sum(row["seq_lengths"]) == n
        assert len(row["assistant_masks"]) == n
        assert set(row["assistant_masks"]) <= {0, 1}
        if "source" in row:
            assert len(row["source"]) == len(row["seq_lengths"])
        if "kind" in row:
            assert len(row["kind"]) == len(row["seq_lengths"])


def collect(dataset: object) -> pa.Table:
    """Run a Ray dataset and gather its rows in order, without schema metadata."""
    tables = [t.replace_schema_metadata(None) for t in dataset.iter_batches(batch_size=None, batch_format="pyarrow")]
    return pa.concat_tables(tables)


def ipc(table: pa.Table) -> bytes:
    """Arrow IPC bytes of ``table`` (equal bytes: identical data)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()
