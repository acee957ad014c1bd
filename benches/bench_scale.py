#!/usr/bin/env python3
r"""Scale benchmark: >= 10 B tokens of tokenized samples as Parquet shards, packed by one process and by Ray Data.

Data. Synthetic tokenized samples (``longmagpie.synthetic_samples``, long-context mix: 70 % 200-4,000 tokens,
30 % 8,000-60,000; int32 ids, int8 masks) are written as zstd Parquet shards of ``--shard-tokens`` tokens. The
disk holds ~40 GB free, less than 10 B tokens of shards, so the run goes in GROUPS: ``--group-tokens`` of shards
are written to a temporary directory, packed by every engine, then deleted before the next group is written
(the disk never holds more than one group). Totals are summed over the groups.

Engines, on each group's shards:

    single   ``longmagpie.pack_stream`` over the shards read file by file with ``ParquetFile.iter_batches``
             (lazily; one window of ``--window-tokens`` at a time), in a child process per group: peak RSS = that
             child's ``VmHWM`` (its ``ru_maxrss`` would include the parent's peak, inherited through vfork +
             exec); target < 2 GiB over a group of many windows, printed, never asserted.
    ray      ``longmagpie.distributed.ray.ray_pack`` over the shard directory on a local Ray cluster
             (``ray.init(num_cpus=--ray-cpus)``, one packing window per task of ``--ray-window-bytes``), the
             packed rows counted inside the workers (a map that keeps only row and token counts), so no row
             travels to the driver; peak RSS = the driver's, and the largest worker's as Ray reports it.

Packed rows are counted, not written (writing 10 B packed tokens would need the disk twice). Tokens/s = packed
tokens / wall time of the engine on the group, Parquet decoding included; generation and writing are timed
separately. Fill rate = packed tokens / (rows x seq_len).

    P=/work/mlenv/bin/python; export PYTHONPATH=$PWD/python
    $P benches/bench_scale.py --tokens 5e8 --group-tokens 2.5e8      # smoke run
    $P benches/bench_scale.py                                       # 10 B tokens in groups of 2 B
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from benchkit import peak_rss_mib, status_mib

SEQ_LEN = 65536
RSS_TARGET_MIB = 2048


def int_expr(text: str) -> int:
    """Parse ``10e9``, ``2**27`` or ``1_000``."""
    text = text.replace("_", "")
    if "**" in text:
        base, exp = text.split("**")
        return int(base) ** int(exp)
    return int(float(text))


def write_group(folder: Path, group: int, tokens: int, shard_tokens: int, seed: int) -> dict[str, Any]:
    """Write ``tokens`` of samples as shards ``g<group>-<k>.parquet``; return tokens, files, bytes, seconds."""
    from longmagpie import synthetic_samples

    t0 = time.perf_counter()
    written = files = nbytes = 0
    k = 0
    while written < tokens:
        table = synthetic_samples(min(shard_tokens, tokens - written), "long", seed=seed * 1_000_003 + group * 1009 + k)
        path = folder / f"g{group:03d}-{k:04d}.parquet"
        # token columns plain-encoded (a dictionary of ~150k ids buys nothing), zstd-compressed
        pq.write_table(table, path, compression="zstd", row_group_size=256, use_dictionary=["source"])
        written += int(pc.sum(pc.list_value_length(table.column("input_ids"))).as_py())
        nbytes += path.stat().st_size
        files += 1
        k += 1
        del table
    return {"tokens": written, "files": files, "bytes": nbytes, "seconds": time.perf_counter() - t0}


def single_child(folder: str, seq_len: int, window_tokens: int) -> dict[str, Any]:
    """Child process: pack_stream over the shards of ``folder``; print counts, seconds and peak RSS as JSON."""
    import longmagpie

    def batches() -> Any:
        # one file and one batch at a time (a pyarrow.dataset scanner reads several files ahead)
        for f in sorted(Path(folder).glob("*.parquet")):
            yield from pq.ParquetFile(f).iter_batches(
                batch_size=1024, columns=["input_ids", "assistant_masks", "source"]
            )

    t0 = time.perf_counter()
    stream = longmagpie.pack_stream(batches(), seq_len=seq_len, window_tokens=window_tokens)
    rows = tokens = 0
    for batch in stream:
        rows += batch.num_rows
        tokens += int(pc.sum(batch.column("length")).as_py() or 0)
        del batch
    seconds = time.perf_counter() - t0
    # VmHWM, not ru_maxrss: Linux carries the parent's high-water mark into a vfork+exec'd child's ru_maxrss
    return {"rows": rows, "tokens": tokens, "seconds": seconds, "peak_rss_MiB": status_mib("VmHWM"),
            "windows": stream.windows, "input_tokens": stream.stats.input_tokens}  # fmt: skip


def run_single(folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child-single", str(folder), "--seq-len", str(args.seq_len),
         "--window-tokens", str(args.window_tokens)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def _count(table: pa.Table) -> pa.Table:
    """Worker-side reduction of packed rows to counts (so no row moves to the driver)."""
    tokens = int(pc.sum(table.column("length")).as_py() or 0) if table.num_rows else 0
    return pa.table({"rows": [table.num_rows], "tokens": [tokens]})


def run_ray(folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    from longmagpie.distributed.ray import ray_pack

    t0 = time.perf_counter()
    ds = ray_pack(folder, args.seq_len, window_bytes=args.ray_window_bytes)
    counts = ds.map_batches(_count, batch_size=None, batch_format="pyarrow").to_arrow_refs()
    import ray

    tables = ray.get(counts)
    rows = sum(sum(t.column("rows").to_pylist()) for t in tables)
    tokens = sum(sum(t.column("tokens").to_pylist()) for t in tables)
    return {"rows": rows, "tokens": tokens, "seconds": time.perf_counter() - t0, "driver_peak_rss_MiB": peak_rss_mib()}


def worker_peak_rss_mib() -> float:
    """Largest resident set among this machine's Ray worker processes right now (MiB; 0 if unknown)."""
    best = 0.0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"ray::" not in cmd and b"default_worker.py" not in cmd:
                continue
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    best = max(best, int(line.split()[1]) / 1024)
        except OSError:
            continue
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int_expr, default=10_000_000_000, help="total tokens (default 10e9)")
    ap.add_argument("--group-tokens", type=int_expr, default=2_000_000_000, help="tokens on disk at once")
    ap.add_argument("--shard-tokens", type=int_expr, default=2**26, help="tokens per Parquet shard")
    ap.add_argument("--seq-len", type=int_expr, default=SEQ_LEN)
    ap.add_argument("--window-tokens", type=int_expr, default=2**26, help="pack_stream window")
    ap.add_argument("--ray-window-bytes", type=int_expr, default=5 * 2**26, help="ray_pack window (~2**26 tokens)")
    ap.add_argument("--ray-cpus", type=int, default=2)
    ap.add_argument("--engines", default="single,ray")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tmp", default=None, help="parent of the temporary shard directory")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--child-single", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_single:
        print(json.dumps(single_child(args.child_single, args.seq_len, args.window_tokens)))
        return

    engines = args.engines.split(",")
    if "ray" in engines:
        import ray

        ray.init(num_cpus=args.ray_cpus, include_dashboard=False, log_to_driver=False)
    root = Path(tempfile.mkdtemp(prefix="bench_scale.", dir=args.tmp))
    totals: dict[str, Any] = {"gen": {"tokens": 0, "files": 0, "bytes": 0, "seconds": 0.0}}
    for e in engines:
        totals[e] = {"rows": 0, "tokens": 0, "seconds": 0.0, "peak_rss_MiB": 0.0, "per_group_rss_MiB": []}
    try:
        group = 0
        done = 0
        while done < args.tokens:
            folder = root / f"group-{group:03d}"
            folder.mkdir()
            g = write_group(folder, group, min(args.group_tokens, args.tokens - done), args.shard_tokens, args.seed)
            for k in ("tokens", "files", "bytes", "seconds"):
                totals["gen"][k] += g[k]
            line = [f"group {group}: {g['tokens'] / 1e9:.2f} B tokens in {g['files']} shards "
                    f"({g['bytes'] / 2**30:.1f} GiB, written in {g['seconds']:.0f} s)"]  # fmt: skip
            for e in engines:
                r = run_single(folder, args) if e == "single" else run_ray(folder, args)
                rss = r.get("peak_rss_MiB", r.get("driver_peak_rss_MiB", 0.0))
                if e == "ray":
                    rss = worker_peak_rss_mib()
                    totals[e]["driver_peak_rss_MiB"] = r["driver_peak_rss_MiB"]
                t = totals[e]
                t["rows"] += r["rows"]
                t["tokens"] += r["tokens"]
                t["seconds"] += r["seconds"]
                t["peak_rss_MiB"] = max(t["peak_rss_MiB"], rss)
                t["per_group_rss_MiB"].append(round(rss))
                line.append(f"{e} {r['tokens'] / r['seconds'] / 1e6:.0f} M tok/s, RSS {rss:.0f} MiB")
                if r["tokens"] != g["tokens"]:
                    line.append(f"CHECK FAILED: {e} packed {r['tokens']} of {g['tokens']} tokens")
            print("; ".join(line), flush=True)
            shutil.rmtree(folder)
            done += g["tokens"]
            group += 1
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print(f"\n{totals['gen']['tokens']:,} tokens in {group} groups of <= {args.group_tokens / 1e9:g} B "
          f"({totals['gen']['files']} shards, {totals['gen']['bytes'] / 2**30:.1f} GiB of zstd Parquet in all, "
          f"generated and written in {totals['gen']['seconds']:.0f} s); seq_len {args.seq_len}")  # fmt: skip
    for e in engines:
        t = totals[e]
        fill = t["tokens"] / (t["rows"] * args.seq_len) if t["rows"] else 0.0
        what = "child peak RSS" if e == "single" else f"largest Ray worker RSS ({args.ray_cpus} CPUs)"
        met = "MET" if t["peak_rss_MiB"] < RSS_TARGET_MIB else "MISSED"
        verdict = f" (< 2 GiB: {met})" if e == "single" else ""
        print(f"  {e:6s} {t['tokens']:,} tokens, {t['rows']:,} rows, fill {100 * fill:.3f} %, "
              f"{t['tokens'] / t['seconds'] / 1e6:,.0f} M tok/s ({t['seconds']:.0f} s); {what} "
              f"{t['peak_rss_MiB']:,.0f} MiB{verdict}; per group {t['per_group_rss_MiB']}")  # fmt: skip
        t["fill_rate"] = fill
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "totals": totals}, indent=2))


if __name__ == "__main__":
    main()
