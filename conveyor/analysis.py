"""What notebooks/ and the run report read: artifacts found through ML Metadata, loaded with TFDV.

Nothing here knows a path inside the pipeline root: artifacts come from MLMD (metadata/runs.py),
so the same code reads any Conveyor home (the default `outputs/`, or CONVEYOR_HOME).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass

import pandas as pd
import tensorflow_data_validation as tfdv
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tensorflow_metadata.proto.v0 import schema_pb2, statistics_pb2
from tfx.dsl.io import fileio
from tfx.types import artifact_utils

from metadata import runs
from pipeline import statistics_layout
from pipeline.statistics_summary import FeatureSummary, feature_summaries, num_examples  # noqa: F401 (the notebooks read them here)

SCHEMA_FILE = "schema.pbtxt"  # ImportSchemaGen's output file


def split_names(artifact: metadata_store_pb2.Artifact) -> list[str]:
    return artifact_utils.decode_split_names(artifact.properties["split_names"].string_value)


def load_statistics(artifact: metadata_store_pb2.Artifact, split: str) -> statistics_pb2.DatasetFeatureStatisticsList:
    """One split of a StatisticsGen output."""
    return tfdv.load_stats_binary(statistics_layout.split_file(artifact.uri, split))


def load_schema(artifact: metadata_store_pb2.Artifact) -> schema_pb2.Schema:
    """The schema in a Schema artifact (ImportSchemaGen's output)."""
    return tfdv.load_schema_text(os.path.join(artifact.uri, SCHEMA_FILE))


COMPARED_FIGURES = ("present", "mean", "std_dev", "unique", "top_value", "top_share")


def compare_statistics(
    lhs: statistics_pb2.DatasetFeatureStatisticsList,
    rhs: statistics_pb2.DatasetFeatureStatisticsList,
    lhs_name: str,
    rhs_name: str,
) -> pd.DataFrame:
    """Two datasets' feature summaries side by side: a row per feature, a (figure, dataset) column
    for each of COMPARED_FIGURES (NaN where a figure does not apply or a feature is missing)."""
    if lhs_name == rhs_name:
        raise ValueError(f"the two datasets need different names, both are {lhs_name!r}")
    frames = {
        name: pd.DataFrame(feature_summaries(stats)).set_index("feature")
        for name, stats in ((lhs_name, lhs), (rhs_name, rhs))
    }
    table = pd.concat(frames, axis=1).swaplevel(axis=1)
    return table[[(figure, name) for figure in COMPARED_FIGURES for name in (lhs_name, rhs_name)]]


@dataclass(frozen=True)
class DriftScore:
    """One of DataGate's scores: a feature's distance to the previous span (drift) or of serving
    data to the span (skew), and its threshold (pipeline/drift.py)."""

    source: str  # what was compared, e.g. "drift vs span 1"
    feature: str
    measure: str  # L_INFINITY, JENSEN_SHANNON_DIVERGENCE or COMPLETENESS_DROP
    value: float
    threshold: float

    @property
    def drifted(self) -> bool:
        return self.value > self.threshold


def drift_scores(store: metadata_store.MetadataStore, run: runs.Run) -> list[DriftScore]:
    """DataGate's drift and skew scores in `run` ([] when DataGate wrote no report, or had
    nothing to compare with)."""
    from pipeline.components.data_gate import REPORT_FILE

    report = run.output("DataGate", "drift_report")
    if report is None or not fileio.exists(os.path.join(report.uri, REPORT_FILE)):
        return []
    data = json.loads(fileio.open(os.path.join(report.uri, REPORT_FILE)).read())
    baseline = report.custom_properties["baseline_span"].int_value if "baseline_span" in report.custom_properties else None
    return [
        DriftScore(
            f"{s['comparison']} vs span {baseline}" if s["comparison"] == "drift" else f"{s['comparison']} (serving vs span)",
            s["feature"], s["measure"], s["value"], s["threshold"],
        )
        for s in data["scores"]
    ]
