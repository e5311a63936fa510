"""Status files: what each running server process serves, for `conveyor models` and `rollback`.

Every worker process of `conveyor serve` rewrites `<home>/serving_status/<host>-<pid>.json`
atomically after each refresh (every poll_seconds) and removes it when it stops:

    {"pid": 4242, "host": "box", "url": "http://127.0.0.1:8501", "worker": 0, "heartbeat": 1796000000.5,
     "stale_after": 30, "serving": "1795328053", "swaps": 1, "error": null, "pointer_error": null,
     "versions": [{"version": "1795328053", "state": "AVAILABLE", "error": ""}, ...]}

A file whose heartbeat is older than `stale_after` seconds, or whose process is gone (same
host), belongs to a server that was killed: readers ignore it and the next server removes it.
"""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

STATUS_DIR = "serving_status"


def status_dir(home: Path) -> Path:
    return Path(home) / STATUS_DIR


def _path(home: Path, pid: int) -> Path:
    return status_dir(home) / f"{socket.gethostname()}-{pid}.json"


def write(home: Path, status: dict[str, Any]) -> None:
    folder = status_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    status = {**status, "host": socket.gethostname(), "heartbeat": time.time()}
    target = _path(home, status["pid"])
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(status))
    os.replace(tmp, target)


def remove(home: Path, pid: int) -> None:
    _path(home, pid).unlink(missing_ok=True)


def read(home: Path, pid: int) -> dict[str, Any] | None:
    """The status file of worker process `pid` on this host, if it has written one."""
    try:
        found = json.loads(_path(home, pid).read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def _alive(status: dict[str, Any]) -> bool:
    if time.time() - float(status.get("heartbeat", 0)) > float(status.get("stale_after", 30)):
        return False
    if status.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(status["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def live(home: Path) -> list[dict[str, Any]]:
    """Statuses of the server processes running on this home, by worker."""
    found = []
    folder = status_dir(home)
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            status = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(status, dict) and _alive(status):
            found.append(status)
    return sorted(found, key=lambda s: (s.get("url", ""), s.get("worker", 0)))


def remove_stale(home: Path) -> None:
    """Remove the files of server processes that are gone (called when a server starts)."""
    folder = status_dir(home)
    for path in folder.glob("*.json") if folder.is_dir() else []:
        try:
            status = json.loads(path.read_text())
        except (OSError, ValueError):
            path.unlink(missing_ok=True)
            continue
        if not _alive(status):
            path.unlink(missing_ok=True)


def wait_until_serving(home: Path, version: str, timeout: float) -> tuple[list[dict], list[dict], float]:
    """Poll until every running server process serves `version` or `timeout` seconds pass;
    returns (those serving it, the others, seconds waited). No server running: ([], [], 0)."""
    started = time.monotonic()
    while True:
        servers = live(home)
        switched = [s for s in servers if s.get("serving") == version]
        waited = time.monotonic() - started
        if len(switched) == len(servers) or waited >= timeout:
            return switched, [s for s in servers if s.get("serving") != version], waited
        time.sleep(0.1)
