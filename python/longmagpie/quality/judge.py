"""The judge step of the quality stage: a judge model tags every harvest row and checks its answer against its document.

For each row (``context``, ``query``, ``answer``, as the harvester writes them):

1. **Tags**: the judge reads the document (its head and tail, up to ``max_doc_tokens``), the question and the
   answer, and writes a JSON object: ``quality`` (1-5), ``difficulty`` (1-5) and ``category`` (one of
   :data:`TAXONOMY`), each with a one-sentence rationale. Where the engine has structured output (vLLM offline, its
   server, Ray Data) the object is constrained to :data:`TAG_PATTERN`; the text is then parsed strictly either way
   (:func:`parse_tags`): a judgement that is not exactly such an object is counted as unparsed, never guessed.
2. **Faithfulness**: the answer is split into statements (:func:`split_statements`); for each, the ``top_k``
   chunks of ``chunk_tokens`` tokens of the row's own document that BM25 ranks highest (``bm25s``) are shown to the
   judge, which answers ``supported``, ``partly`` or ``unsupported`` (1, 0.5, 0; constrained to those words). The
   answer's ``faithfulness`` is the mean over its parsed verdicts; the model-free ``answer_grounding`` of the
   harvest rows is reported beside it (:func:`agreement`), so their agreement can be seen.
3. **Likelihood signals** (``likelihood``): the judge is not asked but read, as the conditional-perplexity filters do
   (Cherry LLM's instruction-following difficulty): ``support_gain`` is the mean over the answer's statements of
   how much more likely the judge finds a statement after its top passages than alone (mean log-probability per
   token, in nats); ``question_gain`` the same for the question after the document; ``end_logprob`` the
   log-probability that the answer's turn ends where it does, after the document and the question. They need the
   engine's prompt log-probabilities (vLLM offline and its server, tested; Ray Data, checked once), cost one prefill
   each, and separate bad rows even with a 135M judge where its verdicts do not (docs/quality.md, "The judge:
   measured").
4. **Thresholds** (``min_quality``, ``min_difficulty``, ``categories``, ``min_faithfulness``): a row that fails one is
   removed with the reason of the first it fails (``judge:quality``, ..., ``judge:unparsed_tags`` when a tag
   threshold is set and the tags did not parse), counted; ``keep_all`` keeps every row with its scores.

The run is resumable exactly like a harvest (:mod:`longmagpie.generate.resume`): the input rows are cut into shards
of ``shard_rows``; each shard's kept rows are written atomically to ``shard-NNNNN.parquet``, its removed rows to
``_removed/shard-NNNNN.parquet`` (hidden from the stages that read the directory), then its marker with the counts.
A rerun skips finished shards and refuses a directory whose fingerprint (settings, prompts, judge model, inputs)
differs. Every request carries a seed derived from the run seed and the row id.

How this differs from the upstream scripts: LongMagpie keeps any answer that finished; Magpie tags input quality,
difficulty and task category with a judge (``exp/unitag.py``) but reads the whole document of none, since its data
is short; LongReward (arXiv 2410.21252) scores faithfulness the same way (statements, each checked against the
top retrieved 128-token chunks) with a large judge. A 135M judge (the only one this project can run in CI) is weak:
the code is the one meant for a 7B+ judge on GPUs.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from longmagpie.generate.engines import Engine, GenerationRequest, engine_for, request_seed
from longmagpie.generate.resume import MANIFEST, fingerprint, open_output, read_marker, write_shard
from longmagpie.generate.settings import EngineSettings, fingerprint_value, normalize_paths, redact
from longmagpie.io import storage
from longmagpie.io.files import write_parquet_atomic

log = logging.getLogger(__name__)

#: The task categories a judge chooses from, with the description its prompt shows.
TAXONOMY: dict[str, str] = {
    "information_seeking": "asks for a fact or a detail stated in the document",
    "reasoning": "needs inference, cause and effect, or several facts combined",
    "summarization": "asks for the gist of the document or of a part of it",
    "comparison": "compares or contrasts things the document describes",
    "extraction": "asks to list or quote items (names, dates, steps)",
    "numerical": "needs counting or arithmetic over the document",
    "creative": "asks to write something new from the document",
    "advice": "asks for a recommendation or an opinion",
    "other": "none of the above",
}

#: The faithfulness verdicts and the score each gives a statement.
VERDICTS: dict[str, float] = {"supported": 1.0, "partly": 0.5, "unsupported": 0.0}

#: Longest rationale kept (characters); the constrained output stops there.
RATIONALE_CHARS = 120

_TAG_KEYS = ("quality", "quality_rationale", "difficulty", "difficulty_rationale", "category", "category_rationale")


def _tag_pattern() -> str:
    text = rf'"[^"\\\n]{{0,{RATIONALE_CHARS}}}"'
    cats = "|".join(TAXONOMY)
    return (
        rf'\{{"quality":[1-5],"quality_rationale":{text},"difficulty":[1-5],"difficulty_rationale":{text},'
        rf'"category":"({cats})","category_rationale":{text}\}}'
    )


#: The tags a judge writes where the engine has structured output: compact JSON with the six keys in order, scores
#: 1-5, a category of :data:`TAXONOMY` and rationales of at most :data:`RATIONALE_CHARS` characters without quotes or
#: newlines. A regular expression, not a JSON schema: a schema lets a weak model fill its budget with whitespace
#: between keys (measured with vLLM 0.32's xgrammar backend), which the pattern rules out.
TAG_PATTERN = _tag_pattern()


#: The judge's prompts, by name; ``JudgeConfig(prompts={name: text})`` replaces any of them (the resolved prompts
#: enter the fingerprint). ``system`` may be empty (no system turn); the others must keep their placeholders.
DEFAULT_PROMPTS: dict[str, str] = {
    "system": "You are a careful and strict judge of training data for assistants that answer questions about "
    "documents.",
    "tags": """Here is a document, a question a user asked about it, and the answer the user got.

<document>
{document}
</document>

<question>
{query}
</question>

<answer>
{answer}
</answer>

Rate the QUESTION:
- quality, 1 to 5: 5 = clear, specific and answerable from the document; 1 = unclear, off-topic or not a question.
- difficulty, 1 to 5: 1 = the answer is one phrase found in one place; 5 = it needs much of the document and reasoning.
- category, one of:
{categories}

Reply with a JSON object only, with the keys quality, quality_rationale, difficulty, difficulty_rationale, category and
category_rationale; each rationale is one short sentence.""",
    "statement": """Passages from a document:

{passages}

Statement: {statement}

