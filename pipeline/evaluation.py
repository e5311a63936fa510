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
the evaluation), a not-gated one with the change it saw, for the run summary, the CT decision and
`conveyor lineage`. TFX would leave a model silently NOT_BLESSED when a threshold names a metric
the evaluation does not produce; `missing_threshold_metrics` turns that into an explicit failure.

Beside the verdict the Evaluator writes the metrics per slice of both models (`slice_metrics.json`),
so reading an evaluation back (`load_evaluation`) needs neither TFMA nor TensorFlow; an evaluation
made before that record existed is read through TFMA. TFMA is imported only where it is used.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from data import files
from models import features, label_metrics
from models.features import PROBABILITIES_KEY, PROBABILITY_KEY
from models.label_metrics import metric_name
from pipeline.configs import PipelineConfig

if TYPE_CHECKING:
    from tensorflow_model_analysis.proto import config_pb2 as tfma_config

# The binary label's metrics (models/label_metrics.py has each label kind's): computed for the
# candidate and the baseline, shown side by side and gated; computed for the candidate alone
# (unless a threshold names one): its eval examples per slice and its positive ones (MeanLabel
# would add a combiner per model, example and slice: 1.7-1.9 CPU s of an Evaluator with a
# baseline, docs/benchmarks.md); error rates per group at the decision threshold (0.5): the rates
# the Fairness Indicators report, from TFMA's own confusion-matrix metrics (the
# fairness-indicators package, which wraps them, pins another TFMA).
COMPARED_METRIC_CLASSES = label_metrics.BINARY.compared
COMPARED_METRICS = label_metrics.BINARY.names(COMPARED_METRIC_CLASSES)
COUNT_METRIC_CLASSES = label_metrics.BINARY.counts
COUNT_METRICS = label_metrics.BINARY.names(COUNT_METRIC_CLASSES)  # whole numbers
NEEDS_BOTH_CLASSES = ("auc", "precision", "recall")
FAIRNESS_METRIC_CLASSES = label_metrics.BINARY.fairness
FAIRNESS_METRICS = label_metrics.BINARY.names(FAIRNESS_METRIC_CLASSES)
OVERALL = "overall"
VERDICT_FILE = "verdict.json"
SLICE_METRICS_FILE = "slice_metrics.json"


NOT_AVAILABLE = "n/a"
# Metrics without meaning on a slice lacking positive (negative) examples: TFMA still reports
# them (AUC 0.0, recall NaN), which reads as a figure.
NEEDS_POSITIVES = ("auc", "recall", "fnr")
NEEDS_NEGATIVES = ("auc", "fpr")


def format_value(metric: str, value: float) -> str:
    """A metric for people: counts as integers, the others with 4 decimals."""
    return f"{value:.0f}" if metric in COUNT_METRICS else f"{value:.4f}"


def undefined_reason(metric: str, value: float | None, counts: dict[str, float]) -> str | None:
    """Why `metric` has no meaning on a slice (None: it has one). `counts` are the slice's candidate
    metrics (example_count, true_positives, false_negatives; both models saw the same examples, so
    they serve for the baseline's figures too); without them only a NaN is known to be undefined."""
    if metric in COUNT_METRICS:
        return None
    if "example_count" in counts and round(counts["example_count"]) == 0:
        return "no examples"
    one_class = False
    if "true_positives" in counts:
        positive, negative = class_counts(counts)
        one_class = min(positive, negative) == 0
        if (positive == 0 and metric in NEEDS_POSITIVES) or (negative == 0 and metric in NEEDS_NEGATIVES):
            return "one class"
    if value is not None and math.isnan(value):
        if one_class:
            return "one class"
        return "no positive predictions" if metric == "precision" else "undefined"
    return None


def shown(metric: str, value: float | None, counts: dict[str, float], missing: str = "-") -> str:
    """A metric as every report prints it: its figure (`format_value`), `n/a (reason)` where it is
    undefined (`undefined_reason`), `missing` where there is none."""
    reason = undefined_reason(metric, value, counts)
    if reason is not None:
        return f"{NOT_AVAILABLE} ({reason})"
    return missing if value is None else format_value(metric, value)


def _change(max_drop: float) -> tfma_config.GenericChangeThreshold:
    from tensorflow_model_analysis.proto import config_pb2 as tfma_config

    return tfma_config.GenericChangeThreshold(direction=tfma_config.MetricDirection.HIGHER_IS_BETTER, absolute={"value": -max_drop})


