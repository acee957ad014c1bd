"""The quality stage: decontamination, language, near-duplicates and balance over harvest rows, in that order.

Each step removes rows for a named reason and counts them; the removed rows are returned (and written) with their
reason, so nothing disappears silently. The order is chosen so that a removed row never decides for another: a
contaminated or off-language row is gone before near-duplicate clusters form (it cannot be the row a cluster keeps),
and the balance cap is applied last, to the rows that would otherwise be kept.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from longmagpie._metadata import attach
from longmagpie.quality.decontaminate import DEFAULT_MIN_WORDS, DEFAULT_NGRAM, EvalIndex
from longmagpie.quality.dedup import NearDuplicates, default_shingle, default_threshold

#: Column added to every output row: its index in the input (``dup_of`` points at these).
INPUT_ROW = "input_row"


@dataclass(frozen=True, kw_only=True)
class QualityConfig:
    """Options of :func:`quality` (and of ``longmagpie quality`` and ``[quality]``).

    Attributes:
        column: the text column near-duplicates are found in (``query``; ``context`` to harvest a document crawled
            twice once).
        dedup: remove near-duplicates.
        shingle: words per shingle (``None``: 2 for questions, 5 for ``context``; see
            :func:`~longmagpie.quality.dedup.default_shingle`).
        threshold: Jaccard at or above which a row duplicates an earlier one, in (0, 1] (``None``: 0.6 for
            questions, 0.8 for ``context``).
        num_perm: MinHash values per text (the LSH bands and rows are chosen from it and the threshold).
        decontaminate: evaluation files (``.txt``/``.jsonl``/``.json``/``.parquet``); rows that share a word
            ``ngram``-gram with any are removed, counted per file.
        ngram: words per decontamination gram.
        min_eval_words: evaluation texts of fewer words are not indexed (answer choices, numbers); those between
            this and ``ngram`` words are matched whole.
        decontaminate_columns: the columns checked against the evaluation files.
        detect_language: detect the language of ``language_columns`` (extra ``quality``: lingua, offline).
        languages: keep only rows whose every language column is one of these ISO 639-1 codes (``None``: keep
            all, record only).
        language_columns: the columns whose language is detected.
        max_share: cap every ``balance_by`` class at this share of the kept rows, in (0, 1] (``None``: no cap,
            record the distribution only).
        balance_by: ``query_form`` or ``context_bucket``.
        seed: seed of the MinHash permutations and of the balance downsampling.
        num_threads: hashing threads (the output does not depend on it).
        batch_rows: rows per batch fed to the near-duplicate filter (the output does not depend on it).

    """

    column: str = "query"
    dedup: bool = True
    shingle: int | None = None
    threshold: float | None = None
    num_perm: int = 128
    decontaminate: tuple[str, ...] = ()
    ngram: int = DEFAULT_NGRAM
    min_eval_words: int = DEFAULT_MIN_WORDS
    decontaminate_columns: tuple[str, ...] = ("query", "context")
    detect_language: bool = True
    languages: tuple[str, ...] | None = None
    language_columns: tuple[str, ...] = ("query", "answer")
    max_share: float | None = None
    balance_by: str = "query_form"
    seed: int = 0
    num_threads: int | None = None
    batch_rows: int = 8192

    def __post_init__(self) -> None:
        """Check the values (messages name the option); sequences become tuples."""
        for name in ("decontaminate", "decontaminate_columns", "language_columns"):
            value = getattr(self, name)
            object.__setattr__(self, name, (value,) if isinstance(value, (str, os.PathLike)) else tuple(value))
        object.__setattr__(self, "decontaminate", tuple(str(f) for f in self.decontaminate))
        if self.languages is not None:
            langs = (self.languages,) if isinstance(self.languages, str) else tuple(self.languages)
            object.__setattr__(self, "languages", langs)
        threshold = self.threshold
        if threshold is not None and (isinstance(threshold, bool) or not 0 < threshold <= 1):
            raise ValueError(f"threshold must be in (0, 1] (got {threshold!r})")
        if self.max_share is not None and (isinstance(self.max_share, bool) or not 0 < self.max_share <= 1):
            raise ValueError(f"max_share must be in (0, 1] (got {self.max_share!r})")
        if self.balance_by not in ("query_form", "context_bucket"):
            raise ValueError(f"balance_by must be 'query_form' or 'context_bucket' (got {self.balance_by!r})")
        for name in ("num_perm", "ngram", "min_eval_words", "batch_rows"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int (got {value!r})")
        if self.shingle is not None and (isinstance(self.shingle, bool) or self.shingle < 1):
            raise ValueError(f"shingle must be a positive int (got {self.shingle!r})")

    @property
    def dedup_shingle(self) -> int:
        """Words per shingle in effect."""
        return self.shingle if self.shingle is not None else default_shingle(self.column)

    @property
    def dedup_threshold(self) -> float:
        """Jaccard threshold in effect."""
        return self.threshold if self.threshold is not None else default_threshold(self.column)

    def required_columns(self) -> list[str]:
        """Return the input columns the enabled steps read."""
        cols: list[str] = []
        if self.decontaminate:
            cols += self.decontaminate_columns
        if self.detect_language:
            cols += self.language_columns
        if self.dedup:
            cols.append(self.column)
        cols += ["query"] if self.balance_by == "query_form" else ["context"]
        return list(dict.fromkeys(cols))


@dataclass
class QualityResult:
    """What :func:`quality` kept, removed and counted.

    Attributes:
        kept: the kept rows, input order, with ``input_row`` and the annotation columns (``<col>_lang``,
            ``query_form``, ``context_bucket``); the report is in its schema metadata (op ``quality``).
        removed: the removed rows with ``input_row``, ``reason`` (``decontaminated:<file>``, ``language:<col>``,
            ``near_duplicate``, ``balance:<class>``), ``dup_of`` and ``similarity`` (near-duplicates: the kept row's
            ``input_row`` and the exact Jaccard) and ``eval_file``; ordered by step (:data:`STEPS`), then by input
            row.
        report: counts per step and reason, distributions before and after.

    """

    kept: pa.Table
    removed: pa.Table
    report: dict[str, Any] = field(default_factory=dict)


def _check_columns(table: pa.Table, columns: list[str], where: str) -> None:
    for c in columns:
        if c not in table.column_names:
            raise ValueError(
                f"{where} has no column {c!r} (columns: {', '.join(table.column_names)}); "
                "give the right column name (--column / decontaminate_columns / language_columns)"
            )
        t = table.schema.field(c).type
        if not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)):
            raise ValueError(f"{where}: column {c!r} must hold strings, got {t}")


def _with_step_columns(table: pa.Table) -> pa.Table:
    """Return removed rows that already carry ``reason`` with the other removed-row columns (null)."""
    n = table.num_rows
    for name, typ in (("dup_of", pa.int64()), ("similarity", pa.float32()), ("eval_file", pa.string())):
        table = table.append_column(name, pa.nulls(n, typ))
    return table


def _removed(table: pa.Table, rows: np.ndarray, reasons: list[str], **extra: pa.Array) -> pa.Table:
    """Return the rows ``rows`` of ``table`` with their reason (and any extra columns)."""
    out = table.take(pa.array(rows, pa.int64()))
    n = len(rows)
    out = out.append_column("reason", pa.array(reasons, pa.string()))
    for name, typ in (("dup_of", pa.int64()), ("similarity", pa.float32()), ("eval_file", pa.string())):
        out = out.append_column(name, extra.get(name, pa.nulls(n, typ)))
    return out


class _Steps:
    """The per-row steps (decontamination, language, near-duplicates) over batches in input order.

    Each batch is filtered as it comes, so memory holds one batch, the evaluation index and the near-duplicate
    index; the counts of every batch add up in :attr:`report`.
    """

    def __init__(self, cfg: QualityConfig) -> None:
        self.cfg = cfg
        self.index = (
            EvalIndex(cfg.decontaminate, ngram=cfg.ngram, min_words=cfg.min_eval_words, num_threads=cfg.num_threads)
            if cfg.decontaminate
            else None
        )
        self.dedup = (
            NearDuplicates(
                shingle=cfg.dedup_shingle,
                threshold=cfg.dedup_threshold,
                num_perm=cfg.num_perm,
                seed=cfg.seed,
                num_threads=cfg.num_threads,
            )
            if cfg.dedup
            else None
        )
        self.rows = 0
        # the input_row of every row fed to the near-duplicate filter, in order (its dup_of are positions here)
        self.fed = np.zeros(1024, np.int64)
        self.n_fed = 0
        self.reasons: Counter[str] = Counter()
        self.report: dict[str, Any] = {}
        self.clusters: set[int] = set()
        self.empty = 0

    def feed(self, batch: pa.Table) -> tuple[pa.Table, list[pa.Table]]:
        """Filter one batch: return its kept rows (with ``input_row``, ``<col>_lang``) and its removed rows."""
        cfg = self.cfg
        if self.rows == 0:
            _check_columns(batch, cfg.required_columns(), "the input")
        n = batch.num_rows
        table = batch.append_column(INPUT_ROW, pa.array(np.arange(self.rows, self.rows + n, dtype=np.int64)))
        self.rows += n
        removed: list[pa.Table] = []
        if self.index is not None:
            found = np.array(self.index.match_table(table, cfg.decontaminate_columns), dtype=np.int64)
            bad = np.flatnonzero(found >= 0)
            files = [self.index.files[i] for i in found[bad]]
            labels = [f"decontaminated:{Path(f).name}" for f in files]
            removed.append(_removed(table, bad, labels, eval_file=pa.array(files, pa.string())))
            self.reasons.update(labels)
            per_file = self.report.setdefault("decontamination", self._decontamination_report())["files"]
            for i, entry in enumerate(per_file):
                entry["rows_removed"] += int((found[bad] == i).sum())
            table = table.filter(pa.array(found < 0))
        if cfg.detect_language:
            from longmagpie.quality.language import split_by_language

            table, dropped, lang = split_by_language(table, columns=cfg.language_columns, keep=cfg.languages)
            self.report["language"] = _add_counts(self.report.get("language"), lang)
            if dropped.num_rows:
                removed.append(_with_step_columns(dropped))
                self.reasons.update(dropped.column("reason").to_pylist())
        if self.dedup is not None:
            d = self.dedup.add(table.column(cfg.column), cfg.column)
            dup = d.dup_of.to_numpy(zero_copy_only=False)
            sim = d.similarity.to_numpy(zero_copy_only=False)
            self.empty += d.empty
            self._record_fed(table.column(INPUT_ROW).to_numpy())
            fed_rows = self.fed[: self.n_fed]
            drop = np.flatnonzero(dup >= 0)
            labels = ["near_duplicate"] * len(drop)
            dup_of = fed_rows[dup[drop]] if len(drop) else np.zeros(0, np.int64)
            removed.append(
                _removed(
                    table,
                    drop,
                    labels,
                    dup_of=pa.array(dup_of, pa.int64()),
                    similarity=pa.array(sim[drop], pa.float32()),
                )
            )
            self.reasons.update(labels)
            self.clusters.update(dup_of.tolist())
            table = table.filter(pa.array(dup < 0))
        return table, [r for r in removed if r.num_rows]

    def _record_fed(self, rows: np.ndarray) -> None:
        """Append ``rows`` to the fed rows (the buffer doubles when full: amortised constant time per row)."""
        need = self.n_fed + len(rows)
        if need > len(self.fed):
            grown = np.zeros(max(need, 2 * len(self.fed)), np.int64)
            grown[: self.n_fed] = self.fed[: self.n_fed]
            self.fed = grown
        self.fed[self.n_fed : need] = rows
        self.n_fed = need

    def _decontamination_report(self) -> dict[str, Any]:
        assert self.index is not None
        return {
            "ngram": self.cfg.ngram,
            "min_words": self.index.min_words,
            "columns": list(self.cfg.decontaminate_columns),
            "files": [
                {"file": f, "texts": t, "too_short": k, "rows_removed": 0}
                for f, t, k in zip(self.index.files, self.index.texts, self.index.skipped, strict=True)
            ],
            "ngrams_indexed": len(self.index),
        }

    def finish(self) -> dict[str, Any]:
        """Return the report of the per-row steps (after the last batch)."""
        report: dict[str, Any] = {"input_rows": self.rows}
        if self.index is not None:
            report["decontamination"] = self.report.get("decontamination") or self._decontamination_report()
        if "language" in self.report:
            report["language"] = self.report["language"]
        if self.dedup is not None:
            d = self.dedup
            report["near_dedup"] = {
                "column": self.cfg.column,
                "shingle": self.cfg.dedup_shingle,
                "threshold": self.cfg.dedup_threshold,
                "num_perm": self.cfg.num_perm,
                "bands": d.bands,
                "rows_per_band": d.rows,
                "recall_at_threshold": round(d.recall_at(self.cfg.dedup_threshold), 4),
                "removed": self.reasons.get("near_duplicate", 0),
                "clusters": len(self.clusters),
                "texts_without_words": self.empty,
                "index_bytes": d.memory_bytes,
            }
        return report


def _add_counts(total: Any, part: Any) -> Any:
    """Add two reports of the same shape: numbers are summed, dicts merged key by key, anything else kept."""
    if total is None:
        return part
    if isinstance(total, dict) and isinstance(part, dict):
        return {k: _add_counts(total.get(k), part.get(k)) if k in total else part[k] for k in {**total, **part}}
    if isinstance(total, (int, float)) and not isinstance(total, bool) and isinstance(part, (int, float)):
        return total + part
    return total


#: The steps in order; removed rows are ordered by step, then by input row (so batching never changes the order).
STEPS = ("decontaminated", "language", "near_duplicate", "balance")


def _step_of(part: pa.Table) -> int:
    """Return the step that removed the rows of ``part`` (one step per part), by its reason's prefix."""
    return STEPS.index(str(part.column("reason")[0]).split(":", 1)[0])


