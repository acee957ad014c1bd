#!/usr/bin/env python3
r"""Side-by-side packing benchmark: ``longmagpie.pack`` vs. TRL ``pack_dataset`` vs. numpy FFD vs. memcpy.

Every mode reads the same synthetic, memory-mapped Arrow data and runs in its own subprocess, so peak RSS
is per mode. Only the packing call is timed. Each mode runs ``--repeat`` times (round-robin over the modes);
the tables show medians, then the ratios with their targets (printed as PASS/MISS, never asserted).

Sub-commands
------------
gen   write a synthetic tokenized SFT dataset (int32 ids, seeded) as an Arrow IPC *file* (``data.arrow``,
      memory-mapped by longmagpie/numpy) and as a ``datasets.save_to_disk`` dir (``hf/``, memory-mapped by TRL)
all   run the selected modes on one or more datasets, print tables + ratios, optionally write ``--json``
run   time ONE mode in this process and print one ``RESULT {json}`` line (what ``all`` spawns)

Modes
-----
longmagpie             longmagpie.pack(table, seq_len, strategy="bfd", num_threads=N)  (headline)
longmagpie_ffd         same, strategy="ffd"
longmagpie_sequential  same, strategy="sequential"
longmagpie_1t          strategy="bfd", num_threads=1 (per-core comparison with the single-core memcpy)
longmagpie_ffd_1t      strategy="ffd", num_threads=1
pmix_best_fit          longmagpie.pack_pmix(long, short, fill="best_fit", exhausted="short_only") on a short-heavy
                       split of the same samples: long pool = samples of >= PMIX_LONG_MIN tokens, short pool = the
                       rest (on the short-chat mix: 82 % of the samples, half of the tokens)
trl_bfd                trl.pack_dataset(ds, seq_length, strategy="bfd") as shipped (map batches of 1000 rows)
trl_bfd_full           same with map_kwargs={"batch_size": None}: one global BFD (same fill as a global packer)
np_ffd                 numpy first-fit-decreasing plan on the lengths + slice gather into fresh memory
memcpy_fresh           values.copy() of the whole token buffer into fresh memory (the bandwidth limit);
                       also reports a copy into a pre-faulted buffer and the first copy from the cold mmap

Fill rate = real tokens / (rows * seq_len), i.e. as if every row were padded to seq_len.
Peak RSS = ru_maxrss of the child; it includes touched memory-mapped input pages and, for TRL, the
torch/transformers import (see the ``RSS before`` column: RSS just before the timed call).

Example:
-------
    P=/work/benchenv/bin/python
    $P benches/bench_pack.py gen --mix long  --tokens 200e6 --out /work/benchdata/long_200M
    $P benches/bench_pack.py gen --mix short --tokens 200e6 --out /work/benchdata/short_200M
    $P benches/bench_pack.py all --data /work/benchdata/long_200M --data /work/benchdata/short_200M \\
        --repeat 3 --json /work/benchdata/results.json
    $P benches/bench_pack.py all --quick          # 5e6-token smoke run on both mixes, repeat 1

"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from benchkit import PeakMemory, auto_prewarm_mib, package_versions, peak_rss_mib, rss_mib

SEQ_LEN_DEFAULT = 65536
VOCAB = 151_000
QUICK_TOKENS = 5_000_000
DATA_FILE = "data.arrow"
HF_DIR = "hf"
META_FILE = "meta.json"

LONGMAGPIE_MODES: dict[str, dict[str, Any]] = {
    "longmagpie": {"strategy": "bfd"},
    "longmagpie_ffd": {"strategy": "ffd"},
    "longmagpie_sequential": {"strategy": "sequential"},
    "longmagpie_1t": {"strategy": "bfd", "num_threads": 1},
    "longmagpie_ffd_1t": {"strategy": "ffd", "num_threads": 1},
}
PMIX_MODES = ("pmix_best_fit",)
#: Samples of at least this many tokens make the p-mix long pool of ``pmix_best_fit``.
PMIX_LONG_MIN = 1024
TRL_MODES = ("trl_bfd", "trl_bfd_full")
ALL_MODES = (*LONGMAGPIE_MODES, *PMIX_MODES, *TRL_MODES, "np_ffd", "memcpy_fresh")
DEFAULT_MODES = ",".join(ALL_MODES)

#: Targets of the copy ratios by mix (issue #20): ``pack`` (bfd and ffd, 1 and 2 threads) and
#: ``pack_pmix(fill="best_fit")`` against the numpy copy into fresh memory, measured in the same run.
COPY_TARGETS: dict[str, float] = {"short": 0.8, "long": 0.95}

# (numerator, denominator, target, what it means); target: a number, None (information), "copy" (COPY_TARGETS
# of the mix) or "copy_short" (the short mix's, on the short mix only: the pool is short-heavy there alone)
RATIOS: tuple[tuple[str, str, float | str | None, str], ...] = (
    ("longmagpie", "memcpy_fresh", "copy", "bfd, all threads, vs the fresh-memory copy"),
    ("longmagpie_ffd", "memcpy_fresh", "copy", "ffd, all threads, vs copy"),
    ("longmagpie_1t", "memcpy_fresh", "copy", "bfd, 1 thread, vs the single-core copy"),
    ("longmagpie_ffd_1t", "memcpy_fresh", "copy", "ffd, 1 thread, vs copy"),
    ("pmix_best_fit", "memcpy_fresh", "copy_short", "pack_pmix best_fit, all threads, vs copy (short-heavy pool)"),
    ("longmagpie", "np_ffd", 1.5, "vs numpy FFD floor"),
    ("longmagpie", "trl_bfd_full", 50.0, "vs TRL global BFD (equal fill)"),
    ("longmagpie", "trl_bfd", None, "vs TRL bfd as shipped (lower fill)"),
    ("longmagpie", "memcpy_prefaulted", None, "info: vs copy into pre-faulted memory"),
    ("longmagpie", "memcpy_cold_mmap", None, "info: vs first copy from the cold mmap (same start as pack)"),
    ("longmagpie_sequential", "memcpy_fresh", None, "sequential vs copy"),
)
FILL_TARGET = 0.999


# ----------------------------------------------------------------------------- data


def generate(out: Path, mix: str, tokens: int, seed: int, batch_rows: int, with_hf: bool) -> dict[str, Any]:
    """Write ``out/data.arrow`` (IPC file), optionally ``out/hf`` (save_to_disk) and ``out/meta.json``."""
    from longmagpie.testing.synthetic import sample_lengths  # the project's recipes: one home

    rng = np.random.default_rng(seed + 1)  # token ids: a stream of its own
    lens = sample_lengths(tokens, mix, seed)
    offsets = np.zeros(len(lens) + 1, dtype=np.int64)
    np.cumsum(lens, out=offsets[1:])
    total = int(offsets[-1])
    if total >= 2**31:
        raise SystemExit("more than 2^31 tokens needs large_list; use --tokens < 2.1e9")
    ids = rng.integers(0, VOCAB, size=total, dtype=np.int32)
    col = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(ids))
    table = pa.table({"input_ids": col})
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    with pa.OSFile(str(out / DATA_FILE), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=batch_rows or None)
    hf_note = "written"
    if with_hf:
        if importlib.util.find_spec("datasets") is None:
            hf_note = "skipped: datasets not installed (TRL modes will be skipped)"
        else:
            from datasets import Dataset

            Dataset(table).save_to_disk(str(out / HF_DIR))
    else:
        hf_note = "skipped: --no-hf"
    meta = {
        "mix": mix,
        "seed": seed,
        "tokens": total,
        "samples": len(lens),
        "checksum": int(ids.sum(dtype=np.int64)),
        "len_mean": float(lens.mean()),
        "len_p50": float(np.median(lens)),
        "len_max": int(lens.max()),
        "frac_tokens_in_docs_ge_8000": float(lens[lens >= 8000].sum() / total),
        "record_batches": 1 if not batch_rows else -(-len(lens) // batch_rows),
        "hf": hf_note,
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=1))
    return meta


def open_ipc_table(data_dir: Path) -> pa.Table:
    """Memory-map ``data.arrow`` and return it as a zero-copy ``pyarrow.Table``."""
    return pa.ipc.open_file(pa.memory_map(str(data_dir / DATA_FILE), "r")).read_all()


def list_chunks(table: pa.Table, column: str = "input_ids") -> list[tuple[np.ndarray, np.ndarray]]:
    """(offsets int64, values) per chunk, zero-copy views into the memory map."""
    out = []
    for chunk in table.column(column).chunks:
        offs = np.asarray(chunk.offsets).astype(np.int64)
        vals = chunk.values.to_numpy(zero_copy_only=True)
        out.append((offs, vals))
    return out


def warm_page_cache(data_dir: Path) -> None:
    """Read every data file once so that no mode pays for disk reads."""
    for fn in [data_dir / DATA_FILE, *sorted((data_dir / HF_DIR).glob("*.arrow"))]:
        if fn.exists():
            with open(fn, "rb") as f:
                while f.read(1 << 24):
                    pass


def clean_hf_cache(data_dir: Path) -> None:
    """Remove ``datasets.map`` cache files that TRL leaves in the dataset dir."""
    hf = data_dir / HF_DIR
    for fn in [*hf.glob("cache-*.arrow"), *hf.glob("tmp*")]:
        try:
            if fn.is_dir():
                shutil.rmtree(fn)
            else:
                fn.unlink()
        except OSError:
            pass


# ----------------------------------------------------------------------------- process memory


# ----------------------------------------------------------------------------- output checks


def check_packed(
    meta: dict[str, Any],
    seq_len: int,
    row_lengths: np.ndarray,
    values: list[np.ndarray],
    seq_lengths: np.ndarray | None,
    in_lengths: np.ndarray,
) -> dict[str, Any]:
    """Compare a packed output against the input: token count, checksum, rows <= seq_len, same doc lengths."""
    out_tokens = int(row_lengths.sum())
    checks: dict[str, Any] = {
        "tokens_equal": out_tokens == meta["tokens"],
        "tokens_missing": meta["tokens"] - out_tokens,
        "rows_le_seq_len": bool((row_lengths <= seq_len).all()),
        "checksum_equal": sum(int(v.sum(dtype=np.int64)) for v in values) == meta["checksum"],
    }
    if seq_lengths is not None:
        checks["doc_lengths_equal"] = bool(
            len(seq_lengths) == len(in_lengths) and np.array_equal(np.sort(seq_lengths), np.sort(in_lengths))
        )
    checks["ok"] = all(v for k, v in checks.items() if k != "tokens_missing")
    return checks


def input_lengths(table: pa.Table) -> np.ndarray:
    """Document lengths of the input table (int64)."""
    return np.concatenate([np.diff(offs) for offs, _ in list_chunks(table)])


def arrow_list_stats(col: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, list[np.ndarray]]:
    """Per-row list lengths and the (sliced) flat values of every chunk of a list column."""
    chunks = col.chunks if isinstance(col, pa.ChunkedArray) else [col]
    lens = [pc.list_value_length(c).to_numpy(zero_copy_only=False).astype(np.int64) for c in chunks]
    vals = [c.flatten().to_numpy(zero_copy_only=False) for c in chunks]
    return (np.concatenate(lens) if lens else np.zeros(0, np.int64)), vals


def flat_values(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """All values of a list column concatenated (int64)."""
    _, vals = arrow_list_stats(col)
    return np.concatenate(vals).astype(np.int64) if vals else np.zeros(0, np.int64)


# ----------------------------------------------------------------------------- modes


def run_memcpy(data_dir: Path, meta: dict[str, Any], inner: int, mem: PeakMemory) -> dict[str, Any]:
    """Copy the whole token buffer: first from the cold mmap, then into fresh memory, then pre-faulted."""
    table = open_ipc_table(data_dir)
    vals = [v for _, v in list_chunks(table)]
    nbytes = sum(v.nbytes for v in vals)
    rss_before = rss_mib()
    mem.arm()
    t0 = time.perf_counter()
    first = [v.copy() for v in vals]
    t_first = time.perf_counter() - t0
    del first
    t_fresh = []
    for _ in range(inner):
        t0 = time.perf_counter()
        fresh = [v.copy() for v in vals]
        t_fresh.append(time.perf_counter() - t0)
        del fresh
    dst = [np.empty_like(v) for v in vals]
    for d in dst:
        d[:] = 0  # pre-fault
    t_pre = []
    for _ in range(inner):
        t0 = time.perf_counter()
        for d, v in zip(dst, vals, strict=True):
            np.copyto(d, v)
        t_pre.append(time.perf_counter() - t0)
    mem.record()
    checks = check_packed(meta, SEQ_LEN_DEFAULT, np.array([sum(d.size for d in dst)]), dst, None, np.zeros(0))
    checks.pop("rows_le_seq_len")
    checks["ok"] = checks["tokens_equal"] and checks["checksum_equal"]
    tf, tp = min(t_fresh), min(t_pre)
    return {
        "seconds": tf,
        "tokens_per_s": meta["tokens"] / tf,
        "threads": 1,
        "rows": None,
        "fill_rate": None,
        "out_tokens": meta["tokens"],
        "rss_before_MiB": rss_before,
        "checks": checks,
        "fresh_GBps": nbytes / tf / 1e9,
        "prefaulted_seconds": tp,
        "prefaulted_tokens_per_s": meta["tokens"] / tp,
        "prefaulted_GBps": nbytes / tp / 1e9,
        "first_from_cold_mmap_seconds": t_first,
        "first_from_cold_mmap_tokens_per_s": meta["tokens"] / t_first,
        "inner_repeats": inner,
    }


def ffd_plan_numpy(lengths: np.ndarray, cap: int) -> tuple[np.ndarray, int]:
    """First-fit-decreasing: items in decreasing length, first fitting bin found by a vectorised scan."""
    order = np.argsort(-lengths, kind="stable")
    remaining = np.empty(len(lengths), dtype=np.int64)  # at most one bin per item
    assign = np.empty(len(lengths), dtype=np.int64)
    nbins = 0
    for idx in order.tolist():
        need = lengths[idx]
        b = nbins
        if nbins:
            fits = remaining[:nbins] >= need
            first = int(fits.argmax())
            if fits[first]:
                b = first
        if b == nbins:
            remaining[b] = cap
            nbins += 1
        remaining[b] -= need
        assign[idx] = b
    return assign, nbins


def run_np_ffd(data_dir: Path, meta: dict[str, Any], seq_len: int, mem: PeakMemory) -> dict[str, Any]:
    """Plan with numpy FFD on the lengths, then slice-gather every doc into one freshly allocated int32 buffer."""
    table = open_ipc_table(data_dir)
    chunks = list_chunks(table)
    lengths = np.minimum(np.concatenate([np.diff(o) for o, _ in chunks]), seq_len)  # truncate (no-op here)
    starts = np.concatenate([o[:-1] for o, _ in chunks])
    chunk_id = np.concatenate([np.full(len(o) - 1, i, dtype=np.int64) for i, (o, _) in enumerate(chunks)])
    vals = [v for _, v in chunks]
    rss_before = rss_mib()
    mem.arm()

    t0 = time.perf_counter()
    assign, nbins = ffd_plan_numpy(lengths, seq_len)
    t1 = time.perf_counter()
    order = np.lexsort((np.arange(len(assign)), assign))  # group by bin, stable inside a bin
    lens_sorted = lengths[order]
    out = np.empty(int(lens_sorted.sum()), dtype=np.int32)
    pos = 0
    for i, n in zip(order.tolist(), lens_sorted.tolist(), strict=True):
        s = starts[i]
        out[pos : pos + n] = vals[chunk_id[i]][s : s + n]
        pos += n
    row_tokens = np.bincount(assign, weights=lengths, minlength=nbins).astype(np.int64)
    row_offsets = np.zeros(nbins + 1, dtype=np.int64)
    np.cumsum(row_tokens, out=row_offsets[1:])
    seq_lengths = lens_sorted.astype(np.int32)
    t2 = time.perf_counter()
    mem.record()

    checks = check_packed(meta, seq_len, row_tokens, [out], seq_lengths, input_lengths(table))
    return {
        "seconds": t2 - t0,
        "tokens_per_s": meta["tokens"] / (t2 - t0),
        "threads": 1,
        "rows": int(nbins),
        "fill_rate": int(row_tokens.sum()) / (nbins * seq_len),
        "out_tokens": int(row_tokens.sum()),
        "rss_before_MiB": rss_before,
        "checks": checks,
        "plan_seconds": t1 - t0,
        "gather_seconds": t2 - t1,
    }


def run_longmagpie(
    data_dir: Path,
    meta: dict[str, Any],
    seq_len: int,
    strategy: str,
    num_threads: int | None,
    mem: PeakMemory,
    warmup: bool,
) -> dict[str, Any]:
    """Time ``longmagpie.pack`` on the memory-mapped table; read rows/fill from the returned table."""
    import longmagpie

    table = open_ipc_table(data_dir)
    kwargs: dict[str, Any] = {"seq_len": seq_len, "strategy": strategy}
    notes: list[str] = []
    try:
        params = inspect.signature(longmagpie.pack).parameters
    except (TypeError, ValueError):  # compiled function without a signature
        params = {"num_threads": None}
    threads = num_threads if num_threads else (os.cpu_count() or 1)
    if "num_threads" in params or any(p.kind == p.VAR_KEYWORD for p in params.values() if p is not None):
        kwargs["num_threads"] = threads
    else:
        notes.append("longmagpie.pack has no num_threads parameter; library default used")
        threads = -1
    if warmup:  # one untimed call on 8 rows: pays one-time costs (lazy imports, pool start-up)
        longmagpie.pack(table.slice(0, 8), **kwargs)
    rss_before = rss_mib()
    mem.arm()
    t0 = time.perf_counter()
    packed = longmagpie.pack(table, **kwargs)
    t1 = time.perf_counter()
    mem.record()

    res: dict[str, Any] = {
        "seconds": t1 - t0,
        "tokens_per_s": meta["tokens"] / (t1 - t0),
        "threads": threads,
        "rss_after_call_MiB": rss_mib(),
        "version": getattr(longmagpie, "__version__", "?"),
        "columns": packed.column_names,
        "schema": str(packed.schema).replace("\n", "; "),
    }
    rows = packed.num_rows
    row_lengths, values = arrow_list_stats(packed.column("input_ids"))
    seq_lengths = flat_values(packed.column("seq_lengths")) if "seq_lengths" in packed.column_names else None
    checks = check_packed(meta, seq_len, row_lengths, values, seq_lengths, input_lengths(table))
    if "length" in packed.column_names:
        length_col = packed.column("length").to_numpy().astype(np.int64)
        checks["length_col_matches_input_ids"] = bool(np.array_equal(length_col, row_lengths))
    if "assistant_masks" in packed.column_names:
        mask_lens, _ = arrow_list_stats(packed.column("assistant_masks"))
        checks["mask_lengths_match"] = bool(np.array_equal(mask_lens, row_lengths))
    checks["ok"] = all(v for k, v in checks.items() if k not in ("tokens_missing", "ok"))
    out_tokens = int(row_lengths.sum())
    res.update(
        rows=rows,
        out_tokens=out_tokens,
        fill_rate=out_tokens / (rows * seq_len) if rows else None,
        rss_before_MiB=rss_before,
        checks=checks,
        notes=notes,
        max_docs_per_row=int(np.max(arrow_list_stats(packed.column("seq_lengths"))[0]))
        if "seq_lengths" in packed.column_names and rows
        else None,
    )
    if hasattr(longmagpie, "pack_stats"):
        try:
            st = longmagpie.pack_stats(packed)
            res["pack_stats"] = {
                k: getattr(st, k) for k in ("rows", "input_tokens", "output_tokens", "fill_rate") if hasattr(st, k)
            }
        except Exception as e:  # report any failure, never crash the benchmark
            res["pack_stats_error"] = f"{type(e).__name__}: {e}"
    return res


def run_pmix(
    data_dir: Path, meta: dict[str, Any], seq_len: int, num_threads: int | None, mem: PeakMemory, warmup: bool
) -> dict[str, Any]:
    """Time ``longmagpie.pack_pmix(fill="best_fit")`` on a long/short split of the memory-mapped samples.

    The split (by length, ``PMIX_LONG_MIN``) is made before the timed call; ``exhausted="short_only"`` packs the
    short pool to its end once the long one is out, so nearly every input token is placed. Tokens/s counts output
    tokens.
    """
    import longmagpie

    table = open_ipc_table(data_dir)
    lengths = pc.list_value_length(table.column("input_ids"))
    long_t = table.filter(pc.greater_equal(lengths, PMIX_LONG_MIN))
    short_t = table.filter(pc.less(lengths, PMIX_LONG_MIN))
    threads = num_threads if num_threads else (os.cpu_count() or 1)
    kwargs: dict[str, Any] = {
        "seq_len": seq_len,
        "fill": "best_fit",
        "exhausted": "short_only",
        "seed": 0,
        "num_threads": threads,
    }
    if warmup:
        longmagpie.pack_pmix(long_t.slice(0, 4), short_t.slice(0, 64), **kwargs)
    rss_before = rss_mib()
    mem.arm()
    t0 = time.perf_counter()
    packed = longmagpie.pack_pmix(long_t, short_t, **kwargs)
    t1 = time.perf_counter()
    mem.record()
    row_lengths, _values = arrow_list_stats(packed.column("input_ids"))
    out_tokens = int(row_lengths.sum())
    checks: dict[str, Any] = {
        "rows_le_seq_len": bool((row_lengths <= seq_len).all()),
        "length_col_matches_input_ids": bool(
            np.array_equal(packed.column("length").to_numpy().astype(np.int64), row_lengths)
        ),
    }
    checks["ok"] = all(checks.values())
    rows = packed.num_rows
    return {
        "seconds": t1 - t0,
        "tokens_per_s": out_tokens / (t1 - t0),
        "threads": threads,
        "rows": rows,
        "fill_rate": out_tokens / (rows * seq_len) if rows else None,
        "out_tokens": out_tokens,
        "rss_before_MiB": rss_before,
        "checks": checks,
        "short_token_share": sum(len(c.values) for c in short_t.column("input_ids").chunks) / meta["tokens"],
        "unplaced_tokens": meta["tokens"] - out_tokens,
    }


def run_trl(
    data_dir: Path, meta: dict[str, Any], seq_len: int, mode: str, mem: PeakMemory, warmup: bool
) -> dict[str, Any]:
    """Time ``trl.pack_dataset`` (bfd) on the memory-mapped ``save_to_disk`` dataset."""
    import datasets
    import trl
    from datasets import load_from_disk
    from datasets.utils.logging import disable_progress_bar
    from trl import pack_dataset

    disable_progress_bar()
    clean_hf_cache(data_dir)
    ds = load_from_disk(str(data_dir / HF_DIR))
    # load_from_cache_file=False only stops a stale cache from being reused; the packing itself is as shipped.
    map_kwargs: dict[str, Any] = {"load_from_cache_file": False}
    if mode == "trl_bfd_full":
        map_kwargs["batch_size"] = None
    if warmup:  # one untimed call on 8 rows
        pack_dataset(ds.select(range(8)), seq_length=seq_len, strategy="bfd", map_kwargs=map_kwargs)
        clean_hf_cache(data_dir)
    rss_before = rss_mib()
    mem.arm()
    t0 = time.perf_counter()
    packed = pack_dataset(ds, seq_length=seq_len, strategy="bfd", map_kwargs=map_kwargs)
    t1 = time.perf_counter()
    mem.record()
    row_lengths, values = arrow_list_stats(packed.data.column("input_ids"))
    seq_lengths = flat_values(packed.data.column("seq_lengths")) if "seq_lengths" in packed.column_names else None
    in_lengths = np.asarray(ds.data.column("input_ids").combine_chunks().value_lengths()).astype(np.int64)
    checks = check_packed(meta, seq_len, row_lengths, values, seq_lengths, in_lengths)
    rows = packed.num_rows
    out_tokens = int(row_lengths.sum())
    res = {
        "seconds": t1 - t0,
        "tokens_per_s": meta["tokens"] / (t1 - t0),
        "threads": 1,
        "rows": rows,
        "fill_rate": out_tokens / (rows * seq_len) if rows else None,
        "out_tokens": out_tokens,
        "rss_before_MiB": rss_before,
        "checks": checks,
        "version": trl.__version__,
        "datasets_version": datasets.__version__,
        "map_batch_size": map_kwargs.get("batch_size", "default (1000)"),
        "rows_below_99pct": int((row_lengths < 0.99 * seq_len).sum()),
    }
    del packed
    clean_hf_cache(data_dir)
    return res


def run_mode(
    mode: str, data_dir: Path, seq_len: int, num_threads: int | None, inner: int, prewarm_mib: int, warmup: bool
) -> dict[str, Any]:
    """Run one mode in this process; return its result dict (with peak RSS)."""
    meta = json.loads((data_dir / META_FILE).read_text())
    mem = PeakMemory(auto_prewarm_mib(meta["tokens"], 5 * 4) if prewarm_mib < 0 else prewarm_mib)
    if mode == "memcpy_fresh":
        res = run_memcpy(data_dir, meta, inner, mem)
    elif mode == "np_ffd":
        res = run_np_ffd(data_dir, meta, seq_len, mem)
    elif mode in PMIX_MODES:
        res = run_pmix(data_dir, meta, seq_len, num_threads, mem, warmup)
    elif mode in LONGMAGPIE_MODES:
        spec = LONGMAGPIE_MODES[mode]
        res = run_longmagpie(
            data_dir, meta, seq_len, spec["strategy"], spec.get("num_threads", num_threads), mem, warmup
        )
    elif mode in TRL_MODES:
        res = run_trl(data_dir, meta, seq_len, mode, mem, warmup)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    res.update(
        mode=mode,
        data=data_dir.name,
        seq_len=seq_len,
        in_tokens=meta["tokens"],
        in_samples=meta["samples"],
        ru_maxrss_MiB=peak_rss_mib(),
        loadavg_1m=os.getloadavg()[0],
        **mem.info(),
    )
    return res


# ----------------------------------------------------------------------------- driver


def skip_reason(mode: str, data_dir: Path) -> str | None:
    """Why a mode cannot run in this environment (None if it can)."""
    if mode in TRL_MODES:
        if importlib.util.find_spec("trl") is None:
            return "skipped: trl not installed"
        if not (data_dir / HF_DIR).exists():
            return f"skipped: {data_dir / HF_DIR} missing (gen without datasets?)"
    if (mode in LONGMAGPIE_MODES or mode in PMIX_MODES) and importlib.util.find_spec("longmagpie") is None:
        return "skipped: longmagpie not installed"
    return None


def spawn(mode: str, data_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Run one mode in a fresh interpreter and parse its RESULT line."""
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "run",
        "--mode",
        mode,
        "--data",
        str(data_dir),
        "--seq-len",
        str(args.seq_len),
        "--inner",
        str(args.inner),
        "--prewarm-mib",
        str(args.prewarm_mib),
    ]
    if args.warmup:
        cmd.append("--warmup")
    if args.num_threads:
        cmd += ["--num-threads", str(args.num_threads)]
    env = dict(
        os.environ,
        HF_DATASETS_DISABLE_PROGRESS_BARS="1",
        TRANSFORMERS_VERBOSITY="error",
        TOKENIZERS_PARALLELISM="false",
        HF_HUB_OFFLINE="1",
    )
    t0 = time.time()
    try:
        p = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=args.timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"mode": mode, "error": f"timeout after {args.timeout} s"}
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    if p.returncode != 0 or not lines:
        return {"mode": mode, "error": f"rc={p.returncode}: " + (p.stderr.strip()[-3000:] or p.stdout[-3000:])}
    res = json.loads(lines[-1][len("RESULT ") :])
    res["process_wall_s"] = time.time() - t0
    return res


