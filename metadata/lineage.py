"""Which model is serving, and what made it: the chain ML Metadata recorded behind a pushed version.

    conveyor lineage [--version V] [--home DIR]

From the push back to the data: Pusher <- Evaluator (metrics per slice, the verdict and why, the
baseline as the version it was pushed as) and InfraCheck (its verdict) <- Trainer (steps,
hyperparameters, code) <- Transform (graph, code) <- the training window's spans (upstream and
feedback), each through DataGate <- ExampleValidator (anomalies) <- StatisticsGen <- CsvExampleGen
(files), and the schema. A feedback span also says which served traffic it holds and where its
labels came from (its manifest, ct/feedback.py); the CT decision that launched the run (trigger,
reason, time) comes from metadata/ct_records.py. Works on any MLMD the pipeline wrote (SQLite or
MySQL), for both history sources.

Nothing here imports TensorFlow, TFMA or Beam for a local home: the evaluation is read from the
Evaluator's records (pipeline/evaluation.py `load_evaluation`; an evaluation older than them goes
through TFMA), the thresholds from what MLMD recorded (pipeline/blessing_checks.py), files with
os and pathlib (data/files.py).
"""
from __future__ import annotations

import datetime
import json
import os
from dataclasses import dataclass, field
from typing import Any

from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2

from data import files, spans_io
from metadata import connection, runs
from metadata import hyperparameters as hyperparameters_lib
from models import label_metrics
from pipeline import anomalies as anomalies_lib
from pipeline import blessing_checks, evaluation, rollouts, user_code, versions
from pipeline.artifact_properties import (
    BLESSED_KEY,
    CHECKED_KEY,
    FAILURE_KEY,
    FOLDED_KEY,
    MODEL_ID_PROPERTY,
    WINDOW_SOURCES_PROPERTY,
)
from pipeline.configs import PipelineConfig
from schema import versions as schema_versions


class LineageError(LookupError):
    """The requested version has no recorded lineage."""


@dataclass
class SpanLineage:
    span: int
    namespace: str  # upstream or feedback (data/spans_io.py)
    version: int
    data_pattern: str  # what CsvExampleGen read
    data_files: list[str]  # files matching it now
    input_fingerprint: str  # files, bytes and checksums when it was read
    examples_uri: str
    statistics_uri: str
    anomalies_uri: str
    anomalies: list[str]
    validated_uri: str  # DataGate's output: the span passed the gate
    manifest: dict[str, Any] | None = None  # a feedback span's: served traffic, label files, who built it

    @property
    def label(self) -> str:
        return spans_io.label(self.span, self.namespace)


@dataclass(frozen=True)
class InfraVerdict:
    """InfraCheck's verdict on the model (its InfraBlessing)."""

    passed: bool
    checked: int  # eval examples answered through the serving code
    folded: bool  # asked through the folded call (speedups/folded_call.py)
    failure: str

    def __str__(self) -> str:
        if not self.passed:
            return f"FAILED: {self.failure or 'no reason recorded'}"
        how = " (folded call)" if self.folded else ""
        return f"passed, {self.checked} eval examples answered through the serving code{how}"


@dataclass
class ModelLineage:
    version: str
    serving_now: bool
    pushed_path: str
    pushed_at: datetime.datetime
    run_id: str | None
    spans: list[SpanLineage]
    schema_uri: str
    schema_file: str
    transform_graph_uri: str
    transform_code: str
    model_uri: str
    train_steps: int
    eval_steps: int
    custom_config: dict[str, Any]  # hyperparameter overrides, seed (and code_version when installed)
    hyperparameters: hyperparameters_lib.Hyperparameters  # every value the model trained with, and whence
    trainer_code: str
    evaluation_uri: str
    evaluation: evaluation.Evaluation  # both models' metrics per slice and the verdict's reasons
    blessed: bool  # the Evaluator's ModelBlessing
    baseline: str | None  # the baseline Model's URI (None: nothing was serving)
    baseline_version: str | None  # the pushed version the baseline was (None: unknown or no baseline)
    thresholds: list[blessing_checks.Threshold]  # as the Evaluator was configured
    gate: evaluation.Gate
    infra: InfraVerdict | None  # None: no InfraCheck recorded
    schema_properties: dict[str, Any]  # the Schema's custom properties: its version (schema/versions.py)
    schema_changes: list[str] | None = None  # each change up to that version, its span and reason (from the home)
    launched_by: dict[str, Any] | None = None  # the CT decision that launched the run (None: not CT)
    rollout: list[str] = field(default_factory=list)  # how it took traffic: its policy and each rollout decision

    @property
    def metrics(self) -> dict[str, float]:
        """The candidate's overall metrics."""
        return self.evaluation.metrics.get(evaluation.OVERALL, {})

    @property
    def baseline_metrics(self) -> dict[str, float]:
        return self.evaluation.baseline


