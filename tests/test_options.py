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
from longmagpie.options import PackOptions, PmixOptions, defaults, resolve

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
    ("options", "function", "command", "section"),
    [
        (PackOptions, longmagpie.pack, "pack", "PackSection"),
        (PmixOptions, longmagpie.pack_pmix, "pmix", "PmixSection"),
    ],
)
def test_every_entry_point_has_the_same_defaults(options, function, command, section) -> None:
    from longmagpie.cli import pipeline

    want = defaults(options)
    got = signature_defaults(function)
    assert {k: got[k] for k in want} == want, function.__name__
    cli = cli_defaults(command)
    assert {k: cli[CLI_NAMES.get(k, k)] for k in want} == want
    model = getattr(pipeline, section)
    toml = {k: f.default for k, f in model.model_fields.items()}
    assert {k: toml[k] for k in want if k in toml} == {k: v for k, v in want.items() if k in toml}
    assert set(want) - set(toml) <= {"seed", "num_threads", "max_rows"}  # from [pipeline] seed / num_threads


STREAM_AND_RAY = [
    (PackOptions, longmagpie.pack_stream),
    (PmixOptions, longmagpie.pack_pmix_stream),
    (PackOptions, ray_api.ray_pack),
    (PackOptions, ray_api.ray_pack_to_parquet),
    (PmixOptions, ray_api.ray_pack_pmix),
    (PmixOptions, ray_api.ray_pack_pmix_to_parquet),
]


@pytest.mark.parametrize(("options", "function"), STREAM_AND_RAY)
def test_stream_and_ray_entry_points_take_the_options_object(options, function) -> None:
    """They declare no option of their own (no default to drift): an options object and/or its fields by name."""
    params = inspect.signature(function).parameters
    assert params["options"].default is None
    assert not set(params) & {f for f in defaults(options)}, function.__name__
    assert any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def test_resolve_applies_overrides_and_names_an_unknown_field() -> None:
    assert resolve(PackOptions, None, {"seq_len": 8}) == PackOptions(seq_len=8)
    assert resolve(PackOptions, None, {}, num_threads=1) == PackOptions(num_threads=1)  # Ray's one thread per task
    base = PmixOptions(seq_len=16, seed=3)
    assert resolve(PmixOptions, base, {"p_long": 0.5}) == PmixOptions(seq_len=16, seed=3, p_long=0.5)
    with pytest.raises(TypeError, match="unknown PackOptions field 'sq_len'; the fields are seq_len"):
        resolve(PackOptions, None, {"sq_len": 8})
    with pytest.raises(TypeError, match="options must be a PmixOptions, got PackOptions"):
        resolve(PmixOptions, PackOptions(), {})  # type: ignore[type-var]
    with pytest.raises(ValueError, match="p_long must be in"):
        resolve(PmixOptions, base, {"p_long": 2.0})


def test_stream_takes_the_same_options_either_way() -> None:
    """pack_stream(x, PackOptions(...)) and pack_stream(x, seq_len=...) give pack's rows, byte for byte."""
    from support import ipc_bytes, make_samples

    samples = make_samples([5, 3, 8, 2, 7])
    whole = longmagpie.pack(samples, seq_len=10, strategy="ffd")
    by_object = longmagpie.pack_stream(samples, PackOptions(seq_len=10, strategy="ffd")).read_all()
    by_name = longmagpie.pack_stream(samples, seq_len=10, strategy="ffd").read_all()
    strip = lambda t: t.replace_schema_metadata(None)  # noqa: E731
    assert ipc_bytes(strip(by_object)) == ipc_bytes(strip(by_name)) == ipc_bytes(strip(whole))
    with pytest.raises(TypeError, match="unknown PackOptions field 'window'"):
        longmagpie.pack_stream(samples, window=5)


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
        ({"pad_to": 100}, ValueError, "pad_to must be at least seq_len=65536"),
        ({"pad_id": -1}, ValueError, "pad_id must be >= 0"),
        ({"pad_id": 2**31}, ValueError, "pad_id must be >= 0 and fit in int32"),
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
    own = {"targets", "steer"}  # parsed by the command itself: a comma list; a repeated option (None: not given)
    assert {k: cli[k] for k in shared - own} == {k: fields[k] for k in shared - own}
    if "steer" in shared:
        assert cli["steer"] is None and fields["steer"] == ()
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
