"""Runs on a cluster for CT (conveyor/kubeflow/cluster_runs.py): submit for a span with its trigger, poll the state.

KFP over real HTTP to the recording stand-in on 127.0.0.1 (tests/kfp_standin.py); Vertex through
aiplatform's own request and resource types, with anonymous credentials (nothing is sent).
"""
from __future__ import annotations

import json
import re

import pytest
import yaml

from conveyor.kubeflow import cluster_runs
from conveyor.kubeflow import compiler as kubeflow
from pipeline import configs
from tests.kfp_standin import KfpStandIn

ROOT = "gs://conveyor-bucket/prod"
IMAGE = "registry.example/conveyor:1"


@pytest.fixture
def config() -> configs.PipelineConfig:
    return configs.load(remote_pipeline_root=ROOT, gcp_project="proj", gcp_region="us-central1")


@pytest.fixture
def kfp_api():
    with KfpStandIn() as api:
        yield api


@pytest.fixture
def submitted(config, kfp_api, tmp_path) -> cluster_runs.SubmittedRun:
    return cluster_runs.submit(
        config, span=3, trigger="new_data", target="kfp", image=IMAGE, spec_dir=tmp_path, endpoint=kfp_api.endpoint
    )


def test_a_kfp_submission_compiles_the_span_in_and_names_the_run_after_span_and_trigger(submitted, kfp_api):
    (_, _experiment), (path, run) = kfp_api.posts()
    assert path == "/apis/v2beta1/runs" and run["experiment_id"] == "exp-1"
    assert run["display_name"] == submitted.run_name
    assert submitted.run_name.startswith("conveyor-taxi-span-3-new_data-")
    assert submitted.run_id == "run-1" and submitted.span == 3 and submitted.trigger == "new_data"
    spec = yaml.safe_load(open(submitted.spec_path))
    assert run["pipeline_spec"] == spec
    ranges = json.loads(spec["root"]["dag"]["tasks"]["CsvExampleGen"]["inputs"]["parameters"]["range_config"]["runtimeValue"]["constant"])
    assert ranges["static_range"] == {"start_span_number": 3, "end_span_number": 3}
    assert run["runtime_config"]["pipeline_root"] == ROOT
    assert submitted.tasks == tuple(sorted(spec["root"]["dag"]["tasks"]))
    assert json.loads(json.dumps(submitted.to_json()))["run_id"] == "run-1"  # storable as JSON


def test_a_submission_with_the_placeholder_image_or_bucket_is_refused_before_compiling(config, kfp_api, tmp_path):
    """CT submits what it is given: the documented placeholders must never reach a cluster."""
    refused = [
        (config, kubeflow.PLACEHOLDER_IMAGE, f"--image {kubeflow.PLACEHOLDER_IMAGE}"),
        (config.replace(remote_pipeline_root=kubeflow.PLACEHOLDER_ROOT), IMAGE, f"--pipeline-root {kubeflow.PLACEHOLDER_ROOT}"),
    ]
    for given, image, named in refused:
        with pytest.raises(kubeflow.SubmitError, match=f"needs real values for the placeholders {re.escape(named)}$"):
            cluster_runs.submit(given, span=3, trigger="new_data", target="kfp", image=image, spec_dir=tmp_path, endpoint=kfp_api.endpoint)
    assert kfp_api.posts() == [] and list(tmp_path.iterdir()) == []


def test_polling_reports_a_running_run_then_its_success(submitted, config, kfp_api):
    running = cluster_runs.state(submitted, config, endpoint=kfp_api.endpoint)
    assert (running.state, running.done, running.succeeded) == ("RUNNING", False, False)
    kfp_api.finish(submitted.run_id, "SUCCEEDED", tasks={"CsvExampleGen": "SKIPPED", "Trainer": "SUCCEEDED", "root": "SUCCEEDED"})
    finished = cluster_runs.state(submitted, config, endpoint=kfp_api.endpoint)
    assert (finished.done, finished.succeeded, finished.failed_task, finished.blocked) == (True, True, None, False)
    assert finished.tasks == (("CsvExampleGen", "SKIPPED"), ("Trainer", "SUCCEEDED"))  # the spec's tasks only
    assert ("GET", f"/apis/v2beta1/runs/{submitted.run_id}", {}) in kfp_api.requests


