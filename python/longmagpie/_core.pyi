"""Stub of the compiled core (``longmagpie._core``). Use the wrappers in :mod:`longmagpie` instead.

Checked against the compiled module by ``scripts/stubtest.sh`` (``mypy.stubtest``): a parameter renamed,
added or dropped in ``rust/python/src`` fails that check until this file follows.
"""

from collections.abc import Sequence
from typing import Literal, Protocol, TypedDict, final

import pyarrow as pa  # type: ignore[import-untyped]

from longmagpie.options import PackOptions, PmixOptions

__all__ = [
    "Assembler",
    "NearDedup",
    "NgramIndex",
    "PmixStream",
    "Tokenizer",
    "__version__",
    "encode_segments",
    "pack",
    "pack_from_plan",
    "pack_plan",
    "pack_pmix_stream",
    "tokenize",
]

__version__: str

class _ArrowArrayExportable(Protocol):
    """An Arrow array or record batch (Arrow PyCapsule interface), e.g. ``pyarrow.Array``/``RecordBatch``."""

    def __arrow_c_array__(self, requested_schema: object | None = None) -> tuple[object, object]: ...

class _ArrowStreamExportable(Protocol):
    """An Arrow stream (Arrow PyCapsule interface), e.g. ``pyarrow.Table`` or ``pyarrow.RecordBatchReader``."""

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object: ...

_ArrowTabular = _ArrowArrayExportable | _ArrowStreamExportable

class _TemplateTexts(TypedDict):
    """The chat template cut into the fixed texts around the variable parts (``Assembler(template=...)``)."""

    prefix: str
    user_to_answer: str
    answer_end: str
    suffix: str
    doc_separator: str
    query_separator: str
    trim_user: bool
    trim_answer: bool

_Budget = Literal["tokens", "count"]
_LongDocuments = Literal["truncate", "skip"]

def pack(
    samples: _ArrowTabular,
    options: PackOptions,
    row_offset: int = 0,
) -> tuple[_ArrowStreamExportable, dict[str, int | float]]:
    """Pack an Arrow stream/array of tokenized samples; return (an Arrow C stream of the packed rows, stats).

    ``options`` is read by attribute (any object with ``PackOptions``' fields); ``row_offset`` numbers the first
    input row in error messages.
    """

def pack_plan(
    samples: _ArrowTabular,
    options: PackOptions,
) -> tuple[_ArrowStreamExportable, dict[str, int | float]]:
    """Plan ``pack`` from lengths alone; return (an Arrow C stream of the plan's rows, the stats pack would report)."""

def pack_from_plan(
    samples: _ArrowTabular,
    plan: _ArrowTabular,
    options: PackOptions,
    expected_input: tuple[int, int] | None = None,
) -> tuple[_ArrowStreamExportable, dict[str, int | float]]:
    """Make the packed rows of ``plan`` from ``samples``; return (an Arrow C stream of the rows, stats).

    ``expected_input`` (samples, tokens) is checked first.
    """

@final
class PmixStream:
    """p-mix over two Arrow streams; each ``next_batch`` runs with the GIL released."""

    def next_batch(self) -> _ArrowStreamExportable | None:
        """Return the next packed batch as an Arrow C stream of one batch, or None at the end."""
    def empty(self) -> _ArrowStreamExportable:
        """Return an empty Arrow C stream with the output schema."""
    def stats(self) -> dict[str, int | float]:
        """Return the statistics so far (final once ``next_batch`` returned None)."""

def pack_pmix_stream(
    long: _ArrowTabular,
    short: _ArrowTabular,
    options: PmixOptions,
    window_tokens: int | None = None,
) -> PmixStream:
    """Start a p-mix over two Arrow streams (``window_tokens=None``: one block per pool, in memory)."""

@final
class Tokenizer:
    """A Hugging Face ``tokenizer.json`` parsed once (no special tokens, post-processing or truncation)."""

    def __new__(cls, tokenizer_json: str) -> Tokenizer: ...
    def vocab_size(self) -> int:
        """Return the vocabulary size, added tokens included."""

@final
class Assembler:
    """A tokenizer, chat-template spans and a document pool tokenized once (see ``longmagpie.assemble``)."""

    def __new__(
        cls,
        *,
        tokenizer: Tokenizer,
        template: _TemplateTexts,
        documents: _ArrowArrayExportable,
        distractors: _ArrowArrayExportable | None,
        max_tokens: int,
        budget: _Budget,
        budget_min: int,
        budget_max: int,
        long_documents: _LongDocuments,
        seed: int,
        max_misses: int,
        margin: int,
        with_text: bool,
        num_threads: int | None = None,
    ) -> Assembler: ...
    def documents(self) -> int:
        """Return the number of pool documents."""
    def document_tokens(self) -> list[int]:
        """Return the token count of each pool document."""
    def document_ids(self, i: int) -> list[int]:
        """Return the token ids of pool document ``i``, tokenized alone."""
    def assemble(
        self,
        gold: _ArrowArrayExportable,
        queries: _ArrowArrayExportable,
        answers: _ArrowArrayExportable,
        gold_in_distractors: _ArrowArrayExportable | None = None,
        row_offset: int = 0,
        reserve: _ArrowArrayExportable | None = None,
    ) -> tuple[_ArrowStreamExportable, dict[str, int]]:
        """Assemble one batch of samples; return (an Arrow C stream of the samples, stats).

        ``reserve`` (uint32, one per sample) is room each sample leaves after its answer (later turns).
        """

def tokenize(tokenizer: Tokenizer, texts: _ArrowArrayExportable, num_threads: int | None = None) -> pa.ListArray:
    """Return the token ids of each text, ``list<int32>`` (see ``longmagpie.tokenize``)."""

def encode_segments(
    tokenizer: Tokenizer,
    texts: _ArrowArrayExportable,
    masked: _ArrowArrayExportable,
    row_offsets: Sequence[int],
    num_threads: int | None = None,
) -> tuple[pa.ListArray, pa.ListArray]:
    """Tokenize rows of (text, masked) segments; return (``input_ids``, ``assistant_masks``) list arrays."""

@final
class NearDedup:
    """A streaming near-duplicate filter (MinHash + LSH, verified by exact Jaccard on word shingles)."""

    def __new__(
        cls, *, shingle: int, bands: int, rows: int, threshold: float, seed: int, num_threads: int | None = None
    ) -> NearDedup: ...
    def add(self, texts: _ArrowArrayExportable, column: str) -> tuple[pa.Int64Array, pa.FloatArray, int]:
        """Decide each text after every row fed before: (``dup_of``, -1 if kept; ``similarity``; empty texts)."""
    def rows(self) -> int:
        """Return the rows fed so far."""
    def indexed(self) -> int:
        """Return the rows kept and indexed so far."""
    def memory_bytes(self) -> int:
        """Return the bytes the index holds."""

@final
class NgramIndex:
    """The word n-grams of evaluation texts, to find rows that share one with them."""

    def __new__(cls, n: int, min_words: int, num_threads: int | None = None) -> NgramIndex: ...
    def add(self, texts: _ArrowArrayExportable, source: int, column: str) -> tuple[int, int]:
        """Add the n-grams of ``texts`` for source ``source``; return (texts indexed, texts too short)."""
    def __len__(self) -> int:
        """Return the distinct n-grams indexed."""
    def first_match(self, texts: _ArrowArrayExportable, column: str) -> pa.Int32Array:
        """Return, per text, the smallest source it shares an n-gram with, or -1."""
