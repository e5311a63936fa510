"""The model card: what a reviewer signs off, as JSON with the Model Card Toolkit's field names and as
one self-contained HTML page (templates/model_card.html.j2).

The Model Card Toolkit itself cannot be installed beside TFX 1.21 (it pins older TFMA, absl-py,
jsonschema and protobuf), so the card follows its schema (`model_card.schema.json` v0.0.2) by
hand: the top-level sections `model_details`, `model_parameters`, `quantitative_analysis` and
`considerations` and their field names (`performance_metrics` of `type`, `value`, `slice`;
`limitations` of `description`; ...). What the schema has no field for is added inside those
sections (the schema closes only the top level): `confidence_interval` on a metric (the name later
versions of the schema use), `model_details.lineage`, `quantitative_analysis.fairness`,
`.feature_importance` and `.blessing`, the attribution baseline the server's `:explain` uses.

`build` assembles a card from what the ModelCard component read (pipeline/components/model_card.py);
`finalize` names the pushed version and its date (Publish, pipeline/components/push.py); `render`
makes the page from the JSON alone, so the JSON and the page never disagree.
"""
from __future__ import annotations

import datetime
import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from models import features, label_metrics
from models.contract import Contract
from pipeline import blessing_checks, evaluation, pages
from pipeline.evaluation import OVERALL, Evaluation, Gate, slice_order
from pipeline.fairness import FairnessRow

if TYPE_CHECKING:
    from pipeline.statistics_summary import FeatureSummary

SCHEMA_VERSION = "0.0.2"
NOT_PUSHED = "not pushed"
LABELS = {
    "example_count": "examples", "binary_accuracy": "accuracy", "sparse_categorical_accuracy": "accuracy",
    "auc": "AUC", "precision": "precision", "recall": "recall",
    "fpr": "false positive rate", "fnr": "false negative rate", "predicted_positive_rate": "selection rate",
}
OVERVIEW = (
    "Predicts whether a Chicago taxi rider tips more than 20 % of the fare (a big tipper) from the trip as the "
    "meter records it: when, where, how far, how long, the fare, the payment type and the company."
)
ARCHITECTURE = (
    "Keras network (models/model.py): z-scored log fare, miles and seconds, one embedding per categorical "
    "feature (quantile buckets of coordinates, vocabularies of payment type and company, hour, day, month, "
    "community areas, a hashed census tract), dense layers, a sigmoid output; the tf.Transform graph inside."
)


@dataclass
class SpanFacts:
    label: str  # spans_io.label: "1", "feedback-2"
    train_rows: int
    eval_rows: int
    label_rate: float | None  # share of the span's training examples with the positive label


@dataclass
class CardFacts:
    """Everything a card says, as the ModelCard component gathered it."""

    model_name: str
    pipeline_name: str
    code_version: str
    trigger: str
    intended_use: str
    limitations: list[str]  # configured sentences
    run_id: str | None
    lineage: dict[str, Any]  # model, window spans, evaluation, baseline: ids and URIs
    spans: list[SpanFacts]
    statistics: list[FeatureSummary]  # TFDV, the window's training split
    estimates: dict[str, dict[str, Any]]  # slice -> metric -> card_metrics.Estimate
    evaluation: Evaluation  # the Evaluator's: AUC, the baseline, the verdict
    thresholds: list[blessing_checks.Threshold]
    gate: Gate
    baseline_version: str | None
    infra: dict[str, Any]  # passed, checked, failure
    fairness: list[FairnessRow]
    importance_auc: float | None
    importance: list[dict[str, Any]]  # feature, auc_drop
    attribution_baseline: dict[str, Any]
    data_limitations: list[str] = field(default_factory=list)  # what the data shows
    # Why the candidate was not asked through its served signature (InfraCheck refused it, or a
    # multi-class label's): the permutation importance is then not computed.
    unanswered: str | None = None


def metrics() -> tuple[str, ...]:
    """The metrics a card shows per slice: the active label's (models/label_metrics.py)."""
    metric_set = label_metrics.active()
    return metric_set.shown + metric_set.names(metric_set.fairness)


def _metric_entries(facts: CardFacts) -> list[dict[str, Any]]:
    """performance_metrics: each slice (natural order) and metric, with its interval; an undefined
    metric has no value and says why."""
    entries = []
    for name in sorted(facts.estimates, key=slice_order):
        estimates, counts = facts.estimates[name], facts.evaluation.metrics.get(name, {})
        for metric in metrics():
            estimate = estimates.get(metric)
            value = counts.get(metric) if metric == "auc" else estimate.value if estimate else None
            if value is None:
                continue
            entry: dict[str, Any] = {"type": metric, "slice": name}
            undefined = evaluation.undefined_reason(metric, value, counts or {"example_count": estimates["example_count"].value})
            if undefined:
                entry["undefined"] = undefined
            else:
                entry["value"] = value
                if estimate is not None and metric != "auc" and estimate.lower is not None:
                    entry["confidence_interval"] = {"lower_bound": estimate.lower, "upper_bound": estimate.upper}
            entries.append(entry)
    return entries


def _blessing(facts: CardFacts) -> dict[str, Any]:
    result = facts.evaluation
    passed = result.blessed and facts.infra.get("passed", False)
    return {
        "blessed": result.blessed,
        "verdict": "blessed: every gated threshold met" if result.blessed else "not blessed",
        "why": blessing_checks.explain(result, facts.thresholds, facts.gate) if result.blessed else result.failures,
        "not_gated": result.not_gated,
        "infra_check": facts.infra,
        "pushable": passed,
        "baseline_version": facts.baseline_version,
    }


