"""The compiled binding's contract: keyword-only ``_core.Assembler`` with a named template, and a checked stub."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from longmagpie import _core

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


def _kwargs(tokenizer_json: str = "{}", **changes: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "tokenizer_json": tokenizer_json,
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
    core = _core.Assembler(**_kwargs(qwen_tokenizer.backend_tokenizer.to_str()))
    assert core.documents() == 2
    assert core.document_ids(0) == qwen_tokenizer("one document", add_special_tokens=False)["input_ids"]


def test_stub_template_keys_are_the_binding_keys() -> None:
    """The stub's ``_TemplateTexts`` (which stubtest cannot see) lists the keys the binding takes, in order."""
    tree = ast.parse(STUB.read_text())
    typed = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "_TemplateTexts")
    keys = [n.target.id for n in typed.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)]
    assert keys == list(TEMPLATE)
