"""Chat-template knowledge.

Training spans (``spans``), generation prompts and presets (``prompts``), the bundled templates (``chat``,
``families``).
"""
