"""Files at a local path or at a URI (gs://, file://...): os and pathlib for local paths, TFX's
fileio only for URIs. fileio imports TensorFlow (seconds of start-up), so a command that only
reads a local home never loads it."""
from __future__ import annotations

import glob as globbing
import os
import shutil
from pathlib import Path
from typing import Any

from data.spans_io import is_uri

PathLike = str | Path


def _fileio() -> Any:
    from tfx.dsl.io import fileio

    return fileio


def fsync(path: PathLike) -> None:
    """Flush a local file or folder (a folder: the names created or renamed in it) to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def exists(path: PathLike) -> bool:
    return _fileio().exists(str(path)) if is_uri(path) else os.path.exists(path)


def isdir(path: PathLike) -> bool:
    return _fileio().isdir(str(path)) if is_uri(path) else os.path.isdir(path)


def listdir(path: PathLike) -> list[str]:
    """The names in folder `path` (without the trailing slash object stores give folders)."""
    names = _fileio().listdir(str(path)) if is_uri(path) else os.listdir(path)
    return [name.rstrip("/") for name in names]


def glob(pattern: str) -> list[str]:
    return [str(p) for p in _fileio().glob(pattern)] if is_uri(pattern) else globbing.glob(pattern)


def read_bytes(path: PathLike) -> bytes:
    """The file's content; OSError (FileNotFoundError when absent) for a local path, fileio's
    errors for a URI."""
    if not is_uri(path):
        return Path(path).read_bytes()
    with _fileio().open(str(path), "rb") as handle:
        return handle.read()


def rmtree(path: PathLike) -> None:
    if is_uri(path):
        _fileio().rmtree(str(path))
    else:
        shutil.rmtree(path)
