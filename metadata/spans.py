"""Which spans a run should ingest, in each namespace (data/spans_io.py)."""
from __future__ import annotations

from pathlib import Path

from data import spans_io
from data.spans_io import UPSTREAM
from metadata import connection, runs
from pipeline.configs import PipelineConfig


def root(config: PipelineConfig, namespace: str) -> Path:
    """Where the spans of `namespace` live for this home."""
    return config.spans_root if namespace == UPSTREAM else config.feedback_spans_root


def ingested(config: PipelineConfig, namespace: str = UPSTREAM) -> set[int]:
    """Spans of `namespace` CsvExampleGen has ingested for this pipeline (empty before the first run)."""
    if not connection.store_exists(config):
        return set()
    store = connection.open_store(connection.connection_config(config))
    return runs.ingested_spans(store, config.pipeline_name, namespace)


def pending(config: PipelineConfig, namespace: str = UPSTREAM) -> list[int]:
    """Spans of `namespace` on disk newer than the newest one ingested, oldest first. Feedback span
    N being ingested says nothing about upstream span N: each namespace is counted alone."""
    newest = max(ingested(config, namespace), default=0)
    return [s for s in spans_io.existing_spans(root(config, namespace), namespace) if s > newest]


def newest(config: PipelineConfig) -> int:
    """The newest upstream span on disk. Runners always name the span they ingest: a run pinned to
    span N and one left to find the newest span differ in ExampleGen's properties, so they would not
    share a cache."""
    on_disk = spans_io.existing_spans(config.spans_root)
    if not on_disk:
        raise SystemExit(f"no spans under {config.spans_root} (expected span-N/{spans_io.SPAN_FILE})")
    return on_disk[-1]


def spans_to_run(config: PipelineConfig, latest_only: bool) -> list[int]:
    """Upstream spans a `conveyor run` ingests, oldest first: `config.span` if set, else every pending
    span, else (or with `latest_only`) the newest span."""
    if config.span is not None:
        return [config.span]
    todo = [] if latest_only else pending(config)
    return todo or [newest(config)]

