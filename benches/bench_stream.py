#!/usr/bin/env python3
r"""Streaming benchmark: bounded memory of ``longmagpie.pack_stream`` (and ``pack_pmix_stream``) over >= 2e9 tokens.

Part 1 (bounded memory). Synthetic tokenized samples are generated ON THE FLY by a seeded generator of pyarrow
RecordBatches (``--batch-tokens`` per batch, default 4 M; it never holds more than the batch it yields), fed to
the streaming packer, and the output batches are consumed (rows and tokens counted, then dropped). Each mode
runs in its own subprocess; peak RSS is that child's ``ru_maxrss`` (target < 2 GiB, printed, never asserted).

    gen_only     the generator alone, consumed and dropped (baseline: generation time and RSS)
    stream       longmagpie.pack_stream(gen, seq_len, strategy, overflow, window_tokens)
    pmix_stream  longmagpie.pack_pmix_stream(long_gen, short_gen, p_long=0.4, ..., window_tokens) when the package
                 has it (else "skipped"); long pool ``--long-pool``, short pool ``--short-frac`` of the tokens

Tokens/s: "end-to-end" = output tokens / wall time of the loop; "packing" = output tokens / (wall time - time
spent inside the generator). Fill rate = output tokens / (rows x seq_len), from ``.stats`` after exhaustion.

Part 2 (window cost). On ``--window-data-tokens`` (default 200e6; 50e6 with --quick) held in memory:
``pack`` (one global window) vs ``pack_stream`` with window_tokens 2**25, 2**27 (and ``--window-tokens``);
the fill rates and the difference in percentage points. Same for ``pack_pmix`` vs ``pack_pmix_stream`` when
the latter exists.

Ratios (issue #20, target >= 0.8, printed, never asserted): each streaming packer's packing rate (part 1, generator
excluded) over the rate of its in-memory call in part 2 (same generator and mix; the in-memory input is
``--window-data-tokens``, what fits in RAM beside its output). ``--pmix-window-tokens`` (default 2**26, the
function's default) is ``pack_pmix_stream``'s window per pool in part 1.

Examples
--------
    P=/work/devenv/bin/python
    $P benches/bench_stream.py --quick                       # 50e6 tokens, window 2**24: smoke run
    $P benches/bench_stream.py                               # 2e9 tokens, window 2**27
    $P benches/bench_stream.py --tokens 4e9 --window-tokens 2**26 --modes stream

"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from benchkit import environment, peak_rss_mib, rss_mib, run_child

SEQ_LEN = 65536
DEFAULT_TOKENS = 2_000_000_000
QUICK_TOKENS = 50_000_000
DEFAULT_WINDOW_DATA = 200_000_000
QUICK_WINDOW_DATA = 50_000_000
STUDY_WINDOWS = (2**25, 2**27)
VOCAB = 151_643  # Qwen2.5 vocabulary size
RSS_TARGET_MIB = 2048
#: Streaming packing rate (generator excluded) over the in-memory call's rate on the window-study data (issue #20).
STREAM_RATIO_TARGET = 0.8
ALL_MODES = ("gen_only", "stream", "pmix_stream")
P_LONG = 0.4  # upstream --choose_rate


# ----------------------------------------------------------------------------- on-the-fly data


def draw_lengths(rng: np.random.Generator, kind: str, tokens: int) -> np.ndarray:
    """Sample lengths summing to at least ``tokens`` (>= 1 sample).

    ``long``/``short``: the project's recipes (``longmagpie.testing.synthetic.sample_lengths``); ``long8k``:
    log-uniform 8,000-60,000 (the long pool of p-mix: multi-document samples only).
    """
    if kind in ("long", "short"):
        from longmagpie.testing.synthetic import sample_lengths

        return sample_lengths(max(tokens, 1), kind, int(rng.integers(2**62)))  # type: ignore[arg-type]
    if kind != "long8k":
        raise ValueError(f"unknown kind {kind!r}")
    n = max(4, tokens // 20_000)
    lens = np.exp(rng.uniform(np.log(8000), np.log(60000), n)).astype(np.int64)
    while lens.sum() < tokens:
        lens = np.concatenate([lens, np.exp(rng.uniform(np.log(8000), np.log(60000), n)).astype(np.int64)])
    k = int(np.searchsorted(np.cumsum(lens), tokens, side="left")) + 1
    return lens[:k]


def answer_masks(lengths: np.ndarray) -> np.ndarray:
    """Flat int8 masks, the last quarter of each sample set (as ``synthetic_samples``), no int64 temporaries."""
    ends = np.cumsum(lengths)
    n = int(ends[-1])
    step = np.zeros(n + 1, dtype=np.int8)
    step[ends - lengths // 4] = 1
    step[ends] = -1
    return np.cumsum(step[:n], dtype=np.int8)


SCHEMA = pa.schema([("input_ids", pa.list_(pa.int32())), ("assistant_masks", pa.list_(pa.int8()))])


def synthetic_batches(total_tokens: int, kind: str, seed: int, batch_tokens: int) -> Iterator[pa.RecordBatch]:
    """Yield seeded record batches (``input_ids`` int32, ``assistant_masks`` int8) until ``total_tokens``.

    Each batch is built from scratch and only referenced by the consumer once yielded: the generator itself
    keeps nothing between batches but its RNG.
    """
    rng = np.random.default_rng(seed)
    produced = 0
    while produced < total_tokens:
        lens = draw_lengths(rng, kind, min(batch_tokens, total_tokens - produced))
        offsets = np.zeros(len(lens) + 1, dtype=np.int32)
        np.cumsum(lens, out=offsets[1:])
        n = int(offsets[-1])
        ids = rng.integers(0, VOCAB, size=n, dtype=np.int32)
        off = pa.array(offsets)
        batch = pa.record_batch(
            [pa.ListArray.from_arrays(off, pa.array(ids)), pa.ListArray.from_arrays(off, pa.array(answer_masks(lens)))],
            schema=SCHEMA,
        )
        del ids, off, offsets
        produced += n
        yield batch


class TimedSource:
    """Wrap a batch iterable; count the seconds spent producing batches, the batches, rows and tokens."""

    def __init__(self, batches: Iterable[pa.RecordBatch]) -> None:
        """Wrap ``batches`` (consumed once)."""
        self._it = iter(batches)
        self.seconds = 0.0
        self.batches = 0
        self.rows = 0
        self.tokens = 0

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        """Yield the wrapped batches, timing each ``next``."""
        while True:
            t0 = time.perf_counter()
            try:
                batch = next(self._it)
            except StopIteration:
                self.seconds += time.perf_counter() - t0
                return
            self.seconds += time.perf_counter() - t0
            self.batches += 1
            self.rows += batch.num_rows
            self.tokens += len(batch.column(0).values)
            yield batch
            del batch


def consume(batches: Iterable[pa.RecordBatch]) -> tuple[int, int, int]:
    """Count rows, tokens and batches of a packed stream, dropping each batch."""
    rows = tokens = n = 0
    for batch in batches:
        rows += batch.num_rows
        if "length" in batch.schema.names:
            tokens += int(pc.sum(batch.column("length")).as_py() or 0)
        else:
            tokens += len(batch.column("input_ids").values)
        n += 1
        del batch
    return rows, tokens, n


def split_tokens(total: int, short_frac: float) -> tuple[int, int]:
    """(long, short) token budgets of the p-mix pools."""
    short = int(total * short_frac)
    return total - short, short


def pmix_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """``pack_pmix``/``pack_pmix_stream`` keyword arguments (upstream p-mix settings)."""
    return {
        "seq_len": args.seq_len,
        "p_long": P_LONG,
        "n_short_prefix": 1,
        "seed": args.seed,
        "fill": args.fill,
        "overflow": "error",
        "exhausted": args.exhausted,
    }


def timed_stream(make: Callable[[], Any], sources: list[TimedSource]) -> tuple[Any, dict[str, Any]]:
    """Open a packed stream with ``make`` and drain it, timed; return its stats and the fields of both stream modes.

    ``sources`` are the ``TimedSource`` inputs of the stream: their generation time and tokens are summed.
    """
    t0 = time.perf_counter()
    stream = make()
    rows, out_tokens, nb = consume(stream)
    wall = time.perf_counter() - t0
    st = stream.stats
    fields = {
        "wall_s": wall,
        "gen_s": sum(src.seconds for src in sources),
        "input_tokens": sum(src.tokens for src in sources),
        "rows": st.rows,
        "output_tokens": st.output_tokens,
        "fill_rate": st.fill_rate,
        "windows": getattr(stream, "windows", None),
        "output_batches": nb,
        "checks": {
            "consumed_rows_eq_stats": rows == st.rows,
            "consumed_tokens_eq_stats": out_tokens == st.output_tokens,
        },
    }
    return st, fields


def run_mode(args: argparse.Namespace) -> dict[str, Any]:
    """One bounded-memory mode in this process."""
    import longmagpie

    tokens = int(args.tokens)
    mode = args.child
    rss_start = rss_mib()
    res: dict[str, Any] = {"mode": mode, "rss_after_imports_MiB": rss_start}
    if mode == "gen_only":
        src = TimedSource(synthetic_batches(tokens, args.mix, args.seed, args.batch_tokens))
        t0 = time.perf_counter()
        rows = sum(b.num_rows for b in src)
        wall = time.perf_counter() - t0
        res.update(wall_s=wall, gen_s=src.seconds, input_tokens=src.tokens, input_rows=rows, batches=src.batches)
    elif mode == "stream":
        src = TimedSource(synthetic_batches(tokens, args.mix, args.seed, args.batch_tokens))
        st, fields = timed_stream(
            lambda: longmagpie.pack_stream(
                src, seq_len=args.seq_len, strategy=args.strategy, overflow="error", window_tokens=args.window_tokens
            ),
            [src],
        )
        fields["checks"]["all_input_tokens_placed"] = st.output_tokens == src.tokens == st.input_tokens
        res.update(fields)
    elif mode == "pmix_stream":
        if not hasattr(longmagpie, "pack_pmix_stream"):
            return {"mode": mode, "skipped": "longmagpie has no pack_pmix_stream"}
        lt, stok = split_tokens(tokens, args.short_frac)
        long_src = TimedSource(synthetic_batches(lt, args.long_pool, args.seed + 10, args.batch_tokens))
        short_src = TimedSource(synthetic_batches(stok, "short", args.seed + 11, args.batch_tokens))
        st, fields = timed_stream(
            lambda: longmagpie.pack_pmix_stream(
                long_src, short_src, **pmix_kwargs(args), window_tokens=args.pmix_window_tokens
            ),
            [long_src, short_src],
        )
        res.update(fields, input_tokens_long_short=[long_src.tokens, short_src.tokens])
        res.update(long_token_share=st.long_token_share, long_unused=st.long_unused, short_unused=st.short_unused)
    else:
        raise SystemExit(f"unknown mode {mode}")
    res["peak_rss_MiB"] = peak_rss_mib()
    res["loadavg_1m"] = os.getloadavg()[0]
    return res


def prefault(nbytes: int) -> None:
    """Touch and free ``nbytes`` (at most half of MemAvailable) so that timed calls do not pay first-touch faults.

    On this VM the host takes back free memory; the first touch of it can run at ~0.5 GB/s (see bench_pack.py).
    """
    with open("/proc/meminfo") as f:
        avail = next((int(ln.split()[1]) * 1024 for ln in f if ln.startswith("MemAvailable:")), 0)
    scratch = np.ones(min(nbytes, avail // 2) // 8, dtype=np.int64)
    del scratch


def run_window_study(args: argparse.Namespace) -> dict[str, Any]:
    """Fill of in-memory ``pack`` (one window) vs ``pack_stream`` at several windows, on the same data."""
    import longmagpie

    tokens = int(args.window_data_tokens)
    windows = sorted({*STUDY_WINDOWS, args.window_tokens})
    table = pa.Table.from_batches(list(synthetic_batches(tokens, args.mix, args.seed, args.batch_tokens)), SCHEMA)
    out: dict[str, Any] = {"tokens": sum(len(c.values) for c in table.column("input_ids").chunks)}
    longmagpie.pack(table.slice(0, 8), seq_len=args.seq_len, strategy=args.strategy)  # untimed warm-up
    prefault(3 * 5 * tokens)
    t0 = time.perf_counter()
    packed = longmagpie.pack(table, seq_len=args.seq_len, strategy=args.strategy)
    st = longmagpie.pack_stats(packed)
    seconds = time.perf_counter() - t0
    out["pack"] = {"fill_rate": st.fill_rate, "rows": st.rows, "seconds": seconds, "output_tokens": st.output_tokens}
    del packed
    out["stream"] = {}
    for w in windows:
        t0 = time.perf_counter()
        stream = longmagpie.pack_stream(table, seq_len=args.seq_len, strategy=args.strategy, window_tokens=w)
        consume(stream)
        s = stream.stats
        out["stream"][str(w)] = {
            "fill_rate": s.fill_rate,
            "rows": s.rows,
            "windows": stream.windows,
            "seconds": time.perf_counter() - t0,
        }
    del table
    if hasattr(longmagpie, "pack_pmix_stream"):
        lt, stok = split_tokens(tokens, args.short_frac)
        long_t = pa.Table.from_batches(list(synthetic_batches(lt, args.long_pool, args.seed + 10, args.batch_tokens)))
        short_t = pa.Table.from_batches(list(synthetic_batches(stok, "short", args.seed + 11, args.batch_tokens)))
        out["pmix"] = {}
        try:
            longmagpie.pack_pmix(long_t.slice(0, 4), short_t.slice(0, 64), **pmix_kwargs(args))  # warm-up
            t0 = time.perf_counter()
            pst = longmagpie.pmix_stats(longmagpie.pack_pmix(long_t, short_t, **pmix_kwargs(args)))
            out["pmix"]["in_memory"] = {
                "fill_rate": pst.fill_rate,
                "rows": pst.rows,
                "seconds": time.perf_counter() - t0,
                "output_tokens": pst.output_tokens,
            }
            for w in windows:
                t0 = time.perf_counter()
                stream = longmagpie.pack_pmix_stream(
                    long_t.to_batches(), short_t.to_batches(), **pmix_kwargs(args), window_tokens=w
                )
                consume(stream)
                s = stream.stats
                out["pmix"][str(w)] = {"fill_rate": s.fill_rate, "rows": s.rows, "seconds": time.perf_counter() - t0}
        except Exception as e:  # report, never crash the benchmark
            out["pmix"]["error"] = f"{type(e).__name__}: {e}"
    out["peak_rss_MiB"] = peak_rss_mib()  # includes the pre-fault
    return out


# ----------------------------------------------------------------------------- driver


def spawn(child: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run one mode (or the window study) in a fresh subprocess; return its JSON result or an error."""
    cmd = [
        sys.executable, __file__, "--child", child, "--tokens", str(int(args.tokens)),
        "--window-tokens", str(args.window_tokens), "--window-data-tokens", str(int(args.window_data_tokens)),
        "--pmix-window-tokens", str(args.pmix_window_tokens),
        "--batch-tokens", str(args.batch_tokens), "--seq-len", str(args.seq_len), "--strategy", args.strategy,
        "--mix", args.mix, "--long-pool", args.long_pool, "--short-frac", str(args.short_frac),
        "--fill", args.fill, "--exhausted", args.exhausted, "--seed", str(args.seed),
    ]  # fmt: skip
    return run_child(cmd, args.timeout, tail_lines=8)


