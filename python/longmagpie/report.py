"""A self-contained HTML report (PNG plots inlined) over what a longmagpie run wrote.

It looks through a directory (or files) for the tables each stage writes and says what they hold:

- **sample rows** of harvested (or any context/query/answer) tables as text, first on the page: the start of
  the document, the question, the answer and how grounded the question is in its document;
- **harvest quality** (:mod:`longmagpie.measures`): document yield, grounding of questions in their own
  document against another one, answer grounding, question openers, duplicate and acceptance rates, token
  lengths. A harvest directory's done-markers hold exact per-shard sums, merged here; a plain ``qa.parquet``
  is measured on the fly over its first rows;
- **stages kept apart**: packed (:func:`longmagpie.pack`), p-mixed (:func:`longmagpie.pack_pmix`) and exported
  (``data/<split>-NNNNN-of-NNNNN.parquet`` of an exported dataset) rows each get their own totals and their own
  series in the row-fill and documents-per-row plots;
- hierarchical outputs (``target-<N>.parquet``): conversations, tokens, documents and QAs per target;
- sample lengths before packing, the long/short share of p-mixed rows, harvest rejection reasons.

Only the columns needed are read (lengths come from list offsets, not values; texts only for the few sample
rows and the on-the-fly measures), so multi-gigabyte outputs are summarised quickly. Needs matplotlib (extra
``longmagpie[report]``).
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from longmagpie import measures
from longmagpie._metadata import METADATA_KEY

#: Sample rows shown (one per document, first rows in file/shard order; taken in turn from each harvested table).
SAMPLE_ROWS = 6
#: Characters of the document and of the answer shown in a sample row.
SAMPLE_DOCUMENT_CHARS = 300
SAMPLE_ANSWER_CHARS = 600
#: A table without harvest markers is measured on the fly over at most this many first rows ...
MEASURED_ROWS = 2000
#: ... and stops earlier once its distinct documents hold this many characters (long contexts are slow to scan).
MEASURED_CHARS = 10_000_000

#: Packing stages, in the order the report shows them: key -> label used in totals and plot legends.
STAGES = {"packed": "packed", "pmix": "p-mixed", "exported": "exported"}

_SHARD = re.compile(r"shard-\d+\.parquet")
_EXPORT_SHARD = re.compile(r".+-\d{5}-of-\d{5}\.parquet")
_TARGET = re.compile(r"target-(\d+)\.parquet")


@dataclass
class StageSummary:
    """Packed rows of one stage (``packed``, ``pmix`` or ``exported``): counts and per-row arrays."""

    name: str
    files: int = 0
    rows: int = 0
    tokens: int = 0
    documents: int = 0
    row_fill: list[np.ndarray] = field(default_factory=list)
    docs_per_row: list[np.ndarray] = field(default_factory=list)
    document_lengths: list[np.ndarray] = field(default_factory=list)

    @property
    def label(self) -> str:
        """The stage's name as the report prints it."""
        return STAGES.get(self.name, self.name)

    @property
    def mean_fill(self) -> float | None:
        """Mean share of the row capacity used (``None`` without rows)."""
        fills = np.concatenate(self.row_fill) if self.row_fill else np.array([])
        return float(fills.mean()) if fills.size else None


@dataclass(frozen=True)
class SampleRow:
    """One harvested row as the report shows it (texts already cut to the shown length)."""

    source: str
    doc_id: str | None
    document: str
    document_chars: int
    query: str
    answer: str
    answer_chars: int
    query_grounding: float | None
    answer_grounding: float | None


@dataclass
class HarvestQuality:
    """The quality measures of one harvest directory or one context/query/answer table.

    ``summary`` is :func:`longmagpie.measures.summarize_quality`'s dict. With ``from_markers`` it is exact over
    every finished shard (the markers' sums merged); otherwise it was computed on the fly over the first
    ``measured_rows`` of ``rows`` rows, and ``document_yield``/``documents`` are unknown (``None``). ``counts``
    holds the markers' counters summed (empty without markers); ``length_unit`` is ``"characters"`` when the rows
    carry no token counts.
    """

    source: str
    files: int
    rows: int
    from_markers: bool
    measured_rows: int
    summary: dict[str, Any]
    openers: Counter[str] = field(default_factory=Counter)
    query_grounding: np.ndarray = field(default_factory=lambda: np.array([]))
    query_lengths: np.ndarray = field(default_factory=lambda: np.array([]))
    answer_lengths: np.ndarray = field(default_factory=lambda: np.array([]))
    length_unit: str = "tokens"
    answer_finish_reasons: Counter[str] = field(default_factory=Counter)
    counts: Counter[str] = field(default_factory=Counter)
    unfinished_shards: int = 0
    turns: Counter[int] = field(default_factory=Counter)
    steer: Counter[str] = field(default_factory=Counter)
    followup_grounding: float | None = None

    def conversation_lines(self) -> list[str]:
        """Lines on the rows' conversation lengths (a multi-turn harvest) and steering shares (a steered one)."""
        out = []
        if self.turns:
            total = sum(self.turns.values())
            parts = ", ".join(f"{n} turns {c:,} ({c / total:.0%})" for n, c in sorted(self.turns.items()))
            mean = sum(n * c for n, c in self.turns.items()) / total
            out.append(f"conversations  {parts}; mean {mean:.2f} exchanges")
        if self.followup_grounding is not None:
            out.append(f"follow-up grounding in its own document {self.followup_grounding:.2f}")
        if self.steer:
            total = sum(self.steer.values())
            out += [f"steer {c / total:6.1%} ({c:,} rows): {text}" for text, c in self.steer.most_common()]
        return out


