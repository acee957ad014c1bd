"""``pack_pmix``: p-mix, LongMagpie's long/short mixing, into fixed-capacity rows with per-segment boundaries."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from typing import Any

import pyarrow as pa

from longmagpie import _core
from longmagpie._arrow import as_arrow
from longmagpie._metadata import attach, stats_of
from longmagpie.options import Exhausted, Fill, LossWeights, PmixOptions, PmixOverflow, require_ints, resolve
from longmagpie.packing.pack import to_pyarrow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PmixStats:
    """What a p-mix run did (real tokens only).

    Attributes:
        rows: output rows.
        output_tokens: tokens in the output.
        document_pad_tokens: padding added by ``pad_documents_to`` (after each segment, inside it).
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
    document_pad_tokens: int
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

    def summary_lines(self, seq_len: int) -> list[str]:
        """Format the run as a few aligned lines (what ``longmagpie pmix`` prints)."""
        return [
            f"mixed {self.long_used:,} of {self.long_samples:,} long and {self.short_used:,} of "
            f"{self.short_samples:,} short",
            f"  rows      {self.rows:,} of {seq_len:,} tokens, fill {100 * self.fill_rate:.3f} %",
            f"  long      {self.long_segment_share:.3f} of segments after the prefix, "
            f"{self.long_token_share:.3f} of tokens",
        ]


