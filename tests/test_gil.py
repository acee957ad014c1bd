"""The Rust core runs with the GIL released: Python threads keep running during a long call."""

from __future__ import annotations

import threading
import time

import longmagpie


def longest_stall(work) -> tuple[float, float]:
    """Run ``work`` in a thread; return (its duration, the longest gap between ticks of this thread)."""
    done = threading.Event()
    span = [0.0, 0.0]

    failure: list[BaseException] = []

    def run() -> None:
        span[0] = time.perf_counter()
        try:
            work()
        except BaseException as err:  # re-raised below: a failing call must not leave the loop waiting
            failure.append(err)
        finally:
            span[1] = time.perf_counter()
            done.set()

    thread = threading.Thread(target=run)
    last = time.perf_counter()
    gap = 0.0
    thread.start()
    while not done.is_set():
        now = time.perf_counter()
        gap = max(gap, now - last)
        last = now
        time.sleep(0.001)
    thread.join()
    if failure:
        raise failure[0]
    return span[1] - span[0], gap


def test_pack_and_pmix_release_the_gil() -> None:
    samples = longmagpie.synthetic_samples(40_000_000, mix="short", seed=5)
    longmagpie.pack(samples.slice(0, 10))  # warm up lazy imports
    duration, gap = longest_stall(lambda: longmagpie.pack(samples, num_threads=1))
    # Were the GIL held, this thread would stall for the whole Rust call (most of `duration`).
    assert gap < max(0.05, duration / 3), (duration, gap)
    long = longmagpie.synthetic_samples(30_000_000, mix="long", seed=6)
    duration, gap = longest_stall(lambda: longmagpie.pack_pmix(long, samples, num_threads=1, exhausted="recycle"))
    assert gap < max(0.05, duration / 3), (duration, gap)


def test_assembly_releases_the_gil(qwen_tokenizer_dir) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(qwen_tokenizer_dir)
    docs = [f"Document {i}. " + "Some words and numbers 1234, more words. " * (200 + i % 50) for i in range(300)]
    import pyarrow as pa

    samples = pa.table({"context": docs, "query": ["Q?"] * 300, "answer": ["A."] * 300})
    asm = longmagpie.Assembler(tok, config=longmagpie.AssembleConfig(num_threads=1, max_tokens=32768))
    asm.assemble(samples.slice(0, 2))  # tokenizes the pool (a Rust call too), then a warm call below
    duration, gap = longest_stall(lambda: asm.assemble(samples))
    assert gap < max(0.05, duration / 3), (duration, gap)
