"""DataGate: the step that stops an invalid or drifted span before Transform and Trainer.

ExampleValidator only records anomalies. DataGate
1. fails the run with every schema anomaly named, if there are any;
2. scores drift of the span against the previous validated span, and skew of the serving
   statistics (when a serving log has been summarised) against it (pipeline/drift.py), writing the
   per-feature scores to its `drift_report`; scores over threshold fail the run under the "block"
   policy and are reported under "warn";
3. otherwise publishes the span as `validated_examples` and `validated_statistics` (copies with the
   same span, version and splits, stamped with the span's namespace, `span_namespace`: upstream or
   feedback, data/spans_io.py). The training window and the next span's drift baseline are drawn
   only from these, so a blocked span is never trained on, and every model's lineage passes
   through the gate.
"""
# No `from __future__ import annotations`: TFX reads the real type hints of DataGate.
import json
import os

import tensorflow_data_validation as tfdv
from tfx import v1 as tfx
from tfx.types import artifact_utils
from tfx.utils import io_utils

from data import spans_io
from pipeline import anomalies as anomalies_lib
from pipeline import drift

SPAN_KEYS = ("span", "version")
STATS_SPLIT = "train"
REPORT_FILE = "drift.json"
BLOCK, WARN = "block", "warn"


class DataValidationError(RuntimeError):
    """A span violates the schema or drifted too far; nothing downstream may run on it."""


class DriftReport(tfx.dsl.Artifact):
    """Per-feature drift and skew scores of a span (drift.json)."""

    TYPE_NAME = "conveyor.DriftReport"


def _load_stats(statistics: tfx.dsl.Artifact):
    return tfdv.load_stats_binary(
        io_utils.get_only_uri_in_dir(artifact_utils.get_split_uri([statistics], STATS_SPLIT))
    )


def _copy_span(source: tfx.dsl.Artifact, target: tfx.dsl.Artifact, examples: tfx.dsl.Artifact, namespace: str) -> None:
    """Copy `source` into `target`, labelled with the span and version of `examples` and its namespace."""
    io_utils.copy_dir(source.uri, target.uri)
    target.split_names = source.split_names
    for key in SPAN_KEYS:  # ExampleGen records span and version as custom properties
        if examples.has_custom_property(key):
            target.set_int_custom_property(key, examples.get_int_custom_property(key))
    target.set_string_custom_property(spans_io.NAMESPACE_PROPERTY, namespace)


@tfx.dsl.components.component
def DataGate(
    examples: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Examples],
    statistics: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleStatistics],
    anomalies: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies],
    schema: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Schema],
    validated_examples: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Examples],
    validated_statistics: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.ExampleStatistics],
    drift_report: tfx.dsl.components.OutputArtifact[DriftReport],
    drift_thresholds: tfx.dsl.components.Parameter[str],
    completeness_drop: tfx.dsl.components.Parameter[float],
    drift_policy: tfx.dsl.components.Parameter[str],
    median_shift: tfx.dsl.components.Parameter[float],
    span_namespace: tfx.dsl.components.Parameter[str],
    serving_statistics_path: tfx.dsl.components.Parameter[str] = "",
    previous_statistics: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleStatistics] = None,
) -> None:
    span = examples.get_int_custom_property("span")
    found = anomalies_lib.read(anomalies.uri, anomalies.split_names)
    if found:
        raise DataValidationError(
            f"span {span} blocked before training: {len(found)} schema anomalies\n" + anomalies_lib.report(found)
        )

    serving = None
    if serving_statistics_path and os.path.exists(serving_statistics_path):
        serving = tfdv.load_stats_binary(serving_statistics_path)
    scores = drift.compare(
        current=_load_stats(statistics),
        schema=tfdv.load_schema_text(os.path.join(schema.uri, "schema.pbtxt")),
        thresholds=json.loads(drift_thresholds),
        completeness_drop=completeness_drop,
        median_shift=median_shift,
        previous=_load_stats(previous_statistics) if previous_statistics is not None else None,
        serving=serving,
    )
    os.makedirs(drift_report.uri, exist_ok=True)
    report = drift.to_json(scores, drift_policy)
    io_utils.write_string_file(os.path.join(drift_report.uri, REPORT_FILE), report)
    drift_report.set_int_custom_property("span", span)
    if previous_statistics is not None:
        drift_report.set_int_custom_property("baseline_span", previous_statistics.get_int_custom_property("span"))
    exceeded = [s for s in scores if s.exceeded]
    drift_report.set_string_custom_property("exceeded", ",".join(sorted({s.feature for s in exceeded})))
    if exceeded and drift_policy == BLOCK:
        raise DataValidationError(
            f"span {span} blocked before training: drift/skew over threshold (policy {BLOCK})\n" + drift.describe(scores)
        )

    _copy_span(examples, validated_examples, examples, span_namespace)
    _copy_span(statistics, validated_statistics, examples, span_namespace)
