"""`longmagpie.pack_plan` / `pack_from_plan`: a plan from lengths, rows made from it equal `pack`'s, byte for byte."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import ipc_bytes, make_samples, rng_lengths

import longmagpie


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 120), max_size=40),
    seq_len=st.integers(1, 100),
    strategy=st.sampled_from(["bfd", "ffd", "sequential"]),
    overflow=st.sampled_from(["truncate", "drop", "split"]),
    pad=st.booleans(),
)
def test_rows_from_the_plan_are_packs_bytes(
    lengths: list[int], seq_len: int, strategy: str, overflow: str, pad: bool
) -> None:
    samples = make_samples(lengths, labels=True, source=True)
    options = {"seq_len": seq_len, "strategy": strategy, "overflow": overflow, "pad_to": seq_len + 5 if pad else None}
    packed = longmagpie.pack(samples, **options)
    plan = longmagpie.pack_plan(samples, **options)
    assert plan.num_rows == packed.num_rows
    assert longmagpie.pack_metadata(plan)["stats"] == longmagpie.pack_metadata(packed)["stats"]
    assert ipc_bytes(longmagpie.pack_from_plan(samples, plan)) == ipc_bytes(packed)


def test_a_plan_reads_as_sample_offset_length_and_survives_parquet(tmp_path) -> None:
    samples = make_samples([5, 12, 3, 0, 7])
    plan = longmagpie.pack_plan(samples, seq_len=8, strategy="sequential", overflow="split")
    assert plan.schema.names == ["sample_index", "token_offset", "seq_lengths"]
    assert plan.to_pylist() == [
        {"sample_index": [0], "token_offset": [0], "seq_lengths": [5]},
        {"sample_index": [1], "token_offset": [0], "seq_lengths": [8]},
        {"sample_index": [1, 2], "token_offset": [8, 0], "seq_lengths": [4, 3]},
        {"sample_index": [4], "token_offset": [0], "seq_lengths": [7]},
    ]
    meta = longmagpie.pack_metadata(plan)
    assert meta["op"] == "pack_plan" and meta["params"]["seq_len"] == 8
    assert (meta["stats"]["split_samples"], meta["stats"]["empty_samples"]) == (1, 1)
    pq.write_table(plan, tmp_path / "plan.parquet")
    back = pq.read_table(tmp_path / "plan.parquet")
    packed = longmagpie.pack(samples, seq_len=8, strategy="sequential", overflow="split")
    assert ipc_bytes(longmagpie.pack_from_plan(samples, back)) == ipc_bytes(packed)


def test_same_bytes_for_any_thread_count_and_chunking() -> None:
    samples = make_samples(rng_lengths(3, 300, 1, 900), labels=True)
    plan = longmagpie.pack_plan(samples, seq_len=2048)
    one = longmagpie.pack_from_plan(samples, plan, num_threads=1)
    chunked = pa.Table.from_batches(samples.to_batches(max_chunksize=37))
    assert ipc_bytes(longmagpie.pack_from_plan(chunked, plan, num_threads=2)) == ipc_bytes(one)
    assert ipc_bytes(one) == ipc_bytes(longmagpie.pack(samples, seq_len=2048))


def test_an_edited_plan_is_made_as_it_stands() -> None:
    samples = make_samples(rng_lengths(5, 60, 1, 300))
    plan = longmagpie.pack_plan(samples, seq_len=1024)
    packed = longmagpie.pack(samples, seq_len=1024)
    keep = list(range(plan.num_rows - 1, 0, -2))  # every other row, last first
    made = longmagpie.pack_from_plan(samples, plan.take(keep))
    assert made.to_pylist() == packed.take(keep).to_pylist()
    stats = longmagpie.pack_stats(made)
    assert stats.rows == len(keep) and stats.output_tokens == sum(made["length"].to_pylist())
    assert stats.input_samples == 60


def test_wrong_samples_or_a_table_that_is_no_plan_are_refused() -> None:
    samples = make_samples([5, 12, 3])
    plan = longmagpie.pack_plan(samples, seq_len=16)
    with pytest.raises(ValueError, match="made for 3 samples of 20 tokens, these are 2 samples of 17 tokens"):
        longmagpie.pack_from_plan(make_samples([5, 12]), plan)
    with pytest.raises(ValueError, match=r"plan row \d: entry \d takes tokens 0..12 of sample 1, which has 11"):
        longmagpie.pack_from_plan(make_samples([5, 11, 4]), plan)
    packed = longmagpie.pack(samples, seq_len=16)
    with pytest.raises(ValueError, match=r"produced by longmagpie\.pack, not longmagpie\.pack_plan"):
        longmagpie.pack_from_plan(samples, packed)
    with pytest.raises(ValueError, match="carries no longmagpie metadata"):
        longmagpie.pack_from_plan(samples, plan.replace_schema_metadata(None))
    meta = longmagpie.pack_metadata(plan)
    bad = plan.replace_schema_metadata({b"longmagpie": json.dumps({**meta, "op": "pack_plan"}).encode()})
    with pytest.raises(ValueError, match="missing column 'token_offset'"):
        longmagpie.pack_from_plan(samples, bad.drop_columns(["token_offset"]))


def test_bad_tokens_are_named_when_the_rows_are_made() -> None:
    samples = pa.table({"input_ids": pa.array([[1, 2], [3, -4, 5]], pa.list_(pa.int32()))})
    plan = longmagpie.pack_plan(samples, seq_len=8)  # lengths only: the bad id is not read
    with pytest.raises(ValueError, match="row 1, position 1"):
        longmagpie.pack_from_plan(samples, plan)
