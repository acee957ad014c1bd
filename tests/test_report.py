"""The `longmagpie stats` report: what it finds, what it plots, and that a browser renders it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support import make_samples
from typer.testing import CliRunner

import longmagpie
from longmagpie.cli import app
from longmagpie.report import summarize

runner = CliRunner()


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    samples = longmagpie.synthetic_samples(300_000, seed=1)
    pq.write_table(samples, tmp_path / "samples.parquet")
    pq.write_table(longmagpie.pack(samples, seq_len=8192, overflow="truncate"), tmp_path / "packed.parquet")
    long = make_samples([3000, 5000, 7000, 2000] * 10)
    short = make_samples([300, 500, 200, 800] * 40)
    pq.write_table(longmagpie.pack_pmix(long, short, seq_len=8192, seed=0), tmp_path / "pmix.parquet")
    harvest = tmp_path / "harvest"
    harvest.mkdir()
    pq.write_table(pa.table({"context": ["d"], "query": ["q?"], "answer": ["a"]}), harvest / "shard-00000.parquet")
    (harvest / "shard-00000.done.json").write_text(
        '{"counts": {"rows": 1, "query_no_question_mark": 3, "doc_empty": 2}}'
    )
    return tmp_path


def test_summary_counts_what_each_stage_wrote(run_dir: Path) -> None:
    s = summarize([run_dir])
    packed = pq.read_table(run_dir / "packed.parquet")
    pmix = pq.read_table(run_dir / "pmix.parquet")
    # Packed and p-mixed rows are separate stages with separate totals.
    assert s.totals["packed rows"] == packed.num_rows
    assert s.totals["packed tokens"] == longmagpie.pack_stats(packed).output_tokens
    assert s.totals["p-mixed rows"] == pmix.num_rows == longmagpie.pmix_stats(pmix).rows
    assert s.totals["p-mixed tokens"] == sum(pmix.column("length").to_pylist())
    assert s.stages["packed"].rows == packed.num_rows and s.stages["pmix"].rows == pmix.num_rows
    assert s.totals["input tokens"] == longmagpie.pack_stats(packed).input_tokens
    assert s.totals["harvested rows"] == 1
    assert s.harvest_counts["query_no_question_mark"] == 3
    assert set(s.kinds) == {"long", "short"}
    fills = [f for arr in s.row_fill for f in arr]
    assert 0 < min(fills) and max(fills) <= 1.0
    for stage in s.stages.values():
        assert all(0 < f <= 1.0 for arr in stage.row_fill for f in arr)
    assert sum(len(a) for a in s.stages["pmix"].docs_per_row) == pmix.num_rows


@pytest.mark.browser
def test_stats_html_renders_in_headless_chromium(run_dir: Path, tmp_path: Path) -> None:
    report = tmp_path / "out" / "report.html"
    result = runner.invoke(app, ["stats", str(run_dir), "-o", str(report)])
    assert result.exit_code == 0, result.output
    text = report.read_text()
    titles = ("Sample lengths before packing", "Row fill", "Documents per row", "Long/short share", "Harvest")
    for title in (*titles, "Sample rows", "Harvest quality", "Packing stages", "Question openers"):
        assert title in text, title
    # 6 run plots (lengths, fill, documents per row, document lengths, long/short, rejections) and 3 of the
    # harvest (query and answer lengths, openers; its one question "q?" has no content words to ground).
    assert text.count("data:image/png;base64,") == 9
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("LONGMAGPIE_WHEEL"):
            pytest.fail("CI must have Debian's chromium (scripts/test.sh installs it)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--screenshot={shot}",
            "--window-size=1000,2400",
            report.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    from PIL import Image

    image = Image.open(shot).convert("L")
    assert image.size == (1000, 2400)
    # The plots are drawn: many distinct grey levels, not a blank page.
    assert len(set(image.tobytes())) > 20


def test_stats_bad_input(tmp_path: Path) -> None:
    result = runner.invoke(app, ["stats", str(tmp_path / "missing")])
    assert result.exit_code != 0 and "does not exist" in result.output
    (tmp_path / "bad.parquet").write_text("not parquet")
    result = runner.invoke(app, ["stats", str(tmp_path / "bad.parquet"), "-o", str(tmp_path / "r.html")])
    assert result.exit_code != 0 and "bad.parquet" in result.output
