"""The model registry: pushed versions as MLMD knows them, and rollback.

A version's record comes from lineage: its PushedModel artifact (pushed_version) <- Pusher
execution (inputs: model, model_blessing, infra_blessing) ; model <- Trainer <- transformed
examples <- Transform (inputs: the window's validated spans; output: pre_transform_stats, the
TFDV statistics of exactly the data the model was trained on) ; model_blessing <- Evaluator
(output: evaluation). Rollbacks are MLMD executions of type `conveyor.Rollback` attributed to the
pipeline's context, with an INPUT event on the PushedModel they returned to.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ml_metadata.proto import metadata_store_pb2

from pipeline import metadata
from pipeline.configs import PipelineConfig
from serving import versions

PUSHER = "Pusher"
ROLLBACK_TYPE = "conveyor.Rollback"
ROLLED_BACK_TO = "rolled_back_to"


@dataclass
class ModelVersion:
    """One pushed version, with what MLMD says about it (None/empty where it knows nothing)."""

    version: str
    ready: bool  # complete on disk under the serving root
    pushed_model: metadata_store_pb2.Artifact | None = None
    run_id: str | None = None
    blessed: bool | None = None  # by the Evaluator
    infra_blessed: bool | None = None  # by InfraCheck
    window_spans: list[int] = field(default_factory=list)
    evaluation_uri: str | None = None
    training_statistics_uri: str | None = None

    @property
    def pushed_at(self) -> int:
        return int(self.version)  # Pusher names versions by Unix seconds


def _blessed(artifacts: list[metadata_store_pb2.Artifact], key: str) -> bool | None:
    return bool(artifacts[0].custom_properties[key].int_value) if artifacts else None


def list_versions(config: PipelineConfig) -> list[ModelVersion]:
    """Every version on disk or pushed according to MLMD, oldest first."""
    found = {v: ModelVersion(v, ready=True) for v in versions.ready_versions(config.serving_root)}
    if not metadata.store_exists(config):
        return list(found.values())
    store = metadata.open_store(metadata.connection_config(config))
    for push in metadata.node_executions(store, config.pipeline_name, PUSHER):
        pushed = push.outputs.get("pushed_model", [])
        if not pushed or pushed[0].custom_properties["pushed"].int_value != 1:
            continue
        version = pushed[0].custom_properties["pushed_version"].string_value
        entry = found.setdefault(version, ModelVersion(version, ready=False))
        entry.pushed_model = pushed[0]
        entry.run_id = metadata.run_of(store, push.execution.id)
        entry.blessed = _blessed(push.inputs.get("model_blessing", []), "blessed")
        entry.infra_blessed = _blessed(push.inputs.get("infra_blessing", []), "blessed")
        _add_lineage(store, push, entry)
    return sorted(found.values(), key=lambda v: int(v.version))


def _add_lineage(store, push: metadata.NodeExecution, entry: ModelVersion) -> None:
    for blessing in push.inputs.get("model_blessing", []):
        evaluator = metadata.producer(store, blessing.id)
        if evaluator and evaluator.outputs.get("evaluation"):
            entry.evaluation_uri = evaluator.outputs["evaluation"][0].uri
    models = push.inputs.get("model", [])
    trainer = metadata.producer(store, models[0].id) if models else None
    transformed = trainer.inputs.get("examples", []) if trainer else []
    transform = metadata.producer(store, transformed[0].id) if transformed else None
    if transform is None:
        return
    entry.window_spans = sorted(metadata.span_of(a) for a in transform.inputs.get("examples", []))
    stats = transform.outputs.get("pre_transform_stats", [])
    entry.training_statistics_uri = stats[0].uri if stats else None


def find(config: PipelineConfig, version: str) -> ModelVersion:
    for entry in list_versions(config):
        if entry.version == version:
            return entry
    raise LookupError(f"version {version} is unknown (not under {config.serving_root} nor in {config.metadata_path})")


@dataclass(frozen=True)
class RollbackResult:
    from_version: str | None
    to_version: str
    execution_id: int


def default_rollback_target(config: PipelineConfig) -> str:
    """The newest pushed version older than the one serving now."""
    current = versions.serving_version(config.serving_root)
    older = [v for v in versions.ready_versions(config.serving_root) if current is not None and int(v) < int(current)]
    if not older:
        raise LookupError(f"no version older than the serving one ({current}) to roll back to")
    return older[-1]


def rollback(config: PipelineConfig, to: str | None = None) -> RollbackResult:
    """Serve `to` (default: the version before the serving one) until a newer push; record it in MLMD.

    Only a version this pipeline pushed (MLMD has its PushedModel) and the Evaluator blessed, and
    which is still complete on disk, can be rolled back to.
    """
    target = to or default_rollback_target(config)
    entry = find(config, target)
    if entry.pushed_model is None:
        raise LookupError(f"version {target} was not pushed by pipeline {config.pipeline_name} (no record in MLMD)")
    if entry.blessed is False:
        raise ValueError(f"version {target} was not blessed by the Evaluator")
    if not entry.ready:
        raise FileNotFoundError(f"version {target} is no longer under {config.serving_root}")
    current = versions.serving_version(config.serving_root)
    store = metadata.open_store(metadata.connection_config(config))
    context = metadata.pipeline_context(store, config.pipeline_name)
    versions.write_rollback(config.serving_root, target)
    execution_id = metadata.record_execution(
        store,
        ROLLBACK_TYPE,
        {"from_version": current or "", "to_version": target},
        {ROLLED_BACK_TO: entry.pushed_model},
        context,
    )
    return RollbackResult(current, target, execution_id)


def rollbacks(config: PipelineConfig) -> list[metadata_store_pb2.Execution]:
    """Recorded rollbacks of this pipeline, oldest first."""
    if not metadata.store_exists(config):
        return []
    store = metadata.open_store(metadata.connection_config(config))
    context = metadata.pipeline_context(store, config.pipeline_name)
    return metadata.executions_of_type(store, ROLLBACK_TYPE, context) if context else []
