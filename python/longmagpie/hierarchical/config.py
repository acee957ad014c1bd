"""The configuration of a hierarchical synthesis run: one frozen dataclass.

Defaults tagged [S] in the README come from second-hand notes on He et al. (ICLR 2025) and are parameters
for that reason; the others are this toolkit's choices.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from longmagpie.generate.settings import EXECUTION_ENGINE_FIELDS, GenerationConfig, fingerprint_value

# Settings that do not change what is generated per document (engine, paths, concatenation): out of the
# per-document fingerprint, so a rerun with other targets reuses every finished document.
_NOT_GENERATION = EXECUTION_ENGINE_FIELDS | {
    "inputs",
    "output_dir",
    "targets",
    "conversations_per_target",
    "documents_per_pass",
    "min_fill",
    "revisit_probability",
    "document_turn",
    "system",
}


# conversations per target: one count for all, None (as many as fill), per target by mapping or in order
CountSetting = int | None | Mapping[int, int | None] | Sequence[int | None]


@dataclass(frozen=True)
class HierarchicalConfig(GenerationConfig):
    """Everything :func:`~longmagpie.hierarchical.synthesize` needs.

    Like :class:`~longmagpie.harvest.HarvestConfig` it extends :class:`~longmagpie.generate.settings.GenerationConfig`,
    the home of the paths, the model, ``max_model_len``, ``seed``, ``template_kwargs`` and the engine settings (their
    defaults and checks); of those, all after ``id_column`` are keyword-only.

    Attributes:
        inputs: Parquet/JSONL files or directories (as the harvester reads them).
        output_dir: ``documents/`` (one resumable JSON per document) and ``target-<N>.parquet`` go here.
        model: generator model (vLLM name or directory); its tokenizer chunks, prompts and measures lengths.
        tokenizer: tokenizer directory if not the model's.
        text_column: the column holding the document text.
        id_column: the column holding a document id (default: a hash of the text).
        small_chunk_tokens: tokens per small chunk [S: ~4K].
        medium_chunk_small: small chunks per medium chunk (default 4, i.e. ~16K [U: 12-16K recalled]).
        hierarchical_qas: hierarchical QAs per document, global -> medium -> small drill-down [S: 5].
        local_qas: local-specific QAs per document, one small chunk each (toolkit default 2).
        multihop_qas: multi-hop QAs per document, each over ``multihop_chunks`` small chunks (default 1).
        multihop_chunks: small chunks one multi-hop question links (default 2).
        diverse_qas: QAs from the diverse pool per document [S: 9].
        revisit_qas: revisit QAs kept per document for later turns [S: 3].
        revisit_probability: chance that each earlier document is revisited after a new one [S: 0.6].
        targets: conversation lengths in tokens, one dataset each (the curriculum) [S: 180K/350K/650K/1M].
        conversations_per_target: conversations per target: an int for every target, ``None`` (as many as the
            documents fill, each document used at most once per target), a mapping target -> count (targets
            it leaves out: ``None``), or a sequence with one count per target in ``targets`` order.
        min_fill: a conversation is kept when it holds at least ``min_fill * target`` tokens (never more
            than ``target``).
        max_model_len: the generator's context; every prompt plus its generation must fit in it.
        summary_max_tokens / question_max_tokens / answer_max_tokens: generation limits.
        temperature / top_p: sampling of every request (each seeded by document, item and pass).
        seed: run seed.
        prompts: overrides of :data:`~longmagpie.hierarchical.prompts.DEFAULT_PROMPTS` by name.
        diverse_styles: question styles of the diverse pool (default
            :data:`~longmagpie.hierarchical.prompts.DIVERSE_STYLES`).
        document_turn: how a document opens its first user turn (``{document}`` and ``{question}``).
        system: system message of the output conversations (``None``: the template's default).
        template_kwargs: extra chat-template variables for the generator prompts.
        documents_per_pass: documents generated together (their texts in memory at once): the documents are
            processed in groups of this many, each group running its batched passes; the output does not
            depend on it (default 256).
        engine, engine_kwargs, base_url, ..., progress: the keyword-only engine settings the harvester has
            too (:class:`~longmagpie.generate.settings.EngineSettings`: ``vllm``, ``openai``, ``ray``).

    """

    small_chunk_tokens: int = 4096
    medium_chunk_small: int = 4
    hierarchical_qas: int = 5
    local_qas: int = 2
    multihop_qas: int = 1
    multihop_chunks: int = 2
    diverse_qas: int = 9
    revisit_qas: int = 3
    revisit_probability: float = 0.6
    targets: tuple[int, ...] = (180_000, 350_000, 650_000, 1_000_000)
    conversations_per_target: CountSetting = None
    min_fill: float = 0.9
    summary_max_tokens: int = 512
    question_max_tokens: int = 128
    answer_max_tokens: int = 512
    temperature: float = 0.7
    top_p: float = 0.95
    prompts: dict[str, str] = field(default_factory=dict)
    diverse_styles: tuple[str, ...] | None = None
    document_turn: str = "{document}\n\n{question}"
    system: str | None = None
    documents_per_pass: int = 256

    def __post_init__(self) -> None:
        """Check the shared settings (:class:`~longmagpie.generate.settings.GenerationConfig`), then the synthesizer's.

        Tuples are normalised; errors name the setting and what is allowed.
        """
        super().__post_init__()
        targets = (self.targets,) if isinstance(self.targets, int) else tuple(int(t) for t in self.targets)
        object.__setattr__(self, "targets", targets)
        if self.diverse_styles is not None:
            object.__setattr__(self, "diverse_styles", tuple(self.diverse_styles))
        positive = (
            "small_chunk_tokens",
            "medium_chunk_small",
            "multihop_chunks",
            "summary_max_tokens",
            "question_max_tokens",
            "answer_max_tokens",
            "documents_per_pass",
        )
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("hierarchical_qas", "local_qas", "multihop_qas", "diverse_qas", "revisit_qas"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0 (0 turns that kind off), got {getattr(self, name)}")
        if self.hierarchical_qas + self.local_qas + self.multihop_qas + self.diverse_qas == 0:
            raise ValueError(
                "hierarchical_qas, local_qas, multihop_qas and diverse_qas are all 0: a document needs at least "
                "one QA to follow it in a conversation"
            )
        if not targets or any(t < 1 for t in targets):
            raise ValueError(f"targets must be positive token counts, got {self.targets}")
        if not 0 <= self.revisit_probability <= 1:
            raise ValueError(f"revisit_probability must be in [0, 1], got {self.revisit_probability}")
        if not 0 < self.min_fill <= 1:
            raise ValueError(f"min_fill must be in (0, 1], got {self.min_fill}")
        object.__setattr__(self, "conversations_per_target", _counts(self.conversations_per_target, targets))
        if "{document}" not in self.document_turn or "{question}" not in self.document_turn:
            raise ValueError("document_turn must hold {document} and {question}")

    def conversations_for(self, target: int) -> int | None:
        """Conversations to build for ``target`` (``None``: as many as the documents fill)."""
        counts = self.conversations_per_target
        if isinstance(counts, Mapping):
            return counts.get(target)
        if isinstance(counts, tuple):
            return counts[self.targets.index(target)]
        return counts  # type: ignore[return-value]

    def generation_settings(self) -> dict[str, Any]:
        """Return the settings that shape each document's summaries and QAs (its fingerprint's part)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name not in _NOT_GENERATION:
                out[f.name] = fingerprint_value(f.name, getattr(self, f.name))
        return out


