"""Assembly benchmark: the Rust assembler vs the straightforward Python route, same inputs, one run.

Python route (what upstream does, with HF fast tokenizers): for each sample build the text (documents joined by
the separator, then the query), render with ``apply_chat_template(messages, tokenize=True)``.
Rust route: ``longmagpie.Assembler``: tokenize each distinct document once (parallel), then concatenate ids
around the template spans, re-tokenizing only small windows at joins. The pool is the gold documents themselves
(LongMagpie's multi-doc step draws distractors from a corpus; here the same pool), so each document appears in
many samples: the output/pool token ratio ("reuse") is printed, since the gain grows with it.

The Python route is timed on the first ``--python-samples`` samples (same messages as the Rust output) and
compared in tokens/s; its ids are compared with Rust's for the parity rate.

Usage: python benches/bench_assemble.py [--docs 600] [--threads 2] [--python-samples 40]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

import longmagpie
from longmagpie.testing.tokenizers import build_qwen25_tokenizer


def synthetic_documents(n: int, seed: int = 0) -> list[str]:
    """Pseudo-English documents of ~500-4000 tokens: words, numbers, punctuation, paragraphs."""
    rng = np.random.default_rng(seed)
    syll = ["ka", "lo", "mi", "ter", "an", "tion", "re", "pro", "ber", "sta", "ing", "ed", "the", "qu", "ex"]
    vocab = ["".join(rng.choice(syll, size=rng.integers(1, 4))) for _ in range(3000)]
    vocab += ["the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "with", "was", "on"] * 40
    docs = []
    for _ in range(n):
        words = rng.choice(vocab, size=int(rng.integers(400, 3000)))
        out, para = [], []
        for i, w in enumerate(words):
            if rng.random() < 0.03:
                w = str(int(rng.integers(0, 10_000)))
            para.append(w)
            if rng.random() < 0.07:
                para[-1] += rng.choice([".", ",", ";", ":", "?", "!"])
            if rng.random() < 0.01 or i == len(words) - 1:
                out.append(" ".join(para).capitalize())
                para = []
        docs.append("\n\n".join(out))
    return docs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=600)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--python-samples", type=int, default=40)
    ap.add_argument("--max-tokens", type=int, default=65536)
    args = ap.parse_args()

    from transformers import AutoTokenizer

    tok_dir = build_qwen25_tokenizer(Path(tempfile.gettempdir()) / "longmagpie-bench" / "qwen25-tokenizer")
    tok = AutoTokenizer.from_pretrained(tok_dir)
    docs = synthetic_documents(args.docs)
    samples = pa.table(
        {
            "context": docs,
            "query": [f"What does document {i} say about its topic?" for i in range(len(docs))],
            "answer": [f"Document {i} says several things, notably this answer." for i in range(len(docs))],
        }
    )
    config = longmagpie.AssembleConfig(
        max_tokens=args.max_tokens, target_tokens=(args.max_tokens // 2, args.max_tokens), num_threads=args.threads
    )

    # Rust route, timed end to end (template spans, pool tokenization, assembly).
    t0 = time.perf_counter()
    asm = longmagpie.Assembler(tok, config=config)
    out = asm.assemble(samples)
    rust_s = time.perf_counter() - t0
    stats = longmagpie.pack_metadata(out)["stats"]
    out_tokens = stats["output_tokens"]
    pool_tokens = sum(asm._core.document_tokens())
    t1 = time.perf_counter()
    asm.assemble(samples)
    rust_warm_s = time.perf_counter() - t1

    # Same samples as text (messages) for the Python route.
    with_text = longmagpie.Assembler(tok, config=config, messages=True).assemble(samples)
    k = min(args.python_samples, with_text.num_rows)
    rows = with_text.slice(0, k).select(["input_ids", "messages"]).to_pylist()
    t2 = time.perf_counter()
    py_ids = []
    for row in rows:
        msgs = row["messages"]
        py_ids.append(tok.apply_chat_template(msgs, tokenize=True, return_dict=True)["input_ids"])
    py_s = time.perf_counter() - t2
    py_tokens = sum(len(x) for x in py_ids)
    parity = sum(list(a) == r["input_ids"] for a, r in zip(py_ids, rows, strict=True))

    rust_rate = out_tokens / rust_s
    py_rate = py_tokens / py_s
    print(
        f"samples {out.num_rows}, output tokens {out_tokens:,} (mean {out_tokens / out.num_rows:,.0f}), "
        f"pool {len(docs)} documents / {pool_tokens:,} tokens, reuse {out_tokens / pool_tokens:.1f}x, "
        f"{args.threads} threads"
    )
    print(f"rust assembler      {rust_s:7.2f} s  {rust_rate / 1e6:8.2f} M tok/s  (incl. pool tokenization)")
    print(f"rust, pool reused   {rust_warm_s:7.2f} s  {out_tokens / rust_warm_s / 1e6:8.2f} M tok/s  (second call)")
    print(f"python route        {py_s:7.2f} s  {py_rate / 1e6:8.2f} M tok/s  ({k} samples, {py_tokens:,} tokens)")
    print(
        f"speed-up            {rust_rate / py_rate:7.1f}x end to end, {out_tokens / rust_warm_s / py_rate:.1f}x "
        "with the pool already tokenized"
    )
    print(
        f"parity              {parity}/{k} samples identical to apply_chat_template "
        f"({100 * parity / k:.1f} %); windows {stats['windows']:,}, reused tokens "
        f"{100 * stats['reused_tokens'] / out_tokens:.2f} %"
    )


if __name__ == "__main__":
    main()
