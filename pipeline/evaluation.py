"""The Evaluator's configuration, the blessing rule, and how results are read back.

TFMA computes the compared metrics per slice for the candidate and the baseline, and the counts
for the candidate alone, and checks the thresholds configured here (pipeline/configs.py
`thresholds`): on the overall slice a floor and a largest drop against the baseline; on every slice
of the slice features a largest drop against the baseline.
`judge` then decides which of TFMA's failures count (the rule, applied by
pipeline/components/gated_evaluator.py):

  - a feature slice with fewer than `min_slice_examples` eval examples is not gated (its metrics
    move by more than any sensible bound from a handful of examples);
  - AUC, precision and recall are not gated on a slice with fewer than `min_class_examples`
    examples of either class: there they are undefined (one class present: TFMA reports AUC 0.0)
    or too noisy. The other metrics still gate, so such a candidate is judged on accuracy;
  - an eval split with no examples, or a threshold TFMA could not check, refuses the candidate.

Every refusal and every check that was not gated is written out as a sentence (`verdict.json` in
the evaluation) for the run summary, the CT decision and `conveyor models`. TFX would leave a
model silently NOT_BLESSED when a threshold names a metric the evaluation does not produce;
`missing_threshold_metrics` turns that into an explicit failure.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

import tensorflow_model_analysis as tfma

from models import features
from models.model import PROBABILITY_KEY
from pipeline.configs import PipelineConfig


def metric_name(class_name: str) -> str:
    """The name TFMA gives the results of a metric class (BinaryAccuracy -> binary_accuracy)."""
    return tfma.metrics.__dict__[class_name]().name


# Computed for the candidate and the baseline, shown side by side and gated.
COMPARED_METRIC_CLASSES = ("BinaryAccuracy", "AUC", "Precision", "Recall")
COMPARED_METRICS = tuple(metric_name(c) for c in COMPARED_METRIC_CLASSES)
# Computed for the candidate alone (unless a threshold names one): its eval examples per slice and,
# as true positives + false negatives at 0.5, its positive ones. Those two read the confusion
# matrices BinaryAccuracy, Precision and Recall build anyway; MeanLabel would add a combiner per
# model, example and slice (1.7-1.9 CPU s of an Evaluator with a baseline, docs/benchmarks.md).
COUNT_METRIC_CLASSES = ("ExampleCount", "TruePositives", "FalseNegatives")
NEEDS_BOTH_CLASSES = ("auc", "precision", "recall")
OVERALL = "overall"
VERDICT_FILE = "verdict.json"


def _change(max_drop: float) -> tfma.GenericChangeThreshold:
    return tfma.GenericChangeThreshold(direction=tfma.MetricDirection.HIGHER_IS_BETTER, absolute={"value": -max_drop})


def eval_config(config: PipelineConfig) -> tfma.EvalConfig:
    """Slices, metrics and blessing thresholds for the Evaluator."""
    thresholds = {t.metric: t for t in config.thresholds}
    compared, counts = [], []
    for class_name in COUNT_METRIC_CLASSES + COMPARED_METRIC_CLASSES:
        name = metric_name(class_name)
        metric = tfma.MetricConfig(class_name=class_name)
        if name in thresholds:
            rule = thresholds[name]
            overall = metric.per_slice_thresholds.add()
            overall.slicing_specs.append(tfma.SlicingSpec())
            overall.threshold.value_threshold.lower_bound.value = rule.lower_bound
            if rule.max_drop is not None:
                overall.threshold.change_threshold.CopyFrom(_change(rule.max_drop))
            if rule.slice_max_drop is not None:
                by_slice = metric.per_slice_thresholds.add()
                by_slice.slicing_specs.extend(tfma.SlicingSpec(feature_keys=[key]) for key in features.SLICE_FEATURES)
                by_slice.threshold.change_threshold.CopyFrom(_change(rule.slice_max_drop))
        (compared if class_name in COMPARED_METRIC_CLASSES or name in thresholds else counts).append(metric)
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
        # TFX's Evaluator names the models candidate and baseline when there is a baseline; with
        # the candidate alone, TFMA applies every spec to it.
        metrics_specs=[tfma.MetricsSpec(metrics=compared)]
        + ([tfma.MetricsSpec(metrics=counts, model_names=[tfma.CANDIDATE_KEY])] if counts else []),
    )


def threshold_metric_names(config: tfma.EvalConfig) -> set[str]:
    names = set()
    for spec in config.metrics_specs:
        for metric in spec.metrics:
            if metric.HasField("threshold") or metric.per_slice_thresholds:
                names.add(metric_name(metric.class_name))
    return names


@dataclass(frozen=True)
class Gate:
    """What `judge` needs besides TFMA's result (from pipeline/configs.py)."""

    min_slice_examples: int
    min_class_examples: int

    @classmethod
    def from_config(cls, config: PipelineConfig) -> "Gate":
        return cls(config.min_slice_examples, config.min_class_examples)


@dataclass(frozen=True)
class Failure:
    """One threshold TFMA found broken."""

    slice: str
    metric: str
    change: bool  # True: a change threshold against the baseline; False: a floor
    value: float  # the metric (floor) or candidate - baseline (change)
    bound: float  # the floor, or the largest accepted drop


@dataclass(frozen=True)
class TfmaResult:
    """What TFMA computed and checked, per slice."""

    metrics: dict[str, dict[str, float]]  # slice name -> metric -> value, the candidate's
    baseline_by_slice: dict[str, dict[str, float]]
    failures: list[Failure]
    unchecked: list[str]  # thresholds or slices TFMA could not check


