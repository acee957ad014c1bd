"""Input documents in shards: Parquet or JSONL files, a text column, fixed row ranges per shard.

Inputs are local paths or URIs of any filesystem :mod:`longmagpie.io.storage` resolves (``s3://``,
``gs://``, ``hf://``, ``memory://``, ...); local inputs keep their local code path.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Literal

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from longmagpie.io import storage

InputFormat = Literal["auto", "parquet", "jsonl"]
_SUFFIXES = {".parquet": "parquet", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl"}


@dataclass(frozen=True)
class InputFile:
    """One input file, its format and row count.

    ``path`` is a local ``Path``, or the file's URI (a ``str``) when ``location`` holds its filesystem.
    """

    path: Path | str
    format: Literal["parquet", "jsonl"]
    rows: int
    location: storage.Location | None = field(default=None, compare=False, repr=False)

    @property
    def name(self) -> str:
        """The file name (last path component)."""
        return self.path.name if isinstance(self.path, Path) else self.path.rstrip("/").rsplit("/", 1)[-1]

    def parquet_file(self) -> pq.ParquetFile:
        """Open the file for Parquet reading."""
        if self.location is None:
            return pq.ParquetFile(self.path)
        return pq.ParquetFile(self.location.path, filesystem=self.location.filesystem)

    def open_binary(self) -> BinaryIO:
        """Open the file for buffered binary reading (iterating gives lines)."""
        if self.location is None:
            return open(self.path, "rb")
        return storage.open_input(self.location)


@dataclass(frozen=True)
class Shard:
    """Rows ``[start, stop)`` of one input file, harvested and written as one unit."""

    index: int
    file: InputFile
    start: int
    stop: int

    @property
    def key(self) -> str:
        """The shard's output name."""
        return f"shard-{self.index:05d}"


@dataclass(frozen=True)
class Document:
    """A document read from a shard (``text`` is ``None`` when it was skipped; ``skip`` says why)."""

    row: int
    doc_id: str
    text: str | None
    skip: str | None = None


def resolve_inputs(inputs: Sequence[str | os.PathLike[str]], fmt: InputFormat = "auto") -> list[InputFile]:
    """List the input files in a fixed order (directories expand to their sorted ``.parquet``/``.jsonl`` files).

    Inputs are paths or URIs; a remote file keeps its URI as ``path``.

    Raises:
        FileNotFoundError: an input does not exist or a directory holds no input files.
        ValueError: a file's format cannot be told from its name (pass ``input_format``).

    """
    if not inputs:
        raise ValueError("no inputs given: pass Parquet or JSONL files or directories of them")
    files: list[Path | storage.Location] = []
    for item in inputs:
        local = storage.local_path(item)
        if local is None:
            files.extend(_remote_files(storage.resolve(item)))
            continue
        p = local
        if p.is_dir():
            found = [f.local for f in storage.list_files(p, tuple(_SUFFIXES)) if f.local is not None]
            if not found:
                raise FileNotFoundError(f"input directory {p} holds no .parquet or .jsonl files")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"input {p} does not exist")
    out = []
    for f in files:
        suffix = f.suffix if isinstance(f, Path) else PurePosixPath(f.name).suffix
        kind = fmt if fmt != "auto" else _SUFFIXES.get(suffix)
        shown = f if isinstance(f, Path) else f.uri
        if kind is None:
            raise ValueError(f"cannot tell the format of {shown} from its name: pass input_format='parquet' or 'jsonl'")
        entry = InputFile(f.resolve(), kind, 0) if isinstance(f, Path) else InputFile(f.uri, kind, 0, f)
        out.append(InputFile(entry.path, kind, _count_rows(entry, kind), entry.location))
    return out


def _remote_files(loc: storage.Location) -> list[storage.Location]:
    info = loc.filesystem.get_file_info(loc.path)
    if info.type == pafs.FileType.File:
        return [loc]
    if info.type == pafs.FileType.Directory:
        found = storage.list_files(loc, tuple(_SUFFIXES))
        if not found:
            raise FileNotFoundError(f"input directory {loc.uri} holds no .parquet or .jsonl files")
        return found
    raise FileNotFoundError(f"input {loc.uri} does not exist")


def _count_rows(f: InputFile, kind: str) -> int:
    if kind == "parquet":
        try:
            return f.parquet_file().metadata.num_rows
        except (pa.ArrowInvalid, OSError) as err:
            raise ValueError(f"cannot read {f.path} as Parquet: {err}") from err
    n = 0
    with f.open_binary() as fh:
        for line in fh:
            n += bool(line.strip())
    return n


