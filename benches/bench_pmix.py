#!/usr/bin/env python3
r"""p-mix benchmark: ``longmagpie.pack_pmix`` vs. the upstream pure-Python p-mix loop vs. a numpy copy.

All modes read the same synthetic data: a *long* pool and a *short* pool written once as Arrow IPC files
(int32 ``input_ids`` + int8 ``assistant_masks``, seeded) and memory-mapped by every mode. Each mode runs in
its own subprocess (fresh output memory, its own peak RSS), ``--repeat`` times round-robin; the tables show
medians, then the ratios with their targets as text (never asserted).

Modes
-----
lm_upstream     longmagpie.pack_pmix(long, short, p_long=0.4, fill="upstream", num_threads=all cores)  (headline)
lm_upstream_1t  same, num_threads=1
lm_best_fit     same, fill="best_fit", all cores
np_copy         numpy ``.copy()`` of every token id and mask of both pools into fresh memory (bandwidth limit;
                single-threaded); tokens/s counts input tokens
py_upstream     the upstream p-mix loop (LongMagpie ``build_sft_data_p_mix.py``) re-implemented in pure Python
                from longmagpie-upstream.md §4, on Python lists of ints (converted from Arrow outside the timed
                region); emits Python lists, as the brief's reference
py_upstream_nd  same, plus the ``np.array(..., uint32/uint8)`` conversion that upstream's MDSWriter needs (info)

The Python modes run ``min(rows of lm_upstream, --py-max-rows)`` rows (the fraction is printed; tokens/s is
a rate, so it is comparable, and the full-size time is extrapolated). They convert only as many samples of
each pool as those rows need (about 1.3 x), because 200 M tokens as Python ints would take ~8 GB; if that
prefix runs out, the loop wraps and reshuffles, which is what upstream does at the end of a pool.

Tokens/s = output tokens / seconds of the timed call (input tokens for ``np_copy``). Fill rate = output
tokens / (rows x seq_len); upstream's rows are always full because it cuts the tail of the last sample
(printed as "discarded"). longmagpie carries that sample over instead, so its ``fill="upstream"`` fill is lower.
By default longmagpie runs with ``exhausted="recycle"`` (upstream's wrap-and-reshuffle: it ends when every long
sample was used once); ``--exhausted stop`` is the library default. Peak RSS = ru_maxrss / VmHWM of the child:
it includes the touched memory-mapped input (5 bytes/token) and, for the Python modes, the Python objects.

Examples
--------
    P=/work/devenv/bin/python
    $P benches/bench_pmix.py --quick                 # 5e6 tokens, repeat 1: smoke run
    $P benches/bench_pmix.py                         # 200e6 tokens (160e6 long + 40e6 short), repeat 3
    $P benches/bench_pmix.py --tokens 1e9            # 1e9 tokens: ~5 GB of IPC files in the temp dir,
                                                     #   ~10-12 GB peak RSS per longmagpie child: fits in 24 GiB
    $P benches/bench_pmix.py --modes lm_upstream,np_copy --json /tmp/pmix.json

"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from benchkit import PeakMemory, auto_prewarm_mib, run_child, status_mib
from benchkit import environment as base_environment

SEQ_LEN = 65536
QUICK_TOKENS = 5_000_000
DEFAULT_TOKENS = 200_000_000
VOCAB = 151_643  # Qwen2.5 vocabulary size (ids are drawn below it)
ALL_MODES = ("lm_upstream", "lm_upstream_1t", "lm_best_fit", "np_copy", "py_upstream", "py_upstream_nd")
LM_MODES: dict[str, dict[str, Any]] = {
    "lm_upstream": {"fill": "upstream", "num_threads": None},
    "lm_upstream_1t": {"fill": "upstream", "num_threads": 1},
    "lm_best_fit": {"fill": "best_fit", "num_threads": None},
}
# (numerator, denominator, target or None, meaning)
RATIOS: tuple[tuple[str, str, float | None, str], ...] = (
    ("lm_upstream", "py_upstream", 100.0, "vs the upstream pure-Python p-mix loop"),
    ("lm_upstream", "np_copy", 0.5, "fraction of a numpy copy into fresh memory"),
    ("lm_upstream_1t", "np_copy", None, "single thread vs the single-threaded numpy copy"),
    ("lm_best_fit", "np_copy", None, "best_fit vs numpy copy"),
    ("lm_upstream", "py_upstream_nd", None, "vs the Python loop + ndarray conversion (MDS input)"),
)


# ----------------------------------------------------------------------------- data


def pool_lengths(rng: np.random.Generator, kind: str, tokens: int) -> np.ndarray:
    """Draw sample lengths until they sum to at least ``tokens``.

    ``long8k``: log-uniform 8,000-60,000 (multi-document long samples only); ``longmix``: the project's long
    SFT mix (``longmagpie.testing.synthetic.sample_lengths(mix="long")``: 70 % 200-4,000, 30 % 8,000-60,000);
    ``short``: chat SFT, log-uniform 50-2,000 (``sample_lengths(mix="short")``).
    """
    if kind in ("longmix", "short"):
        from longmagpie.testing.synthetic import sample_lengths

        return sample_lengths(tokens, "long" if kind == "longmix" else "short", int(rng.integers(2**62)))
    if kind != "long8k":
        raise ValueError(f"unknown pool kind {kind!r}")
    parts: list[np.ndarray] = []
    have = 0
    while have < tokens:
        lens = np.exp(rng.uniform(np.log(8000), np.log(60000), 100_000)).astype(np.int64)
        k = int(np.searchsorted(np.cumsum(lens), tokens - have, side="left")) + 1
        parts.append(lens[:k])
        have += int(lens[:k].sum())
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def answer_masks(lengths: np.ndarray) -> np.ndarray:
    """Flat int8 masks: the last quarter of every sample is 1 (as ``synthetic_samples``), without int64 temporaries."""
    ends = np.cumsum(lengths)
    n = int(ends[-1]) if len(ends) else 0
    step = np.zeros(n + 1, dtype=np.int8)
    step[ends - lengths // 4] = 1  # answer starts (never equal to an end: lengths >= 50)
    step[ends] = -1
    return np.cumsum(step[:n], dtype=np.int8)


def write_pool(path: Path, lengths: np.ndarray, rng: np.random.Generator, batch_tokens: int) -> None:
    """Write one pool as an Arrow IPC file, one record batch per ~``batch_tokens`` tokens (bounded memory)."""
    schema = pa.schema([("input_ids", pa.list_(pa.int32())), ("assistant_masks", pa.list_(pa.int8()))])
    ends = np.cumsum(lengths)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        start = 0
        while start < len(lengths):
            stop = max(start + 1, int(np.searchsorted(ends, ends[start] - lengths[start] + batch_tokens, "right")))
            lens = lengths[start:stop]
            offsets = np.zeros(len(lens) + 1, dtype=np.int32)
            np.cumsum(lens, out=offsets[1:])
            ids = rng.integers(0, VOCAB, size=int(offsets[-1]), dtype=np.int32)
            off = pa.array(offsets)
            batch = pa.record_batch(
                [
                    pa.ListArray.from_arrays(off, pa.array(ids)),
                    pa.ListArray.from_arrays(off, pa.array(answer_masks(lens))),
                ],
                schema=schema,
            )
            writer.write_batch(batch)
            start = stop


def ensure_data(args: argparse.Namespace) -> Path:
    """Create (or reuse) ``long.arrow``, ``short.arrow`` and ``meta.json``; return the data directory."""
    total = int(args.tokens)
    short_tokens = int(total * args.short_frac)
    long_tokens = total - short_tokens
    tag = f"{args.long_pool}_{total}_{args.short_frac:g}_s{args.seed}"
    root = Path(args.data_dir) if args.data_dir else Path(tempfile.gettempdir()) / "longmagpie_bench_pmix"
    out = root / tag
    if (out / "meta.json").exists():
        return out
    print(f"generating {out} ({long_tokens:,} long + {short_tokens:,} short tokens) ...", flush=True)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    rng = np.random.default_rng(args.seed)
    meta: dict[str, Any] = {"long_pool": args.long_pool, "seed": args.seed}
    for name, kind, tokens in (("long", args.long_pool, long_tokens), ("short", "short", short_tokens)):
        lens = pool_lengths(rng, kind, tokens)
        write_pool(out / f"{name}.arrow", lens, rng, args.batch_tokens)
        meta[name] = {
            "kind": kind,
            "samples": len(lens),
            "tokens": int(lens.sum()),
            "len_mean": float(lens.mean()),
            "len_max": int(lens.max()),
        }
    meta["tokens"] = meta["long"]["tokens"] + meta["short"]["tokens"]
    (out / "meta.json").write_text(json.dumps(meta, indent=1))
    return out


def open_pool(data_dir: Path, name: str) -> pa.Table:
    """Memory-map one pool (zero-copy table)."""
    return pa.ipc.open_file(pa.memory_map(str(data_dir / f"{name}.arrow"), "r")).read_all()


def flat_values(table: pa.Table) -> list[np.ndarray]:
    """Zero-copy numpy views of every chunk's ids and masks (the flat token buffers)."""
    out = []
    for col in ("input_ids", "assistant_masks"):
        for chunk in table.column(col).chunks:
            out.append(chunk.values.to_numpy(zero_copy_only=True))
    return out


