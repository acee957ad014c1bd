"""Harvest tests (a package, so their conftest and helpers do not shadow the top-level ones)."""