def check_columns(files: Sequence[InputFile], text_column: str, id_column: str | None) -> None:
    """Check every Parquet file has the text (and id) column and it holds strings, before any work starts.

    Raises:
        ValueError: names the file, the missing column and the columns it has.

    """
    for f in files:
        if f.format != "parquet":
            continue
        schema = f.parquet_file().schema_arrow if f.location is not None else pq.read_schema(f.path)
        for col in (text_column, id_column):
            if col is not None and col not in schema.names:
                raise ValueError(
                    f"{f.path} has no column {col!r} (columns: {', '.join(schema.names)}); "
                    f"pass text_column=/id_column= naming the right one"
                )
        t = schema.field(text_column).type
        if not (
            pa.types.is_string(t)
            or pa.types.is_large_string(t)
            or pa.types.is_binary(t)
            or pa.types.is_large_binary(t)
            or pa.types.is_string_view(t)
        ):
            raise ValueError(f"{f.path}: column {text_column!r} is {t}, not text")


def plan_shards(files: Sequence[InputFile], shard_rows: int) -> list[Shard]:
    """Cut every file into consecutive ranges of ``shard_rows`` rows (files never share a shard)."""
    shards: list[Shard] = []
    for f in files:
        for start in range(0, f.rows, shard_rows):
            shards.append(Shard(len(shards), f, start, min(start + shard_rows, f.rows)))
    return shards


def content_id(text: str) -> str:
    """Derive a document id from its text: 16 hex characters of BLAKE2b."""
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def _document(row: int, value: object, raw_id: object, path: Path | str) -> Document:
    name = path.name if isinstance(path, Path) else path.rsplit("/", 1)[-1]
    if isinstance(value, (bytes, bytearray)):
        try:
            value = bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return Document(row, str(raw_id) if raw_id is not None else f"{name}:{row}", None, "doc_not_utf8")
    if value is None or (isinstance(value, str) and not value.strip()):
        return Document(row, str(raw_id) if raw_id is not None else f"{name}:{row}", None, "doc_empty")
    if not isinstance(value, str):
        raise ValueError(f"{path} row {row}: the text value is {type(value).__name__}, not a string")
    text = value.strip()
    return Document(row, str(raw_id) if raw_id is not None else content_id(text), text)


def read_shard(shard: Shard, text_column: str, id_column: str | None) -> list[Document]:
    """Read the documents of ``shard``: empty, null and non-UTF-8 texts come back with ``skip`` set.

    Raises:
        ValueError: a JSONL line is not a JSON object or lacks the text column (file and line named).

    """
    f = shard.file
    if f.format == "parquet":
        cols = [text_column] + ([id_column] if id_column else [])
        pf = f.parquet_file()
        out: list[Document] = []
        row = 0
        for batch in pf.iter_batches(batch_size=8192, columns=cols):
            n = batch.num_rows
            if row + n <= shard.start:
                row += n
                continue
            lo, hi = max(shard.start - row, 0), min(shard.stop - row, n)
            texts = batch.column(0).slice(lo, hi - lo).to_pylist()
            ids = batch.column(1).slice(lo, hi - lo).to_pylist() if id_column else [None] * (hi - lo)
            for k, (t, i) in enumerate(zip(texts, ids, strict=True)):
                out.append(_document(row + lo + k, t, i, f.path))
            row += n
            if row >= shard.stop:
                break
        return out
    return list(_read_jsonl(shard, text_column, id_column))


def _read_jsonl(shard: Shard, text_column: str, id_column: str | None) -> Iterator[Document]:
    path = shard.file.path
    name = shard.file.name
    row = -1
    with shard.file.open_binary() as fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            row += 1
            if row < shard.start:
                continue
            if row >= shard.stop:
                break
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                yield Document(row, f"{name}:{lineno}", None, "doc_not_utf8")
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path} line {lineno} is not valid JSON ({err}); fix or remove the line") from err
            if not isinstance(obj, dict) or text_column not in obj:
                keys = ", ".join(obj) if isinstance(obj, dict) else type(obj).__name__
                raise ValueError(
                    f"{path} line {lineno} has no {text_column!r} field (it has: {keys}); "
                    "pass text_column= naming the field that holds the document"
                )
            raw_id = obj.get(id_column) if id_column else None
            yield _document(row, obj[text_column], raw_id, path)
