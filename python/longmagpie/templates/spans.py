"""A tokenizer's own chat template, cut into the fixed texts around a (user, assistant) exchange.

The template is rendered once, in Python, with transformers on placeholder messages; the text around the
placeholders gives the spans the Rust assembler concatenates around documents, query and answer:

``prefix`` · user content · ``user_to_answer`` · answer · ``answer_end`` · ``suffix``

``answer_end`` is the part after the answer that belongs to the assistant's turn and is trained on (the
end-of-turn token): the template's ``{% generation %}`` block decides when it has one, otherwise the text up to
and including the first end-of-turn token (the tokenizer's EOS or a known one such as ``<|im_end|>``,
``<|eot_id|>``).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from typing import Any

USER_SENTINEL = "LmUsErSeNtInEl7f3a"
ANSWER_SENTINEL = "LmAnSwErSeNtInEl9c2e"
PAD = " \n\t"

# End-of-turn markers of common chat families, tried when the template marks no generation block.
END_OF_TURN_TOKENS = (
    "<|im_end|>",
    "<|eot_id|>",
    "<|end_of_turn|>",
    "<end_of_turn>",
    "<|end|>",
    "<|endoftext|>",
    "</s>",
    "<｜end▁of▁sentence｜>",
)


class TemplateError(ValueError):
    """The chat template cannot be cut into fixed spans (no user role, content rewritten, ...)."""


@dataclass(frozen=True)
class ChatSpans:
    """Fixed texts of one chat template configuration (see the module docstring)."""

    prefix: str
    user_to_answer: str
    answer_end: str
    suffix: str
    trim_user: bool = False
    trim_answer: bool = False
    system: str | None = None
    between_turns: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return the spans as a plain dict (for metadata and manifests)."""
        return asdict(self)


def _messages(system: str | None, user: str, answer: str) -> list[dict[str, str]]:
    msgs = [] if system is None else [{"role": "system", "content": system}]
    return [*msgs, {"role": "user", "content": user}, {"role": "assistant", "content": answer}]


def _render(tokenizer: Any, messages: list[dict[str, str]], where: str) -> str:
    try:
        out = tokenizer.apply_chat_template(messages, tokenize=False)
    except Exception as err:  # jinja raise_exception, missing template, ...
        raise TemplateError(
            f"the chat template of {where} cannot render a user/assistant exchange ({err}); "
            "use a chat tokenizer whose template has user and assistant roles"
        ) from err
    if not isinstance(out, str):
        raise TemplateError(f"the chat template of {where} did not render text")
    return out


def _generation_end(tokenizer: Any, messages: list[dict[str, str]]) -> int | None:
    """End (char index) of the assistant's ``{% generation %}`` block, if the template has one."""
    template = getattr(tokenizer, "chat_template", None)
    if not isinstance(template, str) or not re.search(r"{%-?\s*generation\s*-?%}", template):
        return None
    try:
        from transformers.utils.chat_template_utils import render_jinja_template

        special = dict(getattr(tokenizer, "special_tokens_map", {}) or {})
        _, indices = render_jinja_template(
            conversations=[messages], chat_template=template, return_assistant_tokens_mask=True, **special
        )
    except Exception:
        return None
    spans = indices[0] if indices else []
    return spans[-1][1] if spans else None


