"""HTTP/1.1 for the model server: asyncio and the httptools parser, with limits and timeouts.

FastAPI on uvicorn cost more than the whole latency budget: an empty POST endpoint answered in
0.36-0.64 ms at p50 and ~540-1,160 req/s with 8 clients on this machine, where the target for a
whole prediction is twice the model call (0.3-0.5 ms); this layer answers the same endpoint in
~0.06 ms and ~12,000 req/s (docs/benchmarks.md). The same application on uvicorn with a raw ASGI
callable, or on granian, answers about as fast, but neither bounds a request's head in time or
size, nor its body before the application reads it (docs/serving.md, "The HTTP layer"). This
module accepts connections; serving/http_connection.py is one connection (parsing, pipelining,
backpressure, per-request limits and timeouts). Here:

- at most `max_connections` connections are open (never more than the descriptor limit allows,
  less a reserve for the request log and model loads). At the cap the longest-idle keep-alive
  connection is closed to admit a new one; when none is idle, accepting pauses and new
  connections wait in the kernel's backlog. Half-open connections cannot exhaust descriptors.
- accept() failing for lack of descriptors or memory pauses accepting with a backoff, logged at
  most once per 10 s with a count; a client that disconnects mid-request is counted, not logged.
- every SWEEP_SECONDS each connection's timeouts are enforced; an error sweeping one connection
  is logged and cut that connection off, and the sweep always runs again.

The application answers each request with a Response, a Reply (answered later in a turn of the
loop, sent at once) or an asyncio.Future of one; it also shapes the errors this layer produces
(its `error`), so every response has one error format.
"""
from __future__ import annotations

import asyncio
import errno
import logging
import socket
import time
from collections import OrderedDict

from serving.http_connection import IDLE, Connection
from serving.http_messages import Application, Limits
from serving.log_throttle import Throttled

log = logging.getLogger(__name__)
throttled = Throttled(log)

RESOURCE_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
DESCRIPTOR_RESERVE = 64  # kept free for the request log, model loads and the status file
SWEEP_SECONDS = 0.5
DRAIN_IDLE_SECONDS = 1.0  # at shutdown, an idle keep-alive connection still gets its next request answered


