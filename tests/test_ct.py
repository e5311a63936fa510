"""The continuous-training controller's signals and decisions, on copies of small_run's home.

Served traffic is written by the real request-log writer with the real model's answers, labels in
the documented labels format; the end-to-end loop through a real server is tests/test_ct_loop.py.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone

import pytest

from conveyor import demo as ct_demo
from conveyor.local import runner as local_run
from ct import controller, decisions, feedback, guard, journal, signals
from data import generator, spans_io
from data.spans_io import FEEDBACK, UPSTREAM
from metadata import ct_records, registry, spans
from models import label_metrics
from models.instances import FeatureRules, InstanceError, from_row, parse_instance
from models.saved_model import LoadedModel
from monitoring import evidence, labels, live
from pipeline import configs, home_lock, versions
from serving import request_log, rollback
from tests.conftest import SMALL_SPAN_ROWS
from tests.serving_helpers import CONVEYOR, copy_home


@pytest.fixture(scope="module")
def reference():
    return generator.shipped_reference()


@pytest.fixture
def home(small_run, tmp_path):
    """A writable copy of small_run's home (version V serving, span 1 ingested); its spans folder is
    small_run's, read only (the same input base, so an unchanged re-run is cached)."""
    return copy_home(small_run, tmp_path / "home")


@pytest.fixture
def own_spans(home, tmp_path):
    """`home` with its own copy of the spans folder, for tests that add spans."""
    config = home.replace(spans_root=tmp_path / "spans")
    shutil.copytree(home.spans_root, config.spans_root)
    return config


def _version(config) -> str:
    return versions.serving_version(config.serving_root)


def _serve(config, rows, prefix, when=None, version=None):
    """Log `rows` as answered by the serving model (its real outputs), ten instances per request.
    `version` relabels who answered (the same model's outputs, logged under another version)."""
    served = _version(config)
    model = LoadedModel.load(config.serving_root / served, served)
    rules = FeatureRules.from_schema(config.schema_path)
    instances = [parse_instance(from_row(r), rules) for r in rows]
    outputs = model.predict(instances)
    when = when or datetime.now(timezone.utc)
    records = [
        request_log.record(f"{prefix}-{i // 10}", i % 10, when, config.model_name, version or served, inst.features, out)
        for i, (inst, out) in enumerate(zip(instances, outputs))
    ]
    log = request_log.RequestLog(config.request_log_root)
    log.append(records, when)
    log.close()
    return list(zip(records, rows))


def _label(config, name, pairs, tips=lambda row: float(row["tips"])):
    labels.write(config.labels_root / f"{name}.jsonl", [(r["request_id"], r["index"], tips(row)) for r, row in pairs])


def all_tipped(row):
    """A world where every rider tips the whole fare: every "no big tip" answer is wrong."""
    return float(row["fare"])


def _evaluate(config, **kwargs):
    return controller.evaluate(config, datetime.now(timezone.utc).timestamp() + 1, **kwargs)


# --- performance: version-aware, minimum samples, fire once ---------------------------------------------


def test_low_live_accuracy_of_the_serving_version_fires_performance(home, reference):
    pairs = _serve(home, generator.generate(reference, 300, 1), "t")
    _label(home, "all-tipped", pairs, tips=all_tipped)
    decision = _evaluate(home)
    p = decision.signals["performance"]
    assert decision.triggers == ["performance"] and p["version"] == _version(home)
    right = sum((r["output"]["probability"] > 0.5) == live.truth(r, all_tipped(row)) for r, row in pairs)
    assert p["labeled"] == 300 and p["accuracy"] == pytest.approx(right / 300) and p["state"] == live.LOW
    assert p["auc"] is None  # one class
    assert decision.span_source == FEEDBACK and decision.span is None  # the tick builds the span
    assert "performance of version" in decision.reason and "below" in decision.reason


