"""`longmagpie.export_nemo`: Megatron-Bridge packed-SFT Parquet, read back with Megatron-Bridge's own reading and
collate logic (reproduced below), with and without per-document padding for context parallelism."""

from __future__ import annotations

import bisect
import glob
import json
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support import make_samples, rng_lengths
from typer.testing import CliRunner

import longmagpie
from longmagpie.cli import app

#: An id the samples below never hold otherwise (make_samples' ids are sample * 100_000 + position): the EOS id.
EOS = 99_999

# ---------------------------------------------------------------------------------------------------------------
# Megatron-Bridge's reader, reproduced from NVIDIA-NeMo/Megatron-Bridge at 067f987df03b8355b03192d88d70f1709fedf51a:
# - src/megatron/bridge/data/packing/paths.py `_resolve_parquet_paths` (a directory: sorted *.parquet and *.pq);
# - src/megatron/bridge/data/packing/parquet.py (last changed in 07d0acf5c150eeb797ee4a8d4cb9b33e4bac9d69)
#   `REQUIRED_COLUMNS`, `GPTSFTPackedParquetDataset._load_dataset`, `validate_row`, `_locate_row`, `__getitem__`;
# - src/megatron/bridge/data/packing/gpt_sft.py (last changed in 23743e2f7280ebe1c4d6be0080aaac6cedd24769)
#   `GPTSFTPackedDataset._build_loss_mask` and `collate_fn` (answer_only_loss=True, return_cu_seqlen=True);
# - src/megatron/bridge/data/datasets/gpt_sft.py `_ceil_to_nearest` and `_collate_item`.
# The code follows those lines; torch tensors are numpy arrays here, and the MSC (object store) branches are left out.
# ---------------------------------------------------------------------------------------------------------------

REQUIRED_COLUMNS = {"input_ids", "seq_start_id", "loss_mask"}


def _resolve_parquet_paths(path_str: str) -> list[str]:
    paths = []
    for ext in ["*.parquet", "*.pq"]:
        paths.extend(glob.glob(os.path.join(path_str, ext)))
    paths = sorted(set(paths))
    if not paths:
        raise ValueError(f"No Parquet files found in directory: {path_str}")
    return paths


