"""HTTP/1.1 for the model server: asyncio and the httptools parser, with limits and timeouts.

FastAPI on uvicorn cost more than the whole latency budget: an empty POST endpoint answered in
0.36-0.64 ms at p50 and ~540-1,160 req/s with 8 clients on this machine, where the target for a
whole prediction is twice the model call (0.3-0.5 ms); this layer answers the same endpoint in
~0.06 ms and ~12,000 req/s (docs/benchmarks.md). It also gives each of the following one place:

- at most `max_connections` connections are open (never more than the descriptor limit allows,
  less a reserve for the request log and model loads). At the cap the longest-idle keep-alive
  connection is closed to admit a new one; when none is idle, accepting pauses and new
  connections wait in the kernel's backlog. Half-open connections cannot exhaust descriptors.
- a connection must start a request within `idle_timeout`, deliver its headers within
  `header_timeout` of the first byte and its body within `body_timeout` (408 otherwise); a
  response the client does not read within `write_timeout` is dropped with the connection.
- headers over `max_header_bytes` get 431, a body over `max_body_bytes` 413 before it is read.
- accept() failing for lack of descriptors or memory pauses accepting with a backoff, logged at
  most once per 10 s with a count; a client that disconnects mid-request is counted, not logged.

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
from collections import OrderedDict, deque
from email.utils import formatdate
from http import HTTPStatus

import httptools

from serving.http_messages import Application, Limits, Reply, Request, Response
from serving.log_throttle import Throttled

log = logging.getLogger(__name__)
throttled = Throttled(log)

IDLE, HEADERS, BODY = "idle", "headers", "body"  # where the parser is in the next request
RESOURCE_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
DESCRIPTOR_RESERVE = 64  # kept free for the request log, model loads and the status file
MAX_PIPELINED = 16  # complete requests queued on one connection before it stops being read
SWEEP_SECONDS = 0.5
LINGER_SECONDS = 2.0  # a refused connection is read and dropped this long before it is closed


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing after an error was answered."""


_REASONS = {s.value: s.phrase for s in HTTPStatus}


class _Date:
    """The Date header, formatted once per second."""

    second, text = 0, ""

    @classmethod
    def now(cls) -> str:
        second = int(time.time())
        if second != cls.second:
            cls.second, cls.text = second, formatdate(second, usegmt=True)
        return cls.text


