"""Token-id prompts: documents truncated in the middle to a token budget, prompts tokenized without BOS added.

The rendered prompt text already holds the template's BOS (if it has one), so it is tokenized with
``add_special_tokens=False`` and sent as ids: a text prompt would get a second BOS from vLLM's tokenizer call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from longmagpie.templates.prompts import FollowUpPieces, PromptPieces


@dataclass(frozen=True)
class PreparedDocument:
    """A document as it goes into the prompts: ``context`` (possibly middle-truncated) and its token count."""

    context: str
    tokens: int
    original_tokens: int

    @property
    def truncated(self) -> bool:
        """Whether the middle of the document was cut."""
        return self.tokens < self.original_tokens


def middle_truncate(ids: Sequence[int], budget: int) -> list[int]:
    """Keep the first ``ceil(budget/2)`` and last ``floor(budget/2)`` ids when there are more than ``budget``."""
    if len(ids) <= budget:
        return list(ids)
    head = (budget + 1) // 2
    tail = budget - head
    return list(ids[:head]) + (list(ids[len(ids) - tail :]) if tail else [])


class PromptTokenizer:
    """Prepares documents and tokenizes query and answer prompts for one tokenizer and template."""

    def __init__(self, tokenizer: Any, pieces: PromptPieces, max_doc_tokens: int) -> None:
        """``max_doc_tokens`` is the document budget (upstream: half the model context)."""
        self.tokenizer = tokenizer
        self.pieces = pieces
        self.max_doc_tokens = max_doc_tokens

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``, special-token text parsed as special tokens, nothing added."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prepare(self, texts: Sequence[str]) -> list[PreparedDocument]:
        """Tokenize documents (one batch call) and cut the middle of those over budget.

        A cut document is decoded from its kept head and tail ids (special tokens skipped, as upstream), so
        ``context`` is the text the prompts hold and the rows store.
        """
        if not texts:
            return []
        encoded = self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        out = []
        for text, ids in zip(texts, encoded, strict=True):
            if len(ids) <= self.max_doc_tokens:
                out.append(PreparedDocument(text, len(ids), len(ids)))
                continue
            kept = middle_truncate(ids, self.max_doc_tokens)
            context = self.tokenizer.decode(kept, skip_special_tokens=True)
            out.append(PreparedDocument(context, len(kept), len(ids)))
        return out

    def query_prompt(self, context: str) -> list[int]:
        """Ids of ``head + context + mid``."""
        return self.encode(self.pieces.query_prompt(context))

    def answer_prompt(self, context: str, query: str) -> list[int]:
        """Ids of ``head + context + mid + query + tail``."""
        return self.encode(self.pieces.answer_prompt(context, query))

    def follow_up_query_prompt(
        self, follow_up: FollowUpPieces, context: str, exchanges: Sequence[tuple[str, str]]
    ) -> list[int]:
        """Ids of the conversation so far (``exchanges``: its questions and answers) with a new user turn opened."""
        return self.encode(follow_up.query_prompt(self.pieces, context, exchanges))

    def follow_up_answer_prompt(
        self, follow_up: FollowUpPieces, context: str, exchanges: Sequence[tuple[str, str]], query: str
    ) -> list[int]:
        """Ids of the conversation so far, the follow-up ``query``, the end of its turn and the assistant opener."""
        return self.encode(follow_up.answer_prompt(self.pieces, context, exchanges, query))

    def overhead_tokens(self) -> int:
        """Tokens of the template pieces alone (what a prompt adds to the document and the query)."""
        return len(self.encode(self.pieces.head + self.pieces.mid + self.pieces.tail))
