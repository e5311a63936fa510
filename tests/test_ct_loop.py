"""The closed loop with zero glue, as a person runs it: the installed `conveyor` command only.

A real `conveyor serve` process on a loopback port; a client sends shifted trips over HTTP; their
labels arrive in the documented labels format; `conveyor ct tick` fires performance, builds a
feedback span from the request log and the labels, trains, pushes; the running server swaps;
`conveyor lineage` names the trigger and the served traffic; a second tick on the same evidence
does nothing; the post-push guard keeps the better new version, and rolls back a worse one.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from conveyor import demo as ct_demo
from ct import decisions, guard
from data import generator, spans_io
from metadata import registry
from pipeline import configs, versions

# The module fixture runs two pipelines and five commands (about 6 minutes on an idle 2-core
# machine, 15 and more on a busy one); it counts against its first test's timeout.
pytestmark = pytest.mark.timeout(3000)

CONVEYOR = str(Path(sys.executable).parent / "conveyor")  # the installed entry point
STEPS = {"CONVEYOR_TRAIN_STEPS": "100", "CONVEYOR_EVAL_STEPS": "5"}
UPSTREAM_ROWS, SHIFTED = 800, 1200


def conveyor(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CONVEYOR, *args], capture_output=True, text=True, env={**os.environ, **STEPS}, timeout=1800)


@dataclass
class Loop:
    config: configs.PipelineConfig
    out: dict[str, subprocess.CompletedProcess]
    log: dict[str, decisions.Decision]
    first: str  # the version pushed from upstream span 1
    second: str  # the version retrained on served traffic
    served_after_push: str  # X-Model-Version of the running server after the push


@pytest.fixture(scope="module")
def reference():
    return generator.shipped_reference()


@pytest.fixture(scope="module")
def loop(tmp_path_factory, reference) -> Loop:
    base = tmp_path_factory.mktemp("loop")
    config = configs.load(home=base / "home", spans_root=base / "spans")
    where = ["--home", str(config.home), "--spans-root", str(config.spans_root)]
    out, log = {}, {}

    def tick(name: str) -> None:
        out[name] = conveyor("ct", "tick", *where)
        log[name] = decisions.history(config)[-1]

    generator.write_generated_span(config.spans_root, 1, reference, UPSTREAM_ROWS, 21)
    tick("first")
    first = log["first"].pushed_version
    assert first, out["first"].stdout + out["first"].stderr
    probe = reference[0]
    with ct_demo.ServerProcess(config.home, [CONVEYOR]) as server:
        # More shifted trips than upstream rows: the retrained model must learn the new world.
        sent = ct_demo.send_trips(server.url, config.model_name, ct_demo.shifted_trips(reference, SHIFTED, 22), "shifted")
        assert {version for *_, version in sent} == {first}
        ct_demo.deliver_labels(config, "shifted-labels", sent)
        tick("retrain")
        second = log["retrain"].pushed_version
        assert second, out["retrain"].stdout + out["retrain"].stderr
        served_after_push = server.wait_for_version(config.model_name, probe, second)
        out["lineage"] = conveyor("lineage", "--home", str(config.home), "--version", second)
        tick("same evidence")
        sent = ct_demo.send_trips(server.url, config.model_name, ct_demo.shifted_trips(reference, 400, 23), "after")
        ct_demo.deliver_labels(config, "after-labels", sent)
        tick("guard")
    out["status"] = conveyor("ct", "status", "--home", str(config.home))  # read only: takes no --spans-root
    out["models"] = conveyor("models", "--home", str(config.home))
    return Loop(config, out, log, first, second, served_after_push)


def test_the_first_span_trains_and_pushes(loop):
    first = loop.log["first"]
    assert loop.out["first"].returncode == 0
    # A fresh home has never run, so the schedule is due too; new_data decides the action.
    assert first.triggers == ["new_data", "schedule"] and (first.span, first.span_source) == (1, spans_io.UPSTREAM)


def test_late_labels_fire_performance_and_served_traffic_becomes_a_feedback_span(loop):
    retrain = loop.log["retrain"]
    assert loop.out["retrain"].returncode == 0, loop.out["retrain"].stdout
    assert retrain.triggers[0] == "performance" and retrain.signals["performance"]["version"] == loop.first
    assert retrain.signals["performance"]["state"] == "low" and retrain.signals["performance"]["labeled"] == SHIFTED
    assert "drift" in retrain.triggers and "trip_miles" in retrain.signals["drift"]["exceeded"]
    assert (retrain.span, retrain.span_source) == (1, spans_io.FEEDBACK) and retrain.outcome == decisions.OK
    manifest = retrain.feedback
    assert manifest["labelled"] == SHIFTED and manifest["label_files"] == ["shifted-labels.jsonl"]
    assert manifest["versions"] == {loop.first: SHIFTED}
    assert Path(manifest["path"]) == spans_io.span_dir(loop.config.feedback_spans_root, 1, spans_io.FEEDBACK) / spans_io.SPAN_FILE
    assert spans_io.existing_spans(loop.config.spans_root) == [1]  # nothing written among the upstream spans
    assert loop.second != loop.first and "served traffic becomes feedback span 1" in loop.out["retrain"].stdout
    assert registry.find(loop.config, loop.second).window_feedback_spans == [1]


def test_the_running_server_swaps_to_the_new_version(loop):
    assert loop.served_after_push == loop.second


def test_lineage_names_the_trigger_and_the_served_traffic(loop):
    text = loop.out["lineage"].stdout
    assert loop.out["lineage"].returncode == 0, loop.out["lineage"].stderr
    manifest = loop.log["retrain"].feedback
    assert "launched by: CT trigger performance" in text
    assert "training window spans [1] + feedback spans [1] (served traffic)" in text
    served = f"{manifest['first_served']} to {manifest['last_served']}"  # when its rows were served, not the window's bounds
    assert f"traffic from {served}: {SHIFTED} labelled predictions of version(s) {loop.first}" in text
    assert "labels     from shifted-labels.jsonl" in text
    assert "feedback/spans/feedback-1/data.csv" in text


def test_a_second_tick_on_the_same_evidence_does_not_fire(loop):
    again = loop.log["same evidence"]
    assert not again.fired and loop.out["same evidence"].returncode == 0
    assert again.signals["serving"]["version"] == loop.second
    assert again.signals["performance"]["labeled"] == 0  # the new version's window holds only the swap probes


def test_the_guard_keeps_a_new_version_that_is_not_worse(loop):
    checked = loop.log["guard"].signals["guard"]
    assert not loop.log["guard"].fired
    assert checked["state"] == guard.KEPT and checked["version"] == loop.second and checked["replaced"] == loop.first
    assert checked["labelled"] == 400 and checked["p_value"] >= loop.config.guard_alpha
    assert "guard: version" in loop.out["guard"].stdout and "kept" in loop.out["guard"].stdout


def test_status_and_models_show_the_loop(loop):
    assert "FIRED performance" in loop.out["status"].stdout and "rollbacks: none" in loop.out["status"].stdout
    assert f"* {loop.second}" in loop.out["models"].stdout and "1,f1" in loop.out["models"].stdout
    card = json.loads(Path(versions.card_file(loop.config.serving_root, loop.second, versions.CARD_JSON)).read_text())
    assert card["model_details"]["trigger"] == f"CT controller: {'+'.join(loop.log['retrain'].triggers)}"  # what launched its run


def test_a_worse_new_version_is_rolled_back(loop, reference, tmp_path):
    """The first model, pushed again as the newest version, serves the shifted world: the guard finds
    it significantly worse than the retrained one it replaced, on the same requests, and rolls back."""
    home = tmp_path / "home"
    for name in ("serving_model", "ct", "feedback", "labels", "request_log"):
        shutil.copytree(loop.config.home / name, home / name)
    shutil.copy2(loop.config.metadata_path, home / loop.config.metadata_path.name)
    config = loop.config.replace(home=home)
    worse = versions.republish(config.serving_root, loop.first, str(int(time.time()))).name  # pushed now
    with ct_demo.ServerProcess(home, [CONVEYOR]) as server:
        sent = ct_demo.send_trips(server.url, config.model_name, ct_demo.shifted_trips(reference, 400, 24), "worse")
        assert {version for *_, version in sent} == {worse}
        ct_demo.deliver_labels(config, "worse-labels", sent)
        result = conveyor("ct", "tick", "--home", str(home), "--spans-root", str(config.spans_root))
        served = server.wait_for_version(config.model_name, reference[0], loop.second)
    decision = decisions.history(config)[-1]
    checked = decision.signals["guard"]
    assert result.returncode == 0, result.stdout + result.stderr
    assert decision.triggers[0] == "guard" and decision.outcome == decisions.ROLLED_BACK  # before any retrain
    assert checked["state"] == guard.WORSE and (checked["version"], checked["replaced"]) == (worse, loop.second)
    assert checked["p_value"] < config.guard_alpha and checked["new_accuracy"] < checked["old_accuracy"]
    assert versions.serving_version(config.serving_root) == loop.second and served == loop.second
    [recorded] = [registry.RecordedRollback.of(e) for e in registry.rollbacks(config)]
    assert (recorded.from_version, recorded.to_version) == (worse, loop.second) and recorded.reason.startswith("CT guard")
    models = conveyor("models", "--home", str(home)).stdout
    status = conveyor("ct", "status", "--home", str(home)).stdout
    for text in (models, status):
        assert f"{worse} -> {loop.second}: CT guard: guard: version {worse} WORSE" in text
    assert "ALERT: rolled back" in result.stdout
    assert json.loads((home / "ct" / "decisions.jsonl").read_text().splitlines()[-1])["rollback"]["to"] == loop.second
