"""What the continuous-training controller records in ML Metadata, and reading it back.

Every CT decision is an execution of type `conveyor.CTDecision` attributed to a
`conveyor.CTController` context named after the pipeline, next to the runs it launched: its
`run_id` property names the pipeline run, so a model's lineage can say which decision (trigger,
reason, evidence) launched the run that made it.
"""
from __future__ import annotations

import json
from typing import Any

from ml_metadata.proto import metadata_store_pb2

from metadata import connection, runs
from pipeline.configs import PipelineConfig

EXECUTION_TYPE = "conveyor.CTDecision"
CONTEXT_TYPE = "conveyor.CTController"
_KINDS = {str: metadata_store_pb2.STRING, int: metadata_store_pb2.INT, float: metadata_store_pb2.DOUBLE}
_FIELDS = {str: "string_value", int: "int_value", float: "double_value"}


def record_decision(config: PipelineConfig, properties: dict[str, str | int | float]) -> int:
    """Record one decision (typed properties) in the controller's context; returns the execution id."""
    store = connection.open_store(connection.connection_config(config))
    execution_type = metadata_store_pb2.ExecutionType(name=EXECUTION_TYPE)
    for name, value in properties.items():
        execution_type.properties[name] = _KINDS[type(value)]
    type_id = store.put_execution_type(execution_type, can_add_fields=True)
    context = store.get_context_by_type_and_name(CONTEXT_TYPE, config.pipeline_name)
    if context is None:
        context_type_id = store.put_context_type(metadata_store_pb2.ContextType(name=CONTEXT_TYPE))
        context = metadata_store_pb2.Context(type_id=context_type_id, name=config.pipeline_name)
        context.id = store.put_contexts([context])[0]
    execution = metadata_store_pb2.Execution(type_id=type_id, last_known_state=metadata_store_pb2.Execution.COMPLETE)
    for name, value in properties.items():
        setattr(execution.properties[name], _FIELDS[type(value)], value)
    execution_id, _, _ = store.put_execution(execution, artifact_and_events=[], contexts=[context])
    return execution_id


def decisions(config: PipelineConfig) -> list[metadata_store_pb2.Execution]:
    """Every recorded decision of this pipeline, oldest first."""
    if not connection.store_exists(config):
        return []
    store = connection.open_store(connection.connection_config(config))
    context = store.get_context_by_type_and_name(CONTEXT_TYPE, config.pipeline_name)
    return sorted(store.get_executions_by_context(context.id), key=lambda e: e.id) if context else []


def has_decision(config: PipelineConfig, decision_id: str) -> bool:
    """Whether the decision of that id (ct/decisions.py Decision.id) is recorded."""
    return any(
        "decision_id" in e.properties and e.properties["decision_id"].string_value == decision_id for e in decisions(config)
    )


def as_dict(execution: metadata_store_pb2.Execution) -> dict[str, Any]:
    """A decision execution's properties (signals decoded from JSON)."""
    out: dict[str, Any] = {"execution_id": execution.id}
    for name, value in execution.properties.items():
        out[name] = getattr(value, value.WhichOneof("value"))
    if "signals" in out:
        out["signals"] = json.loads(out["signals"] or "{}")
    return out


def run_that_pushed(config: PipelineConfig, destination: str) -> str | None:
    """The run whose Pusher made the push to `destination` (<serving root>/<version>), as lineage
    names it: the execution that produced the PushedModel, not a later run that cached it."""
    if not connection.store_exists(config):
        return None
    store = connection.open_store(connection.connection_config(config))
    pushed = runs.pushed_model(store, destination)
    pusher = runs.producer(store, pushed.id) if pushed is not None else None
    return runs.run_of(store, pusher.execution.id) if pusher is not None else None


def decision_for_run(config: PipelineConfig, run_id: str | None) -> dict[str, Any] | None:
    """The decision that launched pipeline run `run_id` (None: the run was not launched by CT). A
    decision a later tick carried through after a kill names the killed run too (`pushed_by_run`)
    when that run pushed and its re-run was cached."""
    if not run_id:
        return None
    found = [e for e in decisions(config)
             if run_id in (e.properties["run_id"].string_value, e.properties["pushed_by_run"].string_value if "pushed_by_run" in e.properties else "")]
    return as_dict(found[-1]) if found else None
