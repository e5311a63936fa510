"""The HTTP layer (serving/http.py, serving/http_connection.py) through a stub application, over raw
loopback sockets: request smuggling shapes, pipelining depth, limits, slow senders, backpressure,
HEAD, Upgrade, Expect and the sweep. Seconds in all; every read has a deadline (a hang fails)."""
from __future__ import annotations

import asyncio
import re
import socket
import threading
import time

import pytest

from serving import http_connection
from serving.http import HttpServer, bind
from serving.http_messages import Limits, Reply, Request, Response
from tests.sockets import connect, exchange, read_all

LIMITS = Limits(idle_timeout=0.6, header_timeout=0.6, body_timeout=0.6, write_timeout=0.6, max_header_bytes=16_384,
                max_body_bytes=100_000)
BIG = b"x" * 262_144
HUGE = b"x" * 16_000_000  # more than the kernel's socket buffers hold


class StubApp:
    """Answers by path: /sync at once, /reply later in the loop turn (as a prediction), /future a
    turn later, /big 256 KB, /huge 16 MB, /never never. Records what it was asked."""

    def __init__(self):
        self.seen: list[str] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.events: list[str] = []

    def handle(self, request: Request):
        self.seen.append(f"{request.method} {request.path}")
        if request.path == "/reply":
            reply = Reply()
            self.loop.call_soon(reply.set_result, Response(200, b'{"answer":"reply"}'))
            return reply
        if request.path == "/future":
            future = self.loop.create_future()
            self.loop.call_later(0.01, future.set_result, Response(200, b'{"answer":"future"}'))
            return future
        if request.path == "/never":
            return self.loop.create_future()
        if request.path == "/big":
            return Response(200, BIG)
        if request.path == "/huge":
            return Response(200, HUGE)
        return Response(200, b'{"answer":"%s"}' % request.path.encode()[:100])

    def error(self, status, message, headers):
        return Response(status, b'{"error":"%s"}' % message.encode()[:200])

    def observe(self, request, response, seconds):
        pass

    def count(self, event):
        self.events.append(event)

    def connections(self, open_now):
        pass


class Running:
    def __init__(self, limits: Limits = LIMITS):
        self.app = StubApp()
        self.sock = bind("127.0.0.1", 0)
        self.port = self.sock.getsockname()[1]
        self.limits = limits
        self.server: HttpServer | None = None
        self.loop = asyncio.new_event_loop()
        started = threading.Event()

        async def open() -> None:
            self.app.loop = self.loop
            self.server = HttpServer(self.sock, self.app, limits)
            self.server.start()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            self.loop.run_until_complete(open())
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        assert started.wait(10)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def connect(self) -> socket.socket:
        return connect(self.url)

    def exchange(self, data: bytes, timeout: float = 10.0) -> bytes:
        """Send `data`, read until the server closes (socket.timeout, a hang, fails the test)."""
        return exchange(self.url, data, timeout)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.shutdown(1.0), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.sock.close()


def statuses(answer: bytes) -> list[int]:
    return [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)]


@pytest.fixture
def running():
    server = Running()
    yield server
    server.stop()


def get(path: str, extra: bytes = b"") -> bytes:
    return b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n" + extra + b"\r\n"


CLOSE = b"Connection: close\r\n"
SMUGGLING = {
    "CL then TE": b"POST /sync HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "TE then CL": b"POST /sync HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
    "two Content-Lengths": b"POST /sync HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
    "+N": b"POST /sync HTTP/1.1\r\nHost: x\r\nContent-Length: +4\r\n\r\nabcd",
    "junk length": b"POST /sync HTTP/1.1\r\nHost: x\r\nContent-Length: 4x\r\n\r\nabcd",
    "xchunked": b"POST /sync HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    "chunked, identity": b"POST /sync HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
    "space before colon": b"GET /sync HTTP/1.1\r\nHost : x\r\n\r\n",
    "obs-fold": b"GET /sync HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
    "NUL in a value": b"GET /sync HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
    "bad chunk size": b"POST /sync HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    "bare CR": b"GET /sync HTTP/1.1\rHost: x\r\n\r\n",
}


@pytest.mark.parametrize("name", list(SMUGGLING))
def test_request_smuggling_shapes_get_400_and_never_reach_the_application(running, name):
    answer = running.exchange(SMUGGLING[name] + get("/after", CLOSE))
    assert statuses(answer) == [400], (name, answer[:300])
    assert running.app.seen == []


def test_deep_pipelining_is_answered_in_order_without_recursion(running, monkeypatch):
    """An answer given later (a prediction), then 600 GETs in the same write: all answered, in order."""
    monkeypatch.setattr(http_connection, "MAX_PIPELINED", 16)
    gets = b"".join(get(f"/g{i}") for i in range(600))
    answer = running.exchange(get("/reply") + gets + get("/future") + get("/last", CLOSE), timeout=20)
    assert statuses(answer) == [200] * 603
    bodies = re.findall(rb'"answer":"([^"]+)"', answer)
    assert bodies == [b"reply"] + [f"/g{i}".encode() for i in range(600)] + [b"future", b"/last"]
    assert running.app.seen == ["GET /reply"] + [f"GET /g{i}" for i in range(600)] + ["GET /future", "GET /last"]


def test_parsed_requests_waiting_on_a_connection_are_bounded(running):
    """While an answer is pending, at most MAX_PIPELINED parsed requests (plus one slice) wait."""
    with running.connect() as sock:
        sock.sendall(get("/never") + b"".join(get(f"/g{i}") for i in range(2000)))
        time.sleep(0.3)
        [connection] = [c for c in running.server.connections]
        assert len(connection.queue) <= http_connection.MAX_PIPELINED + http_connection.FEED_BYTES // len(get("/g0"))
        assert running.app.seen == ["GET /never"]