@dataclass
class HierarchicalTarget:
    """The conversations of one hierarchical target length."""

    target: int
    conversations: int = 0
    tokens: int = 0
    documents: int = 0
    qas: int = 0
    revisits: int = 0
    min_tokens: int | None = None
    max_tokens: int | None = None


@dataclass
class RunSummary:
    """What was found: per-kind tables and the numbers the report shows.

    ``totals`` holds integers only (``"packed rows"``, ``"p-mixed tokens"``, ``"harvested rows"``, ...);
    ``stages`` the packed rows per stage; ``row_fill``/``docs_per_row`` the arrays of every stage together;
    ``sample_lengths`` the lengths of tables before packing (samples, assembled, hierarchical).
    """

    files: dict[str, list[Path]] = field(default_factory=dict)
    sample_lengths: list[np.ndarray] = field(default_factory=list)
    sample_sources: dict[str, list[np.ndarray]] = field(default_factory=dict)
    row_fill: list[np.ndarray] = field(default_factory=list)
    docs_per_row: list[np.ndarray] = field(default_factory=list)
    stages: dict[str, StageSummary] = field(default_factory=dict)
    kinds: Counter[str] = field(default_factory=Counter)
    kind_tokens: Counter[str] = field(default_factory=Counter)
    harvest_counts: Counter[str] = field(default_factory=Counter)
    harvest: list[HarvestQuality] = field(default_factory=list)
    samples: list[SampleRow] = field(default_factory=list)
    hierarchical: dict[int, HierarchicalTarget] = field(default_factory=dict)
    quality: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    judge: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=dict)

    def add_total(self, key: str, value: int) -> None:
        """Add ``value`` to the total ``key``."""
        self.totals[key] = self.totals.get(key, 0) + int(value)


def _list_lengths(col: pa.ChunkedArray) -> np.ndarray:
    return np.concatenate([pc.list_value_length(c).to_numpy(zero_copy_only=False) for c in col.chunks] or [[]])


