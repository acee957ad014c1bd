"""Magpie prompts for a document: the pieces of a chat template around the document and the query.

A LongMagpie query prompt is the start of a conversation whose document turn is complete and whose user turn
has just been opened, so the model continues by writing a user question; the answer prompt is the same text
plus that question, the end of the user turn and the assistant opener. Both are three literal pieces around
two slots::

    query prompt  = head + DOCUMENT + mid
    answer prompt = head + DOCUMENT + mid + QUERY + tail

The pieces come either from the model's own chat template (rendered with sentinel messages and cut at the
sentinels, so any chat model works) or from a preset for a known family. Prompts are tokenized once, as whole
rendered text with ``add_special_tokens=False``, and sent as token ids: the template's own BOS is the only one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from longmagpie.templates.families import LLAMA31_DEFAULT_DATE

Placement = Literal["system", "user"]

_DOC_SENTINEL = "LMDOCSENTINEL7f3a9c"
_QUERY_SENTINEL = "LMQUERYSENTINEL91c2e4"


@dataclass(frozen=True)
class PromptPieces:
    """The literal text around the document and the query, for one template and placement.

    Attributes:
        name: preset name, or ``chat_template:<hash>`` for a template read from a tokenizer.
        placement: ``system`` (document in the system turn, then the user opener) or ``user`` (document at
            the start of the user turn, then ``mid`` as a separator; the query continues that turn).
        head: text before the document (BOS, turn headers, a default system turn for ``user`` placement).
        mid: text between the document and the query.
        tail: text after the query (end of the user turn, assistant opener).
        stop_tokens: token strings that end generation (end of turn, role and header tokens), resolved
            against the tokenizer by :func:`stop_token_ids`.

    """

    name: str
    placement: Placement
    head: str
    mid: str
    tail: str
    stop_tokens: tuple[str, ...] = ()

    def query_prompt(self, document: str) -> str:
        """Render the text after which the model writes a user query about ``document``."""
        return self.head + document + self.mid

    def answer_prompt(self, document: str, query: str) -> str:
        """Render the text after which the model answers ``query`` about ``document``."""
        return self.head + document + self.mid + query + self.tail

    def fingerprint(self) -> str:
        """Hash everything that shapes the prompts (pieces and stops)."""
        text = "\x1f".join([self.name, self.placement, self.head, self.mid, self.tail, *self.stop_tokens])
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class FollowUpPieces:
    """The literal text of later turns (multi-turn harvest), for one template and placement.

    A conversation of ``k`` exchanges followed by a follow-up question is rendered as::

        follow-up query prompt  = head + DOCUMENT + mid + Q1 + answered + A1 + turn + ... + Ak + turn
        follow-up answer prompt = ... + turn + Q(k+1) + tail

    Attributes:
        answered: text between a past question and its answer (usually the pieces' ``tail``; Qwen3's template
            drops the empty think block from past answers, so there it is shorter).
        turn: text after an answer up to the next question (the end of the assistant turn and a user opener).

    """

    answered: str
    turn: str

    def query_prompt(self, pieces: PromptPieces, document: str, exchanges: Sequence[tuple[str, str]]) -> str:
        """Render the text after which the model writes the next question of a conversation about ``document``."""
        if not exchanges:
            return pieces.query_prompt(document)
        parts = [pieces.head, document, pieces.mid]
        for query, answer in exchanges:
            parts += [query, self.answered, answer, self.turn]
        return "".join(parts)

    def answer_prompt(
        self, pieces: PromptPieces, document: str, exchanges: Sequence[tuple[str, str]], query: str
    ) -> str:
        """Render the text after which the model answers ``query``, the conversation's next question."""
        if not exchanges:
            return pieces.answer_prompt(document, query)
        return self.query_prompt(pieces, document, exchanges) + query + pieces.tail


