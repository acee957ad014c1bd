"""The bundled ``.jinja`` templates and ``families.toml`` agree with their provenance file and the Python names.

``longmagpie/templates/data/SOURCES.md`` records each file's size and sha256; these tests read the installed
package's files, so they also fail when a wheel ships without them.
"""

from __future__ import annotations

import hashlib
import importlib
import re
import subprocess
import sys
from importlib.resources import files
from types import MappingProxyType

import pytest

from longmagpie.templates import chat, families

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DATA = files("longmagpie.templates").joinpath("data")
ROW = re.compile(r"^\| `(?P<file>[^`]+\.jinja)` \| (?P<size>\d+) \| `(?P<sha256>[0-9a-f]{64})` \| `(?P<name>[^`]+)` \|")


def sources() -> dict[str, dict[str, str]]:
    """The rows of SOURCES.md's table, by file name."""
    rows = {}
    for line in DATA.joinpath("SOURCES.md").read_text(encoding="utf-8").splitlines():
        m = ROW.match(line)
        if m:
            assert m["file"] not in rows, m["file"]
            rows[m["file"]] = m.groupdict()
    return rows


def jinja_files() -> list[str]:
    return sorted(p.name for p in DATA.iterdir() if p.name.endswith(".jinja"))


def test_sources_lists_every_template_file_once():
    assert jinja_files(), "no template files in the installed package"
    assert sorted(sources()) == jinja_files()


@pytest.mark.parametrize("name", jinja_files())
def test_file_size_and_sha256_equal_sources(name):
    data = DATA.joinpath(name).read_bytes()
    row = sources()[name]
    assert len(data) == int(row["size"]), name
    assert hashlib.sha256(data).hexdigest() == row["sha256"], name
    data.decode("utf-8")  # every template is UTF-8 text


@pytest.mark.parametrize("name", jinja_files())
def test_python_name_equals_its_file(name):
    module_name, _, attr = sources()[name]["name"].partition(".")
    module = importlib.import_module(f"longmagpie.templates.{module_name}")
    value = getattr(module, attr)
    assert value.encode("utf-8") == DATA.joinpath(name).read_bytes()
    assert value == families.load_template(name)


def test_every_template_constant_is_listed_in_sources():
    listed = {row["name"] for row in sources().values()}
    for module, prefix in ((families, "families"), (chat, "chat")):
        names = {n for n in dir(module) if n.endswith("_CHAT_TEMPLATE")}
        assert names, prefix
        assert {f"{prefix}.{n}" for n in names} <= listed
        assert set(module.__all__) <= set(dir(module))


def test_family_templates_are_the_bundled_files():
    texts = {families.load_template(name) for name in jinja_files()}
    for fam in families.FAMILY_TEMPLATES.values():
        assert fam.chat_template in texts, fam.name


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="NO_SUCH_CHAT_TEMPLATE"):
        _ = families.NO_SUCH_CHAT_TEMPLATE
    with pytest.raises(AttributeError, match="NO_SUCH_CHAT_TEMPLATE"):
        _ = chat.NO_SUCH_CHAT_TEMPLATE
    with pytest.raises(FileNotFoundError):
        families.load_template("no-such-template.jinja")


def test_importing_harvest_reads_no_template():
    """``harvest`` and ``hierarchical`` import ``families`` only for a date: no data file is read on import."""
    code = (
        "import sys, longmagpie.harvest, longmagpie.hierarchical\n"
        "m = sys.modules['longmagpie.templates.families']\n"
        "loaded = [n for n in vars(m) if n.endswith(('_CHAT_TEMPLATE', '_SPECIALS')) or n == 'FAMILY_TEMPLATES']\n"
        "assert not loaded and m.load_template.cache_info().currsize == 0, loaded\n"
        "assert m._registry.cache_info().currsize == 0  # families.toml not read either\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def families_toml() -> dict:
    return tomllib.loads(DATA.joinpath("families.toml").read_text(encoding="utf-8"))


def test_families_toml_is_family_templates():
    """Each ``[families.NAME]`` table is ``FAMILY_TEMPLATES[NAME]``, in file order; its files and sets exist."""
    data = families_toml()
    assert list(data["families"]) == list(families.FAMILY_TEMPLATES)
    for name, table in data["families"].items():
        fam = families.FAMILY_TEMPLATES[name]
        assert fam.name == name
        assert table["chat_template"] in jinja_files(), name
        assert fam.chat_template == families.load_template(table["chat_template"])
        assert fam.special_tokens is getattr(families, f"{table['specials'].upper()}_SPECIALS"), name
        assert fam.bos_token == table.get("bos_token"), name
        for key in ("model", "source", "preset", "eos_token", "end_of_turn"):
            assert getattr(fam, key) == table[key], (name, key)
        assert fam.system_role is table.get("system_role", True), name
        assert isinstance(fam.template_kwargs, MappingProxyType) and fam.template_kwargs == table.get(
            "template_kwargs", {}
        )
    assert {t["specials"] for t in data["families"].values()} == set(data["specials"]), "an unused special set"


def test_specials_constants_are_the_toml_sets():
    names = [n for n in families.__all__ if n.endswith("_SPECIALS")]
    sets = families_toml()["specials"]
    assert sorted(n.removesuffix("_SPECIALS").lower() for n in names) == sorted(sets)
    for n in names:
        value = getattr(families, n)
        assert type(value) is tuple and value == tuple(sets[n.removesuffix("_SPECIALS").lower()]), n
        assert len(set(value)) == len(value), n
    assert families.FAMILY_TEMPLATES["llama3.2"].template_kwargs["date_string"] == families.LLAMA31_DEFAULT_DATE


def test_sources_records_families_toml_as_our_own():
    text = DATA.joinpath("SOURCES.md").read_text(encoding="utf-8")
    assert "`families.toml`" in text and "longmagpie's own" in text
