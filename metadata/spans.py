"""Which spans a run should ingest, in each namespace (data/spans_io.py)."""
from __future__ import annotations

import json

from data import spans_io
from data.spans_io import UPSTREAM
from metadata import connection, runs
from pipeline.configs import PipelineConfig

INGESTED_DIR = "ingested_spans"


def root(config: PipelineConfig, namespace: str) -> str:
    """Where the spans of `namespace` live for this home (on a cluster, a URI in its bucket)."""
    return config.spans_root_uri if namespace == UPSTREAM else config.feedback_spans_root_uri


def ingested(config: PipelineConfig, namespace: str = UPSTREAM) -> set[int]:
    """Spans of `namespace` a run has taken for this pipeline (empty before the first run): the
    spans CsvExampleGen ingested according to this home's ML Metadata and those the pipeline root
    knows of for runs on a cluster whose metadata is not this home's: the spans DataGate validated
    (the "stores" index) and those of finished cluster runs (record_ingested)."""
    from pipeline.components.span_window import indexed_spans

    found = set(indexed_spans(config.validated_spans_uri, namespace)) | _recorded(config, namespace)
    if connection.store_exists(config):
        store = connection.open_store(connection.connection_config(config))
        found |= runs.ingested_spans(store, config.pipeline_name, namespace)
    return found


def _ingested_dir(config: PipelineConfig) -> str:
    return config.pipeline_root_uri.rstrip("/") + "/" + INGESTED_DIR


def record_ingested(config: PipelineConfig, span: int, run_id: str, state: str, namespace: str = UPSTREAM) -> None:
    """Note that a cluster run of `span` of `namespace` finished (`state`, the orchestrator's word), whatever its outcome."""
    from tfx.dsl.io import fileio

    folder = _ingested_dir(config)
    fileio.makedirs(folder)
    with fileio.open(f"{folder}/{spans_io.DIR_PREFIXES[namespace]}{span}.json", "w") as handle:
        handle.write(json.dumps({"span": span, "namespace": namespace, "run_id": run_id, "state": state}))


def _recorded(config: PipelineConfig, namespace: str) -> set[int]:
    from tfx.dsl.io import fileio

    folder, prefix = _ingested_dir(config), spans_io.DIR_PREFIXES[namespace]
    if not fileio.isdir(folder):
        return set()
    names = (n.rstrip("/") for n in fileio.listdir(folder))
    return {int(n[len(prefix) : -len(".json")]) for n in names if n.startswith(prefix) and n.endswith(".json") and n[len(prefix) : -5].isdigit()}


def pending(config: PipelineConfig, namespace: str = UPSTREAM) -> list[int]:
    """Spans of `namespace` on disk newer than the newest one ingested, and upstream spans a schema
    change reopened (`reopened`), oldest first. Feedback span N being ingested says nothing about
    upstream span N: each namespace is counted alone."""
    newest = max(ingested(config, namespace), default=0)
    again = set(reopened(config)) if namespace == UPSTREAM else set()
    return [s for s in spans_io.existing_spans(root(config, namespace), namespace) if s > newest or s in again]


def reopened(config: PipelineConfig) -> list[int]:
    """Upstream spans DataGate blocked under an older schema version than the one `conveyor schema
    accept --span N` recorded for them: the next `conveyor run` and CT tick take them again. A span
    blocked again under its accepted version stays blocked (something else blocks it)."""
    from schema import versions as schema_versions

    accepted = {v.span: v.version for v in schema_versions.accepted(config.home) if v.span is not None}
    if not accepted:
        return []
    found = []
    for span, gate in gate_executions(config).items():
        if span not in accepted or gate.state in ("COMPLETE", "CACHED"):
            continue
        schema = gate.inputs.get("schema", [])
        key = schema_versions.PROPERTY_PREFIX + "version"
        used = schema[0].custom_properties[key].int_value if schema and key in schema[0].custom_properties else 1
        if used < accepted[span]:
            found.append(span)
    return sorted(found)


def newest(config: PipelineConfig) -> int:
    """The newest upstream span on disk (LookupError if there is none). Runners always name the span they ingest: a run pinned to
    span N and one left to find the newest span differ in ExampleGen's properties, so they would not
    share a cache."""
    on_disk = spans_io.existing_spans(config.spans_root_uri)
    if not on_disk:
        raise LookupError(spans_io.no_spans(config.spans_root_uri))
    return on_disk[-1]


def spans_to_run(config: PipelineConfig, latest_only: bool) -> list[int]:
    """Upstream spans a `conveyor run` ingests, oldest first: `config.span` if set, else every pending
    span, else (or with `latest_only`) the newest span."""
    if config.span is not None:
        return [config.span]
    todo = [] if latest_only else pending(config)
    return todo or [newest(config)]


def gate_executions(config: PipelineConfig, namespace: str = UPSTREAM) -> dict[int, runs.NodeExecution]:
    """span -> the newest DataGate execution on it in `namespace`, with its recorded inputs (a
    blocked span's too: TFX records the inputs before the component runs). Empty without ML Metadata."""
    if not connection.store_exists(config):
        return {}
    store = connection.open_store(connection.connection_config(config))
    found = {}
    for node in runs.node_executions(store, config.pipeline_name, "DataGate"):
        examples = node.inputs.get("examples")
        if examples and (runs.exec_property(node, "span_namespace") or UPSTREAM) == namespace:
            found[runs.span_of(examples[0])] = node
    return found