Is the statement supported by the passages? Reply with one word: supported, partly or unsupported.""",
    # The likelihood signals: the judge is not asked, it is read (how likely it finds a text after each prompt).
    "support": "Passages from a document:\n\n{passages}\n\nRepeat one statement the passages make.",
    "support_alone": "Repeat one statement.",
    "question": "{document}\n\nAsk a question about this document.",
    "question_alone": "Ask a question.",
    "answer": "{document}\n\n{query}",
}
_PLACEHOLDERS: dict[str, tuple[str, ...]] = {
    "system": (),
    "tags": ("{document}", "{query}", "{answer}", "{categories}"),
    "statement": ("{passages}", "{statement}"),
    "support": ("{passages}",),
    "support_alone": (),
    "question": ("{document}",),
    "question_alone": (),
    "answer": ("{document}", "{query}"),
}

#: Columns the judge adds to every row it writes.
JUDGE_FIELDS = [
    pa.field("quality", pa.int8()),
    pa.field("quality_rationale", pa.string()),
    pa.field("difficulty", pa.int8()),
    pa.field("difficulty_rationale", pa.string()),
    pa.field("category", pa.string()),
    pa.field("category_rationale", pa.string()),
    pa.field("faithfulness", pa.float64()),
    pa.field("statements", pa.list_(pa.string())),
    pa.field("verdicts", pa.list_(pa.string())),
    pa.field("support_gain", pa.float64()),
    pa.field("question_gain", pa.float64()),
    pa.field("end_logprob", pa.float64()),
]
#: Column of the removed rows: why the row was removed.
REASON = "reason"
#: Directory of the removed rows inside the output (hidden: ``_``-prefixed paths are skipped by every reader).
REMOVED_DIR = "_removed"
#: The columns a judged row must have.
REQUIRED_COLUMNS = ("id", "context", "query", "answer")
#: Directory of the preference pairs inside the output (hidden, as the removed rows are).
PREFERENCE_DIR = "_preference"
#: The scores a preference pair may be chosen by (higher is better for each).
PREFERENCE_SCORES = ("faithfulness", "support_gain", "end_logprob")
#: The schema of the preference pairs: TRL's conversational preference format (``prompt``, ``chosen``,
#: ``rejected``: lists of messages), plus the row id, the score the pair was chosen by and both scores.
_MESSAGES = pa.list_(pa.struct([("role", pa.string()), ("content", pa.large_string())]))
PREFERENCE_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("prompt", _MESSAGES),
        ("chosen", _MESSAGES),
        ("rejected", _MESSAGES),
        ("score", pa.string()),
        ("chosen_score", pa.float64()),
        ("rejected_score", pa.float64()),
    ]
)


@dataclass(frozen=True, kw_only=True)
class JudgeConfig(EngineSettings):
    """Settings of :func:`judge` (``longmagpie quality --judge-model``); the engine settings are the harvester's.

    Attributes:
        inputs: harvest rows: a harvest or quality output directory, or Parquet files (columns ``id``, ``context``,
            ``query``, ``answer``; ``answer_grounding`` is read when present).
        output_dir: the resumable output directory.
        model: the judge model (a vLLM model directory; for ``openai``, the tokenizer source unless ``tokenizer``).
        tokenizer: tokenizer directory if not the model's.
        max_model_len: the judge's context; a prompt and its judgement must fit in it.
        seed: run seed; every request's seed derives from it and the row id.
        template_kwargs: extra chat-template variables.
        tags: tag quality, difficulty and category.
        faithfulness: score each answer's statements against its document.
        likelihood: read the judge's likelihood signals (``support_gain``, ``question_gain``, ``end_logprob``; see
            :func:`judge`): no question asked, so they work with a weak judge too.
        max_doc_tokens: document tokens the tags prompt shows (head and tail kept, the middle cut).
        chunk_tokens: tokens per document chunk that BM25 ranks for a statement.
        top_k: chunks shown with each statement.
        max_statements: statements checked per answer (the first ones).
        min_statement_words: shorter sentences are not statements.
        tag_max_tokens / verdict_max_tokens: generation budgets.
        temperature: sampling temperature of the judge (0: greedy).
        structured: constrain the judgements where the engine has structured output (parsing stays strict).
        min_quality / min_difficulty: remove rows tagged below (1-5).
        categories: keep only rows tagged with one of these categories (of :data:`TAXONOMY`).
        min_faithfulness: remove rows whose faithfulness is below this, in [0, 1].
        keep_all: remove nothing: every row is written with its scores.
        n_answers: with 2 or more, also build preference pairs: this many answers per kept question, sampled by the
            judge model with seeds of their own, scored by ``preference_by``; the best and the worst make a pair.
        answer_temperature / answer_top_p / answer_max_tokens: how those answers are sampled.
        allow_unfinished_answers: keep sampled answers cut by ``answer_max_tokens`` (as the harvester's option of
            that name; off: they are left out, counted).
        preference_by: the score that orders them, one of :data:`PREFERENCE_SCORES`.
        prompts: replacements for :data:`DEFAULT_PROMPTS`, by name.
        shard_rows: rows per resumable shard.

    """

    inputs: tuple[str, ...]
    output_dir: str
    model: str
    tokenizer: str | None = None
    max_model_len: int = 4096
    seed: int = 0
    template_kwargs: dict[str, Any] = field(default_factory=dict)
    tags: bool = True
    faithfulness: bool = True
    likelihood: bool = True
    max_doc_tokens: int = 2048
    chunk_tokens: int = 128
    top_k: int = 3
    max_statements: int = 8
    min_statement_words: int = 4
    tag_max_tokens: int = 256
    verdict_max_tokens: int = 8
    temperature: float = 0.0
    structured: bool = True
    min_quality: int | None = None
    min_difficulty: int | None = None
    categories: tuple[str, ...] | None = None
    min_faithfulness: float | None = None
    keep_all: bool = False
    n_answers: int = 0
    answer_temperature: float = 0.8
    answer_top_p: float = 0.95
    answer_max_tokens: int = 512
    allow_unfinished_answers: bool = False
    preference_by: str = "faithfulness"
    prompts: dict[str, str] = field(default_factory=dict)
    shard_rows: int = 256

    def __post_init__(self) -> None:
        """Check every value; the messages name the setting."""
        self.check_engine_settings()
        normalize_paths(self)
        if not self.inputs:
            raise ValueError("no inputs given: pass a harvest output directory or Parquet files of harvest rows")
        for name in (
            "max_model_len",
            "max_doc_tokens",
            "chunk_tokens",
            "top_k",
            "max_statements",
            "min_statement_words",
            "tag_max_tokens",
            "verdict_max_tokens",
            "shard_rows",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int (got {value!r})")
        if not (self.tags or self.faithfulness or self.likelihood):
            raise ValueError("the judge has nothing to do: enable tags, faithfulness or likelihood")
        if not 0 <= self.temperature <= 2:
            raise ValueError(f"temperature must be in [0, 2] (got {self.temperature})")
        for name in ("min_quality", "min_difficulty"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or value not in range(1, 6)):
                raise ValueError(f"{name} must be an int from 1 to 5 (got {value!r})")
        if self.categories is not None:
            cats = (self.categories,) if isinstance(self.categories, str) else tuple(self.categories)
            unknown = [c for c in cats if c not in TAXONOMY]
            if unknown or not cats:
                raise ValueError(f"unknown categories {unknown or cats}; choose among {', '.join(TAXONOMY)}")
            object.__setattr__(self, "categories", cats)
        if self.min_faithfulness is not None and not 0 <= self.min_faithfulness <= 1:
            raise ValueError(f"min_faithfulness must be in [0, 1] (got {self.min_faithfulness})")
        if (self.min_quality or self.min_difficulty or self.categories) and not self.tags:
            raise ValueError("min_quality, min_difficulty and categories need tags=True")
        if self.min_faithfulness is not None and not self.faithfulness:
            raise ValueError("min_faithfulness needs faithfulness=True")
        if isinstance(self.n_answers, bool) or not isinstance(self.n_answers, int) or self.n_answers < 0:
            raise ValueError(f"n_answers must be an int >= 0 (got {self.n_answers!r})")
        if self.n_answers == 1:
            raise ValueError("n_answers=1 makes no pair: pass 0 (no pairs) or 2 or more")
        if self.preference_by not in PREFERENCE_SCORES:
            raise ValueError(
                f"preference_by must be one of {', '.join(PREFERENCE_SCORES)} (got {self.preference_by!r})"
            )
        if (
            isinstance(self.answer_max_tokens, bool)
            or not isinstance(self.answer_max_tokens, int)
            or self.answer_max_tokens < 1
        ):
            raise ValueError(f"answer_max_tokens must be a positive int (got {self.answer_max_tokens!r})")
        if not 0 <= self.answer_temperature <= 2 or not 0 < self.answer_top_p <= 1:
            raise ValueError("answer_temperature must be in [0, 2] and answer_top_p in (0, 1]")
        unknown = sorted(set(self.prompts) - set(DEFAULT_PROMPTS))
        if unknown:
            raise ValueError(
                f"unknown prompt(s) {', '.join(unknown)}; the judge's prompts are {', '.join(DEFAULT_PROMPTS)}"
            )
        for name, text in self.prompts.items():
            missing = [p for p in _PLACEHOLDERS[name] if p not in text]
            if missing:
                raise ValueError(f"prompt {name!r} lacks the placeholder(s) {', '.join(missing)}")

    def resolved_prompts(self) -> dict[str, str]:
        """Return every prompt in effect: the defaults with the replacements applied."""
        return {**DEFAULT_PROMPTS, **self.prompts}

    def output_settings(self) -> dict[str, Any]:
        """Return the settings that shape the output (what the fingerprint covers; no engine, no credential)."""
        skip = {"output_dir", "inputs", "progress"} | (
            set(f.name for f in dataclasses.fields(EngineSettings)) - {"engine_kwargs"}
        )
        out = {
            f.name: fingerprint_value(f.name, getattr(self, f.name))
            for f in dataclasses.fields(self)
            if f.name not in skip
        }
        out["prompts"] = self.resolved_prompts()
        return redact(out)


@dataclass
class JudgeReport:
    """What :func:`judge` did: the output directory, shards, counts and the summary measures."""

    output_dir: str
    fingerprint: str
    shards_total: int = 0
    shards_written: int = 0
    shards_skipped: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0


# ---------------------------------------------------------------------------------------------------------------
# Parsing, statements, retrieval


def parse_tags(text: str) -> dict[str, Any] | None:
    """Parse a tags judgement strictly: the first JSON object in ``text``, with exactly the six keys and valid values.

    Returns ``None`` for anything else (no object, another key, a score outside 1-5, a category outside
    :data:`TAXONOMY`, a rationale that is not a string): an unparsed judgement is never guessed.
    """
    start = text.find("{")
    if start < 0:
        return None
    try:
        obj, _ = json.JSONDecoder().raw_decode(text[start:])
    except ValueError:
        return None
    if not isinstance(obj, dict) or set(obj) != set(_TAG_KEYS):
        return None
    for key in ("quality", "difficulty"):
        v = obj[key]
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 5:
            return None
    if obj["category"] not in TAXONOMY:
        return None
    for key in ("quality_rationale", "difficulty_rationale", "category_rationale"):
        if not isinstance(obj[key], str):
            return None
        obj[key] = obj[key].strip()[:RATIONALE_CHARS]
    return obj


def parse_verdict(text: str) -> str | None:
    """Parse a statement verdict strictly: one of :data:`VERDICTS`, else ``None``.

    The reply is trimmed, lower-cased and stripped of a final period; anything else is unparsed.
    """
    word = text.strip().lower().rstrip(".!")
    return word if word in VERDICTS else None


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[A-Z0-9])")
_BULLET = re.compile(r"^\s*(?:[-*\u2022]|\d+[.)])\s+")


def split_statements(answer: str, max_statements: int, min_words: int) -> list[str]:
    """Split an answer into statements: its lines (list bullets removed), each cut into sentences.

    Sentences of fewer than ``min_words`` words are left out; the first ``max_statements`` are returned.
    """
    out: list[str] = []
    for line in answer.splitlines():
        line = _BULLET.sub("", line).strip()
        for sentence in _SENTENCE_END.split(line):
            s = sentence.strip()
            if len(s.split()) >= min_words:
                out.append(s)
                if len(out) == max_statements:
                    return out
    return out


def _bm25s() -> Any:
    """Import ``bm25s`` on its numpy backend, without numba.

    With numba installed, ``import bm25s`` imports numba and llvmlite, and vLLM 0.32's kernel-override scan over
    ``sys.modules``, run when an engine starts later in the same process, then fails on an llvmlite object
    (``AttributeError: '_lib_fn_wrapper' object has no attribute 'get'``). Hiding numba while bm25s is imported
    keeps it on numpy (per document the corpus is a few hundred chunks: numba would buy nothing).
    """
    import sys

    if "bm25s" in sys.modules:
        return sys.modules["bm25s"]
    hide = "numba" not in sys.modules
    if hide:
        sys.modules["numba"] = None  # type: ignore[assignment]  # makes `import numba` raise ImportError
    try:
        import bm25s
    finally:
        if hide:
            del sys.modules["numba"]
    return bm25s


class Chunks:
    """A document cut into chunks of ``chunk_tokens`` judge tokens, indexed with BM25 (``bm25s``, numpy backend)."""

    def __init__(self, tokenizer: Any, document: str, chunk_tokens: int) -> None:
        """Tokenize ``document`` and index its chunks."""
        bm25s = _bm25s()
        ids = tokenizer(document, add_special_tokens=False)["input_ids"]
        self.texts = [
            tokenizer.decode(ids[i : i + chunk_tokens], skip_special_tokens=True).strip()
            for i in range(0, len(ids), chunk_tokens)
        ] or [""]
        self._bm25s = bm25s
        self.index: Any = bm25s.BM25(backend="numpy")
        try:
            self.index.index(bm25s.tokenize(self.texts, stopwords="en", show_progress=False), show_progress=False)
        except ValueError:  # no indexable word at all (stop words, symbols): chunks in document order
            self.index = None

    def top(self, statements: Sequence[str], k: int) -> list[list[int]]:
        """Return the indices of the ``k`` best chunks of each statement, best first."""
        if not statements:
            return []
        k = min(k, len(self.texts))
        if self.index is None:
            return [list(range(k)) for _ in statements]
        query = self._bm25s.tokenize(list(statements), stopwords="en", show_progress=False)
        docs, _ = self.index.retrieve(query, k=k, show_progress=False)
        return [[int(d) for d in row] for row in np.asarray(docs)]


def agreement(faithfulness: Sequence[float | None], grounding: Sequence[float | None]) -> dict[str, Any]:
    """Compare the judge's faithfulness with the model-free answer grounding over rows that have both.

    Returns the number of rows, each mean and Spearman's rank correlation (average ranks for ties; ``None`` with
    fewer than 3 rows or a constant side).
    """
    pairs = [(f, g) for f, g in zip(faithfulness, grounding, strict=True) if f is not None and g is not None]
    out: dict[str, Any] = {"rows": len(pairs), "faithfulness_mean": None, "grounding_mean": None, "spearman": None}
    if not pairs:
        return out
    f = np.array([p[0] for p in pairs], dtype=np.float64)
    g = np.array([p[1] for p in pairs], dtype=np.float64)
    out["faithfulness_mean"], out["grounding_mean"] = float(f.mean()), float(g.mean())
    if len(pairs) >= 3 and f.std() > 0 and g.std() > 0:
        out["spearman"] = float(np.corrcoef(_ranks(f), _ranks(g))[0, 1])
    return out


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), dtype=np.float64)
    ranks[order] = np.arange(len(x), dtype=np.float64)
    for value in np.unique(x):  # average ranks over ties
        tied = x == value
        ranks[tied] = ranks[tied].mean()
    return ranks


# ---------------------------------------------------------------------------------------------------------------
# Prompts


class _Prompts:
    """Chat-rendered, token-id prompts of the judge."""

    def __init__(self, tokenizer: Any, config: JudgeConfig) -> None:
        self.tokenizer = tokenizer
        self.config = config
        self.text = config.resolved_prompts()
        self.categories = "\n".join(f"  {name}: {desc}" for name, desc in TAXONOMY.items())

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _chat(self, user: str) -> list[int]:
        messages = [{"role": "user", "content": user}]
        if self.text["system"]:
            messages.insert(0, {"role": "system", "content": self.text["system"]})
        rendered = self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True, **self.config.template_kwargs
        )
        return self.encode(rendered)

    def _fit(self, document: str, room: int, build: Callable[[str], list[int]]) -> list[int] | None:
        """Return ``build(document)``, the document cut in the middle until the ids fit ``room`` (``None``: never)."""
        fitted = self.fit(document, room, build)
        return None if fitted is None else fitted[0]

    def fit(self, document: str, room: int, build: Callable[[str], list[int]]) -> tuple[list[int], str] | None:
        """Return ``(build(doc), doc)`` for the document ``doc`` cut in the middle until the ids fit ``room``."""
        from longmagpie.harvest.prompt_ids import middle_truncate

        ids = self.encode(document)
        budget = min(self.config.max_doc_tokens, len(ids))
        for _ in range(3):
            doc = document if budget >= len(ids) else self.tokenizer.decode(middle_truncate(ids, budget), True)
            prompt = build(doc)
            if len(prompt) <= room:
                return prompt, doc
            budget = max(0, budget - (len(prompt) - room))
        return None

    def tags(self, document: str, query: str, answer: str) -> list[int] | None:
        """Return the tags prompt, the document cut in the middle to fit (``None``: too long even so)."""
        return self._fit(
            document,
            self.config.max_model_len - self.config.tag_max_tokens,
            lambda doc: self._chat(
                self.text["tags"].format(document=doc, query=query, answer=answer, categories=self.categories)
            ),
        )

    def end_of_turn(self) -> list[int]:
        """Return the ids the chat template puts right after an assistant message (their first ends the turn)."""
        if not hasattr(self, "_end"):
            user = [{"role": "user", "content": "x"}]
            if self.text["system"]:
                user.insert(0, {"role": "system", "content": self.text["system"]})
            kw = self.config.template_kwargs
            prefix = self.tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True, **kw)
            full = self.tokenizer.apply_chat_template(
                [*user, {"role": "assistant", "content": "y"}], tokenize=False, **kw
            )
            tail = full[len(prefix) + 1 :] if full.startswith(prefix + "y") else ""
            ids = self.encode(tail) if tail.strip() else []
            eos = self.tokenizer.eos_token_id
            self._end = ids[:1] or ([int(eos)] if eos is not None else [])
        return self._end

    def scored(self, user: str, content: str) -> tuple[list[int], int, int]:
        """Return ``(ids, start, stop)``: the chat prompt of ``user``, then ``content`` as the assistant's words.

        ``ids[start:stop]`` are the tokens of ``content``, the ones to score.
        """
        head = self._chat(user)
        body = self.encode(content)
        return head + body, len(head), len(head) + len(body)

    def statement(self, passages: Sequence[str], statement: str) -> list[int]:
        """Return the verdict prompt of one statement with its passages."""
        shown = "\n\n".join(f"[{i + 1}] {p}" for i, p in enumerate(passages))
        return self._chat(self.text["statement"].format(passages=shown, statement=statement))


# ---------------------------------------------------------------------------------------------------------------
# Inputs


@dataclass(frozen=True)
class _InputFile:
    path: Path
    rows: int


@dataclass(frozen=True)
class _Shard:
    index: int
    file: _InputFile
    start: int
    stop: int

    @property
    def key(self) -> str:
        return f"shard-{self.index:05d}"


def input_files(inputs: Sequence[str]) -> list[Path]:
    """Resolve the judge's inputs to Parquet files, in order.

    A harvest (or judge) output directory gives its finished shards; a quality output directory its
    ``kept.parquet``; another directory its Parquet files (hidden ones left out); a file itself.

    Raises:
        FileNotFoundError: an input does not exist or holds no rows.
        ValueError: a file that is not Parquet.

    """
    files: list[Path] = []
    for item in inputs:
        p = storage.require_local(item, "a judge input (harvest rows on local disk)")
        if p.is_dir():
            if (p / MANIFEST).is_file():
                keys = sorted(m.name[: -len(".done.json")] for m in p.glob("shard-*.done.json"))
                found = [p / f"{k}.parquet" for k in keys]
            elif (p / "kept.parquet").is_file():
                found = [p / "kept.parquet"]
            else:
                found = [f.local for f in storage.list_files(p, (".parquet",)) if f.local is not None]
            if not found:
                raise FileNotFoundError(f"input directory {p} holds no finished shards or Parquet files of rows")
            files += found
        elif p.is_file():
            if p.suffix != ".parquet":
                raise ValueError(f"{p}: the judge reads Parquet files of harvest rows (convert JSONL first)")
            files.append(p)
        else:
            raise FileNotFoundError(f"input {p} does not exist")
    return files


def _check_schema(path: Path, schema: pa.Schema) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in schema.names]
    if missing:
        raise ValueError(
            f"{path} has no column(s) {', '.join(missing)} (columns: {', '.join(schema.names)}); the judge reads "
            "harvest rows (id, context, query, answer)"
        )
    clash = [f.name for f in JUDGE_FIELDS if f.name in schema.names] + ([REASON] if REASON in schema.names else [])
    if clash:
        raise ValueError(f"{path} already has the judge's column(s) {', '.join(clash)}: judge the rows before judging")


def _read_rows(shard: _Shard) -> pa.Table:
    """Read rows ``[start, stop)`` of the shard's file: only the row groups that hold them are read."""
    pf = pq.ParquetFile(shard.file.path)
    groups, first, at = [], None, 0
    for g in range(pf.metadata.num_row_groups):
        n = pf.metadata.row_group(g).num_rows
        if at < shard.stop and at + n > shard.start:
            groups.append(g)
            first = at if first is None else first
        at += n
    if not groups:
        return pf.schema_arrow.empty_table()
    table = pf.read_row_groups(groups)
    return table.slice(shard.start - (first or 0), shard.stop - shard.start)


