"""Run the pipeline locally (LocalDagRunner; MLMD on SQLite or MySQL; Beam as configured) and summarise it."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from typing import TYPE_CHECKING

from pipeline import metadata
from pipeline.configs import PipelineConfig
from pipeline.progress import quiet_logs

if TYPE_CHECKING:  # importing pipeline.evaluation loads TensorFlow: only inside a run's quiet logs
    from pipeline.evaluation import Evaluation


@dataclass
class RunSummary:
    """What a run did, read back from MLMD after it ended."""

    run_id: str | None
    ok: bool
    seconds: float
    log_file: Path
    timings: list[tuple[str, str, float]]
    error: str | None = None
    failed_component: str | None = None
    span: int | None = None
    window_spans: list[int] = field(default_factory=list)
    evaluation: Evaluation | None = None
    missing_metrics: set[str] = field(default_factory=set)
    pushed_path: str | None = None

    @property
    def blessed(self) -> bool:
        return bool(self.evaluation and self.evaluation.blessed)


def run(config: PipelineConfig, verbose: bool = False) -> RunSummary:
    """Run one pipeline pass; never raises for a pipeline failure (see RunSummary.ok/error)."""
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
    log_file = config.logs_dir / f"run-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    connection = metadata.connection_config(config)
    started = time.monotonic()
    error = failed = None
    with quiet_logs(log_file, verbose) as progress:
        from tfx import v1 as tfx  # imported here so TensorFlow's start-up chatter goes to the log

        from pipeline.pipeline import create_pipeline

        try:
            tfx.orchestration.LocalDagRunner().run(create_pipeline(config, connection))
        except Exception as exc:  # a failed component: reported in the summary
            error, failed = f"{type(exc).__name__}: {exc}", progress.failed_component()
        summary = RunSummary(
            run_id=None,
            ok=error is None,
            seconds=time.monotonic() - started,
            log_file=log_file,
            timings=progress.timings,
            error=error,
            failed_component=failed,
        )
        _read_back(config, summary)
    return summary


def _read_back(config: PipelineConfig, summary: RunSummary) -> None:
    from pipeline import evaluation

    store = metadata.open_store(metadata.connection_config(config))
    summary.run_id = metadata.latest_run_id(store, config.pipeline_name)
    if summary.run_id is None:
        return
    nodes = metadata.run_executions(store, summary.run_id)
    if "CsvExampleGen" in nodes:
        examples = nodes["CsvExampleGen"].outputs.get("examples", [])
        if examples:
            summary.span = metadata.span_of(examples[0])
    if "Transform" in nodes:  # the window as Transform received it
        summary.window_spans = metadata.window_spans(nodes["Transform"].inputs.get("examples", []))
    if "Evaluator" in nodes and nodes["Evaluator"].outputs.get("evaluation"):
        uri = nodes["Evaluator"].outputs["evaluation"][0].uri
        summary.evaluation = evaluation.load_evaluation(uri)
        summary.missing_metrics = evaluation.missing_threshold_metrics(
            evaluation.eval_config(config), summary.evaluation
        )
    if "Pusher" in nodes and nodes["Pusher"].outputs.get("pushed_model"):
        pushed = nodes["Pusher"].outputs["pushed_model"][0]
        if pushed.custom_properties["pushed"].int_value == 1:
            summary.pushed_path = pushed.custom_properties["pushed_destination"].string_value


def _slice_order(name: str) -> tuple:
    """overall first, then by feature, numbers in numeric order."""
    from pipeline.evaluation import OVERALL

    if name == OVERALL:
        return (0, "", 0, "")
    feature, _, value = name.partition("=")
    return (1, feature, int(value) if value.lstrip("-").isdigit() else 0, value)


SUMMARY_METRICS = ("example_count", "binary_accuracy", "auc", "precision", "recall")


def format_summary(summary: RunSummary) -> str:
    lines = [""]
    if summary.span is not None:
        lines.append(f"span ingested: {summary.span}; training window: spans {summary.window_spans or '-'}")
    if summary.evaluation:
        lines.append(f"{'slice':<28}" + "".join(f"{m:>16}" for m in SUMMARY_METRICS))
        for name, values in sorted(summary.evaluation.metrics.items(), key=lambda kv: _slice_order(kv[0])):
            cells = "".join(
                f"{values[m]:>16.0f}" if m == "example_count" and m in values
                else f"{values[m]:>16.4f}" if m in values else f"{'-':>16}"
                for m in SUMMARY_METRICS
            )
            lines.append(f"{name:<28}{cells}")
        if summary.evaluation.baseline:
            base = ", ".join(f"{k}={v:.4f}" for k, v in sorted(summary.evaluation.baseline.items()) if k in SUMMARY_METRICS)
            lines.append(f"baseline (last blessed model), overall: {base}")
        else:
            lines.append("baseline: none (first blessed model candidate)")
        if summary.evaluation.blessed:
            lines.append("blessed: yes (every threshold met)")
        else:
            lines.append("blessed: NO")
            lines.extend(f"  - {reason}" for reason in summary.evaluation.failures)
        if summary.missing_metrics:
            lines.append(f"ERROR: threshold metrics missing from the evaluation: {sorted(summary.missing_metrics)}")
    lines.append(f"pushed: {summary.pushed_path}" if summary.pushed_path else "pushed: nothing")
    if summary.error:
        where = f" in {summary.failed_component}" if summary.failed_component else ""
        lines.append(f"FAILED{where}: {summary.error}")
    lines.append(f"total: {summary.seconds:.1f} s   run: {summary.run_id}   log: {summary.log_file}")
    return "\n".join(lines)
