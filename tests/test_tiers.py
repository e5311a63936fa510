"""The fast tier's rule (tests/tiers.py), on test files written to break it, run by pytest itself in
a process of its own with the hooks of tests/conftest.py."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from pipeline.configs import REPO_ROOT

CONFTEST = "from tests.conftest import *  # noqa: F401,F403 (the hooks and fixtures under test)\n"
INI = "[pytest]\nmarkers =\n    slow: long\n    unit: the fast tier\n"
TESTS = '''
import socket
import subprocess
import sys

import pytest


@pytest.fixture
def api():
    return KfpStandIn  # by name: an HTTP server in this process


def _start():
    return Serve  # by name: a `conveyor serve` process


def test_pure():
    assert sum([1, 2]) == 3


def test_on_a_pipeline_run(small_run):
    pass


def test_through_a_fixture(api):
    pass


def test_through_a_helper():
    _start()


def test_a_runner_command():
    subprocess.run([CONVEYOR, "ct", "tick"])


def test_listens_unseen():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()


def test_starts_serve_unseen():
    subprocess.run([sys.executable, "-c", "pass"] + "conveyor.cli serve".split(), check=True)
'''


def _pytest(folder: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--basetemp={folder / 'tmp'}", "-q", *args],
        cwd=folder, env=env, capture_output=True, text=True, timeout=300,
    )


def _folder(tmp_path: Path, tests: str) -> Path:
    folder = tmp_path / "suite"
    folder.mkdir()
    (folder / "pytest.ini").write_text(INI)
    (folder / "conftest.py").write_text(CONFTEST)
    (folder / "test_synthetic.py").write_text(textwrap.dedent(tests))
    return folder


def test_only_tests_that_start_nothing_heavy_by_their_source_are_unit(tmp_path):
    done = _pytest(_folder(tmp_path, TESTS), "--collect-only", "-m", "unit")
    assert done.returncode == 0, done.stdout + done.stderr
    collected = sorted(line.split("::")[1] for line in done.stdout.splitlines() if "::" in line)
    assert collected == ["test_listens_unseen", "test_pure", "test_starts_serve_unseen"]


def test_a_unit_test_that_listens_or_starts_a_server_fails_saying_so(tmp_path):
    done = _pytest(_folder(tmp_path, TESTS), "-m", "unit", "-rf")
    assert "1 passed" in done.stdout and "2 failed" in done.stdout, done.stdout + done.stderr
    assert "test_listens_unseen is in the fast tier (unit) but listened on ('127.0.0.1'," in done.stdout
    assert "test_starts_serve_unseen is in the fast tier (unit) but started " in done.stdout
    assert "conveyor.cli serve" in done.stdout


def test_a_heavy_test_marked_unit_by_hand_stops_the_session(tmp_path):
    marked = "import pytest\n\n\n@pytest.mark.unit\ndef test_marked(small_run):\n    pass\n"
    done = _pytest(_folder(tmp_path, marked), "--collect-only")
    assert done.returncode == 4, done.stdout + done.stderr  # a usage error
    assert "test_marked is marked unit but uses fixture small_run: a pipeline run" in done.stderr
