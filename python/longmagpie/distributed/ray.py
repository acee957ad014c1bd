"""``pack`` and ``pack_pmix`` as Ray Data transforms, and a writer for their output (extra ``ray``).

Ray is imported when a function here is called, never by ``import longmagpie``.

Two kinds of input:

- **Parquet paths** (files or directories; the deterministic route). The driver reads the
  footers, numbers rows over the sorted files and cuts *windows* of about ``window_bytes`` at
  row-group ends (:mod:`longmagpie.distributed.windows`). The Ray dataset holds one item per window;
  ``map_batches(batch_size=1, batch_format="pyarrow")`` runs one task per window that reads its
  row groups with pyarrow and hands the Arrow buffers to the Rust core without copying. Windows,
  seeds and the order of output rows depend on the files and arguments only, not on Ray's block
  sizes, the number of workers or the order tasks finish, so reruns give the same rows.
- **A** ``ray.data.Dataset`` (e.g. ``ray.data.read_parquet(...)``): each block is one window
  (``map_batches(batch_size=None)``). Ray cuts blocks by read parallelism and
  ``DataContext.target_max_block_size``, which vary with the cluster, so the output is
  deterministic only when the blocks are (same files, same ``override_num_blocks``, same context,
  or a ``repartition(n)`` first). p-mix needs two aligned pools, so it takes paths only.

Writing: :func:`write_packed` streams any of these datasets through the driver into
:func:`longmagpie.export_parquet`; :func:`ray_pack_to_parquet` / :func:`ray_pack_pmix_to_parquet`
pack and write in the same task, each window's rows going straight from its worker to its own
shards, so nothing passes through the driver (the route for large inputs).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from longmagpie import _core
from longmagpie.distributed.windows import DEFAULT_WINDOW_BYTES, ParquetSource, paired_range, window_seed
from longmagpie.export.parquet import ShardLimits
from longmagpie.io import storage
from longmagpie.options import INPUT_COLUMNS, PackOptions, PmixOptions, require_ints, resolve
from longmagpie.packing.pack import to_pyarrow

if TYPE_CHECKING:
    import ray.data

    from longmagpie.export import ExportResult

Paths = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


def _ray_data() -> Any:
    try:
        import ray.data
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("longmagpie.distributed.ray needs Ray Data: pip install 'longmagpie[ray]'") from e
    return ray.data


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[None]:
    """Run the block on Ray: the cluster at ``address``, or a local one of ``num_cpus`` CPUs (``None``: all).

    A Ray already initialised in this process is used as it is and left running; one started here is shut down
    when the block ends (also on error). The one start-up of ``longmagpie pack/pmix --engine ray`` and of the
    Ray stages of ``longmagpie run``.

    Raises:
        ImportError: Ray Data is not installed (the message names the extra).

    """
    _ray_data()
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(address=address, num_cpus=None if address else num_cpus, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        if started:
            ray.shutdown()


def _window_dataset(items: list[dict[str, Any]]) -> ray.data.Dataset:
    """One Ray block per window descriptor, in window order (``preserve_order`` keeps that order downstream)."""
    rd = _ray_data()
    ctx = rd.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    return rd.from_items(items, override_num_blocks=max(len(items), 1))


@dataclass(frozen=True)
class WindowPlan:
    """Windows planned on the driver, the map function that packs one, and what the output looks like."""

    items: list[dict[str, Any]]
    mapper: Any
    schema: pa.Schema
    meta: dict[str, Any]

    def dataset(self) -> ray.data.Dataset:
        """One task per window, rows in window order."""
        return _window_dataset(self.items).map_batches(
            self.mapper, batch_size=1, batch_format="pyarrow", zero_copy_batch=True
        )


def _pack_table(table: pa.Table, options: PackOptions, row_offset: int) -> pa.Table:
    packed, _ = _core.pack(table, options, row_offset)
    return to_pyarrow(packed)


class _PackWindow:
    """Map function: read one window of rows and pack it (a plain callable, so Ray ships it by value)."""

    def __init__(self, source: ParquetSource, options: PackOptions) -> None:
        self.source = source
        self.options = options

    def __call__(self, batch: pa.Table) -> pa.Table:
        out = []
        for start, stop in zip(batch.column("start").to_pylist(), batch.column("stop").to_pylist(), strict=True):
            table = self.source.read(start, stop)
            try:
                out.append(_pack_table(table, self.options, start))
            except ValueError as e:
                raise self.source.name_row(e, "input") from None
        return pa.concat_tables(out) if len(out) > 1 else out[0]


class _PackBlock:
    """Map function over an existing Ray dataset: one block is one window."""

    def __init__(self, options: PackOptions) -> None:
        self.options = options

    def __call__(self, block: pa.Table) -> pa.Table:
        columns = [c for c in INPUT_COLUMNS if c in block.schema.names]
        if "input_ids" not in columns:
            raise ValueError(
                f"a block has no 'input_ids' column (columns: {', '.join(block.schema.names)}); "
                "tokenize the samples first or rename the token column to input_ids"
            )
        try:
            return _pack_table(block.select(columns), self.options, 0)
        except ValueError as e:
            raise ValueError(f"in a block of {block.num_rows} rows (rows numbered within the block): {e}") from None


def _window_bytes(window_bytes: int) -> int:
    require_ints(window_bytes=window_bytes)
    if window_bytes < 1:
        raise ValueError(f"window_bytes must be >= 1 (got {window_bytes})")
    return window_bytes


def ray_pack(
    source: Paths | ray.data.Dataset,
    options: PackOptions | None = None,
    *,
    window_bytes: int = DEFAULT_WINDOW_BYTES,
    **overrides: Any,
) -> ray.data.Dataset:
    """Pack tokenized samples on Ray Data, one :func:`longmagpie.pack` per window.

    Args:
        source: Parquet files or directories (deterministic windows keyed by file and row ranges,
            see the module docstring), or a ``ray.data.Dataset`` (one window per block).
        options: the packing options, as for :func:`longmagpie.pack` (default ``PackOptions(num_threads=1)``:
            one copy thread per task, since Ray runs one task per CPU). With ``overflow="error"`` the
            message names the file and the row within it.
        window_bytes: uncompressed bytes per window (paths only): a task's memory grows with it,
            fill improves with it (rows never span windows).
        **overrides: :class:`~longmagpie.options.PackOptions` fields by name (``seq_len=4096``, ...),
            applied over ``options``.

    Returns:
        A lazy ``ray.data.Dataset`` of packed rows with :func:`longmagpie.pack`'s columns, windows
        in input order. Write it with :func:`write_packed`, or consume it with ``iter_batches``.

    Raises:
        FileNotFoundError: a path does not exist or holds no Parquet file.
        ValueError: bad arguments, or a file without ``input_ids`` (raised here, before any task);
            bad rows raise when the dataset executes, naming the file and row.

    """
    opts = resolve(PackOptions, options, overrides, num_threads=1)
    _window_bytes(window_bytes)
    rd = _ray_data()
    if isinstance(source, rd.Dataset):
        _core.pack(pa.table({"input_ids": pa.array([], pa.list_(pa.int32()))}), opts)  # check the arguments now
        return source.map_batches(_PackBlock(opts), batch_size=None, batch_format="pyarrow", zero_copy_batch=True)
    return _pack_plan(source, opts, window_bytes).dataset()


def _pack_plan(source: Paths, options: PackOptions, window_bytes: int) -> WindowPlan:
    src = ParquetSource.open(source)
    empty, _ = _core.pack(src.read(0, 0), options)  # validates arguments and columns before any task runs
    items = [{"window": i, "start": a, "stop": b} for i, (a, b) in enumerate(src.windows(window_bytes))]
    params = dict(options.params(), window_bytes=window_bytes, engine="ray", windows=len(items))
    return WindowPlan(items, _PackWindow(src, options), to_pyarrow(empty).schema, {"op": "pack", "params": params})


class _PmixWindow:
    """Map function: read one long window and its paired short rows, and p-mix them with the window's seed."""

    def __init__(self, long: ParquetSource, short: ParquetSource, options: PmixOptions) -> None:
        self.long = long
        self.short = short
        self.options = options

    def __call__(self, batch: pa.Table) -> pa.Table:
        out = []
        rows = zip(
            *(batch.column(c).to_pylist() for c in ("window", "start", "stop", "short_start", "short_stop")),
            strict=True,
        )
        for index, start, stop, s_start, s_stop in rows:
            long_t = self.long.read(start, stop)
            short_t = self.short.read(s_start, s_stop)
            options = dataclasses.replace(self.options, seed=window_seed(self.options.seed, index))
            try:
                core = _core.pack_pmix_stream(long_t, short_t, options)
                batches = []
                while (chunk := core.next_batch()) is not None:
                    batches.extend(pa.RecordBatchReader.from_stream(chunk))
                out.append(pa.Table.from_batches(batches, schema=to_pyarrow(core.empty()).schema))
            except ValueError as e:
                pool, offset = (self.short, s_start) if "short" in str(e) else (self.long, start)
                what = "short" if pool is self.short else "long"
                raise pool.name_row(e, f"{what} input (window {index})", offset) from None
        return pa.concat_tables(out) if len(out) > 1 else out[0]


