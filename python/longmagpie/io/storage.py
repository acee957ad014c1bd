"""Paths and URIs on any filesystem pyarrow or fsspec knows: resolve, list, check, and write atomically.

A *local* path (``/data/x.parquet``, ``x.parquet``, a ``pathlib.Path`` or ``file:///data/x.parquet``)
stays a :class:`pathlib.Path` and every caller keeps its local code path (temp file + fsync + rename).
Anything else with a scheme (``s3://bucket/key``, ``gs://``, ``abfs://``, ``hdfs://``, ``hf://``,
``memory://``, ...) is opened with :meth:`pyarrow.fs.FileSystem.from_uri` where pyarrow supports the
scheme, else with ``fsspec`` wrapped as ``pyarrow.fs.PyFileSystem(FSSpecHandler(fs))``. Credentials come
from the filesystem's own defaults (for S3: ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``/
``AWS_SESSION_TOKEN``, ``AWS_PROFILE``, ``AWS_REGION``, ``AWS_ENDPOINT_URL`` or URI options such as
``s3://bucket/key?endpoint_override=host:9000&scheme=http``).

Atomicity on object stores (no rename there): a single file is written to a hidden temporary key beside
the target (``.<name>.<random>.tmp``), closed, then moved onto the target (S3: one server-side
``CopyObject``, so a reader sees the whole old object or the whole new one, never part of one), and the
temporary key is deleted on failure. A directory (an exported dataset) is built under a hidden sibling
prefix and published only once everything in it was written; see :func:`staged_prefix`.
"""

from __future__ import annotations

import io
import os
import re
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote, urlsplit

import pyarrow as pa
import pyarrow.fs as pafs

PathArg = str | os.PathLike[str]

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
#: ``s3:/bucket/key``: what ``pathlib.Path("s3://bucket/key")`` makes of a URI.
_COLLAPSED = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]+):/(?!/)")


@dataclass(frozen=True)
class Location:
    """A resolved path: the filesystem, the path inside it, and the URI as the user wrote it.

    Attributes:
        filesystem: the ``pyarrow.fs.FileSystem`` holding the path.
        path: the path inside ``filesystem`` (``bucket/key`` for S3).
        uri: the path or URI as given (children: joined with ``/``), for messages and records.
        local: the ``pathlib.Path`` when the path is on the local disk, else ``None``.

    """

    filesystem: pafs.FileSystem = field(compare=False, repr=False)
    path: str
    uri: str
    local: Path | None = None

    @property
    def is_local(self) -> bool:
        """Whether the path is on the local disk (callers then use their ``pathlib`` code path)."""
        return self.local is not None

    @property
    def name(self) -> str:
        """The last component of the path."""
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    def child(self, relative: str) -> Location:
        """Return the location ``relative`` (``/``-separated) below this one."""
        rel = relative.strip("/")
        local = self.local / rel if self.local is not None else None
        return Location(self.filesystem, f"{self.path.rstrip('/')}/{rel}", f"{self.uri.rstrip('/')}/{rel}", local)

    def parent(self) -> str:
        """Return the path of the directory (or prefix) holding this one, inside ``filesystem``."""
        head, _, _ = self.path.rstrip("/").rpartition("/")
        return head


def is_remote(path: PathArg) -> bool:
    """Whether ``path`` is a URI with a scheme other than ``file://`` (a path on a non-local filesystem)."""
    if isinstance(path, os.PathLike):
        return False
    m = _SCHEME.match(path)
    return m is not None and m.group(1).lower() != "file"


def _check_not_collapsed(path: PathArg) -> None:
    text = os.fspath(path)
    m = _COLLAPSED.match(text)
    if m and len(m.group(1)) > 1:  # a single letter is a Windows drive ("C:/...")
        raise ValueError(
            f"{text!r} looks like a URI whose '//' was collapsed by pathlib.Path; pass URIs as str "
            f"(e.g. {m.group(1)}://{text[m.end() :]})"
        )


def local_path(path: PathArg) -> Path | None:
    """Return the ``pathlib.Path`` of a local path or ``file://`` URI; ``None`` for any other URI.

    Raises:
        ValueError: ``path`` is a ``Path`` made from a URI (``s3:/bucket`` after ``Path("s3://bucket")``).

    """
    if isinstance(path, os.PathLike):
        _check_not_collapsed(path)
        return Path(path)
    m = _SCHEME.match(path)
    if m is None:
        _check_not_collapsed(path)
        return Path(path)
    if m.group(1).lower() != "file":
        return None
    parts = urlsplit(path)
    if parts.netloc not in ("", "localhost"):
        raise ValueError(f"{path}: file:// URIs must name a local path (file:///abs/path), not host {parts.netloc!r}")
    return Path(unquote(parts.path))