@dataclass(frozen=True)
class FamilyPreset:
    """Literal chat-template pieces of one model family (see the README's preset table).

    ``system_head``/``system_mid`` is the system turn opened and closed followed by the user opener (``None``
    for families without a system role); ``user_head`` opens a user turn (after the default system turn if
    the family injects one); ``tail`` closes the user turn and opens the assistant turn. ``turn`` closes an
    assistant turn and opens the next user turn, ``answered`` opens a past answer (default ``tail``; DeepSeek-R1
    and Qwen3 drop their think block from past answers); ``follow_up_system`` is ``False`` where a template does
    not render a follow-up turn after a system-placed document as a continuation of the first turn (Mistral moves
    the system message into the last user turn).
    """

    name: str
    user_head: str
    tail: str
    stop_tokens: tuple[str, ...]
    system_head: str | None = None
    system_mid: str | None = None
    aliases: tuple[str, ...] = field(default=())
    turn: str | None = None
    answered: str | None = None
    follow_up_system: bool = True

    def pieces(self, placement: Placement, user_separator: str = "\n\n") -> PromptPieces:
        """Return the prompt pieces of this family for ``placement``."""
        if placement == "system":
            if self.system_head is None or self.system_mid is None:
                raise ValueError(
                    f"template preset {self.name!r} has no system role: pass placement='user' (the document then "
                    "opens the user turn and the model continues it with a question)"
                )
            return PromptPieces(self.name, "system", self.system_head, self.system_mid, self.tail, self.stop_tokens)
        return PromptPieces(self.name, "user", self.user_head, user_separator, self.tail, self.stop_tokens)

    def follow_up(self, placement: Placement = "system") -> FollowUpPieces:
        """Return the pieces of later turns (multi-turn harvest) for ``placement``.

        Raises:
            ValueError: the family has no follow-up pieces for it; the message says what to use instead.

        """
        if self.turn is None or (placement == "system" and not self.follow_up_system):
            hint = " (try placement='user')" if self.turn is not None else ""
            raise ValueError(
                f"template preset {self.name!r} has no follow-up turns with {placement} placement (its template does "
                f"not render a later turn as a continuation of the first){hint}: use turns=1, or template='auto' "
                "with a chat template that does"
            )
        return FollowUpPieces(self.tail if self.answered is None else self.answered, self.turn)


_CHATML_STOPS = ("<|im_end|>", "<|im_start|>", "<|endoftext|>")
_LLAMA3_STOPS = ("<|eot_id|>", "<|eom_id|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>")
_LLAMA3_SYS = "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
_LLAMA3_USER = "<|start_header_id|>user<|end_header_id|>\n\n"
_LLAMA3_TAIL = "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
_LLAMA31_DATES = f"Cutting Knowledge Date: December 2023\nToday Date: {LLAMA31_DEFAULT_DATE}\n\n"
_GEMMA_STOPS = ("<end_of_turn>", "<eos>", "<start_of_turn>")
_MISTRAL_STOPS = ("</s>", "[INST]", "[/INST]")
_DEEPSEEK_BOS = "<｜begin▁of▁sentence｜>"
_DEEPSEEK_STOPS = ("<｜end▁of▁sentence｜>", "<｜User｜>", "<｜Assistant｜>")


def _chatml(name: str, default_system: str | None, tail_extra: str = "", aliases: tuple[str, ...] = ()) -> FamilyPreset:
    system_turn = "" if default_system is None else f"<|im_start|>system\n{default_system}<|im_end|>\n"
    return FamilyPreset(
        name=name,
        system_head="<|im_start|>system\n",
        system_mid="<|im_end|>\n<|im_start|>user\n",
        user_head=system_turn + "<|im_start|>user\n",
        tail="<|im_end|>\n<|im_start|>assistant\n" + tail_extra,
        stop_tokens=_CHATML_STOPS,
        aliases=aliases,
        turn="<|im_end|>\n<|im_start|>user\n",
        answered="<|im_end|>\n<|im_start|>assistant\n",  # a past answer has no think block (Qwen3)
    )


