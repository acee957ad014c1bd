"""Level-by-level generation over many documents, each pass one batched ``engine.generate``, resumable.

Passes, in order: small-chunk summaries, medium summaries (from small ones), the levels above medium up to one
global summary, questions in three rounds (global and parentless kinds; medium follow-ups; small follow-ups),
answers. After each pass every document it touched is saved (``documents/<key>.json``, atomic); a rerun loads
the saved state and runs only the passes a document still lacks, so finished documents cost no engine call.

Above medium the summary is recursive: a document's medium summaries are cut into consecutive groups that each
fit the generator's context (prompt + ``summary_max_tokens``); each group is summarised (prompt
``summarize_medium``), and the new level is grouped again, until one group holds a whole level: its summary
(prompt ``summarize_global``) is the global summary. Most documents need one level (every medium summary in one
prompt, as before); a million-token document at the defaults needs at most two. Every level is saved in the
document's state (``levels``), so a rerun resumes at the first level it lacks.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from longmagpie.generate.engines import Engine, GenerationRequest, request_seed
from longmagpie.generate.reasoning import opens_reasoning, without_reasoning
from longmagpie.hierarchical.chunking import split_document
from longmagpie.hierarchical.config import HierarchicalConfig
from longmagpie.hierarchical.questions import QAItem, plan_document
from longmagpie.io.files import write_bytes_atomic
from longmagpie.templates.families import LLAMA31_DEFAULT_DATE

STAGES = ("chunked", "small", "medium", "global", "q0", "q1", "q2", "done")


@dataclass
class DocState:
    """One document's intermediate results (what its state file holds)."""

    doc_id: str
    text: str
    small: list[str]
    small_tokens: list[int]
    medium: list[list[int]]
    qas: list[QAItem]
    revisits: list[QAItem]
    stage: str = "chunked"
    small_summaries: list[str] = field(default_factory=list)
    medium_summaries: list[str] = field(default_factory=list)
    global_summary: str = ""
    # the summary tree above medium, bottom up: {"groups": indices into the level below, "summaries": one per
    # group}; the last level has one group (the global summary). Empty in states written before the recursion.
    levels: list[dict[str, list[Any]]] = field(default_factory=list)

    @property
    def tokens(self) -> int:
        """Tokens of the document."""
        return sum(self.small_tokens)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON form."""
        d = {k: v for k, v in self.__dict__.items() if k not in ("qas", "revisits")}
        d["qas"] = [q.to_json() for q in self.qas]
        d["revisits"] = [q.to_json() for q in self.revisits]
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> DocState:
        """Read back :meth:`to_json`."""
        d = dict(d)
        d["qas"] = [QAItem(**q) for q in d["qas"]]
        d["revisits"] = [QAItem(**q) for q in d["revisits"]]
        return cls(**d)


def doc_key(doc_id: str) -> str:
    """File name stem of a document's state (ids may hold any character)."""
    return hashlib.blake2b(doc_id.encode(), digest_size=10).hexdigest()


