"""The entry point: documents in, per-document summaries and QAs (resumable), one dataset per target length out.

Layout of ``output_dir``::

    documents/manifest.json        fingerprint of the generation settings (a rerun must match it)
    documents/<key>.json           one document's chunks, summaries, QAs and stage (written after every pass)
    target-<N>.parquet             the conversations of target N tokens (rebuilt from the documents each run)
    quality.json                   model-free quality measures of every document (rebuilt each run)
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from longmagpie._progress import progress_bar
from longmagpie.assembly.tokenizer import load_tokenizer
from longmagpie.generate.engines import Engine, engine_for
from longmagpie.generate.resume import fingerprint, open_output
from longmagpie.generate.sources import check_columns, plan_shards, read_shard, resolve_inputs
from longmagpie.hierarchical.concatenate import Concatenator, DocQAs, conversations_table
from longmagpie.hierarchical.config import HierarchicalConfig
from longmagpie.hierarchical.generation import DocState, Generator, load_state, new_state, run_passes, save_state
from longmagpie.hierarchical.prompts import DIVERSE_STYLES, resolve_prompts
from longmagpie.hierarchical.quality import QualityMeter
from longmagpie.io.files import write_bytes_atomic, write_parquet_atomic
from longmagpie.templates.prompts import pieces_from_template, stop_token_ids

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
#: The quality measures' file in the output directory.
QUALITY_FILE = "quality.json"


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
    ``quality`` holds the model-free measures of every document's summaries and QAs, resumed ones included
    (:func:`~longmagpie.hierarchical.quality.hierarchical_quality`; also written to ``quality.json``).
    """

    documents: int
    skipped: dict[str, str]
    resumed_documents: int
    engine_calls: int
    requests: int
    calls: list[tuple[str, int]] = field(default_factory=list)
    targets: list[TargetResult] = field(default_factory=list)
    seconds: float = 0.0
    quality: dict[str, Any] = field(default_factory=dict)

    @property
    def paths(self) -> dict[int, str]:
        """The written ``target-<N>.parquet`` file of every target."""
        return {t.target: t.path for t in self.targets}

    @property
    def conversations(self) -> dict[int, int]:
        """Conversations written per target."""
        return {t.target: t.conversations for t in self.targets}


def iter_documents(config: HierarchicalConfig, skipped: dict[str, str]) -> Iterator[tuple[str, str]]:
    """``(doc_id, text)`` of every input document in input order, read shard by shard; skipped ones go to ``skipped``.

    Raises:
        ValueError: two documents share an id (both rows named).

    """
    files = resolve_inputs(config.inputs)
    check_columns(files, config.text_column, config.id_column)
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
            yield d.doc_id, d.text


def read_documents(config: HierarchicalConfig) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """Every input document at once (:func:`iter_documents` as a list) and the skipped ones (id -> reason)."""
    skipped: dict[str, str] = {}
    return list(iter_documents(config, skipped)), skipped


def document_groups(docs: Iterable[tuple[str, str]], size: int) -> Iterator[list[tuple[str, str]]]:
    """``docs`` in consecutive groups of ``size`` (the last may be smaller)."""
    group: list[tuple[str, str]] = []
    for doc in docs:
        group.append(doc)
        if len(group) == size:
            yield group
            group = []
    if group:
        yield group


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

    out = Path(config.output_dir)
    doc_dir = out / "documents"
    parts = {"format": FORMAT_VERSION, **config.generation_settings(), "prompts": prompts, "styles": list(styles)}
    open_output(doc_dir, fingerprint(parts), parts)
    # temp files of a killed write (one run per directory at a time)
    for stale in [*doc_dir.glob(".*.tmp"), *out.glob(f".{QUALITY_FILE}.*.tmp")]:
        stale.unlink(missing_ok=True)

    skipped: dict[str, str] = {}
    report = HierarchicalReport(0, skipped, 0, 0, 0)

    def counted(name: str, n: int) -> None:
        report.engine_calls += 1
        report.requests += n
        report.calls.append((name, n))
        if on_call is not None:
            on_call(name, n)

    gen: Any = Generator(config, engine, tokenizer, prompts, stops, counted)
    own, checked = engine is None, False
    doc_ids: list[str] = []
    bar = progress_bar(None, "hierarchical documents", "doc", config.progress)
    try:
        # a group's texts and states at a time; the engine starts with the first group that has work
        for group in document_groups(iter_documents(config, skipped), config.documents_per_pass):
            states: list[DocState] = []
            for doc_id, text in group:
                state = load_state(doc_dir, doc_id)
                if state is None:
                    state = new_state(doc_id, text, config, tokenizer, styles)
                    save_state(doc_dir, state)
                else:
                    report.resumed_documents += 1
                states.append(state)
                doc_ids.append(doc_id)
            if any(s.stage != "done" for s in states):
                if not checked:
                    gen.check_context()  # before the engine starts
                    checked = True
                if gen.engine is None:
                    gen.engine = engine_for(config)
                log.info(
                    "documents %d-%d: generating (%d resumed so far)",
                    len(doc_ids) - len(states),
                    len(doc_ids),
                    report.resumed_documents,
                )
                run_passes(gen, states, doc_dir)
            bar.update(len(states))
    finally:
        bar.close()
        if own and gen.engine is not None:
            gen.engine.close()
    if not doc_ids:
        raise ValueError(f"no documents with text in {', '.join(config.inputs)} (column {config.text_column!r})")
    report.documents = len(doc_ids)

    records = []
    meter = QualityMeter(tokenizer)
    for doc_id in doc_ids:
        s = load_state(doc_dir, doc_id)
        if s is None or s.stage != "done":
            raise RuntimeError(f"document {doc_id!r}: its state in {doc_dir} is missing or unfinished after generation")
        qas = [(q.kind, q.question or "", q.answer or "") for q in s.qas]
        records.append(DocQAs(s.doc_id, s.text, qas, [(q.kind, q.question or "", q.answer or "") for q in s.revisits]))
        meter.add(s)
    report.quality = meter.result()
    write_bytes_atomic(out / QUALITY_FILE, (json.dumps(report.quality, indent=1) + "\n").encode())
    cat = Concatenator(
        records,
        tokenizer,
        revisit_probability=config.revisit_probability,
        seed=config.seed,
        document_turn=config.document_turn,
        system=config.system,
    )
    for target in config.targets:
        convs, lengths = cat.build(target, config.conversations_for(target), config.min_fill)
        table = conversations_table(convs, lengths, target, tokenizer, config.system)
        path = out / f"target-{target}.parquet"
        write_parquet_atomic(table, path, overwrite=True)
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
