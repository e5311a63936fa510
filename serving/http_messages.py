"""What the model server's HTTP layer (serving/http.py) and its application (serving/rest_api.py)
exchange: the limits, a request, a response, a reply answered later in the same loop turn, and
the application's side of the contract."""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Callable, Protocol

from serving.log_throttle import Throttled

throttled = Throttled(logging.getLogger(__name__))


@dataclass(frozen=True)
class Limits:
    max_connections: int = 1024
    idle_timeout: float = 5.0
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    write_timeout: float = 30.0
    max_header_bytes: int = 16_384
    max_body_bytes: int = 1_000_000


@dataclass
class Request:
    method: str
    path: str  # without the query string
    headers: dict[str, str]  # lower-case names; a repeated header keeps its last value
    body: bytes
    started: float  # time.perf_counter() at the request's first byte
    route: str = "other"  # set by the application, for its metrics


@dataclass
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()
    close: bool = False
    version: str = ""  # the model version that answered, for the application's metrics


class Reply:
    """A response the application gives later, on the loop thread. Where an asyncio.Future would
    call its waiter back one turn of the loop later (a wake-up of the selector in between), a
    Reply sends the response as soon as it is set: the requests answered in one turn are sent
    in that turn, before the batch's bookkeeping."""

    __slots__ = ("_response", "_send")

    def __init__(self) -> None:
        self._response: Response | None = None
        self._send: Callable[[Response], None] | None = None

    def done(self) -> bool:
        return self._response is not None

    def set_result(self, response: Response) -> None:
        self._response = response
        if self._send is not None:
            self._call(self._send)

    def then(self, send: Callable[[Response], None]) -> None:
        if self._response is not None:
            self._call(send)
        else:
            self._send = send

    def map(self, convert: Callable[[object], Response]) -> "Reply":
        """A Reply of `convert(result)`, set as soon as this one is (`convert` must not raise)."""
        mapped = Reply()
        self.then(lambda result: mapped.set_result(convert(result)))
        return mapped

    def _call(self, send: Callable[[Response], None]) -> None:
        try:
            send(self._response)
        except Exception:  # one connection's failure must not stop the others' answers
            throttled("reply", logging.ERROR, "unexpected error sending a response", exc_info=True)


class Application(Protocol):
    def handle(self, request: Request) -> Response | Reply | asyncio.Future: ...

    def error(self, status: int, message: str, headers: dict[str, str] | None) -> Response: ...

    def observe(self, request: Request | None, response: Response, seconds: float) -> None: ...

    def count(self, event: str) -> None: ...

    def connections(self, open_now: int) -> None: ...
