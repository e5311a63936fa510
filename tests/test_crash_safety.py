"""kill -9 of a real `conveyor run` (the installed .venv/bin/conveyor) while a `conveyor serve`
process serves the home: serving stays on the complete, blessed version, nothing half-written is
visible in the serving root, and the re-run completes with exactly one new push.

Default suite: one sequence on span 2 of a copy of small_run's home (span 1 pushed and serving):
kill after Trainer (a component boundary), kill in the middle of Pusher's copy, kill after Pusher
(recorded, not yet published), then a run to completion. The kill after every component is behind
the `slow` marker (`make test-slow`).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from metadata import connection, registry, runs
from models.instances import from_row
from pipeline import configs, versions
from tests.conftest import SMALL_SPAN_ROWS
from tests.serving_helpers import copy_home

CONVEYOR = str(Path(configs.REPO_ROOT, ".venv", "bin", "conveyor"))
COMPONENTS = (
    "CsvExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator", "previous_statistics", "DataGate",
    "span_window", "analyzer_cache", "Transform", "latest_hyperparameters", "Trainer", "baseline_model", "Evaluator", "InfraCheck",
    "ModelCard", "Pusher", "Publish",
)


class Run:
    """`conveyor run --span 2` as a subprocess, its console lines collected as they come."""

    def __init__(self, config: configs.PipelineConfig):
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [CONVEYOR, "run", "--home", str(config.home), "--spans-root", str(config.spans_root), "--span", "2",
             "--train-steps", "100", "--eval-steps", "5"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def finished(self, component: str) -> bool:
        return any(line.split()[:1] == [component] for line in self.lines)

    def kill_when(self, condition, what: str, timeout: float = 900) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert self.process.poll() is None, f"the run ended before {what}:\n" + "\n".join(self.lines)
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.0005)
        os.kill(self.process.pid, signal.SIGKILL)
        assert self.process.wait(timeout=60) == -signal.SIGKILL
        self._reader.join(timeout=10)

    def complete(self, timeout: float = 900) -> str:
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=10)
        output = "\n".join(self.lines)
        assert code == 0, output
        return output


@pytest.fixture
def crash_home(small_run, shipped_rows, tmp_path):
    """A copy of small_run's home (span 1 serving), span 2 on disk, and a `conveyor serve` on it."""
    small_config, _ = small_run
    config = copy_home(small_run, tmp_path / "home", spans_root=tmp_path / "spans")
    shutil.copytree(small_config.spans_root, config.spans_root)
    from data import spans_io

    spans_io.write_span(config.spans_root, 2, shipped_rows[SMALL_SPAN_ROWS : 2 * SMALL_SPAN_ROWS])
    server = subprocess.Popen(
        [CONVEYOR, "serve", "--home", str(config.home), "--port", "0", "--no-request-log"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env={**os.environ, "CONVEYOR_POLL_SECONDS": "0.2"},
    )
    try:
        line = server.stdout.readline()
        assert "serving model 'taxi' version" in line, line
        yield config, line.split(" at ")[1].split("/v1/")[0], versions.serving_version(config.serving_root)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)


def _served_version(url: str, row: dict) -> str:
    response = httpx.post(f"{url}/v1/models/taxi:predict", json={"instances": [from_row(row)]}, timeout=30)
    assert response.status_code == 200, response.text
    assert 0 <= response.json()["predictions"][0]["probability"] <= 1
    return response.headers["X-Model-Version"]


def _assert_safe(config: configs.PipelineConfig, url: str, row: dict, serving: str) -> None:
    """Only published versions in the serving root, `serving` serves, and the server answers with it."""
    root = config.serving_root
    assert versions.incomplete_versions(root) == [], "a version folder that is not published is visible"
    assert versions.serving_version(root) == serving
    for version in versions.ready_versions(root):  # complete: the published copy equals its staged source
        assert (root / version / versions.READY_FILE).stat().st_size > 100_000
    time.sleep(0.5)  # > poll_seconds: a server that would pick up something new has done so
    assert _served_version(url, row) == serving


def _pushes(config: configs.PipelineConfig) -> list[str]:
    """Versions recorded as pushed (PushedModel pushed=1), one per push, oldest first."""
    store = connection.open_store(connection.connection_config(config))
    found = set()
    for push in runs.node_executions(store, config.pipeline_name, registry.PUSHER):
        for artifact in push.outputs.get("pushed_model", []):
            if artifact.custom_properties["pushed"].int_value == 1:
                found.add(artifact.custom_properties["pushed_version"].string_value)
    return sorted(found, key=int)