def _balance_columns(table: pa.Table) -> pa.Table:
    """Return the columns balance reads: ``doc_id`` (if any), ``query``, the context length, ``input_row``."""
    cols = {c: table.column(c) for c in ("doc_id", "query", "steer") if c in table.column_names}
    cols["context_chars"] = pc.utf8_length(table.column("context")).cast(pa.int64())
    cols[INPUT_ROW] = table.column(INPUT_ROW)
    return pa.table(cols)


def _balance(slim: pa.Table, cfg: QualityConfig) -> tuple[pa.Table, dict[str, Any]]:
    from longmagpie.quality.balance import balance

    return balance(slim, max_share=cfg.max_share, by=cfg.balance_by, seed=cfg.seed, length_column="context_chars")


def _params(cfg: QualityConfig) -> dict[str, Any]:
    params = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items()}
    del params["num_threads"], params["batch_rows"]
    return params


def _finish_report(report: dict[str, Any], reasons: Counter[str], kept_rows: int, balance_report: Any) -> None:
    report["balance"] = balance_report
    report["output_rows"] = kept_rows
    report["removed"] = dict(sorted(reasons.items()))


def _annotate(kept: pa.Table, classes: pa.Table) -> pa.Table:
    """Append ``query_form`` and ``context_bucket`` (from the balanced slim table, same rows) to ``kept``."""
    for name in ("query_form", "context_bucket"):
        kept = kept.append_column(name, classes.column(name))
    return kept


