#!/usr/bin/env python3
r"""Export benchmark: ``export_parquet`` / ``export_mds`` throughput and peak memory on packed 64k rows.

Synthetic tokenized samples (the realistic long-context mix of ``longmagpie.synthetic_samples``) are packed
into 64k rows once per mode, then the export alone is timed (parquet_stream: generation + packing + export).
Each mode runs in its own subprocess, so its peak RSS (``ru_maxrss``) is its own. Figures are printed, never asserted.

    parquet_table    export_parquet(table)                    (the packed table in memory)
    parquet_stream   export_parquet(pack_stream(generator))   (samples generated on the fly, packing and generation
                                                              included: peak RSS is bounded by the window)
    pq_write_table   pyarrow.parquet.write_table(table, zstd) (baseline: one plain Parquet file, no checks)
    mds              export_mds(table)                        (zstd, needs mosaicml-streaming)

Examples
--------
    P=/work/mlenv/bin/python
    PYTHONPATH=python $P benches/bench_export.py --quick          # 20e6 tokens
    PYTHONPATH=python $P benches/bench_export.py --tokens 2e8

"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchkit import peak_rss_mib

SEQ_LEN = 65536
MODES = ("parquet_table", "parquet_stream", "pq_write_table", "mds")


def du_mib(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 2**20


def child(mode: str, tokens: int, out: Path) -> dict:
    import pyarrow.parquet as pq

    import longmagpie

    if mode == "parquet_stream":
        # Samples generated on the fly, 4 M tokens at a time: peak RSS is the generator + one window + one row group.
        def generate():
            for i in range(-(-tokens // 4_000_000)):
                yield from longmagpie.synthetic_samples(min(4_000_000, tokens - i * 4_000_000), seed=i).to_batches()

        rss_before = peak_rss_mib()
        t0 = time.perf_counter()
        stream = longmagpie.pack_stream(generate(), seq_len=SEQ_LEN, window_tokens=2**25)
        result = longmagpie.export_parquet(stream, out, seq_len=SEQ_LEN)
        seconds = time.perf_counter() - t0
        return {"seconds": seconds, "tokens": result.tokens, "rows": result.rows, "files": len(result.files),
                "peak_rss_mib_before": rss_before}  # fmt: skip
    samples = longmagpie.synthetic_samples(tokens, mix="long", seed=0)
    table = longmagpie.pack(samples, seq_len=SEQ_LEN)
    del samples
    if mode == "mds":
        import streaming  # noqa: F401  (its import pulls torch/transformers/torchvision: ~9 s, not timed)
    rss_before = peak_rss_mib()
    t0 = time.perf_counter()
    if mode == "parquet_table":
        result = longmagpie.export_parquet(table, out)
        files = len(result.files)
    elif mode == "pq_write_table":
        out.mkdir()
        pq.write_table(table, out / "all.parquet", compression="zstd")
        files = 1
    elif mode == "mds":
        result = longmagpie.export_mds(table, out)
        files = len(result.files)
    else:
        raise SystemExit(f"unknown mode {mode}")
    seconds = time.perf_counter() - t0
    tok = sum(table.column("length").to_pylist())
    return {"seconds": seconds, "tokens": tok, "rows": table.num_rows, "files": files,
            "peak_rss_mib_before": rss_before}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=float, default=2e8)
    ap.add_argument("--quick", action="store_true", help="20e6 tokens")
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    tokens = int(2e7 if args.quick else args.tokens)
    if args.child:
        res = child(args.child, tokens, Path(args.out))
        res["peak_rss_mib"] = peak_rss_mib()
        res["output_mib"] = du_mib(Path(args.out))
        print(json.dumps(res))
        return
    print(f"export benchmark: {tokens:,} tokens of the long-context mix, seq_len {SEQ_LEN}")
    print(f"{'mode':16} {'rows':>7} {'files':>5} {'seconds':>8} {'M tok/s':>8} {'MiB out':>8} {'peak RSS MiB':>12}")
    for mode in args.modes.split(","):
        tmp = Path(tempfile.mkdtemp(prefix="bench-export-"))
        try:
            proc = subprocess.run(
                [sys.executable, __file__, "--child", mode, "--tokens", str(tokens), "--out", str(tmp / "out")],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if proc.returncode != 0:
                print(f"{mode:16} failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr else proc.returncode}")
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            rate = r["tokens"] / r["seconds"] / 1e6
            print(
                f"{mode:16} {r['rows']:>7,} {r['files']:>5} {r['seconds']:>8.2f} {rate:>8.1f} "
                f"{r['output_mib']:>8.0f} {r['peak_rss_mib']:>12.0f}"
            )
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
