"""What the CT controller looks at on each tick. Every check returns its inputs and its evidence.

Performance and drift are judged by the monitoring code (monitoring/evidence.py, the same measures
and thresholds as `conveyor monitor` and DataGate) on the serving version's own traffic in its
evidence window: from when it went live (its push, or the rollback or cleared rollback that made it
serve: serving/rollback.py `live_since`) or from the end of the newest feedback span, whichever is
later. Predictions become a feedback span when a trigger acts on them, so each piece of evidence
fires at most once, and a new version starts with an empty window. An estimated drop (no labels
yet, so no feedback span) and drift are marked as acted on for their window in the decision log.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from ct import feedback
from ct.decisions import Decision
from data.spans_io import FEEDBACK, UPSTREAM
from metadata import connection, runs, spans
from monitoring import evidence, live
from monitoring import labels as labels_lib
from pipeline import versions
from pipeline.configs import PipelineConfig
from serving import request_log, rollback

HOUR = 3600.0


def schedule(config: PipelineConfig, now: float, history: list[Decision]) -> dict[str, Any]:
    """Due when no run has been launched (by CT or anyone: ML Metadata's newest run, or the newest
    push, which is all a cluster tick sees of runs CT did not launch) for ct_schedule_hours."""
    launched = [d.time for d in history if d.launched]
    pushed = versions.ready_versions(config.serving_root_uri)
    launched += [versions.published_at(config.serving_root_uri, pushed[-1])] if pushed else []
    if connection.store_exists(config):
        newest = runs.latest_run_time(connection.open_store(connection.connection_config(config)), config.pipeline_name)
        launched += [newest] if newest is not None else []
    last = max(launched, default=None)
    due = last is None or now - last >= config.ct_schedule_hours * HOUR
    return {"due": due, "last_launch": last, "every_hours": config.ct_schedule_hours}


def new_data(config: PipelineConfig, quarantined: set[tuple[str, int]]) -> dict[str, Any]:
    """Spans on disk newer than the newest ingested one, per namespace (minus spans that crashed
    twice). A feedback span is pending only if a tick built it and died before launching it."""
    found = {ns: [s for s in spans.pending(config, ns) if (ns, s) not in quarantined] for ns in (UPSTREAM, FEEDBACK)}
    return {
        "pending_spans": found[UPSTREAM],
        "pending_feedback_spans": found[FEEDBACK],
        "quarantined_spans": sorted(f"{ns}:{s}" for ns, s in quarantined),
    }


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, timezone.utc)


def serving_evidence(config: PipelineConfig, now: float, labels: labels_lib.Labels) -> dict[str, Any] | None:
    """The evidence about the serving version in its evidence window (None: nothing serves)."""
    version = versions.serving_version(config.serving_root_uri)
    if version is None:
        return None
    went_live = _utc(rollback.live_since(config, version))
    consumed = feedback.consumed_until(config)
    since = consumed if consumed is not None and consumed > went_live else went_live
    until = _utc(now)
    window = request_log.read(config.request_log_root, since, until)
    estimate = config.ct_estimated_performance != "off"
    found = evidence.for_version(config, version, window.records, labels, since, until, estimate=estimate)
    found["live_since"] = went_live.isoformat()
    return found


def performance(found: dict[str, Any] | None) -> dict[str, Any]:
    """Low live accuracy of the serving version (monitoring/live.py's verdict) on enough labels."""
    if found is None:
        return {"low": False, "state": "nothing_serving"}
    p = found["performance"]
    return {"version": found["version"], "since": found["since"], "low": p["state"] == live.LOW, **p}


def _acted(trigger: str, found: dict[str, Any], history: list[Decision]) -> bool:
    """A launched decision already acted on `trigger` for this version's evidence window."""
    return any(
        trigger in d.triggers and d.launched
        and d.signals.get(trigger, {}).get("version") == found["version"]
        and d.signals.get(trigger, {}).get("since") == found["since"]
        for d in history
    )


def estimated_performance(config: PipelineConfig, found: dict[str, Any] | None, history: list[Decision]) -> dict[str, Any]:
    """An estimated drop of the serving version's accuracy before its labels arrive (CBPE,
    monitoring/estimate.py, judged by the live rules), once per evidence window: no feedback span is
    built (there are no labels to build it from), so the window it acted on stays marked."""
    action = config.ct_estimated_performance
    if found is None or "estimated" not in found:
        return {"low": False, "state": "nothing_serving" if found is None else "off", "action": action}
    e = found["estimated"]
    acted = _acted("estimated_performance", found, history)
    return {**e, "since": found["since"], "action": action, "low": e["low"] and not acted, "already_acted_on": acted and e["low"]}


def drift(found: dict[str, Any] | None, history: list[Decision]) -> dict[str, Any]:
    """Skew of the serving version's traffic against its training statistics, once per window."""
    if found is None:
        return {"exceeded": [], "state": "nothing_serving"}
    s = found["skew"]
    acted = _acted("drift", found, history)
    flagged = s.get("flagged", [])
    labelled = found.get("labelled_skew") or {}
    return {
        "version": found["version"],
        "since": found["since"],
        "predictions": found["predictions"],
        "state": s["state"],
        "reason": s.get("reason"),
        "exceeded": [] if acted else flagged,
        "already_acted_on": acted and bool(flagged),
        # A retrain learns only from labelled predictions: drift acts once they show the skew too.
        "learnable": sorted(set(flagged) & set(labelled.get("flagged", []))),
        "labelled_reason": (
            f"labelled predictions: {labelled['reason']}" if labelled.get("reason")
            else "" if labelled.get("flagged") else "the labelled predictions are not skewed"
        ),
        "scores": {f"{d['feature']}:{d['measure']}": [round(d["value"], 4), d["threshold"]] for d in s.get("features", [])},
    }
