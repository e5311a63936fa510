"""A metric without meaning on a slice (one class present: TFMA reports AUC 0.0 and precision and
recall NaN) is printed as `n/a (reason)` everywhere: the run summary, `conveyor models`, the
blessing's explanation, the run report (tests/test_report.py), lineage (tests/test_lineage.py) and
the monitoring report (tests/test_monitoring.py)."""
from __future__ import annotations

import math
from pathlib import Path

from conveyor.cli.models import format_models
from conveyor.local import run_summary
from metadata.registry import PUBLISHED, ModelVersion
from pipeline import blessing_checks, evaluation
from pipeline.evaluation import Evaluation, Gate

NAN = math.nan
# A cash slice: no recorded tip is big, so no positive label; the model predicts no positive.
CASH = {"example_count": 1599.0, "true_positives": 0.0, "false_negatives": 0.0, "binary_accuracy": 1.0, "auc": 0.0,
        "precision": NAN, "recall": NAN}
CARD = {"example_count": 856.0, "true_positives": 430.0, "false_negatives": 50.0, "binary_accuracy": 0.69, "auc": 0.61,
        "precision": 0.0, "recall": 0.0}


def test_undefined_metrics_are_named_with_their_reason_and_defined_zeros_stay_figures():
    assert evaluation.shown("auc", 0.0, CASH) == "n/a (one class)"
    assert evaluation.shown("precision", NAN, CASH) == "n/a (one class)"
    assert evaluation.shown("recall", NAN, CASH) == "n/a (one class)"
    assert evaluation.shown("binary_accuracy", 1.0, CASH) == "1.0000"
    assert evaluation.shown("example_count", 1599.0, CASH) == "1599"
    assert evaluation.shown("precision", 0.0, CARD) == "0.0000"  # predicted positives, all wrong: a figure
    assert evaluation.shown("precision", NAN, CARD) == "n/a (no positive predictions)"
    assert evaluation.shown("auc", 0.5, {"example_count": 0.0}) == "n/a (no examples)"
    only_positive = {"example_count": 20.0, "true_positives": 15.0, "false_negatives": 5.0}
    assert evaluation.shown("auc", 0.0, only_positive) == "n/a (one class)"
    assert evaluation.shown("recall", 0.75, only_positive) == "0.7500"
    # Without the class counts (an older record) only a NaN is known to be undefined.
    assert evaluation.shown("auc", 0.0, {}) == "0.0000" and evaluation.shown("recall", NAN, {}) == "n/a (undefined)"
    assert evaluation.shown("auc", None, CASH, missing="–") == "n/a (one class)"
    assert evaluation.shown("auc", None, CARD, missing="–") == "–"


def test_the_run_summary_prints_n_a_not_zero_or_nan():
    result = Evaluation(metrics={"overall": {**CARD, "auc": 0.95, "precision": 0.72}, "payment_type=Cash": CASH}, blessed=True, failures=[])
    summary = run_summary.RunSummary(run_id="r", ok=True, seconds=1.0, log_file=Path("run.log"), timings=[], evaluation=result)
    cash = next(line for line in run_summary.format_summary(summary).splitlines() if line.startswith("payment_type=Cash"))
    assert cash.split() == ["payment_type=Cash", "1599", "1.0000"] + ["n/a", "(one", "class)"] * 3
    assert "nan" not in cash and "0.0000" not in cash


def test_comparisons_with_the_baseline_have_no_change_where_undefined():
    result = Evaluation(metrics={"payment_type=Cash": CASH}, blessed=True, failures=[],
                        baseline_by_slice={"payment_type=Cash": {"auc": 0.0, "binary_accuracy": 1.0}})
    by_metric = {c.metric: c for c in evaluation.compare_with_baseline(result)}
    assert by_metric["auc"].undefined == "one class" and by_metric["auc"].diff is None
    assert by_metric["binary_accuracy"].undefined is None and by_metric["binary_accuracy"].diff == 0.0


def test_the_blessing_explanation_and_conveyor_models_print_n_a():
    one_class = {"example_count": 400.0, "true_positives": 0.0, "false_negatives": 0.0, "binary_accuracy": 0.99, "auc": 0.0}
    result = Evaluation(metrics={"overall": one_class}, blessed=True, failures=[])
    lines = blessing_checks.explain(result, [blessing_checks.Threshold("auc", floor=0.7)], Gate(100, 10))
    assert lines[0].startswith("overall auc n/a (one class); auc not gated (0 positive, 400 negative")
    entry = ModelVersion(version="1", state=PUBLISHED)
    table = format_models([entry], {"1"}, {"1": one_class})
    assert "0.9900 n/a (one class)  " in table

