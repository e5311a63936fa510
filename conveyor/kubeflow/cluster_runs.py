"""Runs on a cluster for continuous training: submit the compiled pipeline for a span, poll its state.

`submit` compiles the spec for one span (fixed at compile time, as open-source KFP needs: see
conveyor/kubeflow/compiler.py, KFP_NEEDS_SPAN) and sends it to Kubeflow Pipelines or Vertex AI with what
launched it recorded where each orchestrator keeps it:
  - the run's name, on both: `<pipeline>-span-<N>-<trigger>-<UTC time>` (`span-feedback-<N>` for a
    feedback span);
  - labels, on Vertex (`conveyor-pipeline`, `conveyor-span`, `conveyor-trigger`); KFP runs have none;
  - no run parameters: the spec has no RuntimeParameter (see conveyor/kubeflow/compiler.py), the span is
    compiled in, and the trigger is deliberately not a pipeline input, so that it never changes a
    task's cache key (an on-demand re-run of an unchanged span stays cached).
It returns a SubmittedRun at once; the outcome is known only later, from `state(run, ...)`, which
reads the orchestrator's state of the run and, when a task failed, which one (DataGate failing
means the span was blocked).
"""
from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from conveyor.kubeflow import compiler as kubeflow
from data.spans_io import label
from pipeline.configs import PipelineConfig

DATA_GATE_TASK = "DataGate"
# Terminal states, by the orchestrator's own names.
KFP_DONE = {"SUCCEEDED": True, "SKIPPED": False, "FAILED": False, "CANCELED": False}
VERTEX_DONE = {"PIPELINE_STATE_SUCCEEDED": True, "PIPELINE_STATE_FAILED": False, "PIPELINE_STATE_CANCELLED": False}


@dataclass(frozen=True)
class SubmittedRun:
    """A run sent to a cluster; everything needed to poll it and to recognise it later."""

    target: str  # kfp | vertex
    run_id: str  # KFP run id, or the Vertex PipelineJob resource name
    run_name: str
    span: int
    trigger: str
    labels: dict[str, str]
    submitted_at: float
    spec_path: str
    tasks: tuple[str, ...]  # the compiled spec's task names

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class RunState:
    """A submitted run as the orchestrator reports it now."""

    run_id: str
    state: str  # the orchestrator's word: RUNNING, SUCCEEDED, PIPELINE_STATE_FAILED, ...
    done: bool
    succeeded: bool  # done and nothing failed
    failed_task: str | None = None
    error: str | None = None
    tasks: tuple[tuple[str, str], ...] = ()  # (task, the orchestrator's state of it), the spec's tasks only

    @property
    def blocked(self) -> bool:
        """The run stopped at DataGate: the span did not pass validation (or drift policy "block")."""
        return self.failed_task == DATA_GATE_TASK


