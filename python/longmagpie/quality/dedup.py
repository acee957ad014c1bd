"""Near-duplicate removal: MinHash signatures with LSH banding, candidates verified by exact Jaccard.

The filter (``_core.NearDedup``, Rust) takes texts batch after batch in input order; each text is compared with
the rows kept before it and is a duplicate of the earliest one whose word-shingle Jaccard reaches the threshold
(``dup_of``), so the first row of a cluster is the one kept, and the result is the same for any batch size or
thread count. Memory holds the index only: per kept row, one 32-bit bucket entry per band, a chain link per band
and its 32-bit shingle hashes (no text): ``NearDedup.memory_bytes`` reports it.

Texts are cut into words at every non-alphanumeric character and lower-cased, so case, punctuation and spacing
never make two texts differ. A shingle is ``shingle`` consecutive words (a text shorter than that is one shingle).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache

import pyarrow as pa

from longmagpie import _core


@lru_cache(maxsize=64)
def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """Return ``(bands, rows)`` with ``bands * rows <= num_perm`` for a Jaccard ``threshold``.

    The rule is datasketch's (``MinHashLSH._optimal_param``): minimise the weighted area of false positives (pairs
    below the threshold that become candidates) and false negatives (pairs at or above it that do not), with the
    weights 0.1 and 0.9 since a candidate costs only an exact Jaccard check here while a missed pair is a kept
    duplicate.
    """

    def area(f: object, lo: float, hi: float, steps: int = 200) -> float:
        h = (hi - lo) / steps
        return sum(f(lo + (i + 0.5) * h) for i in range(steps)) * h  # type: ignore[operator]

    best: tuple[float, int, int] | None = None
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            fp = area(lambda s, b=b, r=r: 1 - (1 - s**r) ** b, 0.0, threshold)
            fn = area(lambda s, b=b, r=r: (1 - s**r) ** b, threshold, 1.0)
            cost = 0.1 * fp + 0.9 * fn
            if best is None or cost < best[0] - 1e-12:
                best = (cost, b, r)
    assert best is not None
    return best[1], best[2]


def candidate_probability(similarity: float, bands: int, rows: int) -> float:
    """Return the probability that two texts of this Jaccard share a band (become candidates)."""
    return 1 - (1 - similarity**rows) ** bands


@dataclass(frozen=True)
class DedupDecision:
    """What the filter decided for one batch: ``dup_of`` (-1 when kept) and ``similarity`` per row."""

    dup_of: pa.Int64Array
    similarity: pa.FloatArray
    empty: int


class NearDuplicates:
    """A streaming near-duplicate filter over one text column (see the module docstring).

    Args:
        shingle: words per shingle.
        threshold: Jaccard at or above which a row duplicates an earlier kept one, in (0, 1].
        num_perm: MinHash values per text; the LSH bands and rows are chosen from it and the threshold
            (:func:`lsh_params`) unless ``bands`` and ``rows`` are given.
        seed: seed of the MinHash permutations.
        num_threads: hashing threads (the result does not depend on it).

    """

    def __init__(
        self,
        *,
        shingle: int,
        threshold: float,
        num_perm: int = 128,
        bands: int | None = None,
        rows: int | None = None,
        seed: int = 0,
        num_threads: int | None = None,
    ) -> None:
        """Build an empty filter (raises ``ValueError`` naming a bad option)."""
        if not (isinstance(threshold, (int, float)) and 0 < threshold <= 1) or isinstance(threshold, bool):
            raise ValueError(f"threshold must be in (0, 1] (got {threshold!r})")
        if (bands is None) != (rows is None):
            raise ValueError("give both bands and rows, or neither (they are chosen from threshold and num_perm)")
        if bands is None or rows is None:
            if not isinstance(num_perm, int) or not 1 <= num_perm <= 1024:
                raise ValueError(f"num_perm must be an int in 1..=1024 (got {num_perm!r})")
            bands, rows = lsh_params(float(threshold), num_perm)
        self.bands, self.rows, self.threshold = bands, rows, float(threshold)
        self._core = _core.NearDedup(
            shingle=shingle, bands=bands, rows=rows, threshold=float(threshold), seed=seed, num_threads=num_threads
        )

    def add(self, texts: pa.Array | pa.ChunkedArray, column: str = "text") -> DedupDecision:
        """Decide each text after every text fed before (``column`` names the texts in error messages)."""
        if isinstance(texts, pa.ChunkedArray):
            texts = texts.combine_chunks()
        dup_of, similarity, empty = self._core.add(texts, column)
        return DedupDecision(dup_of, similarity, empty)

    def stream(self, batches: Iterable[pa.Array | pa.ChunkedArray], column: str = "text") -> Iterator[DedupDecision]:
        """Decide batch after batch (memory: the index, one batch of texts)."""
        for texts in batches:
            yield self.add(texts, column)

    @property
    def rows_seen(self) -> int:
        """Rows fed so far."""
        return self._core.rows()

    @property
    def memory_bytes(self) -> int:
        """Bytes the index holds now."""
        return self._core.memory_bytes()

    def recall_at(self, similarity: float) -> float:
        """Return the chance that a pair of this Jaccard is found (LSH candidate), e.g. at the threshold."""
        return candidate_probability(similarity, self.bands, self.rows)


def default_shingle(column: str) -> int:
    """Return the words per shingle for a column.

    5 for documents (``context``: datatrove's and text-dedup's choice for web text), 2 for short texts such as
    questions: a 5-word shingle changes under one swapped word in a 12-word question, so near-identical questions
    would fall far below any threshold (measured in ``benches/bench_quality.py``).
    """
    return 5 if column == "context" else 2


def default_threshold(column: str) -> float:
    """Return the Jaccard threshold for a column.

    0.8 for documents (near-identical pages), 0.6 for questions on word bigrams (measured in
    ``benches/bench_quality.py`` against planted edits and distinct questions).
    """
    return 0.8 if column == "context" else 0.6


__all__ = [
    "DedupDecision",
    "NearDuplicates",
    "candidate_probability",
    "default_shingle",
    "default_threshold",
    "lsh_params",
]
