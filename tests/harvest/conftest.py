"""Fixtures of the harvest tests: one in-process vLLM engine on the tiny Qwen2 model, documents, configs."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from longmagpie.family_templates import LLAMA3_SPECIALS

from .documents import ENGINE_KWARGS, MAX_MODEL_LEN

# vLLM's engine in this process (start in seconds, not ~30 s); read when vllm is first imported, in a fixture
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")


@pytest.fixture(scope="session")
def engine(tiny_qwen2_dir: Path) -> Iterator[Any]:
    """The one in-process vLLM engine (``vllm.LLM`` in a ``VllmEngine``) every in-process harvest test shares."""
    from longmagpie.harvest import VllmEngine

    engine = VllmEngine(str(tiny_qwen2_dir), max_model_len=MAX_MODEL_LEN, seed=0, engine_kwargs=ENGINE_KWARGS)
    yield engine
    engine.close()


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


@pytest.fixture(scope="session")
def qwen_tokenizer(qwen_tokenizer_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(qwen_tokenizer_dir)


@pytest.fixture(scope="session")
def llama3_tokenizer(qwen_tokenizer_dir: Path) -> Any:
    """A tokenizer with Llama-3's special tokens, BOS and the Llama-3 style template (Qwen's BPE underneath)."""
    from tokenizers import AddedToken
    from transformers import AutoTokenizer

    from longmagpie.chat_templates import LLAMA3_CHAT_TEMPLATE

    tok = AutoTokenizer.from_pretrained(qwen_tokenizer_dir)
    tok.add_special_tokens(
        {"additional_special_tokens": [AddedToken(t, special=True, normalized=False) for t in LLAMA3_SPECIALS]}
    )
    tok.bos_token = "<|begin_of_text|>"
    tok.eos_token = "<|eot_id|>"
    tok.chat_template = LLAMA3_CHAT_TEMPLATE
    return tok
