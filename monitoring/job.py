"""The monitoring job (`conveyor monitor`): one window of the request log, checked and reported.

For the window [end - hours, end) and the one before it:
  - TFDV statistics of the logged features, validated against the schema's SERVING environment;
  - skew: distances to the training statistics of the model that answered most of the window's
    predictions (DataGate's statistics of the newest span it was trained on, found through MLMD
    lineage, metadata.registry);
  - drift: distances to the previous window;
  - live metrics per model version from the labels that have arrived (monitoring/labels.py).
Writes result.json (fields in the README; read by the CT controller), report.html and the
window's statistics (serving_statistics.pb) to HOME/monitoring/<window end>/ unless told otherwise.
"""
from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from monitoring import labels as labels_lib
from monitoring import statistics
from pipeline import drift
from pipeline.configs import PipelineConfig
from serving import request_log
from metadata import registry
from pipeline import versions

RESULT_FORMAT = 1
RESULT_FILE, REPORT_FILE, STATS_FILE = "result.json", "report.html", "serving_statistics.pb"


@dataclass
class MonitoringResult:
    data: dict[str, Any]  # exactly what result.json holds
    out_dir: Path
    stats: dict[str, Any] = field(default_factory=dict)  # name -> DatasetFeatureStatisticsList, for the report

    @property
    def ok(self) -> bool:
        return bool(self.data["ok"])


def _window_json(window: request_log.Window) -> dict[str, Any]:
    return {
        "start": window.start.isoformat(),
        "end": window.end.isoformat(),
        "predictions": len(window.records),
        "skipped_lines": window.skipped_lines,
        "versions": dict(Counter(r["model_version"] for r in window.records)),
    }


def _training_statistics(config: PipelineConfig, version: str | None) -> tuple[str | None, str | None]:
    """(uri, None) of the training statistics of `version`, or (None, why not)."""
    if version is None:
        return None, "no model version answered in this window and none is pushed"
    try:
        entry = registry.find(config, version)
    except LookupError as exc:
        return None, str(exc)
    if entry.training_statistics_uri is None:
        return None, f"MLMD has no training statistics for version {version}"
    return entry.training_statistics_uri, None


def _evaluation_metrics(config: PipelineConfig, wanted: list[str]) -> dict[str, dict[str, float]]:
    """version -> the Evaluator's overall metrics, for comparison with the live ones."""
    entries = [e for e in registry.list_versions(config) if e.version in wanted and e.evaluation_uri]
    if not entries:
        return {}
    from pipeline import evaluation

    return {e.version: evaluation.load_evaluation(e.evaluation_uri).metrics.get(evaluation.OVERALL, {}) for e in entries}


