"""Harvest inputs (Parquet/JSONL documents) read from s3:// equal the same files read locally."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support import tree

from longmagpie.generate.sources import check_columns, plan_shards, read_shard, resolve_inputs
from longmagpie.harvest import HarvestConfig, harvest


def _documents(tmp_path):
    root = tmp_path / "docs"
    (root / "sub").mkdir(parents=True)
    texts = [f"Document {i}: " + "word " * (i + 1) for i in range(7)] + ["", None]
    pq.write_table(pa.table({"text": texts, "id": [f"p{i}" for i in range(9)]}), root / "sub" / "a.parquet")
    lines = [json.dumps({"text": f"line {i} text"}) for i in range(5)]
    lines.insert(2, "")  # blank lines are not rows
    (root / "b.jsonl").write_text("\n".join(lines) + "\n")
    (root / "notes.txt").write_text("ignored")
    return root


def _upload(s3, root, bucket) -> str:
    for rel, data in tree(root).items():
        s3.put(f"{bucket}/docs/{rel}", data)
    return f"s3://{bucket}/docs"


def test_s3_inputs_read_like_local(s3, tmp_path):
    root = _documents(tmp_path)
    uri = _upload(s3, root, s3.bucket())
    local, remote = resolve_inputs([str(root)]), resolve_inputs([uri])
    assert [(f.name, f.format, f.rows) for f in remote] == [(f.name, f.format, f.rows) for f in local]
    assert [f.path for f in remote] == [f"{uri}/b.jsonl", f"{uri}/sub/a.parquet"]  # URIs kept for the manifest
    assert [(f.name, f.rows) for f in remote] == [("b.jsonl", 5), ("a.parquet", 9)]
    check_columns(remote, "text", None)  # JSONL files are checked row by row as they are read
    for sl, sr in zip(plan_shards(local, 3), plan_shards(remote, 3), strict=True):
        assert read_shard(sr, "text", None) == read_shard(sl, "text", None)
    one = resolve_inputs([f"{uri}/sub/a.parquet"])
    assert one[0].rows == 9 and read_shard(plan_shards(one, 100)[0], "text", "id")[0].doc_id == "p0"


def test_s3_input_errors_name_the_uri(s3, tmp_path):
    bucket = s3.bucket()
    s3.put(f"{bucket}/x/a.parquet", b"not parquet")
    s3.put(f"{bucket}/y/a.csv", b"a,b")
    with pytest.raises(ValueError, match=rf"cannot read s3://{bucket}/x/a.parquet as Parquet"):
        resolve_inputs([f"s3://{bucket}/x"])
    with pytest.raises(FileNotFoundError, match=rf"input directory s3://{bucket}/y holds no .parquet"):
        resolve_inputs([f"s3://{bucket}/y"])
    with pytest.raises(FileNotFoundError, match=rf"input s3://{bucket}/nothing does not exist"):
        resolve_inputs([f"s3://{bucket}/nothing"])
    root = _documents(tmp_path)
    files = resolve_inputs([_upload(s3, root, bucket) + "/sub"])
    with pytest.raises(ValueError, match=r"s3://.*/sub/a.parquet has no column 'body'"):
        check_columns(files, "body", None)


def test_harvest_output_must_be_local(tmp_path):
    config = HarvestConfig(inputs=(str(tmp_path),), output_dir="s3://bucket/harvest", model=str(tmp_path))
    with pytest.raises(ValueError, match=r"harvest output directory .* needs a local path, got s3://bucket/harvest"):
        harvest(config)
