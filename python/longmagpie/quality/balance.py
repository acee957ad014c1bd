"""Cheap query-form classes and context-length buckets of harvest rows, and a seeded cap on any class's share.

A harvest from one model is lopsided: information-seeking "What ..." questions crowd out the rest (Magpie's
issue 36). Magpie tags each instruction's task category with an LLM; this module only looks at the form of the
query, with the rules below (English; a query in another language is ``other``), so it costs microseconds a row
and needs no model.

**Rules** (:data:`QUERY_FORM_RULES`), tried in order; the first that matches decides:

1. ``multiple_choice``: options lettered ``A)``, ``(a)``, ``a)`` or ``A.``, the first (``a``) right after the
   question stem's ``?``, ``:`` or a line break, and a ``b`` one after it; or ``Options:`` / ``Choices:``.
   (So "Explain (a) why ... and (b) how ..." is not a multiple-choice question: its ``(a)`` follows a word.)
2. ``compare``: "compare", "comparison", "contrast" (not "in contrast"), "versus", "vs", "difference(s)
   between", "differ(s) from", "different from", "distinguish between", "similarities between" anywhere.
3. The **opener** rules, at the start of the query once it is case-folded and :data:`FILLER` is skipped
   ("Based on the document, ...", "According to the text, ...", "In the passage, ...", "Question:", "1."):

   * ``list``: "list", "enumerate", "itemize"; or "name" / "give" / "provide" / "state" / "mention" /
     "identify" / "outline" / "cite" / "describe" / "suggest" / "highlight" / "what are" / "which are"
     followed by a count ("three", "5", "several", "a few", "some", "all"); or "give / provide / make / write /
     create / compile a list" (each also after a polite "please", "can you", "could you", "would you");
   * ``imperative``: a verb of :data:`IMPERATIVE_VERBS` ("summarize", "explain", "describe", "give", "write",
     "identify", ...), also after the polite prefixes (so "Can you explain ...?" is an imperative, not yes/no);
   * ``what`` ("what", "to what extent", "in what way"), ``why``, ``how``, ``which`` ("which", "in which"),
     ``who`` ("who", "whom", "whose", "by whom"), ``when`` ("when ...?", but not "When X happened, ..."),
     ``where``;
   * ``yes_no``: an auxiliary (:data:`AUXILIARIES`: is, are, was, do, does, did, can, should, will, has, ...,
     and their negations), "true or false", "yes or no".

   When nothing matches at the start, the opener rules are tried once more on what follows the first comma,
   colon or semicolon ("In 1990, what ..." and "Chapter 3: why ..." are ``what`` and ``why``).
4. ``other``: anything else (statements, other languages, empty queries).

**Length buckets** (:func:`length_bucket`): half-open ranges between :data:`DEFAULT_CHAR_EDGES` of the
context's length in characters (``<4k``, ``4k-16k``, ``16k-64k``, ``64k-256k``, ``>=256k``; about a quarter
as many tokens). Harvest rows also carry ``context_tokens``: ``balance(..., length_column="context_tokens",
edges=DEFAULT_TOKEN_EDGES)`` buckets those instead.

**The cap** (:func:`balance`): see its docstring; exact, seeded and independent of the row order.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from fractions import Fraction
from numbers import Real
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

#: Every class :func:`query_form` returns, in report order.
QUERY_FORMS: tuple[str, ...] = (
    "what",
    "why",
    "how",
    "which",
    "who",
    "when",
    "where",
    "yes_no",
    "compare",
    "list",
    "multiple_choice",
    "imperative",
    "other",
)

#: Leading phrases skipped (up to three times) before the opener rules; regexes over the case-folded query.
FILLER: tuple[str, ...] = (
    r"(?:question|query|task|instruction|q)\s*\d*\s*[:.)]\s*",
    r"\d{1,3}\s*[.)]\s+",
    r"(?:based\s+(?:on|upon)|according\s+to|in|from|within|given|using|considering|regarding|referring\s+to"
    r"|with\s+(?:reference|regard|respect)\s+to|drawing\s+on|after\s+reading|having\s+read"
    r"|as\s+(?:described|stated|mentioned|discussed|shown|explained)\s+in)"
    r"\s+(?:the\s+|this\s+|that\s+|these\s+|those\s+|your\s+)?"
    r"(?:above\s+|provided\s+|given\s+|following\s+|preceding\s+|previous\s+|attached\s+|original\s+)?"
    r"(?:document|text|passage|article|context|report|paper|excerpt|extract|story|material|information|content"
    r"|section|chapter|book|transcript|source|essay|author|writer|narrator|speaker|study|data|table|reading)s?"
    r"(?:\s+(?:above|provided|given|below))?\s*[,:]?\s+",
)

#: Polite prefixes allowed before an imperative or list verb ("please", "can you", "could you please", ...).
POLITE = (
    r"(?:(?:please|kindly)\s+|(?:can|could|would|will)\s+you\s+(?:please\s+|kindly\s+)?"
    r"|i\s+(?:want|need|would\s+like)\s+you\s+to\s+)?"
)

#: Verbs that open an imperative query (after :data:`POLITE`).
IMPERATIVE_VERBS: tuple[str, ...] = (
    "summarize", "summarise", "explain", "describe", "give", "write", "identify", "discuss", "outline",
    "provide", "state", "name", "tell", "analyze", "analyse", "evaluate", "assess", "define", "find",
    "determine", "calculate", "compute", "extract", "classify", "rewrite", "rephrase", "paraphrase",
    "translate", "suggest", "propose", "create", "generate", "draft", "elaborate", "highlight", "mention",
    "cite", "quote", "interpret", "infer", "justify", "illustrate", "show", "detail", "examine", "critique",
    "review", "recommend", "predict", "estimate", "rank", "sort", "categorize", "categorise", "select",
    "choose", "match", "complete", "fill", "point", "trace", "demonstrate", "clarify", "specify", "indicate",
    "recount", "retell", "break", "walk", "help", "make", "convert", "format", "argue", "report", "locate",
    "count", "reconstruct", "develop", "design", "formulate", "construct", "prepare",
    "produce", "share", "offer",
)  # fmt: skip

#: Auxiliaries that open a yes/no question, and their negations.
AUXILIARIES: tuple[str, ...] = (
    "is", "are", "am", "was", "were", "do", "does", "did", "can", "could", "should", "would", "will", "shall",
    "may", "might", "must", "has", "have", "had", "ought",
    "isn't", "aren't", "wasn't", "weren't", "don't", "doesn't", "didn't", "can't", "cannot", "couldn't",
    "shouldn't", "wouldn't", "won't", "shan't", "mustn't", "hasn't", "haven't", "hadn't",
)  # fmt: skip

_COUNT = r"(?:all|several|a\s+few|some|two|three|four|five|six|seven|eight|nine|ten|\d+)"
_PREP = r"(?:(?:in|at|on|for|from|to|by|with|of|during|under|about|after|before|through)\s+)?"


def _words(words: Sequence[str]) -> str:
    return "(?:" + "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True)) + r")\b"


# The option markers of a multiple-choice question: `A)`, `(a)`, `a)` or `A.`, then some text.
_OPTION_A = r"[?:\n]\s*(?:\(?[aA]\)|A\.)\s*\S"
_OPTION_B = r"(?<![^\s,;])(?:\(?[bB]\)|B\.)\s*\S"

#: ``(form, scope, regex)`` in order of precedence. ``scope`` is ``raw`` (searched in the query as given),
#: ``text`` (searched anywhere in the case-folded query) or ``opener`` (matched at the start of the case-folded
#: query after :data:`FILLER`, then once more after its first comma, colon or semicolon).
QUERY_FORM_RULES: tuple[tuple[str, Literal["raw", "text", "opener"], str], ...] = (
    ("multiple_choice", "raw", rf"(?s){_OPTION_A}.*?{_OPTION_B}"),
    ("multiple_choice", "text", r"\b(?:options|choices|answer\s+choices)\s*:"),
    (
        "compare",
        "text",
        r"\bcompar(?:e|es|ed|ing|ison|isons)\b|(?<!in\s)\bcontrast(?:s|ed|ing)?\b|\bversus\b|\bvs\b"
        r"|\bdifferences?\s+between\b|\bdiffer(?:s|ed)?\s+from\b|\bdifferent\s+from\b"
        r"|\bdistinguish\s+between\b|\bsimilarit(?:y|ies)\s+(?:and\s+differences?\s+)?between\b",
    ),
    ("list", "opener", POLITE + r"(?:list|enumerate|itemi[sz]e)\b"),
    (
        "list",
        "opener",
        POLITE + r"(?:name|give|provide|state|mention|identify|outline|cite|describe|suggest|highlight"
        r"|what\s+are|which\s+are)\s+(?:me\s+|us\s+)?(?:the\s+)?" + _COUNT + r"\b",
    ),
    (
        "list",
        "opener",
        POLITE + r"(?:give|provide|make|write|create|compile|produce)\s+(?:me\s+|us\s+)?a\s+"
        r"(?:short\s+|brief\s+|complete\s+|full\s+|detailed\s+)?list\b",
    ),
    ("imperative", "opener", POLITE + _words(IMPERATIVE_VERBS)),
    ("what", "opener", _PREP + r"what\b"),
    ("why", "opener", r"why\b"),
    ("how", "opener", r"how\b"),
    ("which", "opener", _PREP + r"which\b"),
    ("who", "opener", _PREP + r"(?:who|whom|whose)\b"),
    ("when", "opener", r"when\s+" + _words(AUXILIARIES) + r"|when\b(?![^?]*,)"),
    ("where", "opener", r"(?:from\s+)?where\b"),
    ("yes_no", "opener", _words(AUXILIARIES) + r"|(?:true\s+or\s+false|yes\s+or\s+no)\b"),
)

#: Context-length bucket edges in characters (default of :func:`length_bucket` and :func:`balance`).
DEFAULT_CHAR_EDGES: tuple[int, ...] = (4_000, 16_000, 64_000, 256_000)
#: Bucket edges for a token count (``length_column="context_tokens"``): about the same lengths as the default.
DEFAULT_TOKEN_EDGES: tuple[int, ...] = (1_000, 4_000, 16_000, 64_000)
#: Class columns :func:`balance` can cap.
BY: tuple[str, ...] = ("query_form", "context_bucket")

_COMPILED = tuple(
    (form, scope, re.compile(pattern) if scope == "raw" else re.compile(pattern, re.IGNORECASE))
    for form, scope, pattern in QUERY_FORM_RULES
)
_FILLER = tuple(re.compile(p) for p in FILLER)
_LEADING_JUNK = re.compile(r"^[\W_]+")
_WS = re.compile(r"\s+")
_CLAUSE = re.compile(r"[,:;]")


def _normalize(query: str) -> str:
    """Case-folded, NFKC, curly apostrophes straightened, whitespace collapsed, leading punctuation dropped."""
    text = unicodedata.normalize("NFKC", query).casefold().replace("\u2019", "'")
    return _LEADING_JUNK.sub("", _WS.sub(" ", text).strip())


def _skip_filler(text: str) -> str:
    for _ in range(3):
        for pattern in _FILLER:
            m = pattern.match(text)
            if m:
                text = _LEADING_JUNK.sub("", text[m.end() :])
                break
        else:
            return text
    return text


def query_form(query: str) -> str:
    """Classify a query by its form: one of :data:`QUERY_FORMS`, by the rules of the module docstring.

    Args:
        query: The query text (any case; leading filler such as "Based on the document," is skipped).

    Returns:
        The first class of :data:`QUERY_FORM_RULES` whose rule matches, else ``"other"``.

    """
    text = _normalize(query)
    if not text:
        return "other"
    opener = _skip_filler(text)
    for form, scope, pattern in _COMPILED:
        if scope == "raw":
            hit = pattern.search(query)
        elif scope == "text":
            hit = pattern.search(text)
        else:
            hit = pattern.match(opener)
        if hit:
            return form
    parts = _CLAUSE.split(opener, maxsplit=1)
    if len(parts) == 2:
        rest = _skip_filler(_LEADING_JUNK.sub("", parts[1]))
        for form, scope, pattern in _COMPILED:
            if scope == "opener" and pattern.match(rest):
                return form
    return "other"


def _label(n: int) -> str:
    if n % 1_000_000 == 0:
        return f"{n // 1_000_000}M"
    if n % 1_000 == 0:
        return f"{n // 1_000}k"
    return str(n)


def _check_edges(edges: Sequence[int]) -> tuple[int, ...]:
    out = tuple(edges)
    if not out or any(isinstance(e, bool) or not isinstance(e, int) or e <= 0 for e in out):
        raise ValueError(f"edges must be positive integers, at least one, got {list(out)}")
    if any(b <= a for a, b in itertools.pairwise(out)):
        raise ValueError(f"edges must increase strictly, got {list(out)}")
    return out


def bucket_labels(edges: Sequence[int] = DEFAULT_CHAR_EDGES) -> tuple[str, ...]:
    """Bucket labels for ``edges``, shortest first: ``("<4k", "4k-16k", ..., ">=256k")`` by default."""
    e = _check_edges(edges)
    return (f"<{_label(e[0])}", *(f"{_label(a)}-{_label(b)}" for a, b in itertools.pairwise(e)), f">={_label(e[-1])}")


def length_bucket(n_tokens_or_chars: int, edges: Sequence[int] = DEFAULT_CHAR_EDGES) -> str:
    """Bucket a length: ``edges[i-1] <= n < edges[i]``, labelled as in :func:`bucket_labels`.

    Args:
        n_tokens_or_chars: A length, 0 or more (characters by default; tokens with token edges).
        edges: Increasing positive bucket edges; default :data:`DEFAULT_CHAR_EDGES` (characters).

    Returns:
        The label, e.g. ``"4k-16k"`` for 5,000 with the default edges.

    Raises:
        ValueError: A negative length, or edges that are not positive and strictly increasing.

    """
    labels = bucket_labels(edges)
    if isinstance(n_tokens_or_chars, bool) or n_tokens_or_chars < 0:
        raise ValueError(f"a length must be 0 or more, got {n_tokens_or_chars!r}")
    return labels[sum(1 for e in edges if n_tokens_or_chars >= e)]


def _put_column(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    """Append a column, or replace one of that name where it is."""
    if name in table.column_names:
        return table.set_column(table.column_names.index(name), name, values)
    return table.append_column(name, values)


def _row_key(seed: int, doc_id: str | None, query: str | None) -> bytes:
    """Seeded BLAKE2b key that orders a class's rows for downsampling (length-prefixed fields)."""
    h = hashlib.blake2b(digest_size=8)
    for part in (str(seed), doc_id or "", query or ""):
        data = part.encode()
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.digest()