def print_mode(name: str, r: dict[str, Any]) -> None:
    """One line of the bounded-memory table."""
    if "error" in r or "skipped" in r:
        print(f"{name:12s} {r.get('error') or 'skipped: ' + r['skipped']}")
        return
    rss = r["peak_rss_MiB"]
    verdict = f"< {RSS_TARGET_MIB / 1024:g} GiB: " + ("MET" if rss < RSS_TARGET_MIB else "MISSED")
    if name == "gen_only":
        rate = r["input_tokens"] / r["wall_s"]
        print(
            f"{name:12s} {r['input_tokens']:>15,} tokens generated in {r['wall_s']:.1f} s ({rate / 1e6:,.1f} M tok/s), "
            f"{r['batches']:,} batches; peak RSS {rss:,.0f} MiB ({verdict})"
        )
        return
    pack_s = max(r["wall_s"] - r["gen_s"], 1e-9)
    windows = "-" if r["windows"] is None else r["windows"]
    checks = r.get("checks", {})
    bad = [k for k, v in checks.items() if not v]
    extra = ""
    if name == "pmix_stream":
        extra = (
            f"; long/short tokens pulled {r['input_tokens_long_short'][0]:,}/{r['input_tokens_long_short'][1]:,}, "
            f"long token share {r['long_token_share']:.3f}, "
            f"unused long/short {r['long_unused']:,}/{r['short_unused']:,}"
        )
    print(
        f"{name:12s} {r['output_tokens']:>15,} tokens in {r['rows']:,} rows, fill {r['fill_rate']:.3%}, "
        f"{windows} windows; end-to-end {r['output_tokens'] / r['wall_s'] / 1e6:,.1f} M tok/s "
        f"({r['wall_s']:.1f} s), packing {r['output_tokens'] / pack_s / 1e6:,.1f} M tok/s "
        f"(excl. {r['gen_s']:.1f} s generating); peak RSS {rss:,.0f} MiB ({verdict}; "
        f"{r['rss_after_imports_MiB']:,.0f} MiB after imports)" + extra + (f"; CHECK FAILED: {bad}" if bad else "")
    )


