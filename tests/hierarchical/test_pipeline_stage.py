"""`longmagpie run` with a [hierarchical] stage: conversations per target, packed at each target's length.

The run is a real ``longmagpie`` process: an engine built and dropped in this process would tear down vLLM's
process-wide parallel state under the session's shared engine (``engine``), which later tests use.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from support.hierarchical import settings, write_docs
from typer.testing import CliRunner

import longmagpie
from longmagpie.cli import app

runner = CliRunner()


def toml_value(value: Any) -> str:
    """The TOML spelling of the few value types the settings hold."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def write_pipeline(path: Path, out: Path, tokenizer: Path, hierarchical: dict[str, Any], extra: str = "") -> Path:
    lines = [f"output_dir = {toml_value(str(out))}", f"tokenizer = {toml_value(str(tokenizer))}", "seed = 5", ""]
    lines.append("[hierarchical]")
    lines += [f"{k} = {toml_value(v)}" for k, v in hierarchical.items() if k not in ("output_dir",)]
    path.write_text("\n".join(lines) + "\n" + extra)
    return path


@pytest.mark.vllm
def test_hierarchical_pipeline_packs_each_target_at_its_length(
    tiny_qwen2_dir: Path, qwen_tokenizer_dir: Path, tmp_path: Path
) -> None:
    inputs = write_docs(tmp_path / "docs.parquet", [300, 250, 280, 320, 260, 300])
    hier = settings(tiny_qwen2_dir, inputs, tmp_path / "unused", targets=[1500, 3000], diverse_qas=2)
    hier.pop("seed", None)
    out = tmp_path / "run"
    config = write_pipeline(tmp_path / "pipeline.toml", out, qwen_tokenizer_dir, hier, "[pack]\nstrategy = 'bfd'\n")

    cmd = [sys.executable, "-m", "longmagpie", "run", str(config)]
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "stages: hierarchical done, pack done, export done" in result.stdout
    for target in (1500, 3000):
        conversations = pq.read_table(out / "hierarchical" / f"target-{target}.parquet")
        packed = pq.read_table(out / f"packed-{target}.parquet")
        assert longmagpie.pack_metadata(packed)["params"]["seq_len"] == target
        assert max(packed.column("length").to_pylist()) <= target
        # every conversation is one document of a packed row: nothing cut, nothing lost
        assert sorted(n for row in packed.column("seq_lengths").to_pylist() for n in row) == sorted(
            len(ids) for ids in conversations.column("input_ids").to_pylist()
        )
        exported = pq.read_table(sorted((out / f"dataset-{target}" / "data").glob("*.parquet")))
        assert exported.num_rows == packed.num_rows
        assert exported.column("input_ids").to_pylist() == packed.column("input_ids").to_pylist()

    again = runner.invoke(app, ["run", str(config)])  # nothing to generate: no engine starts in this process
    assert again.exit_code == 0, again.output
    assert "stages: hierarchical skipped, pack skipped, export skipped" in again.output


def test_hierarchical_pipeline_config_errors(tiny_qwen2_dir: Path, qwen_tokenizer_dir: Path, tmp_path: Path) -> None:
    hier = {"inputs": ["docs.parquet"], "model": str(tiny_qwen2_dir), "targets": [1000]}
    out = tmp_path / "run"
    both = write_pipeline(tmp_path / "a.toml", out, qwen_tokenizer_dir, hier, "[harvest]\nmodel = 'm'\n")
    result = runner.invoke(app, ["run", str(both)])
    assert result.exit_code == 1 and "drop [harvest] and [assemble]" in result.output
    seq = write_pipeline(tmp_path / "b.toml", out, qwen_tokenizer_dir, hier, "[pack]\nseq_len = 4096\n")
    result = runner.invoke(app, ["run", str(seq)])
    assert result.exit_code == 1 and "remove seq_len from [pack]" in result.output
    unknown = write_pipeline(tmp_path / "c.toml", out, qwen_tokenizer_dir, {**hier, "chunk_size": 3})
    result = runner.invoke(app, ["run", str(unknown)])
    assert result.exit_code == 1 and "[hierarchical]" in result.output and "chunk_size" in result.output
    assert not (out / "hierarchical.done.json").exists()