def touch_pages(arrays: list[np.ndarray]) -> None:
    """Read one byte per 4 KiB page so every mode starts with the memory-mapped input mapped in."""
    for a in arrays:
        int(a.view(np.uint8)[::4096].sum())


def warm_page_cache(data_dir: Path) -> None:
    """Read the data files once so that no mode pays for disk reads."""
    for fn in sorted(data_dir.glob("*.arrow")):
        with open(fn, "rb") as f:
            while f.read(1 << 24):
                pass


# ----------------------------------------------------------------------------- memory


# ============================================================================================================
# UPSTREAM REFERENCE: LongMagpie ``longmagpie/build_sft_data_p_mix.py`` (caskcsg/longcontext), stage 3b p-mix.
# Written from /work/shared/reference/longmagpie-upstream.md §4; this is NOT longmagpie's algorithm.
#   1. random.seed(42); shuffle long_data and short_data; both pointers at 0.
#   2. per output sample: clear the buffers; take ``short_data_num`` (1) short conversations, with
#      <|begin_of_text|> (mask 0) before the first only (errors in this step: the item is skipped); then while the
#      buffer is below 65,536 tokens: ``random.random() < 0.4`` -> next long conversation, else next short one,
#      appended with no BOS between conversations. A pointer that runs past its list reshuffles it and restarts.
#   3. emit the first 65,536 tokens (the tail is discarded; nothing padded); ``indices`` is always [[0, 65536]].
# Upstream tokenizes each conversation in the loop and writes MDS; here the conversations are already Python
# lists of token ids and masks (converted from Arrow outside the timed region), which only makes the reference
# faster than the real script.
# ============================================================================================================
UPSTREAM_SEED = 42
UPSTREAM_TARGET_LENGTH = 65536  # --target_length
UPSTREAM_CHOOSE_RATE = 0.4  # --choose_rate (P_L)
UPSTREAM_SHORT_DATA_NUM = 1  # --short_data_num
LLAMA3_BOS = 128000  # <|begin_of_text|>

