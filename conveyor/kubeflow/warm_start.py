"""Run task commands as processes; `python -m MODULE ...` ones forked from a warm interpreter.

Importing TensorFlow, TFX, TFMA and Beam costs a fresh interpreter 10 to 25 s on two cores, more
than most tasks of a small spec take to do their work. A `TaskStarter` keeps one helper process
(this module, `python -m conveyor.kubeflow.warm_start FD`) that imports what a command would import first
and runs nothing else, and forks one child per command. Only the interpreter start is shared;
each command is still its own process, with its own exit status (children share the hash seed
of `str` and whatever the imports did, nothing else):

- before forking, the helper imports the modules the command's module imports at its top level
  (read from its source with `ast`; the module itself is not executed there) and the modules
  named in `preload` (the spec harness names the task's executor class). Imports accumulate: a
  child may find more modules loaded than a fresh interpreter would, never fewer.
- the child is the command's process: it changes into the command's working directory, sends
  stdout and stderr to the command's log, sets `sys.argv` and `sys.path[0]` as `python -m` does,
  re-seeds numpy's global generator as a fresh interpreter would (Python's `random` re-seeds
  itself after a fork), and runs the module as `__main__` (runpy). A `SystemExit`, an uncaught
  exception and the interpreter's shutdown (non-daemon threads, atexit) end it as they end
  `python -m`; the helper reports its exit status (negative: killed by that signal). The helper
  calls `gc.freeze()` before forking, so the child's collector never walks (and so never copies)
  the objects the imports made; without it, the child's shutdown alone took 4.4 s, with it 1.2 s.
- fork safety: a fork copies only the calling thread, so a lock another thread holds stays held
  in the child. Importing numpy starts OpenBLAS's worker threads and pyarrow starts jemalloc's
  background thread; both libraries make themselves safe across fork() (pthread_atfork: OpenBLAS
  joins its workers before the fork and starts new ones in the child on first use, jemalloc takes
  its locks around the fork and runs the child without the background thread). Before every fork
  the helper counts its threads (/proc/self/task) and forks only if it is running no Python
  thread and no native thread besides those; otherwise it refuses, that command and every later
  one run as plain subprocesses, and each such task log says so in a line starting FALLBACK_NOTE.

Commands that are not `<this python> -m MODULE ...` always run as plain subprocesses, in the same
directory, environment and log. The helper's own output (what the imports print, one line per
fork) goes to `<home>/warm-start.log`; it exits when its `TaskStarter` closes.
"""
from __future__ import annotations

import ast
import gc
import importlib
import importlib.util
import json
import os
import runpy
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import threadpoolctl

LOG_FILE = "warm-start.log"
FALLBACK_NOTE = "conveyor warm start: not used"


class WarmStartError(RuntimeError):
    """The warm-start helper stopped answering (its log says why)."""