def chat_spans(tokenizer: Any, system: str | None = None, answer_end: str | None = None) -> ChatSpans:
    """Cut ``tokenizer``'s chat template into :class:`ChatSpans`.

    Args:
        tokenizer: a transformers tokenizer with a ``chat_template``.
        system: a system message to put first; ``None`` keeps the template's own default (if any).
        answer_end: override the trained-on text after the answer (e.g. ``"<|im_end|>"``).

    Raises:
        TemplateError: the template has no user role, rewrites message content in a way other than
            stripping whitespace, or its end of turn cannot be found.

    """
    where = getattr(tokenizer, "name_or_path", None) or type(tokenizer).__name__
    msgs = _messages(system, USER_SENTINEL, ANSWER_SENTINEL)
    rendered = _render(tokenizer, msgs, where)
    iu = rendered.find(USER_SENTINEL)
    ia = rendered.find(ANSWER_SENTINEL)
    if iu < 0 or ia < iu or rendered.count(USER_SENTINEL) != 1 or rendered.count(ANSWER_SENTINEL) != 1:
        raise TemplateError(
            f"the chat template of {where} does not place user and assistant content verbatim once each, in "
            "order; longmagpie needs a template with a user role that renders message content as given"
        )
    prefix = rendered[:iu]
    middle = rendered[iu + len(USER_SENTINEL) : ia]
    after = rendered[ia + len(ANSWER_SENTINEL) :]

    padded = _render(tokenizer, _messages(system, PAD + USER_SENTINEL + PAD, PAD + ANSWER_SENTINEL + PAD), where)
    trim_user = PAD + USER_SENTINEL + PAD not in padded
    trim_answer = PAD + ANSWER_SENTINEL + PAD not in padded
    if padded != rendered.replace(USER_SENTINEL, PAD + USER_SENTINEL + PAD if not trim_user else USER_SENTINEL).replace(
        ANSWER_SENTINEL, PAD + ANSWER_SENTINEL + PAD if not trim_answer else ANSWER_SENTINEL
    ):
        raise TemplateError(
            f"the chat template of {where} changes message content beyond stripping whitespace at its ends; "
            "token-level assembly cannot reproduce it"
        )

    if answer_end is None:
        gen_end = _generation_end(tokenizer, msgs)
        start = ia + len(ANSWER_SENTINEL)
        if gen_end is not None and gen_end >= start:
            answer_end = rendered[start:gen_end]
        else:
            candidates = [getattr(tokenizer, "eos_token", None), *END_OF_TURN_TOKENS]
            hits = [(after.find(t), t) for t in candidates if isinstance(t, str) and t and t in after]
            if not hits:
                raise TemplateError(
                    f"cannot tell which text ends the assistant turn in the template of {where} "
                    f"(after the answer it renders {after!r}); pass answer_end=..."
                )
            pos, tok = min(hits)
            answer_end = after[: pos + len(tok)]
    if not after.startswith(answer_end):
        raise TemplateError(f"answer_end {answer_end!r} is not what the template of {where} renders after the answer")
    return ChatSpans(
        between_turns=_between_turns(tokenizer, system, prefix, middle, answer_end, after, where),
        prefix=prefix,
        user_to_answer=middle,
        answer_end=answer_end,
        suffix=after[len(answer_end) :],
        trim_user=trim_user,
        trim_answer=trim_answer,
        system=system,
    )


def _between_turns(
    tokenizer: Any, system: str | None, prefix: str, middle: str, answer_end: str, after: str, where: str
) -> str | None:
    """Text between one exchange's end of turn and the next user content (``None``: not regular)."""
    u2, a2 = USER_SENTINEL + "2", ANSWER_SENTINEL + "2"
    msgs = [*_messages(system, USER_SENTINEL, ANSWER_SENTINEL), *_messages(None, u2, a2)[-2:]]
    try:
        rendered = _render(tokenizer, msgs, where)
    except TemplateError:
        return None
    one = prefix + USER_SENTINEL + middle + ANSWER_SENTINEL + answer_end
    if not rendered.startswith(one) or rendered.count(u2) != 1 or rendered.count(a2) != 1:
        return None
    iu, ia = rendered.find(u2), rendered.find(a2)
    if rendered[iu + len(u2) : ia] != middle or rendered[ia + len(a2) :] != after:
        return None
    return rendered[len(one) : iu]


def check_prefix_space(tokenizer_json: str, where: str) -> None:
    """Refuse tokenizers that add a space at the start of every text they encode.

    Token-level joins re-tokenize small windows of text; a tokenizer that prepends a space (SentencePiece
    ``Metaspace`` with ``prepend_scheme`` other than ``never``, byte-level with ``add_prefix_space``) would put
    one at the start of every window.
    """
    spec = json.loads(tokenizer_json)

    def walk(node: Any) -> bool:
        if isinstance(node, dict):
            kind = node.get("type")
            if kind == "Metaspace" and node.get("prepend_scheme", "always") != "never":
                return True
            if kind == "Metaspace" and node.get("add_prefix_space", False):
                return True
            if kind == "ByteLevel" and node.get("add_prefix_space", False):
                return True
            if kind == "Prepend":
                return True
            return any(walk(v) for v in node.values())
        if isinstance(node, list):
            return any(walk(v) for v in node)
        return False

    if walk(spec.get("pre_tokenizer")) or walk(spec.get("normalizer")):
        raise TemplateError(
            f"the tokenizer of {where} adds a prefix space to every text it encodes (Metaspace/ByteLevel "
            "add_prefix_space); token-level assembly supports byte-level BPE tokenizers without it "
            "(Qwen2/2.5/3, Llama 3, GPT-4 style)"
        )