def test_too_few_labels_do_not_fire(home, reference):
    pairs = _serve(home, generator.generate(reference, 300, 2), "t")
    _label(home, "few", pairs[: home.live_min_labels - 1], tips=all_tipped)
    decision = _evaluate(home)
    p = decision.signals["performance"]
    assert not decision.fired and p["state"] == live.TOO_FEW_LABELS and p["accuracy"] is None
    assert f"{home.live_min_labels - 1} labelled predictions (accuracy needs {home.live_min_labels})" in decision.reason


def test_other_versions_and_traffic_before_going_live_are_not_evidence(home, reference):
    live_since = datetime.fromtimestamp(versions.live_since(home.serving_root, _version(home)), timezone.utc)
    before = _serve(home, generator.generate(reference, 300, 3), "old", when=live_since - timedelta(hours=2))
    other = _serve(home, generator.generate(reference, 300, 4), "other", version="12345")
    _label(home, "all", before + other, tips=all_tipped)
    decision = _evaluate(home)
    assert not decision.fired and decision.signals["performance"]["state"] == live.NO_TRAFFIC
    assert f"version {_version(home)}: no traffic since" in decision.reason


def test_a_version_serving_again_after_a_cleared_rollback_starts_a_new_window(home, reference):
    """Rolled back, then `rollback --clear`: the version serves again and its traffic from before
    both is not evidence (the cleared pointer leaves no file; its record in ML Metadata says when)."""
    older = _version(home)
    newer = versions.republish(home.serving_root, older, versions.new_version(home.serving_root)).name
    _label(home, "all-tipped", _serve(home, generator.generate(reference, 300, 11), "before"), tips=all_tipped)
    assert _evaluate(home).triggers == ["performance"]  # the newer version's low live accuracy ...
    for args in (["--to", older], ["--clear"]):
        done = subprocess.run([str(CONVEYOR), "rollback", "--home", str(home.home), "--no-wait", *args], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
    assert f"cleared the rollback: {older} -> {newer}" in done.stdout and _version(home) == newer
    again = _evaluate(home)  # ... is from before it stopped serving: not evidence once it serves again
    assert not again.fired and again.signals["performance"]["state"] == live.NO_TRAFFIC, again.reason
    went_live = datetime.fromisoformat(again.signals["serving"]["live_since"]).timestamp()
    assert went_live == registry.RecordedRollback.of(registry.rollbacks(home)[-1]).time > versions.published_at(home.serving_root, newer)
    assert f"version {newer}: no traffic since {again.signals['serving']['since']}" in again.reason


def test_evidence_fires_once_and_a_new_version_starts_a_new_window(home, reference):
    pairs = _serve(home, generator.generate(reference, 300, 5), "t")
    _label(home, "all-tipped", pairs, tips=all_tipped)
    assert _evaluate(home).triggers == ["performance"]
    # What a firing tick does with the evidence: it becomes a feedback span ...
    manifest = feedback.build(home, feedback.pending(home, datetime.now(timezone.utc)), {"triggers": ["performance"]})
    assert manifest["labelled"] == 300
    again = _evaluate(home)
    assert "performance" not in again.triggers and again.signals["performance"]["state"] == live.NO_TRAFFIC
    assert again.signals["serving"]["since"] == manifest["end"]  # ... and the window starts after it
    # (This test built the span without launching it, as a tick dying in between would: the next
    # tick launches it as new data.)
    assert again.triggers == ["new_data"] and (again.span, again.span_source) == (1, FEEDBACK)
    # More low evidence after the span fires again; a new push resets the window to the new version.
    _label(home, "later", _serve(home, generator.generate(reference, 300, 6), "later"), tips=all_tipped)
    assert "performance" in _evaluate(home).triggers
    newer = versions.republish(home.serving_root, _version(home), versions.new_version(home.serving_root)).name
    fresh = _evaluate(home)
    assert fresh.signals["serving"]["version"] == newer and "performance" not in fresh.triggers
    assert fresh.signals["performance"]["state"] == live.NO_TRAFFIC


# small_run's eval split holds 41 big tippers (204 rows): the estimate's minimum is lowered to 20 for it;
# its steps, so that the run a tick launches on its span is cached up to the model card.
ESTIMATING = {"CONVEYOR_CBPE_MIN_CLASS_ROWS": "20", "CONVEYOR_MONITOR_MIN_PREDICTIONS": "200",
              "CONVEYOR_TRAIN_STEPS": "100", "CONVEYOR_EVAL_STEPS": "5"}
SURE_TRIPS = 250


def _conveyor(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(CONVEYOR), *args], capture_output=True, text=True, timeout=600, env={**os.environ, **ESTIMATING, **env})