PRESETS: dict[str, FamilyPreset] = {
    p.name: p
    for p in [
        _chatml("qwen2", "You are a helpful assistant."),
        _chatml("qwen25", "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.", aliases=("qwen2.5",)),
        _chatml("qwen3", None, tail_extra="<think>\n\n</think>\n\n"),  # Qwen3 hybrid, thinking off
        _chatml("chatml", None),
        FamilyPreset(
            name="llama3",
            system_head=_LLAMA3_SYS,
            system_mid="<|eot_id|>" + _LLAMA3_USER,
            user_head="<|begin_of_text|>" + _LLAMA3_USER,
            tail=_LLAMA3_TAIL,
            stop_tokens=_LLAMA3_STOPS,
            turn="<|eot_id|>" + _LLAMA3_USER,
        ),
        FamilyPreset(  # Llama 3.1/3.2/3.3: the official template always writes the date preamble (3.1's default date;
            # 3.2's template writes today's date unless given date_string, pinned here for reproducible prompts)
            name="llama31",
            system_head=_LLAMA3_SYS + _LLAMA31_DATES,
            system_mid="<|eot_id|>" + _LLAMA3_USER,
            user_head=_LLAMA3_SYS + _LLAMA31_DATES + "<|eot_id|>" + _LLAMA3_USER,
            tail=_LLAMA3_TAIL,
            stop_tokens=_LLAMA3_STOPS,
            aliases=("llama3.1", "llama32", "llama3.2", "llama33", "llama3.3"),
            turn="<|eot_id|>" + _LLAMA3_USER,
        ),
        FamilyPreset(  # Gemma 1/2: the official template raises on a system message
            name="gemma",
            user_head="<bos><start_of_turn>user\n",
            tail="<end_of_turn>\n<start_of_turn>model\n",
            stop_tokens=_GEMMA_STOPS,
            aliases=("gemma2",),
            turn="<end_of_turn>\n<start_of_turn>user\n",
        ),
        FamilyPreset(  # Gemma 3 folds the system message into the first user turn, followed by a blank line
            name="gemma3",
            system_head="<bos><start_of_turn>user\n",
            system_mid="\n\n",
            user_head="<bos><start_of_turn>user\n",
            tail="<end_of_turn>\n<start_of_turn>model\n",
            stop_tokens=_GEMMA_STOPS,
            turn="<end_of_turn>\n<start_of_turn>user\n",
        ),
        FamilyPreset(  # Mistral-7B-Instruct-v0.3: the system message opens the (last) user turn
            name="mistral",
            system_head="<s>[INST] ",
            system_mid="\n\n",
            user_head="<s>[INST] ",
            tail="[/INST]",
            stop_tokens=_MISTRAL_STOPS,
            aliases=("mistral-v0.3",),
            turn="</s>[INST] ",
            answered="[/INST] ",
            follow_up_system=False,
        ),
        FamilyPreset(  # Mistral-Nemo-Instruct-2407: as v0.3, no space after [INST]
            name="mistral-nemo",
            system_head="<s>[INST]",
            system_mid="\n\n",
            user_head="<s>[INST]",
            tail="[/INST]",
            stop_tokens=_MISTRAL_STOPS,
            aliases=("nemo",),
            turn="</s>[INST]",
            follow_up_system=False,
        ),
        FamilyPreset(  # Phi-3/3.5-mini: the official template writes no BOS
            name="phi3",
            system_head="<|system|>\n",
            system_mid="<|end|>\n<|user|>\n",
            user_head="<|user|>\n",
            tail="<|end|>\n<|assistant|>\n",
            stop_tokens=("<|end|>", "<|endoftext|>", "<|user|>", "<|assistant|>", "<|system|>"),
            aliases=("phi3.5",),
            turn="<|end|>\n<|user|>\n",
        ),
        FamilyPreset(
            name="phi4",
            system_head="<|im_start|>system<|im_sep|>",
            system_mid="<|im_end|><|im_start|>user<|im_sep|>",
            user_head="<|im_start|>user<|im_sep|>",
            tail="<|im_end|><|im_start|>assistant<|im_sep|>",
            stop_tokens=("<|im_end|>", "<|endoftext|>", "<|im_start|>"),
            turn="<|im_end|><|im_start|>user<|im_sep|>",
        ),
        FamilyPreset(  # DeepSeek-V3: system text right after BOS, no generation-time think block
            name="deepseek",
            system_head=_DEEPSEEK_BOS,
            system_mid="<｜User｜>",
            user_head=_DEEPSEEK_BOS + "<｜User｜>",
            tail="<｜Assistant｜>",
            stop_tokens=_DEEPSEEK_STOPS,
            aliases=("deepseek-v3", "deepseek3"),
            turn="<｜end▁of▁sentence｜><｜User｜>",
        ),
        FamilyPreset(  # DeepSeek-V3.1 with thinking off (its template's default): the think block opens closed
            name="deepseek-v3.1",
            system_head=_DEEPSEEK_BOS,
            system_mid="<｜User｜>",
            user_head=_DEEPSEEK_BOS + "<｜User｜>",
            tail="<｜Assistant｜></think>",
            stop_tokens=_DEEPSEEK_STOPS,
            aliases=("deepseek-v31", "deepseek3.1"),
            turn="<｜end▁of▁sentence｜><｜User｜>",
        ),
        FamilyPreset(  # DeepSeek-R1 and its Qwen/Llama distills: the assistant turn opens a think block
            name="deepseek-r1",
            system_head=_DEEPSEEK_BOS,
            system_mid="<｜User｜>",
            user_head=_DEEPSEEK_BOS + "<｜User｜>",
            tail="<｜Assistant｜><think>\n",
            stop_tokens=_DEEPSEEK_STOPS,
            aliases=("deepseek-r1-distill", "r1"),
            turn="<｜end▁of▁sentence｜><｜User｜>",
            answered="<｜Assistant｜>",  # a past answer has no think block
        ),
    ]
}
_ALIASES = {alias: p.name for p in PRESETS.values() for alias in p.aliases}