def eval_config(config: PipelineConfig) -> tfma_config.EvalConfig:
    """Slices, metrics and blessing thresholds for the Evaluator."""
    # TFMA's own protos: `tfma_config.EvalConfig` and the like exist only once TFX has added them.
    from tensorflow_model_analysis.constants import CANDIDATE_KEY
    from tensorflow_model_analysis.proto import config_pb2 as tfma_config

    label = features.active().label
    metric_set = label_metrics.of(label)
    thresholds = {metric_set.gated(t.metric): t for t in config.thresholds}  # None: binary-only, not gated
    compared, counts = [], []
    for class_name in metric_set.counts + metric_set.compared + metric_set.fairness:
        name = metric_name(class_name)
        metric = tfma_config.MetricConfig(class_name=class_name)
        if name in thresholds:
            rule = thresholds[name]
            overall = metric.per_slice_thresholds.add()
            overall.slicing_specs.append(tfma_config.SlicingSpec())
            overall.threshold.value_threshold.lower_bound.value = rule.lower_bound
            if rule.max_drop is not None:
                overall.threshold.change_threshold.CopyFrom(_change(rule.max_drop))
            if rule.slice_max_drop is not None:
                by_slice = metric.per_slice_thresholds.add()
                by_slice.slicing_specs.extend(tfma_config.SlicingSpec(feature_keys=[key]) for key in features.active().slices)
                by_slice.threshold.change_threshold.CopyFrom(_change(rule.slice_max_drop))
        (counts if class_name in metric_set.counts and name not in thresholds else compared).append(metric)
    # A multi-class label's examples are also sliced by their class: its accuracy there is the
    # class's (shown, not gated).
    by_class = [tfma_config.SlicingSpec(feature_keys=[label.column])] if label.multiclass else []
    return tfma_config.EvalConfig(
        model_specs=[
            tfma_config.ModelSpec(
                signature_name="serving_default",
                prediction_key=PROBABILITIES_KEY if label.multiclass else PROBABILITY_KEY,
                label_key=label.name,
                preprocessing_function_names=["transform_features"],
            )
        ],
        slicing_specs=[tfma_config.SlicingSpec()]
        + [tfma_config.SlicingSpec(feature_keys=[key]) for key in features.active().slices]
        + by_class,
        # TFX's Evaluator names the models candidate and baseline when there is a baseline; with
        # the candidate alone, TFMA applies every spec to it.
        metrics_specs=[tfma_config.MetricsSpec(metrics=compared)]
        + ([tfma_config.MetricsSpec(metrics=counts, model_names=[CANDIDATE_KEY])] if counts else []),
    )


def threshold_metric_names(config: tfma_config.EvalConfig) -> set[str]:
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
    # (rate, largest widening of a slice's gap to the overall rate against the baseline): the
    # fairness gate (pipeline/fairness.py); empty in the records of evaluations made before it.
    fairness: tuple[tuple[str, float], ...] = ()
    fairness_min_examples: int = 0  # of the class a rate is conditioned on, for the gate to judge it
    # A multi-class label: the sentence on the binary-only metrics (label_metrics.binary_only_note),
    # a not-gated note of every verdict; and no fairness bounds (its rates are not computed).
    binary_only: str = ""

    @classmethod
    def from_config(cls, config: PipelineConfig) -> "Gate":
        label = features.read(str(config.contract_path)).label
        note = label_metrics.binary_only_note(label)
        if note is not None:
            return cls(config.min_slice_examples, config.min_class_examples, binary_only=note)
        bounds = tuple((t.metric, t.max_gap_widening) for t in config.fairness_thresholds)
        return cls(config.min_slice_examples, config.min_class_examples, bounds, config.fairness_min_examples)


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
    """Sort key for slice names: overall first, then by feature; a feature's numeric values in
    numeric order (hour 0, 4, 13, 19), then its other values in alphabetical order."""
    if name == OVERALL:
        return (0, "", 0, 0.0, "")
    feature, _, value = name.partition("=")
    try:
        return (1, feature, 0, float(value), value)
    except ValueError:
        return (1, feature, 1, 0.0, value)


def load_tfma_result(output_uri: str) -> TfmaResult:
    """What TFMA wrote to an Evaluator output directory: metrics per slice and its failures."""
    import tensorflow_model_analysis as tfma

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


def _spec_text(spec: tfma_config.SlicingSpec) -> str:
    return ", ".join(list(spec.feature_keys) + [f"{k}={v}" for k, v in spec.feature_values.items()]) or OVERALL


def class_counts(values: dict[str, float]) -> tuple[int, int]:
    """(positive, negative) eval examples of a slice: true positives + false negatives, and the rest."""
    total = round(values.get("example_count", 0))
    positive = round(values.get("true_positives", 0.0) + values.get("false_negatives", 0.0))
    return positive, total - positive


def not_gated_reason(slice_name: str, metric: str, values: dict[str, float], gate: Gate) -> str | None:
    """Why the rule does not gate `metric` on a slice whose candidate metrics are `values`
    (None: it gates it)."""
    total = round(values.get("example_count", 0))
    if slice_name != OVERALL and total < gate.min_slice_examples:
        return f"not gated ({total} eval examples < {gate.min_slice_examples})"
    positive, negative = class_counts(values)
    if metric in NEEDS_BOTH_CLASSES and min(positive, negative) < gate.min_class_examples:
        return (
            f"{metric} not gated ({positive} positive, {negative} negative eval examples < {gate.min_class_examples} "
            "of each class; the other metrics gate)"
        )
    return None


