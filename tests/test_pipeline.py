"""`longmagpie run pipeline.toml`: validated config, stages in order, resumption after an interrupted stage."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import longmagpie
from longmagpie.cli import app

runner = CliRunner()


def write_pipeline(tmp_path: Path, tokenizer_dir: Path, body: str) -> tuple[Path, Path]:
    """Write ``tmp_path/pipeline.toml``: output ``tmp_path/run``, tokenizer ``tokenizer_dir``, then ``body``."""
    out = tmp_path / "run"
    config = tmp_path / "pipeline.toml"
    config.write_text(f'output_dir = "{out}"\ntokenizer = "{tokenizer_dir}"\n{body}')
    return config, out


@pytest.fixture
def setup(tmp_path: Path, qwen_tokenizer_dir: Path) -> tuple[Path, Path]:
    docs = [f"Document {i} talks about topic {i}. " + "More words here. " * (5 + i) for i in range(12)]
    pq.write_table(
        pa.table({"context": docs, "query": [f"What is topic {i}?" for i in range(12)], "answer": ["It is."] * 12}),
        tmp_path / "qa.parquet",
    )
    return write_pipeline(
        tmp_path,
        qwen_tokenizer_dir,
        f"""seed = 3

[assemble]
samples = ["{tmp_path / "qa.parquet"}"]
target_tokens = [200, 600]
max_tokens = 1024

[pack]
seq_len = 2048
""",
    )


def test_run_all_stages_then_skip_them(setup: tuple[Path, Path]) -> None:
    config, out = setup
    result = runner.invoke(app, ["run", str(config)])
    assert result.exit_code == 0, result.output
    assert "stages: assemble done, pack done, export done" in result.output
    packed = pq.read_table(out / "packed.parquet")
    assembled = pq.read_table(out / "assembled.parquet")
    assert longmagpie.pack_stats(packed).input_tokens == sum(len(x) for x in assembled.column("input_ids").to_pylist())
    assert sorted((out / "dataset" / "data").glob("train-*.parquet"))
    resolved = json.loads((out / "pipeline.resolved.json").read_text())
    assert resolved["pack"]["seq_len"] == 2048 and resolved["assemble"]["long_documents"] == "truncate"
    again = runner.invoke(app, ["run", str(config)])
    assert "stages: assemble skipped, pack skipped, export skipped" in again.output
    # A changed pack setting redoes pack and export, not assembly.
    config.write_text(config.read_text().replace("seq_len = 2048", "seq_len = 4096"))
    third = runner.invoke(app, ["run", str(config)])
    assert "stages: assemble skipped, pack done, export done" in third.output, third.output


def test_interrupted_stage_is_redone(setup: tuple[Path, Path]) -> None:
    config, out = setup
    assert runner.invoke(app, ["run", str(config)]).exit_code == 0
    before = (out / "assembled.parquet").stat().st_mtime_ns
    # The export stage died before its marker: only export runs again.
    (out / "export.done.json").unlink()
    result = runner.invoke(app, ["run", str(config)])
    assert "stages: assemble skipped, pack skipped, export done" in result.output
    assert (out / "assembled.parquet").stat().st_mtime_ns == before


def test_bad_config_messages(tmp_path: Path, setup: tuple[Path, Path]) -> None:
    config, _ = setup
    bad = tmp_path / "bad.toml"
    bad.write_text(config.read_text().replace("seq_len = 2048", "seq_len = 'big'\nsequence = 3"))
    result = runner.invoke(app, ["run", str(bad)])
    assert result.exit_code != 0
    assert "pack.seq_len" in result.output and "pack.sequence" in result.output and "Extra inputs" in result.output
    bad.write_text("output_dir = 'x'\ntokenizer = 't'\n")
    result = runner.invoke(app, ["run", str(bad)])
    assert result.exit_code != 0 and "assemble.samples" in result.output
    bad.write_text("output_dir = [")
    assert "not valid TOML" in runner.invoke(app, ["run", str(bad)]).output
    assert "does not exist" in runner.invoke(app, ["run", str(tmp_path / "none.toml")]).output


def test_no_credential_reaches_the_disk(tmp_path: Path, qwen_tokenizer_dir: Path) -> None:
    """An api_key in [harvest] is used, never written: not in pipeline.resolved.json, not in any file of the run."""
    from support import free_port

    secret = "sk-do-not-write-me-0123456789"
    docs = tmp_path / "docs.parquet"
    pq.write_table(pa.table({"text": ["A document about rivers and their deltas."]}), docs)
    config, out = write_pipeline(
        tmp_path,
        qwen_tokenizer_dir,
        f"""
[harvest]
inputs = ["{docs}"]
model = "served"
tokenizer = "{qwen_tokenizer_dir}"
engine = "openai"
base_url = "http://127.0.0.1:{free_port()}"
api_key = "{secret}"
max_retries = 0
""",
    )
    result = runner.invoke(app, ["run", str(config)])
    assert result.exit_code == 1 and "cannot reach the OpenAI-compatible server" in result.output  # no server
    resolved = json.loads((out / "pipeline.resolved.json").read_text())
    assert resolved["harvest"]["api_key"] == "<redacted>" and resolved["harvest"]["engine"] == "openai"
    written = [p for p in out.rglob("*") if p.is_file()]
    assert written and not [p for p in written if secret.encode() in p.read_bytes()]
    assert secret not in result.output
