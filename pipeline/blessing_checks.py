"""What a blessing verdict rests on, with the figures: each threshold the Evaluator gated and what
the candidate scored against it (docs/pipeline.md#blessing).

The thresholds are the Evaluator's own, from its `eval_config` as ML Metadata recorded it (an
execution property: the EvalConfig as JSON), the gate from its `blessing_gate` property, and the
figures from the evaluation (`evaluation.load_evaluation`), so nothing here imports TFMA and an
explanation always matches the thresholds the model was judged by, whatever the settings are now.
The verdict itself is the one the Evaluator recorded (`verdict.json`); these lines only show it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from models.label_metrics import METRIC_NAMES
from pipeline.evaluation import NOT_AVAILABLE, OVERALL, Evaluation, Gate, not_gated_reason, undefined_reason


@dataclass(frozen=True)
class Threshold:
    """One gated metric, as the Evaluator was configured (None: that check is not configured)."""

    metric: str
    floor: float | None = None  # overall
    max_drop: float | None = None  # overall, against the baseline
    slice_max_drop: float | None = None  # on each slice of `slice_features`, against the baseline
    slice_features: tuple[str, ...] = ()


def recorded_thresholds(eval_config: dict[str, Any]) -> list[Threshold]:
    """The thresholds of a recorded EvalConfig (JSON with the proto's field names), in its order."""
    found: dict[str, Threshold] = {}
    for spec in eval_config.get("metrics_specs", []):
        for metric in spec.get("metrics", []):
            name = METRIC_NAMES.get(metric.get("class_name", ""), metric.get("class_name", ""))
            for per_slice in metric.get("per_slice_thresholds", []):
                threshold = per_slice.get("threshold", {})
                floor = threshold.get("value_threshold", {}).get("lower_bound")
                change = threshold.get("change_threshold", {}).get("absolute")
                drop = -float(change) if change is not None else None
                keys = tuple(key for s in per_slice.get("slicing_specs", []) for key in s.get("feature_keys", []))
                current = found.get(name, Threshold(name))
                if keys:
                    found[name] = replace(current, slice_max_drop=drop, slice_features=keys)
                else:
                    found[name] = replace(current, floor=None if floor is None else float(floor), max_drop=drop)
    return list(found.values())


def explain(result: Evaluation, thresholds: list[Threshold], gate: Gate) -> list[str]:
    """Per threshold metric, a line on the overall slice (its floor, its change against the
    baseline) and a line on the slices (the largest drop among the gated ones)."""
    overall, base = result.metrics.get(OVERALL, {}), result.baseline
    lines = []
    for threshold in thresholds:
        metric = threshold.metric
        value = overall.get(metric)
        if value is None:
            lines.append(f"overall {metric}: not in the evaluation")
            continue
        undefined = undefined_reason(metric, value, overall)
        if undefined is not None:
            parts = [f"{NOT_AVAILABLE} ({undefined})"]
        else:
            parts = [f"{value:.4f}" + (f" {'>=' if value >= threshold.floor else '<'} floor {threshold.floor:g}" if threshold.floor is not None else "")]
            if threshold.max_drop is not None and metric in base:
                parts.append(
                    f"{value - base[metric]:+.4f} against the baseline's {base[metric]:.4f} (a drop of at most {threshold.max_drop:g} allowed)"
                )
        excuse = not_gated_reason(OVERALL, metric, overall, gate)
        lines.append(f"overall {metric} " + "; ".join(parts) + (f"; {excuse}" if excuse else ""))
        if threshold.slice_max_drop is not None and base:
            lines.append(_slices_line(result, threshold, gate))
    if thresholds and not base:
        lines.append("no baseline (nothing was serving): only the floors apply")
    return lines


def _slices_line(result: Evaluation, threshold: Threshold, gate: Gate) -> str:
    """The largest drop against the baseline among the slices the rule gated for this metric."""
    metric, allowed = threshold.metric, threshold.slice_max_drop
    slices = [name for name in result.metrics if name != OVERALL and name.partition("=")[0] in threshold.slice_features]
    changes = []
    for name in slices:
        values, base = result.metrics[name], result.baseline_by_slice.get(name, {})
        if metric in values and metric in base and not_gated_reason(name, metric, values, gate) is None:
            change = values[metric] - base[metric]
            if not math.isnan(change):
                changes.append((change, name))
    head = f"slices  {metric}"
    if not changes:
        return f"{head}: none of {len(slices)} slices gated (each too small: docs/pipeline.md#blessing)"
    change, name = min(changes)
    examples = result.metrics[name].get("example_count", 0)
    return (
        f"{head} worst {change:+.4f} on {name} ({examples:.0f} examples; a drop of at most {allowed:g} allowed), "
        f"{len(changes)} of {len(slices)} slices gated"
    )
