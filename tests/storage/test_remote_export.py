"""export_parquet to s3:// (a real S3 server), memory:// and file://: same bytes as a local export, all or nothing."""

from __future__ import annotations

import uuid

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pytest
from support import make_samples, require, rng_lengths, tree

import longmagpie
from longmagpie.io import storage


def _packed(seed: int = 3) -> pa.Table:
    return longmagpie.pack(make_samples(rng_lengths(seed, 80, 1, 900), source=True), seq_len=1024)


def _remote_tree(uri: str) -> dict[str, bytes]:
    loc = storage.resolve(uri)
    infos = loc.filesystem.get_file_info(pafs.FileSelector(loc.path, recursive=True, allow_not_found=True))
    n = len(loc.path.rstrip("/")) + 1
    return {i.path[n:]: storage.read_bytes(loc.child(i.path[n:])) for i in infos if i.type == pafs.FileType.File}


class Failing:
    """Packed record batches that raise after ``good`` batches, like an input stream dying mid-export."""

    def __init__(self, table: pa.Table, good: int) -> None:
        self.schema = table.schema
        self.batches = table.to_batches(max_chunksize=4)
        self.good = good

    def __iter__(self):
        for k, b in enumerate(self.batches):
            if k == self.good:
                raise RuntimeError("input stream died")
            yield b


def test_s3_export_equals_local_byte_for_byte(s3, tmp_path):
    table = _packed()
    local = longmagpie.export_parquet(table, tmp_path / "local", rows_per_shard=9, row_group_rows=4)
    bucket = s3.bucket()
    uri = f"s3://{bucket}/datasets/packed"
    remote = longmagpie.export_parquet(table, uri, rows_per_shard=9, row_group_rows=4)
    assert len(local.files) > 2 and remote.files == local.files and remote.path == uri
    assert (remote.rows, remote.tokens, remote.documents) == (local.rows, local.tokens, local.documents)
    assert s3.objects(f"{bucket}/datasets/packed") == tree(tmp_path / "local")  # shards and README.md
    assert list(s3.objects(bucket)) == [f"datasets/packed/{k}" for k in sorted(tree(tmp_path / "local"))]
    # read back from the store, by pyarrow and by the package's own reader
    back = ds.dataset(f"{bucket}/datasets/packed/data", filesystem=s3.fs, format="parquet").to_table()
    assert back.equals(table.combine_chunks().replace_schema_metadata(back.schema.metadata))
    assert longmagpie.pack_stats(back) == longmagpie.pack_stats(table)
    from longmagpie.io.files import read_table

    assert read_table([f"{uri}/data"]).equals(back)


def test_s3_export_loads_with_datasets(s3, tmp_path):
    datasets = pytest.importorskip("datasets")
    table = _packed(5)
    bucket = s3.bucket()
    longmagpie.export_parquet(table, f"s3://{bucket}/hf", rows_per_shard=16)
    # datasets reads s3:// through s3fs; without it, fetch the objects with pyarrow and load the copy
    pafs.copy_files(f"{bucket}/hf", str(tmp_path / "copy"), source_filesystem=s3.fs)
    loaded = datasets.load_dataset("parquet", data_files=str(tmp_path / "copy/data/*.parquet"), split="train")
    assert loaded["input_ids"] == table.column("input_ids").to_pylist()
    assert loaded["seq_lengths"] == table.column("seq_lengths").to_pylist()


def test_failure_mid_export_leaves_no_object(s3):
    table = _packed()
    bucket = s3.bucket()
    with pytest.raises(RuntimeError, match="input stream died"):
        longmagpie.export_parquet(Failing(table, good=5), f"s3://{bucket}/out", rows_per_shard=4)
    assert s3.objects(bucket) == {}  # no shard, no card, no staging prefix left


