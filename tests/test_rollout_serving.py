"""Rollouts through a real `conveyor serve` (two workers) and the installed `conveyor`, on small_run's
model and a deliberately worse copy of it (tests/serving_helpers.py publish_inverted: the other
class for every trip), one server for the whole story:

  1. the worse copy serves (pushed direct); the original is pushed again under canary:20: about
     20 % of requests (a binomial bound) are answered by it, X-Model-Version and the request log
     say so, REST's /labels/canary and gRPC's version_label reach it; labels arrive; `conveyor ct
     tick` promotes it;
  2. the worse copy is pushed again under shadow: no client is ever answered by it, every record
     carries its answer; a worker killed mid-rollout comes back following it; labels arrive;
     `conveyor ct tick` aborts it and the promoted version keeps serving.
"""
from __future__ import annotations

import math
import os
import re
import signal
import subprocess
from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from conveyor import demo
from metadata import lineage
from models.instances import from_row
from pipeline import rollouts, versions
from serving import request_log, status
from tests.serving_helpers import CONVEYOR, Serve, copy_home, metric, publish_inverted, wait_for

TRAFFIC = slice(800, 1200)  # rows small_run did not train on
# a loose latency limit: both calls share two busy cores here, and the story judges accuracy
SETTINGS = {"CONVEYOR_GUARD_MIN_LABELS": "50", "CONVEYOR_POLL_SECONDS": "0.2", "CONVEYOR_ROLLOUT_MAX_LATENCY_RATIO": "5"}


def _send(client, rows, prefix: str) -> list[tuple[str, int, dict, str]]:
    """One trip per request, each with its own X-Request-Id; (request_id, 0, row, X-Model-Version)."""
    sent = []
    for i, row in enumerate(rows):
        request_id = f"{prefix}-{i}"
        answer = client.post("/v1/models/taxi:predict", json={"instances": [from_row(row)]}, headers={"X-Request-Id": request_id})
        assert answer.status_code == 200, answer.text
        sent.append((request_id, 0, row, answer.headers["X-Model-Version"]))
    return sent


def _records(config, prefix: str) -> dict[str, dict]:
    now = datetime.now(timezone.utc)
    window = request_log.read(config.request_log_root, now - timedelta(hours=2), now + timedelta(minutes=1))
    return {r["request_id"]: r for r in window.records if r["request_id"].startswith(prefix + "-")}


def _following(config, candidate: str | None):
    """Every live worker holds `candidate` as its rollout's loaded candidate (None: no rollout)."""
    def check():
        found = status.live(config.home)
        held = [(s.get("rollout") or {}) for s in found]
        if candidate is None:
            return len(found) == 2 and all(not h for h in held)
        return len(found) == 2 and all(h.get("candidate") == candidate and h.get("candidate_loaded") for h in held)
    return check


def _conveyor(config, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(CONVEYOR), *args, "--home", str(config.home)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **SETTINGS})


def _tick(config) -> str:
    done = subprocess.run([str(CONVEYOR), "ct", "tick", "--home", str(config.home), "--spans-root", str(config.spans_root)],
                          capture_output=True, text=True, timeout=600, env={**os.environ, **SETTINGS})
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _grpc_versions(first_line: str, row: dict) -> dict[str, str]:
    """X-Model-Version of a gRPC Predict naming each label (ModelSpec.version_label)."""
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_service_pb2_grpc

    from models.instances import to_example

    found = {}
    with grpc.insecure_channel(re.search(r"gRPC at (\S+)", first_line).group(1)) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for label in ("stable", "canary"):
            request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(name="taxi", version_label=label))
            request.inputs["examples"].CopyFrom(tf.make_tensor_proto([to_example(from_row(row))]))
            _, call = stub.Predict.with_call(request, timeout=60)
            found[label] = dict(call.trailing_metadata())["x-model-version"]
    return found


