"""`longmagpie.pack_stream`: windows of a stream, chunking-independent, equal to `pack` for one window."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from support import documents, ipc_bytes, make_samples, rng_lengths

import longmagpie


def body(table: pa.Table) -> bytes:
    return ipc_bytes(table.replace_schema_metadata(None))


def test_one_big_window_equals_pack() -> None:
    samples = make_samples(rng_lengths(0, 300, 1, 90), labels=True, source=True)
    whole = longmagpie.pack(samples, seq_len=128)
    streamed = longmagpie.pack_stream(samples.to_batches(max_chunksize=7), seq_len=128, window_tokens=10**9)
    out = streamed.read_all()
    assert body(out) == body(whole)
    assert streamed.stats == longmagpie.pack_stats(whole)
    assert streamed.windows == 1


def test_windows_do_not_depend_on_batch_sizes_and_keep_every_token() -> None:
    lengths = rng_lengths(1, 500, 1, 60)
    samples = make_samples(lengths)
    outs = []
    for chunk in (1, 13, 500):
        reader = pa.RecordBatchReader.from_batches(samples.schema, samples.to_batches(max_chunksize=chunk))
        stream = longmagpie.pack_stream(reader, seq_len=64, window_tokens=1000, num_threads=1 + chunk % 2)
        outs.append(body(stream.read_all()))
        assert stream.windows == pytest.approx(sum(lengths) / 1000, abs=1.5)
    assert outs[0] == outs[1] == outs[2]
    table = pa.ipc.open_stream(outs[0]).read_all()
    kept = sorted(v for ids, _ in documents(table) for v in ids)
    assert kept == sorted(v for row in samples.column("input_ids").to_pylist() for v in row)
    windowed = longmagpie.pack_stats(longmagpie.pack(samples, seq_len=64))
    assert table.num_rows >= windowed.rows  # windows can only cost fill


def test_parquet_dataset_and_iterables(tmp_path) -> None:
    samples = make_samples(rng_lengths(2, 120, 1, 40))
    for i in range(3):
        pq.write_table(samples.slice(40 * i, 40), tmp_path / f"part-{i}.parquet")
    dataset = ds.dataset(tmp_path)
    a = longmagpie.pack_stream(dataset, seq_len=64, window_tokens=500).read_all()
    b = longmagpie.pack_stream(dataset.scanner(), seq_len=64, window_tokens=500).read_all()
    c = longmagpie.pack_stream(iter([samples.slice(0, 50), samples.slice(50)]), seq_len=64, window_tokens=500)
    assert body(a) == body(b) == body(c.read_all())
    assert longmagpie.pack_stats(a).input_samples == 120


def test_stream_is_an_arrow_stream() -> None:
    samples = make_samples(rng_lengths(3, 50, 1, 30))
    stream = longmagpie.pack_stream(samples, seq_len=64, window_tokens=200)
    table = pa.RecordBatchReader.from_stream(stream).read_all()
    assert table.num_rows == stream.stats.rows and stream.windows > 1


def test_errors_number_rows_over_the_whole_stream() -> None:
    lengths = [10] * 100 + [500]
    samples = make_samples(lengths)
    stream = longmagpie.pack_stream(samples.to_batches(max_chunksize=9), seq_len=64, window_tokens=100)
    with pytest.raises(ValueError, match="row 100 has 500 tokens"):
        stream.read_all()
    with pytest.raises(ValueError, match="missing column 'input_ids'"):
        longmagpie.pack_stream(pa.table({"x": [1]}), seq_len=64)
    with pytest.raises(ValueError, match="window_tokens must be >= 1"):
        longmagpie.pack_stream(samples, window_tokens=0)
    with pytest.raises(TypeError, match="cannot stream int"):
        longmagpie.pack_stream(3)


# ---------------------------------------------------------------- p-mix streams


def test_pmix_stream_with_a_whole_window_equals_pack_pmix() -> None:
    long = make_samples(rng_lengths(0, 80, 20, 200), source=True)
    short = make_samples(rng_lengths(1, 400, 1, 30), mask=False)
    kwargs = dict(seq_len=512, seed=4, fill="best_fit")
    whole = longmagpie.pack_pmix(long, short, **kwargs)
    stream = longmagpie.pack_pmix_stream(
        long.to_batches(max_chunksize=3), iter(short.to_batches(max_chunksize=50)), window_tokens=10**12, **kwargs
    )
    out = stream.read_all()
    assert body(out) == body(whole)
    assert stream.stats == longmagpie.pmix_stats(whole)


def test_pmix_stream_small_window_is_chunking_independent_and_bounded() -> None:
    long = make_samples(rng_lengths(2, 300, 20, 200))
    short = make_samples(rng_lengths(3, 2000, 1, 30), mask=False)
    outs = []
    for chunk in (7, 64):
        reader = pa.RecordBatchReader.from_batches(long.schema, long.to_batches(max_chunksize=chunk))
        s = longmagpie.pack_pmix_stream(reader, short.to_batches(max_chunksize=chunk), seq_len=512, window_tokens=3000)
        outs.append(body(s.read_all()))
        assert s.stats.long_unused == 0 and s.stats.long_used == 300
    assert outs[0] == outs[1]
    table = pa.ipc.open_stream(outs[0]).read_all()
    seen = set()
    for row in table.select(["input_ids", "seq_lengths", "kind"]).to_pylist():
        assert row["kind"][0] == "short" and sum(row["seq_lengths"]) <= 512
        pos = 0
        for n, kind in zip(row["seq_lengths"], row["kind"], strict=True):
            key = (kind, row["input_ids"][pos] // 100_000)
            assert key not in seen
            seen.add(key)
            pos += n


def test_pmix_stream_errors_surface_while_reading() -> None:
    long = make_samples([10, 20, 700])
    short = make_samples([5] * 50)
    stream = longmagpie.pack_pmix_stream(long, short, seq_len=512, window_tokens=15, p_long=1.0)
    with pytest.raises(ValueError, match=r"in the long samples: row 2 has 700 tokens, more than seq_len=512"):
        stream.read_all()
    with pytest.raises(ValueError, match="window_tokens must be >= 1"):
        longmagpie.pack_pmix_stream(long, short, window_tokens=0)
    with pytest.raises(ValueError, match="short pool is empty"):
        longmagpie.pack_pmix_stream(make_samples([10]), make_samples([]), seq_len=512)