def quality(rows: Any, config: QualityConfig | None = None) -> QualityResult:
    """Filter harvest rows: decontaminate, detect languages, remove near-duplicates, cap classes (in that order).

    The rows are taken ``batch_rows`` at a time through the per-row steps (the output does not depend on it);
    :func:`quality_files` does the same over files larger than memory.

    Args:
        rows: harvest rows (a ``pyarrow.Table`` or anything :func:`longmagpie.pack` accepts as a table) with the
            columns the enabled steps read (``query``, ``answer``, ``context`` by default).
        config: the options (default ``QualityConfig()``).

    Returns:
        A :class:`QualityResult`: the kept rows, the removed rows with their reasons, the report.

    Raises:
        ValueError: a missing or non-string column, an evaluation file that is empty or unreadable, a bad option;
            raised before any row is filtered.
        FileNotFoundError: an evaluation file that does not exist.

    """
    from longmagpie.assembly.assembler import _table

    cfg = config or QualityConfig()
    table = _table(rows)
    steps = _Steps(cfg)
    _check_columns(table, cfg.required_columns(), "the input")
    kept_parts: list[pa.Table] = []
    removed: list[pa.Table] = []
    for start in range(0, max(table.num_rows, 1), cfg.batch_rows):
        kept, dropped = steps.feed(table.slice(start, cfg.batch_rows))
        kept_parts.append(kept)
        removed += dropped
    kept = pa.concat_tables(kept_parts)
    report = steps.finish()
    classes, balance_report = _balance(_balance_columns(kept), cfg)
    if cfg.max_share is not None:
        keep = set(classes.column(INPUT_ROW).to_pylist())
        mask = np.array([r in keep for r in kept.column(INPUT_ROW).to_pylist()], dtype=bool)
        all_classes, _ = _balance(_balance_columns(kept), dataclasses.replace(cfg, max_share=None))
        drop = np.flatnonzero(~mask)
        labels = [f"balance:{c}" for c in all_classes.column(cfg.balance_by).take(pa.array(drop)).to_pylist()]
        removed.append(_removed(_annotate(kept, all_classes), drop, labels))
        steps.reasons.update(labels)
        kept = kept.filter(pa.array(mask))
    kept = _annotate(kept, classes)
    removed = sorted((r for r in removed if r.num_rows), key=_step_of)  # stable: within a step, input order
    _finish_report(report, steps.reasons, kept.num_rows, balance_report)
    return QualityResult(
        attach(kept, "quality", _params(cfg), _jsonable(report)), _concat_removed(removed, kept.schema), report
    )


