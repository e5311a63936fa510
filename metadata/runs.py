"""Reading back what pipeline runs recorded in ML Metadata: runs, executions, artifacts by event."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from data.spans_io import FEEDBACK, NAMESPACE_PROPERTY, UPSTREAM, namespace_of_pattern
from pipeline.artifact_properties import PUSHED_VERSION_PROPERTY, WINDOW_FEEDBACK_SPANS_PROPERTY, WINDOW_SPANS_PROPERTY

PIPELINE_CONTEXT = "pipeline"
PIPELINE_RUN_CONTEXT = "pipeline_run"
NODE_CONTEXT = "node"
EXAMPLES_TYPE = "Examples"
PUSHED_MODEL_TYPE = "PushedModel"
_INPUT_EVENTS = (metadata_store_pb2.Event.INPUT, metadata_store_pb2.Event.DECLARED_INPUT)
_OUTPUT_EVENTS = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)


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


def run_ids(store: metadata_store.MetadataStore, pipeline_name: str) -> list[str]:
    """The pipeline_run contexts of `pipeline_name`, oldest first."""
    runs = [
        c
        for c in store.get_contexts_by_type(PIPELINE_RUN_CONTEXT)
        if _pipeline_of_run(store, c) == pipeline_name
    ]
    return [c.name for c in sorted(runs, key=lambda c: c.id)]


def latest_run_id(store: metadata_store.MetadataStore, pipeline_name: str) -> str | None:
    """The newest pipeline_run context of `pipeline_name`."""
    ids = run_ids(store, pipeline_name)
    return ids[-1] if ids else None


def latest_run_time(store: metadata_store.MetadataStore, pipeline_name: str) -> float | None:
    """When the newest pipeline run of `pipeline_name` started (seconds since the epoch)."""
    run_id = latest_run_id(store, pipeline_name)
    run = store.get_context_by_type_and_name(PIPELINE_RUN_CONTEXT, run_id) if run_id else None
    return run.create_time_since_epoch / 1000 if run else None


def _pipeline_of_run(store: metadata_store.MetadataStore, run: metadata_store_pb2.Context) -> str | None:
    parents = store.get_parent_contexts_by_context(run.id)
    names = [p.name for p in parents if p.type_id == store.get_context_type(PIPELINE_CONTEXT).id]
    return names[0] if names else None


def run_executions(store: metadata_store.MetadataStore, run_id: str) -> dict[str, NodeExecution]:
    """node id -> its execution (with outputs) in pipeline run `run_id`."""
    run = store.get_context_by_type_and_name(PIPELINE_RUN_CONTEXT, run_id)
    if run is None:
        return {}
    executions = store.get_executions_by_context(run.id)
    node_type_id = store.get_context_type(NODE_CONTEXT).id
    found: dict[str, NodeExecution] = {}
    for execution in sorted(executions, key=lambda e: e.id):
        contexts = store.get_contexts_by_execution(execution.id)
        node_names = [c.name for c in contexts if c.type_id == node_type_id]
        if not node_names:
            continue
        node_id = node_names[0].split(".", 1)[-1]
        found[node_id] = NodeExecution(node_id, execution)
    _attach_artifacts(store, list(found.values()))
    return found


def _attach_artifacts(store: metadata_store.MetadataStore, nodes: list[NodeExecution]) -> None:
    """Fill each node's inputs and outputs by event key."""
    if not nodes:
        return
    events = store.get_events_by_execution_ids([n.execution.id for n in nodes])
    artifacts = {a.id: a for a in store.get_artifacts_by_id({e.artifact_id for e in events})}
    by_execution = {n.execution.id: n for n in nodes}
    for event in events:
        node = by_execution[event.execution_id]
        side = node.inputs if event.type in _INPUT_EVENTS else node.outputs if event.type in _OUTPUT_EVENTS else None
        if side is not None:
            key = event.path.steps[0].key if event.path.steps else ""
            side.setdefault(key, []).append(artifacts[event.artifact_id])


def node_executions(store: metadata_store.MetadataStore, pipeline_name: str, node_id: str) -> list[NodeExecution]:
    """Every execution of `node_id` in this pipeline, across runs, oldest first, with artifacts."""
    node = store.get_context_by_type_and_name(NODE_CONTEXT, f"{pipeline_name}.{node_id}")
    if node is None:
        return []
    nodes = [NodeExecution(node_id, e) for e in sorted(store.get_executions_by_context(node.id), key=lambda e: e.id)]
    _attach_artifacts(store, nodes)
    return nodes


def producer(store: metadata_store.MetadataStore, artifact_id: int) -> NodeExecution | None:
    """The execution that output `artifact_id` (lineage one step up), with its artifacts."""
    events = [e for e in store.get_events_by_artifact_ids([artifact_id]) if e.type in _OUTPUT_EVENTS]
    if not events:
        return None
    [execution] = store.get_executions_by_id([min(e.execution_id for e in events)])
    node_type_id = store.get_context_type(NODE_CONTEXT).id
    names = [c.name for c in store.get_contexts_by_execution(execution.id) if c.type_id == node_type_id]
    node = NodeExecution(names[0].split(".", 1)[-1] if names else "", execution)
    _attach_artifacts(store, [node])
    return node


