"""A real S3-compatible server for the storage tests .

``moto``'s server runs in a child process (``python -m moto.server``): an in-process threaded server would
share the GIL with pyarrow's S3 client, and a pyarrow call that holds it while waiting on the server deadlocks.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs as pafs
import pytest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class S3Server:
    """A running S3 server: its endpoint and a pyarrow filesystem on it (bucket creation allowed)."""

    endpoint: str
    fs: pafs.S3FileSystem

    def bucket(self) -> str:
        """Create a fresh bucket and return its name."""
        name = f"b{uuid.uuid4().hex[:12]}"
        self.fs.create_dir(name)
        return name

    def objects(self, prefix: str) -> dict[str, bytes]:
        """Every object under ``prefix`` (``bucket/key``) with its bytes, keyed by the path below ``prefix``."""
        infos = self.fs.get_file_info(pafs.FileSelector(prefix, recursive=True, allow_not_found=True))
        out = {}
        for i in sorted(infos, key=lambda i: i.path):
            if i.type == pafs.FileType.File:
                with self.fs.open_input_stream(i.path) as fh:
                    out[i.path[len(prefix) + 1 :]] = fh.read()
        return out

    def put(self, path: str, data: bytes) -> None:
        """Write one object."""
        with self.fs.open_output_stream(path) as fh:
            fh.write(data)


def start_s3_server(tmp: Path) -> Iterator[S3Server]:
    """Start moto's S3 server on 127.0.0.1 and point the AWS environment at it (pytest fixture body)."""
    for module in ("moto", "flask_cors"):  # looked up, not imported: flask in this process breaks vLLM's startup
        if importlib.util.find_spec(module) is None:
            if os.environ.get("LONGMAGPIE_WHEEL"):
                raise ImportError(f"{module} is missing: install the test extra (pip install 'longmagpie[test]')")
            pytest.skip(f"{module} is not installed")
    port = _free_port()
    log = open(tmp / "moto.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=log
    )
    endpoint = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in _ENV}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto server did not start: {(tmp / 'moto.log').read_text()}") from None
                time.sleep(0.2)
        os.environ.update(
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_REGION="us-east-1",
            AWS_DEFAULT_REGION="us-east-1",
            AWS_ENDPOINT_URL=endpoint,
        )
        os.environ.pop("AWS_SESSION_TOKEN", None)
        os.environ.pop("AWS_PROFILE", None)
        fs = pafs.S3FileSystem(
            endpoint_override=f"127.0.0.1:{port}", scheme="http", region="us-east-1", allow_bucket_creation=True
        )
        yield S3Server(endpoint, fs)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
)
