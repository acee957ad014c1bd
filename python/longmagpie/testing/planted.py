"""Planted bad rows for checking a judge: harvest rows spoiled in known ways, and how far a judge's scores fall.

:func:`plant_bad_rows` returns the originals plus, for each, three spoiled copies (column ``planted``):

- ``swapped_answer``: the answer of another document's row (a fluent answer, unfaithful to this document);
- ``truncated_answer``: the answer cut after its first third of words (mid-sentence, incomplete);
- ``off_topic_question``: the question of another document's row, with this document and its own answer.

:func:`separation` compares the mean of a score over each planted kind with its mean over the originals: a judge
worth its cost scores the planted rows lower. Used by ``benches/bench_judge.py`` and the real-model tier.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

#: The kinds of planted rows, in the order they are added.
PLANTED_KINDS = ("swapped_answer", "truncated_answer", "off_topic_question")


def plant_bad_rows(rows: pa.Table, seed: int = 0) -> pa.Table:
    """Return ``rows`` (``planted="original"``) followed by their three spoiled copies each.

    "Another document's row" is drawn by a seeded permutation among rows of other documents (``doc_id``); each
    spoiled row gets the id ``<id>:<kind>``. Needs at least two documents.

    Raises:
        ValueError: fewer than two documents.

    """
    docs = rows.column("doc_id").to_pylist()
    if len(set(docs)) < 2:
        raise ValueError("planting needs rows of at least two documents (an answer or question from another one)")
    rng = np.random.default_rng(seed)
    n = rows.num_rows
    other = []
    for i in range(n):
        choices = [j for j in range(n) if docs[j] != docs[i]]
        other.append(int(choices[int(rng.integers(len(choices)))]))
    base = rows.to_pylist()
    out: list[dict[str, Any]] = [{**r, "planted": "original"} for r in base]
    for kind in PLANTED_KINDS:
        for i, r in enumerate(base):
            row = {**r, "id": f"{r['id']}:{kind}", "planted": kind}
            if kind == "swapped_answer":
                row["answer"] = base[other[i]]["answer"]
            elif kind == "truncated_answer":
                words = r["answer"].split()
                row["answer"] = " ".join(words[: max(1, len(words) // 3)])
            else:
                row["query"] = base[other[i]]["query"]
            for stale in ("answer_grounding", "query_grounding"):  # no longer describe the row
                if stale in row:
                    row[stale] = None
            out.append(row)
    schema = rows.schema.append(pa.field("planted", pa.string()))
    return pa.Table.from_pylist(out, schema=schema)


def separation(judged: pa.Table, score: str) -> dict[str, dict[str, float | int | None]]:
    """Per planted kind: rows scored, the mean ``score``, and ``drop`` = mean of the originals minus this mean."""
    kinds = judged.column("planted").to_pylist()
    values = judged.column(score).to_pylist()
    out: dict[str, dict[str, float | int | None]] = {}
    for kind in ("original", *PLANTED_KINDS):
        got = [float(v) for k, v in zip(kinds, values, strict=True) if k == kind and v is not None]
        out[kind] = {"rows": len(got), "mean": float(np.mean(got)) if got else None}
    base = out["original"]["mean"]
    for kind in PLANTED_KINDS:
        mean = out[kind]["mean"]
        out[kind]["drop"] = None if base is None or mean is None else base - mean
    return out