def preset(name: str) -> FamilyPreset:
    """Look up the family preset called ``name`` (or one of its aliases).

    Raises:
        ValueError: no preset has that name; the message lists them.

    """
    key = _ALIASES.get(name.lower(), name.lower())
    if key not in PRESETS:
        raise ValueError(f"unknown template preset {name!r}; presets: {', '.join(sorted(PRESETS))}, or 'auto'")
    return PRESETS[key]


def _render(tokenizer: Any, template: str | None, messages: list[dict[str, str]], kwargs: Mapping[str, Any]) -> str:
    return tokenizer.apply_chat_template(
        messages, chat_template=template, tokenize=False, add_generation_prompt=True, **kwargs
    )


def pieces_from_template(
    tokenizer: Any,
    placement: Placement = "system",
    *,
    chat_template: str | None = None,
    user_separator: str = "\n\n",
    template_kwargs: Mapping[str, Any] | None = None,
) -> PromptPieces:
    """Derive the prompt pieces from a chat template by rendering sentinel messages and cutting at them.

    ``system`` renders ``[system: DOC, user: QUERY]``; ``user`` renders ``[user: DOC + separator + QUERY]``.
    The stop tokens are the tokenizer's special tokens that occur in the rendered pieces, plus its EOS, pad
    and BOS tokens. ``date_string`` is passed as Llama-3.1's default date unless ``template_kwargs`` sets it:
    Llama-3.2's template would otherwise write today's date, and the prompts (and the output fingerprint) would
    change from one day to the next.

    Raises:
        ValueError: the tokenizer has no chat template, the template fails or drops a message, or it has no
            user role; the message says what to change.

    """
    template = chat_template or getattr(tokenizer, "chat_template", None)
    if not template:
        raise ValueError(
            "the tokenizer has no chat template: pass chat_template=<Jinja text> or template=<preset name> "
            f"({', '.join(sorted(PRESETS))})"
        )
    kwargs = {"date_string": LLAMA31_DEFAULT_DATE, **(template_kwargs or {})}
    if placement == "system":
        messages = [{"role": "system", "content": _DOC_SENTINEL}, {"role": "user", "content": _QUERY_SENTINEL}]
    else:
        messages = [{"role": "user", "content": _DOC_SENTINEL + user_separator + _QUERY_SENTINEL}]
    try:
        text = _render(tokenizer, template, messages, kwargs)
    except Exception as err:  # jinja raise_exception and friends
        hint = " (try placement='user')" if placement == "system" else ""
        raise ValueError(f"the chat template cannot render a {placement} document turn{hint}: {err}") from err
    if text.count(_QUERY_SENTINEL) != 1:
        raise ValueError(
            "the chat template has no user role (a user message does not appear in its rendering): "
            "pass a chat template with a user turn, or template=<preset name>"
        )
    if text.count(_DOC_SENTINEL) != 1 or text.index(_DOC_SENTINEL) > text.index(_QUERY_SENTINEL):
        hint = " (try placement='user')" if placement == "system" else ""
        raise ValueError(f"the chat template drops or reorders the {placement} message holding the document{hint}")
    head, rest = text.split(_DOC_SENTINEL)
    mid, tail = rest.split(_QUERY_SENTINEL)
    name = "chat_template:" + hashlib.sha256(template.encode()).hexdigest()[:12]
    specials = _special_token_strings(tokenizer)
    pieces_text = head + mid + tail
    stops = tuple(t for t in specials if t in pieces_text)
    for attr in ("eos_token", "pad_token", "bos_token"):  # ends of text: never inside a query or an answer
        tok = getattr(tokenizer, attr, None)
        if tok and tok not in stops:
            stops = (*stops, tok)
    return PromptPieces(name, placement, head, mid, tail, stops)


