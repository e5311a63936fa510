"""Live metrics of a served version from the labels that arrived, and what they say about it.

One set of rules, used by `conveyor monitor` (per window) and the CT controller (per version, since
it went live), thresholds in pipeline/configs.py:
  - accuracy (the predicted class against the label) only on at least `live_min_labels` labelled
    predictions, AUC only when each class has at least `live_min_class_labels` (never on one class;
    never for a multi-class label, as its positive rate and mean probability);
  - the verdict (`state`): NO_TRAFFIC (the version answered nothing), TOO_FEW_LABELS, LOW (accuracy
    below `live_min_accuracy`, or more than `live_max_accuracy_drop` below the version's own offline
    accuracy, the Evaluator's overall accuracy of the label's kind) or OK.
The label is the model's: the contract's rule over the logged features and the delivered label
columns (the taxi's: tips > 20 % of the logged fare; a multi-class label's: the delivered value's
index among the classes).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

from models import features, label_metrics
from models.features import CLASS_KEY, PROBABILITY_KEY
from models.scores import auc
from monitoring.labels import Labels, Outcome
from pipeline.configs import PipelineConfig
from serving.request_log import Record

NO_TRAFFIC, TOO_FEW_LABELS, OK, LOW = "no_traffic", "too_few_labels", "ok", "low"


def labelled(records: Iterable[Record], labels: Labels) -> list[tuple[Record, Outcome]]:
    """(record, outcome) for every logged prediction whose outcome arrived and whose features the
    label also reads were logged (the taxi's fare)."""
    reads = features.active().label.reads
    out = []
    for item in records:
        outcome = labels.outcomes.get((item["request_id"], item["index"]))
        if outcome is not None and all({**item["features"], **outcome}.get(c) is not None for c in reads):
            out.append((item, outcome))
    return out


def truth(record: Record, outcome: Any) -> int:
    """The label of a logged prediction given its outcome (see labels.write for its forms)."""
    label = features.active().label
    return label.of_row({**record["features"], **label.outcome(outcome)})


def correct(record: Record, outcome: Any) -> bool:
    """Was the served answer right? (its predicted class: probability > 0.5, or the most probable class)"""
    return int(record["output"][CLASS_KEY]) == truth(record, outcome)


@dataclass(frozen=True)
class LiveMetrics:
    predictions: int  # predictions the version answered in the window
    labeled: int
    accuracy: float | None  # None below live_min_labels
    auc: float | None  # None unless each class has live_min_class_labels labels
    positive_rate: float | None  # share of positive labels among the labelled predictions
    mean_probability: float | None
    state: str  # NO_TRAFFIC | TOO_FEW_LABELS | OK | LOW
    reasons: list[str] = field(default_factory=list)  # why LOW, or what is missing
    offline_accuracy: float | None = None  # the version's own Evaluator accuracy, if known
    floor: float | None = None
    max_drop: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def low(self) -> bool:
        return self.state == LOW


def measure(
    predictions: int, pairs: list[tuple[Record, Outcome]], config: PipelineConfig, offline: dict[str, float] | None = None
) -> LiveMetrics:
    """Live metrics of one version from its `predictions` count and its labelled (record, outcome) pairs."""
    label = features.active().label
    offline_accuracy = (offline or {}).get(label_metrics.of(label).accuracy)
    common = dict(offline_accuracy=offline_accuracy, floor=config.live_min_accuracy, max_drop=config.live_max_accuracy_drop)
    n = len(pairs)
    if predictions == 0:
        return LiveMetrics(0, 0, None, None, None, None, NO_TRAFFIC, ["no predictions"], **common)
    labels = [truth(r, t) for r, t in pairs]
    rate = mean_probability = auc_value = None  # binary-only
    if not label.multiclass:
        scores = [r["output"][PROBABILITY_KEY] for r, _ in pairs]
        positives = sum(labels)
        rate = positives / n if n else None
        mean_probability = sum(scores) / n if n else None
        auc_value = auc(scores, labels) if min(positives, n - positives) >= config.live_min_class_labels else None
    if n < config.live_min_labels:
        why = f"{n} labelled predictions (accuracy needs {config.live_min_labels})"
        return LiveMetrics(predictions, n, None, auc_value, rate, mean_probability, TOO_FEW_LABELS, [why], **common)
    accuracy = sum(int(r["output"][CLASS_KEY]) == t for (r, _), t in zip(pairs, labels)) / n
    reasons = low_accuracy(config, accuracy, offline_accuracy, "live")
    return LiveMetrics(predictions, n, accuracy, auc_value, rate, mean_probability, LOW if reasons else OK, reasons, **common)


def by_version(
    records: list[Record], labels: Labels, config: PipelineConfig, offline: dict[str, dict[str, float]]
) -> dict[str, LiveMetrics]:
    """version -> its live metrics over `records` (every version that answered any of them)."""
    counts: dict[str, int] = {}
    for item in records:
        counts[item["model_version"]] = counts.get(item["model_version"], 0) + 1
    pairs = labelled(records, labels)
    return {
        version: measure(count, [(r, t) for r, t in pairs if r["model_version"] == version], config, offline.get(version))
        for version, count in sorted(counts.items())
    }


def low_accuracy(config: PipelineConfig, accuracy: float, offline_accuracy: float | None, kind: str) -> list[str]:
    """Why an accuracy (`kind`: "live", or "estimated" before the labels) is low by the live rules ([]: it is not)."""
    reasons = []
    if accuracy < config.live_min_accuracy:
        reasons.append(f"{kind} accuracy {accuracy:.3f} below the floor {config.live_min_accuracy}")
    if offline_accuracy is not None and accuracy < offline_accuracy - config.live_max_accuracy_drop:
        reasons.append(f"{kind} accuracy {accuracy:.3f} more than {config.live_max_accuracy_drop} below its offline {offline_accuracy:.3f}")
    return reasons