def ray_pack_pmix(
    long: Paths,
    short: Paths,
    options: PmixOptions | None = None,
    *,
    window_bytes: int = DEFAULT_WINDOW_BYTES,
    **overrides: Any,
) -> ray.data.Dataset:
    """p-mix on Ray Data: one :func:`longmagpie.pack_pmix` per window of long samples.

    Windows are cut over the long files (about ``window_bytes`` each, at row-group ends). Window
    ``i`` covering long rows ``[a, b)`` of ``L`` is paired with short rows ``[a*S//L, b*S//L)`` of
    ``S``: the short pool is split in the same proportions, so every short sample is offered to
    exactly one window and every window mixes the pools in their global ratio. Window ``i`` is
    p-mixed with seed ``window_seed(seed, i)`` (BLAKE2b of the global seed and ``i``), so the
    output depends on the files and arguments only.

    Args:
        long: long-context samples: Parquet files or directories.
        short: short samples: Parquet files or directories.
        options: the p-mix options, as for :func:`longmagpie.pack_pmix` (default
            ``PmixOptions(num_threads=1)``), but: ``seed`` is the global seed, each window getting its own
            seed derived from it and the window index; ``overflow="error"`` names the file and row;
            ``exhausted`` applies within each window (``"recycle"`` reuses the window's pools, ending
            when its long samples were all used); ``max_rows`` is not available (windows mix whole).
        window_bytes: uncompressed bytes of long samples per window.
        **overrides: :class:`~longmagpie.options.PmixOptions` fields by name, applied over ``options``.

    Returns:
        A lazy ``ray.data.Dataset`` of rows with :func:`longmagpie.pack_pmix`'s columns, in window order.

    Raises:
        FileNotFoundError: a path does not exist or holds no Parquet file.
        ValueError: bad arguments, or a file without ``input_ids``; bad rows raise when the
            dataset executes, naming the pool, file and row.

    """
    return _pmix_plan(long, short, resolve(PmixOptions, options, overrides, num_threads=1), window_bytes).dataset()


