"""`conveyor kubeflow --target kfp|vertex --check-locally`: execute the compiled spec here before deploying.

For each span under the spans root, in order, the span is copied into a directory standing in for
the bucket (`<check dir>/bucket/conveyor/spans`, where the cluster reads data by default), the
spec is compiled as for the target, and every task is executed through TFX's container
entrypoint, one process per task (conveyor/kubeflow/spec_harness.py), each forked from one warm
interpreter shared by all executions of the check (conveyor/kubeflow/warm_start.py). Then the last spec is
executed again with nothing changed.

What differs from the spec you deploy, and only this: the bucket is a local directory, the files
the image holds (schema, setup.py) are this checkout's, Beam is the in_memory FnApiRunner, and
the container's `python` is this one, forked from a warm interpreter. For kfp one spec is compiled
per span, with the span fixed (as conveyor/kubeflow/cluster_runs.py submits runs); for vertex one spec
serves every span, the newest one being resolved at run time by the ExampleGen driver hook, which
the harness runs as Vertex does. With `tune`, the last span is then run with the tuning spec (TFX's
Tuner before the Trainer), and that spec is the one executed again unchanged.

The check passes when every execution succeeds, the newest span ends with a blessed model pushed
and published (its PUSH.json written by Publish), every span after the first has its drift scored
against the span before it, and the unchanged execution is served entirely from the cache and
pushes nothing; a tuned execution must record its search and train with its choice.
`check.json` in the check directory records every task's status and outputs.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from conveyor.kubeflow import compiler as kubeflow
from conveyor.kubeflow import spec_harness, warm_start
from data import spans_io
from pipeline import configs, versions

RESULT_FILE = "check.json"


@dataclass
class CheckResult:
    check_dir: Path
    executions: list[tuple[str, spec_harness.Execution]] = field(default_factory=list)  # (what, execution)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check_config(config: configs.PipelineConfig, bucket: Path) -> configs.PipelineConfig:
    """`config` in the compiled form, with the bucket, the image's files and Beam made local."""
    local = dataclasses.replace(
        config,
        remote_pipeline_root=None,
        remote_serving_root=None,
        remote_spans_root=None,
        remote_schema=None,
        beam_mode="in_memory",
        beam_extra_args=(),
        beam_setup_file=None,
        span=None,
    )
    return kubeflow.stores_form(local, str(bucket / "conveyor"), app_dir=str(configs.REPO_ROOT))


def pushed_version(execution: spec_harness.Execution) -> str | None:
    meta = execution.metadata("Pusher", "pushed_model")
    return str(meta["pushed_version"]) if meta.get("pushed") == 1 else None


def blessed(execution: spec_harness.Execution) -> bool:
    return execution.metadata("Evaluator", "blessing").get("blessed") == 1


def drift(execution: spec_harness.Execution) -> dict:
    """DataGate's drift report (pipeline/drift.py to_json) and the span it was scored against."""
    from pipeline.components.data_gate import REPORT_FILE

    output = execution.task("DataGate").outputs["drift_report"]
    report = json.loads(Path(output["uri"], REPORT_FILE).read_text())
    baseline = output.get("metadata", {}).get("baseline_span")
    report["baseline_span"] = int(baseline) if baseline is not None else None
    return report


def describe(execution: spec_harness.Execution) -> str:
    if not execution.ok:
        failed = execution.failed
        return f"  -> FAILED at {failed.task}: {failed.error}\n     log: {failed.log}"
    if all(t.status == spec_harness.CACHED for t in execution.tasks):
        return f"  -> all {len(execution.tasks)} tasks cached"
    report = drift(execution)
    scored = (
        f"drift vs span {report['baseline_span']}: {len(report['scores'])} scores, "
        f"over threshold: {', '.join(report['exceeded']) or 'none'}"
        if report["baseline_span"] is not None
        else "drift: no earlier span to compare with"
    )
    window = execution.metadata("span_window", "examples").get("window_spans", "?")
    version = pushed_version(execution)
    return (
        f"  -> trained on spans {window}; blessed: {'yes' if blessed(execution) else 'NO'}; "
        f"pushed: {version or 'nothing'}; {scored}"
    )


