"""Evaluator config (thresholds on the overall slice and per slice), the blessing rule, missing
threshold metrics are caught, and what explains a verdict (pipeline/blessing_checks.py)."""
import json
import math

import pytest
import tensorflow_model_analysis as tfma
from tfx.utils import proto_utils

from models import features
from pipeline import blessing_checks, evaluation
from pipeline.configs import PipelineConfig
from pipeline.thresholds import Threshold


def test_thresholds_gate_the_overall_slice_and_each_feature_slice_against_the_baseline():
    config = evaluation.eval_config(
        PipelineConfig(thresholds=(Threshold("binary_accuracy", 0.7, max_drop=0.02, slice_max_drop=0.06),))
    )
    by_name = {m.class_name: m for m in config.metrics_specs[0].metrics}
    accuracy = by_name["BinaryAccuracy"]
    assert not accuracy.HasField("threshold")
    overall, by_slice = accuracy.per_slice_thresholds
    assert [list(s.feature_keys) for s in overall.slicing_specs] == [[]]  # the overall slice
    assert overall.threshold.value_threshold.lower_bound.value == 0.7
    assert overall.threshold.change_threshold.absolute.value == -0.02
    assert overall.threshold.change_threshold.direction == tfma.MetricDirection.HIGHER_IS_BETTER
    assert [list(s.feature_keys) for s in by_slice.slicing_specs] == [[k] for k in features.active().slices]
    assert not by_slice.threshold.HasField("value_threshold")
    assert by_slice.threshold.change_threshold.absolute.value == pytest.approx(-0.06)
    assert not by_name["AUC"].per_slice_thresholds  # no threshold configured for it here


def _result(metrics, failures, baseline=None):
    return evaluation.TfmaResult(metrics=metrics, baseline_by_slice=baseline or {}, failures=failures, unchecked=[])


GATE = evaluation.Gate(min_slice_examples=100, min_class_examples=10)


def test_a_metric_undefined_on_one_class_eval_data_is_not_gated_and_accuracy_still_is():
    # What TFMA reports on an eval split without a positive label: AUC 0.0, accuracy defined.
    metrics = {"overall": {"example_count": 400, "true_positives": 0.0, "false_negatives": 0.0, "binary_accuracy": 0.99, "auc": 0.0}}
    failures = [
        evaluation.Failure("overall", "auc", change=False, value=0.0, bound=0.7),
        evaluation.Failure("overall", "auc", change=True, value=-0.8, bound=0.01),
    ]
    verdict = evaluation.judge(_result(metrics, failures), GATE)
    assert verdict.blessed and verdict.refusals == []
    assert verdict.not_gated == [
        "overall: auc not gated (0 positive, 400 negative eval examples < 10 of each class; the other metrics gate): "
        "auc n/a (one class)"
    ]
    failures.append(evaluation.Failure("overall", "binary_accuracy", change=False, value=0.6, bound=0.7))
    refused = evaluation.judge(_result({"overall": {**metrics["overall"], "binary_accuracy": 0.6}}, failures), GATE)
    assert not refused.blessed
    assert refused.refusals == ["overall: binary_accuracy 0.6000 is below the floor 0.7"]


def test_a_slice_regression_refuses_and_a_small_slice_is_not_gated():
    metrics = {
        "overall": {"example_count": 1000, "true_positives": 250, "false_negatives": 50},
        "payment_type=Cash": {"example_count": 400, "true_positives": 12, "false_negatives": 8, "binary_accuracy": 0.70},
        "trip_start_hour=3": {"example_count": 12, "true_positives": 4, "false_negatives": 2, "binary_accuracy": 0.40},
    }
    baseline = {"payment_type=Cash": {"binary_accuracy": 0.85}, "trip_start_hour=3": {"binary_accuracy": 0.75}}
    failures = [
        evaluation.Failure("payment_type=Cash", "binary_accuracy", change=True, value=-0.15, bound=0.05),
        evaluation.Failure("trip_start_hour=3", "binary_accuracy", change=True, value=-0.35, bound=0.05),
        evaluation.Failure("payment_type=Cash", "auc", change=True, value=-0.2, bound=0.05),  # 20 positives: gated
    ]
    verdict = evaluation.judge(_result(metrics, failures, baseline), GATE)
    assert not verdict.blessed
    assert verdict.refusals[0] == (
        "payment_type=Cash (400 examples): binary_accuracy dropped 0.1500 against the baseline's 0.8500 (at most 0.05 allowed)"
    )
    assert len(verdict.refusals) == 2 and verdict.refusals[1].startswith("payment_type=Cash (400 examples): auc dropped 0.2000")
    # Not gated, and still showing the drop it saw.
    assert verdict.not_gated == ["trip_start_hour=3: not gated (12 eval examples < 100): binary_accuracy 0.400 vs 0.750 (-0.350)"]


