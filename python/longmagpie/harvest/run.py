"""The harvest loop: shards in, a query pass and an answer pass per shard, rows out, resumable."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from longmagpie import measures
from longmagpie.assembly.tokenizer import load_tokenizer
from longmagpie.generate.engines import Engine, GenerationRequest, GenerationResult, engine_for, request_seed
from longmagpie.generate.reasoning import opens_reasoning
from longmagpie.generate.resume import fingerprint, open_output, read_marker, write_shard
from longmagpie.generate.sources import Document, Shard, check_columns, plan_shards, read_shard, resolve_inputs
from longmagpie.harvest.config import HarvestConfig
from longmagpie.harvest.filters import (
    AnswerFilter,
    QueryDeduplicator,
    QueryFilter,
    leak_strings,
    query_hash,
)
from longmagpie.harvest.output import ROW_SCHEMA, row_schema
from longmagpie.harvest.prompt_ids import PromptTokenizer
from longmagpie.io import storage
from longmagpie.templates.prompts import (
    FollowUpPieces,
    PromptPieces,
    resolve_follow_up,
    resolve_pieces,
    special_token_strings,
    stop_token_ids,
)

log = logging.getLogger(__name__)

_TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "chat_template.jinja",
)


@dataclass(frozen=True)
class HarvestEvent:
    """A step of the run, passed to ``on_event``.

    ``kind`` is ``shard_skipped``, ``shard_start``, ``queries_done`` (the query pass of the shard is back) or
    ``shard_done`` (its rows and marker are written); ``documents`` is the shard's row count where relevant.
    """

    kind: str
    shard: int
    shards: int
    documents: int = 0


@dataclass
class HarvestReport:
    """What a run did; ``counts`` sums every shard's counters (finished earlier or now).

    Counters: ``documents``; skipped documents ``doc_empty``, ``doc_not_utf8``, ``doc_special_tokens``;
    ``doc_truncated``; ``queries_generated``; query rejections ``query_*``; ``queries_accepted``; answer
    rejections ``answer_*``; ``rows``. Nothing is lost: ``queries_generated`` equals ``queries_accepted`` plus
    the ``query_*`` rejections (edits such as ``query_cut_*`` aside), ``answers_generated`` equals ``rows`` plus
    the ``answer_*`` rejections (``answer_reasoning_stripped`` aside), and ``queries_accepted`` equals ``rows``
    plus ``questions_without_answer``. ``candidate_rounds`` counts query candidate rounds (one ``generate``
    each) and ``questions_without_query`` the questions none of whose ``query_candidates`` passed. ``quality``
    holds the model-free measures of :func:`longmagpie.measures.summarize_quality` over every shard (document
    yield, grounding, openers, duplicate rate, query and answer lengths).

    With ``turns > 1``: ``followups_generated`` equals ``followups_accepted`` plus the ``followup_query_*``
    rejections (``followup_query_repeat``: a question the conversation already asked), ``followup_answers_generated``
    equals ``followup_answers_accepted`` plus the ``followup_answer_*`` rejections, and ``turns_<n>`` counts the
    rows holding ``n`` exchanges (``conversations_ended_query`` / ``_answer``: ended early, by which pass).
    With ``steer``: ``steer_<i>`` counts the rows asked under instruction ``i``.

    ``prefix_cache`` holds, for each pass run now (``query``, ``answer``, ``turn2_query``, ...), the prompt tokens
    sent, the tokens the engine's prefix cache served (where the engine reports them: vLLM offline, a server
    started with ``--enable-prompt-tokens-details``) and their ratio; it depends on the engine's state, so it
    is reported, not written into the output.
    """

    output_dir: str
    fingerprint: str
    engine: str
    shards_total: int = 0
    shards_written: int = 0
    shards_skipped: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    quality: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0
    prefix_cache: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        """Rows in the output directory."""
        return self.counts.get("rows", 0)

    @property
    def documents(self) -> int:
        """Documents read over all shards."""
        return self.counts.get("documents", 0)


def _hash_dir_files(path: Path, names: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for name in names:
        f = path / name
        if f.is_file():
            out[name] = hashlib.sha256(f.read_bytes()).hexdigest()[:16]
    return out


def model_identity(model: str) -> dict[str, Any]:
    """Return what identifies a model in a fingerprint: its name, or its directory's config hash and weight files."""
    path = Path(model)
    if not path.is_dir():
        return {"name": model}
    weights = sorted(
        (f.name, f.stat().st_size) for f in path.iterdir() if f.suffix in (".safetensors", ".bin", ".gguf", ".pt")
    )
    return {"path": str(path.resolve()), "files": _hash_dir_files(path, ("config.json",)), "weights": weights}


