"""The serving root: which pushed versions exist and which one serves. The one decision shared by
the pipeline (the Evaluator's baseline), the server, `conveyor models`, lineage and rollback.

Pusher writes each blessed model to `<serving_root>/<version>/` (version = Unix seconds) and copies
`saved_model.pb` last, so a version is *ready* once that file exists. Reading works on local paths
and on object storage (gs://, through TFX's fileio); the rollback pointer is written locally.

Rule: the newest ready version serves, unless a rollback is in force. `conveyor rollback` writes
`<serving_root>/ROLLBACK.json` atomically (temp file + rename) naming the version to serve and
the newest version that existed at that moment. The rollback stays in force until a version newer
than that one is pushed: a new push supersedes a rollback (the pipeline blessed a new model after
the operator's decision). A rollback naming a version that has since disappeared is ignored.
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
    from tfx.dsl.io import fileio

    path = os.path.join(str(serving_root), POINTER_FILE)
    if not fileio.exists(path):
        return None
    try:
        with fileio.open(path, "r") as handle:
            data = json.loads(handle.read())
        return Rollback(str(data["version"]), str(data["newest_at_rollback"]), float(data["time"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is not a valid rollback pointer: {exc}") from exc


def serving_version(serving_root: str | Path) -> str | None:
    """The version that serves now (see the module docstring), None if nothing is pushed."""
    ready = ready_versions(serving_root)
    if not ready:
        return None
    rollback = read_rollback(serving_root)
    if rollback is not None and rollback.in_force(ready):
        return rollback.version
    return ready[-1]


def live_since(serving_root: str | Path, version: str) -> float:
    """When `version` last started serving (Unix seconds): the rollback that made it serve, if one is
    in force, else its push (versions are named by push time). Evidence about a version is counted
    from here, so a version that serves again after a rollback starts with a clean slate."""
    rollback = read_rollback(serving_root)
    if rollback is not None and rollback.version == version and rollback.in_force(ready_versions(serving_root)):
        return rollback.time
    return float(version)


def write_rollback(serving_root: Path, version: str) -> Rollback:
    """Make `version` serve until a newer version is pushed; atomic (temp file + rename)."""
    ready = ready_versions(serving_root)
    if version not in ready:
        raise ValueError(f"version {version} is not a pushed version under {serving_root} (have: {ready or 'none'})")
    rollback = Rollback(version=version, newest_at_rollback=ready[-1], time=time.time())
    root = Path(serving_root)
    fd, tmp = tempfile.mkstemp(dir=root, prefix=".rollback-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(rollback.__dict__, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, root / POINTER_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return rollback


def republish(serving_root: Path, version: str, new_version: str) -> Path:
    """Copy pushed `version` as `new_version`, saved_model.pb last as Pusher does (a push without
    a pipeline run: benchmarks and tests use it to make the server swap)."""
    src, dst = Path(serving_root) / version, Path(serving_root) / new_version
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(READY_FILE))
    shutil.copy2(src / READY_FILE, dst / READY_FILE)
    return dst
