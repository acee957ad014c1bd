"""A real-model harvest SIGKILLed in the middle of a shard, then rerun: the same bytes as an uninterrupted run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from support.harvest import files_state, harvest_killed_mid_shard

from longmagpie.harvest import HarvestConfig, harvest, read_harvest

from .conftest import HARVEST, demo_documents, write_documents

KILL_AT_SHARD = 1


def test_sigkilled_real_harvest_resumes_to_the_same_bytes(smol_engine: Any, smollm2_dir: Path, tmp_path: Path) -> None:
    inputs = write_documents(tmp_path / "docs.parquet", demo_documents(2))
    settings = {
        **HARVEST,
        "inputs": [str(inputs)],
        "model": str(smollm2_dir),
        "id_column": "doc_id",
        "shard_rows": 1,
    }
    whole = HarvestConfig(**{**settings, "output_dir": str(tmp_path / "whole")})
    whole_report = harvest(whole, engine=smol_engine)
    assert whole_report.shards_written == 2 and whole_report.rows > 0

    killed_dir = harvest_killed_mid_shard(tmp_path, settings, KILL_AT_SHARD, timeout=600)

    assert sorted(p.name for p in killed_dir.glob("*.done.json")) == ["shard-00000.done.json"]
    before = files_state(killed_dir)
    report = harvest(HarvestConfig(**{**settings, "output_dir": str(killed_dir)}), engine=smol_engine)
    assert (report.shards_skipped, report.shards_written) == (1, 1)
    after = files_state(killed_dir)
    for name in ("shard-00000.parquet", "shard-00000.done.json"):
        assert after[name] == before[name], f"{name} was rewritten"
    assert {k: v[2] for k, v in after.items()} == {k: v[2] for k, v in files_state(tmp_path / "whole").items()}
    assert read_harvest(killed_dir).equals(read_harvest(whole.output_dir))
    assert report.counts == whole_report.counts and report.quality == whole_report.quality