def _meta(schema: pa.Schema) -> dict[str, Any]:
    raw = (schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        return {}
    try:
        meta = json.loads(raw)
    except ValueError:
        return {}
    return meta if isinstance(meta, dict) else {}


def _is_pmix(schema: pa.Schema) -> bool:
    """Tell a p-mixed table: ``pack_pmix`` recorded in its metadata, or (without one) a per-document ``kind`` list."""
    op = str(_meta(schema).get("op") or "")
    if op.startswith("pack_pmix"):
        return True
    if op.startswith("pack"):
        return False
    return "kind" in schema.names


def _kind(schema: pa.Schema, path: Path | None = None) -> str | None:
    names = set(schema.names)
    if {"input_row", "reason"} <= names:
        return "quality-removed"  # rows the quality stage removed, with their reasons (counted from its report)
    if {"input_ids", "seq_lengths"} <= names:
        if path is not None and path.parent.name == "data" and _EXPORT_SHARD.fullmatch(path.name):
            return "exported"
        return "p-mixed" if _is_pmix(schema) else "packed"
    if {"input_ids", "target_tokens", "num_tokens", "num_qas"} <= names:
        return "hierarchical"
    if {"input_ids", "n_documents"} <= names:
        return "assembled"
    if "input_ids" in names:
        return "samples"
    if {"query", "answer", "context"} <= names:
        return "harvested"
    return None


_STAGE_OF_KIND = {"packed": "packed", "p-mixed": "pmix", "exported": "exported"}


def _seq_len_of(schema: pa.Schema) -> int | None:
    params = _meta(schema).get("params", {})
    value = params.get("pad_to") or params.get("seq_len") if isinstance(params, dict) else None
    return int(value) if value else None


def _parquet_files(p: Path) -> list[Path]:
    if not p.is_dir():
        return [p]
    from longmagpie.io import storage

    return [f.local for f in storage.list_files(p, (".parquet",)) if f.local is not None]


def _marker_of(f: Path) -> Path:
    return f.with_name(f.name[: -len(".parquet")] + ".done.json")


def _judge_dir(f: Path) -> Path | None:
    """Return the judge output directory ``f`` is a shard of (its manifest names a judge run), else ``None``."""
    manifest = f.parent / "manifest.json"
    if not (_SHARD.fullmatch(f.name) and manifest.is_file()):
        return None
    try:
        parts = json.loads(manifest.read_text()).get("parts", {})
    except (OSError, ValueError):
        return None
    return f.parent if isinstance(parts, dict) and "judge" in parts else None


def _is_harvest_shard(f: Path) -> bool:
    return bool(_SHARD.fullmatch(f.name)) and (_marker_of(f).is_file() or (f.parent / "manifest.json").is_file())


def summarize(paths: list[Path]) -> RunSummary:
    """Read what the report needs from Parquet files (directories are searched recursively).

    Raises:
        FileNotFoundError: a path does not exist.
        ValueError: a file is not Parquet.

    """
    s = RunSummary()
    files: list[Path] = []
    for p in paths:
        if not p.exists():
            raise FileNotFoundError(f"{p} does not exist")
        files += _parquet_files(p)
    harvest_groups: dict[str, list[Path]] = {}
    unfinished: Counter[str] = Counter()
    judge_dirs: dict[Path, None] = {}
    for f in dict.fromkeys(files):
        judged = _judge_dir(f)
        if judged is not None:  # judged rows: counted by the judge's summary, not as harvested rows again
            judge_dirs[judged] = None
            continue
        try:
            schema = pq.read_schema(f)
        except (pa.ArrowInvalid, OSError) as err:
            raise ValueError(f"cannot read {f} as Parquet: {err}") from err
        kind = _kind(schema, f)
        if kind is None:
            continue
        if kind == "harvested" and _meta(schema).get("op") == "quality":
            stats = _meta(schema).get("stats") or {}
            s.quality.append((str(f), stats))
            s.add_total("quality kept rows", int(stats.get("output_rows", 0)))
            s.add_total("quality removed rows", int(stats.get("input_rows", 0)) - int(stats.get("output_rows", 0)))
        if kind == "harvested":
            key = str(f.parent) if _is_harvest_shard(f) else str(f)
            if _is_harvest_shard(f) and not _marker_of(f).is_file():
                unfinished[key] += 1  # a killed run's shard: not part of the harvest until its marker is written
                continue
            harvest_groups.setdefault(key, []).append(f)
        s.files.setdefault(kind, []).append(f)
        if kind in ("samples", "assembled"):
            lengths = _list_lengths(pq.read_table(f, columns=["input_ids"]).column("input_ids"))
            _add_samples(s, "input samples" if kind == "samples" else "assembled", lengths)
            label = "input" if kind == "samples" else kind
            s.add_total(f"{label} samples", len(lengths))
            s.add_total(f"{label} tokens", int(lengths.sum()))
        elif kind == "hierarchical":
            _add_hierarchical(s, f)
        elif kind in _STAGE_OF_KIND:
            _add_packed(s, f, schema, _STAGE_OF_KIND[kind])
    for d in judge_dirs:
        from longmagpie.quality.judge import judge_summary

        summary = judge_summary(d)
        s.judge.append((str(d), summary))
        s.add_total("judge kept rows", int(summary.get("kept", 0)))
        s.add_total("judge removed rows", sum(int(v) for v in (summary.get("removed") or {}).values()))
    per_source = []
    for key, group in harvest_groups.items():
        h = _harvest_quality(key, group)
        h.unfinished_shards = unfinished.get(key, 0)
        s.harvest_counts.update(h.counts)
        s.harvest.append(h)
        per_source.append(_sample_rows(key, group))
        s.add_total("harvested rows", h.rows)
    # At most SAMPLE_ROWS in all, taken in turn from each source (the first rows of each first).
    for k in range(SAMPLE_ROWS):
        s.samples += [rows[k] for rows in per_source if k < len(rows)]
    del s.samples[SAMPLE_ROWS:]
    return s


def _add_samples(s: RunSummary, label: str, lengths: np.ndarray) -> None:
    s.sample_lengths.append(lengths)
    s.sample_sources.setdefault(label, []).append(lengths)


def _add_packed(s: RunSummary, f: Path, schema: pa.Schema, stage_name: str) -> None:
    read_kind = stage_name == "pmix" and "kind" in schema.names
    real = "seq_lengths_unpadded" if "seq_lengths_unpadded" in schema.names else "seq_lengths"
    extra = (["kind"] if read_kind else []) + ([real] if real != "seq_lengths" else [])
    t = pq.read_table(f, columns=["seq_lengths", "length", *extra])
    seq_len = _seq_len_of(schema)
    lengths = t.column("length").to_numpy()
    fill = lengths / (seq_len or max(int(lengths.max(initial=1)), 1))
    docs = _list_lengths(t.column("seq_lengths"))
    flat_len = pc.list_flatten(t.column(real)).to_numpy()  # documents' own tokens, without pad_documents_to
    stage = s.stages.setdefault(stage_name, StageSummary(stage_name))
    stage.files += 1
    stage.rows += t.num_rows
    stage.tokens += int(lengths.sum())
    stage.documents += int(docs.sum())
    stage.row_fill.append(fill)
    stage.docs_per_row.append(docs)
    stage.document_lengths.append(flat_len)
    s.row_fill.append(fill)
    s.docs_per_row.append(docs)
    label = stage.label
    s.add_total(f"{label} rows", t.num_rows)
    s.add_total(f"{label} tokens", int(lengths.sum()))
    s.add_total(f"{label} documents", int(docs.sum()))
    if read_kind:
        flat_kind = pc.list_flatten(t.column("kind")).to_pylist()
        s.kinds.update(flat_kind)
        for k, n in zip(flat_kind, flat_len.tolist(), strict=True):
            s.kind_tokens[k] += n


def _add_hierarchical(s: RunSummary, f: Path) -> None:
    names = pq.read_schema(f).names
    cols = [c for c in ("target_tokens", "num_tokens", "num_documents", "num_qas", "num_revisits") if c in names]
    t = pq.read_table(f, columns=cols)
    n_tokens = np.asarray(t.column("num_tokens").to_numpy(), dtype=np.int64)
    targets = np.asarray(t.column("target_tokens").to_numpy(), dtype=np.int64)
    if not t.num_rows and (m := _TARGET.fullmatch(f.name)):
        s.hierarchical.setdefault(int(m.group(1)), HierarchicalTarget(int(m.group(1))))
    for target in np.unique(targets).tolist():
        sel = targets == target
        tok = n_tokens[sel]
        h = s.hierarchical.setdefault(int(target), HierarchicalTarget(int(target)))
        h.conversations += int(sel.sum())
        h.tokens += int(tok.sum())
        for attr, col in (("documents", "num_documents"), ("qas", "num_qas"), ("revisits", "num_revisits")):
            if col in t.column_names:
                setattr(h, attr, getattr(h, attr) + int(np.asarray(t.column(col).to_numpy())[sel].sum()))
        h.min_tokens = int(tok.min()) if h.min_tokens is None else min(h.min_tokens, int(tok.min()))
        h.max_tokens = int(tok.max()) if h.max_tokens is None else max(h.max_tokens, int(tok.max()))
    _add_samples(s, "hierarchical conversations", n_tokens)
    s.add_total("hierarchical conversations", t.num_rows)
    s.add_total("hierarchical tokens", int(n_tokens.sum()))


def _int_column(files: list[Path], name: str) -> np.ndarray | None:
    """Read the integer column ``name`` of every file, nulls dropped; ``None`` if a file lacks it."""
    parts = []
    for f in files:
        if name not in pq.read_schema(f).names:
            return None
        col = pq.read_table(f, columns=[name]).column(name).drop_null()
        parts.append(col.to_numpy().astype(np.int64) if len(col) else np.zeros(0, dtype=np.int64))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def _float_column(files: list[Path], name: str) -> np.ndarray | None:
    parts = []
    for f in files:
        if name not in pq.read_schema(f).names:
            return None
        col = pq.read_table(f, columns=[name]).column(name).drop_null()
        parts.append(col.to_numpy().astype(np.float64) if len(col) else np.zeros(0))
    return np.concatenate(parts) if parts else np.zeros(0)


def _value_counts(files: list[Path], name: str) -> Counter[str]:
    out: Counter[str] = Counter()
    for f in files:
        if name not in pq.read_schema(f).names:
            return Counter()
        col = pq.read_table(f, columns=[name]).column(name)
        for item in pc.value_counts(col).to_pylist():
            out[str(item["values"])] += int(item["counts"])
    return out


def _iter_rows(files: list[Path], columns: list[str], batch_size: int = 256) -> Any:
    """Yield rows (dicts of the ``columns`` a file has) of ``files`` in order, reading batch by batch."""
    for f in files:
        pf = pq.ParquetFile(f)
        have = [c for c in columns if c in pf.schema_arrow.names]
        for batch in pf.iter_batches(batch_size=batch_size, columns=have):
            yield from batch.to_pylist()


def _harvest_quality(source: str, files: list[Path]) -> HarvestQuality:
    """Quality of one harvest directory (its finished shards, ``files``) or one plain table."""
    rows = sum(pq.read_metadata(f).num_rows for f in files)
    markers = [json.loads(m.read_text()) for f in files if (m := _marker_of(f)).is_file()]
    counts: Counter[str] | None = None
    if markers:
        counts = Counter()
        for m in markers:
            counts.update({k: int(v) for k, v in m.get("counts", {}).items() if isinstance(v, int)})
    q_tokens = _int_column(files, "query_tokens")
    a_tokens = _int_column(files, "answer_tokens")
    finish = _value_counts(files, "answer_finish_reason")
    from_markers = bool(markers) and len(markers) == len(files) and all(m.get("quality") for m in markers)
    if from_markers:
        merged = measures.merge_quality(m["quality"] for m in markers)
        summary = measures.summarize_quality(merged, counts, query_tokens=q_tokens, answer_tokens=a_tokens)
        grounding = _float_column(files, "query_grounding")
        h = HarvestQuality(source, len(files), rows, True, rows, summary)
        h.openers = Counter({k: int(v) for k, v in merged.get("openers", {}).items()})
        h.query_grounding = grounding if grounding is not None else np.array([])
        h.query_lengths = q_tokens if q_tokens is not None else np.array([])
        h.answer_lengths = a_tokens if a_tokens is not None else np.array([])
        h.answer_finish_reasons = finish
        h.counts = counts or Counter()
        _conversations(h, files)
        return h
    # No markers with sums: measure the first rows on the fly.
    doc_ids: list[str] = []
    contexts: list[str] = []
    queries: list[str] = []
    answers: list[str] = []
    words: dict[str, frozenset[str]] = {}
    own: list[float] = []
    chars = 0
    for row in _iter_rows(files, ["doc_id", "context", "query", "answer"]):
        if len(queries) >= MEASURED_ROWS:
            break
        context, query, answer = row.get("context") or "", row.get("query") or "", row.get("answer") or ""
        doc = row.get("doc_id")
        key = str(doc) if doc is not None else f"\x00{context}"
        if key not in words:
            if chars and chars + len(context) > MEASURED_CHARS:
                break
            chars += len(context)
            words[key] = measures.content_words(context)
        doc_ids.append(key)
        contexts.append(context)
        queries.append(query)
        answers.append(answer)
        g = measures.coverage(measures.content_words(query), words[key])  # = measures.grounding(query, context)
        if g is not None:
            own.append(g)
    merged = measures.shard_quality(doc_ids, contexts, queries, answers, len(words))
    # Token lengths are one integer column each: read over every row, not only the measured ones.
    summary = measures.summarize_quality(merged, counts, query_tokens=q_tokens, answer_tokens=a_tokens)
    summary["documents"] = None  # documents that yielded no row are not in a plain table
    summary["document_yield"] = None
    h = HarvestQuality(source, len(files), rows, False, len(queries), summary)
    h.openers = Counter({k: int(v) for k, v in merged.get("openers", {}).items()})
    h.query_grounding = np.asarray(own, dtype=np.float64)
    if q_tokens is not None and a_tokens is not None:
        h.query_lengths, h.answer_lengths = q_tokens, a_tokens
    else:
        h.query_lengths = np.array([len(q) for q in queries], dtype=np.int64)
        h.answer_lengths = np.array([len(a) for a in answers], dtype=np.int64)
        h.length_unit = "characters"
    h.answer_finish_reasons = finish
    h.counts = counts or Counter()
    _conversations(h, files)
    return h


def _conversations(h: HarvestQuality, files: list[Path]) -> None:
    """Count the rows' ``turns`` and ``steer`` values, where the rows carry them."""
    h.turns = Counter({int(k): v for k, v in _value_counts(files, "turns").items()})
    h.steer = _value_counts(files, "steer")
    followup = _float_column(files, "followup_grounding")
    h.followup_grounding = float(followup.mean()) if followup is not None and len(followup) else None


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[:n].rstrip() + "…"


def _sample_rows(source: str, files: list[Path], n: int = SAMPLE_ROWS) -> list[SampleRow]:
    """Return the first row of each of the first ``n`` documents, in file (shard) order."""
    out: list[SampleRow] = []
    seen: set[str] = set()
    cols = ["doc_id", "context", "query", "answer", "query_grounding", "answer_grounding"]
    for row in _iter_rows(files, cols, batch_size=64):
        if len(out) >= n:
            break
        context, query, answer = row.get("context") or "", row.get("query") or "", row.get("answer") or ""
        doc = row.get("doc_id")
        key = str(doc) if doc is not None else f"\x00{context}"
        if key in seen:
            continue
        seen.add(key)
        qg = row["query_grounding"] if "query_grounding" in row else measures.grounding(query, context)
        ag = row["answer_grounding"] if "answer_grounding" in row else measures.grounding(answer, context)
        out.append(
            SampleRow(
                source,
                None if doc is None else str(doc),
                _cut(context, SAMPLE_DOCUMENT_CHARS),
                len(context),
                query,
                _cut(answer, SAMPLE_ANSWER_CHARS),
                len(answer),
                qg,
                ag,
            )
        )
    return out


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode()


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError("the report draws with matplotlib: pip install 'longmagpie[report]'") from err
    return plt


_COLORS = ("#3b6ea8", "#a8563b", "#5b9a4a", "#8a5aa8", "#c9a227")


def _hist(
    out: list[tuple[str, str]],
    title: str,
    series: dict[str, np.ndarray],
    xlabel: str,
    *,
    log: bool = False,
    bins: int = 50,
    integer: bool = False,
    value_range: tuple[float, float] | None = None,
) -> None:
    """Append a histogram of one or more labelled series (one panel each, sharing bins and the x axis)."""
    series = {k: np.asarray(v, dtype=np.float64) for k, v in series.items() if np.asarray(v).size}
    if not series:
        return
    plt = _pyplot()
    values = np.concatenate(list(series.values()))
    n = len(series)
    # One panel per series (shared bins and x axis), so identical or overlapping series stay visible.
    fig, axes = plt.subplots(n, 1, figsize=(7, 3.2 if n == 1 else 1.0 + 1.6 * n), sharex=True, squeeze=False)
    lo, hi = (float(values.min()), float(values.max())) if value_range is None else value_range
    log_x = log and lo > 0
    if integer:
        edges: Any = np.arange(int(lo), int(hi) + 2) - 0.5
        if len(edges) > 80:
            edges = np.linspace(lo - 0.5, hi + 0.5, 61)
    elif log_x:
        edges = np.logspace(np.log10(lo), np.log10(hi + 1), bins)
    else:
        edges = np.linspace(lo, hi if hi > lo else lo + 1, bins + 1)
    for ax, (label, v), color in zip(axes[:, 0], series.items(), _COLORS * 4, strict=False):
        ax.hist(v, bins=edges, color=color)
        ax.set_ylabel("count")
        if log_x:
            from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

            ax.set_xscale("log")
            ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: f"{x:,.0f}"))
            ax.xaxis.set_minor_formatter(NullFormatter())
        if n > 1:
            ax.set_title(f"{label} ({v.size:,})", fontsize=9, loc="left")
    axes[-1, 0].set_xlabel(xlabel)
    fig.suptitle(title) if n > 1 else axes[0, 0].set_title(title)
    if n > 1:
        fig.tight_layout()
    out.append((title, _png(fig)))


