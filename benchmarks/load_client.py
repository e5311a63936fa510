"""A load generator for the model server, run as its own process (never threads in the server's).

    python -m benchmarks.load_client --url http://127.0.0.1:PORT --bodies FILE
        [--path /v1/models/taxi:predict] [--concurrency 8] [--requests N | --seconds S] [--warmup N]

Opens `concurrency` keep-alive HTTP/1.1 connections and keeps one request in flight on each,
cycling through the JSON bodies of FILE (one per line). One thread, non-blocking sockets and
epoll: the client costs a few microseconds per request, so its figures are the server's. Prints
one JSON object: latencies (p50, p90, p99, max in ms), requests per second, status counts,
connection errors, and the `X-Model-Version` of every answer in completion order (run-length
encoded), which the hot-swap benchmark checks; `warmup_statuses` counts the unmeasured requests.
"""
from __future__ import annotations

import argparse
import json
import selectors
import socket
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

VERSION_HEADER = b"x-model-version"


@dataclass
class Result:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    versions: list[list] = field(default_factory=list)  # [[version, count], ...] in completion order
    wall: float = 0.0

    def add_version(self, version: str) -> None:
        if self.versions and self.versions[-1][0] == version:
            self.versions[-1][1] += 1
        else:
            self.versions.append([version, 1])

    def summary(self) -> dict:
        ordered = sorted(self.latencies)

        def pct(q: float) -> float | None:
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3) if ordered else None

        return {
            "requests": len(ordered),
            "wall_seconds": round(self.wall, 3),
            "req_per_s": round(len(ordered) / self.wall, 1) if self.wall else None,
            "p50_ms": round(statistics.median(ordered) * 1000, 3) if ordered else None,
            "p90_ms": pct(0.90),
            "p99_ms": pct(0.99),
            "max_ms": round(ordered[-1] * 1000, 3) if ordered else None,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "errors": self.errors[:20],
            "error_count": len(self.errors),
            "versions": self.versions,
        }


class _Connection:
    def __init__(self, address: tuple[str, int]):
        self.sock = socket.create_connection(address, timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.buffer = bytearray()
        self.started = 0.0

    def take_response(self) -> tuple[int, str, bytes, bool] | None:
        """(status, version, body, whether the server closes the connection) of a complete response
        at the start of the buffer, else None."""
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return None
        head = bytes(self.buffer[:end]).split(b"\r\n")
        status = int(head[0].split(b" ", 2)[1])
        length, version, closing = 0, "", False
        for line in head[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == VERSION_HEADER:
                version = value.strip().decode()
            elif name == b"connection":
                closing = value.strip().lower() == b"close"
        if len(self.buffer) < end + 4 + length:
            return None
        body = bytes(self.buffer[end + 4 : end + 4 + length])
        del self.buffer[: end + 4 + length]
        return status, version, body, closing


def run(url: str, path: str, bodies: list[bytes], concurrency: int, requests: int | None, seconds: float | None) -> Result:
    """Send requests until `requests` are answered or `seconds` have passed."""
    parts = urlsplit(url)
    address = (parts.hostname, parts.port)
    prefix = f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n".encode()
    messages = [prefix + b"Content-Length: %d\r\n\r\n" % len(b) + b for b in bodies]
    result = Result()
    selector = selectors.DefaultSelector()
    sent = 0
    deadline = time.perf_counter() + seconds if seconds else float("inf")

    def more() -> bool:
        return (requests is None or sent < requests) and time.perf_counter() < deadline

    def send(conn: _Connection) -> None:
        nonlocal sent
        conn.started = time.perf_counter()
        conn.sock.sendall(messages[sent % len(messages)])  # small: fits the socket buffer at once
        sent += 1

    started = time.perf_counter()
    for _ in range(concurrency):
        conn = _Connection(address)
        selector.register(conn.sock, selectors.EVENT_READ, conn)
        if more():
            send(conn)
    in_flight = len(selector.get_map())
    while in_flight:
        events = selector.select(timeout=30)
        if not events:
            result.errors.append(f"no answer within 30 s on {in_flight} connections")
            break
        for key, _ in events:
            conn: _Connection = key.data
            try:
                chunk = conn.sock.recv(262144)
            except ConnectionError as exc:
                chunk, error = b"", f"{type(exc).__name__}: {exc}"
            else:
                error = "connection closed by the server"
            if not chunk:
                result.errors.append(error)
                selector.unregister(conn.sock)
                conn.sock.close()
                in_flight -= 1
                if more():  # reconnect and go on
                    conn = _Connection(address)
                    selector.register(conn.sock, selectors.EVENT_READ, conn)
                    send(conn)
                    in_flight += 1
                continue
            conn.buffer += chunk
            response = conn.take_response()
            if response is None:
                continue
            done = time.perf_counter()
            status, version, _, closing = response
            result.latencies.append(done - conn.started)
            result.statuses[status] = result.statuses.get(status, 0) + 1
            result.add_version(version)
            if closing:  # the server closes it (draining): go on on a new connection, as a client does
                selector.unregister(conn.sock)
                conn.sock.close()
                conn = _Connection(address)
                selector.register(conn.sock, selectors.EVENT_READ, conn)
            if more():
                send(conn)
            else:
                selector.unregister(conn.sock)
                conn.sock.close()
                in_flight -= 1
    result.wall = time.perf_counter() - started
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--path", default="/v1/models/taxi:predict")
    parser.add_argument("--bodies", type=Path, required=True, help="file of JSON request bodies, one per line")
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--requests", type=int, help="answered requests to measure")
    parser.add_argument("--seconds", type=float, help="or: send for this long")
    parser.add_argument("--warmup", type=int, default=0, help="requests sent (and not measured) first")
    args = parser.parse_args(argv)
    if (args.requests is None) == (args.seconds is None):
        parser.error("give exactly one of --requests and --seconds")
    bodies = [line for line in args.bodies.read_bytes().splitlines() if line.strip()]
    warm = run(args.url, args.path, bodies, args.concurrency, args.warmup, None) if args.warmup else Result()
    result = run(args.url, args.path, bodies, args.concurrency, args.requests, args.seconds)
    summary = result.summary()
    summary["warmup_statuses"] = {str(k): v for k, v in warm.statuses.items()}
    json.dump(summary, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
