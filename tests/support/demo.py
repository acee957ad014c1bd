"""Helpers of the demo tests: what every demo run writes."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

import longmagpie


def check_outputs(out: Path) -> None:
    assembled = pq.read_table(out / "assembled.parquet")
    assert assembled.num_rows > 0 and min(assembled.column("n_documents").to_pylist()) >= 1
    packed = pq.read_table(out / "packed.parquet")
    assert longmagpie.pack_stats(packed).input_tokens == sum(len(x) for x in assembled.column("input_ids").to_pylist())
    assert set(pq.read_table(out / "pmix.parquet").column("kind").combine_chunks().flatten().to_pylist()) == {
        "long",
        "short",
    }
    assert sorted((out / "dataset" / "data").glob("train-*.parquet"))
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 4
