"""The run report: one self-contained HTML file per run, written next to the run's log.

`collect` reads what the run did (RunSummary plus MLMD and the artifacts it points to); `render`
fills templates/run_report.html.j2 with it (pipeline/pages.py: inline CSS, no scripts or external
assets, every text escaped).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import TYPE_CHECKING

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from conveyor import analysis
from data import spans_io
from metadata import connection, runs
from metadata import hyperparameters as hyperparameters_lib
from models import label_metrics
from pipeline import anomalies, blessing_checks, evaluation, pages
from pipeline.configs import PipelineConfig
from pipeline.thresholds import Threshold

if TYPE_CHECKING:
    from conveyor.local.run_summary import RunSummary

METRIC_LABELS = {"binary_accuracy": "accuracy", "sparse_categorical_accuracy": "accuracy", "auc": "AUC", "precision": "precision", "recall": "recall"}


@dataclass(frozen=True)
class ArtifactRef:
    key: str
    type_name: str
    id: int
    uri: str
    note: str = ""  # span of Examples, blessed or not, pushed or not


@dataclass(frozen=True)
class LineageRow:
    node: str
    state: str
    inputs: list[ArtifactRef]
    outputs: list[ArtifactRef]


@dataclass(frozen=True)
class ReportData:
    """Everything the report shows, already read from MLMD and the artifacts."""

    pipeline_name: str
    summary: RunSummary
    thresholds: tuple[Threshold, ...]
    examples: dict[str, int] = field(default_factory=dict)  # split -> examples in the ingested span
    statistics: dict[str, list[analysis.FeatureSummary]] = field(default_factory=dict)  # split -> features
    anomalies: list[anomalies.Anomaly] | None = None  # None: ExampleValidator did not run
    drift: list[analysis.DriftScore] = field(default_factory=list)
    lineage: list[LineageRow] = field(default_factory=list)


def report_path(summary: RunSummary) -> Path:
    return summary.log_file.with_suffix(".html")


def write(config: PipelineConfig, summary: RunSummary) -> Path:
    """Collect and render the report of the run `summary` describes; returns the file written."""
    path = report_path(summary)
    path.write_text(render(collect(config, summary)), encoding="utf-8")
    return path


def collect(config: PipelineConfig, summary: RunSummary) -> ReportData:
    store = connection.open_metadata(config)
    run = runs.load_run(store, summary.run_id) if summary.run_id else runs.Run("", {})
    examples: dict[str, int] = {}
    statistics: dict[str, list[analysis.FeatureSummary]] = {}
    stats_artifact = run.output("StatisticsGen", "statistics")
    if stats_artifact is not None:
        for split in analysis.split_names(stats_artifact):
            stats = analysis.load_statistics(stats_artifact, split)
            examples[split] = analysis.num_examples(stats)
            statistics[split] = analysis.feature_summaries(stats)
    anomalies_artifact = run.output("ExampleValidator", "anomalies")
    found = None
    if anomalies_artifact is not None:
        found = anomalies.read(anomalies_artifact.uri, anomalies_artifact.properties["split_names"].string_value)
    return ReportData(
        pipeline_name=config.pipeline_name,
        summary=summary,
        thresholds=config.thresholds,
        examples=examples,
        statistics=statistics,
        anomalies=found,
        drift=analysis.drift_scores(store, run),
        lineage=_lineage(store, run),
    )


def _lineage(store: metadata_store.MetadataStore, run: runs.Run) -> list[LineageRow]:
    type_names = {t.id: t.name for t in store.get_artifact_types()}

    def refs(by_key: dict[str, list[metadata_store_pb2.Artifact]]) -> list[ArtifactRef]:
        return [
            ArtifactRef(key, type_names.get(a.type_id, "?"), a.id, a.uri, _note(type_names.get(a.type_id, ""), a))
            for key, artifacts in sorted(by_key.items())
            for a in artifacts
        ]

    return [LineageRow(node.node_id, node.state, refs(node.inputs), refs(node.outputs)) for node in run.nodes.values()]


def _note(type_name: str, artifact: metadata_store_pb2.Artifact) -> str:
    props = artifact.custom_properties
    if type_name == "Examples" and "span" in props:
        return f"span {props['span'].int_value}"
    if type_name == "ModelBlessing" and "blessed" in props:
        return "blessed" if props["blessed"].int_value == 1 else "not blessed"
    if type_name == "PushedModel" and "pushed" in props:
        return "pushed" if props["pushed"].int_value == 1 else "not pushed"
    return ""


# ---------------------------------------------------------------------------------------- HTML


def _stat(value: float | None) -> str:
    """A feature statistic: 3 decimals, or 4 significant digits for large magnitudes."""
    if value is None or math.isnan(value) or abs(value) < 1e6:
        return pages.number(value, ".3f")
    return f"{value:.4g}"


def _signed(value: float | None) -> str:
    """A difference to the baseline: "–" where it is undefined (a NaN on either side)."""
    return "–" if value is None or math.isnan(value) else f"{value:+.4f}"


def _threshold_text(rule: Threshold) -> str:
    text = f"{rule.metric} ≥ {rule.lower_bound:g}"
    if rule.max_drop is not None:
        text += f" and at most {rule.max_drop:g} below the baseline"
    if rule.slice_max_drop is not None:
        text += f"; on every slice at most {rule.slice_max_drop:g} below the baseline"
    return text


def _compared() -> tuple[str, ...]:
    """The metrics compared with the baseline for the active label (models/label_metrics.py)."""
    metric_set = label_metrics.active()
    return metric_set.names(metric_set.compared)


def _slice_headers(has_baseline: bool) -> list[str]:
    headers = ["slice", "examples"]
    for metric in _compared():
        label = METRIC_LABELS[metric]
        headers += [label, f"{label} baseline", "Δ"] if has_baseline else [label]
    return headers


def render(data: ReportData) -> str:
    """The report's HTML (templates/run_report.html.j2): every text escaped by the template engine."""
    s = data.summary
    window = [*map(str, s.window_spans), *(spans_io.label(f, spans_io.FEEDBACK) for f in s.window_feedback_spans)]
    by_slice = groupby(evaluation.compare_with_baseline(s.evaluation, _compared()) if s.evaluation else [], key=lambda c: c.slice)
    found = s.hyperparameters
    return pages.render(
        "conveyor.local",
        "run_report.html.j2",
        data=data,
        s=s,
        written=time.strftime("%Y-%m-%d %H:%M:%S"),
        span="–" if s.span is None else spans_io.label(s.span, s.span_source),
        window=", ".join(window) or "–",
        overall=s.evaluation.metrics.get(evaluation.OVERALL, {}) if s.evaluation else {},
        longest=max((seconds for _, _, seconds in s.timings), default=0.0) or 1.0,
        split="train" if "train" in data.statistics else next(iter(data.statistics), ""),
        stat=_stat,
        signed=_signed,
        shown=evaluation.shown,
        card_link=s.card_file if not s.card_file or spans_io.is_uri(s.card_file) else Path(s.card_file).as_uri(),
        drift=sorted(data.drift, key=lambda d: (not d.drifted, d.feature)),
        slice_headers=_slice_headers(bool(s.evaluation and s.evaluation.baseline_by_slice)),
        slices=[(name, list(comparisons)) for name, comparisons in by_slice],
        thresholds=[_threshold_text(t) for t in data.thresholds],
        blessing_checks=blessing_checks.explain(s.evaluation, s.thresholds, s.gate) if s.blessed and s.gate else [],
        hyperparameters=[(n, hyperparameters_lib.format_value(v), found.origin(n)) for n, v in sorted(found.values.items())] if found else [],
        hyperparameters_source=hyperparameters_lib.describe(found)[1] if found else "",
    )
