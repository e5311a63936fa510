"""Served traffic becomes training data: labelled predictions become a feedback span.

The feedback is what the server and the label feed already write: the request log
(serving/request_log.py) and the labels files (`<home>/labels/*.jsonl`, monitoring/labels.py).
A feedback span holds every prediction logged in [start, end) whose label has arrived, whichever
version answered it, as canonical span rows (the logged features plus the delivered label
columns, the taxi's `tips`), written by the span writer in the feedback namespace: `<home>/feedback/spans/feedback-N/data.csv`, never among the
upstream spans. Its `manifest.json` says where it came from: the time range, the label files, the
versions that answered, and the decision (trigger, time) that built it.

  start  the previous feedback span's end (the first one starts with the log's first hour);
  end    just after the newest labelled prediction: later predictions wait for their labels.
The rows it holds were served from `first_served` to `last_served` (the manifest says both, and
so does every description of the span: the window's bounds are not when its traffic was served).
A prediction before `end` whose label arrives after the span was built joins no span (the
manifest counts those without a label).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from data import spans_io
from data.spans_io import FEEDBACK
from monitoring import labels as labels_lib
from monitoring import live
from pipeline.configs import PipelineConfig
from serving import request_log

MANIFEST_FORMAT = 1
TICK = timedelta(microseconds=1)


def manifests(config: PipelineConfig) -> dict[int, dict[str, Any]]:
    """span -> manifest of every feedback span on disk."""
    root = config.feedback_spans_root_uri
    return {s: spans_io.read_manifest(root, s) or {} for s in spans_io.existing_spans(root, FEEDBACK)}


def consumed_until(config: PipelineConfig) -> datetime | None:
    """The end of the newest feedback span: predictions before it are already training data."""
    ends = [datetime.fromisoformat(m["end"]) for m in manifests(config).values() if m.get("end")]
    return max(ends, default=None)


def built_for(config: PipelineConfig, decision_id: str) -> dict[str, Any] | None:
    """The manifest (with its `path`) of the feedback span decision `decision_id` built, if it is on disk."""
    for span, manifest in sorted(manifests(config).items()):
        if (manifest.get("built_by") or {}).get("decision") == decision_id:
            root = config.feedback_spans_root_uri.rstrip("/")
            return {**manifest, "path": f"{root}/{spans_io.DIR_PREFIXES[FEEDBACK]}{span}/{spans_io.SPAN_FILE}"}
    return None


@dataclass
class Pending:
    """Labelled predictions not yet in any feedback span."""

    start: datetime
    end: datetime  # just after the newest labelled prediction (start when there is none)
    records: list[request_log.Record]  # every prediction logged in [start, end)
    labelled: list[tuple[request_log.Record, dict]]  # those whose label arrived, with their outcome (monitoring.labels)
    label_files: list[str]
    skipped_lines: int


def pending(config: PipelineConfig, now: datetime, labels: labels_lib.Labels | None = None) -> Pending:
    """What a feedback span built at `now` would hold."""
    start = consumed_until(config) or request_log.earliest(config.request_log_root) or now
    window = request_log.read(config.request_log_root, start, now)
    labels = labels if labels is not None else labels_lib.read(config.labels_root)
    pairs = live.labelled(window.records, labels)
    end = max((datetime.fromisoformat(r["time"]) for r, _ in pairs), default=start - TICK) + TICK
    in_range = [r for r in window.records if datetime.fromisoformat(r["time"]) < end]
    files = sorted({labels.source[(r["request_id"], r["index"])] for r, _ in pairs})
    return Pending(start, max(end, start), in_range, pairs, files, window.skipped_lines)


def build(config: PipelineConfig, found: Pending, built_by: dict[str, Any]) -> dict[str, Any]:
    """Write `found`'s labelled predictions as the next feedback span; returns its manifest.

    `built_by` names the decision: {"triggers": [...], "time": ISO, "reason": "..."}.
    """
    span = max(spans_io.existing_spans(config.feedback_spans_root_uri, FEEDBACK), default=0) + 1
    served = sorted(datetime.fromisoformat(r["time"]) for r, _ in found.labelled)
    manifest = {
        "format": MANIFEST_FORMAT,
        "span": span,
        "namespace": FEEDBACK,
        "start": found.start.isoformat(),
        "end": found.end.isoformat(),
        "first_served": served[0].isoformat() if served else None,
        "last_served": served[-1].isoformat() if served else None,
        "predictions": len(found.records),
        "labelled": len(found.labelled),
        "without_label": len(found.records) - len(found.labelled),
        "versions": dict(sorted(Counter(r["model_version"] for r, _ in found.labelled).items())),
        "label_files": found.label_files,
        "request_log": str(config.request_log_root),
        "built_at": datetime.now(timezone.utc).isoformat(),
        "built_by": built_by,
    }
    outcomes = {(r["request_id"], r["index"]): outcome for r, outcome in found.labelled}
    path = request_log.write_serving_span(
        [r for r, _ in found.labelled], config.feedback_spans_root, span, outcomes=outcomes, manifest=manifest
    )
    return {**manifest, "path": str(path)}


def describe(manifest: dict[str, Any]) -> str:
    """One line: what a feedback span holds."""
    return (
        f"feedback span {manifest['span']}: {manifest['labelled']} labelled predictions served "
        f"{served_between(manifest)} by version(s) {', '.join(manifest['versions']) or '-'}, "
        f"labels from {', '.join(manifest['label_files']) or '-'}"
    )


def served_between(manifest: dict[str, Any]) -> str:
    """When a feedback span's rows were served: "FIRST .. LAST" (the window's bounds for a manifest
    from before it said so)."""
    first, last = manifest.get("first_served", manifest["start"]), manifest.get("last_served", manifest["end"])
    return f"{first} .. {last}" if first else "- (no labelled predictions)"