class Generator:
    """Renders chat prompts for the generator, checks them against its context, and runs passes."""

    def __init__(
        self,
        config: HierarchicalConfig,
        engine: Engine,
        tokenizer: Any,
        prompts: dict[str, str],
        stops: list[int],
        on_call: Callable[[str, int], None] | None = None,
    ) -> None:
        """``on_call(pass_name, n_requests)`` is told of every ``generate``."""
        self.config = config
        self.engine = engine
        self.tokenizer = tokenizer
        self.prompts = prompts
        self.stops = stops
        self.on_call = on_call
        self.prompt_opens_reasoning = False  # set by render: the template's generation prompt opens reasoning

    def render(self, name: str, **fields: str) -> list[int]:
        """Token ids of prompt ``name`` with ``fields`` as the user turn, the assistant turn opened."""
        content = self.prompts[name].format(**fields)
        text = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": content}],
            tokenize=False,
            add_generation_prompt=True,
            # Llama-3.2's template writes today's date unless given one: pinned, as the harvester does, so the
            # prompts (and every seeded generation) are the same on any day
            **{"date_string": LLAMA31_DEFAULT_DATE, **self.config.template_kwargs},
        )
        self.prompt_opens_reasoning = opens_reasoning(text)
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def overhead(self, name: str) -> int:
        """Tokens prompt ``name`` takes with empty placeholders."""
        from longmagpie.hierarchical.prompts import PLACEHOLDERS

        return len(self.render(name, **dict.fromkeys(PLACEHOLDERS[name], "")))

    def check_context(self) -> None:
        """Refuse a generator context too small for a small chunk or the largest prompt, before any work.

        Raises:
            ValueError: the prompt that does not fit, its token need and what to change.

        """
        c = self.config
        chunk = c.small_chunk_tokens
        material = chunk * (c.multihop_chunks if c.multihop_qas else 1)
        needs = {
            "summarize_small": self.overhead("summarize_small") + chunk + c.summary_max_tokens,
            "summarize_medium": self.overhead("summarize_medium")
            + c.medium_chunk_small * (c.summary_max_tokens + 2)
            + c.summary_max_tokens,
            # the levels above medium shrink only if two summaries fit one prompt
            "summarize_global": self.upper_overhead() + 2 * (c.summary_max_tokens + self.part_tokens()),
            "question_*": self.overhead("question_multihop") + material + c.question_max_tokens,
            "answer": self.overhead("answer") + material + c.question_max_tokens + c.answer_max_tokens,
        }
        for name, need in needs.items():
            if need > c.max_model_len:
                raise ValueError(
                    f"the generator context max_model_len={c.max_model_len} is too small for small chunks of "
                    f"{chunk} tokens: prompt {name!r} needs up to {need} tokens with its generation; lower "
                    "small_chunk_tokens (or multihop_chunks, medium_chunk_small, the *_max_tokens limits) or use a "
                    "model with a longer context"
                )

    def upper_overhead(self) -> int:
        """Tokens a summary-of-summaries prompt takes besides its parts, with room for its generation."""
        prompt = max(self.overhead("summarize_medium"), self.overhead("summarize_global"))
        return prompt + self.config.summary_max_tokens

    def part_tokens(self) -> int:
        """Tokens one ``Part <n>: `` label and separator add to a summary in a prompt (a few spare)."""
        label = len(self.tokenizer("Part 10000: ", add_special_tokens=False)["input_ids"])
        return label + len(self.tokenizer("\n\n", add_special_tokens=False)["input_ids"]) + 2

    def group_summaries(self, summaries: list[str]) -> list[list[int]]:
        """Consecutive groups of ``summaries`` whose prompts fit the context with a summary's generation.

        One group when all fit (the global summary); else as few groups as greedy filling needs, evened out by
        count when that still fits. Each group's rendered prompt is checked, and a group that does not fit
        (the estimate is per summary) is halved until it does.
        """
        c = self.config
        budget = c.max_model_len - self.upper_overhead()
        part = self.part_tokens()
        costs = [len(self.tokenizer(s, add_special_tokens=False)["input_ids"]) + part for s in summaries]
        groups = fit_groups(costs, budget)

        def fits(g: list[int], name: str) -> bool:
            return len(self.render(name, summaries=_joined(summaries, g))) + c.summary_max_tokens <= c.max_model_len

        def split(g: list[int], force: bool = False) -> list[list[int]]:
            if len(g) == 1 or (not force and fits(g, "summarize_medium")):
                return [g]
            half = len(g) // 2
            return split(g[:half]) + split(g[half:])

        if len(groups) == 1:
            return groups if fits(groups[0], "summarize_global") else split(groups[0], force=True)
        return [piece for g in groups for piece in split(g)]

    def request(self, ids: list[int], max_tokens: int, doc_id: str, item: int, pass_name: str) -> GenerationRequest:
        """Build a seeded request; the prompt must fit the context with its generation."""
        if len(ids) + max_tokens > self.config.max_model_len:
            raise ValueError(
                f"document {doc_id!r}, pass {pass_name}, item {item}: the prompt has {len(ids)} tokens, with "
                f"{max_tokens} to generate more than max_model_len={self.config.max_model_len}; lower "
                "summary_max_tokens or medium_chunk_small, or raise max_model_len"
            )
        return GenerationRequest(
            prompt_ids=ids,
            max_tokens=max_tokens,
            temperature=self.config.temperature,
            top_p=self.config.top_p,
            seed=request_seed(self.config.seed, doc_id, item, pass_name),
            stop_token_ids=self.stops,
        )

    def run(self, pass_name: str, requests: Sequence[GenerationRequest]) -> list[str]:
        """One ``generate`` over ``requests``; texts stripped, a thinking model's closed reasoning cut off."""
        if not requests:
            return []
        if self.on_call is not None:
            self.on_call(pass_name, len(requests))
        opened = self.prompt_opens_reasoning
        return [without_reasoning(r.text, opened).strip() for r in self.engine.generate(list(requests))]