def _pmix_plan(long: Paths, short: Paths, options: PmixOptions, window_bytes: int) -> WindowPlan:
    if options.max_rows is not None:
        raise ValueError("max_rows is not available on Ray (each window mixes its samples whole); leave it None")
    _window_bytes(window_bytes)
    long_src = ParquetSource.open(long, "long")
    short_src = ParquetSource.open(short, "short")
    # validates the arguments and both schemas (one short row: an empty pool is an error of its own)
    probe = short_src.read(0, min(1, short_src.num_rows))
    try:
        schema = to_pyarrow(_core.pack_pmix_stream(long_src.read(0, 0), probe, options).empty()).schema
    except ValueError as e:
        raise short_src.name_row(e, "short input") from None
    items = []
    for i, (a, b) in enumerate(long_src.windows(window_bytes)):
        sa, sb = paired_range((a, b), long_src.num_rows, short_src.num_rows)
        items.append({"window": i, "start": a, "stop": b, "short_start": sa, "short_stop": sb})
    meta = dict(options.params(), window_bytes=window_bytes, engine="ray", windows=len(items))
    return WindowPlan(items, _PmixWindow(long_src, short_src, options), schema, {"op": "pack_pmix", "params": meta})


def write_packed(
    dataset: ray.data.Dataset,
    out_dir: str | os.PathLike[str],
    *,
    seq_len: int | None = None,
    split: str = "train",
    overwrite: bool = False,
    **export_kwargs: Any,
) -> ExportResult:
    """Write the output of :func:`ray_pack` / :func:`ray_pack_pmix` with :func:`longmagpie.export_parquet`'s layout.

    The rows stream to the driver in window order (``iter_batches``, one block at a time) and into
    :func:`longmagpie.export_parquet`: ``data/<split>-00000-of-000NN.parquet`` + ``README.md``, built
    in a temporary directory and renamed into place, so ``datasets.load_dataset(out_dir)`` reads
    it and reruns write the same bytes. The driver's memory holds one row group.

    Args:
        dataset: packed rows from :func:`ray_pack` or :func:`ray_pack_pmix`.
        out_dir: output directory (absent or empty unless ``overwrite``).
        seq_len: the most tokens a row may hold (``pad_to`` if rows were padded); rows are checked against it.
        split: split name.
        overwrite: replace a non-empty ``out_dir``.
        **export_kwargs: shard and row-group limits, as for :func:`longmagpie.export_parquet`.

    Returns:
        The :class:`longmagpie.ExportResult`.

    """
    from longmagpie.export import export_parquet

    rd = _ray_data()
    rd.DataContext.get_current().execution_options.preserve_order = True

    def batches() -> Any:
        for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
            yield from batch.replace_schema_metadata(None).to_batches()

    return export_parquet(batches(), out_dir, split=split, seq_len=seq_len, overwrite=overwrite, **export_kwargs)