def test_refusals_and_not_gated_notes_come_in_natural_slice_order_one_note_per_slice():
    hours = (19, 4, 13, 0)
    metrics = {"overall": {"example_count": 1000, "true_positives": 300, "false_negatives": 20}}
    small = {"example_count": 20, "true_positives": 8, "false_negatives": 2, "binary_accuracy": 0.5, "auc": 0.5}
    metrics.update({f"trip_start_hour={h}": small for h in hours})
    metrics["payment_type=Cash"] = {"example_count": 300, "true_positives": 40, "false_negatives": 10, "binary_accuracy": 0.6}
    baseline = {name: {"binary_accuracy": 0.9, "auc": 0.8} for name in metrics}
    failures = [evaluation.Failure(f"trip_start_hour={h}", m, change=True, value=v, bound=0.08)
                for h in hours for m, v in (("binary_accuracy", -0.4), ("auc", -0.3))]
    failures.append(evaluation.Failure("payment_type=Cash", "binary_accuracy", change=True, value=-0.3, bound=0.08))
    verdict = evaluation.judge(_result(metrics, failures, baseline), GATE)
    assert verdict.refusals == [
        "payment_type=Cash (300 examples): binary_accuracy dropped 0.3000 against the baseline's 0.9000 (at most 0.08 allowed)"
    ]
    assert verdict.not_gated == [
        f"trip_start_hour={h}: not gated (20 eval examples < 100): binary_accuracy 0.500 vs 0.900 (-0.400), auc 0.500 vs 0.800 (-0.300)"
        for h in (0, 4, 13, 19)
    ]


def test_an_empty_eval_split_or_an_unchecked_threshold_refuses():
    empty = evaluation.judge(_result({"overall": {"example_count": 0}}, []), GATE)
    assert not empty.blessed and empty.refusals == ["overall: the eval split has no examples, so no metric is defined"]
    unchecked = evaluation.TfmaResult({"overall": {"example_count": 50}}, {}, [], ["a configured threshold had no metric to check"])
    assert evaluation.judge(unchecked, GATE).refusals == ["a configured threshold had no metric to check"]


def test_metrics_and_slices_are_configured():
    config = evaluation.eval_config(PipelineConfig())
    compared, counts = config.metrics_specs
    assert [m.class_name for m in compared.metrics] == list(evaluation.COMPARED_METRIC_CLASSES + evaluation.FAIRNESS_METRIC_CLASSES)
    assert not compared.model_names  # both models
    assert [m.class_name for m in counts.metrics] == list(evaluation.COUNT_METRIC_CLASSES)
    assert list(counts.model_names) == [tfma.CANDIDATE_KEY]
    assert [list(s.feature_keys) for s in config.slicing_specs] == [[]] + [[k] for k in features.active().slices]
    assert config.model_specs[0].label_key == features.active().label.name


def test_the_counts_go_to_both_models_when_a_threshold_names_one_and_tfma_keeps_one_spec_without_a_baseline():
    config = evaluation.eval_config(PipelineConfig(thresholds=(Threshold("example_count", 100),)))
    compared, counts = config.metrics_specs
    assert "ExampleCount" in [m.class_name for m in compared.metrics]
    assert "ExampleCount" not in [m.class_name for m in counts.metrics]
    with_baseline = tfma.utils.update_eval_config_with_defaults(config, has_baseline=True, rubber_stamp=True)
    assert [list(s.model_names) for s in with_baseline.metrics_specs] == [[tfma.CANDIDATE_KEY, tfma.BASELINE_KEY], [tfma.CANDIDATE_KEY]]
    alone = tfma.utils.update_eval_config_with_defaults(config, has_baseline=False, rubber_stamp=True)
    assert [list(s.model_names) for s in alone.metrics_specs] == [[""], [""]]


def test_threshold_metric_names_are_tfma_metric_names():
    config = evaluation.eval_config(PipelineConfig())
    assert evaluation.threshold_metric_names(config) == {"binary_accuracy", "auc"}


def test_a_threshold_on_a_metric_the_evaluation_lacks_is_reported():
    config = evaluation.eval_config(
        PipelineConfig(thresholds=(Threshold("binary_accuracy", 0.5), Threshold("auc", 0.5)))
    )
    result = evaluation.Evaluation(
        metrics={"overall": {"binary_accuracy": 0.8, "example_count": 10}}, blessed=False, failures=[]
    )
    assert evaluation.missing_threshold_metrics(config, result) == {"auc"}


def test_compare_with_baseline_pairs_each_slice_and_metric():
    result = evaluation.Evaluation(
        metrics={"payment_type=Cash": {"auc": 0.9}, "overall": {"auc": 0.8, "binary_accuracy": 0.75}},
        blessed=True,
        failures=[],
        baseline_by_slice={"overall": {"auc": 0.85, "binary_accuracy": 0.7}},
    )
    rows = evaluation.compare_with_baseline(result, ("binary_accuracy", "auc"))
    assert [(r.slice, r.metric) for r in rows] == [
        ("overall", "binary_accuracy"), ("overall", "auc"), ("payment_type=Cash", "binary_accuracy"), ("payment_type=Cash", "auc"),
    ]
    overall_accuracy, overall_auc, cash_accuracy, cash_auc = rows
    assert (overall_accuracy.candidate, overall_accuracy.baseline) == (0.75, 0.7)
    assert overall_accuracy.diff == pytest.approx(0.05) and overall_auc.diff == pytest.approx(-0.05)
    assert cash_accuracy == evaluation.MetricComparison("payment_type=Cash", "binary_accuracy", None, None, None)
    assert (cash_auc.candidate, cash_auc.baseline, cash_auc.diff) == (0.9, None, None)
    assert result.baseline == {"auc": 0.85, "binary_accuracy": 0.7}


