"""The ``ray`` engine: Ray Data LLM (build_processor + vLLMEngineProcessorConfig) on a local Ray cluster."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from support import ENGINE_KWARGS, MAX_MODEL_LEN, require
from support.harvest import check_accounting, make_documents

from longmagpie.harvest import HarvestConfig, harvest, read_harvest


@pytest.fixture(scope="module")
def local_ray(ray_cluster: Any) -> None:
    """The session's Ray cluster, with Ray Data LLM."""
    require("ray.data.llm")


def test_harvest_on_ray_data_llm(local_ray, engine, config_on, tmp_path):
    cfg = config_on(
        make_documents(3),
        engine="ray",
        ray_placement_bundles=({"CPU": 1},),
        ray_batch_size=8,
        engine_kwargs=dict(ENGINE_KWARGS),
    )
    assert cfg.max_model_len == MAX_MODEL_LEN
    report = harvest(cfg)
    assert report.engine == "ray" and report.shards_written == 1
    check_accounting(Counter(report.counts), 1)
    rows = read_harvest(cfg.output_dir).to_pylist()
    assert len(rows) == report.rows == 3
    assert [r["source_row"] for r in rows] == [0, 1, 2]  # Ray's results are put back in request order
    for r in rows:
        assert r["query"] and r["answer"] and r["answer_tokens"] <= cfg.answer_max_tokens
        assert r["answer_finish_reason"] in ("stop", "length")
    # the same rows as the in-process engine: Ray changes where vLLM runs, not what it samples
    local = HarvestConfig(**{**cfg.__dict__, "engine": "vllm", "output_dir": str(tmp_path / "local")})
    harvest(local, engine=engine)
    assert read_harvest(local.output_dir).to_pylist() == rows
