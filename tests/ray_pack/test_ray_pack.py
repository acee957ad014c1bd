"""``longmagpie.distributed.ray``: packing on a real local Ray cluster (2 CPUs) against the single-process path."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support import require
from support.ray_data import check_rows, collect, input_documents, ipc, packed_documents, samples, write_shards

import longmagpie
from longmagpie.distributed.windows import ParquetSource

SEQ_LEN = 4096


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pa.Table]:
    """600 samples of 20-3,000 tokens in 5 files of row groups of 16 rows."""
    table = samples(7, 600, 20, 3000)
    folder = tmp_path_factory.mktemp("ray_in")
    write_shards(folder, table, files=5, row_group_rows=16)
    return folder, table


WINDOW = 400_000  # bytes: about a dozen windows over the data, some spanning two files


def test_windows_cover_every_row_once(data):
    folder, table = data
    src = ParquetSource.open(folder)
    windows = src.windows(WINDOW)
    assert len(windows) >= 6
    assert windows[0][0] == 0 and windows[-1][1] == table.num_rows
    assert all(a[1] == b[0] and a[0] < a[1] for a, b in itertools.pairwise(windows))
    assert any(src.locate(a)[0] != src.locate(b - 1)[0] for a, b in windows), "no window spans two files"
    back = pa.concat_tables([src.read(a, b) for a, b in windows])
    assert back.equals(table.select(back.column_names))


def test_same_documents_as_single_process_and_valid_rows(ray, data):
    from longmagpie.distributed.ray import ray_pack

    folder, table = data
    out = collect(ray_pack(folder, seq_len=SEQ_LEN, window_bytes=WINDOW))
    check_rows(out, SEQ_LEN)
    single = longmagpie.pack(table, SEQ_LEN)
    assert packed_documents(out) == packed_documents(single) == input_documents(table)
    # one pack per window, in window order: the same rows as packing each window in this process
    src = ParquetSource.open(folder)
    per_window = [
        longmagpie.pack(src.read(a, b), SEQ_LEN).replace_schema_metadata(None) for a, b in src.windows(WINDOW)
    ]
    assert ipc(out) == ipc(pa.concat_tables(per_window))
    fill = sum(out.column("length").to_pylist()) / (out.num_rows * SEQ_LEN)
    assert fill > 0.9, fill  # rows never span windows: each small window leaves a part-full last row or two


def test_deterministic_across_reruns(ray, data):
    from longmagpie.distributed.ray import ray_pack

    folder, _ = data
    first = ipc(collect(ray_pack(folder, seq_len=SEQ_LEN, window_bytes=WINDOW)))
    second = ipc(collect(ray_pack([str(p) for p in sorted(folder.iterdir())], seq_len=SEQ_LEN, window_bytes=WINDOW)))
    assert first == second


def test_read_parquet_dataset_one_window_per_block(ray, data):
    from longmagpie.distributed.ray import ray_pack

    folder, table = data
    rd = ray.data
    ds = rd.read_parquet(str(folder), override_num_blocks=4)
    out = collect(ray_pack(ds, seq_len=SEQ_LEN))
    check_rows(out, SEQ_LEN)
    assert packed_documents(out) == input_documents(table)


def test_write_packed_loads_with_datasets(ray, data, tmp_path):
    from longmagpie.distributed.ray import ray_pack, write_packed

    datasets = require("datasets")
    folder, table = data
    res = write_packed(
        ray_pack(folder, seq_len=SEQ_LEN, window_bytes=WINDOW), tmp_path / "out", seq_len=SEQ_LEN, rows_per_shard=40
    )
    assert len(res.files) > 1 and all(f.startswith("data/train-") for f in res.files)
    assert res.tokens == sum(len(x) for x in table.column("input_ids").to_pylist())
    loaded = datasets.load_dataset(str(tmp_path / "out"), split="train", cache_dir=str(tmp_path / "cache"))
    assert loaded.num_rows == res.rows
    written = pa.concat_tables([pq.read_table(tmp_path / "out" / f) for f in res.files])
    assert loaded.data.table.column("input_ids").to_pylist() == written.column("input_ids").to_pylist()
    assert packed_documents(written) == input_documents(table)
    # a rerun writes the same bytes
    write_packed(
        ray_pack(folder, seq_len=SEQ_LEN, window_bytes=WINDOW), tmp_path / "again", seq_len=SEQ_LEN, rows_per_shard=40
    )
    for f in res.files:
        assert (tmp_path / "out" / f).read_bytes() == (tmp_path / "again" / f).read_bytes()
    card = (tmp_path / "out" / "README.md").read_text()
    assert "train" in card and json.dumps(SEQ_LEN) in card


def test_missing_input_ids_names_the_file(ray, tmp_path):
    from longmagpie.distributed.ray import ray_pack

    good = samples(1, 20, 10, 50)
    pq.write_table(good, tmp_path / "a.parquet")
    pq.write_table(good.rename_columns(["tokens", "assistant_masks", "source"]), tmp_path / "b.parquet")
    with pytest.raises(ValueError, match=r"b\.parquet has no 'input_ids' column \(columns: tokens"):
        ray_pack(tmp_path, seq_len=SEQ_LEN)


def test_row_over_seq_len_names_file_and_row(ray, tmp_path):
    from longmagpie.distributed.ray import ray_pack

    table = samples(2, 40, 10, 100)
    write_shards(tmp_path, table, files=2, row_group_rows=8)
    long_row = samples(3, 5, 10, 100)
    ids = long_row.column("input_ids").to_pylist()
    ids[3] = list(range(SEQ_LEN + 1))
    masks = [[1] * len(x) for x in ids]
    bad = long_row.set_column(0, "input_ids", pa.array(ids, pa.list_(pa.int32())))
    bad = bad.set_column(1, "assistant_masks", pa.array(masks, pa.list_(pa.int8())))
    pq.write_table(bad, tmp_path / "part-002.parquet")
    with pytest.raises(Exception, match=r"part-002\.parquet, row 3 \(input row 43\).*more than seq_len=4096") as e:
        collect(ray_pack(tmp_path, seq_len=SEQ_LEN, overflow="error", window_bytes=10**9))
    assert isinstance(e.value, ValueError) or "ValueError" in str(e.value)
    # with overflow="split" the same input packs
    out = collect(ray_pack(tmp_path, seq_len=SEQ_LEN, overflow="split", window_bytes=10**9))
    check_rows(out, SEQ_LEN)


def test_bad_arguments_fail_before_any_task(ray, data):
    from longmagpie.distributed.ray import ray_pack

    folder, _ = data
    with pytest.raises(ValueError, match="strategy"):
        ray_pack(folder, seq_len=SEQ_LEN, strategy="nope")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ray_pack(folder / "missing", seq_len=SEQ_LEN)


def test_import_longmagpie_does_not_import_ray():
    code = "import sys, longmagpie, longmagpie.distributed.ray; assert 'ray' not in sys.modules, 'ray imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_distributed_write_same_rows_as_write_packed(ray, data, tmp_path):
    from longmagpie.distributed.ray import ray_pack, ray_pack_to_parquet, write_packed
    from longmagpie.export import ShardLimits

    datasets = require("datasets")
    folder, table = data
    res = ray_pack_to_parquet(
        folder, tmp_path / "dist", seq_len=SEQ_LEN, window_bytes=WINDOW, limits=ShardLimits(rows_per_shard=5)
    )
    assert len(res.files) > len(ParquetSource.open(folder).windows(WINDOW))  # several shards per window
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dist"]  # staging renamed away, nothing left over
    written = pa.concat_tables([pq.read_table(tmp_path / "dist" / f) for f in res.files])
    ref = write_packed(ray_pack(folder, seq_len=SEQ_LEN, window_bytes=WINDOW), tmp_path / "ref", seq_len=SEQ_LEN)
    reference = pa.concat_tables([pq.read_table(tmp_path / "ref" / f) for f in ref.files])
    assert written.replace_schema_metadata(None).equals(reference.replace_schema_metadata(None))  # same rows, in order
    assert (res.rows, res.tokens, res.documents) == (ref.rows, ref.tokens, ref.documents)
    loaded = datasets.load_dataset(str(tmp_path / "dist"), split="train", cache_dir=str(tmp_path / "cache"))
    assert loaded.num_rows == res.rows
    assert packed_documents(written) == input_documents(table)
    again = ray_pack_to_parquet(
        folder, tmp_path / "again", seq_len=SEQ_LEN, window_bytes=WINDOW, limits=ShardLimits(rows_per_shard=5)
    )
    assert again.files == res.files
    for f in [*res.files, "README.md"]:
        assert (tmp_path / "dist" / f).read_bytes() == (tmp_path / "again" / f).read_bytes()
