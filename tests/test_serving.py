"""The model server over real HTTP on an ephemeral loopback port, with small_run's pushed model."""
from __future__ import annotations

import base64
import json
import threading
import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest
import tensorflow as tf

from conveyor import cli
from data import spans_io
from metadata import connection, registry, runs
from models.instances import from_row, to_example
from pipeline import versions
from serving import request_log, rest_api, rollback, server
from tests.serving_helpers import Serve, copy_home, publish_fake

MODEL = "taxi"


def wait_for(condition, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def home(small_run, tmp_path):
    return copy_home(small_run, tmp_path / "home", poll_seconds=0.2, max_batch_instances=50, max_request_bytes=200_000)


@pytest.fixture
def running(home):
    """(config, base url, Server) for a server on 127.0.0.1:<free port>."""
    built = server.build(home, port=0)
    with server.BackgroundServer(built) as url:
        yield home, url, built


def _predict(client: httpx.Client, instances, path=f"/v1/models/{MODEL}:predict", **kwargs) -> httpx.Response:
    return client.post(path, json={"instances": instances}, **kwargs)


def test_predictions_match_the_in_process_model(running, shipped_rows):
    config, url, built = running
    wait_for(lambda: built.host.current().folded, what="the serving version's folded call")
    version = versions.serving_version(config.serving_root)
    rows = shipped_rows[:20]
    loaded = tf.saved_model.load(str(config.serving_root / version))
    expected = loaded.signatures["serving_default"](examples=tf.constant([to_example(from_row(r)) for r in rows]))
    with httpx.Client(base_url=url) as client:
        as_json = _predict(client, [from_row(r) for r in rows])
        as_b64 = _predict(client, [{"b64": base64.b64encode(to_example(from_row(r))).decode()} for r in rows])
        by_version = _predict(client, [from_row(r) for r in rows], path=f"/v1/models/{MODEL}/versions/{version}:predict")
        status = client.get(f"/v1/models/{MODEL}").json()
        meta = client.get(f"/v1/models/{MODEL}/metadata").json()
    for response in (as_json, as_b64, by_version):
        assert response.status_code == 200, response.text
        assert response.headers[rest_api.VERSION_HEADER] == version
        predictions = response.json()["predictions"]
        assert [p["probability"] for p in predictions] == expected["probability"].numpy().tolist()  # bit for bit
        assert [p["predicted_class"] for p in predictions] == expected["predicted_class"].numpy().tolist()
    assert status["model_version_status"][0] == {"version": version, "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    signature = meta["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["inputs"]["examples"]["dtype"] == "DT_STRING"
    assert set(signature["outputs"]) == {"probability", "predicted_class"}


def test_bad_requests_get_a_4xx_naming_the_problem_and_the_server_stays_up(running, shipped_rows):
    _config, url, _ = running
    good = from_row(shipped_rows[0])
    without_fare = {k: v for k, v in good.items() if k != "fare"}
    bad_example = tf.train.Example()
    bad_example.features.feature["fare"].bytes_list.value.append(b"ten")
    cases = [
        (b"{not json", 400, "malformed JSON"),
        (b'"just a string"', 400, "JSON object"),
        (json.dumps({"inputs": [good], "instances": [good]}).encode(), 400, "not both"),
        (json.dumps({"instances": []}).encode(), 400, "non-empty list"),
        (json.dumps({"instances": [without_fare]}).encode(), 400, "missing required feature(s) 'fare'"),
        (json.dumps({"instances": [{**good, "fare": "ten"}]}).encode(), 400, "feature 'fare' must be a number"),
        (json.dumps({"instances": [{**good, "trip_start_hour": 3.5}]}).encode(), 400, "'trip_start_hour' must be an integer"),
        (json.dumps({"instances": [{**good, "payment_type": 7}]}).encode(), 400, "'payment_type' must be a string"),
        (json.dumps({"instances": [{**good, "tips": 2.0}]}).encode(), 400, "unknown feature 'tips'"),
        (json.dumps({"instances": [{"b64": "%%%"}]}).encode(), 400, "not a base64 serialized tf.Example"),
        (json.dumps({"instances": [{"b64": base64.b64encode(bad_example.SerializeToString()).decode()}]}).encode(), 400, "'fare' must be a number"),
        (json.dumps({"instances": [good] * 51}).encode(), 413, "batch of 51 instances exceeds the limit of 50"),
        (b" " * 200_001, 413, "exceeds the limit of 200000 bytes"),
        (json.dumps({"signature_name": "other", "instances": [good]}).encode(), 400, "serving signature name 'other' not found"),
    ]
    with httpx.Client(base_url=url) as client:
        for body, status, reason in cases:
            response = client.post(f"/v1/models/{MODEL}:predict", content=body)
            assert response.status_code == status, (reason, response.text)
            assert reason in response.json()["error"], response.text
        assert client.post("/v1/models/other:predict", json={"instances": [good]}).status_code == 404
        assert client.post(f"/v1/models/{MODEL}/versions/123:predict", json={"instances": [good]}).status_code == 404
        assert client.get(f"/v1/models/{MODEL}/versions/abc").status_code == 404
        assert _predict(client, [good]).status_code == 200  # still up and serving


def test_every_prediction_is_logged_and_reads_back_as_a_serving_span(running, shipped_rows, tmp_path):
    config, url, _ = running
    rows = shipped_rows[100:105]
    started = datetime.now(timezone.utc)
    with httpx.Client(base_url=url) as client:
        response = _predict(client, [from_row(r) for r in rows], headers={rest_api.REQUEST_ID_HEADER: "req-42"})
    assert response.headers[rest_api.REQUEST_ID_HEADER] == "req-42"
    # A writer that died mid-line leaves a torn last line: readers skip it, nothing else is lost.
    partition = request_log.partition_dir(config.request_log_root, datetime.now(timezone.utc))
    (partition / "crashed-1.jsonl").write_bytes(b'{"request_id": "torn", "ind')
    window = request_log.read(config.request_log_root, started - timedelta(minutes=1), datetime.now(timezone.utc) + timedelta(minutes=1))
    assert window.skipped_lines == 1
    logged = [r for r in window.records if r["request_id"] == "req-42"]
    assert [r["index"] for r in logged] == list(range(5))
    assert [r["output"] for r in logged] == response.json()["predictions"]
    assert {r["model_version"] for r in logged} == {response.headers[rest_api.VERSION_HEADER]}
    path = request_log.write_serving_span(logged, tmp_path / "spans", 7, outcomes={("req-42", 0): {"tips": 1.5}})
    back = spans_io.read_rows(path)
    assert [from_row(r) for r in back] == [from_row(r) for r in rows]
    assert back[0]["tips"] == "1.5" and back[1]["tips"] == ""


def test_hot_swap_under_concurrent_load_drops_nothing(running, shipped_rows):
    config, url, built = running
    first = versions.serving_version(config.serving_root)
    instances = [from_row(r) for r in shipped_rows[:8]]
    results: list[tuple[int, str | None]] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            for _ in range(2000):  # bounded; normally stopped much earlier
                if stop.is_set():
                    return
                response = _predict(client, instances)
                results.append((response.status_code, response.headers.get(rest_api.VERSION_HEADER)))

    workers = [threading.Thread(target=load) for _ in range(4)]
    for worker in workers:
        worker.start()
    pushed = []
    try:
        for step in (1, 2):
            wait_for(lambda step=step: len(results) >= 20 * step, what="requests before the swap")
            new = str(int(first) + 100 * step)
            versions.republish(config.serving_root, first, new)
            pushed.append(new)
            wait_for(lambda new=new: any(v == new for _, v in results[-8:]), what=f"version {new} served")
    finally:
        stop.set()
        for worker in workers:
            worker.join()
    assert built.host.swaps == 3  # the initial load and two swaps
    assert [s for s, _ in results if s != 200] == []
    served = [v for _, v in results]
    assert set(served) == {first, *pushed}
    assert served.index(pushed[0]) < served.index(pushed[1])  # swaps happen in order


def test_rollback_changes_what_is_served_and_a_newer_push_supersedes_it(running, shipped_rows, capsys):
    config, url, _ = running
    original = versions.serving_version(config.serving_root)
    newer = versions.republish(config.serving_root, original, str(int(original) + 100)).name
    instance = [from_row(shipped_rows[0])]
    with httpx.Client(base_url=url) as client:
        served = lambda: _predict(client, instance).headers[rest_api.VERSION_HEADER]  # noqa: E731
        wait_for(lambda: served() == newer, what="the newer push served")

        assert cli.main(["rollback", "--home", str(config.home)]) == 0
        assert f"{newer} -> {original}" in capsys.readouterr().out
        wait_for(lambda: served() == original, what="the rollback served")
        assert versions.serving_version(config.serving_root) == original

        assert cli.main(["models", "--home", str(config.home)]) == 0
        listing = capsys.readouterr().out
        assert f"* {original}" in listing and f"  {newer}" in listing
        assert "rollback to" in listing and "in force" in listing

        newest = versions.republish(config.serving_root, original, str(int(original) + 200)).name
        wait_for(lambda: served() == newest, what="a newer push superseding the rollback")

    store = connection.open_store(connection.sqlite_config(config.metadata_path))
    [execution] = registry.rollbacks(config)
    assert execution.properties["from_version"].string_value == newer
    assert execution.properties["to_version"].string_value == original
    [event] = store.get_events_by_execution_ids([execution.id])
    assert event.path.steps[0].key == registry.ROLLED_BACK_TO
    [pushed] = store.get_artifacts_by_id([event.artifact_id])
    assert pushed.custom_properties["pushed_version"].string_value == original


def test_rollback_refuses_versions_the_pipeline_never_pushed(home, capsys):
    original = versions.serving_version(home.serving_root)
    copy = versions.republish(home.serving_root, original, str(int(original) + 100)).name
    assert cli.main(["rollback", "--home", str(home.home), "--to", copy]) == 2
    assert "no record in MLMD" in capsys.readouterr().err
    assert cli.main(["rollback", "--home", str(home.home), "--to", "42"]) == 2
    assert versions.read_rollback(home.serving_root) is None  # nothing changed


def test_registry_lists_the_pushed_version_with_its_lineage(small_run):
    config, summary = small_run
    [entry] = registry.list_versions(config)
    assert str(config.serving_root / entry.version) == summary.pushed_path
    assert entry.blessed and entry.infra_blessed and entry.window_spans == [1]
    assert entry.run_id == summary.run_id
    assert entry.training_statistics_uri and entry.evaluation_uri


def test_serving_version_rule(tmp_path):
    root = tmp_path / "serving"
    for v in ("100", "200"):
        publish_fake(root, v)
    (root / "300").mkdir()  # a version folder that was never published
    (root / "300" / versions.READY_FILE).write_bytes(b"")
    assert versions.ready_versions(root) == ["100", "200"]
    assert versions.serving_version(root) == "200"
    versions.write_rollback(root, "100")
    assert versions.serving_version(root) == "100"
    publish_fake(root, "400")
    assert versions.serving_version(root) == "400"  # a newer push supersedes the rollback
    with pytest.raises(ValueError, match="not a pushed version"):
        versions.write_rollback(root, "999")
    assert (root / versions.POINTER_FILE).stat().st_mode & 0o777 == 0o644  # readable by a server of another user
    for corrupt in ("{broken", "[]", '{"version": null, "newest_at_rollback": 1, "time": 0}', "\xff"):
        (root / versions.POINTER_FILE).write_text(corrupt)
        with pytest.raises(ValueError, match="not a valid rollback pointer"):
            versions.read_rollback(root)
        state = versions.serving_state(root)  # reported and ignored: the newest version serves
        assert state.version == "400" and "conveyor rollback --clear" in state.pointer_error
    assert versions.clear_rollback(root) and not versions.clear_rollback(root)


def test_the_rollback_pointer_rename_is_durable(tmp_path, monkeypatch):
    import os

    root = tmp_path / "serving"
    for v in ("100", "200"):
        publish_fake(root, v)
    synced: list[str] = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real_fsync(fd)))
    versions.write_rollback(root, "100", execution_id=7)
    assert synced[-1] == str(root)  # the folder, after the rename: the new pointer survives a crash
    assert versions.read_rollback(root).execution_id == 7


