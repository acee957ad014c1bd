"""Multi-document LongMagpie samples, token-aware (the Rust assembler, driven from Python).

Each single-document sample (context, query, answer) becomes one long conversation: the gold document shuffled
among distractor documents up to a token budget, joined by a separator, then the query, in the user turn; the
answer is the assistant turn. Documents are tokenized once, in Rust, with the tokenizer's ``tokenizer.json``;
samples are built by concatenating token ids around the chat template's fixed spans, with only small windows
re-tokenized at each join, so ``input_ids`` equal ``tokenizer.apply_chat_template(messages, tokenize=True)``.

A multi-turn sample (a harvest with ``turns > 1``: a ``messages`` column) keeps the documents and the first question
in its first user turn, as above; its later exchanges are appended after the first answer's end of turn, encoded by
the conversation encoder (:func:`longmagpie.assembly.conversations.later_turn_segments`), every answer masked in.
Their tokens are reserved before the distractors are drawn, so the whole conversation meets ``max_tokens`` and the
token target.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from longmagpie import _core
from longmagpie._arrow import as_arrow
from longmagpie._metadata import attach
from longmagpie._progress import progress_bar
from longmagpie.assembly.conversations import encode_segment_lists, later_turn_segments
from longmagpie.assembly.tokenizer import core_tokenizer, load_tokenizer
from longmagpie.templates.spans import ChatSpans, TemplateError, chat_spans

log = logging.getLogger(__name__)

#: The upstream LongMagpie document separator.
UPSTREAM_SEPARATOR = "\n\n===Document Separator===\n\n"

_STATS_SUM = (
    "samples",
    "assembled",
    "skipped_long",
    "truncated_documents",
    "truncated_tokens",
    "distractors",
    "output_tokens",
    "masked_tokens",
    "reused_tokens",
    "windows",
    "rebuilt",
    "whole_text",
    "later_turns",
    "later_turn_tokens",
)


@dataclass(frozen=True)
class AssembleConfig:
    """How samples are assembled (everything but the data and the tokenizer)."""

    max_tokens: int = 65536
    target_tokens: tuple[int, int] | None = (8192, 65536)
    num_distractors: tuple[int, int] | None = None
    doc_separator: str = UPSTREAM_SEPARATOR
    query_separator: str = "\n\n"
    system: str | None = None
    answer_end: str | None = None
    long_documents: str = "truncate"
    seed: int = 0
    max_misses: int = 16
    margin: int = 2
    batch_size: int = 2048
    num_threads: int | None = None

    def budget(self) -> tuple[str, int, int]:
        """``(kind, min, max)`` of the distractor budget."""
        if self.num_distractors is not None:
            if self.target_tokens not in (None, AssembleConfig.target_tokens):
                raise ValueError("give either target_tokens or num_distractors, not both")
            lo, hi = self.num_distractors
            if not 0 <= lo <= hi:
                raise ValueError(f"num_distractors must be (min, max) with 0 <= min <= max, got {self.num_distractors}")
            return "count", lo, hi
        if self.target_tokens is None:
            raise ValueError("give target_tokens=(min, max) or num_distractors=(min, max)")
        lo, hi = self.target_tokens
        if not 0 < lo <= hi:
            raise ValueError(f"target_tokens must be (min, max) with 0 < min <= max, got {self.target_tokens}")
        return "tokens", lo, min(hi, self.max_tokens)


def _table(data: Any) -> pa.Table:
    """Any tabular input as a pyarrow Table."""
    obj = as_arrow(data)
    if isinstance(obj, pa.Table):
        return obj
    if isinstance(obj, pa.RecordBatch):
        return pa.Table.from_batches([obj])
    if hasattr(obj, "__arrow_c_stream__"):
        return pa.RecordBatchReader.from_stream(obj).read_all()
    return pa.Table.from_batches([pa.record_batch(obj)])


def _strings(table: pa.Table, column: str, what: str) -> pa.Array:
    if column not in table.column_names:
        raise KeyError(f"{what} has no column {column!r} (columns: {', '.join(table.column_names)})")
    col = table.column(column)
    if not (pa.types.is_string(col.type) or pa.types.is_large_string(col.type) or pa.types.is_null(col.type)):
        if not pa.types.is_string_view(col.type):
            raise TypeError(f"{what} column {column!r} must hold strings, got {col.type}")
    return col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)


def _later_turns(table: pa.Table, offset: int) -> list[list[dict[str, str]]] | None:
    """Each sample's exchanges after its first (``messages`` after the first assistant message), or ``None``.

    ``None`` when the table has no ``messages`` column or no sample has a second exchange.
    """
    if "messages" not in table.column_names:
        return None
    typ = table.schema.field("messages").type
    if not (pa.types.is_list(typ) or pa.types.is_large_list(typ)) or not pa.types.is_struct(typ.value_type):
        raise TypeError(
            f"samples column 'messages' must be a list of {{role, content}} structs (as a multi-turn harvest writes "
            f"it), got {typ}; drop the column to assemble single-turn samples"
        )
    out: list[list[dict[str, str]]] = []
    for j, msgs in enumerate(table.column("messages").to_pylist()):
        if not msgs:
            out.append([])
            continue
        first = next((k for k, m in enumerate(msgs) if m.get("role") == "assistant"), None)
        if first is None:
            raise ValueError(f"samples row {offset + j}: its messages hold no assistant turn")
        out.append(msgs[first + 1 :])
    return out if any(out) else None


def _first_null(arr: pa.Array) -> int | None:
    if arr.null_count == 0:
        return None
    return int(pc.index(pc.is_null(arr), True).as_py())


class Assembler:
    """A tokenizer, its chat spans and a document pool, tokenized once; assembles samples in batches.

    Args:
        tokenizer: transformers fast tokenizer or a directory holding one (``tokenizer.json`` + config).
        documents: the gold-document pool: a table with ``text`` (and optionally ``doc_id``), or ``None`` to
            take the distinct ``context`` values of the samples passed to :meth:`assemble`.
        distractors: a separate distractor corpus (table with ``text``, optional ``doc_id``; or a string
            array); ``None`` draws distractors from the pool. The gold document is never its own distractor.
        config: :class:`AssembleConfig`.

    """

    def __init__(
        self,
        tokenizer: Any,
        documents: Any = None,
        distractors: Any = None,
        config: AssembleConfig | None = None,
        *,
        messages: bool = False,
    ) -> None:
        """Render the chat spans and remember the inputs (tokenizing happens on first use)."""
        self.config = config or AssembleConfig()
        self.config.budget()
        if self.config.long_documents not in ("truncate", "skip"):
            raise ValueError(f"long_documents must be 'truncate' or 'skip', got {self.config.long_documents!r}")
        self.tokenizer = load_tokenizer(tokenizer)
        self._tokenizer = core_tokenizer(self.tokenizer)  # refuses a prefix-space tokenizer now
        self.spans: ChatSpans = chat_spans(self.tokenizer, system=self.config.system, answer_end=self.config.answer_end)
        self.messages = messages
        self._doc_table = None if documents is None else _table(documents)
        self._distractors = distractors
        self._core: Any = None
        self._doc_ids: pa.Array | None = None
        self._doc_texts: pa.Array | None = None
        self._suffix_ids: list[int] | None = None

    def _tails(self, later: list[list[dict[str, str]]], offset: int) -> tuple[list[Any], list[Any]]:
        """Ids and masks of each sample's later exchanges plus the template's suffix (``None``: no later turn)."""
        spans = self.spans
        if spans.between_turns is None:
            raise TemplateError(
                "this chat template does not render later turns like the first: multi-turn samples unsupported"
            )
        if self._suffix_ids is None:
            end = spans.answer_end
            special = [
                str(t.content)
                for t in (getattr(self.tokenizer, "added_tokens_decoder", {}) or {}).values()
                if not getattr(t, "rstrip", False)
            ]
            if not any(end.endswith(t) for t in special if t):
                raise TemplateError(
                    f"the template's end of turn {end!r} does not end with a special token, so the later turns "
                    "cannot be joined after it token by token; pass answer_end=... ending with one"
                )
            self._suffix_ids = list(self.tokenizer(spans.suffix, add_special_tokens=False)["input_ids"])
        which = [j for j, t in enumerate(later) if t]
        lists = [later_turn_segments(spans, later[j], where=f"row {offset + j}") for j in which]
        ids, mask = encode_segment_lists(self._tokenizer, lists, self.config.num_threads)
        tail_ids: list[Any] = [None] * len(later)
        tail_mask: list[Any] = [None] * len(later)
        for k, j in enumerate(which):
            tail_ids[j] = ids[k].values.to_numpy(zero_copy_only=False)
            tail_mask[j] = mask[k].values.to_numpy(zero_copy_only=False)
        return tail_ids, tail_mask

    def _build(self, docs: pa.Array, doc_ids: pa.Array | None) -> None:
        cfg = self.config
        kind, lo, hi = cfg.budget()
        distractors = None
        self._dist_ids = None
        self._dist_texts = None
        if self._distractors is not None:
            d = self._distractors
            if isinstance(d, (pa.Array, pa.ChunkedArray, list)):
                arr = pa.array(d, pa.large_string()) if isinstance(d, list) else d
                d = pa.table({"text": arr})
            d = _table(d)
            self._dist_texts = _strings(d, "text", "distractors")
            self._dist_ids = _strings(d, "doc_id", "distractors") if "doc_id" in d.column_names else None
            distractors = self._dist_texts
        log.info(
            "tokenizing the document pool: %d documents%s",
            len(docs),
            "" if distractors is None else f" and {len(distractors)} distractors",
        )
        s = self.spans
        template = {
            "prefix": s.prefix,
            "user_to_answer": s.user_to_answer,
            "answer_end": s.answer_end,
            "suffix": s.suffix,
            "doc_separator": cfg.doc_separator,
            "query_separator": cfg.query_separator,
            "trim_user": s.trim_user,
            "trim_answer": s.trim_answer,
        }
        self._core = _core.Assembler(
            tokenizer=self._tokenizer,
            template=template,
            documents=docs,
            distractors=distractors,
            max_tokens=cfg.max_tokens,
            budget=kind,
            budget_min=lo,
            budget_max=hi,
            long_documents=cfg.long_documents,
            seed=cfg.seed,
            max_misses=cfg.max_misses,
            margin=cfg.margin,
            with_text=self.messages,
            num_threads=cfg.num_threads,
        )
        self._doc_texts = docs
        self._doc_ids = doc_ids

    def _gold(self, samples: pa.Table, offset: int) -> tuple[pa.Array, pa.Array]:
        """Pool index of each sample's gold document, and the gold text."""
        if self._doc_table is not None:
            if self._core is None:
                texts = _strings(self._doc_table, "text", "documents")
                ids = (
                    _strings(self._doc_table, "doc_id", "documents")
                    if "doc_id" in self._doc_table.column_names
                    else None
                )
                if ids is not None and len(pc.unique(ids)) != len(ids):
                    raise ValueError("documents has repeated doc_id values; give each document one row")
                self._build(texts, ids)
            if self._doc_ids is None:
                raise KeyError("documents needs a doc_id column for samples to name their gold document")
            sample_ids = _strings(samples, "doc_id", "samples")
            gold = pc.index_in(sample_ids, value_set=self._doc_ids)
            missing = _first_null(gold)
            if missing is not None:
                raise KeyError(
                    f"samples row {offset + missing} names doc_id {sample_ids[missing].as_py()!r}, which is not in "
                    "documents; add the document or drop the sample"
                )
            gold = gold.cast(pa.int32())
            return gold, pc.take(self._doc_texts, gold)
        context = _strings(samples, "context", "samples")
        if self._core is None:
            raise RuntimeError("internal: the pool is built from the whole sample table first")
        gold = pc.index_in(context, value_set=self._doc_texts).cast(pa.int32())
        return gold, context

    def assemble_batches(self, samples: Any, *, progress: bool = False) -> Iterator[pa.Table]:
        """Yield assembled tables, one per ``config.batch_size`` samples (memory stays bounded by a batch).

        Output columns: ``input_ids`` list<int32>, ``assistant_masks`` list<int8> (1 on the answer and the
        assistant's end-of-turn token), ``n_documents``, ``gold_position``, ``source``, the samples' ``id`` and
        ``doc_id`` when present, and ``messages`` (list of {role, content}) when ``messages=True``.
        ``progress`` shows a bar over samples (with the tokens written so far).
        """
        table = _table(samples)
        for column in ("query", "answer"):
            _strings(table, column, "samples")
        if self._doc_table is None:
            # The pool is the distinct contexts; a call bringing contexts the pool lacks gets a new pool.
            context = _strings(table, "context", "samples")
            row = _first_null(context)
            if row is not None:
                raise ValueError(f"samples row {row} has a null context; drop or fill it")
            if self._core is None or not pc.all(pc.is_in(context, value_set=self._doc_texts)).as_py():
                self._build(pc.unique(context), None)
        self.last_stats: dict[str, Any] = {}
        log.info("assembling %d samples in batches of %d", table.num_rows, self.config.batch_size)
        bar = progress_bar(table.num_rows, "assemble", "sample", progress)
        try:
            yield from self._assemble_parts(table, bar)
        finally:
            bar.close()
        log.info(
            "assembled %d of %d samples, %d tokens",
            self.last_stats.get("assembled", 0),
            table.num_rows,
            self.last_stats.get("output_tokens", 0),
        )

    def _assemble_parts(self, table: pa.Table, bar: Any) -> Iterator[pa.Table]:
        for start in range(0, max(table.num_rows, 1), self.config.batch_size):
            part = table.slice(start, self.config.batch_size)
            if part.num_rows == 0:
                break
            gold, gold_text = self._gold(part, start)
            excl = None
            if self._dist_texts is not None:
                if self._dist_ids is not None and "doc_id" in part.column_names:
                    excl = pc.index_in(_strings(part, "doc_id", "samples"), value_set=self._dist_ids)
                else:
                    excl = pc.index_in(gold_text, value_set=self._dist_texts)
                excl = pc.fill_null(excl, -1).cast(pa.int32())
            later = _later_turns(part, start)
            tails: tuple[list[Any], list[Any]] | None = None
            reserve = None
            if later is not None:
                tails = self._tails(later, start)
                n_suffix = len(self._suffix_ids or [])
                reserve = pa.array([0 if t is None else len(t) - n_suffix for t in tails[0]], pa.uint32())
            raw, stats = self._core.assemble(
                gold,
                _strings(part, "query", "samples"),
                _strings(part, "answer", "samples"),
                excl,
                start,
                reserve,
            )
            out = pa.RecordBatchReader.from_stream(raw).read_all()
            stats = {**stats, "later_turns": 0, "later_turn_tokens": 0}
            if later is not None and tails is not None and out.num_rows:
                out = self._append_tails(out, later, tails, stats)
            self._merge_stats(stats)
            bar.update(part.num_rows)
            bar.set_postfix(tokens=f"{self.last_stats.get('output_tokens', 0):,}", refresh=False)
            yield self._finish(out, part)

    def _append_tails(
        self,
        out: pa.Table,
        later: list[list[dict[str, str]]],
        tails: tuple[list[Any], list[Any]],
        stats: dict[str, Any],
    ) -> pa.Table:
        """Replace the suffix of each multi-turn sample's first exchange by its later exchanges (and the suffix)."""
        import numpy as np

        suffix = np.asarray(self._suffix_ids or [], np.int32)
        ns = len(suffix)
        ids_col = out.column("input_ids").combine_chunks()
        mask_col = out.column("assistant_masks").combine_chunks()
        rows = out.column("row").to_pylist()
        id_parts, mask_parts, lengths = [], [], []
        for r, j in enumerate(rows):
            ids = ids_col[r].values.to_numpy(zero_copy_only=False)
            mask = mask_col[r].values.to_numpy(zero_copy_only=False)
            tail_ids, tail_mask = tails[0][j], tails[1][j]
            if tail_ids is not None:
                if ns and not np.array_equal(ids[len(ids) - ns :], suffix):
                    raise RuntimeError(f"internal: assembled sample {r} does not end with the template's suffix")
                ids = np.concatenate([ids[: len(ids) - ns], tail_ids.astype(np.int32)])
                mask = np.concatenate([mask[: len(mask) - ns], tail_mask.astype(np.int8)])
                stats["later_turns"] += len(later[j]) // 2
                stats["later_turn_tokens"] += len(tail_ids) - ns
                stats["output_tokens"] += len(tail_ids) - ns
                stats["masked_tokens"] += int(tail_mask.sum())
            id_parts.append(ids)
            mask_parts.append(mask)
            lengths.append(len(ids))
        offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
        if lengths:
            stats["min_tokens"], stats["max_tokens"] = min(lengths), max(lengths)
        ids_type, mask_type = out.schema.field("input_ids").type, out.schema.field("assistant_masks").type
        new_ids = pa.ListArray.from_arrays(offsets, pa.array(np.concatenate(id_parts), pa.int32()), type=ids_type)
        new_mask = pa.ListArray.from_arrays(offsets, pa.array(np.concatenate(mask_parts), pa.int8()), type=mask_type)
        out = out.set_column(out.schema.get_field_index("input_ids"), out.schema.field("input_ids"), new_ids)
        return out.set_column(
            out.schema.get_field_index("assistant_masks"), out.schema.field("assistant_masks"), new_mask
        )

    def _merge_stats(self, stats: dict[str, Any]) -> None:
        acc = self.last_stats
        if not acc:
            acc.update(stats)
            return
        for key in _STATS_SUM:
            acc[key] += stats[key]
        if stats["assembled"]:
            acc["min_tokens"] = (
                min(acc["min_tokens"], stats["min_tokens"])
                if acc["assembled"] > stats["assembled"]
                else stats["min_tokens"]
            )
            acc["max_tokens"] = max(acc["max_tokens"], stats["max_tokens"])

    def _finish(self, out: pa.Table, part: pa.Table) -> pa.Table:
        rows = out.column("row")
        cols: dict[str, Any] = {
            "input_ids": out.column("input_ids"),
            "assistant_masks": out.column("assistant_masks"),
            "n_documents": out.column("n_documents"),
            "gold_position": out.column("gold_position"),
        }
        if "source" in part.column_names:
            cols["source"] = pc.take(part.column("source"), rows)
        else:
            cols["source"] = pa.array(["longmagpie"] * out.num_rows, pa.string())
        for name in ("id", "doc_id"):
            if name in part.column_names:
                cols[name] = pc.take(part.column(name), rows)
        if self.messages:
            later = _later_turns(part, 0)
            extra = [later[j] for j in rows.to_pylist()] if later is not None else None
            cols["messages"] = self._messages(out.column("user_content"), pc.take(part.column("answer"), rows), extra)
        return pa.table(cols)

    def _messages(
        self, user: pa.ChunkedArray, answer: pa.ChunkedArray, later: list[list[dict[str, str]]] | None = None
    ) -> pa.Array:
        roles, contents = [], []
        offsets = [0]
        users = user.to_pylist()
        answers = answer.to_pylist()
        for k, (u, a) in enumerate(zip(users, answers, strict=True)):
            if self.config.system is not None:
                roles.append("system")
                contents.append(self.config.system)
            roles += ["user", "assistant"]
            contents += [u, a]
            for m in later[k] if later is not None else ():
                roles.append(m["role"])
                contents.append(m["content"])
            offsets.append(len(roles))
        struct = pa.StructArray.from_arrays(
            [pa.array(roles, pa.string()), pa.array(contents, pa.large_string())], names=["role", "content"]
        )
        return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), struct)

    def assemble(self, samples: Any, *, progress: bool = False) -> pa.Table:
        """Assemble all samples into one table (see :meth:`assemble_batches`); stats in its metadata."""
        parts = list(self.assemble_batches(samples, progress=progress))
        table = pa.concat_tables(parts) if parts else None
        if table is None:
            raise ValueError("no samples to assemble")
        return attach(table, "assemble", self.params(), self.last_stats)

    def params(self) -> dict[str, Any]:
        """Return the configuration recorded in output metadata."""
        cfg = self.config
        return {
            "max_tokens": cfg.max_tokens,
            "budget": list(cfg.budget()),
            "doc_separator": cfg.doc_separator,
            "query_separator": cfg.query_separator,
            "system": cfg.system,
            "long_documents": cfg.long_documents,
            "seed": cfg.seed,
            "margin": cfg.margin,
            "tokenizer": getattr(self.tokenizer, "name_or_path", ""),
            "spans": json.loads(json.dumps(self.spans.as_dict())),
        }