@pytest.fixture(scope="module")
def story(small_run, shipped_rows, tmp_path_factory):
    config = copy_home(small_run, tmp_path_factory.mktemp("rollout") / "home")
    original = versions.ready_versions(config.serving_root)[-1]
    worse = publish_inverted(config.serving_root, original, versions.new_version(config.serving_root)).name
    rows = shipped_rows[TRAFFIC]
    found: dict = {"config": config, "original": original, "worse": worse}
    with Serve(config.home, SETTINGS, workers=2, args=("--grpc-port", "0")) as server, server.client() as client:
        # 1. canary: the original again, better than the worse copy serving
        better = versions.republish(config.serving_root, original, versions.new_version(config.serving_root), "canary:20").name
        wait_for(_following(config, better), 120, "both workers to load the canary")
        found["labels"] = client.get("/v1/models/taxi").json()["labels"]
        found["canary_sent"] = _send(client, rows, "canary")
        found["canary_records"] = _records(config, "canary")
        found["by_label"] = client.post("/v1/models/taxi/labels/canary:predict", json={"instances": [from_row(rows[0])]}).headers["X-Model-Version"]
        found["grpc_labels"] = _grpc_versions(server.first_line, rows[0])
        found["metrics"] = client.get("/metrics").text
        demo.deliver_labels(config, "canary-labels", found["canary_sent"])
        found["canary_tick"] = _tick(config)
        wait_for(_following(config, None), 60, "the workers to end the rollout")
        found["after_promotion"] = _send(client, rows[:20], "promoted")
        found["better"] = better
        # 2. shadow: the worse copy again
        shadow = publish_inverted(config.serving_root, original, versions.new_version(config.serving_root), "shadow").name
        wait_for(_following(config, shadow), 120, "both workers to load the shadow")
        first = _send(client, rows[:100], "shadow-a")
        victim = status.live(config.home)[0]["pid"]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: victim not in [s["pid"] for s in status.live(config.home)] and _following(config, shadow)(),
                 180, "the killed worker to come back following the rollout")
        found["shadow_sent"] = first + _send(client, rows[100:], "shadow-b")
        found["shadow_records"] = {**_records(config, "shadow-a"), **_records(config, "shadow-b")}
        found["status_before"] = _conveyor(config, "rollout", "status")
        demo.deliver_labels(config, "shadow-labels", found["shadow_sent"])
        found["shadow_tick"] = _tick(config)
        wait_for(_following(config, None), 60, "the workers to end the shadow rollout")
        found["after_abort"] = _send(client, rows[:20], "aborted")
        found["shadow"] = shadow
        found["status_after"] = _conveyor(config, "rollout", "status")
        found["promote_again"] = _conveyor(config, "rollout", "promote")
        found["models"] = _conveyor(config, "models")
        found["ct_status"] = _conveyor(config, "ct", "status")
        found["lineage"] = lineage.rollout_steps(config, better)  # a copy: `conveyor lineage` has no run to trace
    return found


def test_a_canary_answers_its_share_and_says_so(story):
    sent, better, worse = story["canary_sent"], story["better"], story["worse"]
    assert story["labels"] == {"stable": worse, "canary": better}
    n, p = len(sent), 0.20
    answered = Counter(version for *_, version in sent)
    assert set(answered) == {better, worse}
    assert abs(answered[better] - n * p) <= 4 * math.sqrt(n * p * (1 - p)), answered  # ~1 in 16,000 by chance
    for request_id, _, _, version in sent:  # the same id always goes the same way, on either worker
        assert version == (better if rollouts.bucket(request_id) < 2000 else worse)
        record = story["canary_records"][request_id]
        assert record["model_version"] == version and record["label"] == ("canary" if version == better else "stable")
        assert record["model_ms"] > 0 and "shadow_version" not in record
    assert story["by_label"] == better
    assert story["grpc_labels"] == {"stable": worse, "canary": better}
    scraped = story["metrics"]
    assert metric(scraped, "conveyor_rollout_predictions_total", label="canary", version=better) >= answered[better]
    assert metric(scraped, "conveyor_rollout_predictions_total", label="stable", version=worse) >= answered[worse]


def test_the_tick_promotes_the_better_canary(story):
    out, better = story["canary_tick"], story["better"]
    assert "FIRED rollout" in out and f"rollout of {better} (canary:20, stable {story['worse']}): PROMOTE: no worse" in out, out
    assert {version for *_, version in story["after_promotion"]} == {better}


def test_a_shadow_never_answers_a_client_and_every_record_has_its_answer(story):
    shadow, better = story["shadow"], story["better"]
    assert {version for *_, version in story["shadow_sent"]} == {better}
    records = story["shadow_records"]
    assert len(records) == len(story["shadow_sent"])
    for record in records.values():
        assert record["model_version"] == better and record["label"] == "stable" and record["shadow_version"] == shadow
        assert record["shadow_output"]["predicted_class"] == 1 - record["output"]["predicted_class"]
    out = story["status_before"].stdout
    assert f"rollout of version {shadow} (shadow) against stable {better}: running" in out, out


def test_the_tick_aborts_the_worse_shadow_and_stable_keeps_serving(story):
    out, shadow, better = story["shadow_tick"], story["shadow"], story["better"]
    assert "FIRED rollout" in out and f"rollout of {shadow} (shadow, stable {better}): ABORT: the candidate is less accurate" in out, out
    assert "McNemar one-sided" in out
    assert {version for *_, version in story["after_abort"]} == {better}
    assert versions.serving_version(story["config"].serving_root) == better
    assert f"aborted (CT: rollout of {shadow}" in story["status_after"].stdout
    again = story["promote_again"]
    assert again.returncode == 2 and again.stderr.strip().endswith("push again to start another"), again.stderr
    steps = story["lineage"]
    assert steps[0] == "pushed under canary:20" and len(steps) == 2, steps
    assert steps[1].startswith("promoted ") and f"against stable {story['worse']}: CT: rollout of {better}" in steps[1], steps
    for listing in (story["models"].stdout, story["ct_status"].stdout):
        assert f"{better} (canary:20, stable {story['worse']}): promoted" in listing, listing
        assert f"{shadow} (shadow, stable {better}): aborted" in listing, listing
