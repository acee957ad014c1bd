"""The harvest's rows: their schema and :func:`read_harvest` (directory layout: :mod:`longmagpie.generate.resume`)."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from longmagpie.generate.resume import MANIFEST

ROW_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("doc_id", pa.string()),
        ("context", pa.large_string()),
        ("query", pa.string()),
        ("answer", pa.large_string()),
        ("sample", pa.int32()),
        ("query_candidate", pa.int32()),
        ("answer_candidate", pa.int32()),
        ("context_tokens", pa.int32()),
        ("context_truncated", pa.bool_()),
        ("query_tokens", pa.int32()),
        ("answer_tokens", pa.int32()),
        ("prompt_tokens", pa.int32()),
        ("query_grounding", pa.float64()),
        ("answer_grounding", pa.float64()),
        ("model", pa.string()),
        ("template", pa.string()),
        ("placement", pa.string()),
        ("query_temperature", pa.float64()),
        ("query_top_p", pa.float64()),
        ("answer_temperature", pa.float64()),
        ("answer_top_p", pa.float64()),
        ("seed", pa.int64()),
        ("query_finish_reason", pa.string()),
        ("answer_finish_reason", pa.string()),
        ("source_file", pa.string()),
        ("source_row", pa.int64()),
    ]
)


def read_harvest(out_dir: str | os.PathLike[str]) -> pa.Table:
    """All finished shards of a harvest directory, in shard order, as one table."""
    out = Path(out_dir)
    if not (out / MANIFEST).is_file():
        raise FileNotFoundError(f"{out} has no {MANIFEST}: not a harvest output directory")
    keys = sorted(p.name[: -len(".done.json")] for p in out.glob("shard-*.done.json"))
    tables = [pq.read_table(out / f"{k}.parquet", schema=ROW_SCHEMA) for k in keys]
    return pa.concat_tables(tables) if tables else ROW_SCHEMA.empty_table()