def _tokenizer_identity(source: str, tokenizer: Any) -> dict[str, Any]:
    path = Path(source)
    if path.is_dir():
        return {"files": _hash_dir_files(path, _TOKENIZER_FILES)}
    vocab = json.dumps(sorted(tokenizer.get_vocab().items()))
    return {"vocab": hashlib.sha256(vocab.encode()).hexdigest()[:16]}


def _generation_eos_ids(model: str) -> list[int]:
    """Read the EOS ids a model's ``generation_config.json`` declares (vLLM stops on them too)."""
    path = Path(model) / "generation_config.json"
    if not path.is_file():
        return []
    eos = json.loads(path.read_text()).get("eos_token_id")
    if eos is None:
        return []
    return [int(e) for e in (eos if isinstance(eos, list) else [eos])]


def query_seed(seed: int, doc_id: str, sample: int, candidate: int) -> int:
    """Seed of query candidate ``candidate`` of question ``sample`` (candidate 0: the one-candidate seed)."""
    return request_seed(seed, doc_id, sample, "query" if candidate == 0 else f"query{candidate}")


def answer_seed(seed: int, doc_id: str, sample: int, candidate: int) -> int:
    """Seed of answer candidate ``candidate`` of question ``sample`` (candidate 0: the one-candidate seed)."""
    return request_seed(seed, doc_id, sample, "answer" if candidate == 0 else f"answer{candidate}")


def row_id(doc_id: str, sample: int, query: str, answer: str) -> str:
    """Compute a row's stable id: 16 hex characters of BLAKE2b over document id, sample, query and answer."""
    h = hashlib.blake2b(f"{doc_id}\x1f{sample}\x1f{query}\x1f{answer}".encode(), digest_size=8)
    return h.hexdigest()


@dataclass
class _Plan:
    config: HarvestConfig
    pieces: PromptPieces
    prompts: PromptTokenizer
    stops: list[int]
    query_filter: QueryFilter
    answer_filter: AnswerFilter
    fingerprint: str
    follow_up: FollowUpPieces | None = None
    schema: pa.Schema = ROW_SCHEMA


class PrefixCacheStats:
    """Prompt tokens sent and tokens served from the prefix cache, per pass (what engines report)."""

    def __init__(self) -> None:
        """Start with no pass counted."""
        self.passes: dict[str, list[int]] = {}

    def add(self, name: str, requests: list[GenerationRequest], results: list[GenerationResult]) -> None:
        """Count one ``generate`` of pass ``name``; results without a cached-token count are left out."""
        entry = self.passes.setdefault(name, [0, 0, 0])
        for req, res in zip(requests, results, strict=True):
            if res.cached_tokens is None:
                continue
            entry[0] += len(req.prompt_ids)
            entry[1] += res.cached_tokens
            entry[2] += 1

    def report(self) -> dict[str, dict[str, Any]]:
        """``{pass: {"prompt_tokens", "cached_tokens", "requests", "hit_rate"}}`` for the passes counted."""
        return {
            name: {
                "prompt_tokens": p,
                "cached_tokens": c,
                "requests": n,
                "hit_rate": round(c / p, 4) if p else None,
            }
            for name, (p, c, n) in self.passes.items()
        }


def steer_choice(seed: int, doc_id: str, sample: int, shares: tuple[float, ...]) -> int:
    """Index of the steering instruction a conversation is asked under: a seeded draw with the given ``shares``.

    The draw hashes the run seed, the document id and the sample (no state), so it does not depend on the order,
    the batch or the shard; over many rows each instruction's share approaches its weight's.
    """
    u = request_seed(seed, doc_id, sample, "steer") / 2**31
    total = sum(shares)
    acc = 0.0
    for i, w in enumerate(shares):
        acc += w / total
        if u < acc:
            return i
    return max(i for i, w in enumerate(shares) if w > 0)