class _WriteWindow:
    """Map function: pack one window and write its rows as numbered parts under ``folder/w<window>``."""

    def __init__(self, mapper: Any, folder: str, seq_len: int | None, limits: tuple[Any, ...]) -> None:
        self.mapper = mapper
        self.folder = folder
        self.seq_len = seq_len
        self.limits = limits

    def __call__(self, batch: pa.Table) -> pa.Table:
        from longmagpie.export.parquet import ShardWriter
        from longmagpie.export.rows import PackedRows

        (index,) = batch.column("window").to_pylist()
        rows = PackedRows(self.mapper(batch), self.seq_len)  # checks every row, counts the totals
        folder = Path(self.folder) / f"w{index:07d}"
        shutil.rmtree(folder, ignore_errors=True)  # a retried task starts over
        folder.mkdir(parents=True)
        writer = ShardWriter(folder, rows.schema, *self.limits)
        try:
            for b in rows:
                writer.add(b)
            parts = writer.finish() if rows.totals.rows else []
        except BaseException:
            writer.abort()
            raise
        t = rows.totals.as_dict()
        return pa.table({"window": [index], "parts": [[str(p) for p in parts]], **{k: [v] for k, v in t.items()}})


def _write_plan(
    plan: WindowPlan, out_dir: str | os.PathLike[str], split: str, overwrite: bool, shard_limits: ShardLimits | None
) -> ExportResult:
    from longmagpie.export import ExportResult
    from longmagpie.export.card import check_split, export_params, render_card
    from longmagpie.export.staging import staged_directory

    check_split(split)
    seq_len = plan.meta["params"].get("pad_to") or plan.meta["params"]["seq_len"]
    limits = (shard_limits or ShardLimits()).as_tuple()
    with staged_directory(storage.require_local(out_dir, "the Ray engine's Parquet output"), overwrite) as tmp:
        windows = tmp / "windows"
        writer = _WriteWindow(plan.mapper, str(windows), seq_len, limits)
        done = _window_dataset(plan.items).map_batches(writer, batch_size=1, batch_format="pyarrow").take_all()
        done.sort(key=lambda r: r["window"])
        parts = [Path(p) for r in done for p in r["parts"]]
        (tmp / "data").mkdir()
        if not parts:  # no rows at all: one empty shard, as export_parquet writes
            import pyarrow.parquet as pq

            parts = [windows / "empty.parquet"]
            windows.mkdir(exist_ok=True)
            pq.write_table(plan.schema.empty_table(), parts[0], compression="zstd")
        names = [f"data/{split}-{k:05d}-of-{len(parts):05d}.parquet" for k in range(len(parts))]
        for part, name in zip(parts, names, strict=True):
            os.replace(part, tmp / name)
        shutil.rmtree(windows, ignore_errors=True)
        totals = {k: sum(r[k] for r in done) for k in ("rows", "tokens", "documents", "trained_tokens")}
        totals["max_row_tokens"] = max((r["max_row_tokens"] for r in done), default=0)
        mins = [r["min_row_tokens"] for r in done if r["rows"]]
        totals["min_row_tokens"] = min(mins, default=0)
        totals["max_documents_per_row"] = max((r["max_documents_per_row"] for r in done), default=0)
        params = export_params(split, seq_len, limits, shards_per="window")
        card = render_card(split, f"data/{split}-*", names, plan.schema, totals, plan.meta, params)
        (tmp / "README.md").write_text(card, encoding="utf-8")
    out = Path(out_dir)
    return ExportResult(
        out, tuple(names), totals["rows"], totals["tokens"], totals["documents"], totals["trained_tokens"], plan.meta
    )


