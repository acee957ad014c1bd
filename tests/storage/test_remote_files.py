"""longmagpie.io.storage and longmagpie.io.files on a real S3 server (moto), fsspec's memory:// and file:// URIs."""

from __future__ import annotations

import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from support import make_samples, require, rng_lengths

import longmagpie
from longmagpie.io import storage
from longmagpie.io.files import read_table, write_bytes_atomic, write_parquet_atomic

PACK_COLUMNS = ["input_ids", "assistant_masks", "labels", "source"]


def test_resolve_schemes(tmp_path):
    for given in (str(tmp_path / "x.parquet"), tmp_path / "x.parquet", f"file://{tmp_path}/x.parquet"):
        loc = storage.resolve(given)
        assert loc.is_local and loc.local == tmp_path / "x.parquet", given
        assert isinstance(loc.filesystem, pafs.LocalFileSystem)
    assert storage.resolve("rel/x.parquet").local == Path("rel/x.parquet")
    require("fsspec")
    mem = storage.resolve("memory://bucket/x.parquet")
    assert not mem.is_local and isinstance(mem.filesystem, pafs.PyFileSystem) and mem.name == "x.parquet"
    assert storage.is_remote("s3://b/k") and not storage.is_remote("file:///x") and not storage.is_remote(tmp_path)


def test_bad_paths_are_named():
    require("fsspec")  # "no filesystem" is what fsspec's registry says about an unknown scheme
    with pytest.raises(ValueError, match=r"collapsed by pathlib.*s3://bucket/key"):
        storage.resolve(Path("s3://bucket/key"))
    with pytest.raises(ValueError, match="no filesystem for nosuchscheme://x"):
        storage.resolve("nosuchscheme://x/y")
    with pytest.raises(ValueError, match="must name a local path"):
        storage.resolve("file://otherhost/x")
    with pytest.raises(ValueError, match="MDS export needs a local path, got s3://b/out"):
        longmagpie.export_mds(longmagpie.pack(make_samples([3]), seq_len=8), "s3://b/out")


def test_s3_resolves_to_pyarrow_s3(s3):
    loc = storage.resolve("s3://bkt/a/b.parquet")
    assert isinstance(loc.filesystem, pafs.S3FileSystem) and loc.path == "bkt/a/b.parquet"
    assert loc.child("c/d.json").uri == "s3://bkt/a/b.parquet/c/d.json"


def _packed() -> pa.Table:
    return longmagpie.pack(make_samples(rng_lengths(1, 40, 1, 300), source=True), seq_len=512)


@pytest.mark.parametrize("scheme", ["s3", "memory", "file"])
def test_parquet_write_and_read_back_equal_local(s3, tmp_path, scheme):
    if scheme == "memory":
        require("fsspec")
    table = _packed()
    local = tmp_path / "local.parquet"
    write_parquet_atomic(table, local)
    base = {
        "s3": f"s3://{s3.bucket()}/run",
        "memory": f"memory://lm-{uuid.uuid4().hex}/run",
        "file": f"file://{tmp_path}/remote",
    }[scheme]
    uri = f"{base}/packed.parquet"
    write_parquet_atomic(table, uri)
    assert storage.read_bytes(uri) == local.read_bytes()  # byte for byte what the local writer writes
    back = read_table([uri])
    assert back.equals(pq.read_table(local))
    assert read_table([base + "/"], ["input_ids", "nope"]).column_names == ["input_ids"]
    with pytest.raises(FileExistsError, match=r"packed.parquet exists; pass --overwrite"):
        write_parquet_atomic(table.slice(0, 1), uri)
    write_parquet_atomic(table.slice(0, 1), uri, overwrite=True)
    assert read_table([uri]).num_rows == 1
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_table([f"{base}/missing.parquet"])
    leftovers = [i.name for i in storage.list_files(base, (".tmp", ".parquet"))]
    assert leftovers == ["packed.parquet"]  # no temporary key left behind


