"""The continuous-training controller, driven through every trigger by the scripted scenario."""
from __future__ import annotations

import os

import pytest

from conveyor import local_run
from ct import controller, decisions, scenario
from metadata import connection, runs
from pipeline import configs, home_lock


@pytest.fixture(scope="module")
def steps(tmp_path_factory):
    home = tmp_path_factory.mktemp("ct") / "home"
    config = configs.load(home=home, spans_root=home / "spans", train_steps=50, eval_steps=5)
    return config, {s.name: s.decision for s in scenario.run(config, local_run.launch, rows_per_span=400)}


def _step(steps, name):
    return steps[1][name]


def test_new_span_fires_new_data_and_trains(steps):
    first = _step(steps, "span 1 arrives")
    assert first.fired and first.triggers[0] == "new_data" and first.span == 1
    assert first.outcome == decisions.OK and "pushed: " in first.detail
    second = _step(steps, "span 2 arrives")
    assert second.triggers == ["new_data"] and second.span == 2 and second.outcome == decisions.OK


def test_quiet_tick_does_not_fire_and_says_why(steps):
    quiet = _step(steps, "nothing changed")
    assert not quiet.fired and quiet.outcome is None
    assert "no new span" in quiet.reason and "schedule not due" in quiet.reason


def test_on_demand_fires_with_its_reason(steps):
    asked = _step(steps, "operator asks for a run")
    assert asked.triggers == ["on_demand"] and "manual check" in asked.reason
    assert asked.outcome == decisions.OK and "fully cached" in asked.detail


def test_schedule_fires_after_its_interval(steps):
    due = _step(steps, "a day passes")
    assert due.triggers == ["schedule"] and due.signals["schedule"]["due"]
    assert due.outcome == decisions.OK


def test_schema_broken_span_is_blocked_before_training(steps):
    config, _ = steps
    broken = _step(steps, "span 3 arrives without its fare column")
    assert broken.triggers == ["new_data"] and broken.span == 3
    assert broken.outcome == decisions.BLOCKED
    assert "fare: SCHEMA_MISSING_COLUMN" in broken.detail
    nodes = runs.run_executions(connection.open_store(connection.sqlite_config(config.metadata_path)), broken.run_id)
    assert "DataGate" in nodes and not {"Transform", "Trainer", "Pusher"} & set(nodes)


def test_drifted_span_is_warned_with_the_drifting_feature_named(steps):
    drifted = _step(steps, "span 4 arrives with no credit-card trips")
    assert drifted.outcome == decisions.OK  # default policy: warn and continue
    assert "drift over threshold (policy warn): payment_type" in drifted.detail


def test_feedback_drift_fires_once_per_batch(steps):
    drift = _step(steps, "served traffic drifts (no labels yet)")
    assert drift.triggers == ["drift"] and "fare" in drift.signals["drift"]["exceeded"]
    assert "no labelled feedback" in drift.reason and drift.outcome == decisions.OK
    again = _step(steps, "same traffic, next tick")
    assert not again.fired and "already acted on" in again.reason


def test_poor_live_accuracy_fires_performance_and_learns_from_the_feedback(steps):
    perf = _step(steps, "labels arrive: far fewer big tippers than predicted")
    assert "performance" in perf.triggers
    signal = perf.signals["performance"]
    assert signal["low"] and signal["labelled_rows"] >= signal["min_rows"]
    assert signal["live_accuracy"] < max(signal["floor"], signal["offline_accuracy"] - signal["max_drop"])
    assert "folded into span 5" in perf.reason and perf.span == 5 and perf.outcome == decisions.OK
    after = steps[1]["nothing changed"]  # the later quiet tick has the same name: the dict keeps the last
    assert not after.fired and after.signals["performance"]["labelled_rows"] == 0


def test_crashed_run_is_retried_once_then_reported(steps):
    crash = _step(steps, "span 6 arrives malformed")
    assert crash.triggers == ["new_data"] and crash.outcome == decisions.CRASHED and crash.attempt == 1
    retry = _step(steps, "next tick")
    assert retry.triggers[0] == "retry" and retry.span == 6 and retry.attempt == 2 and retry.outcome == decisions.CRASHED
    settled = _step(steps, "next tick again")
    assert not settled.fired and "[6] crashed twice: needs attention" in settled.reason


def test_every_decision_is_logged_and_recorded_in_mlmd(steps):
    config, by_name = steps
    logged = decisions.history(config)
    assert len(logged) == 14
    assert all(d.reason and d.signals for d in logged)
    recorded = decisions.recorded_in_mlmd(config)
    assert len(recorded) == len(logged)
    assert [e.properties["fired"].int_value for e in recorded] == [int(d.fired) for d in logged]
    assert [e.properties["triggers"].string_value for e in recorded] == [",".join(d.triggers) for d in logged]


def test_a_tick_during_a_run_does_not_launch_another(steps):
    config, _ = steps
    with home_lock.hold(config.home, "conveyor run"):
        busy = controller.tick(config, local_run.launch)
    assert not busy.fired and busy.outcome == decisions.BUSY
    assert "conveyor run started at" in busy.reason and f"by pid {os.getpid()}" in busy.reason
    assert decisions.history(config)[-1].outcome == decisions.BUSY


def test_live_accuracy_compares_served_probabilities_with_arrived_labels():
    from ct import feedback

    rows = [
        {"fare": "10.0", "tips": "3.0", "probability": "0.9"},  # big tipper, predicted: right
        {"fare": "10.0", "tips": "0.0", "probability": "0.8"},  # not, predicted: wrong
        {"fare": "10.0", "tips": "2.0", "probability": "0.1"},  # exactly 20 %: not, right
        {"fare": "10.0", "tips": "5.0", "probability": "0.2"},  # big tipper missed: wrong
    ]
    assert feedback.live_accuracy(rows) == 0.5
    assert feedback.live_accuracy([]) is None


def test_a_refused_run_s_decision_gives_every_reason(shipped_rows, tmp_path):
    """The decision of a run whose candidate was not blessed names why (not just "blessed: False")."""
    from conveyor.run_summary import RunSummary
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
