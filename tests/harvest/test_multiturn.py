"""Multi-turn harvests and steered question kinds on the in-process vLLM engine (tiny random Qwen2).

The tiny model writes gibberish, so these tests check structure and exactness: every prompt the engine was sent
equals the chat template's rendering of the row's conversation so far, the accounting loses nothing, a rerun
writes the same bytes, ``turns=1`` writes the rows it always wrote, and steering draws follow their shares.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support.harvest import Recording, check_accounting, make_documents, shard_bytes

from longmagpie.harvest import ROW_SCHEMA, HarvestConfig, harvest, read_harvest
from longmagpie.harvest.filters import query_hash
from longmagpie.harvest.run import steer_choice

STEER = ("Ask about one specific detail.", "Ask for a comparison across parts of the document.")


def check_turn_accounting(counts: dict[str, int], turns: int) -> None:
    """Every follow-up question and answer is accepted or counted under one reason; rows by their length."""
    c = Counter(counts)
    rejects = sum(v for k, v in c.items() if k.startswith("followup_query_") and not k.startswith("followup_query_cut"))
    assert c["followups_generated"] == c["followups_accepted"] + rejects
    answer_rejects = sum(
        v for k, v in c.items() if k.startswith("followup_answer_") and k != "followup_answer_reasoning_stripped"
    )
    assert c["followup_answers_generated"] == c["followup_answers_accepted"] + answer_rejects
    assert c["followups_accepted"] == c["followup_answers_generated"]
    assert sum(c[f"turns_{n}"] for n in range(1, turns + 1)) == c["rows"]
    assert c["rows"] - c[f"turns_{turns}"] == c["conversations_ended_query"] + c["conversations_ended_answer"]
    assert c["followup_answers_accepted"] == sum((n - 1) * c[f"turns_{n}"] for n in range(1, turns + 1))


def test_three_turns_prompts_are_the_template_rendering_of_each_conversation(engine, config_on, qwen_tokenizer):
    cfg = config_on(make_documents(6, words=200), shard_rows=3, queries_per_doc=2, turns=3, seed=3)
    rec = Recording(engine)
    report = harvest(cfg, engine=rec)
    check_accounting(report.counts, 2)
    check_turn_accounting(report.counts, 3)

    table = read_harvest(cfg.output_dir)
    assert table.schema.names == [*ROW_SCHEMA.names, "messages", "turns", "turns_ended", "followup_grounding"]
    rows = table.to_pylist()
    assert rows and max(r["turns"] for r in rows) == 3
    # per shard: query, answer, then a query pass and an answer pass per later turn, one generate each
    assert len(rec.calls) == 2 * 3 * 2
    sent = {tuple(req.prompt_ids) for call in rec.calls for req in call}
    for r in rows:
        msgs = r["messages"]
        assert len(msgs) == 1 + 2 * r["turns"]
        assert msgs[0] == {"role": "system", "content": r["context"]}
        assert msgs[1:3] == [{"role": "user", "content": r["query"]}, {"role": "assistant", "content": r["answer"]}]
        assert (r["turns_ended"] == "complete") == (r["turns"] == 3)
        if r["turns"] == 1:
            assert r["followup_grounding"] is None
        questions = [m["content"] for m in msgs if m["role"] == "user"]
        assert len({query_hash(q) for q in questions}) == len(questions)  # no repeated question in a conversation
        for t in range(2, r["turns"] + 1):
            # the follow-up's answer prompt: the template's rendering of the conversation up to that question
            upto = msgs[: 2 * t]
            text = qwen_tokenizer.apply_chat_template(upto, tokenize=False, add_generation_prompt=True)
            assert tuple(qwen_tokenizer(text, add_special_tokens=False)["input_ids"]) in sent
            # its question prompt: the conversation before it, cut where the user turn's content starts
            full = qwen_tokenizer.apply_chat_template([*upto[:-1], {"role": "user", "content": "QQQ"}], tokenize=False)
            prefix = full[: full.index("QQQ")]
            assert tuple(qwen_tokenizer(prefix, add_special_tokens=False)["input_ids"]) in sent

    # the later turns' prompts extend the earlier ones: the prefix cache (128-token blocks on the CPU) serves the
    # document again
    cache = report.prefix_cache
    assert set(cache) == {"query", "answer", "turn2_query", "turn2_answer", "turn3_query", "turn3_answer"}
    assert cache["turn2_query"]["hit_rate"] > 0.5 and cache["turn3_answer"]["hit_rate"] > 0.5
    assert all(0 <= e["cached_tokens"] <= e["prompt_tokens"] for e in cache.values())


def test_multiturn_rerun_and_another_directory_give_the_same_bytes(engine, config_on, tmp_path):
    cfg = config_on(make_documents(4), shard_rows=2, turns=2)
    first = harvest(cfg, engine=engine)
    before = shard_bytes(Path(cfg.output_dir))
    again = harvest(cfg, engine=engine)
    assert (again.shards_written, again.shards_skipped) == (0, 2) and again.counts == first.counts
    other = HarvestConfig(**{**cfg.__dict__, "output_dir": str(tmp_path / "other")})
    harvest(other, engine=engine)
    assert shard_bytes(Path(other.output_dir)) == before
    # a directory of another turn count is refused, named
    with pytest.raises(ValueError, match=r"differs in: .*config\.turns"):
        harvest(HarvestConfig(**{**cfg.__dict__, "turns": 3}), engine=engine)


def test_one_turn_writes_what_it_always_wrote(engine, config_on, tmp_path):
    cfg = config_on(make_documents(3), shard_rows=2)
    assert cfg.turns == 1
    harvest(cfg, engine=engine)
    out = Path(cfg.output_dir)
    assert pq.read_schema(out / "shard-00000.parquet").names == ROW_SCHEMA.names
    manifest = json.loads((out / "manifest.json").read_text())
    assert not {"turns", "steer", "steer_shares", "steer_separator"} & set(manifest["parts"]["config"])
    assert "follow_up" not in manifest["parts"]


def test_steered_questions_carry_their_instruction_answers_do_not(engine, config_on, qwen_tokenizer):
    shares = (3.0, 1.0)
    cfg = config_on(make_documents(8), shard_rows=8, queries_per_doc=2, steer=STEER, steer_shares=shares, turns=2)
    rec = Recording(engine)
    report = harvest(cfg, engine=rec)
    rows = read_harvest(cfg.output_dir).to_pylist()
    assert rows and all(r["steer"] in STEER for r in rows)
    assert Counter(r["steer"] for r in rows) == Counter(
        {STEER[i]: report.counts[f"steer_{i}"] for i in range(2) if report.counts.get(f"steer_{i}")}
    )
    query_texts = [qwen_tokenizer.decode(req.prompt_ids) for req in rec.calls[0]]
    answer_texts = [qwen_tokenizer.decode(req.prompt_ids) for req in rec.calls[1]]
    assert all(any(s + "\n\n" in t for s in STEER) for t in query_texts)
    assert not any(s in t for s in STEER for t in answer_texts)
    follow_up_queries = [qwen_tokenizer.decode(req.prompt_ids) for req in rec.calls[2]]
    assert all(any(s in t for s in STEER) for t in follow_up_queries)
    for r in rows:  # the row's conversation shows the document alone
        assert r["messages"][0]["content"] == r["context"]
        i = STEER.index(r["steer"])
        assert i == steer_choice(cfg.seed, r["doc_id"], r["sample"], shares)


def test_steer_draw_follows_the_shares_and_depends_only_on_the_request():
    shares = (2.0, 1.0, 1.0, 0.0)
    draws = Counter(steer_choice(7, f"doc{d}", s, shares) for d in range(5000) for s in range(2))
    total = sum(draws.values())
    for i, w in enumerate(shares):
        assert abs(draws[i] / total - w / sum(shares)) < 0.02
    assert draws[3] == 0
    assert steer_choice(7, "doc1", 0, shares) == steer_choice(7, "doc1", 0, shares)


def test_bad_multiturn_and_steer_settings_are_named(config_on):
    with pytest.raises(ValueError, match="turns must be at least 1"):
        config_on(["a"], turns=0)
    with pytest.raises(ValueError, match="steer_shares has 1 weights for 2"):
        config_on(["a"], steer=STEER, steer_shares=(1.0,))
    with pytest.raises(ValueError, match="same instruction twice"):
        config_on(["a"], steer=(STEER[0], STEER[0]))
    with pytest.raises(ValueError, match="positive sum"):
        config_on(["a"], steer=STEER, steer_shares=(0.0, 0.0))


def test_template_without_follow_up_turns_is_refused_before_any_work(engine, config_on):
    cfg = config_on(make_documents(2), turns=2, template="mistral", placement="system")
    with pytest.raises(ValueError, match="has no follow-up turns"):
        harvest(cfg, engine=engine)
    assert not Path(cfg.output_dir).exists()


def test_context_too_small_for_the_turns_is_named(engine, config_on):
    cfg = config_on(make_documents(2), turns=40)
    with pytest.raises(ValueError, match=r"40 turns x .* exceeds max_model_len"):
        harvest(cfg, engine=engine)


def test_multiturn_rows_go_through_quality_assemble_pack_export_and_stats(engine, config_on, tmp_path, qwen_tokenizer):
    """``harvest --turns 3`` rows carried by the model-free quality steps, ``assemble``, ``pack`` and ``export``."""
    import pyarrow.compute as pc
    from typer.testing import CliRunner

    from longmagpie.cli import app

    runner = CliRunner()
    cfg = config_on(make_documents(8, words=60), shard_rows=4, turns=3, steer=STEER, seed=5)
    harvest(cfg, engine=engine)
    out = Path(cfg.output_dir)
    tok_dir = qwen_tokenizer.name_or_path

    q = runner.invoke(app, ["quality", str(out), "-o", str(tmp_path / "q"), "-q"])
    assert q.exit_code == 0, q.output
    kept = pq.read_table(tmp_path / "q" / "kept.parquet")
    assert {"messages", "turns", "steer"} <= set(kept.column_names)
    report = json.loads((tmp_path / "q" / "report.json").read_text())
    assert set(report["balance"]["by_steer"]) <= set(STEER) and report["balance"]["by_steer"]

    args = ["assemble", str(tmp_path / "q" / "kept.parquet"), "--tokenizer", tok_dir, "-o", str(tmp_path / "a.parquet")]
    a = runner.invoke(app, [*args, "--distractor-count", "0-2", "--max-tokens", "1024", "--messages"])
    assert a.exit_code == 0, a.output
    assert "later exchanges" in a.output
    assembled = pq.read_table(tmp_path / "a.parquet")
    later = sum(max(t - 1, 0) for t in kept.column("turns").to_pylist())
    assert sum(len(m) for m in assembled.column("messages").to_pylist()) == 2 * assembled.num_rows + 2 * later
    for row in assembled.select(["input_ids", "messages"]).to_pylist():
        assert (
            row["input_ids"]
            == qwen_tokenizer.apply_chat_template(row["messages"], tokenize=True, return_dict=True)["input_ids"]
        )

    p = runner.invoke(
        app, ["pack", str(tmp_path / "a.parquet"), "-o", str(tmp_path / "p.parquet"), "--seq-len", "2048"]
    )
    assert p.exit_code == 0, p.output
    packed = pq.read_table(tmp_path / "p.parquet")
    assert pc.sum(pc.list_value_length(packed.column("input_ids"))).as_py() >= sum(
        len(x) for x in assembled.column("input_ids").to_pylist()
    )
    flat = [t for r in packed.column("input_ids").to_pylist() for t in r]
    masks = [m for r in packed.column("assistant_masks").to_pylist() for m in r]
    assert sum(masks) == sum(sum(m) for m in assembled.column("assistant_masks").to_pylist())
    assert len(flat) == len(masks)

    e = runner.invoke(app, ["export", str(tmp_path / "p.parquet"), "-o", str(tmp_path / "e"), "-q"])
    assert e.exit_code == 0, e.output
    shards = sorted((tmp_path / "e").rglob("*.parquet"))
    exported = pa.concat_tables([pq.read_table(s) for s in shards])
    assert exported.column("input_ids").to_pylist() == packed.column("input_ids").to_pylist()

    st = runner.invoke(app, ["stats", str(out), "-o", str(tmp_path / "report.html")])
    assert st.exit_code == 0, st.output
    assert "conversations" in st.output and "exchanges" in st.output
    for text in STEER:
        assert text in st.output


def test_cli_multiturn_and_steer_options_reach_the_config(tmp_path):
    from typer.testing import CliRunner

    from longmagpie.cli import app

    docs = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": ["a doc"]}), docs)
    runner = CliRunner()
    bad = runner.invoke(app, ["harvest", str(docs), "--model", "m", "--turns", "0"])
    assert bad.exit_code != 0 and "turns must be at least 1" in bad.output
    bad = runner.invoke(
        app, ["harvest", str(docs), "--model", "m", "--steer", "Ask.", "--steer-share", "1", "--steer-share", "2"]
    )
    assert bad.exit_code != 0 and "steer_shares has 2 weights for 1" in bad.output


def test_multiturn_through_the_server_writes_what_the_in_process_engine_writes(server, engine, config_on, tmp_path):
    """The server's engine is the in-process one's (same model, seeds): a multi-turn run gives the same rows, and
    the server reports its prefix-cache hits (``--enable-prompt-tokens-details``)."""
    cfg = config_on(make_documents(4, words=200), shard_rows=4, turns=2, seed=11)
    local = harvest(cfg, engine=engine)
    remote_cfg = HarvestConfig(
        **{**cfg.__dict__, "output_dir": str(tmp_path / "remote"), "engine": "openai", "base_url": server}
        | {"served_model_name": "tiny", "concurrency": 4}
    )
    remote = harvest(remote_cfg)
    assert remote.counts == local.counts
    assert read_harvest(remote_cfg.output_dir).equals(read_harvest(cfg.output_dir))
    assert remote.prefix_cache["turn2_query"]["cached_tokens"] > 0


def test_cli_harvest_turns_3_through_the_server(server, base_config, tmp_path):
    """``longmagpie harvest --turns 3 --steer ...`` end to end (the server's engine: no second one in this process)."""
    from support.harvest import write_parquet
    from typer.testing import CliRunner

    from longmagpie.cli import app

    docs = write_parquet(tmp_path / "docs.parquet", make_documents(4, words=60))
    out = tmp_path / "h"
    args = ["harvest", str(docs), "--model", base_config["model"], "-o", str(out), "--engine", "openai"]
    args += [
        "--base-url",
        server,
        "--served-model-name",
        "tiny",
        "--turns",
        "3",
        "--steer",
        STEER[0],
        "--steer",
        STEER[1],
    ]
    args += [
        "--max-model-len",
        "1024",
        "--max-doc-tokens",
        "256",
        "--query-max-tokens",
        "16",
        "--answer-max-tokens",
        "16",
    ]
    args += ["--question-mark", "off", "--min-query-chars", "1", "--query-candidates", "1", "--answer-candidates", "1"]
    settings = tmp_path / "harvest.toml"  # what the command line has no option for
    settings.write_text("allow_unfinished_answers = true\n")
    args += ["--config", str(settings)]
    result = CliRunner().invoke(app, [*args, "--quiet"])
    assert result.exit_code == 0, result.output
    rows = read_harvest(out).to_pylist()
    assert rows and {"messages", "turns", "steer"} <= set(rows[0])
    assert all(len(r["messages"]) == 1 + 2 * r["turns"] for r in rows)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["parts"]["config"]["turns"] == 3 and manifest["parts"]["config"]["steer"] == list(STEER)
    loud = CliRunner().invoke(app, args)  # a rerun: every shard done; the summary still names turns and steering
    assert loud.exit_code == 0, loud.output
    assert "already done" in loud.output and "turns     1 turns" in loud.output and STEER[1] in loud.output