def _prepare(config: HarvestConfig) -> tuple[_Plan, list[Shard], dict[str, Any]]:
    files = resolve_inputs(config.inputs, config.input_format)
    check_columns(files, config.text_column, config.id_column)
    tok_source = config.tokenizer or config.model
    tokenizer = load_tokenizer(tok_source)
    pieces = resolve_pieces(
        tokenizer,
        config.template,
        config.placement,
        chat_template=config.chat_template,
        user_separator=config.user_separator,
        template_kwargs=config.template_kwargs,
    )
    follow_up = None
    if config.turns > 1:
        follow_up = resolve_follow_up(
            tokenizer,
            pieces,
            config.template,
            chat_template=config.chat_template,
            user_separator=config.user_separator,
            template_kwargs=config.template_kwargs,
        )
    stops = stop_token_ids(tokenizer, pieces, _generation_eos_ids(config.model))
    prompts = PromptTokenizer(tokenizer, pieces, config.doc_budget)
    steer_tokens = max((len(prompts.encode(t + config.steer_separator)) for t in config.steer), default=0)
    turn_tokens = 0 if follow_up is None else len(prompts.encode(follow_up.answered + follow_up.turn))
    per_turn = config.query_max_tokens + config.answer_max_tokens
    need = (
        config.doc_budget
        + prompts.overhead_tokens()
        + steer_tokens
        + config.turns * per_turn
        + (config.turns - 1) * turn_tokens
    )
    if need > config.max_model_len:
        turns = "" if config.turns == 1 else f"{config.turns} turns x "
        extra = "" if config.turns == 1 else f" + {config.turns - 1} x turn pieces ({turn_tokens})"
        steer = f" + steer ({steer_tokens})" if steer_tokens else ""
        raise ValueError(
            f"max_doc_tokens ({config.doc_budget}) + template ({prompts.overhead_tokens()}){steer} + {turns}"
            f"(query_max_tokens ({config.query_max_tokens}) + answer_max_tokens ({config.answer_max_tokens})){extra} "
            f"= {need} exceeds max_model_len ({config.max_model_len}): lower one of them"
        )
    settings = config.output_settings()
    settings["inputs"] = [[str(f.path), f.format, f.rows] for f in files]
    from longmagpie import __version__

    parts = {
        "config": settings,
        "model": model_identity(config.model),
        "tokenizer": _tokenizer_identity(tok_source, tokenizer),
        "template": dataclasses.asdict(pieces),
        "stop_token_ids": stops,
        "seed": config.seed,
        "version": __version__,
    }
    if follow_up is not None:
        parts["follow_up"] = dataclasses.asdict(follow_up)
    fp = fingerprint(parts)
    plan = _Plan(
        config=config,
        pieces=pieces,
        prompts=prompts,
        stops=stops,
        query_filter=QueryFilter(
            question_mark=config.question_mark,
            min_chars=config.min_query_chars,
            max_chars=config.max_query_chars,
            answer_markers=config.answer_markers,
            leak_strings=leak_strings(special_token_strings(tokenizer)),
        ),
        answer_filter=AnswerFilter(
            config.allow_unfinished_answers,
            config.min_answer_chars,
            strip_reasoning=config.strip_reasoning,
            prompt_opens_reasoning=opens_reasoning(pieces.tail),
        ),
        fingerprint=fp,
        follow_up=follow_up,
        schema=row_schema(config.turns, bool(config.steer)),
    )
    return plan, plan_shards(files, config.shard_rows), parts


def _request(plan: _Plan, kind: str, prompt_ids: list[int], seed: int) -> GenerationRequest:
    """Build a ``query`` or ``answer`` request with that pass's limit and sampling settings."""
    cfg = plan.config
    if kind == "query":
        return GenerationRequest(
            prompt_ids, cfg.query_max_tokens, cfg.query_temperature, cfg.query_top_p, seed, plan.stops
        )
    return GenerationRequest(
        prompt_ids, cfg.answer_max_tokens, cfg.answer_temperature, cfg.answer_top_p, seed, plan.stops
    )


def _prefixed(counts: Counter[str], part: Counter[str], prefix: str) -> None:
    """Add a filter's counters to ``counts`` under ``prefix`` (``query_empty`` -> ``followup_query_empty``)."""
    for key, value in part.items():
        counts[prefix + key] += value


