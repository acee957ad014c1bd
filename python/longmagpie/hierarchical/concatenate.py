"""Documents and their QAs into long multi-turn conversations of a target token length, with revisits.

A conversation is built block by block. A block is one new document: its first user turn is the document
followed by its first question (``document_turn``), then the rest of its QAs in plan order; then, for each
document earlier in the conversation, with probability ``revisit_probability``, that document's revisit QAs.
Documents come from a seeded permutation, each used at most once per target; a document whose block (with its
drawn revisits) does not fit the remaining budget is left for a later conversation. A conversation never
exceeds its target (exact length from :func:`longmagpie.encode_conversations`) and is kept when it reaches
``min_fill * target``.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from longmagpie.assembly.conversations import encode_conversations


@dataclass(frozen=True)
class DocQAs:
    """A document as concatenation needs it: text, QAs in order ``(kind, question, answer)``, revisit QAs."""

    doc_id: str
    text: str
    qas: list[tuple[str, str, str]]
    revisits: list[tuple[str, str, str]]


@dataclass
class Conversation:
    """One built conversation: its messages, the documents in it, the kind of every QA turn, revisit pairs.

    ``blocks`` holds per document block: how many documents came before it, how many of them it revisits, and
    whether it is *free*: it would have fit with every earlier document revisited, so the budget did not select
    its draws. Near the end of the budget a candidate whose drawn revisits overflow is passed over for the next
    (which draws afresh), which lowers the realised revisit rate of the last blocks a little.
    """

    messages: list[dict[str, str]]
    doc_ids: list[str]
    kinds: list[str]
    revisited: list[tuple[int, int]]  # (block index, index in ``docs`` of the earlier document) per revisit
    pairs: int  # (new document, earlier document) pairs a revisit was drawn for
    blocks: list[tuple[int, int, bool]] = field(default_factory=list)  # (earlier documents, revisited, free)


def _rng(seed: int, *parts: object) -> random.Random:
    h = hashlib.blake2b("\x1f".join(map(str, (seed, *parts))).encode(), digest_size=8)
    return random.Random(int.from_bytes(h.digest(), "little"))


class Concatenator:
    """Builds conversations for one tokenizer and chat template."""

    def __init__(
        self,
        docs: Sequence[DocQAs],
        tokenizer: Any,
        *,
        revisit_probability: float,
        seed: int,
        document_turn: str = "{document}\n\n{question}",
        system: str | None = None,
    ) -> None:
        """Measure every document's block parts once (token counts, template overhead per turn)."""
        self.docs = list(docs)
        self.tokenizer = tokenizer
        self.p = revisit_probability
        self.seed = seed
        self.document_turn = document_turn
        self.system = system
        for d in self.docs:
            if not d.qas:
                raise ValueError(f"document {d.doc_id!r} has no QAs: it cannot open a conversation block")
        base, two = self._lengths([[_u("a"), _a("b")], [_u("a"), _a("b"), _u("c"), _a("d")]])
        self.prefix = base - 2
        self.per_turn = two - base - 2
        self.block_tokens = [self._block_estimate(d) for d in self.docs]
        self.revisit_tokens = [self._pairs_tokens(d.revisits) for d in self.docs]
        self.min_block = min(self.block_tokens, default=0)

    def _count(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _pairs_tokens(self, qas: list[tuple[str, str, str]]) -> int:
        return sum(self._count(q) + self._count(a) + self.per_turn for _, q, a in qas)

    def _block_estimate(self, d: DocQAs) -> int:
        first = self.document_turn.format(document=d.text, question=d.qas[0][1])
        return self._count(first) - self._count(d.qas[0][1]) + self._pairs_tokens(d.qas)

    def _block(self, conv: Conversation, d: DocQAs, earlier: list[int], block: int) -> None:
        kind, q, a = d.qas[0]
        conv.messages += [_u(self.document_turn.format(document=d.text, question=q)), _a(a)]
        conv.kinds.append(kind)
        for kind, q, a in d.qas[1:]:
            conv.messages += [_u(q), _a(a)]
            conv.kinds.append(kind)
        for j in earlier:
            for _, q, a in self.docs[j].revisits:
                conv.messages += [_u(q), _a(a)]
                conv.kinds.append("revisit")
            conv.revisited.append((block, j))

    def build(self, target: int, count: int | None, min_fill: float) -> tuple[list[Conversation], list[int]]:
        """Conversations of at most ``target`` tokens (exact) and at least ``min_fill * target`` (their lengths too).

        Raises:
            ValueError: no document's block (document + its QAs) fits ``target`` (the smallest is named).

        """
        if not self.docs:
            return [], []
        if self.prefix + self.min_block > target:
            raise ValueError(
                f"target {target} tokens is smaller than every document with its QAs (the smallest needs "
                f"~{self.prefix + self.min_block}): raise the target or use shorter documents"
            )
        order = list(range(len(self.docs)))
        _rng(self.seed, "order", target).shuffle(order)
        used: set[int] = set()
        planned: list[list[tuple[int, list[int], bool]]] = []
        while count is None or len(planned) < count:
            conv, members = self._fill(target, min_fill, order, used, len(planned))
            if conv is None:
                break
            used.update(m for m, _, _ in members)
            planned.append(members)
        # exact lengths, one encoding call for all; an estimate short by a few merged tokens loses its last block
        convs = [self._assemble(m) for m in planned]
        lengths = self._lengths([c.messages for c in convs])
        over = [k for k, n in enumerate(lengths) if n > target]
        while over:
            for k in over:
                planned[k].pop()
                convs[k] = self._assemble(planned[k])
            for k, n in zip(over, self._lengths([convs[k].messages for k in over]), strict=True):
                lengths[k] = n
            over = [k for k in over if lengths[k] > target and len(planned[k]) > 1]
        keep = [k for k, n in enumerate(lengths) if min_fill * target <= n <= target]
        return [convs[k] for k in keep], [lengths[k] for k in keep]

    def _lengths(self, conversations: list[list[dict[str, str]]]) -> list[int]:
        if not conversations:
            return []
        table = encode_conversations(conversations, self.tokenizer, system=self.system)
        return [len(ids) for ids in table.column("input_ids").to_pylist()]

    def _draw(self, target: int, conv_index: int, block: int, doc: int, earlier: list[int]) -> list[int]:
        rng = _rng(self.seed, "revisit", target, conv_index, block, doc)
        return [j for j in earlier if rng.random() < self.p]

    def _fill(
        self, target: int, min_fill: float, order: list[int], used: set[int], conv_index: int
    ) -> tuple[Conversation | None, list[tuple[int, list[int], bool]]]:
        total = self.prefix
        members: list[tuple[int, list[int], bool]] = []
        for i in order:
            if i in used:
                continue
            earlier = [m for m, _, _ in members]
            drawn = self._draw(target, conv_index, len(members), i, earlier)
            cost = self.block_tokens[i] + sum(self.revisit_tokens[j] for j in drawn)
            if total + cost > target:
                continue  # the next candidate draws afresh
            # a block that would fit with every earlier document revisited: its draws were not selected by the budget
            free = total + self.block_tokens[i] + sum(self.revisit_tokens[j] for j in earlier) <= target
            members.append((i, drawn, free))
            total += cost
            if total >= min_fill * target and total + self.min_block > target:
                break
        if not members or total < min_fill * target:
            return None, members
        return self._assemble(members), members

    def _assemble(self, members: list[tuple[int, list[int], bool]]) -> Conversation:
        conv = Conversation([], [], [], [], 0)
        for block, (i, drawn, free) in enumerate(members):
            self._block(conv, self.docs[i], drawn, block)
            conv.doc_ids.append(self.docs[i].doc_id)
            conv.pairs += block
            conv.blocks.append((block, len(drawn), free))
        return conv


def conversations_table(
    convs: Sequence[Conversation], lengths: Sequence[int], target: int, tokenizer: Any, system: str | None
) -> pa.Table:
    """Rows: ``input_ids``/``assistant_masks`` (:func:`longmagpie.encode_conversations`) plus metadata."""
    import json

    enc = encode_conversations([c.messages for c in convs], tokenizer, system=system)
    meta = {
        "target_tokens": pa.array([target] * len(convs), pa.int64()),
        "num_tokens": pa.array(list(lengths), pa.int64()),
        "num_documents": pa.array([len(c.doc_ids) for c in convs], pa.int32()),
        "num_qas": pa.array([len(c.kinds) for c in convs], pa.int32()),
        "num_revisits": pa.array([sum(k == "revisit" for k in c.kinds) for c in convs], pa.int32()),
        "doc_ids": pa.array([c.doc_ids for c in convs], pa.list_(pa.string())),
        "qa_kinds": pa.array([c.kinds for c in convs], pa.list_(pa.string())),
        "messages": pa.array([json.dumps(c.messages) for c in convs], pa.large_string()),
    }
    for name, col in meta.items():
        enc = enc.append_column(name, col)
    return enc


def _u(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def _a(text: str) -> dict[str, str]:
    return {"role": "assistant", "content": text}
