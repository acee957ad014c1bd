"""Helpers shared by the Python benchmarks (bench_pack, bench_pmix, bench_stream): memory, children, environment.

Every mode runs in its own process (``run_child``); these helpers read its resident set from ``/proc`` and,
on VMs whose host takes back idle guest memory, pre-fault memory before the timed call (see ``PeakMemory``).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np


def rss_mib() -> float:
    """Return the current resident set size (VmRSS) in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mib() -> float:
    """Return the peak resident set size of this process so far (ru_maxrss, KiB on Linux) in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def status_mib(field: str) -> float:
    """Return a ``/proc/self/status`` memory field (e.g. VmRSS, VmHWM) in MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


class PeakMemory:
    """Peak RSS of one child, with optional pre-faulting of free memory just before the timed call.

    On VMs whose host takes back free guest memory (balloon / free page reporting), the first touch of
    "fresh" memory can cost 10x more than on bare metal, depending on what ran in the seconds before.
    ``arm`` touches and frees ``prewarm_mib`` MiB right before the timed call, so every mode allocates its
    output from memory the host has backed, then resets the peak RSS counter (``clear_refs`` 5), so the
    pre-fault does not count. Peak RSS = max(peak before arming, peak after arming).
    """

    def __init__(self, prewarm_mib: int) -> None:
        """Remember how much memory ``arm`` should pre-fault (0 = none)."""
        self.prewarm_mib = prewarm_mib
        self.peak_before = 0.0
        self.reset_ok = False
        self.prewarm_seconds = 0.0
        self.peak: float | None = None

    def arm(self) -> None:
        """Record the peak so far, pre-fault and release memory, reset the peak counter."""
        self.peak_before = status_mib("VmHWM")
        if self.prewarm_mib > 0:
            t0 = time.perf_counter()
            scratch = np.ones(self.prewarm_mib * 2**20 // 8, dtype=np.int64)
            del scratch
            self.prewarm_seconds = time.perf_counter() - t0
            try:
                with open("/proc/self/clear_refs", "w") as f:
                    f.write("5")
                self.reset_ok = True
            except OSError:
                self.reset_ok = False

    def record(self) -> None:
        """Take the peak RSS right after the timed call (before any checking allocates)."""
        if self.reset_ok:
            self.peak = max(self.peak_before, status_mib("VmHWM"))
        else:
            self.peak = peak_rss_mib()

    def info(self) -> dict[str, Any]:
        """Fields for the result record."""
        return {
            "peak_rss_MiB": self.peak if self.peak is not None else peak_rss_mib(),
            "prewarm_MiB": self.prewarm_mib,
            "prewarm_seconds": self.prewarm_seconds,
            "peak_excludes_prewarm": self.reset_ok or self.prewarm_mib == 0,
        }


def status_meminfo_mib(field: str) -> float:
    """Return a ``/proc/meminfo`` field in MiB (0 if unavailable)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def auto_prewarm_mib(tokens: int, bytes_per_token: int) -> int:
    """Default pre-fault size: ``bytes_per_token`` per token, at most half of the available memory."""
    return int(min(bytes_per_token * tokens / 2**20, 0.5 * status_meminfo_mib("MemAvailable")))


def run_child(cmd: list[str], timeout: float, tail_lines: int) -> dict[str, Any]:
    """Run one benchmark child; return the JSON of its ``RESULT {json}`` line, or ``{"error": ...}``.

    The error names the exit status and the last ``tail_lines`` lines of stderr (of stdout if stderr is empty).
    """
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-tail_lines:]
    return {"error": f"exit {proc.returncode}: " + " | ".join(tail)}


def package_versions(names: tuple[str, ...]) -> dict[str, str | None]:
    """Return the installed version of each package in ``names`` (None where it is not installed)."""
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def environment(packages: tuple[str, ...] = ("numpy", "pyarrow", "longmagpie")) -> dict[str, Any]:
    """Versions and machine facts: the Python version, the CPU count and the versions of ``packages``."""
    env: dict[str, Any] = {"python": sys.version.split()[0], "cpu_count": os.cpu_count()}
    env.update(package_versions(packages))
    return env