def _finish_and_check(config, url, row, first: str) -> str:
    """Run to completion; exactly one new version, published, recorded, served, with lineage."""
    output = Run(config).complete()
    pushes = _pushes(config)
    assert len(pushes) == 2 and pushes[0] == first, pushes  # one push of the new model, no duplicate
    new = pushes[1]
    assert f"pushed: {config.serving_root / new}" in output
    assert versions.ready_versions(config.serving_root) == [first, new]
    assert versions.serving_version(config.serving_root) == new
    deadline = time.monotonic() + 60
    while _served_version(url, row) != new:
        assert time.monotonic() < deadline, "the server never swapped to the new version"
        time.sleep(0.2)
    lineage = subprocess.run([CONVEYOR, "lineage", "--home", str(config.home)], capture_output=True, text=True, timeout=300)
    assert lineage.returncode == 0 and f"model version {new} (serving now)" in lineage.stdout, lineage.stderr
    return new


@pytest.mark.timeout(3600)  # four runs of the installed command, one of them cold
def test_kills_at_a_boundary_mid_push_and_before_publish_leave_serving_intact_and_no_duplicate(crash_home, shipped_rows):
    config, url, first = crash_home
    row = shipped_rows[0]
    root = config.serving_root
    _assert_safe(config, url, row, first)

    run = Run(config)
    run.kill_when(lambda: run.finished("Trainer"), "Trainer to finish")
    _assert_safe(config, url, row, first)

    staging = root / versions.STAGING_DIR
    run = Run(config)  # Trainer is cached now: Evaluator, InfraCheck, then Pusher stages
    run.kill_when(lambda: staging.is_dir() and any(staging.iterdir()), "Pusher to start staging")
    [torn] = versions.staged_versions(root)
    _assert_safe(config, url, row, first)
    assert _pushes(config) == [first]  # killed inside Pusher: nothing recorded

    run = Run(config)  # Pusher runs again and stages a new version; killed before Publish
    run.kill_when(lambda: run.finished("Pusher"), "Pusher to finish")
    _assert_safe(config, url, row, first)
    [_, recorded] = _pushes(config)
    assert recorded != torn and versions.staged_versions(root) == [torn, recorded]
    states = {e.version: e for e in registry.list_versions(config)}
    assert states[recorded].state == registry.STAGED and states[recorded].pushed_model is not None
    assert states[torn].cleanable and not states[recorded].cleanable

    new = _finish_and_check(config, url, row, first)
    assert new == recorded  # Pusher cached, Publish made the recorded push visible
    assert versions.staged_versions(root) == [torn]
    cleaned = subprocess.run([CONVEYOR, "models", "--home", str(config.home), "--clean"], capture_output=True, text=True, timeout=300)
    assert cleaned.returncode == 0 and f"removed {torn} (staged)" in cleaned.stdout, cleaned.stderr
    assert versions.staged_versions(root) == [] and versions.ready_versions(root) == [first, new]
    back = subprocess.run([CONVEYOR, "rollback", "--home", str(config.home)], capture_output=True, text=True, timeout=300)
    assert back.returncode == 0 and f"{new} -> {first}" in back.stdout, back.stderr


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("component", COMPONENTS)
def test_a_kill_after_each_component_leaves_serving_intact_and_the_rerun_pushes_once(crash_home, shipped_rows, component):
    config, url, first = crash_home
    run = Run(config)
    run.kill_when(lambda: run.finished(component), f"{component} to finish")
    if component == "Publish":  # killed after the last node: the push is complete, recorded and serves
        [_, new] = _pushes(config)
        root = config.serving_root
        assert versions.incomplete_versions(root) == [] and versions.serving_version(root) == new
        deadline = time.monotonic() + 60  # the server loads the new version, then swaps
        while _served_version(url, shipped_rows[0]) != new:
            assert time.monotonic() < deadline, "the server never swapped to the published version"
            time.sleep(0.2)
        Run(config).complete()  # the re-run pushes nothing more
        assert _pushes(config) == [first, new] and versions.ready_versions(config.serving_root) == [first, new]
    else:
        _assert_safe(config, url, shipped_rows[0], first)
        _finish_and_check(config, url, shipped_rows[0], first)
    assert versions.staged_versions(config.serving_root) == []