def _producer(store: metadata_store.MetadataStore, artifact: metadata_store_pb2.Artifact, expected: str) -> runs.NodeExecution:
    node = runs.producer(store, artifact.id)
    if node is None or node.node_id != expected:
        found = node.node_id if node else "nothing"
        raise LineageError(f"{artifact.uri}: expected to be produced by {expected}, found {found}")
    return node


def _single(node: runs.NodeExecution, side: str, key: str) -> metadata_store_pb2.Artifact:
    artifacts = getattr(node, side).get(key, [])
    if not artifacts:
        raise LineageError(f"{node.node_id} execution {node.execution.id} recorded no {side[:-1]} {key!r}")
    return artifacts[0]


def code_of(node: runs.NodeExecution, fn_property: str) -> str:
    """How an execution named its code: the wheel TFX built for a module_file, or the installed function."""
    module_path = runs.exec_property(node, "module_path")
    if module_path:
        module, _, wheel = str(module_path).partition("@")
        return f"{module} from {os.path.basename(wheel)}" if wheel else module
    config = runs.exec_property(node, "custom_config") or {}
    return f"{runs.exec_property(node, fn_property)} (installed, code {config.get(user_code.CODE_VERSION_KEY, '?')})"


def span_lineage(store: metadata_store.MetadataStore, validated: metadata_store_pb2.Artifact) -> SpanLineage:
    gate = _producer(store, validated, "DataGate")
    examples = _single(gate, "inputs", "examples")
    anomalies = _single(gate, "inputs", "anomalies")
    example_gen = _producer(store, examples, "CsvExampleGen")
    validator = _producer(store, anomalies, "ExampleValidator")
    statistics = _single(validator, "inputs", "statistics")
    span = runs.span_of(examples)
    namespace = runs.example_gen_namespace(example_gen)
    input_base = str(runs.exec_property(example_gen, "input_base"))
    pattern = os.path.join(input_base, spans_io.file_pattern(namespace).replace("{SPAN}", str(span)))
    found = anomalies_lib.read(anomalies.uri, anomalies.properties["split_names"].string_value)
    return SpanLineage(
        span=span,
        namespace=namespace,
        manifest=spans_io.read_manifest(input_base, span, namespace) if namespace == spans_io.FEEDBACK else None,
        version=int(runs.custom_property(examples, "version") or 0),
        data_pattern=pattern,
        data_files=sorted(files.glob(pattern)),
        input_fingerprint=str(runs.custom_property(examples, "input_fingerprint") or ""),
        examples_uri=examples.uri,
        statistics_uri=statistics.uri,
        anomalies_uri=anomalies.uri,
        anomalies=[str(a) for a in found],
        validated_uri=validated.uri,
    )


def infra_verdict(blessing: metadata_store_pb2.Artifact) -> InfraVerdict:
    """InfraCheck's verdict, from its InfraBlessing."""
    return InfraVerdict(
        passed=runs.custom_property(blessing, BLESSED_KEY) == 1,
        checked=int(runs.custom_property(blessing, CHECKED_KEY) or 0),
        folded=runs.custom_property(blessing, FOLDED_KEY) == 1,
        failure=str(runs.custom_property(blessing, FAILURE_KEY) or ""),
    )


def validated_spans(store: metadata_store.MetadataStore, window: list[metadata_store_pb2.Artifact]) -> list[metadata_store_pb2.Artifact]:
    """DataGate's artifacts behind a training window (a "stores" window lists them by URI)."""
    validated = []
    for artifact in window:
        sources = runs.custom_property(artifact, WINDOW_SOURCES_PROPERTY)
        if not sources:
            validated.append(artifact)
            continue
        for uri in json.loads(sources):
            matches = [a for a in store.get_artifacts_by_uri(uri) if (n := runs.producer(store, a.id)) and n.node_id == "DataGate"]
            if not matches:
                raise LineageError(f"window source {uri} is not a DataGate output in ML Metadata")
            validated.append(matches[0])
    return sorted(validated, key=lambda a: (runs.namespace_of(a) != spans_io.UPSTREAM, runs.span_of(a)))