def _harvest_shard(
    plan: _Plan,
    shard: Shard,
    engine: Engine,
    dedup: QueryDeduplicator,
    emit: Callable[[str, Shard], None],
    cache: PrefixCacheStats | None = None,
) -> tuple[pa.Table, Counter[str], list[str], dict[str, Any]]:
    cfg = plan.config
    docs = read_shard(shard, cfg.text_column, cfg.id_column)
    counts: Counter[str] = Counter(documents=len(docs))
    leaks = plan.query_filter.leak_strings
    live: list[Document] = []
    texts: list[str] = []
    for d in docs:
        if d.text is None:
            counts[d.skip or "doc_empty"] += 1
        elif any(s in d.text for s in leaks):
            counts["doc_special_tokens"] += 1
        else:
            live.append(d)
            texts.append(d.text)
    prepared = plan.prompts.prepare(texts)
    counts["doc_truncated"] += sum(p.truncated for p in prepared)

    # Query candidates in rounds: round c asks candidate c of every question still without an accepted query
    # (one batched generate per round), so a question costs only the candidates it needs; the document's prefix,
    # computed in round 0, is reused from the prefix cache by later rounds and by the answer pass.
    cache = cache if cache is not None else PrefixCacheStats()
    shares = cfg.steer_shares or tuple(1.0 for _ in cfg.steer)
    steer: dict[tuple[int, int], int] = {}
    if cfg.steer:
        steer = {
            (i, s): steer_choice(cfg.seed, live[i].doc_id, s, shares)
            for i in range(len(live))
            for s in range(cfg.queries_per_doc)
        }

    def asked(i: int, s: int) -> str:
        """Return the document as the question prompts show it: after its steering instruction, if any."""
        if not cfg.steer:
            return prepared[i].context
        return cfg.steer[steer[(i, s)]] + cfg.steer_separator + prepared[i].context

    query_ids: dict[tuple[int, int], list[int]] = {}
    open_questions = [(i, s) for i in range(len(live)) for s in range(cfg.queries_per_doc)]
    if cfg.steer:
        for i, s in open_questions:
            query_ids[(i, s)] = plan.prompts.query_prompt(asked(i, s))
    else:
        for i, p in enumerate(prepared):
            ids = plan.prompts.query_prompt(p.context)
            query_ids.update({(i, s): ids for s in range(cfg.queries_per_doc)})
    chosen: dict[tuple[int, int], tuple[int, int, int, str, str]] = {}
    doc_seen: list[set[str]] = [set() for _ in live]
    hashes: list[str] = []
    for c in range(cfg.query_candidates):
        if not open_questions:
            break
        q_requests = [
            _request(plan, "query", query_ids[(i, s)], query_seed(cfg.seed, live[i].doc_id, s, c))
            for i, s in open_questions
        ]
        counts["queries_generated"] += len(q_requests)
        q_results = engine.generate(q_requests)
        cache.add("query", q_requests, q_results)
        still_open = []
        for (i, s), res in zip(open_questions, q_results, strict=True):
            query = plan.query_filter.clean(res.text, counts)
            key = query_hash(query) if query is not None else ""
            if query is None or not dedup.admit(doc_seen[i], key, counts):
                still_open.append((i, s))
                continue
            hashes.append(key)
            chosen[(i, s)] = (i, s, c, query, res.finish_reason)
        open_questions = still_open
        counts["candidate_rounds"] += 1
    counts["questions_without_query"] += len(open_questions)
    emit("queries_done", shard)
    accepted = [chosen[key] for key in sorted(chosen)]  # (doc index, sample, candidate, query, finish_reason)
    counts["queries_accepted"] += len(accepted)

    # Answers in rounds too: round c asks answer candidate c of every accepted question still without an answer
    # that passed the answer filters (a weak model's answer often runs past answer_max_tokens).
    answer_ids = [plan.prompts.answer_prompt(prepared[i].context, query) for i, _, _, query, _ in accepted]
    answered: dict[int, tuple[str, GenerationRequest, GenerationResult, int]] = {}
    open_answers = list(range(len(accepted)))
    for c in range(cfg.answer_candidates):
        if not open_answers:
            break
        a_requests = [
            _request(
                plan, "answer", answer_ids[k], answer_seed(cfg.seed, live[accepted[k][0]].doc_id, accepted[k][1], c)
            )
            for k in open_answers
        ]
        counts["answers_generated"] += len(a_requests)
        a_results = engine.generate(a_requests)
        cache.add("answer", a_requests, a_results)
        still_open = []
        for k, req, res in zip(open_answers, a_requests, a_results, strict=True):
            answer = plan.answer_filter.clean(res.text, res.finish_reason, counts)
            if answer is None:
                still_open.append(k)
            else:
                answered[k] = (answer, req, res, c)
        open_answers = still_open
    counts["questions_without_answer"] += len(open_answers)
    contexts = [p.context for p in prepared]
    exchanges, ended = _follow_ups(plan, engine, live, contexts, accepted, answered, asked, counts, cache)

    rows: dict[str, list[Any]] = {name: [] for name in plan.schema.names}
    for k in sorted(answered):
        i, s, c, query, q_finish = accepted[k]
        answer, req, res, a_c = answered[k]
        d, p = live[i], prepared[i]
        values = {
            "id": row_id(d.doc_id, s, query, answer),
            "doc_id": d.doc_id,
            "context": p.context,
            "query": query,
            "answer": answer,
            "sample": s,
            "query_candidate": c,
            "answer_candidate": a_c,
            "context_tokens": p.tokens,
            "context_truncated": p.truncated,
            "query_tokens": len(plan.prompts.encode(query)),
            "answer_tokens": res.num_tokens,
            "query_grounding": measures.grounding(query, p.context),
            "answer_grounding": measures.grounding(answer, p.context),
            "prompt_tokens": len(req.prompt_ids),
            "model": cfg.model,
            "template": plan.pieces.name,
            "placement": plan.pieces.placement,
            "query_temperature": cfg.query_temperature,
            "query_top_p": cfg.query_top_p,
            "answer_temperature": cfg.answer_temperature,
            "answer_top_p": cfg.answer_top_p,
            "seed": cfg.seed,
            "query_finish_reason": q_finish,
            "answer_finish_reason": res.finish_reason,
            "source_file": shard.file.name,
            "source_row": d.row,
        }
        if cfg.turns > 1:
            values["messages"] = _conversation(cfg, p.context, exchanges[k])
            values["turns"] = len(exchanges[k])
            values["turns_ended"] = ended.get(k, "complete")
            scores = [g for q, _ in exchanges[k][1:] if (g := measures.grounding(q, p.context)) is not None]
            values["followup_grounding"] = sum(scores) / len(scores) if scores else None
            counts[f"turns_{len(exchanges[k])}"] += 1
        if cfg.steer:
            values["steer"] = cfg.steer[steer[(i, s)]]
            counts[f"steer_{steer[(i, s)]}"] += 1
        for name, v in values.items():
            rows[name].append(v)
    counts["rows"] += len(rows["id"])
    quality = measures.shard_quality(
        rows["doc_id"], rows["context"], rows["query"], rows["answer"], len(docs), seed=cfg.seed
    )
    return pa.table(rows, schema=plan.schema), counts, hashes, quality


