"""Every family preset renders exactly as the family's official chat template, as text and as token ids.

The official templates (``longmagpie.templates.families``: verbatim ``templates/data/*.jinja`` files, their
sources in ``data/SOURCES.md``) are rendered by transformers' ``apply_chat_template`` on a tokenizer that carries
them: the real Qwen2.5 tokenizer with the template swapped in and the family's special tokens, BOS and EOS added.
The comparison is of text and of the ids that text tokenizes to, so the BPE underneath does not matter; the special
tokens must be single tokens, as in the real tokenizers.
"""

from __future__ import annotations

import copy
import hashlib
from datetime import datetime
from typing import Any

import pytest
from support import require

from longmagpie.harvest import PRESETS, PromptTokenizer, pieces_from_template, preset
from longmagpie.templates.families import FAMILY_TEMPLATES, LLAMA31_DEFAULT_DATE, FamilyTemplate
from longmagpie.templates.prompts import stop_token_ids

TemplateError = require("jinja2.exceptions").TemplateError

DOC = "The Rhine rises in the Swiss Alps.\nIt flows north to the sea; ships carry 300 t of freight."
QUERY = "Where does the Rhine rise?"
FAMILIES = sorted(FAMILY_TEMPLATES)


@pytest.fixture(scope="module")
def family_tokenizer(qwen_tokenizer: Any) -> Any:
    """A factory: the Qwen2.5 tokenizer with one family's template, special tokens, BOS and EOS (cached)."""
    from tokenizers import AddedToken

    cache: dict[str, Any] = {}

    def make(fam: FamilyTemplate) -> Any:
        if fam.name not in cache:
            tok = copy.deepcopy(qwen_tokenizer)
            tok.add_special_tokens(
                {
                    "additional_special_tokens": [
                        AddedToken(t, special=True, normalized=False) for t in fam.special_tokens
                    ]
                }
            )
            if fam.bos_token is not None:
                tok.bos_token = fam.bos_token
            tok.eos_token = fam.eos_token
            tok.chat_template = fam.chat_template
            for t in fam.special_tokens:  # single tokens, as in the family's own tokenizer
                assert len(tok(t, add_special_tokens=False)["input_ids"]) == 1, t
            cache[fam.name] = tok
        return cache[fam.name]

    return make


def conversation(placement: str, doc: str = DOC, query: str = QUERY, sep: str = "\n\n") -> list[dict[str, str]]:
    if placement == "system":
        return [{"role": "system", "content": doc}, {"role": "user", "content": query}]
    return [{"role": "user", "content": doc + sep + query}]


def render(tok: Any, fam: FamilyTemplate, messages: list[dict[str, str]], **kwargs: Any) -> str:
    return tok.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=True, **{**fam.template_kwargs, **kwargs}
    )


def test_every_official_template_names_an_existing_preset_and_a_source():
    for fam in FAMILY_TEMPLATES.values():
        assert preset(fam.preset).name in PRESETS, fam.name
        assert fam.source and fam.model and fam.chat_template, fam.name
    # every preset but the generic ChatML one, Qwen2.5 (tested in test_prompts.py against Qwen2.5's template)
    # and DeepSeek-V3 (no verbatim copy of its template at hand) is checked against an official template here
    checked = {preset(f.preset).name for f in FAMILY_TEMPLATES.values()}
    assert set(PRESETS) - checked == {"chatml", "qwen25", "deepseek"}


def test_gemma_template_is_byte_identical_to_an_independent_copy():
    """The TRL copy hashes to the Git LFS oid (sha256) of llama.cpp's google-gemma-2-2b-it.jinja."""
    text = FAMILY_TEMPLATES["gemma2"].chat_template.encode()
    assert len(text) == 591
    assert hashlib.sha256(text).hexdigest() == "ecd6ae513fe103f0eb62e8ab5bfa8d0fe45c1074fa398b089c93a7e70c15cfd6"


