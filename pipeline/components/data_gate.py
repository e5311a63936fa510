"""DataGate: the step that stops an invalid or drifted span before Transform and Trainer.

ExampleValidator only records anomalies. DataGate
1. reads the span's CSV files once (data/span_audit.py) and fails the run, under every drift
   policy, when the span breaks a rule of pipeline/validation.py: no rows or far fewer than the
   previous validated span, a repeated header, values of the wrong type or outside the schema,
   a feature emptier than its completeness floor (schema/completeness.json), a broken feed, a
   cross-column plausibility rule of the contract, a broken meaning (drift far beyond any real
   one), or a schema anomaly; the error names each problem in a sentence, with rows and example lines;
2. scores drift of the span against the previous validated span (none before the first one: the
   resolver then gives nothing, the stores form an artifact without statistics), and skew of the
   serving statistics (when a serving log has been summarised) against it (pipeline/drift.py),
   writing the per-feature scores to its `drift_report`; scores over threshold fail the run under
   the "block" policy and are reported under "warn";
3. otherwise publishes the span as `validated_examples` and `validated_statistics` (copies with the
   same span, version and splits, stamped with the span's namespace, `span_namespace`: upstream or
   feedback, data/spans_io.py). The training window and the next span's drift baseline are drawn
   only from these, so a blocked span is never trained on, and every model's lineage passes
   through the gate. Its drift_report also holds validation.json: the span's rows, each
   feature's completeness against its floor and the plausibility measures, which the validated
   statistics also carry (custom property `plausibility`) as the next span's baseline.
"""
# No `from __future__ import annotations`: TFX reads the real type hints of DataGate.
import io
import json
import os
from dataclasses import dataclass
from typing import Any, BinaryIO, Dict, List, Optional

import tensorflow_data_validation as tfdv
from tfx import v1 as tfx
from tfx.dsl.io import fileio
from tfx.types import artifact_utils
from tfx.utils import io_utils

from data import span_audit, spans_io
from models import features
from pipeline import anomalies as anomalies_lib
from pipeline import drift, statistics_layout, validation

SPAN_KEYS = ("span", "version")
SCHEMA_FILE = "schema.pbtxt"  # in a Schema artifact
REPORT_FILE = "drift.json"
VALIDATION_FILE = "validation.json"
SPAN_PLACEHOLDER = "{SPAN}"
BLOCK, WARN = "block", "warn"
PLAUSIBILITY_PROPERTY = "plausibility"  # on validated statistics: {rule: measure} as JSON


class DataValidationError(RuntimeError):
    """A span violates the schema or drifted too far; nothing downstream may run on it."""


class DriftReport(tfx.dsl.Artifact):
    """Per-feature drift and skew scores of a span (drift.json) and its validation (validation.json)."""

    TYPE_NAME = "conveyor.DriftReport"


def _load_stats(statistics: "Stored | tfx.dsl.Artifact", split: str = statistics_layout.TRAIN_SPLIT):
    return tfdv.load_stats_binary(statistics_layout.split_file(statistics.uri, split))


def _rows(statistics: "Stored | tfx.dsl.Artifact") -> int:
    """Examples in every split of a statistics artifact."""
    return sum(
        sum(d.num_examples for d in _load_stats(statistics, split).datasets)
        for split in artifact_utils.decode_split_names(statistics.split_names)
    )


class _Readable(io.RawIOBase):
    """A tfx fileio file (local or remote) as the binary stream Python's io and pyarrow read."""

    def __init__(self, handle) -> None:
        self._handle = handle

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._handle.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._handle.close()
        super().close()


def _open(path: str) -> BinaryIO:
    return io.BufferedReader(_Readable(fileio.open(path, "rb")))


def span_files(input_pattern: str, span: int) -> List[str]:
    """The CSV files of `span`: ExampleGen's pattern with the span number filled in."""
    return sorted(fileio.glob(input_pattern.replace(SPAN_PLACEHOLDER, str(span))))


def _has_stats(statistics: tfx.dsl.Artifact | None) -> bool:
    """False for no baseline: no artifact, or an empty one (the stores form before any validated span)."""
    return statistics is not None and fileio.exists(statistics_layout.split_dir(statistics.uri))


def _copy_span(source: tfx.dsl.Artifact, target: tfx.dsl.Artifact, examples: tfx.dsl.Artifact, namespace: str) -> None:
    """Copy `source` into `target`, labelled with the span and version of `examples` and its namespace."""
    io_utils.copy_dir(source.uri, target.uri)
    target.split_names = source.split_names
    for key in SPAN_KEYS:  # ExampleGen records span and version as custom properties
        if examples.has_custom_property(key):
            target.set_int_custom_property(key, examples.get_int_custom_property(key))
    target.set_string_custom_property(spans_io.NAMESPACE_PROPERTY, namespace)


@dataclass(frozen=True)
class Stored:
    """A statistics or anomalies artifact as stored: its URI and split names (a JSON list)."""

    uri: str
    split_names: str


@dataclass(frozen=True)
class Baseline(Stored):
    """The previous validated span's statistics, and its plausibility measures (JSON) as DataGate recorded them."""

    span: int
    plausibility: str = "{}"


@dataclass(frozen=True)
class SpanCheck:
    """What the span rules saw of a span, and the problems they found ([] = it passes them)."""

    problems: List[validation.Problem]
    audit: span_audit.SpanAudit
    current: Any
    previous: Optional[validation.Previous]
    schema: Any
    rules: Dict[str, Any]


