"""build_smollm2: the packaged GGUF becomes a plain checkpoint directory that transformers and vLLM load."""

from __future__ import annotations

import json
import os
from pathlib import Path

from longmagpie import models


def test_the_directory_is_a_complete_checkpoint(smollm2_dir: Path) -> None:
    names = {p.name for p in smollm2_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "chat_template.jinja", "generation_config.json"} <= (
        names
    )
    assert not [n for n in names if n.startswith(".")]
    config = json.loads((smollm2_dir / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["num_hidden_layers"] == 30
    assert config["max_position_embeddings"] == models.SMOLLM2_MAX_MODEL_LEN and "quantization_config" not in config
    provenance = json.loads((smollm2_dir / models.PROVENANCE).read_text())
    assert provenance["gguf_sha256"] == models.SMOLLM2_GGUF_SHA256
    umask = os.umask(0)
    os.umask(umask)
    assert (smollm2_dir.stat().st_mode & 0o777) == 0o777 & ~umask  # not mkdtemp's 0700


def test_tokenizer_and_template_are_smollm2s(smollm2_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2_dir)
    assert len(tok) == 49152 and tok.eos_token == "<|im_end|>"
    text = tok.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )
    generation = json.loads((smollm2_dir / "generation_config.json").read_text())
    assert generation["eos_token_id"] == tok.convert_tokens_to_ids("<|im_end|>")


def test_a_built_directory_is_reused(smollm2_dir: Path) -> None:
    before = (smollm2_dir / "model.safetensors").stat().st_mtime_ns
    assert models.build_smollm2(smollm2_dir) == smollm2_dir
    assert (smollm2_dir / "model.safetensors").stat().st_mtime_ns == before


def test_it_answers_like_an_aligned_model(smol_engine) -> None:
    """Greedy, a plain question: the converted weights are SmolLM2's (a wrong conversion writes gibberish)."""
    from transformers import AutoTokenizer

    from longmagpie.harvest import GenerationRequest

    tok = AutoTokenizer.from_pretrained(models.cached_smollm2_dir())
    text = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}], add_generation_prompt=True, tokenize=False
    )
    ids = tok.encode(text, add_special_tokens=False)
    (out,) = smol_engine.generate([GenerationRequest(ids, 24, 0.0, 1.0, 0, [tok.convert_tokens_to_ids("<|im_end|>")])])
    assert "Paris" in out.text, out.text
    assert out.finish_reason == "stop"


def test_weights_are_bf16(smollm2_dir: Path) -> None:
    from safetensors import safe_open

    with safe_open(str(smollm2_dir / "model.safetensors"), framework="pt") as f:
        dtypes = {str(f.get_tensor(k).dtype) for k in f.keys()}
    assert dtypes == {"torch.bfloat16"}