def _counts(value: Any, targets: tuple[int, ...]) -> int | dict[int, int | None] | tuple[int | None, ...] | None:
    """Check and normalise ``conversations_per_target`` (mapping keys to ints, a sequence to a tuple).

    Raises:
        ValueError: a count below 1, a key that is not one of ``targets``, a sequence of another length.

    """

    def count(c: Any, where: str) -> int | None:
        if c is None:
            return None
        if isinstance(c, bool) or not isinstance(c, int) or c < 1:
            raise ValueError(f"conversations_per_target{where} must be an int >= 1 or None, got {c!r}")
        return c

    if value is None or isinstance(value, int):
        return count(value, "")
    if isinstance(value, Mapping):
        out: dict[int, int | None] = {}
        for key, c in value.items():
            try:
                target = int(key)
            except (TypeError, ValueError):
                raise ValueError(f"conversations_per_target: key {key!r} is not a target length") from None
            if target not in targets:
                raise ValueError(
                    f"conversations_per_target names target {target}, which is not in targets "
                    f"{list(targets)}: add it to targets or remove the entry"
                )
            out[target] = count(c, f"[{target}]")
        return out
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != len(targets):
            raise ValueError(
                f"conversations_per_target has {len(value)} counts for {len(targets)} targets {list(targets)}: "
                "give one per target (or a mapping target -> count)"
            )
        return tuple(count(c, f"[{t}]") for c, t in zip(value, targets, strict=True))
    raise ValueError(
        f"conversations_per_target must be an int, None, a mapping target -> count or a list, got {value!r}"
    )
