"""Every code snippet of README.md and docs/**/*.md runs, page by page, against the installed package.

Each page's ```python blocks run in order in one namespace, in a fresh temporary directory (the working
directory), in a child process of their own (so an engine or a Ray cluster a page starts ends with it); its
```bash blocks that start with ``longmagpie `` run there too, in page order, with ``longmagpie`` meaning this
interpreter's ``python -m longmagpie``. An HTML comment on the line before a block says what it needs:

- ``<!-- snippet: vllm -->``, ``<!-- snippet: ray -->``: runs when the package imports (test marked ``vllm`` / ``ray``);
- ``<!-- snippet: s3 -->``: runs against moto's S3 server started for it, bucket ``my-bucket`` (marked ``s3``);
- ``<!-- snippet: requires datasets, torch -->``: runs when those modules import;
- ``<!-- snippet: skip REASON -->``: never runs (the reason is required);
- ``<!-- snippet: file NAME -->``: the block (any language) is written to ``NAME`` instead of run.

Several go in one comment, separated by ``;``. A page's blocks without a gate run in one test (a block whose module
is missing is left out, and the test then skips saying so); the blocks of a gate run in a test of their own, after
the page's blocks with fewer gates (so they may use what plain blocks made; plain blocks never depend on them).
Every ``longmagpie`` command line of every bash block, run or not, is also parsed by the command's own parser, so a
skipped one still cannot name an option that does not exist.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from support import require
from support.s3 import S3Server

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[\w+-]*)")
DIRECTIVE = re.compile(r"^\s*<!--\s*snippet:\s*(?P<body>.*?)\s*-->\s*$")
#: Gates: what a block needs, and the modules that must import for it to run.
GATES = {"vllm": ("vllm",), "ray": ("ray",), "s3": ("moto", "flask_cors")}
#: Seconds a page may take (a vLLM page starts an engine and generates on the CPU).
TIMEOUT = {"plain": 900, "vllm": 2400}

#: Runs in the child process: reads {"blocks": [...]} on stdin and runs them in order, in one namespace.
RUNNER = r"""
import json, subprocess, sys, time, traceback
job = json.load(sys.stdin)
namespace = {"__name__": "__main__"}
for block in job["blocks"]:
    where = f"{job['page']}:{block['line']}"
    print(f"--- {where} ({block['kind']})", flush=True)
    start = time.perf_counter()
    try:
        if block["kind"] == "python":
            exec(compile("\n" * block["line"] + block["code"], job["page"], "exec"), namespace)
        elif block["kind"] == "bash":
            subprocess.run(["bash", "-euo", "pipefail", "-c", block["code"]], check=True)
        else:
            with open(block["file"], "w") as fh:
                fh.write(block["code"])
    except BaseException:
        traceback.print_exc()
        print(f"FAILED: the {block['kind']} block at {where}", flush=True)
        sys.exit(1)
    print(f"    {time.perf_counter() - start:.1f} s", flush=True)
"""


@dataclass
class Block:
    """One fenced block of a page that the test runs (or writes, or parses)."""

    page: Path
    line: int  # 1-based line of the opening fence
    info: str
    code: str
    gates: frozenset[str] = frozenset()
    modules: tuple[str, ...] = ()
    skip: str | None = None
    file: str | None = None

    @property
    def kind(self) -> str:
        """``python``, ``bash`` (a ``longmagpie`` command block), ``file``, or ``""`` (not run)."""
        if self.file:
            return "file"
        if self.info == "python":
            return "python"
        if self.info in ("bash", "sh", "shell") and self.code.lstrip().startswith("longmagpie "):
            return "bash"
        return ""


def _directive(page: Path, line: int, body: str, block: Block) -> None:
    """Apply ``<!-- snippet: ... -->`` to ``block``; unknown or incomplete directives fail the collection."""
    for part in filter(None, (p.strip() for p in body.split(";"))):
        word, _, rest = part.partition(" ")
        rest = rest.strip()
        if word in GATES and not rest:
            block.gates |= {word}
        elif word == "requires" and rest:
            block.modules += tuple(m.strip() for m in rest.split(",") if m.strip())
        elif word == "skip" and rest:
            block.skip = rest
        elif word == "file" and rest:
            block.file = rest
        else:
            raise ValueError(f"{page.relative_to(ROOT)}:{line}: unknown snippet directive {part!r}")


def blocks_of(page: Path) -> list[Block]:
    """The fenced blocks of ``page`` with their directives, in page order."""
    lines = page.read_text().splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        fence, start = match.group("fence"), i
        body: list[str] = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i][len(match.group("indent")) :])
            i += 1
        block = Block(page, start + 1, match.group("info"), "\n".join(body) + "\n")
        prev = start - 1
        while prev >= 0 and not lines[prev].strip():
            prev -= 1
        directive = DIRECTIVE.match(lines[prev]) if prev >= 0 else None
        if directive:
            _directive(page, prev + 1, directive.group("body"), block)
            if not block.kind:
                raise ValueError(
                    f"{page.relative_to(ROOT)}:{start + 1}: a snippet directive on a block that never runs"
                )
        out.append(block)
        i += 1
    return out


def _jobs() -> Iterator[object]:
    """One test per page and gate set: its blocks with those gates, and before them the blocks with fewer gates."""
    for page in PAGES:
        runnable = [b for b in blocks_of(page) if b.kind and b.skip is None]
        for gates in sorted({b.gates for b in runnable}, key=sorted):
            last = max(i for i, b in enumerate(runnable) if b.gates == gates)
            chosen = [b for b in runnable[: last + 1] if b.gates <= gates]
            marks = [getattr(pytest.mark, g) for g in sorted(gates)]
            if "vllm" in gates:  # the vLLM pages run SmolLM2: in the real-model tier's process, on its model
                marks.append(pytest.mark.real_model)
            label = "+".join(sorted(gates)) or "plain"
            yield pytest.param(chosen, gates, id=f"{page.relative_to(ROOT)}[{label}]", marks=marks)


@pytest.fixture(scope="session")
def shim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory with a ``longmagpie`` that runs this interpreter's ``python -m longmagpie``."""
    bin_dir = tmp_path_factory.mktemp("bin")
    script = bin_dir / "longmagpie"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m longmagpie "$@"\n')
    script.chmod(0o755)
    return bin_dir


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def s3_env(s3: S3Server) -> dict[str, str]:
    """The environment that points at the shared S3 server (tests/conftest.py), with a bucket ``my-bucket``."""
    import pyarrow.fs as pafs

    if s3.fs.get_file_info("my-bucket").type == pafs.FileType.NotFound:
        s3.fs.create_dir("my-bucket")
    names = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL")
    return {k: os.environ[k] for k in names}


