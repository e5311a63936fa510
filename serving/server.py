"""The model server of one worker process (serving/supervisor.py runs several): the model host, its
watcher, the request batcher, the HTTP layer around the REST API (serving/rest_api.py) and, with a
gRPC port, the gRPC API (serving/grpc_api.py) on the same event loop."""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from pipeline.configs import PipelineConfig
from serving import metrics, request_log, status
from serving.host import ModelHost
from serving.http import HttpServer, bind
from serving.http_messages import Limits
from serving.request_ids import RequestIds
from serving.rest_api import App

log = logging.getLogger(__name__)
SHUTDOWN_GRACE_SECONDS = 10.0

class Server:
    """One worker process's server on a listening socket: model host, watcher, batcher, HTTP."""

    def __init__(self, config: PipelineConfig, sock: socket.socket, log_requests: bool = True,
                 log_root: Path | None = None, worker: int = 0, on_tick=None, grpc_port: int | None = None,
                 request_ids: str | None = None, fold: bool = True):
        self.config, self.sock, self.worker, self.grpc_port = config, sock, worker, grpc_port
        self.ids = RequestIds(request_ids)  # shared with the other workers when a file is given
        self.host = ModelHost(
            config.serving_root, config.poll_seconds, config.max_extra_versions, config.load_retry_max_seconds, fold=fold,
        )
        self.requests = request_log.RequestLog(log_root or config.request_log_root) if log_requests else None
        self.log_root = log_root or config.request_log_root
        self.started = threading.Event()
        self._stop_watch = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._on_tick = on_tick
        self._on_started: Callable[[], None] | None = None
        self._last_retention = float("-inf")
        self.app: App | None = None

    @property
    def url(self) -> str:
        address, port = self.sock.getsockname()[:2]
        return f"http://[{address}]:{port}" if ":" in address else f"http://{address}:{port}"

    def load(self) -> str | None:
        """Load the serving version before accepting (the first refresh); the version or None."""
        self.host.refresh()
        return self.host.serving.version if self.host.serving else None

    def run(self, on_started: Callable[[], None] | None = None) -> None:
        """Serve until stop() (or SIGTERM/SIGINT when run in the main thread); `on_started` is
        called once the HTTP layer accepts and the gRPC API listens."""
        self._on_started = on_started
        asyncio.run(self._main())

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)

    @property
    def limits(self) -> Limits:
        config = self.config
        return Limits(
            max_connections=config.max_connections, idle_timeout=config.idle_timeout_seconds,
            header_timeout=config.header_timeout_seconds, body_timeout=config.body_timeout_seconds,
            max_body_bytes=config.max_request_bytes,
        )

    def open(self) -> App:
        """The application, its batcher and the version watcher, on the running loop (any HTTP layer)."""
        self._loop = asyncio.get_running_loop()
        self.app = App(self.config, self.host, self.requests, self._loop, self.ids)
        self.app.batcher.start()
        self.host.watch(self._stop_watch, on_tick=self._tick)
        self._write_status()
        return self.app

    def close(self) -> None:
        """After the HTTP layer stopped: the watcher, the batcher (what is queued is answered), the log."""
        self._stop_watch.set()
        self.app.batcher.stop()
        self.app.parse_pool.shutdown(wait=False)
        if self.requests is not None:
            self.requests.close()
        self.ids.close()
        self.host.close()
        status.remove(self.config.home, os.getpid())

    async def _main(self) -> None:
        import signal

        self._stopping = asyncio.Event()
        app = self.open()
        http = HttpServer(self.sock, app, self.limits)
        app.predictions.returning = http.returning
        http.start()
        grpc_server = None
        if self.grpc_port is not None:
            from serving import grpc_api

            grpc_server = await grpc_api.start(app.predictions, app.rules, self.sock.getsockname()[0], self.grpc_port, self.limits)
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._loop.add_signal_handler(sig, self._stopping.set)
        self.started.set()
        if self._on_started is not None:
            self._on_started()
        try:
            await self._stopping.wait()
        finally:
            app.draining = True
            if grpc_server is not None:  # refuses new calls at once, answers those in flight
                await asyncio.gather(http.shutdown(SHUTDOWN_GRACE_SECONDS), grpc_server.stop(SHUTDOWN_GRACE_SECONDS))
            else:
                await http.shutdown(SHUTDOWN_GRACE_SECONDS)
            self.close()

    def _tick(self) -> None:
        """After each refresh (watcher thread): the status file, retention, the caller's hook."""
        self._write_status()
        if self.worker == 0 and self.requests is not None and time.monotonic() - self._last_retention > 60:
            self._last_retention = time.monotonic()
            request_log.enforce_retention(
                self.log_root, datetime.now(timezone.utc), self.config.request_log_retention_hours,
                self.config.request_log_max_bytes,
            )
        if self._on_tick is not None:
            self._on_tick()

    def _write_status(self) -> None:
        snapshot = self.host.snapshot()
        snapshot.update(
            url=self.url, worker=self.worker, stale_after=max(120.0, 10 * self.config.poll_seconds),
            request_log_error=self.app.batcher.log_error if self.app else None,
        )
        try:
            status.write(self.config.home, snapshot)
        except OSError as exc:
            metrics.WATCH_ERRORS.labels("status_file").inc()
            log.debug("cannot write the status file: %s", exc)


def build(
    config: PipelineConfig, host: str | None = None, port: int | None = None, log_root: Path | None = None,
    log_requests: bool = True,
) -> Server:
    """An in-process server on a bound socket with its first version loaded (tests, benchmarks);
    `conveyor serve` runs worker processes instead (serving/supervisor.py)."""
    sock = bind(host or config.serving_host, config.serving_port if port is None else port)
    server = Server(config, sock, log_requests=log_requests, log_root=log_root)
    server.load()
    return server


class BackgroundServer:
    """`with BackgroundServer(server) as url:` runs `server` in a thread."""

    def __init__(self, server: Server, timeout: float = 30.0):
        self.server, self.timeout = server, timeout
        self._thread = threading.Thread(target=server.run, name="server", daemon=True)

    def __enter__(self) -> str:
        self._thread.start()
        if not self.server.started.wait(self.timeout):
            self.server.stop()
            raise TimeoutError(f"server did not start within {self.timeout} s")
        return self.server.url

    def __exit__(self, *exc: object) -> None:
        self.server.stop()
        self._thread.join(timeout=self.timeout)
