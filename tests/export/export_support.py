"""Helpers shared by the export tests (a module, not a conftest.py: a second conftest would shadow tests/conftest)."""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from types import ModuleType

import pyarrow as pa
import pytest


def require(module: str) -> ModuleType:
    """Import ``module``; skip when it is missing, except under scripts/test.sh (CI), where it must be there."""
    if os.environ.get("LONGMAGPIE_WHEEL"):
        return importlib.import_module(module)
    return pytest.importorskip(module)


def tree(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` with its bytes, keyed by relative path."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def siblings(path: Path) -> list[str]:
    """Names next to ``path`` that start with its name (temporary leftovers of a staged write)."""
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}."))


def rows_of(table: pa.Table) -> list[dict]:
    """The table's rows as Python dicts."""
    return table.to_pylist()


def documents_with_masks(table: pa.Table) -> list[tuple[list[int], list[int]]]:
    """(ids, trained-mask) per document of every row, in output order."""
    out = []
    for row in table.to_pylist():
        pos = 0
        mask = row.get("assistant_masks") or [1] * len(row["input_ids"])
        for n in row["seq_lengths"]:
            out.append((row["input_ids"][pos : pos + n], mask[pos : pos + n]))
            pos += n
    return out