def _cap(counts: Counter[str], share: Fraction) -> int:
    """Largest ``t`` with ``t <= share * sum(min(c, t))``: every class keeps at most ``t`` rows."""
    lo, hi = 0, max(counts.values(), default=0)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if mid <= share * sum(min(c, mid) for c in counts.values()):
            lo = mid
        else:
            hi = mid - 1
    return lo


def _distribution(forms: Sequence[str], buckets: Sequence[str], labels: Sequence[str]) -> dict[str, dict[str, int]]:
    f, b = Counter(forms), Counter(buckets)
    return {
        "query_form": {name: f[name] for name in QUERY_FORMS},
        "context_bucket": {name: b[name] for name in labels},
    }


def balance(
    table: pa.Table,
    *,
    max_share: float | None = None,
    by: str = "query_form",
    seed: int = 0,
    edges: Sequence[int] = DEFAULT_CHAR_EDGES,
    length_column: str | None = None,
) -> tuple[pa.Table, dict[str, Any]]:
    """Classify every row by query form and context length, and optionally cap any class's share.

    Adds the string columns ``query_form`` (:func:`query_form` of ``query``; null queries are ``other``) and
    ``context_bucket`` (:func:`length_bucket` of the character length of ``context``, null counted as 0, or of
    ``length_column``), replacing columns of those names.

    With ``max_share``, rows are removed so that no class of ``by`` holds more than ``max_share`` of the rows
    kept, keeping as many rows as possible: every class keeps ``min(count, t)`` rows, with ``t`` the largest
    integer such that ``t <= max_share * sum(min(count, t))`` over the classes (computed exactly on the
    decimal value of ``max_share``). This is the fixed point of repeatedly cutting the classes above the share
    (each cut lowers the total and so the cap) and no valid selection keeps more rows. A class above ``t``
    keeps its ``t`` rows of smallest key, where the key is a BLAKE2b hash of ``(seed, doc_id, query)`` (ties,
    i.e. repeated ``doc_id`` and ``query``, by row index): content-based, so the rows kept do not depend on the
    order of the input or on the other classes. Kept rows stay in input order.

    Args:
        table: Harvest rows: ``query`` and ``context`` (or ``length_column``) always, ``doc_id`` with
            ``max_share``.
        max_share: The largest share of the kept rows any class may hold, in (0, 1]; ``None`` classifies only.
        by: ``"query_form"`` or ``"context_bucket"``: the classes to cap.
        seed: Seeds the key that picks which rows of a capped class stay.
        edges: The bucket edges (:func:`length_bucket`); default :data:`DEFAULT_CHAR_EDGES`, in characters.
        length_column: An integer column to bucket instead of the context's length in characters, e.g.
            ``"context_tokens"`` (with ``edges=DEFAULT_TOKEN_EDGES``); nulls count as 0.

    Returns:
        The table and a report: ``{"by", "max_share", "seed", "key": "seed+doc_id+query", "length",
        "edges", "rows_before", "rows_after", "cap", "before": {"query_form": {class: rows},
        "context_bucket": {bucket: rows}}, "removed": {"balance:<class>": rows}, "after": {...}}``. Every
        class of :data:`QUERY_FORMS` and every bucket is listed (zeros included), in that order; ``cap`` is
        ``t`` (``None`` without ``max_share``); ``removed`` lists the classes that lost rows. With a ``steer``
        column (a steered harvest) it also holds ``"by_steer": {instruction: {query_form: kept rows}}``.

    Raises:
        ValueError: Before any work: a missing or mistyped column, ``by`` not one of :data:`BY`, ``max_share``
            outside (0, 1], bad ``edges``; and, once the classes are counted, a ``max_share`` below
            ``1 / (number of classes present)``, which no non-empty selection can meet.

    """
    if by not in BY:
        raise ValueError(f"by must be one of {list(BY)}, got {by!r}")
    if max_share is not None and (isinstance(max_share, bool) or not isinstance(max_share, Real)):
        raise ValueError(f"max_share must be a number in (0, 1] or None, got {max_share!r}")
    if max_share is not None and not 0 < max_share <= 1:
        raise ValueError(f"max_share must lie in (0, 1], got {max_share!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    edges = _check_edges(edges)
    labels = bucket_labels(edges)
    needed = ["query", length_column or "context"] + (["doc_id"] if max_share is not None else [])
    for name in needed:
        if name not in table.column_names:
            raise ValueError(f"balance: column {name!r} is missing (the table has {table.column_names})")
        typ = table.schema.field(name).type
        want_int = name == length_column
        ok = pa.types.is_integer(typ) if want_int else (pa.types.is_string(typ) or pa.types.is_large_string(typ))
        if not ok:
            raise ValueError(
                f"balance: column {name!r} is {typ}, not {'an integer' if want_int else 'a string'} column"
            )

    queries = table.column("query").to_pylist()
    memo: dict[str, str] = {}
    forms: list[str] = []
    for q in queries:
        if q is None:
            forms.append("other")
            continue
        form = memo.get(q)
        if form is None:
            form = memo[q] = query_form(q)
        forms.append(form)
    if length_column is None:
        lengths = pc.fill_null(pc.utf8_length(table.column("context")), 0).to_pylist()
    else:
        lengths = pc.fill_null(table.column(length_column), 0).to_pylist()
    buckets = [length_bucket(n, edges) for n in lengths]
    table = _put_column(table, "query_form", pa.array(forms, pa.string()))
    table = _put_column(table, "context_bucket", pa.array(buckets, pa.string()))
    before = _distribution(forms, buckets, labels)

    classes = forms if by == "query_form" else buckets
    kept: pa.Table = table
    cap: int | None = None
    removed: dict[str, int] = {}
    mask = [True] * table.num_rows
    if max_share is not None and table.num_rows:
        counts = Counter(classes)
        share = Fraction(str(max_share))
        if share * len(counts) < 1:
            raise ValueError(
                f"max_share={max_share} is below 1/{len(counts)}: {len(counts)} classes of {by} are present "
                f"({', '.join(sorted(counts))}), so one of them always holds at least 1/{len(counts)} of the rows"
            )
        cap = _cap(counts, share)
        over = {c for c, n in counts.items() if n > cap}
        if over:
            doc_ids = table.column("doc_id").to_pylist()
            members: dict[str, list[int]] = {c: [] for c in over}
            for i, c in enumerate(classes):
                if c in members:
                    members[c].append(i)
            for rows in members.values():
                rows.sort(key=lambda i: (_row_key(seed, doc_ids[i], queries[i]), i))
                for i in rows[cap:]:
                    mask[i] = False
            order = QUERY_FORMS if by == "query_form" else labels
            removed = {f"balance:{c}": counts[c] - cap for c in order if c in over}
            kept = table.filter(pa.array(mask, pa.bool_()))
        after = _distribution(
            [f for f, m in zip(forms, mask, strict=True) if m],
            [b for b, m in zip(buckets, mask, strict=True) if m],
            labels,
        )
    else:
        after = _distribution(forms, buckets, labels)
    report: dict[str, Any] = {
        "by": by,
        "max_share": None if max_share is None else float(max_share),
        "seed": seed,
        "key": "seed+doc_id+query",
        "length": length_column or "context characters",
        "edges": list(edges),
        "rows_before": table.num_rows,
        "rows_after": kept.num_rows,
        "cap": cap,
        "before": before,
        "removed": removed,
        "after": after,
    }
    if "steer" in table.column_names:
        # A steered harvest: the query forms each instruction's rows have (kept rows), to see what steering did.
        by_steer: dict[str, Counter[str]] = {}
        for f, instruction, m in zip(forms, table.column("steer").to_pylist(), mask, strict=True):
            if m:
                by_steer.setdefault(str(instruction), Counter())[f] += 1
        report["by_steer"] = {k: {f: c[f] for f in QUERY_FORMS if c[f]} for k, c in sorted(by_steer.items())}
    return kept, report
