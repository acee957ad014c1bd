"""The judge step: strict parsing, statements, BM25 chunks, thresholds, and resumable runs on a real vLLM engine
(the tiny random model: structure only; the real judge is in tests/real_model/test_judge_real.py)."""

from __future__ import annotations

import json
import re
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from longmagpie.cli import app
from longmagpie.quality.judge import (
    REMOVED_DIR,
    TAG_PATTERN,
    TAXONOMY,
    Chunks,
    JudgeConfig,
    agreement,
    judge,
    judge_summary,
    judged_rows,
    parse_tags,
    parse_verdict,
    split_statements,
)

GOOD = {
    "quality": 4,
    "quality_rationale": "Clear and specific.",
    "difficulty": 2,
    "difficulty_rationale": "One fact.",
    "category": "information_seeking",
    "category_rationale": "Asks for a detail.",
}


def test_tags_parse_strictly() -> None:
    assert parse_tags(json.dumps(GOOD)) == GOOD
    assert parse_tags("Sure! " + json.dumps(GOOD) + " Done.") == GOOD, "text around the object is ignored"
    for bad in (
        "",
        "quality: 4",
        json.dumps({**GOOD, "quality": 6}),
        json.dumps({**GOOD, "quality": "4"}),
        json.dumps({**GOOD, "quality": True}),
        json.dumps({**GOOD, "category": "trivia"}),
        json.dumps({k: v for k, v in GOOD.items() if k != "difficulty"}),
        json.dumps({**GOOD, "extra": 1}),
        json.dumps({**GOOD, "quality_rationale": 3}),
        json.dumps(GOOD)[:-5],
    ):
        assert parse_tags(bad) is None, bad
    # What the constrained engine may write is what the parser takes: compact, in order, bounded rationales.
    compact = json.dumps(GOOD, separators=(",", ":"))
    assert re.fullmatch(TAG_PATTERN, compact) and parse_tags(compact) == GOOD
    for category in TAXONOMY:
        assert re.fullmatch(TAG_PATTERN, compact.replace("information_seeking", category))
    assert not re.fullmatch(TAG_PATTERN, json.dumps(GOOD))  # whitespace between keys is ruled out
    assert not re.fullmatch(TAG_PATTERN, compact.replace("Clear and specific.", "x" * 121))


def test_verdicts_parse_strictly() -> None:
    assert [parse_verdict(t) for t in ("supported", " Partly.", "UNSUPPORTED\n")] == [
        "supported",
        "partly",
        "unsupported",
    ]
    assert [parse_verdict(t) for t in ("yes", "supported by passage 2", "", "partially")] == [None] * 4


def test_statements_are_sentences_and_bullets() -> None:
    answer = (
        "The dam was built in 1932. It cost two million dollars!\n- The river flooded twice that year.\n2. Ok.\n"
        "Why? Because the rain fell for weeks on end."
    )
    assert split_statements(answer, 8, 4) == [
        "The dam was built in 1932.",
        "It cost two million dollars!",
        "The river flooded twice that year.",
        "Because the rain fell for weeks on end.",
    ]
    assert split_statements(answer, 2, 4) == ["The dam was built in 1932.", "It cost two million dollars!"]
    assert split_statements("Yes.", 8, 4) == []


def test_bm25_finds_the_chunk_a_statement_comes_from(qwen_tokenizer) -> None:
    filler = " ".join(f"word{i}" for i in range(300))
    document = f"{filler} The lighthouse keeper painted the tower red in 1921. {filler}"
    chunks = Chunks(qwen_tokenizer, document, 64)
    assert len(chunks.texts) > 5
    (best,) = chunks.top(["Which year was the lighthouse tower painted red?"], 1)
    assert "lighthouse" in chunks.texts[best[0]]
    assert chunks.top([], 3) == []


