"""`kubeflow_runner.py --submit`: the real kfp.Client / aiplatform.PipelineJob requests, no cloud.

No Kubeflow cluster or Vertex AI project is reachable here. The KFP request goes over real HTTP to
a recording stand-in for the KFP API on 127.0.0.1 (it answers the two calls a submission makes);
the Vertex job is built by aiplatform with anonymous credentials and inspected before sending.
"""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from conveyor import kubeflow
from pipeline import configs

ROOT = "gs://conveyor-bucket/prod"


@pytest.fixture(scope="module")
def spec_file(tmp_path_factory) -> tuple[configs.PipelineConfig, Path]:
    config = kubeflow.cluster_config(configs.load(remote_pipeline_root=ROOT, gcp_project="proj", gcp_region="us-central1"))
    output = tmp_path_factory.mktemp("submit") / "conveyor.yaml"
    kubeflow.compile_spec(config, "registry.example/conveyor:1", output)
    return config, output


class _RecordingKfpApi(BaseHTTPRequestHandler):
    """Answers KFP v2beta1's list/create experiment and create run; records every request."""

    requests: list[tuple[str, str, dict]] = []

    def _reply(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        self.requests.append(("GET", self.path, {}))
        self._reply({})  # no experiment of that name yet

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.requests.append(("POST", self.path, body))
        if self.path.startswith("/apis/v2beta1/experiments"):
            self._reply({"experiment_id": "exp-1", "display_name": body["display_name"]})
        else:
            self._reply({"run_id": "run-1", "display_name": body["display_name"], "experiment_id": body["experiment_id"]})

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def kfp_api():
    _RecordingKfpApi.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _RecordingKfpApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", _RecordingKfpApi.requests
    finally:
        server.shutdown()
        server.server_close()


def test_kfp_submission_sends_the_compiled_spec(spec_file, kfp_api):
    config, output = spec_file
    endpoint, requests = kfp_api
    run_id = kubeflow.submit_kfp(output, config, endpoint, experiment="conveyor-prod")
    assert run_id == "run-1"
    posts = [(path, body) for method, path, body in requests if method == "POST"]
    assert posts[0][0] == "/apis/v2beta1/experiments" and posts[0][1]["display_name"] == "conveyor-prod"
    path, run = posts[1]
    assert path == "/apis/v2beta1/runs"
    assert run["experiment_id"] == "exp-1" and run["display_name"] == config.pipeline_name
    assert run["pipeline_spec"] == yaml.safe_load(output.read_text())


def test_kfp_submission_without_an_endpoint_says_what_is_missing(spec_file, monkeypatch):
    config, output = spec_file
    monkeypatch.delenv("KF_PIPELINES_ENDPOINT", raising=False)
    with pytest.raises(kubeflow.SubmitError, match="needs --endpoint"):
        kubeflow.submit_kfp(output, config, None, experiment="conveyor")


def test_kfp_submission_to_a_closed_port_says_it_cannot_reach_the_api(spec_file):
    import socket

    config, output = spec_file
    with socket.socket() as probe:  # a free port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
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
