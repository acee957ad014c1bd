"""The demo with vLLM: SmolLM2 harvests the bundled documents with the default filters, end to end.

It runs in this process on the tier's shared engine (``run_demo(engine=...)``: one engine start for the tier); the
command line around it (``longmagpie demo``, its ``--vllm``/``--documents`` options) is the one the fast tier runs
with ``--no-vllm``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from support.demo import check_outputs

from longmagpie.demo import DATA, DEMO_HARVEST, run_demo

from .conftest import ENGINE_MAX_MODEL_LEN

#: Bundled documents the demo harvests here (``documents=``): a sixth of the corpus, to keep CI short (the
#: 8-document harvest test measures the yield).
DOCUMENTS = 4


def test_demo_harvests_real_questions(smol_engine: Any, smollm2_dir: Path, tmp_path: Path) -> None:
    """Real questions about the bundled documents, printed with their answers and the quality lines, reported."""
    assert ENGINE_MAX_MODEL_LEN >= DEMO_HARVEST["max_model_len"]  # the shared engine holds the demo's prompts
    out = tmp_path / "demo"
    lines: list[str] = []
    result = run_demo(out, use_vllm=True, documents=DOCUMENTS, engine=smol_engine, echo=lines.append)
    printed = "\n".join(lines)
    assert result.harvested_with_vllm and "2/6 harvest: vLLM with SmolLM2-135M-Instruct" in printed
    assert "Q: " in printed and "A: " in printed and "grounding" in printed
    check_outputs(out)
    rows = [json.loads(line) for line in (DATA / "documents.jsonl").read_text().splitlines() if line]
    docs = {r["doc_id"] for r in rows[:DOCUMENTS]}
    harvested = pq.read_table(out / "qa.parquet")
    assert set(harvested.column("doc_id").to_pylist()) <= docs  # the first DOCUMENTS only
    assert len(set(harvested.column("doc_id").to_pylist())) >= len(docs) // 2  # most documents yield a row
    assert all(q.endswith("?") for q in harvested.column("query").to_pylist())
    html = (out / "report.html").read_text()
    first = harvested.column("query")[0].as_py()
    assert first.split("?")[0][:40].replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") in html.replace(
        "&#x27;", "'"
    ).replace("&quot;", '"')
