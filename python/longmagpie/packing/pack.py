"""``pack``: greedy bin packing of tokenized samples into fixed-capacity rows with document boundaries."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, fields
from typing import Any

import pyarrow as pa

from longmagpie import _core
from longmagpie._metadata import attach, pack_metadata, stats_of
from longmagpie.options import LossWeights, Overflow, PackOptions, Strategy

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PackStats:
    """What a packing run did. Token counts exclude padding unless named so.

    Attributes:
        input_samples: rows of the input.
        input_tokens: tokens over all input rows.
        empty_samples: input rows with no tokens (skipped; an empty document has no boundary).
        rows: output rows.
        documents: documents placed (one per kept sample; more for split samples).
        output_tokens: real tokens in the output.
        pad_tokens: padding added by ``pad_to`` (after a row's last document).
        document_pad_tokens: padding added by ``pad_documents_to`` (after each document, inside its segment).
        fill_rate: ``output_tokens / (rows * seq_len)`` (0 when there are no rows).
        truncated_samples: samples cut to ``seq_len`` (``overflow="truncate"``).
        truncated_tokens: tokens removed by truncation.
        dropped_samples: samples left out (``overflow="drop"``).
        dropped_tokens: tokens of the dropped samples.
        split_samples: samples cut into ``seq_len`` pieces (``overflow="split"``).
        split_pieces: pieces made from them.
        max_documents_per_row: most documents in one row.
        min_row_tokens: fewest real tokens in a row.

    """

    input_samples: int
    input_tokens: int
    empty_samples: int
    rows: int
    documents: int
    output_tokens: int
    pad_tokens: int
    document_pad_tokens: int
    fill_rate: float
    truncated_samples: int
    truncated_tokens: int
    dropped_samples: int
    dropped_tokens: int
    split_samples: int
    split_pieces: int
    max_documents_per_row: int
    min_row_tokens: int

    def as_dict(self) -> dict[str, int | float]:
        """Return the statistics as a plain dict."""
        return asdict(self)

    def summary_lines(self, seq_len: int) -> list[str]:
        """Format the run as a few aligned lines (what ``longmagpie pack`` prints)."""
        lines = [
            f"samples   {self.input_samples:,} ({self.input_tokens:,} tokens; {self.empty_samples:,} empty skipped)",
            f"rows      {self.rows:,} of {seq_len:,} tokens, {self.documents:,} documents, "
            f"up to {self.max_documents_per_row} per row",
            f"fill      {100 * self.fill_rate:.3f} %",
        ]
        if self.document_pad_tokens:
            lines.append(f"padding   {self.document_pad_tokens:,} tokens after documents (pad_documents_to)")
        if self.truncated_samples or self.dropped_samples or self.split_samples:
            lines.append(
                f"overflow  truncated {self.truncated_samples:,} ({self.truncated_tokens:,} tokens), "
                f"dropped {self.dropped_samples:,} ({self.dropped_tokens:,} tokens), "
                f"split {self.split_samples:,} into {self.split_pieces:,}"
            )
        return lines


def to_pyarrow(stream: object) -> pa.Table:
    """Read the core's Arrow C stream into a ``pyarrow.Table`` without copying.

    (``pyarrow.table(obj)`` would do the same but first imports pandas to check for a DataFrame,
    which costs a quarter of a second on the first call.)
    """
    return pa.RecordBatchReader.from_stream(stream).read_all()


def pack(
    samples: Any,
    seq_len: int = PackOptions.seq_len,
    strategy: Strategy = PackOptions.strategy,
    overflow: Overflow = PackOptions.overflow,
    num_threads: int | None = PackOptions.num_threads,
    pad_to: int | None = PackOptions.pad_to,
    pad_id: int = PackOptions.pad_id,
    loss_weights: LossWeights | None = PackOptions.loss_weights,
    pad_documents_to: int | None = PackOptions.pad_documents_to,
) -> pa.Table:
    """Pack tokenized samples into rows of at most ``seq_len`` tokens, keeping every document boundary.

    Args:
        samples: tokenized samples with an ``input_ids`` column (list or large_list of any integer
            type) and optionally ``assistant_masks`` (0/1 per token), ``labels`` (-100 = ignored) and
            ``source`` (string). Any Arrow PyCapsule producer (pyarrow, polars, ...), a
            ``datasets.Dataset``, a dict of columns or a list of row dicts. Read without copying.
        seq_len: row capacity in tokens.
        strategy: ``"bfd"`` best-fit decreasing (tightest rows), ``"ffd"`` first-fit decreasing, or
            ``"sequential"`` (input order kept; a row closes when the next sample does not fit).
        overflow: for samples longer than ``seq_len``: ``"error"`` (names the row), ``"truncate"``
            (keep the first ``seq_len`` tokens), ``"drop"``, or ``"split"`` (``seq_len`` pieces, each
            its own document). Every truncated, dropped or split sample is counted in the statistics.
        num_threads: threads used to copy tokens (a dedicated pool); ``None`` uses every core. The
            output is byte-identical for any value.
        pad_to: pad every row to this many tokens (at least ``seq_len``) with ``pad_id``; the pad is
            recorded as its own segment in ``seq_lengths`` with mask 0 and label -100.
        pad_id: token id used for padding.
        loss_weights: also write ``loss_weights`` list<float32>, one weight per token:
            ``"per_sequence"`` (``1/N`` on each of a document's ``N`` trained tokens, so every document
            weighs the same in the loss) or ``"per_token"`` (1 on each trained token); see
            :data:`longmagpie.options.LOSS_WEIGHTS_RULE` for which tokens are trained.
        pad_documents_to: pad every document with ``pad_id`` (mask 0, label -100) to a multiple of this
            many tokens, e.g. ``2 * cp`` for context parallelism; it must divide ``seq_len`` (and ``pad_to``).
            The planner places the padded lengths; see :data:`longmagpie.options.PAD_DOCUMENTS_RULE`.

    Returns:
        A ``pyarrow.Table`` with one row per packed sequence: ``input_ids`` list<int32>,
        ``seq_lengths`` list<int32> (one entry per document, summing to the row length; with
        ``pad_documents_to`` each entry includes its document's padding), ``seq_lengths_unpadded``
        list<int32> (only with ``pad_documents_to``: each entry's real tokens, 0 for the ``pad_to`` segment),
        ``assistant_masks`` list<int8> (all 1 when the input had neither mask nor labels; derived
        as ``labels != -100`` when it had labels only), ``labels`` list<int32> (only if the input
        had labels), ``loss_weights`` list<float32> (only with ``loss_weights``), ``length`` int32,
        and ``source`` list<string> (one per document, only if the input had it). Parameters and
        :class:`PackStats` are stored in the schema metadata; read them with :func:`pack_stats`.

    Raises:
        ValueError: bad values (nulls, negative ids, masks other than 0/1, per-token columns of
            another length than ``input_ids``, a sample longer than ``seq_len`` with
            ``overflow="error"``, bad arguments); the message names the column and the row.
        TypeError: a column of a type that cannot be read, or an unsupported ``samples`` object.

    """
    from longmagpie._arrow import as_arrow

    options = PackOptions(
        seq_len=seq_len,
        strategy=strategy,
        overflow=overflow,
        pad_to=pad_to,
        pad_id=pad_id,
        loss_weights=loss_weights,
        pad_documents_to=pad_documents_to,
        num_threads=num_threads,
    )
    table, stats = _core.pack(as_arrow(samples), options)
    table = to_pyarrow(table)
    log.info(
        "packed %d samples (%d tokens) into %d rows of %d (%s), fill %.3f %%",
        stats["input_samples"],
        stats["input_tokens"],
        stats["rows"],
        seq_len,
        strategy,
        100 * stats["fill_rate"],
    )
    return attach(table, "pack", options.params(), stats)


def pack_stats(table: pa.Table | pa.Schema) -> PackStats:
    """Return the :class:`PackStats` that :func:`pack` (or :func:`pack_plan`) recorded for ``table``.

    Also after a Parquet round trip.
    """
    if pack_metadata(table).get("op") == "pack_plan":
        stats = stats_of(table, "pack_plan")
    else:
        stats = stats_of(table, "pack")
    return PackStats(**{f.name: stats[f.name] for f in fields(PackStats)})


#: The statistics of a plan that describe its rows; :func:`pack_from_plan` recomputes them from the rows it makes.
ROW_STATS = (
    "rows",
    "documents",
    "output_tokens",
    "pad_tokens",
    "document_pad_tokens",
    "fill_rate",
    "max_documents_per_row",
    "min_row_tokens",
)


def pack_plan(
    samples: Any,
    seq_len: int = PackOptions.seq_len,
    strategy: Strategy = PackOptions.strategy,
    overflow: Overflow = PackOptions.overflow,
    pad_to: int | None = PackOptions.pad_to,
    pad_id: int = PackOptions.pad_id,
    loss_weights: LossWeights | None = PackOptions.loss_weights,
    pad_documents_to: int | None = PackOptions.pad_documents_to,
) -> pa.Table:
    """Plan :func:`pack` without copying a token: per packed row, where each of its documents comes from.

    The planner works on lengths alone, so a plan costs a fraction of a pack and a few bytes per document: keep
    it beside the tokenized samples and make the rows when they are needed (:func:`pack_from_plan`), or plan again
    for another ``seq_len`` or strategy without rewriting any token.

    Args:
        samples: what :func:`pack` takes (only ``input_ids`` lengths and the columns present are read).
        seq_len: row capacity in tokens.
        strategy: as in :func:`pack`.
        overflow: as in :func:`pack`.
        pad_to: recorded for :func:`pack_from_plan`, which pads the rows it makes.
        pad_id: recorded for :func:`pack_from_plan`.
        loss_weights: recorded for :func:`pack_from_plan`, which writes them.
        pad_documents_to: as in :func:`pack` (the plan places padded documents; its ``seq_lengths`` are real).

    Returns:
        A ``pyarrow.Table`` with one row per packed row, in :func:`pack`'s order: ``sample_index`` list<int64>
        (row of ``samples``, 0-based), ``token_offset`` list<int64> (tokens of the sample before the document;
        non-zero only for ``overflow="split"`` pieces) and ``seq_lengths`` list<int32> (document lengths), one
        entry per document in row order. Its schema metadata records ``op="pack_plan"``, the options and the
        :class:`PackStats` that :func:`pack` would report (read them with :func:`pack_stats`).

    Raises:
        ValueError: bad arguments, nulls, per-token columns of another length than ``input_ids``, or a sample
            longer than ``seq_len`` with ``overflow="error"`` (the message names the row). Token values
            (negative ids, masks other than 0/1) are not read here: :func:`pack_from_plan` checks the tokens it
            copies.
        TypeError: a column of a type that cannot be read, or an unsupported ``samples`` object.

    """
    from longmagpie._arrow import as_arrow

    options = PackOptions(
        seq_len=seq_len,
        strategy=strategy,
        overflow=overflow,
        pad_to=pad_to,
        pad_id=pad_id,
        loss_weights=loss_weights,
        pad_documents_to=pad_documents_to,
    )
    table, stats = _core.pack_plan(as_arrow(samples), options)
    table = to_pyarrow(table)
    log.info("planned %d samples into %d rows of %d (%s)", stats["input_samples"], stats["rows"], seq_len, strategy)
    return attach(table, "pack_plan", options.params(), stats)


def pack_from_plan(samples: Any, plan: Any, num_threads: int | None = PackOptions.num_threads) -> pa.Table:
    """Make the packed rows of ``plan`` (from :func:`pack_plan`) out of the ``samples`` it was made for.

    The rows, their metadata and statistics equal what :func:`pack` with the plan's options writes for the same
    samples, byte for byte. A plan whose rows were edited (reordered, some left out) is made as it stands: the
    row statistics are counted on the rows made, the overflow counts stay the plan's.

    Args:
        samples: the samples :func:`pack_plan` saw (any form :func:`pack` takes). The plan is checked against
            them: the number of samples and of tokens, and every entry's slice.
        plan: a plan table with its schema metadata (also read back from Parquet).
        num_threads: threads that copy tokens; the output is the same for any value.

    Returns:
        The packed rows, as :func:`pack` returns them.

    Raises:
        ValueError: a table that is not a plan, samples the plan was not made for, an entry outside its sample,
            or bad token values (the message names the plan row or the input row, and the fix).

    """
    from longmagpie._arrow import as_arrow

    plan_table = plan if isinstance(plan, pa.Table) else pa.table(plan)
    meta = pack_metadata(plan_table)
    if meta.get("op") != "pack_plan":
        raise ValueError(
            f"this table was produced by longmagpie.{meta.get('op')}, not longmagpie.pack_plan: pass a plan"
        )
    options = PackOptions(**meta["params"], num_threads=num_threads)
    recorded = meta["stats"]
    expected = (recorded["input_samples"], recorded["input_tokens"])
    table, stats = _core.pack_from_plan(as_arrow(samples), plan_table, options, expected)
    merged = {**recorded, **{key: stats[key] for key in ROW_STATS}}
    return attach(to_pyarrow(table), "pack", options.params(), merged)
