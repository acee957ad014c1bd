"""Split a document by tokens into small chunks and group them into medium chunks.

Chunks are cut at token boundaries of the generator's tokenizer but kept as text slices of the document
(cut at the character where a token starts), so the chunks joined give the document back exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Chunks:
    """A document's small chunks (texts, token counts) and medium chunks (lists of small-chunk indices)."""

    small: list[str]
    small_tokens: list[int]
    medium: list[list[int]]

    @property
    def tokens(self) -> int:
        """Tokens of the whole document (sum over small chunks)."""
        return sum(self.small_tokens)


def split_document(text: str, tokenizer: Any, small_chunk_tokens: int, medium_chunk_small: int) -> Chunks:
    """Cut ``text`` into small chunks of ``small_chunk_tokens`` tokens (the last may be shorter).

    A document shorter than one small chunk is one small chunk and one medium chunk (every summary level
    still runs, so the QA counts hold). Medium chunks are consecutive groups of ``medium_chunk_small``
    small chunks (the last may hold fewer).

    Raises:
        ValueError: the text has no tokens.

    """
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = enc["offset_mapping"]
    n = len(offsets)
    if n == 0:
        raise ValueError("the document has no tokens")
    starts = list(range(0, n, small_chunk_tokens))
    small: list[str] = []
    counts: list[int] = []
    for i, s in enumerate(starts):
        begin = 0 if i == 0 else offsets[s][0]
        end = len(text) if i + 1 == len(starts) else offsets[starts[i + 1]][0]
        small.append(text[begin:end])
        counts.append(min(small_chunk_tokens, n - s))
    medium = [list(range(g, min(g + medium_chunk_small, len(small)))) for g in range(0, len(small), medium_chunk_small)]
    return Chunks(small, counts, medium)
