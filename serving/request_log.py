"""The request log: every prediction the server made, durable and partitioned by hour.

Layout: `<root>/date=YYYY-MM-DD/hour=HH/<host>-<pid>.jsonl` (UTC). Each line is one prediction
(here of the taxi contract's model):

    {"request_id": "4f1c...", "index": 0, "time": "2026-11-22T06:15:03.120311+00:00",
     "model_name": "taxi", "model_version": "1795328053",
     "features": {"fare": 12.5, "payment_type": "Cash", ...},
     "output": {"probability": 0.81, "predicted_class": 1}}

(a multi-class model's output: `{"probabilities": [0.1, 0.7, 0.2], "predicted_class": 1}`, what
serving_default answered, whichever method was asked),

and, only when some string feature is outside its schema domain (predicted on and flagged,
models/instances.py), `"out_of_domain": ["payment_type"]`. While a rollout runs
(pipeline/rollouts.py) a record also says which route answered it and how long the model call
took, `"label": "stable"` or `"canary"` and `"model_ms": 0.61`; during a shadow rollout, the
candidate that shadowed it and its answer, `"shadow_version": "1795400000", "shadow_output":
{...}, "shadow_ms": 0.58` (or `"shadow_error": "..."`); a canary request its candidate failed on
and stable answered, `"canary_error": "..."`. `request_id` names the HTTP request (the
client's `X-Request-Id` header, else a new UUID) and `index` the instance's position in it; labels
that arrive later are keyed by the two.

Durability: `append` returns once its lines are written and fsync'ed, and the server answers only
after that, so an answered prediction is on disk. Appends that arrive while a write is under way
are written together with the next single write and fsync (group commit): under load one fsync
covers many requests. A new partition folder or file is followed by an fsync of its parent
folder. Each process appends to its own file; a crash can only leave a torn last line, which
readers skip (and count), and a writer reopening such a file starts on a fresh line.

Bounds: `enforce_retention` deletes hour partitions older than the retention, then the oldest
ones while the log is larger than its size limit (never the current or the previous hour). A
line's size is bounded by the request limits (string values are at most `max_string_bytes`).
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

import orjson

from data import files, spans_io

Record = dict[str, Any]


def partition_dir(root: Path, when: datetime) -> Path:
    when = when.astimezone(timezone.utc)
    return Path(root) / f"date={when:%Y-%m-%d}" / f"hour={when:%H}"


@dataclass
class _Append:
    partition: Path
    data: bytes
    done: bool = False
    error: BaseException | None = None


class RequestLog:
    """Appends prediction records; safe to share between threads and durable on return."""

    def __init__(self, root: Path, name: str | None = None):
        self.root = Path(root)
        self._cond = threading.Condition(threading.Lock())
        self._queue: list[_Append] = []
        self._writing = False
        self._file = None
        self._path: Path | None = None
        self._name = name or f"{socket.gethostname()}-{os.getpid()}.jsonl"
        self._hour: tuple[int, Path] = (-1, self.root)  # (hours since the epoch, its partition folder)
        self.commits = 0  # writes + fsyncs done: fewer than appends when commits were shared

    def append(self, records: Iterable[Record], when: datetime | None = None) -> int:
        """Write `records` (already carrying their "time") durably in the partition of `when`;
        returns the bytes written. Raises OSError if they could not be made durable."""
        when = when or datetime.now(timezone.utc)
        entry = _Append(self._partition(when), b"".join(orjson.dumps(r, option=orjson.OPT_APPEND_NEWLINE) for r in records))
        with self._cond:
            self._queue.append(entry)
            while not entry.done:
                if self._writing:  # another thread's write is under way: ours goes with the next
                    self._cond.wait()
                    continue
                batch, self._queue = self._queue, []
                self._writing = True
                self._cond.release()
                error: BaseException | None = None
                try:
                    self._commit(batch)
                except BaseException as exc:
                    error = exc
                finally:
                    self._cond.acquire()
                    self._writing = False
                    for item in batch:
                        item.done, item.error = True, error
                    self._cond.notify_all()
        if entry.error is not None:
            raise entry.error
        return len(entry.data)

    def _partition(self, when: datetime) -> Path:
        hour, cached = int(when.timestamp()) // 3600, self._hour  # one read: other threads may replace it
        if hour != cached[0]:  # formatting the folder's name costs more than the rest of an append
            cached = self._hour = (hour, partition_dir(self.root, when))
        return cached[1]

    def _commit(self, batch: list[_Append]) -> None:
        by_partition: dict[Path, list[bytes]] = {}
        for item in batch:
            by_partition.setdefault(item.partition, []).append(item.data)
        try:
            for partition, chunks in by_partition.items():
                handle = self._open(partition / self._name)
                handle.write(b"".join(chunks))
                handle.flush()
                os.fsync(handle.fileno())
        except BaseException:
            self._close()  # the file may end mid-line: reopening starts a fresh line
            raise
        self.commits += 1

    def _open(self, path: Path):
        if self._path == path:
            return self._file
        self._close()
        _make_dirs_durable(path.parent)
        existed = path.exists()
        handle = open(path, "ab")
        if not existed:
            files.fsync(path.parent)
        elif handle.tell() > 0:  # a previous writer may have died mid-line
            with open(path, "rb") as existing:
                existing.seek(-1, os.SEEK_END)
                if existing.read(1) != b"\n":
                    handle.write(b"\n")
        self._file, self._path = handle, path
        return handle

    def _close(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
        self._file = self._path = None

    def close(self) -> None:
        with self._cond:
            self._close()



def _make_dirs_durable(folder: Path) -> None:
    """mkdir -p, fsync'ing the parent of every folder created."""
    missing = []
    while not folder.is_dir():
        missing.append(folder)
        folder = folder.parent
    for path in reversed(missing):
        try:
            path.mkdir()
        except FileExistsError:  # another worker created it
            continue
        files.fsync(path.parent)


