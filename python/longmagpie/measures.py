"""Model-free quality measures of generated data: grounding, question openers, yield, lengths.

They are cheap (a regular expression and set lookups per text) and need no model, so every harvest and every
hierarchical run records them. They say whether the method does what it promises, not whether an answer is
right: a judge model does that (the quality stage).

**Grounding** of a text in a document is the share of the text's *content words* that occur in the document.
Content words are the text's words (runs of letters, case-folded, a plural ``s`` dropped) of three letters or
more that are not English function words or question words (:data:`STOPWORDS`); numbers count as words. A
question written about its document reuses the document's vocabulary ("What lens did Augustin Fresnel design?"
shares *lens*, *augustin*, *fresnel*, *design* with a lighthouse article); a generic one ("What are the benefits
of regular exercise?") does not. The grounding of a query in *another* document of the same corpus (chosen by a
seeded rule) is the baseline: the lift of own over other is what the document, and not the language at large,
put into the question. A text without content words has no grounding (``None``), counted apart.

**Openers** are the first word of a question, case-folded, among :data:`OPENERS` (``other`` otherwise): a corpus
of one model's questions drifts to a few kinds ("which of the following ...").

Per-shard measures are plain sums and counters (:func:`shard_quality`), so shards finished in different runs
merge exactly (:func:`merge_quality`); :func:`summarize_quality` turns the merged sums into shares and means.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

#: A word: a run of letters or digits (what :func:`content_words` splits text into).
WORD_PATTERN = re.compile(r"[^\W_]+", re.UNICODE)

#: Words that carry no topic: English function words, question words, and verbs every question uses.
STOPWORDS = frozenset(
    """
    a about above after again against all also am an and any are aren as at be because been before being below
    between both but by can cannot could did didn do does doesn doing don down during each either else etc ever
    every few for from further get gets got had has have having he her here hers herself him himself his how i if
    in into is isn it its itself just least less let like made main make makes many may me might more most much
    must my myself neither no nor not now of off often on once one only or other others our ours ourselves out
    over own per rather same say says she should so some such than that the their theirs them themselves then
    there these they this those though through thus to too under until up upon us use used uses using very was
    wasn way we well were weren what whatever when where whether which while who whom whose why will with within
    without would yes yet you your yours yourself yourselves
    according answer ask based describe described detail details discuss document documents example examples
    explain following give important information kind kinds mention mentioned mentions passage question questions
    read role significance significant specific text tell thing things type types write written
    """.split()
)

#: First words of questions counted by name (others are ``other``).
OPENERS = (
    "what",
    "which",
    "how",
    "why",
    "who",
    "when",
    "where",
    "is",
    "are",
    "was",
    "were",
    "do",
    "does",
    "did",
    "can",
    "could",
    "should",
    "would",
    "will",
    "in",
    "according",
    "if",
    "explain",
    "describe",
)
_OPENER_SET = frozenset(OPENERS)


def _norm(word: str) -> str:
    w = word.casefold()
    if len(w) > 4 and w.endswith("s") and not w.endswith("ss"):
        w = w[:-1]
    return w


def content_words(text: str) -> frozenset[str]:
    """Return the content words of ``text`` (see the module doc): case-folded, plural ``s`` dropped."""
    out = set()
    for m in WORD_PATTERN.finditer(text):
        w = m.group()
        if w.isdigit():
            out.add(w)
            continue
        if len(w) < 3:
            continue
        n = _norm(w)
        if n not in STOPWORDS and w.casefold() not in STOPWORDS:
            out.add(n)
    return frozenset(out)


def coverage(words: frozenset[str], document_words: frozenset[str]) -> float | None:
    """Share of ``words`` found in ``document_words``; ``None`` when ``words`` is empty."""
    if not words:
        return None
    return len(words & document_words) / len(words)


def grounding(text: str, document: str) -> float | None:
    """Share of the content words of ``text`` that occur in ``document`` (``None``: no content words)."""
    return coverage(content_words(text), content_words(document))


def opener(question: str) -> str:
    """Return the first word of ``question`` case-folded if it is one of :data:`OPENERS`, else ``other``."""
    m = WORD_PATTERN.search(question)
    if m is None:
        return "other"
    w = m.group().casefold()
    return w if w in _OPENER_SET else "other"


def other_index(i: int, n: int, key: str, seed: int = 0) -> int | None:
    """Choose a position in ``0..n-1`` other than ``i`` by a seeded hash of ``key`` (``None`` when ``n < 2``)."""
    if n < 2:
        return None
    h = hashlib.blake2b(f"{seed}\x1f{key}".encode(), digest_size=8).digest()
    j = int.from_bytes(h, "little") % (n - 1)
    return j if j < i else j + 1


def shard_quality(
    doc_ids: Sequence[str],
    contexts: Sequence[str],
    queries: Sequence[str],
    answers: Sequence[str],
    documents: int,
    *,
    seed: int = 0,
) -> dict[str, Any]:
    """Mergeable quality sums of one shard's accepted rows.

    Args:
        doc_ids: the rows' document ids.
        contexts: the rows' documents as prompted.
        queries: the rows' questions.
        answers: the rows' answers.
        documents: the shard's documents (those that yielded nothing included).
        seed: seed of the choice of the other document each query is compared with.

    The baseline document of a row is another distinct document among the shard's rows (a seeded choice
    keyed by the row's document id and position), so it needs two documents with rows.

    """
    words: dict[str, frozenset[str]] = {}
    for d, c in zip(doc_ids, contexts, strict=True):
        if d not in words:
            words[d] = content_words(c)
    distinct = list(words)
    position = {d: i for i, d in enumerate(distinct)}
    q = {"n": 0, "none": 0, "own_sum": 0.0, "other_n": 0, "other_sum": 0.0, "lift_sum": 0.0}
    a = {"n": 0, "none": 0, "own_sum": 0.0}
    openers: Counter[str] = Counter()
    for k, (d, query, answer) in enumerate(zip(doc_ids, queries, answers, strict=True)):
        openers[opener(query)] += 1
        qw = content_words(query)
        own = coverage(qw, words[d])
        if own is None:
            q["none"] += 1
        else:
            q["n"] += 1
            q["own_sum"] += own
            j = other_index(position[d], len(distinct), f"{d}\x1f{k}", seed)
            if j is not None:
                other = coverage(qw, words[distinct[j]])
                assert other is not None
                q["other_n"] += 1
                q["other_sum"] += other
                q["lift_sum"] += own - other
        aw = coverage(content_words(answer), words[d])
        if aw is None:
            a["none"] += 1
        else:
            a["n"] += 1
            a["own_sum"] += aw
    return {
        "documents": int(documents),
        "documents_with_rows": len(distinct),
        "rows": len(doc_ids),
        "query_grounding": q,
        "answer_grounding": a,
        "openers": dict(sorted(openers.items())),
    }


def merge_quality(parts: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Add up :func:`shard_quality` dicts (nested sums and counters), in the order given."""
    out: dict[str, Any] = {}
    for part in parts:
        _add_into(out, part)
    return out