def test_an_estimated_drop_before_labels_is_shown_by_monitor_and_fires_ct_on_an_estimate(home, shipped_rows):
    """Through the installed command and a real server: unseen trips the model calls big tippers with
    more than 0.9, where its eval split shows it overconfident (the isotonic calibrator brings them
    down). Before labels: the monitor's estimate, an alert, and a tick with ct_estimated_performance
    =trigger fires, on an estimate (once per window: tests/test_cbpe.py); after labels: estimate and
    realized side by side."""
    version = _version(home)
    model = LoadedModel.load(home.serving_root / version, version)
    rules = FeatureRules.from_schema(home.schema_path)
    pool = []
    for row in shipped_rows[SMALL_SPAN_ROWS:]:
        try:
            pool.append((parse_instance(from_row(row), rules), row))
        except InstanceError:
            continue
    answers = model.predict([instance for instance, _ in pool])
    sure = [row for (_, row), out in zip(pool, answers) if out["probability"] > 0.9 and row["tips"] != ""][:SURE_TRIPS]
    with ct_demo.ServerProcess(home.home, [str(CONVEYOR)]) as server:
        sent = ct_demo.send_trips(server.url, home.model_name, sure, "sure")
    assert len(sent) == SURE_TRIPS and {v for *_, v in sent} == {version}
    where = ("--home", str(home.home))

    before = _conveyor("monitor", *where, "--hours", "1")
    line = next(x for x in before.stdout.splitlines() if x.startswith(f"accuracy of version {version}: "))
    assert before.returncode == 3 and "estimated_performance" in before.stdout.splitlines()[-1], before.stdout + before.stderr
    assert "isotonic-calibrated, ECE" in line and "realized n/a (0 labelled predictions (accuracy needs 200))" in line, line
    estimated = float(line.split("estimated ")[1].split()[0])
    assert estimated < 0.85 and f"estimated accuracy {estimated:.3f} more than 0.05 below its offline" in line

    tick = _conveyor("ct", "tick", *where, "--spans-root", str(home.spans_root), CONVEYOR_CT_ESTIMATED_PERFORMANCE="trigger")
    fired = decisions.history(home)[-1]
    assert tick.returncode == 0, tick.stdout + tick.stderr
    assert fired.triggers == ["estimated_performance"] and fired.on_estimate and fired.outcome == decisions.OK
    assert fired.signals["estimated_performance"]["accuracy"] == pytest.approx(estimated, abs=5e-4)
    assert fired.span == 1 and fired.reason.startswith(f"estimated performance of version {version} (CBPE, no labels yet)")
    status = _conveyor("ct", "status", *where).stdout
    assert "FIRED estimated_performance: estimated performance" in status and "acted on an ESTIMATE" in status

    ct_demo.deliver_labels(home, "sure-labels", sent)
    right = sum(live.truth({"features": from_row(row)}, float(row["tips"])) == 1 for row in sure) / SURE_TRIPS  # all predicted positive
    after = _conveyor("monitor", *where, "--hours", "1")
    line = next(x for x in after.stdout.splitlines() if x.startswith(f"accuracy of version {version}: "))
    assert f"estimated {estimated:.3f} +- " in line and f"realized {right:.3f} on {SURE_TRIPS} labels" in line, line
    assert f"({SURE_TRIPS} labels: the realized accuracy is judged instead)" in line
    assert "estimated_performance" not in after.stdout.splitlines()[-1]  # the labels decide now


