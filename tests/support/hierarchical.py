"""Helpers of the hierarchical tests: English-like word salad of chosen lengths as Parquet, settings, a counting
engine."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from support import ENGINE_KWARGS, MAX_MODEL_LEN

WORDS = (
    "river mountain library engine theory harvest signal archive lantern protocol meadow circuit "
    "glacier orchard compiler vessel canyon ledger beacon quartz"
).split()


def make_text(i: int, words: int) -> str:
    """Document ``i``: ``words`` words in sentences, different per ``i``."""
    rng = random.Random(i)
    sentences = []
    for s in range(0, words, 12):
        sentences.append(" ".join(rng.choice(WORDS) for _ in range(min(12, words - s))).capitalize() + ".")
    return f"Document {i}. " + " ".join(sentences)


def write_docs(path: Path, lengths: list[int]) -> Path:
    """One Parquet file with a document per entry of ``lengths`` (words), ids ``doc-<i>``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    texts = [make_text(i, n) for i, n in enumerate(lengths)]
    pq.write_table(pa.table({"text": texts, "id": [f"doc-{i}" for i in range(len(texts))]}), path)
    return path


#: Fewer QAs per document than the defaults, for tests about engines and grouping (each run stays short).
FEW_QAS: dict[str, Any] = {"hierarchical_qas": 3, "local_qas": 1, "multihop_qas": 1, "diverse_qas": 2, "revisit_qas": 1}


def settings(tiny_qwen2_dir: Path, inputs: Path, out: Path, **overrides: Any) -> dict[str, Any]:
    """Small chunks and short generations: the whole pipeline in seconds on the tiny model."""
    base: dict[str, Any] = {
        "inputs": (str(inputs),),
        "output_dir": str(out),
        "model": str(tiny_qwen2_dir),
        "id_column": "id",
        "small_chunk_tokens": 64,
        "medium_chunk_small": 2,
        "summary_max_tokens": 12,
        "question_max_tokens": 12,
        "answer_max_tokens": 12,
        "max_model_len": MAX_MODEL_LEN,
        "temperature": 1.0,
        "targets": (2000, 4000),
        "min_fill": 0.5,
        "engine_kwargs": dict(ENGINE_KWARGS),
    }
    base.update(overrides)
    return base


#: The passes of a run with the default question kinds, in order (one ``generate`` each).
PASSES = ["small", "medium", "global", "q0", "q1", "q2", "done"]


class Counting:
    """The shared engine, counting ``generate`` calls; ``fail_after`` raises after that many calls."""

    def __init__(self, engine: Any, fail_after: int | None = None) -> None:
        self.engine, self.fail_after, self.calls = engine, fail_after, 0
        self.name = "counting"

    def generate(self, requests: Any) -> Any:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise RuntimeError("engine lost")
        self.calls += 1
        return self.engine.generate(requests)

    def close(self) -> None:
        pass


def doc_states(out: Path) -> dict[str, dict[str, Any]]:
    states = [json.loads(p.read_text()) for p in (out / "documents").glob("*.json") if p.name != "manifest.json"]
    return {s["doc_id"]: s for s in states}


def copy_output(run: dict[str, Any], name: str) -> Path:
    """A copy of a module run's output directory (``run["config"]``) at ``run["tmp"] / name``, to resume or grow."""
    out = run["tmp"] / name
    shutil.copytree(run["config"].output_dir, out)
    return out


def check_same_targets(first: Any, second: Any) -> None:
    """The two runs' reports name the same datasets, target by target, with byte-identical files."""
    for a, b in zip(first.targets, second.targets, strict=True):
        assert Path(a.path).read_bytes() == Path(b.path).read_bytes()
