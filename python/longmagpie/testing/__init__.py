"""Offline helpers for tests, docs and benchmarks.

Synthetic samples (``synthetic``); the real Qwen2.5 tokenizer and tiny random-weight models built without a hub
(``tokenizers``).
"""
