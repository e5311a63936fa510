"""The CT controller's decision log: every tick, fired or not, with the inputs it considered.

Kept twice: as JSON lines in <home>/ct/decisions.jsonl (appended with fsync: readable with any
tool) and in ML Metadata as executions of type `conveyor.CTDecision`, attributed to a
`conveyor.CTController` context named after the pipeline (queryable next to the runs they launched).
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ml_metadata.proto import metadata_store_pb2

from metadata import connection
from pipeline.configs import PipelineConfig

EXECUTION_TYPE = "conveyor.CTDecision"
CONTEXT_TYPE = "conveyor.CTController"
LOG_FILE = "decisions.jsonl"

# Outcomes of a launched run.
OK, BLOCKED, CRASHED, BUSY = "ok", "blocked", "crashed", "busy"


@dataclass
class Decision:
    time: float  # seconds since the epoch (the controller's clock)
    fired: bool
    triggers: list[str]  # triggers that fired, in priority order; [] when not fired
    reason: str  # one line a person can read
    signals: dict[str, Any] = field(default_factory=dict)  # every input considered, with scores
    span: int | None = None  # span the launched run ingested
    attempt: int = 0  # 1 for a first launch of a span, 2 for its retry
    run_id: str | None = None
    outcome: str | None = None  # OK | BLOCKED | CRASHED | BUSY (not launched: a run was in progress)
    detail: str | None = None  # run error, blessing, pushed path


def log_path(config: PipelineConfig) -> Path:
    return config.ct_dir / LOG_FILE


def history(config: PipelineConfig) -> list[Decision]:
    path = log_path(config)
    if not path.exists():
        return []
    return [Decision(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


def record(config: PipelineConfig, decision: Decision) -> None:
    path = log_path(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        handle.write(json.dumps(asdict(decision), sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    _record_in_mlmd(config, decision)


def _record_in_mlmd(config: PipelineConfig, decision: Decision) -> None:
    store = connection.open_store(connection.connection_config(config))
    string, integer = metadata_store_pb2.STRING, metadata_store_pb2.INT
    execution_type = metadata_store_pb2.ExecutionType(name=EXECUTION_TYPE)
    for name, kind in (("triggers", string), ("reason", string), ("signals", string), ("run_id", string),
                       ("outcome", string), ("fired", integer), ("span", integer), ("attempt", integer)):
        execution_type.properties[name] = kind
    type_id = store.put_execution_type(execution_type, can_add_fields=True)
    context = store.get_context_by_type_and_name(CONTEXT_TYPE, config.pipeline_name)
    if context is None:
        context_type_id = store.put_context_type(metadata_store_pb2.ContextType(name=CONTEXT_TYPE))
        context = metadata_store_pb2.Context(type_id=context_type_id, name=config.pipeline_name)
        context.id = store.put_contexts([context])[0]
    execution = metadata_store_pb2.Execution(type_id=type_id, last_known_state=metadata_store_pb2.Execution.COMPLETE)
    props = execution.properties
    props["triggers"].string_value = ",".join(decision.triggers)
    props["reason"].string_value = decision.reason
    props["signals"].string_value = json.dumps(decision.signals, sort_keys=True)
    props["run_id"].string_value = decision.run_id or ""
    props["outcome"].string_value = decision.outcome or ""
    props["fired"].int_value = int(decision.fired)
    props["span"].int_value = decision.span or 0
    props["attempt"].int_value = decision.attempt
    store.put_execution(execution, artifact_and_events=[], contexts=[context])


def recorded_in_mlmd(config: PipelineConfig) -> list[metadata_store_pb2.Execution]:
    store = connection.open_store(connection.connection_config(config))
    context = store.get_context_by_type_and_name(CONTEXT_TYPE, config.pipeline_name)
    return sorted(store.get_executions_by_context(context.id), key=lambda e: e.id) if context else []
