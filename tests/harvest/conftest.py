"""Fixtures of the harvest tests (the engine and tokenizers are shared: tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support import ENGINE_KWARGS, MAX_MODEL_LEN
from support.harvest import write_parquet

from longmagpie.harvest import HarvestConfig


@pytest.fixture
def base_config(tiny_qwen2_dir: Path, tmp_path: Path) -> dict[str, Any]:
    """Settings that make the tiny model yield rows: no question-mark rule, short generations, seeded sampling."""
    return {
        "model": str(tiny_qwen2_dir),
        "output_dir": str(tmp_path / "out"),
        "max_model_len": MAX_MODEL_LEN,
        "max_doc_tokens": 256,
        "query_max_tokens": 16,
        "answer_max_tokens": 16,
        "query_temperature": 1.0,  # seeded per request: reproducible (greedy makes the random model repeat one token)
        "answer_temperature": 1.0,
        "question_mark": "off",
        "query_candidates": 1,  # one request per question and answer: the random model's text passes the filters
        "answer_candidates": 1,
        "min_query_chars": 1,
        "allow_unfinished_answers": True,
        "engine_kwargs": dict(ENGINE_KWARGS),
        "progress": False,
    }


@pytest.fixture
def config_on(base_config: dict[str, Any], tmp_path: Path) -> Callable[..., HarvestConfig]:
    """``config_on(texts, **settings)``: ``texts`` written to ``tmp_path/in.parquet`` (column ``text``), and the
    ``HarvestConfig`` that harvests it: ``base_config`` with ``settings`` over it."""

    def make(texts: list[Any], **settings: Any) -> HarvestConfig:
        inputs = write_parquet(tmp_path / "in.parquet", texts)
        return HarvestConfig(inputs=(str(inputs),), **{**base_config, **settings})

    return make
