"""Bad input against a real `conveyor serve` process: each gets a precise 4xx in one error shape
with the request id, nothing is silently changed, and the server keeps serving."""
from __future__ import annotations

import base64
import json
import time
from datetime import datetime, timedelta, timezone

import pytest
import tensorflow as tf

from models.instances import from_row, to_example
from serving import request_log
from tests import sockets
from tests.serving_helpers import Serve, copy_home, metric, wait_for

MODEL = "taxi"
PREDICT = f"/v1/models/{MODEL}:predict"


@pytest.fixture(scope="module")
def served(small_run, tmp_path_factory):
    home = copy_home(small_run, tmp_path_factory.mktemp("input") / "home")
    with Serve(home.home) as server:
        server.config = home
        yield server


@pytest.fixture(scope="module")
def good(shipped_rows):
    return from_row(shipped_rows[0])


def _b64(example: tf.train.Example) -> dict:
    return {"b64": base64.b64encode(example.SerializeToString()).decode()}


def _logged(config, request_id: str) -> list[dict]:
    now = datetime.now(timezone.utc)
    window = request_log.read(config.request_log_root, now - timedelta(hours=1), now + timedelta(minutes=1))
    return [r for r in window.records if r["request_id"] == request_id]


def test_bad_inputs_get_a_precise_4xx_with_the_request_id(served, good):
    example = tf.train.Example.FromString(to_example(good))
    example.features.feature["fare"].float_list.value.append(99.0)  # two values for fare
    two_fares = _b64(example)
    example = tf.train.Example.FromString(to_example(good))
    example.features.feature["company"].bytes_list.value[:] = [b"Taxi \xff\xfe Co"]
    bad_utf8 = _b64(example)
    cases = [
        (b"[" * 10_000 + b"]" * 10_000, 400, "malformed JSON body"),  # was a RecursionError, 500
        (json.dumps({"instances": [{**good, "company": "\ud800"}]}).encode(), 400, "malformed JSON body"),  # lone surrogate
        (b'{"instances": [{"fare": NaN}]}', 400, "malformed JSON body"),
        (json.dumps({"instances": [{**good, "trip_start_timestamp": 2**63}]}).encode(), 400, "out of the int64 range"),
        (json.dumps({"instances": [{**good, "fare": 1e39}]}).encode(), 400, "does not fit a float32"),  # was inf
        (json.dumps({"instances": [{**good, "fare": 1e-50}]}).encode(), 400, "too small for a float32"),
        (json.dumps({"instances": [{**good, "trip_start_timestamp": 1e17}]}).encode(), 400, "float beyond 2^53"),
        (json.dumps({"instances": [two_fares]}).encode(), 400, "'fare' has 2 values"),  # was cut to the first
        (json.dumps({"instances": [bad_utf8]}).encode(), 400, "'company' is not valid UTF-8"),  # was replaced
        (json.dumps({"instances": [{**good, "trip_start_hour": -5}]}).encode(), 400, "'trip_start_hour' = -5 is outside the schema's domain [0, 23]"),
        (json.dumps({"instances": [{**good, "fare": -100.0}]}).encode(), 400, "'fare' = -100.0 is outside the schema's domain [0, inf]"),
        (json.dumps({"instances": [{**good, "pickup_latitude": 1e30}]}).encode(), 400, "'pickup_latitude' = 1e+30 is outside the schema's domain [41.6, 42.1]"),
        (json.dumps({"instances": [{**good, "company": "x" * 900_000}]}).encode(), 400, "'company' is 900000 bytes long; the limit is 1024"),
        (json.dumps({"instances": [{**good, "fare": "ten"}]}).encode(), 400, "feature 'fare' must be a number"),
        (json.dumps({"instances": [{**good, "tips": 2.0}]}).encode(), 400, "unknown feature 'tips'"),
        (json.dumps({"instances": [good] * 257}).encode(), 413, "batch of 257 instances exceeds the limit of 256"),
        (json.dumps({"signature_name": "other", "instances": [good]}).encode(), 400, "serving signature name 'other' not found"),
    ]
    with served.client() as client:
        for i, (body, status, reason) in enumerate(cases):
            response = client.post(PREDICT, content=body, headers={"X-Request-Id": f"bad-{i}"})
            assert response.status_code == status, (reason, response.text[:300])
            assert response.headers["X-Request-Id"] == f"bad-{i}"
            assert response.json() == {"error": response.json()["error"], "request_id": f"bad-{i}"}
            assert reason in response.json()["error"], response.text[:300]
            assert len(response.text) < 2000  # a huge value is never echoed back
        assert client.post(PREDICT, json={"instances": [good]}).status_code == 200  # still serving
    assert "Traceback" not in served.stderr()


