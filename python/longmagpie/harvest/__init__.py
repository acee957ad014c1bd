"""LongMagpie harvesting with vLLM: documents in, (context, query, answer) rows out, batched and resumable.

:func:`harvest` is the entry point (a :class:`HarvestConfig` in, a :class:`HarvestReport` out);
:func:`read_harvest` reads an output directory back as one table.
"""

from longmagpie.generate.engines import (
    Engine,
    GenerationRequest,
    GenerationResult,
    OpenAIEngine,
    RayEngine,
    ServerUnreachableError,
    VllmEngine,
    build_engine,
)
from longmagpie.harvest.config import HarvestConfig
from longmagpie.harvest.filters import AnswerFilter, QueryFilter, normalize_query, query_hash
from longmagpie.harvest.output import ROW_SCHEMA, read_harvest, row_schema
from longmagpie.harvest.prompt_ids import PromptTokenizer, middle_truncate
from longmagpie.harvest.run import HarvestEvent, HarvestReport, harvest, harvest_quality
from longmagpie.templates.prompts import PRESETS, PromptPieces, pieces_from_template, preset, resolve_pieces

__all__ = [
    "PRESETS",
    "ROW_SCHEMA",
    "AnswerFilter",
    "Engine",
    "GenerationRequest",
    "GenerationResult",
    "HarvestConfig",
    "HarvestEvent",
    "HarvestReport",
    "OpenAIEngine",
    "PromptPieces",
    "PromptTokenizer",
    "QueryFilter",
    "RayEngine",
    "ServerUnreachableError",
    "VllmEngine",
    "build_engine",
    "harvest",
    "harvest_quality",
    "middle_truncate",
    "normalize_query",
    "pieces_from_template",
    "preset",
    "query_hash",
    "read_harvest",
    "resolve_pieces",
    "row_schema",
]
