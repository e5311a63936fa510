"""Faults that used to stop the server serving or updating, against real `conveyor serve` processes."""
from __future__ import annotations

import os
import resource
import shutil
import signal
import socket
import subprocess
import threading
import time

import httpx

from models.instances import from_row
from pipeline import versions
from serving.host import ModelHost
from tests import sockets
from tests.serving_helpers import CONVEYOR, Serve, copy_home, metric, wait_for

MODEL = "taxi"
PREDICT = f"/v1/models/{MODEL}:predict"


def _metric(client: httpx.Client, name: str, **labels: str) -> float:
    return metric(client.get("/metrics").text, name, **labels)


def _served_version(client: httpx.Client, instance: dict) -> str:
    response = client.post(PREDICT, json={"instances": [instance]})
    assert response.status_code == 200, response.text
    return response.headers["X-Model-Version"]


def _break(version_dir) -> None:
    """A torn copy: the graph is there, the variables are garbage."""
    for path in (version_dir / "variables").iterdir():
        path.write_bytes(b"torn")


def _statuses(client: httpx.Client) -> dict[str, dict]:
    return {s["version"]: s for s in client.get(f"/v1/models/{MODEL}").json()["model_version_status"]}


def test_a_version_that_fails_to_load_is_never_served_and_is_retried(small_run, tmp_path, shipped_rows, capsys):
    from conveyor import cli

    config = copy_home(small_run, tmp_path / "home")
    good = versions.serving_version(config.serving_root)
    torn = versions.republish(config.serving_root, good, str(int(good) + 100))
    _break(torn)
    unpublished = config.serving_root / str(int(good) + 200)  # a complete copy without its push record
    shutil.copytree(config.serving_root / good, unpublished, ignore=shutil.ignore_patterns(versions.RECORD_FILE))
    staged = shutil.copytree(config.serving_root / good, versions.staged_path(config.serving_root, str(int(good) + 300)))
    instance = from_row(shipped_rows[0])
    with Serve(config.home, env={"CONVEYOR_LOAD_RETRY_MAX_SECONDS": "0.5"}) as server, server.client() as client:
        assert f"version {good} " in server.first_line  # the newest good version, not a 503
        assert _served_version(client, instance) == good
        assert unpublished.name not in _statuses(client) and os.path.basename(staged) not in _statuses(client)
        not_pushed = client.post(f"/v1/models/{MODEL}/versions/{unpublished.name}:predict", json={"instances": [instance]})
        assert not_pushed.status_code == 404 and "not a pushed version" in not_pushed.json()["error"]
        failed = wait_for(lambda: _statuses(client).get(torn.name, {}).get("state") == "END" and _statuses(client)[torn.name],
                          what="the torn version reported")
        assert failed["status"]["error_code"] == "UNKNOWN" and "failed to load" in failed["status"]["error_message"]
        assert _statuses(client)[good]["state"] == "AVAILABLE"
        wait_for(lambda: _metric(client, "conveyor_model_loads_total", version=torn.name, outcome="failed") >= 2,
                 what="retries of the failed load")
        assert cli.main(["models", "--home", str(config.home)]) == 0
        listing = capsys.readouterr().out
        assert f"* {good}" in listing and f"! {torn.name}" in listing, listing
        assert f"version {torn.name} failed to load in server pid" in listing
        shutil.rmtree(torn / "variables")  # repaired: the next retry loads it
        shutil.copytree(config.serving_root / good / "variables", torn / "variables")
        wait_for(lambda: _served_version(client, instance) == torn.name, what="the repaired version served")
        assert client.get("/readyz").json()["version"] == torn.name


def test_a_failed_load_keeps_the_last_good_model_serving(small_run, tmp_path):
    config = copy_home(small_run, tmp_path / "home")
    good = versions.serving_version(config.serving_root)
    host = ModelHost(config.serving_root, poll_seconds=0.01, retry_max_seconds=0.05)
    assert host.refresh() and host.current().version == good
    torn = versions.republish(config.serving_root, good, str(int(good) + 100))
    _break(torn)
    for _ in range(3):
        assert not host.refresh()
        time.sleep(0.1)
    assert host.current().version == good
    assert host.last_error.startswith(f"version {torn.name} failed to load")
    assert [s.state for s in host.statuses()] == ["END", "AVAILABLE"]
    host.close()