Conversation = tuple[list[int], list[int]]  # (input_ids, mask), as upstream's tokenized template gives them


def upstream_next(data: list[Conversation], ptr: int) -> tuple[Conversation, int]:
    """Upstream pointer read: take ``data[ptr]``; past the end, reshuffle the list and restart at 0."""
    item = data[ptr]
    ptr += 1
    if ptr >= len(data):
        random.shuffle(data)
        ptr = 0
    return item, ptr


def upstream_pmix(
    long_data: list[Conversation],
    short_data: list[Conversation],
    total_samples: int,
    to_ndarray: bool = False,
) -> tuple[list[dict[str, Any]], int]:
    """Run the upstream p-mix loop for ``total_samples`` rows; return the samples and the discarded tail tokens.

    ``to_ndarray`` adds upstream's conversion of each row to ``np.uint32`` / ``np.uint8`` arrays (MDS columns).
    """
    random.seed(UPSTREAM_SEED)
    random.shuffle(long_data)
    random.shuffle(short_data)
    long_ptr = 0
    short_ptr = 0
    target = UPSTREAM_TARGET_LENGTH
    samples: list[dict[str, Any]] = []
    discarded = 0  # benchmark bookkeeping only (one int add per row)
    for _ in range(total_samples):
        input_ids: list[int] = []
        mask: list[int] = []
        # b. short prefix (BOS before the first conversation only)
        for _ in range(UPSTREAM_SHORT_DATA_NUM):
            try:
                (ids, m), short_ptr = upstream_next(short_data, short_ptr)
                if not input_ids:
                    input_ids.append(LLAMA3_BOS)
                    mask.append(0)
                input_ids += ids
                mask += m
            except (ValueError, KeyError):  # upstream: JSON / format errors skip the item
                continue
        # c. fill: long with probability 0.4, else short; no BOS between conversations
        while len(input_ids) < target:
            if random.random() < UPSTREAM_CHOOSE_RATE:
                (ids, m), long_ptr = upstream_next(long_data, long_ptr)
            else:
                (ids, m), short_ptr = upstream_next(short_data, short_ptr)
            if not input_ids:  # never true once there is a prefix
                input_ids.append(LLAMA3_BOS)
                mask.append(0)
            input_ids += ids
            mask += m
        # d. emit the first 65,536 tokens; the tail is thrown away; one attention span
        discarded += len(input_ids) - target
        out_ids: Any = input_ids[:target]
        out_mask: Any = mask[:target]
        if to_ndarray:
            out_ids = np.array(out_ids, dtype=np.uint32)
            out_mask = np.array(out_mask, dtype=np.uint8)
        samples.append(
            {"domain": "", "indices": [[0, target]], "input_ids": out_ids, "mask": out_mask, "length": target}
        )
    return samples, discarded


