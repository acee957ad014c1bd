"""Stub of the compiled core (``longmagpie._core``). Use the wrappers in :mod:`longmagpie` instead."""

from typing import Any

__version__: str

def pack(
    samples: Any,
    seq_len: int,
    strategy: str,
    overflow: str,
    num_threads: int | None = None,
    pad_to: int | None = None,
    pad_id: int = 0,
    row_offset: int = 0,
) -> tuple[Any, dict[str, int | float]]:
    """Pack an Arrow stream/array of tokenized samples; return (an Arrow C stream of the packed rows, stats)."""

class PmixStream:
    """p-mix over two Arrow streams; each ``next_batch`` runs with the GIL released."""

    def next_batch(self) -> Any | None:
        """Return the next packed batch as an Arrow C stream of one batch, or None at the end."""
    def empty(self) -> Any:
        """Return an empty Arrow C stream with the output schema."""
    def stats(self) -> dict[str, int | float]:
        """Return the statistics so far (final once ``next_batch`` returned None)."""

def pack_pmix_stream(
    long: Any,
    short: Any,
    seq_len: int,
    p_long: float,
    n_short_prefix: int,
    seed: int,
    fill: str,
    overflow: str,
    exhausted: str,
    max_rows: int | None = None,
    num_threads: int | None = None,
    window_tokens: int | None = None,
) -> PmixStream:
    """Start a p-mix over two Arrow streams (``window_tokens=None``: one block per pool, in memory)."""
