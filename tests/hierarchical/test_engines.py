"""Hierarchical synthesis through the harvester's other engines: a real ``vllm serve`` (OpenAI API) on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from support import require
from support.hierarchical import FEW_QAS, PASSES, Counting, doc_states, settings, write_docs

from longmagpie.assembly.conversations import encode_conversations
from longmagpie.hierarchical import HierarchicalConfig, synthesize

SMALL: dict[str, Any] = {**FEW_QAS, "targets": (1200,), "min_fill": 0.3}


def check_structure(config: HierarchicalConfig, report: Any, tokenizer: Any) -> None:
    """Passes, per-document kinds, rows written and their masks (one masked run per answer)."""
    assert [name for name, _ in report.calls] == PASSES
    for s in doc_states(Path(config.output_dir)).values():
        assert [q["kind"] for q in s["qas"]] == ["hierarchical"] * 3 + ["local", "multihop", "diverse", "diverse"]
        assert len(s["revisits"]) == 1 and s["stage"] == "done" and s["global_summary"] is not None
    (target,) = report.targets
    table = pq.read_table(target.path)
    assert table.num_rows == target.conversations > 0
    for row in table.to_pylist():
        mask, ids = row["assistant_masks"], row["input_ids"]
        assert len(mask) == len(ids) == row["num_tokens"] <= target.target
        runs = sum(1 for i, m in enumerate(mask) if m and (i == 0 or not mask[i - 1]))
        assert runs == row["num_qas"] == len(row["qa_kinds"])
        again = encode_conversations([json.loads(row["messages"])], tokenizer).to_pylist()[0]
        assert again == {"input_ids": ids, "assistant_masks": mask}


def test_synthesize_through_an_openai_server(
    server: str,
    engine: Any,
    tiny_qwen2_dir: Path,
    qwen_tokenizer: Any,
    tmp_path: Path,
) -> None:
    inputs = write_docs(tmp_path / "docs.parquet", [220, 12])
    remote = {"engine": "openai", "base_url": server, "served_model_name": "tiny", "concurrency": 4}
    config = HierarchicalConfig(**settings(tiny_qwen2_dir, inputs, tmp_path / "remote", **remote, **SMALL))
    report = synthesize(config)
    check_structure(config, report, qwen_tokenizer)
    # the server samples what the in-process engine does for the same seeded token-id requests
    local = dataclasses.replace(config, engine="vllm", output_dir=str(tmp_path / "local"))
    local_report = synthesize(local, engine=engine)
    assert doc_states(Path(local.output_dir)) == doc_states(Path(config.output_dir))
    assert Path(local_report.targets[0].path).read_bytes() == Path(report.targets[0].path).read_bytes()


def test_synthesize_on_ray_data_llm(engine: Any, ray_cluster: Any, tiny_qwen2_dir: Path, tmp_path: Path) -> None:
    """The ``ray`` engine (Ray Data LLM on a local 2-CPU cluster) finishes a run the in-process engine started.

    Every ``generate`` on Ray Data starts its vLLM actors afresh (about half a minute each on two cores), so Ray
    runs only the last pass (answers, the largest) of a run interrupted after the first six, and must give the
    bytes of the run made wholly in-process. The config asks for a one-CPU placement bundle
    (``ray_placement_bundles``): Ray Data LLM's default placement asks for a GPU.
    """
    require("ray.data.llm")
    from longmagpie.generate.engines import RayEngine, build_engine

    inputs = write_docs(tmp_path / "docs.parquet", [150, 12])
    config = HierarchicalConfig(**settings(tiny_qwen2_dir, inputs, tmp_path / "ray", **SMALL))
    local = dataclasses.replace(config, output_dir=str(tmp_path / "local"))
    local_report = synthesize(local, engine=engine)
    with pytest.raises(RuntimeError, match="engine lost"):
        synthesize(config, engine=Counting(engine, fail_after=6))
    assert {s["stage"] for s in doc_states(Path(config.output_dir)).values()} == {"q2"}
    # the engine the config names (on the session's Ray cluster): HierarchicalConfig is its EngineSettings
    on_ray = dataclasses.replace(config, engine="ray", ray_placement_bundles=({"CPU": 1},))
    built = build_engine(on_ray, on_ray.model, max_model_len=on_ray.max_model_len, seed=on_ray.seed)
    assert isinstance(built, RayEngine)
    report = synthesize(on_ray)
    assert report.calls == [("done", 16)]
    assert doc_states(Path(local.output_dir)) == doc_states(Path(config.output_dir))
    assert Path(local_report.targets[0].path).read_bytes() == Path(report.targets[0].path).read_bytes()