@pytest.mark.parametrize(("blocks", "gates"), list(_jobs()))
def test_snippets(
    blocks: list[Block],
    gates: frozenset[str],
    tmp_path: Path,
    shim: Path,
    request: pytest.FixtureRequest,
) -> None:
    page = blocks[0].page.relative_to(ROOT)
    for module in ("tokenizers", "transformers", "jinja2"):  # every page tokenizes with the hf extra
        require(module)
    for module in sorted({m for g in gates for m in GATES[g]}):  # looked up, not imported: flask (moto's server)
        if importlib.util.find_spec(module) is None:  # in this process breaks vLLM's start-up in later tests
            pytest.skip(f"{page}: needs {module}")
    # A block that needs a missing optional module is left out (later blocks never depend on it); the test then
    # reports a skip naming it once the other blocks have passed.
    missing = {m for b in blocks for m in b.modules if importlib.util.find_spec(m) is None}
    left_out = [b for b in blocks if missing & set(b.modules)]
    blocks = [b for b in blocks if b not in left_out]
    if not blocks:
        pytest.skip(f"{page}: every block needs a missing module ({', '.join(sorted(missing))})")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(
        PATH=f"{shim}{os.pathsep}{env.get('PATH', '')}",
        MPLBACKEND="Agg",
        TOKENIZERS_PARALLELISM="false",
        VLLM_ENABLE_V1_MULTIPROCESSING="0",
    )
    if "vllm" in gates:  # the model the tier built (LONGMAGPIE_CACHE), so the page's build_smollm2 reuses it
        request.getfixturevalue("smollm2_dir")
        env["LONGMAGPIE_CACHE"] = os.environ["LONGMAGPIE_CACHE"]
    elif os.environ.get("LONGMAGPIE_TEST_MODELS"):
        env["LONGMAGPIE_CACHE"] = os.environ["LONGMAGPIE_TEST_MODELS"]
    if "s3" in gates:
        env.update(request.getfixturevalue("s3_env"))
    job = {
        "page": str(blocks[0].page),
        "blocks": [{"kind": b.kind, "code": b.code, "line": b.line, "file": b.file} for b in blocks],
    }
    workdir = tmp_path / "work"
    workdir.mkdir()
    try:
        done = subprocess.run(
            [sys.executable, "-c", RUNNER],
            input=json.dumps(job),
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT["vllm" if "vllm" in gates else "plain"],
            check=False,
        )
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"{page}: the snippets ran past {err.timeout} s:\n{err.stdout}\n{err.stderr}")
    if done.returncode != 0:
        pytest.fail(f"{page}: a snippet failed\n--- stdout\n{done.stdout[-8000:]}\n--- stderr\n{done.stderr[-8000:]}")
    if left_out:
        lines = ", ".join(f"{b.line} ({', '.join(sorted(missing & set(b.modules)))})" for b in left_out)
        pytest.skip(f"{page}: the other blocks passed; not run for want of a module: the blocks at lines {lines}")


def _command_lines(code: str) -> Iterator[list[str]]:
    """The ``longmagpie`` commands of a bash block, continuation lines joined, cut at shell operators."""
    for line in code.replace("\\\n", " ").splitlines():
        if line.strip().startswith("longmagpie "):
            words = shlex.split(line, comments=True)
            cut = next((i for i, w in enumerate(words) if w in {"|", "&&", "||", ";", ">", ">>"}), len(words))
            yield words[1:cut]


COMMANDS = [
    pytest.param(args, id=f"{b.page.relative_to(ROOT)}:{b.line}:{' '.join(args[:2])}")
    for page in PAGES
    for b in blocks_of(page)
    if b.info in ("bash", "sh", "shell")
    for args in _command_lines(b.code)
]


@pytest.mark.parametrize("args", COMMANDS)
def test_command_lines_parse(args: list[str]) -> None:
    """Each documented ``longmagpie`` command names a command and options that exist, with valid values."""
    import typer

    from longmagpie.cli import app

    command = typer.main.get_command(app)
    names = ["longmagpie"]
    rest = list(args)
    while hasattr(command, "commands") and rest and rest[0] in command.commands:
        names.append(rest[0])
        command = command.commands[rest.pop(0)]
    assert not hasattr(command, "commands"), f"`{' '.join(args)}` names no command of {' '.join(names)}"
    command.make_context(" ".join(names), rest)  # raises a usage error for an unknown option or a bad value