def trace(store: metadata_store.MetadataStore, serving_root: str, version: str) -> ModelLineage:
    """The lineage of pushed model `version` under `serving_root`."""
    destination = os.path.join(serving_root, version)
    pushed = runs.pushed_model(store, destination)
    if pushed is None:
        raise LineageError(f"no push to {destination} is recorded in ML Metadata")
    pusher = _producer(store, pushed, "Pusher")
    model = _single(pusher, "inputs", "model")
    blessing = _single(pusher, "inputs", "model_blessing")
    evaluator = _producer(store, blessing, "Evaluator")
    trainer = _producer(store, model, "Trainer")
    transform_graph = _single(trainer, "inputs", "transform_graph")
    transform = _producer(store, transform_graph, "Transform")
    schema = _single(trainer, "inputs", "schema")
    schema_gen = _producer(store, schema, "ImportSchemaGen")
    evaluation_uri = _single(evaluator, "outputs", "evaluation").uri
    result = evaluation.load_evaluation(evaluation_uri)
    # The Evaluator compared with a baseline only if it got a model ("stores" may pass an empty one).
    baseline = evaluator.inputs.get("baseline_model", []) if result.baseline else []
    gate = runs.exec_property(evaluator, "blessing_gate")  # absent before the rule: everything gated
    return ModelLineage(
        version=version,
        serving_now=versions.serving_version(serving_root) == version,
        pushed_path=destination,
        pushed_at=datetime.datetime.fromtimestamp(int(version), datetime.timezone.utc),
        run_id=runs.run_of(store, pusher.execution.id),
        spans=[span_lineage(store, a) for a in validated_spans(store, transform.inputs.get("examples", []))],
        schema_uri=schema.uri,
        schema_file=str(runs.exec_property(schema_gen, "schema_file")),
        transform_graph_uri=transform_graph.uri,
        transform_code=code_of(transform, "preprocessing_fn"),
        model_uri=model.uri,
        train_steps=int(runs.exec_property(trainer, "train_args")["num_steps"]),
        eval_steps=int(runs.exec_property(trainer, "eval_args")["num_steps"]),
        custom_config=dict(runs.exec_property(trainer, "custom_config") or {}),
        hyperparameters=hyperparameters_lib.of_trainer(store, trainer),
        trainer_code=code_of(trainer, "run_fn"),
        evaluation_uri=evaluation_uri,
        evaluation=result,
        blessed=runs.custom_property(blessing, "blessed") == 1,
        baseline=baseline[0].uri if baseline else None,
        baseline_version=runs.baseline_version(store, baseline[0], before=version) if baseline else None,
        thresholds=blessing_checks.recorded_thresholds(runs.exec_property(evaluator, "eval_config") or {}),
        gate=evaluation.Gate(**gate) if gate else evaluation.Gate(min_slice_examples=0, min_class_examples=0),
        infra=infra_verdict(pusher.inputs["infra_blessing"][0]) if pusher.inputs.get("infra_blessing") else None,
        schema_properties={key: runs.custom_property(schema, key) for key in schema.custom_properties},
    )


def training_spans(config: PipelineConfig, version: str) -> list[SpanLineage]:
    """The spans of `version`'s training window, from the Model its push record names (a home copied
    elsewhere still finds them; without that id, from the push recorded to its folder)."""
    if not connection.store_exists(config):
        raise LineageError(f"no ML Metadata at {config.metadata_path}: no run of this home was recorded")
    store = connection.open_store(connection.connection_config(config))
    model_id = (versions.read_record(config.serving_root_uri, version) or {}).get(MODEL_ID_PROPERTY)
    if not model_id:
        return trace(store, config.serving_root_uri, version).spans
    models = store.get_artifacts_by_id([int(model_id)])
    if not models:
        raise LineageError(f"the push record of version {version} names Model {model_id}, which ML Metadata does not hold")
    trainer = _producer(store, models[0], "Trainer")
    transform = _producer(store, _single(trainer, "inputs", "transform_graph"), "Transform")
    return [span_lineage(store, a) for a in validated_spans(store, transform.inputs.get("examples", []))]


