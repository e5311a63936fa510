"""ML Metadata: the connection config, and reading back what pipeline runs recorded."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from pipeline.configs import PipelineConfig

PIPELINE_RUN_CONTEXT = "pipeline_run"
NODE_CONTEXT = "node"
EXAMPLES_TYPE = "Examples"
PUSHED_MODEL_TYPE = "PushedModel"
# The MySQL password is only ever read from the environment, at connection time.
MYSQL_PASSWORD_ENV = "CONVEYOR_MYSQL_PASSWORD"
# Set on the one Examples artifact of a "stores" span window (pipeline/components/span_window.py).
WINDOW_SPANS_PROPERTY = "window_spans"  # "1,3"
WINDOW_SOURCES_PROPERTY = "window_sources"  # JSON list of the validated artifacts' URIs
_INPUT_EVENTS = (metadata_store_pb2.Event.INPUT, metadata_store_pb2.Event.DECLARED_INPUT)
_OUTPUT_EVENTS = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)


def sqlite_config(path: Path) -> metadata_store_pb2.ConnectionConfig:
    path.parent.mkdir(parents=True, exist_ok=True)
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(path)
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    return config


def mysql_config(host: str, port: int, database: str, user: str, password: str) -> metadata_store_pb2.ConnectionConfig:
    config = metadata_store_pb2.ConnectionConfig()
    config.mysql.host = host
    config.mysql.port = port
    config.mysql.database = database
    config.mysql.user = user
    config.mysql.password = password
    return config


def connection_config(config: PipelineConfig) -> metadata_store_pb2.ConnectionConfig:
    """MySQL when config.mysql_host is set (password from $CONVEYOR_MYSQL_PASSWORD), else SQLite."""
    if config.mysql_host:
        password = os.environ.get(MYSQL_PASSWORD_ENV, "")
        return mysql_config(config.mysql_host, config.mysql_port, config.mysql_database, config.mysql_user, password)
    return sqlite_config(config.metadata_path)


def describe(connection: metadata_store_pb2.ConnectionConfig) -> str:
    """Where a connection points, without the password."""
    if connection.HasField("mysql"):
        mysql = connection.mysql
        return f"mysql://{mysql.user}@{mysql.host}:{mysql.port}/{mysql.database}"
    return f"sqlite:{connection.sqlite.filename_uri}"


def store_exists(config: PipelineConfig) -> bool:
    """False only for a SQLite store not created yet (a MySQL server is assumed to exist)."""
    return bool(config.mysql_host) or config.metadata_path.exists()


def open_store(config: metadata_store_pb2.ConnectionConfig) -> metadata_store.MetadataStore:
    return metadata_store.MetadataStore(config)


@dataclass
class NodeExecution:
    """One component's execution in a run, with its artifacts by input and output key."""

    node_id: str
    execution: metadata_store_pb2.Execution
    inputs: dict[str, list[metadata_store_pb2.Artifact]] = field(default_factory=dict)
    outputs: dict[str, list[metadata_store_pb2.Artifact]] = field(default_factory=dict)

    @property
    def state(self) -> str:
        return metadata_store_pb2.Execution.State.Name(self.execution.last_known_state)

    @property
    def seconds(self) -> float:
        return (self.execution.last_update_time_since_epoch - self.execution.create_time_since_epoch) / 1000


def latest_run_id(store: metadata_store.MetadataStore, pipeline_name: str) -> str | None:
    """The newest pipeline_run context of `pipeline_name`."""
    runs = [
        c
        for c in store.get_contexts_by_type(PIPELINE_RUN_CONTEXT)
        if _pipeline_of_run(store, c) == pipeline_name
    ]
    return max(runs, key=lambda c: c.id).name if runs else None


def _pipeline_of_run(store: metadata_store.MetadataStore, run: metadata_store_pb2.Context) -> str | None:
    parents = store.get_parent_contexts_by_context(run.id)
    names = [p.name for p in parents if p.type_id == store.get_context_type("pipeline").id]
    return names[0] if names else None


