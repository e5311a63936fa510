"""The monitoring job (`conveyor monitor`): one window of the request log, checked and reported.

For the window [end - hours, end) and the one before it:
  - TFDV statistics of the logged features, validated against the schema's SERVING environment;
  - skew: distances to the training statistics of the model that answered most of the window's
    predictions (DataGate's statistics of the newest span it was trained on, found through MLMD
    lineage; monitoring/evidence.py, the same check the CT controller makes);
  - drift: distances to the previous window;
  - live metrics per model version from the labels that have arrived, against the version's own
    offline accuracy and the floor (monitoring/live.py, the same rules the CT controller applies);
  - the estimated accuracy (and AUC of a binary label) of the model version's predictions before
    their labels, CBPE with its calibration (monitoring/estimate.py; monitoring/evidence.py
    `estimated`), beside the realized ones: an estimated drop is an alert while the labels are too few.
Distances need `monitor_min_predictions` predictions and live accuracy `live_min_labels` labels:
below that they are listed as not judged, never as OK. Status: "alert" (something flagged, exit 3),
"no_traffic" (no predictions in the window: nothing to judge, exit 4) or "ok" (exit 0).
Writes result.json (fields in docs/serving.md), report.html and the window's statistics
(serving_statistics.pb) to HOME/monitoring/<window end>/ unless told otherwise.
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

from models import features, label_metrics
from monitoring import estimate as estimate_lib
from monitoring import evidence, statistics
from monitoring import labels as labels_lib
from monitoring import live as live_lib
from pipeline import versions
from pipeline.configs import PipelineConfig
from schema import versions as schema_versions
from serving import request_log

RESULT_FORMAT = 2
RESULT_FILE, REPORT_FILE, STATS_FILE = "result.json", "report.html", "serving_statistics.pb"
OK, ALERT, NO_TRAFFIC = "ok", "alert", "no_traffic"
EXIT_CODES = {OK: 0, ALERT: 3, NO_TRAFFIC: 4}


@dataclass
class MonitoringResult:
    data: dict[str, Any]  # exactly what result.json holds
    out_dir: Path
    stats: dict[str, Any] = field(default_factory=dict)  # name -> DatasetFeatureStatisticsList, for the report

    @property
    def ok(self) -> bool:
        return bool(self.data["ok"])

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.data["status"]]


def _window_json(window: request_log.Window) -> dict[str, Any]:
    return {
        "start": window.start.isoformat(),
        "end": window.end.isoformat(),
        "predictions": len(window.records),
        "skipped_lines": window.skipped_lines,
        "versions": dict(Counter(r["model_version"] for r in window.records)),
    }


def _not_computed(reason: str) -> dict[str, Any]:
    return {"available": False, "reason": reason, "features": [], "flagged": []}


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
    schema = statistics.load_schema(schema_versions.in_force(config.home, config.schema_path))
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
    }
    stats: dict[str, Any] = {}
    if current.records:
        stats["current"] = statistics.compute(r["features"] for r in current.records)
        data["anomalies"] = [
            {"feature": a.feature, "kind": a.kind, "description": a.description}
            for a in statistics.schema_anomalies(stats["current"], schema)
        ]
    skew = evidence.skew(config, model_version, current.records, schema, stats.get("current"))
    data["skew"] = skew.data
    if skew.training is not None:
        stats["training"] = skew.training
    too_few = evidence.enough_predictions(config, len(current.records))
    too_few_before = evidence.enough_predictions(config, len(previous.records))
    if too_few or too_few_before:
        data["drift"] = _not_computed(too_few or f"previous window: {too_few_before}")
    else:
        stats["previous"] = statistics.compute(r["features"] for r in previous.records)
        distances = statistics.drift(stats["previous"], stats["current"], schema, config)
        data["drift"] = statistics.distances_json(distances, baseline=f"previous window {data['previous_window']['start']}")

    labels = labels_lib.read(labels_root or config.labels_root)
    offline = evidence.offline_metrics(config, list(counts))
    live = live_lib.by_version(current.records, labels, config, offline)
    data["labels"] = {"files": labels.files, "invalid_lines": labels.invalid_lines, "joined": sum(m.labeled for m in live.values())}
    note = label_metrics.binary_only_note(features.active().label)
    if note is not None:  # a multi-class label: delivered values outside its classes, and what is not measured
        data["labels"]["outside_classes"] = labels.outside_classes
        data["binary_only"] = note
    data["live_metrics"] = {v: {**m.to_json(), "evaluation": offline.get(v, {})} for v, m in live.items()}
    own = [r for r in current.records if r["model_version"] == model_version]
    realized = data["live_metrics"].get(model_version) or live_lib.measure(0, [], config).to_json()
    data["estimated"] = evidence.estimated(config, model_version, own, realized, offline.get(model_version))

    alerts = [name for name, hit in (
        ("anomalies", data["anomalies"]),
        ("skew", data["skew"]["flagged"]),
        ("drift", data["drift"]["flagged"]),
        ("performance", [v for v, m in live.items() if m.low]),
        ("estimated_performance", data["estimated"]["low"]),
    ) if hit]
    data["alerts"] = alerts
    data["not_judged"] = [f"{name}: {data[name]['reason']}" for name in ("skew", "drift") if not data[name]["available"]] + [
        f"live accuracy of version {v}: {m.reasons[0]}" for v, m in live.items() if m.state == live_lib.TOO_FEW_LABELS
    ]
    if current.records and data["estimated"]["state"] != estimate_lib.TRUSTED:
        data["not_judged"].append(f"estimated accuracy of version {model_version}: {'; '.join(data['estimated']['reasons'])}")
    if not current.records:
        data["status"] = NO_TRAFFIC
    else:
        data["status"] = ALERT if alerts else OK
    data["ok"] = data["status"] == OK

    out_dir = Path(out_dir or config.monitoring_root / end.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ"))
    data["report"] = str(out_dir / REPORT_FILE)
    result = MonitoringResult(data, out_dir, stats)
    _write(result)
    return result


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


def _estimate_line(d: dict[str, Any]) -> str:
    """"accuracy of version V before labels: estimated 0.871 +- 0.015 (...), realized 0.866 on 412 labels; auc ..."."""
    e = d["estimated"]
    m = d["live_metrics"].get(e["version"]) or {}
    if m.get("accuracy") is not None:
        realized = f"realized {m['accuracy']:.3f} on {m['labeled']} labels"
    else:
        realized = f"realized n/a ({(m.get('reasons') or ['no labelled predictions'])[0]})"
    line = f"accuracy of version {e['version']}: {estimate_lib.describe(e)}, {realized}"
    if "binary_only" in d:
        line += "; auc n/a (binary-only)"
    elif e["state"] != estimate_lib.NOT_ESTIMATED:
        auc = "n/a (one class expected)" if e["auc"] is None else f"{e['auc']:.3f}" + (" NOT TRUSTED" if e["state"] == estimate_lib.UNTRUSTED else "")
        realized_auc = f"{m['auc']:.3f}" if m.get("auc") is not None else "n/a (too few labels of a class)" if m.get("labeled") else "n/a"
        line += f"; auc estimated {auc}, realized {realized_auc}"
    if e["low"]:
        line += f": {'; '.join(e['reasons'])}"
    elif e.get("superseded"):
        line += f" ({e['superseded']})"
    return line


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
            lines.append(f"{name}: not judged ({part['reason']})")
    for version, m in d["live_metrics"].items():
        accuracy = "-" if m["accuracy"] is None else f"{m['accuracy']:.4f}"
        offline = "-" if m["offline_accuracy"] is None else f"{m['offline_accuracy']:.4f}"
        auc = "n/a (binary-only)" if "binary_only" in d else "-" if m["auc"] is None else f"{m['auc']:.4f}"
        verdict = "; ".join(m["reasons"]) if m["reasons"] else m["state"]
        lines.append(
            f"live metrics, version {version}: {m['labeled']} of {m['predictions']} labelled, accuracy {accuracy} "
            f"(offline {offline}, floor {m['floor']}), auc {auc}: {verdict}"
        )
    if w["predictions"]:
        lines.append(_estimate_line(d))
    if d["labels"].get("outside_classes"):
        lines.append(f"labels: {d['labels']['outside_classes']} delivered values outside the label's classes, skipped")
    if not d["live_metrics"]:
        lines.append(f"live metrics: no predictions to join labels to ({d['labels']['files']} label files)")
    head = {OK: "OK", NO_TRAFFIC: "NO TRAFFIC: nothing was served in the window, nothing judged"}.get(
        d["status"], "ALERT: " + ", ".join(d["alerts"])
    )
    if d["status"] == OK and d["not_judged"]:
        head += " (not judged: " + "; ".join(d["not_judged"]) + ")"
    lines.append(f"{head}   result: {result.out_dir / RESULT_FILE}   report: {d['report']}")
    return "\n".join(lines)