def for_config(config: PipelineConfig, version: str | None = None) -> ModelLineage:
    """Lineage of `version` (default: the version serving now) of the pipeline in `config`."""
    version = version or versions.serving_version(config.serving_root_uri)
    if version is None:
        raise LineageError(f"no pushed model under {config.serving_root_uri}")
    if not connection.store_exists(config):
        raise LineageError(f"no ML Metadata at {config.metadata_path}: no run of this home was recorded")
    from metadata import ct_records

    store = connection.open_store(connection.connection_config(config))
    found = trace(store, config.serving_root_uri, version)
    found.launched_by = ct_records.decision_for_run(config, found.run_id)
    number = found.schema_properties.get(schema_versions.PROPERTY_PREFIX + "version")
    if isinstance(number, int):
        found.schema_changes = schema_versions.change_lines(config.home, config.schema_path, number)
    found.rollout = rollout_steps(config, version)
    return found


def rollout_steps(config: PipelineConfig, version: str) -> list[str]:
    """How `version` took traffic: the policy it was pushed under, the rollout it ran as a candidate
    and how that was decided (the recorded decisions that took effect; pipeline/rollouts.py)."""
    from metadata import registry

    def when(seconds: float) -> str:
        return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")

    policy = (versions.read_record(config.serving_root_uri, version) or {}).get(versions.ROLLOUT, rollouts.DIRECT)
    steps = [f"pushed under {policy}"]
    try:
        state = rollouts.read(config.serving_root_uri)
    except ValueError:
        state = None
    for execution in registry.rollout_decisions(config):
        decided = registry.RecordedRolloutDecision.of(execution)
        took = execution.last_known_state == metadata_store_pb2.Execution.COMPLETE or (
            state is not None and state.execution_id == execution.id)
        if decided.candidate == version and took:
            steps.append(f"{decided.outcome} {when(decided.time)} against stable {decided.stable}: {decided.reason}")
    if state is not None and state.candidate == version and state.running:
        steps.append(f"running since {when(state.started)} against stable {state.stable}")
    return steps


def _metrics_line(metrics: dict[str, float], counts: dict[str, float]) -> str:
    """The compared metrics with 4 decimals (n/a where undefined on the eval examples `counts`
    describes), then the counts as integers."""
    names = [m for m in evaluation.COMPARED_METRICS if m in metrics] + [m for m in evaluation.COUNT_METRICS if m in metrics]
    return ", ".join(f"{m}={evaluation.shown(m, metrics[m], counts)}" for m in names)


def _slice_table(lineage: ModelLineage) -> list[str]:
    """Every slice in natural order: its eval examples and, per gated metric, the candidate, the
    baseline and the change."""
    result = lineage.evaluation
    metric_set = label_metrics.active()
    metrics = [gated for t in lineage.thresholds if (gated := metric_set.gated(t.metric))] or list(metric_set.table)
    compared = bool(result.baseline)
    rows = []
    for name in sorted(result.metrics, key=evaluation.slice_order):
        values, base = result.metrics[name], result.baseline_by_slice.get(name, {})
        cells = []
        for metric in metrics:
            value = values.get(metric)
            cell = evaluation.shown(metric, value, values)
            if compared and value is not None and metric in base and evaluation.undefined_reason(metric, value, values) is None:
                cell += f" {base[metric]:.4f} {value - base[metric]:+.4f}"
            cells.append(cell)
        rows.append((name, values.get("example_count", 0), cells))
    width = max([24 if compared else 9] + [len(text) + 2 for text in metrics] + [len(cell) + 2 for *_, cells in rows for cell in cells])
    head = f"{'slice':<28}{'examples':>9}" + "".join(f"{m:>{width}}" for m in metrics)
    lines = [head + ("   (candidate, baseline, change)" if compared else "")]
    lines += [f"{name:<28}{count:>9.0f}" + "".join(f"{cell:>{width}}" for cell in cells) for name, count, cells in rows]
    return lines


def _verdict_lines(lineage: ModelLineage) -> list[str]:
    """Blessed or not and why (each gated threshold with its figures, or each refusal), what the
    rule did not gate with the change it saw, and InfraCheck's verdict."""
    result = lineage.evaluation
    if lineage.blessed:
        lines = ["blessed yes: every gated threshold met"]
        lines += [f"  {line}" for line in blessing_checks.explain(result, lineage.thresholds, lineage.gate)]
    else:
        lines = ["blessed NO"] + [f"  - {reason}" for reason in result.failures or ["no reason recorded"]]
    if result.not_gated:
        lines.append("not gated (docs/pipeline.md#blessing):")
        lines += [f"  - {note}" for note in result.not_gated]
    lines.append(f"infra check: {lineage.infra or 'not recorded'}")
    return lines


