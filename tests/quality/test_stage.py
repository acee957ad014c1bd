"""The quality stage end to end: the API, `longmagpie quality` and `[quality]` in `longmagpie run`: planted
near-duplicates and contaminated rows removed with their reasons, distinct rows kept in order, same bytes for the
same input and seed, bad input named before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from longmagpie.cli import app
from longmagpie.quality import INPUT_ROW, QualityConfig, quality

runner = CliRunner()

EVAL_QUESTION = "Which of the following best describes the primary function of the mitochondria in eukaryotic cells"
QUESTIONS = [
    "What does the report say about the cause of the flood in the northern valley last spring?",
    "Which two committees reviewed the budget proposal before the final vote was taken?",
    "How did the author describe the relationship between the glacier and the river delta?",
    "Why were the harbor workers opposed to the new shipping schedule announced in March?",
    "Summarize the argument the second chapter makes about water rights in the region.",
]


def harvest_rows() -> pa.Table:
    """Distinct rows, planted near-duplicates of two of them, and a contaminated row."""
    queries = [
        *QUESTIONS,
        QUESTIONS[0].upper(),  # 5: near-dup of 0
        QUESTIONS[2] + " Please answer briefly.",  # 6: near-dup of 2
        f"{EVAL_QUESTION}?",  # 7: contaminated
    ]
    n = len(queries)
    return pa.table(
        {
            "id": [f"r{i}" for i in range(n)],
            "doc_id": [f"d{i % 3}" for i in range(n)],
            "context": [f"Document {i % 3} about rivers, budgets and glaciers." * 20 for i in range(n)],
            "query": queries,
            "answer": [f"An answer about topic {i}." for i in range(n)],
        }
    )


def plain(detect_language: bool = False, **kwargs: object) -> QualityConfig:
    return QualityConfig(detect_language=detect_language, **kwargs)  # type: ignore[arg-type]


def test_near_duplicates_and_contamination_are_removed_with_their_reasons(tmp_path: Path) -> None:
    evals = tmp_path / "eval.jsonl"
    evals.write_text(json.dumps({"question": EVAL_QUESTION}) + "\n")
    result = quality(harvest_rows(), plain(decontaminate=(str(evals),)))
    assert result.kept.column(INPUT_ROW).to_pylist() == [0, 1, 2, 3, 4]  # distinct rows kept, in input order
    removed = result.removed
    # ordered by step (decontamination before near-duplicates), then by input row
    assert removed.column(INPUT_ROW).to_pylist() == [7, 5, 6]
    assert removed.column("reason").to_pylist() == ["decontaminated:eval.jsonl", "near_duplicate", "near_duplicate"]
    assert removed.column("dup_of").to_pylist() == [None, 0, 2]
    assert removed.column("eval_file").to_pylist()[0] == str(evals)
    r = result.report
    assert (r["input_rows"], r["output_rows"]) == (8, 5)
    assert r["removed"] == {"decontaminated:eval.jsonl": 1, "near_duplicate": 2}
    assert r["decontamination"]["files"][0]["rows_removed"] == 1
    assert r["near_dedup"]["clusters"] == 2 and r["near_dedup"]["index_bytes"] > 0
    meta = json.loads(result.kept.schema.metadata[b"longmagpie"])
    assert meta["op"] == "quality" and meta["stats"]["removed"] == r["removed"]
    assert "query_form" in result.kept.column_names and "context_bucket" in result.kept.column_names


def test_same_input_and_seed_give_the_same_bytes(tmp_path: Path) -> None:
    def run(out: Path) -> bytes:
        result = quality(harvest_rows(), plain(batch_rows=3, seed=4))
        pq.write_table(result.kept, out)
        return out.read_bytes()

    assert run(tmp_path / "a.parquet") == run(tmp_path / "b.parquet")
    one = quality(harvest_rows(), plain(batch_rows=1, num_threads=1)).kept
    assert one.equals(quality(harvest_rows(), plain(batch_rows=100, num_threads=2)).kept)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"threshold": 0.0}, r"threshold must be in \(0, 1\]"),
        ({"threshold": 1.01}, r"threshold must be in \(0, 1\]"),
        ({"max_share": 0}, r"max_share must be in \(0, 1\]"),
        ({"balance_by": "length"}, "balance_by must be"),
        ({"ngram": 0}, "ngram must be a positive int"),
    ],
)
def test_bad_options_are_named(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        plain(**kwargs)


def test_a_missing_column_is_named_before_anything_is_filtered() -> None:
    with pytest.raises(ValueError, match=r"the input has no column 'question' \(columns: id, doc_id"):
        quality(harvest_rows(), plain(column="question"))


def test_the_command_writes_kept_and_removed_rows(tmp_path: Path) -> None:
    src = tmp_path / "rows.parquet"
    pq.write_table(harvest_rows(), src)
    out, removed = tmp_path / "kept.parquet", tmp_path / "removed.parquet"
    result = runner.invoke(
        app, ["quality", str(src), "-o", str(out), "--removed", str(removed), "--no-detect-language"]
    )
    assert result.exit_code == 0, result.output
    assert "kept       6 of 8 rows" in result.output and "removed    2 near_duplicate" in result.output
    assert pq.read_table(out).num_rows == 6 and pq.read_table(removed).column("reason").to_pylist() == [
        "near_duplicate",
        "near_duplicate",
    ]


def test_the_command_refuses_bad_input_and_writes_nothing(tmp_path: Path) -> None:
    src = tmp_path / "rows.parquet"
    pq.write_table(harvest_rows(), src)
    out = tmp_path / "kept.parquet"
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    for args, message in [
        (["--decontaminate", str(empty)], "holds no text"),
        (["--threshold", "1.5"], "threshold must be in (0, 1]"),
        (["--column", "question"], "no column 'question'"),
    ]:
        result = runner.invoke(app, ["quality", str(src), "-o", str(out), "--no-detect-language", *args])
        assert result.exit_code == 1 and message in result.output, result.output
        assert not out.exists()


def test_a_harvest_directory_gives_a_directory(tmp_path: Path) -> None:
    from longmagpie.quality.stage import write_quality

    result = quality(harvest_rows(), plain())
    files = write_quality(result, tmp_path / "q", directory=True)
    assert sorted(p.name for p in (tmp_path / "q").iterdir()) == ["kept.parquet", "removed.parquet", "report.json"]
    assert json.loads(files[2].read_text())["output_rows"] == 6


def test_the_pipeline_runs_quality_between_harvest_rows_and_assembly(tmp_path: Path, qwen_tokenizer_dir: Path) -> None:
    """[quality] filters assemble.samples, resumes, and its removed rows never reach assembly."""
    pq.write_table(harvest_rows(), tmp_path / "qa.parquet")
    evals = tmp_path / "eval.txt"
    evals.write_text(EVAL_QUESTION + "\n")
    config = tmp_path / "pipeline.toml"
    out = tmp_path / "run"
    config.write_text(
        f"""output_dir = "{out}"
