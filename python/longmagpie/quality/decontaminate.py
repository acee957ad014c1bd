"""Decontamination: rows that share a long word n-gram with an evaluation set.

Every string of the evaluation files is cut into words as the near-duplicate filter cuts them (non-alphanumeric
characters split, lower-cased) and its word ``ngram``-grams (default 13, the common practice since GPT-3's
contamination study) go into an index (``_core.NgramIndex``, Rust); an evaluation text shorter than ``ngram``
words but at least ``min_words`` (default 8) is indexed whole, so a short benchmark question is found too, while a
shorter one (an answer choice such as ``"Paris"`` or ``"4"``) is skipped and counted, since it would match every
row that uses those few words. A row is contaminated when one of its checked
columns (``query`` and ``context`` by default) holds any indexed gram; it is attributed to the first evaluation file
(in the order given) that shares a gram with it.

Evaluation files: ``.txt`` (one text per non-empty line), ``.jsonl``/``.json`` (every string value of every
record, strings in lists included: ``question``, ``choices``, ``answer`` ...), ``.parquet`` (every string column).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from longmagpie import _core

#: Default n-gram length in words.
DEFAULT_NGRAM = 13
#: Evaluation texts of fewer words are not indexed (answer choices, numbers).
DEFAULT_MIN_WORDS = 8


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def eval_texts(path: str | os.PathLike[str]) -> list[str]:
    """Return the texts of one evaluation file (see the module docstring for the formats).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: an unknown suffix, a line that is not JSON (named by its number), or a file with no text.

    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"evaluation file {p} does not exist")
    suffix = p.suffix.lower()
    texts: list[str] = []
    if suffix == ".txt":
        texts = [line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    elif suffix == ".jsonl":
        for number, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                texts.extend(_strings(json.loads(line)))
            except json.JSONDecodeError as e:
                raise ValueError(f"{p}:{number}: not a JSON line ({e.msg})") from None
    elif suffix == ".json":
        try:
            texts.extend(_strings(json.loads(p.read_text(encoding="utf-8"))))
        except json.JSONDecodeError as e:
            raise ValueError(f"{p}: not JSON ({e.msg} at line {e.lineno})") from None
    elif suffix == ".parquet":
        table = pq.read_table(p)
        for name in table.column_names:
            if pa.types.is_string(table.schema.field(name).type) or pa.types.is_large_string(
                table.schema.field(name).type
            ):
                texts.extend(t for t in table.column(name).to_pylist() if t)
    else:
        raise ValueError(f"evaluation file {p}: unknown format {suffix!r}; use .txt, .jsonl, .json or .parquet")
    texts = [t for t in texts if t.strip()]
    if not texts:
        raise ValueError(f"evaluation file {p} holds no text: an empty evaluation set would decontaminate nothing")
    return texts


class EvalIndex:
    """The word n-grams of evaluation files, and the rows that share one with them.

    Args:
        files: evaluation files, in the order rows are attributed to them.
        ngram: words per gram.
        min_words: evaluation texts of fewer words are skipped (at most ``ngram``).
        num_threads: hashing threads (the result does not depend on it).

    Attributes:
        texts: per file, the texts read.
        skipped: per file, the texts skipped as shorter than ``min_words``.

    """

    def __init__(
        self,
        files: Sequence[str | os.PathLike[str]],
        *,
        ngram: int = DEFAULT_NGRAM,
        min_words: int = DEFAULT_MIN_WORDS,
        num_threads: int | None = None,
    ) -> None:
        """Read and index every file (raises before any row is read if one is missing, empty or unreadable)."""
        if not files:
            raise ValueError("no evaluation file given")
        if isinstance(ngram, bool) or not isinstance(ngram, int) or ngram < 1:
            raise ValueError(f"ngram must be a positive int (got {ngram!r})")
        min_words = min(min_words, ngram)
        if isinstance(min_words, bool) or not isinstance(min_words, int) or min_words < 1:
            raise ValueError(f"min_words must be a positive int (got {min_words!r})")
        self.files = [str(f) for f in files]
        self.ngram, self.min_words = ngram, min_words
        self._core = _core.NgramIndex(ngram, min_words, num_threads)
        self.texts: list[int] = []
        self.skipped: list[int] = []
        for source, f in enumerate(self.files):
            texts = eval_texts(f)
            indexed, short = self._core.add(pa.array(texts, pa.large_string()), source, f)
            if not indexed:
                raise ValueError(
                    f"evaluation file {f}: none of its {len(texts)} texts has {min_words} words or more, so nothing "
                    "would be found; lower min_words or give the full questions"
                )
            self.texts.append(len(texts))
            self.skipped.append(short)

    def __len__(self) -> int:
        """Return the distinct n-grams indexed."""
        return len(self._core)

    def first_match(self, texts: pa.Array | pa.ChunkedArray, column: str) -> pa.Int32Array:
        """Return, per text, the index of the first evaluation file it shares an n-gram with, or -1."""
        if isinstance(texts, pa.ChunkedArray):
            texts = texts.combine_chunks()
        return self._core.first_match(texts, column)

    def match_table(self, table: pa.Table, columns: Sequence[str]) -> list[int]:
        """Return, per row, the first evaluation file any of ``columns`` shares an n-gram with, or -1."""
        found = [-1] * table.num_rows
        for column in columns:
            for row, source in enumerate(self.first_match(table.column(column), column).to_pylist()):
                if source >= 0 and (found[row] < 0 or source < found[row]):
                    found[row] = source
        return found


__all__ = ["DEFAULT_MIN_WORDS", "DEFAULT_NGRAM", "EvalIndex", "eval_texts"]
