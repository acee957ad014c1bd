"""Multi-turn conversations to ``input_ids`` + ``assistant_masks``, exact to the tokenizer's chat template.

The template is cut once into spans (:mod:`longmagpie.templates.spans`); each conversation becomes a list of text
segments (spans, user contents, answers) that Rust tokenizes as one text per conversation, in parallel with the
GIL released; a token is in the loss mask when it overlaps an answer or its end-of-turn span. Hierarchical
synthesis uses this for its long multi-turn conversations (a loss mask on every answer).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from longmagpie import _core
from longmagpie.assembly.tokenizer import core_tokenizer, load_tokenizer
from longmagpie.templates.spans import ChatSpans, TemplateError, chat_spans

Message = dict[str, str]


def exchange_segments(spans: ChatSpans, user: str, answer: str, *, first: bool) -> list[tuple[str, bool]]:
    """Text segments of one (user, assistant) exchange, with mask flags; a later one starts with ``between_turns``."""
    if spans.trim_user:
        user = user.strip()
    if spans.trim_answer:
        answer = answer.strip()
    out: list[tuple[str, bool]] = [] if first else [(spans.between_turns or "", False)]
    return [*out, (user, False), (spans.user_to_answer, False), (answer, True), (spans.answer_end, True)]


def check_turns(spans: ChatSpans, turns: Sequence[Message], where: str, *, first: bool = True) -> None:
    """Check ``turns`` alternate user and assistant (user first, assistant last) with string contents.

    Raises:
        ValueError: they do not; the message names ``where``.
        TemplateError: more than one exchange, and the template does not render later turns like the first.

    """
    if (
        not turns
        or len(turns) % 2
        or any(m.get("role") != ("user" if i % 2 == 0 else "assistant") for i, m in enumerate(turns))
    ):
        raise ValueError(
            f"conversation {where} must alternate user and assistant turns, starting with user and ending "
            "with assistant (an optional system message first)"
        )
    for i, m in enumerate(turns):
        if not isinstance(m.get("content"), str):
            raise ValueError(f"conversation {where} turn {i}: content must be a string")
    if (len(turns) > 2 or not first) and spans.between_turns is None:
        raise TemplateError("this chat template does not render later turns like the first; multi-turn unsupported")


def conversation_segments(spans: ChatSpans, messages: Sequence[Message], where: str = "") -> list[tuple[str, bool]]:
    """Text segments of one conversation (user/assistant turns alternating, user first), with mask flags."""
    turns = [m for m in messages if m.get("role") != "system"]
    check_turns(spans, turns, where)
    segments: list[tuple[str, bool]] = [(spans.prefix, False)]
    for i in range(0, len(turns), 2):
        segments += exchange_segments(spans, turns[i]["content"], turns[i + 1]["content"], first=i == 0)
    segments.append((spans.suffix, False))
    return segments


def later_turn_segments(spans: ChatSpans, turns: Sequence[Message], where: str = "") -> list[tuple[str, bool]]:
    """Text segments of a conversation's exchanges after its first, then the template's suffix.

    Appended to the ids of the first exchange without its suffix (:class:`longmagpie.assembly.Assembler` does
    so for multi-turn harvest rows), they give the ids of the whole conversation.
    """
    check_turns(spans, turns, where, first=False)
    segments: list[tuple[str, bool]] = []
    for i in range(0, len(turns), 2):
        segments += exchange_segments(spans, turns[i]["content"], turns[i + 1]["content"], first=False)
    segments.append((spans.suffix, False))
    return segments


def encode_segment_lists(
    handle: Any, segment_lists: Sequence[list[tuple[str, bool]]], num_threads: int | None
) -> tuple[pa.Array, pa.Array]:
    """Tokenize lists of text segments, one text per list, in Rust: ``(input_ids, masks)`` list arrays."""
    texts: list[str] = []
    masked: list[bool] = []
    offsets = [0]
    for segments in segment_lists:
        for text, m in segments:
            texts.append(text)
            masked.append(m)
        offsets.append(len(texts))
    return _core.encode_segments(
        handle, pa.array(texts, pa.large_string()), pa.array(masked, pa.bool_()), offsets, num_threads
    )


def encode_conversations(
    conversations: Sequence[Sequence[Message]],
    tokenizer: Any,
    *,
    system: str | None = None,
    num_threads: int | None = None,
) -> pa.Table:
    """Tokenize multi-turn conversations; ids equal ``apply_chat_template(messages, tokenize=True)``.

    Args:
        conversations: lists of ``{"role", "content"}`` messages, user and assistant alternating (user first,
            assistant last). A leading system message, if any, must equal ``system`` for all conversations.
        tokenizer: transformers fast tokenizer or a directory holding one.
        system: the system message (``None``: the template's default, if it has one).
        num_threads: worker threads (the output does not depend on it).

    Returns:
        Table with ``input_ids`` list<int32> and ``assistant_masks`` list<int8> (1 on every answer and its
        end-of-turn token), ready for :func:`longmagpie.pack`.

    """
    tok = load_tokenizer(tokenizer)
    handle = core_tokenizer(tok)
    spans = chat_spans(tok, system=system)
    lists = []
    for row, conv in enumerate(conversations):
        if conv and conv[0].get("role") == "system" and conv[0].get("content") != system:
            raise ValueError(f"conversation {row} has its own system message; pass it as system= for all rows")
        lists.append(conversation_segments(spans, conv, where=str(row)))
    ids, mask = encode_segment_lists(handle, lists, num_threads)
    return pa.table({"input_ids": ids, "assistant_masks": mask})
