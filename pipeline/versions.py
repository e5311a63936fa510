"""The serving root: which pushed versions exist and which one serves. The one decision shared by
the pipeline (the Evaluator's baseline), the server, `conveyor models`, lineage and rollback.

Pusher writes each blessed model to `<serving_root>/<version>/` (version = Unix seconds) and copies
`saved_model.pb` last, so a version is *ready* once that file exists. Reading works on local paths
and on object storage (gs://, through TFX's fileio); the rollback pointer is written locally.

Rule: the newest ready version serves, unless a rollback is in force. `conveyor rollback` writes
`<serving_root>/ROLLBACK.json` atomically (temp file fsync'ed, renamed, directory fsync'ed; mode
0644 so a server running as another user reads it) naming the version to serve, the newest version
that existed at that moment and the rollback's ML Metadata execution. The rollback stays in force
until a version newer than that one is pushed: a new push supersedes a rollback (the pipeline
blessed a new model after the operator's decision). A rollback naming a version that has since
disappeared is ignored. A pointer that is not valid JSON of that shape is reported and ignored
(the newest version serves) until `conveyor rollback --clear` or `--to V` replaces it; one that
cannot be read (an I/O error) raises OSError, so a server keeps what it serves rather than guess.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

POINTER_FILE = "ROLLBACK.json"
READY_FILE = "saved_model.pb"


@dataclass(frozen=True)
class Rollback:
    """A rollback as recorded in the pointer file."""

    version: str
    newest_at_rollback: str
    time: float
    execution_id: int | None = None  # the rollback's record in ML Metadata (serving/rollback.py)

    def in_force(self, ready: list[str]) -> bool:
        return self.version in ready and not any(int(v) > int(self.newest_at_rollback) for v in ready)


def ready_versions(serving_root: str | Path) -> list[str]:
    """Pushed versions whose copy is complete, oldest first."""
    from tfx.dsl.io import fileio

    root = str(serving_root)
    if not fileio.isdir(root):
        return []
    names = [name.rstrip("/") for name in fileio.listdir(root)]
    return sorted((n for n in names if n.isdigit() and fileio.exists(os.path.join(root, n, READY_FILE))), key=int)


def latest_version(serving_root: str | Path) -> str | None:
    """The newest ready version (what serves when no rollback is in force)."""
    ready = ready_versions(serving_root)
    return ready[-1] if ready else None


def read_rollback(serving_root: str | Path) -> Rollback | None:
    """The rollback pointer; ValueError if it is not a valid one, OSError if it cannot be read."""
    from tfx.dsl.io import fileio

    path = os.path.join(str(serving_root), POINTER_FILE)
    if not fileio.exists(path):
        return None
    try:
        with fileio.open(path, "rb") as handle:
            text = handle.read()
    except Exception as exc:  # fileio raises TensorFlow's errors for some file systems
        raise OSError(f"cannot read {path}: {exc}") from exc
    try:
        data = json.loads(text)
        rollback = Rollback(
            str(data["version"]), str(data["newest_at_rollback"]), float(data["time"]),
            int(data["execution_id"]) if data.get("execution_id") is not None else None,
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{path} is not a valid rollback pointer ({type(exc).__name__}: {exc})") from None
    if not (rollback.version.isdigit() and rollback.newest_at_rollback.isdigit()):
        raise ValueError(f"{path} is not a valid rollback pointer (versions must be integers: {data!r:.200})")
    return rollback


@dataclass(frozen=True)
class ServingState:
    """Which version serves and why."""

    version: str | None  # None: nothing is pushed
    ready: list[str]
    rollback: Rollback | None  # the pointer, in force or not (None if absent or invalid)
    pointer_error: str | None = None  # the pointer is invalid and ignored: what is wrong, how to repair

    @property
    def rollback_in_force(self) -> bool:
        return self.rollback is not None and self.rollback.in_force(self.ready)


def serving_state(serving_root: str | Path) -> ServingState:
    """The serving rule (module docstring) with its evidence; OSError if the root cannot be read."""
    ready = ready_versions(serving_root)
    try:
        rollback, error = read_rollback(serving_root), None
    except ValueError as exc:
        rollback = None
        error = f"{exc}; ignored, the newest version serves (repair: conveyor rollback --clear, or --to VERSION)"
    if rollback is not None and rollback.in_force(ready):
        return ServingState(rollback.version, ready, rollback)
    return ServingState(ready[-1] if ready else None, ready, rollback, error)


def serving_version(serving_root: str | Path) -> str | None:
    """The version that serves now (see the module docstring), None if nothing is pushed."""
    return serving_state(serving_root).version


def write_rollback(serving_root: Path, version: str, execution_id: int | None = None) -> Rollback:
    """Make `version` serve until a newer version is pushed; atomic and durable."""
    ready = ready_versions(serving_root)
    if version not in ready:
        raise ValueError(f"version {version} is not a pushed version under {serving_root} (have: {ready or 'none'})")
    rollback = Rollback(version=version, newest_at_rollback=ready[-1], time=time.time(), execution_id=execution_id)
    root = Path(serving_root)
    fd, tmp = tempfile.mkstemp(dir=root, prefix=".rollback-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(rollback.__dict__, out)
            out.flush()
            os.fchmod(out.fileno(), 0o644)  # mkstemp makes it 0600: a server of another user must read it
            os.fsync(out.fileno())
        os.replace(tmp, root / POINTER_FILE)
        _fsync_dir(root)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return rollback


def clear_rollback(serving_root: Path) -> bool:
    """Remove the rollback pointer (valid or not): the newest version serves. False if none."""
    path = Path(serving_root) / POINTER_FILE
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    _fsync_dir(path.parent)
    return True


def _fsync_dir(path: Path) -> None:
    """Make a rename or an unlink in `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def republish(serving_root: Path, version: str, new_version: str) -> Path:
    """Copy pushed `version` as `new_version`, saved_model.pb last as Pusher does (a push without
    a pipeline run: benchmarks and tests use it to make the server swap)."""
    src, dst = Path(serving_root) / version, Path(serving_root) / new_version
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(READY_FILE))
    shutil.copy2(src / READY_FILE, dst / READY_FILE)
    return dst