# ============================================================================================================ modes


def to_python_pool(table: pa.Table, need_tokens: int) -> tuple[list[Conversation], int]:
    """The first samples of ``table`` holding >= ``need_tokens`` tokens, as Python lists; return them and the count."""
    lens = np.concatenate([np.diff(np.asarray(c.offsets)) for c in table.column("input_ids").chunks])
    k = min(len(lens), int(np.searchsorted(np.cumsum(lens), need_tokens, side="left")) + 1)
    part = table.slice(0, k)
    ids = part.column("input_ids").to_pylist()
    masks = part.column("assistant_masks").to_pylist()
    return list(zip(ids, masks, strict=True)), int(lens[:k].sum())


def run_python(data_dir: Path, meta: dict[str, Any], rows: int, to_ndarray: bool, mem: PeakMemory) -> dict[str, Any]:
    """Time the upstream reference loop for ``rows`` rows on Python lists of ints."""
    long_t, short_t = open_pool(data_dir, "long"), open_pool(data_dir, "short")
    t0 = time.perf_counter()
    # Per row upstream consumes ~65,536 tokens plus a cut tail (~half a long sample): ~1.3 x of each pool's
    # expected share is converted; running out only triggers upstream's own wrap-and-reshuffle.
    long_data, long_conv = to_python_pool(long_t, int(rows * SEQ_LEN * 1.3))
    short_data, short_conv = to_python_pool(short_t, int(rows * 8000 * 1.3))
    convert_s = time.perf_counter() - t0
    rss_before = status_mib("VmRSS")
    mem.arm()
    t0 = time.perf_counter()
    samples, discarded = upstream_pmix(long_data, short_data, rows, to_ndarray)
    dt = time.perf_counter() - t0
    mem.record()
    out_tokens = sum(len(s["input_ids"]) for s in samples)
    return {
        "seconds": dt,
        "tokens_per_s": out_tokens / dt,
        "rows": len(samples),
        "output_tokens": out_tokens,
        "fill_rate": out_tokens / (len(samples) * SEQ_LEN),
        "discarded_tail_tokens": discarded,
        "threads": 1,
        "python_pool_samples": [len(long_data), len(short_data)],
        "python_pool_tokens": [long_conv, short_conv],
        "convert_seconds": convert_s,
        "rss_before_MiB": rss_before,
        "peak_rss_MiB": mem.info()["peak_rss_MiB"],
        "checks": {"ok": all(len(s["input_ids"]) == SEQ_LEN == len(s["mask"]) for s in samples)},
    }


