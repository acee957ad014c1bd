"""One optimizer step of TRL's SFTTrainer on an exported packed Parquet dataset (real Qwen2.5 token ids, a tiny
random Qwen2, CPU): it runs, the labels it trains on are exactly the assistant tokens minus each document's first
token, and its loss is the cross-entropy over those tokens only."""

from __future__ import annotations

import copy
import itertools

import pyarrow as pa
import pytest
from support import require
from support.export import one_step_args

import longmagpie

pytestmark = pytest.mark.slow  # a real training step

torch = require("torch")
transformers = require("transformers")
trl = require("trl")
datasets = require("datasets")

TOPICS = ["tides", "volcanoes", "bread", "glaciers", "comets", "bees", "rivers", "bridges", "copper", "owls"]


def chat_samples(tokenizer, long_answers: bool = False) -> pa.Table:
    """Single-turn chats tokenized with the real chat template; assistant_masks marks the answer tokens.

    ``long_answers``: answers of 1 to 16 sentences, so that a token mean and a document mean differ.
    """
    ids, masks = [], []
    for i, topic in enumerate(TOPICS):
        context = " ".join(
            f"Fact {k} about {topic}: it is studied by people in field {k + i}." for k in range(1 + i % 4)
        )
        messages = [
            {"role": "user", "content": f"{context}\nWhat is one fact about {topic}?"},
            {
                "role": "assistant",
                "content": " ".join(
                    [f"One fact: {topic} are studied in field {i}."] * (1 + 5 * (i % 4) if long_answers else 1)
                ),
            },
        ]
        full = list(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"])
        prompt = tokenizer.apply_chat_template(
            messages[:1], tokenize=True, add_generation_prompt=True, return_dict=True
        )
        prompt = list(prompt["input_ids"])
        assert full[: len(prompt)] == prompt
        ids.append(full)
        masks.append([0] * len(prompt) + [1] * (len(full) - len(prompt)))
    return pa.table(
        {"input_ids": pa.array(ids, pa.list_(pa.int32())), "assistant_masks": pa.array(masks, pa.list_(pa.int8()))}
    )


def masked_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy over labels != -100 (labels already -100 at each document's first token)."""
    return torch.nn.functional.cross_entropy(logits[0, :-1].float(), labels[0, 1:], ignore_index=-100)


@pytest.mark.filterwarnings("ignore")
def test_sft_trainer_one_step_on_exported_parquet_trains_on_assistant_tokens(
    tmp_path, qwen_tokenizer_dir, tiny_qwen2_dir
) -> None:
    tokenizer = transformers.AutoTokenizer.from_pretrained(qwen_tokenizer_dir)
    samples = chat_samples(tokenizer)
    longest = max(len(x) for x in samples.column("input_ids").to_pylist())
    table = longmagpie.pack(samples, seq_len=3 * longest)
    assert table.num_rows >= 2 and max(len(s) for s in table.column("seq_lengths").to_pylist()) >= 2
    longmagpie.export_parquet(table, tmp_path / "packed")
    train = datasets.load_dataset(str(tmp_path / "packed"), split="train", cache_dir=str(tmp_path / "cache"))
    assert train.to_list() == table.to_pylist()

    model = transformers.AutoModelForCausalLM.from_pretrained(
        tiny_qwen2_dir, dtype=torch.float32, attn_implementation="sdpa"
    )
    with torch.no_grad():  # spread the random logits so that which tokens are counted changes the loss visibly
        model.get_input_embeddings().weight.mul_(8.0)
    initial = copy.deepcopy(model).eval()
    seen: list[dict] = []
    model.register_forward_hook(
        lambda _m, _args, kwargs, out: seen.append(
            {**{k: kwargs.get(k) for k in ("input_ids", "labels", "position_ids")}, "loss": out.loss.detach()}
        ),
        with_kwargs=True,
    )
    args = trl.SFTConfig(
        **one_step_args(tmp_path),
        padding_free=True,
        max_length=None,
        per_device_train_batch_size=table.num_rows,
        bf16=False,
        gradient_checkpointing=False,
    )
    trainer = trl.SFTTrainer(model=model, args=args, train_dataset=train, processing_class=tokenizer)
    before = [p.detach().clone() for p in model.parameters()]
    trainer.train()
    assert len(seen) == 1 and trainer.state.global_step == 1
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))  # a step was taken

    # The labels SFTTrainer trained on: per document, the assistant tokens except the document's first token.
    batch = seen[0]
    ids, labels, positions = (
        batch["input_ids"][0].tolist(),
        batch["labels"][0].tolist(),
        batch["position_ids"][0].tolist(),
    )
    starts = [i for i, p in enumerate(positions) if p == 0] + [len(ids)]
    docs = {tuple(d): m for row in table.to_pylist() for d, m in split_docs(row)}
    assert len(starts) - 1 == len(docs) == len(TOPICS)
    for a, b in itertools.pairwise(starts):
        mask = docs[tuple(ids[a:b])]
        assert labels[a:b] == [ids[a + j] if j > 0 and mask[j] else -100 for j in range(b - a)]
    # Same labels as longmagpie's own collator on the same rows in the trainer's order.
    order = sorted(table.to_pylist(), key=lambda r: find(ids, r["input_ids"]))
    ours = longmagpie.PackedCollator()(order)
    assert ours["input_ids"][0].tolist() == ids and ours["labels"][0].tolist() == labels

    # The trainer's loss is the cross-entropy over exactly those tokens, and not over all tokens.
    with torch.no_grad():
        logits = initial(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
    expected = masked_loss(logits, batch["labels"])
    every_token = batch["input_ids"].clone()
    every_token[batch["position_ids"] == 0] = -100
    unmasked = masked_loss(logits, every_token)
    logged = trainer.state.log_history[0]["loss"]
    print(f"trainer loss {logged:.6f}, assistant-only {float(expected):.6f}, every token {float(unmasked):.6f}")
    assert logged == pytest.approx(float(expected), rel=1e-4)
    assert float(batch["loss"]) == pytest.approx(float(expected), rel=1e-4)
    # The control is far outside the tolerance used above, so counting every token would have failed it.
    assert abs(float(unmasked) - float(expected)) > 10 * 1e-4 * float(expected)


def split_docs(row: dict) -> list[tuple[list[int], list[int]]]:
    out, at = [], 0
    for n in row["seq_lengths"]:
        out.append((row["input_ids"][at : at + n], row["assistant_masks"][at : at + n]))
        at += n
    return out


def find(haystack: list[int], needle: list[int]) -> int:
    for i in range(len(haystack) - len(needle) + 1):
        if haystack[i : i + len(needle)] == needle:
            return i
    raise AssertionError("row not found in the trainer's batch")


@pytest.mark.filterwarnings("ignore")
def test_weighted_loss_trainer_one_step_averages_documents(tmp_path, qwen_tokenizer_dir, tiny_qwen2_dir) -> None:
    """The documented recipe for loss_weights: transformers' Trainer (WeightedLossTrainer) + PackedCollator, one step
    on exported Parquet packed with loss_weights="per_sequence"; its loss is the mean of the documents' mean losses."""
    from longmagpie.integrations.torch import PackedCollator, WeightedLossTrainer, weighted_loss

    tokenizer = transformers.AutoTokenizer.from_pretrained(qwen_tokenizer_dir)
    samples = chat_samples(tokenizer, long_answers=True)
    longest = max(len(x) for x in samples.column("input_ids").to_pylist())
    table = longmagpie.pack(samples, seq_len=3 * longest, loss_weights="per_sequence")
    longmagpie.export_parquet(table, tmp_path / "packed")
    train = datasets.load_dataset(str(tmp_path / "packed"), split="train", cache_dir=str(tmp_path / "cache"))
    model = transformers.AutoModelForCausalLM.from_pretrained(
        tiny_qwen2_dir, dtype=torch.float32, attn_implementation="sdpa"
    )
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(8.0)
    initial = copy.deepcopy(model).eval()
    args = transformers.TrainingArguments(
        **one_step_args(tmp_path), per_device_train_batch_size=table.num_rows, remove_unused_columns=False
    )
    collator = PackedCollator()
    trainer = WeightedLossTrainer(model=model, args=args, train_dataset=train, data_collator=collator)
    trainer.train()
    assert trainer.state.global_step == 1
    logged = trainer.state.log_history[0]["loss"]

    batch = collator(list(train))  # one batch of every row; a document's loss does not depend on its row
    with torch.no_grad():
        logits = initial(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
    ce = torch.nn.functional.cross_entropy(logits[0, :-1], batch["labels"][0, 1:], ignore_index=-100, reduction="none")
    labels = batch["labels"][0, 1:]
    cu = batch["cu_seq_lens_q"].tolist()
    means = [ce[a : b - 1][labels[a : b - 1] != -100].mean() for a, b in itertools.pairwise(cu)]
    assert len(means) == len(TOPICS)
    expected = float(torch.stack(means).mean())
    assert float(weighted_loss(logits, batch["labels"], batch["loss_weights"])) == pytest.approx(expected, rel=1e-5)
    token_mean = float(masked_loss(logits, batch["labels"]))
    print(f"trainer loss {logged:.6f}, document mean {expected:.6f}, token mean {token_mean:.6f}")
    assert logged == pytest.approx(expected, rel=1e-5)
    assert abs(token_mean - expected) > 10 * 1e-5 * expected  # the control: the token mean is far outside that