def test_conveyor_serve_command_serves_the_pushed_model(home, shipped_rows):
    with Serve(home.home) as served:
        assert "serving model 'taxi' version" in served.first_line and "http://127.0.0.1:" in served.first_line
        assert "(1 worker)" in served.first_line
        response = httpx.post(f"{served.url}/v1/models/{MODEL}:predict", json={"instances": [from_row(shipped_rows[0])]}, timeout=30)
        assert response.status_code == 200, response.text
        assert 0 <= response.json()["predictions"][0]["probability"] <= 1
    assert served.exit_code == 0  # SIGTERM: requests finished, workers stopped, clean exit
    assert not list((home.home / "serving_status").glob("*.json"))  # the status files are gone


def test_rollback_edge_cases(home, capsys):
    original = versions.serving_version(home.serving_root)
    middle = versions.republish(home.serving_root, original, str(int(original) + 50)).name  # no MLMD record
    newest = versions.republish(home.serving_root, original, str(int(original) + 100)).name
    assert cli.main(["rollback", "--home", str(home.home), "--to", ""]) == 2
    assert "--to needs a version" in capsys.readouterr().err
    # the default is the newest *eligible* older version, not the one just before the serving one
    assert cli.main(["rollback", "--home", str(home.home)]) == 0
    out = capsys.readouterr().out
    assert f"{newest} -> {original}" in out and middle not in out
    assert f"no server is running on {home.home}: the next `conveyor serve` serves {original}" in out
    assert cli.main(["rollback", "--home", str(home.home), "--to", original]) == 2  # already serving
    assert "already serving" in capsys.readouterr().err
    assert len(registry.rollbacks(home)) == 1  # the refused one recorded nothing
    assert cli.main(["rollback", "--home", str(home.home), "--clear"]) == 0
    assert f"cleared the rollback: {original} -> {newest}" in capsys.readouterr().out
    assert versions.serving_version(home.serving_root) == newest
    [_first, cleared] = rollback.effective(home)
    assert cleared.properties["cleared"].string_value == "1"