def _conversation(cfg: HarvestConfig, context: str, exchanges: list[tuple[str, str]]) -> list[dict[str, str]]:
    """Return the row's ``messages``: the document placed as the prompts placed it, then every question and answer."""
    (q1, a1), later = exchanges[0], exchanges[1:]
    if cfg.placement == "system":
        out = [{"role": "system", "content": context}, {"role": "user", "content": q1}]
    else:
        out = [{"role": "user", "content": context + cfg.user_separator + q1}]
    out.append({"role": "assistant", "content": a1})
    for q, a in later:
        out += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    return out


def _follow_ups(
    plan: _Plan,
    engine: Engine,
    live: list[Document],
    contexts: list[str],
    accepted: list[tuple[int, int, int, str, str]],
    answered: dict[int, tuple[str, GenerationRequest, GenerationResult, int]],
    asked: Callable[[int, int], str],
    counts: Counter[str],
    cache: PrefixCacheStats,
) -> tuple[dict[int, list[tuple[str, str]]], dict[int, str]]:
    """Grow every answered question into a conversation of up to ``turns`` exchanges, one turn at a time.

    Turn ``t`` is two batched generates over the conversations still going: a follow-up question (the
    conversation so far, then a new user turn opened; the question prompt shows the steering instruction, as the
    first one did), then its answer (the conversation and the question, without the instruction, as the row will
    show it). A rejected question or answer ends its conversation at the last accepted exchange.

    Returns:
        The exchanges of each answered question (by index into ``accepted``) and why the ones that stopped
        early ended (``query_rejected`` / ``answer_rejected``).

    """
    cfg = plan.config
    exchanges = {k: [(accepted[k][3], answered[k][0])] for k in sorted(answered)}
    ended: dict[int, str] = {}
    follow_up = plan.follow_up
    if cfg.turns == 1 or follow_up is None:
        return exchanges, ended
    going = sorted(exchanges)
    for t in range(2, cfg.turns + 1):
        if not going:
            break
        q_requests = [
            _request(
                plan,
                "query",
                plan.prompts.follow_up_query_prompt(follow_up, asked(accepted[k][0], accepted[k][1]), exchanges[k]),
                request_seed(cfg.seed, live[accepted[k][0]].doc_id, accepted[k][1], f"turn{t}_query"),
            )
            for k in going
        ]
        counts["followups_generated"] += len(q_requests)
        q_results = engine.generate(q_requests)
        cache.add(f"turn{t}_query", q_requests, q_results)
        questions: dict[int, str] = {}
        for k, res in zip(going, q_results, strict=True):
            part: Counter[str] = Counter()
            query = plan.query_filter.clean(res.text, part)
            _prefixed(counts, part, "followup_")
            if query is None:
                ended[k] = "query_rejected"
                counts["conversations_ended_query"] += 1
            elif query_hash(query) in {query_hash(q) for q, _ in exchanges[k]}:
                counts["followup_query_repeat"] += 1
                ended[k] = "query_rejected"
                counts["conversations_ended_query"] += 1
            else:
                questions[k] = query
        counts["followups_accepted"] += len(questions)
        with_question = sorted(questions)
        a_requests = [
            _request(
                plan,
                "answer",
                plan.prompts.follow_up_answer_prompt(follow_up, contexts[accepted[k][0]], exchanges[k], questions[k]),
                request_seed(cfg.seed, live[accepted[k][0]].doc_id, accepted[k][1], f"turn{t}_answer"),
            )
            for k in with_question
        ]
        counts["followup_answers_generated"] += len(a_requests)
        a_results = engine.generate(a_requests)
        cache.add(f"turn{t}_answer", a_requests, a_results)
        going = []
        for k, res in zip(with_question, a_results, strict=True):
            part = Counter()
            answer = plan.answer_filter.clean(res.text, res.finish_reason, part)
            _prefixed(counts, part, "followup_")
            if answer is None:
                ended[k] = "answer_rejected"
                counts["conversations_ended_answer"] += 1
                continue
            exchanges[k].append((questions[k], answer))
            counts["followup_answers_accepted"] += 1
            going.append(k)
    return exchanges, ended