# --- drift / skew of served features against the serving model's training statistics -------------


def test_scaled_trip_miles_are_skew_and_wait_for_labels_before_a_run(home, reference):
    rows = generator.generate(reference, 600, 7, "miles_scale")
    pairs = _serve(home, rows, "miles")
    waiting = _evaluate(home)
    d = waiting.signals["drift"]
    # (The decile JSD of dropoff_latitude, a feature of few distinct values, is noisy between samples
    # this small, 600 served against small_run's ~600 training rows: it may cross its threshold too.)
    assert "trip_miles" in d["exceeded"] and d["version"] == _version(home)
    value, threshold = d["scores"]["trip_miles:MEDIAN_SHIFT"]
    assert value > threshold >= home.median_shift
    assert not waiting.fired and "waiting for labels to learn from (labelled predictions: no predictions)" in waiting.reason
    assert any("skewed against its training data" in a and "trip_miles" in a and "waiting for labels" in a for a in waiting.alerts)
    _label(home, "miles", pairs)
    labelled = _evaluate(home)
    assert "drift" in labelled.triggers and "trip_miles" in labelled.signals["drift"]["learnable"]


def test_clean_traffic_is_not_skew_and_small_traffic_is_not_judged(home, reference):
    _serve(home, generator.generate(reference, home.monitor_min_predictions - 100, 8), "few")
    small = _evaluate(home).signals["drift"]
    assert small["state"] == "too_few_predictions" and small["exceeded"] == []
    _serve(home, generator.generate(reference, 600, 9), "clean")
    clean = _evaluate(home).signals["drift"]
    assert clean["state"] == "scored" and clean["exceeded"] == [] and clean["predictions"] == 1000


def test_the_push_record_names_what_lineage_finds_and_an_older_record_falls_back_to_lineage(home):
    version = _version(home)
    path = home.serving_root / version / versions.RECORD_FILE
    record = json.loads(path.read_text())
    entry = registry.find(home, version)
    assert record[versions.TRAINING_STATISTICS] == entry.training_statistics_uri
    assert record[versions.OFFLINE_METRICS][label_metrics.BINARY.accuracy] > 0.5
    path.write_text(json.dumps({k: v for k, v in record.items() if k not in (versions.OFFLINE_METRICS, versions.TRAINING_STATISTICS)}))
    assert evidence.training_statistics(home, version) == (entry.training_statistics_uri, None)
    assert evidence.offline_metrics(home, [version])[version] == pytest.approx(record[versions.OFFLINE_METRICS], nan_ok=True)


# --- feedback spans: the request log and the labels, in their own namespace ------------------------


def test_a_feedback_span_is_the_labelled_served_traffic_with_its_manifest(home, reference):
    rows = generator.generate(reference, 40, 10)
    pairs = _serve(home, rows, "f")
    _label(home, "part", pairs[:30])
    found = feedback.pending(home, datetime.now(timezone.utc) + timedelta(seconds=1))
    manifest = feedback.build(home, found, {"triggers": ["performance"], "time": "t"})
    path = spans_io.span_dir(home.feedback_spans_root, 1, FEEDBACK) / spans_io.SPAN_FILE
    assert manifest["path"] == str(path) and spans_io.existing_spans(home.spans_root) == [1]  # upstream untouched
    written = spans_io.read_rows(path)
    assert [from_row(r) for r in written] == [from_row(row) for _, row in pairs[:30]]
    assert [float(r["tips"]) for r in written] == [float(row["tips"]) for _, row in pairs[:30]]
    assert manifest["labelled"] == 30 and manifest["label_files"] == ["part.jsonl"]
    assert manifest["versions"] == {_version(home): 30} and manifest["built_by"]["triggers"] == ["performance"]
    assert json.loads((path.parent / spans_io.MANIFEST_FILE).read_text())["end"] == manifest["end"]
    assert feedback.consumed_until(home).isoformat() == manifest["end"]
    with pytest.raises(FileExistsError):  # a feedback span is never rewritten
        spans_io.write_span(home.feedback_spans_root, 1, written, namespace=FEEDBACK)


