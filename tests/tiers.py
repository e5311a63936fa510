"""The fast tier: every test that runs no pipeline and starts no server is marked `unit`.

`make test-fast` runs `pytest -m unit`. A test is heavy, and not `unit`, when it is marked `slow`,
or when it, a fixture it uses (directly or through other fixtures) or a function or class of the
tests' folder they name does one of:
  - request a fixture that runs a pipeline or a server (HEAVY_FIXTURES),
  - use a name that runs a pipeline or starts a server (HEAVY_NAMES),
  - start, from a literal argument list, a runner script, or the `conveyor` launcher (or `-m
    conveyor.cli`) with a command that runs a pipeline or serves (HEAVY_COMMANDS) or with a
    command it is given (`*args`).
That reading is by name, from the source. At run time a guard backs it up: a `unit` test that
listens on a socket in this process (an in-process server) or starts one of those commands (or
MariaDB, TensorBoard, JupyterLab, a Jupyter kernel) as a process fails, saying so, whatever the
reading missed. `tests/test_tiers.py` checks both on test files made to break them.
"""
from __future__ import annotations

import ast
import contextlib
import functools
import inspect
import os
import socket
import sys
import textwrap
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

HEAVY_FIXTURES = {
    "small_run": "a pipeline run",
    "blocked_run": "a pipeline run",
    "mariadb": "a MariaDB server",
}
HEAVY_NAMES = {
    "local_run": "a pipeline run (conveyor.local.runner)",
    "LocalDagRunner": "a pipeline run",
    "spec_harness": "tasks of the compiled spec, executed",
    "Serve": "a `conveyor serve` process",
    "ServerProcess": "a `conveyor serve` process",
    "KfpStandIn": "an HTTP server in this process",
    "HttpServer": "the model server's HTTP layer in this process",
    "NotebookClient": "a Jupyter kernel process",
}
HEAVY_COMMANDS = {"run", "serve", "ct", "kubeflow", "tensorboard", "notebooks"}
RUNNERS = {"local_runner.py", "kubeflow_runner.py"}  # run, compile or submit the pipeline
LAUNCHERS = {"CONVEYOR", "conveyor", "conveyor.cli"}  # in the source: the launcher's variable, `-m conveyor.cli`
STARRED = "*"  # an argument list item that is not known before the test runs
SERVERS = {"mariadbd", "mysqld", "tensorboard", "jupyter-lab", "ipykernel_launcher"}  # in a started process's argv


