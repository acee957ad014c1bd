"""Hierarchical synthesis end to end on the tiny Qwen2 in vLLM (CPU): counts, order, batching, resume, errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from support.hierarchical import PASSES, Counting, check_same_targets, copy_output, doc_states, settings, write_docs

from longmagpie.hierarchical import HierarchicalConfig, HierarchicalReport, synthesize

# 300 words ~ 330 tokens: 6 small chunks of 64, 3 medium; the last document is shorter than one chunk
LENGTHS = [300, 250, 280, 320, 260, 300, 12]


@pytest.fixture(scope="module")
def run(engine: Any, tiny_qwen2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("hier")
    inputs = write_docs(tmp / "docs.parquet", LENGTHS)
    cfg = HierarchicalConfig(**settings(tiny_qwen2_dir, inputs, tmp / "out"))
    engine = Counting(engine)
    report = synthesize(cfg, engine=engine)
    return {"tmp": tmp, "inputs": inputs, "config": cfg, "report": report, "engine": engine}


def test_one_generate_per_pass_across_documents(run: dict[str, Any]) -> None:
    report: HierarchicalReport = run["report"]
    assert [name for name, _ in report.calls] == PASSES
    assert run["engine"].calls == len(PASSES) == report.engine_calls
    states = doc_states(Path(run["config"].output_dir))
    assert len(states) == len(LENGTHS)
    qa_per_doc = 5 + 2 + 1 + 9 + 3
    assert dict(report.calls)["done"] == qa_per_doc * len(LENGTHS)
    assert dict(report.calls)["small"] == sum(len(s["small"]) for s in states.values())
    assert dict(report.calls)["medium"] == sum(len(s["medium"]) for s in states.values())
    assert dict(report.calls)["global"] == len(LENGTHS)


def test_counts_and_coarse_to_fine_order_per_document(run: dict[str, Any]) -> None:
    for doc_id, s in doc_states(Path(run["config"].output_dir)).items():
        assert s["stage"] == "done"
        kinds = [q["kind"] for q in s["qas"]]
        assert kinds == ["hierarchical"] * 5 + ["local"] * 2 + ["multihop"] + ["diverse"] * 9, doc_id
        levels = [q["level"] for q in s["qas"][:5]]
        assert levels == ["global", "medium", "small", "medium", "small"]
        for i in (2, 4):  # each small follow-up drills into the medium chunk of the question it follows
            parent = s["qas"][i]["parent"]
            assert parent == i - 1 and s["qas"][i]["sources"][0] in s["medium"][s["qas"][parent]["sources"][0]]
        assert [q["level"] for q in s["revisits"]] == ["global", "medium", "small"]
        assert all(isinstance(q["question"], str) and isinstance(q["answer"], str) for q in s["qas"] + s["revisits"])
        assert len(s["small_summaries"]) == len(s["small"]) and len(s["medium_summaries"]) == len(s["medium"])
        assert "".join(s["small"]) == s["text"]


def test_a_document_shorter_than_one_chunk_is_one_chunk_with_every_kind(run: dict[str, Any]) -> None:
    s = doc_states(Path(run["config"].output_dir))["doc-6"]
    assert len(s["small"]) == 1 and s["medium"] == [[0]]
    assert len(s["qas"]) == 17 and s["qas"][7]["sources"] == [0]  # multi-hop over the one chunk there is


def test_datasets_per_target_within_tolerance(run: dict[str, Any]) -> None:
    cfg: HierarchicalConfig = run["config"]
    report: HierarchicalReport = run["report"]
    assert [t.target for t in report.targets] == list(cfg.targets)
    states = doc_states(Path(cfg.output_dir))
    for t in report.targets:
        table = pq.read_table(t.path)
        assert table.num_rows == t.conversations > 0
        for row in table.to_pylist():
            assert cfg.min_fill * t.target <= len(row["input_ids"]) == row["num_tokens"] <= t.target
            kinds = row["qa_kinds"]
            # block by block: the new document's 17 QAs in plan order, then 3 per revisited earlier document
            pos = 0
            for b, doc_id in enumerate(row["doc_ids"]):
                own = [q["kind"] for q in states[doc_id]["qas"]]
                assert kinds[pos : pos + len(own)] == own
                pos += len(own)
                while pos < len(kinds) and kinds[pos] == "revisit":
                    pos += 3
                assert b + 1 < len(row["doc_ids"]) or pos == len(kinds)
            messages = json.loads(row["messages"])
            assert messages[0]["content"].startswith(states[row["doc_ids"][0]]["text"])


def test_rerun_generates_nothing_and_writes_the_same_bytes(run: dict[str, Any], engine: Any) -> None:
    cfg: HierarchicalConfig = run["config"]
    before = {t.path: Path(t.path).read_bytes() for t in run["report"].targets}
    engine = Counting(engine)
    report = synthesize(cfg, engine=engine)
    assert engine.calls == 0 and report.resumed_documents == len(LENGTHS)
    assert {t.path: Path(t.path).read_bytes() for t in report.targets} == before


def test_interrupted_run_resumes_at_the_pass_it_lost(run: dict[str, Any], engine: Any) -> None:
    """An engine lost after the global summaries: the rerun generates questions and answers only, same output."""
    cfg: HierarchicalConfig = run["config"]
    out = run["tmp"] / "out-resume"
    cfg2 = HierarchicalConfig(**{**settings(Path(cfg.model), run["inputs"], out)})
    with pytest.raises(RuntimeError, match="engine lost"):
        synthesize(cfg2, engine=Counting(engine, fail_after=3))
    assert {s["stage"] for s in doc_states(out).values()} == {"global"}
    engine = Counting(engine)
    report = synthesize(cfg2, engine=engine)
    assert [name for name, _ in report.calls] == ["q0", "q1", "q2", "done"]
    check_same_targets(run["report"], report)


def test_a_new_document_alone_is_generated(run: dict[str, Any], engine: Any) -> None:
    cfg: HierarchicalConfig = run["config"]
    out = copy_output(run, "out-grow")
    inputs = write_docs(run["tmp"] / "more" / "docs.parquet", [*LENGTHS, 290])
    engine = Counting(engine)
    report = synthesize(HierarchicalConfig(**settings(Path(cfg.model), inputs, out)), engine=engine)
    assert report.resumed_documents == len(LENGTHS) and engine.calls == len(PASSES)
    assert dict(report.calls)["global"] == 1 and dict(report.calls)["done"] == 20


def test_other_generation_settings_refuse_the_directory(run: dict[str, Any], engine: Any) -> None:
    cfg: HierarchicalConfig = run["config"]
    changed = HierarchicalConfig(**settings(Path(cfg.model), run["inputs"], Path(cfg.output_dir), diverse_qas=4))
    with pytest.raises(ValueError, match="diverse_qas"):
        synthesize(changed, engine=Counting(engine))


def test_zero_counts_leave_kinds_out(run: dict[str, Any], engine: Any) -> None:
    inputs = write_docs(run["tmp"] / "zero" / "docs.parquet", [200, 220, 240])
    out = run["tmp"] / "out-zero"
    over = {"local_qas": 0, "multihop_qas": 0, "diverse_qas": 0, "revisit_qas": 0, "hierarchical_qas": 3}
    cfg = HierarchicalConfig(**settings(Path(run["config"].model), inputs, out, targets=(1500,), **over))
    report = synthesize(cfg, engine=Counting(engine))
    for s in doc_states(out).values():
        assert [q["level"] for q in s["qas"]] == ["global", "medium", "small"] and s["revisits"] == []
    rows = pq.read_table(report.targets[0].path).to_pylist()
    assert rows and all(set(r["qa_kinds"]) == {"hierarchical"} for r in rows)


def test_a_context_too_small_for_a_chunk_is_refused_before_generating(run: dict[str, Any], engine: Any) -> None:
    counting = Counting(engine)
    out = run["tmp"] / "out-small-ctx"
    cfg = HierarchicalConfig(**settings(Path(run["config"].model), run["inputs"], out, small_chunk_tokens=900))
    with pytest.raises(ValueError, match="max_model_len=1024 is too small for small chunks of 900 tokens"):
        synthesize(cfg, engine=counting)
    assert counting.calls == 0


def test_bad_settings_are_named(tmp_path: Path) -> None:
    base = {"inputs": ("x.parquet",), "output_dir": str(tmp_path), "model": "m"}
    for over, match in [
        ({"hierarchical_qas": 0, "local_qas": 0, "multihop_qas": 0, "diverse_qas": 0}, "all 0"),
        ({"diverse_qas": -1}, "diverse_qas must be >= 0"),
        ({"small_chunk_tokens": 0}, "small_chunk_tokens must be at least 1"),
        ({"revisit_probability": 1.5}, "revisit_probability"),
        ({"targets": (0,)}, "targets must be positive"),
        ({"document_turn": "{document}"}, "document_turn"),
        ({"conversations_per_target": 0}, "conversations_per_target must be an int >= 1"),
        ({"conversations_per_target": {123: 5}}, "names target 123, which is not in targets"),
        ({"conversations_per_target": {"180000": 0}}, r"conversations_per_target\[180000\] must be"),
        ({"conversations_per_target": [1, 2]}, "2 counts for 4 targets"),
        ({"conversations_per_target": "10"}, "must be an int, None, a mapping"),
        ({"documents_per_pass": 0}, "documents_per_pass must be at least 1"),
    ]:
        with pytest.raises(ValueError, match=match):
            HierarchicalConfig(**base, **over)


def test_conversation_counts_per_target(run: dict[str, Any], engine: Any) -> None:
    """An int for all targets, a mapping (keys as TOML gives them) or a list in target order; nothing regenerated."""
    cfg: HierarchicalConfig = run["config"]
    full = {t.target: t.conversations for t in run["report"].targets}
    assert full[2000] > 1 and full[4000] > 1  # else the counts below would not cut anything
    first = {t.target: pq.read_table(t.path).slice(0, 1) for t in run["report"].targets}
    out = copy_output(run, "out-counts")
    for counts, expected in [
        ({"2000": 1}, {2000: 1, 4000: full[4000]}),
        ([None, 1], {2000: full[2000], 4000: 1}),
        (1, {2000: 1, 4000: 1}),
    ]:
        counting = Counting(engine)
        config = HierarchicalConfig(**settings(Path(cfg.model), run["inputs"], out, conversations_per_target=counts))
        report = synthesize(config, engine=counting)
        assert counting.calls == 0
        assert report.conversations == expected
        assert report.paths == {t: str(out / f"target-{t}.parquet") for t in (2000, 4000)}
        for t in report.targets:
            table = pq.read_table(t.path)
            assert table.num_rows == expected[t.target]
            assert table.slice(0, 1).equals(first[t.target])  # the same conversations, fewer of them


def test_a_prompt_override_with_wrong_placeholders_is_refused() -> None:
    from longmagpie.hierarchical import resolve_prompts

    assert resolve_prompts({"answer": "Q: {question}\nM: {material}"})["answer"].startswith("Q:")
    with pytest.raises(ValueError, match="'answer' must use exactly the placeholders"):
        resolve_prompts({"answer": "Answer {question}"})
    with pytest.raises(ValueError, match="unknown prompt name"):
        resolve_prompts({"summarise": "{text}"})
