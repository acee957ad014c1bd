"""Resumable output directories, shared by harvest and hierarchical synthesis.

Layout::

    OUT/manifest.json             fingerprint + what it was computed from
    OUT/shard-00000.parquet       the rows of input shard 0 (written to a temp file, then renamed)
    OUT/shard-00000.done.json     written after the Parquet file: counts, row count, ...

A shard is finished when its marker exists. A rerun skips finished shards, redoes the others (a Parquet file
without a marker is from a killed run and is replaced; temporary files a killed write left are removed), and
refuses a directory whose fingerprint differs. One run per directory at a time.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

from longmagpie.io.files import write_bytes_atomic, write_parquet_atomic

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


def fingerprint(parts: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of ``parts``."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def open_output(out_dir: Path, fp: str, parts: Mapping[str, Any]) -> None:
    """Create ``out_dir`` with a manifest, or check the manifest there carries fingerprint ``fp``.

    Raises:
        ValueError: the manifest's fingerprint differs (the differing settings are named), or the directory
            holds files but no manifest.

    """
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = out_dir / MANIFEST
    if manifest.is_file():
        old = json.loads(manifest.read_text())
        if old.get("fingerprint") != fp:
            before, now = old.get("parts", {}), json.loads(json.dumps(parts, default=str))
            changed = _changed(before, now)
            raise ValueError(
                f"{out_dir} holds a harvest with another fingerprint (differs in: {', '.join(changed) or '?'}); "
                "use a new output directory, or restore the settings of that run to resume it"
            )
        for stale in out_dir.glob(".shard-*.tmp"):  # left by a killed run (one run per directory at a time)
            stale.unlink(missing_ok=True)
        return
    leftovers = [p.name for p in out_dir.iterdir() if not p.name.startswith(".")]
    if leftovers:
        raise ValueError(
            f"{out_dir} is not empty and has no {MANIFEST} (it holds {', '.join(sorted(leftovers)[:5])}): "
            "pick an empty or new output directory"
        )
    body = {"format": FORMAT_VERSION, "fingerprint": fp, "parts": parts}
    write_bytes_atomic(manifest, json.dumps(body, indent=1, sort_keys=True, default=str).encode())


def _changed(before: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """Name the parts that differ; inside a part that is a mapping on both sides, its settings (``config.seed``)."""
    out = []
    for k in sorted(set(before) | set(now)):
        a, b = before.get(k), now.get(k)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{k}.{s}" for s in sorted(set(a) | set(b)) if a.get(s) != b.get(s)]
        else:
            out.append(k)
    return out


def shard_paths(out_dir: Path, key: str) -> tuple[Path, Path]:
    """Return the Parquet file and the done-marker of shard ``key``."""
    return out_dir / f"{key}.parquet", out_dir / f"{key}.done.json"


def read_marker(out_dir: Path, key: str) -> dict[str, Any] | None:
    """Read the done-marker of shard ``key`` if it is finished (marker and Parquet file present), else ``None``."""
    data, marker = shard_paths(out_dir, key)
    if not (marker.is_file() and data.is_file()):
        return None
    return json.loads(marker.read_text())


def write_shard(out_dir: Path, key: str, table: pa.Table, marker: Mapping[str, Any]) -> None:
    """Write the shard's rows, then its marker (both atomic): a marker always points at complete rows."""
    data, done = shard_paths(out_dir, key)
    write_parquet_atomic(table, data, overwrite=True)
    write_bytes_atomic(done, json.dumps(dict(marker), sort_keys=True).encode())