def test_a_crash_between_a_rollback_record_and_its_pointer_never_leaves_them_disagreeing(home, monkeypatch):
    original = versions.serving_version(home.serving_root)
    newer = versions.republish(home.serving_root, original, str(int(original) + 100)).name

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(versions, "write_rollback", killed)  # killed after the record, before the pointer
    with pytest.raises(KeyboardInterrupt):
        rollback.rollback(home, original)
    monkeypatch.undo()
    assert versions.read_rollback(home.serving_root) is None and versions.serving_version(home.serving_root) == newer
    assert rollback.effective(home) == []  # recorded RUNNING, no pointer names it: it never took effect

    real_state = runs.set_execution_state
    monkeypatch.setattr(runs, "set_execution_state",
                        lambda store, eid, state: killed() if state == rollback.COMPLETE else real_state(store, eid, state))
    with pytest.raises(KeyboardInterrupt):  # killed after the pointer, before the record says COMPLETE
        rollback.rollback(home, original)
    monkeypatch.undo()
    pointer = versions.read_rollback(home.serving_root)
    assert versions.serving_version(home.serving_root) == original
    [took_effect] = rollback.effective(home)
    assert took_effect.id == pointer.execution_id
    rollback.settle(home)
    states = [e.last_known_state for e in registry.rollbacks(home)]
    assert states == [rollback.CANCELED, rollback.COMPLETE]