#: Files of a quality output directory.
KEPT_FILE, REMOVED_FILE, REPORT_FILE = "kept.parquet", "removed.parquet", "report.json"


def _sources(inputs: list[str], batch_rows: int) -> tuple[Iterator[pa.Table], bool]:
    """Batches of harvest rows in input order, and whether the input is a harvest directory.

    A harvest directory is read shard by shard (its finished shards, in order), Parquet files and directories
    batch by batch, in sorted file order; a JSONL file is read whole (pyarrow has no streaming JSON reader).
    """
    import pyarrow.parquet as pq

    from longmagpie.generate.resume import MANIFEST
    from longmagpie.harvest.output import directory_schema
    from longmagpie.io.files import _parquet_files, is_jsonl, read_table

    if len(inputs) == 1 and (Path(inputs[0]) / MANIFEST).is_file():
        out = Path(inputs[0])
        keys = sorted(p.name[: -len(".done.json")] for p in out.glob("shard-*.done.json"))
        files, schema, directory = [out / f"{k}.parquet" for k in keys], directory_schema(out), True
    else:
        files, schema, directory = [], None, False
        for given in inputs:
            path = Path(given)
            if not path.exists():
                raise FileNotFoundError(f"input {path} does not exist")
            files += _parquet_files(path) if path.is_dir() else [path]

    def batches() -> Iterator[pa.Table]:
        seen = False
        for f in files:
            if is_jsonl(f):
                rows = read_table([str(f)])
                seen = seen or rows.num_rows > 0
                yield from (pa.Table.from_batches([b]) for b in rows.to_batches(batch_rows))
                continue
            reader = pq.ParquetFile(f)
            for batch in reader.iter_batches(batch_size=batch_rows):
                table = pa.Table.from_batches([batch])
                seen = True
                yield table.cast(schema) if schema is not None else table
        if not seen and (schema is not None or files):  # no row at all: one empty batch carries the schema
            yield (schema or pq.read_schema(files[0])).empty_table()

    return batches(), directory