def test_agreement_is_a_rank_correlation() -> None:
    a = agreement([0.0, 0.5, 1.0, None, 1.0], [0.1, 0.4, 0.9, 0.5, None])
    assert a["rows"] == 3 and a["spearman"] == pytest.approx(1.0)
    assert agreement([1.0, 0.0, 0.5], [0.0, 1.0, 0.5])["spearman"] == pytest.approx(-1.0)
    assert agreement([1.0, 1.0, 1.0], [0.1, 0.2, 0.3])["spearman"] is None
    assert agreement([], [])["rows"] == 0


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"min_quality": 6}, "min_quality must be an int from 1 to 5"),
        ({"categories": ("trivia",)}, "unknown categories"),
        ({"min_faithfulness": 1.5}, "min_faithfulness must be in"),
        ({"tags": False, "faithfulness": False, "likelihood": False}, "nothing to do"),
        ({"tags": False, "min_quality": 3}, "need tags=True"),
        ({"prompts": {"tag": "x"}}, "unknown prompt"),
        ({"prompts": {"statement": "no placeholders"}}, "lacks the placeholder"),
        ({"top_k": 0}, "top_k must be a positive int"),
    ],
)
def test_bad_settings_are_named(settings, message) -> None:
    with pytest.raises(ValueError, match=message):
        JudgeConfig(inputs=("x",), output_dir="o", model="m", **settings)


def rows(n: int = 6) -> pa.Table:
    contexts = [
        f"Report {i}. The harbour of town {i} was rebuilt after the storm of 19{i}0. The mayor opened it in spring. "
        "Fishing boats came back within a month, and the market grew."
        for i in range(n)
    ]
    return pa.table(
        {
            "id": [f"row{i}" for i in range(n)],
            "doc_id": [f"doc{i}" for i in range(n)],
            "context": pa.array(contexts, pa.large_string()),
            "query": [f"When was the harbour of town {i} rebuilt?" for i in range(n)],
            "answer": pa.array(
                [f"It was rebuilt after the storm of 19{i}0. The mayor opened it in the spring." for i in range(n)],
                pa.large_string(),
            ),
            "answer_grounding": [0.5 + i / 20 for i in range(n)],
        }
    )


SMALL = {"max_model_len": 2048, "max_doc_tokens": 256, "tag_max_tokens": 200, "shard_rows": 2, "progress": False}


def test_a_run_tags_scores_resumes_and_writes_the_same_bytes(tmp_path, tiny_qwen2_dir, engine) -> None:
    pq.write_table(rows(), tmp_path / "rows.parquet")
    config = JudgeConfig(
        inputs=(str(tmp_path / "rows.parquet"),), output_dir=str(tmp_path / "out"), model=str(tiny_qwen2_dir), **SMALL
    )
    report = judge(config, engine=engine)
    assert (report.shards_total, report.shards_written) == (3, 3)
    c = report.counts
    assert c["rows"] == 6 and c["kept"] == 6, "no threshold: every row kept"
    assert c["tags_requested"] == 6 and c["tags_parsed"] + c.get("tags_unparsed", 0) == 6
    # A random model constrained to the schema still writes it (the JSON closes within the budget)...
    assert c["tags_parsed"] >= 1
    assert c["verdicts_requested"] == c["statements"] == 12
    assert c["verdicts_parsed"] == 12, "constrained to the three words"
    # Likelihood: per statement with and without its passages, per row the question with and without the
    # document and the end of the answer's turn.
    assert c["likelihood_requests"] == 2 * 12 + 2 * 6 + 6 and not any("skipped" in k for k in c)
    kept = judged_rows(tmp_path / "out")
    assert kept.column("id").to_pylist() == [f"row{i}" for i in range(6)]
    for row in kept.to_pylist():
        assert len(row["statements"]) == len(row["verdicts"]) == 2
        assert row["faithfulness"] == pytest.approx(
            sum({"supported": 1, "partly": 0.5}.get(v, 0) for v in row["verdicts"]) / 2
        )
        assert (row["quality"] is None) == (row["category"] is None)
        assert row["support_gain"] is not None and row["question_gain"] is not None
        assert row["end_logprob"] <= 0
    summary = judge_summary(tmp_path / "out")
    assert summary["verdicts_parse_rate"] == 1.0 and summary["agreement"]["rows"] == 6

    # Killed after shard 1 (its marker and rows gone): the rerun redoes it alone, byte for byte.
    before = {p.name: p.read_bytes() for p in sorted((tmp_path / "out").glob("shard-*"))}
    (tmp_path / "out" / "shard-00001.done.json").unlink()
    (tmp_path / "out" / "shard-00001.parquet").unlink()
    again = judge(config, engine=engine)
    assert (again.shards_written, again.shards_skipped) == (1, 2)
    assert {p.name: p.read_bytes() for p in sorted((tmp_path / "out").glob("shard-*"))} == before
    assert again.counts == report.counts

    # Another setting is another run: refused in the same directory.
    with pytest.raises(ValueError, match=r"another fingerprint .*top_k"):
        judge(JudgeConfig(**{**config.__dict__, "top_k": 1}), engine=engine)