def _launched_by(decision: dict[str, Any] | None) -> str:
    if decision is None:
        return "launched by: a person (conveyor run), not the CT controller"
    when = datetime.datetime.fromtimestamp(decision["time"], datetime.timezone.utc) if decision.get("time") else None
    at = f" at {when:%Y-%m-%d %H:%M:%S} UTC" if when else ""
    return f"launched by: CT trigger {decision['triggers'] or '-'}{at} (decision {decision['execution_id']}): {decision['reason']}"


def _feedback_line(manifest: dict[str, Any] | None) -> str:
    if not manifest:
        return "    served     (no manifest found)"
    built = manifest.get("built_by", {})
    return (
        f"    served     traffic from {manifest.get('first_served', manifest['start'])} to {manifest.get('last_served', manifest['end'])}:"
        f" {manifest['labelled']} labelled predictions"
        f" of version(s) {', '.join(manifest['versions']) or '-'} ({manifest['without_label']} without a label left out)\n"
        f"    labels     from {', '.join(manifest['label_files']) or '-'}\n"
        f"    built by   CT trigger {','.join(built.get('triggers', [])) or '-'} at {built.get('time', '-')}"
    )


def format_lineage(lineage: ModelLineage) -> str:
    serving = " (serving now)" if lineage.serving_now else ""
    upstream = [s.span for s in lineage.spans if s.namespace == spans_io.UPSTREAM]
    fed = [s.span for s in lineage.spans if s.namespace == spans_io.FEEDBACK]
    lines = [
        f"model version {lineage.version}{serving}",
        f"  pushed     {lineage.pushed_at:%Y-%m-%d %H:%M:%S} UTC to {lineage.pushed_path} (run {lineage.run_id})",
        f"  {_launched_by(lineage.launched_by)}",
        *(f"  rollout    {step}" for step in lineage.rollout),
        f"data: training window spans {upstream}" + (f" + feedback spans {fed} (served traffic)" if fed else ""),
    ]
    for span in lineage.spans:
        kind = "feedback span" if span.namespace == spans_io.FEEDBACK else "span"
        lines += [f"  {kind} {span.span} (version {span.version})"]
        if span.namespace == spans_io.FEEDBACK:
            lines.append(_feedback_line(span.manifest))
        lines += [
            f"    files      {span.data_pattern}: {', '.join(span.data_files) or 'none there now'}",
            f"    read as    {span.input_fingerprint}",
            f"    examples   {span.examples_uri}",
            f"    statistics {span.statistics_uri}",
            f"    anomalies  {len(span.anomalies)} ({span.anomalies_uri})",
            *(f"      - {a}" for a in span.anomalies),
            f"    data gate  passed -> {span.validated_uri}",
        ]
    lines += [
        f"schema:     {schema_versions.described(lineage.schema_properties)}",
        f"            {lineage.schema_uri} (imported from {lineage.schema_file})",
        *(f"            {line}" for line in lineage.schema_changes or []),
        f"transform:  graph {lineage.transform_graph_uri}",
        f"            code  {lineage.transform_code}",
        f"trainer:    model {lineage.model_uri}",
        f"            steps train {lineage.train_steps}, eval {lineage.eval_steps}",
        f"            custom_config {json.dumps(lineage.custom_config, sort_keys=True)}",
        *(f"            {label:<15} {line}" for label, line in zip(("hyperparameters", ""), hyperparameters_lib.describe(lineage.hyperparameters))),
        f"            code  {lineage.trainer_code}",
        f"evaluation: {lineage.evaluation_uri}",
        f"            overall  {_metrics_line(lineage.metrics, lineage.metrics)}",
        f"            baseline {_baseline_text(lineage)}",
        *(f"            {line}" for line in _slice_table(lineage)),
        *(f"            {line}" for line in _verdict_lines(lineage)),
    ]
    return "\n".join(lines)


def _baseline_text(lineage: ModelLineage) -> str:
    if lineage.baseline is None:
        return "none: nothing was serving (only the floors applied)"
    version = f"version {lineage.baseline_version}" if lineage.baseline_version else "a model never pushed"
    return f"{version} (model {lineage.baseline}): {_metrics_line(lineage.baseline_metrics, lineage.metrics)}"
