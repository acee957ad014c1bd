"""The summary tree above medium: a document whose medium summaries overflow one prompt is summarised level by level."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from support.hierarchical import Counting, check_same_targets, copy_output, doc_states, settings, write_docs

from longmagpie.hierarchical import HierarchicalConfig, synthesize
from longmagpie.hierarchical.generation import fit_groups

# a 180-token context with 24-token summaries takes 2 summaries per prompt: the long document (~11 small chunks,
# 6 medium) needs levels of 3, 2 and 1 summaries; the short one (2 medium) needs the global level only
CONTEXT = 180
LENGTHS = [600, 200]
OVERRIDES: dict[str, Any] = {
    "max_model_len": CONTEXT,
    "summary_max_tokens": 24,
    "hierarchical_qas": 3,
    "local_qas": 1,
    "multihop_qas": 0,  # two chunks of material would not fit this context
    "diverse_qas": 1,
    "revisit_qas": 1,
    "targets": (2000,),
    "min_fill": 0.3,
}


class Checking(Counting):
    """Counts calls, records every request's pass size, checks each prompt fits the context with its generation."""

    def __init__(self, engine: Any, fail_after: int | None = None) -> None:
        super().__init__(engine, fail_after)
        self.longest = 0

    def generate(self, requests: Any) -> Any:
        for r in requests:
            assert len(r.prompt_ids) + r.max_tokens <= CONTEXT
            self.longest = max(self.longest, len(r.prompt_ids) + r.max_tokens)
        return super().generate(requests)


@pytest.fixture(scope="module")
def tree(engine: Any, tiny_qwen2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("tree")
    inputs = write_docs(tmp / "docs.parquet", LENGTHS)
    cfg = HierarchicalConfig(**settings(tiny_qwen2_dir, inputs, tmp / "out", **OVERRIDES))
    engine = Checking(engine)
    report = synthesize(cfg, engine=engine)
    return {"tmp": tmp, "inputs": inputs, "config": cfg, "report": report, "engine": engine}


def test_fit_groups_packs_consecutive_items_evenly() -> None:
    assert fit_groups([5, 5, 5], 20) == [[0, 1, 2]]
    assert fit_groups([5] * 10, 15) == [[0, 1], [2, 3, 4], [5, 6, 7], [8, 9]]  # greedy 3+3+3+1, evened out
    assert fit_groups([1, 1, 10, 10], 12) == [[0, 1, 2], [3]]  # an even split would overflow: greedy kept
    assert fit_groups([30, 5], 20) == [[0], [1]]  # an item over the budget stands alone
    assert fit_groups([], 10) == []


def test_a_long_document_is_summarised_in_a_tree_that_fits_the_context(tree: dict[str, Any]) -> None:
    states = doc_states(Path(tree["config"].output_dir))
    long, short = states["doc-0"], states["doc-1"]
    assert len(long["medium"]) >= 5
    for s in (long, short):
        below = len(s["medium_summaries"])
        for level in s["levels"]:
            groups = level["groups"]
            assert [i for g in groups for i in g] == list(range(below))  # consecutive, covering the level below
            assert len(level["summaries"]) == len(groups) and (len(groups) < below or below == 1)
            below = len(groups)
        assert len(s["levels"][-1]["groups"]) == 1
        assert s["global_summary"] == s["levels"][-1]["summaries"][0]
    assert len(long["levels"]) >= 3  # two levels between medium and global
    assert len(short["levels"]) == 1
    # one generate per round across documents: the short document's global summary rides in the first round
    calls = [name for name, _ in tree["report"].calls]
    assert calls[:2] == ["small", "medium"] and calls[-4:] == ["q0", "q1", "q2", "done"]
    upper = calls[2:-4]
    assert upper == [f"upper-{r + 1}" for r in range(len(upper) - 1)] + ["global"]
    assert len(upper) == len(long["levels"])
    assert tree["engine"].longest > CONTEXT - 40  # the prompts did come near the limit


def test_hierarchical_questions_still_run_global_medium_small(tree: dict[str, Any]) -> None:
    s = doc_states(Path(tree["config"].output_dir))["doc-0"]
    assert [q["level"] for q in s["qas"][:3]] == ["global", "medium", "small"]
    assert all(q["question"] is not None and q["answer"] is not None for q in s["qas"])


def test_resume_does_not_regenerate_finished_levels(tree: dict[str, Any], engine: Any) -> None:
    cfg: HierarchicalConfig = tree["config"]
    out = tree["tmp"] / "out-resume"
    cfg2 = HierarchicalConfig(**settings(Path(cfg.model), tree["inputs"], out, **OVERRIDES))
    with pytest.raises(RuntimeError, match="engine lost"):
        synthesize(cfg2, engine=Checking(engine, fail_after=3))  # small, medium, first level above medium
    saved = doc_states(out)
    assert saved["doc-0"]["stage"] == "medium" and len(saved["doc-0"]["levels"]) == 1
    assert saved["doc-1"]["stage"] == "global"
    engine = Checking(engine)
    report = synthesize(cfg2, engine=engine)
    levels = doc_states(Path(cfg.output_dir))["doc-0"]["levels"]
    # only the long document's remaining levels: one request per group of each
    assert report.calls[: len(levels) - 1] == [
        (f"upper-{r + 1}" if r < len(levels) - 2 else "global", len(levels[r + 1]["groups"]))
        for r in range(len(levels) - 1)
    ]
    assert engine.calls == len(levels) - 1 + 4
    check_same_targets(tree["report"], report)


def test_states_written_before_the_tree_still_load(tree: dict[str, Any], engine: Any) -> None:
    """A finished state without ``levels`` (the earlier format) is reused as it is: no call, same dataset."""
    cfg: HierarchicalConfig = tree["config"]
    out = copy_output(tree, "out-old")
    for p in (out / "documents").glob("*.json"):
        if p.name != "manifest.json":
            state = json.loads(p.read_text())
            del state["levels"]
            p.write_text(json.dumps(state))
    engine = Checking(engine)
    report = synthesize(dataclasses.replace(cfg, output_dir=str(out)), engine=engine)
    assert engine.calls == 0 and report.resumed_documents == len(LENGTHS)
    check_same_targets(tree["report"], report)


def test_every_group_prompt_fits_with_its_generation(qwen_tokenizer: Any, tmp_path: Path) -> None:
    """Groups cut by the per-summary estimate, checked on the rendered prompt (no engine needed)."""
    import random

    from support.hierarchical import WORDS

    from longmagpie.hierarchical.generation import Generator
    from longmagpie.hierarchical.prompts import DEFAULT_PROMPTS

    config = HierarchicalConfig(
        inputs=("unused.parquet",), output_dir=str(tmp_path), model="unused", max_model_len=300, summary_max_tokens=40
    )
    gen = Generator(config, None, qwen_tokenizer, DEFAULT_PROMPTS, [])  # type: ignore[arg-type]
    rng = random.Random(0)
    for n in (1, 2, 5, 17, 40):
        summaries = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 38))) for _ in range(n)]
        groups = gen.group_summaries(summaries)
        assert [i for g in groups for i in g] == list(range(n))
        assert len(groups) == 1 or len(groups) < n  # the level shrinks
        for g in groups:
            name = "summarize_global" if len(groups) == 1 else "summarize_medium"
            joined = "\n\n".join(f"Part {k + 1}: {summaries[i]}" for k, i in enumerate(g))
            assert len(gen.render(name, summaries=joined)) + config.summary_max_tokens <= config.max_model_len