def ray_pack_to_parquet(
    source: Paths,
    out_dir: str | os.PathLike[str],
    options: PackOptions | None = None,
    *,
    window_bytes: int = DEFAULT_WINDOW_BYTES,
    split: str = "train",
    overwrite: bool = False,
    limits: ShardLimits | None = None,
    **overrides: Any,
) -> ExportResult:
    """:func:`ray_pack` over Parquet paths, each task writing its window's shards (no row passes the driver).

    The layout is :func:`longmagpie.export_parquet`'s (``data/<split>-0000k-of-0000N.parquet`` +
    ``README.md``; ``datasets.load_dataset(out_dir)`` reads it), with shards cut per window: a
    window's rows are split by ``limits`` (:class:`~longmagpie.export.ShardLimits`: ``rows_per_shard``,
    ``shard_bytes``, row groups, compression) and never share a shard with another window's. Tasks write
    into a staging directory next to ``out_dir`` (it must be on a file system every worker sees); the
    driver then numbers the parts in window order, writes the card and renames the directory into place,
    so a failure leaves no partial dataset and a rerun writes the same bytes. ``options``,
    ``window_bytes`` and ``overrides`` as for :func:`ray_pack`; ``split`` and ``overwrite`` as for
    :func:`longmagpie.export_parquet`.

    Returns:
        The :class:`longmagpie.ExportResult` (totals summed over the windows).

    """
    opts = resolve(PackOptions, options, overrides, num_threads=1)
    _window_bytes(window_bytes)
    _ray_data()
    return _write_plan(_pack_plan(source, opts, window_bytes), out_dir, split, overwrite, limits)


def ray_pack_pmix_to_parquet(
    long: Paths,
    short: Paths,
    out_dir: str | os.PathLike[str],
    options: PmixOptions | None = None,
    *,
    window_bytes: int = DEFAULT_WINDOW_BYTES,
    split: str = "train",
    overwrite: bool = False,
    limits: ShardLimits | None = None,
    **overrides: Any,
) -> ExportResult:
    """:func:`ray_pack_pmix`, each task writing its window's shards (as :func:`ray_pack_to_parquet`).

    Returns:
        The :class:`longmagpie.ExportResult`.

    """
    opts = resolve(PmixOptions, options, overrides, num_threads=1)
    _ray_data()
    return _write_plan(_pmix_plan(long, short, opts, window_bytes), out_dir, split, overwrite, limits)
