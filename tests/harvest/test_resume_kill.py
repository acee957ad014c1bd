"""A harvesting process killed with SIGKILL in the middle of a shard, then rerun: nothing lost, nothing twice."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import longmagpie
from longmagpie.harvest import HarvestConfig, harvest, read_harvest

from .documents import make_documents, write_parquet

KILL_AT_SHARD = 2

CHILD = textwrap.dedent(
    """
    import json, pathlib, sys, time
    from longmagpie.harvest import HarvestConfig, harvest

    settings = json.loads(pathlib.Path(sys.argv[1]).read_text())
    flag = pathlib.Path(sys.argv[2])
    kill_at = int(sys.argv[3])

    def on_event(event):
        # the query pass of shard `kill_at` is done, its answers are not: tell the parent, wait to be killed
        if event.kind == "queries_done" and event.shard == kill_at:
            flag.write_text("mid-shard")
            time.sleep(600)

    if __name__ == "__main__":
        harvest(HarvestConfig(**settings), on_event=on_event)
    """
)


def files_state(out: Path) -> dict[str, tuple[int, int, bytes]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(out.glob("shard-*"))}


def harvest_killed_mid_shard(tmp_path: Path, settings: dict, kill_at: int, timeout: float = 300) -> Path:
    """Run the harvest of ``settings`` in a child process and SIGKILL it after shard ``kill_at``'s query pass.

    Returns the killed run's output directory (``tmp_path / "killed"``).
    """
    killed_dir = tmp_path / "killed"
    (tmp_path / "settings.json").write_text(json.dumps({**settings, "output_dir": str(killed_dir)}))
    (tmp_path / "child.py").write_text(CHILD)
    flag = tmp_path / "flag"
    env = {
        **os.environ,
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
        "PYTHONPATH": os.pathsep.join([str(Path(longmagpie.__file__).parent.parent), os.environ.get("PYTHONPATH", "")]),
    }
    child = subprocess.Popen(
        [sys.executable, str(tmp_path / "child.py"), str(tmp_path / "settings.json"), str(flag), str(kill_at)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + timeout
        while not flag.exists():
            assert child.poll() is None, child.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, f"the child never reached the middle of shard {kill_at}"
            time.sleep(0.1)
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=60) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
        child.stderr.close()
    return killed_dir


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
