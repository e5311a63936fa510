"""What a run did, read back from ML Metadata by the run's own id, and its console summary."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from data import spans_io
from metadata import connection, runs
from metadata import hyperparameters as hyperparameters_lib
from models import label_metrics
from pipeline import blessing_checks, evaluation
from pipeline.configs import PipelineConfig
from pipeline.evaluation import Evaluation, Gate, shown, slice_order
from schema import versions as schema_versions


@dataclass
class RunSummary:
    """What a run did, read back from MLMD after it ended."""

    run_id: str | None
    ok: bool
    seconds: float  # wall time of the pass: importing TFX, the pipeline, reading back, the report
    log_file: Path
    timings: list[tuple[str, str, float]]
    error: str | None = None
    failed_component: str | None = None
    span: int | None = None
    span_source: str = "upstream"  # the namespace of `span` (data/spans_io.py)
    window_spans: list[int] = field(default_factory=list)
    window_feedback_spans: list[int] = field(default_factory=list)
    drift: dict | None = None  # DataGate's drift report (pipeline/drift.py to_json), if it ran
    validation: dict | None = None  # DataGate's validation.json (pipeline/validation.py report), if the span passed
    schema_version: str | None = None  # the accepted schema version imported (None: the curated one)
    hyperparameters: hyperparameters_lib.Hyperparameters | None = None  # what the Trainer trained with, and whence
    evaluation: Evaluation | None = None
    baseline_version: str | None = None  # the pushed version the candidate was compared with
    thresholds: list[blessing_checks.Threshold] = field(default_factory=list)  # as the Evaluator was configured
    gate: Gate | None = None  # the Evaluator's blessing rule (pipeline/evaluation.py)
    missing_metrics: set[str] = field(default_factory=set)
    pushed_path: str | None = None
    infra_failure: str | None = None  # why InfraCheck refused the candidate (None: passed or did not run)
    infra_checked: int = 0  # examples the candidate answered through the serving code
    card_file: str | None = None  # the model card (HTML): the pushed version's, else the candidate's
    report_file: Path | None = None  # the HTML run report (None if writing it failed: see the log)
    interrupted: bool = False  # stopped by Ctrl-C (SIGINT)

    @property
    def blessed(self) -> bool:
        return bool(self.evaluation and self.evaluation.blessed)

    @property
    def refusals(self) -> list[str]:
        """Why the candidate was not pushed, one sentence each ([] when pushed or not evaluated)."""
        reasons = []
        if self.evaluation is not None and not self.evaluation.blessed:
            reasons += [f"not blessed: {reason}" for reason in self.evaluation.failures] or ["not blessed (no reason recorded)"]
        if self.missing_metrics:
            reasons.append(f"threshold metrics missing from the evaluation: {sorted(self.missing_metrics)}")
        if self.infra_failure:
            reasons.append(f"infra check failed: {self.infra_failure}")
        return reasons


def read_back(config: PipelineConfig, summary: RunSummary) -> None:
    """Fill `summary` from MLMD: what run `summary.run_id` recorded (nothing if it never started)."""
    from pipeline.components.data_gate import REPORT_FILE, VALIDATION_FILE

    if summary.run_id is None:
        return
    store = connection.open_store(connection.connection_config(config))
    run = runs.load_run(store, summary.run_id)
    summary.span = run.span
    summary.span_source = run.span_namespace
    summary.window_spans = run.window_spans
    summary.window_feedback_spans = run.window_feedback_spans
    schema = run.output("ImportSchemaGen", "schema")
    if schema is not None and (runs.custom_property(schema, schema_versions.PROPERTY_PREFIX + "version") or 1) > 1:
        summary.schema_version = schema_versions.described({k: runs.custom_property(schema, k) for k in schema.custom_properties})
    report = run.output("DataGate", "drift_report")
    if report is not None:
        summary.drift = json.loads(Path(report.uri, REPORT_FILE).read_text())
        if "baseline_span" in report.custom_properties:
            summary.drift["baseline_span"] = report.custom_properties["baseline_span"].int_value
        validation = Path(report.uri, VALIDATION_FILE)
        if validation.exists():
            summary.validation = json.loads(validation.read_text())
    if run.output("Trainer", "model") is not None:
        summary.hyperparameters = hyperparameters_lib.of_trainer(store, run.nodes["Trainer"])
    evaluation_output = run.output("Evaluator", "evaluation")
    if evaluation_output is not None:
        summary.evaluation = evaluation.load_evaluation(evaluation_output.uri)
        summary.missing_metrics = evaluation.missing_threshold_metrics(
            evaluation.eval_config(config), summary.evaluation
        )
        evaluator = run.nodes["Evaluator"]
        summary.thresholds = blessing_checks.recorded_thresholds(runs.exec_property(evaluator, "eval_config") or {})
        gate = runs.exec_property(evaluator, "blessing_gate")
        summary.gate = Gate(**gate) if gate else None
        baseline = run.inputs("Evaluator", "baseline_model")
        if baseline and summary.evaluation.baseline:
            summary.baseline_version = runs.baseline_version(store, baseline[0])
    infra = run.output("InfraCheck", "infra_blessing")
    if infra is not None:
        from pipeline.components import infra_check

        props = infra.custom_properties
        summary.infra_checked = props[infra_check.CHECKED_KEY].int_value
        if props[infra_check.BLESSED_KEY].int_value != 1:
            summary.infra_failure = props[infra_check.FAILURE_KEY].string_value or "no reason recorded"
    pushed = run.output("Pusher", "pushed_model")
    if pushed is not None and pushed.custom_properties["pushed"].int_value == 1:
        summary.pushed_path = pushed.custom_properties["pushed_destination"].string_value
    card = run.output("ModelCard", "model_card")
    if card is not None:
        from pipeline import versions

        published = versions.card_file(config.serving_root_uri, Path(summary.pushed_path).name, versions.CARD_HTML) if summary.pushed_path else None
        summary.card_file = published if published and Path(published).exists() else str(Path(card.uri, versions.CARD_DIR, versions.CARD_HTML))


def _format_validation(validation: dict) -> str:
    from pipeline.validation import tolerated

    text = f"validation: {validation['rows']:,} rows; every feature at or above its completeness floor"
    bad_rows = tolerated(validation)
    return text + (f"; tolerated (more empty cells than natural): {bad_rows}" if bad_rows else "")


def _format_drift(report: dict) -> str:
    if "baseline_span" not in report and not report["scores"]:
        return "drift: no earlier validated span to compare with"
    worst = {}
    for score in report["scores"]:
        key = score["feature"]
        if key not in worst or score["value"] / score["threshold"] > worst[key]["value"] / worst[key]["threshold"]:
            worst[key] = score
    flagged = [s for s in worst.values() if s["exceeded"]]
    head = f"drift vs span {report.get('baseline_span', '-')}: "
    if not flagged:
        return head + "every feature within its threshold"
    return head + f"OVER THRESHOLD (policy {report['policy']}): " + ", ".join(
        f"{s['feature']} {s['measure']}={s['value']:.3f}>{s['threshold']}" for s in flagged
    )


def format_summary(summary: RunSummary) -> str:
    lines = [""]
    summary_metrics = label_metrics.active().shown
    if summary.span is not None:
        fed = f" + feedback spans {summary.window_feedback_spans}" if summary.window_feedback_spans else ""
        lines.append(
            f"span ingested: {spans_io.label(summary.span, summary.span_source)}; training window: spans {summary.window_spans or '-'}{fed}"
        )
    if summary.schema_version is not None:
        lines.append(f"schema: {summary.schema_version}")
    if summary.validation is not None:
        lines.append(_format_validation(summary.validation))
    if summary.drift is not None:
        lines.append(_format_drift(summary.drift))
    if summary.hyperparameters is not None:
        values, source = hyperparameters_lib.describe(summary.hyperparameters)
        lines += [f"hyperparameters: {values}", f"  {source}"]
    if summary.evaluation:
        rows = [
            (name, [shown(m, values.get(m), values) for m in summary_metrics])
            for name, values in sorted(summary.evaluation.metrics.items(), key=lambda kv: slice_order(kv[0]))
        ]
        widths = [max([16, len(metric) + 1] + [len(cells[i]) + 2 for _, cells in rows]) for i, metric in enumerate(summary_metrics)]
        lines.append(f"{'slice':<28}" + "".join(f"{m:>{w}}" for m, w in zip(summary_metrics, widths)))
        lines.extend(f"{name:<28}" + "".join(f"{cell:>{w}}" for cell, w in zip(cells, widths)) for name, cells in rows)
        if summary.evaluation.baseline:
            overall = summary.evaluation.metrics.get(evaluation.OVERALL, {})
            base = ", ".join(f"{m}={shown(m, v, overall)}" for m, v in sorted(summary.evaluation.baseline.items()) if m in summary_metrics)
            which = f"version {summary.baseline_version}" if summary.baseline_version else "the model serving when it was evaluated"
            lines.append(f"baseline: {which}, overall: {base}")
        else:
            lines.append("baseline: none (nothing was serving)")
        if summary.evaluation.blessed:
            lines.append("blessed: yes, every gated threshold met")
            if summary.gate is not None:
                lines.extend(f"  {line}" for line in blessing_checks.explain(summary.evaluation, summary.thresholds, summary.gate))
        else:
            lines.append("blessed: NO")
            lines.extend(f"  - {reason}" for reason in summary.evaluation.failures)
        if summary.evaluation.not_gated:
            lines.append("not gated (blessing rule, docs/pipeline.md#blessing):")
            lines.extend(f"  - {note}" for note in summary.evaluation.not_gated)
        if summary.missing_metrics:
            lines.append(f"ERROR: threshold metrics missing from the evaluation: {sorted(summary.missing_metrics)}")
    if summary.infra_failure:
        lines.append(f"infra check: FAILED, not pushed: {summary.infra_failure}")
    elif summary.infra_checked:
        lines.append(f"infra check: passed ({summary.infra_checked} eval examples answered through the serving code)")
    lines.append(f"pushed: {summary.pushed_path}" if summary.pushed_path else "pushed: nothing")
    if summary.card_file:
        lines.append(f"model card: {summary.card_file}" + ("" if summary.pushed_path else " (of the candidate, not pushed)"))
    if summary.error:
        where = f" in {summary.failed_component}" if summary.failed_component else " before its first component"
        if summary.run_id is not None and not summary.failed_component:
            where = ""
        reason, *details = summary.error.splitlines()
        lines.append(f"INTERRUPTED{where}" if summary.interrupted else f"FAILED{where}: {reason}")
        lines.extend(f"  {line}" for line in details)
        lines.append(f"  (traceback in {summary.log_file})")
    lines.append(f"report: {summary.report_file}" if summary.report_file else "report: not written (see the log)")
    lines.append(f"total: {summary.seconds:.1f} s   run: {summary.run_id}   log: {summary.log_file}")
    return "\n".join(lines)
