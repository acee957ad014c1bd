"""Multi-turn LongMagpie on a real aligned model: SmolLM2-135M-Instruct writes follow-up questions and answers.

One harvest with ``turns=3`` over the shortest demo documents (default filters; shorter answers for CI time). The
tests check that conversations of more than one exchange come out, that a follow-up is no copy or near-copy of an
earlier question of its conversation (the quality stage's own MinHash near-duplicate filter), that later turns hit
the prefix cache, and that assembled conversations are exact: ids as ``apply_chat_template``, every answer masked
as the conversation encoder masks it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from .conftest import ENGINE_MAX_MODEL_LEN, HARVEST, demo_documents, documents_run

TURNS = 3


@pytest.fixture(scope="module")
def run(smol_engine: Any, smollm2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from longmagpie.harvest import HarvestConfig, harvest, read_harvest

    tmp = tmp_path_factory.mktemp("smol-multiturn")
    cfg = HarvestConfig(
        **documents_run(tmp, demo_documents(4), smollm2_dir),
        shard_rows=4,
        turns=TURNS,
        **{**HARVEST, "answer_max_tokens": 384, "max_model_len": ENGINE_MAX_MODEL_LEN},  # three exchanges fit
    )
    report = harvest(cfg, engine=smol_engine)
    return {"config": cfg, "report": report, "table": read_harvest(cfg.output_dir)}


def test_conversations_of_several_turns_come_out(run: dict[str, Any]) -> None:
    c, rows = run["report"].counts, run["table"].to_pylist()
    assert rows, c
    assert max(r["turns"] for r in rows) >= 2, c
    assert c["followups_generated"] >= 1 and c["followup_answers_accepted"] >= 1, c
    for r in rows:
        assert len(r["messages"]) == 1 + 2 * r["turns"]
        assert all(m["content"].strip() for m in r["messages"])
        questions = [m["content"] for m in r["messages"] if m["role"] == "user"]
        assert all(q.rstrip().endswith("?") or "?" in q for q in questions), questions  # default question_mark rule


def test_follow_ups_stay_on_their_document(run: dict[str, Any]) -> None:
    """Follow-ups share content words with their own document (model-free grounding), as first questions do."""
    rows = [r for r in run["table"].to_pylist() if r["turns"] >= 2]
    scores = [r["followup_grounding"] for r in rows if r["followup_grounding"] is not None]
    assert scores, rows
    assert sum(scores) / len(scores) > 0.1, scores  # measured 0.23 (first questions 0.40): they drift


def test_follow_ups_are_not_copies_of_earlier_questions(run: dict[str, Any]) -> None:
    from longmagpie.quality.dedup import NearDuplicates

    checked = 0
    for r in run["table"].to_pylist():
        questions = [m["content"] for m in r["messages"] if m["role"] == "user"]
        if len(questions) < 2:
            continue
        near = NearDuplicates(shingle=2, threshold=0.7, seed=0)
        decision = near.add(pa.array(questions, pa.large_string()), "query")
        assert decision.dup_of.to_pylist() == [-1] * len(questions), (questions, decision.dup_of.to_pylist())
        checked += len(questions) - 1
    assert checked >= 1


def test_later_turns_are_served_from_the_prefix_cache(run: dict[str, Any]) -> None:
    cache = run["report"].prefix_cache
    assert "turn2_query" in cache and "turn2_answer" in cache, cache
    # the conversation so far, document included, is the prefix of every later turn's prompts
    assert cache["turn2_query"]["hit_rate"] > 0.5 and cache["turn2_answer"]["hit_rate"] > 0.5, cache


def test_assembled_conversations_are_exact(run: dict[str, Any], smollm2_dir: Path) -> None:
    from transformers import AutoTokenizer

    import longmagpie

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    table = run["table"]
    out = longmagpie.assemble(table, tok, num_distractors=(1, 2), max_tokens=8192, messages=True, seed=0)
    assert out.num_rows == table.num_rows
    rows = out.to_pylist()
    encoded = longmagpie.encode_conversations([r["messages"] for r in rows], tok).to_pylist()
    for row, enc, src in zip(rows, encoded, table.to_pylist(), strict=True):
        assert len(row["messages"]) == 2 * src["turns"]
        assert (
            row["input_ids"] == tok.apply_chat_template(row["messages"], tokenize=True, return_dict=True)["input_ids"]
        )
        assert row["assistant_masks"] == enc["assistant_masks"]
        masked = tok.decode([t for t, m in zip(row["input_ids"], row["assistant_masks"], strict=True) if m])
        for m in row["messages"][1::2]:
            assert m["content"].strip()[:40] in masked
