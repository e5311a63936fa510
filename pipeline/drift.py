"""Drift and skew between two sets of TFDV statistics, per feature.

- String features: TFDV's L-infinity comparator.
- Numeric features: Jensen-Shannon divergence (base 2, 0..1) over the *baseline's deciles*, both
  read from TFDV's quantile histograms. TFDV's own numeric JSD works on equal-width histograms,
  which outliers dominate on this data (two real spans score 0.76 on trip_miles while fares x1.8
  scores 0.10 on fare), so it cannot separate drift from noise here.
- Completeness: the drop in the fraction of examples carrying a value. CsvExampleGen keeps an
  empty cell as an empty value list, so a spike of empty cells leaves TFDV's presence untouched;
  the fraction is counted exactly from TFDV's value counts (examples_with_values).
- Median shift, for numeric features with a positive baseline median: |ln(median ratio)|. Mass
  measures over the baseline's deciles barely see a shift of the whole distribution (every decile
  keeps about a tenth of the mass): trip_miles x1.5 (median 0.9 -> 1.35) scores JSD 0.01, no more
  than the two shipped spans score against each other, but a median shift of 0.405 against their
  0.105. The shift is flagged when it exceeds both the configured threshold and the two samples'
  own noise: 2.576 standard errors of the log-median difference (99 %, two-sided), each estimated
  from the sample's size and its density at the median (the 40th-60th percentile spread).
"""
from __future__ import annotations

import itertools
import json
import math
from dataclasses import asdict, dataclass
from typing import Mapping

import tensorflow_data_validation as tfdv
from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2

L_INFINITY, JENSEN_SHANNON, COMPLETENESS = "L_INFINITY", "JENSEN_SHANNON_DIVERGENCE", "COMPLETENESS_DROP"
MEDIAN_SHIFT = "MEDIAN_SHIFT"
NOISE_Z = 2.576  # 99 %, two-sided
MEDIAN_FLOOR = 0.01  # a median that fell to 0 scores as a fall to 1 % of the baseline's
DRIFT, SKEW = "drift", "skew"


@dataclass(frozen=True)
class Score:
    feature: str
    comparison: str  # DRIFT (vs the previous span) or SKEW (serving vs training)
    measure: str
    value: float
    threshold: float

    @property
    def exceeded(self) -> bool:
        return self.value > self.threshold


def _comparator_schema(schema: schema_pb2.Schema, thresholds: Mapping[str, float]) -> schema_pb2.Schema:
    """A copy of `schema` with L-infinity drift and skew comparators for the (string) features given."""
    out = schema_pb2.Schema()
    out.CopyFrom(schema)
    for name, threshold in thresholds.items():
        feature = tfdv.get_feature(out, name)
        feature.drift_comparator.infinity_norm.threshold = threshold
        feature.skew_comparator.infinity_norm.threshold = threshold
    return out


def _feature_map(stats: statistics_pb2.DatasetFeatureStatisticsList) -> dict[str, statistics_pb2.FeatureNameStatistics]:
    return {f.path.step[0]: f for f in stats.datasets[0].features}


def has_quantiles(feature: statistics_pb2.FeatureNameStatistics | None) -> bool:
    return feature is not None and any(
        h.type == statistics_pb2.Histogram.QUANTILES and h.buckets for h in feature.num_stats.histograms
    )


def _quantiles(feature: statistics_pb2.FeatureNameStatistics) -> tuple[list[tuple[float, float, float]], float]:
    histogram = next(h for h in feature.num_stats.histograms if h.type == statistics_pb2.Histogram.QUANTILES)
    buckets = [(b.low_value, b.high_value, b.sample_count) for b in histogram.buckets]
    return buckets, sum(c for _, _, c in buckets)


def _quantile_cdf(feature: statistics_pb2.FeatureNameStatistics):
    """F(x) = fraction of values <= x, from TFDV's quantile histogram (linear within buckets)."""
    buckets, total = _quantiles(feature)
    total = total or 1.0

    def cdf(x: float) -> float:
        mass = 0.0
        for low, high, count in buckets:
            if high <= x:
                mass += count
            elif low < x:
                mass += count * (x - low) / (high - low)
        return mass / total

    edges = sorted({b[0] for b in buckets} | {b[1] for b in buckets})
    return cdf, edges


def decile_jsd(previous: statistics_pb2.FeatureNameStatistics, current: statistics_pb2.FeatureNameStatistics) -> float:
    prev_cdf, edges = _quantile_cdf(previous)
    cur_cdf, _ = _quantile_cdf(current)
    cuts = edges[1:-1]  # intervals (-inf, e1], (e1, e2], ..., (e_last-1, +inf)
    def masses(cdf) -> list[float]:
        points = [0.0] + [cdf(x) for x in cuts] + [1.0]
        return [max(0.0, b - a) for a, b in itertools.pairwise(points)]
    p, q = masses(prev_cdf), masses(cur_cdf)
    m = [(a + b) / 2 for a, b in zip(p, q)]
    def kl(a: list[float]) -> float:
        return sum(x * math.log2(x / y) for x, y in zip(a, m) if x > 0)
    return max(0.0, (kl(p) + kl(q)) / 2)