_ANSWER_SENTINEL = "LMANSWERSENTINEL5b8d06"


def follow_up_from_template(
    tokenizer: Any,
    pieces: PromptPieces,
    *,
    chat_template: str | None = None,
    user_separator: str = "\n\n",
    template_kwargs: Mapping[str, Any] | None = None,
) -> FollowUpPieces:
    """Derive the pieces of later turns from a chat template: render sentinel conversations and cut at them.

    Conversations of two and three exchanges are rendered (document placed as ``pieces.placement`` says); each must
    start with the first turn's pieces and repeat the same ``answered`` and ``turn`` text between its questions
    and answers, and end with the first turn's ``tail``. Otherwise a conversation's later turns would not continue
    the prompt of its first, and the error says so.

    Raises:
        ValueError: the template renders later turns otherwise (moves the system message, rewrites past answers).

    """
    template = chat_template or getattr(tokenizer, "chat_template", None)
    kwargs = {"date_string": LLAMA31_DEFAULT_DATE, **(template_kwargs or {})}
    queries = [f"{_QUERY_SENTINEL}{k}" for k in range(3)]
    answers = [f"{_ANSWER_SENTINEL}{k}" for k in range(2)]

    def messages(n: int) -> list[dict[str, str]]:
        if pieces.placement == "system":
            out = [{"role": "system", "content": _DOC_SENTINEL}, {"role": "user", "content": queries[0]}]
        else:
            out = [{"role": "user", "content": _DOC_SENTINEL + user_separator + queries[0]}]
        for k in range(n):
            out += [{"role": "assistant", "content": answers[k]}, {"role": "user", "content": queries[k + 1]}]
        return out

    found: FollowUpPieces | None = None
    for n in (1, 2):
        try:
            text = _render(tokenizer, template, messages(n), kwargs)
        except Exception as err:  # jinja raise_exception and friends
            raise ValueError(f"the chat template cannot render a follow-up turn: {err}") from err
        start = pieces.head + _DOC_SENTINEL + pieces.mid + queries[0]
        ok = text.startswith(start)
        rest = text[len(start) :]
        cuts: list[tuple[str, str]] = []
        for k in range(n):
            answered, seen_answer, rest = rest.partition(answers[k])
            turn, seen_query, rest = rest.partition(queries[k + 1])
            ok = ok and bool(seen_answer) and bool(seen_query)
            cuts.append((answered, turn))
        ok = ok and rest == pieces.tail and len(set(cuts)) == 1
        if ok and found is not None:
            ok = cuts[0] == (found.answered, found.turn)
        if ok:
            found = FollowUpPieces(*cuts[0])
        if not ok:
            raise ValueError(
                "the chat template does not render a follow-up turn as a continuation of the first "
                f"({pieces.placement} placement: it moves the document or rewrites earlier turns); multi-turn "
                "harvest needs turns=1 with this template, or a chat_template / template preset that renders "
                "later turns after the first"
            )
    assert found is not None
    return found


