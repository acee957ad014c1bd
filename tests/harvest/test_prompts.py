"""Prompt pieces from chat templates and presets, token-id prompts (one BOS), middle truncation."""

from __future__ import annotations

import pytest

from longmagpie.harvest import PRESETS, PromptTokenizer, middle_truncate, pieces_from_template, preset, resolve_pieces
from longmagpie.templates.chat import LLAMA3_CHAT_TEMPLATE, QWEN25_CHAT_TEMPLATE
from longmagpie.templates.prompts import stop_token_ids

DOC = "The Rhine rises in the Swiss Alps.\nIt flows north to the sea; ships carry 300 t of freight."
QUERY = "Where does the Rhine rise?"


def reference(tokenizer, placement: str, doc: str = DOC, query: str = QUERY, sep: str = "\n\n") -> tuple[str, str]:
    """The query and answer prompt texts as the tokenizer's own template renders the conversation."""
    if placement == "system":
        full = [{"role": "system", "content": doc}, {"role": "user", "content": query}]
    else:
        full = [{"role": "user", "content": doc + sep + query}]
    answer = tokenizer.apply_chat_template(full, tokenize=False, add_generation_prompt=True)
    cut = answer.index(query)
    return answer[:cut], answer


@pytest.mark.parametrize("placement", ["system", "user"])
def test_pieces_from_qwen25_template_render_as_the_template(qwen_tokenizer, placement):
    assert qwen_tokenizer.chat_template == QWEN25_CHAT_TEMPLATE
    pieces = pieces_from_template(qwen_tokenizer, placement)
    query_text, answer_text = reference(qwen_tokenizer, placement)
    assert pieces.query_prompt(DOC) == query_text
    assert pieces.answer_prompt(DOC, QUERY) == answer_text
    if placement == "system":  # upstream LongMagpie's Qwen prefix, exactly
        assert pieces.query_prompt(DOC) == "<|im_start|>system\n" + DOC + "<|im_end|>\n<|im_start|>user\n"
    else:  # no system message: Qwen2.5's default system turn comes first
        assert pieces.head.startswith("<|im_start|>system\nYou are Qwen, created by Alibaba Cloud.")
    assert set(pieces.stop_tokens) >= {"<|im_end|>", "<|im_start|>"}


@pytest.mark.parametrize("placement", ["system", "user"])
def test_qwen25_preset_equals_template_rendering(qwen_tokenizer, placement):
    pieces = preset("qwen25").pieces(placement)
    query_text, answer_text = reference(qwen_tokenizer, placement)
    assert pieces.query_prompt(DOC) == query_text
    assert pieces.answer_prompt(DOC, QUERY) == answer_text
    # and as token ids: tokenizing the rendered text once gives the same ids as the template's own tokenization
    ptok = PromptTokenizer(qwen_tokenizer, pieces, 10_000)
    ids = qwen_tokenizer.apply_chat_template(
        [{"role": "system", "content": DOC}, {"role": "user", "content": QUERY}]
        if placement == "system"
        else [{"role": "user", "content": DOC + "\n\n" + QUERY}],
        tokenize=True,
        add_generation_prompt=True,
        return_dict=False,
    )
    assert ptok.answer_prompt(DOC, QUERY) == list(ids)


@pytest.mark.parametrize("placement", ["system", "user"])
def test_llama3_preset_equals_template_rendering_with_one_bos(llama3_tokenizer, placement):
    assert llama3_tokenizer.chat_template == LLAMA3_CHAT_TEMPLATE
    pieces = preset("llama3").pieces(placement)
    query_text, answer_text = reference(llama3_tokenizer, placement)
    assert pieces.query_prompt(DOC) == query_text
    assert pieces.answer_prompt(DOC, QUERY) == answer_text
    derived = pieces_from_template(llama3_tokenizer, placement)
    assert (derived.head, derived.mid, derived.tail) == (pieces.head, pieces.mid, pieces.tail)
    assert set(derived.stop_tokens) >= {"<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>"}

    bos = llama3_tokenizer.convert_tokens_to_ids("<|begin_of_text|>")
    ids = PromptTokenizer(llama3_tokenizer, pieces, 10_000).query_prompt(DOC)
    assert ids[0] == bos and ids.count(bos) == 1
    # the pitfall this avoids: a text prompt tokenized with special tokens added gets a second BOS when the
    # tokenizer prepends one (as Llama-3's does); token ids reach vLLM unchanged
    assert llama3_tokenizer.decode(ids) == query_text