def test_polling_names_the_failed_task_and_a_span_blocked_at_the_gate(submitted, config, kfp_api):
    kfp_api.finish(submitted.run_id, "FAILED", failed_task="DataGate", error="DataValidationError: span 3 blocked")
    found = cluster_runs.state(submitted, config, endpoint=kfp_api.endpoint)
    assert (found.done, found.succeeded, found.failed_task, found.blocked) == (True, False, "DataGate", True)
    assert found.error == "DataValidationError: span 3 blocked"
    kfp_api.finish(submitted.run_id, "FAILED", failed_task="Trainer", error="OOMKilled")
    crashed = cluster_runs.state(submitted, config, endpoint=kfp_api.endpoint)
    assert (crashed.failed_task, crashed.blocked, crashed.error) == ("Trainer", False, "OOMKilled")


def test_polling_a_run_the_api_does_not_know_says_so(submitted, config, kfp_api):
    unknown = cluster_runs.SubmittedRun(**{**submitted.to_json(), "run_id": "run-404"})
    with pytest.raises(kubeflow.SubmitError, match="refused to show run run-404: 404"):
        cluster_runs.state(unknown, config, endpoint=kfp_api.endpoint)


def test_a_vertex_job_carries_span_and_trigger_as_labels(config, tmp_path):
    from google.auth.credentials import AnonymousCredentials

    cluster = kubeflow.cluster_config(config.replace(span=5), "vertex")
    spec_path = tmp_path / "spec.yaml"
    kubeflow.compile_spec(cluster, IMAGE, spec_path)
    labels = cluster_runs.run_labels(cluster, 5, "performance+drift")
    assert labels == {"conveyor-pipeline": "conveyor-taxi", "conveyor-span": "5", "conveyor-trigger": "performance-drift"}
    name = cluster_runs.run_name(cluster, 5, "performance+drift", 0)
    job = kubeflow.vertex_job(spec_path, cluster, AnonymousCredentials(), display_name=name, labels=labels).to_dict()
    assert job["labels"] == labels and job["displayName"] == "conveyor-taxi-span-5-performance+drift-19700101T000000Z"
    feedback = cluster.replace(span_source="feedback")  # a feedback span is named as one, never as upstream span 2
    assert cluster_runs.run_labels(feedback, 2, "performance")["conveyor-span"] == "feedback-2"
    assert cluster_runs.run_name(feedback, 2, "performance", 0) == "conveyor-taxi-span-feedback-2-performance-19700101T000000Z"


def test_a_vertex_job_state_is_read_from_its_resource(submitted):
    from google.cloud.aiplatform.compat.types import pipeline_job, pipeline_state
    from google.rpc import status_pb2

    vertex_run = cluster_runs.SubmittedRun(**{**submitted.to_json(), "target": "vertex", "run_id": "projects/p/jobs/j"})
    failed_task = pipeline_job.PipelineTaskDetail(
        task_name="DataGate", state=pipeline_job.PipelineTaskDetail.State.FAILED, error=status_pb2.Status(message="blocked")
    )
    job = pipeline_job.PipelineJob(
        state=pipeline_state.PipelineState.PIPELINE_STATE_FAILED,
        job_detail=pipeline_job.PipelineJobDetail(task_details=[failed_task]),
        error=status_pb2.Status(message="the pipeline failed"),
    )
    found = cluster_runs.vertex_state_of(vertex_run, job)
    assert (found.state, found.done, found.succeeded, found.blocked, found.error) == (
        "PIPELINE_STATE_FAILED", True, False, True, "blocked"
    )
    assert found.tasks == (("DataGate", "FAILED"),)
    running = cluster_runs.vertex_state_of(vertex_run, pipeline_job.PipelineJob(state=pipeline_state.PipelineState.PIPELINE_STATE_RUNNING))
    assert (running.done, running.failed_task, running.error) == (False, None, None)