class BridgePackedParquet:
    """GPTSFTPackedParquetDataset's reading and GPTSFTPackedDataset's collate_fn, as upstream writes them."""

    def __init__(
        self,
        file_path: str,
        eos_id: int,
        max_seq_length: int,
        pad_seq_to_mult: int = 1,
        pad_to_max_length: bool = False,
        pad_seq_length_to_mult: int = 16,
        pad_cu_seqlens: bool = False,
        pack_metadata_file_path: str | None = None,
    ) -> None:
        self.eos_id = eos_id
        self.max_seq_length = max_seq_length
        self._pad_seq_to_mult = pad_seq_to_mult
        self.pad_to_max_length = pad_to_max_length
        self.pad_seq_length_to_mult = pad_seq_length_to_mult
        self.pad_cu_seqlens = pad_cu_seqlens
        if self.pad_cu_seqlens:
            assert pack_metadata_file_path is not None
            assert self.pad_to_max_length is True
        self.pack_metadata = None
        if pack_metadata_file_path is not None:
            with open(pack_metadata_file_path) as f:
                self.pack_metadata = json.load(f)
        # _load_dataset
        self._parquet_paths = _resolve_parquet_paths(file_path)
        self._file_offsets = [0]
        self._file_row_group_offsets = []
        for parquet_path in self._parquet_paths:
            metadata = pq.read_metadata(parquet_path)
            schema = pq.read_schema(parquet_path)
            missing_columns = REQUIRED_COLUMNS - set(schema.names)
            if missing_columns:
                raise ValueError(f"Packed Parquet file '{parquet_path}' is missing required columns: {missing_columns}")
            row_group_offsets = [0]
            for i in range(metadata.num_row_groups):
                row_group_offsets.append(row_group_offsets[-1] + metadata.row_group(i).num_rows)
            self._file_row_group_offsets.append(row_group_offsets)
            self._file_offsets.append(self._file_offsets[-1] + metadata.num_rows)
        self._num_rows = self._file_offsets[-1]
        if self._num_rows == 0:
            raise ValueError(f"Packed Parquet dataset is empty (0 rows) for path: {file_path}")
        self._cached = None

    @staticmethod
    def validate_row(idx: int, input_ids: list, loss_mask: list, seq_start_id: list) -> None:
        if len(loss_mask) != len(input_ids):
            raise ValueError(f"Row {idx}: loss_mask length ({len(loss_mask)}) != input_ids length ({len(input_ids)})")
        if not seq_start_id or seq_start_id[0] != 0:
            raise ValueError(f"Row {idx}: seq_start_id must start with 0")
        for i, start in enumerate(seq_start_id):
            if start >= len(input_ids):
                raise ValueError(f"Row {idx}: seq_start_id[{i}]={start} >= len(input_ids)={len(input_ids)}")
            if i > 0 and start < seq_start_id[i - 1]:
                raise ValueError(f"Row {idx}: seq_start_id is not non-decreasing at index {i}")

    def __len__(self) -> int:
        return self._num_rows

    def _locate_row(self, global_idx: int) -> tuple[int, int, int]:
        file_idx = bisect.bisect_right(self._file_offsets, global_idx) - 1
        row_in_file = global_idx - self._file_offsets[file_idx]
        row_group_offsets = self._file_row_group_offsets[file_idx]
        row_group_id = bisect.bisect_right(row_group_offsets, row_in_file) - 1
        return file_idx, row_group_id, row_in_file - row_group_offsets[row_group_id]

    def __getitem__(self, idx: int) -> dict:
        file_idx, row_group_id, row_in_group = self._locate_row(idx)
        if self._cached is None or self._cached[0] != (file_idx, row_group_id):
            pf = pq.ParquetFile(self._parquet_paths[file_idx])
            table = pf.read_row_group(row_group_id, columns=["input_ids", "seq_start_id", "loss_mask"])
            self._cached = ((file_idx, row_group_id), table)
        table = self._cached[1]
        input_ids = table.column("input_ids")[row_in_group].as_py()
        seq_start_id = table.column("seq_start_id")[row_in_group].as_py()
        loss_mask = table.column("loss_mask")[row_in_group].as_py()
        seq_boundaries = [*seq_start_id, len(input_ids)]
        return {"input_ids": input_ids, "seq_boundaries": seq_boundaries, "loss_mask": loss_mask}

    def _ceil_to_nearest(self, n: int, m: int) -> int:
        return (n + m - 1) // m * m

    def _collate_item(self, item: list, max_length: int, pad_id: int) -> list:
        item = [x.tolist() if isinstance(x, np.ndarray) else x for x in item]
        return [x + [pad_id] * (max_length - len(x)) for x in item]

    def _build_loss_mask(self, processed_example: dict) -> np.ndarray:
        seq_boundaries = processed_example["seq_boundaries"]
        return np.concatenate(
            [
                processed_example["loss_mask"][seq_boundaries[i] : seq_boundaries[i + 1] - 1]
                for i in range(len(seq_boundaries) - 1)
            ]
        )

    def collate_fn(self, batch: list[dict]) -> dict:
        input_ids = [
            np.concatenate(
                [
                    item["input_ids"][item["seq_boundaries"][i] : item["seq_boundaries"][i + 1] - 1]
                    for i in range(len(item["seq_boundaries"]) - 1)
                ]
            )
            for item in batch
        ]
        labels = [
            np.concatenate(
                [
                    item["input_ids"][item["seq_boundaries"][i] + 1 : item["seq_boundaries"][i + 1]]
                    for i in range(len(item["seq_boundaries"]) - 1)
                ]
            )
            for item in batch
        ]
        loss_mask = [self._build_loss_mask(item) for item in batch]
        token_count = [item.shape[0] for item in input_ids]
        if self.pad_to_max_length:
            max_length = self.max_seq_length
        else:
            max_length = max(len(length) for length in input_ids)
            max_length = min(self.max_seq_length, self._ceil_to_nearest(max_length, self.pad_seq_length_to_mult))
        assert max_length <= self.max_seq_length

        position_ids: list[list[int]] = []
        cu_seqlens: list[list[int]] = []
        cu_seqlens_padded: list[list[int]] | None = [] if self._pad_seq_to_mult > 1 else None
        padding_masks: list[list[bool]] = []
        for row_idx, item in enumerate(batch):
            position_ids.append([])
            cu_seqlens.append([0])
            if cu_seqlens_padded is not None:
                cu_seqlens_padded.append([0])
            seqlens = np.array(item["seq_boundaries"][1:]) - np.array(item["seq_boundaries"][:-1])
            for length in seqlens:
                position_ids[-1].extend(list(range(length - 1)))
                if cu_seqlens_padded is not None:
                    cu_seqlens_padded[-1].append(cu_seqlens_padded[-1][-1] + length - 1)
                else:
                    cu_seqlens[-1].append(cu_seqlens[-1][-1] + length - 1)
            if cu_seqlens_padded is not None:
                assert cu_seqlens_padded[-1][-1] <= max_length
                if cu_seqlens_padded[-1][-1] != max_length:
                    cu_seqlens_padded[-1].append(max_length)
                for i in range(len(item["seq_boundaries"]) - 1):
                    current_seq = item["input_ids"][item["seq_boundaries"][i] : item["seq_boundaries"][i + 1] - 1]
                    current_seq_arr = np.array(current_seq)
                    non_eos_positions = np.where(current_seq_arr != self.eos_id)[0]
                    logical_seqlen = non_eos_positions[-1] + 1 if non_eos_positions.size > 0 else 0
                    cu_seqlens[-1].append(cu_seqlens[-1][-1] + logical_seqlen)
                if len(cu_seqlens_padded[-1]) > len(cu_seqlens[-1]):
                    cu_seqlens[-1].append(cu_seqlens[-1][-1])
                padding_mask = [False] * max_length
                for logical_start, logical_end, padded_start, padded_end in zip(
                    cu_seqlens[-1][:-1],
                    cu_seqlens[-1][1:],
                    cu_seqlens_padded[-1][:-1],
                    cu_seqlens_padded[-1][1:],
                    strict=True,
                ):
                    padding_start = padded_start + logical_end - logical_start
                    assert padding_start <= padded_end
                    padding_mask[padding_start:padded_end] = [True] * (padded_end - padding_start)
            else:
                assert cu_seqlens[-1][-1] <= max_length
                if cu_seqlens[-1][-1] != max_length:
                    cu_seqlens[-1].append(max_length)
                padding_mask = [False] * len(input_ids[row_idx]) + [True] * (max_length - len(input_ids[row_idx]))
            padding_masks.append(padding_mask)

            if self.pad_cu_seqlens:
                max_samples_per_bin = max(p["max_samples_per_bin"] for p in self.pack_metadata)
                if cu_seqlens_padded is not None:
                    pad_num = max_samples_per_bin - len(cu_seqlens_padded[-1]) + 2
                    cu_seqlens_padded[-1].extend([max_length] * pad_num)
                    cu_seqlens[-1].extend([cu_seqlens[-1][-1]] * pad_num)
                else:
                    pad_num = max_samples_per_bin - len(cu_seqlens[-1]) + 2
                    cu_seqlens[-1].extend([max_length] * pad_num)

        assert len(input_ids[0]) == len(position_ids[0])
        input_ids = self._collate_item(input_ids, max_length=max_length, pad_id=self.eos_id)
        labels = self._collate_item(labels, max_length=max_length, pad_id=self.eos_id)
        loss_mask = self._collate_item(loss_mask, max_length=max_length, pad_id=0)
        position_ids = self._collate_item(position_ids, max_length=max_length, pad_id=0)
        processed_batch = {
            "tokens": np.array(input_ids, dtype=np.int64),
            "labels": np.array(labels, dtype=np.int64),
            "loss_mask": np.array(loss_mask, dtype=np.int64),
            "position_ids": np.array(position_ids, dtype=np.int64),
            "token_count": token_count,
            "padding_mask": np.array(padding_masks, dtype=bool),
        }
        boundary_batches = [cu_seqlens]
        if cu_seqlens_padded is not None:
            boundary_batches.append(cu_seqlens_padded)
        max_num_boundaries = max(len(boundaries) for rows in boundary_batches for boundaries in rows)
        for rows in boundary_batches:
            for boundaries in rows:
                boundaries.extend([boundaries[-1]] * (max_num_boundaries - len(boundaries)))
        seqlens = np.array(cu_seqlens_padded if cu_seqlens_padded is not None else cu_seqlens, dtype=np.int32)
        seqlens = seqlens[:, 1:] - seqlens[:, :-1]
        if self.pad_cu_seqlens:
            dataset_max_seqlen = max(p["dataset_max_seqlen"] for p in self.pack_metadata)
            min_pack_seq_len = min(p["min_packed_seqlen"] for p in self.pack_metadata)
            padding_gap = max_length - min_pack_seq_len
            safe_max_seqlen = max(dataset_max_seqlen, padding_gap)
            max_seqlen = np.array([safe_max_seqlen] * len(cu_seqlens), dtype=np.int32)
        else:
            max_seqlen = seqlens.max(axis=1, keepdims=True)
        processed_batch.update(
            {
                "attention_mask": None,
                "cu_seqlens_q": np.array(cu_seqlens, dtype=np.int32),
                "max_seqlen_q": max_seqlen,
                "max_seqlen_kv": max_seqlen,
            }
        )
        processed_batch["cu_seqlens_kv"] = processed_batch["cu_seqlens_q"]
        if cu_seqlens_padded is not None:
            processed_batch["cu_seqlens_q_padded"] = np.array(cu_seqlens_padded, dtype=np.int32)
            processed_batch["cu_seqlens_kv_padded"] = processed_batch["cu_seqlens_q_padded"]
        return processed_batch


