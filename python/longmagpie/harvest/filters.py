"""Query cleaning and filters, answer filters; every rejection is counted under a named reason.

Queries go through, in order: empty → template/role tokens leaking → cut at answer markers (the model ran on
into an answer) → question-mark rule → empty after cleaning → too short / too long → exact duplicate (a
normalized hash, within a document and, with ``dedup='global'``, across documents and shards). Answers are
rejected when empty or unfinished (``finish_reason == 'length'``) unless unfinished answers are allowed. The
reasoning of thinking models (DeepSeek-R1, Qwen3, QwQ: ``<think>...</think>`` before the answer, the opening tag
often written by the template's generation prompt) is cut off the answer; an answer whose reasoning never
closes is rejected.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from longmagpie.generate.reasoning import REASONING_TAGS

QuestionMarkRule = Literal["first", "last", "upstream", "off"]
DedupScope = Literal["global", "document", "off"]

# Magpie's sanitize rules (exp/str_utils.py) cut instructions at these; a line starting "A:" is an answer too.
DEFAULT_ANSWER_MARKERS: tuple[str, ...] = (
    "Answer:",
    "Solution:",
    "Explanation:",
    "Here are some",
    "## Step 1",
    "\nA:",
)

_UPSTREAM_RULE = re.compile(r"^(.*)\?[^?]*$")  # caskcsg/longcontext infer_demo.py, without DOTALL
_WS = re.compile(r"\s+")


def normalize_query(text: str) -> str:
    """Normalize a query for duplicate detection: NFKC, case-folded, whitespace collapsed, stripped."""
    return _WS.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def query_hash(text: str) -> str:
    """16 hex characters of BLAKE2b over :func:`normalize_query`."""
    return hashlib.blake2b(normalize_query(text).encode(), digest_size=8).hexdigest()


@dataclass(frozen=True)
class QueryFilter:
    """Settings of the query cleaning and filters.

    Attributes:
        question_mark: ``first`` keeps the text up to its first ``?`` (one question) and rejects text without
            one; ``last`` keeps the text up to its last ``?``;
            ``upstream`` applies LongMagpie's exact regex (the last ``?`` must lie on the first line, else
            rejected); ``off`` keeps the text as it is.
        min_chars / max_chars: length bounds after cleaning (upstream rejects above 1,500 characters).
        answer_markers: the text is cut at the first of these (after position 0).
        leak_strings: texts that must not occur in a query (the template's special and role tokens).

    """

    question_mark: QuestionMarkRule = "first"
    min_chars: int = 8
    max_chars: int = 1500
    answer_markers: tuple[str, ...] = DEFAULT_ANSWER_MARKERS
    leak_strings: tuple[str, ...] = ()

    def clean(self, raw: str, counts: Counter[str]) -> str | None:
        """Return the cleaned query, or ``None`` with the reason counted in ``counts`` (edits are counted too)."""
        text = raw.strip()
        if not text:
            counts["query_empty"] += 1
            return None
        if any(s in text for s in self.leak_strings):
            counts["query_template_leak"] += 1
            return None
        cut = min((i for i in (text.find(m, 1) for m in self.answer_markers) if i > 0), default=-1)
        if cut > 0:
            counts["query_cut_at_answer_marker"] += 1
            text = text[:cut].rstrip()
        if self.question_mark in ("first", "last"):
            q = text.find("?") if self.question_mark == "first" else text.rfind("?")
            if q < 0:
                counts["query_no_question_mark"] += 1
                return None
            if q + 1 < len(text):
                counts["query_cut_after_question_mark"] += 1
            text = text[: q + 1]
        elif self.question_mark == "upstream":
            m = _UPSTREAM_RULE.match(text)
            if m is None:
                counts["query_no_question_mark"] += 1
                return None
            if len(m.group(1)) + 1 < len(text):
                counts["query_cut_after_question_mark"] += 1
            text = m.group(1) + "?"
        text = text.strip()
        if not text:
            counts["query_empty"] += 1
            return None
        if len(text) < self.min_chars:
            counts["query_too_short"] += 1
            return None
        if len(text) > self.max_chars:
            counts["query_too_long"] += 1
            return None
        return text


class QueryDeduplicator:
    """Exact-duplicate detection on normalized queries, per document or across the whole run."""

    def __init__(self, scope: DedupScope, seen: Iterable[str] = ()) -> None:
        """Start with the hashes in ``seen`` (those of earlier shards) when ``scope`` is ``global``."""
        self.scope = scope
        self.global_seen: set[str] = set(seen) if scope == "global" else set()

    def admit(self, doc_seen: set[str], key: str, counts: Counter[str]) -> bool:
        """Record ``key`` and return True if it is new. ``doc_seen`` holds the keys of the current document."""
        if self.scope == "off":
            return True
        if key in doc_seen or key in self.global_seen:
            counts["query_duplicate"] += 1
            return False
        doc_seen.add(key)
        if self.scope == "global":
            self.global_seen.add(key)
        return True


#: Tags around a thinking model's reasoning (DeepSeek-R1, Qwen3, QwQ).
@dataclass(frozen=True)
class AnswerFilter:
    r"""Settings of the answer filters.

    Attributes:
        allow_unfinished: keep answers cut by the token limit (``finish_reason == 'length'``).
        min_chars: shorter answers are rejected.
        strip_reasoning: when an answer opens with the reasoning tag (or ``prompt_opens_reasoning``), cut it up
            to the first closing tag (counted as ``answer_reasoning_stripped``); if the reasoning never closes,
            reject the answer (``answer_reasoning_unfinished``). Other answers are left alone, so one that
            merely mentions the tags is kept whole.
        prompt_opens_reasoning: the answer prompt itself opens a reasoning block (e.g. DeepSeek-R1's template
            ends with ``<think>\n``), so every answer must close it.
        reasoning_tags: the opening and closing reasoning tags.

    """

    allow_unfinished: bool = False
    min_chars: int = 1
    strip_reasoning: bool = True
    prompt_opens_reasoning: bool = False
    reasoning_tags: tuple[str, str] = REASONING_TAGS

    def clean(self, raw: str, finish_reason: str, counts: Counter[str]) -> str | None:
        """Return the stripped answer, or ``None`` with the reason counted."""
        if finish_reason == "length" and not self.allow_unfinished:
            counts["answer_unfinished"] += 1
            return None
        open_tag, close_tag = self.reasoning_tags
        if self.strip_reasoning and (self.prompt_opens_reasoning or raw.lstrip().startswith(open_tag)):
            close = raw.find(close_tag)
            if close < 0:
                counts["answer_reasoning_unfinished"] += 1
                return None
            counts["answer_reasoning_stripped"] += 1
            raw = raw[close + len(close_tag) :]
        text = raw.strip()
        if len(text) < max(self.min_chars, 1):
            counts["answer_empty" if not text else "answer_too_short"] += 1
            return None
        return text


def leak_strings(special_tokens: Sequence[str]) -> tuple[str, ...]:
    """Return the strings whose presence in a query means the template leaked into it."""
    return tuple(dict.fromkeys(t for t in special_tokens if t))
