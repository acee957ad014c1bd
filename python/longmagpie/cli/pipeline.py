"""``longmagpie run pipeline.toml``: harvest -> assemble -> pack or p-mix -> export, stage by stage, resumable.

The TOML file is validated with pydantic (unknown keys and wrong types are reported with their path); the
``[harvest]`` or ``[hierarchical]`` section is built into its config as the file loads, so an unknown key or a bad
value there is reported (``[harvest]: ...``) before any stage runs. Each stage writes into ``output_dir/<stage>``
and then a marker ``output_dir/<stage>.done.json`` holding a hash of the stage's resolved settings and of the
stages before it; a rerun skips every stage whose marker matches and redoes a stage (and all after it) whose
settings changed or that did not finish. The resolved configuration is written next to the outputs
(``pipeline.resolved.json``).

Example::

    output_dir = "run"
    tokenizer = "models/qwen25-tokenizer"
    seed = 0

    [harvest]                      # optional: without it, [assemble] reads `samples`
    inputs = ["docs/"]
    model = "models/Qwen2.5-7B-Instruct"

    [quality]                      # optional: near-duplicates, decontamination, language, balance
    decontaminate = ["evals/mmlu.jsonl"]

    [quality.judge]                # optional: a judge model tags and scores the kept rows (JudgeConfig's keys)
    model = "models/Qwen2.5-7B-Instruct"
    min_faithfulness = 0.5

    [assemble]
    target_tokens = [8192, 65536]

    [pack]                         # or [pmix] with `short = [...]`
    seq_len = 65536

    [export]
    format = "parquet"

A ``[hierarchical]`` section (the keys of :class:`longmagpie.hierarchical.HierarchicalConfig`) replaces
``[harvest]`` + ``[assemble]``: its conversations, one dataset per target length, are packed each at its own
length (``seq_len`` = the target: leave ``seq_len`` out of ``[pack]``/``[pmix]``) into ``packed-<N>.parquet`` and
exported to ``dataset-<N>/``, a length curriculum ready to train in order::

    [hierarchical]
    inputs = ["books/"]
    model = "models/Qwen2.5-7B-Instruct"
    targets = [180000, 350000]
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from longmagpie.assembly.assembler import AssembleConfig
from longmagpie.generate.settings import EXECUTION_ENGINE_FIELDS, GenerationConfig, check_settings, redact
from longmagpie.options import (
    INPUT_COLUMNS,
    Exhausted,
    Fill,
    LossWeights,
    Overflow,
    PackOptions,
    PmixOptions,
    PmixOverflow,
    Strategy,
)
from longmagpie.quality.stage import QualityConfig

log = logging.getLogger(__name__)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AssembleSection(_Section):
    """``[assemble]``: see :func:`longmagpie.assemble`."""

    samples: list[str] | None = None
    documents: list[str] | None = None
    distractors: list[str] | None = None
    max_tokens: int = Field(AssembleConfig.max_tokens, gt=0)
    target_tokens: tuple[int, int] | None = AssembleConfig.target_tokens
    num_distractors: tuple[int, int] | None = AssembleConfig.num_distractors
    doc_separator: str = AssembleConfig.doc_separator
    query_separator: str = AssembleConfig.query_separator
    system: str | None = AssembleConfig.system
    answer_end: str | None = AssembleConfig.answer_end
    long_documents: Literal["truncate", "skip"] = AssembleConfig.long_documents  # type: ignore[assignment]
    max_misses: int = Field(AssembleConfig.max_misses, gt=0)
    margin: int = Field(AssembleConfig.margin, ge=0)
    batch_size: int = Field(AssembleConfig.batch_size, gt=0)


class PackSection(_Section):
    """``[pack]``: see :func:`longmagpie.pack`; ``engine = "ray"`` packs on Ray Data (``longmagpie.distributed``)."""

    engine: Literal["local", "ray"] = "local"
    ray_address: str | None = None
    seq_len: int = Field(PackOptions.seq_len, gt=0)
    strategy: Strategy = PackOptions.strategy
    overflow: Overflow = PackOptions.overflow
    pad_to: int | None = Field(PackOptions.pad_to, gt=0)
    pad_id: int = Field(PackOptions.pad_id, ge=0)
    loss_weights: LossWeights | None = PackOptions.loss_weights
    pad_documents_to: int | None = Field(PackOptions.pad_documents_to, gt=0)


class PmixSection(_Section):
    """``[pmix]``: see :func:`longmagpie.pack_pmix`; ``short`` are Parquet files of tokenized short samples."""

    short: list[str]
    engine: Literal["local", "ray"] = "local"
    ray_address: str | None = None
    seq_len: int = Field(PmixOptions.seq_len, gt=0)
    p_long: float = Field(PmixOptions.p_long, ge=0, le=1)
    n_short_prefix: int = Field(PmixOptions.n_short_prefix, ge=0)
    fill: Fill = PmixOptions.fill
    overflow: PmixOverflow = PmixOptions.overflow
    exhausted: Exhausted = PmixOptions.exhausted
    loss_weights: LossWeights | None = PmixOptions.loss_weights
    pad_documents_to: int | None = Field(PmixOptions.pad_documents_to, gt=0)


class QualitySection(_Section):
    """``[quality]``: see :func:`longmagpie.quality.quality`; runs between [harvest] and [assemble].

    ``seed`` and ``num_threads`` are the pipeline's.
    """

    column: str = QualityConfig.column
    dedup: bool = QualityConfig.dedup
    shingle: int | None = Field(QualityConfig.shingle, gt=0)
    threshold: float | None = Field(QualityConfig.threshold, gt=0, le=1)
    num_perm: int = Field(QualityConfig.num_perm, gt=0, le=1024)
    decontaminate: list[str] = Field(default_factory=list)
    ngram: int = Field(QualityConfig.ngram, gt=0)
    min_eval_words: int = Field(QualityConfig.min_eval_words, gt=0)
    decontaminate_columns: list[str] = Field(default_factory=lambda: list(QualityConfig.decontaminate_columns))
    detect_language: bool = QualityConfig.detect_language
    languages: list[str] | None = None
    language_columns: list[str] = Field(default_factory=lambda: list(QualityConfig.language_columns))
    max_share: float | None = Field(QualityConfig.max_share, gt=0, le=1)
    balance_by: Literal["query_form", "context_bucket"] = QualityConfig.balance_by  # type: ignore[assignment]
    judge: dict[str, Any] | None = None

    def config(self, seed: int, num_threads: int | None) -> QualityConfig:
        """Return the :class:`~longmagpie.quality.QualityConfig` of this section (without its judge)."""
        fields = self.model_dump(exclude={"judge"})
        return QualityConfig(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}, seed=seed, num_threads=num_threads
        )


class ExportSection(_Section):
    """``[export]``: Hugging Face Parquet shards or MDS."""

    format: Literal["parquet", "mds"] = "parquet"
    split: str = "train"


class PipelineConfig(_Section):
    """The whole ``pipeline.toml``."""

    output_dir: str
    tokenizer: str
    seed: int = 0
    num_threads: int | None = Field(None, gt=0)
    harvest: dict[str, Any] | None = None
    hierarchical: dict[str, Any] | None = None
    quality: QualitySection | None = None
    assemble: AssembleSection = Field(default_factory=AssembleSection)
    pack: PackSection | None = None
    pmix: PmixSection | None = None
    export: ExportSection = Field(default_factory=ExportSection)

    @model_validator(mode="after")
    def _check(self) -> PipelineConfig:
        if self.pack is not None and self.pmix is not None:
            raise ValueError("give [pack] or [pmix], not both")
        if self.quality is not None and self.hierarchical is not None:
            raise ValueError(
                "[quality] filters harvest rows: it runs with [harvest] or assemble.samples, not [hierarchical]"
            )
        if self.hierarchical is not None:
            if self.harvest is not None or self.assemble.samples or "assemble" in self.model_fields_set:
                raise ValueError(
                    "[hierarchical] makes the conversations itself: drop [harvest] and [assemble] (or run them in "
                    "another pipeline)"
                )
            section = self.pmix if self.pmix is not None else self.pack
            if section is not None and "seq_len" in section.model_fields_set:
                raise ValueError(
                    "with [hierarchical], each target is packed at its own length: remove seq_len from "
                    f"[{'pmix' if self.pmix is not None else 'pack'}]"
                )
            return self
        if self.harvest is None and not self.assemble.samples:
            raise ValueError(
                "give [harvest], [hierarchical] or assemble.samples (Parquet files of context/query/answer rows)"
            )
        return self

    @model_validator(mode="after")
    def _check_generation(self) -> PipelineConfig:
        # [harvest] / [hierarchical] are built now, so that a bad key or value fails before any stage runs
        try:
            self.generation_config()
            self.judge_config()
        except ValueError as err:  # its own words ("[harvest]: ..."), not after pydantic's "Value error, "
            raise PydanticCustomError("generation_section", "{message}", {"message": str(err)}) from None
        return self

    def judge_config(self) -> Any:
        """Return the :class:`~longmagpie.quality.judge.JudgeConfig` of ``[quality.judge]`` (``None`` without it).

        Its keys are ``JudgeConfig``'s; the pipeline sets ``inputs`` (the quality stage's kept rows),
        ``output_dir`` (``<output_dir>/judge``) and ``seed``.
        """
        if self.quality is None or self.quality.judge is None:
            return None
        from longmagpie.quality.judge import JudgeConfig

        settings = {**self.quality.judge, "inputs": [str(Path(self.output_dir) / "quality")]}
        return _section_config("quality.judge", JudgeConfig, settings, self.output_dir, self.seed, "judge")

    def generation_config(self) -> GenerationConfig | None:
        """Return the config of the ``[harvest]`` or ``[hierarchical]`` section (``None`` without either).

        The section's keys are the fields of ``HarvestConfig`` / ``HierarchicalConfig``, checked by that class;
        the pipeline sets ``output_dir`` (``<output_dir>/harvest`` or ``/hierarchical``) and ``seed`` itself.

        Raises:
            ValueError: ``[section]: ...`` naming the key that is unknown, missing or has a bad value.

        """
        if self.harvest is not None:
            from longmagpie.harvest.config import HarvestConfig

            return _section_config("harvest", HarvestConfig, self.harvest, self.output_dir, self.seed)
        if self.hierarchical is not None:
            from longmagpie.hierarchical.config import HierarchicalConfig

            return _section_config("hierarchical", HierarchicalConfig, self.hierarchical, self.output_dir, self.seed)
        return None

    def targets(self) -> list[int | None]:
        """Return the packed datasets this pipeline makes: each hierarchical target, or one (``None``)."""
        config = self.generation_config() if self.hierarchical is not None else None
        return [None] if config is None else list(config.targets)  # type: ignore[attr-defined]


def _section_config(
    section: str, cls: type[Any], settings: dict[str, Any], output_dir: str, seed: int, folder: str | None = None
) -> Any:
    """Build ``cls`` from a ``pipeline.toml`` section, in ``output_dir/<folder or section>``, with the run's seed."""
    fields = {**settings, "output_dir": str(Path(output_dir) / (folder or section)), "seed": seed}
    try:
        check_settings(cls, fields)
        missing = [
            f.name
            for f in dataclasses.fields(cls)
            if f.name not in fields and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise ValueError(f"missing setting(s) {', '.join(missing)}")
        return cls(**fields)
    except (TypeError, ValueError) as err:
        raise ValueError(f"[{section}]: {err}") from None


def load_config(path: Path) -> PipelineConfig:
    """Read and validate ``path``; errors name the key and say what is wrong."""
    try:
        raw = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist") from None
    except tomllib.TOMLDecodeError as err:
        raise ValueError(f"{path} is not valid TOML: {err}") from err
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as err:
        lines = [
            f"  {'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}"
            + (f" (got {e['input']!r})" if e["type"] != "missing" and not isinstance(e["input"], dict) else "")
            for e in err.errors()
        ]
        raise ValueError(f"{path} has {len(lines)} problem(s):\n" + "\n".join(lines)) from None


def _result_settings(section: dict[str, Any]) -> dict[str, Any]:
    """Return the settings of a generation section that shape its results.

    The stage hash leaves out how the work ran (engine, server, key, concurrency), so a stage resumes on another
    server and no credential enters a marker.
    """
    return {k: v for k, v in section.items() if k not in EXECUTION_ENGINE_FIELDS}


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


@contextmanager
def _ray(address: str | None, num_cpus: int | None) -> Iterator[Any]:
    """``longmagpie.distributed.ray`` inside its :func:`~longmagpie.distributed.ray.ray_session`."""
    import longmagpie.distributed.ray as ray_mod

    with ray_mod.ray_session(address, num_cpus):
        yield ray_mod


def _read_dir(path: Path) -> Any:
    import pyarrow.dataset as ds

    return ds.dataset(str(path), format="parquet").to_table()


class _Run:
    """One run of a pipeline: the output directory, the chain of stage hashes and each stage's status."""

    def __init__(self, config: PipelineConfig, echo: Callable[[str], None]) -> None:
        import longmagpie
        from longmagpie.io.files import write_bytes_atomic

        self.config, self.echo = config, echo
        self.out = Path(config.output_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        resolved = redact(config.model_dump(mode="json"))  # no credential on disk (an api_key in [harvest])
        write_bytes_atomic(self.out / "pipeline.resolved.json", json.dumps(resolved, indent=1, sort_keys=True).encode())
        self.status: dict[str, str] = {}
        self.chain = _hash({"version": longmagpie.__version__, "tokenizer": config.tokenizer, "seed": config.seed})
        self.targets = config.targets()

    def stage(self, name: str, settings: Any, work: Callable[[], None]) -> None:
        """Run ``work`` unless ``name``'s marker holds this chain's hash (the settings and every stage before)."""
        from longmagpie.io.files import write_bytes_atomic

        self.chain = _hash([self.chain, name, settings])
        marker = self.out / f"{name}.done.json"
        if marker.is_file() and json.loads(marker.read_text()).get("hash") == self.chain:
            self.echo(f"{name}: done earlier, skipped")
            self.status[name] = "skipped"
            return
        marker.unlink(missing_ok=True)
        self.echo(f"{name}: running")
        work()
        write_bytes_atomic(marker, json.dumps({"hash": self.chain, "stage": name}).encode())
        self.status[name] = "done"

    def path(self, base: str, target: int | None, suffix: str = "") -> Path:
        """``out/<base><suffix>``, or ``out/<base>-<target><suffix>`` for a hierarchical target."""
        return self.out / (f"{base}{suffix}" if target is None else f"{base}-{target}{suffix}")

    def clear_packed(self) -> None:
        """Remove every packed output (a file, or the Ray engine's directory) before packing again."""
        for target in self.targets:
            self.path("packed", target, ".parquet").unlink(missing_ok=True)
            shutil.rmtree(self.path("packed", target), ignore_errors=True)


def run_pipeline(config: PipelineConfig, echo: Callable[[str], None] = print) -> dict[str, str]:
    """Run the stages that are not done yet; returns ``{stage: "done" | "skipped"}``.

    The stages, in order: [harvest] and [quality] and [assemble] (or [hierarchical]), then [pack] or [pmix], then
    [export]; each one a function below.
    """
    run = _Run(config, echo)
    if config.hierarchical is not None:
        sources = _hierarchical_stage(config, run.out, run.stage)
    else:
        sources = {None: _longmagpie_stages(config, run.out, run.stage)}
    if config.pmix is not None:
        _pmix_stage(run, config.pmix, sources)
    else:
        _pack_stage(run, config.pack or PackSection(), sources)
    _export_stage(run, config.export)
    return run.status


def _input_columns(source: Path) -> list[str]:
    import pyarrow.parquet as pq

    return [c for c in INPUT_COLUMNS if c in pq.read_schema(source).names]


def _pmix_stage(run: _Run, m: PmixSection, sources: dict[int | None, Path]) -> None:
    """[pmix]: each source mixed with the short pool at its own length, on one process or on Ray."""
    import pyarrow.parquet as pq

    import longmagpie
    from longmagpie.io.files import read_table, write_parquet_atomic

    config = run.config

    def pmix() -> None:
        run.clear_packed()
        for target, source in sources.items():
            options = m.model_dump(exclude={"short", "engine", "ray_address"})
            options["seq_len"] = target or m.seq_len
            log.info("p-mix of %s at %d tokens per row", source, options["seq_len"])
            if m.engine == "ray":
                with _ray(m.ray_address, config.num_threads) as ray_mod:
                    ray_mod.ray_pack_pmix_to_parquet(
                        [str(source)], m.short, run.path("packed", target), seed=config.seed, overwrite=True, **options
                    )
                continue
            long = pq.read_table(source, columns=_input_columns(source))
            short = read_table(m.short, INPUT_COLUMNS)
            packed = longmagpie.pack_pmix(long, short, seed=config.seed, num_threads=config.num_threads, **options)
            write_parquet_atomic(packed, run.path("packed", target, ".parquet"), overwrite=True)

    run.stage("pmix", m.model_dump(mode="json"), pmix)


def _pack_stage(run: _Run, p: PackSection, sources: dict[int | None, Path]) -> None:
    """[pack]: each source packed at its own length, on one process or on Ray."""
    import pyarrow.parquet as pq

    import longmagpie
    from longmagpie.io.files import write_parquet_atomic

    config = run.config

    def pack() -> None:
        run.clear_packed()
        for target, source in sources.items():
            options = p.model_dump(exclude={"engine", "ray_address"})
            options["seq_len"] = target or p.seq_len
            log.info("packing %s at %d tokens per row", source, options["seq_len"])
            if p.engine == "ray":
                with _ray(p.ray_address, config.num_threads) as ray_mod:
                    ray_mod.ray_pack_to_parquet([str(source)], run.path("packed", target), overwrite=True, **options)
                continue
            samples = pq.read_table(source, columns=_input_columns(source))
            packed = longmagpie.pack(samples, num_threads=config.num_threads, **options)
            write_parquet_atomic(packed, run.path("packed", target, ".parquet"), overwrite=True)

    run.stage("pack", p.model_dump(mode="json"), pack)


def _export_stage(run: _Run, e: ExportSection) -> None:
    """[export]: every packed output as a Hugging Face Parquet dataset or MDS, ``dataset[-<target>]/``."""
    import pyarrow.parquet as pq

    import longmagpie

    def export() -> None:
        for target in run.targets:
            ray_dir = run.path("packed", target) / "data"
            packed = (
                pq.read_table(run.path("packed", target, ".parquet")) if not ray_dir.is_dir() else _read_dir(ray_dir)
            )
            dest = run.path("dataset", target)
            if dest.exists():
                shutil.rmtree(dest)
            log.info("exporting %d rows to %s (%s)", packed.num_rows, dest, e.format)
            if e.format == "parquet":
                longmagpie.export_parquet(packed, dest, split=e.split)
            else:
                longmagpie.export_mds(packed, dest)

    run.stage("export", e.model_dump(mode="json"), export)


Stage = Callable[[str, Any, Callable[[], None]], None]


def _longmagpie_stages(config: PipelineConfig, out: Path, stage: Stage) -> Path:
    """Run [harvest] (if any) and [assemble]; return the assembled samples' file."""
    import longmagpie
    from longmagpie.io.files import read_table, write_parquet_atomic

    qa_path = out / "harvest"
    if config.harvest is not None:

        def harvest() -> None:
            from longmagpie.harvest import harvest as run_harvest

            run_harvest(config.generation_config())  # type: ignore[arg-type]

        stage("harvest", _result_settings(config.harvest), harvest)
    a = config.assemble

    def rows() -> Any:
        from longmagpie.harvest import read_harvest

        return read_table(a.samples) if a.samples else read_harvest(qa_path)

    quality_dir = out / "quality"
    if config.quality is not None:
        q = config.quality.config(config.seed, config.num_threads)

        def quality() -> None:
            from longmagpie.quality.stage import quality_files

            inputs = [str(x) for x in a.samples] if a.samples else [str(qa_path)]
            quality_files(inputs, quality_dir, q, overwrite=True, as_directory=True)

        settings = config.quality.model_dump(mode="json", exclude={"judge"})
        settings["decontaminate_sha256"] = [_file_hash(f) for f in config.quality.decontaminate]
        stage("quality", settings, quality)
    judge_config = config.judge_config()
    if judge_config is not None:

        def judge() -> None:
            from longmagpie.quality.judge import judge as run_judge

            run_judge(judge_config, replace_other=True)  # the stage reruns: an earlier stage or a setting changed

        stage("judge", _result_settings(config.quality.judge or {}), judge)  # type: ignore[union-attr]

    def assemble() -> None:
        from longmagpie.quality.stage import KEPT_FILE

        if judge_config is not None:
            from longmagpie.quality.judge import judged_rows

            samples = judged_rows(judge_config.output_dir)
        elif config.quality is not None:
            samples = read_table([str(quality_dir / KEPT_FILE)])
        else:
            samples = rows()
        if not a.samples or config.quality is not None:
            wanted = ["doc_id", "context", "query", "answer", "id"]
            samples = samples.select([c for c in wanted if c in samples.column_names])
        options = a.model_dump(exclude={"samples", "documents", "distractors"})
        if a.num_distractors is not None:
            options["target_tokens"] = None
        table = longmagpie.assemble(
            samples,
            config.tokenizer,
            documents=read_table(a.documents) if a.documents else None,
            distractors=read_table(a.distractors) if a.distractors else None,
            seed=config.seed,
            num_threads=config.num_threads,
            **options,
        )
        write_parquet_atomic(table, out / "assembled.parquet", overwrite=True)

    stage("assemble", a.model_dump(mode="json"), assemble)
    return out / "assembled.parquet"


def _file_hash(path: str) -> str | None:
    """SHA-256 of a file's bytes (``None`` if it is missing: the stage then names it)."""
    p = Path(path)
    return hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None


def _hierarchical_stage(config: PipelineConfig, out: Path, stage: Stage) -> dict[int | None, Path]:
    """Run [hierarchical]; return each target's conversations file."""
    hier_dir = out / "hierarchical"

    def hierarchical() -> None:
        from longmagpie.hierarchical import synthesize

        report = synthesize(config.generation_config())  # type: ignore[arg-type]
        empty = [t.target for t in report.targets if t.conversations == 0]
        if empty:
            raise ValueError(
                f"[hierarchical]: no conversation reached target(s) {empty}: give more documents, lower the "
                "targets or min_fill"
            )

    stage("hierarchical", _result_settings(config.hierarchical or {}), hierarchical)
    return {t: hier_dir / f"target-{t}.parquet" for t in config.targets()}
