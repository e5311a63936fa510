"""Workers that served long enough are replaced without failing a request (serving/recycling.py),
and `conveyor serve --no-fold` answers through the traced call; real `conveyor serve` processes."""
from __future__ import annotations

import os
import re
import threading
import time
from datetime import datetime, timedelta, timezone

import grpc
import httpx
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from models.instances import from_row, to_example
from pipeline import versions
from serving import recycling, request_log, status
from tests.serving_helpers import Serve, copy_home, wait_for

PREDICT = "/v1/models/taxi:predict"


def test_a_worker_is_replaced_after_its_hot_swaps_and_no_rest_request_fails(small_run, tmp_path, shipped_rows):
    config = copy_home(small_run, tmp_path / "home")
    first = versions.serving_version(config.serving_root)
    instances = [from_row(r) for r in shipped_rows[:2]]
    answers: list[tuple[str, object, str]] = []  # (api, status or transport error, version)
    stop = threading.Event()
    env = {"CONVEYOR_WORKER_RECYCLE_SWAPS": "1"}
    with Serve(config.home, env=env, args=("--grpc-port", "0")) as server:
        target = re.search(r"gRPC at (\S+)", server.first_line).group(1)

        def rest() -> None:
            with server.client() as client:  # keep-alive; honours Connection: close
                while not stop.is_set():
                    try:
                        r = client.post(PREDICT, json={"instances": instances})
                        answers.append(("rest", r.status_code, r.headers.get("X-Model-Version", "")))
                    except httpx.TransportError as exc:
                        answers.append(("rest", repr(exc), ""))

        def grpc_calls() -> None:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "taxi"
            request.inputs["examples"].CopyFrom(tf.make_tensor_proto([to_example(i) for i in instances]))
            with grpc.insecure_channel(target) as channel:
                stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
                while not stop.is_set():
                    try:
                        response = stub.Predict(request, timeout=30)
                        answers.append(("grpc", 200, str(response.model_spec.version.value)))
                    except grpc.RpcError as exc:
                        answers.append(("grpc", exc.code().name, ""))

        threads = [threading.Thread(target=rest) for _ in range(3)] + [threading.Thread(target=grpc_calls)]
        for thread in threads:
            thread.start()
        try:
            [before] = wait_for(lambda: status.live(config.home), what="the worker's status")
            wait_for(lambda: len(answers) > 50, what="answers before the push")
            newer = versions.republish(config.serving_root, first, str(int(first) + 100)).name
            replaced = wait_for(lambda: "replacing worker 0" in server.stderr() and [
                s for s in status.live(config.home) if s["pid"] != before["pid"]], timeout=120, what="a replacement")
            wait_for(lambda: before["pid"] not in {s["pid"] for s in status.live(config.home)}, timeout=60,
                     what="the replaced worker gone")
            count = len(answers)
            wait_for(lambda: len(answers) > count + 50, what="answers after the replacement")
        finally:
            stop.set()
            for thread in threads:
                thread.join(60)
    assert f"replacing worker 0 (pid {before['pid']}) after 1 hot swaps (worker_recycle_swaps=1)" in server.stderr()
    assert replaced[0]["serving"] == newer and replaced[0]["swaps"] == 1  # it loaded the newest version once
    assert not [a for a in answers if a[0] == "rest" and a[1] != 200]
    # gRPC: a call reaching the old worker the moment its grpc.aio server stops comes back CANCELLED
    # (grpc stops serving new calls before its GOAWAY reaches the client): about 1 call in 3
    # replacements with 2 clients in a closed loop, measured; the gRPC port itself never goes away.
    grpc_failures = [a for a in answers if a[0] == "grpc" and a[1] != 200]
    assert len(grpc_failures) <= 1 and {a[1] for a in grpc_failures} <= {"CANCELLED"}, grpc_failures[:5]
    answers = [a for a in answers if a[1] == 200]
    assert {v for _, _, v in answers} == {first, newer}
    now = datetime.now(timezone.utc)
    window = request_log.read(config.request_log_root, now - timedelta(hours=1), now + timedelta(minutes=1))
    assert len(window.records) == len({(r["request_id"], r["index"]) for r in window.records}) == 2 * len(answers)


def test_the_memory_rule_measures_a_real_process(small_run):
    config, _ = small_run
    config = config.replace(worker_recycle_swaps=0, worker_recycle_growth_mb=32, poll_seconds=1.0)
    baseline = recycling.resident_bytes(os.getpid())
    grown = bytearray(64 * 2**20)
    grown[:: 4096] = b"x" * len(grown[:: 4096])  # touch every page
    rss = recycling.resident_bytes(os.getpid())
    assert recycling.reason(config, {"swaps": 1}, baseline, rss, age=5.0) is None  # too young
    why = recycling.reason(config, {"swaps": 1}, baseline, rss, age=60.0)
    assert why is not None and why.startswith("its memory grew by") and "worker_recycle_growth_mb=32" in why
    assert recycling.reason(config.replace(worker_recycle_growth_mb=0), {"swaps": 500}, baseline, rss, age=60.0) is None
    del grown


def test_no_fold_answers_through_the_traced_call(small_run, tmp_path, shipped_rows):
    config = copy_home(small_run, tmp_path / "home")
    version = versions.serving_version(config.serving_root)
    instances = [from_row(r) for r in shipped_rows[:8]]
    loaded = tf.saved_model.load(str(config.serving_root / version))
    expected = loaded.signatures["serving_default"](examples=tf.constant([to_example(i) for i in instances]))
    with Serve(config.home, args=("--no-fold",)) as server, server.client() as client:
        for _ in range(16):  # polls pass: a fold would have been made and logged by now
            response = client.post(PREDICT, json={"instances": instances})
            assert [p["probability"] for p in response.json()["predictions"]] == expected["probability"].numpy().tolist()
            time.sleep(0.3)
    assert f"serving version {version}" in server.stderr()
    assert "folded graph" not in server.stderr()