def test_the_watcher_survives_errors_and_keeps_updating(small_run, tmp_path, shipped_rows):
    config = copy_home(small_run, tmp_path / "home")
    good = versions.serving_version(config.serving_root)
    instance = from_row(shipped_rows[0])
    pointer = config.serving_root / versions.POINTER_FILE
    with Serve(config.home) as server, server.client() as client:
        pointer.mkdir()  # reading the pointer now fails with an I/O error on every poll
        wait_for(lambda: _metric(client, "conveyor_model_watch_errors_total", kind="serving_root") >= 3, what="errors")
        assert _served_version(client, instance) == good
        assert client.get("/livez").status_code == 200
        pointer.rmdir()
        newer = versions.republish(config.serving_root, good, str(int(good) + 100)).name
        wait_for(lambda: _served_version(client, instance) == newer, what="the push after the errors")
    assert server.stderr().count("cannot read") <= 2  # logged at most once a minute, not per poll


def test_a_corrupt_rollback_pointer_is_reported_ignored_and_repairable(small_run, tmp_path, shipped_rows, capsys):
    from conveyor import cli

    config = copy_home(small_run, tmp_path / "home")
    original = versions.serving_version(config.serving_root)
    newer = versions.republish(config.serving_root, original, str(int(original) + 100)).name
    (config.serving_root / versions.POINTER_FILE).write_text("{broken")
    instance = from_row(shipped_rows[0])
    with Serve(config.home) as server, server.client() as client:
        assert f"version {newer} " in server.first_line  # the newest version, not 503 forever
        assert client.get("/readyz").status_code == 200
        assert _served_version(client, instance) == newer
        assert cli.main(["models", "--home", str(config.home)]) == 0  # no traceback
        assert "ROLLBACK.json is not a valid rollback pointer" in capsys.readouterr().out
        assert cli.main(["rollback", "--home", str(config.home), "--to", original]) == 0  # replaces it
        out = capsys.readouterr().out
        assert f"{newer} -> {original}" in out and f"serves {original} after" in out, out
        assert _served_version(client, instance) == original
        (config.serving_root / versions.POINTER_FILE).write_text("[]")
        wait_for(lambda: _served_version(client, instance) == newer, what="the corrupt pointer ignored")
        assert cli.main(["rollback", "--home", str(config.home), "--clear"]) == 0
        assert "removed the rollback pointer" in capsys.readouterr().out
    assert not (config.serving_root / versions.POINTER_FILE).exists()
    assert "not a valid rollback pointer" in server.stderr()


