"""A harvesting process killed with SIGKILL in the middle of a shard, then rerun: nothing lost, nothing twice."""

from __future__ import annotations

from support.harvest import files_state, harvest_killed_mid_shard, make_documents, write_parquet

from longmagpie.harvest import HarvestConfig, harvest, read_harvest

KILL_AT_SHARD = 2


def test_sigkill_mid_run_then_rerun_equals_uninterrupted_run(engine, base_config, tmp_path):
    write_parquet(tmp_path / "in.parquet", make_documents(10))
    settings = {
        **base_config,
        "inputs": [str(tmp_path / "in.parquet")],
        "shard_rows": 2,
        "queries_per_doc": 2,
    }
    # the uninterrupted run, in this process
    whole = HarvestConfig(**{**settings, "output_dir": str(tmp_path / "whole")})
    whole_report = harvest(whole, engine=engine)
    assert whole_report.shards_written == 5

    # the same run in a child process, SIGKILLed after shard 2's query pass
    killed_dir = harvest_killed_mid_shard(tmp_path, settings, KILL_AT_SHARD)

    done = sorted(p.name for p in killed_dir.glob("*.done.json"))
    assert done == ["shard-00000.done.json", "shard-00001.done.json"]
    # a half-written file of a killed write would look like this one: the rerun must ignore and replace it
    (killed_dir / "shard-00002.parquet").write_bytes(b"PAR1 truncated by a kill")
    (killed_dir / ".shard-00002.parquet.k1ll3d.tmp").write_bytes(b"PAR1 half")  # and the temp file of a write
    before = files_state(killed_dir)

    killed = HarvestConfig(**{**settings, "output_dir": str(killed_dir)})
    report = harvest(killed, engine=engine)
    assert (report.shards_skipped, report.shards_written) == (2, 3)
    after = files_state(killed_dir)
    assert not list(killed_dir.glob(".*.tmp"))
    for name in ("shard-00000.parquet", "shard-00000.done.json", "shard-00001.parquet", "shard-00001.done.json"):
        assert after[name] == before[name], f"{name} was rewritten"

    # the union equals the uninterrupted run: same rows, byte for byte, none lost, none duplicated
    assert {k: v[2] for k, v in after.items()} == {k: v[2] for k, v in files_state(tmp_path / "whole").items()}
    a, b = read_harvest(killed_dir), read_harvest(whole.output_dir)
    assert a.equals(b) and a.num_rows == whole_report.rows
    assert len(set(a.column("id").to_pylist())) == a.num_rows
    assert report.counts == whole_report.counts
