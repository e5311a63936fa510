"""deploy/*.yaml (not appliable here: no cluster) against the code they run.

The server manifest's command is parsed by Conveyor's own CLI; its port, mounts and probe paths are
matched to the server's configuration; and the server itself, started as `conveyor serve` with the
manifest's arguments (home and host made local), answers the probes as Kubernetes expects: not
ready while nothing is pushed, ready once a published version appears (not before its push
record), alive throughout.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from conveyor.cli import ct, dispatch, serve
from conveyor.kubeflow import compiler as kubeflow
from pipeline import configs, versions

DEPLOY = configs.REPO_ROOT / "deploy"
IMAGE_PLACEHOLDER = "REGISTRY/conveyor:TAG"
BUCKET_HOME = "gs://BUCKET/conveyor"  # the cluster home: the pipeline root, holding serving_model/, request_log/, ...


def _documents(name: str) -> dict[str, dict]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all((DEPLOY / name).read_text())}


SERVING = _documents("serving.yaml")
POD = SERVING["Deployment"]["spec"]["template"]
CONTAINERS = {c["name"]: c for c in POD["spec"]["containers"]}
SERVER = CONTAINERS["server"]


def _serve_args() -> argparse.Namespace:
    assert SERVER["command"] == ["conveyor"]
    return dispatch.build_parser().parse_args(SERVER["args"])


def _mounts(container: dict) -> dict[str, str]:
    return {m["name"]: m["mountPath"] for m in container["volumeMounts"]}


def test_the_server_container_runs_conveyor_serve_on_the_declared_port():
    args = _serve_args()
    assert args.func is serve.serve
    port, grpc_port = SERVER["ports"]
    assert port["containerPort"] == args.port == configs.PipelineConfig().serving_port
    assert grpc_port["containerPort"] == args.grpc_port == 8500  # TF Serving's gRPC port
    assert args.host == "0.0.0.0"  # reachable from the Service, not only the pod's loopback
    for service_port, container_port in zip(SERVING["Service"]["spec"]["ports"], (port, grpc_port), strict=True):
        assert service_port["targetPort"] == container_port["name"] and service_port["port"] == container_port["containerPort"]
    assert SERVING["Service"]["spec"]["selector"].items() <= POD["metadata"]["labels"].items()
    assert SERVING["Deployment"]["spec"]["selector"]["matchLabels"].items() <= POD["metadata"]["labels"].items()
    assert {c["image"] for c in POD["spec"]["containers"] if c["name"] == "server"} == {IMAGE_PLACEHOLDER}


def test_the_probes_are_the_server_s_readiness_and_liveness_endpoints():
    assert SERVER["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert SERVER["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}


def test_pushed_models_come_read_only_from_the_serving_root_the_pipeline_pushes_to():
    config = configs.load(home=_serve_args().home)
    assert _mounts(SERVER)["models"] == str(config.serving_root)
    (models,) = [v for v in POD["spec"]["volumes"] if v["name"] == "models"]
    assert models["csi"]["driver"] == "gcsfuse.csi.storage.gke.io" and models["csi"]["readOnly"] is True
    attributes = models["csi"]["volumeAttributes"]
    only_dir = re.search(r"only-dir=([^,]+)", attributes["mountOptions"]).group(1)
    cluster = kubeflow.cluster_config(configs.PipelineConfig(remote_pipeline_root=BUCKET_HOME), "vertex")
    assert f"gs://{attributes['bucketName']}/{only_dir}" == cluster.remote_serving_root
    assert POD["metadata"]["annotations"]["gke-gcsfuse/volumes"] == "true"


def test_the_request_log_is_copied_to_the_cluster_home():
    config = configs.load(home=_serve_args().home)
    sync = CONTAINERS["request-log-sync"]
    assert _mounts(SERVER)["request-log"] == _mounts(sync)["request-log"] == str(config.request_log_root)
    script = sync["args"][0]
    assert f"rsync --recursive {config.request_log_root} {BUCKET_HOME}/request_log" in script
    assert "trap 'sync; exit 0' TERM" in script  # a last copy when the pod stops


def test_the_ct_tick_runs_one_at_a_time_never_retried_by_kubernetes_on_the_pipeline_image():
    cron = _documents("ct-tick.yaml")["CronJob"]["spec"]
    job = cron["jobTemplate"]["spec"]
    (tick,) = job["template"]["spec"]["containers"]
    assert cron["concurrencyPolicy"] == "Forbid"
    assert job["backoffLimit"] == 0 and job["template"]["spec"]["restartPolicy"] == "Never"
    assert tick["image"] == IMAGE_PLACEHOLDER and tick["command"] == ["conveyor"]
    args = tick["args"]
    assert args[:2] == ["ct", "tick"] and args[args.index("--target") + 1] in kubeflow.TARGETS
    assert args[args.index("--home") + 1] == BUCKET_HOME
    parsed = dispatch.build_parser().parse_args(args)  # the cluster tick of docs/production.md
    assert parsed.func is ct.ct and parsed.target == "kfp" and parsed.home == BUCKET_HOME
    # A launching tick waits for its run: Kubernetes must not kill it before the tick gives up.
    assert job["activeDeadlineSeconds"] > parsed.timeout_seconds
    env = {e["name"]: e["value"] for e in tick["env"]}
    fields = {f"{configs.ENV_PREFIX}{name.upper()}" for name in configs.PipelineConfig.__dataclass_fields__}
    assert env["CONVEYOR_REMOTE_PIPELINE_ROOT"] == BUCKET_HOME and "CONVEYOR_REMOTE_PIPELINE_ROOT" in fields
    assert env["CONVEYOR_IMAGE"] == IMAGE_PLACEHOLDER


def test_the_ct_tick_environment_is_what_conveyor_kubeflow_reads(monkeypatch):
    (tick,) = _documents("ct-tick.yaml")["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    for variable in tick["env"]:
        monkeypatch.setenv(variable["name"], variable["value"])
    args = dispatch.build_parser().parse_args(["kubeflow", "--target", "kfp"])
    assert args.image == IMAGE_PLACEHOLDER
    assert args.endpoint == "http://ml-pipeline.kubeflow.svc.cluster.local:8888"
    assert configs.load().remote_pipeline_root == BUCKET_HOME


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_the_server_answers_the_probes_as_kubernetes_expects(small_run, tmp_path):
    """`conveyor serve` with the manifest's arguments, home and host made local, any free port."""
    source, _ = small_run
    home = tmp_path / "home"
    home.mkdir()  # the pod's volume mount: a folder, empty until the first push
    args = list(SERVER["args"])
    args[args.index("--home") + 1] = str(home)
    args[args.index("--host") + 1] = "127.0.0.1"
    args[args.index("--port") + 1] = "0"
    conveyor = Path(sys.executable).parent / "conveyor"
    server = subprocess.Popen([str(conveyor), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        lines = []
        while not (url := re.search(r"serving model .* at (http://127\.0\.0\.1:\d+)/", lines[-1] if lines else "")):
            lines.append(server.stdout.readline())
            assert lines[-1], "".join(lines)  # the server exited before saying where it serves
        base = url.group(1)
        readiness = base + SERVER["readinessProbe"]["httpGet"]["path"]
        liveness = base + SERVER["livenessProbe"]["httpGet"]["path"]
        assert _get(liveness)[0] == 200  # alive ...
        assert _get(readiness)[0] == 503  # ... but not ready: nothing pushed yet
        version = versions.serving_version(source.serving_root)
        # A version arriving through the bucket mount as Publish copies it onto object storage:
        # every file, then the push record; without the record it is not served.
        target = home / "serving_model" / version
        shutil.copytree(source.serving_root / version, target, ignore=shutil.ignore_patterns(versions.RECORD_FILE))
        time.sleep(2 * configs.PipelineConfig().poll_seconds)
        assert _get(readiness)[0] == 503
        shutil.copy2(source.serving_root / version / versions.RECORD_FILE, target / versions.RECORD_FILE)
        deadline = time.monotonic() + 30
        while (found := _get(readiness))[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert found[0] == 200, found
        status = _get(f"{base}/v1/models/{configs.PipelineConfig().model_name}")
        assert status[0] == 200 and [v["version"] for v in status[1]["model_version_status"] if v["state"] == "AVAILABLE"] == [version], status
        assert _get(liveness)[0] == 200
    finally:
        server.terminate()
        server.wait(timeout=30)