def _function_names(func: Callable) -> tuple[set[str], set[str], set[tuple[str, ...]]]:
    """Names, attribute names and literal argument lists (their string items and names) in `func`
    (a function, or a class and its methods)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    except (OSError, TypeError, SyntaxError):
        return set(), set(), set()
    names, attributes, argvs = set(), set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.Attribute):
            attributes.add(node.attr)
        elif isinstance(node, (ast.List, ast.Tuple)):
            items = []
            for item in node.elts:
                if isinstance(item, ast.Constant) and isinstance(item.value, str):
                    items.append(item.value)
                elif isinstance(item, ast.Call) and item.args and isinstance(item.args[0], ast.Name):
                    items.append(item.args[0].id)  # str(CONVEYOR)
                elif isinstance(item, ast.Name):
                    items.append(item.id)
                elif isinstance(item, ast.Starred):
                    items.append(STARRED)
            argvs.add(tuple(items))
    return names, attributes, argvs


@functools.cache
def _heavy_function(func: Callable, root: Path) -> str | None:
    """What `func`, or a function or class of the tests (in `root`) it names, starts (None: nothing heavy)."""
    names, attributes, argvs = _function_names(func)
    for name in sorted(names | attributes):
        if name in HEAVY_NAMES:
            return f"{name}: {HEAVY_NAMES[name]}"
    for argv in argvs:
        words = set(argv)
        if words & RUNNERS or (words & LAUNCHERS and words & (HEAVY_COMMANDS | {STARRED})):
            return f"the command [{', '.join(argv)}]"
    scope = getattr(func, "__globals__", None) or vars(sys.modules[func.__module__])
    for name in sorted(names):
        helper = scope.get(name)
        if (inspect.isfunction(helper) or inspect.isclass(helper)) and helper is not func and _in(helper, root):
            found = _heavy_function(helper, root)
            if found:
                return f"{found} (through {name})"
    return None


def _in(func: Callable, root: Path) -> bool:
    """Whether `func` is defined in a file under `root`."""
    try:
        return root in Path(inspect.getfile(func)).resolve().parents
    except TypeError:
        return False


def heavy_reason(item: pytest.Item) -> str | None:
    """Why `item` is not in the fast tier (None: it is)."""
    if item.get_closest_marker("slow"):
        return "marked slow"
    info = getattr(item, "_fixtureinfo", None)
    closure = info.names_closure if info else []
    for name in closure:
        if name in HEAVY_FIXTURES:
            return f"fixture {name}: {HEAVY_FIXTURES[name]}"
    root = item.path.resolve().parent  # the tests' folder: its functions and classes are read, not the project's
    functions = [getattr(item, "function", None)]
    if info:
        functions += [d.func for defs in info.name2fixturedefs.values() for d in defs if _in(d.func, root)]
    for func in functions:
        found = func is not None and _heavy_function(inspect.unwrap(func), root)
        if found:
            return found
    return None


def mark(items: list[pytest.Item]) -> None:
    """Mark the fast tier `unit`; a test marked `unit` by hand that is heavy is an error."""
    wrong = []
    for item in items:
        reason = heavy_reason(item)
        if reason is None:
            item.add_marker(pytest.mark.unit)
        elif item.get_closest_marker("unit"):
            wrong.append(f"{item.nodeid} is marked unit but uses {reason}")
    if wrong:
        raise pytest.UsageError("heavy tests marked unit:\n" + "\n".join(wrong))


def _started(argv: Any, executable: Any) -> str | None:
    """The command line of a process start the fast tier must not make (None: an allowed one)."""
    words = argv.split() if isinstance(argv, str) else [os.fsdecode(word) for word in argv or [executable]]
    names = {Path(word).name for word in words}
    if names & RUNNERS or (names & {"conveyor", "conveyor.cli"} and names & HEAVY_COMMANDS) or names & SERVERS:
        return " ".join(words)
    return None


class Guard:
    """Notes what a `unit` test starts that the fast tier must not: a process that runs a pipeline
    or serves (an audit hook sees every process this interpreter starts), or a socket listening in
    this process (socket.socket.listen, wrapped to note the address and then listen as ever)."""

    def __init__(self) -> None:
        self.watching = False
        self.seen: list[str] = []
        sys.addaudithook(self._hook)
        listen = socket.socket.listen
        guard = self

        def noting_listen(sock: socket.socket, *args: Any) -> None:
            if guard.watching:
                guard.seen.append(f"listened on {sock.getsockname()!r} (a server in this process)")
            listen(sock, *args)

        socket.socket.listen = noting_listen  # type: ignore[method-assign]

    def _hook(self, event: str, args: tuple[Any, ...]) -> None:
        if self.watching and event == "subprocess.Popen":
            command = _started(args[1], args[0])
            if command:
                self.seen.append(f"started {command}")

    @contextlib.contextmanager
    def watch(self, item: pytest.Item) -> Iterator[None]:
        """Around a phase of a test (setup, call, teardown): fail a `unit` test that started something heavy."""
        if not item.get_closest_marker("unit"):
            yield
            return
        self.watching, self.seen = True, []
        try:
            yield
        finally:
            self.watching = False
        if self.seen:
            pytest.fail(
                f"{item.nodeid} is in the fast tier (unit) but " + "; ".join(self.seen)
                + ": give it a heavy fixture or name what it starts in tests/tiers.py",
                pytrace=False,
            )