def run_of(store: metadata_store.MetadataStore, execution_id: int) -> str | None:
    """The pipeline_run context (run id) an execution belongs to."""
    run_type_id = store.get_context_type(PIPELINE_RUN_CONTEXT).id
    names = [c.name for c in store.get_contexts_by_execution(execution_id) if c.type_id == run_type_id]
    return names[0] if names else None


def pipeline_context(store: metadata_store.MetadataStore, pipeline_name: str) -> metadata_store_pb2.Context | None:
    return store.get_context_by_type_and_name(PIPELINE_CONTEXT, pipeline_name)


def record_execution(
    store: metadata_store.MetadataStore,
    type_name: str,
    properties: dict[str, str],
    inputs: dict[str, metadata_store_pb2.Artifact],
    context: metadata_store_pb2.Context,
    state: int = metadata_store_pb2.Execution.COMPLETE,
) -> int:
    """Record an execution of a custom type (string properties; COMPLETE unless `state` says
    otherwise), with an INPUT event per artifact under its key, attributed to `context`; returns
    the execution id."""
    type_id = store.put_execution_type(
        metadata_store_pb2.ExecutionType(
            name=type_name, properties={k: metadata_store_pb2.STRING for k in properties}
        ),
        can_add_fields=True,
    )
    execution = metadata_store_pb2.Execution(type_id=type_id, last_known_state=state)
    for key, value in properties.items():
        execution.properties[key].string_value = value
    pairs = []
    for key, artifact in inputs.items():
        event = metadata_store_pb2.Event(type=metadata_store_pb2.Event.INPUT)
        event.path.steps.add().key = key
        pairs.append((artifact, event))
    execution_id, _, _ = store.put_execution(execution, pairs, [context])
    return execution_id


def set_execution_state(store: metadata_store.MetadataStore, execution_id: int, state: int) -> None:
    """Update the last known state of an execution (e.g. RUNNING -> COMPLETE)."""
    [execution] = store.get_executions_by_id([execution_id])
    execution.last_known_state = state
    store.put_executions([execution])


def executions_of_type(
    store: metadata_store.MetadataStore, type_name: str, context: metadata_store_pb2.Context
) -> list[metadata_store_pb2.Execution]:
    """Executions of `type_name` attributed to `context`, oldest first."""
    execution_type = _type_or_none(store.get_execution_type, type_name)
    if execution_type is None:
        return []
    found = [e for e in store.get_executions_by_context(context.id) if e.type_id == execution_type.id]
    return sorted(found, key=lambda e: e.id)


def _type_or_none(getter, name: str):
    from ml_metadata import errors

    try:
        return getter(name)
    except errors.NotFoundError:
        return None


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


def baseline_version(store: metadata_store.MetadataStore, model: metadata_store_pb2.Artifact, before: str | None = None) -> str | None:
    """The pushed version an Evaluator's baseline Model was: the one it copies (history="stores"),
    else the newest push of that model (older than version `before`, when given)."""
    copied = custom_property(model, PUSHED_VERSION_PROPERTY)
    if copied:
        return str(copied)
    pushes = [v for v in pushed_versions(store, model.id) if before is None or int(v) < int(before)]
    return pushes[-1] if pushes else None


def pushed_versions(store: metadata_store.MetadataStore, model_id: int) -> list[str]:
    """The versions Model `model_id` was pushed as: the PushedModels output by the executions that
    read it (Pusher's), oldest first."""
    pushed_type = _type_or_none(store.get_artifact_type, PUSHED_MODEL_TYPE)
    readers = [e.execution_id for e in store.get_events_by_artifact_ids([model_id]) if e.type in _INPUT_EVENTS]
    if pushed_type is None or not readers:
        return []
    outputs = {e.artifact_id for e in store.get_events_by_execution_ids(readers) if e.type in _OUTPUT_EVENTS}
    found = [
        str(custom_property(a, PUSHED_VERSION_PROPERTY))
        for a in store.get_artifacts_by_id(outputs)
        if a.type_id == pushed_type.id and custom_property(a, "pushed") == 1
    ]
    return sorted(found, key=int)


def window_spans(examples: list[metadata_store_pb2.Artifact], namespace: str = UPSTREAM) -> list[int]:
    """Span numbers of `namespace` in a training window: validated artifacts ("mlmd") or one
    assembled artifact that lists them ("stores")."""
    listing = WINDOW_SPANS_PROPERTY if namespace == UPSTREAM else WINDOW_FEEDBACK_SPANS_PROPERTY
    spans = []
    for artifact in examples:
        if WINDOW_SPANS_PROPERTY in artifact.custom_properties:
            listed = custom_property(artifact, listing) or ""
            spans.extend(int(span) for span in listed.split(",") if span)
        elif namespace_of(artifact) == namespace:
            spans.append(span_of(artifact))
    return sorted(spans)


def span_of(artifact: metadata_store_pb2.Artifact) -> int:
    """The span of an Examples artifact (ExampleGen stores it as a custom property)."""
    return artifact.custom_properties["span"].int_value


