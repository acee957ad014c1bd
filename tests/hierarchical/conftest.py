"""Fixtures of the hierarchical tests: one in-process vLLM engine on the tiny Qwen2 (as tests/harvest does)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# vLLM's engine in this process (start in seconds); read when vllm is first imported, in a fixture
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

MAX_MODEL_LEN = 1024
ENGINE_KWARGS: dict[str, Any] = {"dtype": "bfloat16", "enforce_eager": True, "kv_cache_memory_bytes": 256 * 2**20}


@pytest.fixture(scope="session")
def hier_engine(tiny_qwen2_dir: Path) -> Iterator[Any]:
    """The one in-process vLLM engine every hierarchical test shares."""
    from longmagpie.harvest import VllmEngine

    engine = VllmEngine(str(tiny_qwen2_dir), max_model_len=MAX_MODEL_LEN, seed=0, engine_kwargs=ENGINE_KWARGS)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def qwen_tokenizer(qwen_tokenizer_dir: Path) -> Any:
    """The real Qwen2.5 tokenizer, loaded once."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(qwen_tokenizer_dir)