class Connection(asyncio.Protocol):
    def __init__(self, server: "HttpServer"):
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.state = IDLE
        self.deadline = time.monotonic() + server.limits.idle_timeout
        self.idle_since = time.monotonic()
        self.turnaround = float("inf")  # from its last answer (or connecting) to its next request
        self.queue: deque[tuple[Request, bool]] = deque()
        self.busy = False  # a request is being answered
        self.refused = False  # an error was answered: the rest of the stream is ignored
        self.pending_error: Response | None = None
        self.closed = False
        self.write_paused_since: float | None = None
        self._reset()

    def _reset(self) -> None:
        self.url = b""
        self.headers: dict[str, str] = {}
        self.header_bytes = 0
        self.body: list[bytes] = []
        self.body_size = 0
        self.started = 0.0

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.state in (HEADERS, BODY):
            self.server.app.count("client_disconnected_mid_request")
        self.server.closed(self)

    def pause_writing(self) -> None:
        self.write_paused_since = time.monotonic()

    def resume_writing(self) -> None:
        self.write_paused_since = None

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if not isinstance(exc.__context__, _Refused):  # a bug of ours: answered, not fatal
                throttled("callback", logging.ERROR, f"unexpected error parsing a request: {exc.__context__!r}")
                self.refuse(500, "internal error")
        except httptools.HttpParserUpgrade:
            self.refuse(400, "protocol upgrades are not supported")
        except httptools.HttpParserError as exc:
            self.refuse(400, f"malformed HTTP request: {exc}")

    # parser callbacks
    def on_message_begin(self) -> None:
        self.server.answered.pop(self, None)
        self.turnaround = time.monotonic() - self.idle_since
        self.state = HEADERS
        self.started = time.perf_counter()
        self.deadline = time.monotonic() + self.server.limits.header_timeout

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.header_bytes += len(url)
        if self.header_bytes > self.server.limits.max_header_bytes:
            self.refuse(414, f"request target longer than {self.server.limits.max_header_bytes} bytes")
            raise _Refused

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value)
        if self.header_bytes > self.server.limits.max_header_bytes:
            self.refuse(431, f"request headers exceed {self.server.limits.max_header_bytes} bytes")
            raise _Refused
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        limit = self.server.limits.max_body_bytes
        declared = self.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            self.refuse(413, f"request body of {declared} bytes exceeds the limit of {limit} bytes")
            raise _Refused
        if self.headers.get("expect", "").lower() == "100-continue" and self.transport is not None:
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.state = BODY
        self.deadline = time.monotonic() + self.server.limits.body_timeout

    def on_body(self, chunk: bytes) -> None:
        self.body_size += len(chunk)
        if self.body_size > self.server.limits.max_body_bytes:
            self.refuse(413, f"request body exceeds the limit of {self.server.limits.max_body_bytes} bytes")
            raise _Refused
        self.body.append(chunk)

    def on_message_complete(self) -> None:
        path, _, _ = self.url.decode("latin-1").partition("?")
        request = Request(self.parser.get_method().decode("latin-1"), path, self.headers, b"".join(self.body), self.started)
        self.queue.append((request, self.parser.should_keep_alive()))
        self._reset()
        self.state = IDLE
        if len(self.queue) > MAX_PIPELINED and self.transport is not None:
            self.transport.pause_reading()
        self._next()

    # answering
    def _next(self) -> None:
        if self.busy or not self.queue or self.closed:
            return
        request, keep_alive = self.queue.popleft()
        self.busy = True
        try:
            result = self.server.app.handle(request)
        except Exception:
            throttled("handler", logging.ERROR, f"unexpected error answering {request.method} {request.path}", exc_info=True)
            result = self.server.app.error(500, "internal error", request.headers)
        if isinstance(result, Response):
            self._respond(request, result, keep_alive)
        elif isinstance(result, Reply):
            result.then(lambda response: self._respond(request, response, keep_alive))
        else:
            result.add_done_callback(lambda done: self._answered(done, request, keep_alive))

    def _answered(self, done: asyncio.Future, request: Request, keep_alive: bool) -> None:
        if self.closed or done.cancelled():
            self.busy = False
            return
        error = done.exception()
        if error is not None:
            throttled("handler", logging.ERROR, f"unexpected error answering {request.method} {request.path}: {error!r}")
            self._respond(request, self.server.app.error(500, "internal error", request.headers), keep_alive)
        else:
            self._respond(request, done.result(), keep_alive)

    def _respond(self, request: Request | None, response: Response, keep_alive: bool) -> None:
        self.busy = False
        if self.closed or self.transport is None:
            return
        close = response.close or not keep_alive or self.server.draining
        head = [
            f"HTTP/1.1 {response.status} {_REASONS.get(response.status, 'Unknown')}",
            f"Date: {_Date.now()}",
            f"Content-Type: {response.content_type}",
            f"Content-Length: {len(response.body)}",
        ]
        head.extend(f"{name}: {value}" for name, value in response.headers)
        if close:
            head.append("Connection: close")
        self.transport.write("\r\n".join(head).encode("latin-1") + b"\r\n\r\n" + response.body)
        self.server.app.observe(request, response, time.perf_counter() - request.started if request else 0.0)
        if close and self.refused and self.transport.can_write_eof():
            # Linger: closing with unread request bytes would send a reset that can destroy the
            # error response before the client reads it. Half-close, read and drop until the client
            # closes or LINGER_SECONDS pass (the sweep closes it then).
            self.transport.write_eof()
            self.transport.resume_reading()
            self.deadline = time.monotonic() + LINGER_SECONDS
            return
        if close:
            self.transport.close()
            self.closed = True
            return
        if self.pending_error is not None:
            error, self.pending_error = self.pending_error, None
            self._respond(None, error, False)
        elif self.queue:
            self.transport.resume_reading()
            self._next()
        elif self.state == IDLE:
            self.idle_since = time.monotonic()
            self.deadline = self.idle_since + self.server.limits.idle_timeout
            self.server.answered[self] = self.idle_since
            self.server.answered.move_to_end(self)

    def refuse(self, status: int, message: str) -> None:
        """Answer a protocol-level error and close the connection."""
        self.server.app.count(f"refused_{status}")
        self.refused = True
        self.state = IDLE
        response = self.server.app.error(status, message, self.headers)
        response.close = True
        if self.transport is not None:
            self.transport.pause_reading()
        if self.busy:  # a request before it is still being answered: answer after that one
            self.queue.clear()
            self.pending_error = response
            return
        self.busy = True
        self._respond(None, response, False)

    def sweep(self, now: float) -> None:
        """Enforce the timeouts (called by the server every SWEEP_SECONDS)."""
        if self.closed or self.transport is None:
            return
        if self.busy:
            if self.write_paused_since is not None and now - self.write_paused_since > self.server.limits.write_timeout:
                self.server.app.count("write_timeout")
                self.transport.abort()
            return
        if now < self.deadline:
            return
        if self.refused:  # the lingering after an error is over
            self.transport.close()
            self.closed = True
        elif self.state == IDLE:
            self.server.app.count("idle_timeout")
            self.transport.close()
            self.closed = True
        elif self.state == HEADERS:
            self.server.app.count("header_timeout")
            self.refuse(408, f"request headers not received within {self.server.limits.header_timeout:g} s")
        elif self.state == BODY:
            self.server.app.count("body_timeout")
            self.refuse(408, f"request body not received within {self.server.limits.body_timeout:g} s")


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
        oldest.closed = True
        oldest.transport.close()
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
        now = time.monotonic()
        for connection in list(self.connections):
            connection.sweep(now)
        self._sweeper = self.loop.call_later(SWEEP_SECONDS, self._sweep)

    async def shutdown(self, grace: float) -> None:
        """Stop accepting, close idle connections, give requests in flight `grace` seconds."""
        self.draining = True
        self._pause_accepting(None)
        if self._retry is not None:
            self._retry.cancel()
        deadline = time.monotonic() + grace
        while True:
            for connection in list(self.connections):
                if not connection.busy and not connection.queue and connection.transport is not None:
                    connection.closed = True
                    connection.transport.close()
                    self.connections.discard(connection)
            if not self.connections or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        for connection in list(self.connections):
            if connection.transport is not None:
                connection.transport.abort()
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
