"""A plain transformers Trainer with `PackedCollator` on an exported packed Parquet dataset: one step runs on the
batch the collator builds, and the loss is the cross-entropy over assistant tokens past each document's start."""

from __future__ import annotations

import copy

import numpy as np
import pyarrow as pa
import pytest
from support import require
from support.export import one_step_args

import longmagpie

torch = require("torch")
transformers = require("transformers")
datasets = require("datasets")
from longmagpie.integrations.torch import PackedCollator  # noqa: E402

pytestmark = pytest.mark.slow  # a real training step

VOCAB = 256


def samples(seed: int, n: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 60, size=n)
    ids = [rng.integers(0, VOCAB, size=k).tolist() for k in lengths]
    masks = [[int(j >= k // 2) for j in range(k)] for k in lengths]  # second half plays the answer
    return pa.table(
        {"input_ids": pa.array(ids, pa.list_(pa.int32())), "assistant_masks": pa.array(masks, pa.list_(pa.int8()))}
    )


@pytest.mark.filterwarnings("ignore")
def test_trainer_one_step_with_packed_collator(tmp_path) -> None:
    table = longmagpie.pack(samples(0, 24), seq_len=128)
    longmagpie.export_parquet(table, tmp_path / "hf")
    train = datasets.load_dataset(str(tmp_path / "hf"), split="train", cache_dir=str(tmp_path / "cache"))

    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=512,
    )  # fmt: skip
    config._attn_implementation = "sdpa"
    model = transformers.LlamaForCausalLM(config)
    initial = copy.deepcopy(model).eval()
    seen: list[dict] = []
    model.register_forward_hook(
        lambda _m, _a, kwargs, out: seen.append({**kwargs, "loss": out.loss.detach()}), with_kwargs=True
    )
    args = transformers.TrainingArguments(
        **one_step_args(tmp_path), per_device_train_batch_size=3, remove_unused_columns=False
    )
    trainer = transformers.Trainer(model=model, args=args, train_dataset=train, data_collator=PackedCollator())
    trainer.train()
    assert len(seen) == 1 and trainer.state.global_step == 1
    batch = seen[0]
    assert {"cu_seq_lens_q", "cu_seq_lens_k", "max_length_q", "max_length_k", "position_ids"} <= batch.keys()
    assert batch.get("attention_mask") is None

    # The batch is the collator's output for three dataset rows (found by their tokens).
    ids = batch["input_ids"][0].tolist()
    rows = []
    at = 0
    while at < len(ids):
        row = next(r for r in table.to_pylist() if ids[at : at + len(r["input_ids"])] == r["input_ids"])
        rows.append(row)
        at += len(row["input_ids"])
    assert len(rows) == 3
    expected_batch = PackedCollator()(rows)
    for key in ("input_ids", "labels", "position_ids", "cu_seq_lens_q"):
        assert torch.equal(batch[key], expected_batch[key]), key

    # Loss = CE over assistant tokens past each document start, from the initial weights; all-token CE differs.
    with torch.no_grad():
        logits = initial(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
    ce = torch.nn.functional.cross_entropy
    expected = ce(logits[0, :-1], batch["labels"][0, 1:], ignore_index=-100)
    every = batch["input_ids"].clone()
    every[batch["position_ids"] == 0] = -100
    unmasked = ce(logits[0, :-1], every[0, 1:], ignore_index=-100)
    assert trainer.state.log_history[0]["loss"] == pytest.approx(float(expected), rel=1e-5)
    assert abs(float(unmasked) - float(expected)) > 10 * 1e-5 * float(expected)
