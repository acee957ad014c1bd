"""The ``longmagpie pack`` command: through typer's runner and as a real subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support import make_samples
from typer.testing import CliRunner

import longmagpie
from longmagpie.cli import app

runner = CliRunner()


def test_demo_writes_packed_parquet(tmp_path: Path) -> None:
    out = tmp_path / "demo.parquet"
    result = runner.invoke(app, ["pack", "--demo", "--demo-tokens", "2000000", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "fill" in result.output and str(out) in result.output
    table = pq.read_table(out)
    stats = longmagpie.pack_stats(table)
    assert stats.input_tokens >= 2_000_000
    assert stats.output_tokens == stats.input_tokens
    assert stats.fill_rate > 0.98
    assert max(table.column("length").to_pylist()) <= 65536
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_pack_files_and_refuse_to_overwrite(tmp_path: Path) -> None:
    src = tmp_path / "in"
    src.mkdir()
    pq.write_table(make_samples([5, 9, 3]).append_column("text", [["a", "b", "c"]]), src / "a.parquet")
    pq.write_table(make_samples([7, 2]), src / "b.parquet")
    out = tmp_path / "out.parquet"
    result = runner.invoke(app, ["pack", str(src), "-o", str(out), "--seq-len", "16", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert longmagpie.pack_stats(pq.read_table(out)).input_samples == 5
    before = out.read_bytes()
    result = runner.invoke(app, ["pack", str(src), "-o", str(out), "--seq-len", "16"])
    assert result.exit_code == 1
    assert "exists; pass --overwrite" in result.output
    assert out.read_bytes() == before
    result = runner.invoke(app, ["pack", str(src), "-o", str(out), "--seq-len", "4"])  # too long, no overwrite
    assert result.exit_code == 1


def test_bad_input_keeps_existing_output(tmp_path: Path) -> None:
    src = tmp_path / "in.parquet"
    pq.write_table(make_samples([5, 30]), src)
    out = tmp_path / "out.parquet"
    out.write_bytes(b"earlier result")
    result = runner.invoke(app, ["pack", str(src), "-o", str(out), "--seq-len", "16", "--overwrite"])
    assert result.exit_code == 1
    assert "row 1 has 30 tokens, more than seq_len=16" in result.output
    assert out.read_bytes() == b"earlier result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.parquet", "out.parquet"]


def test_usage_errors(tmp_path: Path) -> None:
    result = runner.invoke(app, ["pack", "-o", str(tmp_path / "x.parquet")])
    assert result.exit_code == 1 and "give INPUTS or --demo" in result.output
    result = runner.invoke(app, ["pack", str(tmp_path / "missing.parquet"), "-o", str(tmp_path / "x.parquet")])
    assert result.exit_code == 1 and "does not exist" in result.output
    result = runner.invoke(app, ["pack", "--demo", "--strategy", "worst", "-o", str(tmp_path / "x.parquet")])
    assert result.exit_code == 1 and "unknown strategy 'worst'" in result.output


def test_console_script_subprocess(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "longmagpie"
    out = tmp_path / "demo.parquet"
    cmd = [str(exe), "pack", "--demo", "--demo-tokens", "500000", "-o", str(out), "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "COLUMNS": "200"}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    assert pq.read_table(out).num_rows > 0
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "exists" in proc.stderr


def test_pmix_command(tmp_path: Path) -> None:
    pq.write_table(make_samples([300, 400, 250, 500]), tmp_path / "long.parquet")
    pq.write_table(make_samples([20] * 200, mask=False), tmp_path / "short.parquet")
    out = tmp_path / "mix.parquet"
    args = ["pmix", "--long", str(tmp_path / "long.parquet"), "--short", str(tmp_path / "short.parquet")]
    result = runner.invoke(app, [*args, "-o", str(out), "--seq-len", "1024", "--fill", "best_fit", "--seed", "3"])
    assert result.exit_code == 0, result.output
    table = pq.read_table(out)
    stats = longmagpie.pmix_stats(table)
    assert stats.long_used == 4 and "fill" in result.output
    assert set(v for row in table.column("kind").to_pylist() for v in row) == {"long", "short"}
    assert longmagpie.pack_metadata(table)["params"]["fill"] == "best_fit"
    result = runner.invoke(app, [*args, "-o", str(tmp_path / "x.parquet"), "--seq-len", "256"])
    assert result.exit_code == 1 and "in the long samples: row 0 has 300 tokens" in result.output
    assert not (tmp_path / "x.parquet").exists()


def test_export_parquet_from_packed_file(tmp_path: Path) -> None:
    packed = tmp_path / "packed.parquet"
    result = runner.invoke(app, ["pack", "--demo", "--demo-tokens", "300000", "-o", str(packed)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "dataset"
    result = runner.invoke(app, ["export", str(packed), "-o", str(out)])
    assert result.exit_code == 0, result.output
    table = pq.read_table(packed)
    assert f"exported {table.num_rows:,} rows" in result.output
    shards = sorted((out / "data").glob("train-*.parquet"))
    assert shards and (out / "README.md").is_file()
    back = pq.read_table(shards[0]) if len(shards) == 1 else None
    if back is not None:
        assert back.column("input_ids").equals(table.column("input_ids"))
    # A non-empty target is refused without --overwrite; a bad format is a clear error.
    again = runner.invoke(app, ["export", str(packed), "-o", str(out)])
    assert again.exit_code != 0 and "overwrite" in again.output
    bad = runner.invoke(app, ["export", str(packed), "-o", str(tmp_path / "x"), "--format", "csv"])
    assert bad.exit_code != 0 and "parquet or mds" in bad.output


def test_hierarchical_and_harvest_bad_input(tmp_path: Path, qwen_tokenizer_dir: Path) -> None:
    bad = runner.invoke(app, ["hierarchical", str(tmp_path), "--model", "m", "--targets", "big"])
    assert bad.exit_code != 0 and "comma-separated integers" in bad.output
    missing = runner.invoke(
        app, ["hierarchical", str(tmp_path / "none"), "--model", str(qwen_tokenizer_dir), "-o", str(tmp_path / "o")]
    )
    assert missing.exit_code != 0 and "none" in missing.output
    missing = runner.invoke(
        app, ["harvest", str(tmp_path / "none"), "--model", str(tmp_path), "-o", str(tmp_path / "h")]
    )
    assert missing.exit_code != 0 and "none" in missing.output
    bad_json = runner.invoke(app, ["harvest", str(tmp_path), "--model", "m", "--engine-kwargs", "{x"])
    assert bad_json.exit_code != 0 and "JSON" in bad_json.output


def test_hierarchical_options_are_checked_before_any_model_loads(tmp_path: Path) -> None:
    bad = runner.invoke(app, ["hierarchical", str(tmp_path), "--model", "m", "--conversations-per-target", "a:b"])
    assert bad.exit_code == 1 and "TARGET:N" in bad.output
    remote = runner.invoke(app, ["hierarchical", str(tmp_path), "--model", "m", "-o", "s3://bucket/h"])
    assert remote.exit_code == 1 and "needs a local path" in remote.output
    unknown = runner.invoke(
        app, ["hierarchical", str(tmp_path), "--model", "m", "--targets", "1000", "--conversations-per-target", "5:1"]
    )
    assert unknown.exit_code == 1 and "names target 5, which is not in targets" in unknown.output


def test_an_exported_dataset_directory_reads_as_its_shards(tmp_path: Path) -> None:
    packed = tmp_path / "packed.parquet"
    assert runner.invoke(app, ["pack", "--demo", "--demo-tokens", "300000", "-o", str(packed), "-q"]).exit_code == 0
    assert runner.invoke(app, ["export", str(packed), "-o", str(tmp_path / "ds"), "-q"]).exit_code == 0
    (tmp_path / "ds" / ".stale.stage").mkdir()  # a hidden leftover is not an input
    pq.write_table(pq.read_table(packed).slice(0, 1), tmp_path / "ds" / ".stale.stage" / "x.parquet")
    # the card (README.md) and hidden files are not Parquet inputs: the dataset re-exports as it is
    result = runner.invoke(app, ["export", str(tmp_path / "ds"), "-o", str(tmp_path / "ds2"), "-q"])
    assert result.exit_code == 0, result.output
    assert pq.read_table(tmp_path / "ds2" / "data").equals(pq.read_table(packed))
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(app, ["pack", str(empty), "-o", str(tmp_path / "x.parquet")])
    assert result.exit_code == 1 and "no Parquet files (*.parquet) under" in result.output


@pytest.mark.parametrize(
    ("ids", "kind"), [(pa.array(["1 2 3", "4 5"]), "string"), (pa.array([[1.0, 2.0], [3.0]]), "float")]
)
def test_pack_names_a_wrong_input_ids_type(tmp_path: Path, ids: pa.Array, kind: str) -> None:
    """Strings and floats in input_ids get the same named type error (the read progress bar does not trip first)."""
    src = tmp_path / f"{kind}.parquet"
    pq.write_table(pa.table({"input_ids": ids}), src)
    result = runner.invoke(app, ["pack", str(src), "-o", str(tmp_path / "out.parquet")])
    assert result.exit_code == 1, result.output
    assert "input_ids" in result.output and "Traceback" not in result.output
    assert "list_value_length" not in result.output
    assert not (tmp_path / "out.parquet").exists()


def test_harvest_and_hierarchical_settings_from_a_config_file(tmp_path: Path) -> None:
    """--config gives every config field; an option on the command line wins; unknown keys are named."""
    docs = tmp_path / "missing-docs"
    bad = tmp_path / "bad.toml"
    bad.write_text('question_mark = "sometimes"\nmin_query_chars = 3\n')
    result = runner.invoke(app, ["harvest", str(docs), "--model", "m", "--config", str(bad)])
    assert result.exit_code == 1 and "question_mark='sometimes'" in result.output  # the file is read
    result = runner.invoke(app, ["harvest", str(docs), "--model", "m", "--config", str(bad), "--question-mark", "last"])
    assert result.exit_code == 1 and "missing-docs" in result.output  # the command line won: on to the inputs

    pipeline_toml = tmp_path / "pipeline.toml"  # a pipeline.toml's [harvest] table, inputs and model in it
    pipeline_toml.write_text(f'[harvest]\ninputs = ["{docs}"]\nmodel = "m"\nanswer_candidates = 0\n')
    result = runner.invoke(app, ["harvest", "--config", str(pipeline_toml)])
    assert result.exit_code == 1 and "answer_candidates must be at least 1" in result.output

    unknown = tmp_path / "unknown.json"
    unknown.write_text('{"inputs": ["x"], "model": "m", "temperature": 0.5}')
    result = runner.invoke(app, ["harvest", "--config", str(unknown)])
    assert result.exit_code == 1 and "unknown setting(s) temperature" in result.output
    assert "query_temperature" in result.output  # what it does take
    result = runner.invoke(app, ["hierarchical", "--config", str(unknown), "-o", str(tmp_path / "h")])
    assert result.exit_code == 1 and "unknown setting" not in result.output  # HierarchicalConfig has temperature

    hier = tmp_path / "hier.toml"
    hier.write_text(f'inputs = ["{docs}"]\nmodel = "m"\ntargets = [1000]\nlocal_qas = -1\n')
    result = runner.invoke(app, ["hierarchical", "--config", str(hier), "-o", str(tmp_path / "h2")])
    assert result.exit_code == 1 and "local_qas must be >= 0" in result.output
    missing = runner.invoke(app, ["harvest", "--model", "m"])
    assert missing.exit_code == 1 and "give INPUTS" in missing.output


def test_pack_plan_only_then_from_plan_gives_packs_file(tmp_path: Path) -> None:
    src = tmp_path / "samples.parquet"
    pq.write_table(make_samples([5, 900, 30, 7, 400], labels=True), src)
    options = ["--seq-len", "512", "--overflow", "split", "--strategy", "ffd"]
    plan, rows, direct = tmp_path / "plan.parquet", tmp_path / "rows.parquet", tmp_path / "direct.parquet"
    result = runner.invoke(app, ["pack", str(src), "-o", str(plan), "--plan-only", *options])
    assert result.exit_code == 0, result.output
    assert "planned" in result.output and pq.read_schema(plan).names == ["sample_index", "token_offset", "seq_lengths"]
    assert longmagpie.pack_stats(pq.read_table(plan)).split_samples == 1
    result = runner.invoke(app, ["pack", str(src), "-o", str(rows), "--from-plan", str(plan)])
    assert result.exit_code == 0, result.output
    assert "from the plan" in result.output
    assert runner.invoke(app, ["pack", str(src), "-o", str(direct), *options]).exit_code == 0
    assert pq.read_table(rows).equals(pq.read_table(direct), check_metadata=True)
    result = runner.invoke(app, ["pack", str(src), "-o", str(tmp_path / "x"), "--plan-only", "--from-plan", str(plan)])
    assert result.exit_code != 0 and "give one of them" in result.output
    other = tmp_path / "other.parquet"
    pq.write_table(make_samples([5, 900]), other)
    result = runner.invoke(app, ["pack", str(other), "-o", str(tmp_path / "y.parquet"), "--from-plan", str(plan)])
    assert result.exit_code != 0 and "the plan was made for 5 samples" in result.output