# ---------------------------------------------------------------------------------------------------------------
# The run


def _judge_shard(
    rows: pa.Table, config: JudgeConfig, prompts: _Prompts, engine: Engine, stops: list[int]
) -> tuple[pa.Table, pa.Table, Counter[str]]:
    """Judge one shard's rows: returns (kept rows, removed rows with their reason, counts)."""
    counts: Counter[str] = Counter(rows=rows.num_rows)
    ids = [str(i) for i in rows.column("id").to_pylist()]
    contexts = rows.column("context").to_pylist()
    queries = rows.column("query").to_pylist()
    answers = rows.column("answer").to_pylist()
    n = rows.num_rows
    tags: list[dict[str, Any] | None] = [None] * n
    if config.tags:
        requests, where = [], []
        for i in range(n):
            prompt = prompts.tags(contexts[i] or "", queries[i] or "", answers[i] or "")
            if prompt is None:
                counts["tags_prompt_too_long"] += 1
                continue
            requests.append(
                GenerationRequest(
                    prompt,
                    config.tag_max_tokens,
                    config.temperature,
                    1.0,
                    request_seed(config.seed, ids[i], 0, "judge_tags"),
                    stops,
                    constraint={"regex": TAG_PATTERN} if config.structured else None,
                )
            )
            where.append(i)
        counts["tags_requested"] += len(requests)
        for i, res in zip(where, engine.generate(requests), strict=True):
            tags[i] = parse_tags(res.text)
            counts["tags_parsed" if tags[i] is not None else "tags_unparsed"] += 1
    statements: list[list[str]] = [[] for _ in range(n)]
    verdicts: list[list[str | None]] = [[] for _ in range(n)]
    faith: list[float | None] = [None] * n
    if config.faithfulness or config.likelihood:
        statements = [split_statements(a or "", config.max_statements, config.min_statement_words) for a in answers]
        counts["statements"] += sum(len(s) for s in statements)
    if config.faithfulness:
        requests, where2 = [], []
        for i in range(n):
            if not statements[i]:
                counts["answers_without_statements"] += 1
                continue
            chunks = Chunks(prompts.tokenizer, contexts[i] or "", config.chunk_tokens)
            for k, (statement, best) in enumerate(
                zip(statements[i], chunks.top(statements[i], config.top_k), strict=True)
            ):
                prompt = prompts.statement([chunks.texts[b] for b in best], statement)
                if len(prompt) + config.verdict_max_tokens > config.max_model_len:
                    counts["statement_prompt_too_long"] += 1
                    continue
                requests.append(
                    GenerationRequest(
                        prompt,
                        config.verdict_max_tokens,
                        config.temperature,
                        1.0,
                        request_seed(config.seed, ids[i], k, "judge_statement"),
                        stops,
                        constraint={"choice": list(VERDICTS)} if config.structured else None,
                    )
                )
                where2.append((i, k))
            verdicts[i] = [None] * len(statements[i])
        counts["verdicts_requested"] += len(requests)
        for (i, k), res in zip(where2, engine.generate(requests), strict=True):
            verdicts[i][k] = parse_verdict(res.text)
            counts["verdicts_parsed" if verdicts[i][k] is not None else "verdicts_unparsed"] += 1
        for i in range(n):
            scored = [VERDICTS[v] for v in verdicts[i] if v is not None]
            faith[i] = float(np.mean(scored)) if scored else None
            counts["faithfulness_scored" if scored else "faithfulness_unscored"] += 1
            for v in verdicts[i]:
                if v is not None:
                    counts[f"verdict:{v}"] += 1
    support, question, end = _likelihood(rows, config, prompts, engine, stops, ids, statements, counts)
    columns = {
        "support_gain": pa.array(support, pa.float64()),
        "question_gain": pa.array(question, pa.float64()),
        "end_logprob": pa.array(end, pa.float64()),
        "quality": pa.array([t["quality"] if t else None for t in tags], pa.int8()),
        "quality_rationale": pa.array([t["quality_rationale"] if t else None for t in tags], pa.string()),
        "difficulty": pa.array([t["difficulty"] if t else None for t in tags], pa.int8()),
        "difficulty_rationale": pa.array([t["difficulty_rationale"] if t else None for t in tags], pa.string()),
        "category": pa.array([t["category"] if t else None for t in tags], pa.string()),
        "category_rationale": pa.array([t["category_rationale"] if t else None for t in tags], pa.string()),
        "faithfulness": pa.array(faith, pa.float64()),
        "statements": pa.array(
            statements if config.faithfulness or config.likelihood else [None] * n, pa.list_(pa.string())
        ),
        "verdicts": pa.array(verdicts if config.faithfulness else [None] * n, pa.list_(pa.string())),
    }
    for t in tags:
        if t is not None:
            counts[f"category:{t['category']}"] += 1
            counts[f"quality:{t['quality']}"] += 1
            counts[f"difficulty:{t['difficulty']}"] += 1
    judged = rows
    for f in JUDGE_FIELDS:
        judged = judged.append_column(f, columns[f.name])
    reasons = [_reason(config, tags[i], faith[i]) for i in range(n)]
    for r in reasons:
        if r is not None:
            counts[f"removed:{r}"] += 1
    keep = np.array([r is None for r in reasons], dtype=bool)
    removed = judged.filter(pa.array(~keep)).append_column(
        pa.field(REASON, pa.string()), pa.array([r for r in reasons if r is not None], pa.string())
    )
    kept = judged.filter(pa.array(keep))
    counts["kept"] += kept.num_rows
    return kept, removed, counts


