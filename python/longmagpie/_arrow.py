"""Turn the tabular objects users hold into something the Rust core reads without copying."""

from __future__ import annotations

from typing import Any

import pyarrow as pa


def _is_hf_dataset(obj: object) -> bool:
    cls = type(obj)
    return cls.__module__.startswith("datasets.") and hasattr(obj, "with_format")


def as_arrow(samples: Any) -> Any:
    """Return an object exposing the Arrow PyCapsule interface for ``samples``.

    Accepted: anything with ``__arrow_c_stream__`` or ``__arrow_c_array__`` (pyarrow tables, record
    batches and readers, polars data frames, arro3, nanoarrow), a Hugging Face ``datasets.Dataset``
    (its Arrow table, with any ``select``/``shuffle`` indices applied), a ``dict`` of columns or a
    ``list`` of row dicts.

    Raises:
        TypeError: for anything else, saying what is accepted.

    """
    if hasattr(samples, "__arrow_c_stream__") or hasattr(samples, "__arrow_c_array__"):
        return samples
    if _is_hf_dataset(samples):
        return samples.with_format("arrow")[:]
    if isinstance(samples, dict):
        return pa.table(samples)
    if isinstance(samples, list):
        return pa.Table.from_pylist(samples)
    raise TypeError(
        f"cannot read samples of type {type(samples).__name__}: pass a pyarrow Table/RecordBatch/RecordBatchReader, "
        "a polars DataFrame, a datasets.Dataset, a dict of columns or a list of row dicts"
    )
