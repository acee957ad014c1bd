"""Model-free quality measures of a hierarchical run, from its per-document states.

**Summaries**, per level of the summary tree (``small``, ``medium``, ``level-3``, ``level-4``, ... up to
``global``; a document's levels above medium are ``level-<depth>`` but its top one is always ``global``):

* ``compression``: summary length over the length of the document text the summary stands for (a small chunk,
  a medium chunk, a group's chunks, the whole document), in tokens of the run's tokenizer (``unit`` says
  ``characters`` when no tokenizer was given); ``input_compression``: over the summaries it was written from
  (for ``small``, the chunk itself). Non-empty summaries only.
* ``grounding``: :func:`longmagpie.measures.grounding` of the summary in the document text it stands for (its
  vocabulary share); ``input_grounding``: in the union of the content words of the summaries it was written
  from (for ``small``, the chunk). Summaries without content words have none (``n`` counts the others).

**Questions**, per kind (:data:`~longmagpie.hierarchical.questions.KINDS`, revisit QAs included) and ``all``:
grounding of the question in its *material* (the chunk, passages or summary it was asked about, as the
question and answer prompts showed it), in the whole document, and of the answer in the material; the opener
distribution of the non-empty questions (:func:`longmagpie.measures.opener`, shares largest first); counts of
questions, empty questions and empty answers.

Every distribution is ``{"n", "mean", "p50"}`` (``None`` when ``n`` is 0); floats are rounded to 4 digits. The
result depends on the states only (not their order for the means, by :func:`math.fsum`), so a rerun that resumes
every document measures the same. The measures are meant for finished states (stage ``done``): what a state
lacks counts as empty.

Grounding in a document text is exact without scanning the text once per level: each small chunk is scanned once
(its content words apart from the word runs touching its two ends), and a span of chunks joins the runs that
its inner chunk boundaries cut (chunks are cut at token starts, often inside a word).
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from longmagpie import measures
from longmagpie.hierarchical.generation import STAGES, DocState, _material
from longmagpie.hierarchical.questions import KINDS, QAItem

#: Counts the tokens of each text (the run's tokenizer, no special tokens).
TokenCounter = Callable[[list[str]], list[int]]

# the word pattern of the measures (a run of letters and digits): chunk-boundary joining must cut words as it does
_WORD = measures.WORD_PATTERN


def token_counter(tokenizer: Any) -> TokenCounter:
    """Return a :data:`TokenCounter` of a Hugging Face tokenizer (a batch call, no special tokens)."""

    def count(texts: list[str]) -> list[int]:
        if not texts:
            return []
        return [len(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]

    return count


@dataclass(frozen=True)
class _ChunkWords:
    """A small chunk's content words apart from its edge word runs, and those runs (``""`` when none)."""

    core: frozenset[str]
    head: str
    tail: str
    solid: bool  # the whole chunk is one word run (or empty): it joins its neighbours' runs


def _chunk_words(text: str) -> _ChunkWords:
    first = _WORD.match(text)
    head = first.group() if first else ""
    if len(head) == len(text):
        return _ChunkWords(frozenset(), head, head, True)
    tail = ""
    if _WORD.fullmatch(text[-1]):
        start = len(text) - 1
        while start > 0 and _WORD.fullmatch(text[start - 1]):
            start -= 1
        tail = text[start:]
    # the text between the edge runs starts and ends at non-word characters: its words are the chunk's others
    return _ChunkWords(measures.content_words(text[len(head) : len(text) - len(tail)]), head, tail, False)


def _span_words(chunks: Sequence[_ChunkWords], span: Iterable[int]) -> frozenset[str]:
    """``measures.content_words`` of the chunks of ``span`` joined in that order, from their parts."""
    words: set[str] = set()
    run = ""
    for k in span:
        c = chunks[k]
        if c.solid:
            run += c.head
            continue
        run += c.head
        if run:
            words |= measures.content_words(run)
        words |= c.core
        run = c.tail
    if run:
        words |= measures.content_words(run)
    return frozenset(words)


def _is_empty(text: str | None) -> bool:
    return not (text or "").strip()


def _r(x: float) -> float:
    return round(float(x), 4)


def _stats(values: Sequence[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0, "mean": None, "p50": None}
    return {"n": len(values), "mean": _r(math.fsum(values) / len(values)), "p50": _r(statistics.median(values))}


def _shares(counts: Counter[str]) -> dict[str, float]:
    total = sum(counts.values())
    return {k: _r(v / total) for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))} if total else {}