def new_state(doc_id: str, text: str, config: HierarchicalConfig, tokenizer: Any, styles: tuple[str, ...]) -> DocState:
    """Chunk a document and plan its QAs."""
    chunks = split_document(text, tokenizer, config.small_chunk_tokens, config.medium_chunk_small)
    qas, revisits = plan_document(
        doc_id,
        len(chunks.small),
        chunks.medium,
        seed=config.seed,
        hierarchical=config.hierarchical_qas,
        local=config.local_qas,
        multihop=config.multihop_qas,
        multihop_chunks=config.multihop_chunks,
        diverse=config.diverse_qas,
        revisit=config.revisit_qas,
        styles=styles,
    )
    return DocState(doc_id, text, chunks.small, chunks.small_tokens, chunks.medium, qas, revisits)


def save_state(directory: Path, state: DocState) -> None:
    """Write the document's state atomically."""
    write_bytes_atomic(directory / f"{doc_key(state.doc_id)}.json", json.dumps(state.to_json()).encode())


def load_state(directory: Path, doc_id: str) -> DocState | None:
    """Load the saved state of ``doc_id``, or return ``None``."""
    path = directory / f"{doc_key(doc_id)}.json"
    if not path.is_file():
        return None
    return DocState.from_json(json.loads(path.read_text()))


def _material(state: DocState, item: QAItem) -> str:
    if item.level == "global":
        return state.global_summary
    if item.level == "medium":
        return state.medium_summaries[item.sources[0]]
    if item.level == "multihop":
        return "\n\n".join(f"Passage {i + 1}:\n{state.small[s]}" for i, s in enumerate(item.sources))
    s = item.sources[0]
    return state.medium_summaries[-1 - s] if s < 0 else state.small[s]


def _question_prompt(gen: Generator, state: DocState, items: list[QAItem], i: int) -> list[int]:
    item = items[i]
    material = _material(state, item)
    if item.level == "global":
        return gen.render("question_global", material=material)
    if item.level in ("medium", "small"):
        previous = items[item.parent].question or "" if item.parent is not None else ""
        return gen.render(f"question_{item.level}", material=material, previous=previous)
    if item.kind == "diverse":
        return gen.render("question_diverse", material=material, style=item.style or "")
    return gen.render(f"question_{item.level}", material=material)


def run_passes(gen: Generator, states: list[DocState], directory: Path) -> None:
    """Run every pass the documents still lack, one ``generate`` per pass, saving touched documents after each."""
    c = gen.config

    def advance(pass_name: str, todo: list[DocState], build: Callable[[DocState], list[tuple[Any, list[int]]]]) -> None:
        # seeds by (document, index within the document): a resumed pass draws what an uninterrupted one does
        jobs = [(st, n, slot, ids) for st in todo for n, (slot, ids) in enumerate(build(st))]
        reqs = [gen.request(ids, _max_tokens(pass_name, c), st.doc_id, n, pass_name) for st, n, _, ids in jobs]
        for (st, _, slot, _), text in zip(jobs, gen.run(pass_name, reqs), strict=True):
            slot(st, text)
        for st in todo:
            st.stage = pass_name
            save_state(directory, st)

    def pending(stage: str) -> list[DocState]:
        return [s for s in states if STAGES.index(s.stage) < STAGES.index(stage)]

    def small(st: DocState) -> list[tuple[Any, list[int]]]:
        st.small_summaries = [""] * len(st.small)
        return [(_setter("small_summaries", i), gen.render("summarize_small", text=t)) for i, t in enumerate(st.small)]

    def medium(st: DocState) -> list[tuple[Any, list[int]]]:
        st.medium_summaries = [""] * len(st.medium)
        return [
            (_setter("medium_summaries", m), gen.render("summarize_medium", summaries=_joined(st.small_summaries, g)))
            for m, g in enumerate(st.medium)
        ]

    def questions(rnd: int) -> Callable[[DocState], list[tuple[Any, list[int]]]]:
        def build(st: DocState) -> list[tuple[Any, list[int]]]:
            out = []
            for items in (st.qas, st.revisits):
                for i, item in enumerate(items):
                    if item.round == rnd:
                        out.append((_question_setter(item), _question_prompt(gen, st, items, i)))
            return out

        return build

    def answers(st: DocState) -> list[tuple[Any, list[int]]]:
        return [
            (_answer_setter(item), gen.render("answer", material=_material(st, item), question=item.question or ""))
            for item in (*st.qas, *st.revisits)
        ]

    advance("small", pending("small"), small)
    advance("medium", pending("medium"), medium)
    summarise_upward(gen, pending("global"), directory)
    for rnd in range(3):
        advance(f"q{rnd}", pending(f"q{rnd}"), questions(rnd))
    advance("done", pending("done"), answers)


