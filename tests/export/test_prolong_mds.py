"""ProLong's own training-data code, run unchanged over `export_mds` output read back with mosaicml-streaming, under
the numpy installed here: the documents and trained tokens it builds are our packed rows' `seq_lengths` and
`assistant_masks`. The default `indices` encoding (int64) works under numpy 1 and 2; upstream's uint32 raises
OverflowError in ProLong's collator under numpy 2 (NEP 50), and wraps in its length sort there."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from support import make_samples, require, rng_lengths

import longmagpie

streaming = require("streaming")
torch = require("torch")

NUMPY2 = int(np.__version__.split(".")[0]) >= 2

# ---------------------------------------------------------------------------------------------------------------
# Copied from ProLong, https://github.com/princeton-nlp/ProLong, training/dataset.py at commit
# 907dcf4b833a3510e39ce8355e45db4175648a49 (MIT License, Copyright (c) 2024 Princeton Natural Language Processing);
# upstream LongMagpie ships the same collator (caskcsg/longcontext LongMagpie/training/dataset.py at 88fbeb85).
# `DataArguments` and `DataCollator` are verbatim but for formatting; `negative_item_cost` is
# `SortByLengthDataset._negative_item_cost` without `self`. The tokenizer argument is unused there, as here.
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class DataArguments:
    single_seq: bool = field(
        default=False,
        metadata={"help": "Ignore the document boundaries and treat the whole packed sequence as a single sequence"},
    )
    per_device_max_tokens: int | None = field(
        default=4_294_967_296,
        metadata={
            "help": "Maximum number of tokens per device; this is to avoid some catastrophic cases where the indices "
            "or data sequences are not filtered/truncated properly in preprocessing"
        },
    )
    apply_instruct_masks: bool = field(
        default=False,
        metadata={
            "help": "Whether to apply loss masks over the instructions (for instruction tuning). If enabled, will "
            "read the `mask` field in the data and set the corresponding labels to -100."
        },
    )


class DataCollator:
    def __init__(self, tokenizer, args: DataArguments):
        self.tokenizer = tokenizer
        self.args = args

    @torch.no_grad()
    def __call__(self, features):
        input_ids = []
        labels = []
        seq_lengths = []

        available_tokens = self.args.per_device_max_tokens
        for item in features:
            apply_instruct_masks = self.args.apply_instruct_masks and ("mask" in item)
            indices = item["indices"] if "indices" in item else [(0, len(item["input_ids"]))]
            if self.args.single_seq:
                indices = [(0, len(item["input_ids"]))]

            label_seq = torch.tensor(item["input_ids"], dtype=torch.long)

            for a, b in indices:
                b = a + min(b - a, available_tokens)
                if b - a > 1:
                    input_seq = torch.tensor(item["input_ids"][a:b], dtype=torch.long)
                    input_ids.append(input_seq)

                    _label = label_seq[a:b]
                    _label[0] = -100  # Don't predict the first token
                    if apply_instruct_masks:
                        # Read the `mask` field and set the corresponding labels to -100
                        mask = torch.tensor(item["mask"][a:b], dtype=torch.long)
                        _label[mask == 0] = -100
                    labels.append(_label)

                    seq_lengths.append(b - a)
                    available_tokens -= b - a
                elif available_tokens <= 0:
                    assert available_tokens == 0, "Available tokens should be non-negative"
                    break

        input_ids = torch.concat(input_ids, dim=0)
        labels = torch.concat(labels, dim=0)
        seq_lengths = torch.tensor(seq_lengths, dtype=torch.long)

        return dict(input_ids=input_ids, attention_mask=None, labels=labels, seq_lengths=seq_lengths)


def negative_item_cost(item):
    if "indices" in item:
        return -sum((end - start) ** 2 for start, end in item["indices"])
    elif "length" in item:
        return -(item["length"] ** 2)
    else:
        return -(len(item["input_ids"]) ** 2)


# --------------------------------------------- end of the ProLong copy ---------------------------------------------


def read_back(path) -> list[dict]:
    ds = streaming.StreamingDataset(local=str(path), shuffle=False, batch_size=1)
    return [ds[i] for i in range(len(ds))]


def expected_batch(rows: list[dict], max_tokens: int) -> dict[str, list[int]]:
    """What the collator must build, from our packed rows alone (Python ints): one segment per document of more
    than one token, cut to the tokens left; its first token and every token whose `assistant_masks` is 0 (or whose
    `labels` is -100) is not trained, the others are trained on their own id."""
    ids: list[int] = []
    labels: list[int] = []
    lengths: list[int] = []
    left = max_tokens
    for row in rows:
        start = 0
        lab = row.get("labels") or [0] * len(row["input_ids"])
        for n in row["seq_lengths"]:
            take = min(n, left)
            if take > 1:
                for j in range(start, start + take):
                    train = j > start and row["assistant_masks"][j] == 1 and lab[j] != -100
                    ids.append(row["input_ids"][j])
                    labels.append(row["input_ids"][j] if train else -100)
                lengths.append(take)
                left -= take
            start += n
    return {"input_ids": ids, "labels": labels, "seq_lengths": lengths}


def collate(items: list[dict], max_tokens: int | None) -> dict[str, Any]:
    args = DataArguments(apply_instruct_masks=True)  # as ProLong's and LongMagpie's train_sft.sh
    if max_tokens is not None:
        args.per_device_max_tokens = max_tokens
    return DataCollator(None, args)(items)


def check_batch(got: dict, rows: list[dict], max_tokens: int) -> None:
    want = expected_batch(rows, max_tokens)
    assert got["input_ids"].dtype == got["labels"].dtype == got["seq_lengths"].dtype == torch.long
    assert got["seq_lengths"].tolist() == want["seq_lengths"]
    assert got["input_ids"].tolist() == want["input_ids"]
    assert got["labels"].tolist() == want["labels"]
    assert int((got["labels"] != -100).sum()) == sum(label != -100 for label in want["labels"])


def packed(labels: bool = True) -> pa.Table:
    # Documents of 2+ tokens: ProLong drops 1-token spans, which carry no trained token anyway.
    return longmagpie.pack(make_samples(rng_lengths(7, 90, 2, 70), labels=labels), seq_len=160)


@pytest.mark.parametrize(
    "max_tokens",
    [None, 65_536, 300],
    ids=["DataArguments-default-2**32", "train_sft.sh-65536", "cut-at-300"],
)
def test_prolong_collator_reads_our_mds(tmp_path, max_tokens) -> None:
    table = packed()
    result = longmagpie.export_mds(table, tmp_path / "mds")
    shard = json.loads((tmp_path / "mds" / "index.json").read_text())["shards"][0]
    encodings = dict(zip(shard["column_names"], shard["column_encodings"], strict=True))
    assert encodings["indices"] == "ndarray:int64" and encodings["input_ids"] == "ndarray:uint32"
    items = read_back(tmp_path / "mds")
    rows = table.to_pylist()
    assert len(items) == len(rows) == result.rows
    for item, row in zip(items, rows, strict=True):
        # The documents: ProLong's (a, b) pairs are our seq_lengths' spans, and plain-int compatible numpy scalars.
        assert item["indices"].dtype == np.int64
        ends = np.cumsum(row["seq_lengths"]).tolist()
        assert [(int(a), int(b)) for a, b in item["indices"]] == list(zip([0, *ends[:-1]], ends, strict=True))
    cap = 4_294_967_296 if max_tokens is None else max_tokens
    for start in range(0, len(items), 4):
        check_batch(collate(items[start : start + 4], max_tokens), rows[start : start + 4], cap)
    # Over the whole export in one batch (no cut): every document once, and every token we train on is trained by
    # ProLong, except a document's first token, which no trainer predicts (its label would come from the previous
    # document).
    if max_tokens is None:
        whole = collate(items, None)
        assert whole["seq_lengths"].tolist() == [n for row in rows for n in row["seq_lengths"]]
        firsts = [
            row["assistant_masks"][s] == 1 and row["labels"][s] != -100
            for row in rows
            for s in np.cumsum([0, *row["seq_lengths"][:-1]]).tolist()
        ]
        assert int((whole["labels"] != -100).sum()) == result.trained_tokens - sum(firsts)


def test_upstream_uint32_indices_fail_prolong_collator_under_numpy2(tmp_path) -> None:
    table = packed()
    longmagpie.export_mds(table, tmp_path / "mds", indices_dtype="uint32")
    shard = json.loads((tmp_path / "mds" / "index.json").read_text())["shards"][0]
    assert shard["column_encodings"][shard["column_names"].index("indices")] == "ndarray:uint32"
    items = read_back(tmp_path / "mds")
    assert items[0]["indices"].dtype == np.uint32
    rows = table.to_pylist()
    # A cap that fits in uint32 (ProLong's shipped scripts pass 65536 or 524288) works on both numpy lines ...
    check_batch(collate(items[:4], 65_536), rows[:4], 65_536)
    # ... the dataclass default 2**32 does not under numpy 2: `available_tokens -= b - a` casts 2**32 to uint32.
    if NUMPY2:
        with pytest.raises(OverflowError, match="out of bounds for uint32"):
            collate(items[:4], None)
    else:
        check_batch(collate(items[:4], None), rows[:4], 4_294_967_296)


def test_prolong_length_sort_cost_does_not_wrap(tmp_path) -> None:
    # Rows over 64k tokens: sum((end - start) ** 2) passes 2**32. numpy 1 promoted uint32 ** int to int64; under
    # numpy 2 it stays uint32 and wraps (and its negation is unsigned), so the length sort orders rows wrongly.
    lengths = [70_000, 60_000, 65_536]
    table = longmagpie.pack(make_samples(lengths), seq_len=1 << 17)
    for dtype in ("int64", "uint32"):
        longmagpie.export_mds(table, tmp_path / dtype, indices_dtype=dtype)
    rows = table.to_pylist()
    want = [-sum(n * n for n in row["seq_lengths"]) for row in rows]
    assert [negative_item_cost(item) for item in read_back(tmp_path / "int64")] == want
    with np.errstate(over="ignore"):
        upstream = [negative_item_cost(item) for item in read_back(tmp_path / "uint32")]
    if NUMPY2:
        assert all(got != w for got, w in zip(upstream, want, strict=True))
    else:
        assert upstream == want