tokenizer = "{qwen_tokenizer_dir}"

[quality]
detect_language = false
decontaminate = ["{evals}"]

[assemble]
samples = ["{tmp_path / "qa.parquet"}"]
target_tokens = [200, 600]
max_tokens = 2048

[pack]
seq_len = 4096
"""
    )
    result = runner.invoke(app, ["run", str(config)])
    assert result.exit_code == 0, result.output
    assert "stages: quality done, assemble done, pack done, export done" in result.output
    report = json.loads((out / "quality" / "report.json").read_text())
    assert report["removed"] == {"decontaminated:eval.txt": 1, "near_duplicate": 2}
    assembled = pq.read_table(out / "assembled.parquet")
    assert longmagpie_stats(assembled)["samples"] == 5
    again = runner.invoke(app, ["run", str(config)])
    assert "stages: quality skipped, assemble skipped" in again.output
    evals.write_text(EVAL_QUESTION + "\nanother evaluation question that is long enough to be indexed here\n")
    third = runner.invoke(app, ["run", str(config)])  # a changed evaluation file redoes the stage
    assert "stages: quality done, assemble done" in third.output, third.output


def test_a_bad_quality_section_is_named_before_any_stage(tmp_path: Path, qwen_tokenizer_dir: Path) -> None:
    config = tmp_path / "pipeline.toml"
    config.write_text(
        f'output_dir = "{tmp_path / "run"}"\ntokenizer = "{qwen_tokenizer_dir}"\n[quality]\nthreshold = 2.0\n'
        f'[assemble]\nsamples = ["{tmp_path / "qa.parquet"}"]\n'
    )
    result = runner.invoke(app, ["run", str(config)])
    assert result.exit_code == 1 and "quality.threshold" in result.output, result.output
    assert not (tmp_path / "run").exists()


def longmagpie_stats(table: pa.Table) -> dict:
    import longmagpie

    return longmagpie.pack_metadata(table)["stats"]


def test_defaults_agree_across_the_api_the_command_and_pipeline_toml() -> None:
    import dataclasses

    import typer

    from longmagpie.cli.pipeline import QualitySection

    fields = {f.name: f.default for f in dataclasses.fields(QualityConfig) if f.default is not dataclasses.MISSING}
    toml = {
        k: f.default if f.default_factory is None else f.default_factory()
        for k, f in QualitySection.model_fields.items()
    }
    for k, v in toml.items():
        want = fields.get(k, v)
        assert (tuple(v) if isinstance(v, list) else v) == want, k
    assert set(fields) - set(toml) == {"seed", "num_threads", "batch_rows"}
    cli = {p.name: p.default for p in typer.main.get_command(app).commands["quality"].params}  # type: ignore[attr-defined]
    for name in (
        "column",
        "dedup",
        "threshold",
        "shingle",
        "ngram",
        "detect_language",
        "max_share",
        "balance_by",
        "seed",
    ):
        assert cli[name] == fields[name], name
    assert cli["threads"] == fields["num_threads"]


def test_stats_reports_the_quality_stage(tmp_path: Path) -> None:
    from longmagpie.quality.stage import write_quality
    from longmagpie.report import render_html, summarize

    write_quality(quality(harvest_rows(), plain()), tmp_path / "q", directory=True)
    s = summarize([tmp_path / "q"])
    assert s.totals["quality kept rows"] == 6 and s.totals["quality removed rows"] == 2
    assert s.totals["harvested rows"] == 6  # the removed rows are not counted as harvested
    page = render_html(s)
    assert "Quality stage" in page and "removed: near_duplicate" in page
    result = runner.invoke(app, ["stats", str(tmp_path / "q"), "-o", str(tmp_path / "r.html")])
    assert result.exit_code == 0 and "removed    2 near_duplicate" in result.output, result.output


def test_files_stream_to_the_same_rows_as_the_table(tmp_path: Path) -> None:
    """quality_files (batch by batch, over several files) writes what quality() returns, metadata included."""
    from longmagpie.quality.stage import quality_files

    extra = [f"What did chapter {n} say about the {w}?" for n, w in zip(range(6), "abcdef", strict=True)]
    rows = pa.concat_tables([harvest_rows(), harvest_rows().slice(0, 6).set_column(3, "query", pa.array(extra))])
    pq.write_table(rows.slice(0, 3), tmp_path / "a.parquet")
    pq.write_table(rows.slice(3), tmp_path / "b.parquet")
    evals = tmp_path / "eval.txt"
    evals.write_text(EVAL_QUESTION + "\n")
    cfg = plain(batch_rows=2, decontaminate=(str(evals),), max_share=0.4, shingle=1, threshold=0.95)
    want = quality(rows, cfg)
    report, files = quality_files(
        [str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")],
        tmp_path / "kept.parquet",
        cfg,
        removed=tmp_path / "removed.parquet",
    )
    kept = pq.read_table(files[0])
    assert kept.equals(want.kept) and kept.schema.metadata == want.kept.schema.metadata
    assert pq.read_table(files[1]).equals(want.removed)
    assert report == want.report and report["removed"].get("balance:what", 0) > 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["a.parquet", "b.parquet", "eval.txt", "kept.parquet", "removed.parquet"]
    with pytest.raises(FileExistsError, match=r"kept\.parquet exists"):
        quality_files([str(tmp_path / "a.parquet")], tmp_path / "kept.parquet", cfg)


def test_a_harvest_directory_streams_to_a_directory(tmp_path: Path) -> None:
    from longmagpie.generate.resume import MANIFEST
    from longmagpie.harvest.output import ROW_SCHEMA

    rows = harvest_rows()
    full = pa.table(
        {
            f.name: rows.column(f.name).cast(f.type) if f.name in rows.column_names else pa.nulls(rows.num_rows, f.type)
            for f in ROW_SCHEMA
        },
        schema=ROW_SCHEMA,
    )
    harvest = tmp_path / "harvest"
    harvest.mkdir()
    (harvest / MANIFEST).write_text("{}")
    for k, part in enumerate((full.slice(0, 4), full.slice(4))):
        pq.write_table(part, harvest / f"shard-{k:05d}.parquet")
        (harvest / f"shard-{k:05d}.done.json").write_text("{}")
    pq.write_table(full.slice(0, 1), harvest / "shard-00002.parquet")  # no marker: an unfinished shard, not read
    result = runner.invoke(app, ["quality", str(harvest), "-o", str(tmp_path / "q"), "--no-detect-language"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (tmp_path / "q").iterdir()) == ["kept.parquet", "removed.parquet", "report.json"]
    report = json.loads((tmp_path / "q" / "report.json").read_text())
    assert (report["input_rows"], report["output_rows"]) == (8, 6)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # the work directory is gone
