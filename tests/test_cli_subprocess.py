"""The command line as users run it: a real process, its exit codes, stdout/stderr, progress bars and logs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

COMMANDS = ("harvest", "hierarchical", "assemble", "pack", "pmix", "export", "stats", "run", "demo")


def longmagpie_cmd() -> list[str]:
    """The installed console script when there is one (CI installs the wheel), else ``python -m longmagpie``."""
    exe = Path(sys.executable).parent / "longmagpie"
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "longmagpie"]


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "TQDM_MININTERVAL": "0"}
    return subprocess.run([*longmagpie_cmd(), *args], capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture
def qa_file(tmp_path: Path) -> Path:
    docs = [f"Document {i} is about subject {i}. " + "It goes on. " * (4 + i) for i in range(12)]
    path = tmp_path / "qa.parquet"
    pq.write_table(
        pa.table({"context": docs, "query": [f"What is {i} about?" for i in range(12)], "answer": ["Subjects."] * 12}),
        path,
    )
    return path


def test_every_subcommand_is_listed_and_has_help() -> None:
    top = cli("--help")
    assert top.returncode == 0, top.stderr
    for name in COMMANDS:
        assert name in top.stdout
    for name in ("assemble", "run"):
        sub = cli(name, "--help")
        assert sub.returncode == 0 and "--quiet" in sub.stdout and "--verbose" in sub.stdout
    unknown = cli("packk")
    assert unknown.returncode == 2 and "No such command" in unknown.stderr


@pytest.mark.slow
def test_progress_bar_quiet_and_verbose(tmp_path: Path, qa_file: Path, qwen_tokenizer_dir: Path) -> None:
    base = ["assemble", str(qa_file), "--tokenizer", str(qwen_tokenizer_dir), "--min-target", "100"]
    base += ["--max-target", "400", "--max-tokens", "1024"]
    plain = cli(*base, "-o", str(tmp_path / "a.parquet"))
    assert plain.returncode == 0, plain.stderr
    assert "assemble: 100%" in plain.stderr and "12/12" in plain.stderr  # the tqdm bar over samples
    assert "assembled 12 of 12 samples" in plain.stdout
    assert "INFO" not in plain.stderr

    quiet = cli(*base, "-o", str(tmp_path / "b.parquet"), "--quiet")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout == "" and quiet.stderr == ""

    verbose = cli(*base, "-o", str(tmp_path / "c.parquet"), "-v")
    assert verbose.returncode == 0, verbose.stderr
    assert "INFO    longmagpie.assembly.assembler: assembled 12 of 12 samples" in verbose.stderr
    assert "DEBUG" not in verbose.stderr
    # the three runs wrote the same bytes: bars and logs change nothing
    assert pq.read_table(tmp_path / "a.parquet").equals(pq.read_table(tmp_path / "c.parquet"))


def test_bad_config_exit_code_and_message(tmp_path: Path, qa_file: Path) -> None:
    config = tmp_path / "pipeline.toml"
    config.write_text(f'output_dir = "{tmp_path / "run"}"\ntokenizer = "t"\n[assemble]\nsamples = ["{qa_file}"]\n')
    config.write_text(config.read_text() + "max_tokens = 'many'\n[pack]\nseq_lenn = 3\n")
    result = cli("run", str(config))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "assemble.max_tokens" in result.stderr and "pack.seq_lenn" in result.stderr
    missing = cli("run", str(tmp_path / "nope.toml"))
    assert missing.returncode == 1 and "nope.toml does not exist" in missing.stderr


def pipeline(tmp_path: Path, out: Path, qa_file: Path, tokenizer: Path) -> Path:
    config = tmp_path / f"{out.name}.toml"
    config.write_text(
        f"""output_dir = "{out}"
tokenizer = "{tokenizer}"
seed = 11
[assemble]
samples = ["{qa_file}"]
target_tokens = [100, 400]
max_tokens = 1024
[pack]
seq_len = 2048
"""
    )
    return config


@pytest.mark.slow
def test_run_killed_then_resumed_equals_an_uninterrupted_run(
    tmp_path: Path, qa_file: Path, qwen_tokenizer_dir: Path
) -> None:
    whole = tmp_path / "whole"
    done = cli("run", str(pipeline(tmp_path, whole, qa_file, qwen_tokenizer_dir)), "-q")
    assert done.returncode == 0, done.stderr

    killed = tmp_path / "killed"
    config = pipeline(tmp_path, killed, qa_file, qwen_tokenizer_dir)
    proc = subprocess.Popen([*longmagpie_cmd(), "run", str(config), "-q"], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not (killed / "assemble.done.json").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)  # somewhere after the assemble stage: in pack, export, or already done
    proc.wait(timeout=60)
    resumed = cli("run", str(config))
    assert resumed.returncode == 0, resumed.stderr
    assert "assemble skipped" in resumed.stdout
    for rel in ("assembled.parquet", "packed.parquet"):
        assert (killed / rel).read_bytes() == (whole / rel).read_bytes(), rel
    shards = sorted(p.relative_to(whole) for p in (whole / "dataset").rglob("*") if p.is_file())
    assert shards == sorted(p.relative_to(killed) for p in (killed / "dataset").rglob("*") if p.is_file())
    for rel in shards:
        if rel.suffix == ".parquet":
            assert pq.read_table(killed / rel).equals(pq.read_table(whole / rel))
