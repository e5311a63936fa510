"""`conveyor serve`: the listening socket and the worker processes that share it.

The supervisor binds the address (a busy port is one line of error, exit code 2), then starts
`serving_workers` processes (serving/worker.py) that inherit the listening socket: the kernel hands
each new connection to one of them, so the server uses more than one core. Each worker loads its
own model, watches the serving root, batches its requests and appends to its own request-log file.
The supervisor waits until every worker has loaded its model, prints the address, restarts a
worker that dies (after 1 s, doubling up to 30 s while it keeps dying within a minute of starting),
and replaces a worker that served long enough without failing a request (serving/recycling.py).
With `--grpc-port` each worker also serves TF Serving's gRPC API (serving/grpc_api.py) on one port
they share (SO_REUSEPORT; the supervisor holds it bound so that nothing else takes it).
SIGTERM or SIGINT: the workers stop accepting, finish the requests in flight and exit; a worker
whose supervisor was killed stops by itself. The supervisor imports no TensorFlow.

Workers run with PROMETHEUS_MULTIPROC_DIR set to a fresh temporary folder, removed at exit, so
any worker's /metrics reports the sum over all of them (serving/metrics.py), and share one table
of answered request ids (serving/request_ids.py), so that an id gets 409 from every worker.
"""
from __future__ import annotations

import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Callable

from pipeline import configs
from pipeline.configs import PipelineConfig
from serving import metrics, recycling, request_ids, status
from serving.http import bind

READY_TIMEOUT_SECONDS = 600.0
STOP_TIMEOUT_SECONDS = 30.0


def _terminal_fd() -> int:
    """Where the workers' own log lines go: the command's stderr. Under the front door's
    quiet_command that is a copy of the terminal's, while descriptor 2, which the workers inherit,
    is <home>/logs/serve.log and takes TensorFlow's start-up output."""
    try:
        return sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # an in-memory stream (an in-process caller)
        return 2


@dataclass
class _Worker:
    index: int
    process: subprocess.Popen
    ready_pipe: int
    started: float
    failures: int = 0
    restart_at: float | None = None
    version: str | None = None
    ready: bool = False
    ready_at: float = 0.0
    baseline: int | None = None  # resident bytes when it became ready
    recycle_after: float = 0.0  # a replacement that failed to load is tried again after this


