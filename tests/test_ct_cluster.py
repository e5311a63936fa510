"""`conveyor ct tick|watch --target kfp --home URI`: CT deciding here, launching on a cluster (conveyor/kubeflow/cluster_ct.py).

No cluster here: the KFP API is the recording stand-in on 127.0.0.1 (tests/kfp_standin.py) and a
local folder, named by a file:// URI, is the bucket. The test plays the cluster's part: when a run
is submitted it publishes a version into the bucket's serving root (what the run's Publish does)
and sets the run's final state in the stand-in. Where the decision depends on what a real run
leaves (the push record, the validated-span index, the model), the bucket is the one a real
pipeline run in the cluster's form (history="stores", the bucket as pipeline root) left.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from signal import SIGKILL

import pytest

from conveyor.kubeflow import cluster_ct
from conveyor.kubeflow import compiler as kubeflow
from conveyor.local import runner as local_run
from ct import controller, decisions, journal
from data import generator, spans_io
from metadata import registry
from models import label_metrics
from models.instances import FeatureRules, from_row, parse_instance
from models.saved_model import LoadedModel
from monitoring import evidence, labels
from pipeline import configs, evaluation, home_lock, versions
from serving import request_log
from tests.conftest import SMALL_SPAN_ROWS
from tests.kfp_standin import KfpStandIn

REPO = Path(__file__).resolve().parents[1]
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


def _tick(home_uri: str, api: KfpStandIn, work: Path, kill_at: str | None = None) -> subprocess.Popen:
    """`conveyor ct tick --target kfp`; `kill_at`: it SIGKILLs itself there (ct/journal.py)."""
    env = {k: v for k, v in os.environ.items() if k != journal.KILL_VARIABLE}
    return subprocess.Popen(
        [CONVEYOR, "ct", "tick", "--target", "kfp", "--home", home_uri, "--image", IMAGE, "--endpoint", api.endpoint,
         "--poll-seconds", "0.2", "--timeout-seconds", "300", "--work-dir", str(work)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**env, **({journal.KILL_VARIABLE: kill_at} if kill_at else {})},
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


@pytest.mark.parametrize("point, sent", [("submitting", 0), ("sent", 1), ("submitted", 1)])
def test_a_cluster_tick_killed_around_submitting_leaves_one_run_which_the_next_tick_follows(cluster, tmp_path, point, sent):
    """Killed with the run's name in the bucket and nothing sent, sent and the bucket not told, or
    sent and the bucket told: the next tick (another working home) sends it or finds it, never twice."""
    bucket, home_uri, api = cluster
    killed = _tick(home_uri, api, tmp_path / "work-1", kill_at=point)
    out, err = killed.communicate(timeout=300)
    assert killed.returncode == -SIGKILL, out + err[-3000:]
    assert len(api.runs) == sent
    intent = json.loads((bucket / "ct" / journal.INTENT_FILE).read_text())  # in the bucket before the kill
    assert intent["step"] == journal.LAUNCHED and ("run" in intent["submitted"]) == (point == "submitted")
    assert not (bucket / "ct" / decisions.LOG_FILE).exists()

    again = _tick(home_uri, api, tmp_path / "work-2")  # a new working home: all it knows is in the bucket
    (run_id,) = api.wait_for_runs(1)
    version = _publish_a_version(bucket / "serving_model")
    api.finish(run_id, "SUCCEEDED", tasks={name: "SUCCEEDED" for name in TASKS})
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, out + err[-3000:]
    assert len(api.runs) == 1 and f"span 1 -> ok (run {run_id})" in out, out
    (_, run), = [p for p in api.posts() if p[0] == "/apis/v2beta1/runs"]
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(intent["submitted"]["when"]))
    assert run["display_name"] == f"conveyor-taxi-span-1-new_data+schedule-{stamp}"  # the name the killed tick chose
    how = "followed the job the interrupted tick had submitted" if point == "submitted" else "asked the orchestrator for the job"
    assert f"was interrupted at launched; {how}" in out, out
    (decision,) = _log(bucket)
    assert (decision["run_id"], decision["pushed_version"], decision["id"]) == (run_id, version, intent["id"])
    assert [r["step"] for r in decision["resumed"]] == [journal.LAUNCHED]
    assert json.loads((bucket / "ct" / journal.INTENT_FILE).read_text())["step"] == journal.DONE
    assert json.loads((bucket / "ingested_spans" / "span-1.json").read_text())["run_id"] == run_id


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


def test_the_mirror_copies_no_span_and_writes_back_what_the_tick_changed_and_only_that(tmp_path, shipped_rows):
    bucket = tmp_path / "bucket"
    spans_io.write_span(bucket / "spans", 1, shipped_rows[:5])
    spans_io.write_span(bucket / "feedback" / "spans", 1, shipped_rows[5:8], namespace=spans_io.FEEDBACK, manifest={"span": 1})
    (bucket / "request_log").mkdir()
    (bucket / "request_log" / "requests-1.jsonl").write_text("{}\n")
    (bucket / "ct").mkdir()
    (bucket / "ct" / decisions.LOG_FILE).write_text('{"old": 1}\n')
    local = tmp_path / "work"
    (local / "ct").mkdir(parents=True)
    (local / "ct" / "stale.json").write_text("from an earlier tick")  # a reused working home
    mirror = cluster_ct.Mirror(f"file://{bucket}", local, f"file://{bucket}/feedback/spans")
    mirror.pull()
    assert (local / "request_log" / "requests-1.jsonl").read_text() == "{}\n"
    assert not (local / "ct" / "stale.json").exists()
    assert not (local / "spans").exists() and not (local / "feedback").exists()  # spans are read in the bucket
    # What a tick does: append to the log, build feedback span 2 (and touch span 1's copy), read the request log.
    with open(local / "ct" / decisions.LOG_FILE, "a") as log:
        log.write('{"new": 2}\n')
    spans_io.write_span(local / "feedback" / "spans", 2, shipped_rows[8:10], namespace=spans_io.FEEDBACK, manifest={"span": 2})
    spans_io.write_span(local / "feedback" / "spans", 1, [], namespace=spans_io.FEEDBACK)
    (local / "request_log" / "requests-1.jsonl").write_text("changed locally\n")

    written = mirror.push()
    assert sorted(written) == sorted([
        "ct/decisions.jsonl", f"feedback/spans/feedback-2/{spans_io.SPAN_FILE}", f"feedback/spans/feedback-2/{spans_io.MANIFEST_FILE}",
    ])
    assert mirror.push() == []  # pushed once, nothing changed since
    assert (bucket / "ct" / decisions.LOG_FILE).read_text() == '{"old": 1}\n{"new": 2}\n'
    assert (bucket / "request_log" / "requests-1.jsonl").read_text() == "{}\n"  # read only
    assert len(spans_io.read_rows(bucket / "feedback" / "spans" / "feedback-1" / spans_io.SPAN_FILE)) == 3  # spans are immutable
    assert spans_io.existing_spans(f"file://{bucket}/feedback/spans", spans_io.FEEDBACK) == [1, 2]


def test_a_cluster_tick_without_a_cluster_home_or_image_says_what_is_missing(tmp_path):
    done = subprocess.run([CONVEYOR, "ct", "tick", "--target", "kfp", "--home", str(tmp_path), "--image", IMAGE],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "needs --home gs://BUCKET/PATH" in done.stderr
    done = subprocess.run([CONVEYOR, "ct", "tick", "--home", "gs://bucket/conveyor"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "only `ct tick|watch|run --target kfp|vertex` reads a cluster home" in done.stderr


def test_ct_watch_on_a_cluster_ticks_the_given_number_of_times(cluster, tmp_path):
    bucket, home_uri, api = cluster
    watch = subprocess.Popen(
        [CONVEYOR, "ct", "watch", "--target", "kfp", "--home", home_uri, "--image", IMAGE, "--endpoint", api.endpoint,
         "--poll-seconds", "0.2", "--timeout-seconds", "300", "--interval", "0", "--max-ticks", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    (run_id,) = api.wait_for_runs(1)
    _publish_a_version(bucket / "serving_model")
    api.finish(run_id, "SUCCEEDED", tasks={name: "SUCCEEDED" for name in TASKS})
    out, err = watch.communicate(timeout=300)
    assert watch.returncode == 0, out + err[-3000:]
    assert "FIRED new_data+schedule: new span 1" in out and f"span 1 -> ok (run {run_id})" in out, out
    assert out.count("no run: no new span") == 1 and len(api.runs) == 1, out  # the second tick: nothing new
    assert [d["fired"] for d in _log(bucket)] == [True, False]


# --- the signals from the bucket: a bucket as a real cluster run leaves it ---------------------------


@pytest.fixture(scope="module")
def cluster_run(shipped_rows, tmp_path_factory):
    """One real run of span 1 in the form the compiled spec runs (history="stores"), with a folder
    as the bucket: pipeline root, spans, serving root and validated-span index all in it, the run's
    ML Metadata (the orchestrator's) outside. Returns (the run's config, the bucket folder)."""
    base = tmp_path_factory.mktemp("cluster-run")
    bucket = base / "bucket" / "conveyor"
    config = kubeflow.stores_form(
        configs.load(home=base / "orchestrator", train_steps=100, eval_steps=5, span=1), str(bucket), app_dir=str(REPO)
    )
    spans_io.write_span(Path(config.spans_root_uri), 1, shipped_rows[:SMALL_SPAN_ROWS])
    summary = local_run.run(config)
    assert summary.ok and summary.pushed_path, summary.error
    return config, bucket


def _copy_bucket(cluster_run, dest: Path) -> tuple[configs.PipelineConfig, Path]:
    """A writable copy of the run's bucket (its artifacts' URIs still name the original, read only)."""
    config, bucket = cluster_run
    shutil.copytree(bucket, dest)
    return config.replace(
        home=dest.parent.parent / "orchestrator", remote_pipeline_root=str(dest), remote_serving_root=str(dest / "serving_model"),
        remote_spans_root=str(dest / "spans"), remote_feedback_spans_root=str(dest / "feedback" / "spans"),
    ), dest


def _serve(serving_root: Path, log_root: Path, rows: list[dict], prefix: str) -> list[tuple[dict, dict]]:
    """Log `rows` as answered by the serving version (its real outputs), ten instances per request."""
    served = versions.serving_version(serving_root)
    model = LoadedModel.load(serving_root / served, served)
    instances = [parse_instance(from_row(r), FeatureRules.from_schema(configs.PipelineConfig().schema_path)) for r in rows]
    when = datetime.now(timezone.utc)
    records = [
        request_log.record(f"{prefix}-{i // 10}", i % 10, when, "taxi", served, inst.features, out)
        for i, (inst, out) in enumerate(zip(instances, model.predict(instances)))
    ]
    log = request_log.RequestLog(log_root)
    log.append(records, when)
    log.close()
    return list(zip(records, rows))


def test_a_cluster_tick_decides_as_a_local_tick_on_the_same_traffic_labels_and_spans(cluster_run, tmp_path):
    run_config, bucket = _copy_bucket(cluster_run, tmp_path / "bucket" / "conveyor")
    shutil.copytree(cluster_run[0].home, run_config.home)  # the local home: the run's ML Metadata
    version = versions.serving_version(bucket / "serving_model")
    # Served traffic whose trip_miles are scaled (drift against the training statistics), labelled in a
    # world where every rider tips the whole fare: live accuracy far below the model's offline accuracy.
    # The floor is 0: only the offline accuracy, from the push record, can make performance fire.
    rows = generator.generate(generator.shipped_reference(), 600, 7, "miles_scale")
    pairs = _serve(bucket / "serving_model", run_config.request_log_root, rows, "miles")
    labels.write(run_config.labels_root / "all-tipped.jsonl", [(r["request_id"], r["index"], float(row["fare"])) for r, row in pairs])
    for name in ("request_log", "labels"):  # the same feedback in the bucket, where the servers and the label feed put it
        shutil.copytree(run_config.home / name, bucket / name)
    local_config = run_config.replace(live_min_accuracy=0.0)
    now = datetime.now(timezone.utc).timestamp() + 1
    local = controller.evaluate(local_config, now)

    seen = {}
    with KfpStandIn() as api:

        def cluster_side() -> None:
            (run_id,) = api.wait_for_runs(1)
            seen["feedback_span_in_bucket"] = (bucket / "feedback" / "spans" / "feedback-1" / spans_io.SPAN_FILE).exists()
            api.finish(run_id, "SUCCEEDED", tasks={name: "SUCCEEDED" for name in TASKS})

        thread = threading.Thread(target=cluster_side, daemon=True)
        thread.start()
        launch = cluster_ct.ClusterLaunch(target="kfp", image=IMAGE, spec_dir=tmp_path / "specs", endpoint=api.endpoint,
                                          poll_seconds=0.1, timeout_seconds=300)
        on_cluster = cluster_ct.tick(configs.load(live_min_accuracy=0.0), f"file://{bucket}", launch, work_dir=tmp_path / "work", now=now)
        if launch.submitted:  # (a tick that launched nothing fails below, without waiting for a run)
            thread.join()
        posts = api.posts()

    assert local.triggers == on_cluster.triggers == ["performance", "drift"]
    assert on_cluster.reason.startswith(local.reason + "; served traffic becomes feedback span 1: 600 labelled predictions")
    for signal in ("serving", "performance", "drift", "guard", "new_data"):
        assert on_cluster.signals[signal] == local.signals[signal], signal
    assert on_cluster.signals["schedule"]["due"] is local.signals["schedule"]["due"] is False
    # The facts came from the push record, and it agrees with the run's lineage in ML Metadata.
    p, entry = local.signals["performance"], registry.find(local_config, version)
    offline = evaluation.load_evaluation(entry.evaluation_uri).metrics[evaluation.OVERALL][label_metrics.BINARY.accuracy]
    assert p["offline_accuracy"] == pytest.approx(offline) and "offline_unknown" not in p
    assert f"more than {local_config.live_max_accuracy_drop} below its offline {offline:.3f}" in local.reason
    assert evidence.training_statistics(local_config, version) == (entry.training_statistics_uri, None)
    assert "trip_miles" in local.signals["drift"]["learnable"]
    # The run the cluster tick launched reads the feedback span it built, already in the bucket.
    assert seen["feedback_span_in_bucket"] and on_cluster.span == 1 and on_cluster.span_source == spans_io.FEEDBACK
    (_, run), = [p for p in posts if p[0] == "/apis/v2beta1/runs"]
    assert run["display_name"].startswith("conveyor-taxi-span-feedback-1-performance+drift-")
    example_gen = run["pipeline_spec"]["root"]["dag"]["tasks"]["CsvExampleGen"]["inputs"]["parameters"]
    assert example_gen["input_base"]["runtimeValue"]["constant"] == f"file://{bucket}/feedback/spans"
    assert on_cluster.outcome == decisions.OK
    assert json.loads((bucket / "ingested_spans" / "feedback-1.json").read_text())["namespace"] == spans_io.FEEDBACK


def test_a_quiet_cluster_tick_reads_no_span_file_and_judges_an_older_version_against_the_floor(cluster_run, tmp_path):
    _, bucket = _copy_bucket(cluster_run, tmp_path / "bucket" / "conveyor")
    version = versions.serving_version(bucket / "serving_model")
    record_path = bucket / "serving_model" / version / versions.RECORD_FILE
    record = json.loads(record_path.read_text())
    older = {k: v for k, v in record.items() if k not in (versions.OFFLINE_METRICS, versions.TRAINING_STATISTICS)}
    record_path.write_text(json.dumps(older))  # a version pushed before records carried them
    # A feedback span an earlier tick built and a cluster run took, with traffic since then.
    spans_io.write_span(bucket / "feedback" / "spans", 1, [], namespace=spans_io.FEEDBACK,
                        manifest={"span": 1, "end": datetime.fromtimestamp(record["published"], timezone.utc).isoformat()})
    os.makedirs(bucket / "ingested_spans", exist_ok=True)
    (bucket / "ingested_spans" / "feedback-1.json").write_text(json.dumps({"span": 1, "namespace": "feedback"}))
    rows = generator.generate(generator.shipped_reference(), 600, 9)
    pairs = _serve(bucket / "serving_model", bucket / "request_log", rows, "clean")
    labels.write(bucket / "labels" / "tips.jsonl", [(r["request_id"], r["index"], float(row["tips"])) for r, row in pairs])
    span_files = [p for p in (bucket / "spans").rglob("*") if p.is_file()] + [bucket / "feedback" / "spans" / "feedback-1" / spans_io.SPAN_FILE]
    read = bucket / "labels" / "tips.jsonl"  # a file the tick does read: shows a read would be seen
    for path in (*span_files, read):
        os.utime(path, (1_000_000, path.stat().st_mtime))  # an access time older than the file: a read moves it

    with KfpStandIn() as api:
        done = subprocess.run(
            [CONVEYOR, "ct", "tick", "--target", "kfp", "--home", f"file://{bucket}", "--image", IMAGE, "--endpoint", api.endpoint,
             "--work-dir", str(tmp_path / "work")],
            capture_output=True, text=True, timeout=300, env={**os.environ, "CONVEYOR_LIVE_MIN_ACCURACY": "0.5"},
        )
        assert done.returncode == 0, done.stdout + done.stderr[-3000:]
        assert api.runs == {}
    out = done.stdout
    assert "no run: no new span" in out and "schedule not due" in out, out
    assert f"ok on 600 labels (no offline accuracy for version {version} in its push record or ML Metadata: judged against the floor only)" in out, out
    assert f"drift not judged (neither the push record of version {version} nor ML Metadata names its training statistics)" in out, out
    assert read.stat().st_atime > 1_000_000
    assert {str(p): p.stat().st_atime for p in span_files} == {str(p): 1_000_000 for p in span_files}  # no span file was read
    work_files = {str(p.relative_to(tmp_path / "work")).split(os.sep)[0] for p in (tmp_path / "work").rglob("*") if p.is_file()}
    assert work_files <= {"ct", "metadata.sqlite", "request_log", "labels", "logs", home_lock.LOCK_FILE}, work_files
