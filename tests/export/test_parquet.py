"""`longmagpie.export_parquet`: Hugging Face shards + card that `datasets` loads, atomic, checked."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support import make_samples, require, rng_lengths, siblings, tree

import longmagpie
from longmagpie.export import parquet as parquet_module


def packed(seed: int = 0, n: int = 200, seq_len: int = 256, **kw) -> pa.Table:
    return longmagpie.pack(make_samples(rng_lengths(seed, n, 1, 120), **kw), seq_len=seq_len)


def load(path: Path, tmp_path: Path, how: str = "dir", split: str = "train"):
    datasets = require("datasets")
    cache = str(tmp_path / "hf-cache")
    if how == "dir":
        return datasets.load_dataset(str(path), split=split, cache_dir=cache)
    return datasets.load_dataset("parquet", data_dir=str(path), split=split, cache_dir=cache)


def test_round_trip_through_datasets_both_ways(tmp_path) -> None:
    table = packed(labels=True, source=True)
    result = longmagpie.export_parquet(table, tmp_path / "out")
    assert result.files == ("data/train-00000-of-00001.parquet",)
    assert (result.rows, result.documents) == (table.num_rows, 200)
    assert result.tokens == sum(table.column("length").to_pylist())
    for how in ("dir", "parquet"):
        ds = load(tmp_path / "out", tmp_path, how)
        assert ds.to_list() == table.to_pylist()
        assert ds.data.table.schema.field("input_ids").type == pa.list_(pa.int32())
        assert ds.data.table.schema.field("assistant_masks").type == pa.list_(pa.int8())
    datasets = require("datasets")
    streamed = datasets.load_dataset(
        str(tmp_path / "out"), split="train", streaming=True, cache_dir=str(tmp_path / "hf")
    )
    assert list(streamed) == table.to_pylist()
    # The packing statistics travel in every shard's schema metadata.
    back = pq.read_table(tmp_path / "out" / "data")
    assert longmagpie.pack_stats(back) == longmagpie.pack_stats(table)


def test_shards_row_groups_and_compression(tmp_path) -> None:
    table = packed(seed=1, n=400)
    result = longmagpie.export_parquet(table, tmp_path / "out", rows_per_shard=30, row_group_rows=8, split="validation")
    n = -(-table.num_rows // 30)
    assert n > 2
    assert result.files == tuple(f"data/validation-{k:05d}-of-{n:05d}.parquet" for k in range(n))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["README.md", "data"]
    pieces = []
    for name in result.files:
        f = pq.ParquetFile(tmp_path / "out" / name)
        assert f.metadata.num_rows == 30 or name == result.files[-1]
        groups = [f.metadata.row_group(g) for g in range(f.metadata.num_row_groups)]
        assert all(g.num_rows <= 8 for g in groups) and sum(g.num_rows for g in groups) == f.metadata.num_rows
        assert {g.column(c).compression for g in groups for c in range(g.num_columns)} == {"ZSTD"}
        pieces.append(f.read())
    assert pa.concat_tables(pieces).to_pylist() == table.to_pylist()
    assert load(tmp_path / "out", tmp_path, split="validation").num_rows == table.num_rows


def test_byte_budgets_cut_at_the_same_rows_whatever_the_batching(tmp_path) -> None:
    table = packed(seed=2, n=300)
    budget = 6 * 256 * 5 + 40  # about six full rows per row group
    outs = []
    for i, chunk in enumerate((1, 7, 10_000)):
        stream = iter(table.to_batches(max_chunksize=chunk))
        longmagpie.export_parquet(
            stream, tmp_path / f"o{i}", seq_len=256, row_group_bytes=budget, shard_bytes=4 * budget
        )
        outs.append(tree(tmp_path / f"o{i}"))
    assert outs[0] == outs[1] == outs[2]
    # Greedy cuts: every row group and shard is within budget, and the next row would not have fit.
    cost = parquet_module.row_bytes(table.combine_chunks().to_batches()[0]).tolist()
    files = sorted((tmp_path / "o0" / "data").iterdir())
    assert len(files) > 2
    at = 0
    for k, path in enumerate(files):
        meta = pq.ParquetFile(path).metadata
        shard_start = at
        for g in range(meta.num_row_groups):
            n = meta.row_group(g).num_rows
            assert sum(cost[at : at + n]) <= budget
            if at + n < len(cost):
                assert sum(cost[at : at + n + 1]) > budget or g == meta.num_row_groups - 1
            at += n
        assert sum(cost[shard_start:at]) <= 4 * budget
        if k < len(files) - 1:
            assert sum(cost[shard_start : at + 1]) > 4 * budget
    assert at == table.num_rows


def test_streams_from_pack_stream_and_pack_pmix_stream(tmp_path) -> None:
    samples = make_samples(rng_lengths(3, 300, 1, 60), source=True)
    stream = longmagpie.pack_stream(samples.to_batches(max_chunksize=17), seq_len=128, window_tokens=2000)
    result = longmagpie.export_parquet(stream, tmp_path / "s", seq_len=128)
    assert stream.exhausted
    assert result.pack_metadata["op"] == "pack_stream"
    assert result.pack_metadata["stats"] == stream.stats.as_dict()
    assert load(tmp_path / "s", tmp_path).to_list() == pq.read_table(tmp_path / "s" / "data").to_pylist()
    card = (tmp_path / "s" / "README.md").read_text()
    assert f"| rows | {stream.stats.rows:,} |" in card and '"op": "pack_stream"' in card

    long = make_samples(rng_lengths(4, 40, 50, 200))
    short = make_samples(rng_lengths(5, 200, 5, 40))
    mixed = longmagpie.pack_pmix(long, short, seq_len=256, seed=3)
    pm = longmagpie.pack_pmix_stream(long, short, seq_len=256, seed=3)
    r = longmagpie.export_parquet(pm, tmp_path / "p", seq_len=256)
    assert r.pack_metadata["op"] == "pack_pmix_stream"
    ds = load(tmp_path / "p", tmp_path)
    assert ds.to_list() == mixed.to_pylist()
    assert ds.features["kind"].feature.dtype == "string"


def test_card_header_schema_and_statistics(tmp_path) -> None:
    table = packed(seed=6)
    longmagpie.export_parquet(table, tmp_path / "out")
    card = (tmp_path / "out" / "README.md").read_text()
    header = card.split("---")[1]
    yaml = require("yaml")
    meta = yaml.safe_load(header)
    assert meta["configs"] == [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}]
    for name, typ in zip(table.schema.names, table.schema.types, strict=True):
        assert f"| `{name}` | `{typ}` |" in card
    assert f"longmagpie {longmagpie.__version__}" in card
    recorded = json.loads(card.split("```json")[2].split("```")[0])
    assert recorded == longmagpie.pack_metadata(table)
    stats = longmagpie.pack_stats(table)
    assert f"| rows | {stats.rows:,} |" in card and f"| documents | {stats.documents:,} |" in card


def test_same_input_same_bytes(tmp_path) -> None:
    table = packed(seed=7, source=True)
    longmagpie.export_parquet(table, tmp_path / "a", rows_per_shard=9)
    longmagpie.export_parquet(table, tmp_path / "b", rows_per_shard=9)
    assert tree(tmp_path / "a") == tree(tmp_path / "b")


def test_empty_input_gives_one_empty_shard(tmp_path) -> None:
    table = packed(seed=8).slice(0, 0)
    result = longmagpie.export_parquet(table, tmp_path / "out")
    assert result.rows == 0 and result.files == ("data/train-00000-of-00001.parquet",)
    assert pq.read_table(tmp_path / "out" / result.files[0]).schema.equals(table.schema, check_metadata=False)


def test_refuses_non_empty_target_and_overwrites_on_request(tmp_path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    longmagpie.export_parquet(packed(seed=9), out)  # an empty directory is fine
    before = tree(out)
    with pytest.raises(FileExistsError, match="not empty; pass overwrite=True"):
        longmagpie.export_parquet(packed(seed=10), out)
    assert tree(out) == before
    other = packed(seed=10)
    longmagpie.export_parquet(other, out, overwrite=True)
    assert pq.read_table(out / "data").to_pylist() == other.to_pylist()
    assert siblings(out) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        longmagpie.export_parquet(other, tmp_path / "file")


def test_schema_mismatch_between_batches_names_the_batch(tmp_path) -> None:
    a = packed(seed=11)
    b = packed(seed=12, labels=True)
    with pytest.raises(ValueError, match=r"input batch 1 \(starting at row \d+\).*unexpected column 'labels'"):
        longmagpie.export_parquet(iter([a, b]), tmp_path / "out")
    c = a.set_column(0, "input_ids", a.column("input_ids").cast(pa.list_(pa.int64())))
    with pytest.raises(ValueError, match=r"'input_ids' is list<item: int64>, expected list<item: int32>"):
        longmagpie.export_parquet(iter([a.to_batches()[0], c.to_batches()[0]]), tmp_path / "out")
    assert not (tmp_path / "out").exists() and siblings(tmp_path / "out") == []


def test_rows_longer_than_seq_len_and_broken_boundaries(tmp_path) -> None:
    table = packed(seed=13, seq_len=256)
    longest = max(table.column("length").to_pylist())
    row = table.column("length").to_pylist().index(longest)
    with pytest.raises(ValueError, match=rf"row {row}: has {longest} tokens, more than seq_len=100"):
        longmagpie.export_parquet(table, tmp_path / "out", seq_len=100)
    bad = table.set_column(1, "seq_lengths", pa.array([[1] for _ in range(table.num_rows)], pa.list_(pa.int32())))
    with pytest.raises(ValueError, match=r"row 0: seq_lengths sums to 1 but the row has \d+ tokens"):
        longmagpie.export_parquet(bad, tmp_path / "out")
    with pytest.raises(ValueError, match="no 'seq_lengths' column"):
        longmagpie.export_parquet(table.drop_columns(["seq_lengths"]), tmp_path / "out")
    with pytest.raises(ValueError, match="split 'a/b' is not a valid split name"):
        longmagpie.export_parquet(table, tmp_path / "out", split="a/b")
    assert not (tmp_path / "out").exists() and siblings(tmp_path / "out") == []


def test_seq_len_comes_from_the_packing_metadata_pad_to_included(tmp_path) -> None:
    samples = make_samples(rng_lengths(14, 50, 1, 60))
    padded = longmagpie.pack(samples, seq_len=64, pad_to=80)
    result = longmagpie.export_parquet(padded, tmp_path / "out")
    assert json.loads((tmp_path / "out" / "README.md").read_text().split("```json")[1].split("```")[0])["seq_len"] == 80
    assert result.tokens == 80 * padded.num_rows


def test_failure_mid_write_leaves_no_shard_and_keeps_the_old_output(tmp_path, monkeypatch) -> None:
    out = tmp_path / "out"
    longmagpie.export_parquet(packed(seed=15), out)
    before = tree(out)
    table = packed(seed=16, n=400)

    def failing_stream():
        yield from table.to_batches(max_chunksize=10)[:5]
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        longmagpie.export_parquet(failing_stream(), out, overwrite=True, rows_per_shard=7, row_group_rows=3)
    assert tree(out) == before and siblings(out) == []

    # A failure inside the Parquet writer itself, after some row groups were written.
    calls = {"n": 0}
    real = parquet_module.pq.ParquetWriter.write_table

    def write_table(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise OSError("no space left on device")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(parquet_module.pq.ParquetWriter, "write_table", write_table)
    with pytest.raises(OSError, match="no space left"):
        longmagpie.export_parquet(table, tmp_path / "new", rows_per_shard=7, row_group_rows=3)
    assert calls["n"] == 4
    assert not (tmp_path / "new").exists() and siblings(tmp_path / "new") == []
