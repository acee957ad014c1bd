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

class Assembler:
    """A tokenizer, chat-template spans and a document pool tokenized once (see ``longmagpie.assemble``)."""

    def __init__(
        self,
        tokenizer_json: str,
        template: tuple[str, str, str, str, str, str, bool, bool],
        documents: Any,
        distractors: Any | None,
        max_tokens: int,
        budget: str,
        budget_min: int,
        budget_max: int,
        long_documents: str,
        seed: int,
        max_misses: int,
        margin: int,
        with_text: bool,
        num_threads: int | None = None,
    ) -> None: ...
    def documents(self) -> int: ...
    def document_tokens(self) -> list[int]: ...
    def document_ids(self, i: int) -> list[int]: ...
    def assemble(
        self,
        gold: Any,
        queries: Any,
        answers: Any,
        gold_in_distractors: Any | None = None,
        row_offset: int = 0,
    ) -> tuple[Any, dict[str, int]]: ...

def tokenize(tokenizer_json: str, texts: Any, num_threads: int | None = None) -> Any: ...
def encode_segments(
    tokenizer_json: str, texts: Any, masked: Any, row_offsets: list[int], num_threads: int | None = None
) -> tuple[Any, Any]: ...
