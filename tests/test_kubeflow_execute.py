"""The compiled spec, executed: `conveyor kubeflow --target kfp --check-locally` on two small spans.

Every task runs through TFX's v2 container entrypoint as a process of its own, forked from a warm
interpreter (conveyor/kubeflow/warm_start.py), with an ExecutorInput built from the spec and the artifacts
its upstream executors reported (conveyor/kubeflow/spec_harness.py); a temp directory stands in for the
bucket. The check executes span 1, span 2 (drift scored against span 1), span 2 with the tuning
spec (TFX's Tuner, 2 trials, before the Trainer), then that again unchanged (served from the
cache). The Vertex form of ExampleGen (its driver hook, which
open-source KFP does not run) is checked against the KFP form on the same data.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tensorflow_data_validation as tfdv
import yaml
from tfx.utils import io_utils

from conveyor.kubeflow import compiler as kubeflow
from conveyor.kubeflow import local_check, spec_harness, warm_start
from data import spans_io
from pipeline import configs, drift, evaluation, versions
from pipeline.components import span_window
from tests.conftest import SMALL_SPAN_ROWS

pytestmark = pytest.mark.timeout(3600)
TASKS = 16
TRIALS = 2


@pytest.fixture(scope="module")
def checked(shipped_rows, tmp_path_factory):
    """The check as a user runs it, on spans 1 and 2 (800 rows each), tuning with a budget of 2
    trials: (process, check.json, bucket)."""
    base = tmp_path_factory.mktemp("kubeflow_check")
    spans_root, check_dir = base / "spans", base / "check"
    for span in (1, 2):
        spans_io.write_span(spans_root, span, shipped_rows[(span - 1) * SMALL_SPAN_ROWS : span * SMALL_SPAN_ROWS])
    conveyor = Path(sys.executable).parent / "conveyor"
    command = [str(conveyor), "kubeflow", "--target", "kfp", "--check-locally", "--tune", "--spans-root", str(spans_root)]
    done = subprocess.run(
        [*command, "--check-dir", str(check_dir), "--train-steps", "100", "--eval-steps", "5"],
        capture_output=True,
        text=True,
        timeout=3500,
        env={**os.environ, "CONVEYOR_TUNE_MAX_TRIALS": str(TRIALS)},
    )
    record = json.loads((check_dir / local_check.RESULT_FILE).read_text())
    return done, record, check_dir / "bucket" / "conveyor"


def _tasks(record: dict, run: int) -> dict[str, dict]:
    return {t["task"]: t for t in record["executions"][run]["tasks"]}


def test_the_check_passes_and_says_what_it_ran(checked):
    done, record, _ = checked
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert record["ok"] and record["problems"] == []
    assert [e["what"] for e in record["executions"]] == ["span 1", "span 2", "span 2 tuned", "span 2 again, unchanged"]
    assert done.stdout.rstrip().endswith("check passed")


def test_every_task_ran_through_the_container_entrypoint_in_a_process_forked_warm(checked):
    _, record, bucket = checked
    ran = {run: [t for t in _tasks(record, run).values() if t["status"] == spec_harness.RAN] for run in (0, 1, 2)}
    assert len(_tasks(record, 0)) == len(_tasks(record, 1)) == len(_tasks(record, 2)) == TASKS
    assert len(ran[0]) + len(ran[1]) == 2 * TASKS - 1
    ran = [*ran[0], *ran[1], *ran[2]]
    for task in ran:
        log = Path(task["log"]).read_text()
        assert "Starting executor" in log, task["task"]  # kubeflow_v2_run_executor's own line, in the task's process
        assert warm_start.FALLBACK_NOTE not in log, task["task"]
    helper_log = Path(bucket.parents[1], "orchestrator", "warm-start", warm_start.LOG_FILE).read_text()
    forked = [line for line in helper_log.splitlines() if line.startswith("warm start: forked")]
    assert len(forked) == len(ran) and all("kubeflow_v2_run_executor" in line for line in forked)


def test_each_span_ends_with_a_blessed_model_staged_then_published_in_the_bucket(checked):
    _, record, bucket = checked
    pushed = []
    for run in (0, 1):
        tasks = _tasks(record, run)
        assert tasks["Evaluator"]["outputs"]["blessing"]["metadata"]["blessed"] == 1
        verdict = Path(tasks["Evaluator"]["outputs"]["evaluation"]["uri"], evaluation.VERDICT_FILE)
        assert json.loads(verdict.read_text())["blessed"] is True  # the blessing rule's own record
        assert tasks["InfraCheck"]["outputs"]["infra_blessing"]["metadata"]["blessed"] == 1
        meta = tasks["Pusher"]["outputs"]["pushed_model"]["metadata"]
        assert meta["pushed"] == 1 and meta["pushed_destination"] == f"{bucket}/serving_model/{meta['pushed_version']}"
        pushed.append(meta["pushed_version"])
    # Publish renamed each staged folder into place with its record: both versions are ready to serve
    # (and the tuned run's, if it pushed one).
    tuned = _tasks(record, 2)["Pusher"]["outputs"]["pushed_model"]["metadata"]
    assert versions.ready_versions(bucket / "serving_model") == pushed + ([tuned["pushed_version"]] if tuned["pushed"] == 1 else [])
    assert [versions.read_record(bucket / "serving_model", v)["version"] for v in pushed] == pushed
    assert versions.staged_versions(bucket / "serving_model") == []
    # Before the first push there is no baseline: PreviousPushedModel's output is empty. The second
    # run's Evaluator compared with the first push (PreviousPushedModel's copy).
    assert "pushed_version" not in _tasks(record, 0)["baseline_model"]["outputs"]["model"].get("metadata", {})
    assert _tasks(record, 1)["baseline_model"]["outputs"]["model"]["metadata"]["pushed_version"] == pushed[0]


def test_the_kfp_form_resolves_the_compiled_span_without_a_driver(checked):
    _, record, _ = checked
    for run, span, window in ((0, 1, "1"), (1, 2, "1,2")):
        examples = _tasks(record, run)["CsvExampleGen"]["outputs"]["examples"]["metadata"]
        assert examples["custom:span"] == span and examples["input_fingerprint"].startswith("split:all,num_files:1")
        assert _tasks(record, run)["span_window"]["outputs"]["examples"]["metadata"]["window_spans"] == window


def test_the_first_span_has_no_drift_baseline_and_the_second_is_scored_against_it_as_the_local_form_does(checked):
    _, record, bucket = checked
    first = _tasks(record, 0)["DataGate"]["outputs"]["drift_report"]
    second = _tasks(record, 1)["DataGate"]["outputs"]["drift_report"]
    assert "baseline_span" not in first.get("metadata", {})
    assert not [s for s in json.loads(Path(first["uri"], "drift.json").read_text())["scores"] if s["comparison"] == "drift"]
    assert second["metadata"]["baseline_span"] == 1
    report = json.loads(Path(second["uri"], "drift.json").read_text())
    # The scores are those of span 2's statistics against span 1's validated statistics, as the
    # previous_statistics resolver of the local form would give them to DataGate.
    index = str(bucket / "validated_spans")

    def stats(span: int):
        split = Path(span_window.read_entry(index, span)["statistics_uri"], "Split-train")
        return tfdv.load_stats_binary(io_utils.get_only_uri_in_dir(str(split)))

    config = configs.PipelineConfig()
    expected = drift.compare(
        current=stats(2),
        schema=tfdv.load_schema_text(str(config.schema_path)),
        thresholds=config.drift_thresholds,
        completeness_drop=config.completeness_drop,
        median_shift=config.median_shift,
        previous=stats(1),
    )
    assert json.loads(drift.to_json(expected, config.drift_policy))["scores"] == report["scores"]
    assert {s["measure"] for s in report["scores"]} == {drift.L_INFINITY, drift.JENSEN_SHANNON, drift.COMPLETENESS, drift.MEDIAN_SHIFT}


def test_the_unchanged_execution_is_fully_cached_and_publishes_nothing(checked):
    _, record, bucket = checked
    tasks = _tasks(record, 3)
    assert len(tasks) == TASKS and {t["status"] for t in tasks.values()} == {spec_harness.CACHED}
    assert tasks["Pusher"]["outputs"] == _tasks(record, 2)["Pusher"]["outputs"]  # the tuned run's push, handed on again
    tuned_push = _tasks(record, 2)["Pusher"]["outputs"]["pushed_model"]["metadata"]["pushed"]
    assert len(versions.ready_versions(bucket / "serving_model")) == 2 + tuned_push
    # Span 2's run used the cache only for what did not change: the schema import.
    assert [n for n, t in _tasks(record, 1).items() if t["status"] == spec_harness.CACHED] == ["ImportSchemaGen"]


def test_the_tuned_execution_searches_records_and_trains_with_its_choice(checked):
    from pipeline import artifact_properties as props
    from pipeline.components import tuned_hyperparameters

    _, record, bucket = checked
    before, tuned = _tasks(record, 1), _tasks(record, 2)
    assert "Tuner" not in before and "latest_hyperparameters" not in tuned
    assert tuned["Tuner"]["status"] == spec_harness.RAN and tuned["Trainer"]["status"] == spec_harness.RAN
    best = tuned["Tuner"]["outputs"]["best_hyperparameters"]
    assert best["metadata"][props.TRIALS_PROPERTY] == TRIALS and best["metadata"][props.ENDED_BY_PROPERTY] == "trials"
    chosen = json.loads(best["metadata"][props.TUNED_VALUES_PROPERTY])
    trained = json.loads(tuned["Trainer"]["outputs"]["model"]["metadata"][props.HYPERPARAMETERS_PROPERTY])
    from models.model import HParams

    assert HParams.from_config(trained) == HParams.from_config(chosen)
    # Before the search, the stores form's latest_hyperparameters gave the Trainer no values (the defaults)...
    empty = Path(before["latest_hyperparameters"]["outputs"]["hyperparameters"]["uri"], tuned_hyperparameters.BEST_FILE)
    assert json.loads(empty.read_text())["values"] == {}
    assert HParams.from_config(json.loads(before["Trainer"]["outputs"]["model"]["metadata"][props.HYPERPARAMETERS_PROPERTY])) == HParams()
    # ...and the search is in the tuning index, which the next run's latest_hyperparameters reads.
    entry = tuned_hyperparameters.newest_entry(str(bucket / "tuned_hyperparameters"))
    assert entry["uri"] == best["uri"] and json.loads(entry["properties"][props.TUNED_VALUES_PROPERTY]) == chosen
    assert list(Path(tuned["Tuner"]["outputs"]["tuner_results"]["uri"], props.TUNER_TENSORBOARD_DIR).iterdir())


@pytest.fixture(scope="module")
def example_gen_only(shipped_rows, tmp_path_factory):
    """The ExampleGen task alone, on a bucket holding spans 1 and 2: Vertex (driver hook, newest span
    at run time) twice, then KFP (no driver, span 2 compiled in) once."""
    base = tmp_path_factory.mktemp("example_gen_forms")
    bucket = base / "bucket"
    config = local_check.check_config(configs.PipelineConfig(), bucket)
    for span, rows in ((1, shipped_rows[:200]), (2, shipped_rows[200:400])):
        spans_io.write_span(Path(config.spans_root_uri), span, rows)

    def first_task(cluster, name):
        spec = kubeflow.compile_spec(cluster, "conveyor:test", base / f"{name}.yaml")
        spec["root"]["dag"]["tasks"] = {"CsvExampleGen": spec["root"]["dag"]["tasks"]["CsvExampleGen"]}
        return spec

    vertex_spec, kfp_spec = first_task(config, "vertex"), first_task(config.replace(span=2), "kfp")
    root, state = config.pipeline_root_uri, base / "state"
    with spec_harness.task_starter(state) as starter:
        return {
            "vertex": spec_harness.execute(vertex_spec, root, "vertex", state, run_id="vertex-1", starter=starter),
            "vertex again": spec_harness.execute(vertex_spec, root, "vertex", state, run_id="vertex-2", starter=starter),
            "kfp": spec_harness.execute(kfp_spec, root, "kfp", state, run_id="kfp-1", starter=starter),
            "kfp spec": kfp_spec,
        }


def _records(uri: str, split: str) -> int:
    import tensorflow as tf

    files = [str(p) for p in Path(uri, f"Split-{split}").iterdir()]
    return sum(1 for _ in tf.data.TFRecordDataset(files, compression_type="GZIP"))


def test_vertex_s_driver_and_the_kfp_executor_resolve_the_same_span_and_examples(example_gen_only):
    vertex, kfp = example_gen_only["vertex"], example_gen_only["kfp"]
    assert vertex.ok and kfp.ok, (vertex.failed or kfp.failed).error
    assert "Calculated span: 2" in Path(vertex.task("CsvExampleGen").log).read_text()  # the driver's own line
    vertex_meta, kfp_meta = (e.metadata("CsvExampleGen", "examples") for e in (vertex, kfp))
    assert vertex_meta["custom:span"] == kfp_meta["custom:span"] == 2
    assert vertex_meta["input_fingerprint"] == kfp_meta["input_fingerprint"]
    for split in ("train", "eval"):
        uris = [e.task("CsvExampleGen").outputs["examples"]["uri"] for e in (vertex, kfp)]
        assert _records(uris[0], split) == _records(uris[1], split) > 0
    assert _records(uris[0], "train") + _records(uris[0], "eval") == 200  # span 2 only


def test_on_vertex_the_driver_runs_before_the_cache_and_unchanged_data_is_cached(example_gen_only):
    again = example_gen_only["vertex again"].task("CsvExampleGen")
    assert again.status == spec_harness.CACHED
    assert "Calculated span: 2" in Path(again.log).read_text()  # the driver ran; the executor did not
    assert "Starting executor" not in Path(again.log).read_text()


def test_the_compiled_kfp_spec_declares_the_span_it_was_compiled_for(example_gen_only):
    parameters = example_gen_only["kfp spec"]["root"]["dag"]["tasks"]["CsvExampleGen"]["inputs"]["parameters"]
    assert json.loads(parameters["range_config"]["runtimeValue"]["constant"])["static_range"]["start_span_number"] == 2
    assert "{SPAN}" in yaml.safe_dump(parameters["input_config"])  # the pattern is left for the executor
