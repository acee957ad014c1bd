"""Seeded synthetic tokenized samples: the embedded default for the demo, the tests and the benchmarks."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pyarrow as pa

Mix = Literal["long", "short"]

#: Vocabulary size of Qwen2.5 (ids are drawn below it).
QWEN_VOCAB = 151_643


def sample_lengths(total_tokens: int, mix: Mix = "long", seed: int = 0) -> np.ndarray:
    """Draw sample lengths until their sum reaches ``total_tokens``.

    ``mix="long"`` is a realistic long-context SFT mix: 70 % log-uniform in 200–4,000 tokens and
    30 % log-uniform in 8,000–60,000. ``mix="short"`` is chat SFT: log-uniform in 50–2,000.
    """
    if total_tokens < 0:
        raise ValueError(f"total_tokens must be >= 0, got {total_tokens}")
    rng = np.random.default_rng(seed)
    out: list[np.ndarray] = []
    have = 0
    while have < total_tokens:
        n = 100_000
        if mix == "long":
            is_long = rng.random(n) < 0.30
            lo = np.where(is_long, np.log(8000), np.log(200))
            hi = np.where(is_long, np.log(60000), np.log(4000))
        elif mix == "short":
            lo, hi = np.full(n, np.log(50)), np.full(n, np.log(2000))
        else:
            raise ValueError(f"unknown mix {mix!r}; expected 'long' or 'short'")
        lengths = np.exp(rng.uniform(lo, hi)).astype(np.int64)
        k = int(np.searchsorted(np.cumsum(lengths), total_tokens - have, side="left")) + 1
        out.append(lengths[:k])
        have += int(lengths[:k].sum())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def synthetic_samples(
    total_tokens: int,
    mix: Mix = "long",
    seed: int = 0,
    vocab_size: int = QWEN_VOCAB,
    with_masks: bool = True,
    with_source: bool = True,
) -> pa.Table:
    """Build a table of tokenized samples shaped like ``pack``'s input.

    Columns: ``input_ids`` list<int32> (uniform ids below ``vocab_size``), ``assistant_masks``
    list<int8> (the last quarter of each sample plays the answer: 1), ``source`` (``"synthetic-<mix>"``).
    """
    lengths = sample_lengths(total_tokens, mix, seed)
    rng = np.random.default_rng(seed + 1)
    n_tokens = int(lengths.sum())
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if n_tokens >= 2**31:
        raise ValueError("synthetic_samples builds one list<int32> column: ask for fewer than 2**31 tokens")
    ids = rng.integers(0, vocab_size, size=n_tokens, dtype=np.int32)
    columns: dict[str, pa.Array] = {
        "input_ids": pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(ids)),
    }
    if with_masks:
        answer_start = offsets[1:] - lengths // 4
        pos = np.arange(n_tokens, dtype=np.int64)
        row = np.repeat(np.arange(len(lengths)), lengths)
        mask = (pos >= answer_start[row]).astype(np.int8)
        columns["assistant_masks"] = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(mask))
    if with_source:
        columns["source"] = pa.array([f"synthetic-{mix}"] * len(lengths), pa.string())
    return pa.table(columns)