@pytest.mark.parametrize("data, status", [
    (b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\n\r\n", 414),
    (b"GET /sync HTTP/1.1\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n", 431),
    (b"GET /sync HTTP/1.1\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"a" * 100) for i in range(200)) + b"\r\n", 431),
    (b"POST /sync HTTP/1.1\r\nContent-Length: 5000000\r\n\r\n", 413),
    (b"POST /sync HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n" + b"%x\r\n%s\r\n" % (60_000, b" " * 60_000) * 2 + b"0\r\n\r\n", 413),
])
def test_limits_are_answered_at_once(running, data, status):
    started = time.monotonic()
    assert statuses(running.exchange(data)) == [status]
    assert time.monotonic() - started < LIMITS.header_timeout


def test_a_head_without_end_is_refused_as_its_bytes_arrive_not_buffered(running):
    """A header line without CRLF streaming in: 431 after about max_header_bytes, not 408 after the
    header timeout with all of it buffered (what the parser alone does: it hands over whole headers)."""
    started = time.monotonic()
    with running.connect() as sock:
        sock.sendall(b"GET /sync HTTP/1.1\r\nX-Big: ")
        try:
            for _ in range(16):  # 1 MB
                sock.sendall(b"a" * 65536)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = read_all(sock)
    assert statuses(answer) == [431], answer[:200]
    assert time.monotonic() - started < LIMITS.header_timeout


@pytest.mark.parametrize("data, reason", [
    (b"GET /sync HTTP/1.1\r\nHost: x\r\n", b"request headers not received within 0.6 s"),
    (b"POST /sync HTTP/1.1\r\nContent-Length: 100\r\n\r\n{", b"request body not received within 0.6 s"),
])
def test_slow_senders_get_408(running, data, reason):
    answer = running.exchange(data)
    assert statuses(answer) == [408] and reason in answer


def test_an_idle_connection_is_closed(running):
    started = time.monotonic()
    assert running.exchange(b"") == b""
    assert time.monotonic() - started < 3


def test_a_client_that_never_reads_cannot_grow_the_write_buffer(running):
    """Backpressure: pipelined requests for large answers, never read: the server stops answering
    at the write buffer's high-water mark, then cuts the client off after write_timeout."""
    with running.connect() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(get("/big") * 200)
        time.sleep(0.3)
        answered = len(running.app.seen)
        [connection] = list(running.server.connections)
        assert connection.transport.get_write_buffer_size() <= 64 * 1024 + len(BIG) + 1024
        assert answered < 20  # not 200 answers of 256 KB in memory
        deadline = time.monotonic() + 5
        while running.server.connections and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not running.server.connections and "write_timeout" in running.app.events
    assert statuses(running.exchange(get("/sync", CLOSE))) == [200]  # others still served


def test_head_is_answered_as_get_without_the_body(running):
    answer = running.exchange(b"HEAD /sync HTTP/1.1\r\nHost: x\r\n\r\n" + get("/next", CLOSE))
    head, _, rest = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and b"Content-Length: 18" in head
    assert rest.startswith(b"HTTP/1.1 200 ") and rest.endswith(b'{"answer":"/next"}')


def test_an_upgrade_is_answered_once_in_http_1_1_and_the_connection_goes_on(running):
    upgrade = get("/sync", b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n")
    websocket = get("/ws", b"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n")
    answer = running.exchange(upgrade + websocket + get("/after", CLOSE))
    assert statuses(answer) == [200, 200, 200]
    assert running.app.seen == ["GET /sync", "GET /ws", "GET /after"]


def test_expect_100_continue_in_order_and_other_expectations_417(running):
    body = b'{"a": 1}'
    post = b"POST /sync HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 8\r\n%s\r\n" + body
    alone = running.exchange(post % CLOSE)
    assert alone.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 ")
    behind = running.exchange(get("/future") + post % CLOSE)  # never an interim response before the pending one
    assert statuses(behind) == [200, 200]
    assert running.exchange(b"GET /sync HTTP/1.1\r\nExpect: something\r\n\r\n").startswith(b"HTTP/1.1 417 ")


def test_the_sweep_survives_an_error_and_keeps_enforcing_timeouts(running, monkeypatch):
    broken = running.connect()
    time.sleep(0.1)
    [connection] = list(running.server.connections)
    monkeypatch.setattr(connection, "sweep", lambda now: 1 / 0)
    other = running.connect()
    assert read_all(other) == b""  # still closed by the idle timeout
    assert read_all(broken) == b"" and "sweep_error" in running.app.events
    broken.close()
    other.close()


def test_an_answer_that_never_comes_drops_the_connection(running, monkeypatch):
    monkeypatch.setattr(http_connection, "ANSWER_TIMEOUT", 0.5)
    started = time.monotonic()
    assert running.exchange(get("/never")) == b""
    assert time.monotonic() - started < 3 and "answer_timeout" in running.app.events


def test_a_connection_whose_client_never_reads_its_answer_is_cut_off_not_kept_waiting_for_a_flush(running):
    """The answer is written, the client reads nothing: closing it (idle timeout) would wait for a
    flush that never comes; it is aborted after write_timeout instead."""
    with running.connect() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(get("/huge"))
        deadline = time.monotonic() + 5
        while (running.app.seen != ["GET /huge"] or running.server.connections) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert running.app.seen == ["GET /huge"] and not running.server.connections