def pow2(n: int) -> str:
    """``2**k`` for powers of two, else the number."""
    return f"2**{n.bit_length() - 1}" if n > 0 and n & (n - 1) == 0 else f"{n:,}"


def print_study(s: dict[str, Any]) -> None:
    """The window-cost table."""
    if "error" in s:
        print(f"window study failed: {s['error']}")
        return
    base = s["pack"]["fill_rate"]
    print(
        f"  {'run':30s} {'fill':>9s} {'rows':>7s} {'windows':>8s} {'fill - pack (pp)':>17s} {'seconds':>8s}"
        "  (seconds: info only)"
    )
    print(f"  {'pack (in memory)':30s} {base:9.4%} {s['pack']['rows']:7,} {1:8d} {0:17.4f} {s['pack']['seconds']:8.2f}")
    for w, r in s["stream"].items():
        name = f"pack_stream window {pow2(int(w))}"
        print(
            f"  {name:30s} {r['fill_rate']:9.4%} {r['rows']:7,} {r['windows']:8d} "
            f"{(r['fill_rate'] - base) * 100:17.4f} {r['seconds']:8.2f}"
        )
    if "pmix" in s:
        p = s["pmix"]
        if "error" in p:
            print(f"  pmix: {p['error']}")
        if "in_memory" in p:
            pb = p["in_memory"]["fill_rate"]
            print(
                f"  {'pack_pmix (in memory)':30s} {pb:9.4%} {p['in_memory']['rows']:7,} {1:8d} {0:17.4f} "
                f"{p['in_memory']['seconds']:8.2f}"
            )
            for w, r in p.items():
                if w in ("in_memory", "error"):
                    continue
                print(
                    f"  {'pack_pmix_stream window ' + pow2(int(w)):30s} {r['fill_rate']:9.4%} {r['rows']:7,} {'':8s} "
                    f"{(r['fill_rate'] - pb) * 100:17.4f} {r['seconds']:8.2f}"
                )
    else:
        print("  pack_pmix_stream: skipped (not in this longmagpie)")
    print(f"  (window study child peak RSS {s['peak_rss_MiB']:,.0f} MiB incl. a pre-fault; data held in memory)")


