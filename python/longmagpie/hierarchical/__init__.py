"""Hierarchical long-context QA synthesis (He et al., ICLR 2025) on the harvester's engines.

:func:`synthesize` is the entry point (a :class:`HierarchicalConfig` in, a :class:`HierarchicalReport` out):
documents are chunked by tokens, summarised level by level, given QAs of every kind, then concatenated into
conversations of each target length (the curriculum), revisiting earlier documents.
:func:`hierarchical_quality` measures the summaries and QAs without a model (every run records it).
"""

from longmagpie.hierarchical.chunking import Chunks, split_document
from longmagpie.hierarchical.concatenate import Concatenator, Conversation, DocQAs, conversations_table
from longmagpie.hierarchical.config import HierarchicalConfig
from longmagpie.hierarchical.prompts import DEFAULT_PROMPTS, DIVERSE_STYLES, resolve_prompts
from longmagpie.hierarchical.quality import QualityMeter, hierarchical_quality, token_counter
from longmagpie.hierarchical.questions import KINDS, QAItem, plan_document
from longmagpie.hierarchical.synthesize import HierarchicalReport, TargetResult, synthesize

__all__ = [
    "DEFAULT_PROMPTS",
    "DIVERSE_STYLES",
    "KINDS",
    "Chunks",
    "Concatenator",
    "Conversation",
    "DocQAs",
    "HierarchicalConfig",
    "HierarchicalReport",
    "QAItem",
    "QualityMeter",
    "TargetResult",
    "conversations_table",
    "hierarchical_quality",
    "plan_document",
    "resolve_prompts",
    "split_document",
    "synthesize",
    "token_counter",
]
