"""Hierarchical synthesis on a real aligned model (SmolLM2-135M-Instruct): summaries summarise, questions ask.

Two bundled documents of ~800-1,000 tokens, chunks of 256 tokens: every level of the summary tree is written by
the real model. Asserted with floors measured on this model (fixed seeds: the same run every time):
- a summary is shorter than what it summarises, and shares its vocabulary (more than another document's chunk);
- questions are questions, grounded in the material they were asked about more than in another document's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from support import require

from longmagpie import measures
from longmagpie.hierarchical import HierarchicalConfig, synthesize

from .conftest import ENGINE_KWARGS, MAX_MODEL_LEN, demo_documents, documents_run

AutoTokenizer = require("transformers").AutoTokenizer

#: Measured floors (README "Real data").
MAX_SMALL_COMPRESSION = 0.9  # mean summary tokens / chunk tokens
MIN_SUMMARY_GROUNDING = 0.5  # share of a summary's content words found in its chunk
MIN_QUESTION_LIFT = 0.1  # own-material grounding minus another document's, averaged over questions


@pytest.fixture(scope="module")
def run(smol_engine: Any, smollm2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("smol-hier")
    docs = [d for d in demo_documents(24) if 5000 <= len(d["text"]) <= 7000][:2]
    assert len(docs) == 2
    cfg = HierarchicalConfig(
        **documents_run(tmp, docs, smollm2_dir),
        small_chunk_tokens=256,
        medium_chunk_small=2,
        hierarchical_qas=2,
        local_qas=1,
        multihop_qas=1,
        diverse_qas=1,
        revisit_qas=1,
        summary_max_tokens=160,
        question_max_tokens=64,
        answer_max_tokens=256,
        max_model_len=MAX_MODEL_LEN,
        targets=(4000,),
        min_fill=0.3,
        engine_kwargs=dict(ENGINE_KWARGS),
    )
    report = synthesize(cfg, engine=smol_engine)
    states = [json.loads(p.read_text()) for p in sorted((tmp / "out" / "documents").glob("*.json"))]
    states = [s for s in states if "doc_id" in s]
    return {"config": cfg, "report": report, "states": states, "docs": docs}


def test_small_summaries_are_shorter_and_share_the_chunk_vocabulary(run: dict[str, Any], smollm2_dir: Path) -> None:
    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    ratios, grounded, lifts = [], [], []
    states = run["states"]
    for k, st in enumerate(states):
        other = states[1 - k]
        assert len(st["small_summaries"]) == len(st["small"]) >= 3
        for i, (chunk, summary) in enumerate(zip(st["small"], st["small_summaries"], strict=True)):
            assert summary.strip(), f"{st['doc_id']} chunk {i}: empty summary"
            ratios.append(len(tok.encode(summary)) / len(tok.encode(chunk)))
            own = measures.grounding(summary, chunk)
            far = measures.grounding(summary, other["small"][i % len(other["small"])])
            assert own is not None and far is not None
            grounded.append(own)
            lifts.append(own - far)
    assert sum(ratios) / len(ratios) <= MAX_SMALL_COMPRESSION, ratios
    assert sum(grounded) / len(grounded) >= MIN_SUMMARY_GROUNDING, grounded
    assert sum(lifts) / len(lifts) > 0, lifts
    for st in states:
        assert st["global_summary"].strip()


def test_questions_are_grounded_in_their_material(run: dict[str, Any]) -> None:
    from longmagpie.hierarchical.generation import DocState, _material

    states = [DocState.from_json(s) for s in run["states"]]
    lifts, marks = [], 0
    n = 0
    for k, st in enumerate(states):
        other = states[1 - k]
        for item in st.qas:
            assert item.question and item.answer, item
            n += 1
            marks += item.question.rstrip().endswith("?")
            own = measures.grounding(item.question, _material(st, item))
            far = measures.grounding(item.question, other.text)
            if own is not None and far is not None:
                lifts.append(own - far)
    assert n > 0 and marks / n >= 0.5, (marks, n)
    assert lifts and sum(lifts) / len(lifts) >= MIN_QUESTION_LIFT, lifts


def test_report_carries_the_quality_measures(run: dict[str, Any]) -> None:
    quality = run["report"].quality
    assert quality, "the hierarchical report has no quality measures"
    out = Path(run["config"].output_dir)
    assert json.loads((out / "quality.json").read_text()) == quality
