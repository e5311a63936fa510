"""What the served traffic says about one model version: live metrics and skew against its training data.

Used by `conveyor monitor` for its window and by the CT controller for the serving version since it
went live, so both judge with the same measures and thresholds:
  - live metrics and their verdict: monitoring/live.py, against the version's offline accuracy;
  - skew: TFDV statistics of the version's logged features against its training statistics
    (DataGate's statistics of the newest span it was trained on), scored by pipeline/drift.py with
    the thresholds DataGate uses, on at least `monitor_min_predictions` predictions;
  - estimated performance before labels (monitoring/estimate.py, CBPE with the version's
    calibration, monitoring/version_calibration.py), on as many predictions; judged (`low`) only
    while the labels that arrived are too few for the live rules, which decide once they are enough.
A version's offline metrics and training statistics are read from its push record in the serving
root (pipeline/versions.py), the same way on a local home and from a cluster's bucket; for a version
published before push records carried them, from its lineage in ML Metadata where this home has it.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from metadata import registry
from models import label_metrics
from monitoring import estimate as estimate_lib
from monitoring import live as live_lib
from monitoring import statistics, version_calibration
from monitoring.labels import Labels
from pipeline import versions
from pipeline.configs import PipelineConfig
from schema import versions as schema_versions
from serving.request_log import Record

NO_TRAFFIC, TOO_FEW, NO_BASELINE, SCORED = "no_traffic", "too_few_predictions", "no_baseline", "scored"


def _recorded(config: PipelineConfig, version: str, key: str) -> Any:
    return (versions.read_record(config.serving_root_uri, version) or {}).get(key)


def offline_metrics(config: PipelineConfig, wanted: list[str]) -> dict[str, dict[str, float]]:
    """version -> the Evaluator's overall metrics of that version (versions without one are left out)."""
    found = {v: m for v in wanted if isinstance(m := _recorded(config, v, versions.OFFLINE_METRICS), dict)}
    missing = [v for v in wanted if v not in found]  # published before push records carried them
    older = [e for e in registry.list_versions(config) if e.version in missing and e.evaluation_uri] if missing else []
    if older:
        from pipeline import evaluation

        found.update({e.version: evaluation.load_evaluation(e.evaluation_uri).metrics.get(evaluation.OVERALL, {}) for e in older})
    return found


def training_statistics(config: PipelineConfig, version: str | None) -> tuple[str | None, str | None]:
    """(uri, None) of the training statistics of `version`, or (None, why not)."""
    if version is None:
        return None, "no model version answered and none is pushed"
    uri = _recorded(config, version, versions.TRAINING_STATISTICS)
    if uri:
        return str(uri), None
    try:
        entry = registry.find(config, version)
    except LookupError as exc:
        return None, str(exc)
    if entry.training_statistics_uri is None:
        return None, f"neither the push record of version {version} nor ML Metadata names its training statistics"
    return entry.training_statistics_uri, None


def enough_predictions(config: PipelineConfig, count: int) -> str | None:
    """Why `count` predictions are too few to score distances on (None when they are enough)."""
    if count == 0:
        return "no predictions"
    if count < config.monitor_min_predictions:
        return f"{count} predictions; distances need {config.monitor_min_predictions}"
    return None


def estimated(
    config: PipelineConfig, version: str | None, records: list[Record], live: dict[str, Any], offline: dict[str, float] | None
) -> dict[str, Any]:
    """The CBPE estimate of `version` on its `records`, beside its `live` metrics (LiveMetrics JSON).
    The version is calibrated (once, then cached) only when there are enough predictions to estimate."""
    offline_accuracy = (offline or {}).get(label_metrics.active().accuracy)
    calibration, why_not = None, None
    if len(records) >= config.monitor_min_predictions:
        calibration, why_not = version_calibration.for_version(config, version)
    found = {"version": version, **estimate_lib.estimate(config, records, calibration, why_not, offline_accuracy)}
    if found["low"] and live["state"] != live_lib.TOO_FEW_LABELS:  # the labels are in: the live rules decide
        found["low"], found["superseded"] = False, f"{live['labeled']} labels: the realized accuracy is judged instead"
    return found


@dataclass
class Skew:
    data: dict[str, Any]  # JSON: state, available, reason or baseline + features + flagged
    current: Any = None  # the records' statistics (DatasetFeatureStatisticsList), when computed
    training: Any = None


def skew(config: PipelineConfig, version: str | None, records: list[Record], schema: Any, current: Any = None) -> Skew:
    """Skew of `records`' features (their statistics: `current`, computed if None) against the
    training statistics of `version`."""
    too_few = enough_predictions(config, len(records))
    if too_few:
        state = NO_TRAFFIC if not records else TOO_FEW
        return Skew({"state": state, "available": False, "reason": too_few, "features": [], "flagged": []})
    current = current if current is not None else statistics.compute(r["features"] for r in records)
    uri, why_not = training_statistics(config, version)
    if uri is None:
        return Skew({"state": NO_BASELINE, "available": False, "reason": why_not, "features": [], "flagged": []}, current)
    training = statistics.load_statistics(uri)
    scores = statistics.skew(training, current, schema, config)
    data = {"state": SCORED, **statistics.distances_json(scores, f"training statistics of version {version}: {uri}")}
    return Skew(data, current, training)


def for_version(
    config: PipelineConfig, version: str, records: list[Record], labels: Labels, since: datetime, until: datetime,
    estimate: bool = True,
) -> dict[str, Any]:
    """The evidence about `version` in its `records` (the ones it answered in [since, until)), with
    its CBPE estimate if `estimate`."""
    own = [r for r in records if r["model_version"] == version]
    offline = offline_metrics(config, [version]).get(version)
    pairs = live_lib.labelled(own, labels)
    performance = live_lib.measure(len(own), pairs, config, offline).to_json()
    if performance["offline_accuracy"] is None:
        performance["offline_unknown"] = (
            f"no offline accuracy for version {version} in its push record or ML Metadata: judged against the floor only"
        )
    schema = statistics.load_schema(schema_versions.in_force(config.home, config.schema_path))
    found = {
        "version": version,
        "since": since.isoformat(),
        "until": until.isoformat(),
        "predictions": len(own),
        "performance": performance,
        "skew": skew(config, version, own, schema).data,
    }
    if estimate:
        found["estimated"] = estimated(config, version, own, performance, offline)
    if found["skew"]["flagged"]:  # is the skew in the traffic whose labels arrived, what a retrain would learn from?
        found["labelled_skew"] = skew(config, version, [r for r, _ in pairs], schema).data
    return found
