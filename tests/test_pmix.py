"""`longmagpie.pack_pmix` through the installed wheel: p-mix invariants, statistics, determinism, errors."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import ipc_bytes, rng_lengths

import longmagpie

LONG_BASE = 50_000_000


def pool(lengths: list[int], long: bool, mask: bool = False, source: str | None = None) -> pa.Table:
    """Ids encode (pool, sample, position): long ids start at LONG_BASE."""
    base = LONG_BASE if long else 0
    cols: dict[str, pa.Array] = {
        "input_ids": pa.array(
            [[base + s * 10_000 + p for p in range(n)] for s, n in enumerate(lengths)], pa.list_(pa.int32())
        )
    }
    if mask:
        cols["assistant_masks"] = pa.array([[p % 2 for p in range(n)] for n in lengths], pa.list_(pa.int8()))
    if source:
        cols["source"] = pa.array([source] * len(lengths), pa.string())
    return pa.table(cols)


def segments(table: pa.Table) -> list[list[tuple[str, int, int]]]:
    """Rows as lists of (kind, sample, length), checking that each segment is one whole-sample prefix."""
    rows = []
    for row in table.select(["input_ids", "seq_lengths", "kind"]).to_pylist():
        pos, segs = 0, []
        for n, kind in zip(row["seq_lengths"], row["kind"], strict=True):
            doc = row["input_ids"][pos : pos + n]
            assert kind == ("long" if doc[0] >= LONG_BASE else "short")
            local = doc[0] % LONG_BASE
            assert local % 10_000 == 0 and doc == list(range(doc[0], doc[0] + n))
            segs.append((kind, local // 10_000, n))
            pos += n
        assert pos == len(row["input_ids"])
        rows.append(segs)
    return rows


@settings(max_examples=40, deadline=None)
@given(
    long=st.lists(st.integers(1, 150), max_size=40),
    short=st.lists(st.integers(1, 40), min_size=1, max_size=80),
    seq_len=st.integers(160, 400),
    p_long=st.floats(0, 1),
    prefix=st.integers(0, 2),
    fill=st.sampled_from(["upstream", "best_fit"]),
    seed=st.integers(0, 2**64 - 1),
)
def test_invariants(long, short, seq_len, p_long, prefix, fill, seed) -> None:
    kwargs = dict(seq_len=seq_len, p_long=p_long, n_short_prefix=prefix, fill=fill, seed=seed, overflow="drop")
    table = longmagpie.pack_pmix(pool(long, True), pool(short, False), num_threads=2, **kwargs)
    seen: set[tuple[str, int]] = set()
    for row in segments(table):
        assert sum(n for _, _, n in row) <= seq_len
        assert all(kind == "short" for kind, _, _ in row[:prefix])
        for kind, s, n in row:
            assert (kind, s) not in seen, "a sample is used at most once"
            seen.add((kind, s))
            assert n == (long if kind == "long" else short)[s]
    s = longmagpie.pmix_stats(table)
    assert s.rows == table.num_rows
    assert s.long_used + s.short_used == len(seen)
    assert s.long_used + s.long_unused + s.short_used + s.short_unused + s.dropped_samples == len(long) + len(short)
    assert s.output_tokens == sum(table.column("length").to_pylist())
    one = longmagpie.pack_pmix(pool(long, True), pool(short, False), num_threads=1, **kwargs)
    assert ipc_bytes(one) == ipc_bytes(table)


def test_schema_is_packs_plus_kind_and_masks_mix() -> None:
    long = pool([30, 40, 20], True, mask=True, source="magpie")
    short = pool([5, 6, 7, 8, 9, 10], False)  # no mask (all trained), no source (null)
    table = longmagpie.pack_pmix(long, short, seq_len=100, p_long=0.5, seed=3)
    assert table.schema.names == ["input_ids", "seq_lengths", "assistant_masks", "length", "source", "kind"]
    assert table.schema.field("kind").type == pa.list_(pa.string())
    for row in table.to_pylist():
        pos = 0
        for n, kind, src in zip(row["seq_lengths"], row["kind"], row["source"], strict=True):
            mask = row["assistant_masks"][pos : pos + n]
            if kind == "long":
                assert src == "magpie" and mask == [p % 2 for p in range(n)]
            else:
                assert src is None and mask == [1] * n
            pos += n


def test_long_share_matches_p_long_within_binomial_bound() -> None:
    long = pool([6] * 3000, True)
    short = pool([4] * 6000, False)
    for p in (0.2, 0.4, 0.7):
        s = longmagpie.pmix_stats(longmagpie.pack_pmix(long, short, seq_len=80, p_long=p, seed=11))
        body = s.long_segments + s.short_segments - s.prefix_segments
        assert body > 3000
        assert abs(s.long_segment_share - p) < 4 * math.sqrt(p * (1 - p) / body), (p, s)


def test_p_long_zero_and_one() -> None:
    long, short = pool([10] * 50, True), pool([3] * 200, False)
    s0 = longmagpie.pmix_stats(longmagpie.pack_pmix(long, short, seq_len=64, p_long=0.0))
    assert s0.long_segments == 0 and s0.short_unused == 0
    s1 = longmagpie.pmix_stats(longmagpie.pack_pmix(long, short, seq_len=64, p_long=1.0))
    assert s1.short_segments == s1.prefix_segments == s1.rows
    assert s1.long_unused == 0


def test_seed_changes_the_mix_but_not_the_multiset() -> None:
    long, short = pool(rng_lengths(0, 60, 5, 50), True), pool(rng_lengths(1, 300, 1, 20), False)
    a = longmagpie.pack_pmix(long, short, seq_len=200, seed=1, exhausted="short_only")
    b = longmagpie.pack_pmix(long, short, seq_len=200, seed=2, exhausted="short_only")
    assert ipc_bytes(a) != ipc_bytes(b)
    used = lambda t: sorted((k, s) for row in segments(t) for k, s, _ in row)  # noqa: E731
    assert used(a) == used(b)  # short_only: every sample is placed whatever the seed


def test_best_fit_raises_fill() -> None:
    long, short = pool(rng_lengths(2, 300, 100, 250), True), pool(rng_lengths(3, 3000, 5, 64), False)
    up = longmagpie.pmix_stats(longmagpie.pack_pmix(long, short, seq_len=512))
    bf = longmagpie.pmix_stats(longmagpie.pack_pmix(long, short, seq_len=512, fill="best_fit"))
    assert bf.fill_rate > up.fill_rate and bf.fill_rate > 0.99
    assert bf.best_fit_segments > 0


def test_exhaustion_policies() -> None:
    long, short = pool([20, 20], True), pool([5] * 40, False)
    stop = longmagpie.pmix_stats(longmagpie.pack_pmix(long, short, seq_len=50, p_long=0.5, seed=5))
    only = longmagpie.pmix_stats(
        longmagpie.pack_pmix(long, short, seq_len=50, p_long=0.5, seed=5, exhausted="short_only")
    )
    assert only.short_used >= stop.short_used and only.long_unused == 0
    rec = longmagpie.pmix_stats(longmagpie.pack_pmix(long, short, seq_len=50, exhausted="recycle", max_rows=30, seed=5))
    assert rec.rows == 30 and rec.reused_placements > 0
    # Empty long pool: rows of short samples until the first long draw; recycle ends at once.
    empty = pool([], True)
    s = longmagpie.pmix_stats(longmagpie.pack_pmix(empty, short, seq_len=50, seed=5))
    assert s.long_segments == 0 and s.rows >= 1
    assert longmagpie.pack_pmix(empty, short, seq_len=50, exhausted="short_only").num_rows == 4  # 40 x 5 / 50


def test_metadata_records_params() -> None:
    table = longmagpie.pack_pmix(pool([10], True), pool([5, 5], False), seq_len=64, seed=9, p_long=0.25)
    meta = longmagpie.pack_metadata(table)
    assert meta["op"] == "pack_pmix" and meta["params"]["seed"] == 9 and meta["params"]["p_long"] == 0.25
    with pytest.raises(ValueError, match=r"produced by longmagpie\.pack_pmix, not longmagpie\.pack"):
        longmagpie.pack_stats(table)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"p_long": 1.5}, ValueError, r"p_long must be in \[0, 1\]"),
        ({"p_long": -0.1}, ValueError, r"p_long must be in \[0, 1\]"),
        ({"fill": "tight"}, ValueError, "unknown fill 'tight'"),
        ({"exhausted": "wrap"}, ValueError, "unknown exhausted policy 'wrap'"),
        ({"overflow": "split"}, ValueError, "overflow='split' is not available"),
        ({"seed": -1}, ValueError, "seed must be in"),
        ({"p_long": "0.4"}, TypeError, "p_long must be a number"),
        ({"exhausted": "recycle", "p_long": 0.0}, ValueError, "never ends: pass max_rows"),
    ],
)
def test_bad_arguments(kwargs, error, message) -> None:
    with pytest.raises(error, match=message):
        longmagpie.pack_pmix(pool([10], True), pool([5], False), seq_len=64, **kwargs)


def test_bad_pools_are_named() -> None:
    with pytest.raises(ValueError, match="short pool is empty"):
        longmagpie.pack_pmix(pool([10], True), pool([], False), seq_len=64)
    with pytest.raises(ValueError, match=r"in the long samples: row 1 has 100 tokens, more than seq_len=64"):
        longmagpie.pack_pmix(pool([10, 100], True), pool([5], False), seq_len=64)
    bad = pa.table({"input_ids": pa.array([[1, -2]], pa.list_(pa.int64()))})
    with pytest.raises(ValueError, match=r"'input_ids' has invalid value -2 at row 0, position 1"):
        longmagpie.pack_pmix(pool([10], True), bad, seq_len=64)
    with pytest.raises(TypeError, match=r"in the short samples: column 'input_ids' has type list<double>"):
        longmagpie.pack_pmix(pool([10], True), pa.table({"input_ids": [[1.0]]}), seq_len=64)
    labelled = pool([10], True).append_column("labels", pa.array([list(range(10))]))
    with pytest.raises(ValueError, match="'labels' is in the long samples but not in the short ones"):
        longmagpie.pack_pmix(labelled, pool([5], False), seq_len=64)
    with pytest.raises(ValueError, match=r"only 59 of seq_len=64 remain; pass overflow='truncate' or 'drop'"):
        longmagpie.pack_pmix(pool([62], True), pool([5], False), seq_len=64, p_long=1.0)