def run_longmagpie(
    data_dir: Path, fill: str, num_threads: int | None, args: argparse.Namespace, mem: PeakMemory
) -> dict[str, Any]:
    """Time ``longmagpie.pack_pmix`` on the memory-mapped pools; rows, fill and stats from the result."""
    import longmagpie

    long_t, short_t = open_pool(data_dir, "long"), open_pool(data_dir, "short")
    touch_pages(flat_values(long_t) + flat_values(short_t))
    kwargs: dict[str, Any] = {
        "seq_len": SEQ_LEN,
        "p_long": UPSTREAM_CHOOSE_RATE,
        "n_short_prefix": 1,
        "seed": args.seed,
        "fill": fill,
        "overflow": args.overflow,
        "exhausted": args.exhausted,
        "num_threads": num_threads,
    }
    if args.warmup:  # untimed call on a few rows: lazy imports, thread pool start
        longmagpie.pack_pmix(long_t.slice(0, 4), short_t.slice(0, 64), **{**kwargs, "exhausted": "recycle"})
    rss_before = status_mib("VmRSS")
    mem.arm()
    t0 = time.perf_counter()
    out = longmagpie.pack_pmix(long_t, short_t, **kwargs)
    dt = time.perf_counter() - t0
    mem.record()
    st = longmagpie.pmix_stats(out)
    lengths = out.column("length").to_numpy().astype(np.int64)
    checks = {
        "length_sum_matches_stats": int(lengths.sum()) == st.output_tokens,
        "rows_le_seq_len": bool((lengths <= SEQ_LEN).all()),
        "ids_count_matches": sum(len(c.values) for c in out.column("input_ids").chunks) == st.output_tokens,
    }
    checks["ok"] = all(checks.values())
    keep = (
        "long_used", "short_used", "long_unused", "short_unused", "reused_placements", "long_segment_share",
        "long_token_share", "best_fit_segments", "max_documents_per_row", "truncated_samples", "dropped_samples",
    )  # fmt: skip
    return {
        "seconds": dt,
        "tokens_per_s": st.output_tokens / dt,
        "rows": st.rows,
        "output_tokens": st.output_tokens,
        "fill_rate": st.fill_rate,
        "threads": num_threads or os.cpu_count(),
        "rss_before_MiB": rss_before,
        "peak_rss_MiB": mem.info()["peak_rss_MiB"],
        "stats": {k: getattr(st, k) for k in keep},
        "checks": checks,
        "version": getattr(longmagpie, "__version__", "?"),
    }


def run_np_copy(data_dir: Path, meta: dict[str, Any], mem: PeakMemory) -> dict[str, Any]:
    """Copy every id and mask of both pools into freshly allocated numpy arrays (one pass, timed)."""
    vals = flat_values(open_pool(data_dir, "long")) + flat_values(open_pool(data_dir, "short"))
    touch_pages(vals)
    nbytes = sum(v.nbytes for v in vals)
    rss_before = status_mib("VmRSS")
    mem.arm()
    t0 = time.perf_counter()
    copies = [v.copy() for v in vals]
    dt = time.perf_counter() - t0
    mem.record()
    ok = sum(c.size for c in copies) == 2 * meta["tokens"]
    return {
        "seconds": dt,
        "tokens_per_s": meta["tokens"] / dt,
        "GBps": nbytes / dt / 1e9,
        "rows": None,
        "output_tokens": meta["tokens"],
        "fill_rate": None,
        "threads": 1,
        "rss_before_MiB": rss_before,
        "peak_rss_MiB": mem.info()["peak_rss_MiB"],
        "checks": {"ok": ok},
    }


def child(args: argparse.Namespace) -> None:
    """Run one mode in this process and print ``RESULT {json}``."""
    data_dir = Path(args.data_path)
    meta = json.loads((data_dir / "meta.json").read_text())
    prewarm = auto_prewarm_mib(meta["tokens"], 3 * 5) if args.prewarm_mib < 0 else args.prewarm_mib
    mem = PeakMemory(prewarm)
    mode = args.child
    if mode in LM_MODES:
        res = run_longmagpie(data_dir, LM_MODES[mode]["fill"], LM_MODES[mode]["num_threads"], args, mem)
    elif mode == "np_copy":
        res = run_np_copy(data_dir, meta, mem)
    elif mode in ("py_upstream", "py_upstream_nd"):
        res = run_python(data_dir, meta, args.py_rows, mode == "py_upstream_nd", mem)
    else:
        raise SystemExit(f"unknown mode {mode}")
    res["prewarm_MiB"] = prewarm
    res["loadavg_1m"] = os.getloadavg()[0]
    print("RESULT " + json.dumps(res), flush=True)


# ============================================================================================================ driver