def test_failure_mid_overwrite_keeps_the_old_dataset(s3, tmp_path):
    bucket = s3.bucket()
    uri = f"s3://{bucket}/out"
    longmagpie.export_parquet(_packed(1), uri, rows_per_shard=3)
    before = s3.objects(f"{bucket}/out")
    with pytest.raises(FileExistsError, match="is not empty; pass overwrite=True"):
        longmagpie.export_parquet(_packed(2), uri)
    with pytest.raises(RuntimeError, match="input stream died"):
        longmagpie.export_parquet(Failing(_packed(2), good=3), uri, overwrite=True, rows_per_shard=2)
    with pytest.raises(ValueError, match="more than seq_len"):  # a bad row, found after shards were written
        longmagpie.export_parquet(_packed(2), uri, overwrite=True, seq_len=100, rows_per_shard=1)
    assert s3.objects(bucket) == {f"out/{k}": v for k, v in before.items()}
    # a successful overwrite replaces everything: old shards the new export lacks are gone
    longmagpie.export_parquet(_packed(2), uri, overwrite=True, rows_per_shard=50)
    longmagpie.export_parquet(_packed(2), tmp_path / "expected", rows_per_shard=50)
    assert s3.objects(f"{bucket}/out") == tree(tmp_path / "expected")
    assert s3.objects(bucket).keys() == {f"out/{k}" for k in tree(tmp_path / "expected")}


def test_s3_target_that_is_an_object_is_refused(s3):
    bucket = s3.bucket()
    s3.put(f"{bucket}/file", b"x")
    with pytest.raises(NotADirectoryError, match="is not a directory"):
        longmagpie.export_parquet(_packed(), f"s3://{bucket}/file")


@pytest.mark.parametrize("scheme", ["memory", "file"])
def test_fsspec_memory_and_file_uri_exports_equal_local(tmp_path, scheme):
    if scheme == "memory":
        require("fsspec")
    table = _packed(7)
    longmagpie.export_parquet(table, tmp_path / "local", rows_per_shard=20)
    uri = f"memory://lm-{uuid.uuid4().hex}/ds" if scheme == "memory" else f"file://{tmp_path}/via-uri"
    result = longmagpie.export_parquet(table, uri, rows_per_shard=20)
    assert _remote_tree(uri) == tree(tmp_path / "local")
    if scheme == "file":
        assert result.path == tmp_path / "via-uri"  # file:// takes the local code path (rename staging)
    with pytest.raises(RuntimeError, match="input stream died"):
        longmagpie.export_parquet(Failing(_packed(8), good=2), uri, overwrite=True, rows_per_shard=1)
    assert _remote_tree(uri) == tree(tmp_path / "local")
    parent = storage.resolve(uri)
    siblings = parent.filesystem.get_file_info(pafs.FileSelector(parent.parent(), recursive=False))
    names = [i.base_name for i in siblings]
    assert parent.name in names and not [n for n in names if n.startswith(".")]  # no staging leftovers


def test_s3_to_s3_streaming_export_as_the_cli_does(s3, tmp_path):
    from longmagpie.io.files import parquet_dataset, write_parquet_atomic

    table = _packed(9)
    bucket = s3.bucket()
    write_parquet_atomic(table, f"s3://{bucket}/packed/packed.parquet")
    write_parquet_atomic(table, tmp_path / "packed.parquet")

    def export(inputs, out):
        dataset = parquet_dataset(inputs)
        reader = pa.RecordBatchReader.from_batches(dataset.schema, dataset.to_batches())
        return longmagpie.export_parquet(reader, out, rows_per_shard=10)

    export([tmp_path / "packed.parquet"], tmp_path / "local")
    result = export([f"s3://{bucket}/packed"], f"s3://{bucket}/exported")
    assert result.rows == table.num_rows and result.pack_metadata is not None
    assert s3.objects(f"{bucket}/exported") == tree(tmp_path / "local")
    with pytest.raises(FileNotFoundError, match=rf"input s3://{bucket}/missing does not exist"):
        parquet_dataset([f"s3://{bucket}/missing"])
