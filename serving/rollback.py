"""Rollback: serve an earlier blessed version without retraining, recorded in ML Metadata."""
from __future__ import annotations

from dataclasses import dataclass

from metadata import connection, registry, runs
from pipeline import versions
from pipeline.configs import PipelineConfig


@dataclass(frozen=True)
class RollbackResult:
    from_version: str | None
    to_version: str
    execution_id: int


def default_rollback_target(config: PipelineConfig) -> str:
    """The newest version older than the one serving now that could be rolled back to: published,
    pushed by this pipeline (recorded in MLMD) and not refused by the Evaluator. Staged, incomplete
    or unrecorded folders are skipped."""
    current = versions.serving_version(config.serving_root)
    older = [
        e.version for e in registry.list_versions(config)
        if current is not None and int(e.version) < int(current) and _eligible(e)
    ]
    if not older:
        raise LookupError(f"no published, recorded, blessed version older than the serving one ({current}) to roll back to")
    return older[-1]


def _eligible(entry: registry.ModelVersion) -> bool:
    return entry.ready and entry.pushed_model is not None and entry.blessed is not False


def rollback(config: PipelineConfig, to: str | None = None, reason: str = "operator") -> RollbackResult:
    """Serve `to` (default: the version before the serving one) until a newer push; record it in MLMD
    with `reason` (who or what decided it, and why).

    Only a version this pipeline pushed (MLMD has its PushedModel) and the Evaluator blessed, and
    which is still complete on disk, can be rolled back to.
    """
    target = to or default_rollback_target(config)
    entry = registry.find(config, target)
    if entry.pushed_model is None:
        raise LookupError(f"version {target} was not pushed by pipeline {config.pipeline_name} (no record in MLMD)")
    if entry.blessed is False:
        raise ValueError(f"version {target} was not blessed by the Evaluator")
    if not entry.ready:
        raise FileNotFoundError(f"version {target} is not published under {config.serving_root}: {entry.problem()}")
    current = versions.serving_version(config.serving_root)
    store = connection.open_store(connection.connection_config(config))
    context = runs.pipeline_context(store, config.pipeline_name)
    versions.write_rollback(config.serving_root, target)
    execution_id = runs.record_execution(
        store,
        registry.ROLLBACK_TYPE,
        {"from_version": current or "", "to_version": target, "reason": reason},
        {registry.ROLLED_BACK_TO: entry.pushed_model},
        context,
    )
    return RollbackResult(current, target, execution_id)
