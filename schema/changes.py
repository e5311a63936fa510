"""The smallest schema change that accepts a span: TFDV's anomalies of its statistics against the
schema, each one a schema matter turned into one edit, and nothing else.

A schema matter is an anomaly a widened schema resolves, as TFDV's `update_schema` would:
  ENUM_TYPE_UNEXPECTED_STRING_VALUES          a value joins the feature's string domain;
  INT/FLOAT_TYPE_SMALL/BIG_*                  the numeric domain's minimum or maximum widens to
                                              the span's;
  FEATURE_TYPE_LOW_FRACTION/NUMBER_PRESENT    the presence floor drops to the span's;
  FEATURE_TYPE_LOW/HIGH_NUMBER_VALUES         the value count widens to the span's.
Any other anomaly (a missing or new column, a value of another type, a dataset-level count) is not
a schema change: `propose` names it among the problems a schema version cannot fix.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping

from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

DOMAIN_VALUE, MINIMUM, MAXIMUM, PRESENCE, VALUE_COUNT = "domain value", "minimum", "maximum", "presence", "value count"
KINDS = (DOMAIN_VALUE, MINIMUM, MAXIMUM, PRESENCE, VALUE_COUNT)
_FIXES = {
    "ENUM_TYPE_UNEXPECTED_STRING_VALUES": DOMAIN_VALUE,
    "INT_TYPE_SMALL_INT": MINIMUM,
    "FLOAT_TYPE_SMALL_FLOAT": MINIMUM,
    "INT_TYPE_BIG_INT": MAXIMUM,
    "FLOAT_TYPE_BIG_FLOAT": MAXIMUM,
    "FEATURE_TYPE_LOW_FRACTION_PRESENT": PRESENCE,
    "FEATURE_TYPE_LOW_NUMBER_PRESENT": PRESENCE,
    "FEATURE_TYPE_LOW_NUMBER_VALUES": VALUE_COUNT,
    "FEATURE_TYPE_HIGH_NUMBER_VALUES": VALUE_COUNT,
}


@dataclass(frozen=True)
class Change:
    """One edit of the schema: `feature`'s `kind` goes from `before` to `after`; `rows` of the span
    need it (None: not counted). A range's rows are those outside it (either end)."""

    feature: str
    kind: str  # one of KINDS
    before: str
    after: str
    rows: int | None = None

    def line(self) -> str:
        rows = "" if self.rows is None else f" ({self.rows:,} rows)"
        return f"  {self.feature}: {self.kind}: {self.before} -> {self.after}{rows}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Change":
        return cls(**data)


@dataclass(frozen=True)
class Proposal:
    changes: list[Change]
    not_schema: list[str]  # "feature: KIND" of the anomalies no schema change fixes


def _features(stats: statistics_pb2.DatasetFeatureStatisticsList) -> dict[str, statistics_pb2.FeatureNameStatistics]:
    return {f.path.step[0] if f.path.step else f.name: f for d in stats.datasets for f in d.features}


def _examples(stats: statistics_pb2.DatasetFeatureStatisticsList) -> int:
    return sum(d.num_examples for d in stats.datasets)


def _common(f: statistics_pb2.FeatureNameStatistics) -> statistics_pb2.CommonStatistics:
    kind = f.WhichOneof("stats")
    return getattr(f, kind).common_stats if kind else statistics_pb2.CommonStatistics()


def _string_counts(f: statistics_pb2.FeatureNameStatistics) -> dict[str, int]:
    """value -> rows, from the rank histogram (every value up to StatisticsGen's 1,000 buckets)."""
    if f.string_stats.rank_histogram.buckets:
        return {b.label: int(b.sample_count) for b in f.string_stats.rank_histogram.buckets}
    return {v.value: int(v.frequency) for v in f.string_stats.top_values}


def _number(value: float, integer: bool) -> str:
    """A bound as text that parses back to the same number."""
    return str(int(value)) if integer else repr(float(value))


def _outward(value: float, integer: bool, down: bool) -> float:
    """The bound that admits `value` as the schema stores it: an integer rounded outward, a float
    outward to float32 (FloatDomain's type), so a rounded bound never blocks the span again."""
    if integer:
        return math.floor(value) if down else math.ceil(value)
    import numpy as np

    stored = np.float32(value)
    if (down and stored > value) or (not down and stored < value):
        stored = np.nextafter(stored, np.float32(-np.inf if down else np.inf))
    return float(stored)


class _Split:
    """One split's statistics, read as the changes need them."""

    def __init__(self, stats: statistics_pb2.DatasetFeatureStatisticsList):
        self.features = _features(stats)
        self.examples = _examples(stats)


def _domain(schema: schema_pb2.Schema, feature: schema_pb2.Feature) -> list[str]:
    if feature.HasField("string_domain"):
        return list(feature.string_domain.value)
    named = {d.name: d for d in schema.string_domain}
    return list(named[feature.domain].value) if feature.HasField("domain") and feature.domain in named else []


