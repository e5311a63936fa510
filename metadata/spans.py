"""Which spans a run should ingest."""
from __future__ import annotations

from data import spans_io
from metadata import connection, runs
from pipeline.configs import PipelineConfig


def ingested(config: PipelineConfig) -> set[int]:
    """Spans CsvExampleGen has ingested for this pipeline (empty before the first run)."""
    if not connection.store_exists(config):
        return set()
    return runs.ingested_spans(connection.open_store(connection.connection_config(config)), config.pipeline_name)


def pending(config: PipelineConfig) -> list[int]:
    """Spans on disk newer than the newest span ingested, oldest first."""
    newest = max(ingested(config), default=0)
    return [s for s in spans_io.existing_spans(config.spans_root) if s > newest]


def newest(config: PipelineConfig) -> int:
    """The newest span on disk. Runners always name the span they ingest: a run pinned to span N
    and one left to find the newest span differ in ExampleGen's properties, so they would not
    share a cache."""
    on_disk = spans_io.existing_spans(config.spans_root)
    if not on_disk:
        raise SystemExit(f"no spans under {config.spans_root} (expected span-N/{spans_io.SPAN_FILE})")
    return on_disk[-1]


def spans_to_run(config: PipelineConfig, latest_only: bool) -> list[int]:
    """Spans a `conveyor run` ingests, oldest first: `config.span` if set, else every pending span,
    else (or with `latest_only`) the newest span."""
    if config.span is not None:
        return [config.span]
    todo = [] if latest_only else pending(config)
    return todo or [newest(config)]
