"""The request log: every prediction the server made, durable and partitioned by hour.

Layout: `<root>/date=YYYY-MM-DD/hour=HH/<host>-<pid>.jsonl` (UTC). Each line is one prediction:

    {"request_id": "4f1c...", "index": 0, "time": "2026-11-22T06:15:03.120311+00:00",
     "model_name": "taxi", "model_version": "1795328053",
     "features": {"fare": 12.5, "payment_type": "Cash", ...},
     "output": {"probability": 0.81, "predicted_class": 1}}

`request_id` names the HTTP request (the client's `X-Request-Id` header, else a new UUID) and
`index` the instance's position in it; labels that arrive later are keyed by the two.

Durability: a request's lines are appended with one write, flushed and fsync'ed before the
response is sent, so an answered prediction is on disk. Each process appends to its own file; a
crash can only leave a torn last line, which readers skip (and count), and a writer reopening
such a file starts on a fresh line.
"""
from __future__ import annotations

import json
import os
import socket
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

from data import spans_io

Record = dict[str, Any]


def partition_dir(root: Path, when: datetime) -> Path:
    when = when.astimezone(timezone.utc)
    return Path(root) / f"date={when:%Y-%m-%d}" / f"hour={when:%H}"


class RequestLog:
    """Appends prediction records; safe to share between the server's threads."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._lock = threading.Lock()
        self._file = None
        self._path: Path | None = None
        self._name = f"{socket.gethostname()}-{os.getpid()}.jsonl"

    def append(self, records: Iterable[Record], when: datetime | None = None) -> None:
        """Write `records` (already carrying their "time") durably, in the partition of `when`."""
        when = when or datetime.now(timezone.utc)
        data = "".join(json.dumps(r, separators=(",", ":"), allow_nan=False) + "\n" for r in records)
        with self._lock:
            handle = self._open(partition_dir(self.root, when) / self._name)
            handle.write(data.encode())
            handle.flush()
            os.fsync(handle.fileno())

    def _open(self, path: Path):
        if self._path == path:
            return self._file
        self._close_locked()
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "ab")
        if handle.tell() > 0:  # a previous writer may have died mid-line
            with open(path, "rb") as existing:
                existing.seek(-1, os.SEEK_END)
                if existing.read(1) != b"\n":
                    handle.write(b"\n")
        self._file, self._path = handle, path
        return handle

    def _close_locked(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file = self._path = None

    def close(self) -> None:
        with self._lock:
            self._close_locked()


def record(
    request_id: str, index: int, when: datetime, model_name: str, version: str,
    features: Mapping[str, Any], output: Mapping[str, Any],
) -> Record:
    return {
        "request_id": request_id,
        "index": index,
        "time": when.astimezone(timezone.utc).isoformat(),
        "model_name": model_name,
        "model_version": version,
        "features": dict(features),
        "output": dict(output),
    }


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
    hour = start.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)
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
    tips: Mapping[tuple[str, int], float] | None = None,
    manifest: Mapping[str, Any] | None = None,
) -> Path:
    """Write logged predictions as feedback span `span` in the canonical CSV format (spans_io.write_span):
    served traffic lives in its own namespace, never among the upstream spans.

    `tips` (from monitoring.labels, keyed by (request_id, index)) fills the label column where known.
    """
    rows = []
    for item in records:
        row = dict(item["features"])
        if tips is not None and (item["request_id"], item["index"]) in tips:
            row["tips"] = tips[(item["request_id"], item["index"])]
        rows.append(row)
    return spans_io.write_span(spans_root, span, rows, namespace=spans_io.FEEDBACK, manifest=manifest)
