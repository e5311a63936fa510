"""The serving root: model versions Pusher wrote (<serving_root>/<unix time>/), local or gs://."""
from __future__ import annotations

import os
from pathlib import Path

from tfx.dsl.io import fileio

SAVED_MODEL_FILE = "saved_model.pb"  # Pusher copies it last: a version without it is incomplete


def versions(serving_root: str) -> list[str]:
    """Complete pushed versions, oldest first."""
    if not fileio.isdir(serving_root):
        return []
    names = [name.rstrip("/") for name in fileio.listdir(serving_root)]
    complete = [n for n in names if n.isdigit() and fileio.exists(os.path.join(serving_root, n, SAVED_MODEL_FILE))]
    return sorted(complete, key=int)


def latest_version(serving_root: str) -> str | None:
    found = versions(serving_root)
    return found[-1] if found else None


def serving_version(serving_root: str) -> str | None:
    """The version serving now: serving/versions.py decides for a local serving root (it honours a
    rollback); on remote storage, where no local server reads a rollback pointer, the newest."""
    if "://" not in serving_root:
        from serving import versions as serving_versions

        return serving_versions.serving_version(Path(serving_root))
    return latest_version(serving_root)
