"""The installed `conveyor` command, as the README tells a person to use it: real processes, real files.

One home is shared by the tests below: a first `conveyor run` (with a second one started while it runs,
and its temp folder watched), then `models`, `lineage`, `ct tick`, `serve` and a run that fails.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from data import spans_io
from pipeline import configs, home_lock, versions
from tests.conftest import SMALL_SPAN_ROWS

CONVEYOR = Path(sys.executable).with_name("conveyor")  # the console script `make setup` installs
# What TensorFlow, absl and gRPC print at start-up; none of it may reach a command's console.
NOISE = re.compile(r"oneDNN|TF_ENABLE_ONEDNN|cuda|I0000|W0000|E0000|absl|tensorflow/|WARNING:|DeprecationWarning")


def conveyor(*args: str, home: Path, env: dict | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(CONVEYOR), *args, "--home", str(home)], capture_output=True, text=True, timeout=timeout, env=env
    )


def assert_quiet(result: subprocess.CompletedProcess) -> None:
    noisy = [line for line in (result.stdout + result.stderr).splitlines() if NOISE.search(line)]
    assert not noisy, "library noise on the console:\n" + "\n".join(noisy)


@pytest.fixture(scope="module")
def first_run(shipped_rows, tmp_path_factory):
    """`conveyor run` on a small span 1 with TMPDIR watched; a second `conveyor run` starts meanwhile."""
    base = tmp_path_factory.mktemp("front_door")
    home, spans_root, tmp = base / "home", base / "spans", base / "tmp"
    tmp.mkdir()
    spans_io.write_span(spans_root, 1, shipped_rows[:SMALL_SPAN_ROWS])
    env = {**os.environ, "TMPDIR": str(tmp)}
    argv = [str(CONVEYOR), "run", "--home", str(home), "--spans-root", str(spans_root), "--train-steps", "50", "--eval-steps", "5"]
    first = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lock = home / home_lock.LOCK_FILE
    deadline = time.monotonic() + 120
    while not (lock.exists() and lock.read_text()) and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    second = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    out, err = first.communicate(timeout=900)
    leftovers = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*"))
    return {
        "home": home,
        "spans_root": spans_root,
        "run": subprocess.CompletedProcess(argv, first.returncode, out, err),
        "second": second,
        "tmp_leftovers": leftovers,
        "first_pid": first.pid,
    }


def test_installed_launcher_runs_the_pipeline_and_pushes(first_run):
    run = first_run["run"]
    assert run.returncode == 0, run.stdout + run.stderr
    assert "pushed: " in run.stdout and "pushed: nothing" not in run.stdout
    assert "blessed: yes" in run.stdout
    assert re.search(r"^  Trainer\s+ran\s+[\d.]+ s$", run.stdout, re.M)
    assert_quiet(run)


def test_the_summary_describes_this_run(first_run):
    home = first_run["home"]
    config = configs.load(home=home)
    run_id = re.search(r"run: (\S+)", first_run["run"].stdout).group(1)
    from metadata import connection, runs

    store = connection.open_store(connection.connection_config(config))
    assert runs.run_ids(store, config.pipeline_name) == [run_id]  # the only run, and the summary names it
    report = next(config.logs_dir.glob("run-*.html"))
    assert run_id in report.read_text()


def test_a_second_writer_is_refused_with_who_holds_the_home(first_run):
    second = first_run["second"]
    assert second.returncode == home_lock.BUSY_EXIT_CODE, second.stdout + second.stderr
    assert re.search(rf"busy: conveyor run started at \d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d UTC by pid {first_run['first_pid']}", second.stderr)
    assert "running" not in second.stdout  # it started nothing
    config = configs.load(home=first_run["home"])
    assert len(versions.ready_versions(config.serving_root)) == 1  # exactly one model pushed


def test_a_local_run_leaves_nothing_in_the_temp_folder(first_run):
    assert first_run["tmp_leftovers"] == []  # no sdist, no wheel, no Beam staging folder outside the home
    assert list((first_run["home"] / "tmp").iterdir()) == []  # and its own scratch folder is gone


def test_a_local_run_runs_beam_here_and_downloads_no_runner(first_run):
    # Beam's DirectRunner would first try the Prism runner, fetching its binary from the internet at
    # run time; the local modes name the FnApiRunner, so the run log shows neither.
    log = sorted(configs.load(home=first_run["home"]).logs_dir.glob("run-*.log"))[0]  # the first run's
    text = log.read_text()
    assert "--runner=FnApiRunner" in text  # the components got the local Beam args
    assert "PrismRunner" not in text and "Downloading prism" not in text


def test_models_lists_the_pushed_version_quietly(first_run):
    result = conveyor("models", home=first_run["home"])
    assert result.returncode == 0, result.stderr
    version = versions.serving_version(configs.load(home=first_run["home"]).serving_root)
    assert re.search(rf"^\* {version}\s", result.stdout, re.M)
    assert_quiet(result)


def test_lineage_names_the_span_and_the_evaluation(first_run):
    result = conveyor("lineage", home=first_run["home"])
    assert result.returncode == 0, result.stderr
    assert "(serving now)" in result.stdout and "training window spans [1]" in result.stdout
    assert "blessed yes" in result.stdout
    assert_quiet(result)


def test_ct_tick_decides_and_records(first_run):
    result = conveyor("ct", "tick", "--spans-root", str(first_run["spans_root"]), home=first_run["home"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no new span" in result.stdout or "FIRED" in result.stdout
    log = configs.load(home=first_run["home"]).ct_dir / "decisions.jsonl"
    assert json.loads(log.read_text().splitlines()[-1])["reason"]
    assert_quiet(result)


def test_serve_answers_over_http(first_run, shipped_rows):
    server = subprocess.Popen(
        [str(CONVEYOR), "serve", "--home", str(first_run["home"]), "--port", "0", "--no-request-log"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = server.stdout.readline()
        url = re.search(r"at (http://127\.0\.0\.1:\d+)/v1/models/taxi", line).group(1)
        with urllib.request.urlopen(f"{url}/v1/models/taxi", timeout=30) as response:
            status = json.load(response)
        assert status["model_version_status"][0]["state"] == "AVAILABLE"
    finally:
        server.terminate()
        out, err = server.communicate(timeout=60)
    assert_quiet(subprocess.CompletedProcess([], 0, line + out, err))


def test_a_failed_run_says_where_and_why_and_keeps_the_traceback_in_the_log(first_run, tmp_path):
    spans_root = tmp_path / "spans"
    (spans_root / "span-3").mkdir(parents=True)
    header = (first_run["spans_root"] / "span-1" / spans_io.SPAN_FILE).read_text().splitlines()[0]
    (spans_root / "span-3" / spans_io.SPAN_FILE).write_text(f"{header}\n1,2\n")  # a ragged row: CsvExampleGen fails on it
    result = conveyor("run", "--span", "3", "--spans-root", str(spans_root), home=first_run["home"], timeout=600)
    assert result.returncode == 1
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1 and "CsvExampleGen" in failed[0], result.stdout
    log = Path(re.search(r"\(traceback in (\S+)\)", result.stdout).group(1))
    assert "Traceback (most recent call last)" in log.read_text()
    assert_quiet(result)
