"""Fuzzing `conveyor serve` (slow: `make test-slow`): thousands of mutated requests, seeded, and
not one 5xx, every answer with a request id, no traceback, and the server still serving. Each
request is answered, or its connection closed, within ANSWER_WITHIN seconds: a hang fails."""
from __future__ import annotations

import json
import random
import time

import pytest

from models import features
from models.instances import from_row
from tests import sockets
from tests.serving_helpers import Serve, copy_home

pytestmark = pytest.mark.slow
CASES = 3000
ANSWER_WITHIN = 15.0  # seconds; the server's header and body timeouts are set to 1 s below
ODD_VALUES = [None, True, -1, 0, 2**63, -(2**63) - 1, 2**64, 1e308, -1e-320, 1e39, float("nan"), "", "x" * 2000,
              "\u00e9\u4e2d", [], {}, [1, 2], {"b64": "AAAA"}, 41.85, -87.6, 12.5, "Cash", "Bitcoin", 2**53 + 1]


def _mutated(rng: random.Random, good: dict) -> bytes:
    kind = rng.random()
    if kind < 0.6:  # a valid request with some values replaced
        instance = dict(good)
        for _ in range(rng.randint(1, 4)):
            name = rng.choice(features.active().serving_features + ("tips", "unknown"))
            instance[name] = rng.choice(ODD_VALUES)
        body = {"instances": [instance] * rng.randint(1, 3)}
        return json.dumps(body, allow_nan=True).encode()
    if kind < 0.8:  # structure
        return json.dumps(rng.choice([{}, [], {"instances": {}}, {"instances": [[]]}, {"inputs": [good]},
                                      {"instances": [good], "signature_name": 7}, "text", 1.5, None])).encode()
    raw = json.dumps({"instances": [good]}).encode()  # bytes: cut, flipped, nested
    choice = rng.random()
    if choice < 0.4:
        return raw[: rng.randint(0, len(raw))]
    if choice < 0.8:
        data = bytearray(raw)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    depth = rng.randint(100, 20_000)
    return b"[" * depth + b"]" * depth


def test_thousands_of_mutated_requests_never_get_a_5xx(small_run, tmp_path, shipped_rows):
    config = copy_home(small_run, tmp_path / "home")
    good = from_row(shipped_rows[0])
    rng = random.Random(0)
    paths = ["/v1/models/taxi:predict"] * 8 + ["/v1/models/taxi/versions/1:predict", "/v1/models/taxi", "/x", "/v1/models/"]
    codes: dict[int, int] = {}
    env = {"CONVEYOR_HEADER_TIMEOUT_SECONDS": "1", "CONVEYOR_BODY_TIMEOUT_SECONDS": "1"}
    with Serve(config.home, env=env) as server:
        with server.client(timeout=ANSWER_WITHIN) as client:  # a hang raises httpx.ReadTimeout
            for i in range(CASES):
                path, method = rng.choice(paths), rng.choice(["POST"] * 6 + ["GET", "PUT", "DELETE"])
                response = client.request(method, path, content=_mutated(rng, good), headers={"X-Request-Id": f"fuzz-{i}"})
                codes[response.status_code] = codes.get(response.status_code, 0) + 1
                assert response.status_code < 500, (i, response.text[:300])
                assert response.headers["X-Request-Id"] == f"fuzz-{i}"
                if response.status_code != 200:
                    assert set(response.json()) == {"error", "request_id"}
            for i in range(200):  # raw protocol garbage on fresh connections
                garbage = bytes(rng.randrange(256) for _ in range(rng.randint(1, 300))) + b"\r\n\r\n"
                started = time.monotonic()
                with sockets.connect(server.url, timeout=ANSWER_WITHIN) as sock:
                    sock.sendall(garbage)
                    try:  # an answer, or the connection closed; socket.timeout (a hang) fails the test
                        answer = sockets.read_response(sock)
                    except ConnectionResetError:
                        answer = b""
                assert time.monotonic() - started < ANSWER_WITHIN, (i, garbage)
                assert not answer.startswith(b"HTTP/1.1 5"), answer
            assert client.post("/v1/models/taxi:predict", json={"instances": [good]}).status_code == 200
    assert codes.get(200, 0) > 0 and sum(n for c, n in codes.items() if 400 <= c < 500) > CASES / 2, codes
    assert "Traceback" not in server.stderr()