def _likelihood(
    rows: pa.Table,
    config: JudgeConfig,
    prompts: _Prompts,
    engine: Engine,
    stops: list[int],
    ids: list[str],
    statements: list[list[str]],
    counts: Counter[str],
) -> tuple[list[float | None], list[float | None], list[float | None]]:
    """Compute the likelihood signals of a shard's rows (all ``None`` without ``config.likelihood``)."""
    n = rows.num_rows
    support: list[float | None] = [None] * n
    question: list[float | None] = [None] * n
    end: list[float | None] = [None] * n
    if not config.likelihood:
        return support, question, end
    contexts = [c or "" for c in rows.column("context").to_pylist()]
    queries = [q or "" for q in rows.column("query").to_pylist()]
    answers = [a or "" for a in rows.column("answer").to_pylist()]
    text = prompts.text
    room = config.max_model_len - 1
    jobs: list[tuple[str, int, int, list[int], int, int]] = []  # (kind, row, statement, ids, start, stop)

    def add(kind: str, i: int, k: int, scored: tuple[list[int], int, int] | None) -> None:
        if scored is None or len(scored[0]) > room or scored[2] <= scored[1]:
            counts[f"likelihood_{kind}_skipped"] += 1
            return
        jobs.append((kind, i, k, *scored))

    for i in range(n):
        if statements[i]:
            chunks = Chunks(prompts.tokenizer, contexts[i], config.chunk_tokens)
            for k, (s, best) in enumerate(zip(statements[i], chunks.top(statements[i], config.top_k), strict=True)):
                passages = "\n\n".join(chunks.texts[b] for b in best)
                add("support", i, k, prompts.scored(text["support"].format(passages=passages), s))
                add("support_alone", i, k, prompts.scored(text["support_alone"], s))
        q_ids = prompts.encode(queries[i])
        a_ids = prompts.encode(answers[i])
        q_with = prompts._fit(
            contexts[i], room - len(q_ids), lambda doc: prompts._chat(text["question"].format(document=doc))
        )
        add("question", i, 0, (q_with + q_ids, len(q_with), len(q_with) + len(q_ids)) if q_with else None)
        add("question_alone", i, 0, prompts.scored(text["question_alone"], queries[i]))
        tail = prompts.end_of_turn()
        a_with = prompts._fit(
            contexts[i],
            room - len(a_ids) - len(tail),
            lambda doc, q=queries[i]: prompts._chat(text["answer"].format(document=doc, query=q)),
        )
        if a_with is not None and tail:
            full = a_with + a_ids + tail
            add("end", i, 0, (full, len(full) - 1, len(full)))
        else:
            add("end", i, 0, None)
    requests = [
        GenerationRequest(
            list(p), 1, 0.0, 1.0, request_seed(config.seed, ids[i], k, f"judge_{kind}"), stops, prompt_logprobs=True
        )
        for kind, i, k, p, _, _ in jobs
    ]
    counts["likelihood_requests"] += len(requests)
    score: dict[tuple[str, int, int], float] = {}
    for (kind, i, k, _, start, stop), res in zip(jobs, engine.generate(requests), strict=True):
        values = [v for v in res.prompt_logprobs[start:stop] if v is not None]
        if values:
            score[(kind, i, k)] = float(np.mean(values))
    for i in range(n):
        gains = [
            score[("support", i, k)] - score[("support_alone", i, k)]
            for k in range(len(statements[i]))
            if ("support", i, k) in score and ("support_alone", i, k) in score
        ]
        support[i] = float(np.mean(gains)) if gains else None
        if ("question", i, 0) in score and ("question_alone", i, 0) in score:
            question[i] = score[("question", i, 0)] - score[("question_alone", i, 0)]
        end[i] = score.get(("end", i, 0))
    return support, question, end


