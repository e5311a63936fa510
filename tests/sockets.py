"""Raw sockets for tests: connect to a server's URL, send bytes, read what comes back, a free port."""
from __future__ import annotations

import socket

TIMEOUT = 10.0  # seconds a socket waits for the next bytes before raising socket.timeout


def address(url: str) -> tuple[str, int]:
    """(host, port) of an http://host:port[/...] URL."""
    host, port = url.removeprefix("http://").split("/")[0].rsplit(":", 1)
    return host, int(port)


def connect(url: str, timeout: float = TIMEOUT) -> socket.socket:
    """A raw TCP connection to the server at `url`; each read waits at most `timeout` seconds."""
    return socket.create_connection(address(url), timeout=timeout)


def read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def read_response(sock: socket.socket) -> bytes:
    """One HTTP response (head and Content-Length body), or what came before the server closed."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")[1:]
                   if line.lower().startswith(b"content-length:")), 0)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def exchange(url: str, data: bytes, timeout: float = TIMEOUT) -> bytes:
    """Send `data` on a fresh connection to `url`; everything the server answers until it closes."""
    with connect(url, timeout) as sock:
        sock.sendall(data)
        return read_all(sock)


def free_port() -> int:
    """A loopback port nobody listens on (free when asked: bind it soon)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
