"""``longmagpie.distributed.ray.ray_pack_pmix``: p-mix per window on a real local Ray cluster (2 CPUs)."""

from __future__ import annotations

import itertools
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest
from support import require
from support.ray_data import check_rows, collect, input_documents, ipc, packed_documents, samples, write_shards

import longmagpie
from longmagpie.distributed.windows import ParquetSource, paired_range, window_seed

SEQ_LEN = 8192
WINDOW = 300_000


@pytest.fixture(scope="module")
def pools(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, pa.Table, pa.Table]:
    root = tmp_path_factory.mktemp("pmix_in")
    long = samples(11, 240, 1000, 6000)
    short = samples(12, 900, 20, 600, offset=5000)  # ids disjoint from the long pool's
    write_shards(root / "long", long, files=3, row_group_rows=10)
    write_shards(root / "short", short, files=4, row_group_rows=50)
    return root / "long", root / "short", long, short


def single_process_windows(long_dir: Path, short_dir: Path, seed: int, **kw) -> pa.Table:
    """The reference: pack_pmix in this process on each window and its paired short rows."""
    ls, ss = ParquetSource.open(long_dir), ParquetSource.open(short_dir)
    out = []
    assert len(ls.windows(WINDOW)) >= 4
    for i, (a, b) in enumerate(ls.windows(WINDOW)):
        sa, sb = paired_range((a, b), ls.num_rows, ss.num_rows)
        t = longmagpie.pack_pmix(ls.read(a, b), ss.read(sa, sb), SEQ_LEN, seed=window_seed(seed, i), **kw)
        out.append(t.replace_schema_metadata(None))
    return pa.concat_tables(out)


def test_pmix_matches_per_window_reference_and_uses_each_sample_once(ray, pools):
    from longmagpie.distributed.ray import ray_pack_pmix

    long_dir, short_dir, long, short = pools
    out = collect(
        ray_pack_pmix(long_dir, short_dir, seq_len=SEQ_LEN, seed=5, exhausted="short_only", window_bytes=WINDOW)
    )
    check_rows(out, SEQ_LEN)
    assert ipc(out) == ipc(single_process_windows(long_dir, short_dir, 5, exhausted="short_only"))
    docs = packed_documents(out)
    assert max(docs.values()) == 1  # no sample placed twice
    assert set(docs) <= set(input_documents(long)) | set(input_documents(short))
    assert set(input_documents(long)) <= set(docs)  # "short_only": every long sample is placed
    kinds = Counter(k for row in out.column("kind").to_pylist() for k in row)
    assert kinds["long"] == long.num_rows and kinds["short"] > 0


def test_pmix_deterministic_and_seeded(ray, pools):
    from longmagpie.distributed.ray import ray_pack_pmix

    long_dir, short_dir, _, _ = pools
    a = ipc(collect(ray_pack_pmix(long_dir, short_dir, seq_len=SEQ_LEN, seed=1, window_bytes=WINDOW)))
    b = ipc(collect(ray_pack_pmix(long_dir, short_dir, seq_len=SEQ_LEN, seed=1, window_bytes=WINDOW)))
    c = ipc(collect(ray_pack_pmix(long_dir, short_dir, seq_len=SEQ_LEN, seed=2, window_bytes=WINDOW)))
    assert a == b
    assert a != c


def test_paired_short_ranges_cover_the_short_pool():
    ranges = [paired_range(w, 1000, 377) for w in [(0, 130), (130, 500), (500, 999), (999, 1000)]]
    assert ranges[0][0] == 0 and ranges[-1][1] == 377
    assert all(x[1] == y[0] for x, y in itertools.pairwise(ranges))
    assert len({window_seed(0, i) for i in range(1000)}) == 1000


def test_pmix_too_long_names_pool_file_and_row(ray, pools, tmp_path):
    from longmagpie.distributed.ray import ray_pack_pmix

    _, short_dir, long, _ = pools
    ids = long.column("input_ids").to_pylist()[:10]
    ids[6] = list(range(SEQ_LEN + 10))
    bad = pa.table({"input_ids": pa.array(ids, pa.list_(pa.int32()))})
    import pyarrow.parquet as pq

    pq.write_table(bad, tmp_path / "long.parquet")
    with pytest.raises(Exception, match=r"long input \(window 0\) file .*long\.parquet, row 6"):
        collect(ray_pack_pmix(tmp_path / "long.parquet", short_dir, seq_len=SEQ_LEN, window_bytes=10**9))


def test_pmix_distributed_write_loads_with_datasets(ray, pools, tmp_path):
    from longmagpie.distributed.ray import ray_pack_pmix, ray_pack_pmix_to_parquet

    datasets = require("datasets")
    long_dir, short_dir, _, _ = pools
    res = ray_pack_pmix_to_parquet(long_dir, short_dir, tmp_path / "out", seq_len=SEQ_LEN, seed=3, window_bytes=WINDOW)
    loaded = datasets.load_dataset(str(tmp_path / "out"), split="train", cache_dir=str(tmp_path / "cache"))
    assert loaded.num_rows == res.rows > 0
    expected = collect(ray_pack_pmix(long_dir, short_dir, seq_len=SEQ_LEN, seed=3, window_bytes=WINDOW))
    assert loaded.data.table.column("input_ids").to_pylist() == expected.column("input_ids").to_pylist()
    assert "pack_pmix" in (tmp_path / "out" / "README.md").read_text()
