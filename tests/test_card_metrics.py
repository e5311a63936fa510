"""The model card's intervals (Wilson, from the Evaluator's counts) and its training statistics (TFDV
in memory, or in a Beam pipeline with speedups off): pipeline/card_metrics.py."""
from __future__ import annotations

import math

import apache_beam as beam
import pytest

from models import examples
from pipeline import card_metrics
from pipeline.statistics_summary import feature_summaries
from speedups import switch

Z = 1.959963984540054  # the standard normal's 97.5 % quantile


def _wilson_by_hand(k: int, n: int) -> tuple[float, float]:
    """The textbook Wilson score interval (Wilson 1927; Brown, Cai and DasGupta 2001, eq. 4)."""
    centre = (k + Z * Z / 2) / (n + Z * Z)
    half = Z / (n + Z * Z) * math.sqrt(k * (n - k) / n + Z * Z / 4)
    return centre - half, centre + half


def _record(tp: int, fp: int, tn: int, fn: int) -> dict[str, float]:
    """A slice's record as the Evaluator writes it, from its confusion matrix at 0.5."""
    n, positives, negatives = tp + fp + tn + fn, tp + fn, fp + tn
    nan = float("nan")
    return {
        "example_count": float(n), "true_positives": float(tp), "false_negatives": float(fn),
        "binary_accuracy": (tp + tn) / n, "auc": 0.9,
        "precision": tp / (tp + fp) if tp + fp else nan, "recall": tp / positives if positives else nan,
        "fpr": fp / negatives if negatives else nan, "fnr": fn / positives if positives else nan,
        "predicted_positive_rate": (tp + fp) / n,
    }


@pytest.mark.parametrize("k,n", [(0, 10), (10, 10), (3, 7), (717, 820), (3309, 3692)])
def test_the_interval_is_wilson_s(k, n):
    assert card_metrics.wilson(k, n) == pytest.approx(_wilson_by_hand(k, n), abs=1e-12)


def test_each_rate_is_the_proportion_of_the_counts_it_is_made_of():
    record = _record(tp=30, fp=10, tn=50, fn=10)
    found = {m: card_metrics.proportion(m, record) for m in ("binary_accuracy", "precision", "recall", "fpr", "fnr", "predicted_positive_rate")}
    assert found == {"binary_accuracy": (80, 100), "precision": (30, 40), "recall": (30, 40), "fpr": (10, 60),
                     "fnr": (10, 40), "predicted_positive_rate": (40, 100)}
    assert card_metrics.proportion("auc", record) is None and card_metrics.proportion("example_count", record) is None


def test_every_proportion_gets_its_interval_and_nothing_else_does():
    one_class = _record(tp=0, fp=0, tn=40, fn=0)  # every example negative and answered so
    found = card_metrics.estimates({"overall": _record(tp=30, fp=10, tn=50, fn=10), "payment_type=Cash": one_class})
    overall, cash = found["overall"], found["payment_type=Cash"]
    assert (overall["binary_accuracy"].lower, overall["binary_accuracy"].upper) == pytest.approx(_wilson_by_hand(80, 100))
    assert overall["fpr"].value == pytest.approx(1 / 6) and (overall["fpr"].lower, overall["fpr"].upper) == pytest.approx(_wilson_by_hand(10, 60))
    for metric in ("example_count", "true_positives", "false_negatives", "auc"):
        assert overall[metric].lower is None and overall[metric].upper is None, metric
    # All right on 40 examples: accuracy 1 with an interval that says how few back it; rates of the
    # absent class are undefined and unbounded.
    assert cash["binary_accuracy"].value == 1.0 and cash["binary_accuracy"].lower == pytest.approx(_wilson_by_hand(40, 40)[0])
    assert cash["binary_accuracy"].lower < 0.95
    assert math.isnan(cash["recall"].value) and cash["recall"].lower is None and cash["fnr"].lower is None


def test_a_multiclass_accuracy_is_bounded_from_its_count():
    found = card_metrics.estimates({"overall": {"example_count": 341.0, "sparse_categorical_accuracy": 300 / 341}})
    accuracy = found["overall"]["sparse_categorical_accuracy"]
    assert (accuracy.lower, accuracy.upper) == pytest.approx(_wilson_by_hand(300, 341))


def _examples() -> list[bytes]:
    rows = [{"fare": float(i % 17) + 0.5 if i % 5 else None, "trip_start_hour": i % 24,
             "payment_type": ("Cash", "Credit Card", "Unknown")[i % 3] if i % 7 else None} for i in range(600)]
    return [examples.to_example(row, row.keys()).SerializeToString() for row in rows]  # a None is no value


def test_the_statistics_in_memory_are_those_of_tfdv_s_beam_transform(monkeypatch):
    serialized = _examples()
    in_memory = card_metrics.training_statistics(serialized, lambda: pytest.fail("no Beam pipeline in memory"))
    monkeypatch.setenv(switch.SWITCH, "0")
    with_beam = card_metrics.training_statistics(serialized, beam.Pipeline)
    assert in_memory.datasets[0].num_examples == with_beam.datasets[0].num_examples == 600
    summaries = feature_summaries(in_memory)
    assert [s.feature for s in summaries] == ["fare", "payment_type", "trip_start_hour"]
    for mine, theirs in zip(summaries, feature_summaries(with_beam)):
        assert mine.feature == theirs.feature and mine.kind == theirs.kind and mine.present == theirs.present
        assert mine.unique == theirs.unique and mine.top_value == theirs.top_value
        for field in ("mean", "std_dev", "minimum", "maximum"):
            a, b = getattr(mine, field), getattr(theirs, field)
            assert (a is None and b is None) or a == pytest.approx(b, rel=1e-12), (mine.feature, field)