def _bars(out: list[tuple[str, str]], title: str, counts: dict[str, int], xlabel: str) -> None:
    if not counts:
        return
    plt = _pyplot()
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(items) + 1.2))
    ax.barh([k for k, _ in items][::-1], [v for _, v in items][::-1], color="#a8563b")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    out.append((title, _png(fig)))


def _cat(arrays: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(arrays) if arrays else np.array([])


def _plots(s: RunSummary) -> list[tuple[str, str]]:
    _pyplot()
    out: list[tuple[str, str]] = []
    stages = [s.stages[k] for k in STAGES if k in s.stages]
    _hist(
        out,
        "Sample lengths before packing",
        {k: _cat(v) for k, v in s.sample_sources.items()},
        "tokens per sample / conversation",
        log=True,
    )
    _hist(out, "Row fill", {st.label: 100 * _cat(st.row_fill) for st in stages}, "% of the row used")
    _hist(out, "Documents per row", {st.label: _cat(st.docs_per_row) for st in stages}, "documents", integer=True)
    _hist(
        out,
        "Document lengths in packed rows",
        {st.label: _cat(st.document_lengths) for st in stages},
        "tokens per document / segment",
        log=True,
    )
    if s.kinds:
        _bars(out, "Long/short share of p-mixed tokens", dict(s.kind_tokens), "tokens")
    rejections = {k: v for k, v in s.harvest_counts.items() if (k.startswith(("query_", "answer_", "doc_"))) and v}
    _bars(out, "Harvest rejections and edits", rejections, "count")
    removed: Counter[str] = Counter()
    for _, stats in s.quality:
        removed.update(stats.get("removed") or {})
    _bars(out, "Rows the quality stage removed, by reason", dict(removed), "rows")
    return out


def _harvest_plots(h: HarvestQuality, suffix: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    unit = h.length_unit
    _hist(out, f"Query lengths{suffix}", {"queries": h.query_lengths}, unit, bins=40)
    _hist(out, f"Answer lengths{suffix}", {"answers": h.answer_lengths}, unit, bins=40)
    _bars(out, f"Question openers{suffix}", dict(h.openers), "questions")
    _hist(
        out,
        f"Query grounding in its own document{suffix}",
        {"queries": h.query_grounding},
        "share of the question's content words found in its document",
        bins=20,
        value_range=(0.0, 1.0),
    )
    return out


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def _num(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def _quantile_text(q: dict[str, float] | None) -> str:
    if not q:
        return "n/a"
    return f"mean {_num(q['mean'])}, p10 {_num(q['p10'])}, p50 {_num(q['p50'])}, p90 {_num(q['p90'])}"


def _share_text(counts: Counter[str] | dict[str, float], top: int = 8) -> str:
    total = sum(counts.values())
    if not total:
        return "n/a"
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    text = ", ".join(f"{k} {_pct(v / total)}" for k, v in items[:top])
    return text + (f", … ({len(items) - top} more)" if len(items) > top else "")


def quality_rows(h: HarvestQuality) -> list[tuple[str, str]]:
    """Return the harvest quality measures of ``h`` as (label, formatted value) rows, as the report shows them."""
    q = h.summary
    measured = (
        f"{h.rows:,} rows in {h.files:,} finished shard(s); exact sums from the shards' markers"
        if h.from_markers
        else f"measured on the fly on the first {h.measured_rows:,} of {h.rows:,} rows (no harvest markers)"
    )
    docs = q.get("documents")
    rows = [
        ("rows", measured),
        (
            "document yield",
            f"{_pct(q.get('document_yield'))} ({q.get('documents_with_rows', 0):,} of {docs:,} documents gave a row)"
            if docs is not None
            else f"n/a ({q.get('documents_with_rows', 0):,} distinct documents; those without a row are not recorded)",
        ),
        ("query grounding in its own document", _pct(q.get("query_grounding"))),
        ("query grounding in another document", _pct(q.get("query_grounding_other"))),
        ("lift (own − other)", _pct(q.get("query_grounding_lift"))),
        ("answer grounding", _pct(q.get("answer_grounding"))),
        ("queries without content words", f"{q.get('queries_without_content_words', 0):,}"),
        ("openers", _share_text(q.get("openers") or {})),
        ("duplicate rate (of generated queries)", _pct(q.get("duplicate_rate"))),
        ("query acceptance (accepted / generated)", _pct(q.get("query_acceptance"))),
        ("answer acceptance (rows / accepted queries)", _pct(q.get("answer_acceptance"))),
        ("query tokens", _quantile_text(q.get("query_tokens"))),
        ("answer tokens", _quantile_text(q.get("answer_tokens"))),
    ]
    if h.length_unit != "tokens":
        rows.append(("lengths", f"no token counts in the rows: the plots show {h.length_unit}"))
    if h.answer_finish_reasons:
        rows.append(("answer finish reasons", _share_text(h.answer_finish_reasons)))
    if h.unfinished_shards:
        rows.append(("unfinished shards (no marker, left out)", f"{h.unfinished_shards:,}"))
    if h.turns:
        rows.append(("conversation turns", _share_text(Counter({f"{n} turns": c for n, c in h.turns.items()}))))
    if h.followup_grounding is not None:
        rows.append(("follow-up grounding in its own document", _pct(h.followup_grounding)))
    if h.steer:
        rows.append(("steering shares", _share_text(h.steer)))
    return rows


def _figures(plots: list[tuple[str, str]]) -> str:
    return "".join(
        f"<figure><img alt='{html.escape(t)}' src='data:image/png;base64,{png}'/><figcaption>{html.escape(t)}"
        "</figcaption></figure>"
        for t, png in plots
    )


def _table(rows: list[tuple[str, ...]], header: tuple[str, ...] | None = None) -> str:
    head = "<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table>{head}{body}</table>"


def _samples_html(samples: list[SampleRow]) -> str:
    if not samples:
        return ""
    many = len({x.source for x in samples}) > 1
    parts = []
    for x in samples:
        doc_more = f" ({x.document_chars:,} characters in all)" if x.document_chars > SAMPLE_DOCUMENT_CHARS else ""
        ans_more = f" ({x.answer_chars:,} characters in all)" if x.answer_chars > SAMPLE_ANSWER_CHARS else ""
        head = f"document {html.escape(x.doc_id)}" if x.doc_id is not None else "document"
        if many:
            head += f" <span class='src'>({html.escape(x.source)})</span>"
        parts.append(
            "<div class='sample'>"
            f"<div class='head'>{head} · query grounding {_pct(x.query_grounding)} · "
            f"answer grounding {_pct(x.answer_grounding)}</div>"
            f"<div class='doc'>{html.escape(x.document)}<span class='src'>{html.escape(doc_more)}</span></div>"
            f"<div class='q'><b>Q:</b> {html.escape(x.query)}</div>"
            f"<div class='a'><b>A:</b> {html.escape(x.answer)}<span class='src'>{html.escape(ans_more)}</span></div>"
            "</div>"
        )
    return (
        "<h2>Sample rows</h2><p class='note'>The first row of each of the first documents, in file order: the "
        f"document's first {SAMPLE_DOCUMENT_CHARS} characters, the question, the answer (first "
        f"{SAMPLE_ANSWER_CHARS} characters).</p>" + "".join(parts)
    )


def _stages_html(s: RunSummary) -> str:
    stages = [s.stages[k] for k in STAGES if k in s.stages]
    if not stages:
        return ""
    rows = [
        (
            st.label,
            f"{st.files:,}",
            f"{st.rows:,}",
            f"{st.tokens:,}",
            f"{st.documents:,}",
            _pct(st.mean_fill),
        )
        for st in stages
    ]
    return "<h2>Packing stages</h2>" + _table(rows, ("stage", "files", "rows", "tokens", "documents", "mean fill"))


def _hierarchical_html(s: RunSummary) -> str:
    if not s.hierarchical:
        return ""
    rows = [
        (
            f"{h.target:,}",
            f"{h.conversations:,}",
            f"{h.tokens:,}",
            f"{h.documents:,}",
            f"{h.qas:,}",
            f"{h.revisits:,}",
            f"{_num(h.min_tokens)} – {_num(h.max_tokens)}",
        )
        for _, h in sorted(s.hierarchical.items())
    ]
    header = ("target tokens", "conversations", "tokens", "documents", "QAs", "revisits", "tokens per conversation")
    return "<h2>Hierarchical conversations</h2>" + _table(rows, header)


def _harvest_html(s: RunSummary) -> str:
    if not s.harvest:
        return ""
    parts = ["<h2>Harvest quality</h2>"]
    many = len(s.harvest) > 1
    for h in s.harvest:
        suffix = f" ({Path(h.source).name})" if many else ""
        parts.append(f"<h3>{html.escape(h.source)}</h3>")
        parts.append(_table(quality_rows(h)))
        parts.append(_figures(_harvest_plots(h, suffix)))
    return "".join(parts)


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Return nested report dicts as (dotted key, value) rows."""
    if isinstance(value, dict):
        return [row for k, v in value.items() for row in _flatten(v, f"{prefix}.{k}" if prefix else str(k))]
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return [row for i, v in enumerate(value) for row in _flatten(v, f"{prefix}[{i}]")]
    shown = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)
    return [(prefix, shown)]


def _quality_html(s: RunSummary) -> str:
    """Render the quality stage: rows kept and removed by reason, then each step's counts and distributions."""
    if not s.quality:
        return ""
    parts = ["<h2>Quality stage</h2>"]
    for source, stats in s.quality:
        parts.append(f"<h3>{html.escape(source)}</h3>")
        head = [("input rows", f"{stats.get('input_rows', 0):,}"), ("kept rows", f"{stats.get('output_rows', 0):,}")]
        head += [(f"removed: {k}", f"{v:,}") for k, v in (stats.get("removed") or {}).items()]
        parts.append(_table(head))
        for step in ("decontamination", "language", "near_dedup", "balance"):
            if stats.get(step):
                parts.append(f"<h4>{html.escape(step)}</h4>" + _table(_flatten(stats[step])))
    return "".join(parts)


def _judge_html(s: RunSummary) -> str:
    """Render the judge step: parse rates, score means, removals by reason, categories, agreement."""
    if not s.judge:
        return ""
    from longmagpie.quality.judge import summary_lines

    parts = ["<h2>Judge</h2>"]
    for source, summary in s.judge:
        parts.append(f"<h3>{html.escape(source)}</h3>")
        parts.append("".join(f"<p>{html.escape(line)}</p>" for line in summary_lines(summary)))
    return "".join(parts)


def render_html(s: RunSummary, title: str = "longmagpie run report") -> str:
    """Render the report as one HTML page with inline PNGs (every text taken from the data is escaped)."""
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td style='text-align:right'>{v:,}</td></tr>"
        for k, v in sorted(s.totals.items())
    )
    if s.harvest_counts:
        rows += "".join(
            f"<tr><td>harvest: {html.escape(k)}</td><td style='text-align:right'>{v:,}</td></tr>"
            for k, v in sorted(s.harvest_counts.items())
        )
    files = "".join(
        f"<li><b>{html.escape(kind)}</b>: {len(fs)} file(s), e.g. {html.escape(str(fs[0]))}</li>"
        for kind, fs in sorted(s.files.items())
    )
    figures = _figures(_plots(s))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:900px;margin:2em auto;color:#222}}
table{{border-collapse:collapse}}td,th{{padding:2px 12px;border-bottom:1px solid #ddd;text-align:left}}
figure{{margin:1.5em 0}}img{{max-width:100%}}
.sample{{border:1px solid #ccc;border-radius:4px;padding:.5em .8em;margin:.8em 0}}
.sample .head{{font-size:85%;color:#555;margin-bottom:.3em}}
.sample .doc{{font-size:85%;color:#444;background:#f5f5f5;padding:.3em .5em;white-space:pre-wrap}}
.sample .q,.sample .a{{margin-top:.4em;white-space:pre-wrap}}.src,.note{{color:#777;font-size:85%}}</style></head>
<body><h1>{html.escape(title)}</h1>
<h2>Inputs</h2><ul>{files or "<li>no longmagpie tables found</li>"}</ul>
{_samples_html(s.samples)}
<h2>Totals</h2><table>{rows}</table>
{_stages_html(s)}{_hierarchical_html(s)}{_quality_html(s)}{_judge_html(s)}{_harvest_html(s)}
<h2>Plots</h2>{figures or "<p>nothing to plot</p>"}
</body></html>
"""


def write_report(paths: list[Path], output: Path) -> RunSummary:
    """Summarise ``paths`` and write the HTML report to ``output`` (atomically)."""
    from longmagpie.io.files import write_bytes_atomic

    s = summarize(paths)
    output.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(output, render_html(s).encode())
    return s