# ---------------------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------------------


def samples_ending_in_eos(lengths: list[int], end_with_eos: bool = True, labels: bool = False) -> pa.Table:
    """make_samples' samples whose last token is EOS (as chat-templated samples end), its mask 1."""
    base = make_samples(lengths, labels=labels)
    ids = base.column("input_ids").to_pylist()
    masks = base.column("assistant_masks").to_pylist()
    if end_with_eos:
        for row, mask in zip(ids, masks, strict=True):
            row[-1] = EOS
            mask[-1] = 1
    cols = {"input_ids": pa.array(ids, pa.list_(pa.int32())), "assistant_masks": pa.array(masks, pa.list_(pa.int8()))}
    if labels:
        cols["labels"] = base.column("labels")
    return pa.table(cols)


def packed_documents(table: pa.Table) -> list[list[tuple[list[int], list[int]]]]:
    """Per packed row, its documents as (ids, trained) with trained = mask and labels != -100."""
    out = []
    for row in table.to_pylist():
        pos, docs = 0, []
        mask = row["assistant_masks"]
        if "labels" in row:
            mask = [int(m and lab != -100) for m, lab in zip(mask, row["labels"], strict=True)]
        for n in row["seq_lengths"]:
            docs.append((row["input_ids"][pos : pos + n], mask[pos : pos + n]))
            pos += n
        out.append(docs)
    return out


