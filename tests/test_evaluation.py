"""Evaluator config: thresholds on the overall slice, and missing threshold metrics are caught."""
import pytest
import tensorflow_model_analysis as tfma

from models import features
from pipeline import evaluation
from pipeline.configs import PipelineConfig, Threshold


def test_thresholds_apply_to_the_overall_slice_with_value_and_change_rules():
    config = evaluation.eval_config(PipelineConfig())
    by_name = {m.class_name: m for m in config.metrics_specs[0].metrics}
    accuracy = by_name["BinaryAccuracy"]
    assert not accuracy.HasField("threshold")
    (rule,) = accuracy.per_slice_thresholds
    assert list(rule.slicing_specs) == [tfma.SlicingSpec()]
    assert rule.threshold.value_threshold.lower_bound.value == 0.7
    assert rule.threshold.change_threshold.absolute.value == -0.01
    assert rule.threshold.change_threshold.direction == tfma.MetricDirection.HIGHER_IS_BETTER


def test_metrics_and_slices_are_configured():
    config = evaluation.eval_config(PipelineConfig())
    assert {m.class_name for m in config.metrics_specs[0].metrics} == set(evaluation.METRICS)
    assert [list(s.feature_keys) for s in config.slicing_specs] == [[]] + [[k] for k in features.SLICE_FEATURES]
    assert config.model_specs[0].label_key == features.LABEL_KEY


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


def test_slices_sort_overall_first_then_by_feature_and_number():
    names = ["trip_start_hour=10", "payment_type=Cash", "overall", "trip_start_hour=2"]
    assert sorted(names, key=evaluation.slice_order) == ["overall", "payment_type=Cash", "trip_start_hour=2", "trip_start_hour=10"]
