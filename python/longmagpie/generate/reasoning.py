"""Thinking models' reasoning blocks (``<think>...</think>``): whether a prompt opens one, and the text after it."""

from __future__ import annotations

REASONING_TAGS: tuple[str, str] = ("<think>", "</think>")


def opens_reasoning(prompt_tail: str, tags: tuple[str, str] = REASONING_TAGS) -> bool:
    """Return True if ``prompt_tail`` (the text that opens the assistant turn) leaves a reasoning block open."""
    start = prompt_tail.rfind(tags[0])
    return start >= 0 and prompt_tail.find(tags[1], start) < 0


def without_reasoning(text: str, prompt_opens: bool = False, tags: tuple[str, str] = REASONING_TAGS) -> str:
    """Return a thinking model's ``text`` after its closing reasoning tag, else ``text`` unchanged.

    The reasoning is cut when ``text`` opens with the tag or ``prompt_opens`` (the prompt opened it) and it
    closes; text that merely mentions the tags is kept whole.
    """
    if prompt_opens or text.lstrip().startswith(tags[0]):
        close = text.find(tags[1])
        if close >= 0:
            return text[close + len(tags[1]) :]
    return text