def read_rows(inputs: list[str]) -> tuple[pa.Table, bool]:
    """Read harvest rows whole: one harvest output directory, or Parquet/JSONL files and directories.

    Returns the table and whether the input was a harvest directory (its output is then a directory too).
    """
    parts, directory = _sources(inputs, 1 << 20)
    tables = list(parts)
    return (pa.concat_tables(tables) if tables else pa.table({})), directory


class _Writer:
    """Record batches into one Parquet file, every batch cast to one schema (missing columns null)."""

    def __init__(self, path: Path, schema: pa.Schema) -> None:
        import pyarrow.parquet as pq

        self.schema = schema
        self.writer = pq.ParquetWriter(path, schema, compression="zstd")

    def add(self, table: pa.Table) -> None:
        if not table.num_rows:
            return
        cols = [
            table.column(f.name).cast(f.type) if f.name in table.column_names else pa.nulls(table.num_rows, f.type)
            for f in self.schema
        ]
        self.writer.write_table(pa.Table.from_arrays(cols, schema=self.schema.remove_metadata()))

    def close(self) -> None:
        self.writer.close()


def _removed_schema(kept: pa.Schema) -> pa.Schema:
    """Return the removed rows' schema: the kept rows' columns (annotations included), then why each went."""
    fields = [f for f in kept if f.name not in ("query_form", "context_bucket")]
    fields += [pa.field("query_form", pa.string()), pa.field("context_bucket", pa.string())]
    fields += [pa.field("reason", pa.string()), pa.field("dup_of", pa.int64())]
    return pa.schema([*fields, pa.field("similarity", pa.float32()), pa.field("eval_file", pa.string())])