def _quantile(feature: statistics_pb2.FeatureNameStatistics, level: float) -> float:
    """The value below which `level` of the values lie, from TFDV's quantile histogram."""
    buckets, total = _quantiles(feature)
    wanted, mass = level * total, 0.0
    for low, high, count in buckets:
        if count and mass + count >= wanted:
            return low + (high - low) * (wanted - mass) / count
        mass += count
    return buckets[-1][1]


def _log_median_error(feature: statistics_pb2.FeatureNameStatistics, median: float) -> float:
    """Standard error of ln(median): 1 / (2 f(m) sqrt(n)) / m, with the density f(m) ~ 0.2 / (q60 - q40)."""
    _, count = _quantiles(feature)
    spread = _quantile(feature, 0.6) - _quantile(feature, 0.4)
    return spread / (0.4 * median * math.sqrt(count)) if count and median > 0 else 0.0


def _median_shift(
    baseline: statistics_pb2.FeatureNameStatistics, other: statistics_pb2.FeatureNameStatistics, floor: float
) -> tuple[float, float] | None:
    """(|ln(median ratio)|, threshold = max(floor, noise)); None when the baseline median is not positive."""
    before, after = baseline.num_stats.median, other.num_stats.median
    if before <= 0:
        return None
    value = abs(math.log(max(after, before * MEDIAN_FLOOR) / before))
    noise = NOISE_Z * math.hypot(_log_median_error(baseline, before), _log_median_error(other, max(after, before * MEDIAN_FLOOR)))
    return round(value, 6), round(max(floor, noise), 6)


def examples_with_values(common: statistics_pb2.CommonStatistics) -> int:
    """Examples with at least one value of the feature. Exact when an example holds at most one
    value (every CSV column, every served feature): then it is TFDV's total count of values; an
    empty CSV cell is a present feature without values, so TFDV's num_non_missing would count it."""
    return int(common.tot_num_values) if common.max_num_values <= 1 else int(common.num_non_missing)


def _completeness(stats: statistics_pb2.DatasetFeatureStatisticsList) -> dict[str, float]:
    """feature -> fraction of examples with at least one value."""
    dataset = stats.datasets[0]
    out = {}
    for feature in dataset.features:
        common = feature.num_stats.common_stats if feature.HasField("num_stats") else feature.string_stats.common_stats
        if dataset.num_examples:
            out[feature.path.step[0]] = examples_with_values(common) / dataset.num_examples
    return out


def _compare_pair(
    baseline: statistics_pb2.DatasetFeatureStatisticsList,
    other: statistics_pb2.DatasetFeatureStatisticsList,
    schema: schema_pb2.Schema,
    thresholds: Mapping[str, float],
    median_shift: float,
    comparison: str,
) -> list[Score]:
    scores = []
    strings = {n: t for n, t in thresholds.items() if tfdv.get_feature(schema, n).type == schema_pb2.BYTES}
    if strings:
        comparators = _comparator_schema(schema, strings)
        if comparison == DRIFT:
            result = tfdv.validate_statistics(other, comparators, previous_statistics=baseline)
        else:
            result = tfdv.validate_statistics(baseline, comparators, serving_statistics=other, environment="SERVING")
        for info in result.drift_skew_info:
            for m in info.drift_measurements if comparison == DRIFT else info.skew_measurements:
                scores.append(Score(info.path.step[0], comparison, L_INFINITY, m.value, m.threshold))
    base, new = _feature_map(baseline), _feature_map(other)
    for name, threshold in thresholds.items():
        if name in strings or not (has_quantiles(base.get(name)) and has_quantiles(new.get(name))):
            continue  # no values on one side: the completeness score covers it
        scores.append(Score(name, comparison, JENSEN_SHANNON, round(decile_jsd(base[name], new[name]), 6), threshold))
        shift = _median_shift(base[name], new[name], median_shift)
        if shift is not None:
            scores.append(Score(name, comparison, MEDIAN_SHIFT, *shift))
    return scores


def compare(
    current: statistics_pb2.DatasetFeatureStatisticsList,
    schema: schema_pb2.Schema,
    thresholds: Mapping[str, float],
    completeness_drop: float,
    *,
    median_shift: float,
    previous: statistics_pb2.DatasetFeatureStatisticsList | None = None,
    serving: statistics_pb2.DatasetFeatureStatisticsList | None = None,
) -> list[Score]:
    """Per-feature scores of `current` against `previous` (drift) and of `serving` against `current` (skew)."""
    scores: list[Score] = []
    if previous is not None:
        scores += _compare_pair(previous, current, schema, thresholds, median_shift, DRIFT)
        before, now = _completeness(previous), _completeness(current)
        for name in thresholds:
            if name in before:
                drop = before[name] - now.get(name, 0.0)
                scores.append(Score(name, DRIFT, COMPLETENESS, round(drop, 6), completeness_drop))
    if serving is not None:
        scores += _compare_pair(current, serving, schema, thresholds, median_shift, SKEW)
    return sorted(scores, key=lambda s: (s.comparison, s.feature, s.measure))


def to_json(scores: list[Score], policy: str) -> str:
    return json.dumps(
        {
            "policy": policy,
            "exceeded": sorted({s.feature for s in scores if s.exceeded}),
            "scores": [{**asdict(s), "exceeded": s.exceeded} for s in scores],
        },
        indent=2,
    )


def describe(scores: list[Score]) -> str:
    return "\n".join(
        f"  - {s.feature}: {s.comparison} {s.measure} = {s.value:.4f} > {s.threshold}" for s in scores if s.exceeded
    )
