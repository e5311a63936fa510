"""conveyor/kubeflow/warm_start.py on small modules written here: a forked child behaves as `python -m` does.

Each behaviour is run both ways, forked from the warm helper and as a plain subprocess, and the two
must agree (log, exit status); the real entrypoint's tasks run this way in test_kubeflow_execute.py.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conveyor.kubeflow import warm_start

MODULES = {
    "show": """
        import os, sys
        import counted
        print("name", __name__, "argv", sys.argv[1:], "file", sys.argv[0].endswith("show.py"))
        print("cwd", os.getcwd(), "path0", sys.path[0] == os.getcwd())
        print("env", os.environ.get("WARM_TEST_VALUE"))
        print("to stderr", file=sys.stderr)
        sys.exit(int(sys.argv[1]))
    """,
    "counted": """
        import os
        with open(os.environ["WARM_TEST_COUNT"], "a") as out:
            out.write(f"imported in {os.getpid()}\\n")
    """,
    "fails": """
        raise ValueError("bad input for this task")
    """,
    "sleeps": """
        import time
        time.sleep(60)
    """,
    "threaded": """
        import threading, time
        threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
    """,
}


@pytest.fixture
def place(tmp_path: Path) -> dict:
    code = tmp_path / "code"
    code.mkdir()
    for name, source in MODULES.items():
        (code / f"{name}.py").write_text(textwrap.dedent(source))
    env = {
        **os.environ,
        "PYTHONPATH": f"{code}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        "WARM_TEST_VALUE": "from the env",
        "WARM_TEST_COUNT": str(tmp_path / "count.txt"),
    }
    return {"root": tmp_path, "env": env, "count": tmp_path / "count.txt"}


def _both(place: dict, *args: str, preload: tuple[str, ...] = ()) -> dict[str, tuple[int, str]]:
    """(exit status, log text) of `python -m ARGS` forked warm and as a plain subprocess."""
    results = {}
    for mode, warm in (("warm", True), ("plain", False)):
        cwd, log = place["root"] / mode / "work", place["root"] / mode / "task.log"
        with warm_start.TaskStarter(place["root"] / mode / "helper", place["env"], warm=warm) as starter:
            status = starter.run([sys.executable, "-m", *args], log, cwd, preload=preload)
            assert (starter.refused is None) == warm
        text = log.read_text().replace(str(cwd), "<cwd>")
        results[mode] = (status, "\n".join(line for line in text.splitlines() if not line.startswith(warm_start.FALLBACK_NOTE)))
    return results


def test_a_forked_child_runs_the_module_as_python_m_does(place):
    results = _both(place, "show", "3", "--flag", "x")
    assert results["warm"] == results["plain"]
    status, log = results["warm"]
    assert status == 3
    assert "name __main__ argv ['3', '--flag', 'x'] file True" in log
    assert "cwd <cwd> path0 True" in log and "env from the env" in log and "to stderr" in log


def test_an_uncaught_exception_ends_the_child_as_it_ends_python_m(place):
    results = _both(place, "fails")
    assert results["warm"][0] == results["plain"][0] == 1
    for _, log in results.values():
        assert log.splitlines()[-1] == "ValueError: bad input for this task"


def test_the_helper_imports_what_the_module_imports_once_for_every_child(place):
    with warm_start.TaskStarter(place["root"] / "helper", place["env"]) as starter:
        for run in range(3):
            assert starter.run([sys.executable, "-m", "show", "0"], place["root"] / f"{run}.log", place["root"]) == 0
        helper = starter._helper.pid
    helper_log = (place["root"] / "helper" / warm_start.LOG_FILE).read_text()
    forked = [line.split()[3] for line in helper_log.splitlines() if line.startswith("warm start: forked")]
    # `counted` was imported once, by the helper (not by any of the three children)...
    assert len(forked) == 3 and place["count"].read_text().splitlines() == [f"imported in {helper}"]
    # ...while a plain subprocess imports it itself.
    with warm_start.TaskStarter(place["root"] / "plain", place["env"], warm=False) as starter:
        assert starter.run([sys.executable, "-m", "show", "0"], place["root"] / "plain.log", place["root"]) == 0
    assert len(place["count"].read_text().splitlines()) == 2


def test_other_commands_run_as_plain_subprocesses(place):
    log = place["root"] / "shell.log"
    with warm_start.TaskStarter(place["root"] / "helper", place["env"]) as starter:
        assert starter.run(["/bin/sh", "-c", "echo $WARM_TEST_VALUE; exit 4"], log, place["root"]) == 4
        assert starter._helper is None  # no helper was started for it
    assert log.read_text() == "from the env\n"


def test_a_command_past_its_timeout_is_killed(place):
    with warm_start.TaskStarter(place["root"] / "helper", place["env"]) as starter:
        started = time.monotonic()
        with pytest.raises(subprocess.TimeoutExpired):
            starter.run([sys.executable, "-m", "sleeps"], place["root"] / "sleeps.log", place["root"], timeout=1)
        assert time.monotonic() - started < 30
        # The helper reaped the killed child and answers the next command.
        assert starter.run([sys.executable, "-m", "show", "0"], place["root"] / "next.log", place["root"]) == 0


def test_an_import_that_starts_a_thread_makes_the_helper_refuse_to_fork(place):
    log = place["root"] / "task.log"
    with warm_start.TaskStarter(place["root"] / "helper", place["env"]) as starter:
        assert starter.run([sys.executable, "-m", "show", "5"], log, place["root"], preload=["threaded"]) == 5
        assert starter.refused == "after importing for show: Python threads running: 1, forking is not safe"
        assert starter.run([sys.executable, "-m", "show", "6"], place["root"] / "later.log", place["root"]) == 6
    first = log.read_text().splitlines()
    assert first[0] == f"{warm_start.FALLBACK_NOTE} ({starter.refused}); running a plain subprocess"
    assert "name __main__ argv ['5'] file True" in first  # it still ran, as a plain subprocess
    assert (place["root"] / "later.log").read_text().startswith(warm_start.FALLBACK_NOTE)
    assert "forked" not in (place["root"] / "helper" / warm_start.LOG_FILE).read_text()