def _preference_pairs(
    kept: pa.Table, config: JudgeConfig, prompts: _Prompts, engine: Engine, stops: list[int], counts: Counter[str]
) -> pa.Table:
    """Sample ``n_answers`` answers per kept question, score them as rows are scored, pair the best with the worst."""
    ids = [str(i) for i in kept.column("id").to_pylist()]
    contexts = [c or "" for c in kept.column("context").to_pylist()]
    queries = [q or "" for q in kept.column("query").to_pylist()]
    room = config.max_model_len - config.answer_max_tokens
    requests, where, shown = [], [], {}
    for i in range(kept.num_rows):
        fitted = prompts.fit(
            contexts[i],
            room,
            lambda doc, q=queries[i]: prompts._chat(prompts.text["answer"].format(document=doc, query=q)),
        )
        if fitted is None:
            counts["pairs_prompt_too_long"] += 1
            continue
        shown[i] = prompts.text["answer"].format(document=fitted[1], query=queries[i])
        for j in range(config.n_answers):
            requests.append(
                GenerationRequest(
                    fitted[0],
                    config.answer_max_tokens,
                    config.answer_temperature,
                    config.answer_top_p,
                    request_seed(config.seed, ids[i], j, "judge_answer"),
                    stops,
                )
            )
            where.append((i, j))
    counts["pair_answers_requested"] += len(requests)
    candidates: dict[str, list[Any]] = {"id": [], "context": [], "query": [], "answer": []}
    owner = []
    for (i, j), res in zip(where, engine.generate(requests), strict=True):
        text = res.text.strip()
        if (res.finish_reason == "length" and not config.allow_unfinished_answers) or not text:
            counts["pair_answers_unfinished" if text else "pair_answers_empty"] += 1
            continue
        for name, value in (
            ("id", f"{ids[i]}:answer{j}"),
            ("context", contexts[i]),
            ("query", queries[i]),
            ("answer", text),
        ):
            candidates[name].append(value)
        owner.append(i)
    by = config.preference_by
    scoring = dataclasses.replace(
        config,
        tags=False,
        faithfulness=by == "faithfulness",
        likelihood=by != "faithfulness",
        keep_all=True,
        min_faithfulness=None,
        min_quality=None,
        min_difficulty=None,
        categories=None,
        n_answers=0,
    )
    table = pa.table(
        {
            k: pa.array(v, pa.large_string() if k in ("context", "answer") else pa.string())
            for k, v in candidates.items()
        }
    )
    scores: list[float | None] = []
    if table.num_rows:
        scored, _, sub = _judge_shard(table, scoring, prompts, engine, stops)
        scores = scored.column(by).to_pylist()
        counts.update(
            {f"pair_scoring:{k}": v for k, v in sub.items() if k in ("verdicts_requested", "likelihood_requests")}
        )
    answers = candidates["answer"]
    pairs: dict[str, list[Any]] = {name: [] for name in PREFERENCE_SCHEMA.names}
    for i in sorted(shown):
        options = [(scores[k], k) for k, o in enumerate(owner) if o == i and scores[k] is not None]
        if len(options) < 2:
            counts["pairs_too_few_answers"] += 1
            continue
        best = max(options, key=lambda t: (t[0], -t[1]))  # ties: the first sampled
        worst = min(options, key=lambda t: (t[0], t[1]))
        if best[0] == worst[0]:
            counts["pairs_tied"] += 1
            continue
        pairs["id"].append(ids[i])
        pairs["prompt"].append([{"role": "user", "content": shown[i]}])
        pairs["chosen"].append([{"role": "assistant", "content": answers[best[1]]}])
        pairs["rejected"].append([{"role": "assistant", "content": answers[worst[1]]}])
        pairs["score"].append(by)
        pairs["chosen_score"].append(best[0])
        pairs["rejected_score"].append(worst[0])
    counts["pairs"] += len(pairs["id"])
    return pa.table(pairs, schema=PREFERENCE_SCHEMA)