def packing_rate(r: dict[str, Any]) -> float | None:
    """Output tokens per second of a stream mode, the generator's time left out (None if it did not run)."""
    if "error" in r or "skipped" in r or "wall_s" not in r:
        return None
    return r["output_tokens"] / max(r["wall_s"] - r["gen_s"], 1e-9)


def print_stream_ratios(results: dict[str, Any]) -> None:
    """Each streaming packer's rate over its in-memory call's, both measured in this run, with the target.

    Numerator: the bounded-memory run (``--tokens``, the generator's time excluded). Denominator: the in-memory
    call of the window study (``--window-data-tokens`` of the same generator and mix, held in memory: what fits
    in RAM beside its output), timed on the call alone.
    """
    s = results.get("window_study", {})
    if "error" in s or "pack" not in s:
        return
    print("\nratios (streaming packing rate / in-memory call, same run):")
    pairs = [("stream", "pack_stream", s["pack"])]
    pm = s.get("pmix", {}).get("in_memory")
    if pm:
        pairs.append(("pmix_stream", "pack_pmix_stream", pm))
    for mode, name, mem in pairs:
        rate = packing_rate(results.get(mode, {}))
        mem_rate = mem.get("output_tokens", 0) / mem["seconds"] if mem.get("seconds") else None
        if rate is None or not mem_rate:
            print(f"   {name:18s} n/a   target >= {STREAM_RATIO_TARGET:g}")
            continue
        r = rate / mem_rate
        print(
            f"   {name + ' / in-memory':30s} {r:6.2f}   target >= {STREAM_RATIO_TARGET:g}  "
            f"{'PASS' if r >= STREAM_RATIO_TARGET else 'MISS'}   ({rate / 1e6:,.0f} vs {mem_rate / 1e6:,.0f} M tok/s)"
        )