@pytest.mark.parametrize("placement", ["system", "user"])
@pytest.mark.parametrize("name", FAMILIES)
def test_preset_prompts_equal_the_official_template(family_tokenizer, name, placement):
    fam = FAMILY_TEMPLATES[name]
    tok = family_tokenizer(fam)
    family = preset(fam.preset)
    messages = conversation(placement)
    if placement == "system" and not fam.system_role:
        with pytest.raises(TemplateError, match="System role not supported"):
            render(tok, fam, messages)
        with pytest.raises(ValueError, match="placement='user'"):
            family.pieces("system")
        return
    answer_text = render(tok, fam, messages)
    query_text = answer_text[: answer_text.index(QUERY)]
    pieces = family.pieces(placement)
    assert pieces.query_prompt(DOC) == query_text
    assert pieces.answer_prompt(DOC, QUERY) == answer_text

    # as token ids: the rendered prompt tokenized once equals the template's own tokenization, one BOS at most
    ids = PromptTokenizer(tok, pieces, 10_000).answer_prompt(DOC, QUERY)
    official_ids = tok.apply_chat_template(
        messages, tokenize=True, add_generation_prompt=True, return_dict=False, **fam.template_kwargs
    )
    assert ids == list(official_ids)
    if fam.bos_token is not None:
        bos = tok.convert_tokens_to_ids(fam.bos_token)
        writes_bos = answer_text.startswith(fam.bos_token)
        assert ids.count(bos) == int(writes_bos)
        assert (ids[0] == bos) == writes_bos
    assert tok.decode(ids) == answer_text


@pytest.mark.parametrize("placement", ["system", "user"])
@pytest.mark.parametrize("name", FAMILIES)
def test_pieces_cut_from_the_official_template_equal_the_preset(family_tokenizer, name, placement):
    fam = FAMILY_TEMPLATES[name]
    tok = family_tokenizer(fam)
    if placement == "system" and not fam.system_role:
        with pytest.raises(ValueError, match="placement='user'"):
            pieces_from_template(tok, "system", template_kwargs=fam.template_kwargs)
        return
    derived = pieces_from_template(tok, placement, template_kwargs=fam.template_kwargs)
    expected = preset(fam.preset).pieces(placement)
    assert (derived.head, derived.mid, derived.tail) == (expected.head, expected.mid, expected.tail)
    assert fam.end_of_turn in derived.stop_tokens


@pytest.mark.parametrize("name", FAMILIES)
def test_end_of_turn_is_a_stop_token_of_the_preset(family_tokenizer, name):
    """The token the template writes after an assistant message is among the preset's stop tokens and ids."""
    fam = FAMILY_TEMPLATES[name]
    tok = family_tokenizer(fam)
    chat = [{"role": "user", "content": QUERY}, {"role": "assistant", "content": "ANSWERTEXT"}]
    text = tok.apply_chat_template(chat, tokenize=False, **fam.template_kwargs)
    after = text[text.index("ANSWERTEXT") + len("ANSWERTEXT") :]
    assert after.startswith(fam.end_of_turn), (name, after)
    pieces = preset(fam.preset).pieces("user")
    assert fam.end_of_turn in pieces.stop_tokens
    assert tok.convert_tokens_to_ids(fam.end_of_turn) in stop_token_ids(tok, pieces)
    # every preset stop token is a special token of the family (none is misspelt or from another family)
    assert set(pieces.stop_tokens) <= set(fam.special_tokens)


def test_llama31_preamble_and_date(family_tokenizer):
    """Llama-3.1 always writes the system preamble; its default date is 26 Jul 2024; a given date_string wins."""
    fam = FAMILY_TEMPLATES["llama3.1"]
    tok = family_tokenizer(fam)
    preamble = f"Cutting Knowledge Date: December 2023\nToday Date: {LLAMA31_DEFAULT_DATE}\n\n"
    user = preset("llama31").pieces("user")
    assert user.head == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        + preamble
        + "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n"
    )
    assert preset("llama31").pieces("system").head.endswith(preamble)  # the document follows the preamble
    other = pieces_from_template(tok, "user", template_kwargs={"date_string": "01 Jan 2025"})
    assert "Today Date: 01 Jan 2025\n\n" in other.head
    assert render(tok, fam, conversation("user"), date_string="01 Jan 2025").startswith(other.head)


def test_llama32_template_writes_today_unless_pinned(family_tokenizer):
    """Llama-3.2's template writes today's date; the preset and the auto route pin 3.1's default date."""
    fam = FAMILY_TEMPLATES["llama3.2"]
    tok = family_tokenizer(fam)
    unpinned = tok.apply_chat_template(conversation("user"), tokenize=False, add_generation_prompt=True)
    today = {datetime.now().strftime("%d %b %Y"), datetime.now().astimezone().strftime("%d %b %Y")}
    assert any(f"Today Date: {d}\n\n" in unpinned for d in today)
    derived = pieces_from_template(tok, "user")  # no template_kwargs: the date is pinned
    assert derived.head == preset("llama32").pieces("user").head
    assert f"Today Date: {LLAMA31_DEFAULT_DATE}\n\n" in derived.head