def trainer_view(
    out: Path, seq_len: int, mult: int, *, pad_cu_seqlens: bool = False
) -> tuple[BridgePackedParquet, list[dict]]:
    """Every row of ``out`` as the trainer's collate_fn gives it (one row per micro batch, as it requires)."""
    ds = BridgePackedParquet(
        str(out),
        eos_id=EOS,
        max_seq_length=seq_len,
        pad_seq_to_mult=mult,
        pad_to_max_length=pad_cu_seqlens,
        pad_cu_seqlens=pad_cu_seqlens,
        pack_metadata_file_path=str(out / "metadata.json") if pad_cu_seqlens else None,
    )
    batches = []
    for i in range(len(ds)):
        item = ds[i]
        ds.validate_row(i, item["input_ids"], item["loss_mask"], item["seq_boundaries"][:-1])
        batches.append(ds.collate_fn([item]))
    return ds, batches


def assert_trainer_sees_documents(
    batches: list[dict], rows: list[list[tuple[list[int], list[int]]]], mult: int, eos_last: bool = True
) -> int:
    """Each document reaches the model alone: inputs doc[:-1], labels doc[1:], loss = trained labels, positions
    restarting, its span in cu_seqlens (and the padded span, with ``mult`` > 1, a multiple of it). Returns the
    number of trained labels."""
    assert len(batches) == len(rows)
    total = 0
    for b, docs in zip(batches, rows, strict=True):
        tokens, labels, loss, pos = b["tokens"][0], b["labels"][0], b["loss_mask"][0], b["position_ids"][0]
        cu = b["cu_seqlens_q"][0].tolist()
        cu_pad = b["cu_seqlens_q_padded"][0].tolist() if mult > 1 else cu
        assert len(cu) == len(cu_pad) >= len(docs) + 1
        covered = np.zeros(len(tokens), dtype=bool)
        for k, (ids, trained) in enumerate(docs):
            start, end = cu_pad[k], cu_pad[k + 1]
            if mult > 1:
                assert (end - start) % mult == 0
                padded = (len(ids) - 1 + mult - 1) // mult * mult
                assert end - start == padded
                # the unpadded span: exactly len - 1 inputs for a document ending in EOS; a document that does not
                # end in EOS and got padding keeps its last token as one more input (its label is padding, loss 0)
                logical = len(ids) - 1 if eos_last or padded == len(ids) - 1 else len(ids)
                assert cu[k + 1] - cu[k] == logical
            else:
                assert end - start == len(ids) - 1
            n = len(ids) - 1
            assert tokens[start : start + n].tolist() == ids[:-1]
            assert labels[start : start + n].tolist() == ids[1:]
            assert loss[start : start + n].tolist() == trained[1:]
            assert pos[start : start + n].tolist() == list(range(n))
            assert not loss[start + n : end].any()
            # the padding inputs: EOS ids, after the document's own last token where it is one more input
            carried = 0 if eos_last or end - start == n else 1
            assert tokens[start + n : start + n + carried].tolist() == ids[len(ids) - carried :]
            assert (tokens[start + n + carried : end] == EOS).all()
            covered[start:end] = True
            total += sum(trained[1:])
        assert not loss[~covered].any()
        assert cu_pad[len(docs)] <= len(tokens) and all(c == len(tokens) for c in cu_pad[len(docs) + 1 :])
        # MoE's padding mask: True exactly on the alignment padding and the row's tail
        if mult > 1:
            real = np.zeros(len(tokens), dtype=bool)
            for k in range(len(docs)):
                real[cu_pad[k] : cu_pad[k] + cu[k + 1] - cu[k]] = True
            assert (b["padding_mask"][0] == ~real).all()
    return total