def test_a_feedback_span_says_when_its_traffic_was_served_not_its_hour_partition(home, reference):
    hour_ago = datetime.now(timezone.utc) - timedelta(hours=1)
    first, last = hour_ago.replace(minute=26, second=0, microsecond=0), hour_ago.replace(minute=26, second=40, microsecond=0)
    early = _serve(home, generator.generate(reference, 20, 12), "early", when=first)
    late = _serve(home, generator.generate(reference, 20, 13), "late", when=last)
    _label(home, "both", early + late)
    manifest = feedback.build(home, feedback.pending(home, datetime.now(timezone.utc)), {"triggers": ["performance"]})
    assert manifest["start"] == first.replace(minute=0).isoformat()  # the window opens with the log's first hour ...
    assert (manifest["first_served"], manifest["last_served"]) == (first.isoformat(), last.isoformat())  # ... the traffic later
    assert f"40 labelled predictions served {first.isoformat()} .. {last.isoformat()} by version(s)" in feedback.describe(manifest)


def test_an_upstream_span_with_a_feedback_span_s_number_is_still_ingested(own_spans, shipped_rows):
    """Feedback span 2 is ingested first (its run stops at DataGate: cheap); upstream span 2 arrives
    later and is still new data, ingested from its own folder, and feedback span 2 is untouched."""
    home = own_spans
    broken = [dict(r) for r in shipped_rows[2000:2400]]
    for row in broken[:80]:
        row["payment_type"] = "Crypto"  # unknown to the schema: blocked before training
    fed = spans_io.write_span(home.feedback_spans_root, 2, broken, namespace=FEEDBACK)
    before = fed.read_bytes()
    first = controller.tick(home, local_run.launch)
    assert first.triggers == ["new_data"] and (first.span, first.span_source) == (2, FEEDBACK)
    assert first.outcome == decisions.BLOCKED and "payment_type" in first.detail
    assert spans.ingested(home, FEEDBACK) == {2} and spans.ingested(home) == {1}
    assert spans.pending(home) == []
    spans_io.write_span(home.spans_root, 2, [{**r, "payment_type": "Bitcoin"} for r in broken])
    assert spans.pending(home) == [2]
    second = controller.tick(home, local_run.launch)
    assert second.triggers == ["new_data"] and (second.span, second.span_source) == (2, UPSTREAM)
    assert second.outcome == decisions.BLOCKED
    assert spans.ingested(home) == {1, 2} and spans.ingested(home, FEEDBACK) == {2}
    assert fed.read_bytes() == before


# --- the controller --------------------------------------------------------------------------------


def test_a_quiet_tick_does_not_fire_and_says_why(home):
    quiet = controller.tick(home, local_run.launch)
    assert not quiet.fired and quiet.outcome is None
    assert quiet.reason.startswith("no new span") and "no traffic since" in quiet.reason and "schedule not due" in quiet.reason
    assert quiet.serving_before == _version(home)


def test_schedule_fires_after_its_interval_since_the_last_run(home):
    now = datetime.now(timezone.utc).timestamp()
    assert not signals.schedule(home, now, [])["due"]  # small_run ran minutes ago (in ML Metadata)
    day_later = now + (home.ct_schedule_hours + 1) * 3600
    assert signals.schedule(home, day_later, [])["due"]
    launched = decisions.Decision(time=day_later - 60, fired=True, triggers=["new_data"], reason="", outcome=decisions.OK)
    assert not signals.schedule(home, day_later, [launched])["due"]
    due = controller.evaluate(home, day_later)
    assert due.triggers == ["schedule"] and due.span == 1 and "schedule: no run for 24.0 h" in due.reason