def test_gemma3_folds_the_system_document_into_the_user_turn(family_tokenizer):
    fam = FAMILY_TEMPLATES["gemma3"]
    tok = family_tokenizer(fam)
    system = preset("gemma3").pieces("system")
    user = preset("gemma3").pieces("user")
    # with the template's own blank line as separator, both placements give the same prompt
    official = render(tok, fam, conversation("system"))
    assert system.answer_prompt(DOC, QUERY) == user.answer_prompt(DOC, QUERY) == official
    assert system.query_prompt(DOC) == "<bos><start_of_turn>user\n" + DOC + "\n\n"


def test_mistral_system_message_opens_the_user_turn(family_tokenizer):
    """Mistral merges the system message into the (last) user turn: the document then the query, one [INST]."""
    for name, opener in (("mistral-v0.3", "<s>[INST] "), ("mistral-nemo", "<s>[INST]")):
        fam = FAMILY_TEMPLATES[name]
        text = render(family_tokenizer(fam), fam, conversation("system"))
        assert text == opener + DOC + "\n\n" + QUERY + "[/INST]"
        assert text.count("[INST]") == 1


def test_deepseek_r1_answer_prompt_opens_a_think_block(family_tokenizer):
    for name in ("deepseek-r1", "deepseek-r1-distill"):
        fam = FAMILY_TEMPLATES[name]
        text = render(family_tokenizer(fam), fam, conversation("system"))
        assert text == "<｜begin▁of▁sentence｜>" + DOC + "<｜User｜>" + QUERY + "<｜Assistant｜><think>\n"
    # the V3 preset shares R1's head and mid; only the generation prompt differs
    v3, r1 = preset("deepseek").pieces("system"), preset("deepseek-r1").pieces("system")
    assert (v3.head, v3.mid, v3.tail + "<think>\n") == (r1.head, r1.mid, r1.tail)


def test_phi3_templates_write_no_bos(family_tokenizer):
    for name in ("phi3", "phi3.5"):
        fam = FAMILY_TEMPLATES[name]
        text = render(family_tokenizer(fam), fam, conversation("user"))
        assert text.startswith("<|user|>\n") and "<s>" not in text


@pytest.mark.parametrize("placement", ["system", "user"])
@pytest.mark.parametrize("name", FAMILIES)
def test_follow_up_pieces_equal_the_official_template_of_a_conversation(family_tokenizer, name, placement):
    """A three-exchange conversation's prompts: the preset's follow-up pieces and the cut ones render as the template.

    Where the preset has no follow-up pieces, cutting them from the official template is refused too: the template
    does not render later turns as a continuation of the first (Mistral moves a system message to the last turn).
    """
    from longmagpie.templates.prompts import follow_up_from_template

    fam = FAMILY_TEMPLATES[name]
    tok = family_tokenizer(fam)
    family = preset(fam.preset)
    if placement == "system" and not fam.system_role:
        return
    pieces = family.pieces(placement)
    exchanges = [(QUERY, "It rises near the Rheinquellhorn."), ("And where does it end?", "In the North Sea.")]
    follow = "How long is it?"
    messages = conversation(placement, query=exchanges[0][0])
    messages.append({"role": "assistant", "content": exchanges[0][1]})
    for q, a in exchanges[1:]:
        messages += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
    messages.append({"role": "user", "content": follow})
    if family.turn is None or (placement == "system" and not family.follow_up_system):
        with pytest.raises(ValueError, match="has no follow-up turns"):
            family.follow_up(placement)
        with pytest.raises(ValueError, match="does not render a follow-up turn"):
            follow_up_from_template(tok, pieces, template_kwargs=fam.template_kwargs)
        return
    official = render(tok, fam, messages)
    ups = family.follow_up(placement)
    assert follow_up_from_template(tok, pieces, template_kwargs=fam.template_kwargs) == ups
    assert ups.answer_prompt(pieces, DOC, exchanges, follow) == official
    assert ups.query_prompt(pieces, DOC, exchanges) == official[: official.rindex(follow)]
    prompts = PromptTokenizer(tok, pieces, 10_000)
    official_ids = tok.apply_chat_template(
        messages, tokenize=True, add_generation_prompt=True, return_dict=False, **fam.template_kwargs
    )
    assert prompts.follow_up_answer_prompt(ups, DOC, exchanges, follow) == list(official_ids)