# ---------------------------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------------------------


def test_columns_and_the_trainers_view_without_padding(tmp_path: Path) -> None:
    table = longmagpie.pack(make_samples(rng_lengths(0, 300, 1, 150), labels=True), seq_len=512)
    result = longmagpie.export_nemo(table, tmp_path / "nemo", rows_per_shard=20, row_group_rows=7)
    shards = sorted((tmp_path / "nemo").glob("*.idx.parquet"))
    assert len(shards) > 1 and result.files == (*(s.name for s in shards), "metadata.json")
    assert shards[0].name == f"part-00000-of-{len(shards):05d}.idx.parquet"
    assert pq.ParquetFile(shards[0]).metadata.num_row_groups == 3
    back = pq.read_table(shards)
    assert back.schema.names == ["input_ids", "loss_mask", "seq_start_id", "seq_lengths"]
    assert [f.type for f in back.schema] == [pa.list_(pa.int32()), pa.list_(pa.int8()), *[pa.list_(pa.int32())] * 2]
    # exact columns: ids unchanged, boundaries at the document starts, the mask rolled left within each document
    rows = packed_documents(table)
    for got, docs in zip(back.to_pylist(), rows, strict=True):
        assert got["input_ids"] == [t for ids, _ in docs for t in ids]
        assert got["seq_lengths"] == [len(ids) for ids, _ in docs]
        assert got["seq_start_id"] == np.concatenate([[0], np.cumsum(got["seq_lengths"])[:-1]]).tolist()
        assert got["loss_mask"] == [m for _, trained in docs for m in [*trained[1:], 0]]
    assert back.column("input_ids").equals(table.column("input_ids").cast(pa.list_(pa.int32())))
    _, batches = trainer_view(tmp_path / "nemo", 512, 1)
    trained = assert_trainer_sees_documents(batches, rows, 1)
    assert trained == result.trained_tokens > 0
    assert (result.rows, result.documents, result.tokens) == (
        table.num_rows,
        300,
        sum(table.column("length").to_pylist()),
    )
    meta = json.loads((tmp_path / "nemo" / "metadata.json").read_text())
    runtime = [sum(len(ids) - 1 for ids, _ in docs) for docs in rows]
    assert meta == [
        {
            "dataset_max_seqlen": max(len(ids) - 1 for docs in rows for ids, _ in docs),
            "max_samples_per_bin": max(len(docs) for docs in rows),
            "packing_factor": round(300 / table.num_rows, 2),
            "packing_efficiency": round(sum(runtime) / table.num_rows / 512 * 100, 2),
            "pack_size": 512,
            "min_packed_seqlen": min(runtime),
        }
    ]
    provenance = json.loads((tmp_path / "nemo" / "longmagpie.json").read_text())
    assert provenance["export"]["pad_seq_to_mult"] == 1 and provenance["pack_metadata"]["op"] == "pack"