def harvest_quality(
    out_dir: str | Path, shard_qualities: list[dict[str, Any]] | None = None, counts: dict[str, int] | None = None
) -> dict[str, Any]:
    """Compute the quality measures of a harvest directory: its markers' sums merged, lengths read from its rows.

    ``shard_qualities`` and ``counts`` default to what the finished shards' markers hold.
    """
    import pyarrow.parquet as pq

    out = Path(out_dir)
    keys = sorted(p.name[: -len(".done.json")] for p in out.glob("shard-*.done.json"))
    if shard_qualities is None or counts is None:
        markers = [json.loads((out / f"{k}.done.json").read_text()) for k in keys]
        shard_qualities = [m.get("quality", {}) for m in markers]
        total: Counter[str] = Counter()
        for m in markers:
            total.update(m.get("counts", {}))
        counts = dict(total)
    lengths = [pq.read_table(out / f"{k}.parquet", columns=["query_tokens", "answer_tokens"]) for k in keys]
    q_tokens = [v for t in lengths for v in t.column("query_tokens").to_pylist()]
    a_tokens = [v for t in lengths for v in t.column("answer_tokens").to_pylist()]
    return measures.summarize_quality(
        measures.merge_quality(shard_qualities), counts, query_tokens=q_tokens, answer_tokens=a_tokens
    )


