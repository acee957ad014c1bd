"""A dataset directory that appears complete or not at all: built in a temporary sibling, then renamed."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from longmagpie.io import storage


def check_target(out_dir: Path, overwrite: bool) -> None:
    """Refuse a target that is a file, or a non-empty directory without ``overwrite``.

    Raises:
        FileExistsError: ``out_dir`` is a non-empty directory and ``overwrite`` is false.
        NotADirectoryError: ``out_dir`` exists and is not a directory.

    """
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise NotADirectoryError(f"{out_dir} exists and is not a directory; choose another output path")
    if not overwrite and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} is not empty; pass overwrite=True (--overwrite) to replace it")


@contextmanager
def staged_directory(out_dir: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temporary directory next to ``out_dir``; on success it replaces ``out_dir``.

    On any exception the temporary directory is removed and ``out_dir`` is left as it was, so a
    reader never sees a half-written dataset. With ``overwrite``, an existing ``out_dir`` is moved
    aside, the new one renamed in, then the old one deleted. ``out_dir`` must be local (object
    stores have no directory rename: :func:`longmagpie.io.storage.staged_prefix` stages there).

    Raises:
        ValueError: ``out_dir`` is a URI of a non-local filesystem.
        FileExistsError: ``out_dir`` is a non-empty directory and ``overwrite`` is false.
        NotADirectoryError: ``out_dir`` exists and is not a directory.

    """
    target = storage.require_local(out_dir, "this dataset directory (built aside, then renamed)")
    check_target(target, overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        check_target(target, overwrite)  # something may have appeared while writing
        if target.exists() and any(target.iterdir()):
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
            os.replace(target, old / "replaced")
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)  # an empty directory is replaced atomically by rename(2)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