class TaskStarter:
    """Starts commands as processes (see the module docstring); use it as a context manager."""

    def __init__(self, home: Path, env: Mapping[str, str], warm: bool = True) -> None:
        """`home`: the helper's working directory and log; `env`: every command's environment;
        `warm=False` runs every command as a plain subprocess."""
        self.home = Path(home)
        self.env = dict(env)
        self.refused: str | None = None if warm else "warm start turned off"
        self._helper: subprocess.Popen | None = None
        self._channel: socket.socket | None = None
        self._buffer = b""

    def __enter__(self) -> TaskStarter:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    def run(self, command: Sequence[str], log: Path, cwd: Path, preload: Sequence[str] = (), timeout: float | None = None) -> int:
        """Run `command` in `cwd` with stdout and stderr appended to `log`; its exit status.

        Raises subprocess.TimeoutExpired after killing the command if it runs past `timeout`.
        """
        log.parent.mkdir(parents=True, exist_ok=True)
        cwd.mkdir(parents=True, exist_ok=True)
        module = _python_module(command)
        if module and not self.refused:
            status = self._run_warm(command, module, log, cwd, preload, timeout)
            if status is not None:
                return status
        if module:
            with open(log, "a") as out:
                out.write(f"{FALLBACK_NOTE} ({self.refused}); running a plain subprocess\n")
        with open(log, "ab") as out:
            done = subprocess.run(
                list(command), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=self.env, timeout=timeout
            )
        return done.returncode

    def close(self) -> None:
        """Stop the helper (it exits when its channel closes)."""
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        if self._helper is not None:
            try:
                self._helper.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._helper.kill()
                self._helper.wait()
            self._helper = None

    def _run_warm(
        self, command: Sequence[str], module: str, log: Path, cwd: Path, preload: Sequence[str], timeout: float | None
    ) -> int | None:
        """The command's exit status, or None if the helper refused to fork (self.refused says why)."""
        self._start()
        request = {"module": module, "args": list(command[3:]), "cwd": str(cwd), "log": str(log), "preload": list(preload)}
        self._send(request)
        answer = self._receive()
        if "refused" in answer:
            self.refused = answer["refused"]
            return None
        try:
            return self._receive(timeout)["status"]
        except TimeoutError:
            os.kill(answer["pid"], signal.SIGKILL)
            self._receive()
            raise subprocess.TimeoutExpired(list(command), timeout) from None

    def _start(self) -> None:
        if self._helper is not None:
            return
        self.home.mkdir(parents=True, exist_ok=True)
        ours, theirs = socket.socketpair()
        with open(self.home / LOG_FILE, "ab") as out:
            self._helper = subprocess.Popen(
                [sys.executable, "-m", __spec__.name, str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.home,
                env=self.env,
            )
        theirs.close()
        self._channel = ours

    def _send(self, message: dict[str, Any]) -> None:
        try:
            self._channel.sendall(json.dumps(message).encode() + b"\n")
        except OSError as exc:
            raise self._gone() from exc

    def _receive(self, timeout: float | None = None) -> dict[str, Any]:
        """The helper's next message; TimeoutError if none comes within `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = None if deadline is None else max(deadline - time.monotonic(), 0.001)
            self._channel.settimeout(left)
            chunk = self._channel.recv(65536)
            if not chunk:
                raise self._gone()
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return json.loads(line)

    def _gone(self) -> WarmStartError:
        return WarmStartError(f"the warm-start helper exited (status {self._helper.poll()}); see {self.home / LOG_FILE}")


def _python_module(command: Sequence[str]) -> str | None:
    """MODULE if `command` is `<this python> -m MODULE ...`, else None."""
    if len(command) >= 3 and command[0] == sys.executable and command[1] == "-m":
        return command[2]
    return None


# The helper process.


def _top_level_imports(module: str) -> list[tuple[str, tuple[str, ...]]]:
    """(module, names) of each import statement in `module`'s body, found without executing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return []
    package = module if spec.submodule_search_locations else module.rpartition(".")[0]
    found = []
    for node in ast.parse(Path(spec.origin).read_text(), spec.origin).body:
        if isinstance(node, ast.Import):
            found.extend((alias.name, ()) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            name = importlib.util.resolve_name("." * node.level + (node.module or ""), package) if node.level else node.module
            found.append((name, tuple(alias.name for alias in node.names if alias.name != "*")))
    return found


def _preload(module: str, preload: Sequence[str]) -> None:
    """Import what `module` imports first, and `preload`; a failure is the command's to meet."""
    try:
        wanted = _top_level_imports(module) + [(name, ()) for name in preload]
    except Exception as exc:  # the child meets the same problem and reports it in its log
        print(f"warm start: cannot read the imports of {module}: {exc!r}", flush=True)
        wanted = [(name, ()) for name in preload]
    for name, names in wanted:
        try:
            __import__(name, fromlist=names)
        except Exception as exc:
            print(f"warm start: preloading {name} failed: {exc!r}", flush=True)


def _unsafe_threads() -> str | None:
    """Why forking now would not be safe, or None: every thread but this one must be a worker its
    library makes safe across fork(): OpenBLAS's (its pthread_atfork handler joins them before the
    fork; the child starts its own on first use) or jemalloc's background thread (its handler takes
    every jemalloc lock around the fork). A Python thread, or any other native thread, is not."""
    if threading.active_count() > 1:
        return f"Python threads running: {threading.active_count() - 1}"
    names = [Path(f"/proc/self/task/{tid}/comm").read_text().strip() for tid in os.listdir("/proc/self/task")]
    openblas = sum(max(lib["num_threads"] - 1, 0) for lib in threadpoolctl.threadpool_info() if lib["internal_api"] == "openblas")
    unknown = len(names) - 1 - names.count("jemalloc_bg_thd") - openblas
    if unknown > 0:
        return f"{len(names)} threads, {unknown} of them neither OpenBLAS workers nor jemalloc's"
    return None


def _become(request: dict[str, Any]) -> None:
    """In the forked child: be `python -m MODULE ARGS` in the request's directory and log."""
    log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    os.chdir(request["cwd"])
    sys.path[0] = os.getcwd()
    sys.argv = [request["module"], *request["args"]]
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed()
    runpy.run_module(request["module"], run_name="__main__", alter_sys=True)


def _serve(channel: socket.socket) -> None:
    """Answer requests until the channel closes; in a forked child, run its command and return."""
    requests = channel.makefile("rb")
    for line in requests:
        request = json.loads(line)
        started = time.monotonic()
        _preload(request["module"], request["preload"])
        unsafe = _unsafe_threads()
        if unsafe:
            reason = f"after importing for {request['module']}: {unsafe}, forking is not safe"
            channel.sendall(json.dumps({"refused": reason}).encode() + b"\n")
            continue
        print(f"warm start: imports ready in {time.monotonic() - started:.1f} s ({len(sys.modules)} modules)", flush=True)
        sys.stderr.flush()
        gc.freeze()  # what the helper holds is not the child's to collect: its pages stay shared
        pid = os.fork()
        if pid == 0:
            requests.close()
            channel.close()
            _become(request)
            return
        print(f"warm start: forked {pid} for python -m {request['module']} in {request['cwd']}", flush=True)
        channel.sendall(json.dumps({"pid": pid}).encode() + b"\n")
        _, status = os.waitpid(pid, 0)
        channel.sendall(json.dumps({"status": os.waitstatus_to_exitcode(status)}).encode() + b"\n")


if __name__ == "__main__":
    _serve(socket.socket(fileno=int(sys.argv[1])))
