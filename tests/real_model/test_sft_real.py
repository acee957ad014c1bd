"""A real fine-tuning step on our rows: SmolLM2-135M-Instruct, TRL's SFTTrainer in padding-free mode, CPU.

The rows are real (the demo's hand-written questions and answers about its documents), tokenized with SmolLM2's own
chat template (:func:`longmagpie.encode_conversations`), packed, exported as a Hugging Face Parquet dataset and
loaded back with ``datasets``. Asserted:
- on this real model the packed-row logits equal the per-document logits, with eager and with SDPA attention
  (position ids restart per document; no attention crosses a boundary);
- a few optimizer steps on the answers only lower the answer loss on held-out packed rows (other documents,
  never trained on).
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
from support import require
from support.export import one_step_args

import longmagpie

torch = require("torch")
transformers = require("transformers")
trl = require("trl")
datasets = require("datasets")

QA = Path(longmagpie.__file__).parent / "demo" / "data" / "qa.jsonl"
#: Words of each document kept in the user turn (bounded CPU time; the question stays answerable from them).
CONTEXT_WORDS = 120
SEQ_LEN = 1024
HELD_OUT = 8
STEPS = 6


def conversations() -> list[list[dict[str, str]]]:
    rows = [json.loads(line) for line in QA.read_text().splitlines() if line.strip()]
    return [
        [
            {"role": "user", "content": " ".join(r["context"].split()[:CONTEXT_WORDS]) + "\n\n" + r["query"]},
            {"role": "assistant", "content": r["answer"]},
        ]
        for r in rows
    ]


def packed(convs: list[list[dict[str, str]]], tokenizer: object) -> pa.Table:
    samples = longmagpie.encode_conversations(convs, tokenizer)
    return longmagpie.pack(samples, seq_len=SEQ_LEN, overflow="truncate")


def answer_loss(model: object, rows: list[dict]) -> float:
    """Mean cross-entropy over the trained tokens of packed rows (one padding-free batch per row)."""
    total, count = 0.0, 0
    with torch.no_grad():
        for row in rows:
            batch = longmagpie.PackedCollator()([row])
            logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
            labels = batch["labels"][0, 1:]
            loss = torch.nn.functional.cross_entropy(logits[0, :-1].float(), labels, ignore_index=-100, reduction="sum")
            total += float(loss)
            count += int((labels != -100).sum())
    return total / count


@pytest.fixture(scope="module")
def data(smollm2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    tokenizer = transformers.AutoTokenizer.from_pretrained(smollm2_dir)
    convs = conversations()
    train_rows, held_rows = packed(convs[:-HELD_OUT], tokenizer), packed(convs[-HELD_OUT:], tokenizer)
    out = tmp_path_factory.mktemp("sft")
    longmagpie.export_parquet(train_rows, out / "train")
    train = datasets.load_dataset(str(out / "train"), split="train", cache_dir=str(out / "cache"))
    assert train.num_rows == train_rows.num_rows
    return {"tokenizer": tokenizer, "train": train, "held": held_rows.to_pylist(), "rows": train_rows, "dir": out}


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_packed_logits_equal_per_document_logits(smollm2_dir: Path, data: dict, attention: str) -> None:
    model = transformers.AutoModelForCausalLM.from_pretrained(
        smollm2_dir, dtype=torch.float32, attn_implementation=attention
    ).eval()
    row = next(r for r in data["rows"].to_pylist() if len(r["seq_lengths"]) >= 3)
    batch = longmagpie.PackedCollator()([row])
    with torch.no_grad():
        packed_logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits[
            0
        ]
        at = 0
        for n in row["seq_lengths"]:
            alone = model(input_ids=torch.tensor([row["input_ids"][at : at + n]]), use_cache=False).logits[0]
            torch.testing.assert_close(packed_logits[at : at + n], alone, atol=2e-4, rtol=1e-4)
            at += n


@pytest.mark.filterwarnings("ignore")
def test_sft_steps_lower_the_held_out_answer_loss(smollm2_dir: Path, data: dict) -> None:
    model = transformers.AutoModelForCausalLM.from_pretrained(
        smollm2_dir, dtype=torch.float32, attn_implementation="sdpa"
    )
    before = answer_loss(model.eval(), data["held"])
    args = trl.SFTConfig(
        **{**one_step_args(data["dir"]), "max_steps": STEPS, "learning_rate": 1e-4},
        padding_free=True,
        max_length=None,
        per_device_train_batch_size=2,
        bf16=False,
        gradient_checkpointing=False,
        lr_scheduler_type="constant",
    )
    trainer = trl.SFTTrainer(model=model, args=args, train_dataset=data["train"], processing_class=data["tokenizer"])
    trainer.train()
    assert trainer.state.global_step == STEPS
    after = answer_loss(model.eval(), data["held"])
    print(f"held-out answer loss: {before:.4f} before, {after:.4f} after {STEPS} steps")
    assert after < before - 0.02  # learned from the answers, on documents it never saw
