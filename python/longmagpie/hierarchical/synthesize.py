"""The entry point: documents in, per-document summaries and QAs (resumable), one dataset per target length out.

Layout of ``output_dir``::

    documents/manifest.json        fingerprint of the generation settings (a rerun must match it)
    documents/<key>.json           one document's chunks, summaries, QAs and stage (written after every pass)
    target-<N>.parquet             the conversations of target N tokens (rebuilt from the documents each run)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from longmagpie.assembly import load_tokenizer
from longmagpie.harvest.engines import Engine
from longmagpie.harvest.output import fingerprint, open_output, write_table_atomic
from longmagpie.harvest.prompts import pieces_from_template, stop_token_ids
from longmagpie.harvest.run import build_engine
from longmagpie.harvest.sources import check_columns, plan_shards, read_shard, resolve_inputs
from longmagpie.hierarchical.concatenate import Concatenator, DocQAs, conversations_table
from longmagpie.hierarchical.config import HierarchicalConfig
from longmagpie.hierarchical.generation import DocState, Generator, load_state, new_state, run_passes, save_state
from longmagpie.hierarchical.prompts import DIVERSE_STYLES, resolve_prompts

FORMAT_VERSION = 1


@dataclass
class TargetResult:
    """One curriculum stage: its file, conversation count and token lengths."""

    target: int
    path: str
    conversations: int
    min_tokens: int
    max_tokens: int
    documents_used: int


@dataclass
class HierarchicalReport:
    """What a run did.

    ``engine_calls`` and ``requests`` count this run's ``generate`` calls (0 when every document was done).
    """

    documents: int
    skipped: dict[str, str]
    resumed_documents: int
    engine_calls: int
    requests: int
    calls: list[tuple[str, int]] = field(default_factory=list)
    targets: list[TargetResult] = field(default_factory=list)
    seconds: float = 0.0


def read_documents(config: HierarchicalConfig) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """``(doc_id, text)`` of every input document in input order, and skipped ones (id -> reason).

    Raises:
        ValueError: two documents share an id (both rows named).

    """
    files = resolve_inputs(config.inputs)
    check_columns(files, config.text_column, config.id_column)
    docs: list[tuple[str, str]] = []
    skipped: dict[str, str] = {}
    seen: dict[str, str] = {}
    for shard in plan_shards(files, 10_000):
        for d in read_shard(shard, config.text_column, config.id_column):
            where = f"{shard.file.path} row {d.row}"
            if d.text is None:
                skipped[d.doc_id] = d.skip or "skipped"
                continue
            if d.doc_id in seen:
                raise ValueError(
                    f"document id {d.doc_id!r} occurs twice ({seen[d.doc_id]} and {where}): ids must be unique"
                )
            seen[d.doc_id] = where
            docs.append((d.doc_id, d.text))
    return docs, skipped


def synthesize(
    config: HierarchicalConfig,
    engine: Engine | None = None,
    on_call: Callable[[str, int], None] | None = None,
) -> HierarchicalReport:
    """Run hierarchical synthesis: summaries and QAs per document (resumable), then every target's dataset.

    Args:
        config: the run's settings.
        engine: an engine to use instead of starting ``config.engine`` (tests share one).
        on_call: told ``(pass name, request count)`` before every ``generate``.

    Raises:
        ValueError: bad settings, a generator context too small for a chunk, a target smaller than every
            document, an output directory of another run; the message says what to change.

    """
    start = time.perf_counter()
    prompts = resolve_prompts(config.prompts)
    styles = config.diverse_styles or DIVERSE_STYLES
    if not styles:
        raise ValueError("diverse_styles is empty: give at least one style or leave it unset")
    tokenizer = load_tokenizer(config.tokenizer or config.model)
    stops = stop_token_ids(tokenizer, pieces_from_template(tokenizer, "user", template_kwargs=config.template_kwargs))
    docs, skipped = read_documents(config)
    if not docs:
        raise ValueError(f"no documents with text in {', '.join(config.inputs)} (column {config.text_column!r})")

    out = Path(config.output_dir)
    doc_dir = out / "documents"
    parts = {"format": FORMAT_VERSION, **config.generation_settings(), "prompts": prompts, "styles": list(styles)}
    open_output(doc_dir, fingerprint(parts), parts)
    for stale in doc_dir.glob(".*.tmp"):  # temp files of a killed write (one run per directory at a time)
        stale.unlink(missing_ok=True)

    report = HierarchicalReport(len(docs), skipped, 0, 0, 0)

    def counted(name: str, n: int) -> None:
        report.engine_calls += 1
        report.requests += n
        report.calls.append((name, n))
        if on_call is not None:
            on_call(name, n)

    states: list[DocState] = []
    for doc_id, text in docs:
        state = load_state(doc_dir, doc_id)
        if state is None:
            state = new_state(doc_id, text, config, tokenizer, styles)
            save_state(doc_dir, state)
        else:
            report.resumed_documents += 1
        states.append(state)

    if any(s.stage != "done" for s in states):
        own = engine is None
        eng: Any = engine
        gen = Generator(config, eng, tokenizer, prompts, stops, counted)  # context checked before the engine starts
        gen.check_context()
        if own:
            gen.engine = build_engine(config.harvest_config())
        try:
            run_passes(gen, states, doc_dir)
        finally:
            if own:
                gen.engine.close()

    records = [
        DocQAs(
            s.doc_id,
            s.text,
            [(q.kind, q.question or "", q.answer or "") for q in s.qas],
            [(q.kind, q.question or "", q.answer or "") for q in s.revisits],
        )
        for s in states
    ]
    cat = Concatenator(
        records,
        tokenizer,
        revisit_probability=config.revisit_probability,
        seed=config.seed,
        document_turn=config.document_turn,
        system=config.system,
    )
    for target in config.targets:
        convs, lengths = cat.build(target, config.conversations_per_target, config.min_fill)
        table = conversations_table(convs, lengths, target, tokenizer, config.system)
        path = out / f"target-{target}.parquet"
        write_table_atomic(path, table)
        report.targets.append(
            TargetResult(
                target,
                str(path),
                len(convs),
                min(lengths, default=0),
                max(lengths, default=0),
                sum(len(c.doc_ids) for c in convs),
            )
        )
    report.seconds = time.perf_counter() - start
    return report
