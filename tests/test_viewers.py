"""`conveyor tensorboard` and `conveyor notebooks`: the right data, served on 127.0.0.1, then stopped."""
from __future__ import annotations

import json
import queue
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conveyor import viewers
from metadata import connection, runs
from pipeline import configs
from pipeline.configs import REPO_ROOT


class Server:
    """A `conveyor` viewer command in a subprocess; its output lines are read as they come."""

    def __init__(self, *args: str, env: dict[str, str] | None = None):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "conveyor.cli", *args],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line)

    def wait_for(self, pattern: str, timeout: float = 120) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                assert self.process.poll() is None, "".join(self.seen)
                continue
            self.seen.append(line)
            if match := re.search(pattern, line):
                return match
        pytest.fail(f"no line matching {pattern!r} within {timeout} s:\n{''.join(self.seen)}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def get_json(url: str, connect_within: float = 30) -> object:
    """GET `url` as JSON, retrying while the port does not accept connections yet (Jupyter prints
    its URL just before it listens)."""
    deadline = time.monotonic() + connect_within
    while True:
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                return json.load(response)
        except urllib.error.URLError as error:
            if not isinstance(error.reason, ConnectionRefusedError) or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_tensorboard_logdir_is_the_trainers_model_run_artifact(small_run):
    config, summary = small_run
    run = runs.load_run(connection.open_metadata(config), summary.run_id)
    logdir, trainer = viewers.trainer_logdir(config)
    assert logdir == run.output("Trainer", "model_run").uri
    assert trainer.execution.id == run.nodes["Trainer"].execution.id
    assert list(Path(logdir, "train").glob("events.out.tfevents.*"))  # Keras' TensorBoard callback wrote here


def test_tensorboard_command_serves_the_latest_logs_on_loopback(small_run):
    config, _ = small_run
    logdir, _ = viewers.trainer_logdir(config)
    server = Server("tensorboard", "--home", str(config.home), "--port", "0")
    try:
        url = server.wait_for(r"TensorBoard at (http://127\.0\.0\.1:\d+/)").group(1)
        assert get_json(url + "data/logdir") == {"logdir": logdir}
        deadline = time.monotonic() + 60
        while "train" not in (runs := get_json(url + "data/runs")) and time.monotonic() < deadline:
            time.sleep(1)  # TensorBoard loads the event files in the background
        assert {"train", "validation"} <= set(runs)
    finally:
        server.stop()


def test_notebooks_command_serves_jupyterlab_on_loopback(small_run, tmp_path):
    config, _ = small_run
    _, env = viewers.jupyter_command(config, 0)
    assert env["CONVEYOR_HOME"] == str(config.home.resolve())
    env.update(JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), JUPYTER_CONFIG_DIR=str(tmp_path / "config"))
    server = Server("notebooks", "--home", str(config.home), "--port", "0", env=env)
    try:
        url, token = server.wait_for(r"(http://127\.0\.0\.1:\d+/)lab\?token=(\w+)").groups()
        contents = get_json(f"{url}api/contents?token={token}")
        assert {"data_validation.ipynb", "model_analysis.ipynb"} <= {item["name"] for item in contents["content"]}
        assert "python3" in get_json(f"{url}api/kernelspecs?token={token}")["kernelspecs"]
    finally:
        server.stop()


def test_viewers_name_a_home_without_runs(tmp_path):
    with pytest.raises(FileNotFoundError, match="no pipeline runs recorded under"):
        viewers.trainer_logdir(configs.load(home=tmp_path))