def resolve(path: PathArg) -> Location:
    """Resolve a local path or a URI into a :class:`Location`.

    pyarrow's own filesystems are used where pyarrow supports the scheme (local, ``s3``, ``gs``,
    ``abfs``, ``hdfs``), else fsspec's (``memory``, ``hf``, ``az``, ``http``, any installed
    implementation), wrapped so that pyarrow reads and writes through it.

    Raises:
        ValueError: the scheme is known to neither pyarrow nor fsspec (install the fsspec
            implementation for it, e.g. ``s3fs``/``gcsfs``/``adlfs``), or a collapsed URI was given.

    """
    local = local_path(path)
    if local is not None:
        return Location(pafs.LocalFileSystem(), str(local.absolute()), os.fspath(path), local)
    uri = os.fspath(path)
    try:
        fs, inner = pafs.FileSystem.from_uri(uri)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as arrow_err:
        try:
            import fsspec
            from pyarrow.fs import FSSpecHandler, PyFileSystem
        except ImportError:
            raise ValueError(
                f"pyarrow cannot open {uri} ({arrow_err}); install fsspec (pip install 'longmagpie[remote]') "
                "for other schemes"
            ) from None
        try:
            fsspec_fs, inner = fsspec.core.url_to_fs(uri)
        except (ValueError, ImportError) as err:
            raise ValueError(
                f"no filesystem for {uri}: pyarrow says {arrow_err}; fsspec says {err} "
                "(install the fsspec implementation for this scheme)"
            ) from err
        fs = PyFileSystem(FSSpecHandler(fsspec_fs))
    return Location(fs, inner, uri)


def exists(path: PathArg | Location) -> bool:
    """Whether a file or directory exists at ``path``."""
    loc = path if isinstance(path, Location) else resolve(path)
    if loc.local is not None:
        return loc.local.exists()
    return loc.filesystem.get_file_info(loc.path).type != pafs.FileType.NotFound


def is_dir(path: PathArg | Location) -> bool:
    """Whether ``path`` is a directory (on an object store: a prefix holding objects)."""
    loc = path if isinstance(path, Location) else resolve(path)
    if loc.local is not None:
        return loc.local.is_dir()
    return loc.filesystem.get_file_info(loc.path).type == pafs.FileType.Directory


def makedirs(path: PathArg | Location) -> None:
    """Create the directory ``path`` and its parents (object stores: nothing to do, prefixes need no creation)."""
    loc = path if isinstance(path, Location) else resolve(path)
    if loc.local is not None:
        loc.local.mkdir(parents=True, exist_ok=True)
    elif _needs_directories(loc.filesystem):
        loc.filesystem.create_dir(loc.path, recursive=True)


def _needs_directories(fs: pafs.FileSystem) -> bool:
    """Whether writing a file needs its parent directory created first (not on object stores)."""
    return fs.type_name in ("local", "hdfs")


#: Path parts that hide a file below an input directory (what pyarrow's dataset discovery skips too): staging
#: directories and temporary files (``.shard-0.parquet.tmp``, Spark's ``_temporary/``, ``_SUCCESS``).
HIDDEN_PREFIXES = (".", "_")


def hidden(relative: str) -> bool:
    """Whether a path below an input directory (``/``-separated, relative to it) is hidden.

    It is when any part of it starts with ``.`` or ``_``.
    """
    return any(part.startswith(HIDDEN_PREFIXES) for part in relative.split("/"))


def list_files(path: PathArg | Location, suffixes: Sequence[str]) -> list[Location]:
    """Files under the directory ``path`` (recursively) whose names end in one of ``suffixes``, sorted by path.

    The one directory expander of every stage: hidden files (:func:`hidden`) are left out, locally and on object
    stores alike, so a directory reads the same whichever command reads it.

    Raises:
        FileNotFoundError: ``path`` is not a directory.

    """
    loc = path if isinstance(path, Location) else resolve(path)
    ends = tuple(suffixes)
    if loc.local is not None:
        if not loc.local.is_dir():
            raise FileNotFoundError(f"{loc.uri} is not a directory")
        found = sorted(
            f
            for f in loc.local.rglob("*")
            if f.name.endswith(ends) and not hidden(f.relative_to(loc.local).as_posix()) and f.is_file()
        )
        return [Location(loc.filesystem, str(f.absolute()), str(f), f) for f in found]
    if not is_dir(loc):
        raise FileNotFoundError(f"{loc.uri} is not a directory")
    base = loc.path.rstrip("/")
    infos = loc.filesystem.get_file_info(pafs.FileSelector(base, recursive=True))
    paths = sorted(
        i.path
        for i in infos
        if i.type == pafs.FileType.File and i.path.endswith(ends) and not hidden(i.path[len(base) + 1 :])
    )
    return [loc.child(p[len(base) + 1 :]) for p in paths]


