"""A dataset's TFDV statistics in the figures a person scans first, per feature: for the run report
(conveyor/local/report.py), the notebooks (conveyor/analysis.py) and the model card."""
from __future__ import annotations

from dataclasses import dataclass

from tensorflow_metadata.proto.v0 import statistics_pb2

from pipeline.drift import examples_with_values


@dataclass(frozen=True)
class FeatureSummary:
    """One feature of one dataset's statistics, in the figures a person scans first."""

    feature: str
    kind: str  # "numeric" or "categorical"
    present: float  # share of examples that have a value (an empty CSV cell is no value)
    mean: float | None = None
    std_dev: float | None = None
    minimum: float | None = None
    maximum: float | None = None
    unique: int | None = None
    top_value: str | None = None
    top_share: float | None = None  # share of the present values that are top_value


def num_examples(stats: statistics_pb2.DatasetFeatureStatisticsList) -> int:
    return int(stats.datasets[0].num_examples)


def feature_summaries(stats: statistics_pb2.DatasetFeatureStatisticsList) -> list[FeatureSummary]:
    """Per-feature summary of the first dataset in `stats`, in feature-name order."""
    found = []
    for feature in stats.datasets[0].features:
        name = ".".join(feature.path.step) or feature.name
        if feature.HasField("num_stats"):
            numbers = feature.num_stats
            found.append(
                FeatureSummary(
                    name,
                    "numeric",
                    _present(numbers.common_stats),
                    mean=numbers.mean,
                    std_dev=numbers.std_dev,
                    minimum=numbers.min,
                    maximum=numbers.max,
                )
            )
        elif feature.HasField("string_stats"):
            strings = feature.string_stats
            top = strings.top_values[0] if strings.top_values else None
            present = strings.common_stats.num_non_missing
            found.append(
                FeatureSummary(
                    name,
                    "categorical",
                    _present(strings.common_stats),
                    unique=int(strings.unique),
                    top_value=top.value if top else None,
                    top_share=top.frequency / present if top and present else None,
                )
            )
    return sorted(found, key=lambda s: s.feature)


def _present(common: statistics_pb2.CommonStatistics) -> float:
    total = common.num_non_missing + common.num_missing
    return examples_with_values(common) / total if total else 0.0