def resolve_follow_up(
    tokenizer: Any,
    pieces: PromptPieces,
    template: str = "auto",
    *,
    chat_template: str | None = None,
    user_separator: str = "\n\n",
    template_kwargs: Mapping[str, Any] | None = None,
) -> FollowUpPieces:
    """Follow-up pieces from the tokenizer's own template (``template='auto'``) or from a family preset."""
    if template == "auto":
        return follow_up_from_template(
            tokenizer,
            pieces,
            chat_template=chat_template,
            user_separator=user_separator,
            template_kwargs=template_kwargs,
        )
    return preset(template).follow_up(pieces.placement)


def resolve_pieces(
    tokenizer: Any,
    template: str = "auto",
    placement: Placement = "system",
    *,
    chat_template: str | None = None,
    user_separator: str = "\n\n",
    template_kwargs: Mapping[str, Any] | None = None,
) -> PromptPieces:
    """Pieces from the tokenizer's own template (``template='auto'``) or from a named family preset."""
    if template == "auto":
        return pieces_from_template(
            tokenizer,
            placement,
            chat_template=chat_template,
            user_separator=user_separator,
            template_kwargs=template_kwargs,
        )
    return preset(template).pieces(placement, user_separator)


def _special_token_strings(tokenizer: Any) -> list[str]:
    """Every special token string of ``tokenizer`` (named specials and added tokens marked special)."""
    out = dict.fromkeys(getattr(tokenizer, "all_special_tokens", []) or [])
    for tok in (getattr(tokenizer, "added_tokens_decoder", {}) or {}).values():
        if getattr(tok, "special", False):
            out.setdefault(str(tok.content))
    return [t for t in out if t]


def special_token_strings(tokenizer: Any) -> list[str]:
    """Every special token string of ``tokenizer``, as template leaks are detected."""
    return _special_token_strings(tokenizer)


def stop_token_ids(tokenizer: Any, pieces: PromptPieces, extra: Sequence[int] = ()) -> list[int]:
    """Resolve the pieces' stop tokens to ids (tokens the vocabulary lacks are left out), plus EOS and ``extra``.

    Raises:
        ValueError: none of the stop tokens exists in the vocabulary (a preset for another family).

    """
    ids: dict[int, None] = {}
    vocab = tokenizer.get_vocab()
    for tok in pieces.stop_tokens:
        tid = vocab.get(tok)
        if tid is not None:
            ids[int(tid)] = None
    if not ids:
        raise ValueError(
            f"none of the stop tokens of template {pieces.name!r} ({', '.join(pieces.stop_tokens)}) is in the "
            "tokenizer's vocabulary: is the preset for another model family? Use template='auto'"
        )
    eos = getattr(tokenizer, "eos_token_id", None)
    if isinstance(eos, int):
        ids[eos] = None
    for tid in extra:
        ids[int(tid)] = None
    return list(ids)