def describe(contract: Contract) -> tuple[str, str]:
    """The card's overview and architecture: the taxi's texts, or what another contract says."""
    if features.is_default(contract):
        return OVERVIEW, ARCHITECTURE
    rule = contract.label
    target = (f"{rule.column} is {rule.positive!r}" if rule.positive else f"{rule.column} is 1") if rule.kind == "column" else (
        f"{rule.value} is more than {rule.fraction:g} x {rule.of}")
    kinds = ", ".join(f"{kind} of {', '.join(f.name for f in contract.with_transform(kind))}"
                      for kind in dict.fromkeys(f.transform for f in contract.features))
    return (f"Predicts whether {target} ({rule.name}) from {', '.join(contract.model_features)} "
            f"(the feature contract {contract.model_name}).",
            f"Keras network (models/model.py) over the contract's transforms ({kinds}), dense layers, a sigmoid output; "
            "the tf.Transform graph inside.")


def build(facts: CardFacts) -> dict[str, Any]:
    """The card as JSON-ready data (version: not pushed, until `finalize`)."""
    overview, architecture = describe(features.active())
    return {
        "schema_version": SCHEMA_VERSION,
        "model_details": {
            "name": facts.model_name,
            "overview": overview,
            "documentation": facts.intended_use,
            "owners": [{"name": facts.pipeline_name}],
            "version": {"name": NOT_PUSHED, "date": "", "diff": _diff(facts)},
            "code_version": facts.code_version,
            "trigger": facts.trigger,
            "run_id": facts.run_id,
            "lineage": facts.lineage,
        },
        "model_parameters": {
            "model_architecture": architecture,
            "data": [
                {
                    "name": "training window",
                    "description": ", ".join(f"span {s.label}: {s.train_rows:,} training and {s.eval_rows:,} eval examples" for s in facts.spans),
                    "spans": [vars(s) for s in facts.spans],
                    "statistics": [vars(s) for s in facts.statistics],
                }
            ],
            "input_format": "serialized tf.Example (or JSON features) with the serving features of models/features.py",
            "output_format": _output_format(),
            "attribution_baseline": facts.attribution_baseline,
        },
        "quantitative_analysis": {
            "performance_metrics": _metric_entries(facts),
            "fairness": [row.to_json() for row in facts.fairness],
            "feature_importance": {"method": "permutation", "auc": facts.importance_auc, "features": facts.importance,
                                   **({"not_computed": facts.unanswered} if facts.unanswered else {})},
            **({"binary_only": note} if (note := label_metrics.binary_only_note(features.active().label)) else {}),
            "blessing": _blessing(facts),
        },
        "considerations": {
            "users": [{"description": "people deciding whether this version may serve: reviewers, operators"}],
            "use_cases": [{"description": facts.intended_use}],
            "limitations": [{"description": text} for text in facts.limitations + facts.data_limitations],
            "ethical_considerations": [
                {"name": row.sentence(), "mitigation_strategy": "the fairness gate of the blessing (docs/pipeline.md#fairness)"}
                for row in facts.fairness if row.flagged
            ],
        },
    }


def _diff(facts: CardFacts) -> str:
    base, overall = facts.evaluation.baseline, facts.evaluation.metrics.get(OVERALL, {})
    if not base:
        return "first version: nothing was serving"
    accuracy = label_metrics.active().accuracy
    changes = [f"{m} {overall[m] - base[m]:+.4f}" for m in (accuracy, "auc") if m in overall and m in base]
    which = f"version {facts.baseline_version}" if facts.baseline_version else "the model serving then"
    return f"against {which}: " + ", ".join(changes)


def finalize(card: dict[str, Any], version: str) -> dict[str, Any]:
    """The card of pushed `version` (its name is the Unix second of its push: the date)."""
    day = datetime.datetime.fromtimestamp(int(version), datetime.timezone.utc).date().isoformat()
    details = {**card["model_details"], "version": {**card["model_details"]["version"], "name": version, "date": day}}
    return {**card, "model_details": details}


def _finite(value: Any) -> Any:
    """`value` with every NaN or infinite float (a TFDV figure of an empty feature) as None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def dumps(card: dict[str, Any]) -> str:
    """The card's JSON: NaN is no JSON, so a figure that is not a number is null (an undefined
    metric has no value and says why, see `_metric_entries`)."""
    return json.dumps(_finite(card), indent=1, sort_keys=True, allow_nan=False)


def _output_format() -> str:
    label = features.active().label
    if label.multiclass:
        return f"probabilities of the classes {', '.join(label.class_names)} (in that order), and predicted_class (the most probable one's index)"
    return "probability of a big tip, and predicted_class (probability > 0.5)"


def _interval(entry: dict[str, Any]) -> str:
    bounds = entry.get("confidence_interval")
    return f"[{bounds['lower_bound']:.3f}, {bounds['upper_bound']:.3f}]" if bounds else ""


def render(card: dict[str, Any]) -> str:
    """The card's HTML page, from its JSON alone."""
    rows: dict[str, dict[str, dict[str, Any]]] = {}
    for entry in card["quantitative_analysis"]["performance_metrics"]:
        rows.setdefault(entry["slice"], {})[entry["type"]] = entry
    return pages.render(
        "pipeline",
        "model_card.html.j2",
        card=card,
        details=card["model_details"],
        data=card["model_parameters"]["data"][0],
        qa=card["quantitative_analysis"],
        considerations=card["considerations"],
        metric_rows=sorted(rows.items(), key=lambda kv: slice_order(kv[0])),
        metrics=metrics(),
        labels=LABELS,
        interval=_interval,
        isnan=math.isnan,
    )