def summarise_upward(gen: Generator, todo: list[DocState], directory: Path) -> None:
    """Build the summary levels above medium, one ``generate`` per round across documents, to global summaries.

    A round adds one level to every pending document (saved after the round). Seeds: a document's final level
    draws as pass ``global`` (item 0), the others as pass ``level-<depth>`` (item = group), so what a document
    gets does not depend on which documents share a round. A round is named ``global`` when it finishes every
    pending document, else ``upper-<round>``.

    Raises:
        ValueError: a level cannot shrink (two summaries do not fit one prompt); the document is named.

    """
    rnd = 0
    while todo:
        rnd += 1
        jobs: list[tuple[DocState, list[list[int]], list[GenerationRequest]]] = []
        for st in todo:
            below = st.levels[-1]["summaries"] if st.levels else st.medium_summaries
            groups = gen.group_summaries(below)
            final = len(groups) == 1
            if not final and len(groups) >= len(below):
                raise ValueError(
                    f"document {st.doc_id!r}: {len(below)} summaries at level {len(st.levels) + 1} above small do "
                    f"not fit two to a prompt in max_model_len={gen.config.max_model_len}; lower "
                    "summary_max_tokens or raise max_model_len"
                )
            pass_name = "global" if final else f"level-{len(st.levels) + 2}"
            prompt = "summarize_global" if final else "summarize_medium"
            limit = gen.config.summary_max_tokens
            reqs = [
                gen.request(gen.render(prompt, summaries=_joined(below, g)), limit, st.doc_id, n, pass_name)
                for n, g in enumerate(groups)
            ]
            jobs.append((st, groups, reqs))
        name = "global" if all(len(groups) == 1 for _, groups, _ in jobs) else f"upper-{rnd}"
        texts = iter(gen.run(name, [r for _, _, reqs in jobs for r in reqs]))
        for st, groups, _ in jobs:
            st.levels.append({"groups": groups, "summaries": [next(texts) for _ in groups]})
            if len(groups) == 1:
                st.global_summary = st.levels[-1]["summaries"][0]
                st.stage = "global"
            save_state(directory, st)
        todo = [st for st in todo if st.stage != "global"]


def fit_groups(costs: list[int], budget: int) -> list[list[int]]:
    """Consecutive groups of item indices whose costs sum to at most ``budget`` (an item alone may exceed it).

    As many groups as greedy filling needs, then as even in item count as still fits (a greedy split would leave
    a small last group, a poorer summary).
    """
    greedy: list[list[int]] = []
    total = 0
    for i, cost in enumerate(costs):
        if greedy and total + cost <= budget:
            greedy[-1].append(i)
            total += cost
        else:
            greedy.append([i])
            total = cost
    n, k = len(costs), len(greedy)
    if k <= 1:
        return greedy
    bounds = [round(j * n / k) for j in range(k + 1)]
    even = [list(range(bounds[j], bounds[j + 1])) for j in range(k)]
    if all(len(g) == 1 or sum(costs[i] for i in g) <= budget for g in even):
        return even
    return greedy


def _max_tokens(pass_name: str, c: HierarchicalConfig) -> int:
    if pass_name in ("small", "medium", "global"):
        return c.summary_max_tokens
    return c.answer_max_tokens if pass_name == "done" else c.question_max_tokens


def _joined(summaries: list[str], indices: list[int]) -> str:
    return "\n\n".join(f"Part {n + 1}: {summaries[i]}" for n, i in enumerate(indices))


def _setter(attr: str, index: int) -> Callable[[DocState, str], None]:
    def put(st: DocState, text: str) -> None:
        getattr(st, attr)[index] = text

    return put


def _question_setter(item: QAItem) -> Callable[[DocState, str], None]:
    def put(_: DocState, text: str) -> None:
        item.question = text

    return put


def _answer_setter(item: QAItem) -> Callable[[DocState, str], None]:
    def put(_: DocState, text: str) -> None:
        item.answer = text

    return put
