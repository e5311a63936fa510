"""The model card's figures: each slice's metrics with a 95 % interval, and TFDV's statistics of the
training split.

Metrics are the Evaluator's own (its one TFMA pass): the card and the verdict read the same numbers,
and nothing is evaluated twice. Every figure the card bounds is a proportion of confusion-matrix
counts the Evaluator records per slice at the 0.5 threshold: `example_count`, `true_positives`,
`false_negatives` and the false positive rate give TP, FP, TN and FN (a multi-class label's
accuracy times the count gives its correct answers). Its interval is the Wilson score interval of
that binomial proportion (scipy's `binomtest(...).proportion_ci(method="wilson")`): arithmetic on
counts, so the card repeats to the last digit without a seed, and a slice answered all right (or
all wrong) still gets an interval that says how few examples back it. AUC is not a proportion and
gets no interval. Until 2026-12 the card ran a second TFMA pass for TFMA's jackknife intervals, one
row per example and slice: 5.5 of the component's 13 CPU s plus building a Beam pipeline
(docs/benchmarks.md).

Statistics: TFDV over the window's training examples, in memory (TFDV's own generators without a
Beam pipeline: 0.2 s on 11,308 examples) as the speedup `memory_statistics`; with speedups off, a
Beam pipeline of `tfdv.GenerateStatistics`. Both give the same summaries (tests/test_speedups.py).
"""
from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from pipeline import evaluation

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Estimate:
    """A metric and its 95 % interval (None: no interval, e.g. for a count or AUC)."""

    value: float
    lower: float | None = None
    upper: float | None = None


def _confusion(values: Mapping[str, float]) -> dict[str, int] | None:
    """TP, FP, TN and FN at 0.5 from a binary label's recorded counts and false positive rate
    (None: the slice's record lacks them, as a multi-class label's does)."""
    if not {"example_count", "true_positives", "false_negatives", "fpr"} <= values.keys():
        return None
    examples, tp, fn = (round(values[k]) for k in ("example_count", "true_positives", "false_negatives"))
    negatives = examples - tp - fn
    fp = round(values["fpr"] * negatives) if negatives > 0 else 0
    return {"tp": tp, "fp": fp, "tn": negatives - fp, "fn": fn}


def proportion(metric: str, values: Mapping[str, float]) -> tuple[int, int] | None:
    """(successes, trials) behind `metric` on one slice, from the Evaluator's record of that slice
    (None: `metric` is not a proportion of counts the record holds)."""
    examples = round(values.get("example_count", 0))
    if metric == "sparse_categorical_accuracy" and metric in values and math.isfinite(values[metric]):
        return round(values[metric] * examples), examples
    c = _confusion(values)
    if c is None:
        return None
    tp, fp, tn, fn = c["tp"], c["fp"], c["tn"], c["fn"]
    return {
        "binary_accuracy": (tp + tn, examples),
        "precision": (tp, tp + fp),
        "recall": (tp, tp + fn),
        "fpr": (fp, fp + tn),
        "fnr": (fn, fn + tp),
        "predicted_positive_rate": (tp + fp, examples),
    }.get(metric)


def wilson(successes: int, trials: int) -> tuple[float, float]:
    """The 95 % Wilson score interval of a binomial proportion."""
    from scipy.stats import binomtest

    bounds = binomtest(successes, trials).proportion_ci(confidence_level=CONFIDENCE, method="wilson")
    return float(bounds.low), float(bounds.high)


def estimates(metrics: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, Estimate]]:
    """slice -> metric -> the Evaluator's value with its interval where it is a proportion of at
    least one trial (a count, AUC, or an undefined rate: none)."""
    found: dict[str, dict[str, Estimate]] = {}
    for name, values in metrics.items():
        found[name] = {}
        for metric, value in values.items():
            counts = None if metric in evaluation.COUNT_METRICS else proportion(metric, values)
            bounded = counts is not None and counts[1] > 0 and math.isfinite(value)
            found[name][metric] = Estimate(value, *wilson(*counts)) if bounded and counts else Estimate(value)
    return found


StatisticsPipeline = Callable[[], Any]  # a Beam pipeline to run TFDV in (a context manager), when not in memory


def training_statistics(train_examples: Sequence[bytes], beam_pipeline: StatisticsPipeline) -> Any:
    """TFDV's statistics (a DatasetFeatureStatisticsList) of serialized training examples: in memory
    when the speedup may act, else in `beam_pipeline()`."""
    import tensorflow_data_validation as tfdv
    from tfx_bsl.coders import example_coder

    from speedups import memory_statistics

    batch = example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(list(train_examples))
    found = memory_statistics.generate(batch, tfdv.StatsOptions())
    if found is not None:
        return found
    import apache_beam as beam

    with tempfile.TemporaryDirectory(prefix="card-statistics-") as folder:
        path = os.path.join(folder, "train_statistics.pb")
        with beam_pipeline() as pipeline:
            _ = (
                pipeline
                | "CardTrainExamples" >> beam.Create([batch])
                | "CardStatistics" >> tfdv.GenerateStatistics(tfdv.StatsOptions())
                | "CardWriteStatistics" >> tfdv.WriteStatisticsToBinaryFile(path)
            )
        return tfdv.load_stats_binary(path)
