"""The compiled tokenizer handle is built once per tokenizer object; one changed in place is built again."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path
from typing import Any

import pytest
from support import require

from longmagpie.assembly import tokenizer as handles
from longmagpie.assembly.conversations import encode_conversations

AutoTokenizer = require("transformers").AutoTokenizer

CONVS = [
    [{"role": "user", "content": "What is a zorblax?"}, {"role": "assistant", "content": "A zorblax is a widget."}],
    [
        {"role": "user", "content": "First?"},
        {"role": "assistant", "content": "One."},
        {"role": "user", "content": "Second?"},
        {"role": "assistant", "content": "Two."},
    ],
]


@pytest.fixture
def serialised(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every tokenizer the serialiser is called on, in order (the real serialiser still runs)."""
    calls: list[Any] = []
    real = handles._serialise

    def counting(tok: Any) -> str:
        calls.append(tok)
        return real(tok)

    monkeypatch.setattr(handles, "_serialise", counting)
    return calls


def test_a_second_call_reuses_the_handle_and_gives_the_same_rows(
    qwen_tokenizer_dir: Path, serialised: list[Any]
) -> None:
    tok = AutoTokenizer.from_pretrained(qwen_tokenizer_dir)
    first = encode_conversations(CONVS, tok)
    second = encode_conversations(CONVS, tok)
    assert len(serialised) == 1
    assert first.equals(second)
    expected = [tok.apply_chat_template(c, tokenize=True, return_dict=True)["input_ids"] for c in CONVS]
    assert second.column("input_ids").to_pylist() == [list(ids) for ids in expected]
    other = AutoTokenizer.from_pretrained(qwen_tokenizer_dir)  # another object: its own entry
    assert encode_conversations(CONVS, other).equals(first)
    assert len(serialised) == 2


def test_a_tokenizer_changed_in_place_is_serialised_again(qwen_tokenizer_dir: Path, serialised: list[Any]) -> None:
    tok = AutoTokenizer.from_pretrained(qwen_tokenizer_dir)
    before = encode_conversations(CONVS, tok)
    tok.add_tokens(["zorblax"])
    after = encode_conversations(CONVS, tok)
    assert len(serialised) == 2
    new_id = tok.convert_tokens_to_ids("zorblax")
    assert new_id in after.column("input_ids")[0].as_py() and new_id not in before.column("input_ids")[0].as_py()
    expected = tok.apply_chat_template(CONVS[0], tokenize=True, return_dict=True)["input_ids"]
    assert after.column("input_ids")[0].as_py() == list(expected)


def test_the_cache_lets_its_tokenizer_go(qwen_tokenizer_dir: Path, serialised: list[Any]) -> None:
    tok = AutoTokenizer.from_pretrained(qwen_tokenizer_dir)
    encode_conversations(CONVS[:1], tok)
    entries = len(handles._HANDLES)
    present = tok in handles._HANDLES  # not in the assert: pytest's rewriting would keep tok alive
    assert present
    ref = weakref.ref(tok)
    serialised.clear()  # the fixture's record of calls holds the tokenizer too
    del tok
    gc.collect()
    assert ref() is None and len(handles._HANDLES) == entries - 1