def pack_pmix(
    long: Any,
    short: Any,
    seq_len: int = PmixOptions.seq_len,
    p_long: float = PmixOptions.p_long,
    n_short_prefix: int = PmixOptions.n_short_prefix,
    seed: int = PmixOptions.seed,
    fill: Fill = PmixOptions.fill,
    overflow: PmixOverflow = PmixOptions.overflow,
    exhausted: Exhausted = PmixOptions.exhausted,
    max_rows: int | None = PmixOptions.max_rows,
    num_threads: int | None = PmixOptions.num_threads,
    loss_weights: LossWeights | None = PmixOptions.loss_weights,
    pad_documents_to: int | None = PmixOptions.pad_documents_to,
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
        loss_weights: also write ``loss_weights``, as :func:`longmagpie.pack` does.
        pad_documents_to: pad every segment (with id 0, mask 0, label -100) to a multiple of this many
            tokens and write ``seq_lengths_unpadded``, as :func:`longmagpie.pack` does.

    Returns:
        A ``pyarrow.Table`` with :func:`longmagpie.pack`'s columns (``input_ids``, ``seq_lengths``
        with one entry per segment, [``seq_lengths_unpadded``], ``assistant_masks``, [``labels``],
        [``loss_weights``], ``length``,
        [``source``])
        plus ``kind`` list<string> (``"long"``/``"short"`` per segment). Parameters and
        :class:`PmixStats` are in the schema metadata: read them with :func:`pmix_stats`.

    Raises:
        ValueError: bad values or arguments (``p_long`` outside [0, 1], an empty short pool with a
            prefix to fill, a sample too long with ``overflow="error"``); messages name the pool,
            the column and the row.
        TypeError: unreadable column types or inputs.

    """
    options = PmixOptions(
        seq_len=seq_len,
        p_long=p_long,
        n_short_prefix=n_short_prefix,
        seed=seed,
        fill=fill,
        overflow=overflow,
        exhausted=exhausted,
        max_rows=max_rows,
        num_threads=num_threads,
        loss_weights=loss_weights,
        pad_documents_to=pad_documents_to,
    )
    # The in-memory call is the streaming engine with one block per pool (window_tokens=None).
    core = _core.pack_pmix_stream(as_arrow(long), as_arrow(short), options)
    table = PmixPackedStream(core, options.params()).read_all()
    s = pmix_stats(table)
    log.info(
        "p-mix: %d of %d long and %d of %d short samples into %d rows of %d, fill %.3f %%, long share %.3f",
        s.long_used,
        s.long_samples,
        s.short_used,
        s.short_samples,
        s.rows,
        seq_len,
        100 * s.fill_rate,
        s.long_segment_share,
    )
    return table


def pmix_stats(table: pa.Table | pa.Schema) -> PmixStats:
    """Return the :class:`PmixStats` that :func:`pack_pmix` recorded for ``table``."""
    stats = stats_of(table, "pack_pmix")
    return PmixStats(**{f.name: stats[f.name] for f in fields(PmixStats)})


class PmixPackedStream:
    """The output of :func:`pack_pmix_stream`: a one-shot stream of packed record batches.

    Iterate it, read it with :meth:`read_all`, or hand it to anything that takes an Arrow stream
    (``__arrow_c_stream__``). :attr:`stats` covers the rows produced so far and is final once the
    stream is exhausted.
    """

    def __init__(self, core: Any, params: dict[str, Any]) -> None:
        """Wrap the compiled stream ``core``."""
        self._core = core
        self._params = params
        self.schema: pa.Schema = to_pyarrow(core.empty()).schema

    @property
    def stats(self) -> PmixStats:
        """Statistics over the rows produced so far."""
        stats = self._core.stats()
        return PmixStats(**{f.name: stats[f.name] for f in fields(PmixStats)})

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        """Yield packed record batches (the planning and copying run with the GIL released)."""
        while (chunk := self._core.next_batch()) is not None:
            yield from pa.RecordBatchReader.from_stream(chunk)

    def __arrow_c_stream__(self, requested_schema: object | None = None) -> object:
        """Export the remaining batches as an Arrow C stream."""
        reader = pa.RecordBatchReader.from_batches(self.schema, iter(self))
        return reader.__arrow_c_stream__(requested_schema)

    def read_all(self) -> pa.Table:
        """Read every remaining batch into a table carrying the final statistics in its metadata."""
        table = pa.Table.from_batches(list(self), schema=self.schema)
        return attach(table, "pack_pmix", self._params, self.stats.as_dict())


def pack_pmix_stream(
    long: Any,
    short: Any,
    options: PmixOptions | None = None,
    *,
    window_tokens: int = 2**26,
    **overrides: Any,
) -> PmixPackedStream:
    """:func:`pack_pmix` over streams larger than memory, in bounded memory.

    Each pool is read in blocks of about ``window_tokens`` tokens (cut at sample boundaries, so the
    result does not depend on how the input is chunked), shuffled within the block; rows are
    copied out every ~1,000 rows and input batches are released as soon as no block or pending row
    needs them. Memory holds about two blocks plus one output batch. With ``window_tokens`` at
    least the size of the input, the output equals :func:`pack_pmix`'s, byte for byte. Smaller
    windows shuffle less globally (a block shuffle), and ``exhausted="recycle"`` reuses the last
    block of a pool rather than the whole pool.

    Args:
        long: long samples: a ``pyarrow.RecordBatchReader`` (or any ``__arrow_c_stream__``
            producer), a ``pyarrow.dataset`` Dataset or Scanner, a table, or an iterable of record
            batches; read lazily.
        short: short samples, in the same forms.
        options: the p-mix options, as for :func:`pack_pmix` (default ``PmixOptions()``).
        window_tokens: tokens per block and pool (default 2**26: about 320 MB of ids and masks per
            pool); memory grows with it.
        **overrides: :class:`~longmagpie.options.PmixOptions` fields by name (``seq_len=4096``,
            ``p_long=...``, ``seed=...``, ...), applied over ``options``.

    Returns:
        A :class:`PmixPackedStream` of record batches with :func:`pack_pmix`'s schema.

    """
    from longmagpie.packing.stream import record_batches

    options = resolve(PmixOptions, options, overrides)
    require_ints(window_tokens=window_tokens)
    readers = [pa.RecordBatchReader.from_batches(*record_batches(x)) for x in (long, short)]
    core = _core.pack_pmix_stream(readers[0], readers[1], options, window_tokens)
    return PmixPackedStream(core, {**options.params(), "window_tokens": window_tokens})
