"""The LongMagpie method on a real aligned model: SmolLM2-135M-Instruct, the harvester's default filters.

What the method promises, asserted with floors measured on this model (see the README's "Real data" section for
the figures; fixed seeds make every run the same):
- shown a document and an opened user turn, the model writes a question: most documents yield an accepted one;
- the questions are about their own document: their content words come from it clearly more than from another
  document of the corpus;
- answers are non-empty and finish (no answer cut by the token limit is kept).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from longmagpie import measures
from longmagpie.harvest import HarvestConfig, harvest_quality

#: Floors, measured (README "Real data"): the run below gives a yield of {YIELD} and a lift of {LIFT}.
MIN_DOCUMENT_YIELD = 0.6
MIN_GROUNDING_LIFT = 0.15
MIN_OWN_GROUNDING = 0.4


@pytest.fixture(scope="module")
def run(smol_harvest: dict[str, Any]) -> dict[str, Any]:
    return smol_harvest


def test_filters_are_the_defaults(run: dict[str, Any]) -> None:
    """Nothing is switched off: the rules a user gets are the rules measured here."""
    cfg: HarvestConfig = run["config"]
    defaults = HarvestConfig(inputs=("x",), output_dir="y", model="z")
    for name in ("question_mark", "min_query_chars", "allow_unfinished_answers", "dedup", "query_candidates"):
        assert getattr(cfg, name) == getattr(defaults, name), name
    assert cfg.question_mark != "off" and not cfg.allow_unfinished_answers


def test_most_documents_yield_an_accepted_question(run: dict[str, Any]) -> None:
    report, table = run["report"], run["table"]
    q = report.quality
    assert q["documents"] == len(run["docs"])
    assert q["document_yield"] >= MIN_DOCUMENT_YIELD, q
    assert len(set(table.column("doc_id").to_pylist())) == q["documents_with_rows"]
    for query in table.column("query").to_pylist():
        assert query.endswith("?") and len(query) >= 8
        assert "<|im_" not in query and "<|endoftext|>" not in query


def test_questions_are_about_their_own_document(run: dict[str, Any]) -> None:
    """Own-document grounding beats the grounding of the same question in another document, row by row too."""
    q = run["report"].quality
    assert q["query_grounding"] >= MIN_OWN_GROUNDING, q
    assert q["query_grounding_lift"] >= MIN_GROUNDING_LIFT, q
    assert q["query_grounding"] > q["query_grounding_other"]
    texts = {d["doc_id"]: d["text"] for d in run["docs"]}
    ids = sorted(texts)
    wins = total = 0
    for row in run["table"].select(["doc_id", "query", "query_grounding"]).to_pylist():
        own = measures.grounding(row["query"], texts[row["doc_id"]])
        assert own == pytest.approx(row["query_grounding"]) or (own is None and row["query_grounding"] is None)
        if own is None:
            continue
        others = [measures.grounding(row["query"], texts[o]) or 0.0 for o in ids if o != row["doc_id"]]
        wins += own > max(others)
        total += 1
    assert total and wins / total >= 0.5, (wins, total)


def test_answers_finish_and_are_not_empty(run: dict[str, Any]) -> None:
    table, counts = run["table"], Counter(run["report"].counts)
    assert table.num_rows == counts["rows"] > 0
    assert set(table.column("answer_finish_reason").to_pylist()) == {"stop"}
    assert all(a.strip() for a in table.column("answer").to_pylist())
    # Every accepted question ends as a row or as a question without an answer; every generated answer candidate is
    # kept or rejected for one counted reason.
    assert counts["queries_accepted"] == counts["rows"] + counts["questions_without_answer"]
    rejected = ("answer_unfinished", "answer_reasoning_unfinished", "answer_empty", "answer_too_short")
    assert counts["answers_generated"] == counts["rows"] + sum(counts[k] for k in rejected)


def test_quality_is_in_the_markers_and_the_report(run: dict[str, Any]) -> None:
    out = Path(run["config"].output_dir)
    markers = [json.loads(p.read_text()) for p in sorted(out.glob("shard-*.done.json"))]
    assert all("quality" in m for m in markers)
    assert sum(m["quality"]["documents"] for m in markers) == len(run["docs"])
    assert harvest_quality(out) == run["report"].quality
    assert sum(run["report"].quality["openers"].values()) == pytest.approx(1.0, abs=1e-3)
