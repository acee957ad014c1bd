"""Documents processed in groups of ``documents_per_pass``: bounded batches, the same bytes as one group."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from support.hierarchical import FEW_QAS, PASSES, Counting, check_same_targets, doc_states, settings, write_docs

from longmagpie.hierarchical import HierarchicalConfig, synthesize

LENGTHS = [300, 12, 250, 200]  # groups of 2: 2 + 2; of 3: 3 + 1
# fewer QAs than the defaults: the test is about grouping, each run stays short
SMALL: dict[str, Any] = {**FEW_QAS, "targets": (1500, 3000)}


@pytest.fixture(scope="module")
def one_group(engine: Any, tiny_qwen2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("passes")
    inputs = write_docs(tmp / "docs.parquet", LENGTHS)
    report = synthesize(HierarchicalConfig(**settings(tiny_qwen2_dir, inputs, tmp / "out", **SMALL)), engine=engine)
    return {"tmp": tmp, "inputs": inputs, "report": report, "model": tiny_qwen2_dir}


@pytest.mark.parametrize("size", [2, 3])
def test_groups_of_documents_give_the_bytes_of_one_group(one_group: dict[str, Any], engine: Any, size: int) -> None:
    out = one_group["tmp"] / f"out-{size}"
    config = HierarchicalConfig(
        **settings(one_group["model"], one_group["inputs"], out, documents_per_pass=size, **SMALL)
    )
    engine = Counting(engine)
    report = synthesize(config, engine=engine)
    groups = [LENGTHS[g : g + size] for g in range(0, len(LENGTHS), size)]
    # every pass runs once per group, over that group's documents only
    assert [name for name, _ in report.calls] == PASSES * len(groups)
    states = doc_states(out)
    small = [
        sum(len(states[f"doc-{g + i}"]["small"]) for i in range(len(docs)))
        for g, docs in zip(range(0, len(LENGTHS), size), groups, strict=True)
    ]
    assert [n for name, n in report.calls if name == "small"] == small
    assert report.documents == len(LENGTHS) == len(states)
    assert report.targets and all(t.conversations > 0 for t in report.targets)
    check_same_targets(one_group["report"], report)