def test_every_preset_renders_both_slots_and_resolves_stops(qwen_tokenizer):
    for name, fam in PRESETS.items():
        for placement in ("system", "user"):
            if placement == "system" and fam.system_head is None:
                with pytest.raises(ValueError, match="placement='user'"):
                    fam.pieces(placement)
                continue
            p = fam.pieces(placement)
            text = p.answer_prompt("DOC", "QUERY")
            assert text.index("DOC") < text.index("QUERY"), name
            assert p.stop_tokens, name
    chatml = stop_token_ids(qwen_tokenizer, preset("qwen2").pieces("system"))
    assert set(chatml) == {
        qwen_tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|im_start|>", "<|endoftext|>")
    }
    with pytest.raises(ValueError, match="another model family"):
        stop_token_ids(qwen_tokenizer, preset("gemma").pieces("user"))
    with pytest.raises(ValueError, match="unknown template preset 'nope'"):
        preset("nope")
    assert preset("Qwen2.5") is PRESETS["qwen25"]


def test_template_without_user_role_is_refused(qwen_tokenizer):
    no_user = (
        "{% for m in messages %}{% if m.role != 'user' %}<|im_start|>{{ m.content }}<|im_end|>{% endif %}{% endfor %}"
    )
    with pytest.raises(ValueError, match="no user role"):
        pieces_from_template(qwen_tokenizer, "system", chat_template=no_user)
    raising = (
        "{% for m in messages %}{% if m.role == 'user' %}{{ raise_exception('roles: system only') }}{% endif %}"
        "{% endfor %}"
    )
    with pytest.raises(ValueError, match="roles: system only"):
        pieces_from_template(qwen_tokenizer, "system", chat_template=raising)


def test_template_without_system_role_suggests_user_placement(qwen_tokenizer):
    gemma_like = (
        "{{ bos_token }}{% for m in messages %}{% if m.role == 'system' %}"
        "{{ raise_exception('System role not supported') }}{% endif %}"
        "<start_of_turn>{{ m.role }}\n{{ m.content }}<end_of_turn>\n{% endfor %}"
        "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
    )
    with pytest.raises(ValueError, match="placement='user'"):
        pieces_from_template(qwen_tokenizer, "system", chat_template=gemma_like)
    p = pieces_from_template(qwen_tokenizer, "user", chat_template=gemma_like)
    assert p.query_prompt("D") == "<start_of_turn>user\nD\n\n"
    assert p.tail == "<end_of_turn>\n<start_of_turn>model\n"


def test_no_chat_template_asks_for_a_preset(qwen_tokenizer):
    import copy

    tok = copy.deepcopy(qwen_tokenizer)
    tok.chat_template = None
    with pytest.raises(ValueError, match="no chat template"):
        resolve_pieces(tok, "auto")
    assert resolve_pieces(tok, "qwen25").name == "qwen25"


def test_middle_truncation_keeps_head_and_tail(qwen_tokenizer):
    assert middle_truncate(list(range(10)), 4) == [0, 1, 8, 9]
    assert middle_truncate(list(range(10)), 5) == [0, 1, 2, 8, 9]
    assert middle_truncate(list(range(3)), 5) == [0, 1, 2]
    assert middle_truncate(list(range(10)), 1) == [0]
    words = " ".join(f"w{i}" for i in range(400))
    ptok = PromptTokenizer(qwen_tokenizer, preset("qwen25").pieces("system"), 64)
    short, long = ptok.prepare(["a short one", words])
    assert not short.truncated and short.context == "a short one"
    assert long.truncated and long.tokens == 64 and long.original_tokens > 400
    assert long.context.startswith("w0 w1") and long.context.endswith("w398 w399")
    assert "w200 " not in long.context
