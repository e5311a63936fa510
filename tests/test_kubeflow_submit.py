"""`kubeflow_runner.py --submit`: the real kfp.Client / aiplatform.PipelineJob requests, no cloud.

No Kubeflow cluster or Vertex AI project is reachable here. The KFP request goes over real HTTP to
a recording stand-in for the KFP API on 127.0.0.1 (it answers the two calls a submission makes);
the Vertex job is built by aiplatform with anonymous credentials and inspected before sending.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from conveyor.kubeflow import compiler as kubeflow
from pipeline import configs
from tests import sockets
from tests.kfp_standin import KfpStandIn

ROOT = "gs://conveyor-bucket/prod"


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory) -> tuple[configs.PipelineConfig, Path]:
    config = kubeflow.cluster_config(
        configs.load(remote_pipeline_root=ROOT, gcp_project="proj", gcp_region="us-central1", span=4), "kfp"
    )
    output = tmp_path_factory.mktemp("submit") / "conveyor.yaml"
    kubeflow.compile_spec(config, "registry.example/conveyor:1", output)
    return config, output


@pytest.fixture
def kfp_api():
    with KfpStandIn() as api:
        yield api


def test_kfp_submission_sends_the_compiled_spec_and_the_pipeline_root(spec_file, kfp_api):
    config, output = spec_file
    run_id = kubeflow.submit_kfp(output, config, kfp_api.endpoint, experiment="conveyor-prod")
    assert run_id == "run-1"
    posts = kfp_api.posts()
    assert posts[0][0] == "/apis/v2beta1/experiments" and posts[0][1]["display_name"] == "conveyor-prod"
    path, run = posts[1]
    assert path == "/apis/v2beta1/runs"
    assert run["experiment_id"] == "exp-1" and run["display_name"] == config.pipeline_name
    assert run["pipeline_spec"] == yaml.safe_load(output.read_text())
    # The spec holds no pipeline root: without this KFP would write artifacts to its own default store.
    assert run["runtime_config"]["pipeline_root"] == ROOT


def test_kfp_submission_without_an_endpoint_says_what_is_missing(spec_file, monkeypatch):
    config, output = spec_file
    monkeypatch.delenv("KF_PIPELINES_ENDPOINT", raising=False)
    with pytest.raises(kubeflow.SubmitError, match="needs --endpoint"):
        kubeflow.submit_kfp(output, config, None, experiment="conveyor")


def test_kfp_submission_to_a_closed_port_says_it_cannot_reach_the_api(spec_file):
    config, output = spec_file
    port = sockets.free_port()
    with pytest.raises(kubeflow.SubmitError, match=f"cannot reach the KFP API at http://127.0.0.1:{port}"):
        kubeflow.submit_kfp(output, config, f"http://127.0.0.1:{port}", experiment="conveyor")


def test_vertex_job_carries_the_spec_root_and_project(spec_file):
    from google.auth.credentials import AnonymousCredentials

    config, output = spec_file
    job = kubeflow.vertex_job(output, config, credentials=AnonymousCredentials())
    request = job.to_dict()
    assert request["pipelineSpec"]["root"] == yaml.safe_load(output.read_text())["root"]
    assert request["runtimeConfig"]["gcsOutputDirectory"] == ROOT
    assert job.project == "proj" and job.location == "us-central1"


def test_vertex_submission_without_credentials_says_how_to_get_them(spec_file, monkeypatch, tmp_path):
    config, output = spec_file
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))  # no gcloud application-default login here
    monkeypatch.setenv("NO_GCE_CHECK", "True")  # do not probe a GCE metadata server
    with pytest.raises(kubeflow.SubmitError, match="no Google Cloud credentials"):
        kubeflow.submit_vertex(output, config, service_account=None)


def test_vertex_submission_without_a_project_says_what_is_missing(spec_file):
    config, output = spec_file
    with pytest.raises(kubeflow.SubmitError, match="--gcp-project and --gcp-region"):
        kubeflow.vertex_job(output, config.replace(gcp_project=""), credentials=None)