@dataclass
class _Level:
    summaries: int = 0
    empty: int = 0
    compression: list[float] = field(default_factory=list)
    input_compression: list[float] = field(default_factory=list)
    grounding: list[float] = field(default_factory=list)
    input_grounding: list[float] = field(default_factory=list)

    def result(self) -> dict[str, Any]:
        return {
            "summaries": self.summaries,
            "empty": self.empty,
            "compression": _stats(self.compression),
            "input_compression": _stats(self.input_compression),
            "grounding": _stats(self.grounding),
            "input_grounding": _stats(self.input_grounding),
        }


@dataclass
class _Kind:
    questions: int = 0
    empty_questions: int = 0
    empty_answers: int = 0
    question_grounding: list[float] = field(default_factory=list)
    question_document_grounding: list[float] = field(default_factory=list)
    answer_grounding: list[float] = field(default_factory=list)
    openers: Counter[str] = field(default_factory=Counter)

    def result(self) -> dict[str, Any]:
        return {
            "questions": self.questions,
            "empty_questions": self.empty_questions,
            "empty_answers": self.empty_answers,
            "question_grounding": _stats(self.question_grounding),
            "question_document_grounding": _stats(self.question_document_grounding),
            "answer_grounding": _stats(self.answer_grounding),
            "openers": _shares(self.openers),
        }


def _level_order(name: str) -> tuple[int, int]:
    if name == "small":
        return (0, 0)
    if name == "medium":
        return (1, 0)
    if name == "global":
        return (3, 0)
    return (2, int(name.split("-")[1]))


class QualityMeter:
    """Adds up the measures of documents one state at a time (:meth:`add`); :meth:`result` gives the dict.

    Args:
        tokenizer: the run's tokenizer (the one whose counts the states' ``small_tokens`` hold): lengths in
            tokens; ``None``: in characters.
        count_tokens: counts tokens of texts instead of ``tokenizer`` (tests); it must count as the run's
            tokenizer did, since the chunks' counts come from the states.

    """

    def __init__(self, tokenizer: Any = None, *, count_tokens: TokenCounter | None = None) -> None:
        """Start with no documents."""
        if count_tokens is None and tokenizer is not None:
            count_tokens = token_counter(tokenizer)
        self.count_tokens = count_tokens
        self.documents = 0
        self._levels: dict[str, _Level] = {}
        self._kinds: dict[str, _Kind] = {}
        self._all = _Kind()

    def add(self, state: DocState) -> None:
        """Measure one document's summaries and QAs."""
        self.documents += 1
        chunks = [_chunk_words(t) for t in state.small]
        tree = _tree(state)
        texts = [s for _, summaries, _, _ in tree for s in summaries]
        if self.count_tokens is not None:
            lengths = list(self.count_tokens(texts))
            if len(lengths) != len(texts):
                raise ValueError(f"count_tokens gave {len(lengths)} counts for {len(texts)} texts")
            source_len = state.small_tokens
        else:
            lengths = [len(t) for t in texts]
            source_len = [len(t) for t in state.small]
        pos = 0
        below_lengths: list[int] = []
        below_words: list[frozenset[str]] = []
        for name, summaries, spans, inputs in tree:
            level = self._levels.setdefault(name, _Level())
            own_lengths = lengths[pos : pos + len(summaries)]
            pos += len(summaries)
            own_words = [measures.content_words(s) for s in summaries]
            for i, (summary, words, n) in enumerate(zip(summaries, own_words, own_lengths, strict=True)):
                level.summaries += 1
                if _is_empty(summary):
                    level.empty += 1
                    continue
                source = _span_words(chunks, spans[i])
                source_n = sum(source_len[k] for k in spans[i])
                if inputs is None:
                    input_words, input_n = source, source_n
                else:
                    input_words = frozenset().union(*(below_words[j] for j in inputs[i]))
                    input_n = sum(below_lengths[j] for j in inputs[i])
                if source_n > 0:
                    level.compression.append(n / source_n)
                if input_n > 0:
                    level.input_compression.append(n / input_n)
                for values, target in ((level.grounding, source), (level.input_grounding, input_words)):
                    g = measures.coverage(words, target)
                    if g is not None:
                        values.append(g)
            below_lengths, below_words = own_lengths, own_words
        document = _span_words(chunks, range(len(chunks)))
        for item in (*state.qas, *state.revisits):
            self._add_qa(state, item, chunks, document)

    def _add_qa(self, state: DocState, item: QAItem, chunks: list[_ChunkWords], document: frozenset[str]) -> None:
        material = _material_words(state, item, chunks)
        question = measures.content_words(item.question or "")
        answer = measures.content_words(item.answer or "")
        q_material = measures.coverage(question, material)
        q_document = measures.coverage(question, document)
        a_material = measures.coverage(answer, material)
        for kind in (self._kinds.setdefault(item.kind, _Kind()), self._all):
            kind.questions += 1
            if _is_empty(item.question):
                kind.empty_questions += 1
            else:
                kind.openers[measures.opener(item.question or "")] += 1
            if _is_empty(item.answer):
                kind.empty_answers += 1
            for values, g in (
                (kind.question_grounding, q_material),
                (kind.question_document_grounding, q_document),
                (kind.answer_grounding, a_material),
            ):
                if g is not None:
                    values.append(g)

    def result(self) -> dict[str, Any]:
        """Return the measures so far (module doc): plain ints, floats rounded to 4 digits, dicts, ``None``."""
        levels = {name: self._levels[name].result() for name in sorted(self._levels, key=_level_order)}
        order = [k for k in KINDS if k in self._kinds] + sorted(k for k in self._kinds if k not in KINDS)
        questions = {k: self._kinds[k].result() for k in order}
        questions["all"] = self._all.result()
        return {
            "documents": self.documents,
            "unit": "characters" if self.count_tokens is None else "tokens",
            "summaries": levels,
            "questions": questions,
            "empty": {
                "summaries": sum(v.empty for v in self._levels.values()),
                "questions": self._all.empty_questions,
                "answers": self._all.empty_answers,
            },
        }