def test_values_the_model_represents_exactly_reach_it_unchanged(served, good):
    biggest = {**good, "trip_start_timestamp": 2**63 - 1, "dropoff_census_tract": 2**53 + 1}
    with served.client() as client:
        response = client.post(PREDICT, json={"instances": [biggest]}, headers={"X-Request-Id": "exact-1"})
    assert response.status_code == 200, response.text
    [logged] = wait_for(lambda: _logged(served.config, "exact-1"), what="the logged record")
    assert logged["features"]["trip_start_timestamp"] == 2**63 - 1  # not rounded through a float
    assert logged["features"]["dropoff_census_tract"] == 2**53 + 1


def test_a_string_outside_its_domain_is_predicted_and_flagged(served, good):
    with served.client() as client:
        response = client.post(PREDICT, json={"instances": [{**good, "payment_type": "Bitcoin"}, good]},
                               headers={"X-Request-Id": "new-payment"})
        assert response.status_code == 200, response.text
        scraped = client.get("/metrics").text
    first, second = _logged(served.config, "new-payment")
    assert first["out_of_domain"] == ["payment_type"] and "out_of_domain" not in second
    assert metric(scraped, "conveyor_out_of_domain_values_total", feature="payment_type") == 1.0


def test_routing_errors_share_the_error_shape_and_carry_the_request_id(served, good):
    with served.client() as client:
        cases = [
            (client.get(PREDICT, headers={"X-Request-Id": "r1"}), 405, "GET is not allowed on /v1/models/taxi:predict: use POST"),
            (client.post("/v1/models/other:predict", json={"instances": [good]}, headers={"X-Request-Id": "r2"}), 404, "model 'other' not found"),
            (client.get("/nowhere", headers={"X-Request-Id": "r3"}), 404, "no route '/nowhere'"),
            (client.post(f"/v1/models/{MODEL}:generate", json={"instances": [good]}, headers={"X-Request-Id": "r4"}), 404, "no method ':generate'"),
            (client.get(f"/v1/models/{MODEL}/versions/abc", headers={"X-Request-Id": "r5"}), 404, "versions are integers"),
            (client.post(f"/v1/models/{MODEL}/versions/123:predict", json={"instances": [good]}, headers={"X-Request-Id": "r6"}), 404, "not a pushed version"),
        ]
        for response, status, reason in cases:
            assert response.status_code == status, response.text
            body = response.json()
            assert set(body) == {"error", "request_id"} and reason in body["error"], body
            assert response.headers["X-Request-Id"] == body["request_id"]
        assert cases[0][0].headers["Allow"] == "POST"


def test_request_ids_are_bounded_and_never_reused(served, good):
    with served.client() as client:
        too_long = client.post(PREDICT, json={"instances": [good]}, headers={"X-Request-Id": "a" * 129})
        bad_chars = client.post(PREDICT, json={"instances": [good]}, headers={"X-Request-Id": "a b"})
        first = client.post(PREDICT, json={"instances": [good]}, headers={"X-Request-Id": "once"})
        again = client.post(PREDICT, json={"instances": [good]}, headers={"X-Request-Id": "once"})
        generated = client.post(PREDICT, json={"instances": [good]})
    for response in (too_long, bad_chars):
        assert response.status_code == 400 and "X-Request-Id must be 1-128 characters" in response.json()["error"]
        assert len(response.headers["X-Request-Id"]) == 32  # a fresh id, not the client's
    assert first.status_code == 200 and again.status_code == 409, again.text
    assert "already answered" in again.json()["error"]
    assert len(_logged(served.config, "once")) == 1
    assert generated.status_code == 200 and len(generated.headers["X-Request-Id"]) == 32