@pytest.mark.parametrize("cp_size", [2, 4])
def test_context_parallel_pads_every_document(tmp_path: Path, cp_size: int) -> None:
    mult = 2 * cp_size
    samples = samples_ending_in_eos(rng_lengths(1, 400, 2, 150), labels=True)
    table = longmagpie.pack(samples, seq_len=400)  # rows of <= 400 tokens leave room to pad within 512 inputs
    plain = longmagpie.export_nemo(table, tmp_path / "plain", seq_len=512)
    result = longmagpie.export_nemo(table, tmp_path / "cp", seq_len=512, cp_size=cp_size, pad_id=EOS)
    back = pq.read_table(sorted((tmp_path / "cp").glob("*.parquet")))
    rows = packed_documents(table)
    pad_tokens = 0
    for got, docs in zip(back.to_pylist(), rows, strict=True):
        bounds = [*got["seq_start_id"], len(got["input_ids"])]
        stored = np.diff(bounds)
        assert ((stored - 1) % mult == 0).all()  # each document's model inputs are a multiple of 2 * cp
        assert got["seq_lengths"] == [len(ids) for ids, _ in docs]  # the unpadded lengths, as packed
        for k, (ids, trained) in enumerate(docs):
            seg = got["input_ids"][bounds[k] : bounds[k + 1]]
            assert seg[: len(ids)] == ids and set(seg[len(ids) :]) <= {EOS}
            assert got["loss_mask"][bounds[k] : bounds[k + 1]] == [*trained[1:], *[0] * (len(seg) - len(ids) + 1)]
            pad_tokens += len(seg) - len(ids)
    assert pad_tokens > 0 and result.tokens == plain.tokens + pad_tokens
    _, batches = trainer_view(tmp_path / "cp", 512, mult)
    trained = assert_trainer_sees_documents(batches, rows, mult)
    # the same documents and trained labels as without padding
    assert trained == result.trained_tokens == plain.trained_tokens
    _, unpadded = trainer_view(tmp_path / "plain", 512, 1)
    for a, b in zip(batches, unpadded, strict=True):
        sel = a["loss_mask"][0] == 1
        assert (a["labels"][0][sel] == b["labels"][0][b["loss_mask"][0] == 1]).all()
    meta = json.loads((tmp_path / "cp" / "metadata.json").read_text())[0]
    assert meta["dataset_max_seqlen"] == max(int(np.diff(b["cu_seqlens_q_padded"][0]).max()) for b in batches)
    assert meta["dataset_max_seqlen"] % mult == 0


def test_documents_that_do_not_end_in_eos(tmp_path: Path) -> None:
    table = longmagpie.pack(samples_ending_in_eos(rng_lengths(2, 200, 2, 90), end_with_eos=False), seq_len=400)
    result = longmagpie.export_nemo(table, tmp_path / "cp", seq_len=512, cp_size=2, pad_id=EOS)
    _, batches = trainer_view(tmp_path / "cp", 512, 4)
    assert assert_trainer_sees_documents(batches, packed_documents(table), 4, eos_last=False) == result.trained_tokens


def test_cuda_graph_path_reads_the_metadata(tmp_path: Path) -> None:
    """pad_cu_seqlens=True (CUDA graphs): fixed-shape cu_seqlens from max_samples_per_bin, max_seqlen from
    dataset_max_seqlen; both must cover every row for the attention kernel to see whole documents."""
    table = longmagpie.pack(samples_ending_in_eos(rng_lengths(3, 300, 2, 120)), seq_len=448)
    longmagpie.export_nemo(table, tmp_path / "cp", seq_len=512, cp_size=2, pad_id=EOS)
    _, batches = trainer_view(tmp_path / "cp", 512, 4, pad_cu_seqlens=True)
    meta = json.loads((tmp_path / "cp" / "metadata.json").read_text())[0]
    shapes = {b["cu_seqlens_q"].shape for b in batches} | {b["cu_seqlens_q_padded"].shape for b in batches}
    assert shapes == {(1, meta["max_samples_per_bin"] + 2)}
    for b in batches:
        assert len(b["tokens"][0]) == 512
        assert int(np.diff(b["cu_seqlens_q_padded"][0]).max()) <= int(b["max_seqlen_q"][0])
    assert_trainer_sees_documents(batches, packed_documents(table), 4)


