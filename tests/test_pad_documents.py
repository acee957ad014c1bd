"""``pad_documents_to``: every document padded to a multiple at pack time (context parallelism), in every packer,
with padded and unpadded boundaries, counted, and carried (or re-padded) by the exports."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import ipc_bytes, make_samples
from typer.testing import CliRunner

import longmagpie
from longmagpie.cli import app
from longmagpie.export.rows import strip_document_padding


def segments(table: pa.Table) -> list[tuple]:
    """Every (real ids, padded length, mask, labels, weights, real length) segment of every row (labels and weights
    [] when absent), checking that the boundaries tile the row."""
    out = []
    names = table.schema.names
    for row in table.to_pylist():
        assert sum(row["seq_lengths"]) == len(row["input_ids"]) == row["length"]
        assert len(row["seq_lengths_unpadded"]) == len(row["seq_lengths"])
        at = 0
        for padded, real in zip(row["seq_lengths"], row["seq_lengths_unpadded"], strict=True):
            part = slice(at, at + padded)
            out.append(
                (
                    row["input_ids"][part][:real] if real else [],
                    padded,
                    row["assistant_masks"][part],
                    row["labels"][part] if "labels" in names else [],
                    row["loss_weights"][part] if "loss_weights" in names else [],
                    real,
                )
            )
            at += padded
    return out


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 80), max_size=30),
    multiple=st.integers(1, 8),
    rows_of=st.integers(1, 12),
    pad_rows=st.booleans(),
    labels=st.booleans(),
)
def test_every_document_is_padded_to_the_multiple_and_keeps_its_tokens(
    lengths: list[int], multiple: int, rows_of: int, pad_rows: bool, labels: bool
) -> None:
    seq_len = multiple * rows_of
    samples = make_samples(lengths, labels=labels)
    options = {
        "seq_len": seq_len,
        "overflow": "split",
        "pad_id": 9,
        "pad_to": seq_len + multiple if pad_rows else None,
        "pad_documents_to": multiple,
        "loss_weights": "per_token",
    }
    table = longmagpie.pack(samples, **options)
    assert table.schema.field("seq_lengths_unpadded").type == pa.list_(pa.int32())
    kept: dict[int, list[int]] = {}
    real_total = pads = 0
    for ids, padded, mask, labels_, weights, real in segments(table):
        assert padded % multiple == 0
        tail = slice(real, padded)
        assert mask[tail] == [0] * (padded - real)
        assert weights[tail] == [0.0] * (padded - real)
        if labels:
            assert labels_[tail] == [-100] * (padded - real)
        if real:  # a document: its padding is under one multiple, its ids one contiguous run of one sample
            assert padded - real < multiple
            sample = ids[0] // 100_000
            assert ids == list(range(ids[0], ids[0] + real))
            assert ids[0] % 100_000 == len(kept.setdefault(sample, []))
            kept[sample] += ids
            real_total += real
            pads += padded - real
    assert {s: len(v) for s, v in kept.items()} == {s: n for s, n in enumerate(lengths) if n}
    stats = longmagpie.pack_stats(table)
    assert stats.output_tokens == real_total == sum(lengths)
    assert stats.document_pad_tokens == pads
    assert stats.fill_rate == pytest.approx(real_total / (stats.rows * seq_len) if stats.rows else 0.0)
    # The stream, the plan and any thread count give the same bytes.
    streamed = longmagpie.pack_stream(samples, window_tokens=10**6, **options).read_all()
    assert ipc_bytes(streamed.replace_schema_metadata(None)) == ipc_bytes(table.replace_schema_metadata(None))
    plan = longmagpie.pack_plan(samples, **options)
    assert ipc_bytes(longmagpie.pack_from_plan(samples, plan)) == ipc_bytes(table)
    assert ipc_bytes(longmagpie.pack(samples, num_threads=1, **options)) == ipc_bytes(table)


def test_a_multiple_of_one_is_pack_without_padding_plus_the_column() -> None:
    samples = make_samples([30, 200, 45, 7, 120, 66], labels=True)
    plain = longmagpie.pack(samples, seq_len=256, pad_to=260)
    one = longmagpie.pack(samples, seq_len=256, pad_to=260, pad_documents_to=1)
    assert one.schema.names == [*plain.schema.names[:2], "seq_lengths_unpadded", *plain.schema.names[2:]]
    for name in plain.schema.names:
        assert one.column(name).equals(plain.column(name)), name
    assert [u[:-1] for u in one.column("seq_lengths_unpadded").to_pylist()] == [
        s[:-1] for s in plain.column("seq_lengths").to_pylist()
    ]
    assert all(u[-1] == 0 for u in one.column("seq_lengths_unpadded").to_pylist()), "the pad_to segment is empty"


def test_the_planner_places_padded_lengths_and_fill_counts_real_tokens() -> None:
    # Rows of 8, multiple 4: 5 -> 8, 3 -> 4, 3 -> 4. Unpadded, best fit puts 5 + 3 in one row; padded it cannot.
    table = longmagpie.pack(make_samples([5, 3, 3]), seq_len=8, pad_documents_to=4)
    assert table.column("seq_lengths").to_pylist() == [[8], [4, 4]]
    assert table.column("seq_lengths_unpadded").to_pylist() == [[5], [3, 3]]
    stats = longmagpie.pack_stats(table)
    assert (stats.rows, stats.output_tokens, stats.document_pad_tokens) == (2, 11, 5)
    assert stats.fill_rate == pytest.approx(11 / 16)
    assert any("after documents" in line for line in stats.summary_lines(8))


def test_pmix_and_its_stream_pad_every_segment() -> None:
    long = make_samples([100, 37, 90, 61, 12], labels=True)
    short = make_samples([5, 9, 12, 4, 7, 3, 11, 2, 6, 8], labels=True)
    options = {"seq_len": 128, "seed": 5, "pad_documents_to": 8, "fill": "best_fit", "overflow": "truncate"}
    table = longmagpie.pack_pmix(long, short, **options)
    real = 0
    for _ids, padded, mask, labels, _weights, n in segments(table):
        assert n > 0 and padded % 8 == 0 and padded - n < 8
        assert mask[n:] == [0] * (padded - n) and labels[n:] == [-100] * (padded - n)
        real += n
    stats = longmagpie.pmix_stats(table)
    assert stats.output_tokens == real
    assert stats.document_pad_tokens == sum(table.column("length").to_pylist()) - real > 0
    streamed = longmagpie.pack_pmix_stream(long, short, window_tokens=10**6, **options).read_all()
    assert ipc_bytes(streamed.replace_schema_metadata(None)) == ipc_bytes(table.replace_schema_metadata(None))
    assert longmagpie.pack_metadata(table)["params"]["pad_documents_to"] == 8


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: longmagpie.pack(make_samples([3]), seq_len=10, pad_documents_to=4), "must divide seq_len=10"),
        (
            lambda: longmagpie.pack(make_samples([3]), seq_len=8, pad_to=10, pad_documents_to=4),
            "must divide pad_to=10",
        ),
        (lambda: longmagpie.PackOptions(seq_len=8, pad_documents_to=0), "pad_documents_to must be >= 1"),
        (lambda: longmagpie.PmixOptions(seq_len=100, pad_documents_to=16), "must divide seq_len=100"),
    ],
)
def test_a_multiple_that_does_not_fit_the_rows_is_refused(call, message) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_parquet_export_carries_both_boundaries_and_nemo_repads_its_own_way(tmp_path) -> None:
    samples = make_samples([30, 200, 45, 7, 120, 66, 13], labels=True)
    table = longmagpie.pack(samples, seq_len=256, pad_documents_to=16, pad_id=5)
    longmagpie.export_parquet(table, tmp_path / "hf")
    back = pq.read_table(tmp_path / "hf" / "data")
    for name in ("seq_lengths", "seq_lengths_unpadded"):
        assert back.column(name).to_pylist() == table.column(name).to_pylist()
    assert "seq_lengths_unpadded" in (tmp_path / "hf" / "README.md").read_text()

    # NeMo pads L - 1 with EOS by its own rule: the document padding is taken out first, so the export equals the
    # export of the same rows packed without it (built here by hand).
    rows = []
    for row in table.to_pylist():
        out = {k: [] for k in ("input_ids", "assistant_masks", "labels", "seq_lengths")}
        at = 0
        for padded, real in zip(row["seq_lengths"], row["seq_lengths_unpadded"], strict=True):
            for k in ("input_ids", "assistant_masks", "labels"):
                out[k] += row[k][at : at + real]
            out["seq_lengths"].append(real)
            at += padded
        rows.append({**out, "length": len(out["input_ids"])})
    by_hand = pa.Table.from_pylist(rows, schema=table.drop_columns(["seq_lengths_unpadded"]).schema)
    assert strip_document_padding(table.to_batches()[0]).to_pylist() == by_hand.to_pylist()
    longmagpie.export_nemo(table, tmp_path / "nemo", cp_size=2, pad_id=5)
    longmagpie.export_nemo(by_hand, tmp_path / "nemo-hand", cp_size=2, pad_id=5)
    got = pq.read_table(sorted((tmp_path / "nemo").glob("*.parquet"))[0])
    want = pq.read_table(sorted((tmp_path / "nemo-hand").glob("*.parquet"))[0])
    assert got.to_pylist() == want.to_pylist()
    assert json.loads((tmp_path / "nemo" / "metadata.json").read_text()) == json.loads(
        (tmp_path / "nemo-hand" / "metadata.json").read_text()
    )


def test_an_unpadded_length_longer_than_its_segment_is_named(tmp_path) -> None:
    table = longmagpie.pack(make_samples([5, 3, 3]), seq_len=8, pad_documents_to=4)
    bad = table.set_column(
        table.schema.get_field_index("seq_lengths_unpadded"),
        "seq_lengths_unpadded",
        pa.array([[5], [3, 9]], pa.list_(pa.int32())),
    )
    with pytest.raises(ValueError, match="row 1: 'seq_lengths_unpadded' has an entry outside"):
        longmagpie.export_parquet(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_pack_and_pmix_pad_documents(tmp_path) -> None:
    samples = make_samples([30, 200, 45, 7, 120, 66], labels=True)
    pq.write_table(samples, tmp_path / "in.parquet")
    runner = CliRunner()
    out = tmp_path / "packed.parquet"
    result = runner.invoke(
        app, ["pack", str(tmp_path / "in.parquet"), "-o", str(out), "--seq-len", "256", "--pad-documents-to", "16"]
    )
    assert result.exit_code == 0, result.output
    assert "after documents (pad_documents_to)" in result.output
    assert pq.read_table(out).to_pylist() == longmagpie.pack(samples, seq_len=256, pad_documents_to=16).to_pylist()
    result = runner.invoke(
        app, ["pack", str(tmp_path / "in.parquet"), "-o", str(tmp_path / "x.parquet"), "--pad-documents-to", "3"]
    )
    assert result.exit_code != 0 and "must divide seq_len=65536" in result.output
    mixed = tmp_path / "mixed.parquet"
    result = runner.invoke(
        app,
        ["pmix", "--long", str(tmp_path / "in.parquet"), "--short", str(tmp_path / "in.parquet"), "-o", str(mixed),
         "--seq-len", "256", "--pad-documents-to", "8", "--overflow", "truncate"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert all(n % 8 == 0 for row in pq.read_table(mixed).column("seq_lengths").to_pylist() for n in row)