def test_on_demand_reruns_the_newest_span(home):
    asked = controller.tick(home, local_run.launch, reason="manual check")
    assert asked.triggers == ["on_demand"] and asked.reason == "on demand: manual check"
    assert (asked.span, asked.span_source) == (1, UPSTREAM) and asked.outcome == decisions.OK and asked.run_id


def test_crashed_run_is_retried_once_then_reported(own_spans):
    home = own_spans
    broken = spans_io.span_dir(home.spans_root, 3) / spans_io.SPAN_FILE
    broken.parent.mkdir(parents=True)
    broken.write_text(",".join(spans_io.features.active().csv_columns) + "\n1,2,3\n")  # rows shorter than the header
    crash = controller.tick(home, local_run.launch)
    assert crash.triggers == ["new_data"] and crash.outcome == decisions.CRASHED and crash.attempt == 1
    retry = controller.tick(home, local_run.launch)
    assert retry.triggers[0] == "retry" and retry.span == 3 and retry.attempt == 2 and retry.outcome == decisions.CRASHED
    settled = controller.tick(home, local_run.launch)
    assert not settled.fired and any("upstream:3" in a and "crashed twice" in a for a in settled.alerts)
    # Every decision is in the log and in ML Metadata, in the same order.
    logged = decisions.history(home)
    recorded = [ct_records.as_dict(e) for e in ct_records.decisions(home)]
    assert len(logged) == len(recorded) == 3
    assert [r["triggers"] for r in recorded] == [",".join(d.triggers) for d in logged]
    assert [r["run_id"] for r in recorded] == [d.run_id or "" for d in logged]


def test_a_tick_during_a_run_does_not_launch_another(home):
    with home_lock.hold(home.home, "conveyor run"):
        busy = controller.tick(home, local_run.launch)
    assert not busy.fired and busy.outcome == decisions.BUSY
    assert "conveyor run started at" in busy.reason and f"by pid {os.getpid()}" in busy.reason
    assert decisions.history(home)[-1].outcome == decisions.BUSY


def test_a_schedule_with_no_span_to_run_is_a_decision_with_an_alert(tmp_path):
    config = configs.load(home=tmp_path / "home", spans_root=tmp_path / "no-spans")
    decision = controller.tick(config, local_run.launch)  # never ran: the schedule is due
    assert not decision.fired and decision.outcome is None and decision.triggers == []
    assert decision.reason.startswith(f"nothing to run: no spans under {config.spans_root}") and "schedule: no run for" in decision.reason
    assert decision.alerts == [f"schedule fired, but there is no span to run: {spans_io.no_spans(config.spans_root_uri)}"]
    assert decisions.history(config)[-1].reason == decision.reason


def test_a_decision_log_line_a_killed_tick_left_unfinished_is_skipped_then_dropped(tmp_path):
    config = configs.load(home=tmp_path / "home")
    decisions.record(config, decisions.Decision(time=1.0, fired=False, triggers=[], reason="first", id="a"))
    with open(decisions.log_path(config), "a") as log:
        log.write('{"time": 2.0, "fired": true, "trig')  # the append a SIGKILL cut short
    assert [d.reason for d in decisions.history(config)] == ["first"]
    decisions.record(config, decisions.Decision(time=3.0, fired=False, triggers=[], reason="third", id="c"))
    assert [d.reason for d in decisions.history(config)] == ["first", "third"]
    assert decisions.log_path(config).read_text().count("\n") == 2 and decisions.recorded(config, "c").time == 3.0


