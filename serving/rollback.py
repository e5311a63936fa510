"""Rollback: serve an earlier blessed version without retraining, recorded in ML Metadata.

A rollback's record and its pointer (pipeline/versions.py) never disagree, whatever is killed
when: the execution is recorded RUNNING first, then the pointer naming it is written (atomic and
durable), then the execution is marked COMPLETE. A RUNNING execution that the pointer names took
effect; one it does not name never did. The next rollback settles such leftovers (COMPLETE or
CANCELED) before recording its own, under the home's writer lock; `effective()` reads them so.
`clear` removes the pointer (the newest version serves again), recorded the same way when it
changes what serves; a corrupt pointer is simply removed. `live_since` reads when a version last
started serving, including through a cleared pointer, which leaves no file behind.
"""
from __future__ import annotations

from dataclasses import dataclass

from ml_metadata.proto import metadata_store_pb2

from metadata import connection, registry, runs
from pipeline import versions
from pipeline.configs import PipelineConfig

RUNNING = metadata_store_pb2.Execution.RUNNING
COMPLETE = metadata_store_pb2.Execution.COMPLETE
CANCELED = metadata_store_pb2.Execution.CANCELED
CLEARED = "cleared"  # property of a record that removed the pointer ("1") rather than wrote one


@dataclass(frozen=True)
class RollbackResult:
    from_version: str | None
    to_version: str
    execution_id: int | None  # None: nothing changed what serves, so nothing was recorded


def eligible(entry: registry.ModelVersion) -> bool:
    """Can be rolled back to: complete on disk, pushed by this pipeline, not refused by the Evaluator."""
    return entry.ready and entry.pushed_model is not None and entry.blessed is not False


def default_rollback_target(config: PipelineConfig) -> str:
    """The newest eligible version older than the one serving now (published, pushed by this
    pipeline, not refused by the Evaluator; staged, incomplete or unrecorded folders are skipped)."""
    current = versions.serving_state(config.serving_root).version
    older = [e.version for e in registry.list_versions(config)
             if current is not None and int(e.version) < int(current) and eligible(e)]
    if not older:
        raise LookupError(f"no published, recorded, blessed version older than the serving one ({current}) to roll back to")
    return older[-1]


def rollback(config: PipelineConfig, to: str | None = None, reason: str = "operator") -> RollbackResult:
    """Serve `to` (default: the newest eligible version before the serving one) until a newer push;
    record it in MLMD with `reason` (who or what decided it, and why).

    Only a version this pipeline pushed (MLMD has its PushedModel), the Evaluator blessed, and
    which is still complete on disk can be rolled back to; not the one serving now.
    """
    if to is not None and not to.strip():
        raise ValueError("--to needs a version (see `conveyor models`)")
    target = to.strip() if to is not None else default_rollback_target(config)
    entry = registry.find(config, target)
    if entry.pushed_model is None:
        raise LookupError(f"version {target} was not pushed by pipeline {config.pipeline_name} (no record in MLMD)")
    if entry.blessed is False:
        raise ValueError(f"version {target} was not blessed by the Evaluator")
    if not entry.ready:
        raise FileNotFoundError(f"version {target} is not published under {config.serving_root}: {entry.problem()}")
    current = versions.serving_state(config.serving_root).version
    if target == current:
        raise ValueError(f"version {target} is already serving: nothing to roll back")
    store, context = _store(config)
    settle(config, store, context)
    execution_id = runs.record_execution(
        store,
        registry.ROLLBACK_TYPE,
        {"from_version": current or "", "to_version": target, "reason": reason, CLEARED: "0"},
        {registry.ROLLED_BACK_TO: entry.pushed_model},
        context,
        state=RUNNING,
    )
    versions.write_rollback(config.serving_root, target, execution_id)
    runs.set_execution_state(store, execution_id, COMPLETE)
    return RollbackResult(current, target, execution_id)


def clear(config: PipelineConfig) -> RollbackResult | None:
    """Remove the rollback pointer: the newest version serves. None if there was none."""
    state = versions.serving_state(config.serving_root)
    newest = state.ready[-1] if state.ready else None
    if not state.rollback_in_force or newest is None:  # absent, corrupt or superseded: serving does not change
        return RollbackResult(state.version, state.version or "", None) if versions.clear_rollback(config.serving_root) else None
    entry = registry.find(config, newest)
    store, context = _store(config)
    settle(config, store, context)
    inputs = {registry.ROLLED_BACK_TO: entry.pushed_model} if entry.pushed_model is not None else {}
    execution_id = runs.record_execution(
        store, registry.ROLLBACK_TYPE, {"from_version": state.version or "", "to_version": newest, "reason": "operator cleared the pointer", CLEARED: "1"},
        inputs, context, state=RUNNING,
    )
    versions.clear_rollback(config.serving_root)
    runs.set_execution_state(store, execution_id, COMPLETE)
    return RollbackResult(state.version, newest, execution_id)


def live_since(config: PipelineConfig, version: str) -> float:
    """When `version` last started serving (Unix seconds): its publication or the rollback pointer in
    force (versions.live_since), or the newest rollback that took effect and made it serve, a cleared
    pointer included, whichever is later. Evidence about a version counts from here."""
    switched = [r.time for r in map(registry.RecordedRollback.of, effective(config)) if r.to_version == version]
    return max([versions.live_since(config.serving_root_uri, version), *switched])


def _store(config: PipelineConfig):
    store = connection.open_store(connection.connection_config(config))
    return store, runs.pipeline_context(store, config.pipeline_name)


def _took_effect(execution: metadata_store_pb2.Execution, pointer: versions.Rollback | None, newest: bool) -> bool:
    if execution.last_known_state == COMPLETE:
        return True
    if execution.last_known_state != RUNNING:
        return False
    if CLEARED in execution.properties and execution.properties[CLEARED].string_value == "1":
        return newest and pointer is None
    return pointer is not None and pointer.execution_id == execution.id


def effective(config: PipelineConfig) -> list[metadata_store_pb2.Execution]:
    """The recorded rollbacks that took effect, oldest first (an interrupted one counts if its
    pointer was written)."""
    found = registry.rollbacks(config)
    pointer = _pointer(config)
    return [e for i, e in enumerate(found) if _took_effect(e, pointer, i == len(found) - 1)]


def settle(config: PipelineConfig, store=None, context=None) -> None:
    """Mark interrupted rollbacks COMPLETE or CANCELED by whether they took effect."""
    found = registry.rollbacks(config)
    if not found:
        return
    if store is None:
        store, _ = _store(config)
    pointer = _pointer(config)
    for i, execution in enumerate(found):
        if execution.last_known_state == RUNNING:
            state = COMPLETE if _took_effect(execution, pointer, i == len(found) - 1) else CANCELED
            runs.set_execution_state(store, execution.id, state)


def _pointer(config: PipelineConfig) -> versions.Rollback | None:
    try:
        return versions.read_rollback(config.serving_root)
    except ValueError:
        return None
