"""`longmagpie.pack` through the installed wheel: invariants, inputs, statistics and errors."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import documents, ipc_bytes, make_samples, rng_lengths

import longmagpie

OUTPUT_SCHEMA = pa.schema(
    [
        ("input_ids", pa.list_(pa.int32())),
        ("seq_lengths", pa.list_(pa.int32())),
        ("assistant_masks", pa.list_(pa.int8())),
        ("length", pa.int32()),
    ]
)


def check_reassembles(table: pa.Table, lengths: list[int], seq_len: int, overflow: str) -> None:
    """Every kept token appears exactly once, in order within its sample, with its mask."""
    got: dict[int, list[int]] = {}
    got_mask: dict[int, list[int]] = {}
    for ids, mask in documents(table):
        assert ids, "no empty documents"
        s = ids[0] // 100_000
        assert ids == list(range(ids[0], ids[0] + len(ids))), "a document is one contiguous run"
        assert ids[0] % 100_000 == len(got.get(s, [])), "pieces of a split sample come in order"
        got.setdefault(s, []).extend(ids)
        got_mask.setdefault(s, []).extend(mask)
    for s, n in enumerate(lengths):
        kept = n if n <= seq_len else {"truncate": seq_len, "drop": 0, "split": n}[overflow]
        assert got.get(s, []) == [s * 100_000 + p for p in range(kept)]
        assert got_mask.get(s, []) == [(s + p) % 2 for p in range(kept)]
    for row in table.select(["input_ids", "seq_lengths", "length"]).to_pylist():
        assert len(row["input_ids"]) <= seq_len
        assert sum(row["seq_lengths"]) == row["length"] == len(row["input_ids"])


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 120), max_size=50),
    seq_len=st.integers(1, 100),
    strategy=st.sampled_from(["bfd", "ffd", "sequential"]),
    overflow=st.sampled_from(["truncate", "drop", "split"]),
)
def test_every_token_once_in_order(lengths: list[int], seq_len: int, strategy: str, overflow: str) -> None:
    table = longmagpie.pack(make_samples(lengths), seq_len=seq_len, strategy=strategy, overflow=overflow)
    check_reassembles(table, lengths, seq_len, overflow)
    s = longmagpie.pack_stats(table)
    assert s.input_tokens == sum(lengths)
    assert s.output_tokens + s.truncated_tokens + s.dropped_tokens == s.input_tokens
    assert s.rows == table.num_rows
    too_long = [n for n in lengths if n > seq_len]
    assert s.truncated_samples == (len(too_long) if overflow == "truncate" else 0)
    assert s.dropped_samples == (len(too_long) if overflow == "drop" else 0)
    assert s.split_samples == (len(too_long) if overflow == "split" else 0)
    assert s.empty_samples == lengths.count(0)


@settings(max_examples=25, deadline=None)
@given(lengths=st.lists(st.integers(1, 400), max_size=80), strategy=st.sampled_from(["bfd", "ffd", "sequential"]))
def test_same_bytes_for_one_and_two_threads(lengths: list[int], strategy: str) -> None:
    samples = make_samples(lengths, labels=True, source=True)
    one = longmagpie.pack(samples, seq_len=300, strategy=strategy, overflow="split", num_threads=1)
    two = longmagpie.pack(samples, seq_len=300, strategy=strategy, overflow="split", num_threads=2)
    assert ipc_bytes(one) == ipc_bytes(two)


def test_output_schema_and_default_mask() -> None:
    table = longmagpie.pack(make_samples([3, 4, 5], mask=False), seq_len=8)
    assert table.schema.remove_metadata() == OUTPUT_SCHEMA
    assert all(v == 1 for row in table.column("assistant_masks").to_pylist() for v in row)


def test_bfd_fills_better_than_sequential_and_close_to_full() -> None:
    samples = make_samples(rng_lengths(0, 3000, 1, 900), mask=False)
    bfd = longmagpie.pack_stats(longmagpie.pack(samples, seq_len=1024))
    seq = longmagpie.pack_stats(longmagpie.pack(samples, seq_len=1024, strategy="sequential"))
    lower_bound = -(-bfd.input_tokens // 1024)  # no packing can use fewer rows
    assert bfd.rows <= lower_bound * 1.01
    assert seq.fill_rate < bfd.fill_rate
    assert bfd.rows < seq.rows


def test_sequential_keeps_input_order() -> None:
    table = longmagpie.pack(make_samples([4, 4, 4, 1, 9]), seq_len=10, strategy="sequential")
    firsts = [ids[0] // 100_000 for ids, _ in documents(table)]
    assert firsts == [0, 1, 2, 3, 4]
    assert table.column("seq_lengths").to_pylist() == [[4, 4], [4, 1], [9]]


@pytest.mark.parametrize("id_type", [pa.int32(), pa.int64(), pa.uint32(), pa.uint16(), pa.int16()])
@pytest.mark.parametrize("large", [False, True])
def test_id_types_and_large_lists(id_type: pa.DataType, large: bool) -> None:
    lengths = rng_lengths(1, 40, 1, 30) if id_type.bit_width > 16 else [3, 1, 2]
    samples = (
        make_samples(lengths, id_type=id_type, large=large)
        if id_type.bit_width > 16
        else pa.table(
            {"input_ids": pa.array([[1, 2, 3], [4], [5, 6]], (pa.large_list if large else pa.list_)(id_type))}
        )
    )
    table = longmagpie.pack(samples, seq_len=64)
    assert table.schema.field("input_ids").type == pa.list_(pa.int32())
    if id_type.bit_width > 16:
        check_reassembles(table, lengths, 64, "error")
    else:
        assert sorted(v for row in table.column("input_ids").to_pylist() for v in row) == [1, 2, 3, 4, 5, 6]


def test_chunked_table_equals_single_chunk() -> None:
    lengths = rng_lengths(2, 200, 1, 50)
    samples = make_samples(lengths, labels=True, source=True)
    chunked = pa.concat_tables([samples.slice(0, 70), samples.slice(70, 1), samples.slice(71)])
    assert chunked.column("input_ids").num_chunks == 3
    a = longmagpie.pack(samples, seq_len=128)
    b = longmagpie.pack(chunked, seq_len=128)
    assert ipc_bytes(a) == ipc_bytes(b)
    check_reassembles(b, lengths, 128, "error")


def test_sliced_input_reads_only_the_slice() -> None:
    lengths = rng_lengths(3, 30, 1, 20)
    samples = make_samples(lengths)
    sliced = samples.slice(10, 5)
    table = longmagpie.pack(sliced, seq_len=64)
    ids = sorted(v for row in table.column("input_ids").to_pylist() for v in row)
    want = sorted(v for row in sliced.column("input_ids").to_pylist() for v in row)
    assert ids == want


def test_polars_record_batch_reader_dict_and_rows() -> None:
    pl = pytest.importorskip("polars")
    samples = make_samples([5, 9, 2, 7], source=True)
    expected = ipc_bytes(longmagpie.pack(samples, seq_len=16))
    frame = pl.from_arrow(samples)
    assert ipc_bytes(longmagpie.pack(frame, seq_len=16)) == expected  # large_list + string_view from polars
    assert ipc_bytes(longmagpie.pack(samples.to_batches()[0], seq_len=16)) == expected
    reader = pa.RecordBatchReader.from_batches(samples.schema, samples.to_batches(max_chunksize=1))
    assert ipc_bytes(longmagpie.pack(reader, seq_len=16)) == expected
    assert ipc_bytes(longmagpie.pack(samples.to_pydict(), seq_len=16)) == ipc_bytes(
        longmagpie.pack(pa.table(samples.to_pydict()), seq_len=16)
    )
    assert longmagpie.pack(samples.to_pylist(), seq_len=16).num_rows > 0


def test_hf_datasets_input_respects_indices() -> None:
    datasets = pytest.importorskip("datasets")
    samples = make_samples([5, 9, 2, 7])
    ds = datasets.Dataset(samples).select([3, 1])
    table = longmagpie.pack(ds, seq_len=16)
    firsts = sorted(ids[0] // 100_000 for ids, _ in documents(table))
    assert firsts == [1, 3]


def test_empty_input_gives_empty_output() -> None:
    empty = make_samples([])
    table = longmagpie.pack(empty, seq_len=16)
    assert table.num_rows == 0
    assert table.schema.remove_metadata() == OUTPUT_SCHEMA
    assert longmagpie.pack_stats(table).rows == 0
    only_empty = longmagpie.pack(make_samples([0, 0]), seq_len=16)
    assert only_empty.num_rows == 0
    assert longmagpie.pack_stats(only_empty).empty_samples == 2


def test_labels_are_kept_and_drive_the_mask() -> None:
    samples = make_samples([4, 6], mask=False, labels=True)
    table = longmagpie.pack(samples, seq_len=16, strategy="sequential")
    assert table.schema.field("labels").type == pa.list_(pa.int32())
    row = table.to_pylist()[0]
    want_labels = [-100 if p % 3 == 0 else s * 100_000 + p for s, n in enumerate([4, 6]) for p in range(n)]
    assert row["labels"] == want_labels
    assert row["assistant_masks"] == [int(v != -100) for v in want_labels]


def test_source_per_document_and_pad_segment() -> None:
    samples = make_samples([3, 2], source=True)
    table = longmagpie.pack(samples, seq_len=6, strategy="sequential", pad_to=8, pad_id=7)
    row = table.to_pylist()[0]
    assert row["seq_lengths"] == [3, 2, 3]
    assert row["input_ids"][5:] == [7, 7, 7]
    assert row["assistant_masks"][5:] == [0, 0, 0]
    assert row["source"] == ["src0", "src1", None]
    assert row["length"] == 8
    s = longmagpie.pack_stats(table)
    assert (s.pad_tokens, s.output_tokens) == (3, 5)


def test_split_pieces_are_documents() -> None:
    table = longmagpie.pack(make_samples([25]), seq_len=10, overflow="split", strategy="sequential")
    assert table.column("seq_lengths").to_pylist() == [[10], [10], [5]]
    s = longmagpie.pack_stats(table)
    assert (s.split_samples, s.split_pieces, s.documents) == (1, 3, 3)


def test_metadata_survives_parquet(tmp_path) -> None:
    table = longmagpie.pack(make_samples([5, 6, 7]), seq_len=8, overflow="truncate")
    pq.write_table(table, tmp_path / "p.parquet")
    back = pq.read_table(tmp_path / "p.parquet")
    assert longmagpie.pack_stats(back) == longmagpie.pack_stats(table)
    meta = longmagpie.pack_metadata(back)
    assert meta["params"]["seq_len"] == 8 and meta["params"]["overflow"] == "truncate"
    with pytest.raises(ValueError, match="no longmagpie metadata"):
        longmagpie.pack_stats(pa.table({"x": [1]}))


# ---------------------------------------------------------------- errors


def test_too_long_names_the_row() -> None:
    with pytest.raises(ValueError, match=r"row 2 has 20 tokens, more than seq_len=8; pass overflow="):
        longmagpie.pack(make_samples([3, 4, 20, 30]), seq_len=8)


def test_null_row_and_null_element_are_named() -> None:
    samples = pa.table({"input_ids": pa.array([[1, 2], None, [3]], pa.list_(pa.int32()))})
    with pytest.raises(ValueError, match=r"column 'input_ids' is null at row 1"):
        longmagpie.pack(samples, seq_len=8)
    samples = pa.table({"input_ids": pa.array([[1, 2], [3, None]], pa.list_(pa.int64()))})
    with pytest.raises(ValueError, match=r"null at row 1 \(element 1 of the list\)"):
        longmagpie.pack(samples, seq_len=8)


def test_negative_id_is_named_with_row_and_position() -> None:
    samples = pa.table({"input_ids": pa.array([[1, 2], [3, 4], [5, -6]], pa.list_(pa.int64()))})
    with pytest.raises(ValueError, match=r"'input_ids' has invalid value -6 at row 2, position 1"):
        longmagpie.pack(samples, seq_len=8)
    too_big = pa.table({"input_ids": pa.array([[2**31]], pa.list_(pa.uint32()))})
    with pytest.raises(ValueError, match=r"invalid value 2147483648 at row 0"):
        longmagpie.pack(too_big, seq_len=8)


def test_mask_errors() -> None:
    bad_len = pa.table(
        {"input_ids": pa.array([[1, 2], [3]]), "assistant_masks": pa.array([[1, 0], [1, 1]], pa.list_(pa.int8()))}
    )
    with pytest.raises(ValueError, match=r"'assistant_masks' has 2 values at row 1 but 'input_ids' has 1"):
        longmagpie.pack(bad_len, seq_len=8)
    bad_value = pa.table({"input_ids": pa.array([[1, 2]]), "assistant_masks": pa.array([[1, 3]])})
    with pytest.raises(ValueError, match=r"'assistant_masks' has invalid value 3 at row 0, position 1"):
        longmagpie.pack(bad_value, seq_len=8)
    bad_label = pa.table({"input_ids": pa.array([[1, 2]]), "labels": pa.array([[-1, 2]])})
    with pytest.raises(ValueError, match=r"'labels' has invalid value -1"):
        longmagpie.pack(bad_label, seq_len=8)


def test_type_errors_name_the_column() -> None:
    with pytest.raises(TypeError, match=r"column 'input_ids' has type list<double>; expected list<int>"):
        longmagpie.pack(pa.table({"input_ids": pa.array([[1.0, 2.0]])}), seq_len=8)
    with pytest.raises(TypeError, match=r"column 'input_ids' has type int64"):
        longmagpie.pack(pa.table({"input_ids": pa.array([1, 2])}), seq_len=8)
    with pytest.raises(TypeError, match=r"column 'source' has type int64"):
        longmagpie.pack(pa.table({"input_ids": pa.array([[1]]), "source": pa.array([1])}), seq_len=8)
    with pytest.raises(TypeError, match=r"cannot read samples of type int"):
        longmagpie.pack(5, seq_len=8)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"seq_len must be an int"):
        longmagpie.pack(make_samples([1]), seq_len=8.0)  # type: ignore[arg-type]


def test_missing_input_ids_lists_the_columns() -> None:
    with pytest.raises(ValueError, match=r"missing column 'input_ids': the input has columns \['tokens'\]"):
        longmagpie.pack(pa.table({"tokens": pa.array([[1]])}), seq_len=8)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seq_len": 0}, "seq_len must be a positive number"),
        ({"seq_len": -5}, "seq_len must be a positive number"),
        ({"seq_len": 2**31}, "seq_len must be in 1..=2147483647"),
        ({"strategy": "best"}, "unknown strategy 'best'"),
        ({"overflow": "wrap"}, "unknown overflow policy 'wrap'"),
        ({"num_threads": 0}, "num_threads must be >= 1"),
        ({"pad_to": 4}, "pad_to must be at least seq_len=8"),
        ({"pad_id": -1}, "pad_id must be >= 0"),
    ],
)
def test_bad_arguments(kwargs: dict, message: str) -> None:
    args = {"seq_len": 8, **kwargs}
    with pytest.raises(ValueError, match=message):
        longmagpie.pack(make_samples([1, 2]), **args)


def test_input_is_not_modified() -> None:
    samples = make_samples([5, 3, 8], labels=True, source=True)
    before = ipc_bytes(samples)
    longmagpie.pack(samples, seq_len=8)
    assert ipc_bytes(samples) == before
