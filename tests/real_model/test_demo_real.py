"""`longmagpie demo` with vLLM: SmolLM2 harvests the bundled documents with the default filters, end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
from test_demo import check_outputs

from longmagpie.demo import DATA


def test_demo_harvests_real_questions(smollm2_dir: Path, tmp_path: Path) -> None:
    """The newcomer's command: real questions about the bundled documents, printed, and in the report."""
    out = tmp_path / "demo"
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}  # LONGMAGPIE_CACHE: the model built once
    proc = subprocess.run(
        [sys.executable, "-m", "longmagpie.cli", "demo", "-o", str(out), "--vllm"],
        capture_output=True,
        text=True,
        timeout=1500,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "2/6 harvest: vLLM with SmolLM2-135M-Instruct" in proc.stdout
    assert "Q: " in proc.stdout and "A: " in proc.stdout and "grounding" in proc.stdout
    check_outputs(out)
    docs = {json.loads(line)["doc_id"] for line in (DATA / "documents.jsonl").read_text().splitlines() if line}
    harvested = pq.read_table(out / "qa.parquet")
    assert set(harvested.column("doc_id").to_pylist()) <= docs
    assert len(set(harvested.column("doc_id").to_pylist())) >= len(docs) // 2  # most documents yield a row
    assert all(q.endswith("?") for q in harvested.column("query").to_pylist())
    html = (out / "report.html").read_text()
    first = harvested.column("query")[0].as_py()
    assert first.split("?")[0][:40].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") in html.replace(
        "&#x27;", "'"
    ).replace("&quot;", '"')
