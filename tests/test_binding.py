"""The compiled binding's contract: options objects for the packers, one parsed tokenizer handle, a keyword-only
``_core.Assembler`` with a named template, statistics keyed as the Python types, and a checked stub."""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from longmagpie import _core
from longmagpie.options import PackOptions, PmixOptions
from longmagpie.packing.pack import PackStats
from longmagpie.packing.pmix import PmixStats

ROOT = Path(__file__).resolve().parents[1]
STUB = ROOT / "python" / "longmagpie" / "_core.pyi"

TEMPLATE: dict[str, Any] = {
    "prefix": "<|im_start|>user\n",
    "user_to_answer": "<|im_end|>\n<|im_start|>assistant\n",
    "answer_end": "<|im_end|>",
    "suffix": "\n",
    "doc_separator": "\n\n===Document Separator===\n\n",
    "query_separator": "\n\n",
    "trim_user": False,
    "trim_answer": False,
}


#: The smallest tokenizer.json the tokenizers library reads: a word-level vocabulary of two entries.
TINY_TOKENIZER = json.dumps(
    {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [],
        "normalizer": None,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": None,
        "decoder": None,
        "model": {"type": "WordLevel", "vocab": {"[UNK]": 0, "one": 1}, "unk_token": "[UNK]"},
    }
)


def _kwargs(tokenizer: Any = None, **changes: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "tokenizer": tokenizer or _core.Tokenizer(TINY_TOKENIZER),
        "template": dict(TEMPLATE),
        "documents": pa.array(["one document", "another document"], pa.large_string()),
        "distractors": None,
        "max_tokens": 4096,
        "budget": "tokens",
        "budget_min": 16,
        "budget_max": 4096,
        "long_documents": "truncate",
        "seed": 0,
        "max_misses": 8,
        "margin": 8,
        "with_text": False,
        "num_threads": 1,
    }
    kwargs.update(changes)
    return kwargs


def test_assembler_refuses_positional_arguments() -> None:
    with pytest.raises(TypeError, match="positional"):
        _core.Assembler(*_kwargs().values())


def test_assembler_refuses_the_old_template_tuple() -> None:
    old = tuple(TEMPLATE.values())
    with pytest.raises(TypeError, match="template"):
        _core.Assembler(**_kwargs(template=old))


@pytest.mark.parametrize("wrong", ["doc_seperator", "separator", "trim"])
def test_assembler_names_a_misnamed_template_key(wrong: str) -> None:
    template = dict(TEMPLATE)
    template[wrong] = template.pop("doc_separator")
    with pytest.raises(TypeError, match=f"unknown key '{wrong}'; expected the keys .*'doc_separator'"):
        _core.Assembler(**_kwargs(template=template))


def test_assembler_names_a_missing_template_key() -> None:
    template = dict(TEMPLATE)
    del template["query_separator"]
    with pytest.raises(TypeError, match="missing the key 'query_separator'"):
        _core.Assembler(**_kwargs(template=template))


def test_assembler_names_a_template_value_of_the_wrong_type() -> None:
    # A bool where a text belongs (and a text where a bool belongs) is refused, not converted.
    with pytest.raises(TypeError, match=r"template\['suffix'\] must be a str"):
        _core.Assembler(**_kwargs(template={**TEMPLATE, "suffix": True}))
    with pytest.raises(TypeError, match=r"template\['trim_user'\] must be a bool"):
        _core.Assembler(**_kwargs(template={**TEMPLATE, "trim_user": "yes"}))


def test_assembler_refuses_a_misnamed_argument() -> None:
    kwargs = _kwargs()
    kwargs["max_token"] = kwargs.pop("max_tokens")
    with pytest.raises(TypeError, match="max_token"):
        _core.Assembler(**kwargs)


def test_assembler_builds_from_keywords(qwen_tokenizer: Any) -> None:
    core = _core.Assembler(**_kwargs(_core.Tokenizer(qwen_tokenizer.backend_tokenizer.to_str())))
    assert core.documents() == 2
    assert core.document_ids(0) == qwen_tokenizer("one document", add_special_tokens=False)["input_ids"]


def test_stub_template_keys_are_the_binding_keys() -> None:
    """The stub's ``_TemplateTexts`` (which stubtest cannot see) lists the keys the binding takes, in order."""
    tree = ast.parse(STUB.read_text())
    typed = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "_TemplateTexts")
    keys = [n.target.id for n in typed.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)]
    assert keys == list(TEMPLATE)


def test_a_tokenizer_handle_is_parsed_once_and_shared() -> None:
    tok = _core.Tokenizer(TINY_TOKENIZER)
    assert tok.vocab_size() == 2
    texts = pa.array(["one two", None, "one"], pa.large_string())
    assert _core.tokenize(tok, texts).to_pylist() == [[1, 0], None, [1]]
    core = _core.Assembler(**_kwargs(tok))  # the same handle again
    assert core.document_ids(0) == [1, 0]


def test_a_bad_tokenizer_json_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="tokenizer"):
        _core.Tokenizer("{")


def test_the_tokenizer_functions_refuse_a_json_string() -> None:
    """The handle is required: a JSON text (the old contract) is refused, not parsed again on every call."""
    with pytest.raises(TypeError, match="tokenizer"):
        _core.tokenize(TINY_TOKENIZER, pa.array(["one"], pa.large_string()))  # type: ignore[arg-type]


def _samples() -> pa.Table:
    return pa.table({"input_ids": pa.array([[1, 2, 3], [4, 5], [6]], pa.list_(pa.int32()))})


def test_pack_takes_the_options_object_and_reads_it_by_name() -> None:
    table, stats = _core.pack(_samples(), PackOptions(seq_len=4, strategy="sequential", pad_to=5, pad_id=9))
    rows = pa.RecordBatchReader.from_stream(table).read_all()
    assert rows.column("input_ids").to_pylist() == [[1, 2, 3, 9, 9], [4, 5, 6, 9, 9]]
    assert stats["pad_tokens"] == 4

    @dataclasses.dataclass
    class Lookalike:  # any object with the fields: the binding reads attributes, never positions
        loss_weights: str | None = None
        pad_documents_to: int | None = None
        pad_id: int = 0
        pad_to: int | None = None
        num_threads: int | None = None
        overflow: str = "error"
        strategy: str = "sequential"
        seq_len: int = 4

    again, _ = _core.pack(_samples(), Lookalike())  # type: ignore[arg-type]
    assert pa.RecordBatchReader.from_stream(again).read_all().column("input_ids").to_pylist() == [[1, 2, 3], [4, 5, 6]]


def test_pack_refuses_positional_options() -> None:
    with pytest.raises(TypeError):
        _core.pack(_samples(), 4, "bfd", "error")  # type: ignore[call-arg]
    with pytest.raises((TypeError, AttributeError), match="seq_len"):
        _core.pack(_samples(), object())  # type: ignore[arg-type]


def test_stats_keys_are_the_python_types_fields() -> None:
    """The dicts the binding returns carry exactly the fields of PackStats and PmixStats, in order."""
    _, stats = _core.pack(_samples(), PackOptions(seq_len=4))
    assert list(stats) == [f.name for f in dataclasses.fields(PackStats)]
    short = pa.table({"input_ids": pa.array([[7], [8]], pa.list_(pa.int32()))})
    stream = _core.pack_pmix_stream(_samples(), short, PmixOptions(seq_len=8))
    while stream.next_batch() is not None:
        pass
    assert list(stream.stats()) == [f.name for f in dataclasses.fields(PmixStats)]
