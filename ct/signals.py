"""What the CT controller looks at on each tick. Every check returns its inputs and scores."""
from __future__ import annotations

import os
from typing import Any

from ct import feedback
from ct.decisions import Decision
from metadata import connection, runs, spans
from pipeline.configs import PipelineConfig

HOUR = 3600.0


def schedule(config: PipelineConfig, now: float, history: list[Decision]) -> dict[str, Any]:
    """Due when no run has been launched for ct_schedule_hours."""
    launched = [d.time for d in history if d.fired and d.outcome != "busy"]
    last = max(launched, default=None)
    due = last is None or now - last >= config.ct_schedule_hours * HOUR
    return {"due": due, "last_launch": last, "every_hours": config.ct_schedule_hours}


def new_data(config: PipelineConfig, quarantined: set[int]) -> dict[str, Any]:
    """Spans on disk newer than the newest ingested one (minus spans that crashed twice)."""
    pending = [s for s in spans.pending(config) if s not in quarantined]
    return {"pending_spans": pending, "quarantined_spans": sorted(quarantined)}


def _store(config: PipelineConfig):
    return connection.open_store(connection.connection_config(config)) if connection.store_exists(config) else None


def drift(config: PipelineConfig) -> dict[str, Any]:
    """Drift of the incoming feedback's features against the newest validated (trained) span."""
    files = feedback.incoming(config)
    store = _store(config)
    baseline = runs.newest_validated_statistics_uri(store, config.pipeline_name) if store else None
    if not files or baseline is None:
        return {"checked": False, "why": "no feedback" if not files else "no trained span yet", "exceeded": []}
    import tensorflow_data_validation as tfdv
    from tfx.utils import io_utils

    from monitoring import statistics as monitoring_statistics
    from pipeline.components.data_gate import STATS_SPLIT

    current = tfdv.generate_statistics_from_csv(str(feedback.incoming_dir(config) / "*.csv"))
    previous = tfdv.load_stats_binary(io_utils.get_only_uri_in_dir(os.path.join(baseline, f"Split-{STATS_SPLIT}")))
    schema = tfdv.load_schema_text(str(config.schema_path))
    # Served traffic carries no label source (tips arrive later): the serving features only.
    scores = monitoring_statistics.drift(previous, current, schema, config)
    exceeded = [s for s in scores if s.exceeded]
    return {
        "checked": True,
        "baseline": baseline,
        "feedback_files": [f.name for f in files],
        "exceeded": sorted({s.feature for s in exceeded}),
        "scores": {f"{s.feature}:{s.measure}": round(s.value, 4) for s in scores},
    }


def performance(config: PipelineConfig) -> dict[str, Any]:
    """Live accuracy from labelled feedback vs an absolute floor and vs the blessed model's offline accuracy."""
    rows = feedback.labelled_rows(feedback.incoming(config))
    live = feedback.live_accuracy(rows)
    store = _store(config)
    offline = None
    uri = runs.latest_blessed_evaluation_uri(store, config.pipeline_name) if store else None
    if uri:
        from pipeline.evaluation import OVERALL, load_evaluation

        offline = load_evaluation(uri).metrics.get(OVERALL, {}).get("binary_accuracy")
    enough = len(rows) >= config.ct_min_feedback
    low = enough and live is not None and (
        live < config.ct_min_live_accuracy
        or (offline is not None and live < offline - config.ct_max_accuracy_drop)
    )
    return {
        "labelled_rows": len(rows),
        "min_rows": config.ct_min_feedback,
        "live_accuracy": live,
        "offline_accuracy": offline,
        "floor": config.ct_min_live_accuracy,
        "max_drop": config.ct_max_accuracy_drop,
        "low": bool(low),
    }