def _changes_of(kind: str, schema: schema_pb2.Schema, feature: schema_pb2.Feature, splits: list[_Split], outside: int | None) -> list[Change]:
    found = [s.features[feature.name] for s in splits if feature.name in s.features]
    name = feature.name
    if kind == DOMAIN_VALUE:
        known, counts = set(_domain(schema, feature)), {}
        for f in found:
            for value, n in _string_counts(f).items():
                counts[value] = counts.get(value, 0) + n
        return [Change(name, DOMAIN_VALUE, "absent", f'"{v}"', n) for v, n in sorted(counts.items()) if v not in known]
    if kind in (MINIMUM, MAXIMUM):
        integer = feature.type == schema_pb2.INT
        domain = feature.int_domain if integer else feature.float_domain
        if kind == MINIMUM:
            low = min(f.num_stats.min for f in found)
            return [Change(name, MINIMUM, _number(domain.min, integer), _number(_outward(low, integer, down=True), integer), outside)]
        high = max(f.num_stats.max for f in found)
        return [Change(name, MAXIMUM, _number(domain.max, integer), _number(_outward(high, integer, down=False), integer), outside)]
    if kind == PRESENCE:
        present = sum(_common(f).num_non_missing for f in found)
        total = sum(s.examples for s in splits)
        fraction = math.floor(1000 * present / total) / 1000 if total else 0.0
        return [Change(name, PRESENCE, f"min_fraction {feature.presence.min_fraction:g}", f"min_fraction {fraction:g}", total - present)]
    low = min(_common(f).min_num_values for f in found)
    high = max(_common(f).max_num_values for f in found)
    before = f"{feature.value_count.min}..{feature.value_count.max}"
    return [Change(name, VALUE_COUNT, before, f"{min(low, feature.value_count.min)}..{max(high, feature.value_count.max)}")]


def propose(
    schema: schema_pb2.Schema, splits: Iterable[statistics_pb2.DatasetFeatureStatisticsList], outside: Mapping[str, int] | None = None
) -> Proposal:
    """The changes that make `schema` accept statistics `splits` (one list per split), and the
    anomalies no change of the schema fixes. `outside`: rows outside each numeric feature's range,
    counted in the span's files (statistics hold no exact count of them)."""
    import tensorflow_data_validation as tfdv

    splits = list(splits)
    kinds: dict[str, set[str]] = {}
    not_schema: set[str] = set()
    for stats in splits:
        anomalies = tfdv.validate_statistics(stats, schema)
        for feature, info in anomalies.anomaly_info.items():
            for reason in info.reason:
                kind = anomalies_pb2.AnomalyInfo.Type.Name(reason.type)
                if kind in _FIXES:
                    kinds.setdefault(feature, set()).add(_FIXES[kind])
                else:
                    not_schema.add(f"{feature}: {kind}")
        if anomalies.HasField("dataset_anomaly_info"):
            not_schema.update(f"<dataset>: {anomalies_pb2.AnomalyInfo.Type.Name(r.type)}" for r in anomalies.dataset_anomaly_info.reason)
    by_name = {f.name: f for f in schema.feature}
    read = [_Split(s) for s in splits]
    changes = [
        change
        for feature in sorted(kinds)
        for kind in KINDS
        if kind in kinds[feature]
        for change in _changes_of(kind, schema, by_name[feature], read, (outside or {}).get(feature))
    ]
    return Proposal(changes, sorted(not_schema))


def apply(schema: schema_pb2.Schema, changes: Iterable[Change]) -> schema_pb2.Schema:
    """A copy of `schema` with `changes` made (a value added to a named domain is added there,
    for every feature sharing it)."""
    updated = schema_pb2.Schema()
    updated.CopyFrom(schema)
    by_name = {f.name: f for f in updated.feature}
    named = {d.name: d for d in updated.string_domain}
    for change in changes:
        feature = by_name[change.feature]
        if change.kind == DOMAIN_VALUE:
            value = change.after.strip('"')
            domain = feature.string_domain if feature.HasField("string_domain") else named[feature.domain]
            if value not in domain.value:
                domain.value.append(value)
        elif change.kind in (MINIMUM, MAXIMUM):
            domain = feature.int_domain if feature.type == schema_pb2.INT else feature.float_domain
            bound = int(change.after) if feature.type == schema_pb2.INT else float(change.after)
            setattr(domain, "min" if change.kind == MINIMUM else "max", bound)
        elif change.kind == PRESENCE:
            feature.presence.min_fraction = float(change.after.split()[-1])
            feature.presence.min_count = min(feature.presence.min_count, 1)
        else:
            low, high = (int(n) for n in change.after.split(".."))
            feature.value_count.min, feature.value_count.max = low, high
    return updated
