"""One writer per home: `conveyor run`, `ct tick`, `rollback` and `models --clean` hold this lock.

The lock is an flock(2) on `<home>/.writer.lock`: the kernel releases it when the holder exits, however
it exits (kill -9 included), so a lock left by a dead process never blocks. The holder writes who it
is into the file; a second writer reads that and fails with HomeBusy, naming the holder.
The server and the monitoring job only append to their own folders and take no lock.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from pathlib import Path
from typing import Iterator

LOCK_FILE = ".writer.lock"
BUSY_EXIT_CODE = 75  # EX_TEMPFAIL: try again later


class HomeBusy(RuntimeError):
    """Another process holds the home's writer lock."""


def _describe(holder: dict) -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(holder.get("started", 0)))
    return f"{holder.get('what', 'a writer')} started at {started} by pid {holder.get('pid', '?')}"


@contextlib.contextmanager
def hold(home: Path, what: str) -> Iterator[None]:
    """Hold the writer lock of `home` for `what` (e.g. "conveyor run"); HomeBusy if another process has it."""
    home.mkdir(parents=True, exist_ok=True)
    fd = os.open(home / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
            except ValueError:  # the holder is between truncate and write
                holder = {}
            raise HomeBusy(f"busy: {_describe(holder)} (home {home})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"what": what, "pid": os.getpid(), "started": time.time()}).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def alive(pid: int) -> bool:
    """Whether process `pid` still runs (another user's process counts as running)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
