"""Official chat templates of the families the harvester has presets for, verbatim, with their special tokens.

Each ``*_CHAT_TEMPLATE`` name is the Jinja text a model publishes (the ``chat_template`` of its
``tokenizer_config.json`` or its ``chat_template.jinja``), read byte for byte from a file in ``data/``;
``data/SOURCES.md`` records where each file was copied from (repository, path, release or commit) with its sha256
and size. The files are read on first use of a name, so importing this module reads none of them.
:data:`FAMILY_TEMPLATES` pairs each template with the special tokens it needs, the token that closes an assistant
turn and the harvest preset that must render exactly as it does; ``tests/harvest/test_family_templates.py`` checks
that preset and template agree. Its entries and the ``*_SPECIALS`` token sets are the data of
``data/families.toml`` (longmagpie's own), likewise read on first use of one of those names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from types import MappingProxyType

__all__ = [
    "CHATML_SPECIALS",
    "DEEPSEEK_R1_CHAT_TEMPLATE",
    "DEEPSEEK_R1_DISTILL_CHAT_TEMPLATE",
    "DEEPSEEK_SPECIALS",
    "DEEPSEEK_V31_CHAT_TEMPLATE",
    "FAMILY_TEMPLATES",
    "GEMMA3_CHAT_TEMPLATE",
    "GEMMA_CHAT_TEMPLATE",
    "GEMMA_SPECIALS",
    "LLAMA3_OFFICIAL_CHAT_TEMPLATE",
    "LLAMA3_SPECIALS",
    "LLAMA31_CHAT_TEMPLATE",
    "LLAMA31_DEFAULT_DATE",
    "LLAMA32_CHAT_TEMPLATE",
    "MISTRAL_NEMO_CHAT_TEMPLATE",
    "MISTRAL_SPECIALS",
    "MISTRAL_V03_CHAT_TEMPLATE",
    "PHI3_CHAT_TEMPLATE",
    "PHI3_SPECIALS",
    "PHI4_CHAT_TEMPLATE",
    "PHI4_SPECIALS",
    "PHI35_CHAT_TEMPLATE",
    "QWEN2_CHAT_TEMPLATE",
    "QWEN3_CHAT_TEMPLATE",
    "FamilyTemplate",
    "load_template",
]

# Each verbatim template's module attribute and its file in ``data/``, with what sets the template apart.
_TEMPLATE_FILES: Mapping[str, str] = MappingProxyType(
    {
        # Gemma 1 and Gemma 2: no system role
        "GEMMA_CHAT_TEMPLATE": "gemma.jinja",
        # Gemma 3: a system message is folded into the first user turn (text + blank line)
        "GEMMA3_CHAT_TEMPLATE": "gemma3.jinja",
        # Mistral-7B-Instruct-v0.3: ``[INST] `` (with a space); system merged into the last user turn
        "MISTRAL_V03_CHAT_TEMPLATE": "mistral.jinja",
        # Mistral-Nemo-Instruct-2407: as v0.3 but ``[INST]`` without a space (Tekken tokenizer)
        "MISTRAL_NEMO_CHAT_TEMPLATE": "mistralai-Mistral-Nemo-Instruct-2407.jinja",
        # Phi-3-mini-4k-instruct (current revision): no BOS written by the template
        "PHI3_CHAT_TEMPLATE": "phi3.jinja",
        # Phi-3.5-mini-instruct: as Phi-3, an empty system message is dropped
        "PHI35_CHAT_TEMPLATE": "phi3_5.jinja",
        # phi-4: the assistant opener follows every user message (no add_generation_prompt branch)
        "PHI4_CHAT_TEMPLATE": "phi4.jinja",
        # DeepSeek-R1 (model type deepseek_v3): the generation prompt opens a think block
        "DEEPSEEK_R1_CHAT_TEMPLATE": "deepseekv3.jinja",
        # DeepSeek-R1-Distill-{Qwen,Llama}-*: as R1 (single system message)
        "DEEPSEEK_R1_DISTILL_CHAT_TEMPLATE": "deepseek_r1_distill.jinja",
        # DeepSeek-V3.1: thinking off by default; the generation prompt then closes an empty think block
        "DEEPSEEK_V31_CHAT_TEMPLATE": "deepseek-ai-DeepSeek-V3.1.jinja",
        # Meta-Llama-3-8B-Instruct (no system preamble)
        "LLAMA3_OFFICIAL_CHAT_TEMPLATE": "llama3.jinja",
        # Llama-3.1-8B-Instruct: always a system turn with the knowledge and "Today Date" preamble
        "LLAMA31_CHAT_TEMPLATE": "llama3_1.jinja",
        # Llama-3.2-1B-Instruct: as 3.1, but the date defaults to today's (``strftime_now``)
        "LLAMA32_CHAT_TEMPLATE": "llama3_2.jinja",
        # Qwen2-*-Instruct: ChatML, default system turn "You are a helpful assistant."
        "QWEN2_CHAT_TEMPLATE": "qwen2.jinja",
        # Qwen3-8B: hybrid thinking; enable_thinking=False writes an empty think block
        "QWEN3_CHAT_TEMPLATE": "qwen3.jinja",
    }
)

# Read from ``data/`` on first access (module ``__getattr__`` below).
GEMMA_CHAT_TEMPLATE: str
GEMMA3_CHAT_TEMPLATE: str
MISTRAL_V03_CHAT_TEMPLATE: str
MISTRAL_NEMO_CHAT_TEMPLATE: str
PHI3_CHAT_TEMPLATE: str
PHI35_CHAT_TEMPLATE: str
PHI4_CHAT_TEMPLATE: str
DEEPSEEK_R1_CHAT_TEMPLATE: str
DEEPSEEK_R1_DISTILL_CHAT_TEMPLATE: str
DEEPSEEK_V31_CHAT_TEMPLATE: str
LLAMA3_OFFICIAL_CHAT_TEMPLATE: str
LLAMA31_CHAT_TEMPLATE: str
LLAMA32_CHAT_TEMPLATE: str
QWEN2_CHAT_TEMPLATE: str
QWEN3_CHAT_TEMPLATE: str
FAMILY_TEMPLATES: dict[str, FamilyTemplate]

# The special-token sets of ``data/families.toml``'s ``[specials]`` table (``GEMMA_SPECIALS`` is its ``gemma``), read
# with :data:`FAMILY_TEMPLATES` on first access; each family's ``special_tokens`` is one of these tuples.
GEMMA_SPECIALS: tuple[str, ...]
MISTRAL_SPECIALS: tuple[str, ...]
PHI3_SPECIALS: tuple[str, ...]
PHI4_SPECIALS: tuple[str, ...]
DEEPSEEK_SPECIALS: tuple[str, ...]
LLAMA3_SPECIALS: tuple[str, ...]
CHATML_SPECIALS: tuple[str, ...]

# The date Llama-3.1's template writes when no ``date_string`` is passed; Llama-3.2's template writes today's date
# (``strftime_now``) instead, so the presets and ``pieces_from_template`` pin this one for reproducible prompts.
LLAMA31_DEFAULT_DATE = "26 Jul 2024"


@cache
def load_template(filename: str) -> str:
    """Return the text of one bundled template file, exactly as stored (no newline translation).

    Args:
        filename: a file name in ``longmagpie/templates/data/``, e.g. ``"gemma.jinja"``.

    Returns:
        The file's bytes decoded as UTF-8.

    Raises:
        FileNotFoundError: no bundled template has that name.

    """
    return files("longmagpie.templates").joinpath("data", filename).read_bytes().decode("utf-8")


@dataclass(frozen=True)
class FamilyTemplate:
    """One official chat template and what rendering it needs.

    Attributes:
        name: short family name (a key of :data:`FAMILY_TEMPLATES`).
        model: the hub repository that ships this template.
        source: where the verbatim copy was taken from (repository, path, commit or release).
        chat_template: the Jinja text.
        preset: the harvest preset (``longmagpie.harvest.PRESETS``) that renders as this template.
        special_tokens: the template's special tokens (they must be single tokens of the tokenizer).
        bos_token: the tokenizer's BOS (``None`` where the model has none).
        eos_token: the tokenizer's EOS.
        end_of_turn: the token the template writes after an assistant message (generation stops on it).
        system_role: whether the template accepts a system message (Gemma 1/2 raise on one).
        template_kwargs: extra variables to render with (Qwen3's ``enable_thinking``, a fixed Llama date).

    """

    name: str
    model: str
    source: str
    chat_template: str
    preset: str
    special_tokens: tuple[str, ...]
    bos_token: str | None
    eos_token: str
    end_of_turn: str
    system_role: bool = True
    template_kwargs: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))


# Each ``*_SPECIALS`` name and its set in ``families.toml``'s ``[specials]`` (``GEMMA_SPECIALS``: ``gemma``).
_SPECIALS_NAMES: Mapping[str, str] = MappingProxyType(
    {name: name.removesuffix("_SPECIALS").lower() for name in __all__ if name.endswith("_SPECIALS")}
)


@cache
def _registry() -> tuple[Mapping[str, tuple[str, ...]], dict[str, FamilyTemplate]]:
    """Parse ``data/families.toml``: its special-token sets by name and its families by name, in file order."""
    import sys  # here, not at the top: importing this module (harvest does, for the date) needs no TOML parser

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    text = files("longmagpie.templates").joinpath("data", "families.toml").read_bytes().decode("utf-8")
    data = tomllib.loads(text)
    specials = MappingProxyType({name: tuple(tokens) for name, tokens in data["specials"].items()})
    families = {}
    for name, table in data["families"].items():
        entry = dict(table)
        if "template_kwargs" in entry:
            entry["template_kwargs"] = MappingProxyType(entry["template_kwargs"])
        try:
            families[name] = FamilyTemplate(
                name=name,
                chat_template=load_template(entry.pop("chat_template")),
                special_tokens=specials[entry.pop("specials")],
                bos_token=entry.pop("bos_token", None),
                **entry,
            )
        except (KeyError, TypeError) as err:
            raise ValueError(f"data/families.toml: family {name!r}: {err}") from err
    return specials, families


def __getattr__(name: str) -> object:
    """Read a template constant, a special-token set or :data:`FAMILY_TEMPLATES` on first access, then keep it."""
    if name in _TEMPLATE_FILES:
        value: object = load_template(_TEMPLATE_FILES[name])
    elif name == "FAMILY_TEMPLATES":
        value = dict(_registry()[1])
    elif name in _SPECIALS_NAMES:
        value = _registry()[0][_SPECIALS_NAMES[name]]
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """List the module's names, the templates not yet read included."""
    return sorted({*globals(), *__all__})
