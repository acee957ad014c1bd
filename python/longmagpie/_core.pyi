"""Stub of the compiled core (``longmagpie._core``). Use the wrappers in :mod:`longmagpie` instead."""

from typing import Any

import pyarrow as pa

__version__: str

def pack(
    samples: Any,
    seq_len: int,
    strategy: str,
    overflow: str,
    num_threads: int | None = None,
    pad_to: int | None = None,
    pad_id: int = 0,
) -> tuple[pa.Table, dict[str, int | float]]:
    """Pack an Arrow stream/array of tokenized samples; return the packed table and the statistics."""