def test_thresholds_remove_rows_with_their_reason(tmp_path, tiny_qwen2_dir, engine) -> None:
    pq.write_table(rows(4), tmp_path / "rows.parquet")
    config = JudgeConfig(
        inputs=(str(tmp_path / "rows.parquet"),),
        output_dir=str(tmp_path / "out"),
        model=str(tiny_qwen2_dir),
        tags=False,
        min_faithfulness=1.0,
        **SMALL,
    )
    report = judge(config, engine=engine)
    kept, removed = judged_rows(tmp_path / "out"), judged_rows(tmp_path / "out", removed=True)
    assert kept.num_rows + removed.num_rows == 4
    assert all(f == 1.0 for f in kept.column("faithfulness").to_pylist())
    assert all(f < 1.0 for f in removed.column("faithfulness").to_pylist())
    assert set(removed.column("reason").to_pylist()) <= {"judge:faithfulness"}
    assert report.counts.get("removed:judge:faithfulness", 0) == removed.num_rows
    assert kept.column("quality").null_count == kept.num_rows, "no tags asked"
    # keep_all keeps them all, scores and all.
    everything = judge(
        JudgeConfig(**{**config.__dict__, "output_dir": str(tmp_path / "all"), "keep_all": True}), engine=engine
    )
    assert everything.counts["kept"] == 4
    assert (
        not any((tmp_path / "all" / REMOVED_DIR).glob("*.parquet"))
        or judged_rows(tmp_path / "all", removed=True).num_rows == 0
    )


def test_inputs_are_checked_before_any_work(tmp_path, tiny_qwen2_dir) -> None:
    pq.write_table(pa.table({"id": ["a"], "query": ["q"]}), tmp_path / "bad.parquet")
    config = JudgeConfig(
        inputs=(str(tmp_path / "bad.parquet"),), output_dir=str(tmp_path / "out"), model=str(tiny_qwen2_dir)
    )
    with pytest.raises(ValueError, match=r"no column.*context, answer"):
        judge(config)
    assert not (tmp_path / "out").exists()
    (tmp_path / "rows.jsonl").write_text("{}\n")
    with pytest.raises(ValueError, match="reads Parquet"):
        judge(JudgeConfig(**{**config.__dict__, "inputs": (str(tmp_path / "rows.jsonl"),)}))