def test_slices_sort_overall_first_then_by_feature_numbers_numerically_then_strings():
    names = ["trip_start_hour=13", "payment_type=Cash", "trip_start_hour=x", "overall", "trip_start_hour=4",
             "trip_start_hour=19", "payment_type=Credit Card", "trip_start_hour=0", "trip_start_hour=-1", "trip_start_hour=2.5"]
    assert sorted(names, key=evaluation.slice_order) == [
        "overall", "payment_type=Cash", "payment_type=Credit Card", "trip_start_hour=-1", "trip_start_hour=0",
        "trip_start_hour=2.5", "trip_start_hour=4", "trip_start_hour=13", "trip_start_hour=19", "trip_start_hour=x",
    ]


def test_the_metric_names_known_without_tfma_are_tfma_s():
    import tf_keras
    from tensorflow_model_analysis.metrics import confusion_matrix_metrics  # PredictedPositiveRate is not re-exported

    from models import label_metrics

    for class_name, name in label_metrics.METRIC_NAMES.items():  # the multi-class accuracy is a Keras metric
        metric = tfma.metrics.__dict__.get(class_name) or getattr(confusion_matrix_metrics, class_name, None) or getattr(
            tf_keras.metrics, class_name)
        assert metric().name == name


def test_an_evaluation_is_read_back_from_its_records(tmp_path):
    result = _result(
        {"overall": {"example_count": 3692.0, "binary_accuracy": 0.89, "precision": math.nan}},
        [],
        {"overall": {"binary_accuracy": 0.88}},
    )
    verdict = evaluation.Verdict(blessed=True, refusals=[], not_gated=["x: not gated (1 eval examples < 100): ..."])
    evaluation.write_record(str(tmp_path), result, verdict)
    found = evaluation.load_evaluation(str(tmp_path))  # no TFMA output here: only the records are read
    assert found.metrics["overall"]["example_count"] == 3692 and math.isnan(found.metrics["overall"]["precision"])
    assert found.baseline == {"binary_accuracy": 0.88}
    assert (found.blessed, found.failures, found.not_gated) == (True, [], verdict.not_gated)


def _recorded(config: PipelineConfig) -> dict:
    """The EvalConfig as TFX records the Evaluator's execution property in ML Metadata."""
    return json.loads(proto_utils.proto_to_json(evaluation.eval_config(config)))


def test_the_thresholds_are_read_back_from_the_recorded_eval_config():
    config = PipelineConfig()
    found = blessing_checks.recorded_thresholds(_recorded(config))
    assert [(t.metric, t.floor, t.max_drop, t.slice_max_drop, t.slice_features) for t in found] == [
        (t.metric, t.lower_bound, t.max_drop, t.slice_max_drop, features.active().slices) for t in config.thresholds
    ]


def test_a_blessing_is_explained_threshold_by_threshold_with_its_figures():
    config = PipelineConfig(thresholds=(Threshold("binary_accuracy", 0.7, max_drop=0.015, slice_max_drop=0.08),))
    thresholds = blessing_checks.recorded_thresholds(_recorded(config))
    counts = {"true_positives": 30, "false_negatives": 10}
    result = evaluation.Evaluation(
        metrics={
            "overall": {"example_count": 1000, "binary_accuracy": 0.9, **counts},
            "trip_start_hour=4": {"example_count": 150, "binary_accuracy": 0.85, **counts},
            "trip_start_hour=13": {"example_count": 200, "binary_accuracy": 0.88, **counts},
            "trip_start_hour=19": {"example_count": 12, "binary_accuracy": 0.5, **counts},
        },
        blessed=True,
        failures=[],
        baseline_by_slice={"overall": {"binary_accuracy": 0.905}, **{f"trip_start_hour={h}": {"binary_accuracy": 0.9} for h in (4, 13, 19)}},
    )
    gate = evaluation.Gate(min_slice_examples=100, min_class_examples=10)
    assert blessing_checks.explain(result, thresholds, gate) == [
        "overall binary_accuracy 0.9000 >= floor 0.7; -0.0050 against the baseline's 0.9050 (a drop of at most 0.015 allowed)",
        # hour 19 dropped more, but with 12 examples it is not gated
        "slices  binary_accuracy worst -0.0500 on trip_start_hour=4 (150 examples; a drop of at most 0.08 allowed), 2 of 3 slices gated",
    ]
    alone = evaluation.Evaluation(metrics=result.metrics, blessed=True, failures=[])
    assert blessing_checks.explain(alone, thresholds, gate) == [
        "overall binary_accuracy 0.9000 >= floor 0.7",
        "no baseline (nothing was serving): only the floors apply",
    ]