def spawn(mode: str, data_dir: Path, args: argparse.Namespace, py_rows: int) -> dict[str, Any]:
    """Run ``mode`` in a fresh subprocess; return its result or ``{"error": ...}``."""
    cmd = [
        sys.executable, __file__, "--child", mode, "--data-path", str(data_dir), "--py-rows", str(py_rows),
        "--seed", str(args.seed), "--exhausted", args.exhausted, "--overflow", args.overflow,
        "--prewarm-mib", str(args.prewarm_mib),
    ]  # fmt: skip
    if not args.warmup:
        cmd.append("--no-warmup")
    return run_child(cmd, args.timeout, tail_lines=6)


def fmt_rate(x: float | None) -> str:
    """Tokens/s in M."""
    return "-" if x is None else f"{x / 1e6:,.1f} M"


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Median tokens/s and seconds, max peak RSS, last run's other fields."""
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return None
    s = dict(ok[-1])
    s["tokens_per_s"] = statistics.median(r["tokens_per_s"] for r in ok)
    s["seconds"] = statistics.median(r["seconds"] for r in ok)
    s["peak_rss_MiB"] = max(r["peak_rss_MiB"] for r in ok)
    s["runs"] = len(ok)
    s["all_tokens_per_s"] = [r["tokens_per_s"] for r in ok]
    return s


def environment() -> dict[str, Any]:
    """Versions and machine facts, with the total memory."""
    env = base_environment()
    with open("/proc/meminfo") as f:
        env["mem_total_GiB"] = round(int(f.readline().split()[1]) / 2**20, 1)
    return env