@dataclass(frozen=True)
class Verdict:
    blessed: bool
    refusals: list[str]  # why the candidate is not blessed, one sentence each
    not_gated: list[str]  # failed checks the rule did not count, and why


@dataclass(frozen=True)
class Evaluation:
    """What one Evaluator run produced, per slice, for the candidate model, and the verdict."""

    metrics: dict[str, dict[str, float]]  # slice name -> metric -> value
    blessed: bool
    failures: list[str]  # human-readable reasons the candidate was not blessed
    # The baseline model's metrics, slice name -> metric -> value ({} when there was no baseline).
    baseline_by_slice: dict[str, dict[str, float]] = field(default_factory=dict)
    not_gated: list[str] = field(default_factory=list)  # checks the blessing rule did not count

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


def load_tfma_result(output_uri: str) -> TfmaResult:
    """What TFMA wrote to an Evaluator output directory: metrics per slice and its failures."""
    result = tfma.load_eval_result(output_uri, output_file_format="tfrecord")
    metrics: dict[str, dict[str, float]] = {}
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
            threshold = failure.metric_threshold
            change = threshold.HasField("change_threshold") and failure.metric_key.is_diff
            bound = -threshold.change_threshold.absolute.value if change else threshold.value_threshold.lower_bound.value
            failures.append(Failure(key, failure.metric_key.name, change, failure.metric_value.double_value.value, bound))
    unchecked = ["a configured threshold had no metric to check"] if validation.missing_thresholds else []
    unchecked += [f"slice {_spec_text(missing)} is missing from the evaluation" for missing in validation.missing_slices]
    return TfmaResult(metrics, _baseline_metrics(output_uri), failures, unchecked)


def _spec_text(spec: tfma.SlicingSpec) -> str:
    return ", ".join(list(spec.feature_keys) + [f"{k}={v}" for k, v in spec.feature_values.items()]) or OVERALL


def class_counts(values: dict[str, float]) -> tuple[int, int]:
    """(positive, negative) eval examples of a slice: true positives + false negatives, and the rest."""
    total = int(round(values.get("example_count", 0)))
    positive = int(round(values.get("true_positives", 0.0) + values.get("false_negatives", 0.0)))
    return positive, total - positive


def _not_gated(failure: Failure, values: dict[str, float], gate: Gate) -> str | None:
    """Why `judge` does not count this failure (None: it counts)."""
    total = int(round(values.get("example_count", 0)))
    if failure.slice != OVERALL and total < gate.min_slice_examples:
        return f"{failure.slice}: not gated, {total} eval examples (fewer than {gate.min_slice_examples})"
    positive, negative = class_counts(values)
    if failure.metric in NEEDS_BOTH_CLASSES and min(positive, negative) < gate.min_class_examples:
        return (
            f"{failure.slice}: {failure.metric} not gated, undefined on these eval examples: {positive} positive and "
            f"{negative} negative (it needs at least {gate.min_class_examples} of each class); the other metrics gate"
        )
    return None


def _refusal(failure: Failure, result: TfmaResult) -> str:
    where = failure.slice
    count = result.metrics.get(where, {}).get("example_count")
    if where != OVERALL and count is not None:
        where += f" ({count:.0f} examples)"
    if not failure.change:
        return f"{where}: {failure.metric} {failure.value:.4f} is below the floor {failure.bound:g}"
    base = result.baseline_by_slice.get(failure.slice, {}).get(failure.metric)
    against = f"the baseline's {base:.4f}" if base is not None else "the baseline"
    return f"{where}: {failure.metric} dropped {-failure.value:.4f} against {against} (at most {failure.bound:g} allowed)"


def judge(result: TfmaResult, gate: Gate) -> Verdict:
    """Conveyor's blessing rule over TFMA's checks (see the module docstring)."""
    refusals, not_gated = [], []
    if not result.metrics.get(OVERALL, {}).get("example_count"):
        refusals.append("overall: the eval split has no examples, so no metric is defined")
    for failure in result.failures:
        excuse = _not_gated(failure, result.metrics.get(failure.slice, {}), gate)
        if excuse is None:
            refusals.append(_refusal(failure, result))
        elif excuse not in not_gated:
            not_gated.append(excuse)
    refusals += result.unchecked
    return Verdict(blessed=not refusals, refusals=refusals, not_gated=not_gated)


def write_verdict(output_uri: str, verdict: Verdict) -> None:
    from tfx.utils import io_utils

    io_utils.write_string_file(os.path.join(output_uri, VERDICT_FILE), json.dumps(asdict(verdict), indent=1))


def load_evaluation(output_uri: str) -> Evaluation:
    """Read an Evaluator output directory: TFMA's metrics and the blessing rule's verdict."""
    from tfx.dsl.io import fileio

    result = load_tfma_result(output_uri)
    path = os.path.join(output_uri, VERDICT_FILE)
    if fileio.exists(path):
        with fileio.open(path, "r") as handle:
            verdict = Verdict(**json.loads(handle.read()))
    else:  # an evaluation made before the rule existed: TFMA's validation as it was
        verdict = judge(result, Gate(min_slice_examples=0, min_class_examples=0))
    return Evaluation(
        metrics=result.metrics,
        blessed=verdict.blessed,
        failures=verdict.refusals,
        baseline_by_slice=result.baseline_by_slice,
        not_gated=verdict.not_gated,
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