def median_of(runs: list[dict[str, Any]], key: str) -> float | None:
    """Median of ``key`` over the runs that have it."""
    xs = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(xs) if xs else None


def summarize(mode: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the successful runs of one mode."""
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return {"mode": mode, "error": runs[0].get("error", "no runs") if runs else "no runs"}
    tps = [r["tokens_per_s"] for r in ok]
    s: dict[str, Any] = {
        "mode": mode,
        "n": len(ok),
        "seconds": median_of(ok, "seconds"),
        "tokens_per_s": statistics.median(tps),
        "tokens_per_s_min": min(tps),
        "tokens_per_s_max": max(tps),
        "rows": median_of(ok, "rows"),
        "fill_rate": median_of(ok, "fill_rate"),
        "peak_rss_MiB": median_of(ok, "peak_rss_MiB"),
        "rss_before_MiB": median_of(ok, "rss_before_MiB"),
        "threads": ok[0].get("threads"),
        "all_checks_ok": all(r.get("checks", {}).get("ok", False) for r in ok),
        "failed_checks": sorted({k for r in ok for k, v in r.get("checks", {}).items() if v is False and k != "ok"}),
        "errors": len(runs) - len(ok),
    }
    for extra in (
        "prefaulted_tokens_per_s",
        "first_from_cold_mmap_tokens_per_s",
        "fresh_GBps",
        "prefaulted_GBps",
        "plan_seconds",
        "gather_seconds",
        "version",
    ):
        if extra in ok[0]:
            s[extra] = median_of(ok, extra) if extra != "version" else ok[0][extra]
    return s


def fmt_rate(x: float | None) -> str:
    """Tokens/s as M tok/s."""
    return "-" if x is None else f"{x / 1e6:,.1f}"


def print_table(
    data_name: str, meta: dict[str, Any], summaries: dict[str, dict[str, Any]], skipped: dict[str, str], seq_len: int
) -> list[str]:
    """Print one dataset's results table and its ratios; return the printed lines."""
    lines = [
        "",
        (
            f"== {data_name}: mix={meta['mix']} tokens={meta['tokens']:,} docs={meta['samples']:,} "
            f"mean={meta['len_mean']:.0f} p50={meta['len_p50']:.0f} seq_len={seq_len} =="
        ),
        (
            f"{'mode':22s} {'thr':>3s} {'median s':>9s} {'M tok/s':>9s} {'(min-max)':>19s} {'rows':>8s} "
            f"{'fill':>9s} {'peak RSS':>9s} {'RSS before':>10s}  tokens/checks"
        ),
    ]
    for mode, s in summaries.items():
        if "error" in s:
            lines.append(f"{mode:22s} ERROR: {s['error'].splitlines()[-1][:200] if s['error'] else ''}")
            continue
        fill = f"{s['fill_rate'] * 100:.3f}%" if s.get("fill_rate") is not None else "-"
        rows = f"{s['rows']:,.0f}" if s.get("rows") is not None else "-"
        rng = f"({fmt_rate(s['tokens_per_s_min'])}-{fmt_rate(s['tokens_per_s_max'])})"
        chk = "ok" if s["all_checks_ok"] else "FAIL " + ",".join(s["failed_checks"])
        if s["errors"]:
            chk += f" ({s['errors']} run(s) errored)"
        lines.append(
            f"{mode:22s} {s.get('threads') or '-':>3} {s['seconds']:9.3f} {fmt_rate(s['tokens_per_s']):>9s} "
            f"{rng:>19s} {rows:>8s} {fill:>9s} {s['peak_rss_MiB']:9.0f} {s['rss_before_MiB']:10.0f}  {chk}"
        )
    for mode, why in skipped.items():
        lines.append(f"{mode:22s} {why}")
    mc = summaries.get("memcpy_fresh")
    if mc and "error" not in mc:
        lines.append(
            f"   memcpy info: fresh {mc['fresh_GBps']:.1f} GB/s; pre-faulted {fmt_rate(mc['prefaulted_tokens_per_s'])}"
            f" M tok/s ({mc['prefaulted_GBps']:.1f} GB/s); first copy from cold mmap "
            f"{fmt_rate(mc['first_from_cold_mmap_tokens_per_s'])} M tok/s"
        )
    nf = summaries.get("np_ffd")
    if nf and "error" not in nf:
        lines.append(f"   np_ffd info: plan {nf['plan_seconds']:.3f} s + gather {nf['gather_seconds']:.3f} s (medians)")
    lines.append("ratios (tokens/s medians):")
    lookup = dict(summaries)
    if mc and "error" not in mc:  # the memcpy child's secondary copies, usable as denominators
        lookup["memcpy_prefaulted"] = {"tokens_per_s": mc["prefaulted_tokens_per_s"]}
        lookup["memcpy_cold_mmap"] = {"tokens_per_s": mc["first_from_cold_mmap_tokens_per_s"]}
    for num, den, spec, what in RATIOS:
        if spec == "copy":
            target: float | None = COPY_TARGETS.get(meta["mix"])
        elif spec == "copy_short":
            target = COPY_TARGETS["short"] if meta["mix"] == "short" else None
        else:
            target = None if isinstance(spec, str) else spec
        a, b = lookup.get(num), lookup.get(den)
        if not a or not b or "error" in a or "error" in b:
            if target is not None:
                lines.append(f"   {num + '/' + den:40s}      n/a   target >= {target:g}   ({what})")
            continue
        r = a["tokens_per_s"] / b["tokens_per_s"]
        verdict = "" if target is None else f"target >= {target:g}  {'PASS' if r >= target else 'MISS'}"
        lines.append(f"   {num + '/' + den:40s} {r:8.2f}   {verdict:22s} ({what})")
    for mode, s in summaries.items():
        if mode in LONGMAGPIE_MODES and "error" not in s and s.get("fill_rate") is not None:
            ok = s["fill_rate"] >= FILL_TARGET
            lines.append(
                f"   fill {mode:31s} {s['fill_rate'] * 100:7.3f}%  target >= {FILL_TARGET * 100:g}%  "
                f"{'PASS' if ok else 'MISS'}"
            )
    print("\n".join(lines), flush=True)
    return lines


def bench_dataset(data_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Run every selected mode ``--repeat`` times (round-robin) on one dataset; print and return the summary."""
    meta = json.loads((data_dir / META_FILE).read_text())
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in ALL_MODES]
    if unknown:
        raise SystemExit(f"unknown mode(s) {unknown}; choose from {', '.join(ALL_MODES)}")
    skipped = {m: why for m in modes if (why := skip_reason(m, data_dir))}
    for m, why in skipped.items():
        print(f"[{data_dir.name}] {m}: {why}", flush=True)
    active = [m for m in modes if m not in skipped]
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in active}
    for rep in range(args.repeat):
        for mode in active:
            warm_page_cache(data_dir)
            res = spawn(mode, data_dir, args)
            runs[mode].append(res)
            if "error" in res:
                print(f"[{data_dir.name}] rep {rep + 1} {mode}: ERROR {res['error'][-400:]}", flush=True)
            else:
                chk = "ok" if res["checks"]["ok"] else f"CHECK FAIL {res['checks']}"
                print(
                    f"[{data_dir.name}] rep {rep + 1} {mode:22s} {res['seconds']:8.3f} s "
                    f"{fmt_rate(res['tokens_per_s']):>9s} M tok/s  peak RSS {res['peak_rss_MiB']:.0f} MiB  "
                    f"load {res['loadavg_1m']:.1f}  {chk}",
                    flush=True,
                )
    summaries = {m: summarize(m, runs[m]) for m in active}
    loads = [r["loadavg_1m"] for rs in runs.values() for r in rs if "loadavg_1m" in r]
    if loads:
        print(
            f"[{data_dir.name}] 1-min load average at child exit: {min(loads):.1f}-{max(loads):.1f} "
            f"on {os.cpu_count()} CPUs (other work on the box inflates timings)",
            flush=True,
        )
    printed = print_table(data_dir.name, meta, summaries, skipped, args.seq_len)
    return {
        "data": str(data_dir),
        "meta": meta,
        "summaries": summaries,
        "skipped": skipped,
        "runs": runs,
        "table": printed,
    }


def environment() -> dict[str, Any]:
    """Versions and machine facts recorded with the results."""
    env: dict[str, Any] = {
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    env.update(package_versions(("numpy", "pyarrow", "datasets", "trl", "longmagpie")))
    try:
        with open("/proc/cpuinfo") as f:
            env["cpu"] = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), None)
        with open("/proc/meminfo") as f:
            env["mem_total_GiB"] = round(int(f.readline().split()[1]) / 2**20, 1)
    except OSError:
        pass
    return env


# ----------------------------------------------------------------------------- CLI


def cmd_gen(args: argparse.Namespace) -> None:
    """``gen`` sub-command."""
    tokens = QUICK_TOKENS if args.quick else int(float(args.tokens))
    meta = generate(Path(args.out), args.mix, tokens, args.seed, args.batch_rows, not args.no_hf)
    print(json.dumps(meta))


def cmd_run(args: argparse.Namespace) -> None:
    """``run`` sub-command (one mode, in this process)."""
    res = run_mode(
        args.mode, Path(args.data), args.seq_len, args.num_threads or None, args.inner, args.prewarm_mib, args.warmup
    )
    print("RESULT " + json.dumps(res), flush=True)


def cmd_all(args: argparse.Namespace) -> None:
    """``all`` sub-command: every mode on every dataset, tables, ratios, optional JSON."""
    data_dirs = [Path(d) for d in args.data or []]
    if args.quick:
        args.repeat = 1 if args.repeat is None else args.repeat
        if not data_dirs:
            root = Path(args.quick_root or tempfile.gettempdir()) / "longmagpie_bench_quick"
            for mix in ("long", "short"):
                d = root / f"{mix}_5M"
                if not (d / META_FILE).exists():
                    print(f"generating {d} ...", flush=True)
                    generate(d, mix, QUICK_TOKENS, 0, 0, True)
                data_dirs.append(d)
    if args.repeat is None:
        args.repeat = 3
    if not data_dirs:
        raise SystemExit("give --data DIR (from `gen`) at least once, or --quick")
    env = environment()
    print(json.dumps(env), flush=True)
    prewarm = "auto" if args.prewarm_mib < 0 else f"{args.prewarm_mib} MiB"
    print(
        f"settings: repeat={args.repeat} seq_len={args.seq_len} num_threads={args.num_threads or 'all cores'} "
        f"warmup={'on' if args.warmup else 'off'} prewarm={prewarm}",
        flush=True,
    )
    results = [bench_dataset(d, args) for d in data_dirs]
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(
            json.dumps({"environment": env, "args": vars(args), "results": results}, indent=1, default=str)
        )
        print(f"\nwrote {args.json}")


def main() -> None:
    """Parse the command line and dispatch."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    g = sub.add_parser("gen", help="write a synthetic dataset (IPC file + save_to_disk)")
    g.add_argument("--mix", default="long", choices=["long", "short"])
    g.add_argument("--tokens", default="200e6", help="total tokens (float syntax ok)")
    g.add_argument("--quick", action="store_true", help=f"{QUICK_TOKENS:.0e} tokens")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--batch-rows", type=int, default=0, help="rows per IPC record batch (0 = one batch)")
    g.add_argument("--no-hf", action="store_true", help="skip the datasets save_to_disk copy (no TRL modes)")
    g.add_argument("--out", required=True)

    a = sub.add_parser("all", help="run the modes, each in its own subprocess, print tables + ratios")
    a.add_argument("--data", action="append", help="dataset dir from `gen` (repeatable)")
    a.add_argument("--modes", default=DEFAULT_MODES, help=f"comma-separated subset of: {DEFAULT_MODES}")
    a.add_argument("--repeat", type=int, default=None, help="runs per mode (default 3; 1 with --quick)")
    a.add_argument("--seq-len", type=int, default=SEQ_LEN_DEFAULT)
    a.add_argument("--num-threads", type=int, default=0, help="longmagpie num_threads (0 = all cores)")
    a.add_argument("--inner", type=int, default=3, help="copies per memcpy_fresh child (best is kept)")
    a.add_argument(
        "--prewarm-mib",
        type=int,
        default=-1,
        help="pre-fault and free this much memory right before each timed call (-1 = auto: 5x token bytes, "
        "at most half of MemAvailable; 0 = off). Peak RSS excludes it.",
    )
    a.add_argument(
        "--warmup",
        action="store_true",
        help="make one untimed longmagpie/TRL call on 8 rows first (excludes one-time costs such as lazy imports)",
    )
    a.add_argument("--timeout", type=int, default=1800, help="seconds per child process")
    a.add_argument("--json", default="", help="write environment, raw runs and summaries here")
    a.add_argument("--quick", action="store_true", help="smoke run: 5e6-token long+short data, repeat 1")
    a.add_argument("--quick-root", default="", help="where --quick keeps its data (default: system temp dir)")

    r = sub.add_parser("run", help="time one mode in this process (used by `all`)")
    r.add_argument("--mode", required=True, choices=ALL_MODES)
    r.add_argument("--data", required=True)
    r.add_argument("--seq-len", type=int, default=SEQ_LEN_DEFAULT)
    r.add_argument("--num-threads", type=int, default=0)
    r.add_argument("--inner", type=int, default=3)
    r.add_argument("--prewarm-mib", type=int, default=-1)
    r.add_argument("--warmup", action="store_true")

    args = ap.parse_args()
    {"gen": cmd_gen, "all": cmd_all, "run": cmd_run}[args.cmd](args)


if __name__ == "__main__":
    main()
