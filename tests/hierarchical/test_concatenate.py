"""Concatenation and revisits on pre-made QA records (no generation): probability, lengths, masks, errors."""

from __future__ import annotations

import math
from typing import Any

import pytest
from support.hierarchical import make_text

from longmagpie.hierarchical import Concatenator, DocQAs, conversations_table, split_document


def records(n: int, words: int = 40, revisits: int = 3) -> list[DocQAs]:
    out = []
    for i in range(n):
        qas = [("hierarchical", f"What is part {k} of document {i}?", f"Part {k} of {i} is a river.") for k in range(2)]
        rev = [("revisit", f"Back to document {i}, item {k}?", f"Item {k} of {i}.") for k in range(revisits)]
        out.append(DocQAs(f"d{i}", make_text(i, words), qas, rev))
    return out


def test_revisits_follow_the_configured_probability(qwen_tokenizer: Any) -> None:
    """Each (new, earlier) document pair gets a revisit with probability p: binomial tolerance of 4 sigma."""
    docs = records(600)
    for p in (0.6, 0.25):
        cat = Concatenator(docs, qwen_tokenizer, revisit_probability=p, seed=3)
        convs, _ = cat.build(2500, None, 0.8)
        # blocks that would have fit with every earlier document revisited: the budget did not select their draws
        pairs = sum(n for c in convs for n, _, free in c.blocks if free)
        hits = sum(k for c in convs for _, k, free in c.blocks if free)
        assert len(convs) > 20 and pairs > 500
        sigma = math.sqrt(p * (1 - p) / pairs)
        assert abs(hits / pairs - p) < 4 * sigma, (hits, pairs, p)
        assert sum(len(c.revisited) for c in convs) == sum(k for c in convs for _, k, _ in c.blocks)
        for c in convs:
            # three revisit turns per revisited earlier document, each about a document already in the conversation
            assert c.kinds.count("revisit") == 3 * len(c.revisited)
            for block, j in c.revisited:
                earlier = c.doc_ids.index(docs[j].doc_id)
                assert earlier < block


def test_probability_zero_and_one(qwen_tokenizer: Any) -> None:
    docs = records(60)
    none, _ = Concatenator(docs, qwen_tokenizer, revisit_probability=0.0, seed=0).build(2500, None, 0.8)
    assert none and all("revisit" not in c.kinds for c in none)
    every, _ = Concatenator(docs, qwen_tokenizer, revisit_probability=1.0, seed=0).build(2500, None, 0.5)
    assert every and all(len(c.revisited) == c.pairs for c in every)


def test_lengths_reach_every_target_within_tolerance(qwen_tokenizer: Any) -> None:
    """Exact token counts (real Qwen2.5 tokenizer) lie in [min_fill * target, target] for every curriculum stage."""
    docs = records(300, words=60)
    cat = Concatenator(docs, qwen_tokenizer, revisit_probability=0.6, seed=1)
    for target in (1000, 4000, 12000):
        convs, lengths = cat.build(target, None, 0.9)
        assert convs, target
        table = conversations_table(convs, lengths, target, qwen_tokenizer, None)
        for ids, n in zip(table.column("input_ids").to_pylist(), table.column("num_tokens").to_pylist(), strict=True):
            assert len(ids) == n
            assert 0.9 * target <= n <= target
        used = [d for c in convs for d in c.doc_ids]
        assert len(used) == len(set(used))  # each document at most once per target


def test_loss_mask_covers_exactly_the_answers(qwen_tokenizer: Any) -> None:
    docs = records(40)
    convs, lengths = Concatenator(docs, qwen_tokenizer, revisit_probability=0.6, seed=2).build(3000, 3, 0.8)
    table = conversations_table(convs, lengths, 3000, qwen_tokenizer, None)
    for row, conv in enumerate(convs):
        ids = table.column("input_ids")[row].as_py()
        mask = table.column("assistant_masks")[row].as_py()
        runs, cur = [], []
        for t, m in zip(ids, mask, strict=True):
            if m:
                cur.append(t)
            elif cur:
                runs.append(cur)
                cur = []
        if cur:
            runs.append(cur)
        answers = [m["content"] for m in conv.messages if m["role"] == "assistant"]
        assert len(runs) == len(answers)
        for run, answer in zip(runs, answers, strict=True):
            text = qwen_tokenizer.decode(run)  # the answer and its end-of-turn span, nothing else
            assert text.startswith(answer + "<|im_end|>") and not text[len(answer) + len("<|im_end|>") :].strip()
        # the document text and every question are outside the mask
        unmasked = qwen_tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if not m])
        for m in conv.messages:
            if m["role"] == "user":
                assert m["content"] in unmasked


def test_same_seed_same_conversations(qwen_tokenizer: Any) -> None:
    docs = records(50)
    a = Concatenator(docs, qwen_tokenizer, revisit_probability=0.6, seed=5).build(2500, None, 0.8)
    b = Concatenator(docs, qwen_tokenizer, revisit_probability=0.6, seed=5).build(2500, None, 0.8)
    c = Concatenator(docs, qwen_tokenizer, revisit_probability=0.6, seed=6).build(2500, None, 0.8)
    assert [x.messages for x in a[0]] == [x.messages for x in b[0]]
    assert [x.messages for x in a[0]] != [x.messages for x in c[0]]


def test_target_smaller_than_every_document(qwen_tokenizer: Any) -> None:
    cat = Concatenator(records(5, words=200), qwen_tokenizer, revisit_probability=0.6, seed=0)
    with pytest.raises(ValueError, match="smaller than every document"):
        cat.build(100, None, 0.9)


def test_documents_too_long_for_a_target_are_left_out(qwen_tokenizer: Any) -> None:
    docs = records(10, words=30) + records(3, words=2000)
    docs = [DocQAs(f"x{i}", d.text, d.qas, d.revisits) for i, d in enumerate(docs)]
    convs, _ = Concatenator(docs, qwen_tokenizer, revisit_probability=0.6, seed=0).build(1200, None, 0.5)
    assert convs and not {"x10", "x11", "x12"} & {d for c in convs for d in c.doc_ids}


def test_a_document_without_qas_is_refused(qwen_tokenizer: Any) -> None:
    with pytest.raises(ValueError, match="'bad' has no QAs"):
        Concatenator([DocQAs("bad", "text", [], [])], qwen_tokenizer, revisit_probability=0.6, seed=0)


def test_chunks_rejoin_to_the_document(qwen_tokenizer: Any) -> None:
    text = make_text(7, 300)
    chunks = split_document(text, qwen_tokenizer, 64, 3)
    assert "".join(chunks.small) == text
    assert chunks.tokens == len(qwen_tokenizer(text, add_special_tokens=False)["input_ids"])
    assert all(n == 64 for n in chunks.small_tokens[:-1]) and 0 < chunks.small_tokens[-1] <= 64
    assert [i for g in chunks.medium for i in g] == list(range(len(chunks.small)))
    assert all(len(g) == 3 for g in chunks.medium[:-1])
    short = split_document("A short note.", qwen_tokenizer, 64, 3)
    assert short.small == ["A short note."] and short.medium == [[0]]
