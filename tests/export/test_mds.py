"""`longmagpie.export_mds`: MDS with upstream LongMagpie/ProLong columns, one span per document, read back by
mosaicml-streaming's own StreamingDataset. (ProLong's own collator over it, numpy 1 and 2: test_prolong_mds.py.)"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
from support import make_samples, require, rng_lengths, siblings, tree

import longmagpie

streaming = require("streaming")


def read_back(path) -> list[dict]:
    ds = streaming.StreamingDataset(local=str(path), shuffle=False, batch_size=1)
    return [ds[i] for i in range(len(ds))]


def expected(table: pa.Table, indices_dtype: str = "int64") -> list[dict]:
    out = []
    for row in table.to_pylist():
        ends = np.cumsum(row["seq_lengths"])
        mask = np.array(row["assistant_masks"], dtype=np.uint8)
        if "labels" in row:
            mask &= np.array([lab != -100 for lab in row["labels"]], dtype=np.uint8)
        out.append(
            {
                "input_ids": np.array(row["input_ids"], dtype=np.uint32),
                "indices": np.stack([ends - np.array(row["seq_lengths"]), ends], axis=1).astype(indices_dtype),
                "mask": mask,
                "length": row["length"],
                "domain": ",".join(dict.fromkeys(row.get("source") or [])),
            }
        )
    return out


def assert_same(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert set(g) == set(w) == {"input_ids", "indices", "mask", "length", "domain"}
        for key in ("input_ids", "indices", "mask"):
            assert g[key].dtype == w[key].dtype and g[key].shape == w[key].shape, key
            np.testing.assert_array_equal(g[key], w[key])
        assert g["length"] == w["length"] and g["domain"] == w["domain"]


def test_round_trip_through_streaming_dataset(tmp_path) -> None:
    table = longmagpie.pack(make_samples(rng_lengths(0, 300, 1, 150), source=True), seq_len=512)
    result = longmagpie.export_mds(table, tmp_path / "mds", size_limit=1 << 16)
    index = json.loads((tmp_path / "mds" / "index.json").read_text())
    assert len(index["shards"]) > 1 and "index.json" in result.files
    shard = index["shards"][0]
    assert shard["column_names"] == ["domain", "indices", "input_ids", "length", "mask"]
    assert shard["column_encodings"] == ["str", "ndarray:int64", "ndarray:uint32", "int", "ndarray:uint8"]
    assert shard["compression"].startswith("zstd")
    got = read_back(tmp_path / "mds")
    assert_same(got, expected(table))
    # One span per document, covering the row without gaps.
    assert sum(len(g["indices"]) for g in got) == 300 == result.documents
    assert all(g["indices"][0, 0] == 0 and g["indices"][-1, 1] == g["length"] for g in got)


def test_pmix_stream_with_labels_and_a_constant_domain(tmp_path) -> None:
    long = make_samples(rng_lengths(1, 30, 40, 200), labels=True)
    short = make_samples(rng_lengths(2, 150, 4, 40), labels=True)
    mixed = longmagpie.pack_pmix(long, short, seq_len=256, seed=5)
    stream = longmagpie.pack_pmix_stream(long, short, seq_len=256, seed=5)
    result = longmagpie.export_mds(stream, tmp_path / "mds", seq_len=256, domain="LongMagpie_p-mix", compression=None)
    assert result.pack_metadata["op"] == "pack_pmix_stream" and result.rows == mixed.num_rows
    want = expected(mixed)
    for w in want:
        w["domain"] = "LongMagpie_p-mix"
    assert_same(read_back(tmp_path / "mds"), want)


def test_upstream_uint32_indices_on_request(tmp_path) -> None:
    table = longmagpie.pack(make_samples(rng_lengths(5, 60, 1, 90), source=True), seq_len=256)
    longmagpie.export_mds(table, tmp_path / "mds", indices_dtype="uint32")
    shard = json.loads((tmp_path / "mds" / "index.json").read_text())["shards"][0]
    assert shard["column_encodings"] == ["str", "ndarray:uint32", "ndarray:uint32", "int", "ndarray:uint8"]
    assert_same(read_back(tmp_path / "mds"), expected(table, "uint32"))
    with pytest.raises(ValueError, match="indices_dtype must be one of"):
        longmagpie.export_mds(table, tmp_path / "bad", indices_dtype="int32")
    assert not (tmp_path / "bad").exists()


def test_same_input_same_bytes_and_staged_write(tmp_path) -> None:
    table = longmagpie.pack(make_samples(rng_lengths(3, 100, 1, 90)), seq_len=128)
    longmagpie.export_mds(table, tmp_path / "a")
    longmagpie.export_mds(table, tmp_path / "b")
    assert tree(tmp_path / "a") == tree(tmp_path / "b")
    with pytest.raises(FileExistsError, match="not empty"):
        longmagpie.export_mds(table, tmp_path / "a")

    def failing():
        yield from table.to_batches(max_chunksize=5)[:3]
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        longmagpie.export_mds(failing(), tmp_path / "a", overwrite=True)
    assert tree(tmp_path / "a") == tree(tmp_path / "b") and siblings(tmp_path / "a") == []
    with pytest.raises(ValueError, match=r"row \d+: has \d+ tokens, more than seq_len=50"):
        longmagpie.export_mds(table, tmp_path / "c", seq_len=50)
    assert not (tmp_path / "c").exists() and siblings(tmp_path / "c") == []


def prolong_collate(items: list[dict]) -> dict:
    """ProLong's training collator as the reference describes it (training/dataset.py, `apply_instruct_masks`):
    each `indices` span of length > 1 becomes a segment whose first label is -100 and whose labels are -100
    where `mask` is 0; segments of all items are concatenated, their lengths are `seq_lengths`."""
    ids, labels, lengths = [], [], []
    for item in items:
        for a, b in item["indices"].tolist():
            if b - a <= 1:
                continue
            seg = item["input_ids"][a:b].astype(np.int64)
            lab = seg.copy()
            lab[0] = -100
            lab[item["mask"][a:b] == 0] = -100
            ids.append(seg)
            labels.append(lab)
            lengths.append(b - a)
    return {"input_ids": np.concatenate(ids), "labels": np.concatenate(labels), "seq_lengths": lengths}


def test_prolong_collator_on_mds_builds_the_batch_packed_collator_builds_from_parquet(tmp_path) -> None:
    torch = require("torch")
    from longmagpie.integrations.torch import PackedCollator

    samples = make_samples(rng_lengths(4, 120, 2, 70), labels=True)  # ProLong skips 1-token segments
    table = longmagpie.pack(samples, seq_len=160)
    longmagpie.export_mds(table, tmp_path / "mds")
    longmagpie.export_parquet(table, tmp_path / "hf")
    datasets = require("datasets")
    hf = datasets.load_dataset(str(tmp_path / "hf"), split="train", cache_dir=str(tmp_path / "cache"))
    mds = read_back(tmp_path / "mds")
    for start in range(0, len(mds), 4):
        theirs = prolong_collate(mds[start : start + 4])
        ours = PackedCollator()([hf[i] for i in range(start, min(start + 4, len(mds)))])
        assert ours["input_ids"][0].tolist() == theirs["input_ids"].tolist()
        assert ours["labels"][0].tolist() == theirs["labels"].tolist()
        assert torch.diff(ours["cu_seq_lens_q"]).tolist() == theirs["seq_lengths"]
