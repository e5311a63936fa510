"""The model registry: pushed versions as the serving root and MLMD know them, and recorded rollbacks.

A version's record comes from lineage: its PushedModel artifact (pushed_version) <- Pusher
execution (inputs: model, model_blessing, infra_blessing) ; model <- Trainer <- transformed
examples <- Transform (inputs: the window's validated spans; output: pre_transform_stats, the
TFDV statistics of exactly the data the model was trained on) ; model_blessing <- Evaluator
(output: evaluation). Rollbacks (serving/rollback.py) are MLMD executions of type `conveyor.Rollback` attributed to
the pipeline's context, with an INPUT event on the PushedModel they returned to.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ml_metadata.proto import metadata_store_pb2

from metadata import connection, runs
from pipeline.configs import PipelineConfig
from pipeline import versions

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
    window_spans: list[int] = field(default_factory=list)  # upstream spans it was trained on
    window_feedback_spans: list[int] = field(default_factory=list)  # feedback spans (served traffic) it was trained on
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
    if not connection.store_exists(config):
        return list(found.values())
    store = connection.open_store(connection.connection_config(config))
    for push in runs.node_executions(store, config.pipeline_name, PUSHER):
        pushed = push.outputs.get("pushed_model", [])
        if not pushed or pushed[0].custom_properties["pushed"].int_value != 1:
            continue
        version = pushed[0].custom_properties["pushed_version"].string_value
        entry = found.setdefault(version, ModelVersion(version, ready=False))
        entry.pushed_model = pushed[0]
        entry.run_id = runs.run_of(store, push.execution.id)
        entry.blessed = _blessed(push.inputs.get("model_blessing", []), "blessed")
        entry.infra_blessed = _blessed(push.inputs.get("infra_blessing", []), "blessed")
        _add_lineage(store, push, entry)
    return sorted(found.values(), key=lambda v: int(v.version))


def _add_lineage(store, push: runs.NodeExecution, entry: ModelVersion) -> None:
    for blessing in push.inputs.get("model_blessing", []):
        evaluator = runs.producer(store, blessing.id)
        if evaluator and evaluator.outputs.get("evaluation"):
            entry.evaluation_uri = evaluator.outputs["evaluation"][0].uri
    models = push.inputs.get("model", [])
    trainer = runs.producer(store, models[0].id) if models else None
    transformed = trainer.inputs.get("examples", []) if trainer else []
    transform = runs.producer(store, transformed[0].id) if transformed else None
    if transform is None:
        return
    window = transform.inputs.get("examples", [])
    entry.window_spans = runs.window_spans(window)
    entry.window_feedback_spans = runs.window_spans(window, runs.FEEDBACK)
    stats = transform.outputs.get("pre_transform_stats", [])
    entry.training_statistics_uri = stats[0].uri if stats else None


def find(config: PipelineConfig, version: str) -> ModelVersion:
    for entry in list_versions(config):
        if entry.version == version:
            return entry
    raise LookupError(f"version {version} is unknown (not under {config.serving_root} nor in {config.metadata_path})")


@dataclass(frozen=True)
class RecordedRollback:
    from_version: str
    to_version: str
    reason: str  # "operator" for `conveyor rollback`, the guard's verdict for CT
    time: float  # seconds since the epoch

    @classmethod
    def of(cls, execution: metadata_store_pb2.Execution) -> "RecordedRollback":
        props = execution.properties
        reason = props["reason"].string_value if "reason" in props else "operator"
        return cls(props["from_version"].string_value, props["to_version"].string_value, reason,
                   execution.create_time_since_epoch / 1000)


def rollbacks(config: PipelineConfig) -> list[metadata_store_pb2.Execution]:
    """Recorded rollbacks of this pipeline, oldest first (RecordedRollback.of reads one)."""
    if not connection.store_exists(config):
        return []
    store = connection.open_store(connection.connection_config(config))
    context = runs.pipeline_context(store, config.pipeline_name)
    return runs.executions_of_type(store, ROLLBACK_TYPE, context) if context else []
