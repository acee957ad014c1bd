"""Helpers of the export tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa


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


def one_step_args(tmp_path: Path) -> dict[str, Any]:
    """Trainer arguments shared by the training tests: one optimizer step on CPU, logged, nothing saved or reported."""
    return {
        "output_dir": str(tmp_path / "run"),
        "max_steps": 1,
        "learning_rate": 1e-3,
        "logging_steps": 1,
        "report_to": [],
        "save_strategy": "no",
        "use_cpu": True,
        "dataloader_num_workers": 0,
        "seed": 0,
    }