def record(
    request_id: str, index: int, when: datetime, model_name: str, version: str,
    features: Mapping[str, Any], output: Mapping[str, Any], out_of_domain: Iterable[str] = (),
    rollout: Mapping[str, Any] | None = None,
) -> Record:
    item = {
        "request_id": request_id,
        "index": index,
        "time": when.astimezone(timezone.utc).isoformat(),
        "model_name": model_name,
        "model_version": version,
        "features": dict(features),
        "output": dict(output),
    }
    if out_of_domain:
        item["out_of_domain"] = list(out_of_domain)
    if rollout:
        item.update(rollout)
    return item


def partitions(root: Path) -> list[tuple[datetime, Path]]:
    """(start of the hour, folder) of every partition, oldest first."""
    found = []
    for folder in Path(root).glob("date=*/hour=*"):
        try:
            start = datetime.strptime(f"{folder.parent.name[5:]} {folder.name[5:]}", "%Y-%m-%d %H").replace(tzinfo=timezone.utc)
        except ValueError:
            continue
        found.append((start, folder))
    return sorted(found)


def enforce_retention(root: Path, now: datetime, max_age_hours: float, max_bytes: int) -> list[Path]:
    """Delete partitions older than `max_age_hours`, then the oldest while the log exceeds
    `max_bytes`; the current and the previous hour are kept. Returns the folders deleted."""
    keep_from = partition_start(now) - timedelta(hours=1)
    found = partitions(root)
    sizes = {folder: sum(f.stat().st_size for f in folder.glob("*") if f.is_file()) for _, folder in found}
    total = sum(sizes.values())
    removed = []
    for start, folder in found:
        if start >= keep_from:
            break
        if start + timedelta(hours=1) > now - timedelta(hours=max_age_hours) and total <= max_bytes:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        total -= sizes[folder]
        removed.append(folder)
        try:
            folder.parent.rmdir()  # the date folder, once its last hour is gone
        except OSError:
            pass
    return removed


def partition_start(when: datetime) -> datetime:
    return when.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)


@dataclass
class Window:
    """The records logged in [start, end), and how many unreadable (torn) lines were skipped."""

    start: datetime
    end: datetime
    records: list[Record] = field(default_factory=list)
    skipped_lines: int = 0


def read(root: Path, start: datetime, end: datetime) -> Window:
    """Every record with start <= time < end, in time order."""
    window = Window(start, end)
    hour = partition_start(start)
    while hour < end:
        folder = partition_dir(root, hour)
        for path in sorted(folder.glob("*.jsonl")) if folder.is_dir() else []:
            with open(path, "rb") as handle:
                for line in handle:
                    try:
                        item = json.loads(line)
                        when = datetime.fromisoformat(item["time"])
                    except (ValueError, KeyError, TypeError):
                        window.skipped_lines += 1
                        continue
                    if start <= when < end:
                        window.records.append(item)
        hour += timedelta(hours=1)
    window.records.sort(key=lambda r: r["time"])
    return window


def earliest(root: Path) -> datetime | None:
    """The start of the oldest hour partition under `root` (None for an empty log)."""
    hours = []
    for day in Path(root).glob("date=*"):
        for hour in day.glob("hour=*"):
            try:
                hours.append(datetime.strptime(f"{day.name[5:]} {hour.name[5:]}", "%Y-%m-%d %H").replace(tzinfo=timezone.utc))
            except ValueError:
                continue
    return min(hours, default=None)


def write_serving_span(
    records: Iterable[Record],
    spans_root: Path,
    span: int,
    outcomes: Mapping[tuple[str, int], Mapping[str, Any]] | None = None,
    manifest: Mapping[str, Any] | None = None,
) -> Path:
    """Write logged predictions as feedback span `span` in the canonical CSV format (spans_io.write_span):
    served traffic lives in its own namespace, never among the upstream spans.

    `outcomes` (from monitoring.labels, keyed by (request_id, index): {label column: value}) fill
    the columns only the label reads where known.
    """
    rows = []
    for item in records:
        row = dict(item["features"])
        row.update((outcomes or {}).get((item["request_id"], item["index"]), {}))
        rows.append(row)
    return spans_io.write_span(spans_root, span, rows, namespace=spans_io.FEEDBACK, manifest=manifest)