def namespace_of(artifact: metadata_store_pb2.Artifact) -> str:
    """The span namespace DataGate stamped on a validated artifact (upstream if unstamped)."""
    return custom_property(artifact, NAMESPACE_PROPERTY) or UPSTREAM


def example_gen_namespace(node: NodeExecution) -> str:
    """Which namespace a CsvExampleGen execution read, from its input pattern."""
    config = exec_property(node, "input_config") or {}
    return namespace_of_pattern(config["splits"][0]["pattern"]) if config.get("splits") else UPSTREAM


def ingested_spans(
    store: metadata_store.MetadataStore, pipeline_name: str, namespace: str = UPSTREAM, node_id: str = "CsvExampleGen"
) -> set[int]:
    """Spans of `namespace` that `node_id` has produced Examples for in this pipeline, across all runs."""
    return {
        span_of(a)
        for node in node_executions(store, pipeline_name, node_id)
        if example_gen_namespace(node) == namespace
        for a in node.outputs.get("examples", [])
        if a.state == metadata_store_pb2.Artifact.LIVE
    }


def _node_artifacts(store: metadata_store.MetadataStore, pipeline_name: str, node_id: str, type_name: str) -> list[metadata_store_pb2.Artifact]:
    node = store.get_context_by_type_and_name(NODE_CONTEXT, f"{pipeline_name}.{node_id}")
    artifact_type = store.get_artifact_type(type_name) if node is not None else None
    if node is None or artifact_type is None:
        return []
    return [a for a in store.get_artifacts_by_context(node.id) if a.type_id == artifact_type.id and a.state == metadata_store_pb2.Artifact.LIVE]


def latest_blessed_evaluation_uri(store: metadata_store.MetadataStore, pipeline_name: str) -> str | None:
    """Evaluator output that blessed the newest blessed model of the pipeline."""
    blessed = [
        a for a in _node_artifacts(store, pipeline_name, "Evaluator", "ModelBlessing")
        if a.custom_properties["blessed"].int_value == 1
    ]
    if not blessed:
        return None
    evaluator = producer(store, max(blessed, key=lambda a: a.id).id)
    evaluation = evaluator.outputs.get("evaluation", []) if evaluator else []
    return evaluation[0].uri if evaluation else None


def newest_validated_statistics_uri(store: metadata_store.MetadataStore, pipeline_name: str) -> str | None:
    """Statistics of the newest span that passed DataGate."""
    stats = _node_artifacts(store, pipeline_name, "DataGate", "ExampleStatistics")
    return max(stats, key=lambda a: (span_of(a), a.id)).uri if stats else None


@dataclass
class Run:
    """One pipeline run as MLMD recorded it: node id -> execution, inputs and outputs."""

    run_id: str
    nodes: dict[str, NodeExecution]

    def inputs(self, node_id: str, key: str) -> list[metadata_store_pb2.Artifact]:
        node = self.nodes.get(node_id)
        return node.inputs.get(key, []) if node else []

    def output(self, node_id: str, key: str) -> metadata_store_pb2.Artifact | None:
        """The first artifact `node_id` output under `key` in this run, if it got that far."""
        node = self.nodes.get(node_id)
        found = node.outputs.get(key, []) if node else []
        return found[0] if found else None

    @property
    def span(self) -> int | None:
        """The span this run ingested."""
        examples = self.output("CsvExampleGen", "examples")
        return span_of(examples) if examples is not None else None

    @property
    def window_spans(self) -> list[int]:
        """The training window's upstream spans, as Transform received them."""
        return window_spans(self.inputs("Transform", "examples"))

    @property
    def window_feedback_spans(self) -> list[int]:
        """The training window's feedback spans."""
        return window_spans(self.inputs("Transform", "examples"), FEEDBACK)

    @property
    def span_namespace(self) -> str:
        """The namespace of the span this run ingested."""
        node = self.nodes.get("CsvExampleGen")
        return example_gen_namespace(node) if node else UPSTREAM


def load_run(store: metadata_store.MetadataStore, run_id: str) -> Run:
    return Run(run_id, run_executions(store, run_id))


def latest_run(store: metadata_store.MetadataStore, pipeline_name: str) -> Run | None:
    run_id = latest_run_id(store, pipeline_name)
    return load_run(store, run_id) if run_id is not None else None


def latest_execution_with(
    store: metadata_store.MetadataStore, pipeline_name: str, node_id: str, output_key: str
) -> NodeExecution | None:
    """The newest execution of `node_id` (in any run) that has an output `output_key`."""
    for node in reversed(node_executions(store, pipeline_name, node_id)):
        if node.outputs.get(output_key):
            return node
    return None


def statistics_by_span(store: metadata_store.MetadataStore, pipeline_name: str) -> dict[int, metadata_store_pb2.Artifact]:
    """span -> the newest StatisticsGen output computed on it (its span is that of its input examples)."""
    found = {}
    for node in node_executions(store, pipeline_name, "StatisticsGen"):
        examples, statistics = node.inputs.get("examples"), node.outputs.get("statistics")
        if examples and statistics:
            found[span_of(examples[0])] = statistics[0]
    return found