class HttpServer:
    """Accepts on a listening socket (possibly shared with other worker processes)."""

    def __init__(self, sock: socket.socket, app: Application, limits: Limits):
        self.sock, self.app, self.limits = sock, app, limits
        self.loop = asyncio.get_running_loop()
        self.connections: set[Connection] = set()
        # Keep-alive connections whose last response went out, not yet sending again, oldest first.
        self.answered: OrderedDict[Connection, float] = OrderedDict()
        self.cap = _connection_cap(limits.max_connections)
        self.draining = False
        self._accepting = False
        self._retry: asyncio.TimerHandle | None = None
        self._backoff = 0.05
        self._sweeper: asyncio.TimerHandle | None = None
        self._stopped = False
        sock.setblocking(False)

    def start(self) -> None:
        self._resume_accepting()
        self._sweeper = self.loop.call_later(SWEEP_SECONDS, self._sweep)

    def _resume_accepting(self) -> None:
        self._retry = None
        if not self._accepting and not self.draining:
            self.loop.add_reader(self.sock.fileno(), self._accept)
            self._accepting = True

    def _pause_accepting(self, retry_after: float | None) -> None:
        if self._accepting:
            self.loop.remove_reader(self.sock.fileno())
            self._accepting = False
        if retry_after is not None and self._retry is None:
            self._retry = self.loop.call_later(retry_after, self._resume_accepting)

    def _accept(self) -> None:
        for _ in range(32):
            if len(self.connections) >= self.cap and not self._evict_idle():
                self.app.count("accept_paused_at_cap")
                self._pause_accepting(None)  # resumed when a connection closes
                return
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as exc:
                self.app.count("accept_error")
                throttled(
                    "accept", logging.WARNING,
                    f"accept() failed: {exc} ({len(self.connections)} connections open); "
                    f"pausing accepts for {self._backoff:.2f} s",
                )
                self._pause_accepting(self._backoff)
                self._backoff = min(self._backoff * 2, 2.0) if exc.errno in RESOURCE_ERRNOS else 1.0
                return
            self._backoff = 0.05
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            protocol = Connection(self)
            self.connections.add(protocol)
            self.app.connections(len(self.connections))
            self.loop.create_task(self._attach(conn, protocol))

    async def _attach(self, conn: socket.socket, protocol: Connection) -> None:
        try:
            await self.loop.connect_accepted_socket(lambda: protocol, conn)
        except OSError:
            conn.close()
            self.closed(protocol)

    def _evict_idle(self) -> bool:
        idle = [c for c in self.connections if c.state == IDLE and not c.busy and not c.closed and c.transport]
        if not idle:
            return False
        oldest = min(idle, key=lambda c: c.idle_since)
        self.app.count("evicted_idle_at_cap")
        oldest.close(flush=False)
        self.connections.discard(oldest)
        return True

    def returning(self, within: float) -> int:
        """Connections about to send their next request: answered in the last `within` seconds,
        not sending yet, and last time they sent within `within` of an answer (a client in a
        closed loop: it sends again as soon as it is answered). Clients that send at their own
        pace are not counted, so nothing waits for them."""
        cutoff = time.monotonic() - within
        while self.answered and next(iter(self.answered.values())) < cutoff:
            self.answered.popitem(last=False)
        return sum(1 for connection in self.answered if connection.turnaround < within)

    def closed(self, connection: Connection) -> None:
        self.connections.discard(connection)
        self.answered.pop(connection, None)
        self.app.connections(len(self.connections))
        if not self._accepting and self._retry is None and len(self.connections) < self.cap:
            self._resume_accepting()

    def _sweep(self) -> None:
        try:
            now = time.monotonic()
            for connection in list(self.connections):
                try:
                    connection.sweep(now)
                except Exception:  # one connection's fault must not end every timeout of this worker
                    throttled("sweep", logging.ERROR, "unexpected error enforcing a connection's timeouts", exc_info=True)
                    connection.abort("sweep_error")
        finally:
            if not self._stopped:
                self._sweeper = self.loop.call_later(SWEEP_SECONDS, self._sweep)

    async def shutdown(self, grace: float) -> None:
        """Stop accepting and give requests in flight `grace` seconds. Every answer from now on
        closes its connection (`Connection: close`); a keep-alive connection that is idle is kept
        DRAIN_IDLE_SECONDS (at most its idle timeout) for the next request its client may be
        sending at this moment, then closed: a client in a closed loop is answered, not reset."""
        self.draining = True
        self._pause_accepting(None)
        if self._retry is not None:
            self._retry.cancel()
        started = time.monotonic()
        quiet_until = started + min(DRAIN_IDLE_SECONDS, self.limits.idle_timeout)
        while True:
            now = time.monotonic()
            for connection in list(self.connections):
                quiet = not connection.busy and not connection.queue and connection.state == IDLE
                if quiet and not connection.closed and (now >= quiet_until or connection.refused):
                    connection.close()
            if not self.connections or now > started + grace:
                break
            await asyncio.sleep(0.05)
        for connection in list(self.connections):
            if connection.transport is not None:
                connection.transport.abort()
        self._stopped = True
        if self._sweeper is not None:
            self._sweeper.cancel()


def _connection_cap(configured: int) -> int:
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return configured
    return max(1, min(configured, soft - DESCRIPTOR_RESERVE))


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket; OSError with a plain message if the address is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on TCP-typed sockets (else each keep-alive
    # response waits ~40 ms for the client's delayed ACK); accepted sockets also get it explicitly.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        busy = " (another server is using it; --port 0 picks a free port)" if exc.errno == errno.EADDRINUSE else ""
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror}{busy}") from None
    sock.listen(2048)  # connections queue from now on, before the workers accept
    return sock