def harvest(
    config: HarvestConfig,
    *,
    engine: Engine | None = None,
    on_event: Callable[[HarvestEvent], None] | None = None,
) -> HarvestReport:
    """Harvest (context, query, answer) rows from the documents of ``config.inputs`` into ``config.output_dir``.

    Each input shard gets one batched query pass and one batched answer pass; its rows are written atomically
    with a done-marker. A rerun skips finished shards (no engine is started if none is left) and refuses an
    output directory whose fingerprint (output settings, model, tokenizer, template, seed, package version)
    differs. ``engine`` replaces the engine the config names (for reuse across runs); it is not closed.
    ``on_event`` is called at each step (see :class:`HarvestEvent`).

    Raises:
        FileNotFoundError: an input, the model or the tokenizer does not exist.
        ValueError: bad settings, a missing text column, a bad JSONL line, a chat template without a user
            role, or an output directory from another run; the message says what to change.
        ConnectionError: the ``openai`` server cannot be reached (after retries).

    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    out_dir = storage.require_local(
        config.output_dir, "the harvest output directory (its resume markers rely on local atomic renames)"
    )
    plan, shards, parts = _prepare(config)
    open_output(out_dir, plan.fingerprint, parts)
    log.info("harvest into %s: %d shards, fingerprint %s", out_dir, len(shards), plan.fingerprint[:12])
    report = HarvestReport(str(out_dir), plan.fingerprint, engine.name if engine else config.engine)
    report.shards_total = len(shards)
    totals: Counter[str] = Counter()
    qualities: list[dict[str, Any]] = []
    dedup = QueryDeduplicator(config.dedup)
    cache = PrefixCacheStats()
    own_engine: Engine | None = None
    disable = not config.progress
    shard_bar = tqdm(total=len(shards), desc="harvest shards", unit="shard", disable=disable, position=0)
    doc_bar = tqdm(
        total=sum(s.stop - s.start for s in shards),
        desc="documents",
        unit="doc",
        disable=disable,
        position=1,
        leave=False,
    )

    def emit(kind: str, shard: Shard, docs: int = 0) -> None:
        if on_event is not None:
            on_event(HarvestEvent(kind, shard.index, len(shards), docs))

    try:
        for shard in shards:
            marker = read_marker(out_dir, shard.key)
            if marker is not None and marker.get("fingerprint") == plan.fingerprint:
                totals.update(marker["counts"])
                qualities.append(marker.get("quality", {}))
                dedup.global_seen.update(marker["query_hashes"] if config.dedup == "global" else ())
                report.shards_skipped += 1
                log.info("shard %s finished earlier: skipped", shard.key)
                shard_bar.update(1)
                doc_bar.update(shard.stop - shard.start)
                emit("shard_skipped", shard)
                continue
            if engine is None and own_engine is None:
                own_engine = engine_for(config)
            active = engine if engine is not None else own_engine
            assert active is not None
            emit("shard_start", shard, shard.stop - shard.start)
            log.info("shard %s: documents %d-%d of %s", shard.key, shard.start, shard.stop, shard.file.path)
            table, counts, hashes, quality = _harvest_shard(plan, shard, active, dedup, emit, cache)
            write_shard(
                out_dir,
                shard.key,
                table,
                {
                    "fingerprint": plan.fingerprint,
                    "shard": shard.key,
                    "source_file": str(shard.file.path),
                    "start": shard.start,
                    "stop": shard.stop,
                    "counts": dict(sorted(counts.items())),
                    "query_hashes": hashes,
                    "quality": quality,
                },
            )
            qualities.append(quality)
            totals.update(counts)
            log.info("shard %s written: %s", shard.key, ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if v))
            report.shards_written += 1
            shard_bar.update(1)
            doc_bar.update(shard.stop - shard.start)
            shard_bar.set_postfix(rows=totals["rows"])
            emit("shard_done", shard, shard.stop - shard.start)
    finally:
        doc_bar.close()
        shard_bar.close()
        if own_engine is not None:
            own_engine.close()
    report.counts = dict(sorted(totals.items()))
    report.prefix_cache = cache.report()
    for name, entry in report.prefix_cache.items():
        served, sent = entry["cached_tokens"], entry["prompt_tokens"]
        log.info("prefix cache, %s pass: %s of %s prompt tokens served", name, served, sent)
    report.quality = harvest_quality(out_dir, qualities, report.counts)
    report.elapsed_s = time.perf_counter() - t0
    return report
