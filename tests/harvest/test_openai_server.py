"""The ``openai`` engine against a real vLLM OpenAI-compatible server on 127.0.0.1, and an unreachable one."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from support import free_port
from support.harvest import check_accounting, make_documents

from longmagpie.harvest import (
    GenerationRequest,
    HarvestConfig,
    OpenAIEngine,
    ServerUnreachableError,
    harvest,
    read_harvest,
)


def test_openai_engine_generates_token_prompts_and_honours_stops(server, engine, qwen_tokenizer):
    client = OpenAIEngine(server, "tiny", concurrency=4)
    prompt = qwen_tokenizer("<|im_start|>user\nHello there<|im_end|>\n<|im_start|>assistant\n")["input_ids"]
    (free,) = client.generate([GenerationRequest(prompt, 12, 1.0, 1.0, 3, [])])
    assert free.finish_reason == "length" and free.num_tokens == 12 and len(free.token_ids) == 12
    assert qwen_tokenizer.decode(list(free.token_ids)) == free.text
    # the same token-id request on the in-process engine samples the same tokens (same model, same seed)
    (local,) = engine.generate([GenerationRequest(prompt, 12, 1.0, 1.0, 3, [])])
    assert local.token_ids == free.token_ids
    gen = list(free.token_ids)
    pos = next(i for i in range(1, len(gen)) if gen[i] not in gen[:i])
    (cut,) = client.generate([GenerationRequest(prompt, 12, 1.0, 1.0, 3, [gen[pos]])])
    assert cut.finish_reason == "stop" and cut.text == qwen_tokenizer.decode(gen[:pos])


def test_harvest_through_the_server(server, config_on, caplog):
    secret = "sk-never-on-disk-5f3a9c"  # the server takes any key; the harvest must send it and write it nowhere
    cfg = config_on(
        make_documents(6),
        shard_rows=3,
        queries_per_doc=2,
        engine="openai",
        base_url=server,
        served_model_name="tiny",
        concurrency=4,
        api_key=secret,
    )
    with caplog.at_level("DEBUG"):
        report = harvest(cfg)
    assert report.engine == "openai" and (report.shards_written, report.documents) == (2, 6)
    check_accounting(Counter(report.counts), 2)
    table = read_harvest(cfg.output_dir)
    assert table.num_rows == report.rows > 0
    assert set(table.column("model").to_pylist()) == {cfg.model}
    # No credential on disk or in the log: shards, manifest, markers, everything the run wrote.
    written = [p for p in Path(cfg.output_dir).rglob("*") if p.is_file()]
    assert len(written) >= 5 and not [p for p in written if secret.encode() in p.read_bytes()]
    assert secret not in caplog.text


def test_unreachable_server_is_a_clear_error_and_finished_shards_stay(engine, config_on):
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ServerUnreachableError, match=r"cannot reach the OpenAI-compatible server at .*/v1/models"):
        OpenAIEngine(dead, "tiny", max_retries=2, backoff=0.01)

    cfg = config_on(make_documents(4), shard_rows=2)
    harvest(cfg, engine=engine)
    out = Path(cfg.output_dir)
    (out / "shard-00001.done.json").unlink()
    kept = {p.name: p.read_bytes() for p in out.glob("shard-00000*")}
    remote = HarvestConfig(
        **{**cfg.__dict__, "engine": "openai", "base_url": dead, "max_retries": 1, "retry_backoff": 0.01}
    )
    with pytest.raises(ConnectionError, match="start it"):
        harvest(remote)
    assert {p.name: p.read_bytes() for p in out.glob("shard-00000*")} == kept
    assert not (out / "shard-00001.done.json").exists()