def test_protocol_errors_get_json_errors_and_close_the_connection(served, good):
    post = b"POST " + PREDICT.encode() + b" HTTP/1.1\r\n"
    garbage = sockets.exchange(served.url, b"BLAH / HTTP/1.1\r\n\r\n")
    assert garbage.startswith(b"HTTP/1.1 400 ") and b'"error":"malformed HTTP request' in garbage
    huge_headers = sockets.exchange(served.url, b"GET /livez HTTP/1.1\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n")
    assert huge_headers.startswith(b"HTTP/1.1 431 ")
    declared = sockets.exchange(served.url, post + b"Content-Length: 5000000\r\n\r\n")
    assert declared.startswith(b"HTTP/1.1 413 ") and b"exceeds the limit of 1000000 bytes" in declared
    chunked = b"".join(b"%x\r\n%s\r\n" % (100_000, b" " * 100_000) for _ in range(11)) + b"0\r\n\r\n"
    streamed = sockets.exchange(served.url, post + b"Transfer-Encoding: chunked\r\n\r\n" + chunked)
    assert streamed.startswith(b"HTTP/1.1 413 ")
    body = json.dumps({"instances": [good]}).encode()
    continued = sockets.exchange(
        served.url, post + b"Expect: 100-continue\r\nConnection: close\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    )
    assert continued.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK")


def test_a_client_dropping_mid_body_is_counted_not_logged(served, good):
    with sockets.connect(served.url) as sock:
        sock.sendall(b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nContent-Length: 1000\r\n\r\n{\"instances\":")
        time.sleep(0.2)
    with served.client() as client:
        wait_for(lambda: 'event="client_disconnected_mid_request"' in client.get("/metrics").text, what="the count")
        assert client.post(PREDICT, json={"instances": [good]}).status_code == 200
    assert "Traceback" not in served.stderr() and "unexpected" not in served.stderr()


def test_metrics_scrape_in_prometheus_format(served, good):
    with served.client() as client:
        for _ in range(5):
            assert client.post(PREDICT, json={"instances": [good, good]}).status_code == 200
        client.post(PREDICT, content=b"{")
        version = client.get("/readyz").json()["version"]
        scraped = client.get("/metrics").text

    assert metric(scraped, "conveyor_http_requests_total", route="predict", code="200", version=version) >= 5
    assert metric(scraped, "conveyor_http_requests_total", route="predict", code="400") >= 1
    assert "# TYPE conveyor_http_request_duration_seconds histogram" in scraped
    assert metric(scraped, "conveyor_http_request_duration_seconds_count", route="predict") >= 6
    assert metric(scraped, "conveyor_prediction_probability_count", version=version) >= 10
    assert metric(scraped, "conveyor_prediction_probability_bucket", version=version, le="+Inf") >= 10
    assert metric(scraped, "conveyor_predictions_total", version=version) >= 10
    assert metric(scraped, "conveyor_model_loads_total", version=version, outcome="ok") == 1
    assert metric(scraped, "conveyor_model_loads_total", outcome="failed") == 0
    assert metric(scraped, "conveyor_request_log_commit_seconds_count") >= 5
    assert metric(scraped, "conveyor_request_log_pending_records") == 0
    assert metric(scraped, "conveyor_serving_version") == int(version)


def test_pipelined_predictions_are_answered_in_order_each_logged_and_counted_once(served, good):
    body = json.dumps({"instances": [good]}).encode()
    ids = [f"pipelined-{time.monotonic_ns()}-{i}" for i in range(3)]
    requests = b"".join(
        b"POST %s HTTP/1.1\r\nHost: x\r\nX-Request-Id: %s\r\nContent-Length: %d\r\n%s\r\n%s"
        % (PREDICT.encode(), rid.encode(), len(body), b"Connection: close\r\n" if i == 2 else b"", body)
        for i, rid in enumerate(ids)
    )
    with served.client() as client:
        version = client.get("/readyz").json()["version"]
        before = metric(client.get("/metrics").text, "conveyor_predictions_total", version=version)
    answers = sockets.exchange(served.url, requests)  # one write: each is answered (and the next one read) after the one before
    assert answers.count(b"HTTP/1.1 200 OK") == 3, answers[:500]
    positions = [answers.index(f"X-Request-Id: {rid}".encode()) for rid in ids]
    assert positions == sorted(positions)
    with served.client() as client:
        assert metric(client.get("/metrics").text, "conveyor_predictions_total", version=version) == before + 3
    assert all(len(_logged(served.config, rid)) == 1 for rid in ids)
