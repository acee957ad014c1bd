"""The command line on URIs (a real S3 server) and JSON Lines: the same bytes as on local Parquet files."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from support import make_samples, rng_lengths, tree
from typer.testing import CliRunner

from longmagpie.cli import app

runner = CliRunner()


def ok(args: list[str]) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.output


def test_pack_and_export_from_s3_to_s3_equal_local(s3, tmp_path: Path) -> None:
    samples = make_samples(rng_lengths(5, 120, 1, 900), source=True)
    pq.write_table(samples, tmp_path / "in.parquet")
    bucket = s3.bucket()
    s3.put(f"{bucket}/in/part-0.parquet", (tmp_path / "in.parquet").read_bytes())

    ok(["pack", str(tmp_path / "in.parquet"), "-o", str(tmp_path / "packed.parquet"), "--seq-len", "1024", "-q"])
    out = ok(["pack", f"s3://{bucket}/in/", "-o", f"s3://{bucket}/packed.parquet", "--seq-len", "1024"])
    assert f"s3://{bucket}/packed.parquet" in out
    remote = s3.objects(bucket)
    assert remote["packed.parquet"] == (tmp_path / "packed.parquet").read_bytes()
    assert not [k for k in remote if k.endswith(".tmp")]

    again = runner.invoke(app, ["pack", f"s3://{bucket}/in/", "-o", f"s3://{bucket}/packed.parquet"])
    assert again.exit_code == 1 and "exists; pass --overwrite" in again.output

    ok(["export", str(tmp_path / "packed.parquet"), "-o", str(tmp_path / "dataset"), "-q"])
    ok(["export", f"s3://{bucket}/packed.parquet", "-o", f"s3://{bucket}/dataset", "-q"])
    assert s3.objects(f"{bucket}/dataset") == tree(tmp_path / "dataset")


def test_local_only_outputs_refuse_uris(s3, tmp_path: Path) -> None:
    bucket = s3.bucket()
    pq.write_table(pa.table({"text": ["a document"]}), tmp_path / "docs.parquet")
    result = runner.invoke(app, ["harvest", str(tmp_path / "docs.parquet"), "--model", "m", "-o", f"s3://{bucket}/h"])
    assert result.exit_code == 1 and "needs a local path" in result.output
    pq.write_table(make_samples([5, 7]), tmp_path / "in.parquet")
    result = runner.invoke(
        app, ["pack", str(tmp_path / "in.parquet"), "--engine", "ray", "-o", f"s3://{bucket}/p", "--seq-len", "16"]
    )
    assert result.exit_code == 1 and "local path" in result.output


def test_jsonl_in_and_out(tmp_path: Path) -> None:
    samples = make_samples(rng_lengths(2, 40, 1, 300), source=True)
    pq.write_table(samples, tmp_path / "in.parquet")
    with open(tmp_path / "in.jsonl", "w") as fh:
        for row in samples.to_pylist():
            fh.write(json.dumps(row) + "\n")
    ok(["pack", str(tmp_path / "in.parquet"), "-o", str(tmp_path / "a.parquet"), "--seq-len", "512", "-q"])
    ok(["pack", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "b.parquet"), "--seq-len", "512", "-q"])
    a, b = pq.read_table(tmp_path / "a.parquet"), pq.read_table(tmp_path / "b.parquet")
    for column in ("input_ids", "seq_lengths", "assistant_masks", "source"):
        assert a.column(column).to_pylist() == b.column(column).to_pylist(), column
    ok(["pack", str(tmp_path / "in.jsonl"), "-o", str(tmp_path / "c.jsonl"), "--seq-len", "512", "-q"])
    rows = [json.loads(line) for line in (tmp_path / "c.jsonl").read_text().splitlines()]
    assert [r["input_ids"] for r in rows] == a.column("input_ids").to_pylist()
    assert [r["seq_lengths"] for r in rows] == a.column("seq_lengths").to_pylist()

    (tmp_path / "bad.jsonl").write_text('{"input_ids": [1, 2]}\nnot json\n')
    bad = runner.invoke(app, ["pack", str(tmp_path / "bad.jsonl"), "-o", str(tmp_path / "d.parquet")])
    assert bad.exit_code == 1 and "bad.jsonl" in bad.output and "JSON Lines" in bad.output
    assert not (tmp_path / "d.parquet").exists()
