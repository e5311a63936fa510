"""The model registry: pushed versions as the serving root and MLMD know them, and recorded rollbacks.

A version's record comes from lineage: its PushedModel artifact (pushed_version) <- Pusher
execution (inputs: model, model_blessing, infra_blessing) ; model <- Trainer <- transform graph
<- Transform (inputs: the window's validated spans) ; the newest of those spans <- DataGate
(output: validated_statistics, the TFDV statistics the model's training statistics are taken from;
in the stores form through SpanWindow) ; model_blessing <- Evaluator (output: evaluation).
Rollbacks (serving/rollback.py) are MLMD executions of type `conveyor.Rollback` attributed to the
pipeline's context, with an INPUT event on the PushedModel they returned to.

The registry reconciles the serving root with MLMD (pipeline/versions.py describes a push's two
steps). Each version has a state:
  published   complete and visible; only these are served or rolled back to
  staged      copied by Pusher into the staging area, not visible: with a push recorded in MLMD the
              next run of its span publishes it; without one (Pusher was killed) it is a leftover
  incomplete  a version folder that was never published (a torn copy, an older Pusher's or a
              hand-made copy): never served
  missing     MLMD records the push, the folder is gone
`clean` removes what can never serve: incomplete folders, and staged copies that are unrecorded or
older than the newest published version (a later push superseded them).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ml_metadata.proto import metadata_store_pb2

from metadata import connection, runs
from pipeline import versions
from pipeline.configs import PipelineConfig

PUSHER = "Pusher"
PUBLISHED, STAGED, INCOMPLETE, MISSING = "published", "staged", "incomplete", "missing"
VALIDATED_EXAMPLES, VALIDATED_STATISTICS = "validated_examples", "validated_statistics"  # DataGate's outputs
ROLLBACK_TYPE = "conveyor.Rollback"
ROLLOUT_TYPE = "conveyor.RolloutDecision"  # a rollout promoted or aborted (serving/rollout_control.py)
ROLLED_BACK_TO = "rolled_back_to"


@dataclass
class ModelVersion:
    """One pushed version, with what MLMD says about it (None/empty where it knows nothing)."""

    version: str
    state: str  # PUBLISHED, STAGED, INCOMPLETE or MISSING (see the module docstring)
    pushed_model: metadata_store_pb2.Artifact | None = None
    run_id: str | None = None
    blessed: bool | None = None  # by the Evaluator
    infra_blessed: bool | None = None  # by InfraCheck
    window_spans: list[int] = field(default_factory=list)  # upstream spans it was trained on
    window_feedback_spans: list[int] = field(default_factory=list)  # feedback spans (served traffic) it was trained on
    evaluation_uri: str | None = None
    training_statistics_uri: str | None = None
    superseded: bool = False  # staged, and a newer version is published

    @property
    def pushed_at(self) -> int:
        return int(self.version)  # Pusher names versions by Unix seconds

    @property
    def ready(self) -> bool:
        """Published: complete and visible (what the serving rule may pick)."""
        return self.state == PUBLISHED

    @property
    def cleanable(self) -> bool:
        """Can never serve: an incomplete folder, or a staged copy that MLMD has no push for or
        that a newer published version superseded."""
        return self.state == INCOMPLETE or (self.state == STAGED and (self.pushed_model is None or self.superseded))

    def problem(self) -> str:
        """What is wrong with this version, in words ('' for a published, recorded one)."""
        if self.state == PUBLISHED:
            return "" if self.pushed_model is not None else "published without a push record in ML Metadata (a copy)"
        if self.state == STAGED and self.pushed_model is None:
            return "staged by a push that was never recorded (interrupted): never served; conveyor models --clean removes it"
        if self.state == STAGED:
            return (
                "staged, superseded by a newer published version: never served; conveyor models --clean removes it"
                if self.superseded else "staged, not published yet: a re-run of its span publishes it"
            )
        if self.state == INCOMPLETE:
            return "incomplete or unrecorded folder: never served; conveyor models --clean removes it"
        return "missing on disk"


def _blessed(artifacts: list[metadata_store_pb2.Artifact], key: str) -> bool | None:
    return bool(artifacts[0].custom_properties[key].int_value) if artifacts else None


def list_versions(config: PipelineConfig) -> list[ModelVersion]:
    """Every version on disk or pushed according to MLMD, oldest first."""
    root = config.serving_root_uri
    found = {v: ModelVersion(v, STAGED) for v in versions.staged_versions(root)}
    found.update({v: ModelVersion(v, INCOMPLETE) for v in versions.incomplete_versions(root)})
    published = versions.ready_versions(root)
    found.update({v: ModelVersion(v, PUBLISHED) for v in published})
    for entry in found.values():
        entry.superseded = entry.state == STAGED and bool(published) and int(published[-1]) > int(entry.version)
    if not connection.store_exists(config):
        return sorted(found.values(), key=lambda v: int(v.version))
    store = connection.open_store(connection.connection_config(config))
    for push in runs.node_executions(store, config.pipeline_name, PUSHER):
        pushed = push.outputs.get("pushed_model", [])
        if not pushed or pushed[0].custom_properties["pushed"].int_value != 1:
            continue
        version = pushed[0].custom_properties["pushed_version"].string_value
        entry = found.setdefault(version, ModelVersion(version, MISSING))
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
    graph = trainer.inputs.get("transform_graph", []) if trainer else []
    transform = runs.producer(store, graph[0].id) if graph else None
    if transform is None:
        return
    window = transform.inputs.get("examples", [])
    entry.window_spans = runs.window_spans(window)
    entry.window_feedback_spans = runs.window_spans(window, runs.FEEDBACK)
    if window:
        entry.training_statistics_uri = _training_statistics(store, max(window, key=lambda a: a.id))


def _training_statistics(store, examples) -> str | None:
    """The train-split statistics file DataGate validated for the newest span of a model's window
    (the most recently validated one: this run's own span, upstream or feedback).

    Transform computes no statistics of its own (DataGate has those of every span); the newest
    span stands for the window, whose spans DataGate kept within the drift thresholds of each other.
    """
    node = runs.producer(store, examples.id)
    while node is not None and VALIDATED_STATISTICS not in node.outputs:  # stores: SpanWindow <- DataGate
        upstream = node.inputs.get(VALIDATED_EXAMPLES, [])
        node = runs.producer(store, upstream[0].id) if upstream else None
    if node is None:
        return None
    return versions.training_statistics_file(node.outputs[VALIDATED_STATISTICS][0].uri)


def clean(config: PipelineConfig) -> list[ModelVersion]:
    """Remove every cleanable version folder; returns what was removed. The caller holds the home's
    writer lock, so no run is staging or publishing meanwhile."""
    removed = [entry for entry in list_versions(config) if entry.cleanable]
    for entry in removed:
        versions.remove(config.serving_root_uri, entry.version, staged=entry.state == STAGED)
    return removed


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


@dataclass(frozen=True)
class RecordedRolloutDecision:
    candidate: str
    stable: str
    policy: str
    outcome: str  # promoted / aborted
    reason: str  # "operator: ..." for `conveyor rollout`, the rollout guard's verdict for CT
    time: float
    execution_id: int

    @classmethod
    def of(cls, execution: metadata_store_pb2.Execution) -> "RecordedRolloutDecision":
        props = execution.properties
        return cls(*(props[k].string_value for k in ("candidate", "stable", "policy", "outcome", "reason")),
                   execution.create_time_since_epoch / 1000, execution.id)


def rollout_decisions(config: PipelineConfig) -> list[metadata_store_pb2.Execution]:
    """Recorded rollout decisions of this pipeline, oldest first, interrupted ones included
    (serving/rollout_control.py `effective` keeps those that took effect)."""
    if not connection.store_exists(config):
        return []
    store = connection.open_store(connection.connection_config(config))
    context = runs.pipeline_context(store, config.pipeline_name)
    return runs.executions_of_type(store, ROLLOUT_TYPE, context) if context else []
