"""One home for the packing options: the API, the Ray transforms, the CLI and pipeline.toml agree on every default,
and every entry point checks the options before it reads any input."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

import longmagpie
from longmagpie.cli import app
from longmagpie.distributed import ray as ray_api
from longmagpie.options import PackOptions, PmixOptions, defaults

runner = CliRunner()

#: CLI option names that differ from the options' field names.
CLI_NAMES = {"num_threads": "threads"}


def signature_defaults(fn: object) -> dict[str, object]:
    return {
        n: p.default for n, p in inspect.signature(fn).parameters.items() if p.default is not inspect.Parameter.empty
    }


def cli_defaults(command: str) -> dict[str, object]:
    click_command = typer.main.get_command(app).commands[command]  # type: ignore[attr-defined]
    return {p.name: p.default for p in click_command.params}


@pytest.mark.parametrize(
    ("options", "functions", "command", "section"),
    [
        (PackOptions, [longmagpie.pack, longmagpie.pack_stream], "pack", "PackSection"),
        (PmixOptions, [longmagpie.pack_pmix, longmagpie.pack_pmix_stream], "pmix", "PmixSection"),
    ],
)
def test_every_entry_point_has_the_same_defaults(options, functions, command, section) -> None:
    from longmagpie.cli import pipeline

    want = defaults(options)
    for fn in functions:
        got = signature_defaults(fn)
        assert {k: got[k] for k in want} == want, fn.__name__
    ray_fns = (
        [ray_api.ray_pack, ray_api.ray_pack_to_parquet]
        if options is PackOptions
        else [
            ray_api.ray_pack_pmix,
            ray_api.ray_pack_pmix_to_parquet,
        ]
    )
    for fn in ray_fns:  # Ray copies with one thread per task (its own default) and has no max_rows
        got = signature_defaults(fn)
        assert {k: got[k] for k in want if k in got and k != "num_threads"} == {
            k: v for k, v in want.items() if k in got and k != "num_threads"
        }, fn.__name__
        assert got["num_threads"] == 1
    cli = cli_defaults(command)
    assert {k: cli[CLI_NAMES.get(k, k)] for k in want} == want
    model = getattr(pipeline, section)
    toml = {k: f.default for k, f in model.model_fields.items()}
    assert {k: toml[k] for k in want if k in toml} == {k: v for k, v in want.items() if k in toml}
    assert set(want) - set(toml) <= {"seed", "num_threads", "max_rows"}  # from [pipeline] seed / num_threads


def test_no_default_truncates_silently() -> None:
    assert PackOptions().overflow == "error" and PmixOptions().overflow == "error"


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"seq_len": 0}, ValueError, "seq_len must be a positive number"),
        ({"seq_len": 2**31}, ValueError, r"seq_len must be in 1\.\.=2147483647"),
        ({"seq_len": 8.0}, TypeError, "seq_len must be an int"),
        ({"strategy": "best"}, ValueError, "unknown strategy 'best'"),
        ({"overflow": "wrap"}, ValueError, "unknown overflow policy 'wrap'"),
        ({"num_threads": 0}, ValueError, "num_threads must be >= 1"),
    ],
)
def test_pack_options_name_the_bad_value(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        PackOptions(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"p_long": 1.5}, ValueError, r"p_long must be in \[0, 1\]"),
        ({"p_long": True}, TypeError, "p_long must be a number"),
        ({"seed": -1}, ValueError, "seed must be in"),
        ({"n_short_prefix": -1}, ValueError, "n_short_prefix must be >= 0"),
        ({"max_rows": 0}, ValueError, "max_rows must be >= 1"),
        ({"fill": "tight"}, ValueError, "unknown fill 'tight'"),
        ({"overflow": "split"}, ValueError, "overflow='split' is not available"),
        ({"exhausted": "wrap"}, ValueError, "unknown exhausted policy 'wrap'"),
    ],
)
def test_pmix_options_name_the_bad_value(kwargs, error, match) -> None:
    with pytest.raises(error, match=match):
        PmixOptions(**kwargs)


def test_options_are_checked_before_any_input_is_read(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-file.parquet")
    out = str(tmp_path / "out.parquet")
    bad = runner.invoke(app, ["pmix", "--long", missing, "--short", missing, "-o", out, "--p-long", "1.5"])
    assert bad.exit_code == 1 and "p_long must be in [0, 1]" in bad.output and "no-such-file" not in bad.output
    bad = runner.invoke(app, ["pack", missing, "-o", out, "--strategy", "worst"])
    assert bad.exit_code == 1 and "unknown strategy 'worst'" in bad.output and "no-such-file" not in bad.output
    assert not Path(out).exists()


@pytest.mark.parametrize(("command", "config"), [("harvest", "HarvestConfig"), ("hierarchical", "HierarchicalConfig")])
def test_generation_commands_default_to_their_configs(command: str, config: str) -> None:
    """The harvest and hierarchical options show and use the config's own defaults."""
    import dataclasses

    from longmagpie.harvest import HarvestConfig
    from longmagpie.hierarchical import HierarchicalConfig

    cls = {"HarvestConfig": HarvestConfig, "HierarchicalConfig": HierarchicalConfig}[config]
    fields = {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}
    cli = cli_defaults(command)
    shared = set(cli) & set(fields)
    assert len(shared) >= 10
    assert {k: cli[k] for k in shared if k != "targets"} == {k: fields[k] for k in shared if k != "targets"}
    if "targets" in shared:
        assert tuple(int(t) for t in cli["targets"].split(",")) == fields["targets"]


def test_assemble_defaults_agree() -> None:
    """`longmagpie assemble` and `[assemble]` take AssembleConfig's defaults; [assemble] has every option."""
    import dataclasses

    from longmagpie.assembly.assembler import AssembleConfig
    from longmagpie.cli.pipeline import AssembleSection

    fields = {f.name: f.default for f in dataclasses.fields(AssembleConfig)}
    toml = {k: f.default for k, f in AssembleSection.model_fields.items()}
    assert set(fields) - set(toml) == {"seed", "num_threads"}  # [pipeline] seed and num_threads
    assert {k: toml[k] for k in fields if k in toml} == {k: v for k, v in fields.items() if k in toml}
    cli = cli_defaults("assemble")
    assert (cli["min_target"], cli["max_target"]) == fields["target_tokens"]
    for name in ("max_tokens", "doc_separator", "query_separator", "system", "long_documents", "seed"):
        assert cli[name] == fields[name], name
