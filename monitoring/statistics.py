"""TFDV over logged predictions: statistics, schema anomalies (SERVING), skew and drift scores.

Skew and drift are scored by pipeline/drift.py, the same measures and per-feature thresholds
(pipeline/configs.py drift_thresholds) DataGate uses, restricted to the serving features.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

from google.protobuf import text_format
from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2

from models import features
from pipeline import anomalies as anomalies_lib
from pipeline import drift as drift_lib
from pipeline import statistics_layout
from pipeline.configs import PipelineConfig

SERVING_ENVIRONMENT = "SERVING"


def load_schema(path: Path) -> schema_pb2.Schema:
    return text_format.Parse(Path(path).read_text(), schema_pb2.Schema())


def load_statistics(uri: str | Path) -> statistics_pb2.DatasetFeatureStatisticsList:
    """A TFX statistics artifact directory (or a FeatureStats.pb file)."""
    import tensorflow_data_validation as tfdv
    from tfx.dsl.io import fileio

    uri = str(uri)  # a path or a URI (gs://, file://): Path() would fold the URI's "//"
    return tfdv.load_stats_binary(os.path.join(uri, statistics_layout.STATS_FILE) if fileio.isdir(uri) else uri)


def save_statistics(stats: statistics_pb2.DatasetFeatureStatisticsList, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(stats.SerializeToString())


def compute(rows: Iterable[dict[str, Any]]) -> statistics_pb2.DatasetFeatureStatisticsList:
    """TFDV statistics of raw serving feature dicts, typed by the feature contract."""
    import pandas as pd
    import tensorflow_data_validation as tfdv

    rows = list(rows)
    columns = {}
    for name in features.active().serving_features:
        values = [row.get(name) for row in rows]
        kind = features.active().raw_types[name]
        dtype = "Int64" if kind == "INT" else "float64" if kind == "FLOAT" else "object"
        columns[name] = pd.array(values, dtype=dtype) if kind != "BYTES" else pd.Series(values, dtype=object)
    return tfdv.generate_statistics_from_dataframe(pd.DataFrame(columns))


def schema_anomalies(stats: statistics_pb2.DatasetFeatureStatisticsList, schema: schema_pb2.Schema) -> list[anomalies_lib.Anomaly]:
    """What the statistics violate in the schema's SERVING environment."""
    import tensorflow_data_validation as tfdv

    found = tfdv.validate_statistics(stats, schema, environment=SERVING_ENVIRONMENT)
    return anomalies_lib.from_proto("serving", found)


def _serving_thresholds(config: PipelineConfig) -> dict[str, float]:
    return {k: v for k, v in config.drift_thresholds.items() if k in features.active().serving_features}


def skew(
    training: statistics_pb2.DatasetFeatureStatisticsList,
    serving: statistics_pb2.DatasetFeatureStatisticsList,
    schema: schema_pb2.Schema,
    config: PipelineConfig,
) -> list[drift_lib.Score]:
    """Training/serving skew of each monitored serving feature."""
    return drift_lib.compare(
        training, schema, _serving_thresholds(config), config.completeness_drop, median_shift=config.median_shift, serving=serving
    )


def drift(
    previous: statistics_pb2.DatasetFeatureStatisticsList,
    current: statistics_pb2.DatasetFeatureStatisticsList,
    schema: schema_pb2.Schema,
    config: PipelineConfig,
) -> list[drift_lib.Score]:
    """Drift of each monitored serving feature from the previous window to the current one."""
    return drift_lib.compare(
        current, schema, _serving_thresholds(config), config.completeness_drop, median_shift=config.median_shift, previous=previous
    )


def distances_json(scores: list[drift_lib.Score], baseline: str) -> dict[str, Any]:
    """Skew or drift scores as result.json holds them."""
    return {
        "available": True,
        "baseline": baseline,
        "features": [
            {"feature": s.feature, "measure": s.measure, "value": s.value, "threshold": s.threshold, "flagged": s.exceeded}
            for s in scores
        ],
        "flagged": sorted({s.feature for s in scores if s.exceeded}),
    }
