"""The generation-engine settings that the harvester and the hierarchical synthesizer share.

Both configs inherit :class:`EngineSettings`, so an engine option exists once, with one default, one check and
one place in the docs. These settings change how the work is executed, not what is generated: they are left out
of every fingerprint (except the ``engine_kwargs`` that shape results, such as ``dtype``), so a run can resume on
another engine, server or concurrency.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

EngineName = Literal["vllm", "openai", "ray"]
ENGINES: tuple[str, ...] = ("vllm", "openai", "ray")

# vLLM engine arguments about resources, not results (kept out of fingerprints too).
EXECUTION_ENGINE_KWARGS = frozenset(
    {
        "kv_cache_memory_bytes",
        "gpu_memory_utilization",
        "tensor_parallel_size",
        "pipeline_parallel_size",
        "enforce_eager",
        "max_num_seqs",
        "max_num_batched_tokens",
        "swap_space",
        "distributed_executor_backend",
    }
)


@dataclass(frozen=True, kw_only=True)
class EngineSettings:
    """How requests reach a model: offline vLLM, an OpenAI-compatible server, or Ray Data (keyword-only).

    Attributes:
        engine: ``vllm`` (offline ``vllm.LLM``), ``openai`` (a server) or ``ray`` (Ray Data LLM).
        engine_kwargs: extra ``vllm.LLM`` / Ray engine arguments (dtype, tensor_parallel_size,
            kv_cache_memory_bytes...); those about resources only (:data:`EXECUTION_ENGINE_KWARGS`) are
            left out of fingerprints.
        base_url / api_key / served_model_name: the ``openai`` engine's server, key and model name (default:
            the model path).
        concurrency / max_retries / retry_backoff / request_timeout: the ``openai`` engine's requests in
            flight, retries with exponential back-off (seconds) and per-request timeout (seconds).
        ray_concurrency / ray_batch_size / ray_placement_bundles / ray_init_kwargs: the ``ray`` engine.
        progress: progress bars.

    """

    engine: EngineName = "vllm"
    engine_kwargs: dict[str, Any] = field(default_factory=dict)
    base_url: str = "http://127.0.0.1:8000"
    api_key: str | None = None
    served_model_name: str | None = None
    concurrency: int = 16
    max_retries: int = 5
    retry_backoff: float = 1.0
    request_timeout: float = 600.0
    ray_concurrency: int = 1
    ray_batch_size: int = 64
    ray_placement_bundles: tuple[dict[str, float], ...] | None = None
    ray_init_kwargs: dict[str, Any] = field(default_factory=dict)
    progress: bool = True

    def check_engine_settings(self) -> None:
        """Check the engine settings; errors name the setting and what is allowed.

        Raises:
            ValueError: an unknown engine, a non-positive count or a negative time.

        """
        if self.engine not in ENGINES:
            raise ValueError(f"engine={self.engine!r}: choose one of {', '.join(ENGINES)}")
        for name in ("concurrency", "ray_concurrency", "ray_batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        for name in ("retry_backoff", "request_timeout"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not isinstance(self.engine_kwargs, dict):
            raise ValueError(f"engine_kwargs must be a mapping of vLLM arguments, got {self.engine_kwargs!r}")
        if self.ray_placement_bundles is not None:
            object.__setattr__(self, "ray_placement_bundles", tuple(self.ray_placement_bundles))

    def engine_settings(self) -> dict[str, Any]:
        """Return the engine settings as keyword arguments (to start the same engine from another config)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(EngineSettings)}


#: Settings that hold a credential: never written to a file (manifests, pipeline.resolved.json, markers).
SECRET_FIELDS = frozenset({"api_key"})


def redact(settings: Any) -> Any:
    """Return ``settings`` (a mapping, nested mappings and lists) with every credential replaced by a placeholder."""
    if isinstance(settings, dict):
        return {k: "<redacted>" if k in SECRET_FIELDS and v is not None else redact(v) for k, v in settings.items()}
    if isinstance(settings, list):
        return [redact(v) for v in settings]
    return settings


#: Names of the engine settings.
ENGINE_FIELDS = frozenset(f.name for f in dataclasses.fields(EngineSettings))
#: Engine settings left out of fingerprints (``engine_kwargs`` enters them, less its resource-only keys).
EXECUTION_ENGINE_FIELDS = ENGINE_FIELDS - {"engine_kwargs"}


def fingerprint_value(name: str, value: Any) -> Any:
    """Return ``value`` as it enters a fingerprint: tuples as lists, resource-only engine kwargs dropped."""
    if name == "engine_kwargs":
        return {k: v for k, v in sorted(value.items()) if k not in EXECUTION_ENGINE_KWARGS}
    return list(value) if isinstance(value, tuple) else value


def normalize_paths(config: Any) -> None:
    """Normalise the paths every generation config (a frozen dataclass) has.

    ``inputs`` becomes a tuple of strings (one path or URI given alone is one input); ``output_dir``, ``model``
    and ``tokenizer`` become strings.
    """
    inputs = (config.inputs,) if isinstance(config.inputs, (str, Path)) else config.inputs
    object.__setattr__(config, "inputs", tuple(str(p) for p in inputs))
    object.__setattr__(config, "output_dir", str(config.output_dir))
    object.__setattr__(config, "model", str(config.model))
    if config.tokenizer is not None:
        object.__setattr__(config, "tokenizer", str(config.tokenizer))