def quality_files(
    inputs: list[str],
    output: str | os.PathLike[str],
    config: QualityConfig | None = None,
    *,
    removed: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    as_directory: bool | None = None,
) -> tuple[dict[str, Any], list[Path]]:
    """:func:`quality` over files larger than memory; returns the report and the files written.

    The input (a harvest output directory, or Parquet/JSONL files and directories) is read ``batch_rows`` at a
    time through the per-row steps, whose kept rows go to a temporary file next to the output; the balance cap
    then decides on the kept rows' classes alone (query, document id, context length: no text beyond the
    question), and a last pass writes the output. Memory holds a batch, the indexes and the classes. A harvest
    directory gives a directory (``kept.parquet``, ``removed.parquet``, ``report.json``) built aside and renamed
    into place; otherwise ``output`` is the kept rows' Parquet file and ``removed`` (if given) the removed rows',
    each renamed into place when complete (``as_directory`` forces either layout). The rows equal those of
    :func:`quality` then :func:`write_quality`.

    Raises:
        ValueError / FileNotFoundError: as :func:`quality`, before anything is written.
        FileExistsError: an output exists and ``overwrite`` is false.

    """
    import json
    import shutil
    import tempfile

    import pyarrow.parquet as pq

    from longmagpie.export.staging import check_target

    cfg = config or QualityConfig()
    steps = _Steps(cfg)  # reads and indexes the evaluation files: their errors come first
    batches, directory = _sources([str(i) for i in inputs], cfg.batch_rows)
    directory = directory if as_directory is None else as_directory
    out = Path(output)
    if directory:
        check_target(out, overwrite)
    else:
        for target in (out, *([Path(removed)] if removed is not None else [])):
            if target.exists() and not overwrite:
                raise FileExistsError(f"{target} exists; pass overwrite=True (--overwrite) to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        kept_writer: _Writer | None = None
        step_writers: list[_Writer] = []
        slim: list[pa.Table] = []
        for batch in batches:
            kept, dropped = steps.feed(batch)
            if kept_writer is None:
                kept_writer = _Writer(work / "stage1.parquet", kept.schema)
                schema = _removed_schema(kept.schema)
                step_writers = [_Writer(work / f"removed-{k}.parquet", schema) for k in range(len(STEPS))]
            kept_writer.add(kept)
            slim.append(_balance_columns(kept))
            for part in dropped:
                step_writers[_step_of(part)].add(part)
        if kept_writer is None:
            raise ValueError(f"{', '.join(map(str, inputs))}: no input file holds harvest rows")
        kept_writer.close()
        report = steps.finish()
        classes_in = pa.concat_tables(slim)
        all_classes, _ = _balance(classes_in, dataclasses.replace(cfg, max_share=None))
        capped, balance_report = _balance(classes_in, cfg)
        keep = set(capped.column(INPUT_ROW).to_pylist())
        mask_all = np.array([r in keep for r in all_classes.column(INPUT_ROW).to_pylist()], dtype=bool)
        dropped_classes = all_classes.column(cfg.balance_by).filter(pa.array(~mask_all)).to_pylist()
        steps.reasons.update(f"balance:{c}" for c in dropped_classes)
        _finish_report(report, steps.reasons, int(mask_all.sum()), balance_report)
        first = pq.ParquetFile(work / "stage1.parquet")
        final_schema = _annotate(first.schema_arrow.empty_table(), all_classes.slice(0, 0)).schema
        meta = {
            b"longmagpie": json.dumps(
                {"op": "quality", "version": _version(), "params": _params(cfg), "stats": _jsonable(report)},
                sort_keys=True,
            ).encode()
        }
        final = _Writer(work / KEPT_FILE, final_schema.with_metadata(meta))
        at = 0
        for batch in first.iter_batches(batch_size=cfg.batch_rows):
            t = _annotate(pa.Table.from_batches([batch]), all_classes.slice(at, batch.num_rows))
            m = pa.array(mask_all[at : at + batch.num_rows])
            at += batch.num_rows
            final.add(t.filter(m))
            gone = t.filter(pc.invert(m))
            if gone.num_rows:
                labels = [f"balance:{c}" for c in gone.column(cfg.balance_by).to_pylist()]
                step_writers[-1].add(gone.append_column("reason", pa.array(labels, pa.string())))
        final.close()
        removed_writer = _Writer(work / REMOVED_FILE, step_writers[0].schema)
        for k, w in enumerate(step_writers):  # one file, step after step, each in input order
            w.close()
            for b in pq.ParquetFile(work / f"removed-{k}.parquet").iter_batches(batch_size=cfg.batch_rows):
                removed_writer.add(pa.Table.from_batches([b]))
            (work / f"removed-{k}.parquet").unlink()
        removed_writer.close()
        (work / "stage1.parquet").unlink()
        text = json.dumps(_jsonable(report), indent=2, sort_keys=True) + "\n"
        if directory:
            (work / REPORT_FILE).write_text(text, encoding="utf-8")
            if out.exists():
                shutil.rmtree(out)
            os.replace(work, out)
            return report, [out / KEPT_FILE, out / REMOVED_FILE, out / REPORT_FILE]
        written = [out]
        os.replace(work / KEPT_FILE, out)
        if removed is not None:
            os.replace(work / REMOVED_FILE, removed)
            written.append(Path(removed))
        return report, written
    finally:
        shutil.rmtree(work, ignore_errors=True)


def write_quality(
    result: QualityResult,
    output: str | os.PathLike[str],
    *,
    directory: bool,
    removed: str | None = None,
    overwrite: bool = False,
) -> list[Path]:
    """Write a :class:`QualityResult` and return the files written.

    A directory (``kept.parquet``, ``removed.parquet``, ``report.json``) is built aside and renamed into place; a
    file of the kept rows (and of the ``removed`` rows if a path is given) is written atomically.
    """
    import json

    from longmagpie.export.staging import staged_directory
    from longmagpie.io.files import write_parquet_atomic, write_table_atomic

    if directory:
        out = Path(output)
        with staged_directory(out, overwrite) as tmp:
            write_parquet_atomic(result.kept, tmp / KEPT_FILE, overwrite=True)
            write_parquet_atomic(result.removed, tmp / REMOVED_FILE, overwrite=True)
            text = json.dumps(_jsonable(result.report), indent=2, sort_keys=True) + "\n"
            (tmp / REPORT_FILE).write_text(text, encoding="utf-8")
        return [out / KEPT_FILE, out / REMOVED_FILE, out / REPORT_FILE]
    write_table_atomic(result.kept, output, overwrite=overwrite)
    written = [Path(output)]
    if removed is not None:
        write_table_atomic(result.removed, removed, overwrite=overwrite)
        written.append(Path(removed))
    return written


def _version() -> str:
    from longmagpie import _core

    return _core.__version__


def _concat_removed(parts: list[pa.Table], kept_schema: pa.Schema) -> pa.Table:
    """One table of every removed row (columns a later step added are null for rows removed earlier)."""
    parts = [p for p in parts if p.num_rows]
    schema = _removed_schema(kept_schema)
    if not parts:
        return schema.empty_table()
    out = pa.concat_tables(parts, promote_options="permissive")
    return pa.Table.from_arrays(
        [
            out.column(f.name).cast(f.type) if f.name in out.column_names else pa.nulls(out.num_rows, f.type)
            for f in schema
        ],
        schema=schema,
    )


def report_lines(report: Mapping[str, Any]) -> list[str]:
    """Format what the quality stage kept and removed, by reason, as a few lines (``quality`` and ``stats``)."""
    lines = [f"kept       {report['output_rows']:,} of {report['input_rows']:,} rows"]
    for reason, count in report.get("removed", {}).items():
        lines.append(f"removed    {count:,} {reason}")
    nd = report.get("near_dedup")
    if nd:
        lines.append(
            f"near-dup   {nd['removed']:,} rows in {nd['clusters']:,} clusters ({nd['column']}, {nd['shingle']}-word "
            f"shingles, Jaccard >= {nd['threshold']}, {nd['bands']}x{nd['rows_per_band']} LSH)"
        )
    for instruction, forms in ((report.get("balance") or {}).get("by_steer") or {}).items():
        total = sum(forms.values()) or 1
        top = ", ".join(f"{f} {n / total:.0%}" for f, n in sorted(forms.items(), key=lambda kv: (-kv[1], kv[0]))[:4])
        lines.append(f"steered    {total:,} kept rows asked {instruction!r}: {top}")
    return lines


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


__all__ = [
    "INPUT_ROW",
    "QualityConfig",
    "QualityResult",
    "quality",
    "quality_files",
    "read_rows",
    "report_lines",
    "write_quality",
]
