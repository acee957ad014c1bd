"""The tests run against an installed abi3 manylinux wheel, not the source tree."""

from __future__ import annotations

import os
import sysconfig
from pathlib import Path

import pytest

import longmagpie
from longmagpie import _core

WHEEL = os.environ.get("LONGMAGPIE_WHEEL")


@pytest.mark.skipif(not WHEEL, reason="set by scripts/test.sh, which builds and installs the wheel")
def test_installed_from_the_wheel() -> None:
    wheel = Path(WHEEL or "")
    assert "-abi3-" in wheel.name and "manylinux" in wheel.name, wheel.name
    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    assert Path(longmagpie.__file__).resolve().is_relative_to(site)
    assert Path(_core.__file__).resolve().name.endswith(".abi3.so")
    assert (Path(longmagpie.__file__).parent / "py.typed").exists()
    assert (Path(longmagpie.__file__).parent / "_core.pyi").exists()
    assert longmagpie.__version__ == wheel.name.split("-")[1]
