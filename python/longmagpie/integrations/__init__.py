"""Integrations with trainers: ``torch`` (PackedCollator, padding-free batches for transformers / TRL)."""
