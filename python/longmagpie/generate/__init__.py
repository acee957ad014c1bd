"""① Generation, shared by harvest and hierarchical synthesis.

Engines (vLLM offline, an OpenAI-compatible server, Ray Data LLM) and their settings, document sources,
resumable output directories, reasoning blocks.
"""