def check_span(
    span: int,
    input_pattern: str,
    statistics: Stored,
    anomalies: List[anomalies_lib.Anomaly],
    schema_file: str,
    previous_statistics: Optional[Baseline],
    completeness: str,
    min_rows_ratio: float,
    broken_feed_factor: float,
    broken_meaning_jsd: float,
    drift_thresholds: str,
) -> SpanCheck:
    """The span rules of pipeline/validation.py on `span` with ExampleValidator's `anomalies`, as
    DataGate applies them (and as `conveyor schema diff` re-applies them to a blocked span's
    recorded inputs under another schema version); AuditError if a span file is not CSV."""
    schema_proto = tfdv.load_schema_text(schema_file)
    rules = json.loads(completeness)
    audit = span_audit.audit(span_files(input_pattern, span), _open, validation.domains(schema_proto))
    rows = _rows(statistics)
    current = _load_stats(statistics) if rows else None
    previous = None
    if previous_statistics is not None:
        previous = validation.Previous(
            previous_statistics.span, _rows(previous_statistics), _load_stats(previous_statistics),
            json.loads(previous_statistics.plausibility or "{}"),
        )
    problems = validation.check(
        span,
        audit,
        examples_read=rows,
        anomalies=anomalies,
        completeness=rules,
        schema=schema_proto,
        current=current,
        previous=previous,
        min_rows_ratio=min_rows_ratio,
        broken_feed_factor=broken_feed_factor,
        broken_meaning_jsd=broken_meaning_jsd,
        drift_features=json.loads(drift_thresholds),
    )
    return SpanCheck(problems, audit, current, previous, schema_proto, rules)


@tfx.dsl.components.component
def DataGate(
    examples: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Examples],
    statistics: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleStatistics],
    anomalies: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies],
    schema: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.Schema],
    validated_examples: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.Examples],
    validated_statistics: tfx.dsl.components.OutputArtifact[tfx.types.standard_artifacts.ExampleStatistics],
    drift_report: tfx.dsl.components.OutputArtifact[DriftReport],
    input_pattern: tfx.dsl.components.Parameter[str],
    completeness: tfx.dsl.components.Parameter[str],
    min_rows_ratio: tfx.dsl.components.Parameter[float],
    broken_feed_factor: tfx.dsl.components.Parameter[float],
    broken_meaning_jsd: tfx.dsl.components.Parameter[float],
    drift_thresholds: tfx.dsl.components.Parameter[str],
    completeness_drop: tfx.dsl.components.Parameter[float],
    drift_policy: tfx.dsl.components.Parameter[str],
    median_shift: tfx.dsl.components.Parameter[float],
    span_namespace: tfx.dsl.components.Parameter[str],
    serving_statistics_path: tfx.dsl.components.Parameter[str] = "",
    contract: tfx.dsl.components.Parameter[str] = "",
    previous_statistics: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleStatistics] = None,
) -> None:
    # The pipeline's contract (its columns, types and plausibility rules), where its file is not
    # (Kubeflow); carried as a parameter, an edited contract is a new cache key.
    features.activate_from(json.loads(contract or "{}"))
    span = examples.get_int_custom_property("span")
    baseline = None
    if _has_stats(previous_statistics):
        recorded = (previous_statistics.get_string_custom_property(PLAUSIBILITY_PROPERTY)
                    if previous_statistics.has_custom_property(PLAUSIBILITY_PROPERTY) else "")
        baseline = Baseline(previous_statistics.uri, previous_statistics.split_names, previous_statistics.get_int_custom_property("span"),
                            recorded or "{}")
    try:
        checked = check_span(
            span, input_pattern, Stored(statistics.uri, statistics.split_names), anomalies_lib.read(anomalies.uri, anomalies.split_names),
            os.path.join(schema.uri, SCHEMA_FILE), baseline, completeness, min_rows_ratio, broken_feed_factor,
            broken_meaning_jsd, drift_thresholds,
        )
    except span_audit.AuditError as exc:
        raise DataValidationError(f"span {span} blocked before training: {exc}") from exc
    if checked.problems:
        raise DataValidationError(validation.blocked_message(span, checked.problems))
    audit, current, previous, schema_proto, rules = checked.audit, checked.current, checked.previous, checked.schema, checked.rules
    thresholds = json.loads(drift_thresholds)

    serving = None
    if serving_statistics_path and fileio.exists(serving_statistics_path):
        serving = tfdv.load_stats_binary(serving_statistics_path)
    scores = drift.compare(
        current=current,
        schema=schema_proto,
        thresholds=thresholds,
        completeness_drop=completeness_drop,
        median_shift=median_shift,
        previous=previous.statistics if previous is not None else None,
        serving=serving,
    )
    fileio.makedirs(drift_report.uri)
    report = drift.to_json(scores, drift_policy)
    io_utils.write_string_file(os.path.join(drift_report.uri, REPORT_FILE), report)
    passed = validation.report(audit, rules)
    io_utils.write_string_file(os.path.join(drift_report.uri, VALIDATION_FILE), json.dumps(passed, indent=2))
    drift_report.set_int_custom_property("span", span)
    if previous is not None:
        drift_report.set_int_custom_property("baseline_span", previous.span)
    exceeded = [s for s in scores if s.exceeded]
    drift_report.set_string_custom_property("exceeded", ",".join(sorted({s.feature for s in exceeded})))
    if exceeded and drift_policy == BLOCK:
        raise DataValidationError(
            f"span {span} blocked before training: drift/skew over threshold (policy {BLOCK})\n" + drift.describe(scores)
        )

    _copy_span(examples, validated_examples, examples, span_namespace)
    _copy_span(statistics, validated_statistics, examples, span_namespace)
    validated_statistics.set_string_custom_property(PLAUSIBILITY_PROPERTY, json.dumps(passed["plausibility"], sort_keys=True))
