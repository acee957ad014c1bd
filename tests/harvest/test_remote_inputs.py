"""A harvest whose documents are read through a URI (fsspec's memory://) writes the same shards as from local files."""

from __future__ import annotations

import uuid

import pytest
from support.harvest import make_documents, write_jsonl, write_parquet

from longmagpie.harvest import HarvestConfig, harvest, read_harvest


def test_memory_uri_inputs_harvest_like_local(engine, base_config, tmp_path):
    fsspec = pytest.importorskip("fsspec")
    write_parquet(tmp_path / "in" / "a.parquet", make_documents(3))
    write_jsonl(tmp_path / "in" / "b.jsonl", [{"text": t} for t in make_documents(2, seed=4)])
    uri = f"memory://lm-{uuid.uuid4().hex}/in"
    mem = fsspec.filesystem("memory")
    for name in ("a.parquet", "b.jsonl"):
        mem.pipe(f"{uri}/{name}", (tmp_path / "in" / name).read_bytes())
    local = HarvestConfig(inputs=(str(tmp_path / "in"),), shard_rows=2, **base_config)
    remote = HarvestConfig(inputs=(uri,), shard_rows=2, **{**base_config, "output_dir": str(tmp_path / "out-remote")})
    a, b = harvest(local, engine=engine), harvest(remote, engine=engine)
    assert (b.shards_total, b.rows, b.counts) == (a.shards_total, a.rows, a.counts) and a.rows > 0
    shards = sorted(p.name for p in (tmp_path / "out").glob("shard-*"))
    assert shards == sorted(p.name for p in (tmp_path / "out-remote").glob("shard-*"))
    for name in shards:  # same rows, byte for byte (source_file is the file name either way)
        if name.endswith(".parquet"):  # (the done-markers record the run's fingerprint, which names the inputs)
            assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "out-remote" / name).read_bytes()
    assert {r["source_file"] for r in read_harvest(remote.output_dir).to_pylist()} == {"a.parquet", "b.jsonl"}
