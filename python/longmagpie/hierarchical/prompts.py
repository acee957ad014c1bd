"""Every prompt of hierarchical synthesis, in one place; ``HierarchicalConfig.prompts`` overrides any by name.

Each prompt is the content of one user turn sent to the generator through its chat template. Placeholders:
``{text}`` chunk text, ``{summaries}`` lower-level summaries, ``{material}`` what a question is asked about,
``{previous}`` the earlier question of a drill-down, ``{style}`` a diverse-pool style, ``{question}`` the
question to answer. The paper's own prompt texts were not recovered (see the README); these are ours.
"""

from __future__ import annotations

from collections.abc import Mapping
from string import Formatter

DEFAULT_PROMPTS: dict[str, str] = {
    "summarize_small": (
        "Summarize the following passage in a few sentences. Keep names, numbers and key facts.\n\n"
        "Passage:\n{text}\n\nSummary:"
    ),
    "summarize_medium": (
        "The following are summaries of consecutive parts of a section of a document. Write one summary of the "
        "whole section that keeps its main points.\n\n{summaries}\n\nSection summary:"
    ),
    "summarize_global": (
        "The following are summaries of consecutive sections of a document. Write a summary of the whole "
        "document: its subject, structure and main points.\n\n{summaries}\n\nDocument summary:"
    ),
    "question_global": (
        "Here is a summary of a whole document.\n\n{material}\n\nWrite one question about the document as a "
        "whole (its subject, purpose or overall argument). Write only the question."
    ),
    "question_medium": (
        "Here is a summary of one section of a document.\n\n{material}\n\nAn earlier question about the "
        "document was: {previous}\n\nWrite one follow-up question that narrows it down to this section. Write "
        "only the question."
    ),
    "question_small": (
        "Here is a passage from a document.\n\n{material}\n\nAn earlier question about its section was: "
        "{previous}\n\nWrite one follow-up question about a specific detail of this passage. Write only the "
        "question."
    ),
    "question_local": (
        "Here is a passage from a document.\n\n{material}\n\nWrite one question that can only be answered from "
        "a specific detail of this passage. Write only the question."
    ),
    "question_multihop": (
        "Here are several passages from one document.\n\n{material}\n\nWrite one question whose answer needs "
        "information from more than one of these passages. Write only the question."
    ),
    "question_diverse": (
        "Here is material from a document.\n\n{material}\n\nWrite one question about it of this kind: {style}. "
        "Write only the question."
    ),
    "answer": ("Answer the question using only the material below.\n\nMaterial:\n{material}\n\nQuestion: {question}"),
}

PLACEHOLDERS: dict[str, frozenset[str]] = {
    "summarize_small": frozenset({"text"}),
    "summarize_medium": frozenset({"summaries"}),
    "summarize_global": frozenset({"summaries"}),
    "question_global": frozenset({"material"}),
    "question_medium": frozenset({"material", "previous"}),
    "question_small": frozenset({"material", "previous"}),
    "question_local": frozenset({"material"}),
    "question_multihop": frozenset({"material"}),
    "question_diverse": frozenset({"material", "style"}),
    "answer": frozenset({"material", "question"}),
}

DIVERSE_STYLES: tuple[str, ...] = (
    "a factual question about a name, number or date",
    "a question asking why something happened",
    "a question asking how something works or was done",
    "a question comparing two things",
    "a question asking for a list of items",
    "a yes/no question that needs justification",
    "a question about cause and effect",
    "a question asking to explain a term or concept",
    "a question about the consequences or implications",
    "a question asking for the sequence of events",
)


def resolve_prompts(overrides: Mapping[str, str]) -> dict[str, str]:
    """Return the defaults with ``overrides`` applied, each checked to use exactly its own placeholders.

    Raises:
        ValueError: an unknown prompt name, or a prompt with a missing or unknown placeholder.

    """
    unknown = sorted(set(overrides) - set(DEFAULT_PROMPTS))
    if unknown:
        raise ValueError(f"unknown prompt name(s) {', '.join(unknown)}; prompts: {', '.join(DEFAULT_PROMPTS)}")
    out = {**DEFAULT_PROMPTS, **overrides}
    for name, text in overrides.items():
        used = {f for _, f, _, _ in Formatter().parse(text) if f is not None}
        if used != PLACEHOLDERS[name]:
            raise ValueError(
                f"prompt {name!r} must use exactly the placeholders {sorted(PLACEHOLDERS[name])}, it uses "
                f"{sorted(used)} (write literal braces as {{{{ and }}}})"
            )
    return out