def int_expr(text: str) -> int:
    """Parse ``2e9``, ``2**27`` or ``134217728``."""
    text = text.strip()
    if "**" in text:
        base, exp = text.split("**", 1)
        return int(base) ** int(exp)
    return int(float(text))


def main() -> None:
    """Parse the command line; run each mode in a subprocess and print the results."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int_expr, default=None, help=f"tokens streamed (default {DEFAULT_TOKENS:.0e})")
    ap.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK_TOKENS:.0e} tokens")
    ap.add_argument(
        "--window-tokens", type=int_expr, default=None, help="window of the big run (default 2**27; 2**24 with --quick)"
    )
    ap.add_argument(
        "--pmix-window-tokens",
        type=int_expr,
        default=None,
        help="pack_pmix_stream window per pool in the big run (default 2**26, its default; 2**24 with --quick)",
    )
    ap.add_argument("--window-data-tokens", type=int_expr, default=None, help="window study size (default 200e6)")
    ap.add_argument("--batch-tokens", type=int_expr, default=4 * 2**20, help="tokens per generated batch (4 M)")
    ap.add_argument("--modes", default=",".join(ALL_MODES), help=f"subset of {','.join(ALL_MODES)}")
    ap.add_argument("--no-window-study", dest="window_study", action="store_false")
    ap.add_argument("--seq-len", type=int, default=SEQ_LEN)
    ap.add_argument("--strategy", default="bfd", choices=["bfd", "ffd", "sequential"])
    ap.add_argument("--mix", default="long", choices=["long", "short"], help="pack_stream input mix")
    ap.add_argument("--long-pool", default="long8k", choices=["long8k", "long"], help="p-mix long pool")
    ap.add_argument("--short-frac", type=float, default=0.2, help="share of --tokens in the p-mix short pool")
    ap.add_argument("--fill", default="upstream", choices=["upstream", "best_fit"], help="p-mix fill")
    ap.add_argument("--exhausted", default="stop", choices=["stop", "short_only", "recycle"], help="p-mix")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=int, default=7200, help="seconds per subprocess")
    ap.add_argument("--json", default="", help="write all results here")
    ap.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.tokens is None:
        args.tokens = QUICK_TOKENS if args.quick else DEFAULT_TOKENS
    if args.window_tokens is None:
        args.window_tokens = 2**24 if args.quick else 2**27
    if args.pmix_window_tokens is None:
        args.pmix_window_tokens = 2**24 if args.quick else 2**26
    if args.window_data_tokens is None:
        args.window_data_tokens = QUICK_WINDOW_DATA if args.quick else DEFAULT_WINDOW_DATA
    if args.child:
        res = run_window_study(args) if args.child == "window_study" else run_mode(args)
        print("RESULT " + json.dumps(res), flush=True)
        return

    import longmagpie

    env = environment()
    print(json.dumps(env), flush=True)
    has_pmix_stream = hasattr(longmagpie, "pack_pmix_stream")
    print(
        f"settings: tokens={args.tokens:,} window_tokens={args.window_tokens:,} "
        f"pmix_window_tokens={args.pmix_window_tokens:,} batch_tokens={args.batch_tokens:,} "
        f"seq_len={args.seq_len} strategy={args.strategy} mix={args.mix}; p-mix: long pool {args.long_pool}, "
        f"short {args.short_frac:.0%}, fill={args.fill}, exhausted={args.exhausted}; "
        f"pack_pmix_stream {'available' if has_pmix_stream else 'missing'}",
        flush=True,
    )
    results: dict[str, Any] = {}
    print("\nbounded memory (one subprocess per mode; peak RSS = ru_maxrss; target < 2 GiB, not asserted):")
    for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
        if mode not in ALL_MODES:
            raise SystemExit(f"unknown mode {mode}; choose from {ALL_MODES}")
        if mode == "pmix_stream" and not has_pmix_stream:
            results[mode] = {"skipped": "longmagpie has no pack_pmix_stream"}
        else:
            results[mode] = spawn(mode, args)
        print_mode(mode, results[mode])
    if args.window_study:
        print(f"\nwindow cost on {args.window_data_tokens:,} tokens (mix {args.mix}, in memory, one subprocess):")
        results["window_study"] = spawn("window_study", args)
        print_study(results["window_study"])
        print_stream_ratios(results)
    if args.json:
        Path(args.json).write_text(json.dumps({"environment": env, "args": vars(args), "results": results}, indent=1))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