def test_ct_status_answers_without_tensorflow_and_shows_resumed_and_interrupted_decisions(home):
    """`conveyor ct status` is read only: the decision log, the journal and the rollbacks, no TensorFlow."""
    older = _version(home)
    newer = versions.republish(home.serving_root, older, versions.new_version(home.serving_root)).name
    rollback.rollback(home, to=older, reason="operator")
    resumed = {"time": time.time(), "pid": 2, "interrupted_pid": 1, "step": journal.LAUNCHED,
               "how": "launched span feedback-1 again (what the interrupted run finished is cached)"}
    decisions.record(home, decisions.Decision(
        time=time.time(), fired=True, triggers=["performance"], reason="performance of version X", span=1,
        span_source=FEEDBACK, run_id="run-1", outcome=decisions.OK, detail="blessed: True", id="d1", resumed=[resumed]))
    pending = decisions.Decision(time=time.time(), fired=True, triggers=["drift"], reason="drift: skewed on trip_miles", id="d2")
    journal.write(home, journal.Intent(id="d2", step="", decision=dataclasses.asdict(pending), pid=0, updated=0.0),
                  journal.FEEDBACK_BUILT, kill=False)
    gone = subprocess.Popen(["true"])  # the tick that wrote the journal: a process that has ended
    gone.wait()
    written = json.loads(journal.path(home).read_text())
    journal.path(home).write_text(json.dumps({**written, "pid": gone.pid}))
    done = subprocess.run([str(CONVEYOR), "ct", "status", "--home", str(home.home)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "FIRED performance: performance of version X\n    span feedback-1 -> ok (run run-1)" in out
    assert f"was interrupted at launched; {resumed['how']}" in out
    assert "unfinished decision: FIRED drift: drift: skewed on trip_miles\n    reached feedback_built at" in out
    assert "was interrupted: the next tick carries it through" in out
    assert f"{newer} -> {older}: operator" in out
    probe = subprocess.run(  # what the command imports, in a process of its own: TensorFlow is not among it
        [sys.executable, "-c", "import sys; from conveyor.cli import dispatch; "
         f"code = dispatch.main(['ct', 'status', '--home', {str(home.home)!r}]); "
         "print(code, 'tensorflow' in sys.modules, 'tfx' in sys.modules, file=sys.stderr)"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(configs.REPO_ROOT)},
    )
    assert probe.stderr.strip().splitlines()[-1] == "0 False False", probe.stderr


def test_mcnemar_is_exact_and_one_sided():
    assert guard.mcnemar_p(10, 0) == pytest.approx(2**-10)
    assert guard.mcnemar_p(0, 10) == 1.0
    assert guard.mcnemar_p(0, 0) == 1.0
    assert guard.mcnemar_p(6, 4) == pytest.approx(sum(math.comb(10, k) for k in range(6, 11)) / 1024)
    assert guard.mcnemar_p(30, 12) < 0.01 < guard.mcnemar_p(20, 12)


def test_a_refused_run_s_decision_gives_every_reason(shipped_rows, tmp_path):
    """The decision of a run whose candidate was not blessed names why (not just "blessed: False")."""
    from conveyor.local.run_summary import RunSummary
    from data import spans_io
    from pipeline import evaluation

    config = configs.load(home=tmp_path / "home", spans_root=tmp_path / "spans")
    spans_io.write_span(config.spans_root, 1, shipped_rows[:50])
    refusal = "payment_type=Cash (412 examples): binary_accuracy dropped 0.1500 against the baseline's 0.8500 (at most 0.05 allowed)"
    refused = evaluation.Evaluation(metrics={"overall": {"example_count": 900}}, blessed=False, failures=[refusal])
    outcome = RunSummary(
        run_id="run-1", ok=True, seconds=1.0, log_file=tmp_path / "run.log", timings=[("Evaluator", "ran", 1.0)],
        span=1, evaluation=refused,
    )
    decision = controller.tick(config, lambda cfg, trigger: outcome)
    assert decision.fired and decision.outcome == decisions.OK
    assert decision.detail == f"blessed: False; pushed: nothing; why: not blessed: {refusal}"