def main() -> None:
    """Parse the command line; run every mode in subprocesses and print the table and ratios."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", default=None, help=f"total tokens, long + short (default {DEFAULT_TOKENS:.0e})")
    ap.add_argument("--quick", action="store_true", help=f"smoke run: {QUICK_TOKENS:.0e} tokens, repeat 1")
    ap.add_argument("--repeat", type=int, default=None, help="subprocess runs per mode (default 3; 1 with --quick)")
    ap.add_argument("--modes", default=",".join(ALL_MODES), help=f"comma-separated subset of {','.join(ALL_MODES)}")
    ap.add_argument("--long-pool", default="long8k", choices=["long8k", "longmix"], help="long pool lengths")
    ap.add_argument("--short-frac", type=float, default=0.2, help="fraction of --tokens in the short pool")
    ap.add_argument("--exhausted", default="recycle", choices=["stop", "short_only", "recycle"])
    ap.add_argument("--overflow", default="error", choices=["error", "truncate", "drop"])
    ap.add_argument("--py-max-rows", type=int, default=256, help="most rows for the Python modes (memory bound)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-tokens", type=int, default=2**26, help="tokens per IPC record batch")
    ap.add_argument("--data-dir", default="", help="where the pools are cached (default: <tmp>/longmagpie_bench_pmix)")
    ap.add_argument("--prewarm-mib", type=int, default=-1, help="pre-fault before timing (-1 auto, 0 off)")
    ap.add_argument("--no-warmup", dest="warmup", action="store_false", help="skip the untimed warm-up call")
    ap.add_argument("--timeout", type=int, default=3600, help="seconds per subprocess")
    ap.add_argument("--json", default="", help="write all results here")
    ap.add_argument("--child", default="", help=argparse.SUPPRESS)
    ap.add_argument("--data-path", default="", help=argparse.SUPPRESS)
    ap.add_argument("--py-rows", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    args.tokens = float(args.tokens) if args.tokens else (QUICK_TOKENS if args.quick else DEFAULT_TOKENS)
    repeat = args.repeat if args.repeat is not None else (1 if args.quick else 3)
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    bad = [m for m in modes if m not in ALL_MODES]
    if bad:
        raise SystemExit(f"unknown modes {bad}; choose from {ALL_MODES}")

    env = environment()
    print(json.dumps(env), flush=True)
    data_dir = ensure_data(args)
    meta = json.loads((data_dir / "meta.json").read_text())
    warm_page_cache(data_dir)
    print(
        f"data {data_dir}: long {meta['long']['samples']:,} samples / {meta['long']['tokens']:,} tokens "
        f"(mean {meta['long']['len_mean']:,.0f}, max {meta['long']['len_max']:,}); short {meta['short']['samples']:,}"
        f" / {meta['short']['tokens']:,} (mean {meta['short']['len_mean']:,.0f})",
        flush=True,
    )
    print(
        f"settings: seq_len={SEQ_LEN} p_long={UPSTREAM_CHOOSE_RATE} n_short_prefix=1 exhausted={args.exhausted} "
        f"overflow={args.overflow} repeat={repeat} warmup={'on' if args.warmup else 'off'} "
        f"prewarm={'auto' if args.prewarm_mib < 0 else args.prewarm_mib}",
        flush=True,
    )
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    py_rows = 0
    lm_rows: int | None = None
    order = sorted(modes, key=lambda m: m.startswith("py_"))  # longmagpie first: the Python modes copy its rows
    for rep in range(repeat):
        for mode in order:
            if mode.startswith("py_") and not py_rows:
                lm_rows = next((r["rows"] for r in runs.get("lm_upstream", []) if "error" not in r), None)
                est = lm_rows or max(1, int(meta["long"]["tokens"] / SEQ_LEN))
                py_rows = max(1, min(est, args.py_max_rows))
            res = spawn(mode, data_dir, args, py_rows)
            runs[mode].append(res)
            brief = res.get("error") or f"{fmt_rate(res['tokens_per_s'])} tok/s in {res['seconds']:.3f} s"
            print(f"  [{rep + 1}/{repeat}] {mode:15s} {brief}", flush=True)

    summaries = {m: summarize(runs[m]) for m in modes}
    print()
    hdr = f"{'mode':15s} {'tokens/s':>12s} {'seconds':>9s} {'rows':>7s} {'out tokens':>13s} {'fill':>8s}"
    hdr += f" {'peak RSS':>10s}"
    print(hdr + "  notes")
    print("-" * (len(hdr) + 30))
    for m in modes:
        s = summaries[m]
        if s is None:
            print(f"{m:15s} FAILED: {runs[m][-1].get('error')}")
            continue
        notes = []
        if not s["checks"].get("ok", True):
            notes.append(f"CHECK FAILED {s['checks']}")
        if m.startswith("lm_"):
            st = s["stats"]
            notes.append(
                f"long token share {st['long_token_share']:.3f}, long seg share {st['long_segment_share']:.3f}, "
                f"reused {st['reused_placements']:,}, short unused {st['short_unused']:,}"
            )
            if m == "lm_best_fit":
                notes.append(f"best-fit segs {st['best_fit_segments']:,}")
        elif m.startswith("py_"):
            full = lm_rows or s["rows"]
            notes.append(
                f"{s['rows']}/{full} rows ({s['rows'] / full:.1%}); discarded tail {s['discarded_tail_tokens']:,} "
                f"tokens; full-size est. {s['seconds'] * full / s['rows']:.2f} s; "
                f"pool->lists {s['convert_seconds']:.1f} s (untimed)"
            )
        elif m == "np_copy":
            notes.append(f"{s['GBps']:.2f} GB/s (ids+masks, input tokens)")
        fill = "-" if s["fill_rate"] is None else f"{s['fill_rate']:.2%}"
        rows = "-" if s["rows"] is None else f"{s['rows']:,}"
        print(
            f"{m:15s} {fmt_rate(s['tokens_per_s']):>12s} {s['seconds']:9.3f} {rows:>7s} {s['output_tokens']:>13,} "
            f"{fill:>8s} {s['peak_rss_MiB']:8.0f} M  {'; '.join(notes)}"
        )
    print("\nratios (median tokens/s; targets are printed, never asserted):")
    for num, den, target, what in RATIOS:
        a, b = summaries.get(num), summaries.get(den)
        if a is None or b is None:
            continue
        r = a["tokens_per_s"] / b["tokens_per_s"]
        verdict = "info" if target is None else (f"target >= {target:g}x: " + ("MET" if r >= target else "MISSED"))
        print(f"  {num}/{den}: {r:,.2f}x  ({what}; {verdict})")
    loads = [r["loadavg_1m"] for rs in runs.values() for r in rs if "loadavg_1m" in r]
    if loads:
        print(f"1-min load average at child exit: {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} CPUs")
    if args.json:
        Path(args.json).write_text(json.dumps({"environment": env, "meta": meta, "args": vars(args), "runs": runs}))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
