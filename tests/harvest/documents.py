"""Input documents for the harvest tests: small English-like texts written as Parquet or JSONL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

MAX_MODEL_LEN = 1024
ENGINE_KWARGS: dict[str, Any] = {
    "dtype": "bfloat16",
    "enforce_eager": True,
    "kv_cache_memory_bytes": 256 * 2**20,
}

WORDS = (
    "river mountain library engine theory harvest signal archive lantern protocol meadow circuit "
    "glacier orchard compiler vessel canyon ledger beacon quartz"
).split()


def make_documents(n: int, seed: int = 0, words: int = 40) -> list[str]:
    """Distinct small English-like documents (the tiny model's text is gibberish anyway)."""
    docs = []
    for i in range(n):
        body = " ".join(WORDS[(i * 7 + j * (seed + 3)) % len(WORDS)] for j in range(words))
        docs.append(f"Document {i}. {body.capitalize()}.")
    return docs


def write_parquet(path: Path, texts: list[Any], column: str = "text", **extra: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({column: texts, **extra}), path)
    return path


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