def test_slow_and_half_open_connections_cannot_starve_the_server(small_run, tmp_path, shipped_rows):
    config = copy_home(small_run, tmp_path / "home")
    good = versions.serving_version(config.serving_root)
    instance = from_row(shipped_rows[0])
    env = {"CONVEYOR_HEADER_TIMEOUT_SECONDS": "1", "CONVEYOR_BODY_TIMEOUT_SECONDS": "1", "CONVEYOR_IDLE_TIMEOUT_SECONDS": "1"}

    def low_descriptor_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    with Serve(config.home, env=env, preexec=low_descriptor_limit) as server, server.client() as client:
        slow = sockets.connect(server.url)
        slow.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n")  # headers never finish
        answer = sockets.read_all(slow)
        assert answer.startswith(b"HTTP/1.1 408 ") and b"request headers not received within 1 s" in answer
        slow_body = sockets.connect(server.url)
        slow_body.sendall(b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nContent-Length: 100\r\n\r\n{")
        assert b"request body not received within 1 s" in sockets.read_all(slow_body)
        silent = sockets.connect(server.url)
        started = time.monotonic()
        assert sockets.read_all(silent) == b"" and time.monotonic() - started < 5  # closed by the idle timeout
        half_open = [sockets.connect(server.url) for _ in range(300)]  # more than the descriptors allow
        try:
            for _ in range(20):
                assert _served_version(client, instance) == good
            newer = versions.republish(config.serving_root, good, str(int(good) + 100)).name
            wait_for(lambda: _served_version(client, instance) == newer, what="a swap under descriptor pressure")
            wait_for(lambda: _metric(client, "conveyor_http_connections") < 50, what="half-open connections closed")
        finally:
            for sock in half_open + [slow, slow_body, silent]:
                sock.close()
    stderr = server.stderr()
    assert stderr.count("accept() failed") <= 5 and len(stderr) < 200_000
    assert "Traceback" not in stderr


def test_clients_cannot_force_model_loads(small_run, tmp_path, shipped_rows):
    config = copy_home(small_run, tmp_path / "home")
    serving = versions.serving_version(config.serving_root)
    older = [versions.republish(config.serving_root, serving, str(int(serving) - k)).name for k in (3, 2, 1)]
    instance = from_row(shipped_rows[0])
    with Serve(config.home, env={"CONVEYOR_MAX_EXTRA_VERSIONS": "2"}) as server, server.client() as client:
        assert _statuses(client) == {serving: {"version": serving, "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}}
        for version in older:  # pushed, not loaded: only asked for by number (TF Serving lists the versions it manages)
            assert client.get(f"/v1/models/{MODEL}/versions/{version}").json()["model_version_status"][0]["state"] == "START"
        results = []

        def ask(version: str) -> None:
            with server.client() as own:
                results.append(own.post(f"/v1/models/{MODEL}/versions/{version}:predict", json={"instances": [instance]}))

        threads = [threading.Thread(target=ask, args=(older[0],)) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert [r.status_code for r in results] == [200] * 6
        assert {r.headers["X-Model-Version"] for r in results} == {older[0]}
        assert _metric(client, "conveyor_model_loads_total", version=older[0]) == 1  # single flight
        answers = [client.post(f"/v1/models/{MODEL}/versions/{older[i % 3]}:predict", json={"instances": [instance]})
                   for i in range(1, 31)]
        codes = {older[i % 3]: r.status_code for i, r in enumerate(answers, start=1)}
        assert codes[older[1]] == 200 and codes[older[0]] == 200
        refused = [r for i, r in enumerate(answers, start=1) if older[i % 3] == older[2]]
        assert {r.status_code for r in refused} == {503} and "retry later" in refused[0].json()["error"]
        assert int(refused[0].headers["Retry-After"]) >= 1
        assert _metric(client, "conveyor_model_loads_total", outcome="ok") == 3  # serving + 2, not one per request
        assert _served_version(client, instance) == serving


def test_readiness_and_liveness_for_kubernetes(small_run, tmp_path, shipped_rows):
    config = copy_home(small_run, tmp_path / "home")
    version = versions.serving_version(config.serving_root)
    staged = tmp_path / "staged"
    shutil.move(config.serving_root / version, staged)  # an empty serving root: nothing to serve yet
    instance = from_row(shipped_rows[0])
    with Serve(config.home) as server, server.client() as client:
        assert "none yet" in server.first_line
        assert client.get("/livez").status_code == 200
        not_ready = client.get("/readyz")
        assert not_ready.status_code == 503 and "no servable version" in not_ready.json()["error"]
        assert client.post(PREDICT, json={"instances": [instance]}).status_code == 503
        os.rename(staged, config.serving_root / version)  # pushed (one atomic rename)
        wait_for(lambda: client.get("/readyz").status_code == 200, what="ready after the push")
        assert _served_version(client, instance) == version


def test_a_busy_port_is_one_line_of_error(small_run, tmp_path):
    config = copy_home(small_run, tmp_path / "home")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = subprocess.run([str(CONVEYOR), "serve", "--home", str(config.home), "--port", str(port)],
                              capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"conveyor serve: cannot listen on 127.0.0.1:{port}: Address already in use "
        "(another server is using it; --port 0 picks a free port)"
    ]


def test_workers_share_the_port_swap_and_restart_and_log_every_answer(small_run, tmp_path, shipped_rows):
    from datetime import datetime, timedelta, timezone

    from serving import request_log, status

    config = copy_home(small_run, tmp_path / "home")
    first = versions.serving_version(config.serving_root)
    instances = [from_row(r) for r in shipped_rows[:4]]
    answers: list[tuple[int, str, str]] = []
    stop = threading.Event()
    with Serve(config.home, workers=2) as server:
        assert "(2 workers)" in server.first_line

        def load() -> None:
            with server.client() as client:
                for _ in range(3000):  # bounded; normally stopped much earlier
                    if stop.is_set():
                        return
                    try:
                        r = client.post(PREDICT, json={"instances": instances})
                    except httpx.TransportError:
                        continue  # a connection to the killed worker: the client reconnects
                    answers.append((r.status_code, r.headers.get("X-Model-Version", ""), r.headers["X-Request-Id"]))

        threads = [threading.Thread(target=load) for _ in range(4)]
        for thread in threads:
            thread.start()
        try:
            workers = wait_for(lambda: len(status.live(config.home)) == 2 and status.live(config.home), what="2 workers")
            assert len({w["pid"] for w in workers}) == 2
            pushed = []
            for step in (1, 2):
                new = versions.republish(config.serving_root, first, str(int(first) + 100 * step)).name
                pushed.append(new)
                wait_for(lambda new=new: all(s["serving"] == new for s in status.live(config.home)), what=f"{new} everywhere")
                wait_for(lambda new=new: any(v == new for _, v, _ in answers[-8:]), what=f"{new} answering")
            victim = workers[1]["pid"]
            os.kill(victim, signal.SIGKILL)
            wait_for(lambda: len(status.live(config.home)) == 2 and victim not in {s["pid"] for s in status.live(config.home)},
                     timeout=120, what="the killed worker restarted")
            count = len(answers)
            wait_for(lambda: len(answers) > count + 20, what="answers after the restart")
            again = _asked_again_of_every_worker(server, instances, pids={w["pid"] for w in status.live(config.home)})
            assert again == {409}, again  # one id space for the workers (the restarted one included)
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        assert f"(pid {victim}) exited with signal 9; restarting" in server.stderr()
        pids = [s["pid"] for s in status.live(config.home)]
        server.process.send_signal(signal.SIGKILL)  # the supervisor dies: its workers must not serve on alone
        server.process.wait()
        wait_for(lambda: not any(_alive(pid) for pid in pids), timeout=30, what="orphaned workers gone")
    assert {code for code, _, _ in answers} == {200}
    served = [v for _, v, _ in answers]
    assert set(served) == {first, *pushed}
    now = datetime.now(timezone.utc)
    window = request_log.read(config.request_log_root, now - timedelta(hours=1), now + timedelta(minutes=1))
    logged = {(r["request_id"], r["index"]) for r in window.records}
    answered = {(rid, i) for _, _, rid in answers for i in range(len(instances))}
    assert len(window.records) == len(logged)  # no record twice
    assert answered <= logged  # every answered prediction is on disk
    assert len(logged - answered) <= 4 * len(instances)  # at most the requests in flight when the worker was killed
    files = {p.name for p in config.request_log_root.glob("date=*/hour=*/*.jsonl")}
    assert len(files) >= 2  # one file per worker process


def _asked_again_of_every_worker(server: Serve, instances: list[dict], pids: set[int]) -> set[int]:
    """Answer an id once, then send it again on new connections until every worker has been asked:
    the statuses of those repeats."""
    with server.client() as client:
        assert client.post(PREDICT, json={"instances": instances}, headers={"X-Request-Id": "shared-id"}).status_code == 200
    statuses, asked = set(), set()
    for _ in range(200):
        with server.client() as client:  # a new connection: the kernel hands it to either worker
            pid = client.get("/livez").json()["pid"]
            if pid not in asked:
                asked.add(pid)
                statuses.add(client.post(PREDICT, json={"instances": instances}, headers={"X-Request-Id": "shared-id"}).status_code)
        if asked == pids:
            return statuses
    raise AssertionError(f"new connections reached only workers {asked} of {pids}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class _BrokenLog:
    """A request log whose append fails with an error nobody expected (not an OSError)."""

    def append(self, records, when=None):
        raise RuntimeError("a bug in the request log")


def test_an_unexpected_error_before_the_records_are_durable_answers_nothing(small_run, shipped_rows):
    from models.instances import Instance, to_example
    from serving.batching import Batcher, Job

    config, _ = small_run
    host = ModelHost(config.serving_root)
    host.refresh()
    delivered = []
    batcher = Batcher(host, _BrokenLog(), MODEL, 64, lambda jobs, inline: delivered.extend(jobs))
    row = from_row(shipped_rows[0])
    jobs = [Job([Instance(to_example(row), row)], None, f"r{i}", None) for i in range(3)]
    batcher.answer_now(jobs)
    assert len(delivered) == 3
    # The model answered every job, but no record reached the disk: none may be answered 200.
    assert all(job.outputs for job in delivered)
    assert [job.error for job in delivered] == [(500, "internal error")] * 3


def test_a_shadow_is_asked_only_where_its_answers_are_recorded(small_run, shipped_rows, tmp_path):
    """A shadow's answers exist for the rollout guard, which reads them in the request log: a server
    without the log does not spend a model call on them."""
    from models.instances import Instance, to_example
    from serving.batching import Batcher, Job
    from serving.request_log import RequestLog

    config, _ = small_run
    host = ModelHost(config.serving_root)
    host.refresh()
    candidate = host.current()  # the serving model as its own shadow: a real model that answers
    row = from_row(shipped_rows[0])
    for log, asked in ((None, False), (RequestLog(tmp_path / "request_log"), True)):
        delivered: list = []
        batcher = Batcher(host, log, MODEL, 64, lambda jobs, inline, into=delivered: into.extend(jobs))
        batcher.answer_now([Job([Instance(to_example(row), row)], None, "r1", None, label="stable", shadow=candidate)])
        [job] = delivered
        assert job.error is None and job.outputs
        assert bool(job.shadow_outputs) is asked, log
