"""Document isolation on real transformers models: a packed row run with its boundaries gives, document by
document, the logits of each document run alone; a boundary off by one token is caught."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from support import require

import longmagpie

torch = require("torch")
transformers = require("transformers")
from longmagpie.integrations.torch import PackedCollator, document_attention_mask  # noqa: E402

VOCAB = 512
TOL = {"atol": 2e-5, "rtol": 1e-4}


def tiny_model(family: str, attn: str):
    torch.manual_seed(0)
    common = {
        "vocab_size": VOCAB,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 1024,
    }
    if family == "qwen2":
        config, cls = transformers.Qwen2Config(**common), transformers.Qwen2ForCausalLM
    else:
        config, cls = transformers.LlamaConfig(**common), transformers.LlamaForCausalLM
    config._attn_implementation = attn
    return cls(config).float().eval()


def random_samples(seed: int, n: int, lo: int, hi: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    ids = [rng.integers(0, VOCAB, size=k).tolist() for k in rng.integers(lo, hi + 1, size=n)]
    return pa.table({"input_ids": pa.array(ids, pa.list_(pa.int32()))})


@pytest.fixture(scope="module")
def packed() -> pa.Table:
    long, short = random_samples(3, 20, 40, 150), random_samples(4, 60, 2, 40)
    rows = longmagpie.pack_pmix(long, short, seq_len=256, seed=1, fill="best_fit").to_pylist()
    table = pa.Table.from_pylist([r for r in rows if len(r["seq_lengths"]) >= 3][:3])
    assert table.num_rows == 3
    return table


def alone(model, ids: list[int], seq_lengths: list[int]) -> list[torch.Tensor]:
    out, at = [], 0
    with torch.no_grad():
        for n in seq_lengths:
            out.append(model(torch.tensor([ids[at : at + n]]), use_cache=False).logits[0])
            at += n
    return out


def per_document_error(logits: torch.Tensor, expected: list[torch.Tensor], seq_lengths: list[int]) -> float:
    err, at = 0.0, 0
    for n, want in zip(seq_lengths, expected, strict=True):
        err = max(err, float((logits[at : at + n] - want).abs().max()))
        at += n
    return err


def run_with_mask(model, attn: str, ids: list[int], boundaries: list[int]) -> torch.Tensor:
    """Run a packed row with the explicit block-diagonal mask and per-document positions built from `boundaries`."""
    mask = document_attention_mask(boundaries, dtype=torch.float32 if attn == "eager" else None)
    positions = torch.cat([torch.arange(n) for n in boundaries])[None]
    with torch.no_grad():
        return model(torch.tensor([ids]), attention_mask=mask, position_ids=positions, use_cache=False).logits[0]


@pytest.mark.parametrize(("family", "attn"), [("qwen2", "eager"), ("qwen2", "sdpa"), ("llama", "sdpa")])
def test_explicit_block_mask_isolates_documents(packed, family, attn) -> None:
    model = tiny_model(family, attn)
    for row in packed.to_pylist():
        ids, lengths = row["input_ids"], row["seq_lengths"]
        expected = alone(model, ids, lengths)
        torch.testing.assert_close(
            torch.cat(expected), torch.cat([run_with_mask(model, attn, ids, lengths)[: sum(lengths)]]), **TOL
        )
        # Negative controls: a boundary one token off, and upstream's single span per row.
        off_by_one = (
            [lengths[0] + 1, lengths[1] - 1, *lengths[2:]] if lengths[1] > 1 else [lengths[0] - 1, 2, *lengths[2:]]
        )
        assert per_document_error(run_with_mask(model, attn, ids, off_by_one), expected, lengths) > 1e-3
        assert per_document_error(run_with_mask(model, attn, ids, [len(ids)]), expected, lengths) > 1e-3


@pytest.mark.parametrize(("family", "attn"), [("qwen2", "eager"), ("qwen2", "sdpa"), ("llama", "eager")])
def test_collator_batch_isolates_documents_across_rows(packed, family, attn) -> None:
    """The collator's batch as a Trainer passes it (no attention mask, no cache): transformers derives the
    block-diagonal mask from the restarting position_ids, over several rows flattened into one sequence."""
    model = tiny_model(family, attn)
    rows = packed.to_pylist()
    batch = PackedCollator()(rows)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        logits = model(**inputs, use_cache=False).logits[0]
    lengths = [n for r in rows for n in r["seq_lengths"]]
    expected = [t for r in rows for t in alone(model, r["input_ids"], r["seq_lengths"])]
    assert per_document_error(logits, expected, lengths) < TOL["atol"] * 10
    torch.testing.assert_close(logits, torch.cat(expected), **TOL)
    # Negative control: the same tokens with positions that do not restart (one sequence per batch) leak.
    with torch.no_grad():
        leaked = model(batch["input_ids"], use_cache=False).logits[0]
    assert per_document_error(leaked, expected, lengths) > 1e-3
    # And a collator fed an off-by-one boundary is caught as well.
    shifted = [dict(rows[0], seq_lengths=[rows[0]["seq_lengths"][0] + 1, rows[0]["seq_lengths"][1] - 1,
                                          *rows[0]["seq_lengths"][2:]])]  # fmt: skip
    if rows[0]["seq_lengths"][1] > 1:
        bad = PackedCollator()(shifted)
        with torch.no_grad():
            wrong = model(**{k: v for k, v in bad.items() if k != "labels"}, use_cache=False).logits[0]
        assert per_document_error(wrong, alone(model, rows[0]["input_ids"], rows[0]["seq_lengths"]),
                                  rows[0]["seq_lengths"]) > 1e-3  # fmt: skip


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_documents_padded_for_context_parallelism_keep_their_logits(attn) -> None:
    """Rows packed with pad_documents_to: each document's padding sits after it inside its segment, so through the
    collator every real token's logits are those of its document run alone, unpadded."""
    model = tiny_model("qwen2", attn)
    long, short = random_samples(5, 6, 30, 90), random_samples(6, 20, 3, 30)
    table = longmagpie.pack(pa.concat_tables([long, short]), seq_len=256, pad_documents_to=8, pad_id=1)
    rows = table.to_pylist()[:3]
    assert any(p != r for row in rows for p, r in zip(row["seq_lengths"], row["seq_lengths_unpadded"], strict=True))
    batch = PackedCollator()(rows)
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}, use_cache=False).logits[0]
    at = 0
    for row in rows:
        start = 0
        for padded, real in zip(row["seq_lengths"], row["seq_lengths_unpadded"], strict=True):
            (want,) = alone(model, row["input_ids"][start : start + real], [real])
            torch.testing.assert_close(logits[at : at + real], want, **TOL)
            assert (batch["labels"][0, at + real : at + padded] == -100).all(), "padding is not trained"
            at, start = at + padded, start + padded