class Supervisor:
    def __init__(self, config: PipelineConfig, host: str | None, port: int | None, log_requests: bool,
                 report: Callable[[str], None], grpc_port: int | None = None, fold: bool = True):
        self.config, self.log_requests, self.report, self.fold = config, log_requests, report, fold
        self.count = config.serving_workers or os.cpu_count() or 1
        self.sock = bind(host or config.serving_host, config.serving_port if port is None else port)
        self.grpc = None if grpc_port is None else _reserve(host or config.serving_host, grpc_port)
        self.metrics_dir = tempfile.mkdtemp(prefix="conveyor-metrics-")
        self.request_ids = request_ids.create()  # one table of answered ids for every worker
        self.env = {**os.environ, **configs.to_env(config), metrics.MULTIPROCESS_ENV: self.metrics_dir}
        self.workers: list[_Worker] = []
        self.replacing: dict[int, _Worker] = {}  # worker index -> its replacement, loading
        self.retiring: list[_Worker] = []  # replaced workers, draining
        self.stopping = False

    @property
    def url(self) -> str:
        address, port = self.sock.getsockname()[:2]
        return f"http://[{address}]:{port}" if ":" in address else f"http://{address}:{port}"

    @property
    def grpc_address(self) -> str:
        address, port = self.grpc.getsockname()[:2]
        return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"

    def _spawn(self, index: int, failures: int = 0) -> _Worker:
        read_end, write_end = os.pipe()
        log_fd = _terminal_fd()
        argv = [sys.executable, "-m", "serving.worker", "--fd", str(self.sock.fileno()),
                "--ready-fd", str(write_end), "--log-fd", str(log_fd), "--index", str(index),
                "--request-ids", str(self.request_ids)]
        if not self.log_requests:
            argv.append("--no-request-log")
        if self.grpc is not None:
            argv += ["--grpc-port", str(self.grpc.getsockname()[1])]
        if not self.fold:
            argv.append("--no-fold")
        process = subprocess.Popen(argv, pass_fds=(self.sock.fileno(), write_end, log_fd), env=self.env)
        os.close(write_end)
        return _Worker(index, process, read_end, time.monotonic(), failures)

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        try:
            status.remove_stale(self.config.home)
            self.workers = [self._spawn(i) for i in range(self.count)]
            if not self._wait_ready():
                return 0 if self.stopping else 1
            version = next((w.version for w in self.workers if w.version), None)
            shown = version or f"none yet (waiting for a push under {self.config.serving_root})"
            grpc = f", gRPC at {self.grpc_address}" if self.grpc is not None else ""
            self.report(
                f"conveyor: serving model {self.config.model_name!r} version {shown} at "
                f"{self.url}/v1/models/{self.config.model_name}{grpc} ({self.count} worker{'s' if self.count > 1 else ''})"
            )
            while not self.stopping:
                self._supervise(timeout=0.5)
            return 0
        finally:
            self._stop_all()
            self.sock.close()
            if self.grpc is not None:
                self.grpc.close()
            shutil.rmtree(self.metrics_dir, ignore_errors=True)
            self.request_ids.unlink(missing_ok=True)

    def _on_signal(self, signum: int, frame: object) -> None:
        self.stopping = True

    def _read_ready(self, timeout: float) -> None:
        pipes = {w.ready_pipe: w for w in [*self.workers, *self.replacing.values()] if w.ready_pipe >= 0}
        if not pipes:
            time.sleep(timeout)
            return
        try:
            readable, _, _ = select.select(list(pipes), [], [], timeout)
        except InterruptedError:
            return
        for fd in readable:
            worker = pipes[fd]
            line = os.read(fd, 256).decode(errors="replace").strip()
            os.close(fd)
            worker.ready_pipe = -1
            if line.startswith("ready "):
                worker.ready, worker.ready_at = True, time.monotonic()
                worker.baseline = recycling.resident_bytes(worker.process.pid)
                worker.version = None if line == "ready -" else line.split(" ", 1)[1]

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while not self.stopping and time.monotonic() < deadline:
            if all(w.ready for w in self.workers):
                return True
            self._read_ready(0.2)
            dead = [w for w in self.workers if w.process.poll() is not None and not w.ready]
            if dead and len(dead) == len(self.workers):
                codes = ", ".join(str(w.process.returncode) for w in dead)
                self.report(f"conveyor serve: every worker exited before serving (exit codes {codes}); see the errors above")
                return False
            for worker in dead:
                self._restart_later(worker)
            self._restart_due()
        if not self.stopping:
            self.report(f"conveyor serve: the workers did not load within {READY_TIMEOUT_SECONDS:.0f} s")
        return False

    def _supervise(self, timeout: float) -> None:
        self._read_ready(timeout)
        for worker in self.workers:
            if worker.restart_at is None and worker.process.poll() is not None:
                self._restart_later(worker)
        self._restart_due()
        self._recycle()

    def _recycle(self) -> None:
        """Replace the workers that served long enough (serving/recycling.py): the replacement
        loads first, then the old worker drains."""
        now = time.monotonic()
        for i, worker in enumerate(self.workers):
            replacement = self.replacing.get(worker.index)
            if replacement is not None:
                if replacement.ready:
                    self.workers[i] = replacement
                    del self.replacing[worker.index]
                    worker.process.send_signal(signal.SIGTERM)  # stops accepting, answers what it was asked
                    worker.restart_at = now  # not restarted when it exits
                    self.retiring.append(worker)
                elif replacement.process.poll() is not None:  # failed to load: the old one serves on
                    self._close_pipe(replacement)
                    del self.replacing[worker.index]
                    worker.recycle_after = now + 60
                continue
            if not worker.ready or worker.restart_at is not None or now < worker.recycle_after:
                continue
            pid = worker.process.pid
            why = recycling.reason(self.config, status.read(self.config.home, pid), worker.baseline,
                                   recycling.resident_bytes(pid), now - worker.ready_at)
            if why is not None:
                print(f"conveyor serve: replacing worker {worker.index} (pid {pid}) after {why}",
                      file=sys.stderr, flush=True)
                self.replacing[worker.index] = self._spawn(worker.index)
        for worker in [w for w in self.retiring if w.process.poll() is not None]:
            self.retiring.remove(worker)
            metrics.process_exited(worker.process.pid)
            status.remove(self.config.home, worker.process.pid)

    @staticmethod
    def _close_pipe(worker: _Worker) -> None:
        if worker.ready_pipe >= 0:
            os.close(worker.ready_pipe)
            worker.ready_pipe = -1

    def _restart_later(self, worker: _Worker) -> None:
        if worker.restart_at is not None or self.stopping:
            return
        pid, code = worker.process.pid, worker.process.returncode
        metrics.process_exited(pid)
        status.remove(self.config.home, pid)
        self._close_pipe(worker)
        worker.failures = 0 if time.monotonic() - worker.started > 60 else worker.failures + 1
        delay = min(30.0, 2.0 ** max(0, worker.failures - 1))
        worker.restart_at = time.monotonic() + delay
        how = f"signal {-code}" if code < 0 else f"code {code}"
        print(f"conveyor serve: worker {worker.index} (pid {pid}) exited with {how}; restarting in {delay:g} s",
              file=sys.stderr, flush=True)

    def _restart_due(self) -> None:
        now = time.monotonic()
        for i, worker in enumerate(self.workers):
            if worker.restart_at is not None and now >= worker.restart_at and not self.stopping:
                self.workers[i] = self._spawn(worker.index, worker.failures)
                self.workers[i].ready = True  # a restart is not waited for: the others are serving

    def _stop_all(self) -> None:
        everyone = [*self.workers, *self.replacing.values(), *self.retiring]
        alive = [w for w in everyone if w.process.poll() is None]
        for worker in alive:
            worker.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        for worker in alive:
            try:
                worker.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
        for worker in everyone:
            self._close_pipe(worker)
            status.remove(self.config.home, worker.process.pid)


def _reserve(host: str, port: int) -> socket.socket:
    """The gRPC port, bound (not listening) with SO_REUSEPORT: the workers' gRPC servers listen on
    it beside this socket, and no other program can take it while the server runs. OSError (one
    line) if it is taken."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot serve gRPC on {host}:{port}: {exc.strerror}") from None
    return sock


def serve(config: PipelineConfig, host: str | None = None, port: int | None = None, log_requests: bool = True,
          report: Callable[[str], None] = lambda line: print(line, flush=True), grpc_port: int | None = None,
          fold: bool = True) -> int:
    """Run `conveyor serve` until SIGTERM/SIGINT; OSError (one line) if an address is taken."""
    return Supervisor(config, host, port, log_requests, report, grpc_port, fold).run()
