"""Helpers of the harvest tests: small English-like documents as Parquet or JSONL, the accounting check, a
harvest SIGKILLed in a child process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

import longmagpie

#: The answer filter's rejection reasons (``answer_reasoning_stripped`` keeps the answer, so it is not one).
ANSWER_REJECTIONS = ("answer_unfinished", "answer_reasoning_unfinished", "answer_empty", "answer_too_short")

WORDS = (
    "river mountain library engine theory harvest signal archive lantern protocol meadow circuit "
    "glacier orchard compiler vessel canyon ledger beacon quartz"
).split()


def make_documents(n: int, seed: int = 0, words: int = 40) -> list[str]:
    """Distinct small English-like documents (the tiny model's text is gibberish anyway)."""
    docs = []
    for i in range(n):
        body = " ".join(WORDS[(i * 7 + j * (seed + 3)) % len(WORDS)] for j in range(words))
        docs.append(f"Document {i}. {body.capitalize()}.")
    return docs


def write_parquet(path: Path, texts: list[Any], column: str = "text", **extra: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({column: texts, **extra}), path)
    return path


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def check_accounting(counts: dict[str, int], queries_per_doc: int) -> None:
    """Nothing lost: every document, question, query and answer candidate is in the output or counted under a reason.

    Each generated query candidate is accepted or rejected for one reason (``query_cut_*`` only shortens it); each
    question ends with an accepted query or in ``questions_without_query``; likewise for answers.
    """
    c = Counter(counts)
    skipped = c["doc_empty"] + c["doc_not_utf8"] + c["doc_special_tokens"]
    questions = (c["documents"] - skipped) * queries_per_doc
    assert questions == c["queries_accepted"] + c["questions_without_query"]
    query_rejects = sum(v for k, v in c.items() if k.startswith("query_") and not k.startswith("query_cut"))
    assert c["queries_generated"] == c["queries_accepted"] + query_rejects
    assert c["queries_accepted"] == c["rows"] + c["questions_without_answer"]
    assert c["answers_generated"] == c["rows"] + sum(c[k] for k in ANSWER_REJECTIONS)


class Recording:
    """Passes every call to the real engine and keeps the requests (to check what the engine was asked)."""

    def __init__(self, inner):
        self.inner = inner
        self.name = inner.name
        self.calls: list[list[Any]] = []

    def generate(self, requests):
        self.calls.append(list(requests))
        return self.inner.generate(requests)

    def close(self):
        pass


def shard_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("shard-*"))}


CHILD = textwrap.dedent(
    """
    import json, pathlib, sys, time
    from longmagpie.harvest import HarvestConfig, harvest

    settings = json.loads(pathlib.Path(sys.argv[1]).read_text())
    flag = pathlib.Path(sys.argv[2])
    kill_at = int(sys.argv[3])

    def on_event(event):
        # the query pass of shard `kill_at` is done, its answers are not: tell the parent, wait to be killed
        if event.kind == "queries_done" and event.shard == kill_at:
            flag.write_text("mid-shard")
            time.sleep(600)

    if __name__ == "__main__":
        harvest(HarvestConfig(**settings), on_event=on_event)
    """
)


def files_state(out: Path) -> dict[str, tuple[int, int, bytes]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(out.glob("shard-*"))}


def harvest_killed_mid_shard(tmp_path: Path, settings: dict, kill_at: int, timeout: float = 300) -> Path:
    """Run the harvest of ``settings`` in a child process and SIGKILL it after shard ``kill_at``'s query pass.

    Returns the killed run's output directory (``tmp_path / "killed"``).
    """
    killed_dir = tmp_path / "killed"
    (tmp_path / "settings.json").write_text(json.dumps({**settings, "output_dir": str(killed_dir)}))
    (tmp_path / "child.py").write_text(CHILD)
    flag = tmp_path / "flag"
    env = {
        **os.environ,
        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
        "PYTHONPATH": os.pathsep.join([str(Path(longmagpie.__file__).parent.parent), os.environ.get("PYTHONPATH", "")]),
    }
    child = subprocess.Popen(
        [sys.executable, str(tmp_path / "child.py"), str(tmp_path / "settings.json"), str(flag), str(kill_at)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + timeout
        while not flag.exists():
            assert child.poll() is None, child.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, f"the child never reached the middle of shard {kill_at}"
            time.sleep(0.1)
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=60) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
        child.stderr.close()
    return killed_dir