def open_input(loc: Location) -> BinaryIO:
    """Open a file for buffered binary reading (iterating gives lines)."""
    if loc.local is not None:
        return open(loc.local, "rb")
    return io.BufferedReader(loc.filesystem.open_input_stream(loc.path), buffer_size=1 << 20)  # type: ignore[arg-type]


def _temporary_sibling(loc: Location, suffix: str) -> str:
    return f"{loc.parent()}/.{loc.name}.{uuid.uuid4().hex}{suffix}"


@contextmanager
def atomic_output(path: PathArg | Location, overwrite: bool = True) -> Iterator[pa.NativeFile]:
    """Yield a stream for ``path`` that becomes visible there whole, or not at all.

    Local files: a temporary file in the same directory, fsync, then ``os.replace``. Other
    filesystems: a hidden temporary key beside the target, closed, then moved onto the target (a
    single server-side copy on S3, which readers see whole). On an exception the temporary file or
    key is deleted and an earlier file at ``path`` is left as it was.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false.

    """
    loc = path if isinstance(path, Location) else resolve(path)
    if not overwrite and exists(loc):
        raise FileExistsError(f"{loc.uri} exists; pass --overwrite to replace it")
    if loc.local is not None:
        import tempfile

        loc.local.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{loc.local.name}.", suffix=".tmp", dir=loc.local.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                stream = pa.PythonFile(fh, mode="w")
                yield stream
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, loc.local)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return
    fs = loc.filesystem
    if _needs_directories(fs):
        fs.create_dir(loc.parent(), recursive=True)
    tmp = _temporary_sibling(loc, ".tmp")
    stream = fs.open_output_stream(tmp)
    try:
        yield stream
        stream.close()  # the upload completes here (S3: the last part and CompleteMultipartUpload)
        move(fs, tmp, loc.path)
    except BaseException:
        # Close before deleting: a stream closed later (by the garbage collector) would upload the key again.
        with suppress(Exception):
            stream.close()
        with suppress(Exception):
            fs.delete_file(tmp)
        raise


def move(fs: pafs.FileSystem, src: str, dest: str) -> None:
    """Move the file ``src`` onto ``dest`` (replacing it) inside ``fs``.

    S3: ``CopyObject`` then ``DeleteObject``; the target changes in one step. Where the filesystem
    cannot move files (some GCS/Azure configurations), a copy then a delete.
    """
    try:
        fs.move(src, dest)
    except pa.ArrowNotImplementedError:
        fs.copy_file(src, dest)
        fs.delete_file(src)


