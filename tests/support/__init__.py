"""Helpers shared by the Python tests (plain functions; fixtures live in the conftest.py files).

``tests`` is on ``sys.path`` (``pythonpath`` in pyproject.toml), so a test imports them as ``from support import ...``.
"""

from __future__ import annotations

import importlib
import os
import socket
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

#: The tiny random-weight Qwen2's engine, shared by every in-process vLLM test (``engine`` in tests/conftest.py);
#: float32, the CPU default of ``engine_arguments``.
MAX_MODEL_LEN = 1024
ENGINE_KWARGS: dict[str, Any] = {
    "enforce_eager": True,
    "kv_cache_memory_bytes": 256 * 2**20,
}


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def require(module: str) -> ModuleType:
    """Import ``module``; skip when it is missing, except under scripts/test.sh (CI), where it must be there."""
    if os.environ.get("LONGMAGPIE_WHEEL"):
        return importlib.import_module(module)
    return pytest.importorskip(module)


def tree(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` with its bytes, keyed by relative path (``/``-separated)."""
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def siblings(path: Path) -> list[str]:
    """Names next to ``path`` that start with its name (temporary leftovers of a staged write)."""
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}."))


def make_samples(
    lengths: list[int],
    id_type: pa.DataType | None = None,
    large: bool = False,
    mask: bool = True,
    labels: bool = False,
    source: bool = False,
) -> pa.Table:
    """Samples whose ids encode (sample, position) = sample * 100_000 + position, so misplacement shows."""
    id_type = id_type or pa.int32()
    ids = [[s * 100_000 + p for p in range(n)] for s, n in enumerate(lengths)]
    list_type = pa.large_list if large else pa.list_
    cols: dict[str, pa.Array] = {"input_ids": pa.array(ids, list_type(id_type))}
    if mask:
        cols["assistant_masks"] = pa.array(
            [[(s + p) % 2 for p in range(n)] for s, n in enumerate(lengths)], list_type(pa.int8())
        )
    if labels:
        cols["labels"] = pa.array(
            [[-100 if p % 3 == 0 else s * 100_000 + p for p in range(n)] for s, n in enumerate(lengths)],
            list_type(pa.int64()),
        )
    if source:
        cols["source"] = pa.array([f"src{s % 3}" for s in range(len(lengths))], pa.string())
    return pa.table(cols)


def documents(table: pa.Table) -> list[tuple[list[int], list[int]]]:
    """Split every packed row into its documents: (ids, mask) per document, in output order."""
    out = []
    for row in table.select(["input_ids", "seq_lengths", "assistant_masks"]).to_pylist():
        pos = 0
        for n in row["seq_lengths"]:
            out.append((row["input_ids"][pos : pos + n], row["assistant_masks"][pos : pos + n]))
            pos += n
        assert pos == len(row["input_ids"])
    return out


def ipc_bytes(table: pa.Table) -> bytes:
    """Serialise a table to Arrow IPC: equal bytes mean byte-identical data, buffers and metadata."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def rng_lengths(seed: int, n: int, lo: int, hi: int) -> list[int]:
    """Seeded random lengths in [lo, hi]."""
    return np.random.default_rng(seed).integers(lo, hi + 1, size=n).tolist()
