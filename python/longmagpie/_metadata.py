"""Run parameters and statistics stored in a table's schema metadata (they survive Parquet)."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from longmagpie import _core

#: Schema-metadata key under which longmagpie records what produced a table (JSON).
METADATA_KEY = b"longmagpie"


def attach(table: pa.Table, op: str, params: dict[str, Any], stats: dict[str, Any]) -> pa.Table:
    """Return ``table`` (zero-copy) with ``{op, version, params, stats}`` in its schema metadata."""
    meta = {"op": op, "version": _core.__version__, "params": params, "stats": stats}
    return table.replace_schema_metadata({METADATA_KEY: json.dumps(meta, sort_keys=True).encode()})


def pack_metadata(table: pa.Table | pa.Schema) -> dict[str, Any]:
    """Return what :func:`longmagpie.pack` or :func:`longmagpie.pack_pmix` recorded in ``table``.

    A dict with ``op`` (``"pack"`` or ``"pack_pmix"``), ``version``, ``params`` and ``stats``.
    Works on tables read back from Parquet too.

    Raises:
        ValueError: if the table was not produced by ``longmagpie``.

    """
    schema = table if isinstance(table, pa.Schema) else table.schema
    raw = (schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise ValueError("this table carries no longmagpie metadata (was it produced by longmagpie.pack?)")
    return json.loads(raw)


def stats_of(table: pa.Table | pa.Schema, op: str) -> dict[str, Any]:
    """Return the recorded statistics, checking that ``op`` produced the table."""
    meta = pack_metadata(table)
    if meta.get("op") != op:
        raise ValueError(f"this table was produced by longmagpie.{meta.get('op')}, not longmagpie.{op}")
    return meta["stats"]
