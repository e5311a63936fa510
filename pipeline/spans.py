"""Which spans a run should ingest."""
from __future__ import annotations

from data import spans_io
from pipeline import metadata
from pipeline.configs import PipelineConfig


def ingested(config: PipelineConfig) -> set[int]:
    """Spans CsvExampleGen has ingested for this pipeline (empty before the first run)."""
    if not config.metadata_path.exists():
        return set()
    return metadata.ingested_spans(metadata.open_store(metadata.sqlite_config(config.metadata_path)), config.pipeline_name)


def pending(config: PipelineConfig) -> list[int]:
    """Spans on disk newer than the newest span ingested, oldest first."""
    newest = max(ingested(config), default=0)
    return [s for s in spans_io.existing_spans(config.spans_root) if s > newest]


def spans_to_run(config: PipelineConfig, latest_only: bool) -> list[int | None]:
    """Spans a `conveyor run` ingests, oldest first: `config.span` if set, else every pending span;
    [None] (the newest span) when nothing is pending or with `latest_only`."""
    if not spans_io.existing_spans(config.spans_root):
        raise SystemExit(f"no spans under {config.spans_root} (expected span-N/{spans_io.SPAN_FILE})")
    if config.span is not None:
        return [config.span]
    todo = [] if latest_only else pending(config)
    return todo or [None]
