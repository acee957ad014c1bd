"""Chat templates for the offline tokenizers and the tests, as Jinja text.

``QWEN25_CHAT_TEMPLATE`` is the template Qwen2.5-*-Instruct publishes in its ``tokenizer_config.json``: tokenizers
built offline (see :mod:`longmagpie.testing.tokenizers`) carry it, so they render conversations exactly as the real
model does without a model hub. ``LLAMA3_CHAT_TEMPLATE`` is a minimal Llama-3-style template (no tool or date
preamble). The text lives in ``data/`` (see ``data/SOURCES.md``) and is read on first use of a name.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from longmagpie.templates.families import load_template

__all__ = ["LLAMA3_CHAT_TEMPLATE", "QWEN25_CHAT_TEMPLATE", "QWEN25_DEFAULT_SYSTEM"]

QWEN25_DEFAULT_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."

_TEMPLATE_FILES: Mapping[str, str] = MappingProxyType(
    {
        # Qwen2.5-*-Instruct: ChatML with a default system turn and tool calls.
        "QWEN25_CHAT_TEMPLATE": "qwen2_5.jinja",
        # Llama-3.x-Instruct style headers (the core of Meta's template, without the tool and date preamble):
        # a BOS, then one header-delimited block per message, closed by <|eot_id|>.
        "LLAMA3_CHAT_TEMPLATE": "llama3_headers.jinja",
    }
)

# Read from ``data/`` on first access (module ``__getattr__`` below).
QWEN25_CHAT_TEMPLATE: str
LLAMA3_CHAT_TEMPLATE: str


def __getattr__(name: str) -> str:
    """Read a template constant on first access, then keep it."""
    if name not in _TEMPLATE_FILES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = load_template(_TEMPLATE_FILES[name])
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """List the module's names, the templates not yet read included."""
    return sorted({*globals(), *_TEMPLATE_FILES})
