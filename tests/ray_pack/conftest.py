"""Fixtures of the Ray packing tests."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="module")
def ray(ray_cluster: Any) -> Any:
    """The session's Ray cluster (tests/conftest.py), as ``ray``."""
    return ray_cluster