def hierarchical_quality(
    states: Iterable[DocState], tokenizer: Any = None, *, count_tokens: TokenCounter | None = None
) -> dict[str, Any]:
    """Measure a run's documents (see the module doc for the keys of the dict returned).

    Args:
        states: the documents' states (any iterable: they are measured one at a time).
        tokenizer: the run's tokenizer, for lengths in tokens (``None``: characters).
        count_tokens: a token counter instead of ``tokenizer`` (see :class:`QualityMeter`).

    """
    meter = QualityMeter(tokenizer, count_tokens=count_tokens)
    for state in states:
        meter.add(state)
    return meter.result()


# one level of a document's summary tree: name, summaries, the small chunks each stands for (in document order),
# the indices into the level below each was written from (None for small: written from its chunk)
_TreeLevel = tuple[str, list[str], list[list[int]], list[list[int]] | None]


def _tree(state: DocState) -> list[_TreeLevel]:
    n_small = len(state.small)
    smalls = list(state.small_summaries)
    tree: list[_TreeLevel] = [("small", smalls, [[i] for i in range(min(n_small, len(smalls)))], None)]
    if not state.medium_summaries:
        return tree
    tree.append(("medium", list(state.medium_summaries), state.medium, state.medium))
    levels = state.levels
    if not levels and STAGES.index(state.stage) >= STAGES.index("global"):
        # a state written before the summary tree: the global summary was written from every medium summary
        levels = [{"groups": [list(range(len(state.medium_summaries)))], "summaries": [state.global_summary]}]
    spans = state.medium
    for depth, level in enumerate(levels, start=3):
        groups = [list(g) for g in level["groups"]]
        top = depth == len(levels) + 2 and len(groups) == 1
        spans = [[k for j in g for k in spans[j]] for g in groups]
        tree.append(("global" if top else f"level-{depth}", list(level["summaries"]), spans, groups))
    return tree


def _material_words(state: DocState, item: QAItem, chunks: list[_ChunkWords]) -> frozenset[str]:
    """Content words of the item's material (``_material``), a small chunk's from its parts."""
    if item.level in ("small", "local", "diverse") and item.sources and item.sources[0] >= 0:
        return _span_words(chunks, item.sources[:1])
    try:
        return measures.content_words(_material(state, item))
    except IndexError:  # an unfinished state: the summary it asks about is not written yet
        return frozenset()


def summary_lines(quality: Mapping[str, Any]) -> list[str]:
    """Format a hierarchical run's quality measures (summary compression and grounding, question grounding)."""
    if not quality or not quality.get("summaries"):
        return []
    levels = quality["summaries"]
    compress = ", ".join(
        f"{k} {v['compression']['p50']:.2f}" for k, v in levels.items() if v["compression"]["p50"] is not None
    )
    questions = quality["questions"]["all"]
    empty = quality["empty"]
    return [
        f"compress  {compress} (summary / source {quality['unit']}, median)",
        "grounding summaries "
        + ", ".join(f"{k} {measures.percent(v['grounding']['mean'])}" for k, v in levels.items())
        + f"; questions {measures.percent(questions['question_grounding']['mean'])}, answers "
        + f"{measures.percent(questions['answer_grounding']['mean'])} (words found in their material)",
        f"empty     {empty['summaries']:,} summaries, {empty['questions']:,} questions, {empty['answers']:,} answers",
    ]