def _reason(config: JudgeConfig, tags: dict[str, Any] | None, faith: float | None) -> str | None:
    """Return the first threshold a row fails (``None``: kept)."""
    if config.keep_all:
        return None
    tag_rules = config.min_quality is not None or config.min_difficulty is not None or config.categories is not None
    if tag_rules and tags is None:
        return "judge:unparsed_tags"
    if tags is not None:
        if config.min_quality is not None and tags["quality"] < config.min_quality:
            return "judge:quality"
        if config.min_difficulty is not None and tags["difficulty"] < config.min_difficulty:
            return "judge:difficulty"
        if config.categories is not None and tags["category"] not in config.categories:
            return "judge:category"
    if config.min_faithfulness is not None:
        if faith is None:
            return "judge:unscored_faithfulness"
        if faith < config.min_faithfulness:
            return "judge:faithfulness"
    return None


def _stop_ids(tokenizer: Any, model: str) -> list[int]:
    ids = {int(tokenizer.eos_token_id)} if tokenizer.eos_token_id is not None else set()
    gen = Path(model) / "generation_config.json"
    if gen.is_file():
        eos = json.loads(gen.read_text()).get("eos_token_id")
        ids |= {int(e) for e in (eos if isinstance(eos, list) else [eos] if eos is not None else [])}
    return sorted(ids)