def test_stream_input_gives_the_same_files(tmp_path: Path) -> None:
    samples = samples_ending_in_eos(rng_lengths(4, 500, 2, 100))
    table = longmagpie.pack(samples, seq_len=400)
    stream = longmagpie.pack_stream(samples, seq_len=400, window_tokens=10**9)
    a = longmagpie.export_nemo(table, tmp_path / "a", seq_len=512, cp_size=2, pad_id=EOS, row_group_rows=5)
    b = longmagpie.export_nemo(stream, tmp_path / "b", seq_len=512, cp_size=2, pad_id=EOS, row_group_rows=5)
    assert a.files == b.files and (a.rows, a.tokens, a.trained_tokens) == (b.rows, b.tokens, b.trained_tokens)
    assert b.pack_metadata["op"] == "pack_stream"
    ta, tb = (pq.read_table(sorted(p.glob("*.parquet"))) for p in (tmp_path / "a", tmp_path / "b"))
    assert ta.equals(tb)
    assert (tmp_path / "a" / "metadata.json").read_bytes() == (tmp_path / "b" / "metadata.json").read_bytes()


def test_a_row_that_does_not_fit_once_padded_is_refused(tmp_path: Path) -> None:
    # 16 documents of 4 tokens fill a 64-token row: 3 model inputs each, padded to 4 with cp_size=2 -> 64 inputs,
    # which fit; a 6-token document has 5 inputs, padded to 8: ten 4-token and four 6-token documents fill the
    # 64 tokens of a row but make 10 * 4 + 4 * 8 = 72 model inputs.
    fits = longmagpie.pack({"input_ids": [[1, 2, 3, EOS]] * 16}, seq_len=64)
    longmagpie.export_nemo(fits, tmp_path / "fits", cp_size=2, pad_id=EOS)
    samples = {"input_ids": [[1, 2, 3, EOS]] * 10 + [[5, 6, 7, 8, 9, EOS]] * 4}
    full = longmagpie.pack(samples, seq_len=64)
    assert full.column("length").to_pylist() == [64]
    with pytest.raises(ValueError, match=r"row 0: its 14 documents .* make 72 model inputs, more than seq_len=64"):
        longmagpie.export_nemo(full, tmp_path / "nemo", cp_size=2, pad_id=EOS)
    with pytest.raises(ValueError, match="Pack with a smaller seq_len"):
        longmagpie.export_nemo(full, tmp_path / "nemo", cp_size=2, pad_id=EOS)
    assert not (tmp_path / "nemo").exists() and [p.name for p in tmp_path.iterdir()] == ["fits"]
    # a second batch numbers its rows from the first
    stream = [longmagpie.pack({"input_ids": [[1, 2]]}, seq_len=64).to_batches()[0], full.to_batches()[0]]
    with pytest.raises(ValueError, match="row 1: its 14 documents"):
        longmagpie.export_nemo(stream, tmp_path / "nemo", seq_len=64, cp_size=2, pad_id=EOS)


def test_bad_arguments_are_named(tmp_path: Path) -> None:
    table = longmagpie.pack(make_samples([5, 9, 3]), seq_len=16)
    out = tmp_path / "nemo"
    with pytest.raises(ValueError, match="pad_id is required"):
        longmagpie.export_nemo(table, out, cp_size=2)
    for bad in (0, True, 1.5):
        with pytest.raises(ValueError, match="cp_size must be a positive int"):
            longmagpie.export_nemo(table, out, cp_size=bad, pad_id=EOS)
    with pytest.raises(ValueError, match=r"pad_seq_to_mult=6 is not a multiple of 2 \* cp_size = 4"):
        longmagpie.export_nemo(table, out, cp_size=2, pad_seq_to_mult=6, pad_id=EOS)
    with pytest.raises(ValueError, match="pad_id must be an int"):
        longmagpie.export_nemo(table, out, cp_size=2, pad_id=-1)
    with pytest.raises(ValueError, match="seq_len=18 is not a multiple of 4"):
        longmagpie.export_nemo(table, out, seq_len=18, cp_size=2, pad_id=EOS)
    bare = pa.table({"input_ids": [[1, 2, 3]], "seq_lengths": [[3]]})
    with pytest.raises(ValueError, match="seq_len is unknown"):
        longmagpie.export_nemo(bare, out)
    huge = pa.table({"input_ids": pa.array([[1, 2**31]], pa.list_(pa.int64())), "seq_lengths": [[2]]})
    with pytest.raises(ValueError, match="row 0: token id 2147483648 does not fit"):
        longmagpie.export_nemo(huge, out, seq_len=4)
    with pytest.raises(ValueError, match="needs a local path"):
        longmagpie.export_nemo(table, "s3://bucket/nemo")
    with pytest.raises(ValueError, match="the rows have no 'seq_lengths' column"):
        longmagpie.export_nemo(make_samples([3]), out, seq_len=8)
    assert not out.exists()
    # pad_seq_to_mult alone (e.g. sequence parallelism without CP) pads as well
    longmagpie.export_nemo(table, out, pad_seq_to_mult=4, pad_id=EOS)
    assert all(
        ((np.diff([*r["seq_start_id"], len(r["input_ids"])]) - 1) % 4 == 0).all()
        for r in pq.read_table(sorted(out.glob("*.parquet"))).to_pylist()
    )


