"""End-to-end harvests on the in-process vLLM engine (tiny random Qwen2, real Qwen2.5 tokenizer)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from support.harvest import Recording, check_accounting, make_documents, shard_bytes, write_jsonl, write_parquet

from longmagpie.generate.sources import content_id
from longmagpie.harvest import (
    ROW_SCHEMA,
    GenerationRequest,
    HarvestConfig,
    harvest,
    read_harvest,
)


def test_outputs_complete_prompts_as_template_one_generate_per_pass(engine, base_config, tmp_path, qwen_tokenizer):
    docs_a = make_documents(5)
    docs_b = make_documents(3, seed=5)
    write_parquet(tmp_path / "in" / "a.parquet", docs_a)
    write_jsonl(tmp_path / "in" / "b.jsonl", [{"text": t, "meta": i} for i, t in enumerate(docs_b)])
    cfg = HarvestConfig(
        inputs=(str(tmp_path / "in"),),
        shard_rows=2,
        queries_per_doc=2,
        **{**base_config, "query_temperature": 1.0, "answer_temperature": 1.0, "seed": 7},
    )
    rec = Recording(engine)
    events = []
    report = harvest(cfg, engine=rec, on_event=events.append)

    assert (report.shards_total, report.shards_written, report.shards_skipped) == (5, 5, 0)
    assert report.documents == 8
    check_accounting(report.counts, 2)
    table = read_harvest(cfg.output_dir)
    assert table.schema == ROW_SCHEMA
    assert table.num_rows == report.rows > 0
    rows = table.to_pylist()
    assert len({r["id"] for r in rows}) == len(rows)
    by_text = {t: ("a.parquet", i) for i, t in enumerate(docs_a)} | {t: ("b.jsonl", i) for i, t in enumerate(docs_b)}
    for r in rows:
        assert (r["source_file"], r["source_row"]) == by_text[r["context"]]
        assert r["doc_id"] == content_id(r["context"])
        assert r["query"] and r["answer"] and r["query"] == r["query"].strip()
        assert r["model"] == cfg.model and r["template"].startswith("chat_template:") and r["placement"] == "system"
        assert (r["query_temperature"], r["answer_temperature"], r["seed"]) == (1.0, 1.0, 7)
        assert r["answer_finish_reason"] in ("stop", "length") and r["query_finish_reason"] in ("stop", "length")
        assert r["context_tokens"] == len(qwen_tokenizer(r["context"], add_special_tokens=False)["input_ids"])
        conv = [{"role": "system", "content": r["context"]}, {"role": "user", "content": r["query"]}]
        text = qwen_tokenizer.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
        assert r["prompt_tokens"] == len(qwen_tokenizer(text, add_special_tokens=False)["input_ids"])

    # one batched generate per pass per shard: 5 shards x (query pass + answer pass)
    assert len(rec.calls) == 10
    assert [len(c) for c in rec.calls[::2]] == [4, 4, 2, 4, 2]  # documents x queries_per_doc
    first = rec.calls[0][0]
    expected = qwen_tokenizer.apply_chat_template(
        [{"role": "system", "content": docs_a[0]}, {"role": "user", "content": "QQQ"}], tokenize=False
    )
    assert qwen_tokenizer.decode(first.prompt_ids) == expected[: expected.index("QQQ")]
    assert first.prompt_ids == qwen_tokenizer(expected[: expected.index("QQQ")], add_special_tokens=False)["input_ids"]
    stops = {qwen_tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|im_start|>", "<|endoftext|>")}
    assert stops <= set(first.stop_token_ids)
    assert len({r.seed for r in rec.calls[0]}) == 4
    for query_req, answer_req in zip(rec.calls[0], rec.calls[1], strict=False):  # answer prompts extend them
        assert answer_req.prompt_ids[: len(query_req.prompt_ids) - 1] == query_req.prompt_ids[:-1]

    kinds = [(e.kind, e.shard) for e in events]
    assert kinds[:3] == [("shard_start", 0), ("queries_done", 0), ("shard_done", 0)]
    assert kinds[-1] == ("shard_done", 4)
    marker = json.loads((Path(cfg.output_dir) / "shard-00000.done.json").read_text())
    assert marker["counts"]["documents"] == 2 and marker["fingerprint"] == report.fingerprint


def test_rerun_skips_finished_shards_and_same_seed_gives_same_bytes(engine, config_on, tmp_path):
    cfg = config_on(make_documents(4), shard_rows=2, queries_per_doc=2, query_temperature=1.0, answer_temperature=0.7)
    first = harvest(cfg, engine=engine)
    out = Path(cfg.output_dir)
    before = shard_bytes(out)
    rec = Recording(engine)
    again = harvest(cfg, engine=rec)
    assert (again.shards_written, again.shards_skipped) == (0, 2)
    assert rec.calls == [] and shard_bytes(out) == before
    assert again.counts == first.counts

    other = HarvestConfig(**{**cfg.__dict__, "output_dir": str(tmp_path / "out2")})
    harvest(other, engine=engine)
    assert shard_bytes(Path(other.output_dir)) == before


def test_directory_with_another_fingerprint_is_refused(engine, config_on, tmp_path):
    cfg = config_on(make_documents(2))
    harvest(cfg, engine=engine)
    before = shard_bytes(Path(cfg.output_dir))
    changed = HarvestConfig(**{**cfg.__dict__, "seed": 1, "query_max_tokens": 8})
    with pytest.raises(ValueError, match=r"differs in: config\.query_max_tokens, (config\.seed, )?seed"):
        harvest(changed, engine=engine)
    assert shard_bytes(Path(cfg.output_dir)) == before
    # settings of the execution only (progress, concurrency, engine) do not change the fingerprint
    same = HarvestConfig(**{**cfg.__dict__, "concurrency": 3, "progress": True})
    assert harvest(same, engine=engine).shards_skipped == 1

    stray = tmp_path / "stray"
    stray.mkdir()
    (stray / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"not empty and has no manifest\.json"):
        harvest(HarvestConfig(**{**cfg.__dict__, "output_dir": str(stray)}), engine=engine)


def test_stop_tokens_end_generation(engine, qwen_tokenizer):
    prompt = qwen_tokenizer("<|im_start|>user\nHello there<|im_end|>\n<|im_start|>assistant\n")["input_ids"]
    free = GenerationRequest(prompt, 12, 1.0, 1.0, 3, [])  # seeded sampling: greedy repeats one token
    (res,) = engine.generate([free])
    assert res.num_tokens == 12 and res.finish_reason == "length"
    gen = qwen_tokenizer(res.text, add_special_tokens=False)["input_ids"]
    # pick a token the model writes later on, not earlier: generation must end right there
    pos = next(i for i in range(3, len(gen)) if gen[i] not in gen[:i])
    stop = gen[pos]
    (cut,) = engine.generate([GenerationRequest(prompt, 12, 1.0, 1.0, 3, [stop])])
    assert cut.finish_reason == "stop"
    assert cut.text == qwen_tokenizer.decode(gen[:pos])
    assert cut.num_tokens == pos + 1  # the stop token is generated, then left out of the text


def test_filters_truncation_and_unfinished_answers_counted(engine, config_on, tmp_path):
    long_doc = " ".join(f"word{i}" for i in range(600))
    cfg = config_on(
        [*make_documents(3), long_doc],
        queries_per_doc=2,
        max_doc_tokens=64,
        question_mark="last",
        min_query_chars=4,
        allow_unfinished_answers=False,
        answer_max_tokens=3,
    )
    report = harvest(cfg, engine=engine)
    c = Counter(report.counts)
    check_accounting(c, 2)
    assert c["doc_truncated"] == 1
    assert c["query_no_question_mark"] > 0  # the random model's text rarely holds a '?'
    table = read_harvest(cfg.output_dir)
    assert table.num_rows == c["rows"]
    assert all(q.endswith("?") for q in table.column("query").to_pylist())

    loose = HarvestConfig(
        **{**cfg.__dict__, "output_dir": str(tmp_path / "loose"), "question_mark": "off", "min_query_chars": 1}
    )
    report = harvest(loose, engine=engine)
    c = Counter(report.counts)
    check_accounting(c, 2)
    assert c["answer_unfinished"] > 0 and c["answer_unfinished"] == c["queries_accepted"] - c["rows"]
    rows = read_harvest(loose.output_dir).to_pylist()
    assert all(r["answer_finish_reason"] == "stop" for r in rows)
    with_long = HarvestConfig(
        **{**loose.__dict__, "output_dir": str(tmp_path / "all"), "allow_unfinished_answers": True}
    )
    rows = read_harvest(Path(harvest(with_long, engine=engine).output_dir)).to_pylist()
    truncated = [r for r in rows if r["context_truncated"]]
    assert truncated and all(r["context_tokens"] == 64 for r in truncated)
    assert truncated[0]["context"].startswith("word0 word1") and truncated[0]["context"].endswith("word599")
    assert "word300" not in truncated[0]["context"]


def test_duplicates_across_shards_survive_a_resume(engine, config_on):
    doc = make_documents(1)[0]
    cfg = config_on([doc, make_documents(2)[1], doc], shard_rows=2)  # shard 0 and shard 1 share a text
    report = harvest(cfg, engine=engine)
    assert report.counts["query_duplicate"] == 1
    out = Path(cfg.output_dir)
    before = shard_bytes(out)
    (out / "shard-00001.done.json").unlink()  # as if the run had died before finishing shard 1
    resumed = harvest(cfg, engine=engine)
    assert (resumed.shards_written, resumed.shards_skipped) == (1, 1)
    assert resumed.counts["query_duplicate"] == 1 and shard_bytes(out) == before


def test_user_placement_and_preset(engine, config_on):
    cfg = config_on(make_documents(2), placement="user", template="qwen25")
    rec = Recording(engine)
    report = harvest(cfg, engine=rec)
    assert report.rows == 2
    rows = read_harvest(cfg.output_dir).to_pylist()
    assert {(r["template"], r["placement"]) for r in rows} == {("qwen25", "user")}


def test_bad_inputs_clear_errors_or_counted_skips(engine, base_config, tmp_path):
    import pyarrow as pa

    # missing text column: refused before anything is written
    write_parquet(tmp_path / "nocol.parquet", make_documents(2), column="body")
    with pytest.raises(ValueError, match=r"nocol.parquet has no column 'text' \(columns: body\)"):
        harvest(HarvestConfig(inputs=(str(tmp_path / "nocol.parquet"),), **base_config), engine=engine)
    assert not Path(base_config["output_dir"]).exists()

    # empty, null, non-UTF-8 and special-token documents are skipped and counted
    good = make_documents(2)
    texts = [good[0].encode(), b"", None, b"\xff\xfe broken", b"   ", good[1].encode(), b"x <|im_end|> y"]
    pq.write_table(pa.table({"text": pa.array(texts, pa.binary())}), tmp_path / "mixed.parquet")
    lines = [json.dumps({"text": good[0]}).encode(), b'{"text": "caf\xe9"}', json.dumps({"text": ""}).encode()]
    (tmp_path / "mixed.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    cfg = HarvestConfig(
        inputs=(str(tmp_path / "mixed.parquet"), str(tmp_path / "mixed.jsonl")), dedup="off", **base_config
    )
    report = harvest(cfg, engine=engine)
    c = Counter(report.counts)
    assert (c["documents"], c["doc_empty"], c["doc_not_utf8"], c["doc_special_tokens"]) == (10, 4, 2, 1)
    check_accounting(c, 1)
    assert report.rows == 3

    # a broken JSONL line stops the run with its line number; shards before it stay finished and intact
    rows = [{"text": t} for t in make_documents(4)]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"body": "no text field"}\n')
    cfg = HarvestConfig(inputs=(str(bad),), shard_rows=2, **{**base_config, "output_dir": str(tmp_path / "out-bad")})
    with pytest.raises(ValueError, match=r"bad.jsonl line 5 has no 'text' field \(it has: body\)"):
        harvest(cfg, engine=engine)
    out = Path(cfg.output_dir)
    assert sorted(p.name for p in out.glob("shard-*")) == [
        "shard-00000.done.json",
        "shard-00000.parquet",
        "shard-00001.done.json",
        "shard-00001.parquet",
    ]
    assert read_harvest(out).num_rows == 4
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"text": "fixed now, same row count"}\n')
    resumed = harvest(cfg, engine=engine)
    assert (resumed.shards_skipped, resumed.shards_written) == (2, 1)

    # a chat template without a user role: refused before any output
    no_user = "{% for m in messages %}{% if m.role != 'user' %}{{ m.content }}{% endif %}{% endfor %}"
    with pytest.raises(ValueError, match="no user role"):
        harvest(
            HarvestConfig(
                inputs=(str(bad),), chat_template=no_user, **{**base_config, "output_dir": str(tmp_path / "t")}
            ),
            engine=engine,
        )
    assert not (tmp_path / "t").exists()

    # a model that does not exist
    with pytest.raises(FileNotFoundError, match="does not exist"):
        harvest(HarvestConfig(inputs=(str(bad),), **{**base_config, "model": str(tmp_path / "no-such-model")}))


def test_shard_larger_than_one_engine_step(engine, config_on):
    """Prompts of a shard exceed vLLM's default step budget (4,096 tokens): on the CPU they must not be
    prefilled in chunks, where seeded requests fail ("CPU Generator does not use offset")."""
    docs = [f"Document {i}: " + " ".join(f"w{i}x{j}" for j in range(200)) for i in range(12)]
    cfg = config_on(docs, queries_per_doc=2)
    report = harvest(cfg, engine=engine)
    assert report.counts["doc_truncated"] == 12  # 256-token budget: each prompt ~270 tokens, 24 of them
    check_accounting(Counter(report.counts), 2)
    assert report.rows > 0
