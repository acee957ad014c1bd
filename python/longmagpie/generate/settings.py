"""The settings that the harvester and the hierarchical synthesizer share.

Both configs extend :class:`GenerationConfig`: the inputs, the model and its context (:class:`ModelSettings`) and
the engine (:class:`EngineSettings`), so a shared option exists once, with one default, one check and one place in
the docs. The engine settings change how the work is executed, not what is generated: they are left out of every
fingerprint (except the ``engine_kwargs`` that shape results, such as ``dtype``), so a run can resume on another
engine, server or concurrency.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping
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


@dataclass(frozen=True)
class ModelSettings:
    """What a generation run reads, where it writes and with which model: the fields every generation config has.

    ``inputs``, ``output_dir`` and ``model`` are required; ``max_model_len``, ``seed`` and ``template_kwargs`` are
    keyword-only.

    Attributes:
        inputs: Parquet/JSONL files or directories of them, paths or URIs (one given alone is one input).
        output_dir: where the run writes its resumable output.
        model: the generator model, a vLLM name or directory (for ``openai``: the tokenizer source unless
            ``tokenizer`` is set).
        tokenizer: tokenizer directory if not the model's.
        text_column: the column holding the document text.
        id_column: the column holding a document id (default: a hash of the text).
        max_model_len: the model context; every prompt plus its generation must fit in it.
        seed: run seed; each request's seed derives from it.
        template_kwargs: extra chat-template variables (e.g. ``{"enable_thinking": False}``).

    """

    inputs: tuple[str, ...]
    output_dir: str
    model: str
    tokenizer: str | None = None
    text_column: str = "text"
    id_column: str | None = None
    max_model_len: int = field(default=32768, kw_only=True)
    seed: int = field(default=0, kw_only=True)
    template_kwargs: dict[str, Any] = field(default_factory=dict, kw_only=True)

    def check_model_settings(self) -> None:
        """Normalise the paths (:func:`normalize_paths`) and check the context length.

        Raises:
            ValueError: ``max_model_len`` below 1.

        """
        normalize_paths(self)
        if int(self.max_model_len) < 1:
            raise ValueError(f"max_model_len must be at least 1, got {self.max_model_len}")


@dataclass(frozen=True)
class GenerationConfig(EngineSettings, ModelSettings):
    """The base of the harvest and hierarchical configs: :class:`ModelSettings` and :class:`EngineSettings`.

    Its fields come in that order (the model settings, then the keyword-only engine settings); a subclass adds
    its own and checks them in its ``__post_init__`` after calling this one, which checks the shared settings.
    """

    def __post_init__(self) -> None:
        """Check the engine settings, normalise the paths and check the model settings."""
        self.check_engine_settings()
        self.check_model_settings()


#: The plain value types a settings file can give a field, by annotation (other annotations: checked by the class).
_PLAIN_TYPES: dict[Any, tuple[type, ...]] = {int: (int,), float: (int, float), str: (str,), bool: (bool,)}


def check_settings(cls: type, settings: Mapping[str, Any]) -> None:
    """Check settings read from a file (TOML, JSON) before they build the config dataclass ``cls``.

    The one check (and wording) of such settings, for the command line's ``--config`` file and for
    ``pipeline.toml``'s ``[harvest]`` and ``[hierarchical]`` sections: every name must be a field of ``cls``, and a
    field annotated ``int``, ``float``, ``str`` or ``bool`` (or one of them or ``None``) must hold that type (an
    ``int`` for a ``float``). The values themselves (ranges, choices) are checked by ``cls`` when it is built.

    Raises:
        ValueError: naming each unknown setting (and the field it is close to, if any) and every field of ``cls``;
            or naming the setting whose value has the wrong type.

    """
    fields = sorted(f.name for f in dataclasses.fields(cls))
    unknown = sorted(set(settings) - set(fields))
    if unknown:

        def named(name: str) -> str:
            close = difflib.get_close_matches(name, fields, n=1)
            return f"{name} (did you mean {close[0]}?)" if close else name

        raise ValueError(
            f"unknown setting(s) {', '.join(named(n) for n in unknown)}; {cls.__name__} takes {', '.join(fields)}"
        )
    hints = typing.get_type_hints(cls)
    for name, value in settings.items():
        annotation = hints[name]
        union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
        options = typing.get_args(annotation) if union else (annotation,)
        if value is None and type(None) in options:
            continue
        plain = [t for t in options if t is not type(None)]
        if len(plain) != 1 or plain[0] not in _PLAIN_TYPES:
            continue
        allowed = _PLAIN_TYPES[plain[0]]
        if (isinstance(value, bool) and bool not in allowed) or not isinstance(value, allowed):
            kind = plain[0].__name__ + (" or None" if type(None) in options else "")
            got = f"a value of type {type(value).__name__}" if name in SECRET_FIELDS else repr(value)  # no credential
            raise ValueError(f"{name} must be {'an' if kind.startswith('int') else 'a'} {kind}, got {got}")