def run(
    config: configs.PipelineConfig,
    target: str,
    image: str,
    check_dir: Path,
    out: Callable[[str], None] = functools.partial(print, flush=True),
    tune: bool = False,
) -> CheckResult:
    """Execute the spec for every span of `config.spans_root` (with `tune`, the last one once more
    with the tuning spec), then the last execution again unchanged."""
    spans = spans_io.existing_spans(config.spans_root)
    if not spans:
        raise ValueError(spans_io.no_spans(config.spans_root))
    if check_dir.exists() and any(check_dir.iterdir()):
        raise ValueError(f"--check-dir {check_dir} is not empty: the check needs a fresh directory")
    bucket, state = check_dir / "bucket", check_dir / "orchestrator"
    cluster = check_config(config, bucket)
    result = CheckResult(check_dir)
    out(
        f"conveyor kubeflow: checking the {target} spec locally in {check_dir}: spans {spans} one run each, "
        "then the last run again unchanged (Beam in_memory; the bucket is a local directory)"
    )
    with spec_harness.task_starter(state) as starter:
        for span in spans:
            shutil.copytree(spans_io.span_dir(config.spans_root, span), spans_io.span_dir(Path(cluster.spans_root_uri), span))
            compiled = cluster.replace(span=span) if target == "kfp" else cluster
            kubeflow.check_target(compiled, target)
            spec_path = state / "specs" / (f"span-{span}.yaml" if target == "kfp" else "spec.yaml")
            spec = kubeflow.compile_spec(compiled, image, spec_path)
            _execute(result, f"span {span}", spec, cluster, target, state, starter, out)
            if not result.ok:
                return _finish(result, check_dir, out)
        if tune:
            spec = kubeflow.compile_spec(compiled.replace(tune=True), image, state / "specs" / f"tune-span-{spans[-1]}.yaml")
            _execute(result, f"span {spans[-1]} tuned", spec, cluster, target, state, starter, out)
            if not result.ok:
                return _finish(result, check_dir, out)
        if not cluster.enable_cache:
            out("caching is off (--no-cache): no unchanged execution to check")
            return _finish(result, check_dir, out)
        before = versions.ready_versions(cluster.serving_root_uri)
        _execute(result, f"span {spans[-1]} again, unchanged", spec, cluster, target, state, starter, out)
    _judge(result, spans, before, versions.ready_versions(cluster.serving_root_uri), tune)
    return _finish(result, check_dir, out)


def _finish(result: CheckResult, check_dir: Path, out: Callable[[str], None]) -> CheckResult:
    (check_dir / RESULT_FILE).write_text(json.dumps(_record(result), indent=2, default=str))
    out("check passed" if result.ok else "check FAILED:\n" + "\n".join(f"  - {p}" for p in result.problems))
    return result


def _execute(
    result: CheckResult,
    what: str,
    spec: dict,
    cluster: configs.PipelineConfig,
    target: str,
    state: Path,
    starter: warm_start.TaskStarter,
    out: Callable[[str], None],
) -> None:
    out(f"run {len(result.executions) + 1}: {what}")
    execution = spec_harness.execute(
        spec,
        cluster.pipeline_root_uri,
        target,
        state,
        run_id=f"check-{len(result.executions) + 1}",
        on_task=lambda t: out(f"  {t.task:<22} {t.status:<7} {t.seconds:6.1f} s"),
        starter=starter,
    )
    result.executions.append((what, execution))
    out(describe(execution))
    if not execution.ok:
        result.problems.append(f"{what}: {execution.failed.task} failed: {execution.failed.error.splitlines()[0]}")


def _judge_tuning(result: CheckResult, what: str, execution: spec_harness.Execution) -> None:
    """The tuned execution recorded its search and trained with its choice."""
    from metadata.hyperparameters import format_value
    from pipeline.artifact_properties import HYPERPARAMETERS_PROPERTY, TRIALS_PROPERTY, TUNED_VALUES_PROPERTY

    best = execution.metadata("Tuner", "best_hyperparameters")
    if not best.get(TRIALS_PROPERTY):
        result.problems.append(f"{what}: the Tuner recorded no trial")
        return
    tuned = json.loads(best[TUNED_VALUES_PROPERTY])
    trained = json.loads(execution.metadata("Trainer", "model").get(HYPERPARAMETERS_PROPERTY, "{}"))
    if any(format_value(trained.get(name)) != format_value(value) for name, value in tuned.items()):
        result.problems.append(f"{what}: the Trainer trained with {trained}, not the Tuner's choice {tuned}")


def _judge(result: CheckResult, spans: list[int], before: list[str], after: list[str], tune: bool = False) -> None:
    *new_spans, (_, unchanged) = result.executions
    if tune:
        _judge_tuning(result, *new_spans.pop())
    for (what, execution), previous in zip(new_spans[1:], spans):
        baseline = drift(execution)["baseline_span"]
        if baseline != previous:
            result.problems.append(f"{what}: drift scored against {baseline}, not against span {previous}")
    last_what, last = new_spans[-1]
    if not (blessed(last) and pushed_version(last)):
        result.problems.append(f"{last_what}: ended without a blessed, pushed model")
    elif pushed_version(last) not in after:
        result.problems.append(f"{last_what}: staged version {pushed_version(last)} but Publish did not make it ready (no {versions.RECORD_FILE})")
    ran = [t.task for t in unchanged.tasks if t.status != spec_harness.CACHED]
    if ran:
        result.problems.append(f"the unchanged execution ran {', '.join(ran)} instead of using the cache")
    if after != before:
        result.problems.append(f"the unchanged execution pushed {sorted(set(after) - set(before))}")


def _record(result: CheckResult) -> dict:
    return {
        "ok": result.ok,
        "problems": result.problems,
        "executions": [
            {"what": what, "run_id": e.run_id, "target": e.target, "tasks": [dataclasses.asdict(t) for t in e.tasks]}
            for what, e in result.executions
        ],
    }