def write_bytes(path: PathArg | Location, data: bytes, overwrite: bool = True) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_output`)."""
    with atomic_output(path, overwrite) as out:
        out.write(data)


def read_bytes(path: PathArg | Location) -> bytes:
    """Read the whole file at ``path``."""
    loc = path if isinstance(path, Location) else resolve(path)
    if loc.local is not None:
        return loc.local.read_bytes()
    with loc.filesystem.open_input_stream(loc.path) as fh:
        return fh.read()


class Stage:
    """A dataset directory being built under a hidden prefix on a non-local filesystem.

    Write files with :meth:`path` (or :meth:`write_bytes`); name them in the published dataset with
    :meth:`publish_as` (by default a file keeps its staged name).
    """

    def __init__(self, filesystem: pafs.FileSystem, staging: str, target: Location) -> None:
        """Stage under ``staging`` (a path in ``filesystem``) for ``target``."""
        self.filesystem = filesystem
        self.staging = staging
        self.target = target
        self.renames: dict[str, str] = {}

    def path(self, relative: str) -> str:
        """Return the staged path of ``relative`` (inside :attr:`filesystem`)."""
        return f"{self.staging}/{relative.strip('/')}"

    def write_bytes(self, relative: str, data: bytes) -> None:
        """Write a staged file in one piece."""
        with self.filesystem.open_output_stream(self.path(relative)) as out:
            out.write(data)

    def publish_as(self, staged: str, final: str) -> None:
        """Publish the staged file ``staged`` under the name ``final`` (both relative)."""
        self.renames[staged.strip("/")] = final.strip("/")

    def staged_files(self) -> list[str]:
        """List the staged files, relative to the stage, sorted."""
        infos = self.filesystem.get_file_info(pafs.FileSelector(self.staging, recursive=True, allow_not_found=True))
        n = len(self.staging) + 1
        return sorted(i.path[n:] for i in infos if i.type == pafs.FileType.File)


def _objects_under(fs: pafs.FileSystem, prefix: str) -> list[str]:
    infos = fs.get_file_info(pafs.FileSelector(prefix, recursive=True, allow_not_found=True))
    n = len(prefix.rstrip("/")) + 1
    return sorted(i.path[n:] for i in infos if i.type == pafs.FileType.File)


def _check_prefix_target(loc: Location, overwrite: bool) -> list[str]:
    info = loc.filesystem.get_file_info(loc.path)
    if info.type == pafs.FileType.File:
        raise NotADirectoryError(f"{loc.uri} exists and is not a directory; choose another output path")
    old = _objects_under(loc.filesystem, loc.path) if info.type == pafs.FileType.Directory else []
    if old and not overwrite:
        raise FileExistsError(f"{loc.uri} is not empty; pass overwrite=True (--overwrite) to replace it")
    return old


@contextmanager
def staged_prefix(out_dir: PathArg | Location, overwrite: bool = False, marker: str = "README.md") -> Iterator[Stage]:
    """Build a dataset directory on a non-local filesystem under a hidden sibling prefix, then publish it.

    Object stores cannot rename a directory, so publishing moves each staged file onto its final key
    (S3: server-side copies, nothing is uploaded again), ``marker`` (the dataset card, which tells
    ``datasets.load_dataset`` what the dataset holds) last. Guarantees:

    - an exception while the stage is being written (bad rows, a failing input stream, an interrupted
      upload) deletes the stage and leaves ``out_dir`` exactly as it was: no final object is written;
    - with ``overwrite``, the old ``marker`` is deleted first, the new files are moved in, old files
      the new dataset lacks are deleted, then the new ``marker`` is moved in: a reader that finds the
      marker finds the complete new dataset;
    - if publishing itself fails (the store errors between copies), the new files already moved in are
      deleted again and no marker is left; an old dataset being overwritten may then be partly gone.

    Raises:
        FileExistsError: ``out_dir`` holds objects and ``overwrite`` is false.
        NotADirectoryError: ``out_dir`` is an object (a file).

    """
    loc = out_dir if isinstance(out_dir, Location) else resolve(out_dir)
    if loc.local is not None:
        raise ValueError(f"{loc.uri} is local: use longmagpie.export.staging.staged_directory")
    fs = loc.filesystem
    _check_prefix_target(loc, overwrite)
    stage = Stage(fs, _temporary_sibling(loc, ".stage"), loc)
    try:
        yield stage
        old = _check_prefix_target(loc, overwrite)  # something may have appeared while writing
        _publish(stage, loc, old, marker)
    finally:
        with suppress(Exception):
            fs.delete_dir(stage.staging)


def _publish(stage: Stage, loc: Location, old: list[str], marker: str) -> None:
    fs = stage.filesystem
    moves = sorted((stage.renames.get(s, s), s) for s in stage.staged_files())
    data = [(final, staged) for final, staged in moves if final != marker]
    card = [(final, staged) for final, staged in moves if final == marker]
    finals = {final for final, _ in moves}
    if marker in old:
        fs.delete_file(loc.child(marker).path)  # unpublish the old dataset first
    moved: list[str] = []
    try:
        for final, staged in data:
            move(fs, stage.path(staged), loc.child(final).path)
            moved.append(final)
        for stale in old:
            if stale not in finals and stale != marker:
                fs.delete_file(loc.child(stale).path)
        for final, staged in card:
            move(fs, stage.path(staged), loc.child(final).path)
            moved.append(final)
    except BaseException:
        for final in moved:
            with suppress(Exception):
                fs.delete_file(loc.child(final).path)
        raise


def require_local(path: PathArg, what: str) -> Path:
    """Return the local ``Path`` of ``path``, or raise a clear error saying ``what`` needs a local path.

    Raises:
        ValueError: ``path`` is a URI of a non-local filesystem.

    """
    local = local_path(path)
    if local is None:
        raise ValueError(
            f"{what} needs a local path, got {os.fspath(path)}: write it to a local directory and upload it "
            "(e.g. with `aws s3 sync`), or use a stage that writes to URIs (export --format parquet)"
        )
    return local