def _add_into(out: dict[str, Any], part: Mapping[str, Any]) -> None:
    for key, value in part.items():
        if isinstance(value, Mapping):
            _add_into(out.setdefault(key, {}), value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = out.get(key, 0) + value


def _quantiles(values: np.ndarray) -> dict[str, float]:
    if values.size == 0:
        return {}
    p = np.percentile(values, [10, 50, 90])
    named = zip(("p10", "p50", "p90"), p, strict=True)
    return {"mean": round(float(values.mean()), 2), **{k: round(float(v), 2) for k, v in named}}


def summarize_quality(
    merged: Mapping[str, Any],
    counts: Mapping[str, int] | None = None,
    *,
    query_tokens: Sequence[int] | np.ndarray | None = None,
    answer_tokens: Sequence[int] | np.ndarray | None = None,
) -> dict[str, Any]:
    """Shares and means from merged sums (and, when given, the run's counters and token lengths).

    Keys: ``documents``, ``documents_with_rows``, ``document_yield`` (share of documents with at least one row),
    ``rows``, ``query_grounding`` (mean own-document coverage), ``query_grounding_other`` (the same query against
    another document), ``query_grounding_lift`` (mean of own minus other), ``answer_grounding``,
    ``queries_without_content_words``, ``openers`` (share per opener, largest first), ``duplicate_rate``
    (exact duplicates among generated queries), ``query_acceptance`` (accepted / generated), ``answer_acceptance``
    (rows / accepted queries), ``answers_per_row`` (answer candidates generated per row), ``query_tokens`` and
    ``answer_tokens`` (mean, p10, p50, p90).
    """
    q = merged.get("query_grounding", {})
    a = merged.get("answer_grounding", {})
    docs = int(merged.get("documents", 0))
    with_rows = int(merged.get("documents_with_rows", 0))
    rows = int(merged.get("rows", 0))
    out: dict[str, Any] = {
        "documents": docs,
        "documents_with_rows": with_rows,
        "document_yield": round(with_rows / docs, 4) if docs else None,
        "rows": rows,
        "query_grounding": _mean(q.get("own_sum", 0.0), q.get("n", 0)),
        "query_grounding_other": _mean(q.get("other_sum", 0.0), q.get("other_n", 0)),
        "query_grounding_lift": _mean(q.get("lift_sum", 0.0), q.get("other_n", 0)),
        "answer_grounding": _mean(a.get("own_sum", 0.0), a.get("n", 0)),
        "queries_without_content_words": int(q.get("none", 0)),
    }
    openers = merged.get("openers", {})
    total = sum(openers.values())
    out["openers"] = (
        {k: round(v / total, 4) for k, v in sorted(openers.items(), key=lambda kv: (-kv[1], kv[0]))} if total else {}
    )
    if counts is not None:
        generated = int(counts.get("queries_generated", 0))
        accepted = int(counts.get("queries_accepted", 0))
        out["duplicate_rate"] = round(counts.get("query_duplicate", 0) / generated, 4) if generated else None
        out["query_acceptance"] = round(accepted / generated, 4) if generated else None
        out["answer_acceptance"] = round(counts.get("rows", 0) / accepted, 4) if accepted else None
        answers = int(counts.get("answers_generated", 0))
        out["answers_per_row"] = round(answers / counts["rows"], 4) if counts.get("rows") else None
    if query_tokens is not None:
        out["query_tokens"] = _quantiles(np.asarray(query_tokens, dtype=np.float64))
    if answer_tokens is not None:
        out["answer_tokens"] = _quantiles(np.asarray(answer_tokens, dtype=np.float64))
    return out


def _mean(total: float, n: int) -> float | None:
    return round(total / n, 4) if n else None


def percent(value: float | None) -> str:
    """Return a share as a whole percentage (``-`` when unknown)."""
    return "-" if value is None else f"{100 * value:.0f} %"


def summary_lines(quality: Mapping[str, Any]) -> list[str]:
    """Format the harvest quality measures as a few aligned lines (none when there are no measures).

    What ``longmagpie harvest``, ``demo`` and ``stats`` print.
    """
    if not quality or not quality.get("documents"):
        return []
    pct = percent
    lines = [
        f"yield     {quality['documents_with_rows']:,} of {quality['documents']:,} documents gave a row "
        f"({pct(quality['document_yield'])})",
        f"grounding query words in own document {pct(quality['query_grounding'])}, in another "
        f"{pct(quality['query_grounding_other'])}; answer words {pct(quality['answer_grounding'])}",
    ]
    openers = quality.get("openers") or {}
    if openers:
        lines.append("openers   " + ", ".join(f"{k} {pct(v)}" for k, v in list(openers.items())[:6]))
    return lines
