"""``pack_pmix``: p-mix, LongMagpie's long/short mixing, into fixed-capacity rows with per-segment boundaries."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import pyarrow as pa

from longmagpie import _core
from longmagpie.arrow_input import as_arrow
from longmagpie.metadata import attach, stats_of
from longmagpie.packing import require_ints, to_pyarrow

Fill = Literal["upstream", "best_fit"]
PmixOverflow = Literal["error", "truncate", "drop"]
Exhausted = Literal["stop", "short_only", "recycle"]

#: Upstream ``--choose_rate`` (the probability that the next segment is long).
UPSTREAM_P_LONG = 0.4


@dataclass(frozen=True)
class PmixStats:
    """What a p-mix run did (real tokens only).

    Attributes:
        rows: output rows.
        output_tokens: tokens in the output.
        fill_rate: ``output_tokens / (rows * seq_len)``.
        long_samples / short_samples: input rows of each pool.
        long_input_tokens / short_input_tokens: input tokens of each pool.
        long_used / short_used: samples placed at least once.
        long_unused / short_unused: samples never placed (empty and dropped ones not counted).
        reused_placements: placements of samples already used (``exhausted="recycle"``).
        long_segments / short_segments: segments of each kind (short includes the prefix).
        prefix_segments: short segments that open rows.
        best_fit_segments: short segments placed by ``fill="best_fit"``.
        long_segment_share: long segments / segments after the prefix (compare with ``p_long``).
        long_tokens / short_tokens: output tokens of each kind.
        long_token_share: ``long_tokens / output_tokens``.
        empty_samples: samples with no tokens (skipped).
        truncated_samples / truncated_tokens: samples cut by ``overflow="truncate"`` and tokens removed.
        dropped_samples / dropped_tokens: samples left out by ``overflow="drop"``.
        max_documents_per_row: most segments in one row.

    """

    rows: int
    output_tokens: int
    fill_rate: float
    long_samples: int
    short_samples: int
    long_input_tokens: int
    short_input_tokens: int
    long_used: int
    short_used: int
    long_unused: int
    short_unused: int
    reused_placements: int
    long_segments: int
    short_segments: int
    prefix_segments: int
    best_fit_segments: int
    long_segment_share: float
    long_tokens: int
    short_tokens: int
    long_token_share: float
    empty_samples: int
    truncated_samples: int
    truncated_tokens: int
    dropped_samples: int
    dropped_tokens: int
    max_documents_per_row: int

    def as_dict(self) -> dict[str, int | float]:
        """Return the statistics as a plain dict."""
        return asdict(self)


def pack_pmix(
    long: Any,
    short: Any,
    seq_len: int = 65536,
    p_long: float = UPSTREAM_P_LONG,
    n_short_prefix: int = 1,
    seed: int = 0,
    fill: Fill = "upstream",
    overflow: PmixOverflow = "error",
    exhausted: Exhausted = "stop",
    max_rows: int | None = None,
    num_threads: int | None = None,
) -> pa.Table:
    """Mix long-context and short samples into rows of at most ``seq_len`` tokens (p-mix).

    Every row opens with ``n_short_prefix`` short samples; then, until the row is full, the next
    segment is a long sample with probability ``p_long`` and a short one otherwise. Pools are
    shuffled and drawn without replacement by a ChaCha8 generator seeded from ``seed``: the same
    inputs and seed give byte-identical output on any machine and for any ``num_threads``.

    Args:
        long: long-context samples, in any form :func:`longmagpie.pack` accepts (same columns:
            ``input_ids``, optional ``assistant_masks``/``labels``, ``source``).
        short: short samples, same form. Either pool may lack ``assistant_masks`` or ``source``;
            ``labels`` must be in both or neither.
        seq_len: row capacity in tokens.
        p_long: probability that a segment after the prefix is long (upstream: 0.4).
        n_short_prefix: short samples opening each row (upstream: 1).
        seed: seed of the shuffles and draws.
        fill: when the drawn sample does not fit: ``"upstream"`` closes the row, ``"best_fit"``
            first fills the gap with the largest unused short samples that fit. Either way the
            sample that did not fit opens the next row's body (upstream cuts its tail instead).
        overflow: a sample that cannot fit in a row next to that row's prefix: ``"error"``,
            ``"truncate"`` (to the space left; counted) or ``"drop"`` (counted).
        exhausted: when a draw finds its pool empty: ``"stop"`` ends packing (each sample used at
            most once); ``"short_only"`` goes on with short samples once the long ones are out;
            ``"recycle"`` reshuffles and reuses the pool (upstream), ending when every long sample
            was used once, or after ``max_rows`` rows if given.
        max_rows: stop after this many rows (upstream ``--total_samples``).
        num_threads: threads used to copy tokens; the output is identical for any value.

    Returns:
        A ``pyarrow.Table`` with :func:`longmagpie.pack`'s columns (``input_ids``, ``seq_lengths``
        with one entry per segment, ``assistant_masks``, [``labels``], ``length``, [``source``])
        plus ``kind`` list<string> (``"long"``/``"short"`` per segment). Parameters and
        :class:`PmixStats` are in the schema metadata: read them with :func:`pmix_stats`.

    Raises:
        ValueError: bad values or arguments (``p_long`` outside [0, 1], an empty short pool with a
            prefix to fill, a sample too long with ``overflow="error"``); messages name the pool,
            the column and the row.
        TypeError: unreadable column types or inputs.

    """
    require_ints(seq_len=seq_len, n_short_prefix=n_short_prefix, seed=seed, max_rows=max_rows, num_threads=num_threads)
    if isinstance(p_long, bool) or not isinstance(p_long, (int, float)):
        raise TypeError(f"p_long must be a number, got {type(p_long).__name__}")
    if seed < 0 or seed >= 2**64:
        raise ValueError(f"seed must be in [0, 2**64) (got {seed})")
    table, stats = _core.pack_pmix(
        as_arrow(long),
        as_arrow(short),
        seq_len,
        float(p_long),
        n_short_prefix,
        seed,
        fill,
        overflow,
        exhausted,
        max_rows,
        num_threads,
    )
    table = to_pyarrow(table)
    params = {
        "seq_len": seq_len,
        "p_long": float(p_long),
        "n_short_prefix": n_short_prefix,
        "seed": seed,
        "fill": fill,
        "overflow": overflow,
        "exhausted": exhausted,
        "max_rows": max_rows,
    }
    return attach(table, "pack_pmix", params, stats)


def pmix_stats(table: pa.Table | pa.Schema) -> PmixStats:
    """Return the :class:`PmixStats` that :func:`pack_pmix` recorded for ``table``."""
    stats = stats_of(table, "pack_pmix")
    return PmixStats(**{f.name: stats[f.name] for f in fields(PmixStats)})
