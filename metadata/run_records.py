"""Every pipeline run of a home, as ML Metadata recorded it: what `conveyor runs` lists and compares.

A run's record: when it started and who launched it (a person through `conveyor run` or `conveyor
tune`, or a CT decision: metadata/ct_records.py), the span it ingested and its training window,
the hyperparameters its model trained with and where they came from (metadata/hyperparameters.py),
the Evaluator's metrics per slice and verdict (pipeline/evaluation.py, from its records), the
pushed version, and each component's seconds. `detail` adds what a comparison shows: each window
span's files and fingerprint, the code versions, the thresholds and InfraCheck's verdict
(metadata/lineage.py reads those the same way for a pushed model). Read without TensorFlow, on
SQLite and MySQL alike.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from metadata import ct_records, runs
from metadata import hyperparameters as hyperparameters_lib
from metadata import lineage as lineage_lib
from pipeline import blessing_checks, evaluation
from pipeline.artifact_properties import PUSHED_VERSION_PROPERTY, TUNER_ID
from pipeline.configs import PipelineConfig


class RunNotFound(LookupError):
    """A run named on the command line that this home's ML Metadata does not hold."""


@dataclass
class RunRecord:
    """One pipeline run: what `conveyor runs` lists."""

    number: int  # 1 = the oldest run of the pipeline
    run_id: str
    started: float  # seconds since the epoch
    launched_by: str  # "conveyor run", "conveyor tune" or "ct: <triggers>" (", re-tune" when it tuned)
    tuned: bool  # the run had a Tuner
    span: int | None
    span_namespace: str
    window_spans: list[int]
    window_feedback_spans: list[int]
    hyperparameters: hyperparameters_lib.Hyperparameters | None  # None: no model trained
    evaluation: evaluation.Evaluation | None  # None: not evaluated
    pushed_version: str | None
    failed_node: str | None  # the component that failed, if one did
    seconds: float  # from the first component's start to the last one's end
    nodes: dict[str, runs.NodeExecution] = field(repr=False, default_factory=dict)

    @property
    def metrics(self) -> dict[str, float]:
        return self.evaluation.metrics.get(evaluation.OVERALL, {}) if self.evaluation else {}

    @property
    def component_seconds(self) -> dict[str, float]:
        return {node_id: node.seconds for node_id, node in self.nodes.items()}


@dataclass
class RunDetail:
    """A run with what a comparison adds."""

    record: RunRecord
    spans: list[lineage_lib.SpanLineage]
    trainer_code: str | None
    transform_code: str | None
    baseline_version: str | None
    thresholds: list[blessing_checks.Threshold]
    gate: evaluation.Gate | None
    infra: lineage_lib.InfraVerdict | None


def _seconds(nodes: dict[str, runs.NodeExecution]) -> float:
    if not nodes:
        return 0.0
    start = min(n.execution.create_time_since_epoch for n in nodes.values())
    return (max(n.execution.last_update_time_since_epoch for n in nodes.values()) - start) / 1000


def _pushed_version(run: runs.Run) -> str | None:
    pushed = run.output("Pusher", "pushed_model")
    if pushed is None or runs.custom_property(pushed, "pushed") != 1:
        return None
    return str(runs.custom_property(pushed, PUSHED_VERSION_PROPERTY))


def _launched_by(decision: dict[str, Any] | None, tuned: bool) -> str:
    if decision is None:
        return "conveyor tune" if tuned else "conveyor run"
    return f"ct: {decision.get('triggers') or '-'}" + (", re-tune" if tuned else "")