def _seen(failure: Failure, result: TfmaResult) -> str:
    """What a failed check saw: the metric under its floor, or the candidate against the baseline;
    `n/a` and why where the metric is undefined on the slice (TFMA's figure would read as one)."""
    values = result.metrics.get(failure.slice, {})
    reason = undefined_reason(failure.metric, values.get(failure.metric), values)
    if reason is not None:
        return f"{failure.metric} {NOT_AVAILABLE} ({reason})"
    if not failure.change:
        return f"{failure.metric} {failure.value:.3f} < floor {failure.bound:g}"
    candidate = result.metrics.get(failure.slice, {}).get(failure.metric)
    base = result.baseline_by_slice.get(failure.slice, {}).get(failure.metric)
    if candidate is None or base is None:
        return f"{failure.metric} {failure.value:+.3f} against the baseline"
    return f"{failure.metric} {candidate:.3f} vs {base:.3f} ({failure.value:+.3f})"


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
    refusals, excused = [], {}  # excused: "slice: why not gated" -> what its failed checks saw
    if not result.metrics.get(OVERALL, {}).get("example_count"):
        refusals.append("overall: the eval split has no examples, so no metric is defined")
    for failure in sorted(result.failures, key=lambda f: slice_order(f.slice)):  # stable: TFMA's order within a slice
        reason = not_gated_reason(failure.slice, failure.metric, result.metrics.get(failure.slice, {}), gate)
        if reason is None:
            refusals.append(_refusal(failure, result))
        else:
            seen = excused.setdefault(f"{failure.slice}: {reason}", [])
            if _seen(failure, result) not in seen:  # an undefined metric reads the same for every check
                seen.append(_seen(failure, result))
    refusals += result.unchecked
    not_gated = [f"{where}: {', '.join(seen)}" for where, seen in excused.items()] + ([gate.binary_only] if gate.binary_only else [])
    return Verdict(blessed=not refusals, refusals=refusals, not_gated=not_gated)


def write_record(output_uri: str, result: TfmaResult, verdict: Verdict) -> None:
    """The verdict and both models' metrics per slice, beside TFMA's output (`load_evaluation`)."""
    from tfx.utils import io_utils

    io_utils.write_string_file(os.path.join(output_uri, VERDICT_FILE), json.dumps(asdict(verdict), indent=1))
    by_slice = {"candidate": result.metrics, "baseline": result.baseline_by_slice}
    io_utils.write_string_file(os.path.join(output_uri, SLICE_METRICS_FILE), json.dumps(by_slice, indent=1, sort_keys=True))


def load_evaluation(output_uri: str) -> Evaluation:
    """Read an Evaluator output directory: both models' metrics per slice and the blessing rule's
    verdict, from the Evaluator's records; through TFMA for an evaluation made before them."""
    recorded = os.path.join(output_uri, SLICE_METRICS_FILE)
    if files.exists(recorded):
        by_slice = json.loads(files.read_bytes(recorded))
        metrics, baseline = by_slice["candidate"], by_slice["baseline"]
    else:
        result = load_tfma_result(output_uri)
        metrics, baseline = result.metrics, result.baseline_by_slice
    path = os.path.join(output_uri, VERDICT_FILE)
    if files.exists(path):
        verdict = Verdict(**json.loads(files.read_bytes(path)))
    else:  # an evaluation made before the rule existed (so without the metrics record): TFMA's validation as it was
        verdict = judge(result, Gate(min_slice_examples=0, min_class_examples=0))
    return Evaluation(
        metrics=metrics, blessed=verdict.blessed, failures=verdict.refusals, baseline_by_slice=baseline, not_gated=verdict.not_gated
    )


def _baseline_metrics(output_uri: str) -> dict[str, dict[str, float]]:
    """The baseline model's metrics per slice, when the Evaluator compared against one."""
    import tensorflow_model_analysis as tfma

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
    diff: float | None  # candidate - baseline (None where either is missing or undefined)
    undefined: str | None = None  # why the metric has no meaning on this slice (`undefined_reason`)


def compare_with_baseline(result: Evaluation, metrics: tuple[str, ...] = COMPARED_METRICS) -> list[MetricComparison]:
    """Each slice (overall first) and metric, candidate next to baseline; baseline None without one."""
    found = []
    for name in sorted(result.metrics, key=slice_order):
        values, base = result.metrics[name], result.baseline_by_slice.get(name, {})
        for metric in metrics:
            candidate, baseline = values.get(metric), base.get(metric)
            undefined = undefined_reason(metric, candidate, values) or undefined_reason(metric, baseline, values)
            diff = candidate - baseline if candidate is not None and baseline is not None and undefined is None else None
            found.append(MetricComparison(name, metric, candidate, baseline, diff, undefined))
    return found


def missing_threshold_metrics(config: tfma_config.EvalConfig, evaluation: Evaluation) -> set[str]:
    """Threshold metric names absent from the overall slice (TFX would silently not bless)."""
    return threshold_metric_names(config) - set(evaluation.metrics.get(OVERALL, {}))