def assemble(
    samples: Any,
    tokenizer: Any,
    *,
    documents: Any = None,
    distractors: Any = None,
    messages: bool = False,
    progress: bool = False,
    **options: Any,
) -> pa.Table:
    r"""Turn single-document (context, query, answer) samples into multi-document chat samples, token-aware.

    Args:
        samples: table (pyarrow, polars, anything with the Arrow C stream interface) with ``query``, ``answer``
            and either ``context`` (the gold document text) or ``doc_id`` naming a row of ``documents``.
            Optional ``id``, ``doc_id`` and ``source`` columns are carried over.
        tokenizer: transformers fast tokenizer, or a directory with ``tokenizer.json`` and its config.
        documents: gold-document pool with ``doc_id`` and ``text`` (samples then need ``doc_id``).
        distractors: separate distractor corpus (table with ``text``, optional ``doc_id``, or strings);
            default: the pool itself. A sample's gold document is never drawn as its distractor.
        messages: also return the ``messages`` column (the same conversation as text).
        progress: show a progress bar over samples (stderr).
        **options: fields of :class:`AssembleConfig`: ``max_tokens`` (65536), ``target_tokens`` ((8192,
            65536): draw distractors until a target length drawn from this range), or ``num_distractors``
            ((min, max) count, upstream (0, 9)), ``doc_separator`` (upstream's), ``query_separator`` ("\\n\\n";
            upstream glues the query to the last document), ``system``, ``answer_end``, ``long_documents``
            ("truncate": keep both ends of an over-long gold document, or "skip"), ``seed``, ``batch_size``,
            ``num_threads``.

    Returns:
        Table with ``input_ids`` (int32), ``assistant_masks`` (int8; 1 on the answer and its end-of-turn
        token), ``n_documents``, ``gold_position``, ``source`` (+ ``id``, ``doc_id``, ``messages``), ready for
        :func:`longmagpie.pack` / :func:`longmagpie.pack_pmix`. Statistics are in the schema metadata
        (:func:`longmagpie.pack_metadata`).

    """
    assembler = Assembler(tokenizer, documents, distractors, AssembleConfig(**options), messages=messages)
    return assembler.assemble(samples, progress=progress)


def tokenize(texts: Any, tokenizer: Any, *, num_threads: int | None = None) -> pa.Array:
    """Token ids of each text (no special tokens added), in Rust, in parallel with the GIL released.

    Args:
        texts: strings (list, pyarrow array or chunked array); nulls stay null.
        tokenizer: transformers fast tokenizer, or a directory holding one.
        num_threads: worker threads (default: one per core); the result does not depend on it.

    Returns:
        A ``list<int32>`` array, e.g. the ``input_ids`` column of short chat data for :func:`longmagpie.pack_pmix`.

    """
    tok = load_tokenizer(tokenizer)
    if isinstance(texts, list):
        texts = pa.array(texts, pa.large_string())
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    if not isinstance(texts, pa.Array):
        raise TypeError("texts must be a list of strings or a pyarrow string array")
    return _core.tokenize(core_tokenizer(tok), texts, num_threads)