def _record(store: metadata_store.MetadataStore, number: int, context: metadata_store_pb2.Context, decision: dict[str, Any] | None) -> RunRecord:
    run = runs.load_run(store, context.name)
    trainer = run.nodes.get("Trainer")
    evaluation_output = run.output("Evaluator", "evaluation")
    failed = [n.node_id for n in run.nodes.values() if n.execution.last_known_state == metadata_store_pb2.Execution.FAILED]
    tuned = TUNER_ID in run.nodes
    return RunRecord(
        number=number,
        run_id=context.name,
        started=context.create_time_since_epoch / 1000,
        launched_by=_launched_by(decision, tuned),
        tuned=tuned,
        span=run.span,
        span_namespace=run.span_namespace,
        window_spans=run.window_spans,
        window_feedback_spans=run.window_feedback_spans,
        hyperparameters=hyperparameters_lib.of_trainer(store, trainer) if trainer and trainer.outputs.get("model") else None,
        evaluation=evaluation.load_evaluation(evaluation_output.uri) if evaluation_output is not None else None,
        pushed_version=_pushed_version(run),
        failed_node=failed[0] if failed else None,
        seconds=_seconds(run.nodes),
        nodes=run.nodes,
    )


def _run_contexts(store: metadata_store.MetadataStore, pipeline_name: str) -> list[metadata_store_pb2.Context]:
    """The pipeline's run contexts, oldest first."""
    pipeline = runs.pipeline_context(store, pipeline_name)
    if pipeline is None:
        return []
    run_type = store.get_context_type(runs.PIPELINE_RUN_CONTEXT)
    return sorted((c for c in store.get_children_contexts_by_context(pipeline.id) if c.type_id == run_type.id), key=lambda c: c.id)


def _decisions(config: PipelineConfig) -> dict[str, dict[str, Any]]:
    """run id -> the CT decision that launched it."""
    found = {}
    for execution in ct_records.decisions(config):
        decision = ct_records.as_dict(execution)
        if decision.get("run_id"):
            found[decision["run_id"]] = decision
    return found


def all_runs(config: PipelineConfig, store: metadata_store.MetadataStore) -> list[RunRecord]:
    """Every run of the pipeline, oldest first."""
    decisions = _decisions(config)
    return [_record(store, number, c, decisions.get(c.name)) for number, c in enumerate(_run_contexts(store, config.pipeline_name), 1)]


def find(config: PipelineConfig, store: metadata_store.MetadataStore, name: str) -> RunRecord:
    """The run named `name`: its number in `conveyor runs` or its run id."""
    contexts = _run_contexts(store, config.pipeline_name)
    for number, context in enumerate(contexts, 1):
        if name == context.name or (name.isdigit() and int(name) == number):
            return _record(store, number, context, _decisions(config).get(context.name))
    known = f"1..{len(contexts)}" if contexts else "none: no run recorded"
    raise RunNotFound(f"{name}: no such run (expected a number from `conveyor runs`, {known}, or a run id)")


def detail(store: metadata_store.MetadataStore, record: RunRecord) -> RunDetail:
    """What a comparison shows besides the record."""
    run = runs.Run(record.run_id, record.nodes)
    window = run.inputs("Transform", "examples")
    trainer, transform, evaluator = (record.nodes.get(n) for n in ("Trainer", "Transform", "Evaluator"))
    baseline = run.inputs("Evaluator", "baseline_model")
    infra = run.output("InfraCheck", "infra_blessing")
    gate = runs.exec_property(evaluator, "blessing_gate") if evaluator else None
    return RunDetail(
        record=record,
        spans=[lineage_lib.span_lineage(store, a) for a in lineage_lib.validated_spans(store, window)],
        trainer_code=lineage_lib.code_of(trainer, "run_fn") if trainer else None,
        transform_code=lineage_lib.code_of(transform, "preprocessing_fn") if transform else None,
        baseline_version=(
            runs.baseline_version(store, baseline[0], before=record.pushed_version)
            if baseline and record.evaluation and record.evaluation.baseline else None
        ),
        thresholds=blessing_checks.recorded_thresholds(runs.exec_property(evaluator, "eval_config") or {}) if evaluator else [],
        gate=evaluation.Gate(**gate) if gate else None,
        infra=lineage_lib.infra_verdict(infra) if infra is not None else None,
    )
