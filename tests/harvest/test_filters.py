"""Query cleaning and filters, answer filters: each case lands under its reason."""

from __future__ import annotations

from collections import Counter

import pytest

from longmagpie.harvest import AnswerFilter, QueryFilter, normalize_query, query_hash
from longmagpie.harvest.filters import QueryDeduplicator

LEAKS = ("<|im_start|>", "<|im_end|>", "<|endoftext|>")


def clean(text: str, **kw) -> tuple[str | None, Counter]:
    counts: Counter = Counter()
    return QueryFilter(leak_strings=LEAKS, **kw).clean(text, counts), counts


@pytest.mark.parametrize(
    ("raw", "kept", "reason"),
    [
        ("   \n ", None, "query_empty"),
        ("What is X?<|im_end|>", None, "query_template_leak"),
        ("What is X?\n<|im_start|>assistant", None, "query_template_leak"),
        ("What is X? And Y?", "What is X? And Y?", None),
        ("What is X?\nmore text", "What is X?", "query_cut_after_question_mark"),
        ("Intro line\nWhat is X?", "Intro line\nWhat is X?", None),
        ("No question here.", None, "query_no_question_mark"),
        ("Why?", None, "query_too_short"),
        ("What is X?\nAnswer: X is a letter.", "What is X?", "query_cut_at_answer_marker"),
        ("Explain X. Solution: it is Y? no", None, "query_no_question_mark"),
        ("Q" * 1600 + "?", None, "query_too_long"),
    ],
)
def test_query_rules_last_question_mark(raw, kept, reason):
    out, counts = clean(raw, question_mark="last")
    assert out == kept
    if reason:
        assert counts[reason] == 1, counts
    if kept is not None:
        assert not any(k.startswith("query_") and not k.startswith("query_cut") for k in counts)


@pytest.mark.parametrize(
    ("raw", "kept", "reason"),
    [
        ("What is X? And Y?", "What is X?", "query_cut_after_question_mark"),
        ("Intro line\nWhat is X? More.", "Intro line\nWhat is X?", "query_cut_after_question_mark"),
        ("What is X?", "What is X?", None),
        ("No question here.", None, "query_no_question_mark"),
        ("Why? Because.", None, "query_too_short"),
        ("Which one?\nA) red\nB) blue", "Which one?", "query_cut_after_question_mark"),
    ],
)
def test_first_rule_keeps_one_question(raw, kept, reason):
    """The default rule: up to the first '?' (one question; multiple-choice options after it are cut)."""
    assert QueryFilter().question_mark == "first"
    out, counts = clean(raw)
    assert out == kept
    if reason:
        assert counts[reason] == 1, counts


@pytest.mark.parametrize(
    ("raw", "kept"),
    [
        ("What is X? And Y?", "What is X? And Y?"),
        ("What is X?\nmore", "What is X?"),
        ("Intro\nWhat is X?", None),  # the last '?' must be on the first line (no DOTALL)
        ("What is X?\nIs Y?", None),
        ("no question", None),
    ],
)
def test_upstream_rule_is_upstream_regex(raw, kept):
    out, counts = clean(raw, question_mark="upstream", min_chars=1)
    assert out == kept
    if kept is None:
        assert counts["query_no_question_mark"] == 1


def test_question_mark_off_keeps_text_and_still_cuts_answers():
    out, counts = clean("Tell me about X.\nA: it is Y", question_mark="off")
    assert out == "Tell me about X." and counts["query_cut_at_answer_marker"] == 1


def test_normalized_duplicates_within_document_and_across_shards():
    assert normalize_query("  What  is\tX? ") == normalize_query("what is x?")
    assert query_hash("What is X?") == query_hash("WHAT  IS  X?") != query_hash("What is Y?")
    counts: Counter = Counter()
    earlier_shard = {query_hash("What is X?")}
    d = QueryDeduplicator("global", earlier_shard)
    doc: set[str] = set()
    assert not d.admit(doc, query_hash("what is x?"), counts)  # seen in an earlier shard
    assert d.admit(doc, query_hash("What is Y?"), counts)
    assert not d.admit(doc, query_hash("What is Y ?".replace(" ?", "?")), counts)  # same document
    assert not d.admit(set(), query_hash("What is Y?"), counts)  # another document, same shard
    assert counts["query_duplicate"] == 3
    per_doc = QueryDeduplicator("document", earlier_shard)
    assert per_doc.admit(set(), query_hash("What is X?"), counts)
    assert per_doc.admit(set(), query_hash("What is X?"), counts)  # other documents may repeat it
    off = QueryDeduplicator("off")
    same: set[str] = set()
    assert off.admit(same, "k", counts) and off.admit(same, "k", counts)


def test_answer_filter():
    counts: Counter = Counter()
    f = AnswerFilter()
    assert f.clean("  Yes.  ", "stop", counts) == "Yes."
    assert f.clean("cut off mid", "length", counts) is None
    assert f.clean(" \n", "stop", counts) is None
    assert AnswerFilter(allow_unfinished=True).clean("cut off mid", "length", counts) == "cut off mid"
    assert AnswerFilter(min_chars=10).clean("short", "stop", counts) is None
    assert counts == Counter(answer_unfinished=1, answer_empty=1, answer_too_short=1)


def test_reasoning_is_cut_off_answers_of_thinking_models() -> None:
    counts: Counter[str] = Counter()
    qwen3 = AnswerFilter()
    assert qwen3.clean("<think>\nLet me see.\n</think>\n\nParis.", "stop", counts) == "Paris."
    assert qwen3.clean("<think>\nstill thinking when the turn ended", "stop", counts) is None
    # an answer that only mentions the tags is no reasoning: kept whole
    assert qwen3.clean("Close it with </think>.", "stop", counts) == "Close it with </think>."
    r1 = AnswerFilter(prompt_opens_reasoning=True)  # the template's generation prompt ends with "<think>\n"
    assert r1.clean("The text says so.\n</think>\n\nIt is blue.", "stop", counts) == "It is blue."
    assert r1.clean("It is blue.", "stop", counts) is None  # the reasoning never closed: not an answer
    assert AnswerFilter(strip_reasoning=False).clean("<think>x</think> y", "stop", counts) == "<think>x</think> y"
    assert counts == Counter(answer_reasoning_stripped=2, answer_reasoning_unfinished=2)


def test_prompt_tails_that_open_reasoning() -> None:
    from longmagpie.generate.reasoning import opens_reasoning
    from longmagpie.templates.prompts import preset

    assert opens_reasoning(preset("deepseek-r1").tail)
    assert not opens_reasoning(preset("deepseek-v3.1").tail)  # "</think>": thinking off
    assert not opens_reasoning(preset("qwen25").tail)


def test_without_reasoning_cuts_only_closed_reasoning() -> None:
    from longmagpie.generate.reasoning import without_reasoning

    assert without_reasoning("<think>plan</think>\nSummary.") == "\nSummary."
    assert without_reasoning("plan</think>Summary.", prompt_opens=True) == "Summary."
    assert without_reasoning("A summary about </think> tags.") == "A summary about </think> tags."
    assert without_reasoning("<think>never closed") == "<think>never closed"
