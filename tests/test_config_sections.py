"""One home for the generation settings: the shared base of the configs, pipeline.toml sections checked at load."""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path

import pytest
import typer.main
from typer.testing import CliRunner

from longmagpie.cli import app
from longmagpie.cli.pipeline import load_config
from longmagpie.generate.settings import EngineSettings, GenerationConfig, ModelSettings, check_settings
from longmagpie.harvest import HarvestConfig
from longmagpie.hierarchical import HierarchicalConfig

runner = CliRunner()
SHARED = ("inputs", "output_dir", "model", "tokenizer", "text_column", "id_column", "max_model_len", "seed")
CONFIGS = (HarvestConfig, HierarchicalConfig)


@pytest.mark.parametrize("cls", CONFIGS)
def test_the_configs_extend_one_base_with_the_shared_fields(cls: type) -> None:
    assert issubclass(cls, GenerationConfig) and issubclass(cls, ModelSettings) and issubclass(cls, EngineSettings)
    base = {f.name: f for f in dataclasses.fields(GenerationConfig)}
    assert {*SHARED, "template_kwargs"} <= set(base)
    own = {f.name for f in dataclasses.fields(cls)} - set(base)
    assert not own & set(base)  # no field declared again
    for name, f in base.items():
        mine = cls.__dataclass_fields__[name]
        assert (mine.default, mine.default_factory, mine.kw_only) == (f.default, f.default_factory, f.kw_only)
    # inputs ... id_column stay positional (in that order), the rest of the shared ones are keyword-only
    positional = [p.name for p in inspect.signature(cls).parameters.values() if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert positional[:6] == list(SHARED[:6])
    assert {"max_model_len", "seed", "template_kwargs", "engine"}.isdisjoint(positional)
    with pytest.raises(TypeError, match="model"):
        cls(inputs=("x",), output_dir="o")


@pytest.mark.parametrize("cls", CONFIGS)
def test_the_shared_checks_and_their_words(cls: type) -> None:
    base = {"inputs": "one.parquet", "output_dir": Path("out"), "model": Path("m")}
    config = cls(**base)
    assert (config.inputs, config.output_dir, config.model) == (("one.parquet",), "out", "m")
    assert (config.max_model_len, config.seed, config.template_kwargs) == (32768, 0, {})
    with pytest.raises(ValueError, match=r"^max_model_len must be at least 1, got 0$"):
        cls(**base, max_model_len=0)
    with pytest.raises(ValueError, match=r"^engine='tgi': choose one of vllm, openai, ray$"):
        cls(**base, engine="tgi")
    with pytest.raises(ValueError, match=r"^concurrency must be at least 1, got 0$"):
        cls(**base, concurrency=0)


def test_settings_from_a_file_are_checked_by_name_and_plain_type() -> None:
    check_settings(HarvestConfig, {"query_candidates": 2, "query_temperature": 1, "tokenizer": None, "inputs": "x"})
    with pytest.raises(ValueError, match=r"unknown setting\(s\) quer_candidates \(did you mean query_candidates\?\)"):
        check_settings(HarvestConfig, {"quer_candidates": 2})
    for settings, words in [
        ({"query_candidates": "four"}, "query_candidates must be an int, got 'four'"),
        ({"shard_rows": True}, "shard_rows must be an int, got True"),
        ({"max_doc_tokens": 1.5}, "max_doc_tokens must be an int or None, got 1.5"),
        ({"query_top_p": "1"}, "query_top_p must be a float, got '1'"),
        ({"strip_reasoning": 1}, "strip_reasoning must be a bool, got 1"),
    ]:
        with pytest.raises(ValueError, match=f"^{words}$".replace("(", r"\(").replace(")", r"\)")):
            check_settings(HarvestConfig, settings)
    with pytest.raises(ValueError) as err:  # no credential in a message
        check_settings(HarvestConfig, {"api_key": 12345678})
    assert str(err.value) == "api_key must be a str or None, got a value of type int"
    check_settings(HierarchicalConfig, {"targets": 1000, "conversations_per_target": {"1000": 2}, "temperature": 0})


def pipeline(tmp_path: Path, section: str, body: str) -> Path:
    path = tmp_path / "pipeline.toml"
    path.write_text(
        f'output_dir = "{tmp_path / "run"}"\ntokenizer = "t"\nseed = 7\n\n[{section}]\n'
        f'inputs = ["{tmp_path / "docs"}"]\n{body}'
    )
    return path


@pytest.mark.parametrize(
    ("section", "body", "words"),
    [
        ("harvest", 'model = "m"\nquer_candidates = 3\n', "[harvest]: unknown setting(s) quer_candidates (did you"),
        ("harvest", 'model = "m"\nquery_candidates = 0\n', "[harvest]: query_candidates must be at least 1, got 0"),
        ("harvest", 'model = "m"\nquery_candidates = "four"\n', "[harvest]: query_candidates must be an int"),
        ("harvest", 'model = "m"\nplacement = "middle"\n', "[harvest]: placement='middle': choose one of system"),
        ("harvest", "query_candidates = 2\n", "[harvest]: missing setting(s) model"),
        ("hierarchical", 'model = "m"\nchunk_size = 3\n', "[hierarchical]: unknown setting(s) chunk_size"),
        ("hierarchical", 'model = "m"\ntargets = [0]\n', "[hierarchical]: targets must be positive"),
        ("hierarchical", 'model = "m"\nmax_model_len = 0\n', "[hierarchical]: max_model_len must be at least 1"),
    ],
)
def test_a_bad_generation_section_fails_when_the_file_loads(
    tmp_path: Path, section: str, body: str, words: str
) -> None:
    config = pipeline(tmp_path, section, body + 'api_key = "sk-not-in-any-message"\n')
    with pytest.raises(ValueError) as err:
        load_config(config)
    assert words in str(err.value) and "sk-not-in-any-message" not in str(err.value)
    result = runner.invoke(app, ["run", str(config)])
    assert result.exit_code == 1 and words in result.output
    assert not (tmp_path / "run").exists()  # no stage started: not even the output directory


def test_the_sections_build_the_config_the_stage_runs(tmp_path: Path) -> None:
    harvest = load_config(pipeline(tmp_path, "harvest", 'model = "m"\nseed = 99\nengine = "openai"\n'))
    built = harvest.generation_config()
    assert isinstance(built, HarvestConfig)
    # the pipeline sets output_dir and seed itself, as before
    assert (built.output_dir, built.seed, built.engine) == (str(tmp_path / "run" / "harvest"), 7, "openai")
    assert harvest.targets() == [None]
    hierarchical = load_config(pipeline(tmp_path, "hierarchical", 'model = "m"\ntargets = 1000\n'))
    built = hierarchical.generation_config()
    assert isinstance(built, HierarchicalConfig) and built.output_dir == str(tmp_path / "run" / "hierarchical")
    assert hierarchical.targets() == [1000]
    # the section is kept as written: the stage hashes and pipeline.resolved.json are those of the TOML table
    assert hierarchical.hierarchical == {"inputs": [str(tmp_path / "docs")], "model": "m", "targets": 1000}
    one = tmp_path / "one.toml"  # one input as a string is one input
    one.write_text(f'output_dir = "{tmp_path / "run"}"\ntokenizer = "t"\n[harvest]\ninputs = "docs/"\nmodel = "m"\n')
    assert load_config(one).generation_config().inputs == ("docs/",)  # type: ignore[union-attr]


@pytest.mark.parametrize("command", ["harvest", "hierarchical"])
def test_the_generation_commands_share_the_engine_options(command: str) -> None:
    click_command = typer.main.get_command(app).commands[command]  # type: ignore[attr-defined]
    names = [p.name for p in click_command.params]
    engine = ["engine", "base_url", "api_key", "served_model_name", "concurrency", "engine_kwargs"]
    at = names.index("engine")
    assert names[at : at + len(engine) + 2] == [*engine, "quiet", "verbose"]
    defaults = {p.name: p.default for p in click_command.params}
    assert {k: defaults[k] for k in ("engine", "base_url", "concurrency", "text_column", "seed", "max_model_len")} == {
        "engine": "vllm",
        "base_url": "http://127.0.0.1:8000",
        "concurrency": 16,
        "text_column": "text",
        "seed": 0,
        "max_model_len": 32768,
    }


def test_a_config_file_typo_gets_the_near_name(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"inputs": ["x"], "model": "m", "answer_candidate": 2}')
    result = runner.invoke(app, ["harvest", "--config", str(bad)])
    assert result.exit_code == 1
    assert "unknown setting(s) answer_candidate (did you mean answer_candidates?)" in result.output
    bad.write_text('{"inputs": ["x"], "model": "m", "documents_per_pass": "many"}')
    result = runner.invoke(app, ["hierarchical", "--config", str(bad), "-o", str(tmp_path / "h")])
    assert result.exit_code == 1 and "documents_per_pass must be an int, got 'many'" in result.output
