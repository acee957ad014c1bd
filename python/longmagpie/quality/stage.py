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
            ``input_row`` and the exact Jaccard) and ``eval_file``.
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


def quality(rows: Any, config: QualityConfig | None = None) -> QualityResult:
    """Filter harvest rows: decontaminate, detect languages, remove near-duplicates, cap classes (in that order).

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
    index = EvalIndex(cfg.decontaminate, ngram=cfg.ngram, num_threads=cfg.num_threads) if cfg.decontaminate else None
    _check_columns(table, cfg.required_columns(), "the input")
    n_in = table.num_rows
    table = table.append_column(INPUT_ROW, pa.array(np.arange(n_in, dtype=np.int64)))
    removed: list[pa.Table] = []
    reasons: Counter[str] = Counter()
    report: dict[str, Any] = {"input_rows": n_in}

    if index is not None:
        found = np.array(index.match_table(table, cfg.decontaminate_columns), dtype=np.int64)
        bad = np.flatnonzero(found >= 0)
        files = [index.files[i] for i in found[bad]]
        labels = [f"decontaminated:{Path(f).name}" for f in files]
        removed.append(_removed(table, bad, labels, eval_file=pa.array(files, pa.string())))
        reasons.update(labels)
        report["decontamination"] = {
            "ngram": cfg.ngram,
            "columns": list(cfg.decontaminate_columns),
            "files": [
                {"file": f, "texts": t, "too_short": k, "rows_removed": int((found[bad] == i).sum())}
                for i, (f, t, k) in enumerate(zip(index.files, index.texts, index.skipped, strict=True))
            ],
            "ngrams_indexed": len(index),
        }
        table = table.filter(pa.array(found < 0))

    if cfg.detect_language:
        from longmagpie.quality.language import split_by_language

        table, dropped, report["language"] = split_by_language(table, columns=cfg.language_columns, keep=cfg.languages)
        if dropped.num_rows:
            removed.append(_with_step_columns(dropped))
            reasons.update(dropped.column("reason").to_pylist())

    if cfg.dedup:
        filt = NearDuplicates(
            shingle=cfg.dedup_shingle,
            threshold=cfg.dedup_threshold,
            num_perm=cfg.num_perm,
            seed=cfg.seed,
            num_threads=cfg.num_threads,
        )
        texts = table.column(cfg.column)
        dup_parts, sim_parts, empty = [], [], 0
        for start in range(0, table.num_rows, cfg.batch_rows):
            d = filt.add(texts.slice(start, cfg.batch_rows), cfg.column)
            dup_parts.append(d.dup_of.to_numpy(zero_copy_only=False))
            sim_parts.append(d.similarity.to_numpy(zero_copy_only=False))
            empty += d.empty
        dup = np.concatenate(dup_parts) if dup_parts else np.zeros(0, np.int64)
        sim = np.concatenate(sim_parts) if sim_parts else np.zeros(0, np.float32)
        input_rows = table.column(INPUT_ROW).to_numpy()
        drop = np.flatnonzero(dup >= 0)
        labels = ["near_duplicate"] * len(drop)
        removed.append(
            _removed(
                table,
                drop,
                labels,
                dup_of=pa.array(input_rows[dup[drop]], pa.int64()),
                similarity=pa.array(sim[drop], pa.float32()),
            )
        )
        reasons.update(labels)
        report["near_dedup"] = {
            "column": cfg.column,
            "shingle": cfg.dedup_shingle,
            "threshold": cfg.dedup_threshold,
            "num_perm": cfg.num_perm,
            "bands": filt.bands,
            "rows_per_band": filt.rows,
            "recall_at_threshold": round(filt.recall_at(cfg.dedup_threshold), 4),
            "removed": len(drop),
            "clusters": len(set(dup[drop].tolist())),
            "texts_without_words": empty,
            "index_bytes": filt.memory_bytes,
        }
        table = table.filter(pa.array(dup < 0))

    from longmagpie.quality.balance import balance

    before = set(table.column(INPUT_ROW).to_pylist()) if cfg.max_share is not None else None
    annotated, balance_report = balance(table, max_share=cfg.max_share, by=cfg.balance_by, seed=cfg.seed)
    report["balance"] = balance_report
    if before is not None:
        kept_rows = set(annotated.column(INPUT_ROW).to_pylist())
        full, _ = balance(table, max_share=None, by=cfg.balance_by, seed=cfg.seed)
        rows_in = full.column(INPUT_ROW).to_pylist()
        drop = np.array([i for i, r in enumerate(rows_in) if r not in kept_rows], dtype=np.int64)
        classes = full.column(cfg.balance_by).to_pylist()
        labels = [f"balance:{classes[i]}" for i in drop.tolist()]
        removed.append(_removed(full, drop, labels))
        reasons.update(labels)
    table = annotated

    report["output_rows"] = table.num_rows
    report["removed"] = dict(sorted(reasons.items()))
    removed_table = _concat_removed(removed, table.schema)
    params = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items()}
    del params["num_threads"], params["batch_rows"]
    kept = attach(table, "quality", params, _jsonable(report))
    return QualityResult(kept, removed_table, report)


#: Files of a quality output directory.
KEPT_FILE, REMOVED_FILE, REPORT_FILE = "kept.parquet", "removed.parquet", "report.json"


def read_rows(inputs: list[str]) -> tuple[pa.Table, bool]:
    """Read harvest rows: one harvest output directory, or Parquet/JSONL files and directories.

    Returns the table and whether the input was a harvest directory (its output is then a directory too).
    """
    from longmagpie.generate.resume import MANIFEST
    from longmagpie.harvest.output import read_harvest
    from longmagpie.io.files import read_table

    if len(inputs) == 1 and (Path(inputs[0]) / MANIFEST).is_file():
        return read_harvest(inputs[0]), True
    return read_table(inputs), False


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


def _concat_removed(parts: list[pa.Table], kept_schema: pa.Schema) -> pa.Table:
    """One table of every removed row (columns a later step added are null for rows removed earlier)."""
    parts = [p for p in parts if p.num_rows] or parts[:1]
    if not parts:
        fields = [*kept_schema, pa.field("reason", pa.string())]
        fields += [pa.field("dup_of", pa.int64()), pa.field("similarity", pa.float32())]
        return pa.schema([*fields, pa.field("eval_file", pa.string())]).empty_table()
    out = pa.concat_tables(parts, promote_options="permissive")
    return out.take(pc.sort_indices(out, [(INPUT_ROW, "ascending")]))


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


__all__ = ["INPUT_ROW", "QualityConfig", "QualityResult", "quality", "read_rows", "write_quality"]