def _with_events(
    store: metadata_store.MetadataStore, executions: Iterable[metadata_store_pb2.Execution]
) -> list[NodeExecution]:
    """Executions of pipeline nodes, each with its input and output artifacts by key."""
    node_type_id = store.get_context_type(NODE_CONTEXT).id
    found = []
    for execution in executions:
        contexts = store.get_contexts_by_execution(execution.id)
        node_names = [c.name for c in contexts if c.type_id == node_type_id]
        if node_names:
            found.append(NodeExecution(node_names[0].split(".", 1)[-1], execution))
    events = store.get_events_by_execution_ids([n.execution.id for n in found])
    artifacts = {a.id: a for a in store.get_artifacts_by_id({e.artifact_id for e in events})}
    by_execution = {n.execution.id: n for n in found}
    for event in events:
        node = by_execution[event.execution_id]
        side = node.inputs if event.type in _INPUT_EVENTS else node.outputs if event.type in _OUTPUT_EVENTS else None
        if side is not None:
            key = event.path.steps[0].key if event.path.steps else ""
            side.setdefault(key, []).append(artifacts[event.artifact_id])
    return found


def run_executions(store: metadata_store.MetadataStore, run_id: str) -> dict[str, NodeExecution]:
    """node id -> its execution (with outputs) in pipeline run `run_id`."""
    run = store.get_context_by_type_and_name(PIPELINE_RUN_CONTEXT, run_id)
    if run is None:
        return {}
    executions = sorted(store.get_executions_by_context(run.id), key=lambda e: e.id)
    return {node.node_id: node for node in _with_events(store, executions)}


def producer_of(store: metadata_store.MetadataStore, artifact: metadata_store_pb2.Artifact) -> NodeExecution | None:
    """The execution that created `artifact` (resolvers only pass artifacts on as INTERNAL_OUTPUT)."""
    outputs = [e for e in store.get_events_by_artifact_ids([artifact.id]) if e.type in _OUTPUT_EVENTS]
    if not outputs:
        return None
    creator = min(outputs, key=lambda e: e.execution_id)
    found = _with_events(store, store.get_executions_by_id([creator.execution_id]))
    return found[0] if found else None


def run_of(store: metadata_store.MetadataStore, node: NodeExecution) -> str | None:
    """The pipeline run an execution belongs to."""
    run_type_id = store.get_context_type(PIPELINE_RUN_CONTEXT).id
    runs = [c.name for c in store.get_contexts_by_execution(node.execution.id) if c.type_id == run_type_id]
    return runs[0] if runs else None


def exec_property(node: NodeExecution, name: str) -> Any:
    """An execution property as TFX recorded it (JSON-encoded protos and dicts decoded)."""
    if name not in node.execution.custom_properties:
        return None
    value = node.execution.custom_properties[name]
    kind = value.WhichOneof("value")
    if kind != "string_value":
        return getattr(value, kind)
    try:
        return json.loads(value.string_value)
    except ValueError:
        return value.string_value


def custom_property(artifact: metadata_store_pb2.Artifact, name: str) -> Any:
    if name not in artifact.custom_properties:
        return None
    value = artifact.custom_properties[name]
    return getattr(value, value.WhichOneof("value"))


def pushed_model(store: metadata_store.MetadataStore, destination: str) -> metadata_store_pb2.Artifact | None:
    """The PushedModel artifact of the push to `destination` (<serving root>/<version>)."""
    for artifact in store.get_artifacts_by_type(PUSHED_MODEL_TYPE):
        if custom_property(artifact, "pushed") == 1 and custom_property(artifact, "pushed_destination") == destination:
            return artifact
    return None


def window_spans(examples: list[metadata_store_pb2.Artifact]) -> list[int]:
    """Span numbers in a training window: K validated artifacts ("mlmd") or one assembled ("stores")."""
    spans = []
    for artifact in examples:
        listed = custom_property(artifact, WINDOW_SPANS_PROPERTY)
        if listed:
            spans.extend(int(span) for span in listed.split(","))
        else:
            spans.append(span_of(artifact))
    return sorted(spans)


def span_of(artifact: metadata_store_pb2.Artifact) -> int:
    """The span of an Examples artifact (ExampleGen stores it as a custom property)."""
    return artifact.custom_properties["span"].int_value


def ingested_spans(store: metadata_store.MetadataStore, pipeline_name: str, node_id: str = "CsvExampleGen") -> set[int]:
    """Spans that `node_id` has produced Examples for in this pipeline, across all runs."""
    node = store.get_context_by_type_and_name(NODE_CONTEXT, f"{pipeline_name}.{node_id}")
    if node is None:
        return set()
    type_id = store.get_artifact_type(EXAMPLES_TYPE).id
    return {
        span_of(a)
        for a in store.get_artifacts_by_context(node.id)
        if a.type_id == type_id and a.state == metadata_store_pb2.Artifact.LIVE
    }