def test_pack_inputs_from_s3_equal_local(s3, tmp_path):
    samples = make_samples(rng_lengths(2, 60, 1, 400), labels=True)
    bucket = s3.bucket()
    for k, part in enumerate((samples.slice(0, 25), samples.slice(25))):
        pq.write_table(part, tmp_path / f"s{k}.parquet")
        s3.put(f"{bucket}/samples/nested/s{k}.parquet", (tmp_path / f"s{k}.parquet").read_bytes())
    local = read_table([tmp_path / "s0.parquet", tmp_path / "s1.parquet"], PACK_COLUMNS)
    remote = read_table([f"s3://{bucket}/samples"], PACK_COLUMNS)
    mixed = read_table([f"s3://{bucket}/samples/nested/s0.parquet", tmp_path / "s1.parquet"], PACK_COLUMNS)
    assert remote.equals(local) and mixed.equals(local)
    packed = longmagpie.pack(remote, seq_len=1024)
    assert packed.equals(longmagpie.pack(local, seq_len=1024))
    write_parquet_atomic(packed, f"s3://{bucket}/out/packed.parquet")
    assert pq.read_table(f"{bucket}/out/packed.parquet", filesystem=s3.fs).equals(packed)


def test_failed_write_leaves_no_object_and_keeps_the_old_one(s3):
    bucket = s3.bucket()
    uri = f"s3://{bucket}/x/data.bin"
    with pytest.raises(RuntimeError, match="boom"), storage.atomic_output(uri) as out:
        out.write(b"a" * 100_000)
        raise RuntimeError("boom")
    assert s3.objects(bucket) == {}  # neither the target nor the temporary key
    write_bytes_atomic(uri, b"old")
    with pytest.raises(RuntimeError, match="boom"), storage.atomic_output(uri) as out:
        out.write(b"new, half written")
        raise RuntimeError("boom")
    assert s3.objects(bucket) == {"x/data.bin": b"old"}
    write_bytes_atomic(uri, b"new")
    assert s3.objects(bucket) == {"x/data.bin": b"new"}


def test_list_files_sorted_recursive(s3):
    bucket = s3.bucket()
    for key in ("d/b.jsonl", "d/a/z.parquet", "d/a/y.txt", "d/c.parquet", "e/x.parquet"):
        s3.put(f"{bucket}/{key}", b"x")
    found = storage.list_files(f"s3://{bucket}/d", (".parquet", ".jsonl"))
    assert [f.uri for f in found] == [f"s3://{bucket}/d/{k}" for k in ("a/z.parquet", "b.jsonl", "c.parquet")]
    assert storage.is_dir(f"s3://{bucket}/d") and storage.exists(found[0]) and not storage.is_dir(found[0])
    with pytest.raises(FileNotFoundError, match="is not a directory"):
        storage.list_files(f"s3://{bucket}/nothing", (".parquet",))


def test_storage_writes_local_paths_atomically(tmp_path):
    target = tmp_path / "deep" / "x.bin"
    storage.write_bytes(str(target), b"one")
    assert target.read_bytes() == b"one" and storage.read_bytes(f"file://{target}") == b"one"
    with pytest.raises(RuntimeError, match="boom"), storage.atomic_output(target) as out:
        out.write(b"two")
        raise RuntimeError("boom")
    assert target.read_bytes() == b"one" and sorted(p.name for p in target.parent.iterdir()) == ["x.bin"]
    with pytest.raises(FileExistsError):
        storage.write_bytes(target, b"three", overwrite=False)
    storage.makedirs(tmp_path / "made" / "here")
    assert storage.is_dir(tmp_path / "made" / "here") and storage.exists(str(target))
    assert [f.local for f in storage.list_files(tmp_path, (".bin",))] == [target]
    with pytest.raises(ValueError, match="harvest output needs a local path, got memory://x"):
        storage.require_local("memory://x", "harvest output")
