"""The model card's figures that a Beam pipeline computes: TFMA's metrics per slice with confidence
intervals, and TFDV's statistics of the training split.

TFMA evaluates the candidate's answers (probabilities asked through its served signature,
pipeline/card_data.py) model-agnostically: label, prediction and the slice as columns, so nothing
is predicted twice. Its intervals are TFMA's jackknife (`compute_confidence_intervals`, 20
delete-d buckets, 95 % from Student's t). TFMA assigns examples to buckets in the order they reach
it; when one example belongs to several slices that order follows Python's string hashing, which
differs from process to process, and so did the bounds (a bound of the overall false-negative rate
moved by 0.0014 between two runs of the same answers). Each example therefore reaches TFMA once per
slice, as a row naming its slice, and TFMA slices by that column alone: bucket assignment then
follows the input order and the seed, and the card repeats exactly. AUC gets no interval: TFMA's
jackknife of AUC also bounds each of its confusion matrices' 10,000 thresholds, in Python: 49 s
against 12.5 s without AUC on the default window, wall on a loaded machine
(docs/lineage-and-analysis.md#the-model-card); its figure is the Evaluator's.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Sequence

from models import features
from models.instances import FeatureDict
from pipeline import evaluation

CARD_METRIC_CLASSES = ("ExampleCount", "BinaryAccuracy", "Precision", "Recall") + evaluation.FAIRNESS_METRIC_CLASSES
SLICE_COLUMN = "card_slice"  # one row per (example, slice): see the module docstring
LABEL, PREDICTION = "label", "prediction"
TFMA_DIR, STATISTICS_FILE = "tfma", "train_statistics.pb"


@dataclass(frozen=True)
class Estimate:
    """A metric and its 95 % interval (None: no interval, e.g. for a count)."""

    value: float
    lower: float | None = None
    upper: float | None = None


def slice_names(row: FeatureDict) -> list[str]:
    """The slices an example belongs to, named as the Evaluator names them (overall first)."""
    return [evaluation.OVERALL] + [f"{key}={row[key]}" for key in features.active().slices if row.get(key) is not None]


def _eval_config(seeded: bool) -> Any:
    from tensorflow_model_analysis.proto import config_pb2 as tfma_config

    return tfma_config.EvalConfig(
        model_specs=[tfma_config.ModelSpec(label_key=LABEL, prediction_key=PREDICTION)],
        slicing_specs=[tfma_config.SlicingSpec(feature_keys=[SLICE_COLUMN])],
        metrics_specs=[tfma_config.MetricsSpec(metrics=[tfma_config.MetricConfig(class_name=c) for c in CARD_METRIC_CLASSES])],
        options=tfma_config.Options(
            compute_confidence_intervals={"value": seeded},
            confidence_intervals={"method": tfma_config.ConfidenceIntervalOptions.JACKKNIFE},
        ),
    )


def _predictions_batch(eval_rows: Sequence[FeatureDict], labels: Sequence[int], probabilities: Sequence[float]) -> Any:
    import pyarrow as pa

    names, truth, scores = [], [], []
    for row, label, probability in zip(eval_rows, labels, probabilities):
        for name in slice_names(row):
            names.append([name.encode()])
            truth.append([label])
            scores.append([probability])
    return pa.RecordBatch.from_arrays(
        [pa.array(truth, pa.list_(pa.int64())), pa.array(scores, pa.list_(pa.float32())), pa.array(names, pa.list_(pa.binary()))],
        [LABEL, PREDICTION, SLICE_COLUMN],
    )


def analyse(
    pipeline: Any,
    out_dir: str,
    eval_rows: Sequence[FeatureDict],
    labels: Sequence[int],
    probabilities: Sequence[float] | None,
    train_examples: Sequence[bytes],
    seed: int,
) -> None:
    """Add both computations to `pipeline` (a Beam pipeline; they run when it does), writing under `out_dir`;
    without `probabilities` (a candidate that cannot answer), only the statistics."""
    import apache_beam as beam
    import tensorflow_data_validation as tfdv
    import tensorflow_model_analysis as tfma
    from tfx_bsl.coders import example_coder

    if probabilities is not None:
        _ = (
            pipeline
            | "CardPredictions" >> beam.Create([_predictions_batch(eval_rows, labels, probabilities)])
            | "CardMetrics" >> tfma.ExtractEvaluateAndWriteResults(
                eval_config=_eval_config(True), output_path=os.path.join(out_dir, TFMA_DIR), random_seed_for_testing=seed
            )
        )
    train = example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(list(train_examples))
    _ = (
        pipeline
        | "CardTrainExamples" >> beam.Create([train])
        | "CardStatistics" >> tfdv.GenerateStatistics(tfdv.StatsOptions())
        | "CardWriteStatistics" >> tfdv.WriteStatisticsToBinaryFile(os.path.join(out_dir, STATISTICS_FILE))
    )


def read_metrics(out_dir: str) -> dict[str, dict[str, Estimate]]:
    """slice name -> metric -> its estimate, from what `analyse` wrote."""
    import tensorflow_model_analysis as tfma

    found: dict[str, dict[str, Estimate]] = {}
    for per_slice in tfma.load_metrics(os.path.join(out_dir, TFMA_DIR), output_file_format="tfrecord"):
        [key] = per_slice.slice_key.single_slice_keys
        estimates = found.setdefault(key.bytes_value.decode(), {})
        for kv in per_slice.metric_keys_and_values:
            if not kv.value.HasField("double_value"):
                continue
            value = kv.value.double_value.value
            bounds = kv.confidence_interval
            lower, upper = bounds.lower_bound.double_value.value, bounds.upper_bound.double_value.value
            bounded = kv.key.name not in evaluation.COUNT_METRICS and kv.HasField("confidence_interval")
            finite = all(math.isfinite(v) for v in (value, lower, upper))
            # Every bounded metric here is a proportion: TFMA's t-interval is cut to [0, 1].
            estimates[kv.key.name] = Estimate(value, *((max(lower, 0.0), min(upper, 1.0)) if bounded and finite else (None, None)))
    return found


def without_intervals(metrics: dict[str, dict[str, float]]) -> dict[str, dict[str, Estimate]]:
    """The Evaluator's metrics per slice as estimates without intervals (what a card shows for a
    candidate that could not be asked itself)."""
    return {name: {metric: Estimate(value) for metric, value in values.items()} for name, values in metrics.items()}


def read_statistics(out_dir: str) -> Any:
    """TFDV's statistics of the training split (a DatasetFeatureStatisticsList)."""
    import tensorflow_data_validation as tfdv

    return tfdv.load_stats_binary(os.path.join(out_dir, STATISTICS_FILE))
