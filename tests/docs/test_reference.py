"""The docs cannot drift from the code: generated pages are current, named modules exist, links resolve."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
#: README.md: "at most ~200 lines" (issue 17).
README_MAX_LINES = 200
#: Modules whose absence makes a name unverifiable here rather than wrong (optional extras).
OPTIONAL = ("ray", "torch", "vllm", "streaming", "fsspec", "matplotlib", "pydantic", "transformers")


def _text(page: Path) -> str:
    return page.read_text()


def test_generated_reference_pages_are_current() -> None:
    """``docs/reference/cli.md`` and ``pipeline-keys.md`` equal a fresh generation (``bash scripts/docs.sh``)."""
    pytest.importorskip("pydantic")
    done = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("gen_reference.py")), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_upstream_page_gathers_every_stage_section() -> None:
    """Each stage page's "differs from upstream" section is included in ``docs/upstream.md``, and only those."""
    marked = {p.name for p in DOCS.glob("*.md") if "--8<-- [start:upstream]" in _text(p)}
    included = set(re.findall(r'^--8<-- "([\w-]+\.md):upstream"$', _text(DOCS / "upstream.md"), re.M))
    assert marked, "no stage page marks its upstream section"
    assert included == marked


def _references() -> list[str]:
    """Every dotted ``longmagpie.x.y`` name in inline code of the pages."""
    found: set[str] = set()
    for page in PAGES:
        for code in re.findall(r"`([^`\n]+)`", _text(page)):
            found.update(re.findall(r"\blongmagpie(?:\.[A-Za-z_]\w*)+", code))
    return sorted(found)


@pytest.mark.parametrize("name", _references())
def test_named_modules_and_objects_exist(name: str) -> None:
    """A ``longmagpie.…`` name the docs give imports (module) or is an attribute of one (function, class...)."""
    parts = name.split(".")
    for split in range(len(parts), 0, -1):
        module_name = ".".join(parts[:split])
        try:
            obj = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            if err.name and err.name.split(".")[0] in OPTIONAL:
                pytest.skip(f"{module_name} needs {err.name}")
            if err.name == module_name:
                continue
            raise
        for attr in parts[split:]:
            try:
                obj = getattr(obj, attr)
            except ModuleNotFoundError as err:  # a lazy attribute (PackedCollator) whose extra is not installed
                if err.name and err.name.split(".")[0] in OPTIONAL:
                    pytest.skip(f"{name} needs {err.name}")
                raise
            except AttributeError:
                pytest.fail(f"{name}: {'.'.join(parts[:split])} has no {attr!r}")
        return
    pytest.fail(f"{name} names no module")


def test_readme_is_short() -> None:
    lines = _text(ROOT / "README.md").count("\n")
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines; move reference content into docs/"


def test_readme_links_resolve() -> None:
    """The README's relative links (to docs/*.md, and their anchors' pages) name files that exist."""
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", _text(ROOT / "README.md")):
        if "://" not in target:
            assert (ROOT / target).exists(), f"README.md links to {target}, which does not exist"