def run(
    config: PipelineConfig,
    end: datetime | None = None,
    hours: float | None = None,
    log_root: Path | None = None,
    labels_root: Path | None = None,
    out_dir: Path | None = None,
) -> MonitoringResult:
    end = end or datetime.now(timezone.utc)
    length = timedelta(hours=hours or config.monitor_window_hours)
    log_root = log_root or config.request_log_root
    current = request_log.read(log_root, end - length, end)
    previous = request_log.read(log_root, end - 2 * length, end - length)
    schema = statistics.load_schema(config.schema_path)
    serving_now = versions.serving_version(config.serving_root)
    counts = Counter(r["model_version"] for r in current.records)
    model_version = counts.most_common(1)[0][0] if counts else serving_now

    data: dict[str, Any] = {
        "format": RESULT_FORMAT,
        "created": datetime.now(timezone.utc).isoformat(),
        "pipeline": config.pipeline_name,
        "model_name": config.model_name,
        "window": _window_json(current),
        "previous_window": _window_json(previous),
        "serving_version": serving_now,
        "model_version": model_version,
        "anomalies": [],
        "skew": {"available": False, "reason": "no predictions in the window", "features": [], "flagged": []},
        "drift": {"available": False, "reason": "no predictions in the window", "features": [], "flagged": []},
    }
    stats: dict[str, Any] = {}
    if current.records:
        stats["current"] = statistics.compute(r["features"] for r in current.records)
        data["anomalies"] = [
            {"feature": a.feature, "kind": a.kind, "description": a.description}
            for a in statistics.schema_anomalies(stats["current"], schema)
        ]
        uri, why_not = _training_statistics(config, model_version)
        if uri is not None:
            stats["training"] = statistics.load_statistics(uri)
            distances = statistics.skew(stats["training"], stats["current"], schema, config)
            data["skew"] = _distances_json(distances, baseline=f"training statistics of version {model_version}: {uri}")
        else:
            data["skew"]["reason"] = why_not
        if previous.records:
            stats["previous"] = statistics.compute(r["features"] for r in previous.records)
            distances = statistics.drift(stats["previous"], stats["current"], schema, config)
            data["drift"] = _distances_json(distances, baseline=f"previous window {data['previous_window']['start']}")
        else:
            data["drift"]["reason"] = "no predictions in the previous window"

    labels = labels_lib.read(labels_root or config.labels_root)
    live = labels_lib.live_metrics(current.records, labels)
    data["labels"] = {"files": labels.files, "invalid_lines": labels.invalid_lines,
                      "joined": sum(m.labeled for m in live.values())}
    offline = _evaluation_metrics(config, list(live))
    data["live_metrics"] = {v: {**m.to_json(), "evaluation": offline.get(v, {})} for v, m in live.items()}

    alerts = []
    if data["anomalies"]:
        alerts.append("anomalies")
    if data["skew"]["flagged"]:
        alerts.append("skew")
    if data["drift"]["flagged"]:
        alerts.append("drift")
    data["alerts"] = alerts
    data["ok"] = not alerts

    out_dir = Path(out_dir or config.monitoring_root / end.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ"))
    data["report"] = str(out_dir / REPORT_FILE)
    result = MonitoringResult(data, out_dir, stats)
    _write(result)
    return result


def _distances_json(scores: list[drift.Score], baseline: str) -> dict[str, Any]:
    return {
        "available": True,
        "baseline": baseline,
        "features": [
            {"feature": s.feature, "measure": s.measure, "value": s.value, "threshold": s.threshold, "flagged": s.exceeded}
            for s in scores
        ],
        "flagged": sorted({s.feature for s in scores if s.exceeded}),
    }


def _write(result: MonitoringResult) -> None:
    from monitoring import report

    result.out_dir.mkdir(parents=True, exist_ok=True)
    if "current" in result.stats:
        statistics.save_statistics(result.stats["current"], result.out_dir / STATS_FILE)
    (result.out_dir / REPORT_FILE).write_text(report.render(result.data, result.stats))
    fd, tmp = tempfile.mkstemp(dir=result.out_dir, prefix=".result-", suffix=".json")
    with os.fdopen(fd, "w") as out:  # result.json last and atomically: its presence means complete
        json.dump(result.data, out, indent=2)
    os.replace(tmp, result.out_dir / RESULT_FILE)


def format_result(result: MonitoringResult) -> str:
    d = result.data
    w = d["window"]
    lines = [
        f"window {w['start']} .. {w['end']}: {w['predictions']} predictions "
        f"(previous window: {d['previous_window']['predictions']}); model version {d['model_version']}, serving now {d['serving_version']}",
        f"schema anomalies (SERVING): {', '.join(a['feature'] + ' ' + a['kind'] for a in d['anomalies']) or 'none'}",
    ]
    for name in ("skew", "drift"):
        part = d[name]
        if part["available"]:
            lines.append(f"{name}: {', '.join(part['flagged']) or 'none'} over the threshold")
        else:
            lines.append(f"{name}: not computed ({part['reason']})")
    for version, m in d["live_metrics"].items():
        auc = f"{m['auc']:.4f}" if m["auc"] is not None else "-"
        lines.append(f"live metrics, version {version}: {m['labeled']} labeled, accuracy {m['accuracy']:.4f}, auc {auc}")
    if not d["live_metrics"]:
        lines.append(f"live metrics: no labels joined ({d['labels']['files']} label files)")
    lines.append(f"{'OK' if d['ok'] else 'ALERT: ' + ', '.join(d['alerts'])}   result: {result.out_dir / RESULT_FILE}   report: {d['report']}")
    return "\n".join(lines)
