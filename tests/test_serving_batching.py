"""Request batching across clients, against a real `conveyor serve` process on loopback: clients
that send again as soon as they are answered share one model call and one fsync; a lone client,
or one sending at its own pace, never waits; a client that does not come back costs a batch at
most `batch_gather_seconds`. The window here is 0.5 s (2 ms by default) so that waiting shows."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from models.instances import from_row
from serving import request_log
from tests.serving_helpers import Serve, copy_home, metric

PREDICT = "/v1/models/taxi:predict"
WINDOW = 0.5
CLIENTS, ROUNDS = 4, 10
MAX_INSTANCES = 4  # per request and per model call
OUTCOMES = ("at_once", "all_arrived", "full", "window_expired")


def _scrape(client: httpx.Client) -> dict[str, float]:
    """The batching counters. An open connection just answered counts as a client about to send
    again, so each test scrapes on a connection it then closes or predicts on."""
    scraped = client.get("/metrics").text
    found = {outcome: metric(scraped, "conveyor_batch_gathers_total", outcome=outcome) for outcome in OUTCOMES}
    return {**found, "calls": metric(scraped, "conveyor_model_batch_instances_count")}


def _delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {key: after[key] - before[key] for key in (*OUTCOMES, "calls")}


def _predict(client: httpx.Client, instance: dict, count: int = 1) -> float:
    started = time.perf_counter()
    response = client.post(PREDICT, json={"instances": [instance] * count})
    assert response.status_code == 200, response.text
    return time.perf_counter() - started


@pytest.fixture(scope="module")
def served(small_run, tmp_path_factory):
    config = copy_home(small_run, tmp_path_factory.mktemp("batching") / "home")
    with Serve(config.home, env={"CONVEYOR_BATCH_GATHER_SECONDS": str(WINDOW), "CONVEYOR_MAX_BATCH_INSTANCES": str(MAX_INSTANCES)}) as server:
        yield config, server


def test_clients_in_a_closed_loop_share_model_calls_and_every_answer_is_logged(served, shipped_rows):
    config, server = served
    instances = [from_row(row) for row in shipped_rows[:CLIENTS]]
    with server.client() as probe:  # closed before the clients start: an open one would be waited for
        before = _scrape(probe)
    start = threading.Barrier(CLIENTS)
    failures: list[BaseException] = []

    def closed_loop(instance: dict) -> None:
        try:
            with server.client() as client:
                start.wait()
                for _ in range(ROUNDS):
                    _predict(client, instance)
        except BaseException as exc:  # reported below, not lost in the thread
            failures.append(exc)

    threads = [threading.Thread(target=closed_loop, args=(instance,)) for instance in instances]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not failures, failures
    with server.client() as probe:
        change = _delta(before, _scrape(probe))

    requests = CLIENTS * ROUNDS
    assert change["calls"] <= requests / 2, change  # several clients per model call, not one each
    assert change["all_arrived"] >= ROUNDS / 2, change
    now = datetime.now(timezone.utc)
    window = request_log.read(config.request_log_root, now - timedelta(hours=1), now + timedelta(minutes=1))
    logged = {(r["request_id"], r["index"]) for r in window.records}
    assert len(window.records) == len(logged) >= requests  # every answer on disk, none twice


def test_a_lone_client_never_waits_and_one_that_does_not_return_costs_at_most_the_window(served, shipped_rows):
    _, server = served
    instance = from_row(shipped_rows[0])
    with server.client() as alone:
        before = _scrape(alone)
        latencies = [_predict(alone, instance) for _ in range(10)]
        change = _delta(before, _scrape(alone))
    assert change == {"at_once": 10, "all_arrived": 0, "full": 0, "window_expired": 0, "calls": 10}, change
    assert max(latencies) < 5.0  # no gather window: a delay here would be a model call's, not the batcher's

    with server.client() as gone, server.client() as other:
        _predict(gone, instance)  # answered as it sent straight after connecting: counted as returning
        before = _scrape(other)
        waited = _predict(other, instance)  # `gone` never sends again: this batch waits the window out
        change = _delta(before, _scrape(other))
        assert change["window_expired"] == 1 and change["calls"] == 1, change
        assert WINDOW * 0.9 <= waited < WINDOW + 5.0, waited
        time.sleep(5 * WINDOW + 0.2)  # `gone` is no longer expected back
        before = _scrape(other)
        _predict(other, instance)
        assert _delta(before, _scrape(other))["at_once"] == 1


def test_a_batch_that_reaches_max_batch_instances_starts_without_waiting(served, shipped_rows):
    _, server = served
    instance = from_row(shipped_rows[0])
    with server.client() as gone_1, server.client() as gone_2, server.client() as one, server.client() as two:
        for gone in (gone_1, gone_2):  # two clients expected back, that never return
            _predict(gone, instance)
        with server.client() as probe:
            before = _scrape(probe)
        assert _predict(one, instance, MAX_INSTANCES) < WINDOW * 0.9  # full on its own: no wait
        first = threading.Thread(target=_predict, args=(one, instance, MAX_INSTANCES // 2))
        first.start()  # waits for the two clients...
        time.sleep(WINDOW / 5)
        _predict(two, instance, MAX_INSTANCES // 2)  # ...until this one fills the batch
        first.join(30)
        with server.client() as probe:
            change = _delta(before, _scrape(probe))
    assert change["full"] == 1 and change["window_expired"] == 0 and change["calls"] == 2, change