def judge(
    config: JudgeConfig,
    *,
    engine: Engine | None = None,
    on_shard: Callable[[str], None] | None = None,
    replace_other: bool = False,
) -> JudgeReport:
    """Tag, score and filter harvest rows with a judge model into ``config.output_dir``, resumably.

    ``engine`` replaces the engine the config names (for reuse across runs; it is not closed). ``on_shard`` is
    called with each shard's key once it is written (tests stop a run there). ``replace_other`` replaces an output
    directory of another run (another fingerprint) instead of refusing it (the pipeline does, when an earlier stage
    changed).

    Raises:
        FileNotFoundError: an input or the judge model does not exist.
        ValueError: bad settings, rows without the harvest columns, or an output directory of another run.

    """
    from longmagpie import __version__
    from longmagpie.assembly.tokenizer import load_tokenizer
    from longmagpie.harvest.run import model_identity

    t0 = time.perf_counter()
    out_dir = storage.require_local(
        config.output_dir, "the judge's output directory (its resume markers rely on local renames)"
    )
    files = input_files(config.inputs)
    metas = []
    for f in files:
        pf = pq.ParquetFile(f)
        _check_schema(f, pf.schema_arrow)
        metas.append(_InputFile(f, pf.metadata.num_rows))
    shards = []
    for f in metas:
        for start in range(0, f.rows, config.shard_rows):
            shards.append(_Shard(len(shards), f, start, min(start + config.shard_rows, f.rows)))
    tokenizer = load_tokenizer(config.tokenizer or config.model)
    stops = _stop_ids(tokenizer, config.model)
    parts = {
        "judge": config.output_settings(),
        "inputs": [[str(f.path), f.rows, f.path.stat().st_size] for f in metas],
        "model": model_identity(config.model),
        "stop_token_ids": stops,
        "taxonomy": TAXONOMY,
        "version": __version__,
    }
    fp = fingerprint(parts)
    manifest = out_dir / MANIFEST
    if replace_other and manifest.is_file() and json.loads(manifest.read_text()).get("fingerprint") != fp:
        import shutil

        log.info("judge: %s holds another run; replacing it", out_dir)
        shutil.rmtree(out_dir)
    open_output(out_dir, fp, parts)
    report = JudgeReport(str(out_dir), fp, shards_total=len(shards))
    prompts = _Prompts(tokenizer, config)
    totals: Counter[str] = Counter()
    own: Engine | None = None
    try:
        for shard in shards:
            marker = read_marker(out_dir, shard.key)
            if marker is not None and marker.get("fingerprint") == fp:
                totals.update(marker["counts"])
                report.shards_skipped += 1
                continue
            if engine is None and own is None:
                own = engine_for(config)
            active = engine if engine is not None else own
            assert active is not None
            rows = _read_rows(shard)
            kept, removed, counts = _judge_shard(rows, config, prompts, active, stops)
            (out_dir / REMOVED_DIR).mkdir(exist_ok=True)
            write_parquet_atomic(removed, out_dir / REMOVED_DIR / f"{shard.key}.parquet", overwrite=True)
            if config.n_answers:
                pairs = _preference_pairs(kept, config, prompts, active, stops, counts)
                (out_dir / PREFERENCE_DIR).mkdir(exist_ok=True)
                write_parquet_atomic(pairs, out_dir / PREFERENCE_DIR / f"{shard.key}.parquet", overwrite=True)
            write_shard(
                out_dir,
                shard.key,
                kept,
                {
                    "fingerprint": fp,
                    "shard": shard.key,
                    "source_file": str(shard.file.path),
                    "start": shard.start,
                    "stop": shard.stop,
                    "counts": dict(sorted(counts.items())),
                },
            )
            totals.update(counts)
            report.shards_written += 1
            log.info("judge shard %s: %s", shard.key, ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if v))
            if on_shard is not None:
                on_shard(shard.key)
    finally:
        if own is not None:
            own.close()
    report.counts = dict(sorted(totals.items()))
    report.summary = judge_summary(out_dir, report.counts)
    report.elapsed_s = time.perf_counter() - t0
    return report


