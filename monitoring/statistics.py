"""TFDV over logged predictions: statistics, schema anomalies (SERVING), skew and drift distances.

Distances use TFDV's comparators, set on a copy of the schema for every serving feature:
L-infinity for string features, Jensen-Shannon divergence of the quantile histograms for numeric
ones, with the bounds of
pipeline/configs.py (DistanceThresholds). TFDV reports every compared feature's distance in the
anomalies' drift_skew_info; a feature is flagged when its distance exceeds its threshold.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2, statistics_pb2

from models import features
from pipeline import anomalies as anomalies_lib
from pipeline.configs import DistanceThresholds

SERVING_ENVIRONMENT = "SERVING"
STATS_FILE = "FeatureStats.pb"  # the file name TFX's statistics artifacts use
LINF, JSD = "L_INFTY", "JENSEN_SHANNON_DIVERGENCE"


@dataclass(frozen=True)
class Distance:
    feature: str
    measure: str  # L_INFTY or JENSEN_SHANNON_DIVERGENCE
    value: float
    threshold: float

    @property
    def flagged(self) -> bool:
        return self.value > self.threshold

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "flagged": self.flagged}


def load_schema(path: Path) -> schema_pb2.Schema:
    return text_format.Parse(Path(path).read_text(), schema_pb2.Schema())


def load_statistics(uri: str | Path) -> statistics_pb2.DatasetFeatureStatisticsList:
    """A TFX statistics artifact directory (or a FeatureStats.pb file)."""
    import tensorflow_data_validation as tfdv

    path = Path(uri)
    return tfdv.load_stats_binary(str(path / STATS_FILE if path.is_dir() else path))


def save_statistics(stats: statistics_pb2.DatasetFeatureStatisticsList, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(stats.SerializeToString())


def compute(rows: Iterable[dict[str, Any]]) -> statistics_pb2.DatasetFeatureStatisticsList:
    """TFDV statistics of raw serving feature dicts, typed by the feature contract."""
    import pandas as pd
    import tensorflow_data_validation as tfdv

    rows = list(rows)
    columns = {}
    for name in features.SERVING_FEATURES:
        values = [row.get(name) for row in rows]
        kind = features.RAW_TYPES[name]
        dtype = "Int64" if kind == "INT" else "float64" if kind == "FLOAT" else "object"
        columns[name] = pd.array(values, dtype=dtype) if kind != "BYTES" else pd.Series(values, dtype=object)
    return tfdv.generate_statistics_from_dataframe(pd.DataFrame(columns))


def schema_anomalies(stats: statistics_pb2.DatasetFeatureStatisticsList, schema: schema_pb2.Schema) -> list[anomalies_lib.Anomaly]:
    """What the statistics violate in the schema's SERVING environment."""
    import tensorflow_data_validation as tfdv

    found = tfdv.validate_statistics(stats, schema, environment=SERVING_ENVIRONMENT)
    return anomalies_lib.from_proto("serving", found)


def _with_comparators(schema: schema_pb2.Schema, field: str, thresholds: DistanceThresholds) -> schema_pb2.Schema:
    copy = schema_pb2.Schema()
    copy.CopyFrom(schema)
    for feature in copy.feature:
        if feature.name not in features.SERVING_FEATURES:
            continue
        comparator = getattr(feature, field)
        if features.RAW_TYPES[feature.name] == "BYTES":
            comparator.infinity_norm.threshold = thresholds.categorical_linf
        else:
            comparator.jensen_shannon_divergence.threshold = thresholds.numeric_jsd
            # Equal-depth buckets: equal-width ones put nearly all of a long-tailed feature (miles,
            # fares) in one bucket whose width depends on the sample's maximum.
            comparator.jensen_shannon_divergence.source.type = schema_pb2.HistogramSelection.QUANTILES
    return copy


def _distances(found: anomalies_pb2.Anomalies, which: str) -> list[Distance]:
    out = []
    for info in found.drift_skew_info:
        for m in getattr(info, which):
            out.append(Distance(
                feature=".".join(info.path.step),
                measure=anomalies_pb2.DriftSkewInfo.Measurement.Type.Name(m.type),
                value=float(m.value),
                threshold=float(m.threshold),
            ))
    return sorted(out, key=lambda d: d.feature)


def skew(
    training: statistics_pb2.DatasetFeatureStatisticsList,
    serving: statistics_pb2.DatasetFeatureStatisticsList,
    schema: schema_pb2.Schema,
    thresholds: DistanceThresholds,
) -> list[Distance]:
    """Training/serving skew of each serving feature."""
    import tensorflow_data_validation as tfdv

    found = tfdv.validate_statistics(
        training, _with_comparators(schema, "skew_comparator", thresholds), serving_statistics=serving
    )
    return _distances(found, "skew_measurements")


def drift(
    previous: statistics_pb2.DatasetFeatureStatisticsList,
    current: statistics_pb2.DatasetFeatureStatisticsList,
    schema: schema_pb2.Schema,
    thresholds: DistanceThresholds,
) -> list[Distance]:
    """Drift of each serving feature from the previous window to the current one."""
    import tensorflow_data_validation as tfdv

    found = tfdv.validate_statistics(
        current,
        _with_comparators(schema, "drift_comparator", thresholds),
        previous_statistics=previous,
        environment=SERVING_ENVIRONMENT,
    )
    return _distances(found, "drift_measurements")
