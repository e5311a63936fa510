"""The Evaluator's configuration and how its results are read back.

TFX leaves a model silently NOT_BLESSED when a threshold names a metric the evaluation does not
produce; `missing_threshold_metrics` turns that into an explicit failure.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import tensorflow_model_analysis as tfma
from google.protobuf import text_format

from models import features
from models.model import PROBABILITY_KEY
from pipeline.configs import PipelineConfig

METRICS = ("ExampleCount", "BinaryAccuracy", "AUC", "Precision", "Recall")
COMPARED_METRICS = ("binary_accuracy", "auc", "precision", "recall")  # shown against the baseline
OVERALL = "overall"


def eval_config(config: PipelineConfig) -> tfma.EvalConfig:
    """Slices, metrics and blessing thresholds for the Evaluator."""
    thresholds = {t.metric: t for t in config.thresholds}
    metrics = []
    for class_name in METRICS:
        name = tfma.metrics.__dict__[class_name]().name
        metric = tfma.MetricConfig(class_name=class_name)
        if name in thresholds:
            rule = thresholds[name]
            threshold = metric.per_slice_thresholds.add()
            threshold.slicing_specs.append(tfma.SlicingSpec())  # overall slice only
            threshold.threshold.CopyFrom(
                tfma.MetricThreshold(
                    value_threshold=tfma.GenericValueThreshold(lower_bound={"value": rule.lower_bound}),
                    change_threshold=(
                        tfma.GenericChangeThreshold(
                            direction=tfma.MetricDirection.HIGHER_IS_BETTER,
                            absolute={"value": -rule.max_drop},
                        )
                        if rule.max_drop is not None
                        else None
                    ),
                )
            )
        metrics.append(metric)
    return tfma.EvalConfig(
        model_specs=[
            tfma.ModelSpec(
                signature_name="serving_default",
                prediction_key=PROBABILITY_KEY,
                label_key=features.LABEL_KEY,
                preprocessing_function_names=["transform_features"],
            )
        ],
        slicing_specs=[tfma.SlicingSpec()]
        + [tfma.SlicingSpec(feature_keys=[key]) for key in features.SLICE_FEATURES],
        metrics_specs=[tfma.MetricsSpec(metrics=metrics)],
    )


def threshold_metric_names(config: tfma.EvalConfig) -> set[str]:
    names = set()
    for spec in config.metrics_specs:
        for metric in spec.metrics:
            if metric.HasField("threshold") or metric.per_slice_thresholds:
                names.add(tfma.metrics.__dict__[metric.class_name]().name)
    return names


@dataclass(frozen=True)
class Evaluation:
    """What one Evaluator run produced, per slice, for the candidate model."""

    metrics: dict[str, dict[str, float]]  # slice name -> metric -> value
    blessed: bool
    failures: list[str]  # human-readable reasons the candidate was not blessed
    # The baseline model's metrics, slice name -> metric -> value ({} when there was no baseline).
    baseline_by_slice: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def baseline(self) -> dict[str, float]:
        """Overall metrics of the baseline model ({} on the first run)."""
        return self.baseline_by_slice.get(OVERALL, {})


def slice_name(slice_key: tuple) -> str:
    if not slice_key:
        return OVERALL
    return ", ".join(f"{k}={v}" for k, v in slice_key)


def slice_order(name: str) -> tuple:
    """Sort key for slice names: overall first, then by feature, numbers in numeric order."""
    if name == OVERALL:
        return (0, "", 0, "")
    feature, _, value = name.partition("=")
    return (1, feature, int(value) if value.lstrip("-").isdigit() else 0, value)


def load_evaluation(output_uri: str) -> Evaluation:
    """Read an Evaluator output directory."""
    result = tfma.load_eval_result(output_uri, output_file_format="tfrecord")
    metrics: dict[str, dict[str, float]] = {}
    baseline: dict[str, float] = {}
    for slice_key, by_output in result.slicing_metrics:
        values = by_output.get("", {}).get("", {})
        candidate = {}
        for name, value in values.items():
            number = value.get("doubleValue")
            if number is None:
                continue
            if name.endswith(" - Baseline") or "_diff" in name:
                continue
            candidate[name] = float(number)  # TFMA writes NaN as the string "NaN"
        metrics[slice_name(slice_key)] = candidate
    validation = tfma.load_validation_result(output_uri)
    failures = []
    for per_slice in validation.metric_validations_per_slice:
        key = slice_name(tfma.slicer.deserialize_slice_key(per_slice.slice_key))
        for failure in per_slice.failures:
            rule = text_format.MessageToString(failure.metric_threshold, as_one_line=True)
            failures.append(
                f"{key}: {failure.metric_key.name} = {failure.metric_value.double_value.value:.4f} fails {rule}"
            )
    if validation.missing_thresholds:
        failures.append("a configured threshold had no metric to check (missing_thresholds)")
    for missing in validation.missing_slices:
        failures.append(f"slice missing from the evaluation: {text_format.MessageToString(missing, as_one_line=True)}")
    return Evaluation(
        metrics=metrics,
        blessed=validation.validation_ok,
        failures=failures,
        baseline_by_slice=_baseline_metrics(output_uri),
    )


def _baseline_metrics(output_uri: str) -> dict[str, dict[str, float]]:
    """The baseline model's metrics per slice, when the Evaluator compared against one."""
    results = tfma.load_metrics(output_uri, output_file_format="tfrecord")
    baseline: dict[str, dict[str, float]] = {}
    for per_slice in results:
        name = slice_name(tfma.slicer.deserialize_slice_key(per_slice.slice_key))
        for kv in per_slice.metric_keys_and_values:
            if kv.key.is_diff or kv.key.model_name != tfma.BASELINE_KEY:
                continue
            if kv.value.HasField("double_value"):
                baseline.setdefault(name, {})[kv.key.name] = kv.value.double_value.value
    return baseline


@dataclass(frozen=True)
class MetricComparison:
    """One metric on one slice: the candidate model against the baseline (None: no value)."""

    slice: str
    metric: str
    candidate: float | None
    baseline: float | None
    diff: float | None  # candidate - baseline


def compare_with_baseline(result: Evaluation, metrics: tuple[str, ...] = COMPARED_METRICS) -> list[MetricComparison]:
    """Each slice (overall first) and metric, candidate next to baseline; baseline None without one."""
    found = []
    for name in sorted(result.metrics, key=slice_order):
        values, base = result.metrics[name], result.baseline_by_slice.get(name, {})
        for metric in metrics:
            candidate, baseline = values.get(metric), base.get(metric)
            diff = candidate - baseline if candidate is not None and baseline is not None else None
            found.append(MetricComparison(name, metric, candidate, baseline, diff))
    return found


def missing_threshold_metrics(config: tfma.EvalConfig, evaluation: Evaluation) -> set[str]:
    """Threshold metric names absent from the overall slice (TFX would silently not bless)."""
    return threshold_metric_names(config) - set(evaluation.metrics.get(OVERALL, {}))