def run_name(config: PipelineConfig, span: int, trigger: str, when: float) -> str:
    """`<pipeline>-span-<N>-<trigger>-<UTC time>`; a feedback span is named `span-feedback-<N>`."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(when))
    return f"{config.pipeline_name}-span-{label(span, config.span_source)}-{trigger}-{stamp}"


def _label_value(text: str) -> str:
    """A Vertex label value: lowercase letters, digits, '_' and '-', at most 63 characters."""
    return re.sub(r"[^a-z0-9_-]", "-", text.lower())[:63]


def run_labels(config: PipelineConfig, span: int, trigger: str) -> dict[str, str]:
    return {
        "conveyor-pipeline": _label_value(config.pipeline_name),
        "conveyor-span": _label_value(label(span, config.span_source)),
        "conveyor-trigger": _label_value(trigger),
    }


def submit(
    config: PipelineConfig,
    span: int,
    trigger: str,
    target: str,
    image: str,
    spec_dir: Path,
    endpoint: str | None = None,
    experiment: str = "conveyor",
    service_account: str | None = None,
    when: float | None = None,
    sent_as: str | None = None,
) -> SubmittedRun:
    """Compile the pipeline for `span` into `spec_dir` and submit it to `target`; raises
    kubeflow.SubmitError (not sent: a placeholder image or bucket, no endpoint or project) or
    ValueError (a setting the target cannot run). `when` (default now) names the run, so `find`
    can tell whether a run of that name was sent; `sent_as` is the id of such a run: the spec is
    compiled and nothing is sent."""
    cluster = kubeflow.cluster_config(config.replace(span=span), target)
    problems = kubeflow.submit_problems(cluster, target, image, endpoint)
    if problems:
        raise kubeflow.SubmitError("; ".join(problems))
    now = time.time() if when is None else when
    name, labels = run_name(cluster, span, trigger, now), run_labels(cluster, span, trigger)
    spec_path = Path(spec_dir) / f"{name}.yaml"
    spec = kubeflow.compile_spec(cluster, image, spec_path)
    if sent_as is not None:
        run_id = sent_as
    elif target == "kfp":
        run_id = kubeflow.submit_kfp(spec_path, cluster, endpoint, experiment, run_name=name)
    else:
        run_id = kubeflow.submit_vertex(spec_path, cluster, service_account, display_name=name, labels=labels)
    return SubmittedRun(
        target=target,
        run_id=run_id,
        run_name=name,
        span=span,
        trigger=trigger,
        labels=labels if target == "vertex" else {},
        submitted_at=now,
        spec_path=str(spec_path),
        tasks=tuple(sorted(spec["root"]["dag"]["tasks"])),
    )


def find(
    config: PipelineConfig, span: int, trigger: str, target: str, when: float, endpoint: str | None = None, credentials: Any = None
) -> str | None:
    """The id of the run `submit(..., when=when)` sent for `span` and `trigger`, if the orchestrator
    has a run of that name (None: it was never sent); kubeflow.SubmitError if it cannot be asked."""
    cluster = kubeflow.cluster_config(config.replace(span=span), target)
    name = run_name(cluster, span, trigger, when)
    found = _kfp_find(name, endpoint) if target == "kfp" else _vertex_find(name, cluster, credentials)
    return found[0] if found else None


def _kfp_find(name: str, endpoint: str | None) -> list[str]:
    import json

    import kfp
    import kfp_server_api
    import urllib3

    if not endpoint:
        raise kubeflow.SubmitError("looking for a KFP run needs --endpoint: the URL of the Kubeflow Pipelines API")
    by_name = json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]})
    try:
        listed = kfp.Client(host=endpoint).list_runs(filter=by_name, page_size=10)
    except kfp_server_api.ApiException as exc:
        raise kubeflow.SubmitError(f"the KFP API at {endpoint} refused to list runs: {exc.status} {exc.reason}") from exc
    except urllib3.exceptions.HTTPError as exc:
        raise kubeflow.SubmitError(f"cannot reach the KFP API at {endpoint}: {exc}") from exc
    return [run.run_id for run in listed.runs or [] if run.display_name == name]


def _vertex_find(name: str, config: PipelineConfig, credentials: Any) -> list[str]:
    from google.api_core import exceptions
    from google.cloud import aiplatform

    try:
        jobs = aiplatform.PipelineJob.list(
            filter=f'display_name="{name}"', project=config.gcp_project, location=config.gcp_region, credentials=credentials
        )
    except exceptions.GoogleAPIError as exc:
        raise kubeflow.SubmitError(f"Vertex AI cannot list pipeline jobs: {exc}") from exc
    return [job.resource_name for job in jobs if job.display_name == name]


def state(run: SubmittedRun, config: PipelineConfig, endpoint: str | None = None, credentials: Any = None) -> RunState:
    """What the orchestrator says about `run` now (KFP: `endpoint`; Vertex: the config's project
    and region, Application Default Credentials unless `credentials`)."""
    if run.target == "kfp":
        return _kfp_state(run, endpoint)
    return _vertex_state(run, config, credentials)


def _kfp_state(run: SubmittedRun, endpoint: str | None) -> RunState:
    import kfp
    import kfp_server_api
    import urllib3

    if not endpoint:
        raise kubeflow.SubmitError("polling a KFP run needs --endpoint: the URL of the Kubeflow Pipelines API")
    try:
        found = kfp.Client(host=endpoint).get_run(run.run_id)
    except kfp_server_api.ApiException as exc:
        raise kubeflow.SubmitError(f"the KFP API at {endpoint} refused to show run {run.run_id}: {exc.status} {exc.reason}") from exc
    except urllib3.exceptions.HTTPError as exc:
        raise kubeflow.SubmitError(f"cannot reach the KFP API at {endpoint}: {exc}") from exc
    details = found.run_details.task_details if found.run_details and found.run_details.task_details else []
    failed = [(t.display_name, t.error.message if t.error else None) for t in details if t.state == "FAILED"]
    run_error = found.error.message if found.error else None
    tasks = [(t.display_name, str(t.state)) for t in details]
    return _state(run, str(found.state), KFP_DONE, failed, run_error, tasks)


def vertex_state_of(run: SubmittedRun, job: Any) -> RunState:
    """RunState of a Vertex PipelineJob resource (aiplatform's `gca_resource`)."""
    failed = [
        (t.task_name, t.error.message or None)
        for t in job.job_detail.task_details
        if t.state.name == "FAILED"
    ]
    tasks = [(t.task_name, t.state.name) for t in job.job_detail.task_details]
    return _state(run, job.state.name, VERTEX_DONE, failed, job.error.message or None, tasks)


def _vertex_state(run: SubmittedRun, config: PipelineConfig, credentials: Any) -> RunState:
    from google.api_core import exceptions
    from google.cloud import aiplatform

    try:
        job = aiplatform.PipelineJob.get(
            run.run_id, project=config.gcp_project, location=config.gcp_region, credentials=credentials
        )
    except exceptions.GoogleAPIError as exc:
        raise kubeflow.SubmitError(f"Vertex AI cannot show pipeline job {run.run_id}: {exc}") from exc
    return vertex_state_of(run, job.gca_resource)


def _state(
    run: SubmittedRun,
    word: str,
    terminal: dict[str, bool],
    failed: list[tuple[str, str | None]],
    error: str | None,
    tasks: list[tuple[str, str]],
) -> RunState:
    ours = [(task, message) for task, message in failed if task in run.tasks]
    task, message = ours[0] if ours else (None, None)
    return RunState(
        run_id=run.run_id,
        state=word,
        done=word in terminal,
        succeeded=terminal.get(word, False),
        failed_task=task,
        error=message or error,
        tasks=tuple((name, state) for name, state in tasks if name in run.tasks),
    )