def test_trained_labels_the_trainer_would_take_for_padding_are_refused(tmp_path: Path) -> None:
    # a document ending in two EOS tokens, the first one's label (the second EOS) trained: Megatron-Bridge's
    # unpadded span stops before the trailing EOS inputs, so that label would be computed on padding
    table = longmagpie.pack(
        {"input_ids": [[1, 2, EOS], [3, 4, 5, EOS, EOS]], "assistant_masks": [[0, 1, 1], [0, 1, 1, 1, 1]]},
        seq_len=16,
        strategy="sequential",
    )
    with pytest.raises(ValueError, match=r"row 0, document 1: ends in repeated pad_id=99999 \(EOS\) tokens"):
        longmagpie.export_nemo(table, tmp_path / "nemo", cp_size=2, pad_id=EOS)
    # without padding the trainer takes the boundaries from seq_start_id alone: nothing is lost
    longmagpie.export_nemo(table, tmp_path / "plain")
    _, batches = trainer_view(tmp_path / "plain", 16, 1)
    assert assert_trainer_sees_documents(batches, packed_documents(table), 1) == 6


def test_atomic_and_overwrite(tmp_path: Path) -> None:
    table = longmagpie.pack(samples_ending_in_eos([5, 9, 3]), seq_len=32)
    out = tmp_path / "nemo"
    longmagpie.export_nemo(table, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(FileExistsError, match="overwrite"):
        longmagpie.export_nemo(table, out)
    bad = pa.table({"input_ids": [[1, 2, 3]], "seq_lengths": [[2]]})
    with pytest.raises(ValueError, match="seq_lengths sums to 2"):
        longmagpie.export_nemo(bad, out, seq_len=32, overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    result = longmagpie.export_nemo(table, out, cp_size=2, pad_id=EOS, overwrite=True)
    assert result.tokens > sum(table.column("length").to_pylist())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nemo"]


def test_cli_export_nemo(tmp_path: Path) -> None:
    packed = tmp_path / "packed.parquet"
    pq.write_table(longmagpie.pack(samples_ending_in_eos(rng_lengths(5, 120, 2, 60)), seq_len=448), packed)
    runner = CliRunner()
    out = tmp_path / "nemo"
    args = ["export", str(packed), "-o", str(out), "--format", "nemo", "--seq-len", "512"]
    result = runner.invoke(app, [*args, "--cp-size", "2", "--pad-id", str(EOS)])
    assert result.exit_code == 0, result.output
    assert "exported" in result.output and "(nemo)" in result.output
    assert sorted(p.name for p in out.iterdir()) == [
        "longmagpie.json",
        "metadata.json",
        "part-00000-of-00001.idx.parquet",
    ]
    _, batches = trainer_view(out, 512, 4)
    assert_trainer_sees_documents(batches, packed_documents(pq.read_table(packed)), 4)
    missing = runner.invoke(app, [*args, "--cp-size", "2", "-o", str(tmp_path / "x")])
    assert missing.exit_code == 1 and "pad_id is required" in missing.output
    bad = runner.invoke(app, ["export", str(packed), "-o", str(tmp_path / "y"), "--format", "npy"])
    assert bad.exit_code != 0 and "nemo" in bad.output