def test_cli_judges_a_harvest_directory(tmp_path, tiny_qwen2_dir, engine, monkeypatch) -> None:
    # A harvest-shaped directory: a manifest, a finished shard (rows + marker), and an unfinished one.
    harvest = tmp_path / "harvest"
    harvest.mkdir()
    (harvest / "manifest.json").write_text("{}")
    pq.write_table(rows(3), harvest / "shard-00000.parquet")
    (harvest / "shard-00000.done.json").write_text("{}")
    pq.write_table(rows(2), harvest / "shard-00001.parquet")  # no marker: not finished, not read
    import longmagpie.quality.judge as judge_module

    monkeypatch.setattr(judge_module, "engine_for", lambda config: engine)  # the session's engine, not a second one
    monkeypatch.setattr(engine, "close", lambda: None)
    out = tmp_path / "judged"
    result = CliRunner().invoke(
        app,
        ["quality", str(harvest), "-o", str(out), "--judge-model", str(tiny_qwen2_dir), "--judge-max-model-len", "2048",
         "--judge-shard-rows", "2", "--no-dedup", "--no-detect-language", "--keep-all"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "judge " in result.output and "rows kept" in result.output
    assert judged_rows(out).num_rows == 3
    shutil.rmtree(out)


def test_the_pipeline_judges_between_quality_and_assembly_and_stats_shows_it(
    tmp_path, tiny_qwen2_dir, qwen_tokenizer_dir, engine, monkeypatch
) -> None:
    import longmagpie.quality.judge as judge_module

    monkeypatch.setattr(judge_module, "engine_for", lambda config: engine)
    monkeypatch.setattr(engine, "close", lambda: None)
    pq.write_table(rows(4), tmp_path / "qa.parquet")
    out = tmp_path / "run"
    config = tmp_path / "pipeline.toml"
    config.write_text(
        f"""output_dir = "{out}"
tokenizer = "{qwen_tokenizer_dir}"

[quality]
detect_language = false
dedup = false

[quality.judge]
model = "{tiny_qwen2_dir}"
max_model_len = 2048
max_doc_tokens = 256
tag_max_tokens = 200
min_faithfulness = 0.0
progress = false

[assemble]
samples = ["{tmp_path / "qa.parquet"}"]
target_tokens = [200, 600]
max_tokens = 2048

[pack]
seq_len = 4096
"""
    )
    runner = CliRunner()
    result = runner.invoke(app, ["run", str(config)])
    assert result.exit_code == 0, result.output
    assert "stages: quality done, judge done, assemble done, pack done, export done" in result.output
    assert judged_rows(out / "judge").num_rows == 4
    again = runner.invoke(app, ["run", str(config)])
    assert "quality skipped, judge skipped, assemble skipped" in again.output, again.output
    # `longmagpie stats` shows the judge's counts, and does not count judged rows as harvested again.
    result = runner.invoke(app, ["stats", str(out / "judge"), "-o", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    assert "judge of" in result.output and "4 of 4 rows kept" in result.output
    assert "Judge" in (tmp_path / "r.html").read_text()
    # A bad judge key is named before any stage runs.
    config.write_text(config.read_text().replace("min_faithfulness = 0.0", "min_faithfulnes = 0.0"))
    bad = runner.invoke(app, ["run", str(config)])
    assert bad.exit_code == 1 and "[quality.judge]" in bad.output and "min_faithfulness" in bad.output, bad.output


def test_prompt_log_probabilities_are_those_of_the_prompt_tokens(engine, tiny_qwen2_dir) -> None:
    """The engine's per-token prompt log-probabilities, read back, equal transformers' on the same ids."""
    import torch
    import transformers

    from longmagpie.generate.engines import GenerationRequest

    ids = [9707, 11, 1879, 374, 264, 1273, 315, 279, 1614, 13]
    (res,) = engine.generate([GenerationRequest(ids, 1, 0.0, 1.0, 0, [], prompt_logprobs=True)])
    assert res.prompt_logprobs[0] is None and len(res.prompt_logprobs) == len(ids)
    model = transformers.AutoModelForCausalLM.from_pretrained(tiny_qwen2_dir, dtype=torch.float32).eval()
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    want = torch.log_softmax(logits, -1)[torch.arange(len(ids) - 1), torch.tensor(ids[1:])]
    assert res.prompt_logprobs[1:] == pytest.approx(want.tolist(), abs=2e-3)


def test_preference_pairs_are_trl_conversational_and_resume(tmp_path, tiny_qwen2_dir, engine) -> None:
    from datasets import load_dataset
    from transformers import AutoTokenizer
    from trl.data_utils import apply_chat_template, is_conversational

    from longmagpie.quality.judge import PREFERENCE_DIR, preference_pairs

    pq.write_table(rows(3), tmp_path / "rows.parquet")
    config = JudgeConfig(
        inputs=(str(tmp_path / "rows.parquet"),),
        output_dir=str(tmp_path / "out"),
        model=str(tiny_qwen2_dir),
        tags=False,
        faithfulness=False,
        n_answers=3,
        answer_max_tokens=24,
        answer_temperature=1.0,
        allow_unfinished_answers=True,  # a random model never ends its turn
        preference_by="end_logprob",
        **SMALL,
    )
    report = judge(config, engine=engine)
    c = report.counts
    assert c["pair_answers_requested"] == 9
    pairs = preference_pairs(tmp_path / "out")
    assert pairs.num_rows == c["pairs"] == 3 - c.get("pairs_tied", 0) - c.get("pairs_too_few_answers", 0)
    assert pairs.num_rows >= 1, c
    for p in pairs.to_pylist():
        assert p["chosen_score"] > p["rejected_score"] and p["score"] == "end_logprob"
        assert p["prompt"][0]["role"] == "user" and "When was the harbour" in p["prompt"][0]["content"]
        assert p["chosen"][0]["content"] != p["rejected"][0]["content"]
    # TRL's data path: datasets reads the Parquet, TRL sees the conversational preference format and renders it.
    ds = load_dataset(
        "parquet", data_files=sorted(str(p) for p in (tmp_path / "out" / PREFERENCE_DIR).glob("*.parquet"))
    )
    example = ds["train"][0]
    assert is_conversational(example)
    rendered = apply_chat_template(example, AutoTokenizer.from_pretrained(tiny_qwen2_dir))
    assert set(rendered) >= {"prompt", "chosen", "rejected"} and rendered["prompt"].endswith("assistant\n")
    # A rerun redoes a removed shard's pairs byte for byte.
    before = {p.name: p.read_bytes() for p in sorted((tmp_path / "out" / PREFERENCE_DIR).glob("*.parquet"))}
    (tmp_path / "out" / "shard-00000.done.json").unlink()
    judge(config, engine=engine)
    assert {p.name: p.read_bytes() for p in sorted((tmp_path / "out" / PREFERENCE_DIR).glob("*.parquet"))} == before


def test_the_judge_runs_through_an_openai_server_with_its_key_on_no_disk(tmp_path, tiny_qwen2_dir, server) -> None:
    """Structured output and prompt log-probabilities through vLLM's server (its extensions of the API)."""
    secret = "sk-judge-never-on-disk-81c2"
    pq.write_table(rows(2), tmp_path / "rows.parquet")
    config = JudgeConfig(
        inputs=(str(tmp_path / "rows.parquet"),),
        output_dir=str(tmp_path / "out"),
        model=str(tiny_qwen2_dir),
        engine="openai",
        base_url=server,
        served_model_name="tiny",
        api_key=secret,
        **SMALL,
    )
    report = judge(config)
    c = report.counts
    assert c["tags_parsed"] + c.get("tags_unparsed", 0) == 2 and c["verdicts_parsed"] == c["verdicts_requested"]
    kept = judged_rows(tmp_path / "out")
    assert kept.column("support_gain").null_count == 0 and kept.column("end_logprob").null_count == 0
    for f in (tmp_path / "out").rglob("*"):
        if f.is_file():
            assert secret.encode() not in f.read_bytes(), f


def test_a_shard_reads_only_its_rows_whatever_the_row_groups(tmp_path) -> None:
    from longmagpie.quality.judge import _InputFile, _read_rows, _Shard

    pq.write_table(pa.table({"x": list(range(1000))}), tmp_path / "rg.parquet", row_group_size=64)
    f = _InputFile(tmp_path / "rg.parquet", 1000)
    for start, stop in [(0, 10), (60, 70), (63, 200), (990, 1000), (0, 1000), (500, 501)]:
        assert _read_rows(_Shard(0, f, start, stop)).column("x").to_pylist() == list(range(start, stop))
