"""The judge on a real model: SmolLM2-135M-Instruct judges real harvest rows and planted bad copies of them.

Asserted: every judgement parses (the engine constrains it) and is in range, statements are the answer's own, and
each planted kind scores lower than the originals on the likelihood signal that
targets it (floors at about a quarter of the drops measured by ``benches/bench_judge.py``; docs/quality.md, "The
judge: measured"). The asked scores are measured, not asserted: a 135M judge calls every statement supported.
That a killed and rerun judge writes the same bytes is tested on the tiny model (tests/quality/test_judge.py): it
holds for any engine that is deterministic, which the real harvest's resume test checks for this one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from longmagpie.quality.judge import TAXONOMY, VERDICTS, JudgeConfig, judge, judge_summary, judged_rows
from longmagpie.testing.planted import plant_bad_rows, separation

from .conftest import ENGINE_KWARGS, ENGINE_MAX_MODEL_LEN

#: Harvest rows judged, each with its three planted copies.
ORIGINALS = 4
#: Floors of the drop (originals minus planted) of each likelihood signal on the kind it targets; measured on 8
#: rows (bench_judge.py): support gain 0.52 (swapped answers), question gain 1.39 (off-topic questions), end
#: log-probability 16.8 (truncated answers).
MIN_DROP = {"support_gain": ("swapped_answer", 0.12), "question_gain": ("off_topic_question", 0.3),
            "end_logprob": ("truncated_answer", 4.0)}  # fmt: skip

JUDGE: dict[str, Any] = {
    "max_model_len": ENGINE_MAX_MODEL_LEN,
    "max_doc_tokens": 512,  # bounded CI time (the bench shows 1024)
    "max_statements": 2,
    "shard_rows": 8,
    "keep_all": True,
    "engine_kwargs": dict(ENGINE_KWARGS),
    "progress": False,
}


@pytest.fixture(scope="module")
def judged(
    smol_engine: Any, smollm2_dir: Path, smol_harvest: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("smol-judge")
    planted = plant_bad_rows(smol_harvest["table"].slice(0, ORIGINALS))  # bounded CI time: 4 rows x 4 kinds
    pq.write_table(planted, tmp / "planted.parquet")
    cfg = JudgeConfig(
        inputs=(str(tmp / "planted.parquet"),), output_dir=str(tmp / "judged"), model=str(smollm2_dir), **JUDGE
    )
    report = judge(cfg, engine=smol_engine)
    return {"config": cfg, "report": report, "rows": judged_rows(cfg.output_dir), "tmp": tmp}


def test_every_judgement_parses_and_is_in_range(judged: dict[str, Any]) -> None:
    c, rows = judged["report"].counts, judged["rows"]
    assert c["tags_parsed"] == c["tags_requested"] == rows.num_rows > 0
    assert c["verdicts_parsed"] == c["verdicts_requested"] > 0
    for row in rows.to_pylist():
        assert 1 <= row["quality"] <= 5 and 1 <= row["difficulty"] <= 5 and row["category"] in TAXONOMY
        assert all(v in VERDICTS for v in row["verdicts"])
        assert row["faithfulness"] is None or 0 <= row["faithfulness"] <= 1
        assert len(row["statements"]) == len(row["verdicts"]) <= judged["config"].max_statements
        answer = row["answer"]
        assert all(s in answer for s in row["statements"]), "statements are the answer's own sentences"
    summary = judge_summary(judged["config"].output_dir)
    assert summary["tags_parse_rate"] == summary["verdicts_parse_rate"] == 1.0


@pytest.mark.parametrize("score", sorted(MIN_DROP))
def test_planted_rows_score_lower_on_the_signal_that_targets_them(judged: dict[str, Any], score: str) -> None:
    kind, floor = MIN_DROP[score]
    sep = separation(judged["rows"], score)
    assert sep["original"]["rows"] == sep[kind]["rows"] == ORIGINALS, sep
    assert sep[kind]["drop"] >= floor, sep


def test_the_asked_scores_are_measured(judged: dict[str, Any]) -> None:
    """Not asserted beyond their range: a 135M judge says "supported" and quality 1 nearly always."""
    for score in ("faithfulness", "quality"):
        sep = separation(judged["rows"], score)
        assert sep["original"]["rows"] > 0 and all(isinstance(sep[k]["drop"], float) for k in sep if k != "original")
