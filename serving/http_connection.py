"""One HTTP/1.1 connection of the model server (serving/http.py accepts them): parsing with
httptools, limits, pipelining, backpressure and timeouts.

- Bytes are fed to the parser at most FEED_BYTES at a time, and counted while a request's head is
  incomplete: a head over `max_header_bytes` gets 431 when that many bytes have arrived (at most
  FEED_BYTES later), not when the parser finally hands over a complete header.
- Pipelined requests are answered in order, one at a time, by a loop (never by recursion). At
  most MAX_PIPELINED parsed requests wait; past that the connection is neither parsed nor read
  until they are answered (what was read and not parsed is one read at most).
- Backpressure: while the transport's write buffer is above its high-water mark (the client is not
  reading), nothing more is read or answered; the buffer holds at most the mark plus one response.
  A client that stays that way for `write_timeout` is cut off (`abort()`, as is any close that
  would wait for a flush that never comes).
- Timeouts: `idle_timeout` to start a request, `header_timeout` for its head, `body_timeout` for
  its body (408); an answer the application has not given within ANSWER_TIMEOUT drops the
  connection. A refused connection lingers LINGER_SECONDS to let the client read the error.
- `Upgrade` (h2c, websocket) is ignored, as HTTP/1.1 allows: the request is answered once, in
  HTTP/1.1, and the connection goes on. `Expect: 100-continue` gets its interim response only when
  no earlier response is pending (in order); any other expectation 417. HEAD is answered as GET
  without the body.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict, deque
from email.utils import formatdate
from http import HTTPStatus
from typing import Protocol

import httptools

from serving.http_messages import Application, Limits, Reply, Request, Response
from serving.log_throttle import Throttled

throttled = Throttled(logging.getLogger(__name__))

IDLE, HEADERS, BODY = "idle", "headers", "body"  # where the parser is in the next request
MAX_PIPELINED = 16  # parsed requests waiting on one connection before it stops being parsed and read
FEED_BYTES = 4096  # bytes handed to the parser at a time
LINGER_SECONDS = 2.0  # a refused connection is read and dropped this long before it is closed
ANSWER_TIMEOUT = 60.0  # an answer the application does not give within this drops the connection
_REASONS = {s.value: s.phrase for s in HTTPStatus}


class Server(Protocol):
    """What a connection needs of its server (serving.http.HttpServer)."""

    app: Application
    limits: Limits
    draining: bool
    answered: OrderedDict  # keep-alive connections answered, not sending yet: Connection -> when

    def closed(self, connection: "Connection") -> None: ...


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing after an error was answered."""


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
    def __init__(self, server: Server):
        self.server, self.limits = server, server.limits
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.state = IDLE
        self.deadline = time.monotonic() + self.limits.idle_timeout
        self.idle_since = time.monotonic()
        self.turnaround = float("inf")  # from its last answer (or connecting) to its next request
        self.queue: deque[tuple[Request, bool]] = deque()
        self.unparsed = b""  # read, not yet parsed: waits while MAX_PIPELINED requests do
        self.fed = 0  # bytes fed to the parser so far
        self.chunk_start = 0  # `fed` before the slice being parsed
        self.head_from = 0  # `fed` before the slice in which the current request began
        self.busy = False  # a request is being answered
        self.busy_since = 0.0
        self.refused = False  # an error was answered: the rest of the stream is ignored
        self.pending_error: Response | None = None
        self.closed = False
        self.closing_since: float | None = None  # closed, waiting for the write buffer to flush
        self.write_paused_since: float | None = None
        self._pumping = False
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
        if self.transport is not None:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused_since = None
        self._pump()

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        if self.unparsed or len(self.queue) >= MAX_PIPELINED:
            self.unparsed += data
            self.transport.pause_reading()
            return
        self._feed(data)

    def _feed(self, data: bytes) -> None:
        view, position = memoryview(data), 0
        while position < len(view):
            if len(self.queue) >= MAX_PIPELINED:  # parse the rest once these are answered
                self.unparsed = bytes(view[position:])
                self.transport.pause_reading()
                return
            chunk = view[position : position + FEED_BYTES]
            self.chunk_start = self.fed
            try:
                self.parser.feed_data(chunk)
                used = len(chunk)
            except httptools.HttpParserUpgrade as upgrade:  # answered in HTTP/1.1; the parser resumed
                used = upgrade.args[0]
            except httptools.HttpParserCallbackError as exc:
                if not isinstance(exc.__context__, _Refused):  # a bug of ours: answered, not fatal
                    throttled("callback", logging.ERROR, f"unexpected error parsing a request: {exc.__context__!r}")
                    self.refuse(500, "internal error")
                return
            except httptools.HttpParserError as exc:
                self.refuse(400, f"malformed HTTP request: {exc}")
                return
            position += used
            self.fed += used
            if self.refused:
                return
            if self.state == HEADERS and self.fed - self.head_from > self.limits.max_header_bytes + FEED_BYTES:
                self.refuse(431, f"request headers exceed {self.limits.max_header_bytes} bytes")
                return

    # parser callbacks
    def on_message_begin(self) -> None:
        self.head_from = self.chunk_start
        self.server.answered.pop(self, None)
        self.turnaround = time.monotonic() - self.idle_since
        self.state = HEADERS
        self.started = time.perf_counter()
        self.deadline = time.monotonic() + self.limits.header_timeout

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.header_bytes += len(url)
        if self.header_bytes > self.limits.max_header_bytes:
            self.refuse(414, f"request target longer than {self.limits.max_header_bytes} bytes")
            raise _Refused

    def on_header(self, name: bytes, value: bytes) -> None:
        self.header_bytes += len(name) + len(value)
        if self.header_bytes > self.limits.max_header_bytes:
            self.refuse(431, f"request headers exceed {self.limits.max_header_bytes} bytes")
            raise _Refused
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        limit = self.limits.max_body_bytes
        declared = self.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            self.refuse(413, f"request body of {declared} bytes exceeds the limit of {limit} bytes")
            raise _Refused
        expect = self.headers.get("expect")
        if expect is not None and self.parser.get_http_version() == "1.1":
            if expect.lower() != "100-continue":
                self.refuse(417, f"unsupported expectation {expect[:40]!r} (only 100-continue)")
                raise _Refused
            if not self.busy and not self.queue:  # an interim response only in its place in the stream
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.state = BODY
        self.deadline = time.monotonic() + self.limits.body_timeout

    def on_body(self, chunk: bytes) -> None:
        self.body_size += len(chunk)
        if self.body_size > self.limits.max_body_bytes:
            self.refuse(413, f"request body exceeds the limit of {self.limits.max_body_bytes} bytes")
            raise _Refused
        self.body.append(chunk)

    def on_message_complete(self) -> None:
        path, _, _ = self.url.decode("latin-1").partition("?")
        request = Request(self.parser.get_method().decode("latin-1"), path, self.headers, b"".join(self.body), self.started)
        self.queue.append((request, self.parser.should_keep_alive()))
        self._reset()
        self.state = IDLE
        self._pump()

    # answering
    def _pump(self) -> None:
        """Answer what is queued, in order, while answers come at once; then parse what waits, and
        read again. Re-entered calls (an answer given synchronously) return: the loop goes on."""
        if self._pumping:
            return
        self._pumping = True
        try:
            while not self.closed and self.write_paused_since is None and not self.busy:
                if self.queue:
                    self._answer(*self.queue.popleft())
                elif self.unparsed and not self.refused:
                    data, self.unparsed = self.unparsed, b""
                    self._feed(data)
                    if not self.queue:
                        break
                else:
                    break
        finally:
            self._pumping = False
        if (not self.closed and not self.busy and self.write_paused_since is None and not self.refused
                and not self.unparsed and len(self.queue) < MAX_PIPELINED and self.transport is not None):
            self.transport.resume_reading()

    def _answer(self, request: Request, keep_alive: bool) -> None:
        self.busy, self.busy_since = True, time.monotonic()
        try:
            result = self.server.app.handle(request)
        except Exception:
            throttled("handler", logging.ERROR, f"unexpected error answering {request.method} {request.path}", exc_info=True)
            result = self.server.app.error(500, "internal error", request.headers)
        if isinstance(result, Response):
            self._respond(request, result, keep_alive)
        elif isinstance(result, Reply):
            result.then(lambda response: self._respond(request, response, keep_alive, pump=True))
        else:
            result.add_done_callback(lambda done: self._answered(done, request, keep_alive))

    def _answered(self, done: asyncio.Future, request: Request, keep_alive: bool) -> None:
        if self.closed or done.cancelled():
            self.busy = False
            return
        error = done.exception()
        if error is not None:
            throttled("handler", logging.ERROR, f"unexpected error answering {request.method} {request.path}: {error!r}")
            self._respond(request, self.server.app.error(500, "internal error", request.headers), keep_alive, pump=True)
        else:
            self._respond(request, done.result(), keep_alive, pump=True)

    def _respond(self, request: Request | None, response: Response, keep_alive: bool, pump: bool = False) -> None:
        """Write `response`; with `pump`, go on with the next request (an answer given later)."""
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
        body = b"" if request is not None and request.method == "HEAD" else response.body
        self.transport.write("\r\n".join(head).encode("latin-1") + b"\r\n\r\n" + body)
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
            self.close()
            return
        if self.pending_error is not None:
            error, self.pending_error = self.pending_error, None
            self.busy = True
            self._respond(None, error, False)
            return
        if not self.queue and self.state == IDLE:
            self.idle_since = time.monotonic()
            self.deadline = self.idle_since + self.limits.idle_timeout
            self.server.answered[self] = self.idle_since
            self.server.answered.move_to_end(self)
        if pump:
            self._pump()

    def refuse(self, status: int, message: str) -> None:
        """Answer a protocol-level error and close the connection."""
        self.server.app.count(f"refused_{status}")
        self.refused = True
        self.state = IDLE
        self.unparsed = b""
        response = self.server.app.error(status, message, self.headers)
        response.close = True
        if self.transport is not None:
            self.transport.pause_reading()
        if self.busy:  # a request before it is still being answered: answer after that one
            self.queue.clear()
            self.pending_error = response
            return
        self.queue.clear()
        self.busy = True
        self._respond(None, response, False)

    def close(self, flush: bool = True) -> None:
        """Close now if nothing waits to be sent; else once it is sent (cut off after write_timeout),
        or at once without `flush`."""
        self.closed = True
        if self.transport is None:
            return
        if self.transport.get_write_buffer_size():
            if not flush:
                self.transport.abort()
                return
            self.closing_since = time.monotonic()
        self.transport.close()

    def abort(self, event: str) -> None:
        self.server.app.count(event)
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    def sweep(self, now: float) -> None:
        """Enforce the timeouts (called by the server every SWEEP_SECONDS)."""
        if self.transport is None:
            return
        write_timeout = self.limits.write_timeout
        if self.closed:
            if self.closing_since is not None and now - self.closing_since > write_timeout:
                self.abort("write_timeout")  # closed, its last response never read
            return
        if self.write_paused_since is not None and now - self.write_paused_since > write_timeout:
            self.abort("write_timeout")
            return
        if self.busy:
            if now - self.busy_since > ANSWER_TIMEOUT:
                self.abort("answer_timeout")
            return
        if now < self.deadline:
            return
        if self.refused:  # the lingering after an error is over
            self.close()
        elif self.state == IDLE:
            self.server.app.count("idle_timeout")
            self.close()
        elif self.state == HEADERS:
            self.server.app.count("header_timeout")
            self.refuse(408, f"request headers not received within {self.limits.header_timeout:g} s")
        elif self.state == BODY:
            self.server.app.count("body_timeout")
            self.refuse(408, f"request body not received within {self.limits.body_timeout:g} s")
