"""The harvest configuration: one frozen dataclass with defaults that follow the upstream recipe."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from longmagpie.generate.settings import EXECUTION_ENGINE_FIELDS, GenerationConfig, fingerprint_value
from longmagpie.generate.sources import InputFormat
from longmagpie.harvest.filters import DEFAULT_ANSWER_MARKERS, DedupScope, QuestionMarkRule
from longmagpie.templates.prompts import Placement

# Settings that change how the work is executed but not what is generated: left out of the fingerprint, so a
# run can resume on another engine, another server or with another concurrency.
EXECUTION_FIELDS = EXECUTION_ENGINE_FIELDS | {"output_dir"}

# Settings added after the first release, with their defaults: left out of the fingerprint while at the default,
# so an output directory written before they existed resumes, and ``turns=1`` writes what it always wrote.
ADDED_LATER: dict[str, Any] = {"turns": 1, "steer": (), "steer_shares": None, "steer_separator": "\n\n"}


@dataclass(frozen=True)
class HarvestConfig(GenerationConfig):
    """Everything a harvest run needs; defaults follow LongMagpie's ``infer_demo.py`` where it has one.

    The fields it shares with the hierarchical synthesizer (``inputs`` to ``id_column``, ``max_model_len``, ``seed``,
    ``template_kwargs``, the engine settings) come with their defaults and checks from
    :class:`~longmagpie.generate.settings.GenerationConfig`; all but the first six are keyword-only.

    Attributes:
        inputs: Parquet/JSONL files or directories of them (sorted; directories searched recursively).
        output_dir: where shards, their done-markers and the manifest go.
        model: vLLM model directory or name (for ``openai``: the tokenizer source unless ``tokenizer`` is set).
        tokenizer: tokenizer directory if not the model's.
        text_column: the column holding the document text.
        id_column: the column holding a document id (default: a hash of the text).
        input_format: ``auto`` tells Parquet from JSONL by the file suffix.
        shard_rows: documents per output shard (the unit of resumption).
        template: ``auto`` (the tokenizer's chat template, cut at sentinels) or a preset name.
        chat_template: Jinja text that replaces the tokenizer's template (``template='auto'``).
        template_kwargs: extra variables for the template (e.g. ``{"enable_thinking": False}``).
        placement: ``system`` (upstream: document in the system turn, then the user opener) or ``user``.
        user_separator: text between the document and the query for ``user`` placement.
        queries_per_doc: questions asked per document (each its own seeded requests).
        query_candidates: most candidate queries generated per question, each its own seeded request, in rounds:
            round ``c`` asks candidate ``c`` of every question still without an accepted query (one batched
            generate per round; the document's prefix computed in round 0 is reused from the prefix cache); the
            first candidate that passes the filters and is no duplicate is kept. One candidate is LongMagpie's
            own recipe; a weak model needs a few, a strong one rarely more than the first.
        answer_candidates: most answers generated per accepted question, in rounds as the queries are: a
            question whose answer was rejected (unfinished, empty) gets another seeded answer.
        turns: exchanges per conversation (1: single-turn rows, as LongMagpie). Each further turn shows the model
            the conversation so far with a new user turn opened, so it writes a follow-up question, then asks
            for its answer: one batched generate per turn and pass per shard, one seeded candidate each (the
            conversation's prefix, document included, comes from the prefix cache). A follow-up that fails the
            query filters or repeats an earlier question of its conversation, or whose answer fails the answer
            filters, ends that conversation at its last accepted turn (counted). Rows then carry ``messages``
            and ``turns`` too.
        steer: question-kind instructions ("Ask about a specific detail.", ...); each conversation draws one
            (seeded by the run seed, its document and sample), placed before the document in the prompts that
            ask for questions (the answer prompts, like the rows, do not show it) and recorded in the row's
            ``steer`` column. Empty: no steering.
        steer_shares: target share of each ``steer`` instruction (weights, normalised; default equal).
        steer_separator: text between the instruction and the document.
        max_model_len: the model context; ``max_doc_tokens`` defaults to half of it (upstream).
        max_doc_tokens: documents are cut to this many tokens before the prompt (``None``: ``max_model_len // 2``).
        query_max_tokens / answer_max_tokens: generation limits per pass.
        query_temperature / query_top_p / answer_temperature / answer_top_p: sampling per pass.
        seed: run seed; each request's seed derives from it, the document id, the sample and the pass.
        question_mark: ``first``, ``last``, ``upstream`` or ``off`` (see
            :class:`~longmagpie.harvest.filters.QueryFilter`).
        min_query_chars / max_query_chars: query length bounds after cleaning.
        answer_markers: run-on queries are cut at these.
        dedup: exact-duplicate queries removed ``global``-ly (within and across shards), per ``document``, or
            ``off``.
        allow_unfinished_answers: keep answers cut by ``answer_max_tokens``.
        min_answer_chars: shorter answers are rejected.
        strip_reasoning: cut a thinking model's ``<think>...</think>`` reasoning off each answer (an answer whose
            reasoning never closes is rejected, counted); ``False`` keeps answers as generated.
        engine, engine_kwargs, base_url, ..., progress: the keyword-only engine settings of
            :class:`~longmagpie.generate.settings.EngineSettings` (``progress``: tqdm bars over shards and
            documents).

    """

    input_format: InputFormat = "auto"
    shard_rows: int = 1000
    template: str = "auto"
    chat_template: str | None = None
    placement: Placement = "system"
    user_separator: str = "\n\n"
    queries_per_doc: int = 1
    query_candidates: int = 4
    answer_candidates: int = 2
    max_doc_tokens: int | None = None
    query_max_tokens: int = 512
    answer_max_tokens: int = 4096
    query_temperature: float = 0.8
    query_top_p: float = 1.0
    answer_temperature: float = 0.8
    answer_top_p: float = 1.0
    question_mark: QuestionMarkRule = "first"
    min_query_chars: int = 8
    max_query_chars: int = 1500
    answer_markers: tuple[str, ...] = DEFAULT_ANSWER_MARKERS
    dedup: DedupScope = "global"
    allow_unfinished_answers: bool = False
    min_answer_chars: int = 1
    strip_reasoning: bool = True
    turns: int = 1
    steer: tuple[str, ...] = ()
    steer_shares: tuple[float, ...] | None = None
    steer_separator: str = "\n\n"

    def __post_init__(self) -> None:
        """Check the shared settings (:class:`~longmagpie.generate.settings.GenerationConfig`), then the harvest's.

        Errors say which setting and what is allowed.
        """
        super().__post_init__()
        object.__setattr__(self, "answer_markers", tuple(self.answer_markers))
        object.__setattr__(self, "steer", (self.steer,) if isinstance(self.steer, str) else tuple(self.steer))
        if self.steer_shares is not None:
            object.__setattr__(self, "steer_shares", tuple(float(w) for w in self.steer_shares))
        choices = {
            "placement": ("system", "user"),
            "question_mark": ("first", "last", "upstream", "off"),
            "dedup": ("global", "document", "off"),
            "input_format": ("auto", "parquet", "jsonl"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r}: choose one of {', '.join(allowed)}")
        counts = ("shard_rows", "queries_per_doc", "query_candidates", "answer_candidates", "turns")
        for name in (*counts, "query_max_tokens", "answer_max_tokens"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_doc_tokens is not None and self.max_doc_tokens < 1:
            raise ValueError(f"max_doc_tokens must be at least 1, got {self.max_doc_tokens}")
        for name in ("query_temperature", "answer_temperature"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("query_top_p", "answer_top_p"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)}")
        if self.min_query_chars > self.max_query_chars:
            raise ValueError("min_query_chars is above max_query_chars")
        if any(not isinstance(t, str) or not t.strip() for t in self.steer):
            raise ValueError("steer must hold non-empty instruction strings")
        if len(set(self.steer)) != len(self.steer):
            raise ValueError("steer holds the same instruction twice: give each once (use steer_shares for weights)")
        if self.steer_shares is not None:
            if len(self.steer_shares) != len(self.steer):
                raise ValueError(
                    f"steer_shares has {len(self.steer_shares)} weights for {len(self.steer)} steer instructions: "
                    "give one weight per instruction"
                )
            if any(not w >= 0 for w in self.steer_shares) or not sum(self.steer_shares) > 0:
                raise ValueError(f"steer_shares must be weights >= 0 with a positive sum, got {self.steer_shares}")

    @property
    def doc_budget(self) -> int:
        """Document tokens kept (the middle of longer documents is cut): upstream keeps half the context."""
        return self.max_doc_tokens if self.max_doc_tokens is not None else self.max_model_len // 2

    def output_settings(self) -> dict[str, Any]:
        """Return the settings that shape the output (the fingerprint's part of the config)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name in EXECUTION_FIELDS or (f.name in ADDED_LATER and value == ADDED_LATER[f.name]):
                continue
            out[f.name] = fingerprint_value(f.name, value)
        return out
