"""`conveyor ct tick --target kfp --home URI`: CT deciding here, launching on a cluster (conveyor/cluster_ct.py).

No cluster here: the KFP API is the recording stand-in on 127.0.0.1 (tests/kfp_standin.py) and a
local folder, named by a file:// URI, is the bucket. The test plays the cluster's part: when a run
is submitted it publishes a version into the bucket's serving root (what the run's Publish does)
and sets the run's final state in the stand-in.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from conveyor import cluster_ct
from ct import decisions
from data import spans_io
from pipeline import configs, versions
from tests.kfp_standin import KfpStandIn

IMAGE = "registry.example/conveyor:1"
CONVEYOR = str(Path(sys.executable).parent / "conveyor")
TASKS = ("CsvExampleGen", "DataGate", "Trainer", "Pusher", "Publish")


def _publish_a_version(serving_root: Path) -> str:
    """What a run's Pusher and Publish leave in the bucket: a published version."""
    model = serving_root.parent / "a-model"
    model.mkdir(parents=True, exist_ok=True)
    (model / versions.READY_FILE).write_bytes(b"a saved model")
    version = versions.new_version(serving_root)
    versions.stage(str(model), serving_root, version)
    versions.publish(serving_root, version, {"pushed_model_id": 0})
    return version


@pytest.fixture
def cluster(shipped_rows, tmp_path):
    bucket = tmp_path / "bucket" / "conveyor"
    spans_io.write_span(bucket / "spans", 1, shipped_rows[:60])
    with KfpStandIn() as api:
        yield bucket, f"file://{bucket}", api