def judged_rows(out_dir: str | Path, removed: bool = False) -> pa.Table:
    """All rows a judge run wrote, in shard order: the kept rows, or (``removed=True``) the removed ones."""
    out = Path(out_dir)
    keys = sorted(p.name[: -len(".done.json")] for p in out.glob("shard-*.done.json"))
    paths = [out / REMOVED_DIR / f"{k}.parquet" if removed else out / f"{k}.parquet" for k in keys]
    tables = [pq.read_table(p) for p in paths if p.is_file()]
    return pa.concat_tables(tables) if tables else pa.table({})


def preference_pairs(out_dir: str | Path) -> pa.Table:
    """All preference pairs a judge run with ``n_answers`` wrote, in shard order (TRL's conversational format)."""
    out = Path(out_dir)
    keys = sorted(p.name[: -len(".done.json")] for p in out.glob("shard-*.done.json"))
    tables = [pq.read_table(p) for k in keys if (p := out / PREFERENCE_DIR / f"{k}.parquet").is_file()]
    return pa.concat_tables(tables) if tables else PREFERENCE_SCHEMA.empty_table()


def judge_summary(out_dir: str | Path, counts: Mapping[str, int] | None = None) -> dict[str, Any]:
    """Summarise a judge directory: parse rates, score means, removals by reason, and agreement.

    The agreement compares faithfulness with the model-free answer grounding, over the kept and removed rows.
    """
    out = Path(out_dir)
    if counts is None:
        total: Counter[str] = Counter()
        for m in sorted(out.glob("shard-*.done.json")):
            total.update(json.loads(m.read_text()).get("counts", {}))
        counts = dict(total)
    tables = [t for t in (judged_rows(out), judged_rows(out, removed=True)) if t.num_rows]
    rows = (
        pa.concat_tables([t.drop_columns([REASON]) if REASON in t.schema.names else t for t in tables])
        if tables
        else None
    )

    def rate(ok: str, bad: str) -> float | None:
        n = counts.get(ok, 0) + counts.get(bad, 0)
        return counts.get(ok, 0) / n if n else None

    summary: dict[str, Any] = {
        "rows": counts.get("rows", 0),
        "kept": counts.get("kept", 0),
        "tags_parse_rate": rate("tags_parsed", "tags_unparsed"),
        "verdicts_parse_rate": rate("verdicts_parsed", "verdicts_unparsed"),
        "removed": {k.split(":", 1)[1]: v for k, v in sorted(counts.items()) if k.startswith("removed:")},
        "categories": {k.split(":", 1)[1]: v for k, v in sorted(counts.items()) if k.startswith("category:")},
        "verdicts": {k.split(":", 1)[1]: v for k, v in sorted(counts.items()) if k.startswith("verdict:")},
        "pairs": counts.get("pairs", 0),
    }
    for name in ("quality", "difficulty", "faithfulness", "support_gain", "question_gain", "end_logprob"):
        values = [v for v in rows.column(name).to_pylist() if v is not None] if rows is not None else []
        summary[f"{name}_mean"] = float(np.mean(values)) if values else None
    if rows is not None and "answer_grounding" in rows.schema.names:
        summary["agreement"] = agreement(
            rows.column("faithfulness").to_pylist(), rows.column("answer_grounding").to_pylist()
        )
    return summary


def summary_lines(summary: Mapping[str, Any]) -> list[str]:
    """Format :func:`judge_summary` as a few lines (what ``longmagpie quality --judge-model`` and ``stats`` print)."""

    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.1f} %"

    def num(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    lines = [
        f"judge      {summary.get('kept', 0):,} of {summary.get('rows', 0):,} rows kept; parsed: tags "
        f"{pct(summary.get('tags_parse_rate'))}, verdicts {pct(summary.get('verdicts_parse_rate'))}",
        f"scores     quality {num(summary.get('quality_mean'))}, difficulty {num(summary.get('difficulty_mean'))}, "
        f"faithfulness {num(summary.get('faithfulness_mean'))}",
        f"likelihood support gain {num(summary.get('support_gain_mean'))}, question gain "
        f"{num(summary.get('question_gain_mean'))}, end log-prob {num(summary.get('end_logprob_mean'))} (nats)",
    ]
    if summary.get("removed"):
        lines.append("removed    " + ", ".join(f"{k} {v:,}" for k, v in summary["removed"].items()))
    if summary.get("pairs"):
        lines.append(f"pairs      {summary['pairs']:,} preference pairs (chosen, rejected)")
    if summary.get("categories"):
        lines.append("categories " + ", ".join(f"{k} {v:,}" for k, v in summary["categories"].items()))
    agree = summary.get("agreement")
    if agree and agree.get("rows"):
        lines.append(
            f"agreement  faithfulness vs model-free answer grounding over {agree['rows']:,} rows: Spearman "
            f"{num(agree.get('spearman'))}"
        )
    return lines
