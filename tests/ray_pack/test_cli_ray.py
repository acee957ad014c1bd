"""`longmagpie pack --engine ray` and `longmagpie pmix --engine ray`: the CLI switch onto a local Ray cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
from support.ray_data import check_rows, input_documents, packed_documents, samples, write_shards
from typer.testing import CliRunner

from longmagpie.cli import app

runner = CliRunner()


def test_pack_and_pmix_on_ray_from_the_command_line(ray_cluster: Any, tmp_path: Path) -> None:
    table = samples(seed=4, n=600, lo=50, hi=3000)
    write_shards(tmp_path / "in", table, files=3, row_group_rows=50)
    out = tmp_path / "packed"
    args = ["pack", str(tmp_path / "in"), "-o", str(out), "--seq-len", "4096", "--engine", "ray", "--threads", "2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "packed on Ray" in result.output
    packed = ds.dataset(str(out / "data"), format="parquet").to_table()
    check_rows(packed, 4096)
    assert packed_documents(packed) == input_documents(table)
    again = runner.invoke(app, args)
    assert again.exit_code != 0 and "overwrite" in again.output
    write_shards(tmp_path / "short", samples(seed=5, n=400, lo=20, hi=300, offset=10_000), files=2, row_group_rows=40)
    mixed = tmp_path / "mixed"
    result = runner.invoke(
        app,
        [
            "pmix",
            "--long",
            str(tmp_path / "in"),
            "--short",
            str(tmp_path / "short"),
            "-o",
            str(mixed),
            "--seq-len",
            "4096",
            "--engine",
            "ray",
            "--threads",
            "2",
            "--exhausted",
            "short_only",
        ],
    )
    assert result.exit_code == 0, result.output
    check_rows(ds.dataset(str(mixed / "data"), format="parquet").to_table(), 4096)
    bad = runner.invoke(app, ["pack", str(tmp_path / "in"), "-o", str(tmp_path / "x"), "--engine", "spark"])
    assert bad.exit_code != 0 and "local or ray" in bad.output


def test_pipeline_packs_on_ray(ray_cluster: Any, tmp_path: Path, qwen_tokenizer_dir: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    docs = [f"Document {i} on topic {i}. " + "Words. " * (20 + 3 * i) for i in range(16)]
    pq.write_table(pa.table({"context": docs, "query": ["Q?"] * 16, "answer": ["A."] * 16}), tmp_path / "qa.parquet")
    config = tmp_path / "pipeline.toml"
    config.write_text(
        f'output_dir = "{tmp_path / "run"}"\ntokenizer = "{qwen_tokenizer_dir}"\nnum_threads = 2\n'
        f'[assemble]\nsamples = ["{tmp_path / "qa.parquet"}"]\ntarget_tokens = [100, 400]\nmax_tokens = 1024\n'
        '[pack]\nengine = "ray"\nseq_len = 2048\n'
    )
    result = runner.invoke(app, ["run", str(config)])
    assert result.exit_code == 0, result.output
    assembled = pq.read_table(tmp_path / "run" / "assembled.parquet")
    exported = ds.dataset(str(tmp_path / "run" / "dataset" / "data"), format="parquet").to_table()
    check_rows(exported, 2048)
    assert packed_documents(exported) == input_documents(assembled.select(["input_ids"]))