def _tick(home_uri: str, api: KfpStandIn, work: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [CONVEYOR, "ct", "tick", "--target", "kfp", "--home", home_uri, "--image", IMAGE, "--endpoint", api.endpoint,
         "--poll-seconds", "0.2", "--timeout-seconds", "300", "--work-dir", str(work)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def _log(bucket: Path) -> list[dict]:
    return [json.loads(line) for line in (bucket / "ct" / decisions.LOG_FILE).read_text().splitlines()]


def test_a_cluster_tick_submits_the_new_span_with_its_trigger_and_records_the_run_s_outcome(cluster, tmp_path):
    bucket, home_uri, api = cluster
    tick = _tick(home_uri, api, tmp_path / "work-1")
    (run_id,) = api.wait_for_runs(1)
    version = _publish_a_version(bucket / "serving_model")
    api.finish(run_id, "SUCCEEDED", tasks={name: "SUCCEEDED" for name in TASKS})
    out, err = tick.communicate(timeout=300)
    assert tick.returncode == 0, out + err[-3000:]
    # The first tick ever: a new span, and the schedule is due (no run yet), as locally.
    assert "FIRED new_data+schedule: new span 1" in out and f"span 1 -> ok (run {run_id})" in out, out

    (_, run), = [p for p in api.posts() if p[0] == "/apis/v2beta1/runs"]
    assert run["display_name"].startswith("conveyor-taxi-span-1-new_data+schedule-")  # span and trigger recorded
    assert run["runtime_config"]["pipeline_root"] == home_uri
    example_gen = run["pipeline_spec"]["root"]["dag"]["tasks"]["CsvExampleGen"]["inputs"]["parameters"]
    assert json.loads(example_gen["range_config"]["runtimeValue"]["constant"])["static_range"]["start_span_number"] == 1

    # The decision log is in the bucket, with the outcome the run reached.
    (decision,) = _log(bucket)
    assert (decision["fired"], decision["triggers"], decision["span"], decision["outcome"], decision["run_id"]) == (
        True, ["new_data", "schedule"], 1, decisions.OK, run_id
    )
    assert f"pushed: {home_uri}/serving_model/{version}" in decision["detail"]
    assert "fully cached" not in decision["detail"]
    assert json.loads((bucket / "ingested_spans" / "span-1.json").read_text())["state"] == "SUCCEEDED"
    assert (bucket / "metadata.sqlite").exists()  # the controller's CTDecision records travel with the log

    # A later tick, from a fresh working home, reads that log and the span record back: nothing is
    # new and a run was just launched, so it decides as locally: no run.
    again = _tick(home_uri, api, tmp_path / "work-2")
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, out + err[-3000:]
    assert "no run: no new span" in out and "schedule not due" in out
    assert len(api.runs) == 1 and [d["fired"] for d in _log(bucket)] == [True, False]


def test_a_span_blocked_on_the_cluster_is_recorded_as_blocked_and_not_submitted_again(cluster, tmp_path):
    bucket, home_uri, api = cluster
    config = configs.load(ct_schedule_hours=1000.0)

    def launch() -> cluster_ct.ClusterLaunch:
        return cluster_ct.ClusterLaunch(
            target="kfp", image=IMAGE, spec_dir=tmp_path / "specs", endpoint=api.endpoint, poll_seconds=0.1, timeout_seconds=300
        )

    def cluster_fails_data_gate() -> None:
        (run_id,) = api.wait_for_runs(1)
        api.finish(run_id, "FAILED", failed_task="DataGate", error="DataValidationError: 3 anomalies",
                   tasks={"CsvExampleGen": "SKIPPED", "StatisticsGen": "SUCCEEDED"})

    cluster_side = threading.Thread(target=cluster_fails_data_gate)
    cluster_side.start()
    first = cluster_ct.tick(config, home_uri, launch(), work_dir=tmp_path / "work-1")
    cluster_side.join()
    assert (first.span, first.outcome) == (1, decisions.BLOCKED)
    assert "DataGate failed on kfp (FAILED): DataValidationError: 3 anomalies" in first.detail
    assert versions.ready_versions(bucket / "serving_model") == []

    second = cluster_ct.tick(config, home_uri, launch(), work_dir=tmp_path / "work-2")
    assert not second.fired and second.reason.startswith("no new span")
    assert len(api.runs) == 1


def test_a_run_the_orchestrator_never_finishes_is_given_up_on_as_a_crash_naming_it(cluster, tmp_path):
    _, home_uri, api = cluster
    launch = cluster_ct.ClusterLaunch(
        target="kfp", image=IMAGE, spec_dir=tmp_path / "specs", endpoint=api.endpoint, poll_seconds=0.1, timeout_seconds=1
    )
    decision = cluster_ct.tick(configs.load(), home_uri, launch, work_dir=tmp_path / "work")
    assert decision.outcome == decisions.CRASHED
    assert decision.detail.startswith(f"TimeoutError: run {launch.submitted[0].run_name} still RUNNING after 1 s")


def test_the_mirror_writes_back_what_the_tick_changed_and_only_that(tmp_path, shipped_rows):
    bucket = tmp_path / "bucket"
    spans_io.write_span(bucket / "spans", 1, shipped_rows[:5])
    (bucket / "feedback" / "incoming").mkdir(parents=True)
    (bucket / "feedback" / "incoming" / "batch-1.csv").write_text("a\n")
    (bucket / "request_log").mkdir()
    (bucket / "request_log" / "requests-1.jsonl").write_text("{}\n")
    (bucket / "ct").mkdir()
    (bucket / "ct" / decisions.LOG_FILE).write_text('{"old": 1}\n')
    local = tmp_path / "work"
    mirror = cluster_ct.Mirror(f"file://{bucket}", local, f"file://{bucket}/spans")
    mirror.pull()
    assert (local / "request_log" / "requests-1.jsonl").read_text() == "{}\n"
    assert (local / "spans" / "span-1" / spans_io.SPAN_FILE).exists()
    # What a tick does: append to the log, consume the feedback into span 2, read the request log.
    with open(local / "ct" / decisions.LOG_FILE, "a") as log:
        log.write('{"new": 2}\n')
    (local / "feedback" / "consumed" / "span-2").mkdir(parents=True)
    (local / "feedback" / "incoming" / "batch-1.csv").rename(local / "feedback" / "consumed" / "span-2" / "batch-1.csv")
    spans_io.write_span(local / "spans", 2, shipped_rows[5:10])
    (local / "spans" / "span-1" / spans_io.SPAN_FILE).write_text("changed locally\n")
    (local / "request_log" / "requests-1.jsonl").write_text("changed locally\n")

    written = mirror.push()
    assert sorted(written) == sorted([
        "ct/decisions.jsonl", "feedback/consumed/span-2/batch-1.csv", "-feedback/incoming/batch-1.csv",
        f"spans/span-2/{spans_io.SPAN_FILE}",
    ])
    assert (bucket / "ct" / decisions.LOG_FILE).read_text() == '{"old": 1}\n{"new": 2}\n'
    assert not (bucket / "feedback" / "incoming" / "batch-1.csv").exists()
    assert (bucket / "request_log" / "requests-1.jsonl").read_text() == "{}\n"  # read only
    assert (bucket / "spans" / "span-1" / spans_io.SPAN_FILE).read_text() != "changed locally\n"  # spans are immutable


def test_a_cluster_tick_without_a_cluster_home_or_image_says_what_is_missing(tmp_path):
    done = subprocess.run([CONVEYOR, "ct", "tick", "--target", "kfp", "--home", str(tmp_path), "--image", IMAGE],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "needs --home gs://BUCKET/PATH" in done.stderr
    done = subprocess.run([CONVEYOR, "ct", "tick", "--home", "gs://bucket/conveyor"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "only `ct tick|run --target kfp|vertex` reads a cluster home" in done.stderr
