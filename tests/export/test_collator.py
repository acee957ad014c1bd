"""`longmagpie.PackedCollator` (integrations.torch): padding-free batches from packed rows, equal after a Parquet
round trip, and the same batch TRL's own padding-free collator builds from `seq_lengths`."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from support import make_samples, require, rng_lengths

import longmagpie

torch = require("torch")
from longmagpie.integrations.torch import PackedCollator, document_attention_mask  # noqa: E402


def independent(rows: list[dict]) -> dict:
    """The expected batch, built document by document with plain Python."""
    ids, labels, pos, cu = [], [], [], [0]
    for row in rows:
        at = 0
        mask = row.get("assistant_masks") or [1] * len(row["input_ids"])
        lab = row.get("labels") or row["input_ids"]
        for n in row["seq_lengths"]:
            for j in range(n):
                ids.append(row["input_ids"][at + j])
                pos.append(j)
                keep = j > 0 and mask[at + j] == 1 and lab[at + j] != -100
                labels.append(lab[at + j] if keep else -100)
            at += n
            cu.append(cu[-1] + n)
    return {"input_ids": ids, "labels": labels, "position_ids": pos, "cu": cu}


def check(batch: dict, rows: list[dict]) -> None:
    want = independent(rows)
    assert batch["input_ids"].shape == (1, len(want["input_ids"]))
    assert batch["input_ids"][0].tolist() == want["input_ids"]
    assert batch["labels"][0].tolist() == want["labels"]
    assert batch["position_ids"][0].tolist() == want["position_ids"]
    assert batch["cu_seq_lens_q"].dtype == batch["cu_seq_lens_k"].dtype == torch.int32
    assert batch["cu_seq_lens_q"].tolist() == batch["cu_seq_lens_k"].tolist() == want["cu"]
    assert batch["max_length_q"] == batch["max_length_k"] == max(np.diff(want["cu"]))


@pytest.mark.parametrize("labels", [False, True])
def test_batch_semantics(labels) -> None:
    table = longmagpie.pack(make_samples(rng_lengths(0, 80, 1, 50), labels=labels), seq_len=128)
    rows = table.to_pylist()
    for start in range(0, len(rows), 3):
        check(PackedCollator()(rows[start : start + 3]), rows[start : start + 3])
    batch = PackedCollator(return_seq_idx=True, return_attention_mask=True)(rows[:2])
    lengths = rows[0]["seq_lengths"] + rows[1]["seq_lengths"]
    assert batch["seq_idx"][0].tolist() == np.repeat(np.arange(len(lengths)), lengths).tolist()
    assert torch.equal(batch["attention_mask"], document_attention_mask(lengths))


def test_round_trip_pack_parquet_datasets_collator(tmp_path) -> None:
    table = longmagpie.pack(longmagpie.synthetic_samples(60_000, mix="short", seed=1), seq_len=2048)
    longmagpie.export_parquet(table, tmp_path / "out", rows_per_shard=5)
    datasets = require("datasets")
    ds = datasets.load_dataset(str(tmp_path / "out"), split="train", cache_dir=str(tmp_path / "cache"))
    assert ds.num_rows == table.num_rows
    rows = table.to_pylist()
    collate = PackedCollator()
    for start in range(0, ds.num_rows, 4):
        from_disk = collate([ds[i] for i in range(start, min(start + 4, ds.num_rows))])
        in_memory = collate(rows[start : start + 4])
        assert from_disk.keys() == in_memory.keys()
        for key, value in in_memory.items():
            assert torch.equal(from_disk[key], value) if torch.is_tensor(value) else from_disk[key] == value
        check(from_disk, rows[start : start + 4])
    # torch-formatted rows work too.
    ds.set_format("torch")
    check(collate([ds[0], ds[1]]), rows[:2])


def test_matches_trl_padding_free_collator() -> None:
    trl = require("trl")
    table = longmagpie.pack(make_samples(rng_lengths(2, 60, 1, 40)), seq_len=96)
    rows = table.to_pylist()
    # What SFTTrainer's dataset preparation does with `assistant_masks`: fold it into `labels`.
    trl_rows = [
        {
            "input_ids": r["input_ids"],
            "seq_lengths": r["seq_lengths"],
            "labels": [t if m else -100 for t, m in zip(r["input_ids"], r["assistant_masks"], strict=True)],
        }
        for r in rows
    ]
    theirs = trl.trainer.sft_trainer.DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)(trl_rows[:4])
    ours = PackedCollator()(rows[:4])
    for key in ("input_ids", "labels", "position_ids", "cu_seq_lens_q", "cu_seq_lens_k"):
        assert theirs[key].tolist() == ours[key].tolist(), key
    assert theirs["max_length_q"] == ours["max_length_q"]


def test_bad_examples_are_named() -> None:
    collate = PackedCollator()
    good = {"input_ids": [1, 2, 3], "seq_lengths": [2, 1]}
    with pytest.raises(ValueError, match=r"example 1: seq_lengths sums to 2 but input_ids has 3"):
        collate([good, {"input_ids": [1, 2, 3], "seq_lengths": [2]}])
    with pytest.raises(ValueError, match=r"example 0: 'seq_lengths' is missing"):
        collate([{"input_ids": [1]}])
    with pytest.raises(ValueError, match=r"example 0: seq_lengths has an entry < 1"):
        collate([{"input_ids": [1, 2], "seq_lengths": [2, 0]}])
    with pytest.raises(ValueError, match=r"example 0: assistant_masks has 2 values but input_ids has 3"):
        collate([{**good, "assistant_masks": [1, 1]}])
    with pytest.raises(ValueError, match="empty batch"):
        collate([])


def test_import_longmagpie_does_not_import_torch() -> None:
    code = "import sys, longmagpie; assert 'torch' not in sys.modules and 'streaming' not in sys.modules; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"
